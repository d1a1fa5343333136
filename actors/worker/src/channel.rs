//! Channels: typed, bounded mailboxes, local or bridged to another
//! process over a socket as length-prefixed MessagePack frames.
//!
//! ```
//! use ioasync::channel;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ioasync::Result<()> {
//! // Two ends of a socketpair, as a parent and a worker would hold them.
//! let (a, b) = tokio::net::UnixStream::pair().unwrap();
//! let (to_b, _from_b) = channel::bridge::<String, Vec<u32>>(a, 16, channel::DEFAULT_MAX_FRAME);
//! let (_to_a, mut from_a) = channel::bridge::<Vec<u32>, String>(b, 16, channel::DEFAULT_MAX_FRAME);
//! to_b.send(vec![1, 2, 3]).await.unwrap();
//! assert_eq!(from_a.recv().await.unwrap()?, vec![1, 2, 3]);
//! # Ok(()) }
//! ```

use std::fmt;

use futures_util::{SinkExt, StreamExt};
use ioasync_core::{Error, ErrorKind, Result};
use serde::{Serialize, de::DeserializeOwned};
use tokio::{net::UnixStream, sync::mpsc};
use tokio_util::codec::{FramedRead, FramedWrite};

pub use crate::frame::DEFAULT_MAX_FRAME;
use crate::frame::{codec, decode, encode, frame_error};

/// The sending end of a channel. Cheap to clone.
pub struct Sender<T> {
    tx: mpsc::Sender<T>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            tx: self.tx.clone(),
        }
    }
}

/// A message the channel could not take, handed back.
#[derive(Debug)]
pub struct SendError<T>(pub T);

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("send: the channel is closed")
    }
}

impl<T: fmt::Debug> std::error::Error for SendError<T> {}

impl<T> Sender<T> {
    pub(crate) fn from_mpsc(tx: mpsc::Sender<T>) -> Self {
        Sender { tx }
    }

    /// Sends, waiting while the channel is full (backpressure).
    pub async fn send(&self, value: T) -> std::result::Result<(), SendError<T>> {
        self.tx.send(value).await.map_err(|e| SendError(e.0))
    }

    /// Sends now, or hands the value back when the channel is full or
    /// closed.
    pub fn try_send(&self, value: T) -> std::result::Result<(), SendError<T>> {
        self.tx.try_send(value).map_err(|e| match e {
            mpsc::error::TrySendError::Full(v) | mpsc::error::TrySendError::Closed(v) => {
                SendError(v)
            }
        })
    }

    /// The receiving end is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("channel::Sender").finish()
    }
}

/// The receiving end: messages in order, then `None` when the channel
/// ended (every sender dropped), or one `Some(Err(..))` when it closed
/// with an error: a malformed frame, or the peer's death (`PeerDied`: the
/// connection closed without the end marker a bridge sends when its
/// senders are all dropped).
pub struct Receiver<T> {
    rx: mpsc::Receiver<Result<T>>,
}

impl<T> Receiver<T> {
    pub(crate) fn from_mpsc(rx: mpsc::Receiver<Result<T>>) -> Self {
        Receiver { rx }
    }

    /// The next message.
    pub async fn recv(&mut self) -> Option<Result<T>> {
        self.rx.recv().await
    }
}

impl<T> tokio_stream::Stream for Receiver<T> {
    type Item = Result<T>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<T>>> {
        self.rx.poll_recv(cx)
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("channel::Receiver").finish()
    }
}

/// A local channel of `capacity` messages.
pub fn channel<T: Send + 'static>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::channel::<T>(capacity.max(1));
    let (out_tx, out_rx) = mpsc::channel::<Result<T>>(1);
    tokio::spawn(async move {
        let mut rx = rx;
        while let Some(v) = rx.recv().await {
            if out_tx.send(Ok(v)).await.is_err() {
                return;
            }
        }
    });
    (Sender { tx }, Receiver { rx: out_rx })
}

/// A bridged channel pair over `stream`: what is sent on the returned
/// sender arrives at the peer's receiver, and the other way round. Frames
/// above `max_frame` bytes end the channel with an error; so do malformed
/// frames and the peer's death. Two tasks do the IO.
pub fn bridge<In, Out>(
    stream: UnixStream,
    capacity: usize,
    max_frame: usize,
) -> (Sender<Out>, Receiver<In>)
where
    In: DeserializeOwned + Send + 'static,
    Out: Serialize + Send + 'static,
{
    let (rd, wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(capacity.max(1));
    let (in_tx, in_rx) = mpsc::channel::<Result<In>>(capacity.max(1));
    // Weak: once the reader is done, the receiver must see the end even
    // while our sender lives.
    let err_tx = in_tx.downgrade();
    tokio::spawn(async move {
        let mut sink = FramedWrite::new(wr, codec(max_frame));
        while let Some(v) = out_rx.recv().await {
            let res = match encode(&v) {
                Ok(b) => sink.send(b).await.map_err(|e| Error::io("write", e)),
                Err(e) => Err(e),
            };
            if let Err(e) = res {
                if let Some(tx) = err_tx.upgrade() {
                    let _ = tx.send(Err(e)).await;
                }
                return;
            }
        }
        // Every sender is gone: say so with an empty frame (no encoded
        // value is empty), so the peer can tell an end from a death.
        let _ = sink.send(bytes::Bytes::new()).await;
    });
    tokio::spawn(async move {
        let mut frames = FramedRead::new(rd, codec(max_frame));
        loop {
            let item = match frames.next().await {
                // The peer ended the channel: the receiver sees None.
                Some(Ok(f)) if f.is_empty() => return,
                None => Err(Error::new(
                    "recv",
                    ErrorKind::PeerDied,
                    "the peer went away without ending the channel (it died or was killed)",
                )),
                Some(Err(e)) => Err(frame_error(e)),
                Some(Ok(f)) => decode::<In>(&f),
            };
            let fatal = item.is_err();
            if in_tx.send(item).await.is_err() || fatal {
                return;
            }
        }
    });
    (Sender { tx: out_tx }, Receiver { rx: in_rx })
}
