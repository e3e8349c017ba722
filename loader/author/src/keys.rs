//! Signing keys: [`keygen`] writes a minisign key pair, and [`SigningKey`] loads a secret key to sign
//! libraries and to recognise its own signatures. Keys and signatures are plain minisign, so `minisign -G`
//! makes keys this accepts and `minisign -Vm <library> -p berth.pub` checks what it signs. Only the authors'
//! tools sign; the host verifies with `minisign-verify` and holds no signing code.

use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::{env, fs};

use ct_codecs::{Base64, Decoder};
use minisign::{ErrorKind, PublicKey, SecretKey, SignatureBox};

use crate::{Error, write_new};

/// The secret key's file name in the directory [`keygen`] writes to.
pub const SECRET_KEY_FILE: &str = "berth.key";
/// The public key's file name beside it.
pub const PUBLIC_KEY_FILE: &str = "berth.pub";
/// The environment variable that holds the password of a password-protected secret key, for CI; without it
/// the password is asked for on the terminal.
pub const PASSWORD_ENV: &str = "BERTH_KEY_PASSWORD";

const KEEP_KEYS: &str = "move the old key pair away first, or choose another --out";

/// A key pair [`keygen`] wrote. Its `Display` says where, and how to trust it.
#[derive(Debug)]
pub struct KeyPair {
    /// The secret key file.
    pub secret: PathBuf,
    /// The public key file, absolute where it can be.
    pub public: PathBuf,
    /// The key id, as minisign prints it.
    pub id: String,
}

impl fmt::Display for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "secret key: {}", self.secret.display())?;
        writeln!(f, "public key: {}", self.public.display())?;
        writeln!(f, "key id:     {}", self.id)?;
        writeln!(f, "\nTo trust it, put this into the host configuration:\n")?;
        write!(f, "[trust]\nkeys = [{:?}]", self.public.display().to_string())
    }
}

impl KeyPair {
    /// The warning to show beside a key without a password.
    pub fn warning(&self) -> String {
        format!(
            "warning: {} has no password: whoever can read it can sign plugins your hosts will trust.\n  \
             Keep it out of version control; in CI, keep it in the secret store. For a password-protected key, \
             run\n  `minisign -G -p berth.pub -s berth.key`; `bundle --key` and `sign` then ask for the password, \
             or read\n  {PASSWORD_ENV}.",
            self.secret.display()
        )
    }
}

/// Writes a new key pair without a password into `dir`: `berth.key` (mode 0600 on Unix) and `berth.pub`.
/// Refuses to replace either file: a lost secret key cannot sign for the hosts that trust its public key.
pub fn keygen(dir: &Path) -> Result<KeyPair, Error> {
    let (secret_path, public_path) = (dir.join(SECRET_KEY_FILE), dir.join(PUBLIC_KEY_FILE));
    for path in [&secret_path, &public_path] {
        if path.exists() {
            return Err(Error::Exists { path: path.clone(), advice: KEEP_KEYS });
        }
    }
    fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    let minisign::KeyPair { pk, sk } =
        minisign::KeyPair::generate_unencrypted_keypair().map_err(|e| Error::Key(format!("cannot make a key: {e}")))?;
    let id = key_id(pk.keynum());
    let secret = sk.to_box(Some("minisign secret key (no password)")).map_err(|e| Error::Key(e.to_string()))?;
    write_new(&secret_path, secret.into_string().as_bytes(), 0o600, KEEP_KEYS)?;
    // The form `minisign -G` writes.
    let public = format!("untrusted comment: minisign public key {id}\n{}\n", pk.to_base64());
    write_new(&public_path, public.as_bytes(), 0o644, KEEP_KEYS)?;
    let public = fs::canonicalize(&public_path).unwrap_or(public_path);
    Ok(KeyPair { secret: secret_path, public, id })
}

/// A minisign key id as minisign prints it.
fn key_id(keynum: &[u8]) -> String {
    berth::trust::key_id(keynum.try_into().expect("minisign key ids are 8 bytes"))
}

/// Whether the minisign secret key file `text` holds a password-protected key: one whose key derivation
/// algorithm (bytes 2 and 3 of the key) is scrypt, `Sc`.
fn is_password_protected(text: &str) -> bool {
    let key = text.lines().nth(1).unwrap_or_default().trim();
    Base64::decode_to_vec(key, None).is_ok_and(|bytes| bytes.get(2..4) == Some(b"Sc"))
}

/// A minisign secret key, ready to sign, and its public half.
pub struct SigningKey {
    secret: SecretKey,
    public: PublicKey,
    /// The key id, as minisign prints it.
    pub id: String,
}

