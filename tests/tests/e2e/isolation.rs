//! Process isolation (`isolation = "process"`, berth-isolate): the misbehaving fixture in a worker process,
//! called through the same `PluginHandle`; its crashes, deadline kills and sandbox refusals contained and
//! reported while the host serves on.
#![cfg(target_os = "linux")]

use std::fs;
use std::path::Path;
use std::time::Duration;

use berth::{CallError, EventKind, Host, PluginState};
use berth_tests::{Layout, Reloadable, install_atomically, library_file, status_of, wait_for, wait_until};

const MISBEHAVING: &str = "misbehaving";
const EVENTS: Duration = Duration::from_secs(20);

/// Puts `top` (top-level keys such as `isolation = "process"`) at the start of the manifest in `dir`, and
/// `tables` at its end.
fn edit_manifest(dir: &Path, top: &str, tables: &str) {
    let path = dir.join("misbehaving.toml");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, format!("{top}\n{text}\n{tables}\n")).unwrap();
}

/// The misbehaving fixture, isolated by its manifest with `tables` added; its host, loaded.
fn isolated(layout: &Layout, tables: &str) -> Host {
    let dir = layout.add_misbehaving("ok");
    edit_manifest(&dir, "isolation = \"process\"", tables);
    let host = layout.host();
    let report = host.load_all();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    host
}

fn pid(host: &Host) -> u32 {
    host.plugin(MISBEHAVING).unwrap().call_json("pid", &()).unwrap()
}

/// An isolated plugin answers through the same handle from a process of its own; typed interfaces are refused
/// with the reason; its status names the worker and the sandbox in force.
#[test]
fn an_isolated_plugin_answers_from_its_own_process_through_the_same_handle() {
    let layout = Layout::new();
    let host = isolated(&layout, "");
    let plugin = host.plugin(MISBEHAVING).unwrap();
    assert_eq!(plugin.call_json::<_, u64>("add", &(2, 3)).unwrap(), 5);
    let worker = pid(&host);
    assert_ne!(worker, std::process::id());
    assert_eq!(plugin.health().unwrap().status, berth::HealthStatus::Ok);
    let refused = plugin.call("fail", b"").unwrap_err();
    assert!(matches!(&refused, CallError::Plugin { message, .. } if message == "try later"), "{refused:?}");

    let status = status_of(&host, MISBEHAVING);
    let worker_status = status.worker.expect("an isolated plugin reports its worker");
    assert_eq!(worker_status.pid, Some(worker));
    assert!(
        worker_status.sandbox.enforced.iter().any(|line| line.starts_with("files: read nothing")),
        "{worker_status:?}"
    );
    assert!(worker_status.sandbox.enforced.iter().any(|line| line == "no_new_privs"), "{worker_status:?}");
    let typed = plugin.extension::<berth::ext::state::StateV1>().err().unwrap().to_string();
    assert!(typed.contains("typed extension interfaces are in-process only"), "{typed}");
    // A panic is contained in the worker as in-process, and takes the generation out of service the same way.
    let panicked = plugin.call("panic", b"").unwrap_err();
    assert!(panicked.to_string().contains("call exploded on purpose"), "{panicked}");
}

/// A worker that aborts fails the call in flight with `Crashed` naming the generation and the signal; an event
/// says the same; the worker is started again and serves, and the host never noticed.
#[test]
fn a_worker_that_aborts_fails_its_call_with_the_signal_and_is_restarted() {
    let layout = Layout::new();
    let host = layout.host();
    let dir = layout.add_misbehaving("ok");
    edit_manifest(&dir, "isolation = \"process\"", "");
    let events = host.subscribe();
    assert!(host.load_all().failures.is_empty());
    let first = pid(&host);
    let plugin = host.plugin(MISBEHAVING).unwrap();

    let crashed = plugin.call("abort", b"").unwrap_err();
    let CallError::Crashed { plugin: name, generation, reason } = &crashed else { panic!("{crashed:?}") };
    assert_eq!((name.as_str(), *generation), (MISBEHAVING, 1));
    assert!(reason.contains("was killed by signal 6 (SIGABRT)"), "{crashed}");
    let event = wait_for(&events, EVENTS, |e| e.kind == EventKind::Crashed);
    assert!(event.detail.contains(&format!("worker process {first} was killed by signal 6 (SIGABRT)")), "{event}");
    wait_for(&events, EVENTS, |e| e.kind == EventKind::Restarted);
    assert_ne!(pid(&host), first);
    assert_eq!(plugin.call_json::<_, u64>("add", &(1, 1)).unwrap(), 2);
    let status = status_of(&host, MISBEHAVING);
    assert_eq!(status.state, PluginState::Active);
    assert_eq!(status.worker.unwrap().restarts, 1);
    wait_until("the worker's last crash is kept", || {
        status_of(&host, MISBEHAVING).worker.unwrap().last_crash.is_some()
    });
}

