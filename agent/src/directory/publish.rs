//! Publishing the directory: from the cluster's Pods to one `MeshNode` per node.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::model::{DirectoryEntry, MeshNode, MeshNodeSpec, MANAGED_BY};

const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// The directory of `pods`: per node name, its addresses and its pods with their own
/// IPs (not host-network, not finished, not opted out of the mesh), sorted so that equal inputs give equal output.
pub fn directory<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> BTreeMap<String, MeshNodeSpec> {
    let mut nodes: BTreeMap<String, (BTreeSet<String>, Vec<DirectoryEntry>)> = BTreeMap::new();
    for pod in pods {
        let Some((node, entry, host_ips)) = entry_of(pod) else { continue };
        let (addresses, workloads) = nodes.entry(node).or_default();
        addresses.extend(host_ips);
        workloads.push(entry);
    }
    nodes
        .into_iter()
        .map(|(node, (addresses, mut workloads))| {
            workloads.sort();
            (node, MeshNodeSpec { addresses: addresses.into_iter().collect(), workloads })
        })
        .collect()
}

fn entry_of(pod: &Pod) -> Option<(String, DirectoryEntry, Vec<String>)> {
    let spec = pod.spec.as_ref()?;
    let status = pod.status.as_ref()?;
    let node = spec.node_name.clone().filter(|n| !n.is_empty())?;
    let finished = status.phase.as_deref().is_some_and(|p| p == "Succeeded" || p == "Failed");
    let opted_out = crate::translate::pod_opted_out(pod);
    if spec.host_network.unwrap_or(false) || finished || opted_out || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let mut ips: Vec<String> = status.pod_ip.iter().cloned().chain(status.pod_ips.iter().flatten().map(|p| p.ip.clone())).collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return None;
    }
    let host_ips = status.host_ip.iter().cloned().chain(status.host_ips.iter().flatten().map(|h| h.ip.clone())).collect();
    let service_account = spec.service_account_name.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "default".into());
    let entry = DirectoryEntry { namespace: pod.metadata.namespace.clone().unwrap_or_default(), service_account, ips };
    Some((node, entry, host_ips))
}

/// Keeps the cluster's `MeshNode`s equal to a directory, writing only what changed.
pub struct Publisher {
    api: Api<MeshNode>,
    published: BTreeMap<String, MeshNodeSpec>,
}

impl Publisher {
    /// Reads the `MeshNode`s published before (by an earlier signer).
    pub async fn start(client: Client) -> kube::Result<Self> {
        let api: Api<MeshNode> = Api::all(client);
        let existing = api.list(&ListParams::default()).await?;
        let ours = |node: &MeshNode| node.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY_LABEL)).is_some_and(|v| v == MANAGED_BY);
        let published = existing
            .items
            .into_iter()
            .filter(ours)
            .filter_map(|node| Some((node.metadata.name.clone()?, node.spec)))
            .collect();
        Ok(Self { api, published })
    }

    /// Writes the nodes whose entry changed, creates new ones and deletes those no
    /// longer in `wanted`. Returns how many objects were written or deleted. On an
    /// error the rest is still attempted; the first error is returned and the failed
    /// objects are tried again on the next call.
    pub async fn publish(&mut self, wanted: &BTreeMap<String, MeshNodeSpec>) -> Result<usize, kube::Error> {
        let mut first_error = None;
        let mut written = 0;
        for (node, spec) in wanted {
            if self.published.get(node) == Some(spec) {
                continue;
            }
            match self.write(node, spec).await {
                Ok(()) => {
                    self.published.insert(node.clone(), spec.clone());
                    written += 1;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let gone: Vec<String> = self.published.keys().filter(|n| !wanted.contains_key(*n)).cloned().collect();
        for node in gone {
            match self.api.delete(&node, &DeleteParams::default()).await {
                Ok(_) => {
                    self.published.remove(&node);
                    written += 1;
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    self.published.remove(&node);
                    written += 1;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(written),
            Some(e) => Err(e),
        }
    }

    async fn write(&self, node: &str, spec: &MeshNodeSpec) -> Result<(), kube::Error> {
        let patch = json!({ "spec": spec });
        match self.api.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let mut object = MeshNode::new(node, spec.clone());
                object.metadata.labels = Some([(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string())].into());
                self.api.create(&PostParams::default(), &object).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// Watches every Pod (trimmed) and publishes the directory after each change,
    /// waiting `debounce` for more changes first, until `shutdown`. A failed write is
    /// retried every 5 s.
    pub async fn run(mut self, client: Client, debounce: Duration, shutdown: CancellationToken) {
        let (store, writer) = reflector::store();
        let events = watcher(Api::<Pod>::all(client), watcher::Config::default())
            .default_backoff()
            .modify(|pod| *pod = crate::kubernetes::strip::pod(std::mem::take(pod)))
            .reflect(writer);
        let mut events = std::pin::pin!(events);
        let (mut listed, mut dirty) = (false, false);
        let due = tokio::time::sleep(Duration::ZERO);
        let mut due = std::pin::pin!(due);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                event = events.next() => match event {
                    None => return,
                    Some(Err(error)) => tracing::warn!(%error, "watching pods for the mesh directory"),
                    Some(Ok(event)) => {
                        listed |= matches!(event, watcher::Event::InitDone);
                        if !dirty {
                            due.as_mut().reset(tokio::time::Instant::now() + debounce);
                        }
                        dirty = true;
                    }
                },
                _ = &mut due, if dirty && listed => {
                    let wanted = directory(store.state().iter().map(|p| p.as_ref()));
                    match self.publish(&wanted).await {
                        Ok(written) => {
                            dirty = false;
                            tracing::debug!(written, nodes = wanted.len(), "mesh directory published");
                        }
                        Err(error) => {
                            tracing::warn!(%error, "publishing the mesh directory failed; retrying in 5 s");
                            due.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(5));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, node: &str, sa: Option<&str>, ips: &[&str], host: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("p-{}", ips.first().unwrap_or(&"none")), "namespace": ns},
            "spec": {"nodeName": node, "serviceAccountName": sa, "containers": []},
            "status": {"podIPs": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(), "hostIP": host, "phase": "Running"},
        }))
        .unwrap()
    }

    #[test]
    fn groups_pods_by_node_with_their_identities() {
        let pods = [
            pod("shop", "n2", Some("catalog"), &["10.244.2.3", "fd44::3"], "10.77.0.2"),
            pod("shop", "n1", None, &["10.244.1.2"], "10.77.0.1"),
            pod("shop", "n2", Some("cart"), &["10.244.2.2"], "10.77.0.2"),
            pod("shop", "n3", None, &[], "10.77.0.3"),
        ];
        let dir = directory(pods.iter());
        assert_eq!(dir.keys().collect::<Vec<_>>(), ["n1", "n2"], "a pod without IPs publishes nothing");
        let n2 = &dir["n2"];
        assert_eq!(n2.addresses, ["10.77.0.2"]);
        let accounts: Vec<_> = n2.workloads.iter().map(|w| w.service_account.as_str()).collect();
        assert_eq!(accounts, ["cart", "catalog"]);
        assert_eq!(n2.workloads[1].ips, ["10.244.2.3", "fd44::3"]);
        assert_eq!(dir["n1"].workloads[0].service_account, "default");
    }
}
