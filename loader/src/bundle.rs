//! Bundles: how a plugin travels from its author to a host. A bundle is a gzip'd tar holding one directory
//! named after the plugin, with its manifest (`<name>.toml`), its library for one target, `SHA256SUMS` over
//! both (in `sha256sum` format) and, optionally, the library's minisign signature (`<library>.minisig`).
//! Its file name says what it holds: `<name>-<version>-<target>.tar.gz`.
//!
//! Bundles are written deterministically (entries sorted, zero timestamps and owners, fixed modes, no gzip
//! time stamp), so the same inputs give byte-identical bundles. Reading is strict: one directory, regular
//! files only, no hidden or nested names, bounded sizes, every file listed in `SHA256SUMS` with its digest
//! (the signature aside, which signs the library itself).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use semver::Version;

use crate::error::{BundleError, ManifestError};
use crate::manifest::{Manifest, PluginName};
use crate::trust::{CHECKSUM_FILE, SIGNATURE_SUFFIX, parse_checksums};
use crate::verify::sha256_hex;

/// The most a bundle may hold once unpacked; a larger one is refused before it fills a disk.
const MAX_UNPACKED: u64 = 1 << 30;
/// The most files a bundle may hold.
const MAX_FILES: usize = 16;

/// A plugin bundle in memory: the plugin's name and its files (name -> bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    name: PluginName,
    files: BTreeMap<String, Vec<u8>>,
}

impl Bundle {
    /// Assembles a bundle from a plugin's manifest (TOML text) and its library (file name as the manifest's
    /// `[library]` gives it for the target, and bytes), and computes `SHA256SUMS`.
    pub fn new(manifest: &str, library_name: &str, library: Vec<u8>) -> Result<Bundle, BundleError> {
        let parsed = Manifest::parse(Path::new("manifest.toml"), manifest)?;
        let name = parsed.name.clone();
        if !valid_file_name(library_name) || library_name.contains('/') {
            return Err(BundleError::Format {
                path: PathBuf::from(format!("{name}.tar.gz")),
                reason: format!("the library {library_name:?} must be a plain file name beside the manifest"),
            });
        }
        let mut files = BTreeMap::new();
        files.insert(format!("{name}.toml"), manifest.as_bytes().to_vec());
        files.insert(library_name.to_owned(), library);
        let mut bundle = Bundle { name, files };
        bundle.files.insert(CHECKSUM_FILE.to_owned(), bundle.checksums().into_bytes());
        bundle.check(Path::new(&format!("{}.tar.gz", bundle.name)))?;
        Ok(bundle)
    }

    /// `SHA256SUMS` for every file but itself and the signature, as `sha256sum` writes it.
    fn checksums(&self) -> String {
        self.files
            .iter()
            .filter(|(name, _)| !is_unsummed(name))
            .map(|(name, bytes)| format!("{}  {name}\n", sha256_hex(bytes)))
            .collect()
    }

    /// The same bundle with `signature` (the text of a minisign signature of the library) added or replaced.
    pub fn with_signature(mut self, signature: String) -> Result<Bundle, BundleError> {
        let library = self.library_name()?;
        self.files.insert(format!("{library}{SIGNATURE_SUFFIX}"), signature.into_bytes());
        Ok(self)
    }

    /// The plugin's name, which is also the directory the bundle unpacks into.
    pub fn name(&self) -> &PluginName {
        &self.name
    }

    /// The plugin's manifest.
    pub fn manifest(&self) -> Result<Manifest, BundleError> {
        let file = format!("{}.toml", self.name);
        let text = String::from_utf8_lossy(&self.files[&file]);
        Ok(Manifest::parse(Path::new(&file), &text)?)
    }

    /// The plugin's version, as its manifest gives it.
    pub fn version(&self) -> Result<Version, BundleError> {
        Ok(self.manifest()?.version)
    }

    /// The library's file name: the one file that is neither the manifest, the checksums nor a signature.
    pub fn library_name(&self) -> Result<String, BundleError> {
        let manifest = format!("{}.toml", self.name);
        let mut candidates = self.files.keys().filter(|name| **name != manifest && !is_unsummed(name));
        match (candidates.next(), candidates.next()) {
            (Some(library), None) => Ok(library.clone()),
            _ => Err(BundleError::Format {
                path: PathBuf::from(self.name.as_str()),
                reason: "a bundle holds exactly one library beside its manifest".to_owned(),
            }),
        }
    }

