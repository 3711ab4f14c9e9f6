//! A virtio-serial port (a character device in the guest) as an async byte stream. The
//! device is opened once, non-blocking, and driven by the runtime's readiness events,
//! so a read waiting for the host never holds up a write.
//!
//! While the host end is not connected the port reports a hang-up, which the runtime
//! keeps as final ("closed") for as long as the descriptor stays registered. A port
//! outlives its host's connections (the host reconnects, a live migration reopens the
//! host end on the destination), so a read or write that finds nothing to do after such
//! a hang-up registers the descriptor afresh: it then waits for the next event instead
//! of spinning on the stale hang-up.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An open port.
#[derive(Debug)]
pub struct Port {
    /// None only after registering afresh failed; every later call then fails.
    fd: Option<AsyncFd<File>>,
}

impl Port {
    /// Opens the character device at `path` for reading and writing, first discarding
    /// what the host end wrote for an earlier opener (stale answers of a link).
    pub fn open_fresh(path: &Path) -> io::Result<Port> {
        Port::open_with(path, true)
    }

    /// Opens the character device at `path` for reading and writing.
    pub fn open(path: &Path) -> io::Result<Port> {
        Port::open_with(path, false)
    }

    fn open_with(path: &Path, fresh: bool) -> io::Result<Port> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(path)?;
        if fresh {
            let mut stale = [0u8; 4096];
            while matches!((&file).read(&mut stale), Ok(n) if n > 0) {}
        }
        Port::register(file)
    }

    fn register(file: File) -> io::Result<Port> {
        Ok(Port {
            fd: Some(register(file)?),
        })
    }

    fn fd(&self) -> io::Result<&AsyncFd<File>> {
        self.fd.as_ref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "the port could not be registered again",
            )
        })
    }

    /// Registers the descriptor afresh, forgetting a stale hang-up (see the module).
    fn rearm(&mut self) -> io::Result<()> {
        let file = self.fd.take().map(AsyncFd::into_inner);
        match file {
            Some(file) => {
                self.fd = Some(register(file)?);
                Ok(())
            }
            None => self.fd().map(|_| ()),
        }
    }
}

fn register(file: File) -> io::Result<AsyncFd<File>> {
    // SAFETY: the descriptor is the `File`'s own; the `AsyncFd` owns that `File`, so it
    // stays open and the same for as long as it is registered.
    unsafe { AsyncFd::register(file) }.map_err(|e| e.into_parts().1)
}

/// What one attempt at a read or write came to.
enum Attempt<T> {
    Done(io::Result<T>),
    /// Nothing to do yet, and the readiness seen was a hang-up: register afresh.
    Stale,
    /// Nothing to do yet: wait for the next event.
    Again,
}

impl AsyncRead for Port {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let attempt = {
                let mut guard = ready!(this.fd()?.poll_read_ready(cx))?;
                let hung_up = guard.ready().is_read_closed();
                match guard.try_io(|f| f.get_ref().read(buf.initialize_unfilled())) {
                    Ok(result) => Attempt::Done(result),
                    Err(_would_block) if hung_up => Attempt::Stale,
                    Err(_would_block) => Attempt::Again,
                }
            };
            match attempt {
                Attempt::Done(result) => {
                    return Poll::Ready(result.map(|n| buf.advance(n)));
                }
                Attempt::Stale => this.rearm()?,
                Attempt::Again => {}
            }
        }
    }
}

impl AsyncWrite for Port {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let attempt = {
                let mut guard = ready!(this.fd()?.poll_write_ready(cx))?;
                let hung_up = guard.ready().is_write_closed();
                match guard.try_io(|f| f.get_ref().write(data)) {
                    Ok(result) => Attempt::Done(result),
                    Err(_would_block) if hung_up => Attempt::Stale,
                    Err(_would_block) => Attempt::Again,
                }
            };
            match attempt {
                Attempt::Done(result) => return Poll::Ready(result),
                Attempt::Stale => this.rearm()?,
                Attempt::Again => {}
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A pseudo-terminal in raw mode stands in for the port: its far end for the host.
    fn raw_pty() -> (File, std::path::PathBuf) {
        let pty = nix::pty::openpty(None, None).unwrap();
        for fd in [&pty.master, &pty.slave] {
            let mut t = nix::sys::termios::tcgetattr(fd).unwrap();
            nix::sys::termios::cfmakeraw(&mut t);
            nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, &t).unwrap();
        }
        let path = nix::unistd::ttyname(&pty.slave).unwrap();
        // The slave stays open through `path`; keep this handle alive too.
        std::mem::forget(pty.slave);
        (File::from(pty.master), path)
    }

    /// Counts how often the runtime polls a future.
    struct Counted<F> {
        inner: Pin<Box<F>>,
        polls: usize,
    }

    impl<F: std::future::Future> std::future::Future for Counted<F> {
        type Output = F::Output;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            self.polls += 1;
            self.inner.as_mut().poll(cx)
        }
    }

    /// A FIFO read end behaves as a port does towards its host end: once its writer
    /// closed it reports a hang-up and reads end; once a new writer opened, reads wait.
    #[tokio::test]
    async fn a_read_after_the_host_end_came_back_waits_for_data_instead_of_spinning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("port");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let writer = || {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
                .unwrap()
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let mut port = Port::register(file).unwrap();
        let mut buf = [0u8; 8];
        // A first host connection says "a" and goes away.
        writer().write_all(b"a").unwrap();
        assert_eq!(port.read(&mut buf).await.unwrap(), 1);
        assert_eq!(
            port.read(&mut buf).await.unwrap(),
            0,
            "the host end went away"
        );
        // The host end comes back with nothing to say yet: the read waits, polled again
        // only when something happens (not over and over on the old hang-up).
        let mut host = writer();
        let mut read = Counted {
            inner: Box::pin(port.read(&mut buf)),
            polls: 0,
        };
        let waited = tokio::time::timeout(std::time::Duration::from_millis(300), &mut read).await;
        assert!(waited.is_err(), "the read returned {waited:?}");
        assert!(read.polls <= 2, "the read was polled {} times", read.polls);
        drop(read);
        // What it then says is read, and its going away again ends the stream.
        host.write_all(b"b").unwrap();
        let n = port.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"b");
        drop(host);
        assert_eq!(port.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_and_a_waiting_read_does_not_block_a_write() {
        let (mut host, path) = raw_pty();
        let port = Port::open(&path).unwrap();
        let (mut r, mut w) = tokio::io::split(port);
        let reading = tokio::spawn(async move {
            let mut got = [0u8; 5];
            r.read_exact(&mut got).await.unwrap();
            got
        });
        // The read above waits; the write must still go through.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        w.write_all(&[0, 1, 2, 0xff, b'\n']).await.unwrap();
        let mut echoed = [0u8; 5];
        host.read_exact(&mut echoed).unwrap();
        assert_eq!(echoed, [0, 1, 2, 0xff, b'\n']);
        host.write_all(b"\x00hi\r\n").unwrap();
        assert_eq!(reading.await.unwrap(), *b"\x00hi\r\n");
    }
}
