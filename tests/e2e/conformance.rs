//! The Gateway API mesh conformance suite, run from the case files in
//! `../shared/conformance` (or `AMBIT_CONFORMANCE_DIR`) against the real agent: real
//! eBPF redirection in a network-namespace test bed, in both of the agent's modes:
//!
//! - `standalone::<Test>`: `ambit-agent standalone` reads the bed's manifests directory;
//! - `kubernetes::<Test>`: `ambit-agent run` watches the in-test API server, which runs
//!   in the bed's node namespace and mirrors the bed's objects (pods, Services,
//!   EndpointSlices: [`BedApiServer`]). As README tells users, the mesh namespaces are
//!   enrolled with `kubectl label namespace`, each test's routes are applied with
//!   `kubectl apply -f` (and removed with `kubectl delete -f`), and after a test's cases
//!   passed `kubectl get <kind> <name> -o jsonpath='{.status.parents}'` must show a
//!   parent of controllerName `ambit.dev/mesh` with `Accepted=True` for the route's
//!   current generation, written by the agent as the elected status writer.
//!
//! - `mesh::<Test>`: the mesh across nodes: `ambit-agent standalone` on each of three
//!   nodes with workload certificates from a CA made by `ambit-agent ca init`, the base
//!   manifests' pods (clients and echo servers) spread round-robin over the nodes, so
//!   that most calls cross nodes over HBONE (mutual TLS) and the rest take the
//!   same-node path.
//!
//! `AMBIT_CONFORMANCE_MODES` (`standalone`, `kubernetes`, `mesh`, comma-separated; all
//! by default) picks the modes. Each mode has its own bed and agent, started when its
//! first test runs; the previous mode's are torn down first.
//!
//! `AMBIT_CONFORMANCE_NODES` (default 1) gives the bed that many nodes: the base
//! manifests' pods (clients and echo servers) are spread round-robin over them and
//! every node runs its own agent.
//!
//! As upstream does, the base manifests are applied once, then each test's manifests
//! are applied, its cases run (each must pass 3 times in a row within 30 s, polling
//! every 100 ms), and its manifests are deleted. Tests run one at a time (routes of
//! different tests attach to the same Services). Each case file is one test here, so a
//! new file dropped into the folder runs without code changes.
//!
//! Ambit's own cases (`tests/conformance/`, same schema, features upstream has no tests
//! for yet) run after the shared corpus in every mode, as `<mode>::ambit/<Test>`, on the
//! same bed and base manifests. They are not part of the conformance report.
//!
//! Needs root (network namespaces, cgroups, eBPF): fails, never skips, without it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ambit_e2e::cluster::parse_documents;
use ambit_e2e::conformance::case::{ambit_conformance_dir, case_files, conformance_dir};
use ambit_e2e::conformance::report::{self, RunInfo, TestOutcome};
use ambit_e2e::conformance::{expect, placeholder, report_file, weights, Case, CaseFile};
use ambit_e2e::{AgentMode, AgentOptions, BedApiServer, BedOptions, ClientRequest, Kubectl, RunningAgent, TestBed};
use anyhow::{bail, Context, Result};
use libtest_mimic::{Arguments, Failed, Trial};

const REQUIRED_CONSECUTIVE_SUCCESSES: usize = 3;
const MAX_TIME_TO_CONSISTENCY: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The mesh namespaces of the base manifests; the bed enrolls them (label
/// `ambit.dev/mesh: enabled`), which is how namespaces join Ambit's mesh.
const MESH_NAMESPACES: &[&str] = &["gateway-conformance-mesh", "gateway-conformance-mesh-consumer"];

/// The enrollment label as `kubectl label namespace <ns> ambit.dev/mesh=enabled` takes it.
const MESH_LABEL_ARG: &str = "ambit.dev/mesh=enabled";

/// How long the elected agent may take to write a route's status once its cases pass.
const ROUTE_STATUS_LIMIT: Duration = Duration::from_secs(10);

/// The Gateway API the case files come from: upstream `main` at the commit that
/// `shared/conformance/README.md` names (after release v1.4.0).
const GATEWAY_API_VERSION: &str = "main-4564255ac2c3";
/// HTTPRoute and GRPCRoute `v1`: the standard channel.
const GATEWAY_API_CHANNEL: &str = "standard";

/// How the agent under test learns about the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Standalone,
    Kubernetes,
    Mesh,
}

