//! Trust: what the host requires of a plugin's files beyond "a complete library for this platform", before
//! it runs any of their code.
//!
//! - **Permissions** (OpenSSH `StrictModes`): the manifest, the library and every directory above them must
//!   not be writable by group or others (a sticky directory such as `/tmp` is fine), nor owned by a user
//!   other than the host's own or root. Otherwise someone else could swap the code this host runs.
//! - **Checksums**: a bundle's `SHA256SUMS` beside the manifest, when present, must list the library with
//!   the digest of the bytes read (the manifest's `sha256` is checked by `verify`).
//! - **Signatures**: a minisign signature `<library>.minisig` whose trusted comment is the [`statement`]
//!   binding plugin name, version, target and SHA-256, by one of the host's trusted keys. The
//!   [`TrustPolicy`] says what an unsigned library or an unknown key gets; a malformed signature, one that
//!   does not match the bytes, or one made for another plugin, version or target is refused under every
//!   policy.
//! - **Accepted versions** (rollback protection): the highest version of each plugin the host has accepted
//!   is kept in a small state file in its data directory; an older version is refused unless its manifest
//!   pins it (`pin = "<version>"`).
//!
//! Signatures are plain minisign: `minisign -Vm libgreeter.so -p publisher.pub` checks one by hand and
//! prints the statement. The host verifies with `minisign-verify` (no signing code in the host).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ct_codecs::{Base64, Decoder};
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::digest::sha256_hex;
use crate::error::{HostError, KeyError, LoadError};
use crate::fsutil::{lock_dir, write_atomically};
use crate::guarded;
use crate::manifest::{Manifest, PluginName};

/// The target triple this host was built for; a signature must name it.
pub const HOST_TARGET: &str = env!("BERTH_HOST_TARGET");

/// The checksum file a bundle ships beside its manifest, in `sha256sum` format (`sha256sum -c SHA256SUMS`).
pub const CHECKSUM_FILE: &str = "SHA256SUMS";

/// The suffix of a library's minisign signature file: `libgreeter.so.minisig`.
pub const SIGNATURE_SUFFIX: &str = ".minisig";

/// What a signature's trusted comment must say for this plugin: name, version, target and the SHA-256 of
/// the library, so that a signature moved to another plugin, version or target does not verify.
///
/// ```
/// let version = semver::Version::new(1, 0, 0);
/// let statement = berth::trust::statement("greeter", &version, "x86_64-unknown-linux-gnu", "ab12");
/// assert_eq!(statement, "berth-plugin name=greeter version=1.0.0 target=x86_64-unknown-linux-gnu sha256=ab12");
/// ```
pub fn statement(name: &str, version: &Version, target: &str, sha256: &str) -> String {
    format!("berth-plugin name={name} version={version} target={target} sha256={sha256}")
}

/// The signature file of the library at `library`.
pub fn signature_path(library: &Path) -> PathBuf {
    let mut name = library.file_name().unwrap_or_default().to_owned();
    name.push(SIGNATURE_SUFFIX);
    library.with_file_name(name)
}

/// What the host does with a library that has no signature by a trusted key (`[trust] policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustPolicy {
    /// Refused: only libraries signed by a trusted key load.
    Enforce,
    /// Loaded, but marked untrusted in the status and logged as a warning. The default, so that a host with
    /// no configuration loads local builds; production hosts should enforce.
    #[default]
    Warn,
    /// Not checked; a signature present by a trusted key is still verified.
    Off,
}

impl std::str::FromStr for TrustPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "enforce" => Ok(TrustPolicy::Enforce),
            "warn" => Ok(TrustPolicy::Warn),
            "off" => Ok(TrustPolicy::Off),
            other => Err(format!("unknown trust policy {other:?}: use enforce, warn or off")),
        }
    }
}

impl fmt::Display for TrustPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrustPolicy::Enforce => "enforce",
            TrustPolicy::Warn => "warn",
            TrustPolicy::Off => "off",
        })
    }
}

