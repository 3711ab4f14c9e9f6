//! The whole system: N hosts (each the real `HostCore`: membership, quorum, fencing with
//! BMCs that work, fail, hang or die with their host, kdump notices true and forged,
//! journals on disks that fail, host-down notices to linked guests) and one guest cluster of M nodes whose domains are placed on the hosts (the
//! application engine, the kill gate, host-down notices, VM HA restarting the domains
//! of a host proved DOWN), on virtual time, over a network that cuts (one way too),
//! loses, duplicates, delays and reorders.
//!
//! A schedule is a seed and [`Params`]; its run is the list of [`Step`]s the scheduler
//! chose, and replaying that list (with the seed) runs the same world again. A failing
//! schedule is shrunk ([`shrink`]) and printed as a [`Schedule`] text that replays it.
//!
//! Safety, checked after every tick: an application never runs on two guest nodes; a
//! node is never ordered killed twice without a new incarnation between; no host fences
//! without quorum; no DOWN without the proof it names being true; no DOWN acted on
//! before it was journaled, and nothing journaled lost when an agent reloads; a domain
//! never restarted while it still runs on its host; a host-down notice never names a
//! running guest as dead. Liveness, once every fault heals:
//! every host that is off is DOWN on every running host and its domains run elsewhere
//! (when the running hosts are quorate), and the guest cluster settles (see
//! [`crate::guests::quiet_period`]).

pub mod campaign;
mod guest_links;
pub mod host_agent;
pub mod hosts;
pub mod leave;
mod run;
pub mod step;
pub mod world;

/// Failures the simulation found in the cores and that are reported, not fixed yet:
/// (what the failure says, why). A run counts them apart; every other failure fails it.
pub const KNOWN: &[(&str, &str)] = &[
    (
        "fenced each other",
        "fencing: in a two-node split, a fence device that hangs longer than the race delay \
         powers its target off after the weaker side, its delay over, fenced the stronger \
         one: each fence took the other host down (docs/simulation.md)",
    ),
    (
        "just started, fences",
        "fencing: rarer since a host failed before it was heard joins when heard (about one \
         schedule in 1,000 still): a host that just booted fences a peer it sees alive \
         that accuses its new incarnation (docs/simulation.md)",
    ),
    (
        "by an old record",
        "fencing: a DOWN record names the latest incarnation its prover heard; a peer that \
         hears nothing of the host's later life (cut off from it) adopts a record of an \
         earlier life while the host runs a later one, and acts on it (docs/simulation.md)",
    ),
];

/// The known finding `failure` is, if any.
pub fn known(failure: &str) -> Option<&'static str> {
    KNOWN
        .iter()
        .find(|(what, _)| failure.contains(what))
        .map(|(_, why)| *why)
}

pub use run::{explore, replay, shrink, Flaw, Outcome, Params, Schedule};
pub use step::Step;
