//! [`Stream`]: a buffered byte stream notifier (IO::Async::Stream).
//!
//! Reading hands the read buffer to an `on_read` closure with IO::Async's
//! contract — consume what you can, say whether to be called again — or,
//! without one, emits each chunk as [`StreamEvent::Read`]. Writing queues
//! bytes; [`StreamRef::write`] resolves when they are written. Above the
//! write high watermark the stream stops taking messages (writers wait) and
//! stops reading (so an echo cannot grow without bound).
//!
//! ```no_run
//! use ioasync::prelude::*;
//! use ioasync::io::{Connect, ReadAction, Stream, StreamRef};
//!
//! # #[allow(dead_code)]
//! # async fn f(lp: Loop) -> ioasync::Result<()> {
//! let conn = Connect::new("127.0.0.1:7".parse::<ioasync::io::Address>()?).await?;
//! let stream = lp
//!     .add(Stream::spec("echo-client", conn).on_read(|_io, buf, eof| {
//!         while let Some(i) = buf.iter().position(|b| *b == b'\n') {
//!             let line = buf.split_to(i + 1);
//!             println!("got {}", String::from_utf8_lossy(&line).trim_end());
//!         }
//!         let _ = eof;
//!         ReadAction::Wait
//!     }))
//!     .await?;
//! stream.write("hello\n").await?;
//! # Ok(()) }
//! ```

use std::{fmt, os::fd::OwnedFd};

use bytes::{Bytes, BytesMut};
use ioasync_core::{Ctx, Error, NotifierRef, Once, Restart, Result, Spec};
use tokio::sync::oneshot;

use crate::{
    byte_stream::{
        ByteStream, ByteStreamArgs, ByteStreamSpec, CloseNow, CloseRead, CloseWhenEmpty, Info,
        ProtocolImpl, PushOnRead, PushedRead, Read, ReadFor, ReadResult, ShutdownWrite, StreamEnd,
        StreamEvent, StreamInfo, StreamIo, WantRead, Write, WriteFrom, drive_reader,
    },
    connection::Connection,
    duplex::{Duplex, Source},
};

/// What an `on_read` closure wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAction {
    /// Call me again now: I may be able to consume more of the buffer.
    Again,
    /// Wait for more data.
    Wait,
}

type OnRead = Box<dyn FnMut(&mut StreamIo<'_>, &mut BytesMut, bool) -> ReadAction + Send>;

/// The protocol of a [`Stream`]: bytes in, bytes out. Input goes to the
/// `on_read` closure (IO::Async's contract), or, without one, to
/// subscribers as [`StreamEvent::Read`] chunks; without subscribers it
/// waits for future-returning reads.
#[derive(Default)]
pub struct RawBytes {
    on_read: Option<OnRead>,
}

impl fmt::Debug for RawBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawBytes")
            .field("on_read", &self.on_read.is_some())
            .finish()
    }
}

impl ProtocolImpl for RawBytes {
    type Item = Bytes;
    type Out = Bytes;
    const KIND: &'static str = "stream";
    const GATED: bool = false;

    async fn consume(
        s: &mut ByteStream<Self>,
        ctx: &mut Ctx<'_, ByteStream<Self>>,
    ) -> Result<bool> {
        let eof = s.duplex.read_eof();
        let Some(f) = s.proto.on_read.as_mut() else {
            if s.duplex.buffered() > 0 && ctx.has_subscribers::<StreamEvent>() {
                let data = s.duplex.input_mut().split().freeze();
                ctx.emit(StreamEvent::Read(data)).await;
            }
            return Ok(false);
        };
        let mut buf = s.duplex.take_input();
        let mut staged = Vec::new();
        drive_reader(
            &mut s.duplex,
            &mut buf,
            eof,
            &mut s.eof_delivered,
            &mut staged,
            &mut |io: &mut StreamIo<'_>, buf: &mut BytesMut, eof| match f(io, buf, eof) {
                ReadAction::Again => PushedRead::Again,
                ReadAction::Wait => PushedRead::Wait,
            },
        );
        s.duplex.put_input(buf);
        if staged.is_empty() {
            return Ok(false);
        }
        // Readers it pushed take what is left first.
        s.pushed.get_or_insert_default().extend(staged);
        Ok(true)
    }

    fn queue(&mut self, duplex: &mut Duplex, item: Bytes) -> Result<()> {
        if duplex.takes_writes() {
            duplex.write(item, None);
            Ok(())
        } else {
            Err(Error::closed("send", "the stream is closed for writing"))
        }
    }

    fn to_bytes(&mut self, item: Bytes) -> Result<Bytes> {
        Ok(item)
    }

    fn busy(s: &ByteStream<Self>) -> bool {
        // Bytes nobody consumed wait for future-returning reads: a stream
        // at EOF closes once they were read (or when it has an on_read).
        s.duplex.buffered() > 0 && s.proto.on_read.is_none()
    }

    fn holds_for_subscribers(s: &ByteStream<Self>) -> bool {
        s.proto.on_read.is_none()
    }
}

