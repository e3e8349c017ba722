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

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use semver::Version;

use crate::checksums::{CHECKSUM_FILE, parse_checksums};
use crate::digest::sha256_hex;
use crate::error::{LoadError, ManifestError};
use crate::guarded;
use crate::manifest::{Manifest, PluginName};
use crate::name::quote;
use crate::trust::{DEFAULT_MAX_LIBRARY, SIGNATURE_SUFFIX};
use crate::verify::read_library;

/// The most a bundle may hold once unpacked; a larger one is refused before it fills a disk.
const MAX_UNPACKED: u64 = 1 << 30;
/// The most files a bundle may hold.
const MAX_FILES: usize = 16;
/// The most a tar extension header (a GNU long name, a pax record set) may hold: names in a bundle are a
/// plugin name of at most 64 bytes and a file name.
const MAX_EXTENSION: u64 = 64 << 10;

/// A plugin bundle in memory: the plugin's name and its files (name -> bytes).
#[derive(Debug, Clone)]
pub struct Bundle {
    name: PluginName,
    files: BTreeMap<String, Vec<u8>>,
    /// The bundle file it was read from (or will be written as), which messages name.
    origin: PathBuf,
}

impl Bundle {
    /// Assembles a bundle from a plugin's manifest (TOML text) and its library (file name as the manifest's
    /// `[library]` gives it for the target, and bytes), and computes `SHA256SUMS`.
    pub fn new(manifest: &str, library_name: &str, library: Vec<u8>) -> Result<Bundle, BundleError> {
        let parsed = Manifest::parse(Path::new("manifest.toml"), manifest)?;
        let name = parsed.name.clone();
        let origin = PathBuf::from(format!("{name}.tar.gz"));
        if !valid_file_name(library_name)
            || library_name.contains('/')
            || Role::of(name.as_str(), library_name) != Role::Library
        {
            return Err(BundleError::Format {
                path: origin,
                reason: format!("the library {library_name:?} must be a plain file name beside the manifest"),
            });
        }
        let mut files = BTreeMap::new();
        files.insert(format!("{name}.toml"), manifest.as_bytes().to_vec());
        files.insert(library_name.to_owned(), library);
        let mut bundle = Bundle { name, files, origin };
        bundle.files.insert(CHECKSUM_FILE.to_owned(), bundle.checksums().into_bytes());
        bundle.check()?;
        Ok(bundle)
    }

    /// `SHA256SUMS` for every file but itself and the library's signature, as `sha256sum` writes it.
    fn checksums(&self) -> String {
        self.files
            .iter()
            .filter(|(name, _)| !self.is_unsummed(name))
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
        Ok(Manifest::parse(&self.origin.join(self.name.as_str()).join(&file), &text)?)
    }

    /// The plugin's version, as its manifest gives it.
    pub fn version(&self) -> Result<Version, BundleError> {
        Ok(self.manifest()?.version)
    }

    /// The library's file name: the one file that is neither the manifest, the checksums nor a signature.
    pub fn library_name(&self) -> Result<String, BundleError> {
        let mut candidates = self.files.keys().filter(|name| Role::of(self.name.as_str(), name) == Role::Library);
        match (candidates.next(), candidates.next()) {
            (Some(library), None) => Ok(library.clone()),
            _ => Err(BundleError::Format {
                path: self.origin.clone(),
                reason: "a bundle holds exactly one library beside its manifest".to_owned(),
            }),
        }
    }

