//! The agent's lifecycle on a node: graceful SIGTERM, and pods whose cgroup shows up
//! after their Pod object. Needs root; fails (never skips) without it.

mod support;

use std::time::{Duration, Instant};

use ambit_e2e::ClientRequest;
use support::*;

#[test]
fn sigterm_drains_in_flight_requests_and_new_connections_then_fail_fast() {
    let mut world = World::start(Default::default()).unwrap();
    let client = world.client("mesh-a", "drainer").unwrap();
    assert_eq!(get(&client, "http://echo.server/"), Ok(200));

    std::thread::scope(|s| {
        // A request the backend answers after 1.2 s, in flight when SIGTERM arrives.
        let slow = s.spawn(|| {
            client
                .run_client(
                    &ClientRequest::http("http://echo.server/slow")
                        .header("x-echo-delay-ms", "1200")
                        .timeout(Duration::from_secs(5)),
                )
                .unwrap()
        });
        std::thread::sleep(Duration::from_millis(300));
        let stopping = Instant::now();
        let status = world.agent.stop().unwrap();
        assert!(status.success(), "agent exit status {status}:\n{}", world.agent.log_tail(20));
        // The agent waited for the in-flight request (drain period 2 s) before exiting.
        assert!(stopping.elapsed() >= Duration::from_millis(600), "exited after {:?}", stopping.elapsed());
        let out = slow.join().unwrap();
        let r = out.only();
        assert_eq!(r.status, Some(200), "in-flight request was cut: {r:?}");
    });

    // Redirection stays attached with no agent: new connections are refused at once.
    let started = Instant::now();
    let refused = get(&client, "http://echo.server/");
    assert!(refused.is_err(), "{refused:?}");
    assert!(refused.as_ref().unwrap_err().contains("refused"), "{refused:?}");
    assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());
}

#[test]
fn a_pod_whose_cgroup_appears_late_is_enrolled_once_it_appears() {
    let world = World::start(Default::default()).unwrap();
    let uid = "5e1a7e00-0000-4000-8000-00000000late";
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "late", "namespace": "mesh-a", "uid": uid},
        "spec": {"nodeName": world.bed.node_name(), "containers": [{"name": "app", "image": "app"}]},
        "status": {"phase": "Running", "podIP": "10.244.200.1", "qosClass": "BestEffort"},
    });
    let manifest = world.bed.manifests_dir().join("pod-mesh-a-late.yaml");
    std::fs::write(&manifest, serde_yaml::to_string(&pod).unwrap()).unwrap();

    // The Pod is known but its cgroup does not exist yet (the runtime has not created
    // it): not enrolled, and counted as pending.
    std::thread::sleep(Duration::from_millis(800));
    let dump = world.agent.config_dump().unwrap();
    let listed = dump["config"]["workloads"].as_array().unwrap().iter().any(|w| w["name"] == "late");
    assert!(!listed, "enrolled without a cgroup: {dump}");

    // The runtime creates the pod cgroup (kubelet systemd layout): the agent's retry
    // finds it and enrolls the pod.
    let cgroup = world
        .bed
        .cgroup_root()
        .join("kubepods.slice/kubepods-besteffort.slice")
        .join(format!("kubepods-besteffort-pod{}.slice", uid.replace('-', "_")));
    std::fs::create_dir_all(&cgroup).unwrap();
    let appeared = Instant::now();
    let result = world.agent.wait_enrolled("mesh-a", "late", Duration::from_secs(2));
    let took = appeared.elapsed();
    let _ = std::fs::remove_file(&manifest);
    let _ = world.agent.wait_not_enrolled("mesh-a", "late", Duration::from_secs(2));
    let _ = std::fs::remove_dir(&cgroup);
    result.unwrap();
    assert!(took < Duration::from_secs(1), "enrolled {took:?} after the cgroup appeared");
}