/// The nodes of the mesh mode's bed.
const MESH_NODES: usize = 3;

impl Mode {
    const ALL: [Mode; 3] = [Mode::Standalone, Mode::Kubernetes, Mode::Mesh];

    fn parse(s: &str) -> Option<Mode> {
        match s.trim() {
            "standalone" => Some(Mode::Standalone),
            "kubernetes" => Some(Mode::Kubernetes),
            "mesh" => Some(Mode::Mesh),
            _ => None,
        }
    }

    /// The modes `AMBIT_CONFORMANCE_MODES` asks for (default: all).
    fn selected() -> Result<Vec<Mode>> {
        let Ok(value) = std::env::var("AMBIT_CONFORMANCE_MODES") else { return Ok(Mode::ALL.to_vec()) };
        let mut modes = Vec::new();
        for part in value.split(',').filter(|p| !p.trim().is_empty()) {
            let mode = Mode::parse(part)
                .with_context(|| format!("AMBIT_CONFORMANCE_MODES: unknown mode {part:?} (standalone, kubernetes, mesh)"))?;
            if !modes.contains(&mode) {
                modes.push(mode);
            }
        }
        if modes.is_empty() {
            bail!("AMBIT_CONFORMANCE_MODES names no mode");
        }
        Ok(modes)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Standalone => "standalone",
            Mode::Kubernetes => "kubernetes",
            Mode::Mesh => "mesh",
        })
    }
}

/// The bed's node count `AMBIT_CONFORMANCE_NODES` asks for (default 1).
fn selected_nodes() -> Result<usize> {
    let Ok(value) = std::env::var("AMBIT_CONFORMANCE_NODES") else { return Ok(1) };
    let nodes: usize = value.trim().parse().with_context(|| format!("AMBIT_CONFORMANCE_NODES: {value:?} is not a number"))?;
    if !(1..=ambit_e2e::bed_node::MAX_NODES).contains(&nodes) {
        bail!("AMBIT_CONFORMANCE_NODES: {nodes} is not in 1..={}", ambit_e2e::bed_node::MAX_NODES);
    }
    Ok(nodes)
}

struct Suite {
    mode: Mode,
    // Dropped first (see Drop): the agents' pins go before the API server and the bed.
    agent: Mutex<Option<RunningAgent>>,
    /// The agents of nodes 2.. (none in a one-node bed).
    other_agents: Mutex<Vec<RunningAgent>>,
    api: Option<BedApiServer>,
    bed: TestBed,
}

impl Suite {
    fn start(dir: &Path, mode: Mode) -> Result<Suite> {
        let nodes = if mode == Mode::Mesh { selected_nodes()?.max(MESH_NODES) } else { selected_nodes()? };
        let bed = TestBed::with_options(BedOptions { nodes, spread_deployments: nodes > 1, ..BedOptions::default() })?;
        let base = std::fs::read_to_string(dir.join("base-manifests.yaml")).context("reading base-manifests.yaml")?;
        bed.apply_yaml(&base)?;
        let (api, options) = match mode {
            Mode::Standalone => {
                for ns in MESH_NAMESPACES {
                    bed.enroll_namespace(ns)?;
                }
                (None, AgentOptions::default())
            }
            Mode::Mesh => {
                for ns in MESH_NAMESPACES {
                    bed.enroll_namespace(ns)?;
                }
                let ca = ambit_e2e::MeshCa::create(&bed.scratch_dir().join("mesh-ca"))?;
                (None, AgentOptions { extra_args: ca.agent_args(), ..AgentOptions::default() })
            }
            Mode::Kubernetes => {
                let api = BedApiServer::start(&bed)?;
                api.sync()?;
                let kubectl = Kubectl::new(&bed, &api)?;
                for ns in MESH_NAMESPACES {
                    kubectl.label_namespace(ns, MESH_LABEL_ARG)?;
                }
                let options = AgentOptions { mode: AgentMode::Kubernetes { api_server: api.url() }, ..AgentOptions::default() };
                (Some(api), options)
            }
        };
        let agent = RunningAgent::start(&bed, &options)?;
        let others = (2..=nodes).map(|node| RunningAgent::start_on(&bed, node, &options)).collect::<Result<Vec<_>>>()?;
        Ok(Suite { mode, agent: Mutex::new(Some(agent)), other_agents: Mutex::new(others), api, bed })
    }

