//! Reading the identity a CertificateSigningRequest asks for: its PKCS#10 request must be
//! well formed, carry a valid signature by the key it holds, and name exactly one subject
//! alternative name, a SPIFFE URI. Anything else is a forged (or broken) request.

use ambit_proxy_core::identity::SpiffeId;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// Why a PKCS#10 request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForgedRequest {
    #[error("the request is not a PEM-encoded PKCS#10 certificate request")]
    NotPkcs10,
    #[error("the request's signature does not verify with the key it carries")]
    BadSignature,
    #[error("the request must name exactly one subject alternative name, a SPIFFE URI; it names {0}")]
    WrongNames(String),
    #[error("the request's URI SAN is not a SPIFFE ID: {0}")]
    NotSpiffe(String),
}

/// The SPIFFE ID a PEM-encoded PKCS#10 request asks for, after verifying its signature.
pub fn requested_identity(pem: &[u8]) -> Result<SpiffeId, ForgedRequest> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| ForgedRequest::NotPkcs10)?;
    if block.label != "CERTIFICATE REQUEST" && block.label != "NEW CERTIFICATE REQUEST" {
        return Err(ForgedRequest::NotPkcs10);
    }
    let (_, request) = X509CertificationRequest::from_der(&block.contents).map_err(|_| ForgedRequest::NotPkcs10)?;
    request.verify_signature().map_err(|_| ForgedRequest::BadSignature)?;
    let names = subject_alt_names(&request);
    match names.as_slice() {
        [GeneralName::URI(uri)] => uri.parse().map_err(|_| ForgedRequest::NotSpiffe(uri.chars().take(128).collect())),
        other => Err(ForgedRequest::WrongNames(describe(other))),
    }
}

/// Every SAN of every SubjectAlternativeName extension requested.
fn subject_alt_names<'a>(request: &'a X509CertificationRequest<'a>) -> Vec<GeneralName<'a>> {
    let Some(extensions) = request.requested_extensions() else { return Vec::new() };
    extensions
        .filter_map(|e| match e {
            ParsedExtension::SubjectAlternativeName(san) => Some(san.general_names.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn describe(names: &[GeneralName<'_>]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    let listed: Vec<String> = names.iter().take(4).map(|n| n.to_string().chars().take(80).collect()).collect();
    format!("{} ({})", names.len(), listed.join(", "))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A PEM PKCS#10 request with these URI and DNS SANs, and its key.
    pub(crate) fn csr_pem(uris: &[&str], dns: &[&str]) -> (String, rcgen::KeyPair) {
        let mut params = rcgen::CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
        for uri in uris {
            params.subject_alt_names.push(rcgen::SanType::URI(rcgen::string::Ia5String::try_from(*uri).unwrap()));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        (pem, key)
    }

    const ID: &str = "spiffe://cluster.local/ns/shop/sa/catalog";

    #[test]
    fn reads_the_single_spiffe_uri() {
        let (pem, _) = csr_pem(&[ID], &[]);
        assert_eq!(requested_identity(pem.as_bytes()).unwrap().to_string(), ID);
    }

    #[test]
    fn refuses_other_names_and_bad_signatures() {
        let (two, _) = csr_pem(&[ID, "spiffe://cluster.local/ns/shop/sa/other"], &[]);
        assert!(matches!(requested_identity(two.as_bytes()), Err(ForgedRequest::WrongNames(_))));
        let (dns, _) = csr_pem(&[ID], &["catalog.shop"]);
        assert!(matches!(requested_identity(dns.as_bytes()), Err(ForgedRequest::WrongNames(_))));
        let (none, _) = csr_pem(&[], &[]);
        assert!(matches!(requested_identity(none.as_bytes()), Err(ForgedRequest::WrongNames(_))));
        let (https, _) = csr_pem(&["https://example.com/x"], &[]);
        assert!(matches!(requested_identity(https.as_bytes()), Err(ForgedRequest::NotSpiffe(_))));
        assert_eq!(requested_identity(b"not pem"), Err(ForgedRequest::NotPkcs10));
        assert_eq!(requested_identity(tampered(ID).as_bytes()), Err(ForgedRequest::BadSignature));
    }

    /// A request for `id` whose signature was changed after signing: one base64 character
    /// well inside the signature (the DER's last bytes) is replaced.
    pub(crate) fn tampered(id: &str) -> String {
        let (pem, _) = csr_pem(&[id], &[]);
        let end = pem.find("-----END").unwrap();
        let body: Vec<char> = pem[..end].trim_end().chars().collect();
        // The 12th base64 character from the end (never a line break or padding).
        let at = body.iter().enumerate().rev().filter(|(_, c)| c.is_ascii_alphanumeric()).nth(11).map(|(i, _)| i).unwrap();
        let mut out: String = body.iter().enumerate().map(|(i, c)| if i == at { if *c == 'A' { 'B' } else { 'A' } } else { *c }).collect();
        out.push('\n');
        out.push_str(&pem[end..]);
        out
    }
}
