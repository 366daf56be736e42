//! HAProxy in the peer comparison: one proxy on the client's node (node 1's netns,
//! node 1's core, one thread), HTTP mode to the server pod's HTTP port and TCP mode
//! to its echo port, plaintext. It is a proxy, not a mesh: one hop, no identity.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ambit_e2e::{Pod, TestBed};
use anyhow::{bail, Context, Result};

use super::super::loadgen::ambit_load_in;
use super::super::procs;

const HTTP_PORT: u16 = 18080;
const TCP_PORT: u16 = 19000;

/// A running HAProxy (killed on drop).
pub struct Haproxy {
    child: Child,
    node_ip: Ipv4Addr,
}

fn config(node: Ipv4Addr, server: Ipv4Addr) -> String {
    // As in the one-node bed: above the idle-memory scenario's connection count (HAProxy
    // opened none of 10,000 with `maxconn` 9,900), without `strict-limits`.
    let maxconn = super::super::world::haproxy_maxconn();
    format!(
        r#"global
    nbthread 1
    maxconn {maxconn}
    no strict-limits

defaults
    timeout connect 5s
    timeout client 120s
    timeout server 120s

frontend http
    mode http
    bind {node}:{HTTP_PORT}
    maxconn {maxconn}
    http-reuse always
    default_backend echo

backend echo
    mode http
    http-reuse always
    server s {server}:8080

listen tcp
    mode tcp
    bind {node}:{TCP_PORT}
    maxconn {maxconn}
    server s {server}:9090
"#
    )
}

impl Haproxy {
    /// Starts HAProxy on node 1 (pinned to `cpu`) in front of `server`; waits until
    /// `client` (on node 1) can connect to it.
    pub fn start(bed: &TestBed, server: &Pod, client: &Pod, cpu: usize, load_bin: &std::path::Path) -> Result<Haproxy> {
        let node_ip = bed.node(1)?.ipv4();
        let path = bed.scratch_dir().join("peers-haproxy.cfg");
        std::fs::write(&path, config(node_ip, server.ipv4))?;
        let check = std::process::Command::new("haproxy").arg("-c").arg("-q").arg("-f").arg(&path).status()?;
        if !check.success() {
            bail!("haproxy rejected its configuration {}", path.display());
        }
        let log_path = bed.scratch_dir().join("peers-haproxy.log");
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = bed.node_command_on(1, "taskset")?;
        cmd.args(["-c", &cpu.to_string(), "haproxy", "-db", "-f"]).arg(&path);
        let child = cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn().context("starting haproxy")?;
        let h = Haproxy { child, node_ip };
        procs::raise_nofile(h.pid())?;
        let addr = h.http().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ambit_load_in(client, cpu, load_bin, &["connect", "--addr", &addr, "--count", "1"]).is_ok_and(|v| v["errors"] == 0) {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("haproxy does not accept connections on {addr}; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(h)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn http(&self) -> SocketAddr {
        SocketAddr::new(self.node_ip.into(), HTTP_PORT)
    }

    pub fn tcp(&self) -> SocketAddr {
        SocketAddr::new(self.node_ip.into(), TCP_PORT)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
