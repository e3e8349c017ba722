//! Trust: what the host requires of a plugin's files beyond "a complete library for this platform", before
//! it runs any of their code. This module holds the policy and the signature check; the other concerns are
//! modules of their own: `permissions`, `checksums`, `keys` and `record` (the accepted versions). Their
//! public names are reachable from here.
//!
//! - **Permissions** (OpenSSH `StrictModes`): the manifest, the library and every directory above them must
//!   not be writable by group or others (a sticky directory such as `/tmp` is fine), nor owned by a user
//!   other than the host's own or root. Otherwise someone else could swap the code this host runs.
//! - **Checksums**: a bundle's `SHA256SUMS` beside the manifest, when present, must list the library with
//!   the digest of the bytes read (the manifest's `sha256` is checked by `verify`).
//! - **Signatures**: a minisign signature `<library>.minisig` whose trusted comment is the [`statement`]
//!   binding plugin name, version, target and SHA-256, by one of the host's trusted keys. The
//!   [`TrustPolicy`] says what an unsigned library or an unknown key gets; a malformed signature, one that
//!   does not match the bytes, or one made for another plugin, version or target is refused under every
//!   policy.
//! - **Accepted versions** (rollback protection): the highest version of each plugin the host has accepted
//!   is kept in a small state file in its data directory; an older version is refused unless its manifest
//!   pins it (`pin = "<version>"`).
//!
//! Signatures are plain minisign: `minisign -Vm libgreeter.so -p publisher.pub` checks one by hand and
//! prints the statement. The host verifies with `minisign-verify` (no signing code in the host).
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

use semver::Version;
use serde::Deserialize;

use crate::checksums::read_trust_file;
use crate::error::LoadError;
use crate::guarded;
use crate::keys::key_id_of_line;
use crate::manifest::Manifest;

pub use crate::checksums::CHECKSUM_FILE;
pub use crate::keys::{TrustedKey, key_id};
pub use crate::record::ACCEPTED_VERSIONS_FILE;

/// The target triple this host was built for; a signature must name it.
pub const HOST_TARGET: &str = env!("BERTH_HOST_TARGET");

/// The suffix of a library's minisign signature file: `libgreeter.so.minisig`.
pub const SIGNATURE_SUFFIX: &str = ".minisig";

/// What a signature's trusted comment must say for this plugin: name, version, target and the SHA-256 of
/// the library, so that a signature moved to another plugin, version or target does not verify.
///
/// ```
/// let version = semver::Version::new(1, 0, 0);
/// let statement = berth::trust::statement("greeter", &version, "x86_64-unknown-linux-gnu", "ab12");
/// assert_eq!(statement, "berth-plugin name=greeter version=1.0.0 target=x86_64-unknown-linux-gnu sha256=ab12");
/// ```
pub fn statement(name: &str, version: &Version, target: &str, sha256: &str) -> String {
    format!("berth-plugin name={name} version={version} target={target} sha256={sha256}")
}

/// The signature file of the library at `library`.
pub fn signature_path(library: &Path) -> PathBuf {
    let mut name = library.file_name().unwrap_or_default().to_owned();
    name.push(SIGNATURE_SUFFIX);
    library.with_file_name(name)
}

/// What the host does with a library that has no signature by a trusted key (`[trust] policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustPolicy {
    /// Refused: only libraries signed by a trusted key load.
    Enforce,
    /// Loaded, but marked untrusted in the status and logged as a warning. The default, so that a host with
    /// no configuration loads local builds; production hosts should enforce.
    #[default]
    Warn,
    /// Not checked; a signature present by a trusted key is still verified.
    Off,
}

/// A trust policy that is none of `enforce`, `warn` and `off`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trust policy {text:?}: use enforce, warn or off")]
pub struct UnknownPolicy {
    /// The text given.
    pub text: String,
}

impl std::str::FromStr for TrustPolicy {
    type Err = UnknownPolicy;

    fn from_str(text: &str) -> Result<Self, UnknownPolicy> {
        match text {
            "enforce" => Ok(TrustPolicy::Enforce),
            "warn" => Ok(TrustPolicy::Warn),
            "off" => Ok(TrustPolicy::Off),
            other => Err(UnknownPolicy { text: other.to_owned() }),
        }
    }
}

impl fmt::Display for TrustPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrustPolicy::Enforce => "enforce",
            TrustPolicy::Warn => "warn",
            TrustPolicy::Off => "off",
        })
    }
}

