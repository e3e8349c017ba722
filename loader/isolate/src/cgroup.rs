//! The thread limit of a worker (`[permissions] threads`): a pids cgroup of its own, made by the host before the
//! worker starts a thread (a process cannot set it from inside, and `RLIMIT_NPROC` counts a user's processes
//! system-wide, not a process's threads). Needs a writable pids controller (cgroup v1 `pids`, or v2 with `pids`
//! available); without one the limit is reported missing.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// A worker's pids cgroup, removed when dropped (after the worker has exited).
pub struct ThreadLimit {
    dir: PathBuf,
    max: u32,
}

/// Where a pids controller may be mounted: cgroup v1's own hierarchy, then the v2 hierarchy.
const ROOTS: [&str; 3] = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup", "/sys/fs/cgroup/unified"];

impl ThreadLimit {
    /// Puts process `pid` in a new cgroup of at most `max` tasks (threads and processes); `None` where no
    /// pids controller can be written.
    pub fn apply(pid: u32, max: u32) -> Option<ThreadLimit> {
        ROOTS.iter().find_map(|root| ThreadLimit::under(Path::new(root), pid, max))
    }

    fn under(root: &Path, pid: u32, max: u32) -> Option<ThreadLimit> {
        let v2 = root.join("cgroup.controllers");
        if v2.exists() {
            let controllers = std::fs::read_to_string(&v2).ok()?;
            if !controllers.split_whitespace().any(|c| c == "pids") {
                return None;
            }
            std::fs::write(root.join("cgroup.subtree_control"), "+pids").ok()?;
        } else if !root.join("pids.max").exists() && !root.join("cgroup.procs").exists() {
            return None;
        }
        let dir = root.join(format!("berth-{}-{pid}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        let limit = ThreadLimit { dir, max };
        std::fs::write(limit.dir.join("pids.max"), max.to_string()).ok()?;
        std::fs::write(limit.dir.join("cgroup.procs"), pid.to_string()).ok()?;
        Some(limit)
    }

    /// The limit, as `berth info` shows it.
    pub fn describe(&self) -> String {
        format!("at most {} threads in all (pids cgroup {})", self.max, self.dir.display())
    }

    /// Why there is no limit.
    pub fn unavailable() -> String {
        "the thread limit: no writable pids cgroup controller (needs root or a delegated cgroup)".to_owned()
    }
}

impl Drop for ThreadLimit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}