    /// The library's bytes.
    pub fn library(&self) -> Result<&[u8], BundleError> {
        Ok(&self.files[&self.library_name()?])
    }

    /// The library's signature, if the bundle has one.
    pub fn signature(&self) -> Option<&[u8]> {
        let library = self.library_name().ok()?;
        self.files.get(&format!("{library}{SIGNATURE_SUFFIX}")).map(Vec::as_slice)
    }

    /// Every file: name and bytes.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
    }

    /// The conventional file name: `<name>-<version>-<target>.tar.gz`.
    pub fn file_name(&self, target: &str) -> Result<String, BundleError> {
        Ok(format!("{}-{}-{target}.tar.gz", self.name, self.version()?))
    }

    /// Reads and checks the bundle at `path`: its layout, and every file against `SHA256SUMS`.
    pub fn read(path: &Path) -> Result<Bundle, BundleError> {
        let format = |reason: String| BundleError::Format { path: path.to_owned(), reason };
        let file = File::open(path).map_err(|source| BundleError::Io { path: path.to_owned(), source })?;
        let mut archive = tar::Archive::new(GzDecoder::new(file));
        let mut name: Option<String> = None;
        let mut files = BTreeMap::new();
        let mut unpacked = 0u64;
        let entries = archive.entries().map_err(|e| format(format!("not a gzip'd tar ({e})")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| format(format!("damaged or incomplete ({e}); download it again")))?;
            let entry_path = entry.path().map_err(|e| format(e.to_string()))?.to_string_lossy().into_owned();
            let parts: Vec<&str> = entry_path.trim_end_matches('/').split('/').collect();
            let top = parts[0].to_owned();
            if name.get_or_insert_with(|| top.clone()) != &top {
                let first = name.as_deref().unwrap_or_default();
                return Err(format(format!("it holds more than one directory ({first:?} and {top:?})")));
            }
            let kind = entry.header().entry_type();
            match (parts.as_slice(), kind) {
                ([_], tar::EntryType::Directory) => continue,
                ([_, file], tar::EntryType::Regular) if valid_file_name(file) => {
                    unpacked = unpacked.saturating_add(entry.size());
                    if unpacked > MAX_UNPACKED || files.len() >= MAX_FILES {
                        return Err(format(format!(
                            "it unpacks to more than {MAX_FILES} files or {} bytes",
                            MAX_UNPACKED
                        )));
                    }
                    let mut bytes = Vec::with_capacity(entry.size() as usize);
                    entry.read_to_end(&mut bytes).map_err(|e| format(format!("damaged or incomplete ({e})")))?;
                    files.insert((*file).to_owned(), bytes);
                }
                _ => {
                    return Err(format(format!(
                        "unexpected entry {entry_path:?} ({kind:?}): a bundle holds regular files in one directory"
                    )));
                }
            }
        }
        let name = name.ok_or_else(|| format("it is empty".to_owned()))?;
        let name = PluginName::new(&name).map_err(|e| format(format!("its directory: {e}")))?;
        for required in [format!("{name}.toml"), CHECKSUM_FILE.to_owned()] {
            if !files.contains_key(&required) {
                return Err(format(format!("it has no {name}/{required}")));
            }
        }
        let bundle = Bundle { name, files };
        bundle.check(path)?;
        Ok(bundle)
    }

    /// Every file but the checksums and the signature is listed in `SHA256SUMS` with its digest, and the
    /// manifest names this plugin.
    fn check(&self, path: &Path) -> Result<(), BundleError> {
        let format = |reason: String| BundleError::Format { path: path.to_owned(), reason };
        let text = String::from_utf8_lossy(&self.files[CHECKSUM_FILE]);
        let sums = parse_checksums(&text).map_err(|e| format(format!("{CHECKSUM_FILE}: {e}")))?;
        for (file, bytes) in self.files.iter().filter(|(name, _)| !is_unsummed(name)) {
            let found = sha256_hex(bytes);
            match sums.get(file) {
                None => return Err(format(format!("{CHECKSUM_FILE} does not list {file}"))),
                Some(expected) if *expected != found => {
                    return Err(BundleError::Checksum {
                        path: path.to_owned(),
                        file: file.clone(),
                        expected: expected.clone(),
                        found,
                    });
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = sums.keys().find(|file| !self.files.contains_key(*file)) {
            return Err(format(format!("{CHECKSUM_FILE} lists {extra}, which the bundle does not hold")));
        }
        let manifest = self.manifest()?;
        if manifest.name != self.name {
            return Err(format(format!("its manifest names the plugin {:?}", manifest.name.as_str())));
        }
        let library = manifest.platform_library().map(|entry| entry.path.clone()).unwrap_or_default();
        if self.library_name()? != library && !library.is_empty() {
            return Err(format(format!("its manifest names the library {library:?}, which the bundle does not hold")));
        }
        Ok(())
    }

    /// Writes the bundle to `path` (through a temporary file and a rename), byte-identical for the same
    /// content.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        {
            let mut builder = tar::Builder::new(&mut encoder);
            let mut header = tar::Header::new_ustar();
            set_fixed(&mut header, tar::EntryType::Directory, 0o755, 0);
            builder.append_data(&mut header, format!("{}/", self.name), io::empty())?;
            for (name, bytes) in &self.files {
                let mut header = tar::Header::new_ustar();
                set_fixed(&mut header, tar::EntryType::Regular, 0o644, bytes.len() as u64);
                builder.append_data(&mut header, format!("{}/{name}", self.name), bytes.as_slice())?;
            }
            builder.finish()?;
        }
        let bytes = encoder.finish()?;
        crate::trust::write_atomically(path, &bytes)
    }

    /// Writes the files into `dir` (which must exist), each synced to disk, with mode 0644 whatever the
    /// umask (a group-writable file would be refused by the permission checks).
    pub(crate) fn unpack_into(&self, dir: &Path) -> io::Result<()> {
        for (name, bytes) in &self.files {
            let mut file = File::create_new(dir.join(name))?;
            file.write_all(bytes)?;
            #[cfg(unix)]
            file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
            file.sync_all()?;
        }
        Ok(())
    }
}

