//! A new plugin that builds, passes its tests and bundles right away: a `cdylib` crate modelled on the
//! greeter example (one config value, one method, two unit tests) and its manifest.

use std::fmt;
use std::fs;
use std::path::PathBuf;

use berth::PluginName;

use crate::{Error, write_new};

/// A new plugin's version, in its `Cargo.toml` and its manifest (which must agree).
pub const VERSION: &str = "0.1.0";

/// Names the generated `lib.rs` uses itself: a plugin whose type name is one of them would not compile.
const TEMPLATE_NAMES: [&str; 10] =
    ["Config", "Deserialize", "Error", "ErrorKind", "HelloRequest", "Host", "Plugin", "Result", "String", "Vec"];

/// How the new crate depends on `berth-plugin-api` (and its other dependencies).
#[derive(Debug, Clone)]
pub enum ApiDependency {
    /// A member of a workspace that declares `berth-plugin-api` and `serde` in `[workspace.dependencies]`
    /// and the package fields (`edition`, `rust-version`, `license`) in `[workspace.package]`.
    Workspace,
    /// A crate of its own, using the plugin-api crate in this directory (a checkout of Berth).
    Path(PathBuf),
    /// A crate of its own, using `berth-plugin-api` from the registry at this version requirement.
    Version(String),
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewPlugin {
    /// The plugin's name, which is also its crate's name.
    pub name: PluginName,
    /// The crate's directory, which must not exist yet.
    pub dir: PathBuf,
    /// Where its manifest goes, which must not exist yet.
    pub manifest: PathBuf,
    /// How it depends on plugin-api.
    pub api: ApiDependency,
}

impl NewPlugin {
    /// A crate of its own in `dir`, with its manifest beside its `Cargo.toml` as `<name>.toml`: the layout
    /// `cargo berth new` writes and `cargo berth bundle` reads.
    pub fn standalone(name: PluginName, dir: PathBuf, api: ApiDependency) -> NewPlugin {
        let manifest = dir.join(format!("{name}.toml"));
        NewPlugin { name, dir, manifest, api }
    }
}

/// The files [`new_plugin`] created. Its `Display` lists them.
#[derive(Debug)]
pub struct Scaffolded {
    /// Every file created, in the order written.
    pub files: Vec<PathBuf>,
}

impl fmt::Display for Scaffolded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<String> = self.files.iter().map(|file| file.display().to_string()).collect();
        write!(f, "created {}", files.join(", "))
    }
}

/// The `Cargo.toml` of a workspace member.
const MEMBER_CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "{version}"
edition.workspace = true
rust-version.workspace = true
license.workspace = true
publish = false

[lib]
# A plugin is a cdylib only: an rlib beside it would clash with other plugins' exports when linked together.
crate-type = ["cdylib"]

[dependencies]
berth-plugin-api.workspace = true
serde.workspace = true

[lints]
workspace = true
"#;

/// The `Cargo.toml` of a crate of its own.
const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "{version}"
edition = "2024"
rust-version = "1.85"
publish = false

[lib]
# A plugin is a cdylib only: an rlib beside it would clash with other plugins' exports when linked together.
crate-type = ["cdylib"]

[dependencies]
{api}
serde = { version = "1.0", features = ["derive"] }
"#;

/// A crate of its own keeps its build and any secret key out of version control.
const GITIGNORE: &str = "/target\n*.key\n";

const LIB_RS: &str = r##"//! The {name} plugin: one config value, one method, no state.
//!
//! `hello` takes `{"name": "..."}` and answers `"<greeting>, <name>!"`.
#![forbid(unsafe_code)]

use berth_plugin_api::{Error, Host, Plugin, export_plugin, json_call};
use serde::Deserialize;

/// The `[config]` table of the plugin's manifest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The word to greet with.
    greeting: String,
}

#[derive(Deserialize)]
struct HelloRequest {
    name: String,
}

/// The plugin: its config is all it keeps.
pub struct {Type} {
    greeting: String,
}

impl Plugin for {Type} {
    type Config = Config;

    fn create(config: Config, _host: &Host) -> Result<Self, Error> {
        Ok(Self { greeting: config.greeting })
    }

    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
        match method {
            "hello" => json_call(input, |request: HelloRequest| Ok(format!("{}, {}!", self.greeting, request.name))),
            other => Err(Error::unknown_method(other)),
        }
    }
}

export_plugin!({Type});

#[cfg(test)]
mod tests {
    use super::*;
    use berth_plugin_api::ErrorKind;

    fn plugin() -> {Type} {
        let config = Config { greeting: "Hi".into() };
        let host = Host::new("{name}", 1);
        {Type}::create(config, &host).unwrap()
    }

