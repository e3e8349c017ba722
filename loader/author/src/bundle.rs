//! Plugins packed the way they travel to hosts, as [`berth::Bundle`]s (`<name>-<version>-<target>.tar.gz`),
//! their libraries signed with a minisign key.
//!
//! Unchanged sources give byte-identical bundles: the library builds reproducibly, [`Bundle::write`] is
//! deterministic, and a signature already in the bundle at the output path is kept while it is still the
//! key's valid signature of the same library and statement (minisign signatures are randomised, so signing
//! again would change the bytes).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use berth::trust::{HOST_TARGET, statement};
use berth::{Bundle, BundleError, Manifest};

use crate::keys::SigningKey;
use crate::project::{PluginCrate, Workspace};
use berth::digest::sha256_hex;

use crate::Error;

/// A bundle [`bundle_all`] wrote. Its `Display` is one line: path, size, digest and signer.
#[derive(Debug)]
pub struct Bundled {
    /// The bundle's path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256 (lowercase hex).
    pub sha256: String,
    /// The id of the key that signed its library, when it is signed.
    pub signed_by: Option<String>,
}

impl fmt::Display for Bundled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kib = self.bytes as f64 / 1024.0;
        write!(f, "{}  {kib:.1} KiB  sha256 {}  ", self.path.display(), self.sha256)?;
        match &self.signed_by {
            Some(id) => write!(f, "signed by key {id}"),
            None => f.write_str("unsigned"),
        }
    }
}

/// Bundles `plugins` of `workspace` into `out`, signed by `key` when given: checks every manifest against its
/// crate first (name, version, the library's entry for this platform), builds them all in release in one cargo
/// run, then writes one bundle each. A bundle that cannot be written does not stop the others: the result
/// holds one outcome per plugin, in order.
pub fn bundle_all(
    workspace: &Workspace,
    plugins: &[PluginCrate],
    out: &Path,
    key: Option<&SigningKey>,
) -> Result<Vec<Result<Bundled, Error>>, Error> {
    let checked = plugins.iter().map(Checked::new).collect::<Result<Vec<_>, _>>()?;
    let libraries = workspace.build_release(plugins)?;
    fs::create_dir_all(out).map_err(Error::io("create", out))?;
    Ok(checked.into_iter().zip(libraries).map(|(checked, (_, library))| checked.write(&library, out, key)).collect())
}

/// A plugin crate whose manifest agrees with it.
struct Checked<'a> {
    plugin: &'a PluginCrate,
    text: String,
    /// The library's file name in the bundle, from the manifest's entry for this platform.
    library_name: String,
    /// The library's SHA-256, when the manifest pins one.
    pin: Option<String>,
}

impl Checked<'_> {
    /// Refuses a manifest that names another plugin or version than its crate, or has no library for this
    /// platform.
    fn new(plugin: &PluginCrate) -> Result<Checked<'_>, Error> {
        let path = &plugin.manifest;
        let text = fs::read_to_string(path).map_err(Error::io("read", path))?;
        let manifest = Manifest::parse(path, &text).map_err(|e| Error::invalid(path, e.to_string()))?;
        if manifest.name != plugin.name {
            let (found, wanted) = (manifest.name.as_str(), plugin.name.as_str());
            return Err(Error::invalid(
                path,
                format!("it names the plugin {found:?}; name it {wanted:?}, after its crate"),
            ));
        }
        if manifest.version != plugin.version {
            let (found, crate_dir, wanted) = (&manifest.version, plugin.dir.display(), &plugin.version);
            return Err(Error::invalid(
                path,
                format!("it gives version {found}, but {crate_dir}/Cargo.toml gives {wanted}; make them the same"),
            ));
        }
        let entry = manifest.platform_library().map_err(|e| Error::invalid(path, e.to_string()))?;
        Ok(Checked { plugin, text, library_name: entry.path.clone(), pin: entry.sha256.clone() })
    }

    /// Writes the bundle of `library` into `out`, signed by `key` when given: a signature already in the
    /// bundle at that path is kept while it is still the key's valid one.
    fn write(self, library: &Path, out: &Path, key: Option<&SigningKey>) -> Result<Bundled, Error> {
        let manifest_path = &self.plugin.manifest;
        let bytes = fs::read(library).map_err(Error::io("read", library))?;
        let sha256 = sha256_hex(&bytes);
        if let Some(expected) = self.pin.filter(|expected| *expected != sha256) {
            return Err(Error::invalid(
                manifest_path,
                format!(
                    "[library] pins sha256 {expected}, but the library just built has {sha256}; update or remove the pin"
                ),
            ));
        }
        pack(manifest_path, &self.text, &self.library_name, bytes, out, key)
    }
}

