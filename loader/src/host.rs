//! The host: owns the registry and the private cache, runs the load pipeline (`reconcile`) over the plugin
//! directories, and starts the watcher that keeps doing so as files change.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::config::HostConfig;
use crate::digest::sha256_hex;
use crate::error::{HostError, LoadError, ManifestError};
use crate::isolation::Isolator;
use crate::load;
use crate::manifest::Manifest;
use crate::reconcile::{HostState, LoadReport, Scope};
use crate::record::AcceptedVersions;
use crate::registry::CallError;
use crate::registry::{Event, Observer, PluginHandle, PluginState, PluginStatus, Registry, Retired, Subscribers};
use crate::trust::DEFAULT_MAX_LIBRARY;
use crate::verify::{PrivateCache, check_binary, check_panic_strategy, read_library_file};
#[cfg(feature = "watch")]
use crate::watch::Watcher;

/// A plugin host: configuration, private cache and registry. `Send + Sync`: share it (in an `Arc`) with
/// every thread that calls plugins.
pub struct Host {
    inner: Arc<HostState>,
}

/// A host being put together: its configuration, and what is plugged into it. New kinds of observers and
/// backends arrive here as methods, so [`HostConfig`] stays the file-shaped configuration.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let mut config = berth::HostConfig::default();
/// # config.plugin_dirs = vec![dir.path().join("plugins")];
/// # (config.cache_dir, config.data_dir) = (dir.path().join("cache"), dir.path().join("data"));
/// let host = berth::Host::builder(config).observer(|event: &berth::Event| eprintln!("{event}")).build()?;
/// # Ok::<(), berth::HostError>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct HostBuilder {
    config: HostConfig,
    observers: Vec<Box<dyn Observer>>,
    isolator: Option<Arc<dyn Isolator>>,
}

impl HostBuilder {
    /// Tells `observer` of every lifecycle event, on the thread that made the change (see [`Observer`]); for
    /// events on another thread, use [`Host::subscribe`].
    pub fn observer(mut self, observer: impl Observer + 'static) -> HostBuilder {
        self.observers.push(Box::new(observer));
        self
    }

    /// Runs plugins that ask for it (`isolation = "process"`, or the configuration's `[isolation] process`)
    /// in worker processes `isolator` starts (`berth_isolate::ProcessIsolator`). Without one, such a plugin is
    /// refused with [`LoadError::Isolation`](crate::LoadError::Isolation).
    pub fn isolator(mut self, isolator: Arc<dyn Isolator>) -> HostBuilder {
        self.isolator = Some(isolator);
        self
    }

    /// Creates the host; fails only when the private cache or data directory cannot be created or is not
    /// private, or when the record of accepted versions in the data directory cannot be read.
    pub fn build(self) -> Result<Host, HostError> {
        let HostBuilder { config, observers, isolator } = self;
        let cache = PrivateCache::open(&config.cache_dir)?;
        let versions = AcceptedVersions::open(&config.data_dir)?;
        let registry = Registry::new(Subscribers::new(observers));
        Ok(Host { inner: Arc::new(HostState::new(config, cache, versions, registry, isolator)) })
    }
}

impl Host {
    /// Creates a host with nothing plugged in: `Host::builder(config).build()`.
    pub fn new(config: HostConfig) -> Result<Host, HostError> {
        Host::builder(config).build()
    }

    /// A host to put together: observers first, then [`HostBuilder::build`].
    pub fn builder(config: HostConfig) -> HostBuilder {
        HostBuilder { config, observers: Vec::new(), isolator: None }
    }

    /// The configuration the host runs with.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// Brings the host in line with its plugin directories: loads every enabled plugin not serving yet
    /// (dependencies first), reloads those whose library or manifest changed, applies `[config]` edits, and
    /// takes disabled and deleted plugins out of service. The first call loads everything; later calls (and
    /// the watcher, see [`Host::watch`]) only act on what changed. A plugin that failed is not tried again
    /// until its manifest or library changes.
    pub fn load_all(&self) -> LoadReport {
        self.inner.reconcile(&Scope::All)
    }

    #[cfg(feature = "watch")]
    /// Starts watching the plugin directories: from now on, files that change are picked up (once they are
    /// complete and quiet for the debounce time) as by [`Host::load_all`]. Watching stops when the returned
    /// [`Watcher`] is dropped, or when the host shuts down.
    pub fn watch(&self) -> Result<Watcher, HostError> {
        Watcher::start(&self.inner)
    }

    /// A handle on the plugin called `name`, whatever its state; it follows the plugin across reloads.
    pub fn plugin(&self, name: &str) -> Result<PluginHandle, CallError> {
        self.inner.registry.handle(name)
    }

    /// The status of every plugin the host knows, by name.
    pub fn plugins(&self) -> Vec<PluginStatus> {
        self.inner.registry.statuses()
    }

