//! Every way a load or a call can be refused, as typed values. Display is one lowercase line that names the
//! file, the field or the plugin, and what to do; the cause, when there is one, is in `source()`.
#![forbid(unsafe_code)]

use std::io;
use std::path::PathBuf;

use berth_plugin_api::ErrorKind;

use crate::name::PluginName;

/// A manifest that cannot be read or is not valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read: missing, not a regular file, too large, not text.
    #[error("{}: {error}", path.display())]
    Read {
        /// The manifest.
        path: PathBuf,
        /// The cause.
        error: crate::guarded::ReadError,
    },
    /// The file could not be written.
    #[error("{}: cannot write the file: {error}", path.display())]
    Write {
        /// The manifest.
        path: PathBuf,
        /// The cause.
        error: io::Error,
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
    /// A trusted key in the host configuration cannot be read.
    #[error("{}: [trust].keys: {error}", path.display())]
    TrustedKey {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with the key.
        error: KeyError,
    },
}

/// An I/O error as a message says it: "it does not exist" for a missing file or directory.
fn io_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "it does not exist".to_owned(),
        _ => error.to_string(),
    }
}

/// Why a trusted key could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key text holds no key line.
    #[error("it is empty")]
    Empty,
    /// The key line is not a minisign public key.
    #[error("not a minisign public key{reason}")]
    Malformed {
        /// What the decoder said, in parentheses, or nothing.
        reason: String,
    },
    /// The key file cannot be read.
    #[error("key file {} cannot be read: {error}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        error: crate::guarded::ReadError,
    },
    /// The key file, or a directory above it, could be replaced by another user.
    #[error(transparent)]
    Unsafe(Box<LoadError>),
    /// The key file's content is not a key.
    #[error("{}: {error}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        error: Box<KeyError>,
    },
}

/// What is wrong with a dependency ([`LoadError::Dependency`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DependencyProblem {
    /// No plugin of that name is installed.
    Missing,
    /// It is installed with `enabled = false`.
    Disabled,
    /// It failed to load.
    Failed,
    /// It is not serving (checked when this plugin is reloaded).
    NotServing,
    /// Its version does not meet the requirement.
    WrongVersion {
        /// The version installed, or serving.
        found: String,
        /// The requirement in `[dependencies]`.
        required: String,
        /// Whether `found` is the serving version (a reload) rather than the installed one (a first load).
        serving: bool,
    },
    /// A new version of this plugin (the dependency of `dependent`) would break `dependent`, serving on it.
    BreaksDependent {
        /// The plugin that requires another version.
        dependent: String,
        /// What it requires.
        required: String,
        /// The new version.
        version: String,
    },
    /// This plugin is in a dependency cycle: its members in dependency order from this plugin, the first repeated
    /// at the end (`a -> b -> a`).
    Cycle {
        /// The cycle.
        members: Vec<PluginName>,
    },
    /// This plugin depends on a plugin in a dependency cycle (its members, as for [`DependencyProblem::Cycle`]).
    WaitsOnCycle {
        /// The cycle.
        members: Vec<PluginName>,
    },
}

impl DependencyProblem {
    /// What is wrong with `dependency` and what to do.
    fn explain(&self, dependency: &str) -> String {
        let cycle = |members: &[PluginName]| members.iter().map(PluginName::as_str).collect::<Vec<_>>().join(" -> ");
        match self {
            DependencyProblem::Missing => {
                format!("no plugin named {dependency} is installed; install it or remove the dependency")
            }
            DependencyProblem::Disabled => format!("{dependency} is disabled; enable it or remove the dependency"),
            DependencyProblem::Failed => format!("{dependency} failed to load; fix it first"),
            DependencyProblem::NotServing => {
                format!("{dependency} is not serving; load it first or remove the dependency")
            }
            DependencyProblem::WrongVersion { found, required, serving } => {
                let state = if *serving { "serving" } else { "installed" };
                format!("{dependency} {found} is {state} but {required} is required; install a matching version")
            }
            DependencyProblem::BreaksDependent { dependent, required, version } => format!(
                "{dependent} (serving) requires {dependency} {required}, which version {version} would break; upgrade {dependent} first"
            ),
            DependencyProblem::Cycle { members } => {
                format!("dependency cycle {}; break it in [dependencies]", cycle(members))
            }
            DependencyProblem::WaitsOnCycle { members } => {
                format!("{dependency} waits on a dependency cycle ({}); break it in [dependencies]", cycle(members))
            }
        }
    }
}

