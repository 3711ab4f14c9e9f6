//! hvcluster's I/O-free core: configuration, the authenticated wire protocol, the
//! membership failure detector and quorum. Nothing here touches a socket, a clock or a
//! thread; the agents feed it events and perform the actions it returns.

pub mod admin;
pub mod application;
pub mod config;
pub mod fencing;
pub mod guest;
pub mod heartbeat_budget;
pub mod host;
pub mod host_heartbeat;
pub mod hostlink;
pub mod hostseal;
pub mod kdump;
pub mod kill_gate;
pub mod link_admission;
pub mod link_identity;
pub mod maintenance;
pub mod membership;
pub mod migration;
pub mod quorum;
pub mod vmha;
pub mod wire;