    /// The files `SHA256SUMS` does not cover: itself and the library's own signature (which signs the
    /// library). Any other file, another signature included, must be listed.
    fn is_unsummed(&self, name: &str) -> bool {
        name == CHECKSUM_FILE || self.library_name().is_ok_and(|library| name == format!("{library}{SIGNATURE_SUFFIX}"))
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

    /// Reads and checks the bundle at `path`: its layout, and every file against `SHA256SUMS`, with libraries
    /// of up to [`DEFAULT_MAX_LIBRARY`] bytes.
    pub fn read(path: &Path) -> Result<Bundle, BundleError> {
        Bundle::read_bounded(path, DEFAULT_MAX_LIBRARY)
    }

    /// [`Bundle::read`] with libraries of up to `max_library` bytes. Everything is bounded before it is read:
    /// the bundle file, each tar header and extension header (GNU long names, pax records), each file by what
    /// it is (a manifest, `SHA256SUMS`, a signature, the library), and their sum. The library's first bytes
    /// are checked before the rest is read, so what cannot be a library costs no more than its header; what
    /// is kept in memory is one copy of each file.
    pub(crate) fn read_bounded(path: &Path, max_library: u64) -> Result<Bundle, BundleError> {
        let format = |reason: String| BundleError::Format { path: path.to_owned(), reason };
        let damaged = |e: io::Error| format(format!("damaged or incomplete ({e}); download it again"));
        let (file, _) = guarded::open(path, MAX_UNPACKED, "a bundle")
            .map_err(|source| BundleError::Read { path: path.to_owned(), error: source })?;
        let mut archive = tar::Archive::new(GzDecoder::new(file));
        let mut name: Option<String> = None;
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        let mut unpacked = 0u64;
        let mut long_name: Option<String> = None;
        // Raw entries: the tar crate would read an extension header whole, whatever its size, before handing
        // over the entry it describes. Here each is bounded first, and applied to the next entry by hand.
        let entries = archive.entries().map_err(|e| format(format!("not a gzip'd tar ({e})")))?.raw(true);
        for entry in entries {
            let mut entry = entry.map_err(damaged)?;
            let kind = entry.header().entry_type();
            let size = entry.size();
            let extension = extension_name(kind);
            if let Some(extension) = extension.filter(|_| size > MAX_EXTENSION) {
                return Err(format(format!(
                    "it has a {extension} of {size} bytes, more than the {MAX_EXTENSION} allowed (names in a bundle are short)"
                )));
            }
            unpacked = unpacked.saturating_add(size).saturating_add(512);
            if unpacked > MAX_UNPACKED {
                return Err(format(format!("it unpacks to more than {MAX_UNPACKED} bytes")));
            }
            if let Some(extension) = extension {
                let mut data = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut data).map_err(damaged)?;
                if let Some(named) = extension_path(kind, &data).map_err(|e| format(format!("its {extension}: {e}")))? {
                    if long_name.replace(named).is_some() {
                        return Err(format("two extension headers name the same entry".to_owned()));
                    }
                }
                continue;
            }
            let entry_path = match long_name.take() {
                Some(named) => named,
                None => entry.path().map_err(|e| format(e.to_string()))?.to_string_lossy().into_owned(),
            };
            let shown = quote(&entry_path);
            if !seen.insert(entry_path.trim_end_matches('/').to_owned()) {
                return Err(format(format!("it holds {shown} twice; a bundle holds each name once")));
            }
            let parts: Vec<&str> = entry_path.trim_end_matches('/').split('/').collect();
            let top = parts[0].to_owned();
            if name.get_or_insert_with(|| top.clone()) != &top {
                let first = quote(name.as_deref().unwrap_or_default());
                return Err(format(format!("it holds more than one directory ({first} and {})", quote(&top))));
            }
            match (parts.as_slice(), kind) {
                ([_], tar::EntryType::Directory) if size == 0 => continue,
                ([dir, file], tar::EntryType::Regular) if valid_file_name(file) => {
                    if files.len() >= MAX_FILES {
                        return Err(format(format!("it holds more than {MAX_FILES} files")));
                    }
                    let member = path.join(dir).join(file);
                    let limit = match Role::of(dir, file) {
                        Role::Manifest => guarded::MAX_MANIFEST,
                        Role::Checksums => guarded::MAX_CHECKSUMS,
                        Role::Signature => guarded::MAX_KEY,
                        Role::Library => {
                            if let Some(library) =
                                files.keys().find(|name: &&String| Role::of(dir, name) == Role::Library)
                            {
                                return Err(format(format!(
                                    "it holds two libraries ({library} and {file}); a bundle holds exactly one library beside its manifest"
                                )));
                            }
                            let bytes = read_library(&mut entry, &member, size, max_library).map_err(|e| match e {
                                LoadError::Io { error: source, .. } => damaged(source),
                                e => BundleError::Library(Box::new(e)),
                            })?;
                            files.insert((*file).to_owned(), bytes);
                            continue;
                        }
                    };
                    if size > limit {
                        return Err(format(format!("{file} holds {size} bytes, more than the {limit} allowed")));
                    }
                    let mut bytes = Vec::with_capacity(size as usize);
                    entry.read_to_end(&mut bytes).map_err(damaged)?;
                    files.insert((*file).to_owned(), bytes);
                }
                _ => {
                    return Err(format(format!(
                        "unexpected entry {shown} ({kind:?}): a bundle holds regular files in one directory"
                    )));
                }
            }
        }
        if long_name.is_some() {
            return Err(damaged(io::Error::other("an extension header names no entry")));
        }
        let name = name.ok_or_else(|| format("it is empty".to_owned()))?;
        let name = PluginName::new(&name).map_err(|e| format(format!("its directory: {e}")))?;
        for required in [format!("{name}.toml"), CHECKSUM_FILE.to_owned()] {
            if !files.contains_key(&required) {
                return Err(format(format!("it has no {name}/{required}")));
            }
        }
        let bundle = Bundle { name, files, origin: path.to_owned() };
        bundle.check()?;
        Ok(bundle)
    }

