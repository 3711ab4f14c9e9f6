//! A hostile guest on the host link, for scenarios: it speaks from inside a lab guest's
//! network namespace, with the key of a guest cluster the hosts serve, and says what it
//! likes (who it is, which domain it runs in, whom to kill, how often).

use std::time::Duration;

use anyhow::{bail, Context};
use hvcluster_common::hostlink::LinkMessage;
use hvcluster_runtime::intake::ClusterKey;
use hvcluster_runtime::link::{LinkKey, LinkReader, LinkWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::cluster::LabCluster;

/// Who the rogue says it is.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Speak for the stranger guest cluster (else the lab's own guest cluster).
    pub stranger: bool,
    /// Node name.
    pub node: String,
    /// Node id (also the sender of its frames).
    pub node_id: u32,
    /// Domain claimed.
    pub domain: Option<String>,
}

/// An open rogue link, registered or refused.
#[derive(Debug)]
pub struct RogueLink {
    key: LinkKey,
    reader: LinkReader<OwnedReadHalf>,
    writer: LinkWriter<OwnedWriteHalf>,
    /// The host's refusal, if it refused the registration.
    pub refused: Option<String>,
}

impl RogueLink {
    /// Connects to `addr` and registers as `claim` with `key`.
    pub async fn open(
        addr: std::net::SocketAddr,
        key: LinkKey,
        claim: &Claim,
    ) -> anyhow::Result<RogueLink> {
        let stream =
            tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                .await
                .context("no answer from the host agent")??;
        let (r, w) = stream.into_split();
        let mut link = RogueLink {
            reader: LinkReader::new(r),
            writer: LinkWriter::new(w, key.clone(), claim.node_id, rand_incarnation()),
            key,
            refused: None,
        };
        link.writer
            .send(&LinkMessage::Register {
                cluster: link.key.cluster.clone(),
                node: claim.node.clone(),
                node_id: claim.node_id,
                domain: claim.domain.clone(),
            })
            .await?;
        match link.reader.next(&link.key).await?.1 {
            LinkMessage::Registered { nonce, .. } => {
                link.writer.send(&LinkMessage::Confirm { nonce }).await?;
            }
            LinkMessage::Refused { reason } => link.refused = Some(reason),
            other => bail!("registration answered with {other:?}"),
        }
        Ok(link)
    }

    /// Asks for node `node_id` of `cluster` to be killed (request id `request`).
    pub async fn ask_kill(
        &mut self,
        request: u64,
        cluster: &str,
        node_id: u32,
    ) -> anyhow::Result<()> {
        self.writer
            .send(&LinkMessage::KillRequest {
                request,
                cluster: cluster.to_string(),
                node_id,
            })
            .await?;
        Ok(())
    }

    /// The next kill result: request, ok, detail.
    pub async fn kill_result(&mut self) -> anyhow::Result<(u64, bool, String)> {
        loop {
            match self.reader.next(&self.key).await?.1 {
                LinkMessage::KillResult {
                    request,
                    ok,
                    detail,
                    ..
                } => return Ok((request, ok, detail)),
                LinkMessage::Keepalive
                | LinkMessage::HostDown { .. }
                | LinkMessage::MigrationPrepare { .. } => {}
                other => bail!("unexpected message {other:?}"),
            }
        }
    }

    /// Splits the link into its halves, for a flood.
    pub fn into_parts(
        self,
    ) -> (
        LinkKey,
        LinkReader<OwnedReadHalf>,
        LinkWriter<OwnedWriteHalf>,
    ) {
        (self.key, self.reader, self.writer)
    }
}

/// What became of a claim: the host's refusal, if it refused, and the answer to the
/// kill asked afterwards (agreed, what it said).
pub type ClaimOutcome = (Option<String>, Option<(bool, String)>);

fn rand_incarnation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1)
}

impl LabCluster {
    /// The link key of the stranger guest cluster, or of the lab's own.
    pub fn rogue_key(&self, stranger: bool) -> anyhow::Result<LinkKey> {
        let (name, file) = if stranger {
            (
                crate::guests::stranger_cluster_name(&self.lab),
                crate::guests::STRANGER_KEY_FILE,
            )
        } else {
            (
                crate::guests::guest_cluster_name(&self.lab),
                crate::guests::GUEST_KEY_FILE,
            )
        };
        Ok(LinkKey {
            cluster_id: hvcluster_common::config::cluster_id_of(&name),
            cluster: name,
            key: ClusterKey::new(std::fs::read(self.dir.join(file))?),
        })
    }

