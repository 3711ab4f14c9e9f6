//! Host maintenance as hosts share it: the heartbeat section of a host in maintenance
//! (it takes no domain: no migration, no VM HA start) and of the domains it wants back
//! afterwards (failback: the host that runs one moves it there).

use crate::membership::section::{
    FieldReader, FieldWriter, HeartbeatSection, SectionError, SectionId,
};

/// The sender's maintenance section (absent: not in maintenance, nothing to fail back).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// The sender is in maintenance.
    pub on: bool,
    /// Domains the sender wants back after its maintenance.
    pub failback: Vec<String>,
}

impl HeartbeatSection for Maintenance {
    const ID: SectionId = 12;
    const VERSION: u16 = 1;
    const NAME: &'static str = "maintenance";

    fn write(&self, out: &mut FieldWriter) {
        out.field(&self.on).field(&self.failback);
    }

    fn read(_version: u16, fields: &mut FieldReader<'_>) -> Result<Self, SectionError> {
        Ok(Maintenance {
            on: fields.field()?,
            failback: fields.field()?,
        })
    }
}
