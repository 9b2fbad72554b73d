//! Scan controller: one owned Job per Scan running `stellaops-worker scan`, at most
//! `max_concurrent_scans` Jobs operator-wide (the rest wait, `Queued`, in creation
//! order), reuse of a digest's result at the same advisory snapshot without a Job, and
//! the status filled from the database (or the Job's termination message) when it ends.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, KeyToPath, SecretVolumeSource, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::Value;
use stellaops_crds::scan::{Exploitation, FindingCounts, SbomRef, ScanPhase, ScanStatus, Verdict};
use stellaops_crds::{CONDITION_READY, Scan, condition, set_condition};

use crate::acceptance;
use crate::context::{Config, Context, FIELD_MANAGER};
use crate::error::{Error, Result};
use crate::workload;

/// Label on every scan Job (how the operator-wide cap counts them).
pub const COMPONENT: &str = "scan";

fn severity(s: stellaops_crds::Severity) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The Job's name for `scan` at its current generation, in the platform namespace
/// (`<namespace>-<name>-scan-<generation>`).
pub fn job_name(scan: &Scan) -> String {
    let generation = scan.metadata.generation.unwrap_or(1);
    crate::tenancy::platform_name(
        &scan.namespace().unwrap_or_default(),
        &scan.name_any(),
        &format!("-scan-{generation}"),
        63,
    )
}

/// The copies of the Scan's pull secrets (and push secret) the Job mounts: `(source, copy)`
/// in the platform namespace, named after the Job (which owns them once it exists).
pub fn pull_secret_copies(scan: &Scan) -> Vec<crate::tenancy::SecretCopy> {
    pull_only_copies(scan)
        .into_iter()
        .chain(push_secret_copy(scan))
        .collect()
}

fn pull_only_copies(scan: &Scan) -> Vec<crate::tenancy::SecretCopy> {
    let job = job_name(scan);
    scan.spec
        .image_pull_secrets
        .iter()
        .enumerate()
        .map(|(i, secret)| crate::tenancy::SecretCopy {
            source: secret.name.clone(),
            copy: format!("{job}-pull-{i}"),
        })
        .collect()
}

/// The copy of the Scan's push secret (`spec.attach` with `spec.pushSecret`), which the Job
/// mounts beside the pull secrets.
fn push_secret_copy(scan: &Scan) -> Option<crate::tenancy::SecretCopy> {
    let secret = scan
        .spec
        .push_secret
        .as_ref()
        .filter(|_| scan.spec.attach)?;
    Some(crate::tenancy::SecretCopy {
        source: secret.name.clone(),
        copy: format!("{}-push", job_name(scan)),
    })
}

/// Whether the image names a digest (`…@sha256:<64 hex>`).
pub fn pinned_digest(image: &str) -> Option<&str> {
    let (_, digest) = image.rsplit_once('@')?;
    (digest.len() == 71 && digest.starts_with("sha256:")).then_some(digest)
}

/// The scan Job (as `preview` shows it: a ScanPolicy's rules are read when the Job is made).
pub fn job(scan: &Scan, config: &Config) -> Job {
    job_for(scan, config, None)
}

