//! Every broken input the load pipeline refuses, each with its exact error variant and the key words of its
//! message, and each beside a good plugin that must still load.

use std::fs;

use berth::{DependencyProblem, LoadError, LoadReport, ManifestError, PluginState};
use berth_tests::{Layout, library, library_file, manifest};

/// Lays out greeter (good) plus whatever `setup` adds, loads, checks greeter is active, and returns the one
/// failure's error and its message.
fn refused(setup: impl FnOnce(&Layout)) -> (LoadError, String) {
    let layout = Layout::new();
    layout.add_example("greeter");
    setup(&layout);
    let host = layout.host();
    let LoadReport { loaded, mut failures, .. } = host.load_all();
    assert_eq!(loaded.iter().map(|n| n.as_str()).collect::<Vec<_>>(), ["greeter"], "the good plugin still loads");
    assert_eq!(
        host.plugin("greeter").unwrap().call_json::<_, String>("greet", &serde_json::json!({"name": "x"})).unwrap(),
        "Hello, x!"
    );
    assert_eq!(failures.len(), 1, "{failures:?}");
    let failure = failures.remove(0);
    let message = failure.to_string();
    if let Some(name) = &failure.plugin {
        let status = host.plugins().into_iter().find(|s| &s.name == name).unwrap();
        assert_eq!(status.state, PluginState::Failed);
        assert_eq!(status.reason.as_deref(), Some(failure.error.to_string().as_str()), "the reason is kept");
    }
    (failure.error, message)
}

fn bad(dir: &str, file: &str, bytes: &[u8]) -> impl FnOnce(&Layout) {
    let (dir, file, bytes) = (dir.to_owned(), file.to_owned(), bytes.to_vec());
    move |layout: &Layout| {
        let path = layout.add_manifest(&dir, &manifest(&dir, "1.0.0", &file, ""));
        fs::write(path.join(&file), bytes).unwrap();
    }
}

#[test]
fn a_library_that_is_not_a_plugin_is_refused() {
    let (error, message) = refused(|l| {
        l.add("plain", &manifest("plain", "1.0.0", "libplain.so", ""), &library("not-a-plugin"), "libplain.so");
    });
    assert!(matches!(error, LoadError::NotAPlugin { .. }), "{error:?}");
    assert!(message.contains("is not a Berth plugin"), "{message}");
}

#[test]
fn a_truncated_library_is_refused_before_it_is_opened() {
    let greeter = fs::read(library("greeter")).unwrap();
    for size in [1024, 4096, greeter.len() / 2, greeter.len() - 1] {
        let (error, message) = refused(bad("cut", "libcut.so", &greeter[..size]));
        match error {
            LoadError::Truncated { size: found, needed, .. } => {
                assert_eq!(found, size as u64);
                assert!(needed > found);
            }
            other => panic!("{size} bytes: expected Truncated, got {other:?}"),
        }
        assert!(message.contains("is truncated"), "{message}");
    }
}

#[test]
fn a_text_file_named_so_is_refused() {
    let (error, message) = refused(bad("text", "libtext.so", b"this is not a library\n"));
    assert!(matches!(error, LoadError::NotSharedLibrary { .. }), "{error:?}");
    assert!(message.contains("text file starting with \"this is not a library"), "{message}");
}

