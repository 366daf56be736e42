//! The rustls side of one node's mesh TLS: the crypto provider (ring), TLS 1.3 only, the
//! trust bundle's verifiers, the store's clock as the handshakes' time, and ALPN `h2`
//! (HBONE is HTTP/2 CONNECT, as in Istio ambient). No session resumption: every
//! handshake verifies the peer's current certificate (HBONE pools its connections, so
//! handshakes are rare anyway).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ResolvesServerCert;
use rustls::version::TLS13;
use rustls::{ClientConfig, Error, ServerConfig};

use super::clock::{unix_time, Clock, ClockTime};
use super::verifier::{MeshClientVerifier, MeshServerVerifier};
use super::TrustBundle;

/// The ALPN protocol of HBONE.
pub const HBONE_ALPN: &[u8] = b"h2";

#[derive(Debug, Clone)]
pub(crate) struct TlsContext {
    pub bundle: TrustBundle,
    pub provider: Arc<CryptoProvider>,
    pub clock: Arc<dyn Clock>,
}

impl TlsContext {
    pub fn new(bundle: TrustBundle, clock: Arc<dyn Clock>) -> Self {
        Self { bundle, provider: Arc::new(rustls::crypto::ring::default_provider()), clock }
    }

    fn time(&self) -> Arc<ClockTime> {
        Arc::new(ClockTime(self.clock.clone()))
    }

    pub fn now(&self) -> rustls::pki_types::UnixTime {
        unix_time(self.clock.now())
    }

    /// A client configuration presenting `chain` with `key`.
    pub fn client_config(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<ClientConfig, Error> {
        let verifier = Arc::new(MeshServerVerifier { bundle: self.bundle.clone(), provider: self.provider.clone() });
        let mut config = ClientConfig::builder_with_details(self.provider.clone(), self.time())
            .with_protocol_versions(&[&TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain, key)?;
        config.alpn_protocols = vec![HBONE_ALPN.to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }

    /// The server configuration: certificates from `resolver`, client certificates
    /// required and verified.
    pub fn server_config(&self, resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, Error> {
        let verifier = Arc::new(MeshClientVerifier::new(self.bundle.clone(), self.provider.clone())?);
        let mut config = ServerConfig::builder_with_details(self.provider.clone(), self.time())
            .with_protocol_versions(&[&TLS13])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![HBONE_ALPN.to_vec()];
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(config)
    }
}