/// Each way a worker can end is contained, reported with its cause, and followed by a restart: a segfault, a
/// stack overflow, running out of its heap limit, an exit.
#[test]
fn segfaults_stack_overflows_memory_exhaustion_and_exits_are_each_contained_and_named() {
    let layout = Layout::new();
    let host = isolated(&layout, "[permissions]\nmemory_mib = 256\n");
    let plugin = host.plugin(MISBEHAVING).unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("segfault", b"", "was killed by signal 11 (SIGSEGV)"),
        ("overflow", b"100000000", "has overflowed its stack"),
        ("allocate", b"", "memory allocation of"),
        ("exit", b"3", "exited with status 3"),
    ];
    for (restarts, (method, input, cause)) in cases.into_iter().enumerate() {
        let crashed = plugin.call(method, input).unwrap_err();
        assert!(matches!(&crashed, CallError::Crashed { reason, .. } if reason.contains(cause)), "{method}: {crashed}");
        wait_until("the worker is restarted", || {
            status_of(&host, MISBEHAVING).worker.is_some_and(|w| w.restarts == restarts as u64 + 1 && w.pid.is_some())
        });
        assert_eq!(plugin.call_json::<_, u64>("add", &(2, 2)).unwrap(), 4, "after {method}");
    }
}

/// A call past its deadline kills the worker (real cancellation: the loop stops with its process): the caller
/// gets `Timeout`, the worker is restarted and serves.
#[test]
fn a_call_past_its_deadline_kills_the_worker_which_is_restarted() {
    let layout = Layout::new();
    let host = isolated(&layout, "[limits]\ncall_timeout = \"300ms\"\n");
    let plugin = host.plugin(MISBEHAVING).unwrap();
    let first = pid(&host);
    let timed_out = plugin.call("spin", b"").unwrap_err();
    assert!(matches!(&timed_out, CallError::Timeout { .. }), "{timed_out:?}");
    wait_until("the worker is restarted", || status_of(&host, MISBEHAVING).worker.is_some_and(|w| w.restarts == 1));
    let last = status_of(&host, MISBEHAVING).worker.unwrap().last_crash.unwrap();
    assert!(last.contains("was killed because a call of \"spin\" ran past its deadline of 300 ms"), "{last}");
    assert_ne!(pid(&host), first);
    assert!(!Path::new(&format!("/proc/{first}")).exists(), "the spinning worker {first} is gone");
}

/// What the sandbox does not grant is refused by the OS with an error the plugin handles: a file outside its
/// grant, a TCP port it may not connect to (a listener the test opens on 127.0.0.1), threads past its limit.
/// What it grants works.
#[test]
fn the_sandbox_refuses_files_ports_and_threads_not_granted_with_os_errors() {
    let layout = Layout::new();
    let granted = tempfile::tempdir().unwrap();
    let secret = tempfile::NamedTempFile::new().unwrap();
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (open_port, closed_port) = (open.local_addr().unwrap().port(), closed.local_addr().unwrap().port());
    let tables = format!(
        "[permissions]\nwrite = [{:?}]\nconnect = [{open_port}]\nthreads = 4\n",
        granted.path().display().to_string()
    );
    let host = isolated(&layout, &tables);
    let plugin = host.plugin(MISBEHAVING).unwrap();
    let call = |method: &str, input: &str| -> String { plugin.call_json(method, &input).unwrap() };
    let secret_path = secret.path().display().to_string();
    assert_eq!(call("read", &secret_path), "PermissionDenied: Permission denied (os error 13)");
    let inside = granted.path().join("note").display().to_string();
    assert_eq!(call("write", &inside), "ok");
    assert_eq!(call("read", &inside), "ok");
    let connect = |port: u16| -> String { plugin.call_json("connect", &port).unwrap() };
    assert_eq!(connect(open_port), "ok");
    assert_eq!(connect(closed_port), "PermissionDenied: Permission denied (os error 13)");
    let started: u32 = plugin.call_json("threads", &64).unwrap();
    assert_eq!(started, 4, "the plugin may start 4 threads of its own");
    assert_eq!(plugin.call_json::<_, u64>("add", &(1, 2)).unwrap(), 3, "the worker serves on");
    let sandbox = status_of(&host, MISBEHAVING).worker.unwrap().sandbox;
    assert!(sandbox.missing.is_empty(), "{sandbox:?}");
    let expected = format!("TCP: connect to ports {open_port}; bind ports none");
    assert!(sandbox.enforced.contains(&expected), "{sandbox:?}");
}

