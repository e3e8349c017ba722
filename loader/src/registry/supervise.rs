//! What the supervisor's pass does to the registry (calls stuck past their deadline, health checks, the
//! states they move a plugin through), and calls with a caller's deadline, which run on the plugin's pool.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::deadline::{self, Overrun, Timeout};
use crate::manifest::{HealthChecks, OnFailing};
use crate::pool::{DEFAULT_THREADS, Job, SPIN, spin_recv};

/// How long before a caller's deadline its wait turns from sleeping to spinning.
const LAST_STRETCH: Duration = Duration::from_micros(200);

/// How long a pass waits when nothing asks for sooner: a plugin loaded meanwhile with a deadline or health
/// checks is watched from the next pass, at most this long after it serves.
const IDLE_PASS: Duration = Duration::from_millis(100);

/// A plugin's health checks, as the passes run them.
#[derive(Default)]
pub(super) struct HealthTrack {
    history: VecDeque<HealthCheck>,
    failing: u32,
    next_due: Option<Instant>,
    running: Option<Running>,
    /// Failing checks asked for a reload, which the next pass starts.
    reload_wanted: bool,
}

/// A health check started and not answered yet.
struct Running {
    generation: u64,
    started: Instant,
    at: SystemTime,
    /// When it next counts as failed if it has not answered: its timeout, then each interval after.
    fails_at: Instant,
    /// It is the breaker's probe.
    probe: bool,
}

impl HealthTrack {
    pub(super) fn report(&self) -> HealthReport {
        HealthReport { failing: self.failing, history: self.history.iter().cloned().collect() }
    }
}

/// How often to scan for calls past a deadline of `timeout`: a tenth of it, within 5 ms to 100 ms.
fn scan_interval(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(5), Duration::from_millis(100))
}

impl Registry {
    /// One supervision pass: counts the calls stuck past their deadline (moving their plugins to degraded and
    /// counting each new overrun toward the breaker), starts the health checks due and judges those overdue.
    /// Returns the plugins whose failing checks ask for a reload, and when the next pass is due.
    pub(crate) fn supervise(&self) -> (Vec<PluginName>, Duration) {
        let slots: Vec<Arc<Slot>> = self.slots.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let keys: BTreeSet<usize> = slots.iter().map(|slot| slot.key()).collect();
        let (overruns, stuck) = deadline::scan(|slot| keys.contains(&slot));
        let (mut reload, mut next, now) = (Vec::new(), IDLE_PASS, Instant::now());
        for slot in &slots {
            let key = slot.key();
            let all_stuck = stuck.iter().filter(|(s, _)| *s == key).count();
            slot.stuck.store(u32::try_from(all_stuck).unwrap_or(u32::MAX), Ordering::Relaxed);
            for overrun in overruns.iter().filter(|o| o.slot == key) {
                slot.overrun_found(overrun);
            }
            let Some(generation) = slot.current.load_full() else { continue };
            // Calls stuck in a generation a reload replaced hold threads (counted above), but do not degrade
            // the one serving now.
            let stuck_now = stuck.iter().filter(|(s, g)| *s == key && *g == generation.number).count();
            if let Some(timeout) = generation.supervision.as_ref().and_then(|s| s.deadline) {
                next = next.min(scan_interval(timeout.duration()));
            }
            if let Some(checks) = generation.manifest.health {
                next = next.min(slot.check_health(&generation, checks, now));
                if std::mem::take(&mut slot.status().health.reload_wanted) {
                    reload.push(slot.name.clone());
                }
            }
            if stuck_now == 0 {
                slot.recover_if_well(generation.number, "no call is stuck past its deadline any more");
            } else {
                // Active again (its breaker closed) while calls are still stuck: degraded again.
                slot.degrade(generation.number, format!("{stuck_now} call(s) still stuck past call_timeout"));
            }
        }
        (reload, next)
    }
}

impl Slot {
    /// The slot's identity in the deadline records (its address: unique while it lives, and a call in flight
    /// keeps it alive).
    #[inline]
    pub(super) fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// The pool bound: the bulkhead when there is one.
    fn pool_threads(generation: Option<&Generation>) -> u32 {
        let bulkhead = generation.and_then(|g| g.supervision.as_ref()?.bulkhead);
        bulkhead.map_or(DEFAULT_THREADS, NonZeroU32::get)
    }