/// The scan Job, deciding under `policy_json` (the evaluator's form of the ScanPolicy
/// `spec.policy.policyRef` names, from [`crate::scan_policy::ready_policy`]). The worker gets
/// the rules as an argument: it needs no access to the cluster.
pub fn job_for(scan: &Scan, config: &Config, policy_json: Option<&str>) -> Job {
    let spec = &scan.spec;
    let mut args = vec![
        "scan".to_string(),
        spec.image.clone(),
        "--bucket".into(),
        config.storage.bucket.clone(),
        "--platform".into(),
        spec.platform.clone(),
        "--fail-on".into(),
        severity(spec.policy.fail_on),
        "--sbom-format".into(),
        serde_json::to_value(spec.sbom_format)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "cyclonedx-json".into()),
    ];
    if let Some(warn) = spec.policy.warn_on {
        args.extend(["--warn-on".into(), severity(warn)]);
    }
    if spec.policy.ignore_unfixed {
        args.push("--ignore-unfixed".into());
    }
    if !spec.policy.scope.is_inventory() {
        args.extend(["--scope".into(), spec.policy.scope.as_str().into()]);
    }
    if let Some(reference) = &spec.policy.policy_ref {
        args.extend([
            "--policy-ref".into(),
            reference.name.clone(),
            "--policy-json".into(),
            policy_json.map(str::to_string).unwrap_or_else(|| {
                format!(
                    "<the rules of ScanPolicy {}, read when the Job is made>",
                    reference.name
                )
            }),
        ]);
    }
    if spec.force {
        args.push("--force".into());
    }
    if spec.attach {
        args.push("--attach".into());
    }
    // A Scan of a content-refresh Schedule run reports its new findings to that run.
    if let Some(run) = scan.labels().get(crate::schedule::RUN_LABEL) {
        args.extend(["--schedule-run".into(), run.clone()]);
    }
    let resources = spec
        .resources
        .clone()
        .unwrap_or_else(|| workload::resources("250m", "256Mi", "1Gi"));
    let mut container = workload::worker_container(config, "scan", Vec::new(), resources);
    workload::s3_env(&mut container, &config.storage);
    let env = container.env.get_or_insert_with(Vec::new);
    env.push(workload::database_url_env(config));
    for (name, value) in [
        ("STELLAOPS_SCAN_NAMESPACE", scan.namespace()),
        ("STELLAOPS_SCAN_NAME", Some(scan.name_any())),
        ("STELLAOPS_SCAN_UID", scan.uid()),
    ] {
        env.push(EnvVar {
            name: name.into(),
            value,
            ..Default::default()
        });
    }
    let mut volumes = vec![workload::tmp_volume()];
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    // The target image's pull secrets go to the worker's registry client, not the kubelet;
    // the Job mounts the platform namespace's copies of them.
    let pull_copies = pull_only_copies(scan).into_iter().enumerate();
    let push_copy = push_secret_copy(scan).map(|c| (usize::MAX, c));
    for (i, copy) in pull_copies.chain(push_copy) {
        // The push secret goes to the worker's pushing client only.
        let (name, path, flag) = if i == usize::MAX {
            (
                "push-secret".to_string(),
                "/etc/stellaops/push-secret".to_string(),
                "--push-docker-config",
            )
        } else {
            (
                format!("pull-secret-{i}"),
                format!("/etc/stellaops/pull-secrets/{i}"),
                "--docker-config",
            )
        };
        volumes.push(Volume {
            name: name.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(copy.copy),
                items: Some(vec![KeyToPath {
                    key: ".dockerconfigjson".into(),
                    path: "config.json".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: path.clone(),
            read_only: Some(true),
            ..Default::default()
        });
        args.extend([flag.into(), format!("{path}/config.json")]);
    }
    container.args = Some(args);
    workload::verdict_signing(&mut container, &mut volumes, config);
    let labels = workload::labels(&scan.name_any(), "Scan", COMPONENT);
    workload::platform_run_once_job(
        scan,
        config,
        job_name(scan),
        labels,
        container,
        Some(volumes),
        workload::JobLimits {
            backoff: 1,
            deadline_seconds: spec.active_deadline_seconds,
            // Finished Jobs go after an hour; the Scan keeps the result.
            ttl_seconds: 3600,
        },
    )
}

/// Give the Job's worker container `TRACEPARENT`, the W3C trace context its spans continue.
pub fn set_traceparent(job: &mut Job, traceparent: &str) {
    let containers = job
        .spec
        .iter_mut()
        .filter_map(|spec| spec.template.spec.as_mut())
        .flat_map(|pod| pod.containers.iter_mut());
    for container in containers {
        container.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: stellaops_telemetry::TRACEPARENT.into(),
            value: Some(traceparent.to_string()),
            ..Default::default()
        });
    }
}

/// What `preview` shows: the Job.
pub fn desired(scan: &Scan, config: &Config) -> Vec<Value> {
    vec![workload::typed(&job(scan, config))]
}

/// Condition type reporting `spec.attach`.
pub const CONDITION_ATTACHED: &str = "Attached";

/// A recorded result, as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanResult {
    /// Digest scanned.
    pub image_digest: String,
    /// SBOM.
    pub sbom: SbomRef,
    /// The Usage SBOM and the number of used components, when known.
    pub usage: Option<Box<SbomRef>>,
    /// Counts.
    pub findings: FindingCounts,
    /// Verdict.
    pub verdict: Verdict,
    /// The policy digest the verdict was decided under.
    pub policy_digest: Option<String>,
    /// The findings that made the verdict and the exploited ones among those counted
    /// (from the database; `None` from a termination message).
    pub reasons: Option<stellaops_store::scans::ResultReasons>,
    /// What the worker attached to the image (`spec.attach`), from its termination message.
    pub attach: Option<Box<AttachReport>>,
}

/// The worker's account of `spec.attach`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachReport {
    /// Artifacts attached (or already there).
    pub attached: Vec<stellaops_crds::scan::AttachedArtifact>,
    /// Why attaching failed (the result is recorded all the same).
    pub error: Option<String>,
}

/// The `attached`/`attachError` fields of a worker's summary; `None` when it attached
/// nothing and reports no error (no `spec.attach`).
pub fn attach_from_summary(summary: &Value) -> Option<AttachReport> {
    let attached: Vec<stellaops_crds::scan::AttachedArtifact> = summary
        .get("attached")
        .and_then(|a| serde_json::from_value(a.clone()).ok())
        .unwrap_or_default();
    let error = summary["attachError"].as_str().map(str::to_string);
    (!attached.is_empty() || error.is_some()).then_some(AttachReport { attached, error })
}

/// How the Job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still running (or not created).
    Running,
    /// Recorded result (possibly reused).
    Succeeded(ScanResult),
    /// Failed, with the worker's message.
    Failed(String),
    /// Waiting for the ScanPolicy it names to be Ready, with why it is not.
    PolicyNotReady(String),
}

