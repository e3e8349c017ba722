//! The host's configuration: where plugins are and where the private copies go. Works with no configuration
//! at all; a TOML file, the `BERTH_PLUGIN_PATH` environment variable and explicit values override the defaults.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::duration::{InvalidDuration, parse_duration};

use crate::duration::duration;
use crate::error::ManifestError;
use crate::guarded;
use crate::manifest::{Isolation, Manifest, Narrowing, Permissions, PluginName, parse_toml};
use crate::trust::{TrustConfig, TrustPolicy, TrustedKey};

/// The environment variable listing plugin directories, separated like `PATH` (`:`; `;` on Windows).
pub const PLUGIN_PATH_ENV: &str = "BERTH_PLUGIN_PATH";

/// Where the host finds plugins and keeps the private copies it loads.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostConfig {
    /// Directories searched (recursively) for manifests.
    pub plugin_dirs: Vec<PathBuf>,
    /// Where verified libraries are copied before they are loaded. Created with mode 0700.
    pub cache_dir: PathBuf,
    /// Where the host keeps what must survive a restart: the highest version of each plugin it has accepted
    /// (rollback protection). Created with mode 0700.
    pub data_dir: PathBuf,
    /// How watching and hot reload behave.
    pub reload: ReloadConfig,
    /// Signatures, trusted keys and file permission checks.
    pub trust: TrustConfig,
    /// The supervision deadline of plugins whose manifest sets none (`[limits] call_timeout` in the file, as
    /// in a manifest). Default: none.
    pub call_timeout: Option<Duration>,
    /// Which plugins run in worker processes and how (`[isolation]` in the file).
    pub isolation: IsolationConfig,
}

/// Ops' side of process isolation (`[isolation]` in the host configuration file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IsolationConfig {
    /// The worker executable, before `BERTH_WORKER` and `berth-worker` next to the current executable.
    pub worker: Option<PathBuf>,
    /// Plugins to run isolated although their manifest does not ask: `"all"` or a list of names.
    #[serde(default)]
    pub process: ProcessSelection,
    /// Refuse to start any isolated plugin whose sandbox the OS cannot fully enforce.
    #[serde(default)]
    pub require_sandbox: bool,
    /// Per plugin, a narrowing of what its manifest's `[permissions]` grant.
    #[serde(default)]
    pub permissions: BTreeMap<PluginName, Narrowing>,
}

/// Which plugins the host configuration isolates on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ProcessSelection {
    /// Those listed (none by default).
    Listed(BTreeSet<PluginName>),
    /// Every plugin (`process = "all"`).
    #[default]
    #[serde(skip)]
    None,
    /// `"all"`.
    Keyword(AllKeyword),
}

/// The keyword `"all"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllKeyword {
    /// Every plugin.
    All,
}

impl IsolationConfig {
    /// Whether the plugin of `manifest` runs in a worker process: its manifest says so, or ops do.
    pub fn isolates(&self, manifest: &Manifest) -> bool {
        manifest.isolation == Isolation::Process
            || match &self.process {
                ProcessSelection::Keyword(AllKeyword::All) => true,
                ProcessSelection::Listed(names) => names.contains(&manifest.name),
                ProcessSelection::None => false,
            }
    }

    /// The permissions the plugin of `manifest` runs with: its manifest's, narrowed by ops.
    pub fn permissions(&self, manifest: &Manifest) -> Permissions {
        let narrowing = self.permissions.get(&manifest.name).cloned().unwrap_or_default();
        manifest.permissions.narrowed(&narrowing, self.require_sandbox)
    }
}

/// How watching and hot reload behave (`[reload]` in the host configuration file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadConfig {
    /// A plugin's directory must be quiet (no file event) this long before its files are read: a copy, a
    /// re-link or a burst of writes ends in one reload of the final bytes. Default 100 ms.
    pub debounce: Duration,
    /// A library that is still incomplete (truncated, empty, changing while read) and was modified less than
    /// this long ago is taken to be still being written: it is checked again later instead of being reported.
    /// Default 2 s.
    pub settle: Duration,
    /// Libraries are never unloaded: the image of a generation that no longer serves stays mapped until the
    /// process exits. Once the distinct images no serving generation uses reach this many bytes (host-wide),
    /// no new image is mapped: a reload or load of a build not mapped yet is refused, while builds already
    /// mapped still load. Default 256 MiB; `[reload] max_retired_mib` in the host configuration file.
    pub max_retired_bytes: u64,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self { debounce: Duration::from_millis(100), settle: Duration::from_secs(2), max_retired_bytes: 256 << 20 }
    }
}

