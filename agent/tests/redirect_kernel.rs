//! Kernel test of the eBPF redirection: real cgroups, a real network namespace, the
//! real programs. Needs root, cgroup v2 and `ip`; it fails (never skips) without them.
//!
//! Run: `cargo test -p ambit-agent --test redirect_kernel` (as root).
//!
//! Layout: a temporary attach cgroup `<cgroup2>/ambit-redirect-test-<pid>` with
//! `pod/` (enrolled) holding `pod/ctr/` (where the "pod's" processes run, to exercise
//! the ancestor walk), `pod2/` (a second enrolled pod) and `other/` (not enrolled); a network namespace with only `lo`,
//! carrying the proxy addresses 10.55.0.1 and fd55::1. The fake VIPs are never routed
//! anywhere: clients dial them only from inside that namespace.
//!
//! The test binary re-executes itself as the client (`AMBIT_REDIRECT_TEST_CLIENT`):
//! the child joins its cgroup, enters the namespace, performs one operation and
//! reports the outcome on stdout.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ambit_agent::redirect::{self, Redirector, RedirectorConfig, Tracked};
use ambit_ebpf_common::{LimitStat, Stat};
use ambit_proxy_core::identity::CgroupId;

const CLIENT_ENV: &str = "AMBIT_REDIRECT_TEST_CLIENT";
const PROXY_V4: Ipv4Addr = Ipv4Addr::new(10, 55, 0, 1);
const PROXY_V6: Ipv6Addr = Ipv6Addr::new(0xfd55, 0, 0, 0, 0, 0, 0, 1);
const PROXY_PORT: u16 = 15001;
const MANY: usize = 10_000;
/// The per-pod quota of tracked sockets the redirector is installed with.
const QUOTA: u32 = 8;
const IPPROTO_MPTCP: i32 = 262;

fn vip4() -> SocketAddr {
    "10.96.55.10:80".parse().unwrap()
}
fn vip4_mapped() -> SocketAddr {
    "[::ffff:10.96.55.10]:80".parse().unwrap()
}
fn vip6() -> SocketAddr {
    "[fd96::10]:80".parse().unwrap()
}

fn main() {
    if let Ok(spec) = std::env::var(CLIENT_ENV) {
        client_main(&spec);
        return;
    }
    // libtest-style arguments (filters, --list) are accepted and ignored, except that
    // a listing must not run the test.
    if std::env::args().any(|a| a == "--list") {
        println!("redirect_kernel: test");
        return;
    }
    scenario();
    println!("test redirect_kernel ... ok");
}

// ---------------------------------------------------------------- client side

/// `op|cgroup.procs path|netns path|address|count`
fn client_main(spec: &str) {
    let parts: Vec<&str> = spec.split('|').collect();
    let [op, procs, netns, addr, count] = parts[..] else {
        panic!("bad client spec {spec:?}");
    };
    fs::write(procs, std::process::id().to_string()).expect("joining cgroup");
    let ns = fs::File::open(netns).expect("opening netns");
    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    let addr: SocketAddr = addr.parse().expect("address");
    let timeout = Duration::from_secs(3);
    match op {
        "connect" => match TcpStream::connect_timeout(&addr, timeout) {
            Ok(mut s) => {
                println!("ok {} {}", s.local_addr().unwrap(), s.peer_addr().unwrap());
                // Hold the connection until the test closes its end.
                let mut buf = [0u8; 16];
                let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                let _ = s.read(&mut buf);
            }
            Err(e) => println!("err {}", e.raw_os_error().unwrap_or(-1)),
        },
        "udp" => {
            let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().unwrap();
            let s = UdpSocket::bind(bind).expect("udp bind");
            match s.connect(addr) {
                Ok(()) => println!("ok {}", s.peer_addr().unwrap()),
                Err(e) => println!("err {}", e.raw_os_error().unwrap_or(-1)),
            }
        }
        "hold" => {
            // Connects until `count` are open or one fails; reports, then holds them
            // until killed.
            let n: usize = count.parse().expect("count");
            let mut held = Vec::new();
            let mut report = format!("ok {n}");
            for i in 0..n {
                match TcpStream::connect_timeout(&addr, timeout) {
                    Ok(s) => held.push(s),
                    Err(e) => {
                        report = format!("err {} at {i}", e.raw_os_error().unwrap_or(-1));
                        break;
                    }
                }
            }
            println!("{report}");
            thread::sleep(Duration::from_secs(30));
            drop(held);
        }
        "mptcp" => match mptcp_connect(addr) {
            Ok(mut s) => {
                println!("ok {} {}", s.local_addr().unwrap(), s.peer_addr().unwrap());
                let mut buf = [0u8; 16];
                let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                let _ = s.read(&mut buf);
            }
            Err(errno) => println!("err {errno}"),
        },
        "many" => {
            let n: usize = count.parse().expect("count");
            for i in 0..n {
                if let Err(e) = TcpStream::connect_timeout(&addr, timeout) {
                    println!("err {} at {i}", e.raw_os_error().unwrap_or(-1));
                    return;
                }
            }
            println!("ok {n}");
        }
        other => panic!("unknown client op {other}"),
    }
}

