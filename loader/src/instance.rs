//! A live plugin instance: what a generation serves through. The registry, the handles and reconcile see only
//! this, never the plugin's ABI object, so an instance served from a worker process stands behind the same
//! `PluginHandle`. Typed extension interfaces are in-process only (they hand out the plugin's own vtables): an
//! isolated instance refuses them with the reason, and offers the two the host itself uses (`berth.state/1`,
//! `berth.reconfigure/1`) as messages to its worker.
#![forbid(unsafe_code)]

use abi_stable::std_types::{RErr, ROk, RSlice, RStr};
use berth_plugin_api::abi::{HealthReport, PluginError, PluginObject};
use berth_plugin_api::ext::{reconfigure::ReconfigureV1, state::StateV1};
use berth_plugin_api::{Extension, HealthStatus, Interface};

use serde::{Deserialize, Serialize};

use crate::load::LibraryInfo;

/// A live instance of a plugin.
pub(crate) enum Instance {
    /// Created by the plugin's `create` in this process: calls are direct calls through its vtable.
    InProcess(PluginObject),
    /// Created in a worker process (`isolation = "process"`): calls cross to it.
    Isolated(Box<dyn Worker>),
}

/// Why an isolated plugin refuses a typed interface.
pub(crate) const ISOLATED_INTERFACES: &str = "the plugin runs in a worker process (isolation = \"process\") and typed extension interfaces are in-process only; call it with PluginHandle::call or call_json, or run it in-process";

impl Instance {
    /// Calls `method` with `input`.
    #[inline]
    pub fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, Failure> {
        match self {
            Instance::InProcess(object) => match object.call(RStr::from_str(method), RSlice::from_slice(input)) {
                ROk(output) => Ok(output.into_vec()),
                RErr(error) => Err(Failure::Plugin(error)),
            },
            Instance::Isolated(worker) => worker.call(method, input),
        }
    }

    /// How the plugin says it is doing.
    pub fn health(&self) -> Result<(HealthStatus, String), Failure> {
        match self {
            Instance::InProcess(object) => {
                let HealthReport { status, detail } = object.health();
                Ok((status, detail.into_string()))
            }
            Instance::Isolated(worker) => worker.health(),
        }
    }

    /// The extension interface `id`, type-erased, when the plugin provides it in this process; an isolated
    /// plugin refuses with [`ISOLATED_INTERFACES`].
    pub fn extension(&self, id: &str) -> Result<Option<Extension>, String> {
        match self {
            Instance::InProcess(object) => Ok(object.extension(RStr::from_str(id)).into_option()),
            Instance::Isolated(_) => Err(ISOLATED_INTERFACES.to_owned()),
        }
    }

    /// The extension interface `I`, layout-checked: `None` when the plugin does not provide it, an error (the
    /// first layout difference, or why an isolated plugin has none) otherwise.
    pub fn extension_handle<I: Interface>(&self) -> Result<Option<I::Handle>, String> {
        let Some(extension) = self.extension(I::ID)? else {
            return Ok(None);
        };
        extension.into_object::<I>().map(|object| Some(I::handle(object))).map_err(|mismatch| mismatch.summary)
    }

    /// The schema of the plugin's `berth.state/1`; `None` when it has none.
    pub fn state_schema(&self) -> Result<Option<u32>, String> {
        match self {
            Instance::InProcess(_) => Ok(self.extension_handle::<StateV1>()?.map(|state| state.schema())),
            Instance::Isolated(worker) => worker.state_schema().map_err(|failure| failure.to_string()),
        }
    }

    /// Exports the plugin's state (only called when [`Instance::state_schema`] said it has one).
    pub fn export_state(&self) -> Result<Vec<u8>, String> {
        match self {
            Instance::InProcess(_) => match self.extension_handle::<StateV1>()? {
                Some(state) => state.export().map_err(|error| error.message.into_string()),
                None => Err("the plugin no longer provides berth.state/1".to_owned()),
            },
            Instance::Isolated(worker) => worker.export_state().map_err(|failure| failure.to_string()),
        }
    }

