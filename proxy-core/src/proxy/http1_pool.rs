//! Idle HTTP/1.1 upstream connections, one set per data-path thread.
//!
//! A connection is driven by a task on the runtime of the thread that opened it (each
//! data-path worker is a current-thread runtime on its own thread). Used from another
//! worker, every request would cross threads twice, the request to the connection's
//! task and the response back, each crossing a wake-up of the other thread's event
//! loop: on two workers that cost 25% more CPU per request than one worker
//! (`examples/loopback_load.rs`, session 9). So a thread takes only the connections it
//! pooled itself, and returns a connection to its own set; its lock is uncontended but
//! for the reaper, which visits every set every few seconds. A connection goes back to
//! the pool when its response body ends or is dropped (see [`Recycled`]), without a
//! task of its own; whoever takes it next waits for it to be ready (an instant for a
//! finished response; a connection that closed meanwhile is skipped).

use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;

use super::body::Body;
use crate::per_thread::PerThread;

/// Hashed twice per request (take and put): foldhash (seeded per process), several
/// times faster than the standard SipHash on these keys.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// Idle connections by key, at most `max_idle` per key and thread.
pub(super) struct Http1Pool<K: Send> {
    shards: PerThread<HashMap<K, Vec<Idle>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl<K: Clone + Eq + Hash + Send> Http1Pool<K> {
    pub(super) fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self { shards: PerThread::new(), max_idle, idle_timeout }
    }

    /// An idle connection for `key`, pooled by this thread, that is not past the idle
    /// timeout and not closed. The caller must await `ready()` on it before sending.
    pub(super) fn take(&self, key: &K) -> Option<SendRequest<Body>> {
        let mut map = self.shards.own();
        let idle = map.get_mut(key)?;
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() < self.idle_timeout && !entry.sender.is_closed() {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Returns a connection whose last response is done with to this thread's set
    /// (closed ones are dropped; beyond `max_idle` for its key, it is closed). The
    /// request's task, which returns it, runs on the thread that took or opened it.
    pub(super) fn put(&self, key: K, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut map = self.shards.own();
        let idle = map.entry(key).or_default();
        if idle.len() < self.max_idle {
            idle.push(Idle { sender, since: Instant::now() });
        }
    }

    /// Drops idle connections past the idle timeout and closed ones, and forgets keys
    /// left without any: (connections dropped, keys forgotten).
    pub(super) fn reap(&self) -> (usize, usize) {
        let (mut closed, mut keys) = (0, 0);
        self.shards.each(|map| {
            map.retain(|_, idle| {
                let before = idle.len();
                idle.retain(|entry| entry.since.elapsed() < self.idle_timeout && !entry.sender.is_closed());
                closed += before - idle.len();
                keys += usize::from(idle.is_empty());
                !idle.is_empty()
            })
        });
        (closed, keys)
    }

    /// Distinct keys with idle connections.
    #[cfg(test)]
    pub(super) fn keys(&self) -> usize {
        let mut all: Vec<K> = Vec::new();
        self.shards.each(|map| {
            for key in map.keys() {
                if !all.contains(key) {
                    all.push(key.clone());
                }
            }
        });
        all.len()
    }
}

/// Where a connection goes once its response body is done with.
struct Return<K: Clone + Eq + Hash + Send> {
    pool: Arc<Http1Pool<K>>,
    key: K,
    sender: SendRequest<Body>,
}

/// A response body from a pooled connection: when it ends or is dropped, the
/// connection goes back to the pool. (A body dropped before its end makes hyper close
/// the connection; the pool then skips it.)
pub(super) struct Recycled<K: Clone + Eq + Hash + Send> {
    body: Incoming,
    back: Option<Return<K>>,
}

impl<K: Clone + Eq + Hash + Send> Recycled<K> {
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

impl<K: Clone + Eq + Hash + Send> Drop for Recycled<K> {
    fn drop(&mut self) {
        self.give_back();
    }
}

impl<K: Clone + Eq + Hash + Send + Unpin> hyper::body::Body for Recycled<K> {
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
