//! The manifest: the TOML file ops edit to describe one plugin. Parsing and validation are one step: every
//! field is decoded into a type that can only hold a valid value (a [`PluginName`], a semver `Version`, a
//! relative library path...), so any refusal comes from the TOML decoder with the line and column of the
//! offending span. Unknown keys are refused.
//!
//! ```toml
//! name = "webhook-signer"          # unique id: lowercase letters, digits, '-'
//! version = "1.4.2"                # the plugin's own semver, as its library reports it
//! api = "^1.1"                     # requirement on the host's berth-plugin-api version
//! enabled = true                   # optional, default true
//! description = "Signs webhooks"   # optional
//! pin = "1.4.2"                    # optional: allows this version although a newer one was accepted before
//! [library]                        # per platform, relative to this manifest's directory
//! linux = "libwebhook_signer.so"
//! macos = { path = "libwebhook_signer.dylib", sha256 = "<64 hex digits>" }
//! [dependencies]                   # other plugins that must be loaded first
//! text-filters = ">=1.2, <2"
//! [config]                         # handed to the plugin's create, as JSON
//! secret_env = "WEBHOOK_SECRET"
//! ```
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use semver::{Version, VersionReq};
use serde::{Deserialize, Deserializer, de};

use crate::error::{LoadError, ManifestError};
use crate::guarded;
#[cfg(feature = "install")]
use crate::guarded::ReadError;
pub use crate::name::{InvalidName, PluginName};

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The manifest file.
    pub path: PathBuf,
    /// The plugin's name.
    pub name: PluginName,
    /// The plugin's version, as its library must report it.
    pub version: Version,
    /// What the plugin requires of the host's plugin-api version.
    pub api: VersionReq,
    /// `false` keeps the plugin registered but not loaded.
    pub enabled: bool,
    /// One line for people.
    pub description: String,
    /// Ops' explicit permission to run this version although the host accepted a newer one before (a
    /// deliberate roll-back). Only honoured when it equals `version`.
    pub pin: Option<Version>,
    /// The library per platform.
    pub library: Libraries,
    /// Other plugins that must be loaded, with version requirements.
    pub dependencies: BTreeMap<PluginName, VersionReq>,
    /// The `[config]` table, handed to the plugin.
    pub config: toml::Table,
    /// The `[limits]` table: what the host allows the plugin's callers.
    pub limits: Limits,
    /// The `[breaker]` table: when failing calls take the plugin out of service for a while. `None`: never.
    pub breaker: Option<Breaker>,
    /// The `[health]` table: health checks on an interval. `None`: the host never asks on its own.
    pub health: Option<HealthChecks>,
    /// Where the plugin runs: in the host process (the default) or in a worker process of its own.
    pub isolation: Isolation,
    /// The `[permissions]` table: what the plugin may touch when it runs isolated (nothing, unless granted).
    pub permissions: Permissions,
}

/// The `[breaker]` table: the circuit breaker. Failed calls (errors and panics) count; once `failures` of them
/// come in a row (or, with `window`, within that much time), the plugin is `faulted`: calls are refused at
/// once with [`CallError::Faulted`](crate::CallError::Faulted) for `cool_down`, then one call goes through as a
/// probe, whose outcome closes the breaker or opens it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Breaker {
    /// How many failed calls trip it.
    pub failures: std::num::NonZeroU32,
    /// Count the failures within this long, instead of in a row.
    #[serde(default, deserialize_with = "crate::duration::duration")]
    pub window: Option<std::time::Duration>,
    /// How long it stays open before a probe. Default 30 s.
    #[serde(default = "default_cool_down", deserialize_with = "cool_down")]
    pub cool_down: std::time::Duration,
}

fn default_cool_down() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

fn cool_down<'de, D: Deserializer<'de>>(deserializer: D) -> Result<std::time::Duration, D::Error> {
    Ok(crate::duration::duration(deserializer)?.unwrap_or_else(default_cool_down))
}

