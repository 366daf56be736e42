//! Tests of the test bed itself (no agent): pod-to-pod traffic over every
//! echo protocol, cluster IPs failing fast without an agent, manifests,
//! parallel beds and cleanup. They need root and fail without it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ambit_e2e::{BedOptions, ClientRequest, PodSpec, TestBed};

fn bed() -> TestBed {
    TestBed::with_options(BedOptions {
        pod_bin: Some(PathBuf::from(env!("CARGO_BIN_EXE_ambit-pod"))),
        ..Default::default()
    })
    .expect("creating a test bed (needs root, cgroup v2 and iproute2)")
}

fn netns_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/var/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

const APP_YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: mesh
  labels:
    team: a
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo-v1
  namespace: mesh
spec:
  replicas: 2
  selector:
    matchLabels: {app: echo, version: v1}
  template:
    metadata:
      labels: {app: echo, version: v1}
    spec:
      containers:
      - name: echo
        ports:
        - containerPort: 8080
          name: web
        - containerPort: 7070
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: mesh
spec:
  selector: {app: echo}
  ports:
  - name: http
    port: 80
    appProtocol: http
    targetPort: web
  - name: grpc
    port: 7070
    appProtocol: kubernetes.io/h2c
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: route
  namespace: mesh
spec:
  parentRefs:
  - {group: "", kind: Service, name: echo, port: 80}
"#;

#[test]
fn pods_reach_each_other_over_every_protocol() {
    let bed = bed();
    let a = bed.add_pod(PodSpec::new("ns-a", "client-a").label("app", "client")).unwrap();
    let b = bed.add_pod(PodSpec::new("ns-b", "server-b")).unwrap();
    assert_ne!(a.ipv4, b.ipv4);

    // HTTP/1.1 by pod IP.
    let out = a.run_client(&ClientRequest::http(format!("http://{}:8080/hello?x=1", b.ipv4)).header("X-Test", "v")).unwrap();
    let r = out.only();
    assert_eq!(r.status, Some(200), "{out:#?}");
    assert_eq!(r.echo_pod(), Some("server-b"));
    assert_eq!(r.echo_namespace(), Some("ns-b"));
    assert_eq!(r.echo_caller_ip(), Some(a.ipv4.to_string().as_str()));
    assert_eq!(r.echo_request_header("x-test"), vec!["v".to_string()]);
    assert_eq!(r.body.as_ref().unwrap()["path"], "/hello?x=1");
    assert_eq!(r.header("x-echo-pod"), Some("server-b"));
    assert_eq!(r.peer_addr.as_deref(), Some(format!("{}:8080", b.ipv4).as_str()));
    assert!(r.local_addr.as_deref().unwrap().starts_with(&format!("{}:", a.ipv4)));

    // Status and delay knobs, several requests over one connection, h2c.
    let out = a
        .run_client(
            &ClientRequest::http(format!("http://{}:8080/", b.ipv4))
                .header("x-echo-status", "418")
                .header("x-echo-delay-ms", "50")
                .count(3)
                .h2c(),
        )
        .unwrap();
    assert_eq!(out.results.len(), 3);
    for r in &out.results {
        assert_eq!(r.status, Some(418), "{out:#?}");
        assert_eq!(r.version.as_deref(), Some("HTTP/2.0"));
        assert_eq!(r.connection, 1);
        assert!(r.duration_ms >= 50.0);
    }

    // TLS.
    let out = a.run_client(&ClientRequest::http(format!("https://{}:8443/tls", b.ipv4))).unwrap();
    assert_eq!(out.only().status, Some(200), "{out:#?}");
    assert_eq!(out.only().echo_pod(), Some("server-b"));

    // TCP echo.
    let out = a.run_client(&ClientRequest::tcp(format!("{}:9090", b.ipv4), "hello tcp")).unwrap();
    assert_eq!(out.only().status, Some(200), "{out:#?}");
    assert_eq!(out.only().body_text, "hello tcp");

    // gRPC.
    let out = a
        .run_client(&ClientRequest::grpc(format!("{}:7070", b.ipv4)).header("x-md", "m1").grpc_message("hi"))
        .unwrap();
    let r = out.only();
    assert_eq!(r.status, Some(200), "{out:#?}");
    assert_eq!(r.grpc_status, Some(0));
    assert!(r.body_text.contains("Hostname=server-b\n"), "{}", r.body_text);
    assert!(r.body_text.contains("RequestHeader=X-Md:m1\n"), "{}", r.body_text);
    assert!(r.body_text.contains("URL=/proto.EchoTestService/Echo\n"), "{}", r.body_text);
    assert_eq!(r.echo_pod(), Some("server-b"));
    assert_eq!(r.echo_request_header("x-md"), vec!["m1".to_string()]);

    // IPv6.
    let out = a.run_client(&ClientRequest::http(format!("http://[{}]:8080/", b.ipv6))).unwrap();
    assert_eq!(out.only().status, Some(200), "{out:#?}");
    assert_eq!(out.only().echo_caller_ip(), Some(a.ipv6.to_string().as_str()));

    // The node address answers nothing yet (no agent) but is local to the node: refused, fast.
    let out = a.run_client(&ClientRequest::tcp(format!("{}:15001", bed.node_ip()), "x")).unwrap();
    assert!(out.only().error.as_deref().unwrap().contains("refused"), "{out:#?}");
}

