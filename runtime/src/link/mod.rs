//! Host-link connections, both ends: frames of [`LinkMessage`]s over a byte stream (TCP
//! where guests reach their host by IP, a virtio-serial port otherwise; the host's end
//! is in [`server`]).
//!
//! [`LinkReader`] cuts the stream into frames, authenticates each with the guest
//! cluster's key and rejects replays; [`LinkWriter`] signs and numbers what it sends.
//! Nothing received can crash an agent: every fault of the stream is an error that
//! ends the connection, and the other end reconnects.

use std::time::Duration;

use hvcluster_common::hostlink::{FrameSplitter, LinkMessage};
use hvcluster_common::hostseal::{Opener, Sealer};
use hvcluster_common::wire::{self, Header, ReplayWindow};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::intake::ClusterKey;

#[cfg(test)]
mod limit_tests;
pub mod limits;
pub mod server;

/// Time between keepalives on an idle link.
pub const KEEPALIVE: Duration = Duration::from_millis(1000);
/// Silence after which a link is taken for broken.
pub const LINK_TIMEOUT: Duration = Duration::from_millis(4000);
/// Bound on writing one frame.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// A guest cluster's credentials on the link: its key and id.
#[derive(Debug, Clone)]
pub struct LinkKey {
    /// Guest cluster name.
    pub cluster: String,
    /// Its key.
    pub key: ClusterKey,
    /// Its id, as frames carry it.
    pub cluster_id: u64,
}

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The stream failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The other end closed it.
    #[error("closed by the other end")]
    Closed,
    /// No whole frame arrived within [`LINK_TIMEOUT`].
    #[error("no whole frame within {} ms", LINK_TIMEOUT.as_millis())]
    Silent,
    /// What arrived is not a host-link stream, or not authentic.
    #[error("{0}")]
    Protocol(String),
    /// The registration was not complete within its deadline.
    #[error("registration not complete within {} ms ([host_link] register_timeout_ms)", .0.as_millis())]
    Unregistered(Duration),
}

/// The receiving half of a link.
#[derive(Debug)]
pub struct LinkReader<R> {
    stream: R,
    splitter: FrameSplitter,
    window: ReplayWindow,
    buf: Box<[u8; 8192]>,
    deadline: Option<(tokio::time::Instant, Duration)>,
    opener: Option<Opener>,
}

impl<R: AsyncRead + Unpin> LinkReader<R> {
    /// Wraps the read half of a connection.
    pub fn new(stream: R) -> Self {
        LinkReader {
            stream,
            splitter: FrameSplitter::default(),
            window: ReplayWindow::default(),
            buf: Box::new([0; 8192]),
            deadline: None,
            opener: None,
        }
    }

    /// Every read fails with [`LinkError::Unregistered`] once `limit` from now has
    /// passed (the registration's deadline); `None` lifts it.
    pub fn set_deadline(&mut self, limit: Option<Duration>) {
        self.deadline = limit.map(|l| (tokio::time::Instant::now() + l, l));
    }

    /// From now on, takes only messages a host sealed for this session (the guest's end
    /// of a sealed session): anything else ends the link.
    pub fn require_sealed(&mut self, opener: Opener) {
        self.opener = Some(opener);
    }

    /// The next whole frame's bytes, not yet authenticated. The whole frame must arrive
    /// within [`LINK_TIMEOUT`] of the call: a peer that trickles bytes is cut off as a
    /// silent one would be.
    pub async fn next_raw(&mut self) -> Result<Vec<u8>, LinkError> {
        let frame_deadline = tokio::time::Instant::now() + LINK_TIMEOUT;
        loop {
            if let Some(frame) = self
                .splitter
                .next_frame()
                .map_err(|e| LinkError::Protocol(e.to_string()))?
            {
                return Ok(frame);
            }
            let (until, late) = match self.deadline {
                Some((at, limit)) if at < frame_deadline => (at, LinkError::Unregistered(limit)),
                _ => (frame_deadline, LinkError::Silent),
            };
            let n = tokio::time::timeout_at(until, self.stream.read(&mut self.buf[..]))
                .await
                .map_err(|_| late)??;
            if n == 0 {
                return Err(LinkError::Closed);
            }
            self.splitter.push(&self.buf[..n]);
        }
    }

