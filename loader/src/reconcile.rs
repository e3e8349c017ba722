//! Bringing the registry in line with the plugin directories: the first load and every hot reload are the
//! same walk. For each manifest in scope: a new or re-enabled plugin is loaded (dependencies first); a
//! serving one whose library or load-relevant manifest fields changed gets a new generation, fully verified,
//! created and handed its predecessor's state before one atomic swap; a changed `[config]` goes to the serving
//! instance when it can take it (`berth.reconfigure/1`), else through a reload; `enabled = false` and a
//! deleted manifest take the plugin out of service. Whatever fails leaves the serving generation serving.
//!
//! Per plugin, each step a distinct error: manifest (parse + validate) -> duplicate names -> `api`
//! requirement and dependencies (manifest-only checks first: nothing is opened for a plugin that cannot be
//! used anyway) -> verify (path, file, format, completeness, SHA-256) -> private copy -> load (abi_stable
//! header, version, layout) -> metadata cross-check -> create -> state hand-over -> Active.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use berth_plugin_api::ErrorKind;
use semver::Version;

use crate::config::HostConfig;
use crate::discover::discover;
use crate::error::{DependencyProblem, LoadError, LoadFailure, ManifestError};
use crate::instance::Instance;
use crate::isolation::{Isolator, Worker, WorkerSpec};
use crate::load;
use crate::logbridge;
use crate::manifest::{Manifest, PluginName};
use crate::record::AcceptedVersions;
use crate::registry::{Applied, Generation, Interfaces, PluginState, Registry, Retired, Supervision};
use crate::trust::Trust;
use crate::verify::{FileStamp, PrivateCache, Verified, check_manifest_permissions, verify_library};

/// What a load or a rescan did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct LoadReport {
    /// Plugins that started serving (first load, or again after a failure or `enabled = false`).
    pub loaded: Vec<PluginName>,
    /// Plugins whose serving generation was replaced by a new one.
    pub reloaded: Vec<PluginName>,
    /// Plugins that took a changed `[config]` without a reload.
    pub reconfigured: Vec<PluginName>,
    /// Plugins whose manifest says `enabled = false`.
    pub disabled: Vec<PluginName>,
    /// Plugins whose manifest was deleted.
    pub removed: Vec<PluginName>,
    /// Everything refused, with the reason: failed loads, and refused reloads (their plugin keeps serving).
    pub failures: Vec<LoadFailure>,
    /// Manifests that look still being written, or whose library does (invalid or incomplete, and modified
    /// within the settle time): neither loaded nor reported yet. A watching host reads them again.
    pub pending: Vec<PathBuf>,
}

/// Which manifests a rescan looks at.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    /// Every manifest under the plugin directories (an explicit load: nothing is deferred).
    All,
    /// After a file-event overflow: every manifest, deferring libraries still being written.
    #[cfg_attr(not(feature = "watch"), allow(dead_code))]
    Rescan,
    /// The manifests whose directory contains, or lies under, one of these paths (where files changed);
    /// libraries still being written are deferred.
    #[cfg_attr(not(feature = "watch"), allow(dead_code))]
    Paths(Vec<PathBuf>),
}

impl Scope {
    fn covers(&self, manifest: &Path) -> bool {
        let dir = manifest.parent().unwrap_or(Path::new(""));
        match self {
            Scope::All | Scope::Rescan => true,
            Scope::Paths(paths) => paths.iter().any(|path| path.starts_with(dir) || dir.starts_with(path)),
        }
    }
}

/// The host's state, shared by the [`crate::Host`] and its watcher.
pub(crate) struct HostState {
    pub config: HostConfig,
    pub cache: PrivateCache,
    /// The highest version of each plugin accepted so far (rollback protection).
    pub versions: AcceptedVersions,
    pub registry: Registry,
    /// One rescan at a time; shutdown takes it too.
    lock: Mutex<()>,
    closed: AtomicBool,
    /// Supervision passes that run (see [`crate::Host::supervision`]).
    pub supervisors: std::sync::atomic::AtomicUsize,
    /// Starts the workers of isolated plugins ([`crate::HostBuilder::isolator`]).
    isolator: Option<Arc<dyn Isolator>>,
}

/// Whether a reload replaced the serving generation.
enum Reload {
    Swapped,
    /// The library file was touched or copied again with the same bytes, and nothing else changed.
    Unchanged,
}

