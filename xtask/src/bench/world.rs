//! The benchmark's test bed: two echo pods behind an HTTPRoute (a header match,
//! a header modifier, two weighted backends), a client pod, the agent pinned to
//! CPU 0, and HAProxy doing the same routing on the node, also pinned to CPU 0.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ambit_e2e::{AgentOptions, Pod, RunningAgent, TestBed};
use anyhow::{bail, Context, Result};

use super::procs;

/// The CPU the proxy under test (Ambit's agent or HAProxy) runs on.
pub const PROXY_CPU: usize = 0;
/// The CPU of the load generator and the echo backends.
pub const LOAD_CPU: usize = 1;

/// How many cores the proxy under test gets, and where everything else runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cores {
    /// The proxy on CPU 0 (one thread); the load generator and the echo pods on CPU 1.
    One,
    /// The proxy on CPUs 0 and 1 (two threads); the load generator and the echo pods
    /// share both with it (the machine has two).
    Two,
}

impl Cores {
    /// The CPUs the proxy is started on; its thread count is their number.
    pub fn proxy_cpus(self) -> &'static [usize] {
        match self {
            Cores::One => &[PROXY_CPU],
            Cores::Two => &[PROXY_CPU, LOAD_CPU],
        }
    }

    /// The CPUs of the load generator and the echo pods.
    pub fn load_cpus(self) -> &'static [usize] {
        match self {
            Cores::One => &[LOAD_CPU],
            Cores::Two => &[PROXY_CPU, LOAD_CPU],
        }
    }

    pub fn threads(self) -> usize {
        self.proxy_cpus().len()
    }
}

/// A CPU list as taskset reads it (`0,1`).
pub fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}
/// HAProxy's listening port on the node address.
pub const HAPROXY_PORT: u16 = 18080;
/// The header the route matches on (`x-bench: yes`).
pub const MATCH_HEADER: &str = "x-bench:yes";
/// The header the route's RequestHeaderModifier sets; its value changes in scenario 7.
pub const GEN_HEADER: &str = "x-bench-gen";

const NAMESPACE: &str = "bench";

const BED_YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: bench, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo-a, namespace: bench}
spec:
  selector: {matchLabels: {app: echo, version: a}}
  template:
    metadata: {labels: {app: echo, version: a}}
    spec: {containers: [{name: echo, image: echo, ports: [{containerPort: 8080}, {containerPort: 9090}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo-b, namespace: bench}
spec:
  selector: {matchLabels: {app: echo, version: b}}
  template:
    metadata: {labels: {app: echo, version: b}}
    spec: {containers: [{name: echo, image: echo, ports: [{containerPort: 8080}, {containerPort: 9090}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: bench}
spec:
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec: {containers: [{name: client, image: echo, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: bench}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-a, namespace: bench}
spec:
  selector: {app: echo, version: a}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-b, namespace: bench}
spec:
  selector: {app: echo, version: b}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-h2, namespace: bench}
spec:
  selector: {app: echo}
  ports: [{name: h2c, port: 80, targetPort: 8080, appProtocol: kubernetes.io/h2c}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-a-h2, namespace: bench}
spec:
  selector: {app: echo, version: a}
  ports: [{name: h2c, port: 80, targetPort: 8080, appProtocol: kubernetes.io/h2c}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-b-h2, namespace: bench}
spec:
  selector: {app: echo, version: b}
  ports: [{name: h2c, port: 80, targetPort: 8080, appProtocol: kubernetes.io/h2c}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-tcp, namespace: bench}
spec:
  selector: {app: echo, version: a}
  ports: [{name: tcp, port: 9000, targetPort: 9090, appProtocol: tcp}]
"#;

/// The two HTTPRoutes (HTTP/1.1 and h2c Services); `generation` is the value the
/// header modifier sets, so a change is visible in what the backend receives.
pub fn routes_yaml(generation: &str) -> String {
    let route = |name: &str, parent: &str, a: &str, b: &str| {
        format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: bench}}
spec:
  parentRefs: [{{group: "", kind: Service, name: {parent}, port: 80}}]
  rules:
  - matches: [{{headers: [{{name: x-bench, value: "yes"}}]}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: {GEN_HEADER}, value: "{generation}"}}]}}
    backendRefs:
    - {{name: {a}, port: 80, weight: 50}}
    - {{name: {b}, port: 80, weight: 50}}
"#
        )
    };
    format!("{}---\n{}", route("bench-h1", "echo", "echo-a", "echo-b"), route("bench-h2", "echo-h2", "echo-a-h2", "echo-b-h2"))
}

