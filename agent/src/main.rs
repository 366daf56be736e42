//! `ambit-agent`: Ambit's per-node agent.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Validate a manifests directory: print each route's status per parent; exit 1 if any is rejected.
    Check {
        #[arg(long)]
        manifests: PathBuf,
    },
    /// Explain which route and rule would handle a request.
    Explain {
        #[arg(long)]
        manifests: PathBuf,
        /// The calling pod, NAMESPACE/POD.
        #[arg(long)]
        from: String,
        /// The destination: SERVICE[.NAMESPACE]:PORT or CLUSTER-IP:PORT.
        #[arg(long)]
        to: String,
        #[arg(long, default_value = "/")]
        path: String,
        #[arg(long, default_value = "GET")]
        method: String,
        /// A request header, NAME:VALUE (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
    },
    /// Ask this pod's agent over its admin unix socket for /ready (or --path); exit 0 on 200 (the kubelet's exec probes).
    Probe {
        #[arg(long, env = "AMBIT_ADMIN_SOCKET")]
        admin_socket: PathBuf,
        #[arg(long, default_value = "/ready")]
        path: String,
    },
    /// Detach Ambit's eBPF programs from the node and remove their pins.
    Uninstall {
        #[arg(long, env = "AMBIT_BPF_PIN_DIR", default_value = "/sys/fs/bpf/ambit")]
        bpf_pin_dir: PathBuf,
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
    /// The kubelet's cgroup root (where kubepods lives); also where the eBPF hooks attach. Default: the cgroup2 mount.
    #[arg(long, env = "AMBIT_CGROUP_ROOT")]
    cgroup_root: Option<PathBuf>,
    /// Where eBPF programs and maps are pinned (bpffs).
    #[arg(long, env = "AMBIT_BPF_PIN_DIR", default_value = "/sys/fs/bpf/ambit")]
    bpf_pin_dir: PathBuf,
    /// Admin API address (health, readiness, config dump, log level).
    #[arg(long, env = "AMBIT_ADMIN_ADDR", default_value = "127.0.0.1:15021")]
    admin_addr: SocketAddr,
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
    /// How long open connections may finish after SIGTERM.
    #[arg(long, default_value = "10s", value_parser = ambit_agent::duration::parse_duration)]
    drain: std::time::Duration,
}

impl NodeArgs {
    fn options(&self) -> anyhow::Result<ambit_agent::node::NodeOptions> {
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
            admin_socket: self.admin_socket.clone(),
            access_log: self.access_log,
            metrics: !self.no_metrics,
            drain: self.drain,
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
            let options = node.options()?;
            runtime()?.block_on(ambit_agent::standalone::run(manifests, options, logs))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { kube, node } => {
            let logs = ambit_agent::logging::init(&node.log_level, node.log_json)?;
            let options = node.options()?;
            runtime()?.block_on(ambit_agent::kubernetes::run(kube, options, logs))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { manifests } => {
            let report = ambit_agent::check::check(&manifests)?;
            print!("{report}");
            Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Explain { manifests, from, to, path, method, headers } => {
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
            let explanation = ambit_agent::explain::explain(&state, (ns, pod), &to, &method, &path, &headers)?;
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
        Command::Uninstall { bpf_pin_dir } => {
            ambit_agent::redirect::Redirector::uninstall(&bpf_pin_dir)?;
            println!("removed Ambit's eBPF programs and maps under {}", bpf_pin_dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