/// How to start a [`Stream`]: its source and options. Built by
/// [`Stream::spec`] or [`Stream::from_fds`], finished with `.into()` or
/// added directly with `Loop::add`.
pub type StreamArgs = ByteStreamArgs<RawBytes>;

/// A [`Spec`] for a stream under construction; set options, then add it.
pub type StreamSpec = ByteStreamSpec<RawBytes>;

impl StreamSpec {
    /// IO::Async's `on_read`: called with the read buffer and the EOF flag;
    /// consume what you can (`buf.split_to(n)`), return
    /// [`ReadAction::Again`] to be called again at once. At EOF it is called
    /// with `eof = true` and whatever partial data remains.
    pub fn on_read(
        mut self,
        f: impl FnMut(&mut StreamIo<'_>, &mut BytesMut, bool) -> ReadAction + Send + 'static,
    ) -> Self {
        self.args.proto.on_read = Some(Box::new(f));
        self
    }
}

/// A buffered byte stream over a socket or a pair of fds (IO::Async's
/// Stream): `on_read` gets the buffer (IO::Async's contract: consume what
/// you can, say whether to call again), writes are queued and flushed as
/// the fd takes them, and its events say what happened.
///
/// ```
/// use ioasync::{Loop, io::{ReadAction, Stream}};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
/// // An echo: every byte read is written back.
/// lp.add(Stream::spec("echo", ours).on_read(|io, buf, _eof| {
///     io.write_slice(buf);
///     buf.clear();
///     ReadAction::Wait
/// }))
/// .await?;
/// peer.write_all(b"ping").await.unwrap();
/// let mut got = [0u8; 4];
/// peer.read_exact(&mut got).await.unwrap();
/// assert_eq!(&got, b"ping");
/// # Ok(()) }
/// ```
pub type Stream = ByteStream<RawBytes>;

impl ByteStream<RawBytes> {
    /// A stream over a connection: a socket, a TLS stream, any
    /// [`Connection`].
    pub fn spec(name: impl Into<String>, conn: impl Into<Connection>) -> StreamSpec {
        StreamSpec::new(
            name,
            Source::from_connection(conn.into()),
            RawBytes::default(),
        )
    }

    /// A stream over any [`AsyncIo`](crate::AsyncIo): a `tokio_rustls`
    /// TLS stream, an in-memory `tokio::io::duplex` pipe, any adapter. The
    /// same events, watermarks, read futures and drain as over a socket;
    /// a write's future resolves once the bytes are handed to `io`, and
    /// `Flushed` once `io` has flushed them. A close shuts `io` down
    /// (`poll_shutdown`: a TLS stream sends its close_notify).
    ///
    /// ```
    /// use ioasync::{Loop, io::{ReadAction, Stream}};
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut theirs) = tokio::io::duplex(1024);
    /// lp.add(Stream::spec_io("upcase", ours).on_read(|io, buf, _eof| {
    ///     io.write(buf.split().to_ascii_uppercase());
    ///     ReadAction::Wait
    /// }))
    /// .await?;
    /// theirs.write_all(b"hello").await.unwrap();
    /// let mut back = [0u8; 5];
    /// theirs.read_exact(&mut back).await.unwrap();
    /// assert_eq!(&back, b"HELLO");
    /// # Ok(()) }
    /// ```
    pub fn spec_io(name: impl Into<String>, io: impl crate::AsyncIo) -> StreamSpec {
        Stream::spec(name, Connection::from_io(io))
    }

    /// A stream reading `read` and writing `write` (either may be absent):
    /// pipe ends, a tty, the program's stdin and stdout. Each fd is closed
    /// exactly once, when the stream closes.
    pub fn from_fds(
        name: impl Into<String>,
        read: Option<OwnedFd>,
        write: Option<OwnedFd>,
    ) -> Result<StreamSpec> {
        Ok(StreamSpec::new(
            name,
            Source::from_fds(read, write)?,
            RawBytes::default(),
        ))
    }

