//! hvlab: the hvcluster lab. Simulated hypervisors as network namespaces with their
//! processes in cgroups, real hv-hostd agents, injected faults, scenarios and benchmarks.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Parser, Subcommand};
use hvlab::bench;
use hvlab::cluster::ClusterSpec;
use hvlab::scenario::{self, RunOptions, Scenario, EMBEDDED};

/// The hvcluster lab: a whole host cluster on one Linux machine.
///
/// Each simulated host is a network namespace on one bridge per interconnect, with its
/// processes in a cgroup (power loss kills it, a hang freezes it) and a real hv-hostd.
/// Faults come from cgroups, nftables, stress-ng and fence_kdump_send. Every packet
/// stays inside the lab's own namespaces. Needs root.
#[derive(Debug, Parser)]
#[command(name = "hvlab", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Three hosts, one loses power: watch the others detect it and fence it, as a timeline.
    Demo,
    /// Run a scenario; exit 0 only if every expectation holds.
    Run {
        /// An embedded scenario's name (see `hvlab list`) or a scenario file.
        #[arg(long)]
        scenario: String,
        /// Print checks, measures and events as JSON instead of the timeline.
        #[arg(long)]
        json: bool,
    },
    /// List the embedded scenarios.
    List,
    /// Measure: repeated scenario runs or a load soak, printed as JSON.
    Bench {
        #[command(subcommand)]
        bench: BenchCommand,
    },
    /// The whole-system simulation: hosts and guests on virtual time, with faults; every
    /// safety rule after every tick. Needs no root. Prints the base seed first and a JSON
    /// summary last; exit 1 with the shrunk schedule that replays a failure.
    Sim {
        /// Number of schedules (seeds SEED, SEED+1, ...).
        #[arg(long, default_value_t = 1000)]
        schedules: u64,
        /// Base seed (random unless given).
        #[arg(long)]
        seed: Option<u64>,
        /// Hosts per schedule (2 to 4 in turn unless given).
        #[arg(long)]
        hosts: Option<usize>,
        /// Guest nodes per schedule (3 or 4 in turn unless given).
        #[arg(long)]
        guests: Option<usize>,
        /// Steps per schedule.
        #[arg(long, default_value_t = 40)]
        steps: usize,
        /// Replay one schedule (the JSON text printed after a failure, or a file holding
        /// it) and print its trace.
        #[arg(long, value_name = "TEXT|FILE")]
        replay: Option<String>,
        /// Run every schedule even after a failure (each failure is shrunk and printed).
        #[arg(long)]
        keep_going: bool,
    },
    /// Remove labs left behind by interrupted runs (all labs with --all).
    Cleanup {
        /// Also labs whose owner is still running.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Time from fault injection until every survivor marked the host Failed.
    Detect {
        /// detect-power-loss, detect-hang, detect-kdump, or a file.
        #[arg(long)]
        scenario: String,
        /// Number of runs.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Print only the JSON object (progress goes to stderr otherwise too).
        #[arg(long)]
        json: bool,
    },
    /// Fault to DOWN with proof: phases detect, fence (decision to confirmed OFF) and
    /// total, and fence_ipmilan alone against the same simulated BMC.
    Fence {
        /// fence-power-loss or a file.
        #[arg(long, default_value = "fence-power-loss")]
        scenario: String,
        /// Number of runs.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Print only the JSON object.
        #[arg(long)]
        json: bool,
    },
    /// A guest of a guest cluster (a QEMU VM of the real tier) moved between two hosts,
    /// once by hvctl vm migrate and once by plain virsh migrate per run: total time and
    /// the guest's pause as its partner saw it.
    Migrate {
        /// live, offline or export (g1 powered off first).
        #[arg(long, default_value = "live")]
        mode: String,
        /// Number of round trips.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Print only the JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Fault of a host or guest to the application Online on the partner guest: phases
    /// detect, fence, notify, switch and total, and moments it was Online on two guests.
    Failover {
        /// linked-power-loss, linked-kdump-panic, linked-hang, guest-hang, no-host-link,
        /// or a file.
        #[arg(long)]
        scenario: String,
        /// Number of runs.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Print only the JSON object.
        #[arg(long)]
        json: bool,
    },
    /// stress-ng (cpu, vm, io) on every host; counts false Suspect and Failed marks.
    FalsePositive {
        /// Seconds of load.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Print only the JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hvlab: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn need_root() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the lab creates network namespaces and cgroups: run it as root");
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::List => {
            for (name, text) in EMBEDDED {
                let s = Scenario::parse(text, name)?;
                println!(
                    "{name:<20} {}",
                    s.description
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim {
            schedules,
            seed,
            hosts,
            guests,
            steps,
            replay,
            keep_going,
        } => Ok(hvlab_sim(
            schedules, seed, hosts, guests, steps, replay, keep_going,
        )?),
        Command::Cleanup { all } => {
            need_root()?;
            let n = if all {
                hvlab::lab::cleanup_all()?
            } else {
                hvlab::lab::cleanup_stale()?
            };
            println!("removed {n} lab(s)");
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo => {
            need_root()?;
            hvlab::interrupt::install();
            let s = Scenario::load("demo")?;
            println!("hvlab demo: {}\n", s.description.trim());
            println!(
                "starting {} hosts (hv-hostd in network namespaces)...",
                s.cluster.hosts
            );
            let outcome = scenario::run(&s, RunOptions { verbose: true })?;
            println!("\n{}", outcome.timeline);
            let end_us = outcome.events.iter().map(|e| e.unix_us).max().unwrap_or(0);
            if let Some(fault) = hvlab::bench::failover::Fault::of(&s, outcome.last_fault_us) {
                let run = hvlab::bench::failover::analyse(
                    &fault,
                    &hvlab::bench::failover::applications(&s),
                    &outcome.events,
                    end_us,
                );
                println!("the failover, phase by phase (from the panic):");
                for (phase, what) in [
                    ("detect", "the hosts see the panic notice, h3 is Failed"),
                    ("fence", "fence_ipmilan powers h3 off and confirms it OFF"),
                    ("notify", "h1 tells g2 that g1 died with h3"),
                    ("switch", "g2 holds g1 DOWN and starts app1"),
                    ("total", "panic to app1 Online on g2"),
                ] {
                    if let Some(ms) = run.phases.get(phase) {
                        println!("  {phase:<7} {ms:>8.1} ms  {what}");
                    }
                }
                println!(
                    "  app1 Online on two guests at once: {}\n",
                    if run.violations == 0 { "never" } else { "YES" }
                );
            }
            println!(
                "{}",
                if outcome.ok() {
                    "demo: every expectation held"
                } else {
                    "demo: FAILED"
                }
            );
            Ok(if outcome.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Run { scenario, json } => {
            need_root()?;
            hvlab::interrupt::install();
            let s = Scenario::load(&scenario)?;
            let outcome = scenario::run(&s, RunOptions { verbose: !json })?;
            if json {
                let checks: Vec<_> = outcome
                    .checks
                    .iter()
                    .map(|c| serde_json::json!({"check": c.text, "ok": c.ok, "detail": c.detail}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"scenario": outcome.name, "ok": outcome.ok(), "checks": checks,
                                       "measures_ms": outcome.measures, "events": outcome.events})
                );
            } else {
                println!("\n{}", outcome.timeline);
                println!(
                    "scenario {}: {}",
                    outcome.name,
                    if outcome.ok() { "PASSED" } else { "FAILED" }
                );
            }
            Ok(if outcome.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Bench {
            bench:
                BenchCommand::Detect {
                    scenario,
                    runs,
                    json,
                }
                | BenchCommand::Fence {
                    scenario,
                    runs,
                    json,
                },
        } => {
            need_root()?;
            hvlab::interrupt::install();
            let s = Scenario::load(&scenario)?;
            let name = if s.cluster.fence.is_some() {
                "fence"
            } else {
                "detect"
            };
            let result = bench::phases(name, &s, runs, !json);
            println!("{}", serde_json::to_string(&result)?);
            // Figures from failed runs are left out; say so through the exit status.
            Ok(if result.ok_runs == result.runs && result.violations == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Bench {
            bench: BenchCommand::Migrate { mode, runs, json },
        } => {
            need_root()?;
            hvlab::interrupt::install();
            let result = hvlab::bench::migrate::migrate(&mode, runs, !json)?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(if result.ok_runs == runs && result.virsh_ok_runs == runs {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Bench {
            bench:
                BenchCommand::Failover {
                    scenario,
                    runs,
                    json,
                },
        } => {
            need_root()?;
            hvlab::interrupt::install();
            let s = Scenario::load(&scenario)?;
            let result = bench::failover(&s, runs, !json)?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(if result.ok_runs == result.runs && result.violations == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Bench {
            bench: BenchCommand::FalsePositive { seconds, json: _ },
        } => {
            need_root()?;
            hvlab::interrupt::install();
            let result = bench::false_positive(seconds, &ClusterSpec::default())?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `hvlab sim`: a campaign of whole-system schedules, or the replay of one.
fn hvlab_sim(
    schedules: u64,
    seed: Option<u64>,
    hosts: Option<usize>,
    guests: Option<usize>,
    steps: usize,
    replay: Option<String>,
    keep_going: bool,
) -> anyhow::Result<ExitCode> {
    use hvcluster_sim::system::{self, campaign, Schedule};
    if let Some(replay) = replay {
        let text = if replay.trim_start().starts_with('{') {
            replay
        } else {
            std::fs::read_to_string(&replay).map_err(|e| {
                anyhow::anyhow!("{replay}: {e} (give the schedule's text or a file holding it)")
            })?
        };
        let schedule = Schedule::from_text(&text).map_err(anyhow::Error::msg)?;
        let out = system::replay(&schedule, true);
        return Ok(match out.failure {
            Some(f) => {
                println!("\nBROKEN: {f}");
                if let Some(why) = system::known(&f) {
                    println!("known finding: {why}");
                }
                ExitCode::from(1)
            }
            None => {
                println!("\nthe schedule held every invariant");
                ExitCode::SUCCESS
            }
        });
    }
    let seed = seed.unwrap_or_else(random_seed);
    println!("seed {seed}");
    let params_for = move |s: u64| {
        let mut p = campaign::cycled(s);
        p.hosts = hosts.unwrap_or(p.hosts).max(2);
        p.guests = guests.unwrap_or(p.guests).max(2);
        p.steps = steps;
        p
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let summary = campaign::campaign(seed, schedules, &params_for, threads, !keep_going, 300);
    for (seed, f) in &summary.known {
        eprintln!("seed {seed}: known finding: {f}");
    }
    for (first, small) in &summary.failures {
        println!(
            "seed {}: {}\nshrunk from {} to {} steps: {}\nreplay with: hvlab sim --replay FILE (this text in FILE)\n{}",
            first.schedule.seed,
            first.failure.as_deref().unwrap_or_default(),
            first.schedule.steps.len(),
            small.schedule.steps.len(),
            small.failure.as_deref().unwrap_or_default(),
            small.schedule.to_text()
        );
    }
    let json = serde_json::json!({
        "schedules": summary.schedules,
        "failures": summary.failures.len(),
        "known_findings": summary.known.len(),
        "seed": seed,
        "schedules_per_second": (summary.per_second() * 10.0).round() / 10.0,
        "steps": summary.steps,
        "elapsed_s": (summary.elapsed_s * 10.0).round() / 10.0,
    });
    println!("{json}");
    Ok(if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A base seed from the clock and the process id: a new one on every run.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = nanos ^ ((std::process::id() as u64) << 32);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) >> 1
}
