//! Supervision that needs the supervisor's passes (berth-runtime's `Supervisor`): calls stuck past their
//! deadline (`[limits] call_timeout`), calls with a caller's deadline (on the plugin's own threads, sync and
//! async), and health checks (`[health]`) with each `on_failing`. Fixture calls hang on a FIFO the test
//! releases; fixture health is what a file the test writes says.
#![cfg(unix)]

use std::fs;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use berth::{CallError, EventKind, Host, PluginState};
use berth_bench_api::MathV1;
use berth_runtime::Supervisor;
use berth_tests::{BENCH_PLUGIN, Fifo, Layout, append_to_manifest, status_of, wait_for, wait_until};

const MISBEHAVING: &str = "misbehaving";
const EVENTS: Duration = Duration::from_secs(10);

/// A layout with the misbehaving fixture, `tables` appended to its manifest; its host, supervised.
fn supervised(layout: &Layout, tables: &str) -> (Arc<Host>, Supervisor) {
    let dir = layout.add_misbehaving("ok");
    append_to_manifest(&dir.join("misbehaving.toml"), tables);
    let host = Arc::new(layout.host());
    let supervisor = Supervisor::start(&host).unwrap();
    let report = host.load_all();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    (host, supervisor)
}

fn hang(host: &Arc<Host>, fifo: &Fifo) -> thread::JoinHandle<Result<String, CallError>> {
    let (host, fifo) = (Arc::clone(host), fifo.path());
    thread::spawn(move || host.plugin(MISBEHAVING).unwrap().call_json::<_, String>("wait", &fifo))
}

