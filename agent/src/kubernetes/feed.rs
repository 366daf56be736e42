//! The cluster feed: one watcher per kind feeding one [`ClusterState`], published
//! (debounced) once every kind finished its initial list, and after each change.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use gateway_api::apis::experimental::tcproutes::TcpRoute;
use gateway_api::apis::experimental::tlsroutes::TlsRoute;
use gateway_api::apis::experimental::grpcroutes::GrpcRoute;
use gateway_api::apis::experimental::httproutes::HttpRoute;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::rbac::{self, WatchPermissions};
use super::strip;
use crate::cluster::{ClusterObject, ClusterState, ObjectKind};
use crate::authz::PolicyObject;
use crate::directory::MeshNode;

/// How the feed watches.
#[derive(Clone, Debug)]
pub struct FeedOptions {
    /// Only pods with `spec.nodeName` equal to this are watched (None: all pods).
    pub node_name: Option<String>,
    /// After a change, wait this long for more before publishing.
    pub debounce: Duration,
}

impl Default for FeedOptions {
    fn default() -> Self {
        Self { node_name: None, debounce: Duration::from_millis(100) }
    }
}

/// A published view of the cluster.
pub type Snapshot = Arc<ClusterState>;

/// The running watchers. Dropping it stops them.
pub struct ClusterFeed {
    snapshots: watch::Receiver<Option<Snapshot>>,
    task: JoinHandle<()>,
}

/// A failed list or watch: the message, and whether the API server does not serve the
/// resource at all (404: its CRD is not installed).
#[derive(Debug)]
struct WatchFailure {
    message: String,
    resource_missing: bool,
}

type KindEvent = (ObjectKind, Result<watcher::Event<ClusterObject>, WatchFailure>);

/// Kinds from the Gateway API experimental channel: a cluster without their CRDs has
/// none of them, which must not hold up the other kinds.
fn optional(kind: ObjectKind) -> bool {
    matches!(kind, ObjectKind::TlsRoute | ObjectKind::TcpRoute | ObjectKind::MeshNode | ObjectKind::AuthorizationPolicy)
}

impl ClusterFeed {
    /// Starts watching Namespaces, this node's Pods, Services, EndpointSlices, HTTPRoutes,
    /// GRPCRoutes, TLSRoutes and TCPRoutes. The watches re-list after `410 Gone` and
    /// reconnect with backoff after errors (including the API server restarting). When
    /// the API server does not serve TLSRoutes or TCPRoutes (their experimental CRDs are
    /// not installed), that kind counts as listed and empty, and is retried with backoff.
    pub fn start(client: Client, options: FeedOptions) -> Self {
        let pods = match &options.node_name {
            Some(node) => watcher::Config::default().fields(&format!("spec.nodeName={node}")),
            None => watcher::Config::default(),
        };
        let mut streams: SelectAll<BoxStream<'static, KindEvent>> = SelectAll::new();
        streams.push(watch_kind::<Namespace>(&client, watcher::Config::default(), ObjectKind::Namespace, rbac::NAMESPACES, ClusterObject::Namespace));
        streams.push(watch_kind::<Pod>(&client, pods, ObjectKind::Pod, rbac::PODS, ClusterObject::Pod));
        streams.push(watch_kind::<Service>(&client, watcher::Config::default(), ObjectKind::Service, rbac::SERVICES, ClusterObject::service));
        streams.push(watch_kind::<EndpointSlice>(
            &client,
            watcher::Config::default(),
            ObjectKind::EndpointSlice,
            rbac::ENDPOINT_SLICES,
            ClusterObject::endpoint_slice,
        ));
        streams.push(watch_kind::<HttpRoute>(&client, watcher::Config::default(), ObjectKind::HttpRoute, rbac::HTTP_ROUTES, ClusterObject::HttpRoute));
        streams.push(watch_kind::<GrpcRoute>(&client, watcher::Config::default(), ObjectKind::GrpcRoute, rbac::GRPC_ROUTES, ClusterObject::GrpcRoute));
        streams.push(watch_kind::<TlsRoute>(&client, watcher::Config::default(), ObjectKind::TlsRoute, rbac::TLS_ROUTES, ClusterObject::TlsRoute));
        streams.push(watch_kind::<TcpRoute>(&client, watcher::Config::default(), ObjectKind::TcpRoute, rbac::TCP_ROUTES, ClusterObject::TcpRoute));
        streams.push(watch_kind::<MeshNode>(&client, watcher::Config::default(), ObjectKind::MeshNode, rbac::MESH_NODES, ClusterObject::mesh_node));
        streams.push(watch_kind::<PolicyObject>(
            &client,
            watcher::Config::default(),
            ObjectKind::AuthorizationPolicy,
            rbac::AUTHORIZATION_POLICIES,
            ClusterObject::AuthorizationPolicy,
        ));
        let (tx, snapshots) = watch::channel(None);
        let task = tokio::spawn(run(streams, options.debounce, tx));
        Self { snapshots, task }
    }

