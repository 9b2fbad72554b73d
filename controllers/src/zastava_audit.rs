//! The Observer: the runtime audit of ZastavaPolicies. Admission only sees what is created
//! or changed after a policy exists; this looks at the Pods already running in a policy's
//! namespaces, every `spec.audit.interval` and at once when the policy changes, from the
//! operator's in-memory caches (Pods, Namespaces, Scans) without a single LIST and without
//! blocking anything. A pass yields per-policy counts in `status.audit`, a `zastava.runtime`
//! outbox event per violation it had not seen before, rate-limited Events on the offending
//! workloads, and — when the policy asks — Scans for running images without a verdict,
//! bounded by a budget.
//!
//! The audit never asks a registry: signature verification results come from the webhook
//! in the same process ([`SignatureFacts`]); what nobody has verified yet, like an image no
//! Scan has judged yet, counts as `unscanned`, not as a violation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ContainerStatus, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use stellaops_admission_webhook::policy::{
    self as webhook_policy, CompiledPolicy, Evidence, Lookup, ScanRecord,
};
use stellaops_admission_webhook::workload::{ContainerImage, ContainerKind};
use stellaops_crds::scan::ScanPhase;
use stellaops_crds::zastava_policy::{AuditFinding, AuditStatus, Mode, Promotion, RolloutStatus};
use stellaops_crds::{Scan, ZastavaPolicy};

use crate::context::{Context, FIELD_MANAGER};
use crate::error::Result;
use crate::workload;

/// Violations listed in `status.audit.examples` at most.
pub const MAX_EXAMPLES: usize = 20;
/// One Event per policy and workload at most this often.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(3600);
/// Events one pass of one policy raises at most (the rest wait for later passes).
pub const MAX_EVENTS_PER_PASS: usize = 20;
/// How often the Observer looks for due policies (a spec change is seen within this).
pub const TICK: Duration = Duration::from_secs(5);
/// Interval used when `spec.audit.interval` does not parse (the schema prevents it).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// Label on the Scans the Observer creates.
pub const REQUESTED_BY_LABEL: &str = "stella-ops.org/requested-by";

/// What the webhook verified: a non-blocking look into its cache.
pub trait SignatureFacts: Send + Sync {
    /// The fingerprint (or identity) that verified `digest` of `image` under the policy
    /// named `policy`, why none did, or `None` when nothing is known.
    fn verified(&self, policy: &str, image: &str, digest: &str) -> Option<Result<String, String>>;
    /// Each attestation requirement's outcome for `digest` of `image` under the policy
    /// named `policy` (what signed it, or why it is not met), or `None` when nothing is
    /// known.
    fn verified_attestations(
        &self,
        _policy: &str,
        _image: &str,
        _digest: &str,
    ) -> Option<Vec<Result<String, String>>> {
        None
    }
    /// Ask for `digest` to be verified in the background, so a later pass knows.
    fn request(&self, _policy: &str, _image: &str, _digest: &str) {}
}

/// Background verifications one pass of one policy asks for at most.
pub const MAX_VERIFY_REQUESTS: usize = 64;

/// The digest a container actually runs, from its status `imageID`
/// (`docker.io/library/nginx@sha256:…`, `docker-pullable://…@sha256:…`). A bare
/// `sha256:…` is an image config id on some runtimes, not a manifest digest: unknown.
pub fn running_digest(image_id: &str) -> Option<&str> {
    let (_, digest) = image_id.rsplit_once('@')?;
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(digest)
}

/// The latest verdict of each digest among the Scans (those that succeeded at their
/// current generation). The operator writes a verdict into a Scan's status only after its
/// DSSE envelope verified, so these are signed verdicts.
pub fn verdicts<'a>(scans: impl IntoIterator<Item = &'a Scan>) -> HashMap<String, ScanRecord> {
    let mut latest: HashMap<String, ScanRecord> = HashMap::new();
    for scan in scans {
        let Some(status) = &scan.status else { continue };
        let (Some(digest), Some(verdict), Some(ScanPhase::Succeeded)) =
            (&status.image_digest, status.verdict, status.phase)
        else {
            continue;
        };
        let finished_at = status
            .completed_at
            .as_ref()
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.0.as_second(), 0))
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let record = ScanRecord {
            verdict,
            finished_at,
            unverified: None,
        };
        match latest.get(digest) {
            Some(known) if known.finished_at >= finished_at => {}
            _ => {
                latest.insert(digest.clone(), record);
            }
        }
    }
    latest
}

