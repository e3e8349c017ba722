//! `cargo xtask bench [--quick]`: runs the benchmark suite (`tests/benches`: `calls` with criterion,
//! `lifecycle` with its own harness) against optimised plugins, then prints the table of BENCHMARKS.md: each
//! figure's median (min-max), its floor, the ratio, and the goal it is held to. The table is also written to
//! `target/berth-bench/table.md`.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::{cargo, root, run, target_dir};

/// Runs both benchmarks and prints the table.
pub(crate) fn bench(quick: bool) -> Result<(), String> {
    let root = root();
    for bench in ["calls", "lifecycle"] {
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
    let table = table(&target_dir(&root).join("criterion"), &root.join("target/berth-bench/lifecycle.json"))?;
    println!("\n{table}");
    let out = root.join("target/berth-bench/table.md");
    fs::write(&out, &table).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!("written: {}", out.display());
    Ok(())
}

/// A figure's samples, with their unit.
struct Figure {
    samples: Vec<f64>,
    unit: &'static str,
}

impl Figure {
    fn median(&self) -> f64 {
        percentile(&self.samples, 50)
    }

    fn cell(&self, value: f64) -> String {
        format!("{} {}", number(value), self.unit)
    }

    fn spread(&self) -> String {
        let (min, max) = (percentile(&self.samples, 0), percentile(&self.samples, 100));
        if self.samples.len() == 1 {
            self.cell(min)
        } else {
            format!("{} ({}-{})", self.cell(self.median()), number(min), number(max))
        }
    }
}

/// The `p`th percentile (nearest rank) of `samples`.
fn percentile(samples: &[f64], p: usize) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(sorted.len() - 1) * p / 100]
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

/// The per-iteration times (ns) criterion recorded for benchmark `id`: one per sample.
fn criterion(dir: &Path, id: &str) -> Result<Figure, String> {
    let path = dir.join(id).join("new/sample.json");
    let text = fs::read(&path).map_err(|e| format!("{}: {e}; run `cargo xtask bench`", path.display()))?;
    let sample: Value = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let numbers = |key: &str| -> Vec<f64> {
        sample[key].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
    };
    let samples: Vec<f64> = numbers("times").iter().zip(numbers("iters")).map(|(t, i)| t / i).collect();
    if samples.is_empty() {
        return Err(format!("{}: no samples", path.display()));
    }
    Ok(Figure { samples, unit: "ns" })
}

/// The lifecycle figures, by id.
fn lifecycle(path: &Path) -> Result<Vec<(String, Figure)>, String> {
    let text = fs::read(path).map_err(|e| format!("{}: {e}; run `cargo xtask bench`", path.display()))?;
    let all: Vec<Value> = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(all
        .iter()
        .map(|figure| {
            let samples = figure["samples"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect());
            let unit = match figure["unit"].as_str() {
                Some("ms/plugin") => "ms",
                Some("ms") => "ms",
                Some("s") => "s",
                Some("KiB") => "KiB",
                _ => "",
            };
            (
                figure["id"].as_str().unwrap_or_default().to_owned(),
                Figure { samples: samples.unwrap_or_default(), unit },
            )
        })
        .collect())
}

