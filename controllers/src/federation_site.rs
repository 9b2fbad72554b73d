//! FederationSite controller: one owned CronJob running `stellaops-worker federation sync`,
//! and a status read from the CronJob, its Jobs and the sync's result.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    EnvFromSource, EnvVar, KeyToPath, PersistentVolumeClaimVolumeSource, Pod, PodSpec,
    PodTemplateSpec, SecretEnvSource, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use stellaops_crds::federation_site::Direction;
use stellaops_crds::{
    CONDITION_READY, FederationSite, FederationSiteStatus, condition, set_condition,
};

use crate::acceptance;
use crate::context::{Config, Context, FIELD_MANAGER};
use crate::error::{Error, Result};
use crate::workload;

/// Where the bundle volume is mounted in the sync Pod.
pub const VOLUME_MOUNT: &str = "/var/lib/stellaops/federation";
const TRUSTED_KEYS_MOUNT: &str = "/etc/stellaops/trusted-keys";
const SIGNING_KEY_MOUNT: &str = "/etc/stellaops/signing";

/// Name of the CronJob of a FederationSite (CronJob names are at most 52 characters).
pub fn cron_job_name(site: &FederationSite) -> String {
    workload::child_name(&site.name_any(), "-federation-sync", 52)
}

/// The arguments of `stellaops-worker federation sync` for `site`.
pub fn sync_args(site: &FederationSite) -> Vec<String> {
    let spec = &site.spec;
    let policy = &spec.policy;
    let mut args: Vec<String> = vec![
        "federation".into(),
        "sync".into(),
        "--site-id".into(),
        spec.site_id.clone(),
        "--direction".into(),
        match spec.direction {
            Direction::Import => "import".into(),
            Direction::Export => "export".into(),
        },
    ];
    if let Some(s3) = &spec.transport.s3 {
        args.extend([
            "--s3-bucket".into(),
            s3.bucket.clone(),
            "--s3-prefix".into(),
            s3.prefix.clone(),
        ]);
    }
    if let Some(volume) = &spec.transport.volume {
        args.extend([
            "--directory".into(),
            format!("{VOLUME_MOUNT}{}", volume.path),
        ]);
    }
    args.extend([
        "--max-bundle-size".into(),
        policy.max_bundle_size_bytes.to_string(),
        "--require-signature".into(),
        policy.require_signature.to_string(),
    ]);
    if let Some(name) = &spec.display_name {
        args.extend(["--display-name".into(), name.clone()]);
    }
    match spec.direction {
        Direction::Import => {
            let on_conflict = serde_json::to_value(policy.on_conflict)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            args.extend([
                "--on-conflict".into(),
                on_conflict.unwrap_or_else(|| "prefer_remote".into()),
            ]);
            if !policy.allowed_sources.is_empty() {
                args.extend(["--allowed-sources".into(), policy.allowed_sources.join(",")]);
            }
            if policy.trusted_keys.is_some() {
                args.extend(["--trusted-key".into(), TRUSTED_KEYS_MOUNT.into()]);
            }
        }
        Direction::Export => {
            args.extend([
                "--max-items".into(),
                policy.max_items.to_string(),
                "--compression-level".into(),
                policy.compression_level.to_string(),
            ]);
            if let Some(key) = &policy.signing_key {
                let file = key.key.clone().unwrap_or_else(|| "signing-key.pem".into());
                args.extend([
                    "--signing-key".into(),
                    format!("{SIGNING_KEY_MOUNT}/{file}"),
                ]);
            }
        }
    }
    args
}

