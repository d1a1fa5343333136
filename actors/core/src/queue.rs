//! A bounded queue with an [`Overflow`] policy: what a producer meets when
//! it is full. Behind subscriber streams and policy channels.

use std::{
    collections::VecDeque,
    pin::pin,
    sync::Mutex,
    task::{Context, Poll},
};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

/// What a bounded queue does when a producer meets it full: the one
/// overflow policy of every queue a producer writes into.
///
/// | queue | bound | default | how to choose |
/// |---|---|---|---|
/// | a subscriber stream | its capacity | `Wait` | all four: [`Subscription::stream_with`](crate::Subscription::stream_with) |
/// | a notifier's mailbox | `Spec::mailbox` (64) | `Wait` | all four: `tell_with` (`tell` waits, `try_tell` fails with a `Full` error naming the mailbox; `DropOldest` overflows into a lossy lane as long as the mailbox that drops its oldest) |
/// | a Function's call queue | `FunctionSpec::queue` (1,024) | `Wait` | all four: `FunctionSpec::overflow` (the drops fail the dropped call); `try_call` fails at once (a `Full` error naming the bound) |
/// | a channel | its capacity | `Wait` | all four: `channel::channel_with`; `try_send` fails at once (`SendError::Full` with the bound) |
/// | a stream's write buffer | its write high watermark | `Wait` | all four: `StreamSpec::write_overflow` (`Wait`: writers wait, watermark events tell; the drops and `Fail` fail the dropped or refused write's future; `DropOldest` drops whole writes not yet begun, never part of one) |
///
/// Control and introspection never wait behind data: see
/// [`NotifierRef::ask_now`](crate::NotifierRef::ask_now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// The producer waits for room: backpressure, nothing lost.
    #[default]
    Wait,
    /// The oldest queued item is dropped to make room.
    DropOldest,
    /// The new item is dropped.
    DropNewest,
    /// The producer is refused: for a subscriber stream, the subscriber is
    /// cut off (its stream ends after what it holds).
    Fail,
}

/// What became of an offered item.
pub(crate) enum Offer<E> {
    /// Queued (perhaps after waiting for room).
    Queued,
    /// Dropped: the queue was full and drops the newest.
    Dropped,
    /// Queued after the oldest item was dropped (handed back).
    Evicted(E),
    /// Refused: the queue was full and fails (handed back).
    Full(E),
    /// Refused: the reader is gone (handed back).
    Closed(E),
}

/// A bounded, single-reader queue.
pub(crate) struct Queue<E> {
    state: Mutex<State<E>>,
    capacity: usize,
    overflow: Overflow,
    reader: AtomicWaker,
    room: Notify,
}

struct State<E> {
    items: VecDeque<E>,
    reader_gone: bool,
    writer_gone: bool,
}

impl<E> Queue<E> {
    pub(crate) fn new(capacity: usize, overflow: Overflow) -> Self {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                reader_gone: false,
                writer_gone: false,
            }),
            capacity: capacity.max(1),
            overflow,
            reader: AtomicWaker::new(),
            room: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<E>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn overflow(&self) -> Overflow {
        self.overflow
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Offers `item` per the overflow policy, waiting for room under
    /// `Wait`.
    pub(crate) async fn offer(&self, item: E) -> Offer<E> {
        let mut item = item;
        loop {
            let mut room = pin!(self.room.notified());
            room.as_mut().enable();
            match self.try_offer(item, self.overflow) {
                Err(back) => item = back,
                Ok(done) => return done,
            }
            room.await;
        }
    }

    /// Offers `item` now: under `policy`, with `Wait` handing the item back
    /// (`Err`) when the queue is full.
    pub(crate) fn try_offer(&self, item: E, policy: Overflow) -> Result<Offer<E>, E> {
        let mut s = self.lock();
        if s.reader_gone {
            return Ok(Offer::Closed(item));
        }
        let mut evicted = None;
        if s.items.len() >= self.capacity {
            match policy {
                Overflow::Wait => return Err(item),
                Overflow::DropNewest => return Ok(Offer::Dropped),
                Overflow::Fail => return Ok(Offer::Full(item)),
                Overflow::DropOldest => evicted = s.items.pop_front(),
            }
        }
        s.items.push_back(item);
        drop(s);
        self.reader.wake();
        Ok(match evicted {
            Some(old) => Offer::Evicted(old),
            None => Offer::Queued,
        })
    }

    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<E>> {
        self.reader.register(cx.waker());
        let mut s = self.lock();
        if let Some(item) = s.items.pop_front() {
            drop(s);
            self.room.notify_one();
            return Poll::Ready(Some(item));
        }
        if s.writer_gone {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// No more items will come: the reader ends after what is queued.
    pub(crate) fn close_writer(&self) {
        self.lock().writer_gone = true;
        self.reader.wake();
    }

    /// The reader is gone: offers are refused, waiting producers released.
    pub(crate) fn close_reader(&self) {
        let mut s = self.lock();
        s.reader_gone = true;
        s.items.clear();
        drop(s);
        self.room.notify_waiters();
    }

    pub(crate) fn is_reader_gone(&self) -> bool {
        self.lock().reader_gone
    }
}
