//! Schedule controller: decides when runs are due ([`timing`]), selects the images running
//! in the selected Pods (by digest), applies `onlyIf` and the limits, records the run in
//! the database (its id derived from the scheduled time, so a restart never runs it twice),
//! and starts it — an owned `stellaops-worker evaluate` Job (analysis-only) or forced Scans
//! (content-refresh). After a federation import, `onAdvisoryDelta` runs only the images the
//! changed advisories affect.

pub mod cron;
pub mod timing;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use stellaops_admission_webhook::policy::{glob_match, normalize};
use stellaops_crds::schedule::{RunSummary, ScheduleMode, ScheduleStatus};
use stellaops_crds::{CONDITION_READY, Scan, Schedule, condition, set_condition};
use stellaops_store::schedules::{NewRun, Run};

use crate::acceptance;
use crate::context::{Config, Context, FIELD_MANAGER};
use crate::error::{Error, Result};
use crate::workload;
use timing::{Decision, History, Timing};

/// Component label of run Jobs.
pub const COMPONENT: &str = "schedule-run";
/// Label naming the run on what it created.
pub const RUN_LABEL: &str = "stella-ops.org/schedule-run";

/// An image running somewhere in the selection.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RunningImage {
    /// `sha256:…` the kubelet resolved.
    pub digest: String,
    /// Reference to scan it by: the spec's repository pinned to the digest.
    pub reference: String,
}

fn digest_of_image_id(image_id: &str) -> Option<&str> {
    let (_, digest) = image_id.rsplit_once('@')?;
    (digest.starts_with("sha256:") && digest.len() == 71).then_some(digest)
}

fn repository(image: &str) -> &str {
    let name = image.split('@').next().unwrap_or(image);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

/// The images (by digest, de-duplicated) running in Pods of the selected namespaces that
/// match the pod selector and the image globs. Pure.
pub fn select(
    schedule: &Schedule,
    namespaces: &[Namespace],
    pods: &[Pod],
) -> Result<Vec<RunningImage>> {
    use kube::core::{Selector, SelectorExt};
    let selection = &schedule.spec.selection;
    let to_selector =
        |s: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>| {
            s.clone()
                .map(|s| {
                    Selector::try_from(s).map_err(|e| Error::InvalidSpec(format!("selector: {e}")))
                })
                .transpose()
        };
    let namespace_selector = to_selector(&selection.namespace_selector)?;
    let pod_selector = to_selector(&selection.pod_selector)?;
    let allowed: BTreeSet<String> = namespaces
        .iter()
        .filter(|ns| {
            namespace_selector.as_ref().is_none_or(|s| {
                let mut labels = ns.labels().clone();
                labels.insert("kubernetes.io/metadata.name".into(), ns.name_any());
                s.matches(&labels)
            })
        })
        .map(|ns| ns.name_any())
        .collect();
    let mut found = BTreeMap::new();
    for pod in pods {
        let ns = pod.namespace().unwrap_or_default();
        if !allowed.contains(&ns)
            || !pod_selector
                .as_ref()
                .is_none_or(|s| s.matches(pod.labels()))
        {
            continue;
        }
        let Some(status) = &pod.status else { continue };
        if status.phase.as_deref() != Some("Running") {
            continue;
        }
        let statuses = status
            .container_statuses
            .iter()
            .flatten()
            .chain(status.init_container_statuses.iter().flatten())
            .chain(status.ephemeral_container_statuses.iter().flatten());
        for container in statuses {
            let Some(digest) = digest_of_image_id(&container.image_id) else {
                continue;
            };
            let image = &container.image;
            let globs = &selection.images;
            if !globs.is_empty()
                && !globs
                    .iter()
                    .any(|g| glob_match(g, image) || glob_match(g, &normalize(image)))
            {
                continue;
            }
            found
                .entry(digest.to_string())
                .or_insert_with(|| RunningImage {
                    digest: digest.to_string(),
                    reference: format!("{}@{digest}", repository(image)),
                });
        }
    }
    Ok(found.into_values().collect())
}

/// What a run takes after `onlyIf` and `maxScans`: (chosen, left out by onlyIf, left out
/// by the limit). `last_reports` maps digests to their latest report time. Pure.
pub fn apply_limits(
    schedule: &Schedule,
    selected: &[RunningImage],
    last_reports: &BTreeMap<String, jiff::Timestamp>,
    now: jiff::Timestamp,
) -> (Vec<RunningImage>, usize, usize) {
    let older_than = schedule
        .spec
        .selection
        .only_if
        .as_ref()
        .and_then(|o| o.last_report_older_than_days);
    let eligible: Vec<RunningImage> = selected
        .iter()
        .filter(|image| match older_than {
            None => true,
            Some(days) => last_reports.get(&image.digest).is_none_or(|at| {
                now.duration_since(*at) > jiff::SignedDuration::from_hours(24 * days as i64)
            }),
        })
        .cloned()
        .collect();
    let by_only_if = selected.len() - eligible.len();
    let max = schedule.spec.limits.max_scans.max(0) as usize;
    let by_limit = eligible.len().saturating_sub(max);
    (
        eligible.into_iter().take(max).collect(),
        by_only_if,
        by_limit,
    )
}

fn mode_name(mode: ScheduleMode) -> &'static str {
    match mode {
        ScheduleMode::AnalysisOnly => "analysis-only",
        ScheduleMode::ContentRefresh => "content-refresh",
    }
}

