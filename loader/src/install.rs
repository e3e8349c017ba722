//! Installing and verifying plugins as ops do: a bundle is checked completely before anything in the plugin
//! directory changes (its layout and `SHA256SUMS`, then, unpacked beside its destination, the same checks a
//! host makes: permissions, format, digests, signature under the trust policy, accepted versions, and the
//! ABI checks of the library opened from a private copy). Then one rename puts it in place: a host watching
//! the directory sees the old plugin or the new one, never a mix, and an install interrupted at any point
//! leaves the old version installed (what it leaves behind is a hidden directory, skipped by discovery and
//! removed by the next install).
#![forbid(unsafe_code)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use semver::Version;

use crate::bundle::Bundle;
use crate::bundle::BundleError;
use crate::config::HostConfig;
use crate::discover::discover;
use crate::error::{HostError, LoadError, ManifestError};
use crate::fsutil::{lock_dir, sync_dir};
use crate::load::{self, LibraryInfo, check_api_requirement, check_metadata};
use crate::manifest::{Manifest, PluginName, carry_over, set_pin};
use crate::record::AcceptedVersions;
use crate::trust::Trust;
use crate::verify::{PrivateCache, verify_library};

/// What a verification found: everything a host would check, passed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Verification {
    /// The manifest that was checked.
    pub manifest: PathBuf,
    /// The plugin's name.
    pub name: PluginName,
    /// Its version.
    pub version: Version,
    /// The SHA-256 of its library.
    pub sha256: String,
    /// What its signature says.
    pub trust: Trust,
    /// What the library reports about itself, from the ABI checks. `None` when they were not run: verifying
    /// and installing never run a library that is not signed by a trusted key (opening one runs its
    /// initialisers); the host makes the same checks when it loads it.
    pub library: Option<LibraryInfo>,
}

/// A completed install.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Installed {
    /// What was verified before it was put in place.
    pub verification: Verification,
    /// The manifest keys ops had set in the installed manifest that were kept (`enabled`, `config`).
    pub kept: Vec<&'static str>,
    /// The plugin's directory now.
    pub dir: PathBuf,
    /// The version it replaced, if one was installed.
    pub replaced: Option<Version>,
}

/// Why an install or a verification refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The bundle cannot be used.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A check a host makes refused the plugin.
    #[error("{}: {error}", manifest.display())]
    Refused {
        /// The manifest checked (inside the unpacked bundle, or the installed one).
        manifest: PathBuf,
        /// Why.
        error: Box<LoadError>,
    },
    /// The bundle is older than the version installed.
    #[error("{}: version {installed} is installed and the bundle holds the older {version}; to roll back on purpose, install with --pin (it sets pin = \"{version}\" in the manifest)", manifest.display())]
    Downgrade {
        /// The installed manifest.
        manifest: PathBuf,
        /// The installed version.
        installed: Version,
        /// The bundle's version.
        version: Version,
    },
    /// The bundle is older than a version the host has accepted.
    #[error("this host has accepted {highest} (recorded in {}) and the bundle holds the older {version}; to roll back on purpose, install with --pin (it sets pin = \"{version}\" in the manifest)", record.display())]
    Accepted {
        /// The accepted-versions file.
        record: PathBuf,
        /// The highest version accepted.
        highest: Version,
        /// The bundle's version.
        version: Version,
    },
    /// The bundle's manifest pins its version: a roll-back is for ops to decide, not a publisher.
    #[error(
        "the bundle's manifest says pin = \"{pinned}\": only ops pin a version; if you mean to roll back to it, install with --pin"
    )]
    BundlePin {
        /// The version pinned.
        pinned: Version,
    },
    /// The plugin is installed under another directory.
    #[error("this plugin is installed as {}, not in {}; {advice}", manifest.display(), target.display())]
    InstalledElsewhere {
        /// Its installed manifest.
        manifest: PathBuf,
        /// Where the bundle would go.
        target: PathBuf,
        /// What to do: install into the plugin directory that holds it, or remove it first.
        advice: String,
    },
    /// The plugin directory to install into does not exist (or is not a directory).
    #[error("plugin directory {} does not exist; create it first (mkdir -p {}), or install into an existing plugin directory", dir.display(), dir.display())]
    NoPluginDir {
        /// The directory.
        dir: PathBuf,
    },
    /// Something other than a directory is where the plugin's directory goes.
    #[error("{} is not a directory, and the plugin's directory goes there; move it away and install again", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// No installed plugin has that name.
    #[error("no plugin named {name:?} is installed in {dirs}{unreadable}")]
    UnknownPlugin {
        /// The name asked for.
        name: String,
        /// The plugin directories searched.
        dirs: String,
        /// Empty, or why some of them could not be searched: `; plugin directory nope does not exist`.
        unreadable: String,
    },
    /// A file operation failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        error: io::Error,
    },
    /// The cache or data directory cannot be used.
    #[error(transparent)]
    Host(#[from] HostError),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Io { path: path.to_owned(), error: source }
}

