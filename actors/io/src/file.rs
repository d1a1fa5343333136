//! [`File`]: watches a path's `stat(2)` properties (IO::Async::File).
//!
//! It looks (`stat`) when the OS reports a change in the path's directory
//! (inotify through the `notify` crate: a write, a chmod, a rename, the
//! path created or removed) and at an interval as the backstop; polling
//! alone under [`WatchMode::Poll`] or where no change events can be had.
//! The backstop is what sees the attributes a directory watch does not
//! report (a change made by another host on NFS, a link count changed
//! through another directory) — IO::Async::File polls alone.

use std::{
    fmt,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use ioasync_core::{Ctx, Emits, Error, Notifier, Restart, Result, Spec};
use tokio::time::Instant;

use crate::file_watch::{PathWatch, WatchMode};

/// The `stat(2)` properties of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Type and permission bits.
    pub mode: u32,
    /// Hard links.
    pub nlink: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Last modification.
    pub mtime: SystemTime,
    /// Last status change.
    pub ctime: SystemTime,
}

impl FileStat {
    /// `stat(2)` of `path` (following symlinks).
    pub fn of(path: &Path) -> std::io::Result<FileStat> {
        std::fs::metadata(path).map(|m| FileStat::from(&m))
    }
}

impl From<&std::fs::Metadata> for FileStat {
    fn from(m: &std::fs::Metadata) -> FileStat {
        let at = |secs: i64, nanos: i64| {
            let d = Duration::new(secs.unsigned_abs(), nanos.clamp(0, 999_999_999) as u32);
            if secs >= 0 {
                SystemTime::UNIX_EPOCH + d
            } else {
                SystemTime::UNIX_EPOCH - d
            }
        };
        FileStat {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            nlink: m.nlink(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: at(m.mtime(), m.mtime_nsec()),
            ctime: at(m.ctime(), m.ctime_nsec()),
        }
    }
}

/// A change seen on a watched path.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FileEvent {
    /// The path exists now (also the first event when it exists at start).
    Appeared(FileStat),
    /// The path is gone.
    Vanished(FileStat),
    /// Any property changed (emitted after the per-property events).
    Changed {
        /// Before.
        old: FileStat,
        /// After.
        new: FileStat,
    },
    /// Size changed.
    Size {
        /// Before.
        old: u64,
        /// After.
        new: u64,
    },
    /// Modification time changed.
    Mtime {
        /// Before.
        old: SystemTime,
        /// After.
        new: SystemTime,
    },
    /// Mode (type or permission bits) changed.
    Mode {
        /// Before.
        old: u32,
        /// After.
        new: u32,
    },
    /// The path now names another file (device or inode changed).
    Inode {
        /// Before.
        old: (u64, u64),
        /// After.
        new: (u64, u64),
    },
    /// Link count changed.
    Nlink {
        /// Before.
        old: u64,
        /// After.
        new: u64,
    },
    /// Owner or group changed.
    Owner {
        /// Before (uid, gid).
        old: (u32, u32),
        /// After.
        new: (u32, u32),
    },
    /// `stat` failed for a reason other than absence (op `stat`, errno
    /// kept); reported once until it changes.
    Error(Error),
}

/// How to start a [`File`] watcher.
#[derive(Debug, Clone)]
pub struct FileArgs {
    path: PathBuf,
    interval: Duration,
    watch: WatchMode,
}

/// Watches a path's `stat` properties on change events and at an
/// interval, and emits
/// [`FileEvent`]s: one per changed property, then `Changed`; `Appeared`
/// and `Vanished` as the path comes and goes.
///
/// ```
/// use std::time::Duration;
/// use ioasync::{fs::{File, FileEvent}, Loop, notifier::Subscription};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let path = std::env::temp_dir().join(format!("file-doc-{}", std::process::id()));
/// let lp = Loop::current()?;
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// // A missing path; its creation wakes the watcher (inotify) at once.
/// let spec = File::spec("conf", &path, Duration::from_secs(60))
///     .subscribe(Subscription::closure(move |e: FileEvent| {
///         let _ = tx.send(e);
///     }));
/// lp.add(spec).await?;
/// std::fs::write(&path, "x")?;
/// assert!(matches!(rx.recv().await, Some(FileEvent::Appeared(st)) if st.size <= 1));
/// lp.shutdown(None).await;
/// std::fs::remove_file(&path)?;
/// # Ok(())
/// # }
/// ```
pub struct File {
    args: FileArgs,
    last: Option<FileStat>,
    last_err: Option<i32>,
    next: Instant,
    started: bool,
    watch: PathWatch,
}

