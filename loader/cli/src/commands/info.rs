//! `berth info`: a plugin, or a library file on its own.

use std::path::Path;
use std::process::ExitCode;

use berth::{Host, LoadReport, PluginStatus};

use crate::output::{LIST_HINT, print_json};

pub(crate) fn info(host: &Host, report: &LoadReport, target: &str, json: bool) -> Result<ExitCode, String> {
    let path = Path::new(target);
    let by_manifest = |status: &&PluginStatus| path.is_file() && same_file(&status.manifest, path);
    let statuses = host.plugins();
    let Some(status) =
        statuses.iter().find(|s| s.name.as_str() == target).or_else(|| statuses.iter().find(by_manifest))
    else {
        if let Some(failure) = report.failures.iter().find(|f| same_file(&f.manifest, path)) {
            if json {
                print_json(&berth::json::Info::failed(failure))?;
                return Ok(ExitCode::FAILURE);
            }
            say!("manifest: {}\nstate:    failed\nreason:   {}", failure.manifest.display(), failure.error);
            return Ok(ExitCode::FAILURE);
        }
        return Err(format!("no plugin named {target:?} and no such library or manifest; {LIST_HINT}"));
    };
    let serving = status.generation.is_some() && status.library.is_some();
    let health = if serving { host.plugin(status.name.as_str()).and_then(|h| h.health()).ok() } else { None };
    if json {
        print_json(&berth::json::Info::plugin(status, health.as_ref()))?;
        return Ok(ExitCode::SUCCESS);
    }
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
            "generation: {generation} ({} retired; {} retired image(s) mapped, {} bytes)",
            status.retired_generations,
            status.retired_images,
            status.retired_bytes
        );
        if let Some(limit) = status.max_concurrent_calls {
            say!(
                "calls:      {} in flight of {limit} allowed; {} refused as overloaded",
                status.in_flight,
                status.overloaded
            );
        }
        if let Some(rate) = status.calls_per_second {
            say!("rate:       {rate} calls a second; {} refused as rate-limited", status.rate_limited);
        }
        if let Some(breaker) = &status.breaker {
            match breaker.retry_in {
                None => say!("breaker:    {}", breaker.state),
                Some(left) => {
                    say!("breaker:    {} (probe in {:.1} s): {}", breaker.state, left.as_secs_f64(), breaker.reason)
                }
            }
        }
        if let Some(timeout) = status.call_timeout {
            say!(
                "deadline:   call_timeout {} ms; {} stuck past it now; {} timed out",
                timeout.as_millis(),
                status.stuck,
                status.timeouts
            );
        }
        if let Some(report) = &status.health {
            say!(
                "checks:     {} failed in a row; the latest {} of {}:",
                report.failing,
                report.history.len().min(5),
                report.history.len()
            );
            for check in report.history.iter().rev().take(5) {
                let at = check.at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let outcome = if check.passed { "passed" } else { "failed" };
                let detail = if check.detail.is_empty() { String::new() } else { format!(": {}", check.detail) };
                say!("            {outcome} in {} ms at unix {} s{detail}", check.took.as_millis(), at.as_secs());
            }
        }
        say!("sha256:     {sha256}");
        print_library(library);
        if let Some(trust) = &status.trust {
            say!("trust:      {trust}");
        }
        if let Some(health) = health {
            let detail = if health.detail.is_empty() { String::new() } else { format!(" ({})", health.detail) };
            say!("health:     {:?}{detail}", health.status);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn inspect(path: &Path, cache_dir: &Path, json: bool) -> Result<ExitCode, String> {
    let library = berth::inspect_library(path, cache_dir).map_err(|e| e.to_string())?;
    if json {
        print_json(&berth::json::Info::library(path, &library))?;
        return Ok(ExitCode::SUCCESS);
    }
    say!("file:       {}", path.display());
    say!("name:       {}", library.name);
    say!("version:    {}", library.version);
    print_library(&library);
    say!("host api:   {} (compatible: the version and layout checks passed)", berth::HOST_API_VERSION);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_library(library: &berth::LibraryInfo) {
    say!("api:        berth-plugin-api {}", library.api_version);
    say!("built by:   {} for {} ({})", library.rustc, library.target, library.profile);
}

pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
