//! Ctrl-C and SIGTERM during a lab run: remove this process's labs before exiting, so
//! no namespace, cgroup or process is left behind.

use nix::sys::signal::{SigSet, Signal};

/// Blocks SIGINT and SIGTERM in every thread and handles them on a dedicated one.
/// Call before starting any other thread.
pub fn install() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    if set.thread_block().is_err() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            if let Ok(sig) = set.wait() {
                eprintln!("hvlab: {sig:?}: removing this run's lab before exiting");
                let _ = crate::lab::cleanup_owned_by(std::process::id());
                std::process::exit(130);
            }
        });
}
