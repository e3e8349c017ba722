//! `cargo xtask bundle` and `cargo xtask sign`: plugins packed the way they travel to hosts, as
//! [`berth::Bundle`]s (`<name>-<version>-<target>.tar.gz`), their libraries signed with a minisign key.
//!
//! Unchanged sources give byte-identical bundles: the library builds reproducibly, [`Bundle::write`] is
//! deterministic, and a signature already in the bundle at the output path is kept while it is still the
//! key's valid signature of the same library and statement (minisign signatures are randomised, so signing
//! again would change the bytes).
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};

use berth::trust::{HOST_TARGET, statement};
use berth::{Bundle, BundleError, Manifest, PluginName};

use crate::keys::SigningKey;
use crate::{cargo, library_file, root, run, sha256_hex, target_dir};

/// Builds `plugins` (every plugin crate under `plugins/` with a manifest in `manifests/` when empty) in
/// release and writes a bundle of each into `out` (default `<target dir>/bundles`), signed with the secret
/// key at `key` when given. One line per bundle; a plugin that fails does not stop the others.
pub fn bundle(plugins: &[PluginName], out: Option<PathBuf>, key: Option<&Path>) -> Result<(), String> {
    let root = root();
    let available = plugin_crates(&root)?;
    if let Some(unknown) = plugins.iter().find(|plugin| !available.contains(plugin)) {
        let names: Vec<&str> = available.iter().map(PluginName::as_str).collect();
        return Err(format!(
            "no plugin {unknown}: bundling needs plugins/{unknown}/ and manifests/{unknown}.toml (there are: {})",
            names.join(", ")
        ));
    }
    let plugins = if plugins.is_empty() { &available[..] } else { plugins };
    if plugins.is_empty() {
        return Err(format!(
            "no plugins to bundle: {} holds no crate with a manifest in manifests/",
            root.join("plugins").display()
        ));
    }
    // Before the build: a wrong key or password should not wait for a release build to be reported.
    let key = key.map(SigningKey::load).transpose()?;
    let mut build = cargo();
    build.current_dir(&root).args(["build", "--release", "--quiet"]);
    for plugin in plugins {
        build.args(["-p", plugin.as_str()]);
    }
    if !run(&mut build)? {
        return Err("cargo build --release failed".to_owned());
    }

    let target = target_dir(&root);
    let out = out.unwrap_or_else(|| target.join("bundles"));
    fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let release = target.join("release");
    let mut failures = Vec::new();
    for plugin in plugins {
        match bundle_plugin(&root, &release, plugin, &out, key.as_ref()) {
            Ok(line) => println!("{line}"),
            Err(e) => failures.push(format!("{plugin}: {e}")),
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(format!("{} of {} plugins not bundled:\n  {}", failures.len(), plugins.len(), failures.join("\n  ")))
}

/// The plugin crates under `plugins/` that have a manifest, `manifests/<name>.toml`, sorted.
fn plugin_crates(root: &Path) -> Result<Vec<PluginName>, String> {
    let dir = root.join("plugins");
    let entries = fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut plugins = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let Ok(name) = PluginName::new(&entry.file_name().to_string_lossy()) else { continue };
        if entry.path().is_dir() && root.join("manifests").join(format!("{name}.toml")).is_file() {
            plugins.push(name);
        }
    }
    plugins.sort();
    Ok(plugins)
}

/// Bundles one plugin whose library is built in `release`, and describes the bundle in one line.
fn bundle_plugin(
    root: &Path,
    release: &Path,
    plugin: &PluginName,
    out: &Path,
    key: Option<&SigningKey>,
) -> Result<String, String> {
    let manifest_path = root.join("manifests").join(format!("{plugin}.toml"));
    let text =
        fs::read_to_string(&manifest_path).map_err(|e| format!("cannot read {}: {e}", manifest_path.display()))?;
    let manifest = Manifest::parse(&manifest_path, &text).map_err(|e| e.to_string())?;
    let in_manifest = |message: String| format!("{}: {message}", manifest_path.display());
    if manifest.name != *plugin {
        return Err(in_manifest(format!(
            "it names the plugin {:?}; name it {plugin:?}, after its crate",
            manifest.name.as_str()
        )));
    }
    let entry = manifest.platform_library().map_err(|e| in_manifest(e.to_string()))?;
    let library_path = release.join(library_file(plugin.as_str()));
    let library = fs::read(&library_path).map_err(|e| format!("cannot read {}: {e}", library_path.display()))?;
    let sha256 = sha256_hex(&library);
    if let Some(expected) = entry.sha256.as_ref().filter(|expected| **expected != sha256) {
        return Err(in_manifest(format!(
            "[library] pins sha256 {expected}, but the library just built has {sha256}; update or remove the pin"
        )));
    }
    let (path, signed) = write_bundle(&manifest_path, &text, &entry.path, library, key, out)?;
    let written = fs::read(&path).map_err(|e| format!("cannot read {} back: {e}", path.display()))?;
    let kib = written.len() as f64 / 1024.0;
    Ok(format!("{}  {kib:.1} KiB  sha256 {}  {signed}", path.display(), sha256_hex(&written)))
}

/// Writes a bundle of `library` (named `library_name`) and `manifest` (the text of the manifest at
/// `manifest_path`) into `out`, signed by `key` when given: a signature already in the bundle at that path is
/// kept while it is still the key's valid one. Returns the bundle's path and how it is signed.
pub(crate) fn write_bundle(
    manifest_path: &Path,
    manifest: &str,
    library_name: &str,
    library: Vec<u8>,
    key: Option<&SigningKey>,
    out: &Path,
) -> Result<(PathBuf, String), String> {
    let in_manifest = |error: BundleError| format!("{}: {error}", manifest_path.display());
    let bundle = Bundle::new(manifest, library_name, library).map_err(in_manifest)?;
    let path = out.join(bundle.file_name(HOST_TARGET).map_err(in_manifest)?);
    let (bundle, signed) = match key {
        None => (bundle, "unsigned".to_owned()),
        Some(key) => {
            let previous = Bundle::read(&path).ok();
            let version = bundle.version().map_err(in_manifest)?;
            let library = bundle.library().map_err(in_manifest)?;
            let statement = statement(bundle.name().as_str(), &version, HOST_TARGET, &sha256_hex(library));
            let (Signature::Kept(signature) | Signature::New(signature)) =
                sign_library(key, library, &statement, previous.as_ref().and_then(Bundle::signature))?;
            let bundle = bundle.with_signature(signature).map_err(in_manifest)?;
            (bundle, format!("signed by key {}", key.id))
        }
    };
    bundle.write(&path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((path, signed))
}

/// Signs the library in the bundle at `path` with the secret key at `key`, for the target the bundle's file
/// name gives (`<name>-<version>-<target>.tar.gz`; this host's target when the name does not follow that
/// form), and writes the bundle back. A bundle already signed so by this key is left as it is.
pub fn sign(path: &Path, key: &Path) -> Result<(), String> {
    let key = SigningKey::load(key)?;
    let bundle = Bundle::read(path).map_err(|e| bundle_error(path, e))?;
    let version = bundle.version().map_err(|e| bundle_error(path, e))?;
    let library = bundle.library().map_err(|e| bundle_error(path, e))?;
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let target = file_name
        .strip_prefix(&format!("{}-{version}-", bundle.name()))
        .and_then(|rest| rest.strip_suffix(".tar.gz"))
        .filter(|target| !target.is_empty())
        .unwrap_or(HOST_TARGET);
    let statement = statement(bundle.name().as_str(), &version, target, &sha256_hex(library));
    match sign_library(&key, library, &statement, bundle.signature())? {
        Signature::Kept(_) => println!("{}: already signed by key {}; signature kept", path.display(), key.id),
        Signature::New(signature) => {
            let bundle = bundle.with_signature(signature).map_err(|e| bundle_error(path, e))?;
            bundle.write(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            println!("{}: signed by key {}", path.display(), key.id);
        }
    }
    println!("  trusted comment: {statement}");
    Ok(())
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
) -> Result<Signature, String> {
    match existing.filter(|signature| key.has_signed(signature, library, statement)) {
        Some(signature) => Ok(Signature::Kept(String::from_utf8_lossy(signature).into_owned())),
        None => key.sign(library, statement).map(Signature::New),
    }
}

/// A bundle error for the bundle at `path`, which some errors do not name.
fn bundle_error(path: &Path, error: BundleError) -> String {
    match error {
        BundleError::Io { .. } | BundleError::Format { .. } => error.to_string(),
        other => format!("{}: {other}", path.display()),
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
}
