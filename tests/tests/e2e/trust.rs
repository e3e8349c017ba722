//! Trust (issue 4): every refusal of the integrity, signature, rollback and permission checks, each with its
//! error variant and the words an operator acts on, and what each trust policy loads.

use std::fs;
use std::path::Path;
use std::time::Duration;

use berth::trust::{ACCEPTED_VERSIONS_FILE, CHECKSUM_FILE, signature_path};
use berth::{EventKind, Host, HostConfig, LoadError, LoadReport, Trust, TrustPolicy};
use berth_tests::{Layout, SigningKey, library_file, sha256_hex, statement_for, wait_for};

const POLICIES: [TrustPolicy; 3] = [TrustPolicy::Enforce, TrustPolicy::Warn, TrustPolicy::Off];

fn config(layout: &Layout, policy: TrustPolicy, key: Option<&SigningKey>) -> HostConfig {
    let mut config = layout.config();
    config.trust.policy = policy;
    config.trust.keys = key.map(SigningKey::trusted).into_iter().collect();
    config
}

/// Loads everything with `config`; returns the host and the one failure's error, if any.
fn load(config: HostConfig) -> (Host, LoadReport) {
    let host = Host::new(config).unwrap();
    let report = host.load_all();
    (host, report)
}

fn only_error(report: &LoadReport) -> &LoadError {
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    &report.failures[0].error
}

/// Loads under each policy: the one failure must be `expected`, with `words` in its message.
fn refused_under_every_policy(
    layout: &Layout,
    key: Option<&SigningKey>,
    expected: fn(&LoadError) -> bool,
    words: &str,
) {
    for policy in POLICIES {
        let (_, report) = load(config(layout, policy, key));
        let error = only_error(&report);
        assert!(expected(error), "{policy}: {error:?}");
        assert!(error.to_string().contains(words), "{policy}: {error}");
    }
}

fn trust_of(host: &Host, plugin: &str) -> Trust {
    host.plugins().into_iter().find(|s| s.name.as_str() == plugin).unwrap().trust.expect("serving")
}

fn greeter_library(dir: &Path) -> std::path::PathBuf {
    dir.join(library_file("greeter"))
}

#[test]
fn a_library_signed_by_a_trusted_key_loads_as_signed_under_every_policy() {
    let layout = Layout::new();
    let dir = layout.add_example("greeter");
    let key = SigningKey::generate();
    key.sign_library(&greeter_library(&dir), "greeter", "1.0.0");
    for policy in POLICIES {
        let (host, report) = load(config(&layout, policy, Some(&key)));
        assert!(report.failures.is_empty(), "{policy}: {:?}", report.failures);
        assert_eq!(trust_of(&host, "greeter"), Trust::Signed { key: key.trusted().id().to_owned() });
    }
}

#[test]
fn an_unsigned_library_is_refused_under_enforce_marked_untrusted_under_warn_and_unchecked_under_off() {
    let layout = Layout::new();
    let dir = layout.add_example("greeter");
    let (_, report) = load(config(&layout, TrustPolicy::Enforce, None));
    let error = only_error(&report);
    assert!(matches!(error, LoadError::Unsigned { .. }), "{error:?}");
    let message = error.to_string();
    for words in [
        "is not signed",
        "libgreeter.so.minisig does not exist",
        "policy = \"enforce\"",
        "ask its publisher for the signature file",
    ] {
        assert!(message.contains(words), "{words:?} missing from: {message}");
    }
    let (host, report) = load(config(&layout, TrustPolicy::Warn, None));
    assert!(report.failures.is_empty());
    let Trust::Untrusted { reason } = trust_of(&host, "greeter") else { panic!("greeter should be untrusted") };
    assert!(reason.contains("no signature"), "{reason}");
    let (host, _) = load(config(&layout, TrustPolicy::Off, None));
    assert_eq!(trust_of(&host, "greeter"), Trust::Unchecked);
    assert!(greeter_library(&dir).exists());
}

