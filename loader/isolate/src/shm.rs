//! The shared memory between a host and its worker: a header (the worker's start report, the shutdown word)
//! and one slot per concurrent call. A slot is owned by one side at a time, told by its `state` word, which is
//! also the futex both sides sleep on after a brief spin: the host writes a request and sets `REQUEST`, the
//! worker answers and sets `RESPONSE`, the host reads and sets `FREE`. Each side announces that it sleeps
//! (`*_waiting`), so the other makes the wake-up system call only then.
//!
//! The worker is not trusted: every length the host reads from shared memory is checked against the slot's
//! capacity, and bytes are copied out before they are parsed. This module holds the crate's unsafe code for
//! the mapping; everything else sees [`Region`] and [`Slot`].

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::mm::{MapFlags, ProtFlags};
use rustix::thread::futex;

/// The first word of a region: the layout's name and version.
const MAGIC: u64 = u64::from_le_bytes(*b"berthw01");
/// The start report's room.
pub const REPORT_CAPACITY: usize = 60 * 1024;
/// Where the slots begin.
const SLOTS_AT: usize = 64 * 1024;
/// A slot's header.
const SLOT_HEADER: usize = 64;
/// The most one message (a request or an answer) carries.
pub const CAPACITY: usize = 4 << 20;
/// The distance between slots.
const STRIDE: usize = (SLOT_HEADER + CAPACITY).next_multiple_of(4096);
/// The most slots a region holds.
pub const MAX_SLOTS: u32 = 64;

/// The slot's states.
pub const FREE: u32 = 0;
/// A request is written; the worker owns the slot.
pub const REQUEST: u32 = 1;
/// An answer is written; the host owns the slot.
pub const RESPONSE: u32 = 2;

/// The start report's states.
pub const STARTING: u32 = 0;
/// The plugin is created: the report holds its library info and sandbox.
pub const READY: u32 = 1;
/// The worker refused: the report holds why.
pub const REFUSED: u32 = 2;

#[repr(C)]
struct Header {
    magic: AtomicU64,
    slots: AtomicU32,
    /// STARTING, READY or REFUSED: the futex the host waits on at start.
    ready: AtomicU32,
    report_len: AtomicU32,
    /// 1 once the host asks the worker to shut down: the futex the worker's main thread waits on.
    shutdown: AtomicU32,
    /// The host's calls in flight, and its cores: both sides spin only while a core is left for each spinner.
    active: AtomicU32,
    cores: AtomicU32,
}

#[repr(C)]
struct SlotHeader {
    state: AtomicU32,
    worker_waiting: AtomicU32,
    host_waiting: AtomicU32,
    /// The request's operation, or the answer's status.
    code: AtomicU32,
    /// A number the operation carries (a method name's length, a schema).
    extra: AtomicU32,
    /// The message's length.
    len: AtomicU32,
}

/// A mapping of a region: created by the host over a new memfd, or by the worker over the one it was handed.
pub struct Region {
    base: NonNull<u8>,
    len: usize,
    slots: u32,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain shared memory; every access goes through atomics or through byte copies of a
// slot owned by this side (see `Slot`), so it may be used from any thread.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

/// The size of a region of `slots` slots. Sparse: only pages written take memory.
fn size(slots: u32) -> usize {
    SLOTS_AT + STRIDE * slots as usize
}

impl Region {
    /// A new region of `slots` slots in a new memfd (the host's side).
    pub fn create(slots: u32) -> std::io::Result<Region> {
        let slots = slots.clamp(1, MAX_SLOTS);
        let fd = rustix::fs::memfd_create("berth-worker", rustix::fs::MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&fd, size(slots) as u64)?;
        let region = Region::map(fd, size(slots), slots)?;
        region.header().slots.store(slots, Ordering::Relaxed);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        region.header().cores.store(cores, Ordering::Relaxed);
        region.header().magic.store(MAGIC, Ordering::Release);
        Ok(region)
    }

    /// Maps the region in `fd` (the worker's side), checking its layout.
    pub fn open(fd: OwnedFd) -> std::io::Result<Region> {
        let len = rustix::fs::fstat(&fd)?.st_size as usize;
        if len < SLOTS_AT {
            return Err(std::io::Error::other("the shared memory is smaller than its header"));
        }
        let mut region = Region::map(fd, len, 0)?;
        let (magic, slots) =
            (region.header().magic.load(Ordering::Acquire), region.header().slots.load(Ordering::Relaxed));
        if magic != MAGIC || slots == 0 || slots > MAX_SLOTS || len < size(slots) {
            return Err(std::io::Error::other("the shared memory is not a berth worker region of this version"));
        }
        region.slots = slots;
        Ok(region)
    }

    fn map(fd: OwnedFd, len: usize, slots: u32) -> std::io::Result<Region> {
        // SAFETY: a new shared mapping of `len` bytes of `fd`, which is at least that long (the host truncated
        // it to that size; the worker checked it with fstat); nothing else in this process refers to it.
        let base = unsafe {
            rustix::mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, &fd, 0)?
        };
        let base = NonNull::new(base.cast::<u8>()).ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(Region { base, len, slots, fd })
    }