    fn agent_log_tail(&self) -> String {
        let first = self.agent.lock().unwrap().as_ref().map(|a| a.log_tail(30)).unwrap_or_default();
        let others = self.other_agents.lock().unwrap();
        let others = others.iter().map(|a| format!("\nnode {} agent log tail:\n{}", a.node(), a.log_tail(30)));
        std::iter::once(first).chain(others).collect()
    }

    /// kubectl against the Kubernetes mode's API server (None in standalone mode).
    fn kubectl(&self) -> Result<Option<Kubectl<'_>>> {
        self.api.as_ref().map(|api| Kubectl::new(&self.bed, api)).transpose()
    }

    /// A test's manifests: `kubectl apply -f` in Kubernetes mode, into the bed's
    /// manifests directory in standalone mode.
    fn apply_manifests(&self, test: &str, manifests: &str) -> Result<()> {
        match self.kubectl()? {
            Some(kubectl) => kubectl.apply_file(&format!("{test}.yaml"), manifests).map(drop),
            None => self.bed.apply_yaml(manifests),
        }
    }

    fn delete_manifests(&self, test: &str, manifests: &str) -> Result<()> {
        match self.kubectl()? {
            Some(kubectl) => kubectl.delete_file(&format!("{test}.yaml")).map(drop),
            None => self.bed.delete_yaml(manifests),
        }
    }

    /// Kubernetes mode: every route in `manifests` is Accepted by Ambit in its status,
    /// as `kubectl get <kind> <name> -o jsonpath='{.status.parents}'` shows it.
    fn check_route_status(&self, manifests: &str) -> Result<()> {
        let Some(kubectl) = self.kubectl()? else { return Ok(()) };
        for doc in parse_documents(manifests)? {
            let kind = match doc.kind.as_str() {
                "HTTPRoute" => "httproute",
                "GRPCRoute" => "grpcroute",
                _ => continue,
            };
            kubectl.wait_route_accepted(kind, doc.ns(), &doc.name, ROUTE_STATUS_LIMIT)?;
        }
        Ok(())
    }
}

