//! Why a TLS peer was refused: a bounded set of reasons, used as a metrics label and
//! in logs.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The peer's certificate (or one in its chain) has expired or is not yet valid.
    Expired,
    /// The chain does not lead to a root of the trust bundle.
    UnknownCa,
    /// A SPIFFE ID of another trust domain.
    ForeignTrustDomain,
    /// A valid identity, but not the one expected (secure naming), or SNI naming an
    /// identity this node holds no certificate for.
    WrongIdentity,
    /// No (or more than one, or a malformed) SPIFFE URI SAN.
    NoIdentity,
    /// No client certificate was presented.
    NoClientCertificate,
    /// Bytes that are not a TLS handshake (e.g. plaintext HTTP on the HBONE port).
    Plaintext,
    /// Any other handshake failure (protocol version, malformed messages, ...).
    Handshake,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Expired => "expired",
            Refusal::UnknownCa => "unknown_ca",
            Refusal::ForeignTrustDomain => "foreign_trust_domain",
            Refusal::WrongIdentity => "wrong_identity",
            Refusal::NoIdentity => "no_identity",
            Refusal::NoClientCertificate => "no_client_certificate",
            Refusal::Plaintext => "plaintext",
            Refusal::Handshake => "handshake",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}
