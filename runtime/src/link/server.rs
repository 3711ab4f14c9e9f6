//! The host agent's end of the host link: accepting TCP links and connecting to the
//! virtio-serial channels of this host's guests, registering each guest, then passing
//! messages both ways.

use std::time::Duration;

use hvcluster_common::hostlink::LinkMessage;
use hvcluster_common::link_identity::{self, Arrival, Claim};
use tokio::io::{AsyncRead, AsyncWrite};

use hvcluster_common::link_admission::{AcceptBackoff, Admission};

use super::limits::{LinkLimits, RefusalTally, SharedAdmission, Slot, REPORT_EVERY};
use super::{pump, safe_name, spawn_reader, LinkKey, LinkReader, LinkWriter, LINK_TIMEOUT};

/// What a host-link connection tells the host agent.
#[derive(Debug)]
pub enum LinkInput {
    /// A guest registered; send it messages through `tx`.
    Registered {
        /// Connection id.
        conn: u64,
        /// Guest cluster.
        cluster: String,
        /// Node name.
        node: String,
        /// Node id in its guest cluster.
        node_id: u32,
        /// The guest agent's incarnation.
        incarnation: u64,
        /// Its domain, as the host established it (never only what the guest said).
        domain: Option<String>,
        /// Where messages for it go.
        tx: tokio::sync::mpsc::Sender<LinkMessage>,
    },
    /// A registered guest sent a message.
    Message {
        /// Connection id.
        conn: u64,
        /// The message.
        message: LinkMessage,
    },
    /// A connection ended (registered or not).
    Closed {
        /// Connection id.
        conn: u64,
        /// Who it was, if it had registered.
        guest: Option<String>,
        /// Why.
        why: String,
    },
    /// Connections closed at once because a cap was reached, since the last report (at
    /// most one a second).
    Refused(RefusalTally),
    /// A guest claimed to be someone the host does not know it to be: refused (the
    /// connection then ends).
    ClaimRefused {
        /// Connection id.
        conn: u64,
        /// Guest cluster (its key signed the registration).
        cluster: String,
        /// Node name claimed.
        node: String,
        /// Why.
        reason: String,
    },
}

/// This host as the link's server: its name, node id and incarnation.
#[derive(Debug, Clone, Default)]
pub struct ServerIdentity {
    /// Host name.
    pub host: String,
    /// Node id in the host cluster.
    pub node_id: u32,
    /// The host agent's incarnation.
    pub incarnation: u64,
    /// Domains migrating in, with the guest cluster of their guest: greeted on their
    /// channel ([`LinkMessage::Hello`]). The agent keeps it up to date.
    pub incoming: IncomingGuests,
    /// Caps and deadlines before a guest is authenticated.
    pub limits: LinkLimits,
    /// The guest clusters served, with their members: who a guest may register as.
    pub guest_clusters: std::sync::Arc<Vec<hvcluster_common::config::GuestClusterEntry>>,
    /// The hosts' key that seals what this host tells guests asking for a sealed
    /// session; none: such guests are refused.
    pub signing: Option<hvcluster_common::hostseal::HostSigningKey>,
}

/// Domain name → guest cluster of the domains migrating to this host.
pub type IncomingGuests =
    std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>;

