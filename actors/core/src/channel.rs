//! [`Channel`](self) halves: typed, bounded mailboxes. A local channel is
//! [`channel`]; `ioasync::channel::bridge` carries one across a process
//! boundary (the worker layer's transport), built on
//! [`Sender::from_mpsc`] and [`Receiver::from_results`].
//!
//! ```
//! use ioasync::channel;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ioasync::Result<()> {
//! let (tx, mut rx) = channel::channel::<u32>(4);
//! tx.send(7).await.unwrap();
//! drop(tx);
//! assert_eq!(rx.recv().await.unwrap()?, 7);
//! assert!(rx.recv().await.is_none());
//! # Ok(()) }
//! ```

use std::fmt;

use tokio::sync::mpsc;

use crate::error::Result;

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

/// Why [`Sender::try_send`] refused a message (handed back).
#[derive(Debug)]
pub enum TrySendError<T> {
    /// The channel holds its bound of messages (the `Fail` side of its
    /// overflow policy; [`Sender::send`] waits instead).
    Full {
        /// The message.
        value: T,
        /// The channel's bound.
        capacity: usize,
    },
    /// The receiving end is gone.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The message handed back.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full { value, .. } | TrySendError::Closed(value) => value,
        }
    }

    /// Refused because the channel was full.
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full { .. })
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full { capacity, .. } => {
                write!(f, "send: the channel is full ({capacity} messages)")
            }
            TrySendError::Closed(_) => f.write_str("send: the channel is closed"),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for TrySendError<T> {}

impl<T> Sender<T> {
    /// A sender feeding `tx` (for transports).
    pub fn from_mpsc(tx: mpsc::Sender<T>) -> Self {
        Sender { tx }
    }

    /// Sends, waiting while the channel is full (backpressure: the `Wait`
    /// side of its overflow policy).
    pub async fn send(&self, value: T) -> std::result::Result<(), SendError<T>> {
        self.tx.send(value).await.map_err(|e| SendError(e.0))
    }

    /// Sends now, or hands the value back when the channel is full (its
    /// bound named) or closed.
    pub fn try_send(&self, value: T) -> std::result::Result<(), TrySendError<T>> {
        self.tx.try_send(value).map_err(|e| match e {
            mpsc::error::TrySendError::Full(value) => TrySendError::Full {
                value,
                capacity: self.tx.max_capacity(),
            },
            mpsc::error::TrySendError::Closed(v) => TrySendError::Closed(v),
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
    rx: Rx<T>,
}

enum Rx<T> {
    Local(mpsc::Receiver<T>),
    Transport(mpsc::Receiver<Result<T>>),
}

impl<T> Receiver<T> {
    /// A receiver of what a transport delivers: messages, or one final
    /// error.
    pub fn from_results(rx: mpsc::Receiver<Result<T>>) -> Self {
        Receiver {
            rx: Rx::Transport(rx),
        }
    }

    /// The next message.
    pub async fn recv(&mut self) -> Option<Result<T>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Result<T>>> {
        match &mut self.rx {
            Rx::Local(rx) => rx.poll_recv(cx).map(|v| v.map(Ok)),
            Rx::Transport(rx) => rx.poll_recv(cx),
        }
    }
}

impl<T> tokio_stream::Stream for Receiver<T> {
    type Item = Result<T>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<T>>> {
        self.poll_recv(cx)
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
    (Sender { tx }, Receiver { rx: Rx::Local(rx) })
}