/// The name of the Job of run `run_id` of a Schedule in namespace `ns`, in the platform
/// namespace.
pub fn evaluate_job_name(ns: &str, run_id: &str) -> String {
    crate::tenancy::platform_name(ns, run_id, "", 63)
}

/// The Job running an analysis-only run, in the platform namespace (it holds the database
/// credentials). With the Schedule's `policyRef`, every image is decided under that
/// ScanPolicy: `policy_json` is its evaluator's form (`None`: as `preview` shows it, the
/// rules read when the run starts).
pub fn evaluate_job(
    schedule: &Schedule,
    run_id: &str,
    config: &Config,
    policy_json: Option<&str>,
) -> Job {
    let mut args = vec!["evaluate".into(), "--run".into(), run_id.to_string()];
    if let Some(reference) = &schedule.spec.policy_ref {
        args.extend([
            "--policy-ref".into(),
            reference.name.clone(),
            "--policy-json".into(),
            policy_json.map(str::to_string).unwrap_or_else(|| {
                format!(
                    "<the rules of ScanPolicy {}, read when the run starts>",
                    reference.name
                )
            }),
        ]);
    }
    let mut container = workload::worker_container(
        config,
        "evaluate",
        args,
        workload::resources("100m", "128Mi", "512Mi"),
    );
    container
        .env
        .get_or_insert_with(Vec::new)
        .push(workload::database_url_env(config));
    // The signed verdicts' envelopes go to the platform bucket, as a scan's do.
    workload::verdict_bucket(&mut container, config);
    let mut volumes = vec![workload::tmp_volume()];
    workload::verdict_signing(&mut container, &mut volumes, config);
    let mut labels = workload::labels(&schedule.name_any(), "Schedule", COMPONENT);
    labels.insert(RUN_LABEL.into(), run_id.to_string());
    workload::platform_run_once_job(
        schedule,
        config,
        evaluate_job_name(&schedule.namespace().unwrap_or_default(), run_id),
        labels,
        container,
        Some(volumes),
        workload::JobLimits {
            backoff: 2,
            deadline_seconds: 6 * 3600,
            ttl_seconds: 24 * 3600,
        },
    )
}

/// The forced Scan a content-refresh run creates for `image`.
pub fn refresh_scan(schedule: &Schedule, run_id: &str, image: &RunningImage) -> Scan {
    let hex = image.digest.trim_start_matches("sha256:");
    let name = format!("{run_id}-{}", &hex[..12.min(hex.len())]);
    let mut labels = workload::labels(&schedule.name_any(), "Schedule", "schedule-scan");
    labels.insert(RUN_LABEL.into(), run_id.to_string());
    let mut scan = Scan::new(
        &name,
        serde_json::from_value(json!({"image": image.reference, "force": true}))
            .expect("a Scan spec from an image and force"),
    );
    // The Schedule's ScanPolicy decides each of its Scans' verdicts.
    scan.spec.policy.policy_ref = schedule.spec.policy_ref.clone();
    scan.metadata.namespace = schedule.namespace();
    scan.metadata.labels = Some(labels);
    scan.metadata.owner_references = Some(vec![workload::owner_reference(schedule)]);
    scan
}

