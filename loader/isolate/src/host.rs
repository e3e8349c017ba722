//! The host's side: finds the worker executable, starts a worker per generation (from one long-lived thread,
//! so `PR_SET_PDEATHSIG` ties the worker to the host process, not to a thread that may end), calls it through
//! the shared memory, forwards its log lines, and supervises it: a worker that dies fails its calls in flight
//! with the reason, is reported, and is started again with exponential backoff; a call past its deadline kills
//! it.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use berth::LibraryInfo;
use berth::isolation::{Failure, Isolator, SandboxReport, Worker, WorkerEvent, WorkerSpec, WorkerStatus, host_logger};
use berth::{HealthStatus, LoadError, PluginError};
use berth_plugin_api::abi::LogRecord;
use command_fds::{CommandFdExt, FdMapping};

use crate::cgroup::ThreadLimit;
use crate::shm::{self, Region};
use crate::wire::{self, Ready, Start};

/// The environment variable naming the worker executable.
pub const WORKER_ENV: &str = "BERTH_WORKER";
/// The worker executable's name.
pub const WORKER_NAME: &str = "berth-worker";
/// How long a worker may take from its start to its plugin's `create` returning.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The first restart's delay; it doubles with each crash before the worker answered anything, up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How many starts in a row may fail before the plugin is given up.
const MAX_FAILED_STARTS: u32 = 5;
/// The lines of a worker's stderr kept for its crash report.
const LAST_WORDS: usize = 3;
/// The longest stderr line read; the rest of a longer one is dropped.
const MAX_LINE: u64 = 16 * 1024;

/// Starts worker processes for isolated plugins: give it to [`berth::HostBuilder::isolator`].
#[derive(Debug, Default, Clone)]
pub struct ProcessIsolator {
    worker: Option<PathBuf>,
}

impl ProcessIsolator {
    /// An isolator that finds the worker executable from the host configuration (`[isolation] worker`), else
    /// `BERTH_WORKER`, else `berth-worker` next to the current executable.
    pub fn new() -> ProcessIsolator {
        ProcessIsolator::default()
    }

    /// An isolator that runs `worker` (an application's own worker, built with [`crate::worker_main`]).
    pub fn with_worker(worker: impl Into<PathBuf>) -> ProcessIsolator {
        ProcessIsolator { worker: Some(worker.into()) }
    }
}

/// The worker executable: `explicit`, else `configured`, else `BERTH_WORKER`, else next to this executable.
fn find_worker(explicit: Option<&Path>, configured: Option<&Path>) -> Result<PathBuf, String> {
    let mut looked = Vec::new();
    let env = std::env::var_os(WORKER_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join(WORKER_NAME)));
    let candidates = [
        (explicit.map(Path::to_owned), "ProcessIsolator::with_worker"),
        (configured.map(Path::to_owned), "[isolation] worker in the host configuration"),
        (env, WORKER_ENV),
        (beside, "next to the current executable"),
    ];
    for (candidate, source) in candidates {
        let Some(path) = candidate else { continue };
        if path.is_file() {
            return Ok(path);
        }
        looked.push(format!("{} ({source})", path.display()));
    }
    Err(format!(
        "no worker executable found; looked at {}; build it (cargo build -p berth-isolate) and set [isolation] worker or {WORKER_ENV}",
        looked.join(", ")
    ))
}

