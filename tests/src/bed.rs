//! The test bed: node network namespaces, pods around them, a cgroup tree per
//! node and a manifests directory that describes them as Kubernetes objects.
//!
//! Topology of one bed `<id>` (`<pid>-<counter>`) with one node (the default):
//!
//! * netns `ambit-<id>-node`: `lo` with [`NODE_IPV4`]/32 and [`NODE_IPV6`]/128
//!   (where the agent's proxy listens), one `vp<N>` veth per pod holding
//!   169.254.1.1/32 and fe80::1/64 (the pods' gateway, Calico-style), a /32
//!   (/128) route per pod, forwarding on, no route out of the machine, and
//!   `unreachable` routes for the cluster-IP ranges 10.96.0.0/16 and fd96::/64:
//!   there is no kube-proxy, so a cluster-IP connection that the agent does
//!   not redirect fails at once (EHOSTUNREACH).
//! * netns `ambit-<id>-p<N>` per pod: `eth0` with 10.244.x.y/32 and fd44::N/128,
//!   default routes via the node.
//! * cgroup `<cgroup2 mount>/ambit-bed-<id>` (the agent's `--cgroup-root`),
//!   with kubelet-style pod cgroups below it.
//!
//! With [`BedOptions::nodes`] = N ≥ 2 there are N such nodes (names, addresses
//! and pod ranges per node in [`crate::bed_node`]; node 1 keeps the names
//! above), each with its own cgroup subtree `ambit-bed-<id>-n<i>` (node 1:
//! `ambit-bed-<id>`) and, when a test starts one, its own agent and bpffs pin
//! directory. They are joined by a cluster network ([`crate::cluster_net`]):
//!
//! ```text
//!   pods 10.244.0.0/19        pods 10.244.32.0/19       pods 10.244.64.0/19
//!         |  vp<N>                  |                         |
//!   [ambit-<id>-node]        [ambit-<id>-node2]        [ambit-<id>-node3]
//!    eth0 10.77.0.1/24        eth0 10.77.0.2/24         eth0 10.77.0.3/24
//!         fd77::1/64               fd77::2/64                fd77::3/64
//!         |  n1                     |  n2                     |  n3
//!   +-------------------- br0 in [ambit-<id>-cluster] ---------------------+
//! ```
//!
//! The node addresses then live on `eth0` instead of `lo`; each node routes
//! the other nodes' pod ranges via their node address, and still has no
//! default route and the cluster-IP `unreachable` routes. Pods are placed
//! with [`PodSpec::on_node`], Deployments by their template's `nodeName` or
//! [`BedOptions::spread_deployments`]. The hosts file is shared by all pods.
//!
//! Everything is removed on drop, and leftovers of dead processes' beds are
//! removed when a bed starts.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use anyhow::{anyhow, bail, Context, Result};
use rand::Rng;
use serde_json::json;

use crate::bed_node::BedNode;
use crate::cgroup::{self, CgroupLayout};
use crate::cluster_net;
use crate::cluster::{self, ClusterIpAllocator, ContainerPort, Doc, Labels, ServiceRecord};
use crate::manifests::{self, ManifestWriter, PodObject};
use crate::netns;
use crate::pod::{Pod, PodSpec};
use crate::resolve::{Hosts, CLUSTER_DOMAIN};

/// The node address (on the node's `lo`), where the agent's proxy listens.
pub const NODE_IPV4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The node's IPv6 address.
pub const NODE_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
/// IPv4 gateway address of every pod (on the node side of each veth).
pub const POD_GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// IPv6 gateway address of every pod (link-local, node side of each veth).
pub const POD_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// Name prefix of everything a bed creates.
pub const PREFIX: &str = "ambit-";
/// Label that enrols a namespace in the mesh.
pub const MESH_LABEL: (&str, &str) = ("ambit.dev/mesh", "enabled");

static BED_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Options of a bed.
#[derive(Debug, Clone, Default)]
pub struct BedOptions {
    /// Pod cgroup layout (default: systemd driver, containerd scopes).
    pub cgroup_layout: CgroupLayout,
    /// Give Services without `ipFamilyPolicy` both an IPv4 and an IPv6 cluster IP.
    pub dual_stack_services: bool,
    /// Path of `ambit-pod` (default: `AMBIT_POD_BIN` or next to the test executable).
    pub pod_bin: Option<PathBuf>,
    /// Number of nodes (0 or 1: the one-node bed; at most [`crate::bed_node::MAX_NODES`]).
    pub nodes: usize,
    /// Place Deployment pods round-robin over the nodes, in creation order across
    /// all Deployments (the k-th such pod on node k mod N + 1), unless a template
    /// names a node (`spec.nodeName`). Off: every Deployment pod runs on node 1.
    pub spread_deployments: bool,
}

