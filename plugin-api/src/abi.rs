//! Everything that crosses the plugin boundary, frozen within a major version of this crate.
//!
//! These are the types abi_stable checks when a host loads a plugin: the root module [`PluginMod`], the
//! instance vtable [`PluginInstance`], the logging vtable [`HostLogger`] and every type they reach. Adding a
//! field or a method here, or changing a type, makes every plugin built against an older 1.x refuse to load
//! ("too many fields"), so within 1.x they never change: new capability is a new extension interface
//! ([`crate::ext`]). Plugin authors never use this module directly; hosts use it through the `berth` crate.
// abi_stable's `#[sabi_trait]` expands to impls inside a `const` block, which rustc's newer lint flags.
#![allow(non_local_definitions)]

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec},
};

use crate::extension::Extension;

/// The root module a plugin library exports (through [`crate::export_plugin!`]).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// What the library says about itself: name, version, plugin-api version, build facts.
    pub info: PluginInfo,
    /// Creates an instance from the manifest's `[config]` table (as JSON) and the host's context.
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(config: RStr<'_>, host: HostContext) -> RResult<PluginObject, PluginError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "berth_plugin";
    const NAME: &'static str = "berth plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The facts a library reports about itself, compared by the host with the plugin's manifest.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct PluginInfo {
    /// The plugin's name: its Cargo package name.
    pub name: RStr<'static>,
    /// The plugin's own version: its Cargo package version.
    pub version: RStr<'static>,
    /// The version of `berth-plugin-api` the library was built against.
    pub api_version: RStr<'static>,
    /// `rustc --version` of the compiler that built the library.
    pub rustc: RStr<'static>,
    /// The target triple the library was built for.
    pub target: RStr<'static>,
    /// The cargo profile (`debug` or `release`).
    pub profile: RStr<'static>,
}

/// An instance of a plugin, as the host holds it.
pub type PluginObject = PluginInstance_TO<'static, RBox<()>>;

/// The instance vtable. Implemented for plugin authors by the export machinery, which catches panics.
#[sabi_trait]
pub trait PluginInstance: Send + Sync {
    /// The generic call: a method name and bytes in, bytes out.
    fn call(&self, method: RStr<'_>, input: RSlice<'_, u8>) -> RResult<RVec<u8>, PluginError>;

    /// How the plugin says it is doing.
    fn health(&self) -> HealthReport;

    /// The extension interface with this id, when the plugin provides it.
    fn extension(&self, id: RStr<'_>) -> ROption<Extension>;

    /// Called once before the host drops the instance.
    #[sabi(last_prefix_field)]
    fn shutdown(&self) -> RResult<(), PluginError>;
}

/// What the host hands a plugin at creation.
#[repr(C)]
#[derive(StableAbi)]
pub struct HostContext {
    /// The plugin's name as the host knows it (from the manifest).
    pub plugin: RString,
    /// The generation this instance is: 1 for the first load, one more for every reload.
    pub generation: u64,
    /// The most verbose level the host will record; the plugin does not format events above it.
    pub max_level: LogLevel,
    /// Where the plugin's `tracing` events go.
    pub logger: HostLoggerObject,
}

/// The host's side of the logging bridge.
pub type HostLoggerObject = HostLogger_TO<'static, RBox<()>>;

/// The logging vtable, implemented by the host.
#[sabi_trait]
pub trait HostLogger: Send + Sync {
    /// Records one event from the plugin.
    #[sabi(last_prefix_field)]
    fn log(&self, record: LogRecord<'_>);
}

/// One `tracing` event from inside a plugin.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct LogRecord<'a> {
    /// Its level.
    pub level: LogLevel,
    /// The module path the event was emitted from.
    pub target: RStr<'a>,
    /// The event's `message` field.
    pub message: RStr<'a>,
    /// The event's other fields, as `key=value` pairs separated by spaces.
    pub fields: RStr<'a>,
}

/// A log level; `Off` only as [`HostContext::max_level`].
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Nothing is recorded.
    Off,
    /// Errors.
    Error,
    /// Warnings.
    Warn,
    /// Information.
    Info,
    /// Debugging detail.
    Debug,
    /// Tracing detail.
    Trace,
}

/// An error returned across the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// What kind of failure it is.
    pub kind: ErrorKind,
    /// A message for a person.
    pub message: RString,
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for PluginError {}

/// The kinds of failure a plugin reports. Frozen within a major version.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The plugin could not do what was asked.
    Failed,
    /// The plugin panicked; the panic was caught inside the plugin.
    Panicked,
    /// No such method.
    UnknownMethod,
    /// The input could not be decoded or was refused.
    InvalidInput,
    /// The `[config]` table could not be decoded or was refused.
    InvalidConfig,
    /// The plugin is temporarily unable to serve (a quota, a dependency...).
    Unavailable,
}

/// The answer to a health query.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// The overall status.
    pub status: HealthStatus,
    /// Why, when not `Ok`.
    pub detail: RString,
}

/// A plugin's health.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthStatus {
    /// Serving normally.
    Ok,
    /// Serving, with a problem worth a look.
    Degraded,
    /// Not able to serve.
    Failing,
}
