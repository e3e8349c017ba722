//! Plugins side by side: each answers for itself, typed extensions, health, lifecycle events,
//! failures in create and panics in create and in calls (the host survives), and concurrent callers.

use std::sync::Arc;
use std::thread;

use berth::ext::text_filter::TextFilterV1;
use berth::{CallError, ErrorKind, EventKind, HealthStatus, LoadError, PluginState};
use berth_tests::Layout;
use serde_json::{Value, json};

fn all_examples() -> Layout {
    let layout = Layout::new();
    for plugin in ["greeter", "quota", "text-filters", "webhook-signer"] {
        layout.add_example(plugin);
    }
    layout
}

#[test]
fn several_plugins_side_by_side_each_answer_for_themselves() {
    let layout = all_examples();
    let host = layout.host();
    let report = host.load_all();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    // webhook-signer depends on text-filters, so it loads after it.
    let order: Vec<&str> = report.loaded.iter().map(|n| n.as_str()).collect();
    assert_eq!(order, ["greeter", "quota", "text-filters", "webhook-signer"]);

    let greeter = host.plugin("greeter").unwrap();
    assert_eq!(greeter.call_json::<_, String>("greet", &json!({"name": "Ada"})).unwrap(), "Hello, Ada!");
    let quota = host.plugin("quota").unwrap();
    let used: Value = quota.call_json("consume", &json!({"key": "k", "amount": 2})).unwrap();
    assert_eq!(used, json!({"allowed": true, "used": 2, "limit": 3, "remaining": 1}));
    let slug: String =
        host.plugin("text-filters").unwrap().call_json("apply", &json!({"filter": "slug", "text": "A B"})).unwrap();
    assert_eq!(slug, "a-b");
    let signer = host.plugin("webhook-signer").unwrap();
    let signed: Value = signer.call_json("sign", &json!({"payload": "p", "timestamp": 3})).unwrap();
    let signature = signed["signature"].as_str().unwrap();
    assert!(signature.starts_with("t=3,v1=") && signature.len() == 7 + 64, "{signature}");
    let verified: Value = signer.call_json("verify", &json!({"payload": "p", "signature": signature})).unwrap();
    assert_eq!(verified, json!({"valid": true}));

    let error = greeter.call("wave", b"{}").unwrap_err();
    assert!(matches!(error, CallError::Plugin { kind: ErrorKind::UnknownMethod, .. }), "{error}");
    assert!(matches!(host.plugin("nobody"), Err(CallError::UnknownPlugin(_))));
}

#[test]
fn a_typed_extension_interface_is_checked_and_called() {
    let layout = Layout::new();
    layout.add_example("text-filters");
    layout.add_example("greeter");
    let host = layout.host();
    host.load_all();
    let filters = host.plugin("text-filters").unwrap().extension::<TextFilterV1>().unwrap();
    assert!(filters.filters().contains(&"redact-emails".to_owned()));
    assert_eq!(filters.apply("redact-emails", "write to ada@example.org").unwrap(), "write to [email]");
    let error = filters.apply("nope", "x").unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput);
    let missing = host.plugin("greeter").unwrap().extension::<TextFilterV1>();
    assert!(matches!(missing, Err(CallError::Extension { .. })));
}

