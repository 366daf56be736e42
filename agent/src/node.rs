//! The node runtime shared by standalone and Kubernetes modes: the proxy listeners,
//! the eBPF redirector, and publishing each new cluster view to both.

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ambit_proxy_core::config::ConfigHandle;
use ambit_proxy_core::proxy::{Proxy, ProxyOptions};
use ambit_proxy_core::rate_limited_log::{RateLimitedLog, DEFAULT_INTERVAL};
use serde_json::json;
use tokio::net::TcpListener;

use crate::data_runtime::DataPath;
use tokio_util::sync::CancellationToken;

use crate::cgroups::PodCgroupResolver;
use crate::cluster::ClusterState;
use crate::egress::{EgressCollector, PodSockets};
use crate::mesh::{MeshOptions, NodeMesh};
use crate::metrics::NodeMetrics;
use crate::redirect::{MapCapacity, ProgramRuns, Redirector, RedirectorConfig, RunStatsSwitch, SyncOutcome};
use crate::strict::{StrictConfig, StrictGuard, StrictSync};
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
    /// The admin API (loopback unless `admin_allow_remote`).
    pub admin_addr: SocketAddr,
    /// Serve the admin API on a non-loopback `admin_addr` (it is unauthenticated).
    pub admin_allow_remote: bool,
    /// Read-only listener for kubelet probes: `/healthz` and `/ready` only.
    pub health_addr: Option<SocketAddr>,
    /// Read-only listener for Prometheus: `/metrics` only.
    pub metrics_addr: Option<SocketAddr>,
    /// Sizes of the enrollment and Service maps (tests make them tiny).
    pub map_capacity: MapCapacity,
    /// Also serve the admin API on this unix socket (the kubelet's exec probes use it).
    pub admin_socket: Option<PathBuf>,
    pub access_log: bool,
    /// Record data-path metrics (`--no-metrics` turns them off, e.g. to measure their cost).
    pub metrics: bool,
    /// Keep the kernel's BPF run-time statistics on (`--no-bpf-stats` turns them off).
    pub bpf_stats: bool,
    pub drain: Duration,
    /// The data path's timeouts and limits.
    pub proxy: ProxyOptions,
    /// The eBPF per-pod quota of tracked sockets (0: none).
    pub per_pod_sockets: u32,
    /// Cgroups (relative to the cgroup v2 mount) trusted to open connections to STRICT
    /// pods, for kubelet probes (empty: the `kubelet` process's cgroup, if found).
    pub probe_cgroups: Vec<PathBuf>,
    /// Workload identities and mutual TLS between nodes (None: every call plaintext).
    pub mesh: Option<MeshOptions>,
}

/// What was last applied, kept for the admin API and the cgroup retry.
#[derive(Default)]
struct Applied {
    translation: Option<Translation>,
    maps: MapSync,
    /// The last STRICT sync (None: the mesh is off, nothing is guarded).
    strict: Option<StrictSync>,
    /// The last apply failed: retry it even if no pending cgroup appeared.
    failed: bool,
}

/// How the last apply's eBPF map syncs went.
#[derive(Clone, Debug, Default)]
struct MapSync {
    services: SyncOutcome,
    enrolled: SyncOutcome,
}

impl MapSync {
    fn each(&self) -> [(&'static str, &SyncOutcome); 2] {
        [(ambit_ebpf_common::map_names::SERVICES, &self.services), (ambit_ebpf_common::map_names::ENROLLED, &self.enrolled)]
    }

    /// One line per incomplete map, for `/config_dump` problems and `/ready`.
    fn problems(&self) -> Vec<String> {
        self.each()
            .into_iter()
            .filter(|(_, o)| !o.is_complete())
            .map(|(map, o)| {
                let error = o.first_error.as_deref().unwrap_or("unknown error");
                format!("eBPF map {map}: {} entries not synced (first error: {error})", o.unsynced)
            })
            .collect()
    }
}

/// The HBONE listeners (one per node address) when the mesh is on.
fn bind_hbone(options: &NodeOptions, workers: usize) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let Some(mesh) = &options.mesh else { return Ok(Vec::new()) };
    let mut listeners = Vec::new();
    for ip in &options.node_ips {
        let addr = SocketAddr::new(*ip, mesh.hbone_port);
        listeners.extend(bind_per_worker(addr, workers).map_err(|e| anyhow::anyhow!("binding the HBONE listener {addr}: {e}"))?);
    }
    Ok(listeners)
}

