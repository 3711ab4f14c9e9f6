//! hvctl: the hvcluster administrator's command line.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use hvcluster_common::admin::{Request, Response};
use hvcluster_common::config::ClusterConfig;
use hvctl::{client, guest, render};

mod cli;

use cli::{
    AppCommand, Cli, Command, ConfigCommand, FenceArgs, FenceCommand, HostCommand, MigrateMode,
    NodeCommand, OnOff, VmCommand,
};

fn main() -> ExitCode {
    if let Some(status) = hvcluster_clidocs::write_if_asked(Cli::command) {
        return status;
    }
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
    // Resolved only by the commands that talk to an agent: `config check` needs none.
    let given = cli.socket;
    let socket = || client::choose_socket(given.as_deref());
    match cli.command {
        Command::Status { json } => {
            let mut conn = client::Connection::open(&socket()?)?;
            match conn.request(&Request::Status)? {
                Response::Status(s) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&s)?);
                    } else {
                        print!("{}", render::status(&s));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Response::GuestStatus(s) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&s)?);
                    } else {
                        print!("{}", guest::status(&s));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                other => not_an_answer(other),
            }
        }
        Command::Events {
            follow,
            since,
            json,
        } => {
            let mut conn = client::Connection::open(&socket()?)?;
            conn.send(&Request::Events { since, follow })?;
            loop {
                match conn.receive()? {
                    None => return Ok(ExitCode::SUCCESS),
                    Some(Response::Event(e)) => {
                        let line = if json {
                            serde_json::to_string(&e)?
                        } else {
                            render::event(&e)
                        };
                        // A reader that went away (`hvctl events | head`) ends the
                        // listing, not with a panic.
                        let mut out = std::io::stdout().lock();
                        match writeln!(out, "{line}").and_then(|()| out.flush()) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                                return Ok(ExitCode::SUCCESS)
                            }
                            Err(e) => return Err(e.into()),
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
        }) => fence_history(&socket()?, json),
        Command::Fence(FenceArgs {
            command: Some(FenceCommand::Check { json }),
            ..
        }) => fence_check(&socket()?, json),
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
            operator(&socket()?, &Request::Fence { host })
        }
        Command::Host {
            command: HostCommand::Maintenance { host, mode },
        } => operator(
            &socket()?,
            &Request::HostMaintenance {
                host,
                on: matches!(mode, OnOff::On),
            },
        ),
        Command::Host {
            command: HostCommand::Leave { host, yes },
        } => {
            let question = format!(
                "Take {host} out of the host cluster and stop its agent? Its domains run on, unguarded until hv-hostd starts again."
            );
            if !confirmed(&question, yes, &format!("hvctl host leave {host} --yes"))? {
                return Ok(not_confirmed());
            }
            operator(&socket()?, &Request::HostLeave { host })
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
            operator(&socket()?, &Request::ConfirmDown { host })
        }
        Command::App { command } => {
            let request = match command {
                AppCommand::Switch { app, node } => Request::AppSwitch { app, node },
                AppCommand::Online { app } => Request::AppOnline { app },
                AppCommand::Offline { app } => Request::AppOffline { app },
                AppCommand::Clear { app } => Request::AppClear { app },
                AppCommand::Maintenance { app, mode } => Request::AppMaintenance {
                    app,
                    on: matches!(mode, OnOff::On),
                },
            };
            operator(&socket()?, &request)
        }
        Command::Vm { command } => {
            let domains = || -> anyhow::Result<Vec<hvcluster_common::admin::DomainLine>> {
                let mut conn = client::Connection::open(&socket()?)?;
                match conn.request(&Request::Status)? {
                    Response::Status(s) => Ok(s.domains),
                    Response::GuestStatus(_) => {
                        anyhow::bail!("this is a guest agent: hvctl vm runs on a hypervisor")
                    }
                    other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
                }
            };
            match command {
                VmCommand::List { json } => {
                    let rows = domains()?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&rows)?);
                    } else {
                        print!("{}", render::domain_list(&rows));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                VmCommand::Locate { name } => {
                    let hosts: Vec<String> = domains()?
                        .into_iter()
                        .filter(|d| d.name == name || d.uuid == name)
                        .map(|d| format!("{} ({})", d.host, d.state))
                        .collect();
                    if hosts.is_empty() {
                        eprintln!("hvctl: {name} runs on no host of the cluster");
                        Ok(ExitCode::from(1))
                    } else {
                        println!("{name}: {}", hosts.join(", "));
                        Ok(ExitCode::SUCCESS)
                    }
                }
                VmCommand::Start { name } => operator(&socket()?, &Request::VmStart { name }),
                VmCommand::Stop {
                    name,
                    timeout,
                    force,
                } => operator(
                    &socket()?,
                    &Request::VmStop {
                        name,
                        timeout_s: Some(timeout),
                        force,
                    },
                ),
                VmCommand::Suspend { name } => operator(&socket()?, &Request::VmSuspend { name }),
                VmCommand::Resume { name } => operator(&socket()?, &Request::VmResume { name }),
                VmCommand::Migrate {
                    name,
                    to,
                    mode,
                    max_downtime,
                    timeout,
                    leave_paused,
                    start,
                    dry_run,
                } => {
                    let socket = socket()?;
                    if !dry_run {
                        follow_migration(&socket, &name);
                    }
                    let mode = match mode {
                        MigrateMode::Live => hvcluster_common::migration::MigrationMode::Live,
                        MigrateMode::Offline => hvcluster_common::migration::MigrationMode::Offline,
                        MigrateMode::Export => hvcluster_common::migration::MigrationMode::Export,
                    };
                    let request = Request::VmMigrate {
                        name,
                        to,
                        mode,
                        max_downtime_ms: max_downtime,
                        timeout_s: timeout,
                        leave_paused,
                        start,
                        dry_run,
                    };
                    operator(&socket, &request)
                }
            }
        }
        Command::Node {
            command: NodeCommand::Down { node, yes },
        } => {
            let question = format!(
                "Mark {node} DOWN? Only if you verified that it is off: its applications will \
                 be started elsewhere."
            );
            if !confirmed(&question, yes, &format!("hvctl node down {node} --yes"))? {
                return Ok(not_confirmed());
            }
            operator(&socket()?, &Request::NodeDown { node })
        }
        Command::Config {
            command: ConfigCommand::HostLinkKey { file },
        } => {
            let loaded = ClusterConfig::load(&file).map_err(|e| {
                anyhow::anyhow!("{e}\n{}: fix the problems above first", file.display())
            })?;
            let public = hvcluster_common::hostseal::HostSigningKey::derive(&loaded.key).public();
            println!("host_public_key = \"{public}\"");
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check { file, json },
        } => {
            let result = check_config(&file);
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
                    Ok(summary) => println!("{}: valid: {summary}", file.display()),
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

/// Loads `file` as a guest.toml when it has `[[node]]` tables and no `[[host]]`, else as
/// a cluster.toml; a one-line summary when valid, else every problem.
fn check_config(file: &Path) -> Result<String, hvcluster_common::config::ConfigErrors> {
    let is_guest = std::fs::read_to_string(file)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .is_some_and(|t| t.contains_key("node") && !t.contains_key("host"));
    if is_guest {
        let l = hvcluster_common::config::guest::GuestConfig::load(file)?;
        let c = &l.config;
        return Ok(format!(
            "guest cluster {:?}, {} node(s), {} interconnect(s), {} application(s), heartbeat every {} ms, \
             suspect after {} ms, failed after {} ms",
            c.cluster.name,
            c.nodes.len(),
            c.interconnects.len(),
            c.applications.len(),
            c.heartbeat.interval_ms,
            c.heartbeat.suspect_after_ms,
            c.heartbeat.dead_after_ms
        ));
    }
    let l = ClusterConfig::load(file)?;
    Ok(format!(
        "cluster {:?}, {} host(s), {} interconnect(s), heartbeat every {} ms, \
         suspect after {} ms, failed after {} ms",
        l.config.cluster.name,
        l.config.hosts.len(),
        l.config.interconnects.len(),
        l.config.heartbeat.interval_ms,
        l.config.heartbeat.suspect_after_ms,
        l.config.heartbeat.dead_after_ms
    ))
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

/// Prints the progress of the migration of `name` from the agent's event log, from a
/// thread of its own, until the process ends.
fn follow_migration(socket: &Path, name: &str) {
    let Ok(mut conn) = client::Connection::follow_events(socket) else {
        return;
    };
    let name = name.to_string();
    std::thread::spawn(move || {
        let mut live = false;
        while let Ok(Some(response)) = conn.receive() {
            match response {
                Response::EndOfHistory { .. } => live = true,
                Response::Event(e)
                    if live
                        && e.subject.as_deref() == Some(name.as_str())
                        && matches!(
                            e.kind.as_str(),
                            "migration_started" | "migration_progress"
                        ) =>
                {
                    println!("{}", e.message);
                }
                _ => {}
            }
        }
    });
}

/// Sends an operator command: 0 when done, 1 when refused.
fn operator(socket: &Path, request: &Request) -> anyhow::Result<ExitCode> {
    let mut conn = client::Connection::open(socket)?;
    match conn.request(request)? {
        Response::Done { message } => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        other => not_an_answer(other),
    }
}

/// What to do with an answer that is not the one asked for: a refusal (for instance
/// from the other kind of agent) is printed as the agent said it, exit 1; an error or
/// anything else is an error (exit 2).
fn not_an_answer(response: Response) -> anyhow::Result<ExitCode> {
    match response {
        Response::Refused { message } => {
            eprintln!("hvctl: refused: {message}");
            Ok(ExitCode::from(1))
        }
        Response::Error { message } => anyhow::bail!("agent: {message}"),
        other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
    }
}

fn fence_history(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let mut conn = client::Connection::open(socket)?;
    let history = match conn.request(&Request::FenceHistory)? {
        Response::FenceHistory(h) => h,
        other => return not_an_answer(other),
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

fn fence_check(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let mut conn = client::Connection::open(socket)?;
    let devices = match conn.request(&Request::FenceCheck)? {
        Response::FenceCheck { devices } => devices,
        other => return not_an_answer(other),
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