/// What `preview` shows: the Job (or a sample Scan) one run creates.
pub fn desired(schedule: &Schedule, config: &Config) -> Vec<Value> {
    let run_id = format!("{}-<run>", schedule.name_any());
    match schedule.spec.mode {
        ScheduleMode::AnalysisOnly => {
            vec![workload::typed(&evaluate_job(
                schedule, &run_id, config, None,
            ))]
        }
        ScheduleMode::ContentRefresh => vec![
            serde_json::to_value(refresh_scan(
                schedule,
                &run_id,
                &RunningImage {
                    digest: format!("sha256:{}", "0".repeat(64)),
                    reference: "<each selected image>@sha256:<digest>".into(),
                },
            ))
            .expect("a Scan serializes"),
        ],
    }
}

/// Lines `preview` prints about a Schedule: its next five start times.
pub fn preview_notes(schedule: &Schedule, now: jiff::Timestamp) -> Vec<String> {
    let ns = schedule.namespace().unwrap_or_else(|| "default".into());
    match Timing::of(&schedule.spec, &ns, &schedule.name_any()) {
        Ok(timing) => {
            let mut notes = vec![format!(
                "next runs (after jitter {}s and windows): {}",
                timing.jitter.as_secs(),
                timing
                    .upcoming_starts(now, 5)
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )];
            if schedule.spec.triggers.on_advisory_delta {
                notes.push("also runs for the images a federation import affects".into());
            }
            notes
        }
        Err(e) => vec![format!("schedule cannot run: {e}")],
    }
}

fn to_time(t: jiff::Timestamp) -> Time {
    Time(t)
}

fn summary(run: &Run) -> RunSummary {
    RunSummary {
        id: run.plan.id.clone(),
        trigger: run.plan.trigger.clone(),
        selected: run.plan.selected,
        created: run.created,
        skipped: run.plan.skipped,
        new_findings: run.new_findings,
    }
}

/// The status after a decision, from the runs in the database. Pure.
pub fn compute_status(
    schedule: &Schedule,
    decision: &Decision,
    runs: &[Run],
    note: Option<&str>,
    now: jiff::Timestamp,
) -> ScheduleStatus {
    let generation = schedule.meta().generation;
    let mut status = schedule.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    if let Some(record) = decision.record {
        status.last_schedule_time = Some(to_time(record));
    }
    status.next_schedule_time = decision.next_start.map(to_time);
    status.active = runs
        .iter()
        .filter(|r| r.finished_at.is_none())
        .map(|r| r.plan.id.clone())
        .collect();
    status.last_run = runs.first().map(summary);
    if let Some(ok) = runs
        .iter()
        .find(|r| r.finished_at.is_some() && r.error.is_none())
    {
        status.last_successful_time = ok
            .finished_at
            .and_then(|t| jiff::Timestamp::from_second(t.timestamp()).ok())
            .map(to_time);
    }
    let now_time = Time(now);
    let (reason, message) = if schedule.spec.suspend {
        (
            "Suspended",
            "suspended: no run starts until suspend is false".to_string(),
        )
    } else {
        match (decision.next_start, note) {
            (_, Some(note)) => ("Scheduled", note.to_string()),
            (Some(next), None) => ("Scheduled", format!("next run at {next}")),
            (None, None) => ("Scheduled", "the schedule has no future run".to_string()),
        }
    };
    set_condition(
        &mut status.conditions,
        condition(
            CONDITION_READY,
            true,
            reason,
            message,
            generation,
            now_time.clone(),
        ),
    );
    let failed = runs.first().and_then(|r| r.error.clone());
    let (running, reason, message) = match (status.active.first(), failed) {
        (Some(id), _) => (true, "RunActive", format!("run {id} in progress")),
        (None, Some(error)) => (false, "LastRunFailed", error),
        (None, None) => (false, "Idle", "no run in progress".to_string()),
    };
    set_condition(
        &mut status.conditions,
        condition("Running", running, reason, message, generation, now_time),
    );
    status
}