fn verdict_of(text: &str) -> Verdict {
    match text {
        "Fail" => Verdict::Fail,
        "Warn" => Verdict::Warn,
        _ => Verdict::Pass,
    }
}

/// The result the worker left as its termination message.
pub fn result_from_summary(summary: &Value) -> Option<ScanResult> {
    Some(ScanResult {
        image_digest: summary["imageDigest"].as_str()?.to_string(),
        sbom: SbomRef {
            uri: summary["sbomUri"].as_str()?.to_string(),
            sha256: summary["sbomSha256"].as_str()?.to_string(),
            components: summary["components"].as_i64()?,
        },
        usage: match (
            summary["usageSbomUri"].as_str(),
            summary["usageSbomSha256"].as_str(),
            summary["usedComponents"].as_i64(),
        ) {
            (Some(uri), Some(sha256), Some(components)) => Some(Box::new(SbomRef {
                uri: uri.to_string(),
                sha256: sha256.to_string(),
                components,
            })),
            _ => None,
        },
        findings: FindingCounts {
            critical: summary["findings"]["critical"].as_i64().unwrap_or(0),
            high: summary["findings"]["high"].as_i64().unwrap_or(0),
            medium: summary["findings"]["medium"].as_i64().unwrap_or(0),
            low: summary["findings"]["low"].as_i64().unwrap_or(0),
        },
        verdict: verdict_of(summary["verdict"].as_str()?),
        policy_digest: None,
        reasons: None,
        attach: attach_from_summary(summary).map(Box::new),
    })
}

/// The top reasons as the `Ready` message ends: what failed or warned, most severe first,
/// and the known-exploited count.
fn top_reasons(reasons: Option<&stellaops_store::scans::ResultReasons>) -> String {
    let Some(r) = reasons else {
        return String::new();
    };
    let mut out = String::new();
    if !r.top.is_empty() {
        out.push_str(". Because of: ");
        out.push_str(&r.top.join("; "));
        let more = r.deciding - r.top.len() as i64;
        if more > 0 {
            out.push_str(&format!(
                "; and {more} more (stellaops-worker explain shows all)"
            ));
        }
    }
    if r.kev > 0 || r.high_epss > 0 {
        out.push_str(&format!(
            ". Exploitation: {} in CISA KEV, {} with EPSS at least {}",
            r.kev,
            r.high_epss,
            stellaops_store::scans::HIGH_EPSS
        ));
    }
    out
}