impl File {
    /// Watch `path` on change events, polling every `interval` as the
    /// backstop ([`WatchMode::Events`]).
    pub fn spec(name: impl Into<String>, path: impl AsRef<Path>, interval: Duration) -> Spec<File> {
        File::spec_with_mode(name, path, interval, WatchMode::Events)
    }

    /// Watch `path` in `mode`: [`WatchMode::Poll`] polls alone, every
    /// `interval` (for NFS and other network file systems).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::fs::{File, WatchMode};
    ///
    /// let spec = File::spec_with_mode("conf", "/etc/hosts", Duration::from_secs(2), WatchMode::Poll);
    /// # drop(spec);
    /// ```
    pub fn spec_with_mode(
        name: impl Into<String>,
        path: impl AsRef<Path>,
        interval: Duration,
        mode: WatchMode,
    ) -> Spec<File> {
        Spec::new(
            name,
            FileArgs {
                path: path.as_ref().to_owned(),
                interval: interval.max(Duration::from_millis(1)),
                watch: mode,
            },
        )
        .restart(Restart::Permanent)
    }

    async fn poll(&mut self, ctx: &mut Ctx<'_, Self>) {
        let now = match FileStat::of(&self.args.path) {
            Ok(st) => Ok(Some(st)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        match now {
            Err(e) => {
                let errno = e.raw_os_error();
                if self.last_err != errno || self.last_err.is_none() {
                    self.last_err = errno;
                    let e = Error::io_at("stat", self.args.path.display(), e);
                    ctx.emit(FileEvent::Error(e)).await;
                }
            }
            Ok(new) => {
                self.last_err = None;
                let old = self.last;
                self.last = new;
                match (old, new) {
                    (None, Some(n)) => ctx.emit(FileEvent::Appeared(n)).await,
                    (Some(o), None) => ctx.emit(FileEvent::Vanished(o)).await,
                    (Some(o), Some(n)) if o != n => self.changed(o, n, ctx).await,
                    _ => {}
                }
            }
        }
    }

    async fn changed(&mut self, o: FileStat, n: FileStat, ctx: &mut Ctx<'_, Self>) {
        if (o.dev, o.ino) != (n.dev, n.ino) {
            let ev = FileEvent::Inode {
                old: (o.dev, o.ino),
                new: (n.dev, n.ino),
            };
            ctx.emit(ev).await;
        }
        if o.size != n.size {
            let ev = FileEvent::Size {
                old: o.size,
                new: n.size,
            };
            ctx.emit(ev).await;
        }
        if o.mtime != n.mtime {
            let ev = FileEvent::Mtime {
                old: o.mtime,
                new: n.mtime,
            };
            ctx.emit(ev).await;
        }
        if o.mode != n.mode {
            let ev = FileEvent::Mode {
                old: o.mode,
                new: n.mode,
            };
            ctx.emit(ev).await;
        }
        if o.nlink != n.nlink {
            let ev = FileEvent::Nlink {
                old: o.nlink,
                new: n.nlink,
            };
            ctx.emit(ev).await;
        }
        if (o.uid, o.gid) != (n.uid, n.gid) {
            let ev = FileEvent::Owner {
                old: (o.uid, o.gid),
                new: (n.uid, n.gid),
            };
            ctx.emit(ev).await;
        }
        ctx.emit(FileEvent::Changed { old: o, new: n }).await;
    }
}

impl Notifier for File {
    type Args = FileArgs;

    fn kind() -> &'static str {
        "file"
    }

    async fn init(args: FileArgs, _ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let watch = PathWatch::new(&args.path, args.watch);
        tracing::debug!(path = %args.path.display(), events = watch.has_events(), "file: watching");
        Ok(File {
            args,
            last: None,
            last_err: None,
            next: Instant::now(),
            started: false,
            watch,
        })
    }

    async fn ready(&mut self) {
        tokio::select! {
            () = tokio::time::sleep_until(self.next) => {}
            () = self.watch.changed() => {}
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        // The first look waits for a subscriber, so the first one sees
        // `Appeared` for a path that exists from the start.
        if !self.started && !ctx.has_subscribers::<FileEvent>() {
            self.next = Instant::now() + self.args.interval;
            return;
        }
        self.started = true;
        self.watch.clear();
        self.watch.refresh();
        self.poll(ctx).await;
        self.next = Instant::now() + self.args.interval;
    }

    async fn on_subscribe(&mut self, ctx: &mut Ctx<'_, Self>) {
        // The first subscriber: look now rather than at the next tick.
        if !self.started && ctx.has_subscribers::<FileEvent>() {
            self.next = Instant::now();
        }
    }
}

impl Emits<FileEvent> for File {}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("path", &self.args.path)
            .field("last", &self.last)
            .finish()
    }
}
