//! Verification of a library before anything runs it: the path stays inside the plugin's directory, it is a
//! regular file that only this user or root can change (with the manifest and every directory above them),
//! its bytes (read once) are a complete shared library for this architecture, their SHA-256 matches the
//! manifest and the bundle's `SHA256SUMS`, and their signature satisfies the trust policy (`trust`). Then the
//! private copy: the verified bytes are written under their hash into the
//! host's 0700 cache directory, and that copy, which no one else can write, is the file the loader opens.
//!
//! Why a copy (DESIGN.md): the system loader dedups by path and inode, so a new version at the same path
//! would return the old code; overwriting a loaded file crashes the host; and opening a truncated file kills
//! the process inside dlopen. The copy is immutable, unique per content, and checked before it is opened.
#![forbid(unsafe_code)]

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use berth_plugin_api::BuildFacts;
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, FileKind, elf};

use crate::checksums;
use crate::digest::sha256_hex;
use crate::error::{HostError, LoadError};
use crate::guarded::{self, ReadError};
use crate::manifest::{Manifest, PLATFORM};
use crate::permissions;
use crate::trust::{self, Trust, TrustConfig};

/// A library whose bytes passed every check.
pub(crate) struct Verified {
    /// The library as the manifest names it, symlinks resolved.
    pub source: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
    /// The file as it was when it was read.
    pub stamp: FileStamp,
    /// What its signature says.
    pub trust: Trust,
}

/// What tells a file's versions apart without reading it: size, modification time and, on Unix, the inode
/// change time (a `chmod` or `chown` changes it), device and inode (a rename-replace changes the inode, a
/// copy over the file its time and size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    len: u64,
    modified: Option<SystemTime>,
    changed: (i64, i64),
    id: (u64, u64),
}

impl Meta {
    fn of(metadata: &fs::Metadata) -> Meta {
        #[cfg(unix)]
        let (changed, id) = {
            use std::os::unix::fs::MetadataExt;
            ((metadata.ctime(), metadata.ctime_nsec()), (metadata.dev(), metadata.ino()))
        };
        #[cfg(not(unix))]
        let (changed, id) = ((0, 0), (0, 0));
        Meta { len: metadata.len(), modified: metadata.modified().ok(), changed, id }
    }
}

/// A library file's version as the load pipeline sees it: the library's [`Meta`] and, once known, that of
/// the files beside it the trust checks read (its signature and the bundle's `SHA256SUMS`), so that adding a
/// signature, fixing a checksum file or a permission counts as a change and a refused plugin is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    library: Meta,
    trust_files: [Option<Meta>; 2],
}

impl FileStamp {
    /// The stamp of the file at `path` (symlinks followed), if it exists.
    pub(crate) fn of(path: &Path) -> Option<FileStamp> {
        fs::metadata(path).ok().map(|metadata| FileStamp::from_metadata(&metadata))
    }

    fn from_metadata(metadata: &fs::Metadata) -> FileStamp {
        FileStamp { library: Meta::of(metadata), trust_files: [None; 2] }
    }

    /// The stamp of `manifest`'s library, with its trust files.
    pub(crate) fn of_library(manifest: &Manifest) -> Option<FileStamp> {
        let library = library_path(manifest).ok()?;
        FileStamp::of(&library).map(|stamp| stamp.with_trust_files(manifest, &library))
    }

    fn with_trust_files(self, manifest: &Manifest, library: &Path) -> FileStamp {
        let meta = |path: PathBuf| fs::metadata(path).ok().map(|metadata| Meta::of(&metadata));
        let trust_files = [meta(trust::signature_path(library)), meta(manifest.dir().join(trust::CHECKSUM_FILE))];
        FileStamp { trust_files, ..self }
    }

    /// How long ago the library was last modified; `Duration::MAX` when unknown or in the future (a clock
    /// skew must not make a file look forever fresh).
    pub(crate) fn age(&self) -> Duration {
        self.library.modified.and_then(|time| time.elapsed().ok()).unwrap_or(Duration::MAX)
    }

    /// The library's size in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.library.len
    }
}