    /// A call the pass found past its deadline: counted once, here.
    #[cold]
    fn overrun_found(&self, overrun: &Overrun) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        let reason = format!(
            "call {:?} has run {} ms, past its call_timeout of {} ms",
            overrun.method,
            overrun.running.as_millis(),
            overrun.timeout.as_millis()
        );
        self.degrade(overrun.generation, reason.clone());
        let current = self.current.load_full();
        let Some(generation) = current.as_deref().filter(|g| g.number == overrun.generation) else { return };
        let Some(breaker) = generation.supervision.as_ref().and_then(|s| s.breaker.as_ref()) else { return };
        if breaker.is_probing() {
            // The probe itself hangs: open again, so that a later probe can go through.
            self.faulted(generation.number, breaker.trip(format!("the probe call failed: {reason}")));
        } else {
            self.breaker_recorded(generation, breaker.record(Some(&reason), false));
        }
    }

    /// Generation `number`, serving, is degraded for `reason` (an `active` plugin only: a faulted one stays
    /// faulted, and a degraded one keeps its first reason).
    #[cold]
    fn degrade(&self, number: u64, reason: String) {
        let from = |state| state == PluginState::Active;
        self.breaker_moved(number, from, PluginState::Degraded, Some(reason.clone()), EventKind::Degraded, reason);
    }

    /// A degraded plugin with no failing check is active again (the pass calls this only when nothing of the
    /// serving generation is stuck).
    fn recover_if_well(&self, number: u64, detail: &str) {
        let well = {
            let status = self.status();
            status.state == PluginState::Degraded && status.health.failing == 0
        };
        if well {
            let from = |state| state == PluginState::Degraded;
            self.breaker_moved(number, from, PluginState::Active, None, EventKind::Recovered, detail.to_owned());
        }
    }

    /// Starts the health check of `generation` if it is due, judges one overdue; when to look again.
    fn check_health(self: &Arc<Slot>, generation: &Arc<Generation>, checks: HealthChecks, now: Instant) -> Duration {
        let mut status = self.status();
        let track = &mut status.health;
        if let Some(running) = &mut track.running {
            // A check that has not answered fails at its timeout, and again each interval it stays
            // unanswered; no second check starts meanwhile (it would only hang another thread).
            if now < running.fails_at {
                return (running.fails_at - now).max(Duration::from_millis(5));
            }
            running.fails_at = now + checks.interval;
            let (at, probe, waited) = (running.at, running.probe, now.saturating_duration_since(running.started));
            drop(status);
            let detail = match waited < checks.timeout + checks.interval {
                true => format!("no answer within its timeout of {} ms", checks.timeout.as_millis()),
                false => format!("still no answer after {} ms", waited.as_millis()),
            };
            self.health_result(
                generation,
                checks,
                HealthCheck { at, took: checks.timeout, passed: false, detail },
                probe,
            );
            return checks.interval;
        }
        let due = *track.next_due.get_or_insert(now);
        if now < due {
            return due - now;
        }
        let breaker = generation.supervision.as_ref().and_then(|s| s.breaker.as_ref());
        let probe = match breaker.map(CircuitBreaker::admit) {
            None | Some(Admit::Closed) => false,
            Some(Admit::Probe) => true,
            // Out of service until a probe: nothing to check.
            Some(Admit::Refused { retry_at, .. }) => {
                return retry_at.saturating_duration_since(now).max(Duration::from_millis(5));
            }
        };
        track.next_due = Some(now + checks.interval);
        let fails_at = now + checks.timeout;
        let at = SystemTime::now();
        track.running = Some(Running { generation: generation.number, started: now, at, fails_at, probe });
        drop(status);
        let (slot, checked) = (Arc::clone(self), Arc::clone(generation));
        let job: Job = Box::new(move || {
            let started = Instant::now();
            let (health, detail) =
                checked.instance.health().unwrap_or_else(|failure| (HealthStatus::Failing, failure.to_string()));
            let took = started.elapsed();
            slot.health_answered(&checked, checks, health == HealthStatus::Ok, detail, took);
        });
        // One thread more than calls with a deadline may hold: those cannot starve the checks.
        if self.pool.run(Slot::pool_threads(Some(generation)) + 1, job).is_err() {
            let detail = "no thread free to run it: the plugin's pool threads are all busy".to_owned();
            self.status().health.running = None;
            self.health_result(
                generation,
                checks,
                HealthCheck { at, took: Duration::ZERO, passed: false, detail },
                probe,
            );
        }
        checks.timeout.min(checks.interval)
    }

    /// A health check of `generation` answered (on a pool thread).
    fn health_answered(
        &self,
        generation: &Arc<Generation>,
        checks: HealthChecks,
        passed: bool,
        detail: String,
        took: Duration,
    ) {
        let running = {
            let mut status = self.status();
            match status.health.running.take() {
                Some(running) if running.generation == generation.number => running,
                other => {
                    status.health.running = other;
                    return;
                }
            }
        };
        if running.fails_at > running.started + checks.timeout {
            // Counted failed already, for not answering within its timeout; the late answer is only told.
            tracing::debug!(plugin = %self.name, "a health check answered after its timeout, in {took:?}: {detail}");
            return;
        }
        let detail = if passed || !detail.is_empty() { detail } else { "the plugin reported it is not ok".to_owned() };
        let check = HealthCheck { at: running.at, took, passed, detail };
        self.health_result(generation, checks, check, running.probe);
    }

    /// Records a check's outcome and moves the plugin as it says.
    fn health_result(&self, generation: &Arc<Generation>, checks: HealthChecks, check: HealthCheck, probe: bool) {
        let (passed, detail) = (check.passed, check.detail.clone());
        let failing = {
            let mut status = self.status();
            let track = &mut status.health;
            if track.history.len() == HEALTH_HISTORY {
                track.history.pop_front();
            }
            track.history.push_back(check);
            track.failing = if passed { 0 } else { track.failing + 1 };
            track.failing
        };
        let number = generation.number;
        let breaker = generation.supervision.as_ref().and_then(|s| s.breaker.as_ref());
        if passed {
            if let Some(Transition::Closed) = breaker.filter(|_| probe).map(|b| b.record(None, true)) {
                self.recovered(number, format!("the probe health check passed{}", colon(&detail)));
            }
            self.recover_if_well(number, &format!("a health check passed{}", colon(&detail)));
            return;
        }
        if probe {
            if let Some(breaker) = breaker {
                self.faulted(number, breaker.trip(format!("the probe health check failed: {detail}")));
            }
            return;
        }
        self.degrade(number, format!("a health check failed: {detail}"));
        if failing < checks.failures.get() {
            return;
        }
        let limit = checks.failures;
        let reason = format!("{limit} health checks failed in a row ([health] failures = {limit}); the last: {detail}");
        match checks.on_failing {
            OnFailing::Fault => {
                if let Some(breaker) = breaker {
                    self.faulted(number, breaker.trip(reason));
                }
            }
            OnFailing::Disable => {
                // Recorded as not to be loaded again before it is taken out, so that a rescan in between
                // does not load it again.
                let attempt = {
                    let mut status = self.status();
                    let attempt = status.applied.as_ref().map(|a| (a.manifest.clone(), Some(a.stamp)));
                    status.state = PluginState::Disabled;
                    std::mem::replace(&mut status.failed_attempt, attempt)
                };
                if self.take_out(generation) {
                    let detail = format!(
                        "{reason} ([health] on_failing = \"disable\"); it loads again when its manifest's settings or its library change (`berth disable` then `berth enable` will do), or the host restarts"
                    );
                    self.record(PluginState::Disabled, Some(number), detail);
                } else {
                    self.status().failed_attempt = attempt;
                }
            }
            OnFailing::Reload => {
                tracing::warn!(plugin = %self.name, "{reason} ([health] on_failing = \"reload\"): reloading it");
                // The next pass starts it: only the host can load.
                self.status().health.reload_wanted = true;
            }
        }
    }
}

