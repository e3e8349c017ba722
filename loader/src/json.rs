//! The JSON documents Berth writes for programs (`berth ... --json`, and the admin API to come), version 1.
//!
//! These types, not the library's own, are what is serialized: the library's types may gain fields and change
//! shape, and a document's shape changes only with [`SCHEMA`]. Within one schema version, fields are only
//! added, never renamed, retyped or removed; a consumer ignores fields it does not know. Every document has
//! `"schema": 1` at its top level; `berth run --json` writes one [`EventLine`] per line.
//!
//! Paths are written as text (lossily, where a path is not UTF-8); versions as semver text; optional values
//! as `null`.

use crate::isolation::WorkerStatus;
use std::path::Path;

use serde::Serialize;

use berth_plugin_api::HealthStatus;
use semver::Version;

use crate::error::LoadFailure;
use crate::host::WouldNotLoad;
#[cfg(feature = "install")]
use crate::install::{Installed, Verification};
use crate::load::LibraryInfo;
use crate::reconcile::LoadReport;
use crate::registry::{CallError, Event, EventKind, Health, HealthCheck, PluginStatus};
use crate::trust::Trust;

/// The schema version of every document in this module.
pub const SCHEMA: u32 = 1;

fn path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// What a library reports about itself: the fields of [`LibraryInfo`], as JSON (`name`, `version`,
/// `api_version`, `rustc`, `target`, `profile`).
#[derive(Debug, Clone, Serialize)]
pub struct Library {
    name: String,
    version: String,
    api_version: String,
    rustc: String,
    target: String,
    profile: String,
}

impl From<&LibraryInfo> for Library {
    fn from(info: &LibraryInfo) -> Library {
        Library {
            name: info.name.clone(),
            version: info.version.clone(),
            api_version: info.api_version.clone(),
            rustc: info.rustc.clone(),
            target: info.target.clone(),
            profile: info.profile.clone(),
        }
    }
}

/// How far a library is trusted: `{"state": "signed", "key": ...}`, `{"state": "untrusted", "reason": ...}` or
/// `{"state": "unchecked"}`; `text` is the line the CLI prints.
#[derive(Debug, Clone, Serialize)]
pub struct TrustJson {
    /// `signed`, `untrusted` or `unchecked`.
    pub state: &'static str,
    /// The trusted key's id, when signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Why it is untrusted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The human-readable form.
    pub text: String,
}

impl From<&Trust> for TrustJson {
    fn from(trust: &Trust) -> TrustJson {
        let (state, key, reason) = match trust {
            Trust::Signed { key } => ("signed", Some(key.clone()), None),
            Trust::Untrusted { reason } => ("untrusted", None, Some(reason.clone())),
            Trust::Unchecked => ("unchecked", None, None),
        };
        TrustJson { state, key, reason, text: trust.to_string() }
    }
}

/// A plugin's health, as it last answered.
#[derive(Debug, Clone, Serialize)]
pub struct HealthJson {
    /// `ok`, `degraded` or `failing`.
    pub status: &'static str,
    /// What the plugin said.
    pub detail: String,
}