/// One listener per data-path worker on `addr` (SO_REUSEPORT: the kernel spreads new
/// connections over them). With port 0, the others join the port the first one got.
fn bind_per_worker(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let first = ambit_proxy_core::proxy::bind_shared(addr, LISTEN_BACKLOG)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(ambit_proxy_core::proxy::bind_shared(addr, LISTEN_BACKLOG)?);
    }
    Ok(listeners)
}

/// Each proxy listener's accept queue.
const LISTEN_BACKLOG: i32 = 4096;

/// Installs the STRICT guard, trusting the agent's own cgroup and the probe cgroups.
fn install_strict(options: &NodeOptions, metrics: &mut NodeMetrics) -> anyhow::Result<Arc<StrictGuard>> {
    let mount = crate::cgroups::cgroup2_mount()?;
    let mut trusted = vec![crate::strict::trust::own(&mount)?];
    if options.probe_cgroups.is_empty() {
        trusted.extend(crate::strict::trust::kubelet(&mount));
    } else {
        trusted.extend(crate::strict::trust::probes(&mount, &options.probe_cgroups)?);
    }
    for t in &trusted {
        tracing::info!(cgroup = %t.path.display(), id = t.id, reason = ?t.reason, "trusted to connect to STRICT pods");
    }
    let guard = Arc::new(StrictGuard::install(&StrictConfig {
        pin_dir: options.bpf_pin_dir.clone(),
        capacity: options.map_capacity,
        trusted,
        cgroup_mount: Some(mount),
    })?);
    metrics.register_collector(Box::new(crate::strict::metrics::StrictCollector(guard.clone())));
    Ok(guard)
}

/// Turns the kernel's BPF run-time statistics on; a kernel that refuses only costs the
/// figures (logged).
fn enable_run_stats() -> Option<RunStatsSwitch> {
    RunStatsSwitch::enable()
        .inspect_err(|error| tracing::warn!(error = %format!("{error:#}"), "BPF run-time statistics stay off"))
        .ok()
}

/// The kernel's run statistics of every program this agent loaded (redirection, and
/// the STRICT classifier with the mesh on); programs that cannot be read are left out.
fn program_runs(redirector: &Redirector, strict: Option<&StrictGuard>) -> Vec<ProgramRuns> {
    let mut runs = redirector.program_runs().unwrap_or_else(|error| {
        tracing::warn!(error = %format!("{error:#}"), "reading the eBPF programs' run statistics failed");
        Vec::new()
    });
    runs.extend(strict.and_then(|s| s.program_runs().ok()).unwrap_or_default());
    runs
}

/// `ambit_ebpf_program_runs_total` and `ambit_ebpf_program_run_seconds_total`, read at scrape time.
struct ProgramRunsCollector {
    redirector: Arc<Redirector>,
    strict: Option<Arc<StrictGuard>>,
}

impl std::fmt::Debug for ProgramRunsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgramRunsCollector")
    }
}

impl prometheus_client::collector::Collector for ProgramRunsCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        crate::redirect::encode_program_runs(&mut encoder, &program_runs(&self.redirector, self.strict.as_deref()))
    }
}

/// One node's data plane and its redirection.
pub struct Node {
    options: NodeOptions,
    config: ConfigHandle,
    proxy: Arc<Proxy>,
    redirector: Arc<Redirector>,
    sockets: Arc<PodSockets>,
    metrics: NodeMetrics,
    mesh: Option<NodeMesh>,
    /// The kernel guard of STRICT pods (only with the mesh on).
    strict: Option<Arc<StrictGuard>>,
    /// Holds the kernel's BPF run-time statistics on (None: off, or the kernel refused).
    run_stats: Option<RunStatsSwitch>,
    cgroups: PodCgroupResolver,
    version: AtomicU64,
    ready: AtomicBool,
    applied: Mutex<Applied>,
    /// What the last translation derived, for the next one to reuse.
    reuse: Mutex<translate::Reuse>,
    listeners: Mutex<Listeners>,
    /// The data-path workers the proxy listeners are served on.
    data_path: DataPath,
    shutdown: CancellationToken,
}