    /// Authenticates `raw` with `key`, checks it against replays and parses it.
    pub fn open(&mut self, raw: &[u8], key: &LinkKey) -> Result<(Header, LinkMessage), LinkError> {
        let frame = wire::decode(raw, key.key.as_bytes(), key.cluster_id)
            .map_err(|e| LinkError::Protocol(format!("frame refused: {e}")))?;
        if frame.header.kind != wire::Kind::HostLink {
            return Err(LinkError::Protocol(format!(
                "a {:?} frame on the host link",
                frame.header.kind
            )));
        }
        self.window
            .accept(frame.header.incarnation, frame.header.sequence)
            .map_err(|e| LinkError::Protocol(format!("frame refused: {e:?}")))?;
        let message = LinkMessage::from_payload(frame.payload)
            .map_err(|e| LinkError::Protocol(format!("unreadable message: {e}")))?;
        let message = match &mut self.opener {
            // A greeting only makes the guest register again (the VM moved to another
            // host, whose agent cannot seal for a session it does not have).
            Some(_) if matches!(message, LinkMessage::Hello { .. }) => message,
            Some(opener) => opener
                .open(message)
                .map_err(|e| LinkError::Protocol(format!("refused {e}")))?,
            None => message,
        };
        Ok((frame.header, message))
    }

    /// The next authentic message.
    pub async fn next(&mut self, key: &LinkKey) -> Result<(Header, LinkMessage), LinkError> {
        let raw = self.next_raw().await?;
        self.open(&raw, key)
    }
}

/// The sending half of a link.
#[derive(Debug)]
pub struct LinkWriter<W> {
    stream: W,
    key: LinkKey,
    sender: u32,
    incarnation: u64,
    sequence: u64,
    sealer: Option<Sealer>,
}

impl<W: AsyncWrite + Unpin> LinkWriter<W> {
    /// Wraps the write half of a connection; frames name `sender` and `incarnation`.
    pub fn new(stream: W, key: LinkKey, sender: u32, incarnation: u64) -> Self {
        LinkWriter {
            stream,
            key,
            sender,
            incarnation,
            sequence: 0,
            sealer: None,
        }
    }

    /// From now on, seals every message for the session (the host's end of a sealed
    /// session).
    pub fn seal_with(&mut self, sealer: Sealer) {
        self.sealer = Some(sealer);
    }

    /// The guest cluster whose key signs the frames.
    pub fn cluster(&self) -> &str {
        &self.key.cluster
    }

    /// The write half back.
    pub fn into_inner(self) -> W {
        self.stream
    }

    /// Signs and sends one message.
    pub async fn send(&mut self, message: &LinkMessage) -> Result<(), LinkError> {
        self.sequence += 1;
        let sealed;
        let message = match &mut self.sealer {
            Some(sealer) => {
                sealed = sealer.seal(message);
                &sealed
            }
            None => message,
        };
        let frame = message.to_frame(
            self.key.key.as_bytes(),
            self.key.cluster_id,
            self.sender,
            self.incarnation,
            self.sequence,
        );
        tokio::time::timeout(WRITE_TIMEOUT, self.stream.write_all(&frame))
            .await
            .map_err(|_| LinkError::Protocol("write timed out".into()))??;
        Ok(())
    }
}

pub use server::{serve, serve_channels, IncomingGuests, LinkInput, ServerIdentity};

/// Names a guest may register (node and domain names, UUIDs): they end up in
/// commands run on the host.
pub fn safe_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// What a reader task delivers.
pub type Incoming = tokio::sync::mpsc::Receiver<Result<(Header, LinkMessage), LinkError>>;

/// Reads authentic messages on a task of its own until the link fails (the error is the
/// last item), so the caller can wait for them alongside other work.
pub fn spawn_reader<R>(
    mut reader: LinkReader<R>,
    key: LinkKey,
) -> (tokio::task::JoinHandle<()>, Incoming)
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            let got = reader.next(&key).await;
            let end = got.is_err();
            if tx.send(got).await.is_err() || end {
                return;
            }
        }
    });
    (task, rx)
}

