//! The HTTP side: routing requests to the store, list responses and watch streams.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::resource::{Resource, Target};
use crate::selector::FieldSelector;
use crate::store::{ApiError, Change, Store};
use crate::{RecordedRequest, StatusWrite};

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// State shared by the server and the test's handle.
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub status_writes: Mutex<Vec<StatusWrite>>,
    pub requests: Mutex<Vec<RecordedRequest>>,
    pub bookmark_interval: Duration,
    /// Bearer tokens and the users they authenticate.
    pub tokens: Mutex<BTreeMap<String, crate::auth::User>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        lock(&self.store)
    }
}

fn full(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_default()
}

fn ok_json(value: &Value) -> Response<Body> {
    full(StatusCode::OK, serde_json::to_vec(value).unwrap_or_default())
}

fn error(e: &ApiError) -> Response<Body> {
    full(StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), serde_json::to_vec(&e.to_status()).unwrap_or_default())
}

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri().query().map(parse_query).unwrap_or_default()
}

/// Decodes `a=b&c=d` with percent-decoding and `+` as space.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Handles one request.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>, shutdown: CancellationToken) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let params = query(&req);
    lock(&shared.requests).push(RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        query: params.clone(),
    });
    let Ok(user) = crate::auth::requester(req.headers(), &lock(&shared.tokens)) else {
        return error(&ApiError::new(401, "Unauthorized", "Unauthorized"));
    };
    if method == Method::GET {
        if let Some(document) = crate::discovery::document(&path).or_else(|| crate::openapi::document(&path)) {
            return ok_json(&document);
        }
    }
    let content_type = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let strict = param(&params, "fieldValidation") == Some("Strict");
    if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        return error(&ApiError::new(415, "UnsupportedMediaType", "protobuf bodies are not supported by the fake API server (JSON only)"));
    }
    let Some(target) = Target::parse(&path) else {
        return error(&ApiError::new(404, "NotFound", format!("the server could not find the requested resource ({path})")));
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(&ApiError::new(400, "BadRequest", format!("reading body: {e}"))),
    };
    let json_body = || -> Result<Value, ApiError> {
        serde_json::from_slice(&body).map_err(|e| ApiError::new(400, "BadRequest", format!("invalid JSON body: {e}")))
    };
    let namespace = target.namespace.clone().unwrap_or_default();
    // An object in the body: under fieldValidation=Strict its fields are checked.
    let parsed = || -> Result<Value, ApiError> {
        let object = json_body()?;
        if strict && target.subresource.is_none() {
            check_fields(target.resource, &object)?;
        }
        Ok(object)
    };
    let result: Result<Response<Body>, ApiError> = match (&method, &target.name, target.subresource.as_deref()) {
        (&Method::GET, None, None) => {
            let selector = match FieldSelector::parse(param(&params, "fieldSelector").unwrap_or("")) {
                Ok(s) => s,
                Err(e) => return error(&ApiError::new(400, "BadRequest", e)),
            };
            if param(&params, "labelSelector").is_some_and(|l| !l.is_empty()) {
                return error(&ApiError::new(400, "BadRequest", "label selectors are not supported by the fake API server"));
            }
            if param(&params, "watch").is_some_and(|w| w == "true" || w == "1") {
                if param(&params, "sendInitialEvents") == Some("true") {
                    return error(&ApiError::new(400, "BadRequest", "sendInitialEvents is not supported by the fake API server"));
                }
                let timeout = param(&params, "timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(290u64);
                let bookmarks = param(&params, "allowWatchBookmarks") == Some("true");
                Ok(watch(shared, target, selector, param(&params, "resourceVersion").unwrap_or(""), timeout, bookmarks, shutdown))
            } else {
                let store = shared.store();
                let items: Vec<Value> = store
                    .list(target.resource, target.namespace.as_deref())
                    .into_iter()
                    .filter(|o| selector.matches(o))
                    .collect();
                Ok(ok_json(&json!({
                    "kind": format!("{}List", target.resource.kind()),
                    "apiVersion": target.resource.api_version(),
                    "metadata": {"resourceVersion": store.resource_version().to_string()},
                    "items": items,
                })))
            }
        }
        (&Method::GET, Some(name), None) => shared
            .store()
            .get(target.resource, &namespace, name)
            .map(|o| ok_json(&o))
            .ok_or_else(|| not_found(target.resource, name)),
        (&Method::POST, None, None) => parsed().and_then(|mut object| {
            set_namespace(&target, &mut object);
            if target.resource == Resource::CertificateSigningRequests {
                crate::csr::prepare_create(&mut object, &user)?;
            }
            shared.store().put(target.resource, object, true).map(|o| full(StatusCode::CREATED, serde_json::to_vec(&o).unwrap_or_default()))
        }),
        (&Method::PUT, Some(name), None) => parsed().and_then(|mut object| {
            check_name(&object, name)?;
            set_namespace(&target, &mut object);
            if shared.store().get(target.resource, &namespace, name).is_none() {
                return Err(not_found(target.resource, name));
            }
            shared.store().put(target.resource, object, false).map(|o| ok_json(&o))
        }),
        (&Method::PATCH, Some(name), None) => {
            // A patch is not an object: the patched result is checked instead.
            json_body().and_then(|patch| patch_object(&shared, &target, &namespace, name, &content_type, &patch, strict)).map(|o| ok_json(&o))
        }
        (&Method::DELETE, Some(name), None) => shared
            .store()
            .delete(target.resource, &namespace, name)
            .map(|o| ok_json(&o))
            .ok_or_else(|| not_found(target.resource, name)),
        (&Method::PUT | &Method::PATCH, Some(name), Some("status")) if matches!(target.resource, Resource::HttpRoutes | Resource::GrpcRoutes | Resource::AuthorizationPolicies) => {
            parsed().and_then(|body| write_status(&shared, &method, target.resource, &namespace, name, body)).map(|o| ok_json(&o))
        }
        (&Method::PUT, Some(name), Some(sub @ ("approval" | "status"))) if target.resource == Resource::CertificateSigningRequests => {
            parsed().and_then(|body| write_csr_status(&shared, name, sub, &body)).map(|o| ok_json(&o))
        }
        _ => Err(ApiError::new(405, "MethodNotAllowed", format!("{method} {path} is not supported by the fake API server"))),
    };
    result.unwrap_or_else(|e| error(&e))
}

