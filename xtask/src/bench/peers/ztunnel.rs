//! Istio's ztunnel on the bench's two-node bed, set up as Istio ambient does it:
//!
//! - two pods of their own (namespace `bench-zt`, not enrolled in Ambit's mesh): a
//!   client on node 1 and an echo server on node 2, pinned like Ambit's pods;
//! - in each pod's netns, ztunnel's in-pod iptables capture (its
//!   `scripts/ztunnel-redirect-inpod.sh`, what istio-cni installs);
//! - per node, one ztunnel (`PROXY_MODE=shared`, one worker thread, local XDS,
//!   fake CA) in a network namespace of its own, as the ztunnel pod has, pinned to
//!   that node's core; `inpodserver` (the fake CNI agent) hands it the pod's netns,
//!   and ztunnel opens its listeners (15001, 15006, 15008) inside the pod's netns.
//!
//! A restart starts a second ztunnel for the node beside the first (both listen with
//! `SO_REUSEPORT`, ztunnel's default), then sends the first SIGTERM: what a DaemonSet
//! surge rollout does, and what Ambit's hand-over does.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ambit_e2e::{netns, Pod, PodSpec, TestBed};
use anyhow::{bail, Context, Result};

use super::super::cross_world::Handover;
use super::super::procs;
use super::build::ZtunnelBuild;
use super::xds::{self, Service, Workload};

pub const NAMESPACE: &str = "bench-zt";
/// The echo Service's virtual IP (in the bed's cluster-IP range, which the nodes route
/// as unreachable: a connection that ztunnel did not capture fails at once).
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 255, 250);
const OUTBOUND_PORT: u16 = 15001;
const HBONE_PORT: u16 = 15008;

/// One ztunnel process (and its fake CNI agent) serving one node's pod.
struct ZtProcess {
    ztunnel: Child,
    inpod: Child,
    netns: String,
    log: PathBuf,
}

/// Runs `program` under `taskset -c cpu` in netns `ns`, cgroup `cgroup`.
fn command_in(pod_bin: &Path, cgroup: &Path, ns: &str, cpu: usize, program: &Path) -> Result<Command> {
    std::fs::create_dir_all(cgroup).with_context(|| format!("creating {}", cgroup.display()))?;
    let mut c = Command::new(pod_bin);
    c.arg("--cgroup").arg(cgroup).arg("--netns").arg(ns).args(["exec", "--", "taskset", "-c", &cpu.to_string()]).arg(program);
    Ok(c)
}

fn log_file(path: &Path) -> Result<(Stdio, Stdio)> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok((Stdio::from(f.try_clone()?), Stdio::from(f)))
}

fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !ok()? {
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Listening TCP sockets on `port` in netns `ns` (IPv4 and IPv6).
fn listeners(ns: &str, port: u16) -> Result<usize> {
    let local = format!(":{port:04X} ");
    netns::in_netns(ns, move || {
        let mut n = 0;
        for file in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            // Fields: sl local_address rem_address st ...; LISTEN is 0A.
            n += text.lines().skip(1).filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && format!("{} ", f[1]).ends_with(&local) && f[3] == "0A"
            }).count();
        }
        Ok(n)
    })
}

/// Where a node's ztunnel runs and what it serves.
struct NodeSetup<'a> {
    bed: &'a TestBed,
    build: &'a ZtunnelBuild,
    dir: &'a Path,
    xds: &'a Path,
    node: usize,
    cpu: usize,
    pod: &'a Pod,
    workload: &'a Workload,
}

impl ZtProcess {
    fn start(s: &NodeSetup, generation: u32) -> Result<ZtProcess> {
        let tag = format!("zt{}g{generation}", s.node);
        let ns = format!("{}{}-{tag}", ambit_e2e::bed::PREFIX, s.bed.id());
        netns::create(&ns)?;
        let started = Self::spawn_in(s, &tag, &ns);
        if started.is_err() {
            let _ = netns::delete(&ns);
        }
        started
    }