/// The proxy listeners: bound at start, accepting only once a configuration is served,
/// so that connections a successor agent receives during a rollout wait in its accept
/// queue instead of meeting an empty configuration (see [`crate::handover`]).
/// `workers` listeners per address, in order: the k-th is served by worker k mod the
/// number of workers.
enum Listeners {
    Bound { proxy: Vec<std::net::TcpListener>, hbone: Vec<std::net::TcpListener> },
    Serving(Vec<tokio::task::JoinHandle<()>>),
}

impl Node {
    /// Binds the proxy listeners and attaches redirection. The listeners are bound
    /// before the hooks are attached so no redirected connection finds nothing there;
    /// they accept from the first [`Node::apply`] on, on `data_path`, never on the
    /// caller's (control-plane) runtime.
    pub async fn start(
        options: NodeOptions,
        data_path: &DataPath,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        crate::handover::enable_request_migration_logged();
        let entered = data_path.first().enter();
        let workers = data_path.workers().len();
        let mut listeners = Vec::new();
        let (mut v4, mut v6) = (None, None);
        for ip in &options.node_ips {
            match ip {
                IpAddr::V4(a) if v4.is_none() => v4 = Some(*a),
                IpAddr::V6(a) if v6.is_none() => v6 = Some(*a),
                _ => anyhow::bail!("at most one IPv4 and one IPv6 node address may be given"),
            }
            let addr = SocketAddr::new(*ip, options.proxy_port);
            listeners.extend(
                bind_per_worker(addr, workers).map_err(|e| anyhow::anyhow!("binding the proxy listener {addr}: {e}"))?,
            );
        }
        let hbone = bind_hbone(&options, workers)?;
        let redirector = Redirector::install(&RedirectorConfig {
            attach_cgroup: options.cgroup_root.clone(),
            pin_dir: options.bpf_pin_dir.clone(),
            proxy_v4: v4,
            proxy_v6: v6,
            proxy_port: options.proxy_port,
            capacity: options.map_capacity,
            per_pod_sockets: options.per_pod_sockets,
        })?;
        let redirector = Arc::new(redirector);
        let mut metrics = NodeMetrics::new(redirector.clone(), options.metrics);
        let strict = match &options.mesh {
            Some(_) => Some(install_strict(&options, &mut metrics)?),
            None => None,
        };
        metrics.register_collector(Box::new(ProgramRunsCollector { redirector: redirector.clone(), strict: strict.clone() }));
        let run_stats = options.bpf_stats.then(enable_run_stats).flatten();
        let sockets = PodSockets::start().map_err(|e| anyhow::anyhow!("starting the network namespace helper: {e}"))?;
        metrics.register_collector(Box::new(EgressCollector(sockets.stats())));
        let config = ConfigHandle::default();
        let mut proxy_options = options.proxy.clone();
        let (proxy, mesh) = match &options.mesh {
            None => {
                let proxy = Proxy::with_sockets(config.clone(), redirector.origin_resolver(), proxy_options, metrics.proxy(), sockets.clone());
                (proxy, None)
            }
            Some(mesh_options) => {
                proxy_options.hbone.trust_domain = mesh_options.trust_domain.clone();
                proxy_options.hbone.port = mesh_options.hbone_port;
                let (mesh, setup) = NodeMesh::new(mesh_options, metrics.registry_mut())?;
                let proxy = Proxy::with_mesh(config.clone(), redirector.origin_resolver(), proxy_options, metrics.proxy(), sockets.clone(), setup);
                (proxy, Some(mesh))
            }
        };
        proxy.access_log().set_enabled(options.access_log);
        drop(entered);
        let cgroups = PodCgroupResolver::new(options.cgroup_root.clone());
        Ok(Arc::new(Self {
            options,
            config,
            proxy,
            redirector,
            sockets,
            metrics,
            mesh,
            strict,
            run_stats,
            cgroups,
            version: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            applied: Mutex::default(),
            reuse: Mutex::default(),
            listeners: Mutex::new(Listeners::Bound { proxy: listeners, hbone }),
            data_path: data_path.clone(),
            shutdown,
        }))
    }

