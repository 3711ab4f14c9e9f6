//! The admin server against hostile clients: a line that never ends, a client that
//! never reads; and the audit record of an operator command.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, ReadBuf};

use super::*;

/// Answers every request with `Done`, its message `size` bytes long.
#[derive(Debug, Clone)]
struct Answer(usize);

impl Dispatch for Answer {
    async fn dispatch(&self, _request: Request) -> Response {
        Response::Done {
            message: "x".repeat(self.0),
        }
    }
}

/// `total` bytes of `x` with no line end, counting what was taken.
struct Endless {
    left: usize,
    served: Arc<AtomicUsize>,
}

impl AsyncRead for Endless {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = buf.remaining().min(self.left);
        buf.put_slice(&vec![b'x'; n]);
        self.left -= n;
        self.served.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

fn audit_in(dir: &std::path::Path) -> (AuditLog, Peer) {
    let peer = Peer {
        via: "socket",
        uid: Some(0),
        pid: Some(1),
        read_only: false,
    };
    (AuditLog::new(dir.join("audit.log"), "h1"), peer)
}

#[tokio::test]
async fn an_over_long_line_is_refused_before_it_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let reader = Endless {
        left: 10 << 20,
        served: served.clone(),
    };
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    client(
        reader,
        theirs,
        Answer(2),
        EventLog::new("h1"),
        audit_in(dir.path()),
    )
    .await;
    let taken = served.load(Ordering::Relaxed);
    assert!(
        taken <= MAX_LINE + 16 * 1024,
        "{taken} bytes were read of a line that passed {MAX_LINE} bytes"
    );
    let mut answer = String::new();
    BufReader::new(ours).read_line(&mut answer).await.unwrap();
    assert!(
        answer.contains("request line longer than 65536 bytes"),
        "{answer}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_its_answer_is_let_go() {
    let dir = tempfile::tempdir().unwrap();
    // A 4 KiB pipe and a 1 MiB answer: the write blocks until the client reads.
    let (ours, theirs) = tokio::io::duplex(4096);
    let (their_r, their_w) = tokio::io::split(theirs);
    let (_our_r, mut our_w) = tokio::io::split(ours);
    our_w
        .write_all(b"{\"cmd\":\"fence\",\"host\":\"h2\"}\n")
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    let served = tokio::time::timeout(
        REPLY_TIMEOUT * 3,
        client(
            their_r,
            their_w,
            Answer(1 << 20),
            EventLog::new("h1"),
            audit_in(dir.path()),
        ),
    )
    .await;
    assert!(served.is_ok(), "the connection was still held");
    assert!(start.elapsed() >= REPLY_TIMEOUT);
}

#[tokio::test]
async fn operator_commands_are_audited_with_the_callers_uid_and_pid() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let listener = bind(&socket).unwrap();
    let audit = AuditLog::new(dir.path().join("state").join("audit.log"), "h1");
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    let server = tokio::spawn(serve(listener, Answer(2), EventLog::new("h1"), audit));
    let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let (r, mut w) = stream.into_split();
    w.write_all(b"{\"cmd\":\"status\"}\n{\"cmd\":\"fence\",\"host\":\"h2\"}\n")
        .await
        .unwrap();
    let mut lines = BufReader::new(r).lines();
    for _ in 0..2 {
        let line = lines.next_line().await.unwrap().unwrap();
        assert!(line.contains("done"), "{line}");
    }
    server.abort();
    let log_path = dir.path().join("state").join("audit.log");
    let text = std::fs::read_to_string(&log_path).unwrap();
    let records: Vec<hvcluster_common::admin::audit::AuditRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The status read is not recorded; the fence is, with who asked.
    assert_eq!(records.len(), 1, "{text}");
    let r = &records[0];
    assert_eq!(r.request, Request::Fence { host: "h2".into() });
    assert_eq!((r.agent.as_str(), r.via.as_str()), ("h1", "socket"));
    assert_eq!(r.uid, Some(nix::unistd::geteuid().as_raw()));
    assert_eq!(r.pid, Some(std::process::id() as i32));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
