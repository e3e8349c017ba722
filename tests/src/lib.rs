//! Support for the end-to-end tests: builds real cdylib plugins once per test process (the example plugins,
//! the fixtures in `tests/fixtures`, and plugins built against modified copies of plugin-api) into
//! `target/fixtures`, a target directory of their own, and lays out plugin directories as ops would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::{env, fs};

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use berth::{Bundle, Event, EventKind, Host, HostConfig, TrustedKey};
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

/// Runs cargo with `args` on the workspace of `manifest`, in the fixtures' target directory and profile.
fn cargo(args: &[&str], manifest: &Path) {
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.args(args).args(["--profile", if profile() == "release" { "release" } else { "dev" }]);
    command.arg("--manifest-path").arg(manifest).arg("--target-dir").arg(fixtures_target());
    let status = command.status().expect("cargo runs");
    assert!(status.success(), "cargo {args:?} on {} failed", manifest.display());
}

fn cargo_build(manifest: &Path, packages: &[&str]) {
    let mut args = vec!["build", "--quiet"];
    for package in packages {
        args.extend(["-p", package]);
    }
    cargo(&args, manifest);
}

/// Builds the example plugins, the `berth` and `cargo-berth` binaries and the fixture plugins (once per process) and returns the
/// directory they are in.
pub fn built() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = root();
        cargo_build(
            &root.join("Cargo.toml"),
            &["berth-cli", "berth-isolate", "cargo-berth", "greeter", "quota", "text-filters", "webhook-signer"],
        );
        // Same dependency versions as the workspace.
        fs::copy(root.join("Cargo.lock"), root.join("tests/fixtures/Cargo.lock")).expect("copy Cargo.lock");
        cargo_build(&root.join("tests/fixtures/Cargo.toml"), &["bench-plugin", "misbehaving", "not-a-plugin"]);
        fixtures_target().join(profile())
    })
}

/// The built library of crate `krate` (an example plugin or a fixture).
pub fn library(krate: &str) -> PathBuf {
    built().join(library_file(krate))
}

/// Appends `tables` (supervision tables such as `[limits]`, `[breaker]`) to the manifest at `manifest`;
/// returns the manifest as it was.
pub fn append_to_manifest(manifest: &Path, tables: &str) -> String {
    let text = fs::read_to_string(manifest).unwrap();
    fs::write(manifest, format!("{text}\n{tables}")).unwrap();
    text
}

/// The worker executable (`berth-worker`), built next to the `berth` binary.
pub fn worker_bin() -> PathBuf {
    built().join(format!("berth-worker{}", env::consts::EXE_SUFFIX))
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
    /// This plugin-api, the probe built with `panic = "abort"`.
    PanicAbort,
}

impl ApiVariant {
    /// The probe plugin's crate (and plugin) name for this variant.
    pub fn plugin(self) -> &'static str {
        match self {
            ApiVariant::Older => "probe-api-1-0",
            ApiVariant::NewerMinor => "probe-api-1-7",
            ApiVariant::NextMajor => "probe-api-2-0",
            ApiVariant::ChangedLayout => "probe-changed-layout",
            ApiVariant::PanicAbort => "probe-panic-abort",
        }
    }

    fn version(self) -> &'static str {
        match self {
            ApiVariant::Older => "1.0.0",
            ApiVariant::NewerMinor => "1.7.0",
            ApiVariant::NextMajor => "2.0.0",
            ApiVariant::ChangedLayout | ApiVariant::PanicAbort => berth::HOST_API_VERSION,
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
    cached_build(variant.plugin(), || build_api_variant(variant))
}

/// Runs `build` once per process and `key`, one build at a time (variants of a crate share an output name in
/// the fixtures' target directory), and returns its result.
fn cached_build(key: &str, build: impl FnOnce() -> PathBuf) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    built.entry(key.to_owned()).or_insert_with(build).clone()
}

