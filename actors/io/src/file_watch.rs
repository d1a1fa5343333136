//! How [`File`](crate::File) and [`FileStream`](crate::FileStream) learn
//! that a path changed: the OS's change events through the
//! [`notify`] crate (inotify on Linux), with polling as the fallback.
//!
//! One process-wide watcher (one inotify instance, one thread of
//! notify's) serves every notifier: the per-user limit on inotify
//! instances is small (128 by default) and a loop may follow many files.
//! Each notifier watches the *directory* its path lives in (the deepest
//! existing ancestor while the directories do not exist yet) and that
//! directory's parent, so a path created later or renamed over, and its
//! directory removed or made again, are seen as soon as they happen; the
//! watcher's callback wakes the notifiers whose path an event names,
//! through a one-slot tokio channel (wake-ups coalesce, nothing queues up).
//! The notifier then looks (`stat`, read) exactly as it does when it
//! polls: events only say *when* to look, never *what* changed, so
//! rotation and truncation are detected the same way in both modes.
//!
//! Polling at the notifier's interval goes on as a backstop beside the
//! events. It is what catches what a directory watch does not report:
//! changes made by another host on NFS and other network file systems,
//! writes to the followed file after it was renamed out of the watched
//! name, link counts changed through another directory, and the file
//! behind a symlink living elsewhere. Where no watcher can be had (another
//! OS without a backend, the inotify limits reached) polling alone runs,
//! and [`WatchMode::Poll`] asks for it.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use dashmap::DashMap;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher, event::ModifyKind};
use tokio::sync::mpsc;

/// How a [`File`](crate::File) or [`FileStream`](crate::FileStream) learns
/// that its path changed.
///
/// ```
/// use std::time::Duration;
/// use ioasync::fs::{FileStream, WatchMode};
///
/// // A log on NFS: other hosts' writes raise no local events, so poll.
/// let spec = FileStream::spec("log", "/mnt/nfs/app.log")
///     .watch(WatchMode::Poll)
///     .interval(Duration::from_millis(250));
/// # drop(spec);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WatchMode {
    /// Wake on the OS's change events (inotify on Linux, through the
    /// `notify` crate) on the path's directory, and poll at the interval
    /// as a backstop; poll alone where no events can be had.
    #[default]
    Events,
    /// Poll alone, at the interval: for NFS and other network file
    /// systems, whose changes made elsewhere raise no local events.
    Poll,
}

/// A device and inode: what names a directory across renames.
type Identity = (u64, u64);

struct Hub {
    watcher: Mutex<Option<RecommendedWatcher>>,
    /// Watched directories: how many watches hold each, and the directory
    /// watched (it may have been removed and made again since).
    dirs: Mutex<HashMap<PathBuf, (usize, Identity)>>,
    /// The keys of `dirs`, for the callback (which must not wait for
    /// `dirs`: a watch call holds it while notify's thread answers).
    watched: DashMap<PathBuf, ()>,
    /// Watched directories an event said were removed or renamed. notify
    /// drops its watch of such a path by name when it handles the event,
    /// even when the name was watched again meanwhile (a directory removed
    /// and made again): the next look watches a suspect again.
    suspect: DashMap<PathBuf, ()>,
    /// Who to wake for an event naming a path.
    wake: DashMap<PathBuf, Vec<(u64, mpsc::Sender<()>)>>,
}

static HUB: OnceLock<Option<Hub>> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn hub() -> Option<&'static Hub> {
    HUB.get_or_init(|| {
        let watcher = notify::recommended_watcher(|res: notify::Result<notify::Event>| {
            let Some(hub) = HUB.get().and_then(Option::as_ref) else {
                return;
            };
            match res {
                // Opens and closes (ours among them) change nothing.
                Ok(ev) if matches!(ev.kind, EventKind::Access(_)) => {}
                Ok(ev) => {
                    let gone = matches!(
                        ev.kind,
                        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
                    );
                    for p in &ev.paths {
                        if gone && hub.watched.contains_key(p.as_path()) {
                            hub.suspect.insert(p.clone(), ());
                        }
                        // A full channel: a wake-up is pending already.
                        hub.poke(p);
                    }
                }
                // Lost events (a queue overflow): everybody looks.
                Err(e) => {
                    tracing::debug!(error = %e, "file watch: event error; waking every watch");
                    for subs in hub.wake.iter() {
                        for (_, tx) in subs.iter() {
                            let _ = tx.try_send(());
                        }
                    }
                }
            }
        });
        match watcher {
            Ok(w) => Some(Hub {
                watcher: Mutex::new(Some(w)),
                dirs: Mutex::new(HashMap::new()),
                watched: DashMap::new(),
                suspect: DashMap::new(),
                wake: DashMap::new(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "file watch: no change events here; File and FileStream poll");
                None
            }
        }
    })
    .as_ref()
}

