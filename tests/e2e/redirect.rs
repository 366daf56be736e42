//! The walking skeleton end to end: eBPF connect hooks redirect enrolled pods'
//! Service connections into the node proxy, which attributes each connection to its
//! pod from the kernel's records. Needs root; fails (never skips) without it.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use ambit_e2e::{ClientRequest, PodSpec};
use support::*;

#[test]
fn enrolled_pod_reaches_a_service_through_the_proxy_and_is_attributed() {
    let world = World::start(access_log_agent()).unwrap();
    let client = world.client("mesh-a", "client-a").unwrap();
    let vip = world.vip();

    let out = client.run_client(&ClientRequest::http("http://echo.server/hello")).unwrap();
    let r = out.only();
    assert_eq!(r.status, Some(200), "{r:?}\n{}", world.agent.log_tail(20));
    assert!(r.echo_pod().unwrap().starts_with("echo-"), "{r:?}");
    // getpeername() shows the Service address, not the proxy.
    assert_eq!(r.peer_addr.as_deref(), Some(format!("{vip}:80").as_str()));

    // The proxy attributes the connection from the kernel's record.
    let local = r.local_addr.clone().unwrap();
    let found = wait_until(Duration::from_secs(2), || {
        world.agent.access_log().iter().any(|e| e["kind"] == "connection" && e["client"] == local.as_str())
    });
    assert!(found.is_some(), "no connection event for {local}:\n{}", world.agent.log_tail(20));
    let events = world.agent.access_log();
    let event = events.iter().find(|e| e["kind"] == "connection" && e["client"] == local.as_str()).unwrap();
    assert_eq!(event["caller_pod"], "client-a");
    assert_eq!(event["caller_namespace"], "mesh-a");
    assert_eq!(event["dialled"], format!("{vip}:80"));

    // Opaque TCP on a port without appProtocol goes through too.
    let out = client.run_client(&ClientRequest::tcp("echo.server:9090", "ping-over-tcp")).unwrap();
    assert_eq!(out.only().status, Some(200), "{out:?}");
    assert_eq!(out.only().peer_addr.as_deref(), Some(format!("{vip}:9090").as_str()));
}

#[test]
fn ipv6_service_addresses_are_redirected_too() {
    let world = World::start(access_log_agent()).unwrap();
    let client = world.client("mesh-a", "client-v6").unwrap();
    let vip6 = world.bed.service_ipv6("server", "echo").expect("dual-stack service");
    let out = client.run_client(&ClientRequest::http("http://echo.server/v6").ipv6()).unwrap();
    let r = out.only();
    assert_eq!(r.status, Some(200), "{r:?}\n{}", world.agent.log_tail(20));
    assert_eq!(r.peer_addr.as_deref(), Some(format!("[{vip6}]:80").as_str()));
}

#[test]
fn non_enrolled_and_pod_ip_traffic_never_reaches_the_proxy() {
    let world = World::start(access_log_agent()).unwrap();
    let plain = world.client("plain", "outsider").unwrap();
    let enrolled = world.client("mesh-a", "insider").unwrap();

    // Not enrolled: the connect() is untouched, and with no kube-proxy in the bed a
    // cluster IP is unreachable.
    let out = plain.run_client(&ClientRequest::http("http://echo.server/").timeout(Duration::from_secs(2))).unwrap();
    assert!(out.only().error.is_some(), "a non-enrolled pod must not be proxied: {out:?}");

    // Pod IPs are not Services: direct, never redirected.
    let echo = world.bed.first_pod("server", &[("app", "echo")]).unwrap();
    let out = enrolled.run_client(&ClientRequest::http(format!("http://{}:8080/direct", echo.ipv4))).unwrap();
    let r = out.only();
    assert_eq!(r.status, Some(200), "{r:?}");
    assert_eq!(r.echo_caller_ip(), Some(enrolled.ipv4.to_string().as_str()));

    std::thread::sleep(Duration::from_millis(300));
    let events = world.agent.access_log();
    assert!(
        events.iter().all(|e| e["caller_pod"] != "outsider" && e["path"] != "/direct"),
        "the proxy saw traffic it must not see: {events:?}"
    );
    let counters = world.agent.redirect_dump().unwrap();
    assert!(counters["counters"]["skipped_not_enrolled"].as_u64().unwrap() >= 1, "{counters}");
}

