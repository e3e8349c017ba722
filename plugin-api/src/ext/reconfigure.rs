//! `berth.reconfigure/1` (since plugin-api 1.2): a changed `[config]` delivered to the serving instance,
//! without a reload.
//!
//! When ops edit a manifest's `[config]` table, a host that finds this interface decodes nothing itself: it
//! hands the new table (as JSON) to the plugin, which decodes it into its own [`Plugin::Config`] exactly as
//! at `create` and applies it. A plugin without it is reloaded with the new config instead (a new generation,
//! its state handed over through `berth.state/1` when it has that).
//!
//! ```
//! use std::sync::{Arc, RwLock};
//! use berth_plugin_api::{ext::reconfigure::{self, Reconfigure}, Error, Host, Plugin};
//! # use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Config { greeting: String }
//! struct Greeter(RwLock<String>);
//! impl Plugin for Greeter {
//!     type Config = Config;
//!     fn create(config: Config, _: &Host) -> Result<Self, Error> { Ok(Greeter(RwLock::new(config.greeting))) }
//!     fn call(&self, _: &str, _: &[u8]) -> Result<Vec<u8>, Error> { Ok(self.0.read().unwrap().clone().into_bytes()) }
//! }
//! impl Reconfigure for Greeter {
//!     fn reconfigure(&self, config: Config) -> Result<(), Error> {
//!         *self.0.write().unwrap() = config.greeting;
//!         Ok(())
//!     }
//! }
//!
//! // In `Plugin::extension`: `reconfigure::ID => Some(reconfigure::export(self))`.
//! let greeter = Arc::new(Greeter(RwLock::new("Hello".into())));
//! let handle = reconfigure::export(Arc::clone(&greeter))
//!     .into_object::<reconfigure::ReconfigureV1>().map(reconfigure::Handle::from).unwrap();
//! handle.reconfigure(r#"{"greeting":"Hi"}"#).unwrap();
//! assert_eq!(greeter.call("greet", b"").unwrap(), b"Hi");
//! assert!(handle.reconfigure(r#"{"greting":"typo"}"#).is_err());
//! ```
// abi_stable's `#[sabi_trait]` expands to impls inside a `const` block, which rustc's newer lint flags.
#![allow(non_local_definitions)]

use std::sync::Arc;

use abi_stable::{
    sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RBox, RResult, RStr},
};

use crate::abi::PluginError;
use crate::export::{Guarded, decode_config, guard};
use crate::extension::{Extension, Interface};
use crate::plugin::{Error, Plugin};

/// The interface id.
pub const ID: &str = "berth.reconfigure/1";

/// What a plugin author implements to take config changes while serving.
pub trait Reconfigure: Plugin {
    /// Applies a changed `[config]`. On error keep the config you had: the host reports the error and the
    /// instance goes on serving as before.
    fn reconfigure(&self, config: Self::Config) -> Result<(), Error>;
}

/// Wraps a plugin for [`crate::Plugin::extension`].
pub fn export<P: Reconfigure>(plugin: Arc<P>) -> Extension {
    Extension::new::<ReconfigureV1>(ReconfigureAbi_TO::from_value(Guarded::new(plugin), TD_Opaque))
}

/// The ABI of `berth.reconfigure/1`. Frozen.
#[sabi_trait]
pub trait ReconfigureAbi: Send + Sync {
    /// Applies the `[config]` table, as JSON.
    #[sabi(last_prefix_field)]
    fn reconfigure(&self, config_json: RStr<'_>) -> RResult<(), PluginError>;
}

/// The object that crosses the boundary.
pub type ReconfigureObject = ReconfigureAbi_TO<'static, RBox<()>>;

/// The [`Interface`] marker of `berth.reconfigure/1`.
pub struct ReconfigureV1;

impl Interface for ReconfigureV1 {
    const ID: &'static str = ID;
    type Object = ReconfigureObject;
    type Handle = Handle;

    fn handle(object: ReconfigureObject) -> Handle {
        Handle(object)
    }
}

impl<P: Reconfigure> ReconfigureAbi for Guarded<P> {
    fn reconfigure(&self, config_json: RStr<'_>) -> RResult<(), PluginError> {
        guard(|| self.0.reconfigure(decode_config::<P>(config_json.as_str())?))
    }
}

/// The host's handle on a plugin's reconfiguration.
pub struct Handle(ReconfigureObject);

impl From<ReconfigureObject> for Handle {
    fn from(object: ReconfigureObject) -> Self {
        Handle(object)
    }
}

impl Handle {
    /// Hands the plugin its new `[config]` table, as JSON.
    pub fn reconfigure(&self, config_json: &str) -> Result<(), PluginError> {
        self.0.reconfigure(RStr::from_str(config_json)).into_result()
    }
}