/// The workload a Pod belongs to, for Events: its Deployment (through the ReplicaSet's
/// `pod-template-hash` naming), its other controller, or the Pod itself.
pub fn workload_of(pod: &Pod) -> ObjectReference {
    let namespace = pod.namespace();
    let controller = pod
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true));
    match controller {
        Some(owner) => {
            let hash = pod.labels().get("pod-template-hash");
            let deployment = (owner.kind == "ReplicaSet")
                .then(|| hash.and_then(|h| owner.name.strip_suffix(&format!("-{h}"))))
                .flatten();
            match deployment {
                Some(name) => ObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: Some("Deployment".into()),
                    name: Some(name.to_string()),
                    namespace,
                    ..Default::default()
                },
                None => ObjectReference {
                    api_version: Some(owner.api_version.clone()),
                    kind: Some(owner.kind.clone()),
                    name: Some(owner.name.clone()),
                    uid: Some(owner.uid.clone()),
                    namespace,
                    ..Default::default()
                },
            }
        }
        None => ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            namespace,
            ..Default::default()
        },
    }
}

/// One broken rule on a running container.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeViolation {
    /// Namespace of the Pod.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Pod uid (a recreated Pod of the same name is a new violation).
    pub pod_uid: String,
    /// Container name.
    pub container: String,
    /// Image as the container status reports it.
    pub image: String,
    /// What is wrong.
    pub reason: String,
    /// The workload the Pod belongs to.
    pub workload: ObjectReference,
}

impl RuntimeViolation {
    /// Identity across restarts (the outbox idempotency key): the same Pod, container,
    /// image and reason is the same violation.
    pub fn key(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [&self.pod_uid, &self.container, &self.image, &self.reason] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        hex::encode(&hasher.finalize()[..12])
    }

    /// The same identity within this process only (what the Observer remembers between
    /// passes): cheaper than [`RuntimeViolation::key`], which only new violations need.
    fn local_key(&self) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        (&self.pod_uid, &self.container, &self.image, &self.reason).hash(&mut hasher);
        hasher.finish()
    }
}

/// A running image that no Scan has judged: where a Scan for it would go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unscanned {
    /// A namespace it runs in (the first met).
    pub namespace: String,
    /// `repository@digest`.
    pub image: String,
}

/// What one policy finds among the running Pods. Pure data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyAudit {
    /// Running Pods the policy covers.
    pub pods: usize,
    /// Pods breaking no rule, with everything known.
    pub compliant: usize,
    /// Pods breaking at least one rule.
    pub violations: usize,
    /// Pods breaking nothing known, with something not known yet.
    pub unscanned: usize,
    /// Every broken rule, in Pod order.
    pub found: Vec<RuntimeViolation>,
    /// Running digests without a verdict (when the policy requires scans), by digest.
    pub without_verdict: BTreeMap<String, Unscanned>,
    /// Running (image, digest) whose signature nobody has verified yet.
    pub unverified: Vec<(String, String)>,
}

/// What is known of the world, read once per pass and shared by every policy.
pub struct Facts<'a> {
    /// Latest verdict per digest.
    pub verdicts: &'a HashMap<String, ScanRecord>,
    /// Verification results of the webhook, if it runs in this process.
    pub signatures: Option<&'a dyn SignatureFacts>,
    /// The operator's namespace (never audited).
    pub own_namespace: &'a str,
    /// The time of the pass.
    pub now: DateTime<Utc>,
}

fn statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let init = status.and_then(|s| s.init_container_statuses.as_ref());
    let regular = status.and_then(|s| s.container_statuses.as_ref());
    let ephemeral = status.and_then(|s| s.ephemeral_container_statuses.as_ref());
    init.into_iter()
        .chain(regular)
        .chain(ephemeral)
        .flat_map(|list| list.iter())
}

