//! The guest's end of a sealed session against a genuine host and against a partner of
//! its guest cluster speaking as the host.

use super::*;
use hvcluster_common::hostseal::{HostSigningKey, Sealer};
use hvcluster_runtime::link::{serve, LinkInput, LinkKey, ServerIdentity};
use hvcluster_runtime::testing::{cluster_key_bytes, guest_cluster, link_key};

const HOST_KEY: &[u8] = b"the host cluster key, 32 bytes!!";

fn guest_key() -> LinkKey {
    link_key("erp")
}

fn host_down() -> LinkMessage {
    LinkMessage::HostDown {
        epoch: 1,
        host: "h2".into(),
        proof: "power-off".into(),
        guests: vec![(1, 3)],
    }
}

/// Node 2 of `erp`, linking over TCP to `address`, trusting `host_key`.
fn identity(
    address: SocketAddr,
    host_key: HostPublicKey,
) -> (LinkIdentity, tokio::sync::watch::Sender<u64>) {
    let (keep, incarnation) = tokio::sync::watch::channel(4);
    let me = LinkIdentity {
        endpoint: Endpoint::Tcp(address),
        key: guest_key(),
        node: "g2".into(),
        node_id: 2,
        incarnation,
        domain: None,
        host_key,
    };
    (me, keep)
}

/// Runs one session of the guest's link against whatever listens at `address`; returns
/// how it ended and every event the agent was given.
async fn one_session(
    address: SocketAddr,
    host_key: HostPublicKey,
) -> (Result<String, String>, Vec<LinkEvent>) {
    let (mut me, _keep) = identity(address, host_key);
    let (events_tx, mut events) = mpsc::channel(16);
    let (_out_tx, mut outgoing) = mpsc::channel(16);
    let ended = tokio::time::timeout(
        Duration::from_secs(20),
        session(&mut me, &events_tx, &mut outgoing),
    )
    .await
    .expect("the session ends by itself");
    drop(events_tx);
    let mut got = Vec::new();
    while let Some(e) = events.recv().await {
        got.push(e);
    }
    (ended, got)
}

/// How a partner of the guest cluster (it holds the guest cluster key) answers, posing
/// as the host agent.
#[derive(Debug, Clone, Copy)]
enum Impostor {
    /// Plain frames, as the guest cluster key allows.
    Unsealed,
    /// Sealed with a key of its own making (derived from the key it holds).
    OwnSeal,
}

/// Accepts one link and plays the host agent the way `how` says: registers the guest,
/// then tells it that h2 is DOWN with its partner.
async fn impostor(listener: tokio::net::TcpListener, how: Impostor) {
    use hvcluster_common::hostseal::SessionBinding;
    use hvcluster_runtime::link::{LinkReader, LinkWriter};
    let (stream, _) = listener.accept().await.unwrap();
    let (r, w) = stream.into_split();
    let mut reader = LinkReader::new(r);
    let mut writer = LinkWriter::new(w, guest_key(), 1, 1);
    let (_, first) = reader.next(&guest_key()).await.unwrap();
    assert!(matches!(first, LinkMessage::Register { .. }), "{first:?}");
    let registered = LinkMessage::Registered {
        host: "h1".into(),
        nonce: 5,
    };
    writer.send(&registered).await.unwrap();
    let Ok((_, LinkMessage::ConfirmSession { nonce, guest_nonce })) =
        reader.next(&guest_key()).await
    else {
        return;
    };
    if let Impostor::OwnSeal = how {
        let binding = SessionBinding {
            cluster_id: guest_key().cluster_id,
            node_id: 2,
            host_nonce: nonce,
            guest_nonce,
        };
        writer.seal_with(Sealer::new(
            HostSigningKey::derive(&cluster_key_bytes("erp")),
            binding,
        ));
    }
    let _ = writer.send(&registered).await;
    let _ = writer.send(&host_down()).await;
    // Held open: the guest must end the session itself.
    let _ = reader.next(&guest_key()).await;
}

/// A partner holding the guest cluster key that gets between a guest and its host can
/// frame a HostDown; the guest refuses it and never counts itself linked to it.
#[tokio::test]
async fn a_partner_speaking_as_the_host_is_refused() {
    let trusted = HostSigningKey::derive(HOST_KEY).public();
    for how in [Impostor::Unsealed, Impostor::OwnSeal] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let fake = tokio::spawn(impostor(listener, how));
        let (ended, events) = one_session(address, trusted).await;
        let why = ended.expect_err("no session with an impostor");
        let expected = match how {
            Impostor::Unsealed => "unsigned Registered",
            Impostor::OwnSeal => "signature does not match",
        };
        assert!(why.contains(expected), "{how:?}: {why}");
        assert!(why.contains("host_public_key"), "{how:?}: {why}");
        assert!(
            events.is_empty(),
            "{how:?}: the agent was told something: {events:?}"
        );
        fake.abort();
    }
}

/// A genuine host seals what it says for the session; the guest links and takes it.
/// The same host is refused by a guest configured with another public key.
#[tokio::test]
async fn a_genuine_host_is_heard_and_a_wrong_public_key_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (inputs_tx, mut inputs) = mpsc::channel(16);
    let me = ServerIdentity {
        host: "h1".into(),
        node_id: 1,
        incarnation: 5,
        signing: Some(HostSigningKey::derive(HOST_KEY)),
        guest_clusters: std::sync::Arc::new(vec![guest_cluster("erp", &[("g2", 2, "vm-g2")])]),
        ..ServerIdentity::default()
    };
    let server = tokio::spawn(serve(
        listener,
        std::sync::Arc::new(vec![guest_key()]),
        me,
        inputs_tx,
    ));
    // The host tells the guest about h2 as soon as it is registered, then closes.
    let host_side = tokio::spawn(async move {
        while let Some(input) = inputs.recv().await {
            if let LinkInput::Registered { tx, .. } = input {
                tx.send(host_down()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
                return;
            }
        }
    });
    let (mut me, _keep) = identity(address, HostSigningKey::derive(HOST_KEY).public());
    let (events_tx, mut events) = mpsc::channel(16);
    let (_out_tx, mut outgoing) = mpsc::channel(16);
    let guest = tokio::spawn(async move {
        let _ = session(&mut me, &events_tx, &mut outgoing).await;
    });
    let linked = tokio::time::timeout(Duration::from_secs(20), events.recv()).await;
    assert!(
        matches!(linked, Ok(Some(LinkEvent::Linked { ref host })) if host == "h1"),
        "{linked:?}"
    );
    let notice = tokio::time::timeout(Duration::from_secs(20), events.recv()).await;
    assert!(
        matches!(notice, Ok(Some(LinkEvent::Message(ref m))) if *m == host_down()),
        "{notice:?}"
    );
    guest.abort();
    host_side.abort();

    let other = HostSigningKey::derive(b"another host cluster's key......").public();
    let (ended, events) = one_session(address, other).await;
    let why = ended.expect_err("another cluster's hosts are not this guest's");
    assert!(why.contains("signature does not match"), "{why}");
    assert!(events.is_empty(), "{events:?}");
    server.abort();
}
