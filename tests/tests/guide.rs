//! The plugin author's guide (issue 4), run as written: every command in section 11 of
//! `docs/plugin-authors.md`, in order, on a copy of the repository, from `cargo xtask new-plugin` to a signed
//! bundle installed into a running host that enforces signatures, and a call to the new plugin.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::{BerthRun, berth_bin, root};

/// The shell commands of the guide's section 11, in order.
fn guide_commands() -> Vec<String> {
    let guide = fs::read_to_string(root().join("docs/plugin-authors.md")).unwrap();
    let section = guide.split("\n## 11.").nth(1).expect("the guide has a section 11");
    let section = section.split("\n## ").next().unwrap();
    let mut commands = Vec::new();
    let mut in_shell = false;
    for line in section.lines() {
        match line.trim() {
            "```sh" => in_shell = true,
            "```" => in_shell = false,
            command if in_shell && !command.is_empty() && !command.starts_with('#') => {
                commands.push(command.to_owned())
            }
            _ => {}
        }
    }
    commands
}

/// Copies the repository (without `target/` and `.git/`) to `to`; its `target/` is a link to a directory
/// kept between runs, so the dependencies are built once.
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
    let shared_target = root().join("target").join("guide");
    fs::create_dir_all(&shared_target).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&shared_target, to.join("target")).unwrap();
}

/// `sh -c COMMAND` in `dir`, with `berth` and `cargo` on the PATH and the host's cache and data in `state`.
fn shell(command: &str, dir: &Path, state: &Path) -> Command {
    let berth_dir = berth_bin().parent().unwrap().to_owned();
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let mut path = vec![berth_dir];
    path.extend(cargo.parent().map(Path::to_owned));
    path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    let mut shell = Command::new("sh");
    shell.arg("-c").arg(format!("exec {command}")).current_dir(dir);
    shell.env("PATH", std::env::join_paths(path).unwrap());
    shell.env("BERTH_CACHE_DIR", state.join("cache")).env("BERTH_DATA_DIR", state.join("data"));
    for variable in ["BERTH_PLUGIN_PATH", "BERTH_CONFIG", "BERTH_TRUST_POLICY", "CARGO_TARGET_DIR", "RUSTFLAGS"] {
        shell.env_remove(variable);
    }
    shell
}

/// What a command must print (beyond exiting 0).
const PRINTS: [(&str, &str); 7] = [
    ("cargo xtask new-plugin", "plugins/hello-world"),
    ("cargo test -p hello-world", "test result: ok. 2 passed"),
    ("cargo xtask keygen", "berth.pub"),
    ("cargo xtask bundle", "unsigned"),
    ("cargo xtask sign", "signed by key"),
    ("berth verify", "trust:      signed by trusted key"),
    ("berth install", "installed hello-world 0.1.0"),
];

#[cfg(unix)]
#[test]
fn the_authors_guide_runs_as_written_from_new_plugin_to_a_signed_install_in_a_running_host() {
    let commands = guide_commands();
    let expected_order = [
        "cargo xtask new-plugin",
        "cargo test",
        "cargo xtask keygen",
        "cargo xtask bundle",
        "cargo xtask sign",
        "berth verify",
        "mkdir",
        "berth run",
        "berth install",
        "berth call",
    ];
    let starts: Vec<&str> =
        commands.iter().map(|c| expected_order.iter().find(|p| c.starts_with(**p)).copied().unwrap_or(c)).collect();
    assert_eq!(starts, expected_order, "the guide's commands: {commands:#?}");

    let workspace = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    copy_repository(workspace.path());
    let mut host: Option<BerthRun> = None;
    for command in &commands {
        if command.starts_with("berth run") {
            let mut run = BerthRun::start(shell(command, workspace.path(), state.path()));
            run.wait_line(|l| l.starts_with("berth: serving"));
            host = Some(run);
            continue;
        }
        let output = shell(command, workspace.path(), state.path()).output().unwrap();
        let printed = berth_tests::output_text(&output);
        assert!(output.status.success(), "`{command}` failed:\n{printed}");
        if let Some((_, words)) = PRINTS.iter().find(|(prefix, _)| command.starts_with(prefix)) {
            assert!(printed.contains(words), "`{command}` did not print {words:?}:\n{printed}");
        }
        if command.starts_with("berth install") {
            let run = host.as_mut().expect("the host runs before the install");
            run.wait_line(|l| l.starts_with("event: hello-world: loaded 0.1.0"));
        }
        if command.starts_with("berth call") {
            assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "\"Hello, ops!\"");
        }
    }
    let rest = host.expect("the guide runs a host").stop();
    assert!(rest.iter().any(|l| l.starts_with("event: hello-world: shut down")), "{rest:?}");
}
