//! Load, reload and memory costs (BENCHMARKS.md). Run with `cargo xtask bench`, or
//! `BERTH_FIXTURE_PROFILE=release cargo bench -p berth-tests --bench lifecycle [-- --quick] [load|reload|memory]`.
//!
//! Not criterion: each load sample must be a fresh process (a library, once opened, stays open; a second open
//! of the same path is free), and reload and memory figures are distributions and deltas, not loop timings.
//! The figures go to `target/berth-bench/lifecycle.json`, which `cargo xtask bench` turns into the table.
//!
//! - `load`: 1, 10, 100 and 1000 distinct plugins (copies of the benchmark plugin with distinct names, so
//!   distinct bytes), `Host::load_all` timed in a child process. `cold`: an empty private cache (read, check,
//!   hash, copy, open, create). `cached`: the private copies exist already, verified by an earlier process.
//!   `dlopen`, the floor: a bare `dlopen` of each private copy, nothing else. The plugin files are in the OS
//!   page cache in all three cases.
//! - `reload`: 101 hot reloads through the watcher (default debounce), each a new build put in place by a
//!   rename; from the rename to the `Reloaded` event (sent right after the swap, and checked with a call that
//!   the new build answers), while two threads call the plugin without pause and count failures.
//! - `memory`: a child process reloads the plugin 50 times (`Host::load_all` after each new build, every build
//!   written out before the first reading); resident and mapped memory added per retired generation, read
//!   from `/proc/self/status` (Linux only). Three child processes, three samples.
//! - `deadline`: how late `CallError::Timeout` reaches a caller with a deadline of its own
//!   (`PluginHandle::call_within`, 2 ms) whose call hangs (the misbehaving fixture's `wait`, released after
//!   each sample): the time past the deadline, in µs, 500 samples (100 with `--quick`). Unix only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use std::{env, fs};

use berth::{Host, HostConfig};
use berth_bench_api::MathV1;
use berth_tests::{BENCH_PLUGIN, Layout, bench_plugin_copy, install_atomically, library_file, wait_for_reload};
use serde_json::{Value, json};

/// One measured figure: its id (`load/cold/1000`, ...), its unit and its samples.
fn figure(id: &str, unit: &str, samples: Vec<f64>) -> Value {
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{id:<28} median {:>10.3} {unit} (min {:.3}, max {:.3}, {} samples)",
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1],
        sorted.len()
    );
    json!({ "id": id, "unit": unit, "samples": samples })
}

/// The mark of build `n` (23 bytes, as the benchmark plugin's `MARK`).
fn mark(n: usize) -> String {
    format!("berth-bench-mark-{n:06}")
}

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child-load") {
        return child_load(Path::new(&args[1]), &args[2]);
    }
    if args.first().map(String::as_str) == Some("--child-dlopen") {
        return child_dlopen(Path::new(&args[1]));
    }
    if args.first().map(String::as_str) == Some("--child-memory") {
        return child_memory(Path::new(&args[1]));
    }
    berth_tests::built();
    let quick = args.iter().any(|a| a == "--quick");
    let chosen: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with("--")).collect();
    let wanted = |name: &str| chosen.is_empty() || chosen.contains(&name);
    let mut figures = Vec::new();
    if wanted("load") {
        figures.extend(load(quick));
    }
    if wanted("reload") {
        figures.extend(reload(quick));
    }
    if wanted("memory") {
        figures.extend(memory());
    }
    #[cfg(unix)]
    if wanted("deadline") {
        figures.extend(deadline(quick));
    }
    let out = berth_tests::root().join("target").join("berth-bench");
    fs::create_dir_all(&out).unwrap();
    let path = out.join("lifecycle.json");
    // Figures of groups not run this time are kept from the last run that measured them.
    let mut all: Vec<Value> = fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    all.retain(|old| !figures.iter().any(|new| new["id"] == old["id"]));
    all.extend(figures);
    fs::write(&path, serde_json::to_vec_pretty(&all).unwrap()).unwrap();
    println!("written: {}", path.display());
}

/// The host configuration of `layout`'s directories with another cache and data directory.
fn config(plugins: &Path, cache: &Path) -> HostConfig {
    let mut config = HostConfig::default();
    config.plugin_dirs = vec![plugins.to_owned()];
    config.cache_dir = cache.join("cache");
    config.data_dir = cache.join("data");
    config
}

