//! Running the real `ambit-agent` on a test bed's node: in the node network namespace,
//! in its own (never enrolled) cgroup under the bed's cgroup root, with its eBPF pins
//! under a per-bed bpffs directory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bed::TestBed;
use crate::container::{self, AgentPodSpec};
use crate::{binaries, netns};

/// Where the agent's admin API listens inside the node namespace.
pub const ADMIN_ADDR: &str = "127.0.0.1:15021";
/// Where a successor agent (started beside a running one) serves its admin API, so
/// that the test can tell the two apart (in a cluster both share one address).
pub const SUCCESSOR_ADMIN_ADDR: &str = "127.0.0.2:15021";
/// The proxy port inside the node namespace.
pub const PROXY_PORT: u16 = 15001;
/// The bpffs directory under which each bed's agent pins its programs and maps.
const PIN_PREFIX: &str = "ambit-e2e-";

/// How the agent gets its view of the cluster.
#[derive(Debug, Clone)]
pub enum AgentMode {
    /// `ambit-agent standalone --manifests <bed manifests dir>`.
    Standalone,
    /// `ambit-agent run` against an API server reachable from the node namespace.
    Kubernetes { api_server: String },
    /// `ambit-agent run --kubeconfig <path>`: authenticated (e.g. a bearer token bound to
    /// the agent's pod and node, as the CertificateSigningRequest API needs).
    KubernetesKubeconfig { kubeconfig: PathBuf },
}

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub mode: AgentMode,
    /// Start with access logs on.
    pub access_log: bool,
    pub log_level: String,
    pub extra_args: Vec<String>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self { mode: AgentMode::Standalone, access_log: false, log_level: "info".into(), extra_args: vec![] }
    }
}

/// A running agent; stopped (and its eBPF pins removed) on drop.
pub struct RunningAgent {
    child: Option<Child>,
    /// The container's name when the agent runs from its image (the child is `podman run`).
    container: Option<String>,
    /// The bed node (1-based) it runs on.
    node: usize,
    node_netns: String,
    admin_addr: &'static str,
    pin_dir: PathBuf,
    log_path: PathBuf,
    started: Instant,
}

/// The bpffs mount point (mounted by the agent when missing).
fn bpffs() -> PathBuf {
    PathBuf::from("/sys/fs/bpf")
}

