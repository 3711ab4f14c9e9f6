//! The steps of a scenario's timeline: faults, operator actions and expectations, with
//! their defaults.

use hvcluster_common::admin::GuestNodeState;
use hvcluster_common::application::AppState;
use serde::Deserialize;

use super::names::{AppWatch, ForgeKind, LinkName, ReasonName, StateName};

fn default_within() -> u64 {
    10_000
}
fn default_all_up_timeout() -> u64 {
    20_000
}

/// One step of the timeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Step {
    /// Wait until every host sees every other Up and quorate.
    WaitAllUp {
        /// Give up after this long.
        #[serde(default = "default_all_up_timeout")]
        timeout_ms: u64,
    },
    /// Let time pass.
    Sleep {
        /// How long.
        ms: u64,
    },
    /// Fault: the host's power is cut (every process of it killed at once).
    PowerLoss {
        /// The host.
        host: String,
    },
    /// Fault: the host crashes into its kdump kernel: its processes die at once, its
    /// network stays up (so the crash kernel can send a panic notice).
    Crash {
        /// The host.
        host: String,
    },
    /// The host is powered on again: its agent starts afresh.
    PowerOn {
        /// The host.
        host: String,
    },
    /// Fault: the host freezes (its processes stop, nothing is sent).
    Hang {
        /// The host.
        host: String,
    },
    /// The frozen host runs again.
    Thaw {
        /// The host.
        host: String,
    },
    /// Fault: one interconnect of the host stops carrying traffic.
    CutLink {
        /// The host.
        host: String,
        /// Interconnect index.
        interconnect: usize,
    },
    /// The interconnect carries traffic again.
    RestoreLink {
        /// The host.
        host: String,
        /// Interconnect index.
        interconnect: usize,
    },
    /// Fault: every interconnect of the host stops carrying traffic.
    Isolate {
        /// The host.
        host: String,
    },
    /// The isolated host is reconnected.
    Heal {
        /// The host.
        host: String,
    },
    /// Fault: packets from `from` no longer reach `to`; the other way works.
    OneWayCut {
        /// Sending host.
        from: String,
        /// Receiving host.
        to: String,
    },
    /// Fault: random loss of `percent` of the host's packets.
    Loss {
        /// The host.
        host: String,
        /// Loss percentage.
        percent: u8,
    },
    /// Removes every network fault of the host.
    ClearFaults {
        /// The host.
        host: String,
    },
    /// Runs stress-ng (cpu, vm, io) on the hosts for a while.
    Load {
        /// The hosts.
        hosts: Vec<String>,
        /// For how long.
        seconds: u64,
    },
    /// Fault: the host's crash kernel sends a kdump panic notice (fence_kdump_send).
    KdumpNotice {
        /// The host that "panicked".
        host: String,
    },
    /// A panic notice from an address that belongs to no host.
    KdumpNoticeRogue {},
    /// Forged frames from outside the cluster towards `to`.
    Forge {
        /// Target host.
        to: String,
        /// What is wrong with them.
        kind: ForgeKind,
        /// How many.
        #[serde(default = "default_forge_count")]
        count: u32,
    },
    /// Restarts the host's agent (SIGTERM, start).
    RestartAgent {
        /// The host.
        host: String,
    },
    /// Fault: the host's agent is stopped with SIGTERM and stays down (the host and its
    /// domains keep running); `start-agent` starts it again.
    StopAgent {
        /// The host.
        host: String,
    },
    /// Fault: the host's agent is killed with SIGKILL (the host itself keeps running).
    KillAgent {
        /// The host.
        host: String,
    },
    /// Starts the host's agent again.
    StartAgent {
        /// The host.
        host: String,
    },
    /// Runs the real `hvctl` against `on`'s agent with `args`; expects exit code `exit`.
    Hvctl {
        /// Host whose admin socket is used.
        on: String,
        /// Arguments after `--socket PATH`.
        args: Vec<String>,
        /// Expected exit code.
        #[serde(default)]
        exit: i32,
        /// Run it again (every 250 ms) until it exits as expected or this time has
        /// passed; 0: once.
        #[serde(default)]
        within_ms: u64,
        /// Text expected in what it printed.
        #[serde(default)]
        output: Option<String>,
    },
    /// Every observer sees `host` in `state` within the time limit.
    ExpectState {
        /// Hosts whose view is checked.
        observers: Vec<String>,
        /// The host looked at.
        host: String,
        /// The state.
        state: StateName,
        /// For Failed: the reason.
        #[serde(default)]
        reason: Option<ReasonName>,
        /// Time limit.
        #[serde(default = "default_within")]
        within_ms: u64,
        /// Name of the benchmark phase this measures (from the last fault to the last
        /// observer's state change).
        #[serde(default)]
        measure: Option<String>,
    },
    /// Every observer sees `host` in `state` for the whole period, without a change.
    ExpectStays {
        /// Hosts whose view is checked.
        observers: Vec<String>,
        /// The host looked at.
        host: String,
        /// The state.
        state: StateName,
        /// How long.
        for_ms: u64,
    },
    /// Every observer sees the link to `host` on `interconnect` in `state`.
    ExpectLink {
        /// Hosts whose view is checked.
        observers: Vec<String>,
        /// The host at the other end.
        host: String,
        /// Interconnect index.
        interconnect: usize,
        /// The link state.
        state: LinkName,
        /// Time limit.
        #[serde(default = "default_within")]
        within_ms: u64,
    },
    /// Each host reports quorum as given.
    ExpectQuorum {
        /// The hosts.
        hosts: Vec<String>,
        /// Quorate or not.
        quorate: bool,
        /// Time limit.
        #[serde(default = "default_within")]
        within_ms: u64,
    },
    /// A counter of `host`'s agent reaches a value.
    ExpectCounter {
        /// The host.
        host: String,
        /// Counter name as in `hvctl status --json`.
        counter: String,
        /// Smallest accepted value.
        at_least: u64,
        /// Time limit.
        #[serde(default = "default_within")]
        within_ms: u64,
    },
    /// Each observer recorded an event of `kind` (about `subject`) since the last fault.
    ExpectEvent {
        /// Hosts whose events are checked.
        observers: Vec<String>,
        /// Event kind, e.g. `incarnation`, `must_rejoin`, `kdump_refused`.
        kind: String,
        /// Host the event is about.
        #[serde(default)]
        subject: Option<String>,
        /// Text the event's message must contain, e.g. `LEFTCLUSTER -> DOWN`.
        #[serde(default)]
        message: Option<String>,
        /// Time limit.
        #[serde(default = "default_within")]
        within_ms: u64,
    },
    /// Every observer holds `host` DOWN with proof (of kind `proof` when given).
    ExpectDown {
        /// Hosts whose view is checked.
        observers: Vec<String>,
        /// The host looked at.
        host: String,
        /// `power-off`, `kdump-notice` or `operator`.
        #[serde(default)]
        proof: Option<String>,
        /// Time limit.
        #[serde(default = "default_within")]
        within_ms: u64,
        /// Name of the benchmark phase this measures (last fault to the last
        /// observer's `host_down` event).
        #[serde(default)]
        measure: Option<String>,
    },
    /// The simulated BMC of `host` reports its power as given.
    ExpectPower {
        /// The host.
        host: String,
        /// On or off.
        on: bool,
    },
    /// Times the real fence_ipmilan alone (`off`, then `status`) from `from` against
    /// `target`'s simulated BMC, as the agent would run it, and records it as `measure`.
    TimeFenceAgent {
        /// Host the agent runs on.
        from: String,
        /// Host whose BMC is driven.
        target: String,
        /// Name of the measure.
        measure: String,
    },
    /// No observer records an event of `kind` (about `subject`) for the whole period
    /// (events since the last fault count too).
    ExpectNoEvent {
        /// Hosts whose events are checked.
        observers: Vec<String>,
        /// Event kind.
        kind: String,
        /// Host the event is about.
        #[serde(default)]
        subject: Option<String>,
        /// How long to watch.
        for_ms: u64,
    },
    /// The hosts' agents are running and answer.
    ExpectAlive {
        /// The hosts.
        hosts: Vec<String>,
    },
    /// Fault: the guest crashes (every process of it killed at once; its `/run` is lost).
    GuestCrash {
        /// The guest.
        guest: String,
    },
    /// The host's simulated CPU pressure becomes `percent` (needs
    /// `simulated_pressure`): its load watchdog reports it slow above its threshold.
    Pressure {
        /// The host.
        host: String,
        /// `some avg10`, percent.
        percent: f64,
    },
    /// Fault: the guest hangs (every process of it frozen), its host stays fine.
    GuestHang {
        /// The guest.
        guest: String,
    },
    /// From inside `via`, a guest of another guest cluster asks `via`'s host to kill
    /// guest `target`; expects the refusal.
    StrangerKillRequest {
        /// Guest whose network (and host) the stranger uses.
        via: String,
        /// Guest it asks to kill.
        target: String,
    },
    /// The guest boots again: its agent starts afresh.
    GuestStart {
        /// The guest.
        guest: String,
    },
    /// Fault: `command` runs inside the guest to break one of its resources (e.g.
    /// removes the file a Cmdline check looks for).
    FailResource {
        /// The guest.
        guest: String,
        /// Shell command.
        command: String,
    },
    /// Runs a program on `host` (its namespace and cgroup) and expects exit code `exit`
    /// and, when given, `output` in what it printed. The first word is the program: a
    /// binary of the workspace (`hv-guest`, `hvctl`) or any program on the PATH
    /// (`virsh`, `sh`). In every word `{uri}` is the host's libvirt URI, `{socket}` its
    /// agent's admin socket and `{dir}` a directory of the host's in the lab.
    HostExec {
        /// The host.
        host: String,
        /// Program and arguments.
        command: Vec<String>,
        /// Expected exit code.
        #[serde(default)]
        exit: i32,
        /// Text expected in the output.
        #[serde(default)]
        output: Option<String>,
        /// Run it again (every 250 ms) until it gives what is expected or this time has
        /// passed; 0: once.
        #[serde(default)]
        within_ms: u64,
        /// While it runs, the observers must keep seeing an application Online on a
        /// guest, and that guest UP (e.g. during a migration of the guest).
        #[serde(default)]
        while_app: Option<AppWatch>,
        /// Start it and go on with the next steps; `await-background` checks how it
        /// ended. One at a time.
        #[serde(default)]
        background: bool,
    },
    /// Waits for the `host-exec` started in the background and checks its exit code and
    /// output.
    AwaitBackground {
        /// Longest wait.
        #[serde(default = "default_await_ms")]
        within_ms: u64,
    },
    /// Runs `command` inside the guest (as its resources see the system) and expects
    /// exit code `exit`: to prepare a resource or check what it did.
    GuestExec {
        /// The guest.
        guest: String,
        /// Shell command.
        command: String,
        /// Expected exit code.
        #[serde(default)]
        exit: i32,
    },
    /// Every observer (a guest, or a host for a host-side application) sees the
    /// application as described.
    ExpectApp {
        /// Guests whose view is checked.
        observers: Vec<String>,
        /// The application.
        app: String,
        /// The guest it is Online on, or `none` for nowhere.
        #[serde(default)]
        online_on: Option<String>,
        /// With `state`: the guest whose state of the application is checked.
        #[serde(default)]
        node: Option<String>,
        /// The application's state on `node`.
        #[serde(default)]
        state: Option<AppState>,
        /// Maintenance mode on or off.
        #[serde(default)]
        maintenance: Option<bool>,
        /// Time limit.
        #[serde(default = "default_within")]
        within_ms: u64,
        /// Name of the benchmark phase this measures: from the last fault until the
        /// guest in `online_on` recorded the application Online.
        #[serde(default)]
        measure: Option<String>,
    },
    /// Every observer sees the application Online on `online_on` (or `none`) for the
    /// whole period.
    ExpectAppStays {
        /// Guests whose view is checked.
        observers: Vec<String>,
        /// The application.
        app: String,
        /// The guest it is Online on, or `none`.
        online_on: String,
        /// How long.
        for_ms: u64,
    },
    /// Every observer (guest) sees guest `node` in `state`.
    ExpectNode {
        /// Guests whose view is checked.
        observers: Vec<String>,
        /// The guest looked at.
        node: String,
        /// UP, DOWN, LEFTCLUSTER or COMINGUP.
        state: GuestNodeState,
        /// Time limit.
        #[serde(default = "default_within")]
        within_ms: u64,
    },
    /// Fault: from inside guest `via`'s namespace (its address), `connections` TCP
    /// connections to its host's link port that never register and send one byte of a
    /// frame every `byte_every_ms` (a slow-loris attack), for `for_ms` at most, in the
    /// background; `await-link-flood` checks what the host did with them.
    LinkFlood {
        /// The guest whose namespace the connections come from.
        via: String,
        /// How many.
        #[serde(default = "default_flood_connections")]
        connections: u32,
        /// Time between two bytes on each connection.
        #[serde(default = "default_flood_byte_every_ms")]
        byte_every_ms: u64,
        /// How long the attack lasts; then every connection left is closed.
        for_ms: u64,
    },
    /// Waits for the `link-flood` to end and checks how its connections ended.
    AwaitLinkFlood {
        /// At least this many closed by the host before they were sent anything.
        #[serde(default)]
        min_refused: u32,
        /// At most this many still open when the attack ended.
        #[serde(default)]
        max_held: Option<u32>,
        /// Longest wait.
        #[serde(default = "default_await_ms")]
        within_ms: u64,
    },
    /// Sets the permission bits of one of the lab's key files (`cluster.key`,
    /// `guest.key`); e.g. `mode = 0o644` opens it to everyone.
    ChmodKey {
        /// File name in the lab's directory.
        file: String,
        /// Permission bits.
        mode: u32,
    },
    /// Starts the agent of `agent` (a host or a guest, whose agent is not running),
    /// which must refuse to start: exit with a failure within the time limit and print
    /// `output`.
    StartRefused {
        /// The host or guest.
        agent: String,
        /// Text expected in what it printed.
        output: String,
        /// Time limit.
        #[serde(default = "default_within")]
        within_ms: u64,
    },
    /// Fault: from the rogue namespace, a flood at every heartbeat port of every host on
    /// every interconnect, in the background for `ms`: random bytes and frames bearing
    /// the cluster id with a bad tag, each from the rogue address and spoofed from
    /// another host's address.
    UdpFlood {
        /// How long, ms (at most 10000).
        ms: u64,
        /// Datagrams per second in all (at most 100000).
        #[serde(default = "default_flood_rate")]
        per_second: u64,
    },
    /// Fault: a forged panic notice from the rogue namespace with `host`'s own ic0
    /// address as its source (a raw socket), to every other host's ic0 address.
    KdumpNoticeSpoofed {
        /// The host whose address is spoofed.
        host: String,
    },
    /// From inside guest `via`, a hostile guest links to `via`'s host with the key of
    /// the stranger guest cluster (the lab's own with `own_cluster`) and registers as
    /// `node` (`node_id`) claiming `domain`; expects the host to refuse it. With
    /// `then_kill`, the stranger's node 1 (`stranger`) then asks for node `then_kill`
    /// of its guest cluster to be killed; expects that refused too.
    ForeignClaim {
        /// Guest whose network (and host) the hostile guest uses.
        via: String,
        /// Node name it claims.
        node: String,
        /// Node id it claims.
        node_id: u32,
        /// Domain it claims.
        #[serde(default)]
        domain: Option<String>,
        /// Speak for the lab's own guest cluster instead of the stranger one.
        #[serde(default)]
        own_cluster: bool,
        /// Node id of the stranger guest cluster to ask to kill afterwards.
        #[serde(default)]
        then_kill: Option<u32>,
    },
    /// From inside guest `via`, a hostile guest speaking as `via` (the lab's own key)
    /// asks `via`'s host to kill guest `target` as fast as it can for `for_ms`.
    KillFlood {
        /// The guest that floods.
        via: String,
        /// The guest it asks to kill.
        target: String,
        /// How long.
        for_ms: u64,
    },
    /// Each observer recorded at most `at_most` events of `kind` since the last fault.
    ExpectEventCount {
        /// Hosts whose events are checked.
        observers: Vec<String>,
        /// Event kind.
        kind: String,
        /// Largest accepted number.
        at_most: usize,
    },
    /// Makes, with the cluster key, the heartbeats `host` sends now (its incarnation,
    /// its view of the others with the incarnations it heard, the configuration
    /// digest), as an attacker on the interconnect would record them; `forge` with
    /// `kind = "recorded"` plays them later.
    RecordHeartbeats {
        /// The host recorded.
        host: String,
    },
}

