//! The seam for running a plugin outside the host process (`isolation = "process"`): what a manifest and the
//! host configuration ask for ([`Isolation`], [`Permissions`]), what the host hands an isolator to start a
//! worker ([`WorkerSpec`]), what it gets back ([`Worker`]), and the worker's own side ([`LocalPlugin`]: the same
//! open, ABI checks and `create` as an in-process load). The core never starts a process: `berth-isolate`
//! implements [`Isolator`] and is given to the host with [`HostBuilder::isolator`](crate::HostBuilder::isolator).
#![forbid(unsafe_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_plugin_api::HealthStatus;
use berth_plugin_api::abi::{HostContext, HostLoggerObject, LogLevel, PluginError};

use crate::error::LoadError;
use crate::instance::Instance;
pub use crate::instance::{Failure, SandboxReport, Worker, WorkerStatus};
use crate::load::{self, LibraryInfo};
pub use crate::logbridge::logger as host_logger;
pub use crate::manifest::{Isolation, Narrowing, Permissions};
use crate::name::PluginName;

/// Everything an isolator needs to start a worker for one generation of a plugin.
#[non_exhaustive]
pub struct WorkerSpec {
    /// The plugin.
    pub plugin: PluginName,
    /// Its version, as the library must report it.
    pub version: semver::Version,
    /// The generation the worker serves.
    pub generation: u64,
    /// The verified private copy, open for reading: the worker opens this file, never a path.
    pub library: File,
    /// Where that copy is (for messages only).
    pub library_path: PathBuf,
    /// The `[config]` table as JSON.
    pub config_json: String,
    /// The effective sandbox.
    pub permissions: Permissions,
    /// The call deadline: a call past it kills the worker (and it is restarted).
    pub call_timeout: Option<Duration>,
    /// How many calls the worker serves at once (its call threads).
    pub threads: u32,
    /// Where the worker executable is, when the host configuration says (`[isolation] worker`).
    pub worker: Option<PathBuf>,
    /// The most verbose level the host records.
    pub max_level: LogLevel,
    /// Told of each crash and restart.
    pub events: Arc<dyn Fn(WorkerEvent) + Send + Sync>,
}

/// What happened to a worker, as the host records it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerEvent {
    /// The worker process ended without being asked to; calls in flight failed with `reason`.
    Crashed {
        /// Its process id.
        pid: u32,
        /// How it ended: the signal or exit status, and its last words on stderr.
        reason: String,
        /// When it is started again.
        restart_in: Duration,
    },
    /// A new worker process serves after a crash.
    Restarted {
        /// Its process id.
        pid: u32,
    },
    /// The worker could not be started again; the plugin stops serving until it is reloaded.
    GaveUp {
        /// Why.
        reason: String,
    },
}

/// Starts workers: implemented by `berth-isolate`.
pub trait Isolator: Send + Sync {
    /// Starts a worker for `spec`, returning once the plugin is created in it (or refused).
    fn start(&self, spec: WorkerSpec) -> Result<Box<dyn Worker>, LoadError>;
}

/// A plugin opened and created in this process: what a worker serves through.
pub struct LocalPlugin {
    instance: Instance,
    info: LibraryInfo,
}

impl LocalPlugin {
    /// Opens the library at `path` (for a worker, `/proc/self/fd/N` of the descriptor the host handed it), runs
    /// the same ABI checks as an in-process load, checks that it reports `plugin` at `version`, and creates it
    /// with `config_json`; its log events go to `logger`.
    pub fn open(
        path: &Path,
        plugin: &str,
        version: &semver::Version,
        generation: u64,
        config_json: &str,
        max_level: LogLevel,
        logger: HostLoggerObject,
    ) -> Result<LocalPlugin, LoadError> {
        let module = load::open(path)?;
        load::check_identity(plugin, version, &module.info)?;
        let context = HostContext { plugin: plugin.into(), generation, max_level, logger };
        let object = load::create(&module, config_json, context)?;
        Ok(LocalPlugin { instance: Instance::InProcess(object), info: module.info })
    }

    /// What the library reported.
    pub fn info(&self) -> &LibraryInfo {
        &self.info
    }

    /// The generic call.
    pub fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, Failure> {
        self.instance.call(method, input)
    }

    /// The plugin's health.
    pub fn health(&self) -> Result<(HealthStatus, String), Failure> {
        self.instance.health()
    }

    /// The schema of its `berth.state/1`, `None` without one.
    pub fn state_schema(&self) -> Result<Option<u32>, String> {
        self.instance.state_schema()
    }

    /// Exports its state.
    pub fn export_state(&self) -> Result<Vec<u8>, String> {
        self.instance.export_state()
    }

    /// Imports a state written in `schema`.
    pub fn import_state(&self, schema: u32, state: &[u8]) -> Result<(), String> {
        self.instance.import_state(schema, state)
    }

    /// Delivers a changed config: `None` without `berth.reconfigure/1`.
    pub fn reconfigure(&self, config_json: &str) -> Option<Result<(), PluginError>> {
        self.instance.reconfigure(config_json)
    }

    /// The plugin's `shutdown`.
    pub fn shutdown(&self) -> Result<(), PluginError> {
        self.instance.shutdown()
    }
}
