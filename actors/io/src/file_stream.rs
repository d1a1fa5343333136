//! [`FileStream`]: a regular file read as a stream that follows appended
//! data, like `tail -F` (IO::Async::FileStream): the same `on_read`
//! contract as [`Stream`](crate::Stream); truncation and rotation
//! detected; start at the beginning (IO::Async's default), the end, the
//! last N lines, or wherever [`FileStreamSpec::on_initial`] seeks.
//!
//! Reads from a regular file never block for long and never report
//! "would block", so fd readiness cannot drive it. It wakes on the OS's
//! change events for the path's directory instead (inotify through the
//! `notify` crate; see [`WatchMode`]) and polls at an interval (default
//! 100 ms) as the backstop, or alone under [`WatchMode::Poll`]. Either
//! way it then looks the same way: `fstat` for truncation, a read past
//! its position, a `stat` of the path for rotation.

use std::{
    fmt,
    fs::File as StdFile,
    io::SeekFrom,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use ioasync_core::{Ctx, Emits, Error, IntoSpec, Notifier, Once, Restart, Result, Spec};
use tokio::time::Instant;

use crate::{
    file::FileStat,
    file_watch::{PathWatch, WatchMode},
    stream::ReadAction,
};

/// Where reading starts in the file that exists when the stream is
/// added. A file that appears later (the path was missing at the start)
/// is read from its first byte whatever this says, as `tail -F` reads a
/// file that appears: all of it is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// From the first byte: IO::Async's default (offset 0).
    #[default]
    Beginning,
    /// From the current end: only data appended later.
    End,
    /// From the start of the last `n` lines.
    LastLines(usize),
}

/// What to do when the file shrinks under the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnTruncate {
    /// Read the file again from its start (what `tail -F` does).
    #[default]
    FromStart,
    /// Skip to its new end.
    FromEnd,
}

/// Something that happened to a followed file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FileStreamEvent {
    /// Bytes read (only without an `on_read` closure).
    Read(Bytes),
    /// The path exists and is open (also after it reappears).
    Opened,
    /// The file shrank; reading went on per [`OnTruncate`].
    Truncated,
    /// The path names another file now: the old one was read to its end,
    /// the new one is read from its start.
    Rotated,
    /// Opening or reading failed (op `open` or `read`, errno kept).
    Error(Error),
}

type OnRead = Box<dyn FnMut(&mut BytesMut, bool) -> ReadAction + Send>;
type OnInitial = Box<dyn FnMut(&mut Initial<'_>) + Send>;

/// The file as first opened, handed to [`FileStreamSpec::on_initial`]
/// (IO::Async's `on_initial $size` with its `seek` and `seek_to_last`,
/// callable only there: this value exists only during the call).
///
/// The read position starts where [`StartAt`] puts it (offset 0 by
/// default, and always for a file that appeared after the stream was
/// added); seeking moves it. Reading starts there once `on_initial`
/// returns.
#[derive(Debug)]
pub struct Initial<'a> {
    file: &'a StdFile,
    path: &'a Path,
    size: u64,
    pos: u64,
}

impl Initial<'_> {
    /// The file's size when it was opened (IO::Async's `$size`).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where reading will start.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Moves the read position (IO::Async's `seek($offset, $whence)`):
    /// from the start, from the current position, or from the size. A
    /// position past the end is kept (reading starts once the file grows
    /// to it); one before the start is refused: `seek: PATH: Invalid
    /// argument (os error 22)`. Returns the new position.
    pub fn seek(&mut self, to: SeekFrom) -> Result<u64> {
        let (base, off) = match to {
            SeekFrom::Start(n) => {
                self.pos = n;
                return Ok(n);
            }
            SeekFrom::Current(d) => (self.pos, d),
            SeekFrom::End(d) => (self.size, d),
        };
        match base.checked_add_signed(off) {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(Error::io_at(
                "seek",
                self.path.display(),
                std::io::Error::from_raw_os_error(libc::EINVAL),
            )),
        }
    }

    /// IO::Async's `seek_to_last($str)`: moves the read position to just
    /// after the last occurrence of `pattern` within the last 32 KiB of
    /// the file (IO::Async's default horizon, 4 blocks of 8 KiB); true
    /// when found. When it is not found the position is the start of the
    /// searched range and the answer false. `seek_to_last(b"\n")` starts
    /// after the last complete line. Patterns are literal bytes (IO::Async
    /// also takes a regexp).
    pub fn seek_to_last(&mut self, pattern: &[u8]) -> Result<bool> {
        self.seek_to_last_within(pattern, 8192, 4 * 8192)
    }

    /// [`Initial::seek_to_last`] reading blocks of `blocksize` bytes back
    /// from the end, giving up after `horizon` bytes (0: search the whole
    /// file), as IO::Async's `blocksize` and `horizon` options. A failed
    /// read is `read` with its errno.
    pub fn seek_to_last_within(
        &mut self,
        pattern: &[u8],
        blocksize: usize,
        horizon: u64,
    ) -> Result<bool> {
        let floor = if horizon == 0 {
            0
        } else {
            self.size.saturating_sub(horizon)
        };
        if pattern.is_empty() {
            self.pos = self.size;
            return Ok(true);
        }
        let blocksize = blocksize.max(pattern.len()).max(1);
        let mut buf = vec![0u8; blocksize + pattern.len() - 1];
        let mut end = self.size;
        // The first pattern.len()-1 bytes of the block after this one,
        // kept so a match split across two blocks is found.
        let mut carry = 0usize;
        while end > floor {
            let start = end.saturating_sub(blocksize as u64).max(floor);
            let len = (end - start) as usize;
            buf.copy_within(0..carry, len);
            self.file
                .read_exact_at(&mut buf[..len], start)
                .map_err(|e| Error::io_at("read", self.path.display(), e))?;
            let hay = &buf[..len + carry];
            if let Some(i) = hay.windows(pattern.len()).rposition(|w| w == pattern) {
                self.pos = start + (i + pattern.len()) as u64;
                return Ok(true);
            }
            carry = (pattern.len() - 1).min(len);
            end = start;
        }
        self.pos = floor;
        Ok(false)
    }
}

