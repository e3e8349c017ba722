//! The one way Berth reads a file it did not write in this process: manifests, the host configuration,
//! trusted keys, signatures, checksum files, the accepted-versions record and libraries all go through
//! [`open`] and [`read`]. A hostile or careless file cannot make a read block or grow without bound:
//!
//! - the file is opened without blocking (`O_NONBLOCK | O_NOCTTY` on Unix), so a FIFO in a manifest's place
//!   answers at once instead of hanging discovery;
//! - what was opened is checked with `fstat` on the open descriptor (not on the path, which could be
//!   swapped between the check and the open): only a regular file is read, never a FIFO, a device (such as a
//!   symlink to `/dev/zero`), a socket or a directory;
//! - its size is checked against the caller's limit before a byte is read, and the read itself stops one
//!   byte past the limit, so a file that grows while it is read is refused too.
#![forbid(unsafe_code)]

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

/// The most a manifest may hold. Real manifests are a few hundred bytes; a `[config]` table of a megabyte is
/// already far beyond what a plugin should take from its manifest.
pub const MAX_MANIFEST: u64 = 1 << 20;
/// The most a host configuration file may hold.
pub const MAX_CONFIG: u64 = 1 << 20;
/// The most a minisign public key file or a signature file may hold (minisign writes about 100 and 300 bytes).
pub const MAX_KEY: u64 = 64 << 10;
/// The most a bundle's `SHA256SUMS` may hold (a line is about 80 bytes, a bundle holds at most 16 files).
pub const MAX_CHECKSUMS: u64 = 64 << 10;
/// The most the accepted-versions record may hold (a line per plugin, about 40 bytes each).
pub const MAX_RECORD: u64 = 16 << 20;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file does not exist.
    #[error("it does not exist")]
    Missing,
    /// Something other than a regular file is at the path (a FIFO, a device, a socket, a directory).
    #[error("it is {kind}, not a regular file; put a regular file there")]
    NotRegular {
        /// What it is, with its article: `a FIFO`, `a character device`...
        kind: FileKind,
    },
    /// The file is larger than the limit for what it holds.
    #[error(
        "it holds {size} bytes, more than the {limit} bytes allowed for {what}; this is not a {what} Berth wrote or expects"
    )]
    TooLarge {
        /// Its size (at least `limit + 1` when it grew while being read).
        size: u64,
        /// The limit.
        limit: u64,
        /// What the file should be: `a manifest`, `a key file`...
        what: &'static str,
    },
    /// The file is not UTF-8 text.
    #[error("it is not UTF-8 text")]
    NotText,
    /// The operating system refused the open or the read.
    #[error("cannot read it: {0}")]
    Io(io::Error),
}

impl ReadError {
    /// Whether the file simply is not there.
    pub fn is_missing(&self) -> bool {
        matches!(self, ReadError::Missing)
    }
}

/// What kind of file was found where a regular file was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A FIFO (named pipe).
    Fifo,
    /// A character device (`/dev/zero`, a terminal).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix socket.
    Socket,
    /// Anything else.
    Other,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO (named pipe)",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
            FileKind::Other => "a special file",
        })
    }
}

fn kind_of(file_type: fs::FileType) -> FileKind {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return FileKind::Fifo;
        } else if file_type.is_char_device() {
            return FileKind::CharDevice;
        } else if file_type.is_block_device() {
            return FileKind::BlockDevice;
        } else if file_type.is_socket() {
            return FileKind::Socket;
        }
    }
    if file_type.is_dir() { FileKind::Directory } else { FileKind::Other }
}

/// Opens the regular file at `path` (symlinks followed) without blocking, and returns it with the metadata
/// of what was opened. Refuses anything but a regular file, and a file larger than `limit` bytes.
pub fn open(path: &Path, limit: u64, what: &'static str) -> Result<(File, fs::Metadata), ReadError> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
        options.custom_flags(flags.bits() as i32);
    }
    // Off Unix an open of a named pipe could block: look at the path first (Unix relies on O_NONBLOCK and the
    // check of the open descriptor below).
    #[cfg(not(unix))]
    if let Ok(metadata) = fs::metadata(path) {
        if !metadata.is_file() {
            return Err(ReadError::NotRegular { kind: kind_of(metadata.file_type()) });
        }
    }
    let file = options.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ReadError::Missing,
        _ => ReadError::Io(e),
    })?;
    let metadata = file.metadata().map_err(ReadError::Io)?;
    if !metadata.is_file() {
        return Err(ReadError::NotRegular { kind: kind_of(metadata.file_type()) });
    }
    if metadata.len() > limit {
        return Err(ReadError::TooLarge { size: metadata.len(), limit, what });
    }
    Ok((file, metadata))
}

/// Reads all of an open file of at most `limit` bytes; a file that grew past the limit since it was
/// opened is refused.
pub fn read_to_end(file: &mut File, expected: u64, limit: u64, what: &'static str) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::with_capacity(expected.min(limit) as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(ReadError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { size: bytes.len() as u64, limit, what });
    }
    Ok(bytes)
}

/// Reads the regular file at `path`, of at most `limit` bytes (see the module documentation).
pub fn read(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, ReadError> {
    let (mut file, metadata) = open(path, limit, what)?;
    read_to_end(&mut file, metadata.len(), limit, what)
}

/// Reads the regular file at `path` as UTF-8 text, of at most `limit` bytes.
pub fn read_text(path: &Path, limit: u64, what: &'static str) -> Result<String, ReadError> {
    String::from_utf8(read(path, limit, what)?).map_err(|_| ReadError::NotText)
}

/// Like [`read_text`], with a file that does not exist answered as `None`.
pub fn read_text_if_present(path: &Path, limit: u64, what: &'static str) -> Result<Option<String>, ReadError> {
    match read_text(path, limit, what) {
        Ok(text) => Ok(Some(text)),
        Err(ReadError::Missing) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_within_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        fs::write(&path, "name = \"a\"\n").unwrap();
        assert_eq!(read_text(&path, 100, "a manifest").unwrap(), "name = \"a\"\n");
        assert!(read_text_if_present(&dir.path().join("none"), 100, "a manifest").unwrap().is_none());
    }

    #[test]
    fn a_file_over_the_limit_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        fs::write(&path, vec![b'#'; 101]).unwrap();
        let error = read(&path, 100, "a manifest").unwrap_err();
        assert!(matches!(error, ReadError::TooLarge { size: 101, limit: 100, .. }), "{error}");
        assert!(error.to_string().contains("more than the 100 bytes allowed for a manifest"), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_or_a_device_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("m.toml");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let error = read(&fifo, 100, "a manifest").unwrap_err();
        assert!(matches!(error, ReadError::NotRegular { kind: FileKind::Fifo }), "{error}");
        let zero = dir.path().join("zero.toml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let error = read(&zero, 100, "a manifest").unwrap_err();
        assert!(matches!(error, ReadError::NotRegular { kind: FileKind::CharDevice }), "{error}");
        let error = read(dir.path(), 100, "a manifest").unwrap_err();
        assert!(matches!(error, ReadError::NotRegular { kind: FileKind::Directory }), "{error}");
    }
}
