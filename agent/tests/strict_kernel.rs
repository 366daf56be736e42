//! Kernel test of STRICT mode: the real classifier on a real veth, real cgroups.
//! Needs root, cgroup v2, bpffs and `ip`; it fails (never skips) without them.
//!
//! Run: `cargo test -p ambit-agent --test strict_kernel` (as root).
//!
//! Layout (names carry the test's pid):
//!
//! ```text
//!  [pod netns]  eth0 10.56.0.2 / fd56::2, listens on :8080
//!       | veth (node side: vh)
//!  [node netns] lo 10.56.255.1 (listens on :9090); routes 10.56.0.2/32, fd56::2/128 dev vh,
//!       |                                         10.56.1.2/32 dev vo; forwarding on
//!       | veth (node side: vo)
//!  [other netns] eth0 10.56.1.2: a pod outside the mesh, its packets are forwarded
//! ```
//!
//! cgroups `<cgroup2>/ambit-strict-test-<pid>/{trusted,untrusted}`. The guard is
//! installed (maps pinned under a private bpffs directory) trusting only `trusted/`,
//! and synced from a thread inside the node namespace, as the agent runs there.
//! Clients are this binary re-executed (`AMBIT_STRICT_TEST_CLIENT`): they join a
//! cgroup, enter a namespace, connect with a 2 s timeout and print the outcome.

use std::collections::BTreeSet;
use std::fs;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ambit_agent::strict::{StrictConfig, StrictGuard, Trusted};
use ambit_ebpf_common::{StrictStat, TrustReason};

const CLIENT_ENV: &str = "AMBIT_STRICT_TEST_CLIENT";
/// Re-executed to find its own cgroup from a private cgroup namespace (as a container).
const OWN_ENV: &str = "AMBIT_STRICT_TEST_OWN";
const POD_V4: &str = "10.56.0.2";
const POD_V6: &str = "fd56::2";
const OTHER_V4: &str = "10.56.1.2";
const NODE_V4: &str = "10.56.255.1";

fn main() {
    if let Ok(spec) = std::env::var(CLIENT_ENV) {
        client_main(&spec);
        return;
    }
    if let Ok(procs) = std::env::var(OWN_ENV) {
        own_main(&procs);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        println!("strict_kernel: test");
        return;
    }
    scenario();
    println!("test strict_kernel ... ok");
}

/// `cgroup.procs path|netns path|address`: connect once, print `ok` or the error kind.
fn client_main(spec: &str) {
    let parts: Vec<&str> = spec.split('|').collect();
    let [procs, netns, addr] = parts[..] else { panic!("bad client spec {spec:?}") };
    fs::write(procs, std::process::id().to_string()).expect("joining cgroup");
    let ns = fs::File::open(netns).expect("opening netns");
    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    let addr: SocketAddr = addr.parse().expect("address");
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => println!("ok"),
        Err(e) => println!("{:?}", e.kind()),
    }
}

/// Joins the cgroup, enters a private cgroup namespace (where its cgroup reads `/`) and
/// prints the id of its own cgroup as the guard finds it.
fn own_main(procs: &str) {
    fs::write(procs, std::process::id().to_string()).expect("joining cgroup");
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).expect("unshare");
    let unified = fs::read_to_string("/proc/self/cgroup").unwrap();
    assert!(unified.lines().any(|l| l == "0::/"), "{unified}");
    let mount = ambit_agent::cgroups::cgroup2_mount().unwrap();
    println!("{}", ambit_agent::strict::trust::own(&mount).expect("own cgroup").id);
}