/// The library file `manifest` names for this platform, inside its directory (not yet checked).
pub(crate) fn library_path(manifest: &Manifest) -> Result<PathBuf, LoadError> {
    Ok(manifest.dir().join(&manifest.platform_library()?.path))
}

/// What else helps when a plugin file is refused for its permissions.
const STRICT_MODES_ADVICE: &str = "; or, on a development machine only, turn off [trust].strict_modes";

/// The permission check of a manifest alone (`strict_modes`): the file at `path` and every directory above it.
pub(crate) fn check_manifest_permissions(path: &Path) -> Result<(), LoadError> {
    let canonical = fs::canonicalize(path).map_err(|source| LoadError::Io { path: path.to_owned(), error: source })?;
    permissions::check_permissions(&[&canonical], STRICT_MODES_ADVICE)
}

/// Resolves, reads and checks the manifest's library for this platform, under the host's trust settings.
pub(crate) fn verify_library(manifest: &Manifest, config: &TrustConfig) -> Result<Verified, LoadError> {
    let entry = manifest.platform_library()?;
    let dir = manifest.dir();
    let joined = library_path(manifest)?;
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |error: io::Error| LoadError::Io { path, error }
    };
    let source = match fs::canonicalize(&joined) {
        Ok(path) => path,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(LoadError::LibraryMissing { field: PLATFORM, path: joined });
        }
        Err(e) => return Err(LoadError::Io { path: joined, error: e }),
    };
    let canonical_dir = fs::canonicalize(dir).map_err(io_error(dir))?;
    if !source.starts_with(&canonical_dir) {
        return Err(LoadError::PathEscape {
            field: PLATFORM,
            path: entry.path.clone(),
            resolved: source,
            dir: canonical_dir,
        });
    }
    if config.strict_modes {
        let manifest_path = fs::canonicalize(&manifest.path).map_err(io_error(&manifest.path))?;
        permissions::check_permissions(&[&manifest_path, &source], STRICT_MODES_ADVICE)?;
    }
    let (bytes, before) = read_library_file(&source, config.max_library_size).map_err(|e| match e {
        LoadError::Read { error: ReadError::NotRegular { .. }, .. } => {
            LoadError::NotARegularFile { field: PLATFORM, path: joined.clone() }
        }
        e => e,
    })?;
    let stamp = FileStamp::from_metadata(&before);
    // A writer still at work shows as a different size, time or inode after the read than before it.
    if FileStamp::of(&source) != Some(stamp) || bytes.len() as u64 != stamp.len() {
        return Err(LoadError::Unstable { path: source });
    }
    let stamp = stamp.with_trust_files(manifest, &joined);
    check_binary(&source, &bytes)?;
    check_panic_strategy(&source, &bytes)?;
    let sha256 = sha256_hex(&bytes);
    if let Some(expected) = &entry.sha256 {
        if *expected != sha256 {
            return Err(LoadError::HashMismatch {
                path: source,
                expected_by: format!("[library].{PLATFORM}.sha256 in {}", manifest.path.display()),
                expected: expected.clone(),
                found: sha256,
            });
        }
    }
    checksums::check_checksum_file(manifest, &source, &sha256)?;
    let trust = trust::check_signature(config, manifest, &source, &bytes, &sha256)?;
    Ok(Verified { source, bytes, sha256, stamp, trust })
}

/// How much of a library is read and checked before the rest: the file header and, in practice, the
/// program headers that follow it.
const HEAD: u64 = 4096;

/// Reads the library file at `path` (see [`read_library`]), with the metadata of the file opened.
pub(crate) fn read_library_file(path: &Path, limit: u64) -> Result<(Vec<u8>, fs::Metadata), LoadError> {
    let read_error = |error: ReadError| LoadError::Read { path: path.to_owned(), error };
    let (mut file, metadata) = guarded::open(path, u64::MAX, "a library").map_err(read_error)?;
    Ok((read_library(&mut file, path, metadata.len(), limit)?, metadata))
}

