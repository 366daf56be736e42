//! What the store holds, for `/config_dump` (never keys) and `/ready`.

use std::time::SystemTime;

use super::entry::{Attempt, Entry};
use crate::identity::{SpiffeId, TrustDomain};
use crate::tls::clock::unix_seconds;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertState {
    /// No certificate yet; the first request is under way.
    Pending,
    /// A valid certificate, no renewal pending.
    Valid,
    /// A valid certificate is served while a renewal is under way or being retried.
    Renewing,
    /// The certificate held has expired and is no longer served; renewal keeps trying.
    Expired,
    /// No certificate: the last attempt failed (see `last_error`); retried with backoff.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertificateStatus {
    pub identity: SpiffeId,
    pub state: CertState,
    /// The serial number, lower-case hex.
    pub serial: Option<String>,
    /// Unix seconds.
    pub not_before: Option<u64>,
    /// Unix seconds.
    pub not_after: Option<u64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoreStatus {
    pub trust_domain: TrustDomain,
    pub lifetime_seconds: u64,
    /// The last attempt for some identity could not reach the CA.
    pub ca_unreachable: bool,
    pub certificates: Vec<CertificateStatus>,
}

/// The store's part of `/ready`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    /// Identities with pods on this node but no valid certificate.
    pub without_certificate: Vec<SpiffeId>,
    pub ca_unreachable: bool,
}

impl Readiness {
    /// Every identity wanted has a valid certificate (the CA may still be unreachable:
    /// held certificates serve until they expire).
    pub fn is_ready(&self) -> bool {
        self.without_certificate.is_empty()
    }
}

pub(crate) fn status_of(entry: &Entry, now: SystemTime) -> CertificateStatus {
    let held = entry.held();
    let attempt = entry.attempt();
    let valid = held.as_ref().is_some_and(|h| h.is_valid_at(now));
    let state = match (&held, valid, &attempt) {
        (Some(_), false, _) => CertState::Expired,
        (Some(_), true, Attempt::Idle) => CertState::Valid,
        (Some(_), true, _) => CertState::Renewing,
        (None, _, Attempt::Failed { .. }) => CertState::Failed,
        (None, _, _) => CertState::Pending,
    };
    let last_error = match attempt {
        Attempt::Failed { error, .. } => Some(error),
        _ => None,
    };
    CertificateStatus {
        identity: entry.id.clone(),
        state,
        serial: held.as_ref().map(|h| h.serial.clone()),
        not_before: held.as_ref().map(|h| unix_seconds(h.not_before)),
        not_after: held.as_ref().map(|h| unix_seconds(h.not_after)),
        last_error,
    }
}
