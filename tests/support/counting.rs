//! A counting global allocator for the tests that measure the heap, each
//! alone in its own binary (it counts the whole process): the bytes live
//! now, live allocations by size, and allocation calls. Included with
//! `#[path = "support/counting.rs"] mod counting;`.
#![allow(dead_code, unreachable_pub)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
};

/// Heap bytes live now, process-wide.
pub static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Allocation calls (`alloc` and `realloc`) so far, process-wide.
pub static ALLOCS: AtomicU64 = AtomicU64::new(0);

/// Live allocations by size (the last bucket takes every larger one):
/// the breakdown printed beside the total.
pub const BUCKETS: usize = 8193;
static BY_SIZE: [AtomicUsize; BUCKETS] = [const { AtomicUsize::new(0) }; BUCKETS];

fn count(size: usize, delta: isize) {
    let b = &BY_SIZE[size.min(BUCKETS - 1)];
    if delta > 0 {
        b.fetch_add(1, Ordering::Relaxed);
    } else {
        b.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Live allocations now, by size.
pub fn by_size() -> Vec<usize> {
    BY_SIZE.iter().map(|b| b.load(Ordering::SeqCst)).collect()
}

/// Allocation calls so far.
pub fn allocs() -> u64 {
    ALLOCS.load(Ordering::SeqCst)
}

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; the
// counter is only arithmetic on the sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            count(layout.size(), 1);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        count(layout.size(), -1);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new) };
        if !p.is_null() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new, Ordering::Relaxed);
            count(layout.size(), -1);
            count(new, 1);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;
