//! The registry: every plugin the host knows, by name, with its lifecycle state and (when active) its current
//! generation. Callers hold [`PluginHandle`]s; a call loads the current generation through `arc-swap` (a
//! per-thread hazard slot, never a lock or a shared counter), so many threads call at once without
//! serialising, and a call in flight keeps the generation it started on alive until it returns. A reload
//! swaps a fully created generation in with one atomic store; the one it replaces is retired (shut down once
//! its last call returns, its library kept mapped: libraries are never unloaded) and counted.
#![forbid(unsafe_code)]

use std::any::Any;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use berth_plugin_api::abi::PluginError;
use berth_plugin_api::{ErrorKind, HealthStatus, Interface};
use crossbeam_utils::CachePadded;
use serde::{Serialize, de::DeserializeOwned};

pub use crate::breaker::BreakerStatus;
use crate::breaker::{Admit, CircuitBreaker, Transition};
use crate::deadline::{self, Name, Outcome, Timeout};
use crate::error::LoadError;
use crate::instance::Instance;
use crate::isolation::{Failure, WorkerEvent, WorkerStatus};
use crate::load::LibraryInfo;
use crate::manifest::{Breaker, Manifest, OnFailing, PluginName};
use crate::pool::Pool;
use crate::trust::Trust;
use crate::verify::FileStamp;

mod supervise;
use supervise::HealthTrack;

/// Where a plugin is in its lifecycle: Discovered -> Validated -> Loaded -> Active, or Failed (reason kept),
/// Disabled (by its manifest), Removed (its manifest is gone), Retired (shut down with the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PluginState {
    /// Its manifest was found and parsed.
    Discovered,
    /// Its library passed the path, format and integrity checks.
    Validated,
    /// Its library is open and its ABI accepted.
    Loaded,
    /// An instance is serving.
    Active,
    /// It could not be loaded, or it panicked; the reason is kept.
    Failed,
    /// Its manifest says `enabled = false`.
    Disabled,
    /// Its manifest was deleted.
    Removed,
    /// It was shut down with the host.
    Retired,
    /// Its circuit breaker is open (`[breaker]`, or failing health checks): the serving generation refuses
    /// calls until a probe succeeds; the reason is kept.
    Faulted,
    /// It serves, but something is wrong: a call is stuck past its deadline (`[limits] call_timeout`), or a
    /// health check failed; the reason is kept. Calls go through.
    Degraded,
}

impl fmt::Display for PluginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginState::Discovered => "discovered",
            PluginState::Validated => "validated",
            PluginState::Loaded => "loaded",
            PluginState::Active => "active",
            PluginState::Failed => "failed",
            PluginState::Disabled => "disabled",
            PluginState::Removed => "removed",
            PluginState::Retired => "retired",
            PluginState::Faulted => "faulted",
            PluginState::Degraded => "degraded",
        })
    }
}

/// What happened to a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A step of the first load: the state is `Discovered`, `Validated` or `Loaded`.
    Progress,
    /// A generation started serving where none was (the first load, or after a failure or `enabled = false`).
    Loaded,
    /// A new generation replaced the serving one, which is retired.
    Reloaded {
        /// The version of the generation replaced.
        from_version: String,
        /// Its number.
        from_generation: u64,
    },
    /// A changed `[config]` was applied to the serving generation, without a reload.
    Reconfigured,
    /// A new library, manifest edit or config was refused; the serving generation keeps serving. `detail` is
    /// the reason.
    ReloadFailed,
    /// It could not be loaded or it panicked, and nothing of it serves. `detail` is the reason.
    Failed,
    /// Its manifest says `enabled = false`: taken out of service.
    Disabled,
    /// Its manifest was deleted: taken out of service.
    Removed,
    /// Shut down with the host.
    Retired,
    /// A refused change was undone (the manifest fixed, or the files put back as they serve): the serving
    /// generation goes on, and the refusal no longer stands.
    Restored,
    /// The plugin directory it was found in is gone (deleted, renamed, unmounted): what serves keeps serving,
    /// but its files are not watched until the directory returns. `detail` names the directory.
    Unwatched,
    /// The plugin directory it was found in is back and watched again; a rescan follows.
    Watched,
    /// Its circuit breaker opened (or a probe failed and it opened again): calls are refused until a probe
    /// succeeds. `detail` is the reason.
    Faulted,
    /// It serves normally again: its breaker closed, or what degraded it passed. `detail` says why (a probe
    /// succeeded, a config edit, the stuck calls returned, a health check passed).
    Recovered,
    /// A call is stuck past its deadline, or a health check failed: it serves, degraded. `detail` says which.
    Degraded,
    /// The worker process of an isolated plugin died (`detail`: the signal or exit status and its last words);
    /// calls fail with [`CallError::Crashed`] until it is restarted.
    Crashed,
    /// A new worker process serves after a crash.
    Restarted,
}

/// A lifecycle event, as subscribers receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// The plugin.
    pub plugin: PluginName,
    /// What happened.
    pub kind: EventKind,
    /// The plugin's state after it.
    pub state: PluginState,
    /// The generation serving after it (or the one concerned, for `Retired`), if any.
    pub generation: Option<u64>,
    /// The version of that generation, else the manifest's.
    pub version: String,
    /// Why, or with what: the failure reason, the manifest, the library's digest.
    pub detail: String,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (plugin, version) = (&self.plugin, &self.version);
        let generation = self.generation.map(|g| format!(" (generation {g})")).unwrap_or_default();
        match &self.kind {
            EventKind::Progress => write!(f, "{plugin}: {}: {}", self.state, self.detail),
            EventKind::Loaded => write!(f, "{plugin}: loaded {version}{generation}"),
            EventKind::Reloaded { from_version, from_generation } => {
                write!(f, "{plugin}: reloaded {from_version} (generation {from_generation}) -> {version}{generation}")
            }
            EventKind::Reconfigured => write!(f, "{plugin}: reconfigured {version}{generation}: {}", self.detail),
            EventKind::ReloadFailed => {
                write!(f, "{plugin}: reload refused, {version}{generation} keeps serving: {}", self.detail)
            }
            EventKind::Failed => write!(f, "{plugin}: failed: {}", self.detail),
            EventKind::Disabled => write!(f, "{plugin}: disabled: {}", self.detail),
            EventKind::Removed => write!(f, "{plugin}: removed: {}", self.detail),
            EventKind::Retired => write!(f, "{plugin}: shut down{generation}: {}", self.detail),
            EventKind::Restored => {
                write!(f, "{plugin}: refusal cleared, {version}{generation} serves: {}", self.detail)
            }
            EventKind::Unwatched => write!(f, "{plugin}: not watched: {}", self.detail),
            EventKind::Watched => write!(f, "{plugin}: watched again: {}", self.detail),
            EventKind::Faulted => write!(f, "{plugin}: faulted, calls refused: {}", self.detail),
            EventKind::Recovered => write!(f, "{plugin}: recovered, {version}{generation} serves: {}", self.detail),
            EventKind::Degraded => write!(f, "{plugin}: degraded, {version}{generation} serves: {}", self.detail),
            EventKind::Crashed => write!(f, "{plugin}: crashed, {version}{generation}: {}", self.detail),
            EventKind::Restarted => write!(f, "{plugin}: restarted, {version}{generation}: {}", self.detail),
        }
    }
}

/// A snapshot of one plugin's status.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PluginStatus {
    /// Its name.
    pub name: PluginName,
    /// Its state.
    pub state: PluginState,
    /// Why it is failed, disabled or removed.
    pub reason: Option<String>,
    /// The last refused reload, while the generation before it keeps serving.
    pub reload_error: Option<String>,
    /// Its manifest.
    pub manifest: PathBuf,
    /// The version its manifest declares.
    pub version: String,
    /// The active generation, if any.
    pub generation: Option<u64>,
    /// What the active library reports.
    pub library: Option<LibraryInfo>,
    /// The SHA-256 of the active library.
    pub sha256: Option<String>,
    /// Whether the active library is signed by a trusted key.
    pub trust: Option<Trust>,
    /// Generations of this plugin no longer serving. A generation costs nothing once it has shut down; its
    /// library image stays mapped until the process exits, counted once in `retired_images`.
    pub retired_generations: u64,
    /// Distinct library images of this plugin that stay mapped but do not serve: those of retired generations
    /// and of refused reloads that got as far as opening the library.
    pub retired_images: u64,
    /// Their bytes.
    pub retired_bytes: u64,
    /// The serving generation's bulkhead (`[limits] max_concurrent_calls`), if it has one.
    pub max_concurrent_calls: Option<u32>,
    /// Calls in flight, counted while a bulkhead is configured (0 otherwise).
    pub in_flight: u32,
    /// Calls the bulkhead refused, since the host started.
    pub overloaded: u64,
    /// The serving generation's circuit breaker (`[breaker]`), if it has one.
    pub breaker: Option<BreakerStatus>,
    /// The serving generation's rate limit (`[limits] calls_per_second`), if it has one.
    pub calls_per_second: Option<u32>,
    /// Calls the rate limit refused, since the host started.
    pub rate_limited: u64,
    /// The serving generation's supervision deadline (`[limits] call_timeout`), if it has one.
    pub call_timeout: Option<std::time::Duration>,
    /// Calls running past their supervision deadline now (as of the supervisor's last pass).
    pub stuck: u32,
    /// Calls that ran past their supervision deadline (`call_timeout`), since the host started. A caller's own
    /// deadline ([`PluginHandle::call_within`]) is the caller's business and not counted.
    pub timeouts: u64,
    /// Threads of the plugin's own running now (busy or idle): those of calls with a caller's deadline and
    /// health checks, at most its bulkhead, else 8.
    pub call_threads: u32,
    /// The health checks (`[health]`), if the serving generation has them.
    pub health: Option<HealthReport>,
    /// The worker process, when the serving generation runs isolated (`isolation = "process"`).
    pub worker: Option<WorkerStatus>,
}