/// The status of a Scan. Pure. `queued` is the slot cap when the Scan waits for a slot.
pub fn compute_status(
    scan: &Scan,
    job_name: Option<&str>,
    queued: Option<usize>,
    outcome: &Outcome,
    reused: bool,
    now: Time,
) -> ScanStatus {
    let previous = scan.status.clone().unwrap_or_default();
    let generation = scan.metadata.generation;
    let mut status = ScanStatus {
        observed_generation: generation,
        job_name: job_name.map(str::to_string).or(previous.job_name.clone()),
        ..previous.clone()
    };
    let mut conditions: Vec<Condition> = std::mem::take(&mut status.conditions);
    set_condition(
        &mut conditions,
        acceptance::accepted(generation, now.clone()),
    );
    let cond = |t: &str, ok: bool, reason: &str, message: String| {
        condition(t, ok, reason, message, generation, now.clone())
    };
    match (queued, outcome) {
        (Some(cap), _) => {
            status.phase = Some(ScanPhase::Queued);
            set_condition(
                &mut conditions,
                cond(
                    "Queued",
                    true,
                    "ConcurrencyLimit",
                    // No queue position: it would change for every waiting Scan each time
                    // one starts, rewriting N statuses per start.
                    format!(
                        "waiting for a free scan slot (at most {cap} scans run at once; the oldest waiting Scan starts first)"
                    ),
                ),
            );
            set_condition(
                &mut conditions,
                cond(CONDITION_READY, false, "Queued", "queued".to_string()),
            );
        }
        (None, Outcome::Running) => {
            status.phase = Some(ScanPhase::Running);
            status.started_at = status.started_at.or(Some(now.clone()));
            set_condition(
                &mut conditions,
                cond("Queued", false, "Started", "a scan slot was free".into()),
            );
            set_condition(
                &mut conditions,
                cond(
                    CONDITION_READY,
                    false,
                    "Scanning",
                    format!(
                        "Job {} is scanning {}",
                        status.job_name.clone().unwrap_or_default(),
                        scan.spec.image
                    ),
                ),
            );
        }
        (None, Outcome::Succeeded(result)) => {
            status.phase = Some(ScanPhase::Succeeded);
            status.image_digest = Some(result.image_digest.clone());
            status.sbom = Some(result.sbom.clone());
            status.usage = result.usage.as_deref().cloned();
            status.findings = Some(result.findings.clone());
            status.verdict = Some(result.verdict);
            status.policy_digest = result.policy_digest.clone();
            status.exploitation = result.reasons.as_ref().map(|r| Exploitation {
                kev: r.kev,
                high_epss: r.high_epss,
            });
            status.reused = reused;
            status.completed_at = status.completed_at.or(Some(now.clone()));
            status.started_at = status.started_at.or(Some(now.clone()));
            conditions.retain(|c| c.type_ != "Queued");
            if let Some(report) = &result.attach {
                status.attached = report.attached.clone();
                let (ok, reason, message) = match &report.error {
                    Some(error) => (false, "AttachFailed", error.clone()),
                    None => (
                        true,
                        "Attached",
                        format!(
                            "{} attached to {} as OCI referrers: {}",
                            report.attached.len(),
                            result.image_digest,
                            report
                                .attached
                                .iter()
                                .map(|a| format!("{} ({}, {})", a.artifact_type, a.digest, a.via))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                };
                set_condition(
                    &mut conditions,
                    cond(CONDITION_ATTACHED, ok, reason, message),
                );
            }
            let f = &result.findings;
            set_condition(
                &mut conditions,
                cond(
                    CONDITION_READY,
                    true,
                    if reused { "Reused" } else { "Scanned" },
                    format!(
                        "{:?}: {} critical, {} high, {} medium, {} low in {} components{}{}{}",
                        result.verdict,
                        f.critical,
                        f.high,
                        f.medium,
                        f.low,
                        result.sbom.components,
                        result
                            .usage
                            .as_ref()
                            .map(|u| format!(" ({} used by the entrypoint)", u.components))
                            .unwrap_or_default(),
                        if reused {
                            " (result of an earlier scan of this digest at the same advisory snapshot)"
                        } else {
                            ""
                        },
                        top_reasons(result.reasons.as_ref())
                    ),
                ),
            );
        }
        (None, Outcome::PolicyNotReady(message)) => {
            status.phase = Some(ScanPhase::Pending);
            set_condition(
                &mut conditions,
                cond(
                    CONDITION_READY,
                    false,
                    "PolicyNotReady",
                    format!("{message}; the Scan starts once it is Ready"),
                ),
            );
        }
        (None, Outcome::Failed(message)) => {
            status.phase = Some(ScanPhase::Failed);
            status.completed_at = status.completed_at.or(Some(now.clone()));
            conditions.retain(|c| c.type_ != "Queued");
            set_condition(
                &mut conditions,
                cond(CONDITION_READY, false, "ScanFailed", message.clone()),
            );
        }
    }
    status.conditions = conditions;
    status
}

/// Which recorded result a Scan reports: its own latest (by uid), or the latest of a
/// digest at an advisory snapshot (a reuse).
enum Lookup<'a> {
    OfScan(&'a str),
    Reusable(&'a str, i64),
}

/// The recorded result `lookup` finds, once its DSSE envelope verifies against the
/// configured keys (`Err` says why it does not: then the row is not trusted). What is
/// reported comes from the signed Statement, not from the row's columns.
async fn recorded(
    keys: &stellaops_store::attestation::VerdictKeys,
    pool: &sqlx::PgPool,
    lookup: Lookup<'_>,
) -> Result<Option<std::result::Result<ScanResult, String>>> {
    let row = match lookup {
        Lookup::OfScan(uid) => stellaops_store::scans::latest_of_scan(pool, uid).await,
        Lookup::Reusable(digest, snapshot) => {
            stellaops_store::scans::reusable(pool, digest, snapshot).await
        }
    }
    .map_err(|e| Error::Outbox(e.into()))?;
    let Some(r) = row else {
        return Ok(None);
    };
    let digest = r.image_digest;
    let signed = match stellaops_store::attestation::check_row(
        keys,
        &digest,
        &r.verdict,
        r.attestation_key.as_deref(),
        r.attestation.as_deref(),
    ) {
        Ok(signed) => signed,
        Err(reason) => return Ok(Some(Err(reason))),
    };
    // What decided the verdict, for the `Ready` message (explanatory: the counts and the
    // verdict come from the signed statement).
    let reasons = stellaops_store::scans::reasons(pool, r.id, TOP_REASONS).await?;
    Ok(Some({
        Ok(ScanResult {
            image_digest: digest,
            sbom: SbomRef {
                uri: signed.sbom.uri,
                sha256: signed.sbom.sha256,
                components: i64::from(r.components),
            },
            usage: match (r.usage_sbom_uri, r.usage_sbom_sha256, r.used_components) {
                (Some(uri), Some(sha256), Some(used)) => Some(Box::new(SbomRef {
                    uri,
                    sha256,
                    components: i64::from(used),
                })),
                _ => None,
            },
            findings: FindingCounts {
                critical: signed.findings.critical,
                high: signed.findings.high,
                medium: signed.findings.medium,
                low: signed.findings.low,
            },
            verdict: verdict_of(&signed.verdict),
            policy_digest: Some(signed.policy_digest).filter(|d| !d.is_empty()),
            reasons: Some(reasons),
            attach: None,
        })
    }))
}

/// How many failing or warning findings the `Ready` message names.
const TOP_REASONS: usize = 3;

async fn current_snapshot(pool: &sqlx::PgPool) -> Result<i64> {
    Ok(stellaops_store::advisories::snapshot(pool).await?)
}

/// Reconcile one Scan: its Job (and pull-secret copies) in the platform namespace, removed by
/// the finalizer when the Scan is deleted. The finalizer is added right before the Job is
/// made: a Scan that only waits in the queue, reuses a result or waits for its ScanPolicy has
/// made nothing to clean up, and ten thousand queued Scans cost ten thousand status writes,
/// not twice as many writes and reconciles.
pub async fn reconcile(scan: Arc<Scan>, ctx: Arc<Context>) -> Result<Action> {
    if has_finalizer(&scan) {
        return crate::tenancy::reconcile_with_cleanup(scan, ctx, apply, cleanup).await;
    }
    if scan.metadata.deletion_timestamp.is_some() {
        // Deleted before anything was made for it.
        return Ok(Action::await_change());
    }
    apply(scan, ctx).await
}

async fn cleanup(scan: Arc<Scan>, ctx: Arc<Context>) -> Result<Action> {
    crate::tenancy::cleanup_by_uid(&*scan, &ctx).await
}

fn has_finalizer(scan: &Scan) -> bool {
    scan.finalizers()
        .iter()
        .any(|f| f == crate::tenancy::FINALIZER)
}

/// Create the Job with the pull-secret copies: labelled with the Scan first (so a failure in
/// between leaves nothing the finalizer misses), then owned by the Job, so they go with it.
async fn create_job(
    ctx: &Context,
    scan: &Scan,
    jobs: &Api<Job>,
    policy_json: Option<&str>,
) -> Result<()> {
    let ns = scan
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let copies = pull_secret_copies(scan);
    let mut body = job_for(scan, &ctx.config, policy_json);
    // The worker's spans continue this reconcile's trace. Set only here, when the Job is
    // made (a Job's template is immutable, and no later reconcile applies it again).
    if let Some(traceparent) = stellaops_telemetry::current_traceparent() {
        set_traceparent(&mut body, &traceparent);
    }
    let copy_meta = kube::api::ObjectMeta {
        labels: body.metadata.labels.clone(),
        annotations: body.metadata.annotations.clone(),
        ..Default::default()
    };
    let missing = crate::tenancy::copy_secrets(ctx, &ns, &copies, &copy_meta, None, None).await?;
    let created = jobs
        .patch(
            &job_name(scan),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&workload::typed(&body)),
        )
        .await?;
    if !copies.is_empty() {
        let owner = created.controller_owner_ref(&()).map(|mut o| {
            o.block_owner_deletion = Some(false);
            o
        });
        crate::tenancy::copy_secrets(ctx, &ns, &copies, &copy_meta, owner, None).await?;
    }
    if !missing.is_empty() {
        tracing::warn!(scan = %scan.name_any(), ?missing, "pull secrets not found; scanning without them");
    }
    Ok(())
}

async fn apply(scan: Arc<Scan>, ctx: Arc<Context>) -> Result<Action> {
    let ns = scan
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = scan.name_any();
    let scans: Api<Scan> = Api::namespaced(ctx.client.clone(), &ns);
    let now = Time(jiff::Timestamp::now());
    let done = scan.status.as_ref().is_some_and(|s| {
        s.observed_generation == scan.metadata.generation
            && matches!(s.phase, Some(ScanPhase::Succeeded | ScanPhase::Failed))
    });
    let woken = ctx.reevaluations.take_woken(&scan);
    if done {
        let result = follow_reevaluation(&scan, &ctx, woken, now).await;
        if woken && result.is_err() {
            // Still to be read: the retry must not take the result read at start for it.
            ctx.reevaluations
                .woke(&kube::runtime::reflector::ObjectRef::from_obj(
                    scan.as_ref(),
                ));
        }
        return result;
    }
    ctx.caches.scans_ready().await?;
    let platform_ns = ctx.config.operator_namespace.clone();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &platform_ns);
    let name_of_job = job_name(&scan);
    let existing = ctx
        .caches
        .scan_jobs
        .get(&kube::runtime::reflector::ObjectRef::new(&name_of_job).within(&platform_ns));
    let mut reused = false;
    let mut summary_seen: Option<Value> = None;
    let (queued, outcome, job_ref): (Option<usize>, Outcome, Option<&str>) = match &existing {
        Some(j) => match workload::job_finished(j) {
            None => (None, Outcome::Running, Some(name_of_job.as_str())),
            Some(succeeded) => {
                let summary =
                    workload::cached_termination_summary(&ctx, &platform_ns, &name_of_job).await?;
                summary_seen = summary.clone();
                let from_db = match (&ctx.outbox, scan.uid()) {
                    (Some(pool), Some(uid)) => {
                        recorded(
                            &ctx.config.verdict_keys.current(),
                            pool,
                            Lookup::OfScan(&uid),
                        )
                        .await?
                    }
                    _ => None,
                };
                // Without a database only the worker's own message is there to report.
                let from_summary = || {
                    ctx.outbox
                        .is_none()
                        .then(|| summary.as_ref().and_then(result_from_summary))
                        .flatten()
                        .map(Ok)
                };
                let outcome = match (succeeded, from_db.or_else(from_summary)) {
                    (true, Some(Ok(mut result))) => {
                        result.attach =
                            summary.as_ref().and_then(attach_from_summary).map(Box::new);
                        Outcome::Succeeded(result)
                    }
                    (true, Some(Err(reason))) => {
                        Outcome::Failed(format!("the recorded verdict is not trusted: {reason}"))
                    }
                    (true, None) => {
                        Outcome::Failed("the scan Job finished without recording a result".into())
                    }
                    (false, _) => Outcome::Failed(
                        summary
                            .as_ref()
                            .and_then(|s| s["error"].as_str().map(str::to_string))
                            .or_else(|| workload::job_failure(j))
                            .unwrap_or_else(|| "the scan Job failed".into()),
                    ),
                };
                (None, outcome, Some(name_of_job.as_str()))
            }
        },
        None => {
            // A ScanPolicy named must be Ready: its rules go to the worker.
            let policy_json = match &scan.spec.policy.policy_ref {
                Some(reference) => {
                    let policy = ctx
                        .caches
                        .scan_policies
                        .get(&kube::runtime::reflector::ObjectRef::new(&reference.name));
                    match crate::scan_policy::ready_policy(policy.as_deref(), &reference.name) {
                        Ok(json) => Some(json),
                        Err(why) => {
                            return wait_for_policy(&ctx, &scan, why, now).await;
                        }
                    }
                }
                None => None,
            };
            // Reuse a pinned digest's result at the current advisory snapshot (not under a
            // ScanPolicy: a result decided under other rules says nothing; the worker reuses
            // the inventory and decides again).
            let reuse = match (
                &ctx.outbox,
                pinned_digest(&scan.spec.image),
                scan.spec.force || policy_json.is_some() || scan.spec.attach,
            ) {
                (Some(pool), Some(digest), false) => {
                    let snapshot = current_snapshot(pool).await?;
                    match recorded(
                        &ctx.config.verdict_keys.current(),
                        pool,
                        Lookup::Reusable(digest, snapshot),
                    )
                    .await?
                    {
                        Some(Ok(result)) => Some(result),
                        // A result whose envelope does not verify is never reused: scan again.
                        Some(Err(reason)) => {
                            tracing::warn!(scan = %name, %reason, "not reusing an unverified result");
                            None
                        }
                        None => None,
                    }
                }
                _ => None,
            };
            if let Some(result) = reuse {
                reused = true;
                (None, Outcome::Succeeded(result), None)
            } else {
                // The queue, from the shared stores: no LIST, and no walk over every Scan.
                let cap = ctx.config.max_concurrent_scans as usize;
                let free = cap - ctx.caches.running_scan_jobs(cap);
                if ctx.caches.waiting_ahead_at_least(&scan, free) {
                    (Some(cap), Outcome::Running, None)
                } else {
                    // The store may trail a deletion: one point read before making a Job
                    // for it (the finalizer's cleanup may have run already).
                    if !has_finalizer(&scan) {
                        // The finalizer before anything is made: added (and nothing else
                        // done) by the finalizer helper, whose patch fails should another
                        // writer have changed the finalizers meanwhile; its change
                        // reconciles the Scan again, which makes the Job.
                        return crate::tenancy::reconcile_with_cleanup(
                            scan.clone(),
                            ctx.clone(),
                            |_, _| async { Ok(Action::await_change()) },
                            |_, _| async { Ok(Action::await_change()) },
                        )
                        .await;
                    }
                    let fresh = scans.get_opt(&name).await?;
                    if fresh.is_none_or(|s| {
                        s.metadata.uid != scan.metadata.uid
                            || s.metadata.deletion_timestamp.is_some()
                    }) {
                        return Ok(Action::await_change());
                    }
                    {
                        create_job(&ctx, &scan, &jobs, policy_json.as_deref()).await?;
                        ctx.caches.scan_job_started(
                            kube::runtime::reflector::ObjectRef::new(&name_of_job)
                                .within(&platform_ns),
                        );
                        publish(
                            &ctx,
                            &scan,
                            EventType::Normal,
                            "JobCreated",
                            format!("Job {name_of_job} scans {}", scan.spec.image),
                        )
                        .await;
                        (None, Outcome::Running, Some(name_of_job.as_str()))
                    }
                }
            }
        }
    };
    let status = compute_status(&scan, job_ref, queued, &outcome, reused, now.clone());
    let phase_changed = scan.status.as_ref().and_then(|s| s.phase) != status.phase;
    if scan.status.as_ref() != Some(&status) {
        write_status(&ctx, &scan, &status).await?;
    }
    if phase_changed {
        record_result(&ctx, &scan, &outcome, reused, summary_seen.as_ref(), now);
        match &outcome {
            Outcome::Succeeded(r) => {
                publish(
                    &ctx,
                    &scan,
                    EventType::Normal,
                    if reused { "Reused" } else { "Scanned" },
                    format!("{:?} for {}", r.verdict, r.image_digest),
                )
                .await
            }
            Outcome::Failed(m) => {
                publish(&ctx, &scan, EventType::Warning, "ScanFailed", m.clone()).await
            }
            // One per Scan would be ten thousand Events when ten thousand Scans are
            // created together: the status says `Queued` in any case.
            Outcome::Running if queued.is_some() && ctx.queued_events.take() => {
                publish(
                    &ctx,
                    &scan,
                    EventType::Normal,
                    "Queued",
                    "waiting for a free scan slot".into(),
                )
                .await
            }
            _ => {}
        }
    }
    // A freed slot wakes the head of the queue and a Job's changes wake its Scan (both
    // through the scan Job watch): these requeues are only a safety net.
    Ok(match status.phase {
        Some(ScanPhase::Queued) => Action::requeue(Duration::from_secs(300)),
        Some(ScanPhase::Running) => Action::requeue(Duration::from_secs(300)),
        _ => Action::await_change(),
    })
}

/// The body of a status merge patch.
#[derive(serde::Serialize)]
struct StatusPatch<'a> {
    status: &'a ScanStatus,
}