/// The `[trust]` part of the host configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrustConfig {
    /// What an unsigned library or one signed by an unknown key gets.
    pub policy: TrustPolicy,
    /// The publishers' public keys whose signatures the host accepts.
    pub keys: Vec<TrustedKey>,
    /// Refuse files and directories that others could write (OpenSSH `StrictModes`). Default `true`; turn it
    /// off only on a development machine.
    pub strict_modes: bool,
    /// The largest library the host reads, in bytes: a larger one is refused before a byte of it is read.
    /// Default [`DEFAULT_MAX_LIBRARY`] (256 MiB); `[trust] max_library_mib` in the host configuration.
    pub max_library_size: u64,
}

/// The default largest library: far above a release build of a plugin (a few MiB) and a debug build with
/// debug information (tens of MiB).
pub const DEFAULT_MAX_LIBRARY: u64 = 256 << 20;

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            policy: TrustPolicy::default(),
            keys: Vec::new(),
            strict_modes: true,
            max_library_size: DEFAULT_MAX_LIBRARY,
        }
    }
}

/// How far a loaded library is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Signed by this trusted key, for this plugin, version, target and bytes.
    Signed {
        /// The key id.
        key: String,
    },
    /// Loaded without a verified signature, under `policy = "warn"`.
    Untrusted {
        /// Why (no signature, unknown key).
        reason: String,
    },
    /// Not checked (`policy = "off"`, no signature by a trusted key).
    Unchecked,
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::Signed { key } => write!(f, "signed by trusted key {key}"),
            Trust::Untrusted { reason } => write!(f, "untrusted: {reason}"),
            Trust::Unchecked => f.write_str("signature not checked (policy off)"),
        }
    }
}

