//! `berth.text-filter/1` (since plugin-api 1.1): named text filters a host calls with typed arguments,
//! without JSON.
//!
//! ```
//! use std::sync::Arc;
//! use berth_plugin_api::{ext::text_filter::{self, TextFilter}, Error, Extension};
//!
//! struct Shout;
//! impl TextFilter for Shout {
//!     fn filters(&self) -> Vec<String> { vec!["shout".into()] }
//!     fn apply(&self, filter: &str, text: &str) -> Result<String, Error> {
//!         match filter {
//!             "shout" => Ok(text.to_uppercase()),
//!             other => Err(Error::invalid_input(format!("no filter {other:?}"))),
//!         }
//!     }
//! }
//!
//! // In `Plugin::extension`: `text_filter::ID => Some(text_filter::export(self))`.
//! let extension: Extension = text_filter::export(Arc::new(Shout));
//! let handle = extension.into_object::<text_filter::TextFilterV1>().map(text_filter::Handle::from).unwrap();
//! assert_eq!(handle.apply("shout", "hi").unwrap(), "HI");
//! ```
// abi_stable's `#[sabi_trait]` expands to impls inside a `const` block, which rustc's newer lint flags.
#![allow(non_local_definitions)]

use std::sync::Arc;

use abi_stable::{
    sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RBox, RResult, RStr, RString, RVec},
};

use crate::abi::PluginError;
use crate::export::{Guarded, guard};
use crate::extension::{Extension, Interface};
use crate::plugin::Error;

/// The interface id.
pub const ID: &str = "berth.text-filter/1";

/// What a plugin author implements.
pub trait TextFilter: Send + Sync + 'static {
    /// The names of the filters this plugin provides.
    fn filters(&self) -> Vec<String>;
    /// Runs filter `filter` over `text`.
    fn apply(&self, filter: &str, text: &str) -> Result<String, Error>;
}

/// Wraps an implementation for [`crate::Plugin::extension`].
pub fn export<T: TextFilter>(implementation: Arc<T>) -> Extension {
    Extension::new::<TextFilterV1>(TextFilterAbi_TO::from_value(Guarded::new(implementation), TD_Opaque))
}

/// The ABI of `berth.text-filter/1`. Frozen.
#[sabi_trait]
pub trait TextFilterAbi: Send + Sync {
    /// The names of the filters.
    fn filters(&self) -> RVec<RString>;
    /// Runs a filter.
    #[sabi(last_prefix_field)]
    fn apply(&self, filter: RStr<'_>, text: RStr<'_>) -> RResult<RString, PluginError>;
}

/// The object that crosses the boundary.
pub type TextFilterObject = TextFilterAbi_TO<'static, RBox<()>>;

/// The [`Interface`] marker of `berth.text-filter/1`.
pub struct TextFilterV1;

impl Interface for TextFilterV1 {
    const ID: &'static str = ID;
    type Object = TextFilterObject;
    type Handle = Handle;

    fn handle(object: TextFilterObject) -> Handle {
        Handle(object)
    }
}

impl<T: TextFilter> TextFilterAbi for Guarded<T> {
    fn filters(&self) -> RVec<RString> {
        guard(|| Ok(self.0.filters())).into_result().unwrap_or_default().into_iter().map(RString::from).collect()
    }

    fn apply(&self, filter: RStr<'_>, text: RStr<'_>) -> RResult<RString, PluginError> {
        guard(|| self.0.apply(filter.as_str(), text.as_str()).map(RString::from))
    }
}

/// The host's handle on a plugin's text filters.
pub struct Handle(TextFilterObject);

impl From<TextFilterObject> for Handle {
    fn from(object: TextFilterObject) -> Self {
        Handle(object)
    }
}

impl Handle {
    /// The names of the filters the plugin provides.
    pub fn filters(&self) -> Vec<String> {
        self.0.filters().into_iter().map(RString::into_string).collect()
    }

    /// Runs filter `filter` over `text`.
    pub fn apply(&self, filter: &str, text: &str) -> Result<String, PluginError> {
        self.0.apply(RStr::from_str(filter), RStr::from_str(text)).into_result().map(RString::into_string)
    }
}
