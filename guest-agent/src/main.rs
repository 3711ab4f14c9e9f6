//! hv-guestd: the hvcluster guest agent. Parses arguments, installs logging and runs
//! the agent until SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hvcluster_guest_agent::{run, Options};

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
    /// Admin socket path (overrides `[admin] socket`).
    #[arg(long)]
    admin_socket: Option<PathBuf>,
    /// State directory (overrides `[cluster] state_dir`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (writer, _guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
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
    let node = match args.node.clone().or_else(hostname) {
        Some(h) => h,
        None => {
            eprintln!("hv-guestd: cannot tell which node this is: pass --node NAME");
            return ExitCode::from(2);
        }
    };
    let options = Options {
        config: args.config,
        node,
        admin_socket: args.admin_socket,
        state_dir: args.state_dir,
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hv-guestd: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
}