    /// The host-link address of `via`'s host.
    pub fn rogue_target(&self, via: &str) -> anyhow::Result<std::net::SocketAddr> {
        let host = self.lab.guest_host(via)?;
        Ok(std::net::SocketAddr::new(
            self.lab.host_guest_lan_address(&host)?,
            hvcluster_common::config::DEFAULT_HOST_LINK_PORT,
        ))
    }

    /// Runs `f` on a single-threaded runtime inside `via`'s network namespace.
    pub fn run_rogue<T: Send>(
        &self,
        via: &str,
        f: impl std::future::Future<Output = anyhow::Result<T>> + Send,
    ) -> anyhow::Result<T> {
        self.lab.run_in_guest(via, move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(f)
        })?
    }

    /// From inside `via`, registers as `claim`; returns the host's refusal, if it
    /// refused. With `then_kill`, then registers as node 1 (`stranger`) of the same
    /// guest cluster and asks for node `then_kill` of it to be killed; returns whether
    /// the host agreed and what it said.
    pub fn foreign_claim(
        &self,
        via: &str,
        claim: &Claim,
        then_kill: Option<u32>,
    ) -> anyhow::Result<ClaimOutcome> {
        let addr = self.rogue_target(via)?;
        let key = self.rogue_key(claim.stranger)?;
        let claim = claim.clone();
        self.run_rogue(via, async move {
            let link = RogueLink::open(addr, key.clone(), &claim).await?;
            let refused = link.refused.clone();
            let Some(target) = then_kill else {
                return Ok((refused, None));
            };
            let asker = Claim {
                stranger: claim.stranger,
                node: "stranger".into(),
                node_id: 1,
                domain: None,
            };
            let mut killer = RogueLink::open(addr, key.clone(), &asker).await?;
            if let Some(r) = killer.refused {
                bail!("the asker's own registration was refused: {r}");
            }
            killer.ask_kill(1, &key.cluster, target).await?;
            let (_, ok, detail) =
                tokio::time::timeout(Duration::from_secs(60), killer.kill_result())
                    .await
                    .context("no kill result within 60 s")??;
            drop(link);
            Ok((refused, Some((ok, detail))))
        })
    }
}

/// What a kill flood did.
#[derive(Debug, Clone, Default)]
pub struct FloodStats {
    /// Kill requests sent.
    pub sent: u64,
    /// Kill results received.
    pub results: u64,
    /// Of which successes.
    pub ok: u64,
    /// Times the link was opened again after it broke.
    pub reconnects: u64,
}

impl LabCluster {
    /// From inside guest `via`, speaks as that guest (with the lab's own key) and asks
    /// its host to kill guest node `target` as fast as it can for `length`.
    pub fn kill_flood(
        &self,
        via: &str,
        target: u32,
        length: Duration,
    ) -> anyhow::Result<FloodStats> {
        let addr = self.rogue_target(via)?;
        let key = self.rogue_key(false)?;
        let claim = Claim {
            stranger: false,
            node: via.to_string(),
            node_id: via.trim_start_matches('g').parse()?,
            domain: None,
        };
        self.run_rogue(via, async move {
            let mut stats = FloodStats::default();
            let end = tokio::time::Instant::now() + length;
            let mut request = 0u64;
            while tokio::time::Instant::now() < end {
                let link = match RogueLink::open(addr, key.clone(), &claim).await {
                    Ok(l) if l.refused.is_none() => l,
                    Ok(l) => bail!("the flooding guest was refused: {:?}", l.refused),
                    Err(_) => {
                        stats.reconnects += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (key, reader, mut writer) = link.into_parts();
                let (task, mut incoming) =
                    hvcluster_runtime::link::spawn_reader(reader, key.clone());
                let counter = tokio::spawn(async move {
                    let (mut results, mut ok) = (0u64, 0u64);
                    while let Some(Ok((_, m))) = incoming.recv().await {
                        if let LinkMessage::KillResult { ok: good, .. } = m {
                            results += 1;
                            ok += u64::from(good);
                        }
                    }
                    (results, ok)
                });
                while tokio::time::Instant::now() < end {
                    request += 1;
                    let ask = LinkMessage::KillRequest {
                        request,
                        cluster: key.cluster.clone(),
                        node_id: target,
                    };
                    if writer.send(&ask).await.is_err() {
                        stats.reconnects += 1;
                        break;
                    }
                    stats.sent += 1;
                }
                drop(writer);
                tokio::time::sleep(Duration::from_millis(200)).await;
                task.abort();
                if let Ok((results, ok)) = counter.await {
                    stats.results += results;
                    stats.ok += ok;
                }
            }
            Ok(stats)
        })
    }
}