#[test]
fn a_signature_by_an_unknown_key_is_refused_under_enforce_only() {
    let layout = Layout::new();
    let dir = layout.add_example("greeter");
    let (publisher, trusted) = (SigningKey::generate(), SigningKey::generate());
    publisher.sign_library(&greeter_library(&dir), "greeter", "1.0.0");
    let (_, report) = load(config(&layout, TrustPolicy::Enforce, Some(&trusted)));
    let error = only_error(&report);
    let LoadError::UnknownKey { key, trusted: count, .. } = error else { panic!("expected UnknownKey: {error:?}") };
    assert_eq!((key.as_str(), *count), (publisher.trusted().id(), 1));
    assert!(error.to_string().contains("add their public key to [trust].keys"), "{error}");
    let (host, report) = load(config(&layout, TrustPolicy::Warn, Some(&trusted)));
    assert!(report.failures.is_empty());
    assert!(matches!(trust_of(&host, "greeter"), Trust::Untrusted { reason } if reason.contains("not trusted")));
}

#[test]
fn a_signature_that_does_not_match_the_library_is_refused_under_every_policy() {
    let layout = Layout::new();
    let dir = layout.add_example("greeter");
    let key = SigningKey::generate();
    let library = greeter_library(&dir);
    let mut other = fs::read(&library).unwrap();
    other.push(0);
    // The statement is right for the library; the signature is over other bytes.
    let statement = statement_for("greeter", "1.0.0", &fs::read(&library).unwrap());
    fs::write(signature_path(&library), key.sign(&other, &statement)).unwrap();
    let invalid = |error: &LoadError| matches!(error, LoadError::SignatureInvalid { .. });
    refused_under_every_policy(&layout, Some(&key), invalid, "does not match the bytes of");
}

#[test]
fn a_signature_made_for_another_plugin_version_or_target_is_refused_under_every_policy() {
    let layout = Layout::new();
    let dir = layout.add_example("greeter");
    let key = SigningKey::generate();
    let library = greeter_library(&dir);
    let bytes = fs::read(&library).unwrap();
    let sha256 = sha256_hex(&bytes);
    let statements = [
        statement_for("quota", "1.0.0", &bytes),
        statement_for("greeter", "0.9.0", &bytes),
        format!("berth-plugin name=greeter version=1.0.0 target=aarch64-apple-darwin sha256={sha256}"),
    ];
    for statement in statements {
        fs::write(signature_path(&library), key.sign(&bytes, &statement)).unwrap();
        for policy in POLICIES {
            let (_, report) = load(config(&layout, policy, Some(&key)));
            let error = only_error(&report);
            let LoadError::SignatureStatement { signed, expected, .. } = error else {
                panic!("{policy}: expected SignatureStatement: {error:?}")
            };
            assert_eq!(signed, &statement);
            assert_eq!(expected, &statement_for("greeter", "1.0.0", &bytes));
            assert!(error.to_string().contains("a signature moved from another plugin, version or target"));
        }
    }
}

#[test]
fn a_malformed_signature_is_refused_under_every_policy() {
    let layout = Layout::new();
    let dir = layout.add_example("greeter");
    fs::write(signature_path(&greeter_library(&dir)), "untrusted comment: x\nnot base64 at all\n").unwrap();
    let malformed = |error: &LoadError| matches!(error, LoadError::SignatureMalformed { .. });
    refused_under_every_policy(&layout, None, malformed, "not a usable minisign signature");
}