/// Writes a bundle of `library` (named `library_name`) and `manifest` (the text of the manifest at
/// `manifest_path`, which errors name) into `out`, signed by `key` when given: a signature already in the
/// bundle at that path is kept while it is still the key's valid one.
pub fn pack(
    manifest_path: &Path,
    manifest: &str,
    library_name: &str,
    library: Vec<u8>,
    out: &Path,
    key: Option<&SigningKey>,
) -> Result<Bundled, Error> {
    let in_bundle = |error: BundleError| Error::invalid(manifest_path, error.to_string());
    let bundle = Bundle::new(manifest, library_name, library).map_err(in_bundle)?;
    let path = out.join(bundle.file_name(HOST_TARGET).map_err(in_bundle)?);
    let (bundle, signed_by) = match key {
        None => (bundle, None),
        Some(key) => {
            let previous = Bundle::read(&path).ok();
            let version = bundle.version().map_err(in_bundle)?;
            let library = bundle.library().map_err(in_bundle)?;
            let statement = statement(bundle.name().as_str(), &version, HOST_TARGET, &sha256_hex(library));
            let (Signature::Kept(signature) | Signature::New(signature)) =
                sign_library(key, library, &statement, previous.as_ref().and_then(Bundle::signature))?;
            (bundle.with_signature(signature).map_err(in_bundle)?, Some(key.id.clone()))
        }
    };
    bundle.write(&path).map_err(Error::io("write", &path))?;
    let written = fs::read(&path).map_err(Error::io("read back", &path))?;
    Ok(Bundled { bytes: written.len() as u64, sha256: sha256_hex(&written), path, signed_by })
}

/// What [`sign`] did. Its `Display` says so, and gives the statement signed.
#[derive(Debug)]
pub struct Signed {
    /// The bundle.
    pub path: PathBuf,
    /// The signing key's id.
    pub key: String,
    /// Whether the bundle already held this key's valid signature, which was kept.
    pub kept: bool,
    /// The trusted comment signed: the statement hosts check.
    pub statement: String,
}

impl fmt::Display for Signed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (path, key) = (self.path.display(), &self.key);
        match self.kept {
            true => writeln!(f, "{path}: already signed by key {key}; signature kept")?,
            false => writeln!(f, "{path}: signed by key {key}")?,
        }
        write!(f, "  trusted comment: {}", self.statement)
    }
}

/// Signs the library in the bundle at `path` with `key`, for the target the bundle's file name gives
/// (`<name>-<version>-<target>.tar.gz`; this host's target when the name does not follow that form), and
/// writes the bundle back. A bundle already signed so by this key is left as it is.
pub fn sign(path: &Path, key: &SigningKey) -> Result<Signed, Error> {
    let bundle_error = |error: BundleError| match error {
        BundleError::Io { .. } | BundleError::Format { .. } => Error::Bundle(error),
        other => Error::invalid(path, other.to_string()),
    };
    let bundle = Bundle::read(path).map_err(bundle_error)?;
    let version = bundle.version().map_err(bundle_error)?;
    let library = bundle.library().map_err(bundle_error)?;
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let target = file_name
        .strip_prefix(&format!("{}-{version}-", bundle.name()))
        .and_then(|rest| rest.strip_suffix(".tar.gz"))
        .filter(|target| !target.is_empty())
        .unwrap_or(HOST_TARGET);
    let statement = statement(bundle.name().as_str(), &version, target, &sha256_hex(library));
    let kept = match sign_library(key, library, &statement, bundle.signature())? {
        Signature::Kept(_) => true,
        Signature::New(signature) => {
            let bundle = bundle.with_signature(signature).map_err(bundle_error)?;
            bundle.write(path).map_err(Error::io("write", path))?;
            false
        }
    };
    Ok(Signed { path: path.to_owned(), key: key.id.clone(), kept, statement })
}