impl Suite {
    /// Mesh mode: calls did cross nodes through HBONE tunnels (outbound streams counted
    /// by the agents), so the suite passed over mutual TLS, not around it.
    fn check_tunnelled(&self) -> Result<()> {
        let mut streams = 0.0;
        let first = self.agent.lock().unwrap();
        let others = self.other_agents.lock().unwrap();
        for agent in first.iter().chain(others.iter()) {
            let (_, metrics) = agent.admin("GET", "/metrics")?;
            streams += metrics
                .lines()
                .filter(|l| l.starts_with("ambit_hbone_streams_total{") && l.contains("direction=\"outbound\"") && l.contains("tunnel=\"hbone\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        if streams == 0.0 {
            bail!("no call crossed nodes through an HBONE tunnel");
        }
        Ok(())
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        self.agent.lock().unwrap().take();
        self.other_agents.lock().unwrap().clear();
    }
}

/// The suite of the mode under test: started when a mode's first test runs, after the
/// previous mode's suite is torn down (one bed at a time).
struct Suites {
    dir: PathBuf,
    current: Mutex<Option<(Mode, Result<Arc<Suite>, String>)>>,
}

impl Suites {
    fn get(&self, mode: Mode) -> Result<Arc<Suite>, Failed> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().map(|(m, _)| *m) != Some(mode) {
            *current = None;
            let started =
                Suite::start(&self.dir, mode).map(Arc::new).map_err(|e| format!("{mode} conformance suite setup failed: {e:#}"));
            *current = Some((mode, started));
        }
        let (_, suite) = current.as_ref().expect("just set");
        suite.clone().map_err(Failed::from)
    }
}

/// The case's request, with a `{pod-ip:<app>-<version>}` host replaced by that pod's
/// IPv4 address in the bed.
fn request_for(suite: &Suite, case: &Case) -> Result<ClientRequest> {
    let r = &case.request;
    let host = placeholder::resolve_in_bed(&suite.bed, &r.host)?;
    let mut request = match r.protocol.as_str() {
        "grpc" => ClientRequest::grpc(host),
        scheme => {
            let path = if r.path.is_empty() { "/" } else { r.path.as_str() };
            ClientRequest::http(format!("{scheme}://{host}{path}"))
        }
    };
    if let Some(method) = &r.method {
        request = request.method(method.clone());
    }
    if r.h2c {
        request = request.h2c();
    }
    for (name, value) in &r.headers {
        request = request.header(name.clone(), placeholder::with_unique(value));
    }
    Ok(request.timeout(Duration::from_secs(5)))
}

fn client_pod(suite: &Suite, case: &Case) -> Result<ambit_e2e::Pod> {
    let labels = case.client.labels();
    let selector: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    suite.bed.first_pod(&case.client.namespace, &selector)
}

/// One attempt: the problems found (empty when the case passed).
fn attempt(suite: &Suite, case: &Case) -> Result<Vec<String>> {
    let pod = client_pod(suite, case)?;
    let output = pod.run_client(&request_for(suite, case)?)?;
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
        let request = request_for(suite, case)?.count(check.total_requests).concurrency(8);
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
        suite.apply_manifests(&file.name, &file.manifests).map_err(|e| Failed::from(format!("applying manifests: {e:#}")))?;
    }
    let mut failures = Vec::new();
    for case in &file.cases {
        if let Err(error) = run_case(suite, case) {
            failures.push(format!("{error:#}"));
        }
    }
    if failures.is_empty() && suite.mode == Mode::Kubernetes {
        if let Err(error) = suite.check_route_status(&file.manifests) {
            failures.push(format!("route status: {error:#}"));
        }
    }
    if failures.is_empty() && suite.mode == Mode::Mesh {
        if let Err(error) = suite.check_tunnelled() {
            failures.push(format!("mesh: {error:#}"));
        }
    }
    if !file.manifests.trim().is_empty() {
        if let Err(error) = suite.delete_manifests(&file.name, &file.manifests) {
            failures.push(format!("deleting manifests: {error:#}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of {} cases failed:\n{}\nagent log tail:\n{}", failures.len(), file.cases.len(), failures.join("\n"), suite.agent_log_tail()).into())
    }
}

/// The outcome of each test across the modes that ran it, for the report.
#[derive(Default)]
struct Outcomes {
    /// Test name → (outcome so far, how many modes ran it).
    tests: Mutex<std::collections::BTreeMap<String, (TestOutcome, usize)>>,
}

impl Outcomes {
    fn record(&self, file: &CaseFile, mode: Mode, passed: bool) {
        let mut tests = self.tests.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = TestOutcome {
            name: file.name.clone(),
            features: file.features.clone(),
            provisional: file.provisional,
            passed: true,
            modes: Default::default(),
        };
        let (outcome, runs) = tests.entry(file.name.clone()).or_insert((fresh, 0));
        outcome.passed &= passed;
        outcome.modes.insert(mode.to_string(), passed);
        *runs += 1;
    }