fn is_running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// The repository part of an image reference (tag and digest removed).
fn repository_of(image: &str) -> &str {
    let name = image.split('@').next().unwrap_or(image);
    match name.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository,
        _ => name,
    }
}

/// The findings of `policy` on one running image, `unchecked` where something is not known
/// yet. Pure.
fn check_running(
    policy: &CompiledPolicy,
    image: &str,
    digest: Option<&str>,
    facts: &Facts<'_>,
) -> Vec<webhook_policy::Finding> {
    let needs = webhook_policy::needs(policy);
    let mut evidence = Evidence::default();
    let digest = digest.or_else(|| webhook_policy::pinned_digest(image));
    if needs.digest {
        match digest {
            Some(d) => evidence.digest = Some(Ok(d.to_string())),
            None => {
                evidence.digest = Some(Err(
                    "the container status reports no image digest yet".to_string()
                ));
                evidence.unavailable.push(Lookup::Digest);
            }
        }
    }
    if let (true, Some(digest)) = (needs.signature, digest) {
        let known = facts
            .signatures
            .and_then(|s| s.verified(&policy.name, image, digest));
        evidence.signature = Some(known.unwrap_or_else(|| {
            evidence.unavailable.push(Lookup::Signature);
            Err("the webhook has not verified its signature yet".to_string())
        }));
    }
    if let (true, Some(digest)) = (needs.attestations, digest) {
        let known = facts
            .signatures
            .and_then(|s| s.verified_attestations(&policy.name, image, digest));
        evidence.attestations = Some(match known {
            Some(outcomes) => Ok(outcomes),
            None => {
                evidence.unavailable.push(Lookup::Attestation);
                Err("the webhook has not verified its attestations yet".to_string())
            }
        });
    }
    if let (true, Some(digest)) = (needs.scan, digest) {
        evidence.scan = Some(match facts.verdicts.get(digest) {
            Some(record) => Ok(Some(record.clone())),
            None => {
                evidence.unavailable.push(Lookup::Scan);
                Err("no Scan has reported a verdict for it yet".to_string())
            }
        });
    }
    let container = ContainerImage {
        path: String::new(),
        container: String::new(),
        image: image.to_string(),
        kind: ContainerKind::Regular,
    };
    webhook_policy::check_image_detailed(policy, &container, &evidence, facts.now)
}

