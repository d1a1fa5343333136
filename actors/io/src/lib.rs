//! ioasync-io: the network notifiers of ioasync. Users depend on the
//! `ioasync` facade, which re-exports everything here.
//!
//! - [`Stream`]: a buffered byte stream (TCP, Unix, pipes) with IO::Async's
//!   `on_read` contract, flush futures, watermarks and half-close;
//! - [`Framed`]: the same with a `tokio_util` codec: typed frames in, typed
//!   frames out (IO::Async's Protocol::Stream / LineStream);
//! - [`Socket`]: datagrams (UDP, Unix);
//! - [`File`] and [`FileStream`]: a path's `stat` changes, and a file
//!   followed as it grows (`tail -F`);
//! - [`Handle`]: readiness of one fd or a read fd and a write fd, for
//!   programs that do their own reads and writes;
//! - [`Listener`]: accepts and starts a supervised child per connection;
//! - [`Session`]: a supervised connection driving any future over it
//!   (hyper's `serve_connection`), with a graceful-stop signal;
//! - [`Connect`], [`Listen`], [`resolve()`]: connecting (Happy Eyeballs),
//!   listening (socket2 options) and name resolution off the reactor;
//! - TLS (feature `tls`): [`Listen::tls`] and [`Connect::tls`] over rustls;
//! - any `AsyncRead + AsyncWrite` ([`AsyncIo`]) as a stream's source:
//!   [`Stream::spec_io`], [`Framed::spec_io`], [`Connection::from_io`].
//!
//! # Implementation
//!
//! Each notifier owns its socket inside its own actor and waits on tokio's
//! readiness (`readable()` / `writable()`), then reads and writes with
//! `try_*` calls: no second task per connection, no copy between tasks.
//! `getaddrinfo` and `getnameinfo` run on tokio's blocking pool.

#![doc(test(attr(deny(warnings))))]

mod addr;
mod byte_stream;
mod connect;
mod connection;
mod connector;
mod duplex;
mod file;
mod file_stream;
mod file_watch;
mod framed;
mod framed_socket;
mod gate;
mod handle;
mod lazy;
mod line_codec;
mod listen;
mod listener;
mod resolve;
mod session;
mod socket;
mod stream;
mod sys;
#[cfg(feature = "tls")]
mod tls;

pub use addr::{Address, SockAddr};
pub use byte_stream::{
    ByteStream, ByteStreamArgs, ByteStreamSpec, Protocol, PushedRead, ReadFor, ReadResult,
    StreamEvent, StreamInfo, StreamIo,
};
pub use connect::{Connect, DEFAULT_ATTEMPT_DELAY, DatagramConnection};
pub use connection::{AsyncIo, Connection, IoConnection};
pub use connector::{
    Connector, ConnectorArgs, ConnectorEvent, ConnectorRef, ConnectorSpec, WhileDown,
};
pub use duplex::Limits;
pub use file::{File, FileArgs, FileEvent, FileStat};
pub use file_stream::Initial;
pub use file_stream::{
    FileStream, FileStreamArgs, FileStreamEvent, FileStreamSpec, OnTruncate, StartAt,
};
pub use file_watch::WatchMode;
pub use framed::{
    FrameCodec, Framed, FramedArgs, FramedEvent, FramedIo, FramedRef, FramedSink, FramedSpec,
    Frames, TrySendError,
};
pub use framed_socket::{DatagramEvent, FramedSocket, FramedSocketArgs, FramedSocketRef};
pub use handle::{
    Handle, HandleArgs, HandleEvent, HandleIo, HandleRef, HandleSpec, HangupFn, ReadyFn,
};
pub use listen::{Listen, ListenSocket};
pub use listener::{
    ACCEPT_BACKOFF, Listener, ListenerArgs, ListenerEvent, ListenerRef, MAX_ACCEPT_BACKOFF,
    MAX_HANDSHAKES, OnStream,
};
pub use resolve::{Family, SockType, name_of, resolve};
pub use session::{Session, SessionArgs, SessionInfo, SessionRef, StopSignal};
pub use socket::{Datagram, Dest, Socket, SocketArgs, SocketEvent, SocketRef};
pub use stream::{RawBytes, ReadAction, Stream, StreamArgs, StreamRef, StreamSpec, Written};
pub use sys::open_fd_count;
#[cfg(feature = "tls")]
pub use tls::{DEFAULT_HANDSHAKE_TIMEOUT, TlsClient, TlsServer};

/// Codecs for [`Framed`]: tokio-util's, re-exported, and [`LineCodec`]
/// (lines with IO::Async's LineStream endings, `\r\n` on request).
///
/// [`LineCodec`]: codec::LineCodec
pub mod codec {
    pub use crate::line_codec::LineCodec;
    pub use tokio_util::codec::{
        AnyDelimiterCodec, BytesCodec, Decoder, Encoder, LengthDelimitedCodec, LinesCodec,
        LinesCodecError,
    };
}