fn default_flood_connections() -> u32 {
    400
}
fn default_flood_byte_every_ms() -> u64 {
    2000
}

fn default_flood_rate() -> u64 {
    20_000
}

fn default_forge_count() -> u32 {
    20
}

impl Step {
    /// Whether this step injects a fault (benchmarks measure from the last one).
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            Step::PowerLoss { .. }
                | Step::Crash { .. }
                | Step::Hang { .. }
                | Step::CutLink { .. }
                | Step::Isolate { .. }
                | Step::OneWayCut { .. }
                | Step::Loss { .. }
                | Step::KdumpNotice { .. }
                | Step::KdumpNoticeRogue {}
                | Step::Forge { .. }
                | Step::RestartAgent { .. }
                | Step::KillAgent { .. }
                | Step::StopAgent { .. }
                | Step::Thaw { .. }
                | Step::Heal { .. }
                | Step::Load { .. }
                | Step::GuestCrash { .. }
                | Step::GuestHang { .. }
                | Step::FailResource { .. }
                | Step::LinkFlood { .. }
                | Step::UdpFlood { .. }
                | Step::KdumpNoticeSpoofed { .. }
                | Step::ForeignClaim { .. }
                | Step::KillFlood { .. }
        )
    }
}

fn default_await_ms() -> u64 {
    120_000
}
