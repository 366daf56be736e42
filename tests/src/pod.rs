//! Pods of the bed: what a test asks for ([`PodSpec`]) and the handle it
//! gets back ([`Pod`]) to run clients or other programs inside the pod.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::client::{ClientOutput, ClientRequest};

/// An ad-hoc pod for [`TestBed::add_pod`](crate::TestBed::add_pod).
#[derive(Debug, Clone)]
pub struct PodSpec {
    /// Namespace (created if it does not exist).
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Share the network namespace (and so the IPs) of this existing pod of the
    /// same bed, hostNetwork-style, with a cgroup of its own.
    pub share_netns_with: Option<(String, String)>,
    /// Run the echo server (default true; false for netns-sharing pods, whose
    /// ports are taken by the owner's server).
    pub serve: bool,
    /// The bed node (1-based) the pod runs on (default 1; a netns-sharing pod
    /// runs on its owner's node).
    pub node: usize,
    /// spec.serviceAccountName (default `default`).
    pub service_account: String,
}

impl PodSpec {
    /// A pod `namespace/name` running the echo server, no labels.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        PodSpec {
            namespace: namespace.into(),
            name: name.into(),
            labels: BTreeMap::new(),
            share_netns_with: None,
            serve: true,
            node: 1,
            service_account: "default".into(),
        }
    }
    /// Places the pod on bed node `node` (1-based).
    pub fn on_node(mut self, node: usize) -> Self {
        self.node = node;
        self
    }
    /// Sets spec.serviceAccountName.
    pub fn service_account(mut self, name: impl Into<String>) -> Self {
        self.service_account = name.into();
        self
    }
    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
    /// Shares the network namespace of pod `namespace/name`; turns the echo server off.
    pub fn share_netns_with(mut self, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        self.share_netns_with = Some((namespace.into(), name.into()));
        self.serve = false;
        self
    }
    /// Turns the echo server on or off.
    pub fn serve(mut self, serve: bool) -> Self {
        self.serve = serve;
        self
    }
}

/// A running pod: cheap to clone, valid while its bed keeps it.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name (what the echo reports as `pod`/`Hostname`).
    pub name: String,
    /// metadata.uid.
    pub uid: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// IPv4 pod IP.
    pub ipv4: Ipv4Addr,
    /// IPv6 pod IP.
    pub ipv6: Ipv6Addr,
    /// Named network namespace the pod's processes live in.
    pub netns: String,
    /// The container cgroup directory its processes run in.
    pub cgroup: PathBuf,
    /// Container id (64 hex).
    pub container_id: String,
    /// Whether the netns belongs to another pod (hostNetwork-style sharing).
    pub shares_netns: bool,
    /// The bed node (1-based) it runs on.
    pub node: usize,
    /// spec.nodeName (its node's name).
    pub node_name: String,
    /// spec.serviceAccountName.
    pub service_account: String,
    pub(crate) pod_bin: PathBuf,
    pub(crate) hosts_file: PathBuf,
}

impl Pod {
    /// A `Command` that runs `program` inside this pod (its cgroup, then its
    /// netns) through `ambit-pod exec`. Add arguments, environment and stdio, then spawn.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(&self.pod_bin);
        c.arg("--cgroup").arg(&self.cgroup).arg("--netns").arg(&self.netns);
        c.arg("exec").arg("--").arg(program);
        c
    }

    /// Spawns `program args...` inside the pod (see [`Pod::command`]).
    pub fn spawn<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Result<Child>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(program);
        c.args(args);
        c.spawn().context("spawning a process in a pod")
    }

    /// The `ambit-pod client` command for `args`, with the pod's namespace and the bed's hosts file.
    pub fn client_command(&self, args: &[String]) -> Command {
        let mut c = Command::new(&self.pod_bin);
        c.arg("--cgroup").arg(&self.cgroup).arg("--netns").arg(&self.netns).arg("client");
        c.arg("--namespace").arg(&self.namespace).arg("--hosts").arg(&self.hosts_file);
        c.args(args);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    /// Runs the echo client inside the pod and returns its report.
    pub fn run_client(&self, req: &ClientRequest) -> Result<ClientOutput> {
        self.run_client_args(&req.to_args())
    }

    /// Runs the echo client with raw `ambit-pod client` arguments.
    pub fn run_client_args(&self, args: &[String]) -> Result<ClientOutput> {
        let out = self.client_command(args).output().context("running ambit-pod client")?;
        parse_client_output(&out.stdout, &out.stderr, out.status.success())
    }

    /// Runs `ambit-pod abuse` (a misbehaving client) inside the pod against `to`.
    pub fn run_abuse(&self, kind: &str, to: std::net::SocketAddr, limit: std::time::Duration) -> Result<crate::abuse_client::AbuseReport> {
        let out = Command::new(&self.pod_bin)
            .arg("--cgroup")
            .arg(&self.cgroup)
            .arg("--netns")
            .arg(&self.netns)
            .args(["abuse", "--kind", kind, "--to", &to.to_string(), "--limit-ms", &limit.as_millis().to_string()])
            .stdin(Stdio::null())
            .output()
            .context("running ambit-pod abuse")?;
        if !out.status.success() {
            bail!("ambit-pod abuse failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("ambit-pod abuse printed no valid report: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Async form of [`Pod::run_client`] (tokio), for tests that run many clients at once.
    pub async fn run_client_async(&self, req: &ClientRequest) -> Result<ClientOutput> {
        let cmd = tokio::process::Command::from(self.client_command(&req.to_args()));
        let mut cmd = cmd;
        let out = cmd.output().await.context("running ambit-pod client")?;
        parse_client_output(&out.stdout, &out.stderr, out.status.success())
    }
}

fn parse_client_output(stdout: &[u8], stderr: &[u8], ok: bool) -> Result<ClientOutput> {
    if !ok {
        bail!(
            "ambit-pod client failed: {}{}",
            String::from_utf8_lossy(stderr),
            String::from_utf8_lossy(stdout)
        );
    }
    serde_json::from_slice(stdout).with_context(|| {
        format!(
            "ambit-pod client printed no valid report: {}\nstderr: {}",
            String::from_utf8_lossy(stdout),
            String::from_utf8_lossy(stderr)
        )
    })
}