/// What a plugin's health checks found lately ([`PluginStatus::health`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthReport {
    /// The checks that failed since the last that passed.
    pub failing: u32,
    /// The most recent checks, oldest first (at most [`HEALTH_HISTORY`]).
    pub history: Vec<HealthCheck>,
}

/// How many health checks a status keeps.
pub const HEALTH_HISTORY: usize = 16;

/// One health check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthCheck {
    /// When it started.
    pub at: std::time::SystemTime,
    /// How long it took (its timeout, when it did not answer in time).
    pub took: std::time::Duration,
    /// Whether it passed (the plugin answered `ok` in time).
    pub passed: bool,
    /// What the plugin said, or why the check failed.
    pub detail: String,
}

/// The retired generations of every plugin, and the library images they keep mapped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retired {
    /// Retired generations.
    pub generations: u64,
    /// Distinct library images mapped that no serving generation uses (the same bytes are one image,
    /// whichever plugins and generations loaded them).
    pub images: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// One load of a plugin: its manifest, the library it came from, and the instance.
pub(crate) struct Generation {
    pub number: u64,
    pub manifest: Manifest,
    pub library: LibraryInfo,
    pub sha256: String,
    /// The library file as it was read.
    pub stamp: FileStamp,
    /// What its signature says.
    pub trust: Trust,
    /// The live instance it serves through.
    pub instance: Instance,
    /// What is checked around each call (bulkhead, breaker), when the manifest asks for anything. `None`: a
    /// call is the plain call.
    pub supervision: Option<Box<Supervision>>,
    /// The typed interfaces callers asked this generation for, resolved once (see [`Typed`]).
    pub interfaces: Interfaces,
    /// How long the state hand-over into this generation took (export and import), if there was one: the
    /// window in which a call to the generation it replaces is lost to it.
    pub handed_over: Option<std::time::Duration>,
}

/// How many interface types one generation remembers; a host asking for more resolves the rest on every call.
const CACHED_INTERFACES: usize = 8;

/// A small insert-only map from interface type to its resolved handle, read without a lock or a shared write:
/// a lookup is an atomic load and a type check per entry, so threads calling at once never contend.
#[derive(Default)]
pub(crate) struct Interfaces([OnceLock<Arc<dyn Any + Send + Sync>>; CACHED_INTERFACES]);

/// What an entry of [`Interfaces`] holds for interface `I`: a distinct type per interface, even when two
/// interfaces share a handle type.
struct Resolved<I: Interface>(Result<I::Handle, String>);

impl Generation {
    /// The extension interface `I` of this generation's instance, layout-checked: `None` when the plugin does
    /// not provide it, an error (the first layout difference) when it does with another layout.
    pub(crate) fn extension<I: Interface>(&self) -> Result<Option<I::Handle>, String> {
        self.instance.extension_handle::<I>()
    }

    /// This generation's interface `I`, asked for and layout-checked.
    fn resolve<I: Interface>(&self) -> Resolved<I> {
        Resolved(self.extension::<I>().and_then(|found| found.ok_or_else(|| "not provided by this plugin".to_owned())))
    }

    /// The entry of this generation's cache that holds interface `I`, resolving it on first use; `None` when
    /// every entry holds another interface.
    fn cached<I>(&self) -> Option<(&Arc<dyn Any + Send + Sync>, &Resolved<I>)>
    where
        I: Interface + 'static,
        I::Handle: Send + Sync + 'static,
    {
        self.interfaces.0.iter().find_map(|entry| {
            // Two threads may resolve at once; one value is kept and the other dropped.
            let cached = entry.get_or_init(|| Arc::new(self.resolve::<I>()));
            cached.downcast_ref::<Resolved<I>>().map(|resolved| (cached, resolved))
        })
    }

    /// Runs `f` on this generation's interface `I`, from the cache when it has room.
    #[inline]
    fn with_resolved<I, R>(&self, f: impl FnOnce(&Resolved<I>) -> R) -> R
    where
        I: Interface + 'static,
        I::Handle: Send + Sync + 'static,
    {
        match self.cached::<I>() {
            Some((_, resolved)) => f(resolved),
            None => f(&self.resolve::<I>()),
        }
    }

    /// This generation's interface `I`, shared.
    fn shared_interface<I>(&self) -> Arc<Resolved<I>>
    where
        I: Interface + 'static,
        I::Handle: Send + Sync + 'static,
    {
        match self.cached::<I>() {
            Some((cached, _)) => Arc::clone(cached).downcast().unwrap_or_else(|_| unreachable!("checked by `cached`")),
            None => Arc::new(self.resolve::<I>()),
        }
    }
}

impl<I: Interface> Resolved<I> {
    /// Calls an interface method of `generation` (see [`Typed::call`]).
    #[inline]
    fn call<T>(
        &self,
        plugin: &PluginHandle,
        generation: &Arc<Generation>,
        f: impl FnOnce(&I::Handle) -> Result<T, PluginError>,
    ) -> Result<T, CallError> {
        match &self.0 {
            Ok(handle) => f(handle).map_err(|error| plugin.failed_call(generation, I::ID, Failure::Plugin(error))),
            Err(reason) => Err(plugin.unusable(I::ID, reason)),
        }
    }

    /// Runs `f` with the interface (see [`Typed::with`]).
    #[inline]
    fn with<R>(&self, plugin: &PluginHandle, f: impl FnOnce(&I::Handle) -> R) -> Result<R, CallError> {
        match &self.0 {
            Ok(handle) => Ok(f(handle)),
            Err(reason) => Err(plugin.unusable(I::ID, reason)),
        }
    }
}

/// The manifest the serving generation runs with (its `[config]` as last applied) and its library file as
/// last seen.
#[derive(Clone)]
pub(crate) struct Applied {
    pub manifest: Manifest,
    pub stamp: FileStamp,
}

impl Drop for Generation {
    /// Runs when the last caller using this generation is done: shutdown happens exactly once, never under a
    /// call in flight.
    fn drop(&mut self) {
        if let Err(error) = self.instance.shutdown() {
            tracing::warn!(plugin = %self.manifest.name, generation = self.number, "shutdown failed: {}", error.message);
        }
    }
}

/// Something told of every lifecycle event, registered with [`HostBuilder::observer`](crate::HostBuilder::observer).
///
/// Observers run on the thread that made the change (a load, the watcher's reload), one after another in the
/// order they were registered, before the next step of the walk. Keep them quick, and never call
/// [`Host::load_all`](crate::Host::load_all) or [`Host::shutdown`](crate::Host::shutdown) from one (reading
/// statuses and calling plugins is fine). A panic in an observer is contained and logged.
pub trait Observer: Send + Sync {
    /// Called with each event.
    fn on_event(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync> Observer for F {
    fn on_event(&self, event: &Event) {
        self(event)
    }
}

/// Where events go: the observers the host was built with, and the channels of [`Host::subscribe`](crate::Host::subscribe).
pub(crate) struct Subscribers {
    observers: Vec<Box<dyn Observer>>,
    channels: Mutex<Vec<Sender<Event>>>,
}

impl Subscribers {
    pub(crate) fn new(observers: Vec<Box<dyn Observer>>) -> Subscribers {
        Subscribers { observers, channels: Mutex::default() }
    }

    fn send(&self, event: Event) {
        for observer in &self.observers {
            let observed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| observer.on_event(&event)));
            if observed.is_err() {
                tracing::error!(plugin = %event.plugin, "an event observer panicked on: {event}");
            }
        }
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.retain(|channel| channel.send(event.clone()).is_ok());
    }
}