/// Reads a library of `size` bytes from `reader` (a file, or a bundle's entry) as `path`: refuses one larger
/// than `limit` before reading, reads its first bytes and checks that they begin a shared library for this
/// host of that size ([`check_head`]), and only then reads the rest into a buffer of exactly that size.
/// Returns what was read, at most `size` bytes: a reader that ends early gives fewer.
pub(crate) fn read_library(reader: &mut impl Read, path: &Path, size: u64, limit: u64) -> Result<Vec<u8>, LoadError> {
    if size > limit {
        return Err(LoadError::LibraryTooLarge { path: path.to_owned(), size, limit });
    }
    let io_error = |error: io::Error| LoadError::Io { path: path.to_owned(), error };
    let mut bytes = Vec::with_capacity(size.min(HEAD) as usize);
    reader.take(size.min(HEAD)).read_to_end(&mut bytes).map_err(io_error)?;
    check_head(path, &bytes, size)?;
    bytes.reserve_exact((size - bytes.len() as u64) as usize);
    reader.take(size - bytes.len() as u64).read_to_end(&mut bytes).map_err(io_error)?;
    Ok(bytes)
}

/// Checks that `head`, the first bytes of a file of `size` bytes, begin a shared library this host can load:
/// its format, and for ELF its class, byte order, machine and type, in that order, and that the header tables
/// it describes fit in `size`. What needs the whole file is left to [`check_binary`].
pub(crate) fn check_head(path: &Path, head: &[u8], size: u64) -> Result<(), LoadError> {
    let not_library = |reason: String| LoadError::NotSharedLibrary { path: path.to_owned(), reason };
    let kind = FileKind::parse(head).map_err(|_| not_library(describe_unknown(head, size)))?;
    match kind {
        FileKind::Elf64 if cfg!(all(unix, not(target_os = "macos"), target_pointer_width = "64")) => {
            check_elf_header::<elf::FileHeader64<Endianness>>(path, head, size)
        }
        FileKind::Elf32 if cfg!(all(unix, not(target_os = "macos"), target_pointer_width = "32")) => {
            check_elf_header::<elf::FileHeader32<Endianness>>(path, head, size)
        }
        FileKind::Elf32 | FileKind::Elf64 if cfg!(all(unix, not(target_os = "macos"))) => {
            Err(LoadError::WrongArchitecture {
                path: path.to_owned(),
                expected: format!("{}-bit {}", usize::BITS, std::env::consts::ARCH),
                found: if kind == FileKind::Elf32 { "32-bit ELF" } else { "64-bit ELF" }.to_owned(),
            })
        }
        FileKind::MachO64 | FileKind::MachO32 | FileKind::MachOFat32 | FileKind::MachOFat64
            if cfg!(target_os = "macos") =>
        {
            Ok(())
        }
        FileKind::Pe64 | FileKind::Pe32 if cfg!(windows) => Ok(()),
        other => Err(not_library(format!("it is a {} file, not a {PLATFORM} shared library", kind_name(other)))),
    }
}

/// Checks that `bytes` are a complete shared library this host can load, without loading it.
pub(crate) fn check_binary(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    check_head(path, bytes, bytes.len() as u64)?;
    match FileKind::parse(bytes) {
        Ok(FileKind::Elf64) if cfg!(target_pointer_width = "64") && ELF_PLATFORM => {
            check_segments::<elf::FileHeader64<Endianness>>(path, bytes)
        }
        Ok(FileKind::Elf32) if cfg!(target_pointer_width = "32") && ELF_PLATFORM => {
            check_segments::<elf::FileHeader32<Endianness>>(path, bytes)
        }
        _ if ELF_PLATFORM => Ok(()),
        _ => parses(path, bytes),
    }
}

/// Whether this platform's libraries are ELF files.
const ELF_PLATFORM: bool = cfg!(all(unix, not(target_os = "macos")));

/// How a plugin library handles a panic, as its build facts say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PanicStrategy {
    /// It unwinds to the plugin's own fence: contained.
    Unwind,
    /// It aborts the process: refused in-process.
    Abort,
    /// It exports no build facts (built on plugin-api before 1.3, or not by `export_plugin!`): loaded as
    /// before, which is right for every plugin built with the default `panic = "unwind"`.
    Unknown,
}