/// A test bed. See the module documentation for its topology.
#[derive(Debug)]
pub struct TestBed {
    id: String,
    nodes: Vec<BedNode>,
    cluster_netns: Option<String>,
    manifests: tempfile::TempDir,
    state_dir: tempfile::TempDir,
    hosts_file: PathBuf,
    pod_bin: PathBuf,
    opts: BedOptions,
    state: Mutex<State>,
}

#[derive(Debug)]
struct PodState {
    pod: Pod,
    deployment: Option<String>,
    ports: Vec<ContainerPort>,
    server: Option<Child>,
}

#[derive(Debug)]
struct DeploymentState {
    spec: cluster::DeploymentSpec,
    template_hash: String,
}

type Key = (String, String);

#[derive(Debug)]
struct State {
    namespaces: BTreeMap<String, Labels>,
    deployments: BTreeMap<Key, DeploymentState>,
    pods: BTreeMap<Key, PodState>,
    services: BTreeMap<Key, ServiceRecord>,
    passthrough: BTreeMap<(String, Option<String>, String), serde_json::Value>,
    ips: ClusterIpAllocator,
    next_pod: u32,
    next_node_proc: u32,
    /// Deployment pods placed round-robin so far (see [`BedOptions::spread_deployments`]).
    spread: usize,
    writer: ManifestWriter,
}

fn random_from(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::rng();
    (0..n).map(|_| alphabet[rng.random_range(0..alphabet.len())] as char).collect()
}

fn random_hex(n: usize) -> String {
    random_from(b"0123456789abcdef", n)
}

fn random_uid() -> String {
    format!("{}-{}-4{}-a{}-{}", random_hex(8), random_hex(4), random_hex(3), random_hex(3), random_hex(12))
}

/// The Kubernetes name-suffix alphabet (no vowels, no confusable digits).
const KUBE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn check_prerequisites() -> Result<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the test bed needs root (network namespaces, veths, cgroups); run the tests as root");
    }
    let mount = cgroup::cgroup2_mount()?;
    let out = Command::new("ip").arg("-V").output();
    if !matches!(out, Ok(ref o) if o.status.success()) {
        bail!("the test bed needs iproute2's `ip` command in PATH");
    }
    Ok(mount)
}

impl TestBed {
    /// A bed with default options. Fails (never skips) without root, cgroup v2 or `ip`.
    pub fn new() -> Result<TestBed> {
        Self::with_options(BedOptions::default())
    }

    /// A bed with `opts`.
    pub fn with_options(opts: BedOptions) -> Result<TestBed> {
        let mount = check_prerequisites()?;
        let _ = cleanup_stale();
        let pod_bin = match &opts.pod_bin {
            Some(p) => p.clone(),
            None => crate::binaries::ambit_pod()?,
        };
        let id = format!("{}-{}", std::process::id(), BED_COUNTER.fetch_add(1, Ordering::SeqCst));
        let manifests = tempfile::Builder::new().prefix(&format!("ambit-bed-{id}-manifests-")).tempdir()?;
        let state_dir = tempfile::Builder::new().prefix(&format!("ambit-bed-{id}-state-")).tempdir()?;
        let hosts_file = state_dir.path().join("hosts");
        let count = opts.nodes.max(1);
        let nodes = (1..=count).map(|i| BedNode::new(&id, i, &mount)).collect::<Result<Vec<_>>>()?;
        let bed = TestBed {
            nodes,
            cluster_netns: (count > 1).then(|| format!("{PREFIX}{id}-cluster")),
            state: Mutex::new(State {
                namespaces: BTreeMap::new(),
                deployments: BTreeMap::new(),
                pods: BTreeMap::new(),
                services: BTreeMap::new(),
                passthrough: BTreeMap::new(),
                ips: ClusterIpAllocator::default(),
                next_pod: 2,
                next_node_proc: 0,
                spread: 0,
                writer: ManifestWriter::new(manifests.path()),
            }),
            id,
            manifests,
            state_dir,
            hosts_file,
            pod_bin,
            opts,
        };
        bed.setup_nodes().with_context(|| format!("setting up bed {}", bed.id))?;
        bed.sync(&mut bed.lock())?;
        Ok(bed)
    }

    fn setup_nodes(&self) -> Result<()> {
        for node in &self.nodes {
            self.setup_node(node).with_context(|| format!("setting up node {}", node.index()))?;
        }
        let Some(cluster_ns) = &self.cluster_netns else { return Ok(()) };
        cluster_net::create(cluster_ns)?;
        for node in &self.nodes {
            cluster_net::attach(cluster_ns, node, &self.nodes)
                .with_context(|| format!("joining node {} to the cluster network", node.index()))?;
        }
        Ok(())
    }

