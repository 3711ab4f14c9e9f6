//! The operator's steps of a scenario: hvctl commands and what they answer.

use std::time::{Duration, Instant};

use super::Runner;

impl Runner<'_> {
    /// Runs `hvctl ARGS` against the agent of `on` until it exits with `exit` (and says
    /// `output`, if given) or `within_ms` passed, and checks the last answer.
    pub(super) fn hvctl(
        &mut self,
        on: &str,
        args: &[String],
        exit: i32,
        within_ms: u64,
        output: Option<&str>,
    ) -> anyhow::Result<()> {
        self.note(format!("operator on {on}: hvctl {}", args.join(" ")));
        let wanted =
            |code: i32, said: &str| code == exit && output.is_none_or(|o| said.contains(o));
        let deadline = Instant::now() + Duration::from_millis(within_ms);
        let (code, said) = loop {
            let mut cmd = std::process::Command::new(crate::cluster::bin_dir()?.join("hvctl"));
            cmd.arg("--socket").arg(self.cluster.socket(on)).args(args);
            // No answer in this long is a failure of the step, not a hung run.
            let limit = Duration::from_secs(120);
            let (code, said) = match crate::lab::spawn::output_within(&mut cmd, limit)? {
                (Some(code), said) => (code, said),
                (None, said) => (-1, format!("no answer within 120 s (killed); {said}")),
            };
            if wanted(code, &said) || Instant::now() >= deadline {
                break (code, said);
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let saying = output.map(|o| format!(" saying {o:?}")).unwrap_or_default();
        self.check(
            format!("hvctl {} exits {exit}{saying}", args.join(" ")),
            wanted(code, &said),
            format!("exit {code}: {said}"),
        );
        Ok(())
    }
}