async fn not_ready(
    schedule: &Schedule,
    ctx: &Context,
    reason: &str,
    message: String,
) -> Result<Action> {
    let ns = schedule
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let generation = schedule.meta().generation;
    let mut status = schedule.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    if workload::set_not_ready(&mut status.conditions, reason, &message, generation) {
        workload::publish_event(
            &ctx.recorder,
            schedule,
            EventType::Warning,
            reason,
            message,
            "Schedule",
        )
        .await?;
    }
    patch_status(ctx, &ns, &schedule.name_any(), &status).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn patch_status(ctx: &Context, ns: &str, name: &str, status: &ScheduleStatus) -> Result<()> {
    let api: Api<Schedule> = Api::namespaced(ctx.client.clone(), ns);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    api.patch_status(name, &params, &Patch::Merge(&json!({"status": status})))
        .await?;
    Ok(())
}

/// The namespace a Schedule may select Pods in: its own, unless it lives in the platform
/// namespace (then every namespace its selector matches). A tenant never sees another
/// tenant's workloads through a Schedule.
pub fn selection_scope(schedule: &Schedule, platform_namespace: &str) -> Option<String> {
    let ns = schedule.namespace().unwrap_or_default();
    (ns != platform_namespace).then_some(ns)
}

async fn running_images(ctx: &Context, schedule: &Schedule) -> Result<Vec<RunningImage>> {
    let _timer = ctx.metrics.selection.start_timer();
    // A tenant's Schedule sees its own namespace only (pods elsewhere are dropped by
    // `select`, which keeps only Pods of the namespaces it is given).
    let scope = selection_scope(schedule, &ctx.config.operator_namespace);
    // From the shared stores: a run start used to LIST every Pod of the cluster.
    let not_ready =
        |e: kube::runtime::reflector::store::WriterDropped| Error::CacheNotReady(e.to_string());
    ctx.caches
        .namespaces
        .wait_until_ready()
        .await
        .map_err(not_ready)?;
    ctx.caches
        .pods
        .wait_until_ready()
        .await
        .map_err(not_ready)?;
    let namespaces: Vec<Namespace> = ctx
        .caches
        .namespaces
        .state_filter(|n| {
            scope
                .as_deref()
                .is_none_or(|s| n.metadata.name.as_deref() == Some(s))
        })
        .iter()
        .map(|n| n.as_ref().clone())
        .collect();
    let mut pods: Vec<Pod> = ctx
        .caches
        .pods
        .state_filter(|p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && scope
                    .as_deref()
                    .is_none_or(|s| p.metadata.namespace.as_deref() == Some(s))
        })
        .iter()
        .map(|p| p.as_ref().clone())
        .collect();
    // In LIST order (namespace, name), as the store's order is arbitrary: an image two
    // Pods run under different names is named after the same Pod every time.
    pods.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    select(schedule, &namespaces, &pods)
}