    /// A node's namespace, sysctls, cluster-IP routes and cgroup root; in a
    /// one-node bed also its addresses (on `lo`; with more nodes they are on
    /// the cluster network's `eth0`).
    fn setup_node(&self, node: &BedNode) -> Result<()> {
        std::fs::create_dir_all(node.cgroup_root())
            .with_context(|| format!("creating {}", node.cgroup_root().display()))?;
        let ns = node.netns();
        netns::create(ns)?;
        netns::sysctls(
            ns,
            &[
                ("net/ipv4/ip_forward", "1"),
                ("net/ipv6/conf/all/forwarding", "1"),
                ("net/ipv6/conf/default/accept_dad", "0"),
                ("net/ipv4/icmp_ratelimit", "0"),
                ("net/ipv6/icmp/ratelimit", "0"),
            ],
        )?;
        let mut lines = vec!["route add unreachable 10.96.0.0/16".to_string(), "route add unreachable fd96::/64".into()];
        if self.cluster_netns.is_none() {
            lines.insert(0, format!("addr add {}/32 dev lo", node.ipv4()));
            lines.insert(1, format!("addr add {}/128 dev lo", node.ipv6()));
        }
        netns::ip_batch(ns, &lines)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Unique id of the bed (`<pid>-<counter>`).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Name of node 1's network namespace (`ambit-<id>-node`).
    pub fn node_netns(&self) -> &str {
        self.nodes[0].netns()
    }
    /// spec.nodeName of node 1 (of every pod in a one-node bed).
    pub fn node_name(&self) -> &str {
        self.nodes[0].name()
    }
    /// The bed's nodes, node 1 first.
    pub fn nodes(&self) -> &[BedNode] {
        &self.nodes
    }
    /// Node `index` (1-based), or an error naming the bed's node count.
    pub fn node(&self, index: usize) -> Result<&BedNode> {
        index
            .checked_sub(1)
            .and_then(|i| self.nodes.get(i))
            .ok_or_else(|| anyhow!("the bed has no node {index} (it has {})", self.nodes.len()))
    }
    /// The namespace of the cluster network joining the nodes (None in a one-node bed).
    pub fn cluster_netns(&self) -> Option<&str> {
        self.cluster_netns.as_deref()
    }
    /// Starts capturing every frame between nodes (on the cluster bridge) for at
    /// most `limit`; see [`crate::capture`]. Fails in a one-node bed.
    pub fn capture(&self, limit: std::time::Duration) -> Result<crate::capture::Capture> {
        let ns = self.cluster_netns().context("a one-node bed has no cluster network to capture")?;
        crate::capture::Capture::start(ns, cluster_net::BRIDGE, limit)
    }
    /// The node's IPv4 address (10.77.0.1), reachable from every pod.
    pub fn node_ip(&self) -> Ipv4Addr {
        NODE_IPV4
    }
    /// The node's IPv6 address (fd77::1).
    pub fn node_ipv6(&self) -> Ipv6Addr {
        NODE_IPV6
    }
    /// Node 1's cgroup root (its agent's `--cgroup-root`).
    pub fn cgroup_root(&self) -> &Path {
        self.nodes[0].cgroup_root()
    }
    /// The directory of Kubernetes YAML the agent reads.
    pub fn manifests_dir(&self) -> &Path {
        self.manifests.path()
    }
    /// The hosts file clients resolve Service names with.
    pub fn hosts_file(&self) -> &Path {
        &self.hosts_file
    }
    /// A scratch directory owned by the bed (removed on drop).
    pub fn scratch_dir(&self) -> &Path {
        self.state_dir.path()
    }

    /// Applies multi-document Kubernetes YAML (see the crate docs for what
    /// each kind does); objects that exist are updated.
    pub fn apply_yaml(&self, yaml: &str) -> Result<()> {
        let docs = cluster::parse_documents(yaml)?;
        let mut st = self.lock();
        let result = (|| {
            for d in docs.iter().filter(|d| d.kind == "Namespace") {
                let labels = cluster::string_map(&d.value["metadata"]["labels"]);
                let entry = st.namespaces.entry(d.name.clone()).or_default();
                entry.extend(labels);
            }
            for d in docs.iter().filter(|d| d.kind != "Namespace") {
                self.ensure_namespace(&mut st, d.ns());
                match d.kind.as_str() {
                    "Deployment" => self.apply_deployment(&mut st, d)?,
                    "Service" => self.apply_service(&mut st, d)?,
                    _ => {
                        st.passthrough
                            .insert((d.kind.clone(), d.namespace.clone(), d.name.clone()), d.value.clone());
                    }
                }
            }
            Ok(())
        })();
        let synced = self.sync(&mut st);
        result.and(synced)
    }

    /// Deletes the objects named in multi-document YAML (a Namespace takes
    /// everything in it along). Missing objects are ignored.
    pub fn delete_yaml(&self, yaml: &str) -> Result<()> {
        let docs = cluster::parse_documents(yaml)?;
        let mut st = self.lock();
        let result = (|| {
            for d in &docs {
                let key = (d.ns().to_string(), d.name.clone());
                match d.kind.as_str() {
                    "Namespace" => self.delete_namespace(&mut st, &d.name)?,
                    "Deployment" => {
                        st.deployments.remove(&key);
                        self.scale(&mut st, &key.0, &key.1, 0)?;
                    }
                    "Service" => {
                        if let Some(s) = st.services.remove(&key) {
                            release_ips(&mut st.ips, &s);
                        }
                    }
                    _ => {
                        st.passthrough.remove(&(d.kind.clone(), d.namespace.clone(), d.name.clone()));
                    }
                }
            }
            Ok(())
        })();
        let synced = self.sync(&mut st);
        result.and(synced)
    }

    /// Sets (`Some`) or removes (`None`) a label on a namespace (created if missing).
    pub fn label_namespace(&self, namespace: &str, key: &str, value: Option<&str>) -> Result<()> {
        let mut st = self.lock();
        self.ensure_namespace(&mut st, namespace);
        let labels = st.namespaces.get_mut(namespace).expect("ensured");
        match value {
            Some(v) => labels.insert(key.to_string(), v.to_string()),
            None => labels.remove(key),
        };
        self.sync(&mut st)
    }

    /// Labels `namespace` with `ambit.dev/mesh: enabled`.
    pub fn enroll_namespace(&self, namespace: &str) -> Result<()> {
        self.label_namespace(namespace, MESH_LABEL.0, Some(MESH_LABEL.1))
    }

    /// Adds an ad-hoc pod (not owned by a Deployment).
    pub fn add_pod(&self, spec: PodSpec) -> Result<Pod> {
        let mut st = self.lock();
        self.ensure_namespace(&mut st, &spec.namespace);
        let key = (spec.namespace.clone(), spec.name.clone());
        if st.pods.contains_key(&key) {
            bail!("pod {}/{} already exists", key.0, key.1);
        }
        let ports = default_echo_ports();
        let result = self.create_pod(&mut st, &spec, None, ports);
        let synced = self.sync(&mut st);
        let pod = result?;
        synced?;
        Ok(pod)
    }

    /// Removes a pod: kills its processes, removes its cgroup and (unless
    /// shared) its network namespace.
    pub fn remove_pod(&self, namespace: &str, name: &str) -> Result<()> {
        let mut st = self.lock();
        let result = self.destroy_pod(&mut st, &(namespace.to_string(), name.to_string()));
        let synced = self.sync(&mut st);
        result.and(synced)
    }

    /// The pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.lock().pods.get(&(namespace.to_string(), name.to_string())).map(|p| p.pod.clone())
    }

