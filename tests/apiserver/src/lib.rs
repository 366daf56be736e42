//! An in-process Kubernetes API server for tests.
//!
//! No real kube-apiserver can be installed on the development machines, so the agent's
//! Kubernetes mode is tested against this server. It speaks the real wire protocol for
//! the resources the agent uses (plain HTTP on loopback):
//!
//! - lists (`GET /api/v1/pods?fieldSelector=spec.nodeName=X`, `/api/v1/namespaces`,
//!   `/api/v1/services`, `/apis/discovery.k8s.io/v1/endpointslices`,
//!   `/apis/gateway.networking.k8s.io/v1/{httproutes,grpcroutes}`, also per namespace)
//!   answering with `metadata.resourceVersion` (the `limit` parameter is ignored: one page);
//! - watches (`?watch=true&resourceVersion=N&allowWatchBookmarks=true&timeoutSeconds=T`)
//!   streaming newline-delimited `ADDED`/`MODIFIED`/`DELETED`/`BOOKMARK` events, and an
//!   `ERROR` event with code 410 ("too old resource version") for a compacted version;
//! - GET/POST/PUT/DELETE of single objects (Leases for leader election), with
//!   `409 Conflict` on a stale `metadata.resourceVersion` and `409 AlreadyExists`;
//! - PUT and merge-PATCH of `/status` on HTTPRoutes and GRPCRoutes, each recorded;
//! - what `kubectl` needs (`apply`, `label`, `get`, `delete`): legacy discovery
//!   (`/api`, `/apis`, `/api/v1`, `/apis/<group>/v1`), a minimal OpenAPI v3 that
//!   declares server-side field validation (`?fieldValidation=Strict` rejects unknown
//!   top-level fields), and PATCH of objects: JSON merge patch for every kind, strategic
//!   merge patch for the built-in kinds (the subset in `strategic.rs`).
//!
//! - requester identities: bearer tokens registered with [`FakeApiServer::add_token`]
//!   authenticate as a [`User`] (unknown tokens get 401; no token is anonymous and, as
//!   before, allowed everything: there is no authorization);
//! - CertificateSigningRequests (`certificates.k8s.io/v1`, cluster-scoped): create fills
//!   `spec.username/uid/groups/extra` from the requester; PUT of the `approval` and
//!   `status` subresources (see `csr.rs`); ConfigMaps.
//!
//! Not served: label selectors, `sendInitialEvents` (streaming lists), server-side apply
//! (kubectl 1.32's `apply` is client-side by default), JSON patch, aggregated discovery
//! (kubectl falls back to the legacy format), OpenAPI v2 and schemas, authorization (RBAC). A watch whose field selector stops matching a modified
//! object does not see a synthetic DELETED (the agent only filters pods by node, which
//! never changes).

mod auth;
mod csr;
mod discovery;
mod openapi;
mod resource;
mod selector;
mod server;
mod store;
mod strategic;

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use auth::{User, NODE_NAME_EXTRA};
pub use resource::Resource;
pub use store::ApiError;

use server::Shared;

/// One write to a route's status subresource.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusWrite {
    pub resource: Resource,
    pub namespace: String,
    pub name: String,
    /// `PUT` or `PATCH`.
    pub method: String,
    /// The route's whole `status` after the write.
    pub status: Value,
}

/// One request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Decoded query parameters in order.
    pub query: Vec<(String, String)>,
}

impl RecordedRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn is_watch(&self) -> bool {
        self.param("watch") == Some("true")
    }
}

/// Options for [`FakeApiServer::start_with`].
#[derive(Clone, Debug)]
pub struct Options {
    /// How often an idle watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self { bookmark_interval: Duration::from_secs(1) }
    }
}

struct Serving {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// A running fake API server on 127.0.0.1. Dropping it stops serving.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    serving: Mutex<Option<Serving>>,
}