/// The `[trust]` part of the host configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrustConfig {
    /// What an unsigned library or one signed by an unknown key gets.
    pub policy: TrustPolicy,
    /// The publishers' public keys whose signatures the host accepts.
    pub keys: Vec<TrustedKey>,
    /// Refuse files and directories that others could write (OpenSSH `StrictModes`). Default `true`; turn it
    /// off only on a development machine.
    pub strict_modes: bool,
    /// The largest library the host reads, in bytes: a larger one is refused before a byte of it is read.
    /// Default [`DEFAULT_MAX_LIBRARY`] (256 MiB); `[trust] max_library_mib` in the host configuration.
    pub max_library_size: u64,
}

/// The default largest library: far above a release build of a plugin (a few MiB) and a debug build with
/// debug information (tens of MiB).
pub const DEFAULT_MAX_LIBRARY: u64 = 256 << 20;

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            policy: TrustPolicy::default(),
            keys: Vec::new(),
            strict_modes: true,
            max_library_size: DEFAULT_MAX_LIBRARY,
        }
    }
}

/// A minisign public key the host trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    id: String,
    key: minisign_verify::PublicKey,
}

impl TrustedKey {
    /// Parses a key: the base64 line (`RW...`) or the whole `.pub` file minisign writes.
    pub fn parse(text: &str) -> Result<TrustedKey, KeyError> {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"));
        let line = line.ok_or(KeyError::Empty)?;
        let key = minisign_verify::PublicKey::from_base64(line)
            .map_err(|e| KeyError::Malformed { reason: format!(" ({e})") })?;
        let id = key_id_of_line(line).ok_or(KeyError::Malformed { reason: String::new() })?;
        Ok(TrustedKey { id, key })
    }

    /// Reads a key from a minisign `.pub` file, through the guarded read (a regular file of at most
    /// [`guarded::MAX_KEY`] bytes). The file and the directories above it must be safe from other users (as
    /// plugin files are, whatever `strict_modes` says): whoever can replace a trusted key can sign their own
    /// plugins.
    pub fn from_file(path: &Path) -> Result<TrustedKey, KeyError> {
        let unreadable = |source: guarded::ReadError| KeyError::Unreadable { path: path.to_owned(), source };
        let canonical = fs::canonicalize(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => unreadable(guarded::ReadError::Missing),
            _ => unreadable(guarded::ReadError::Io(e)),
        })?;
        // What is there first (a FIFO, a device): its permissions are no advice worth giving.
        let text = guarded::read_text(&canonical, guarded::MAX_KEY, "a key file").map_err(unreadable)?;
        check_permissions(&[&canonical], "").map_err(|e| KeyError::Unsafe(Box::new(e)))?;
        TrustedKey::parse(&text).map_err(|e| KeyError::InFile { path: path.to_owned(), error: Box::new(e) })
    }

    /// A key as configured (`[trust].keys`, `--trusted-key`): the path of a `.pub` file, relative to `base`,
    /// when such a file exists, else the key's base64 line. An entry that is neither, and holds a character
    /// base64 does not use (`.`, `-`, `\\`...), is taken for a mistyped path and reported as a file that cannot
    /// be read.
    pub fn from_config(entry: &str, base: &Path) -> Result<TrustedKey, KeyError> {
        let path = base.join(entry);
        if path.exists() {
            return TrustedKey::from_file(&path);
        }
        TrustedKey::parse(entry).or_else(|e| {
            let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
            if entry.trim().chars().all(base64) { Err(e) } else { TrustedKey::from_file(&path) }
        })
    }

    /// The key id as minisign prints it (uppercase hex, up to 16 digits).
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A minisign key id (the 8 bytes stored little-endian in keys and signatures) as minisign prints it:
/// uppercase hex, without leading zeros.
pub fn key_id(keynum: [u8; 8]) -> String {
    format!("{:X}", u64::from_le_bytes(keynum))
}