    /// All pods, by namespace and name.
    pub fn pods(&self) -> Vec<Pod> {
        self.lock().pods.values().map(|p| p.pod.clone()).collect()
    }

    /// Pods of `namespace` whose labels include every `selector` pair, by name.
    pub fn pods_matching(&self, namespace: &str, selector: &[(&str, &str)]) -> Vec<Pod> {
        let sel: Labels = selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.lock()
            .pods
            .values()
            .filter(|p| p.pod.namespace == namespace && cluster::selects(&sel, &p.pod.labels))
            .map(|p| p.pod.clone())
            .collect()
    }

    /// The first pod (by name) of `namespace` matching `selector`, or an error.
    pub fn first_pod(&self, namespace: &str, selector: &[(&str, &str)]) -> Result<Pod> {
        self.pods_matching(namespace, selector)
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no pod in {namespace} matches {selector:?}"))
    }

    /// IPv4 cluster IP of Service `namespace/name`.
    pub fn service_ip(&self, namespace: &str, name: &str) -> Option<Ipv4Addr> {
        self.lock().services.get(&(namespace.to_string(), name.to_string())).and_then(|s| s.ipv4)
    }

    /// IPv6 cluster IP of Service `namespace/name` (dual-stack or IPv6 Services).
    pub fn service_ipv6(&self, namespace: &str, name: &str) -> Option<Ipv6Addr> {
        self.lock().services.get(&(namespace.to_string(), name.to_string())).and_then(|s| s.ipv6)
    }

    /// A `Command` that runs `program` in the node netns, in a fresh cgroup
    /// `<cgroup root>/system.slice/ambit-node-<k>.scope` (not enrolled),
    /// through `ambit-pod exec`. Add arguments and stdio, then spawn.
    pub fn node_command(&self, program: impl AsRef<OsStr>) -> Result<Command> {
        self.node_command_on(1, program)
    }