struct SlotStatus {
    state: PluginState,
    reason: Option<String>,
    reload_error: Option<String>,
    manifest: PathBuf,
    version: String,
    applied: Option<Applied>,
    /// The manifest and library of the last load that failed with nothing serving: not retried unchanged.
    failed_attempt: Option<(Manifest, Option<FileStamp>)>,
    /// The manifest and library of the last refused reload: not retried unchanged.
    refused_attempt: Option<(Manifest, Option<FileStamp>)>,
    retired: u64,
    /// Every library loaded for this plugin: digest -> bytes.
    libraries: BTreeMap<String, u64>,
    /// When its current generation was swapped in, in the registry's order (for shutdown in reverse).
    activated: u64,
    /// The health checks of the serving generation.
    health: HealthTrack,
}

struct Slot {
    name: PluginName,
    current: ArcSwapOption<Generation>,
    /// Counts the changes of `current`, raised after each one: a [`LocalTyped`] whose cached generation was
    /// taken at this count may go on using it.
    epoch: AtomicU64,
    status: Mutex<SlotStatus>,
    generations: AtomicU64,
    subscribers: Arc<Subscribers>,
    /// Calls in flight, counted while the serving generation has a bulkhead: on a cache line of its own, so
    /// that counting never slows the reads of `current` and `epoch` every call makes.
    in_flight: CachePadded<AtomicU32>,
    /// Calls the bulkhead refused.
    overloaded: AtomicU64,
    /// Calls the rate limit refused.
    rate_limited: AtomicU64,
    /// Calls past their supervision deadline, as the supervisor's last pass counted them.
    stuck: AtomicU32,
    /// Calls that ran past their supervision deadline.
    timeouts: AtomicU64,
    /// The threads that run calls with a caller's deadline, and health checks.
    pool: Arc<Pool>,
}

/// A call admitted by the bulkhead, counted in flight until it is dropped (a panic included).
struct Permit<'a>(&'a AtomicU32);

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a generation checks around each call, built from its manifest.
pub(crate) struct Supervision {
    /// `[limits] max_concurrent_calls`: calls in flight are counted in the slot (across generations) and
    /// refused past it.
    pub bulkhead: Option<NonZeroU32>,
    /// `[breaker]`: this generation's circuit breaker.
    pub breaker: Option<CircuitBreaker>,
    /// `[limits] calls_per_second` and `burst`: this generation's rate limiter.
    #[cfg(feature = "rate-limit")]
    pub rate: Option<RateLimit>,
    /// `[limits] call_timeout` (or the host's default): calls are watched against it.
    pub deadline: Option<Timeout>,
}

/// A rate limiter (governor's GCRA: one atomic per check) and the limit it applies.
#[cfg(feature = "rate-limit")]
pub(crate) struct RateLimit {
    limiter: governor::DefaultDirectRateLimiter,
    per_second: NonZeroU32,
    burst: NonZeroU32,
}

impl Supervision {
    /// What `manifest` asks for (with `call_timeout`, the host's default deadline); `None` when nothing.
    /// Refuses limits this host cannot apply.
    pub(crate) fn of(
        manifest: &Manifest,
        call_timeout: Option<Duration>,
    ) -> Result<Option<Box<Supervision>>, LoadError> {
        let limits = &manifest.limits;
        let refuse_in = |table, reason: &str| Err(LoadError::Limits { table, reason: reason.to_owned() });
        let refuse = |reason: &str| refuse_in("[limits]", reason);
        let refuse_health = |reason: &str| refuse_in("[health]", reason);
        if limits.burst.is_some() && limits.calls_per_second.is_none() {
            return refuse("burst applies to calls_per_second, which is not set; set the rate too, or remove burst");
        }
        let deadline = limits.call_timeout.or(call_timeout);
        if deadline.is_some_and(|timeout| timeout < Duration::from_millis(1)) {
            return refuse("call_timeout must be at least 1ms; raise it, or remove it to watch no deadline");
        }
        // Longer than a day is a mistake, and far-future instants overflow the clock's arithmetic.
        let too_long = |duration: Option<Duration>| duration.is_some_and(|d| d > MAX_SUPERVISION_DURATION);
        if too_long(deadline) {
            return refuse("call_timeout must be at most 24h; lower it, or remove it to watch no deadline");
        }
        if let Some(checks) = &manifest.health {
            if checks.interval < Duration::from_millis(10) {
                return refuse_health("interval must be at least 10ms; raise it, or remove [health]");
            }
            if checks.timeout < Duration::from_millis(1) {
                return refuse_health("timeout must be at least 1ms; raise it, or remove it for the default (1s)");
            }
            if too_long(Some(checks.interval)) || too_long(Some(checks.timeout)) {
                return refuse_health("interval and timeout must be at most 24h; lower them");
            }
        }
        if let Some(breaker) = &manifest.breaker
            && (too_long(breaker.window) || too_long(Some(breaker.cool_down)))
        {
            return refuse_in("[breaker]", "window and cool_down must be at most 24h; lower them");
        }
        #[cfg(not(feature = "rate-limit"))]
        if limits.calls_per_second.is_some() {
            return refuse(
                "calls_per_second needs a host built with berth's `rate-limit` feature (on by default); rebuild the host with it, or remove the limit",
            );
        }
        #[cfg(feature = "rate-limit")]
        let rate = limits.calls_per_second.map(|per_second| {
            let burst = limits.burst.unwrap_or(per_second);
            let quota = governor::Quota::per_second(per_second).allow_burst(burst);
            RateLimit { limiter: governor::RateLimiter::direct(quota), per_second, burst }
        });
        #[cfg(not(feature = "rate-limit"))]
        let rate: Option<()> = None;
        let bulkhead = limits.max_concurrent_calls;
        // Failing health checks fault the plugin through a breaker: one that calls alone never trip, when the
        // manifest has none.
        let health_breaker = manifest
            .health
            .filter(|checks| checks.on_failing == OnFailing::Fault)
            .map(|checks| Breaker { failures: NonZeroU32::MAX, window: None, cool_down: checks.interval });
        let breaker = manifest.breaker.or(health_breaker).map(CircuitBreaker::new);
        if bulkhead.is_none() && breaker.is_none() && rate.is_none() && deadline.is_none() {
            return Ok(None);
        }
        Ok(Some(Box::new(Supervision {
            bulkhead,
            breaker,
            #[cfg(feature = "rate-limit")]
            rate,
            deadline: deadline.map(Timeout::new),
        })))
    }
}

/// The longest duration a manifest's supervision tables accept.
const MAX_SUPERVISION_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The rate limit (calls a second) `supervision` applies, if any.
fn rate_of(supervision: Option<&Supervision>) -> Option<u32> {
    #[cfg(feature = "rate-limit")]
    return supervision.and_then(|s| s.rate.as_ref()).map(|rate| rate.per_second.get());
    #[cfg(not(feature = "rate-limit"))]
    return supervision.and(None);
}

/// Runs `call` (of `what`: a method, an interface) on `generation` under `supervision`: through the rate
/// limit and the bulkhead (counted in flight, or refused at once), then the breaker (refused while open; the
/// call after the cool-down is its probe), watched against the deadline; records the outcome with the
/// breaker. A call to a plugin with no supervision never enters it: it pays one branch on its generation.
/// (Inlined: measured, that neither changes the unsupervised calls nor costs the breaker's `LocalTyped` path
/// 3 ns of call overhead.)
#[inline]
fn supervised<R>(
    slot: &Slot,
    generation: &Generation,
    supervision: &Supervision,
    what: Name<'_>,
    call: impl FnOnce() -> Result<R, CallError>,
) -> Result<R, CallError> {
    #[cfg(feature = "rate-limit")]
    if let Some(rate) = &supervision.rate
        && rate.limiter.check().is_err()
    {
        slot.rate_limited.fetch_add(1, Ordering::Relaxed);
        let (plugin, per_second, burst) = (slot.name.to_string(), rate.per_second.get(), rate.burst.get());
        return Err(CallError::RateLimited { plugin, per_second, burst });
    }
    let _permit = supervision.bulkhead.map(|limit| slot.enter(limit)).transpose()?;
    let probe = match supervision.breaker.as_ref().map(CircuitBreaker::admit) {
        None | Some(Admit::Closed) => false,
        Some(Admit::Probe) => true,
        Some(Admit::Refused { reason, retry_at }) => {
            return Err(CallError::Faulted { plugin: slot.name.to_string(), reason, retry_at });
        }
    };
    let result = match supervision.deadline {
        None => call(),
        Some(timeout) => {
            let watched = deadline::enter(slot.key(), generation.number, timeout, what);
            let result = call();
            if let Outcome::Overran { after, counted } = watched.finish() {
                return Err(slot.overran(generation, supervision, what.text(), after, counted, probe));
            }
            result
        }
    };
    let Some(breaker) = &supervision.breaker else { return result };
    let failure = match &result {
        Err(CallError::Plugin { message, .. }) => Some(message.as_str()),
        Err(CallError::Crashed { reason, .. }) => Some(reason.as_str()),
        _ => None,
    };
    slot.breaker_recorded(generation, breaker.record(failure, probe));
    result
}