fn not_found(resource: Resource, name: &str) -> ApiError {
    let plural = match resource.group() {
        "" => resource.plural().to_string(),
        group => format!("{}.{group}", resource.plural()),
    };
    ApiError::new(404, "NotFound", format!("{plural} \"{name}\" not found"))
}

/// `fieldValidation=Strict`: unknown top-level fields are a 400 (see
/// [`crate::openapi::unknown_fields`]).
fn check_fields(resource: Resource, object: &Value) -> Result<(), ApiError> {
    let unknown = crate::openapi::unknown_fields(resource, object);
    if unknown.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    Err(ApiError::new(400, "BadRequest", format!("{} in {}: {}", if fields.len() == 1 { "strict decoding error" } else { "strict decoding errors" }, resource.kind(), fields.join(", "))))
}

/// PATCH of an object: a JSON merge patch for any kind, a strategic merge patch for the
/// built-in kinds (not for custom resources, as a real server answers). The status of a
/// kind with a status subresource is left as it is.
fn patch_object(
    shared: &Shared,
    target: &Target,
    namespace: &str,
    name: &str,
    content_type: &str,
    patch: &Value,
    strict: bool,
) -> Result<Value, ApiError> {
    let resource = target.resource;
    let mut store = shared.store();
    let current = store.get(resource, namespace, name).ok_or_else(|| not_found(resource, name))?;
    let mut merged = current.clone();
    match content_type.split(';').next().unwrap_or("").trim() {
        "application/merge-patch+json" => merge_patch(&mut merged, patch),
        "application/strategic-merge-patch+json" if !resource.is_custom() => {
            crate::strategic::apply(&mut merged, patch).map_err(|e| ApiError::new(400, "BadRequest", e))?
        }
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format for {}: {other:?}", resource.plural()),
            ))
        }
    }
    if strict {
        check_fields(resource, &merged)?;
    }
    check_name(&merged, name)?;
    if resource.has_status_subresource() {
        if let (Some(map), Some(status)) = (merged.as_object_mut(), current.get("status")) {
            map.insert("status".into(), status.clone());
        }
    }
    set_namespace(target, &mut merged);
    store.put(resource, merged, false)
}

fn check_name(object: &Value, name: &str) -> Result<(), ApiError> {
    match object.pointer("/metadata/name").and_then(Value::as_str) {
        Some(n) if n == name => Ok(()),
        _ => Err(ApiError::new(400, "BadRequest", "the name of the object does not match the name on the URL")),
    }
}

fn set_namespace(target: &Target, object: &mut Value) {
    if let (Some(ns), Some(meta)) = (&target.namespace, object.get_mut("metadata").and_then(Value::as_object_mut)) {
        meta.insert("namespace".into(), json!(ns));
    }
}

