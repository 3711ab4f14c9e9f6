//! hvctl: the hvcluster administrator's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    /// Check configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
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