#[test]
fn an_empty_file_is_refused() {
    let (error, message) = refused(bad("empty", "libempty.so", b""));
    assert!(matches!(error, LoadError::NotSharedLibrary { .. }), "{error:?}");
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn a_missing_library_is_refused() {
    let (error, message) = refused(|l| {
        l.add_manifest("gone", &manifest("gone", "1.0.0", "libgone.so", ""));
    });
    assert!(matches!(error, LoadError::LibraryMissing { field: "linux", .. }), "{error:?}");
    assert!(message.contains("[library].linux") && message.contains("does not exist"), "{message}");
}

#[test]
fn a_directory_in_place_of_the_library_is_refused() {
    let (error, message) = refused(|l| {
        let dir = l.add_manifest("dir", &manifest("dir", "1.0.0", "libdir.so", ""));
        fs::create_dir(dir.join("libdir.so")).unwrap();
    });
    assert!(matches!(error, LoadError::NotARegularFile { .. }), "{error:?}");
    assert!(message.contains("is not a regular file"), "{message}");
}

fn manifest_error(text: &str) -> (usize, usize, String) {
    let (error, message) = refused(|l| {
        l.add_manifest("broken", text);
    });
    match error {
        LoadError::Manifest(ManifestError::Invalid { line, column, message: inner, snippet, path }) => {
            assert!(path.ends_with("broken/broken.toml"));
            assert!(message.contains(&format!("broken.toml:{line}:{column}: ")), "{message}");
            assert!(snippet.contains('^'), "a caret points at the span: {snippet}");
            (line, column, inner)
        }
        other => panic!("expected an invalid manifest, got {other:?}"),
    }
}

#[test]
fn a_manifest_syntax_error_names_line_and_column() {
    let (line, _, _) = manifest_error("name = \"broken\"\nversion = \"1.0.0\napi = \"^1\"\n");
    assert_eq!(line, 2);
}

#[test]
fn an_unknown_manifest_key_is_refused() {
    let (line, column, message) = manifest_error(&manifest("broken", "1.0.0", "x.so", "enable = true"));
    assert_eq!((line, column), (4, 1));
    assert!(message.contains("unknown field `enable`"), "{message}");
}

#[test]
fn an_invalid_semver_is_refused() {
    let (line, _, message) = manifest_error(&manifest("broken", "1.0", "x.so", ""));
    assert_eq!(line, 2);
    assert!(message.starts_with("`version`:"), "{message}");
}

#[test]
fn an_invalid_api_requirement_is_refused() {
    let (line, _, message) =
        manifest_error("name = \"broken\"\nversion = \"1.0.0\"\napi = \"one\"\n[library]\nlinux = \"x.so\"\n");
    assert_eq!(line, 3);
    assert!(message.starts_with("`api`:"), "{message}");
}

#[test]
fn a_duplicate_plugin_name_refuses_both_manifests() {
    let layout = Layout::new();
    layout.add_example("greeter");
    let text = berth_tests::example_manifest("greeter");
    layout.add("greeter-copy", &text, &library("greeter"), &library_file("greeter"));
    let host = layout.host();
    let report = host.load_all();
    assert!(report.loaded.is_empty());
    assert_eq!(report.failures.len(), 2);
    // A rescan (as the watcher does) does not pick one of them either.
    assert!(host.load_all().loaded.is_empty(), "neither manifest may win on a rescan");
    for failure in &report.failures {
        assert!(
            matches!(&failure.error, LoadError::DuplicateName { name, .. } if name.as_str() == "greeter"),
            "{failure}"
        );
        assert!(failure.to_string().contains("is also declared by"), "{failure}");
    }
}

#[test]
fn a_library_path_with_dotdot_or_absolute_is_refused() {
    for path in ["../greeter/libgreeter.so", "/etc/passwd"] {
        let (line, _, message) = manifest_error(&manifest("broken", "1.0.0", path, ""));
        assert_eq!(line, 6, "{path}: the `[library].linux` line");
        assert!(message.contains("leaves the manifest's directory") || message.contains("is absolute"), "{message}");
    }
}

#[cfg(unix)]
#[test]
fn a_symlink_escaping_the_plugin_directory_is_refused() {
    let (error, message) = refused(|l| {
        let dir = l.add_manifest("escape", &manifest("escape", "1.0.0", "libescape.so", ""));
        std::os::unix::fs::symlink(l.plugins().join("greeter").join(library_file("greeter")), dir.join("libescape.so"))
            .unwrap();
    });
    assert!(matches!(error, LoadError::PathEscape { .. }), "{error:?}");
    assert!(message.contains("outside the plugin directory"), "{message}");
}

#[test]
fn a_sha256_mismatch_is_refused_with_both_digests() {
    let wrong = "0".repeat(64);
    let (error, message) = refused(|l| {
        let text = format!(
            "name = \"pinned\"\nversion = \"1.0.0\"\napi = \"^1\"\n[library]\nlinux = {{ path = \"libpinned.so\", sha256 = \"{wrong}\" }}\n"
        );
        l.add("pinned", &text, &library("greeter"), "libpinned.so");
    });
    let LoadError::HashMismatch { expected, found, .. } = error else { panic!("expected HashMismatch, got {error:?}") };
    assert_eq!(expected, wrong);
    assert_eq!(found.len(), 64);
    assert!(message.contains("sha256 mismatch") && message.contains(&found), "{message}");
}

#[test]
fn a_matching_sha256_loads() {
    let layout = Layout::new();
    let digest = berth_tests::sha256_hex(&fs::read(library("greeter")).unwrap());
    let text = format!(
        "name = \"greeter\"\nversion = \"1.0.0\"\napi = \"^1\"\n[library]\nlinux = {{ path = \"libgreeter.so\", sha256 = \"{digest}\" }}\n"
    );
    layout.add("greeter", &text, &library("greeter"), "libgreeter.so");
    let report = layout.host().load_all();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
}

#[test]
fn a_manifest_whose_name_differs_from_the_library_is_refused() {
    let (error, message) = refused(|l| {
        l.add("impostor", &manifest("impostor", "1.0.0", "libimpostor.so", ""), &library("quota"), "libimpostor.so");
    });
    assert!(matches!(error, LoadError::MetadataMismatch { field: "name", .. }), "{error:?}");
    assert!(message.contains("the library reports \"quota\""), "{message}");
}

#[test]
fn a_manifest_whose_version_differs_from_the_library_is_refused() {
    let (error, _) = refused(|l| {
        l.add("quota", &manifest("quota", "9.9.9", "libquota.so", ""), &library("quota"), "libquota.so");
    });
    assert!(matches!(error, LoadError::MetadataMismatch { field: "version", .. }), "{error:?}");
}

#[test]
fn an_api_requirement_the_host_does_not_meet_is_refused() {
    let (error, message) = refused(|l| {
        let text = "name = \"quota\"\nversion = \"1.0.0\"\napi = \"^1.9\"\n[library]\nlinux = \"libquota.so\"\n";
        l.add("quota", text, &library("quota"), "libquota.so");
    });
    assert!(matches!(error, LoadError::ApiRequirement { .. }), "{error:?}");
    assert!(message.contains("`api = \"^1.9\"` does not accept this host's plugin-api 1.3.0"), "{message}");
}

#[test]
fn a_missing_dependency_is_refused() {
    let (error, message) = refused(|l| {
        let text = format!("{}\n[dependencies]\nnowhere = \"^1\"\n", manifest("quota", "1.0.0", "libquota.so", ""));
        l.add("quota", &text, &library("quota"), "libquota.so");
    });
    assert!(matches!(error, LoadError::Dependency { ref dependency, .. } if dependency == "nowhere"), "{error:?}");
    assert!(message.contains("no plugin named nowhere is installed"), "{message}");
}

#[test]
fn a_library_for_another_architecture_is_refused() {
    let mut bytes = fs::read(library("greeter")).unwrap();
    // e_machine (offset 18, little-endian): AArch64.
    bytes[18..20].copy_from_slice(&183u16.to_le_bytes());
    let (error, message) = refused(bad("arm", "libarm.so", &bytes));
    assert!(matches!(error, LoadError::WrongArchitecture { .. }), "{error:?}");
    assert!(message.contains("is built for aarch64"), "{message}");
}

#[test]
fn the_loaded_file_is_the_private_copy_in_a_0700_cache() {
    let layout = Layout::new();
    layout.add_example("greeter");
    let host = layout.host();
    host.load_all();
    let sha = host.plugins()[0].sha256.clone().unwrap();
    let copy = layout.cache().join(format!("{sha}.so"));
    assert!(copy.is_file(), "content-addressed copy at {}", copy.display());
    assert_eq!(fs::read(&copy).unwrap(), fs::read(library("greeter")).unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(layout.cache()).unwrap().permissions().mode() & 0o777, 0o700);
        let maps = fs::read_to_string("/proc/self/maps").unwrap();
        assert!(maps.contains(&copy.display().to_string()), "the private copy is what is mapped");
        assert!(
            !maps.contains(&layout.plugins().join("greeter").display().to_string()),
            "the installed file is never mapped"
        );
    }
}

