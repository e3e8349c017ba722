//! The workspace's dependency rules, checked with `cargo tree` (in the manner of rust-analyzer's tidy tests):
//! - the core library `berth` pulls no CLI, async runtime or HTTP crate in its normal dependencies, so an
//!   application embedding it gets none of them;
//! - the core library holds no signing code (`minisign`, `cargo-berth`): a host only verifies;
//! - `berth-plugin-api` depends on nothing in `loader/`: plugins never link the host.

use std::process::Command;

/// The packages `package` depends on through normal (not dev or build) dependencies, by name, with `features`
/// (cargo tree's flags, e.g. `--no-default-features`).
fn normal_dependencies_with(package: &str, features: &[&str]) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "--offline", "--quiet", "-e", "normal", "--prefix", "none", "--format", "{p}", "-p", package])
        .args(features)
        .current_dir(berth_tests::root())
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    text.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect()
}

fn normal_dependencies(package: &str) -> Vec<String> {
    normal_dependencies_with(package, &[])
}

/// Watching and installing are features (on by default): an application that only loads what ops lay out
/// pulls no file watcher, archive or format-preserving TOML crate.
#[test]
fn without_its_default_features_the_core_library_pulls_no_watcher_or_archive_crate() {
    let dependencies = normal_dependencies_with("berth", &["--no-default-features"]);
    assert!(dependencies.iter().any(|d| d == "abi_stable"), "cargo tree lists the dependencies: {dependencies:?}");
    let found: Vec<&String> = dependencies
        .iter()
        .filter(|d| ["notify", "tar", "flate2", "toml_edit", "governor"].contains(&d.as_str()))
        .collect();
    assert!(found.is_empty(), "berth without default features depends on {found:?}");
    assert!(normal_dependencies("berth").iter().any(|d| d == "notify"), "the default features include watching");
}

#[test]
fn the_core_library_pulls_no_cli_runtime_or_http_crate() {
    let dependencies = normal_dependencies("berth");
    assert!(dependencies.iter().any(|d| d == "abi_stable"), "cargo tree lists the dependencies: {dependencies:?}");
    let forbidden = [
        "clap",
        "tokio",
        "tracing-subscriber",
        "humantime",
        "hyper",
        "axum",
        "tower",
        "croner",
        "minisign",
        "cargo-berth",
        "cargo_metadata",
    ];
    let found: Vec<&String> = dependencies.iter().filter(|d| forbidden.contains(&d.as_str())).collect();
    assert!(found.is_empty(), "berth's normal dependencies include {found:?}");
}

#[test]
fn the_plugin_api_depends_on_nothing_in_loader() {
    let dependencies = normal_dependencies("berth-plugin-api");
    assert!(dependencies.iter().any(|d| d == "abi_stable"), "cargo tree lists the dependencies: {dependencies:?}");
    let found: Vec<&String> =
        dependencies.iter().filter(|d| d.starts_with("berth") && *d != "berth-plugin-api").collect();
    assert!(found.is_empty(), "berth-plugin-api depends on {found:?}");
}

/// The modules of `berth` (loader/src) and the modules each uses (`crate::<module>` outside its tests).
fn module_graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let dir = berth_tests::root().join("loader/src");
    let modules: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.strip_suffix(".rs").map(str::to_owned))
        .filter(|module| module != "lib")
        .collect();
    let mut graph = std::collections::BTreeMap::new();
    for module in &modules {
        let text = std::fs::read_to_string(dir.join(format!("{module}.rs"))).unwrap();
        let code = text.split("\nmod tests {").next().unwrap_or_default();
        let uses = code
            .split("crate::")
            .skip(1)
            .map(|rest| rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>())
            .filter(|used| used != module && modules.contains(used))
            .collect();
        graph.insert(module.clone(), uses);
    }
    graph
}

/// A cycle in `graph` as the modules in order, if there is one.
fn find_cycle(graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit<'a>(
        module: &'a str,
        graph: &'a std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| *m == module) {
            return Some(path[at..].iter().map(|m| (*m).to_owned()).chain([module.to_owned()]).collect());
        }
        if !done.insert(module) {
            return None;
        }
        path.push(module);
        for used in &graph[module] {
            if let Some(cycle) = visit(used, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph.keys().find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
}

/// Issue 12: the core library's modules use each other without a cycle, so each layer (names and file
/// utilities, manifests, errors, trust, verification, loading, the registry, reconcile, the host) can be used and
/// tested without the ones above it.
#[test]
fn the_core_librarys_modules_import_each_other_without_a_cycle() {
    let graph = module_graph();
    assert!(graph.len() > 10 && graph["registry"].contains("load"), "the graph is read: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module cycle: {}", cycle.join(" -> "));
    }
    // The check can fail: a cycle made by hand is found.
    let mut looped = graph.clone();
    looped.get_mut("name").unwrap().insert("registry".to_owned());
    assert!(find_cycle(&looped).is_some());
}
