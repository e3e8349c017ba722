//! Discovery: every manifest (`*.toml`) under the configured plugin directories, in a stable order.
//! Hidden entries (`.name`) are skipped and symlinked directories are not followed, so a link cannot pull a
//! foreign tree into the search.
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{LoadError, LoadFailure};

/// How many directory levels below a plugin directory are searched (`<dir>/a/b/c/d/x.toml` is the deepest).
const MAX_DEPTH: usize = 4;

/// The manifests under `dirs`, sorted, and a failure for each directory that cannot be read.
pub fn discover(dirs: &[PathBuf]) -> (Vec<PathBuf>, Vec<LoadFailure>) {
    let mut manifests = Vec::new();
    let mut failures = Vec::new();
    for dir in dirs {
        walk(dir, 0, &mut manifests, &mut failures);
    }
    manifests.sort();
    manifests.dedup();
    (manifests, failures)
}

/// Collects the manifests under `dir`; a directory that cannot be read is a failure of its own (the others
/// are still searched), so that a rescan never takes the plugins under it for deleted.
fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>, failures: &mut Vec<LoadFailure>) {
    let fail = |source| LoadFailure {
        manifest: dir.to_owned(),
        plugin: None,
        error: LoadError::PluginDir { dir: dir.to_owned(), error: source },
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(source) => return failures.push(fail(source)),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(source) => return failures.push(fail(source)),
        };
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() && depth < MAX_DEPTH {
            walk(&path, depth + 1, found, failures);
        } else if path.extension().is_some_and(|ext| ext == "toml") && !kind.is_dir() {
            found.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_manifests_recursively_skipping_hidden_entries() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path();
        fs::create_dir_all(p.join("a/v1")).unwrap();
        fs::create_dir_all(p.join(".hidden")).unwrap();
        for file in ["a/a.toml", "a/v1/b.toml", ".hidden/c.toml", "a/liba.so", "top.toml"] {
            fs::write(p.join(file), "").unwrap();
        }
        let (found, failures) = discover(&[p.to_owned(), p.join("missing")]);
        assert_eq!(found, vec![p.join("a/a.toml"), p.join("a/v1/b.toml"), p.join("top.toml")]);
        assert_eq!(failures.len(), 1);
        assert!(matches!(failures[0].error, LoadError::PluginDir { .. }));
    }
}