/// Reads the build facts `export_plugin!` exports ([`BuildFacts`]) from the library's bytes: the exported
/// symbol's address, the section that holds it, and the bytes there. No code of the library runs.
fn panic_strategy(bytes: &[u8]) -> PanicStrategy {
    use object::{Object, ObjectSection};
    let facts = || {
        let file = object::File::parse(bytes).ok()?;
        let symbol = file.exports().ok()?.into_iter().find(|export| {
            let name = export.name();
            name == BuildFacts::SYMBOL.as_bytes() || name.strip_prefix(b"_") == Some(BuildFacts::SYMBOL.as_bytes())
        })?;
        let address = symbol.address();
        // The section that holds the symbol's bytes in the file: not one without file data (.bss), nor one at
        // address 0 that is not loaded.
        let section = file.sections().find(|section| {
            section.file_range().is_some()
                && section.address() != 0
                && address.checked_sub(section.address()).is_some_and(|offset| offset < section.size())
        })?;
        let offset = usize::try_from(address - section.address()).ok()?;
        BuildFacts::from_bytes(section.data().ok()?.get(offset..)?.get(..BuildFacts::SIZE)?)
    };
    match facts() {
        Some(facts) if facts.panic_unwind == 0 => PanicStrategy::Abort,
        Some(_) => PanicStrategy::Unwind,
        None => PanicStrategy::Unknown,
    }
}

/// Refuses a library built with `panic = "abort"`: in-process, its first panic would end the host.
pub(crate) fn check_panic_strategy(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    match panic_strategy(bytes) {
        PanicStrategy::Abort => Err(LoadError::PanicAbort { path: path.to_owned() }),
        PanicStrategy::Unwind | PanicStrategy::Unknown => Ok(()),
    }
}

/// macOS and Windows (not run on this project's CI): the object crate parses every header and table.
fn parses(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    object::File::parse(bytes).map(drop).map_err(|e| LoadError::NotSharedLibrary {
        path: path.to_owned(),
        reason: format!("its headers do not parse ({e}): the file is truncated or damaged"),
    })
}

/// The ELF header of a file of `size` bytes, from its first bytes: byte order, machine, type, and the
/// header tables within the file.
fn check_elf_header<Elf: FileHeader<Endian = Endianness>>(
    path: &Path,
    head: &[u8],
    size: u64,
) -> Result<(), LoadError> {
    let truncated = |needed: u64| LoadError::Truncated { path: path.to_owned(), size, needed };
    let header = Elf::parse(head).map_err(|_| truncated(size_of::<Elf>() as u64))?;
    let bits = if Elf::is_type_64_sized() { 64 } else { 32 };
    let endian = header.endian().map_err(|_| LoadError::NotSharedLibrary {
        path: path.to_owned(),
        reason: "its ELF header has an invalid byte order".to_owned(),
    })?;
    let order = |endian: Endianness| if endian == Endianness::Big { "big-endian" } else { "little-endian" };
    if endian != Endianness::default() {
        return Err(LoadError::WrongArchitecture {
            path: path.to_owned(),
            expected: format!("{} {}", order(Endianness::default()), std::env::consts::ARCH),
            found: format!("{} {} ({bits}-bit ELF)", order(endian), machine_name(header.e_machine(endian))),
        });
    }
    let machine = header.e_machine(endian);
    if machine != host_machine() {
        return Err(LoadError::WrongArchitecture {
            path: path.to_owned(),
            expected: std::env::consts::ARCH.to_owned(),
            found: machine_name(machine),
        });
    }
    if header.e_type(endian) != elf::ET_DYN {
        return Err(LoadError::NotSharedLibrary {
            path: path.to_owned(),
            reason: format!("it is an ELF {} (not a shared object)", type_name(header.e_type(endian))),
        });
    }
    let needed =
        table_end(header.e_phoff(endian).into(), header.e_phnum(endian).into(), header.e_phentsize(endian).into()).max(
            table_end(header.e_shoff(endian).into(), header.e_shnum(endian).into(), header.e_shentsize(endian).into()),
        );
    if needed > size { Err(truncated(needed)) } else { Ok(()) }
}