    /// Starts accepting on the listeners (once; later calls do nothing), each on its
    /// worker (registered with that worker's reactor, so its connections stay there).
    fn start_serving(&self) {
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let Listeners::Bound { proxy, hbone } = &mut *listeners else { return };
        let (shutdown, drain) = (&self.shutdown, self.options.drain);
        let mut tasks = self.serve_on_workers(std::mem::take(proxy), "proxy", |listener| {
            self.proxy.clone().serve(listener, shutdown.clone(), drain)
        });
        if let Some(inbound) = self.proxy.hbone_inbound() {
            tasks.extend(self.serve_on_workers(std::mem::take(hbone), "HBONE", |listener| {
                inbound.clone().serve(listener, shutdown.clone())
            }));
        }
        *listeners = Listeners::Serving(tasks);
    }

    /// Spawns `serve` for each listener on its worker (the k-th on worker k mod the number
    /// of workers), the listener registered there.
    fn serve_on_workers<F>(
        &self,
        listeners: Vec<std::net::TcpListener>,
        what: &'static str,
        serve: impl Fn(TcpListener) -> F,
    ) -> Vec<tokio::task::JoinHandle<()>>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let workers = self.data_path.workers();
        listeners
            .into_iter()
            .enumerate()
            .map(|(k, listener)| {
                let worker = &workers[k % workers.len()];
                // From std on the worker itself, so its reactor owns the listener.
                let _entered = worker.enter();
                match TcpListener::from_std(listener) {
                    Ok(listener) => worker.spawn(serve(listener)),
                    Err(error) => worker.spawn(async move { tracing::error!(%error, "cannot serve a {what} listener") }),
                }
            })
            .collect()
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
    /// cgroup on this node, plus the STRICT addresses whose interface was not found (the
    /// caller retries while that is non-zero).
    pub fn apply(&self, state: &ClusterState) -> anyhow::Result<usize> {
        let result = self.apply_inner(state);
        if result.is_err() {
            self.metrics.config().sync_failed();
        }
        result
    }

    fn apply_inner(&self, state: &ClusterState) -> anyhow::Result<usize> {
        let started = std::time::Instant::now();
        let view = translate::NodeView { node_name: self.options.node_name.as_deref(), cgroups: &self.cgroups };
        let mut reuse = self.reuse.lock().unwrap_or_else(|p| p.into_inner());
        let mut translation = translate::translate_reusing(state, &view, &mut reuse);
        let reused = reuse.last;
        drop(reuse);
        let translated = started.elapsed();
        let version = self.version.fetch_add(1, Ordering::AcqRel) + 1;
        let mut config = std::mem::take(&mut translation.config);
        config.version = version;
        let guarded = self.guarded(state, &view, &translation.allow_selected, &mut translation.problems);
        if let Some(mesh) = &self.mesh {
            let destination = mesh.destination(&self.options.node_ips, &guarded);
            let mesh_view = translate::mesh::mesh_view(state, &view, mesh.trust_domain(), destination);
            mesh.hold(&mesh_view);
            config.mesh = mesh_view.destinations;
            translation.problems.extend(mesh_view.problems);
        }
        // Pods first, so that a new caller's upstream sockets find its namespace.
        self.sockets.sync_pods(translation.caller_pods.clone());
        // Pods no longer STRICT are released before the proxy dials them from their
        // callers' namespaces; new STRICT pods are guarded after it dials them from the node.
        if let Some(guard) = &self.strict {
            guard.release(&guarded);
        }
        self.config.store(config);
        let published = started.elapsed();
        let maps = self.sync_maps(&translation);
        let strict = self.strict.as_ref().map(|guard| guard.sync(&guarded));
        let unguarded = strict.as_ref().map_or(0, |s| s.unresolved);
        translation.problems.extend(strict.iter().flat_map(|s| s.problems.iter().cloned()));
        self.log_new_problems(&translation.problems);
        let pending = translation.pending_cgroups;
        tracing::info!(
            version,
            services = translation.service_addrs.len(),
            enrolled = translation.enrolled_cgroups.len(),
            pending_cgroups = pending,
            problems = translation.problems.len(),
            routes_compiled = reused.routes_compiled,
            routes_reused = reused.routes_reused,
            ports_built = reused.ports_built,
            service_index_reused = reused.index_reused,
            translate_ms = translated.as_millis() as u64,
            published_ms = published.as_millis() as u64,
            "configuration applied"
        );
        self.metrics.config().applied(state, &translation, version);
        let complete = maps.services.is_complete() && maps.enrolled.is_complete();
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let previous = std::mem::replace(&mut *applied, Applied { translation: Some(translation), maps, strict, failed: false });
        drop(applied);
        self.start_serving();
        self.ready.store(true, Ordering::Release);
        let dropped = std::time::Instant::now();
        drop(previous);
        tracing::debug!(
            version,
            total_ms = started.elapsed().as_millis() as u64,
            drop_previous_ms = dropped.elapsed().as_millis() as u64,
            "configuration apply done"
        );
        if !complete {
            // Everything that fits is in the maps and served; the rest is reported.
            self.metrics.config().sync_failed();
        }
        // STRICT pods whose interface is not there yet are retried like missing cgroups.
        Ok(pending + unguarded)
    }

