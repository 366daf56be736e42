//! A global allocator wrapper for measurements: it forwards every call to the system
//! allocator and counts the live heap bytes of the whole process, and the allocations
//! made on threads that opted in with [`count_allocations_on_this_thread`].
//!
//! It is not installed by this crate: each user (a test, an example, the bench)
//! declares its own
//!
//! ```text
//! #[global_allocator]
//! static GLOBAL: ambit_alloc_count::Counting = ambit_alloc_count::Counting;
//! ```
//!
//! The figures are zero in a process that did not install it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The system allocator, counting.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn count_allocation() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    if COUNTED_THREAD.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are
// updated, and they never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            count_allocation();
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            count_allocation();
        }
        p
    }
}

/// Heap bytes currently allocated by this process.
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Allocations (and reallocations) made so far on threads that called
/// [`count_allocations_on_this_thread`].
pub fn counted_allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// From now on, allocations made on the calling thread are counted.
pub fn count_allocations_on_this_thread() {
    COUNTED_THREAD.with(|c| c.set(true));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    #[test]
    fn live_bytes_follow_allocations_and_frees() {
        let before = live_bytes();
        let block = vec![0u8; 1 << 20];
        assert!(live_bytes() >= before + (1 << 20), "a 1 MiB vector is live");
        drop(block);
        assert!(live_bytes() < before + (1 << 20), "and freed");
    }

    #[test]
    fn only_flagged_threads_are_counted() {
        fn boxes() -> u64 {
            let before = counted_allocations();
            let v: Vec<Box<u64>> = (0..100).map(Box::new).collect();
            drop(v);
            counted_allocations() - before
        }
        // No thread of this test binary is flagged before the second spawn.
        let unflagged = std::thread::spawn(boxes).join().unwrap();
        assert_eq!(unflagged, 0, "an unflagged thread's allocations are not counted");
        let flagged = std::thread::spawn(|| {
            count_allocations_on_this_thread();
            boxes()
        })
        .join()
        .unwrap();
        assert!(flagged >= 101, "100 boxes and the vector, counted: {flagged}");
    }
}