    /// A supervised stream over a source that can be made again: `make`
    /// runs at the first start and at every restart and returns the
    /// stream's spec (its connection, `on_read`, limits; its name and any
    /// subscriptions are ignored: they are this spec's). A stream over a
    /// reopened device or FIFO, or a connection made again, restarts like
    /// any permanent notifier; an `Err` fails that start.
    ///
    /// ```
    /// use ioasync::{Loop, io::{ReadAction, Stream}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let s = lp
    ///     .add(Stream::respawning("pair", || {
    ///         let (ours, _theirs) = tokio::net::UnixStream::pair().map_err(|e| ioasync::Error::io("socketpair", e))?;
    ///         Ok(Stream::spec("pair", ours).on_read(|_io, buf, _eof| {
    ///             buf.clear();
    ///             ReadAction::Wait
    ///         }))
    ///     }))
    ///     .await?;
    /// assert_eq!(s.path(), "/pair");
    /// # Ok(()) }
    /// ```
    pub fn respawning(
        name: impl Into<String>,
        make: impl Fn() -> Result<StreamSpec> + Send + Sync + 'static,
    ) -> Spec<Stream> {
        Spec::with(name, move || match make() {
            Ok(spec) => Once::new(spec.args),
            Err(e) => Once::failed(e),
        })
        .restart(Restart::Permanent)
    }

    /// A stream over this program's stdin and stdout (IO::Async's
    /// `new_for_stdio`). The fds are duplicated, so closing the stream
    /// leaves fds 0 and 1 open; a terminal is made non-blocking, which its
    /// other users share.
    pub fn stdio(name: impl Into<String>) -> Result<StreamSpec> {
        let rd =
            nix::unistd::dup(std::io::stdin()).map_err(|e| Error::io_at("dup", 0, e.into()))?;
        let wr =
            nix::unistd::dup(std::io::stdout()).map_err(|e| Error::io_at("dup", 1, e.into()))?;
        Stream::from_fds(name, Some(rd), Some(wr))
    }

    /// A read-only stream over this program's stdin (`new_for_stdin`).
    pub fn stdin(name: impl Into<String>) -> Result<StreamSpec> {
        let fd =
            nix::unistd::dup(std::io::stdin()).map_err(|e| Error::io_at("dup", 0, e.into()))?;
        Stream::from_fds(name, Some(fd), None)
    }

    /// A write-only stream over this program's stdout (`new_for_stdout`).
    pub fn stdout(name: impl Into<String>) -> Result<StreamSpec> {
        let fd =
            nix::unistd::dup(std::io::stdout()).map_err(|e| Error::io_at("dup", 1, e.into()))?;
        Stream::from_fds(name, None, Some(fd))
    }
}

/// A write a stream has taken (from [`StreamRef::start_write`]):
/// resolves once its bytes are written, or with the error that kept them
/// from it (the stream closed, a write error, `DropOldest` dropped it).
#[must_use = "a Written only tells; drop it to not wait"]
#[derive(Debug)]
pub struct Written(oneshot::Receiver<Result<()>>);

impl Written {
    /// The write's outcome if it is known now: `Some(Ok(()))` once
    /// written, `Some(Err(..))` once refused, dropped or failed, `None`
    /// while it waits. Never waits.
    pub fn try_result(&mut self) -> Option<Result<()>> {
        match self.0.try_recv() {
            Ok(res) => Some(res),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => {
                Some(Err(Error::closed("write", "the stream stopped")))
            }
        }
    }
}

impl Future for Written {
    type Output = Result<()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<()>> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(Error::closed("write", "the stream stopped"))))
    }
}

/// Byte-stream operations on the handle of a [`Stream`] or a
/// [`Framed`](crate::Framed): raw writes and reads, closing, half-close,
/// producers, pushed readers.
pub trait StreamRef {
    /// Queues `data` and resolves once it is written. Waits first while
    /// the stream is above its write high watermark (backpressure).
    ///
    /// ```
    /// use ioasync::{Loop, io::{Stream, StreamRef}};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("out", ours)).await?;
    /// stream.write(&b"hello"[..]).await?; // written: the peer can read it
    /// let mut got = [0u8; 5];
    /// peer.read_exact(&mut got).await.unwrap();
    /// assert_eq!(&got, b"hello");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while it waits for room, nothing is queued; once the stream
    /// has taken the bytes, dropping it only loses the news that they were
    /// written: they still are.
    fn write(&self, data: impl Into<Bytes> + Send) -> impl Future<Output = Result<()>> + Send;