#[test]
fn deployments_services_and_manifests() {
    let bed = bed();
    bed.apply_yaml(APP_YAML).unwrap();
    bed.enroll_namespace("mesh").unwrap();
    let pods = bed.pods_matching("mesh", &[("app", "echo")]);
    assert_eq!(pods.len(), 2);
    let re = regex_lite(&pods[0].name);
    assert!(re, "pod name {} is not <deploy>-<10 hex>-<5>", pods[0].name);
    assert!(pods[0].cgroup.starts_with(bed.cgroup_root()));
    let cg = pods[0].cgroup.to_string_lossy().into_owned();
    assert!(cg.contains(&format!("kubepods-besteffort-pod{}.slice/cri-containerd-", pods[0].uid.replace('-', "_"))), "{cg}");

    let dir = bed.manifests_dir();
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let ns: serde_yaml::Value = serde_yaml::from_str(&read("namespace-mesh.yaml")).unwrap();
    assert_eq!(ns["metadata"]["labels"]["ambit.dev/mesh"].as_str(), Some("enabled"));
    assert_eq!(ns["metadata"]["labels"]["team"].as_str(), Some("a"));
    let svc: serde_yaml::Value = serde_yaml::from_str(&read("service-mesh-echo.yaml")).unwrap();
    let ip = bed.service_ip("mesh", "echo").unwrap();
    assert_eq!(svc["spec"]["clusterIP"].as_str(), Some(ip.to_string().as_str()));
    assert!(ip.octets()[..2] == [10, 96]);
    let pod: serde_yaml::Value =
        serde_yaml::from_str(&read(&format!("pod-mesh-{}.yaml", pods[0].name))).unwrap();
    assert_eq!(pod["metadata"]["uid"].as_str(), Some(pods[0].uid.as_str()));
    assert_eq!(pod["status"]["podIP"].as_str(), Some(pods[0].ipv4.to_string().as_str()));
    assert_eq!(pod["spec"]["nodeName"].as_str(), Some(bed.node_name()));
    let slices: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("endpointslice-mesh-echo-"))
        .collect();
    assert_eq!(slices.len(), 1, "{slices:?}");
    let slice: serde_yaml::Value = serde_yaml::from_str(&read(&slices[0])).unwrap();
    assert_eq!(slice["metadata"]["labels"]["kubernetes.io/service-name"].as_str(), Some("echo"));
    assert_eq!(slice["endpoints"].as_sequence().unwrap().len(), 2);
    assert_eq!(slice["ports"][0]["port"].as_u64(), Some(8080), "named targetPort resolved");
    assert_eq!(slice["ports"][0]["name"].as_str(), Some("http"));
    assert_eq!(slice["ports"][1]["appProtocol"].as_str(), Some("kubernetes.io/h2c"));
    let route: serde_yaml::Value = serde_yaml::from_str(&read("httproute-mesh-route.yaml")).unwrap();
    assert_eq!(route["spec"]["parentRefs"][0]["name"].as_str(), Some("echo"));

    // Without an agent (no kube-proxy either) a cluster-IP connection fails fast.
    let client = bed.add_pod(PodSpec::new("mesh", "client")).unwrap();
    let start = Instant::now();
    let out = client.run_client(&ClientRequest::http("http://echo/")).unwrap();
    assert!(start.elapsed() < Duration::from_secs(1), "took {:?}", start.elapsed());
    assert_eq!(out.resolved.as_deref(), Some(format!("{ip}:80").as_str()));
    let err = out.only().error.clone().unwrap_or_default();
    assert!(err.contains("No route to host"), "EHOSTUNREACH expected: {out:#?}");

    // Scaling down and deleting update the files.
    bed.apply_yaml(&APP_YAML.replace("replicas: 2", "replicas: 1")).unwrap();
    assert_eq!(bed.pods_matching("mesh", &[("app", "echo")]).len(), 1);
    let slice: serde_yaml::Value = serde_yaml::from_str(&read(&slices[0])).unwrap();
    assert_eq!(slice["endpoints"].as_sequence().unwrap().len(), 1);
    bed.delete_yaml(APP_YAML).unwrap();
    assert!(bed.pods().is_empty());
    assert!(!dir.join("service-mesh-echo.yaml").exists());
    assert!(!dir.join(&slices[0]).exists());
}

