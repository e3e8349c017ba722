//! The author's side: the [`Plugin`] trait, its [`Error`] and [`Health`], and JSON helpers.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::abi::{ErrorKind, HealthReport, HealthStatus, PluginError};
use crate::extension::Extension;

/// A plugin: an ordinary Rust type, exported with [`crate::export_plugin!`].
///
/// Every method may panic without harming the host: the export machinery catches the panic inside the
/// plugin and reports it as an [`ErrorKind::Panicked`] error. Calls arrive concurrently from many threads,
/// hence `&self` and `Sync`: keep mutable state behind a `Mutex` or atomics.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// The manifest's `[config]` table, decoded with serde. Use [`NoConfig`] when there is none.
    type Config: DeserializeOwned;

    /// Creates the instance. An error here refuses the load with the error's message.
    fn create(config: Self::Config, host: &Host) -> Result<Self, Error>;

    /// The generic call: `method` and `input` bytes (JSON by convention, see [`json_call`]).
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, Error>;

    /// How the plugin is doing; `Health::Ok` unless overridden.
    fn health(&self) -> Health {
        Health::Ok
    }

    /// The extension interface with this id, if the plugin provides it (see [`crate::ext`]).
    fn extension(self: Arc<Self>, id: &str) -> Option<Extension> {
        let _ = id;
        None
    }

    /// Called once before the instance is dropped.
    fn shutdown(&self) {}
}

/// What the host tells a plugin at creation.
#[derive(Debug, Clone)]
pub struct Host {
    plugin: String,
    generation: u64,
}

impl Host {
    /// A context as the host would hand it; for a plugin's own unit tests.
    pub fn new(plugin: impl Into<String>, generation: u64) -> Host {
        Host { plugin: plugin.into(), generation }
    }

    /// The plugin's name as the host knows it.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Which load of this plugin this is: 1 for the first, one more for every reload.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// The config of a plugin that takes none: an empty `[config]` table, or none at all.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

/// A plugin's error: a kind and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// The plugin could not do what was asked.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, message)
    }

    /// The input was refused.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// The config was refused.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }

    /// The plugin cannot serve right now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// The method does not exist.
    pub fn unknown_method(method: &str) -> Self {
        Self::new(ErrorKind::UnknownMethod, format!("no method named {method:?}"))
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for PluginError {
    fn from(error: Error) -> Self {
        PluginError { kind: error.kind, message: error.message.into() }
    }
}

/// A plugin's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Serving normally.
    Ok,
    /// Serving, with a problem worth a look.
    Degraded(String),
    /// Not able to serve.
    Failing(String),
}

impl From<Health> for HealthReport {
    fn from(health: Health) -> Self {
        let (status, detail) = match health {
            Health::Ok => (HealthStatus::Ok, String::new()),
            Health::Degraded(detail) => (HealthStatus::Degraded, detail),
            Health::Failing(detail) => (HealthStatus::Failing, detail),
        };
        HealthReport { status, detail: detail.into() }
    }
}

/// Decodes `input` as JSON into `Req`, runs `handler`, and encodes its answer as JSON.
///
/// Input that does not decode is refused with [`ErrorKind::InvalidInput`] and serde's message.
pub fn json_call<Req, Resp>(input: &[u8], handler: impl FnOnce(Req) -> Result<Resp, Error>) -> Result<Vec<u8>, Error>
where
    Req: DeserializeOwned,
    Resp: Serialize,
{
    let request = serde_json::from_slice(input)
        .map_err(|e| Error::invalid_input(format!("input is not the expected JSON: {e}")))?;
    let response = handler(request)?;
    serde_json::to_vec(&response).map_err(|e| Error::failed(format!("could not encode the answer as JSON: {e}")))
}
