//! The ops commands of issue 4, through the `berth` binary: `install` (verify first, then one atomic swap,
//! into a running host), what an interrupted or refused install leaves, `verify`, `enable`/`disable`, and
//! `check --host-api`.

use std::fs;
use std::path::Path;
use std::process::Output;

use berth_tests::{
    BerthRun, Layout, SigningKey, example_bundle, library, library_file, output_text, quota_release, sha256_hex,
};

/// A trusted key, written where `--trusted-key` can read it, and the flags that enforce it.
fn enforcing(layout: &Layout, key: &SigningKey) -> Vec<String> {
    let public = layout.plugins().with_file_name("publisher.pub");
    fs::write(&public, key.public_file()).unwrap();
    vec!["--trust-policy".into(), "enforce".into(), "--trusted-key".into(), public.to_string_lossy().into_owned()]
}

fn berth(layout: &Layout, flags: &[String], args: &[&str]) -> Output {
    layout.berth().args(flags).args(args).output().expect("berth runs")
}

/// Asserts that `output` (stdout, then stderr) contains `words`, showing it all when it does not.
fn assert_printed(output: &Output, words: &str) {
    let text = output_text(output);
    assert!(text.contains(words), "{words:?} not in:\n{text}");
}

fn installed_version(layout: &Layout, plugin: &str) -> String {
    let manifest = fs::read_to_string(layout.plugins().join(plugin).join(format!("{plugin}.toml"))).unwrap();
    let line = manifest.lines().find(|l| l.starts_with("version = ")).unwrap();
    line.trim_start_matches("version = ").trim_matches('"').to_owned()
}

