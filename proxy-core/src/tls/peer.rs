//! The SPIFFE ID a peer's certificate carries.

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use super::Refusal;
use crate::identity::SpiffeId;

/// The SPIFFE ID in a certificate: exactly one URI SAN, a valid SPIFFE ID.
pub fn spiffe_id_of(certificate: &CertificateDer<'_>) -> Result<SpiffeId, Refusal> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).map_err(|_| Refusal::NoIdentity)?;
    let san = parsed.subject_alternative_name().ok().flatten().ok_or(Refusal::NoIdentity)?;
    let mut uris = san.value.general_names.iter().filter_map(|name| match name {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    match (uris.next(), uris.next()) {
        (Some(uri), None) => uri.parse().map_err(|_| Refusal::NoIdentity),
        _ => Err(Refusal::NoIdentity),
    }
}

/// The verified peer's SPIFFE ID after a completed handshake (the chain was verified by
/// the configuration's verifier; this reads the end-entity certificate).
pub fn peer_identity(state: &rustls::CommonState) -> Result<SpiffeId, Refusal> {
    let certificates = state.peer_certificates().ok_or(Refusal::NoClientCertificate)?;
    spiffe_id_of(certificates.first().ok_or(Refusal::NoClientCertificate)?)
}

/// The serial number of the peer's end-entity certificate after a completed
/// handshake, lower-case hex (as `/config_dump` shows serials).
pub fn peer_serial(state: &rustls::CommonState) -> Option<String> {
    let leaf = state.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(parsed.raw_serial().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate_with(uris: &[&str]) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names =
            uris.iter().map(|u| rcgen::SanType::URI(rcgen::string::Ia5String::try_from(*u).unwrap())).collect();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn reads_exactly_one_spiffe_uri() {
        let id = "spiffe://cluster.local/ns/shop/sa/catalog";
        assert_eq!(spiffe_id_of(&certificate_with(&[id])).unwrap().to_string(), id);
        assert_eq!(spiffe_id_of(&certificate_with(&[])), Err(Refusal::NoIdentity));
        assert_eq!(spiffe_id_of(&certificate_with(&[id, id])), Err(Refusal::NoIdentity));
        assert_eq!(spiffe_id_of(&certificate_with(&["https://example.com/x"])), Err(Refusal::NoIdentity));
    }
}