/// The `[limits]` table of a manifest. Each limit is off unless set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Limits {
    /// The bulkhead: at most this many calls in flight at once (across generations); a call beyond it is
    /// refused at once with [`CallError::Overloaded`](crate::CallError::Overloaded), so a plugin that hangs can
    /// never hold more than this many of the host's threads.
    pub max_concurrent_calls: Option<std::num::NonZeroU32>,
    /// The rate limit: at most this many calls a second, on average (a GCRA limiter); a call beyond it is
    /// refused at once with [`CallError::RateLimited`](crate::CallError::RateLimited).
    pub calls_per_second: Option<std::num::NonZeroU32>,
    /// How many calls may come at once above the rate (default: one second's worth).
    pub burst: Option<std::num::NonZeroU32>,
    /// The supervision deadline: a call running longer is counted stuck (the plugin is `degraded` while it
    /// runs, and the overrun counts toward the breaker), and its caller gets
    /// [`CallError::Timeout`](crate::CallError::Timeout) when it returns. A native call cannot be stopped
    /// in-process: it runs on. Default: the host configuration's `[limits] call_timeout`, else none.
    #[serde(default, deserialize_with = "crate::duration::duration")]
    pub call_timeout: Option<std::time::Duration>,
}

/// The `[health]` table: the host asks the plugin how it is doing every `interval`. A check that answers
/// anything but `ok`, errs, or takes longer than `timeout` fails; one failure makes the plugin `degraded`,
/// `failures` in a row take it out of service as `on_failing` says, and a check that passes makes it `active`
/// again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HealthChecks {
    /// How often.
    #[serde(deserialize_with = "required_duration")]
    pub interval: std::time::Duration,
    /// How long a check may take. Default 1 s.
    #[serde(default = "default_health_timeout", deserialize_with = "health_timeout")]
    pub timeout: std::time::Duration,
    /// How many failed checks in a row take the plugin out of service. Default 3.
    #[serde(default = "default_health_failures")]
    pub failures: std::num::NonZeroU32,
    /// What taking it out of service means. Default `fault`.
    #[serde(default)]
    pub on_failing: OnFailing,
}

/// What failing health checks do (`[health] on_failing`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OnFailing {
    /// Open the circuit breaker: calls are refused with [`CallError::Faulted`](crate::CallError::Faulted);
    /// after the cool-down (`[breaker] cool_down`, else the check interval) the next check or call is the
    /// probe.
    #[default]
    Fault,
    /// Take the plugin out of service (`disabled`) until its manifest or library changes or the host restarts.
    Disable,
    /// Load a fresh generation from the same files (state handed over as in any reload).
    Reload,
}

impl fmt::Display for OnFailing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnFailing::Fault => "fault",
            OnFailing::Disable => "disable",
            OnFailing::Reload => "reload",
        })
    }
}

fn default_health_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(1)
}

fn default_health_failures() -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(3).unwrap_or(std::num::NonZeroU32::MIN)
}

fn health_timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<std::time::Duration, D::Error> {
    Ok(crate::duration::duration(deserializer)?.unwrap_or_else(default_health_timeout))
}

fn required_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<std::time::Duration, D::Error> {
    crate::duration::duration(deserializer)?.ok_or_else(|| serde::de::Error::custom("a duration is required"))
}

/// The `[library]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Libraries {
    /// The Linux library (`.so`).
    pub linux: Option<LibraryFile>,
    /// The macOS library (`.dylib`).
    pub macos: Option<LibraryFile>,
    /// The Windows library (`.dll`).
    pub windows: Option<LibraryFile>,
}

/// One platform's library: a path relative to the manifest's directory and, optionally, its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryFile {
    /// Relative, without `..`: checked when the manifest is read.
    pub path: String,
    /// Lowercase hex, 64 digits.
    pub sha256: Option<String>,
}