/// Removes pin directories of beds whose process is gone (a killed earlier run).
pub fn cleanup_stale_pins() {
    let Ok(entries) = std::fs::read_dir(bpffs()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PIN_PREFIX) else { continue };
        let pid: Option<i32> = rest.split('-').next().and_then(|p| p.parse().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

impl RunningAgent {
    /// Starts the agent on `bed`'s node and waits until its admin API reports ready.
    pub fn start(bed: &TestBed, options: &AgentOptions) -> Result<RunningAgent> {
        Self::start_on(bed, 1, options)
    }

    /// Starts the agent on node `node` (1-based) of `bed`: in that node's netns and
    /// cgroup subtree, with its own pin directory, `--node-name` and node IPs.
    pub fn start_on(bed: &TestBed, node: usize, options: &AgentOptions) -> Result<RunningAgent> {
        Self::start_at(bed, node, options, ADMIN_ADDR)
    }

    /// Starts one agent per node of `bed` (node 1 first), each with `options`.
    pub fn start_all(bed: &TestBed, options: &AgentOptions) -> Result<Vec<RunningAgent>> {
        Self::start_each(bed, |_| options.clone())
    }

    /// Starts one agent per node of `bed` (node 1 first), node `i` with `options(i)`
    /// (for per-node extra arguments).
    pub fn start_each(bed: &TestBed, options: impl Fn(usize) -> AgentOptions) -> Result<Vec<RunningAgent>> {
        bed.nodes().iter().map(|n| Self::start_on(bed, n.index(), &options(n.index()))).collect()
    }

    /// The bed node (1-based) this agent runs on.
    pub fn node(&self) -> usize {
        self.node
    }

    /// Starts a second agent on the same node with the same pins while this one runs
    /// (as a DaemonSet surge rollout does), its admin API on [`SUCCESSOR_ADMIN_ADDR`];
    /// waits until it is ready. Hand over with [`RunningAgent::hand_over_to`].
    pub fn start_successor(&self, bed: &TestBed, options: &AgentOptions) -> Result<RunningAgent> {
        let successor = Self::start_at(bed, self.node, options, SUCCESSOR_ADMIN_ADDR)?;
        if successor.pin_dir != self.pin_dir {
            bail!("successor pins {} differ from {}", successor.pin_dir.display(), self.pin_dir.display());
        }
        Ok(successor)
    }

    /// Stops this agent with SIGTERM (the old pod's end in a rollout) and becomes
    /// `successor`; the shared pins stay. Returns the old agent's exit status.
    pub fn hand_over_to(&mut self, successor: RunningAgent) -> Result<std::process::ExitStatus> {
        let status = self.stop()?;
        let mut old = std::mem::replace(self, successor);
        old.pin_dir = PathBuf::new();
        Ok(status)
    }

    fn start_at(bed: &TestBed, node: usize, options: &AgentOptions, admin_addr: &'static str) -> Result<RunningAgent> {
        let mut cmd = bed.node_command_on(node, binaries::ambit_agent()?)?;
        Self::spawn(bed, node, options, &mut cmd, None, admin_addr)
    }

    /// Starts the agent's container image on `bed`'s node, set up as `spec` (the
    /// DaemonSet's pod spec) says, and waits until its admin API reports ready. The
    /// bed's cgroup root, pin directory and manifests are where the container's
    /// hostPath volumes (and a read-only bind mount of the manifests) put them.
    pub fn start_container(bed: &TestBed, options: &AgentOptions, spec: &AgentPodSpec, image: &str) -> Result<RunningAgent> {
        container::require_image(image)?;
        container::ensure_host_bpffs()?;
        spec.require_same_path(bed.cgroup_root())?;
        spec.require_same_path(&bpffs().join(format!("{PIN_PREFIX}{}", bed.id())))?;
        let name = format!("ambit-e2e-agent-{}", bed.id());
        // A container left by a killed earlier run of this bed id.
        let _ = std::process::Command::new("podman").args(["rm", "--force", "--time", "0", &name]).output();
        let mut cmd = std::process::Command::new("podman");
        // crun refuses hybrid cgroup hierarchies; the limits stay within the hard limits.
        cmd.args(["--runtime", "runc", "run", "--rm", "--name", &name]);
        cmd.args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]);
        cmd.args(spec.podman_run_args(bed.node_netns())?);
        let manifests = bed.manifests_dir().display().to_string();
        cmd.arg("--volume").arg(format!("{manifests}:{manifests}:ro"));
        cmd.arg(image);
        Self::spawn(bed, 1, options, &mut cmd, Some(name), ADMIN_ADDR)
    }

    fn spawn(
        bed: &TestBed,
        node: usize,
        options: &AgentOptions,
        cmd: &mut std::process::Command,
        container: Option<String>,
        admin_addr: &'static str,
    ) -> Result<RunningAgent> {
        cleanup_stale_pins();
        let bed_node = bed.node(node)?;
        let pin_dir = bpffs().join(bed_node.pin_dir_name());
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log_path = bed.scratch_dir().join(format!("agent-{n}.log"));
        match &options.mode {
            AgentMode::Standalone => {
                cmd.arg("standalone").arg("--manifests").arg(bed.manifests_dir());
            }
            AgentMode::Kubernetes { api_server } => {
                cmd.arg("run").arg("--api-server").arg(api_server);
            }
            AgentMode::KubernetesKubeconfig { kubeconfig } => {
                cmd.arg("run").arg("--kubeconfig").arg(kubeconfig);
            }
        }
        cmd.arg("--node-name")
            .arg(bed_node.name())
            .arg("--node-ip")
            .arg(format!("{},{}", bed_node.ipv4(), bed_node.ipv6()))
            .arg("--proxy-port")
            .arg(PROXY_PORT.to_string())
            .arg("--cgroup-root")
            .arg(bed_node.cgroup_root())
            .arg("--bpf-pin-dir")
            .arg(&pin_dir)
            .arg("--admin-addr")
            .arg(admin_addr)
            .arg("--log-level")
            .arg(&options.log_level)
            .arg("--log-json")
            .arg("--drain")
            .arg("2s");
        if options.access_log {
            cmd.arg("--access-log");
        }
        cmd.args(&options.extra_args);
        let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = cmd.spawn().context("spawning ambit-agent in the node namespace")?;
        let mut running = RunningAgent {
            child: Some(child),
            container,
            node,
            node_netns: bed_node.netns().to_owned(),
            admin_addr,
            pin_dir,
            log_path,
            started: Instant::now(),
        };
        running.wait_ready(Duration::from_secs(30))?;
        Ok(running)
    }

    /// The container's name when the agent runs from its image.
    pub fn container_name(&self) -> Option<&str> {
        self.container.as_deref()
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Waits until `/ready` answers 200; fails early (with the log) if the agent exits.
    pub fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("ambit-agent exited with {status} before becoming ready; log:\n{}", self.log_tail(60));
                }
            }
            if matches!(self.admin("GET", "/ready"), Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("ambit-agent not ready after {limit:?}; log:\n{}", self.log_tail(60));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A request to the admin API (inside the node namespace): (status, body).
    pub fn admin(&self, method: &str, path: &str) -> Result<(u16, String)> {
        let request = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        let admin_addr = self.admin_addr;
        netns::in_netns(&self.node_netns, move || {
            let addr: SocketAddr = admin_addr.parse()?;
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(request.as_bytes())?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            let status: u16 = answer
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("bad admin answer {answer:?}"))?;
            let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
            Ok((status, body))
        })
    }

    fn admin_json(&self, path: &str) -> Result<serde_json::Value> {
        let (status, body) = self.admin("GET", path)?;
        if status != 200 {
            bail!("admin {path} answered {status}: {body}");
        }
        // The body may be chunked; the JSON document is the part between the first '{' and the last '}'.
        let start = body.find('{').context("no JSON in admin answer")?;
        let end = body.rfind('}').context("no JSON in admin answer")?;
        Ok(serde_json::from_str(&body[start..=end])?)
    }

    pub fn config_dump(&self) -> Result<serde_json::Value> {
        self.admin_json("/config_dump")
    }

    pub fn redirect_dump(&self) -> Result<serde_json::Value> {
        self.admin_json("/redirect")
    }

    /// Waits until the agent serves `namespace/name` as an enrolled workload (its cgroup
    /// is in the connect hooks' map once the configuration that lists it is applied).
    pub fn wait_enrolled(&self, namespace: &str, name: &str, limit: Duration) -> Result<()> {
        self.wait_workload(namespace, name, true, limit)
    }

    /// Waits until the agent no longer serves `namespace/name` as an enrolled workload.
    pub fn wait_not_enrolled(&self, namespace: &str, name: &str, limit: Duration) -> Result<()> {
        self.wait_workload(namespace, name, false, limit)
    }

    fn wait_workload(&self, namespace: &str, name: &str, enrolled: bool, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let dump = self.config_dump()?;
            let listed = dump["config"]["workloads"]
                .as_array()
                .is_some_and(|ws| ws.iter().any(|w| w["namespace"] == namespace && w["name"] == name));
            if listed == enrolled {
                return Ok(());
            }
            if Instant::now() > deadline {
                let state = if enrolled { "not enrolled" } else { "still enrolled" };
                bail!("{namespace}/{name} {state} after {limit:?}; log:\n{}", self.log_tail(30));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The access-log events (JSON lines with target `ambit::access`) logged so far.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("target").and_then(|t| t.as_str()) == Some("ambit::access"))
            .collect()
    }

    /// The agent's process id (None once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The agent's resident set size in bytes (VmRSS), None once it is gone.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// How long the agent has been running.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the agent with SIGTERM (graceful drain) and waits for it; the eBPF pins stay.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else { bail!("agent already stopped") };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("agent did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the agent without a chance to clean up (like a crash); the eBPF pins stay.
    pub fn kill(&mut self) {
        if let Some(name) = &self.container {
            let _ = std::process::Command::new("podman").args(["kill", "--signal", "KILL", name]).output();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(name) = &self.container {
            let _ = std::process::Command::new("podman").args(["rm", "--force", "--time", "0", name]).output();
        }
    }

    /// Starts a new agent process with the same pins (an agent restart).
    pub fn restart(&mut self, bed: &TestBed, options: &AgentOptions) -> Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        let new = RunningAgent::start_on(bed, self.node, options)?;
        let old_pins = std::mem::replace(&mut self.pin_dir, PathBuf::new());
        *self = new;
        debug_assert_eq!(old_pins, self.pin_dir);
        Ok(())
    }

    /// Runs `ambit-agent uninstall` for this agent's pins.
    pub fn uninstall(&self) -> Result<()> {
        let status = std::process::Command::new(binaries::ambit_agent()?)
            .arg("uninstall")
            .arg("--bpf-pin-dir")
            .arg(&self.pin_dir)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("ambit-agent uninstall failed: {status}");
        }
        Ok(())
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.kill();
        if !self.pin_dir.as_os_str().is_empty() && self.uninstall().is_err() {
            let _ = std::fs::remove_dir_all(&self.pin_dir);
        }
    }
}
