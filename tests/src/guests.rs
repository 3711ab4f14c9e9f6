//! The guest cluster of a lab: one `hv-guestd` per simulated guest, its configuration,
//! and admin-socket access to each.
//!
//! Every guest agent runs in a private mount namespace with fresh tmpfs on
//! `/run/resource-agents` (where OCF agents keep their state) and on [`GUEST_RUN_DIR`]
//! (for the scenarios' Cmdline resources): what a resource leaves there belongs to that
//! guest alone and is lost when the guest crashes, as `/run` is when a VM reboots.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use hvcluster_common::admin::{GuestStatus, Request, Response};
use hvctl::client::Connection;
use serde::Deserialize;

use crate::cluster::LabCluster;

/// Run directory private to each guest (a tmpfs in its own mount namespace).
pub const GUEST_RUN_DIR: &str = "/run/hvlab-guest";
/// Where OCF resource agents keep their state; private to each guest too.
const OCF_STATE_DIR: &str = "/run/resource-agents";
/// The guest cluster's key file, in the lab's run directory.
pub const GUEST_KEY_FILE: &str = "guest.key";

/// Name of the lab's guest cluster.
pub fn guest_cluster_name(lab: &crate::lab::Lab) -> String {
    format!("guests-{}", lab.id())
}

/// Key file of the stranger guest cluster (see [`stranger_cluster_name`]).
pub const STRANGER_KEY_FILE: &str = "stranger.key";

/// Name of a second guest cluster the lab's hosts serve, which has no guest in the lab:
/// its credentials let a scenario speak as a guest of another guest cluster.
pub fn stranger_cluster_name(lab: &crate::lab::Lab) -> String {
    format!("strangers-{}", lab.id())
}

/// Heartbeat port of the guest cluster on the guest LAN.
pub const GUEST_HEARTBEAT_PORT: u16 = 5420;

/// A guest of the lab's guest cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestSpec {
    /// Name, `g1`..`g99`; also its node name in the guest cluster.
    pub name: String,
    /// Host it runs on.
    pub host: String,
    /// A real virtual machine (QEMU under the host's libvirtd) rather than processes in
    /// a namespace: the real tier.
    #[serde(default)]
    pub vm: bool,
}

impl LabCluster {
    /// Guest names in the order the scenario gives them.
    pub fn guests(&self) -> Vec<String> {
        self.spec.guests.iter().map(|g| g.name.clone()).collect()
    }

    /// Path of the shared guest.toml.
    pub fn guest_config_path(&self) -> PathBuf {
        self.dir.join("guest.toml")
    }

    /// Adds every guest to the lab (namespaces, the guest LAN and the hosts' addresses
    /// on it): before the host agents start, since they listen there.
    pub(crate) fn add_guests(
        lab: &crate::lab::Lab,
        spec: &crate::cluster::ClusterSpec,
    ) -> anyhow::Result<()> {
        for g in &spec.guests {
            lab.add_guest(&g.name, &g.host, g.vm)
                .with_context(|| format!("adding guest {} on {}", g.name, g.host))?;
        }
        Ok(())
    }

