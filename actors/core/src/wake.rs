//! The mailbox's waker: one registration that stands from one wait to the
//! next.
//!
//! A notifier's actor waits on three things beside its source: control,
//! the lossy lane and kameo's mailbox. Control and the lossy lane wake the
//! task registered on the node (`Node::register_ctl`). The mailbox is a
//! tokio channel that forgets its waker once it wakes it, so registering
//! the task's waker there would mean registering again at every wait (the
//! channel cannot say whether its registration still stands). Instead the
//! mailbox is given this waker, which marks the node's mailbox woken and
//! wakes the task registered on the node: the runtime polls the mailbox
//! again only after that mark (or after it took a message), and between
//! wake-ups the one registration per wait is the task's, on the node.
//!
//! It holds the node weakly: the channel keeps its last waker for as long
//! as any sender lives, and the node holds a sender (its actor's ref), so
//! a strong reference would keep both alive for ever.

use std::mem::ManuallyDrop;
use std::sync::{Arc, Weak};
use std::task::{RawWaker, RawWakerVTable, Waker};

use crate::node::Node;

/// A waker that calls [`Node::wake_mailbox`] on `node` while it lives.
pub(crate) fn mailbox_waker(node: &Arc<Node>) -> Waker {
    let data = Weak::into_raw(Arc::downgrade(node)).cast::<()>();
    // SAFETY: `data` comes from `Weak::into_raw` and this waker owns that
    // weak reference; every function of `VTABLE` takes it as one (see
    // theirs), so RawWaker's contract holds: clones own a reference of
    // their own, `wake` and `drop` give theirs back exactly once, and
    // `Weak<Node>` is `Send + Sync` as a waker must be.
    unsafe { Waker::new(data, &VTABLE) }
}

// The waker is sent and shared across threads with the node it refers to.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Node>();
};

/// One static table: `Waker::will_wake` compares its address, so a
/// registration of an equal waker is a comparison, not a clone.
static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

/// The weak reference a waker's data pointer owns, not to be dropped.
///
/// # Safety
///
/// `data` must come from `Weak::<Node>::into_raw` and still be owned by a
/// live waker.
unsafe fn borrowed(data: *const ()) -> ManuallyDrop<Weak<Node>> {
    // SAFETY: as the caller promises; `ManuallyDrop` leaves the count as
    // it was.
    ManuallyDrop::new(unsafe { Weak::from_raw(data.cast::<Node>()) })
}

unsafe fn clone(data: *const ()) -> RawWaker {
    // SAFETY: called by `Waker::clone` on a live waker of ours.
    let weak = unsafe { borrowed(data) };
    let copy = Weak::into_raw(Weak::clone(&weak)).cast::<()>();
    RawWaker::new(copy, &VTABLE)
}

unsafe fn wake(data: *const ()) {
    // SAFETY: called by `Waker::wake`, which gives up the waker's own
    // reference: it is taken back here and dropped at the end.
    let weak = unsafe { Weak::from_raw(data.cast::<Node>()) };
    if let Some(node) = weak.upgrade() {
        node.wake_mailbox();
    }
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: called by `Waker::wake_by_ref` on a live waker of ours.
    let weak = unsafe { borrowed(data) };
    if let Some(node) = weak.upgrade() {
        node.wake_mailbox();
    }
}

unsafe fn drop_waker(data: *const ()) {
    // SAFETY: called by `Waker::drop`, once: the reference is given back.
    drop(unsafe { Weak::from_raw(data.cast::<Node>()) });
}