impl FakeApiServer {
    /// Starts on an ephemeral loopback port with default options.
    pub async fn start() -> io::Result<Self> {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::new()),
            status_writes: Mutex::default(),
            requests: Mutex::default(),
            bookmark_interval: options.bookmark_interval,
            tokens: Mutex::default(),
        });
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let server = Self { shared, addr, serving: Mutex::new(None) };
        server.serve(listener);
        Ok(server)
    }

    /// Accepts `token` as a bearer token that authenticates `user` (e.g. a bound
    /// service-account token: [`User::service_account`] + [`User::bound_to_pod`]).
    pub fn add_token(&self, token: &str, user: User) {
        self.shared.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(token.to_string(), user);
    }

    /// Like [`write_kubeconfig`](Self::write_kubeconfig), with a bearer token as the user's credential.
    pub fn write_kubeconfig_with_token(&self, path: &Path, token: &str) -> io::Result<()> {
        self.write_kubeconfig(path)?;
        let text = std::fs::read_to_string(path)?.replace("  user: {}\n", &format!("  user:\n    token: {token}\n"));
        std::fs::write(path, text)
    }

    /// The address it listens on (kept across [`restart`](Self::restart)).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `ambit-agent run --api-server`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig pointing at this server (for clients that only take one).
    pub fn write_kubeconfig(&self, path: &Path) -> io::Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n",
            url = self.url()
        );
        std::fs::write(path, text)
    }

    /// Creates or replaces an object (its `apiVersion`/`kind` select the resource type),
    /// bumping resourceVersion, and generation when its spec changed. Returns it as stored.
    ///
    /// This is the cluster's side (controllers, kubelet): unlike a client's POST, a new
    /// object keeps a `metadata.uid` it already has (a test bed names pod cgroups after
    /// the uids it chose); without one it gets a fresh uid. A status left out is kept.
    pub fn apply(&self, object: Value) -> Result<Value, ApiError> {
        let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let resource = Resource::of(api_version, kind)
            .ok_or_else(|| ApiError::new(400, "BadRequest", format!("unsupported apiVersion/kind {api_version}/{kind}")))?;
        let mut object = object;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        self.shared.store().put_by(resource, object, false, store::Writer::Cluster)
    }

    /// Deletes an object; returns it if it existed. `namespace` is ignored for Namespaces.
    pub fn delete(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        self.shared.store().delete(resource, namespace, name)
    }

    /// The stored object.
    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        let namespace = if resource.namespaced() { namespace } else { "" };
        self.shared.store().get(resource, namespace, name)
    }

    /// The stored objects of a type (in one namespace, or all), sorted by namespace/name.
    pub fn list(&self, resource: Resource, namespace: Option<&str>) -> Vec<Value> {
        self.shared.store().list(resource, namespace)
    }

    /// The latest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// Forgets the event history (as etcd compaction does): a watch resuming from any
    /// version before now gets `410 Gone` and has to list again.
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    /// Every status write so far, oldest first.
    pub fn status_writes(&self) -> Vec<StatusWrite> {
        self.shared.status_writes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops serving: closes the listener and drops every connection (open watches end
    /// abruptly). Objects can still be changed through this handle meanwhile.
    pub async fn stop(&self) {
        let serving = self.serving.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(serving) = serving {
            serving.stop.cancel();
            let _ = serving.task.await;
        }
    }

    /// Serves again on the same port after [`stop`](Self::stop).
    pub async fn resume(&self) -> io::Result<()> {
        if self.serving.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return Ok(());
        }
        // The port was just released; retry briefly in case the kernel still holds it.
        let mut attempts = 0;
        let listener = loop {
            match bind(self.addr) {
                Ok(l) => break l,
                Err(e) if attempts < 50 => {
                    attempts += 1;
                    tracing::debug!(%e, "rebinding the fake API server");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.serve(listener);
        Ok(())
    }

    /// [`stop`](Self::stop) then [`resume`](Self::resume).
    pub async fn restart(&self) -> io::Result<()> {
        self.stop().await;
        self.resume().await
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let stop = CancellationToken::new();
        let shared = self.shared.clone();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let stream = tokio::select! {
                    _ = token.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let shared = shared.clone();
                let token = token.clone();
                connections.spawn(async move {
                    let conn_token = token.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        let token = conn_token.clone();
                        async move { Ok::<_, std::convert::Infallible>(server::handle(shared, req, token).await) }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = connection => {}
                    }
                });
            }
            drop(listener);
            connections.shutdown().await;
        });
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = Some(Serving { stop, task });
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(serving) = self.serving.lock().unwrap_or_else(|p| p.into_inner()).take() {
            serving.stop.cancel();
            serving.task.abort();
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}
