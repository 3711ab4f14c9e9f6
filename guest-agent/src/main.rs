//! hv-guestd: the hvcluster guest agent. Parses arguments, installs logging and runs
//! the agent until SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use hvcluster_guest_agent::{run, Options};
use hvcluster_runtime::daemon::{self, PathOverrides};

/// The hvcluster guest agent: heartbeats with the other guests of its guest cluster,
/// keeps their node states (UP, DOWN, LEFTCLUSTER, COMINGUP) and runs the
/// userApplications and their resources.
#[derive(Debug, Parser)]
#[command(name = "hv-guestd", version, about, long_about = None)]
struct Args {
    /// Guest cluster configuration, identical on every guest node.
    #[arg(
        short,
        long,
        default_value = "/etc/hvcluster/guest.toml",
        env = "HV_GUEST_CONFIG"
    )]
    config: PathBuf,
    /// Which `[[node]]` of the configuration this is (default: the system host name).
    #[arg(long, env = "HV_NODE")]
    node: Option<String>,
    #[command(flatten)]
    paths: PathOverrides,
    /// Address of this guest's host agent on the host link (overrides `[host_link]
    /// address`; for guests of one cluster that reach their hosts at different addresses).
    #[arg(long, env = "HV_HOST_LINK_ADDRESS")]
    host_link_address: Option<std::net::IpAddr>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn main() -> ExitCode {
    if let Some(status) = hvcluster_clidocs::write_if_asked(Args::command) {
        return status;
    }
    let args = Args::parse();
    let _guard = daemon::install_logging(args.log_json, false);
    let node = match daemon::member_name(args.node, "hv-guestd", "node") {
        Ok(n) => n,
        Err(status) => return status,
    };
    let options = Options {
        config: args.config,
        node,
        paths: args.paths,
        host_link_address: args.host_link_address,
    };
    daemon::exit_status("hv-guestd", run(options))
}
