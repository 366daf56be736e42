//! Reading and writing the conditions of a CertificateSigningRequest.

use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Where a request stands, from its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Neither approved nor denied.
    Pending,
    /// Approved, no certificate yet, not failed: to be signed.
    Approved,
    /// Denied, failed or issued: nothing left to do.
    Done,
}

fn has(csr: &CertificateSigningRequest, kind: &str) -> bool {
    csr.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// The issued chain, if any.
pub fn certificate(csr: &CertificateSigningRequest) -> Option<&[u8]> {
    csr.status.as_ref().and_then(|s| s.certificate.as_ref()).map(|c| c.0.as_slice()).filter(|c| !c.is_empty())
}

pub fn stage(csr: &CertificateSigningRequest) -> Stage {
    if has(csr, "Denied") || has(csr, "Failed") || certificate(csr).is_some() {
        Stage::Done
    } else if has(csr, "Approved") {
        Stage::Approved
    } else {
        Stage::Pending
    }
}

/// The first condition of `kind` that is True: (reason, message).
pub fn reason_of(csr: &CertificateSigningRequest, kind: &str) -> Option<(String, String)> {
    let conditions = csr.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == kind && c.status == "True")?;
    Some((c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
}

/// `csr` with one more True condition.
pub fn with_condition(csr: &CertificateSigningRequest, kind: &str, reason: &str, message: &str) -> CertificateSigningRequest {
    let mut updated = csr.clone();
    let status = updated.status.get_or_insert_with(CertificateSigningRequestStatus::default);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    status.conditions.get_or_insert_with(Vec::new).push(CertificateSigningRequestCondition {
        type_: kind.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.chars().take(1024).collect()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    });
    updated
}
