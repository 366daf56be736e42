//! From a rustls error to the [`Refusal`] reason counted and logged for it, on either
//! side of a handshake (the side that refused sees a certificate error; the refused
//! side sees the alert it was sent).

use rustls::{AlertDescription, CertificateError, Error, InvalidMessage};

use super::verifier::MeshCertificateError;
use super::Refusal;

impl Refusal {
    pub fn classify(error: &Error) -> Refusal {
        match error {
            Error::InvalidCertificate(certificate) => of_certificate(certificate),
            Error::NoCertificatesPresented => Refusal::NoClientCertificate,
            Error::InvalidMessage(InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion) => {
                Refusal::Plaintext
            }
            Error::General(message) if message == "no server certificate chain resolved" => Refusal::WrongIdentity,
            Error::AlertReceived(alert) => of_alert(*alert),
            _ => Refusal::Handshake,
        }
    }
}

fn of_certificate(error: &CertificateError) -> Refusal {
    match error {
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => Refusal::Expired,
        CertificateError::UnknownIssuer | CertificateError::BadSignature => Refusal::UnknownCa,
        CertificateError::Other(other) => match other.0.downcast_ref::<MeshCertificateError>() {
            Some(mesh) => mesh.refusal,
            None => Refusal::Handshake,
        },
        _ => Refusal::Handshake,
    }
}

/// What the peer's alert says about why it refused us.
fn of_alert(alert: AlertDescription) -> Refusal {
    match alert {
        AlertDescription::CertificateExpired => Refusal::Expired,
        AlertDescription::UnknownCA => Refusal::UnknownCa,
        // What rustls sends for a chain whose signature does not verify: a CA of the
        // same name with another key (two `ambit-agent ca init` CAs), i.e. not ours.
        AlertDescription::DecryptError => Refusal::UnknownCa,
        AlertDescription::CertificateRequired => Refusal::NoClientCertificate,
        AlertDescription::AccessDenied => Refusal::WrongIdentity,
        _ => Refusal::Handshake,
    }
}
