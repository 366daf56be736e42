//! The inbound HBONE server (port 15008): mutual TLS with the node's server
//! configuration, then HTTP/2 CONNECT streams, each admitted by the [`InboundGate`] and
//! piped to its pod, dialled from the node's network namespace.
//!
//! Wire answers: a method other than CONNECT gets 405, an authority that is not
//! `ip:port` 400, a pod not on this node 404, a wrong identity or a policy refusal 403,
//! an unreachable pod 503. A stream whose pod's policies have HTTP rules is served as
//! HTTP (each request decided, see [`crate::authz`]); others are copied byte for byte. Non-TLS bytes on the port close the connection (counted as
//! `plaintext`), as do failed handshakes (counted by reason).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use http::{Method, Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::accept;
use super::classify::refusal_of;
use super::coalesce::Coalesce;
use super::dial::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use super::gate::{InboundGate, StreamClaim};
use super::keepalive::Keepalive;
use super::policy::Tunnel;
use super::request::{destination_of, service_of};
use super::stream::TunnelStream;
use crate::authz::{describe, serve_filtered, Closer};
use crate::identity::SpiffeId;
use crate::proxy::{idle, node_socket, AccessLog};
use crate::rate_limited_log::KeyedRateLimitedLog;
use crate::tls::{self, MeshTls, Refusal};

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Inbound tunables.
#[derive(Debug, Clone, Copy)]
pub struct InboundOptions {
    /// From accept to a finished TLS and HTTP/2 handshake.
    pub handshake_timeout: Duration,
    /// Connecting to the local pod.
    pub connect_timeout: Duration,
    /// Streams at once per connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_streams_per_connection: u32,
    /// A stream with no byte either way for this long is closed.
    pub stream_idle: Duration,
    /// A PING after this long; no answer within the timeout closes the connection.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for InboundOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_streams_per_connection: 100,
            stream_idle: Duration::from_secs(3600),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// The verified facts about one inbound connection.
#[derive(Debug)]
struct Peer {
    address: SocketAddr,
    identity: SpiffeId,
    /// The serial of the certificate the peer presented (hex), for the access log.
    serial: String,
    /// The identity this node presented (named by the client's SNI).
    presented: Option<SpiffeId>,
}

/// The inbound HBONE server of one node.
pub struct Inbound {
    tls: Arc<dyn MeshTls>,
    gate: Arc<InboundGate>,
    options: InboundOptions,
    refusal_log: KeyedRateLimitedLog<Refusal>,
    /// The access log switch (shared with the proxy's data path).
    access_log: Arc<AccessLog>,
}

impl Inbound {
    /// An inbound server whose access log is off.
    pub fn new(tls: Arc<dyn MeshTls>, gate: Arc<InboundGate>, options: InboundOptions) -> Arc<Self> {
        Self::with_access_log(tls, gate, options, Arc::default())
    }

    /// An inbound server logging each stream when `access_log` says so.
    pub fn with_access_log(
        tls: Arc<dyn MeshTls>,
        gate: Arc<InboundGate>,
        options: InboundOptions,
        access_log: Arc<AccessLog>,
    ) -> Arc<Self> {
        let refusal_log = KeyedRateLimitedLog::new(Duration::from_secs(10));
        Arc::new(Self { tls, gate, options, refusal_log, access_log })
    }

    /// Serves `listener` until `shutdown` fires (open streams are then cut).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        tracing::info!(listen = ?listener.local_addr().ok(), "HBONE inbound listening");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let this = self.clone();
                        let token = shutdown.child_token();
                        tasks.spawn(async move {
                            tokio::select! {
                                _ = this.connection(stream, peer) => {}
                                _ = token.cancelled() => {}
                            }
                        });
                    }
                    Err(error) => {
                        tracing::warn!(%error, "HBONE accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        tasks.close();
    }

    /// Counts a refused connection and logs it at a bounded rate.
    fn refused(&self, reason: Refusal, peer: SocketAddr, detail: &dyn std::fmt::Display) {
        self.gate.metrics().refused(reason);
        if let Some(suppressed) = self.refusal_log.check(&reason) {
            tracing::warn!(%reason, %peer, %detail, suppressed, "HBONE connection refused (at most one line per reason every 10 s)");
        }
    }

    async fn connection(self: Arc<Self>, tcp: TcpStream, address: SocketAddr) {
        let _ = tcp.set_nodelay(true);
        let deadline = tokio::time::Instant::now() + self.options.handshake_timeout;
        let mut first = [0u8; 1];
        match tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await {
            Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {}
            Ok(Ok(1)) => return self.refused(Refusal::Plaintext, address, &"not a TLS handshake"),
            Err(_) => return self.refused(Refusal::Handshake, address, &"no handshake within the timeout"),
            Ok(_) => return,
        }
        let accepted = tokio::time::timeout_at(deadline, accept::accept(&*self.tls, tcp)).await;
        let tls_stream = match accepted {
            Err(_) => return self.refused(Refusal::Handshake, address, &"handshake timed out"),
            Ok(Err(error)) => return self.refused(refusal_of(&error), address, &error),
            Ok(Ok(stream)) => stream,
        };
        let state = tls_stream.get_ref().1;
        let identity = match tls::peer_identity(state) {
            Ok(identity) => identity,
            Err(reason) => return self.refused(reason, address, &"peer certificate without a usable SPIFFE ID"),
        };
        let presented = state.server_name().and_then(|name| tls::identity_from_server_name(name, identity.trust_domain()));
        let serial = tls::peer_serial(state).unwrap_or_default();
        let peer = Arc::new(Peer { address, identity, serial, presented });
        let handshake = h2::server::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .max_concurrent_streams(self.options.max_streams_per_connection)
            .max_send_buffer_size(STREAM_WINDOW as usize)
            .handshake::<_, Bytes>(Coalesce::new(tls_stream));
        let mut connection = match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return tracing::debug!(%address, %error, "HBONE HTTP/2 handshake failed"),
            Err(_) => return self.refused(Refusal::Handshake, address, &"HTTP/2 handshake timed out"),
        };
        let keepalive = Keepalive { interval: self.options.keepalive_interval, timeout: self.options.keepalive_timeout };
        let dead = keepalive.failed(connection.ping_pong());
        tokio::pin!(dead);
        loop {
            let accepted = tokio::select! {
                accepted = connection.accept() => accepted,
                _ = &mut dead => {
                    tracing::debug!(%address, "HBONE client did not answer a PING; closing the connection");
                    break;
                }
            };
            match accepted {
                None => break,
                Some(Ok((request, respond))) => {
                    let this = self.clone();
                    let peer = peer.clone();
                    tokio::spawn(async move { this.stream(&peer, request, respond).await });
                }
                Some(Err(error)) => {
                    tracing::debug!(%address, %error, "HBONE connection ended");
                    break;
                }
            }
        }
    }

