//! hvctl: the hvcluster administrator's command line.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use hvcluster_common::admin::{Request, Response};
use hvcluster_common::config::{ClusterConfig, DEFAULT_ADMIN_SOCKET};
use hvctl::{client, render};

/// Administer an hvcluster host cluster.
///
/// hvctl talks to the host agent (hv-hostd) of this host through its admin socket
/// (root only). Every command that shows state takes --json for scripts.
#[derive(Debug, Parser)]
#[command(name = "hvctl", version, about, long_about)]
struct Cli {
    /// Admin socket of the local agent.
    #[arg(long, global = true, env = "HV_ADMIN_SOCKET", default_value = DEFAULT_ADMIN_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the hosts, their states and reasons, links, quorum and load verdicts.
    ///
    /// States: Up (alive, counted for quorum), Joining (heard, not yet for long
    /// enough), Suspect (silent past suspect_after_ms, still counted), Failed (silent
    /// past dead_after_ms, a kdump panic notice, or reported hung), Unknown (not heard
    /// since this agent started). "must rejoin" marks a Failed host heard again without
    /// restarting: it is not counted until it rejoins with a new incarnation.
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
    /// Act on one host: confirm that it is powered off.
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
    /// Check configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
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
struct FenceArgs {
    #[command(subcommand)]
    command: Option<FenceCommand>,
    /// The host to fence, by its name in cluster.toml.
    #[arg(required = true, value_name = "HOST")]
    host: Option<String>,
    /// Do not ask for confirmation (needed when standard input is not a terminal).
    #[arg(short, long)]
    yes: bool,
}

#[derive(Debug, Subcommand)]
enum FenceCommand {
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
enum HostCommand {
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
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a cluster.toml and print every problem with its file, line and key.
    ///
    /// Exit status: 0 when valid, 1 when there are problems.
    Check {
        /// The file to check.
        file: PathBuf,
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hvctl: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Status { json } => {
            let mut conn = client::Connection::open(&cli.socket)?;
            match conn.request(&Request::Status)? {
                Response::Status(s) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&s)?);
                    } else {
                        print!("{}", render::status(&s));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
            }
        }
        Command::Events {
            follow,
            since,
            json,
        } => {
            let mut conn = client::Connection::open(&cli.socket)?;
            conn.send(&Request::Events { since, follow })?;
            loop {
                match conn.receive()? {
                    None => return Ok(ExitCode::SUCCESS),
                    Some(Response::Event(e)) => {
                        if json {
                            println!("{}", serde_json::to_string(&e)?);
                        } else {
                            println!("{}", render::event(&e));
                        }
                    }
                    Some(Response::EndOfHistory { .. }) if !follow => return Ok(ExitCode::SUCCESS),
                    Some(Response::EndOfHistory { .. }) => {}
                    Some(Response::Error { message }) => eprintln!("hvctl: agent: {message}"),
                    Some(other) => anyhow::bail!("unexpected answer from the agent: {other:?}"),
                }
            }
        }
        Command::Fence(FenceArgs {
            command: Some(FenceCommand::History { json }),
            ..
        }) => fence_history(&cli.socket, json),
        Command::Fence(FenceArgs {
            command: Some(FenceCommand::Check { json }),
            ..
        }) => fence_check(&cli.socket, json),
        Command::Fence(FenceArgs {
            command: None,
            host,
            yes,
        }) => {
            let host = host.context("name the host to fence")?;
            let question = format!("Fence {host} now? Its power will be cut.");
            // These names would otherwise be read as the subcommands.
            let with_yes = if ["history", "check", "help"].contains(&host.as_str()) {
                format!("hvctl fence --yes -- {host}")
            } else {
                format!("hvctl fence {host} --yes")
            };
            if !confirmed(&question, yes, &with_yes)? {
                return Ok(not_confirmed());
            }
            operator(&cli.socket, &Request::Fence { host })
        }
        Command::Host {
            command: HostCommand::ConfirmDown { host, yes },
        } => {
            let question = format!(
                "Confirm that {host} is powered off? Applications that ran there will be started elsewhere."
            );
            if !confirmed(
                &question,
                yes,
                &format!("hvctl host confirm-down {host} --yes"),
            )? {
                return Ok(not_confirmed());
            }
            operator(&cli.socket, &Request::ConfirmDown { host })
        }
        Command::Config {
            command: ConfigCommand::Check { file, json },
        } => {
            let result = ClusterConfig::load(&file);
            if json {
                let problems: Vec<_> = match &result {
                    Ok(_) => vec![],
                    Err(e) => e
                        .problems
                        .iter()
                        .map(|p| serde_json::json!({"file": p.file, "line": p.line, "key": p.key, "message": p.message}))
                        .collect(),
                };
                println!(
                    "{}",
                    serde_json::json!({"file": file, "valid": result.is_ok(), "problems": problems})
                );
            } else {
                match &result {
                    Ok(l) => println!(
                        "{}: valid: cluster {:?}, {} host(s), {} interconnect(s), heartbeat every {} ms, \
                         suspect after {} ms, failed after {} ms",
                        file.display(),
                        l.config.cluster.name,
                        l.config.hosts.len(),
                        l.config.interconnects.len(),
                        l.config.heartbeat.interval_ms,
                        l.config.heartbeat.suspect_after_ms,
                        l.config.heartbeat.dead_after_ms
                    ),
                    Err(e) => {
                        for p in &e.problems {
                            eprintln!("{p}");
                        }
                        eprintln!("{} problem(s) found", e.problems.len());
                    }
                }
            }
            Ok(if result.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Asks `question` on the terminal unless `yes`; true to go on. Without a terminal there
/// is nobody to ask, so that is an error telling to pass --yes (`with_yes`).
fn confirmed(question: &str, yes: bool, with_yes: &str) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!(
            "standard input is not a terminal, so hvctl cannot ask \"{question}\"; nothing was \
             done. Pass --yes to go ahead without asking: {with_yes}"
        );
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn not_confirmed() -> ExitCode {
    eprintln!("hvctl: not confirmed; nothing was done");
    ExitCode::from(1)
}

/// Sends an operator command: 0 when done, 1 when refused.
fn operator(socket: &std::path::Path, request: &Request) -> anyhow::Result<ExitCode> {
    let mut conn = client::Connection::open(socket)?;
    match conn.request(request)? {
        Response::Done { message } => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        Response::Refused { message } => {
            eprintln!("hvctl: refused: {message}");
            Ok(ExitCode::from(1))
        }
        Response::Error { message } => anyhow::bail!("agent: {message}"),
        other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
    }
}

fn fence_history(socket: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let mut conn = client::Connection::open(socket)?;
    let history = match conn.request(&Request::FenceHistory)? {
        Response::FenceHistory(h) => h,
        Response::Error { message } => anyhow::bail!("agent: {message}"),
        other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
    };
    if json {
        for r in &history.records {
            println!("{}", render::fence_history_json(&history, r));
        }
    } else {
        print!("{}", render::fence_history(&history));
    }
    if let Some(damage) = &history.damage {
        eprintln!("hvctl: warning: {damage}");
    }
    Ok(ExitCode::SUCCESS)
}

fn fence_check(socket: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let mut conn = client::Connection::open(socket)?;
    let devices = match conn.request(&Request::FenceCheck)? {
        Response::FenceCheck { devices } => devices,
        Response::Error { message } => anyhow::bail!("agent: {message}"),
        other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
    };
    if json {
        for d in &devices {
            println!("{}", serde_json::to_string(d)?);
        }
    } else {
        print!("{}", render::fence_check(&devices));
    }
    Ok(if devices.iter().any(|d| d.ok == Some(false)) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