    /// Whether each plugin the host knows would load on a host built against plugin-api `version` (to plan a
    /// host upgrade): its manifest's `api` requirement must accept `version`, and the plugin-api its library
    /// was built against must share `version`'s major (the frozen-core rule). Plugins not serving here
    /// cannot be judged: their verdict is the reason they fail here. Disabled plugins are left out.
    pub fn would_load_on(&self, version: &semver::Version) -> Vec<(PluginStatus, Result<(), WouldNotLoad>)> {
        let verdict = |status: &PluginStatus| -> Result<(), WouldNotLoad> {
            let Some(library) = &status.library else {
                let reason = status.reason.clone().unwrap_or_else(|| "not serving".to_owned());
                return Err(WouldNotLoad::NotJudged { reason });
            };
            let manifest = Manifest::load(&status.manifest).map_err(WouldNotLoad::Manifest)?;
            if !manifest.api.matches(version) {
                return Err(WouldNotLoad::ApiRequirement {
                    required: manifest.api.to_string(),
                    host: version.to_string(),
                });
            }
            load::api_compatible(version, &library.api_version).map_err(|needed| WouldNotLoad::BuiltAgainst {
                library_api: library.api_version.clone(),
                host: version.to_string(),
                needed,
            })
        };
        let judged = self.plugins().into_iter().filter(|status| status.state != PluginState::Disabled);
        judged
            .map(|status| {
                let verdict = verdict(&status);
                (status, verdict)
            })
            .collect()
    }

    /// All plugins' retired generations and the library bytes they keep mapped.
    pub fn retired(&self) -> Retired {
        self.inner.registry.retired_total()
    }

    /// The supervision of this host's plugins, for a thread to run on schedule (berth-runtime's `Supervisor`
    /// does; `berth run` starts one): deadlines (`[limits] call_timeout`) and health checks (`[health]`) are
    /// watched only while one runs. See [`SupervisionPass::run`].
    pub fn supervision(&self) -> SupervisionPass {
        self.inner.supervisors.fetch_add(1, Ordering::Relaxed);
        SupervisionPass { host: Arc::downgrade(&self.inner) }
    }

    /// A channel that receives every lifecycle event from now on.
    pub fn subscribe(&self) -> Receiver<Event> {
        self.inner.registry.subscribe()
    }

    /// Takes every plugin out of service, dependents before their dependencies; each instance's `shutdown`
    /// runs once its last call in flight returns. A [`Watcher`] still running stops acting (drop it to end its
    /// thread). Also done on drop.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

/// One host's supervision, from [`Host::supervision`]: each [`run`](SupervisionPass::run) is one pass.
/// While it exists the host counts itself supervised (a load of a plugin with a deadline or health checks on
/// a host with none logs a warning).
pub struct SupervisionPass {
    host: Weak<HostState>,
}

impl SupervisionPass {
    /// One pass: calls past their deadline are counted stuck (the plugin `degraded`, each overrun counted
    /// toward its breaker); health checks that are due start on the plugin's own threads, and those that
    /// failed or did not answer in time move the plugin through `degraded` to what `[health] on_failing`
    /// says (a reload starts on a thread of its own). Never blocks on a plugin.
    ///
    /// Returns how long until the next pass is due (a tenth of the shortest deadline, within 5 ms to 100 ms;
    /// the next health check; at most 100 ms), or `None` once the host is shut down or dropped.
    pub fn run(&self) -> Option<Duration> {
        let host = self.host.upgrade().filter(|host| !host.is_closed())?;
        let (reload, next) = host.registry.supervise();
        for name in reload {
            let host = Arc::clone(&host);
            let started =
                std::thread::Builder::new().name(format!("berth-reload-{name}")).spawn(move || host.reload_now(&name));
            if let Err(error) = started {
                tracing::error!("cannot start a thread to reload a plugin: {error}");
            }
        }
        Some(next)
    }
}

impl Drop for SupervisionPass {
    fn drop(&mut self) {
        if let Some(host) = self.host.upgrade() {
            host.supervisors.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Why a plugin would not load on a host of another plugin-api version ([`Host::would_load_on`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WouldNotLoad {
    /// It does not load on this host, so it cannot be judged.
    #[error("not judged: it does not load on this host ({reason})")]
    NotJudged {
        /// Why it does not load here.
        reason: String,
    },
    /// Its manifest cannot be read now.
    #[error(transparent)]
    Manifest(ManifestError),
    /// Its manifest's `api` requirement does not accept that version.
    #[error("its manifest requires api = \"{required}\", which {host} does not meet")]
    ApiRequirement {
        /// The requirement.
        required: String,
        /// The other host's plugin-api version.
        host: String,
    },
    /// Its library was built against a plugin-api of another major.
    #[error(
        "built against plugin-api {library_api}, but a {host} host needs {needed}; rebuild it against berth-plugin-api {needed}"
    )]
    BuiltAgainst {
        /// The plugin-api the library was built against.
        library_api: String,
        /// The other host's plugin-api version.
        host: String,
        /// What that host needs (`2.x`).
        needed: String,
    },
}

/// Opens a library file on its own (no manifest) and reports what it says about itself, after the same
/// format checks and private copy as a load. Used by `berth info FILE`. Runs the library's initialisers.
pub fn inspect_library(path: &Path, cache_dir: &Path) -> Result<load::LibraryInfo, InspectError> {
    let (bytes, _) = read_library_file(path, DEFAULT_MAX_LIBRARY)?;
    check_binary(path, &bytes)?;
    check_panic_strategy(path, &bytes)?;
    let cache = PrivateCache::open(cache_dir)?;
    let copy = cache.store(&sha256_hex(&bytes), &bytes)?;
    Ok(load::open(&copy)?.info)
}

/// Why [`inspect_library`] could not tell what a library is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The library was refused, as a load would refuse it.
    #[error(transparent)]
    Library(#[from] LoadError),
    /// The private cache cannot be used.
    #[error(transparent)]
    Cache(#[from] HostError),
}