impl Slot {
    /// A call of `what` that returned `after` its deadline: its caller gets a timeout, and the overrun counts
    /// (unless the supervisor's pass counted it while it ran).
    #[cold]
    fn overran(
        &self,
        generation: &Generation,
        supervision: &Supervision,
        what: &str,
        after: Duration,
        counted: bool,
        probe: bool,
    ) -> CallError {
        if !counted {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(breaker) = supervision.breaker.as_ref().filter(|_| probe || !counted) {
            let reason = format!("call {what:?} took {} ms, past its call_timeout", after.as_millis());
            self.breaker_recorded(generation, breaker.record(Some(&reason), probe));
        }
        CallError::Timeout { plugin: self.name.to_string(), method: what.to_owned(), after }
    }

    /// Reports what a call's outcome did to the breaker.
    #[inline]
    fn breaker_recorded(&self, generation: &Generation, transition: Transition) {
        match transition {
            Transition::None => {}
            Transition::Opened(reason) => self.faulted(generation.number, reason),
            Transition::Closed => self.recovered(generation.number, "the probe call succeeded".to_owned()),
        }
    }

    /// Counts a call in flight, or refuses it at once when `limit` calls are in flight already; the call is
    /// counted until the permit drops.
    #[inline]
    fn enter(&self, limit: NonZeroU32) -> Result<Permit<'_>, CallError> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= limit.get() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.overloaded.fetch_add(1, Ordering::Relaxed);
            return Err(CallError::Overloaded { plugin: self.name.to_string(), limit: limit.get() });
        }
        Ok(Permit(&self.in_flight))
    }

    fn status(&self) -> std::sync::MutexGuard<'_, SlotStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, kind: EventKind, state: PluginState, generation: Option<u64>, version: String, detail: String) {
        let event = Event { plugin: self.name.clone(), kind, state, generation, version, detail };
        match event.kind {
            EventKind::Failed
            | EventKind::ReloadFailed
            | EventKind::Unwatched
            | EventKind::Faulted
            | EventKind::Crashed => {
                tracing::warn!(plugin = %self.name, "{event}")
            }
            EventKind::Progress => tracing::debug!(plugin = %self.name, "{event}"),
            _ => tracing::info!(plugin = %self.name, "{event}"),
        }
        self.subscribers.send(event);
    }

    /// Swaps `generation` in (or nothing) and counts the one it replaces as retired.
    fn replace(&self, generation: Option<Arc<Generation>>) -> Option<Arc<Generation>> {
        let previous = self.current.swap(generation);
        self.changed(previous.is_some());
        previous
    }

    /// Takes `generation` out of service if it is still the one serving; whether it was.
    fn take_out(&self, generation: &Arc<Generation>) -> bool {
        let previous = self.current.compare_and_swap(generation, None);
        let taken = previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, generation));
        if taken {
            self.changed(true);
        }
        taken
    }

    /// After every change of `current`: raises `epoch` and counts a generation that stopped serving.
    fn changed(&self, retired: bool) {
        self.epoch.fetch_add(1, Ordering::Release);
        if retired {
            self.status().retired += 1;
        }
    }

    /// Moves to `state`. Failed, Disabled, Removed and Retired take the serving generation (if any) out of
    /// service; calls in flight finish on it.
    fn transition(&self, state: PluginState, detail: String) {
        {
            // The same failure again (a plugin waiting for a dependency, looked at on every rescan): no event.
            let status = self.status();
            if state == PluginState::Failed && status.state == state && status.reason.as_deref() == Some(&detail) {
                return;
            }
        }
        let previous = if stops(state) { self.replace(None) } else { None };
        // What the manifest now says supersedes a refusal of the files before (a disable by failing health
        // checks included): `berth disable` and `berth enable` bring such a plugin back.
        self.status().failed_attempt = None;
        self.record(state, previous.as_ref().map(|g| g.number), detail);
    }

    /// Records `state` and sends its event, without touching the serving generation.
    fn record(&self, state: PluginState, generation: Option<u64>, detail: String) {
        let version = {
            let mut status = self.status();
            status.state = state;
            status.reason = stops(state).then(|| detail.clone());
            if stops(state) {
                status.applied = None;
                status.reload_error = None;
                status.refused_attempt = None;
            }
            status.version.clone()
        };
        let kind = match state {
            PluginState::Failed => EventKind::Failed,
            PluginState::Disabled => EventKind::Disabled,
            PluginState::Removed => EventKind::Removed,
            PluginState::Retired => EventKind::Retired,
            _ => EventKind::Progress,
        };
        self.emit(kind, state, generation, version, detail);
    }

    /// The breaker of generation `number` opened: the plugin is `Faulted` while it serves from that
    /// generation (a plugin failed or replaced meanwhile stays as it is).
    #[cold]
    fn faulted(&self, number: u64, reason: String) {
        let from = |state| matches!(state, PluginState::Active | PluginState::Degraded | PluginState::Faulted);
        self.breaker_moved(number, from, PluginState::Faulted, Some(reason.clone()), EventKind::Faulted, reason);
    }

    /// What the worker of generation `number` reports, as events: a crash degrades the plugin until the
    /// restart; a worker that cannot be restarted takes the generation out of service.
    fn worker_event(&self, number: u64, event: WorkerEvent) {
        let serving = |state| matches!(state, PluginState::Active | PluginState::Degraded);
        match event {
            WorkerEvent::Crashed { pid, reason, restart_in } => {
                let detail = format!("worker process {pid} {reason}; restarting it in {} ms", restart_in.as_millis());
                self.breaker_moved(
                    number,
                    serving,
                    PluginState::Degraded,
                    Some(detail.clone()),
                    EventKind::Crashed,
                    detail,
                );
            }
            WorkerEvent::Restarted { pid } => {
                let detail = format!("worker process {pid} serves");
                let degraded = |state| state == PluginState::Degraded;
                self.breaker_moved(number, degraded, PluginState::Active, None, EventKind::Restarted, detail);
            }
            WorkerEvent::GaveUp { reason } => {
                let Some(current) = self.current.load_full().filter(|g| g.number == number) else { return };
                if self.take_out(&current) {
                    self.record(PluginState::Failed, Some(number), format!("generation {number}: {reason}"));
                }
            }
        }
    }

    /// The breaker of generation `number` closed: a `Faulted` plugin serves again.
    #[cold]
    fn recovered(&self, number: u64, detail: String) {
        let from = |state| state == PluginState::Faulted;
        self.breaker_moved(number, from, PluginState::Active, None, EventKind::Recovered, detail);
    }

    /// Moves the plugin to `state` (with `reason`) and reports `kind`, when generation `number` still serves
    /// and the plugin's state is one `from` accepts.
    fn breaker_moved(
        &self,
        number: u64,
        from: impl Fn(PluginState) -> bool,
        state: PluginState,
        reason: Option<String>,
        kind: EventKind,
        detail: String,
    ) {
        if !self.is_current(number) {
            return;
        }
        let version = {
            let mut status = self.status();
            if !from(status.state) {
                return;
            }
            status.state = state;
            status.reason = reason;
            status.version.clone()
        };
        self.emit(kind, state, Some(number), version, detail);
    }

    fn is_current(&self, number: u64) -> bool {
        self.current.load().as_ref().is_some_and(|current| current.number == number)
    }

    fn not_active(&self) -> CallError {
        let status = self.status();
        CallError::NotActive {
            plugin: self.name.to_string(),
            state: status.state,
            reason: status.reason.clone().unwrap_or_else(|| "not loaded".to_owned()),
        }
    }
}

/// The plugins a host knows.
pub(crate) struct Registry {
    slots: RwLock<BTreeMap<PluginName, Arc<Slot>>>,
    subscribers: Arc<Subscribers>,
    activations: AtomicU64,
    /// Libraries opened by the walk under way, for generations it has yet to put in service (a first load
    /// activates every plugin at the end): not counted as retired meanwhile.
    pending: Mutex<BTreeSet<String>>,
}

