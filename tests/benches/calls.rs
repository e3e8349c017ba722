//! Call overhead through Berth, next to the floors: a local `dyn Trait` call and the bare `extern "C"` function
//! of the same cdylib. Run with `cargo xtask bench` (which builds the plugins optimised and prints the table of
//! BENCHMARKS.md), or `BERTH_FIXTURE_PROFILE=release cargo bench -p berth-tests --bench calls`.
//!
//! Groups (criterion ids, which `cargo xtask bench` reads back):
//! - `trivial/*`: two `u64` in, one out. `typed` is what an application holds ([`berth::Typed`], which follows
//!   hot reloads, `Sync`); `typed-local` is its per-thread form ([`berth::LocalTyped`]); `pinned` is the same interface object of one generation, called directly; `generic` is
//!   `PluginHandle::call("add", 16 bytes)`.
//! - `payload/*/{1024,65536}`: the generic call `echo` (bytes in, the same bytes out) against a local
//!   `dyn Trait` doing the same copy.
//! - `supervision-<what>/{typed-local,typed,generic}`: the trivial calls on a plugin whose manifest turns
//!   supervision on, with limits no call reaches (`deadline`: a `call_timeout` and a breaker, the supervisor
//!   running; `bulkhead`; `rate`), against `trivial/*`; and `supervision-threads-<what>/{1,8}`, `typed-local`
//!   from 1 and 8 threads (CPU time per call, as `threads/*`).
//! - `caller-deadline/{generic,typed}`: the trivial calls with a caller's deadline (`call_within`): the hop to
//!   the plugin's thread and back.
//! - `isolated/*`: the generic call to the plugin in a worker process (`isolation = "process"`): `trivial`
//!   (`add`), `echo/{1024,65536}`, `threads/{1,8}` (wall time per call with every thread calling: the inverse
//!   of throughput), and `pipe-floor`, a one-byte round trip through pipes to a child process (`cat`).
//! - `threads/*/{1,2,8}`: the trivial typed call from 1, 2 and 8 threads at once: `typed` through one shared
//!   [`berth::Typed`], `typed-local` through a [`berth::LocalTyped`] per thread. The time reported is CPU time per call (wall time x busy cores / calls): equal to the one-thread
//!   figure when calls do not serialise.

use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use berth::config::ProcessSelection;
use berth::{Host, PluginHandle, Typed};
use berth_bench_api::MathV1;
use berth_tests::{BENCH_PLUGIN, Layout, library, library_file};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// The local floor of the trivial call.
trait Adder: Sync {
    fn add(&self, a: u64, b: u64) -> u64;
}

struct LocalAdder;

impl Adder for LocalAdder {
    fn add(&self, a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }
}

/// The local floor of the generic call: the shape of `Plugin::call`, without a boundary.
trait Generic {
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, String>;
}

struct LocalEcho;

impl Generic for LocalEcho {
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, String> {
        match method {
            "echo" => Ok(input.to_vec()),
            other => Err(format!("no method named {other:?}")),
        }
    }
}

/// The host with the benchmark plugin loaded (kept alive with its layout for the whole run).
struct Loaded {
    _layout: Layout,
    _host: Host,
    plugin: PluginHandle,
}

fn loaded() -> Loaded {
    loaded_with("")
}

/// [`loaded`], with `tables` appended to the plugin's manifest (supervision: `[limits]`, `[breaker]`).
fn loaded_with(tables: &str) -> Loaded {
    let layout = Layout::new();
    let dir = layout.add_bench_plugin(BENCH_PLUGIN, "berth-bench-mark-000000");
    let manifest = dir.join(format!("{BENCH_PLUGIN}.toml"));
    berth_tests::append_to_manifest(&manifest, tables);
    let host = layout.host();
    let report = host.load_all();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let plugin = host.plugin(BENCH_PLUGIN).unwrap();
    Loaded { _layout: layout, _host: host, plugin }
}

/// The plugin's bare `extern "C"` addition, from the same build of the library.
fn raw_add() -> (libloading::Library, extern "C" fn(u64, u64) -> u64) {
    let path = library(BENCH_PLUGIN);
    assert!(path.ends_with(library_file(BENCH_PLUGIN)));
    // SAFETY: the benchmark plugin's library was built by this repository; its initialisers are those of
    // every Berth plugin (none of its own).
    let library = unsafe { libloading::Library::new(&path) }.expect("the benchmark plugin opens");
    // SAFETY: `berth_bench_add` is declared in tests/fixtures/bench-plugin as
    // `extern "C" fn(u64, u64) -> u64`; the pointer is used only while `library` is alive (returned with it).
    let add = *unsafe { library.get::<extern "C" fn(u64, u64) -> u64>(b"berth_bench_add\0") }.expect("symbol");
    (library, add)
}