/// Write a Scan's status (a merge patch of the status subresource). The answer, the whole
/// Scan, is not decoded into one: the Scan watch brings the same object to the store, and
/// at ten thousand Scans a second decoding of each is a large share of a pass.
async fn write_status(ctx: &Context, scan: &Scan, status: &ScanStatus) -> Result<()> {
    let ns = scan
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    let mut request = kube::core::Request::new(Scan::url_path(&(), Some(&ns)))
        .patch_subresource(
            "status",
            &scan.name_any(),
            &params,
            // Serialized straight from the typed status, not through a `Value` first.
            &Patch::Merge(&StatusPatch { status }),
        )
        .map_err(kube::Error::BuildRequest)?;
    request.extensions_mut().insert("patch_status");
    ctx.client.request::<serde::de::IgnoredAny>(request).await?;
    Ok(())
}

/// A Scan waiting for its ScanPolicy: `Pending` with why; the ScanPolicy watch wakes it.
async fn wait_for_policy(ctx: &Context, scan: &Scan, why: String, now: Time) -> Result<Action> {
    let status = compute_status(
        scan,
        None,
        None,
        &Outcome::PolicyNotReady(why.clone()),
        false,
        now,
    );
    if scan.status.as_ref() != Some(&status) {
        write_status(ctx, scan, &status).await?;
        publish(ctx, scan, EventType::Warning, "PolicyNotReady", why).await;
    }
    // The ScanPolicy's changes wake the Scan; this is only a safety net.
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// What the Scan controller knows of re-evaluations, so that the reconcile of a finished
/// Scan whose status already shows its latest result (every Scan at each start of the
/// operator) costs no query: the latest result of every Scan is read in one query at the
/// first such reconcile, each Scan's entry taken by its first reconcile; a Scan a
/// re-evaluation wakes afterwards (its `rescan.delta` event, its ScanPolicy's Job) is
/// marked, and reads its own latest result as before.
#[derive(Default)]
pub struct Reevaluations {
    woken: std::sync::Mutex<std::collections::HashSet<kube::runtime::reflector::ObjectRef<Scan>>>,
    at_start: tokio::sync::OnceCell<
        std::sync::Mutex<std::collections::HashMap<String, stellaops_store::scans::LatestSummary>>,
    >,
}

impl Reevaluations {
    /// A re-evaluation recorded a new result for `scan`: its next reconcile reads it.
    pub fn woke(&self, scan: &kube::runtime::reflector::ObjectRef<Scan>) {
        self.woken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(scan.clone());
    }

    /// Whether `scan` was woken by a re-evaluation since its last reconcile (forgotten now).
    fn take_woken(&self, scan: &Scan) -> bool {
        self.woken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&kube::runtime::reflector::ObjectRef::from_obj(scan))
    }

    /// The latest result of the Scan `uid` as read at start, once (`None` the second
    /// time, or when it had none then).
    async fn at_start(
        &self,
        pool: &sqlx::PgPool,
        uid: &str,
    ) -> Result<Option<stellaops_store::scans::LatestSummary>> {
        let all = self
            .at_start
            .get_or_try_init(|| async {
                stellaops_store::scans::latest_summaries(pool)
                    .await
                    .map(std::sync::Mutex::new)
            })
            .await
            .map_err(|e| Error::Outbox(e.into()))?;
        Ok(all.lock().unwrap_or_else(|e| e.into_inner()).remove(uid))
    }
}

