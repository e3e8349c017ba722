//! Watching: `notify` reports file events under every plugin directory (recursively, so directories that
//! appear are watched too, and a library replaced by a new inode is seen); this module turns them into
//! rescans of just the plugins concerned.
//!
//! Events are grouped by the entry of the plugin directory they fall under (`plugins/<entry>`: usually one
//! plugin's directory). A group is rescanned once it has been quiet for the debounce time, so a copy, a
//! linker's re-link, a write-then-rename or a burst of writes ends in one reload of the final bytes; the
//! notify project's debouncers key on single paths, which would split a plugin's manifest and library edits
//! into separate reloads. A library still incomplete when its group falls quiet (a writer that paused) is
//! read again after another quiet period instead of being reported, for up to the settle time
//! (`reconcile`). Access events (our own reads) are ignored. When the kernel drops events (inotify queue
//! overflow), or the watcher reports an error, every plugin directory is watched afresh (notify adds watches
//! for new directories only from their create events, so one swapped in during the overflow would stay
//! unwatched) and everything is rescanned: the registry compares each plugin's files with what it serves, so
//! a rescan only acts on what really changed.
//!
//! A configured plugin directory that disappears (deleted, renamed, unmounted) is reported (a warn line, and
//! an `Unwatched` event for each plugin found in it); what it served keeps serving, since discovery counts an
//! unreadable directory as a failure, never as deleted manifests. It is looked for every [`LOST_POLL`] and
//! watched again when it returns (a `Watched` event each, then a rescan).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::error::HostError;
use crate::reconcile::{HostState, Scope};

/// How often a plugin directory that disappeared is looked for.
const LOST_POLL: Duration = Duration::from_millis(500);

enum Message {
    Fs(notify::Result<notify::Event>),
    Stop,
}

