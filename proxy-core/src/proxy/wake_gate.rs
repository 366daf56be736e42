//! A future polled only when it asked to be: after its own waker fired (and on its
//! first poll).
//!
//! A connection's task selects over its busy hyper connection and a few watchers that
//! rarely have anything to say (the proxy's shutdown, the quiet timer that parks an
//! idle connection). `tokio::select!` polls every branch on every wake-up of the task,
//! so each request would poll the watchers two or three times for nothing (a timer
//! registration, a cancellation token's lock). Gated, a watcher is polled only when
//! its own waker fired: its waker sets a flag and wakes the task.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// The gated future's waker: marks it woken, then wakes the task polling it.
#[derive(Debug)]
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

pin_project_lite::pin_project! {
    /// `inner`, polled only on the first poll and after its own waker fired.
    pub struct WakeGated<F> {
        #[pin]
        inner: F,
        flag: Arc<Flag>,
        waker: Waker,
    }
}

impl<F: Future> WakeGated<F> {
    pub fn new(inner: F) -> Self {
        let flag = Arc::new(Flag { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        let waker = Waker::from(flag.clone());
        Self { inner, flag, waker }
    }
}

impl<F: Future> Future for WakeGated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Registered before the flag is read: a wake in between polls the task again.
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Counts its polls; ready once `ready` is set (and wakes on a timer meanwhile).
    struct Counted {
        polls: Arc<AtomicUsize>,
        sleep: Pin<Box<tokio::time::Sleep>>,
    }

    impl Future for Counted {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            self.sleep.as_mut().poll(cx)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_gated_future_is_polled_first_and_then_only_when_its_own_waker_fires() {
        let polls = Arc::new(AtomicUsize::new(0));
        let gated = WakeGated::new(Counted { polls: polls.clone(), sleep: Box::pin(tokio::time::sleep(Duration::from_secs(10))) });
        tokio::pin!(gated);
        // A busy neighbour: 100 wake-ups of the task before the gated timer fires.
        let mut busy = 0;
        let finished = loop {
            tokio::select! {
                biased;
                () = &mut gated => break busy,
                () = tokio::time::sleep(Duration::from_millis(10)) => busy += 1,
            }
            if busy > 2_000 {
                panic!("the gated future never finished");
            }
        };
        assert!(finished >= 999, "the timer fired early: {finished}");
        // Its first poll and the one after its timer fired (a spurious wake or two at most).
        assert!(polls.load(Ordering::Relaxed) <= 3, "polled {} times", polls.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_gated_future_that_is_ready_at_once_completes_on_its_first_poll() {
        assert_eq!(WakeGated::new(async { 7 }).await, 7);
    }
}