/// The key id in a minisign public key or signature line (two algorithm bytes, then the key id).
fn key_id_of_line(base64_line: &str) -> Option<String> {
    let bytes = Base64::decode_to_vec(base64_line.trim(), None).ok()?;
    Some(key_id(bytes.get(2..10)?.try_into().ok()?))
}

/// How far a loaded library is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Signed by this trusted key, for this plugin, version, target and bytes.
    Signed {
        /// The key id.
        key: String,
    },
    /// Loaded without a verified signature, under `policy = "warn"`.
    Untrusted {
        /// Why (no signature, unknown key).
        reason: String,
    },
    /// Not checked (`policy = "off"`, no signature by a trusted key).
    Unchecked,
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::Signed { key } => write!(f, "signed by trusted key {key}"),
            Trust::Untrusted { reason } => write!(f, "untrusted: {reason}"),
            Trust::Unchecked => f.write_str("signature not checked (policy off)"),
        }
    }
}

/// Checks the signature of `bytes`, the library at `library` that `manifest` describes, under `config`.
pub(crate) fn check_signature(
    config: &TrustConfig,
    manifest: &Manifest,
    library: &Path,
    bytes: &[u8],
    sha256: &str,
) -> Result<Trust, LoadError> {
    let path = signature_path(library);
    let text = match read_trust_file(&path, guarded::MAX_KEY, "a minisign signature")? {
        Some(text) => text,
        None => {
            return match config.policy {
                TrustPolicy::Enforce => Err(LoadError::Unsigned { library: library.to_owned(), signature: path }),
                TrustPolicy::Warn => {
                    // The file name only: an install checks a staging directory, then renames it into place.
                    let file = path.file_name().unwrap_or_default().to_string_lossy();
                    Ok(Trust::Untrusted { reason: format!("no signature (no {file} beside the library)") })
                }
                TrustPolicy::Off => Ok(Trust::Unchecked),
            };
        }
    };
    let malformed = |reason: String| LoadError::SignatureMalformed { path: path.clone(), reason };
    let signature = minisign_verify::Signature::decode(&text).map_err(|e| malformed(e.to_string()))?;
    let id = text.lines().nth(1).and_then(key_id_of_line).ok_or_else(|| malformed("no key id".to_owned()))?;
    let Some(key) = config.keys.iter().find(|key| key.id == id) else {
        return match config.policy {
            TrustPolicy::Enforce => Err(LoadError::UnknownKey { path, key: id, trusted: config.keys.len() }),
            TrustPolicy::Warn => Ok(Trust::Untrusted { reason: format!("signed by key {id}, which is not trusted") }),
            TrustPolicy::Off => Ok(Trust::Unchecked),
        };
    };
    match key.key.verify(bytes, &signature, false) {
        Ok(()) => {}
        Err(minisign_verify::Error::UnexpectedAlgorithm) => {
            return Err(malformed(
                "a legacy (not prehashed) signature; sign it again prehashed, with the same trusted comment (`minisign -S -t \"<statement>\"`: 0.10 or later prehashes by default, older ones need -H)".to_owned(),
            ));
        }
        Err(_) => return Err(LoadError::SignatureInvalid { path, library: library.to_owned(), key: id }),
    }
    let expected = statement(manifest.name.as_str(), &manifest.version, HOST_TARGET, sha256);
    if signature.trusted_comment() != expected {
        return Err(LoadError::SignatureStatement { path, signed: signature.trusted_comment().to_owned(), expected });
    }
    Ok(Trust::Signed { key: id })
}