/// Checks the signature of `bytes`, the library at `library` that `manifest` describes, under `config`.
pub(crate) fn check_signature(
    config: &TrustConfig,
    manifest: &Manifest,
    library: &Path,
    bytes: &[u8],
    sha256: &str,
) -> Result<Trust, LoadError> {
    let path = signature_path(library);
    let text = match read_trust_file(&path, guarded::MAX_KEY, "a minisign signature")? {
        Some(text) => text,
        None => {
            return match config.policy {
                TrustPolicy::Enforce => Err(LoadError::Unsigned { library: library.to_owned(), signature: path }),
                TrustPolicy::Warn => {
                    // The file name only: an install checks a staging directory, then renames it into place.
                    let file = path.file_name().unwrap_or_default().to_string_lossy();
                    Ok(Trust::Untrusted { reason: format!("no signature (no {file} beside the library)") })
                }
                TrustPolicy::Off => Ok(Trust::Unchecked),
            };
        }
    };
    let malformed = |reason: String| LoadError::SignatureMalformed { path: path.clone(), reason };
    let signature = minisign_verify::Signature::decode(&text).map_err(|e| malformed(e.to_string()))?;
    let id = text.lines().nth(1).and_then(key_id_of_line).ok_or_else(|| malformed("no key id".to_owned()))?;
    let Some(key) = config.keys.iter().find(|key| key.id() == id) else {
        return match config.policy {
            TrustPolicy::Enforce => Err(LoadError::UnknownKey { path, key: id, trusted: config.keys.len() }),
            TrustPolicy::Warn => Ok(Trust::Untrusted { reason: format!("signed by key {id}, which is not trusted") }),
            TrustPolicy::Off => Ok(Trust::Unchecked),
        };
    };
    match key.verify(bytes, &signature) {
        Ok(()) => {}
        Err(minisign_verify::Error::UnexpectedAlgorithm) => {
            return Err(malformed(
                "a legacy (not prehashed) signature; sign it again prehashed, with the same trusted comment (`minisign -S -t \"<statement>\"`: 0.10 or later prehashes by default, older ones need -H)".to_owned(),
            ));
        }
        Err(_) => return Err(LoadError::SignatureInvalid { path, library: library.to_owned(), key: id }),
    }
    let expected = statement(manifest.name.as_str(), &manifest.version, HOST_TARGET, sha256);
    if signature.trusted_comment() != expected {
        return Err(LoadError::SignatureStatement { path, signed: signature.trusted_comment().to_owned(), expected });
    }
    Ok(Trust::Signed { key: id })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// A publisher: a fresh minisign key pair, and the key as the host trusts it.
    struct Publisher {
        secret: minisign::SecretKey,
        public: minisign::PublicKey,
        trusted: TrustedKey,
    }

    impl Publisher {
        fn new() -> Publisher {
            let minisign::KeyPair { pk, sk } = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
            let trusted = TrustedKey::parse(&pk.to_base64()).unwrap();
            Publisher { secret: sk, public: pk, trusted }
        }

        fn sign(&self, bytes: &[u8], statement: &str) -> String {
            let signature = minisign::sign(Some(&self.public), &self.secret, Cursor::new(bytes), Some(statement), None);
            signature.unwrap().into_string()
        }
    }

    /// A plugin directory with a manifest for demo 1.0.0 and its library, signed by `signer` (with `statement`)
    /// when given.
    fn plugin(dir: &Path, signed: Option<(&Publisher, &str)>) -> (Manifest, PathBuf) {
        let text = "name = \"demo\"\nversion = \"1.0.0\"\napi = \"^1.0\"\n[library]\nlinux = \"libdemo.so\"\n";
        let manifest = Manifest::parse(&dir.join("demo.toml"), text).unwrap();
        let library = dir.join("libdemo.so");
        std::fs::write(&library, b"library bytes").unwrap();
        if let Some((publisher, statement)) = signed {
            std::fs::write(signature_path(&library), publisher.sign(b"library bytes", statement)).unwrap();
        }
        (manifest, library)
    }

    fn check(
        policy: TrustPolicy,
        keys: &[&Publisher],
        manifest: &Manifest,
        library: &Path,
    ) -> Result<Trust, LoadError> {
        let keys = keys.iter().map(|publisher| publisher.trusted.clone()).collect();
        let config = TrustConfig { policy, keys, ..TrustConfig::default() };
        let sha256 = crate::digest::sha256_hex(b"library bytes");
        check_signature(&config, manifest, library, b"library bytes", &sha256)
    }

    fn right_statement() -> String {
        let version = Version::new(1, 0, 0);
        statement("demo", &version, HOST_TARGET, &crate::digest::sha256_hex(b"library bytes"))
    }

    #[test]
    fn the_statement_binds_name_version_target_and_digest() {
        let statement = statement("demo", &Version::new(1, 2, 3), "x86_64-unknown-linux-gnu", "ab12");
        assert_eq!(statement, "berth-plugin name=demo version=1.2.3 target=x86_64-unknown-linux-gnu sha256=ab12");
    }

    #[test]
    fn a_signature_by_a_trusted_key_over_the_right_statement_is_trusted_under_every_policy() {
        let dir = tempfile::tempdir().unwrap();
        let publisher = Publisher::new();
        let (manifest, library) = plugin(dir.path(), Some((&publisher, &right_statement())));
        for policy in [TrustPolicy::Enforce, TrustPolicy::Warn, TrustPolicy::Off] {
            let trust = check(policy, &[&publisher], &manifest, &library).unwrap();
            assert_eq!(trust, Trust::Signed { key: publisher.trusted.id().to_owned() }, "{policy}");
        }
    }

    #[test]
    fn no_signature_or_an_unknown_key_is_what_the_policy_says_and_a_wrong_signature_is_refused_always() {
        let dir = tempfile::tempdir().unwrap();
        let (publisher, stranger) = (Publisher::new(), Publisher::new());
        let (manifest, library) = plugin(dir.path(), None);
        assert!(matches!(
            check(TrustPolicy::Enforce, &[&publisher], &manifest, &library),
            Err(LoadError::Unsigned { .. })
        ));
        assert!(matches!(check(TrustPolicy::Warn, &[&publisher], &manifest, &library), Ok(Trust::Untrusted { .. })));
        assert_eq!(check(TrustPolicy::Off, &[&publisher], &manifest, &library).unwrap(), Trust::Unchecked);

        plugin(dir.path(), Some((&stranger, &right_statement())));
        let unknown = check(TrustPolicy::Enforce, &[&publisher], &manifest, &library);
        assert!(matches!(unknown, Err(LoadError::UnknownKey { trusted: 1, .. })), "{unknown:?}");
        let warned = check(TrustPolicy::Warn, &[&publisher], &manifest, &library).unwrap();
        assert!(
            matches!(warned, Trust::Untrusted { ref reason } if reason.contains("which is not trusted")),
            "{warned:?}"
        );

        let moved = right_statement().replace("version=1.0.0", "version=0.9.0");
        plugin(dir.path(), Some((&publisher, &moved)));
        for policy in [TrustPolicy::Enforce, TrustPolicy::Warn, TrustPolicy::Off] {
            let refused = check(policy, &[&publisher], &manifest, &library);
            assert!(matches!(refused, Err(LoadError::SignatureStatement { .. })), "{policy}: {refused:?}");
        }
        std::fs::write(signature_path(&library), "not a signature").unwrap();
        let malformed = check(TrustPolicy::Off, &[&publisher], &manifest, &library);
        assert!(matches!(malformed, Err(LoadError::SignatureMalformed { .. })), "{malformed:?}");
    }

    #[test]
    fn a_signature_over_other_bytes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let publisher = Publisher::new();
        let (manifest, library) = plugin(dir.path(), None);
        std::fs::write(signature_path(&library), publisher.sign(b"other bytes", &right_statement())).unwrap();
        let refused = check(TrustPolicy::Warn, &[&publisher], &manifest, &library);
        assert!(matches!(refused, Err(LoadError::SignatureInvalid { .. })), "{refused:?}");
    }
}
