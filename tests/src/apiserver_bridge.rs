//! The bed as a Kubernetes cluster behind an API server: for the agent's Kubernetes
//! mode (`ambit-agent run`).
//!
//! The bed plays the cluster's part (it turns Deployments into pods, allocates cluster
//! IPs, builds EndpointSlices) and writes every object into its manifests directory. A
//! [`BedApiServer`] runs the in-test API server ([`ambit_fake_apiserver`]) and keeps its
//! objects equal to that directory: a poller reads the directory every
//! [`POLL_INTERVAL`], applies new and changed objects and deletes removed ones, so the
//! bed plays the cluster's part for the API server too. Tests that must not wait for
//! the next poll call [`BedApiServer::sync`].
//!
//! The server listens on 127.0.0.1 *inside the bed's node network namespace* (its
//! runtime's threads are created there), so only the agent on that node reaches it and
//! nothing is exposed outside the bed. Pass [`BedApiServer::url`] to
//! `ambit-agent run --api-server`. In a multi-node bed every other node gets a relay
//! on the same address ([`crate::apiserver_relay`]), so the URL works on every node.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ambit_fake_apiserver::{FakeApiServer, Resource};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::bed::TestBed;
use crate::netns;

/// How often the manifests directory is compared with the API server's objects.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The controllerName Ambit writes route status under.
pub const CONTROLLER_NAME: &str = "ambit.dev/mesh";

/// The in-test API server of one bed, mirroring the bed's manifests directory.
/// Dropping it stops the poller and the server.
pub struct BedApiServer {
    server: Arc<FakeApiServer>,
    mirror: Arc<Mutex<Mirror>>,
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
    // Last: the server's tasks run on it.
    runtime: Option<tokio::runtime::Runtime>,
}

/// One object the API server holds on behalf of a manifest file.
#[derive(Debug, Clone)]
struct Mirrored {
    content: String,
    resource: Resource,
    namespace: String,
    name: String,
}

/// What the API server holds, by manifest file name.
#[derive(Debug)]
struct Mirror {
    dir: PathBuf,
    objects: BTreeMap<String, Mirrored>,
    /// The last error the poller met (reported once per distinct error).
    last_error: Option<String>,
}

/// The order objects are created in (and deleted in reverse): namespaces first, routes last.
fn rank(resource: Resource) -> u8 {
    match resource {
        Resource::Namespaces => 0,
        Resource::Services | Resource::ConfigMaps => 1,
        Resource::Pods => 2,
        Resource::EndpointSlices => 3,
        Resource::HttpRoutes | Resource::GrpcRoutes | Resource::AuthorizationPolicies => 4,
        Resource::Leases | Resource::MeshNodes | Resource::CertificateSigningRequests => 5,
    }
}

impl Mirror {
    /// Reads the directory and brings the server in line with it.
    fn sync(&mut self, server: &FakeApiServer) -> Result<()> {
        let mut wanted: BTreeMap<String, String> = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir).with_context(|| format!("reading {}", self.dir.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".yaml") {
                continue;
            }
            match std::fs::read_to_string(entry.path()) {
                Ok(content) => {
                    wanted.insert(name, content);
                }
                // Removed between listing and reading: gone.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", entry.path().display())),
            }
        }
        let mut upserts: Vec<(String, Mirrored, Value)> = Vec::new();
        for (file, content) in &wanted {
            if self.objects.get(file).is_some_and(|m| &m.content == content) {
                continue;
            }
            let (mirrored, object) = parse(content).with_context(|| format!("manifest {file}"))?;
            upserts.push((file.clone(), mirrored, object));
        }
        let mut removals: Vec<(String, Mirrored)> = self
            .objects
            .iter()
            .filter(|(file, _)| !wanted.contains_key(*file))
            .map(|(f, m)| (f.clone(), m.clone()))
            .collect();
        // A file whose object changed identity (it never does in the bed) is a delete plus a create.
        for (file, new, _) in &upserts {
            if let Some(old) = self.objects.get(file) {
                if (old.resource, &old.namespace, &old.name) != (new.resource, &new.namespace, &new.name) {
                    removals.push((file.clone(), old.clone()));
                }
            }
        }
        upserts.sort_by_key(|(_, m, _)| rank(m.resource));
        removals.sort_by_key(|(_, m)| std::cmp::Reverse(rank(m.resource)));
        for (file, old) in removals {
            server.delete(old.resource, &old.namespace, &old.name);
            self.objects.remove(&file);
        }
        for (file, mirrored, object) in upserts {
            server.apply(object).map_err(|e| anyhow!("applying {file} to the API server: {} {}", e.code, e.message))?;
            self.objects.insert(file, mirrored);
        }
        Ok(())
    }
}

/// Parses one manifest file (one object).
fn parse(content: &str) -> Result<(Mirrored, Value)> {
    let object: Value = serde_yaml::from_str(content).context("parsing YAML")?;
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let resource = Resource::of(api_version, kind)
        .ok_or_else(|| anyhow!("the in-test API server does not serve {api_version}/{kind}"))?;
    let name = object["metadata"]["name"].as_str().context("no metadata.name")?.to_owned();
    let namespace = if resource.namespaced() {
        object["metadata"]["namespace"].as_str().unwrap_or("default").to_owned()
    } else {
        String::new()
    };
    Ok((Mirrored { content: content.to_owned(), resource, namespace, name }, object))
}