#[test]
fn a_library_that_differs_from_the_bundle_checksum_file_is_refused() {
    let layout = Layout::new();
    let dir = layout.add_example("greeter");
    let wrong = "0".repeat(64);
    fs::write(dir.join(CHECKSUM_FILE), format!("{wrong}  {}\n", library_file("greeter"))).unwrap();
    let (_, report) = load(layout.config());
    let error = only_error(&report);
    let LoadError::HashMismatch { expected, found, expected_by, .. } = error else { panic!("{error:?}") };
    assert_eq!(expected, &wrong);
    assert_eq!(found, &sha256_hex(&fs::read(greeter_library(&dir)).unwrap()));
    assert!(expected_by.ends_with(CHECKSUM_FILE), "{expected_by}");
    // A checksum file that does not list the library is refused too.
    fs::write(dir.join(CHECKSUM_FILE), format!("{wrong}  other.so\n")).unwrap();
    let (_, report) = load(layout.config());
    let error = only_error(&report);
    assert!(matches!(error, LoadError::ChecksumFile { .. }), "{error:?}");
    assert!(error.to_string().contains("does not list the library libgreeter.so"), "{error}");
    // The right digest loads.
    let right = sha256_hex(&fs::read(greeter_library(&dir)).unwrap());
    fs::write(dir.join(CHECKSUM_FILE), format!("{right}  {}\n", library_file("greeter"))).unwrap();
    assert!(load(layout.config()).1.failures.is_empty());
}

#[test]
fn an_older_version_than_one_accepted_is_refused_unless_its_manifest_pins_it() {
    let layout = Layout::new();
    let dir = layout.add_example("greeter");
    let (_, report) = load(layout.config());
    assert_eq!(report.loaded.len(), 1);
    let record = fs::read_to_string(layout.data().join(ACCEPTED_VERSIONS_FILE)).unwrap();
    assert!(record.contains("greeter = \"1.0.0\""), "{record}");
    // A host that once accepted greeter 1.2.0 (as the record says) refuses 1.0.0.
    layout.edit_record(|body| body.replace("1.0.0", "1.2.0"));
    let (_, report) = load(layout.config());
    let error = only_error(&report);
    let LoadError::Downgrade { version, highest, .. } = error else { panic!("expected Downgrade: {error:?}") };
    assert_eq!((version.as_str(), highest.as_str()), ("1.0.0", "1.2.0"));
    assert!(error.to_string().contains("add pin = \"1.0.0\" to the manifest"), "{error}");
    // A pin naming another version does not help, and says so.
    let manifest = dir.join("greeter.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, text.replace("api = ", "pin = \"1.1.0\"\napi = ")).unwrap();
    let (_, report) = load(layout.config());
    assert!(only_error(&report).to_string().contains("the manifest pins 1.1.0, not 1.0.0"));
    fs::write(&manifest, text.replace("api = ", "pin = \"1.0.0\"\napi = ")).unwrap();
    let (_, report) = load(layout.config());
    assert_eq!(report.loaded.len(), 1, "{:?}", report.failures);
    // The pinned roll-back does not lower what was accepted.
    let record = fs::read_to_string(layout.data().join(ACCEPTED_VERSIONS_FILE)).unwrap();
    assert!(record.contains("greeter = \"1.2.0\""), "{record}");
}