fn write_status(shared: &Shared, method: &Method, resource: Resource, namespace: &str, name: &str, body: Value) -> Result<Value, ApiError> {
    let mut store = shared.store();
    let current = store.get(resource, namespace, name).ok_or_else(|| not_found(resource, name))?;
    let (status, expect) = if method == Method::PATCH {
        let mut merged = current.clone();
        merge_patch(&mut merged, &body);
        (merged.get("status").cloned().unwrap_or(Value::Null), None)
    } else {
        check_name(&body, name)?;
        let expect = body.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
        (body.get("status").cloned().unwrap_or(Value::Null), expect)
    };
    let written = store.put_status(resource, namespace, name, status.clone(), expect.as_deref())?;
    lock(&shared.status_writes).push(StatusWrite {
        resource,
        namespace: namespace.to_string(),
        name: name.to_string(),
        method: method.to_string(),
        status,
    });
    Ok(written)
}

/// PUT of a CSR's `approval` or `status` subresource (see [`crate::csr`]).
fn write_csr_status(shared: &Shared, name: &str, subresource: &str, body: &Value) -> Result<Value, ApiError> {
    check_name(body, name)?;
    let resource = Resource::CertificateSigningRequests;
    let mut store = shared.store();
    let current = store.get(resource, "", name).ok_or_else(|| not_found(resource, name))?;
    let status = crate::csr::new_status(&current, subresource, body)?;
    let expect = body.pointer("/metadata/resourceVersion").and_then(Value::as_str);
    store.put_status(resource, "", name, status, expect)
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let map = target.as_object_mut().expect("made an object above");
            for (k, v) in fields {
                if v.is_null() {
                    map.remove(k);
                } else {
                    merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn gone(rv: &str) -> Bytes {
    event_line(
        "ERROR",
        &ApiError::new(410, "Expired", format!("too old resource version: {rv}")).to_status(),
    )
}

/// Streams watch events for `target` after `since`.
fn watch(
    shared: Arc<Shared>,
    target: Target,
    selector: FieldSelector,
    since: &str,
    timeout_secs: u64,
    bookmarks: bool,
    shutdown: CancellationToken,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let matches = {
        let target = target.clone();
        move |o: &Value| {
            selector.matches(o)
                && target.namespace.as_deref().is_none_or(|ns| o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns))
        }
    };
    // Under the store lock: what to replay, and the live subscription from that point.
    let (initial, mut live, mut last_seen): (Vec<Bytes>, Option<broadcast::Receiver<Change>>, u64) = {
        let store = shared.store();
        let current = store.resource_version();
        match since.parse::<u64>() {
            Ok(rv) if rv != 0 && rv < store.compacted_below() => (vec![gone(since)], None, current),
            Ok(rv) if rv != 0 => {
                let replay = store
                    .changes_since(target.resource, rv)
                    .into_iter()
                    .filter(|c| matches(&c.object))
                    .map(|c| event_line(c.kind.as_str(), &c.object))
                    .collect();
                (replay, Some(store.subscribe()), current)
            }
            _ => {
                // "" or "0": the current state as ADDED events, then changes.
                let added = store
                    .list(target.resource, target.namespace.as_deref())
                    .into_iter()
                    .filter(|o| matches(o))
                    .map(|o| event_line("ADDED", &o))
                    .collect();
                (added, Some(store.subscribe()), current)
            }
        }
    };
    let resource = target.resource;
    let bookmark_interval = shared.bookmark_interval;
    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let Some(live) = live.as_mut() else { return };
        let deadline = tokio::time::sleep(Duration::from_secs(timeout_secs));
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(bookmark_interval);
        bookmark.tick().await;
        loop {
            let line = tokio::select! {
                _ = &mut deadline => return,
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                _ = bookmark.tick(), if bookmarks => event_line("BOOKMARK", &json!({
                    "apiVersion": resource.api_version(), "kind": resource.kind(),
                    "metadata": {"resourceVersion": last_seen.to_string()},
                })),
                change = live.recv() => match change {
                    Ok(change) => {
                        if change.resource_version <= last_seen {
                            continue;
                        }
                        last_seen = change.resource_version;
                        if change.resource != resource || !matches(&change.object) {
                            continue;
                        }
                        event_line(change.kind.as_str(), &change.object)
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => gone(&last_seen.to_string()),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, Infallible>(Frame::data(line)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::TRANSFER_ENCODING, "chunked")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query("fieldSelector=spec.nodeName%3Dnode-a&watch=true&x");
        assert_eq!(param(&q, "fieldSelector"), Some("spec.nodeName=node-a"));
        assert_eq!(param(&q, "watch"), Some("true"));
        assert_eq!(param(&q, "x"), Some(""));
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn merge_patch_replaces_lists_and_removes_nulls() {
        let mut v = json!({"a": {"b": 1, "c": [1, 2]}, "d": 1});
        merge_patch(&mut v, &json!({"a": {"c": [3]}, "d": null}));
        assert_eq!(v, json!({"a": {"b": 1, "c": [3]}}));
    }
}