/// Whether `status` already shows the result `latest` summarizes.
fn shows(status: &ScanStatus, latest: &stellaops_store::scans::LatestSummary) -> bool {
    let findings = status.findings.as_ref();
    status.image_digest.as_deref() == Some(latest.image_digest.as_str())
        && status.verdict == Some(verdict_of(&latest.verdict))
        && status.policy_digest == latest.policy_digest.clone().filter(|d| !d.is_empty())
        && findings.is_some_and(|f| {
            (f.critical, f.high, f.medium, f.low)
                == (
                    i64::from(latest.critical),
                    i64::from(latest.high),
                    i64::from(latest.medium),
                    i64::from(latest.low),
                )
        })
}

/// A finished Scan: its result is evaluated again when a VEX statement about it changes
/// (`vex ingest`), and under a ScanPolicy when the policy changes or a waiver expires; each
/// re-evaluation records a new result for this Scan's uid. The status follows the latest
/// verified result; an Event says when the verdict changed. Woken by the re-evaluation's
/// `rescan.delta` event (see [`reevaluated`]) and by a ScanPolicy's re-evaluation Job.
async fn follow_reevaluation(scan: &Scan, ctx: &Context, woken: bool, now: Time) -> Result<Action> {
    let previous = scan.status.clone().unwrap_or_default();
    let (Some(pool), Some(uid), Some(ScanPhase::Succeeded)) =
        (&ctx.outbox, scan.uid(), previous.phase)
    else {
        return Ok(Action::await_change());
    };
    // Not woken by a re-evaluation, and the status shows the latest result as read at
    // start: nothing new (no query of its own).
    if !woken
        && ctx
            .reevaluations
            .at_start(pool, &uid)
            .await?
            .is_some_and(|latest| shows(&previous, &latest))
    {
        return Ok(Action::await_change());
    }
    let result = match recorded(
        &ctx.config.verdict_keys.current(),
        pool,
        Lookup::OfScan(&uid),
    )
    .await?
    {
        Some(Ok(result)) => result,
        Some(Err(reason)) => {
            // An unverified re-evaluation changes nothing the Scan reports.
            tracing::warn!(scan = %scan.name_any(), %reason, "ignoring an unverified re-evaluation");
            return Ok(Action::await_change());
        }
        None => return Ok(Action::await_change()),
    };
    let status = compute_status(
        scan,
        None,
        None,
        &Outcome::Succeeded(result.clone()),
        previous.reused,
        now,
    );
    if scan.status.as_ref() != Some(&status) {
        write_status(ctx, scan, &status).await?;
        if previous.verdict != Some(result.verdict) {
            publish(
                ctx,
                scan,
                EventType::Normal,
                "Reevaluated",
                format!(
                    "{} → {:?} for {} under policy {}",
                    previous
                        .verdict
                        .map(|v| format!("{v:?}"))
                        .unwrap_or_else(|| "none".into()),
                    result.verdict,
                    result.image_digest,
                    result.policy_digest.as_deref().unwrap_or("(unrecorded)")
                ),
            )
            .await;
        }
    }
    Ok(Action::await_change())
}

