//! The runtime both hvcluster agents share: the cluster sockets and their roster
//! (`net`, `intake`, `outbox`), the admin server, the host-link transports, child
//! processes and the resource runners (Cmdline, OCF, virtual IP), the application
//! runner glue, state files, events, counters, the incarnation, daemon set-up and the
//! service manager's notifications. It knows nothing of the hypervisor: what only a host
//! needs (libvirt, fencing, kdump, the load watchdog) is in the host agent.

pub mod admin;
pub mod apps;
pub mod audit;
pub mod child;
pub mod counters;
pub mod daemon;
pub mod events;
pub mod incarnation;
pub mod intake;
pub mod link;
pub mod member;
pub mod net;
pub mod outbox;
pub mod port;
pub mod process;
pub mod resources;
pub mod service;
pub mod state_writer;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
