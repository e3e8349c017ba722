//! The host: runs the load pipeline over every discovered manifest and owns the registry.
//!
//! Per plugin, each step a distinct error: manifest (parse + validate) -> duplicate names -> `api`
//! requirement and dependencies (manifest-only checks first: nothing is opened for a plugin that cannot be
//! used anyway) -> verify (path, file, format, completeness, SHA-256) -> private copy -> load (abi_stable
//! header, version, layout) -> metadata cross-check -> create -> Active. One bad plugin never stops the
//! others: [`Host::load_all`] returns what loaded plus every failure.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::mpsc::Receiver;

use semver::Version;

use crate::config::HostConfig;
use crate::discover::discover;
use crate::error::{CallError, HostError, LoadError, LoadFailure};
use crate::load::{self, host_api};
use crate::logbridge;
use crate::manifest::{Manifest, PluginName};
use crate::registry::{Event, Generation, PluginHandle, PluginState, PluginStatus, Registry};
use crate::verify::{PrivateCache, verify_library};

/// What a load did: the plugins now active, those disabled by their manifests, and every failure.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Plugins that loaded and are serving.
    pub loaded: Vec<PluginName>,
    /// Plugins whose manifest says `enabled = false`.
    pub disabled: Vec<PluginName>,
    /// Everything that did not load, with the reason.
    pub failures: Vec<LoadFailure>,
}

/// A plugin host: configuration, private cache and registry.
pub struct Host {
    config: HostConfig,
    cache: PrivateCache,
    registry: Registry,
}

impl Host {
    /// Creates a host; fails only when the private cache directory cannot be created or is not private.
    pub fn new(config: HostConfig) -> Result<Host, HostError> {
        let cache = PrivateCache::open(&config.cache_dir)?;
        Ok(Host { config, cache, registry: Registry::default() })
    }

    /// The configuration the host runs with.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Discovers every manifest under the plugin directories and loads every enabled plugin, dependencies
    /// first.
    pub fn load_all(&self) -> LoadReport {
        let (paths, failures) = discover(&self.config.plugin_dirs);
        let mut report = LoadReport { failures, ..LoadReport::default() };
        let mut by_name: BTreeMap<PluginName, Vec<Manifest>> = BTreeMap::new();
        for path in paths {
            match Manifest::load(&path) {
                Ok(manifest) => by_name.entry(manifest.name.clone()).or_default().push(manifest),
                Err(error) => report.failures.push(LoadFailure { manifest: path, plugin: None, error: error.into() }),
            }
        }
        let mut pending = Vec::new();
        for (name, mut manifests) in by_name {
            if manifests.len() > 1 {
                for (i, manifest) in manifests.iter().enumerate() {
                    let other = manifests[(i + 1) % manifests.len()].path.clone();
                    self.fail(&mut report, manifest, LoadError::DuplicateName { name: name.clone(), other });
                }
                continue;
            }
            let manifest = manifests.remove(0);
            self.registry.transition(
                &manifest,
                PluginState::Discovered,
                format!("manifest {}", manifest.path.display()),
            );
            if manifest.enabled {
                pending.push(manifest);
            } else {
                self.registry.transition(
                    &manifest,
                    PluginState::Disabled,
                    format!("enabled = false in {}", manifest.path.display()),
                );
                report.disabled.push(manifest.name);
            }
        }
        self.load_in_dependency_order(pending, &mut report);
        report
    }