/// Watches a host's plugin directories and reloads what changes, on a thread of its own. Dropping it stops
/// watching (and waits for a rescan in progress to finish).
pub struct Watcher {
    sender: Sender<Message>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    pub(crate) fn start(inner: &Arc<HostState>) -> Result<Watcher, HostError> {
        let (sender, receiver) = mpsc::channel();
        let events = sender.clone();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = events.send(Message::Fs(event));
        })
        .map_err(|e| HostError::Watch { dir: PathBuf::new(), reason: e.to_string() })?;
        let mut roots = Vec::new();
        for dir in &inner.config.plugin_dirs {
            // Watched by its canonical path, so that events match it even through symlinks and `..`.
            let canonical =
                dir.canonicalize().map_err(|e| HostError::Watch { dir: dir.clone(), reason: e.to_string() })?;
            watcher
                .watch(&canonical, RecursiveMode::Recursive)
                .map_err(|e| HostError::Watch { dir: dir.clone(), reason: e.to_string() })?;
            roots.push(Root { configured: dir.clone(), canonical, watch: RootWatch::Watched });
        }
        let state = Debouncer {
            inner: Arc::downgrade(inner),
            watcher,
            roots,
            rewatch: false,
            ignored: inner.config.cache_dir.canonicalize().unwrap_or_else(|_| inner.config.cache_dir.clone()),
            debounce: inner.config.reload.debounce,
            dirty: BTreeMap::new(),
            // Whatever changed between the host's first load and the watch starting is caught by a first rescan.
            rescan: Some(Instant::now().checked_sub(inner.config.reload.debounce).unwrap_or_else(Instant::now)),
            settle: inner.config.reload.settle,
        };
        let thread = std::thread::Builder::new()
            .name("berth-watch".to_owned())
            .spawn(move || state.run(&receiver))
            .map_err(|e| HostError::Watch { dir: PathBuf::new(), reason: format!("cannot start a thread: {e}") })?;
        Ok(Watcher { sender, thread: Some(thread) })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.sender.send(Message::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Root {
    configured: PathBuf,
    canonical: PathBuf,
    watch: RootWatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RootWatch {
    Watched,
    /// An event said the directory itself was removed or renamed: a new one may stand at its path already.
    Suspect,
    /// The directory is gone, and not watched until it returns.
    Lost,
}

struct Debouncer {
    inner: Weak<HostState>,
    watcher: RecommendedWatcher,
    roots: Vec<Root>,
    /// Events were dropped: watch every directory afresh before the next full rescan.
    rewatch: bool,
    ignored: PathBuf,
    debounce: Duration,
    /// Group -> time of its last event.
    dirty: BTreeMap<PathBuf, Instant>,
    /// Time of the last event asking for a full rescan.
    rescan: Option<Instant>,
    /// How long a directory that returned is left to fill before the full rescan.
    settle: Duration,
}

impl Debouncer {
    fn run(mut self, receiver: &mpsc::Receiver<Message>) {
        loop {
            let lost = self.roots.iter().any(|root| root.watch == RootWatch::Lost);
            let lost = lost.then(|| Instant::now() + LOST_POLL.saturating_sub(self.debounce));
            // A full rescan pending supersedes the groups (`rescan_due`): only its time counts then.
            let groups = self.dirty.values().filter(|_| self.rescan.is_none());
            let next = groups.chain(&self.rescan).chain(&lost).min().map(|last| *last + self.debounce);
            let message = match next {
                Some(due) => receiver.recv_timeout(due.saturating_duration_since(Instant::now())),
                None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match message {
                Ok(Message::Fs(event)) => self.note(event),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if self.check_roots().is_none() || self.rescan_due().is_none() {
                return;
            }
        }
    }

    fn note(&mut self, event: notify::Result<notify::Event>) {
        let now = Instant::now();
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(
                    "watching the plugin directories: {error}; watching them afresh and rescanning everything"
                );
                (self.rescan, self.rewatch) = (Some(now), true);
                return;
            }
        };
        if event.need_rescan() {
            tracing::warn!(
                "the system dropped file events (queue overflow); watching the plugin directories afresh and rescanning everything"
            );
            (self.rescan, self.rewatch) = (Some(now), true);
        }
        // A plugin directory itself removed or renamed: its watch went with it (see `check_roots`).
        if matches!(event.kind, EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))) {
            for root in self.roots.iter_mut().filter(|root| event.paths.contains(&root.canonical)) {
                if root.watch == RootWatch::Watched {
                    root.watch = RootWatch::Suspect;
                }
            }
        }
        if !relevant(&event.kind) {
            return;
        }
        for path in &event.paths {
            if let Some(group) = self.group(path) {
                self.dirty.insert(group, now);
            }
        }
    }

    /// The plugin-directory entry `path` falls under, as the configured directory spells it.
    fn group(&self, path: &Path) -> Option<PathBuf> {
        if path.starts_with(&self.ignored) {
            return None;
        }
        self.roots.iter().find_map(|root| {
            let rest = path.strip_prefix(&root.canonical).or_else(|_| path.strip_prefix(&root.configured)).ok()?;
            Some(match rest.components().next() {
                Some(Component::Normal(entry)) => root.configured.join(entry),
                _ => root.configured.clone(),
            })
        })
    }

    /// Brings each plugin directory's watch in line with the disk: a directory gone is reported and left
    /// unwatched, one back (or replaced) is watched again and everything rescanned. `None` when the host is
    /// gone.
    fn check_roots(&mut self) -> Option<()> {
        for i in 0..self.roots.len() {
            // A watched directory is looked at only once an event said it was removed or renamed (`Suspect`):
            // no stat per event while files change inside it.
            let (watch, dir) = (self.roots[i].watch, self.roots[i].configured.clone());
            if watch == RootWatch::Watched {
                continue;
            }
            match (watch, dir.is_dir()) {
                (RootWatch::Lost, false) => continue,
                (_, false) => {
                    self.roots[i].watch = RootWatch::Lost;
                    let detail = format!(
                        "plugin directory {} is gone; what it served keeps serving, unwatched, and it is watched again when it returns",
                        dir.display()
                    );
                    tracing::warn!("{detail}");
                    self.inner.upgrade()?.registry.directory_watch(&dir, false, &detail);
                }
                (_, true) => {
                    if !self.watch_afresh(i) {
                        self.roots[i].watch = RootWatch::Lost;
                        continue;
                    }
                    if watch == RootWatch::Lost {
                        let detail = format!("plugin directory {} is back and watched again", dir.display());
                        tracing::warn!("{detail}");
                        self.inner.upgrade()?.registry.directory_watch(&dir, true, &detail);
                    }
                    // A directory put back by a copy arrives file by file: rescanned once it has had the settle
                    // time, so that a plugin whose manifest is not there yet is not taken for removed.
                    self.rescan = Some(Instant::now() + self.settle.saturating_sub(self.debounce));
                }
            }
        }
        Some(())
    }

    /// Drops root `i`'s watches and watches it again, recursively, at its path as it is now; whether it is
    /// watched (a failure is logged).
    fn watch_afresh(&mut self, i: usize) -> bool {
        let root = &mut self.roots[i];
        // The old watches may be gone with the old directory already: an error here changes nothing.
        let _ = self.watcher.unwatch(&root.canonical);
        let watched = root.configured.canonicalize().map_err(|e| e.to_string()).and_then(|canonical| {
            root.canonical = canonical;
            self.watcher.watch(&root.canonical, RecursiveMode::Recursive).map_err(|e| e.to_string())
        });
        match watched {
            Ok(()) => root.watch = RootWatch::Watched,
            Err(ref reason) => {
                tracing::warn!("plugin directory {}: cannot watch it: {reason}", root.configured.display())
            }
        }
        watched.is_ok()
    }

    /// Rescans what has been quiet for the debounce time; `None` when the host is gone.
    fn rescan_due(&mut self) -> Option<()> {
        let now = Instant::now();
        let quiet = |last: &Instant| now.duration_since(*last) >= self.debounce;
        // A full rescan pending supersedes the groups' (a directory that returned waits for it to fill).
        if self.rescan.as_ref().is_some_and(|last| !quiet(last)) {
            return Some(());
        }
        let scope = if self.rescan.as_ref().is_some_and(quiet) {
            self.rescan = None;
            self.dirty.clear();
            if std::mem::take(&mut self.rewatch) {
                for i in 0..self.roots.len() {
                    if self.roots[i].watch == RootWatch::Watched && !self.watch_afresh(i) {
                        self.roots[i].watch = RootWatch::Suspect;
                    }
                }
            }
            Scope::Rescan
        } else {
            let ready: Vec<PathBuf> =
                self.dirty.iter().filter(|(_, last)| quiet(last)).map(|(p, _)| p.clone()).collect();
            if ready.is_empty() {
                return Some(());
            }
            for path in &ready {
                self.dirty.remove(path);
            }
            Scope::Paths(ready)
        };
        let inner = self.inner.upgrade()?;
        let report = inner.reconcile(&scope);
        // Libraries still being written: look again after another quiet period.
        let now = Instant::now();
        for manifest in &report.pending {
            if let Some(group) = self.group(manifest) {
                self.dirty.insert(group, now);
            }
        }
        Some(())
    }
}

