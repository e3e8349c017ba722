//! The plugin author's guide (issues 4 and 11), run as written.
//!
//! Section 11 of `docs/plugin-authors.md`, the path of an author outside this repository, runs in an empty
//! temporary directory outside the workspace: every command it gives is run, in order, from `cargo berth new`
//! (whose files must be the ones the guide shows) to a bundle made and signed by `cargo berth bundle`,
//! installed by `berth install` into a running host that enforces signatures, and a call that the plugin
//! answers. Section 12, the `cargo xtask` shortcuts for plugins inside the repository, runs in the root of a
//! copy of the repository.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use berth_tests::{BerthRun, berth_bin, root};

/// Where the guide writes the reader's checkout of Berth; the test puts this repository there.
const CHECKOUT: &str = "/path/to/berth";

/// One step of a walkthrough, as the guide gives it.
#[derive(Debug)]
enum Step {
    /// A shell command (a line ending in `\` goes on on the next).
    Command(String),
    /// A file the guide shows in full: a code block whose first line is `# file: PATH` or `// file: PATH`,
    /// PATH relative to the directory the commands are in at that point.
    File { path: String, text: String },
    /// A file a tool wrote, shown in full: a code block whose first line is `# generated: PATH` or
    /// `// generated: PATH`. The file must hold exactly this (the marker line left out).
    Generated { path: String, text: String },
}

impl Step {
    /// What the expectations call it: the command, or `file: PATH`.
    fn label(&self) -> String {
        match self {
            Step::Command(command) => command.clone(),
            Step::File { path, .. } => format!("file: {path}"),
            Step::Generated { path, .. } => format!("generated: {path}"),
        }
    }
}

/// Section `number` of the guide, without its heading.
fn section(number: u32) -> String {
    let guide = fs::read_to_string(root().join("docs/plugin-authors.md")).unwrap();
    let section = guide.split(&format!("\n## {number}.")).nth(1).unwrap_or_else(|| panic!("no section {number}"));
    section.split("\n## ").next().unwrap().to_owned()
}

/// The steps of a section, in order: each line of its `sh` blocks (comments and blank lines left out), and
/// each code block that names its file.
fn steps(section: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut block: Option<(String, Vec<&str>)> = None;
    for line in section.lines() {
        let trimmed = line.trim();
        match &mut block {
            None => block = trimmed.strip_prefix("```").map(|lang| (lang.to_owned(), Vec::new())),
            Some((lang, lines)) if trimmed == "```" => {
                if lang == "sh" {
                    let mut command = String::new();
                    for line in lines.iter().map(|line| line.trim()) {
                        if command.is_empty() && (line.is_empty() || line.starts_with('#')) {
                            continue;
                        }
                        command.push_str(line);
                        if line.ends_with('\\') {
                            command.push('\n');
                        } else {
                            steps.push(Step::Command(std::mem::take(&mut command)));
                        }
                    }
                } else if let Some(path) = lines.first().and_then(|first| {
                    first.trim().strip_prefix("# file: ").or_else(|| first.trim().strip_prefix("// file: "))
                }) {
                    steps.push(Step::File { path: path.to_owned(), text: lines.join("\n") + "\n" });
                } else if let Some(path) = lines.first().and_then(|first| {
                    first.trim().strip_prefix("# generated: ").or_else(|| first.trim().strip_prefix("// generated: "))
                }) {
                    steps.push(Step::Generated { path: path.to_owned(), text: lines[1..].join("\n") + "\n" });
                }
                block = None;
            }
            Some((_, lines)) => lines.push(line),
        }
    }
    steps
}