impl Default for HostConfig {
    /// Plugin directories from `BERTH_PLUGIN_PATH`, else `./plugins`; the cache in the user's cache directory
    /// (`$XDG_CACHE_HOME/berth`, `~/Library/Caches/berth`, `%LOCALAPPDATA%\berth\cache`), the data directory in
    /// the user's local data directory (`$XDG_DATA_HOME/berth`, `~/Library/Application Support/berth`,
    /// `%LOCALAPPDATA%\berth\data`); trust policy `warn`, no trusted keys, strict permission checks.
    fn default() -> Self {
        let plugin_dirs = plugin_path_env().unwrap_or_else(|| vec![PathBuf::from("plugins")]);
        Self {
            plugin_dirs,
            cache_dir: default_cache_dir(),
            data_dir: default_data_dir(),
            reload: ReloadConfig::default(),
            trust: TrustConfig::default(),
            call_timeout: None,
            isolation: IsolationConfig::default(),
        }
    }
}

/// The plugin directories `BERTH_PLUGIN_PATH` names, if it is set and not empty: the one place it is read.
fn plugin_path_env() -> Option<Vec<PathBuf>> {
    std::env::var_os(PLUGIN_PATH_ENV)
        .filter(|paths| !paths.is_empty())
        .map(|paths| std::env::split_paths(&paths).collect())
}

/// What an operator sets beside the host configuration file (the CLI's flags, and the environment variables
/// they read). [`HostConfig::resolve`] applies them, in the one order of precedence: a flag over
/// `BERTH_PLUGIN_PATH` over the file over the defaults.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Overrides {
    /// The configuration file; `None` reads [`HostConfig::default_file`], if there is one.
    pub config_file: Option<PathBuf>,
    /// Plugin directories; empty leaves them to `BERTH_PLUGIN_PATH`, the file and the default.
    pub plugin_dirs: Vec<PathBuf>,
    /// The cache directory.
    pub cache_dir: Option<PathBuf>,
    /// The data directory.
    pub data_dir: Option<PathBuf>,
    /// The trust policy.
    pub trust_policy: Option<TrustPolicy>,
    /// Keys trusted beside the file's.
    pub trusted_keys: Vec<TrustedKey>,
    /// Turns the permission checks of plugin files off (development machines only).
    pub insecure_permissions: bool,
}

impl HostConfig {
    /// The host configuration file used when none is named: the first that exists of
    /// `<user config dir>/berth/config.toml` (`$XDG_CONFIG_HOME` or `~/.config` on Linux, `~/Library/Application
    /// Support` on macOS, `%APPDATA%` on Windows) and, on Unix, `/etc/berth/config.toml`.
    pub fn default_file() -> Option<PathBuf> {
        let user = dirs::config_dir().map(|dir| dir.join("berth").join("config.toml"));
        let system = cfg!(unix).then(|| PathBuf::from("/etc/berth/config.toml"));
        user.into_iter().chain(system).find(|path| path.is_file())
    }

    /// The configuration `overrides` and the files and environment they leave to: the file (or the default
    /// file, or the defaults), then `BERTH_PLUGIN_PATH`, then each override that is set.
    pub fn resolve(overrides: Overrides) -> Result<HostConfig, ManifestError> {
        let mut config = match overrides.config_file.or_else(HostConfig::default_file) {
            Some(path) => HostConfig::from_file(&path)?,
            None => HostConfig::default(),
        };
        if let Some(dirs) = plugin_path_env() {
            config.plugin_dirs = dirs;
        }
        if !overrides.plugin_dirs.is_empty() {
            config.plugin_dirs = overrides.plugin_dirs;
        }
        config.cache_dir = overrides.cache_dir.unwrap_or(config.cache_dir);
        config.data_dir = overrides.data_dir.unwrap_or(config.data_dir);
        config.trust.policy = overrides.trust_policy.unwrap_or(config.trust.policy);
        config.trust.keys.extend(overrides.trusted_keys);
        if overrides.insecure_permissions {
            config.trust.strict_modes = false;
        }
        Ok(config)
    }
}

// On Windows the cache and the local data directory are the same folder (%LOCALAPPDATA%): the two get
// sub-folders, so that clearing the cache never takes the accepted-versions record with it.
fn default_cache_dir() -> PathBuf {
    let cache = dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("berth");
    if cfg!(windows) { cache.join("cache") } else { cache }
}

