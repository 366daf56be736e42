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
            World { agent: None, bed, agent_pid: 0, echo_a, echo_b, client, haproxy: None, load_bin };
        world.set_routes("gen-0")?;
        world.start_agent()?;
        for pod in [&world.echo_a, &world.echo_b, &world.client] {
            for pid in procs::cgroup_pids(&pod.cgroup) {
                procs::pin(pid, LOAD_CPU)?;
            }
        }
        Ok(world)
    }

    /// (Re)starts the agent, waits until it serves the routes, pins it to CPU 0.
    pub fn start_agent(&mut self) -> Result<()> {
        self.start_agent_with(&[])
    }

    /// (Re)starts the agent with extra arguments (e.g. `--no-metrics`).
    pub fn start_agent_with(&mut self, extra: &[&str]) -> Result<()> {
        // The previous agent (if any) stops and removes its pins first.
        self.agent = None;
        let options = AgentOptions {
            log_level: "warn".into(),
            // One core for the proxy: one worker (HAProxy, started under taskset, sizes
            // its threads to the same single CPU).
            extra_args: ["--workers", "1"].iter().chain(extra).map(|a| a.to_string()).collect(),
            ..AgentOptions::default()
        };
        let agent = RunningAgent::start(&self.bed, &options)?;
        agent.wait_enrolled(NAMESPACE, &self.client.name, Duration::from_secs(10))?;
        let pin_dir = agent.pin_dir().display().to_string();
        let pid = procs::find_pid(&["ambit-agent", &pin_dir]).context("cannot find the agent's pid")?;
        procs::pin(pid, PROXY_CPU)?;
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

    /// Starts HAProxy in the node netns, one thread pinned to CPU 0, routing like the HTTPRoute.
    pub fn start_haproxy(&mut self) -> Result<i32> {
        let cfg = haproxy_config(self.bed.node_ip(), self.echo_a.ipv4, self.echo_b.ipv4);
        let path = self.bed.scratch_dir().join("haproxy.cfg");
        std::fs::write(&path, cfg)?;
        let check = std::process::Command::new("haproxy").arg("-c").arg("-q").arg("-f").arg(&path).status()?;
        if !check.success() {
            bail!("haproxy rejected its configuration {}", path.display());
        }
        let mut cmd = self.bed.node_command("taskset")?;
        cmd.args(["-c", &PROXY_CPU.to_string(), "haproxy", "-db", "-f"]).arg(&path);
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

/// HAProxy doing what the HTTPRoute does: `x-bench: yes` → set the generation header
/// → two servers weighted 50/50; anything else gets 404.
fn haproxy_config(node: Ipv4Addr, a: Ipv4Addr, b: Ipv4Addr) -> String {
    // HAProxy needs two descriptors per connection under this process's hard limit.
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct passed.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let maxconn = (lim.rlim_max.min(1 << 20).saturating_sub(200) / 2).max(1000);
    format!(
        r#"global
    nbthread 1
    maxconn {maxconn}

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