/// How to start a [`FileStream`].
pub struct FileStreamArgs {
    path: PathBuf,
    start: StartAt,
    truncate: OnTruncate,
    interval: Duration,
    watch: WatchMode,
    on_read: Option<OnRead>,
    on_initial: Option<OnInitial>,
}

impl fmt::Debug for FileStreamArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStreamArgs")
            .field("path", &self.path)
            .field("start", &self.start)
            .finish()
    }
}

/// A [`FileStream`] under construction.
#[must_use = "a FileStreamSpec does nothing until it is added"]
pub struct FileStreamSpec {
    name: String,
    args: FileStreamArgs,
}

impl fmt::Debug for FileStreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStreamSpec")
            .field("name", &self.name)
            .field("args", &self.args)
            .finish()
    }
}

impl FileStreamSpec {
    /// IO::Async's `on_read`: the buffer and an EOF flag (never set: a
    /// followed file has no end); consume what you can.
    pub fn on_read(
        mut self,
        f: impl FnMut(&mut BytesMut, bool) -> ReadAction + Send + 'static,
    ) -> Self {
        self.args.on_read = Some(Box::new(f));
        self
    }

    /// Where to start in a file that exists when the stream is added
    /// (default: the beginning, as IO::Async; see [`StartAt`]).
    pub fn start(mut self, at: StartAt) -> Self {
        self.args.start = at;
        self
    }

