//! Supervision deadlines (`[limits] call_timeout`): each thread records the calls it has in flight, and the
//! supervisor's pass (see `supervise`) scans the records for calls past their deadline.
//!
//! A call cannot be stopped in-process; what this gives is knowing. Cost: a call with a deadline writes a
//! record of its own thread (a few stores and one uncontended swap on a line no other caller writes) and reads
//! the coarse clock, a shared word written only by the supervisor's pass. No lock, no allocation, no shared
//! read-modify-write per call. A thread finds its record through a constant thread-local (no lazy check);
//! records are made once and handed to a new thread when the thread that had one ends, so there are never
//! more than the threads that ever called at once.
#![forbid(unsafe_code)]

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
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

/// How far the coarse clock may lag the time: the gap between the last two passes (ms). A start stamp is up
/// to this much early, so a call is judged past its deadline only once it has run the deadline plus this
/// (never a false timeout; found at most two passes late).
static RESOLUTION: AtomicU64 = AtomicU64::new(0);

/// Reads the precise time into the coarse clock (each supervisor pass does), and returns it.
pub(crate) fn advance_clock() -> u64 {
    let now = u64::try_from(origin().elapsed().as_millis()).unwrap_or(u64::MAX);
    let before = CLOCK.fetch_max(now, Ordering::Relaxed);
    // Rounded up by one: a stamp and a reading in whole milliseconds are each up to one short.
    RESOLUTION.store(now.saturating_sub(before) + 1, Ordering::Relaxed);
    before.max(now)
}

/// Whether a call that the coarse clock says ran `elapsed` surely ran past `timeout`.
#[inline]
fn past(elapsed: u64, timeout: u64) -> bool {
    elapsed > timeout.saturating_add(RESOLUTION.load(Ordering::Relaxed))
}

#[inline]
fn coarse_now() -> u64 {
    CLOCK.load(Ordering::Relaxed)
}

/// A deadline in whole milliseconds (at least 1), as records keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeout(u64);

