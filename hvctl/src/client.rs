//! A blocking client of the agent's admin socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::Context;
use hvcluster_common::admin::{Request, Response};

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
                "cannot reach the agent at {} (is hv-hostd running on this host, and are you root? \
                 --socket or HV_ADMIN_SOCKET choose another socket)",
                path.display()
            )
        })?;
        Ok(Connection {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
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
        self.receive()?.context("the agent closed the connection")
    }
}