impl Isolator for ProcessIsolator {
    fn start(&self, spec: WorkerSpec) -> Result<Box<dyn Worker>, LoadError> {
        let refuse = |reason: String| LoadError::Isolation { reason };
        let executable = find_worker(self.worker.as_deref(), spec.worker.as_deref()).map_err(refuse)?;
        let plugin = Plugin {
            name: spec.plugin.to_string(),
            version: spec.version.to_string(),
            generation: spec.generation,
            library: spec.library,
            config_json: spec.config_json,
            permissions: spec.permissions,
            call_timeout: spec.call_timeout,
            threads: spec.threads.clamp(1, shm::MAX_SLOTS),
            executable,
            max_level: wire::level_code(spec.max_level),
            events: spec.events,
        };
        let (process, info) = Process::start(&plugin).map_err(refuse)?;
        let shared = Arc::new(Shared {
            plugin,
            info,
            current: ArcSwap::new(Arc::clone(&process)),
            restarts: AtomicU64::new(0),
            last_crash: Mutex::new(None),
            crashes_since_answer: AtomicU32::new(0),
            closing: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
        });
        let watched = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("berth-watch-{}", shared.plugin.name))
            .spawn(move || watched.supervise(process))
            .map_err(|e| refuse(format!("cannot start the thread that watches the worker: {e}")))?;
        Ok(Box::new(Handle { shared }))
    }
}

/// What every start of one generation's worker needs.
struct Plugin {
    name: String,
    version: String,
    generation: u64,
    library: std::fs::File,
    config_json: String,
    permissions: berth::isolation::Permissions,
    call_timeout: Option<Duration>,
    threads: u32,
    executable: PathBuf,
    max_level: u8,
    events: Arc<dyn Fn(WorkerEvent) + Send + Sync>,
}

/// One generation's worker, across its restarts.
struct Shared {
    plugin: Plugin,
    info: Ready,
    current: ArcSwap<Process>,
    restarts: AtomicU64,
    last_crash: Mutex<Option<String>>,
    /// Crashes since a worker last answered a call: the backoff's exponent.
    crashes_since_answer: AtomicU32,
    closing: AtomicBool,
    wake: (Mutex<()>, Condvar),
}

/// One worker process.
struct Process {
    pid: u32,
    region: Region,
    /// Which slots a caller of this host holds.
    busy: Box<[AtomicBool]>,
    /// Callers waiting for a free slot.
    waiting: AtomicU32,
    freed: (Mutex<()>, Condvar),
    /// Set once the process is gone: why.
    dead: OnceLock<String>,
    /// Why the host killed it, if it did.
    killed_for: OnceLock<String>,
    pidfd: OwnedFd,
    child: Mutex<Child>,
    last_words: Arc<Mutex<VecDeque<String>>>,
    stderr_done: Mutex<mpsc::Receiver<()>>,
    _threads: Option<ThreadLimit>,
}

/// The one thread every worker is spawned from: `PR_SET_PDEATHSIG` fires when the thread that forked the
/// worker ends, so that thread must live as long as the host.
fn spawn(mut command: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::SyncSender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (sender, jobs) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("berth-spawner".to_owned())
            .spawn(move || {
                for (mut command, answer) in jobs {
                    let _ = answer.send(command.spawn());
                }
            })
            .expect("a thread can be started at the first isolated load");
        Mutex::new(sender)
    });
    let (answer, spawned) = mpsc::sync_channel(1);
    command.stdin(Stdio::piped());
    sender
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((command, answer))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    spawned.recv().map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

