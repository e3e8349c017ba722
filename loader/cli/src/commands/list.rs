//! `berth list`: the status table, or JSON.

use std::process::ExitCode;

use berth::{Host, LoadReport, PluginStatus};

use crate::output::{print_json, print_table};

pub(crate) fn list(host: &Host, report: &LoadReport, json: bool) -> Result<ExitCode, String> {
    let statuses = host.plugins();
    if json {
        print_json(&berth::json::List::new(&statuses, report))?;
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

pub(crate) fn detail(status: &PluginStatus) -> String {
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
