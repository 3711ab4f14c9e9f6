//! hvcluster's simulations: the real cores of `hvcluster-common` on virtual time.
//!
//! - [`hosts`]: the host cluster alone (membership, quorum, fencing), faults on a timer.
//! - [`guests`]: one guest cluster alone (membership, guest node states, the
//!   userApplication engine, the hosts' kill gate).
//! - [`system`]: the whole system, N hosts and the guest nodes placed on them as
//!   domains, driven through one adapter per agent; its schedules are recorded as steps,
//!   checked after every step, shrunk when they fail and printed as a text that replays.

pub mod guests;
pub mod hosts;
pub mod rng;
pub mod system;