/// Accepts host links on `listener` until the task is dropped; every connection is
/// served by its own task. Before a guest is authenticated it is held to `me.limits`:
/// a connection past a cap is closed at once (counted, and reported to the agent at
/// most once a second as [`LinkInput::Refused`]), and one that has not registered
/// within the registration deadline is closed. A failing accept (out of file
/// descriptors, say) is retried after a wait that doubles up to a second.
pub async fn serve(
    listener: tokio::net::TcpListener,
    keys: std::sync::Arc<Vec<LinkKey>>,
    me: ServerIdentity,
    inputs: tokio::sync::mpsc::Sender<LinkInput>,
) {
    let admission: SharedAdmission =
        std::sync::Arc::new(std::sync::Mutex::new(Admission::new(me.limits.admission)));
    let mut backoff = AcceptBackoff::default();
    let mut tally = RefusalTally::default();
    let mut report = tokio::time::interval(REPORT_EVERY);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let log = crate::counters::Counters::default();
    let mut next_conn = 0u64;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = report.tick() => {
                if let Some(t) = tally.take() {
                    // Never waits: a full queue means the agent is busy, and the next
                    // report carries on counting.
                    if let Err(tokio::sync::mpsc::error::TrySendError::Full(LinkInput::Refused(t))) =
                        inputs.try_send(LinkInput::Refused(t))
                    {
                        tally = t;
                    }
                }
                continue;
            }
        };
        let (stream, from) = match accepted {
            Ok(ok) => {
                backoff.succeeded();
                ok
            }
            Err(e) => {
                let wait = backoff.failed();
                if let Some(since) = log.bump_logged("accept_failed", std::time::Instant::now()) {
                    tracing::warn!(
                        cause = %e, failures = since, retry_in_ms = wait.as_millis() as u64,
                        "cannot accept a host link (out of file descriptors? see the agent's \
                         open-file limit at start)"
                    );
                }
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let slot = match Slot::take(&admission, from.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                drop(stream);
                tally.count(from.ip(), why);
                if let Some(since) = log.bump_logged(why.counter(), std::time::Instant::now()) {
                    tracing::warn!(%from, refused = since, "host link refused: {why}");
                }
                continue;
            }
        };
        next_conn += 1;
        let conn = next_conn;
        let (keys, me, inputs) = (keys.clone(), me.clone(), inputs.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let (r, w) = stream.into_split();
            let arrival = Arrival::Tcp { source: from.ip() };
            let (guest, why) =
                serve_connection(r, w, conn, &keys, &me, &inputs, None, arrival).await;
            if guest.is_some() {
                tracing::info!(conn, %from, guest = ?guest, %why, "host link closed");
            } else {
                // Anyone can open one: the agent counts these and reports them sparingly.
                tracing::debug!(conn, %from, %why, "host link closed before registration");
            }
            let _ = inputs.send(LinkInput::Closed { conn, guest, why }).await;
        });
    }
}

