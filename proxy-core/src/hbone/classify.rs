//! Which [`Refusal`] a failed TLS handshake is: the I/O error tokio-rustls returns,
//! unwrapped to the rustls error that [`Refusal::classify`] maps.

use std::io;

use rustls::Error as TlsError;

use crate::tls::Refusal;

/// The refusal an I/O error from a tokio-rustls handshake stands for.
pub(crate) fn refusal_of(error: &io::Error) -> Refusal {
    match error.get_ref().and_then(|inner| inner.downcast_ref::<TlsError>()) {
        Some(tls) => Refusal::classify(tls),
        None if error.kind() == io::ErrorKind::InvalidData => Refusal::Plaintext,
        None => Refusal::Handshake,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_certificate_errors_to_reasons() {
        use rustls::CertificateError;
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
