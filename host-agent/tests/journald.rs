//! hv-hostd under systemd logs to the journal natively, with priorities and fields, and
//! nothing to standard error. The test runs the real binary the way systemd does: its
//! standard error is a stream named in `JOURNAL_STREAM`, and the journal's socket
//! (`/run/systemd/journal/socket`) is one this test binds, mounted there for the agent
//! alone (a private mount namespace with its own /run), so the test reads exactly what
//! journald would receive.

mod support;

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::{bind, check, hostd, private_mount_namespace, read_for, Agent};

/// In the child before exec: a private mount namespace whose /run is empty but for
/// `journal_dir` at /run/systemd/journal.
fn private_journal(journal_dir: &CStr) -> std::io::Result<()> {
    private_mount_namespace()?;
    // SAFETY: plain syscalls with valid NUL-terminated strings, in the forked child.
    unsafe {
        check(libc::mount(
            c"hvtest".as_ptr(),
            c"/run".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        ))?;
        check(libc::mkdir(c"/run/systemd".as_ptr(), 0o755))?;
        check(libc::mkdir(c"/run/systemd/journal".as_ptr(), 0o755))?;
    }
    bind(journal_dir, c"/run/systemd/journal")
}

/// One entry of journald's native protocol: `NAME=value\n`, or `NAME\n`, a 64-bit
/// little-endian length, the value and `\n`.
fn entry(datagram: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut rest = datagram;
    while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'=') {
        let name = String::from_utf8_lossy(&rest[..end]).into_owned();
        if rest[end] == b'=' {
            let value_end = rest[end..].iter().position(|&b| b == b'\n').unwrap() + end;
            fields.push((
                name,
                String::from_utf8_lossy(&rest[end + 1..value_end]).into_owned(),
            ));
            rest = &rest[value_end + 1..];
        } else {
            let len = u64::from_le_bytes(rest[end + 1..end + 9].try_into().unwrap()) as usize;
            let value = &rest[end + 9..end + 9 + len];
            fields.push((name, String::from_utf8_lossy(value).into_owned()));
            rest = &rest[end + 9 + len + 1..];
        }
    }
    fields
}

fn field<'a>(entry: &'a [(String, String)], name: &str) -> Option<&'a str> {
    entry
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn under_systemd_the_log_goes_to_the_journal_with_priorities_and_fields() {
    let dir = tempfile::tempdir().unwrap();
    let journal_dir = dir.path().join("journal");
    std::fs::create_dir(&journal_dir).unwrap();
    let journal = UnixDatagram::bind(journal_dir.join("socket")).unwrap();
    let stderr_path = dir.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let st = nix::sys::stat::fstat(&stderr).unwrap();
    let journal_dir = CString::new(journal_dir.as_os_str().as_bytes()).unwrap();
    let mut cmd = hostd(dir.path());
    // An unreadable pressure file: the agent warns about it at start.
    cmd.arg("--psi-source")
        .arg(dir.path().join("no-such-pressure"))
        .env("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino))
        .stderr(stderr);
    // SAFETY: the closure makes only syscalls, on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || private_journal(&journal_dir));
    }
    let mut agent = Agent(cmd.spawn().unwrap());

    let mut entries: Vec<Vec<(String, String)>> = Vec::new();
    let found = |entries: &[Vec<(String, String)>], priority: &str, text: &str| {
        entries
            .iter()
            .find(|e| {
                field(e, "PRIORITY") == Some(priority)
                    && field(e, "MESSAGE").is_some_and(|m| m.contains(text))
            })
            .cloned()
    };
    for _ in 0..120 {
        entries.extend(
            read_for(&journal, Duration::from_millis(500))
                .iter()
                .map(|d| entry(d)),
        );
        if found(&entries, "4", "cannot read CPU pressure").is_some()
            && found(&entries, "5", "open-file limit").is_some()
        {
            break;
        }
    }
    let warning = found(&entries, "4", "cannot read CPU pressure")
        .unwrap_or_else(|| panic!("no warning in the journal: {entries:?}"));
    assert!(
        field(&warning, "HV_SOURCE").is_some_and(|s| s.ends_with("no-such-pressure")),
        "{warning:?}"
    );
    assert_eq!(
        field(&warning, "SYSLOG_IDENTIFIER"),
        Some("hv-hostd"),
        "{warning:?}"
    );
    let info = found(&entries, "5", "open-file limit")
        .unwrap_or_else(|| panic!("no info line in the journal: {entries:?}"));
    assert!(field(&info, "HV_HARD").is_some(), "{info:?}");

    agent.signal(Signal::SIGTERM);
    assert!(agent.wait_exit(Duration::from_secs(60)).success());
    let on_stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        on_stderr.is_empty(),
        "written to standard error: {on_stderr}"
    );
}

/// Started by hand (no `JOURNAL_STREAM`), the agent writes text to standard error, its
/// warnings among it.
#[test]
fn on_a_terminal_or_a_file_the_log_is_text_on_standard_error() {
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut cmd = hostd(dir.path());
    cmd.arg("--psi-source")
        .arg(dir.path().join("no-such-pressure"))
        .stderr(stderr);
    let mut agent = Agent(cmd.spawn().unwrap());
    // The warning comes once the load watchdog starts, which may be after the admin
    // socket appears: wait for it rather than for the socket.
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let warned = |text: &str| text.contains("cannot read CPU pressure");
    while !warned(&std::fs::read_to_string(&stderr_path).unwrap()) {
        if std::time::Instant::now() >= until {
            break; // the assertion below says what was written
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    agent.signal(Signal::SIGTERM);
    assert!(agent.wait_exit(Duration::from_secs(60)).success());
    let text = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("cannot read CPU pressure")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("INFO") && l.contains("open-file limit")),
        "{text}"
    );
}
