//! Shared HTTP/2 upstream connections, one set per data-path thread.
//!
//! Requests multiplex on one connection per key, but only among the requests of the
//! thread that opened it: its task runs on that thread's runtime, and a request sent
//! from another worker would cross threads there and back (see [`super::http1_pool`]).
//! With N workers a key has up to N connections; each thread's lock is uncontended but
//! for the reaper.

use std::hash::Hash;

use hyper::client::conn::http2::SendRequest;

use super::body::Body;
use crate::per_thread::PerThread;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// HTTP/2 connections by key, at most one per key and thread.
pub(super) struct Http2Pool<K: Send> {
    shards: PerThread<HashMap<K, SendRequest<Body>>>,
}

impl<K: Clone + Eq + Hash + Send> Http2Pool<K> {
    pub(super) fn new() -> Self {
        Self { shards: PerThread::new() }
    }

    /// This thread's open connection for `key` (a closed one is forgotten).
    pub(super) fn get(&self, key: &K) -> Option<SendRequest<Body>> {
        let mut map = self.shards.own();
        match map.get(key) {
            Some(sender) if !sender.is_closed() => Some(sender.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Shares a connection this thread opened (replacing the one it had for `key`).
    pub(super) fn insert(&self, key: K, sender: SendRequest<Body>) {
        self.shards.own().insert(key, sender);
    }

    /// Forgets closed connections on every thread: how many.
    pub(super) fn reap(&self) -> usize {
        let mut closed = 0;
        self.shards.each(|map| {
            let before = map.len();
            map.retain(|_, sender| !sender.is_closed());
            closed += before - map.len();
        });
        closed
    }

    /// Connections held (all threads).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        let mut len = 0;
        self.shards.each(|map| len += map.len());
        len
    }
}
