//! Supervision deadlines (`[limits] call_timeout`): each thread records the calls it has in flight, and the
//! supervisor's pass (see `supervise`) scans the records for calls past their deadline.
//!
//! A call cannot be stopped in-process; what this gives is knowing. Cost: a call with a deadline writes a
//! record of its own thread (a few stores and one uncontended swap on a line no other caller writes) and reads
//! the coarse clock, a shared word written only by the supervisor's pass. No lock, no allocation, no shared
//! read-modify-write per call.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// How deep calls may nest on one thread (a plugin call made inside another's closure) and still be watched;
/// deeper calls are checked only when they return.
const DEPTH: usize = 4;
/// How much of a method's name a record keeps (the rest is cut).
const NAME_BYTES: usize = 32;

/// The coarse clock: milliseconds since the process's first supervised call or pass, as the supervisor's
/// last pass read them.
static CLOCK: AtomicU64 = AtomicU64::new(0);

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Reads the precise time into the coarse clock (each supervisor pass does), and returns it.
pub(crate) fn advance_clock() -> u64 {
    let now = u64::try_from(origin().elapsed().as_millis()).unwrap_or(u64::MAX);
    CLOCK.fetch_max(now, Ordering::Relaxed).max(now)
}

fn coarse_now() -> u64 {
    CLOCK.load(Ordering::Relaxed)
}

/// A call's flag: its sequence number, shifted, and what became of it.
const IN_FLIGHT: u64 = 0;
const OVERRAN: u64 = 1;
const RETURNED: u64 = 2;

/// One call in flight, as its thread records it.
#[derive(Default)]
struct Entry {
    /// `sequence << 2 | IN_FLIGHT | OVERRAN | RETURNED`: written by the owner when the call starts (after the
    /// other fields) and returns, and moved from in flight to overran by the supervisor: the one word both
    /// write, so exactly one of them decides who counts an overrun.
    flag: AtomicU64,
    /// The slot called (its address: a live slot's is unique).
    slot: AtomicUsize,
    generation: AtomicU64,
    /// Coarse milliseconds.
    started: AtomicU64,
    timeout: AtomicU64,
    /// An interned name's id, or [`COPIED`].
    name_id: AtomicU32,
    name_len: AtomicUsize,
    name: [AtomicU64; NAME_BYTES / 8],
}

/// The calls in flight on one thread.
#[derive(Default)]
struct Calls {
    entries: [Entry; DEPTH],
    depth: AtomicUsize,
    sequence: AtomicU64,
}

/// Every thread's record that is still alive.
fn records() -> &'static Mutex<Vec<Weak<Calls>>> {
    static RECORDS: OnceLock<Mutex<Vec<Weak<Calls>>>> = OnceLock::new();
    RECORDS.get_or_init(Mutex::default)
}

thread_local! {
    static CALLS: Arc<Calls> = {
        let calls = Arc::new(Calls::default());
        let mut records = records().lock().unwrap_or_else(|e| e.into_inner());
        records.retain(|record| record.strong_count() > 0);
        records.push(Arc::downgrade(&calls));
        calls
    };
}

/// What a watched call is named by: a method (copied into the record, up to [`NAME_BYTES`]), or an interface
/// (its id interned once per handle, so that a typed call stores one number).
#[derive(Clone, Copy)]
pub(crate) enum Name<'a> {
    Method(&'a str),
    Interface { id: u32, text: &'static str },
}

impl Name<'_> {
    pub(crate) fn text(&self) -> &str {
        match self {
            Name::Method(text) => text,
            Name::Interface { text, .. } => text,
        }
    }
}

/// An entry's `name_id` when the name is copied into the entry.
const COPIED: u32 = u32::MAX;

/// The interned names (interface ids), by id.
fn interned() -> &'static Mutex<Vec<&'static str>> {
    static NAMES: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
    NAMES.get_or_init(Mutex::default)
}

/// The id of `name` (an interface id), interned on first use.
pub(crate) fn intern(name: &'static str) -> u32 {
    let mut names = interned().lock().unwrap_or_else(|e| e.into_inner());
    let at = names.iter().position(|known| *known == name).unwrap_or_else(|| {
        names.push(name);
        names.len() - 1
    });
    u32::try_from(at).unwrap_or(COPIED)
}

/// How a watched call ended.
pub(crate) enum Outcome {
    /// Within its deadline.
    InTime,
    /// Past it, by this long: `counted` when the supervisor already counted it stuck (and toward the breaker).
    Overran { after: Duration, counted: bool },
}

