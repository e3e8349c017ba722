//! `cargo xtask bench [--quick | --table-only]`: runs the benchmark suite (`tests/benches`: `calls` with criterion,
//! `lifecycle` with its own harness) against optimised plugins, then prints the table of BENCHMARKS.md: each
//! figure's median (min-max), its floor, the ratio, and the goal it is held to. The table is also written to
//! `target/berth-bench/table.md`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::{cargo, root, run, target_dir};

/// Runs both benchmarks (unless `table_only`) and prints the table.
pub(crate) fn bench(quick: bool, table_only: bool) -> Result<(), String> {
    let root = root();
    for bench in ["calls", "lifecycle"].into_iter().filter(|_| !table_only) {
        let mut command = cargo();
        command.current_dir(&root).args(["bench", "-p", "berth-tests", "--bench", bench, "--"]);
        if quick {
            command.arg("--quick");
        }
        command.env("BERTH_FIXTURE_PROFILE", "release");
        if !run(&mut command)? {
            return Err(format!("the {bench} benchmark failed"));
        }
    }
    let results = root.join("target/berth-bench");
    let table = table(&target_dir(&root).join("criterion"), &results.join("lifecycle.json"))?;
    println!("\n{table}");
    let out = results.join("table.md");
    fs::write(&out, &table).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!("written: {}", out.display());
    Ok(())
}

/// A figure's samples, sorted, with their unit.
struct Figure {
    sorted: Vec<f64>,
    unit: &'static str,
}

impl Figure {
    /// `samples` (at least one) in `unit`; `what` names them in the error.
    fn new(mut samples: Vec<f64>, unit: &'static str, what: &str) -> Result<Figure, String> {
        if samples.is_empty() {
            return Err(format!("{what}: no samples"));
        }
        samples.sort_by(f64::total_cmp);
        Ok(Figure { sorted: samples, unit })
    }

    /// The `p`th percentile (nearest rank).
    fn percentile(&self, p: usize) -> f64 {
        self.sorted[(self.sorted.len() - 1) * p / 100]
    }

    fn median(&self) -> f64 {
        self.percentile(50)
    }

    fn cell(&self, value: f64) -> String {
        format!("{} {}", number(value), self.unit)
    }

    /// The median, with the range when the samples differ.
    fn spread(&self) -> String {
        let (median, min, max) = (self.cell(self.median()), self.percentile(0), self.percentile(100));
        if min == max { median } else { format!("{median} ({}-{})", number(min), number(max)) }
    }
}

/// Three significant digits, more for small values.
fn number(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        v if v >= 1.0 => format!("{value:.2}"),
        _ => format!("{value:.3}"),
    }
}

/// The numbers in a JSON array (none when it is not one).
fn numbers(array: &Value) -> Vec<f64> {
    array.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
}

/// The per-iteration times (ns) criterion recorded for benchmark `id`: one per sample.
fn criterion(dir: &Path, id: &str) -> Result<Figure, String> {
    let path = dir.join(id).join("new/sample.json");
    let text = fs::read(&path).map_err(|e| format!("{}: {e}; run `cargo xtask bench`", path.display()))?;
    let sample: Value = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let times = numbers(&sample["times"]).into_iter().zip(numbers(&sample["iters"]));
    Figure::new(times.map(|(time, iters)| time / iters).collect(), "ns", &path.display().to_string())
}

/// The lifecycle figures, by id.
fn lifecycle(path: &Path) -> Result<BTreeMap<String, Figure>, String> {
    let text = fs::read(path).map_err(|e| format!("{}: {e}; run `cargo xtask bench`", path.display()))?;
    let all: Vec<Value> = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    all.iter()
        .map(|figure| {
            let id = figure["id"].as_str().unwrap_or_default().to_owned();
            // Per-plugin times are shown in ms, counts of calls without a unit.
            let unit = match figure["unit"].as_str() {
                Some("ms/plugin" | "ms") => "ms",
                Some("s") => "s",
                Some("KiB") => "KiB",
                Some("µs") => "µs",
                _ => "",
            };
            let figure = Figure::new(numbers(&figure["samples"]), unit, &format!("{}: {id}", path.display()))?;
            Ok((id, figure))
        })
        .collect()
}

