//! Following one object by name with `get` and `watch` only (no `list` permission,
//! which RBAC cannot limit as tightly): its state after each change, `None` while it
//! does not exist. Used for the agent's own CertificateSigningRequests and the trust
//! bundle ConfigMap.

use std::fmt::Debug;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{WatchEvent, WatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What a follower reports: the object's state, or why reading it failed (it retries).
pub type Update<K> = Result<Option<K>, String>;

/// A running follower; dropping it stops the task.
pub struct Follower<K> {
    pub updates: mpsc::Receiver<Update<K>>,
    task: JoinHandle<()>,
}

impl<K> Drop for Follower<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Follows `name` through `api`; a failed get or watch is reported and retried after `retry`.
pub fn follow<K>(api: Api<K>, name: &str, retry: Duration) -> Follower<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (tx, updates) = mpsc::channel(16);
    let name = name.to_string();
    let task = tokio::spawn(async move {
        loop {
            if let Err(error) = follow_once(&api, &name, &tx).await {
                if tx.send(Err(error)).await.is_err() {
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(retry).await;
        }
    });
    Follower { updates, task }
}

/// One get and the watch after it, until the watch ends (the next round gets the object
/// again rather than resuming: it is one object).
async fn follow_once<K>(api: &Api<K>, name: &str, tx: &mpsc::Sender<Update<K>>) -> Result<(), String>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let current = api.get_opt(name).await.map_err(|e| format!("get {name}: {e}"))?;
    let version = current.as_ref().and_then(|o| o.resource_version()).unwrap_or_else(|| "0".into());
    if tx.send(Ok(current)).await.is_err() {
        return Ok(());
    }
    let params = WatchParams::default().fields(&format!("metadata.name={name}")).timeout(290);
    let mut events = api.watch(&params, &version).await.map_err(|e| format!("watch {name}: {e}"))?.boxed();
    while let Some(event) = events.try_next().await.map_err(|e| format!("watch {name}: {e}"))? {
        let update = match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => Some(o),
            WatchEvent::Deleted(_) => None,
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => return Err(format!("watch {name}: {}", e.message)),
        };
        if tx.send(Ok(update)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}