/// connect() on an MPTCP socket (`socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP)`).
fn mptcp_connect(addr: SocketAddr) -> Result<TcpStream, i32> {
    let SocketAddr::V4(v4) = addr else {
        panic!("the MPTCP client dials IPv4 only");
    };
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(-1);
    // SAFETY: plain socket/connect/close calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, IPPROTO_MPTCP);
        assert!(fd >= 0, "MPTCP sockets unavailable (net.mptcp.enabled=0?): errno {}", errno());
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            std::ptr::addr_of!(sa).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if rc == 0 {
            Ok(<TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd))
        } else {
            let e = errno();
            libc::close(fd);
            Err(e)
        }
    }
}

/// A running client and its first output line.
struct Client {
    child: Child,
    line: String,
}

impl Client {
    fn finish(mut self) {
        let status = self.child.wait().expect("waiting for client");
        assert!(status.success(), "client failed: {status}");
    }

    /// Ends a client that holds its connections (`hold`).
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_client(env: &Env, cgroup: &Path, op: &str, addr: SocketAddr, count: usize) -> Client {
    let spec = format!(
        "{op}|{}|{}|{addr}|{count}",
        cgroup.join("cgroup.procs").display(),
        env.netns.path().display()
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CLIENT_ENV, spec)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning client");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("client output");
    Client {
        child,
        line: line.trim().to_string(),
    }
}

/// Runs an operation expected to fail; returns the errno.
fn client_errno(env: &Env, cgroup: &Path, op: &str, addr: SocketAddr) -> i32 {
    let c = run_client(env, cgroup, op, addr, 1);
    let errno = c
        .line
        .strip_prefix("err ")
        .unwrap_or_else(|| panic!("{op} {addr} from {} should fail, got {:?}", cgroup.display(), c.line))
        .parse()
        .unwrap();
    c.finish();
    errno
}

// ---------------------------------------------------------------- fixtures

fn cgroup2_mount() -> PathBuf {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .expect("no cgroup2 mount in /proc/self/mounts")
}

/// Temporary cgroup tree, removed on drop.
struct CgroupTree {
    root: PathBuf,
}

impl CgroupTree {
    fn new(name: &str) -> Self {
        let root = cgroup2_mount().join(name);
        for d in ["", "pod", "pod/ctr", "pod2", "other"] {
            fs::create_dir(root.join(d)).unwrap_or_else(|e| panic!("creating cgroup {d}: {e}"));
        }
        Self { root }
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        for d in ["pod/ctr", "pod", "pod2", "other", ""] {
            let dir = self.root.join(d);
            // Clients may still be exiting: retry briefly.
            for _ in 0..50 {
                if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Network namespace with only loopback and the proxy addresses, deleted on drop.
struct Netns {
    name: String,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("running ip");
    assert!(status.success(), "ip {args:?} failed");
}

impl Netns {
    fn new(name: &str) -> Self {
        ip(&["netns", "add", name]);
        let ns = Self { name: name.to_string() };
        ip(&["-n", name, "link", "set", "lo", "up"]);
        ip(&["-n", name, "addr", "add", "10.55.0.1/32", "dev", "lo"]);
        ip(&["-n", name, "-6", "addr", "add", "fd55::1/128", "dev", "lo", "nodad"]);
        ns
    }
    fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }
    /// Binds a TCP listener inside the namespace.
    fn listen(&self, addr: SocketAddr) -> TcpListener {
        let path = self.path();
        thread::spawn(move || {
            let ns = fs::File::open(path).unwrap();
            // setns(CLONE_NEWNET) changes only this thread's namespace.
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
            l.set_nonblocking(true).unwrap();
            l
        })
        .join()
        .expect("listener thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Uninstalls on drop, so a failing test leaves no programs attached.
struct Installed {
    pin_dir: PathBuf,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Redirector::uninstall(&self.pin_dir);
    }
}

// Field order matters: uninstall before removing the cgroups.
struct Env {
    _installed: Installed,
    netns: Netns,
    cgroups: CgroupTree,
}

fn accept(l: &TcpListener) -> (TcpStream, SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match l.accept() {
            Ok(pair) => return pair,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn wait_tracked(r: &Redirector, want: Tracked) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = r.tracked().unwrap();
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "tracked {now:?}, expected {want:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn stat(r: &Redirector, s: Stat) -> u64 {
    r.stats().unwrap()[s as usize]
}

// ---------------------------------------------------------------- scenario

/// One redirected connection: accepted by the proxy listener, resolved to the VIP and
/// the pod cgroup, and shown to the client with the VIP as its peer.
fn check_redirected(env: &Env, r: &Redirector, listener: &TcpListener, dial: SocketAddr, pod: u64) {
    check_redirected_from(env, r, listener, dial, "pod/ctr", pod);
}

/// [`check_redirected`] from the cgroup `dir` (below the attach cgroup) of pod `pod`.
/// Also checks that the proxy's lookup removed the connection's record at once, while
/// the connection is still open.
fn check_redirected_from(env: &Env, r: &Redirector, listener: &TcpListener, dial: SocketAddr, dir: &str, pod: u64) {
    let client = run_client(env, &env.cgroups.root.join(dir), "connect", dial, 1);
    let mut words = client.line.split_whitespace();
    assert_eq!(words.next(), Some("ok"), "connect {dial}: {:?}", client.line);
    let client_local: SocketAddr = words.next().unwrap().parse().unwrap();
    let client_peer: SocketAddr = words.next().unwrap().parse().unwrap();
    assert_eq!(client_peer, dial, "getpeername() must report the dialled VIP");

    let (stream, peer) = accept(listener);
    let local = stream.local_addr().unwrap();
    assert_eq!(
        ambit_proxy_core::identity::canonical(peer),
        ambit_proxy_core::identity::canonical(client_local)
    );
    let before = r.tracked().unwrap();
    let origin = r.origin_resolver().resolve(peer, local).expect("origin");
    assert_eq!(origin.destination, ambit_proxy_core::identity::canonical(dial));
    assert_eq!(origin.pod_cgroup, CgroupId(pod));
    let tracked = r.tracked().unwrap();
    assert_eq!(tracked.connections + 1, before.connections, "the record must be gone once looked up: {tracked:?}");
    assert_eq!(tracked.sockets, before.sockets, "the open socket stays tracked: {tracked:?}");
    assert!(r.origin_resolver().resolve(peer, local).is_err(), "a record serves one lookup");
    drop(stream);
    client.finish();
}

/// Accepts and closes whatever is queued on `listener` (connections never served).
fn drain_queue(listener: &TcpListener) {
    while let Ok((stream, _)) = listener.accept() {
        drop(stream);
    }
}

fn wait_pod_sockets(r: &Redirector, pod: u64, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = r.pod_sockets().unwrap().get(&pod).copied().unwrap_or(0);
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "pod {pod} holds {now} tracked sockets, expected {want}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// One pod at its quota of tracked sockets is refused (EPERM, counted); another
/// enrolled pod still connects; the count returns to zero when the sockets close.
fn check_pod_quota(env: &Env, r: &Redirector, listener: &TcpListener, pod: u64, pod2: u64) {
    let root = &env.cgroups.root;
    let refused = r.limit_stats().unwrap()[LimitStat::PodQuota as usize];
    let holder = run_client(env, &root.join("pod/ctr"), "hold", vip4(), QUOTA as usize + 5);
    assert_eq!(holder.line, format!("err {} at {QUOTA}", libc::EPERM), "the pod's connect beyond its quota must fail with EPERM");
    wait_pod_sockets(r, pod, QUOTA as u64);
    assert_eq!(r.limit_stats().unwrap()[LimitStat::PodQuota as usize], refused + 1);
    // The other pod is unaffected, while the first still holds its quota. (The
    // holder's connections wait in the listener's queue: clear it first.)
    drain_queue(listener);
    check_redirected_from(env, r, listener, vip4(), "pod2", pod2);
    holder.kill();
    drain_queue(listener);
    wait_pod_sockets(r, pod, 0);
    wait_tracked(r, Tracked::default());
    // Back under its quota, the pod connects again.
    check_redirected(env, r, listener, vip4(), pod);
}

/// A connection reset by the proxy, then closed by the application (a socket already
/// in TCP_CLOSE may be set to TCP_CLOSE again by close()): counted closed once, and
/// its records go.
fn check_reset_counts_one_close(env: &Env, r: &Redirector, listener: &TcpListener) {
    wait_tracked(r, Tracked::default());
    let before = r.stats().unwrap();
    let client = run_client(env, &env.cgroups.root.join("pod/ctr"), "connect", vip4(), 1);
    assert!(client.line.starts_with("ok "), "{}", client.line);
    let (stream, _) = accept(listener);
    let abort = libc::linger { l_onoff: 1, l_linger: 0 };
    nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &abort).unwrap();
    drop(stream);
    client.finish();
    wait_tracked(r, Tracked::default());
    let after = r.stats().unwrap();
    for s in [Stat::Established, Stat::Closed] {
        assert_eq!(after[s as usize] - before[s as usize], 1, "{s:?}");
    }
}

/// MPTCP connects from an enrolled pod to a Service are redirected like TCP (the
/// kernel runs the connect hook for the MPTCP socket's TCP subflow) or, where a kernel
/// shows the hook the MPTCP socket itself, refused (EPERM, counted): never let
/// through. Other MPTCP connects are untouched.
fn check_mptcp(env: &Env, r: &Redirector, listener: &TcpListener, pod: u64) {
    let root = &env.cgroups.root;
    let refused = r.limit_stats().unwrap()[LimitStat::Mptcp as usize];
    let client = run_client(env, &root.join("pod/ctr"), "mptcp", vip4(), 1);
    let mut words = client.line.split_whitespace();
    match words.next() {
        Some("ok") => {
            let client_local: SocketAddr = words.next().unwrap().parse().unwrap();
            let (stream, peer) = accept(listener);
            assert_eq!(peer, client_local, "the MPTCP connection must reach the proxy");
            let origin = r.origin_resolver().resolve(peer, stream.local_addr().unwrap()).expect("origin");
            assert_eq!(origin.destination, vip4());
            assert_eq!(origin.pod_cgroup, CgroupId(pod));
            drop(stream);
            client.finish();
            assert_eq!(r.limit_stats().unwrap()[LimitStat::Mptcp as usize], refused);
            println!("MPTCP to a Service redirected (through its TCP subflow)");
        }
        _ => {
            let line = client.line.clone();
            client.finish();
            assert_eq!(line, format!("err {}", libc::EPERM), "MPTCP to a Service must be redirected or refused");
            assert_eq!(r.limit_stats().unwrap()[LimitStat::Mptcp as usize], refused + 1);
            println!("MPTCP to a Service refused");
        }
    }
    let refused = r.limit_stats().unwrap()[LimitStat::Mptcp as usize];
    let errno = client_errno(env, &root.join("other"), "mptcp", vip4());
    assert_eq!(errno, libc::ENETUNREACH, "a non-enrolled pod's MPTCP connect is untouched");
    let errno = client_errno(env, &root.join("pod/ctr"), "mptcp", "10.55.0.1:15002".parse().unwrap());
    assert_eq!(errno, libc::ECONNREFUSED, "MPTCP to a non-Service is untouched");
    assert_eq!(r.limit_stats().unwrap()[LimitStat::Mptcp as usize], refused);
}

fn assert_send_sync<T: Send + Sync>() {}

fn scenario() {
    assert_send_sync::<Redirector>();
    let tag = format!("ambit-redirect-test-{}", std::process::id());
    let pin_dir = PathBuf::from("/sys/fs/bpf").join(&tag);
    // Declared so that drop order is: Installed, Netns, CgroupTree.
    let cgroups = CgroupTree::new(&tag);
    let netns = Netns::new(&tag);
    let env = Env {
        _installed: Installed {
            pin_dir: pin_dir.clone(),
        },
        netns,
        cgroups,
    };
    let root = env.cgroups.root.clone();
    let pod = fs::metadata(root.join("pod")).unwrap().ino();
    let pod2 = fs::metadata(root.join("pod2")).unwrap().ino();

    let cfg = RedirectorConfig {
        attach_cgroup: root.clone(),
        pin_dir: pin_dir.clone(),
        proxy_v4: Some(PROXY_V4),
        proxy_v6: Some(PROXY_V6),
        proxy_port: PROXY_PORT,
        capacity: Default::default(),
        per_pod_sockets: QUOTA,
    };
    let listener4 = env.netns.listen(SocketAddr::new(PROXY_V4.into(), PROXY_PORT));
    let listener6 = env.netns.listen(SocketAddr::new(PROXY_V6.into(), PROXY_PORT));

    let r = Redirector::install(&cfg).expect("install");
    let counts = redirect::attached_program_counts(&root).unwrap();
    assert!(counts.values().all(|&n| n == 1), "after install: {counts:?}");
    assert!(r.sync_enrolled(&BTreeSet::from([pod, pod2])).unwrap().is_complete());
    assert!(r.sync_services(&BTreeSet::from([vip4(), vip6()])).unwrap().is_complete());
    assert_eq!(r.tracked().unwrap(), Tracked::default());

    // Redirected: IPv4, IPv6 socket to an IPv4-mapped VIP, IPv6.
    check_redirected(&env, &r, &listener4, vip4(), pod);
    check_redirected(&env, &r, &listener4, vip4_mapped(), pod);
    check_redirected(&env, &r, &listener6, vip6(), pod);
    println!("redirected v4, v4-mapped and v6 connections");

    // Not enrolled: untouched, and the VIP is unroutable in the namespace.
    let skipped = stat(&r, Stat::SkippedNotEnrolled);
    let errno = client_errno(&env, &root.join("other"), "connect", vip4());
    assert_eq!(errno, libc::ENETUNREACH, "non-enrolled connect must not be redirected");
    assert!(stat(&r, Stat::SkippedNotEnrolled) > skipped);

    // Not a Service: untouched (nothing listens on the proxy address at that port).
    let errno = client_errno(
        &env,
        &root.join("pod/ctr"),
        "connect",
        "10.55.0.1:15002".parse().unwrap(),
    );
    assert_eq!(errno, libc::ECONNREFUSED);
    let errno = client_errno(
        &env,
        &root.join("pod/ctr"),
        "connect",
        "10.96.55.10:81".parse().unwrap(),
    );
    assert_eq!(
        errno,
        libc::ENETUNREACH,
        "a port that is not the Service's must not be redirected"
    );

    // UDP: untouched.
    let not_tcp = stat(&r, Stat::SkippedNotTcp);
    let errno = client_errno(&env, &root.join("pod/ctr"), "udp", vip4());
    assert_eq!(errno, libc::ENETUNREACH, "UDP must not be redirected");
    assert!(stat(&r, Stat::SkippedNotTcp) > not_tcp);
    println!("non-enrolled, non-service and UDP connects untouched");

    check_mptcp(&env, &r, &listener4, pod);
    println!("other MPTCP connects untouched");
    wait_tracked(&r, Tracked::default());
    check_pod_quota(&env, &r, &listener4, pod, pod2);
    println!("a pod at its quota is refused alone");
    check_reset_counts_one_close(&env, &r, &listener4);
    println!("a reset connection is counted closed once");

    // A pod no longer enrolled loses its (zero) socket count; enrolled pods keep theirs.
    assert_eq!(r.pod_sockets().unwrap().get(&pod2), Some(&0));
    r.sync_enrolled(&BTreeSet::from([pod])).unwrap();
    let counts = r.pod_sockets().unwrap();
    assert!(!counts.contains_key(&pod2) && counts.contains_key(&pod), "{counts:?}");
    r.sync_enrolled(&BTreeSet::from([pod, pod2])).unwrap();
    println!("socket counts follow enrollment");

    check_run_stats(&env, &r, &listener4);

    // Many short connections: tracking returns to its baseline, counts are exact.
    wait_tracked(&r, Tracked::default());
    let before = r.stats().unwrap();
    let acceptor = {
        let l = listener4.try_clone().unwrap();
        thread::spawn(move || {
            for _ in 0..MANY {
                drop(accept(&l));
            }
        })
    };
    let client = run_client(&env, &root.join("pod/ctr"), "many", vip4(), MANY);
    assert_eq!(client.line, format!("ok {MANY}"));
    client.finish();
    acceptor.join().expect("acceptor");
    wait_tracked(&r, Tracked::default());
    let after = r.stats().unwrap();
    for s in [Stat::Redirected, Stat::Established, Stat::Closed] {
        assert_eq!(after[s as usize] - before[s as usize], MANY as u64, "{s:?}");
    }
    assert_eq!(after[Stat::TrackingFull as usize], 0);
    println!("{MANY} connections tracked and released");

    // Restart: a new agent takes over the pinned maps and links.
    drop(r);
    let r = Redirector::install(&cfg).expect("reinstall");
    let counts = redirect::attached_program_counts(&root).unwrap();
    assert!(counts.values().all(|&n| n == 1), "after restart: {counts:?}");
    assert_eq!(counts.len(), redirect::PROGRAMS.len());
    // Enrollment and services survived in the pinned maps: no re-sync.
    check_redirected(&env, &r, &listener4, vip4(), pod);
    wait_tracked(&r, Tracked::default());
    println!("restart keeps exactly one attachment and working redirection");

    // Uninstall: nothing attached, nothing pinned, no redirection.
    drop(r);
    Redirector::uninstall(&pin_dir).expect("uninstall");
    assert_eq!(redirect::attached_program_count(&root).unwrap(), 0);
    assert!(!pin_dir.exists());
    let errno = client_errno(&env, &root.join("pod/ctr"), "connect", vip4());
    assert_eq!(errno, libc::ENETUNREACH, "after uninstall nothing is redirected");
    Redirector::uninstall(&pin_dir).expect("uninstall is idempotent");
    println!("uninstall detaches everything");

    check_full_maps(&env, &cfg, &listener4, pod);
    Redirector::uninstall(&pin_dir).expect("uninstall after the full-map check");
    drop(env);
}

/// Connects from the enrolled pod's container to `dial`, `n` times, accepting each.
fn many_accepted(env: &Env, listener: &TcpListener, dial: SocketAddr, n: usize) {
    let acceptor = {
        let l = listener.try_clone().unwrap();
        thread::spawn(move || {
            for _ in 0..n {
                drop(accept(&l));
            }
        })
    };
    let client = run_client(env, &env.cgroups.root.join("pod/ctr"), "many", dial, n);
    assert_eq!(client.line, format!("ok {n}"));
    client.finish();
    acceptor.join().expect("acceptor");
}

/// The kernel's run count and time of `program` (from `Redirector::program_runs`).
fn runs(r: &Redirector, program: &str) -> (u64, u64) {
    let all = r.program_runs().expect("reading program runs");
    assert_eq!(all.len(), redirect::PROGRAMS.len(), "{all:?}");
    let p = all.iter().find(|p| p.program == program).unwrap_or_else(|| panic!("{program} not in {all:?}"));
    (p.run_count, p.run_time_ns)
}

/// With BPF run-time statistics on, the kernel counts each program's runs and time:
/// connect4 runs once per connect() (redirected, or let through as no Service), sockops
/// at least once per connection. Prints the mean time per connect4 run of each path.
fn check_run_stats(env: &Env, r: &Redirector, listener4: &TcpListener) {
    const N: usize = 2_000;
    let _on = redirect::RunStatsSwitch::enable().expect("enabling BPF run-time statistics (kernel >= 5.8)");
    let not_service = SocketAddr::new(PROXY_V4.into(), PROXY_PORT);
    for (what, dial) in [("redirected", vip4()), ("not a Service", not_service)] {
        wait_tracked(r, Tracked::default());
        let (c0, t0) = runs(r, "ambit_connect4");
        let (s0, _) = runs(r, "ambit_sockops");
        many_accepted(env, listener4, dial, N);
        let (c1, t1) = runs(r, "ambit_connect4");
        let (s1, _) = runs(r, "ambit_sockops");
        assert!(c1 - c0 >= N as u64, "{what}: connect4 ran {} times for {N} connects", c1 - c0);
        assert!(t1 > t0, "{what}: connect4's run time did not grow");
        assert!(s1 - s0 >= N as u64, "{what}: sockops ran {} times for {N} connections", s1 - s0);
        println!("connect4, {what}: {:.0} ns per run (kernel BPF statistics, {} runs)", (t1 - t0) as f64 / (c1 - c0) as f64, c1 - c0);
    }
    wait_tracked(r, Tracked::default());
}

/// With maps created tiny, a sync writes every entry that fits, reports the rest, and
/// what fits keeps redirecting; freeing room lets a later sync complete.
fn check_full_maps(env: &Env, cfg: &RedirectorConfig, listener4: &TcpListener, pod: u64) {
    let capacity = redirect::MapCapacity { enrolled: Some(1), services: Some(2) };
    let r = Redirector::install(&RedirectorConfig { capacity, ..cfg.clone() }).expect("install with tiny maps");
    let vip = |last: u8| SocketAddr::from(([10, 96, 55, last], 80));
    // Sorted by address: .10 and .11 fit, .12 does not.
    let outcome = r.sync_services(&BTreeSet::from([vip(10), vip(11), vip(12)])).unwrap();
    assert_eq!(outcome.unsynced, 1, "{outcome:?}");
    assert!(outcome.first_error.as_deref().is_some_and(|e| e.contains("10.96.55.12:80")), "{outcome:?}");
    let outcome = r.sync_enrolled(&BTreeSet::from([pod, u64::MAX])).unwrap();
    assert_eq!(outcome.unsynced, 1, "{outcome:?}");
    check_redirected(env, &r, listener4, vip4(), pod);
    wait_tracked(&r, Tracked::default());
    assert!(r.sync_services(&BTreeSet::from([vip(10), vip(12)])).unwrap().is_complete());
    assert!(r.sync_enrolled(&BTreeSet::from([pod])).unwrap().is_complete());
    println!("full maps: what fits is written and redirects, the rest is reported");
}