impl From<&Health> for HealthJson {
    fn from(health: &Health) -> HealthJson {
        let status = match health.status {
            HealthStatus::Ok => "ok",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Failing => "failing",
        };
        HealthJson { status, detail: health.detail.clone() }
    }
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerJson {
    /// `closed`, `open` or `probing`.
    pub state: &'static str,
    /// Why it opened (empty when closed).
    pub reason: String,
    /// While open: milliseconds until a probe may go through.
    pub retry_in_ms: Option<u64>,
}

/// Recent health checks (`[health]`).
#[derive(Debug, Clone, Serialize)]
pub struct HealthChecksJson {
    /// Checks failed since the last that passed.
    pub failing: u32,
    /// The most recent, oldest first.
    pub history: Vec<HealthCheckJson>,
}

/// One health check.
#[derive(Debug, Clone, Serialize)]
pub struct HealthCheckJson {
    /// When it started: milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// How long it took.
    pub took_ms: u64,
    /// Whether it passed.
    pub passed: bool,
    /// What the plugin said, or why it failed.
    pub detail: String,
}

/// One plugin the host knows: the fields of [`PluginStatus`] of the same names, as JSON (`name`, `state`,
/// `reason`, `reload_error`, `manifest`, `version`, `generation`, `library`, `sha256`, `trust`,
/// `retired_generations`, `retired_images`, `retired_bytes`, `max_concurrent_calls`, `in_flight`, `overloaded`,
/// `breaker`, `calls_per_second`, `rate_limited`, `call_timeout_ms`, `stuck`, `timeouts`, `call_threads`,
/// `health_checks`, `worker`: `pid`, `restarts`, `last_crash`, `sandbox` {`enforced`, `missing`}), and `health` when it was asked (`berth info`). A document type: build it from a status.
#[derive(Debug, Clone, Serialize)]
pub struct Plugin {
    name: String,
    state: String,
    reason: Option<String>,
    reload_error: Option<String>,
    manifest: String,
    version: String,
    generation: Option<u64>,
    library: Option<Library>,
    sha256: Option<String>,
    trust: Option<TrustJson>,
    retired_generations: u64,
    retired_images: u64,
    retired_bytes: u64,
    max_concurrent_calls: Option<u32>,
    in_flight: u32,
    overloaded: u64,
    breaker: Option<BreakerJson>,
    calls_per_second: Option<u32>,
    rate_limited: u64,
    call_timeout_ms: Option<u64>,
    stuck: u32,
    timeouts: u64,
    call_threads: u32,
    health_checks: Option<HealthChecksJson>,
    worker: Option<WorkerStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<HealthJson>,
}

impl From<&PluginStatus> for Plugin {
    fn from(status: &PluginStatus) -> Plugin {
        Plugin {
            name: status.name.to_string(),
            state: status.state.to_string(),
            reason: status.reason.clone(),
            reload_error: status.reload_error.clone(),
            manifest: path(&status.manifest),
            version: status.version.clone(),
            generation: status.generation,
            library: status.library.as_ref().map(Library::from),
            sha256: status.sha256.clone(),
            trust: status.trust.as_ref().map(TrustJson::from),
            retired_generations: status.retired_generations,
            retired_images: status.retired_images,
            retired_bytes: status.retired_bytes,
            max_concurrent_calls: status.max_concurrent_calls,
            in_flight: status.in_flight,
            overloaded: status.overloaded,
            breaker: status.breaker.as_ref().map(|breaker| BreakerJson {
                state: breaker.state,
                reason: breaker.reason.clone(),
                retry_in_ms: breaker.retry_in.map(|left| left.as_millis() as u64),
            }),
            calls_per_second: status.calls_per_second,
            rate_limited: status.rate_limited,
            call_timeout_ms: status.call_timeout.map(|timeout| timeout.as_millis() as u64),
            stuck: status.stuck,
            timeouts: status.timeouts,
            call_threads: status.call_threads,
            health_checks: status.health.as_ref().map(|report| HealthChecksJson {
                failing: report.failing,
                history: report.history.iter().map(HealthCheckJson::from).collect(),
            }),
            worker: status.worker.clone(),
            health: None,
        }
    }
}

impl From<&HealthCheck> for HealthCheckJson {
    fn from(check: &HealthCheck) -> HealthCheckJson {
        let since_epoch = check.at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        HealthCheckJson {
            at_unix_ms: since_epoch.as_millis() as u64,
            took_ms: check.took.as_millis() as u64,
            passed: check.passed,
            detail: check.detail.clone(),
        }
    }
}

/// A manifest (or plugin directory) that did not load.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The manifest, or the plugin directory that cannot be read.
    pub manifest: String,
    /// The plugin's name, when the manifest got far enough to give one.
    pub plugin: Option<String>,
    /// Why, in one line.
    pub error: String,
}

impl From<&LoadFailure> for Failure {
    fn from(failure: &LoadFailure) -> Failure {
        Failure {
            manifest: path(&failure.manifest),
            plugin: failure.plugin.as_ref().map(ToString::to_string),
            error: failure.error.to_string(),
        }
    }
}

/// `berth list --json`: every plugin, and the manifests that did not get as far as a name.
#[derive(Debug, Clone, Serialize)]
pub struct List {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The plugin-api version the host is built against.
    pub host_api: &'static str,
    /// The plugins, by name.
    pub plugins: Vec<Plugin>,
    /// Failures with no plugin name (unreadable manifests, unreadable plugin directories).
    pub unreadable: Vec<Failure>,
}

