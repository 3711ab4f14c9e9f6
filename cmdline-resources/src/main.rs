//! `hv-guest`: start, stop and check a libvirt guest as a Cmdline resource.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use hvcluster_cmdline_resources as guest;
use hvcluster_libvirt::Libvirt;

/// Start, stop and check a libvirt guest under the Cmdline resource contract
///
/// Give a host-side userApplication three Cmdline scripts, `hv-guest start DOMAIN`,
/// `hv-guest stop DOMAIN` and `hv-guest check DOMAIN` (with ALLEXITCODES), and the
/// cluster controls the guest like any other resource.
///
/// Exit codes. start: 0 the guest runs here (also when it already ran), 1 it could not be
/// started or runs on another host (refused). stop: 0 the guest is off (also when it
/// already was, or is not defined here), 1 it could not be stopped. check: 0 Online
/// (running, paused, shutting down, suspended by the guest), 1 Offline (off or not
/// defined here), 2 Faulted (crashed), 3 Unknown (libvirt does not answer). A usage error
/// exits 1.
#[derive(Debug, Parser)]
#[command(name = "hv-guest", version)]
struct Cli {
    /// libvirt URI of this host's hypervisor
    #[arg(
        long,
        env = "HV_GUEST_URI",
        default_value = "qemu:///system",
        global = true
    )]
    uri: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start DOMAIN on this host, unless it runs on another host of the cluster
    ///
    /// First asks the host agent (hv-hostd) where the domain runs: refused (exit 1) when
    /// any other host not proved down reports it, and when the agent cannot be asked.
    Start {
        /// Domain name or UUID
        domain: String,
        /// Start a transient domain from this XML file (on shared storage) instead of
        /// its definition on this host
        #[arg(long, value_name = "FILE")]
        xml: Option<PathBuf>,
        /// The host agent's admin socket
        #[arg(long, env = "HV_ADMIN_SOCKET", default_value = hvcluster_common::config::DEFAULT_ADMIN_SOCKET)]
        socket: PathBuf,
        /// Start without asking the host agent. Unsafe: nothing then stops the domain
        /// from running on two hosts and corrupting its disks
        #[arg(long)]
        no_cluster_check: bool,
    },
    /// Stop DOMAIN: ask the guest to shut down, power it off after the timeout
    Stop {
        /// Domain name or UUID
        domain: String,
        /// Seconds the guest has to shut itself down before it is powered off
        #[arg(long, default_value_t = 120, value_name = "SECONDS")]
        shutdown_timeout: u64,
    },
    /// Report DOMAIN's state as a Cmdline check exit code (0 Online, 1 Offline, 2 Faulted,
    /// 3 Unknown)
    Check {
        /// Domain name or UUID
        domain: String,
    },
}

fn main() -> ExitCode {
    if let Some(status) = hvcluster_clidocs::write_if_asked(Cli::command) {
        return status;
    }
    // A usage error exits 1 (failed; Offline for a check), never 2, which a check with
    // ALLEXITCODES would read as Faulted.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let hv = Libvirt::new(&cli.uri);
    match cli.command {
        Command::Check { domain } => {
            let (code, line) = guest::check(&hv, &domain);
            println!("{line}");
            ExitCode::from(code)
        }
        Command::Stop {
            domain,
            shutdown_timeout,
        } => report(guest::stop(
            &hv,
            &domain,
            Duration::from_secs(shutdown_timeout),
        )),
        Command::Start {
            domain,
            xml,
            socket,
            no_cluster_check,
        } => {
            let xml = match xml.as_ref().map(|p| {
                std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read the domain XML {}: {e}", p.display()))
            }) {
                Some(Err(e)) => return report(Err(e)),
                Some(Ok(x)) => Some(x),
                None => None,
            };
            if !no_cluster_check {
                match guest::ask_agent(&socket, &domain) {
                    Ok(hosts) if hosts.is_empty() => {}
                    Ok(hosts) => {
                        return report(Err(format!(
                            "{domain} runs on {}: starting it here too would run it twice",
                            hosts.join(" and ")
                        )))
                    }
                    Err(e) => {
                        return report(Err(format!(
                            "cannot ask the host agent whether {domain} runs elsewhere: {e:#}; \
                             not starting it (--no-cluster-check starts it without asking)"
                        )))
                    }
                }
            }
            report(guest::start(&hv, &domain, xml.as_deref()))
        }
    }
}

fn report(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hv-guest: {e}");
            ExitCode::from(1)
        }
    }
}