    /// Logs the problems the last applied translation did not have (each apply has them
    /// all; `/config_dump` lists them): a cluster with thousands of them is not logged
    /// thousands of lines per change.
    fn log_new_problems(&self, problems: &[String]) {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let known: HashSet<&str> =
            applied.translation.iter().flat_map(|t| t.problems.iter().map(String::as_str)).collect();
        for problem in problems.iter().filter(|p| !known.contains(p.as_str())) {
            tracing::warn!(%problem, "configuration problem");
        }
    }

    /// Writes the Service and enrollment maps: every entry that can be written is, even
    /// when some cannot (a full map); the rest is counted, logged and reported.
    fn sync_maps(&self, translation: &Translation) -> MapSync {
        let outcome = |wanted: usize, result: anyhow::Result<SyncOutcome>| {
            result.unwrap_or_else(|error| SyncOutcome { unsynced: wanted, first_error: Some(format!("{error:#}")) })
        };
        let maps = MapSync {
            services: outcome(translation.service_addrs.len(), self.redirector.sync_services(&translation.service_addrs)),
            enrolled: outcome(translation.enrolled_cgroups.len(), self.redirector.sync_enrolled(&translation.enrolled_cgroups)),
        };
        for (map, outcome) in maps.each() {
            self.metrics.config().map_synced(map, outcome.unsynced);
            if !outcome.is_complete() {
                static INCOMPLETE: RateLimitedLog = RateLimitedLog::new(DEFAULT_INTERVAL);
                if let Some(suppressed) = INCOMPLETE.admit() {
                    tracing::error!(
                        map,
                        unsynced = outcome.unsynced,
                        error = outcome.first_error.as_deref().unwrap_or(""),
                        suppressed,
                        "eBPF map sync incomplete; the entries that fit are applied"
                    );
                }
            }
        }
        maps
    }

    /// The addresses to guard (mesh on only): this node's STRICT pods, the pods an ALLOW
    /// AuthorizationPolicy selects (a plaintext caller has no identity a rule could
    /// allow, so they accept only mesh traffic too).
    fn guarded(
        &self,
        state: &ClusterState,
        view: &translate::NodeView<'_>,
        allow_selected: &BTreeSet<IpAddr>,
        problems: &mut Vec<String>,
    ) -> BTreeSet<IpAddr> {
        if self.strict.is_none() {
            return BTreeSet::new();
        }
        let mut guarded = translate::mesh_mode::guarded_pods(state, view);
        problems.append(&mut guarded.problems);
        guarded.ips.extend(allow_selected.iter().copied());
        guarded.ips
    }

    /// The STRICT guard (None when the mesh is off).
    pub fn strict(&self) -> Option<&Arc<StrictGuard>> {
        self.strict.as_ref()
    }

    /// Whether the cgroup retry should translate again: the last apply failed, a pod
    /// that lacked its cgroup has one now (checked pod by pod, without translating), or
    /// a STRICT pod's interface was not found yet.
    pub fn retry_due(&self) -> bool {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        applied.failed
            || applied.strict.as_ref().is_some_and(|s| s.unresolved > 0)
            || applied
                .translation
                .as_ref()
                .is_some_and(|t| t.pending_pods.iter().any(|pod| pod.cgroup_found(&self.cgroups)))
    }

