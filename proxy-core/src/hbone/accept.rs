//! The TLS side of accepting an inbound HBONE connection. The ClientHello is read
//! first: when its SNI names an identity whose certificate this node is still
//! obtaining (a pod that has just started, or any pod in an agent's first seconds),
//! the answer waits until that certificate is held or the attempt to obtain it has
//! failed, instead of failing the handshake at once. The caller bounds the whole
//! accept with its handshake timeout.

use std::io;

use rustls::server::Acceptor;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use super::transport::{self, Transport};
use crate::tls::MeshTls;

/// An accepted inbound TLS connection.
pub(crate) type Accepted = TlsStream<Transport>;

/// Reads the ClientHello, waits for the certificate it names if it is on its way,
/// then finishes the handshake with the node's server configuration.
pub(crate) async fn accept(tls: &dyn MeshTls, tcp: TcpStream) -> io::Result<Accepted> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), transport::buffered(tcp)).await?;
    if let Some(name) = start.client_hello().server_name().map(str::to_owned) {
        tls.server_certificate_obtained(&name).await;
    }
    start.into_stream(tls.server_config()).await
}
