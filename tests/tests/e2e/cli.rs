//! The `berth` binary as ops run it: list (table and JSON), check (one line per failure, exit code,
//! --verbose), call, info (plugin and file), run (live reload, SIGTERM), and where plugin directories come
//! from.

use std::fs;
use std::path::Path;
use std::process::Output;

use berth_tests::{ApiVariant, BerthRun, Layout, Reloadable, install_atomically, library, library_file};
use serde_json::Value;

fn berth(layout: &Layout, args: &[&str]) -> Output {
    layout.berth().args(args).output().expect("berth runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn layout_with_one_failure() -> Layout {
    let layout = Layout::new();
    layout.add_example("greeter");
    layout.add_example("quota");
    layout.add_api_variant(ApiVariant::ChangedLayout);
    layout
}

#[test]
fn list_shows_a_table_and_json() {
    let layout = layout_with_one_failure();
    let table = berth(&layout, &["list"]);
    assert!(table.status.success());
    let text = stdout(&table);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("STATE"), "{text}");
    assert!(lines.iter().any(|l| l.starts_with("greeter ") && l.contains(" active ")), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("probe-changed-layout ") && l.contains(" failed ") && l.contains("layout differs")),
        "{text}"
    );

    let json = berth(&layout, &["list", "--json"]);
    let value: Value = serde_json::from_slice(&json.stdout).expect("list --json prints JSON");
    let plugins = value["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 3);
    let quota = plugins.iter().find(|p| p["name"] == "quota").unwrap();
    assert_eq!((quota["state"].as_str(), quota["generation"].as_u64()), (Some("active"), Some(1)));
    assert_eq!(quota["library"]["api_version"], berth::HOST_API_VERSION);
    assert_eq!(value["host_api"], berth::HOST_API_VERSION);
}

