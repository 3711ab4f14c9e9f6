//! A virtio-serial port (a character device in the guest) as an async byte stream. The
//! device is opened once, non-blocking, and driven by the runtime's readiness events,
//! so a read waiting for the host never holds up a write.

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
    fd: AsyncFd<File>,
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
        // SAFETY: the descriptor is the `File`'s own; the `AsyncFd` owns that `File`, so
        // it stays open and the same for as long as it is registered.
        let fd = unsafe { AsyncFd::register(file) }.map_err(|e| e.into_parts().1)?;
        Ok(Port { fd })
    }
}

impl AsyncRead for Port {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            match guard.try_io(|f| f.get_ref().read(buf.initialize_unfilled())) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
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
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|f| f.get_ref().write(data)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
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
