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
        if let Err(source) = walk(dir, 0, &mut manifests) {
            failures.push(LoadFailure {
                manifest: dir.clone(),
                plugin: None,
                error: LoadError::PluginDir { dir: dir.clone(), source },
            });
        }
    }
    manifests.sort();
    manifests.dedup();
    (manifests, failures)
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() && depth < MAX_DEPTH {
            // A subdirectory that cannot be read is skipped, not fatal for the whole directory.
            let _ = walk(&path, depth + 1, found);
        } else if path.extension().is_some_and(|ext| ext == "toml") && !kind.is_dir() {
            found.push(path);
        }
    }
    Ok(())
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