    /// IO::Async's `on_initial $size`: called once, when the file is first
    /// opened (at add, or when a missing path appears), with its size; it
    /// may seek to set where reading starts (see [`Initial`]), after
    /// [`StartAt`] placed the position.
    ///
    /// ```
    /// use std::io::SeekFrom;
    /// use ioasync::fs::FileStream;
    ///
    /// // Only the last 4 KiB of what is there, then everything appended.
    /// let spec = FileStream::spec("log", "/var/log/syslog").on_initial(|init| {
    ///     let _ = init.seek(SeekFrom::End(-(init.size().min(4096) as i64)));
    /// });
    /// # drop(spec);
    /// ```
    pub fn on_initial(mut self, f: impl FnMut(&mut Initial<'_>) + Send + 'static) -> Self {
        self.args.on_initial = Some(Box::new(f));
        self
    }

    /// How changes are noticed (default: change events, polling as the
    /// backstop; see [`WatchMode`]).
    pub fn watch(mut self, mode: WatchMode) -> Self {
        self.args.watch = mode;
        self
    }

    /// What to do on truncation (default: read again from the start).
    pub fn on_truncate(mut self, t: OnTruncate) -> Self {
        self.args.truncate = t;
        self
    }

    /// How often the path is polled (default 100 ms): alone under
    /// [`WatchMode::Poll`], as the backstop beside change events otherwise.
    pub fn interval(mut self, d: Duration) -> Self {
        self.args.interval = d.max(Duration::from_millis(1));
        self
    }
}

impl IntoSpec for FileStreamSpec {
    type Notifier = FileStream;
}

impl From<FileStreamSpec> for Spec<FileStream> {
    fn from(s: FileStreamSpec) -> Self {
        Spec::once(s.name, s.args).restart(Restart::Temporary)
    }
}

/// Most bytes read per poll before giving other work a turn.
const CHUNK: usize = 1 << 20;

/// Follows a file as it grows, across truncation and rotation.
///
/// ```
/// use std::io::Write;
/// use ioasync::{fs::FileStream, Loop, io::ReadAction};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let path = std::env::temp_dir().join(format!("filestream-doc-{}", std::process::id()));
/// std::fs::write(&path, "old\npartial")?;
/// let lp = Loop::current()?;
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// lp.add(
///     FileStream::spec("log", &path)
///         // Skip the complete lines there already (IO::Async's synopsis).
///         .on_initial(|init| {
///             let _ = init.seek_to_last(b"\n");
///         })
///         .on_read(move |buf, _eof| {
///             while let Some(i) = buf.iter().position(|b| *b == b'\n') {
///                 let line = buf.split_to(i + 1);
///                 let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
///             }
///             ReadAction::Wait
///         }),
/// )
/// .await?;
/// std::fs::OpenOptions::new().append(true).open(&path)?.write_all(b" line\n")?;
/// assert_eq!(rx.recv().await.as_deref(), Some("partial line\n"));
/// lp.shutdown(None).await;
/// std::fs::remove_file(&path)?;
/// # Ok(())
/// # }
/// ```
pub struct FileStream {
    path: PathBuf,
    start: Option<StartAt>,
    truncate: OnTruncate,
    interval: Duration,
    file: Option<(StdFile, FileStat)>,
    pos: u64,
    rbuf: BytesMut,
    scratch: Vec<u8>,
    on_read: Option<OnRead>,
    on_initial: Option<OnInitial>,
    next: Instant,
    more: bool,
    failed: Option<i32>,
    watch: PathWatch,
}

impl FileStream {
    /// Follow the file at `path` (it may not exist yet).
    pub fn spec(name: impl Into<String>, path: impl AsRef<Path>) -> FileStreamSpec {
        FileStreamSpec {
            name: name.into(),
            args: FileStreamArgs {
                path: path.as_ref().to_owned(),
                start: StartAt::Beginning,
                truncate: OnTruncate::FromStart,
                interval: Duration::from_millis(100),
                watch: WatchMode::Events,
                on_read: None,
                on_initial: None,
            },
        }
    }

    async fn error(&mut self, ctx: &mut Ctx<'_, Self>, op: &'static str, e: std::io::Error) {
        if self.failed != e.raw_os_error() || self.failed.is_none() {
            self.failed = e.raw_os_error();
            let e = Error::io_at(op, self.path.display(), e);
            ctx.emit(FileStreamEvent::Error(e)).await;
        }
    }

    /// Opens the path if it is not open; true when a file is open.
    async fn open(&mut self, ctx: &mut Ctx<'_, Self>) -> bool {
        if self.file.is_some() {
            return true;
        }
        let opened = StdFile::open(&self.path).and_then(|f| {
            let st = FileStat::from(&f.metadata()?);
            Ok((f, st))
        });
        match opened {
            Ok((f, st)) => {
                self.pos = match self.start.take() {
                    Some(StartAt::End) => st.size,
                    Some(StartAt::LastLines(n)) => last_lines_offset(&f, st.size, n),
                    Some(StartAt::Beginning) | None => 0,
                };
                if let Some(mut on_initial) = self.on_initial.take() {
                    let mut init = Initial {
                        file: &f,
                        path: &self.path,
                        size: st.size,
                        pos: self.pos,
                    };
                    on_initial(&mut init);
                    self.pos = init.pos;
                }
                tracing::debug!(path = %self.path.display(), pos = self.pos, size = st.size, "filestream: opened");
                self.file = Some((f, st));
                self.failed = None;
                ctx.emit(FileStreamEvent::Opened).await;
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                self.error(ctx, "open", e).await;
                false
            }
        }
    }

    /// Reads what the open file has past `pos`, up to a chunk.
    async fn read_available(&mut self, ctx: &mut Ctx<'_, Self>) -> std::io::Result<()> {
        let got = self.read_chunk()?;
        self.more = got >= CHUNK;
        if got > 0 {
            self.deliver(ctx).await;
        }
        Ok(())
    }

    /// Reads up to a chunk past `pos` into the buffer (no await: the
    /// scratch buffer never lives in a future).
    fn read_chunk(&mut self) -> std::io::Result<usize> {
        let Some((f, _)) = &self.file else {
            return Ok(0);
        };
        if self.scratch.is_empty() {
            self.scratch = vec![0u8; 64 << 10];
        }
        let mut got = 0;
        while got < CHUNK {
            let n = f.read_at(&mut self.scratch, self.pos)?;
            if n == 0 {
                break;
            }
            self.pos += n as u64;
            got += n;
            self.rbuf.extend_from_slice(&self.scratch[..n]);
        }
        Ok(got)
    }