#[test]
fn a_signed_bundle_is_verified_and_installed_into_a_running_host_that_enforces_signatures() {
    let layout = Layout::new();
    let key = SigningKey::generate();
    let flags = enforcing(&layout, &key);
    let bundles = tempfile::tempdir().unwrap();
    let greeter = example_bundle("greeter", "1.0.0", &library("greeter"), Some(&key), bundles.path());
    let quota = example_bundle("quota", "1.0.0", &library("quota"), Some(&key), bundles.path());
    let quota_next = example_bundle("quota", "1.1.0", &quota_release(), Some(&key), bundles.path());
    let install = |bundle: &Path| berth(&layout, &flags, &["install", &bundle.to_string_lossy()]);

    let output = install(&quota);
    assert!(output.status.success(), "{}", output_text(&output));
    let mut command = layout.berth();
    command.args(&flags).args(["run", "--call", r#"greeter greet {"name":"ops"}"#, "--every", "50ms"]);
    let mut run = BerthRun::start(command);
    run.wait_line(|l| l.starts_with("event: quota: loaded 1.0.0"));
    run.wait_line(|l| l.starts_with("berth: serving"));
    run.wait_line(|l| l.starts_with("call greeter greet: error: no plugin named \"greeter\""));

    let output = install(&greeter);
    let out = output_text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains(&format!("trust:      signed by trusted key {}", key.trusted().id())), "{out}");
    assert!(out.contains("installed greeter 1.0.0 in "), "{out}");
    run.wait_line(|l| l.starts_with("event: greeter: loaded 1.0.0"));
    run.wait_line(|l| l == "call greeter greet: \"Hello, ops!\"");

    // An upgrade swaps the whole directory in one step: the running host reloads it.
    let output = install(&quota_next);
    assert_printed(&output, "installed quota 1.1.0");
    assert_printed(&output, "replacing 1.0.0");
    run.wait_line(|l| l.starts_with("event: quota: reloaded 1.0.0 (generation 1) -> 1.1.0 (generation 2)"));
    let rest = run.stop();
    assert!(!rest.iter().any(|l| l.contains("failed")), "{rest:?}");
    let leftovers: Vec<_> = fs::read_dir(layout.plugins()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 2, "only the two plugin directories remain: {leftovers:?}");
}

#[test]
fn an_interrupted_install_leaves_the_installed_version_in_place() {
    let layout = Layout::new();
    let bundles = tempfile::tempdir().unwrap();
    let old = example_bundle("quota", "1.0.0", &library("quota"), None, bundles.path());
    let new = example_bundle("quota", "1.1.0", &quota_release(), None, bundles.path());
    assert!(berth(&layout, &[], &["install", &old.to_string_lossy()]).status.success());
    let installed_library = layout.plugins().join("quota").join(library_file("quota"));
    let before = sha256_hex(&fs::read(&installed_library).unwrap());

    // Killed after unpacking and verifying the new version, just before the swap (a debug-build fault point).
    let output = layout
        .berth()
        .args(["install", &new.to_string_lossy()])
        .env("BERTH_TEST_ABORT_BEFORE_SWAP", "1")
        .output()
        .unwrap();
    assert!(!output.status.success(), "the install was aborted");
    assert_eq!(installed_version(&layout, "quota"), "1.0.0");
    assert_eq!(sha256_hex(&fs::read(&installed_library).unwrap()), before);
    let leftover: Vec<String> = fs::read_dir(layout.plugins())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".quota.install-"))
        .collect();
    assert_eq!(leftover.len(), 1, "the interrupted install left its hidden staging directory");
    // A host ignores the leftover and serves the old version.
    let list = berth(&layout, &[], &["list"]);
    let listed = output_text(&list);
    assert!(listed.contains("quota") && listed.contains("1.0.0") && listed.contains("active"), "{listed}");
    assert!(!listed.contains("failed"), "{listed}");

    // A damaged download is refused before anything is touched.
    let truncated = bundles.path().join("truncated.tar.gz");
    let bytes = fs::read(&new).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let output = berth(&layout, &[], &["install", &truncated.to_string_lossy()]);
    assert!(!output.status.success());
    assert_printed(&output, "is not a usable Berth bundle");
    assert_eq!(installed_version(&layout, "quota"), "1.0.0");

    // The next install completes and clears the leftover.
    let output = berth(&layout, &[], &["install", &new.to_string_lossy()]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(installed_version(&layout, "quota"), "1.1.0");
    assert_eq!(fs::read_dir(layout.plugins()).unwrap().count(), 1, "only quota/ remains");
}

#[test]
fn install_refuses_a_bad_signature_and_an_older_version_unless_pinned() {
    let layout = Layout::new();
    let (key, stranger) = (SigningKey::generate(), SigningKey::generate());
    let flags = enforcing(&layout, &key);
    let bundles = tempfile::tempdir().unwrap();
    let forged = example_bundle("quota", "1.1.0", &quota_release(), Some(&stranger), bundles.path());
    let output = berth(&layout, &flags, &["install", &forged.to_string_lossy()]);
    assert!(!output.status.success());
    assert_printed(&output, "which is not one of the 1 trusted key(s)");
    assert!(!layout.plugins().join("quota").exists(), "nothing was installed");

    let new = example_bundle("quota", "1.1.0", &quota_release(), Some(&key), bundles.path());
    assert!(berth(&layout, &flags, &["install", &new.to_string_lossy()]).status.success());
    let old = example_bundle("quota", "1.0.0", &library("quota"), Some(&key), bundles.path());
    let output = berth(&layout, &flags, &["install", &old.to_string_lossy()]);
    assert!(!output.status.success());
    let message = output_text(&output);
    assert!(message.contains("version 1.1.0 is installed and the bundle holds the older 1.0.0"), "{message}");
    assert!(message.contains("--pin"), "{message}");
    assert_eq!(installed_version(&layout, "quota"), "1.1.0");

    let output = berth(&layout, &flags, &["install", "--pin", &old.to_string_lossy()]);
    assert!(output.status.success(), "{}", output_text(&output));
    let manifest = fs::read_to_string(layout.plugins().join("quota/quota.toml")).unwrap();
    assert!(manifest.contains("pin = \"1.0.0\""), "{manifest}");
    let check = berth(&layout, &flags, &["check"]);
    assert!(check.status.success(), "the pinned roll-back loads: {}", output_text(&check));
}