/// The entries of a `SHA256SUMS` file: file name -> lowercase hex digest.
pub(crate) fn parse_checksums(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut sums = BTreeMap::new();
    for (number, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let (digest, name) = line
            .split_once("  ")
            .or_else(|| line.split_once(" *"))
            .ok_or_else(|| format!("line {}: expected \"<sha256>  <file>\"", number + 1))?;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("line {}: {digest:?} is not a SHA-256 digest", number + 1));
        }
        if sums.insert(name.to_owned(), digest.to_ascii_lowercase()).is_some() {
            return Err(format!(
                "line {}: it lists {} a second time; list each file once, as `sha256sum` writes it",
                number + 1,
                crate::name::quote(name)
            ));
        }
    }
    Ok(sums)
}

/// Checks the library's digest against the `SHA256SUMS` beside the manifest, when there is one.
pub(crate) fn check_checksum_file(manifest: &Manifest, library: &Path, sha256: &str) -> Result<(), LoadError> {
    let path = manifest.dir().join(CHECKSUM_FILE);
    let Some(text) = read_trust_file(&path, guarded::MAX_CHECKSUMS, "a checksum file")? else { return Ok(()) };
    let entry = &manifest.platform_library()?.path;
    let sums = parse_checksums(&text).map_err(|reason| LoadError::ChecksumFile { path: path.clone(), reason })?;
    let expected = sums.get(entry.as_str()).ok_or_else(|| LoadError::ChecksumFile {
        path: path.clone(),
        reason: format!("it does not list the library {entry}"),
    })?;
    if expected != sha256 {
        return Err(LoadError::HashMismatch {
            path: library.to_owned(),
            expected_by: path.display().to_string(),
            expected: expected.clone(),
            found: sha256.to_owned(),
        });
    }
    Ok(())
}

/// Refuses any of `paths` (canonical) when it, or a directory above it, could be changed by someone other than this
/// user or root: writable by group or others (except a sticky directory, where others cannot replace what
/// they do not own), or owned by another user. `also` is appended to the advice (what else would help).
#[cfg(unix)]
pub(crate) fn check_permissions(paths: &[&Path], also: &str) -> Result<(), LoadError> {
    use std::os::unix::fs::MetadataExt;
    let user = rustix::process::geteuid().as_raw();
    // The paths usually share their directories: each entry is looked at once.
    let mut checked = std::collections::BTreeSet::new();
    let entries = paths.iter().flat_map(|path| path.ancestors());
    for entry in entries.filter(|entry| checked.insert(*entry)) {
        let metadata = fs::metadata(entry).map_err(|source| LoadError::Io { path: entry.to_owned(), source })?;
        let (mode, owner) = (metadata.mode() & 0o7777, metadata.uid());
        let refuse = |reason: String| Err(LoadError::UnsafePermissions { path: entry.to_owned(), mode, reason });
        if owner != user && owner != 0 {
            return refuse(format!(
                "it is owned by uid {owner}, neither this user (uid {user}) nor root, so that user could change what this host trusts; `chown` it to the host's user{also}"
            ));
        }
        let sticky_dir = metadata.is_dir() && mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky_dir {
            let who = if mode & 0o002 != 0 { "every user" } else { "its group" };
            return refuse(format!(
                "{who} can write it, and so change what this host trusts; run `chmod go-w {}`{also}",
                entry.display()
            ));
        }
    }
    Ok(())
}

/// Windows and other platforms: file ACLs are not checked (documented in the ops guide).
#[cfg(not(unix))]
pub(crate) fn check_permissions(_paths: &[&Path], _also: &str) -> Result<(), LoadError> {
    Ok(())
}

/// Creates `dir` (and its parents) with mode 0700, or checks that an existing one is private.
pub(crate) fn private_dir(dir: &Path) -> Result<(), String> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| format!("cannot create it: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let metadata = fs::metadata(dir).map_err(|e| e.to_string())?;
        let (mode, owner, user) = (metadata.mode() & 0o777, metadata.uid(), rustix::process::geteuid().as_raw());
        if owner != user {
            return Err(format!(
                "it is owned by uid {owner}, not by this user (uid {user}), who could change what the host keeps there; `chown` it to the host's user or choose another directory"
            ));
        }
        if mode & 0o077 != 0 {
            return Err(format!(
                "mode {mode:04o} lets other users see or change what the host keeps there; run `chmod 700 {}` or choose another directory",
                dir.display()
            ));
        }
    }
    Ok(())
}

