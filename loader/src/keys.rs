//! Trusted keys: minisign public keys as ops configure them (a `.pub` file or its `RW...` line), and key ids
//! as minisign prints them.
#![forbid(unsafe_code)]

use std::fs;
use std::io;
use std::path::Path;

use ct_codecs::{Base64, Decoder};

use crate::error::KeyError;
use crate::guarded;
use crate::permissions::check_permissions;

/// A minisign public key the host trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    id: String,
    key: minisign_verify::PublicKey,
}

impl TrustedKey {
    /// Parses a key: the base64 line (`RW...`) or the whole `.pub` file minisign writes.
    pub fn parse(text: &str) -> Result<TrustedKey, KeyError> {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"));
        let line = line.ok_or(KeyError::Empty)?;
        let key = minisign_verify::PublicKey::from_base64(line)
            .map_err(|e| KeyError::Malformed { reason: format!(" ({e})") })?;
        let id = key_id_of_line(line).ok_or(KeyError::Malformed { reason: String::new() })?;
        Ok(TrustedKey { id, key })
    }

    /// Reads a key from a minisign `.pub` file, through the guarded read (a regular file of at most
    /// [`guarded::MAX_KEY`] bytes). The file and the directories above it must be safe from other users (as
    /// plugin files are, whatever `strict_modes` says): whoever can replace a trusted key can sign their own
    /// plugins.
    pub fn from_file(path: &Path) -> Result<TrustedKey, KeyError> {
        let unreadable = |error: guarded::ReadError| KeyError::Unreadable { path: path.to_owned(), error };
        let canonical = fs::canonicalize(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => unreadable(guarded::ReadError::Missing),
            _ => unreadable(guarded::ReadError::Io(e)),
        })?;
        // What is there first (a FIFO, a device): its permissions are no advice worth giving.
        let text = guarded::read_text(&canonical, guarded::MAX_KEY, "a key file").map_err(unreadable)?;
        check_permissions(&[&canonical], "").map_err(|e| KeyError::Unsafe(Box::new(e)))?;
        TrustedKey::parse(&text).map_err(|e| KeyError::InFile { path: path.to_owned(), error: Box::new(e) })
    }

    /// A key as configured (`[trust].keys`, `--trusted-key`): the path of a `.pub` file, relative to `base`,
    /// when such a file exists, else the key's base64 line. An entry that is neither, and holds a character
    /// base64 does not use (`.`, `-`, `\\`...), is taken for a mistyped path and reported as a file that cannot
    /// be read.
    pub fn from_config(entry: &str, base: &Path) -> Result<TrustedKey, KeyError> {
        let path = base.join(entry);
        if path.exists() {
            return TrustedKey::from_file(&path);
        }
        TrustedKey::parse(entry).or_else(|e| {
            let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
            if entry.trim().chars().all(base64) { Err(e) } else { TrustedKey::from_file(&path) }
        })
    }

    /// The key id as minisign prints it (uppercase hex, up to 16 digits).
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A minisign key id (the 8 bytes stored little-endian in keys and signatures) as minisign prints it:
/// uppercase hex, without leading zeros.
pub fn key_id(keynum: [u8; 8]) -> String {
    format!("{:X}", u64::from_le_bytes(keynum))
}

/// The key id in a minisign public key or signature line (two algorithm bytes, then the key id).
pub(crate) fn key_id_of_line(base64_line: &str) -> Option<String> {
    let bytes = Base64::decode_to_vec(base64_line.trim(), None).ok()?;
    Some(key_id(bytes.get(2..10)?.try_into().ok()?))
}

impl TrustedKey {
    /// Checks `signature` of `bytes` with this key.
    pub(crate) fn verify(
        &self,
        bytes: &[u8],
        signature: &minisign_verify::Signature,
    ) -> Result<(), minisign_verify::Error> {
        self.key.verify(bytes, signature, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_read_from_its_line_or_its_pub_file_and_its_id_is_minisigns() {
        let minisign::KeyPair { pk, .. } = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let id = key_id(pk.keynum().try_into().unwrap());
        // Little-endian, uppercase, without leading zeros, as minisign prints ids.
        assert_eq!(key_id([0x0f, 0, 0, 0, 0, 0, 0, 0xa1]), "A10000000000000F");
        assert_eq!(key_id([1, 0, 0, 0, 0, 0, 0, 0]), "1");
        let line = pk.to_base64();
        assert_eq!(TrustedKey::parse(&line).unwrap().id(), id);
        let file = format!("untrusted comment: minisign public key {id}\n{line}\n");
        assert_eq!(TrustedKey::parse(&file).unwrap().id(), id);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("publisher.pub"), &file).unwrap();
        assert_eq!(TrustedKey::from_config("publisher.pub", dir.path()).unwrap().id(), id);
        assert_eq!(TrustedKey::from_config(&line, dir.path()).unwrap().id(), id);
    }

    #[test]
    fn an_empty_or_malformed_key_is_refused_and_a_mistyped_path_is_reported_as_a_file() {
        assert!(matches!(TrustedKey::parse("untrusted comment: nothing\n\n"), Err(KeyError::Empty)));
        assert!(matches!(TrustedKey::parse("RWnotakey"), Err(KeyError::Malformed { .. })));
        let dir = tempfile::tempdir().unwrap();
        let mistyped = TrustedKey::from_config("keys/publsher.pub", dir.path()).unwrap_err();
        assert!(matches!(mistyped, KeyError::Unreadable { error: guarded::ReadError::Missing, .. }), "{mistyped:?}");
    }
}