/// Audit `policy` over `pods`, covering the namespaces in `namespaces`. Each distinct
/// (image, digest) is judged once per pass, however many Pods run it. Pure.
pub fn audit_policy<'p>(
    policy: &CompiledPolicy,
    namespaces: &HashSet<String>,
    pods: impl IntoIterator<Item = &'p Pod>,
    facts: &Facts<'_>,
) -> PolicyAudit {
    let mut audit = PolicyAudit::default();
    let mut judged: HashMap<(&str, Option<&str>), Arc<Vec<webhook_policy::Finding>>> =
        HashMap::new();
    // Whether the policy checks an image: globs matched once per image, not per container.
    let mut applies_to: HashMap<&str, bool> = HashMap::new();
    let needs = webhook_policy::needs(policy);
    let (needs_scan, needs_signature) = (needs.scan, needs.signature);
    for pod in pods {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        if !namespaces.contains(namespace)
            || !is_running(pod)
            || !webhook_policy::applies_to_namespace(policy, namespace, facts.own_namespace)
        {
            continue;
        }
        let mut broken = false;
        let mut unknown = false;
        let mut checked = false;
        // Who the Pod is, worked out once and only for a Pod that breaks a rule.
        let mut identity: Option<(String, String, ObjectReference)> = None;
        for status in statuses(pod) {
            let image = status.image.as_str();
            let applies = *applies_to.entry(image).or_insert_with(|| {
                !image.is_empty() && webhook_policy::applies_to_image(policy, image)
            });
            if !applies {
                continue;
            }
            checked = true;
            let digest = running_digest(&status.image_id);
            let findings = match judged.entry((image, digest)) {
                std::collections::hash_map::Entry::Occupied(known) => known.get().clone(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    let findings = Arc::new(check_running(policy, image, digest, facts));
                    if (needs_signature || needs.attestations)
                        && let Some(digest) =
                            digest.or_else(|| webhook_policy::pinned_digest(image))
                        && facts.signatures.is_none_or(|s| {
                            (needs_signature && s.verified(&policy.name, image, digest).is_none())
                                || (needs.attestations
                                    && s.verified_attestations(&policy.name, image, digest)
                                        .is_none())
                        })
                    {
                        audit
                            .unverified
                            .push((image.to_string(), digest.to_string()));
                    }
                    slot.insert(findings).clone()
                }
            };
            if needs_scan
                && let Some(digest) = digest.or_else(|| webhook_policy::pinned_digest(image))
                && !facts.verdicts.contains_key(digest)
            {
                audit
                    .without_verdict
                    .entry(digest.to_string())
                    .or_insert_with(|| Unscanned {
                        namespace: namespace.to_string(),
                        image: format!("{}@{digest}", repository_of(image)),
                    });
            }
            for finding in findings.iter() {
                if finding.unchecked {
                    unknown = true;
                    continue;
                }
                broken = true;
                let (name, uid, workload) = identity.get_or_insert_with(|| {
                    (
                        pod.name_any(),
                        pod.metadata.uid.clone().unwrap_or_default(),
                        workload_of(pod),
                    )
                });
                audit.found.push(RuntimeViolation {
                    namespace: namespace.to_string(),
                    pod: name.clone(),
                    pod_uid: uid.clone(),
                    container: status.name.clone(),
                    image: image.to_string(),
                    reason: finding.reason.clone(),
                    workload: workload.clone(),
                });
            }
        }
        if !checked {
            continue;
        }
        audit.pods += 1;
        if broken {
            audit.violations += 1;
        } else if unknown {
            audit.unscanned += 1;
        } else {
            audit.compliant += 1;
        }
    }
    audit
}

/// When a policy was last audited.
#[derive(Clone, Debug)]
pub struct LastPass {
    /// The generation evaluated.
    pub generation: i64,
    /// When.
    pub at: Instant,
}

/// Whether a policy is due: never audited, changed since, or its interval has passed.
/// Pure.
pub fn due(last: Option<&LastPass>, generation: i64, interval: Duration, now: Instant) -> bool {
    match last {
        None => true,
        Some(last) => {
            last.generation != generation || now.saturating_duration_since(last.at) >= interval
        }
    }
}

/// What the Observer remembers of a policy between passes.
#[derive(Clone, Debug, Default)]
pub struct PolicyMemory {
    /// Violations seen in the previous pass (by an in-process hash of their identity).
    pub seen: HashSet<u64>,
    /// When an Event was last raised per workload (`kind/namespace/name`).
    pub events: HashMap<String, Instant>,
    /// The last pass.
    pub last: Option<LastPass>,
}

/// The side effects of one pass of one policy. Pure data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassPlan {
    /// `status.audit`.
    pub status: AuditStatus,
    /// Violations not seen in the previous pass: one outbox event each.
    pub new_violations: Vec<RuntimeViolation>,
    /// Events to raise: (workload, note).
    pub events: Vec<(ObjectReference, String)>,
    /// Scans to create: (namespace, name, image).
    pub scans: Vec<(String, String, String)>,
    /// `status.rollout`, with `spec.stage`.
    pub rollout: Option<RolloutStatus>,
    /// A promotion this pass made: (from, to).
    pub promoted: Option<(Mode, Mode)>,
}

/// Promotions kept in `status.rollout.promotions`.
pub const MAX_PROMOTIONS: usize = 10;

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::DryRun => "dryRun",
        Mode::Warn => "warn",
        Mode::Enforce => "enforce",
    }
}

