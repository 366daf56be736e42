//! The agent's side of `/metrics`: the data path's families (from proxy-core), the
//! eBPF programs' per-CPU counters read at scrape time, and the configuration state.
//! Every metric is listed in the README's "Metrics" section.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use ambit_proxy_core::metrics::ProxyMetrics;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::cluster::ClusterState;
use crate::redirect::Redirector;
use crate::translate::Translation;

/// Watch failures of the Kubernetes mode (each one retried with backoff).
static WATCH_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Counts one failed watch (list or watch request) in `ambit_config_watch_errors_total`.
pub fn watch_error() {
    WATCH_ERRORS.fetch_add(1, Ordering::Relaxed);
}

/// The registry served at `/metrics` and the state its collectors read.
pub struct NodeMetrics {
    registry: Registry,
    config: Arc<ConfigState>,
    proxy: Option<Arc<ProxyMetrics>>,
}

impl NodeMetrics {
    /// Builds the registry. With `data_path` false the proxy records no metrics at all
    /// (`--no-metrics`); the eBPF and configuration metrics, read only at scrape time,
    /// stay.
    pub fn new(redirector: Arc<Redirector>, data_path: bool) -> Self {
        let mut registry = Registry::default();
        let proxy = data_path.then(|| ProxyMetrics::register(&mut registry));
        let config = Arc::new(ConfigState::default());
        registry.register_collector(Box::new(RedirectCollector { redirector }));
        registry.register_collector(Box::new(config.clone()));
        Self { registry, config, proxy }
    }

    /// Adds a collector read at scrape time.
    /// The registry, for families registered by other parts of the agent (the mesh's).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn register_collector(&mut self, collector: Box<dyn prometheus_client::collector::Collector>) {
        self.registry.register_collector(collector);
    }

    /// The data path's metrics (None with `--no-metrics`).
    pub fn proxy(&self) -> Option<Arc<ProxyMetrics>> {
        self.proxy.clone()
    }

    pub fn config(&self) -> &ConfigState {
        &self.config
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "encoding metrics failed");
        }
        text
    }
}

/// Reads the eBPF programs' per-CPU counters and the tracking maps' sizes at scrape time.
struct RedirectCollector {
    redirector: Arc<Redirector>,
}

impl std::fmt::Debug for RedirectCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedirectCollector")
    }
}

/// Index of each `ambit_ebpf_common::Stat` in [`Redirector::stats`].
const REDIRECTED: usize = 0;
const SKIPPED: [(usize, &str); 4] = [(1, "not_enrolled"), (2, "not_service"), (3, "not_tcp"), (7, "no_proxy")];
const TRACKING_FULL: usize = 4;
const ESTABLISHED: usize = 5;
const CLOSED: usize = 6;
/// Index of each `ambit_ebpf_common::LimitStat` in [`Redirector::limit_stats`].
const REFUSED: [(usize, &str); 2] = [(0, "pod_quota"), (1, "mptcp")];

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

impl prometheus_client::collector::Collector for RedirectCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = match self.redirector.stats() {
            Ok(stats) => stats,
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "reading the eBPF counters failed");
                return Ok(());
            }
        };
        let stat = |i: usize| stats.get(i).copied().unwrap_or(0);
        counter(&mut encoder, "ambit_redirect_redirected", "connect() calls redirected to the proxy by the eBPF hooks", stat(REDIRECTED))?;
        {
            let mut family = encoder.encode_descriptor(
                "ambit_redirect_skipped",
                "connect() calls the eBPF hooks left alone, by reason",
                None,
                MetricType::Counter,
            )?;
            for (index, reason) in SKIPPED {
                ConstCounter::new(stat(index)).encode(family.encode_family(&[("reason", reason)])?)?;
            }
        }
        counter(&mut encoder, "ambit_redirect_tracking_full", "connect() calls refused because the socket tracking map was full", stat(TRACKING_FULL))?;
        let limit_stats = self.redirector.limit_stats().unwrap_or_default();
        {
            let mut family = encoder.encode_descriptor(
                "ambit_redirect_refused",
                "connect() calls the eBPF hooks refused (EPERM), by reason: the pod held its quota of tracked sockets, or MPTCP to a Service",
                None,
                MetricType::Counter,
            )?;
            for (index, reason) in REFUSED {
                let value = limit_stats.get(index).copied().unwrap_or(0);
                ConstCounter::new(value).encode(family.encode_family(&[("reason", reason)])?)?;
            }
        }
        counter(&mut encoder, "ambit_redirect_established", "Redirected connections established (handed to the proxy's lookup map)", stat(ESTABLISHED))?;
        counter(&mut encoder, "ambit_redirect_closed", "Tracked redirected connections closed and forgotten", stat(CLOSED))?;
        if let Ok(tracked) = self.redirector.tracked() {
            gauge(&mut encoder, "ambit_redirect_tracked_sockets", "Redirected sockets not yet released", tracked.sockets as i64)?;
            gauge(&mut encoder, "ambit_redirect_tracked_connections", "Established redirected connections not yet closed", tracked.connections as i64)?;
        }
        Ok(())
    }
}

/// The configuration as last applied, for the `ambit_config_*` metrics.
#[derive(Debug, Default)]
pub struct ConfigState {
    applied: Mutex<Applied>,
    syncs: AtomicU64,
    sync_errors: AtomicU64,
    maps: MapSyncCounts,
}