impl HostState {
    pub(crate) fn new(
        config: HostConfig,
        cache: PrivateCache,
        versions: AcceptedVersions,
        registry: Registry,
        isolator: Option<Arc<dyn Isolator>>,
    ) -> HostState {
        HostState {
            config,
            cache,
            versions,
            registry,
            lock: Mutex::new(()),
            closed: AtomicBool::new(false),
            supervisors: Default::default(),
            isolator,
        }
    }

    /// Whether the host has shut down.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Takes every plugin out of service; later rescans do nothing.
    pub(crate) fn shutdown(&self) {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.closed.store(true, Ordering::SeqCst);
        self.registry.shutdown();
    }

    /// Brings every plugin in `scope` in line with its files; see the module documentation.
    pub(crate) fn reconcile(&self, scope: &Scope) -> LoadReport {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut report = LoadReport::default();
        if self.is_closed() {
            return report;
        }
        let (paths, failures) = discover(&self.config.plugin_dirs);
        let unreadable: Vec<PathBuf> = failures.iter().map(|f| f.manifest.clone()).collect();
        report.failures = failures;
        let known = self.registry.known();
        let state_of: BTreeMap<&PluginName, (PluginState, &Path)> =
            known.iter().map(|(name, state, path)| (name, (*state, path.as_path()))).collect();
        // `discover` returns the paths sorted.
        let exists = |path: &PathBuf| paths.binary_search(path).is_ok();
        // A plugin that failed is looked at on every rescan: what it waited for (a dependency) may have come.
        // Unchanged files are not tried again (`failed_before`).
        let failed: BTreeSet<&Path> =
            known.iter().filter(|(_, state, _)| *state == PluginState::Failed).map(|(_, _, p)| p.as_path()).collect();
        let mut claimed = BTreeSet::new();
        let mut by_name: BTreeMap<PluginName, Vec<Manifest>> = BTreeMap::new();
        for path in paths.iter().filter(|path| scope.covers(path) || failed.contains(path.as_path())) {
            match Manifest::load(path) {
                Ok(manifest) => by_name.entry(manifest.name.clone()).or_default().push(manifest),
                Err(error) if self.manifest_being_written(scope, path, &error) => {
                    // Looked at again after another quiet period; what it described keeps its state meanwhile.
                    claimed.extend(known.iter().filter(|(_, _, p)| p == path).map(|(name, _, _)| name.clone()));
                    report.pending.push(path.clone());
                }
                Err(error) => {
                    tracing::warn!("{error}");
                    // The plugins this manifest described keep their state; a serving one keeps serving.
                    for (name, _, _) in known.iter().filter(|(_, _, p)| p == path) {
                        if self.registry.serving(name).is_some() {
                            self.registry.reload_failed(name, None, format!("{error}; fix the manifest"));
                        }
                        claimed.insert(name.clone());
                    }
                    report.failures.push(LoadFailure { manifest: path.clone(), plugin: None, error: error.into() });
                }
            }
        }
        let mut pending = Vec::new();
        for (name, manifests) in by_name {
            // The manifest of a plugin serving (or disabled by ops) keeps its place while it exists; between
            // manifests none of which is in use, nobody wins.
            let in_use = |state: &PluginState| matches!(state, PluginState::Active | PluginState::Disabled);
            let known_path = state_of.get(&name).filter(|(state, _)| in_use(state)).map(|(_, p)| p.to_path_buf());
            let (manifests, known_path) = self.without_unsafe_rivals(manifests, known_path.filter(exists), &mut report);
            let keep = match manifests.len() {
                1 => Some(0),
                _ => manifests.iter().position(|m| Some(&m.path) == known_path.as_ref()),
            };
            // A second manifest with a known name: the known one keeps its place, the newcomer is refused.
            let elsewhere = known_path.filter(|path| !manifests.iter().any(|m| &m.path == path));
            for (i, manifest) in manifests.iter().enumerate() {
                if keep == Some(i) && elsewhere.is_none() {
                    continue;
                }
                let other = elsewhere.clone().unwrap_or_else(|| manifests[(i + 1) % manifests.len()].path.clone());
                let error = LoadError::DuplicateName { name: name.clone(), other };
                if keep.is_some() || elsewhere.is_some() {
                    tracing::warn!(plugin = %name, "{}: {error}", manifest.path.display());
                    report.failures.push(LoadFailure {
                        manifest: manifest.path.clone(),
                        plugin: Some(name.clone()),
                        error,
                    });
                } else {
                    self.fail(&mut report, manifest, None, error);
                }
            }
            claimed.insert(name);
            if let (Some(i), None) = (keep, elsewhere) {
                pending.push(manifests.into_iter().nth(i).expect("kept index is in range"));
            }
        }
        for (name, state, path) in &known {
            let under_unreadable = unreadable.iter().any(|dir| path.starts_with(dir));
            if scope.covers(path) && !claimed.contains(name) && *state != PluginState::Removed && !under_unreadable {
                let detail = format!("its manifest {} was deleted or renamed the plugin", path.display());
                self.registry.transition_named(name, PluginState::Removed, detail);
                report.removed.push(name.clone());
            }
        }
        let mut to_load = Vec::new();
        for manifest in pending {
            let state = state_of.get(&manifest.name).map(|(state, _)| *state);
            if !manifest.enabled {
                // Disabled by ops now, even if failing health checks disabled it before.
                if state != Some(PluginState::Disabled) || self.registry.has_failed_attempt(&manifest.name) {
                    let detail = format!("enabled = false in {}", manifest.path.display());
                    self.registry.transition(&manifest, PluginState::Disabled, detail);
                    report.disabled.push(manifest.name);
                }
                continue;
            }
            match self.registry.serving(&manifest.name) {
                Some(generation) => self.update(scope, &manifest, &generation, &mut report),
                None => {
                    let stamp = FileStamp::of_library(&manifest);
                    if !self.registry.failed_before(&manifest, stamp) {
                        // A failed plugin tried again (its dependency may have come) reports only a change.
                        if state != Some(PluginState::Failed) {
                            let detail = format!("manifest {}", manifest.path.display());
                            self.registry.transition(&manifest, PluginState::Discovered, detail);
                        }
                        to_load.push(manifest);
                    }
                }
            }
        }
        self.load_in_dependency_order(scope, to_load, &mut report);
        self.registry.pass_ended();
        report
    }

