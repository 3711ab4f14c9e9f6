//! The admin socket: root-only Unix socket speaking newline-delimited JSON
//! ([`hvcluster_common::admin`]).

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Context;
use hvcluster_common::admin::line::{LineSplitter, Piece};
use hvcluster_common::admin::{Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::audit::{AuditLog, Peer};
use crate::events::EventLog;

/// Longest request line accepted; a longer one is refused while it is read.
pub const MAX_LINE: usize = 64 * 1024;
/// Longest wait for a client to take one answer line: one that does not read ends its
/// connection.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a client's next request.
pub const REQUEST_IDLE: Duration = Duration::from_secs(300);

/// The group whose members may read an agent's status, events and fencing history
/// through its admin socket, but not act. Without such a group the socket is root's only.
pub const READERS_GROUP: &str = "hvcluster";

/// The readers group's id, when the group exists.
fn readers_gid() -> Option<nix::unistd::Gid> {
    nix::unistd::Group::from_name(READERS_GROUP)
        .ok()
        .flatten()
        .map(|g| g.gid)
}

/// Whether the caller `uid` with primary group `gid` is in the readers group `readers`:
/// as its primary group, or as a member listed in the group database.
fn is_reader(uid: u32, gid: u32, readers: nix::unistd::Gid) -> bool {
    if gid == readers.as_raw() {
        return true;
    }
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return false;
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(gid))
        .is_ok_and(|groups| groups.contains(&readers))
}

/// Binds the socket, replacing a stale one: readable and writable by root, and by the
/// readers group ([`READERS_GROUP`]) when it exists, whose members may only read.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "{} is in use: another agent runs with this admin socket",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot bind admin socket {}", path.display()))?;
    match readers_gid() {
        Some(gid) => {
            nix::unistd::chown(path, None, Some(gid)).with_context(|| {
                format!("cannot give {} to group {READERS_GROUP}", path.display())
            })?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        }
        None => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?,
    }
    Ok(listener)
}

/// What answers the requests of an admin client (all but `events`, which the server
/// answers from the event log itself).
pub trait Dispatch: Clone + Send + Sync + 'static {
    /// The answer to `request`.
    fn dispatch(&self, request: Request) -> impl Future<Output = Response> + Send;
}

/// What an admin client asks of an agent's driver loop, with where the answer goes;
/// `S` is the agent's status snapshot.
#[derive(Debug)]
pub enum AdminCall<S> {
    /// The status snapshot.
    Status(oneshot::Sender<S>),
    /// An operator command the agent takes.
    Operator {
        /// The command.
        request: Request,
        /// Where its answer goes.
        reply: oneshot::Sender<Response>,
    },
}

/// Hands `request` (the status, or an operator command the agent takes) to the driver
/// loop behind `tx` as input `wrap(call)` and waits for the answer; `status` makes the
/// response of a status snapshot.
pub async fn forward<S, I>(
    tx: &mpsc::Sender<I>,
    request: Request,
    wrap: impl Fn(AdminCall<S>) -> I,
    status: impl FnOnce(S) -> Response,
) -> Response {
    match request {
        Request::Status => ask(tx, |reply| wrap(AdminCall::Status(reply)))
            .await
            .map_or_else(stopping, status),
        request => ask(tx, |reply| wrap(AdminCall::Operator { request, reply }))
            .await
            .unwrap_or_else(stopping),
    }
}

/// Accepts admin clients until the task is aborted; operator commands go to `audit`
/// with the caller's uid and pid.
pub async fn serve<D: Dispatch>(
    listener: UnixListener,
    dispatch: D,
    events: EventLog,
    audit: AuditLog,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors or memory: wait instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let cred = stream.peer_cred().ok();
        let uid = cred.map(|c| c.uid()).unwrap_or(u32::MAX);
        let reader = uid != 0
            && cred.is_some_and(|c| readers_gid().is_some_and(|g| is_reader(uid, c.gid(), g)));
        if uid != 0 && !reader {
            tracing::warn!(
                uid,
                "admin connection refused: root and group {READERS_GROUP} only"
            );
            continue;
        }
        let peer = Peer {
            via: "socket",
            uid: Some(uid),
            pid: cred.and_then(|c| c.pid()),
            read_only: reader,
        };
        let (r, w) = stream.into_split();
        tokio::spawn(client(
            r,
            w,
            dispatch.clone(),
            events.clone(),
            (audit.clone(), peer),
        ));
    }
}

