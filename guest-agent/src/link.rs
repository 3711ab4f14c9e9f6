//! The guest's end of the host link: connects to the host agent of the host this guest
//! runs on (over TCP, or through a virtio-serial port), registers, passes host-down
//! notices to the agent and its answers back, and reconnects after every break.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hvcluster_common::hostlink::LinkMessage;
use hvcluster_common::hostseal::{HostPublicKey, Opener, SessionBinding};
use hvcluster_runtime::link::{pump, spawn_reader, LinkKey, LinkReader, LinkWriter};
use tokio::sync::mpsc;

/// Pause before reconnecting after a failure.
const RECONNECT: Duration = Duration::from_millis(500);
/// Bound on establishing a connection, and on the host agent's answer to a
/// registration.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the host agent is.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// It listens on this TCP address.
    Tcp(SocketAddr),
    /// At the host end of this virtio-serial port (the guest's character device).
    Port(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "{a}"),
            Endpoint::Port(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Who this guest is on the link.
#[derive(Debug, Clone)]
pub struct LinkIdentity {
    /// Where the host agent is.
    pub endpoint: Endpoint,
    /// The guest cluster's credentials.
    pub key: LinkKey,
    /// This node's name and id.
    pub node: String,
    /// This node's id.
    pub node_id: u32,
    /// The guest agent's incarnation; when it changes (the agent rejoined its guest
    /// cluster), the link registers again under the new one, so host-down notices name
    /// the incarnation the partners hear.
    pub incarnation: tokio::sync::watch::Receiver<u64>,
    /// The guest's domain, if configured.
    pub domain: Option<String>,
    /// The hosts' public key: what the host says is taken only when sealed with it.
    pub host_key: HostPublicKey,
}

/// What the link tells the agent.
#[derive(Debug)]
pub enum LinkEvent {
    /// Registered with the host agent of `host`.
    Linked {
        /// The host.
        host: String,
    },
    /// The link is down (or could not be made); it is being retried.
    Lost {
        /// Why.
        why: String,
    },
    /// A message from the host agent.
    Message(LinkMessage),
}

/// Starts the link task; messages for the host agent go into the returned sender.
pub fn spawn(mut me: LinkIdentity, events: mpsc::Sender<LinkEvent>) -> mpsc::Sender<LinkMessage> {
    let (tx, mut outgoing) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut reported_failure = false;
        loop {
            let why = match session(&mut me, &events, &mut outgoing).await {
                Ok(why) => {
                    reported_failure = false;
                    why
                }
                Err(why) => why,
            };
            if events.is_closed() {
                return;
            }
            // A host agent that is not there yet is reported once, not every retry.
            if !reported_failure {
                let _ = events.send(LinkEvent::Lost { why }).await;
                reported_failure = true;
            }
            tokio::time::sleep(RECONNECT).await;
        }
    });
    tx
}

/// One connection, from connect to break. `Err` when it never registered.
async fn session(
    me: &mut LinkIdentity,
    events: &mpsc::Sender<LinkEvent>,
    outgoing: &mut mpsc::Receiver<LinkMessage>,
) -> Result<String, String> {
    match &me.endpoint {
        Endpoint::Tcp(address) => {
            let stream =
                tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
                    .await
                    .map_err(|_| format!("no answer from {address} within {CONNECT_TIMEOUT:?}"))?
                    .map_err(|e| format!("cannot connect to {address}: {e}"))?;
            let _ = stream.set_nodelay(true);
            let (r, w) = stream.into_split();
            linked(me, events, outgoing, r, w).await
        }
        Endpoint::Port(path) => {
            let port = hvcluster_runtime::port::Port::open_fresh(path).map_err(|e| {
                format!("cannot open the virtio-serial port {}: {e}", path.display())
            })?;
            let (r, w) = tokio::io::split(port);
            linked(me, events, outgoing, r, w).await
        }
    }
}

/// Confirms the registration asking for a sealed session, with a nonce of this
/// connection; the link holds once the host proves it is one, by sealing its
/// registration again for this session. Returns the host's name.
async fn seal_session<R, W>(
    me: &LinkIdentity,
    reader: &mut LinkReader<R>,
    writer: &mut LinkWriter<W>,
    nonce: u64,
    deadline: tokio::time::Instant,
) -> Result<String, String>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let guest_nonce: u64 = rand::random();
    writer
        .send(&LinkMessage::ConfirmSession { nonce, guest_nonce })
        .await
        .map_err(|e| e.to_string())?;
    reader.require_sealed(Opener::new(
        me.host_key,
        SessionBinding {
            cluster_id: me.key.cluster_id,
            node_id: me.node_id,
            host_nonce: nonce,
            guest_nonce,
        },
    ));
    let proof = tokio::time::timeout_at(deadline, reader.next(&me.key))
        .await
        .map_err(|_| {
            format!(
                "the host agent on {} did not sign its answer within {CONNECT_TIMEOUT:?}",
                me.endpoint
            )
        })?
        .map_err(|e| {
            format!(
                "{e}: is [host_link] host_public_key the one `hvctl config host-link-key` \
                 prints on the hosts?"
            )
        })?;
    match proof.1 {
        LinkMessage::Registered { host, nonce: n } if n == nonce => Ok(host),
        other => Err(format!(
            "unexpected signed answer to the registration: {}",
            other.name()
        )),
    }
}

/// Registers over an open stream and passes messages until it breaks.
async fn linked<R, W>(
    me: &mut LinkIdentity,
    events: &mpsc::Sender<LinkEvent>,
    outgoing: &mut mpsc::Receiver<LinkMessage>,
    r: R,
    w: W,
) -> Result<String, String>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut reader = LinkReader::new(r);
    let incarnation = *me.incarnation.borrow_and_update();
    let mut writer = LinkWriter::new(w, me.key.clone(), me.node_id, incarnation);
    writer
        .send(&LinkMessage::Register {
            cluster: me.key.cluster.clone(),
            node: me.node.clone(),
            node_id: me.node_id,
            domain: me.domain.clone(),
        })
        .await
        .map_err(|e| e.to_string())?;
    // Over a port nothing says whether the host agent is at the other end: it answers
    // in time or the registration is tried again. A greeting (the host end changed) may
    // come first.
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let answer = loop {
        let got = tokio::time::timeout_at(deadline, reader.next(&me.key))
            .await
            .map_err(|_| {
                format!(
                    "no host agent answered on {} within {CONNECT_TIMEOUT:?}",
                    me.endpoint
                )
            })?
            .map_err(|e| e.to_string())?;
        if !matches!(got.1, LinkMessage::Hello { .. }) {
            break got;
        }
    };
    let host = match answer {
        (_, LinkMessage::Registered { nonce, .. }) => {
            seal_session(me, &mut reader, &mut writer, nonce, deadline).await?
        }
        (_, LinkMessage::Refused { reason }) => return Err(format!("refused: {reason}")),
        (_, other) => return Err(format!("unexpected answer to the registration: {other:?}")),
    };
    let _ = events.send(LinkEvent::Linked { host }).await;
    // Messages queued while the link was down are stale (acks of notices the host
    // repeats anyway): start afresh.
    while outgoing.try_recv().is_ok() {}
    let (read_task, mut incoming) = spawn_reader(reader, me.key.clone());
    let why = tokio::select! {
        why = pump(&mut writer, outgoing, &mut incoming, |m| async {
            let _ = events.send(LinkEvent::Message(m)).await;
        }) => why,
        _ = me.incarnation.changed() => {
            "the agent rejoined under a new incarnation: registering again".to_string()
        }
    };
    read_task.abort();
    Ok(why)
}

#[cfg(test)]
mod tests;
