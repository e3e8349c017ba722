//! `cargo xtask new-plugin NAME`: `cargo berth new`'s plugin ([`berth_author::scaffold`]), laid out like the
//! examples: the crate `plugins/NAME`, its manifest `manifests/NAME.toml`, and an entry in the workspace's
//! `members`, added without disturbing the root `Cargo.toml`'s layout or comments.
#![forbid(unsafe_code)]

use std::fs;
use std::path::Path;

use berth::PluginName;
use berth_author::HOST_TARGET;
use berth_author::scaffold::{ApiDependency, NewPlugin, VERSION, new_plugin as new_plugin_crate};
use toml_edit::{Array, DocumentMut, Value};

use crate::root;

/// Creates the plugin `name`: its crate, its manifest and its workspace entry. Refuses a name whose crate,
/// manifest or package already exists, or that would not make a valid crate.
pub fn new_plugin(name: &PluginName) -> Result<(), String> {
    let root = root();
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
    let plugin = NewPlugin {
        name: name.clone(),
        dir: root.join("plugins").join(name.as_str()),
        manifest: root.join("manifests").join(format!("{name}.toml")),
        api: ApiDependency::Workspace,
    };
    new_plugin_crate(&plugin).map_err(|e| e.to_string())?;
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
}
