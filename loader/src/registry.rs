//! The registry: every plugin the host knows, by name, with its lifecycle state and (when active) its current
//! generation. Callers hold [`PluginHandle`]s; a call loads the current generation with one atomic read
//! (`arc-swap`), never a lock, so many threads call at once without serialising, and a call in flight keeps
//! the generation it started on alive until it returns.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};

use abi_stable::std_types::{RErr, ROk, RSlice, RStr};
use arc_swap::ArcSwapOption;
use berth_plugin_api::abi::{HealthReport, PluginObject};
use berth_plugin_api::{ErrorKind, HealthStatus, Interface};
use serde::{Serialize, de::DeserializeOwned};

use crate::error::CallError;
use crate::load::LibraryInfo;
use crate::manifest::{Manifest, PluginName};

/// Where a plugin is in its lifecycle: Discovered -> Validated -> Loaded -> Active, or Failed (reason kept),
/// Disabled (by its manifest), Retired (shut down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
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
    /// It was shut down.
    Retired,
}

impl fmt::Display for PluginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        f.write_str(&text)
    }
}

/// A lifecycle transition, as subscribers receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The plugin.
    pub plugin: PluginName,
    /// The state it moved to.
    pub state: PluginState,
    /// The generation concerned, when there is one.
    pub generation: Option<u64>,
    /// Why, or with what (the failure reason, the manifest, the version).
    pub detail: String,
}

/// A snapshot of one plugin's status.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    /// Its name.
    pub name: PluginName,
    /// Its state.
    pub state: PluginState,
    /// Why it is failed or disabled.
    pub reason: Option<String>,
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
}

/// One load of a plugin: its manifest, the library it came from, and the instance.
pub(crate) struct Generation {
    pub number: u64,
    pub manifest: Manifest,
    pub library: LibraryInfo,
    pub sha256: String,
    pub object: PluginObject,
}

impl Drop for Generation {
    /// Runs when the last caller using this generation is done: shutdown happens exactly once, never under a
    /// call in flight.
    fn drop(&mut self) {
        if let RErr(error) = self.object.shutdown() {
            tracing::warn!(plugin = %self.manifest.name, generation = self.number, "shutdown failed: {}", error.message);
        }
    }
}

#[derive(Default)]
struct Subscribers(Mutex<Vec<Sender<Event>>>);

impl Subscribers {
    fn send(&self, event: Event) {
        let mut subscribers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        subscribers.retain(|subscriber| subscriber.send(event.clone()).is_ok());
    }
}

struct SlotStatus {
    state: PluginState,
    reason: Option<String>,
    manifest: PathBuf,
    version: String,
}

struct Slot {
    name: PluginName,
    current: ArcSwapOption<Generation>,
    status: Mutex<SlotStatus>,
    generations: AtomicU64,
    subscribers: Arc<Subscribers>,
}

impl Slot {
    fn transition(&self, state: PluginState, generation: Option<u64>, detail: String) {
        {
            let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
            status.state = state;
            status.reason = matches!(state, PluginState::Failed | PluginState::Disabled | PluginState::Retired)
                .then(|| detail.clone());
        }
        if matches!(state, PluginState::Failed | PluginState::Disabled | PluginState::Retired) {
            // Whatever generation was serving stops serving new calls (calls in flight finish on it).
            self.current.store(None);
        }
        match state {
            PluginState::Failed => tracing::warn!(plugin = %self.name, state = %state, "{detail}"),
            _ => tracing::info!(plugin = %self.name, state = %state, generation, "{detail}"),
        }
        self.subscribers.send(Event { plugin: self.name.clone(), state, generation, detail });
    }

    fn not_active(&self) -> CallError {
        let status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        CallError::NotActive {
            plugin: self.name.to_string(),
            state: status.state,
            reason: status.reason.clone().unwrap_or_else(|| "not loaded".to_owned()),
        }
    }
}

/// The plugins a host knows.
#[derive(Default)]
pub(crate) struct Registry {
    slots: RwLock<BTreeMap<PluginName, Arc<Slot>>>,
    subscribers: Arc<Subscribers>,
}

impl Registry {
    pub(crate) fn subscribe(&self) -> Receiver<Event> {
        let (sender, receiver) = mpsc::channel();
        self.subscribers.0.lock().unwrap_or_else(|e| e.into_inner()).push(sender);
        receiver
    }