/// The Scan a `rescan.delta` event's new result was recorded for (its payload's `scan`):
/// woken to read it into its status. `None` for a result recorded for a Schedule.
pub fn reevaluated(payload: &Value) -> Option<kube::runtime::reflector::ObjectRef<Scan>> {
    let scan = &payload["scan"];
    Some(
        kube::runtime::reflector::ObjectRef::new(scan["name"].as_str()?)
            .within(scan["namespace"].as_str()?),
    )
}

/// The Scans that name the ScanPolicy `name` (from the shared store).
pub fn scans_naming(
    scans: &kube::runtime::reflector::Store<Scan>,
    name: &str,
) -> Vec<kube::runtime::reflector::ObjectRef<Scan>> {
    scans
        .state()
        .iter()
        .filter(|s| {
            s.spec
                .policy
                .policy_ref
                .as_ref()
                .is_some_and(|r| r.name == name)
        })
        .map(|s| kube::runtime::reflector::ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Count a Scan's result once, when its phase changes to it: the worker's Job is gone
/// before anything could scrape it, so its figures come from its termination message.
fn record_result(
    ctx: &Context,
    scan: &Scan,
    outcome: &Outcome,
    reused: bool,
    summary: Option<&Value>,
    now: Time,
) {
    let metrics = &ctx.metrics;
    let result = match outcome {
        Outcome::Running | Outcome::PolicyNotReady(_) => return,
        Outcome::Succeeded(r) => {
            metrics
                .verdicts
                .with_label_values(&[&format!("{:?}", r.verdict)])
                .inc();
            if reused { "reused" } else { "succeeded" }
        }
        Outcome::Failed(_) => "failed",
    };
    metrics.scans.with_label_values(&[result]).inc();
    if let Some(created) = &scan.metadata.creation_timestamp {
        let bytes = summary.and_then(|s| s["imageBytes"].as_u64());
        let seconds = now.0.duration_since(created.0).as_secs_f64().max(0.0);
        metrics
            .scan_latency
            .with_label_values(&[crate::metrics::size_bucket(bytes)])
            .observe(seconds);
    }
    if let Some(summary) = summary {
        for (key, label) in [
            ("layersCached", "hit"),
            ("layersAnalysed", "miss"),
            ("layersRefused", "refused"),
        ] {
            if let Some(n) = summary[key].as_u64() {
                metrics.layer_cache.with_label_values(&[label]).inc_by(n);
            }
        }
    }
}

async fn publish(ctx: &Context, scan: &Scan, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Scan".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &scan.object_ref(&())).await {
        tracing::warn!(%error, "could not publish event");
    }
}