fn build_api_variant(variant: ApiVariant) -> PathBuf {
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
            fs::write(api.join("src/ext.rs"), "//! No extension interfaces in 1.0.\n").unwrap();
            fs::remove_dir_all(api.join("src/ext")).expect("remove the extensions added after 1.0");
            // The build facts arrived in 1.3: a 1.0 plugin exports none.
            replace_once(
                &api.join("src/export.rs"),
                "        #[unsafe(no_mangle)]\n        pub static berth_build_facts_1:",
                "        pub static berth_build_facts_1:",
            );
        }
        ApiVariant::ChangedLayout => {
            replace_once(
                &api.join("src/abi.rs"),
                "    Failing,\n}",
                "    Failing,\n    /// Added: changes the layout.\n    Unknown,\n}",
            );
        }
        ApiVariant::NewerMinor | ApiVariant::NextMajor | ApiVariant::PanicAbort => {}
    }
    write_workspace(&dir, &["plugin-api", "probe"], None);
    if variant == ApiVariant::PanicAbort {
        let path = dir.join("Cargo.toml");
        let mut workspace: toml::Table = toml::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let profiles = workspace.entry("profile").or_insert_with(|| toml::Table::new().into());
        for profile in ["dev", "release"] {
            let table = profiles.as_table_mut().unwrap().entry(profile).or_insert_with(|| toml::Table::new().into());
            table.as_table_mut().unwrap().insert("panic".into(), "abort".into());
        }
        fs::write(&path, toml::to_string(&workspace).unwrap()).unwrap();
    }
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
    fixtures_target().join(profile()).join(library_file(variant.plugin()))
}

/// A build of the `reloadable` fixture: what its `mark` method answers, the state schema it writes, and the
/// package version it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloadable {
    /// Its mark.
    pub mark: &'static str,
    /// Its `berth.state/1` schema.
    pub schema: u32,
    /// Its version.
    pub version: &'static str,
}

impl Reloadable {
    /// Version 1.0.0, state schema 1, with this mark.
    pub const fn marked(mark: &'static str) -> Reloadable {
        Reloadable { mark, schema: 1, version: "1.0.0" }
    }

    /// Builds this variant (once per process) and returns its library, at a path of its own.
    pub fn library(self) -> PathBuf {
        let key = format!("reloadable-{}-s{}-{}", self.mark, self.schema, self.version);
        cached_build(&key, || {
            let dir = fixtures_target().join("variants").join(&key);
            let _ = fs::remove_dir_all(&dir);
            let krate = dir.join("reloadable");
            copy_dir(&root().join("tests/fixtures/reloadable"), &krate);
            replace_once(&krate.join("Cargo.toml"), "version = \"1.0.0\"", &format!("version = {:?}", self.version));
            replace_once(
                &krate.join("Cargo.toml"),
                "../../../plugin-api",
                &root().join("plugin-api").to_string_lossy(),
            );
            let source = krate.join("src/lib.rs");
            replace_once(&source, "const MARK: &str = \"one\";", &format!("const MARK: &str = {:?};", self.mark));
            replace_once(
                &source,
                "const STATE_SCHEMA: u32 = 1;",
                &format!("const STATE_SCHEMA: u32 = {};", self.schema),
            );
            fs::write(dir.join("Cargo.toml"), "[workspace]\nresolver = \"3\"\nmembers = [\"reloadable\"]\n").unwrap();
            fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
            // Every variant is the same package to cargo (name, version, relative path), so its fingerprint
            // would call the first variant's build fresh: clean it first.
            cargo(&["clean", "--quiet", "-p", "reloadable"], &dir.join("Cargo.toml"));
            cargo_build(&dir.join("Cargo.toml"), &["reloadable"]);
            let library = dir.join(library_file("reloadable"));
            fs::copy(fixtures_target().join(profile()).join(library_file("reloadable")), &library).unwrap();
            library
        })
    }

    /// The manifest of this variant, its library at `libreloadable.so`, with extra TOML lines.
    pub fn manifest(self, extra: &str) -> String {
        manifest("reloadable", self.version, &library_file("reloadable"), extra)
    }
}