/// Runs `call` (named `name`, to `slot` (its address) on `generation`) watched against `timeout`: recorded in
/// this thread's calls in flight while it runs. Returns its result and whether it overran.
#[inline]
pub(crate) fn watch<R>(
    slot: usize,
    generation: u64,
    timeout: Duration,
    name: Name<'_>,
    call: impl FnOnce() -> R,
) -> (R, Outcome) {
    let started = coarse_now();
    let mut call = Some(call);
    let watched = CALLS.try_with(|calls| {
        let Some(call) = call.take() else { unreachable!("taken once") };
        let leave = calls.enter(slot, generation, started, timeout, name);
        let result = call();
        (result, leave.finish(started, timeout))
    });
    match (watched, call.take()) {
        (Ok(watched), _) => watched,
        // The thread is exiting (its record is gone): the call runs unwatched.
        (Err(_), Some(call)) => (call(), Outcome::InTime),
        (Err(_), None) => unreachable!("try_with runs its closure only when it returns Ok"),
    }
}

impl Calls {
    #[inline]
    fn enter(&self, slot: usize, generation: u64, started: u64, timeout: Duration, name: Name<'_>) -> Leave<'_> {
        let depth = self.depth.load(Ordering::Relaxed);
        self.depth.store(depth + 1, Ordering::Relaxed);
        let sequence = self.sequence.load(Ordering::Relaxed) + 1;
        self.sequence.store(sequence, Ordering::Relaxed);
        let entry = self.entries.get(depth);
        if let Some(entry) = entry {
            entry.slot.store(slot, Ordering::Relaxed);
            entry.generation.store(generation, Ordering::Relaxed);
            entry.started.store(started, Ordering::Relaxed);
            entry.timeout.store(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
            match name {
                Name::Interface { id, .. } => entry.name_id.store(id, Ordering::Relaxed),
                Name::Method(text) => {
                    entry.name_id.store(COPIED, Ordering::Relaxed);
                    let bytes = &text.as_bytes()[..text.len().min(NAME_BYTES)];
                    entry.name_len.store(bytes.len(), Ordering::Relaxed);
                    for (word, chunk) in entry.name.iter().zip(bytes.chunks(8)) {
                        let mut padded = [0u8; 8];
                        padded[..chunk.len()].copy_from_slice(chunk);
                        word.store(u64::from_le_bytes(padded), Ordering::Relaxed);
                    }
                }
            }
            entry.flag.store(sequence << 2 | IN_FLIGHT, Ordering::Release);
        }
        Leave { calls: self, entry, sequence, left: false }
    }
}

/// A watched call's way out of its thread's record; on unwinding (a panic in the caller's closure) too.
struct Leave<'a> {
    calls: &'a Calls,
    entry: Option<&'a Entry>,
    sequence: u64,
    left: bool,
}

impl Leave<'_> {
    /// Whether the call overran, and whether the supervisor counted it.
    #[inline]
    fn finish(mut self, started: u64, timeout: Duration) -> Outcome {
        let counted = self.leave();
        let elapsed = Duration::from_millis(coarse_now().saturating_sub(started));
        if counted || elapsed > timeout {
            Outcome::Overran { after: elapsed.max(timeout), counted }
        } else {
            Outcome::InTime
        }
    }

    /// Marks the call returned; true when the supervisor had flagged it overran.
    #[inline]
    fn leave(&mut self) -> bool {
        self.left = true;
        let depth = self.calls.depth.load(Ordering::Relaxed);
        self.calls.depth.store(depth.saturating_sub(1), Ordering::Relaxed);
        // The one read-modify-write: it decides, against the supervisor's exchange, who counts an overrun.
        self.entry.is_some_and(|entry| entry.flag.swap(self.sequence << 2 | RETURNED, Ordering::AcqRel) & 3 == OVERRAN)
    }
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if !self.left {
            self.leave();
        }
    }
}

/// A call the supervisor found past its deadline, and flagged: its thread will see the flag when it returns.
pub(crate) struct Overrun {
    pub slot: usize,
    pub generation: u64,
    pub method: String,
    pub running: Duration,
    pub timeout: Duration,
}

