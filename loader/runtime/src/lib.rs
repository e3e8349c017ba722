//! The runtime around a [`berth::Host`]: what needs a thread or an async runtime of its own, kept out of the
//! core library so that an application that only loads plugins pulls none of it.
//!
//! - [`Supervisor`] runs the host's supervision passes on a thread ([`berth::SupervisionPass`]): calls stuck
//!   past `[limits] call_timeout`, and `[health]` checks.
//! - [`call_within`] and [`call_typed_within`] are the async (tokio) forms of
//!   [`PluginHandle::call_within`](berth::PluginHandle::call_within): the task waits without blocking a
//!   runtime thread, and gets its answer or [`CallError::Timeout`] by the deadline.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = berth::Host::new(berth::HostConfig::default())?;
//! let _supervisor = berth_runtime::Supervisor::start(&host)?;
//! host.load_all();
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use berth::{CallError, Host, Interface, PluginError, PluginHandle, Typed};

/// A thread that runs a host's supervision passes, each when the last says the next is due; stops when
/// dropped, or when the host shuts down.
pub struct Supervisor {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts supervising `host`. Start it before [`Host::load_all`], so that no plugin loads unwatched.
    pub fn start(host: &Host) -> std::io::Result<Supervisor> {
        let pass = host.supervision();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("berth-supervisor".to_owned()).spawn(move || {
            while let Some(next) = pass.run() {
                if stopped.recv_timeout(next) != Err(RecvTimeoutError::Timeout) {
                    return;
                }
            }
        })?;
        Ok(Supervisor { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the supervision thread panicked");
        }
    }
}

/// Calls `method` with `input` on one of the plugin's own threads, and waits (asynchronously) for the answer
/// or `within`, whichever comes first; see [`PluginHandle::call_within`].
pub async fn call_within(
    handle: &PluginHandle,
    method: &str,
    input: Vec<u8>,
    within: Duration,
) -> Result<Vec<u8>, CallError> {
    let started = tokio::time::Instant::now();
    let (sender, answer) = tokio::sync::oneshot::channel();
    handle.call_then(method, input, move |outcome| drop(sender.send(outcome)))?;
    answer_by(handle, method, answer, started, within).await
}

/// Calls an interface method (`f`) on one of the plugin's own threads, and waits (asynchronously) for the
/// answer or `within`; see [`Typed::call_within`].
pub async fn call_typed_within<I, T>(
    typed: &Typed<I>,
    within: Duration,
    f: impl FnOnce(&I::Handle) -> Result<T, PluginError> + Send + 'static,
) -> Result<T, CallError>
where
    I: Interface + 'static,
    I::Handle: Send + Sync + 'static,
    T: Send + 'static,
{
    let started = tokio::time::Instant::now();
    let (sender, answer) = tokio::sync::oneshot::channel();
    typed.call_then(f, move |outcome| drop(sender.send(outcome)))?;
    answer_by(typed.plugin(), I::ID, answer, started, within).await
}

async fn answer_by<T>(
    handle: &PluginHandle,
    method: &str,
    answer: tokio::sync::oneshot::Receiver<Result<T, CallError>>,
    started: tokio::time::Instant,
    within: Duration,
) -> Result<T, CallError> {
    let answered = match started.checked_add(within) {
        Some(deadline) => tokio::time::timeout_at(deadline, answer).await.ok(),
        None => Some(answer.await),
    };
    match answered {
        Some(Ok(outcome)) => outcome,
        // Past the deadline, or dropped without an answer (a panic in the callback's own code): no answer.
        Some(Err(_)) | None => {
            Err(CallError::Timeout { plugin: handle.name().to_string(), method: method.to_owned(), after: within })
        }
    }
}