    fn spawn_in(s: &NodeSetup, tag: &str, ns: &str) -> Result<ZtProcess> {
        let pod_bin = ambit_e2e::binaries::ambit_pod()?;
        let cgroup = s.bed.node(s.node)?.cgroup_root().join(format!("system.slice/ztunnel-{tag}.scope"));
        let uds = s.dir.join(format!("zds-{tag}.sock"));
        let (out, err) = log_file(&s.dir.join(format!("inpod-{tag}.log")))?;
        let mut inpod = command_in(&pod_bin, &cgroup, ns, s.cpu, &s.build.inpodserver)?
            .arg(&s.pod.netns)
            .env("INPOD_UDS", &uds)
            .env("PROXY_WORKLOAD_INFO", s.workload.proxy_workload_info())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting ztunnel's inpodserver")?;
        let log = s.dir.join(format!("ztunnel-{tag}.log"));
        let ztunnel = wait_for(Duration::from_secs(10), "inpodserver's socket", || Ok(uds.exists()))
            .and_then(|()| Self::spawn_ztunnel(s, &pod_bin, &cgroup, ns, &uds, &log));
        let ztunnel = match ztunnel {
            Ok(z) => z,
            Err(e) => {
                let _ = inpod.kill();
                let _ = inpod.wait();
                return Err(e);
            }
        };
        let p = ZtProcess { ztunnel, inpod, netns: ns.to_string(), log };
        procs::raise_nofile(p.pid())?;
        Ok(p)
    }

    fn spawn_ztunnel(s: &NodeSetup, pod_bin: &Path, cgroup: &Path, ns: &str, uds: &Path, log: &Path) -> Result<Child> {
        let (out, err) = log_file(log)?;
        command_in(pod_bin, cgroup, ns, s.cpu, &s.build.ztunnel)?
            .arg("proxy")
            .envs([
                ("PROXY_MODE", "shared"),
                ("NODE_NAME", s.workload.node.as_str()),
                ("FAKE_CA", "true"),
                ("XDS_ADDRESS", ""),
                ("CA_ADDRESS", ""),
                ("ISTIO_META_DNS_CAPTURE", "false"),
                ("ZTUNNEL_WORKER_THREADS", "1"),
                ("RUST_LOG", "warn"),
            ])
            .env("INPOD_UDS", uds)
            .env("LOCAL_XDS_PATH", s.xds)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting ztunnel")
    }