/// Moves messages both ways on an established link until it ends: what `outgoing`
/// holds is sent, what arrives is given to `deliver`; keepalives are sent when idle.
/// Returns why it ended.
pub async fn pump<W, F, Fut>(
    writer: &mut LinkWriter<W>,
    outgoing: &mut tokio::sync::mpsc::Receiver<LinkMessage>,
    incoming: &mut Incoming,
    mut deliver: F,
) -> String
where
    W: AsyncWrite + Unpin,
    F: FnMut(LinkMessage) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            got = incoming.recv() => match got {
                Some(Ok((_, LinkMessage::Keepalive))) => {}
                Some(Ok((_, LinkMessage::Hello { host }))) => {
                    return format!("{host} is at the other end now (moved there): registering again");
                }
                Some(Ok((_, message))) => deliver(message).await,
                Some(Err(e)) => return e.to_string(),
                None => return "reader stopped".into(),
            },
            message = outgoing.recv() => match message {
                Some(m) => {
                    if let Err(e) = writer.send(&m).await {
                        return e.to_string();
                    }
                }
                None => return "the agent closed the link".into(),
            },
            _ = keepalive.tick() => {
                if let Err(e) = writer.send(&LinkMessage::Keepalive).await {
                    return e.to_string();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::link_key as key;

    #[tokio::test]
    async fn messages_cross_a_stream_and_replays_and_strangers_are_refused() {
        let (a, b) = tokio::io::duplex(4096);
        let (ra, wa) = tokio::io::split(a);
        let (rb, _wb) = tokio::io::split(b);
        drop(ra);
        let mut w = LinkWriter::new(wa, key("erp"), 2, 7);
        let mut r = LinkReader::new(rb);
        w.send(&LinkMessage::HostDownAck { epoch: 5 })
            .await
            .unwrap();
        let raw = r.next_raw().await.unwrap();
        let (h, m) = r.open(&raw, &key("erp")).unwrap();
        assert_eq!((h.sender, h.incarnation), (2, 7));
        assert_eq!(m, LinkMessage::HostDownAck { epoch: 5 });
        assert!(
            matches!(r.open(&raw, &key("erp")), Err(LinkError::Protocol(e)) if e.contains("refused")),
            "a replayed frame is refused"
        );
        w.send(&LinkMessage::Keepalive).await.unwrap();
        let raw = r.next_raw().await.unwrap();
        assert!(
            r.open(&raw, &key("crm")).is_err(),
            "another guest cluster's key"
        );
    }

    #[tokio::test]
    async fn a_greeting_ends_the_session_so_the_guest_registers_again() {
        let (a, b) = tokio::io::duplex(4096);
        let (_ra, wa) = tokio::io::split(a);
        let (rb, _wb) = tokio::io::split(b);
        let mut host = LinkWriter::new(wa, key("erp"), 3, 9);
        let mut guest_writer = LinkWriter::new(tokio::io::sink(), key("erp"), 1, 4);
        let (_keep, mut outgoing) = tokio::sync::mpsc::channel::<LinkMessage>(1);
        let (_task, mut incoming) = spawn_reader(LinkReader::new(rb), key("erp"));
        host.send(&LinkMessage::HostDownAck { epoch: 1 })
            .await
            .unwrap();
        host.send(&LinkMessage::Hello { host: "h3".into() })
            .await
            .unwrap();
        let mut delivered = Vec::new();
        let why = pump(&mut guest_writer, &mut outgoing, &mut incoming, |m| {
            delivered.push(m);
            async {}
        })
        .await;
        assert_eq!(delivered, vec![LinkMessage::HostDownAck { epoch: 1 }]);
        assert!(
            why.contains("h3") && why.contains("registering again"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn garbage_and_a_closed_stream_end_the_link() {
        let (mut a, b) = tokio::io::duplex(4096);
        let mut r = LinkReader::new(b);
        a.write_all(b"garbage!").await.unwrap();
        assert!(matches!(r.next_raw().await, Err(LinkError::Protocol(_))));
        let (a, b) = tokio::io::duplex(4096);
        drop(a);
        let mut r = LinkReader::new(b);
        assert!(matches!(r.next_raw().await, Err(LinkError::Closed)));
    }

    /// A registration recorded on one connection and replayed on another cannot
    /// answer the new connection's nonce: the replayed guest is never registered.
    #[tokio::test]
    async fn a_replayed_registration_is_not_confirmed() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut inputs) = tokio::sync::mpsc::channel(16);
        let me = ServerIdentity {
            host: "h1".into(),
            node_id: 1,
            incarnation: 5,
            guest_clusters: std::sync::Arc::new(vec![server::tests::members("erp")]),
            ..ServerIdentity::default()
        };
        tokio::spawn(serve(
            listener,
            std::sync::Arc::new(vec![key("erp")]),
            me,
            tx,
        ));
        let k = key("erp");
        let frame = |m: &LinkMessage, seq| m.to_frame(k.key.as_bytes(), k.cluster_id, 2, 9, seq);
        let register = frame(
            &LinkMessage::Register {
                cluster: "erp".into(),
                node: "g2".into(),
                node_id: 2,
                domain: None,
            },
            1,
        );
        // The genuine guest.
        let (r, mut w) = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap()
            .into_split();
        let mut reader = LinkReader::new(r);
        w.write_all(&register).await.unwrap();
        let LinkMessage::Registered { nonce, .. } = reader.next(&k).await.unwrap().1 else {
            panic!("not registered");
        };
        let confirm = frame(&LinkMessage::Confirm { nonce }, 2);
        w.write_all(&confirm).await.unwrap();
        let first = inputs.recv().await;
        assert!(matches!(
            first,
            Some(LinkInput::Registered { node_id: 2, .. })
        ));
        // The recording, replayed on a new connection.
        let (r2, mut w2) = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap()
            .into_split();
        let mut reader2 = LinkReader::new(r2);
        w2.write_all(&register).await.unwrap();
        let LinkMessage::Registered { nonce: other, .. } = reader2.next(&k).await.unwrap().1 else {
            panic!("no challenge");
        };
        assert_ne!(other, nonce, "every connection gets its own nonce");
        w2.write_all(&confirm).await.unwrap();
        match inputs.recv().await {
            Some(LinkInput::Closed {
                guest: None, why, ..
            }) => {
                assert!(why.contains("not confirmed"), "{why}")
            }
            other => panic!("the replay was registered: {other:?}"),
        }
    }

    /// On a sealed session only what a host sealed passes, and a greeting (the VM
    /// moved: the new host has no session to seal for, and it only makes the guest
    /// register again).
    #[tokio::test]
    async fn a_sealed_session_takes_sealed_messages_and_greetings_only() {
        use hvcluster_common::hostseal::{HostSigningKey, Opener, Sealer, SessionBinding};
        let binding = SessionBinding {
            cluster_id: key("erp").cluster_id,
            node_id: 2,
            host_nonce: 1,
            guest_nonce: 2,
        };
        let signing = HostSigningKey::derive(b"host cluster key");
        let (a, b) = tokio::io::duplex(8192);
        let (_ra, wa) = tokio::io::split(a);
        let (rb, _wb) = tokio::io::split(b);
        let mut host = LinkWriter::new(wa, key("erp"), 3, 9);
        let mut r = LinkReader::new(rb);
        r.require_sealed(Opener::new(signing.public(), binding));
        let down = LinkMessage::HostDownAck { epoch: 1 };
        let hello = LinkMessage::Hello { host: "h3".into() };
        host.send(&hello).await.unwrap();
        host.seal_with(Sealer::new(signing, binding));
        host.send(&down).await.unwrap();
        assert_eq!(r.next(&key("erp")).await.unwrap().1, hello);
        assert_eq!(r.next(&key("erp")).await.unwrap().1, down);
        // The same message unsealed, as a guest holding the key could frame it.
        let k = key("erp");
        let forged = down.to_frame(k.key.as_bytes(), k.cluster_id, 3, 9, 3);
        assert!(matches!(
            r.open(&forged, &k),
            Err(LinkError::Protocol(e)) if e.contains("unsigned HostDownAck")
        ));
    }

    #[test]
    fn only_safe_names_may_be_registered() {
        assert!(safe_name("vm-01.example_a"));
        assert!(safe_name("0f8fad5b-d9cb-469f-a165-70867728950e"));
        for bad in ["", "a b", "x'y", "$(id)", "a/b", &"x".repeat(129)] {
            assert!(!safe_name(bad), "{bad:?}");
        }
    }
}