/// Whether `request` only reads: what a member of the readers group may ask.
fn is_read(request: &Request) -> bool {
    matches!(
        request,
        Request::Status | Request::Events { .. } | Request::FenceHistory
    )
}

/// Writes one answer line; a client that does not take it within [`REPLY_TIMEOUT`]
/// gets an error, which ends its connection.
async fn send(w: &mut (impl AsyncWriteExt + Unpin), r: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r).unwrap_or_default();
    line.push(b'\n');
    tokio::time::timeout(REPLY_TIMEOUT, w.write_all(&line))
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the admin client did not read its answer",
            ))
        })
}

/// The request lines of one connection, read in chunks with [`MAX_LINE`] enforced as
/// they arrive.
struct RequestLines<R> {
    reader: R,
    splitter: LineSplitter,
    ready: VecDeque<Piece>,
    ended: bool,
    /// The stream ended by the client's going away (not by a read error).
    at_end: bool,
}

impl<R: AsyncRead + Unpin> RequestLines<R> {
    fn new(reader: R) -> Self {
        RequestLines {
            reader,
            splitter: LineSplitter::new(MAX_LINE),
            ready: VecDeque::new(),
            ended: false,
            at_end: false,
        }
    }

    /// The next line (or the refusal of one too long); `None` at the end of the stream.
    async fn next(&mut self) -> Option<Piece> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(piece) = self.ready.pop_front() {
                return Some(piece);
            }
            if self.ended {
                return None;
            }
            let read = self.reader.read(&mut chunk).await;
            match read {
                Ok(0) | Err(_) => {
                    self.ended = true;
                    self.at_end = matches!(read, Ok(0));
                    self.ready.extend(self.splitter.finish().map(Piece::Line));
                }
                Ok(n) => self.ready.extend(self.splitter.push(&chunk[..n])),
            }
        }
    }
}

/// Serves admin requests over a virtio-serial port (`hvctl --socket` on the host end's
/// socket reaches this agent from the hypervisor), one client at a time. Who can connect
/// to the host end is root on the hypervisor.
///
/// The port stays open from one host client to the next: the guest's kernel discards
/// what is waiting in a port when it is closed, and the next client's request may
/// already be there when the previous one's end is read (a client that connects right
/// after another left, or the host end reopened on a live migration's destination). It
/// is reopened only after an error.
pub async fn serve_port<D: Dispatch>(
    path: std::path::PathBuf,
    dispatch: D,
    events: EventLog,
    audit: AuditLog,
) {
    serve_port_with(
        || crate::port::Port::open(&path),
        &path,
        dispatch,
        events,
        audit,
    )
    .await
}

/// Pause before the next client's session while the host end is away, and before
/// reopening the port after an error.
const PORT_RETRY: Duration = Duration::from_millis(200);

