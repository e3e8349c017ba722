//! `berth`: the operator's command-line tool. A thin binary over the `berth` library: the only code in the
//! project that reads argv or prints.
#![forbid(unsafe_code)]

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use berth::install::{self, Verification};
use berth::{Host, HostConfig, LoadFailure, LoadReport, Overrides, PluginStatus, TrustPolicy, TrustedKey};
use clap::{CommandFactory, Parser, Subcommand};

/// `println!` that ends the command quietly when its output is closed (`berth list | head -1`), as ripgrep does,
/// instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout(), $($arg)*) {
            output_failed(error);
        }
    }};
}

/// A write to stdout failed: a closed pipe ends the command with success and no word, anything else with the
/// error.
fn output_failed(error: io::Error) -> ! {
    if error.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("berth: cannot write the output: {error}");
    std::process::exit(1)
}

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
    },
    /// Verify a bundle completely, then install it as PLUGIN_DIR/NAME in one atomic step (a running host
    /// reloads it). An interrupted install leaves the installed version in place.
    Install {
        /// The bundle (NAME-VERSION-TARGET.tar.gz, from `cargo xtask bundle`).
        bundle: PathBuf,
        /// The plugin directory to install into (default: the first configured one).
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
        /// Allow an older version than the one installed or accepted, and pin it in its manifest.
        #[arg(long)]
        pin: bool,
    },
    /// Check a bundle, or an installed plugin by name, as a host would before loading it.
    Verify {
        /// A bundle file or an installed plugin's name.
        target: String,
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
    },
    /// Keep the host running, watching the plugin directories and hot-reloading what changes; print every
    /// lifecycle event. Ctrl-C or SIGTERM shuts the plugins down (dependents first) and exits.
    Run {
        /// Call a plugin repeatedly while running and print each answer: "PLUGIN METHOD [INPUT]".
        #[arg(long, value_name = "CALL")]
        call: Option<String>,
        /// How often --call calls (e.g. 250ms, 1s).
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        every: Duration,
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
    if let Command::Info { target } = &cli.command {
        let path = Path::new(target);
        if path.is_file() && path.extension().is_none_or(|ext| ext != "toml") {
            return inspect(path, &config.cache_dir);
        }
    }
    match &cli.command {
        Command::Install { bundle, to, pin } => return install(&config, bundle, to.as_deref(), *pin),
        Command::Verify { target } => return verify(&config, target),
        Command::Enable { name } => return set_enabled(&config, name, true),
        Command::Disable { name } => return set_enabled(&config, name, false),
        _ => {}
    }
    let host = Host::new(config).map_err(|e| e.to_string())?;
    if let Command::Run { call, every } = &cli.command {
        return run_host(host, call.as_deref(), *every);
    }
    let report = host.load_all();
    match &cli.command {
        Command::List { json } => list(&host, &report, *json),
        Command::Check { verbose, host_api } => Ok(check(&host, &report, *verbose, host_api.as_ref())),
        Command::Call { plugin, method, input } => call(&host, plugin, method, input.as_deref()),
        Command::Info { target } => info(&host, &report, target),
        _ => unreachable!("handled above"),
    }
}

/// Writes what `generate` makes to standard output (a closed pipe ends quietly).
fn write_generated(generate: impl FnOnce(&mut dyn io::Write) -> io::Result<()>) -> Result<ExitCode, String> {
    let mut out = Vec::new();
    generate(&mut out).map_err(|e| e.to_string())?;
    if let Err(error) = io::Write::write_all(&mut io::stdout(), &out) {
        output_failed(error);
    }
    Ok(ExitCode::SUCCESS)
}

