//! The circuit breaker of one generation (`[breaker]` in the manifest): it counts failed calls, opens when they
//! reach the limit, refuses calls while open, lets one probe through after the cool-down, and closes on the
//! probe's success. A new generation starts with a closed breaker; so does a `[config]` edit.
//!
//! Cost: a closed breaker reads one atomic flag per call, and, for "in a row", the failure count (written only
//! when it is not zero already). Everything else happens on failures or while open.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::manifest::Breaker;

/// A generation's breaker.
pub(crate) struct CircuitBreaker {
    config: Breaker,
    open: AtomicBool,
    /// Failures in a row (when no window is configured).
    in_a_row: AtomicU32,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When recent failures happened (with a window).
    recent: VecDeque<Instant>,
    /// While open: when a probe may go through.
    retry_at: Option<Instant>,
    /// A probe is in flight.
    probing: bool,
    /// Why it opened.
    reason: String,
}

/// Whether a call may go through.
pub(crate) enum Admit {
    /// Closed: the call goes through.
    Closed,
    /// Open, cool-down over: this call is the probe.
    Probe,
    /// Open: refused.
    Refused {
        /// Why it opened.
        reason: String,
        /// When a probe may go through.
        retry_at: Instant,
    },
}

/// What a call's outcome did to the breaker.
pub(crate) enum Transition {
    /// Nothing to report.
    None,
    /// It opened (tripped), or a probe failed and it opened again: why.
    Opened(String),
    /// A probe succeeded: it closed.
    Closed,
}

/// The breaker as a status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerStatus {
    /// `closed`, `open`, or `probing` (open, one probe call in flight).
    pub state: &'static str,
    /// Why it opened (empty when closed).
    pub reason: String,
    /// While open: how long until a probe may go through.
    pub retry_in: Option<Duration>,
}