impl Registry {
    /// A registry whose events go to `subscribers`.
    pub(crate) fn new(subscribers: Subscribers) -> Registry {
        Registry {
            slots: RwLock::default(),
            subscribers: Arc::new(subscribers),
            activations: AtomicU64::new(0),
            pending: Mutex::default(),
        }
    }

    pub(crate) fn subscribe(&self) -> Receiver<Event> {
        let (sender, receiver) = mpsc::channel();
        self.subscribers.channels.lock().unwrap_or_else(|e| e.into_inner()).push(sender);
        receiver
    }

    fn get(&self, name: &PluginName) -> Option<Arc<Slot>> {
        self.slots.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    fn slot(&self, manifest: &Manifest) -> Arc<Slot> {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(manifest.name.clone()).or_insert_with(|| {
            Arc::new(Slot {
                name: manifest.name.clone(),
                current: ArcSwapOption::empty(),
                epoch: AtomicU64::new(0),
                status: Mutex::new(SlotStatus {
                    state: PluginState::Discovered,
                    reason: None,
                    reload_error: None,
                    manifest: manifest.path.clone(),
                    version: manifest.version.to_string(),
                    applied: None,
                    failed_attempt: None,
                    refused_attempt: None,
                    retired: 0,
                    libraries: BTreeMap::new(),
                    activated: 0,
                    health: HealthTrack::default(),
                }),
                generations: AtomicU64::new(0),
                subscribers: Arc::clone(&self.subscribers),
                in_flight: CachePadded::new(AtomicU32::new(0)),
                overloaded: AtomicU64::new(0),
                rate_limited: AtomicU64::new(0),
                stuck: AtomicU32::new(0),
                timeouts: AtomicU64::new(0),
                pool: Arc::new(Pool::new(format!("berth-{}", manifest.name))),
            })
        });
        Arc::clone(slot)
    }

    /// Moves the known plugin `name` to an end state (see `Slot::transition`).
    pub(crate) fn transition_named(&self, name: &PluginName, state: PluginState, detail: String) {
        if let Some(slot) = self.get(name) {
            slot.transition(state, detail);
        }
    }

    /// Records a step or an end state of the plugin `manifest` describes (creating its entry when new).
    pub(crate) fn transition(&self, manifest: &Manifest, state: PluginState, detail: String) {
        let slot = self.slot(manifest);
        if slot.current.load().is_none() {
            let mut status = slot.status();
            status.manifest = manifest.path.clone();
            status.version = manifest.version.to_string();
        }
        slot.transition(state, detail);
    }

    /// Records that loading `manifest`'s library (`stamp`) failed with nothing serving, so that the same
    /// files are not tried again until one of them changes.
    pub(crate) fn record_failed_attempt(&self, manifest: &Manifest, stamp: Option<FileStamp>) {
        self.slot(manifest).status().failed_attempt = Some((manifest.clone(), stamp));
    }

    /// Whether a failed attempt of this plugin is on record (not to be retried unchanged).
    pub(crate) fn has_failed_attempt(&self, name: &PluginName) -> bool {
        self.get(name).is_some_and(|slot| slot.status().failed_attempt.is_some())
    }

    /// Whether the last load of this plugin failed on exactly this manifest and library.
    pub(crate) fn failed_before(&self, manifest: &Manifest, stamp: Option<FileStamp>) -> bool {
        self.get(&manifest.name).is_some_and(|slot| {
            let status = slot.status();
            // Failed, or disabled by failing health checks: not retried unchanged.
            matches!(status.state, PluginState::Failed | PluginState::Disabled)
                && status.failed_attempt.as_ref().is_some_and(|(m, s)| m == manifest && *s == stamp)
        })
    }

    /// Records that a library (digest, bytes) of this plugin is mapped: libraries are never unloaded.
    /// Until the pass that built it ends ([`Registry::pass_ended`]), it counts as about to serve, not retired.
    pub(crate) fn record_library(&self, manifest: &Manifest, sha256: &str, bytes: u64) {
        self.slot(manifest).status().libraries.insert(sha256.to_owned(), bytes);
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(sha256.to_owned());
    }

    /// The walk that opened libraries is over: those it opened and did not put in service count as retired.
    pub(crate) fn pass_ended(&self) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Whether the last reload of this plugin was refused on exactly this manifest and library.
    pub(crate) fn refused_before(&self, manifest: &Manifest, stamp: Option<FileStamp>) -> bool {
        self.get(&manifest.name).is_some_and(|slot| {
            slot.status().refused_attempt.as_ref().is_some_and(|(m, s)| m == manifest && *s == stamp)
        })
    }

    /// The next generation number for this plugin.
    pub(crate) fn next_generation(&self, manifest: &Manifest) -> u64 {
        self.slot(manifest).generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Where the worker of generation `number` of `manifest`'s plugin reports its crashes and restarts.
    pub(crate) fn worker_events(&self, manifest: &Manifest, number: u64) -> Arc<dyn Fn(WorkerEvent) + Send + Sync> {
        let slot = Arc::downgrade(&self.slot(manifest));
        Arc::new(move |event| {
            if let Some(slot) = slot.upgrade() {
                slot.worker_event(number, event);
            }
        })
    }

    /// The generation serving `name`, if any.
    pub(crate) fn serving(&self, name: &PluginName) -> Option<Arc<Generation>> {
        self.get(name).and_then(|slot| slot.current.load_full())
    }

    /// The manifest the serving generation of `name` runs with, and its library as last seen.
    pub(crate) fn applied(&self, name: &PluginName) -> Option<Applied> {
        self.get(name).and_then(|slot| slot.status().applied.clone())
    }

    /// The state of `name` and the manifest path it was last seen at, for every plugin known.
    pub(crate) fn known(&self) -> Vec<(PluginName, PluginState, PathBuf)> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots
            .values()
            .map(|slot| {
                let status = slot.status();
                (slot.name.clone(), status.state, status.manifest.clone())
            })
            .collect()
    }

    /// Reports to every plugin found under the plugin directory `dir` that the directory is gone (`back`
    /// false) or watched again: an [`EventKind::Unwatched`] or [`EventKind::Watched`] event each, with
    /// `detail`. Nothing changes state.
    #[cfg_attr(not(feature = "watch"), allow(dead_code))]
    pub(crate) fn directory_watch(&self, dir: &Path, back: bool, detail: &str) {
        let slots: Vec<Arc<Slot>> = {
            let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
            slots.values().filter(|slot| slot.status().manifest.starts_with(dir)).cloned().collect()
        };
        for slot in slots {
            let (state, version) = {
                let status = slot.status();
                (status.state, status.version.clone())
            };
            let generation = slot.current.load().as_ref().map(|g| g.number);
            let kind = if back { EventKind::Watched } else { EventKind::Unwatched };
            slot.emit(kind, state, generation, version, detail.to_owned());
        }
    }

    /// The serving plugins that depend on `name`, with their requirement on it (one pass, one lock).
    pub(crate) fn serving_dependents(&self, name: &PluginName) -> Vec<(PluginName, semver::VersionReq)> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots
            .values()
            .filter_map(|slot| {
                let current = slot.current.load();
                let requirement = current.as_ref()?.manifest.dependencies.get(name)?.clone();
                Some((slot.name.clone(), requirement))
            })
            .collect()
    }

    /// Every plugin's retired generations and the bytes of the libraries no serving generation uses.
    pub(crate) fn retired_total(&self) -> Retired {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        let mut serving = self.pending.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut libraries = BTreeMap::new();
        let mut generations = 0;
        for slot in slots.values() {
            if let Some(current) = slot.current.load().as_ref() {
                serving.insert(current.sha256.clone());
            }
            let status = slot.status();
            generations += status.retired;
            libraries.extend(status.libraries.iter().map(|(sha, bytes)| (sha.clone(), *bytes)));
        }
        let retired: Vec<u64> =
            libraries.iter().filter(|(sha, _)| !serving.contains(*sha)).map(|(_, bytes)| *bytes).collect();
        Retired { generations, images: retired.len() as u64, bytes: retired.iter().sum() }
    }

    /// Whether a library with these bytes (`sha256`) is mapped already, for any plugin: loading it again maps
    /// nothing more (the private copy is content-addressed, and the loader returns the image it has).
    pub(crate) fn is_mapped(&self, sha256: &str) -> bool {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots.values().any(|slot| slot.status().libraries.contains_key(sha256))
    }

