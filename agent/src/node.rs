//! The node runtime shared by standalone and Kubernetes modes: the proxy listeners,
//! the eBPF redirector, and publishing each new cluster view to both.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ambit_proxy_core::config::ConfigHandle;
use ambit_proxy_core::proxy::{Proxy, ProxyOptions};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cgroups::PodCgroupResolver;
use crate::cluster::ClusterState;
use crate::metrics::NodeMetrics;
use crate::redirect::{Redirector, RedirectorConfig};
use crate::translate::{self, Translation};

/// How often pods that still lack a cgroup on this node are looked for again.
pub const CGROUP_RETRY: Duration = Duration::from_millis(250);

/// The signals that stop the agent (SIGTERM from the kubelet, or Ctrl-C).
pub struct Termination {
    sigterm: tokio::signal::unix::Signal,
}

impl Termination {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self { sigterm: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())? })
    }

    /// Resolves when the agent is asked to stop.
    pub async fn requested(&mut self) {
        tokio::select! {
            _ = self.sigterm.recv() => tracing::info!("SIGTERM: draining"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: draining"),
        }
    }
}

/// How this node's agent is set up.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub node_name: Option<String>,
    /// Addresses of this node reachable from its pods; the proxy listens there and the
    /// connect hooks send redirected connections there.
    pub node_ips: Vec<IpAddr>,
    pub proxy_port: u16,
    /// The kubelet cgroup root: pod cgroups are found below it and the hooks attach to it.
    pub cgroup_root: PathBuf,
    pub bpf_pin_dir: PathBuf,
    pub admin_addr: SocketAddr,
    /// Also serve the admin API on this unix socket (the kubelet's exec probes use it).
    pub admin_socket: Option<PathBuf>,
    pub access_log: bool,
    /// Record data-path metrics (`--no-metrics` turns them off, e.g. to measure their cost).
    pub metrics: bool,
    pub drain: Duration,
}

/// What was last applied, kept for the admin API.
#[derive(Default)]
struct Applied {
    translation: Option<Translation>,
}

/// One node's data plane and its redirection.
pub struct Node {
    options: NodeOptions,
    config: ConfigHandle,
    proxy: Arc<Proxy>,
    redirector: Arc<Redirector>,
    metrics: NodeMetrics,
    cgroups: PodCgroupResolver,
    version: AtomicU64,
    ready: AtomicBool,
    applied: Mutex<Applied>,
    listeners: Mutex<Listeners>,
    shutdown: CancellationToken,
}

/// The proxy listeners: bound at start, accepting only once a configuration is served,
/// so that connections a successor agent receives during a rollout wait in its accept
/// queue instead of meeting an empty configuration (see [`crate::handover`]).
enum Listeners {
    Bound(Vec<TcpListener>),
    Serving(Vec<tokio::task::JoinHandle<()>>),
}

impl Node {
    /// Binds the proxy listeners and attaches redirection. The listeners are bound
    /// before the hooks are attached so no redirected connection finds nothing there;
    /// they accept from the first [`Node::apply`] on.
    pub async fn start(options: NodeOptions, shutdown: CancellationToken) -> anyhow::Result<Arc<Self>> {
        crate::handover::enable_request_migration_logged();
        let mut listeners = Vec::new();
        let (mut v4, mut v6) = (None, None);
        for ip in &options.node_ips {
            match ip {
                IpAddr::V4(a) if v4.is_none() => v4 = Some(*a),
                IpAddr::V6(a) if v6.is_none() => v6 = Some(*a),
                _ => anyhow::bail!("at most one IPv4 and one IPv6 node address may be given"),
            }
            let addr = SocketAddr::new(*ip, options.proxy_port);
            listeners.push(
                ambit_proxy_core::proxy::bind(addr)
                    .map_err(|e| anyhow::anyhow!("binding the proxy listener {addr}: {e}"))?,
            );
        }
        let redirector = Redirector::install(&RedirectorConfig {
            attach_cgroup: options.cgroup_root.clone(),
            pin_dir: options.bpf_pin_dir.clone(),
            proxy_v4: v4,
            proxy_v6: v6,
            proxy_port: options.proxy_port,
        })?;
        let redirector = Arc::new(redirector);
        let metrics = NodeMetrics::new(redirector.clone(), options.metrics);
        let config = ConfigHandle::default();
        let proxy = Proxy::with_metrics(config.clone(), redirector.origin_resolver(), ProxyOptions::default(), metrics.proxy());
        proxy.access_log().set_enabled(options.access_log);
        let cgroups = PodCgroupResolver::new(options.cgroup_root.clone());
        Ok(Arc::new(Self {
            options,
            config,
            proxy,
            redirector,
            metrics,
            cgroups,
            version: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            applied: Mutex::default(),
            listeners: Mutex::new(Listeners::Bound(listeners)),
            shutdown,
        }))
    }