fn trivial(c: &mut Criterion, loaded: &Loaded) {
    let mut group = c.benchmark_group("trivial");
    let local: &dyn Adder = &LocalAdder;
    group.bench_function("local-dyn", |b| b.iter(|| black_box(local).add(black_box(40), black_box(2))));
    let (_library, add) = raw_add();
    group.bench_function("extern-c", |b| b.iter(|| black_box(add)(black_box(40), black_box(2))));
    let pinned = loaded.plugin.extension::<MathV1>().unwrap();
    group.bench_function("pinned", |b| b.iter(|| pinned.add(black_box(40), black_box(2)).unwrap()));
    let typed: Typed<MathV1> = loaded.plugin.typed::<MathV1>();
    assert_eq!(typed.call(|math| math.add(40, 2)).unwrap(), 42);
    group.bench_function("typed", |b| b.iter(|| typed.call(|math| math.add(black_box(40), black_box(2))).unwrap()));
    let local = typed.local();
    group.bench_function("typed-local", |b| {
        b.iter(|| local.call(|math| math.add(black_box(40), black_box(2))).unwrap())
    });
    let input: Vec<u8> = [40u64, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(loaded.plugin.call("add", &input).unwrap(), 42u64.to_le_bytes());
    group.bench_function("generic", |b| b.iter(|| loaded.plugin.call("add", black_box(&input)).unwrap()));
    group.finish();
}

fn payload(c: &mut Criterion, loaded: &Loaded) {
    let mut group = c.benchmark_group("payload");
    let local: &dyn Generic = &LocalEcho;
    for size in [1024usize, 65536] {
        let input: Vec<u8> = (0..size).map(|i| i as u8).collect();
        assert_eq!(loaded.plugin.call("echo", &input).unwrap(), input);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("local", size), &input, |b, input| {
            b.iter(|| black_box(local).call("echo", black_box(input)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("generic", size), &input, |b, input| {
            b.iter(|| loaded.plugin.call("echo", black_box(input)).unwrap())
        });
    }
    group.finish();
}

/// Runs the caller `make` returns `iters` times on each of `threads` threads started together (each thread
/// makes its own); returns the CPU time of all calls divided over `threads` (wall time from the first start
/// to the last end x busy cores / threads), so criterion's per-iteration figure is the CPU time of one call.
fn on_threads<C: FnMut()>(threads: usize, iters: u64, make: impl Fn() -> C + Sync) -> Duration {
    let start = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let running: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut call = make();
                    start.wait();
                    let began = Instant::now();
                    for _ in 0..iters {
                        call();
                    }
                    (began, Instant::now())
                })
            })
            .collect();
        running.into_iter().map(|thread| thread.join().unwrap()).collect()
    });
    let first = spans.iter().map(|(began, _)| *began).min().unwrap();
    let last = spans.iter().map(|(_, ended)| *ended).max().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(threads);
    (last - first) * cores as u32 / threads as u32
}

/// The trivial call through a [`berth::LocalTyped`] per thread, on `threads` threads (see [`on_threads`]).
fn local_on_threads(typed: &Typed<MathV1>, threads: usize, iters: u64) -> Duration {
    on_threads(threads, iters, || {
        let local = typed.local();
        move || {
            black_box(local.call(|math| math.add(black_box(40), black_box(2))).unwrap());
        }
    })
}

fn threads(c: &mut Criterion, loaded: &Loaded) {
    let mut group = c.benchmark_group("threads");
    let typed = loaded.plugin.typed::<MathV1>();
    let local: &dyn Adder = &LocalAdder;
    for threads in [1usize, 2, 8] {
        group.bench_function(BenchmarkId::new("local-dyn", threads), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, || {
                    || {
                        black_box(black_box(local).add(black_box(40), black_box(2)));
                    }
                })
            })
        });
        group.bench_function(BenchmarkId::new("typed", threads), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, || {
                    || {
                        black_box(typed.call(|math| math.add(black_box(40), black_box(2))).unwrap());
                    }
                })
            })
        });
        group.bench_function(BenchmarkId::new("typed-local", threads), |b| {
            b.iter_custom(|iters| local_on_threads(&typed, threads, iters))
        });
    }
    group.finish();
}

/// What `supervision/*` turns on, by name: manifest tables with limits no call reaches.
const SUPERVISION: [(&str, &str); 3] = [
    ("deadline", "[limits]\ncall_timeout = \"1h\"\n[breaker]\nfailures = 1000\n"),
    ("bulkhead", "[limits]\nmax_concurrent_calls = 1000000\n"),
    ("rate", "[limits]\ncalls_per_second = 4000000000\n"),
];