impl List {
    /// The document for these statuses and this load.
    pub fn new(statuses: &[PluginStatus], report: &LoadReport) -> List {
        List {
            schema: SCHEMA,
            host_api: crate::HOST_API_VERSION,
            plugins: statuses.iter().map(Plugin::from).collect(),
            unreadable: report.failures.iter().filter(|f| f.plugin.is_none()).map(Failure::from).collect(),
        }
    }
}

/// Whether a plugin would load on another plugin-api version (`berth check --host-api`).
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The plugin.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Whether it would load.
    pub loads: bool,
    /// Why not.
    pub reason: Option<String>,
}

/// `berth check --host-api VERSION`: the verdicts for that version.
#[derive(Debug, Clone, Serialize)]
pub struct HostApiCheck {
    /// The plugin-api version asked about.
    pub version: String,
    /// One verdict per plugin.
    pub plugins: Vec<Verdict>,
}

/// `berth check --json`: the counts, every failure, and the `--host-api` verdicts when asked.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The plugin-api version the host is built against.
    pub host_api: &'static str,
    /// Manifests checked.
    pub checked: usize,
    /// Plugins loaded.
    pub loaded: usize,
    /// Plugins disabled by their manifest.
    pub disabled: usize,
    /// Manifests that failed.
    pub failed: usize,
    /// Plugin directories that cannot be read.
    pub unreadable_dirs: usize,
    /// Every failure.
    pub failures: Vec<Failure>,
    /// The verdicts of `--host-api`.
    pub host_api_check: Option<HostApiCheck>,
}

/// `berth info --json`: a plugin the host knows, a manifest that failed, or a library file on its own.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Info {
    /// A plugin (by name or manifest), with its health when it serves.
    Plugin {
        /// [`SCHEMA`].
        schema: u32,
        /// The plugin.
        #[serde(flatten)]
        plugin: Box<Plugin>,
    },
    /// A manifest that did not load.
    Failed {
        /// [`SCHEMA`].
        schema: u32,
        /// Why.
        #[serde(flatten)]
        failure: Failure,
    },
    /// A library file, inspected on its own: it passed the version and layout checks.
    Library {
        /// [`SCHEMA`].
        schema: u32,
        /// The file.
        file: String,
        /// What it reports.
        #[serde(flatten)]
        library: Library,
        /// The plugin-api version of this host, which it is compatible with.
        host_api: &'static str,
    },
}

impl Info {
    /// A plugin, with its health when it was asked.
    pub fn plugin(status: &PluginStatus, health: Option<&Health>) -> Info {
        let plugin = Plugin { health: health.map(HealthJson::from), ..Plugin::from(status) };
        Info::Plugin { schema: SCHEMA, plugin: Box::new(plugin) }
    }

    /// A manifest that did not load.
    pub fn failed(failure: &LoadFailure) -> Info {
        Info::Failed { schema: SCHEMA, failure: Failure::from(failure) }
    }

    /// A library file on its own.
    pub fn library(file: &Path, library: &LibraryInfo) -> Info {
        Info::Library {
            schema: SCHEMA,
            file: path(file),
            library: Library::from(library),
            host_api: crate::HOST_API_VERSION,
        }
    }
}

impl Check {
    /// The document for a load's `report`.
    pub fn new(report: &LoadReport) -> Check {
        // A plugin directory that cannot be read is a failure, but not a manifest.
        let unreadable_dirs =
            report.failures.iter().filter(|f| matches!(f.error, crate::error::LoadError::PluginDir { .. })).count();
        let failed = report.failures.len() - unreadable_dirs;
        Check {
            schema: SCHEMA,
            host_api: crate::HOST_API_VERSION,
            checked: report.loaded.len() + report.disabled.len() + failed,
            loaded: report.loaded.len(),
            disabled: report.disabled.len(),
            failed,
            unreadable_dirs,
            failures: report.failures.iter().map(Failure::from).collect(),
            host_api_check: None,
        }
    }