/// Ops isolate a plugin its publisher did not mark (`[isolation] process` in the host configuration) and can
/// only narrow its grants.
#[test]
fn ops_can_isolate_a_plugin_and_narrow_its_grants_but_never_widen_them() {
    let layout = Layout::new();
    let dir = layout.add_misbehaving("ok");
    edit_manifest(&dir, "", "[permissions]\nconnect = [1, 2]\n");
    let config_file = layout.plugins().parent().unwrap().join("host.toml");
    let worker = berth_tests::worker_bin().display().to_string();
    fs::write(
        &config_file,
        format!(
            "[isolation]\nworker = {worker:?}\nprocess = [\"misbehaving\"]\n[isolation.permissions.misbehaving]\nconnect = [2, 3]\n"
        ),
    )
    .unwrap();
    let mut config = berth::HostConfig::from_file(&config_file).unwrap();
    config.plugin_dirs = vec![layout.plugins()];
    config.cache_dir = layout.cache();
    config.data_dir = layout.data();
    let host = berth_tests::isolating(config);
    assert!(host.load_all().failures.is_empty());
    assert_ne!(pid(&host), std::process::id());
    let sandbox = status_of(&host, MISBEHAVING).worker.unwrap().sandbox;
    assert!(sandbox.enforced.contains(&"TCP: connect to ports 2; bind ports none".to_owned()), "{sandbox:?}");
}

/// A missing worker executable is a refusal naming every place the host looked.
#[test]
fn a_missing_worker_is_refused_naming_where_the_host_looked() {
    let layout = Layout::new();
    let dir = layout.add_misbehaving("ok");
    edit_manifest(&dir, "isolation = \"process\"", "");
    let mut config = layout.config();
    config.isolation.worker = Some(layout.plugins().join("no-such-worker"));
    let host = berth_tests::isolating(config);
    let report = host.load_all();
    let refusal = report.failures[0].error.to_string();
    assert!(refusal.starts_with("isolation: no worker executable found; looked at "), "{refusal}");
    assert!(refusal.contains("no-such-worker ([isolation] worker in the host configuration)"), "{refusal}");
    assert!(refusal.contains("(next to the current executable)"), "{refusal}");
    // A host without an isolator says how to get one.
    let plain = Host::new(layout.config()).unwrap();
    let refusal = plain.load_all().failures[0].error.to_string();
    assert!(refusal.contains("HostBuilder::isolator(berth_isolate::ProcessIsolator::new())"), "{refusal}");
}

/// If the host dies, even by SIGKILL, its workers exit with it: the `berth` CLI serving an isolated plugin is
/// killed, and its worker is gone.
#[test]
fn sigkill_of_the_host_leaves_no_worker_behind() {
    let layout = Layout::new();
    let dir = layout.add_misbehaving("ok");
    edit_manifest(&dir, "isolation = \"process\"", "");
    let mut command = layout.berth();
    command.arg("run");
    let mut run = berth_tests::BerthRun::start(command);
    run.wait_line(|line| line.starts_with("berth: serving"));
    let host_pid = run.pid();
    let workers = || -> Vec<u32> {
        fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| stat.rsplit(')').next()?.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(host_pid)
            })
            .collect()
    };
    wait_until("the host has its worker", || !workers().is_empty());
    let worker = workers()[0];
    run.kill();
    wait_until("the worker is gone", || {
        fs::read_to_string(format!("/proc/{worker}/stat")).map_or(true, |stat| stat.contains(") Z "))
    });
}

