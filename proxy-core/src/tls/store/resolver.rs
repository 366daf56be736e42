//! The server side's certificate choice: the identity the client names in SNI, if this
//! node holds a valid certificate for it. Otherwise the handshake fails (the client is
//! told `access_denied`; see `Refusal::WrongIdentity`).

use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::Shared;
use crate::tls::identity_from_server_name;

pub(crate) struct SniResolver(pub Arc<Shared>);

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SniResolver")
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let shared = &self.0;
        let id = identity_from_server_name(hello.server_name()?, shared.context.load().bundle.trust_domain())?;
        let entries = shared.entries.load();
        let held = entries.get(&id)?.current(shared.context.load().clock.now())?;
        Some(held.certified.clone())
    }
}