    fn pid(&self) -> i32 {
        self.ztunnel.id() as i32
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM (ztunnel drains, up to its 5 s default deadline), then SIGKILL after `limit`.
    fn stop(&mut self, limit: Duration) -> Result<()> {
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        while self.ztunnel.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.ztunnel.kill();
                let _ = self.ztunnel.wait();
                bail!("ztunnel did not stop within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for ZtProcess {
    fn drop(&mut self) {
        if self.ztunnel.try_wait().ok().flatten().is_none() {
            let _ = self.stop(Duration::from_secs(10));
        }
        let _ = self.inpod.kill();
        let _ = self.inpod.wait();
        let _ = netns::delete(&self.netns);
    }
}

/// The ztunnel side of the peer bed: its pods, capture, and one ztunnel per node.
pub struct ZtunnelBed {
    /// Node 1's ztunnel, then node 2's.
    procs: Vec<ZtProcess>,
    pub client: Pod,
    pub server: Pod,
    workloads: [Workload; 2],
    build: ZtunnelBuild,
    dir: PathBuf,
    xds: PathBuf,
    generation: u32,
}

/// The core of bed node `node` (as in Ambit's cross-node bed: node 1 on CPU 0).
fn node_cpu(node: usize) -> usize {
    node - 1
}

fn workload(pod: &Pod) -> Workload {
    Workload {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        service_account: pod.service_account.clone(),
        ip: pod.ipv4,
        node: pod.node_name.clone(),
    }
}

/// Installs ztunnel's in-pod capture in `pod`'s netns.
fn capture_pod(pod: &Pod, script: &Path) -> Result<()> {
    let out = pod.command("bash").arg(script).stdin(Stdio::null()).output().context("running ztunnel's redirect script")?;
    if !out.status.success() {
        bail!("ztunnel-redirect-inpod.sh in {}: {}", pod.name, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl ZtunnelBed {
    /// Adds the pods, installs the capture, starts both ztunnels and waits for their listeners.
    pub fn start(bed: &TestBed, build: ZtunnelBuild) -> Result<ZtunnelBed> {
        let server = bed.add_pod(PodSpec::new(NAMESPACE, "echo-zt").label("app", "echo-zt").service_account("echo").on_node(2))?;
        let client = bed.add_pod(PodSpec::new(NAMESPACE, "client-zt").label("app", "client-zt").service_account("client").on_node(1))?;
        for pod in [&client, &server] {
            for pid in procs::cgroup_pids(&pod.cgroup) {
                procs::pin(pid, node_cpu(pod.node))?;
            }
            capture_pod(pod, &build.redirect_script)?;
        }
        let dir = bed.scratch_dir().join("ztunnel");
        std::fs::create_dir_all(&dir)?;
        let workloads = [workload(&client), workload(&server)];
        let service = Service { namespace: NAMESPACE.into(), name: "echo".into(), vip: VIP, ports: vec![(80, 8080), (9000, 9090)] };
        let xds = dir.join("local-xds.yaml");
        std::fs::write(&xds, xds::local_config(&workloads[0], &workloads[1], &service))?;
        let mut zt = ZtunnelBed { procs: vec![], client, server, workloads, build, dir, xds, generation: 0 };
        for node in [1, 2] {
            let p = ZtProcess::start(&zt.setup(bed, node), 0)?;
            zt.procs.push(p);
            let pod = zt.pod(node).netns.clone();
            let p = &zt.procs[node - 1];
            wait_for(Duration::from_secs(30), "ztunnel's listeners in the pod", || Ok(listeners(&pod, HBONE_PORT)? > 0))
                .with_context(|| format!("node {node}'s ztunnel never attached to its pod; its log:\n{}", p.log_tail()))?;
        }
        Ok(zt)
    }

    fn pod(&self, node: usize) -> &Pod {
        if node == 1 { &self.client } else { &self.server }
    }

    fn setup<'a>(&'a self, bed: &'a TestBed, node: usize) -> NodeSetup<'a> {
        NodeSetup {
            bed,
            build: &self.build,
            dir: &self.dir,
            xds: &self.xds,
            node,
            cpu: node_cpu(node),
            pod: self.pod(node),
            workload: &self.workloads[node - 1],
        }
    }

    /// Both ztunnels' pids (node 1 first).
    pub fn pids(&self) -> Vec<i32> {
        self.procs.iter().map(ZtProcess::pid).collect()
    }

    /// The echo Service's HTTP (80) or TCP (9000) address, as the client dials it.
    pub fn service(&self, port: u16) -> SocketAddr {
        SocketAddr::new(VIP.into(), port)
    }

    /// The SPIFFE identities of the client and the server workloads.
    pub fn identities(&self) -> (String, String) {
        (self.workloads[0].spiffe(), self.workloads[1].spiffe())
    }

    /// The netns of node `node`'s current ztunnel (its admin and metrics listen there).
    pub fn ztunnel_netns(&self, node: usize) -> Option<&str> {
        self.procs.get(node.checked_sub(1)?).map(|p| p.netns.as_str())
    }

    /// The cgroup to run helper programs in, next to node `node`'s ztunnel.
    pub fn helper_cgroup(&self, bed: &TestBed, node: usize) -> Result<PathBuf> {
        Ok(bed.node(node)?.cgroup_root().join("system.slice/ztunnel-helper.scope"))
    }

    /// A rollout on node 1: a second ztunnel starts and takes the client pod (its
    /// listeners beside the first's), then the first gets SIGTERM and drains.
    pub fn restart_client_node(&mut self, bed: &TestBed) -> Result<Handover> {
        let began = Instant::now();
        let pod = self.client.netns.clone();
        let before = listeners(&pod, OUTBOUND_PORT)?;
        self.generation += 1;
        let successor = ZtProcess::start(&self.setup(bed, 1), self.generation)?;
        wait_for(Duration::from_secs(30), "the successor ztunnel's listeners", || Ok(listeners(&pod, OUTBOUND_PORT)? >= 2 * before))
            .with_context(|| format!("the successor never attached to the client pod; its log:\n{}", successor.log_tail()))?;
        let successor_ready = began.elapsed();
        let mut old = std::mem::replace(&mut self.procs[0], successor);
        old.stop(Duration::from_secs(30))?;
        let old_gone = began.elapsed();
        drop(old);
        wait_for(Duration::from_secs(10), "the old ztunnel's listeners closing", || Ok(listeners(&pod, OUTBOUND_PORT)? <= before))?;
        Ok(Handover { successor_ready, old_gone })
    }
}
