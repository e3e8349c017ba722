//! A live plugin instance: what a generation serves through. The registry, the handles and reconcile see only
//! this, never the plugin's ABI object, so an instance served from elsewhere (a worker process, issue 14) can
//! stand behind the same `PluginHandle`. Today there is one kind, in-process; typed extension interfaces are
//! in-process only (they hand out the plugin's own vtables), and another kind answers `None` for them.
#![forbid(unsafe_code)]

use abi_stable::std_types::{RErr, ROk, RSlice, RStr};
use berth_plugin_api::abi::{HealthReport, PluginError, PluginObject};
use berth_plugin_api::{Extension, HealthStatus};

/// A live instance of a plugin.
pub(crate) enum Instance {
    /// Created by the plugin's `create` in this process: calls are direct calls through its vtable.
    InProcess(PluginObject),
}

impl Instance {
    /// Calls `method` with `input`.
    #[inline]
    pub fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, PluginError> {
        match self {
            Instance::InProcess(object) => match object.call(RStr::from_str(method), RSlice::from_slice(input)) {
                ROk(output) => Ok(output.into_vec()),
                RErr(error) => Err(error),
            },
        }
    }

    /// How the plugin says it is doing.
    pub fn health(&self) -> (HealthStatus, String) {
        match self {
            Instance::InProcess(object) => {
                let HealthReport { status, detail } = object.health();
                (status, detail.into_string())
            }
        }
    }

    /// The extension interface `id`, type-erased, when the plugin provides it in this process.
    pub fn extension(&self, id: &str) -> Option<Extension> {
        match self {
            Instance::InProcess(object) => object.extension(RStr::from_str(id)).into_option(),
        }
    }

    /// Shuts the instance down: called once, when no call is in flight any more.
    pub fn shutdown(&self) -> Result<(), PluginError> {
        match self {
            Instance::InProcess(object) => object.shutdown().into_result(),
        }
    }
}
