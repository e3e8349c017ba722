//! The workspace's dependency rules, checked with `cargo tree` (in the manner of rust-analyzer's tidy tests):
//! - the core library `berth` pulls no CLI, async runtime or HTTP crate in its normal dependencies, so an
//!   application embedding it gets none of them;
//! - `berth-plugin-api` depends on nothing in `loader/`: plugins never link the host.

use std::process::Command;

/// The packages `package` depends on through normal (not dev or build) dependencies, by name.
fn normal_dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "--offline", "--quiet", "-e", "normal", "--prefix", "none", "--format", "{p}", "-p", package])
        .current_dir(berth_tests::root())
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    text.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect()
}

#[test]
fn the_core_library_pulls_no_cli_runtime_or_http_crate() {
    let dependencies = normal_dependencies("berth");
    assert!(dependencies.iter().any(|d| d == "abi_stable"), "cargo tree lists the dependencies: {dependencies:?}");
    let forbidden = ["clap", "tokio", "tracing-subscriber", "humantime", "hyper", "axum", "tower", "croner"];
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