/// Checks the bundle at `path` as [`install`] would, without installing it. The bundle is unpacked into a
/// private temporary directory for the checks.
pub fn verify_bundle(path: &Path, config: &HostConfig) -> Result<Verification, InstallError> {
    let bundle = Bundle::read_bounded(path, config.trust.max_library_size)?;
    let name = bundle.name().clone();
    let temp = tempfile::Builder::new().prefix("berth-verify-").tempdir().map_err(io_error(path))?;
    let dir = temp.path().join(name.as_str());
    unpack(bundle, &dir)?;
    verify_manifest(&dir.join(format!("{name}.toml")), config)
}

/// Checks the installed plugin called `name` as a host loading it would.
pub fn verify_installed(name: &str, config: &HostConfig) -> Result<Verification, InstallError> {
    verify_manifest(&find_manifest(name, config)?, config)
}

/// The manifest of the installed plugin called `name`.
pub fn find_manifest(name: &str, config: &HostConfig) -> Result<PathBuf, InstallError> {
    let (paths, failures) = discover(&config.plugin_dirs);
    paths.into_iter().find(|path| Manifest::load(path).is_ok_and(|m| m.name.as_str() == name)).ok_or_else(|| {
        let dirs: Vec<String> = config.plugin_dirs.iter().map(|d| d.display().to_string()).collect();
        let unreadable: String = failures.iter().map(|failure| format!("; {}", failure.error)).collect();
        InstallError::UnknownPlugin { name: name.to_owned(), dirs: dirs.join(", "), unreadable }
    })
}

/// Everything a host checks before a plugin serves, short of creating an instance: the manifest, the `api`
/// requirement, the accepted versions, the library (permissions, format, digests, signature), and, for a
/// library signed by a trusted key, the ABI checks and metadata of the library opened from a private copy
/// (which runs its initialisers).
fn verify_manifest(path: &Path, config: &HostConfig) -> Result<Verification, InstallError> {
    let refused = |error: LoadError| InstallError::Refused { manifest: path.to_owned(), error: Box::new(error) };
    let manifest = Manifest::load(path).map_err(|e| refused(e.into()))?;
    check_api_requirement(&manifest).map_err(refused)?;
    AcceptedVersions::open(&config.data_dir)?.check(&manifest).map_err(refused)?;
    let verified = verify_library(&manifest, &config.trust).map_err(refused)?;
    let mut library = None;
    if matches!(verified.trust, Trust::Signed { .. }) {
        let cache = PrivateCache::open(&config.cache_dir)?;
        let module = load::open(&cache.store(&verified.sha256, &verified.bytes).map_err(refused)?).map_err(refused)?;
        check_metadata(&manifest, &module.info).map_err(refused)?;
        library = Some(module.info);
    }
    Ok(Verification {
        manifest: path.to_owned(),
        name: manifest.name,
        version: manifest.version,
        sha256: verified.sha256,
        trust: verified.trust,
        library,
    })
}

/// Creates the plugin directory `dir` (mode 0755 whatever the umask) and writes the bundle's files into it.
fn unpack(bundle: Bundle, dir: &Path) -> Result<(), InstallError> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o755);
    builder.create(dir).and_then(|()| bundle.unpack_into(dir)).map_err(io_error(dir))
}

