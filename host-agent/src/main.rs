//! hv-hostd: the hvcluster host agent. Parses arguments, prepares the process
//! (real-time scheduling, locked memory, logging) and runs the agent until SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use hvcluster_host_agent::daemon::{self, PathOverrides};
use hvcluster_host_agent::{run, Options};

/// The hvcluster host agent: heartbeats with the other hypervisors, detects failed hosts,
/// watches this host's own load and listens for kdump panic notices.
#[derive(Debug, Parser)]
#[command(name = "hv-hostd", version, about, long_about = None)]
struct Args {
    /// Cluster configuration, identical on every host.
    #[arg(
        short,
        long,
        default_value = "/etc/hvcluster/cluster.toml",
        env = "HV_CONFIG"
    )]
    config: PathBuf,
    /// Which `[[host]]` of the configuration this is (default: the system host name).
    #[arg(long, env = "HV_HOST")]
    host: Option<String>,
    #[command(flatten)]
    paths: PathOverrides,
    /// Pressure file of the load watchdog (overrides `[load_watchdog] psi_source`).
    #[arg(long)]
    psi_source: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn main() -> ExitCode {
    if let Some(status) = hvcluster_clidocs::write_if_asked(Args::command) {
        return status;
    }
    let args = Args::parse();
    // Lossy: the heartbeat loop must never wait for a slow standard error.
    let _guard = daemon::install_logging(args.log_json, true);
    let host = match daemon::member_name(args.host, "hv-hostd", "host") {
        Ok(h) => h,
        Err(status) => return status,
    };
    let options = Options {
        config: args.config,
        host,
        paths: args.paths,
        psi_source: args.psi_source,
    };
    daemon::exit_status("hv-hostd", run(options))
}
