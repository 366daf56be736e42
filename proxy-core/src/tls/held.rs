//! A certificate the store holds for one identity: checked on arrival (the CA's answer
//! is not trusted blindly), with the TLS material both sides of a handshake need.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::KeyPair;
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls::ClientConfig;

use super::context::TlsContext;
use super::{spiffe_id_of, IssuedChain, SourceError};
use crate::identity::SpiffeId;

#[derive(Debug)]
pub(crate) struct HeldCertificate {
    /// The leaf's serial number, lower-case hex.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Chain and key for the server side (picked by SNI).
    pub certified: Arc<CertifiedKey>,
    /// The client side's configuration presenting this certificate.
    pub client_config: Arc<ClientConfig>,
}

impl HeldCertificate {
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

fn invalid(what: impl Into<String>) -> SourceError {
    SourceError::Invalid(what.into())
}

/// Validates `issued` for `id` and `key` (leaf SAN, leaf key, chain to the bundle,
/// validity now) and builds the TLS material.
pub(crate) fn accept(
    context: &TlsContext,
    id: &SpiffeId,
    key: &KeyPair,
    issued: IssuedChain,
) -> Result<HeldCertificate, SourceError> {
    let leaf = issued.chain.first().ok_or_else(|| invalid("an empty chain"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| invalid(format!("the leaf is not an X.509 certificate: {e}")))?;
    match spiffe_id_of(leaf) {
        Ok(named) if &named == id => {}
        Ok(named) => return Err(invalid(format!("the leaf names {named}, not {id}"))),
        Err(_) => return Err(invalid("the leaf carries no single SPIFFE ID")),
    }
    if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(invalid("the leaf's public key is not the requested key"));
    }
    let end_entity = ParsedCertificate::try_from(leaf).map_err(|e| invalid(format!("leaf: {e}")))?;
    let algorithms = context.provider.signature_verification_algorithms.all;
    verify_server_cert_signed_by_trust_anchor(&end_entity, context.bundle.roots(), &issued.chain[1..], context.now(), algorithms)
        .map_err(|e| invalid(format!("the chain does not verify against the trust bundle: {e}")))?;
    let serial = parsed.raw_serial().iter().map(|b| format!("{b:02x}")).collect();
    let not_before = system_time(parsed.validity().not_before.timestamp());
    let not_after = system_time(parsed.validity().not_after.timestamp());
    let material = |what: &str, e: rustls::Error| invalid(format!("{what}: {e}"));
    let private_key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let certified = CertifiedKey::from_der(issued.chain.clone(), private_key(), &context.provider)
        .map_err(|e| material("key and chain", e))?;
    let client_config =
        context.client_config(issued.chain, private_key()).map_err(|e| material("client configuration", e))?;
    Ok(HeldCertificate {
        serial,
        not_before,
        not_after,
        certified: Arc::new(certified),
        client_config: Arc::new(client_config),
    })
}

fn system_time(unix_seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_seconds.max(0) as u64)
}
