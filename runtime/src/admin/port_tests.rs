//! The admin server over a virtio-serial port, against a stand-in for the guest side of
//! the port as the kernel keeps it: host bytes wait in the port's buffer, a read ends at
//! once while no host client is connected, and closing the port discards what waits.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::*;

/// Run when a read finds the host end gone: what the host does at that very moment.
type AtEnd = Box<dyn FnOnce(&mut Wire) + Send>;

/// Both sides of the port.
#[derive(Default)]
struct Wire {
    host_connected: bool,
    /// Host to guest, not yet read.
    waiting: Vec<u8>,
    /// Guest to host.
    answers: Vec<u8>,
    reader: Option<Waker>,
    at_end: Option<AtEnd>,
    opens: usize,
}

impl Wire {
    /// A host client connects and sends `request`.
    fn connect_and_ask(&mut self, request: &Request) {
        self.host_connected = true;
        self.waiting.extend(serde_json::to_vec(request).unwrap());
        self.waiting.push(b'\n');
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    fn leave(&mut self) {
        self.host_connected = false;
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    fn answer_lines(&self) -> usize {
        self.answers.iter().filter(|b| **b == b'\n').count()
    }
}

/// The guest's open port.
struct FakePort(Arc<Mutex<Wire>>);

impl AsyncRead for FakePort {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut wire = self.0.lock().unwrap();
        if !wire.waiting.is_empty() {
            let n = buf.remaining().min(wire.waiting.len());
            buf.put_slice(&wire.waiting[..n]);
            wire.waiting.drain(..n);
            return Poll::Ready(Ok(()));
        }
        if !wire.host_connected {
            if let Some(then) = wire.at_end.take() {
                then(&mut wire);
            }
            return Poll::Ready(Ok(()));
        }
        wire.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for FakePort {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().answers.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for FakePort {
    /// Closing a port discards what waits in it.
    fn drop(&mut self) {
        self.0.lock().unwrap().waiting.clear();
    }
}

#[derive(Debug, Clone)]
struct Done;

impl Dispatch for Done {
    async fn dispatch(&self, _request: Request) -> Response {
        Response::Done {
            message: "done".into(),
        }
    }
}

/// Waits up to `limit` for `ok` to hold on the wire.
async fn until(wire: &Arc<Mutex<Wire>>, limit: Duration, ok: impl Fn(&Wire) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if ok(&wire.lock().unwrap()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ok(&wire.lock().unwrap())
}

#[tokio::test]
async fn a_request_that_arrives_as_the_previous_client_leaves_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let wire = Arc::new(Mutex::new(Wire::default()));
    let opener = {
        let wire = wire.clone();
        move || {
            wire.lock().unwrap().opens += 1;
            Ok(FakePort(wire.clone()))
        }
    };
    let server = tokio::spawn(async move {
        serve_port_with(
            opener,
            Path::new("/dev/virtio-ports/test"),
            Done,
            EventLog::new("g1"),
            AuditLog::new(dir.path().join("audit.log"), "g1"),
        )
        .await
    });
    let status = Request::Status;
    wire.lock().unwrap().connect_and_ask(&status);
    assert!(
        until(&wire, Duration::from_secs(5), |w| w.answer_lines() == 1).await,
        "the first client got no answer"
    );
    // The first client leaves; the next one connects and asks just as the agent reads
    // the first one's end.
    {
        let mut w = wire.lock().unwrap();
        let next = status.clone();
        w.at_end = Some(Box::new(move |w: &mut Wire| w.connect_and_ask(&next)));
        w.leave();
    }
    let answered = until(&wire, Duration::from_secs(5), |w| w.answer_lines() == 2).await;
    let opens = wire.lock().unwrap().opens;
    server.abort();
    assert!(
        answered,
        "the second client's request was lost ({opens} opens)"
    );
    assert_eq!(opens, 1, "the port was closed between the two clients");
}
