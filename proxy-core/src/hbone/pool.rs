//! The outbound pool: one TLS connection per (source, caller identity, peer node,
//! expected identity) and data-path thread, shared by many CONNECT streams. A second
//! connection opens when the first has as many streams as the server allows; closed
//! connections are dropped and idle ones closed after the idle timeout.
//!
//! Each thread keeps its own connections: a connection's task runs on the runtime of
//! the thread that dialled it, and a stream used from another worker would cross
//! threads for every chunk it carries (see `proxy::http1_pool`). With N workers a key
//! has up to N connections, as a proxy with per-worker pools (Envoy) has.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;

use super::dial::{dial, Dialled};
use super::error::TunnelError;
use super::metrics::HboneMetrics;
use super::request::{connect_request, CallContext};
use super::stream::{StreamSlot, TunnelStream};
use crate::identity::SpiffeId;
use crate::per_thread::PerThread;
use crate::proxy::{SocketFactory, Source};
use crate::rate_limited_log::KeyedRateLimitedLog;
use crate::tls::{MeshTls, Refusal};

/// What a pooled connection is for: nothing else may share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TunnelKey {
    /// Whose address the tunnel's TCP connection carries (the caller pod's, as today).
    pub source: Source,
    /// The identity presented (the caller's).
    pub identity: SpiffeId,
    /// The peer node's HBONE address.
    pub node: SocketAddr,
    /// The identity the peer must present (the destination pod's service account).
    pub expected: SpiffeId,
}

/// Pool tunables.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// Bounds TCP connect, TLS and HTTP/2 handshakes together, and a CONNECT's answer.
    pub connect_timeout: Duration,
    /// A connection without streams for this long is closed.
    pub idle_timeout: Duration,
    /// Streams per connection at most (the server's own limit applies too).
    pub max_streams_per_connection: u32,
    /// A PING after this long; no answer within the timeout closes the connection
    /// (its streams fail, new streams get a new connection).
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            max_streams_per_connection: 100,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
struct Pooled {
    dialled: Dialled,
    streams: Arc<AtomicUsize>,
    last_used: Mutex<Instant>,
}

impl Pooled {
    fn usable(&self) -> bool {
        !self.dialled.closed.load(Ordering::Acquire)
    }

    fn has_room(&self) -> bool {
        self.streams.load(Ordering::Acquire) < self.dialled.limit.load(Ordering::Relaxed).max(1)
    }

    fn idle_for(&self, idle: Duration) -> bool {
        self.streams.load(Ordering::Acquire) == 0
            && self.last_used.lock().unwrap_or_else(|p| p.into_inner()).elapsed() >= idle
    }

    fn checkout(&self) -> (SendRequest<Bytes>, StreamSlot) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        (self.dialled.sender.clone(), StreamSlot::take(&self.streams))
    }
}

impl ThreadPool {
    fn reap(&mut self, idle: Duration) {
        self.connections.retain(|_, list| {
            list.retain(|c| c.usable() && !c.idle_for(idle));
            !list.is_empty()
        });
        self.dialling.retain(|_, gate| Arc::strong_count(gate) > 1);
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.dialled.shutdown.cancel();
    }
}

/// One thread's connections.
#[derive(Default)]
struct ThreadPool {
    connections: HashMap<TunnelKey, Vec<Arc<Pooled>>>,
    /// Serialises dialling per key, so concurrent first calls share one handshake.
    dialling: HashMap<TunnelKey, Arc<tokio::sync::Mutex<()>>>,
}

/// Outbound HBONE connections of one node proxy.
pub struct HbonePool {
    tls: Arc<dyn MeshTls>,
    sockets: Arc<dyn SocketFactory>,
    options: PoolOptions,
    threads: PerThread<ThreadPool>,
    metrics: Arc<HboneMetrics>,
    handshakes: AtomicU64,
    /// One warning per refusal reason every 10 s.
    refusal_log: KeyedRateLimitedLog<Refusal>,
}

impl HbonePool {
    pub fn new(tls: Arc<dyn MeshTls>, sockets: Arc<dyn SocketFactory>, options: PoolOptions, metrics: Arc<HboneMetrics>) -> Arc<Self> {
        let pool = Arc::new(Self {
            tls,
            sockets,
            options,
            threads: PerThread::new(),
            metrics,
            handshakes: AtomicU64::new(0),
            refusal_log: KeyedRateLimitedLog::new(Duration::from_secs(10)),
        });
        Self::start_reaper(&pool);
        pool
    }

    /// TLS connections established so far.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }

