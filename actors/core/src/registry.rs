//! What the nodes of one tree share, as plain parts: the path hasher of
//! the registry, the supervision event bus, and the slot for a failure
//! that escalated past the root. Locks here are never held across an
//! `.await`.

use std::sync::{
    Mutex,
    atomic::{AtomicBool, Ordering},
};

use tokio::sync::{Notify, broadcast};

use crate::exit::{ExitReason, SupervisionEvent, SupervisionEventKind};

/// FNV-1a for the path registry: paths are short, trusted (they come from
/// the program's own specs) and hashed on every add and stop.
#[derive(Clone, Default)]
pub(crate) struct PathHash;

impl std::hash::BuildHasher for PathHash {
    type Hasher = Fnv;
    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

pub(crate) struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        // Mix the high bits down: DashMap picks its shard from them.
        self.0 ^ (self.0 >> 29) ^ (self.0 << 35)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The supervision event bus: a bounded broadcast that costs one atomic
/// load per publish until somebody subscribes.
pub(crate) struct Bus {
    observed: AtomicBool,
    events: broadcast::Sender<SupervisionEvent>,
}

impl Bus {
    pub(crate) fn new() -> Bus {
        Bus {
            observed: AtomicBool::new(false),
            events: broadcast::channel(1024).0,
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<SupervisionEvent> {
        self.observed.store(true, Ordering::Release);
        self.events.subscribe()
    }

    pub(crate) fn publish(&self, path: &str, kind: &'static str, what: SupervisionEventKind) {
        if self.observed.load(Ordering::Acquire) && self.events.receiver_count() > 0 {
            let _ = self.events.send(SupervisionEvent {
                path: path.to_owned(),
                kind,
                what,
            });
        }
    }
}

/// A failure that escalated past the root, recorded once.
pub(crate) struct Fatal {
    reason: Mutex<Option<ExitReason>>,
    notify: Notify,
}

impl Fatal {
    pub(crate) fn new() -> Fatal {
        Fatal {
            reason: Mutex::new(None),
            notify: Notify::new(),
        }
    }

    pub(crate) fn set(&self, reason: ExitReason) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
            self.notify.notify_waiters();
            self.notify.notify_one();
        }
    }

    pub(crate) async fn wait(&self) -> ExitReason {
        loop {
            let notified = self.notify.notified();
            if let Some(r) = self
                .reason
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                return r;
            }
            notified.await;
        }
    }
}