fn connect(cgroup: &Path, netns: &Netns, addr: &str) -> String {
    let spec = format!("{}|{}|{addr}", cgroup.join("cgroup.procs").display(), netns.path().display());
    let out = Command::new(std::env::current_exe().unwrap()).env(CLIENT_ENV, spec).output().expect("client");
    assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn ip(netns: Option<&str>, args: &str) {
    let mut c = Command::new("ip");
    if let Some(ns) = netns {
        c.args(["-n", ns]);
    }
    let status = c.args(args.split_whitespace()).status().expect("running ip");
    assert!(status.success(), "ip {args} failed");
}

struct Netns {
    name: String,
}

impl Netns {
    fn new(name: String) -> Self {
        ip(None, &format!("netns add {name}"));
        ip(Some(&name), "link set lo up");
        Self { name }
    }
    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
    fn sysctl(&self, key: &str) {
        let status = Command::new("ip").args(["netns", "exec", &self.name, "sysctl", "-qw", key]).status().unwrap();
        assert!(status.success(), "sysctl {key}");
    }
    /// Runs `f` on a thread inside this namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = fs::File::open(self.path()).unwrap();
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                f()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

struct Cgroups(PathBuf);

impl Drop for Cgroups {
    fn drop(&mut self) {
        for d in ["trusted", "untrusted", ""] {
            for _ in 0..50 {
                if fs::remove_dir(self.0.join(d)).is_ok() || !self.0.join(d).exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = StrictGuard::uninstall(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A pod-style namespace `name` joined to `node` by a veth whose node side is `host`.
fn pod(node: &Netns, name: String, host: &str, v4: &str, v6: Option<&str>) -> Netns {
    let pod = Netns::new(name);
    ip(Some(&node.name), &format!("link add {host} type veth peer name eth0 netns {}", pod.name));
    ip(Some(&node.name), &format!("addr add 169.254.1.1/32 dev {host}"));
    ip(Some(&node.name), &format!("addr add fe80::1/64 dev {host} nodad"));
    ip(Some(&node.name), &format!("link set {host} up"));
    ip(Some(&node.name), &format!("route add {v4}/32 dev {host}"));
    ip(Some(&pod.name), &format!("addr add {v4}/32 dev eth0"));
    ip(Some(&pod.name), "link set eth0 up");
    ip(Some(&pod.name), "route add 169.254.1.1 dev eth0 scope link");
    ip(Some(&pod.name), "route add default via 169.254.1.1 dev eth0");
    if let Some(v6) = v6 {
        ip(Some(&node.name), &format!("-6 route add {v6}/128 dev {host}"));
        ip(Some(&pod.name), &format!("-6 addr add {v6}/128 dev eth0 nodad"));
        ip(Some(&pod.name), "-6 route add default via fe80::1 dev eth0");
    }
    pod
}

fn stat(guard: &StrictGuard, s: StrictStat) -> u64 {
    guard.stats().unwrap()[s as usize]
}

fn scenario() {
    let pid = std::process::id();
    let mount = ambit_agent::cgroups::cgroup2_mount().expect("cgroup v2");
    let cgroups = Cgroups(mount.join(format!("ambit-strict-test-{pid}")));
    let (trusted, untrusted) = (cgroups.0.join("trusted"), cgroups.0.join("untrusted"));
    fs::create_dir_all(&trusted).unwrap();
    fs::create_dir_all(&untrusted).unwrap();

    let node = Netns::new(format!("ambit-st-{pid}-node"));
    node.sysctl("net.ipv4.ip_forward=1");
    node.sysctl("net.ipv6.conf.all.forwarding=1");
    ip(Some(&node.name), &format!("addr add {NODE_V4}/32 dev lo"));
    let pod_ns = pod(&node, format!("ambit-st-{pid}-pod"), "vh", POD_V4, Some(POD_V6));
    let other = pod(&node, format!("ambit-st-{pid}-other"), "vo", OTHER_V4, None);

    // Listeners: the pod's server, and a node-side server the pod dials out to.
    let _pod_listeners: Vec<TcpListener> = pod_ns.run(|| {
        vec![
            TcpListener::bind(format!("{POD_V4}:8080")).unwrap(),
            TcpListener::bind(format!("[{POD_V6}]:8080")).unwrap(),
        ]
    });
    let _node_listener = node.run(|| TcpListener::bind(format!("{NODE_V4}:9090")).unwrap());

    // The agent finds its own cgroup even from a container's private cgroup namespace.
    let out = Command::new(std::env::current_exe().unwrap())
        .env(OWN_ENV, trusted.join("cgroup.procs"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let own_id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(own_id, ambit_agent::strict::trust::cgroup_id(&trusted).unwrap(), "own cgroup from a cgroup namespace");

    let bpffs = PathBuf::from("/sys/fs/bpf");
    assert!(bpffs.exists(), "bpffs must be mounted at /sys/fs/bpf");
    let pins = PinDir(bpffs.join(format!("ambit-strict-test-{pid}")));
    fs::create_dir_all(pins.0.join("maps")).unwrap();
    let trusted_id = ambit_agent::strict::trust::cgroup_id(&trusted).unwrap();
    let guard = StrictGuard::install(&StrictConfig {
        pin_dir: pins.0.clone(),
        capacity: Default::default(),
        trusted: vec![Trusted { id: trusted_id, path: trusted.clone(), reason: TrustReason::Agent }],
        cgroup_mount: None,
    })
    .expect("installing the guard");

    let pod_v4 = format!("{POD_V4}:8080");
    let pod_v6 = format!("[{POD_V6}]:8080");
    // Unguarded: everyone gets through.
    assert_eq!(connect(&untrusted, &node, &pod_v4), "ok", "unguarded, node process");
    assert_eq!(connect(&untrusted, &other, &pod_v4), "ok", "unguarded, other pod");

    let guarded: BTreeSet<IpAddr> = [POD_V4.parse().unwrap(), POD_V6.parse().unwrap()].into();
    let sync = node.run(|| guard.sync(&guarded));
    assert_eq!((sync.guarded, sync.interfaces, sync.unresolved), (2, 1, 0), "{sync:?}");
    assert!(sync.problems.is_empty(), "{:?}", sync.problems);
    assert!(pins.0.join("strict/vh").exists(), "the link is pinned");

    // Guarded: only the trusted cgroup's local sockets.
    assert_eq!(connect(&trusted, &node, &pod_v4), "ok", "trusted node process (IPv4)");
    assert_eq!(connect(&trusted, &node, &pod_v6), "ok", "trusted node process (IPv6)");
    assert_eq!(stat(&guard, StrictStat::Trusted), 2);
    assert_eq!(connect(&untrusted, &node, &pod_v4), "TimedOut", "untrusted node process (IPv4)");
    assert_eq!(connect(&untrusted, &node, &pod_v6), "TimedOut", "untrusted node process (IPv6)");
    assert!(stat(&guard, StrictStat::DroppedUntrusted) >= 2);
    assert_eq!(connect(&trusted, &other, &pod_v4), "TimedOut", "forwarded, even from a trusted cgroup");
    assert!(stat(&guard, StrictStat::DroppedForwarded) >= 1);
    // The guarded pod's own outbound connections work (the SYN-ACK passes).
    assert_eq!(connect(&untrusted, &pod_ns, &format!("{NODE_V4}:9090")), "ok", "the pod dials out");

    // A second agent (surge rollout) trusting its own cgroup keeps the first agent's,
    // whose cgroup still exists; one installed without that knowledge drops it.
    let untrusted_id = ambit_agent::strict::trust::cgroup_id(&untrusted).unwrap();
    let second = |mount: Option<PathBuf>, id: u64, path: &Path| StrictConfig {
        pin_dir: pins.0.clone(),
        capacity: Default::default(),
        trusted: vec![Trusted { id, path: path.to_path_buf(), reason: TrustReason::Agent }],
        cgroup_mount: mount,
    };
    let successor = StrictGuard::install(&second(Some(mount.clone()), untrusted_id, &untrusted)).unwrap();
    assert_eq!(connect(&untrusted, &node, &pod_v4), "ok", "the successor's cgroup");
    assert_eq!(connect(&trusted, &node, &pod_v4), "ok", "the first agent's cgroup is kept");
    drop(successor);
    let alone = StrictGuard::install(&second(None, trusted_id, &trusted)).unwrap();
    assert_eq!(connect(&untrusted, &node, &pod_v4), "TimedOut", "the other agent's entry is removed");
    drop(alone);

    // Releasing with the same set changes nothing; releasing all unguards.
    let kept = node.run(|| guard.release(&guarded));
    assert_eq!(kept, Default::default(), "nothing to release");
    assert_eq!(connect(&untrusted, &node, &pod_v4), "TimedOut", "still guarded");
    // Unguarded again: the link and the entries are gone.
    let sync = node.run(|| guard.release(&BTreeSet::new()));
    assert!(sync.problems.is_empty(), "{:?}", sync.problems);
    assert!(!pins.0.join("strict/vh").exists(), "the link is unpinned");
    assert_eq!(connect(&untrusted, &other, &pod_v4), "ok", "unguarded again, other pod");
    assert_eq!(connect(&untrusted, &node, &pod_v4), "ok", "unguarded again, node process");
    drop(guard);
}
