//! A plugin's own threads, for the calls that must not run on their caller's: calls with a caller's deadline
//! (the caller waits for the answer or the deadline, whichever comes first) and health checks (a check that
//! hangs holds one of these, never the supervisor). Threads start when needed, up to a bound, and end after a
//! minute idle. A thread stuck in a call that never returns is lost to the pool, which is why it is bounded:
//! once every thread is busy, more work is refused at once.
//!
//! std's threads and channels do all of it; a pool crate would add a dependency for less (none found ends idle
//! threads and refuses when full without a queue).
#![forbid(unsafe_code)]

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A unit of work for a pool thread.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// How long a thread with nothing to do waits before it ends.
const IDLE: Duration = Duration::from_secs(60);

/// How long a thread that just finished, or a caller waiting for an answer, spins before it sleeps: a call
/// that comes (or answers) within it skips the wake-up of a sleeping thread (tens of µs here).
pub(crate) const SPIN: Duration = Duration::from_micros(50);

/// The next message on `receiver` within `spin` (spinning, not sleeping), if any.
pub(crate) fn spin_recv<T>(receiver: &Receiver<T>, spin: Duration) -> Option<T> {
    let until = Instant::now() + spin;
    loop {
        for _ in 0..16 {
            match receiver.try_recv() {
                Ok(message) => return Some(message),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        if Instant::now() >= until {
            return None;
        }
    }
}

/// How many threads a plugin's pool may run when its manifest sets no bulkhead.
pub(crate) const DEFAULT_THREADS: u32 = 8;

/// One plugin's pool.
pub(crate) struct Pool {
    name: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Threads waiting for work: an id and where to send it.
    idle: Vec<(u64, SyncSender<Job>)>,
    threads: u32,
    next_id: u64,
}

impl Pool {
    /// A pool whose threads are called `name`.
    pub(crate) fn new(name: String) -> Pool {
        Pool { name, state: Mutex::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Threads running now (busy or idle).
    pub(crate) fn threads(&self) -> u32 {
        self.state().threads
    }

    /// Runs `job` on an idle thread, or a new one while fewer than `max` run; gives it back when all `max`
    /// are busy (or a thread cannot be started).
    pub(crate) fn run(self: &Arc<Pool>, max: u32, job: Job) -> Result<(), Job> {
        let mut state = self.state();
        if let Some((_, sender)) = state.idle.pop() {
            drop(state);
            // A thread takes itself off the idle list before it ends, so the receiver is there.
            return sender.send(job).map_err(|returned| returned.0);
        }
        if state.threads >= max {
            return Err(job);
        }
        state.threads += 1;
        state.next_id += 1;
        let id = state.next_id;
        drop(state);
        let (sender, receiver) = mpsc::sync_channel::<Job>(1);
        let pool = Arc::clone(self);
        let spawned = std::thread::Builder::new().name(self.name.clone()).spawn(move || {
            pool.contained(job);
            pool.serve(id, sender, receiver);
        });
        spawned.map(drop).map_err(|_| {
            self.state().threads -= 1;
            Box::new(|| {}) as Job
        })
    }

    /// A thread's life after its first job: wait idle, run what comes, end after [`IDLE`] with nothing.
    fn serve(&self, id: u64, sender: SyncSender<Job>, receiver: Receiver<Job>) {
        loop {
            self.state().idle.push((id, sender.clone()));
            if let Some(job) = spin_recv(&receiver, SPIN) {
                self.contained(job);
                continue;
            }
            let job = match receiver.recv_timeout(IDLE) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    let mut state = self.state();
                    match state.idle.iter().position(|(idle, _)| *idle == id) {
                        Some(at) => {
                            state.idle.remove(at);
                            state.threads -= 1;
                            return;
                        }
                        // Taken off the list just now: its job is on the way.
                        None => match receiver.recv() {
                            Ok(job) => job,
                            Err(_) => {
                                state.threads -= 1;
                                return;
                            }
                        },
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            self.contained(job);
        }
    }

    /// Runs `job`; a panic in it (host code: a caller's closure or callback) is logged, and the thread
    /// goes on serving.
    fn contained(&self, job: Job) {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("a call on {}'s own thread panicked in the caller's code; the thread goes on", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_reused_and_bounded_and_work_past_the_bound_is_given_back() {
        let pool = Arc::new(Pool::new("test".to_owned()));
        let (done, finished) = mpsc::channel();
        let (release, blocked) = mpsc::channel::<()>();
        let blocked = Arc::new(Mutex::new(blocked));
        for _ in 0..2 {
            let (done, blocked) = (done.clone(), Arc::clone(&blocked));
            let job: Job = Box::new(move || {
                let _ = blocked.lock().unwrap().recv();
                done.send(()).unwrap();
            });
            assert!(pool.run(2, job).is_ok());
        }
        assert!(pool.run(2, Box::new(|| {})).is_err(), "both threads are busy");
        release.send(()).unwrap();
        release.send(()).unwrap();
        finished.recv().unwrap();
        finished.recv().unwrap();
        assert_eq!(pool.threads(), 2);
        // Idle threads take new work; no third thread starts.
        for _ in 0..4 {
            let done = done.clone();
            let mut job: Job = Box::new(move || done.send(()).unwrap());
            // A thread that just finished may not be back on the idle list yet.
            while let Err(returned) = pool.run(2, job) {
                job = returned;
                std::thread::yield_now();
            }
            finished.recv().unwrap();
        }
        assert_eq!(pool.threads(), 2);
    }

    #[test]
    fn a_job_that_panics_leaves_its_thread_serving() {
        let pool = Arc::new(Pool::new("test".to_owned()));
        assert!(pool.run(1, Box::new(|| panic!("the caller's closure panicked"))).is_ok());
        let (done, finished) = mpsc::channel();
        let mut job: Job = Box::new(move || done.send(()).unwrap());
        while let Err(returned) = pool.run(1, job) {
            job = returned;
            std::thread::yield_now();
        }
        finished.recv().unwrap();
        assert_eq!(pool.threads(), 1, "the same thread ran the next job");
    }
}
