//! [`Channel`](self) halves: typed, bounded mailboxes. A local channel is
//! [`channel`]; `ioasync::channel::bridge` carries one across a process
//! boundary (a typed channel over the worker layer's socketpair
//! [`Transport`](crate::Transport)), built on [`Sender::from_mpsc`] and
//! [`Receiver::from_results`].
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

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::sync::mpsc;

use crate::{
    error::Result,
    queue::{Offer, Overflow, Queue},
};

/// The sending end of a channel. Cheap to clone.
pub struct Sender<T> {
    tx: Tx<T>,
}

enum Tx<T> {
    Mpsc(mpsc::Sender<T>),
    Queue(Arc<Shared<T>>),
}

/// A policy channel's queue and its count of senders.
struct Shared<T> {
    queue: Queue<T>,
    senders: AtomicUsize,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        let tx = match &self.tx {
            Tx::Mpsc(tx) => Tx::Mpsc(tx.clone()),
            Tx::Queue(s) => {
                s.senders.fetch_add(1, Ordering::Relaxed);
                Tx::Queue(s.clone())
            }
        };
        Sender { tx }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Tx::Queue(s) = &self.tx
            && s.senders.fetch_sub(1, Ordering::AcqRel) == 1
        {
            s.queue.close_writer();
        }
    }
}

/// Why a channel refused a message (handed back).
#[derive(Debug)]
pub enum SendError<T> {
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

impl<T> SendError<T> {
    /// The message handed back.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Full { value, .. } | SendError::Closed(value) => value,
        }
    }

    /// Refused because the channel was full.
    pub fn is_full(&self) -> bool {
        matches!(self, SendError::Full { .. })
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full { capacity, .. } => {
                write!(f, "send: the channel is full ({capacity} messages)")
            }
            SendError::Closed(_) => f.write_str("send: the channel is closed"),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for SendError<T> {}

fn refused<T>(offer: Offer<T>, capacity: usize) -> std::result::Result<(), SendError<T>> {
    match offer {
        Offer::Queued | Offer::Dropped | Offer::Evicted(_) => Ok(()),
        Offer::Full(value) => Err(SendError::Full { value, capacity }),
        Offer::Closed(value) => Err(SendError::Closed(value)),
    }
}

impl<T> Sender<T> {
    /// A sender feeding `tx` (for transports).
    pub fn from_mpsc(tx: mpsc::Sender<T>) -> Self {
        Sender { tx: Tx::Mpsc(tx) }
    }

    /// Sends per the channel's overflow policy: waits while it is full
    /// (`Wait`, the default: backpressure), drops the oldest queued or
    /// this message (`DropOldest`, `DropNewest`), or fails with
    /// [`SendError::Full`] naming the bound (`Fail`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropped while it waits for room, the value is not sent
    /// (it is dropped with the future); once it returns `Ok`, it is queued.
    pub async fn send(&self, value: T) -> std::result::Result<(), SendError<T>> {
        match &self.tx {
            Tx::Mpsc(tx) => tx.send(value).await.map_err(|e| SendError::Closed(e.0)),
            Tx::Queue(s) => refused(s.queue.offer(value).await, s.queue.capacity()),
        }
    }

    /// Sends now: a full channel fails at once (whatever its policy but a
    /// drop, which drops), naming its bound; a closed one hands the value
    /// back.
    pub fn try_send(&self, value: T) -> std::result::Result<(), SendError<T>> {
        match &self.tx {
            Tx::Mpsc(tx) => tx.try_send(value).map_err(|e| match e {
                mpsc::error::TrySendError::Full(value) => SendError::Full {
                    value,
                    capacity: tx.max_capacity(),
                },
                mpsc::error::TrySendError::Closed(v) => SendError::Closed(v),
            }),
            Tx::Queue(s) => {
                let policy = match s.queue.overflow() {
                    Overflow::Wait => Overflow::Fail,
                    other => other,
                };
                let offer = s
                    .queue
                    .try_offer(value, policy)
                    .unwrap_or_else(|value| Offer::Full(value));
                refused(offer, s.queue.capacity())
            }
        }
    }

    /// The receiving end is gone.
    pub fn is_closed(&self) -> bool {
        match &self.tx {
            Tx::Mpsc(tx) => tx.is_closed(),
            Tx::Queue(s) => s.queue.is_reader_gone(),
        }
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
    Queue(Arc<Shared<T>>),
    Transport(mpsc::Receiver<Result<T>>),
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if let Rx::Queue(s) = &self.rx {
            s.queue.close_reader();
        }
    }
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
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken only when it is returned; dropped
    /// before, nothing is lost.
    pub async fn recv(&mut self) -> Option<Result<T>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Result<T>>> {
        match &mut self.rx {
            Rx::Local(rx) => rx.poll_recv(cx).map(|v| v.map(Ok)),
            Rx::Queue(s) => s.queue.poll_pop(cx).map(|v| v.map(Ok)),
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

/// A local channel of `capacity` messages whose senders apply `overflow`
/// when it is full (see [`Overflow`] for every queue's policies).
///
/// ```
/// use ioasync::{notifier::Overflow, channel};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (tx, mut rx) = channel::channel_with::<u32>(2, Overflow::DropOldest);
/// for n in 0..5 {
///     tx.send(n).await.unwrap(); // never waits: the oldest goes
/// }
/// drop(tx);
/// assert_eq!(rx.recv().await.unwrap().unwrap(), 3);
/// assert_eq!(rx.recv().await.unwrap().unwrap(), 4);
/// assert!(rx.recv().await.is_none());
/// # }
/// ```
pub fn channel_with<T: Send + 'static>(
    capacity: usize,
    overflow: Overflow,
) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        queue: Queue::new(capacity, overflow),
        senders: AtomicUsize::new(1),
    });
    (
        Sender {
            tx: Tx::Queue(shared.clone()),
        },
        Receiver {
            rx: Rx::Queue(shared),
        },
    )
}

/// A local channel of `capacity` messages ([`Overflow::Wait`]: `send`
/// waits for room, `try_send` fails at once).
pub fn channel<T: Send + 'static>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::channel::<T>(capacity.max(1));
    (Sender { tx: Tx::Mpsc(tx) }, Receiver { rx: Rx::Local(rx) })
}