    /// Hands `data` to the stream (in order, behind every write before
    /// it) and resolves once it is in the stream's mailbox, without
    /// waiting for it to be written: the [`Written`] it returns resolves
    /// then, or fails when the write buffer's overflow policy refused or
    /// dropped it (kind `Full`, naming the buffer) or the stream closed.
    /// Under the default `Wait` policy it waits first while the mailbox is
    /// full (the stream takes no write above its high watermark): a
    /// writer that starts writes in a loop is held back there.
    /// `write` is `start_write` and then its `Written`.
    ///
    /// ```
    /// use ioasync::{Loop, io::{Stream, StreamRef}};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("out", ours)).await?;
    /// let first = stream.start_write(&b"one "[..]).await?; // taken, in order
    /// let second = stream.start_write(&b"two"[..]).await?;
    /// first.await?;
    /// second.await?;
    /// let mut got = [0u8; 7];
    /// peer.read_exact(&mut got).await.unwrap();
    /// assert_eq!(&got, b"one two");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while it waits for room in the mailbox, nothing is queued;
    /// once the stream has the bytes, they are written all the same.
    fn start_write(
        &self,
        data: impl Into<Bytes> + Send,
    ) -> impl Future<Output = Result<Written>> + Send;

    /// Turns reading on or off (IO::Async's `want_readready`): while off,
    /// nothing is read and the peer's writes back up in the kernel.
    ///
    /// ```
    /// use ioasync::{Loop, io::{Stream, StreamRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, _peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("paused", ours)).await?;
    /// stream.want_read(false).await?;
    /// stream.want_read(true).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Resolves once the stream has applied it.
    ///
    /// # Cancel safety
    ///
    /// Once the stream has the request it applies it.
    fn want_read(&self, on: bool) -> impl Future<Output = Result<()>> + Send;

    /// Closes once everything queued is written.
    ///
    /// ```
    /// use ioasync::{Loop, io::{Stream, StreamRef}};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("s", ours)).await?;
    /// stream.write(&b"bye"[..]).await?;
    /// stream.close_when_empty().await?;
    /// let mut got = Vec::new();
    /// peer.read_to_end(&mut got).await.unwrap(); // to the end: it closed
    /// assert_eq!(got, b"bye");
    /// stream.closed().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Once the stream has the request (the future resolved or was dropped
    /// after it was sent), it closes as asked.
    fn close_when_empty(&self) -> impl Future<Output = Result<()>> + Send;

    /// Closes now; queued writes fail. Taken at once, even while writers
    /// wait for room (it does not queue behind them).
    ///
    /// ```
    /// use ioasync::{Loop, io::{Stream, StreamRef}};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("s", ours)).await?;
    /// stream.close_now().await?;
    /// stream.closed().await;
    /// let mut got = Vec::new();
    /// peer.read_to_end(&mut got).await.unwrap();
    /// assert!(got.is_empty());
    /// assert!(stream.write(&b"late"[..]).await.is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before the stream answered, the close may or may not have
    /// happened; ask [`info`](StreamRef::info) or await [`closed`](StreamRef::closed).
    fn close_now(&self) -> impl Future<Output = Result<()>> + Send;