    fn slot(&self, manifest: &Manifest) -> Arc<Slot> {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(manifest.name.clone()).or_insert_with(|| {
            Arc::new(Slot {
                name: manifest.name.clone(),
                current: ArcSwapOption::empty(),
                status: Mutex::new(SlotStatus {
                    state: PluginState::Discovered,
                    reason: None,
                    manifest: manifest.path.clone(),
                    version: manifest.version.to_string(),
                }),
                generations: AtomicU64::new(0),
                subscribers: Arc::clone(&self.subscribers),
            })
        });
        {
            let mut status = slot.status.lock().unwrap_or_else(|e| e.into_inner());
            status.manifest = manifest.path.clone();
            status.version = manifest.version.to_string();
        }
        Arc::clone(slot)
    }

    /// Records a transition of the plugin `manifest` describes (creating its entry when new).
    pub(crate) fn transition(&self, manifest: &Manifest, state: PluginState, detail: String) {
        self.slot(manifest).transition(state, None, detail);
    }

    /// The next generation number for this plugin.
    pub(crate) fn next_generation(&self, manifest: &Manifest) -> u64 {
        self.slot(manifest).generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Makes `generation` the one that serves its plugin.
    pub(crate) fn activate(&self, generation: Generation) {
        let slot = self.slot(&generation.manifest);
        let (number, detail) = (generation.number, format!("version {}", generation.manifest.version));
        slot.current.store(Some(Arc::new(generation)));
        slot.transition(PluginState::Active, Some(number), detail);
    }

    pub(crate) fn handle(&self, name: &str) -> Result<PluginHandle, CallError> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        let slot = PluginName::new(name).ok().and_then(|name| slots.get(&name).cloned());
        slot.map(|slot| PluginHandle { slot }).ok_or_else(|| CallError::UnknownPlugin(name.to_owned()))
    }

    pub(crate) fn statuses(&self) -> Vec<PluginStatus> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots
            .values()
            .map(|slot| {
                let current = slot.current.load_full();
                let status = slot.status.lock().unwrap_or_else(|e| e.into_inner());
                PluginStatus {
                    name: slot.name.clone(),
                    state: status.state,
                    reason: status.reason.clone(),
                    manifest: status.manifest.clone(),
                    version: status.version.clone(),
                    generation: current.as_ref().map(|g| g.number),
                    library: current.as_ref().map(|g| g.library.clone()),
                    sha256: current.as_ref().map(|g| g.sha256.clone()),
                }
            })
            .collect()
    }

    /// Takes every plugin out of service; each generation shuts down when its last call returns.
    pub(crate) fn shutdown(&self) {
        let slots: Vec<Arc<Slot>> = self.slots.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for slot in slots {
            if let Some(generation) = slot.current.swap(None) {
                let number = generation.number;
                drop(generation);
                slot.transition(PluginState::Retired, Some(number), "host shut down".to_owned());
            }
        }
    }
}

/// A caller's handle on one plugin: cheap to clone, `Send + Sync`, and always reaching the plugin's current
/// generation.
#[derive(Clone)]
pub struct PluginHandle {
    slot: Arc<Slot>,
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
        self.slot.status.lock().unwrap_or_else(|e| e.into_inner()).state
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
        match generation.object.call(RStr::from_str(method), RSlice::from_slice(input)) {
            ROk(output) => Ok(output.into_vec()),
            RErr(error) => {
                let message = error.message.into_string();
                if error.kind == ErrorKind::Panicked {
                    self.fault(generation, &format!("panicked in call {method:?}: {message}"));
                }
                Err(CallError::Plugin { plugin: self.slot.name.to_string(), kind: error.kind, message })
            }
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
        let HealthReport { status, detail } = generation.object.health();
        Ok(Health { status, detail: detail.into_string() })
    }

    /// The plugin's extension interface `I`, checked against the layout this host expects.
    ///
    /// Refused with [`CallError::Extension`] when the plugin does not provide it (an older plugin) or built
    /// it with another layout.
    pub fn extension<I: Interface>(&self) -> Result<I::Handle, CallError> {
        let current = self.slot.current.load();
        let generation = current.as_ref().ok_or_else(|| self.slot.not_active())?;
        let refuse =
            |reason: String| CallError::Extension { plugin: self.slot.name.to_string(), id: I::ID.to_owned(), reason };
        let extension = generation.object.extension(RStr::from_str(I::ID)).into_option();
        let extension = extension.ok_or_else(|| refuse("not provided by this plugin".to_owned()))?;
        extension.into_object::<I>().map(I::handle).map_err(|mismatch| refuse(mismatch.summary))
    }

    /// Takes `generation` out of service after a panic (unless a newer one already replaced it).
    fn fault(&self, generation: &Arc<Generation>, reason: &str) {
        let previous = self.slot.current.compare_and_swap(generation, None);
        if previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, generation)) {
            self.slot.transition(PluginState::Failed, Some(generation.number), reason.to_owned());
        }
    }
}
