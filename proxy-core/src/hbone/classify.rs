//! Which [`Refusal`] a failed TLS handshake is (a private mapping from rustls errors;
//! the shared `tls` module may grow the canonical one).

use std::io;

use rustls::{CertificateError, Error as TlsError};

use crate::tls::Refusal;

/// The refusal an I/O error from a tokio-rustls handshake stands for.
pub(crate) fn refusal_of(error: &io::Error) -> Refusal {
    match error.get_ref().and_then(|inner| inner.downcast_ref::<TlsError>()) {
        Some(tls) => refusal_of_tls(tls),
        None if error.kind() == io::ErrorKind::InvalidData => Refusal::Plaintext,
        None => Refusal::Handshake,
    }
}

fn refusal_of_tls(error: &TlsError) -> Refusal {
    match error {
        TlsError::InvalidCertificate(certificate) => match certificate {
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => Refusal::Expired,
            CertificateError::UnknownIssuer | CertificateError::BadSignature => Refusal::UnknownCa,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Refusal::WrongIdentity
            }
            CertificateError::ApplicationVerificationFailure => Refusal::NoIdentity,
            // The mesh verifiers' own refusals (e.g. a foreign trust domain).
            _ => Refusal::classify(error),
        },
        TlsError::NoCertificatesPresented => Refusal::NoClientCertificate,
        TlsError::InvalidMessage(_) => Refusal::Plaintext,
        // Alerts: the peer's reason for refusing us (e.g. `unknown_ca`).
        _ => Refusal::classify(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_certificate_errors_to_reasons() {
        let wrap = |e: TlsError| io::Error::new(io::ErrorKind::InvalidData, e);
        assert_eq!(refusal_of(&wrap(TlsError::InvalidCertificate(CertificateError::Expired))), Refusal::Expired);
        assert_eq!(refusal_of(&wrap(TlsError::InvalidCertificate(CertificateError::UnknownIssuer))), Refusal::UnknownCa);
        assert_eq!(refusal_of(&wrap(TlsError::NoCertificatesPresented)), Refusal::NoClientCertificate);
        assert_eq!(refusal_of(&io::Error::from(io::ErrorKind::ConnectionReset)), Refusal::Handshake);
        let alert = TlsError::AlertReceived(rustls::AlertDescription::UnknownCA);
        assert_eq!(refusal_of(&wrap(alert)), Refusal::UnknownCa);
        let alert = TlsError::AlertReceived(rustls::AlertDescription::DecryptError);
        assert_eq!(refusal_of(&wrap(alert)), Refusal::UnknownCa, "a CA of the same name with another key");
        assert_eq!(refusal_of(&wrap(TlsError::General("other".into()))), Refusal::Handshake);
    }
}
