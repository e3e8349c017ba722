//! Support for the end-to-end tests: builds real cdylib plugins once per test process (the example plugins,
//! the fixtures in `tests/fixtures`, and plugins built against modified copies of plugin-api) into
//! `target/fixtures`, a target directory of their own, and lays out plugin directories as ops would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::{env, fs};

use berth::{Host, HostConfig};
use tempfile::TempDir;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_owned()
}

fn fixtures_target() -> PathBuf {
    root().join("target").join("fixtures")
}

/// The file name of crate `krate`'s cdylib on this platform.
pub fn library_file(krate: &str) -> String {
    format!("{}{}{}", env::consts::DLL_PREFIX, krate.replace('-', "_"), env::consts::DLL_SUFFIX)
}

/// `BERTH_FIXTURE_PROFILE=release` builds the fixtures optimised (for measurements); tests use `debug`.
fn profile() -> String {
    env::var("BERTH_FIXTURE_PROFILE").unwrap_or_else(|_| "debug".to_owned())
}

fn cargo_build(manifest: &Path, packages: &[&str]) {
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.args(["build", "--quiet", "--profile", if profile() == "release" { "release" } else { "dev" }]);
    command.arg("--manifest-path").arg(manifest).arg("--target-dir").arg(fixtures_target());
    for package in packages {
        command.args(["-p", package]);
    }
    let status = command.status().expect("cargo runs");
    assert!(status.success(), "building {packages:?} from {} failed", manifest.display());
}

/// Builds the example plugins, the `berth` binary and the fixture plugins (once per process) and returns the
/// directory they are in.
pub fn built() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = root();
        cargo_build(&root.join("Cargo.toml"), &["berth", "greeter", "quota", "text-filters", "webhook-signer"]);
        // Same dependency versions as the workspace.
        fs::copy(root.join("Cargo.lock"), root.join("tests/fixtures/Cargo.lock")).expect("copy Cargo.lock");
        cargo_build(&root.join("tests/fixtures/Cargo.toml"), &["misbehaving", "not-a-plugin"]);
        fixtures_target().join(profile())
    })
}

/// The built library of crate `krate` (an example plugin or a fixture).
pub fn library(krate: &str) -> PathBuf {
    built().join(library_file(krate))
}

/// The `berth` binary.
pub fn berth_bin() -> PathBuf {
    built().join(format!("berth{}", env::consts::EXE_SUFFIX))
}

/// A plugin built against a modified copy of plugin-api.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiVariant {
    /// plugin-api 1.0.0 as published: without the 1.1 extension `berth.text-filter/1`.
    Older,
    /// plugin-api 1.7.0: a newer minor, same frozen core.
    NewerMinor,
    /// plugin-api 2.0.0.
    NextMajor,
    /// plugin-api 1.1.0 with a changed type in the frozen core (`HealthStatus` gained a variant).
    ChangedLayout,
}

impl ApiVariant {
    /// The probe plugin's crate (and plugin) name for this variant.
    pub fn plugin(self) -> &'static str {
        match self {
            ApiVariant::Older => "probe-api-1-0",
            ApiVariant::NewerMinor => "probe-api-1-7",
            ApiVariant::NextMajor => "probe-api-2-0",
            ApiVariant::ChangedLayout => "probe-changed-layout",
        }
    }

    fn version(self) -> &'static str {
        match self {
            ApiVariant::Older => "1.0.0",
            ApiVariant::NewerMinor => "1.7.0",
            ApiVariant::NextMajor => "2.0.0",
            ApiVariant::ChangedLayout => berth::HOST_API_VERSION,
        }
    }
}

const PROBE: &str = r#"
use berth_plugin_api::{export_plugin, json_call, Error, Host, NoConfig, Plugin};
pub struct Probe;
impl Plugin for Probe {
    type Config = NoConfig;
    fn create(_: NoConfig, _: &Host) -> Result<Self, Error> { Ok(Probe) }
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
        match method {
            "api" => json_call(input, |()| Ok(berth_plugin_api::API_VERSION)),
            other => Err(Error::unknown_method(other)),
        }
    }
}
export_plugin!(Probe);
"#;