    /// Makes `generation` the one that serves its plugin; the one it replaces (if any) is retired. (If the
    /// generation a reload started from panicked meanwhile, the new one still comes in, reported as loaded.)
    pub(crate) fn activate(&self, generation: Generation) {
        let slot = self.slot(&generation.manifest);
        let (number, version) = (generation.number, generation.manifest.version.to_string());
        let handed_over = generation
            .handed_over
            .map(|took| format!("; state handed over in {} µs", took.as_micros()))
            .unwrap_or_default();
        let detail = format!(
            "sha256 {} from {}; {}{handed_over}",
            generation.sha256,
            generation.manifest.path.display(),
            generation.trust
        );
        {
            let mut status = slot.status();
            status.applied = Some(Applied { manifest: generation.manifest.clone(), stamp: generation.stamp });
            status.manifest = generation.manifest.path.clone();
            status.version = version.clone();
            status.state = PluginState::Active;
            status.reason = None;
            status.reload_error = None;
            status.failed_attempt = None;
            status.refused_attempt = None;
            status.activated = self.activations.fetch_add(1, Ordering::Relaxed) + 1;
            status.health = HealthTrack::default();
        }
        let previous = slot.replace(Some(Arc::new(generation)));
        let kind = match &previous {
            Some(previous) => EventKind::Reloaded {
                from_version: previous.manifest.version.to_string(),
                from_generation: previous.number,
            },
            None => EventKind::Loaded,
        };
        drop(previous);
        slot.emit(kind, PluginState::Active, Some(number), version, detail);
    }

    /// Reports a refused reload of `name` (of `attempt`: the manifest and library refused, not to be tried
    /// again unchanged); its serving generation keeps serving.
    pub(crate) fn reload_failed(
        &self,
        name: &PluginName,
        attempt: Option<(Manifest, Option<FileStamp>)>,
        reason: String,
    ) {
        let Some(slot) = self.get(name) else { return };
        let (generation, version) = {
            let current = slot.current.load();
            let mut status = slot.status();
            if status.reload_error.as_ref() == Some(&reason) {
                // Already reported (an invalid manifest looked at again).
                return;
            }
            status.reload_error = Some(reason.clone());
            status.refused_attempt = attempt;
            (current.as_ref().map(|g| g.number), current.as_ref().map(|g| g.manifest.version.to_string()))
        };
        slot.emit(EventKind::ReloadFailed, PluginState::Active, generation, version.unwrap_or_default(), reason);
    }

    /// Records that the serving generation of `applied.manifest.name` now runs with `applied` (its new
    /// `[config]` applied, its library touched but unchanged, or only a description changed); `event` says
    /// whether to report a reconfiguration.
    pub(crate) fn applied_in_place(&self, applied: Applied, event: bool) {
        let slot = self.slot(&applied.manifest);
        let generation = slot.current.load().as_ref().map(|g| g.number);
        let (path, version) = (applied.manifest.path.clone(), applied.manifest.version.to_string());
        let was_refused = {
            let mut status = slot.status();
            status.applied = Some(applied);
            status.manifest = path.clone();
            status.refused_attempt = None;
            status.reload_error.take().is_some()
        };
        if event {
            // A new config is a fresh start for the breaker.
            let current = slot.current.load_full();
            if let Some((number, breaker)) =
                current.as_ref().and_then(|g| Some((g.number, g.supervision.as_ref()?.breaker.as_ref()?)))
            {
                breaker.close();
                slot.recovered(number, format!("[config] changed in {}", path.display()));
            }
            let detail = format!("[config] from {}", path.display());
            slot.emit(EventKind::Reconfigured, PluginState::Active, generation, version, detail);
        } else if was_refused {
            let detail = format!("{} is valid again and matches what serves", path.display());
            slot.emit(EventKind::Restored, PluginState::Active, generation, version, detail);
        }
    }

    pub(crate) fn handle(&self, name: &str) -> Result<PluginHandle, CallError> {
        let slot = PluginName::new(name).ok().and_then(|name| self.get(&name));
        slot.map(|slot| PluginHandle { slot }).ok_or_else(|| CallError::UnknownPlugin(name.to_owned()))
    }

    pub(crate) fn statuses(&self) -> Vec<PluginStatus> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots
            .values()
            .map(|slot| {
                let current = slot.current.load_full();
                let supervision = current.as_ref().and_then(|g| g.supervision.as_deref());
                let retired = retired_of(slot);
                let status = slot.status();
                PluginStatus {
                    name: slot.name.clone(),
                    state: status.state,
                    reason: status.reason.clone(),
                    reload_error: status.reload_error.clone(),
                    manifest: status.manifest.clone(),
                    version: status.version.clone(),
                    generation: current.as_ref().map(|g| g.number),
                    library: current.as_ref().map(|g| g.library.clone()),
                    sha256: current.as_ref().map(|g| g.sha256.clone()),
                    trust: current.as_ref().map(|g| g.trust.clone()),
                    retired_generations: retired.generations,
                    retired_images: retired.images,
                    retired_bytes: retired.bytes,
                    max_concurrent_calls: supervision.and_then(|s| s.bulkhead).map(NonZeroU32::get),
                    breaker: supervision.and_then(|s| s.breaker.as_ref()).map(CircuitBreaker::status),
                    calls_per_second: rate_of(supervision),
                    rate_limited: slot.rate_limited.load(Ordering::Relaxed),
                    in_flight: slot.in_flight.load(Ordering::Acquire),
                    overloaded: slot.overloaded.load(Ordering::Relaxed),
                    call_timeout: supervision.and_then(|s| s.deadline).map(Timeout::duration),
                    stuck: slot.stuck.load(Ordering::Relaxed),
                    timeouts: slot.timeouts.load(Ordering::Relaxed),
                    call_threads: slot.pool.threads(),
                    health: current.as_ref().and_then(|g| g.manifest.health).map(|_| status.health.report()),
                    worker: current.as_ref().and_then(|g| match &g.instance {
                        Instance::Isolated(worker) => Some(worker.status()),
                        Instance::InProcess(_) => None,
                    }),
                }
            })
            .collect()
    }

    /// Takes every plugin out of service, dependents before what they depend on (among plugins that do not
    /// depend on each other, the last activated first); each generation shuts down when its last call
    /// returns.
    pub(crate) fn shutdown(&self) {
        let mut slots: Vec<Arc<Slot>> =
            self.slots.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        slots.sort_by_key(|slot| std::cmp::Reverse(slot.status().activated));
        while !slots.is_empty() {
            let needed: BTreeSet<PluginName> = slots
                .iter()
                .filter_map(|slot| slot.current.load_full())
                .flat_map(|generation| generation.manifest.dependencies.keys().cloned().collect::<Vec<_>>())
                .collect();
            // In a cycle (refused at load, so only after odd edits) every plugin is needed: take the first.
            let next = slots.iter().position(|slot| !needed.contains(&slot.name)).unwrap_or(0);
            let slot = slots.remove(next);
            if slot.current.load().is_some() {
                slot.transition(PluginState::Retired, "host shut down".to_owned());
            }
        }
    }
}

/// Whether `state` takes a plugin out of service.
fn stops(state: PluginState) -> bool {
    matches!(state, PluginState::Failed | PluginState::Disabled | PluginState::Removed | PluginState::Retired)
}

fn retired_of(slot: &Slot) -> Retired {
    let current = slot.current.load();
    let serving = current.as_ref().map(|g| g.sha256.as_str());
    let status = slot.status();
    let retired: Vec<u64> =
        status.libraries.iter().filter(|(sha, _)| Some(sha.as_str()) != serving).map(|(_, b)| *b).collect();
    Retired { generations: status.retired, images: retired.len() as u64, bytes: retired.iter().sum() }
}

/// A caller's handle on one plugin: cheap to clone, `Send + Sync`, and always reaching the plugin's current
/// generation.
#[derive(Clone)]
pub struct PluginHandle {
    slot: Arc<Slot>,
}

/// A plugin's extension interface `I` that follows hot reloads (from [`PluginHandle::typed`]): cheap to clone,
/// `Send + Sync`.
///
/// ```no_run
/// # fn demo(host: &berth::Host) -> Result<(), Box<dyn std::error::Error>> {
/// use berth::ext::text_filter::TextFilterV1;
///
/// let filters = host.plugin("text-filters")?.typed::<TextFilterV1>();
/// let shouted = filters.call(|filters| filters.apply("upper", "hello"))?;
/// assert_eq!(shouted, "HELLO");
/// # Ok(()) }
/// ```
pub struct Typed<I> {
    plugin: PluginHandle,
    /// `I::ID`, interned: what a supervision deadline's record names.
    id: u32,
    interface: PhantomData<fn() -> I>,
}

impl<I> Clone for Typed<I> {
    fn clone(&self) -> Self {
        Typed { plugin: self.plugin.clone(), id: self.id, interface: PhantomData }
    }
}