/// A call past `call_timeout` is found by a pass while it runs: counted stuck, the plugin degraded naming the
/// method, other calls going on; when it returns its caller gets `Timeout` (not the late answer), and the
/// next pass finds nothing stuck and the plugin active again.
#[test]
fn a_call_past_its_deadline_is_stuck_while_it_runs_and_its_caller_gets_a_timeout() {
    let layout = Layout::new();
    let (host, _supervisor) = supervised(&layout, "[limits]\ncall_timeout = \"50ms\"\n");
    let events = host.subscribe();
    let fifo = Fifo::new(layout.data().with_file_name("hang.fifo"));
    let hung = hang(&host, &fifo);

    let degraded = wait_for(&events, EVENTS, |e| e.kind == EventKind::Degraded);
    assert_eq!(degraded.state, PluginState::Degraded);
    assert!(degraded.detail.starts_with("call \"wait\" has run "), "{degraded}");
    assert!(degraded.detail.ends_with("ms, past its call_timeout of 50 ms"), "{degraded}");
    let status = status_of(&host, MISBEHAVING);
    assert_eq!((status.state, status.stuck, status.timeouts), (PluginState::Degraded, 1, 1));
    assert_eq!(status.call_timeout, Some(Duration::from_millis(50)));
    assert_eq!(status.reason.as_deref(), Some(degraded.detail.as_str()));
    let plugin = host.plugin(MISBEHAVING).unwrap();
    assert_eq!(plugin.call_json::<_, u64>("add", &(1, 2)).unwrap(), 3, "a degraded plugin serves");

    fifo.release_until(|| hung.is_finished());
    match hung.join().unwrap().unwrap_err() {
        CallError::Timeout { plugin, method, after } => {
            assert_eq!((plugin.as_str(), method.as_str()), (MISBEHAVING, "wait"));
            assert!(after >= Duration::from_millis(50), "{after:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let recovered = wait_for(&events, EVENTS, |e| e.kind == EventKind::Recovered);
    assert_eq!(recovered.detail, "no call is stuck past its deadline any more");
    let status = status_of(&host, MISBEHAVING);
    assert_eq!((status.state, status.stuck, status.timeouts), (PluginState::Active, 0, 1), "counted once");
}

/// An overrun counts toward the breaker: with `failures = 1`, one stuck call faults the plugin, and calls
/// are refused while it runs on. The deadline here is the host configuration's default (the manifest sets
/// none).
#[test]
fn a_call_past_its_deadline_counts_toward_the_breaker() {
    let layout = Layout::new();
    let dir = layout.add_misbehaving("ok");
    append_to_manifest(&dir.join("misbehaving.toml"), "[breaker]\nfailures = 1\ncool_down = \"1h\"\n");
    let mut config = layout.config();
    config.call_timeout = Some(Duration::from_millis(20));
    let host = Arc::new(Host::new(config).unwrap());
    let _supervisor = Supervisor::start(&host).unwrap();
    assert!(host.load_all().failures.is_empty());
    assert_eq!(status_of(&host, MISBEHAVING).call_timeout, Some(Duration::from_millis(20)));
    let events = host.subscribe();
    let fifo = Fifo::new(layout.data().with_file_name("hang.fifo"));
    let hung = hang(&host, &fifo);
    let faulted = wait_for(&events, EVENTS, |e| e.kind == EventKind::Faulted);
    assert!(
        faulted.detail.starts_with("1 calls failed in a row ([breaker] failures = 1); the last: call \"wait\" has run"),
        "{faulted}"
    );
    let refused = host.plugin(MISBEHAVING).unwrap().call("add", b"[1,2]").unwrap_err();
    assert!(matches!(refused, CallError::Faulted { .. }), "{refused:?}");
    fifo.release_until(|| hung.is_finished());
    assert!(matches!(hung.join().unwrap(), Err(CallError::Timeout { .. })));
    assert_eq!(status_of(&host, MISBEHAVING).state, PluginState::Faulted, "the late return does not close it");
}

/// A caller's deadline: the answer, or `Timeout` by the deadline while the call runs on a plugin thread;
/// with every plugin thread busy, `Busy` at once. Typed calls and the async forms too.
#[test]
fn a_caller_deadline_answers_by_the_deadline_and_a_full_pool_refuses_at_once() {
    let layout = Layout::new();
    layout.add_bench_plugin(BENCH_PLUGIN, "berth-bench-mark-000001");
    let (host, _supervisor) = supervised(&layout, "[limits]\nmax_concurrent_calls = 1\n");
    let plugin = host.plugin(MISBEHAVING).unwrap();
    assert_eq!(plugin.call_within("add", b"[40,2]", Duration::from_secs(10)).unwrap(), b"42");

    let fifo = Fifo::new(layout.data().with_file_name("hang.fifo"));
    let input = serde_json::to_vec(&fifo.path()).unwrap();
    let started = Instant::now();
    let timed_out = plugin.call_within("wait", &input, Duration::from_millis(100)).unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(
        timed_out.to_string(),
        "plugin \"misbehaving\" did not answer \"wait\" within 100 ms; its answer, if it comes, is dropped"
    );
    let status = status_of(&host, MISBEHAVING);
    assert_eq!((status.call_threads, status.in_flight, status.timeouts), (1, 1, 0), "the call runs on");
    let busy = plugin.call_within("add", b"[1,2]", Duration::from_secs(10)).unwrap_err();
    assert_eq!(busy, CallError::Busy { plugin: MISBEHAVING.into(), threads: 1 });
    fifo.release_until(|| status_of(&host, MISBEHAVING).in_flight == 0);
    wait_until("the pool thread is free again", || {
        plugin.call_within("add", b"[1,2]", Duration::from_secs(10)).is_ok()
    });

    let math = host.plugin(BENCH_PLUGIN).unwrap().typed::<MathV1>();
    assert_eq!(math.call_within(Duration::from_secs(10), |math| math.add(40, 2)).unwrap(), 42);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    runtime.block_on(async {
        let answer = berth_runtime::call_within(&plugin, "add", b"[2,3]".to_vec(), Duration::from_secs(10)).await;
        assert_eq!(answer.unwrap(), b"5");
        let typed = berth_runtime::call_typed_within(&math, Duration::from_secs(10), |math| math.add(2, 2)).await;
        assert_eq!(typed.unwrap(), 4);
        let late = berth_runtime::call_within(&plugin, "wait", input.clone(), Duration::from_millis(50)).await;
        assert!(
            matches!(late, Err(CallError::Timeout { after, .. }) if after == Duration::from_millis(50)),
            "{late:?}"
        );
    });
    fifo.release_until(|| status_of(&host, MISBEHAVING).in_flight == 0);
}

/// A layout with the misbehaving fixture checked every 20 ms (timeout 200 ms, 2 failures, `on_failing`),
/// `extra` appended to its manifest; its health is what the returned file says. The manifest's path too.
fn health_layout(on_failing: &str, extra: &str) -> (Layout, std::path::PathBuf, std::path::PathBuf) {
    let layout = Layout::new();
    let file = layout.data().with_file_name("health");
    let dir = layout.add_misbehaving("ok");
    let manifest = dir.join("misbehaving.toml");
    let text = fs::read_to_string(&manifest)
        .unwrap()
        .replace("create = \"ok\"", &format!("create = \"ok\"\nhealth = {:?}", file.to_string_lossy()));
    let tables =
        format!("[health]\ninterval = \"20ms\"\ntimeout = \"200ms\"\nfailures = 2\non_failing = \"{on_failing}\"\n");
    fs::write(&manifest, text + &tables + extra).unwrap();
    (layout, file, manifest)
}

/// A supervised host over `layout`, and its events from before the first load.
fn supervised_host(layout: &Layout) -> (Arc<Host>, Supervisor, std::sync::mpsc::Receiver<berth::Event>) {
    let host = Arc::new(layout.host());
    let supervisor = Supervisor::start(&host).unwrap();
    let events = host.subscribe();
    assert!(host.load_all().failures.is_empty());
    (host, supervisor, events)
}

/// Failing checks: the first degrades, `failures` in a row fault (calls refused); once the plugin is well,
/// the probe check after the cool-down closes the breaker. The history keeps both outcomes.
#[test]
fn failing_health_checks_degrade_then_fault_and_a_passing_probe_check_recovers() {
    let (layout, file, _) = health_layout("fault", "");
    let (host, _supervisor, events) = supervised_host(&layout);
    wait_until("a passing check", || {
        status_of(&host, MISBEHAVING).health.is_some_and(|h| h.history.iter().any(|c| c.passed))
    });

    fs::write(&file, "fail").unwrap();
    let degraded = wait_for(&events, EVENTS, |e| e.kind == EventKind::Degraded);
    assert_eq!(degraded.detail, "a health check failed: told to fail");
    let faulted = wait_for(&events, EVENTS, |e| e.kind == EventKind::Faulted);
    assert_eq!(faulted.detail, "2 health checks failed in a row ([health] failures = 2); the last: told to fail");
    let refused = host.plugin(MISBEHAVING).unwrap().call("add", b"[1,2]").unwrap_err();
    assert!(matches!(refused, CallError::Faulted { .. }), "{refused:?}");
    let health = status_of(&host, MISBEHAVING).health.unwrap();
    assert!(
        health.failing >= 2 && health.history.iter().any(|c| !c.passed && c.detail == "told to fail"),
        "{health:?}"
    );

    fs::write(&file, "ok").unwrap();
    let recovered = wait_for(&events, EVENTS, |e| e.kind == EventKind::Recovered);
    assert_eq!(recovered.detail, "the probe health check passed");
    assert_eq!(host.plugin(MISBEHAVING).unwrap().call("add", b"[1,2]").unwrap(), b"3");
    assert_eq!(status_of(&host, MISBEHAVING).state, PluginState::Active);
}

/// A check that hangs fails by its timeout without holding anything else up: deadlines of other plugins are
/// still watched, other calls go on; `on_failing = "disable"` then takes the plugin out of service until its
/// manifest's settings change (a disable and an enable).
#[test]
fn a_hanging_health_check_fails_by_its_timeout_and_disable_takes_the_plugin_out_until_its_files_change() {
    let (layout, file, manifest) = health_layout("disable", "");
    layout.add_example("greeter");
    let fifo = Fifo::new(layout.data().with_file_name("health.fifo"));
    fs::write(&file, format!("wait {}", fifo.path())).unwrap();
    let (host, _supervisor, events) = supervised_host(&layout);

    let degraded = wait_for(&events, EVENTS, |e| e.kind == EventKind::Degraded);
    assert_eq!(degraded.detail, "a health check failed: no answer within its timeout of 200 ms");
    let greeting: String =
        host.plugin("greeter").unwrap().call_json("greet", &serde_json::json!({"name": "ops"})).unwrap();
    assert_eq!(greeting, "Hello, ops!");
    // No second check starts while the first hangs; it fails again each interval it stays unanswered.
    let disabled = wait_for(&events, EVENTS, |e| e.kind == EventKind::Disabled);
    let expected = "2 health checks failed in a row ([health] failures = 2); the last: still no answer after ";
    assert!(disabled.detail.starts_with(expected), "{disabled}");
    assert!(
        disabled.detail.ends_with("([health] on_failing = \"disable\"); it loads again when its manifest's settings or its library change (`berth disable` then `berth enable` will do), or the host restarts"),
        "{disabled}"
    );
    wait_until("the hung check let go", || fifo.release_once());
    let refused = host.plugin(MISBEHAVING).unwrap().call("add", b"[1,2]").unwrap_err();
    assert!(matches!(refused, CallError::NotActive { state: PluginState::Disabled, .. }), "{refused:?}");
    fs::write(&file, "ok").unwrap();
    assert!(host.load_all().loaded.is_empty(), "not loaded again while its files are unchanged");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, text.replace("api = \"^1.0\"", "api = \"^1.0\"\nenabled = false")).unwrap();
    host.load_all();
    assert_eq!(status_of(&host, MISBEHAVING).reason.as_deref().map(|r| r.contains("enabled = false")), Some(true));
    fs::write(&manifest, text).unwrap();
    assert_eq!(host.load_all().loaded.len(), 1, "disabled and enabled again: loaded");
    assert_eq!(host.plugin(MISBEHAVING).unwrap().call("add", b"[1,2]").unwrap(), b"3");
}

/// `on_failing = "reload"`: failing checks load a fresh generation from the same files.
#[test]
fn failing_health_checks_with_reload_load_a_fresh_generation() {
    let (layout, file, _) = health_layout("reload", "");
    let (host, _supervisor, events) = supervised_host(&layout);
    fs::write(&file, "fail").unwrap();
    let reloaded = berth_tests::wait_for_reload(&events, MISBEHAVING);
    assert_eq!(reloaded.generation, Some(2));
    fs::write(&file, "ok").unwrap();
    assert_eq!(host.plugin(MISBEHAVING).unwrap().call("add", b"[1,2]").unwrap(), b"3");
}

/// `berth call` and `berth run --call` want an answer: they use the plugin's `call_timeout` as their own
/// deadline, and say so when the plugin does not answer in time. `berth run` shows health checks live.
#[test]
fn the_cli_answers_by_the_call_timeout_and_run_shows_health_live() {
    let (layout, file, _) = health_layout("fault", "[limits]\ncall_timeout = \"200ms\"\n");
    let fifo = Fifo::new(layout.data().with_file_name("hang.fifo"));

    let started = Instant::now();
    let output = layout.berth().args(["call", MISBEHAVING, "wait", &format!("{:?}", fifo.path())]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "plugin \"misbehaving\" did not answer \"wait\" within 200 ms; its answer, if it comes, is dropped"
        ),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "answered by the deadline, not when the call returned");

    fs::write(&file, "fail").unwrap();
    let mut command = layout.berth();
    command.args(["run", "--every", "1h", "--call", &format!("misbehaving wait {:?}", fifo.path())]);
    let mut run = berth_tests::BerthRun::start(command);
    run.wait_line(|line| {
        line == "call misbehaving wait: error: plugin \"misbehaving\" did not answer \"wait\" within 200 ms; its answer, if it comes, is dropped"
    });
    run.stop();

    // A run of its own for the health checks: the hung call above would degrade the plugin first.
    let mut command = layout.berth();
    command.arg("run");
    let mut run = berth_tests::BerthRun::start(command);
    run.wait_line(|line| {
        line == "event: misbehaving: degraded, 0.3.0 (generation 1) serves: a health check failed: told to fail"
    });
    run.wait_line(|line| {
        line.starts_with("event: misbehaving: faulted, calls refused: 2 health checks failed in a row")
    });
    fs::write(&file, "ok").unwrap();
    run.wait_line(|line| line.ends_with("serves: the probe health check passed"));
    run.stop();
}

/// Chaos: eight threads call healthy plugins without pause while the misbehaving plugin's calls hang (and
/// overrun their deadline), fail, trip its breaker, recover through a good probe and trip again. The healthy
/// calls see no failure, and the calls stuck in the misbehaving plugin never exceed its bulkhead.
#[test]
fn chaos_healthy_calls_never_fail_while_a_misbehaving_plugin_hangs_trips_and_recovers() {
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

    let layout = Layout::new();
    layout.add_example("greeter");
    layout.add_bench_plugin(BENCH_PLUGIN, "berth-bench-mark-000001");
    let tables =
        "[limits]\nmax_concurrent_calls = 3\ncall_timeout = \"30ms\"\n[breaker]\nfailures = 3\ncool_down = \"50ms\"\n";
    let (host, _supervisor) = supervised(&layout, tables);
    let events = host.subscribe();
    let fifo = Arc::new(Fifo::new(layout.data().with_file_name("hang.fifo")));
    let stop = Arc::new(AtomicBool::new(false));
    let (healthy_calls, healthy_failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));

    let healthy: Vec<_> = (0..8)
        .map(|i| {
            let (host, stop, calls, failures) =
                (Arc::clone(&host), Arc::clone(&stop), Arc::clone(&healthy_calls), Arc::clone(&healthy_failures));
            thread::spawn(move || {
                let greeter = host.plugin("greeter").unwrap();
                let math = host.plugin(BENCH_PLUGIN).unwrap().typed::<MathV1>().local();
                while !stop.load(Ordering::Relaxed) {
                    let ok = if i % 2 == 0 {
                        greeter
                            .call("greet", br#"{"name":"chaos"}"#)
                            .is_ok_and(|answer| answer == br#""Hello, chaos!""#)
                    } else {
                        math.call(|math| math.add(i, 1)).is_ok_and(|sum| sum == i + 1)
                    };
                    calls.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    // Two threads hang, one fails, one succeeds: trips (failures, overruns), probes, recoveries.
    let most_in_flight = Arc::new(AtomicU32::new(0));
    let misbehaving: Vec<_> = ["wait", "wait", "fail", "add"]
        .into_iter()
        .map(|method| {
            let (host, stop, fifo) = (Arc::clone(&host), Arc::clone(&stop), Arc::clone(&fifo));
            thread::spawn(move || {
                let plugin = host.plugin(MISBEHAVING).unwrap();
                let input = match method {
                    "wait" => serde_json::to_vec(&fifo.path()).unwrap(),
                    "fail" => b"{}".to_vec(),
                    _ => b"[1,2]".to_vec(),
                };
                let mut outcomes = std::collections::BTreeMap::<&str, u64>::new();
                while !stop.load(Ordering::Relaxed) {
                    let outcome = match plugin.call(method, &input) {
                        Ok(_) => "ok",
                        Err(CallError::Plugin { .. }) => "error",
                        Err(CallError::Timeout { .. }) => "timeout",
                        Err(CallError::Overloaded { .. }) => "overloaded",
                        Err(CallError::Faulted { .. }) => "faulted",
                        Err(other) => panic!("unexpected from {method}: {other:?}"),
                    };
                    *outcomes.entry(outcome).or_default() += 1;
                    thread::yield_now();
                }
                outcomes
            })
        })
        .collect();

    // Released whenever both hanging threads are stuck; until the breaker tripped, recovered and tripped again.
    let (mut faulted, mut recovered) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while faulted < 2 || recovered < 1 {
        assert!(Instant::now() < deadline, "no trip, recovery and second trip within 60 s ({faulted}, {recovered})");
        let status = status_of(&host, MISBEHAVING);
        most_in_flight.fetch_max(status.in_flight, Ordering::Relaxed);
        assert!(status.in_flight <= 3 && status.stuck <= 3, "past the bulkhead: {status:?}");
        if status.in_flight >= 2 {
            let _ = fifo.release_once();
        }
        for event in events.try_iter().filter(|e| e.plugin.as_str() == MISBEHAVING) {
            match event.kind {
                EventKind::Faulted => faulted += 1,
                EventKind::Recovered if faulted > 0 => recovered += 1,
                _ => {}
            }
        }
        thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    fifo.release_until(|| misbehaving.iter().all(|t| t.is_finished()));
    let outcomes: Vec<_> = misbehaving.into_iter().map(|t| t.join().unwrap()).collect();
    for thread in healthy {
        thread.join().unwrap();
    }
    assert_eq!(healthy_failures.load(Ordering::Relaxed), 0, "a healthy call failed");
    assert!(healthy_calls.load(Ordering::Relaxed) > 1000, "the healthy threads made calls");
    assert!(outcomes[2].contains_key("error") && outcomes[3].contains_key("faulted"), "{outcomes:?}");
    assert!(most_in_flight.load(Ordering::Relaxed) <= 3);
}
