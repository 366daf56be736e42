//! `kubectl` against the bed's in-test API server, run exactly as README's "Install on
//! a cluster" tells users to, plus `--kubeconfig`:
//!
//! ```sh
//! kubectl apply -f my-httproute.yaml
//! kubectl label namespace shop ambit.dev/mesh=enabled
//! kubectl get httproute my-route -o jsonpath='{.status.parents}'
//! ```
//!
//! The API server listens on 127.0.0.1 in the bed's node network namespace, so kubectl
//! runs there ([`TestBed::node_command`]). The kubeconfig is written per namespace (its
//! context's namespace is the one a command acts in, as after `kubectl config
//! set-context --current --namespace=...`), and kubectl's discovery cache goes to the
//! bed's scratch directory (`KUBECACHEDIR`). `kubectl` must be installed: its absence
//! is an error, never a skip.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::apiserver_bridge::{accepted_problem, BedApiServer};
use crate::bed::TestBed;

/// How long one kubectl command may take (the machine may be loaded).
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// kubectl for one bed's API server.
pub struct Kubectl<'a> {
    bed: &'a TestBed,
    url: String,
    dir: PathBuf,
}

impl<'a> Kubectl<'a> {
    pub fn new(bed: &'a TestBed, api: &BedApiServer) -> Result<Kubectl<'a>> {
        let dir = bed.scratch_dir().join("kubectl");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Kubectl { bed, url: api.url(), dir })
    }

    /// The kubeconfig whose context acts in `namespace` (written on first use).
    fn kubeconfig(&self, namespace: &str) -> Result<PathBuf> {
        let path = self.dir.join(format!("kubeconfig-{namespace}"));
        if !path.exists() {
            let text = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: bed\n  cluster:\n    server: {url}\nusers:\n- name: bed\n  user: {{}}\ncontexts:\n- name: bed\n  context:\n    cluster: bed\n    user: bed\n    namespace: {namespace}\ncurrent-context: bed\n",
                url = self.url
            );
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(path)
    }

    /// Runs `kubectl --kubeconfig <namespace's> args...` in the node; its stdout.
    pub fn run(&self, namespace: &str, args: &[&str]) -> Result<String> {
        let mut command = self.bed.node_command("kubectl")?;
        command.arg("--kubeconfig").arg(self.kubeconfig(namespace)?).args(args);
        command.env("KUBECACHEDIR", self.dir.join("cache"));
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = command.spawn().context("starting kubectl (is kubectl installed?)")?;
        let output = wait_output(child, COMMAND_LIMIT)?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!("kubectl {}: {}: {}{}", args.join(" "), output.status, String::from_utf8_lossy(&output.stderr), stdout);
        }
        Ok(stdout)
    }

    /// `kubectl apply -f <file>` with `yaml` written to a file named `name`.
    pub fn apply_file(&self, name: &str, yaml: &str) -> Result<String> {
        let path = self.dir.join(name);
        let mut file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        file.write_all(yaml.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        let path = path.to_string_lossy().into_owned();
        self.run("default", &["apply", "-f", &path])
    }

    /// `kubectl delete -f <file>` of a file written by [`Kubectl::apply_file`].
    pub fn delete_file(&self, name: &str) -> Result<String> {
        let path = self.dir.join(name).to_string_lossy().into_owned();
        self.run("default", &["delete", "-f", &path])
    }

    /// `kubectl label namespace <namespace> <label>` (`key=value`, or `key-` to remove).
    pub fn label_namespace(&self, namespace: &str, label: &str) -> Result<String> {
        self.run("default", &["label", "namespace", namespace, label])
    }

    /// `kubectl get <kind> <name> -o jsonpath='{.status.parents}'`, parsed (empty when
    /// the route has no status yet).
    pub fn route_parents(&self, kind: &str, namespace: &str, name: &str) -> Result<Value> {
        let out = self.run(namespace, &["get", kind, name, "-o", "jsonpath={.status.parents}"])?;
        if out.trim().is_empty() {
            return Ok(json!([]));
        }
        serde_json::from_str(&out).with_context(|| format!("parsing status.parents of {kind} {namespace}/{name}: {out}"))
    }

    /// Waits until the route's parents of controllerName `ambit.dev/mesh` say
    /// `Accepted=True` for its current generation, as read with kubectl. Returns them.
    pub fn wait_route_accepted(&self, kind: &str, namespace: &str, name: &str, limit: Duration) -> Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let parents = self.route_parents(kind, namespace, name)?;
            let generation = self.run(namespace, &["get", kind, name, "-o", "jsonpath={.metadata.generation}"])?;
            let route = json!({
                "metadata": {"generation": generation.trim().parse::<i64>().ok()},
                "status": {"parents": parents},
            });
            let Some(problem) = accepted_problem(&route) else { return Ok(route["status"]["parents"].clone()) };
            if Instant::now() > deadline {
                bail!("{kind} {namespace}/{name}: {problem} after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Waits for `child` to exit within `limit` (reading its output meanwhile), killing it
/// past that.
fn wait_output(child: std::process::Child, limit: Duration) -> Result<std::process::Output> {
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.context("reading kubectl's output"),
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet
            // (the waiting thread still holds it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            bail!("kubectl did not finish within {limit:?}")
        }
    }
}
