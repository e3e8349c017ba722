//! A quick measurement of load time per plugin, call overhead and hot-reload latency (the full benchmark
//! suite is `BENCHMARKS.md`'s job). Run optimised, with optimised plugins:
//!
//! ```sh
//! BERTH_FIXTURE_PROFILE=release cargo run --release -p berth-tests --example quickbench
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth::{Host, HostConfig, ReloadConfig};
use berth_tests::{Layout, Reloadable, install_atomically, library_file, wait_for_reload};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    berth_tests::built();
    // Load: each round is a fresh host with a fresh private cache, so every load reads, checks, hashes,
    // copies and opens the library (a new path: the system loader cannot reuse an earlier image).
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..31 {
        let layout = Layout::new();
        layout.add_misbehaving("ok");
        let host = layout.host();
        let start = Instant::now();
        let report = host.load_all();
        cold.push(start.elapsed());
        assert_eq!(report.loaded.len(), 1, "{:?}", report.failures);
        // Same layout, second host: the verified private copy is already in the cache.
        drop(host);
        let host = layout.host();
        let start = Instant::now();
        host.load_all();
        warm.push(start.elapsed());
    }
    let size = std::fs::metadata(berth_tests::library("misbehaving")).unwrap().len();
    println!("library size: {:.1} MiB", size as f64 / 1048576.0);
    println!("load, fresh cache (median of 31): {:?}", median(cold));
    println!("load, cached copy (median of 31): {:?}", median(warm));

    let layout = Layout::new();
    layout.add_misbehaving("ok");
    let host = layout.host();
    host.load_all();
    let plugin = host.plugin("misbehaving").unwrap();
    let input = b"[40,2]";
    let rounds = 200_000u32;
    let mut per_call = Vec::new();
    for _ in 0..15 {
        let start = Instant::now();
        for _ in 0..rounds {
            let out = plugin.call("add", std::hint::black_box(input)).unwrap();
            assert_eq!(out, b"42");
        }
        per_call.push(start.elapsed() / rounds);
    }
    let local = {
        let mut samples = Vec::new();
        for _ in 0..15 {
            let start = Instant::now();
            for _ in 0..rounds {
                let (a, b): (u64, u64) = serde_json::from_slice(std::hint::black_box(input)).unwrap();
                let out = serde_json::to_vec(&(a + b)).unwrap();
                assert_eq!(out, b"42");
            }
            samples.push(start.elapsed() / rounds);
        }
        median(samples)
    };
    let through = median(per_call);
    println!("generic call `add` [40,2] through PluginHandle::call (median of 15 x {rounds}): {through:?}");
    println!("the same JSON work done locally, no plugin boundary: {local:?}");
    println!("boundary + registry overhead: {:?}", through.saturating_sub(local));
    reload_latency();
}

/// From the rename that installs a new build to the `Reloaded` event (sent right after the swap), through the
/// watcher with the default configuration, while two threads call without pause.
fn reload_latency() {
    const RELOADS: usize = 101;
    let builds = [Reloadable::marked("one"), Reloadable::marked("two")].map(|b| std::fs::read(b.library()).unwrap());
    let layout = Layout::new();
    let dir = layout.add_reloadable(Reloadable::marked("one"), "");
    let reload = ReloadConfig { max_retired_generations: 1000, ..ReloadConfig::default() };
    let host = Arc::new(Host::new(HostConfig { reload, ..layout.config() }).unwrap());
    host.load_all();
    let events = host.subscribe();
    let _watcher = host.watch().unwrap();
    let (stop, calls, failed) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (host, stop, calls, failed) = (host.clone(), stop.clone(), calls.clone(), failed.clone());
            std::thread::spawn(move || {
                let handle = host.plugin("reloadable").unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if handle.call("mark", b"null").is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let target = dir.join(library_file("reloadable"));
    let mut latencies = Vec::new();
    for reload in 1..=RELOADS {
        install_atomically(&target, &builds[reload % 2]);
        let written = Instant::now();
        wait_for_reload(&events, "reloadable");
        latencies.push(written.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    callers.into_iter().for_each(|c| c.join().unwrap());
    latencies.sort();
    let debounce = host.config().reload.debounce;
    println!(
        "reload, write -> new generation serving (debounce {debounce:?}, {RELOADS} reloads): median {:?}, p99 {:?}, max {:?}",
        latencies[RELOADS / 2],
        latencies[RELOADS * 99 / 100],
        latencies[RELOADS - 1]
    );
    println!(
        "calls during the reloads: {} from 2 threads, {} failed",
        calls.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
}