    #[test]
    fn says_hello_by_name() {
        assert_eq!(plugin().call("hello", br#"{"name":"Ada"}"#).unwrap(), br#""Hi, Ada!""#);
    }

    #[test]
    fn refuses_unknown_methods() {
        assert_eq!(plugin().call("wave", b"{}").unwrap_err().kind(), ErrorKind::UnknownMethod);
    }
}
"##;

const MANIFEST: &str = r#"name = "{name}"
version = "{version}"
api = "{requirement}"
description = "Says hello by name"

[library]
linux = "lib{lib}.so"
macos = "lib{lib}.dylib"
windows = "{lib}.dll"

[config]
greeting = "Hello"
"#;

/// Creates the plugin crate and its manifest. Refuses a name that would not make a valid crate, and a crate
/// directory or manifest that already exists (nothing is written then).
pub fn new_plugin(plugin: &NewPlugin) -> Result<Scaffolded, Error> {
    let name = &plugin.name;
    if name.as_str().starts_with(|c: char| c.is_ascii_digit()) {
        return Err(Error::invalid(
            &plugin.dir,
            format!("{name}: a crate's name cannot start with a digit; choose a name that starts with a letter"),
        ));
    }
    let type_name = camel_case(name.as_str());
    if TEMPLATE_NAMES.contains(&type_name.as_str()) {
        return Err(Error::invalid(
            &plugin.dir,
            format!(
                "{name}: its type, {type_name}, would clash with a name the plugin's code uses; choose another name"
            ),
        ));
    }
    const CHOOSE: &str = "choose another name, or another directory";
    for path in [&plugin.dir, &plugin.manifest] {
        if path.exists() {
            return Err(Error::Exists { path: path.clone(), advice: CHOOSE });
        }
    }
    let version = semver::Version::parse(berth::HOST_API_VERSION).expect("plugin-api's version is semver");
    let requirement = format!("^{}.{}", version.major, version.minor);
    let (cargo_toml, api) = match &plugin.api {
        ApiDependency::Workspace => (MEMBER_CARGO_TOML, String::new()),
        ApiDependency::Path(path) => {
            (CARGO_TOML, format!("berth-plugin-api = {{ path = {:?} }}", path.display().to_string()))
        }
        ApiDependency::Version(version) => (CARGO_TOML, format!("berth-plugin-api = {version:?}")),
    };
    let fill = |template: &str| {
        template
            .replace("{name}", name.as_str())
            .replace("{Type}", &type_name)
            .replace("{lib}", &name.as_str().replace('-', "_"))
            .replace("{version}", VERSION)
            .replace("{api}", &api)
            .replace("{requirement}", &requirement)
    };
    let src = plugin.dir.join("src");
    fs::create_dir_all(&src).map_err(Error::io("create", &src))?;
    let mut files = vec![(plugin.dir.join("Cargo.toml"), fill(cargo_toml)), (src.join("lib.rs"), fill(LIB_RS))];
    if !matches!(plugin.api, ApiDependency::Workspace) {
        files.push((plugin.dir.join(".gitignore"), GITIGNORE.to_owned()));
    }
    files.push((plugin.manifest.clone(), fill(MANIFEST)));
    for (path, text) in &files {
        write_new(path, text.as_bytes(), 0o644, CHOOSE)?;
    }
    Ok(Scaffolded { files: files.into_iter().map(|(path, _)| path).collect() })
}

/// `text-filters` -> `TextFilters`.
fn camel_case(name: &str) -> String {
    name.split('-')
        .flat_map(|word| {
            let mut chars = word.chars();
            chars.next().map(|first| first.to_ascii_uppercase()).into_iter().chain(chars)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn type_names_are_the_camel_case_of_the_plugin_name() {
        assert_eq!(camel_case("greeter"), "Greeter");
        assert_eq!(camel_case("text-filters"), "TextFilters");
        assert_eq!(camel_case("a--b-2"), "AB2");
    }

    fn new(name: &str, dir: &Path) -> Result<Scaffolded, Error> {
        let plugin =
            NewPlugin::standalone(PluginName::new(name).unwrap(), dir.join(name), ApiDependency::Version("1.3".into()));
        new_plugin(&plugin)
    }

    #[test]
    fn a_crate_of_its_own_gets_its_manifest_beside_cargo_toml_and_names_that_would_not_compile_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let created = new("hello-world", dir.path()).unwrap();
        let names: Vec<_> =
            created.files.iter().map(|file| file.strip_prefix(dir.path()).unwrap().to_owned()).collect();
        let expected = [
            "hello-world/Cargo.toml",
            "hello-world/src/lib.rs",
            "hello-world/.gitignore",
            "hello-world/hello-world.toml",
        ];
        assert_eq!(names, expected.map(PathBuf::from));
        let cargo_toml = fs::read_to_string(dir.path().join("hello-world/Cargo.toml")).unwrap();
        assert!(cargo_toml.contains("berth-plugin-api = \"1.3\"\n"), "{cargo_toml}");
        let manifest = fs::read_to_string(dir.path().join("hello-world/hello-world.toml")).unwrap();
        assert!(manifest.contains("linux = \"libhello_world.so\""), "{manifest}");
        berth::Manifest::parse(Path::new("hello-world.toml"), &manifest).unwrap();

        assert!(matches!(new("hello-world", dir.path()), Err(Error::Exists { .. })));
        assert!(new("2fast", dir.path()).unwrap_err().to_string().contains("cannot start with a digit"));
        assert!(new("plugin", dir.path()).unwrap_err().to_string().contains("would clash"));
        assert!(!dir.path().join("2fast").exists() && !dir.path().join("plugin").exists(), "a refusal wrote files");
    }
}
