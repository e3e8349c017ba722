//! `cargo xtask new-plugin NAME`: a new plugin that builds, passes its tests and bundles right away. It is
//! laid out like the examples: the crate `plugins/NAME` (a cdylib, modelled on greeter), its manifest
//! `manifests/NAME.toml`, and an entry in the workspace's `members`, added without disturbing the root
//! `Cargo.toml`'s layout or comments.
#![forbid(unsafe_code)]

use std::fs;
use std::path::Path;

use berth::PluginName;
use berth::trust::HOST_TARGET;
use toml_edit::{Array, DocumentMut, Value};

use crate::{root, write_new};

/// A new plugin's version, in its `Cargo.toml` and its manifest (which must agree).
const VERSION: &str = "0.1.0";

/// Names the generated `lib.rs` uses itself: a plugin whose type name is one of them would not compile.
const TEMPLATE_NAMES: [&str; 10] =
    ["Config", "Deserialize", "Error", "ErrorKind", "HelloRequest", "Host", "Plugin", "Result", "String", "Vec"];

const CARGO_TOML: &str = r#"[package]
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
api = "{api}"
description = "Says hello by name"

[library]
linux = "lib{lib}.so"
macos = "lib{lib}.dylib"
windows = "{lib}.dll"

[config]
greeting = "Hello"
"#;

/// Creates the plugin `name`: its crate, its manifest and its workspace entry. Refuses a name whose crate,
/// manifest or package already exists, or that would not make a valid crate.
pub fn new_plugin(name: &PluginName) -> Result<(), String> {
    let root = root();
    if name.as_str().starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "{name}: a crate's name cannot start with a digit; choose a name that starts with a letter"
        ));
    }
    let type_name = camel_case(name.as_str());
    if TEMPLATE_NAMES.contains(&type_name.as_str()) {
        return Err(format!(
            "{name}: its type, {type_name}, would clash with a name the plugin's code uses; choose another name"
        ));
    }
    let crate_dir = root.join("plugins").join(name.as_str());
    let manifest_path = root.join("manifests").join(format!("{name}.toml"));
    for path in [&crate_dir, &manifest_path] {
        if path.exists() {
            return Err(format!("{} already exists; choose another name", path.display()));
        }
    }
    let workspace_path = root.join("Cargo.toml");
    let mut workspace = read_toml(&workspace_path)?;
    let members = workspace
        .get_mut("workspace")
        .and_then(|workspace| workspace.get_mut("members"))
        .and_then(|members| members.as_array_mut())
        .ok_or_else(|| format!("{}: no [workspace] members list to add the plugin to", workspace_path.display()))?;
    if let Some(member) = members
        .iter()
        .filter_map(Value::as_str)
        .find(|member| package_name(&root.join(member)).as_deref() == Some(name.as_str()))
    {
        return Err(format!("the workspace member {member} is already a package named {name}; choose another name"));
    }
    let api = api_requirement();

    let fill = |template: &str| {
        template
            .replace("{name}", name.as_str())
            .replace("{Type}", &type_name)
            .replace("{lib}", &name.as_str().replace('-', "_"))
            .replace("{version}", VERSION)
            .replace("{api}", &api)
    };
    fs::create_dir_all(crate_dir.join("src")).map_err(|e| format!("cannot create {}: {e}", crate_dir.display()))?;
    write_new(&crate_dir.join("Cargo.toml"), fill(CARGO_TOML).as_bytes(), 0o644)?;
    write_new(&crate_dir.join("src/lib.rs"), fill(LIB_RS).as_bytes(), 0o644)?;
    write_new(&manifest_path, fill(MANIFEST).as_bytes(), 0o644)?;
    let member = format!("plugins/{name}");
    add_member(members, &member);
    fs::write(&workspace_path, workspace.to_string())
        .map_err(|e| format!("cannot write {}: {e}", workspace_path.display()))?;

    println!("created {member}/Cargo.toml, {member}/src/lib.rs and manifests/{name}.toml");
    println!("added \"{member}\" to [workspace] members in Cargo.toml");
    println!("\nnext:");
    println!("  cargo test -p {name}");
    println!("  cargo xtask bundle {name} --key berth.key    (`cargo xtask keygen` makes berth.key)");
    println!("  berth install target/bundles/{name}-{VERSION}-{HOST_TARGET}.tar.gz");
    Ok(())
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

/// The requirement a new plugin puts on the host's plugin-api: at least the minor version in the workspace,
/// `^<major>.<minor>` (the plugin-api this xtask was built with).
fn api_requirement() -> String {
    let version = semver::Version::parse(berth::HOST_API_VERSION).expect("plugin-api's version is semver");
    format!("^{}.{}", version.major, version.minor)
}

/// The package name in `<dir>/Cargo.toml`, if it can be read.
fn package_name(dir: &Path) -> Option<String> {
    let manifest = read_toml(&dir.join("Cargo.toml")).ok()?;
    manifest.get("package")?.get("name")?.as_str().map(str::to_owned)
}

fn read_toml(path: &Path) -> Result<DocumentMut, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.parse().map_err(|e| format!("{}: {e}", path.display()))
}

/// Adds `member` after the last `plugins/...` entry (at the end when there is none), on a line of its own,
/// indented like its neighbour, when the list is one entry per line.
fn add_member(members: &mut Array, member: &str) {
    let position = members
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.as_str().is_some_and(|entry| entry.starts_with("plugins/")))
        .last()
        .map_or(members.len(), |(last, _)| last + 1);
    let mut entry = Value::from(member);
    let neighbour = position.checked_sub(1).and_then(|previous| members.get(previous));
    let indent = neighbour.and_then(|value| value.decor().prefix()?.as_str()?.rsplit_once('\n'));
    if let Some((_, indent)) = indent {
        entry.decor_mut().set_prefix(format!("\n{indent}"));
    }
    members.insert_formatted(position, entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_member(workspace: &str, member: &str) -> String {
        let mut document: DocumentMut = workspace.parse().unwrap();
        add_member(document["workspace"]["members"].as_array_mut().unwrap(), member);
        document.to_string()
    }

    #[test]
    fn a_member_goes_after_the_last_plugin_on_its_own_line_and_comments_stay() {
        let workspace = "[workspace]\n# members\nmembers = [\n    \"loader\",\n    # the examples\n    \"plugins/b\",\n    \"plugins/a\",\n    \"xtask\",\n]\n";
        assert_eq!(
            with_member(workspace, "plugins/new"),
            "[workspace]\n# members\nmembers = [\n    \"loader\",\n    # the examples\n    \"plugins/b\",\n    \"plugins/a\",\n    \"plugins/new\",\n    \"xtask\",\n]\n"
        );
    }

    #[test]
    fn a_member_joins_a_one_line_list_without_plugins_at_its_end() {
        let workspace = "[workspace]\nmembers = [\"loader\", \"xtask\"]\n";
        assert_eq!(
            with_member(workspace, "plugins/new"),
            "[workspace]\nmembers = [\"loader\", \"xtask\", \"plugins/new\"]\n"
        );
    }

    #[test]
    fn type_names_are_the_camel_case_of_the_plugin_name() {
        assert_eq!(camel_case("greeter"), "Greeter");
        assert_eq!(camel_case("text-filters"), "TextFilters");
        assert_eq!(camel_case("a--b-2"), "AB2");
    }
}