/// Issue 11: a record that exists but cannot be fully trusted (emptied, cut short, unsealed, changed,
/// writable by others) stops the host and is left as it is; the advice it gives works when followed.
#[test]
fn issue_11_a_damaged_accepted_versions_record_stops_the_host_and_its_backup_restores_the_mark() {
    let layout = Layout::new();
    layout.add_example("greeter");
    let record = layout.data().join(ACCEPTED_VERSIONS_FILE);
    let backup = layout.data().join(format!("{ACCEPTED_VERSIONS_FILE}.bak"));
    assert!(load(layout.config()).1.failures.is_empty());
    // A first record is its own backup: from then on, a record deleted alone does not pass for a new one.
    assert_eq!(fs::read(&backup).unwrap(), fs::read(&record).unwrap(), "the first record's backup");
    // As if this host had accepted greeter 1.2.0: 1.0.0 is refused from now on.
    layout.edit_record(|body| body.replace("1.0.0", "1.2.0"));
    layout.add_example("quota");
    let (host, report) = load(layout.config());
    assert!(matches!(only_error(&report), LoadError::Downgrade { .. }), "{:?}", report.failures);
    drop(host);
    let intact = fs::read_to_string(&record).unwrap();
    assert!(intact.contains("quota = ") && intact.contains("format = 1"), "{intact}");
    assert!(fs::read_to_string(&backup).unwrap().contains("greeter = \"1.2.0\""), "the backup is the previous record");

    let header_end = intact.find('\n').unwrap();
    let damaged: [(&str, String, &str); 5] = [
        ("emptied", String::new(), "it does not end with its seal line"),
        ("cut inside its header comment", intact[..header_end / 2].to_owned(), "it does not end with its seal line"),
        ("only its [accepted] line", "[accepted]\n".to_owned(), "it does not end with its seal line"),
        (
            "cut before its seal",
            intact[..intact.rfind("# sha256").unwrap()].to_owned(),
            "it does not end with its seal line",
        ),
        ("edited without its seal", intact.replace("1.2.0", "1.0.0"), "its content does not match its seal line"),
    ];
    for (case, text, words) in damaged {
        fs::write(&record, &text).unwrap();
        let error = Host::new(config(&layout, TrustPolicy::Enforce, None))
            .err()
            .unwrap_or_else(|| panic!("{case}: the host started"));
        let message = error.to_string();
        assert!(message.contains(words), "{case}: {message}");
        let advice = format!("restore the previous record with `mv {} {}`", backup.display(), record.display());
        assert!(message.contains(&advice), "{case}: {message}");
        assert_eq!(fs::read_to_string(&record).unwrap(), text, "{case}: the damaged record is left as it was");
    }
    // The advice, followed: the previous record comes back, and with it greeter's mark.
    fs::rename(&backup, &record).unwrap();
    let (_, report) = load(config(&layout, TrustPolicy::Off, None));
    assert!(matches!(only_error(&report), LoadError::Downgrade { .. }), "{:?}", report.failures);

    // Without a backup, a damaged record still stops the host; a missing one beside its backup does too.
    fs::remove_file(&backup).ok();
    fs::write(&record, "").unwrap();
    let message = Host::new(layout.config()).err().expect("an empty record stops the host").to_string();
    let advice = format!(
        "restore it from a backup (a damaged record cannot be trusted: an older version could come back), or, to start afresh and accept any version again, delete {}",
        record.display()
    );
    assert!(message.contains(&advice), "{message}");
    fs::write(&backup, &intact).unwrap();
    fs::remove_file(&record).unwrap();
    let message = Host::new(layout.config()).err().expect("a missing record stops the host").to_string();
    assert!(
        message.contains(&format!("is missing but its backup is there; restore it with `mv {}", backup.display())),
        "{message}"
    );
    // A record written before the seal (berth's header, whole lines, at least one version) is sealed in place,
    // its mark kept, and the old file kept as the backup; one holding no version is refused like a cut one.
    let legacy = "# The highest version of each plugin this host has accepted (written by berth; do not edit).\n# An older version is refused unless its manifest pins it: pin = \"<version>\".\n[accepted]\ngreeter = \"1.2.0\"\n";
    fs::remove_file(&backup).unwrap();
    fs::write(&record, &legacy[..legacy.find("greeter").unwrap()]).unwrap();
    let message = Host::new(layout.config()).err().expect("an empty legacy record stops the host").to_string();
    assert!(message.contains("it does not end with its seal line"), "{message}");
    fs::write(&record, legacy).unwrap();
    let host = Host::new(layout.config()).unwrap();
    assert!(fs::read_to_string(&record).unwrap().contains("# sha256 of the lines above: "), "sealed in place");
    assert_eq!(fs::read_to_string(&backup).unwrap(), legacy);
    let report = host.load_all();
    assert!(matches!(only_error(&report), LoadError::Downgrade { .. }), "{:?}", report.failures);
    drop(host);
    // Record and backup removed: a new data directory, where no record is an empty record. (Other files in
    // the data directory, such as a cache placed inside it, change nothing.)
    fs::remove_file(&record).unwrap();
    fs::remove_file(&backup).unwrap();
    fs::write(layout.data().join("notes.txt"), "").unwrap();
    assert!(load(layout.config()).1.failures.is_empty());
    assert!(fs::read_to_string(&record).unwrap().contains("greeter = \"1.0.0\""));

    // A record others could write is refused like a key file, and the advice given works.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&record, fs::Permissions::from_mode(0o664)).unwrap();
        let message = Host::new(layout.config()).err().expect("a group-writable record stops the host").to_string();
        let advice = format!(
            "its group can write it, and so change what this host trusts; run `chmod go-w {}`",
            record.canonicalize().unwrap().display()
        );
        assert!(message.contains(&advice), "{message}");
        assert!(!message.contains("strict_modes"), "turning strict_modes off does not help: {message}");
        std::process::Command::new("chmod").arg("go-w").arg(&record).status().unwrap();
        assert!(load(layout.config()).1.failures.is_empty());
    }
}

