//! `kubectl` (v1.32, preinstalled) against the in-test API server on loopback: discovery,
//! OpenAPI (server-side field validation), client-side apply (create, then a strategic
//! merge patch for built-in kinds and a JSON merge patch for Gateway API kinds),
//! `kubectl label` and `kubectl get -o jsonpath`. kubectl missing is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ambit_fake_apiserver::{FakeApiServer, Resource};
use serde_json::json;

struct Client {
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl Client {
    fn new(server: &FakeApiServer, dir: &Path) -> Client {
        let kubeconfig = dir.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        Client { kubeconfig, dir: dir.to_path_buf() }
    }

    /// Runs kubectl; Ok(stdout) or Err(stderr).
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("KUBECACHEDIR", self.dir.join("cache"))
            .stdin(Stdio::null())
            .output()
            .expect("running kubectl (is it installed?)");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn apply(&self, name: &str, yaml: &str) -> Result<String, String> {
        let path = self.dir.join(name);
        std::fs::write(&path, yaml).unwrap();
        self.run(&["apply", "-f", path.to_str().unwrap()])
    }
}

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {team: a}\n";
const NAMESPACE_2: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {tier: b}\n";
const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: catalog, namespace: shop}\nspec:\n  ports:\n  - {name: http, port: 80, targetPort: 8080}\n  - {name: tcp, port: 9090}\n";
const SERVICE_2: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: catalog, namespace: shop}\nspec:\n  ports:\n  - {name: http, port: 80, targetPort: 8080, appProtocol: http}\n";
const ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: my-route, namespace: shop}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: catalog, port: 80}]\n  rules:\n  - backendRefs: [{name: catalog, port: 80}]\n";
const ROUTE_2: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: my-route, namespace: shop}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: catalog, port: 80}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /v2}}]\n    backendRefs: [{name: catalog, port: 80}]\n";

async fn in_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_creates_then_patches_built_in_and_custom_kinds() {
    let server = FakeApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(&server, dir.path());
    let outputs = in_blocking(move || {
        let steps = [("ns.yaml", NAMESPACE), ("svc.yaml", SERVICE), ("route.yaml", ROUTE), ("ns.yaml", NAMESPACE_2), ("svc.yaml", SERVICE_2), ("route.yaml", ROUTE_2), ("route.yaml", ROUTE_2)];
        steps.iter().map(|(name, yaml)| client.apply(name, yaml).unwrap()).collect::<Vec<_>>()
    })
    .await;
    assert!(outputs[0].contains("namespace/shop created"), "{outputs:?}");
    assert!(outputs[3].contains("namespace/shop configured"), "{outputs:?}");
    assert!(outputs[5].contains("httproute.gateway.networking.k8s.io/my-route configured"), "{outputs:?}");
    assert!(outputs[6].contains("unchanged"), "{outputs:?}");

    // The 3-way patch removed the label no longer applied and added the new one.
    let ns = server.get(Resource::Namespaces, "", "shop").unwrap();
    assert_eq!(ns["metadata"]["labels"], json!({"tier": "b"}));
    // Service ports merged by port: the dropped port is gone, the kept one updated.
    let svc = server.get(Resource::Services, "shop", "catalog").unwrap();
    assert_eq!(svc["spec"]["ports"], json!([{"name": "http", "port": 80, "targetPort": 8080, "appProtocol": "http"}]));
    let route = server.get(Resource::HttpRoutes, "shop", "my-route").unwrap();
    assert_eq!(route["spec"]["rules"][0]["matches"][0]["path"]["value"], "/v2");
    assert_eq!(route["metadata"]["generation"], 2);

    let patches: Vec<_> = server.requests().into_iter().filter(|r| r.method == "PATCH").map(|r| r.path).collect();
    assert_eq!(patches.len(), 3, "{patches:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn label_and_get_status_parents_as_readme_says() {
    let server = FakeApiServer::start().await.unwrap();
    server.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})).unwrap();
    server.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})).unwrap();
    let mut route: serde_json::Value = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "my-route", "namespace": "default"},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "catalog", "port": 80}]},
        "status": {"parents": [{"controllerName": "ambit.dev/mesh", "parentRef": {"name": "catalog"}, "conditions": [{"type": "Accepted", "status": "True"}]}]},
    });
    route = server.apply(route).unwrap();
    assert_eq!(route["status"]["parents"][0]["controllerName"], "ambit.dev/mesh");
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(&server, dir.path());
    let (labelled, again, parents) = in_blocking(move || {
        (
            client.run(&["label", "namespace", "shop", "ambit.dev/mesh=enabled"]),
            client.run(&["label", "namespace", "shop", "ambit.dev/mesh=disabled"]),
            client.run(&["get", "httproute", "my-route", "-o", "jsonpath={.status.parents}"]),
        )
    })
    .await;
    assert_eq!(labelled.unwrap().trim(), "namespace/shop labeled");
    assert!(again.unwrap_err().contains("--overwrite"), "kubectl refuses to overwrite without --overwrite");
    let ns = server.get(Resource::Namespaces, "", "shop").unwrap();
    assert_eq!(ns["metadata"]["labels"]["ambit.dev/mesh"], "enabled");
    let parents: serde_json::Value = serde_json::from_str(&parents.unwrap()).unwrap();
    assert_eq!(parents[0]["controllerName"], "ambit.dev/mesh");
    assert_eq!(parents[0]["conditions"][0]["status"], "True");
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_field_validation_rejects_an_unknown_top_level_field() {
    let server = FakeApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(&server, dir.path());
    let typo = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\nspce: {}\n";
    let error = in_blocking(move || client.apply("typo.yaml", typo)).await.unwrap_err();
    assert!(error.contains("unknown field \"spce\""), "{error}");
    assert!(server.get(Resource::Namespaces, "", "shop").is_none());
}

