//! What the host agent's driver loop receives from its tasks.

use std::net::SocketAddr;
use std::time::Instant;

use hvcluster_common::config::NodeId;

use super::domains;
use crate::admin::AdminCall;
use hvcluster_common::admin::HostStatus;
use hvcluster_common::membership::WatchdogVerdict;

/// What the driver loop receives from its tasks.
#[derive(Debug)]
pub enum Input {
    /// A datagram on the kdump port.
    Kdump {
        /// When it was received.
        at: Instant,
        /// Source address.
        from: SocketAddr,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The load watchdog changed its verdict.
    Watchdog(WatchdogVerdict),
    /// An admin client wants the status, or gives an operator command
    /// ([`crate::operator`]).
    Admin(AdminCall<HostStatus>),
    /// Something happened on a host link.
    Link(crate::link::LinkInput),
    /// The hypervisor's list of domains, or why it could not be had.
    Domains(Result<domains::Listing, String>),
    /// A VM HA start on this host ended.
    HaStarted {
        /// Domain UUID.
        uuid: String,
        /// Domain name.
        name: String,
        /// What libvirt said.
        result: Result<(), String>,
    },
    /// A destroy command ended: for the order `id` of host `from` (this host's own
    /// order when `from` is this host).
    Destroyed {
        /// Host that gave the order.
        from: NodeId,
        /// The order.
        id: u64,
        /// The guest is off.
        ok: bool,
        /// What happened.
        detail: String,
        /// The domain, when it was not running here (no proof by itself).
        not_running: Option<String>,
    },
    /// How the running migration advances.
    MigrationProgress(hvcluster_libvirt::Progress),
    /// The running migration ended.
    Migrated(Result<hvcluster_libvirt::Migrated, String>),
    /// A resource operation of a host-side application ended.
    AppOpDone {
        /// Operation id.
        id: u64,
        /// How it ended.
        outcome: hvcluster_common::application::OpOutcome,
    },
    /// A start or stop of a host-side application's resource ended and the hypervisor
    /// was listed after it.
    AppOpListed {
        /// Operation id.
        id: u64,
        /// How it ended.
        outcome: hvcluster_common::application::OpOutcome,
        /// The listing, unless the hypervisor did not answer in time.
        listed: Option<Result<domains::Listing, String>>,
    },
    /// A fence level finished.
    FenceResult {
        /// The host fenced.
        target: NodeId,
        /// Level index, from 0.
        level: usize,
        /// Every device powered it off and confirmed OFF.
        ok: bool,
        /// What each device did.
        detail: String,
    },
    /// The state writer finished a write of a state file ([`saves`]).
    StateSaved,
    /// The fencing journal's writer finished a write.
    Journaled {
        /// The DOWN record the fencing core waits for, when it was one.
        down: Option<hvcluster_common::fencing::DownRecord>,
        /// Whether it is on disk, or why not.
        result: Result<(), String>,
    },
}
