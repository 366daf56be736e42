//! The inbound streams open on this node (HBONE streams and same-node hand-overs), so
//! that a new configuration can close those its policies now refuse: every stream is
//! registered while it lasts, and each published [`ProxyConfig`] re-decides them all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio_util::sync::CancellationToken;

use super::decision::{decide_stream, stream_needs_http};
use super::enforcer::Enforcer;
use crate::config::{ConfigHandle, ProxyConfig};
use crate::identity::SpiffeId;

/// What a stream is, as a new policy sees it.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    /// The caller's verified identity.
    pub peer: SpiffeId,
    /// The pod address (and port) on this node.
    pub destination: SocketAddr,
    /// True when the stream is parsed as HTTP (each request decided on its own).
    pub filtered: bool,
}

/// How a stream is closed.
#[derive(Debug)]
pub enum Closer {
    /// Cancels the task relaying the stream (both sides are then dropped).
    Cancel(CancellationToken),
    /// Shuts down a socket in both directions (a duplicate of the pod connection of a
    /// same-node call, relayed by the caller's proxy).
    Shutdown(OwnedFd),
}

impl Closer {
    fn close(&self) {
        match self {
            Closer::Cancel(token) => token.cancel(),
            Closer::Shutdown(fd) => {
                let _ = socket2::SockRef::from(fd).shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// The registry of open inbound streams.
#[derive(Debug, Default)]
pub struct OpenStreams {
    next: AtomicU64,
    streams: Mutex<HashMap<u64, (StreamEntry, Closer)>>,
}

/// A registered stream; dropping it unregisters the stream.
#[derive(Debug)]
pub struct Registration {
    id: u64,
    streams: Weak<OpenStreams>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(streams) = self.streams.upgrade() {
            streams.lock().remove(&self.id);
        }
    }
}

impl OpenStreams {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (StreamEntry, Closer)>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register(self: &Arc<Self>, entry: StreamEntry, closer: Closer) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, (entry, closer));
        Registration { id, streams: Arc::downgrade(self) }
    }

    /// Streams open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes (and forgets) every stream that `config` refuses: its pod's policies now
    /// refuse every request of its caller on its port, or an HTTP rule now applies to
    /// its caller and port and the stream is copied unparsed. Returns how many were closed.
    pub fn revoke(&self, config: &ProxyConfig, enforcer: &Enforcer) -> usize {
        let mut closed = Vec::new();
        self.lock().retain(|_, (entry, closer)| {
            let Some(policies) = Enforcer::policies(&config.authorization, entry.destination) else {
                return true;
            };
            let decision = decide_stream(policies, &entry.peer, entry.destination.port());
            let unparsed = !entry.filtered && stream_needs_http(policies, &entry.peer, entry.destination.port());
            if decision.is_allowed() && !unparsed {
                return true;
            }
            closer.close();
            closed.push((entry.clone(), decision.reason().unwrap_or("needs_http")));
            false
        });
        for (entry, reason) in &closed {
            enforcer.metrics().revoke();
            let (peer, destination) = (&entry.peer, entry.destination);
            tracing::info!(%peer, %destination, reason, "closing an open stream the new authorization refuses");
        }
        closed.len()
    }

    /// Re-decides the open streams on every configuration `config` publishes, until
    /// this registry is dropped. Needs a Tokio runtime (none: nothing is watched, and
    /// a warning says so).
    pub fn watch(self: &Arc<Self>, config: ConfigHandle, enforcer: Arc<Enforcer>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no Tokio runtime: policy changes do not close open streams");
            return;
        };
        let streams = Arc::downgrade(self);
        let mut changes = config.changes();
        runtime.spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(streams) = streams.upgrade() else { return };
                if !streams.is_empty() {
                    streams.revoke(&config.load(), &enforcer);
                }
            }
        });
    }
}
