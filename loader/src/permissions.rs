//! Permissions (OpenSSH `StrictModes`): the files a host runs, and every directory above them, must not be
//! writable by group or others (a sticky directory such as `/tmp` is fine), nor owned by a user other than
//! the host's own or root; the host's private directories are mode 0700.
#![forbid(unsafe_code)]

use std::fs;
use std::path::Path;

use crate::error::LoadError;

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
        let metadata = fs::metadata(entry).map_err(|source| LoadError::Io { path: entry.to_owned(), error: source })?;
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

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_file_or_directory_others_can_write_is_refused_and_a_sticky_directory_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let file = root.join("plugin.toml");
        fs::write(&file, "").unwrap();
        chmod(&file, 0o644);
        check_permissions(&[&file], "").unwrap();
        for (mode, who) in [(0o664, "its group can write it"), (0o646, "every user can write it")] {
            chmod(&file, mode);
            let error = check_permissions(&[&file], "; or else").unwrap_err().to_string();
            assert!(
                error.contains(who) && error.ends_with(&format!("`chmod go-w {}`; or else", file.display())),
                "{error}"
            );
        }
        chmod(&file, 0o644);
        chmod(&root, 0o777);
        let error = check_permissions(&[&file], "").unwrap_err().to_string();
        assert!(error.starts_with(&format!("{} (mode 0777)", root.display())), "{error}");
        chmod(&root, 0o1777);
        check_permissions(&[&file], "").unwrap();
        chmod(&root, 0o700);
    }

    #[test]
    fn a_private_directory_is_created_0700_and_an_open_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("a/b");
        private_dir(&private).unwrap();
        assert_eq!(fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o700);
        chmod(&private, 0o755);
        let error = private_dir(&private).unwrap_err();
        assert!(
            error.starts_with("mode 0755 lets other users see or change") && error.contains("chmod 700"),
            "{error}"
        );
    }
}