    /// Writes guest.toml and starts every guest agent.
    pub(crate) fn start_guests(&mut self) -> anyhow::Result<()> {
        if self.spec.guests.is_empty() {
            return Ok(());
        }
        std::fs::write(self.guest_config_path(), self.render_guest_config()?)?;
        for dir in [GUEST_RUN_DIR, OCF_STATE_DIR] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
        }
        for g in self.spec.guests.clone() {
            if g.vm {
                self.start_vm(&g.name)?;
            } else {
                self.start_guest(&g.name)?;
            }
        }
        Ok(())
    }

    /// Starts the agent of `guest` (at lab start, or after it crashed).
    pub fn start_guest(&mut self, guest: &str) -> anyhow::Result<()> {
        let child = self.spawn_guest_agent(guest)?;
        self.adopt_agent(guest, child)
    }

    /// Starts hv-guestd on `guest` (output to its log) and leaves the child to the caller.
    pub(crate) fn spawn_guest_agent(&mut self, guest: &str) -> anyhow::Result<Child> {
        let gdir = self.dir.join(guest);
        std::fs::create_dir_all(gdir.join("state"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(guest))?;
        let bin = crate::cluster::bin_dir()?.join("hv-guestd");
        // unshare gives the agent a private mount namespace; the shell mounts the
        // guest's tmpfs directories there and becomes the agent (same pid).
        let boot = format!(
            "mount -t tmpfs -o size=16m,mode=0755 hvlab-guest {OCF_STATE_DIR} && \
             mount -t tmpfs -o size=16m,mode=0755 hvlab-guest {GUEST_RUN_DIR} && exec \"$@\""
        );
        let mut cmd = Command::new(crate::lab::program("unshare"));
        cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(boot)
            .arg("guest-boot")
            .arg(bin)
            .arg("--config")
            .arg(self.guest_config_path())
            .arg("--node")
            .arg(guest)
            .arg("--admin-socket")
            .arg(self.socket(guest))
            .arg("--state-dir")
            .arg(gdir.join("state"));
        if self.spec.host_link {
            let host = self.lab.guest_host(guest)?;
            cmd.arg("--host-link-address")
                .arg(self.lab.host_guest_lan_address(&host)?.to_string());
        }
        cmd.env("HV_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        crate::cluster::unblock_signals(&mut cmd);
        self.lab
            .spawn_guest(guest, cmd)
            .with_context(|| format!("cannot start hv-guestd on {guest}"))
    }

    /// The guest crashes: all its processes are killed at once.
    pub fn crash_guest(&mut self, guest: &str) -> anyhow::Result<()> {
        self.lab.kill_guest(guest)?;
        self.forget_agent(guest);
        Ok(())
    }

    /// `guest`'s current status.
    pub fn guest_status(&self, guest: &str) -> anyhow::Result<GuestStatus> {
        let mut conn = Connection::open_bounded(&self.socket(guest), Duration::from_secs(5))?;
        match conn.request(&Request::Status)? {
            Response::GuestStatus(s) => Ok(*s),
            other => bail!("unexpected answer from {guest}: {other:?}"),
        }
    }

    /// Runs `script` with `/bin/sh -c` inside the guest (its network and mount
    /// namespaces, as its resources see them); returns its exit code and output.
    pub fn guest_exec(&self, guest: &str, script: &str) -> anyhow::Result<(i32, String)> {
        let pid = self
            .agent_pid(guest)
            .with_context(|| format!("the agent of {guest} is not running"))?;
        let out = Command::new(crate::lab::program("nsenter"))
            .arg(format!("--target={pid}"))
            .args(["--mount", "--net", "--", "/bin/sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .context("cannot run nsenter")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.code().unwrap_or(-1), text.trim().to_string()))
    }

    fn render_guest_config(&self) -> anyhow::Result<String> {
        let spec = &self.spec;
        let mut out = format!(
            "# Written by hvlab for lab {id}.\n[cluster]\nname = \"{}\"\nkey_file = \"{GUEST_KEY_FILE}\"\n\n\
             [heartbeat]\ninterval_ms = {}\nsuspect_after_ms = {}\ndead_after_ms = {}\n\n\
             [[interconnect]]\nname = \"lan\"\nport = {GUEST_HEARTBEAT_PORT}\n\n",
            guest_cluster_name(&self.lab),
            spec.interval_ms,
            spec.suspect_after_ms,
            spec.dead_after_ms,
            id = self.lab.id()
        );
        let vms = spec.has_vms();
        // What `hvctl config host-link-key` prints on the hosts.
        let host_key = hvcluster_common::hostseal::HostSigningKey::derive(&self.key).public();
        if vms {
            out.push_str(&crate::vms::vm_guest_config_sections(
                spec.host_link,
                &host_key.to_string(),
            ));
        } else if spec.host_link {
            // Each guest is told its own host's address on the command line.
            out.push_str(&format!(
                "[host_link]\ntransport = \"tcp\"\nport = {}\nhost_public_key = \"{host_key}\"\n\n",
                hvcluster_common::config::DEFAULT_HOST_LINK_PORT
            ));
        }
        for g in &spec.guests {
            let n = g.name.trim_start_matches('g');
            out.push_str(&format!(
                "[[node]]\nname = \"{}\"\nnode_id = {n}\naddresses = {{ lan = \"{}\" }}\n",
                g.name,
                self.lab.guest_address(&g.name)?
            ));
            if vms {
                out.push_str(&format!("domain = \"{}\"\n", g.name));
            }
            out.push('\n');
        }
        if spec.applications.is_empty() {
            // An empty array here would land in the last [[node]] table.
            return Ok(out);
        }
        let mut apps = toml::Table::new();
        apps.insert(
            "application".into(),
            toml::Value::Array(
                spec.applications
                    .iter()
                    .cloned()
                    .map(toml::Value::Table)
                    .collect(),
            ),
        );
        out.push_str(&toml::to_string(&apps).context("rendering the applications")?);
        Ok(out)
    }

    /// From inside `via`'s network namespace, speaks to its host's agent as node 1 of the
    /// stranger guest cluster and asks it to kill node `node_id` of the lab's guest
    /// cluster. Returns whether the host agreed and what it said.
    pub fn stranger_kill_request(&self, via: &str, node_id: u32) -> anyhow::Result<(bool, String)> {
        use hvcluster_common::hostlink::LinkMessage;
        use hvcluster_runtime::intake::ClusterKey;
        use hvcluster_runtime::link::{LinkKey, LinkReader, LinkWriter};
        let host = self.lab.guest_host(via)?;
        let addr = std::net::SocketAddr::new(
            self.lab.host_guest_lan_address(&host)?,
            hvcluster_common::config::DEFAULT_HOST_LINK_PORT,
        );
        let name = stranger_cluster_name(&self.lab);
        let key = LinkKey {
            cluster_id: hvcluster_common::config::cluster_id_of(&name),
            cluster: name.clone(),
            key: ClusterKey::new(std::fs::read(self.dir.join(STRANGER_KEY_FILE))?),
        };
        let target = guest_cluster_name(&self.lab);
        self.lab.run_in_guest(via, move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let stream = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    tokio::net::TcpStream::connect(addr),
                )
                .await
                .context("no answer from the host agent")??;
                let (r, w) = stream.into_split();
                let mut reader = LinkReader::new(r);
                let mut writer = LinkWriter::new(w, key.clone(), 1, 1);
                writer
                    .send(&LinkMessage::Register {
                        cluster: name,
                        node: "stranger".into(),
                        node_id: 1,
                        domain: None,
                    })
                    .await?;
                match reader.next(&key).await?.1 {
                    LinkMessage::Registered { nonce, .. } => {
                        writer.send(&LinkMessage::Confirm { nonce }).await?;
                    }
                    other => bail!("registration answered with {other:?}"),
                }
                writer
                    .send(&LinkMessage::KillRequest {
                        request: 1,
                        cluster: target,
                        node_id,
                    })
                    .await?;
                loop {
                    match reader.next(&key).await?.1 {
                        LinkMessage::KillResult { ok, detail, .. } => return Ok((ok, detail)),
                        LinkMessage::Keepalive | LinkMessage::HostDown { .. } => {}
                        other => bail!("kill request answered with {other:?}"),
                    }
                }
            })
        })?
    }
}