/// Writes a workspace root like ours into `dir` (members inherit package fields, dependencies and lints from
/// it), with `members`, and our Cargo.lock. `plugin_api` replaces the path of berth-plugin-api.
fn write_workspace(dir: &Path, members: &[&str], plugin_api: Option<&Path>) {
    let root = root();
    let mut workspace: toml::Table = toml::from_str(&fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    let ws = workspace["workspace"].as_table_mut().unwrap();
    ws.insert("members".into(), toml::Value::Array(members.iter().map(|m| (*m).into()).collect()));
    ws.remove("exclude");
    let dependencies = ws["dependencies"].as_table_mut().unwrap();
    dependencies.remove("berth");
    if let Some(path) = plugin_api {
        dependencies["berth-plugin-api"]
            .as_table_mut()
            .unwrap()
            .insert("path".into(), path.to_string_lossy().into_owned().into());
    }
    fs::write(dir.join("Cargo.toml"), toml::to_string(&workspace).unwrap()).unwrap();
    fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
}

/// Example plugin `plugin` rebuilt as `version`, with one change to its source (`from` -> `to` in
/// `src/lib.rs`): a new release of it, at a path of its own.
pub fn example_release(plugin: &str, version: &str, from: &str, to: &str) -> PathBuf {
    let key = format!("{plugin}-{version}");
    cached_build(&key, || {
        let dir = fixtures_target().join("variants").join(&key);
        let _ = fs::remove_dir_all(&dir);
        copy_dir(&root().join("plugins").join(plugin), &dir.join(plugin));
        replace_once(&dir.join(plugin).join("Cargo.toml"), "version = \"1.0.0\"", &format!("version = {version:?}"));
        replace_once(&dir.join(plugin).join("src/lib.rs"), from, to);
        // A library name of its own, so that this build never overwrites the example's own cdylib in the
        // fixtures' target directory (the plugin's name is its package name, which stays).
        let lib_name = format!("{}_{}", plugin.replace('-', "_"), version.replace('.', "_"));
        replace_once(&dir.join(plugin).join("Cargo.toml"), "[lib]", &format!("[lib]\nname = {lib_name:?}"));
        write_workspace(&dir, &[plugin], Some(&root().join("plugin-api")));
        cargo_build(&dir.join("Cargo.toml"), &[plugin]);
        let library = dir.join(library_file(plugin));
        fs::copy(fixtures_target().join(profile()).join(library_file(&lib_name)), &library).unwrap();
        library
    })
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

/// An example plugin's manifest from `manifests/`, as the tests use it: the webhook signer's key is read from
/// an environment variable cargo sets for every test process (longer than 16 bytes), so no test needs
/// `set_var`.
pub fn example_manifest(plugin: &str) -> String {
    let text = fs::read_to_string(root().join("manifests").join(format!("{plugin}.toml"))).unwrap();
    if plugin == "webhook-signer" { text.replace("WEBHOOK_SECRET", "CARGO_PKG_DESCRIPTION") } else { text }
}

/// Quota 1.1.0: the example with a new version and another wording of its `report` answer.
pub fn quota_release() -> PathBuf {
    example_release(
        "quota",
        "1.1.0",
        "format!(\"{n} key(s) at their quota\")",
        "format!(\"{n} key(s) have used up their quota\")",
    )
}

/// The output of a command: stdout, then stderr.
pub fn output_text(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A manifest for plugin `name` whose Linux library is `library`, with extra TOML lines appended.
pub fn manifest(name: &str, version: &str, library: &str, extra: &str) -> String {
    format!("name = {name:?}\nversion = {version:?}\napi = \"^1.0\"\n{extra}\n[library]\nlinux = {library:?}\n")
}

/// A host of `config` that runs isolated plugins in worker processes, as `berth run` does.
pub fn isolating(config: HostConfig) -> Host {
    Host::builder(config).isolator(std::sync::Arc::new(berth_isolate::ProcessIsolator::new())).build().unwrap()
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

    /// The data directory (accepted versions).
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Rewrites the accepted-versions record as `edit` returns it, sealed again as berth seals it (the last
    /// line: the SHA-256 of the lines above), as if a host had accepted what it now says.
    pub fn edit_record(&self, edit: impl FnOnce(&str) -> String) {
        let path = self.data().join(berth::trust::ACCEPTED_VERSIONS_FILE);
        let text = fs::read_to_string(&path).unwrap();
        let body = text.trim_end_matches('\n').rsplit_once('\n').expect("a sealed record").0.to_owned() + "\n";
        let body = edit(&body);
        fs::write(&path, format!("{body}# sha256 of the lines above: {}\n", sha256_hex(body.as_bytes()))).unwrap();
    }

    /// The host configuration for this layout.
    pub fn config(&self) -> HostConfig {
        let mut config = HostConfig::default();
        config.plugin_dirs = vec![self.plugins()];
        config.cache_dir = self.cache();
        config.data_dir = self.data();
        config.isolation.worker = Some(worker_bin());
        config
    }

    /// The `berth` binary with this layout's plugin, cache and data directories, and nothing (plugin path,
    /// config file, trust settings) from the environment.
    pub fn berth(&self) -> Command {
        let mut command = self.berth_without_plugin_dirs();
        command.arg("--plugin-dir").arg(self.plugins());
        command
    }

    /// [`Layout::berth`] without `--plugin-dir`: for tests of where plugin directories come from.
    pub fn berth_without_plugin_dirs(&self) -> Command {
        let mut command = Command::new(berth_bin());
        command.arg("--cache-dir").arg(self.cache()).arg("--data-dir").arg(self.data());
        for variable in ["BERTH_PLUGIN_PATH", "BERTH_CONFIG", "BERTH_TRUST_POLICY", "BERTH_INSECURE_PERMISSIONS"] {
            command.env_remove(variable);
        }
        // No user configuration file of the machine's: the layout's own config directory (empty unless a test
        // writes `config/berth/config.toml`).
        command.env("XDG_CONFIG_HOME", self.dir.path().join("config"));
        command
    }

    /// A host over this layout.
    pub fn host(&self) -> Host {
        isolating(self.config())
    }

    /// The configuration for watching tests: a short debounce (50 ms) and settle time (1 s).
    pub fn watch_config(&self) -> HostConfig {
        let mut config = self.config();
        config.reload.debounce = Duration::from_millis(50);
        config.reload.settle = Duration::from_secs(1);
        config
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

    /// Adds an example plugin with its manifest ([`example_manifest`]).
    pub fn add_example(&self, plugin: &str) -> PathBuf {
        self.add(plugin, &example_manifest(plugin), &library(plugin), &library_file(plugin))
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

    /// Adds a `reloadable` build as plugin `reloadable`, with extra manifest lines.
    pub fn add_reloadable(&self, build: Reloadable, extra: &str) -> PathBuf {
        self.add("reloadable", &build.manifest(extra), &build.library(), &library_file("reloadable"))
    }

    /// Adds a copy of the benchmark plugin as plugin `name` (12 bytes), reporting `mark` (see
    /// [`bench_plugin_copy`]).
    pub fn add_bench_plugin(&self, name: &str, mark: &str) -> PathBuf {
        let path = self.add_manifest(name, &manifest(name, "1.0.0", &library_file(BENCH_PLUGIN), ""));
        fs::write(path.join(library_file(BENCH_PLUGIN)), bench_plugin_copy(name, mark)).unwrap();
        path
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

/// The benchmark plugin's package name, and the name every patched copy's name has the length of.
pub const BENCH_PLUGIN: &str = "bench-plugin";

/// The benchmark plugin's mark as built (see [`bench_plugin_copy`]).
const BENCH_MARK: &str = "berth-bench-mark-000000";

/// The benchmark plugin (`tests/fixtures/bench-plugin`) as the bytes of a distinct copy: the package name it
/// reports replaced by `name` and its `MARK` by `mark`, each of the same length as the original
/// (`bench-plugin`, 12 bytes; `berth-bench-mark-000000`, 23 bytes). The name is replaced wherever it occurs
/// (source paths in panic locations and debug info too), the mark exactly once. The library is read and
/// searched once per process; each copy is a clone with the same-length replacements written in.
pub fn bench_plugin_copy(name: &str, mark: &str) -> Vec<u8> {
    static TEMPLATE: OnceLock<(Vec<u8>, Vec<usize>, usize)> = OnceLock::new();
    let (bytes, names, mark_at) = TEMPLATE.get_or_init(|| {
        let bytes = fs::read(library(BENCH_PLUGIN)).unwrap();
        let names = occurrences(&bytes, BENCH_PLUGIN);
        assert!(!names.is_empty(), "{BENCH_PLUGIN:?} not found in its library");
        let marks = occurrences(&bytes, BENCH_MARK);
        assert_eq!(marks.len(), 1, "the mark should occur once in the library");
        (bytes, names, marks[0])
    });
    assert_eq!(name.len(), BENCH_PLUGIN.len(), "{name:?} must have the length of {BENCH_PLUGIN:?}");
    assert_eq!(mark.len(), BENCH_MARK.len(), "{mark:?} must have the length of {BENCH_MARK:?}");
    let mut copy = bytes.clone();
    for &at in names {
        copy[at..at + name.len()].copy_from_slice(name.as_bytes());
    }
    copy[*mark_at..mark_at + mark.len()].copy_from_slice(mark.as_bytes());
    copy
}

/// Where `pattern` occurs in `bytes`.
fn occurrences(bytes: &[u8], pattern: &str) -> Vec<usize> {
    bytes.windows(pattern.len()).enumerate().filter(|(_, w)| *w == pattern.as_bytes()).map(|(at, _)| at).collect()
}

/// Waits (at most `timeout`) for the first event matching `wanted`; panics with every event seen if none does.
pub fn wait_for(events: &Receiver<Event>, timeout: Duration, wanted: impl Fn(&Event) -> bool) -> Event {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) if wanted(&event) => return event,
            Ok(event) => seen.push(event.to_string()),
            Err(_) => panic!("no matching event within {timeout:?}; saw:\n{}", seen.join("\n")),
        }
    }
}

/// Waits for the next reload of `plugin` (a `Reloaded` event) and returns it; fails on a refused reload.
pub fn wait_for_reload(events: &Receiver<Event>, plugin: &str) -> Event {
    let event = wait_for(events, Duration::from_secs(20), |e| {
        e.plugin.as_str() == plugin
            && matches!(e.kind, EventKind::Reloaded { .. } | EventKind::ReloadFailed | EventKind::Failed)
    });
    assert!(matches!(event.kind, EventKind::Reloaded { .. }), "expected a reload, got: {event}");
    event
}

/// Asserts that no event other than progress steps arrives within `window` (a bounded negative check).
pub fn assert_quiet(events: &Receiver<Event>, window: Duration) {
    let deadline = Instant::now() + window;
    while let Ok(event) = events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        assert!(event.kind == EventKind::Progress, "unexpected event: {event}");
    }
}

/// Replaces `target` with `bytes` as an installer should: write a temporary file beside it, then rename.
pub fn install_atomically(target: &Path, bytes: &[u8]) {
    let temp = target.with_file_name(format!(".{}.tmp", target.file_name().unwrap().to_string_lossy()));
    fs::write(&temp, bytes).unwrap();
    fs::rename(&temp, target).unwrap();
}

/// A minisign key pair for the tests (unencrypted, like `cargo xtask keygen` writes).
pub struct SigningKey {
    public: minisign::PublicKey,
    secret: minisign::SecretKey,
}

impl SigningKey {
    /// A fresh key pair.
    pub fn generate() -> SigningKey {
        let minisign::KeyPair { pk, sk } = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        SigningKey { public: pk, secret: sk }
    }

    /// The public key as a minisign `.pub` file holds it.
    pub fn public_file(&self) -> String {
        self.public.to_box().unwrap().into_string()
    }

    /// The public key as the host trusts it.
    pub fn trusted(&self) -> TrustedKey {
        TrustedKey::parse(&self.public_file()).unwrap()
    }

    /// A minisign signature of `bytes` with `statement` as its trusted comment.
    pub fn sign(&self, bytes: &[u8], statement: &str) -> String {
        let signature = minisign::sign(Some(&self.public), &self.secret, bytes, Some(statement), None).unwrap();
        signature.into_string()
    }

    /// Signs the library at `library` for plugin `name` `version` on this host's target, as a publisher
    /// would: writes `<library>.minisig`.
    pub fn sign_library(&self, library: &Path, name: &str, version: &str) {
        let bytes = fs::read(library).unwrap();
        let statement = statement_for(name, version, &bytes);
        fs::write(berth::trust::signature_path(library), self.sign(&bytes, &statement)).unwrap();
    }
}

/// The statement a signature of `library` bytes for `name` `version` on this host's target must carry.
pub fn statement_for(name: &str, version: &str, library: &[u8]) -> String {
    let sha256 = sha256_hex(library);
    berth::trust::statement(name, &semver::Version::parse(version).unwrap(), berth::trust::HOST_TARGET, &sha256)
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// A bundle of an example plugin's library `library` with its manifest from `manifests/`, the version
/// replaced by `version`, signed by `key` when given; written into `dir`, and its path returned.
pub fn example_bundle(plugin: &str, version: &str, library: &Path, key: Option<&SigningKey>, dir: &Path) -> PathBuf {
    let manifest = example_manifest(plugin);
    let manifest = manifest.replace("version = \"1.0.0\"", &format!("version = {version:?}"));
    let bytes = fs::read(library).unwrap();
    let mut bundle = Bundle::new(&manifest, &library_file(plugin), bytes.clone()).unwrap();
    if let Some(key) = key {
        bundle = bundle.with_signature(key.sign(&bytes, &statement_for(plugin, version, &bytes))).unwrap();
    }
    let path = dir.join(bundle.file_name(berth::trust::HOST_TARGET).unwrap());
    bundle.write(&path).unwrap();
    path
}

/// One entry of a hand-written tar: a header of `kind` for `name` announcing `size` bytes, then `head`
/// followed by `fill` bytes up to `size`.
pub struct RawEntry<'a> {
    pub kind: tar::EntryType,
    pub name: &'a str,
    pub size: u64,
    pub head: &'a [u8],
    pub fill: u8,
}

/// Writes a gzip'd tar of `entries` to `path`, streamed: nothing the size of an entry is held in memory, so
/// a test can write a bundle that unpacks to gigabytes.
pub fn write_tar_gz(path: &Path, entries: &[RawEntry]) {
    use std::io::Write;
    let file = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut out = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let chunk = |fill: u8| vec![fill; 1 << 20];
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_path(entry.name).unwrap();
        header.set_entry_type(entry.kind);
        header.set_size(entry.size);
        header.set_mode(0o644);
        header.set_cksum();
        out.write_all(header.as_bytes()).unwrap();
        out.write_all(entry.head).unwrap();
        let (fill, mut left) = (chunk(entry.fill), entry.size - entry.head.len() as u64);
        while left > 0 {
            let n = left.min(fill.len() as u64) as usize;
            out.write_all(&fill[..n]).unwrap();
            left -= n as u64;
        }
        out.write_all(&vec![0; ((512 - entry.size % 512) % 512) as usize]).unwrap();
    }
    out.write_all(&[0; 1024]).unwrap();
    out.finish().unwrap().flush().unwrap();
}

/// `berth run` as a child process: the test waits for lines of its output, and it is killed if the test
/// fails before it stops.
pub struct BerthRun {
    child: std::process::Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    deadline: Instant,
}

impl BerthRun {
    /// Starts `command` (a `berth ... run ...` command) with its standard output captured.
    pub fn start(mut command: Command) -> BerthRun {
        use std::io::BufRead;
        let mut child = command.stdout(std::process::Stdio::piped()).spawn().expect("berth runs");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        BerthRun { child, lines, seen: Vec::new(), reader: Some(reader), deadline }
    }

    /// Waits (until the run's overall deadline) for a line `wanted` accepts, and returns it.
    pub fn wait_line(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            match self.lines.recv_timeout(self.deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("berth run did not print the expected line; it printed:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it with SIGKILL, as the OOM killer or `kill -9` would, and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Stops it as ops would (SIGTERM), checks that it exits 0, and returns the lines it printed since the
    /// last one waited for.
    pub fn stop(mut self) -> Vec<String> {
        let kill = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(kill.success());
        assert!(self.child.wait().unwrap().success(), "berth run exits 0 on SIGTERM");
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.lines.try_iter().collect()
    }
}

impl Drop for BerthRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a command run through the `measure` helper used: its output, peak resident memory and time.
#[derive(Debug)]
pub struct Measured {
    /// The command's output (the helper's summary line removed from stderr).
    pub output: std::process::Output,
    /// The child's peak resident set size, in KiB (getrusage).
    pub peak_rss_kib: u64,
    /// Wall-clock time from start to exit.
    pub elapsed: Duration,
    /// Whether it was killed at the time limit.
    pub timed_out: bool,
}

/// Runs `command` through `tests/src/bin/measure.rs` (killed after `limit`), prints `label`, its peak memory
/// and time (the figures the hostile-input tests report), and returns them. It asserts nothing about time.
pub fn measure(label: &str, command: &Command, limit: Duration) -> Measured {
    let helper = env::current_exe()
        .expect("test binary")
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(format!("measure{}", env::consts::EXE_SUFFIX));
    let mut wrapped = Command::new(helper);
    wrapped.arg(limit.as_secs().max(1).to_string()).arg(command.get_program()).args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    let mut output = wrapped.output().expect("the measure helper runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let (rest, summary) = stderr.trim_end().rsplit_once('\n').unwrap_or(("", stderr.trim_end()));
    let field =
        |name: &str| summary.split_whitespace().find_map(|part| part.strip_prefix(name)).unwrap_or_default().to_owned();
    let measured = Measured {
        peak_rss_kib: field("peak_rss_kib=").parse().expect("measure prints peak_rss_kib"),
        elapsed: Duration::from_millis(field("elapsed_ms=").parse().expect("measure prints elapsed_ms")),
        timed_out: field("timed_out=") == "true",
        output: {
            output.stderr = if rest.is_empty() { Vec::new() } else { format!("{rest}\n").into_bytes() };
            output
        },
    };
    println!(
        "{label}: peak memory {:.1} MiB, {} ms{}",
        measured.peak_rss_kib as f64 / 1024.0,
        measured.elapsed.as_millis(),
        if measured.timed_out { " (killed at the time limit)" } else { "" }
    );
    measured
}

/// A FIFO a fixture's `wait` method (or health check) reads: the call hangs until the test releases it.
#[cfg(unix)]
pub struct Fifo(PathBuf);

#[cfg(unix)]
impl Fifo {
    /// Makes a FIFO at `path`.
    pub fn new(path: PathBuf) -> Fifo {
        assert!(Command::new("mkfifo").arg(&path).status().unwrap().success(), "mkfifo {}", path.display());
        Fifo(path)
    }

    /// Its path, as the fixture's JSON input takes it.
    pub fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }

    /// Lets the readers go until `done` says they all have (at most 30 s): a writer opening the FIFO and
    /// closing it lets the calls reading it return. Opened without blocking, so that a call not yet reading is
    /// met by the next writer.
    pub fn release_until(&self, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "the calls waiting on {} never returned", self.0.display());
            let _ = self.release_once();
            std::thread::yield_now();
        }
    }

    /// Lets the readers reading now go; whether there was one.
    pub fn release_once(&self) -> bool {
        let mut writer = fs::OpenOptions::new();
        std::os::unix::fs::OpenOptionsExt::custom_flags(writer.write(true), nix::fcntl::OFlag::O_NONBLOCK.bits());
        writer.open(&self.0).is_ok()
    }
}

/// Waits (at most 30 s, yielding) until `ready` holds; panics with `what` otherwise.
pub fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::yield_now();
    }
}

/// The status of `plugin` on `host`.
pub fn status_of(host: &Host, plugin: &str) -> berth::PluginStatus {
    host.plugins().into_iter().find(|s| s.name.as_str() == plugin).unwrap_or_else(|| panic!("{plugin} is not known"))
}
