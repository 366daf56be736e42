//! A certificate source over [`TestCa`] whose behaviour a test switches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ambit_proxy_core::identity::SpiffeId;
use ambit_proxy_core::tls::{CertificateSource, IssuedChain, SignFuture, SourceError};

use super::ca::{TestCa, Validity};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sign,
    Unavailable,
    /// Signs, but for another identity.
    WrongSan,
    /// Signs a certificate for another key.
    OtherKey,
    /// Signs, after this long (a CA far away, or busy).
    Delayed(Duration),
}

pub struct TestSource {
    pub ca: Arc<TestCa>,
    mode: Mutex<Mode>,
    signed: AtomicUsize,
}

impl TestSource {
    pub fn new(ca: Arc<TestCa>) -> Arc<Self> {
        Arc::new(Self { ca, mode: Mutex::new(Mode::Sign), signed: AtomicUsize::new(0) })
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn signed(&self) -> usize {
        self.signed.load(Ordering::SeqCst)
    }

    fn answer(&self, id: &SpiffeId, csr_pem: &str, lifetime: Duration) -> Result<IssuedChain, SourceError> {
        let validity = Validity { from: Duration::ZERO, lifetime, backdated: true };
        let uri = id.uri();
        let chain = match *self.mode.lock().unwrap() {
            Mode::Unavailable => return Err(SourceError::Unavailable("test CA switched off".into())),
            Mode::Sign | Mode::Delayed(_) => self.ca.sign_request(csr_pem, &[&uri], validity),
            Mode::WrongSan => {
                let other = format!("spiffe://{}/ns/other/sa/other", id.trust_domain());
                self.ca.sign_request(csr_pem, &[&other], validity)
            }
            Mode::OtherKey => self.ca.leaf(&[&uri], validity).0,
        };
        self.signed.fetch_add(1, Ordering::SeqCst);
        Ok(IssuedChain { chain })
    }
}

impl CertificateSource for TestSource {
    fn sign<'a>(&'a self, id: &'a SpiffeId, csr_pem: &'a str, lifetime: Duration) -> SignFuture<'a> {
        Box::pin(async move {
            let mode = *self.mode.lock().unwrap();
            if let Mode::Delayed(delay) = mode {
                tokio::time::sleep(delay).await;
            }
            self.answer(id, csr_pem, lifetime)
        })
    }
}
