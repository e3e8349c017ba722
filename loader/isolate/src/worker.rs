//! The worker process: reads its start message, sandboxes itself, opens the library the host verified (by the
//! descriptor it was handed, never a path), runs the same checks and `create` as an in-process load, reports,
//! and serves one slot per thread until the host asks it to shut down or dies (the kernel then kills it:
//! `PR_SET_PDEATHSIG`).

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use berth::isolation::{Failure, LocalPlugin};
use berth_plugin_api::abi::{HostLogger, HostLogger_TO, LogRecord};

use crate::sandbox;
use crate::shm::{self, Region};
use crate::wire::{self, Ready, Start};

/// Runs the worker: the whole `main` of `berth-worker`, and of an application's own worker executable
/// (`fn main() { berth_isolate::worker_main() }`). Never returns.
pub fn worker_main() -> ! {
    match run() {
        Ok(()) => std::process::exit(0),
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "berth-worker: {message}");
            std::process::exit(70)
        }
    }
}

fn run() -> Result<(), String> {
    // First of all: die with the host, and make sure it did not die before this line.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| format!("cannot ask to die with the host: {e}"))?;
    let mut text = String::new();
    std::io::stdin()
        .take(wire::MAX_START)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the start message: {e}"))?;
    let start: Start = serde_json::from_str(&text).map_err(|e| format!("the start message is not valid: {e}"))?;
    if rustix::process::getppid().map(|pid| pid.as_raw_nonzero().get() as u32) != Some(start.host_pid) {
        return Err("the host is gone".to_owned());
    }
    // SAFETY: the host maps exactly these two descriptors into the worker (berth-isolate's spawn) and nothing
    // else in this process owns them; each is taken once, here.
    let (region, library) = unsafe { (OwnedFd::from_raw_fd(wire::REGION_FD), OwnedFd::from_raw_fd(wire::LIBRARY_FD)) };
    let region = Region::open(region).map_err(|e| format!("cannot map the shared memory: {e}"))?;
    // The sandbox is in force before any code of the plugin runs, on this thread, before any other starts.
    let sandbox = sandbox::apply(&start.permissions, &library);
    if start.permissions.require_sandbox && !sandbox.missing.is_empty() {
        let reason = format!(
            "the sandbox cannot be fully enforced (require_sandbox = true): missing {}",
            sandbox.missing.join("; ")
        );
        region.report(shm::REFUSED, reason.as_bytes());
        return Ok(());
    }
    let version = semver::Version::parse(&start.version).map_err(|e| format!("version {:?}: {e}", start.version))?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", wire::LIBRARY_FD));
    let logger = HostLogger_TO::from_value(StderrLog, TD_Opaque);
    let level = wire::level_of(start.max_level);
    let plugin =
        match LocalPlugin::open(&path, &start.plugin, &version, start.generation, &start.config_json, level, logger) {
            Ok(plugin) => Arc::new(plugin),
            Err(error) => {
                region.report(shm::REFUSED, error.to_string().as_bytes());
                return Ok(());
            }
        };
    let ready = serde_json::to_vec(&Ready { info: plugin.info().clone(), sandbox }).map_err(|e| e.to_string())?;
    let region = Arc::new(region);
    for index in 0..region.slots() {
        let (region, plugin) = (Arc::clone(&region), Arc::clone(&plugin));
        std::thread::Builder::new()
            .name(format!("berth-slot-{index}"))
            .spawn(move || serve(&region, index, &plugin))
            .map_err(|e| format!("cannot start call thread {index}: {e}"))?;
    }
    region.report(shm::READY, &ready);
    region.wait_shutdown();
    if let Err(error) = plugin.shutdown() {
        tracing_line(&format!("shutdown failed: {}", error.message));
    }
    Ok(())
}

/// Serves slot `index` for ever: each request answered in place.
fn serve(region: &Region, index: u32, plugin: &LocalPlugin) {
    let slot = region.slot(index);
    loop {
        slot.wait_request(region.may_spin());
        let answer = slot.with_bytes(|code, extra, bytes| handle(plugin, code, extra, bytes));
        let written = match &answer {
            Answer::Ok(bytes) => slot.write(wire::OK, 0, &[bytes]),
            Answer::Number(number) => slot.write(wire::OK, *number, &[]),
            Answer::Health(status, detail) => slot.write(wire::OK, 0, &[&[*status], detail.as_bytes()]),
            Answer::Error(kind, message) => slot.write(wire::ERROR, 0, &[&[*kind], message.as_bytes()]),
            Answer::None => slot.write(wire::NONE, 0, &[]),
        };
        if !written {
            let message = format!("the answer is larger than an isolated call carries ({} MiB)", shm::CAPACITY >> 20);
            slot.write(wire::ERROR, 0, &[&[wire::kind_code(berth::ErrorKind::Failed)], message.as_bytes()]);
        }
        slot.answer();
    }
}

enum Answer {
    Ok(Vec<u8>),
    Number(u32),
    Health(u8, String),
    Error(u8, String),
    None,
}

fn handle(plugin: &LocalPlugin, code: u32, extra: u32, bytes: &[u8]) -> Answer {
    let failed = |message: String| Answer::Error(wire::kind_code(berth::ErrorKind::Failed), message);
    match code {
        wire::CALL => {
            let split = (extra as usize).min(bytes.len());
            let (method, input) = bytes.split_at(split);
            let Ok(method) = std::str::from_utf8(method) else { return failed("the method name is not UTF-8".into()) };
            match plugin.call(method, input) {
                Ok(output) => Answer::Ok(output),
                Err(Failure::Plugin(error)) => Answer::Error(wire::kind_code(error.kind), error.message.into_string()),
                Err(other) => failed(format!("{other}")),
            }
        }
        wire::HEALTH => match plugin.health() {
            Ok((status, detail)) => Answer::Health(wire::health_code(status), detail),
            Err(failure) => failed(failure.to_string()),
        },
        wire::STATE_SCHEMA => match plugin.state_schema() {
            Ok(Some(schema)) => Answer::Number(schema),
            Ok(None) => Answer::None,
            Err(reason) => failed(reason),
        },
        wire::EXPORT_STATE => plugin.export_state().map_or_else(failed, Answer::Ok),
        wire::IMPORT_STATE => plugin.import_state(extra, bytes).map_or_else(failed, |()| Answer::Ok(Vec::new())),
        wire::RECONFIGURE => match std::str::from_utf8(bytes) {
            Ok(config) => match plugin.reconfigure(config) {
                None => Answer::None,
                Some(Ok(())) => Answer::Ok(Vec::new()),
                Some(Err(error)) => Answer::Error(wire::kind_code(error.kind), error.message.into_string()),
            },
            Err(_) => failed("the config is not UTF-8".into()),
        },
        other => failed(format!("unknown operation {other}")),
    }
}

/// The worker's logging bridge: each record one line on stderr, which the host reads and re-emits with the
/// plugin, version and generation fields.
struct StderrLog;

impl HostLogger for StderrLog {
    fn log(&self, record: LogRecord<'_>) {
        let line =
            wire::log_line(record.level, record.target.as_str(), record.message.as_str(), record.fields.as_str());
        // One write per line: lines from several threads never interleave (stderr is unbuffered and locked).
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// A line of the worker's own, as a warning in the host's log.
fn tracing_line(message: &str) {
    let line = wire::log_line(berth_plugin_api::abi::LogLevel::Warn, "berth::worker", message, "");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