/// The bed, its pods and the agent.
pub struct World {
    /// Declared before the bed: dropped (agent stopped, programs detached) first.
    pub agent: Option<RunningAgent>,
    pub bed: TestBed,
    pub agent_pid: i32,
    pub echo_a: Pod,
    pub echo_b: Pod,
    pub client: Pod,
    pub haproxy: Option<Child>,
    pub load_bin: PathBuf,
    /// The proxy's cores in this phase of the run ([`World::set_cores`]).
    pub cores: Cores,
}

fn write_atomic(path: &std::path::Path, content: &str) -> Result<()> {
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("x")));
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

impl World {
    /// Brings up the bed, starts the agent (pinned to CPU 0) and pins the echo pods to CPU 1.
    pub fn start(load_bin: PathBuf) -> Result<World> {
        let bed = TestBed::new()?;
        bed.apply_yaml(BED_YAML)?;
        let echo_a = bed.first_pod(NAMESPACE, &[("app", "echo"), ("version", "a")])?;
        let echo_b = bed.first_pod(NAMESPACE, &[("app", "echo"), ("version", "b")])?;
        let client = bed.first_pod(NAMESPACE, &[("app", "client")])?;
        let mut world =
            World { agent: None, bed, agent_pid: 0, echo_a, echo_b, client, haproxy: None, load_bin, cores: Cores::One };
        world.set_routes("gen-0")?;
        world.start_agent()?;
        world.pin_pods()?;
        Ok(world)
    }

    /// Pins the echo and client pods' processes to the load CPUs of [`World::cores`].
    fn pin_pods(&self) -> Result<()> {
        for pod in [&self.echo_a, &self.echo_b, &self.client] {
            for pid in procs::cgroup_pids(&pod.cgroup) {
                procs::pin_to(pid, self.cores.load_cpus())?;
            }
        }
        Ok(())
    }

    /// Gives the proxy `cores`: restarts the agent and HAProxy (if it runs) on them
    /// and moves the pods. Returns HAProxy's new pid (None if it was not running).
    pub fn set_cores(&mut self, cores: Cores) -> Result<Option<i32>> {
        self.cores = cores;
        self.pin_pods()?;
        self.start_agent()?;
        if self.haproxy.is_none() {
            return Ok(None);
        }
        self.stop_haproxy();
        self.start_haproxy().map(Some)
    }

    /// (Re)starts the agent, waits until it serves the routes, pins it to CPU 0.
    pub fn start_agent(&mut self) -> Result<()> {
        self.start_agent_with(&[])
    }

    /// (Re)starts the agent with extra arguments (e.g. `--no-metrics`).
    pub fn start_agent_with(&mut self, extra: &[&str]) -> Result<()> {
        // The previous agent (if any) stops and removes its pins first.
        self.agent = None;
        let workers = self.cores.threads().to_string();
        let options = AgentOptions {
            log_level: "warn".into(),
            // As many data-path workers as the proxy's cores (HAProxy gets as many
            // threads); the agent would pick the same from its affinity mask.
            extra_args: ["--workers", &workers].iter().chain(extra).map(|a| a.to_string()).collect(),
            ..AgentOptions::default()
        };
        // Started already pinned: it inherits this thread's affinity.
        let agent = procs::with_affinity(self.cores.proxy_cpus(), || RunningAgent::start(&self.bed, &options))??;
        agent.wait_enrolled(NAMESPACE, &self.client.name, Duration::from_secs(10))?;
        let pin_dir = agent.pin_dir().display().to_string();
        let pid = procs::find_pid(&["ambit-agent", &pin_dir]).context("cannot find the agent's pid")?;
        procs::check_pinned(pid, self.cores.proxy_cpus())?;
        let threads = procs::threads_named(pid, "ambit-data");
        if threads != self.cores.threads() {
            bail!("the agent runs {threads} data-path threads, expected {}", self.cores.threads());
        }
        procs::raise_nofile(pid)?;
        self.agent = Some(agent);
        self.agent_pid = pid;
        Ok(())
    }