/// [`serve_port`] with the port opened by `open`.
pub(crate) async fn serve_port_with<P, D>(
    mut open: impl FnMut() -> std::io::Result<P>,
    path: &Path,
    dispatch: D,
    events: EventLog,
    audit: AuditLog,
) where
    P: AsyncRead + tokio::io::AsyncWrite + Unpin,
    D: Dispatch,
{
    let peer = Peer {
        via: "port",
        uid: None,
        pid: None,
        read_only: false,
    };
    let mut reported = false;
    loop {
        match open() {
            Ok(port) => {
                reported = false;
                let (mut r, mut w) = tokio::io::split(port);
                // One client after another; while no host client is connected the
                // session ends at once and the next one starts after the pause.
                while client(
                    &mut r,
                    &mut w,
                    dispatch.clone(),
                    events.clone(),
                    (audit.clone(), peer),
                )
                .await
                    == Ended::ClientLeft
                {
                    tokio::time::sleep(PORT_RETRY).await;
                }
            }
            Err(e) if !reported => {
                tracing::warn!(port = %path.display(), cause = %e, "cannot open the admin port");
                reported = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(PORT_RETRY).await;
    }
}

/// How an admin connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The client went away: its end of the stream was read.
    ClientLeft,
    /// A read error, an answer not taken, a line too long or a client idle too long.
    Broken,
}

/// Serves one admin connection: each request line answered in turn; operator commands
/// recorded in the audit log first. Says how it ended.
pub(crate) async fn client<D: Dispatch>(
    r: impl AsyncRead + Unpin,
    mut w: impl AsyncWriteExt + Unpin,
    dispatch: D,
    events: EventLog,
    (audit, peer): (AuditLog, Peer),
) -> Ended {
    let mut lines = RequestLines::new(r);
    loop {
        let line = match tokio::time::timeout(REQUEST_IDLE, lines.next()).await {
            Ok(Some(Piece::Line(line))) => line,
            Ok(Some(Piece::TooLong)) => {
                let message = format!("request line longer than {MAX_LINE} bytes");
                let _ = send(&mut w, &Response::Error { message }).await;
                return Ended::Broken;
            }
            Ok(None) if lines.at_end => return Ended::ClientLeft,
            Ok(None) | Err(_) => return Ended::Broken,
        };
        let request: Request = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                let message = format!("bad request: {e}");
                if send(&mut w, &Response::Error { message }).await.is_err() {
                    return Ended::Broken;
                }
                continue;
            }
        };
        let done = match request {
            Request::Events { since, follow } => {
                stream_events(&mut w, &events, since.unwrap_or(0), follow).await
            }
            request if peer.read_only && !is_read(&request) => {
                let message = format!(
                    "members of group {READERS_GROUP} may read (status, events, fence history); \
                     this command needs root"
                );
                send(&mut w, &Response::Refused { message }).await.is_err()
            }
            request => {
                audit.record(peer, &request).await;
                let response = dispatch.dispatch(request).await;
                send(&mut w, &response).await.is_err()
            }
        };
        if done {
            return Ended::Broken;
        }
    }
}

/// Hands the driver loop a request carrying a oneshot and waits for its answer; `None`
/// when the loop is gone (the agent is stopping).
pub async fn ask<T, I>(
    tx: &mpsc::Sender<I>,
    input: impl FnOnce(oneshot::Sender<T>) -> I,
) -> Option<T> {
    let (reply, rx) = oneshot::channel();
    tx.send(input(reply)).await.ok()?;
    rx.await.ok()
}

/// The answer when the driver loop is gone.
pub fn stopping() -> Response {
    Response::Error {
        message: "agent is stopping".into(),
    }
}

/// Sends the history after `since`, then, with `follow`, new events until the client
/// goes away. Returns true when the connection is finished.
async fn stream_events(
    w: &mut (impl AsyncWriteExt + Unpin),
    events: &EventLog,
    since: u64,
    follow: bool,
) -> bool {
    let (mut rx, history) = events.subscribe_with_history(since);
    let mut last = since;
    for e in history {
        last = e.seq;
        if send(w, &Response::Event(e)).await.is_err() {
            return true;
        }
    }
    if send(w, &Response::EndOfHistory { last_seq: last })
        .await
        .is_err()
    {
        return true;
    }
    if !follow {
        return false;
    }
    loop {
        match rx.recv().await {
            Ok(e) if e.seq > last => {
                last = e.seq;
                if send(w, &Response::Event(e)).await.is_err() {
                    return true;
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let message =
                    format!("{n} events were skipped because this client read too slowly");
                if send(w, &Response::Error { message }).await.is_err() {
                    return true;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return true,
        }
    }
}

#[cfg(test)]
mod port_tests;
#[cfg(test)]
mod tests;
