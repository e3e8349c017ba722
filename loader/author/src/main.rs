//! `cargo berth`: the plugin author's tools, in any crate that depends on `berth-plugin-api`.
//!
//! Install with `cargo install --path loader/author` from a checkout of Berth; cargo then runs
//! `cargo-berth berth ARGS` for `cargo berth ARGS`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use berth::PluginName;
use berth_author::{ApiDependency, Error, HOST_TARGET, NewPlugin, Workspace, cli, scaffold};
use clap::{Parser, Subcommand};

/// What cargo runs: `cargo-berth berth ...`.
#[derive(Parser)]
#[command(name = "cargo", bin_name = "cargo")]
enum Cargo {
    Berth(Berth),
}

/// Berth's tools for plugin authors: scaffold a plugin crate, make a signing key, build and sign bundles.
#[derive(clap::Args)]
#[command(version, arg_required_else_help = true)]
struct Berth {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a plugin crate, NAME/ (Cargo.toml, src/lib.rs, .gitignore) and its manifest NAME/NAME.toml,
    /// which builds, passes its tests and bundles at once.
    New {
        /// The plugin's name, which is also its crate's name and directory.
        #[arg(value_parser = PluginName::new)]
        name: PluginName,
        /// Depend on the plugin-api crate in this directory (a checkout's `plugin-api`) [default: the one this
        /// tool was built from, when it is still there; else berth-plugin-api from the registry].
        #[arg(long, value_name = "DIR")]
        plugin_api: Option<PathBuf>,
    },
    /// Build the plugin crate in release and pack it into a bundle, `<name>-<version>-<target>.tar.gz`.
    Bundle {
        /// The plugin crate's Cargo.toml [default: the one cargo finds from the current directory].
        #[arg(long, value_name = "PATH")]
        manifest_path: Option<PathBuf>,
        /// The plugin crate to bundle, in a workspace of several.
        #[arg(short, long, value_name = "NAME", conflicts_with = "all")]
        package: Option<String>,
        /// Bundle every plugin crate in the workspace.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        options: cli::BundleOptions,
    },
    Sign(cli::Sign),
    Keygen(cli::Keygen),
}

fn main() -> ExitCode {
    let Cargo::Berth(berth) = Cargo::parse();
    match run(berth.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::New { name, plugin_api } => {
            let api = match plugin_api.or_else(built_from) {
                Some(dir) => ApiDependency::Path(dir.canonicalize().unwrap_or(dir)),
                None => ApiDependency::Version(berth::HOST_API_VERSION.to_owned()),
            };
            let plugin = NewPlugin::standalone(name.clone(), PathBuf::from(name.as_str()), api);
            println!("{}", scaffold::new_plugin(&plugin)?);
            println!("\nnext:\n  cd {name}\n  cargo test\n  cargo berth keygen --out keys");
            println!("  cargo berth bundle --key keys/berth.key");
            println!("  berth install target/bundles/{name}-{}-{HOST_TARGET}.tar.gz", scaffold::VERSION);
        }
        Command::Bundle { manifest_path, package, all, options } => {
            let workspace = Workspace::open(manifest_path.as_deref())?;
            let plugins = if all { workspace.plugins() } else { vec![workspace.plugin(package.as_deref())?] };
            options.run(&workspace, &plugins)?;
        }
        Command::Sign(sign) => sign.run()?,
        Command::Keygen(keygen) => keygen.run()?,
    }
    Ok(())
}

/// The plugin-api crate of the checkout this tool was built from, while it is still there.
fn built_from() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugin-api"));
    dir.join("Cargo.toml").is_file().then_some(dir)
}
