//! The signer's loop: watches Pods (into a [`PodIndex`]) and the CertificateSigningRequests
//! of [`SIGNER_NAME`](super::SIGNER_NAME), and for each pending request decides
//! ([`policy::decide`]), approves then signs, or denies, or marks it Failed.
//!
//! A request for an identity whose pod the signer has not seen on the node yet (the
//! agent asks as soon as the pod appears there; the signer's watch may lag) waits up to
//! [`SignerOptions::pod_grace`] before it is denied.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::StreamExt;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conditions::{self, Stage};
use super::pods::PodIndex;
use super::policy::{self, Approval, Denial, Policy};
use super::signing::Signer;
use super::{rbac, SIGNER_NAME};
use crate::kubernetes::rbac::Permission;
use ambit_proxy_core::rate_limited_log::KeyedRateLimitedLog;

/// How the signer decides and where it publishes.
#[derive(Clone, Debug)]
pub struct SignerOptions {
    pub policy: Policy,
    /// The agents' namespace: where the trust bundle ConfigMap is published.
    pub bundle_namespace: String,
    /// How long a request waits for its pod to be seen on the requester's node.
    pub pod_grace: Duration,
}

/// What the signer did, counted (served as metrics by [`super::endpoint`]).
#[derive(Debug, Default)]
pub struct SignerStats {
    pub issued: AtomicU64,
    pub denied: AtomicU64,
    pub failed: AtomicU64,
    /// Denials because the request itself was forged or broken.
    pub forged: AtomicU64,
    /// Denials by reason ([`Denial::reason`]).
    pub denied_by_reason: std::sync::Mutex<BTreeMap<&'static str, u64>>,
    /// The trust bundle is published and the initial Pod list is in.
    pub ready: std::sync::atomic::AtomicBool,
}

impl SignerStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn count_denial(&self, denial: &Denial) {
        self.denied.fetch_add(1, Ordering::Relaxed);
        if matches!(denial, Denial::Forged(_)) {
            self.forged.fetch_add(1, Ordering::Relaxed);
        }
        *self.denied_by_reason.lock().unwrap_or_else(|p| p.into_inner()).entry(denial.reason()).or_default() += 1;
    }
}

/// How long a finished request's name is remembered (agents delete theirs at once).
const FINISHED_MEMORY: Duration = Duration::from_secs(300);

enum Input {
    Pods(Box<Result<watcher::Event<Pod>, watcher::Error>>),
    Csrs(Box<Result<watcher::Event<CertificateSigningRequest>, watcher::Error>>),
    Tick,
}

struct State {
    api: Api<CertificateSigningRequest>,
    signer: Arc<dyn Signer>,
    options: SignerOptions,
    stats: Arc<SignerStats>,
    pods: PodIndex,
    /// The index being rebuilt by a (re-)list.
    relisting_pods: Option<PodIndex>,
    pods_synced: bool,
    /// Requests not done yet, by name, with when they were first seen.
    open: BTreeMap<String, (CertificateSigningRequest, Instant)>,
    /// Requests this signer finished (by name, when): a late watch event carrying an
    /// older version of one (e.g. its approval) must not start it over.
    finished: BTreeMap<String, Instant>,
    denial_log: KeyedRateLimitedLog<&'static str>,
}

/// Runs until `stop`: publishes the trust bundle, then serves requests.
pub async fn serve(client: Client, signer: Arc<dyn Signer>, options: SignerOptions, stats: Arc<SignerStats>, stop: CancellationToken) {
    publish_bundle(&client, signer.as_ref(), &options.bundle_namespace, &stop).await;
    let pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff().map(|e| Input::Pods(Box::new(e)));
    let csr_config = watcher::Config::default().fields(&format!("spec.signerName={SIGNER_NAME}"));
    let api: Api<CertificateSigningRequest> = Api::all(client);
    let csrs = watcher(api.clone(), csr_config).default_backoff().map(|e| Input::Csrs(Box::new(e)));
    let ticks = ticks(Duration::from_secs(1)).map(|_| Input::Tick);
    let mut inputs: BoxStream<'static, Input> = stream::select(stream::select(pods, csrs), ticks).boxed();
    let mut state = State {
        api,
        signer,
        options,
        stats,
        pods: PodIndex::default(),
        relisting_pods: None,
        pods_synced: false,
        open: BTreeMap::new(),
        finished: BTreeMap::new(),
        denial_log: KeyedRateLimitedLog::new(Duration::from_secs(10)),
    };
    loop {
        let input = tokio::select! {
            _ = stop.cancelled() => return,
            input = inputs.next() => match input { Some(i) => i, None => return },
        };
        state.take(input);
        if state.pods_synced {
            state.process_open().await;
        }
    }
}