    /// [`TestBed::node_command`] on node `node` (1-based), in that node's cgroup tree.
    pub fn node_command_on(&self, node: usize, program: impl AsRef<OsStr>) -> Result<Command> {
        let node = self.node(node)?;
        let k = {
            let mut st = self.lock();
            st.next_node_proc += 1;
            st.next_node_proc
        };
        let cg = node.cgroup_root().join("system.slice").join(format!("ambit-node-{k}.scope"));
        self.node_command_in(node.index(), &cg, program)
    }

    /// A `Command` that runs `program` in node `node`'s netns, in the cgroup directory
    /// `cgroup` (created if missing; e.g. a kubelet-style probe cgroup the agent trusts).
    pub fn node_command_in(&self, node: usize, cgroup: &Path, program: impl AsRef<OsStr>) -> Result<Command> {
        let node = self.node(node)?;
        std::fs::create_dir_all(cgroup).with_context(|| format!("creating {}", cgroup.display()))?;
        let mut c = Command::new(&self.pod_bin);
        c.arg("--cgroup").arg(cgroup).arg("--netns").arg(node.netns());
        c.arg("exec").arg("--").arg(program);
        Ok(c)
    }

    /// Spawns `program args...` in the node (see [`TestBed::node_command`]).
    pub fn spawn_in_node<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Result<Child>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.node_command(program)?;
        c.args(args);
        c.spawn().context("spawning a process in the node netns")
    }

    fn ensure_namespace(&self, st: &mut State, ns: &str) {
        st.namespaces.entry(ns.to_string()).or_default();
    }

    fn apply_deployment(&self, st: &mut State, d: &Doc) -> Result<()> {
        let spec = cluster::deployment_spec(d)?;
        let key = (d.ns().to_string(), d.name.clone());
        let replicas = spec.replicas;
        match st.deployments.get_mut(&key) {
            Some(existing) => existing.spec = spec,
            None => {
                st.deployments.insert(key.clone(), DeploymentState { spec, template_hash: random_hex(10) });
            }
        }
        self.scale(st, &key.0, &key.1, replicas)
    }

    /// Brings the pods of Deployment `ns/name` to `replicas`.
    fn scale(&self, st: &mut State, ns: &str, name: &str, replicas: usize) -> Result<()> {
        let mine: Vec<Key> = st
            .pods
            .iter()
            .filter(|(k, p)| k.0 == ns && p.deployment.as_deref() == Some(name))
            .map(|(k, _)| k.clone())
            .collect();
        for key in mine.iter().skip(replicas) {
            self.destroy_pod(st, key)?;
        }
        if mine.len() >= replicas {
            return Ok(());
        }
        let dep = st.deployments.get(&(ns.to_string(), name.to_string())).context("deployment state")?;
        let (hash, labels, ports) = (dep.template_hash.clone(), dep.spec.labels.clone(), dep.spec.ports.clone());
        let service_account = dep.spec.service_account.clone().unwrap_or_else(|| "default".into());
        let pinned = match &dep.spec.node_name {
            Some(n) => Some(self.node_named(n).with_context(|| format!("Deployment {ns}/{name}"))?),
            None => None,
        };
        for _ in mine.len()..replicas {
            let pod_name = loop {
                let n = format!("{name}-{hash}-{}", random_from(KUBE_ALPHABET, 5));
                if !st.pods.contains_key(&(ns.to_string(), n.clone())) {
                    break n;
                }
            };
            let node = match pinned {
                Some(i) => i,
                None if self.opts.spread_deployments => {
                    st.spread += 1;
                    (st.spread - 1) % self.nodes.len() + 1
                }
                None => 1,
            };
            let mut spec = PodSpec::new(ns, pod_name).on_node(node).service_account(service_account.clone());
            spec.labels = labels.clone();
            spec.labels.insert("pod-template-hash".into(), hash.clone());
            self.create_pod(st, &spec, Some(name.to_string()), ports.clone())?;
        }
        Ok(())
    }

    /// The index of the node named `name`.
    fn node_named(&self, name: &str) -> Result<usize> {
        self.nodes
            .iter()
            .find(|n| n.name() == name)
            .map(BedNode::index)
            .ok_or_else(|| anyhow!("nodeName {name:?} is not a node of the bed"))
    }

    fn apply_service(&self, st: &mut State, d: &Doc) -> Result<()> {
        let key = (d.ns().to_string(), d.name.clone());
        let ports = cluster::service_ports(d)?;
        let selector = match &d.value["spec"]["selector"] {
            serde_json::Value::Null => None,
            v => Some(cluster::string_map(v)),
        };
        if let Some(old) = st.services.remove(&key) {
            // Keep the addresses and slice names of an updated Service.
            let rec = ServiceRecord { doc: d.clone(), ports, selector, ..old };
            st.services.insert(key, rec);
            return Ok(());
        }
        let (want4, want6) = cluster::service_families(d, self.opts.dual_stack_services);
        let spec = &d.value["spec"];
        let explicit: Vec<std::net::IpAddr> = spec["clusterIPs"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
            .filter(|v: &Vec<std::net::IpAddr>| !v.is_empty())
            .or_else(|| spec["clusterIP"].as_str().and_then(|s| s.parse().ok()).map(|ip| vec![ip]))
            .unwrap_or_default();
        let headless = spec["clusterIP"].as_str() == Some("None");
        let (mut ipv4, mut ipv6) = (None, None);
        if !headless {
            if explicit.is_empty() {
                let (a, b) = st.ips.allocate()?;
                ipv4 = want4.then_some(a);
                ipv6 = want6.then_some(b);
            } else {
                for ip in explicit {
                    st.ips.reserve(ip)?;
                    match ip {
                        std::net::IpAddr::V4(a) => ipv4 = Some(a),
                        std::net::IpAddr::V6(b) => ipv6 = Some(b),
                    }
                }
            }
        }
        st.services.insert(
            key,
            ServiceRecord {
                doc: d.clone(),
                uid: random_uid(),
                selector,
                ports,
                ipv4,
                ipv6,
                slice_suffix: random_from(KUBE_ALPHABET, 5),
            },
        );
        Ok(())
    }

    fn delete_namespace(&self, st: &mut State, ns: &str) -> Result<()> {
        let pods: Vec<Key> = st.pods.keys().filter(|k| k.0 == ns).cloned().collect();
        // Sharers first, so owners can go.
        let (sharers, owners): (Vec<Key>, Vec<Key>) =
            pods.into_iter().partition(|k| st.pods[k].pod.shares_netns);
        for k in sharers.iter().chain(owners.iter()) {
            self.destroy_pod(st, k)?;
        }
        st.deployments.retain(|k, _| k.0 != ns);
        let gone: Vec<Key> = st.services.keys().filter(|k| k.0 == ns).cloned().collect();
        for k in gone {
            if let Some(s) = st.services.remove(&k) {
                release_ips(&mut st.ips, &s);
            }
        }
        st.passthrough.retain(|k, _| k.1.as_deref() != Some(ns));
        st.namespaces.remove(ns);
        Ok(())
    }

    fn create_pod(
        &self,
        st: &mut State,
        spec: &PodSpec,
        deployment: Option<String>,
        ports: Vec<ContainerPort>,
    ) -> Result<Pod> {
        let uid = random_uid();
        let container_id = random_hex(64);
        let (netns_name, ipv4, ipv6, shares, node) = match &spec.share_netns_with {
            Some((ns, name)) => {
                let owner = st
                    .pods
                    .get(&(ns.clone(), name.clone()))
                    .ok_or_else(|| anyhow!("pod {ns}/{name} to share a netns with does not exist"))?;
                (owner.pod.netns.clone(), owner.pod.ipv4, owner.pod.ipv6, true, self.node(owner.pod.node)?)
            }
            None => {
                let node = self.node(spec.node).with_context(|| format!("placing pod {}/{}", spec.namespace, spec.name))?;
                let n = st.next_pod;
                let ipv4 = node.pod_ipv4(n)?;
                let ipv6 = node.pod_ipv6(n);
                st.next_pod += 1;
                let name = format!("{PREFIX}{}-p{n}", self.id);
                self.create_pod_netns(node, &name, n, ipv4, ipv6)
                    .with_context(|| format!("creating the network of pod {}/{}", spec.namespace, spec.name))?;
                (name, ipv4, ipv6, false, node)
            }
        };
        let cgroup_dir = node.cgroup_root().join(self.opts.cgroup_layout.container_path(&uid, &container_id));
        std::fs::create_dir_all(&cgroup_dir).with_context(|| format!("creating {}", cgroup_dir.display()))?;
        let pod = Pod {
            namespace: spec.namespace.clone(),
            name: spec.name.clone(),
            uid,
            labels: spec.labels.clone(),
            ipv4,
            ipv6,
            netns: netns_name,
            cgroup: cgroup_dir,
            container_id,
            shares_netns: shares,
            node: node.index(),
            node_name: node.name().to_string(),
            service_account: spec.service_account.clone(),
            pod_bin: self.pod_bin.clone(),
            hosts_file: self.hosts_file.clone(),
        };
        let key = (spec.namespace.clone(), spec.name.clone());
        // Record it before starting the server, so a failure still cleans up.
        st.pods.insert(key.clone(), PodState { pod: pod.clone(), deployment, ports, server: None });
        if spec.serve {
            let server = self.start_server(&pod)?;
            st.pods.get_mut(&key).expect("inserted").server = Some(server);
        }
        Ok(pod)
    }

    fn create_pod_netns(&self, node: &BedNode, name: &str, n: u32, ipv4: Ipv4Addr, ipv6: Ipv6Addr) -> Result<()> {
        netns::create(name)?;
        netns::sysctls(
            name,
            &[("net/ipv6/conf/default/accept_dad", "0"), ("net/ipv6/conf/all/accept_dad", "0")],
        )?;
        let veth = format!("vp{n}");
        netns::create_veth(node.netns(), &veth, name, "eth0")?;
        netns::ip_batch(
            name,
            &[
                format!("addr add {ipv4}/32 dev eth0"),
                format!("addr add {ipv6}/128 dev eth0 nodad"),
                "link set eth0 up".into(),
                format!("route add default via {POD_GATEWAY_V4} dev eth0 onlink"),
                format!("route add ::/0 via {POD_GATEWAY_V6} dev eth0"),
            ],
        )?;
        netns::ip_batch(
            node.netns(),
            &[
                format!("addr add {POD_GATEWAY_V4}/32 dev {veth}"),
                format!("addr add {POD_GATEWAY_V6}/64 dev {veth} nodad"),
                format!("link set {veth} up"),
                format!("route add {ipv4}/32 dev {veth}"),
                format!("route add {ipv6}/128 dev {veth}"),
            ],
        )
    }

    fn start_server(&self, pod: &Pod) -> Result<Child> {
        use std::io::BufRead;
        let mut child = Command::new(&self.pod_bin)
            .arg("--cgroup")
            .arg(&pod.cgroup)
            .arg("--netns")
            .arg(&pod.netns)
            .args(["serve", "--pod", &pod.name, "--namespace", &pod.namespace])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning ambit-pod serve")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "READY" {
            let _ = child.kill();
            let status = child.wait();
            bail!("echo server of pod {}/{} did not start ({status:?})", pod.namespace, pod.name);
        }
        Ok(child)
    }

    fn destroy_pod(&self, st: &mut State, key: &Key) -> Result<()> {
        let Some(p) = st.pods.get(key) else { return Ok(()) };
        if !p.pod.shares_netns
            && st.pods.values().any(|o| o.pod.shares_netns && o.pod.netns == p.pod.netns)
        {
            bail!("pod {}/{} has pods sharing its network namespace; remove them first", key.0, key.1);
        }
        let mut p = st.pods.remove(key).expect("present");
        // The pod-level cgroup is the parent of the container cgroup.
        let pod_cgroup = p.pod.cgroup.parent().map(Path::to_path_buf).unwrap_or_else(|| p.pod.cgroup.clone());
        let r = cgroup::destroy_tree(&pod_cgroup);
        if let Some(mut c) = p.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        r?;
        if !p.pod.shares_netns {
            netns::delete(&p.pod.netns)?;
        }
        Ok(())
    }

    /// Rewrites the manifests directory and the hosts file from the state.
    fn sync(&self, st: &mut State) -> Result<()> {
        let mut files = BTreeMap::new();
        let mut put = |kind: &str, ns: Option<&str>, name: &str, v: &serde_json::Value| {
            files.insert(manifests::file_name(kind, ns, name), manifests::to_yaml(v));
        };
        for (name, labels) in &st.namespaces {
            put("Namespace", None, name, &manifests::namespace(name, labels));
        }
        for p in st.pods.values() {
            let pod = &p.pod;
            let node = &self.nodes[pod.node - 1];
            let obj = PodObject {
                namespace: &pod.namespace,
                name: &pod.name,
                uid: &pod.uid,
                labels: &pod.labels,
                ips: vec![pod.ipv4.to_string(), pod.ipv6.to_string()],
                node_name: &pod.node_name,
                host_ips: vec![node.ipv4().to_string(), node.ipv6().to_string()],
                service_account: &pod.service_account,
                host_network: pod.shares_netns,
                container_id: &pod.container_id,
                ports: &p.ports,
                owner: p.deployment.as_deref(),
            };
            put("Pod", Some(&pod.namespace), &pod.name, &manifests::pod(&obj));
        }
        let mut hosts = Vec::new();
        for ((ns, name), svc) in &st.services {
            let fqdn = format!("{name}.{ns}.svc.{CLUSTER_DOMAIN}");
            let mut v = svc.doc.value.clone();
            v["metadata"]["uid"] = json!(svc.uid);
            v["metadata"]["namespace"] = json!(ns);
            let mut ips: Vec<String> = Vec::new();
            let mut families = Vec::new();
            if let Some(a) = svc.ipv4 {
                ips.push(a.to_string());
                families.push("IPv4");
                hosts.push((a.into(), fqdn.clone()));
            }
            if let Some(b) = svc.ipv6 {
                ips.push(b.to_string());
                families.push("IPv6");
                hosts.push((b.into(), fqdn.clone()));
            }
            v["spec"]["clusterIP"] = json!(ips.first().cloned().unwrap_or_else(|| "None".into()));
            v["spec"]["clusterIPs"] = json!(if ips.is_empty() { vec!["None".to_string()] } else { ips });
            if !families.is_empty() {
                v["spec"]["ipFamilies"] = json!(families);
                v["spec"]["ipFamilyPolicy"] =
                    json!(if families.len() == 2 { "PreferDualStack" } else { "SingleStack" });
            }
            v["spec"]["type"] = json!(v["spec"]["type"].as_str().unwrap_or("ClusterIP"));
            put("Service", Some(ns), name, &v);

            let eps: Vec<cluster::EndpointPod<'_>> = st
                .pods
                .values()
                .filter(|p| &p.pod.namespace == ns)
                .map(|p| cluster::EndpointPod {
                    name: &p.pod.name,
                    uid: &p.pod.uid,
                    labels: &p.pod.labels,
                    ipv4: p.pod.ipv4,
                    ipv6: p.pod.ipv6,
                    ports: &p.ports,
                    node_name: &p.pod.node_name,
                })
                .collect();
            if let Some((ports, v4, v6)) = cluster::slice_contents(svc, &eps) {
                if svc.ipv4.is_some() || svc.ipv6.is_none() {
                    let n = format!("{name}-{}", svc.slice_suffix);
                    put("EndpointSlice", Some(ns), &n, &manifests::endpoint_slice(ns, &n, name, "IPv4", &ports, &v4));
                }
                if svc.ipv6.is_some() {
                    let n = format!("{name}-{}6", svc.slice_suffix);
                    put("EndpointSlice", Some(ns), &n, &manifests::endpoint_slice(ns, &n, name, "IPv6", &ports, &v6));
                }
            }
        }
        for ((kind, ns, name), v) in &st.passthrough {
            put(kind, ns.as_deref(), name, v);
        }
        st.writer.sync(files)?;
        manifests::write_atomic(&self.hosts_file, &Hosts::render(&hosts))
    }
}