/// Per eBPF map written by the agent: syncs that left entries out, and how many.
#[derive(Debug, Default)]
struct MapSyncCounts {
    /// (map name, syncs that left entries unsynced, entries unsynced by the last sync).
    by_map: Mutex<Vec<(&'static str, u64, usize)>>,
}

impl MapSyncCounts {
    fn record(&self, map: &'static str, unsynced: usize) {
        let mut by_map = self.by_map.lock().unwrap_or_else(|p| p.into_inner());
        let index = match by_map.iter().position(|(m, ..)| *m == map) {
            Some(i) => i,
            None => {
                by_map.push((map, 0, 0));
                by_map.len() - 1
            }
        };
        let entry = &mut by_map[index];
        entry.1 += u64::from(unsynced > 0);
        entry.2 = unsynced;
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let by_map = self.by_map.lock().unwrap_or_else(|p| p.into_inner()).clone();
        {
            let mut errors = encoder.encode_descriptor(
                "ambit_redirect_map_sync_errors",
                "Syncs of an eBPF map that left entries out (e.g. the map was full), by map",
                None,
                MetricType::Counter,
            )?;
            for (map, failed, _) in &by_map {
                ConstCounter::new(*failed).encode(errors.encode_family(&[("map", *map)])?)?;
            }
        }
        let mut unsynced = encoder.encode_descriptor(
            "ambit_redirect_map_unsynced_entries",
            "Entries the last sync of an eBPF map could not write or remove, by map",
            None,
            MetricType::Gauge,
        )?;
        for (map, _, n) in &by_map {
            ConstGauge::new(*n as i64).encode(unsynced.encode_family(&[("map", *map)])?)?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Applied {
    resources: Vec<(&'static str, usize)>,
    routes_rejected: usize,
    routes_partially_invalid: usize,
    problems: usize,
    enrolled: usize,
    service_ports: usize,
    version: u64,
    last_sync_seconds: f64,
}

impl ConfigState {
    /// Records a successful apply of `state` (translated to `translation`).
    pub fn applied(&self, state: &ClusterState, translation: &Translation, version: u64) {
        let parents = || translation.route_status.iter().flat_map(|r| r.parents.iter());
        let applied = Applied {
            resources: vec![
                ("Namespace", state.namespaces.len()),
                ("Pod", state.pods.len()),
                ("Service", state.services.len()),
                ("EndpointSlice", state.endpoint_slices.len()),
                ("HTTPRoute", state.http_routes.len()),
                ("GRPCRoute", state.grpc_routes.len()),
                ("TLSRoute", state.tls_routes.len()),
                ("TCPRoute", state.tcp_routes.len()),
                ("MeshNode", state.mesh_nodes.len()),
                ("AuthorizationPolicy", state.authorization_policies.len()),
            ],
            routes_rejected: parents().filter(|p| !p.accepted()).count(),
            routes_partially_invalid: parents().filter(|p| p.accepted() && !p.fully_ok()).count(),
            problems: translation.problems.len(),
            enrolled: translation.enrolled_cgroups.len(),
            service_ports: translation.service_addrs.len(),
            version,
            last_sync_seconds: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
        };
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = applied;
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how one eBPF map's sync went (`unsynced` 0: complete).
    pub fn map_synced(&self, map: &'static str, unsynced: usize) {
        self.maps.record(map, unsynced);
    }

    /// Records a failed apply (the eBPF maps could not be fully updated).
    pub fn sync_failed(&self) {
        self.sync_errors.fetch_add(1, Ordering::Relaxed);
    }
}

impl prometheus_client::collector::Collector for ConfigState {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut family = encoder.encode_descriptor(
                "ambit_config_resources",
                "Objects in the agent's view of the cluster, by kind",
                None,
                MetricType::Gauge,
            )?;
            for (kind, n) in &applied.resources {
                ConstGauge::new(*n as i64).encode(family.encode_family(&[("kind", *kind)])?)?;
            }
        }
        gauge(&mut encoder, "ambit_config_routes_rejected", "Route parentRefs with Accepted=False", applied.routes_rejected as i64)?;
        gauge(&mut encoder, "ambit_config_routes_partially_invalid", "Route parentRefs accepted with dropped rules or unresolved backends", applied.routes_partially_invalid as i64)?;
        gauge(&mut encoder, "ambit_config_problems", "Configuration problems outside route status (e.g. pods without a uid)", applied.problems as i64)?;
        gauge(&mut encoder, "ambit_config_enrolled_workloads", "Enrolled pod cgroups on this node", applied.enrolled as i64)?;
        gauge(&mut encoder, "ambit_config_service_ports", "Service cluster IP:port pairs redirected", applied.service_ports as i64)?;
        gauge(&mut encoder, "ambit_config_version", "Version of the configuration the proxy serves", applied.version as i64)?;
        {
            let metric = encoder.encode_descriptor(
                "ambit_config_last_sync_timestamp_seconds",
                "Unix time of the last successful configuration apply",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(applied.last_sync_seconds).encode(metric)?;
        }
        drop(applied);
        counter(&mut encoder, "ambit_config_syncs", "Successful configuration applies", self.syncs.load(Ordering::Relaxed))?;
        counter(&mut encoder, "ambit_config_sync_errors", "Failed configuration applies", self.sync_errors.load(Ordering::Relaxed))?;
        self.maps.encode(&mut encoder)?;
        counter(&mut encoder, "ambit_config_watch_errors", "Failed Kubernetes list/watch requests (retried with backoff)", WATCH_ERRORS.load(Ordering::Relaxed))?;
        Ok(())
    }
}