/// The platform key of `[library]` this host uses.
pub const PLATFORM: &str = if cfg!(target_os = "windows") {
    "windows"
} else if cfg!(target_os = "macos") {
    "macos"
} else {
    "linux"
};

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        Manifest::parse(path, &read_manifest(path)?)
    }

    /// Validates manifest `text`; `path` is where it came from, for messages and for resolving the library.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = parse_toml(path, text).map_err(host_config_hint)?;
        Ok(Manifest {
            path: path.to_owned(),
            name: raw.name,
            version: raw.version,
            api: raw.api,
            enabled: raw.enabled,
            description: raw.description,
            pin: raw.pin,
            library: raw.library,
            dependencies: raw.dependencies,
            config: raw.config,
            limits: raw.limits,
            breaker: raw.breaker,
            health: raw.health,
            isolation: raw.isolation,
            permissions: raw.permissions,
        })
    }

    /// The directory the library path is relative to.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// This platform's `[library]` entry.
    pub fn platform_library(&self) -> Result<&LibraryFile, LoadError> {
        let entry = match PLATFORM {
            "windows" => &self.library.windows,
            "macos" => &self.library.macos,
            _ => &self.library.linux,
        };
        entry.as_ref().ok_or(LoadError::NoLibraryForPlatform { platform: PLATFORM })
    }

    /// The `[config]` table as the JSON the plugin's `create` receives. TOML datetimes become RFC 3339 strings.
    pub fn config_json(&self) -> String {
        fn json(value: &toml::Value) -> serde_json::Value {
            match value {
                toml::Value::String(s) => s.clone().into(),
                toml::Value::Integer(i) => (*i).into(),
                toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into),
                toml::Value::Boolean(b) => (*b).into(),
                toml::Value::Datetime(d) => d.to_string().into(),
                toml::Value::Array(items) => items.iter().map(json).collect(),
                toml::Value::Table(table) => table.iter().map(|(k, v)| (k.clone(), json(v))).collect(),
            }
        }
        json(&toml::Value::Table(self.config.clone())).to_string()
    }
}

#[cfg(feature = "install")]
/// Sets `enabled` in the manifest at `path`, keeping its comments and layout (the file is replaced
/// atomically). Returns whether the file changed.
pub fn set_enabled(path: &Path, enabled: bool) -> Result<bool, ManifestError> {
    edit(path, |document| {
        let current = document.get("enabled").and_then(toml_edit::Item::as_bool).unwrap_or(true);
        if current != enabled {
            document["enabled"] = toml_edit::value(enabled);
        }
        current != enabled
    })
}

#[cfg(feature = "install")]
/// Sets `pin` to `version` in the manifest at `path`, keeping its comments and layout.
pub(crate) fn set_pin(path: &Path, version: &Version) -> Result<bool, ManifestError> {
    edit(path, |document| {
        document["pin"] = toml_edit::value(version.to_string());
        true
    })
}

#[cfg(feature = "install")]
/// Keeps what ops set in an installed manifest when a new version's manifest replaces it: `enabled` and the
/// `[config]` table are copied from `installed` into `new` (comments and layout of both kept). Returns the
/// keys copied that differ from what the new manifest said.
pub(crate) fn carry_over(installed: &Path, new: &Path) -> Result<Vec<&'static str>, ManifestError> {
    let text = read_manifest(installed)?;
    let installed = parse_document(installed, &text)?;
    let mut carried = Vec::new();
    edit(new, |document| {
        for key in ["enabled", "config"] {
            let old = installed.get(key).map(ToString::to_string);
            if old != document.get(key).map(ToString::to_string) {
                match installed.get(key) {
                    Some(item) => document[key] = item.clone(),
                    None => drop(document.remove(key)),
                }
                carried.push(key);
            }
        }
        !carried.is_empty()
    })?;
    Ok(carried)
}

#[cfg(feature = "install")]
/// Applies `change` to the manifest at `path`; when it reports a change, the result is validated and
/// written through a temporary file and a rename.
fn edit(path: &Path, change: impl FnOnce(&mut toml_edit::DocumentMut) -> bool) -> Result<bool, ManifestError> {
    // A symlinked manifest is edited where it lives, not replaced by a file.
    let path = &std::fs::canonicalize(path).map_err(|e| ManifestError::Read {
        path: path.to_owned(),
        error: if e.kind() == std::io::ErrorKind::NotFound { ReadError::Missing } else { ReadError::Io(e) },
    })?;
    let text = read_manifest(path)?;
    Manifest::parse(path, &text)?;
    let mut document = parse_document(path, &text)?;
    if !change(&mut document) {
        return Ok(false);
    }
    let edited = document.to_string();
    Manifest::parse(path, &edited)?;
    crate::fsutil::write_atomically(path, edited.as_bytes())
        .map_err(|source| ManifestError::Write { path: path.to_owned(), error: source })?;
    Ok(true)
}

