//! The host's configuration: where plugins are and where the private copies go. Works with no configuration
//! at all; a TOML file, the `BERTH_PLUGIN_PATH` environment variable and explicit values override the defaults.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ManifestError;
use crate::manifest::parse_toml;

/// The environment variable listing plugin directories, separated like `PATH` (`:`; `;` on Windows).
pub const PLUGIN_PATH_ENV: &str = "BERTH_PLUGIN_PATH";

/// Where the host finds plugins and keeps the private copies it loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Directories searched (recursively) for manifests.
    pub plugin_dirs: Vec<PathBuf>,
    /// Where verified libraries are copied before they are loaded. Created with mode 0700.
    pub cache_dir: PathBuf,
}

impl Default for HostConfig {
    /// Plugin directories from `BERTH_PLUGIN_PATH`, else `./plugins`; the cache in the user's cache directory
    /// (`$XDG_CACHE_HOME/berth`, `~/Library/Caches/berth`, `%LOCALAPPDATA%\berth`).
    fn default() -> Self {
        let plugin_dirs = match std::env::var_os(PLUGIN_PATH_ENV) {
            Some(paths) if !paths.is_empty() => std::env::split_paths(&paths).collect(),
            _ => vec![PathBuf::from("plugins")],
        };
        Self { plugin_dirs, cache_dir: default_cache_dir() }
    }
}

fn default_cache_dir() -> PathBuf {
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("berth")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    plugin_dirs: Vec<PathBuf>,
    cache_dir: Option<PathBuf>,
}

impl HostConfig {
    /// Reads a host configuration file:
    ///
    /// ```toml
    /// plugin_dirs = ["plugins", "/opt/app/plugins"]   # relative to this file's directory
    /// cache_dir = "/var/cache/app/berth"              # optional
    /// ```
    ///
    /// Values it leaves out keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ManifestError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ManifestError::Read { path: path.to_owned(), source })?;
        let file: ConfigFile = parse_toml(path, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = HostConfig::default();
        if !file.plugin_dirs.is_empty() {
            config.plugin_dirs = file.plugin_dirs.iter().map(|dir| base.join(dir)).collect();
        }
        if let Some(cache) = file.cache_dir {
            config.cache_dir = base.join(cache);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_is_read_relative_to_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "plugin_dirs = [\"p\", \"/abs\"]\ncache_dir = \"c\"\n").unwrap();
        let config = HostConfig::from_file(&path).unwrap();
        assert_eq!(config.plugin_dirs, vec![dir.path().join("p"), PathBuf::from("/abs")]);
        assert_eq!(config.cache_dir, dir.path().join("c"));
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
