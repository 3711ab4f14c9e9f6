//! The guest agent's end of the host link, as the driver starts it: the link task
//! (`crate::link`) and the forwarding of what it reports into the driver loop.

use anyhow::Context;
use hvcluster_common::application::GuestHeartbeat;
use hvcluster_common::config::guest::GuestConfig;
use hvcluster_common::config::NodeId;
use hvcluster_runtime::member::Member;
use tokio::sync::mpsc;

use super::Input;

/// Starts the host link when `[host_link]` configures one.
pub(super) fn start_host_link(
    config: &GuestConfig,
    member: &Member<Input, GuestHeartbeat>,
    key: Vec<u8>,
    node: &str,
    me: NodeId,
    incarnation: tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<Option<mpsc::Sender<hvcluster_common::hostlink::LinkMessage>>> {
    use hvcluster_common::config::guest::HostLinkTransport;
    let link = &config.host_link;
    let port = link
        .port
        .unwrap_or(hvcluster_common::config::DEFAULT_HOST_LINK_PORT);
    let endpoint = match link.transport {
        HostLinkTransport::None => return Ok(None),
        HostLinkTransport::Tcp => crate::link::Endpoint::Tcp(std::net::SocketAddr::new(
            link.address.with_context(|| {
                "[host_link] transport = \"tcp\" needs the host agent's address: set \
                 [host_link] address or give --host-link-address"
            })?,
            port,
        )),
        HostLinkTransport::VirtioSerial => crate::link::Endpoint::Port(
            link.device
                .clone()
                .context("[host_link] transport = \"virtio-serial\" needs device")?,
        ),
        HostLinkTransport::Vsock => anyhow::bail!(
            "[host_link] transport = \"vsock\" is not available in this release: use \
             \"virtio-serial\" or \"tcp\" (or \"none\")"
        ),
    };
    let identity = crate::link::LinkIdentity {
        endpoint,
        key: hvcluster_runtime::link::LinkKey {
            cluster: config.cluster.name.clone(),
            key: hvcluster_runtime::intake::ClusterKey::new(key),
            cluster_id: config.cluster_id(),
        },
        node: node.to_string(),
        node_id: me,
        incarnation,
        domain: config.node(node).and_then(|n| n.domain.clone()),
        host_key: link.host_public_key().context(
            "[host_link] needs a valid host_public_key (printed by `hvctl config \
             host-link-key` on a host)",
        )?,
    };
    let (tx, mut rx) = mpsc::channel(64);
    let outgoing = crate::link::spawn(identity, tx);
    let inputs = member.tx.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if inputs.send(Input::Link(event)).await.is_err() {
                return;
            }
        }
    });
    Ok(Some(outgoing))
}