    async fn stream(&self, peer: &Peer, request: Request<h2::RecvStream>, mut respond: SendResponse<Bytes>) {
        if request.method() != Method::CONNECT {
            return answer(&mut respond, StatusCode::METHOD_NOT_ALLOWED);
        }
        // The SNI named the identity this node presented; without one, nothing matches.
        let Some(presented) = peer.presented.clone() else {
            self.gate.metrics().refused(Refusal::WrongIdentity);
            return answer(&mut respond, StatusCode::FORBIDDEN);
        };
        let claim = StreamClaim {
            peer: peer.identity.clone(),
            destination: destination_of(&request),
            presented: Some(presented),
            service: service_of(&request),
            tunnel: Tunnel::Hbone,
        };
        let admitted = match self.gate.admit(&claim) {
            Ok(admitted) => admitted,
            Err(denial) => {
                tracing::debug!(peer = %peer.identity, %denial, "HBONE stream refused");
                return answer(&mut respond, denial.status());
            }
        };
        let started = Instant::now();
        let pod = match self.connect_pod(admitted.destination).await {
            Ok(pod) => pod,
            Err(error) => {
                tracing::info!(destination = %admitted.destination, %error, "pod unreachable for an HBONE stream");
                return answer(&mut respond, StatusCode::SERVICE_UNAVAILABLE);
            }
        };
        let send = match respond.send_response(Response::new(()), false) {
            Ok(send) => send,
            Err(error) => return tracing::debug!(%error, "HBONE stream reset before its answer"),
        };
        let tunnel = TunnelStream::new(send, request.into_body(), None);
        let closing = CancellationToken::new();
        let _registration = self.gate.register(&admitted, Closer::Cancel(closing.clone()));
        if admitted.filtered {
            let target = self.gate.filter_target(&admitted, self.access_log.clone());
            tokio::select! {
                _ = serve_filtered(tunnel, pod, target) => {}
                _ = closing.cancelled() => tracing::debug!(peer = %peer.identity, "filtered HBONE stream closed: refused by a new policy"),
            }
            return;
        }
        let copied = tokio::select! {
            copied = copy(tunnel, pod, self.options.stream_idle) => copied,
            _ = closing.cancelled() => {
                tracing::debug!(peer = %peer.identity, destination = %admitted.destination, "HBONE stream closed: refused by a new policy");
                return;
            }
        };
        if !self.access_log.should_log() {
            return;
        }
        tracing::info!(
            target: "ambit::access",
            kind = "hbone_inbound",
            tunnel = "hbone",
            source_identity = %peer.identity,
            source_certificate_serial = %peer.serial,
            destination_identity = %admitted.destination_identity,
            client = %peer.address,
            service = admitted.service.as_deref().unwrap_or(""),
            backend = %admitted.destination,
            bytes_received = copied.from_a,
            bytes_sent = copied.from_b,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            ended = ?copied.ended,
            authz = %describe(&admitted.authz),
        );
    }

    async fn connect_pod(&self, destination: SocketAddr) -> std::io::Result<TcpStream> {
        let attempt = async {
            let stream = node_socket(destination)?.connect(destination).await?;
            let _ = stream.set_nodelay(true);
            Ok(stream)
        };
        tokio::time::timeout(self.options.connect_timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }
}

async fn copy(mut tunnel: TunnelStream, mut pod: TcpStream, stream_idle: Duration) -> idle::Copied {
    idle::copy_until_idle_with(&mut tunnel, &mut pod, stream_idle, idle::TUNNEL_BUFFER).await
}

fn answer(respond: &mut SendResponse<Bytes>, status: StatusCode) {
    let mut response = Response::new(());
    *response.status_mut() = status;
    let _ = respond.send_response(response, true);
}