fn release_ips(ips: &mut ClusterIpAllocator, s: &ServiceRecord) {
    if let Some(a) = s.ipv4 {
        ips.release(a.into());
    }
    if let Some(b) = s.ipv6 {
        ips.release(b.into());
    }
}

/// The echo container's ports (ad-hoc pods).
fn default_echo_ports() -> Vec<ContainerPort> {
    use crate::echo_server::*;
    [("http", HTTP_PORT), ("https", TLS_PORT), ("tcp", TCP_PORT), ("grpc", GRPC_PORT)]
        .into_iter()
        .map(|(n, p)| (Some(n.to_string()), p))
        .collect()
}

impl Drop for TestBed {
    fn drop(&mut self) {
        let mut st = self.lock();
        // Killing the whole trees stops every pod and node process at once.
        let r1 = self.nodes.iter().map(|n| cgroup::destroy_tree(n.cgroup_root())).fold(Ok(()), Result::and);
        for p in st.pods.values_mut() {
            if let Some(mut c) = p.server.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        drop(st);
        if let Err(e) = r1 {
            eprintln!("ambit test bed {}: {e:#}", self.id);
        }
        if let Err(e) = delete_bed_netns(&self.id) {
            eprintln!("ambit test bed {}: {e:#}", self.id);
        }
    }
}

fn delete_bed_netns(id: &str) -> Result<()> {
    let prefix = format!("{PREFIX}{id}-");
    let mut first_err = None;
    for name in netns::list().into_iter().filter(|n| n.starts_with(&prefix)) {
        if let Err(e) = netns::delete(&name) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Parses a bed id `<pid>-<counter>` at the start of `rest`, returning the pid.
fn bed_pid(rest: &str) -> Option<(u32, String)> {
    let mut parts = rest.splitn(3, '-');
    let pid: u32 = parts.next()?.parse().ok()?;
    let counter: u32 = parts.next()?.parse().ok()?;
    Some((pid, format!("{pid}-{counter}")))
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes network namespaces (`ambit-<pid>-<n>-*`) and cgroup trees
/// (`ambit-bed-<pid>-<n>`) of beds whose process is gone. Returns what it removed.
pub fn cleanup_stale() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let mount = cgroup::cgroup2_mount()?;
    if let Ok(entries) = std::fs::read_dir(&mount) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("ambit-bed-") else { continue };
            let Some((pid, _)) = bed_pid(rest) else { continue };
            if !pid_alive(pid) && cgroup::destroy_tree(&e.path()).is_ok() {
                removed.push(e.path().display().to_string());
            }
        }
    }
    for name in netns::list() {
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let Some((pid, _)) = bed_pid(rest) else { continue };
        if !pid_alive(pid) && netns::delete(&name).is_ok() {
            removed.push(name);
        }
    }
    Ok(removed)
}