/// Create the run (selection, limits, database row) and start what it runs (an
/// analysis-only run under `policy_json`, the Schedule's ScanPolicy, when it names one).
#[allow(clippy::too_many_arguments)]
async fn start_run(
    ctx: &Context,
    pool: &sqlx::PgPool,
    schedule: &Schedule,
    run_id: &str,
    trigger: &str,
    scheduled_at: jiff::Timestamp,
    candidates: Vec<RunningImage>,
    policy_json: Option<&str>,
) -> Result<()> {
    let ns = schedule
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let digests: Vec<String> = candidates.iter().map(|c| c.digest.clone()).collect();
    let reports: BTreeMap<String, jiff::Timestamp> =
        stellaops_store::schedules::latest_reports(pool, &digests)
            .await?
            .into_iter()
            .filter_map(|(d, t)| {
                jiff::Timestamp::from_second(t.timestamp())
                    .ok()
                    .map(|t| (d, t))
            })
            .collect();
    let now = jiff::Timestamp::now();
    let (chosen, by_only_if, by_limit) = apply_limits(schedule, &candidates, &reports, now);
    let spec = &schedule.spec;
    let run = NewRun {
        id: run_id.to_string(),
        namespace: ns.clone(),
        name: schedule.name_any(),
        trigger: trigger.into(),
        mode: mode_name(spec.mode).into(),
        scheduled_at: chrono::DateTime::from_timestamp(scheduled_at.as_second(), 0)
            .unwrap_or_default(),
        // Analysis-only runs evaluate digests; content-refresh runs scan references
        // pinned to them.
        images: chosen
            .iter()
            .map(|c| match spec.mode {
                ScheduleMode::AnalysisOnly => c.digest.clone(),
                ScheduleMode::ContentRefresh => c.reference.clone(),
            })
            .collect(),
        selected: candidates.len() as i64,
        skipped: (by_only_if + by_limit) as i64,
        rate_per_second: spec.limits.rate_per_second,
        notify: spec.notify.on_new_findings,
        min_severity: spec
            .notify
            .min_severity
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(str::to_string)),
    };
    stellaops_store::schedules::create_run(pool, &run).await?;
    ctx.metrics.impacted_images.inc_by(chosen.len() as u64);
    match spec.mode {
        ScheduleMode::AnalysisOnly => {
            workload::apply(
                Api::<Job>::namespaced(ctx.client.clone(), &ctx.config.operator_namespace),
                &evaluate_job_name(&ns, run_id),
                &workload::typed(&evaluate_job(schedule, run_id, &ctx.config, policy_json)),
            )
            .await?;
            ctx.metrics.jobs_enqueued.inc();
        }
        ScheduleMode::ContentRefresh => {
            if let Some(run) = stellaops_store::schedules::run(pool, run_id).await? {
                create_refresh_batch(ctx, pool, schedule, &run).await?;
            }
        }
    }
    let skipped = if by_only_if + by_limit > 0 {
        format!(
            "; {by_only_if} left out by onlyIf, {by_limit} by maxScans {}",
            spec.limits.max_scans
        )
    } else {
        String::new()
    };
    workload::publish_event(
        &ctx.recorder,
        schedule,
        EventType::Normal,
        "RunStarted",
        format!(
            "{trigger} run {run_id}: {} running image(s) selected, {} to {}{skipped}",
            candidates.len(),
            chosen.len(),
            if spec.mode == ScheduleMode::AnalysisOnly {
                "re-evaluate"
            } else {
                "scan"
            }
        ),
        "Run",
    )
    .await?;
    Ok(())
}