/// What a step must do, beyond exiting 0.
#[derive(Debug)]
enum Check {
    /// Nothing more.
    Runs,
    /// Print this, on standard output or standard error.
    Prints(String),
    /// Print exactly this on standard output: a call's answer.
    Answers(&'static str),
    /// Keep running as a host serving this plugin directory (a `berth run`, in "another terminal").
    Serves(&'static str),
    /// Make the host serving this plugin directory (the first) load hello-world 0.1.0, and print this (the
    /// second).
    Loads(&'static str, &'static str),
}

fn prints(text: &str) -> Check {
    Check::Prints(text.to_owned())
}

/// `sh -c COMMAND` in `dir` (`exec COMMAND` when `exec` is set: a host that the test stops with a signal),
/// with `berth` and `cargo` on the PATH, the host's cache and data in `state` (where
/// a command names no directory of its own), and nothing from this test's environment that would change what
/// cargo or berth do.
fn shell(command: &str, exec: bool, dir: &Path, state: &Path) -> Command {
    let berth_dir = berth_bin().parent().unwrap().to_owned();
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let mut path = vec![berth_dir];
    path.extend(cargo.parent().map(Path::to_owned));
    path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    let mut shell = Command::new("sh");
    shell.arg("-c").arg(if exec { format!("exec {command}") } else { command.to_owned() }).current_dir(dir);
    shell.env("PATH", std::env::join_paths(path).unwrap());
    shell.env("BERTH_CACHE_DIR", state.join("cache")).env("BERTH_DATA_DIR", state.join("data"));
    for variable in ["BERTH_PLUGIN_PATH", "BERTH_CONFIG", "BERTH_TRUST_POLICY", "CARGO_TARGET_DIR", "RUSTFLAGS"] {
        shell.env_remove(variable);
    }
    shell
}

/// The value of `--plugin-dir` in a command.
fn plugin_dir_of(command: &str) -> &str {
    let mut words = command.split_whitespace();
    words.find(|word| *word == "--plugin-dir").and_then(|_| words.next()).expect("the command names --plugin-dir")
}

/// Runs `steps` in order, starting in `start`, each checked as `expected` says (one expectation per step, in
/// the same order, each naming how its step starts). `entered` is called with each directory a `cd` enters.
/// Returns the hosts still running, by plugin directory.
fn walk(
    steps: &[Step],
    expected: &[(&str, Check)],
    start: &Path,
    state: &Path,
    entered: impl Fn(&Path),
) -> Vec<(&'static str, BerthRun)> {
    let labels: Vec<String> = steps.iter().map(Step::label).collect();
    let matches = labels.len() == expected.len() && labels.iter().zip(expected).all(|(l, (p, _))| l.starts_with(p));
    let wanted: Vec<&str> = expected.iter().map(|(prefix, _)| *prefix).collect();
    assert!(matches, "the guide's steps changed: expected steps starting\n{wanted:#?}\nfound\n{labels:#?}");

    let checkout = root().to_string_lossy().into_owned();
    let mut dir = start.to_owned();
    let mut hosts: Vec<(&'static str, BerthRun)> = Vec::new();
    for (step, (_, check)) in steps.iter().zip(expected) {
        let started = Instant::now();
        let command = match step {
            Step::File { path, text } => {
                let path = dir.join(path);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, text.replace(CHECKOUT, &checkout)).unwrap();
                continue;
            }
            Step::Generated { path, text } => {
                let written = fs::read_to_string(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
                assert_eq!(written, text.replace(CHECKOUT, &checkout), "{path} is not what the guide shows");
                continue;
            }
            Step::Command(command) => command.replace(CHECKOUT, &checkout),
        };
        if let Some(to) = command.strip_prefix("cd ") {
            dir = dir.join(to.trim());
            assert!(dir.is_dir(), "`{command}`: no such directory");
            entered(&dir);
            continue;
        }
        if let Check::Serves(plugins) = check {
            assert_eq!(plugin_dir_of(&command), *plugins, "`{command}`");
            let mut run = BerthRun::start(shell(&command, true, &dir, state));
            run.wait_line(|l| l.starts_with("berth: serving"));
            hosts.push((plugins, run));
            continue;
        }
        let output = shell(&command, false, &dir, state).output().unwrap();
        let printed = berth_tests::output_text(&output);
        assert!(output.status.success(), "`{command}` failed:\n{printed}");
        match check {
            Check::Runs | Check::Serves(_) => {}
            Check::Prints(words) => assert!(printed.contains(words), "`{command}` did not print {words:?}:\n{printed}"),
            Check::Answers(answer) => {
                assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), *answer, "`{command}`:\n{printed}")
            }
            Check::Loads(plugins, words) => {
                assert!(printed.contains(words), "`{command}` did not print {words:?}:\n{printed}");
                let (_, host) = hosts.iter_mut().find(|(dir, _)| dir == plugins).expect("a host serves it by now");
                host.wait_line(|l| l.starts_with("event: hello-world: loaded 0.1.0"));
            }
        }
        println!("{:>6} ms  {}", started.elapsed().as_millis(), command.lines().next().unwrap_or_default());
    }
    hosts
}

/// Stops the hosts as ops would, each having shut the plugin down.
fn stop(hosts: Vec<(&str, BerthRun)>) {
    for (plugins, host) in hosts {
        let rest = host.stop();
        assert!(rest.iter().any(|l| l.starts_with("event: hello-world: shut down")), "host of {plugins}: {rest:?}");
    }
}

/// Both walkthroughs build a plugin called hello-world into the same shared target directory, so they take
/// turns.
static SHARED_TARGET: Mutex<()> = Mutex::new(());

/// The target directory the walkthroughs build in, kept between runs so the dependencies build once.
fn shared_target() -> PathBuf {
    let dir = root().join("target").join("guide");
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Makes what the guide builds in the crate at `krate` fast without changing what it builds: the crate's
/// `target/` is a link to the shared target directory, and its `Cargo.lock` starts as the workspace's, so
/// the dependencies are the versions the workspace tests, already built, and nothing is downloaded.
fn share_builds(krate: &Path) {
    if krate.join("Cargo.toml").is_file() && !krate.join("target").exists() {
        #[cfg(unix)]
        std::os::unix::fs::symlink(shared_target(), krate.join("target")).unwrap();
        fs::copy(root().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn the_authors_guide_runs_as_written_in_an_empty_directory_outside_the_repository() {
    let _turn = SHARED_TARGET.lock().unwrap_or_else(|e| e.into_inner());
    let steps = steps(&section(11));
    let manifest = steps.iter().find_map(|step| match step {
        Step::Generated { path, text } if path == "Cargo.toml" => Some(text),
        _ => None,
    });
    let dependency = format!("berth-plugin-api = {{ path = \"{CHECKOUT}/plugin-api\" }}");
    assert!(manifest.is_some_and(|text| text.contains(&dependency)), "the guide's Cargo.toml: {manifest:?}");

    let target = berth::trust::HOST_TARGET;
    let api = berth::HOST_API_VERSION;
    let expected = [
        ("cargo berth new hello-world --plugin-api", prints("created hello-world/Cargo.toml")),
        ("cd hello-world", Check::Runs),
        ("generated: Cargo.toml", Check::Runs),
        ("generated: src/lib.rs", Check::Runs),
        ("generated: hello-world.toml", Check::Runs),
        ("cargo test", prints("test result: ok. 2 passed")),
        ("cargo build --release", prints("Finished `release` profile")),
        // Developing: a watching host (warn policy) and a plugin put in by hand, one rename.
        ("mkdir -p dev/plugins", Check::Runs),
        ("berth run --plugin-dir dev/plugins --data-dir dev/data", Check::Serves("dev/plugins")),
        ("mkdir dev/plugins/.hello-world.new", Check::Runs),
        ("cp target/release/libhello_world.so hello-world.toml dev/plugins/.hello-world.new/", Check::Runs),
        ("mv dev/plugins/.hello-world.new dev/plugins/hello-world", Check::Loads("dev/plugins", "")),
        (
            "berth --plugin-dir dev/plugins --data-dir dev/data check",
            prints(&format!("1 manifest(s) checked against plugin-api {api}: 1 loaded, 0 disabled, 0 failed")),
        ),
        (
            "berth --plugin-dir dev/plugins --data-dir dev/data call hello-world hello",
            Check::Answers("\"Hello, Ada!\""),
        ),
        ("cargo build --release", prints("Finished `release` profile")),
        ("cp target/release/libhello_world.so dev/plugins/hello-world/.", Check::Runs),
        ("mv dev/plugins/hello-world/.libhello_world.so.new dev/plugins/hello-world/libhello_world.so", Check::Runs),
        // Shipping: a key, a signed bundle, verified, installed into a host that enforces signatures.
        ("cargo berth keygen --out keys", prints("public key:")),
        ("cargo berth bundle --key keys/berth.key", prints(&format!("hello-world-0.1.0-{target}.tar.gz"))),
        ("berth verify target/bundles/hello-world-0.1.0-*.tar.gz", prints("trust:      signed by trusted key")),
        ("mkdir -p deploy/plugins", Check::Runs),
        (
            "berth run --plugin-dir deploy/plugins --data-dir deploy/data --trust-policy enforce",
            Check::Serves("deploy/plugins"),
        ),
        (
            "berth install target/bundles/hello-world-0.1.0-*.tar.gz --to deploy/plugins",
            Check::Loads("deploy/plugins", "installed hello-world 0.1.0"),
        ),
        (
            "berth call hello-world hello '{\"name\":\"ops\"}' --plugin-dir deploy/plugins",
            Check::Answers("\"Hello, ops!\""),
        ),
    ];

    let home = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let outside = |dir: &Path| dir.ancestors().all(|dir| !dir.join("Cargo.toml").exists());
    assert!(outside(home.path()), "{} is inside a cargo workspace", home.path().display());
    assert!(fs::read_dir(home.path()).unwrap().next().is_none(), "the walkthrough starts in an empty directory");
    let started = Instant::now();
    let hosts = walk(&steps, &expected, home.path(), state.path(), share_builds);
    println!("section 11: {} ms", started.elapsed().as_millis());

    let installed = home.path().join("hello-world/deploy/plugins/hello-world");
    assert!(installed.join("libhello_world.so.minisig").is_file(), "the installed plugin has no signature");
    stop(hosts);
}

/// Copies the repository (without `target/` and `.git/`) to `to`; its `target/` is a link to the shared
/// target directory, so the dependencies are built once.
fn copy_repository(to: &Path) {
    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap().flatten() {
            let name = entry.file_name();
            if name == "target" || name == ".git" {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &to.join(&name));
            } else {
                fs::copy(entry.path(), to.join(&name)).unwrap();
            }
        }
    }
    copy(&root(), to);
    #[cfg(unix)]
    std::os::unix::fs::symlink(shared_target(), to.join("target")).unwrap();
}

#[cfg(unix)]
#[test]
fn the_guides_xtask_shortcuts_run_as_written_in_a_copy_of_the_repository() {
    let _turn = SHARED_TARGET.lock().unwrap_or_else(|e| e.into_inner());
    let steps = steps(&section(12));
    let expected = [
        ("cargo xtask new-plugin hello-world", prints("plugins/hello-world")),
        ("cargo test -p hello-world", prints("test result: ok. 2 passed")),
        ("cargo xtask keygen --out keys", prints("berth.pub")),
        ("cargo xtask bundle hello-world", prints("unsigned")),
        ("cargo xtask sign", prints("signed by key")),
        ("berth verify", prints("trust:      signed by trusted key")),
        ("mkdir -p deploy/plugins", Check::Runs),
        ("berth install", prints("installed hello-world 0.1.0")),
        ("berth call hello-world hello", Check::Answers("\"Hello, ops!\"")),
    ];
    let workspace = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    copy_repository(workspace.path());
    let started = Instant::now();
    let hosts = walk(&steps, &expected, workspace.path(), state.path(), |_| {});
    println!("section 12: {} ms", started.elapsed().as_millis());
    assert!(hosts.is_empty());
}
