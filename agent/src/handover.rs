//! Handing the listening sockets over from one agent to its successor on the same node
//! (a DaemonSet surge rollout runs both for a while), so that an upgrade refuses or
//! resets no connection.
//!
//! Both agents bind the proxy and admin addresses with SO_REUSEPORT
//! ([`ambit_proxy_core::proxy::bind`], [`bind_shared`]). While both listen, the kernel
//! spreads new connections over the two. A successor only starts accepting once it
//! serves a configuration (connections it receives before that wait in its accept
//! queue). When the old agent gets SIGTERM it closes its listeners; with
//! `net.ipv4.tcp_migrate_req=1` ([`enable_request_migration`], kernel ≥ 5.14) the kernel
//! moves the connections still queued on the closed listener, established or in their
//! handshake, to the successor's listener instead of resetting them. The old agent then
//! drains: in-flight requests finish, idle HTTP/1 keep-alive connections are closed and
//! busy ones get `Connection: close` on their next response (HTTP/2: GOAWAY).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

/// The per-network-namespace switch that migrates a closed reuseport listener's queue.
const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// Sets `net.ipv4.tcp_migrate_req=1` in the agent's network namespace (the node's, as
/// the agent runs with hostNetwork). Returns whether it had to change it.
pub fn enable_request_migration() -> anyhow::Result<bool> {
    set_sysctl_one(Path::new(MIGRATE_REQ))
}

fn set_sysctl_one(path: &Path) -> anyhow::Result<bool> {
    let current = std::fs::read_to_string(path)
        .with_context(|| format!("reading {} (kernel older than 5.14?)", path.display()))?;
    if current.trim() == "1" {
        return Ok(false);
    }
    std::fs::write(path, "1").with_context(|| format!("writing 1 to {}", path.display()))?;
    Ok(true)
}

/// [`enable_request_migration`], logging the outcome: without it a restart still works,
/// but connections queued on the old agent's listener when it closes are reset.
pub fn enable_request_migration_logged() {
    match enable_request_migration() {
        Ok(true) => tracing::info!("set net.ipv4.tcp_migrate_req=1: a closing listener's queue moves to its successor"),
        Ok(false) => tracing::debug!("net.ipv4.tcp_migrate_req already 1"),
        Err(error) => tracing::warn!(
            error = %format!("{error:#}"),
            "cannot enable net.ipv4.tcp_migrate_req; connections queued when an agent stops during an upgrade may be reset"
        ),
    }
}

/// Backlog of the agent's own listeners (admin, health, metrics).
const BACKLOG: i32 = 128;

/// Binds one of the agent's own listeners (admin, health, metrics) with SO_REUSEPORT,
/// as the proxy's are, so that a successor agent binds the same address while the old
/// one still holds it.
pub fn bind_shared(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    ambit_proxy_core::proxy::bind_shared(addr, BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_shared_listeners_share_an_address() {
        let first = bind_shared("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let second = bind_shared(addr);
        assert!(second.is_ok(), "{second:?}");
    }

    #[test]
    fn a_missing_sysctl_is_a_clear_error() {
        let error = set_sysctl_one(Path::new("/nonexistent/tcp_migrate_req")).unwrap_err();
        assert!(format!("{error:#}").contains("5.14"), "{error:#}");
    }
}
