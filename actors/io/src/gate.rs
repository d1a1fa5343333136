//! The write-buffer state a framed stream shares with its handles, so
//! `try_send` can refuse at once and a sink can wait for room.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Shared by a framed stream and its handles: whether its write buffer is
/// over the high watermark (`try_send` refuses at once while it is), and
/// a wake-up for senders waiting for room.
#[derive(Debug, Default)]
pub(crate) struct SendGate {
    full: AtomicBool,
    closed: AtomicBool,
    pub(crate) high: AtomicUsize,
    room: tokio::sync::Notify,
}

impl SendGate {
    pub(crate) fn open(&self, high: usize) {
        self.high.store(high, Ordering::Relaxed);
        self.full.store(false, Ordering::Release);
        self.closed.store(false, Ordering::Release);
    }

    pub(crate) fn publish(&self, full: bool) {
        if self.full.swap(full, Ordering::AcqRel) && !full {
            self.room.notify_waiters();
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_waiters();
    }

    pub(crate) fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves once the write buffer is below its high watermark (or the
    /// stream closed).
    pub(crate) async fn room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_full() || self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}
