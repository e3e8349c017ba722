//! The plugin crates of a cargo workspace, found with `cargo metadata`, and their release builds.
//!
//! A plugin crate is a package with a `cdylib` library and a Berth manifest, found beside its `Cargo.toml` as
//! `<name>.toml` (a crate of its own, as `cargo berth new` writes it) or in the workspace's `manifests/`
//! directory (the layout of the Berth repository's examples).

use std::collections::BTreeMap;
use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth::{PluginName, Version};
use cargo_metadata::{Message, Metadata, MetadataCommand, Package, PackageId, TargetKind};

use crate::Error;

/// A cargo workspace, as `cargo metadata` describes it.
pub struct Workspace {
    metadata: Metadata,
    /// The `Cargo.toml` cargo was pointed at, or the one it found from the current directory.
    manifest_path: Option<PathBuf>,
}

/// A plugin crate: a package with a `cdylib` library, and its Berth manifest.
#[derive(Debug, Clone)]
pub struct PluginCrate {
    /// The package's name, which is the plugin's name.
    pub name: PluginName,
    /// The package's version, which the manifest must agree with.
    pub version: Version,
    /// The package's directory.
    pub dir: PathBuf,
    /// The plugin's manifest.
    pub manifest: PathBuf,
    id: PackageId,
}

impl Workspace {
    /// The workspace of the `Cargo.toml` at `manifest_path`, or of the current directory.
    pub fn open(manifest_path: Option<&Path>) -> Result<Workspace, Error> {
        let mut command = MetadataCommand::new();
        command.no_deps();
        if let Some(path) = manifest_path {
            command.manifest_path(path);
        }
        let metadata = command.exec().map_err(|e| {
            let problem = match e {
                cargo_metadata::Error::CargoMetadata { stderr } => {
                    stderr.trim().trim_start_matches("error: ").to_owned()
                }
                other => other.to_string(),
            };
            let advice = "run this in a plugin crate's directory, or pass --manifest-path";
            Error::Cargo { command: "cargo metadata".to_owned(), problem: format!("{problem}; {advice}") }
        })?;
        Ok(Workspace { metadata, manifest_path: manifest_path.map(Path::to_owned) })
    }

    /// Where cargo puts what it builds for this workspace.
    pub fn target_dir(&self) -> PathBuf {
        self.metadata.target_directory.clone().into()
    }

    /// Every plugin crate in the workspace, by name.
    pub fn plugins(&self) -> Vec<PluginCrate> {
        let mut plugins: Vec<PluginCrate> =
            self.metadata.workspace_packages().into_iter().filter_map(|package| self.plugin_crate(package)).collect();
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        plugins
    }

    /// The plugin crate `name`; without a name, the one whose `Cargo.toml` cargo was pointed at (or found from
    /// the current directory), or the workspace's only plugin crate.
    pub fn plugin(&self, name: Option<&str>) -> Result<PluginCrate, Error> {
        let plugins = self.plugins();
        let names = || plugins.iter().map(|plugin| plugin.name.as_str()).collect::<Vec<_>>().join(", ");
        let root = PathBuf::from(self.metadata.workspace_root.clone());
        if let Some(name) = name {
            return plugins.iter().find(|plugin| plugin.name.as_str() == name).cloned().ok_or_else(|| {
                Error::invalid(
                    &root,
                    format!(
                        "no plugin crate {name:?} here (a package with a cdylib library and a manifest, {name}.toml \
                         beside its Cargo.toml or manifests/{name}.toml); the plugin crates are: {}",
                        names()
                    ),
                )
            });
        }
        let here = match &self.manifest_path {
            Some(path) => path.parent().map(Path::to_owned).unwrap_or_default(),
            None => env::current_dir().map_err(Error::io("find", "the current directory"))?,
        };
        let here = here.canonicalize().unwrap_or(here);
        if let Some(plugin) = plugins.iter().find(|plugin| plugin.dir.canonicalize().is_ok_and(|dir| dir == here)) {
            return Ok(plugin.clone());
        }
        match &plugins[..] {
            [only] => Ok(only.clone()),
            [] => Err(Error::invalid(
                &root,
                "no plugin crate here: a plugin crate has `crate-type = [\"cdylib\"]` in its Cargo.toml and its \
                 manifest beside it, <name>.toml (`cargo berth new NAME` makes one)",
            )),
            _ => Err(Error::invalid(
                &root,
                format!("the workspace has several plugin crates ({}); choose one with -p NAME", names()),
            )),
        }
    }

    fn plugin_crate(&self, package: &Package) -> Option<PluginCrate> {
        let cdylib = package.targets.iter().any(|target| target.kind.contains(&TargetKind::CDyLib));
        let name = PluginName::new(&package.name).ok().filter(|_| cdylib)?;
        let dir: PathBuf = package.manifest_path.parent()?.into();
        let beside = dir.join(format!("{name}.toml"));
        let shared = PathBuf::from(self.metadata.workspace_root.clone()).join("manifests").join(format!("{name}.toml"));
        let manifest = [beside, shared].into_iter().find(|path| path.is_file())?;
        Some(PluginCrate { name, version: package.version.clone(), dir, manifest, id: package.id.clone() })
    }

    /// Builds `plugins` in release, in one cargo run (its progress and errors go to standard error), and
    /// returns each plugin's library, as cargo reported writing it.
    pub fn build_release(&self, plugins: &[PluginCrate]) -> Result<Vec<(PluginCrate, PathBuf)>, Error> {
        let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command.args(["build", "--release", "--lib", "--message-format=json-render-diagnostics"]);
        command.arg("--manifest-path").arg(self.metadata.workspace_root.join("Cargo.toml"));
        for plugin in plugins {
            command.args(["-p", plugin.name.as_str()]);
        }
        let shown = format!(
            "cargo build --release -p {}",
            plugins.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(" -p ")
        );
        let failed = |problem: String| Error::Cargo { command: shown.clone(), problem };
        let mut child = command.stdout(Stdio::piped()).spawn().map_err(|e| failed(format!("cannot run cargo: {e}")))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut libraries: BTreeMap<PackageId, PathBuf> = BTreeMap::new();
        for message in Message::parse_stream(std::io::BufReader::new(stdout)) {
            let Ok(Message::CompilerArtifact(artifact)) = message else { continue };
            if !artifact.target.kind.contains(&TargetKind::CDyLib) {
                continue;
            }
            let suffix = env::consts::DLL_SUFFIX;
            if let Some(library) = artifact.filenames.iter().find(|file| file.as_str().ends_with(suffix)) {
                libraries.insert(artifact.package_id.clone(), library.clone().into());
            }
        }
        let status = child.wait().map_err(|e| failed(format!("cannot wait for cargo: {e}")))?;
        if !status.success() {
            return Err(failed(format!("cargo failed ({status}); its messages are above")));
        }
        plugins
            .iter()
            .map(|plugin| match libraries.get(&plugin.id) {
                Some(library) => Ok((plugin.clone(), library.clone())),
                None => Err(failed(format!("cargo reported no cdylib for {}", plugin.name))),
            })
            .collect()
    }
}
