//! The SNI a client sends to name the identity it expects the server to present.
//!
//! A node proxy holds one certificate per identity with pods on its node, and HBONE
//! connections all reach the same port, so the server must be told which identity to
//! present before the handshake. The client names it as
//! `<service-account>.<namespace>.<SERVER_NAME_SUFFIX>`: a namespace is a DNS label (no
//! dots), so the name splits unambiguously from the right. The trust domain is not in
//! the name: a server holds identities of its own trust domain only.

use rustls::pki_types::ServerName;

use crate::identity::{SpiffeId, TrustDomain};

/// The fixed suffix of HBONE server names.
pub const SERVER_NAME_SUFFIX: &str = "identity.ambit";

/// The server name naming `id`, or None when it would not be a valid DNS name (a label
/// over 63 bytes, or a name over 253).
pub fn server_name(id: &SpiffeId) -> Option<ServerName<'static>> {
    let name = format!("{}.{}.{}", id.service_account(), id.namespace(), SERVER_NAME_SUFFIX);
    if name.len() > 253 || name.split('.').any(|label| label.is_empty() || label.len() > 63) {
        return None;
    }
    ServerName::try_from(name).ok()
}

/// The identity a server name names, in `trust_domain`.
pub fn identity_from_server_name(name: &str, trust_domain: &TrustDomain) -> Option<SpiffeId> {
    let rest = name.strip_suffix(SERVER_NAME_SUFFIX)?.strip_suffix('.')?;
    let (account, namespace) = rest.rsplit_once('.')?;
    SpiffeId::new(trust_domain.clone(), namespace, account).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_even_with_dotted_service_accounts() {
        let td = TrustDomain::new("cluster.local").unwrap();
        for (ns, sa) in [("shop", "catalog"), ("shop", "catalog.v2.reader")] {
            let id = SpiffeId::new(td.clone(), ns, sa).unwrap();
            let ServerName::DnsName(name) = server_name(&id).unwrap() else { panic!("not a DNS name") };
            assert_eq!(identity_from_server_name(name.as_ref(), &td), Some(id));
        }
        assert_eq!(identity_from_server_name("catalog.shop.example.com", &td), None);
        let long = SpiffeId::new(td, "shop", &"a".repeat(64)).unwrap();
        assert!(server_name(&long).is_none());
    }
}