impl SigningKey {
    /// Reads the minisign secret key at `path`. A password-protected key is opened with the password in
    /// `BERTH_KEY_PASSWORD` or, without it, one asked for on the terminal.
    pub fn load(path: &Path) -> Result<SigningKey, Error> {
        let text = fs::read_to_string(path).map_err(Error::io("read the secret key", path))?;
        let secret = if is_password_protected(&text) {
            SecretKey::from_box(text.into(), env::var(PASSWORD_ENV).ok()).map_err(|e| {
                Error::invalid(
                    path,
                    format!(
                        "cannot open the password-protected secret key: {e}; the password is read from \
                         {PASSWORD_ENV} when it is set, else asked for on the terminal"
                    ),
                )
            })?
        } else {
            SecretKey::from_unencrypted_box(text.into()).map_err(|e| match e.kind() {
                ErrorKind::Verify => Error::invalid(
                    path,
                    "the secret key's checksum does not match: it is damaged, or made by `minisign -G -W`, whose \
                     keys have none and cannot be read here; make a key with `cargo berth keygen`, or with \
                     `minisign -G` and a password",
                ),
                _ => Error::invalid(path, format!("not a minisign secret key ({e}); `cargo berth keygen` makes one")),
            })?
        };
        let public = PublicKey::from_secret_key(&secret).map_err(|e| Error::invalid(path, e.to_string()))?;
        Ok(SigningKey { id: key_id(public.keynum()), secret, public })
    }

    /// A signature of `bytes` (minisign's text form, prehashed) whose trusted comment is `statement`.
    pub fn sign(&self, bytes: &[u8], statement: &str) -> Result<String, Error> {
        let signature = minisign::sign(
            Some(&self.public),
            &self.secret,
            Cursor::new(bytes),
            Some(statement),
            Some("signature from berth secret key"),
        );
        signature
            .map(SignatureBox::into_string)
            .map_err(|e| Error::Key(format!("cannot sign with key {}: {e}", self.id)))
    }

    /// Whether `signature` is this key's valid signature of `bytes` with `statement` as its trusted comment.
    pub fn has_signed(&self, signature: &[u8], bytes: &[u8], statement: &str) -> bool {
        let Some(signature) = std::str::from_utf8(signature).ok().and_then(|text| SignatureBox::from_string(text).ok())
        else {
            return false;
        };
        signature.trusted_comment().is_ok_and(|comment| comment == statement)
            && minisign::verify(&self.public, &signature, Cursor::new(bytes), true, false, false).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_a_private_secret_key_that_signs_and_refuses_to_overwrite_it() {
        let dir = tempfile::tempdir().unwrap();
        keygen(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(SECRET_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = SigningKey::load(&dir.path().join(SECRET_KEY_FILE)).unwrap();
        let public = fs::read_to_string(dir.path().join(PUBLIC_KEY_FILE)).unwrap();
        assert!(public.starts_with(&format!("untrusted comment: minisign public key {}\n", key.id)), "{public}");
        let signature = key.sign(b"library", "statement").unwrap();
        assert!(key.has_signed(signature.as_bytes(), b"library", "statement"));
        assert!(!key.has_signed(signature.as_bytes(), b"other library", "statement"));
        assert!(!key.has_signed(signature.as_bytes(), b"library", "other statement"));
        assert!(matches!(keygen(dir.path()), Err(Error::Exists { .. })));
    }

    #[test]
    fn a_key_from_minisign_with_a_password_is_seen_as_password_protected() {
        // Made by `minisign -G` (password "pw123") for this test only.
        let protected = "untrusted comment: minisign encrypted secret key\n\
            RWRTY0Iy2tP+WrwQT7I3tP15LEMh3KeztEFu2Pq7FSw0TWjJJRkAAAACAAAAAAAAAEAAAAAAVrzK1tM2clBD80EYDA83ehcZVxNpSKYTEjY2\
            d8qFOznZKHIWbnWuBk7Q8Fa4TiEyKXcim/0TlwNqNAr4GvUprjmEYtjGZhTsyJMcwtAajC0+qY2t5hQK90V3YDI6j9Kvmr9I/+iZclc=\n";
        assert!(is_password_protected(protected));
        let dir = tempfile::tempdir().unwrap();
        keygen(dir.path()).unwrap();
        assert!(!is_password_protected(&fs::read_to_string(dir.path().join(SECRET_KEY_FILE)).unwrap()));
        assert!(!is_password_protected("not a key"));
    }
}