    /// Every file but the checksums and the signature is listed in `SHA256SUMS` with its digest, and the
    /// manifest names this plugin.
    fn check(&self) -> Result<(), BundleError> {
        let path = &self.origin;
        let format = |reason: String| BundleError::Format { path: path.to_owned(), reason };
        let text = String::from_utf8_lossy(&self.files[CHECKSUM_FILE]);
        let sums = parse_checksums(&text).map_err(|e| format(format!("{CHECKSUM_FILE}: {e}")))?;
        for (file, bytes) in self.files.iter().filter(|(name, _)| !self.is_unsummed(name)) {
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
        crate::fsutil::write_atomically(path, &bytes)
    }

    /// Writes the files into `dir` (which must exist), each synced to disk, with mode 0644 whatever the
    /// umask (a group-writable file would be refused by the permission checks). Consumes the bundle, so that
    /// its bytes are not held while the unpacked copy is checked.
    pub(crate) fn unpack_into(self, dir: &Path) -> io::Result<()> {
        for (name, bytes) in self.files {
            let mut file = File::create_new(dir.join(name))?;
            file.write_all(&bytes)?;
            #[cfg(unix)]
            file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
            file.sync_all()?;
        }
        Ok(())
    }
}

/// What a file in a bundle is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Manifest,
    Checksums,
    Signature,
    Library,
}

impl Role {
    fn of(dir: &str, file: &str) -> Role {
        if file.strip_suffix(".toml") == Some(dir) {
            Role::Manifest
        } else if file == CHECKSUM_FILE {
            Role::Checksums
        } else if file.ends_with(SIGNATURE_SUFFIX) {
            Role::Signature
        } else {
            Role::Library
        }
    }
}

/// What a tar extension header is called in messages, for the entry types that are one.
fn extension_name(kind: tar::EntryType) -> Option<&'static str> {
    match kind {
        tar::EntryType::GNULongName => Some("GNU long-name header"),
        tar::EntryType::XHeader => Some("pax header"),
        tar::EntryType::XGlobalHeader => Some("pax global header"),
        _ => None,
    }
}

/// The name an extension header gives the next entry, if it gives one. A pax record that would change an
/// entry's size (or, in a global header, every entry's name) is refused: Berth reads entries by the size in
/// their own header, and two readers must not see different files in one bundle.
fn extension_path(kind: tar::EntryType, data: &[u8]) -> Result<Option<String>, String> {
    if kind == tar::EntryType::GNULongName {
        let name = std::str::from_utf8(data.split(|b| *b == 0).next().unwrap_or_default());
        return name.map(|name| Some(name.to_owned())).map_err(|_| "the name is not UTF-8".to_owned());
    }
    let mut path = None;
    for record in tar::PaxExtensions::new(data) {
        let record = record.map_err(|e| format!("a damaged record ({e})"))?;
        let value = || record.value().map(str::to_owned).map_err(|_| "a value that is not UTF-8".to_owned());
        match record.key_bytes() {
            b"path" if kind == tar::EntryType::XHeader => path = Some(value()?),
            b"path" | b"size" => {
                return Err(format!(
                    "it sets `{}`, which Berth does not accept; write the bundle as a plain ustar tar (`tar --format=ustar`)",
                    String::from_utf8_lossy(record.key_bytes())
                ));
            }
            _ => {}
        }
    }
    Ok(path)
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

/// A bundle that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The bundle could not be read.
    #[error("{}: {error}", path.display())]
    Io {
        /// The bundle.
        path: PathBuf,
        /// The cause.
        error: io::Error,
    },
    /// Not a bundle: not a gzip'd tar, damaged, or laid out otherwise.
    #[error("{} is not a usable Berth bundle: {reason}", path.display())]
    Format {
        /// The bundle.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file's digest differs from the one `SHA256SUMS` gives.
    #[error(
        "{}: {file}: sha256 mismatch: SHA256SUMS expects {expected}, the bundle holds {found}; the bundle was damaged or altered, download it again",
        path.display()
    )]
    Checksum {
        /// The bundle.
        path: PathBuf,
        /// The file in the bundle.
        file: String,
        /// The digest `SHA256SUMS` gives.
        expected: String,
        /// The digest of the bytes in the bundle.
        found: String,
    },
    /// The bundle's manifest is not valid.
    #[error(transparent)]
    Manifest(Box<ManifestError>),
    /// The bundle file cannot be read: missing, not a regular file (a directory given as a bundle), too large.
    #[error("{}: {error}; give the path of a bundle file (<name>-<version>-<target>.tar.gz)", path.display())]
    Read {
        /// The bundle.
        path: PathBuf,
        /// Why.
        error: crate::guarded::ReadError,
    },
    /// The bundle's library is not one this host can load (refused from its first bytes, before the rest
    /// is read).
    #[error(transparent)]
    Library(Box<LoadError>),
}