/// Why one plugin was not loaded. Each step of the load pipeline has its own variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A plugin directory named in the host configuration does not exist or cannot be read.
    #[error("plugin directory {}: {}; fix the host configuration (--plugin-dir, BERTH_PLUGIN_PATH or the config file)", dir.display(), io_reason(error))]
    PluginDir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        error: io::Error,
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
    /// A file beside the library (its signature, the checksum file) cannot be read: not a regular file,
    /// too large, not text.
    #[error("{}: {error}; remove it or reinstall the plugin's bundle", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: crate::guarded::ReadError,
    },
    /// Reading a file failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: io::Error,
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
    /// The library is larger than the host accepts; refused before it is read.
    #[error(
        "{} holds {size} bytes, more than the {limit} bytes this host accepts for a library; if it is a genuine library, raise [trust] max_library_mib in the host configuration",
        path.display()
    )]
    LibraryTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit (`[trust] max_library_mib`).
        limit: u64,
    },
    /// The plugin was built with `panic = "abort"`: its first panic would end the host.
    #[error(
        "{} was built with panic = \"abort\", so its first panic would end this host instead of failing one call; rebuild it with panic = \"unwind\" (remove `panic = \"abort\"` from the [profile] sections of its Cargo.toml and the workspace's)",
        path.display()
    )]
    PanicAbort {
        /// The library.
        path: PathBuf,
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
    /// The SHA-256 of the library is not the one the manifest or the bundle's checksum file gives.
    #[error("{}: sha256 mismatch: {expected_by} expects {expected}, the file has {found}; reinstall the plugin (its bundle) or fix {expected_by}", path.display())]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// Where the expected digest comes from: the manifest's `[library]` or a `SHA256SUMS` file.
        expected_by: String,
        /// The expected digest.
        expected: String,
        /// The file's digest.
        found: String,
    },
    /// The bundle's checksum file beside the manifest cannot be used.
    #[error("{}: {reason}; reinstall the plugin's bundle", path.display())]
    ChecksumFile {
        /// The `SHA256SUMS` file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file or directory the plugin is loaded from could be changed by another user (`StrictModes`).
    #[error("{} (mode {mode:04o}): {reason}", path.display())]
    UnsafePermissions {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Who could change it and what to do.
        reason: String,
    },
    /// The trust policy is `enforce` and the library has no signature.
    #[error("{} is not signed ({} does not exist) and [trust].policy = \"enforce\"; install the plugin's signed bundle, or ask its publisher for the signature file and put it beside the library", library.display(), signature.display())]
    Unsigned {
        /// The library.
        library: PathBuf,
        /// Where its signature would be.
        signature: PathBuf,
    },
    /// The signature file is not a minisign signature Berth accepts. Refused under every policy.
    #[error("{}: not a usable minisign signature: {reason}; reinstall the plugin's bundle or remove the file", path.display())]
    SignatureMalformed {
        /// The signature file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The policy is `enforce` and the signature's key is not among the trusted keys.
    #[error("{}: signed by key {key}, which is not one of the {trusted} trusted key(s); if you trust this publisher, add their public key to [trust].keys", path.display())]
    UnknownKey {
        /// The signature file.
        path: PathBuf,
        /// The signing key's id.
        key: String,
        /// How many keys the host trusts.
        trusted: usize,
    },
    /// The signature, by a trusted key, does not match the library's bytes. Refused under every policy.
    #[error("{}: the signature by trusted key {key} does not match the bytes of {}: the library was changed after it was signed, or the signature belongs to another file; reinstall the plugin's bundle", path.display(), library.display())]
    SignatureInvalid {
        /// The signature file.
        path: PathBuf,
        /// The library.
        library: PathBuf,
        /// The key id.
        key: String,
    },
    /// The signature is valid but was made for another plugin, version, target or library. Refused under
    /// every policy.
    #[error("{}: the signature is for \"{signed}\", but this is \"{expected}\": a signature moved from another plugin, version or target; install the bundle this version was published in", path.display())]
    SignatureStatement {
        /// The signature file.
        path: PathBuf,
        /// What the signature's statement says.
        signed: String,
        /// What it must say for this plugin.
        expected: String,
    },
    /// The version is older than the highest this host has accepted, and the manifest does not pin it.
    #[error("version {version} is older than {highest}, the highest version of this plugin the host has accepted (recorded in {}); {}", record.display(), match pin { Some(pin) => format!("the manifest pins {pin}, not {version}; set pin = \"{version}\" to roll back on purpose"), None => format!("install {highest} or newer, or add pin = \"{version}\" to the manifest to roll back on purpose") })]
    Downgrade {
        /// The manifest's version.
        version: String,
        /// The highest accepted.
        highest: String,
        /// The accepted-versions file.
        record: PathBuf,
        /// The manifest's `pin`, when it names another version.
        pin: Option<String>,
    },
    /// The accepted version could not be recorded; the plugin is not loaded, since an unrecorded version
    /// would weaken the rollback protection.
    #[error("cannot record the accepted version in {}: {reason}; check the data directory (--data-dir)", path.display())]
    VersionRecord {
        /// The accepted-versions file.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// The private copy could not be written.
    #[error("private cache {}: {error}; check the cache directory (--cache-dir)", dir.display())]
    Cache {
        /// The cache directory.
        dir: PathBuf,
        /// The cause.
        error: io::Error,
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
    /// A dependency is missing, disabled, failed, at a version the requirement refuses, or in a cycle.
    #[error("[dependencies].{dependency}: {}", problem.explain(dependency))]
    Dependency {
        /// The dependency's name.
        dependency: String,
        /// Which case it is (the message says it, with what to do).
        problem: DependencyProblem,
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
    /// The manifest's `[limits]` or `[health]` cannot be applied by this host.
    #[error("{table}: {reason}")]
    Limits {
        /// The table: `[limits]` or `[health]`.
        table: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The plugin is to run in a worker process (`isolation = "process"`) and no worker could serve it: no
    /// isolator, no worker executable, a sandbox the OS cannot enforce under `require_sandbox`, or the worker
    /// refused the library (the same checks as an in-process load, reported by the worker).
    #[error("isolation: {reason}")]
    Isolation {
        /// What stands in the way and what to do.
        reason: String,
    },
    /// A new library image would be mapped while the images no serving generation uses already reach the
    /// host's limit (libraries are never unmapped). A build already mapped still loads.
    #[error(
        "the libraries no plugin serves from any more already keep {} mapped ({images} image(s), {generations} retired generation(s)), the most this host allows ([reload].max_retired_mib = {}); a build already loaded once still loads; restart the host to reclaim that memory, or raise [reload].max_retired_mib in the host configuration",
        mebibytes(*bytes),
        limit >> 20
    )]
    RetiredLimit {
        /// Retired generations, host-wide.
        generations: u64,
        /// Distinct library images mapped that no serving generation uses.
        images: u64,
        /// Their bytes.
        bytes: u64,
        /// The configured limit, in bytes.
        limit: u64,
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
    pub error: LoadError,
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
    /// The data directory (accepted versions) cannot be created, is not private, or its record is unreadable.
    #[error("data directory {}: {reason}", dir.display())]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The host configuration file is not valid.
    #[error(transparent)]
    Config(#[from] ManifestError),
}

// The tests build install errors too, and the refusals table quotes them.
#[cfg(all(test, feature = "install"))]
mod tests {
    use std::error::Error;
    use std::io;
    use std::path::PathBuf;

    use super::*;
    use crate::guarded::ReadError;
    use crate::install::InstallError;

    /// Every error's message is whole by itself (what the CLI prints, what a status's `reason` holds); an
    /// error-chain printer (anyhow's `{:#}`, eyre's report) walks `source()` too. No part of the chain repeats
    /// the text of the part it wraps, or the printer shows it twice.
    #[test]
    fn no_error_repeats_the_message_of_its_source() {
        let path = || PathBuf::from("plugins/demo/demo.toml");
        let denied = || io::Error::from(io::ErrorKind::PermissionDenied);
        let errors: Vec<Box<dyn Error>> = vec![
            Box::new(LoadError::Io { path: path(), error: denied() }),
            Box::new(LoadError::Read { path: path(), error: ReadError::Io(denied()) }),
            Box::new(LoadError::PluginDir { dir: path(), error: denied() }),
            Box::new(LoadError::Cache { dir: path(), error: denied() }),
            Box::new(LoadError::Manifest(ManifestError::Read { path: path(), error: ReadError::NotText })),
            Box::new(LoadFailure {
                manifest: path(),
                plugin: None,
                error: LoadError::Io { path: path(), error: denied() },
            }),
            Box::new(ManifestError::Write { path: path(), error: denied() }),
            Box::new(crate::bundle::BundleError::Read { path: path(), error: ReadError::Io(denied()) }),
            Box::new(KeyError::Unreadable { path: path(), error: ReadError::Missing }),
            Box::new(KeyError::InFile { path: path(), error: Box::new(KeyError::Empty) }),
            Box::new(HostError::Config(ManifestError::Read { path: path(), error: ReadError::NotText })),
            Box::new(InstallError::Io { path: path(), error: denied() }),
            Box::new(InstallError::Refused {
                manifest: path(),
                error: Box::new(LoadError::Io { path: path(), error: denied() }),
            }),
            Box::new(ReadError::Io(denied())),
        ];
        for error in &errors {
            let mut outer: &dyn Error = error.as_ref();
            while let Some(inner) = outer.source() {
                let (outer_text, inner_text) = (outer.to_string(), inner.to_string());
                assert!(!outer_text.contains(&inner_text), "{outer_text:?} repeats its source {inner_text:?}");
                outer = inner;
            }
            assert!(
                error.to_string().contains("denied") || !format!("{error:?}").contains("PermissionDenied"),
                "{error}"
            );
        }
    }

    /// The refusals docs/ops.md quotes are the messages the code writes, byte for byte: each error is built with
    /// the placeholders the table uses (`<file>`, `<dir>`, ...) as its values, and the table must hold the text.
    /// A message changed in one place and not the other fails here.
    #[test]
    fn the_refusals_ops_md_quotes_are_the_messages_the_code_writes() {
        let ops = include_str!("../../docs/ops.md");
        let p = PathBuf::from;
        let s = |text: &str| text.to_owned();
        let name = |name: &str| PluginName::new(name).unwrap();
        let dependency = |problem| LoadError::Dependency { dependency: s("<dep>"), problem };
        let refusals = [
            LoadError::PluginDir { dir: p("<dir>"), error: io::Error::from(io::ErrorKind::NotFound) },
            LoadError::NoLibraryForPlatform { platform: "linux" },
            LoadError::PathEscape { field: "linux", path: s("<path>"), resolved: p("<resolved>"), dir: p("<dir>") },
            LoadError::LibraryMissing { field: "linux", path: p("<path>") },
            LoadError::NotARegularFile { field: "linux", path: p("<path>") },
            LoadError::NotSharedLibrary { path: p("<file>"), reason: s("<reason>") },
            LoadError::WrongArchitecture { path: p("<file>"), expected: s("<expected>"), found: s("<found>") },
            LoadError::PanicAbort { path: p("<file>") },
            LoadError::HashMismatch {
                path: p("<file>"),
                expected_by: s("[library].linux.sha256 in <manifest>"),
                expected: s("<digest>"),
                found: s("<digest>"),
            },
            LoadError::HashMismatch {
                path: p("<file>"),
                expected_by: s("<dir>/SHA256SUMS"),
                expected: s("<digest>"),
                found: s("<digest>"),
            },
            LoadError::ChecksumFile { path: p("<dir>/SHA256SUMS"), reason: s("it does not list the library <path>") },
            LoadError::Unsigned { library: p("<file>"), signature: p("<file>.minisig") },
            LoadError::SignatureMalformed { path: p("<file>.minisig"), reason: s("<reason>") },
            LoadError::SignatureInvalid { path: p("<file>.minisig"), library: p("<file>"), key: s("<key id>") },
            LoadError::SignatureStatement {
                path: p("<file>.minisig"),
                signed: s("<statement>"),
                expected: s("<statement>"),
            },
            LoadError::Downgrade {
                version: s("<version>"),
                highest: s("<highest>"),
                record: p("<data dir>/accepted-versions.toml"),
                pin: None,
            },
            LoadError::Downgrade {
                version: s("<version>"),
                highest: s("<highest>"),
                record: p("<data dir>/accepted-versions.toml"),
                pin: Some(s("<pin>")),
            },
            LoadError::Cache { dir: p("<dir>"), error: io::Error::other("<io error>") },
            LoadError::Open { path: p("<copy>"), reason: s("<loader's message>") },
            LoadError::NotAPlugin { path: p("<copy>") },
            LoadError::AbiStableMismatch { path: p("<copy>"), found: s("<header>"), host_api: s("<host>") },
            LoadError::IncompatibleApi { library_api: s("2.0.0"), host_api: s("1.3.0"), needed: s("1.x") },
            LoadError::ModuleInit { reason: s("<reason>") },
            LoadError::ApiRequirement { required: s("<req>"), host_api: s("<host>") },
            LoadError::MetadataMismatch { field: "name", manifest: s("<manifest>"), library: s("<library>") },
            dependency(DependencyProblem::Disabled),
            dependency(DependencyProblem::Missing),
            dependency(DependencyProblem::Failed),
            dependency(DependencyProblem::WrongVersion {
                found: s("<version>"),
                required: s("<requirement>"),
                serving: false,
            }),
            LoadError::Dependency {
                dependency: s("<next>"),
                problem: DependencyProblem::Cycle { members: vec![name("a"), name("b"), name("c"), name("a")] },
            },
            dependency(DependencyProblem::WaitsOnCycle { members: vec![name("b"), name("c"), name("a"), name("b")] }),
        ];
        let limits = ["burst = 1", "call_timeout = \"0ms\""]
            .into_iter()
            .map(|limits| format!("[limits]\n{limits}\n"))
            .chain(
                ["[health]\ninterval = \"1ms\"\n", "[health]\ninterval = \"1s\"\ntimeout = \"0ms\"\n"]
                    .map(String::from),
            )
            .filter_map(|table| {
                let text = format!(
                    "name = \"demo\"\nversion = \"1.0.0\"\napi = \"^1.0\"\n[library]\nlinux = \"l.so\"\n{table}"
                );
                let manifest = crate::manifest::Manifest::parse(std::path::Path::new("demo.toml"), &text).ok()?;
                crate::registry::Supervision::of(&manifest, None).err().map(|refusal| refusal.to_string())
            })
            .collect::<Vec<_>>();
        assert_eq!(limits.len(), 4, "each limit refused: {limits:?}");
        let installs =
            [InstallError::NoPluginDir { dir: p("<dir>") }, InstallError::NotADirectory { path: p("<dir>/<name>") }];
        let messages =
            refusals.iter().map(ToString::to_string).chain(installs.iter().map(ToString::to_string)).chain(limits);
        let missing: Vec<String> = messages.filter(|message| !ops.contains(message.as_str())).collect();
        assert!(missing.is_empty(), "docs/ops.md does not quote these messages as the code writes them:\n{missing:#?}");
    }
}
