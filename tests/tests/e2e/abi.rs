//! The ABI rules, against plugins built for real against modified copies of plugin-api: an older and a newer
//! minor load, another major and a changed layout are refused with a one-line reason.

use berth::ext::text_filter::TextFilterV1;
use berth::{CallError, LoadError};
use berth_tests::{ApiVariant, Layout};

/// Lays out the probe plugin of `variant` and loads it; returns the report.
fn load(variant: ApiVariant) -> berth::LoadReport {
    let layout = Layout::new();
    layout.add_api_variant(variant);
    layout.host().load_all()
}

#[test]
fn a_plugin_built_against_an_older_minor_loads_and_lacks_newer_extensions() {
    let layout = Layout::new();
    layout.add_api_variant(ApiVariant::Older);
    let host = layout.host();
    let report = host.load_all();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let probe = host.plugin(ApiVariant::Older.plugin()).unwrap();
    assert_eq!(probe.call_json::<_, String>("api", &()).unwrap(), "1.0.0");
    match probe.extension::<TextFilterV1>() {
        Err(CallError::Extension { id, reason, .. }) => {
            assert_eq!(id, "berth.text-filter/1");
            assert!(reason.contains("not provided"), "{reason}");
        }
        Err(other) => panic!("expected an Extension error, got {other}"),
        Ok(_) => panic!("a 1.0 plugin cannot provide a 1.1 extension"),
    }
}

#[test]
fn a_plugin_built_against_a_newer_minor_loads() {
    let report = load(ApiVariant::NewerMinor);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.loaded.len(), 1);
}

#[test]
fn a_major_mismatch_is_refused_naming_both_versions() {
    let report = load(ApiVariant::NextMajor);
    assert_eq!(report.failures.len(), 1);
    let failure = &report.failures[0];
    match &failure.error {
        LoadError::IncompatibleApi { library_api, host_api, needed } => {
            assert_eq!(
                (library_api.as_str(), host_api.as_str(), needed.as_str()),
                ("2.0.0", berth::HOST_API_VERSION, "1.x")
            );
        }
        other => panic!("expected IncompatibleApi, got {other}"),
    }
    let message = failure.to_string();
    assert!(message.contains("plugin-api 2.0.0 is incompatible with this host's 1.3.0 (needs 1.x)"), "{message}");
}

#[test]
fn a_changed_layout_is_refused_with_a_one_line_summary() {
    let report = load(ApiVariant::ChangedLayout);
    assert_eq!(report.failures.len(), 1);
    let failure = &report.failures[0];
    let LoadError::AbiMismatch { summary, details } = &failure.error else {
        panic!("expected AbiMismatch, got {}", failure.error);
    };
    let message = failure.to_string();
    assert!(!message.contains('\n'), "the summary must be one line: {message}");
    assert!(message.contains("layout differs"), "{message}");
    assert!(
        summary.contains("variants") || summary.contains("HealthStatus") || summary.contains("health"),
        "{summary}"
    );
    assert!(details.lines().count() > 20, "the full report is kept for --verbose");
    assert_eq!(failure.error.details(), *details);
}

/// Issue 11: a plugin built with `panic = "abort"` is refused before it is opened, saying why and how to
/// rebuild; a plugin built before the build facts existed (1.0, above) loads as before.
#[test]
fn a_plugin_built_with_panic_abort_is_refused_with_rebuild_advice() {
    let report = load(ApiVariant::PanicAbort);
    assert_eq!(report.failures.len(), 1, "{:?}", report.loaded);
    let error = &report.failures[0].error;
    assert!(matches!(error, LoadError::PanicAbort { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("was built with panic = \"abort\", so its first panic would end this host"), "{message}");
    assert!(message.contains("rebuild it with panic = \"unwind\""), "{message}");
}

/// Issue 12: `would_load_on` answers with a typed reason a program can match on.
#[test]
fn would_load_on_says_why_with_a_typed_reason() {
    let layout = Layout::new();
    layout.add_example("greeter");
    let host = layout.host();
    host.load_all();
    let verdicts = host.would_load_on(&berth::Version::new(2, 0, 0));
    assert_eq!(verdicts.len(), 1);
    match &verdicts[0].1 {
        Err(berth::WouldNotLoad::ApiRequirement { required, host }) => {
            assert_eq!((required.as_str(), host.as_str()), ("^1.0", "2.0.0"))
        }
        other => panic!("expected ApiRequirement, got {other:?}"),
    }
    assert!(host.would_load_on(&berth::Version::new(1, 9, 0))[0].1.is_ok());
}

/// Issue 12: `inspect_library` keeps its errors typed: a cache it cannot use is a `HostError`, a refused
/// library a `LoadError`.
#[cfg(unix)]
#[test]
fn inspect_library_errors_are_typed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let open_cache = dir.path().join("cache");
    std::fs::create_dir(&open_cache).unwrap();
    std::fs::set_permissions(&open_cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    let error = berth::inspect_library(&berth_tests::library("greeter"), &open_cache).unwrap_err();
    assert!(matches!(error, berth::InspectError::Cache(berth::HostError::Cache { .. })), "{error:?}");
    let text = dir.path().join("libtext.so");
    std::fs::write(&text, "not a library").unwrap();
    let error = berth::inspect_library(&text, &dir.path().join("private")).unwrap_err();
    assert!(matches!(error, berth::InspectError::Library(berth::LoadError::NotSharedLibrary { .. })), "{error:?}");
}
