//! The one thread that enters pods' network namespaces. It owns the cache of open pod
//! namespaces; for each socket it enters the pod's namespace (`setns`), creates the
//! socket and returns to the node's. Tokio's threads never change namespace.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;

use ambit_proxy_core::identity::CgroupId;
use ambit_proxy_core::rate_limited_log::RateLimitedLog;
use nix::sched::{setns, CloneFlags};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::oneshot;

use super::netns::{self, PodNetns};
use super::stats::EgressStats;
use super::CallerPod;


/// Work for the helper thread.
pub enum Job {
    /// A new TCP socket in the namespace of the pod with this cgroup.
    Socket { pod: CgroupId, domain: Domain, reply: oneshot::Sender<io::Result<Socket>> },
    /// The enrolled pods now; others are forgotten.
    Pods(HashMap<CgroupId, CallerPod>),
}

/// The helper thread's state.
struct Helper {
    /// The node's network namespace (the agent's own), returned to after each socket.
    home: File,
    home_inode: u64,
    pods: HashMap<CgroupId, CallerPod>,
    open: HashMap<CgroupId, PodNetns>,
    stats: Arc<EgressStats>,
    /// Warnings about pods without a usable namespace: at most one per 10 s.
    warnings: RateLimitedLog,
}

/// Starts the helper thread; it ends when every sender is dropped.
pub fn start(stats: Arc<EgressStats>) -> io::Result<mpsc::Sender<Job>> {
    let home = File::open("/proc/thread-self/ns/net")?;
    let home_inode = home.metadata()?.ino();
    let (sender, jobs) = mpsc::channel();
    let helper = Helper { home, home_inode, pods: HashMap::new(), open: HashMap::new(), stats, warnings: RateLimitedLog::default() };
    std::thread::Builder::new().name("ambit-netns".into()).spawn(move || helper.run(jobs))?;
    Ok(sender)
}

impl Helper {
    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            match job {
                Job::Pods(pods) => {
                    self.open.retain(|cgroup, _| pods.contains_key(cgroup));
                    self.pods = pods;
                }
                Job::Socket { reply, .. } if reply.is_closed() => {
                    // The connection attempt gave up (timed out) while queued.
                }
                Job::Socket { pod, domain, reply } => {
                    let result = self.socket(pod, domain);
                    let healthy = !matches!(&result, Err(Failure::Stranded(_)));
                    let _ = reply.send(result.map_err(|f| self.failed(pod, f)));
                    if !healthy {
                        // This thread is stuck in a pod's namespace: it must make nothing more.
                        return;
                    }
                }
            }
        }
    }

    fn socket(&mut self, pod: CgroupId, domain: Domain) -> Result<Socket, Failure> {
        self.ensure_open(pod)?;
        let netns = self.open.get(&pod).ok_or(Failure::UnknownPod)?;
        if netns.inode == self.home_inode {
            // A hostNetwork pod: its address is the node's.
            self.stats.host_network.fetch_add(1, Ordering::Relaxed);
            return new_socket(domain).map_err(Failure::Socket);
        }
        setns(&netns.file, CloneFlags::CLONE_NEWNET).map_err(|e| Failure::Enter(e.into()))?;
        let socket = new_socket(domain);
        setns(&self.home, CloneFlags::CLONE_NEWNET).map_err(|e| Failure::Stranded(e.into()))?;
        self.stats.pod.fetch_add(1, Ordering::Relaxed);
        socket.map_err(Failure::Socket)
    }

    /// The pod's open namespace, found again when its process left it or is gone.
    fn ensure_open(&mut self, pod: CgroupId) -> Result<(), Failure> {
        if self.open.get(&pod).is_some_and(|n| !n.still_current()) {
            self.open.remove(&pod);
        }
        if !self.open.contains_key(&pod) {
            let caller = self.pods.get(&pod).ok_or(Failure::UnknownPod)?;
            // Only a hostNetwork pod may be in the node's namespace.
            let not = (!caller.host_network).then_some(self.home_inode);
            let found = netns::find(&caller.cgroup_dir, not).map_err(Failure::NoNetns)?;
            self.open.insert(pod, found);
        }
        Ok(())
    }

    /// Counts and logs (at a bounded rate) a failure; the caller gets the error.
    fn failed(&mut self, pod: CgroupId, failure: Failure) -> io::Error {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let message = failure.to_string();
        if matches!(failure, Failure::Stranded(_)) {
            tracing::error!(pod_cgroup = pod.0, error = %message, "could not return to the node's network namespace; no more pod sockets");
        } else if let Some(suppressed) = self.warnings.admit() {
            tracing::warn!(pod_cgroup = pod.0, error = %message, suppressed, "no upstream socket in the caller's network namespace; refusing (further ones for 10 s at debug level)");
        } else {
            tracing::debug!(pod_cgroup = pod.0, error = %message, "no upstream socket in the caller's network namespace");
        }
        io::Error::other(message)
    }
}

fn new_socket(domain: Domain) -> io::Result<Socket> {
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Why no socket was made for a pod.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("the caller's pod is not enrolled on this node")]
    UnknownPod,
    #[error("the caller's network namespace: {0}")]
    NoNetns(netns::NetnsError),
    #[error("entering the caller's network namespace: {0}")]
    Enter(io::Error),
    #[error("creating the socket in the caller's network namespace: {0}")]
    Socket(io::Error),
    #[error("returning to the node's network namespace: {0}")]
    Stranded(io::Error),
}
