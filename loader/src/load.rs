//! Loading: the only module that calls into abi_stable's library loading (never `RootModule::load_from*`,
//! which caches one module per type in a static, so a second plugin would never be opened).
//!
//! Opening a library runs foreign code (its initialisers), and so does every call into the module it
//! exports: this is the boundary where Berth trusts a plugin. Everything before it (`verify`) makes sure the
//! bytes opened here are complete, for this architecture, hashed, and in a private copy no one else can write.
//! The library is never closed: abi_stable leaks it on purpose, because any object it handed out may still be
//! in use.
#![forbid(unsafe_code)]

use std::path::Path;

use abi_stable::StableAbi;
use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
use abi_stable::library::{LibHeader, LibraryError, RootModuleError, lib_header_from_path};
use abi_stable::std_types::RStr;
use berth_plugin_api::abi::{HostContext, PluginModRef, PluginObject};
use berth_plugin_api::{API_VERSION, summarize_layout_errors};
use semver::Version;

use crate::error::LoadError;
use crate::manifest::Manifest;

/// What a library reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct LibraryInfo {
    /// The plugin's name (its Cargo package name).
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// The berth-plugin-api version it was built against.
    pub api_version: String,
    /// The compiler that built it.
    pub rustc: String,
    /// Its target triple.
    pub target: String,
    /// Its cargo profile.
    pub profile: String,
}

/// A library opened and checked: its root module and what it reports.
pub(crate) struct Module {
    pub module: PluginModRef,
    pub info: LibraryInfo,
}

/// The host's plugin-api version.
pub(crate) fn host_api() -> Version {
    Version::parse(API_VERSION).expect("berth-plugin-api's own version is valid semver")
}

/// The manifest's `api` requirement must accept the host's plugin-api version.
pub(crate) fn check_api_requirement(manifest: &Manifest) -> Result<(), LoadError> {
    let host = host_api();
    if manifest.api.matches(&host) {
        return Ok(());
    }
    Err(LoadError::ApiRequirement { required: manifest.api.to_string(), host_api: host.to_string() })
}

/// The library must report the manifest's name and version: the two belong together.
pub(crate) fn check_metadata(manifest: &Manifest, info: &LibraryInfo) -> Result<(), LoadError> {
    check_identity(manifest.name.as_str(), &manifest.version, info)
}

/// The library must report `name` at `version` (a manifest's, handed to a worker).
pub(crate) fn check_identity(name: &str, version: &Version, info: &LibraryInfo) -> Result<(), LoadError> {
    if info.name != name {
        return Err(LoadError::MetadataMismatch {
            field: "name",
            manifest: name.to_owned(),
            library: info.name.clone(),
        });
    }
    if Version::parse(&info.version).ok().as_ref() != Some(version) {
        return Err(LoadError::MetadataMismatch {
            field: "version",
            manifest: version.to_string(),
            library: info.version.clone(),
        });
    }
    Ok(())
}

/// Opens the library at `path` and checks its plugin-api version and root-module layout against the host's.
pub(crate) fn open(path: &Path) -> Result<Module, LoadError> {
    let header = lib_header_from_path(path).map_err(|error| open_error(path, error))?;
    check_version(header)?;
    check_layout(header)?;
    let module = header.init_root_module::<PluginModRef>().map_err(|error| open_error(path, error))?;
    let info = module.info();
    let info = LibraryInfo {
        name: info.name.to_string(),
        version: info.version.to_string(),
        api_version: info.api_version.to_string(),
        rustc: info.rustc.to_string(),
        target: info.target.to_string(),
        profile: info.profile.to_string(),
    };
    Ok(Module { module, info })
}

/// The plugin-api version rule, checked before abi_stable's own so the refusal names both versions: the majors
/// must match (for 0.x, the minors: stricter than abi_stable, which also accepts a newer 0.x patch only).
fn check_version(header: &LibHeader) -> Result<(), LoadError> {
    let host = host_api();
    let library_api = header.version_strings().version.to_string();
    api_compatible(&host, &library_api).map_err(|needed| LoadError::IncompatibleApi {
        library_api,
        host_api: host.to_string(),
        needed,
    })
}

/// Whether a library built against plugin-api `library_api` loads on a host of plugin-api `host`; if not,
/// what the host needs (`1.x`, or `0.3.x` for 0.x versions).
pub(crate) fn api_compatible(host: &Version, library_api: &str) -> Result<(), String> {
    let compatible = match Version::parse(library_api) {
        Ok(library) if library.major == 0 => host.major == 0 && host.minor == library.minor,
        Ok(library) => host.major == library.major,
        Err(_) => false,
    };
    if compatible {
        return Ok(());
    }
    Err(if host.major == 0 { format!("0.{}.x", host.minor) } else { format!("{}.x", host.major) })
}

/// Compares the root module layout the library was built with against the host's, every reachable type.
fn check_layout(header: &LibHeader) -> Result<(), LoadError> {
    let Some(found) = header.layout() else {
        return Err(LoadError::AbiMismatch {
            summary: "the library exports no layout to check".to_owned(),
            details: "the root module was exported without its type layout".to_owned(),
        });
    };
    check_layout_compatibility(<PluginModRef as StableAbi>::LAYOUT, found).map_err(|errors| LoadError::AbiMismatch {
        summary: summarize_layout_errors(&errors),
        details: errors.to_string(),
    })
}

fn open_error(path: &Path, error: LibraryError) -> LoadError {
    let path = path.to_owned();
    match error {
        LibraryError::OpenError { err, .. } => LoadError::Open { path, reason: err.to_string() },
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin { path },
        LibraryError::InvalidAbiHeader(found) => LoadError::AbiStableMismatch {
            path,
            found: format!("abi_stable header {found:?}").split_whitespace().collect::<Vec<_>>().join(" "),
            host_api: API_VERSION.to_owned(),
        },
        LibraryError::RootModule { err: RootModuleError::Unwound, .. } => {
            LoadError::ModuleInit { reason: "the root module's constructor panicked".to_owned() }
        }
        other => LoadError::ModuleInit { reason: other.to_string().split_whitespace().collect::<Vec<_>>().join(" ") },
    }
}

/// Creates an instance: `create` with the `[config]` JSON and the host context. The plugin catches its own
/// panics (berth-plugin-api's export machinery), so a panic arrives here as an error value.
pub(crate) fn create(module: &Module, config_json: &str, context: HostContext) -> Result<PluginObject, LoadError> {
    (module.module.create())(RStr::from_str(config_json), context)
        .into_result()
        .map_err(|error| LoadError::Create { kind: error.kind, message: error.message.into_string() })
}