    /// Imports a state written in `schema`.
    pub fn import_state(&self, schema: u32, state: &[u8]) -> Result<(), String> {
        match self {
            Instance::InProcess(_) => match self.extension_handle::<StateV1>()? {
                Some(handle) => handle.import(schema, state).map_err(|error| error.message.into_string()),
                None => Err("the plugin no longer provides berth.state/1".to_owned()),
            },
            Instance::Isolated(worker) => worker.import_state(schema, state).map_err(|failure| failure.to_string()),
        }
    }

    /// Delivers a changed `[config]`: `None` when the plugin takes none that way (`berth.reconfigure/1`), so
    /// the change needs a reload.
    pub fn reconfigure(&self, config_json: &str) -> Option<Result<(), PluginError>> {
        match self {
            Instance::InProcess(_) => {
                let reconfigure = self.extension_handle::<ReconfigureV1>().ok().flatten()?;
                Some(reconfigure.reconfigure(config_json))
            }
            Instance::Isolated(worker) => match worker.reconfigure(config_json) {
                Ok(true) => Some(Ok(())),
                Ok(false) => None,
                Err(Failure::Plugin(error)) => Some(Err(error)),
                Err(other) => Some(Err(PluginError {
                    kind: berth_plugin_api::ErrorKind::Failed,
                    message: other.to_string().into(),
                })),
            },
        }
    }

    /// Shuts the instance down: called once, when no call is in flight any more.
    pub fn shutdown(&self) -> Result<(), PluginError> {
        match self {
            Instance::InProcess(object) => object.shutdown().into_result(),
            Instance::Isolated(worker) => {
                worker.shutdown();
                Ok(())
            }
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Plugin(error) => write!(f, "{:?}: {}", error.kind, error.message),
            Failure::Crashed(reason) => write!(f, "the worker crashed: {reason}"),
            Failure::Timeout(after) => write!(f, "no answer within {} ms; the worker was killed", after.as_millis()),
        }
    }
}

/// Why a worker did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The plugin answered with an error.
    Plugin(PluginError),
    /// The worker died (or was restarting) before it answered.
    Crashed(String),
    /// The call ran past the deadline; the worker was killed.
    Timeout(std::time::Duration),
}

/// What an isolated plugin's worker reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerStatus {
    /// The serving process, if one runs.
    pub pid: Option<u32>,
    /// How many times it was restarted after a crash.
    pub restarts: u64,
    /// The last crash, if any.
    pub last_crash: Option<String>,
    /// The sandbox the OS enforces, and what it could not.
    pub sandbox: SandboxReport,
}

impl WorkerStatus {
    /// A worker's status, as an isolator reports it.
    pub fn new(pid: Option<u32>, restarts: u64, last_crash: Option<String>, sandbox: SandboxReport) -> WorkerStatus {
        WorkerStatus { pid, restarts, last_crash, sandbox }
    }
}

/// The sandbox as the worker applied it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SandboxReport {
    /// One line per protection in force, as `berth info` shows them.
    pub enforced: Vec<String>,
    /// Each asked-for protection the OS could not enforce.
    pub missing: Vec<String>,
}

/// A live worker: one generation of an isolated plugin.
pub trait Worker: Send + Sync {
    /// What the library reported about itself.
    fn info(&self) -> &LibraryInfo;
    /// The generic call.
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, Failure>;
    /// The plugin's health.
    fn health(&self) -> Result<(HealthStatus, String), Failure>;
    /// The schema of the plugin's `berth.state/1`, `None` when it has none.
    fn state_schema(&self) -> Result<Option<u32>, Failure>;
    /// Exports the plugin's state (`berth.state/1`).
    fn export_state(&self) -> Result<Vec<u8>, Failure>;
    /// Imports a state written in `schema`.
    fn import_state(&self, schema: u32, state: &[u8]) -> Result<(), Failure>;
    /// Delivers a changed `[config]` (`berth.reconfigure/1`); `Ok(false)` when the plugin has no such interface.
    fn reconfigure(&self, config_json: &str) -> Result<bool, Failure>;
    /// Ends the worker in order (the plugin's `shutdown`, then exit), once no call is in flight.
    fn shutdown(&self);
    /// What it reports.
    fn status(&self) -> WorkerStatus;
}
