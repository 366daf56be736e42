//! Scenario 7, in process: 10,000 Services and 20,000 HTTPRoutes loaded from YAML,
//! translated into the proxy's route table (timed, memory counted), then route
//! lookups as the proxy does them per request (Service by dialled address, then
//! the caller scope's route list). Runs in an optimised build of xtask
//! (`xtask bench-control-plane`), started by `cargo xtask bench`; prints JSON.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

use ambit_agent::cluster::{ClusterObject, ClusterState};
use ambit_agent::translate::{translate, translate_reusing, NodeView, Reuse};
use ambit_proxy_core::config::Decision;
use ambit_proxy_core::routes::RequestView;
use anyhow::{bail, Context, Result};
use serde_json::json;

use ambit_alloc_count::live_bytes;
use super::report::median;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// HTTPRoutes per Service.
    #[arg(long, default_value_t = 2)]
    routes_per_service: usize,
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    #[arg(long, default_value_t = 1_000_000)]
    lookups: usize,
}

/// Services spread over namespaces of 100; each with `per` HTTPRoutes: a header +
/// path-prefix match with a header modifier, and exact-path matches.
pub fn scale_yaml(services: usize, per: usize) -> String {
    let mut s = String::new();
    for ns in 0..services.div_ceil(100) {
        let _ = write!(s, "apiVersion: v1\nkind: Namespace\nmetadata: {{name: scale-{ns}, labels: {{ambit.dev/mesh: enabled}}}}\n---\n");
    }
    for i in 0..services {
        let ns = i / 100;
        let _ = write!(
            s,
            "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: scale-{ns}}}\nspec:\n  selector: {{app: svc-{i}}}\n  ports: [{{name: http, port: 80, targetPort: 8080, appProtocol: http}}]\n---\n"
        );
        for r in 0..per {
            let _ = write!(
                s,
                r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: route-{i}-{r}, namespace: scale-{ns}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: svc-{i}, port: 80}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /r{r}/api}}, headers: [{{name: x-tenant, value: t{r}}}]}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-route, value: r{r}}}]}}
    backendRefs: [{{name: svc-{i}, port: 80}}]
  - matches: [{{path: {{type: Exact, value: /r{r}/health}}}}]
    backendRefs: [{{name: svc-{i}, port: 80}}]
---
"#
            );
        }
    }
    s
}

/// The first HTTPRoute of `scale_yaml`, its header modifier's value set to `value`.
fn first_route_with(value: &str) -> Result<ClusterObject> {
    let yaml = scale_yaml(1, 1).replace("value: r0}", &format!("value: {value}}}"));
    let parsed = ambit_agent::manifests::parse_text(std::path::Path::new("change.yaml"), &yaml);
    parsed.objects.into_iter().find(|o| matches!(o, ClusterObject::HttpRoute(_))).context("no HTTPRoute in the change")
}

/// Rewrites one HTTPRoute `times` times; after each, translates reusing the previous
/// translation, then afresh (interleaved). Returns both times per change, in ms.
fn one_route_changes(state: &mut ClusterState, node: &NodeView<'_>, times: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut reuse = Reuse::default();
    drop(translate_reusing(state, node, &mut reuse));
    let (mut reusing, mut fresh) = (Vec::new(), Vec::new());
    for i in 0..times {
        state.insert(first_route_with(&format!("changed-{i}"))?)?;
        let t = Instant::now();
        let out = translate_reusing(state, node, &mut reuse);
        reusing.push(t.elapsed().as_secs_f64() * 1000.0);
        if reuse.last.routes_compiled != 1 {
            bail!("a one-route change compiled {} routes", reuse.last.routes_compiled);
        }
        drop(out);
        let t = Instant::now();
        drop(std::hint::black_box(translate(state, node)));
        fresh.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((reusing, fresh))
}

pub fn run(args: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("scale.yaml"), scale_yaml(args.services, args.routes_per_service))?;
    let t = Instant::now();
    let (mut state, errors) = ambit_agent::manifests::load_dir(dir.path());
    if !errors.is_empty() {
        bail!("the synthetic manifests do not load: {}", errors[0].message);
    }
    ambit_agent::manifests::allocate_missing_cluster_ips(&mut state);
    let parse_s = t.elapsed().as_secs_f64();
    let no_cgroups = |_: &str, _: Option<&str>| None;
    let node = NodeView { node_name: None, cgroups: &no_cgroups };

    let mut build_ms = Vec::new();
    let mut table_bytes = 0usize;
    let mut translation = None;
    for _ in 0..args.repetitions.max(1) {
        drop(translation.take());
        let before = live_bytes();
        let t = Instant::now();
        let out = translate(&state, &node);
        build_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        table_bytes = live_bytes().saturating_sub(before);
        translation = Some(out);
    }
    let translation = translation.context("no translation")?;
    let (change_ms, change_full_ms) = one_route_changes(&mut state, &node, args.repetitions.max(1))?;
    let routes: usize = translation.route_status.len();
    let config = &translation.config;
    let addrs: Vec<(SocketAddr, String)> =
        config.services.iter().map(|(a, sp)| (*a, sp.service.namespace.to_string())).collect();
    if addrs.len() < args.services {
        bail!("only {} of {} Services in the table", addrs.len(), args.services);
    }

    // Lookups: Service by dialled address, then the route decision for a request that
    // matches the first rule of the second route (header + prefix).
    let mut headers = http::HeaderMap::new();
    headers.insert("x-tenant", http::HeaderValue::from_static("t1"));
    let method = http::Method::GET;
    // Two access patterns over the same table: uniformly spread over every Service
    // (each lookup meets cold memory: the table is far larger than the CPU caches),
    // and confined to 100 hot Services (what the per-request code itself costs).
    let lookups = |spread: usize| -> Result<Vec<f64>> {
        let mut per_lookup = Vec::new();
        let mut matched = 0usize;
        for _ in 0..args.repetitions.max(1) {
            let t = Instant::now();
            for i in 0..args.lookups {
                let (addr, ns) = &addrs[(i.wrapping_mul(7919)) % spread];
                let view = RequestView { method: &method, path: "/r1/api/items", query: None, headers: &headers };
                let sp = config.service(std::hint::black_box(*addr)).context("Service missing")?;
                if let Decision::Matched(m) = sp.routes.decide(ns, &view) {
                    matched += 1;
                    std::hint::black_box(&m);
                }
            }
            per_lookup.push(t.elapsed().as_nanos() as f64 / args.lookups as f64);
        }
        if matched != args.lookups * args.repetitions.max(1) {
            bail!("only {matched} lookups matched a rule");
        }
        Ok(per_lookup)
    };
    let lookup_ns = lookups(addrs.len())?;
    let hot_lookup_ns = lookups(addrs.len().min(100))?;
    println!(
        "{}",
        json!({
            "services": args.services,
            "http_routes": routes,
            "parse_s": parse_s,
            "build_ms": build_ms,
            "build_ms_median": median(&build_ms),
            "change_ms": change_ms,
            "change_full_ms": change_full_ms,
            "table_bytes": table_bytes,
            "lookup_ns": lookup_ns,
            "lookup_ns_median": median(&lookup_ns),
            "hot_lookup_ns": hot_lookup_ns,
            "hot_lookup_ns_median": median(&hot_lookup_ns),
        })
    );
    Ok(())
}