/// `berth check` over `layout`, through the measure helper (its peak memory and time printed), killed after a
/// minute.
#[cfg(unix)]
fn measured_check(layout: &Layout, label: &str) -> berth_tests::Measured {
    let mut check = layout.berth();
    check.arg("check");
    berth_tests::measure(label, &check, std::time::Duration::from_secs(60))
}

/// Issue 11: a FIFO or a symlink to /dev/zero in a manifest's place, and a manifest over the size limit, are
/// refused at once by `berth check` (which used to hang on the FIFO and read /dev/zero until memory ran out);
/// the good plugin still loads. Peak memory and time are printed, not asserted as times.
#[cfg(unix)]
#[test]
fn issue_11_special_and_oversized_manifests_are_refused_without_blocking() {
    let layout = Layout::new();
    layout.add_example("greeter");
    let dir = layout.plugins().join("hostile");
    fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new("mkfifo").arg(dir.join("fifo.toml")).status().unwrap();
    assert!(status.success(), "mkfifo");
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.toml")).unwrap();
    fs::write(dir.join("big.toml"), vec![b'#'; 2 << 20]).unwrap();
    let run = measured_check(&layout, "berth check with a FIFO, /dev/zero and a 2 MiB manifest");
    assert!(!run.timed_out, "berth check must not block on a FIFO");
    let out = berth_tests::output_text(&run.output);
    assert!(out.contains("fifo.toml: it is a FIFO (named pipe), not a regular file"), "{out}");
    assert!(out.contains("zero.toml: it is a character device, not a regular file"), "{out}");
    assert!(
        out.contains("big.toml: it holds 2097152 bytes, more than the 1048576 bytes allowed for a manifest"),
        "{out}"
    );
    assert!(out.contains("1 loaded, 0 disabled, 3 failed"), "{out}");
    assert!(run.peak_rss_kib < 256 * 1024, "peak memory {} KiB", run.peak_rss_kib);
}