/// A CSR records its requester, whatever the client claims: kubectl sends no bearer
/// token over plain HTTP, so it acts as the agent through impersonation headers (from
/// the kubeconfig's `as`, `as-groups` and `as-user-extra`). (`kubectl certificate
/// approve` sends protobuf, which this server refuses with 415.)
#[tokio::test(flavor = "multi_thread")]
async fn certificate_signing_requests_record_the_requester() {
    use ambit_fake_apiserver::NODE_NAME_EXTRA;
    let server = FakeApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(&server, dir.path());
    let as_agent = dir.path().join("agent-kubeconfig");
    let kubeconfig = std::fs::read_to_string(dir.path().join("kubeconfig")).unwrap().replace(
        "  user: {}\n",
        "  user:\n    as: system:serviceaccount:ambit-system:ambit-agent\n    as-groups: [system:serviceaccounts]\n    as-user-extra:\n      authentication.kubernetes.io/node-name: [node-x]\n",
    );
    std::fs::write(&as_agent, kubeconfig).unwrap();
    let csr = "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {name: c1}\nspec:\n  signerName: ambit.dev/workload\n  request: AAAA\n  username: system:admin\n  usages: [client auth]\n";
    let path = dir.path().join("csr.yaml");
    std::fs::write(&path, csr).unwrap();
    let (created, listed, username) = in_blocking(move || {
        let created = client.run(&["--kubeconfig", as_agent.to_str().unwrap(), "create", "-f", path.to_str().unwrap()]);
        (created, client.run(&["get", "csr", "-o", "name"]), client.run(&["get", "csr", "c1", "-o", "jsonpath={.spec.username}"]))
    })
    .await;
    assert!(created.unwrap().contains("certificatesigningrequest.certificates.k8s.io/c1 created"));
    assert_eq!(listed.unwrap().trim(), "certificatesigningrequest.certificates.k8s.io/c1");
    let stored = server.get(Resource::CertificateSigningRequests, "", "c1").unwrap();
    assert_eq!(stored["spec"]["username"], "system:serviceaccount:ambit-system:ambit-agent");
    assert_eq!(stored["spec"]["extra"][NODE_NAME_EXTRA], json!(["node-x"]));
    assert!(stored["spec"]["groups"].as_array().unwrap().contains(&json!("system:serviceaccounts")));
    assert_eq!(username.unwrap().trim(), "system:serviceaccount:ambit-system:ambit-agent");
}
