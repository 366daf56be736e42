//! The watch → ClusterState → translation pipeline against the in-test API server.

#[path = "support/kube.rs"]
mod support;

use std::time::Duration;

use ambit_agent::cluster::ObjectKey;
use ambit_agent::kubernetes::{ClusterFeed, FeedOptions};
use ambit_fake_apiserver::{FakeApiServer, Resource};
use support::*;

fn options() -> FeedOptions {
    FeedOptions { node_name: Some(NODE.to_string()), debounce: Duration::from_millis(50) }
}

async fn seeded() -> FakeApiServer {
    let server = FakeApiServer::start().await.unwrap();
    server.apply(namespace("shop", false)).unwrap();
    server.apply(pod("shop", "web-1", "uid-web-1", NODE)).unwrap();
    server.apply(pod("shop", "web-2", "uid-web-2", "node-b")).unwrap();
    server.apply(service("shop", "api", "10.96.0.10")).unwrap();
    server.apply(endpoint_slice("shop", "api", "10.0.0.9")).unwrap();
    server.apply(http_route("shop", "api-route", "api", "/v1")).unwrap();
    server
}

#[tokio::test]
async fn follows_namespace_pod_and_route_changes() {
    let server = seeded().await;
    let mut feed = ClusterFeed::start(client(&server).await, options());
    let first = feed.next().await.unwrap();
    // Only this node's pod, requested with a field selector.
    assert_eq!(first.pods.keys().cloned().collect::<Vec<_>>(), vec![ObjectKey::new("shop", "web-1")]);
    let pod_requests: Vec<_> = server.requests().into_iter().filter(|r| r.path == "/api/v1/pods").collect();
    assert!(!pod_requests.is_empty());
    assert!(pod_requests.iter().all(|r| r.param("fieldSelector") == Some("spec.nodeName=node-a")), "{pod_requests:?}");
    assert!(pod_requests.iter().any(|r| r.is_watch() && r.param("allowWatchBookmarks") == Some("true")));
    // Stored objects are trimmed.
    let stored = &first.pods[&ObjectKey::new("shop", "web-1")];
    assert!(stored.metadata.managed_fields.is_none() && stored.metadata.annotations.is_none());
    assert!(stored.spec.as_ref().unwrap().containers.is_empty());
    assert_eq!(first.services.len(), 1);
    assert_eq!(first.endpoint_slices.len(), 1);
    assert_eq!(first.http_routes.len(), 1);
    assert!(!first.namespace_enrolled("shop"));
    assert!(translate(&first).enrolled_cgroups.is_empty());

    // Enrolling the namespace enrolls the pod.
    server.apply(namespace("shop", true)).unwrap();
    let enrolled = wait_for(&mut feed, "namespace enrolled", |s| s.namespace_enrolled("shop")).await;
    assert_eq!(translate(&enrolled).enrolled_cgroups.len(), 1);
    let status = &translate(&enrolled).route_status;
    assert_eq!(status.len(), 1);
    assert!(status[0].ok(), "{status:?}");

    // A second pod on this node appears; the other node's never does.
    server.apply(pod("shop", "web-3", "uid-web-3", NODE)).unwrap();
    server.apply(pod("shop", "web-4", "uid-web-4", "node-b")).unwrap();
    let two = wait_for(&mut feed, "web-3", |s| s.pods.contains_key(&ObjectKey::new("shop", "web-3"))).await;
    assert_eq!(translate(&two).enrolled_cgroups.len(), 2);
    assert!(!two.pods.contains_key(&ObjectKey::new("shop", "web-4")));
    server.delete(Resource::Pods, "shop", "web-1").unwrap();
    let one = wait_for(&mut feed, "web-1 gone", |s| !s.pods.contains_key(&ObjectKey::new("shop", "web-1"))).await;
    assert_eq!(translate(&one).enrolled_cgroups.len(), 1);

    // Route changed (generation 2), then deleted.
    server.apply(http_route("shop", "api-route", "api", "/v2")).unwrap();
    let key = ObjectKey::new("shop", "api-route");
    let changed = wait_for(&mut feed, "route generation 2", |s| s.http_routes.get(&key).and_then(|r| r.metadata.generation) == Some(2)).await;
    assert_eq!(translate(&changed).route_status[0].generation, Some(2));
    server.delete(Resource::HttpRoutes, "shop", "api-route").unwrap();
    let gone = wait_for(&mut feed, "route deleted", |s| s.http_routes.is_empty()).await;
    assert!(translate(&gone).route_status.is_empty());

    // Namespace label removed: nothing enrolled.
    server.apply(namespace("shop", false)).unwrap();
    let plain = wait_for(&mut feed, "namespace unenrolled", |s| !s.namespace_enrolled("shop")).await;
    assert!(translate(&plain).enrolled_cgroups.is_empty());
}