    /// Half-close: shuts the write side once the queue is empty
    /// (IO::Async's `close_write`, after the queue). Once the read side is
    /// closed too ([`close_read`](StreamRef::close_read)), the stream
    /// closes.
    ///
    /// ```
    /// use ioasync::{Loop, io::{Stream, StreamRef}};
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("s", ours)).await?;
    /// stream.write(&b"request"[..]).await?;
    /// stream.shutdown_write().await?;
    /// let mut got = Vec::new();
    /// peer.read_to_end(&mut got).await.unwrap(); // our side ended...
    /// assert_eq!(got, b"request");
    /// peer.write_all(b"reply").await.unwrap(); // ...theirs goes on
    /// drop(peer);
    /// let (reply, _eof) = stream.read(ioasync::io::ReadFor::Eof).await?;
    /// assert_eq!(&reply[..], b"reply");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`close_when_empty`](StreamRef::close_when_empty).
    fn shutdown_write(&self) -> impl Future<Output = Result<()>> + Send;

    /// Closes the read side now (IO::Async's `close_read`): nothing more is
    /// read (a socket is shut down for reading; a pipe's read end closed,
    /// so its writer gets `EPIPE`); writing goes on. Once the write side is
    /// shut down too, the stream closes (`on_closed`, then it leaves the
    /// tree), as IO::Async's Handle does once both halves are closed.
    ///
    /// ```
    /// use ioasync::{Loop, io::{Stream, StreamRef}};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("s", ours)).await?;
    /// stream.close_read().await?;
    /// stream.write(&b"still writing"[..]).await?;
    /// let mut got = [0u8; 13];
    /// peer.read_exact(&mut got).await.unwrap();
    /// assert_eq!(&got, b"still writing");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before the answer, the read side may or may not be closed.
    fn close_read(&self) -> impl Future<Output = Result<()>> + Send;

    /// Addresses and buffer sizes, answered at once (not behind queued
    /// writes).
    ///
    /// ```
    /// use ioasync::{Loop, io::{Stream, StreamRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, _peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("s", ours)).await?;
    /// stream.write(&b"abc"[..]).await?;
    /// let info = stream.info().await?;
    /// assert_eq!((info.queued, info.closed), (0, false));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only asks.
    fn info(&self) -> impl Future<Output = Result<StreamInfo>> + Send;

    /// Resolves once the stream has closed (its fds are closed).
    ///
    /// ```
    /// use ioasync::{Loop, io::{Stream, StreamRef}};
    /// use tokio::io::AsyncWriteExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("s", ours)).await?;
    /// drop(peer.shutdown().await); // the peer closes: so does the stream
    /// drop(peer);
    /// stream.closed().await;
    /// assert!(stream.info().await.is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    fn closed(&self) -> impl Future<Output = ()> + Send;

    /// Reads what `want` asks for; resolves with the bytes and whether EOF
    /// was reached (IO::Async's `read_atmost`, `read_exactly`,
    /// `read_until`, `read_until_eof`). Reads come before `on_read`, in
    /// the order asked.
    ///
    /// ```
    /// use ioasync::{Loop, io::{ReadFor, Stream, StreamRef}};
    /// use tokio::io::AsyncWriteExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("in", ours)).await?;
    /// peer.write_all(b"one\ntwo\n").await.unwrap();
    /// drop(peer);
    /// let (line, _eof) = stream.read(ReadFor::Until(b"\n".to_vec())).await?;
    /// assert_eq!(&line[..], b"one\n");
    /// let (rest, eof) = stream.read(ReadFor::Eof).await?;
    /// assert_eq!((&rest[..], eof), (&b"two\n"[..], true));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a read dropped before it completed consumes nothing;
    /// the bytes stay for the next read or `on_read`.
    fn read(&self, want: ReadFor) -> impl Future<Output = ReadResult> + Send;

    /// Writes what `chunks` yields, pulling the next chunk each time the
    /// write buffer has room (IO::Async's `write` with a generator or a
    /// Future: a future is `futures::stream::once(fut)`); writes made after
    /// it wait behind it. Resolves once the last chunk is written. A
    /// graceful stop pulls it to its end first; a close fails it.
    ///
    /// ```
    /// use ioasync::{Loop, io::{Stream, StreamRef}};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("s", ours)).await?;
    /// let chunks = futures_util::stream::iter(["a", "b", "c"].map(bytes::Bytes::from));
    /// stream.write_from(chunks).await?; // all three written
    /// let mut got = [0u8; 3];
    /// peer.read_exact(&mut got).await.unwrap();
    /// assert_eq!(&got, b"abc");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Once the stream has the producer, dropping the future does not stop
    /// it: it is pulled to its end.
    fn write_from(
        &self,
        chunks: impl futures_util::Stream<Item = Bytes> + Send + 'static,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Writes what `next` returns, calling it each time the write buffer
    /// has room, until it returns `None` (IO::Async's `write(CODE)`).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use ioasync::{Loop, io::{Stream, StreamRef}};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("count", ours)).await?;
    /// let mut n = 0;
    /// stream
    ///     .write_with(move || {
    ///         n += 1;
    ///         (n <= 3).then(|| Bytes::from(format!("{n} ")))
    ///     })
    ///     .await?;
    /// stream.close_when_empty().await?;
    /// let mut got = String::new();
    /// peer.read_to_string(&mut got).await.unwrap();
    /// assert_eq!(got, "1 2 3 ");
    /// # Ok(()) }
    /// ```
    fn write_with(
        &self,
        mut next: impl FnMut() -> Option<Bytes> + Send + 'static,
    ) -> impl Future<Output = Result<()>> + Send {
        self.write_from(futures_util::stream::poll_fn(move |_| {
            std::task::Poll::Ready(next())
        }))
    }

    /// Pushes a temporary reader in front of the stream's `on_read`
    /// (IO::Async's `push_on_read`); it is given what is buffered at once.
    /// Resolves once it is installed: input read before then went to the
    /// readers already there. See [`StreamIo::push_on_read`].
    ///
    /// ```
    /// use ioasync::{Loop, io::{Stream, StreamRef}};
    /// use tokio::io::AsyncWriteExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("s", ours)).await?;
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let mut tx = Some(tx);
    /// stream
    ///     .push_on_read(move |_io, buf, _eof| {
    ///         if buf.len() < 2 {
    ///             return ioasync::io::PushedRead::Wait;
    ///         }
    ///         let _ = tx.take().unwrap().send(buf.split_to(2));
    ///         ioasync::io::PushedRead::Done
    ///     })
    ///     .await?;
    /// peer.write_all(b"hi").await.unwrap();
    /// assert_eq!(&rx.await.unwrap()[..], b"hi");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before the answer, the reader may or may not be installed.
    fn push_on_read(
        &self,
        f: impl FnMut(&mut StreamIo<'_>, &mut BytesMut, bool) -> PushedRead + Send + 'static,
    ) -> impl Future<Output = Result<()>> + Send;
}

impl<P: crate::Protocol> StreamRef for NotifierRef<ByteStream<P>> {
    async fn write_from(
        &self,
        chunks: impl futures_util::Stream<Item = Bytes> + Send + 'static,
    ) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tell(WriteFrom(Box::pin(chunks), Some(tx))).await?;
        rx.await
            .unwrap_or_else(|_| Err(Error::closed("write", "the stream stopped")))
    }

    async fn push_on_read(
        &self,
        f: impl FnMut(&mut StreamIo<'_>, &mut BytesMut, bool) -> PushedRead + Send + 'static,
    ) -> Result<()> {
        // Resolves once installed: input read after that is its.
        self.ask(PushOnRead(Box::new(f))).await
    }

    async fn start_write(&self, data: impl Into<Bytes> + Send) -> Result<Written> {
        let (tx, rx) = oneshot::channel();
        self.tell(Write::<P::Out>::bytes(data.into(), Some(tx)))
            .await?;
        Ok(Written(rx))
    }

    async fn want_read(&self, on: bool) -> Result<()> {
        self.ask(WantRead(on)).await
    }

    async fn write(&self, data: impl Into<Bytes> + Send) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tell(Write::<P::Out>::bytes(data.into(), Some(tx)))
            .await?;
        rx.await
            .unwrap_or_else(|_| Err(Error::closed("write", "the stream stopped")))
    }

    async fn close_when_empty(&self) -> Result<()> {
        self.tell(CloseWhenEmpty).await
    }

    async fn close_now(&self) -> Result<()> {
        // Ahead of the mailbox: a peer that stopped reading cannot hold it.
        self.ask_now(CloseNow).await
    }

    async fn shutdown_write(&self) -> Result<()> {
        self.tell(ShutdownWrite).await
    }

    async fn close_read(&self) -> Result<()> {
        // Ahead of the mailbox: writers waiting for room do not hold it.
        self.ask_now(CloseRead).await?
    }

    async fn info(&self) -> Result<StreamInfo> {
        self.ask_now(Info).await
    }

    async fn closed(&self) {
        self.wait_stopped().await
    }

    async fn read(&self, want: ReadFor) -> ReadResult {
        // After the stream stopped: how it ended is the answer.
        let ended = |fallback: Error| StreamEnd::of(self).read_answer(fallback);
        let (tx, mut rx) = oneshot::channel();
        // Ahead of the mailbox: writes waiting for room do not hold reads.
        if let Err(e) = self.ask_now(Read(want, tx)).await {
            // It may have answered just before it stopped.
            return rx.try_recv().unwrap_or_else(|_| ended(e));
        }
        match rx.await {
            Ok(res) => res,
            Err(_) => ended(Error::closed("read", "the stream stopped")),
        }
    }
}
