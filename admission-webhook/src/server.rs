//! The HTTP side: `POST /validate/{policy}` answers AdmissionReview v1 for one policy (the
//! operator registers one webhook per ZastavaPolicy, so the API server has already applied
//! its namespace selector), `/readyz` on its own port, Prometheus metrics.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kube::core::admission::Operation;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};
use serde_json::json;
use stellaops_tls::ReloadableCert;

use crate::cache::Cache;
use crate::cosign;
use crate::evidence::{EvidenceSource, FoundAttestation, FoundSignature};
use crate::policy::{
    self, CompiledPolicy, Decision, Evidence, Known, Lookup, ScanRecord, Violation,
};
use crate::review;

/// Tunables of the webhook.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The operator's namespace, never checked.
    pub own_namespace: String,
    /// Most cached lookups.
    pub cache_capacity: usize,
    /// How long a verified signature is trusted without asking the registry again.
    pub signature_ttl: Duration,
    /// How long a missing or bad signature is remembered (short: a fix should show soon).
    pub negative_ttl: Duration,
    /// How long a tag's digest and a digest's latest scan are remembered.
    pub fact_ttl: Duration,
    /// Reviews needing lookups answered at once; one more is answered at once, as if its
    /// lookups had timed out (the policy's `onTimeout` applies).
    pub max_in_flight: usize,
    /// How long a lookup may run in the background after the review that started it was
    /// answered (its result still fills the cache for the next review).
    pub lookup_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            own_namespace: "stellaops-system".into(),
            cache_capacity: 10_000,
            signature_ttl: Duration::from_secs(600),
            negative_ttl: Duration::from_secs(30),
            fact_ttl: Duration::from_secs(30),
            max_in_flight: 256,
            lookup_timeout: Duration::from_secs(30),
        }
    }
}

/// Webhook metrics.
#[derive(Clone)]
pub struct Metrics {
    /// Decisions by policy and outcome (`allow`, `warn`, `dry-run-deny`, `deny`, `invalid`).
    pub decisions: IntCounterVec,
    /// Time to answer, by policy.
    pub latency: HistogramVec,
    /// Cache lookups by kind (`digest`, `signature`, `scan`) and result (`hit`, `miss`).
    pub cache: IntCounterVec,
    /// Lookups that failed (registry or database unavailable), by kind.
    pub lookup_errors: IntCounterVec,
}

impl Metrics {
    /// Register the webhook's metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let decisions = IntCounterVec::new(
            Opts::new(
                "zastava_admission_decisions_total",
                "Admission decisions by policy and outcome",
            ),
            &["policy", "decision"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "zastava_admission_duration_seconds",
                "Time to answer an AdmissionReview",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["policy"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new("zastava_cache_lookups_total", "Verification cache lookups"),
            &["kind", "result"],
        )?;
        let lookup_errors = IntCounterVec::new(
            Opts::new(
                "zastava_lookup_errors_total",
                "Registry or database lookups that failed",
            ),
            &["kind"],
        )?;
        // Zero from the start, so the error ratio exists before the first failed lookup.
        for kind in ["digest", "signature", "attestation", "scan"] {
            lookup_errors.with_label_values(&[kind]);
        }
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(cache.clone()))?;
        registry.register(Box::new(lookup_errors.clone()))?;
        Ok(Metrics {
            decisions,
            latency,
            cache,
            lookup_errors,
        })
    }
}

#[derive(Clone)]
enum Fact {
    Digest(String),
    Signature(Result<String, String>),
    Attestations(Vec<Result<String, String>>),
    Scan(Option<ScanRecord>),
}

/// The outcome of one shared lookup.
#[derive(Clone)]
enum Flight {
    Digest(Result<String, String>),
    Signatures(Result<Vec<FoundSignature>, String>),
    Attestations(Result<Vec<FoundAttestation>, String>),
    Scan(Result<Option<ScanRecord>, String>),
    Failed(String),
}

type Flights = Arc<Mutex<HashMap<String, Shared<BoxFuture<'static, Flight>>>>>;

/// The parts of the cache key of a signature verification: the policy's generation and
/// key fingerprints (a new key or spec is a miss), the image's repository and the digest.
fn signature_cache_key<'k>(
    policy: &'k CompiledPolicy,
    image: &'k str,
    digest: &'k str,
) -> [&'k str; 6] {
    [
        "signature|",
        &policy.cache_key,
        "|",
        repository_of(image),
        "|",
        digest,
    ]
}

/// The parts of the cache key of an attestation verification, as [`signature_cache_key`].
fn attestation_cache_key<'k>(
    policy: &'k CompiledPolicy,
    image: &'k str,
    digest: &'k str,
) -> [&'k str; 6] {
    [
        "attestation|",
        &policy.cache_key,
        "|",
        repository_of(image),
        "|",
        digest,
    ]
}

/// The parts of the cache key of a digest's verdict (under a ScanPolicy's digest or not).
fn scan_cache_key<'k>(digest: &'k str, policy_digest: Option<&'k str>) -> [&'k str; 4] {
    match policy_digest {
        Some(policy_digest) => ["scan|", policy_digest, "|", digest],
        None => ["scan|", digest, "", ""],
    }
}