/// The text of the manifest at `path`, through the guarded read ([`guarded::MAX_MANIFEST`]).
fn read_manifest(path: &Path) -> Result<String, ManifestError> {
    guarded::read_text(path, guarded::MAX_MANIFEST, "a manifest")
        .map_err(|source| ManifestError::Read { path: path.to_owned(), error: source })
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: PluginName,
    version: Version,
    api: VersionReq,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    description: String,
    pin: Option<Version>,
    library: Libraries,
    #[serde(default)]
    dependencies: BTreeMap<PluginName, VersionReq>,
    #[serde(default)]
    config: toml::Table,
    #[serde(default)]
    limits: Limits,
    breaker: Option<Breaker>,
    health: Option<HealthChecks>,
    #[serde(default)]
    isolation: Isolation,
    #[serde(default)]
    permissions: Permissions,
}

impl<'de> Deserialize<'de> for LibraryFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            path: String,
            sha256: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Path(String),
            Table(Table),
        }
        let (path, sha256) = match Form::deserialize(deserializer).map_err(|_| {
            de::Error::custom("expected a path string or a table `{ path = \"...\", sha256 = \"...\" }`")
        })? {
            Form::Path(path) => (path, None),
            Form::Table(t) => (t.path, t.sha256),
        };
        check_relative(&path).map_err(de::Error::custom)?;
        if let Some(digest) = &sha256 {
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(de::Error::custom(format!(
                    "sha256 {digest:?} is not 64 lowercase hex digits; write the output of `sha256sum <library>`"
                )));
            }
        }
        Ok(LibraryFile { path, sha256 })
    }
}

/// A library path must stay inside the manifest's directory: relative, and without `..`.
fn check_relative(path: &str) -> Result<(), String> {
    let has_drive = path.len() >= 2 && path.as_bytes()[1] == b':' && path.as_bytes()[0].is_ascii_alphabetic();
    if path.is_empty() {
        Err("the library path is empty".to_owned())
    } else if path.starts_with('/') || path.starts_with('\\') || has_drive {
        Err(format!("library path {path:?} is absolute; write it relative to the manifest's directory"))
    } else if path.split(['/', '\\']).any(|part| part == "..") {
        Err(format!("library path {path:?} leaves the manifest's directory through `..`; ship the library inside it"))
    } else {
        Ok(())
    }
}

/// Decodes TOML `text` into `T`, turning the decoder's error into a [`ManifestError::Invalid`] pointing at
/// the offending span, with the key named and a caret under the value.
pub(crate) fn parse_toml<T: de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ManifestError> {
    toml::from_str(text).map_err(|error| invalid(path, text, error.span(), error.message()))
}

#[cfg(feature = "install")]
/// Parses `text` (the file at `path`) for an edit that keeps comments and layout; a refusal names the line and
/// column with the same snippet as [`parse_toml`].
fn parse_document(path: &Path, text: &str) -> Result<toml_edit::DocumentMut, ManifestError> {
    text.parse().map_err(|error: toml_edit::TomlError| invalid(path, text, error.span(), error.message()))
}

/// The refusal of `text` (the file at `path`) for `message` at `span`: line, column, the key and a caret snippet.
fn invalid(path: &Path, text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> ManifestError {
    let start = span.as_ref().map_or(0, |span| span.start).min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_text = &text[line_start..line_end];
    let line = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let width = span.map_or(1, |span| text[start..span.end.clamp(start, line_end)].chars().count().max(1));
    let snippet = snippet(line, line_text, column, width);
    // The message can quote the file (an unknown key): control characters shown as `?`, cut like a snippet.
    let mut message: String = message.trim().chars().map(shown).collect();
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE) {
        message = format!("{}... ({} bytes)", &message[..cut], message.len());
    }
    // When the span is a value, name its key: `version: unexpected character...`.
    if let Some((key, _)) = line_text.split_once('=') {
        if key.len() < column - 1 && !message.contains("unknown field") {
            message = format!("`{}`: {message}", key.trim());
        }
    }
    ManifestError::Invalid { path: path.to_owned(), line, column, message, snippet }
}