    /// The outcomes, if every test ran in each of `modes` modes (no filter, no skip).
    fn complete(&self, tests: usize, modes: usize) -> Option<Vec<TestOutcome>> {
        let map = self.tests.lock().unwrap_or_else(|e| e.into_inner());
        let complete = map.len() == tests && map.values().all(|(_, runs)| *runs == modes);
        complete.then(|| map.values().map(|(outcome, _)| outcome.clone()).collect())
    }
}

/// Writes the report and the per-test results of a complete run; when every mode ran on
/// the shared corpus, the committed ones must say the same (apart from the report's
/// date).
fn write_report(outcomes: &[TestOutcome], modes: &[Mode]) -> Result<()> {
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let all_modes = modes.len() == Mode::ALL.len();
    let info = RunInfo {
        implementation: report::ambit_implementation(),
        gateway_api_version: GATEWAY_API_VERSION.into(),
        gateway_api_channel: GATEWAY_API_CHANNEL.into(),
        mode: if all_modes { "default".into() } else { modes.iter().map(Mode::to_string).collect::<Vec<_>>().join("+") },
        date: report::rfc3339_utc(seconds),
    };
    let built = report::build(&info, outcomes);
    let results = report::results(outcomes);
    let path = report_file::output_path();
    let results_path = report_file::results_path(&path);
    report_file::write(&built, &path)?;
    report_file::write(&results, &results_path)?;
    eprintln!("conformance report written to {} (per-test results: {})", path.display(), results_path.display());
    // The committed report is of the shared corpus in every mode; another corpus
    // (AMBIT_CONFORMANCE_DIR) only gets its report written.
    if all_modes && std::env::var_os("AMBIT_CONFORMANCE_DIR").is_none() {
        let committed = report_file::repo_root().join(report_file::COMMITTED);
        report_file::check_committed(&built, &committed, &path)?;
        report_file::check_committed_results(&results, &report_file::results_path(&committed), &results_path)?;
    }
    Ok(())
}

/// Runs one test file in `mode` and records its outcome (None: Ambit's own test, not
/// part of the report).
fn trial(suites: &Suites, outcomes: Option<&Outcomes>, mode: Mode, path: &Path) -> Result<(), Failed> {
    let result = suites.get(mode).and_then(|suite| run_file(&suite, path));
    let Some(outcomes) = outcomes else { return result };
    match CaseFile::load(path) {
        Ok(file) => outcomes.record(&file, mode, result.is_ok()),
        Err(error) => return Err(format!("{error:#}").into()),
    }
    result
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
    let own_files = match case_files(&ambit_conformance_dir()) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("{error:#}");
            return ExitCode::FAILURE;
        }
    };
    let modes = match Mode::selected() {
        Ok(modes) => modes,
        Err(error) => {
            eprintln!("{error:#}");
            return ExitCode::FAILURE;
        }
    };
    let suites = Arc::new(Suites { dir, current: Mutex::new(None) });
    let outcomes = Arc::new(Outcomes::default());
    let mut trials = Vec::new();
    for &mode in &modes {
        for path in &files {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let (suites, outcomes, path) = (suites.clone(), outcomes.clone(), path.clone());
            trials.push(Trial::test(format!("{mode}::{name}"), move || trial(&suites, Some(&*outcomes), mode, &path)));
        }
        for path in &own_files {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let (suites, path) = (suites.clone(), path.clone());
            trials.push(Trial::test(format!("{mode}::ambit/{name}"), move || trial(&suites, None, mode, &path)));
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    // Tear the last bed down before exiting.
    suites.current.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(complete) = outcomes.complete(files.len(), modes.len()) else {
        eprintln!("conformance report not written: not every test ran in every mode");
        return conclusion.exit_code();
    };
    if let Err(error) = write_report(&complete, &modes) {
        eprintln!("conformance report: {error:#}");
        return ExitCode::FAILURE;
    }
    conclusion.exit_code()
}