/// Issue 11: libraries are checked from their headers before they are read: a sparse 1 GiB file is refused by
/// the size limit before a byte is read, and a 200 MiB one (under the limit) by its first bytes, without the
/// rest being read; the good plugin still loads. Peak memory and time are printed.
#[cfg(unix)]
#[test]
fn issue_11_huge_libraries_are_refused_from_their_headers() {
    let layout = Layout::new();
    layout.add_example("greeter");
    for (name, size) in [("huge", 1u64 << 30), ("large", 200 << 20)] {
        let file = library_file(name);
        let dir = layout.add_manifest(name, &manifest(name, "1.0.0", &file, ""));
        fs::File::create(dir.join(&file)).unwrap().set_len(size).unwrap();
    }
    let run = measured_check(&layout, "berth check with a sparse 1 GiB and a sparse 200 MiB library");
    let out = berth_tests::output_text(&run.output);
    assert!(
        out.contains("holds 1073741824 bytes, more than the 268435456 bytes this host accepts for a library"),
        "{out}"
    );
    assert!(out.contains("is not a shared library: unknown format (first bytes 0000000000000000)"), "{out}");
    assert!(out.contains("1 loaded, 0 disabled, 2 failed"), "{out}");
    assert!(run.peak_rss_kib < 64 * 1024, "peak memory {} KiB: the large file was read", run.peak_rss_kib);
}

/// Issue 12: a dependency cycle is named, in order, for each plugin in it; a plugin that waits on the cycle
/// names it too; a program matches the case (`DependencyProblem`). The good plugin still loads.
#[test]
fn a_dependency_cycle_is_named_in_order() {
    let layout = Layout::new();
    layout.add_example("greeter");
    for (name, needs) in [("a", "b"), ("b", "c"), ("c", "a"), ("d", "b")] {
        layout.add_manifest(name, &manifest(name, "1.0.0", "lib.so", &format!("[dependencies]\n{needs} = \"^1\"\n")));
    }
    let report = layout.host().load_all();
    assert_eq!(report.loaded.len(), 1, "{:?}", report.failures);
    let message = |plugin: &str| {
        let failure = report.failures.iter().find(|f| f.plugin.as_ref().is_some_and(|p| p.as_str() == plugin)).unwrap();
        let members = match &failure.error {
            LoadError::Dependency { problem: DependencyProblem::Cycle { members }, .. } if plugin != "d" => members,
            LoadError::Dependency { problem: DependencyProblem::WaitsOnCycle { members }, .. } if plugin == "d" => {
                members
            }
            other => panic!("{plugin}: expected a cycle, got {other:?}"),
        };
        assert!(members.len() == 4 && members[0] == members[3], "{members:?}");
        failure.error.to_string()
    };
    assert_eq!(message("a"), "[dependencies].b: dependency cycle a -> b -> c -> a; break it in [dependencies]");
    assert_eq!(message("c"), "[dependencies].a: dependency cycle c -> a -> b -> c; break it in [dependencies]");
    assert_eq!(
        message("d"),
        "[dependencies].b: b waits on a dependency cycle (b -> c -> a -> b); break it in [dependencies]"
    );
}
