//! Shared HTTP/2 upstream connections, one set per data-path thread.
//!
//! Requests multiplex on one connection per key, but only among the requests of the
//! thread that opened it: its task runs on that thread's runtime, and a request sent
//! from another worker would cross threads there and back (see [`super::http1_pool`]).
//! With N workers a key has up to N connections; each thread's lock is uncontended but
//! for the reaper.

use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

use hyper::client::conn::http2::SendRequest;
use thread_local::ThreadLocal;

use super::body::Body;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

type Shard<K> = Mutex<HashMap<K, SendRequest<Body>>>;

/// HTTP/2 connections by key, at most one per key and thread.
pub(super) struct Http2Pool<K: Send> {
    shards: ThreadLocal<Shard<K>>,
}

fn lock<K>(shard: &Shard<K>) -> MutexGuard<'_, HashMap<K, SendRequest<Body>>> {
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K: Clone + Eq + Hash + Send> Http2Pool<K> {
    pub(super) fn new() -> Self {
        Self { shards: ThreadLocal::new() }
    }

    fn own(&self) -> &Shard<K> {
        self.shards.get_or_default()
    }

    /// This thread's open connection for `key` (a closed one is forgotten).
    pub(super) fn get(&self, key: &K) -> Option<SendRequest<Body>> {
        let mut map = lock(self.own());
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
        lock(self.own()).insert(key, sender);
    }

    /// Forgets closed connections on every thread: how many.
    pub(super) fn reap(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let mut map = lock(shard);
                let before = map.len();
                map.retain(|_, sender| !sender.is_closed());
                before - map.len()
            })
            .sum()
    }

    /// Connections held (all threads).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }
}