/// The files `SHA256SUMS` does not cover: itself and signatures.
fn is_unsummed(name: &str) -> bool {
    name == CHECKSUM_FILE || name.ends_with(SIGNATURE_SUFFIX)
}

fn valid_file_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && name != ".." && !name.contains(['\\', ':'])
}

fn set_fixed(header: &mut tar::Header, kind: tar::EntryType, mode: u32, size: u64) {
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
}

impl From<ManifestError> for BundleError {
    fn from(error: ManifestError) -> Self {
        BundleError::Manifest(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const MANIFEST: &str = "name = \"demo\"\nversion = \"1.2.3\"\napi = \"^1.0\"\n[library]\nlinux = \"libdemo.so\"\n";

    #[test]
    fn a_bundle_round_trips_byte_identically() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle::new(MANIFEST, "libdemo.so", b"not really a library".to_vec()).unwrap();
        let bundle = bundle.with_signature("signature".to_owned()).unwrap();
        let (first, second) = (dir.path().join("a.tar.gz"), dir.path().join("b.tar.gz"));
        bundle.write(&first).unwrap();
        bundle.write(&second).unwrap();
        assert_eq!(fs::read(&first).unwrap(), fs::read(&second).unwrap());
        let read = Bundle::read(&first).unwrap();
        assert_eq!(read, bundle);
        assert_eq!(read.file_name("x86_64-unknown-linux-gnu").unwrap(), "demo-1.2.3-x86_64-unknown-linux-gnu.tar.gz");
        assert_eq!(read.signature(), Some(&b"signature"[..]));
    }

    #[test]
    fn a_bundle_whose_library_differs_from_its_checksums_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut bundle = Bundle::new(MANIFEST, "libdemo.so", b"original".to_vec()).unwrap();
        bundle.files.insert("libdemo.so".to_owned(), b"changed".to_vec());
        let path = dir.path().join("demo.tar.gz");
        bundle.write(&path).unwrap();
        let error = Bundle::read(&path).unwrap_err();
        assert!(matches!(error, BundleError::Checksum { ref file, .. } if file == "libdemo.so"), "{error}");
    }

    #[test]
    fn a_truncated_bundle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.tar.gz");
        Bundle::new(MANIFEST, "libdemo.so", vec![7; 100_000]).unwrap().write(&path).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let error = Bundle::read(&path).unwrap_err();
        assert!(error.to_string().contains("damaged or incomplete"), "{error}");
    }
}
