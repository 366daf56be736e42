//! Binding and serving the agent's non-proxy listeners: the admin API (control-plane
//! runtime, loopback), the health listener (data-path runtime, so probes see the data
//! path's liveness even while a large translation runs) and the metrics listener
//! (control-plane runtime: a scrape reads the eBPF maps).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Admin, Surface};
use crate::node::NodeOptions;

/// The bound listeners, before the node exists (so a taken port fails before the eBPF
/// hooks are attached).
pub struct Endpoints {
    admin: TcpListener,
    /// `--admin-socket`: the whole admin API on a unix socket in the agent pod's own
    /// directory, for the kubelet's exec probes (see [`crate::probe`]).
    admin_socket: Option<std::path::PathBuf>,
    health: Option<TcpListener>,
    metrics: Option<TcpListener>,
}

impl Endpoints {
    /// Binds the admin listener on the current (control-plane) runtime, the health
    /// listener on `data_path`, and the metrics listener on the current runtime.
    pub async fn bind(options: &NodeOptions, data_path: &Handle) -> anyhow::Result<Self> {
        let admin = admin::bind(options.admin_addr, options.admin_allow_remote).await?;
        let health = match options.health_addr {
            Some(addr) => Some(bind_on(data_path, addr, "the health listener")?),
            None => None,
        };
        let metrics = match options.metrics_addr {
            Some(addr) => Some(admin::bind_any(addr, "the metrics listener").await?),
            None => None,
        };
        Ok(Self { admin, admin_socket: options.admin_socket.clone(), health, metrics })
    }

    /// Serves each listener on the runtime it was bound on.
    pub fn serve(self, state: Arc<Admin>, data_path: &Handle, shutdown: &CancellationToken) -> anyhow::Result<()> {
        if let Some(path) = &self.admin_socket {
            admin::spawn_unix(state.clone(), path, shutdown.clone())?;
        }
        tokio::spawn(admin::serve(state.clone(), Surface::Admin, self.admin, shutdown.clone()));
        if let Some(health) = self.health {
            data_path.spawn(admin::serve(state.clone(), Surface::Health, health, shutdown.clone()));
        }
        if let Some(metrics) = self.metrics {
            tokio::spawn(admin::serve(state, Surface::Metrics, metrics, shutdown.clone()));
        }
        Ok(())
    }
}

/// Binds a listener registered with `runtime`'s reactor.
fn bind_on(runtime: &Handle, addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let bind = || -> std::io::Result<TcpListener> {
        let listener = crate::handover::bind_shared(addr)?;
        let _entered = runtime.enter();
        TcpListener::from_std(listener)
    };
    bind().map_err(|e| anyhow::anyhow!("binding {what} to {addr}: {e}"))
}
