//! File utilities every module may use, returning `io::Error`: an atomic replace, a durable rename, a
//! directory lock. A leaf: it uses nothing else of the crate.

use std::fs;
use std::io;
use std::path::Path;

/// Replaces `path` with `bytes`: written to a temporary file beside it, synced, renamed over it, and the
/// directory synced, so the file holds either the old or the new content, also after a power cut. Keeps the
/// old file's permissions; a new file gets 0644 (Unix).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    io::Write::write_all(&mut temp, bytes)?;
    match fs::metadata(path) {
        Ok(metadata) => temp.as_file().set_permissions(metadata.permissions())?,
        #[cfg(unix)]
        Err(_) => temp.as_file().set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?,
        #[cfg(not(unix))]
        Err(_) => {}
    }
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Makes the renames in `dir` durable (Unix; elsewhere a no-op).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Holds an exclusive advisory lock on the directory `dir` until the returned handle is dropped (Unix `flock`;
/// elsewhere nothing is locked). Processes that share a directory take turns: a read-merge-write of the
/// accepted-versions record, or an install into a plugin directory.
pub(crate) fn lock_dir(dir: &Path) -> io::Result<fs::File> {
    let handle = fs::File::open(dir)?;
    #[cfg(unix)]
    rustix::fs::flock(&handle, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(handle)
}
