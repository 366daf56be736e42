//! `ambit-agent`: Ambit's per-node agent.

mod allocator;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ambit_proxy_core::proxy::{ConnectionTimeouts, Http2Limits, MirrorLimits, ProxyOptions};

use ambit_proxy_core::limits::{Cap, LimitOptions};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ambit-agent", version, about = "Ambit: node-level ambient service mesh (eBPF redirect + per-node GAMMA proxy)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the mesh on this node from a directory of Kubernetes manifests (no cluster needed).
    Standalone {
        /// Directory of Kubernetes YAML (Namespaces, Pods, Services, EndpointSlices, HTTPRoutes, GRPCRoutes); watched for changes.
        #[arg(long)]
        manifests: PathBuf,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Serve the mesh on this node from the Kubernetes API (the DaemonSet mode).
    Run {
        #[command(flatten)]
        kube: ambit_agent::kubernetes::KubeArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Sign workload certificates from the CertificateSigningRequest API (Kubernetes mode's CA: its own Deployment, the only holder of the CA key).
    Signer {
        #[command(flatten)]
        args: ambit_agent::signer::SignerArgs,
    },
    /// Validate a manifests directory: print each route's status per parent; exit 1 if any is rejected.
    Check {
        #[arg(long)]
        manifests: PathBuf,
    },
    /// Explain which route and rule would handle a request (or, with `authz`, whether a caller may call a pod).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Explain {
        #[command(subcommand)]
        what: Option<ExplainWhat>,
        #[arg(long, required = true)]
        manifests: Option<PathBuf>,
        /// The calling pod, NAMESPACE/POD.
        #[arg(long, required = true)]
        from: Option<String>,
        /// The destination: SERVICE[.NAMESPACE]:PORT or CLUSTER-IP:PORT.
        #[arg(long, required = true)]
        to: Option<String>,
        #[arg(long, default_value = "/")]
        path: String,
        #[arg(long, default_value = "GET")]
        method: String,
        /// A request header, NAME:VALUE (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
        /// The mesh's trust domain (for the identities the wire needs).
        #[arg(long, env = "AMBIT_TRUST_DOMAIN", default_value = "cluster.local")]
        trust_domain: String,
    },
    /// Ask this pod's agent over its admin unix socket for /ready (or --path); exit 0 on 200 (the kubelet's exec probes).
    Probe {
        #[arg(long, env = "AMBIT_ADMIN_SOCKET")]
        admin_socket: PathBuf,
        #[arg(long, default_value = "/ready")]
        path: String,
    },
    /// Manage a local certificate authority (standalone mode's workload certificates).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Detach Ambit's eBPF programs from the node and remove their pins.
    Uninstall {
        #[arg(long, env = "AMBIT_BPF_PIN_DIR", default_value = "/sys/fs/bpf/ambit")]
        bpf_pin_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ExplainWhat {
    /// May a caller call a pod on a port (with a method and path)? Names the AuthorizationPolicy and rule that decide.
    Authz {
        #[arg(long)]
        manifests: PathBuf,
        /// The caller: NAMESPACE/SERVICEACCOUNT or a SPIFFE ID.
        #[arg(long)]
        from: String,
        /// The called pod, NAMESPACE/POD.
        #[arg(long)]
        to: String,
        /// The destination pod port.
        #[arg(long)]
        port: u16,
        /// The request's method (HTTP rules; default GET when --path is given).
        #[arg(long)]
        method: Option<String>,
        /// The request's path (HTTP rules; default / when --method is given).
        #[arg(long)]
        path: Option<String>,
        /// The mesh's trust domain (for NAMESPACE/SERVICEACCOUNT callers).
        #[arg(long, env = "AMBIT_TRUST_DOMAIN", default_value = "cluster.local")]
        trust_domain: String,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create a CA directory: ca.pem (the trust bundle), ca-key.pem (mode 0600), ca.json.
    /// Refuses to overwrite an existing CA.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        /// Validity of the CA certificate.
        #[arg(long, default_value = "87600h", value_parser = ambit_agent::duration::parse_positive_duration)]
        validity: Duration,
        /// The longest workload certificate lifetime this CA signs.
        #[arg(long, default_value = "2160h", value_parser = ambit_agent::duration::parse_positive_duration)]
        max_workload_lifetime: Duration,
    },
}

#[derive(Args, Clone)]
struct NodeArgs {
    /// This node's name (pods on other nodes are not enrolled).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// This node's addresses reachable from its pods; redirected connections are sent there (one IPv4 and/or one IPv6).
    #[arg(long = "node-ip", env = "NODE_IP", value_delimiter = ',', required = true)]
    node_ips: Vec<IpAddr>,
    /// The proxy's listening port.
    #[arg(long, env = "AMBIT_PROXY_PORT", default_value_t = 15001)]
    proxy_port: u16,
    /// Data-path worker threads. Default: the CPUs this process may use (its affinity
    /// and cgroup CPU quota). Set it to the agent container's CPU limit when that is
    /// lower; more workers than cores only add context switches.
    #[arg(long, env = "AMBIT_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
    /// The HBONE port: where this node accepts mutual-TLS tunnels from other nodes, and
    /// where it tunnels to them (every node uses the same; Istio ambient: 15008).
    #[arg(long, env = "AMBIT_HBONE_PORT", default_value_t = ambit_proxy_core::hbone::DEFAULT_PORT)]
    hbone_port: u16,
    /// The kubelet's cgroup root (where kubepods lives); also where the eBPF hooks attach. Default: the cgroup2 mount.
    #[arg(long, env = "AMBIT_CGROUP_ROOT")]
    cgroup_root: Option<PathBuf>,
    /// Where eBPF programs and maps are pinned (bpffs).
    #[arg(long, env = "AMBIT_BPF_PIN_DIR", default_value = "/sys/fs/bpf/ambit")]
    bpf_pin_dir: PathBuf,
    /// Admin API address (health, readiness, config dump, log level). Loopback only
    /// unless --admin-allow-remote: it is unauthenticated.
    #[arg(long, env = "AMBIT_ADMIN_ADDR", default_value = "127.0.0.1:15021")]
    admin_addr: SocketAddr,
    /// Allow a non-loopback --admin-addr. Anyone who reaches it can change logging and
    /// read every workload's UID and cgroup.
    #[arg(long, env = "AMBIT_ADMIN_ALLOW_REMOTE")]
    admin_allow_remote: bool,
    /// Read-only listener for kubelet probes: GET /healthz and /ready only.
    #[arg(long, env = "AMBIT_HEALTH_ADDR", value_parser = ambit_agent::listen_addr::parse_listen_addr)]
    health_addr: Option<SocketAddr>,
    /// Read-only listener for Prometheus: GET /metrics only.
    #[arg(long, env = "AMBIT_METRICS_ADDR", value_parser = ambit_agent::listen_addr::parse_listen_addr)]
    metrics_addr: Option<SocketAddr>,
    /// Size AMBIT_ENROLLED,AMBIT_SERVICES (entries) when they are created (tests).
    #[arg(long, hide = true)]
    bpf_map_capacity: Option<ambit_agent::redirect::MapCapacity>,
    /// Also serve the admin API on this unix socket (for `ambit-agent probe`: during a
    /// surge rollout two agents share the admin port, the socket is per pod).
    #[arg(long, env = "AMBIT_ADMIN_SOCKET")]
    admin_socket: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "AMBIT_LOG", default_value = "info")]
    log_level: String,
    /// Log as JSON lines.
    #[arg(long, env = "AMBIT_LOG_JSON")]
    log_json: bool,
    /// Start with access logs on (switchable via the admin API).
    #[arg(long, env = "AMBIT_ACCESS_LOG")]
    access_log: bool,
    /// Record no data-path metrics (requests, latencies, TCP); `/metrics` still serves the
    /// eBPF and configuration metrics. For measuring the metrics' cost.
    #[arg(long, env = "AMBIT_NO_METRICS")]
    no_metrics: bool,
    /// Leave the kernel's BPF run-time statistics off (run count and time per eBPF
    /// program, in `/redirect` and `/metrics`). On, every BPF program run on the host
    /// reads the clock twice.
    #[arg(long, env = "AMBIT_NO_BPF_STATS")]
    no_bpf_stats: bool,
    /// How long open connections may finish after SIGTERM.
    #[arg(long, default_value = "10s", value_parser = ambit_agent::duration::parse_duration)]
    drain: Duration,
    /// Most live redirected sockets one pod may hold in the eBPF tracking map; its
    /// further connects to Services fail with EPERM (0: no quota).
    #[arg(long, env = "AMBIT_MAX_TRACKED_SOCKETS_PER_POD", default_value_t = ambit_agent::redirect::DEFAULT_PER_POD_SOCKETS)]
    max_tracked_sockets_per_pod: u32,
    /// A cgroup (relative to the cgroup v2 mount) whose processes may open connections
    /// to STRICT pods, for kubelet probes; repeatable. Default: the cgroup of the
    /// process named `kubelet`, when one is found.
    #[arg(long = "probe-cgroup", env = "AMBIT_PROBE_CGROUPS", value_delimiter = ',')]
    probe_cgroups: Vec<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    certs: ambit_agent::ca::CertArgs,
}

/// Data-path timeouts and limits (defaults and their counterparts in Envoy, ztunnel and
/// HAProxy: README "Timeouts and limits" and "Limits").
#[derive(Args, Clone)]
struct LimitArgs {
    /// HTTP/1: longest time from accepting a connection, or from a request head's first byte, to the head's end.
    #[arg(long, env = "AMBIT_REQUEST_HEAD_TIMEOUT", default_value = "10s", value_parser = ambit_agent::duration::parse_positive_duration)]
    request_head_timeout: Duration,
    /// Downstream HTTP connections with no request in flight are closed after this long (HTTP/1 keep-alive, HTTP/2).
    #[arg(long, env = "AMBIT_HTTP_IDLE_TIMEOUT", default_value = "5m", value_parser = ambit_agent::duration::parse_positive_duration)]
    http_idle_timeout: Duration,
    /// TCP passthrough and upgraded (WebSocket) connections with no byte either way for this long are closed.
    #[arg(long, env = "AMBIT_STREAM_IDLE_TIMEOUT", default_value = "1h", value_parser = ambit_agent::duration::parse_positive_duration)]
    stream_idle_timeout: Duration,
    /// Timeout for connecting to a backend endpoint.
    #[arg(long, env = "AMBIT_CONNECT_TIMEOUT", default_value = "5s", value_parser = ambit_agent::duration::parse_positive_duration)]
    connect_timeout: Duration,
    /// Idle pooled upstream connections are closed after this long.
    #[arg(long, env = "AMBIT_UPSTREAM_IDLE_TIMEOUT", default_value = "90s", value_parser = ambit_agent::duration::parse_positive_duration)]
    upstream_idle_timeout: Duration,
    /// HTTP/2 keep-alive: a PING after this long without frames (both directions).
    #[arg(long, env = "AMBIT_HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = ambit_agent::duration::parse_positive_duration)]
    http2_keepalive_interval: Duration,
    /// HTTP/2 keep-alive: the connection is closed when a PING is not answered within this.
    #[arg(long, env = "AMBIT_HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = ambit_agent::duration::parse_positive_duration)]
    http2_keepalive_timeout: Duration,
    /// Streams one downstream HTTP/2 connection may have open at once.
    #[arg(long, env = "AMBIT_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    http2_max_concurrent_streams: u32,
    /// Streams a client may reset before they are accepted; more gets GOAWAY (rapid reset).
    #[arg(long, env = "AMBIT_HTTP2_MAX_PENDING_RESETS", default_value_t = 20)]
    http2_max_pending_resets: usize,
    /// Streams the proxy may reset for client errors on one connection; more gets GOAWAY.
    #[arg(long, env = "AMBIT_HTTP2_MAX_ERROR_RESETS", default_value_t = 1024)]
    http2_max_error_resets: usize,
    /// RequestMirror requests in flight on this node at once; more are dropped.
    #[arg(long, env = "AMBIT_MAX_MIRRORS_IN_FLIGHT", default_value_t = 256)]
    max_mirrors_in_flight: usize,
    /// A mirror request is abandoned after this long.
    #[arg(long, env = "AMBIT_MIRROR_TIMEOUT", default_value = "10s", value_parser = ambit_agent::duration::parse_positive_duration)]
    mirror_timeout: Duration,
    /// Most open proxied connections per caller pod; more are reset at accept (0: no cap).
    #[arg(long, env = "AMBIT_MAX_CONNECTIONS_PER_POD", default_value_t = LimitOptions::DEFAULT_CONNECTIONS_PER_CALLER)]
    max_connections_per_pod: usize,
    /// Most open proxied connections on the node (0: no cap).
    #[arg(long, env = "AMBIT_MAX_CONNECTIONS", default_value_t = LimitOptions::DEFAULT_CONNECTIONS_PER_NODE)]
    max_connections: usize,
    /// Most HTTP requests in flight per caller pod; more get 503 (gRPC: UNAVAILABLE) (0: no cap).
    #[arg(long, env = "AMBIT_MAX_REQUESTS_PER_POD", default_value_t = LimitOptions::DEFAULT_REQUESTS_PER_CALLER)]
    max_requests_per_pod: usize,
    /// Most HTTP requests in flight on the node (0: no cap).
    #[arg(long, env = "AMBIT_MAX_REQUESTS", default_value_t = LimitOptions::DEFAULT_REQUESTS_PER_NODE)]
    max_requests: usize,
}

impl LimitArgs {
    fn proxy_options(&self) -> ProxyOptions {
        ProxyOptions {
            connect_timeout: self.connect_timeout,
            idle_timeout: self.upstream_idle_timeout,
            timeouts: ConnectionTimeouts {
                request_head: self.request_head_timeout,
                http_idle: self.http_idle_timeout,
                stream_idle: self.stream_idle_timeout,
                http2_keep_alive_interval: self.http2_keepalive_interval,
                http2_keep_alive_timeout: self.http2_keepalive_timeout,
            },
            http2: Http2Limits {
                max_concurrent_streams: self.http2_max_concurrent_streams,
                max_pending_accept_reset_streams: self.http2_max_pending_resets,
                max_local_error_reset_streams: self.http2_max_error_resets,
            },
            mirrors: MirrorLimits { max_in_flight: self.max_mirrors_in_flight, timeout: self.mirror_timeout },
            limits: LimitOptions {
                connections_per_caller: Cap::new(self.max_connections_per_pod),
                connections_per_node: Cap::new(self.max_connections),
                requests_per_caller: Cap::new(self.max_requests_per_pod),
                requests_per_node: Cap::new(self.max_requests),
            },
            ..ProxyOptions::default()
        }
    }
}

impl NodeArgs {
    /// Standalone mode's mesh: on with `--ca-dir` (the agent signs with that CA).
    fn standalone_mesh(&self) -> anyhow::Result<Option<ambit_agent::mesh::MeshOptions>> {
        let settings = self.certs.settings()?;
        let Some(ca_dir) = &settings.ca_dir else { return Ok(None) };
        let (bundle, source) = ambit_agent::ca::local_source(&settings, ca_dir)?;
        Ok(Some(ambit_agent::mesh::MeshOptions {
            trust_domain: settings.trust_domain,
            lifetime: settings.lifetime,
            hbone_port: self.hbone_port,
            bundle,
            source: std::sync::Arc::new(source),
            bundle_updates: None,
        }))
    }

    fn options(&self, mesh: Option<ambit_agent::mesh::MeshOptions>) -> anyhow::Result<ambit_agent::node::NodeOptions> {
        let cgroup_root = match &self.cgroup_root {
            Some(root) => root.clone(),
            None => ambit_agent::cgroups::cgroup2_mount()?,
        };
        Ok(ambit_agent::node::NodeOptions {
            node_name: self.node_name.clone(),
            node_ips: self.node_ips.clone(),
            proxy_port: self.proxy_port,
            cgroup_root,
            bpf_pin_dir: self.bpf_pin_dir.clone(),
            admin_addr: self.admin_addr,
            admin_allow_remote: self.admin_allow_remote,
            health_addr: self.health_addr,
            metrics_addr: self.metrics_addr,
            map_capacity: self.bpf_map_capacity.unwrap_or_default(),
            admin_socket: self.admin_socket.clone(),
            access_log: self.access_log,
            metrics: !self.no_metrics,
            bpf_stats: !self.no_bpf_stats,
            drain: self.drain,
            proxy: self.limits.proxy_options(),
            per_pod_sockets: self.max_tracked_sockets_per_pod,
            probe_cgroups: self.probe_cgroups.clone(),
            mesh,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ambit-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Standalone { manifests, node } => {
            let logs = ambit_agent::logging::init(&node.log_level, node.log_json)?;
            let options = node.options(node.standalone_mesh()?)?;
            let data_path = data_path_runtime(node.workers)?;
            control_runtime()?.block_on(ambit_agent::standalone::run(manifests, options, logs, data_path.data_path().clone()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { kube, node } => {
            let logs = ambit_agent::logging::init(&node.log_level, node.log_json)?;
            let certs = node.certs.settings()?;
            let mesh = match kube.mesh {
                true => Some(ambit_agent::kubernetes::mesh::MeshSettings::new(certs, node.hbone_port, kube.trust_bundle_wait)?),
                false => None,
            };
            let options = node.options(None)?;
            let data_path = data_path_runtime(node.workers)?;
            control_runtime()?.block_on(ambit_agent::kubernetes::run(kube, options, mesh, logs, data_path.data_path().clone()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Signer { args } => {
            ambit_agent::logging::init(&args.log_level, args.log_json)?;
            control_runtime()?.block_on(ambit_agent::signer::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { manifests } => {
            let report = ambit_agent::check::check(&manifests)?;
            print!("{report}");
            Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Explain { what: Some(ExplainWhat::Authz { manifests, from, to, port, method, path, trust_domain }), .. } => {
            let trust_domain = ambit_proxy_core::identity::TrustDomain::new(&trust_domain)?;
            let (state, errors) = ambit_agent::manifests::load_dir(&manifests);
            for error in &errors {
                eprintln!("warning: {error}");
            }
            let question = ambit_agent::authz::explain::AuthzQuestion {
                from: &from,
                to: &to,
                port,
                method: method.as_deref(),
                path: path.as_deref(),
            };
            let explanation = ambit_agent::authz::explain::explain_authz(&state, &question, &trust_domain)?;
            print!("{explanation}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { what: None, manifests, from, to, path, method, headers, trust_domain } => {
            let (Some(manifests), Some(from), Some(to)) = (manifests, from, to) else {
                anyhow::bail!("explain needs --manifests, --from and --to");
            };
            let trust_domain = ambit_proxy_core::identity::TrustDomain::new(&trust_domain)?;
            let (mut state, errors) = ambit_agent::manifests::load_dir(&manifests);
            // Services written by hand have no cluster IP until an API server allocates one.
            for assigned in ambit_agent::manifests::allocate_missing_cluster_ips(&mut state) {
                eprintln!("note: placeholder cluster IP {assigned} (none in the manifest)");
            }
            for error in &errors {
                eprintln!("warning: {error}");
            }
            let (ns, pod) = from
                .split_once('/')
                .ok_or_else(|| anyhow::anyhow!("--from must be NAMESPACE/POD, got {from:?}"))?;
            let headers = headers
                .iter()
                .map(|h| {
                    h.split_once(':')
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                        .ok_or_else(|| anyhow::anyhow!("--header must be NAME:VALUE, got {h:?}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let explanation = ambit_agent::explain::explain_in(&state, (ns, pod), &to, &method, &path, &headers, &trust_domain)?;
            print!("{explanation}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe { admin_socket, path } => match ambit_agent::probe::probe(&admin_socket, &path) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(error) => {
                eprintln!("ambit-agent probe: {error:#}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Ca { command: CaCommand::Init { dir, trust_domain, validity, max_workload_lifetime } } => {
            let trust_domain = ambit_proxy_core::identity::TrustDomain::new(&trust_domain)?;
            let init = ambit_agent::ca::CaInit { trust_domain, validity, max_workload_lifetime };
            let authority = ambit_agent::ca::init_ca(&dir, &init)?;
            println!("created a CA for trust domain {} in {}", authority.trust_domain, dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Uninstall { bpf_pin_dir } => {
            ambit_agent::strict::StrictGuard::uninstall(&bpf_pin_dir)?;
            ambit_agent::redirect::Redirector::uninstall(&bpf_pin_dir)?;
            println!("removed Ambit's eBPF programs and maps under {}", bpf_pin_dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The proxy listeners and their connections: `workers` threads, or one per CPU this
/// process may use (affinity mask and cgroup CPU quota: [`ambit_agent::cpus`]).
fn data_path_runtime(workers: Option<u16>) -> anyhow::Result<ambit_agent::data_runtime::DataPathRuntime> {
    let workers = workers.map_or_else(|| ambit_agent::cpus::usable_cpus().get(), usize::from);
    tracing::info!(workers, "data-path runtime");
    Ok(ambit_agent::data_runtime::DataPathRuntime::new(workers)?)
}

/// Watches, translation, status writes and the admin API, on the main thread, so that
/// translating a large change never takes a data-path worker.
fn control_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}