#[test]
fn two_hundred_concurrent_connections_from_four_pods_are_attributed_without_mistakes() {
    let world = World::start(access_log_agent()).unwrap();
    // a1 and b1 share one network namespace (one IP, like hostNetwork pods) but are
    // different pods in different namespaces.
    let a1 = world.client("mesh-a", "a1").unwrap();
    let b1 = world.add(PodSpec::new("mesh-b", "b1").share_netns_with("mesh-a", "a1")).unwrap();
    let a2 = world.client("mesh-a", "a2").unwrap();
    let b2 = world.client("mesh-b", "b2").unwrap();
    assert_eq!(a1.ipv4, b1.ipv4);

    let pods = [a1, b1, a2, b2];
    let outputs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .map(|pod| {
                s.spawn(move || {
                    let request = ClientRequest::http("http://echo.server/attribution")
                        .count(50)
                        .concurrency(50)
                        .new_connection_per_request();
                    (pod.name.clone(), pod.namespace.clone(), pod.run_client(&request).unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    std::thread::sleep(Duration::from_millis(500));
    let events = world.agent.access_log();
    let mut by_client: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for e in events.iter().filter(|e| e["kind"] == "connection") {
        by_client.entry(e["client"].as_str().unwrap().to_owned()).or_default().push((
            e["caller_pod"].as_str().unwrap_or("").to_owned(),
            e["caller_namespace"].as_str().unwrap_or("").to_owned(),
        ));
    }
    let mut checked = 0;
    let mut mistakes = Vec::new();
    for (pod, namespace, output) in &outputs {
        for r in &output.results {
            assert_eq!(r.status, Some(200), "{pod}: {r:?}");
            let local = r.local_addr.clone().unwrap();
            match by_client.get(&local) {
                None => mistakes.push(format!("{pod}: no connection event for {local}")),
                Some(callers) if !callers.contains(&(pod.clone(), namespace.clone())) => {
                    mistakes.push(format!("{local} from {namespace}/{pod} attributed to {callers:?}"))
                }
                Some(_) => checked += 1,
            }
        }
    }
    assert!(mistakes.is_empty(), "{} mistakes: {mistakes:#?}", mistakes.len());
    assert_eq!(checked, 200);
}

#[test]
fn namespace_label_toggles_redirection_within_a_second() {
    let world = World::start(Default::default()).unwrap();
    let client = world.client("mesh-a", "toggler").unwrap();
    assert_eq!(get(&client, "http://echo.server/"), Ok(200));

    // Timed by what the agent serves: its workloads change in the same step that
    // rewrites the connect hooks' enrollment map. (Timing by connections would measure
    // the client: an un-redirected connect() sometimes waits for a SYN retransmission
    // before the node's "no route" answer arrives.)
    world.bed.label_namespace("mesh-a", "ambit.dev/mesh", None).unwrap();
    let started = std::time::Instant::now();
    world.agent.wait_not_enrolled("mesh-a", "toggler", Duration::from_secs(3)).unwrap();
    let off = started.elapsed();
    assert!(off < Duration::from_secs(1), "took {off:?}");
    let bypassed = wait_until(Duration::from_millis(2500), || get(&client, "http://echo.server/").is_err());
    assert!(bypassed.is_some(), "new connections still redirected after the label was removed");

    world.bed.label_namespace("mesh-a", "ambit.dev/mesh", Some("enabled")).unwrap();
    let started = std::time::Instant::now();
    world.agent.wait_enrolled("mesh-a", "toggler", Duration::from_secs(3)).unwrap();
    let on = started.elapsed();
    assert!(on < Duration::from_secs(1), "took {on:?}");
    let redirected = wait_until(Duration::from_millis(2500), || get(&client, "http://echo.server/") == Ok(200));
    assert!(redirected.is_some(), "new connections not redirected after the label was added");
}

fn tracked(world: &World) -> (u64, u64) {
    let dump = world.agent.redirect_dump().unwrap();
    (dump["trackedSockets"].as_u64().unwrap(), dump["trackedConnections"].as_u64().unwrap())
}

#[test]
fn tracking_maps_return_to_baseline_after_ten_thousand_short_connections() {
    let world = World::start(Default::default()).unwrap();
    let client = world.client("mesh-a", "churner").unwrap();
    let baseline = tracked(&world);
    let request = ClientRequest::tcp("echo.server:9090", "x").count(10_000).concurrency(16).new_connection_per_request();
    let out = client.run_client(&request).unwrap();
    let ok = out.results.iter().filter(|r| r.status == Some(200)).count();
    assert_eq!(ok, 10_000, "failures: {:?}", out.results.iter().find(|r| r.status != Some(200)));
    let settled = wait_until(Duration::from_secs(5), || tracked(&world) == baseline);
    assert!(settled.is_some(), "tracking maps at {:?}, baseline {baseline:?}", tracked(&world));
    let dump = world.agent.redirect_dump().unwrap();
    assert!(dump["counters"]["closed"].as_u64().unwrap() >= 10_000, "{dump}");
}

#[test]
fn agent_restart_never_hangs_connections_and_reattaches_exactly_once() {
    let mut world = World::start(Default::default()).unwrap();
    let client = world.client("mesh-a", "restarter").unwrap();
    assert_eq!(get(&client, "http://echo.server/"), Ok(200));
    let counts = ambit_agent::redirect::attached_program_counts(world.bed.cgroup_root()).unwrap();
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");

    // While the agent is down, redirection stays: connections fail fast, never hang.
    world.agent.stop().unwrap();
    let started = std::time::Instant::now();
    let down = get(&client, "http://echo.server/");
    assert!(down.is_err(), "{down:?}");
    assert!(started.elapsed() < Duration::from_millis(700), "took {:?}: {down:?}", started.elapsed());

    world.agent.restart(&world.bed, &Default::default()).unwrap();
    assert_eq!(get(&client, "http://echo.server/"), Ok(200));
    let counts = ambit_agent::redirect::attached_program_counts(world.bed.cgroup_root()).unwrap();
    assert!(!counts.is_empty() && counts.values().all(|&n| n == 1), "{counts:?}");

    world.agent.kill();
    world.agent.uninstall().unwrap();
    let counts = ambit_agent::redirect::attached_program_counts(world.bed.cgroup_root()).unwrap();
    assert!(counts.values().all(|&n| n == 0), "{counts:?}");
}