/// The name of the accepted-versions file in the data directory.
pub const ACCEPTED_VERSIONS_FILE: &str = "accepted-versions.toml";

/// The record's format: written as `format = 1`; a record without it (or with another) is refused.
const RECORD_FORMAT: u32 = 1;

/// The record's last line starts with this, then the SHA-256 of every byte above it: a record cut short
/// anywhere, emptied or edited is told from an intact one.
const RECORD_SEAL: &str = "# sha256 of the lines above: ";

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct AcceptedFile {
    format: u32,
    #[serde(default)]
    accepted: BTreeMap<String, Version>,
}

/// The highest version of each plugin the host has accepted, kept in `<data dir>/accepted-versions.toml`
/// with the previous record beside it as `accepted-versions.toml.bak`.
pub(crate) struct AcceptedVersions {
    path: PathBuf,
    versions: Mutex<BTreeMap<String, Version>>,
}

impl AcceptedVersions {
    /// Opens the record in `data_dir` (created 0700). A record that is damaged, cut short, unsealed or
    /// writable by others stops the host, since taking it as empty would let an old version back in; no
    /// record is an empty one only in a new (or empty) data directory.
    pub(crate) fn open(data_dir: &Path) -> Result<AcceptedVersions, HostError> {
        let error = |reason: String| HostError::DataDir { dir: data_dir.to_owned(), reason };
        private_dir(data_dir).map_err(error)?;
        let path = data_dir.join(ACCEPTED_VERSIONS_FILE);
        let versions = match read_accepted(&path).map_err(error)? {
            Some(Read::Sealed(versions)) => versions,
            // Written by a berth before the seal, complete as far as can be told: sealed now, the old file kept
            // as the backup.
            Some(Read::Legacy(versions)) => {
                let _one_writer = lock_dir(data_dir).map_err(|e| error(format!("cannot lock it: {e}")))?;
                write_record(&path, &versions, true)
                    .map_err(|e| error(format!("cannot seal {}: {e}", path.display())))?;
                versions
            }
            None => {
                // From its first write on, a record has a backup beside it: a backup alone means the record was
                // lost, and taking that for a new data directory would let an old version back in.
                let backup = backup_path(&path);
                if backup.exists() {
                    return Err(error(format!(
                        "{} is missing but its backup is there; restore it with `mv {} {}`",
                        path.display(),
                        backup.display(),
                        path.display()
                    )));
                }
                BTreeMap::new()
            }
        };
        Ok(AcceptedVersions { path, versions: Mutex::new(versions) })
    }

    /// The highest version of `name` accepted so far.
    pub(crate) fn highest(&self, name: &PluginName) -> Option<Version> {
        self.versions.lock().unwrap_or_else(|e| e.into_inner()).get(name.as_str()).cloned()
    }

    /// The record's file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses a version older than the highest accepted one, unless the manifest pins it.
    pub(crate) fn check(&self, manifest: &Manifest) -> Result<(), LoadError> {
        let versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        match versions.get(manifest.name.as_str()) {
            Some(highest) if manifest.version < *highest && manifest.pin.as_ref() != Some(&manifest.version) => {
                Err(LoadError::Downgrade {
                    version: manifest.version.to_string(),
                    highest: highest.to_string(),
                    record: self.path.clone(),
                    pin: manifest.pin.as_ref().map(Version::to_string),
                })
            }
            _ => Ok(()),
        }
    }

