//! hv-hostd, the host agent: a tokio driver around the membership core of
//! `hvcluster-common`. It performs the core's actions (send heartbeats, report events)
//! and feeds it what arrives: heartbeat frames, kdump notices, watchdog verdicts, ticks.

pub mod admin;
mod agent;
pub mod child;
pub mod counters;
mod describe;
pub mod events;
mod fence;
pub mod fence_runner;
pub mod incarnation;
pub mod journal;
mod kdump;
pub mod net;
mod operator;
mod process;
mod watchdog;

use std::path::PathBuf;

use anyhow::Context;
use hvcluster_common::config::ClusterConfig;

pub use agent::Agent;

/// What the command line says.
#[derive(Debug, Clone)]
pub struct Options {
    /// Path of `cluster.toml`.
    pub config: PathBuf,
    /// This host's name in the configuration.
    pub host: String,
    /// Admin socket override.
    pub admin_socket: Option<PathBuf>,
    /// State directory override.
    pub state_dir: Option<PathBuf>,
    /// Pressure file override.
    pub psi_source: Option<PathBuf>,
}

/// Loads the configuration, prepares the process and runs the agent until SIGTERM or
/// SIGINT.
pub fn run(options: Options) -> anyhow::Result<()> {
    let mut loaded = ClusterConfig::load(&options.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(p) = &options.admin_socket {
        loaded.config.admin.socket = p.clone();
    }
    if let Some(p) = &options.state_dir {
        loaded.config.cluster.state_dir = p.clone();
    }
    if let Some(p) = &options.psi_source {
        loaded.config.load_watchdog.psi_source = p.clone();
    }
    if loaded.config.host(&options.host).is_none() {
        anyhow::bail!(
            "{}: there is no [[host]] named {:?} (configured: {})",
            options.config.display(),
            options.host,
            loaded
                .config
                .hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // Before the runtime starts, so every thread inherits the scheduling class.
    let prepared = process::prepare(&loaded.config.load_watchdog);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("hv-hostd")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let agent = Agent::start(loaded, &options.host, prepared).await?;
        agent.run_until(shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