/// The trivial calls again, on a plugin whose manifest turns supervision on (see [`SUPERVISION`]), with the
/// supervisor's passes running: against `trivial/*`, the price of supervision per call, on 1 and 8 threads.
fn supervised(c: &mut Criterion) {
    for (name, tables) in SUPERVISION {
        let loaded = loaded_with(tables);
        let _supervisor = berth_runtime::Supervisor::start(&loaded._host).unwrap();
        let mut group = c.benchmark_group(format!("supervision-{name}"));
        let typed: Typed<MathV1> = loaded.plugin.typed::<MathV1>();
        group.bench_function("typed", |b| b.iter(|| typed.call(|math| math.add(black_box(40), black_box(2))).unwrap()));
        let local = typed.local();
        group.bench_function("typed-local", |b| {
            b.iter(|| local.call(|math| math.add(black_box(40), black_box(2))).unwrap())
        });
        let input: Vec<u8> = [40u64, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
        group.bench_function("generic", |b| b.iter(|| loaded.plugin.call("add", black_box(&input)).unwrap()));
        group.finish();
        let mut group = c.benchmark_group(format!("supervision-threads-{name}"));
        for threads in [1usize, 8] {
            group.bench_function(BenchmarkId::from_parameter(threads), |b| {
                b.iter_custom(|iters| local_on_threads(&typed, threads, iters))
            });
        }
        group.finish();
    }
}

/// The trivial calls with a caller's deadline: the hop to one of the plugin's threads and back.
fn caller_deadline(c: &mut Criterion, loaded: &Loaded) {
    let mut group = c.benchmark_group("caller-deadline");
    let within = Duration::from_secs(10);
    let input: Vec<u8> = [40u64, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    group
        .bench_function("generic", |b| b.iter(|| loaded.plugin.call_within("add", black_box(&input), within).unwrap()));
    let typed: Typed<MathV1> = loaded.plugin.typed::<MathV1>();
    group.bench_function("typed", |b| {
        b.iter(|| typed.call_within(within, |math| math.add(black_box(40), black_box(2))).unwrap())
    });
    group.finish();
}

/// The benchmark plugin in a worker process: the host configuration isolates it (`[isolation] process`).
fn loaded_isolated() -> Loaded {
    let layout = Layout::new();
    layout.add_bench_plugin(BENCH_PLUGIN, "berth-bench-mark-000000");
    let mut config = layout.config();
    config.isolation.process = ProcessSelection::Listed([berth::PluginName::new(BENCH_PLUGIN).unwrap()].into());
    let host = berth_tests::isolating(config);
    let report = host.load_all();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let plugin = host.plugin(BENCH_PLUGIN).unwrap();
    assert!(host.plugins()[0].worker.is_some(), "the benchmark plugin runs in a worker");
    Loaded { _layout: layout, _host: host, plugin }
}

/// Isolated calls: the generic call to a worker process through shared memory, next to the in-process
/// figures and a pipe round trip to a child process (`cat`, one byte each way: the transport go-plugin pays).
fn isolated(c: &mut Criterion) {
    let loaded = loaded_isolated();
    let mut group = c.benchmark_group("isolated");
    let input: Vec<u8> = [40u64, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(loaded.plugin.call("add", &input).unwrap(), 42u64.to_le_bytes());
    group.bench_function("trivial", |b| b.iter(|| loaded.plugin.call("add", black_box(&input)).unwrap()));
    for size in [1024usize, 65536] {
        let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
        assert_eq!(loaded.plugin.call("echo", &payload).unwrap(), payload);
        group.bench_with_input(BenchmarkId::new("echo", size), &payload, |b, payload| {
            b.iter(|| loaded.plugin.call("echo", black_box(payload)).unwrap())
        });
    }
    // Wall time per call with all threads calling: the inverse of throughput.
    for threads in [1usize, 8] {
        group.bench_function(BenchmarkId::new("threads", threads), |b| {
            b.iter_custom(|iters| {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(threads) as u32;
                on_threads(threads, iters, || {
                    let plugin = loaded.plugin.clone();
                    let input = input.clone();
                    move || {
                        black_box(plugin.call("add", &input).unwrap());
                    }
                }) / cores
            })
        });
    }
    let mut cat = std::process::Command::new("cat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cat runs");
    let (mut to_cat, mut from_cat) = (cat.stdin.take().unwrap(), cat.stdout.take().unwrap());
    group.bench_function("pipe-floor", |b| {
        b.iter(|| {
            let mut byte = [1u8];
            to_cat.write_all(&byte).unwrap();
            from_cat.read_exact(&mut byte).unwrap();
        })
    });
    drop(to_cat);
    let _ = cat.wait();
    group.finish();
}

fn calls(c: &mut Criterion) {
    let loaded = loaded();
    trivial(c, &loaded);
    payload(c, &loaded);
    threads(c, &loaded);
    caller_deadline(c, &loaded);
    supervised(c);
    isolated(c);
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = calls }
criterion_main!(benches);
