//! The Loop's low-level timers (`watch_time` / `unwatch_time`): one task
//! holding a deadline-ordered map, so callbacks fire in deadline order (ties
//! in the order they were added) and an unwatched timer never fires.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::{sync::Notify, time::Instant};

type Callback = Box<dyn FnOnce() + Send>;

#[derive(Default)]
pub(crate) struct TimerQueue {
    next: AtomicU64,
    map: Mutex<BTreeMap<(Instant, u64), Callback>>,
    ids: Mutex<std::collections::HashMap<u64, Instant>>,
    changed: Notify,
}

impl TimerQueue {
    pub(crate) fn insert(&self, at: Instant, f: Callback) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.map).insert((at, id), f);
        lock(&self.ids).insert(id, at);
        self.changed.notify_one();
        id
    }

    pub(crate) fn remove(&self, id: u64) -> bool {
        let Some(at) = lock(&self.ids).remove(&id) else {
            return false;
        };
        let removed = lock(&self.map).remove(&(at, id)).is_some();
        self.changed.notify_one();
        removed
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

    /// Runs due callbacks forever; spawned once per loop.
    pub(crate) async fn run(self: Arc<Self>) {
        loop {
            match self.first() {
                None => self.changed.notified().await,
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {
                            for f in self.take_due(Instant::now()) {
                                f();
                            }
                        }
                        _ = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
