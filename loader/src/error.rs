//! Every way a load or a call can be refused, as typed values. Display is one lowercase line that names the
//! file, the field or the plugin, and what to do; the cause, when there is one, is in `source()`.
#![forbid(unsafe_code)]

use std::io;
use std::path::PathBuf;

use berth_plugin_api::ErrorKind;

use crate::manifest::PluginName;

/// A manifest that cannot be read or is not valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{}: cannot read the file: {source}", path.display())]
    Read {
        /// The manifest.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// TOML syntax, an unknown key, a missing key or a value that does not fit its field.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// 1-based line of the offending span.
        line: usize,
        /// 1-based column of the offending span.
        column: usize,
        /// What is wrong and what to do.
        message: String,
        /// The offending line with a caret under the span.
        snippet: String,
    },
}

/// Why one plugin was not loaded. Each step of the load pipeline has its own variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A plugin directory named in the host configuration does not exist or cannot be read.
    #[error("plugin directory {}: {source}; fix the host configuration (--plugin-dir, BERTH_PLUGIN_PATH or the config file)", dir.display())]
    PluginDir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The manifest is not valid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Two manifests declare the same plugin name; neither is loaded.
    #[error("plugin name \"{name}\" is also declared by {}; rename or remove one of the two manifests", other.display())]
    DuplicateName {
        /// The name.
        name: PluginName,
        /// The other manifest.
        other: PathBuf,
    },
    /// The manifest names no library for the platform the host runs on.
    #[error("[library] has no `{platform}` entry; add `{platform} = \"<file>\"` for this platform")]
    NoLibraryForPlatform {
        /// `linux`, `macos` or `windows`.
        platform: &'static str,
    },
    /// The library path resolves outside the manifest's directory (through a symlink).
    #[error("[library].{field} = {path:?} resolves to {} outside the plugin directory {}; ship the library inside the plugin directory", resolved.display(), dir.display())]
    PathEscape {
        /// The manifest field (`linux`, `macos`, `windows`).
        field: &'static str,
        /// The path as written.
        path: String,
        /// Where it resolves.
        resolved: PathBuf,
        /// The manifest's directory.
        dir: PathBuf,
    },
    /// The library file does not exist.
    #[error("[library].{field}: {} does not exist; build or install the library, or fix the path", path.display())]
    LibraryMissing {
        /// The manifest field.
        field: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// The library path is not a regular file.
    #[error("[library].{field}: {} is not a regular file; point it at the library file", path.display())]
    NotARegularFile {
        /// The manifest field.
        field: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// Reading a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not a shared library this platform can load (text, another format, an executable...).
    #[error("{} is not a shared library: {reason}; rebuild the plugin as a `cdylib`", path.display())]
    NotSharedLibrary {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The library was built for another architecture.
    #[error("{} is built for {found}, this host runs on {expected}; install the {expected} build", path.display())]
    WrongArchitecture {
        /// The file.
        path: PathBuf,
        /// The host's architecture.
        expected: String,
        /// The library's.
        found: String,
    },
    /// The file ends before the data its own headers describe: a partial copy or an interrupted write.
    #[error("{} is truncated: its headers describe {needed} bytes but the file has {size}; copy the complete file again", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The size its headers need.
        needed: u64,
    },
    /// The SHA-256 of the library is not the one the manifest gives.
    #[error("{}: sha256 mismatch: [library] expects {expected}, the file has {found}; reinstall the library or update the manifest", path.display())]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// The manifest's digest.
        expected: String,
        /// The file's digest.
        found: String,
    },
    /// The private copy could not be written.
    #[error("private cache {}: {source}; check the cache directory (--cache-dir)", dir.display())]
    Cache {
        /// The cache directory.
        dir: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The operating system's loader refused the library.
    #[error("the system loader refused {}: {reason}", path.display())]
    Open {
        /// The private copy that was opened.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// The library loads but exports no Berth plugin.
    #[error("{} is not a Berth plugin (it exports no abi_stable root module); build it with berth-plugin-api's export_plugin!", path.display())]
    NotAPlugin {
        /// The library.
        path: PathBuf,
    },
    /// The library was built with an abi_stable incompatible with the host's.
    #[error("{} was built with an incompatible abi_stable ({found}); rebuild it against berth-plugin-api {host_api}", path.display())]
    AbiStableMismatch {
        /// The library.
        path: PathBuf,
        /// The library's abi_stable header.
        found: String,
        /// The host's plugin-api version.
        host_api: String,
    },
    /// The library was built against a plugin-api whose major version differs from the host's.
    #[error(
        "plugin-api {library_api} is incompatible with this host's {host_api} (needs {needed}); rebuild the plugin against berth-plugin-api {needed}"
    )]
    IncompatibleApi {
        /// The library's plugin-api version.
        library_api: String,
        /// The host's.
        host_api: String,
        /// What the host accepts, e.g. `1.x`.
        needed: String,
    },
    /// The library's root module layout differs from the host's. Display is a one-line summary;
    /// [`LoadError::details`] has abi_stable's full report.
    #[error(
        "plugin-api layout differs from this host's: {summary}; rebuild the plugin against a published berth-plugin-api"
    )]
    AbiMismatch {
        /// One line: the number of differences and the first.
        summary: String,
        /// abi_stable's full report (hundreds of lines).
        details: String,
    },
    /// The root module's initialiser failed or panicked.
    #[error("the library's root module failed to initialise: {reason}")]
    ModuleInit {
        /// abi_stable's message.
        reason: String,
    },
    /// The manifest's `api` requirement does not accept the host's plugin-api version.
    #[error(
        "`api = \"{required}\"` does not accept this host's plugin-api {host_api}; use a plugin version made for plugin-api {host_api}, or upgrade the host"
    )]
    ApiRequirement {
        /// The manifest's requirement.
        required: String,
        /// The host's plugin-api version.
        host_api: String,
    },
    /// The library reports a name or version other than the manifest's.
    #[error(
        "`{field} = {manifest:?}` but the library reports {library:?}; the manifest and the library do not belong together"
    )]
    MetadataMismatch {
        /// `name` or `version`.
        field: &'static str,
        /// The manifest's value.
        manifest: String,
        /// The library's value.
        library: String,
    },
    /// A dependency is missing, at a version the requirement refuses, or failed itself.
    #[error("[dependencies].{dependency}: {reason}")]
    Dependency {
        /// The dependency's name.
        dependency: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The plugin's `create` returned an error or panicked.
    #[error("create failed ({kind:?}): {message}")]
    Create {
        /// The plugin's error kind (`Panicked` for a caught panic).
        kind: ErrorKind,
        /// The plugin's message.
        message: String,
    },
    /// The library file changed while it was being read: something is still writing it.
    #[error("{} changed while it was read: it is still being written; it is read again once it stays unchanged", path.display())]
    Unstable {
        /// The library.
        path: PathBuf,
    },
    /// The serving generation's state could not be handed to the new one (`berth.state/1`).
    #[error("state hand-over failed: {reason}")]
    StateHandover {
        /// What failed and what to do.
        reason: String,
    },
    /// The plugin refused a changed `[config]` (`berth.reconfigure/1`); it keeps its previous config.
    #[error("the new [config] was refused ({kind:?}): {message}; the plugin keeps serving with its previous config")]
    Reconfigure {
        /// The plugin's error kind.
        kind: ErrorKind,
        /// The plugin's message.
        message: String,
    },
    /// The plugin has as many retired generations as the host allows (each keeps its library mapped).
    #[error(
        "{retired} retired generations already pin {} of libraries (max_retired_generations = {limit}); restart the host to reclaim that memory, or raise [reload].max_retired_generations in the host configuration",
        mebibytes(*bytes)
    )]
    RetiredLimit {
        /// How many generations are retired.
        retired: u64,
        /// The bytes of the libraries they keep mapped.
        bytes: u64,
        /// The configured limit.
        limit: u32,
    },
}

