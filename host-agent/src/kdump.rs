//! The fence_kdump panic-notice listener.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::json;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::agent::Input;
use crate::counters::Counters;
use crate::events::EventLog;
use crate::member::record_limited;

/// Receives notices and forwards those from a host's address (`sources`), unparsed, to
/// the agent without ever waiting for it: a datagram from any other address is counted
/// (`kdump_refused`, with a rate-limited event) and dropped here, and when the agent's
/// queue is full the notice is counted (`kdump_dropped`) and dropped, so a flood at the
/// kdump port neither fills the agent's queue nor holds this task.
pub async fn listen(
    socket: Arc<UdpSocket>,
    sources: HashSet<IpAddr>,
    counters: Counters,
    events: EventLog,
    tx: mpsc::Sender<Input>,
) {
    let mut buf = [0u8; 512];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if !sources.contains(&from.ip()) {
                    record_limited(
                        &counters,
                        &events,
                        "kdump_refused",
                        (None, "kdump_refused"),
                        |since| {
                            format!(
                                "ignored {since} panic notice(s) from {} which is no host's address",
                                from.ip()
                            )
                        },
                        json!({ "from": from.to_string() }),
                    );
                    continue;
                }
                let input = Input::Kdump {
                    at: std::time::Instant::now(),
                    from,
                    bytes: buf[..n].to_vec(),
                };
                match tx.try_send(input) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        counters.bump("kdump_dropped");
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            Err(e) => {
                tracing::warn!(cause = %e, "kdump listener receive error");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