fn ticks(period: Duration) -> impl futures::Stream<Item = ()> {
    stream::unfold(tokio::time::interval(period), |mut interval| async move {
        interval.tick().await;
        Some(((), interval))
    })
}

/// Publishes the bundle, retrying (with a growing pause) until it succeeds or `stop`.
async fn publish_bundle(client: &Client, signer: &dyn Signer, namespace: &str, stop: &CancellationToken) {
    let mut pause = Duration::from_millis(200);
    loop {
        match super::bundle::publish(client, namespace, signer.trust_bundle()).await {
            Ok(changed) => {
                tracing::info!(namespace, changed, "published the trust bundle ConfigMap {}", super::TRUST_BUNDLE_CONFIGMAP);
                return;
            }
            Err(error) => tracing::warn!(%error, "publishing the trust bundle; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

impl State {
    fn take(&mut self, input: Input) {
        match input {
            Input::Tick => self.finished.retain(|_, at| at.elapsed() < FINISHED_MEMORY),
            Input::Pods(event) => match *event {
                Ok(event) => self.take_pod(event),
                Err(error) => tracing::warn!(%error, "watching pods (needs {} and {})", rbac::PODS.list, rbac::PODS.watch),
            },
            Input::Csrs(event) => match *event {
                Ok(event) => self.take_csr(event),
                Err(error) => tracing::warn!(%error, "watching CertificateSigningRequests (needs {} and {})", rbac::CSRS.list, rbac::CSRS.watch),
            },
        }
    }

    fn take_pod(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Apply(pod) => self.pods.apply(&pod),
            watcher::Event::Delete(pod) => self.pods.delete(&pod),
            watcher::Event::Init => self.relisting_pods = Some(PodIndex::default()),
            watcher::Event::InitApply(pod) => self.relisting_pods.get_or_insert_with(PodIndex::default).apply(&pod),
            watcher::Event::InitDone => {
                self.pods = self.relisting_pods.take().unwrap_or_default();
                self.pods_synced = true;
                self.stats.ready.store(true, Ordering::Relaxed);
            }
        }
    }

    fn take_csr(&mut self, event: watcher::Event<CertificateSigningRequest>) {
        match event {
            watcher::Event::Apply(csr) | watcher::Event::InitApply(csr) => self.track(csr),
            watcher::Event::Delete(csr) => {
                let name = csr.metadata.name.unwrap_or_default();
                self.open.remove(&name);
                self.finished.remove(&name);
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    fn track(&mut self, csr: CertificateSigningRequest) {
        let name = csr.metadata.name.clone().unwrap_or_default();
        if csr.spec.signer_name != SIGNER_NAME || self.finished.contains_key(&name) {
            return;
        }
        if conditions::stage(&csr) == Stage::Done {
            self.open.remove(&name);
            self.finished.insert(name, Instant::now());
            return;
        }
        let seen = self.open.get(&name).map(|(_, at)| *at).unwrap_or_else(Instant::now);
        self.open.insert(name, (csr, seen));
    }

    async fn process_open(&mut self) {
        let open: Vec<(CertificateSigningRequest, Instant)> = self.open.values().cloned().collect();
        for (csr, seen) in open {
            if let Some(updated) = self.process(csr, seen).await {
                self.track(updated);
            }
        }
    }

    /// Moves one request on; the object as written, if it was.
    async fn process(&mut self, csr: CertificateSigningRequest, seen: Instant) -> Option<CertificateSigningRequest> {
        let name = csr.metadata.name.clone().unwrap_or_default();
        let verdict = policy::decide(&csr.spec, &self.options.policy, &self.pods);
        match (conditions::stage(&csr), verdict) {
            (Stage::Done, _) => None,
            (_, Err(Denial::NotOnNode { .. })) if seen.elapsed() < self.options.pod_grace => None,
            (Stage::Pending, Err(denial)) => self.deny(&csr, &name, denial).await,
            (Stage::Pending, Ok(approval)) => {
                let approved = self.write_approval(&csr, &name, &approval).await?;
                self.issue(approved, &name, &approval).await
            }
            (Stage::Approved, Ok(approval)) => self.issue(csr, &name, &approval).await,
            (Stage::Approved, Err(denial)) => self.fail(&csr, &name, denial.reason(), &denial.to_string()).await,
        }
    }

    async fn deny(&mut self, csr: &CertificateSigningRequest, name: &str, denial: Denial) -> Option<CertificateSigningRequest> {
        let denied = conditions::with_condition(csr, "Denied", denial.reason(), &denial.to_string());
        let written = self.put(name, "approval", &denied, rbac::CSR_APPROVAL_UPDATE).await?;
        self.stats.count_denial(&denial);
        if let Some(suppressed) = self.denial_log.check(&denial.reason()) {
            tracing::warn!(csr = name, requester = csr.spec.username.as_deref().unwrap_or(""), reason = denial.reason(), suppressed, "denied: {denial}");
        }
        Some(written)
    }

    async fn write_approval(&mut self, csr: &CertificateSigningRequest, name: &str, approval: &Approval) -> Option<CertificateSigningRequest> {
        let message = format!("{} runs a pod of this identity ({})", approval.node, approval.id);
        let approved = conditions::with_condition(csr, "Approved", "AmbitNodeAuthorized", &message);
        self.put(name, "approval", &approved, rbac::CSR_APPROVAL_UPDATE).await
    }

    async fn issue(&mut self, csr: CertificateSigningRequest, name: &str, approval: &Approval) -> Option<CertificateSigningRequest> {
        let pem = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
        match self.signer.sign(&pem, &approval.id, approval.lifetime) {
            Ok(chain) => {
                let mut signed = csr.clone();
                signed.status.get_or_insert_with(Default::default).certificate = Some(k8s_openapi::ByteString(chain.into_bytes()));
                let written = self.put(name, "status", &signed, rbac::CSR_STATUS_UPDATE).await?;
                self.stats.issued.fetch_add(1, Ordering::Relaxed);
                tracing::info!(csr = name, id = %approval.id, node = approval.node, lifetime = ?approval.lifetime, "issued");
                Some(written)
            }
            Err(error) => self.fail(&csr, name, "SigningFailed", &error.to_string()).await,
        }
    }

    async fn fail(&mut self, csr: &CertificateSigningRequest, name: &str, reason: &str, message: &str) -> Option<CertificateSigningRequest> {
        let failed = conditions::with_condition(csr, "Failed", reason, message);
        let written = self.put(name, "status", &failed, rbac::CSR_STATUS_UPDATE).await?;
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(csr = name, reason, "failed: {message}");
        Some(written)
    }

    /// PUT of a subresource; a conflict or error is logged and retried on the next pass.
    async fn put(&self, name: &str, subresource: &str, csr: &CertificateSigningRequest, needs: Permission) -> Option<CertificateSigningRequest> {
        match self.api.replace_subresource(subresource, name, &PostParams::default(), csr).await {
            Ok(written) => Some(written),
            Err(error) => {
                tracing::warn!(csr = name, %error, "writing {subresource} (needs {needs} and the signer permissions {} / {} for {SIGNER_NAME})", rbac::SIGNER_APPROVE, rbac::SIGNER_SIGN);
                None
            }
        }
    }
}
