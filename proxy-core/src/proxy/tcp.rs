//! Opaque TCP passthrough to one endpoint of the dialled Service.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::TcpStream;

use super::connection::ConnContext;
use super::idle::{self, Ended};
use super::Proxy;

/// Connects to a ready endpoint of the Service and copies bytes both ways. Half-close is
/// propagated (a FIN from one side is forwarded as a shutdown to the other); an
/// unreachable backend resets the client connection at once; no byte either way for
/// the stream idle timeout closes both sides.
pub async fn passthrough(proxy: &Proxy, ctx: &ConnContext, mut client: TcpStream, endpoint: Option<SocketAddr>) {
    let started = Instant::now();
    let Some(endpoint) = endpoint else {
        tracing::info!(service = %ctx.service_label(), "no ready endpoint for TCP connection; resetting");
        reset(client);
        return;
    };
    let mut upstream = match proxy.upstream.connect(&ctx.source, endpoint).await {
        Ok(s) => s,
        Err(error) => {
            tracing::info!(%error, "backend unreachable; resetting client connection");
            reset(client);
            return;
        }
    };
    let tunnel = upstream.tunnel();
    let destination_identity = match tunnel {
        "none" => String::new(),
        _ => proxy.upstream.path(endpoint).destination_identity().map(|id| id.to_string()).unwrap_or_default(),
    };
    let labels = proxy.metrics.as_ref().map(|metrics| {
        let labels = ctx.tcp_labels();
        metrics.tcp_opened(&labels);
        labels
    });
    let buffer = upstream.copy_buffer();
    let copied = idle::copy_until_idle_with(&mut client, &mut upstream, proxy.options.timeouts.stream_idle, buffer).await;
    // Bytes from the client (sent on to the backend) and to the client.
    let (sent, received) = (copied.from_a, copied.from_b);
    let error = match &copied.ended {
        Ended::Closed => String::new(),
        Ended::Idle => "idle timeout".to_owned(),
        Ended::Failed(error) => error.to_string(),
    };
    if let (Some(metrics), Some(labels)) = (&proxy.metrics, &labels) {
        metrics.tcp_closed(labels, sent, received);
    }
    if proxy.access_log.should_log() {
        tracing::info!(
            target: "ambit::access",
            kind = "tcp",
            request_id = %format!("{:032x}", rand::random::<u128>()),
            caller_namespace = ctx.caller_namespace().as_deref().unwrap_or(""),
            caller_pod = ctx.caller_name().as_deref().unwrap_or(""),
            caller_workload = ctx.caller.as_ref().map(|w| &*w.workload).unwrap_or(""),
            client = %ctx.peer,
            service = %ctx.service_label(),
            dialled = %ctx.origin.destination,
            backend = %endpoint,
            source_identity = %ctx.source.identity().map(|id| id.to_string()).unwrap_or_default(),
            destination_identity = %destination_identity,
            tunnel,
            bytes_sent = sent,
            bytes_received = received,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            error = %error,
        );
    }
    if !error.is_empty() {
        tracing::debug!(%error, "TCP passthrough ended");
    }
}

/// Closes a connection with RST instead of FIN, so the client fails at once.
pub fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
    drop(stream);
}