/// Scans every thread's calls in flight to the slots `ours` accepts (one host's: a process may run several);
/// flags (once) and returns those past their deadline. Also returns the slot of each call flagged and still
/// running.
pub(crate) fn scan(ours: impl Fn(usize) -> bool) -> (Vec<Overrun>, Vec<usize>) {
    let now = advance_clock();
    let records: Vec<Arc<Calls>> = {
        let mut records = records().lock().unwrap_or_else(|e| e.into_inner());
        records.retain(|record| record.strong_count() > 0);
        records.iter().filter_map(Weak::upgrade).collect()
    };
    let (mut overruns, mut stuck) = (Vec::new(), Vec::new());
    for calls in &records {
        for entry in &calls.entries {
            let flag = entry.flag.load(Ordering::Acquire);
            let slot = entry.slot.load(Ordering::Relaxed);
            if flag == 0 || flag & 3 == RETURNED || !ours(slot) {
                continue;
            }
            if flag & 3 == OVERRAN {
                // Read while that call still ran (else the slot may be the next call's).
                if entry.flag.load(Ordering::Acquire) == flag {
                    stuck.push(slot);
                }
                continue;
            }
            let started = entry.started.load(Ordering::Relaxed);
            let timeout = entry.timeout.load(Ordering::Relaxed);
            let running = now.saturating_sub(started);
            if running <= timeout {
                continue;
            }
            let generation = entry.generation.load(Ordering::Relaxed);
            let method = name_of(entry);
            // Only while that very call is still in flight: then its thread will see the flag and leave the
            // count to us. Fields read before a failed exchange may belong to the next call and are dropped.
            if entry.flag.compare_exchange(flag, flag | OVERRAN, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                stuck.push(slot);
                overruns.push(Overrun {
                    slot,
                    generation,
                    method,
                    running: Duration::from_millis(running),
                    timeout: Duration::from_millis(timeout),
                });
            }
        }
    }
    (overruns, stuck)
}

fn name_of(entry: &Entry) -> String {
    let id = entry.name_id.load(Ordering::Relaxed);
    if id != COPIED {
        let names = interned().lock().unwrap_or_else(|e| e.into_inner());
        return names.get(id as usize).map_or_else(|| "an interface".to_owned(), |name| (*name).to_owned());
    }
    let len = entry.name_len.load(Ordering::Relaxed).min(NAME_BYTES);
    let bytes: Vec<u8> = entry.name.iter().flat_map(|word| word.load(Ordering::Relaxed).to_le_bytes()).collect();
    String::from_utf8_lossy(&bytes[..len]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_past_its_deadline_is_flagged_once_and_its_thread_learns_it_when_it_returns() {
        advance_clock();
        let slot = 0x5eed_usize;
        let name = Name::Method("a method with a long name that is cut");
        let (_, outcome) = watch(slot, 7, Duration::ZERO, name, || {
            CLOCK.fetch_add(5, Ordering::Relaxed);
            scan_and_check(slot);
        });
        assert!(matches!(outcome, Outcome::Overran { counted: true, .. }));
        assert!(!scan(|other| other == slot).1.contains(&slot), "no longer stuck once returned");
    }

    /// Run inside a call to `slot` that has overrun.
    fn scan_and_check(slot: usize) {
        let (overruns, stuck) = scan_at_least(5, slot);
        let mine: Vec<&Overrun> = overruns.iter().filter(|o| o.slot == slot).collect();
        assert_eq!(mine.len(), 1, "flagged once");
        assert_eq!((mine[0].generation, mine[0].method.as_str()), (7, "a method with a long name that i"));
        assert_eq!(intern("test.interface/1"), intern("test.interface/1"), "interned once");
        assert!(stuck.contains(&slot));
        let (again, still) = scan_at_least(5, slot);
        assert!(again.iter().all(|o| o.slot != slot), "not flagged twice");
        assert!(still.contains(&slot), "still counted stuck while it runs");
    }

    #[test]
    fn a_call_within_its_deadline_is_not_flagged_and_nesting_restores_the_depth() {
        let slot = 0xfeed_usize;
        let hour = Duration::from_secs(3600);
        let interface = Name::Interface { id: intern("test.interface/1"), text: "test.interface/1" };
        let (inner, outer) = watch(slot, 1, hour, Name::Method("outer"), || {
            watch(slot, 1, hour, interface, || {
                CALLS.with(|calls| assert_eq!(calls.depth.load(Ordering::Relaxed), 2));
                assert!(scan(|other| other == slot).0.is_empty());
                assert!(scan(|_| false).0.is_empty(), "another host's scan sees none of them");
            })
            .1
        });
        assert!(matches!((inner, outer), (Outcome::InTime, Outcome::InTime)));
        CALLS.with(|calls| assert_eq!(calls.depth.load(Ordering::Relaxed), 0));
    }

    /// A scan after the coarse clock is at least `ms` past now (the test moved it on; a scan reads the
    /// precise time, which may be behind the moved clock, and the clock never goes back).
    fn scan_at_least(ms: u64, slot: usize) -> (Vec<Overrun>, Vec<usize>) {
        assert!(coarse_now() >= ms);
        scan(|other| other == slot)
    }
}