fn load(quick: bool) -> Vec<Value> {
    let mut figures = Vec::new();
    for count in [1usize, 10, 100, 1000] {
        let layout = Layout::new();
        for n in 0..count {
            // 12 bytes, as the benchmark plugin's package name.
            let name = format!("bench-{n:06}");
            layout.add_bench_plugin(&name, &mark(n));
        }
        let samples = match (quick, count) {
            (true, _) => 3,
            (false, 1000) => 5,
            (false, _) => 11,
        };
        let state = tempfile::tempdir().unwrap();
        let mut cold = Vec::new();
        // Each cold sample gets new directories. They are removed only at the end: deleting a thousand files
        // just before creating a thousand more slows ext4's inode allocation, which is not Berth's cost.
        for sample in 0..samples {
            cold.push(run_load(&layout.plugins(), &state.path().join(format!("cold-{sample}")), count));
        }
        let warm = state.path().join("warm");
        run_load(&layout.plugins(), &warm, count);
        let cached: Vec<Duration> = (0..samples).map(|_| run_load(&layout.plugins(), &warm, count)).collect();
        let dlopen: Vec<Duration> =
            (0..samples).map(|_| run_child("--child-dlopen", &[warm.join("cache").as_path()], count)).collect();
        let per_plugin = |d: &Duration| d.as_secs_f64() * 1e3 / count as f64;
        figures.push(figure(&format!("load/cold/{count}"), "ms/plugin", cold.iter().map(per_plugin).collect()));
        figures.push(figure(&format!("load/cached/{count}"), "ms/plugin", cached.iter().map(per_plugin).collect()));
        figures.push(figure(&format!("load/dlopen/{count}"), "ms/plugin", dlopen.iter().map(per_plugin).collect()));
        if count == 1000 {
            figures.push(figure("load/cold-total/1000", "s", cold.iter().map(Duration::as_secs_f64).collect()));
        }
    }
    figures
}

/// Times `Host::load_all` over `plugins` in a fresh process with its state in `dir`.
fn run_load(plugins: &Path, dir: &Path, count: usize) -> Duration {
    run_child("--child-load", &[plugins, dir], count)
}

/// Runs this benchmark as a child in `mode` with `args`, expecting `count` libraries; returns the time it
/// reports.
fn run_child(mode: &str, args: &[&Path], count: usize) -> Duration {
    let output = Command::new(env::current_exe().unwrap())
        .arg(mode)
        .args(args)
        .env("BERTH_BENCH_COUNT", count.to_string())
        .output()
        .unwrap();
    assert!(output.status.success(), "{mode} child failed: {}", String::from_utf8_lossy(&output.stderr));
    Duration::from_nanos(String::from_utf8(output.stdout).unwrap().trim().parse().unwrap())
}

/// The floor of a load: `dlopen` of each private copy in `cache` (written by an earlier load), nothing else.
fn child_dlopen(cache: &Path) {
    let copies: Vec<PathBuf> = fs::read_dir(cache)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == env::consts::DLL_EXTENSION))
        .collect();
    let count: usize = env::var("BERTH_BENCH_COUNT").unwrap().parse().unwrap();
    assert_eq!(copies.len(), count, "private copies in {}", cache.display());
    let start = Instant::now();
    // SAFETY: each copy is a build of the benchmark plugin that a Berth host has just verified and loaded
    // from this cache; opening it runs the same initialisers that load ran.
    let opened: Vec<_> = copies.iter().map(|path| unsafe { libloading::Library::new(path) }.unwrap()).collect();
    let elapsed = start.elapsed();
    // Kept open until the time is taken (a dropped library would be closed and the cost of that counted).
    drop(opened);
    println!("{}", elapsed.as_nanos());
}

fn child_load(plugins: &Path, dir: &str) {
    let host = Host::new(config(plugins, Path::new(dir))).unwrap();
    let start = Instant::now();
    let report = host.load_all();
    let elapsed = start.elapsed();
    let count: usize = env::var("BERTH_BENCH_COUNT").unwrap().parse().unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures.first());
    assert_eq!(report.loaded.len(), count);
    println!("{}", elapsed.as_nanos());
}