    /// Starts accepting on the listeners (once; later calls do nothing).
    fn start_serving(&self) {
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let Listeners::Bound(bound) = &mut *listeners else { return };
        let tasks = std::mem::take(bound)
            .into_iter()
            .map(|listener| {
                tokio::spawn(self.proxy.clone().serve(listener, self.shutdown.clone(), self.options.drain))
            })
            .collect();
        *listeners = Listeners::Serving(tasks);
    }

    /// Waits until the listeners stopped after shutdown and their connections drained
    /// (bounded by the drain period). Listeners that never served are closed.
    pub async fn drained(&self) {
        let previous = std::mem::replace(
            &mut *self.listeners.lock().unwrap_or_else(|p| p.into_inner()),
            Listeners::Serving(Vec::new()),
        );
        if let Listeners::Serving(tasks) = previous {
            for task in tasks {
                let _ = task.await;
            }
        }
    }

    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// The registry served at `/metrics`.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.metrics
    }

    pub fn options(&self) -> &NodeOptions {
        &self.options
    }

    /// Ready once redirection is attached and a configuration has been applied.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Translates `state` and publishes it: the proxy's configuration first, then the
    /// eBPF maps, so that a connection redirected under the new maps always finds its
    /// Service and caller in the proxy. Returns how many enrolled pods still lack a
    /// cgroup on this node (the caller retries while that is non-zero).
    pub fn apply(&self, state: &ClusterState) -> anyhow::Result<usize> {
        let result = self.apply_inner(state);
        if result.is_err() {
            self.metrics.config().sync_failed();
        }
        result
    }

    fn apply_inner(&self, state: &ClusterState) -> anyhow::Result<usize> {
        let view = translate::NodeView { node_name: self.options.node_name.as_deref(), cgroups: &self.cgroups };
        let mut translation = translate::translate(state, &view);
        let version = self.version.fetch_add(1, Ordering::AcqRel) + 1;
        let config = std::mem::take(&mut translation.config);
        let mut config = config;
        config.version = version;
        self.config.store(config);
        let services: BTreeSet<SocketAddr> = translation.service_addrs.clone();
        self.redirector.sync_services(&services)?;
        self.redirector.sync_enrolled(&translation.enrolled_cgroups)?;
        for problem in &translation.problems {
            tracing::warn!(%problem, "configuration problem");
        }
        let pending = translation.pending_cgroups;
        tracing::info!(
            version,
            services = services.len(),
            enrolled = translation.enrolled_cgroups.len(),
            pending_cgroups = pending,
            "configuration applied"
        );
        self.metrics.config().applied(state, &translation, version);
        self.applied.lock().unwrap_or_else(|p| p.into_inner()).translation = Some(translation);
        self.start_serving();
        self.ready.store(true, Ordering::Release);
        Ok(pending)
    }

    /// The route status of the last applied translation (empty before the first apply).
    pub fn route_status(&self) -> Vec<translate::RouteStatus> {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        applied.translation.as_ref().map(|t| t.route_status.clone()).unwrap_or_default()
    }

    /// [`Node::apply`], logging a failure; returns the pods still lacking a cgroup, and
    /// at least 1 after a failure so that the caller's retry tries again.
    pub fn apply_logged(&self, state: &ClusterState, previous: usize) -> usize {
        match self.apply(state) {
            Ok(pending) => pending,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "applying configuration failed");
                previous.max(1)
            }
        }
    }

    pub fn config_dump(&self) -> serde_json::Value {
        let config = self.config.load();
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let (status, problems) = match &applied.translation {
            Some(t) => (serde_json::to_value(&t.route_status).unwrap_or_default(), t.problems.clone()),
            None => (json!([]), vec![]),
        };
        json!({
            "config": config.dump(),
            "routeStatus": status,
            "problems": problems,
        })
    }

    pub fn redirect_dump(&self) -> serde_json::Value {
        let stats = self.redirector.stats().unwrap_or_default();
        let names = [
            "redirected", "skipped_not_enrolled", "skipped_not_service", "skipped_not_tcp",
            "tracking_full", "established", "closed", "skipped_no_proxy",
        ];
        let counters: serde_json::Map<String, serde_json::Value> =
            names.iter().zip(stats.iter()).map(|(n, v)| (n.to_string(), json!(v))).collect();
        let tracked = self.redirector.tracked().ok();
        json!({
            "counters": counters,
            "trackedSockets": tracked.as_ref().map(|t| t.sockets),
            "trackedConnections": tracked.as_ref().map(|t| t.connections),
        })
    }
}
