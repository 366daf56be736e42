//! The CONNECT request that opens a tunnel, and what the inbound side reads from it.
//!
//! Headers, as Istio ambient's ztunnel sends them where they apply:
//! * `:authority` — the destination pod's `ip:port` (Istio: the same);
//! * `forwarded` — `for="<caller ip:port>"`, with `;host=<service hostname>` when the
//!   call was made to a Service (Istio: the same form);
//! * `baggage` — `k8s.namespace.name=..,k8s.<kind>.name=..` of the caller (Istio's keys;
//!   Ambit does not know the owner's kind, so it sends `k8s.workload.name`);
//! * `traceparent` — a fresh W3C trace context per tunnel stream (Istio: the same);
//! * `x-ambit-service` — Ambit's own: the Service and port the caller dialled,
//!   `<namespace>/<name>:<port>`, for the inbound side's logs and policy.

use std::net::SocketAddr;

use http::{HeaderValue, Method, Request, Version};

pub const BAGGAGE: &str = "baggage";
pub const TRACEPARENT: &str = "traceparent";
pub const FORWARDED: &str = "forwarded";
/// Ambit's own header naming the dialled Service port.
pub const SERVICE: &str = "x-ambit-service";

/// What a caller says about itself and what it dialled (all optional).
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The caller pod's address, as its connection reached the proxy.
    pub client: Option<SocketAddr>,
    /// The caller's namespace and owning workload.
    pub caller_namespace: Option<String>,
    pub caller_workload: Option<String>,
    /// The Service port dialled, `namespace/name:port`.
    pub service: Option<String>,
    /// The Service's DNS name (`name.namespace.svc.cluster.local`).
    pub service_host: Option<String>,
}

/// The CONNECT request for a tunnel to `destination`.
pub fn connect_request(destination: SocketAddr, call: &CallContext) -> Request<()> {
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .version(Version::HTTP_2)
        .uri(destination.to_string())
        .body(())
        .unwrap_or_default();
    *request.method_mut() = Method::CONNECT;
    let headers = request.headers_mut();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    if let Some(baggage) = baggage(call) {
        put(BAGGAGE, baggage);
    }
    if let Some(client) = call.client {
        let host = call.service_host.as_ref().map(|h| format!(";host={h}")).unwrap_or_default();
        put(FORWARDED, format!("for=\"{client}\"{host}"));
    }
    put(TRACEPARENT, format!("00-{:032x}-{:016x}-01", rand::random::<u128>().max(1), rand::random::<u64>().max(1)));
    if let Some(service) = &call.service {
        put(SERVICE, service.clone());
    }
    request
}

fn baggage(call: &CallContext) -> Option<String> {
    let entries: Vec<String> = [
        call.caller_namespace.as_ref().map(|ns| format!("k8s.namespace.name={ns}")),
        call.caller_workload.as_ref().map(|w| format!("k8s.workload.name={w}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!entries.is_empty()).then(|| entries.join(","))
}

/// The destination a CONNECT request names: its authority as `ip:port`.
pub fn destination_of<B>(request: &Request<B>) -> Option<SocketAddr> {
    request.uri().authority()?.as_str().parse().ok()
}

/// The Service the caller dialled, as the request names it.
pub fn service_of<B>(request: &Request<B>) -> Option<String> {
    let value = request.headers().get(SERVICE)?.to_str().ok()?;
    (!value.is_empty() && value.len() <= 512).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_pod_and_carries_istio_headers() {
        let call = CallContext {
            client: Some("10.0.1.5:40000".parse().unwrap()),
            caller_namespace: Some("shop".into()),
            caller_workload: Some("web".into()),
            service: Some("shop/catalog:80".into()),
            service_host: Some("catalog.shop.svc.cluster.local".into()),
        };
        let request = connect_request("10.0.2.7:8080".parse().unwrap(), &call);
        assert_eq!(request.method(), Method::CONNECT);
        assert_eq!(destination_of(&request), Some("10.0.2.7:8080".parse().unwrap()));
        assert_eq!(request.headers()[FORWARDED], "for=\"10.0.1.5:40000\";host=catalog.shop.svc.cluster.local");
        assert_eq!(request.headers()[BAGGAGE], "k8s.namespace.name=shop,k8s.workload.name=web");
        assert_eq!(service_of(&request).as_deref(), Some("shop/catalog:80"));
        assert_eq!(request.headers()[TRACEPARENT].len(), 55);
    }
}