/// The segments of a whole ELF file whose header [`check_elf_header`] accepted lie within it.
fn check_segments<Elf: FileHeader<Endian = Endianness>>(path: &Path, data: &[u8]) -> Result<(), LoadError> {
    let size = data.len() as u64;
    let truncated = |needed: u64| LoadError::Truncated { path: path.to_owned(), size, needed };
    let header = Elf::parse(data).map_err(|_| truncated(size_of::<Elf>() as u64))?;
    let endian = Endianness::default();
    let segments = header.program_headers(endian, data).map_err(|_| truncated(size))?;
    let needed = segments
        .iter()
        .map(|segment| table_end(segment.p_offset(endian).into(), 1, segment.p_filesz(endian).into()))
        .max()
        .unwrap_or(0);
    if needed > size { Err(truncated(needed)) } else { Ok(()) }
}

/// Where a table of `count` entries of `entry` bytes at `offset` ends.
fn table_end(offset: u64, count: u64, entry: u64) -> u64 {
    offset.saturating_add(count.saturating_mul(entry))
}

fn type_name(kind: u16) -> String {
    match kind {
        elf::ET_REL => "relocatable object (.o)".to_owned(),
        elf::ET_EXEC => "executable".to_owned(),
        elf::ET_CORE => "core dump".to_owned(),
        other => format!("file of type {other}"),
    }
}

fn host_machine() -> u16 {
    match std::env::consts::ARCH {
        "x86_64" => elf::EM_X86_64,
        "x86" => elf::EM_386,
        "aarch64" => elf::EM_AARCH64,
        "arm" => elf::EM_ARM,
        "riscv64" | "riscv32" => elf::EM_RISCV,
        "powerpc64" => elf::EM_PPC64,
        "s390x" => elf::EM_S390,
        "loongarch64" => elf::EM_LOONGARCH,
        _ => elf::EM_NONE,
    }
}

fn machine_name(machine: u16) -> String {
    match machine {
        elf::EM_X86_64 => "x86_64".to_owned(),
        elf::EM_386 => "x86".to_owned(),
        elf::EM_AARCH64 => "aarch64".to_owned(),
        elf::EM_ARM => "arm".to_owned(),
        elf::EM_RISCV => "riscv".to_owned(),
        other => format!("ELF machine {other}"),
    }
}

fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Elf32 | FileKind::Elf64 => "ELF (Linux/Unix)",
        FileKind::MachO32 | FileKind::MachO64 | FileKind::MachOFat32 | FileKind::MachOFat64 => "Mach-O (macOS)",
        FileKind::Pe32 | FileKind::Pe64 => "PE (Windows)",
        _ => "non-library",
    }
}

fn describe_unknown(bytes: &[u8], size: u64) -> String {
    if size == 0 {
        return "the file is empty".to_owned();
    }
    let head = &bytes[..bytes.len().min(24)];
    match std::str::from_utf8(head) {
        Ok(text) if text.chars().all(|c| !c.is_control() || c.is_whitespace()) => {
            format!("it is a text file starting with {text:?}")
        }
        _ => format!("unknown format (first bytes {})", hex::encode(&head[..head.len().min(8)])),
    }
}

/// The host's private directory of verified library copies, each named by its SHA-256.
pub(crate) struct PrivateCache {
    dir: PathBuf,
}

impl PrivateCache {
    /// Creates the directory (mode 0700 on Unix) or checks that an existing one is private.
    pub(crate) fn open(dir: &Path) -> Result<PrivateCache, HostError> {
        permissions::private_dir(dir).map_err(|reason| HostError::Cache { dir: dir.to_owned(), reason })?;
        Ok(PrivateCache { dir: dir.to_owned() })
    }

