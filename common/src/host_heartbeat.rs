//! What a host agent shares in its heartbeats beyond the membership header: the section
//! of every capability it runs, gathered in one place to write them into a heartbeat and
//! to read a peer's (each section's layout stays with its capability).
//!
//! Reading never fails as a whole: an unknown section is skipped and reported, a section
//! that does not decode is left out (read as empty) and reported, and the rest counts.

use crate::application::Gossip;
use crate::fencing::{DownRecord, Downs};
use crate::hostlink::{
    DomainPresence, Domains, GuestPresence, Guests, HaAssignment, HaFailure, HaLost, HostCapacity,
    KillAnswer, KillAnswers, KillOrder, KillOrders,
};
use crate::maintenance::Maintenance;
use crate::membership::section::{HeartbeatSection, SectionError, SectionId};
use crate::membership::Heartbeat;
use crate::migration::{Locks, MigrationLock};
use crate::vmha::{Capacity, HaFailures, HaLostDomains, HaPlan};

/// Every section a host agent knows: id and name.
pub const HOST_SECTIONS: [(SectionId, &str); 12] = [
    (Downs::ID, Downs::NAME),
    (Guests::ID, Guests::NAME),
    (KillOrders::ID, KillOrders::NAME),
    (KillAnswers::ID, KillAnswers::NAME),
    (Domains::ID, Domains::NAME),
    (Capacity::ID, Capacity::NAME),
    (HaPlan::ID, HaPlan::NAME),
    (HaFailures::ID, HaFailures::NAME),
    (HaLostDomains::ID, HaLostDomains::NAME),
    (Gossip::ID, Gossip::NAME),
    (Locks::ID, Locks::NAME),
    (Maintenance::ID, Maintenance::NAME),
];

/// The sections of a host heartbeat, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSections {
    /// Hosts the sender holds DOWN with proof (fencing).
    pub down: Vec<DownRecord>,
    /// Guests linked to the sender (host link).
    pub guests: Vec<GuestPresence>,
    /// Orders to other hosts to destroy one of their guests, until answered.
    pub kill_orders: Vec<KillOrder>,
    /// Answers to other hosts' kill orders.
    pub kill_answers: Vec<KillAnswer>,
    /// Domains that may run on the sender (not off, not crashed).
    pub domains: Vec<DomainPresence>,
    /// What the sender's hypervisor can give its domains (VM HA placement).
    pub capacity: Option<HostCapacity>,
    /// VM HA assignments the sender decided as coordinator.
    pub ha_plan: Vec<HaAssignment>,
    /// VM HA starts that failed on the sender.
    pub ha_failed: Vec<HaFailure>,
    /// VM HA domains the sender holds lost.
    pub ha_lost: Vec<HaLost>,
    /// The sender's application engine (host-side applications; empty without any).
    pub gossip: Gossip,
    /// Migrations the sender runs (and ran in the last seconds).
    pub migrations: Vec<MigrationLock>,
    /// The sender is in maintenance: it takes no domain.
    pub maintenance: bool,
    /// Domains the sender wants back after its maintenance (failback).
    pub failback: Vec<String>,
}

/// Something in a received heartbeat's sections that was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionIssue {
    /// A section id this build does not know (a newer agent's): skipped.
    Unknown {
        /// Its id.
        id: SectionId,
        /// Its layout version.
        version: u16,
    },
    /// A known section that does not decode: left out, read as empty.
    Dropped {
        /// Its name.
        name: &'static str,
        /// Its layout version.
        version: u16,
        /// Why.
        error: SectionError,
    },
}