fn default_data_dir() -> PathBuf {
    let local = dirs::data_local_dir().unwrap_or_else(std::env::temp_dir).join("berth");
    if cfg!(windows) { local.join("data") } else { local }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    plugin_dirs: Vec<PathBuf>,
    cache_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    reload: ReloadFile,
    #[serde(default)]
    trust: TrustFile,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    isolation: IsolationConfig,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    #[serde(default, deserialize_with = "duration")]
    call_timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    policy: Option<TrustPolicy>,
    #[serde(default)]
    keys: Vec<String>,
    strict_modes: Option<bool>,
    max_library_mib: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReloadFile {
    #[serde(default, deserialize_with = "duration")]
    debounce: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    settle: Option<Duration>,
    max_retired_mib: Option<u64>,
}

impl HostConfig {
    /// Reads a host configuration file:
    ///
    /// ```toml
    /// plugin_dirs = ["plugins", "/opt/app/plugins"]   # relative to this file's directory
    /// cache_dir = "/var/cache/app/berth"              # optional
    /// data_dir = "/var/lib/app/berth"                 # optional
    ///
    /// [reload]                                        # optional, defaults shown
    /// debounce = "100ms"                             # durations: 250ms, 2s, 1m, 1h
    /// settle = "2s"
    /// max_retired_mib = 256                           # retired library images kept mapped, host-wide
    ///
    /// [trust]                                         # optional, defaults shown
    /// policy = "warn"                                 # enforce | warn | off
    /// keys = []                                       # minisign public keys: a .pub file or the RW... line
    /// strict_modes = true
    /// max_library_mib = 256                           # larger libraries are refused before they are read
    ///
    /// [isolation]                                     # optional, defaults shown
    /// worker = "berth-worker"                         # else $BERTH_WORKER, else next to this executable
    /// process = []                                    # plugins to isolate anyway, or "all"
    /// require_sandbox = false                         # true: refuse what the OS cannot fully sandbox
    /// [isolation.permissions.greeter]                 # narrow a plugin's [permissions]; only takes away
    /// connect = []
    /// ```
    ///
    /// Values it leaves out keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ManifestError> {
        let text = guarded::read_text(path, guarded::MAX_CONFIG, "a host configuration file")
            .map_err(|source| ManifestError::Read { path: path.to_owned(), error: source })?;
        let file: ConfigFile = parse_toml(path, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = HostConfig::default();
        if !file.plugin_dirs.is_empty() {
            config.plugin_dirs = file.plugin_dirs.iter().map(|dir| base.join(dir)).collect();
        }
        if let Some(cache) = file.cache_dir {
            config.cache_dir = base.join(cache);
        }
        if let Some(data) = file.data_dir {
            config.data_dir = base.join(data);
        }
        let trust = &mut config.trust;
        trust.policy = file.trust.policy.unwrap_or(trust.policy);
        trust.strict_modes = file.trust.strict_modes.unwrap_or(trust.strict_modes);
        if let Some(mib) = file.trust.max_library_mib {
            trust.max_library_size = mib.saturating_mul(1 << 20);
        }
        for key in &file.trust.keys {
            let key = TrustedKey::from_config(key, base)
                .map_err(|error| ManifestError::TrustedKey { path: path.to_owned(), error })?;
            trust.keys.push(key);
        }
        config.call_timeout = file.limits.call_timeout;
        config.isolation = file.isolation;
        if let Some(worker) = config.isolation.worker.take() {
            config.isolation.worker = Some(base.join(worker));
        }
        let reload = &mut config.reload;
        reload.debounce = file.reload.debounce.unwrap_or(reload.debounce);
        reload.settle = file.reload.settle.unwrap_or(reload.settle);
        if let Some(mib) = file.reload.max_retired_mib {
            reload.max_retired_bytes = mib.saturating_mul(1 << 20);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_a_number_and_a_unit_like_the_clis() {
        for (text, expected) in [("250ms", 250), ("2s", 2000), ("1m", 60_000), ("1h", 3_600_000), ("1m 30s", 90_000)] {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(expected)), "{text}");
        }
        for text in ["", "2", "s", "2 s", "1.5s", "-1s", "2sec", "99999999999999999999h", "18446744073709551615h"] {
            let refused = parse_duration(text).unwrap_err().to_string();
            assert!(refused.contains("is not a duration; write a whole number and a unit"), "{text}: {refused}");
        }
    }

    #[test]
    fn a_config_file_is_read_relative_to_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "plugin_dirs = [\"p\", \"/abs\"]\ncache_dir = \"c\"\n[reload]\ndebounce = \"40ms\"\nmax_retired_mib = 3\n",
        )
        .unwrap();
        let config = HostConfig::from_file(&path).unwrap();
        assert_eq!(config.plugin_dirs, vec![dir.path().join("p"), PathBuf::from("/abs")]);
        assert_eq!(config.cache_dir, dir.path().join("c"));
        let expected =
            ReloadConfig { debounce: Duration::from_millis(40), max_retired_bytes: 3 << 20, ..Default::default() };
        assert_eq!(config.reload, expected);
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "plugin_dir = [\"p\"]\n").unwrap();
        let error = HostConfig::from_file(&path).unwrap_err();
        assert!(error.to_string().contains("unknown field `plugin_dir`"), "{error}");
    }
}