/// Builds (once per process and variant) the probe plugin against a copy of plugin-api modified as the
/// variant says, and returns the library.
pub fn api_variant(variant: ApiVariant) -> PathBuf {
    static BUILT: Mutex<BTreeMap<ApiVariant, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(&variant) {
        return path.clone();
    }
    let root = root();
    let dir = fixtures_target().join("variants").join(variant.plugin());
    let _ = fs::remove_dir_all(&dir);
    copy_dir(&root.join("plugin-api"), &dir.join("plugin-api"));
    let api = dir.join("plugin-api");
    replace_once(
        &api.join("Cargo.toml"),
        &format!("version = \"{}\"", berth::HOST_API_VERSION),
        &format!("version = \"{}\"", variant.version()),
    );
    match variant {
        ApiVariant::Older => {
            replace_once(&api.join("src/ext.rs"), "pub mod text_filter;", "");
            fs::remove_file(api.join("src/ext/text_filter.rs")).expect("remove the 1.1 extension");
        }
        ApiVariant::ChangedLayout => {
            replace_once(
                &api.join("src/abi.rs"),
                "    Failing,\n}",
                "    Failing,\n    /// Added: changes the layout.\n    Unknown,\n}",
            );
        }
        ApiVariant::NewerMinor | ApiVariant::NextMajor => {}
    }
    // A workspace root like ours (plugin-api inherits package fields, dependencies and lints from it).
    let mut workspace: toml::Table = toml::from_str(&fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    let ws = workspace["workspace"].as_table_mut().unwrap();
    ws.insert("members".into(), toml::Value::Array(vec!["plugin-api".into(), "probe".into()]));
    ws.remove("exclude");
    ws["dependencies"].as_table_mut().unwrap().remove("berth");
    fs::write(dir.join("Cargo.toml"), toml::to_string(&workspace).unwrap()).unwrap();
    fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    fs::create_dir_all(dir.join("probe/src")).unwrap();
    fs::write(
        dir.join("probe/Cargo.toml"),
        format!(
            "[package]\nname = \"{}\"\nversion = \"1.0.0\"\nedition = \"2024\"\npublish = false\n[lib]\ncrate-type = [\"cdylib\"]\n[dependencies]\nberth-plugin-api = {{ path = \"../plugin-api\" }}\n",
            variant.plugin()
        ),
    )
    .unwrap();
    fs::write(dir.join("probe/src/lib.rs"), PROBE).unwrap();
    cargo_build(&dir.join("Cargo.toml"), &[variant.plugin()]);
    let path = fixtures_target().join(profile()).join(library_file(variant.plugin()));
    built.insert(variant, path.clone());
    path
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Replaces the one occurrence of `from` in the file; fails the test if there is not exactly one.
fn replace_once(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{} should contain {from:?} exactly once", path.display());
    fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// A manifest for plugin `name` whose Linux library is `library`, with extra TOML lines appended.
pub fn manifest(name: &str, version: &str, library: &str, extra: &str) -> String {
    format!("name = {name:?}\nversion = {version:?}\napi = \"^1.0\"\n{extra}\n[library]\nlinux = {library:?}\n")
}

/// A temporary host layout: `plugins/` (one directory per plugin) and a private `cache/`.
pub struct Layout {
    dir: TempDir,
}

impl Default for Layout {
    fn default() -> Self {
        Self::new()
    }
}

impl Layout {
    /// An empty layout.
    pub fn new() -> Layout {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("plugins")).unwrap();
        Layout { dir }
    }

    /// The plugin directory.
    pub fn plugins(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// The cache directory.
    pub fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// The host configuration for this layout.
    pub fn config(&self) -> HostConfig {
        HostConfig { plugin_dirs: vec![self.plugins()], cache_dir: self.cache() }
    }

    /// A host over this layout.
    pub fn host(&self) -> Host {
        Host::new(self.config()).unwrap()
    }

    /// Creates `plugins/<dir>/` with `<dir>.toml` holding `manifest`; returns the directory.
    pub fn add_manifest(&self, dir: &str, manifest: &str) -> PathBuf {
        let path = self.plugins().join(dir);
        fs::create_dir_all(&path).unwrap();
        fs::write(path.join(format!("{dir}.toml")), manifest).unwrap();
        path
    }

    /// Adds plugin `dir` with `manifest` and a copy of `library` under the name the manifest uses.
    pub fn add(&self, dir: &str, manifest: &str, library: &Path, file_name: &str) -> PathBuf {
        let path = self.add_manifest(dir, manifest);
        fs::copy(library, path.join(file_name)).unwrap();
        path
    }

    /// Adds an example plugin with its real manifest from `manifests/`.
    pub fn add_example(&self, plugin: &str) -> PathBuf {
        let manifest = fs::read_to_string(root().join("manifests").join(format!("{plugin}.toml"))).unwrap();
        self.add(plugin, &manifest, &library(plugin), &library_file(plugin))
    }

    /// Adds the probe plugin built against plugin-api variant `variant`, under its own name.
    pub fn add_api_variant(&self, variant: ApiVariant) -> PathBuf {
        let plugin = variant.plugin();
        self.add(
            plugin,
            &manifest(plugin, "1.0.0", &library_file(plugin), ""),
            &api_variant(variant),
            &library_file(plugin),
        )
    }

    /// Adds the `misbehaving` fixture as plugin `misbehaving`, its create doing `create` (ok, error, panic).
    pub fn add_misbehaving(&self, create: &str) -> PathBuf {
        let text = format!(
            "{}\n[config]\ncreate = {create:?}\n",
            manifest("misbehaving", "0.3.0", &library_file("misbehaving"), "")
        );
        self.add("misbehaving", &text, &library("misbehaving"), &library_file("misbehaving"))
    }
}
