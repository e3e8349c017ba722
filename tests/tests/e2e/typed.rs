//! Typed interface handles ([`berth::Typed`] and its per-thread form [`berth::LocalTyped`]) through an
//! application-defined interface (`berth-bench.math/1`): they follow hot reloads, report a plugin that is not
//! serving or lacks the interface, and allow nested calls.

use std::fs;

use berth::ext::text_filter::TextFilterV1;
use berth::{CallError, PluginState};
use berth_bench_api::MathV1;
use berth_tests::{BENCH_PLUGIN, Layout, bench_plugin_copy, library_file};

#[test]
fn typed_handles_follow_reloads_and_disable() {
    let layout = Layout::new();
    let dir = layout.add_bench_plugin(BENCH_PLUGIN, "berth-bench-mark-000001");
    let host = layout.host();
    assert!(host.load_all().failures.is_empty());
    let plugin = host.plugin(BENCH_PLUGIN).unwrap();
    let typed = plugin.typed::<MathV1>();
    let local = typed.local();
    assert_eq!(typed.call(|math| math.add(40, 2)).unwrap(), 42);
    assert_eq!(local.call(|math| math.add(u64::MAX, 2)).unwrap(), 1);
    assert_eq!(local.plugin().generation(), Some(1));

    // A new build (other bytes, same plugin) replaces generation 1; both handles reach generation 2.
    fs::write(dir.join(library_file(BENCH_PLUGIN)), bench_plugin_copy(BENCH_PLUGIN, "berth-bench-mark-000002"))
        .unwrap();
    let report = host.load_all();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(plugin.generation(), Some(2));
    assert_eq!(plugin.call("mark", b"").unwrap(), b"berth-bench-mark-000002");
    assert_eq!(local.call(|math| math.add(1, 2)).unwrap(), 3);
    assert_eq!(typed.with(|math| math.add(2, 2)).unwrap().unwrap(), 4);
    assert_eq!(host.retired().generations, 1);

    // Nested calls through one LocalTyped each reach the serving generation.
    let nested = local.with(|outer| local.call(|inner| inner.add(outer.add(1, 1).unwrap(), 1))).unwrap().unwrap();
    assert_eq!(nested, 3);

    // Disabled: both refuse with the plugin's state and reason, and come back when it is enabled again.
    let manifest = dir.join(format!("{BENCH_PLUGIN}.toml"));
    let original = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, original.replace("api = \"^1.0\"", "api = \"^1.0\"\nenabled = false")).unwrap();
    host.load_all();
    for refused in [typed.call(|math| math.add(1, 1)).unwrap_err(), local.call(|math| math.add(1, 1)).unwrap_err()] {
        match refused {
            CallError::NotActive { plugin, state, reason } => {
                assert_eq!((plugin.as_str(), state), (BENCH_PLUGIN, PluginState::Disabled));
                assert!(reason.contains("enabled = false"), "{reason}");
            }
            other => panic!("expected NotActive, got {other:?}"),
        }
    }
    fs::write(&manifest, original).unwrap();
    assert!(host.load_all().failures.is_empty());
    assert_eq!(local.call(|math| math.add(20, 22)).unwrap(), 42);
    assert_eq!(plugin.generation(), Some(3));
}

#[test]
fn an_interface_the_plugin_lacks_is_refused_by_name() {
    let layout = Layout::new();
    layout.add_bench_plugin(BENCH_PLUGIN, "berth-bench-mark-000001");
    let host = layout.host();
    assert!(host.load_all().failures.is_empty());
    let filters = host.plugin(BENCH_PLUGIN).unwrap().typed::<TextFilterV1>();
    for refused in
        [filters.call(|f| f.apply("upper", "x")).unwrap_err(), filters.local().with(|f| f.filters()).unwrap_err()]
    {
        match refused {
            CallError::Extension { plugin, id, reason } => {
                assert_eq!((plugin.as_str(), id.as_str()), (BENCH_PLUGIN, "berth.text-filter/1"));
                assert_eq!(reason, "not provided by this plugin");
            }
            other => panic!("expected Extension, got {other:?}"),
        }
    }
}

/// The bulkhead holds for typed calls too: with `[limits] max_concurrent_calls = 1`, a typed call made while
/// another is in flight (here nested in `with`) is refused with `Overloaded`, through `Typed` and `LocalTyped`
/// alike, and a call after it returns goes through.
#[test]
fn typed_calls_go_through_the_bulkhead() {
    let layout = Layout::new();
    let dir = layout.add_bench_plugin(BENCH_PLUGIN, "berth-bench-mark-000001");
    let manifest = dir.join(format!("{BENCH_PLUGIN}.toml"));
    berth_tests::append_to_manifest(&manifest, "[limits]\nmax_concurrent_calls = 1\n");
    let host = layout.host();
    assert!(host.load_all().failures.is_empty());
    let typed = host.plugin(BENCH_PLUGIN).unwrap().typed::<MathV1>();
    let local = typed.local();
    let overloaded = CallError::Overloaded { plugin: BENCH_PLUGIN.to_owned(), limit: 1 };
    let (inner_shared, inner_local) =
        typed.with(|_| (typed.call(|math| math.add(1, 2)), local.call(|math| math.add(1, 2)))).unwrap();
    assert_eq!((inner_shared, inner_local), (Err(overloaded.clone()), Err(overloaded)));
    assert_eq!(local.call(|math| math.add(1, 2)).unwrap(), 3);
    assert_eq!(typed.call(|math| math.add(1, 2)).unwrap(), 3);
    assert_eq!(host.plugins()[0].overloaded, 2);
}
