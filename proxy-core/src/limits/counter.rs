//! A count of live things with a cap: taking one beyond the cap fails.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most live things allowed; `None` means no cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap(Option<NonZeroUsize>);

impl Cap {
    pub const UNLIMITED: Cap = Cap(None);

    /// A cap of `n`; 0 means no cap (the command line's way to switch one off).
    pub const fn new(n: usize) -> Self {
        Cap(NonZeroUsize::new(n))
    }

    /// The cap, if any.
    pub fn get(self) -> Option<usize> {
        self.0.map(NonZeroUsize::get)
    }

    fn allows(self, live_before: usize) -> bool {
        self.0.is_none_or(|cap| live_before < cap.get())
    }
}

/// Live count under a [`Cap`]; lock-free (one atomic add per take, one per give back).
#[derive(Debug)]
pub struct CappedCounter {
    live: AtomicUsize,
    cap: Cap,
}

impl CappedCounter {
    pub fn new(cap: Cap) -> Self {
        Self { live: AtomicUsize::new(0), cap }
    }

    /// Takes one if that stays within the cap. A refused take is undone at once; a
    /// concurrent take may then see the cap reached a moment early (never late).
    pub fn try_take(&self) -> bool {
        let before = self.live.fetch_add(1, Ordering::AcqRel);
        if self.cap.allows(before) {
            return true;
        }
        self.live.fetch_sub(1, Ordering::AcqRel);
        false
    }

    /// Gives back one taken with [`CappedCounter::try_take`].
    pub fn give_back(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }

    /// How many are taken now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_up_to_the_cap_then_refuses() {
        let c = CappedCounter::new(Cap::new(2));
        assert!(c.try_take());
        assert!(c.try_take());
        assert!(!c.try_take());
        assert_eq!(c.live(), 2);
        c.give_back();
        assert!(c.try_take());
        assert_eq!(c.live(), 2);
    }

    #[test]
    fn zero_means_no_cap() {
        let c = CappedCounter::new(Cap::new(0));
        assert_eq!(Cap::new(0), Cap::UNLIMITED);
        assert!((0..10_000).all(|_| c.try_take()));
        assert_eq!(c.live(), 10_000);
    }

    #[test]
    fn concurrent_takes_never_exceed_the_cap() {
        let c = std::sync::Arc::new(CappedCounter::new(Cap::new(100)));
        let taken: usize = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).filter(|_| c.try_take()).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(taken, 100);
        assert_eq!(c.live(), 100);
    }
}
