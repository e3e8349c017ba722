//! macOS and Windows: isolation is refused with a reason (see the crate docs).
#![forbid(unsafe_code)]

use berth::LoadError;
use berth::isolation::{Isolator, Worker, WorkerSpec};

/// The environment variable naming the worker executable.
pub const WORKER_ENV: &str = "BERTH_WORKER";
/// The worker executable's name.
pub const WORKER_NAME: &str = "berth-worker";

/// Refuses every isolated plugin on this platform.
#[derive(Debug, Default, Clone)]
pub struct ProcessIsolator;

impl ProcessIsolator {
    /// The isolator (which refuses on this platform).
    pub fn new() -> ProcessIsolator {
        ProcessIsolator
    }

    /// As [`ProcessIsolator::new`].
    pub fn with_worker(_worker: impl Into<std::path::PathBuf>) -> ProcessIsolator {
        ProcessIsolator
    }
}

impl Isolator for ProcessIsolator {
    fn start(&self, spec: WorkerSpec) -> Result<Box<dyn Worker>, LoadError> {
        Err(LoadError::Isolation {
            reason: format!(
                "plugin {}: isolation = \"process\" is only available on Linux in this release; run it in-process",
                spec.plugin
            ),
        })
    }
}

/// Exits: there is no worker on this platform.
pub fn worker_main() -> ! {
    eprintln!("berth-worker: process isolation is only available on Linux in this release");
    std::process::exit(70)
}
