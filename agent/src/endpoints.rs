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
        Ok(Self { admin, health, metrics })
    }

    /// Serves each listener on the runtime it was bound on.
    pub fn serve(self, state: Arc<Admin>, data_path: &Handle, shutdown: &CancellationToken) {
        tokio::spawn(admin::serve(state.clone(), Surface::Admin, self.admin, shutdown.clone()));
        if let Some(health) = self.health {
            data_path.spawn(admin::serve(state.clone(), Surface::Health, health, shutdown.clone()));
        }
        if let Some(metrics) = self.metrics {
            tokio::spawn(admin::serve(state, Surface::Metrics, metrics, shutdown.clone()));
        }
    }
}

/// Binds a listener registered with `runtime`'s reactor.
fn bind_on(runtime: &Handle, addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let bind = || -> std::io::Result<TcpListener> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let _entered = runtime.enter();
        TcpListener::from_std(listener)
    };
    bind().map_err(|e| anyhow::anyhow!("binding {what} to {addr}: {e}"))
}