impl Timeout {
    pub(crate) fn new(timeout: Duration) -> Timeout {
        Timeout(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
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
    /// A thread holds it.
    in_use: AtomicBool,
}

/// Every record ever made (each made once, kept for the process's life, reused across threads).
fn records() -> &'static Mutex<Vec<&'static Calls>> {
    static RECORDS: OnceLock<Mutex<Vec<&'static Calls>>> = OnceLock::new();
    RECORDS.get_or_init(Mutex::default)
}

thread_local! {
    /// This thread's record, once it has one: constant-initialised, so reading it is one load.
    static CALLS: Cell<Option<&'static Calls>> = const { Cell::new(None) };
    /// Gives the record back when the thread ends.
    static HOLDER: Holder = const { Holder(Cell::new(None)) };
}

struct Holder(Cell<Option<&'static Calls>>);

impl Drop for Holder {
    /// The thread is ending: its record goes back, with nothing left in flight (a thread ended without
    /// unwinding, by `pthread_exit` inside a plugin say, leaves no call counted stuck for ever).
    fn drop(&mut self) {
        let _ = CALLS.try_with(|calls| calls.set(None));
        if let Some(calls) = self.0.take() {
            for entry in &calls.entries {
                let flag = entry.flag.load(Ordering::Relaxed);
                entry.flag.store(flag & !3 | RETURNED, Ordering::Release);
            }
            calls.depth.store(0, Ordering::Relaxed);
            calls.in_use.store(false, Ordering::Release);
        }
    }
}

/// This thread's record; `None` while the thread is ending.
#[inline]
fn calls() -> Option<&'static Calls> {
    CALLS.with(Cell::get).or_else(register)
}

/// Takes a free record (or makes one) for this thread.
#[cold]
fn register() -> Option<&'static Calls> {
    let mut records = records().lock().unwrap_or_else(|e| e.into_inner());
    let free = records
        .iter()
        .copied()
        .find(|calls| calls.in_use.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok());
    let calls = free.unwrap_or_else(|| {
        let made: &'static Calls = Box::leak(Box::new(Calls { in_use: AtomicBool::new(true), ..Calls::default() }));
        records.push(made);
        made
    });
    if HOLDER.try_with(|holder| holder.0.set(Some(calls))).is_err() {
        // The thread is ending: nothing will give it back, so it is not taken.
        calls.in_use.store(false, Ordering::Release);
        return None;
    }
    CALLS.with(|cell| cell.set(Some(calls)));
    Some(calls)
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

/// Starts watching a call (named `name`, to `slot` (its address) on `generation`) against `timeout`:
/// recorded in this thread's calls in flight until [`Watched::finish`] (or until it is dropped, unwinding).
#[inline]
pub(crate) fn enter(slot: usize, generation: u64, timeout: Timeout, name: Name<'_>) -> Watched {
    let started = coarse_now();
    let Some(calls) = calls() else {
        return Watched { calls: None, entry: None, sequence: 0, started, timeout, left: true, _thread: PhantomData };
    };
    let depth = calls.depth.load(Ordering::Relaxed);
    calls.depth.store(depth + 1, Ordering::Relaxed);
    let sequence = calls.sequence.load(Ordering::Relaxed) + 1;
    calls.sequence.store(sequence, Ordering::Relaxed);
    let entry = calls.entries.get(depth);
    if let Some(entry) = entry {
        entry.slot.store(slot, Ordering::Relaxed);
        entry.generation.store(generation, Ordering::Relaxed);
        entry.started.store(started, Ordering::Relaxed);
        entry.timeout.store(timeout.0, Ordering::Relaxed);
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
    Watched { calls: Some(calls), entry, sequence, started, timeout, left: false, _thread: PhantomData }
}

/// A call being watched, from [`enter`] to [`Watched::finish`], on the thread that made it.
pub(crate) struct Watched {
    calls: Option<&'static Calls>,
    /// The entry, when the call is not nested too deep.
    entry: Option<&'static Entry>,
    sequence: u64,
    started: u64,
    timeout: Timeout,
    left: bool,
    /// Stays on its thread: the record is that thread's.
    _thread: PhantomData<*const ()>,
}

impl Watched {
    /// Stops watching: whether the call overran its deadline, and whether the supervisor counted it.
    #[inline]
    pub(crate) fn finish(mut self) -> Outcome {
        let counted = self.leave();
        let elapsed = coarse_now().saturating_sub(self.started);
        if counted || past(elapsed, self.timeout.0) {
            Outcome::Overran { after: Duration::from_millis(elapsed.max(self.timeout.0)), counted }
        } else {
            Outcome::InTime
        }
    }

    /// Marks the call returned; true when the supervisor had flagged it overran.
    #[inline]
    fn leave(&mut self) -> bool {
        self.left = true;
        let Some(calls) = self.calls else { return false };
        calls.depth.store(calls.depth.load(Ordering::Relaxed).saturating_sub(1), Ordering::Relaxed);
        // The one read-modify-write: it decides, against the supervisor's exchange, who counts an overrun.
        self.entry.is_some_and(|entry| entry.flag.swap(self.sequence << 2 | RETURNED, Ordering::AcqRel) & 3 == OVERRAN)
    }
}

impl Drop for Watched {
    /// A call unwinding (a panic in the caller's closure): the record is left as if it returned.
    #[inline]
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

/// A call flagged past its deadline and still running: its slot and generation.
pub(crate) type Stuck = (usize, u64);

/// Scans every thread's calls in flight to the slots `ours` accepts (one host's: a process may run several);
/// flags (once) and returns those past their deadline. Also returns each call flagged and still running.
pub(crate) fn scan(ours: impl Fn(usize) -> bool) -> (Vec<Overrun>, Vec<Stuck>) {
    let now = advance_clock();
    let records: Vec<&'static Calls> = records().lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (mut overruns, mut stuck) = (Vec::new(), Vec::new());
    for calls in records {
        for entry in &calls.entries {
            let flag = entry.flag.load(Ordering::Acquire);
            let slot = entry.slot.load(Ordering::Relaxed);
            if flag == 0 || flag & 3 == RETURNED || !ours(slot) {
                continue;
            }
            let generation = entry.generation.load(Ordering::Relaxed);
            if flag & 3 == OVERRAN {
                // Read while that call still ran (else they may be the next call's): an exchange that changes
                // nothing orders those reads before it, on every platform.
                if entry.flag.compare_exchange(flag, flag, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    stuck.push((slot, generation));
                }
                continue;
            }
            let started = entry.started.load(Ordering::Relaxed);
            let timeout = entry.timeout.load(Ordering::Relaxed);
            let running = now.saturating_sub(started);
            if !past(running, timeout) {
                continue;
            }
            let method = name_of(entry);
            // Only while that very call is still in flight: then its thread will see the flag and leave the
            // count to us. Fields read before a failed exchange may belong to the next call and are dropped.
            if entry.flag.compare_exchange(flag, flag | OVERRAN, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                stuck.push((slot, generation));
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
        let watched = enter(slot, 7, Timeout::new(Duration::ZERO), name);
        CLOCK.fetch_add(5 + RESOLUTION.load(Ordering::Relaxed), Ordering::Relaxed);
        scan_and_check(slot);
        assert!(matches!(watched.finish(), Outcome::Overran { counted: true, .. }));
        assert!(scan(|other| other == slot).1.is_empty(), "no longer stuck once returned");
    }

    /// Run inside a call to `slot` that has overrun.
    fn scan_and_check(slot: usize) {
        let (overruns, stuck) = scan_at_least(5, slot);
        let mine: Vec<&Overrun> = overruns.iter().filter(|o| o.slot == slot).collect();
        assert_eq!(mine.len(), 1, "flagged once");
        assert_eq!((mine[0].generation, mine[0].method.as_str()), (7, "a method with a long name that i"));
        assert_eq!(intern("test.interface/1"), intern("test.interface/1"), "interned once");
        assert!(stuck.contains(&(slot, 7)));
        let (again, still) = scan_at_least(5, slot);
        assert!(again.iter().all(|o| o.slot != slot), "not flagged twice");
        assert!(still.contains(&(slot, 7)), "still counted stuck while it runs");
    }

    #[test]
    fn a_call_within_its_deadline_is_not_flagged_and_nesting_restores_the_depth() {
        let slot = 0xfeed_usize;
        let hour = Timeout::new(Duration::from_secs(3600));
        let interface = Name::Interface { id: intern("test.interface/1"), text: "test.interface/1" };
        let outer = enter(slot, 1, hour, Name::Method("outer"));
        let inner = enter(slot, 1, hour, interface);
        let depth = || calls().map(|calls| calls.depth.load(Ordering::Relaxed));
        assert_eq!(depth(), Some(2));
        assert!(scan(|other| other == slot).0.is_empty());
        assert!(scan(|_| false).0.is_empty(), "another host's scan sees none of them");
        assert!(matches!(inner.finish(), Outcome::InTime));
        drop(outer);
        assert_eq!(depth(), Some(0), "a dropped (unwound) call leaves the record too");
    }

    #[test]
    fn a_thread_that_ends_gives_its_record_to_the_next() {
        let taken = || std::thread::spawn(|| calls().map(|calls| std::ptr::from_ref(calls) as usize)).join().unwrap();
        let first = taken();
        let made = records().lock().unwrap().len();
        for _ in 0..10 {
            taken();
        }
        assert!(first.is_some());
        assert!(records().lock().unwrap().len() <= made + 2, "records are reused, not made per thread");
    }

    /// A scan after the coarse clock is at least `ms` past now (the test moved it on; a scan reads the
    /// precise time, which may be behind the moved clock, and the clock never goes back).
    fn scan_at_least(ms: u64, slot: usize) -> (Vec<Overrun>, Vec<Stuck>) {
        assert!(coarse_now() >= ms);
        scan(|other| other == slot)
    }
}
