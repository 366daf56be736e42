//! The Gateway API mesh conformance suite, run from the case files in
//! `../shared/conformance` (or `AMBIT_CONFORMANCE_DIR`) against the real agent: real
//! eBPF redirection in a network-namespace test bed, standalone mode.
//!
//! As upstream does, the base manifests are applied once, then each test's manifests
//! are applied, its cases run (each must pass 3 times in a row within 30 s, polling
//! every 100 ms), and its manifests are deleted. Tests run one at a time (routes of
//! different tests attach to the same Services). Each case file is one test here, so a
//! new file dropped into the folder runs without code changes.
//!
//! Needs root (network namespaces, cgroups, eBPF): fails, never skips, without it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_e2e::conformance::case::{case_files, conformance_dir};
use ambit_e2e::conformance::{expect, weights, Case, CaseFile};
use ambit_e2e::{AgentOptions, ClientRequest, RunningAgent, TestBed};
use anyhow::{bail, Context, Result};
use libtest_mimic::{Arguments, Failed, Trial};

const REQUIRED_CONSECUTIVE_SUCCESSES: usize = 3;
const MAX_TIME_TO_CONSISTENCY: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The mesh namespaces of the base manifests; the bed enrolls them (label
/// `ambit.dev/mesh: enabled`), which is how namespaces join Ambit's mesh.
const MESH_NAMESPACES: &[&str] = &["gateway-conformance-mesh", "gateway-conformance-mesh-consumer"];

struct Suite {
    bed: TestBed,
    // Dropped before the bed (field order): the agent's pins go first.
    agent: std::sync::Mutex<Option<RunningAgent>>,
}

impl Suite {
    fn start(dir: &Path) -> Result<Suite> {
        let bed = TestBed::new()?;
        let base = std::fs::read_to_string(dir.join("base-manifests.yaml")).context("reading base-manifests.yaml")?;
        bed.apply_yaml(&base)?;
        for ns in MESH_NAMESPACES {
            bed.enroll_namespace(ns)?;
        }
        let agent = RunningAgent::start(&bed, &AgentOptions::default())?;
        Ok(Suite { bed, agent: std::sync::Mutex::new(Some(agent)) })
    }

    fn agent_log_tail(&self) -> String {
        self.agent.lock().unwrap().as_ref().map(|a| a.log_tail(30)).unwrap_or_default()
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        self.agent.lock().unwrap().take();
    }
}

fn request_for(case: &Case) -> ClientRequest {
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
    for (name, value) in &r.headers {
        request = request.header(name.clone(), value.clone());
    }
    request.timeout(Duration::from_secs(5))
}

fn client_pod(suite: &Suite, case: &Case) -> Result<ambit_e2e::Pod> {
    let labels = case.client.labels();
    let selector: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    suite.bed.first_pod(&case.client.namespace, &selector)
}

/// One attempt: the problems found (empty when the case passed).
fn attempt(suite: &Suite, case: &Case) -> Result<Vec<String>> {
    let pod = client_pod(suite, case)?;
    let output = pod.run_client(&request_for(case))?;
    if let Some(error) = &output.error {
        return Ok(vec![format!("client error: {error}")]);
    }
    let Some(result) = output.results.first() else { return Ok(vec!["client returned no result".into()]) };
    Ok(expect::check(case, result))
}

fn run_case(suite: &Suite, case: &Case) -> Result<()> {
    let started = Instant::now();
    let mut consecutive = 0;
    let mut last = Vec::new();
    while consecutive < REQUIRED_CONSECUTIVE_SUCCESSES {
        let problems = attempt(suite, case)?;
        if problems.is_empty() {
            consecutive += 1;
            continue;
        }
        consecutive = 0;
        last = problems;
        if started.elapsed() > MAX_TIME_TO_CONSISTENCY {
            bail!("case {:?} did not pass 3 times in a row within {:?}: {}", case.name, MAX_TIME_TO_CONSISTENCY, last.join("; "));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    let _ = last;
    if let Some(expected) = &case.weights {
        run_weights(suite, case, expected)?;
    }
    Ok(())
}

fn run_weights(suite: &Suite, case: &Case, expected: &std::collections::BTreeMap<String, f64>) -> Result<()> {
    let check = case.weight_check.clone().unwrap_or(ambit_e2e::conformance::WeightCheck {
        total_requests: 500,
        tolerance_percent: 5.0,
        max_attempts: 10,
    });
    let pod = client_pod(suite, case)?;
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

fn run_file(suite: &Suite, path: &Path) -> Result<(), Failed> {
    let file = CaseFile::load(path).map_err(|e| Failed::from(format!("{e:#}")))?;
    if !file.manifests.trim().is_empty() {
        suite.bed.apply_yaml(&file.manifests).map_err(|e| Failed::from(format!("applying manifests: {e:#}")))?;
    }
    let mut failures = Vec::new();
    for case in &file.cases {
        if let Err(error) = run_case(suite, case) {
            failures.push(format!("{error:#}"));
        }
    }
    if !file.manifests.trim().is_empty() {
        if let Err(error) = suite.bed.delete_yaml(&file.manifests) {
            failures.push(format!("deleting manifests: {error:#}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of {} cases failed:\n{}\nagent log tail:\n{}", failures.len(), file.cases.len(), failures.join("\n"), suite.agent_log_tail()).into())
    }
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // Routes of different tests attach to the same Services: one test at a time.
    args.test_threads = Some(1);
    let dir = conformance_dir();
    let files: Vec<PathBuf> = match case_files(&dir) {
        Ok(files) if !files.is_empty() => files,
        Ok(_) => {
            eprintln!("no conformance case files in {}", dir.display());
            return ExitCode::FAILURE;
        }
        Err(error) => {
            eprintln!("{error:#}");
            return ExitCode::FAILURE;
        }
    };
    let suite = if args.list {
        None
    } else {
        match Suite::start(&dir) {
            Ok(suite) => Some(Arc::new(suite)),
            Err(error) => {
                eprintln!("conformance suite setup failed: {error:#}");
                return ExitCode::FAILURE;
            }
        }
    };
    let trials = files
        .into_iter()
        .map(|path| {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let suite = suite.clone();
            Trial::test(name, move || match &suite {
                Some(suite) => run_file(suite, &path),
                None => Err("suite not started".into()),
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(suite);
    conclusion.exit_code()
}
