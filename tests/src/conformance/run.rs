//! Running one conformance case file against a bed whose agent is already running, as
//! the conformance suite does: apply the file's manifests, every case must pass 3 times
//! in a row within 30 s (polling every 100 ms), traffic splits must be within
//! tolerance, then the manifests are deleted.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{expect, weights, Case, CaseFile, WeightCheck};
use crate::bed::TestBed;
use crate::client::ClientRequest;
use crate::pod::Pod;

const REQUIRED_CONSECUTIVE_SUCCESSES: usize = 3;
const MAX_TIME_TO_CONSISTENCY: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The client request a case describes.
pub fn request_for(case: &Case) -> ClientRequest {
    let r = &case.request;
    let mut request = match r.protocol.as_str() {
        "grpc" => ClientRequest::grpc(r.host.clone()),
        scheme => {
            let path = if r.path.is_empty() { "/" } else { r.path.as_str() };
            ClientRequest::http(format!("{scheme}://{}{path}", r.host))
        }
    };
    if let Some(method) = &r.method {
        request = request.method(method.clone());
    }
    if r.h2c {
        request = request.h2c();
    }
    for (name, value) in &r.headers {
        request = request.header(name.clone(), value.clone());
    }
    request.timeout(Duration::from_secs(5))
}

fn client_pod(bed: &TestBed, case: &Case) -> Result<Pod> {
    let labels = case.client.labels();
    let selector: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    bed.first_pod(&case.client.namespace, &selector)
}

/// One attempt: the problems found (empty when the case passed).
fn attempt(bed: &TestBed, case: &Case) -> Result<Vec<String>> {
    let pod = client_pod(bed, case)?;
    let output = pod.run_client(&request_for(case))?;
    if let Some(error) = &output.error {
        return Ok(vec![format!("client error: {error}")]);
    }
    let Some(result) = output.results.first() else { return Ok(vec!["client returned no result".into()]) };
    Ok(expect::check(case, result))
}

/// Runs one case until it passed 3 times in a row, then its traffic split if any.
pub fn run_case(bed: &TestBed, case: &Case) -> Result<()> {
    let started = Instant::now();
    let mut consecutive = 0;
    while consecutive < REQUIRED_CONSECUTIVE_SUCCESSES {
        let problems = attempt(bed, case)?;
        if problems.is_empty() {
            consecutive += 1;
            continue;
        }
        consecutive = 0;
        if started.elapsed() > MAX_TIME_TO_CONSISTENCY {
            bail!("case {:?} did not pass 3 times in a row within {MAX_TIME_TO_CONSISTENCY:?}: {}", case.name, problems.join("; "));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    if let Some(expected) = &case.weights {
        run_weights(bed, case, expected)?;
    }
    Ok(())
}

fn run_weights(bed: &TestBed, case: &Case, expected: &BTreeMap<String, f64>) -> Result<()> {
    let check = case.weight_check.clone().unwrap_or(WeightCheck { total_requests: 500, tolerance_percent: 5.0, max_attempts: 10 });
    let pod = client_pod(bed, case)?;
    let mut last = Vec::new();
    for _ in 0..check.max_attempts {
        let request = request_for(case).count(check.total_requests).concurrency(8);
        let output = pod.run_client(&request)?;
        last = weights::check_batch(&output.results, check.total_requests, expected, check.tolerance_percent);
        if last.is_empty() {
            return Ok(());
        }
    }
    bail!("case {:?}: traffic split not within tolerance after {} attempts: {}", case.name, check.max_attempts, last.join("; "))
}

/// Applies `path`'s manifests, runs all its cases, deletes the manifests; the failures
/// (all of them) are in the error. Returns the number of cases that passed.
pub fn run_file(bed: &TestBed, path: &Path) -> Result<usize> {
    let file = CaseFile::load(path)?;
    if !file.manifests.trim().is_empty() {
        bed.apply_yaml(&file.manifests)?;
    }
    let mut failures = Vec::new();
    for case in &file.cases {
        if let Err(error) = run_case(bed, case) {
            failures.push(format!("{error:#}"));
        }
    }
    if !file.manifests.trim().is_empty() {
        if let Err(error) = bed.delete_yaml(&file.manifests) {
            failures.push(format!("deleting manifests: {error:#}"));
        }
    }
    if !failures.is_empty() {
        bail!("{} of {} cases of {} failed:\n{}", failures.len(), file.cases.len(), path.display(), failures.join("\n"));
    }
    Ok(file.cases.len())
}