/// Whether an event can mean a changed plugin: anything but reads (ours included), except a close after
/// writing.
fn relevant(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, Flag};

    fn debouncer() -> Debouncer {
        Debouncer {
            inner: Weak::new(),
            watcher: notify::recommended_watcher(|_| {}).unwrap(),
            roots: vec![Root {
                configured: PathBuf::from("plugins"),
                canonical: PathBuf::from("/srv/app/plugins"),
                watch: RootWatch::Watched,
            }],
            rewatch: false,
            ignored: PathBuf::from("/srv/app/plugins/.cache"),
            debounce: Duration::from_millis(50),
            dirty: BTreeMap::new(),
            rescan: None,
            settle: Duration::from_secs(2),
        }
    }

    #[test]
    fn events_are_grouped_by_plugin_directory_entry_as_configured() {
        let mut d = debouncer();
        let event = |path: &str| Ok(notify::Event::new(EventKind::Create(CreateKind::File)).add_path(path.into()));
        d.note(event("/srv/app/plugins/greeter/.libgreeter.so.tmp"));
        d.note(event("/srv/app/plugins/greeter/libgreeter.so"));
        d.note(event("/srv/app/plugins/vendor/quota/v2/quota.toml"));
        d.note(event("/srv/app/plugins/.cache/abc.so"));
        d.note(event("/elsewhere/x.so"));
        let groups: Vec<&Path> = d.dirty.keys().map(PathBuf::as_path).collect();
        assert_eq!(groups, [Path::new("plugins/greeter"), Path::new("plugins/vendor")]);
        assert!(d.rescan.is_none());
    }

    #[test]
    fn an_overflow_or_a_watch_error_asks_for_a_full_rescan_and_reads_are_ignored() {
        let mut d = debouncer();
        d.note(Ok(notify::Event::new(EventKind::Other).set_flag(Flag::Rescan)));
        assert!(d.rescan.is_some() && d.rewatch, "overflow");
        let mut d = debouncer();
        d.note(Err(notify::Error::generic("inotify went away")));
        assert!(d.rescan.is_some(), "error");
        let mut d = debouncer();
        let read = EventKind::Access(AccessKind::Close(AccessMode::Read));
        d.note(Ok(notify::Event::new(read).add_path("/srv/app/plugins/greeter/libgreeter.so".into())));
        assert!(d.dirty.is_empty(), "our own reads of a library must not trigger a rescan");
        let write = EventKind::Modify(ModifyKind::Any);
        d.note(Ok(notify::Event::new(write).add_path("/srv/app/plugins/greeter/libgreeter.so".into())));
        assert_eq!(d.dirty.len(), 1);
    }
}