/// Builds a tokio runtime whose threads live in the named network namespace: the
/// building thread enters it first, and threads inherit the namespace of the thread
/// that creates them.
fn runtime_in_netns(name: &str) -> Result<tokio::runtime::Runtime> {
    let file = File::open(netns::netns_path(name)).with_context(|| format!("opening netns {name}"))?;
    let name = name.to_owned();
    std::thread::spawn(move || -> Result<tokio::runtime::Runtime> {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("setns into {name}"))?;
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ambit-bed-apiserver")
            .enable_all()
            .build()
            .context("building the API server's runtime")
    })
    .join()
    .map_err(|_| anyhow!("the API server's setup thread panicked"))?
}

impl BedApiServer {
    /// Starts the API server in `bed`'s node namespace, loads the bed's objects into it
    /// and starts the poller.
    pub fn start(bed: &TestBed) -> Result<BedApiServer> {
        let runtime = runtime_in_netns(bed.node_netns())?;
        // Started (and bound) on a runtime thread, inside the node namespace.
        let server = run_on(&runtime, FakeApiServer::start())?.context("starting the in-test API server")?;
        let server = Arc::new(server);
        for node in bed.nodes().iter().skip(1) {
            crate::apiserver_relay::start(&runtime, node.netns(), server.addr().port())?;
        }
        let mirror = Arc::new(Mutex::new(Mirror {
            dir: bed.manifests_dir().to_path_buf(),
            objects: BTreeMap::new(),
            last_error: None,
        }));
        mirror.lock().unwrap_or_else(|e| e.into_inner()).sync(&server)?;
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (server, mirror, stop) = (server.clone(), mirror.clone(), stop.clone());
            std::thread::Builder::new().name("ambit-bed-apiserver-sync".into()).spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(POLL_INTERVAL);
                    let mut mirror = mirror.lock().unwrap_or_else(|e| e.into_inner());
                    match mirror.sync(&server) {
                        Ok(()) => mirror.last_error = None,
                        Err(error) => {
                            let error = format!("{error:#}");
                            if mirror.last_error.as_ref() != Some(&error) {
                                eprintln!("ambit test bed API server: {error}");
                                mirror.last_error = Some(error);
                            }
                        }
                    }
                }
            })?
        };
        Ok(BedApiServer { server, mirror, stop, poller: Some(poller), runtime: Some(runtime) })
    }

    /// `http://127.0.0.1:PORT`: reachable from the bed's node namespaces only.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The API server itself (its objects, status writes and requests).
    pub fn server(&self) -> &FakeApiServer {
        &self.server
    }

    /// Brings the API server in line with the manifests directory now.
    pub fn sync(&self) -> Result<()> {
        self.mirror.lock().unwrap_or_else(|e| e.into_inner()).sync(&self.server)
    }

    /// Restarts the API server on the same port (open watches break off).
    pub fn restart(&self) -> Result<()> {
        let server = self.server.clone();
        let runtime = self.runtime.as_ref().context("runtime gone")?;
        run_on(runtime, async move { server.restart().await })?.context("restarting the in-test API server")
    }

    /// Waits until every `status.parents[]` entry of controllerName `ambit.dev/mesh` of
    /// route `namespace/name` says `Accepted=True` for the route's current generation
    /// (and there is at least one). Returns the route's status.
    pub fn wait_route_accepted(&self, resource: Resource, namespace: &str, name: &str, limit: Duration) -> Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let route = self.server.get(resource, namespace, name);
            let problem = match &route {
                None => format!("{resource} {namespace}/{name} is not in the API server"),
                Some(route) => match accepted_problem(route) {
                    None => return Ok(route["status"].clone()),
                    Some(problem) => problem,
                },
            };
            if Instant::now() > deadline {
                bail!("{resource} {namespace}/{name}: {problem} after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Why `route`'s status does not (yet) say Accepted=True from Ambit; None when it does.
pub fn accepted_problem(route: &Value) -> Option<String> {
    let generation = route["metadata"]["generation"].as_i64();
    let parents = route["status"]["parents"].as_array().map(Vec::as_slice).unwrap_or_default();
    let ours: Vec<&Value> = parents.iter().filter(|p| p["controllerName"] == CONTROLLER_NAME).collect();
    if ours.is_empty() {
        return Some(format!("no status.parents entry of {CONTROLLER_NAME}: status {}", route["status"]));
    }
    for parent in ours {
        let conditions = parent["conditions"].as_array().map(Vec::as_slice).unwrap_or_default();
        let Some(accepted) = conditions.iter().find(|c| c["type"] == "Accepted") else {
            return Some(format!("no Accepted condition for parent {}", parent["parentRef"]));
        };
        if accepted["status"] != "True" {
            return Some(format!("parent {} is not accepted: {accepted}", parent["parentRef"]));
        }
        if accepted["observedGeneration"].as_i64() != generation {
            return Some(format!("Accepted is for generation {}, the route is at {generation:?}", accepted["observedGeneration"]));
        }
    }
    None
}

/// Runs `future` on a thread of `runtime` (in its network namespace) and waits for it.
fn run_on<F>(runtime: &tokio::runtime::Runtime, future: F) -> Result<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv_timeout(Duration::from_secs(30)).map_err(|_| anyhow!("the API server's runtime did not answer"))
}

impl Drop for BedApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
        if let Some(runtime) = self.runtime.take() {
            // Stop serving inside the runtime, then drop it without blocking on stray tasks.
            let server = self.server.clone();
            let _ = run_on(&runtime, async move { server.stop().await });
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