/// A goal: at most this value (in the figure's unit), or none.
enum Goal {
    AtMost(f64, &'static str),
    None,
}

fn table(criterion_dir: &Path, lifecycle_path: &Path) -> Result<String, String> {
    let mut rows = vec![
        "| measurement | median (min-max) | floor | ratio | goal | met |".to_owned(),
        "|---|---|---|---|---|---|".to_owned(),
    ];
    let mut row = |name: &str, figure: &Figure, value: f64, floor: Option<(&str, f64)>, goal: Goal| {
        let shown = if value == figure.median() { figure.spread() } else { figure.cell(value) };
        let (floor_cell, ratio) = match floor {
            Some((what, floor)) => (format!("{what}: {}", figure.cell(floor)), format!("{:.2}x", value / floor)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let (goal_cell, met) = match goal {
            Goal::AtMost(limit, text) => (text.to_owned(), if value <= limit { "yes" } else { "**no**" }),
            Goal::None => ("-".to_owned(), "-"),
        };
        rows.push(format!("| {name} | {shown} | {floor_cell} | {ratio} | {goal_cell} | {met} |"));
    };
    let call = |id: &str| criterion(criterion_dir, id);
    let extern_c = call("trivial/extern-c")?;
    let floor = ("extern \"C\" fn", extern_c.median());
    let trivial = [
        ("trivial call: `LocalTyped` (per-thread handle, follows reloads)", "trivial/typed-local", true),
        ("trivial call: `Typed` (shared handle, follows reloads)", "trivial/typed", true),
        ("trivial call: one generation's interface object (no hot swap)", "trivial/pinned", false),
        ("trivial call: generic `PluginHandle::call(\"add\", 16 bytes)`", "trivial/generic", false),
        ("floor: local `dyn Trait` call", "trivial/local-dyn", false),
    ];
    for (name, id, goal) in trivial {
        let figure = call(id)?;
        let goal = if goal { Goal::AtMost(6.0, "<= 6 ns") } else { Goal::None };
        row(name, &figure, figure.median(), Some(floor), goal);
    }
    row("floor: the plugin's bare `extern \"C\"` fn", &extern_c, extern_c.median(), None, Goal::None);
    for (size, name, goal) in [(1024, "1 KiB", Goal::AtMost(30.0, "<= 30 ns")), (65536, "64 KiB", Goal::None)] {
        let figure = call(&format!("payload/generic/{size}"))?;
        let local = call(&format!("payload/local/{size}"))?;
        let floor = ("local `dyn Trait` copy", local.median());
        row(&format!("generic call `echo`, {name} in and out"), &figure, figure.median(), Some(floor), goal);
    }
    for handle in ["typed-local", "typed"] {
        let one = call(&format!("threads/{handle}/1"))?;
        for threads in [1, 2, 8] {
            let figure = call(&format!("threads/{handle}/{threads}"))?;
            let name = format!("trivial call `{handle}`, {threads} thread(s), CPU time per call");
            let floor = Some(("same handle, 1 thread", one.median()));
            let goal = Goal::AtMost(one.median() * 1.25, "no serialisation (<= 1.25x)");
            row(&name, &figure, figure.median(), floor, goal);
        }
    }
    let lifecycle = lifecycle(lifecycle_path)?;
    let get = |id: &str| {
        lifecycle.iter().find(|(i, _)| i == id).map(|(_, f)| f).ok_or_else(|| format!("no figure {id} in the results"))
    };
    for count in [1, 10, 100, 1000] {
        let dlopen = get(&format!("load/dlopen/{count}"))?.median();
        for (mode, limit, text) in [("cold", 0.8, "<= 0.8 ms"), ("cached", 0.35, "<= 0.35 ms")] {
            let figure = get(&format!("load/{mode}/{count}"))?;
            let name = format!("load {count} plugin(s), {mode}, per plugin");
            row(&name, figure, figure.median(), Some(("bare dlopen", dlopen)), Goal::AtMost(limit, text));
        }
    }
    let total = get("load/cold-total/1000")?;
    row("load 1000 plugins, cold, total", total, total.median(), None, Goal::AtMost(0.6, "<= 0.6 s"));
    let latency = get("reload/latency")?;
    let debounce = get("reload/debounce")?.median();
    let goal = || Goal::AtMost(debounce + 5.0, "<= debounce + 5 ms");
    row(
        "reload: last write to new generation serving, median",
        latency,
        latency.median(),
        Some(("debounce", debounce)),
        goal(),
    );
    let p99 = percentile(&latency.samples, 99);
    row("reload: same, p99", latency, p99, Some(("debounce", debounce)), Goal::None);
    let failed = get("reload/failed-calls")?;
    let calls = get("reload/calls")?.median();
    row(&format!("reload: failed calls (of {calls:.0})"), failed, failed.median(), None, Goal::AtMost(0.0, "0"));
    let resident = get("memory/resident-per-generation")?;
    let mapped = get("memory/mapped-per-generation")?.median();
    row("memory: resident per retired generation", resident, resident.median(), Some(("mapped", mapped)), Goal::None);
    let file = get("memory/library-file")?;
    row("memory: the library file", file, file.median(), None, Goal::None);
    Ok(rows.join("\n") + "\n")
}
