//! HTTP/2 PINGs that find dead peers: a node gone without closing its connections
//! (powered off, partitioned) would otherwise keep tunnels, and their streams, open.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Keepalive {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Keepalive {
    /// Resolves when a PING goes unanswered for the timeout (never without pings).
    pub(crate) async fn failed(self, ping_pong: Option<h2::PingPong>) {
        let Some(mut ping_pong) = ping_pong else { return std::future::pending().await };
        loop {
            tokio::time::sleep(self.interval).await;
            match tokio::time::timeout(self.timeout, ping_pong.ping(h2::Ping::opaque())).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
        }
    }
}
