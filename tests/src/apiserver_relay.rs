//! The bed's API server for every node of a multi-node bed. The server listens on
//! 127.0.0.1 inside node 1's network namespace; a relay per other node listens on
//! the same address and port inside that node's namespace and forwards each
//! connection to the server, so [`BedApiServer::url`](crate::BedApiServer::url)
//! is the same on every node and nothing listens outside the bed.
//!
//! The relay runs on the API server's runtime, whose threads live in node 1's
//! namespace: its outgoing connections are made there, while its listening
//! socket was created (on a thread that entered the node's namespace) in the
//! node's namespace.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::netns;

/// Listens on 127.0.0.1:`port` in `node_netns` and forwards each connection to
/// 127.0.0.1:`port` of the runtime's namespace. Stops with the runtime.
pub(crate) fn start(runtime: &tokio::runtime::Runtime, node_netns: &str, port: u16) -> Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = netns::in_netns(node_netns, move || {
        let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    })
    .with_context(|| format!("relaying the API server into {node_netns}"))?;
    let _entered = runtime.enter();
    let listener = tokio::net::TcpListener::from_std(listener)?;
    runtime.spawn(async move {
        loop {
            let mut inbound = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of descriptors or a connection reset before accept: try again shortly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(addr).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Ok(())
}