/// Installs the bundle at `bundle` into the plugin directory `plugin_dir`, as `<plugin_dir>/<name>/`. With
/// `pin`, an older version than the one installed or accepted is allowed, and pinned in its manifest.
/// Installs into the same plugin directory run one at a time (an advisory lock on the directory, on Unix).
pub fn install(bundle: &Path, plugin_dir: &Path, config: &HostConfig, pin: bool) -> Result<Installed, InstallError> {
    let bundle = Bundle::read_bounded(bundle, config.trust.max_library_size)?;
    let name = bundle.name().clone();
    let version = bundle.version()?;
    if let Some(pinned) = bundle.manifest()?.pin.filter(|_| !pin) {
        return Err(InstallError::BundlePin { pinned });
    }
    if !plugin_dir.is_dir() {
        return Err(InstallError::NoPluginDir { dir: plugin_dir.to_owned() });
    }
    let _one_at_a_time = lock(plugin_dir)?;
    let target = plugin_dir.join(name.as_str());
    if fs::metadata(&target).is_ok_and(|metadata| !metadata.is_dir()) {
        return Err(InstallError::NotADirectory { path: target });
    }
    if let Ok(elsewhere) = find_manifest(name.as_str(), config) {
        let same_dir = |dir: &Path| fs::canonicalize(dir).ok();
        if elsewhere.parent().and_then(same_dir).is_none_or(|dir| Some(dir) != same_dir(&target)) {
            let dir = elsewhere.parent().unwrap_or(Path::new("."));
            // An install replaces `<plugin dir>/<name>`: it can replace this one only if its directory is so named.
            let advice = match (dir.file_name(), dir.parent()) {
                (Some(named), Some(holder)) if named == name.as_str() => format!(
                    "install into the plugin directory that holds it, {}, or remove {} first",
                    holder.display(),
                    dir.display()
                ),
                _ => format!(
                    "its directory is not named {name}, so an install cannot replace it; remove {} (or rename it to {}) first",
                    dir.display(),
                    target.display()
                ),
            };
            return Err(InstallError::InstalledElsewhere { manifest: elsewhere, target, advice });
        }
    }
    let installed_manifest = target.join(format!("{name}.toml"));
    let installed = Manifest::load(&installed_manifest).ok().map(|m| m.version);
    if let Some(installed) = installed.clone().filter(|installed| version < *installed && !pin) {
        return Err(InstallError::Downgrade { manifest: installed_manifest, installed, version });
    }
    if !pin {
        let record = AcceptedVersions::open(&config.data_dir)?;
        if let Some(highest) = record.highest(&name).filter(|highest| version < *highest) {
            return Err(InstallError::Accepted { record: record.path().to_owned(), highest, version });
        }
    }
    // Under the lock, a staging directory of this plugin can only be left by an install that was interrupted.
    remove_leftovers(plugin_dir, &name);
    let staging = plugin_dir.join(format!(".{name}.install-{}", std::process::id()));
    let result = stage_and_swap(bundle, &name, &version, &staging, &target, config, pin);
    // After a swap the staging path holds the version replaced; after a failure, the unverified one.
    let _ = fs::remove_dir_all(&staging);
    let (verification, kept) = result?;
    Ok(Installed { verification, kept, dir: target, replaced: installed })
}

fn stage_and_swap(
    bundle: Bundle,
    name: &PluginName,
    version: &Version,
    staging: &Path,
    target: &Path,
    config: &HostConfig,
    pin: bool,
) -> Result<(Verification, Vec<&'static str>), InstallError> {
    unpack(bundle, staging)?;
    let manifest = staging.join(format!("{name}.toml"));
    let installed = target.join(format!("{name}.toml"));
    let refused = |e: ManifestError| InstallError::Refused { manifest: manifest.clone(), error: Box::new(e.into()) };
    let kept = if installed.exists() { carry_over(&installed, &manifest).map_err(refused)? } else { Vec::new() };
    if pin {
        set_pin(&manifest, version).map_err(refused)?;
    }
    let verification = verify_manifest(&manifest, config)?;
    sync_dir(staging).map_err(io_error(staging))?;
    swap_into_place(staging, target)?;
    let parent = target.parent().unwrap_or(Path::new("."));
    sync_dir(parent).map_err(io_error(parent))?;
    Ok((Verification { manifest: installed, ..verification }, kept))
}

