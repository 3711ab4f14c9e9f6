//! A blocking client of the agent's admin socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::admin::{Request, Response};
use crate::config::guest::DEFAULT_GUEST_ADMIN_SOCKET;
use crate::config::DEFAULT_ADMIN_SOCKET;
use anyhow::Context;

/// The admin socket to use: `given` (from `--socket` or `HV_ADMIN_SOCKET`) when set,
/// else the host agent's default socket if it exists, else the guest agent's, so the
/// same hvctl works on a hypervisor and inside a guest.
pub fn choose_socket(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    choose_socket_among(
        given,
        Path::new(DEFAULT_ADMIN_SOCKET),
        Path::new(DEFAULT_GUEST_ADMIN_SOCKET),
    )
}

/// [`choose_socket`] with the two default paths given.
pub fn choose_socket_among(
    given: Option<&Path>,
    host: &Path,
    guest: &Path,
) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    for p in [host, guest] {
        // Only "not found" rules a path out: a socket in a directory we may not read
        // (not root) is tried, so that connecting reports the real cause.
        match std::fs::symlink_metadata(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            _ => return Ok(p.to_path_buf()),
        }
    }
    anyhow::bail!(
        "no agent socket here: neither the host agent's {} (hv-hostd, on a hypervisor) nor \
         the guest agent's {} (hv-guestd, inside a guest) exists. Start the agent of this \
         machine, or name its socket with --socket or HV_ADMIN_SOCKET",
        host.display(),
        guest.display()
    )
}

/// One connection to an agent.
#[derive(Debug)]
pub struct Connection {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Connection {
    /// Connects, explaining the usual reasons it fails.
    pub fn open(path: &Path) -> anyhow::Result<Connection> {
        let stream = UnixStream::connect(path).with_context(|| {
            format!(
                "cannot reach the agent at {} (is hv-hostd running on this hypervisor, or \
                 hv-guestd in this guest, and are you root? --socket or HV_ADMIN_SOCKET \
                 choose another socket)",
                path.display()
            )
        })?;
        Ok(Connection {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Like [`Connection::open`], with every read and write bounded by `limit`: for an
    /// agent reached through a channel that accepts the connection even while nobody
    /// serves it (a guest's virtio-serial admin port).
    pub fn open_bounded(path: &Path, limit: std::time::Duration) -> anyhow::Result<Connection> {
        let conn = Connection::open(path)?;
        conn.writer.set_read_timeout(Some(limit))?;
        conn.writer.set_write_timeout(Some(limit))?;
        Ok(conn)
    }

    /// Connects and asks for every event from now on, as the agent records them (read
    /// them with [`Connection::receive`]).
    pub fn follow_events(path: &Path) -> anyhow::Result<Connection> {
        let mut conn = Connection::open(path)?;
        conn.send(&Request::Events {
            since: None,
            follow: true,
        })?;
        Ok(conn)
    }

    /// Sends one request.
    pub fn send(&mut self, r: &Request) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(r)?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .context("cannot send to the agent")
    }

    /// Reads one response; `None` when the agent closed the connection.
    pub fn receive(&mut self) -> anyhow::Result<Option<Response>> {
        let mut line = String::new();
        if self
            .reader
            .read_line(&mut line)
            .context("cannot read from the agent")?
            == 0
        {
            return Ok(None);
        }
        Ok(Some(
            serde_json::from_str(&line).with_context(|| format!("unreadable answer: {line}"))?,
        ))
    }

    /// Sends a request and reads its answer.
    pub fn request(&mut self, r: &Request) -> anyhow::Result<Response> {
        self.send(r)?;
        self.receive()?.context(
            "the agent closed the connection without answering: it answers root only (are \
             you root?), or it is stopping",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_socket_wins_then_the_host_agents_then_the_guest_agents() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("hostd.sock");
        let guest = dir.path().join("guestd.sock");
        let given = dir.path().join("other.sock");
        let choose = |given: Option<&Path>| choose_socket_among(given, &host, &guest);

        let err = choose(None).unwrap_err().to_string();
        assert!(
            err.contains(&*host.to_string_lossy()) && err.contains(&*guest.to_string_lossy()),
            "{err}"
        );
        assert!(err.contains("--socket or HV_ADMIN_SOCKET"), "{err}");
        // A given path is used even when it does not exist: connecting says why.
        assert_eq!(choose(Some(&given)).unwrap(), given);

        std::fs::write(&guest, "").unwrap();
        assert_eq!(choose(None).unwrap(), guest);
        std::fs::write(&host, "").unwrap();
        assert_eq!(choose(None).unwrap(), host);
        assert_eq!(choose(Some(&given)).unwrap(), given);
    }
}
