//! One identity's slot in the store: the certificate currently served (swapped
//! atomically on renewal: handshakes in flight keep the one they loaded) and how the
//! latest attempt to obtain one went.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;

use crate::identity::SpiffeId;
use crate::tls::held::HeldCertificate;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// No attempt under way; the last one (if any) succeeded.
    Idle,
    InProgress,
    /// The last attempt failed; another follows after a backoff.
    Failed { error: String, unavailable: bool },
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub id: SpiffeId,
    held: ArcSwapOption<HeldCertificate>,
    attempt: Mutex<Attempt>,
}

impl Entry {
    pub fn new(id: SpiffeId) -> Self {
        Self { id, held: ArcSwapOption::empty(), attempt: Mutex::new(Attempt::Idle) }
    }

    /// The certificate held, valid or not.
    pub fn held(&self) -> Option<Arc<HeldCertificate>> {
        self.held.load_full()
    }

    /// The certificate held if it is valid at `now`.
    pub fn current(&self, now: SystemTime) -> Option<Arc<HeldCertificate>> {
        self.held.load_full().filter(|held| held.is_valid_at(now))
    }

    pub fn install(&self, held: HeldCertificate) {
        self.held.store(Some(Arc::new(held)));
    }

    pub fn attempt(&self) -> Attempt {
        self.attempt.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn set_attempt(&self, attempt: Attempt) {
        *self.attempt.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = attempt;
    }

    pub fn ca_unreachable(&self) -> bool {
        matches!(self.attempt(), Attempt::Failed { unavailable: true, .. })
    }
}
