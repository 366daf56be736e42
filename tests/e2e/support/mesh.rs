//! What the mesh tests read from agents: identities and the certificates held for them.

use std::time::Duration;

use ambit_e2e::RunningAgent;

/// The SPIFFE ID of a service account in the bed CA's trust domain.
pub fn spiffe(namespace: &str, account: &str) -> String {
    format!("spiffe://{}/ns/{namespace}/sa/{account}", ambit_e2e::mesh_ca::TRUST_DOMAIN)
}

/// The `/config_dump` entries of the certificates an agent holds or is obtaining.
fn certificates(agent: &RunningAgent) -> Vec<serde_json::Value> {
    let dump = agent.config_dump().unwrap_or_default();
    dump["certificates"]["certificates"].as_array().cloned().unwrap_or_default()
}

/// The identities an agent holds valid certificates for.
pub fn held_identities(agent: &RunningAgent) -> Vec<String> {
    certificates(agent)
        .iter()
        .filter(|c| c["state"] == "valid")
        .filter_map(|c| c["identity"].as_str().map(str::to_string))
        .collect()
}

/// Every identity an agent holds or is obtaining a certificate for, whatever its state.
pub fn every_identity(agent: &RunningAgent) -> Vec<String> {
    certificates(agent).iter().filter_map(|c| c["identity"].as_str().map(str::to_string)).collect()
}

/// The serial of the valid certificate `agent` holds for `identity`.
pub fn held_serial(agent: &RunningAgent, identity: &str) -> Option<String> {
    certificates(agent)
        .into_iter()
        .find(|c| c["identity"] == identity && c["state"] == "valid")
        .and_then(|c| c["serial"].as_str().map(str::to_string))
}

/// Waits (at most `limit`) until `agent` holds valid certificates for every one of
/// `wanted`; fails the test with its log otherwise.
pub fn wait_for_certificates(agent: &RunningAgent, wanted: &[String], limit: Duration) {
    let held = super::poll(limit, || {
        let held = held_identities(agent);
        wanted.iter().all(|w| held.contains(w)).then_some(held)
    });
    assert!(held.is_some(), "node {} holds no certificate for {wanted:?}:\n{}", agent.node(), agent.log_tail(30));
}
