//! The authorization benchmark bed: one node with the mesh on (`--ca-dir`), so a
//! same-node call goes through the inbound gate where policies are enforced; an echo
//! pod behind a Service, a client pod and a stranger pod (a service account no rule
//! names), each with its own service account. The agent on CPU 0, the pods and the
//! load on CPU 1, as the other one-node scenarios.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ambit_e2e::{AgentOptions, ClientRequest, MeshCa, Pod, PodSpec, RunningAgent, TestBed};
use anyhow::{bail, Context, Result};

use super::procs;
use super::world::{LOAD_CPU, PROXY_CPU};

pub const NAMESPACE: &str = "bench-authz";
/// The path every measured request asks for (under the HTTP rules' prefix).
pub const PATH: &str = "/api/bench";
/// AuthorizationPolicies selecting the echo pod in the L4 and HTTP configurations.
pub const POLICIES: usize = 100;
/// How long a configuration may take to be applied.
const SETTLE: Duration = Duration::from_secs(20);

const BED_YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: bench-authz, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: bench-authz}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
"#;

/// What selects the echo pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policies {
    /// No policy: the pod is open.
    None,
    /// [`POLICIES`] ALLOW policies with L4 rules; only the last rule of the last one
    /// names the client.
    L4,
    /// The same with HTTP rules (GET under `/api`) on every rule.
    Http,
}

impl Policies {
    pub fn label(self) -> &'static str {
        match self {
            Policies::None => "no policy",
            Policies::L4 => "100 policies, L4 rules",
            Policies::Http => "100 policies, HTTP rules",
        }
    }
}

/// One rule naming `account` on the echo port (with HTTP conditions when `http`).
fn rule(account: &str, http: bool) -> String {
    let mut rule = format!(
        "  - sources: [{{type: ServiceAccount, serviceAccount: {{namespace: {NAMESPACE}, name: {account}}}}}]\n    networkAttributes: {{ports: [8080]}}\n"
    );
    if http {
        rule.push_str("    httpAttributes: {methods: [GET], paths: [{type: PathPrefix, value: /api}]}\n");
    }
    rule
}

/// The policies of `kind` (empty for [`Policies::None`]): policy `i` allows the
/// service account `caller-i`, and the last one also (in its last rule) the client.
pub fn policies_yaml(kind: Policies) -> String {
    let http = match kind {
        Policies::None => return String::new(),
        Policies::L4 => false,
        Policies::Http => true,
    };
    let mut docs = Vec::with_capacity(POLICIES);
    for i in 0..POLICIES {
        let mut rules = rule(&format!("caller-{i}"), http);
        if i == POLICIES - 1 {
            rules.push_str(&rule("client", http));
        }
        docs.push(format!(
            "apiVersion: ambit.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: bench-{i}, namespace: {NAMESPACE}}}\nspec:\n  targetRefs: [{{group: \"\", kind: Pod, selector: {{matchLabels: {{app: echo}}}}}}]\n  action: ALLOW\n  rules:\n{rules}"
        ));
    }
    docs.join("---\n")
}

pub struct AuthzWorld {
    /// Declared first: the agent stops (and detaches) before the bed goes.
    agent: RunningAgent,
    pub agent_pid: i32,
    pub client: Pod,
    stranger: Pod,
    policies: Policies,
    _ca: MeshCa,
    pub bed: TestBed,
}

