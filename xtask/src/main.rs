//! `cargo xtask`: the project's own tasks (alias in `.cargo/config.toml`). With no arguments it prints help.
//!
//! - `demo`: builds the example plugins and the `berth` CLI, lays the plugins out as ops would, loads them,
//!   calls them, shows a refusal and a live reload ([`demo`]).
//! - `bundle [PLUGIN...] [--out DIR] [--key FILE]`: builds plugins in release and packs each into a bundle,
//!   `<name>-<version>-<target>.tar.gz`, signed when given a key; unchanged sources give byte-identical
//!   bundles.
//! - `sign BUNDLE --key FILE`: signs the library in a bundle, for the plugin, version and target the bundle
//!   is for.
//! - `keygen [--out DIR]`: writes a minisign key pair without a password, `berth.key` and `berth.pub`, for
//!   CI.
//!
//! `bundle`, `sign`, `keygen` and `new-plugin` run the plugin authors' library, `berth_author`, which
//! `cargo berth` (loader/author) ships to authors outside this repository.
//! - `bench [--quick]`: runs the benchmark suite against optimised plugins and prints the table of
//!   BENCHMARKS.md ([`bench`]).
//! - `new-plugin NAME`: scaffolds a plugin crate and its manifest, and adds the crate to the workspace
//!   ([`scaffold`]).
#![forbid(unsafe_code)]

mod bench;
mod demo;
mod scaffold;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use berth::PluginName;
use berth_author::{Workspace, cli};
use clap::{Parser, Subcommand};

/// Berth's development tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the example plugins, lay them out as ops would, load them, call them, show a refusal and a live
    /// reload.
    Demo,
    /// Build plugins in release and pack each into a bundle (`<name>-<version>-<target>.tar.gz`).
    Bundle {
        /// The plugins to bundle; every plugin under plugins/ that has a manifest in manifests/ when left out.
        #[arg(value_name = "PLUGIN", value_parser = PluginName::new)]
        plugins: Vec<PluginName>,
        #[command(flatten)]
        options: cli::BundleOptions,
    },
    Sign(cli::Sign),
    Keygen(cli::Keygen),
    /// Run the benchmarks (tests/benches) against optimised plugins and print the table of BENCHMARKS.md.
    Bench {
        /// Fewer, shorter samples (criterion's --quick; 3 load samples, 21 reloads): a quick look, not figures
        /// to publish.
        #[arg(long)]
        quick: bool,
        /// Measure nothing: print the table of the figures the last runs left in target/.
        #[arg(long, conflicts_with = "quick")]
        table_only: bool,
    },
    /// Scaffold a plugin: plugins/NAME (crate), manifests/NAME.toml, and a workspace member entry.
    NewPlugin {
        /// The plugin's name, which is also its crate's name.
        #[arg(value_parser = PluginName::new)]
        name: PluginName,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Demo => demo::demo(),
        Task::Bundle { plugins, options } => bundle(&plugins, &options),
        Task::Sign(sign) => sign.run().map_err(|e| e.to_string()),
        Task::Keygen(keygen) => keygen.run().map_err(|e| e.to_string()),
        Task::NewPlugin { name } => scaffold::new_plugin(&name),
        Task::Bench { quick, table_only } => bench::bench(quick, table_only),
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

/// Where cargo, run in the workspace root, puts what it builds: `CARGO_TARGET_DIR` when set (relative to the
/// root), else `target` in the root.
fn target_dir(root: &Path) -> PathBuf {
    root.join(env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()))
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

/// Builds `plugins` (every plugin crate of the workspace when empty: a crate with a manifest in `manifests/`)
/// in release and writes a bundle of each, as `options` say.
fn bundle(plugins: &[PluginName], options: &cli::BundleOptions) -> Result<(), String> {
    let workspace = Workspace::open(Some(&root().join("Cargo.toml"))).map_err(|e| e.to_string())?;
    let plugins = match plugins {
        [] => workspace.plugins(),
        names => names
            .iter()
            .map(|name| workspace.plugin(Some(name.as_str())))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?,
    };
    options.run(&workspace, &plugins).map_err(|e| e.to_string())
}
