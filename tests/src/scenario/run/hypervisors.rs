//! The hypervisor steps of a scenario: programs run on a host against its libvirt.

use std::time::Duration;

use hvcluster_common::admin::GuestNodeState;

use super::Runner;
use crate::scenario::spec::AppWatch;

/// A `host-exec` started in the background, with what its end must be.
#[derive(Debug)]
pub(super) struct Background {
    child: std::process::Child,
    out_path: std::path::PathBuf,
    want: String,
    exit: i32,
    output: Option<String>,
}

impl Runner<'_> {
    /// `await-background`.
    pub(super) fn await_background(&mut self, within: Duration) -> anyhow::Result<()> {
        let Some(mut b) = self.background.take() else {
            anyhow::bail!("await-background: no host-exec runs in the background");
        };
        let status = crate::lab::spawn::wait_timeout(&mut b.child, within)?;
        let (code, said) = match status {
            Some(s) => (
                s.code().unwrap_or(-1),
                std::fs::read_to_string(&b.out_path).unwrap_or_default(),
            ),
            None => {
                let _ = b.child.kill();
                let _ = b.child.wait();
                (-1, format!("did not end within {} s", within.as_secs()))
            }
        };
        let said = said.trim().to_string();
        let ok = code == b.exit && b.output.as_deref().is_none_or(|o| said.contains(o));
        let mut want = format!("{} (in the background) exits {}", b.want, b.exit);
        if let Some(o) = &b.output {
            want.push_str(&format!(" saying {o:?}"));
        }
        self.check(want, ok, format!("exit {code}: {said}"));
        Ok(())
    }

    /// `host-exec`: runs a program on `host` and checks its exit code and output.
    pub(super) fn host_exec(
        &mut self,
        host: &str,
        command: &[String],
        (exit, output): (i32, Option<&str>),
        within: std::time::Duration,
        watch: Option<&AppWatch>,
        background: bool,
    ) -> anyhow::Result<()> {
        let uri = self.cluster.libvirt_uri(host);
        let socket = self.cluster.socket(host).display().to_string();
        let dir = self.cluster.dir.join(host).display().to_string();
        let words: Vec<String> = command
            .iter()
            .map(|w| {
                w.replace("{uri}", &uri)
                    .replace("{socket}", &socket)
                    .replace("{dir}", &dir)
            })
            .collect();
        let Some((program, args)) = words.split_first() else {
            anyhow::bail!("host-exec on {host}: the command is empty");
        };
        let shown = command.join(" ");
        if !background {
            self.note(format!("on {host}: {shown}"));
        }
        let own = crate::cluster::bin_dir()?.join(program);
        let path = if !program.contains('/') && own.exists() {
            own
        } else {
            program.into()
        };
        if background {
            anyhow::ensure!(
                self.background.is_none(),
                "host-exec on {host}: another command runs in the background (await it first)"
            );
            let out_path = self.cluster.dir.join(host).join("background.out");
            let out = std::fs::File::create(&out_path)?;
            let mut cmd = std::process::Command::new(&path);
            cmd.args(args)
                .stdin(std::process::Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out);
            let child = self.cluster.lab.spawn(host, cmd)?;
            self.note(format!("(in the background) on {host}: {shown}"));
            self.background = Some(Background {
                child,
                out_path,
                want: format!("`{shown}` on {host}"),
                exit,
                output: output.map(str::to_string),
            });
            return Ok(());
        }
        let deadline = std::time::Instant::now() + within;
        let (ok, code, said) = loop {
            let mut cmd = std::process::Command::new(&path);
            cmd.args(args);
            let (code, said) = match watch {
                None => self.cluster.run_on_host(host, cmd)?,
                Some(w) => self.run_watching(host, cmd, w)?,
            };
            let said = said.trim().to_string();
            let ok = code == exit && output.is_none_or(|o| said.contains(o));
            if ok || std::time::Instant::now() >= deadline {
                break (ok, code, said);
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        };
        let mut want = format!("`{shown}` on {host} exits {exit}");
        if let Some(o) = output {
            want.push_str(&format!(" saying {o:?}"));
        }
        self.check(want, ok, format!("exit {code}: {said}"));
        Ok(())
    }

    /// Runs `cmd` on `host` while polling every observer of `w`; records one check of
    /// what they saw meanwhile. Returns the command's exit code and output.
    fn run_watching(
        &mut self,
        host: &str,
        cmd: std::process::Command,
        w: &AppWatch,
    ) -> anyhow::Result<(i32, String)> {
        let cluster = &self.cluster;
        let mut lapses = Vec::new();
        let mut polls = 0u32;
        let result = std::thread::scope(|scope| {
            let run = scope.spawn(|| cluster.run_on_host(host, cmd));
            while !run.is_finished() {
                for o in &w.observers {
                    polls += 1;
                    let seen = match cluster.guest_status(o) {
                        Err(e) => Some(format!("{o}: no answer ({e:#})")),
                        Ok(s) => {
                            let app = s.applications.iter().find(|a| a.name == w.app);
                            let online = app.and_then(|a| a.online_on.as_deref());
                            let node = s.nodes.iter().find(|n| n.name == w.online_on);
                            let up = node.is_some_and(|n| n.state == GuestNodeState::Up);
                            (online != Some(w.online_on.as_str()) || !up).then(|| {
                                format!(
                                    "{o}: {} Online on {}, {} {:?}",
                                    w.app,
                                    online.unwrap_or("none"),
                                    w.online_on,
                                    node.map(|n| n.state)
                                )
                            })
                        }
                    };
                    lapses.extend(seen);
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            run.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the command's thread panicked")))
        });
        lapses.dedup();
        self.check(
            format!(
                "meanwhile {} kept seeing {} Online on {} and {} UP ({polls} polls)",
                w.observers.join(", "),
                w.app,
                w.online_on,
                w.online_on
            ),
            lapses.is_empty() && polls > 0,
            lapses.join("; "),
        );
        result
    }
}
