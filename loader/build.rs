//! Records the target triple the host is built for: a plugin's signature names the target it was built for,
//! and the host only accepts signatures for its own.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=BERTH_HOST_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