/// Serves one connection: identify and register the guest, then pass messages both
/// ways until it ends. Returns who it was and why it ended.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve_connection<R, W>(
    r: R,
    w: W,
    conn: u64,
    keys: &[LinkKey],
    me: &ServerIdentity,
    inputs: &tokio::sync::mpsc::Sender<LinkInput>,
    greet: Option<&LinkKey>,
    arrival: Arrival,
) -> (Option<String>, String)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    // A guest arriving by migration is registered with the host it left: told who is
    // here now, it registers again at once.
    let mut greeted = None;
    let mut w = Some(w);
    if let Some(key) = greet {
        let mut writer = LinkWriter::new(
            w.take().expect("set above"),
            key.clone(),
            me.node_id,
            me.incarnation,
        );
        let hello = LinkMessage::Hello {
            host: me.host.clone(),
        };
        if let Err(e) = writer.send(&hello).await {
            return (None, e.to_string());
        }
        greeted = Some(writer);
    }
    let mut reader = LinkReader::new(r);
    reader.set_deadline(Some(me.limits.register_timeout));
    // The first frame says which guest cluster speaks: the key that authenticates it.
    let raw = match reader.next_raw().await {
        Ok(raw) => raw,
        Err(e) => return (None, e.to_string()),
    };
    let Some((key, header, first)) = keys
        .iter()
        .find_map(|k| reader.open(&raw, k).ok().map(|(h, m)| (k.clone(), h, m)))
    else {
        return (
            None,
            "first frame not signed by any configured guest cluster".into(),
        );
    };
    // The greeting's writer goes on (its sequence numbers with it) when the guest is of
    // the cluster it was signed for.
    let mut writer = match (greeted, w) {
        (Some(g), _) if g.cluster() == key.cluster => g,
        (Some(g), _) => LinkWriter::new(g.into_inner(), key.clone(), me.node_id, me.incarnation),
        (None, Some(w)) => LinkWriter::new(w, key.clone(), me.node_id, me.incarnation),
        (None, None) => unreachable!("the write half is either greeted or kept"),
    };
    let LinkMessage::Register {
        cluster,
        node,
        node_id,
        domain,
    } = first
    else {
        return (
            None,
            format!("first message is not a registration: {first:?}"),
        );
    };
    if cluster != key.cluster || node_id != header.sender {
        let reason = format!(
            "registration as {node} (node {node_id}) of {cluster} does not match its frames \
             (guest cluster {}, node {})",
            key.cluster, header.sender
        );
        let _ = writer
            .send(&LinkMessage::Refused {
                reason: reason.clone(),
            })
            .await;
        return (None, reason);
    }
    if let Some(bad) = [Some(&node), domain.as_ref()]
        .into_iter()
        .flatten()
        .find(|v| !safe_name(v))
    {
        let reason = format!(
            "{bad:?} is not a valid node or domain name (letters, digits, '.', '-', '_', \
             at most 128)"
        );
        let _ = writer
            .send(&LinkMessage::Refused {
                reason: reason.clone(),
            })
            .await;
        return (None, reason);
    }
    // The host establishes who the guest is: a member of its guest cluster, in the
    // domain the host has for it, on that domain's channel or from its address.
    let claim = Claim {
        node: &node,
        node_id,
        domain: domain.as_deref(),
    };
    let established = me
        .guest_clusters
        .iter()
        .find(|g| g.name == cluster)
        .ok_or_else(|| format!("guest cluster {cluster} is not served here"))
        .and_then(|g| link_identity::establish(g, &arrival, claim).map_err(|e| e.to_string()));
    let domain = match established {
        Ok(identity) => Some(identity.domain),
        Err(reason) => {
            let _ = writer
                .send(&LinkMessage::Refused {
                    reason: reason.clone(),
                })
                .await;
            let refused = LinkInput::ClaimRefused {
                conn,
                cluster: cluster.clone(),
                node: node.clone(),
                reason: reason.clone(),
            };
            let _ = inputs.send(refused).await;
            return (Some(format!("{node} of {cluster}")), reason);
        }
    };
    let who = format!("{node} of {cluster}");
    // A registration recorded elsewhere and replayed here cannot sign the answer to a
    // nonce of this connection.
    let nonce: u64 = rand::random();
    if let Err(e) = writer
        .send(&LinkMessage::Registered {
            host: me.host.clone(),
            nonce,
        })
        .await
    {
        return (Some(who), e.to_string());
    }
    // A guest on a virtio-serial port may have written registrations while nobody was
    // at this end; they arrive now, before its confirmation, and are passed over.
    loop {
        let next = tokio::time::timeout(LINK_TIMEOUT, reader.next(&key)).await;
        match next {
            Ok(Ok((_, LinkMessage::Confirm { nonce: n }))) if n == nonce => break,
            Ok(Ok((
                _,
                LinkMessage::ConfirmSession {
                    nonce: n,
                    guest_nonce,
                },
            ))) if n == nonce => {
                if let Err(why) =
                    seal_session(&mut writer, me, &key, node_id, nonce, guest_nonce).await
                {
                    return (None, format!("registration of {who}: {why}"));
                }
                break;
            }
            Ok(Ok((_, LinkMessage::Register { .. }))) => continue,
            Ok(Ok((_, other))) => {
                return (
                    None,
                    format!("registration of {who} not confirmed (got {other:?})"),
                )
            }
            Ok(Err(e)) => return (None, format!("registration of {who} not confirmed: {e}")),
            Err(_) => {
                return (
                    None,
                    format!("registration of {who} not confirmed within {LINK_TIMEOUT:?}"),
                )
            }
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let registered = LinkInput::Registered {
        conn,
        cluster,
        node,
        node_id,
        incarnation: header.incarnation,
        domain,
        tx,
    };
    if inputs.send(registered).await.is_err() {
        return (Some(who), "the agent is stopping".into());
    }
    reader.set_deadline(None);
    let (read_task, mut in_rx) = spawn_reader(reader, key.clone());
    let why = pump(&mut writer, &mut rx, &mut in_rx, |message| {
        let inputs = inputs.clone();
        async move {
            let _ = inputs.send(LinkInput::Message { conn, message }).await;
        }
    })
    .await;
    read_task.abort();
    (Some(who), why)
}

/// Seals everything sent on from now on for this session and proves it to the guest:
/// [`LinkMessage::Registered`] again, sealed.
async fn seal_session<W: AsyncWrite + Unpin>(
    writer: &mut LinkWriter<W>,
    me: &ServerIdentity,
    key: &LinkKey,
    node_id: u32,
    nonce: u64,
    guest_nonce: u64,
) -> Result<(), String> {
    use hvcluster_common::hostseal::{Sealer, SessionBinding};
    let Some(signing) = &me.signing else {
        let reason = "this host has no key to sign host-link messages with".to_string();
        let _ = writer
            .send(&LinkMessage::Refused {
                reason: reason.clone(),
            })
            .await;
        return Err(reason);
    };
    let binding = SessionBinding {
        cluster_id: key.cluster_id,
        node_id,
        host_nonce: nonce,
        guest_nonce,
    };
    writer.seal_with(Sealer::new(signing.clone(), binding));
    writer
        .send(&LinkMessage::Registered {
            host: me.host.clone(),
            nonce,
        })
        .await
        .map_err(|e| e.to_string())
}

/// Connection ids of virtio-serial channels start here (those of TCP links from 1).
const CHANNEL_CONNS: u64 = 1 << 62;

/// Serves the virtio-serial host links of this host's guests: each guest's channel is a
/// Unix socket in `dir` (libvirt `<channel type='unix'>`, `<source mode='bind'
/// path='DIR/DOMAIN.sock'/>`, `<target type='virtio' name='org.hvcluster.link'/>`),
/// where QEMU listens. Every second, each socket not connected yet is connected to and
/// served like an accepted TCP link; a channel whose connection ends is connected again
/// (the guest started again, or was migrated back).
pub async fn serve_channels(
    dir: std::path::PathBuf,
    keys: std::sync::Arc<Vec<LinkKey>>,
    me: ServerIdentity,
    inputs: tokio::sync::mpsc::Sender<LinkInput>,
) {
    let connected = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::<
        std::path::PathBuf,
    >::new()));
    let mut next_conn = CHANNEL_CONNS;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut unreadable = false;
    loop {
        tick.tick().await;
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => {
                unreadable = false;
                entries
            }
            Err(e) => {
                if !std::mem::replace(&mut unreadable, true) {
                    tracing::warn!(dir = %dir.display(), cause = %e, "cannot read the channel directory (read again every second)");
                }
                continue;
            }
        };
        let sockets: Vec<std::path::PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sock"))
            .collect();
        for path in sockets {
            if !connected
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(path.clone())
            {
                continue;
            }
            let Ok(stream) = tokio::net::UnixStream::connect(&path).await else {
                // Nobody listens (the guest is off): tried again next time.
                connected
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&path);
                continue;
            };
            next_conn += 1;
            let conn = next_conn;
            let (keys, me, inputs, connected) =
                (keys.clone(), me.clone(), inputs.clone(), connected.clone());
            // The channel is `DOMAIN.sock`: a domain migrating in is greeted.
            let domain = path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            let cluster = {
                let incoming = me.incoming.lock().unwrap_or_else(|p| p.into_inner());
                incoming.get(&domain).cloned()
            };
            let arrival = Arrival::Channel { domain };
            tokio::spawn(async move {
                let (r, w) = stream.into_split();
                let greet = cluster.and_then(|c| keys.iter().find(|k| k.cluster == c));
                let (guest, why) =
                    serve_connection(r, w, conn, &keys, &me, &inputs, greet, arrival).await;
                tracing::info!(conn, channel = %path.display(), guest = ?guest, %why, "host link closed");
                let _ = inputs.send(LinkInput::Closed { conn, guest, why }).await;
                // A pause before connecting again: a guest that is not up yet.
                tokio::time::sleep(Duration::from_millis(500)).await;
                connected
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&path);
            });
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