/// The CronJob a FederationSite becomes. Pure.
pub fn cron_job(site: &FederationSite, config: &Config) -> CronJob {
    let name = cron_job_name(site);
    let labels = workload::labels(&site.name_any(), "FederationSite", "federation-sync");
    let spec = &site.spec;
    let mut container = workload::worker_container(
        config,
        "sync",
        sync_args(site),
        workload::resources("100m", "256Mi", "1Gi"),
    );
    let mut volumes = vec![workload::tmp_volume()];
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    if let Some(s3) = &spec.transport.s3 {
        let env = container.env.get_or_insert_with(Vec::new);
        if let Some(endpoint) = &s3.endpoint {
            env.push(EnvVar {
                name: "AWS_ENDPOINT_URL".into(),
                value: Some(endpoint.clone()),
                ..Default::default()
            });
        }
        env.push(EnvVar {
            name: "AWS_REGION".into(),
            value: Some(s3.region.clone().unwrap_or_else(|| "us-east-1".into())),
            ..Default::default()
        });
        if let Some(secret) = &s3.secret_ref {
            container.env_from = Some(vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: secret.name.clone(),
                    optional: Some(false),
                }),
                ..Default::default()
            }]);
        }
    }
    if let Some(volume) = &spec.transport.volume {
        volumes.push(Volume {
            name: "bundles".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: volume.claim.name.clone(),
                read_only: Some(spec.direction == Direction::Import),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "bundles".into(),
            mount_path: VOLUME_MOUNT.into(),
            ..Default::default()
        });
    }
    if spec.direction == Direction::Import
        && let Some(keys) = &spec.policy.trusted_keys
    {
        volumes.push(Volume {
            name: "trusted-keys".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(keys.name.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "trusted-keys".into(),
            mount_path: TRUSTED_KEYS_MOUNT.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if spec.direction == Direction::Export
        && let Some(key) = &spec.policy.signing_key
    {
        let file = key.key.clone().unwrap_or_else(|| "signing-key.pem".into());
        volumes.push(Volume {
            name: "signing-key".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(key.name.clone()),
                items: Some(vec![KeyToPath {
                    key: file.clone(),
                    path: file,
                    mode: Some(0o400),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "signing-key".into(),
            mount_path: SIGNING_KEY_MOUNT.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    CronJob {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: site.namespace(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![workload::owner_reference(site)]),
            ..Default::default()
        },
        spec: CronJobSpec {
            schedule: spec.schedule.clone(),
            suspend: Some(!spec.enabled),
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(300),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..Default::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(2),
                    active_deadline_seconds: Some(3600),
                    ttl_seconds_after_finished: Some(86_400),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(labels),
                            ..Default::default()
                        }),
                        spec: Some(PodSpec {
                            restart_policy: Some("Never".into()),
                            security_context: Some(workload::pod_security()),
                            automount_service_account_token: Some(false),
                            containers: vec![container],
                            volumes: Some(volumes),
                            ..Default::default()
                        }),
                    },
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The objects for `preview`, as applied (with `apiVersion` and `kind`).
pub fn desired(site: &FederationSite, config: &Config) -> Vec<Value> {
    let mut value = serde_json::to_value(cron_job(site, config)).expect("CronJobs serialize");
    value["apiVersion"] = json!("batch/v1");
    value["kind"] = json!("CronJob");
    vec![value]
}

/// What the latest finished sync said (the worker's JSON termination message).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncResult {
    /// The Job.
    pub job: String,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// When it finished.
    pub finished_at: Option<Time>,
    /// The worker's summary, if it wrote one.
    pub summary: Option<Value>,
    /// Why it failed, from the Job's condition or the worker's summary.
    pub error: Option<String>,
}

/// The status a FederationSite should have. Pure.
pub fn compute_status(
    site: &FederationSite,
    cron: Option<&CronJob>,
    latest: Option<&SyncResult>,
    now: Time,
) -> FederationSiteStatus {
    let previous = site.status.clone().unwrap_or_default();
    let generation = site.metadata.generation;
    let mut status = FederationSiteStatus {
        observed_generation: generation,
        cron_job_name: cron.and_then(|c| c.metadata.name.clone()),
        conditions: previous.conditions.clone(),
        ..previous.clone()
    };
    let mut conditions: Vec<Condition> = std::mem::take(&mut status.conditions);
    set_condition(
        &mut conditions,
        acceptance::accepted(generation, now.clone()),
    );
    let active = cron
        .and_then(|c| c.status.as_ref())
        .and_then(|s| s.active.as_ref())
        .is_some_and(|a| !a.is_empty());
    set_condition(
        &mut conditions,
        condition(
            "Syncing",
            active,
            if active { "JobRunning" } else { "Idle" },
            if active {
                "a sync Job is running"
            } else {
                "no sync is running"
            },
            generation,
            now.clone(),
        ),
    );
    if let Some(result) = latest
        && previous.last_job.as_deref() != Some(result.job.as_str())
    {
        status.last_job = Some(result.job.clone());
        if result.succeeded {
            status.last_error = None;
            status.last_sync_at = result.finished_at.clone().or(Some(now.clone()));
            if let Some(summary) = &result.summary {
                if let Some(cursor) = summary["cursor"].as_str() {
                    status.last_cursor = Some(cursor.to_string());
                    // How far behind the data was when this sync finished (stable between syncs,
                    // so the status does not churn).
                    let cursor_at = cursor
                        .split_once('#')
                        .and_then(|(at, _)| at.parse::<jiff::Timestamp>().ok());
                    let finished = status.last_sync_at.as_ref().map(|t| t.0);
                    if let (Some(at), Some(finished)) = (cursor_at, finished) {
                        status.cursor_lag_seconds = Some((finished - at).get_seconds().max(0));
                    }
                }
                status.bundles_imported += summary["bundles"].as_i64().unwrap_or(0);
                status.total_items_imported += summary["items"].as_i64().unwrap_or(0);
            }
        } else {
            status.last_error = result
                .error
                .clone()
                .or_else(|| Some(format!("Job {} failed", result.job)));
        }
    }
    match (&status.last_error, cron) {
        (_, None) => set_condition(
            &mut conditions,
            condition(
                CONDITION_READY,
                false,
                "CronJobMissing",
                "the sync CronJob is being created",
                generation,
                now.clone(),
            ),
        ),
        (Some(error), Some(_)) => {
            set_condition(
                &mut conditions,
                condition(
                    "Failed",
                    true,
                    "SyncFailed",
                    error.clone(),
                    generation,
                    now.clone(),
                ),
            );
            set_condition(
                &mut conditions,
                condition(
                    CONDITION_READY,
                    false,
                    "SyncFailed",
                    error.clone(),
                    generation,
                    now,
                ),
            );
        }
        (None, Some(_)) => {
            set_condition(
                &mut conditions,
                condition(
                    "Failed",
                    false,
                    "LastSyncSucceeded",
                    "the latest sync succeeded (or none has run yet)",
                    generation,
                    now.clone(),
                ),
            );
            let message = match (&site.spec.enabled, &status.last_sync_at) {
                (false, _) => {
                    "disabled: the sync CronJob is suspended; the cursor is kept".to_string()
                }
                (true, Some(_)) => format!(
                    "syncing on schedule {:?}; last cursor {}",
                    site.spec.schedule,
                    status.last_cursor.as_deref().unwrap_or("-")
                ),
                (true, None) => format!(
                    "syncing on schedule {:?}; no sync has finished yet",
                    site.spec.schedule
                ),
            };
            set_condition(
                &mut conditions,
                condition(
                    CONDITION_READY,
                    true,
                    if site.spec.enabled {
                        "Scheduled"
                    } else {
                        "Suspended"
                    },
                    message,
                    generation,
                    now,
                ),
            );
        }
    }
    status.conditions = conditions;
    status
}

/// The newest finished sync Job of a site and what its Pod reported.
async fn latest_result(ctx: &Context, site: &FederationSite) -> Result<Option<SyncResult>> {
    let ns = site
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let selector = format!("stella-ops.org/federationsite={}", site.name_any());
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let mut finished: Vec<Job> = jobs
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        // Finished means the Job says so (Complete or Failed), not a Pod that failed
        // while the Job still retries.
        .filter(|j| job_finished(j).is_some())
        .collect();
    finished.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
    let Some(job) = finished.pop() else {
        return Ok(None);
    };
    let name = job.name_any();
    let status = job.status.clone().unwrap_or_default();
    let succeeded = job_finished(&job) == Some(true);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_list = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await?;
    let message = pod_list.items.iter().rev().find_map(|p| {
        p.status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
    });
    let summary: Option<Value> = message
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok());
    let error = summary
        .as_ref()
        .and_then(|s| s["error"].as_str().map(str::to_string))
        .or_else(|| {
            status
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Failed")
                .and_then(|c| c.message.clone())
        });
    Ok(Some(SyncResult {
        job: name,
        succeeded,
        finished_at: status.completion_time.clone(),
        summary,
        error,
    }))
}

/// `Some(true)` for a Job with `Complete=True`, `Some(false)` for `Failed=True`, else `None`.
pub fn job_finished(job: &Job) -> Option<bool> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some(true),
            "Failed" => Some(false),
            _ => None,
        })
}

/// Reconcile a FederationSite: validate, apply the CronJob, report status.
pub async fn reconcile(site: Arc<FederationSite>, ctx: Arc<Context>) -> Result<Action> {
    let value = serde_json::to_value(&*site)?;
    if stellaops_crds::validation::admit(&{
        let mut v = value.clone();
        v.as_object_mut().map(|m| m.remove("status"));
        v
    })
    .is_err()
    {
        // The shared acceptance path reports InvalidSpec with the field path and an Event.
        return acceptance::reconcile(site, ctx, "").await;
    }
    let ns = site
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = site.name_any();
    let cron = cron_job(&site, &ctx.config);
    let cron_name = cron.metadata.name.clone().expect("named");
    let cron_api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let mut body = serde_json::to_value(&cron)?;
    body["apiVersion"] = json!("batch/v1");
    body["kind"] = json!("CronJob");
    let applied = cron_api
        .patch(
            &cron_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    let latest = latest_result(&ctx, &site).await?;
    let status = compute_status(
        &site,
        Some(&applied),
        latest.as_ref(),
        Time(jiff::Timestamp::now()),
    );
    if site.status.as_ref() != Some(&status) {
        let api: Api<FederationSite> = Api::namespaced(ctx.client.clone(), &ns);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        api.patch_status(&name, &params, &Patch::Merge(&json!({"status": status})))
            .await?;
    }
    ctx.metrics
        .reconciliations
        .with_label_values(&["FederationSite", "ok"])
        .inc();
    // Jobs finish on the CronJob's schedule; look again soon to report their results.
    Ok(Action::requeue(Duration::from_secs(60)))
}