impl Hub {
    /// Takes a hold on a watch of `dir` (whose identity is `id`); false
    /// when it cannot be watched.
    fn acquire(&self, dir: &Path, id: Identity) -> bool {
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        let suspect = self.suspect.remove(dir).is_some();
        let stale = match dirs.get_mut(dir) {
            Some((n, have)) if *have == id && !suspect => {
                *n += 1;
                return true;
            }
            Some(_) => true,
            None => false,
        };
        let mut w = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = w.as_mut() else { return false };
        if stale {
            // The directory was removed and made again, or notify may have
            // dropped its watch: watch it anew.
            let _ = w.unwatch(dir);
        }
        match w.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                let n = dirs.get(dir).map_or(0, |(n, _)| *n);
                dirs.insert(dir.to_owned(), (n + 1, id));
                self.watched.insert(dir.to_owned(), ());
                tracing::trace!(dir = %dir.display(), "file watch: watching");
                if stale {
                    // Whatever happened there before the new watch, every
                    // watch of the directory looks once.
                    self.poke(dir);
                }
                true
            }
            Err(e) => {
                if stale {
                    dirs.remove(dir);
                    self.watched.remove(dir);
                }
                tracing::debug!(dir = %dir.display(), error = %e, "file watch: cannot watch; polling");
                false
            }
        }
    }

    /// Wakes every watch listening for events naming `path`.
    fn poke(&self, path: &Path) {
        if let Some(subs) = self.wake.get(path) {
            for (_, tx) in subs.iter() {
                let _ = tx.try_send(());
            }
        }
    }

    fn release(&self, dir: &Path) {
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        let Some((n, _)) = dirs.get_mut(dir) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            dirs.remove(dir);
            self.watched.remove(dir);
            let mut w = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(w) = w.as_mut() {
                // Gone already when the directory was removed.
                let _ = w.unwatch(dir);
            }
        }
    }

    fn listen(&self, paths: &[PathBuf], id: u64, tx: &mpsc::Sender<()>) {
        for p in paths {
            self.wake
                .entry(p.clone())
                .or_default()
                .push((id, tx.clone()));
        }
    }

    fn unlisten(&self, paths: &[PathBuf], id: u64) {
        for p in paths {
            self.wake.remove_if_mut(p, |_, subs| {
                subs.retain(|(i, _)| *i != id);
                subs.is_empty()
            });
        }
    }
}

/// What one watch holds in the hub.
#[derive(Debug)]
struct Held {
    /// The deepest existing directory on the way to the target, and its
    /// parent: a directory whose files are held open (the followed file
    /// removed with it) reports its own removal only once they are
    /// closed, its parent reports it at once.
    dirs: Vec<(PathBuf, Identity)>,
    /// The paths whose events wake this watch: the target and each
    /// ancestor of it up to the deepest existing directory.
    paths: Vec<PathBuf>,
}

/// One notifier's watch on one path: wakes it when an event names the
/// path or a directory on the way to it.
#[derive(Debug)]
pub(crate) struct PathWatch {
    target: PathBuf,
    id: u64,
    tx: mpsc::Sender<()>,
    rx: mpsc::Receiver<()>,
    mode: WatchMode,
    held: Option<Held>,
}

impl PathWatch {
    /// A watch of `path` in `mode`, set up at once.
    pub(crate) fn new(path: &Path, mode: WatchMode) -> PathWatch {
        let target = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let (tx, rx) = mpsc::channel(1);
        let mut w = PathWatch {
            target,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            tx,
            rx,
            mode,
            held: None,
        };
        w.refresh();
        w
    }

    /// Whether change events wake this watch now (else it only polls).
    pub(crate) fn has_events(&self) -> bool {
        self.held.is_some()
    }

    /// Resolves at the next event for the path (never while polling
    /// alone). Cancel safe.
    pub(crate) async fn changed(&mut self) {
        if self.held.is_none() {
            return std::future::pending().await;
        }
        let _ = self.rx.recv().await;
    }

    /// Forgets pending wake-ups: call before looking, so an event that
    /// arrives during the look wakes the next one.
    pub(crate) fn clear(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// Moves the watch to the deepest existing ancestor directory of the
    /// path (and its parent) if that changed: a directory appeared, or was
    /// removed or made again. Two `stat`s when nothing changed.
    pub(crate) fn refresh(&mut self) {
        if self.mode == WatchMode::Poll {
            return;
        }
        let Some(hub) = hub() else { return };
        let want = wanted_dirs(&self.target);
        if let Some(h) = &self.held
            && h.dirs == want
            && !want.iter().any(|(d, _)| hub.suspect.contains_key(d))
        {
            return;
        }
        self.release(hub);
        let Some((deepest, _)) = want.first() else {
            return;
        };
        let mut dirs = Vec::with_capacity(want.len());
        for (d, id) in &want {
            if hub.acquire(d, *id) {
                dirs.push((d.clone(), *id));
            }
        }
        if dirs.first().map(|(d, _)| d) != Some(deepest) {
            // Without the deepest directory nothing useful is watched.
            for (d, _) in &dirs {
                hub.release(d);
            }
            return;
        }
        let mut paths = vec![self.target.clone()];
        let mut p = self.target.parent();
        while let Some(a) = p {
            paths.push(a.to_owned());
            if a == deepest {
                break;
            }
            p = a.parent();
        }
        hub.listen(&paths, self.id, &self.tx);
        // Whatever happened before the watch was in place: look once.
        let _ = self.tx.try_send(());
        self.held = Some(Held { dirs, paths });
    }

    fn release(&mut self, hub: &Hub) {
        if let Some(h) = self.held.take() {
            hub.unlisten(&h.paths, self.id);
            for (d, _) in &h.dirs {
                hub.release(d);
            }
        }
    }
}

impl Drop for PathWatch {
    fn drop(&mut self) {
        if self.held.is_some()
            && let Some(hub) = hub()
        {
            self.release(hub);
        }
    }
}

/// The deepest existing directory among the path's ancestors and its
/// parent, with their identities.
fn wanted_dirs(target: &Path) -> Vec<(PathBuf, Identity)> {
    let mut p = target.parent();
    while let Some(a) = p {
        if let Some(id) = dir_identity(a) {
            let mut v = vec![(a.to_owned(), id)];
            if let Some(up) = a.parent()
                && let Some(up_id) = dir_identity(up)
            {
                v.push((up.to_owned(), up_id));
            }
            return v;
        }
        p = a.parent();
    }
    Vec::new()
}

fn dir_identity(p: &Path) -> Option<Identity> {
    let m = std::fs::metadata(p).ok()?;
    m.is_dir().then(|| (m.dev(), m.ino()))
}