/// Run `f` with the key made of `parts`, assembled in a buffer this thread reuses: a cache
/// lookup that hits allocates nothing. `f` must not call `with_key` itself.
fn with_key<R>(parts: &[&str], f: impl FnOnce(&str) -> R) -> R {
    thread_local!(static KEY: RefCell<String> = RefCell::new(String::with_capacity(256)));
    KEY.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut key) => {
            key.clear();
            parts.iter().for_each(|part| key.push_str(part));
            f(&key)
        }
        // Not reached (`f` never nests), but never a panic on the request path.
        Err(_) => f(&parts.concat()),
    })
}

/// The decisions a policy's counter series are labelled with (plus `invalid`).
const DECISION_LABELS: [&str; 6] = [
    "allow",
    "warn",
    "dry-run-deny",
    "deny",
    "unchecked-allow",
    "invalid",
];

/// A loaded policy with its metric series, each looked up in its vector once (on first
/// use, so a series appears when it first counts, as with `with_label_values`), not on
/// every request.
struct Loaded {
    policy: Arc<CompiledPolicy>,
    decisions: [OnceLock<IntCounter>; DECISION_LABELS.len()],
    latency: OnceLock<Histogram>,
}

impl Loaded {
    fn new(policy: CompiledPolicy) -> Self {
        Loaded {
            policy: Arc::new(policy),
            decisions: Default::default(),
            latency: OnceLock::new(),
        }
    }

    fn count(&self, metrics: &Metrics, decision: &str) {
        let Some(index) = DECISION_LABELS.iter().position(|l| *l == decision) else {
            metrics
                .decisions
                .with_label_values(&[&self.policy.name, decision])
                .inc();
            return;
        };
        self.decisions[index]
            .get_or_init(|| {
                metrics
                    .decisions
                    .with_label_values(&[&self.policy.name, decision])
            })
            .inc();
    }

    fn observe(&self, metrics: &Metrics, seconds: f64) {
        self.latency
            .get_or_init(|| metrics.latency.with_label_values(&[&self.policy.name]))
            .observe(seconds);
    }
}

/// The index in `cache_counters` of the hit counter of a lookup `kind` (its miss counter
/// follows it). Counters are resolved once: this runs for every image of every request.
fn hit_counter(kind: &str) -> usize {
    match kind {
        "digest" => 0,
        "signature" => 2,
        "attestation" => 6,
        _ => 4,
    }
}

/// The verdict that counts when `requireScan` judges under a ScanPolicy without a digest
/// to judge by: nothing counts (never an outage, so `onTimeout` does not let it through).
fn unjudgeable_scan(why: &str) -> ScanRecord {
    ScanRecord {
        verdict: stellaops_crds::scan::Verdict::Fail,
        finished_at: chrono::Utc::now(),
        unverified: Some(format!("{why}, and requireScan judges under it")),
    }
}

fn repository_of(image: &str) -> &str {
    let repository = image.split('@').next().unwrap_or(image);
    match repository.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => repository,
    }
}

/// The `policy` label of requests for a policy this replica has not loaded: a name from the
/// URL never becomes a label (an unbounded set of series).
pub const UNLOADED_POLICY_LABEL: &str = "(not loaded)";

/// The webhook's state.
pub struct Webhook {
    settings: Settings,
    /// Read on every review without a lock or a reference count (replaced as a whole).
    policies: ArcSwap<HashMap<String, Loaded>>,
    evidence: Arc<dyn EvidenceSource>,
    cache: Arc<Cache<Fact>>,
    flights: Flights,
    in_flight: Arc<tokio::sync::Semaphore>,
    metrics: Metrics,
    outbox: Option<sqlx::PgPool>,
    synced: AtomicBool,
    cache_counters: [prometheus::IntCounter; 8],
    /// Bumped whenever cached verdicts are forgotten: a scan lookup that was running then
    /// leaves nothing in the cache (it may have read the row the change replaced).
    scan_epoch: Arc<AtomicU64>,
    /// The serving certificate (readiness waits for it).
    pub certificate: Arc<ReloadableCert>,
}