#[cfg(unix)]
#[test]
fn files_and_directories_others_can_write_are_refused_with_their_path_and_mode() {
    use std::os::unix::fs::PermissionsExt;
    let layout = Layout::new();
    let dir = layout.add_example("greeter");
    let library = greeter_library(&dir);
    let chmod = |path: &Path, mode: u32| fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    let cases =
        [(library.clone(), 0o664, 0o644), (dir.join("greeter.toml"), 0o646, 0o644), (dir.clone(), 0o775, 0o755)];
    for (path, unsafe_mode, safe_mode) in cases {
        chmod(&path, unsafe_mode);
        let (_, report) = load(layout.config());
        let error = only_error(&report);
        let LoadError::UnsafePermissions { path: refused, mode, .. } = error else { panic!("{error:?}") };
        assert_eq!((refused, *mode), (&path.canonicalize().unwrap(), unsafe_mode));
        let message = error.to_string();
        assert!(message.contains(&format!("(mode {unsafe_mode:04o})")), "{message}");
        assert!(message.contains("chmod go-w"), "{message}");
        // The development switch accepts it.
        let mut relaxed = layout.config();
        relaxed.trust.strict_modes = false;
        assert!(load(relaxed).1.failures.is_empty());
        chmod(&path, safe_mode);
    }
    assert!(load(layout.config()).1.failures.is_empty());
}

#[cfg(unix)]
#[test]
fn files_owned_by_another_user_are_refused_when_the_test_can_give_them_away_and_private_dirs_are_0700() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let layout = Layout::new();
    let dir = layout.add_example("greeter");
    let library = greeter_library(&dir);
    // Only root can give a file to another user; as any other user this test checks the private dirs only.
    if std::os::unix::fs::chown(&library, Some(4242), None).is_ok() {
        let (_, report) = load(layout.config());
        let error = only_error(&report);
        assert!(matches!(error, LoadError::UnsafePermissions { .. }), "{error:?}");
        assert!(error.to_string().contains("owned by uid 4242"), "{error}");
    }
    // A cache directory someone else owns is refused too: they could swap the copies the host opens.
    let foreign_cache = layout.plugins().with_file_name("foreign-cache");
    fs::create_dir(&foreign_cache).unwrap();
    fs::set_permissions(&foreign_cache, fs::Permissions::from_mode(0o700)).unwrap();
    if std::os::unix::fs::chown(&foreign_cache, Some(4242), None).is_ok() {
        let mut config = layout.config();
        config.cache_dir = foreign_cache;
        let error = Host::new(config).err().expect("refused");
        assert!(error.to_string().contains("owned by uid 4242"), "{error}");
    }
    load(layout.config());
    for private in [layout.cache(), layout.data()] {
        assert_eq!(fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o700, "{}", private.display());
        assert_eq!(fs::metadata(&private).unwrap().uid(), fs::metadata(layout.plugins()).unwrap().uid());
    }
}

