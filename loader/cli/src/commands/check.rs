//! `berth check`: one line per failure, a summary, and `--host-api`.

use std::process::ExitCode;

use berth::{Host, LoadFailure, LoadReport};

pub(crate) fn check(host: &Host, report: &LoadReport, verbose: bool, host_api: Option<&semver::Version>) -> ExitCode {
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

pub(crate) fn print_details(failure: &LoadFailure) {
    let details = failure.error.details();
    if details != failure.error.to_string() {
        for line in details.lines() {
            say!("     {line}");
        }
    }
}
