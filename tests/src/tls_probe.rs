//! `ambit-tls-probe`: a TLS 1.3 peer for a node's HBONE port, run inside a node's
//! network namespace (`TestBed::node_command_on`) to test what an agent refuses.
//!
//! * **client**: connects to `addr` presenting a chain and key (PEM files) with a
//!   given SNI, completes (or fails) the handshake, sends one HTTP/2 CONNECT and
//!   prints a [`ClientReport`] (JSON). It does not verify the server's chain: it
//!   reports the server certificate's SPIFFE ID and serial instead. With
//!   `--plaintext` it sends those bytes without TLS and reports how the server
//!   answered.
//! * **server**: listens on `addr` presenting a chain and key, requires a client
//!   certificate (any: it plays an impostor node), answers every CONNECT with 503,
//!   and prints one [`ServerEvent`] (JSON line) when listening and per connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long each step (connect, handshake, answer) may take.
const STEP: Duration = Duration::from_secs(5);

/// What the client saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientReport {
    /// The TLS handshake completed on the client's side (in TLS 1.3 the server may
    /// still refuse the client's certificate afterwards, with an alert).
    pub handshake: bool,
    /// The first failure (connect, handshake, alert, HTTP/2), if any.
    pub error: Option<String>,
    /// The alert the server sent, e.g. `UnknownCA`, `CertificateExpired`.
    pub alert: Option<String>,
    pub server_identity: Option<String>,
    /// The server certificate's serial, lower-case hex.
    pub server_serial: Option<String>,
    /// The status of the CONNECT answer.
    pub connect_status: Option<u16>,
    /// With `--plaintext`: the bytes the server answered before closing.
    pub plaintext_answer_bytes: Option<usize>,
}

/// One line of the server's output.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerEvent {
    /// `listening` or `connection`.
    pub event: String,
    pub peer: Option<String>,
    pub handshake: bool,
    pub error: Option<String>,
    pub sni: Option<String>,
    pub client_identity: Option<String>,
    pub client_serial: Option<String>,
    /// The authorities of the CONNECT requests received on the connection.
    pub connects: Vec<String>,
    /// Bytes of request bodies received on the connection.
    pub body_bytes: usize,
}

/// The certificate chain and key in two PEM files.
pub fn load_identity(chain: &Path, key: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs = CertificateDer::pem_file_iter(chain)
        .with_context(|| format!("reading {}", chain.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", chain.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    Ok((certs, key))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The SPIFFE URI (the one URI SAN) and serial of a certificate.
pub fn identity_and_serial(certificate: &CertificateDer<'_>) -> (Option<String>, Option<String>) {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate.as_ref()) else { return (None, None) };
    let serial = parsed.raw_serial().iter().map(|b| format!("{b:02x}")).collect();
    let uri = parsed.subject_alternative_name().ok().flatten().and_then(|san| {
        san.value.general_names.iter().find_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
    });
    (uri, Some(serial))
}

/// The rustls alert inside an I/O error, if that is what ended the connection.
fn alert_of(error: &std::io::Error) -> Option<String> {
    match error.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(format!("{alert:?}")),
        _ => None,
    }
}

fn h2_alert(error: &h2::Error) -> Option<String> {
    error.get_io().and_then(alert_of)
}

async fn within<T, E: std::fmt::Display>(what: &str, f: impl std::future::Future<Output = Result<T, E>>) -> Result<T, String> {
    match tokio::time::timeout(STEP, f).await {
        Err(_) => Err(format!("{what}: timed out")),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Ok(Ok(v)) => Ok(v),
    }
}

/// The client: see the module documentation.
pub async fn client(
    addr: SocketAddr,
    sni: &str,
    identity: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    connect: &str,
) -> Result<ClientReport> {
    let mut report = ClientReport::default();
    let tcp = match within("connect", TcpStream::connect(addr)).await {
        Ok(tcp) => tcp,
        Err(e) => return Ok(ClientReport { error: Some(e), ..report }),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider())))
        .with_client_auth_cert(identity.0, identity.1)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(sni.to_string()).context("the SNI is not a DNS name")?;
    let tls = match tokio::time::timeout(STEP, tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp)).await {
        Err(_) => return Ok(ClientReport { error: Some("TLS handshake timed out".into()), ..report }),
        Ok(Err(e)) => return Ok(ClientReport { alert: alert_of(&e), error: Some(format!("TLS handshake: {e}")), ..report }),
        Ok(Ok(tls)) => tls,
    };
    report.handshake = true;
    if let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        (report.server_identity, report.server_serial) = identity_and_serial(leaf);
    }
    if let Err((error, alert)) = send_connect(tls, connect, &mut report).await {
        report.error = Some(error);
        report.alert = alert;
    }
    Ok(report)
}

