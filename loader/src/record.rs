//! The accepted-versions record (rollback protection): the highest version of each plugin the host has
//! accepted, kept in a small sealed file in its data directory, locked between processes; an older version is
//! refused unless its manifest pins it.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::digest::sha256_hex;
use crate::error::{HostError, LoadError};
use crate::fsutil::{lock_dir, write_atomically};
use crate::guarded;
use crate::manifest::{Manifest, PluginName};
use crate::permissions::{check_permissions, private_dir};

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

    /// The highest version of `name` accepted so far (install checks a bundle against it).
    #[cfg_attr(not(feature = "install"), allow(dead_code))]
    pub(crate) fn highest(&self, name: &PluginName) -> Option<Version> {
        self.versions.lock().unwrap_or_else(|e| e.into_inner()).get(name.as_str()).cloned()
    }

    /// The record's file.
    #[cfg_attr(not(feature = "install"), allow(dead_code))]
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