impl Webhook {
    /// A webhook with no policies yet (not ready until [`Webhook::set_policies`]).
    pub fn new(
        settings: Settings,
        evidence: Arc<dyn EvidenceSource>,
        outbox: Option<sqlx::PgPool>,
        metrics: Metrics,
        certificate: Arc<ReloadableCert>,
    ) -> Arc<Self> {
        let counter = |kind, result| metrics.cache.with_label_values(&[kind, result]);
        let cache_counters = [
            counter("digest", "hit"),
            counter("digest", "miss"),
            counter("signature", "hit"),
            counter("signature", "miss"),
            counter("scan", "hit"),
            counter("scan", "miss"),
            counter("attestation", "hit"),
            counter("attestation", "miss"),
        ];
        Arc::new(Webhook {
            cache_counters,
            cache: Arc::new(Cache::new(settings.cache_capacity)),
            flights: Default::default(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight.max(1))),
            settings,
            policies: ArcSwap::from_pointee(HashMap::new()),
            evidence,
            metrics,
            outbox,
            synced: AtomicBool::new(false),
            scan_epoch: Arc::new(AtomicU64::new(0)),
            certificate,
        })
    }

    /// Forget the cached verdicts of `digests` (under any ScanPolicy): the next review
    /// reads their latest result again. Returns how many cache entries went.
    pub fn forget_scans<'d>(&self, digests: impl IntoIterator<Item = &'d str>) -> usize {
        let digests: BTreeSet<&str> = digests.into_iter().collect();
        if digests.is_empty() {
            return 0;
        }
        // First the epoch, then the entries: a lookup inserting after this checks the epoch.
        self.scan_epoch.fetch_add(1, Ordering::SeqCst);
        self.cache.forget(|key| {
            key.strip_prefix("scan|")
                .and_then(|rest| rest.rsplit('|').next())
                .is_some_and(|digest| digests.contains(digest))
        })
    }

    /// Forget a digest's cached verdict as soon as a re-evaluation changes it (a VEX
    /// statement, a ScanPolicy change, a waiver's expiry: each writes `rescan.delta` with
    /// the new result), so admission follows at once rather than when the cache entry
    /// expires. Follows the outbox of `pool` (the webhook's role may read it); never returns.
    pub async fn forget_changed_verdicts(self: Arc<Self>, pool: sqlx::PgPool) {
        stellaops_store::outbox::follow(
            pool,
            "rescan.delta",
            Duration::from_secs(10),
            move |events| {
                let digests: Vec<&str> = events
                    .iter()
                    .filter_map(|e| e.payload["imageDigest"].as_str())
                    .collect();
                let forgotten = self.forget_scans(digests.iter().copied());
                tracing::debug!(
                    events = events.len(),
                    forgotten,
                    "verdicts changed by re-evaluations"
                );
            },
        )
        .await
    }

    /// Replace the policies (all of them: one that is gone stops applying).
    pub fn set_policies(&self, policies: impl IntoIterator<Item = CompiledPolicy>) {
        let map = policies
            .into_iter()
            .map(|p| (p.name.clone(), Loaded::new(p)))
            .collect();
        self.policies.store(Arc::new(map));
        self.synced.store(true, Ordering::Release);
    }

    /// The policy named `name`.
    pub fn policy(&self, name: &str) -> Option<Arc<CompiledPolicy>> {
        self.policies
            .load()
            .get(name)
            .map(|loaded| loaded.policy.clone())
    }

    /// What this replica verified of `digest` (run as `image`) under the policy named
    /// `policy_name`, without waiting and without counting as a review's cache lookup:
    /// `None` when the policy is not loaded or nothing is cached (expired or never asked).
    pub fn verified_signature(
        &self,
        policy_name: &str,
        image: &str,
        digest: &str,
    ) -> Option<Result<String, String>> {
        let policy = self.policy(policy_name)?;
        policy.signature.as_ref()?;
        match with_key(&signature_cache_key(&policy, image, digest), |key| {
            self.cache.get(key, Instant::now())
        }) {
            Some(Fact::Signature(result)) => Some(result),
            _ => None,
        }
    }

    /// What this replica verified of `digest`'s attestations under the policy named
    /// `policy_name` (each requirement's outcome), as [`Webhook::verified_signature`].
    pub fn verified_attestations(
        &self,
        policy_name: &str,
        image: &str,
        digest: &str,
    ) -> Option<Vec<Result<String, String>>> {
        let policy = self.policy(policy_name)?;
        if policy.attestations.is_empty() {
            return None;
        }
        match with_key(&attestation_cache_key(&policy, image, digest), |key| {
            self.cache.get(key, Instant::now())
        }) {
            Some(Fact::Attestations(outcomes)) => Some(outcomes),
            _ => None,
        }
    }

    /// Verify `digest`'s signature under the policy named `policy_name` in the background
    /// (the result fills the cache [`Webhook::verified_signature`] reads), bounded by
    /// `lookup_timeout`; does nothing for a policy not loaded here.
    pub fn verify_in_background(self: &Arc<Self>, policy_name: &str, image: &str, digest: &str) {
        let Some(policy) = self.policy(policy_name) else {
            return;
        };
        if policy.signature.is_none() && policy.attestations.is_empty() {
            return;
        }
        let (webhook, image, digest) = (self.clone(), image.to_string(), digest.to_string());
        let limit = self.settings.lookup_timeout;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(limit, async {
                if policy.signature.is_some() {
                    let _ = webhook.signature_of(&policy, &image, &digest).await;
                }
                if !policy.attestations.is_empty() {
                    let _ = webhook.attestations_of(&policy, &image, &digest).await;
                }
            })
            .await;
        });
    }

    /// Whether policies are synced and a certificate is being served. With no policy
    /// there is nothing to serve (no webhook configuration names this one), so the
    /// certificate, issued with the first policy, is not waited for.
    pub fn is_ready(&self) -> bool {
        self.synced.load(Ordering::Acquire)
            && (self.certificate.is_loaded() || self.policies.load().is_empty())
    }

    /// Run `lookup` once for every concurrent caller asking for `key`. It runs as its own
    /// task bounded by `lookup_timeout`: a caller whose deadline passes stops waiting, the
    /// lookup finishes (and fills the cache) for whoever asks next.
    async fn shared_lookup(&self, key: String, lookup: BoxFuture<'static, Flight>) -> Flight {
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights.get(&key) {
                Some(flight) => flight.clone(),
                None => {
                    let registry = self.flights.clone();
                    let limit = self.settings.lookup_timeout;
                    let finished = key.clone();
                    let task = tokio::spawn(async move {
                        let outcome =
                            tokio::time::timeout(limit, lookup)
                                .await
                                .unwrap_or_else(|_| {
                                    Flight::Failed(format!(
                                        "no answer within {} s",
                                        limit.as_secs_f64()
                                    ))
                                });
                        registry
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&finished);
                        outcome
                    });
                    let flight = async move {
                        task.await
                            .unwrap_or_else(|e| Flight::Failed(format!("lookup failed: {e}")))
                    }
                    .boxed()
                    .shared();
                    flights.insert(key, flight.clone());
                    flight
                }
            }
        };
        flight.await
    }

    fn cached(&self, kind: &str, key: &str) -> Option<Fact> {
        let hit = self.cache.get(key, Instant::now());
        self.cache_counters[hit_counter(kind) + usize::from(hit.is_none())].inc();
        hit
    }

    fn lookup_failed(&self, kind: &str, error: String) -> String {
        self.metrics.lookup_errors.with_label_values(&[kind]).inc();
        error
    }

    async fn digest_of(&self, image: &str) -> Result<String, String> {
        if let Some(digest) = policy::pinned_digest(image) {
            return Ok(digest.to_string());
        }
        if let Some(Fact::Digest(digest)) =
            with_key(&["digest|", image], |key| self.cached("digest", key))
        {
            return Ok(digest);
        }
        let key = ["digest|", image].concat();
        let (evidence, cache, ttl) = (
            self.evidence.clone(),
            self.cache.clone(),
            self.settings.fact_ttl,
        );
        let (image, cache_key) = (image.to_string(), key.clone());
        let lookup = async move {
            let result = evidence.resolve_digest(&image).await;
            if let Ok(digest) = &result {
                cache.insert(cache_key, Fact::Digest(digest.clone()), ttl, Instant::now());
            }
            Flight::Digest(result)
        };
        match self.shared_lookup(key, lookup.boxed()).await {
            Flight::Digest(result) => result.map_err(|e| self.lookup_failed("digest", e)),
            Flight::Failed(e) => Err(self.lookup_failed("digest", e)),
            _ => Err("internal error: mismatched lookup".into()),
        }
    }

    /// The fingerprint of the key that verified `digest`'s signature, or why none did;
    /// the outer error says the signatures could not be fetched at all.
    async fn signature_of(
        &self,
        policy: &CompiledPolicy,
        image: &str,
        digest: &str,
    ) -> Result<Result<String, String>, String> {
        let Some(check) = &policy.signature else {
            return Ok(Err("no signature check".into()));
        };
        let parts = signature_cache_key(policy, image, digest);
        if let Some(Fact::Signature(result)) = with_key(&parts, |key| self.cached("signature", key))
        {
            return Ok(result);
        }
        let key = parts.concat();
        let evidence = self.evidence.clone();
        let (owned_image, owned_digest) = (image.to_string(), digest.to_string());
        let lookup = async move {
            Flight::Signatures(evidence.signatures(&owned_image, &owned_digest).await)
        };
        let found = match self
            .shared_lookup(format!("signatures|{image}|{digest}"), lookup.boxed())
            .await
        {
            Flight::Signatures(found) => found.map_err(|e| self.lookup_failed("signature", e))?,
            Flight::Failed(e) => return Err(self.lookup_failed("signature", e)),
            _ => return Err("internal error: mismatched lookup".into()),
        };
        let result = if found.is_empty() {
            Err(format!(
                "no cosign signature (neither an OCI referrer of the digest nor the tag {} in the image's repository); sign it with cosign",
                cosign::signature_tag(digest)
            ))
        } else {
            let mut last = String::new();
            let mut verified = None;
            for signature in &found {
                if let Some(bundle) = &signature.bundle {
                    match crate::bundle::verify_image_signature(
                        check,
                        bundle,
                        digest,
                        chrono::Utc::now(),
                    ) {
                        Ok(signer) => {
                            verified = Some(signer);
                            break;
                        }
                        Err(e) => last = format!("Sigstore bundle ({}): {e}", signature.found_at),
                    }
                    continue;
                }
                let found = crate::keyless::KeylessSignature {
                    payload: &signature.payload,
                    signature_b64: &signature.signature,
                    certificate_pem: signature.certificate.as_deref(),
                    rekor_bundle: signature.rekor_bundle.as_deref(),
                    rfc3161_timestamp: signature.rfc3161_timestamp.as_deref(),
                };
                match cosign::verify_with(check, &found, digest, chrono::Utc::now()) {
                    Ok(fingerprint) => {
                        verified = Some(fingerprint);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            verified.ok_or(format!(
                "{} signature(s) found, none valid: {last}",
                found.len()
            ))
        };
        let ttl = if result.is_ok() {
            self.settings.signature_ttl
        } else {
            self.settings.negative_ttl
        };
        self.cache
            .insert(key, Fact::Signature(result.clone()), ttl, Instant::now());
        Ok(result)
    }

    /// Each attestation requirement's outcome for `digest`; the error says the attestations
    /// could not be fetched at all. Verification (signatures, CEL) runs on a blocking
    /// thread; outcomes are cached like signature verdicts.
    async fn attestations_of(
        &self,
        policy: &Arc<CompiledPolicy>,
        image: &str,
        digest: &str,
    ) -> Result<Vec<Result<String, String>>, String> {
        if policy.attestations.is_empty() {
            return Ok(Vec::new());
        }
        let parts = attestation_cache_key(policy, image, digest);
        if let Some(Fact::Attestations(outcomes)) =
            with_key(&parts, |key| self.cached("attestation", key))
        {
            return Ok(outcomes);
        }
        let key = parts.concat();
        let evidence = self.evidence.clone();
        let (owned_image, owned_digest) = (image.to_string(), digest.to_string());
        let lookup = async move {
            Flight::Attestations(evidence.attestations(&owned_image, &owned_digest).await)
        };
        let found = match self
            .shared_lookup(format!("attestations|{image}|{digest}"), lookup.boxed())
            .await
        {
            Flight::Attestations(found) => {
                found.map_err(|e| self.lookup_failed("attestation", e))?
            }
            Flight::Failed(e) => return Err(self.lookup_failed("attestation", e)),
            _ => return Err("internal error: mismatched lookup".into()),
        };
        let (judged, owned_digest) = (policy.clone(), digest.to_string());
        let outcomes = tokio::task::spawn_blocking(move || {
            let now = chrono::Utc::now();
            judged
                .attestations
                .iter()
                .map(|check| {
                    crate::attestation::judge(check, &found, &owned_digest, now)
                        .map_err(|failure| failure.to_string())
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| format!("attestation verification failed: {e}"))?;
        let ttl = if outcomes.iter().all(Result::is_ok) {
            self.settings.signature_ttl
        } else {
            self.settings.negative_ttl
        };
        self.cache.insert(
            key,
            Fact::Attestations(outcomes.clone()),
            ttl,
            Instant::now(),
        );
        Ok(outcomes)
    }

    /// The verdict of `digest` that counts: its latest, or with a ScanPolicy (`under`) its
    /// latest decided under that policy's current digest.
    async fn scan_of(
        &self,
        digest: &str,
        under: Option<&policy::ScanPolicyUnder>,
    ) -> Result<Option<ScanRecord>, String> {
        let under = match under {
            Some(under) => match &under.digest {
                Ok(policy_digest) => Some((under.name.as_str(), policy_digest.as_str())),
                Err(why) => return Ok(Some(unjudgeable_scan(why))),
            },
            None => None,
        };
        let parts = scan_cache_key(digest, under.map(|(_, d)| d));
        if let Some(Fact::Scan(record)) = with_key(&parts, |key| self.cached("scan", key)) {
            return Ok(record);
        }
        let key = parts.concat();
        let under = under.map(|(name, d)| (name.to_string(), d.to_string()));
        let (evidence, cache, ttl) = (
            self.evidence.clone(),
            self.cache.clone(),
            self.settings.fact_ttl,
        );
        let (digest, cache_key) = (digest.to_string(), key.clone());
        let epoch = self.scan_epoch.clone();
        let started = epoch.load(Ordering::SeqCst);
        let lookup = async move {
            let result = match &under {
                Some((name, policy_digest)) => {
                    evidence
                        .latest_scan_under(&digest, name, policy_digest)
                        .await
                }
                None => evidence.latest_scan(&digest).await,
            };
            if let Ok(record) = &result {
                cache.insert(
                    cache_key.clone(),
                    Fact::Scan(record.clone()),
                    ttl,
                    Instant::now(),
                );
                // Verdicts were forgotten while this read: what it read may be older.
                if epoch.load(Ordering::SeqCst) != started {
                    cache.forget(|key| key == cache_key);
                }
            }
            Flight::Scan(result)
        };
        match self.shared_lookup(key, lookup.boxed()).await {
            Flight::Scan(result) => result.map_err(|e| self.lookup_failed("scan", e)),
            Flight::Failed(e) => Err(self.lookup_failed("scan", e)),
            _ => Err("internal error: mismatched lookup".into()),
        }
    }

    /// The findings on `image` when every fact `policy` needs of it is cached (or pinned in
    /// the reference): what judging [`Webhook::evidence_for`]'s evidence would find, counted
    /// as the same cache hits, judged on the cached facts in place (nothing copied, no task,
    /// timer or wait). `None`, with nothing counted, when anything must be looked up: then
    /// `evidence_for` does it all. Reads through `cache` (one lock for all of a review's
    /// images) as of `now`, judges as of `at`, and adds the hits to `hits` (indexed as
    /// `cache_counters`), which the caller counts once per review.
    fn judge_cached(
        &self,
        cache: &crate::cache::Reader<'_, Fact>,
        (now, at): (Instant, chrono::DateTime<chrono::Utc>),
        policy: &CompiledPolicy,
        image: &str,
        hits: &mut [u64; 8],
    ) -> Option<Vec<policy::Finding>> {
        let needs = policy::needs(policy);
        if !needs.digest || image.is_empty() {
            return Some(policy::judge(policy, image, Known::default(), at));
        }
        let get = |parts: &[&str]| with_key(parts, |key| cache.peek(key, now));
        let (digest, digest_hit) = match policy::pinned_digest(image) {
            Some(pinned) => (pinned, false),
            None => match get(&["digest|", image]) {
                Some(Fact::Digest(digest)) => (digest.as_str(), true),
                _ => return None,
            },
        };
        let signature = match &policy.signature {
            Some(_) => match get(&signature_cache_key(policy, image, digest)) {
                Some(Fact::Signature(result)) => Some(result.as_deref().map_err(String::as_str)),
                _ => return None,
            },
            None => None,
        };
        let attestations = if needs.attestations {
            match get(&attestation_cache_key(policy, image, digest)) {
                Some(Fact::Attestations(outcomes)) => Some(Ok(outcomes.as_slice())),
                _ => return None,
            }
        } else {
            None
        };
        let unjudgeable;
        let (scan, scan_hit) = match &policy.scan {
            None => (None, false),
            Some(scan) => match scan.under.as_ref().map(|under| &under.digest) {
                // As `scan_of`: no ScanPolicy digest to judge by, nothing counts.
                Some(Err(why)) => {
                    unjudgeable = unjudgeable_scan(why);
                    (Some(Ok(Some(&unjudgeable))), false)
                }
                under => match get(&scan_cache_key(
                    digest,
                    under.and_then(|d| d.as_ref().ok()).map(String::as_str),
                )) {
                    Some(Fact::Scan(record)) => (Some(Ok(record.as_ref())), true),
                    _ => return None,
                },
            },
        };
        // Counted as `cached` counts them.
        for (hit, kind) in [
            (digest_hit, "digest"),
            (signature.is_some(), "signature"),
            (attestations.is_some(), "attestation"),
            (scan_hit, "scan"),
        ] {
            if hit {
                hits[hit_counter(kind)] += 1;
            }
        }
        let known = Known {
            digest: Some(Ok(digest)),
            signature,
            attestations,
            scan,
            unavailable: &[],
        };
        Some(policy::judge(policy, image, known, at))
    }

    /// Everything `policy` needs to know of `image`, as far as it is known by `deadline`.
    /// A lookup still running then is recorded as unavailable with an error saying so; one
    /// that failed (registry or database unreachable) likewise.
    pub async fn evidence_for(
        &self,
        policy: &Arc<CompiledPolicy>,
        image: &str,
        deadline: tokio::time::Instant,
    ) -> Evidence {
        let needs = policy::needs(policy);
        let mut evidence = Evidence::default();
        if !needs.digest || image.is_empty() {
            return evidence;
        }
        let late = |what: &str| {
            format!(
                "{what} did not answer within {:.1} s, so this was not checked",
                policy.budget.as_secs_f64()
            )
        };
        let digest = match tokio::time::timeout_at(deadline, self.digest_of(image)).await {
            Ok(digest) => digest,
            Err(_) => {
                evidence.unavailable.push(Lookup::Digest);
                Err(self.lookup_failed("digest", late("the registry")))
            }
        };
        evidence.digest = Some(digest.clone());
        let Ok(digest) = digest else {
            return evidence;
        };
        let (signature, attestations, scan) = tokio::join!(
            async {
                if !needs.signature {
                    return None;
                }
                let found =
                    tokio::time::timeout_at(deadline, self.signature_of(policy, image, &digest))
                        .await;
                Some(match found {
                    Ok(Ok(verified)) => Ok(verified),
                    Ok(Err(unreachable)) => Err(Err(unreachable)),
                    Err(_) => Err(Err(self.lookup_failed("signature", late("the registry")))),
                })
            },
            async {
                if !needs.attestations {
                    return None;
                }
                Some(
                    tokio::time::timeout_at(deadline, self.attestations_of(policy, image, &digest))
                        .await
                        .unwrap_or_else(|_| {
                            Err(self.lookup_failed("attestation", late("the registry")))
                        }),
                )
            },
            async {
                if !needs.scan {
                    return None;
                }
                Some(
                    tokio::time::timeout_at(
                        deadline,
                        self.scan_of(&digest, policy.scan.as_ref().and_then(|s| s.under.as_ref())),
                    )
                    .await
                    .unwrap_or_else(|_| Err(self.lookup_failed("scan", late("the database")))),
                )
            }
        );
        evidence.signature = signature.map(|found| match found {
            Ok(verified) => verified,
            Err(unavailable) => {
                evidence.unavailable.push(Lookup::Signature);
                unavailable
            }
        });
        if let Some(Err(_)) = &attestations {
            // Judged outcomes come back as Ok; an error is an outage or a timeout.
            evidence.unavailable.push(Lookup::Attestation);
        }
        evidence.attestations = attestations;
        if let Some(Err(_)) = &scan {
            // A scan lookup answers "never scanned" as Ok(None): an error is always an
            // outage, never a verdict.
            evidence.unavailable.push(Lookup::Scan);
        }
        evidence.scan = scan;
        evidence
    }

    /// Answer one AdmissionReview body for `policy_name`: the HTTP status and the review.
    /// A body that cannot be read gets an `invalid` review; a policy this replica has not
    /// loaded gets 503, so the API server applies the webhook's failure policy.
    pub async fn review(&self, policy_name: &str, body: &[u8]) -> (StatusCode, Vec<u8>) {
        let started = Instant::now();
        // Held for the whole review: no lock, no reference count, no copy of the name.
        let policies = self.policies.load();
        let loaded = policies.get(policy_name);
        let request = match review::parse(body) {
            Ok(request) => request,
            Err(refusal) => {
                match loaded {
                    Some(loaded) => loaded.count(&self.metrics, "invalid"),
                    None => self
                        .metrics
                        .decisions
                        .with_label_values(&[UNLOADED_POLICY_LABEL, "invalid"])
                        .inc(),
                }
                return (
                    StatusCode::OK,
                    serde_json::to_vec(&*refusal).unwrap_or_default(),
                );
            }
        };
        let Some(loaded) = loaded else {
            self.metrics
                .decisions
                .with_label_values(&[UNLOADED_POLICY_LABEL, "unavailable"])
                .inc();
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::to_vec(&json!({"error": format!("ZastavaPolicy {policy_name} is not loaded on this replica")}))
                    .unwrap_or_default(),
            );
        };
        let policy = &loaded.policy;
        let namespace = request.namespace.as_deref().unwrap_or_default();
        let skip = matches!(request.operation, Operation::Delete | Operation::Connect)
            || !policy::applies_to_namespace(policy, namespace, &self.settings.own_namespace);
        let kind = &*request.kind.kind;
        // Borrowed from the body: an image's strings are copied only into a violation.
        let images = match (&request.object, skip) {
            (Some(object), false) => object.image_refs(kind),
            _ => Vec::new(),
        };
        // On update only images that are new are judged: relabelling a running Pod or
        // scaling a Deployment must not be refused for what was admitted before.
        let previous: BTreeSet<&str> = match (&request.old_object, &request.operation) {
            (Some(old), Operation::Update) => {
                old.image_refs(kind).into_iter().map(|i| i.image).collect()
            }
            _ => BTreeSet::new(),
        };
        let images: Vec<_> = images
            .into_iter()
            .filter(|i| !previous.contains(i.image))
            .collect();
        // Each distinct image is looked up once, all of them concurrently.
        let distinct: BTreeSet<&str> = images
            .iter()
            .map(|i| i.image)
            .filter(|i| !i.is_empty() && policy::applies_to_image(policy, i))
            .collect();
        let deadline = tokio::time::Instant::from_std(started) + policy.budget;
        let needs_lookups = policy::needs(policy).digest && !distinct.is_empty();
        // Bounded concurrency: past the limit a review is answered at once, as if its
        // lookups had timed out, instead of queueing behind the others.
        let permit = if needs_lookups {
            self.in_flight.try_acquire().ok()
        } else {
            None
        };
        let decision = if needs_lookups && permit.is_none() {
            let reason = format!(
                "the webhook is answering its limit of {} reviews at once, so this was not checked",
                self.settings.max_in_flight
            );
            policy::Decision {
                policy: policy.name.clone(),
                mode: policy.mode,
                on_timeout: policy.on_timeout,
                checked: images.len(),
                violations: images
                    .iter()
                    .filter(|i| distinct.contains(i.image))
                    .map(|i| Violation {
                        path: i.path(),
                        image: i.image.to_string(),
                        reason: reason.clone(),
                        unchecked: true,
                    })
                    .collect(),
            }
        } else {
            // What is all cached is judged at once, on the cached facts; the rest is looked
            // up concurrently, then judged.
            let mut judged: Vec<(&str, Vec<policy::Finding>)> = Vec::with_capacity(distinct.len());
            let mut missing = Vec::new();
            let mut hits = [0u64; 8];
            {
                let (cache, now) = (self.cache.read(), (Instant::now(), chrono::Utc::now()));
                for image in &distinct {
                    match self.judge_cached(&cache, now, policy, image, &mut hits) {
                        Some(findings) => judged.push((image, findings)),
                        None => missing.push(*image),
                    }
                }
            }
            // Each counter once per review: an increment is a write every core shares.
            for (counter, hits) in self.cache_counters.iter().zip(hits) {
                if hits > 0 {
                    counter.inc_by(hits);
                }
            }
            let mut evidence = BTreeMap::new();
            if !missing.is_empty() {
                let gathered = futures::future::join_all(missing.iter().map(|image| async {
                    (
                        image.to_string(),
                        self.evidence_for(policy, image, deadline).await,
                    )
                }))
                .await;
                evidence.extend(gathered);
            }
            let (none, now) = (Evidence::default(), chrono::Utc::now());
            policy::decide_by(policy, &images, |image| {
                match judged.iter().find(|(judged, _)| *judged == image) {
                    Some((_, findings)) => findings.clone(),
                    None => policy::judge(
                        policy,
                        image,
                        evidence.get(image).unwrap_or(&none).known(),
                        now,
                    ),
                }
            })
        };
        drop(permit);
        // Admitted with nothing to say (nearly every review): the serialized answer from
        // its template; otherwise the full response.
        let answer = if decision.violations.is_empty() {
            review::allowed_review(&request.uid)
        } else {
            serde_json::to_vec(&policy::respond(request.allow(), &decision).into_review())
                .unwrap_or_default()
        };
        loaded.count(&self.metrics, decision.label());
        loaded.observe(&self.metrics, started.elapsed().as_secs_f64());
        // A server-side dry run (`kubectl apply --dry-run=server`) must have no side
        // effects: the configuration says `sideEffects: None`.
        if !decision.violations.is_empty() && !request.dry_run {
            let name = request
                .object
                .as_ref()
                .and_then(|o| o.name())
                .filter(|n| !n.is_empty())
                .unwrap_or(&request.name);
            self.record(&request.uid, namespace, kind, name, &request, &decision);
        }
        (StatusCode::OK, answer)
    }

    /// One `zastava.admission` event per denial or warning, written off the request path.
    fn record(
        &self,
        uid: &str,
        namespace: &str,
        kind: &str,
        name: &str,
        request: &review::Request<'_>,
        decision: &Decision,
    ) {
        tracing::info!(
            policy = %decision.policy, decision = decision.label(), %namespace, %kind, %name,
            violations = %decision.summary(), "admission policy violated"
        );
        let Some(pool) = self.outbox.clone() else {
            return;
        };
        let event = stellaops_store::outbox::NewEvent {
            kind: "zastava.admission".into(),
            namespace: Some(namespace.to_string()).filter(|n| !n.is_empty()),
            subject: format!("{kind}/{name}"),
            severity: None,
            payload: json!({
                "policy": decision.policy,
                "mode": decision.mode,
                "decision": decision.label(),
                "operation": format!("{:?}", request.operation).to_uppercase(),
                "kind": kind,
                "namespace": namespace,
                "name": name,
                "user": request.user_info.username,
                "violations": decision.violations.iter().map(|v| json!({
                    "path": v.path, "image": v.image, "reason": v.reason,
                })).collect::<Vec<_>>(),
            }),
            idempotency_key: format!("zastava:{uid}:{}", decision.policy),
        };
        tokio::spawn(async move {
            if let Err(error) = stellaops_store::outbox::publish(&pool, &event).await {
                tracing::warn!(%error, "could not write the zastava.admission event");
            }
        });
    }
}

async fn validate(
    State(webhook): State<Arc<Webhook>>,
    Path(policy): Path<String>,
    body: Bytes,
) -> Response {
    let (status, review) = webhook.review(&policy, &body).await;
    answer(status, review)
}

fn answer(status: StatusCode, review: Vec<u8>) -> Response {
    let mut response = Response::new(axum::body::Body::from(review));
    *response.status_mut() = status;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Largest AdmissionReview body read (the API server sends at most a few MiB of object;
/// anything larger is refused with 413 before it is read).
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// The AdmissionReview routes.
pub fn router(webhook: Arc<Webhook>) -> Router {
    Router::new()
        .route("/validate/{policy}", post(validate))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(webhook)
}

/// The policy named by a request that [`router`] would route to `validate` and that can be
/// answered without it: `POST /validate/{policy}` with a name needing no percent-decoding
/// and a `Content-Length` within [`MAX_BODY`]. Anything else (other methods and paths,
/// escaped names, chunked or oversized bodies) goes through the router, which answers it
/// as always (405, 404, 413, …).
fn direct_policy(parts: &axum::http::request::Parts) -> Option<&str> {
    if parts.method != axum::http::Method::POST {
        return None;
    }
    let policy = parts.uri.path().strip_prefix("/validate/")?;
    if policy.is_empty() || policy.contains(['/', '%']) {
        return None;
    }
    let length: usize = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    (length <= MAX_BODY).then_some(policy)
}

/// What [`serve_tls`] answers requests with: `POST /validate/{policy}` straight to
/// [`Webhook::review`] (the hot path: no route matching, path extraction or extension map
/// per request), anything else through [`router`].
#[derive(Clone)]
pub struct Endpoint(Arc<(Arc<Webhook>, Router)>);

impl Endpoint {
    /// The endpoint of `webhook`.
    pub fn new(webhook: Arc<Webhook>) -> Self {
        Endpoint(Arc::new((webhook.clone(), router(webhook))))
    }

    /// Answer one request.
    pub async fn answer(self, request: axum::http::Request<axum::body::Body>) -> Response {
        use tower::ServiceExt as _;
        let (webhook, routes) = &*self.0;
        let (parts, body) = request.into_parts();
        let Some(policy) = direct_policy(&parts) else {
            let request = axum::http::Request::from_parts(parts, body);
            return match routes.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
        };
        // Within MAX_BODY by its Content-Length, which hyper holds the body to.
        let body = match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(body) => body,
            Err(error) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("Failed to buffer the request body: {error}"),
                )
                    .into_response();
            }
        };
        let (status, review) = webhook.review(policy, &body).await;
        answer(status, review)
    }
}

/// `/healthz` and `/readyz` (ready once policies and a certificate are loaded).
pub fn health_router(webhook: Arc<Webhook>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(webhook): State<Arc<Webhook>>| async move {
                if webhook.is_ready() {
                    (StatusCode::OK, "ready")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "waiting for policies and the serving certificate",
                    )
                }
            }),
        )
        .with_state(webhook)
}

/// Connections the webhook serves at once (the API servers keep a few each), and the time
/// a client has to send a request's headers: a hostile client costs a bounded amount.
pub const CONNECTION_LIMITS: stellaops_tls::ConnectionLimits = stellaops_tls::ConnectionLimits {
    max_connections: 1024,
    header_read_timeout: std::time::Duration::from_secs(10),
};

/// Serve the AdmissionReview routes over TLS on `listener` until the future is dropped;
/// the certificate comes from `webhook.certificate` at each handshake (so a rotated
/// Secret takes effect without a restart). Connections are bounded by
/// [`CONNECTION_LIMITS`] (and handshakes by [`stellaops_tls::MAX_HANDSHAKES`]).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    webhook: Arc<Webhook>,
) -> std::io::Result<()> {
    let config = stellaops_tls::config_with_resolver(webhook.certificate.clone());
    let listener = stellaops_tls::TlsListener::new(listener, config)?;
    let endpoint = Endpoint::new(webhook);
    stellaops_tls::serve_bounded_fn(
        listener,
        move |request| endpoint.clone().answer(request),
        CONNECTION_LIMITS,
        std::future::pending(),
    )
    .await;
    Ok(())
}