    /// Loads `pending` so that every plugin comes after the plugins it depends on; a plugin whose dependency
    /// is missing, disabled, at a refused version, failed, or in a cycle fails with that reason.
    fn load_in_dependency_order(&self, mut pending: Vec<Manifest>, report: &mut LoadReport) {
        let known: BTreeSet<PluginName> = pending.iter().map(|m| m.name.clone()).collect();
        let mut outcome: BTreeMap<PluginName, Option<Version>> = BTreeMap::new();
        loop {
            let before = pending.len();
            let mut waiting = Vec::new();
            for manifest in pending {
                match dependencies_ready(&manifest, &known, &outcome, &report.disabled) {
                    Ok(false) => waiting.push(manifest),
                    Ok(true) => {
                        let result = self.load_one(&manifest);
                        outcome.insert(manifest.name.clone(), result.is_ok().then(|| manifest.version.clone()));
                        match result {
                            Ok(()) => report.loaded.push(manifest.name.clone()),
                            Err(error) => self.fail(report, &manifest, error),
                        }
                    }
                    Err(error) => {
                        outcome.insert(manifest.name.clone(), None);
                        self.fail(report, &manifest, error);
                    }
                }
            }
            pending = waiting;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        for manifest in pending {
            let names: Vec<&str> = manifest.dependencies.keys().map(PluginName::as_str).collect();
            let error = LoadError::Dependency {
                dependency: names.join(", "),
                reason: "dependency cycle: these plugins depend on each other; break the cycle in [dependencies]"
                    .to_owned(),
            };
            self.fail(report, &manifest, error);
        }
    }

    fn fail(&self, report: &mut LoadReport, manifest: &Manifest, error: LoadError) {
        self.registry.transition(manifest, PluginState::Failed, error.to_string());
        tracing::debug!(plugin = %manifest.name, "{}", error.details());
        report.failures.push(LoadFailure {
            manifest: manifest.path.clone(),
            plugin: Some(manifest.name.clone()),
            error,
        });
    }

    /// The pipeline for one plugin whose dependencies are loaded.
    fn load_one(&self, manifest: &Manifest) -> Result<(), LoadError> {
        let host = host_api();
        if !manifest.api.matches(&host) {
            return Err(LoadError::ApiRequirement { required: manifest.api.to_string(), host_api: host.to_string() });
        }
        let verified = verify_library(manifest)?;
        self.registry.transition(
            manifest,
            PluginState::Validated,
            format!("{} sha256 {}", verified.source.display(), verified.sha256),
        );
        let copy = self.cache.store(&verified)?;
        let module = load::open(&copy)?;
        self.registry.transition(manifest, PluginState::Loaded, format!("plugin-api {}", module.info.api_version));
        if module.info.name != manifest.name.as_str() {
            return Err(LoadError::MetadataMismatch {
                field: "name",
                manifest: manifest.name.to_string(),
                library: module.info.name,
            });
        }
        if Version::parse(&module.info.version).ok().as_ref() != Some(&manifest.version) {
            return Err(LoadError::MetadataMismatch {
                field: "version",
                manifest: manifest.version.to_string(),
                library: module.info.version,
            });
        }
        let number = self.registry.next_generation(manifest);
        let context = logbridge::context(manifest.name.as_str(), &module.info.version, number);
        let object = load::create(&module, &manifest.config_json(), context)?;
        self.registry.activate(Generation {
            number,
            manifest: manifest.clone(),
            library: module.info,
            sha256: verified.sha256,
            object,
        });
        Ok(())
    }

    /// A handle on the plugin called `name`, whatever its state.
    pub fn plugin(&self, name: &str) -> Result<PluginHandle, CallError> {
        self.registry.handle(name)
    }

    /// The status of every plugin the host knows, by name.
    pub fn plugins(&self) -> Vec<PluginStatus> {
        self.registry.statuses()
    }

    /// A channel that receives every lifecycle transition from now on.
    pub fn subscribe(&self) -> Receiver<Event> {
        self.registry.subscribe()
    }

    /// Takes every plugin out of service, in name order; each instance's `shutdown` runs once its last call
    /// in flight returns. Also done on drop.
    pub fn shutdown(&self) {
        self.registry.shutdown();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Whether `manifest`'s dependencies have all loaded (`Ok(true)`), some are still to be loaded (`Ok(false)`),
/// or one can never be satisfied (`Err`).
fn dependencies_ready(
    manifest: &Manifest,
    known: &BTreeSet<PluginName>,
    outcome: &BTreeMap<PluginName, Option<Version>>,
    disabled: &[PluginName],
) -> Result<bool, LoadError> {
    let mut ready = true;
    for (dependency, requirement) in &manifest.dependencies {
        let refuse = |reason: String| Err(LoadError::Dependency { dependency: dependency.to_string(), reason });
        if disabled.contains(dependency) {
            return refuse(format!("{dependency} is disabled; enable it or remove the dependency"));
        }
        if !known.contains(dependency) {
            return refuse(format!("no plugin named {dependency} is installed; install it or remove the dependency"));
        }
        match outcome.get(dependency) {
            None => ready = false,
            Some(None) => return refuse(format!("{dependency} failed to load; fix it first")),
            Some(Some(version)) if !requirement.matches(version) => {
                return refuse(format!(
                    "{dependency} {version} is installed but {requirement} is required; install a matching version"
                ));
            }
            Some(Some(_)) => {}
        }
    }
    Ok(ready)
}

/// Opens a library file on its own (no manifest) and reports what it says about itself, after the same
/// format checks and private copy as a load. Used by `berth info FILE`. Runs the library's initialisers.
pub fn inspect_library(path: &Path, cache_dir: &Path) -> Result<load::LibraryInfo, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io { path: path.to_owned(), source })?;
    crate::verify::check_binary(path, &bytes)?;
    let cache = PrivateCache::open(cache_dir)
        .map_err(|e| LoadError::Cache { dir: cache_dir.to_owned(), source: std::io::Error::other(e.to_string()) })?;
    let verified =
        crate::verify::Verified { source: path.to_owned(), sha256: crate::verify::sha256_hex(&bytes), bytes };
    let copy = cache.store(&verified)?;
    Ok(load::open(&copy)?.info)
}