/// One CONNECT to `authority`; records the answer's status.
async fn send_connect(
    tls: tokio_rustls::client::TlsStream<TcpStream>,
    authority: &str,
    report: &mut ClientReport,
) -> Result<(), (String, Option<String>)> {
    let h2_failure = |what: &str, e: h2::Error| (format!("{what}: {e}"), h2_alert(&e));
    let (send, connection) = match tokio::time::timeout(STEP, h2::client::handshake(tls)).await {
        Err(_) => return Err(("HTTP/2 handshake timed out".into(), None)),
        Ok(Err(e)) => return Err(h2_failure("HTTP/2 handshake", e)),
        Ok(Ok(pair)) => pair,
    };
    let driver = tokio::spawn(connection);
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(authority)
        .body(())
        .map_err(|e| (format!("CONNECT request: {e}"), None))?;
    let answer = async move {
        let mut send = send.ready().await?;
        let (response, _body) = send.send_request(request, false)?;
        response.await
    };
    let outcome = match tokio::time::timeout(STEP, answer).await {
        Err(_) => Err(("no answer to CONNECT".into(), None)),
        Ok(Err(e)) => {
            // The connection's own error (e.g. the server's alert) explains a reset.
            let cause = match tokio::time::timeout(Duration::from_secs(1), driver).await {
                Ok(Ok(Err(conn))) => Some(h2_failure("HTTP/2 connection", conn)),
                _ => None,
            };
            Err(cause.unwrap_or_else(|| h2_failure("CONNECT", e)))
        }
        Ok(Ok(response)) => {
            report.connect_status = Some(response.status().as_u16());
            Ok(())
        }
    };
    outcome
}

/// Sends `bytes` in plaintext and reads what comes back until the server closes.
pub async fn plaintext(addr: SocketAddr, bytes: &[u8]) -> ClientReport {
    let mut report = ClientReport::default();
    let mut tcp = match within("connect", TcpStream::connect(addr)).await {
        Ok(tcp) => tcp,
        Err(e) => return ClientReport { error: Some(e), ..report },
    };
    if let Err(e) = within("write", tcp.write_all(bytes)).await {
        report.error = Some(e);
        return report;
    }
    let mut answer = Vec::new();
    match within("read", tcp.read_to_end(&mut answer)).await {
        Ok(_) => report.plaintext_answer_bytes = Some(answer.len()),
        Err(e) => report.error = Some(e),
    }
    report
}

/// The server: prints a `listening` event, then one event per connection, until
/// `duration` has passed.
pub async fn server(addr: SocketAddr, identity: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), duration: Duration) -> Result<()> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AnyClient(provider())))
        .with_single_cert(identity.0, identity.1)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
    print_event(&ServerEvent { event: "listening".into(), ..Default::default() });
    let serve = async {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move { print_event(&serve_connection(acceptor, tcp, peer).await) });
        }
    };
    let _ = tokio::time::timeout(duration, serve).await;
    Ok(())
}

fn print_event(event: &ServerEvent) {
    if let Ok(line) = serde_json::to_string(event) {
        println!("{line}");
    }
}

async fn serve_connection(acceptor: tokio_rustls::TlsAcceptor, tcp: TcpStream, peer: SocketAddr) -> ServerEvent {
    let mut event = ServerEvent { event: "connection".into(), peer: Some(peer.to_string()), ..Default::default() };
    let tls = match within("TLS handshake", acceptor.accept(tcp)).await {
        Ok(tls) => tls,
        Err(e) => return ServerEvent { error: Some(e), ..event },
    };
    event.handshake = true;
    let state = tls.get_ref().1;
    event.sni = state.server_name().map(str::to_string);
    if let Some(leaf) = state.peer_certificates().and_then(|c| c.first()) {
        (event.client_identity, event.client_serial) = identity_and_serial(leaf);
    }
    let mut connection = match within("HTTP/2 handshake", h2::server::handshake(tls)).await {
        Ok(connection) => connection,
        Err(e) => return ServerEvent { error: Some(e), ..event },
    };
    // The connection is watched for a few seconds: long enough for a caller to send
    // its request, short enough to report.
    let watch = async {
        while let Some(Ok((request, mut respond))) = connection.accept().await {
            event.connects.push(request.uri().to_string());
            let mut body = request.into_body();
            let mut answer = http::Response::new(());
            *answer.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            let _ = respond.send_response(answer, true);
            while let Some(Ok(chunk)) = body.data().await {
                event.body_bytes += chunk.len();
            }
        }
    };
    let _ = tokio::time::timeout(STEP, watch).await;
    event
}

/// The client does not verify the server's chain (it reports what it got), but
/// handshake signatures are checked.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The impostor server requires a client certificate but accepts any.
#[derive(Debug)]
struct AnyClient(Arc<CryptoProvider>);

impl ClientCertVerifier for AnyClient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn verify_client_cert(&self, _end_entity: &CertificateDer<'_>, _intermediates: &[CertificateDer<'_>], _now: UnixTime) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