impl<I> Typed<I>
where
    I: Interface + 'static,
    I::Handle: Send + Sync + 'static,
{
    /// Calls an interface method (`f` returns its result) on the generation serving now; a hot reload never
    /// interrupts a call.
    ///
    /// Refused with [`CallError::NotActive`] when the plugin is not serving, and with [`CallError::Extension`]
    /// when the serving generation does not provide `I` or built it with another layout. The method's error
    /// comes back as [`CallError::Plugin`]; a panic too, and it marks the plugin failed, as
    /// [`PluginHandle::call`] does.
    #[inline]
    pub fn call<T>(&self, f: impl FnOnce(&I::Handle) -> Result<T, PluginError>) -> Result<T, CallError> {
        let current = self.plugin.slot.current.load();
        let generation = current.as_ref().ok_or_else(|| self.plugin.slot.not_active())?;
        if let Some(supervision) = &generation.supervision {
            return supervised(&self.plugin.slot, generation, supervision, self.name(), || self.call_on(generation, f));
        }
        self.call_on(generation, f)
    }

    /// How a deadline's record names this interface's calls.
    #[inline]
    fn name(&self) -> Name<'static> {
        Name::Interface { id: self.id, text: I::ID }
    }

    #[inline(always)]
    fn call_on<T>(
        &self,
        generation: &Arc<Generation>,
        f: impl FnOnce(&I::Handle) -> Result<T, PluginError>,
    ) -> Result<T, CallError> {
        generation.with_resolved::<I, _>(|resolved| resolved.call(&self.plugin, generation, f))
    }

    /// Runs `f` with the interface of the generation serving now, for what [`Typed::call`] does not fit (a
    /// method that cannot fail, several calls on one generation).
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&I::Handle) -> R) -> Result<R, CallError> {
        let current = self.plugin.slot.current.load();
        let generation = current.as_ref().ok_or_else(|| self.plugin.slot.not_active())?;
        let with = || generation.with_resolved::<I, _>(|resolved| resolved.with(&self.plugin, f));
        match &generation.supervision {
            None => with(),
            Some(supervision) => supervised(&self.plugin.slot, generation, supervision, self.name(), with),
        }
    }

    /// The plugin this is an interface of.
    pub fn plugin(&self) -> &PluginHandle {
        &self.plugin
    }

    /// A handle for one thread's hot path: the same calls, without an atomic read-modify-write per call (see
    /// [`LocalTyped`]).
    pub fn local(&self) -> LocalTyped<I> {
        LocalTyped { typed: self.clone(), cached: Cell::new(None), epoch: Cell::new(0) }
    }
}

/// A [`Typed`] interface for one thread (from [`Typed::local`]): `Send`, not `Sync`; give each thread its own.
///
/// A [`Typed`] protects each call with `arc-swap`'s per-thread hazard slot, two atomic read-modify-writes. A
/// `LocalTyped` keeps the generation it last called and, on each call, only reads the plugin's swap counter
/// (never written by callers, so threads do not contend) to see whether a reload, a fault or a disable
/// replaced it. The price: the generation it last called stays alive, and is shut down, only when this handle
/// next calls or is dropped. Hold a `LocalTyped` in a thread that calls often, not in one that idles.
pub struct LocalTyped<I: Interface> {
    typed: Typed<I>,
    /// The generation last called (kept alive while this handle may call it again) and its interface.
    cached: Cell<Option<Pinned<I>>>,
    epoch: Cell<u64>,
}

/// A generation and its interface `I`, held by a [`LocalTyped`].
type Pinned<I> = (Arc<Generation>, Arc<Resolved<I>>);

impl<I> LocalTyped<I>
where
    I: Interface + 'static,
    I::Handle: Send + Sync + 'static,
{
    /// Calls an interface method on the generation serving now, as [`Typed::call`] does.
    #[inline]
    pub fn call<T>(&self, f: impl FnOnce(&I::Handle) -> Result<T, PluginError>) -> Result<T, CallError> {
        let (generation, resolved) = self.current()?;
        let plugin = &self.typed.plugin;
        let result = match &generation.supervision {
            None => resolved.call(plugin, &generation, f),
            Some(supervision) => supervised(&plugin.slot, &generation, supervision, self.typed.name(), || {
                resolved.call(plugin, &generation, f)
            }),
        };
        self.cached.set(Some((generation, resolved)));
        result
    }

    /// Runs `f` with the interface of the generation serving now, as [`Typed::with`] does.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&I::Handle) -> R) -> Result<R, CallError> {
        let (generation, resolved) = self.current()?;
        let plugin = &self.typed.plugin;
        let result = match &generation.supervision {
            None => resolved.with(plugin, f),
            Some(supervision) => {
                supervised(&plugin.slot, &generation, supervision, self.typed.name(), || resolved.with(plugin, f))
            }
        };
        self.cached.set(Some((generation, resolved)));
        result
    }

    /// The plugin this is an interface of.
    pub fn plugin(&self) -> &PluginHandle {
        &self.typed.plugin
    }

    /// The generation serving now and its interface, taken out of the cache for the call (so a nested call
    /// through this handle finds nothing cached and loads its own); the caller puts them back.
    #[inline]
    fn current(&self) -> Result<Pinned<I>, CallError> {
        let epoch = self.typed.plugin.slot.epoch.load(Ordering::Acquire);
        match self.cached.take() {
            Some(cached) if self.epoch.get() == epoch => Ok(cached),
            _ => self.refresh(epoch),
        }
    }

    #[cold]
    fn refresh(&self, epoch: u64) -> Result<Pinned<I>, CallError> {
        let slot = &self.typed.plugin.slot;
        let generation = slot.current.load_full().ok_or_else(|| slot.not_active())?;
        let resolved = generation.shared_interface::<I>();
        self.epoch.set(epoch);
        Ok((generation, resolved))
    }
}

/// A plugin's answer to a health query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The status.
    pub status: HealthStatus,
    /// Why, when not `Ok`.
    pub detail: String,
}

impl PluginHandle {
    /// The plugin's name.
    pub fn name(&self) -> &PluginName {
        &self.slot.name
    }

    /// The plugin's state now.
    pub fn state(&self) -> PluginState {
        self.slot.status().state
    }

    /// The generation serving now, if any.
    pub fn generation(&self) -> Option<u64> {
        self.slot.current.load().as_ref().map(|g| g.number)
    }

    /// Calls `method` with `input` bytes.
    ///
    /// Refused with [`CallError::NotActive`] when the plugin is not serving. A plugin error comes back as
    /// [`CallError::Plugin`]; a panic too, and it also marks the plugin failed (its state may be broken), so
    /// later calls are refused until it is loaded again.
    pub fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallError> {
        let current = self.slot.current.load();
        let Some(generation) = current.as_ref() else {
            return Err(self.slot.not_active());
        };
        let call = || {
            let answer = generation.instance.call(method, input);
            answer.map_err(|error| self.failed_call(generation, &format!("call {method:?}"), error))
        };
        match &generation.supervision {
            None => call(),
            Some(supervision) => supervised(&self.slot, generation, supervision, Name::Method(method), call),
        }
    }

    /// Calls `method` with `request` encoded as JSON, and decodes the JSON answer.
    pub fn call_json<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        method: &str,
        request: &Req,
    ) -> Result<Resp, CallError> {
        let codec = |message: String| CallError::Codec { plugin: self.slot.name.to_string(), message };
        let input = serde_json::to_vec(request).map_err(|e| codec(format!("cannot encode the input: {e}")))?;
        let output = self.call(method, &input)?;
        serde_json::from_slice(&output)
            .map_err(|e| codec(format!("the answer to {method:?} is not the expected JSON: {e}")))
    }

    /// Asks the plugin how it is doing.
    pub fn health(&self) -> Result<Health, CallError> {
        let current = self.slot.current.load();
        let generation = current.as_ref().ok_or_else(|| self.slot.not_active())?;
        let (status, detail) =
            generation.instance.health().map_err(|failure| self.failed_call(generation, "health", failure))?;
        Ok(Health { status, detail })
    }

    /// The plugin's extension interface `I`, checked against the layout this host expects.
    ///
    /// Refused with [`CallError::Extension`] when the plugin does not provide it (an older plugin) or built
    /// it with another layout.
    pub fn extension<I: Interface>(&self) -> Result<I::Handle, CallError> {
        let current = self.slot.current.load();
        let generation = current.as_ref().ok_or_else(|| self.slot.not_active())?;
        generation.resolve::<I>().0.map_err(|reason| self.unusable(I::ID, &reason))
    }

    /// The plugin's extension interface `I` as a handle that follows hot reloads: every call reaches the
    /// generation serving at that moment, which stays alive until the call returns.
    ///
    /// The interface is resolved and layout-checked once per generation, on first use. A call then costs an
    /// arc-swap load (no shared counter, so threads do not contend) on top of the plugin's own; for one
    /// thread's hot path, [`Typed::local`] avoids even that.
    pub fn typed<I>(&self) -> Typed<I>
    where
        I: Interface + 'static,
        I::Handle: Send + Sync + 'static,
    {
        Typed { plugin: self.clone(), id: deadline::intern(I::ID), interface: PhantomData }
    }

    /// The refusal of interface `id`, which the serving generation does not provide or built with another
    /// layout.
    #[cold]
    fn unusable(&self, id: &str, reason: &str) -> CallError {
        CallError::Extension { plugin: self.slot.name.to_string(), id: id.to_owned(), reason: reason.to_owned() }
    }

    /// The error of a call (`what`) that `generation` answered with `error`; a panic takes the generation out of
    /// service.
    #[cold]
    fn failed_call(&self, generation: &Arc<Generation>, what: &str, failure: Failure) -> CallError {
        let plugin = self.slot.name.to_string();
        let error = match failure {
            Failure::Plugin(error) => error,
            Failure::Crashed(reason) => return CallError::Crashed { plugin, generation: generation.number, reason },
            Failure::Timeout(after) => return CallError::Timeout { plugin, method: what.to_owned(), after },
        };
        let message = error.message.into_string();
        if error.kind == ErrorKind::Panicked {
            self.fault(generation, &format!("panicked in {what}: {message}"));
        }
        CallError::Plugin { plugin, kind: error.kind, message }
    }

    /// Takes `generation` out of service after a panic (unless a newer one already replaced it).
    fn fault(&self, generation: &Arc<Generation>, reason: &str) {
        if self.slot.take_out(generation) {
            let detail = format!("generation {}: {reason}", generation.number);
            self.slot.record(PluginState::Failed, Some(generation.number), detail);
        }
    }
}

