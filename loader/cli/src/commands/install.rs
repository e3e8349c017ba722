//! `berth install`, `berth verify`, `berth enable` and `berth disable`: the files in the plugin directories, no host.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use berth::HostConfig;

use crate::output::{LIST_HINT, print_json};
use berth::install::{self, Verification};

use super::info::print_library;

/// `berth install`: verify, then put in place.
pub(crate) fn install(
    config: &HostConfig,
    bundle: &Path,
    to: Option<&Path>,
    pin: bool,
    json: bool,
) -> Result<ExitCode, String> {
    let dir = to.or(config.plugin_dirs.first().map(PathBuf::as_path)).ok_or("no plugin directory: pass --to DIR")?;
    let installed = install::install(bundle, dir, config, pin).map_err(|e| e.to_string())?;
    if json {
        print_json(&berth::json::Install::from(&installed))?;
        return Ok(ExitCode::SUCCESS);
    }
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
pub(crate) fn verify(config: &HostConfig, target: &str, json: bool) -> Result<ExitCode, String> {
    // A plugin name has no dots or slashes: anything else (or anything that exists) is a bundle's path.
    let verification = if berth::PluginName::new(target).is_err() || Path::new(target).exists() {
        install::verify_bundle(Path::new(target), config)
    } else {
        install::verify_installed(target, config)
    };
    let verification = verification.map_err(install_message)?;
    if json {
        print_json(&berth::json::Verified::from(&verification))?;
        return Ok(ExitCode::SUCCESS);
    }
    print_verification(&verification);
    say!("verified: it passes every check a host with this configuration makes before it creates the plugin");
    Ok(ExitCode::SUCCESS)
}

/// An install error as the CLI prints it: with the command that lists the plugins where a name is unknown.
pub(crate) fn install_message(error: install::InstallError) -> String {
    match error {
        install::InstallError::UnknownPlugin { .. } => format!("{error}; {LIST_HINT}"),
        error => error.to_string(),
    }
}

pub(crate) fn print_verification(verification: &Verification) {
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
pub(crate) fn set_enabled(config: &HostConfig, name: &str, enabled: bool) -> Result<ExitCode, String> {
    let (path, changed) = install::set_enabled(name, enabled, config).map_err(install_message)?;
    let state = if enabled { "enabled" } else { "disabled" };
    if changed {
        say!("{name}: {state} in {}; a running host applies it now", path.display());
    } else {
        say!("{name}: already {state} in {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