#[test]
fn health_reports_the_plugins_own_view() {
    let layout = Layout::new();
    layout.add_example("quota");
    let host = layout.host();
    host.load_all();
    let quota = host.plugin("quota").unwrap();
    assert_eq!(quota.health().unwrap().status, HealthStatus::Ok);
    for _ in 0..3 {
        quota.call("consume", br#"{"key":"x"}"#).unwrap();
    }
    let health = quota.health().unwrap();
    assert_eq!((health.status, health.detail.as_str()), (HealthStatus::Degraded, "1 key(s) at their quota"));
}

#[test]
fn an_error_from_create_refuses_the_load_with_the_plugins_message() {
    let layout = Layout::new();
    layout.add_misbehaving("error");
    let report = layout.host().load_all();
    let LoadError::Create { kind, message } = &report.failures[0].error else { panic!("{:?}", report.failures) };
    assert_eq!(*kind, ErrorKind::Failed);
    assert_eq!(message, "the database at db.invalid is unreachable");
}

#[test]
fn a_panic_in_create_is_contained_and_reported_with_its_message() {
    let layout = Layout::new();
    layout.add_misbehaving("panic");
    layout.add_example("greeter");
    let host = layout.host();
    let report = host.load_all();
    assert_eq!(report.loaded.len(), 1, "greeter still loads");
    let LoadError::Create { kind, message } = &report.failures[0].error else { panic!("{:?}", report.failures) };
    assert_eq!(*kind, ErrorKind::Panicked);
    assert!(message.contains("create exploded on purpose") && message.contains("src/lib.rs"), "{message}");
    let status = berth_tests::status_of(&host, "misbehaving");
    assert_eq!(status.state, PluginState::Failed);
}

#[test]
fn a_panic_in_a_call_is_contained_and_marks_the_plugin_failed() {
    let layout = Layout::new();
    layout.add_misbehaving("ok");
    layout.add_example("greeter");
    let host = layout.host();
    host.load_all();
    let plugin = host.plugin("misbehaving").unwrap();
    assert_eq!(plugin.call_json::<_, u64>("add", &(2, 3)).unwrap(), 5);
    let ordinary = plugin.call("fail", b"null").unwrap_err();
    assert!(
        matches!(ordinary, CallError::Plugin { kind: ErrorKind::Unavailable, .. }),
        "an ordinary error does not fail the plugin"
    );
    assert_eq!(plugin.state(), PluginState::Active);

    let error = plugin.call("panic", b"null").unwrap_err();
    let CallError::Plugin { kind, message, .. } = &error else { panic!("{error}") };
    assert_eq!(*kind, ErrorKind::Panicked);
    assert!(message.contains("call exploded on purpose"), "{message}");
    assert_eq!(plugin.state(), PluginState::Failed);
    let after = plugin.call_json::<_, u64>("add", &(1, 1)).unwrap_err();
    let CallError::NotActive { state, reason, .. } = &after else { panic!("{after}") };
    assert_eq!(*state, PluginState::Failed);
    assert!(reason.contains("panicked in call \"panic\"") && reason.contains("call exploded on purpose"), "{reason}");
    // The host and the other plugins are unharmed.
    assert_eq!(
        host.plugin("greeter").unwrap().call_json::<_, String>("greet", &json!({"name": "still"})).unwrap(),
        "Hello, still!"
    );
}

#[test]
fn eight_threads_calling_concurrently_get_their_own_answers() {
    let layout = Layout::new();
    layout.add_misbehaving("ok");
    layout.add_example("quota");
    let host = Arc::new(layout.host());
    host.load_all();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let host = Arc::clone(&host);
            thread::spawn(move || {
                let adder = host.plugin("misbehaving").unwrap();
                let quota = host.plugin("quota").unwrap();
                for i in 0..2_000u64 {
                    assert_eq!(adder.call_json::<_, u64>("add", &(t * 1_000_000, i)).unwrap(), t * 1_000_000 + i);
                }
                for _ in 0..100 {
                    let used: Value = quota.call_json("consume", &json!({"key": "team-a"})).unwrap();
                    assert_eq!(used["allowed"], true);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("no caller thread failed");
    }
    let used: Value = host.plugin("quota").unwrap().call_json("usage", &json!({"key": "team-a"})).unwrap();
    assert_eq!(used["used"], 800, "every consumption counted exactly once");
}

#[test]
fn lifecycle_transitions_are_events() {
    let layout = Layout::new();
    layout.add_example("greeter");
    layout.add_misbehaving("error");
    let host = layout.host();
    let events = host.subscribe();
    host.load_all();
    host.shutdown();
    let seen: Vec<(String, PluginState)> = events.try_iter().map(|e| (e.plugin.to_string(), e.state)).collect();
    let greeter: Vec<PluginState> = seen.iter().filter(|(p, _)| p == "greeter").map(|(_, s)| *s).collect();
    assert_eq!(
        greeter,
        [
            PluginState::Discovered,
            PluginState::Validated,
            PluginState::Loaded,
            PluginState::Active,
            PluginState::Retired
        ]
    );
    assert!(seen.contains(&("misbehaving".to_owned(), PluginState::Failed)));
}

#[test]
fn a_disabled_plugin_is_registered_but_not_loaded() {
    let layout = Layout::new();
    let path = layout.add_example("greeter");
    berth::manifest::set_enabled(&path.join("greeter.toml"), false).unwrap();
    let host = layout.host();
    let report = host.load_all();
    assert_eq!(report.disabled.len(), 1);
    let error = host.plugin("greeter").unwrap().call("greet", b"{}").unwrap_err();
    assert!(matches!(error, CallError::NotActive { state: PluginState::Disabled, .. }), "{error}");
}

/// Observers plugged in with `Host::builder` see every event, in order, as it happens; one that panics is
/// contained and the others (and the host) go on.
#[test]
fn observers_registered_with_the_builder_see_every_event_and_a_panicking_one_is_contained() {
    let layout = Layout::new();
    layout.add_example("greeter");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = std::sync::Arc::clone(&seen);
    let host = berth::Host::builder(layout.config())
        .observer(|_: &berth::Event| panic!("a broken observer"))
        .observer(move |event: &berth::Event| record.lock().unwrap().push(event.to_string()))
        .build()
        .unwrap();
    let channel = host.subscribe();
    assert!(host.load_all().failures.is_empty());
    let greeting: String =
        host.plugin("greeter").unwrap().call_json("greet", &serde_json::json!({"name": "ops"})).unwrap();
    assert_eq!(greeting, "Hello, ops!");
    host.shutdown();
    let seen = seen.lock().unwrap().clone();
    let loaded = seen.iter().position(|e| e.starts_with("greeter: loaded 1.0.0")).expect("loaded seen");
    let retired = seen.iter().position(|e| e.starts_with("greeter: shut down")).expect("shut down seen");
    assert!(seen[0].starts_with("greeter: discovered") && loaded < retired, "{seen:#?}");
    let through_channel: Vec<String> = channel.try_iter().map(|event| event.to_string()).collect();
    assert_eq!(through_channel, seen, "the observer and a subscriber see the same events in the same order");
}

/// The bulkhead: with `[limits] max_concurrent_calls = 2`, two calls that hang hold two threads, a third
/// call is refused at once with `Overloaded` (counted, visible in the status), calls to other plugins go on,
/// and once the hung calls return the plugin takes calls again.
#[cfg(unix)]
#[test]
fn a_bulkhead_refuses_calls_beyond_its_limit_at_once_and_other_plugins_go_on() {
    let layout = Layout::new();
    layout.add_example("greeter");
    let dir = layout.add_misbehaving("ok");
    let manifest = dir.join("misbehaving.toml");
    berth_tests::append_to_manifest(&manifest, "[limits]\nmax_concurrent_calls = 2\n");
    let host = Arc::new(layout.host());
    assert!(host.load_all().failures.is_empty());
    let fifo = berth_tests::Fifo::new(layout.data().with_file_name("hang.fifo"));

    let hung: Vec<_> = (0..2)
        .map(|_| {
            let (host, fifo) = (Arc::clone(&host), fifo.path());
            thread::spawn(move || host.plugin("misbehaving").unwrap().call_json::<_, String>("wait", &fifo))
        })
        .collect();
    let status = || berth_tests::status_of(&host, "misbehaving");
    berth_tests::wait_until("the two calls in flight", || status().in_flight == 2);
    let refused = host.plugin("misbehaving").unwrap().call_json::<_, u64>("add", &(1, 2)).unwrap_err();
    assert_eq!(refused, CallError::Overloaded { plugin: "misbehaving".into(), limit: 2 });
    assert!(refused.to_string().contains("([limits] max_concurrent_calls); this call was refused"), "{refused}");
    let greeting: String = host.plugin("greeter").unwrap().call_json("greet", &json!({"name": "ops"})).unwrap();
    assert_eq!(greeting, "Hello, ops!", "another plugin is not held up");
    let full = status();
    assert_eq!((full.max_concurrent_calls, full.in_flight, full.overloaded), (Some(2), 2, 1));

    fifo.release_until(|| hung.iter().all(|call| call.is_finished()));
    for call in hung {
        assert_eq!(call.join().unwrap().unwrap(), "done");
    }
    assert_eq!(status().in_flight, 0);
    assert_eq!(host.plugin("misbehaving").unwrap().call_json::<_, u64>("add", &(1, 2)).unwrap(), 3);
}

/// The circuit breaker: `[breaker] failures = 3` opens after three failed calls in a row (a success between
/// them starts the count again); while open, calls are refused with `Faulted` without reaching the plugin;
/// after the cool-down one call is the probe: a failed probe opens it again, a good one closes it. Every
/// transition is an event and shows in the status; a reload starts the new generation closed.
#[test]
fn the_circuit_breaker_opens_on_failures_refuses_fast_and_closes_on_a_good_probe() {
    let layout = Layout::new();
    let dir = layout.add_misbehaving("ok");
    let manifest = dir.join("misbehaving.toml");
    let text = berth_tests::append_to_manifest(&manifest, "[breaker]\nfailures = 3\ncool_down = \"200ms\"\n");
    let host = layout.host();
    assert!(host.load_all().failures.is_empty());
    let events = host.subscribe();
    let plugin = host.plugin("misbehaving").unwrap();
    let add = || plugin.call_json::<_, u64>("add", &(1, 2));
    let fail = || plugin.call("fail", b"{}");
    let status = || berth_tests::status_of(&host, "misbehaving");

    for _ in 0..2 {
        assert!(matches!(fail(), Err(CallError::Plugin { .. })));
    }
    assert_eq!(add().unwrap(), 3, "a success starts the count again");
    for _ in 0..3 {
        assert!(matches!(fail(), Err(CallError::Plugin { .. })));
    }
    let faulted = berth_tests::wait_for(&events, std::time::Duration::from_secs(5), |e| e.kind == EventKind::Faulted);
    assert!(
        faulted.detail.starts_with("3 calls failed in a row ([breaker] failures = 3); the last: try later"),
        "{faulted}"
    );
    let refused = add().unwrap_err();
    assert!(matches!(refused, CallError::Faulted { .. }), "{refused:?}");
    assert!(refused.to_string().contains("is faulted: 3 calls failed in a row"), "{refused}");
    let open = status();
    assert_eq!(open.state, PluginState::Faulted);
    assert_eq!(open.breaker.as_ref().map(|b| b.state), Some("open"));

    // After the cool-down the next call is the probe: a failing one opens the breaker again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while matches!(fail(), Err(CallError::Faulted { .. })) {
        assert!(std::time::Instant::now() < deadline, "no probe was let through");
        thread::yield_now();
    }
    let reopened = berth_tests::wait_for(&events, std::time::Duration::from_secs(5), |e| e.kind == EventKind::Faulted);
    assert!(reopened.detail.starts_with("the probe call failed: try later"), "{reopened}");
    // A good probe closes it.
    let answer = loop {
        match add() {
            Err(CallError::Faulted { .. }) => {
                assert!(std::time::Instant::now() < deadline, "no second probe was let through");
                thread::yield_now();
            }
            other => break other,
        }
    };
    assert_eq!(answer.unwrap(), 3);
    let closed = berth_tests::wait_for(&events, std::time::Duration::from_secs(5), |e| e.kind == EventKind::Recovered);
    assert_eq!(closed.to_string(), "misbehaving: recovered, 0.3.0 (generation 1) serves: the probe call succeeded");
    assert_eq!((status().state, status().breaker.map(|b| b.state)), (PluginState::Active, Some("closed")));

    // Tripped again, then a reload: the new generation serves with a closed breaker.
    for _ in 0..3 {
        let _ = fail();
    }
    assert_eq!(status().state, PluginState::Faulted);
    std::fs::write(&manifest, format!("{text}\n[breaker]\nfailures = 4\ncool_down = \"200ms\"\n")).unwrap();
    assert_eq!(host.load_all().reloaded.len(), 1);
    assert_eq!(add().unwrap(), 3);
    assert_eq!((status().state, status().generation), (PluginState::Active, Some(2)));
}

/// The rate limit: with `[limits] calls_per_second = 1` and `burst = 2`, two calls at once go through and the
/// third is refused at once with `RateLimited` (counted in the status), without reaching the plugin; other
/// plugins are not limited. A `burst` without a rate is refused with advice.
#[test]
fn a_rate_limit_refuses_calls_beyond_its_burst_at_once() {
    let layout = Layout::new();
    layout.add_example("greeter");
    let dir = layout.add_misbehaving("ok");
    let manifest = dir.join("misbehaving.toml");
    let text = berth_tests::append_to_manifest(&manifest, "[limits]\ncalls_per_second = 1\nburst = 2\n");
    let host = layout.host();
    assert!(host.load_all().failures.is_empty());
    let plugin = host.plugin("misbehaving").unwrap();
    // A second must pass before a third call fits: these run in microseconds.
    let answers: Vec<_> = (0..3).map(|_| plugin.call_json::<_, u64>("add", &(1, 2))).collect();
    assert_eq!((answers[0].as_ref().ok(), answers[1].as_ref().ok()), (Some(&3), Some(&3)));
    let refused = answers[2].clone().unwrap_err();
    assert_eq!(refused, CallError::RateLimited { plugin: "misbehaving".into(), per_second: 1, burst: 2 });
    assert!(refused.to_string().contains("(1 calls a second, bursts of 2; [limits] calls_per_second, burst)"));
    for _ in 0..10 {
        let greeting: String = host.plugin("greeter").unwrap().call_json("greet", &json!({"name": "ops"})).unwrap();
        assert_eq!(greeting, "Hello, ops!");
    }
    let status = berth_tests::status_of(&host, "misbehaving");
    assert_eq!((status.calls_per_second, status.rate_limited), (Some(1), 1));

    std::fs::write(&manifest, format!("{text}\n[limits]\nburst = 2\n")).unwrap();
    let report = host.load_all();
    let message = report.failures[0].error.to_string();
    assert_eq!(
        message,
        "[limits]: burst applies to calls_per_second, which is not set; set the rate too, or remove burst"
    );
}