/// A reload of an isolated plugin starts a new worker, hands the state over from the old one, swaps, and lets
/// the old worker exit; a `[config]` edit reaches an isolated plugin with `berth.reconfigure/1` in place.
#[test]
fn a_reload_hands_state_to_a_new_worker_and_the_old_one_exits() {
    let layout = Layout::new();
    let dir = layout.add_reloadable(Reloadable::marked("one"), "isolation = \"process\"");
    let greeter = layout.add_example("greeter");
    let manifest = greeter.join("greeter.toml");
    let original = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, format!("isolation = \"process\"\n{original}")).unwrap();
    let host = layout.host();
    assert!(host.load_all().failures.is_empty());
    let plugin = host.plugin("reloadable").unwrap();
    for _ in 0..3 {
        plugin.call_json::<_, u64>("count", &()).unwrap();
    }
    let old = status_of(&host, "reloadable").worker.unwrap().pid.unwrap();
    install_atomically(&dir.join(library_file("reloadable")), &fs::read(Reloadable::marked("two").library()).unwrap());
    let report = host.load_all();
    assert_eq!(report.reloaded.len(), 1, "{report:?}");
    assert_eq!(plugin.call_json::<_, String>("mark", &()).unwrap(), "two");
    assert_eq!(plugin.call_json::<_, u64>("count", &()).unwrap(), 4, "the count came over from the old worker");
    let new = status_of(&host, "reloadable").worker.unwrap().pid.unwrap();
    assert_ne!(new, old);
    wait_until("the old worker exits", || !Path::new(&format!("/proc/{old}")).exists());

    let greet = || host.plugin("greeter").unwrap().call_json::<_, String>("greet", &serde_json::json!({"name": "ops"}));
    assert_eq!(greet().unwrap(), "Hello, ops!");
    let before = status_of(&host, "greeter").worker.unwrap().pid;
    fs::write(&manifest, format!("isolation = \"process\"\n{}", original.replace("\"Hello\"", "\"Ahoy\""))).unwrap();
    let report = host.load_all();
    assert_eq!(report.reconfigured.len(), 1, "{report:?}");
    assert_eq!(greet().unwrap(), "Ahoy, ops!");
    assert_eq!(status_of(&host, "greeter").worker.unwrap().pid, before, "reconfigured in place, same worker");
}

/// Chaos: healthy plugins, one isolated and one in-process, called by 8 threads without pause while an
/// isolated crasher crashes 100 times and is restarted each time: not one call to the healthy ones fails.
#[test]
fn healthy_plugins_serve_every_call_while_a_crasher_crashes_a_hundred_times() {
    let layout = Layout::new();
    let crasher = layout.add_misbehaving("ok");
    edit_manifest(&crasher, "isolation = \"process\"", "");
    layout.add_example("greeter");
    layout.add_reloadable(Reloadable::marked("one"), "isolation = \"process\"");
    let host = std::sync::Arc::new(layout.host());
    assert!(host.load_all().failures.is_empty());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..8)
        .map(|n| {
            let (host, stop) = (std::sync::Arc::clone(&host), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let (mut calls, mut failed) = (0u64, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let outcome = if n % 2 == 0 {
                        host.plugin("reloadable").unwrap().call_json::<_, String>("mark", &()).map(|_| ())
                    } else {
                        let name = serde_json::json!({"name": "chaos"});
                        host.plugin("greeter").unwrap().call_json::<_, String>("greet", &name).map(|_| ())
                    };
                    calls += 1;
                    if let Err(error) = outcome {
                        failed.push(error.to_string());
                    }
                }
                (calls, failed)
            })
        })
        .collect();
    let plugin = host.plugin(MISBEHAVING).unwrap();
    for crash in 1..=100u64 {
        let method = ["abort", "segfault", "exit"][crash as usize % 3];
        let crashed = plugin.call(method, b"1").unwrap_err();
        assert!(matches!(crashed, CallError::Crashed { .. }), "{crashed:?}");
        wait_until("the crasher is restarted", || {
            status_of(&host, MISBEHAVING).worker.is_some_and(|w| w.restarts == crash && w.pid.is_some())
        });
        // An answer resets the restart backoff: a worker that serves between crashes restarts at once, one that
        // crashes before it answers anything waits twice as long each time.
        assert_eq!(plugin.call_json::<_, u64>("add", &(crash, 1)).unwrap(), crash + 1);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut calls, mut failed) = (0, Vec::new());
    for caller in callers {
        let (n, f) = caller.join().unwrap();
        calls += n;
        failed.extend(f);
    }
    println!("{calls} calls to the healthy plugins during 100 crashes, {} failed", failed.len());
    assert!(calls > 1000, "the healthy plugins were called: {calls}");
    assert!(failed.is_empty(), "{} of {calls} calls failed, first: {}", failed.len(), failed[0]);
}