    /// A serving plugin whose manifest is `manifest` now: reload, reconfigure, or record the edit.
    fn update(&self, scope: &Scope, manifest: &Manifest, generation: &Arc<Generation>, report: &mut LoadReport) {
        let name = &manifest.name;
        let applied = self
            .registry
            .applied(name)
            .unwrap_or_else(|| Applied { manifest: generation.manifest.clone(), stamp: generation.stamp });
        let stamp = FileStamp::of_library(manifest);
        if self.registry.refused_before(manifest, stamp) {
            return;
        }
        let library_changed = stamp != Some(applied.stamp) || !same_library_and_metadata(manifest, &applied.manifest);
        let config_changed = manifest.config != applied.manifest.config;
        let reload = if library_changed {
            true
        } else if config_changed {
            match generation.instance.reconfigure(&manifest.config_json()) {
                Some(answer) => {
                    match answer {
                        Ok(()) => {
                            self.registry.applied_in_place(Applied { manifest: manifest.clone(), ..applied }, true);
                            report.reconfigured.push(name.clone());
                        }
                        Err(error) if error.kind == ErrorKind::Panicked => {
                            // Like a panic in a call: its state may be half-changed, so it stops serving.
                            let error = LoadError::Reconfigure { kind: error.kind, message: error.message.into() };
                            self.fail(report, manifest, stamp, error);
                        }
                        Err(error) => {
                            let error = LoadError::Reconfigure { kind: error.kind, message: error.message.into() };
                            self.reload_failed(report, manifest, stamp, error);
                        }
                    }
                    false
                }
                // No reconfiguration (or an incompatible one): the new config arrives with a new generation.
                None => true,
            }
        } else {
            // Recorded as it is (which also clears a refused reload that was undone by putting the files back).
            self.registry.applied_in_place(Applied { manifest: manifest.clone(), ..applied }, false);
            false
        };
        if !reload {
            return;
        }
        match self.reload(manifest, generation, &applied.manifest, false) {
            Ok(Reload::Swapped) => report.reloaded.push(name.clone()),
            Ok(Reload::Unchanged) => {}
            Err(error) if self.still_being_written(scope, manifest, &error) => {
                report.pending.push(manifest.path.clone());
            }
            Err(error) => self.reload_failed(report, manifest, stamp, error),
        }
    }