    /// Writes the bench routes with `generation` into the agent's manifests directory.
    pub fn set_routes(&self, generation: &str) -> Result<()> {
        write_atomic(&self.routes_file(), &routes_yaml(generation))
    }

    pub fn routes_file(&self) -> PathBuf {
        self.bed.manifests_dir().join("zz-bench-routes.yaml")
    }

    pub fn service(&self, name: &str, port: u16) -> Result<SocketAddr> {
        let ip = self.bed.service_ip(NAMESPACE, name).with_context(|| format!("Service {name} has no cluster IP"))?;
        Ok(SocketAddr::new(ip.into(), port))
    }

    /// The direct target: echo pod a's HTTP port.
    pub fn direct_http(&self) -> SocketAddr {
        SocketAddr::new(self.echo_a.ipv4.into(), 8080)
    }

    pub fn haproxy_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bed.node_ip().into(), HAPROXY_PORT)
    }

    /// Starts HAProxy in the node netns, routing like the HTTPRoute, started pinned to
    /// the proxy's CPUs with one thread per CPU.
    pub fn start_haproxy(&mut self) -> Result<i32> {
        let cfg = haproxy_config(self.bed.node_ip(), self.echo_a.ipv4, self.echo_b.ipv4, self.cores.threads());
        let path = self.bed.scratch_dir().join("haproxy.cfg");
        std::fs::write(&path, cfg)?;
        let check = std::process::Command::new("haproxy").arg("-c").arg("-q").arg("-f").arg(&path).status()?;
        if !check.success() {
            bail!("haproxy rejected its configuration {}", path.display());
        }
        let mut cmd = self.bed.node_command("taskset")?;
        cmd.args(["-c", &cpu_list(self.cores.proxy_cpus()), "haproxy", "-db", "-f"]).arg(&path);
        let log_path = self.bed.scratch_dir().join("haproxy.log");
        let log = std::fs::File::create(&log_path)?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = cmd.spawn().context("starting haproxy")?;
        let pid = child.id() as i32;
        self.haproxy = Some(child);
        // Ready when it accepts on its port (checked from inside the client pod).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let probe = super::loadgen::ambit_load(self, &["connect", "--addr", &self.haproxy_addr().to_string(), "--count", "1"]);
            if probe.is_ok_and(|v| v["errors"] == 0) {
                break;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("haproxy does not accept connections on {}; its log:\n{log}", self.haproxy_addr());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        procs::raise_nofile(pid)?;
        Ok(pid)
    }

    pub fn stop_haproxy(&mut self) {
        if let Some(mut c) = self.haproxy.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop_haproxy();
    }
}

/// HAProxy's connection limit where the open-file limit allows: above the memory
/// scenario's 10,000 idle connections (HAProxy does not accept past it; at 9,900 the
/// scenario once opened none).
pub const HAPROXY_MAXCONN: u64 = 40_000;

/// `maxconn` within this process's open-file limit (HAProxy inherits it). HAProxy
/// reserves two descriptors per connection and by default refuses to start when the
/// limit is lower (`strict-limits`); the config turns that off, because idle client
/// connections hold one descriptor each (servers are shared: `http-reuse always`).
pub fn haproxy_maxconn() -> u64 {
    let hard = super::procs::own_nofile().map_or(20_000, |(_, hard)| hard);
    HAPROXY_MAXCONN.min(hard.saturating_sub(200))
}

/// HAProxy doing what the HTTPRoute does: `x-bench: yes` → set the generation header
/// → two servers weighted 50/50; anything else gets 404.
fn haproxy_config(node: Ipv4Addr, a: Ipv4Addr, b: Ipv4Addr, threads: usize) -> String {
    let maxconn = haproxy_maxconn();
    format!(
        r#"global
    nbthread {threads}
    maxconn {maxconn}
    no strict-limits

defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    http-reuse always

frontend bench
    bind {node}:{HAPROXY_PORT}
    acl bench req.hdr(x-bench) -m str yes
    http-request set-header {GEN_HEADER} gen-0 if bench
    use_backend echo if bench
    default_backend notfound

backend echo
    balance roundrobin
    server a {a}:8080 weight 50
    server b {b}:8080 weight 50

backend notfound
    http-request deny deny_status 404
"#
    )
}