    /// The memfd, to hand to the worker.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn header(&self) -> &Header {
        // SAFETY: the header is at the start of the mapping, which is page-aligned and larger than it; all its
        // fields are atomics, valid for any bit pattern.
        unsafe { self.base.cast::<Header>().as_ref() }
    }

    /// How many slots the region has.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Slot `index` (below [`Region::slots`]).
    pub fn slot(&self, index: u32) -> Slot<'_> {
        assert!(index < self.slots, "slot {index} of {}", self.slots);
        let offset = SLOTS_AT + STRIDE * index as usize;
        // SAFETY: the slot lies inside the mapping (`size(slots)` bytes); its header is page-aligned atomics.
        let header = unsafe { self.base.add(offset).cast::<SlotHeader>().as_ref() };
        // SAFETY: as above; the data follows the header and holds `CAPACITY` bytes.
        let data = unsafe { self.base.add(offset + SLOT_HEADER) };
        Slot { header, data, _region: std::marker::PhantomData }
    }

    /// Writes the worker's start report and wakes the host.
    pub fn report(&self, state: u32, bytes: &[u8]) {
        let len = bytes.len().min(REPORT_CAPACITY);
        // SAFETY: the report area (`REPORT_CAPACITY` bytes after the header) is written only by the worker,
        // before it sets `ready`, and read by the host only after it sees `ready` set.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.as_ptr().add(256), len) };
        self.header().report_len.store(len as u32, Ordering::Relaxed);
        self.header().ready.store(state, Ordering::Release);
        let _ = futex::wake(&self.header().ready, futex::Flags::empty(), u32::MAX);
    }

    /// Waits for the worker's start report until `deadline` or `gone()` says it died: its state and bytes.
    pub fn wait_report(&self, deadline: Instant, gone: impl Fn() -> bool) -> Option<(u32, Vec<u8>)> {
        let ready = &self.header().ready;
        loop {
            let state = ready.load(Ordering::Acquire);
            if state != STARTING {
                let len = (self.header().report_len.load(Ordering::Relaxed) as usize).min(REPORT_CAPACITY);
                let mut bytes = vec![0; len];
                // SAFETY: `len` is bounded by the report area; the bytes are only copied, then parsed as data.
                unsafe { std::ptr::copy_nonoverlapping(self.base.as_ptr().add(256), bytes.as_mut_ptr(), len) };
                return Some((state, bytes));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || gone() {
                return None;
            }
            wait(ready, STARTING, Some(left.min(Duration::from_millis(20))));
        }
    }

    /// A call starts: whether its two sides may spin (a core for each, with the calls already in flight).
    pub fn enter(&self) -> bool {
        let active = self.header().active.fetch_add(1, Ordering::Relaxed) + 1;
        active * 2 <= self.header().cores.load(Ordering::Relaxed)
    }

    /// A call ends.
    pub fn leave(&self) {
        self.header().active.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether a worker thread may spin for its next request: the host's calls in flight leave it a core.
    pub fn may_spin(&self) -> bool {
        self.header().active.load(Ordering::Relaxed).max(1) * 2 <= self.header().cores.load(Ordering::Relaxed)
    }

    /// Asks the worker to shut down.
    pub fn ask_shutdown(&self) {
        self.header().shutdown.store(1, Ordering::Release);
        let _ = futex::wake(&self.header().shutdown, futex::Flags::empty(), u32::MAX);
    }

    /// Waits until the host asks the worker to shut down.
    pub fn wait_shutdown(&self) {
        while self.header().shutdown.load(Ordering::Acquire) == 0 {
            wait(&self.header().shutdown, 0, None);
        }
    }

    /// Wakes everyone waiting on any slot (the worker died: the host's callers must look).
    pub fn wake_all(&self) {
        for index in 0..self.slots {
            let _ = futex::wake(&self.slot(index).header.state, futex::Flags::empty(), u32::MAX);
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this base and length, and no `Slot` outlives the region
        // (they borrow it).
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Sleeps on `word` while it holds `value`, at most `timeout`.
fn wait(word: &AtomicU32, value: u32, timeout: Option<Duration>) {
    let timeout = timeout.map(|t| rustix::time::Timespec { tv_sec: t.as_secs() as _, tv_nsec: t.subsec_nanos() as _ });
    let _ = futex::wait(word, futex::Flags::empty(), value, timeout.as_ref());
}

/// One slot of a region.
pub struct Slot<'a> {
    header: &'a SlotHeader,
    data: NonNull<u8>,
    _region: std::marker::PhantomData<&'a Region>,
}

/// How long a side spins for the other before it sleeps.
const HOST_SPIN: Duration = Duration::from_micros(20);
const WORKER_SPIN: Duration = Duration::from_micros(50);

/// Spins until `done()` or `budget` has passed: a few hundred busy iterations (the answer of a core that is
/// running the other side comes within a microsecond), then yielding the core between looks, so that on a
/// machine with more calling threads than cores the thread that would answer gets to run.
fn spin(budget: Duration, busy: bool, done: impl Fn() -> bool) -> bool {
    for _ in 0..if busy { 256 } else { 0 } {
        if done() {
            return true;
        }
        std::hint::spin_loop();
    }
    let until = Instant::now() + budget;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::yield_now();
    }
    done()
}

impl Slot<'_> {
    /// Writes a message of `parts` (the side that owns the slot): its code, extra number and bytes. `false`
    /// when they do not fit.
    pub fn write(&self, code: u32, extra: u32, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|part| part.len()).sum();
        if len > CAPACITY {
            return false;
        }
        let mut at = 0;
        for part in parts {
            // SAFETY: the slot's data holds `CAPACITY` bytes and `at + part.len() <= len <= CAPACITY`; this side
            // owns the slot (its state says so), so the other side does not touch them now.
            unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), self.data.as_ptr().add(at), part.len()) };
            at += part.len();
        }
        self.header.code.store(code, Ordering::Relaxed);
        self.header.extra.store(extra, Ordering::Relaxed);
        self.header.len.store(len as u32, Ordering::Relaxed);
        true
    }

    /// The message in the slot: its code, extra number and bytes (copied; the length is bounded).
    pub fn read(&self) -> (u32, u32, Vec<u8>) {
        let len = (self.header.len.load(Ordering::Relaxed) as usize).min(CAPACITY);
        let mut bytes = Vec::with_capacity(len);
        // SAFETY: `len <= CAPACITY`, inside the slot; the bytes are copied out and then parsed as plain data, so
        // a hostile worker writing them meanwhile can only make the copy wrong, never unsound to hold.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data.as_ptr(), bytes.as_mut_ptr(), len);
            bytes.set_len(len);
        }
        (self.header.code.load(Ordering::Relaxed), self.header.extra.load(Ordering::Relaxed), bytes)
    }

    /// The message's bytes in place, for the worker (which trusts its host): `f` sees them without a copy.
    pub fn with_bytes<R>(&self, f: impl FnOnce(u32, u32, &[u8]) -> R) -> R {
        let len = (self.header.len.load(Ordering::Relaxed) as usize).min(CAPACITY);
        // SAFETY: bounded as in `read`; the worker owns the slot while it handles a request, and the host does
        // not write it until the worker sets `RESPONSE`.
        let bytes = unsafe { std::slice::from_raw_parts(self.data.as_ptr(), len) };
        f(self.header.code.load(Ordering::Relaxed), self.header.extra.load(Ordering::Relaxed), bytes)
    }

    /// The host hands the slot to the worker.
    pub fn send(&self) {
        self.header.state.store(REQUEST, Ordering::SeqCst);
        if self.header.worker_waiting.load(Ordering::SeqCst) != 0 {
            let _ = futex::wake(&self.header.state, futex::Flags::empty(), 1);
        }
    }

    /// The host waits for the answer until `deadline`, or until `dead()` says the worker is gone: whether it
    /// came.
    pub fn wait_answer(&self, deadline: Option<Instant>, may_spin: bool, dead: impl Fn() -> bool) -> bool {
        let state = &self.header.state;
        if spin(HOST_SPIN, may_spin, || state.load(Ordering::Acquire) == RESPONSE) {
            return true;
        }
        loop {
            self.header.host_waiting.store(1, Ordering::SeqCst);
            if state.load(Ordering::SeqCst) == RESPONSE {
                self.header.host_waiting.store(0, Ordering::Relaxed);
                return true;
            }
            if dead() {
                return false;
            }
            let mut nap = Duration::from_millis(50);
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                nap = nap.min(left);
            }
            wait(state, REQUEST, Some(nap));
            self.header.host_waiting.store(0, Ordering::Relaxed);
        }
    }

    /// The host is done with the answer.
    pub fn free(&self) {
        self.header.state.store(FREE, Ordering::Release);
    }

    /// The worker waits for the next request.
    pub fn wait_request(&self, may_spin: bool) {
        let state = &self.header.state;
        if spin(WORKER_SPIN, may_spin, || state.load(Ordering::Acquire) == REQUEST) {
            return;
        }
        loop {
            self.header.worker_waiting.store(1, Ordering::SeqCst);
            let now = state.load(Ordering::SeqCst);
            if now == REQUEST {
                self.header.worker_waiting.store(0, Ordering::Relaxed);
                return;
            }
            wait(state, now, None);
            self.header.worker_waiting.store(0, Ordering::Relaxed);
        }
    }

    /// The worker hands the answer back.
    pub fn answer(&self) {
        self.header.state.store(RESPONSE, Ordering::SeqCst);
        if self.header.host_waiting.load(Ordering::SeqCst) != 0 {
            let _ = futex::wake(&self.header.state, futex::Flags::empty(), 1);
        }
    }
}