    /// Builds a new generation of a serving plugin from `manifest` and swaps it in.
    fn reload(
        &self,
        manifest: &Manifest,
        serving: &Arc<Generation>,
        applied: &Manifest,
        fresh: bool,
    ) -> Result<Reload, LoadError> {
        self.check_requirements(manifest)?;
        self.check_dependents(manifest)?;
        let verified = verify_library(manifest, &self.config.trust)?;
        if !fresh
            && verified.sha256 == serving.sha256
            && same_library_and_metadata(manifest, applied)
            && manifest.config == applied.config
        {
            let applied = Applied { manifest: manifest.clone(), stamp: verified.stamp };
            self.registry.applied_in_place(applied, false);
            return Ok(Reload::Unchanged);
        }
        self.check_retired_limit(&verified.sha256)?;
        let mut generation = self.build(manifest, verified, &|_, _| {})?;
        let hand_over = prepare_hand_over(serving, &generation)?;
        // The durable write (fsyncs) before the export: calls the old generation serves after the export are
        // lost to the new one, so the window between export and swap holds only the export and the import.
        self.versions.record(&[manifest]).map_err(|reason| self.versions.record_error(&reason))?;
        let handed_over = match hand_over {
            Some(hand_over) => {
                let started = Instant::now();
                hand_over.transfer()?;
                Some(started.elapsed())
            }
            None => None,
        };
        generation.handed_over = handed_over;
        self.activate(vec![generation]);
        Ok(Reload::Swapped)
    }

    /// Loads a fresh generation of the serving plugin `name` from its files as they are now, even if nothing
    /// changed (failing health checks with `on_failing = "reload"`); a refusal is reported as any refused
    /// reload is, and the generation serving goes on.
    pub(crate) fn reload_now(&self, name: &PluginName) {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(serving) = self.registry.serving(name).filter(|_| !self.is_closed()) else {
            return;
        };
        let applied = self.registry.applied(name).map_or_else(|| serving.manifest.clone(), |a| a.manifest);
        let outcome = Manifest::load(&serving.manifest.path)
            .map_err(LoadError::from)
            .and_then(|manifest| self.reload(&manifest, &serving, &applied, true));
        self.registry.pass_ended();
        if let Err(error) = outcome {
            self.registry.reload_failed(name, None, error.to_string());
        }
    }

