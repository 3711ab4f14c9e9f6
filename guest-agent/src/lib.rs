//! hv-guestd, the guest agent: a tokio driver around the membership machine and the
//! userApplication engine of `hvcluster-common`. It runs resource operations as child
//! processes and feeds their outcomes, heartbeats, operator commands and ticks back.

mod agent;
mod describe;
pub mod resources;
mod state;

use std::path::PathBuf;

use anyhow::Context;
use hvcluster_common::config::guest::GuestConfig;

pub use agent::Agent;

/// What the command line says.
#[derive(Debug, Clone)]
pub struct Options {
    /// Path of `guest.toml`.
    pub config: PathBuf,
    /// This node's name in the configuration.
    pub node: String,
    /// Admin socket override.
    pub admin_socket: Option<PathBuf>,
    /// State directory override.
    pub state_dir: Option<PathBuf>,
}

/// Loads the configuration and runs the agent until SIGTERM or SIGINT; then stops the
/// applications running here (reason SHUT) before exiting.
pub fn run(options: Options) -> anyhow::Result<()> {
    let mut loaded = GuestConfig::load(&options.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(p) = &options.admin_socket {
        loaded.config.admin.socket = p.clone();
    }
    if let Some(p) = &options.state_dir {
        loaded.config.cluster.state_dir = p.clone();
    }
    if loaded.config.node(&options.node).is_none() {
        anyhow::bail!(
            "{}: there is no [[node]] named {:?} (configured: {})",
            options.config.display(),
            options.node,
            loaded
                .config
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("hv-guestd")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        for warning in resources::fill_defaults(&mut loaded.config).await {
            tracing::warn!("{warning}");
        }
        let agent = Agent::start(loaded, &options.node).await?;
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
