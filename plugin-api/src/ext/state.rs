//! `berth.state/1` (since plugin-api 1.2): a plugin's state handed from the generation a hot reload retires to
//! the generation that replaces it.
//!
//! On a reload the host creates the new generation first, then asks the serving one for its state
//! ([`State::export_state`]) and hands the bytes, with the schema version they were written in, to the new one
//! ([`State::import_state`]) before swapping it in. The bytes are the plugin's own format (JSON is a good
//! choice); [`State::SCHEMA`] versions that format. A state written in a newer schema than the importing code
//! knows (a downgrade) is refused before `import_state` runs, so the reload fails cleanly and the serving
//! generation keeps serving.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use berth_plugin_api::{ext::state::{self, State}, Error, Extension};
//!
//! struct Counter(Mutex<u64>);
//! impl State for Counter {
//!     const SCHEMA: u32 = 1;
//!     fn export_state(&self) -> Result<Vec<u8>, Error> {
//!         Ok(self.0.lock().unwrap().to_string().into_bytes())
//!     }
//!     fn import_state(&self, _schema: u32, state: &[u8]) -> Result<(), Error> {
//!         let text = std::str::from_utf8(state).map_err(|e| Error::invalid_input(e.to_string()))?;
//!         *self.0.lock().unwrap() = text.parse().map_err(|_| Error::invalid_input("not a count"))?;
//!         Ok(())
//!     }
//! }
//!
//! // In `Plugin::extension`: `state::ID => Some(state::export(self))`.
//! let old = state::export(Arc::new(Counter(Mutex::new(41)))).into_object::<state::StateV1>().map(state::Handle::from).unwrap();
//! let new = state::export(Arc::new(Counter(Mutex::new(0)))).into_object::<state::StateV1>().map(state::Handle::from).unwrap();
//! new.import(old.schema(), &old.export().unwrap()).unwrap();
//! assert_eq!(new.export().unwrap(), b"41");
//! assert!(new.import(2, b"41").is_err(), "a newer schema is refused");
//! ```
// abi_stable's `#[sabi_trait]` expands to impls inside a `const` block, which rustc's newer lint flags.
#![allow(non_local_definitions)]

use std::sync::Arc;

use abi_stable::{
    sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RBox, RResult, RSlice, RVec},
};

use crate::abi::PluginError;
use crate::export::{Guarded, guard};
use crate::extension::{Extension, Interface};
use crate::plugin::Error;

/// The interface id.
pub const ID: &str = "berth.state/1";

/// What a plugin author implements to keep its state across hot reloads.
pub trait State: Send + Sync + 'static {
    /// The version of the format [`State::export_state`] writes. Raise it whenever the format changes, and
    /// keep [`State::import_state`] able to read the older versions you still want to accept.
    const SCHEMA: u32;
    /// The state to hand to the next generation. Called on the serving instance; calls may still arrive.
    fn export_state(&self) -> Result<Vec<u8>, Error>;
    /// Takes over `state`, written by a previous generation in format `schema` (never above [`State::SCHEMA`]).
    /// Called on the new instance after its `create`, before it serves. An error refuses the reload.
    fn import_state(&self, schema: u32, state: &[u8]) -> Result<(), Error>;
}

/// Wraps an implementation for [`crate::Plugin::extension`].
pub fn export<T: State>(implementation: Arc<T>) -> Extension {
    Extension::new::<StateV1>(StateAbi_TO::from_value(Guarded::new(implementation), TD_Opaque))
}

/// The ABI of `berth.state/1`. Frozen.
#[sabi_trait]
pub trait StateAbi: Send + Sync {
    /// The schema version of the state this code exports (and the newest it imports).
    fn schema(&self) -> u32;
    /// Exports the state.
    fn export(&self) -> RResult<RVec<u8>, PluginError>;
    /// Imports a state written in format `schema`.
    #[sabi(last_prefix_field)]
    fn import(&self, schema: u32, state: RSlice<'_, u8>) -> RResult<(), PluginError>;
}

/// The object that crosses the boundary.
pub type StateObject = StateAbi_TO<'static, RBox<()>>;

/// The [`Interface`] marker of `berth.state/1`.
pub struct StateV1;

impl Interface for StateV1 {
    const ID: &'static str = ID;
    type Object = StateObject;
    type Handle = Handle;

    fn handle(object: StateObject) -> Handle {
        Handle(object)
    }
}

impl<T: State> StateAbi for Guarded<T> {
    fn schema(&self) -> u32 {
        T::SCHEMA
    }

    fn export(&self) -> RResult<RVec<u8>, PluginError> {
        guard(|| self.0.export_state().map(RVec::from))
    }

    fn import(&self, schema: u32, state: RSlice<'_, u8>) -> RResult<(), PluginError> {
        guard(|| {
            if schema > T::SCHEMA {
                return Err(Error::invalid_input(format!(
                    "the state is in schema {schema}, newer than the {} this version reads: it was written by a newer version of the plugin",
                    T::SCHEMA
                )));
            }
            self.0.import_state(schema, state.as_slice())
        })
    }
}

/// The host's handle on a plugin's state.
pub struct Handle(StateObject);

impl From<StateObject> for Handle {
    fn from(object: StateObject) -> Self {
        Handle(object)
    }
}

impl Handle {
    /// The schema version this plugin writes (and the newest it reads).
    pub fn schema(&self) -> u32 {
        self.0.schema()
    }

    /// The plugin's state, in its own format at [`Handle::schema`].
    pub fn export(&self) -> Result<Vec<u8>, PluginError> {
        self.0.export().into_result().map(RVec::into_vec)
    }

    /// Hands the plugin a state written in format `schema`.
    pub fn import(&self, schema: u32, state: &[u8]) -> Result<(), PluginError> {
        self.0.import(schema, RSlice::from_slice(state)).into_result()
    }
}