    /// Records that the versions of `manifests` were accepted, where they are the highest so far, in one
    /// write. The file is read again first (another host may share the data directory); the current record
    /// becomes the backup and the new one is sealed and replaces it atomically. The error is the reason it
    /// could not be written ([`AcceptedVersions::record_error`]).
    pub(crate) fn record(&self, manifests: &[&Manifest]) -> Result<(), String> {
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        let newer: Vec<&&Manifest> = manifests
            .iter()
            .filter(|m| versions.get(m.name.as_str()).is_none_or(|highest| *highest < m.version))
            .collect();
        if newer.is_empty() {
            return Ok(());
        }
        // Another host (or `berth install`) sharing the data directory writes between our read and our write
        // otherwise, and one of the two updates is lost.
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let _one_writer = lock_dir(dir).map_err(|e| format!("cannot lock {}: {e}", dir.display()))?;
        let on_disk = read_accepted(&self.path)?.map(Read::into_versions);
        let mut merged = on_disk.clone().unwrap_or_default();
        let mut accepted = versions.clone();
        accepted.extend(newer.iter().map(|m| (m.name.as_str().to_owned(), m.version.clone())));
        for (plugin, version) in accepted {
            if merged.get(&plugin).is_none_or(|v| *v < version) {
                merged.insert(plugin, version);
            }
        }
        write_record(&self.path, &merged, on_disk.is_some())?;
        *versions = merged;
        Ok(())
    }

    /// The refusal of a plugin whose version could not be recorded, for `reason`.
    pub(crate) fn record_error(&self, reason: &str) -> LoadError {
        LoadError::VersionRecord { path: self.path.clone(), reason: reason.to_owned() }
    }
}

/// The record's first line, as every berth has written it.
const RECORD_HEADER: &str =
    "# The highest version of each plugin this host has accepted (written by berth; do not edit).\n";

/// Writes `versions` as the sealed record at `path`. The record there (`had_record`) becomes the backup first;
/// a first record is linked as its own backup after it is written, so that from then on a record never goes
/// missing unnoticed.
fn write_record(path: &Path, versions: &BTreeMap<String, Version>, had_record: bool) -> Result<(), String> {
    let table = toml::to_string(&AcceptedFile { format: RECORD_FORMAT, accepted: versions.clone() })
        .map_err(|e| e.to_string())?;
    let body = format!(
        "{RECORD_HEADER}# An older version is refused unless its manifest pins it: pin = \"<version>\".\n{table}"
    );
    let text = format!("{body}{RECORD_SEAL}{}\n", sha256_hex(body.as_bytes()));
    let backup = |e: io::Error| format!("cannot keep a backup of it: {e}");
    if had_record {
        keep_backup(path).map_err(backup)?;
    }
    write_atomically(path, text.as_bytes()).map_err(|e| e.to_string())?;
    if !had_record {
        keep_backup(path).map_err(backup)?;
    }
    Ok(())
}

/// A record as read.
enum Read {
    /// Sealed, and its seal matches.
    Sealed(BTreeMap<String, Version>),
    /// Written before the seal existed: berth's header, at least one version, ending with a full line.
    Legacy(BTreeMap<String, Version>),
}

impl Read {
    fn into_versions(self) -> BTreeMap<String, Version> {
        match self {
            Read::Sealed(versions) | Read::Legacy(versions) => versions,
        }
    }
}

/// The record as berth wrote it before the seal: only the `[accepted]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyFile {
    accepted: BTreeMap<String, Version>,
}

/// `accepted-versions.toml.bak` beside the record.
fn backup_path(record: &Path) -> PathBuf {
    let mut name = record.as_os_str().to_owned();
    name.push(".bak");
    PathBuf::from(name)
}

/// Makes the current record the backup without copying it: a hard link under a temporary name, renamed over
/// the old backup (made durable with the new record by [`write_atomically`]'s directory sync).
fn keep_backup(record: &Path) -> io::Result<()> {
    let dir = record.parent().unwrap_or(Path::new("."));
    let temp =
        tempfile::Builder::new().prefix(".accepted-versions").make_in(dir, |path| fs::hard_link(record, path))?;
    temp.persist(backup_path(record)).map(drop).map_err(|e| e.error)
}