/// A goal: at most this value (in the figure's unit), and how the table states it.
type Goal = Option<(f64, &'static str)>;

fn table(criterion_dir: &Path, lifecycle_path: &Path) -> Result<String, String> {
    let mut rows = vec![
        "| measurement | median (min-max) | floor | ratio | goal | met |".to_owned(),
        "|---|---|---|---|---|---|".to_owned(),
    ];
    // `value`: another percentile than the median, shown alone; the median is shown with the range.
    let mut row = |name: &str, figure: &Figure, value: Option<f64>, floor: Option<(&str, f64)>, goal: Goal| {
        let (shown, value) = match value {
            Some(value) => (figure.cell(value), value),
            None => (figure.spread(), figure.median()),
        };
        let (floor_cell, ratio) = match floor {
            Some((what, floor)) => (format!("{what}: {}", figure.cell(floor)), format!("{:.2}x", value / floor)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let (goal_cell, met) = match goal {
            Some((limit, text)) => (text.to_owned(), if value <= limit { "yes" } else { "**no**" }),
            None => ("-".to_owned(), "-"),
        };
        rows.push(format!("| {name} | {shown} | {floor_cell} | {ratio} | {goal_cell} | {met} |"));
    };
    let call = |id: &str| criterion(criterion_dir, id);
    let extern_c = call("trivial/extern-c")?;
    let floor = Some(("extern \"C\" fn", extern_c.median()));
    let trivial: [(&str, &str, Goal); 5] = [
        (
            "trivial call: `LocalTyped` (per-thread handle, follows reloads)",
            "trivial/typed-local",
            Some((6.0, "<= 6 ns")),
        ),
        ("trivial call: `Typed` (shared handle, follows reloads)", "trivial/typed", Some((6.0, "<= 6 ns"))),
        ("trivial call: one generation's interface object (no hot swap)", "trivial/pinned", None),
        ("trivial call: generic `PluginHandle::call(\"add\", 16 bytes)`", "trivial/generic", None),
        ("floor: local `dyn Trait` call", "trivial/local-dyn", None),
    ];
    for (name, id, goal) in trivial {
        row(name, &call(id)?, None, floor, goal);
    }
    row("floor: the plugin's bare `extern \"C\"` fn", &extern_c, None, None, None);
    let payloads: [(usize, &str, Goal); 2] = [(1024, "1 KiB", Some((30.0, "<= 30 ns"))), (65536, "64 KiB", None)];
    for (size, name, goal) in payloads {
        let local = call(&format!("payload/local/{size}"))?;
        let floor = Some(("local `dyn Trait` copy", local.median()));
        row(
            &format!("generic call `echo`, {name} in and out"),
            &call(&format!("payload/generic/{size}"))?,
            None,
            floor,
            goal,
        );
    }
    for handle in ["typed-local", "typed"] {
        let one = call(&format!("threads/{handle}/1"))?.median();
        for threads in [1, 2, 8] {
            let name = format!("trivial call `{handle}`, {threads} thread(s), CPU time per call");
            let (floor, goal) =
                (Some(("same handle, 1 thread", one)), Some((one * 1.25, "no serialisation (<= 1.25x)")));
            row(&name, &call(&format!("threads/{handle}/{threads}"))?, None, floor, goal);
        }
    }
    supervision_rows(&mut row, &call)?;
    let lifecycle = lifecycle(lifecycle_path)?;
    let get = |id: &str| lifecycle.get(id).ok_or_else(|| format!("no figure {id} in the results"));
    for count in [1, 10, 100, 1000] {
        let floor = Some(("bare dlopen", get(&format!("load/dlopen/{count}"))?.median()));
        for (mode, limit, text) in [("cold", 0.8, "<= 0.8 ms"), ("cached", 0.35, "<= 0.35 ms")] {
            let name = format!("load {count} plugin(s), {mode}, per plugin");
            row(&name, get(&format!("load/{mode}/{count}"))?, None, floor, Some((limit, text)));
        }
    }
    row("load 1000 plugins, cold, total", get("load/cold-total/1000")?, None, None, Some((0.6, "<= 0.6 s")));
    let latency = get("reload/latency")?;
    let debounce = get("reload/debounce")?.median();
    let floor = Some(("debounce", debounce));
    let goal = Some((debounce + 5.0, "<= debounce + 5 ms"));
    row("reload: last write to new generation serving, median", latency, None, floor, goal);
    row("reload: same, p99", latency, Some(latency.percentile(99)), floor, None);
    let calls = get("reload/calls")?.median();
    row(&format!("reload: failed calls (of {calls:.0})"), get("reload/failed-calls")?, None, None, Some((0.0, "0")));
    let mapped = Some(("mapped", get("memory/mapped-per-generation")?.median()));
    row("memory: resident per retired generation", get("memory/resident-per-generation")?, None, mapped, None);
    row("memory: the library file", get("memory/library-file")?, None, None, None);
    let late = get("deadline/timeout-late")?;
    row("caller deadline: `Timeout` past the deadline, median", late, None, None, None);
    row("caller deadline: same, p99", late, Some(late.percentile(99)), None, Some((1000.0, "<= 1 ms")));
    Ok(rows.join("\n") + "\n")
}

/// The supervision rows: each configuration's calls against the same calls with nothing configured.
fn supervision_rows(
    row: &mut impl FnMut(&str, &Figure, Option<f64>, Option<(&str, f64)>, Goal),
    call: &impl Fn(&str) -> Result<Figure, String>,
) -> Result<(), String> {
    // (configuration, what it is, extra ns allowed on typed-local, on generic)
    let configurations = [
        ("deadline", "`call_timeout` and a breaker", (1.0, "+1 ns"), Some((3.0, "+3 ns"))),
        ("bulkhead", "`max_concurrent_calls`", (15.0, "+15 ns"), Some((15.0, "+15 ns"))),
        ("rate", "`calls_per_second`", (15.0, "+15 ns"), Some((15.0, "+15 ns"))),
    ];
    for (id, what, local_goal, generic_goal) in configurations {
        for (handle, goal) in [("typed-local", Some(local_goal)), ("typed", None), ("generic", generic_goal)] {
            let floor = call(&format!("trivial/{handle}"))?.median();
            let goal = goal.map(|(extra, text)| (floor + extra, text));
            let name = format!("supervised by {what}: `{handle}`");
            row(&name, &call(&format!("supervision-{id}/{handle}"))?, None, Some(("nothing configured", floor)), goal);
        }
        for threads in [1, 8] {
            let plain = call(&format!("threads/typed-local/{threads}"))?.median();
            let figure = call(&format!("supervision-threads-{id}/{threads}"))?;
            let name = format!("supervised by {what}: `typed-local`, {threads} thread(s), CPU time per call");
            let goal = if id == "deadline" { (plain + 1.0, "+1 ns") } else { (plain + 15.0, "+15 ns") };
            row(&name, &figure, None, Some(("nothing configured", plain)), Some(goal));
        }
    }
    let generic = call("trivial/generic")?.median();
    for handle in ["generic", "typed"] {
        let name = format!("caller deadline (`call_within`, a hop to the plugin's thread): `{handle}`");
        row(&name, &call(&format!("caller-deadline/{handle}"))?, None, Some(("generic call", generic)), None);
    }
    Ok(())
}