impl CircuitBreaker {
    pub(crate) fn new(config: Breaker) -> CircuitBreaker {
        CircuitBreaker { config, open: AtomicBool::new(false), in_a_row: AtomicU32::new(0), state: Mutex::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    pub(crate) fn admit(&self) -> Admit {
        if !self.open.load(Ordering::Acquire) {
            return Admit::Closed;
        }
        self.admit_open()
    }

    #[cold]
    fn admit_open(&self) -> Admit {
        let mut state = self.state();
        let retry_at = state.retry_at.unwrap_or_else(Instant::now);
        if state.probing || Instant::now() < retry_at {
            return Admit::Refused { reason: state.reason.clone(), retry_at };
        }
        state.probing = true;
        Admit::Probe
    }

    /// Records a call's outcome: `failure` is its error message when it failed.
    #[inline]
    pub(crate) fn record(&self, failure: Option<&str>, probe: bool) -> Transition {
        match (failure, probe) {
            (None, false) => {
                if self.config.window.is_none() && self.in_a_row.load(Ordering::Relaxed) != 0 {
                    self.in_a_row.store(0, Ordering::Relaxed);
                }
                Transition::None
            }
            (None, true) => {
                self.close();
                Transition::Closed
            }
            (Some(message), true) => Transition::Opened(self.open_with(format!("the probe call failed: {message}"))),
            (Some(message), false) => self.failed(message),
        }
    }

    #[cold]
    fn failed(&self, message: &str) -> Transition {
        let limit = self.config.failures.get();
        let tripped = match self.config.window {
            None => self.in_a_row.fetch_add(1, Ordering::AcqRel) + 1 >= limit,
            Some(window) => {
                let mut state = self.state();
                let now = Instant::now();
                state.recent.push_back(now);
                while state.recent.front().is_some_and(|at| now.duration_since(*at) > window) {
                    state.recent.pop_front();
                }
                state.recent.len() >= limit as usize
            }
        };
        if !tripped || self.open.load(Ordering::Acquire) {
            return Transition::None;
        }
        let count = match self.config.window {
            None => format!("{limit} calls failed in a row"),
            Some(window) => format!("{limit} calls failed within {window:?}"),
        };
        Transition::Opened(self.open_with(format!("{count} ([breaker] failures = {limit}); the last: {message}")))
    }

    /// Opens the breaker (or opens it again) for `reason`, whatever the failure count: failing health checks.
    pub(crate) fn trip(&self, reason: String) -> String {
        self.open_with(reason)
    }

    fn open_with(&self, reason: String) -> String {
        let mut state = self.state();
        state.retry_at = Some(Instant::now() + self.config.cool_down);
        state.probing = false;
        state.reason = reason.clone();
        self.open.store(true, Ordering::Release);
        reason
    }

    /// Closes the breaker and forgets the failures (a probe succeeded, or the plugin's config changed).
    pub(crate) fn close(&self) {
        let mut state = self.state();
        *state = State::default();
        self.in_a_row.store(0, Ordering::Relaxed);
        self.open.store(false, Ordering::Release);
    }

    /// Open, with a probe call in flight.
    pub(crate) fn is_probing(&self) -> bool {
        self.is_open() && self.state().probing
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub(crate) fn status(&self) -> BreakerStatus {
        let state = self.state();
        match (self.is_open(), state.probing) {
            (false, _) => BreakerStatus { state: "closed", reason: String::new(), retry_in: None },
            (true, probing) => BreakerStatus {
                state: if probing { "probing" } else { "open" },
                reason: state.reason.clone(),
                retry_in: state.retry_at.map(|at| at.saturating_duration_since(Instant::now())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(text: &str) -> CircuitBreaker {
        #[derive(serde::Deserialize)]
        struct Table {
            breaker: Breaker,
        }
        CircuitBreaker::new(toml::from_str::<Table>(text).unwrap().breaker)
    }

    #[test]
    fn with_a_window_failures_count_whatever_succeeds_between_them() {
        let breaker = breaker("[breaker]\nfailures = 3\nwindow = \"1h\"\n");
        for _ in 0..2 {
            assert!(matches!(breaker.record(Some("no"), false), Transition::None));
            assert!(matches!(breaker.record(None, false), Transition::None));
        }
        let Transition::Opened(reason) = breaker.record(Some("no"), false) else { panic!("not opened") };
        assert_eq!(reason, "3 calls failed within 3600s ([breaker] failures = 3); the last: no");
        assert!(matches!(breaker.admit(), Admit::Refused { .. }), "refused during the cool-down (30 s by default)");
        assert_eq!(breaker.status().state, "open");
    }

    #[test]
    fn a_probe_is_let_through_once_and_its_outcome_decides() {
        let breaker = breaker("[breaker]\nfailures = 1\ncool_down = \"0ms\"\n");
        assert!(matches!(breaker.record(Some("no"), false), Transition::Opened(_)));
        assert!(matches!(breaker.admit(), Admit::Probe));
        assert!(matches!(breaker.admit(), Admit::Refused { .. }), "one probe at a time");
        assert_eq!(breaker.status().state, "probing");
        assert!(
            matches!(breaker.record(Some("still no"), true), Transition::Opened(reason) if reason == "the probe call failed: still no")
        );
        assert!(matches!(breaker.admit(), Admit::Probe));
        assert!(matches!(breaker.record(None, true), Transition::Closed));
        assert!(matches!(breaker.admit(), Admit::Closed));
        assert_eq!(breaker.status(), BreakerStatus { state: "closed", reason: String::new(), retry_in: None });
    }

    #[test]
    fn a_manifest_without_failures_is_refused_and_the_cool_down_defaults_to_30_s() {
        assert!(toml::from_str::<Breaker>("cool_down = \"1s\"").is_err());
        assert!(toml::from_str::<Breaker>("failures = 0").is_err());
        assert_eq!(toml::from_str::<Breaker>("failures = 2").unwrap().cool_down, Duration::from_secs(30));
    }
}
