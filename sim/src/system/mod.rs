//! The whole system: N hosts (membership, quorum, fencing with BMCs that work, fail,
//! hang or die with their host, kdump notices true and forged, journals on disks that
//! fail) and one guest cluster of M nodes whose domains are placed on the hosts (the
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
//! never restarted while it still runs on its host. Liveness, once every fault heals:
//! every host that is off is DOWN on every running host and its domains run elsewhere
//! (when the running hosts are quorate), and the guest cluster settles (see
//! [`crate::guests::quiet_period`]).

pub mod campaign;
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
        "membership: a host failed as never heard (its agent started while the other was \
     off or cut off) is heard later with a first frame and marked must-rejoin, but \
     nothing makes it rejoin; the accused side fences its accuser (the one-way partition \
     rule) while the accuser, once quorate, fences it: a duel (docs/simulation.md)",
    ),
    (
        "just started, fences",
        "fencing: a host that just booted is heard by peers that still hold it Failed and \
         accuse its new incarnation; counting them in its quorum, it takes itself for the \
         stronger end of a one-way partition and fences them before it is expelled and \
         rejoins (docs/simulation.md)",
    ),
    (
        "by an old record",
        "fencing: a DOWN record proves the life its prover knew; a peer that does not \
         hear the host (just booted, rejoined, or cut off) adopts a record of an earlier \
         life while the host runs a later one, and acts on it (docs/simulation.md)",
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