    /// The `api` requirement, the accepted versions and the dependencies among the plugins serving now:
    /// checked from manifests, before anything is read.
    fn check_requirements(&self, manifest: &Manifest) -> Result<(), LoadError> {
        load::check_api_requirement(manifest)?;
        self.versions.check(manifest)?;
        for (dependency, requirement) in &manifest.dependencies {
            let refuse = |problem| Err(LoadError::Dependency { dependency: dependency.to_string(), problem });
            match self.registry.serving(dependency) {
                None => return refuse(DependencyProblem::NotServing),
                Some(g) if !requirement.matches(&g.manifest.version) => {
                    let (found, required) = (g.manifest.version.to_string(), requirement.to_string());
                    return refuse(DependencyProblem::WrongVersion { found, required, serving: true });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// A new version of a serving plugin must still meet what the plugins serving on top of it require.
    fn check_dependents(&self, manifest: &Manifest) -> Result<(), LoadError> {
        for (name, requirement) in self.registry.serving_dependents(&manifest.name) {
            if !requirement.matches(&manifest.version) {
                return Err(LoadError::Dependency {
                    dependency: manifest.name.to_string(),
                    problem: DependencyProblem::BreaksDependent {
                        dependent: name.to_string(),
                        required: requirement.to_string(),
                        version: manifest.version.to_string(),
                    },
                });
            }
        }
        Ok(())
    }

    /// Refuses to map a new library image (`sha256`) once the images no serving generation uses reach the
    /// host's limit: they can never be unmapped. An image mapped already costs nothing and always loads, so a
    /// host that goes back and forth between builds reloads for ever.
    fn check_retired_limit(&self, sha256: &str) -> Result<(), LoadError> {
        if self.registry.is_mapped(sha256) {
            return Ok(());
        }
        let retired = self.registry.retired_total();
        let limit = self.config.reload.max_retired_bytes;
        if retired.bytes > 0 && retired.bytes >= limit {
            let Retired { generations, images, bytes, .. } = retired;
            return Err(LoadError::RetiredLimit { generations, images, bytes, limit });
        }
        Ok(())
    }

    /// The first load of a plugin whose dependencies serve, up to a generation ready to serve, with its
    /// progress reported as state transitions. [`HostState::accept`] then puts it in service.
    fn prepare_new(&self, manifest: &Manifest) -> Result<Generation, LoadError> {
        self.check_requirements(manifest)?;
        let verified = verify_library(manifest, &self.config.trust)?;
        self.check_retired_limit(&verified.sha256)?;
        let progress = |state: PluginState, detail: String| self.registry.transition(manifest, state, detail);
        let detail = format!("{} sha256 {}; {}", verified.source.display(), verified.sha256, verified.trust);
        progress(PluginState::Validated, detail);
        self.build(manifest, verified, &progress)
    }

    /// The last step before generations serve: their versions are recorded as accepted, in one write (so an
    /// older one is refused later), then each is swapped in; a library not signed by a trusted key is
    /// reported. If the record cannot be written, none of them serves; the error is the reason (see
    /// [`AcceptedVersions::record_error`]).
    fn accept(&self, generations: Vec<Generation>) -> Result<(), String> {
        let manifests: Vec<&Manifest> = generations.iter().map(|g| &g.manifest).collect();
        self.versions.record(&manifests)?;
        self.activate(generations);
        Ok(())
    }

    /// Puts `generations`, whose versions are recorded, in service.
    fn activate(&self, generations: Vec<Generation>) {
        for generation in generations {
            if let Trust::Untrusted { reason } = &generation.trust {
                tracing::warn!(plugin = %generation.manifest.name, "loaded untrusted ([trust].policy = \"warn\"): {reason}");
            }
            self.registry.activate(generation);
        }
    }

    /// Private copy -> open and ABI checks -> metadata cross-check -> create: a generation ready to serve.
    fn build(
        &self,
        manifest: &Manifest,
        verified: Verified,
        progress: &dyn Fn(PluginState, String),
    ) -> Result<Generation, LoadError> {
        // From the manifest alone: refused before the library is copied, opened (its initialisers run) or created.
        let supervision = Supervision::of(manifest, self.config.call_timeout)?;
        let watched = supervision.as_ref().is_some_and(|s| s.deadline.is_some()) || manifest.health.is_some();
        if watched && self.supervisors.load(Ordering::Relaxed) == 0 {
            tracing::warn!(
                plugin = %manifest.name,
                "its call_timeout or [health] is watched by a supervision pass, and none runs in this host: start one (berth_runtime::Supervisor, as `berth run` does)"
            );
        }
        let copy = self.cache.store(&verified.sha256, &verified.bytes)?;
        let (number, instance, library) = if self.config.isolation.isolates(manifest) {
            let number = self.registry.next_generation(manifest);
            let worker = self.start_worker(manifest, number, &copy, supervision.as_deref())?;
            let info = worker.info().clone();
            let pid = worker.status().pid.map(|pid| format!(", worker process {pid}")).unwrap_or_default();
            progress(PluginState::Loaded, format!("plugin-api {}{pid}", info.api_version));
            (number, Instance::Isolated(worker), info)
        } else {
            let module = load::open(&copy)?;
            // Mapped from now on, whether or not this generation ever serves.
            self.registry.record_library(manifest, &verified.sha256, verified.stamp.len());
            progress(PluginState::Loaded, format!("plugin-api {}", module.info.api_version));
            load::check_metadata(manifest, &module.info)?;
            let number = self.registry.next_generation(manifest);
            let context = logbridge::context(manifest.name.as_str(), &module.info.version, number);
            let object = load::create(&module, &manifest.config_json(), context)?;
            (number, Instance::InProcess(object), module.info)
        };
        Ok(Generation {
            number,
            manifest: manifest.clone(),
            library,
            sha256: verified.sha256,
            stamp: verified.stamp,
            trust: verified.trust,
            instance,
            supervision,
            interfaces: Interfaces::default(),
            handed_over: None,
        })
    }

    /// Starts generation `number` of `manifest`'s plugin in a worker process, from the private copy `copy`.
    fn start_worker(
        &self,
        manifest: &Manifest,
        number: u64,
        copy: &Path,
        supervision: Option<&Supervision>,
    ) -> Result<Box<dyn Worker>, LoadError> {
        let refuse = |reason: String| LoadError::Isolation { reason };
        let isolator = self.isolator.as_ref().ok_or_else(|| {
            refuse("this host cannot start worker processes: build it with an isolator (HostBuilder::isolator(berth_isolate::ProcessIsolator::new()), as `berth run` does), or run the plugin in-process".to_owned())
        })?;
        let permissions = self.config.isolation.permissions(manifest);
        permissions.check().map_err(|reason| refuse(format!("[permissions] {reason}")))?;
        let library = std::fs::File::open(copy)
            .map_err(|e| refuse(format!("cannot open the private copy {}: {e}", copy.display())))?;
        isolator.start(WorkerSpec {
            plugin: manifest.name.clone(),
            version: manifest.version.clone(),
            generation: number,
            library,
            library_path: copy.to_owned(),
            config_json: manifest.config_json(),
            permissions,
            call_timeout: supervision.and_then(|s| s.deadline).map(|t| t.duration()),
            threads: manifest.limits.max_concurrent_calls.map_or(8, |limit| limit.get().min(64)),
            worker: self.config.isolation.worker.clone(),
            max_level: logbridge::max_level(),
            events: self.registry.worker_events(manifest, number),
        })
    }

    /// Loads `pending` so that every plugin comes after the plugins it depends on; a plugin whose dependency
    /// is missing, disabled, at a refused version, failed, or in a cycle fails with that reason.
    fn load_in_dependency_order(&self, scope: &Scope, mut pending: Vec<Manifest>, report: &mut LoadReport) {
        let waiting_for: BTreeSet<PluginName> = pending.iter().map(|m| m.name.clone()).collect();
        let mut known = BTreeMap::new();
        let mut disabled = BTreeSet::new();
        for (name, state, _) in self.registry.known().into_iter().filter(|(name, _, _)| !waiting_for.contains(name)) {
            match self.registry.serving(&name) {
                Some(generation) => known.insert(name, Some(generation.manifest.version.clone())),
                None if state == PluginState::Disabled => disabled.insert(name.clone()).then_some(None),
                None => known.insert(name, None),
            };
        }
        // Rounds: the plugins whose dependencies serve are loaded together and put in service with one write
        // of the accepted versions; the plugins that depend on them wait for the next round.
        loop {
            let before = pending.len();
            let mut waiting = Vec::new();
            let mut ready = Vec::new();
            for manifest in pending {
                match dependencies_ready(&manifest, &waiting_for, &known, &disabled) {
                    Ok(false) => waiting.push(manifest),
                    Ok(true) => {
                        let stamp = FileStamp::of_library(&manifest);
                        match self.prepare_new(&manifest) {
                            Ok(generation) => ready.push((generation, (manifest, stamp))),
                            Err(error) => {
                                known.insert(manifest.name.clone(), None);
                                if self.still_being_written(scope, &manifest, &error) {
                                    report.pending.push(manifest.path.clone());
                                } else {
                                    self.fail(report, &manifest, stamp, error);
                                }
                            }
                        }
                    }
                    Err(error) => {
                        known.insert(manifest.name.clone(), None);
                        self.fail(report, &manifest, None, error);
                    }
                }
            }
            let (generations, attempts): (Vec<Generation>, Vec<(Manifest, Option<FileStamp>)>) =
                ready.into_iter().unzip();
            let recorded = self.accept(generations);
            for (manifest, stamp) in attempts {
                known.insert(manifest.name.clone(), recorded.is_ok().then(|| manifest.version.clone()));
                match &recorded {
                    Ok(()) => report.loaded.push(manifest.name),
                    Err(reason) => self.fail(report, &manifest, stamp, self.versions.record_error(reason)),
                }
            }
            pending = waiting;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        // What is left waits, directly or not, on a cycle among the plugins left: name it.
        let waits_on: BTreeMap<PluginName, Vec<PluginName>> = pending
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    m.dependencies.keys().filter(|d| pending.iter().any(|p| &p.name == *d)).cloned().collect(),
                )
            })
            .collect();
        for manifest in pending {
            let members = find_cycle(&manifest.name, &waits_on).unwrap_or_default();
            let (dependency, problem) = match members.iter().position(|m| *m == manifest.name) {
                Some(at) => (members[at + 1].to_string(), DependencyProblem::Cycle { members }),
                None => {
                    let next = waits_on[&manifest.name].first().map(ToString::to_string).unwrap_or_default();
                    (next, DependencyProblem::WaitsOnCycle { members })
                }
            };
            let error = LoadError::Dependency { dependency, problem };
            self.fail(report, &manifest, None, error);
        }
    }

    /// A load that failed with nothing serving: the plugin is Failed. Unless the failure came from elsewhere
    /// (`stamp` is `None`: its dependencies, a duplicate name), it is not tried again until its manifest or
    /// library (`stamp`, taken before the attempt read it) changes.
    fn fail(&self, report: &mut LoadReport, manifest: &Manifest, stamp: Option<FileStamp>, error: LoadError) {
        self.registry.transition(manifest, PluginState::Failed, error.to_string());
        if stamp.is_some() && !matches!(error, LoadError::Dependency { .. }) {
            self.registry.record_failed_attempt(manifest, stamp);
        }
        tracing::debug!(plugin = %manifest.name, "{}", error.details());
        report.failures.push(LoadFailure {
            manifest: manifest.path.clone(),
            plugin: Some(manifest.name.clone()),
            error,
        });
    }

    /// A reload that failed: the serving generation keeps serving, and the reason is reported once (the
    /// same manifest and library are not tried again).
    fn reload_failed(&self, report: &mut LoadReport, manifest: &Manifest, stamp: Option<FileStamp>, error: LoadError) {
        self.registry.reload_failed(&manifest.name, Some((manifest.clone(), stamp)), error.to_string());
        tracing::debug!(plugin = %manifest.name, "{}", error.details());
        report.failures.push(LoadFailure {
            manifest: manifest.path.clone(),
            plugin: Some(manifest.name.clone()),
            error,
        });
    }

    /// Under `strict_modes`, a manifest that fails the permission check takes no part in name resolution when
    /// it has a rival (another manifest of the name, or the one the plugin is known by): it is refused
    /// (reported, logged at `warn`), and cannot take the name from the owner's plugin by claiming it too. A
    /// known manifest that fails it holds no place either (it may have claimed the name with `enabled = false`
    /// while the owner's plugin was not there). Alone, a manifest goes on and fails the same check in `verify`,
    /// as a plugin's own permission mistake does. Returns the manifests and the known path that take part.
    fn without_unsafe_rivals(
        &self,
        manifests: Vec<Manifest>,
        known: Option<PathBuf>,
        report: &mut LoadReport,
    ) -> (Vec<Manifest>, Option<PathBuf>) {
        let rivals =
            manifests.len() > 1 || known.as_ref().is_some_and(|known| manifests.iter().all(|m| &m.path != known));
        if !self.config.trust.strict_modes || !rivals {
            return (manifests, known);
        }
        let known = known.filter(|path| check_manifest_permissions(path).is_ok());
        let mut safe = Vec::new();
        let mut refused = Vec::new();
        for manifest in manifests {
            match check_manifest_permissions(&manifest.path) {
                Ok(()) => safe.push(manifest),
                Err(error) => refused.push((manifest, error)),
            }
        }
        if safe.is_empty() && known.is_none() {
            return (refused.into_iter().map(|(manifest, _)| manifest).collect(), known);
        }
        for (manifest, error) in refused {
            tracing::warn!(plugin = %manifest.name, "{}: {error}", manifest.path.display());
            report.failures.push(LoadFailure { manifest: manifest.path, plugin: Some(manifest.name), error });
        }
        (safe, known)
    }

    /// Whether `error` says the library is incomplete and it changed within the settle time: a writer is
    /// probably still at work, so it is read again later instead of being reported.
    fn still_being_written(&self, scope: &Scope, manifest: &Manifest, error: &LoadError) -> bool {
        let incomplete = matches!(
            error,
            LoadError::Truncated { .. }
                | LoadError::Unstable { .. }
                | LoadError::NotSharedLibrary { .. }
                | LoadError::LibraryMissing { .. }
        );
        let changed = FileStamp::of_library(manifest).or_else(|| FileStamp::of(manifest.dir()));
        incomplete && self.settling(scope, changed)
    }

    /// Whether the manifest at `path` does not parse and changed within the settle time: caught empty or cut
    /// short by a writer still at work, like an incomplete library.
    fn manifest_being_written(&self, scope: &Scope, path: &Path, error: &ManifestError) -> bool {
        matches!(error, ManifestError::Invalid { .. }) && self.settling(scope, FileStamp::of(path))
    }

    /// Whether a file that changed at `stamp` may still be being written: only a watching host's rescan waits
    /// for it (a first load or `load_all` reports at once).
    fn settling(&self, scope: &Scope, stamp: Option<FileStamp>) -> bool {
        !matches!(scope, Scope::All) && stamp.is_some_and(|stamp| stamp.age() < self.config.reload.settle)
    }
}

/// Whether two manifests of a plugin load the same library the same way: everything but `[config]`,
/// `description` and `enabled`.
fn same_library_and_metadata(a: &Manifest, b: &Manifest) -> bool {
    a.path == b.path
        && a.version == b.version
        && a.api == b.api
        && a.library == b.library
        && a.dependencies == b.dependencies
        && a.limits == b.limits
        && a.breaker == b.breaker
        && a.isolation == b.isolation
        && a.permissions == b.permissions
}

/// Checks that the serving generation's state (`berth.state/1`) can go to the new one, before anything is
/// exported: both provide the interface, with the layout the host expects, and the new one reads the schema.
fn prepare_hand_over<'a>(serving: &'a Generation, new: &'a Generation) -> Result<Option<HandOver<'a>>, LoadError> {
    let refuse = |reason: String| LoadError::StateHandover { reason };
    let schema = serving
        .instance
        .state_schema()
        .map_err(|e| refuse(format!("the serving generation's berth.state/1 cannot be used: {e}")))?;
    let Some(schema) = schema else { return Ok(None) };
    let readable = new
        .instance
        .state_schema()
        .map_err(|e| refuse(format!("the new version's berth.state/1 cannot be used: {e}")))?
        .ok_or_else(|| {
            refuse(
                "the new version does not import state (berth.state/1), so the serving generation's state would be lost; disable and re-enable the plugin to start it without its state"
                    .to_owned(),
            )
        })?;
    if schema > readable {
        return Err(refuse(format!(
            "the serving generation's state is in schema {schema} but the new version reads up to schema {readable} (a downgrade?); install a version that reads schema {schema}"
        )));
    }
    Ok(Some(HandOver { old: serving, new, schema }))
}

/// A state hand-over checked and ready: the serving generation's state, exported, goes to the new one.
struct HandOver<'a> {
    old: &'a Generation,
    new: &'a Generation,
    schema: u32,
}

impl HandOver<'_> {
    /// Exports the serving generation's state and imports it into the new one.
    fn transfer(self) -> Result<(), LoadError> {
        let refuse = |reason: String| LoadError::StateHandover { reason };
        let state = self
            .old
            .instance
            .export_state()
            .map_err(|e| refuse(format!("the serving generation could not export it: {e}")))?;
        self.new
            .instance
            .import_state(self.schema, &state)
            .map_err(|e| refuse(format!("the new version refused it: {e}")))
    }
}

