//! hv-hostd: the hvcluster host agent. Parses arguments, prepares the process
//! (real-time scheduling, locked memory, logging) and runs the agent until SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
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
    /// Admin socket path (overrides `[admin] socket`).
    #[arg(long)]
    admin_socket: Option<PathBuf>,
    /// State directory (overrides `[cluster] state_dir`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Pressure file of the load watchdog (overrides `[load_watchdog] psi_source`).
    #[arg(long)]
    psi_source: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (writer, _guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .finish(std::io::stderr());
    let filter = tracing_subscriber::EnvFilter::try_from_env("HV_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let host = match args.host.clone().or_else(hostname) {
        Some(h) => h,
        None => {
            eprintln!("hv-hostd: cannot tell which host this is: pass --host NAME");
            return ExitCode::from(2);
        }
    };
    let options = Options {
        config: args.config,
        host,
        admin_socket: args.admin_socket,
        state_dir: args.state_dir,
        psi_source: args.psi_source,
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hv-hostd: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
}
