//! The one crate a Berth plugin author depends on.
//!
//! A plugin is an ordinary Rust type that implements [`Plugin`], exported with [`export_plugin!`] from a crate
//! built as a `cdylib`. Authors write no `unsafe` and never see abi_stable's types unless they want to: the
//! export machinery wraps every entry point in `catch_unwind`, so a panic inside a plugin becomes an error
//! value the host reports, never an exit of the host process.
//!
//! ```
//! use berth_plugin_api::{export_plugin, json_call, Error, Host, NoConfig, Plugin};
//!
//! pub struct Echo;
//!
//! impl Plugin for Echo {
//!     type Config = NoConfig;
//!
//!     fn create(_config: NoConfig, _host: &Host) -> Result<Self, Error> {
//!         Ok(Echo)
//!     }
//!
//!     fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
//!         match method {
//!             "echo" => json_call(input, |text: String| Ok(text)),
//!             other => Err(Error::unknown_method(other)),
//!         }
//!     }
//! }
//!
//! export_plugin!(Echo);
//! ```
//!
//! # The ABI contract
//! This crate's version is the ABI's version. The [`abi`] module holds everything that crosses the boundary;
//! within a major version it is frozen (abi_stable refuses a host whose root module or vtables have more
//! fields than the plugin's). New capability arrives as an extension interface with an id such as
//! `"berth.text-filter/1"` ([`ext`]), checked on its own when the host asks for it. See `CHANGELOG.md`.
//!
//! # Known problems
//! - A panic is contained; an abort, a segfault or an infinite loop inside a plugin is not. They take the
//!   host process with them, because the plugin runs in it.
//! - Each plugin carries its own copy of std: its own thread-locals, panic hook, allocator statics and
//!   `tracing` dispatcher. The logging bridge installed at `create` forwards the plugin's `tracing` events to
//!   the host; a tokio runtime of the host is not visible inside a plugin.
//! - Code in a loaded library is never unloaded (abi_stable leaks libraries on purpose).
//!
//! # Platform-specific behaviour
//! The export is the same on every platform; the host loads `.so` (Linux), `.dylib` (macOS) or `.dll`
//! (Windows). On macOS an unsigned or modified dylib may be refused by the OS loader; on Windows a loaded
//! DLL is locked by the OS, which is one more reason the host always loads a private copy.

// Unsafe code lives in `export` and `extension` (hand-written, each block justified) and in what abi_stable's
// derive and `#[sabi_trait]` macros generate in `abi` and `ext`; every other module forbids it.
#![warn(missing_docs)]

pub mod abi;
mod export;
pub mod ext;
mod extension;
#[cfg(feature = "log-bridge")]
mod log;
mod plugin;

pub use abi::{ErrorKind, HealthStatus, PluginInfo};
pub use export::{BuildFacts, Guarded, guard};
pub use extension::{Extension, ExtensionMismatch, Interface, summarize_layout_errors};
pub use plugin::{Error, Health, Host, NoConfig, Plugin, json_call};

/// `tracing`, re-exported so plugin authors log with the same crate the bridge forwards.
pub use tracing;

/// The version of this crate, which is the version of the plugin ABI (`major.minor.patch`).
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Not part of the public API: used by [`export_plugin!`] and by the host.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::{PluginIdentity, lib_header};
    pub use abi_stable::library::LibHeader;
}