/// Whether `manifest`'s dependencies all serve (`Ok(true)`), some are still to be loaded in this pass
/// (`Ok(false)`), or one can never be satisfied (`Err`).
fn dependencies_ready(
    manifest: &Manifest,
    pending: &BTreeSet<PluginName>,
    known: &BTreeMap<PluginName, Option<Version>>,
    disabled: &BTreeSet<PluginName>,
) -> Result<bool, LoadError> {
    let mut ready = true;
    for (dependency, requirement) in &manifest.dependencies {
        let refuse = |problem| Err(LoadError::Dependency { dependency: dependency.to_string(), problem });
        if disabled.contains(dependency) {
            return refuse(DependencyProblem::Disabled);
        }
        match known.get(dependency) {
            None if pending.contains(dependency) => ready = false,
            None => return refuse(DependencyProblem::Missing),
            Some(None) => return refuse(DependencyProblem::Failed),
            Some(Some(version)) if !requirement.matches(version) => {
                let (found, required) = (version.to_string(), requirement.to_string());
                return refuse(DependencyProblem::WrongVersion { found, required, serving: false });
            }
            Some(Some(_)) => {}
        }
    }
    Ok(ready)
}

/// The first cycle reachable from `start` in `waits_on` (who waits on whom), in dependency order with its first
/// member repeated at the end: `a -> b -> a`.
fn find_cycle(start: &PluginName, waits_on: &BTreeMap<PluginName, Vec<PluginName>>) -> Option<Vec<PluginName>> {
    let mut path = vec![start.clone()];
    let mut seen = BTreeSet::new();
    loop {
        let last = path.last().expect("the path starts with `start`");
        if !seen.insert(last.clone()) {
            let at = path.iter().position(|m| m == last).expect("seen on the path");
            return Some(path[at..].to_vec());
        }
        // Everything left waits on something left (else it would have loaded or failed): follow the first.
        let next = waits_on.get(last)?.first()?.clone();
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_cycle_is_named_in_order() {
        let name = |n: &str| PluginName::new(n).unwrap();
        let waits_on = BTreeMap::from([
            (name("a"), vec![name("b")]),
            (name("b"), vec![name("c")]),
            (name("c"), vec![name("a")]),
            (name("d"), vec![name("b")]),
        ]);
        let shown = |start: &str| {
            find_cycle(&name(start), &waits_on)
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" -> ")
        };
        assert_eq!(shown("a"), "a -> b -> c -> a");
        assert_eq!(shown("d"), "b -> c -> a -> b", "d waits on the cycle without being in it");
    }

    #[test]
    fn a_scope_covers_manifests_in_under_or_above_the_changed_paths() {
        let scope = Scope::Paths(vec![PathBuf::from("/p/greeter/lib/libgreeter.so"), PathBuf::from("/p/new")]);
        assert!(scope.covers(Path::new("/p/greeter/greeter.toml")), "a file in the plugin's directory tree");
        assert!(scope.covers(Path::new("/p/new/v1/new.toml")), "a directory that appeared");
        assert!(!scope.covers(Path::new("/p/quota/quota.toml")));
        assert!(Scope::All.covers(Path::new("/anywhere/x.toml")));
    }
}
