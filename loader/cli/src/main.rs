//! `berth`: the operator's command-line tool. A thin binary over the `berth` library: the only code in the
//! project that reads argv or prints.
#![forbid(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use berth::{Host, HostConfig, Overrides, TrustPolicy, TrustedKey};
use clap::{CommandFactory, Parser, Subcommand};

#[macro_use]
mod output;
mod commands;

use commands::{call, check, info, install as installing, list, run as running};
use output::write_generated;

/// Load, check and call native Berth plugins.
#[derive(Parser)]
#[command(name = "berth", version, about, long_about = None)]
struct Cli {
    /// A plugin directory (repeatable). Overrides BERTH_PLUGIN_PATH and the config file.
    #[arg(long = "plugin-dir", global = true, value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,
    /// A host configuration file (`plugin_dirs`, `cache_dir`, `data_dir`, `[reload]`, `[trust]`). Default: the
    /// first of $XDG_CONFIG_HOME/berth/config.toml (~/.config/berth/config.toml) and /etc/berth/config.toml.
    #[arg(long, global = true, env = "BERTH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where verified private copies of libraries are kept (mode 0700).
    #[arg(long, global = true, env = "BERTH_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Where the highest accepted version of each plugin is recorded (mode 0700).
    #[arg(long, global = true, env = "BERTH_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// What a library without a signature by a trusted key gets: enforce (refused), warn (loaded, marked
    /// untrusted), off. Overrides the config file.
    #[arg(long, global = true, env = "BERTH_TRUST_POLICY", value_name = "POLICY")]
    trust_policy: Option<TrustPolicy>,
    /// A trusted minisign public key: a .pub file or its RW... line (repeatable; added to the config file's).
    #[arg(long = "trusted-key", global = true, value_name = "KEY")]
    trusted_keys: Vec<String>,
    /// Accept plugin files and directories that group or others can write. For development machines only.
    #[arg(long, global = true, env = "BERTH_INSECURE_PERMISSIONS", value_parser = strict_bool)]
    insecure_permissions: bool,
    /// Log level of the host's own log on stderr (error, warn, info, debug, trace), or tracing filter
    /// directives (warn,berth::plugin=debug).
    #[arg(long, global = true, env = "BERTH_LOG", default_value = "error", value_parser = log_filter)]
    log: String,
    /// Colour in the log on stderr: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load every plugin and show a status table.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Load every plugin; print one line per failure and exit non-zero if anything failed.
    Check {
        /// Print abi_stable's full layout report under a layout failure.
        #[arg(long, short)]
        verbose: bool,
        /// Also tell, for each plugin, whether it would load on a host built against this plugin-api version.
        #[arg(long, value_name = "VERSION")]
        host_api: Option<semver::Version>,
        /// Print JSON (berth::json, schema 1) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Verify a bundle completely, then install it as PLUGIN_DIR/NAME in one atomic step (a running host
    /// reloads it). An interrupted install leaves the installed version in place.
    Install {
        /// The bundle (NAME-VERSION-TARGET.tar.gz, from `cargo berth bundle`).
        bundle: PathBuf,
        /// The plugin directory to install into (default: the first configured one).
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
        /// Allow an older version than the one installed or accepted, and pin it in its manifest.
        #[arg(long)]
        pin: bool,
        /// Print JSON (berth::json, schema 1) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a bundle, or an installed plugin by name, as a host would before loading it.
    Verify {
        /// A bundle file or an installed plugin's name.
        target: String,
        /// Print JSON (berth::json, schema 1) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to standard output.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to standard output: `berth man > berth.1`.
    Man,
    /// Set `enabled = true` in a plugin's manifest (comments and layout kept).
    Enable {
        /// The plugin's name.
        name: String,
    },
    /// Set `enabled = false` in a plugin's manifest (comments and layout kept); a running host stops it.
    Disable {
        /// The plugin's name.
        name: String,
    },
    /// Call METHOD of PLUGIN with INPUT (JSON; `-` reads standard input; default `{}`).
    Call {
        /// The plugin's name.
        plugin: String,
        /// The method.
        method: String,
        /// The input.
        input: Option<String>,
    },
    /// Show everything known about a plugin (by name) or a library or manifest file (by path).
    Info {
        /// A plugin name, a library path or a manifest path.
        target: String,
        /// Print JSON (berth::json, schema 1) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Keep the host running, watching the plugin directories and hot-reloading what changes; print every
    /// lifecycle event. Ctrl-C or SIGTERM shuts the plugins down (dependents first) and exits.
    Run {
        /// Call a plugin repeatedly while running and print each answer: "PLUGIN METHOD [INPUT]".
        #[arg(long, value_name = "CALL")]
        call: Option<String>,
        /// How often --call calls (e.g. 250ms, 1s).
        #[arg(long, default_value = "1s", value_parser = berth::config::parse_duration)]
        every: Duration,
        /// Print one JSON document per line (berth::json::EventLine, schema 1) instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(cli.color.on_stderr())
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .init();
    match run(&cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("berth: {message}");
            ExitCode::FAILURE
        }
    }
}

/// When the log on stderr is coloured.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Color {
    /// On a terminal, unless `NO_COLOR` is set to anything but the empty string (no-color.org).
    Auto,
    Always,
    Never,
}

impl Color {
    fn on_stderr(self) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::IsTerminal::is_terminal(&io::stderr())
                    && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
            }
        }
    }
}