    /// With the verdicts of [`Host::would_load_on`](crate::Host::would_load_on) for `version`.
    pub fn with_host_api(mut self, version: &Version, verdicts: &[(PluginStatus, Result<(), WouldNotLoad>)]) -> Check {
        let plugins = verdicts
            .iter()
            .map(|(status, verdict)| Verdict {
                name: status.name.to_string(),
                version: status.version.clone(),
                loads: verdict.is_ok(),
                reason: verdict.as_ref().err().map(ToString::to_string),
            })
            .collect();
        self.host_api_check = Some(HostApiCheck { version: version.to_string(), plugins });
        self
    }

    /// Whether everything loaded, and would load on the `--host-api` version.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
            && self.host_api_check.as_ref().is_none_or(|check| check.plugins.iter().all(|p| p.loads))
    }
}

#[cfg(feature = "install")]
/// `berth verify --json`: what a bundle or installed plugin was verified to be.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The manifest checked.
    pub manifest: String,
    /// The plugin.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its library's SHA-256.
    pub sha256: String,
    /// Its signature's verdict.
    pub trust: TrustJson,
    /// What the library reports, when the ABI checks ran (only for a library signed by a trusted key).
    pub library: Option<Library>,
}

#[cfg(feature = "install")]
impl From<&Verification> for Verified {
    fn from(verification: &Verification) -> Verified {
        Verified {
            schema: SCHEMA,
            manifest: path(&verification.manifest),
            name: verification.name.to_string(),
            version: verification.version.to_string(),
            sha256: verification.sha256.clone(),
            trust: TrustJson::from(&verification.trust),
            library: verification.library.as_ref().map(Library::from),
        }
    }
}

#[cfg(feature = "install")]
/// `berth install --json`: what was installed where.
#[derive(Debug, Clone, Serialize)]
pub struct Install {
    /// [`SCHEMA`].
    pub schema: u32,
    /// What was verified before it was put in place (its own `schema` included).
    pub verified: Verified,
    /// The plugin's directory now.
    pub dir: String,
    /// The version it replaced.
    pub replaced: Option<String>,
    /// Manifest keys ops had set that were kept (`enabled`, `config`).
    pub kept: Vec<&'static str>,
}

#[cfg(feature = "install")]
impl From<&Installed> for Install {
    fn from(installed: &Installed) -> Install {
        Install {
            schema: SCHEMA,
            verified: Verified::from(&installed.verification),
            dir: path(&installed.dir),
            replaced: installed.replaced.as_ref().map(ToString::to_string),
            kept: installed.kept.clone(),
        }
    }
}

/// One line of `berth run --json`: a lifecycle event, a call's answer, or the host's own progress.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventLine {
    /// A plugin's lifecycle event.
    Event {
        /// [`SCHEMA`].
        schema: u32,
        /// The plugin.
        plugin: String,
        /// What happened: `progress`, `loaded`, `reloaded`, `reconfigured`, `reload_failed`, `failed`,
        /// `disabled`, `removed`, `retired`, `restored`, `unwatched`, `watched`, `faulted`, `recovered`,
        /// `degraded`, `crashed`, `restarted`.
        kind: &'static str,
        /// Its state after it.
        state: String,
        /// The generation serving after it (or concerned).
        generation: Option<u64>,
        /// That generation's version, else the manifest's.
        version: String,
        /// For `reloaded`: the version replaced.
        #[serde(skip_serializing_if = "Option::is_none")]
        from_version: Option<String>,
        /// For `reloaded`: the generation replaced.
        #[serde(skip_serializing_if = "Option::is_none")]
        from_generation: Option<u64>,
        /// Why, or with what.
        detail: String,
        /// The line the CLI prints without `--json`.
        text: String,
    },
    /// A manifest that failed before it gave a name.
    Unreadable {
        /// [`SCHEMA`].
        schema: u32,
        /// The failure.
        #[serde(flatten)]
        failure: Failure,
    },
    /// The answer of one `--call`.
    Call {
        /// [`SCHEMA`].
        schema: u32,
        /// The plugin called.
        plugin: String,
        /// The method.
        method: String,
        /// Its output (UTF-8, lossily), when it answered.
        output: Option<String>,
        /// The error, when it did not.
        error: Option<String>,
    },
    /// The host started serving, or is stopping, or stopped.
    Host {
        /// [`SCHEMA`].
        schema: u32,
        /// `serving`, `stopping` or `stopped`.
        state: &'static str,
        /// The plugin directories watched.
        watching: Vec<String>,
    },
}

