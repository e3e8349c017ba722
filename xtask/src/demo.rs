//! `cargo xtask demo`: builds the example plugins and the `berth` CLI, makes a publisher's key, lays the
//! plugins out as ops would (one directory per plugin: manifest, library and its signature) under
//! `target/berth-demo`, then runs the CLI against them with signatures enforced: the status table, a few
//! calls, a refusal with its reason, and a live reload: `berth run` keeps calling greeter while greeter 1.1.0
//! (rebuilt with a different answer, bundled and signed) is installed with `berth install`, and the output
//! shows the switch.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use std::{env, fs};

use berth::Manifest;
use berth::trust::{HOST_TARGET, signature_path, statement};

use berth_author::keys::{self, SigningKey};

use crate::{cargo, library_file, root, run, target_dir};

/// The example plugins the demo calls: crate name = plugin name = manifest file stem.
const PLUGINS: [&str; 4] = ["greeter", "quota", "text-filters", "webhook-signer"];

/// A demonstration key for the webhook signer: not a secret, only for the demo.
const DEMO_WEBHOOK_KEY: &str = "demo-key-not-a-secret-0123456789";

/// Signs `library` for the plugin and version `manifest` gives, on this target: writes `<library>.minisig`.
fn sign(key: &SigningKey, manifest: &Path, library: &Path) -> Result<(), String> {
    let manifest = Manifest::load(manifest).map_err(|e| e.to_string())?;
    let bytes = fs::read(library).map_err(|e| format!("{}: {e}", library.display()))?;
    let sha256 = berth::digest::sha256_hex(&bytes);
    let statement = statement(manifest.name.as_str(), &manifest.version, HOST_TARGET, &sha256);
    let signature_file = signature_path(library);
    fs::write(&signature_file, key.sign(&bytes, &statement).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", signature_file.display()))
}

fn step(title: &str) {
    println!("\n== {title}");
}

pub fn demo() -> Result<(), String> {
    let root = root();
    let target = target_dir(&root);
    step("building the example plugins and the berth CLI");
    let mut build = cargo();
    build.current_dir(&root).args(["build", "--quiet", "-p", "berth-cli"]);
    for plugin in PLUGINS {
        build.args(["-p", plugin]);
    }
    if !run(&mut build)? {
        return Err("cargo build failed".to_owned());
    }

    let demo = target.join("berth-demo");
    let plugins = demo.join("plugins");
    if demo.exists() {
        fs::remove_dir_all(&demo).map_err(|e| format!("cannot clear {}: {e}", demo.display()))?;
    }
    step("a publisher's signing key (the host will only run what it signed)");
    keys::keygen(&demo.join("keys")).map_err(|e| e.to_string())?;
    let key = SigningKey::load(&demo.join("keys").join(keys::SECRET_KEY_FILE)).map_err(|e| e.to_string())?;
    step(&format!("laying the signed plugins out as ops would, in {}", plugins.display()));
    for plugin in PLUGINS {
        let dir = plugins.join(plugin);
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let manifest = dir.join(format!("{plugin}.toml"));
        copy(&root.join("manifests").join(format!("{plugin}.toml")), &manifest)?;
        let library = dir.join(library_file(plugin));
        copy(&target.join("debug").join(library_file(plugin)), &library)?;
        sign(&key, &manifest, &library)?;
        println!("  {plugin}/  {plugin}.toml  {0}  {0}.minisig", library_file(plugin));
    }
    // One plugin an operator copied badly: half of the library's bytes. Berth refuses it before opening it.
    let broken = plugins.join("broken-copy");
    fs::create_dir_all(&broken).map_err(|e| e.to_string())?;
    let bytes = fs::read(target.join("debug").join(library_file("greeter"))).map_err(|e| e.to_string())?;
    fs::write(broken.join(library_file("greeter")), &bytes[..bytes.len() / 2]).map_err(|e| e.to_string())?;
    let manifest = fs::read_to_string(root.join("manifests/greeter.toml")).map_err(|e| e.to_string())?;
    fs::write(broken.join("broken-copy.toml"), manifest.replace("name = \"greeter\"", "name = \"broken-copy\""))
        .map_err(|e| e.to_string())?;
    println!("  broken-copy/  broken-copy.toml  {} (only the first half of the file)", library_file("greeter"));

    let berth = target.join("debug").join(format!("berth{}", env::consts::EXE_SUFFIX));
    let cli = |args: &[&str]| -> Result<bool, String> {
        let shown: Vec<&str> = args.iter().map(|a| if a.len() > 60 { "..." } else { a }).collect();
        println!("\n$ berth {}", shown.join(" "));
        run(berth_command(&berth, &plugins, &demo).args(args))
    };
    step("status of every plugin");
    cli(&["list"])?;
    step("calls");
    let calls: [&[&str]; 5] = [
        &["call", "greeter", "greet", r#"{"name":"ops"}"#],
        &["call", "quota", "consume", r#"{"key":"demo"}"#],
        &["call", "text-filters", "apply", r#"{"filter":"slug","text":"Berth loads native plugins!"}"#],
        &["call", "webhook-signer", "sign", r#"{"payload":"{\"event\":\"deploy\"}","timestamp":1767225600}"#],
        &["info", "text-filters"],
    ];
    for args in calls {
        if !cli(args)? {
            return Err(format!("`berth {}` failed", args.join(" ")));
        }
    }
    step("a refusal: check validates everything and exits non-zero, one line per failure");
    if cli(&["check"])? {
        return Err("berth check accepted a truncated library".to_owned());
    }
    println!("\n(berth check exited non-zero, as it should: broken-copy is refused, every other plugin still loads)");
    fs::remove_dir_all(&broken).map_err(|e| e.to_string())?;
    live_reload(&root, &berth, &plugins, &demo, &key)
}

/// Greeter 1.1.0: the example's source with a new version and a different answer, built in the fixtures'
/// target directory (shared with the tests, so its dependencies are built once) under a library name of its
/// own, so it never overwrites the tests' greeter.
fn build_greeter_release(root: &Path, demo: &Path) -> Result<PathBuf, String> {
    let dir = demo.join("greeter-1.1.0");
    fs::create_dir_all(dir.join("src")).map_err(|e| e.to_string())?;
    let source = fs::read_to_string(root.join("plugins/greeter/src/lib.rs")).map_err(|e| e.to_string())?;
    let old = "Ok(format!(\"{}, {}!\", self.greeting(), request.name.trim()))";
    if !source.contains(old) {
        return Err("plugins/greeter/src/lib.rs no longer has the line the demo changes".to_owned());
    }
    let new = "Ok(format!(\"{}, {}! (greeter 1.1.0, hot-reloaded)\", self.greeting(), request.name.trim()))";
    fs::write(dir.join("src/lib.rs"), source.replace(old, new)).map_err(|e| e.to_string())?;
    let api = root.join("plugin-api");
    let manifest = format!(
        "[package]\nname = \"greeter\"\nversion = \"1.1.0\"\nedition = \"2024\"\npublish = false\n\n[lib]\nname = \"greeter_1_1_0\"\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nberth-plugin-api = {{ path = {:?} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n[workspace]\n",
        api.to_string_lossy()
    );
    fs::write(dir.join("Cargo.toml"), manifest).map_err(|e| e.to_string())?;
    copy(&root.join("Cargo.lock"), &dir.join("Cargo.lock"))?;
    let target = root.join("target").join("fixtures");
    let mut build = cargo();
    build.args(["build", "--quiet", "--manifest-path"]).arg(dir.join("Cargo.toml")).arg("--target-dir").arg(&target);
    if !run(&mut build)? {
        return Err("building greeter 1.1.0 failed".to_owned());
    }
    let library = dir.join(library_file("greeter"));
    copy(&target.join("debug").join(library_file("greeter_1_1_0")), &library)?;
    Ok(library)
}

/// A signed bundle of greeter 1.1.0 (its manifest with the new version), as `cargo berth bundle --key` makes
/// one, in `<demo>/bundles`.
fn signed_bundle(root: &Path, library: &Path, key: &SigningKey, demo: &Path) -> Result<PathBuf, String> {
    let manifest_path = root.join("manifests/greeter.toml");
    let manifest = fs::read_to_string(&manifest_path).map_err(|e| e.to_string())?;
    let manifest = manifest.replace("version = \"1.0.0\"", "version = \"1.1.0\"");
    let bytes = fs::read(library).map_err(|e| format!("{}: {e}", library.display()))?;
    let dir = demo.join("bundles");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let bundled = berth_author::pack(&manifest_path, &manifest, &library_file("greeter"), bytes, &dir, Some(key));
    Ok(bundled.map_err(|e| e.to_string())?.path)
}

/// `berth run` calls greeter every 250 ms while greeter 1.1.0 is installed next to it.
fn live_reload(root: &Path, berth: &Path, plugins: &Path, demo: &Path, key: &SigningKey) -> Result<(), String> {
    step("live reload: building greeter 1.1.0 (same plugin, a different answer), bundled and signed");
    let release = build_greeter_release(root, demo)?;
    let bundle = signed_bundle(root, &release, key, demo)?;
    step("berth run: serving and calling greeter every 250 ms; greeter 1.1.0 is installed while calls flow");
    let call = r#"greeter greet {"name":"ops"}"#;
    println!("$ berth run --call '{call}' --every 250ms");
    let child = berth_command(berth, plugins, demo)
        .args(["run", "--call", call, "--every", "250ms"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start berth run: {e}"))?;
    let mut child = Running(child);
    let stdout = child.0.stdout.take().ok_or("berth run has no stdout")?;
    let (sender, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("  | {line}");
            let _ = sender.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let wait = |what: &str, wanted: &dyn Fn(&str) -> bool, count: usize| -> Result<(), String> {
        let mut seen = 0;
        while seen < count {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .map_err(|_| format!("berth run did not show {what}"))?;
            if line.starts_with("call ") && line.contains(": error: ") {
                return Err(format!("a call failed during the demo: {line}"));
            }
            seen += usize::from(wanted(&line));
        }
        Ok(())
    };
    wait("greeter 1.0.0 answering", &|l| l.starts_with("call greeter greet: \"Hello, ops!\""), 3)?;
    println!("\n$ berth install {}", bundle.display());
    let installed = berth_command(berth, plugins, demo).arg("install").arg(&bundle).output();
    let installed = installed.map_err(|e| format!("cannot run berth install: {e}"))?;
    print!("{}{}", String::from_utf8_lossy(&installed.stdout), String::from_utf8_lossy(&installed.stderr));
    if !installed.status.success() {
        return Err("berth install refused the signed bundle of greeter 1.1.0".to_owned());
    }
    wait("the reload", &|l| l.contains("greeter: reloaded 1.0.0 (generation 1) -> 1.1.0 (generation 2)"), 1)?;
    wait("greeter 1.1.0 answering", &|l| l.contains("(greeter 1.1.0, hot-reloaded)"), 3)?;
    stop(&mut child.0)?;
    let status = child.0.wait().map_err(|e| e.to_string())?;
    let _ = reader.join();
    if !status.success() {
        return Err(format!("berth run exited with {status}"));
    }
    println!("\n(no call failed: the 1.0.0 generation answered until the 1.1.0 one was swapped in; checked above)");
    Ok(())
}

/// Asks `berth run` to stop the way ops would: SIGTERM on Unix (Ctrl-C's effect), a kill elsewhere.
fn stop(child: &mut Child) -> Result<(), String> {
    if cfg!(unix) {
        run(Command::new("kill").args(["-TERM", &child.id().to_string()])).map(drop)
    } else {
        child.kill().map_err(|e| e.to_string())
    }
}

/// A child process that does not outlive the demo if the demo fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to).map(drop).map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

/// The `berth` CLI over the demo's plugins, with its cache and data (accepted versions) inside the demo's
/// directory, so the demo never touches the user's own; signatures enforced with the demo publisher's key;
/// nothing taken from the environment's config.
fn berth_command(berth: &Path, plugins: &Path, demo: &Path) -> Command {
    let mut command = Command::new(berth);
    command.arg("--plugin-dir").arg(plugins).arg("--cache-dir").arg(demo.join("cache"));
    command.arg("--data-dir").arg(demo.join("data"));
    command.args(["--trust-policy", "enforce", "--trusted-key"]).arg(demo.join("keys").join(keys::PUBLIC_KEY_FILE));
    command.env("WEBHOOK_SECRET", DEMO_WEBHOOK_KEY);
    for variable in ["BERTH_CONFIG", "BERTH_PLUGIN_PATH", "BERTH_TRUST_POLICY", "BERTH_INSECURE_PERMISSIONS"] {
        command.env_remove(variable);
    }
    command
}