/// `bytes` as MiB with one decimal, for messages.
pub(crate) fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl LoadError {
    /// The long form for `--verbose` and the debug log: abi_stable's full layout report where there is one,
    /// else the one-line message.
    pub fn details(&self) -> String {
        match self {
            LoadError::AbiMismatch { details, .. } => details.clone(),
            other => other.to_string(),
        }
    }
}

/// One plugin that did not load: where it came from, its name when known, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}{error}", manifest.display(), plugin.as_ref().map(|p| format!("plugin {:?}: ", p.as_str())).unwrap_or_default())]
pub struct LoadFailure {
    /// The manifest (or the plugin directory, for a directory that cannot be read).
    pub manifest: PathBuf,
    /// The plugin's name, when the manifest got far enough to give one.
    pub plugin: Option<PluginName>,
    /// Why.
    #[source]
    pub error: LoadError,
}

/// Why a call was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No plugin of that name is known.
    #[error("no plugin named {0:?}; `berth list` shows the plugins")]
    UnknownPlugin(String),
    /// The plugin is known but not serving (failed, disabled...).
    #[error("plugin {plugin:?} is {state}: {reason}")]
    NotActive {
        /// The plugin.
        plugin: String,
        /// Its state.
        state: crate::registry::PluginState,
        /// Why it is in that state.
        reason: String,
    },
    /// The plugin answered with an error.
    #[error("plugin {plugin:?}: {kind:?}: {message}")]
    Plugin {
        /// The plugin.
        plugin: String,
        /// The plugin's error kind.
        kind: ErrorKind,
        /// The plugin's message.
        message: String,
    },
    /// The input could not be encoded or the answer decoded (the JSON helpers).
    #[error("plugin {plugin:?}: {message}")]
    Codec {
        /// The plugin.
        plugin: String,
        /// What could not be encoded or decoded.
        message: String,
    },
    /// The plugin does not provide the extension interface, or its layout is incompatible.
    #[error("plugin {plugin:?}: extension {id:?}: {reason}")]
    Extension {
        /// The plugin.
        plugin: String,
        /// The interface id.
        id: String,
        /// Why it cannot be used.
        reason: String,
    },
}

/// The host could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// A plugin directory cannot be watched.
    #[error("cannot watch plugin directory {}: {reason}; create it or fix the host configuration", dir.display())]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// The watcher's message.
        reason: String,
    },
    /// The private cache directory cannot be created or is unsafe.
    #[error("private cache {}: {reason}", dir.display())]
    Cache {
        /// The directory.
        dir: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The host configuration file is not valid.
    #[error(transparent)]
    Config(#[from] ManifestError),
}