#[test]
fn check_prints_one_line_per_failure_and_exits_non_zero() {
    let layout = layout_with_one_failure();
    let output = berth(&layout, &["check"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let failures: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert_eq!(failures.len(), 1, "{text}");
    assert!(failures[0].contains("probe-changed-layout") && failures[0].contains("layout differs"), "{text}");
    assert!(text.contains("3 manifest(s) checked against plugin-api 1.3.0: 2 loaded, 0 disabled, 1 failed"), "{text}");

    let verbose = stdout(&berth(&layout, &["check", "--verbose"]));
    assert!(verbose.lines().count() > text.lines().count() + 20, "--verbose adds abi_stable's full report");

    let good = Layout::new();
    good.add_example("greeter");
    assert_eq!(berth(&good, &["check"]).status.code(), Some(0));
}

#[test]
fn call_prints_the_answer_or_fails_with_the_reason() {
    let layout = layout_with_one_failure();
    let output = berth(&layout, &["call", "greeter", "greet", r#"{"name":"ops"}"#]);
    assert!(output.status.success());
    assert_eq!(stdout(&output).trim(), r#""Hello, ops!""#);

    let unknown = berth(&layout, &["call", "greeter", "wave"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no method named \"wave\""));

    let failed = berth(&layout, &["call", "probe-changed-layout", "api"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("is failed: plugin-api layout differs"));

    let not_json = berth(&layout, &["call", "greeter", "greet", "{oops"]);
    assert!(String::from_utf8_lossy(&not_json.stderr).contains("INPUT is not JSON"));
}

#[test]
fn info_describes_a_plugin_or_a_library_file() {
    let layout = layout_with_one_failure();
    let by_name = stdout(&berth(&layout, &["info", "quota"]));
    for expected in [
        "name:       quota",
        "state:      active",
        "generation: 1",
        "api:        berth-plugin-api 1.3.0",
        "health:     Ok",
    ] {
        assert!(by_name.contains(expected), "{expected:?} missing in {by_name}");
    }
    assert!(by_name.contains("built by:   rustc "), "{by_name}");

    let file = library("text-filters");
    let by_file = stdout(&berth(&layout, &["info", &file.to_string_lossy()]));
    assert!(by_file.contains("name:       text-filters") && by_file.contains("x86_64"), "{by_file}");

    let not_plugin = berth(&layout, &["info", &library("not-a-plugin").to_string_lossy()]);
    assert_eq!(not_plugin.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_plugin.stderr).contains("is not a Berth plugin"));
}

#[test]
fn plugin_directories_come_from_the_flag_the_environment_or_a_config_file() {
    let layout = Layout::new();
    layout.add_example("greeter");
    let run = |envs: &[(&str, &Path)], args: &[&str]| -> String {
        let mut command = layout.berth_without_plugin_dirs();
        command.args(args).current_dir(layout.plugins().parent().unwrap());
        for (key, value) in envs {
            command.env(key, value);
        }
        stdout(&command.output().unwrap())
    };
    let from_env = run(&[("BERTH_PLUGIN_PATH", &layout.plugins())], &["list"]);
    assert!(from_env.contains("greeter"), "{from_env}");

    let config = layout.plugins().parent().unwrap().join("host.toml");
    std::fs::write(&config, "plugin_dirs = [\"plugins\"]\n").unwrap();
    let from_config = run(&[], &["--config", &config.to_string_lossy(), "list"]);
    assert!(from_config.contains("greeter"), "{from_config}");
    let from_config_env = run(&[("BERTH_CONFIG", &config)], &["list"]);
    assert!(from_config_env.contains("greeter"), "{from_config_env}");

    // The flag wins over the environment.
    let empty = tempfile::tempdir().unwrap();
    let flag =
        run(&[("BERTH_PLUGIN_PATH", &layout.plugins())], &["--plugin-dir", &empty.path().to_string_lossy(), "list"]);
    assert!(!flag.contains("greeter"), "{flag}");

    // Issue 12: with no --config and no BERTH_CONFIG, the user's $XDG_CONFIG_HOME/berth/config.toml is read.
    let user_config = layout.plugins().with_file_name("config").join("berth");
    std::fs::create_dir_all(&user_config).unwrap();
    let plugins = layout.plugins().to_string_lossy().into_owned();
    std::fs::write(user_config.join("config.toml"), format!("plugin_dirs = [{plugins:?}]\n")).unwrap();
    let from_default_file = run(&[], &["list"]);
    assert!(from_default_file.contains("greeter"), "{from_default_file}");
    let other = empty.path().join("other.toml");
    std::fs::write(&other, format!("plugin_dirs = [{:?}]\n", empty.path().to_string_lossy())).unwrap();
    let elsewhere = run(&[], &["--config", &other.to_string_lossy(), "list"]);
    assert!(elsewhere.starts_with("NAME") && !elsewhere.contains("greeter"), "--config wins: {elsewhere}");
}

#[test]
fn run_serves_and_reloads_live_then_stops_on_sigterm_dependents_first() {
    let layout = Layout::new();
    let dir = layout.add_reloadable(Reloadable::marked("one"), "");
    let two = std::fs::read(Reloadable::marked("two").library()).unwrap();
    layout.add_example("greeter");
    let config = layout.plugins().with_file_name("berth.toml");
    std::fs::write(&config, "[reload]\ndebounce = \"50ms\"\n").unwrap();
    let mut command = layout.berth();
    command.args(["--config", &config.to_string_lossy(), "run", "--call", "reloadable mark null", "--every", "20ms"]);
    let mut run = BerthRun::start(command);
    run.wait_line(|l| l.starts_with("berth: serving, watching"));
    run.wait_line(|l| l == "call reloadable mark: \"one\"");
    install_atomically(&dir.join(library_file("reloadable")), &two);
    run.wait_line(|l| l == "event: reloadable: reloaded 1.0.0 (generation 1) -> 1.0.0 (generation 2)");
    run.wait_line(|l| l == "call reloadable mark: \"two\"");
    let rest = run.stop();
    let position = |wanted: &str| rest.iter().position(|l| l.starts_with(wanted));
    let (reloadable, greeter) = (position("event: reloadable: shut down"), position("event: greeter: shut down"));
    assert!(reloadable.is_some() && greeter.is_some(), "{rest:?}");
    assert!(reloadable < greeter, "the last loaded shuts down first: {rest:?}");
    assert_eq!(rest.last().map(String::as_str), Some("berth: stopped"), "{rest:?}");
}

/// Issue 11: configuration that is not what it seems is refused, and every piece of advice works when
/// followed.
#[cfg(unix)]
#[test]
fn issue_11_configuration_mistakes_get_messages_whose_advice_works() {
    use std::os::unix::fs::PermissionsExt;
    let layout = Layout::new();
    let dir = layout.add_example("greeter");
    let text = |output: &Output| berth_tests::output_text(output);

    // A boolean environment variable takes true or false, nothing else.
    fs::set_permissions(dir.join(library_file("greeter")), fs::Permissions::from_mode(0o664)).unwrap();
    for value in ["1", "yes", "banana", ""] {
        let output = layout.berth().env("BERTH_INSECURE_PERMISSIONS", value).arg("check").output().unwrap();
        assert_eq!(output.status.code(), Some(2), "BERTH_INSECURE_PERMISSIONS={value:?}: {}", text(&output));
        assert!(text(&output).contains("set BERTH_INSECURE_PERMISSIONS to true or false"), "{}", text(&output));
    }
    let checked = |value: &str| layout.berth().env("BERTH_INSECURE_PERMISSIONS", value).arg("check").output().unwrap();
    assert!(checked("true").status.success(), "{}", text(&checked("true")));
    assert!(text(&checked("false")).contains("its group can write it"), "{}", text(&checked("false")));
    fs::set_permissions(dir.join(library_file("greeter")), fs::Permissions::from_mode(0o644)).unwrap();

    // A plugin directory that does not exist is named as such, and is no manifest.
    let missing = layout.plugins().with_file_name("nope");
    let in_missing = |args: &[&std::ffi::OsStr]| {
        layout.berth_without_plugin_dirs().arg("--plugin-dir").arg(&missing).args(args).output().unwrap()
    };
    let output = in_missing(&["check".as_ref()]);
    assert!(
        text(&output).contains(&format!("plugin directory {}: it does not exist", missing.display())),
        "{}",
        text(&output)
    );
    assert!(
        text(&output).contains("0 manifest(s) checked") && text(&output).contains("1 plugin directory unreadable"),
        "{}",
        text(&output)
    );
    let output = in_missing(&["verify".as_ref(), "greeter".as_ref()]);
    assert!(text(&output).contains("it does not exist"), "{}", text(&output));
    let output = berth(&layout, &["verify", "nobody"]);
    assert!(
        text(&output).contains("no plugin named \"nobody\" is installed in")
            && text(&output).contains("`berth list` shows the plugins"),
        "{}",
        text(&output)
    );

    // `berth install` into a plugin directory that does not exist says to create it; done, it installs.
    let bundles = tempfile::tempdir().unwrap();
    let bundle = berth_tests::example_bundle("quota", "1.0.0", &library("quota"), None, bundles.path());
    let output = in_missing(&["install".as_ref(), bundle.as_os_str()]);
    let expected = format!(
        "plugin directory {} does not exist; create it first (mkdir -p {})",
        missing.display(),
        missing.display()
    );
    assert!(text(&output).contains(&expected), "{}", text(&output));
    fs::create_dir_all(&missing).unwrap();
    let output = in_missing(&["install".as_ref(), bundle.as_os_str()]);
    assert!(output.status.success(), "{}", text(&output));

    // Installed elsewhere: the advice names the plugin directory that holds it, and installing there works.
    let vendor = layout.plugins().join("vendor");
    fs::create_dir(&vendor).unwrap();
    fs::rename(&dir, vendor.join("greeter")).unwrap();
    let greeter = berth_tests::example_bundle("greeter", "1.0.0", &library("greeter"), None, bundles.path());
    let output = layout.berth().arg("install").arg(&greeter).output().unwrap();
    let advice = format!("install into the plugin directory that holds it, {}", vendor.display());
    assert!(text(&output).contains(&advice), "{}", text(&output));
    let output = layout.berth().arg("install").arg(&greeter).arg("--to").arg(&vendor).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    // Its directory named otherwise: an install cannot replace it, and the message says what can.
    fs::rename(vendor.join("greeter"), vendor.join("greeter-old")).unwrap();
    let output = layout.berth().arg("install").arg(&greeter).arg("--to").arg(&vendor).output().unwrap();
    assert!(
        text(&output).contains("its directory is not named greeter, so an install cannot replace it"),
        "{}",
        text(&output)
    );
    fs::rename(vendor.join("greeter-old"), vendor.join("greeter")).unwrap();
    let output = layout.berth().arg("install").arg(&greeter).arg("--to").arg(&vendor).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));

    // A host configuration file among the plugins is named as one.
    fs::write(layout.plugins().join("berth.toml"), "plugin_dirs = [\"plugins\"]\ncache_dir = \"cache\"\n").unwrap();
    let output = berth(&layout, &["check"]);
    assert!(text(&output).contains("this is a host configuration file, not a plugin manifest"), "{}", text(&output));
}

/// Issue 12: a closed stdout ends the command quietly (exit 0, as ripgrep does) instead of a panic; an invalid
/// `--log` is refused with the accepted forms; the log on stderr is coloured only on a terminal or when asked.
#[test]
fn issue_12_closed_output_log_filters_and_colour_behave_as_cli_users_expect() {
    let layout = layout_with_one_failure();
    let mut list = layout
        .berth()
        .arg("list")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(list.stdout.take());
    let output = list.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", berth_tests::output_text(&output));
    assert!(output.stderr.is_empty(), "{}", berth_tests::output_text(&output));

    let output = layout.berth().args(["--log", "warn=x=y", "list"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        berth_tests::output_text(&output).contains("give a level (error, warn, info, debug, trace)"),
        "{}",
        berth_tests::output_text(&output)
    );

    // stderr is a pipe here, not a terminal: no escape codes unless asked for.
    let output = layout.berth().args(["--log", "warn", "check"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("WARN") && !stderr.contains('\u{1b}'), "{stderr:?}");
    let output = layout.berth().args(["--log", "warn", "--color", "always", "check"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("\u{1b}["), "--color always colours");

    // Shell completions and the man page, generated from the same definitions as the parser.
    let completions = stdout(&layout.berth().args(["completions", "bash"]).output().unwrap());
    assert!(completions.contains("_berth()") && completions.contains("install"), "{completions}");
    let man = stdout(&layout.berth().arg("man").output().unwrap());
    assert!(man.contains(".TH berth 1") && man.contains("insecure\\-permissions"), "{man}");
}

/// `--json` on every command that reports: each prints one document of `berth::json` schema 1 (`run`, one per
/// line), with the fields a program reads.
#[test]
fn every_reporting_command_prints_versioned_json() {
    let json = |output: &Output| -> Value {
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(output)))
    };
    let layout = layout_with_one_failure();

    let check = berth(&layout, &["check", "--json", "--host-api", "2.0.0"]);
    assert_eq!(check.status.code(), Some(1));
    let check = json(&check);
    assert_eq!(
        (check["schema"].as_u64(), check["checked"].as_u64(), check["failed"].as_u64()),
        (Some(1), Some(3), Some(1))
    );
    assert!(check["failures"][0]["error"].as_str().unwrap().contains("layout differs"), "{check}");
    let verdicts = check["host_api_check"]["plugins"].as_array().unwrap();
    assert!(verdicts.iter().all(|v| v["loads"] == false && v["reason"].is_string()), "{check}");

    let info = json(&berth(&layout, &["info", "quota", "--json"]));
    assert_eq!(
        (info["schema"].as_u64(), info["kind"].as_str(), info["name"].as_str()),
        (Some(1), Some("plugin"), Some("quota"))
    );
    assert_eq!(
        (info["state"].as_str(), info["trust"]["state"].as_str()),
        (Some("active"), Some("untrusted")),
        "{info}"
    );
    assert_eq!(info["health"]["status"], "ok", "{info}");
    let file = library("greeter").to_string_lossy().into_owned();
    let inspected = json(&berth(&layout, &["info", &file, "--json"]));
    assert_eq!((inspected["kind"].as_str(), inspected["name"].as_str()), (Some("library"), Some("greeter")));

    let bundles = tempfile::tempdir().unwrap();
    let bundle = berth_tests::example_bundle("greeter", "1.0.0", &library("greeter"), None, bundles.path());
    let bundle = bundle.to_string_lossy().into_owned();
    let verified = json(&berth(&layout, &["verify", &bundle, "--json"]));
    assert_eq!((verified["schema"].as_u64(), verified["version"].as_str()), (Some(1), Some("1.0.0")), "{verified}");
    assert_eq!(verified["trust"]["state"], "untrusted", "{verified}");
    let installed = json(&berth(&layout, &["install", &bundle, "--json"]));
    assert_eq!(
        (installed["verified"]["name"].as_str(), installed["replaced"].as_str()),
        (Some("greeter"), Some("1.0.0"))
    );

    let mut run = BerthRun::start({
        let mut command = layout.berth();
        command.args(["run", "--json", "--call", "greeter greet {\"name\":\"ops\"}", "--every", "50ms"]);
        command
    });
    let parse =
        |line: &str| -> Value { serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")) };
    let loaded = parse(&run.wait_line(|l| l.contains(r#""kind":"loaded""#) && l.contains(r#""plugin":"greeter""#)));
    assert_eq!((loaded["type"].as_str(), loaded["generation"].as_u64()), (Some("event"), Some(1)), "{loaded}");
    let serving = parse(&run.wait_line(|l| l.contains(r#""type":"host""#)));
    assert_eq!(serving["state"], "serving");
    let call = parse(&run.wait_line(|l| l.contains(r#""type":"call""#)));
    assert_eq!((call["output"].as_str(), call["schema"].as_u64()), (Some(r#""Hello, ops!""#), Some(1)), "{call}");
    let rest = run.stop();
    assert!(rest.iter().all(|line| serde_json::from_str::<Value>(line).is_ok()), "a line is not JSON: {rest:#?}");
    assert!(rest.last().is_some_and(|line| line.contains(r#""state":"stopped""#)), "{rest:#?}");
}