/// A host configuration file's own keys: a manifest refused for one of them is a host configuration placed
/// among the plugins.
const HOST_CONFIG_KEYS: [&str; 5] = ["plugin_dirs", "cache_dir", "data_dir", "reload", "trust"];

/// Says so when a "manifest" is a host configuration file in a plugin directory.
fn host_config_hint(error: ManifestError) -> ManifestError {
    match error {
        ManifestError::Invalid { path, line, column, message, snippet }
            if HOST_CONFIG_KEYS.iter().any(|key| message.starts_with(&format!("unknown field `{key}`"))) =>
        {
            let message = format!(
                "{message}; this is a host configuration file, not a plugin manifest: move it out of the plugin directories and give it to the host as its configuration (berth --config FILE)"
            );
            ManifestError::Invalid { path, line, column, message, snippet }
        }
        error => error,
    }
}

/// A character from the file as a message shows it: a control character (a terminal escape) as `?`.
fn shown(c: char) -> char {
    if c.is_control() { '?' } else { c }
}

/// The most characters of a decoder's message shown (it may quote a hostile key).
const MAX_MESSAGE: usize = 300;

/// The most characters of a line a snippet shows.
const SNIPPET_WIDTH: usize = 100;

/// `line_text` with a caret under `width` characters from `column`: a window of at most [`SNIPPET_WIDTH`]
/// characters around the column (a 10 KB line is not echoed whole), control characters shown as `?`.
fn snippet(line: usize, line_text: &str, column: usize, width: usize) -> String {
    let chars: Vec<char> = line_text.chars().map(shown).collect();
    let from = if chars.len() <= SNIPPET_WIDTH { 0 } else { (column - 1).saturating_sub(SNIPPET_WIDTH / 2) };
    let to = chars.len().min(from + SNIPPET_WIDTH);
    let shown: String = chars[from..to].iter().collect();
    let (before, after) = (if from > 0 { "..." } else { "" }, if to < chars.len() { "..." } else { "" });
    let offset = before.len() + column - 1 - from;
    let width = width.min(to.saturating_sub(column - 1)).max(1);
    format!("{line:>4} | {before}{shown}{after}\n     | {}{}", " ".repeat(offset), "^".repeat(width))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "greeter"
version = "1.0.0"
api = "^1.1"
[library]
linux = "libgreeter.so"
windows = { path = "greeter.dll", sha256 = "0000000000000000000000000000000000000000000000000000000000000000" }
[config]
greeting = "Hi"
when = 1979-05-27T07:32:00Z
"#;

    #[test]
    fn hostile_names_are_cut_and_escaped_in_messages() {
        let long = GOOD.replace("name = \"greeter\"", &format!("name = \"{}\"", "A".repeat(10_000)));
        let error = Manifest::parse(Path::new("m.toml"), &long).unwrap_err().to_string();
        assert!(error.len() < 600, "{} bytes: {error}", error.len());
        assert!(error.contains("...\" (10000 bytes)"), "{error}");
        // A Cyrillic "а" (U+0430) in place of the Latin "a".
        let look_alike = GOOD.replace("name = \"greeter\"", "name = \"gre\u{0435}ter\"");
        let error = Manifest::parse(Path::new("m.toml"), &look_alike).unwrap_err().to_string();
        assert!(error.contains("invalid plugin name \"gre\\u{435}ter\""), "{error}");
        // An unknown key quoted in the decoder's message: its control characters escaped, a long one cut.
        let escape = format!("\"\\u001b]0;x\\u0007{}\" = 1\n{GOOD}", "k".repeat(10_000));
        let error = Manifest::parse(Path::new("m.toml"), &escape).unwrap_err().to_string();
        assert!(!error.contains('\u{1b}') && error.contains("unknown field `?]0;x?k"), "{error}");
        assert!(error.len() < 1000, "{} bytes", error.len());
    }

    #[cfg(feature = "install")]
    /// An edit of a manifest that does not parse (install's carry-over from the installed one) names the real
    /// line and column, with the snippet, not 1:1.
    #[test]
    fn edits_of_a_broken_manifest_name_the_real_span() {
        let dir = tempfile::tempdir().unwrap();
        let (installed, new) = (dir.path().join("installed.toml"), dir.path().join("new.toml"));
        std::fs::write(&installed, "name = \"greeter\"\nversion = \"1.0.0\"\nenabled = flase\n").unwrap();
        std::fs::write(&new, GOOD).unwrap();
        match carry_over(&installed, &new).unwrap_err() {
            ManifestError::Invalid { line, column, snippet, .. } => {
                assert_eq!((line, column), (3, 11), "{snippet}");
                assert!(snippet.contains("enabled = flase"), "{snippet}");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn invalid(text: &str) -> (usize, usize, String) {
        match Manifest::parse(Path::new("m.toml"), text).unwrap_err() {
            ManifestError::Invalid { line, column, message, .. } => (line, column, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_good_manifest_parses_with_defaults() {
        let m = Manifest::parse(Path::new("dir/m.toml"), GOOD).unwrap();
        assert_eq!(m.name.as_str(), "greeter");
        assert!(m.enabled);
        assert_eq!(m.dir(), Path::new("dir"));
        assert_eq!(m.library.linux.as_ref().unwrap().path, "libgreeter.so");
        assert_eq!(m.library.windows.as_ref().unwrap().sha256.as_deref().map(str::len), Some(64));
        assert_eq!(m.config_json(), r#"{"greeting":"Hi","when":"1979-05-27T07:32:00Z"}"#);
    }

    #[test]
    fn unknown_key_is_refused_with_its_position() {
        let (line, column, message) =
            invalid("name = \"a\"\nversion = \"1.0.0\"\napi = \"^1\"\nnmae = 1\n[library]\nlinux = \"a.so\"\n");
        assert_eq!((line, column), (4, 1));
        assert!(message.contains("unknown field `nmae`"), "{message}");
    }

    #[test]
    fn invalid_semver_names_the_key() {
        let (line, _, message) =
            invalid("name = \"a\"\nversion = \"1.x\"\napi = \"^1\"\n[library]\nlinux = \"a.so\"\n");
        assert_eq!(line, 2);
        assert!(message.starts_with("`version`:"), "{message}");
    }

    #[test]
    fn library_paths_must_stay_inside_the_directory() {
        for path in ["../x.so", "/abs/x.so", "a/../../x.so", "C:\\x.dll", "a\\..\\x.so"] {
            let text = format!("name = \"a\"\nversion = \"1.0.0\"\napi = \"^1\"\n[library]\nlinux = {path:?}\n");
            let (line, _, message) = invalid(&text);
            assert_eq!(line, 5, "{path}");
            assert!(message.contains("absolute") || message.contains(".."), "{path}: {message}");
        }
    }

    #[test]
    fn plugin_names_are_checked() {
        assert!(PluginName::new("text-filters").is_ok());
        for bad in ["", "Greeter", "-a", "a_b", "a b", &"x".repeat(65)] {
            assert!(PluginName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn syntax_errors_point_at_the_line() {
        let (line, _, _) = invalid("name = \"a\"\nversion = \n");
        assert_eq!(line, 2);
    }
}

/// Where a plugin runs (`isolation` in its manifest; the host configuration's `[isolation] process` can move it
/// out, never back in).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// In the host process: calls are direct calls (nanoseconds); an abort or a segfault ends the host.
    #[default]
    InProcess,
    /// In a worker process of its own, sandboxed (`[permissions]`): calls cross shared memory (microseconds);
    /// a crash ends only the worker, which is restarted.
    Process,
}

/// What an isolated plugin may touch (`[permissions]` in its manifest, narrowed by the host configuration's
/// `[isolation.permissions.NAME]`). Everything not granted is refused by the OS with an error the plugin can
/// handle (`EACCES`, `EAGAIN`); on Linux through Landlock, rlimits and a pids cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Permissions {
    /// Absolute paths (files or directories, with everything below) the plugin may read.
    #[serde(default)]
    pub read: Vec<PathBuf>,
    /// Absolute paths the plugin may read, write, create and remove files in.
    #[serde(default)]
    pub write: Vec<PathBuf>,
    /// TCP ports the plugin may connect to (any address). None: no TCP connections at all.
    #[serde(default)]
    pub connect: Vec<u16>,
    /// TCP ports the plugin may bind. None: no listening.
    #[serde(default)]
    pub bind: Vec<u16>,
    /// The most heap (private writable memory) the worker may map, in MiB; past it allocation fails.
    pub memory_mib: Option<u64>,
    /// The most CPU time the worker may use, in seconds, over its life; past it the OS stops it.
    pub cpu_seconds: Option<u64>,
    /// How many threads the plugin may start beyond the worker's own.
    pub threads: Option<u32>,
    /// Refuse to start the plugin when the OS cannot enforce all of this (fail closed), instead of a warning.
    #[serde(default)]
    pub require_sandbox: bool,
}

/// Ops' narrowing of a plugin's permissions (`[isolation.permissions.NAME]` in the host configuration): the
/// same keys, each of which can only take away.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Narrowing {
    /// Only these paths (and what is below them) of the publisher's grants stay granted.
    pub read: Option<Vec<PathBuf>>,
    /// Only these paths (and what is below them) of the publisher's write grants stay granted.
    pub write: Option<Vec<PathBuf>>,
    /// Only these of the publisher's ports stay granted.
    pub connect: Option<Vec<u16>>,
    /// Only these of the publisher's ports stay granted.
    pub bind: Option<Vec<u16>>,
    /// A lower heap limit (the lower of the two applies).
    pub memory_mib: Option<u64>,
    /// A lower CPU time limit.
    pub cpu_seconds: Option<u64>,
    /// A lower thread limit.
    pub threads: Option<u32>,
    /// Fail closed even where the publisher did not ask to.
    pub require_sandbox: Option<bool>,
}

impl Permissions {
    /// The permissions left after ops' `narrowing`: never more than the publisher asked for.
    pub fn narrowed(&self, narrowing: &Narrowing, require_sandbox: bool) -> Permissions {
        fn paths(granted: &[PathBuf], allowed: &Option<Vec<PathBuf>>) -> Vec<PathBuf> {
            let Some(allowed) = allowed else { return granted.to_vec() };
            let mut kept = std::collections::BTreeSet::new();
            for grant in granted {
                for allow in allowed {
                    if grant.starts_with(allow) {
                        kept.insert(grant.clone());
                    } else if allow.starts_with(grant) {
                        kept.insert(allow.clone());
                    }
                }
            }
            kept.into_iter().collect()
        }
        fn ports(granted: &[u16], allowed: &Option<Vec<u16>>) -> Vec<u16> {
            granted
                .iter()
                .copied()
                .filter(|port| allowed.as_ref().is_none_or(|allowed| allowed.contains(port)))
                .collect()
        }
        fn lower<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        Permissions {
            read: paths(&self.read, &narrowing.read),
            write: paths(&self.write, &narrowing.write),
            connect: ports(&self.connect, &narrowing.connect),
            bind: ports(&self.bind, &narrowing.bind),
            memory_mib: lower(self.memory_mib, narrowing.memory_mib),
            cpu_seconds: lower(self.cpu_seconds, narrowing.cpu_seconds),
            threads: lower(self.threads, narrowing.threads),
            require_sandbox: self.require_sandbox || narrowing.require_sandbox.unwrap_or(false) || require_sandbox,
        }
    }

    /// A refusal of what cannot be a grant: a relative path.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (key, path) in self.read.iter().map(|p| ("read", p)).chain(self.write.iter().map(|p| ("write", p))) {
            if !path.is_absolute() {
                return Err(format!(
                    "{key}: {} is not an absolute path; grant paths as absolute paths",
                    path.display()
                ));
            }
        }
        Ok(())
    }
}