/// The staged rollout after one audit pass that found `not_clean` violating or unscanned
/// Pods at `now`. Pure. A pass with any starts the clean run over; once the run and the
/// time in the current mode both reach `cleanPeriod`, the next mode (up to `until`) comes
/// into force and a new run starts. A changed `spec.mode` starts the rollout over.
pub fn advance_rollout(
    policy: &ZastavaPolicy,
    not_clean: usize,
    passes_note: &str,
    now: jiff::Timestamp,
) -> Option<(RolloutStatus, Option<(Mode, Mode)>)> {
    let stage = policy.spec.stage.as_ref()?;
    let period = webhook_policy::parse_hours_minutes(&stage.clean_period)
        .unwrap_or(Duration::from_secs(24 * 3600));
    let start = policy.spec.mode;
    let mut rollout = match policy.status.as_ref().and_then(|s| s.rollout.clone()) {
        Some(r) if r.started_from == start => r,
        _ => RolloutStatus {
            mode: start,
            started_from: start,
            since: Time(now),
            clean_since: None,
            clean_passes: 0,
            last_violation: None,
            message: String::new(),
            promotions: Vec::new(),
        },
    };
    if not_clean > 0 {
        rollout.clean_since = None;
        rollout.clean_passes = 0;
        rollout.last_violation = Some(Time(now));
    } else {
        rollout.clean_since.get_or_insert(Time(now));
        rollout.clean_passes = rollout.clean_passes.saturating_add(1);
    }
    let elapsed = |since: &Time| {
        Duration::from_secs(u64::try_from(now.as_second() - since.0.as_second()).unwrap_or(0))
    };
    let rank = |m: Mode| m as u8;
    let next = rollout
        .mode
        .next()
        .filter(|n| rank(*n) <= rank(stage.until));
    let mut promoted = None;
    match (next, rollout.clean_since.clone()) {
        (None, _) => {
            rollout.message = format!(
                "{} is in force; the rollout is complete",
                mode_name(rollout.mode)
            );
        }
        (Some(_), None) => {
            rollout.message = format!(
                "{not_clean} Pod(s) would be refused under stricter modes; waiting for a clean {} ({passes_note})",
                stage.clean_period
            );
        }
        (Some(next), Some(clean_since)) => {
            let clean_for = elapsed(&clean_since);
            let in_mode = elapsed(&rollout.since);
            if clean_for >= period && in_mode >= period {
                let evidence = format!(
                    "{} audit passes without a violating or unscanned Pod since {}",
                    rollout.clean_passes, clean_since.0
                );
                rollout.promotions.push(Promotion {
                    from: rollout.mode,
                    to: next,
                    at: Time(now),
                    evidence,
                });
                if rollout.promotions.len() > MAX_PROMOTIONS {
                    let drop = rollout.promotions.len() - MAX_PROMOTIONS;
                    rollout.promotions.drain(..drop);
                }
                promoted = Some((rollout.mode, next));
                rollout.mode = next;
                rollout.since = Time(now);
                rollout.clean_since = Some(Time(now));
                rollout.clean_passes = 0;
                rollout.message = match next.next().filter(|n| rank(*n) <= rank(stage.until)) {
                    Some(after) => format!(
                        "{} in force; {} after another clean {}",
                        mode_name(next),
                        mode_name(after),
                        stage.clean_period
                    ),
                    None => format!("{} is in force; the rollout is complete", mode_name(next)),
                };
            } else {
                let wait = period.saturating_sub(clean_for.min(in_mode));
                rollout.message = format!(
                    "clean for {}m ({} passes); {} in about {}m",
                    clean_for.as_secs() / 60,
                    rollout.clean_passes,
                    mode_name(next),
                    wait.as_secs().div_ceil(60)
                );
            }
        }
    }
    Some((rollout, promoted))
}

fn workload_key(reference: &ObjectReference) -> String {
    format!(
        "{}/{}/{}",
        reference.kind.as_deref().unwrap_or_default(),
        reference.namespace.as_deref().unwrap_or_default(),
        reference.name.as_deref().unwrap_or_default()
    )
}

/// A workload's kind, namespace and name, borrowed.
type WorkloadId<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// Name of the Scan the Observer creates for `digest`.
pub fn scan_name(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("zastava-audit-{}", &hex[..hex.len().min(16)])
}