/// Why a call was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No plugin of that name is known.
    #[error("no plugin named {0:?} is known to this host")]
    UnknownPlugin(String),
    /// The plugin is known but not serving (failed, disabled...).
    #[error("plugin {plugin:?} is {state}: {reason}")]
    NotActive {
        /// The plugin.
        plugin: String,
        /// Its state.
        state: PluginState,
        /// Why it is in that state.
        reason: String,
    },
    /// The plugin answered with an error.
    #[error("plugin {plugin:?}: {kind:?}: {message}")]
    Plugin {
        /// The plugin.
        plugin: String,
        /// The plugin's error kind.
        kind: ErrorKind,
        /// The plugin's message.
        message: String,
    },
    /// The input could not be encoded or the answer decoded (the JSON helpers).
    #[error("plugin {plugin:?}: {message}")]
    Codec {
        /// The plugin.
        plugin: String,
        /// What could not be encoded or decoded.
        message: String,
    },
    /// The plugin does not provide the extension interface, or its layout is incompatible.
    #[error("plugin {plugin:?}: extension {id:?}: {reason}")]
    Extension {
        /// The plugin.
        plugin: String,
        /// The interface id.
        id: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The plugin's bulkhead is full: `limit` calls are in flight already (`[limits] max_concurrent_calls`).
    /// Refused at once, before the plugin is called; the caller may try again later.
    #[error(
        "plugin {plugin:?} already has {limit} calls in flight, the most its manifest allows ([limits] max_concurrent_calls); this call was refused without reaching it, try again later"
    )]
    Overloaded {
        /// The plugin.
        plugin: String,
        /// Its limit.
        limit: u32,
    },
    /// The plugin's rate limit is reached (`[limits] calls_per_second`, `burst`): refused at once, before the
    /// plugin is called.
    #[error(
        "plugin {plugin:?} is called faster than its manifest allows ({per_second} calls a second, bursts of {burst}; [limits] calls_per_second, burst); this call was refused without reaching it, try again later"
    )]
    RateLimited {
        /// The plugin.
        plugin: String,
        /// Its rate.
        per_second: u32,
        /// Its burst.
        burst: u32,
    },
    /// The plugin's circuit breaker is open (`[breaker]`): calls are refused at once until `retry_at`, when one
    /// call goes through as a probe.
    #[error(
        "plugin {plugin:?} is faulted: {reason}; calls are refused without reaching it until a probe call succeeds, the next in {}; reloading, re-enabling or reconfiguring it closes the breaker",
        retry_in(*retry_at)
    )]
    Faulted {
        /// The plugin.
        plugin: String,
        /// Why the breaker opened.
        reason: String,
        /// When a probe call may go through.
        retry_at: std::time::Instant,
    },
    /// The call ran past its deadline: the plugin's supervision deadline (`[limits] call_timeout`; the late
    /// answer is dropped) or the caller's ([`PluginHandle::call_within`]; the call runs on to its end on a
    /// plugin thread). A native call cannot be stopped in-process.
    #[error(
        "plugin {plugin:?} did not answer {method:?} within {} ms; its answer, if it comes, is dropped",
        after.as_millis()
    )]
    Timeout {
        /// The plugin.
        plugin: String,
        /// The method (for a typed call, the interface id).
        method: String,
        /// How long the caller waited, or the call ran.
        after: Duration,
    },
    /// The worker process of an isolated plugin (`isolation = "process"`) died before it answered (or is being
    /// restarted after it died). The host and the other plugins are unaffected; the worker is restarted.
    #[error("plugin {plugin:?} (generation {generation}): its worker process {reason}; the call was not answered")]
    Crashed {
        /// The plugin.
        plugin: String,
        /// The generation whose worker died.
        generation: u64,
        /// How: the signal or exit status, what the worker last wrote, and when it is restarted.
        reason: String,
    },
    /// A call with a caller's deadline (or a health check) found all the plugin's own threads busy, with
    /// calls that have not returned: refused at once, without reaching it.
    #[error(
        "plugin {plugin:?} has all {threads} of its call threads busy with calls that have not returned; this call was refused without reaching it, try again later"
    )]
    Busy {
        /// The plugin.
        plugin: String,
        /// How many threads it has ([limits] max_concurrent_calls, else 8).
        threads: u32,
    },
}

/// The time left until `at`, as a message gives it.
fn retry_in(at: std::time::Instant) -> String {
    let left = at.saturating_duration_since(std::time::Instant::now());
    format!("{:.1} s", left.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str) -> Manifest {
        let text = format!("name = \"{name}\"\nversion = \"1.2.0\"\napi = \"^1.0\"\n[library]\nlinux = \"lib.so\"\n");
        Manifest::parse(Path::new(&format!("plugins/{name}/{name}.toml")), &text).unwrap()
    }

    #[test]
    fn a_plugin_that_never_served_is_known_by_its_state_and_refuses_calls_with_the_reason() {
        let registry = Registry::new(Subscribers::new(Vec::new()));
        let events = registry.subscribe();
        let demo = manifest("demo");
        registry.transition(&demo, PluginState::Discovered, "manifest".to_owned());
        registry.transition(&demo, PluginState::Failed, "the library is truncated".to_owned());

        let statuses = registry.statuses();
        assert_eq!(statuses.len(), 1);
        let status = &statuses[0];
        assert_eq!((status.state, status.reason.as_deref()), (PluginState::Failed, Some("the library is truncated")));
        assert_eq!((status.version.as_str(), status.generation, status.retired_generations), ("1.2.0", None, 0));

        let handle = registry.handle("demo").unwrap();
        let refused = handle.call("greet", b"{}").unwrap_err();
        assert!(matches!(refused, CallError::NotActive { .. }), "{refused:?}");
        assert!(refused.to_string().contains("the library is truncated"), "{refused}");
        assert!(matches!(registry.handle("other"), Err(CallError::UnknownPlugin(name)) if name == "other"));
        assert!(matches!(registry.handle("Not A Name"), Err(CallError::UnknownPlugin(_))));

        let kinds: Vec<(EventKind, PluginState)> = events.try_iter().map(|event| (event.kind, event.state)).collect();
        assert_eq!(kinds, [(EventKind::Progress, PluginState::Discovered), (EventKind::Failed, PluginState::Failed)]);
    }

    #[test]
    fn states_read_as_ops_docs_write_them() {
        let states = [
            (PluginState::Discovered, "discovered"),
            (PluginState::Validated, "validated"),
            (PluginState::Loaded, "loaded"),
            (PluginState::Active, "active"),
            (PluginState::Failed, "failed"),
            (PluginState::Disabled, "disabled"),
            (PluginState::Removed, "removed"),
            (PluginState::Retired, "retired"),
            (PluginState::Faulted, "faulted"),
            (PluginState::Degraded, "degraded"),
        ];
        let ops = include_str!("../../docs/ops.md");
        for (state, text) in states {
            assert_eq!(state.to_string(), text);
            assert!(ops.contains(&format!("`{text}`")), "docs/ops.md does not name the state {text}");
        }
    }
}
