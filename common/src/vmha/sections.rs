//! VM HA's heartbeat sections: what the sender's hypervisor can give, the assignments it
//! decided as coordinator, the starts that failed on it and the domains it holds lost.

use crate::hostlink::{HaAssignment, HaFailure, HaLost, HostCapacity};
use crate::membership::section::{
    record_list_section, FieldReader, FieldWriter, HeartbeatSection, SectionError, SectionId,
};

/// What the sender's hypervisor can give its domains (absent: unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity(pub HostCapacity);

/// VM HA assignments the sender decided as coordinator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaPlan(pub Vec<HaAssignment>);

/// VM HA starts that failed on the sender.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaFailures(pub Vec<HaFailure>);

/// VM HA domains the sender holds lost (not running anywhere yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaLostDomains(pub Vec<HaLost>);

impl HeartbeatSection for Capacity {
    const ID: SectionId = 6;
    const VERSION: u16 = 1;
    const NAME: &'static str = "capacity";

    fn write(&self, out: &mut FieldWriter) {
        out.field(&self.0.memory_kib).field(&self.0.cpus);
    }

    fn read(_version: u16, fields: &mut FieldReader<'_>) -> Result<Self, SectionError> {
        Ok(Capacity(HostCapacity {
            memory_kib: fields.field()?,
            cpus: fields.field()?,
        }))
    }
}

record_list_section!(HaPlan, 7, "ha_plan");
record_list_section!(HaFailures, 8, "ha_failed");
record_list_section!(HaLostDomains, 9, "ha_lost");
