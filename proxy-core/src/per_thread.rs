//! State kept per data-path thread: each thread works on its own copy, locked only so
//! that a visitor from another thread (a reaper, a count) can look at every copy. The
//! owner's lock is uncontended but for those visits.
//!
//! The upstream pools keep their connections this way: a connection's task runs on the
//! runtime of the thread that opened it, and a request from another worker would cross
//! threads (a wake-up of the other event loop) there and back.

use std::sync::{Mutex, MutexGuard};

use thread_local::ThreadLocal;

/// One `T` per thread that uses it, created on first use.
pub(crate) struct PerThread<T: Send>(ThreadLocal<Mutex<T>>);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: Send + Default> PerThread<T> {
    pub(crate) fn new() -> Self {
        Self(ThreadLocal::new())
    }

    /// This thread's copy, locked.
    pub(crate) fn own(&self) -> MutexGuard<'_, T> {
        lock(self.0.get_or_default())
    }

    /// Every thread's copy in turn, each locked while `f` runs.
    pub(crate) fn each(&self, mut f: impl FnMut(&mut T)) {
        for mutex in self.0.iter() {
            f(&mut lock(mutex));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_has_its_own_copy_and_each_visits_them_all() {
        let counts: PerThread<u32> = PerThread::new();
        *counts.own() += 1;
        std::thread::scope(|s| {
            s.spawn(|| *counts.own() += 10);
        });
        assert_eq!(*counts.own(), 1, "another thread's update is in its own copy");
        let mut all = Vec::new();
        counts.each(|c| all.push(*c));
        all.sort();
        assert_eq!(all, [1, 10]);
    }
}