/// Create the next second's worth (`ratePerSecond`) of a content-refresh run's Scans;
/// returns whether more remain. Progress is in the run's row, so a restart continues
/// where it was and an existing Scan is not an error.
async fn create_refresh_batch(
    ctx: &Context,
    pool: &sqlx::PgPool,
    schedule: &Schedule,
    run: &Run,
) -> Result<bool> {
    let ns = schedule
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let scans: Api<Scan> = Api::namespaced(ctx.client.clone(), &ns);
    let start = (run.created.max(0) as usize).min(run.plan.images.len());
    let end = (start + run.plan.rate_per_second.max(1) as usize).min(run.plan.images.len());
    for reference in &run.plan.images[start..end] {
        let digest = reference
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or(reference);
        let image = RunningImage {
            digest: digest.to_string(),
            reference: reference.clone(),
        };
        match scans
            .create(
                &PostParams::default(),
                &refresh_scan(schedule, &run.plan.id, &image),
            )
            .await
        {
            Ok(_) => ctx.metrics.jobs_enqueued.inc(),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    stellaops_store::schedules::record_created(pool, &run.plan.id, end as i64).await?;
    Ok(end < run.plan.images.len())
}

/// Whether a content-refresh run is over: every Scan it created has finished. `Some`
/// with the failure summary (or `None` when all succeeded) once it is. Pure.
pub fn refresh_outcome(run: &Run, scans: &[Scan]) -> Option<Option<String>> {
    use stellaops_crds::scan::ScanPhase;
    if scans.len() < run.plan.images.len() {
        return None;
    }
    let phases: Vec<Option<ScanPhase>> = scans
        .iter()
        .map(|s| s.status.as_ref().and_then(|st| st.phase))
        .collect();
    if !phases
        .iter()
        .all(|p| matches!(p, Some(ScanPhase::Succeeded) | Some(ScanPhase::Failed)))
    {
        return None;
    }
    let failed = phases
        .iter()
        .filter(|p| matches!(p, Some(ScanPhase::Failed)))
        .count();
    Some((failed > 0).then(|| format!("{failed} of {} Scans failed", scans.len())))
}

/// Settle runs that are over: an evaluate Job that ended without the worker recording the
/// end (killed, deadline), a content-refresh run whose Scans have all finished. Returns
/// whether any was.
async fn settle_runs(ctx: &Context, pool: &sqlx::PgPool, ns: &str, runs: &[Run]) -> Result<bool> {
    let mut settled = false;
    for run in runs
        .iter()
        .filter(|r| r.finished_at.is_none() && r.plan.mode == "content-refresh")
    {
        if (run.created as usize) < run.plan.images.len() {
            continue;
        }
        ctx.caches
            .scans
            .wait_until_ready()
            .await
            .map_err(|e| Error::CacheNotReady(e.to_string()))?;
        let created: Vec<Scan> = ctx
            .caches
            .scans
            .state_filter(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.labels().get(RUN_LABEL) == Some(&run.plan.id)
            })
            .iter()
            .map(|s| s.as_ref().clone())
            .collect();
        if let Some(outcome) = refresh_outcome(run, &created) {
            stellaops_store::schedules::finish(pool, &run.plan.id, outcome.as_deref()).await?;
            settled = true;
        }
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.config.operator_namespace);
    for run in runs
        .iter()
        .filter(|r| r.finished_at.is_none() && r.plan.mode == "analysis-only")
    {
        match jobs.get_opt(&evaluate_job_name(ns, &run.plan.id)).await? {
            Some(job) => {
                if workload::job_finished(&job) == Some(false) {
                    let why = workload::job_failure(&job)
                        .unwrap_or_else(|| "the evaluate Job failed".into());
                    stellaops_store::schedules::finish(pool, &run.plan.id, Some(&why)).await?;
                    settled = true;
                }
            }
            None => {
                stellaops_store::schedules::finish(
                    pool,
                    &run.plan.id,
                    Some("the evaluate Job is gone"),
                )
                .await?;
                settled = true;
            }
        }
    }
    Ok(settled)
}

/// Reconcile a Schedule; its evaluate Jobs run in the platform namespace and the finalizer
/// removes them with the Schedule.
pub async fn reconcile(schedule: Arc<Schedule>, ctx: Arc<Context>) -> Result<Action> {
    crate::tenancy::reconcile_with_cleanup(schedule, ctx, apply, |schedule, ctx| async move {
        crate::tenancy::cleanup_by_uid(&*schedule, &ctx).await
    })
    .await
}

async fn apply(schedule: Arc<Schedule>, ctx: Arc<Context>) -> Result<Action> {
    let mut spec_only = serde_json::to_value(&*schedule)?;
    spec_only.as_object_mut().map(|m| m.remove("status"));
    if stellaops_crds::validation::admit(&spec_only).is_err() {
        return acceptance::reconcile(schedule, ctx, "").await;
    }
    let ns = schedule
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = schedule.name_any();
    let timing = match Timing::of(&schedule.spec, &ns, &name) {
        Ok(timing) => timing,
        Err(e) => return not_ready(&schedule, &ctx, "InvalidSchedule", e).await,
    };
    let Some(pool) = ctx.outbox.clone() else {
        return not_ready(
            &schedule,
            &ctx,
            "DatabaseRequired",
            "runs are recorded in the platform database: start the operator with --database-url"
                .into(),
        )
        .await;
    };
    // An analysis-only run naming a ScanPolicy decides every image under its rules (handed
    // to the worker, which needs no access to the cluster): the policy must be Ready. Until
    // it is, no run starts (looked at again within five minutes).
    let policy_json = match (&schedule.spec.policy_ref, schedule.spec.mode) {
        (Some(reference), ScheduleMode::AnalysisOnly) => {
            ctx.caches.scan_policies_ready().await?;
            let policy = ctx
                .caches
                .scan_policies
                .get(&kube::runtime::reflector::ObjectRef::new(&reference.name));
            match crate::scan_policy::ready_policy(policy.as_deref(), &reference.name) {
                Ok(json) => Some(json),
                Err(why) => {
                    return not_ready(
                        &schedule,
                        &ctx,
                        "PolicyNotReady",
                        format!("{why}; analysis-only runs decide under it and none starts until it is Ready"),
                    )
                    .await;
                }
            }
        }
        _ => None,
    };
    let limit = schedule.spec.history_limit.max(1) as i64 + 10;
    let runs = stellaops_store::schedules::runs(&pool, &ns, &name, limit).await?;
    // Content-refresh runs still creating their Scans go on at their rate.
    let mut creating = false;
    for run in runs.iter().filter(|r| {
        r.finished_at.is_none()
            && r.plan.mode == "content-refresh"
            && (r.created as usize) < r.plan.images.len()
    }) {
        creating |= create_refresh_batch(&ctx, &pool, &schedule, run).await?;
    }
    let runs = if settle_runs(&ctx, &pool, &ns, &runs).await? {
        stellaops_store::schedules::runs(&pool, &ns, &name, limit).await?
    } else {
        runs
    };
    let now = jiff::Timestamp::now();
    let history = History {
        last_schedule_time: schedule
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref())
            .map(|t| t.0),
        created: schedule
            .meta()
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(now),
        active: runs.iter().filter(|r| r.finished_at.is_none()).count(),
    };
    let decision = timing::decide(&timing, &history, now);
    let mut note = decision.not_started.clone();
    if let Some(missed) = &decision.not_started {
        workload::publish_event(
            &ctx.recorder,
            &*schedule,
            EventType::Warning,
            "RunSkipped",
            missed.clone(),
            "Schedule",
        )
        .await?;
    }
    if decision.replace_active {
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.config.operator_namespace);
        for run in runs.iter().filter(|r| r.finished_at.is_none()) {
            if run.plan.mode == "analysis-only" {
                let job = evaluate_job_name(&ns, &run.plan.id);
                match jobs.delete(&job, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            stellaops_store::schedules::finish(
                &pool,
                &run.plan.id,
                Some("replaced by a newer run (concurrencyPolicy: Replace)"),
            )
            .await?;
        }
    }
    // Listed once per reconcile, for the cron run and the delta run alike.
    let mut running: Option<Vec<RunningImage>> = None;
    if let Some(scheduled) = decision.start {
        let run_id = timing::run_id(&name, scheduled);
        let images = running_images(&ctx, &schedule).await?;
        running = Some(images.clone());
        start_run(
            &ctx,
            &pool,
            &schedule,
            &run_id,
            "cron",
            scheduled,
            images,
            policy_json.as_deref(),
        )
        .await?;
    }
    let mut delta_pending = false;
    if schedule.spec.triggers.on_advisory_delta && !schedule.spec.suspend {
        let (affected, _, head) =
            stellaops_store::schedules::advisory_delta(&pool, &ns, &name).await?;
        let delta_active = runs
            .iter()
            .any(|r| r.finished_at.is_none() && r.plan.trigger == "advisory-delta");
        if affected.is_empty() {
            stellaops_store::schedules::set_advisory_cursor(&pool, &ns, &name, head).await?;
        } else if delta_active {
            delta_pending = true;
            note = Some(format!(
                "{} image(s) affected by new advisories wait for the current delta run",
                affected.len()
            ));
        } else {
            let affected: BTreeSet<String> = affected.into_iter().collect();
            let listed = match running.take() {
                Some(listed) => listed,
                None => running_images(&ctx, &schedule).await?,
            };
            let running: Vec<RunningImage> = listed
                .into_iter()
                .filter(|i| affected.contains(&i.digest))
                .collect();
            if !running.is_empty() {
                let run_id = workload::child_name(&name, &format!("-delta-{head}"), 52);
                start_run(
                    &ctx,
                    &pool,
                    &schedule,
                    &run_id,
                    "advisory-delta",
                    now,
                    running,
                    policy_json.as_deref(),
                )
                .await?;
            }
            stellaops_store::schedules::set_advisory_cursor(&pool, &ns, &name, head).await?;
        }
    }
    stellaops_store::schedules::prune(&pool, &ns, &name, schedule.spec.history_limit.max(1) as i64)
        .await?;
    let runs = stellaops_store::schedules::runs(&pool, &ns, &name, limit).await?;
    let status = compute_status(&schedule, &decision, &runs, note.as_deref(), now);
    if schedule.status.as_ref() != Some(&status) {
        patch_status(&ctx, &ns, &name, &status).await?;
    }
    let mut wait = timing::requeue_after(&decision, now);
    if creating
        || runs.iter().any(|r| {
            r.finished_at.is_none()
                && r.plan.mode == "content-refresh"
                && (r.created as usize) < r.plan.images.len()
        })
    {
        // Next second's Scans.
        wait = wait.min(Duration::from_secs(1));
    }
    if !status.active.is_empty() || schedule.spec.triggers.on_advisory_delta || delta_pending {
        // Follow runs and new advisories every 30 s.
        wait = wait.min(Duration::from_secs(30));
    }
    Ok(Action::requeue(wait))
}