    /// `/ready`'s body: "ready", plus what is degraded.
    pub fn readiness_text(&self) -> String {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let mut problems = applied.maps.problems();
        problems.extend(self.mesh.iter().flat_map(NodeMesh::problems));
        if let Some(strict) = applied.strict.as_ref().filter(|s| s.unresolved > 0) {
            problems.push(format!("{} STRICT pod addresses are not guarded in the kernel yet (see /config_dump problems)", strict.unresolved));
        }
        if problems.is_empty() {
            "ready\n".to_string()
        } else {
            format!("ready, degraded:\n{}\n", problems.join("\n"))
        }
    }

    /// The route status of the last applied translation (empty before the first apply).
    pub fn route_status(&self) -> Vec<translate::RouteStatus> {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        applied.translation.as_ref().map(|t| t.route_status.clone()).unwrap_or_default()
    }

    /// The AuthorizationPolicy status of the last applied translation.
    pub fn policy_status(&self) -> Vec<translate::PolicyStatus> {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        applied.translation.as_ref().map(|t| t.policy_status.clone()).unwrap_or_default()
    }

    /// [`Node::apply`], logging a failure; returns the pods still lacking a cgroup, and
    /// at least 1 after a failure so that the caller's retry tries again.
    pub fn apply_logged(&self, state: &ClusterState, previous: usize) -> usize {
        match self.apply(state) {
            Ok(pending) => pending,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "applying configuration failed");
                self.applied.lock().unwrap_or_else(|p| p.into_inner()).failed = true;
                previous.max(1)
            }
        }
    }

    pub fn config_dump(&self) -> serde_json::Value {
        let config = self.config.load();
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let (status, mut problems) = match &applied.translation {
            Some(t) => (serde_json::to_value(&t.route_status).unwrap_or_default(), t.problems.clone()),
            None => (json!([]), vec![]),
        };
        problems.extend(applied.maps.problems());
        let map_sync: serde_json::Map<String, serde_json::Value> = applied
            .maps
            .each()
            .into_iter()
            .map(|(map, o)| (map.to_string(), json!({"unsynced": o.unsynced, "error": o.first_error})))
            .collect();
        json!({
            "config": config.dump(),
            "routeStatus": status,
            "policyStatus": applied.translation.as_ref().map(|t| serde_json::to_value(&t.policy_status).unwrap_or_default()).unwrap_or(json!([])),
            "problems": problems,
            "mapSync": map_sync,
            "certificates": self.mesh.as_ref().map(NodeMesh::status),
            "strict": applied.strict.as_ref().map(|s| json!({
                "guardedAddresses": s.guarded,
                "interfaces": s.interfaces,
                "unresolved": s.unresolved,
                "trustedCgroups": self.strict.iter().flat_map(|g| g.trusted()).map(|t| t.path.display().to_string()).collect::<Vec<_>>(),
            })),
        })
    }

    pub fn redirect_dump(&self) -> serde_json::Value {
        let stats = self.redirector.stats().unwrap_or_default();
        let names = [
            "redirected", "skipped_not_enrolled", "skipped_not_service", "skipped_not_tcp",
            "tracking_full", "established", "closed", "skipped_no_proxy",
        ];
        let mut counters: serde_json::Map<String, serde_json::Value> =
            names.iter().zip(stats.iter()).map(|(n, v)| (n.to_string(), json!(v))).collect();
        let limit_stats = self.redirector.limit_stats().unwrap_or_default();
        for (name, value) in ["refused_pod_quota", "refused_mptcp"].iter().zip(limit_stats.iter()) {
            counters.insert(name.to_string(), json!(value));
        }
        let tracked = self.redirector.tracked().ok();
        let pod_sockets: serde_json::Map<String, serde_json::Value> = self
            .redirector
            .pod_sockets()
            .unwrap_or_default()
            .into_iter()
            .map(|(cgroup, n)| (cgroup.to_string(), json!(n)))
            .collect();
        json!({
            "counters": counters,
            "perPodSocketQuota": self.options.per_pod_sockets,
            "podSockets": pod_sockets,
            "trackedSockets": tracked.as_ref().map(|t| t.sockets),
            "trackedConnections": tracked.as_ref().map(|t| t.connections),
            "runStatsEnabled": self.run_stats.is_some(),
            "programs": program_runs(&self.redirector, self.strict.as_deref()).iter().map(ProgramRuns::to_json).collect::<Vec<_>>(),
        })
    }
}