impl HostSections {
    /// Sets the sections of `hb` (an empty one is left out: absent reads as empty).
    pub fn write(&self, hb: &mut Heartbeat) {
        fn put<S: HeartbeatSection>(hb: &mut Heartbeat, empty: bool, value: S) {
            if empty {
                hb.remove(S::ID);
            } else {
                hb.put(&value);
            }
        }
        put(hb, self.down.is_empty(), Downs(self.down.clone()));
        put(hb, self.guests.is_empty(), Guests(self.guests.clone()));
        put(
            hb,
            self.kill_orders.is_empty(),
            KillOrders(self.kill_orders.clone()),
        );
        put(
            hb,
            self.kill_answers.is_empty(),
            KillAnswers(self.kill_answers.clone()),
        );
        put(hb, self.domains.is_empty(), Domains(self.domains.clone()));
        match self.capacity {
            Some(c) => hb.put(&Capacity(c)),
            None => hb.remove(Capacity::ID),
        }
        put(hb, self.ha_plan.is_empty(), HaPlan(self.ha_plan.clone()));
        put(
            hb,
            self.ha_failed.is_empty(),
            HaFailures(self.ha_failed.clone()),
        );
        put(
            hb,
            self.ha_lost.is_empty(),
            HaLostDomains(self.ha_lost.clone()),
        );
        put(hb, self.gossip == Gossip::default(), self.gossip.clone());
        put(
            hb,
            self.migrations.is_empty(),
            Locks(self.migrations.clone()),
        );
        let maintenance = Maintenance {
            on: self.maintenance,
            failback: self.failback.clone(),
        };
        put(hb, maintenance == Maintenance::default(), maintenance);
    }

    /// The sections of `hb`, and what was not taken of them.
    pub fn read(hb: &Heartbeat) -> (HostSections, Vec<SectionIssue>) {
        let mut issues: Vec<SectionIssue> = hb
            .sections
            .iter()
            .filter(|s| !HOST_SECTIONS.iter().any(|(id, _)| *id == s.id))
            .map(|s| SectionIssue::Unknown {
                id: s.id,
                version: s.version,
            })
            .collect();
        let out = HostSections {
            down: get::<Downs>(hb, &mut issues)
                .map(|s| s.0)
                .unwrap_or_default(),
            guests: get::<Guests>(hb, &mut issues)
                .map(|s| s.0)
                .unwrap_or_default(),
            kill_orders: get::<KillOrders>(hb, &mut issues)
                .map(|s| s.0)
                .unwrap_or_default(),
            kill_answers: get::<KillAnswers>(hb, &mut issues)
                .map(|s| s.0)
                .unwrap_or_default(),
            domains: get::<Domains>(hb, &mut issues)
                .map(|s| s.0)
                .unwrap_or_default(),
            capacity: get::<Capacity>(hb, &mut issues).map(|s| s.0),
            ha_plan: get::<HaPlan>(hb, &mut issues)
                .map(|s| s.0)
                .unwrap_or_default(),
            ha_failed: get::<HaFailures>(hb, &mut issues)
                .map(|s| s.0)
                .unwrap_or_default(),
            ha_lost: get::<HaLostDomains>(hb, &mut issues)
                .map(|s| s.0)
                .unwrap_or_default(),
            gossip: get::<Gossip>(hb, &mut issues).unwrap_or_default(),
            migrations: get::<Locks>(hb, &mut issues)
                .map(|s| s.0)
                .unwrap_or_default(),
            maintenance: false,
            failback: Vec::new(),
        };
        let maintenance = get::<Maintenance>(hb, &mut issues).unwrap_or_default();
        (
            HostSections {
                maintenance: maintenance.on,
                failback: maintenance.failback,
                ..out
            },
            issues,
        )
    }
}

/// The section `S` of `hb`: `None` when absent or broken (then noted in `issues`).
fn get<S: HeartbeatSection>(hb: &Heartbeat, issues: &mut Vec<SectionIssue>) -> Option<S> {
    let version = hb.sections.iter().find(|s| s.id == S::ID)?.version;
    match hb.read::<S>()? {
        Ok(value) => Some(value),
        Err(error) => {
            issues.push(SectionIssue::Dropped {
                name: S::NAME,
                version,
                error,
            });
            None
        }
    }
}

#[cfg(test)]
mod tests;