/// TLSRoutes and TCPRoutes are not served by this API server (as on a cluster without
/// the experimental CRDs): the feed keeps retrying them with backoff, which is not a
/// re-list of what it has.
fn unserved(path: &str) -> bool {
    path.contains("/tlsroutes") || path.contains("/tcproutes")
}

#[tokio::test]
async fn nothing_is_missed_across_an_api_server_restart() {
    let server = seeded().await;
    let mut feed = ClusterFeed::start(client(&server).await, options());
    feed.next().await.unwrap();
    let lists_before = server.requests().iter().filter(|r| !r.is_watch() && !unserved(&r.path)).count();

    server.stop().await;
    server.apply(pod("shop", "late", "uid-late", NODE)).unwrap();
    server.delete(Resource::HttpRoutes, "shop", "api-route").unwrap();
    server.apply(namespace("shop", true)).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.resume().await.unwrap();

    let after = wait_for(&mut feed, "changes made while down", |s| {
        s.pods.contains_key(&ObjectKey::new("shop", "late")) && s.http_routes.is_empty() && s.namespace_enrolled("shop")
    })
    .await;
    assert_eq!(after.pods.len(), 2);
    // Resumed from the last resourceVersion: the history was there, no re-list needed.
    let lists_after = server.requests().iter().filter(|r| !r.is_watch() && !unserved(&r.path)).count();
    assert_eq!(lists_before, lists_after, "a restart with history intact should not re-list");
}

#[tokio::test]
async fn gone_410_relists_and_drops_deleted_objects() {
    let server = seeded().await;
    let mut feed = ClusterFeed::start(client(&server).await, options());
    feed.next().await.unwrap();
    let lists_before = server.requests().iter().filter(|r| !r.is_watch() && !unserved(&r.path)).count();

    // While down: changes, then the history is compacted, so every watch resuming from
    // its old resourceVersion gets 410 Gone and must list again.
    server.stop().await;
    server.delete(Resource::Pods, "shop", "web-1").unwrap();
    server.apply(pod("shop", "web-5", "uid-web-5", NODE)).unwrap();
    server.delete(Resource::Services, "shop", "api").unwrap();
    server.compact();
    server.resume().await.unwrap();

    let after = wait_for(&mut feed, "re-listed state", |s| {
        s.pods.keys().cloned().collect::<Vec<_>>() == vec![ObjectKey::new("shop", "web-5")] && s.services.is_empty()
    })
    .await;
    assert_eq!(after.http_routes.len(), 1);
    // Each watcher meets its 410 on its own schedule: wait (bounded) for all six re-lists.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut lists_after = server.requests().iter().filter(|r| !r.is_watch() && !unserved(&r.path)).count();
    while lists_after < lists_before + 6 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        lists_after = server.requests().iter().filter(|r| !r.is_watch() && !unserved(&r.path)).count();
    }
    assert!(lists_after >= lists_before + 6, "every kind should re-list after 410: {lists_before} -> {lists_after}");
}
