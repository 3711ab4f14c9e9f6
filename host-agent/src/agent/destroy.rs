//! How a guest of this host is destroyed: by `[hypervisor] destroy_command`, or through
//! libvirt (an NMI first when `kill_nmi_ms` is set).

use std::time::Duration;

/// How a destroy ended: off, and what happened; `Some(domain)` when the domain was not
/// running here (no proof by itself: it may run elsewhere).
pub(super) type Destroy =
    std::pin::Pin<Box<dyn std::future::Future<Output = (bool, String, Option<String>)> + Send>>;

/// Runs the destroy command of guest `node`.
pub(super) async fn by_command(
    command: String,
    node: String,
    timeout: Duration,
) -> (bool, String, Option<String>) {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(&command);
    let (ok, detail) = match crate::child::run_bounded(cmd, None, timeout).await {
        Ok(run) if run.exit == Some(0) => (true, format!("{node} destroyed")),
        Ok(run) if run.timed_out => (
            false,
            format!("destroy command timed out after {timeout:?}"),
        ),
        Ok(run) => (
            false,
            format!(
                "destroy command failed ({}): {}",
                run.exit
                    .map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}")),
                crate::child::last_line(&run.stderr_tail).unwrap_or("")
            ),
        ),
        Err(e) => (false, format!("cannot run the destroy command: {e}")),
    };
    (ok, detail, None)
}

/// Destroys `domain` (guest `node`) through libvirt, off the async threads. With `nmi`,
/// first injects an NMI (a guest set up for it panics into its crash kernel and writes a
/// dump) and waits that long; a guest that cannot take one is destroyed at once.
pub(super) async fn by_libvirt(
    libvirt: crate::hv_call::Hv,
    domain: String,
    node: String,
    nmi: Option<Duration>,
    timeout: Duration,
) -> (bool, String, Option<String>) {
    if let Some(wait) = nmi {
        let name = domain.clone();
        match crate::hv_call::call(&libvirt, timeout, move |hv| hv.inject_nmi(&name)).await {
            Ok(()) => tokio::time::sleep(wait).await,
            Err(e) => tracing::warn!(%domain, "no NMI, destroying at once: {e}"),
        }
    }
    let name = domain.clone();
    match crate::hv_call::call(&libvirt, timeout, move |hv| hv.destroy(&name)).await {
        Ok(crate::hypervisor::Destroyed::Now) => {
            (true, format!("{node} destroyed (domain {domain})"), None)
        }
        Ok(crate::hypervisor::Destroyed::WasNotRunning) => (
            false,
            format!("domain {domain} is not running on this host: nothing proved"),
            Some(domain),
        ),
        Err(e) => (false, e, None),
    }
}

/// `text` as one single-quoted shell word.
pub(super) fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    /// Whatever a guest registers, it stays one word of the destroy command.
    #[test]
    pub(super) fn registered_values_stay_one_shell_word() {
        for hostile in [
            "vm1",
            "a b",
            "x'; touch /tmp/owned; echo '",
            "$(reboot)",
            "`id`",
        ] {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf %s {}", super::shell_quote(hostile)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), hostile);
        }
    }
}
