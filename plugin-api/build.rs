//! Records the build facts a plugin reports about itself (rustc version, target, profile).
//! plugin-api is always compiled in the same cargo invocation as the plugin that uses it,
//! so these are the plugin's build facts.

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = Command::new(&rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BERTH_BUILD_RUSTC={version}");
    for (var, name) in [("TARGET", "BERTH_BUILD_TARGET"), ("PROFILE", "BERTH_BUILD_PROFILE")] {
        let value = std::env::var(var).unwrap_or_else(|_| "unknown".to_owned());
        println!("cargo:rustc-env={name}={value}");
    }
    println!("cargo:rerun-if-env-changed=RUSTC");
    println!("cargo:rerun-if-changed=build.rs");
}