    /// A receiver of published snapshots (None until the initial lists are complete).
    pub fn subscribe(&self) -> watch::Receiver<Option<Snapshot>> {
        self.snapshots.clone()
    }

    /// Waits for a snapshot newer than the last one returned; None if the feed stopped.
    pub async fn next(&mut self) -> Option<Snapshot> {
        loop {
            self.snapshots.changed().await.ok()?;
            if let Some(snapshot) = self.snapshots.borrow_and_update().clone() {
                return Some(snapshot);
            }
        }
    }
}

impl Drop for ClusterFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn watch_kind<K>(
    client: &Client,
    config: watcher::Config,
    kind: ObjectKind,
    permissions: WatchPermissions,
    wrap: fn(K) -> ClusterObject,
) -> BoxStream<'static, KindEvent>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    watcher(api, config)
        .default_backoff()
        .map(move |result| {
            let event = match result {
                Ok(event) => Ok(match event {
                    watcher::Event::Apply(o) => watcher::Event::Apply(strip::object(wrap(o))),
                    watcher::Event::Delete(o) => watcher::Event::Delete(wrap(o)),
                    watcher::Event::Init => watcher::Event::Init,
                    watcher::Event::InitApply(o) => watcher::Event::InitApply(strip::object(wrap(o))),
                    watcher::Event::InitDone => watcher::Event::InitDone,
                }),
                Err(error) => Err(WatchFailure {
                    resource_missing: resource_missing(&error),
                    message: format!("{error} (this needs {} and {})", permissions.list, permissions.watch),
                }),
            };
            (kind, event)
        })
        .boxed()
}

fn resource_missing(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status)) | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => {
            status.code == 404
        }
        _ => false,
    }
}

/// Per-kind initial-list progress.
#[derive(Default)]
struct Progress {
    synced: bool,
    /// Objects of a (re-)list in progress, stored as they arrive (only this kind's map
    /// is filled); they replace the kind's objects at InitDone.
    relisting: Option<ClusterState>,
}

const KINDS: usize = 10;

