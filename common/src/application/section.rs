//! The application engine's heartbeat section: its gossip (placements, this node's
//! reports, the nodes it holds proved dead), for the host-side applications.

use super::Gossip;
use crate::membership::section::{
    FieldReader, FieldWriter, HeartbeatSection, SectionError, SectionId,
};

impl HeartbeatSection for Gossip {
    const ID: SectionId = 10;
    const VERSION: u16 = 1;
    const NAME: &'static str = "gossip";

    fn write(&self, out: &mut FieldWriter) {
        out.records(&self.placements)
            .records(&self.reports)
            .field(&self.held_down);
    }

    fn read(_version: u16, fields: &mut FieldReader<'_>) -> Result<Self, SectionError> {
        Ok(Gossip {
            placements: fields.records()?,
            reports: fields.records()?,
            held_down: fields.field()?,
        })
    }
}
