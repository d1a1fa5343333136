//! The root's own work: the Loop's low-level timers (`watch_time`) and its
//! `later` queue, one deadline-ordered map run inside the root notifier's
//! turns (no task of its own, no timer system beside tokio's). Callbacks
//! fire in deadline order, ties in the order they were added (so `later`
//! callbacks run in the order given), and a cancelled timer never fires.

use std::{
    collections::{BTreeMap, HashMap},
    panic::AssertUnwindSafe,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::{sync::Notify, time::Instant};

type Callback = Box<dyn FnOnce() + Send>;

/// A timer's identity in its queue.
pub(crate) type TimerKey = u64;

/// The root's queue of timed callbacks (shared with the Loop's handles).
#[derive(Default)]
pub(crate) struct Timers {
    next: AtomicU64,
    map: Mutex<BTreeMap<(Instant, u64), Callback>>,
    ids: Mutex<HashMap<u64, Instant>>,
    changed: Notify,
}

impl Timers {
    pub(crate) fn insert(&self, at: Instant, f: Callback) -> TimerKey {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.map).insert((at, id), f);
        lock(&self.ids).insert(id, at);
        self.changed.notify_one();
        id
    }

    pub(crate) fn remove(&self, id: TimerKey) -> bool {
        let Some(at) = lock(&self.ids).remove(&id) else {
            return false;
        };
        let removed = lock(&self.map).remove(&(at, id)).is_some();
        self.changed.notify_one();
        removed
    }

    pub(crate) fn is_pending(&self, id: TimerKey) -> bool {
        lock(&self.ids).contains_key(&id)
    }

    fn take_due(&self, now: Instant) -> Vec<Callback> {
        let mut map = lock(&self.map);
        let mut due = Vec::new();
        while let Some(entry) = map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (_, id) = *entry.key();
            due.push(entry.remove());
            lock(&self.ids).remove(&id);
        }
        due
    }

    fn first(&self) -> Option<Instant> {
        lock(&self.map).keys().next().map(|k| k.0)
    }

    /// Waits until a callback is due. Cancel safe: a change notified while
    /// nobody waits is kept as a permit.
    pub(crate) async fn due(&self) {
        loop {
            match self.first() {
                None => self.changed.notified().await,
                Some(at) if at <= Instant::now() => return,
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => return,
                        _ = self.changed.notified() => {}
                    }
                }
            }
        }
    }

    /// Runs every due callback; a panicking one is contained and logged.
    pub(crate) fn run_due(&self) {
        for f in self.take_due(Instant::now()) {
            if std::panic::catch_unwind(AssertUnwindSafe(f)).is_err() {
                tracing::error!("a loop callback (later or watch_time) panicked");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