impl From<&Event> for EventLine {
    fn from(event: &Event) -> EventLine {
        let (kind, from) = match &event.kind {
            EventKind::Progress => ("progress", None),
            EventKind::Loaded => ("loaded", None),
            EventKind::Reloaded { from_version, from_generation } => {
                ("reloaded", Some((from_version, from_generation)))
            }
            EventKind::Reconfigured => ("reconfigured", None),
            EventKind::ReloadFailed => ("reload_failed", None),
            EventKind::Failed => ("failed", None),
            EventKind::Disabled => ("disabled", None),
            EventKind::Removed => ("removed", None),
            EventKind::Retired => ("retired", None),
            EventKind::Restored => ("restored", None),
            EventKind::Unwatched => ("unwatched", None),
            EventKind::Watched => ("watched", None),
            EventKind::Faulted => ("faulted", None),
            EventKind::Recovered => ("recovered", None),
            EventKind::Degraded => ("degraded", None),
            EventKind::Crashed => ("crashed", None),
            EventKind::Restarted => ("restarted", None),
        };
        EventLine::Event {
            schema: SCHEMA,
            plugin: event.plugin.to_string(),
            kind,
            state: event.state.to_string(),
            generation: event.generation,
            version: event.version.clone(),
            from_version: from.map(|(version, _)| version.clone()),
            from_generation: from.map(|(_, generation)| *generation),
            detail: event.detail.clone(),
            text: event.to_string(),
        }
    }
}

impl EventLine {
    /// The line for a failure with no plugin name.
    pub fn unreadable(failure: &LoadFailure) -> EventLine {
        EventLine::Unreadable { schema: SCHEMA, failure: Failure::from(failure) }
    }

    /// The line for one `--call`'s outcome.
    pub fn call(plugin: &str, method: &str, outcome: &Result<Vec<u8>, CallError>) -> EventLine {
        let (output, error) = match outcome {
            Ok(output) => (Some(String::from_utf8_lossy(output).into_owned()), None),
            Err(error) => (None, Some(error.to_string())),
        };
        EventLine::Call { schema: SCHEMA, plugin: plugin.to_owned(), method: method.to_owned(), output, error }
    }

    /// The line for the host's own progress.
    pub fn host(state: &'static str, watching: &[std::path::PathBuf]) -> EventLine {
        EventLine::Host { schema: SCHEMA, state, watching: watching.iter().map(|dir| path(dir)).collect() }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::error::LoadError;
    use crate::name::PluginName;
    use crate::registry::PluginState;

    #[test]
    fn a_reload_event_line_names_what_it_replaced_and_keeps_the_printed_text() {
        let event = Event {
            plugin: PluginName::new("greeter").unwrap(),
            kind: EventKind::Reloaded { from_version: "1.0.0".to_owned(), from_generation: 1 },
            state: PluginState::Active,
            generation: Some(2),
            version: "1.1.0".to_owned(),
            detail: String::new(),
        };
        let line = serde_json::to_value(EventLine::from(&event)).unwrap();
        let expected = serde_json::json!({
            "type": "event", "schema": 1, "plugin": "greeter", "kind": "reloaded", "state": "active",
            "generation": 2, "version": "1.1.0", "from_version": "1.0.0", "from_generation": 1, "detail": "",
            "text": "greeter: reloaded 1.0.0 (generation 1) -> 1.1.0 (generation 2)",
        });
        assert_eq!(line, expected);
    }

    #[test]
    fn a_check_counts_an_unreadable_plugin_directory_apart_from_the_manifests() {
        let mut report = LoadReport::default();
        report.loaded.push(PluginName::new("greeter").unwrap());
        let dir = PathBuf::from("/srv/plugins");
        let error =
            LoadError::PluginDir { dir: dir.clone(), error: std::io::Error::from(std::io::ErrorKind::NotFound) };
        report.failures.push(LoadFailure { manifest: dir, plugin: None, error });
        let check = Check::new(&report);
        assert_eq!((check.checked, check.loaded, check.failed, check.unreadable_dirs), (1, 1, 0, 1));
        assert!(!check.passed(), "an unreadable plugin directory fails the check");
        assert!(Check::new(&LoadReport::default()).passed());
    }
}
