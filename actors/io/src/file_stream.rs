//! [`FileStream`]: a regular file read as a stream that follows appended
//! data, like `tail -F` (IO::Async::FileStream): the same `on_read`
//! contract as [`Stream`](crate::Stream); truncation and rotation
//! detected; start at the beginning, the end, or the last N lines.
//!
//! It polls the path (default every 100 ms): reads from a regular file
//! never block for long and never report "would block", so readiness
//! cannot drive it; polling is also what catches rotation.

use std::{
    fmt,
    fs::File as StdFile,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use ioasync_core::{Ctx, Emits, Error, IntoSpec, Notifier, Once, Restart, Result, Spec};
use tokio::time::Instant;

use crate::{file::FileStat, stream::ReadAction};

/// Where reading starts when the file is first opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// From the first byte.
    Beginning,
    /// From the current end: only data appended later.
    #[default]
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

/// How to start a [`FileStream`].
pub struct FileStreamArgs {
    path: PathBuf,
    start: StartAt,
    truncate: OnTruncate,
    interval: Duration,
    on_read: Option<OnRead>,
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

    /// Where to start (default: the end).
    pub fn start(mut self, at: StartAt) -> Self {
        self.args.start = at;
        self
    }

    /// What to do on truncation (default: read again from the start).
    pub fn on_truncate(mut self, t: OnTruncate) -> Self {
        self.args.truncate = t;
        self
    }

    /// How often the path is polled (default 100 ms).
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
        Spec::new(s.name, Once::new(s.args)).restart(Restart::Temporary)
    }
}

/// Most bytes read per poll before giving other work a turn.
const CHUNK: usize = 1 << 20;

/// Follows a file as it grows, across truncation and rotation.
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
    next: Instant,
    more: bool,
    failed: Option<i32>,
}

impl FileStream {
    /// Follow the file at `path` (it may not exist yet).
    pub fn spec(name: impl Into<String>, path: impl AsRef<Path>) -> FileStreamSpec {
        FileStreamSpec {
            name: name.into(),
            args: FileStreamArgs {
                path: path.as_ref().to_owned(),
                start: StartAt::End,
                truncate: OnTruncate::FromStart,
                interval: Duration::from_millis(100),
                on_read: None,
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
            next: Instant::now(),
            more: false,
            failed: None,
        };
        // Open now: "from the end" means the end as of when it was added.
        fs.open(ctx).await;
        Ok(fs)
    }

    async fn ready(&mut self) {
        if !self.more {
            tokio::time::sleep_until(self.next).await;
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
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