/// `: detail`, or nothing when `detail` is empty.
fn colon(detail: &str) -> String {
    if detail.is_empty() { String::new() } else { format!(": {detail}") }
}

impl PluginHandle {
    /// Calls `method` as [`PluginHandle::call`] does, but answers by `within`: the call runs on one of the
    /// plugin's own threads (at most its `[limits] max_concurrent_calls`, else 8), and if it has not answered
    /// by then the caller gets [`CallError::Timeout`] while the call runs on to its end (a native call cannot
    /// be stopped in-process). Refused with [`CallError::Busy`] when all those threads are busy.
    ///
    /// This costs a thread hop (and a copy of `input`); calls that need no deadline of their own should use
    /// [`PluginHandle::call`].
    pub fn call_within(&self, method: &str, input: &[u8], within: Duration) -> Result<Vec<u8>, CallError> {
        let started = Instant::now();
        let (sender, answer) = mpsc::sync_channel(1);
        self.call_then(method, input.to_vec(), move |outcome| drop(sender.send(outcome)))?;
        answer_by(&answer, started, within).unwrap_or_else(|| Err(timeout(&self.slot.name, method, within)))
    }

    /// Calls `method` on one of the plugin's own threads (see [`PluginHandle::call_within`]) and hands the
    /// outcome to `then`, on that thread; returns at once. For callers that wait their own way (an async
    /// runtime: see berth-runtime).
    pub fn call_then(
        &self,
        method: &str,
        input: Vec<u8>,
        then: impl FnOnce(Result<Vec<u8>, CallError>) + Send + 'static,
    ) -> Result<(), CallError> {
        let (handle, method) = (self.clone(), method.to_owned());
        self.run_pooled(Box::new(move || then(handle.call(&method, &input))))
    }