/// Digests some Scan already covers (finished or not): no second Scan is requested.
pub fn digests_with_scans<'a>(scans: impl IntoIterator<Item = &'a Scan>) -> HashSet<String> {
    let mut covered = HashSet::new();
    for scan in scans {
        if let Some(digest) = webhook_policy::pinned_digest(&scan.spec.image) {
            covered.insert(digest.to_string());
        }
        if let Some(digest) = scan.status.as_ref().and_then(|s| s.image_digest.clone()) {
            covered.insert(digest);
        }
    }
    covered
}

/// Turn an audit into side effects, updating `memory` (what was seen, when Events went
/// out). Pure but for `memory`.
#[allow(clippy::too_many_arguments)]
pub fn plan_pass(
    policy: &ZastavaPolicy,
    audit: PolicyAudit,
    memory: &mut PolicyMemory,
    covered: &HashSet<String>,
    now: Instant,
    wall: jiff::Timestamp,
) -> PassPlan {
    let generation = policy.metadata.generation.unwrap_or(0);
    let settings = &policy.spec.audit;
    let mut plan = PassPlan::default();
    let mut seen = HashSet::with_capacity(audit.found.len());
    // Workloads in the order their first violation was found, each with its violations.
    let mut workloads: Vec<(&ObjectReference, Vec<&RuntimeViolation>)> = Vec::new();
    let mut index: HashMap<WorkloadId<'_>, usize> = HashMap::new();
    for violation in &audit.found {
        let key = violation.local_key();
        if !memory.seen.contains(&key) {
            plan.new_violations.push(violation.clone());
        }
        seen.insert(key);
        let workload = &violation.workload;
        let at = *index
            .entry((
                workload.kind.as_deref(),
                workload.namespace.as_deref(),
                workload.name.as_deref(),
            ))
            .or_insert_with(|| {
                workloads.push((workload, Vec::new()));
                workloads.len() - 1
            });
        workloads[at].1.push(violation);
    }
    memory.seen = seen;
    memory
        .events
        .retain(|_, at| now.saturating_duration_since(*at) < EVENT_INTERVAL);
    for (workload, violations) in workloads {
        if plan.events.len() >= MAX_EVENTS_PER_PASS {
            break;
        }
        let key = workload_key(workload);
        if memory.events.contains_key(&key) {
            continue;
        }
        let first = violations[0];
        let more = violations.len() - 1;
        let note = format!(
            "ZastavaPolicy {} (runtime audit): Pod {} container {} ({}): {}{}",
            policy.name_any(),
            first.pod,
            first.container,
            first.image,
            first.reason,
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        );
        memory.events.insert(key, now);
        plan.events.push((workload.clone(), note));
    }
    if settings.create_scans {
        let budget = usize::try_from(settings.scan_budget).unwrap_or(0);
        plan.scans = audit
            .without_verdict
            .iter()
            .filter(|(digest, _)| !covered.contains(*digest))
            .take(budget)
            .map(|(digest, u)| (u.namespace.clone(), scan_name(digest), u.image.clone()))
            .collect();
    }
    plan.status = AuditStatus {
        last_run_time: Some(Time(wall)),
        observed_generation: Some(generation),
        pods: clamp(audit.pods),
        compliant: clamp(audit.compliant),
        violations: clamp(audit.violations),
        unscanned: clamp(audit.unscanned),
        scans_requested: clamp(plan.scans.len()),
        examples: audit
            .found
            .iter()
            .take(MAX_EXAMPLES)
            .map(|v| AuditFinding {
                namespace: v.namespace.clone(),
                pod: v.pod.clone(),
                image: v.image.clone(),
                reason: v.reason.clone(),
            })
            .collect(),
    };
    if let Some((rollout, promoted)) = advance_rollout(
        policy,
        audit.violations + audit.unscanned,
        &format!("{} Pods audited", audit.pods),
        wall,
    ) {
        plan.rollout = Some(rollout);
        plan.promoted = promoted;
    }
    memory.last = Some(LastPass {
        generation,
        at: now,
    });
    plan
}

