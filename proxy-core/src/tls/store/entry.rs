//! One identity's slot in the store: the certificate currently served (swapped
//! atomically on renewal: handshakes in flight keep the one they loaded) and how the
//! latest attempt to obtain one went.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

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
    /// Bumped when a certificate is installed or an attempt fails (see [`Entry::settled`]).
    events: watch::Sender<u64>,
}

impl Entry {
    pub fn new(id: SpiffeId) -> Self {
        Self { id, held: ArcSwapOption::empty(), attempt: Mutex::new(Attempt::Idle), events: watch::Sender::new(0) }
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
        self.events.send_modify(|n| *n += 1);
    }

    pub fn attempt(&self) -> Attempt {
        self.attempt.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn set_attempt(&self, attempt: Attempt) {
        let failed = matches!(attempt, Attempt::Failed { .. });
        *self.attempt.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = attempt;
        if failed {
            self.events.send_modify(|n| *n += 1);
        }
    }

    /// Resolves once a certificate valid at `now()` is held, or once an attempt to
    /// obtain one has failed (waiting longer would only wait for the backoff). Callers
    /// bound the wait.
    pub async fn settled(&self, now: impl Fn() -> SystemTime) {
        let mut events = self.events.subscribe();
        loop {
            if self.current(now()).is_some() || matches!(self.attempt(), Attempt::Failed { .. }) {
                return;
            }
            if events.changed().await.is_err() {
                return;
            }
        }
    }

    pub fn ca_unreachable(&self) -> bool {
        matches!(self.attempt(), Attempt::Failed { unavailable: true, .. })
    }
}
