//! Idle HTTP/1.1 upstream connections, sharded by data-path thread.
//!
//! Each thread takes from and returns to its own shard first, so the lock it takes is
//! (almost) never contended: the other threads and the reaper visit a shard only when
//! their own has nothing for a key, or every few seconds. A connection goes back to the
//! pool when its response body ends or is dropped (see [`Recycled`]), without a task of
//! its own; whoever takes it next waits for it to be ready (an instant for a finished
//! response; a connection that closed meanwhile is skipped).

use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;

use super::body::Body;

/// Hashed twice per request (take and put): foldhash (seeded per process), several
/// times faster than the standard SipHash on these keys.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Most shards (beyond that, threads share them).
const MAX_SHARDS: usize = 16;

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

type Shard<K> = Mutex<HashMap<K, Vec<Idle>>>;

/// Idle connections by key, at most `max_idle` per key and shard.
pub(super) struct Http1Pool<K> {
    shards: Box<[Shard<K>]>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// This thread's shard number (threads get consecutive numbers on first use).
fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SHARD.with(|s| *s)
}

fn lock<K>(shard: &Shard<K>) -> MutexGuard<'_, HashMap<K, Vec<Idle>>> {
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K: Clone + Eq + Hash> Http1Pool<K> {
    pub(super) fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = (0..threads.clamp(1, MAX_SHARDS)).map(|_| Mutex::default()).collect();
        Self { shards, max_idle, idle_timeout }
    }

    fn home(&self) -> usize {
        thread_shard() % self.shards.len()
    }

    /// An idle connection for `key` that is not past the idle timeout and not closed:
    /// from this thread's shard, else from another's. The caller must await
    /// `ready()` on it before sending.
    pub(super) fn take(&self, key: &K) -> Option<SendRequest<Body>> {
        let home = self.home();
        let n = self.shards.len();
        (0..n).find_map(|i| self.take_from(&self.shards[(home + i) % n], key))
    }

    fn take_from(&self, shard: &Shard<K>, key: &K) -> Option<SendRequest<Body>> {
        let mut map = lock(shard);
        let idle = map.get_mut(key)?;
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() < self.idle_timeout && !entry.sender.is_closed() {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Returns a connection whose last response is done with (closed ones are dropped;
    /// beyond `max_idle` for its key, it is closed).
    pub(super) fn put(&self, key: K, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut map = lock(&self.shards[self.home()]);
        let idle = map.entry(key).or_default();
        if idle.len() < self.max_idle {
            idle.push(Idle { sender, since: Instant::now() });
        }
    }

    /// Drops idle connections past the idle timeout and closed ones, and forgets keys
    /// left without any: (connections dropped, keys forgotten).
    pub(super) fn reap(&self) -> (usize, usize) {
        let (mut closed, mut keys) = (0, 0);
        for shard in self.shards.iter() {
            lock(shard).retain(|_, idle| {
                let before = idle.len();
                idle.retain(|entry| entry.since.elapsed() < self.idle_timeout && !entry.sender.is_closed());
                closed += before - idle.len();
                keys += usize::from(idle.is_empty());
                !idle.is_empty()
            });
        }
        (closed, keys)
    }

    /// Distinct keys with idle connections.
    #[cfg(test)]
    pub(super) fn keys(&self) -> usize {
        let mut all: Vec<K> = Vec::new();
        for shard in self.shards.iter() {
            for key in lock(shard).keys() {
                if !all.contains(key) {
                    all.push(key.clone());
                }
            }
        }
        all.len()
    }
}

/// Where a connection goes once its response body is done with.
struct Return<K: Clone + Eq + Hash> {
    pool: Arc<Http1Pool<K>>,
    key: K,
    sender: SendRequest<Body>,
}

/// A response body from a pooled connection: when it ends or is dropped, the
/// connection goes back to the pool. (A body dropped before its end makes hyper close
/// the connection; the pool then skips it.)
pub(super) struct Recycled<K: Clone + Eq + Hash> {
    body: Incoming,
    back: Option<Return<K>>,
}

impl<K: Clone + Eq + Hash> Recycled<K> {
    pub(super) fn new(body: Incoming, pool: Arc<Http1Pool<K>>, key: K, sender: SendRequest<Body>) -> Self {
        let mut recycled = Self { body, back: Some(Return { pool, key, sender }) };
        if recycled.body.is_end_stream() {
            recycled.give_back();
        }
        recycled
    }

    fn give_back(&mut self) {
        if let Some(Return { pool, key, sender }) = self.back.take() {
            pool.put(key, sender);
        }
    }
}

impl<K: Clone + Eq + Hash> Drop for Recycled<K> {
    fn drop(&mut self) {
        self.give_back();
    }
}

impl<K: Clone + Eq + Hash + Unpin> hyper::body::Body for Recycled<K> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || this.body.is_end_stream() {
            this.give_back();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