fn reload(quick: bool) -> Vec<Value> {
    let reloads = if quick { 21 } else { 101 };
    let layout = Layout::new();
    let dir = layout.add_bench_plugin(BENCH_PLUGIN, &mark(0));
    let mut config = layout.config();
    config.reload.max_retired_bytes = u64::MAX;
    let host = Arc::new(Host::new(config).unwrap());
    assert!(host.load_all().failures.is_empty());
    let events = host.subscribe();
    let _watcher = host.watch().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // One caller through the generic call, one through a per-thread typed handle.
    let callers: Vec<_> = [false, true]
        .into_iter()
        .map(|typed| {
            let (host, stop, calls, failed) = (host.clone(), stop.clone(), calls.clone(), failed.clone());
            std::thread::spawn(move || {
                let plugin = host.plugin(BENCH_PLUGIN).unwrap();
                let math = plugin.typed::<MathV1>().local();
                while !stop.load(Ordering::Relaxed) {
                    let ok = if typed { math.call(|m| m.add(40, 2)).is_ok() } else { plugin.call("mark", b"").is_ok() };
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let plugin = host.plugin(BENCH_PLUGIN).unwrap();
    let target = dir.join(library_file(BENCH_PLUGIN));
    let mut latencies = Vec::new();
    for n in 1..=reloads {
        let build = bench_plugin_copy(BENCH_PLUGIN, &mark(n));
        install_atomically(&target, &build);
        let written = Instant::now();
        wait_for_reload(&events, BENCH_PLUGIN);
        latencies.push(written.elapsed().as_secs_f64() * 1e3);
        assert_eq!(plugin.call("mark", b"").unwrap(), mark(n).as_bytes(), "the new build serves");
    }
    stop.store(true, Ordering::Relaxed);
    callers.into_iter().for_each(|c| c.join().unwrap());
    let debounce = host.config().reload.debounce.as_secs_f64() * 1e3;
    vec![
        figure("reload/latency", "ms", latencies),
        figure("reload/debounce", "ms", vec![debounce]),
        figure("reload/calls", "calls", vec![calls.load(Ordering::Relaxed) as f64]),
        figure("reload/failed-calls", "calls", vec![failed.load(Ordering::Relaxed) as f64]),
    ]
}

const GENERATIONS: usize = 50;

/// Memory samples: each a fresh child process.
const MEMORY_SAMPLES: usize = 3;

fn memory() -> Vec<Value> {
    let layout = Layout::new();
    layout.add_bench_plugin(BENCH_PLUGIN, &mark(0));
    let (mut resident, mut mapped, mut file) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..MEMORY_SAMPLES {
        let child = Command::new(env::current_exe().unwrap()).arg("--child-memory").arg(layout.plugins()).output();
        let output = child.unwrap();
        assert!(output.status.success(), "memory child failed: {}", String::from_utf8_lossy(&output.stderr));
        let figures: Vec<f64> =
            String::from_utf8(output.stdout).unwrap().split_whitespace().map(|v| v.parse().unwrap()).collect();
        let [r, m, f] = figures[..] else { panic!("unexpected child output {figures:?}") };
        resident.push(r);
        mapped.push(m);
        file.push(f);
    }
    vec![
        figure("memory/resident-per-generation", "KiB", resident),
        figure("memory/mapped-per-generation", "KiB", mapped),
        figure("memory/library-file", "KiB", file),
    ]
}

/// `VmRSS` and `VmSize` of this process, in KiB.
fn status_kib() -> (f64, f64) {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    let field = |name: &str| -> f64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("VmRSS:"), field("VmSize:"))
}

fn child_memory(plugins: &Path) {
    let state = tempfile::tempdir().unwrap();
    let mut config = config(plugins, state.path());
    config.reload.max_retired_bytes = u64::MAX;
    let host = Host::new(config).unwrap();
    assert!(host.load_all().failures.is_empty());
    let plugin = host.plugin(BENCH_PLUGIN).unwrap();
    let target: PathBuf = plugins.join(BENCH_PLUGIN).join(library_file(BENCH_PLUGIN));
    // Every build is written out before the first measurement, so making them adds nothing to it; each
    // reload then renames one into place.
    let builds = state.path().join("builds");
    fs::create_dir(&builds).unwrap();
    let staged: Vec<PathBuf> = (1..2 + GENERATIONS)
        .map(|n| {
            let path = builds.join(n.to_string());
            fs::write(&path, bench_plugin_copy(BENCH_PLUGIN, &mark(n))).unwrap();
            path
        })
        .collect();
    let reload_to = |n: usize| {
        fs::rename(&staged[n - 1], &target).unwrap();
        let report = host.load_all();
        assert_eq!(report.reloaded.len(), 1, "{:?}", report.failures.first());
        assert_eq!(plugin.call("mark", b"").unwrap(), mark(n).as_bytes());
    };
    // One reload first, so what every later one adds is measured (not the first-time setup of the host).
    reload_to(1);
    let (rss_before, size_before) = status_kib();
    for n in 2..2 + GENERATIONS {
        reload_to(n);
    }
    let (rss_after, size_after) = status_kib();
    let file = fs::metadata(&target).unwrap().len() as f64 / 1024.0;
    let per = |before: f64, after: f64| (after - before) / GENERATIONS as f64;
    println!("{} {} {}", per(rss_before, rss_after), per(size_before, size_after), file);
}

/// `deadline`: lateness of the caller's timeout past its deadline.
#[cfg(unix)]
fn deadline(quick: bool) -> Vec<Value> {
    let layout = Layout::new();
    let dir = layout.add_misbehaving("ok");
    // Counted in flight, so that each sample waits until its hung call has returned.
    berth_tests::append_to_manifest(&dir.join("misbehaving.toml"), "[limits]\nmax_concurrent_calls = 8\n");
    let host = layout.host();
    assert!(host.load_all().failures.is_empty());
    let plugin = host.plugin("misbehaving").unwrap();
    let fifo = berth_tests::Fifo::new(layout.data().with_file_name("hang.fifo"));
    let input = serde_json::to_vec(&fifo.path()).unwrap();
    let within = Duration::from_millis(2);
    let samples: Vec<f64> = (0..if quick { 100 } else { 500 })
        .map(|_| {
            let started = Instant::now();
            let outcome = plugin.call_within("wait", &input, within);
            let late = started.elapsed().saturating_sub(within);
            assert!(matches!(outcome, Err(berth::CallError::Timeout { .. })), "{outcome:?}");
            fifo.release_until(|| berth_tests::status_of(&host, "misbehaving").in_flight == 0);
            late.as_secs_f64() * 1e6
        })
        .collect();
    vec![figure("deadline/timeout-late", "µs", samples)]
}