fn regex_lite(name: &str) -> bool {
    let parts: Vec<&str> = name.rsplitn(3, '-').collect();
    parts.len() == 3
        && parts[0].len() == 5
        && parts[1].len() == 10
        && parts[1].chars().all(|c| c.is_ascii_hexdigit())
        && parts[2] == "echo-v1"
}

#[test]
fn shared_netns_pods_and_node_processes() {
    let bed = bed();
    let owner = bed.add_pod(PodSpec::new("host", "owner")).unwrap();
    let sharer = bed.add_pod(PodSpec::new("host", "sharer").share_netns_with("host", "owner")).unwrap();
    let target = bed.add_pod(PodSpec::new("app", "target")).unwrap();
    assert_eq!(sharer.ipv4, owner.ipv4);
    assert_ne!(sharer.cgroup, owner.cgroup);
    let out = sharer.run_client(&ClientRequest::http(format!("http://{}:8080/", target.ipv4))).unwrap();
    assert_eq!(out.only().echo_caller_ip(), Some(owner.ipv4.to_string().as_str()), "{out:#?}");
    assert!(bed.remove_pod("host", "owner").is_err(), "owner has a sharer");

    // A node process lives in the node netns and its own cgroup under the bed root.
    let child = bed
        .node_command(env!("CARGO_BIN_EXE_ambit-pod"))
        .unwrap()
        .args(["client", "--url", &format!("http://{}:8080/", target.ipv4)])
        .output()
        .unwrap();
    let out: ambit_e2e::ClientOutput = serde_json::from_slice(&child.stdout).unwrap();
    assert_eq!(out.only().status, Some(200), "{out:#?}");
    assert_eq!(out.only().echo_caller_ip().map(|s| s.starts_with("169.254.1.1") || s == "10.77.0.1"), Some(true), "{out:#?}");

    bed.remove_pod("host", "sharer").unwrap();
    bed.remove_pod("host", "owner").unwrap();
    assert!(!owner.cgroup.exists());
    assert!(netns_with_prefix(&owner.netns).is_empty());
}

