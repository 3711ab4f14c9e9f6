//! The logs of a failed run, kept for the person who reads its failures.

use crate::cluster::LabCluster;

/// Copies the logs of a failed run (agents' logs, libvirtd's, VM consoles) to
/// `hvlab-failed/SCENARIO-LABID` beside the binaries, and says where.
pub(super) fn keep_logs(cluster: &LabCluster, name: &str) {
    let Ok(bin) = crate::cluster::bin_dir() else {
        return;
    };
    let to = bin
        .join("hvlab-failed")
        .join(format!("{name}-{}", cluster.lab.id()));
    let mut kept = 0;
    let mut stack = vec![cluster.dir.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            let is_log = path
                .extension()
                .is_some_and(|x| x == "log" || x == "console" || x == "toml");
            let Ok(rel) = path.strip_prefix(&cluster.dir) else {
                continue;
            };
            if kind.is_file() && is_log {
                let dest = to.join(rel);
                let _ = std::fs::create_dir_all(dest.parent().unwrap_or(&to));
                if std::fs::copy(&path, &dest).is_ok() {
                    kept += 1;
                }
            }
        }
    }
    if kept > 0 {
        eprintln!("hvlab: the logs of the failed run are in {}", to.display());
    }
}
