//! The command line: every command, its arguments and the help that explains them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Administer an hvcluster host cluster or guest cluster.
///
/// hvctl talks to the agent of this machine through its admin socket (root only): the
/// host agent (hv-hostd) on a hypervisor, the guest agent (hv-guestd) inside a guest of
/// a guest cluster. `status` and `events` work with either; `fence` and `host` need a
/// host agent, `app` and `node` a guest agent. Every command that shows state takes
/// --json for scripts.
#[derive(Debug, Parser)]
#[command(name = "hvctl", version, about, long_about)]
pub(crate) struct Cli {
    /// Admin socket of the local agent [default: /run/hvcluster/hostd.sock if it exists,
    /// else /run/hvcluster/guestd.sock]
    #[arg(long, global = true, env = "HV_ADMIN_SOCKET")]
    pub(crate) socket: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the hosts (or guest nodes), their states and reasons, and the applications.
    ///
    /// From a host agent: hosts, links, quorum and load verdicts. States: Up (alive,
    /// counted for quorum), Joining (heard, not yet for long enough), Suspect (silent
    /// past suspect_after_ms, still counted), Failed (silent past dead_after_ms, a kdump
    /// panic notice, or reported hung), Unknown (not heard since this agent started).
    /// "must rejoin" marks a Failed host heard again without restarting: it is not
    /// counted until it rejoins with a new incarnation.
    ///
    /// From a guest agent: the guest nodes and the applications. Node states: UP (in the
    /// cluster), COMINGUP (not heard yet, or not for long enough), LEFTCLUSTER (silent
    /// and not proved dead: what ran there may still run), DOWN (proved dead, or back
    /// with a new incarnation and not joined yet). Applications: their state on each
    /// node, where they are Online, faults, this node's resources, maintenance mode.
    Status {
        /// Print the agent's JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the agent's recorded events (membership changes, quorum, dropped frames).
    Events {
        /// Keep printing new events as they happen.
        #[arg(short, long)]
        follow: bool,
        /// Only events after this sequence number.
        #[arg(long)]
        since: Option<u64>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Fence a host now, show the fencing history, or check the fence devices.
    ///
    /// `hvctl fence HOST` powers HOST off through its fence levels, from level 1. Use it
    /// when a host must stop whatever its state, for instance when it still sends
    /// heartbeats but its guests are stuck. The agent of this host runs the levels (this
    /// host must be in the quorate partition) and answers as soon as level 1 has started;
    /// the outcome comes as events (`hvctl events -f`) and in `hvctl fence history`. Once
    /// the power-off is confirmed the host is DOWN and every host learns it.
    ///
    /// A host named `history`, `check` or `help` is fenced with `hvctl fence --yes -- NAME`.
    Fence(FenceArgs),
    /// Act on one host: confirm that it is powered off, or take it out of service.
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
    /// Act on a userApplication: switch, online, offline, clear, maintenance (a guest
    /// cluster's on its guest agent, a host-side one on the host agent).
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Domains (VMs) of the cluster's hypervisors (host agent, with [hypervisor] uri).
    Vm {
        #[command(subcommand)]
        command: VmCommand,
    },
    /// Act on a node of a guest cluster: mark a LEFTCLUSTER node DOWN (guest agent).
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Check configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

const APP_HELP: &str = "\
For an application of a guest cluster, run it inside a guest of that cluster: the guest
agent there carries the command out and tells every other node. For a host-side
application ([[application]] of cluster.toml, e.g. a VM under hv-guest resources), run
it on any host: the nodes are then hosts. The command is answered once the new
placement is decided; the start and stop themselves follow: watch them with
`hvctl events -f` and `hvctl status`.

Every app command but `maintenance` is refused while the application is in maintenance
mode, and for a name that is not an [[application]] of the agent's configuration.

Exit status: 0 done, 1 refused by the agent (its reason is printed), 2 the agent cannot
be reached or the command line is wrong.";

#[derive(Debug, Subcommand)]
#[command(after_help = APP_HELP)]
pub(crate) enum AppCommand {
    /// Switch an application to NODE, or to the best other node of its list
    ///
    /// The node it runs on stops it (reason SWITCH), then NODE starts it.
    ///
    /// Refused when NODE is not in guest.toml or not in the application's node list,
    /// when NODE is not UP, while the application is Faulted on NODE (hvctl app clear
    /// first), when it already runs on NODE, when no other node can take it, and while
    /// the node it is placed on is LEFTCLUSTER (it may still run there: check that node
    /// is off, then hvctl node down NODE).
    ///
    /// Examples:
    ///   hvctl app switch web vm2
    ///   hvctl app switch web           to the next node in priority order
    #[command(verbatim_doc_comment, after_help = APP_HELP)]
    Switch {
        /// Application name, as in guest.toml (cluster.toml for a host-side one).
        app: String,
        /// Target node; the best other node when absent.
        node: Option<String>,
    },
    /// Bring an Offline application Online on its best node
    ///
    /// Refused when it is already placed and running, when no node can take it, and
    /// while a node of its list is LEFTCLUSTER (it may still run there).
    ///
    /// Example:
    ///   hvctl app online web
    #[command(verbatim_doc_comment, after_help = APP_HELP)]
    Online {
        /// Application name, as in guest.toml (cluster.toml for a host-side one).
        app: String,
    },
    /// Take an application Offline on every node
    ///
    /// Its resources are stopped, last to first. It stays Offline until hvctl app
    /// online or switch. Refused when it is already Offline everywhere.
    ///
    /// Example:
    ///   hvctl app offline web
    #[command(verbatim_doc_comment, after_help = APP_HELP)]
    Offline {
        /// Application name, as in guest.toml (cluster.toml for a host-side one).
        app: String,
    },
    /// Clear an application's faults on every node
    ///
    /// Each node where it is Faulted runs its stop (reason STOP) and becomes Offline,
    /// so it can run there again. Fix the cause first: hvctl status shows the fault.
    /// Refused when it is not Faulted on any node.
    ///
    /// Example:
    ///   hvctl app clear web
    #[command(verbatim_doc_comment, after_help = APP_HELP)]
    Clear {
        /// Application name, as in guest.toml (cluster.toml for a host-side one).
        app: String,
    },
    /// Switch maintenance mode on or off
    ///
    /// While on, the cluster takes no automatic action for the application: no start,
    /// stop, restart or switch on a failure; checks go on reporting. Use it to work on
    /// the application's resources by hand. Switch it off when they are back as the
    /// cluster left them. Refused when it is already in (out of) maintenance mode.
    ///
    /// Examples:
    ///   hvctl app maintenance web on
    ///   hvctl app maintenance web off
    #[command(verbatim_doc_comment, after_help = APP_HELP)]
    Maintenance {
        /// Application name, as in guest.toml (cluster.toml for a host-side one).
        app: String,
        /// `on` or `off`.
        mode: OnOff,
    },
}

/// A switch position.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum OnOff {
    On,
    Off,
}

#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Mark a LEFTCLUSTER node DOWN because you verified that it is off
    ///
    /// A silent node is LEFTCLUSTER, not DOWN: nothing proves it stopped, so what ran
    /// there may still run, and its applications stay where they are. When no host link
    /// can prove it, check the node yourself (its console, the hypervisor: virsh
    /// domstate, or stop the VM) and then run this. Your word is the proof: it is shared
    /// with every node, and the applications that ran on NODE may switch. A wrong
    /// confirmation can run the same application twice, so check first.
    ///
    /// Refused while NODE is heard alive (its heartbeats arrive: UP, COMINGUP, or
    /// LEFTCLUSTER but heard again), for a node already DOWN, for the node you are on,
    /// and for a name that is not a [[node]] of guest.toml.
    ///
    /// Without --yes, hvctl asks on the terminal first; when standard input is not a
    /// terminal it refuses before contacting the agent (exit 2).
    ///
    /// Exit status: 0 NODE is DOWN, 1 refused or not confirmed, 2 the agent cannot be
    /// reached, --yes is missing without a terminal, or the command line is wrong.
    ///
    /// Examples:
    ///   hvctl node down vm2
    ///   hvctl node down vm2 --yes
    #[command(verbatim_doc_comment)]
    Down {
        /// The node, by its name in guest.toml.
        node: String,
        /// Do not ask for confirmation (needed when standard input is not a terminal).
        #[arg(short, long)]
        yes: bool,
    },
}

const FENCE_HELP: &str = "\
Refused (exit 1, with the agent's reason) when this host's partition has no quorum, for
this host itself, for a host without fence_levels, for a host already DOWN, and while a
level against that host runs.

Without --yes, hvctl asks `Fence HOST now? Its power will be cut. [y/N]` on the terminal.
When standard input is not a terminal it refuses before contacting the agent (exit 2):
scripts pass --yes.

Exit status: 0 fencing started, 1 refused by the agent or not confirmed, 2 the agent
cannot be reached, --yes is missing without a terminal, or the command line is wrong.

Examples:
  hvctl fence kvm3                 ask, then fence kvm3 from level 1
  hvctl fence kvm3 --yes           the same, without asking
  hvctl events -f                  follow the levels and the DOWN
  hvctl fence history              what fencing this host journaled
  hvctl fence check                call `monitor` on every fence device";

#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = FENCE_HELP
)]
pub(crate) struct FenceArgs {
    #[command(subcommand)]
    pub(crate) command: Option<FenceCommand>,
    /// The host to fence, by its name in cluster.toml.
    #[arg(required = true, value_name = "HOST")]
    pub(crate) host: Option<String>,
    /// Do not ask for confirmation (needed when standard input is not a terminal).
    #[arg(short, long)]
    pub(crate) yes: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum FenceCommand {
    /// Show this host's fencing journal: levels started and failed, DOWN and its proof
    ///
    /// Each host journals what it did and what it learned from its peers, so hosts may
    /// show different histories. Times are UTC. Always allowed.
    ///
    /// Examples:
    ///   hvctl fence history
    ///   hvctl fence history --json | jq 'select(.host == "kvm3")'
    #[command(verbatim_doc_comment)]
    History {
        /// One JSON object per record and line: seq, unix_ms, host, text, event.
        #[arg(long)]
        json: bool,
    },
    /// Call `monitor` on every fence device of kind agent, all at once, and show results
    ///
    /// Each call is bounded by the device's timeout_ms; kdump and manual devices have
    /// nothing to call and are listed as not checkable. Nothing is powered off. Run it
    /// after changing a device, and now and then: a fence device that fails when it is
    /// needed leaves a host Failed-unfenced.
    ///
    /// Exit status: 0 every checkable device answered, 1 one or more failed, 2 the agent
    /// cannot be reached.
    ///
    /// Examples:
    ///   hvctl fence check
    ///   hvctl fence check --json
    #[command(verbatim_doc_comment)]
    Check {
        /// One JSON object per device and line: name, kind, ok, elapsed_ms, summary.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum VmCommand {
    /// Every domain that runs (or is paused) on a host of the cluster, and where.
    ///
    /// Each host agent lists its own hypervisor's domains every second and tells the
    /// others; a domain reported by two hosts not proved down is marked RUNS ON TWO HOSTS.
    List {
        /// Print the rows as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Where domain NAME (or UUID) runs. Exit 0 when it runs somewhere, 1 when nowhere.
    Locate {
        /// Domain name or UUID.
        name: String,
    },
    /// Start the defined domain NAME on this host. Refused (exit 1) while any host not
    /// proved down reports it running (a failed host not fenced yet included): a domain
    /// must never run twice.
    Start {
        /// Domain name or UUID.
        name: String,
    },
    /// Stop domain NAME on this host: the guest is asked to shut down and is powered off
    /// if it has not within --timeout seconds. Exit 0 also when it was already off.
    Stop {
        /// Domain name or UUID.
        name: String,
        /// Seconds the guest has to shut itself down before it is powered off (at most
        /// 3600).
        #[arg(long, default_value_t = 120, value_name = "SECONDS",
              value_parser = clap::value_parser!(u64).range(0..=3600))]
        timeout: u64,
        /// Power it off at once, without asking the guest (its unwritten data is lost).
        #[arg(long)]
        force: bool,
    },
    /// Pause the running domain NAME on this host: its CPUs stop, its memory stays. The
    /// guest cluster sees a paused guest as silent and may have it killed.
    Suspend {
        /// Domain name or UUID.
        name: String,
    },
    /// Let the paused domain NAME on this host run again.
    Resume {
        /// Domain name or UUID.
        name: String,
    },
    /// Move domain NAME, which runs on this host, to another host
    ///
    /// Run it on the host that runs the domain. Before anything is done the agent
    /// checks that HOST is Up in the host cluster, has reported its capacity, and has
    /// room for the domain (memory not overcommitted, vCPUs within [vm_ha] vcpu_ratio),
    /// and that the domain is not being moved already; a refusal says which (exit 1).
    /// While it moves, progress is printed every second (memory left, rate); the answer
    /// says how long it took and, live, how long the guest was paused. A migration that
    /// fails or times out leaves the domain running here (exit 2, with libvirt's reason).
    ///
    /// Modes: live (the guest keeps running; it pauses for the last round only, at most
    /// --max-downtime), offline (paused first, moved while paused, resumed on HOST unless
    /// --leave-paused), export (a stopped domain: defined on HOST, undefined here, and
    /// started there with --start; to move a guest to a spare server).
    ///
    /// Examples:
    ///   hvctl vm migrate web-db1 --to kvm2
    ///   hvctl vm migrate web-db1 --to kvm2 --mode offline
    ///   hvctl vm migrate web-db1 --to kvm2 --dry-run
    ///   hvctl vm migrate web-db1 --to spare1 --mode export --start
    #[command(verbatim_doc_comment)]
    Migrate {
        /// Domain name or UUID.
        name: String,
        /// Destination host, by its name in cluster.toml.
        #[arg(long, value_name = "HOST")]
        to: String,
        /// How it moves.
        #[arg(long, value_enum, default_value_t = MigrateMode::Live)]
        mode: MigrateMode,
        /// Live: the longest pause of the last round, ms ([migration] max_downtime_ms).
        #[arg(long, value_name = "MS")]
        max_downtime: Option<u64>,
        /// Abort when not done after this many seconds ([migration] timeout_s).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
        /// Offline: leave the domain paused on HOST.
        #[arg(long)]
        leave_paused: bool,
        /// Export: start the domain on HOST once it is defined there.
        #[arg(long)]
        start: bool,
        /// Only check and say what would happen.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `hvctl vm migrate --mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MigrateMode {
    /// The guest keeps running while it moves.
    Live,
    /// Paused, moved, resumed.
    Offline,
    /// A stopped domain's definition moves (export/import).
    Export,
}

#[derive(Debug, Subcommand)]
pub(crate) enum HostCommand {
    /// Declare a host DOWN because you verified that it is powered off
    ///
    /// Use it when no fence level can prove it (no fence_levels, a manual level, every
    /// level failing) and you checked the host yourself: at its console, BMC or PDU, or
    /// by pulling its power. Your confirmation is the proof: it is journaled and shared
    /// with every host, and what ran on the host may be started elsewhere. A wrong
    /// confirmation can run the same guest twice, so check first.
    ///
    /// Refused (exit 1, with what was heard and what to check) while the host is heard
    /// alive (Joining, Up, Suspect, or Failed but heard again), for this host itself and
    /// for a host already DOWN. Allowed without quorum.
    ///
    /// Without --yes, hvctl asks on the terminal first; when standard input is not a
    /// terminal it refuses before contacting the agent (exit 2).
    ///
    /// Exit status: 0 DOWN journaled, 1 refused or not confirmed, 2 the agent cannot be
    /// reached, --yes is missing without a terminal, or the command line is wrong.
    ///
    /// Examples:
    ///   hvctl host confirm-down kvm3
    ///   hvctl host confirm-down kvm3 --yes
    #[command(verbatim_doc_comment)]
    ConfirmDown {
        /// The host, by its name in cluster.toml.
        host: String,
        /// Do not ask for confirmation (needed when standard input is not a terminal).
        #[arg(short, long)]
        yes: bool,
    },
    /// Take this host out of the host cluster cleanly and stop its agent
    ///
    /// Run it on HOST itself; it does what `systemctl stop hv-hostd` (SIGTERM) does. The
    /// host-side applications running on HOST are stopped first (they switch where
    /// shut_down is in auto_switch_over; at most 15 minutes), then HOST's last heartbeats
    /// tell the other hosts it leaves: they hold it Left, not Failed, so it is not fenced,
    /// not declared DOWN, and its vote is no longer expected for quorum. hv-hostd then
    /// exits. HOST's domains run on, but nothing can kill one of them while hv-hostd is
    /// stopped: a kill its guest cluster asks for is refused. Start hv-hostd again
    /// (systemctl start hv-hostd) to rejoin. To move the domains away first, use
    /// hvctl host maintenance HOST on.
    ///
    /// Without --yes, hvctl asks on the terminal first; when standard input is not a
    /// terminal it refuses before contacting the agent (exit 2).
    ///
    /// Exit status: 0 the agent leaves, 1 refused or not confirmed, 2 the agent cannot be
    /// reached, --yes is missing without a terminal, or the command line is wrong.
    ///
    /// Examples:
    ///   hvctl host leave kvm2
    ///   hvctl host leave kvm2 --yes
    #[command(verbatim_doc_comment)]
    Leave {
        /// This host, by its name in cluster.toml.
        host: String,
        /// Do not ask for confirmation (needed when standard input is not a terminal).
        #[arg(short, long)]
        yes: bool,
    },
    /// Take a host out of service to work on it, and bring it back
    ///
    /// Run it on HOST itself. `on`: HOST takes no domain any more (no migration to it,
    /// no VM HA start) and moves every domain it runs to the other hosts, one at a time,
    /// each to the Up host with the most free memory that can take it, live unless
    /// [[migration.domain]] or [migration] evacuate_mode says offline; each guest's
    /// cluster is asked first, as for hvctl vm migrate. The answer comes at once; follow
    /// the evacuation with hvctl events -f, and hvctl status until it says all moved. A
    /// domain that cannot move is tried again, then reported stuck (run `on` again to
    /// retry). `off`: HOST takes domains again, and the domains evacuated with
    /// failback = true in [[migration.domain]] are moved back to it by the hosts that run
    /// them.
    ///
    /// Examples:
    ///   hvctl host maintenance kvm1 on
    ///   hvctl host maintenance kvm1 off
    #[command(verbatim_doc_comment)]
    Maintenance {
        /// This host, by its name in cluster.toml.
        host: String,
        /// `on` or `off`.
        mode: OnOff,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a cluster.toml or a guest.toml and print every problem with its file, line and key.
    ///
    /// Exit status: 0 when valid, 1 when there are problems.
    Check {
        /// The file to check.
        file: PathBuf,
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the hosts' public key for the host link, for guest.toml.
    ///
    /// Every host agent signs what it tells guests over the host link with a key derived
    /// from the host cluster key (the same on every host). Guests check it with this
    /// public key: put the printed line in [host_link] of each guest cluster's
    /// guest.toml. It changes only when the host cluster key changes. Needs to read the
    /// key file of cluster.toml (root).
    ///
    /// Example:
    ///   hvctl config host-link-key /etc/hvcluster/cluster.toml
    #[command(verbatim_doc_comment)]
    HostLinkKey {
        /// The host cluster's cluster.toml.
        file: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use hvcluster_common::config::guest::DEFAULT_GUEST_ADMIN_SOCKET;
    use hvcluster_common::config::DEFAULT_ADMIN_SOCKET;

    use hvcluster_common::admin::Request;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn socket_help_names_both_default_sockets() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains(DEFAULT_ADMIN_SOCKET), "{help}");
        assert!(help.contains(DEFAULT_GUEST_ADMIN_SOCKET), "{help}");
    }

    #[test]
    fn app_commands_map_to_guest_requests() {
        let request = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["hvctl"], args].concat()).unwrap();
            match cli.command {
                Command::App { command } => match command {
                    AppCommand::Switch { app, node } => Request::AppSwitch { app, node },
                    AppCommand::Maintenance { app, mode } => Request::AppMaintenance {
                        app,
                        on: matches!(mode, OnOff::On),
                    },
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            request(&["app", "switch", "web"]),
            Request::AppSwitch {
                app: "web".into(),
                node: None
            }
        );
        assert_eq!(
            request(&["app", "switch", "web", "vm2"]),
            Request::AppSwitch {
                app: "web".into(),
                node: Some("vm2".into())
            }
        );
        assert_eq!(
            request(&["app", "maintenance", "web", "on"]),
            Request::AppMaintenance {
                app: "web".into(),
                on: true
            }
        );
        assert!(Cli::try_parse_from(["hvctl", "app", "maintenance", "web", "maybe"]).is_err());
    }
}
