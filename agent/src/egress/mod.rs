//! Upstream sockets in the caller pod's network namespace, so that backends,
//! NetworkPolicy and server logs see the caller's own address (see the README's
//! "Caller address" section).
//!
//! A pod's namespace is found through a process of its cgroup and kept open; one
//! helper thread ([`helper`]) enters it to create each socket, which tokio then
//! connects. When no namespace can be found, the connection is refused: the proxy
//! never connects on a caller's behalf from an address that is not the caller's.

mod helper;
mod netns;
mod stats;

pub use stats::{EgressCollector, EgressStats};

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};

use ambit_proxy_core::identity::CgroupId;
use ambit_proxy_core::proxy::{node_socket, SocketFactory, SocketFuture, Source};
use socket2::Domain;
use tokio::net::TcpSocket;
use tokio::sync::oneshot;

use helper::Job;

/// What the agent needs to know about an enrolled pod to find its network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerPod {
    /// The pod cgroup's directory: its processes (or its containers') are looked up.
    pub cgroup_dir: PathBuf,
    /// `spec.hostNetwork`: only then may the namespace found be the node's.
    pub host_network: bool,
}

/// The agent's [`SocketFactory`]: every caller's sockets from its own namespace.
pub struct PodSockets {
    jobs: mpsc::Sender<Job>,
    stats: Arc<EgressStats>,
}

impl PodSockets {
    /// Starts the helper thread.
    pub fn start() -> io::Result<Arc<Self>> {
        let stats = Arc::new(EgressStats::default());
        let jobs = helper::start(stats.clone())?;
        Ok(Arc::new(Self { jobs, stats }))
    }

    pub fn stats(&self) -> Arc<EgressStats> {
        self.stats.clone()
    }

    /// The enrolled pods on this node. Namespaces of pods no longer listed are closed.
    pub fn sync_pods(&self, pods: HashMap<CgroupId, CallerPod>) {
        if self.jobs.send(Job::Pods(pods)).is_err() {
            tracing::error!("the network namespace helper thread has stopped");
        }
    }
}

impl SocketFactory for PodSockets {
    fn source(&self, caller: CgroupId) -> Source {
        Source::Pod(caller)
    }

    fn socket(&self, source: Source, endpoint: SocketAddr) -> SocketFuture {
        let Source::Pod(pod) = source else {
            return Box::pin(std::future::ready(node_socket(endpoint)));
        };
        let (reply, answer) = oneshot::channel();
        let sent = self.jobs.send(Job::Socket { pod, domain: Domain::for_address(endpoint), reply });
        Box::pin(async move {
            sent.map_err(|_| io::Error::other("the network namespace helper thread has stopped"))?;
            let socket = answer.await.map_err(|_| io::Error::other("the network namespace helper thread has stopped"))??;
            Ok(TcpSocket::from_std_stream(std::net::TcpStream::from(socket)))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    fn caller(dir: &std::path::Path, host_network: bool) -> CallerPod {
        CallerPod { cgroup_dir: dir.to_path_buf(), host_network }
    }

    fn endpoint() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[tokio::test]
    async fn a_caller_without_a_namespace_gets_no_socket() {
        let sockets = PodSockets::start().unwrap();
        let empty = tempfile::tempdir().unwrap();
        sockets.sync_pods(HashMap::from([(CgroupId(1), caller(empty.path(), false))]));
        let error = sockets.socket(Source::Pod(CgroupId(1)), endpoint()).await.unwrap_err();
        assert!(error.to_string().contains("no process"), "{error}");
        // An unknown caller (not enrolled here) is refused too.
        let error = sockets.socket(Source::Pod(CgroupId(2)), endpoint()).await.unwrap_err();
        assert!(error.to_string().contains("not enrolled"), "{error}");
        assert_eq!(sockets.stats().failures.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_caller_in_the_nodes_namespace_is_a_host_network_pod() {
        let sockets = PodSockets::start().unwrap();
        let cgroup = tempfile::tempdir().unwrap();
        std::fs::write(cgroup.path().join("cgroup.procs"), format!("{}\n", std::process::id())).unwrap();
        // Not hostNetwork: a process in the node's namespace is not the pod's.
        sockets.sync_pods(HashMap::from([(CgroupId(7), caller(cgroup.path(), false))]));
        let error = sockets.socket(Source::Pod(CgroupId(7)), endpoint()).await.unwrap_err();
        assert!(error.to_string().contains("node's network namespace"), "{error}");
        sockets.sync_pods(HashMap::from([(CgroupId(7), caller(cgroup.path(), true))]));
        sockets.socket(Source::Pod(CgroupId(7)), endpoint()).await.unwrap();
        sockets.socket(Source::Pod(CgroupId(7)), endpoint()).await.unwrap();
        assert_eq!(sockets.stats().host_network.load(Ordering::Relaxed), 2);
        assert_eq!(sockets.stats().pod.load(Ordering::Relaxed), 0);
        // Once the pod leaves, its callers get nothing.
        sockets.sync_pods(HashMap::new());
        assert!(sockets.socket(Source::Pod(CgroupId(7)), endpoint()).await.is_err());
    }
}
