//! The fence_kdump panic-notice listener.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::agent::Input;

/// Receives notices and forwards them, unparsed, to the agent (which checks the sender
/// against the configured addresses and counts what it refuses).
pub async fn listen(socket: Arc<UdpSocket>, tx: mpsc::Sender<Input>) {
    let mut buf = [0u8; 512];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if tx
                    .send(Input::Kdump {
                        at: std::time::Instant::now(),
                        from,
                        bytes: buf[..n].to_vec(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(cause = %e, "kdump listener receive error");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