impl From<ManifestError> for BundleError {
    fn from(error: ManifestError) -> Self {
        BundleError::Manifest(Box::new(error))
    }
}

// The tests build libraries as ELF headers for this host.
#[cfg(all(test, unix, not(target_os = "macos")))]
mod tests {
    use super::*;
    use crate::verify::minimal_library;
    use std::fs;

    const MANIFEST: &str = "name = \"demo\"\nversion = \"1.2.3\"\napi = \"^1.0\"\n[library]\nlinux = \"libdemo.so\"\n";

    fn demo() -> Bundle {
        Bundle::new(MANIFEST, "libdemo.so", minimal_library(100_000)).unwrap()
    }

    /// Writes a gzip'd tar of `entries` (a header, then the data it announces, of which only `data` is
    /// written: a header may claim more than follows).
    fn write_raw(path: &Path, entries: &[(tar::EntryType, &str, u64, &[u8])]) {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        for (kind, name, size, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_path(name).unwrap();
            set_fixed(&mut header, *kind, 0o644, *size);
            header.set_cksum();
            encoder.write_all(header.as_bytes()).unwrap();
            encoder.write_all(data).unwrap();
            encoder.write_all(&vec![0; (512 - data.len() % 512) % 512]).unwrap();
        }
        encoder.write_all(&[0; 1024]).unwrap();
        fs::write(path, encoder.finish().unwrap()).unwrap();
    }

    fn refusal(path: &Path) -> String {
        Bundle::read(path).unwrap_err().to_string()
    }