    /// Where the copy of the library with this digest lives.
    pub(crate) fn path_for(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}{}", std::env::consts::DLL_SUFFIX))
    }

    /// Writes `bytes` (whose digest is `sha256`) into the cache unless a copy with exactly these bytes is
    /// already there, and returns the copy's path: the file opened holds the very bytes that were hashed and
    /// checked. A copy under the digest's name whose bytes differ (a damaged cache) is left alone, since a
    /// library at that path may be mapped already; the bytes go to a fresh name. A new copy is written under a
    /// temporary name, made read-only and renamed. It is not synced: after a power cut the name may hold
    /// incomplete bytes, which the byte-for-byte comparison never reuses (and a sync per plugin would cost more
    /// than the rest of its load).
    pub(crate) fn store(&self, sha256: &str, bytes: &[u8]) -> Result<PathBuf, LoadError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = || format!("{}.{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut path = self.path_for(sha256);
        match holds(&path, bytes) {
            Ok(true) => return Ok(path),
            Ok(false) => {
                tracing::warn!("private copy {} differs from the verified bytes; writing a fresh copy", path.display());
                path = self.dir.join(format!("{sha256}.{}{}", unique(), std::env::consts::DLL_SUFFIX));
            }
            Err(_) => {}
        }
        let temp = self.dir.join(format!(".{sha256}.{}.tmp", unique()));
        let cache_error = |error: io::Error| LoadError::Cache { dir: self.dir.clone(), error };
        let write = || -> io::Result<()> {
            let mut file = File::create_new(&temp)?;
            file.write_all(bytes)?;
            let mut permissions = file.metadata()?.permissions();
            permissions.set_readonly(true);
            file.set_permissions(permissions)?;
            fs::rename(&temp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&temp);
            cache_error(e)
        })?;
        Ok(path)
    }
}

/// Whether the file at `path` holds exactly `bytes`, read in chunks (no buffer the size of the library).
fn holds(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let mut file = File::open(path)?;
    if file.metadata()?.len() != bytes.len() as u64 {
        return Ok(false);
    }
    let mut chunk = vec![0; 64 * 1024];
    for expected in bytes.chunks(chunk.len()) {
        let read = &mut chunk[..expected.len()];
        file.read_exact(read)?;
        if read != expected {
            return Ok(false);
        }
    }
    Ok(file.read(&mut chunk[..1])? == 0)
}

/// The smallest file of `len` bytes (at least 64) that passes the library checks on this host: an ELF header
/// with no tables.
#[cfg(all(test, unix, not(target_os = "macos")))]
pub(crate) fn minimal_library(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len.max(64)];
    bytes[..7].copy_from_slice(&[0x7f, b'E', b'L', b'F', if cfg!(target_pointer_width = "64") { 2 } else { 1 }, 1, 1]);
    bytes[16..18].copy_from_slice(&elf::ET_DYN.to_le_bytes());
    bytes[18..20].copy_from_slice(&host_machine().to_le_bytes());
    bytes[20..24].copy_from_slice(&1u32.to_le_bytes());
    bytes
}

#[cfg(all(test, unix, not(target_os = "macos")))]
mod tests {
    use super::*;

    fn refusal(bytes: &[u8]) -> String {
        check_binary(Path::new("lib.so"), bytes).unwrap_err().to_string()
    }

    #[test]
    fn the_byte_order_is_checked_before_the_type() {
        let mut bytes = minimal_library(64);
        bytes[5] = 2;
        bytes[16..18].copy_from_slice(&elf::ET_DYN.to_be_bytes());
        let error = refusal(&bytes);
        assert!(error.contains("is built for big-endian"), "{error}");
        assert!(error.contains("this host runs on little-endian"), "{error}");
    }

    #[test]
    fn an_executable_is_named_as_one() {
        let mut bytes = minimal_library(64);
        bytes[16..18].copy_from_slice(&elf::ET_EXEC.to_le_bytes());
        assert!(refusal(&bytes).contains("it is an ELF executable (not a shared object)"), "{}", refusal(&bytes));
    }

    #[test]
    fn a_library_over_the_limit_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lib.so");
        // Sparse: a gigabyte on paper, nothing on disk.
        File::create(&path).unwrap().set_len(1 << 30).unwrap();
        let error = read_library_file(&path, 1 << 20).unwrap_err().to_string();
        assert!(error.contains("holds 1073741824 bytes, more than the 1048576 bytes"), "{error}");
        let error = read_library_file(&path, 2 << 30).unwrap_err().to_string();
        assert!(error.contains("unknown format (first bytes 0000000000000000)"), "{error}");
    }
}