#[test]
fn verify_checks_a_bundle_or_an_installed_plugin_as_a_host_would() {
    let layout = Layout::new();
    let key = SigningKey::generate();
    let flags = enforcing(&layout, &key);
    let bundles = tempfile::tempdir().unwrap();
    let signed = example_bundle("greeter", "1.0.0", &library("greeter"), Some(&key), bundles.path());
    let output = berth(&layout, &flags, &["verify", &signed.to_string_lossy()]);
    let out = output_text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("plugin:     greeter 1.0.0") && out.contains("signed by trusted key"), "{out}");
    assert!(out.contains("verified: it passes every check a host with this configuration makes"), "{out}");

    layout.add_example("quota");
    let output = berth(&layout, &flags, &["verify", "quota"]);
    assert!(!output.status.success());
    assert_printed(&output, "is not signed");
    let output = berth(&layout, &[], &["verify", "quota"]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_printed(&output, "untrusted: no signature");
    let output = berth(&layout, &[], &["verify", "nothing-here"]);
    assert_printed(&output, "no plugin named \"nothing-here\" is installed");
}

#[test]
fn enable_and_disable_edit_the_manifest_keeping_its_comments_and_layout() {
    let layout = Layout::new();
    let dir = layout.add_example("greeter");
    let manifest = dir.join("greeter.toml");
    let original = fs::read_to_string(&manifest).unwrap();
    assert!(original.starts_with('#'), "the example manifest opens with a comment");

    let output = berth(&layout, &[], &["disable", "greeter"]);
    assert_printed(&output, "greeter: disabled in");
    let disabled = fs::read_to_string(&manifest).unwrap();
    let added: Vec<&str> = disabled.lines().filter(|line| !original.lines().any(|o| o == *line)).collect();
    assert_eq!(added, ["enabled = false"], "only the one line changes:\n{disabled}");
    let kept: Vec<&str> = disabled.lines().filter(|line| *line != "enabled = false").collect();
    assert_eq!(kept, original.lines().collect::<Vec<_>>(), "comments, order and layout are kept");
    let list = output_text(&berth(&layout, &[], &["list"]));
    assert!(list.contains("disabled"), "{list}");

    assert!(output_text(&berth(&layout, &[], &["disable", "greeter"])).contains("already disabled"));
    let output = berth(&layout, &[], &["enable", "greeter"]);
    assert_printed(&output, "greeter: enabled in");
    assert_eq!(fs::read_to_string(&manifest).unwrap(), disabled.replace("enabled = false", "enabled = true"));
    assert!(output_text(&berth(&layout, &[], &["list"])).contains("active"));
}

#[test]
fn check_host_api_tells_which_plugins_would_load_on_another_plugin_api() {
    let layout = Layout::new();
    layout.add_example("greeter");
    let dir = layout.add_example("quota");
    let manifest = dir.join("quota.toml");
    let text_of = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, text_of.replace("api = \"^1.0\"", "api = \">=1.0\"")).unwrap();

    let output = berth(&layout, &[], &["check", "--host-api", "1.9.0"]);
    let out = output_text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("ok   greeter 1.0.0 would load on plugin-api 1.9.0"), "{out}");
    assert!(out.contains("2 of 2 plugin(s) would load on plugin-api 1.9.0"), "{out}");

    let output = berth(&layout, &[], &["check", "--host-api", "2.0.0"]);
    let out = output_text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(
        out.contains(
            "FAIL greeter 1.0.0 on plugin-api 2.0.0: its manifest requires api = \"^1.0\", which 2.0.0 does not meet"
        ),
        "{out}"
    );
    let built = format!(
        "FAIL quota 1.0.0 on plugin-api 2.0.0: built against plugin-api {}, but a 2.0.0 host needs 2.x",
        berth::HOST_API_VERSION
    );
    assert!(out.contains(&built), "{out}");
    assert!(out.contains("0 of 2 plugin(s) would load on plugin-api 2.0.0"), "{out}");
}

