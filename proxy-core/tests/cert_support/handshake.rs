//! TLS handshakes over in-memory pipes, and hand-built peers for refusal tests.

use std::io;
use std::sync::Arc;

use ambit_proxy_core::tls::Refusal;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

pub type ClientStream = client::TlsStream<DuplexStream>;
pub type ServerStream = server::TlsStream<DuplexStream>;

/// Runs one handshake; both sides' results. In TLS 1.3 a client learns that its own
/// certificate was refused only when it next reads, so [`exchange`] after this.
pub async fn handshake(
    client: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    server: Arc<ServerConfig>,
) -> (io::Result<ClientStream>, io::Result<ServerStream>) {
    let (near, far) = duplex(64 * 1024);
    tokio::join!(TlsConnector::from(client).connect(server_name, near), TlsAcceptor::from(server).accept(far))
}

/// Sends `message` both ways; fails on the first error.
pub async fn exchange(client: &mut ClientStream, server: &mut ServerStream, message: &[u8]) -> io::Result<()> {
    client.write_all(message).await?;
    client.flush().await?;
    let mut buffer = vec![0; message.len()];
    server.read_exact(&mut buffer).await?;
    assert_eq!(buffer, message);
    server.write_all(message).await?;
    server.flush().await?;
    client.read_exact(&mut buffer).await?;
    assert_eq!(buffer, message);
    Ok(())
}

/// The refusal an I/O error from tokio-rustls carries.
pub fn refusal(error: &io::Error) -> Refusal {
    let tls = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(tls) => Refusal::classify(tls),
        None => panic!("not a TLS error: {error}"),
    }
}

/// The serial (lower-case hex) of the peer's leaf.
pub fn peer_serial(state: &rustls::CommonState) -> String {
    let leaf = &state.peer_certificates().expect("peer certificates")[0];
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    parsed.raw_serial().iter().map(|b| format!("{b:02x}")).collect()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client presenting `identity` (or none) that accepts any server certificate.
pub fn raw_client(identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer));
    Arc::new(match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// A server presenting `chain` whatever the SNI, asking for no client certificate.
pub fn raw_server(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Arc<ServerConfig> {
    let certified = Arc::new(CertifiedKey::from_der(chain, key, &provider()).unwrap());
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Always(certified)));
    Arc::new(config)
}

#[derive(Debug)]
struct Always(Arc<CertifiedKey>);

impl ResolvesServerCert for Always {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}