#[test]
fn a_watching_host_loads_a_refused_plugin_once_its_signature_is_installed_beside_it() {
    let layout = Layout::new();
    let dir = layout.add_example("greeter");
    let key = SigningKey::generate();
    let mut config = layout.watch_config();
    config.trust.policy = TrustPolicy::Enforce;
    config.trust.keys = vec![key.trusted()];
    let host = Host::new(config).unwrap();
    let events = host.subscribe();
    assert!(matches!(only_error(&host.load_all()), LoadError::Unsigned { .. }));
    let _watcher = host.watch().unwrap();
    // Only the signature appears: the library and the manifest are untouched.
    key.sign_library(&greeter_library(&dir), "greeter", "1.0.0");
    let loaded = wait_for(&events, Duration::from_secs(20), |e| e.kind == EventKind::Loaded);
    assert!(loaded.detail.contains("signed by trusted key"), "{loaded}");
    assert_eq!(trust_of(&host, "greeter"), Trust::Signed { key: key.trusted().id().to_owned() });
}

#[cfg(unix)]
#[test]
fn a_trusted_key_file_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let layout = Layout::new();
    let key = SigningKey::generate();
    let path = layout.plugins().with_file_name("publisher.pub");
    fs::write(&path, key.public_file()).unwrap();
    assert_eq!(berth::TrustedKey::from_file(&path).unwrap(), key.trusted());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    let error = berth::TrustedKey::from_file(&path).unwrap_err();
    assert!(matches!(error, berth::KeyError::Unsafe(_)), "{error:?}");
    let error = error.to_string();
    assert!(error.contains("(mode 0666)") && error.contains("chmod go-w"), "{error}");
    // Issue 11: strict_modes is not offered (key files are checked whatever it says); the advice given works.
    assert!(!error.contains("strict_modes"), "{error}");
    std::process::Command::new("chmod").arg("go-w").arg(&path).status().unwrap();
    assert_eq!(berth::TrustedKey::from_file(&path).unwrap(), key.trusted());
    // A mistyped path is a file that cannot be read, not a malformed key; a FIFO is refused without blocking.
    let error = berth::TrustedKey::from_config("no-such-file.pub", layout.plugins().parent().unwrap()).unwrap_err();
    assert!(matches!(error, berth::KeyError::Unreadable { .. }), "{error:?}");
    let error = error.to_string();
    assert!(error.ends_with("no-such-file.pub cannot be read: it does not exist"), "{error}");
    let fifo = layout.plugins().with_file_name("fifo.pub");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let error = berth::TrustedKey::from_file(&fifo).unwrap_err().to_string();
    assert!(error.contains("cannot be read: it is a FIFO (named pipe), not a regular file"), "{error}");
    // A key given inline still parses, and a damaged inline key is reported as a key.
    let line = key.public_file().lines().nth(1).unwrap().to_owned();
    assert_eq!(berth::TrustedKey::from_config(&line, Path::new(".")).unwrap(), key.trusted());
    let error = berth::TrustedKey::from_config(&line[..20], Path::new(".")).unwrap_err();
    assert!(matches!(error, berth::KeyError::Malformed { .. }), "{error:?}");
    let error = error.to_string();
    assert!(error.contains("not a minisign public key"), "{error}");
}

