//! Upstream's weighted-distribution check (`TestWeightedDistributionBatch`).

use std::collections::BTreeMap;

use crate::client::RequestResult;

/// The backend name of a pod: its name without the last two `-`-separated parts.
pub fn backend_of(pod: &str) -> &str {
    let mut cut = pod.len();
    for _ in 0..2 {
        match pod[..cut].rfind('-') {
            Some(i) => cut = i,
            None => return pod,
        }
    }
    &pod[..cut]
}

/// Checks one batch against the expected shares (percent per backend) with an
/// absolute tolerance in percentage points. Returns the problems (empty: passed).
pub fn check_batch(results: &[RequestResult], expected_total: usize, weights: &BTreeMap<String, f64>, tolerance_percent: f64) -> Vec<String> {
    let mut problems = Vec::new();
    if results.len() != expected_total {
        problems.push(format!("{} responses, expected {expected_total}", results.len()));
        return problems;
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for result in results {
        let backend = result.echo_pod().map(backend_of).unwrap_or("").to_owned();
        *counts.entry(backend).or_default() += 1;
    }
    for backend in counts.keys() {
        if !weights.contains_key(backend) {
            problems.push(format!("traffic reached unexpected backend {backend:?}"));
        }
    }
    let positive = weights.values().filter(|w| **w > 0.0).count();
    if counts.len() != positive {
        problems.push(format!("{} backends got traffic, expected {positive}", counts.len()));
    }
    for (backend, weight) in weights {
        let got = counts.get(backend).copied().unwrap_or(0);
        if *weight > 0.0 && got == 0 {
            problems.push(format!("backend {backend} (weight {weight}) got nothing"));
        }
        let share = got as f64 / expected_total as f64;
        if (share - weight / 100.0).abs() > tolerance_percent / 100.0 {
            problems.push(format!("backend {backend}: {:.1}% of requests, expected {weight}% ± {tolerance_percent}", share * 100.0));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(pod: &str) -> RequestResult {
        RequestResult { status: Some(200), body: Some(serde_json::json!({"pod": pod})), ..Default::default() }
    }

    #[test]
    fn backend_names() {
        assert_eq!(backend_of("echo-v1-6d5c8f7b9-abcde"), "echo-v1");
        assert_eq!(backend_of("echo"), "echo");
    }

    #[test]
    fn distribution_within_and_outside_tolerance() {
        let weights: BTreeMap<String, f64> = [("echo-v1".into(), 70.0), ("echo-v2".into(), 30.0), ("echo-v3".into(), 0.0)].into();
        let mut batch: Vec<_> = (0..350).map(|_| result("echo-v1-a-b")).collect();
        batch.extend((0..150).map(|_| result("echo-v2-a-b")));
        assert!(check_batch(&batch, 500, &weights, 5.0).is_empty());
        let skewed: Vec<_> = (0..500).map(|i| result(if i < 420 { "echo-v1-a-b" } else { "echo-v2-a-b" })).collect();
        assert!(!check_batch(&skewed, 500, &weights, 5.0).is_empty());
        let mut leaked = batch.clone();
        leaked[0] = result("echo-v3-a-b");
        assert!(!check_batch(&leaked, 500, &weights, 5.0).is_empty());
    }
}
