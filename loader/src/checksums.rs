//! Checksums: a bundle's `SHA256SUMS` beside the manifest, which must list the library with the digest of the
//! bytes read (the manifest's own `sha256` is checked by `verify`), and the guarded read of the small files
//! beside a library.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::LoadError;
use crate::guarded;
use crate::manifest::Manifest;

/// The checksum file a bundle ships beside its manifest, in `sha256sum` format (`sha256sum -c SHA256SUMS`).
pub const CHECKSUM_FILE: &str = "SHA256SUMS";

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

/// Reads a small file beside a library (a signature, a checksum file) through the guarded read: `None`
/// when it does not exist. Anything else at that name (a FIFO, a directory, a huge file) is an error, never a
/// blocking read.
pub(crate) fn read_trust_file(path: &Path, limit: u64, what: &'static str) -> Result<Option<String>, LoadError> {
    guarded::read_text_if_present(path, limit, what)
        .map_err(|source| LoadError::Read { path: path.to_owned(), error: source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn sha256sum_lines_in_text_and_binary_mode_are_read_and_anything_else_is_refused_with_its_line() {
        let upper = DIGEST.to_ascii_uppercase();
        let text = format!("{DIGEST}  demo.toml\n\n{upper} *libdemo.so\n");
        let sums = parse_checksums(&text).unwrap();
        assert_eq!(sums.get("demo.toml").map(String::as_str), Some(DIGEST));
        assert_eq!(sums.get("libdemo.so").map(String::as_str), Some(DIGEST), "digests are kept in lowercase");
        for (text, refusal) in [
            (format!("{DIGEST} demo.toml"), "line 1: expected \"<sha256>  <file>\""),
            (format!("{DIGEST}  a\nabc  b"), "line 2: \"abc\" is not a SHA-256 digest"),
            (format!("{DIGEST}  a\n{DIGEST}  a"), "line 2: it lists \"a\" a second time"),
        ] {
            let error = parse_checksums(&text).unwrap_err();
            assert!(error.starts_with(refusal), "{text:?}: {error}");
        }
    }
}
