//! `cargo xtask`: the project's own tasks (alias in `.cargo/config.toml`). With no arguments it prints help.
//!
//! - `demo`: builds the example plugins and the `berth` CLI, lays the plugins out as ops would (one directory
//!   per plugin: manifest + library) under `target/berth-demo`, then runs the CLI against them: the status
//!   table, a few calls, and a refusal with its reason.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::{env, fs};

use clap::{Parser, Subcommand};

/// Berth's development tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the example plugins, lay them out as ops would, load them, call them, show a refusal.
    Demo,
}

/// The example plugins: crate name = plugin name = manifest file stem.
const PLUGINS: [&str; 4] = ["greeter", "quota", "text-filters", "webhook-signer"];

/// A demonstration key for the webhook signer: not a secret, only for the demo.
const DEMO_WEBHOOK_KEY: &str = "demo-key-not-a-secret-0123456789";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Demo => demo(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root").to_owned()
}

fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(command: &mut Command) -> Result<bool, String> {
    command.status().map(|status| status.success()).map_err(|e| format!("cannot run {command:?}: {e}"))
}

/// The file name cargo gives the cdylib of `krate` on this platform.
fn library_file(krate: &str) -> String {
    let stem = krate.replace('-', "_");
    format!("{}{stem}{}", env::consts::DLL_PREFIX, env::consts::DLL_SUFFIX)
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn demo() -> Result<(), String> {
    let root = root();
    let target = root.join("target");
    step("building the example plugins and the berth CLI");
    let mut build = cargo();
    build.current_dir(&root).args(["build", "--quiet", "-p", "berth"]);
    for plugin in PLUGINS {
        build.args(["-p", plugin]);
    }
    if !run(&mut build)? {
        return Err("cargo build failed".to_owned());
    }

    let demo = target.join("berth-demo");
    let plugins = demo.join("plugins");
    step(&format!("laying the plugins out as ops would, in {}", plugins.display()));
    if demo.exists() {
        fs::remove_dir_all(&demo).map_err(|e| format!("cannot clear {}: {e}", demo.display()))?;
    }
    for plugin in PLUGINS {
        let dir = plugins.join(plugin);
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        copy(&root.join("manifests").join(format!("{plugin}.toml")), &dir.join(format!("{plugin}.toml")))?;
        copy(&target.join("debug").join(library_file(plugin)), &dir.join(library_file(plugin)))?;
        println!("  {plugin}/  {plugin}.toml  {}", library_file(plugin));
    }
    // One plugin an operator copied badly: half of the library's bytes. Berth refuses it before opening it.
    let broken = plugins.join("broken-copy");
    fs::create_dir_all(&broken).map_err(|e| e.to_string())?;
    let bytes = fs::read(target.join("debug").join(library_file("greeter"))).map_err(|e| e.to_string())?;
    fs::write(broken.join(library_file("greeter")), &bytes[..bytes.len() / 2]).map_err(|e| e.to_string())?;
    let manifest = fs::read_to_string(root.join("manifests/greeter.toml")).map_err(|e| e.to_string())?;
    fs::write(broken.join("broken-copy.toml"), manifest.replace("name = \"greeter\"", "name = \"broken-copy\""))
        .map_err(|e| e.to_string())?;
    println!("  broken-copy/  broken-copy.toml  {} (only the first half of the file)", library_file("greeter"));

    let berth = target.join("debug").join(format!("berth{}", env::consts::EXE_SUFFIX));
    let cli = |args: &[&str]| -> Result<bool, String> {
        let shown: Vec<&str> = args.iter().map(|a| if a.len() > 60 { "..." } else { a }).collect();
        println!("\n$ berth {}", shown.join(" "));
        run(Command::new(&berth)
            .args(["--plugin-dir", &plugins.to_string_lossy(), "--cache-dir", &demo.join("cache").to_string_lossy()])
            .args(args)
            .env("WEBHOOK_SECRET", DEMO_WEBHOOK_KEY)
            .env_remove("BERTH_CONFIG"))
    };
    step("status of every plugin");
    cli(&["list"])?;
    step("calls");
    let calls: [&[&str]; 5] = [
        &["call", "greeter", "greet", r#"{"name":"ops"}"#],
        &["call", "quota", "consume", r#"{"key":"demo"}"#],
        &["call", "text-filters", "apply", r#"{"filter":"slug","text":"Berth loads native plugins!"}"#],
        &["call", "webhook-signer", "sign", r#"{"payload":"{\"event\":\"deploy\"}","timestamp":1767225600}"#],
        &["info", "text-filters"],
    ];
    for args in calls {
        if !cli(args)? {
            return Err(format!("`berth {}` failed", args.join(" ")));
        }
    }
    step("a refusal: check validates everything and exits non-zero, one line per failure");
    if cli(&["check"])? {
        return Err("berth check accepted a truncated library".to_owned());
    }
    println!("\n(berth check exited non-zero, as it should: broken-copy is refused, every other plugin still loads)");
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to).map(drop).map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}