    /// Open pooled connections (all keys and threads).
    pub fn open_connections(&self) -> usize {
        let mut open = 0;
        self.threads.each(|thread| open += thread.connections.values().flatten().filter(|c| c.usable()).count());
        open
    }

    /// Opens a tunnel stream to `destination` (a pod address) through the connection
    /// for `key`. A pooled connection that turns out dead is replaced once.
    pub async fn open(&self, key: &TunnelKey, destination: SocketAddr, call: &CallContext) -> Result<TunnelStream, TunnelError> {
        let (sender, slot, reused) = self.checkout(key).await?;
        match self.connect(key, sender, slot, destination, call).await {
            Err(error) if reused && error.is_stale_connection() => {
                tracing::debug!(node = %key.node, %error, "pooled HBONE connection failed; dialling a new one");
                self.forget_closed(key);
                let (sender, slot) = self.dial_new(key).await?;
                self.connect(key, sender, slot, destination, call).await
            }
            result => result,
        }
    }

    async fn connect(
        &self,
        key: &TunnelKey,
        sender: SendRequest<Bytes>,
        slot: StreamSlot,
        destination: SocketAddr,
        call: &CallContext,
    ) -> Result<TunnelStream, TunnelError> {
        let node = key.node;
        let exchange = async {
            let mut sender = sender.ready().await.map_err(|e| TunnelError::Http2(node, e))?;
            let (response, send) =
                sender.send_request(connect_request(destination, call), false).map_err(|e| TunnelError::Http2(node, e))?;
            let response = response.await.map_err(|e| TunnelError::Http2(node, e))?;
            if response.status() != http::StatusCode::OK {
                return Err(TunnelError::Status(node, response.status()));
            }
            Ok(TunnelStream::new(send, response.into_body(), Some(slot)))
        };
        tokio::time::timeout(self.options.connect_timeout, exchange).await.unwrap_or(Err(TunnelError::Timeout(node)))
    }

    /// A connection with room for one more stream: pooled, or newly dialled.
    async fn checkout(&self, key: &TunnelKey) -> Result<(SendRequest<Bytes>, StreamSlot, bool), TunnelError> {
        if let Some((sender, slot)) = self.pick(key) {
            return Ok((sender, slot, true));
        }
        let gate = {
            self.threads.own().dialling.entry(key.clone()).or_default().clone()
        };
        let _turn = gate.lock().await;
        if let Some((sender, slot)) = self.pick(key) {
            return Ok((sender, slot, true));
        }
        let (sender, slot) = self.dial_new(key).await?;
        Ok((sender, slot, false))
    }

    fn pick(&self, key: &TunnelKey) -> Option<(SendRequest<Bytes>, StreamSlot)> {
        let mut thread = self.threads.own();
        let list = thread.connections.get_mut(key)?;
        list.retain(|c| c.usable());
        list.iter().find(|c| c.has_room()).map(|c| c.checkout())
    }

    async fn dial_new(&self, key: &TunnelKey) -> Result<(SendRequest<Bytes>, StreamSlot), TunnelError> {
        let dialled = dial(&*self.tls, &*self.sockets, key, &self.options)
            .await
            .inspect_err(|error| {
                if let TunnelError::Refused { reason, node } = error {
                    self.metrics.refused(*reason);
                    if let Some(suppressed) = self.refusal_log.check(reason) {
                        tracing::warn!(%reason, %node, expected = %key.expected, suppressed, "HBONE peer refused (at most one line per reason every 10 s)");
                    }
                }
            })?;
        self.handshakes.fetch_add(1, Ordering::Relaxed);
        self.metrics.handshake();
        let pooled = Arc::new(Pooled { dialled, streams: Arc::default(), last_used: Mutex::new(Instant::now()) });
        let out = pooled.checkout();
        self.threads.own().connections.entry(key.clone()).or_default().push(pooled);
        Ok(out)
    }

    fn forget_closed(&self, key: &TunnelKey) {
        if let Some(list) = self.threads.own().connections.get_mut(key) {
            // The failed connection may not know it yet: drop every connection of the
            // key without streams, and closed ones.
            list.retain(|c| c.usable() && c.streams.load(Ordering::Acquire) > 0);
        }
    }

    fn start_reaper(this: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let every = (this.options.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
        let pool = Arc::downgrade(this);
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.reap();
            }
        });
    }

    /// Drops closed and idle connections, and dialling gates nobody waits on, on
    /// every thread.
    fn reap(&self) {
        self.threads.each(|thread| thread.reap(self.options.idle_timeout));
    }
}