    #[test]
    fn a_bundle_round_trips_byte_identically() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = demo().with_signature("signature".to_owned()).unwrap();
        let (first, second) = (dir.path().join("a.tar.gz"), dir.path().join("b.tar.gz"));
        bundle.write(&first).unwrap();
        bundle.write(&second).unwrap();
        assert_eq!(fs::read(&first).unwrap(), fs::read(&second).unwrap());
        let read = Bundle::read(&first).unwrap();
        assert!(read.files().eq(bundle.files()));
        assert_eq!(read.file_name("x86_64-unknown-linux-gnu").unwrap(), "demo-1.2.3-x86_64-unknown-linux-gnu.tar.gz");
        assert_eq!(read.signature(), Some(&b"signature"[..]));
    }

    #[test]
    fn a_bundle_whose_library_differs_from_its_checksums_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut bundle = demo();
        bundle.files.insert("libdemo.so".to_owned(), minimal_library(100));
        let path = dir.path().join("demo.tar.gz");
        bundle.write(&path).unwrap();
        let error = Bundle::read(&path).unwrap_err();
        assert!(matches!(error, BundleError::Checksum { ref file, .. } if file == "libdemo.so"), "{error}");
    }

    #[test]
    fn a_truncated_bundle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.tar.gz");
        demo().write(&path).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(refusal(&path).contains("damaged or incomplete"), "{}", refusal(&path));
    }

    #[test]
    fn long_names_written_as_gnu_extension_headers_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let library = format!("lib{}.so", "x".repeat(120));
        let manifest = MANIFEST.replace("libdemo.so", &library);
        let path = dir.path().join("demo.tar.gz");
        let bundle = Bundle::new(&manifest, &library, minimal_library(1000)).unwrap();
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        let mut builder = tar::Builder::new(&mut encoder);
        for (name, bytes) in bundle.files() {
            let mut header = tar::Header::new_gnu();
            set_fixed(&mut header, tar::EntryType::Regular, 0o644, bytes.len() as u64);
            builder.append_data(&mut header, format!("demo/{name}"), bytes).unwrap();
        }
        builder.into_inner().unwrap();
        fs::write(&path, encoder.finish().unwrap()).unwrap();
        assert_eq!(Bundle::read(&path).unwrap().library_name().unwrap(), library);
    }

    #[test]
    fn extension_headers_are_bounded_before_they_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.tar.gz");
        // Headers that announce a gigabyte, with nothing behind them: refused from the header alone.
        write_raw(&path, &[(tar::EntryType::GNULongName, "././@LongLink", 1 << 30, b"")]);
        let error = refusal(&path);
        assert!(error.contains("a GNU long-name header of 1073741824 bytes, more than the 65536 allowed"), "{error}");
        write_raw(&path, &[(tar::EntryType::XHeader, "demo/pax", 1 << 30, b"")]);
        assert!(refusal(&path).contains("a pax header of 1073741824 bytes"), "{}", refusal(&path));
        let record = b"20 size=99999999999\n";
        write_raw(&path, &[(tar::EntryType::XHeader, "demo/pax", record.len() as u64, record)]);
        assert!(refusal(&path).contains("it sets `size`, which Berth does not accept"), "{}", refusal(&path));
    }

    #[test]
    fn what_cannot_be_a_library_is_refused_from_its_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.tar.gz");
        // A gigabyte announced, 4 KiB of zeros there: the library check needs only the first bytes.
        write_raw(&path, &[(tar::EntryType::Regular, "demo/libdemo.so", 1 << 28, &[0; 4096])]);
        let error = refusal(&path);
        assert!(error.contains("libdemo.so is not a") && error.contains("unknown format (first bytes 0000"), "{error}");
        write_raw(&path, &[(tar::EntryType::Regular, "demo/libdemo.so", DEFAULT_MAX_LIBRARY + 1, b"")]);
        let error = refusal(&path);
        assert!(error.contains("more than the 268435456 bytes this host accepts for a library"), "{error}");
        write_raw(&path, &[(tar::EntryType::Regular, "demo/demo.toml", guarded::MAX_MANIFEST + 1, b"")]);
        assert!(refusal(&path).contains("demo.toml holds 1048577 bytes, more than the 1048576 allowed"));
    }

    #[test]
    fn a_name_held_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.tar.gz");
        let manifest = MANIFEST.as_bytes();
        let size = manifest.len() as u64;
        let entry = (tar::EntryType::Regular, "demo/demo.toml", size, manifest);
        write_raw(&path, &[entry, entry]);
        let error = refusal(&path);
        assert!(error.contains("it holds \"demo/demo.toml\" twice; a bundle holds each name once"), "{error}");
    }

    #[test]
    fn checksums_listing_a_file_twice_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut bundle = demo();
        let sums = String::from_utf8(bundle.files[CHECKSUM_FILE].clone()).unwrap();
        let line = sums.lines().find(|line| line.ends_with("demo.toml")).unwrap().to_owned();
        bundle.files.insert(CHECKSUM_FILE.to_owned(), format!("{sums}{line}\n").into_bytes());
        let path = dir.path().join("demo.tar.gz");
        bundle.write(&path).unwrap();
        let error = refusal(&path);
        assert!(error.contains("SHA256SUMS: line 3: it lists \"demo.toml\" a second time"), "{error}");
    }

    #[test]
    fn only_the_library_signature_is_exempt_from_the_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let mut bundle = demo().with_signature("signature".to_owned()).unwrap();
        bundle.files.insert("other.minisig".to_owned(), b"anything".to_vec());
        let path = dir.path().join("demo.tar.gz");
        bundle.write(&path).unwrap();
        assert!(refusal(&path).contains("SHA256SUMS does not list other.minisig"), "{}", refusal(&path));
    }
}