    /// The supervision deadline of the generation serving now (`[limits] call_timeout`, or the host's
    /// default): what a caller that wants an answer (`berth call`) uses as its own deadline.
    pub fn call_timeout(&self) -> Option<Duration> {
        self.slot.current.load().as_ref()?.supervision.as_ref()?.deadline.map(Timeout::duration)
    }

    /// Runs `job` on the plugin's pool, or refuses it when the pool is full.
    fn run_pooled(&self, job: Job) -> Result<(), CallError> {
        let threads = Slot::pool_threads(self.slot.current.load().as_deref());
        self.slot.pool.run(threads, job).map_err(|_| CallError::Busy { plugin: self.slot.name.to_string(), threads })
    }
}

/// The timeout of a call of `method` to `plugin` after `after`.
pub(crate) fn timeout(plugin: &PluginName, method: &str, after: Duration) -> CallError {
    CallError::Timeout { plugin: plugin.to_string(), method: method.to_owned(), after }
}

/// The answer on `answer`, or `None` once `within` from `started` has passed (or the call was dropped
/// without one). Spins at first (an answer in µs skips a wake-up), sleeps, and spins again for the last
/// stretch (a sleeper's wake-up can come late by the timer's slack and more).
fn answer_by<T>(answer: &mpsc::Receiver<T>, started: Instant, within: Duration) -> Option<T> {
    let Some(deadline) = started.checked_add(within) else {
        // No deadline this side of the far future: wait for the answer.
        return spin_recv(answer, SPIN).or_else(|| answer.recv().ok());
    };
    let left = || deadline.saturating_duration_since(Instant::now());
    if let Some(answer) = spin_recv(answer, SPIN.min(left())) {
        return Some(answer);
    }
    match answer.recv_timeout(left().saturating_sub(LAST_STRETCH)) {
        Ok(answer) => Some(answer),
        Err(mpsc::RecvTimeoutError::Disconnected) => None,
        Err(mpsc::RecvTimeoutError::Timeout) => spin_recv(answer, left()),
    }
}

impl<I> Typed<I>
where
    I: Interface + 'static,
    I::Handle: Send + Sync + 'static,
{
    /// Calls an interface method as [`Typed::call`] does, but answers by `within`, from one of the plugin's
    /// own threads (see [`PluginHandle::call_within`]).
    pub fn call_within<T: Send + 'static>(
        &self,
        within: Duration,
        f: impl FnOnce(&I::Handle) -> Result<T, PluginError> + Send + 'static,
    ) -> Result<T, CallError> {
        let started = Instant::now();
        let (sender, answer) = mpsc::sync_channel(1);
        let typed = self.clone();
        // A panic in `f` (host code) is carried back and resumed here, as if `f` had run on this thread.
        let job = move || drop(sender.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| typed.call(f)))));
        self.plugin.run_pooled(Box::new(job))?;
        match answer_by(&answer, started, within) {
            Some(Ok(outcome)) => outcome,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Err(timeout(&self.plugin.slot.name, I::ID, within)),
        }
    }

    /// Calls an interface method on one of the plugin's own threads and hands the outcome to `then`, on that
    /// thread; returns at once (see [`PluginHandle::call_then`]).
    pub fn call_then<T: Send + 'static>(
        &self,
        f: impl FnOnce(&I::Handle) -> Result<T, PluginError> + Send + 'static,
        then: impl FnOnce(Result<T, CallError>) + Send + 'static,
    ) -> Result<(), CallError> {
        let typed = self.clone();
        self.plugin.run_pooled(Box::new(move || then(typed.call(f))))
    }
}