#[test]
fn parallel_beds_do_not_collide_and_drop_cleans_up() {
    let handles: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                let bed = bed();
                let p1 = bed.add_pod(PodSpec::new("ns", format!("one-{i}"))).unwrap();
                let p2 = bed.add_pod(PodSpec::new("ns", format!("two-{i}"))).unwrap();
                let out = p1.run_client(&ClientRequest::http(format!("http://{}:8080/", p2.ipv4))).unwrap();
                assert_eq!(out.only().echo_pod(), Some(format!("two-{i}").as_str()), "{out:#?}");
                let mut sleeper = bed.spawn_in_node("sleep", ["600"]).unwrap();
                let node_cg = bed.cgroup_root().join("system.slice/ambit-node-1.scope");
                let deadline = Instant::now() + Duration::from_secs(5);
                while !ambit_e2e::cgroup::procs(&node_cg).contains(&sleeper.id()) {
                    assert!(Instant::now() < deadline, "node process never joined {}", node_cg.display());
                    std::thread::sleep(Duration::from_millis(5));
                }
                let id = bed.id().to_string();
                let root = bed.cgroup_root().to_path_buf();
                let manifests = bed.manifests_dir().to_path_buf();
                assert!(!netns_with_prefix(&format!("ambit-{id}-")).is_empty());
                drop(bed);
                let status = sleeper.wait().unwrap();
                assert!(!status.success(), "node process was killed");
                (id, root, manifests, p2.ipv4)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(results[0].0, results[1].0);
    assert_eq!(results[0].3, results[1].3, "beds reuse the same pod addresses in their own netns");
    for (id, root, manifests, _) in results {
        assert!(netns_with_prefix(&format!("ambit-{id}-")).is_empty(), "netns of {id} left");
        assert!(!root.exists(), "{} left", root.display());
        assert!(!manifests.exists());
    }
}

#[test]
fn stale_beds_are_cleaned_up() {
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    let dead = pid_max; // pids are always below pid_max
    let id = format!("{dead}-7");
    let ns = format!("ambit-{id}-node");
    let status = std::process::Command::new("ip").args(["netns", "add", &ns]).status().unwrap();
    assert!(status.success());
    let mount = ambit_e2e::cgroup::cgroup2_mount().unwrap();
    let root = mount.join(format!("ambit-bed-{id}"));
    std::fs::create_dir_all(root.join("kubepods.slice/kubepods-besteffort.slice")).unwrap();

    let removed = ambit_e2e::bed::cleanup_stale().unwrap();
    assert!(removed.contains(&ns), "{removed:?}");
    assert!(netns_with_prefix(&ns).is_empty());
    assert!(!root.exists());
}

#[test]
fn fails_clearly_without_the_pod_binary() {
    let err = TestBed::with_options(BedOptions {
        pod_bin: None,
        ..Default::default()
    });
    // Next to the test executable the binary exists (cargo builds it for
    // integration tests), so the default lookup must work too.
    let bed = err.expect("default ambit-pod lookup");
    drop(bed);
    std::env::set_var("AMBIT_POD_BIN", "/nonexistent/ambit-pod");
    let err = TestBed::new().unwrap_err();
    std::env::remove_var("AMBIT_POD_BIN");
    assert!(format!("{err:#}").contains("/nonexistent/ambit-pod"), "{err:#}");
}

#[test]
fn conformance_base_manifests_apply_quickly() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/base-manifests.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let bed = bed();
    let start = Instant::now();
    bed.apply_yaml(&yaml).unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "applying base manifests took {took:?}");
    assert_eq!(bed.pods().len(), 3);
    let client = bed.first_pod("gateway-conformance-mesh-consumer", &[("app", "echo"), ("version", "v1")]).unwrap();
    assert!(client.name.starts_with("echo-v1-"));
    let v2 = bed.first_pod("gateway-conformance-mesh", &[("version", "v2")]).unwrap();
    let out = client.run_client(&ClientRequest::grpc(format!("{}:7070", v2.ipv4))).unwrap();
    assert_eq!(out.only().echo_pod(), Some(v2.name.as_str()), "{out:#?}");
    assert!(bed.service_ip("gateway-conformance-mesh", "echo").is_some());
    eprintln!("base manifests applied in {took:?}");
}
