//! Process isolation for Berth: a plugin whose manifest says `isolation = "process"` (or that ops isolate in
//! the host configuration) runs in a worker process of its own, sandboxed, behind the same
//! [`berth::PluginHandle`]. Give the host a [`ProcessIsolator`]:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let config = berth::HostConfig::default();
//! let host = berth::Host::builder(config).isolator(Arc::new(berth_isolate::ProcessIsolator::new())).build()?;
//! host.load_all();
//! # Ok(()) }
//! ```
//!
//! The worker executable is `berth-worker` (this crate's binary), or an application's own:
//! `fn main() { berth_isolate::worker_main() }`. The host finds it by the host configuration's
//! `[isolation] worker`, else `BERTH_WORKER`, else next to the current executable.
//!
//! How it works: the host verifies the library exactly as for an in-process load and hands the worker an open
//! descriptor of its private copy (never a path). The worker ties its life to the host's
//! (`PR_SET_PDEATHSIG`), sandboxes itself (rlimits, `no_new_privs`, Landlock for files and TCP; the host adds
//! a pids cgroup for the thread limit), then opens the library with the same ABI checks and `create`. Calls
//! travel through shared memory (a memfd), one slot per concurrent call, with a futex doorbell after a brief
//! spin on both sides.
//!
//! # Platform-specific behaviour
//! Linux only. On macOS and Windows `isolation = "process"` is refused with
//! [`berth::LoadError::Isolation`]: neither memfd nor futex nor Landlock exist there, and no substitute
//! (Mach ports and the sandbox profile language; job objects and AppContainer) is written yet.
//!
//! # Known problems
//! - Typed extension interfaces are in-process only: an isolated plugin refuses them with the reason
//!   (`PluginHandle::call`, `call_json` and `health` work, and the host's own state hand-over and
//!   reconfiguration).
//! - A crash loses the plugin's state: a restarted worker is created afresh from the manifest's `[config]`.
//! - One message carries at most 4 MiB each way.

#[cfg(target_os = "linux")]
mod cgroup;
#[cfg(target_os = "linux")]
mod host;
#[cfg(target_os = "linux")]
mod sandbox;
#[cfg(target_os = "linux")]
mod shm;
#[cfg(target_os = "linux")]
mod wire;
#[cfg(target_os = "linux")]
mod worker;

#[cfg(target_os = "linux")]
pub use host::{ProcessIsolator, WORKER_ENV, WORKER_NAME};
#[cfg(target_os = "linux")]
pub use worker::worker_main;

#[cfg(not(target_os = "linux"))]
mod unsupported;
#[cfg(not(target_os = "linux"))]
pub use unsupported::{ProcessIsolator, WORKER_ENV, WORKER_NAME, worker_main};