fn clamp(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The Scan the Observer creates for a running image without a verdict: the schema's
/// defaults for everything but the image (by digest) and the policy's ScanPolicy.
pub fn audit_scan(
    policy: &ZastavaPolicy,
    namespace: &str,
    name: &str,
    image: &str,
) -> Result<Scan> {
    let mut spec: stellaops_crds::scan::ScanSpec = serde_json::from_value(json!({"image": image}))?;
    // The policy's ScanPolicy decides the verdict.
    spec.policy.policy_ref = policy.spec.policy_ref.clone();
    let mut scan = Scan::new(name, spec);
    scan.metadata.namespace = Some(namespace.to_string());
    scan.metadata.labels = Some(BTreeMap::from([
        (REQUESTED_BY_LABEL.to_string(), "zastava-audit".to_string()),
        (
            "stella-ops.org/zastava-policy".to_string(),
            policy.name_any(),
        ),
    ]));
    Ok(scan)
}

/// Everything the Observer remembers, by policy name.
#[derive(Default)]
pub struct Observer {
    memory: HashMap<String, PolicyMemory>,
}

impl Observer {
    /// Audit every due policy once: the pure passes, then their side effects.
    pub async fn tick(&mut self, ctx: &Context, policies: &Store<ZastavaPolicy>) -> Result<()> {
        let now = Instant::now();
        let due_policies: Vec<Arc<ZastavaPolicy>> = policies
            .state()
            .into_iter()
            .filter(|p| p.spec.audit.enabled && p.meta().deletion_timestamp.is_none())
            .filter(|p| {
                let interval = webhook_policy::parse_hours_minutes(&p.spec.audit.interval)
                    .unwrap_or(DEFAULT_INTERVAL);
                due(
                    self.memory.get(&p.name_any()).and_then(|m| m.last.as_ref()),
                    p.metadata.generation.unwrap_or(0),
                    interval,
                    now,
                )
            })
            .collect();
        // Forget policies that are gone.
        let names: HashSet<String> = policies.state().iter().map(|p| p.name_any()).collect();
        self.memory.retain(|name, _| names.contains(name));
        if due_policies.is_empty() {
            return Ok(());
        }
        let scans = ctx.caches.scans.state();
        let verdicts = verdicts(scans.iter().map(|s| s.as_ref()));
        let covered = digests_with_scans(scans.iter().map(|s| s.as_ref()));
        let namespaces: Vec<_> = ctx
            .caches
            .namespaces
            .state()
            .iter()
            .map(|n| n.as_ref().clone())
            .collect();
        let pods = ctx.caches.pods.state();
        let facts = Facts {
            verdicts: &verdicts,
            signatures: ctx.signature_facts.as_deref(),
            own_namespace: &ctx.config.operator_namespace,
            now: Utc::now(),
        };
        for policy in due_policies {
            let name = policy.name_any();
            let compiled = match webhook_policy::compile_for_audit(&policy) {
                Ok(compiled) => compiled,
                Err(error) => {
                    tracing::debug!(policy = %name, %error, "not audited: the policy does not compile");
                    continue;
                }
            };
            let matching: HashSet<String> =
                match crate::zastava_policy::matching_namespaces(&policy, &ctx.config, &namespaces)
                {
                    Ok(matching) => matching.into_iter().collect(),
                    Err(error) => {
                        tracing::debug!(policy = %name, %error, "not audited");
                        continue;
                    }
                };
            let started = Instant::now();
            let audit = audit_policy(
                &compiled,
                &matching,
                pods.iter().map(|p| p.as_ref()),
                &facts,
            );
            if let Some(signatures) = facts.signatures {
                for (image, digest) in audit.unverified.iter().take(MAX_VERIFY_REQUESTS) {
                    signatures.request(&name, image, digest);
                }
            }
            let memory = self.memory.entry(name.clone()).or_default();
            let plan = plan_pass(
                &policy,
                audit,
                memory,
                &covered,
                now,
                jiff::Timestamp::now(),
            );
            tracing::info!(
                policy = %name, pods = plan.status.pods, violations = plan.status.violations,
                unscanned = plan.status.unscanned, new = plan.new_violations.len(),
                elapsed_ms = started.elapsed().as_millis() as u64, "runtime audit pass"
            );
            if let Err(error) = apply_plan(ctx, &policy, &plan).await {
                // Seen again next pass: the outbox keys keep the events from repeating.
                memory.seen.clear();
                tracing::warn!(policy = %name, %error, "runtime audit side effects failed");
            }
        }
        Ok(())
    }
}

/// Write a pass's side effects: outbox events first (idempotent by key), Scans, Events,
/// then the status.
pub async fn apply_plan(ctx: &Context, policy: &ZastavaPolicy, plan: &PassPlan) -> Result<()> {
    let name = policy.name_any();
    if let Some(pool) = &ctx.outbox {
        let events: Vec<stellaops_store::outbox::NewEvent> = plan
            .new_violations
            .iter()
            .map(|v| runtime_event(&name, policy.effective_mode(), v))
            .collect();
        for event in &events {
            stellaops_store::outbox::publish(pool, event).await?;
        }
    }
    for (namespace, scan_name, image) in &plan.scans {
        let scan = audit_scan(policy, namespace, scan_name, image)?;
        workload::apply(
            Api::<Scan>::namespaced(ctx.client.clone(), namespace),
            scan_name,
            &serde_json::to_value(&scan)?,
        )
        .await?;
    }
    for (workload, note) in &plan.events {
        ctx.recorder
            .publish(
                &Event {
                    type_: EventType::Warning,
                    reason: "RuntimePolicyViolation".into(),
                    note: Some(note.clone()),
                    action: "Audit".into(),
                    secondary: Some(policy.object_ref(&())),
                },
                workload,
            )
            .await?;
    }
    Api::<ZastavaPolicy>::all(ctx.client.clone())
        .patch_status(
            &name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..Default::default()
            },
            &Patch::Merge(&json!({"status": {"audit": plan.status, "rollout": plan.rollout}})),
        )
        .await?;
    if let Some((from, to)) = plan.promoted {
        let evidence = plan
            .rollout
            .as_ref()
            .and_then(|r| r.promotions.last())
            .map(|p| p.evidence.clone())
            .unwrap_or_default();
        ctx.recorder
            .publish(
                &Event {
                    type_: EventType::Normal,
                    reason: "StagePromoted".into(),
                    note: Some(format!(
                        "ZastavaPolicy {name} moved from {} to {}: {evidence}",
                        mode_name(from),
                        mode_name(to)
                    )),
                    action: "Promote".into(),
                    secondary: None,
                },
                &policy.object_ref(&()),
            )
            .await?;
    }
    Ok(())
}