/// Puts the directory `staging` at `target` in one step. When `target` exists, the two are exchanged
/// atomically on Linux (`renameat2(RENAME_EXCHANGE)`), so `target` is never missing; elsewhere the old one is
/// renamed aside first (a host may see the plugin missing for that instant).
fn swap_into_place(staging: &Path, target: &Path) -> Result<(), InstallError> {
    abort_here_in_tests();
    if !target.exists() {
        return fs::rename(staging, target).map_err(io_error(target));
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        renameat_with(CWD, staging, CWD, target, RenameFlags::EXCHANGE)
            .map_err(|e| InstallError::Io { path: target.to_owned(), error: e.into() })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let aside = target.with_file_name(format!(
            ".{}.old-{}",
            target.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        fs::rename(target, &aside).map_err(io_error(target))?;
        if let Err(e) = fs::rename(staging, target) {
            // Put the installed version back; `remove_leftovers` does the same after a crash here.
            let _ = fs::rename(&aside, target);
            return Err(InstallError::Io { path: target.to_owned(), source: e });
        }
        fs::rename(&aside, staging).map_err(io_error(staging))
    }
}

/// Holds an exclusive advisory lock on `plugin_dir` until dropped (Unix; elsewhere installs are not
/// serialised).
fn lock(plugin_dir: &Path) -> Result<fs::File, InstallError> {
    lock_dir(plugin_dir).map_err(io_error(plugin_dir))
}

/// A fault-injection point for the interrupted-install test: in debug builds, `BERTH_TEST_ABORT_BEFORE_SWAP`
/// aborts the process after the bundle is unpacked and verified, just before it would be put in place.
fn abort_here_in_tests() {
    if cfg!(debug_assertions) && std::env::var_os("BERTH_TEST_ABORT_BEFORE_SWAP").is_some() {
        std::process::abort();
    }
}

/// Cleans up after interrupted installs of `name` in `plugin_dir`: a staging directory (hidden, never
/// loaded) is removed; a version set aside by a swap that did not finish (off Linux) is put back when the
/// plugin's directory is missing, else removed.
fn remove_leftovers(plugin_dir: &Path, name: &PluginName) {
    let Ok(entries) = fs::read_dir(plugin_dir) else { return };
    let target = plugin_dir.join(name.as_str());
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with(&format!(".{name}.old-")) && !target.exists() {
            let _ = fs::rename(entry.path(), &target);
        } else if file_name.starts_with(&format!(".{name}.install-")) || file_name.starts_with(&format!(".{name}.old-"))
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Sets `enabled` in the manifest of the installed plugin called `name`, keeping the manifest's comments and
/// layout. Returns the manifest's path and whether it changed; a watching host applies it at once.
pub fn set_enabled(name: &str, enabled: bool, config: &HostConfig) -> Result<(PathBuf, bool), InstallError> {
    let path = find_manifest(name, config)?;
    let changed = crate::manifest::set_enabled(&path, enabled)
        .map_err(|e: ManifestError| InstallError::Refused { manifest: path.clone(), error: Box::new(e.into()) })?;
    Ok((path, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str =
        "# ops' note\nname = \"demo\"\nversion = \"1.0.0\"\napi = \"^1.0\"\n\n[library]\nlinux = \"libdemo.so\"\n";

    /// A host configuration over a plugin directory holding the demo manifest (and no library).
    fn layout() -> (tempfile::TempDir, HostConfig) {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        fs::create_dir_all(plugins.join("demo")).unwrap();
        fs::write(plugins.join("demo/demo.toml"), MANIFEST).unwrap();
        let config = HostConfig {
            plugin_dirs: vec![plugins],
            cache_dir: dir.path().join("cache"),
            data_dir: dir.path().join("data"),
            ..HostConfig::default()
        };
        (dir, config)
    }

    #[test]
    fn enabling_and_disabling_edit_only_enabled_and_say_when_nothing_changed() {
        let (_dir, config) = layout();
        let (path, changed) = set_enabled("demo", false, &config).unwrap();
        assert!(changed);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# ops' note\n") && text.contains("enabled = false"), "{text}");
        assert_eq!(set_enabled("demo", false, &config).unwrap(), (path.clone(), false));
        assert!(set_enabled("demo", true, &config).unwrap().1);
        assert!(fs::read_to_string(&path).unwrap().contains("enabled = true"));
    }

    #[test]
    fn an_unknown_plugin_names_where_it_was_looked_for() {
        let (_dir, config) = layout();
        let error = set_enabled("nope", true, &config).unwrap_err();
        let dir = config.plugin_dirs[0].display().to_string();
        assert!(matches!(error, InstallError::UnknownPlugin { ref dirs, .. } if *dirs == dir), "{error:?}");
        assert_eq!(error.to_string(), format!("no plugin named \"nope\" is installed in {dir}"));
    }

    #[test]
    fn a_bundle_that_fails_a_check_changes_nothing_in_the_plugin_directory() {
        let (dir, config) = layout();
        let manifest = MANIFEST.replace("1.0.0", "1.1.0");
        let bundle = Bundle::new(&manifest, "libdemo.so", b"not a library".to_vec()).unwrap();
        let path = dir.path().join("demo-1.1.0.tar.gz");
        bundle.write(&path).unwrap();
        let before = fs::read_to_string(config.plugin_dirs[0].join("demo/demo.toml")).unwrap();

        let refused = install(&path, &config.plugin_dirs[0], &config, false).unwrap_err();
        assert!(refused.to_string().contains("is not a shared library"), "{refused}");
        let names: Vec<_> = fs::read_dir(&config.plugin_dirs[0]).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["demo"], "the staging directory is gone");
        assert_eq!(fs::read_to_string(config.plugin_dirs[0].join("demo/demo.toml")).unwrap(), before);
    }
}