#[test]
fn an_upgrade_keeps_what_ops_set_and_a_publisher_cannot_pin_for_them() {
    let layout = Layout::new();
    let bundles = tempfile::tempdir().unwrap();
    let old = example_bundle("quota", "1.0.0", &library("quota"), None, bundles.path());
    assert!(berth(&layout, &[], &["install", &old.to_string_lossy()]).status.success());
    // An unsigned bundle is checked without running its code.
    let verified = output_text(&berth(&layout, &[], &["verify", &old.to_string_lossy()]));
    assert!(verified.contains("abi:        not checked"), "{verified}");
    let manifest = layout.plugins().join("quota/quota.toml");
    assert!(berth(&layout, &[], &["disable", "quota"]).status.success());
    let edited = fs::read_to_string(&manifest).unwrap().replace("[config]", "[config]\n# ops: raised for the launch");
    fs::write(&manifest, edited.replace("limit = ", "limit = 1000 # was ")).unwrap();
    let ops_config = fs::read_to_string(&manifest).unwrap();
    let ops_config = &ops_config[ops_config.find("[config]").unwrap()..];

    let new = example_bundle("quota", "1.1.0", &quota_release(), None, bundles.path());
    let output = berth(&layout, &[], &["install", &new.to_string_lossy()]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_printed(&output, "kept:       `enabled`");
    assert_printed(&output, "kept:       `config`");
    let upgraded = fs::read_to_string(&manifest).unwrap();
    assert!(upgraded.contains("version = \"1.1.0\"") && upgraded.contains("enabled = false"), "{upgraded}");
    assert!(upgraded.ends_with(ops_config), "the [config] ops wrote is kept as written:\n{upgraded}");

    // A host accepts 1.1.0.
    assert!(berth(&layout, &[], &["enable", "quota"]).status.success());
    assert!(berth(&layout, &[], &["check"]).status.success());

    // A bundle whose manifest pins its own (older) version is refused: only ops pin.
    fs::remove_dir_all(layout.plugins().join("quota")).unwrap();
    let text_of = berth_tests::example_manifest("quota");
    let pinned = berth::Bundle::new(
        &text_of.replace("api = ", "pin = \"1.0.0\"\napi = "),
        &library_file("quota"),
        fs::read(library("quota")).unwrap(),
    )
    .unwrap();
    let pinned_path = bundles.path().join("pinned.tar.gz");
    pinned.write(&pinned_path).unwrap();
    let output = berth(&layout, &[], &["install", &pinned_path.to_string_lossy()]);
    assert!(!output.status.success());
    assert_printed(&output, "only ops pin a version");
    // And the record of accepted versions is checked before anything is unpacked.
    let output = berth(&layout, &[], &["install", &old.to_string_lossy()]);
    assert!(!output.status.success());
    assert_printed(&output, "this host has accepted 1.1.0");
}

#[test]
fn issue_11_hostile_bundles_are_refused_within_bounded_memory() {
    use berth_tests::{RawEntry, measure, write_tar_gz};
    use tar::EntryType;
    let layout = Layout::new();
    let dir = layout.plugins().with_file_name("bundles");
    fs::create_dir_all(&dir).unwrap();
    let name_of = |size: u64| format!("demo/{}", "a".repeat(60)).into_bytes().into_iter().cycle().take(size as usize);
    let long_name: Vec<u8> = name_of(1000).collect();
    let manifest = b"name = \"demo\"\nversion = \"1.0.0\"\napi = \"^1.0\"\n[library]\nlinux = \"libdemo.so\"\n";
    let toml = || RawEntry { kind: EntryType::Regular, name: "demo/demo.toml", size: 76, head: manifest, fill: 0 };
    let cases: Vec<(&str, Vec<RawEntry>, &str)> = vec![
        (
            "a GNU long name of 256 MiB",
            vec![RawEntry {
                kind: EntryType::GNULongName,
                name: "././@LongLink",
                size: 256 << 20,
                head: &long_name,
                fill: b'a',
            }],
            "it has a GNU long-name header of 268435456 bytes, more than the 65536 allowed",
        ),
        (
            "a pax header of 256 MiB",
            vec![RawEntry { kind: EntryType::XHeader, name: "demo/PaxHeader", size: 256 << 20, head: b"", fill: b'1' }],
            "it has a pax header of 268435456 bytes",
        ),
        (
            "a library of 200 MiB of zeros",
            vec![RawEntry { kind: EntryType::Regular, name: "demo/libdemo.so", size: 200 << 20, head: b"", fill: 0 }],
            "libdemo.so is not a",
        ),
        ("10,000 copies of the manifest", (0..10_000).map(|_| toml()).collect(), "it holds \"demo/demo.toml\" twice"),
    ];
    assert_eq!(manifest.len(), 76);
    for (what, entries, refusal) in &cases {
        let bundle = dir.join("demo-1.0.0-x86_64-unknown-linux-gnu.tar.gz");
        write_tar_gz(&bundle, entries);
        for command in ["verify", "install"] {
            let mut berth = layout.berth();
            berth.arg(command).arg(&bundle);
            if command == "install" {
                berth.arg("--to").arg(layout.plugins());
            }
            let run = measure(&format!("berth {command} of {what}"), &berth, std::time::Duration::from_secs(120));
            let out = output_text(&run.output);
            assert!(!run.output.status.success(), "{out}");
            assert!(out.contains(&bundle.display().to_string()) && out.contains(refusal), "{refusal:?} not in:\n{out}");
            assert!(run.peak_rss_kib < 100 * 1024, "{what}: peak memory {} KiB", run.peak_rss_kib);
        }
    }
    assert_eq!(fs::read_dir(layout.plugins()).unwrap().count(), 0, "a refused install leaves nothing behind");
}

#[test]
fn issue_11_install_names_the_bundle_and_leaves_no_staging_behind() {
    let layout = Layout::new();
    let bundles = tempfile::tempdir().unwrap();
    let greeter = example_bundle("greeter", "1.0.0", &library("greeter"), None, bundles.path());
    let plugins = layout.plugins().to_string_lossy().into_owned();

    // A directory given as a bundle is named as one.
    let output = berth(&layout, &[], &["verify", &bundles.path().to_string_lossy()]);
    assert_printed(
        &output,
        "it is a directory, not a regular file; put a regular file there; give the path of a bundle file",
    );

    // A plain file where the plugin's directory goes: refused, and nothing is left behind.
    fs::write(layout.plugins().join("greeter"), "not a directory").unwrap();
    let output = berth(&layout, &[], &["install", &greeter.to_string_lossy(), "--to", &plugins]);
    assert!(!output.status.success());
    assert_printed(&output, "greeter is not a directory, and the plugin's directory goes there; move it away");
    fs::remove_file(layout.plugins().join("greeter")).unwrap();

    // An unsigned install: the trust line names the signature file, not the staging directory it checked.
    let output = berth(&layout, &[], &["install", &greeter.to_string_lossy(), "--to", &plugins]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_printed(&output, "trust:      untrusted: no signature (no libgreeter.so.minisig beside the library)");
    assert!(!output_text(&output).contains(".install-"), "{}", output_text(&output));
    let entries: Vec<_> = fs::read_dir(layout.plugins()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(entries, ["greeter"], "only the plugin's directory remains");
}