/// The `zastava.runtime` event of one violation; its idempotency key is the violation's
/// identity, so an operator restart (which forgets what it saw) does not send it twice.
pub fn runtime_event(
    policy: &str,
    mode: stellaops_crds::zastava_policy::Mode,
    violation: &RuntimeViolation,
) -> stellaops_store::outbox::NewEvent {
    let workload = &violation.workload;
    stellaops_store::outbox::NewEvent {
        kind: "zastava.runtime".into(),
        namespace: Some(violation.namespace.clone()),
        subject: format!(
            "{}/{}",
            workload.kind.as_deref().unwrap_or("Pod"),
            workload.name.as_deref().unwrap_or(&violation.pod)
        ),
        severity: None,
        payload: json!({
            "policy": policy,
            "mode": mode,
            "namespace": violation.namespace,
            "pod": violation.pod,
            "container": violation.container,
            "image": violation.image,
            "reason": violation.reason,
            "workload": {"kind": workload.kind, "name": workload.name},
        }),
        idempotency_key: format!("zastava-runtime:{policy}:{}", violation.key()),
    }
}

/// Run the Observer until the future is dropped: every [`TICK`], audit the due policies.
pub async fn run(ctx: Arc<Context>, policies: Store<ZastavaPolicy>) {
    if policies.wait_until_ready().await.is_err() {
        return;
    }
    for store_ready in [
        ctx.caches.pods.wait_until_ready().await,
        ctx.caches.namespaces.wait_until_ready().await,
        ctx.caches.scans.wait_until_ready().await,
    ] {
        if store_ready.is_err() {
            return;
        }
    }
    let mut observer = Observer::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(error) = observer.tick(&ctx, &policies).await {
            tracing::warn!(%error, "runtime audit");
        }
    }
}
