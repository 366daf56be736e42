//! A test CA and a [`MeshTls`] built on it (rcgen certificates, rustls with the ring
//! provider, TLS 1.3 only, client certificates required): what the agent's certificate
//! store provides in production, small enough for tests.

use std::collections::HashMap;
use std::sync::Arc;

use ambit_proxy_core::identity::{SpiffeId, TrustDomain};
use ambit_proxy_core::tls::{self, MeshTls, NoCertificate};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate authority of one trust domain.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub trust_domain: TrustDomain,
}

/// A leaf certificate and its key.
#[derive(Debug)]
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    pub fn new(trust_domain: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer, trust_domain: TrustDomain::new(trust_domain).unwrap() }
    }

    pub fn id(&self, namespace: &str, service_account: &str) -> SpiffeId {
        SpiffeId::new(self.trust_domain.clone(), namespace, service_account).unwrap()
    }

    pub fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        Arc::new(roots)
    }

    /// A leaf whose only URI SAN is `id`, for client and server authentication.
    pub fn issue(&self, id: &SpiffeId) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(id.uri().try_into().unwrap())];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

/// The certificates one node holds, and the trust bundle it verifies peers with.
#[derive(Debug)]
pub struct TestMeshTls {
    roots: Arc<RootCertStore>,
    trust_domain: TrustDomain,
    held: HashMap<SpiffeId, Arc<Leaf>>,
    /// When set, the server presents this identity whatever the SNI asks (an impostor).
    presents_instead: Option<SpiffeId>,
}

impl TestMeshTls {
    /// A node holding certificates for `ids`, issued by `ca`.
    pub fn new(ca: &TestCa, ids: &[&SpiffeId]) -> Arc<Self> {
        Arc::new(Self::holding(ca, ids))
    }

    /// A node that holds `ids` but always presents `presents` as a server.
    pub fn impostor(ca: &TestCa, ids: &[&SpiffeId], presents: &SpiffeId) -> Arc<Self> {
        let mut ids = ids.to_vec();
        ids.push(presents);
        Arc::new(Self { presents_instead: Some(presents.clone()), ..Self::holding(ca, &ids) })
    }

    /// A node holding certificates for `ids` issued by `issuer`, trusting only `trusted`
    /// (a node whose certificates come from a foreign CA).
    pub fn issued_by(issuer: &TestCa, trusted: &TestCa, ids: &[&SpiffeId]) -> Arc<Self> {
        Arc::new(Self { roots: trusted.roots(), ..Self::holding(issuer, ids) })
    }

    fn holding(ca: &TestCa, ids: &[&SpiffeId]) -> Self {
        let held = ids.iter().map(|id| ((*id).clone(), Arc::new(ca.issue(id)))).collect();
        Self { roots: ca.roots(), trust_domain: ca.trust_domain.clone(), held, presents_instead: None }
    }

    fn certified(&self, id: &SpiffeId) -> Option<Arc<CertifiedKey>> {
        let leaf = self.held.get(id)?;
        let key = rustls::crypto::ring::sign::any_supported_type(&leaf.key).ok()?;
        Some(Arc::new(CertifiedKey::new(leaf.chain.clone(), key)))
    }
}

impl MeshTls for TestMeshTls {
    fn client_config(&self, source: &SpiffeId) -> Result<Arc<ClientConfig>, NoCertificate> {
        let leaf = self.held.get(source).ok_or_else(|| NoCertificate(source.clone()))?;
        let verifier = Arc::new(SpiffeServerVerifier { roots: self.roots.clone(), provider: provider() });
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(leaf.chain.clone(), leaf.key.clone_key())
            .unwrap();
        Ok(Arc::new(config))
    }

    fn server_config(&self) -> Arc<ServerConfig> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider()).build().unwrap();
        let by_name: HashMap<SpiffeId, Arc<CertifiedKey>> =
            self.held.keys().filter_map(|id| Some((id.clone(), self.certified(id)?))).collect();
        let forced = self.presents_instead.as_ref().and_then(|id| by_name.get(id).cloned());
        let resolver = BySni { trust_domain: self.trust_domain.clone(), by_name, forced };
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(resolver));
        Arc::new(config)
    }
}

/// Verifies the server's chain against the roots; its name is checked after the
/// handshake by SPIFFE ID (secure naming), not by DNS SAN.
#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Picks the server certificate by the identity the SNI names.
#[derive(Debug)]
struct BySni {
    trust_domain: TrustDomain,
    by_name: HashMap<SpiffeId, Arc<CertifiedKey>>,
    forced: Option<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(forced) = &self.forced {
            return Some(forced.clone());
        }
        let id = tls::identity_from_server_name(hello.server_name()?, &self.trust_domain)?;
        self.by_name.get(&id).cloned()
    }
}