/// A `--log` value that `tracing` reads; anything else is a usage error, never a silent default.
fn log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(value).map(|_| value.to_owned()).map_err(|e| {
        format!("{e}; give a level (error, warn, info, debug, trace) or tracing filter directives such as warn,berth::plugin=debug")
    })
}

/// A boolean environment variable's value: `true` or `false`, nothing else (`1`, `yes` or a typo is a usage
/// error, never a silent `true`).
fn strict_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("{other:?} is neither true nor false; set BERTH_INSECURE_PERMISSIONS to true or false")),
    }
}

/// The host configuration the flags (and the environment variables clap reads for them) describe; the
/// precedence itself is the library's (`HostConfig::resolve`).
fn host_config(cli: &Cli) -> Result<HostConfig, String> {
    let mut overrides = Overrides::default();
    overrides.config_file = cli.config.clone();
    overrides.plugin_dirs = cli.plugin_dirs.clone();
    overrides.cache_dir = cli.cache_dir.clone();
    overrides.data_dir = cli.data_dir.clone();
    overrides.trust_policy = cli.trust_policy;
    overrides.insecure_permissions = cli.insecure_permissions;
    for key in &cli.trusted_keys {
        let parsed = TrustedKey::from_config(key, Path::new("."));
        overrides.trusted_keys.push(parsed.map_err(|e| format!("--trusted-key {key}: {e}"))?);
    }
    HostConfig::resolve(overrides).map_err(|e| e.to_string())
}

fn run(cli: &Cli) -> Result<ExitCode, String> {
    // Generated from the clap definitions; they need no configuration.
    match &cli.command {
        Command::Completions { shell } => {
            return write_generated(|out| {
                clap_complete::generate(*shell, &mut Cli::command(), "berth", out);
                Ok(())
            });
        }
        Command::Man => return write_generated(|out| clap_mangen::Man::new(Cli::command()).render(out)),
        _ => {}
    }
    let config = host_config(cli)?;
    if let Command::Info { target, json } = &cli.command {
        let path = Path::new(target);
        if path.is_file() && path.extension().is_none_or(|ext| ext != "toml") {
            return info::inspect(path, &config.cache_dir, *json);
        }
    }
    match &cli.command {
        Command::Install { bundle, to, pin, json } => {
            return installing::install(&config, bundle, to.as_deref(), *pin, *json);
        }
        Command::Verify { target, json } => return installing::verify(&config, target, *json),
        Command::Enable { name } => return installing::set_enabled(&config, name, true),
        Command::Disable { name } => return installing::set_enabled(&config, name, false),
        _ => {}
    }
    if let Command::Run { call, every, json } = &cli.command {
        return running::run_host(config, call.as_deref(), *every, *json);
    }
    let host = Host::builder(config).isolator(isolator()).build().map_err(|e| e.to_string())?;
    // Deadlines and health checks are watched from the first load on, as in `berth run`.
    let _supervisor = berth_runtime::Supervisor::start(&host).map_err(|e| format!("cannot start supervision: {e}"))?;
    let report = host.load_all();
    match &cli.command {
        Command::List { json } => list::list(&host, &report, *json),
        Command::Check { verbose, host_api, json } => check::check(&host, &report, *verbose, host_api.as_ref(), *json),
        Command::Call { plugin, method, input } => call::call(&host, plugin, method, input.as_deref()),
        Command::Info { target, json } => info::info(&host, &report, target, *json),
        _ => unreachable!("handled above"),
    }
}

/// Starts isolated plugins' workers: `berth-worker` from `[isolation] worker`, `BERTH_WORKER`, or next to `berth`.
pub(crate) fn isolator() -> std::sync::Arc<dyn berth::isolation::Isolator> {
    std::sync::Arc::new(berth_isolate::ProcessIsolator::new())
}