async fn run(mut streams: SelectAll<BoxStream<'static, KindEvent>>, debounce: Duration, tx: watch::Sender<Option<Snapshot>>) {
    let mut state = ClusterState::new();
    let mut progress: BTreeMap<ObjectKind, Progress> = BTreeMap::new();
    let mut publish_at: Option<tokio::time::Instant> = None;
    loop {
        let all_synced = progress.len() == KINDS && progress.values().all(|p| p.synced);
        tokio::select! {
            event = streams.next() => {
                let Some((kind, event)) = event else { return };
                let p = progress.entry(kind).or_default();
                let changed = match event {
                    Ok(event) => handle(&mut state, kind, p, event),
                    Err(failure) if failure.resource_missing && optional(kind) => {
                        // No CRD: none of this kind exist. Retried with backoff.
                        tracing::debug!(%kind, error = %failure.message, "resource not served; treating it as empty");
                        let had = !kind_fingerprint(&state, kind).is_empty();
                        state.replace_kind(kind, ClusterState::new());
                        let was_synced = std::mem::replace(&mut p.synced, true);
                        !was_synced || had
                    }
                    Err(failure) => {
                        tracing::warn!(%kind, error = %failure.message, "watch failed; retrying with backoff");
                        crate::metrics::watch_error();
                        false
                    }
                };
                let all_synced = progress.len() == KINDS && progress.values().all(|p| p.synced);
                let first = all_synced && tx.borrow().is_none();
                if all_synced && (changed || first) && publish_at.is_none() {
                    publish_at = Some(tokio::time::Instant::now() + if first { Duration::ZERO } else { debounce });
                }
            }
            _ = sleep_until(publish_at), if publish_at.is_some() && all_synced => {
                publish_at = None;
                tracing::debug!(objects = state.len(), "cluster state published");
                if tx.send(Some(Arc::new(state.clone()))).is_err() {
                    return;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Applies one watcher event; true when the store changed.
fn handle(state: &mut ClusterState, kind: ObjectKind, progress: &mut Progress, event: watcher::Event<ClusterObject>) -> bool {
    match event {
        watcher::Event::Init => {
            progress.relisting = Some(ClusterState::new());
            false
        }
        watcher::Event::InitApply(object) => {
            if let Err(error) = progress.relisting.get_or_insert_with(ClusterState::new).insert(object) {
                tracing::warn!(%kind, %error, "ignoring object");
            }
            false
        }
        watcher::Event::InitDone => {
            let listed = progress.relisting.take().unwrap_or_default();
            let before = kind_fingerprint(state, kind);
            state.replace_kind(kind, listed);
            let was_synced = std::mem::replace(&mut progress.synced, true);
            tracing::debug!(%kind, "initial list complete");
            !was_synced || before != kind_fingerprint(state, kind)
        }
        watcher::Event::Apply(object) => match state.insert(object) {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%kind, %error, "ignoring object");
                false
            }
        },
        watcher::Event::Delete(object) => state.remove(&object).unwrap_or(false),
    }
}

/// (key, resourceVersion) of every stored object of `kind`: equal before and after a
/// re-list when nothing changed meanwhile.
fn kind_fingerprint(state: &ClusterState, kind: ObjectKind) -> Vec<(String, Option<String>)> {
    fn fp<'a, K: std::fmt::Display + 'a, V: 'a>(
        m: impl Iterator<Item = (&'a K, &'a Arc<V>)>,
        version: impl Fn(&V) -> Option<&str>,
    ) -> Vec<(String, Option<String>)> {
        m.map(|(k, v)| (k.to_string(), version(v).map(str::to_owned))).collect()
    }
    fn meta<V: Resource>(v: &V) -> Option<&str> {
        v.meta().resource_version.as_deref()
    }
    match kind {
        ObjectKind::Namespace => fp(state.namespaces.iter(), meta),
        ObjectKind::Pod => fp(state.pods.iter(), meta),
        ObjectKind::Service => fp(state.services.iter(), |s| s.resource_version.as_deref()),
        ObjectKind::EndpointSlice => fp(state.endpoint_slices.iter(), |s| s.resource_version.as_deref()),
        ObjectKind::HttpRoute => fp(state.http_routes.iter(), meta),
        ObjectKind::GrpcRoute => fp(state.grpc_routes.iter(), meta),
        ObjectKind::TlsRoute => fp(state.tls_routes.iter(), meta),
        ObjectKind::TcpRoute => fp(state.tcp_routes.iter(), meta),
        ObjectKind::MeshNode => fp(state.mesh_nodes.iter(), |n| n.resource_version.as_deref()),
        ObjectKind::AuthorizationPolicy => fp(state.authorization_policies.iter(), meta),
    }
}