impl AuthzWorld {
    /// Brings up the bed, its pods (pinned to CPU 1) and the agent with the mesh on.
    pub fn start() -> Result<AuthzWorld> {
        let bed = TestBed::new()?;
        let ca = MeshCa::create(&bed.scratch_dir().join("mesh-ca"))?;
        bed.apply_yaml(BED_YAML)?;
        let pod = |name: &str, app: &str, account: &str| {
            bed.add_pod(PodSpec::new(NAMESPACE, name).label("app", app).service_account(account))
        };
        let echo = pod("echo-0", "echo", "echo")?;
        let client = pod("client-0", "client", "client")?;
        let stranger = pod("stranger-0", "stranger", "stranger")?;
        for pod in [&echo, &client, &stranger] {
            for pid in procs::cgroup_pids(&pod.cgroup) {
                procs::pin(pid, LOAD_CPU)?;
            }
        }
        let options = AgentOptions { log_level: "warn".into(), extra_args: ca.agent_args(), ..AgentOptions::default() };
        let agent = RunningAgent::start(&bed, &options)?;
        for pod in [&client, &stranger] {
            agent.wait_enrolled(NAMESPACE, &pod.name, Duration::from_secs(10))?;
        }
        let pin_dir = format!(" {} ", agent.pin_dir().display());
        let agent_pid = procs::find_pid(&["ambit-agent", &pin_dir]).context("cannot find the agent's pid")?;
        procs::pin(agent_pid, PROXY_CPU)?;
        procs::raise_nofile(agent_pid)?;
        let world = AuthzWorld { agent, agent_pid, client, stranger, policies: Policies::None, _ca: ca, bed };
        world.wait_until("the mesh serves the client (certificates issued)", |w| Ok(w.status(&w.client, "GET")? == Some(200)))?;
        Ok(world)
    }

    /// How many stream (connection-level) decisions the agent has counted: one per new
    /// connection to a pod that policies select.
    pub fn stream_decisions(&self) -> Result<u64> {
        let (status, metrics) = self.agent.admin("GET", "/metrics")?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        Ok(metrics
            .lines()
            .filter(|l| l.starts_with("ambit_authz_decisions_total{") && l.contains("level=\"connection\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }

    /// The version of the configuration the agent serves (`ambit_config_version`): it
    /// grows by one per apply.
    pub fn config_version(&self) -> Result<u64> {
        let (status, metrics) = self.agent.admin("GET", "/metrics")?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("ambit_config_version "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .context("no ambit_config_version on /metrics")
    }

    /// `/ready`'s body (what is degraded, if anything).
    pub fn readiness(&self) -> Result<String> {
        Ok(self.agent.admin("GET", "/ready")?.1)
    }

    /// The echo Service's HTTP address.
    pub fn service(&self) -> Result<SocketAddr> {
        let ip = self.bed.service_ip(NAMESPACE, "echo").context("Service echo has no cluster IP")?;
        Ok(SocketAddr::new(ip.into(), 80))
    }

    /// One request from `pod` to the echo Service: its status (None: it failed).
    fn status(&self, pod: &Pod, method: &str) -> Result<Option<u16>> {
        let url = format!("http://{}{PATH}", self.service()?);
        let request = ClientRequest::http(url).method(method).timeout(Duration::from_secs(3));
        Ok(pod.run_client(&request)?.results.first().and_then(|r| r.status))
    }

    fn wait_until(&self, what: &str, check: impl Fn(&AuthzWorld) -> Result<bool>) -> Result<()> {
        let deadline = Instant::now() + SETTLE;
        loop {
            if check(self)? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("not after {} s: {what}", SETTLE.as_secs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Replaces the policies with `kind` and waits until the agent enforces them: the
    /// stranger is refused (403) under any policy and served without one; the client
    /// is served, and its POST refused exactly when HTTP rules apply.
    pub fn set_policies(&mut self, kind: Policies) -> Result<()> {
        if kind != self.policies {
            let old = policies_yaml(self.policies);
            if !old.is_empty() {
                self.bed.delete_yaml(&old)?;
            }
            let new = policies_yaml(kind);
            if !new.is_empty() {
                self.bed.apply_yaml(&new)?;
            }
            self.policies = kind;
        }
        let stranger = if kind == Policies::None { 200 } else { 403 };
        let post = if kind == Policies::Http { 403 } else { 200 };
        self.wait_until(&format!("{} enforced", kind.label()), |w| {
            Ok(w.status(&w.stranger, "GET")? == Some(stranger)
                && w.status(&w.client, "GET")? == Some(200)
                && w.status(&w.client, "POST")? == Some(post))
        })
    }
}