impl Process {
    /// Starts a worker for `plugin` and waits until its plugin is created.
    fn start(plugin: &Plugin) -> Result<(Arc<Process>, Ready), String> {
        let region = Region::create(plugin.threads).map_err(|e| format!("cannot create the shared memory: {e}"))?;
        let dup = |fd: std::os::fd::BorrowedFd<'_>| {
            fd.try_clone_to_owned().map_err(|e| format!("cannot pass a descriptor: {e}"))
        };
        let mappings = vec![
            FdMapping { parent_fd: dup(region.fd())?, child_fd: wire::REGION_FD },
            FdMapping { parent_fd: dup(plugin.library.as_fd())?, child_fd: wire::LIBRARY_FD },
        ];
        let mut command = Command::new(&plugin.executable);
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        command.fd_mappings(mappings).map_err(|e| e.to_string())?;
        let mut child =
            spawn(command).map_err(|e| format!("cannot start the worker {}: {e}", plugin.executable.display()))?;
        let pid = child.id();
        let pidfd = rustix::process::Pid::from_raw(pid as i32)
            .ok_or_else(|| "the worker has no process id".to_owned())
            .and_then(|p| {
                rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).map_err(|e| e.to_string())
            });
        let pidfd = match pidfd {
            Ok(fd) => fd,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cannot watch the worker: {e}"));
            }
        };
        // In the thread limit before it starts a thread: it is blocked reading its start message until then.
        let threads = match plugin.permissions.threads {
            Some(limit) => ThreadLimit::apply(pid, limit + plugin.threads + 1),
            None => None,
        };
        let start = Start {
            host_pid: std::process::id(),
            plugin: plugin.name.clone(),
            version: plugin.version.clone(),
            generation: plugin.generation,
            config_json: plugin.config_json.clone(),
            permissions: plugin.permissions.clone(),
            max_level: plugin.max_level,
        };
        let message = serde_json::to_vec(&start).map_err(|e| e.to_string())?;
        if let Some(mut stdin) = child.stdin.take() {
            // A worker that died at once is reported below, by its exit.
            let _ = stdin.write_all(&message);
        }
        let (last_words, stderr_done) = forward_stderr(&mut child, plugin);
        let process = Arc::new(Process {
            pid,
            busy: (0..region.slots()).map(|_| AtomicBool::new(false)).collect(),
            region,
            waiting: AtomicU32::new(0),
            freed: (Mutex::new(()), Condvar::new()),
            dead: OnceLock::new(),
            killed_for: OnceLock::new(),
            pidfd,
            child: Mutex::new(child),
            last_words,
            stderr_done: Mutex::new(stderr_done),
            _threads: threads,
        });
        let gone = || process.child.lock().unwrap_or_else(|e| e.into_inner()).try_wait().ok().flatten().is_some();
        let report = process.region.wait_report(Instant::now() + START_TIMEOUT, gone);
        match report {
            Some((shm::READY, bytes)) => {
                let mut ready: Ready = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("the worker's start report is not valid: {e}"))?;
                if let Some(limit) = &process._threads {
                    ready.sandbox.enforced.push(limit.describe());
                } else if plugin.permissions.threads.is_some() {
                    ready.sandbox.missing.push(ThreadLimit::unavailable());
                }
                if plugin.permissions.require_sandbox && !ready.sandbox.missing.is_empty() {
                    process.kill("its sandbox cannot be fully enforced");
                    return Err(format!(
                        "the sandbox cannot be fully enforced (require_sandbox = true): missing {}",
                        ready.sandbox.missing.join("; ")
                    ));
                }
                Ok((process, ready))
            }
            Some((_, bytes)) => {
                process.reap();
                Err(format!("the worker refused the plugin: {}", String::from_utf8_lossy(&bytes)))
            }
            None => {
                process.kill("it did not report within the start timeout");
                let reason = process.reap();
                Err(format!("the worker {reason} before the plugin was created"))
            }
        }
    }

    /// Kills the process (a call ran past its deadline, or the host gives up on it).
    fn kill(&self, why: &str) {
        let _ = self.killed_for.set(why.to_owned());
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
    }

    /// Waits for the process to end; why it ended, with its last words on stderr. Marks it dead and wakes its
    /// callers.
    fn reap(&self) -> String {
        let status = self.child.lock().unwrap_or_else(|e| e.into_inner()).wait();
        // Its stderr ends with it, unless a process it started holds it: then its last words may be missing.
        let _ = self.stderr_done.lock().unwrap_or_else(|e| e.into_inner()).recv_timeout(Duration::from_millis(200));
        let mut reason = match (self.killed_for.get(), status) {
            (Some(why), _) => format!("was killed because {why}"),
            (None, Ok(status)) => describe(status),
            (None, Err(e)) => format!("could not be waited for ({e})"),
        };
        let words: Vec<String> = self.last_words.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
        if !words.is_empty() && self.killed_for.get().is_none() {
            reason.push_str(&format!("; its last words: {:?}", words.join(" / ")));
        }
        let reason = self.dead.get_or_init(|| reason).clone();
        self.region.wake_all();
        self.freed.1.notify_all();
        reason
    }

    /// A free slot, waiting for one when every slot is busy.
    fn claim(&self) -> Option<u32> {
        let slots = self.busy.len() as u32;
        let first = thread_hint() % slots;
        loop {
            for offset in 0..slots {
                let index = (first + offset) % slots;
                if !self.busy[index as usize].swap(true, Ordering::Acquire) {
                    return Some(index);
                }
            }
            if self.dead.get().is_some() {
                return None;
            }
            let guard = self.freed.0.lock().unwrap_or_else(|e| e.into_inner());
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let retry = self.busy.iter().any(|busy| !busy.load(Ordering::SeqCst));
            if !retry {
                let _ = self.freed.1.wait_timeout(guard, Duration::from_millis(20));
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn release(&self, index: u32) {
        self.busy[index as usize].store(false, Ordering::Release);
        if self.waiting.load(Ordering::SeqCst) != 0 {
            let _guard = self.freed.0.lock().unwrap_or_else(|e| e.into_inner());
            self.freed.1.notify_one();
        }
    }
}

thread_local! {
    static HINT: u32 = {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

/// A number per thread: where it starts looking for a free slot, so threads calling at once do not collide.
fn thread_hint() -> u32 {
    HINT.with(|hint| *hint)
}

/// How a process ended, in words.
fn describe(status: ExitStatus) -> String {
    if let Some(signal) = status.signal() {
        let name = match signal {
            4 => " (SIGILL)",
            6 => " (SIGABRT)",
            7 => " (SIGBUS)",
            8 => " (SIGFPE)",
            9 => " (SIGKILL: killed from outside, or by the kernel for memory)",
            11 => " (SIGSEGV)",
            15 => " (SIGTERM)",
            24 => " (SIGXCPU: its CPU time limit)",
            31 => " (SIGSYS)",
            _ => "",
        };
        format!("was killed by signal {signal}{name}")
    } else {
        match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "ended".to_owned(),
        }
    }
}

/// Reads the worker's stderr on a thread of its own: log lines go to the host's subscriber with the plugin's
/// fields, other lines (a panic message, an abort's) are logged as warnings and the last few kept.
fn forward_stderr(child: &mut Child, plugin: &Plugin) -> (Arc<Mutex<VecDeque<String>>>, mpsc::Receiver<()>) {
    let last_words = Arc::new(Mutex::new(VecDeque::new()));
    let (done, stderr_done) = mpsc::channel();
    let Some(stderr) = child.stderr.take() else { return (last_words, stderr_done) };
    let logger = host_logger(&plugin.name, &plugin.version, plugin.generation);
    let kept = Arc::clone(&last_words);
    let plugin_name = plugin.name.clone();
    let spawned = std::thread::Builder::new().name(format!("berth-log-{plugin_name}")).spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.last() != Some(&b'\n') {
                // Longer than MAX_LINE: drop the rest of it.
                let _ = reader.skip_until(b'\n');
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            if let Some((level, target, message, fields)) = wire::parse_log_line(text) {
                logger.log(LogRecord { level, target: target.into(), message: message.into(), fields: fields.into() });
            } else if !text.is_empty() {
                tracing::warn!(target: "berth::plugin", plugin = %plugin_name, "worker stderr: {text}");
                if is_backtrace(text) {
                    continue;
                }
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                if kept.len() == LAST_WORDS {
                    kept.pop_front();
                }
                kept.push_back(text.to_owned());
            }
        }
        let _ = done.send(());
    });
    if spawned.is_err() {
        tracing::warn!(plugin = %plugin.name, "cannot start the thread that reads the worker's log");
    }
    (last_words, stderr_done)
}

/// Whether a stderr line is part of a backtrace (`RUST_BACKTRACE`): logged, but not a crash's last words.
fn is_backtrace(line: &str) -> bool {
    let trimmed = line.trim_start();
    let frame = trimmed.split_once(':').is_some_and(|(number, _)| number.bytes().all(|b| b.is_ascii_digit()));
    frame
        || trimmed.starts_with("at ")
        || line == "stack backtrace:"
        || line.starts_with("note: Some details are omitted")
}

impl Shared {
    /// The watch over the worker: when it dies, fail what was in flight, report, wait the backoff, start it
    /// again; until the generation shuts down, or the worker cannot be started any more.
    fn supervise(self: Arc<Self>, mut process: Arc<Process>) {
        loop {
            let reason = process.reap();
            if self.closing.load(Ordering::Acquire) {
                return;
            }
            let crashes = self.crashes_since_answer.fetch_add(1, Ordering::AcqRel);
            let backoff = FIRST_BACKOFF.saturating_mul(1 << crashes.min(16)).min(MAX_BACKOFF);
            *self.last_crash.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
            (self.plugin.events)(WorkerEvent::Crashed { pid: process.pid, reason, restart_in: backoff });
            let mut failed_starts = 0;
            let mut wait = backoff;
            process = loop {
                if self.nap(wait) {
                    return;
                }
                match Process::start(&self.plugin) {
                    Ok((new, _)) => break new,
                    Err(reason) => {
                        failed_starts += 1;
                        if failed_starts == MAX_FAILED_STARTS {
                            let reason =
                                format!("its worker could not be started again ({failed_starts} tries): {reason}");
                            (self.plugin.events)(WorkerEvent::GaveUp { reason });
                            return;
                        }
                        wait = wait.saturating_mul(2).min(MAX_BACKOFF);
                    }
                }
            };
            self.current.store(Arc::clone(&process));
            self.restarts.fetch_add(1, Ordering::Relaxed);
            (self.plugin.events)(WorkerEvent::Restarted { pid: process.pid });
        }
    }

    /// Waits `how_long`, or less if the generation shuts down meanwhile: whether it does.
    fn nap(&self, how_long: Duration) -> bool {
        let deadline = Instant::now() + how_long;
        let mut guard = self.wake.0.lock().unwrap_or_else(|e| e.into_inner());
        while !self.closing.load(Ordering::Acquire) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = self.wake.1.wait_timeout(guard, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }

    /// One exchange with the worker: `code`, `extra` and the message's parts out, the answer back.
    fn exchange(&self, code: u32, extra: u32, parts: &[&[u8]], what: &str) -> Result<(u32, u32, Vec<u8>), Failure> {
        let process = self.current.load_full();
        if let Some(reason) = process.dead.get() {
            return Err(Failure::Crashed(format!("{reason}; it is being restarted")));
        }
        let Some(index) = process.claim() else {
            return Err(Failure::Crashed(process.dead.get().cloned().unwrap_or_default()));
        };
        let slot = process.region.slot(index);
        if !slot.write(code, extra, parts) {
            process.release(index);
            return Err(Failure::Plugin(PluginError {
                kind: berth::ErrorKind::InvalidInput,
                message: format!("the input is larger than an isolated call carries ({} MiB)", shm::CAPACITY >> 20)
                    .into(),
            }));
        }
        let started = Instant::now();
        let may_spin = process.region.enter();
        slot.send();
        let deadline = self.plugin.call_timeout.map(|timeout| started + timeout);
        let answered = slot.wait_answer(deadline, may_spin, || process.dead.get().is_some());
        process.region.leave();
        if !answered {
            if process.dead.get().is_none() {
                // Past the deadline: the only way to stop a native call is to end its process.
                let timeout = self.plugin.call_timeout.unwrap_or_default();
                process.kill(&format!("{what} ran past its deadline of {} ms", timeout.as_millis()));
                return Err(Failure::Timeout(started.elapsed()));
            }
            // The slot stays claimed: the process is gone, and so is its memory with the next start.
            return Err(Failure::Crashed(process.dead.get().cloned().unwrap_or_default()));
        }
        let answer = slot.read();
        slot.free();
        process.release(index);
        self.crashes_since_answer.store(0, Ordering::Relaxed);
        Ok(answer)
    }
}

/// A plugin error from an answer's bytes: its kind, then its message.
fn plugin_error(bytes: &[u8]) -> Failure {
    let (kind, message) = bytes.split_first().map_or((0, &[][..]), |(kind, rest)| (*kind, rest));
    Failure::Plugin(PluginError {
        kind: wire::kind_of(kind),
        message: String::from_utf8_lossy(message).into_owned().into(),
    })
}

/// The worker of one generation, as the host holds it.
struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    fn expect_ok(&self, answer: (u32, u32, Vec<u8>)) -> Result<(u32, Vec<u8>), Failure> {
        match answer {
            (wire::OK, extra, bytes) => Ok((extra, bytes)),
            (wire::NONE, _, _) => Err(Failure::Plugin(PluginError {
                kind: berth::ErrorKind::UnknownMethod,
                message: "the plugin does not provide that interface".into(),
            })),
            (_, _, bytes) => Err(plugin_error(&bytes)),
        }
    }
}

impl Worker for Handle {
    fn info(&self) -> &LibraryInfo {
        &self.shared.info.info
    }

    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, Failure> {
        let what = format!("a call of {method:?}");
        let answer = self.shared.exchange(wire::CALL, method.len() as u32, &[method.as_bytes(), input], &what)?;
        self.expect_ok(answer).map(|(_, bytes)| bytes)
    }

    fn health(&self) -> Result<(HealthStatus, String), Failure> {
        let (_, bytes) = self.expect_ok(self.shared.exchange(wire::HEALTH, 0, &[], "a health check")?)?;
        let (status, detail) = bytes.split_first().map_or((2, &[][..]), |(status, rest)| (*status, rest));
        Ok((wire::health_of(status), String::from_utf8_lossy(detail).into_owned()))
    }

    fn state_schema(&self) -> Result<Option<u32>, Failure> {
        match self.shared.exchange(wire::STATE_SCHEMA, 0, &[], "the state's schema")? {
            (wire::NONE, _, _) => Ok(None),
            answer => self.expect_ok(answer).map(|(schema, _)| Some(schema)),
        }
    }

    fn export_state(&self) -> Result<Vec<u8>, Failure> {
        self.expect_ok(self.shared.exchange(wire::EXPORT_STATE, 0, &[], "the state's export")?).map(|(_, bytes)| bytes)
    }

    fn import_state(&self, schema: u32, state: &[u8]) -> Result<(), Failure> {
        self.expect_ok(self.shared.exchange(wire::IMPORT_STATE, schema, &[state], "the state's import")?).map(|_| ())
    }

    fn reconfigure(&self, config_json: &str) -> Result<bool, Failure> {
        match self.shared.exchange(wire::RECONFIGURE, 0, &[config_json.as_bytes()], "a reconfiguration")? {
            (wire::NONE, _, _) => Ok(false),
            answer => self.expect_ok(answer).map(|_| true),
        }
    }

    fn shutdown(&self) {
        self.shared.closing.store(true, Ordering::Release);
        {
            let _guard = self.shared.wake.0.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.1.notify_all();
        }
        self.shared.current.load().region.ask_shutdown();
    }

    fn status(&self) -> WorkerStatus {
        let process = self.shared.current.load();
        let mut sandbox: SandboxReport = self.shared.info.sandbox.clone();
        sandbox.enforced.sort();
        WorkerStatus::new(
            process.dead.get().is_none().then_some(process.pid),
            self.shared.restarts.load(Ordering::Relaxed),
            self.shared.last_crash.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            sandbox,
        )
    }
}
