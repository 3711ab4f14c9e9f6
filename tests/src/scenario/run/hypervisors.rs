//! The hypervisor steps of a scenario: programs run on a host against its libvirt.

use super::Runner;

impl Runner<'_> {
    /// `host-exec`: runs a program on `host` and checks its exit code and output.
    pub(super) fn host_exec(
        &mut self,
        host: &str,
        command: &[String],
        (exit, output): (i32, Option<&str>),
        within: std::time::Duration,
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
        self.note(format!("on {host}: {shown}"));
        let own = crate::cluster::bin_dir()?.join(program);
        let path = if !program.contains('/') && own.exists() {
            own
        } else {
            program.into()
        };
        let deadline = std::time::Instant::now() + within;
        let (ok, code, said) = loop {
            let mut cmd = std::process::Command::new(&path);
            cmd.args(args);
            let (code, said) = self.cluster.run_on_host(host, cmd)?;
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
}