/// Issue 11: in a sticky, world-writable plugin directory (which the permission check accepts), another user's
/// manifest claiming the same name takes no part in name resolution: it is refused for its owner, and the
/// plugin keeps loading. Needs root, to give the intruder's files away (the CI runs as root).
#[cfg(unix)]
#[test]
fn issue_11_an_intruders_manifest_cannot_take_a_plugins_name_in_a_sticky_plugin_directory() {
    use std::os::unix::fs::PermissionsExt;
    let layout = Layout::new();
    fs::set_permissions(layout.plugins(), fs::Permissions::from_mode(0o1777)).unwrap();
    let dir = layout.add_example("greeter");
    let intruder = layout.plugins().join("evil");
    fs::create_dir(&intruder).unwrap();
    for file in ["greeter.toml".to_owned(), library_file("greeter")] {
        fs::copy(dir.join(&file), intruder.join(&file)).unwrap();
        std::os::unix::fs::chown(intruder.join(&file), Some(4242), Some(4242)).expect("this test runs as root");
    }
    std::os::unix::fs::chown(&intruder, Some(4242), Some(4242)).unwrap();
    // A host starting afresh: the owner's plugin loads, the intruder is refused.
    let (host, report) = load(layout.config());
    assert_eq!(report.loaded.len(), 1, "{:?}", report.failures);
    let error = only_error(&report);
    assert!(matches!(error, LoadError::UnsafePermissions { .. }), "{error:?}");
    assert!(report.failures[0].manifest.starts_with(&intruder), "{:?}", report.failures[0].manifest);
    assert!(error.to_string().contains("owned by uid 4242"), "{error}");
    let greet = host.plugin("greeter").unwrap().call_json::<_, String>("greet", &serde_json::json!({"name": "ops"}));
    assert_eq!(greet.unwrap(), "Hello, ops!");
    drop(host);

    // Nor can it hold the name by claiming it first, disabled, while the owner's plugin is not there.
    let owner = layout.plugins().with_file_name("greeter.away");
    fs::rename(&dir, &owner).unwrap();
    let manifest = intruder.join("greeter.toml");
    let text = fs::read_to_string(&manifest).unwrap().replace("api = ", "enabled = false\napi = ");
    fs::write(&manifest, text).unwrap();
    let host = Host::new(layout.config()).unwrap();
    assert_eq!(host.load_all().disabled.len(), 1);
    fs::rename(&owner, &dir).unwrap();
    let report = host.load_all();
    assert_eq!(report.loaded.len(), 1, "{:?}", report.failures);
    assert!(matches!(only_error(&report), LoadError::UnsafePermissions { .. }), "{:?}", report.failures);
}

/// Issue 11, hostile trust files through the binary, each measured (peak memory of the child from
/// getrusage, and time): a record that is /dev/zero or 32 MiB, and a key file that is a FIFO or /dev/zero.
/// Each is refused before it is read, without blocking.
#[cfg(unix)]
#[test]
fn issue_11_hostile_records_and_key_files_are_refused_within_bounded_memory_and_time() {
    let layout = Layout::new();
    layout.add_example("greeter");
    assert!(load(layout.config()).1.failures.is_empty());
    let record = layout.data().join(ACCEPTED_VERSIONS_FILE);
    let limit = Duration::from_secs(60);
    let run = |label: &str, args: &[&str]| {
        let mut command = layout.berth();
        command.args(args).arg("check");
        let run = berth_tests::measure(label, &command, limit);
        assert!(!run.timed_out, "{label}: must not block");
        assert!(run.peak_rss_kib < 64 * 1024, "{label}: peak memory {} KiB", run.peak_rss_kib);
        berth_tests::output_text(&run.output)
    };
    fs::remove_file(&record).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &record).unwrap();
    let out = run("berth check with /dev/zero as the accepted-versions record", &[]);
    assert!(out.contains("it is a character device, not a regular file"), "{out}");
    fs::remove_file(&record).unwrap();
    fs::write(&record, vec![b'#'; 32 << 20]).unwrap();
    let out = run("berth check with a 32 MiB accepted-versions record", &[]);
    assert!(out.contains("it holds 33554432 bytes, more than the 16777216 bytes allowed"), "{out}");
    fs::remove_file(&record).unwrap();

    let fifo = layout.plugins().with_file_name("publisher.pub");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let out = run("berth check --trusted-key with a FIFO", &["--trusted-key", &fifo.to_string_lossy()]);
    assert!(out.contains("cannot be read: it is a FIFO (named pipe), not a regular file"), "{out}");
    let zero = layout.plugins().with_file_name("zero.pub");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let out = run("berth check --trusted-key with /dev/zero", &["--trusted-key", &zero.to_string_lossy()]);
    assert!(out.contains("cannot be read: it is a character device, not a regular file"), "{out}");
}
