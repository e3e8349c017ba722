//! Berth: load, check and call native Rust plugins shipped as shared libraries.
//!
//! A [`Host`] discovers plugin manifests (TOML) under its plugin directories, refuses anything unsafe or
//! incompatible with a typed error that names the file, the field and what to do, loads the rest, and hands
//! out [`PluginHandle`]s that many threads call at once.
//!
//! ```
//! use berth::{Host, HostConfig};
//!
//! # let dir = tempfile::tempdir().unwrap();
//! let mut config = HostConfig::default();
//! config.plugin_dirs = vec![dir.path().join("plugins")];
//! config.cache_dir = dir.path().join("cache");
//! config.data_dir = dir.path().join("data");
//! # std::fs::create_dir(&config.plugin_dirs[0]).unwrap();
//! let host = Host::new(config)?;
//! let report = host.load_all();
//! for failure in &report.failures {
//!     eprintln!("{failure}");
//! }
//! if let Ok(greeter) = host.plugin("greeter") {
//!     let answer: String = greeter.call_json("greet", &serde_json::json!({ "name": "ops" }))?;
//!     println!("{answer}");
//! }
//! # assert!(report.loaded.is_empty() && report.failures.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The pipeline, one module per step: [`manifest`] -> `discover` -> `verify` (path containment, file type,
//! ELF completeness and architecture, SHA-256, private copy) -> `load` (abi_stable header, plugin-api version,
//! layout) -> `registry` (generations, lifecycle states, events). `reconcile` runs it for the first load and
//! for every hot reload; `watch` triggers it when files change ([`Host::watch`]). See `ARCHITECTURE.md`.
//!
//! # Debug builds of your application
//! Berth hashes every library (SHA-256) before it loads it. Cargo builds dependencies unoptimised in a debug
//! build, and unoptimised SHA-256 makes every load many times slower. Add this to your application's
//! `Cargo.toml` (profiles are the final workspace's to set; a library cannot set them for you):
//!
//! ```toml
//! [profile.dev.package.sha2]
//! opt-level = 3
//! ```
//!
//! # Known problems
//! - A plugin runs in the host's process. Panics are contained (the plugin side catches them and the plugin
//!   is marked failed), but an abort, a segfault or an endless loop inside a plugin is not: it takes the host
//!   with it. Only run plugins you trust that far; a process boundary behind the same API is future work.
//! - Nothing is ever unloaded: abi_stable leaks every library on purpose, since an object it handed out may
//!   still be in use. Each distinct library loaded costs its mapped size for the life of the process.
//! - Opening a library runs its initialisers before any ABI check can happen. The checks before opening
//!   (format, architecture, completeness, hash) keep out damaged and foreign files, not hostile ones.
//!
//! # Platform-specific behaviour
//! - Linux: libraries are ELF shared objects; the format checks read the ELF and program headers. This is
//!   the only platform the project's CI runs.
//! - macOS: `.dylib` (Mach-O). The private copy keeps the library's code signature; a library whose
//!   signature the OS rejects fails at open with the loader's message. Not run by CI.
//! - Windows: `.dll` (PE). A loaded DLL is locked by the OS; Berth always loads its private copy, so the
//!   installed file stays replaceable. Not run by CI.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod breaker;
#[cfg(feature = "install")]
pub mod bundle;
mod checksums;
pub mod config;
mod deadline;
pub mod digest;
mod discover;
mod duration;
pub mod error;
mod fsutil;
pub mod guarded;
mod host;
#[cfg(feature = "install")]
pub mod install;
mod instance;
pub mod isolation;
pub mod json;
mod keys;
mod load;
mod logbridge;
pub mod manifest;
mod name;
mod permissions;
mod pool;
mod reconcile;
mod record;
mod registry;
pub mod trust;
mod verify;
#[cfg(feature = "watch")]
mod watch;

pub use berth_plugin_api::{ErrorKind, HealthStatus, Interface, ext};
#[cfg(feature = "install")]
pub use bundle::Bundle;
#[cfg(feature = "install")]
pub use bundle::BundleError;
pub use config::{HostConfig, IsolationConfig, Overrides, PLUGIN_PATH_ENV, ReloadConfig};
pub use error::{DependencyProblem, HostError, KeyError, LoadError, LoadFailure, ManifestError};
pub use host::{Host, HostBuilder, InspectError, SupervisionPass, WouldNotLoad, inspect_library};
pub use load::LibraryInfo;
pub use manifest::{HealthChecks, Limits, Manifest, OnFailing, PluginName};
pub use reconcile::LoadReport;
pub use registry::{
    BreakerStatus, CallError, Event, EventKind, HEALTH_HISTORY, Health, HealthCheck, HealthReport, LocalTyped,
    Observer, PluginHandle, PluginState, PluginStatus, Retired, Typed,
};
pub use trust::{Trust, TrustConfig, TrustPolicy, TrustedKey};
#[cfg(feature = "watch")]
pub use watch::Watcher;

/// The error a plugin returns from a call, as typed extension interfaces hand it back.
pub use berth_plugin_api::abi::PluginError;
/// Versions, as [`Host::would_load_on`] takes them and manifests hold them.
pub use semver::Version;

/// The berth-plugin-api version this host is built against.
pub const HOST_API_VERSION: &str = berth_plugin_api::API_VERSION;

#[cfg(test)]
mod tests {
    /// The one line an embedder needs for fast loads in a debug build, where embedders look for it.
    #[test]
    fn the_debug_build_profile_line_is_in_the_readme_the_crate_docs_and_the_workspace() {
        let line = "[profile.dev.package.sha2]\nopt-level = 3";
        for (file, text) in [
            ("README.md", include_str!("../../README.md")),
            ("loader/src/lib.rs", &include_str!("lib.rs").replace("//! ", "").replace("//!", "")),
            ("Cargo.toml", include_str!("../../Cargo.toml")),
        ] {
            assert!(text.contains(line), "{file} lacks {line:?}");
        }
    }
}