/// Reads and checks the record: `None` when there is none. Every other failure says what is wrong and what to
/// do: the backup to restore when there is one.
fn read_accepted(path: &Path) -> Result<Option<Read>, String> {
    let damaged = |what: String| {
        let backup = backup_path(path);
        let advice = if backup.is_file() {
            format!("restore the previous record with `mv {} {}`", backup.display(), path.display())
        } else {
            format!(
                "restore it from a backup (a damaged record cannot be trusted: an older version could come back), or, to start afresh and accept any version again, delete {}",
                path.display()
            )
        };
        format!("{}: {what}; {advice}", path.display())
    };
    let text = match guarded::read_text(path, guarded::MAX_RECORD, "an accepted-versions record") {
        Ok(text) => text,
        Err(e) if e.is_missing() => return Ok(None),
        Err(e) => return Err(damaged(e.to_string())),
    };
    let canonical = fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_permissions(&[&canonical], "").map_err(|e| e.to_string())?;
    let sealed = text.strip_suffix('\n').and_then(|rest| {
        let at = rest.rfind('\n').map_or(0, |at| at + 1);
        let seal = rest[at..].strip_prefix(RECORD_SEAL)?;
        Some((&text[..at], seal))
    });
    let Some((body, seal)) = sealed else {
        let legacy = text.starts_with(RECORD_HEADER) && text.ends_with('\n');
        if let Some(file) = legacy.then(|| toml::from_str::<LegacyFile>(&text).ok()).flatten() {
            if !file.accepted.is_empty() {
                return Ok(Some(Read::Legacy(file.accepted)));
            }
        }
        return Err(damaged(format!(
            "it does not end with its seal line (`{RECORD_SEAL}...`), so it was cut short, emptied or written by hand"
        )));
    };
    if seal != sha256_hex(body.as_bytes()) {
        return Err(damaged("its content does not match its seal line, so it was changed or damaged".to_owned()));
    }
    let file = toml::from_str::<AcceptedFile>(body).map_err(|e| damaged(e.message().to_owned()))?;
    if file.format != RECORD_FORMAT {
        return Err(damaged(format!(
            "it is in format {}, and this berth reads format {RECORD_FORMAT}; use the berth that wrote it",
            file.format
        )));
    }
    Ok(Some(Read::Sealed(file.accepted)))
}

/// Reads a small file beside a library (a signature, a checksum file) through the guarded read: `None`
/// when it does not exist. Anything else at that name (a FIFO, a directory, a huge file) is an error, never a
/// blocking read.
fn read_trust_file(path: &Path, limit: u64, what: &'static str) -> Result<Option<String>, LoadError> {
    guarded::read_text_if_present(path, limit, what).map_err(|source| LoadError::Read { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str) -> Manifest {
        let text = format!("name = \"{name}\"\nversion = \"1.0.0\"\napi = \"^1.0\"\n[library]\nlinux = \"lib.so\"\n");
        Manifest::parse(Path::new("m.toml"), &text).unwrap()
    }

    /// Hosts sharing a data directory record at the same time, each once (as short-lived commands do, so no
    /// later write of theirs could put a lost version back): no update is lost.
    #[test]
    fn writers_sharing_one_record_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        AcceptedVersions::open(&data).unwrap();
        std::thread::scope(|scope| {
            for i in 0..2 {
                let data = &data;
                scope.spawn(move || {
                    for n in 0..40 {
                        let host = AcceptedVersions::open(data).unwrap();
                        host.record(&[&manifest(&format!("plugin-{i}-{n}"))]).unwrap();
                    }
                });
            }
        });
        let recorded = AcceptedVersions::open(&data).unwrap();
        let versions = recorded.versions.lock().unwrap();
        assert_eq!(versions.len(), 80, "lost updates: {:?}", versions.keys().collect::<Vec<_>>());
    }
}