    async fn deliver(&mut self, ctx: &mut Ctx<'_, Self>) {
        match self.on_read.as_mut() {
            Some(f) => loop {
                let before = self.rbuf.len();
                let action = f(&mut self.rbuf, false);
                if action == ReadAction::Wait || self.rbuf.is_empty() || self.rbuf.len() == before {
                    break;
                }
            },
            None if !self.rbuf.is_empty() => {
                let data = self.rbuf.split().freeze();
                ctx.emit(FileStreamEvent::Read(data)).await;
            }
            None => {}
        }
    }

    async fn poll(&mut self, ctx: &mut Ctx<'_, Self>) {
        if !self.open(ctx).await {
            return;
        }
        // Truncated? (The open file shrank below what we read.)
        if let Some((f, _)) = &self.file {
            match f.metadata() {
                Ok(m) if m.len() < self.pos => {
                    self.pos = match self.truncate {
                        OnTruncate::FromStart => 0,
                        OnTruncate::FromEnd => m.len(),
                    };
                    ctx.emit(FileStreamEvent::Truncated).await;
                }
                Ok(_) => {}
                Err(e) => return self.error(ctx, "read", e).await,
            }
        }
        if let Err(e) = self.read_available(ctx).await {
            self.error(ctx, "read", e).await;
            return;
        }
        if self.more {
            return;
        }
        // Rotated? (The path names another file now.) Finish the old one
        // first: nothing written to it is lost.
        let current = self.file.as_ref().map(|(_, st)| (st.dev, st.ino));
        if let Ok(st) = FileStat::of(&self.path)
            && Some((st.dev, st.ino)) != current
        {
            while self.more || self.file.is_some() {
                if let Err(e) = self.read_available(ctx).await {
                    self.error(ctx, "read", e).await;
                    break;
                }
                if !self.more {
                    break;
                }
            }
            self.file = None;
            self.start = Some(StartAt::Beginning);
            ctx.emit(FileStreamEvent::Rotated).await;
            if self.open(ctx).await
                && let Err(e) = self.read_available(ctx).await
            {
                self.error(ctx, "read", e).await;
            }
        }
    }
}

/// The offset where the last `n` lines of a file of `size` bytes start.
fn last_lines_offset(f: &StdFile, size: u64, n: usize) -> u64 {
    if n == 0 {
        return size;
    }
    let mut buf = vec![0u8; 8192];
    let mut end = size;
    let mut newlines = 0;
    // A final newline ends the last line; it does not start another.
    let mut skip_last = true;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let len = (end - start) as usize;
        if f.read_exact_at(&mut buf[..len], start).is_err() {
            return 0;
        }
        for i in (0..len).rev() {
            if buf[i] == b'\n' {
                if skip_last && start + i as u64 == size - 1 {
                    skip_last = false;
                    continue;
                }
                newlines += 1;
                if newlines == n {
                    return start + i as u64 + 1;
                }
            }
        }
        skip_last = false;
        end = start;
    }
    0
}

impl Notifier for FileStream {
    type Args = Once<FileStreamArgs>;

    fn kind() -> &'static str {
        "filestream"
    }

    async fn init(args: Self::Args, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let args = args.take_for(ctx.path())?;
        // Watch first: a file created while we open is not missed.
        let watch = PathWatch::new(&args.path, args.watch);
        let mut fs = FileStream {
            path: args.path,
            start: Some(args.start),
            truncate: args.truncate,
            interval: args.interval,
            file: None,
            pos: 0,
            rbuf: BytesMut::new(),
            scratch: Vec::new(),
            on_read: args.on_read,
            on_initial: args.on_initial,
            next: Instant::now(),
            more: false,
            failed: None,
            watch,
        };
        // Open now: "from the end" means the end as of when it was added;
        // a file that appears later is all new, read from its start.
        if !fs.open(ctx).await {
            fs.start = Some(StartAt::Beginning);
        }
        tracing::debug!(path = %fs.path.display(), events = fs.watch.has_events(), "filestream: following");
        Ok(fs)
    }

    async fn ready(&mut self) {
        if self.more {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(self.next) => {}
            () = self.watch.changed() => {}
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        // Forget the wake-ups so far first: one that comes while we look
        // wakes the next look.
        self.watch.clear();
        self.watch.refresh();
        self.poll(ctx).await;
        ctx.set_buffered(self.rbuf.len());
        self.next = Instant::now() + self.interval;
    }
}

impl Emits<FileStreamEvent> for FileStream {}

impl fmt::Debug for FileStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStream")
            .field("path", &self.path)
            .field("pos", &self.pos)
            .finish()
    }
}
