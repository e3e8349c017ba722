//! `berth check`: one line per failure, a summary, and `--host-api`.

use std::process::ExitCode;

use berth::{Host, LoadFailure, LoadReport};

use crate::output::print_json;

pub(crate) fn check(
    host: &Host,
    report: &LoadReport,
    verbose: bool,
    host_api: Option<&semver::Version>,
    json: bool,
) -> Result<ExitCode, String> {
    let verdicts = host_api.map(|version| (version, host.would_load_on(version)));
    let mut summary = berth::json::Check::new(report);
    if let Some((version, verdicts)) = &verdicts {
        summary = summary.with_host_api(version, verdicts);
    }
    let code = if summary.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    if json {
        print_json(&summary)?;
        return Ok(code);
    }
    for failure in &report.failures {
        say!("FAIL {failure}");
        if verbose {
            print_details(failure);
        }
    }
    if let Some((version, verdicts)) = &verdicts {
        for (status, verdict) in verdicts {
            match verdict {
                Ok(()) => say!("ok   {} {} would load on plugin-api {version}", status.name, status.version),
                Err(reason) => say!("FAIL {} {} on plugin-api {version}: {reason}", status.name, status.version),
            }
        }
        let loads = verdicts.iter().filter(|(_, verdict)| verdict.is_ok()).count();
        say!("{loads} of {} plugin(s) would load on plugin-api {version}", verdicts.len());
    }
    let unreadable = match summary.unreadable_dirs {
        0 => String::new(),
        1 => "; 1 plugin directory unreadable".to_owned(),
        n => format!("; {n} plugin directories unreadable"),
    };
    say!(
        "{} manifest(s) checked against plugin-api {}: {} loaded, {} disabled, {} failed{unreadable}",
        summary.checked,
        summary.host_api,
        summary.loaded,
        summary.disabled,
        summary.failed,
    );
    Ok(code)
}

pub(crate) fn print_details(failure: &LoadFailure) {
    let details = failure.error.details();
    if details != failure.error.to_string() {
        for line in details.lines() {
            say!("     {line}");
        }
    }
}