/// `berth install`: verify, then put in place.
fn install(config: &HostConfig, bundle: &Path, to: Option<&Path>, pin: bool) -> Result<ExitCode, String> {
    let dir = to.or(config.plugin_dirs.first().map(PathBuf::as_path)).ok_or("no plugin directory: pass --to DIR")?;
    let installed = install::install(bundle, dir, config, pin).map_err(|e| e.to_string())?;
    print_verification(&installed.verification);
    for key in &installed.kept {
        say!("kept:       `{key}` from the manifest installed before");
    }
    let replaced = installed.replaced.map(|v| format!(", replacing {v}")).unwrap_or_default();
    say!(
        "installed {} {} in {}{replaced}; a running host picks it up now",
        installed.verification.name,
        installed.verification.version,
        installed.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `berth verify BUNDLE|PLUGIN`.
fn verify(config: &HostConfig, target: &str) -> Result<ExitCode, String> {
    // A plugin name has no dots or slashes: anything else (or anything that exists) is a bundle's path.
    let verification = if berth::PluginName::new(target).is_err() || Path::new(target).exists() {
        install::verify_bundle(Path::new(target), config)
    } else {
        install::verify_installed(target, config)
    };
    print_verification(&verification.map_err(install_message)?);
    say!("verified: it passes every check a host with this configuration makes before it creates the plugin");
    Ok(ExitCode::SUCCESS)
}

/// An install error as the CLI prints it: with the command that lists the plugins where a name is unknown.
fn install_message(error: install::InstallError) -> String {
    match error {
        install::InstallError::UnknownPlugin { .. } => format!("{error}; `berth list` shows the plugins"),
        error => error.to_string(),
    }
}

fn print_verification(verification: &Verification) {
    say!("plugin:     {} {}", verification.name, verification.version);
    say!("sha256:     {}", verification.sha256);
    say!("trust:      {}", verification.trust);
    match &verification.library {
        Some(library) => print_library(library),
        None => say!(
            "abi:        not checked: berth runs no library that is not signed by a trusted key before a host loads it"
        ),
    }
}

/// `berth enable|disable NAME`.
fn set_enabled(config: &HostConfig, name: &str, enabled: bool) -> Result<ExitCode, String> {
    let (path, changed) = install::set_enabled(name, enabled, config).map_err(install_message)?;
    let state = if enabled { "enabled" } else { "disabled" };
    if changed {
        say!("{name}: {state} in {}; a running host applies it now", path.display());
    } else {
        say!("{name}: already {state} in {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `berth run`: load, watch, print events (and the answers of `--call`) until Ctrl-C or SIGTERM.
fn run_host(host: Host, call: Option<&str>, every: Duration) -> Result<ExitCode, String> {
    let host = std::sync::Arc::new(host);
    let call = call.map(parse_call).transpose()?;
    let events = host.subscribe();
    let printer = std::thread::spawn(move || {
        for event in events {
            say!("event: {event}");
        }
    });
    let report = host.load_all();
    for failure in report.failures.iter().filter(|f| f.plugin.is_none()) {
        say!("event: {failure}");
    }
    let watcher = host.watch().map_err(|e| e.to_string())?;
    let dirs: Vec<String> = host.config().plugin_dirs.iter().map(|d| d.display().to_string()).collect();
    say!("berth: serving, watching {}; Ctrl-C or SIGTERM stops", dirs.join(", "));
    // The calls run on a thread of their own: a slow plugin must never keep the signal from being handled.
    // Dropping `stop` ends the caller's wait at once, however long `--every` is.
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let caller = call.map(|(plugin, method, input)| {
        let host = host.clone();
        std::thread::spawn(move || {
            loop {
                // Looked up every time: the plugin may be installed after `run` started.
                match host.plugin(&plugin).and_then(|handle| handle.call(&method, input.as_bytes())) {
                    Ok(output) => say!("call {plugin} {method}: {}", String::from_utf8_lossy(&output)),
                    Err(error) => say!("call {plugin} {method}: error: {error}"),
                }
                if stopped.recv_timeout(every) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                    return;
                }
            }
        })
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(stop_signal())?;
    // A second Ctrl-C or SIGTERM while plugins shut down exits at once.
    runtime.spawn(async {
        if stop_signal().await.is_ok() {
            eprintln!("berth: second signal, exiting without waiting for plugins to shut down");
            std::process::exit(130);
        }
    });
    drop(stop);
    if let Some(caller) = caller {
        let _ = caller.join();
    }
    say!("berth: stopping");
    drop(watcher);
    host.shutdown();
    drop(host);
    let _ = printer.join();
    say!("berth: stopped");
    Ok(ExitCode::SUCCESS)
}

/// "PLUGIN METHOD [INPUT]" (INPUT is JSON, `{}` when left out).
fn parse_call(text: &str) -> Result<(String, String, String), String> {
    let mut parts = text.trim().splitn(3, char::is_whitespace);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(plugin), Some(method), input) if !plugin.is_empty() => {
            let input = input.map_or("{}", str::trim).to_owned();
            serde_json::from_str::<serde_json::Value>(&input).map_err(|e| format!("--call INPUT is not JSON: {e}"))?;
            Ok((plugin.to_owned(), method.to_owned(), input))
        }
        _ => Err(format!("--call {text:?}: expected \"PLUGIN METHOD [INPUT]\"")),
    }
}

/// Waits for Ctrl-C, or SIGTERM on Unix.
async fn stop_signal() -> Result<(), String> {
    let ctrl_c = async { tokio::signal::ctrl_c().await.map_err(|e| format!("cannot listen for Ctrl-C: {e}")) };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(|e| format!("cannot listen for SIGTERM: {e}"))?;
        tokio::select! {
            result = ctrl_c => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await
}

fn list(host: &Host, report: &LoadReport, json: bool) -> Result<ExitCode, String> {
    let statuses = host.plugins();
    if json {
        let unnamed: Vec<_> = report
            .failures
            .iter()
            .filter(|f| f.plugin.is_none())
            .map(|f| serde_json::json!({ "manifest": f.manifest, "state": "failed", "reason": f.error.to_string() }))
            .collect();
        let out =
            serde_json::json!({ "host_api": berth::HOST_API_VERSION, "plugins": statuses, "unreadable": unnamed });
        say!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![["NAME", "VERSION", "STATE", "GEN", "API", "DETAIL"].map(str::to_owned)];
    for status in &statuses {
        rows.push([
            status.name.to_string(),
            status.version.clone(),
            status.state.to_string(),
            status.generation.map_or("-".to_owned(), |g| g.to_string()),
            status.library.as_ref().map_or("-".to_owned(), |l| l.api_version.clone()),
            detail(status),
        ]);
    }
    for failure in report.failures.iter().filter(|f| f.plugin.is_none()) {
        rows.push(["-".into(), "-".into(), "failed".into(), "-".into(), "-".into(), failure.to_string()]);
    }
    print_table(&rows);
    Ok(ExitCode::SUCCESS)
}

fn detail(status: &PluginStatus) -> String {
    match (&status.reason, &status.library) {
        (Some(reason), _) => reason.clone(),
        (None, Some(_)) if status.reload_error.is_some() => {
            format!("last reload refused: {}", status.reload_error.as_deref().unwrap_or_default())
        }
        (None, Some(_)) if matches!(status.trust, Some(berth::Trust::Untrusted { .. })) => {
            format!(
                "{} ({})",
                status.manifest.display(),
                status.trust.as_ref().map(ToString::to_string).unwrap_or_default()
            )
        }
        (None, Some(library)) => format!("{} ({}, {})", status.manifest.display(), library.profile, library.rustc),
        (None, None) => status.manifest.display().to_string(),
    }
}

fn print_table(rows: &[[String; 6]]) {
    let mut widths = [0; 6];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:width$}")).collect();
        say!("{}", line.join("  ").trim_end());
    }
}

fn check(host: &Host, report: &LoadReport, verbose: bool, host_api: Option<&semver::Version>) -> ExitCode {
    for failure in &report.failures {
        say!("FAIL {failure}");
        if verbose {
            print_details(failure);
        }
    }
    let mut refused = 0;
    if let Some(version) = host_api {
        let verdicts = host.would_load_on(version);
        for (status, verdict) in &verdicts {
            match verdict {
                Ok(()) => say!("ok   {} {} would load on plugin-api {version}", status.name, status.version),
                Err(reason) => say!("FAIL {} {} on plugin-api {version}: {reason}", status.name, status.version),
            }
        }
        refused = verdicts.iter().filter(|(_, verdict)| verdict.is_err()).count();
        say!("{} of {} plugin(s) would load on plugin-api {version}", verdicts.len() - refused, verdicts.len());
    }
    // A plugin directory that cannot be read is a failure, but not a manifest.
    let dirs = report.failures.iter().filter(|f| matches!(f.error, berth::LoadError::PluginDir { .. })).count();
    let failed = report.failures.len() - dirs;
    let total = report.loaded.len() + report.disabled.len() + failed;
    let unreadable = match dirs {
        0 => String::new(),
        1 => "; 1 plugin directory unreadable".to_owned(),
        n => format!("; {n} plugin directories unreadable"),
    };
    say!(
        "{total} manifest(s) checked against plugin-api {}: {} loaded, {} disabled, {failed} failed{unreadable}",
        berth::HOST_API_VERSION,
        report.loaded.len(),
        report.disabled.len(),
    );
    if report.failures.is_empty() && refused == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn print_details(failure: &LoadFailure) {
    let details = failure.error.details();
    if details != failure.error.to_string() {
        for line in details.lines() {
            say!("     {line}");
        }
    }
}

fn call(host: &Host, plugin: &str, method: &str, input: Option<&str>) -> Result<ExitCode, String> {
    let input = match input {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| format!("cannot read standard input: {e}"))?;
            text
        }
        Some(text) => text.to_owned(),
        None => "{}".to_owned(),
    };
    serde_json::from_str::<serde_json::Value>(&input).map_err(|e| format!("INPUT is not JSON: {e}"))?;
    let handle = host.plugin(plugin).map_err(|e| match e {
        berth::CallError::UnknownPlugin(_) => format!("{e}; `berth list` shows the plugins"),
        e => e.to_string(),
    })?;
    match handle.call(method, input.as_bytes()) {
        Ok(output) => {
            match String::from_utf8(output) {
                Ok(text) => say!("{text}"),
                Err(bytes) => say!("{}", hex_dump(bytes.as_bytes())),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => Err(error.to_string()),
    }
}

fn hex_dump(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn info(host: &Host, report: &LoadReport, target: &str) -> Result<ExitCode, String> {
    let path = Path::new(target);
    let by_manifest = |status: &&PluginStatus| path.is_file() && same_file(&status.manifest, path);
    let statuses = host.plugins();
    let Some(status) =
        statuses.iter().find(|s| s.name.as_str() == target).or_else(|| statuses.iter().find(by_manifest))
    else {
        if let Some(failure) = report.failures.iter().find(|f| same_file(&f.manifest, path)) {
            say!("manifest: {}\nstate:    failed\nreason:   {}", failure.manifest.display(), failure.error);
            return Ok(ExitCode::FAILURE);
        }
        return Err(format!(
            "no plugin named {target:?} and no such library or manifest; `berth list` shows the plugins"
        ));
    };
    say!("name:       {}", status.name);
    say!("version:    {}", status.version);
    say!("state:      {}", status.state);
    say!("manifest:   {}", status.manifest.display());
    if let Some(reason) = &status.reason {
        say!("reason:     {reason}");
    }
    if let Some(error) = &status.reload_error {
        say!("reload:     last reload refused: {error}");
    }
    if let (Some(generation), Some(library), Some(sha256)) = (status.generation, &status.library, &status.sha256) {
        say!(
            "generation: {generation} ({} retired, pinning {} bytes)",
            status.retired_generations,
            status.retired_bytes
        );
        say!("sha256:     {sha256}");
        print_library(library);
        if let Some(trust) = &status.trust {
            say!("trust:      {trust}");
        }
        if let Ok(health) = host.plugin(target).and_then(|h| h.health()) {
            let detail = if health.detail.is_empty() { String::new() } else { format!(" ({})", health.detail) };
            say!("health:     {:?}{detail}", health.status);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(path: &Path, cache_dir: &Path) -> Result<ExitCode, String> {
    let library = berth::inspect_library(path, cache_dir).map_err(|e| e.to_string())?;
    say!("file:       {}", path.display());
    say!("name:       {}", library.name);
    say!("version:    {}", library.version);
    print_library(&library);
    say!("host api:   {} (compatible: the version and layout checks passed)", berth::HOST_API_VERSION);
    Ok(ExitCode::SUCCESS)
}

fn print_library(library: &berth::LibraryInfo) {
    say!("api:        berth-plugin-api {}", library.api_version);
    say!("built by:   {} for {} ({})", library.rustc, library.target, library.profile);
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