/// A library's signature, in minisign's text form.
enum Signature {
    /// The signature the bundle had: already the key's valid signature of this library and statement.
    Kept(String),
    /// A new signature.
    New(String),
}

/// `key`'s signature of `library` whose trusted comment is `statement`, the one the host requires.
/// `existing`, the bundle's signature so far, is kept when it already is that signature, so that the
/// bundle's bytes do not change.
fn sign_library(
    key: &SigningKey,
    library: &[u8],
    statement: &str,
    existing: Option<&[u8]>,
) -> Result<Signature, Error> {
    match existing.filter(|signature| key.has_signed(signature, library, statement)) {
        Some(signature) => Ok(Signature::Kept(String::from_utf8_lossy(signature).into_owned())),
        None => key.sign(library, statement).map(Signature::New),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_signature_is_kept_and_any_other_is_replaced() {
        let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        crate::keys::keygen(dir.path()).unwrap();
        crate::keys::keygen(other.path()).unwrap();
        let key = SigningKey::load(&dir.path().join("berth.key")).unwrap();
        let other_key = SigningKey::load(&other.path().join("berth.key")).unwrap();
        let (library, statement) = (b"library".as_slice(), "berth-plugin name=demo");

        let first = key.sign(library, statement).unwrap();
        let again = sign_library(&key, library, statement, Some(first.as_bytes())).unwrap();
        assert!(matches!(again, Signature::Kept(ref kept) if *kept == first), "a valid signature was replaced");
        for (key, library, statement) in
            [(&other_key, library, statement), (&key, b"changed".as_slice(), statement), (&key, library, "other")]
        {
            let signature = sign_library(key, library, statement, Some(first.as_bytes())).unwrap();
            assert!(matches!(signature, Signature::New(ref new) if *new != first), "a wrong signature was kept");
        }
    }

    /// A new crate outside any workspace, from the scaffold, depending on this checkout's plugin-api.
    fn new_crate(dir: &Path) -> PathBuf {
        let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugin-api");
        let name = berth::PluginName::new("hello-world").unwrap();
        let plugin = crate::NewPlugin::standalone(name, dir.join("hello-world"), crate::ApiDependency::Path(api));
        crate::new_plugin(&plugin).unwrap();
        dir.join("hello-world")
    }

    #[test]
    fn the_plugin_crate_is_found_from_its_cargo_toml_and_a_manifest_that_disagrees_is_refused_before_the_build() {
        let dir = tempfile::tempdir().unwrap();
        let krate = new_crate(dir.path());
        let workspace = Workspace::open(Some(&krate.join("Cargo.toml"))).unwrap();
        let plugin = workspace.plugin(None).unwrap();
        assert_eq!((plugin.name.as_str(), plugin.manifest.clone()), ("hello-world", krate.join("hello-world.toml")));
        let unknown = workspace.plugin(Some("other")).unwrap_err().to_string();
        assert!(
            unknown.contains("no plugin crate \"other\" here") && unknown.ends_with("are: hello-world"),
            "{unknown}"
        );

        let manifest = fs::read_to_string(&plugin.manifest).unwrap();
        fs::write(&plugin.manifest, manifest.replace("version = \"0.1.0\"", "version = \"0.2.0\"")).unwrap();
        let refused = bundle_all(&workspace, &[plugin], &dir.path().join("out"), None).unwrap_err();
        let expected = "it gives version 0.2.0, but";
        assert!(
            refused.to_string().contains(expected) && refused.to_string().ends_with("make them the same"),
            "{refused}"
        );
        assert!(!dir.path().join("out").exists(), "nothing is written");
        assert!(!krate.join("target").exists(), "refused before cargo built anything");
    }
}
