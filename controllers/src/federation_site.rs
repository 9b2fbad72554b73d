//! FederationSite controller: one owned CronJob running `stellaops-worker federation sync`,
//! and a status read from the CronJob, its Jobs and the sync's result.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    KeyToPath, PersistentVolumeClaimVolumeSource, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::api::{Patch, PatchParams};
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
pub use crate::workload::{SyncResult, job_finished};

/// Where the bundle volume is mounted in the sync Pod.
pub const VOLUME_MOUNT: &str = "/var/lib/stellaops/federation";
const TRUSTED_KEYS_MOUNT: &str = "/etc/stellaops/trusted-keys";
const SIGNING_KEY_MOUNT: &str = "/etc/stellaops/signing";

/// Name of the CronJob of a FederationSite (CronJob names are at most 52 characters).
pub fn cron_job_name(site: &FederationSite) -> String {
    // In the platform namespace: named after the site's namespace too.
    crate::tenancy::platform_name(
        &site.namespace().unwrap_or_default(),
        &site.name_any(),
        "-federation-sync",
        52,
    )
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

/// The site's Secrets (S3 credentials, trusted keys for an import, signing key for an
/// export) as copied into the platform namespace, where the sync runs.
pub fn secret_copies(site: &FederationSite) -> Vec<crate::tenancy::SecretCopy> {
    let cron = cron_job_name(site);
    let spec = &site.spec;
    let mut copies = Vec::new();
    let mut add = |source: &str, purpose: &str| {
        copies.push(crate::tenancy::SecretCopy {
            source: source.to_string(),
            copy: format!("{cron}-{purpose}"),
        })
    };
    if let Some(secret) = spec
        .transport
        .s3
        .as_ref()
        .and_then(|s| s.secret_ref.as_ref())
    {
        add(&secret.name, "s3");
    }
    if spec.direction == Direction::Import
        && let Some(keys) = &spec.policy.trusted_keys
    {
        add(&keys.name, "trusted-keys");
    }
    if spec.direction == Direction::Export
        && let Some(key) = &spec.policy.signing_key
    {
        add(&key.name, "signing-key");
    }
    copies
}

fn copy_of(site: &FederationSite, purpose: &str) -> String {
    format!("{}-{purpose}", cron_job_name(site))
}

/// The CronJob a FederationSite becomes, in the platform namespace. Pure.
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
    container
        .env
        .get_or_insert_with(Vec::new)
        .push(workload::database_url_env(config));
    if let Some(s3) = &spec.transport.s3 {
        let mut copied = s3.clone();
        if let Some(secret) = &mut copied.secret_ref {
            secret.name = copy_of(site, "s3");
        }
        workload::s3_env(&mut container, &copied);
    }
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
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
    if spec.direction == Direction::Import && spec.policy.trusted_keys.is_some() {
        volumes.push(Volume {
            name: "trusted-keys".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(copy_of(site, "trusted-keys")),
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
                secret_name: Some(copy_of(site, "signing-key")),
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
    workload::sync_cron_job(
        crate::tenancy::platform_meta(site, &config.operator_namespace, name, labels),
        workload::SyncSchedule {
            schedule: &spec.schedule,
            suspend: !spec.enabled,
            starting_deadline_seconds: 300,
            active_deadline_seconds: 3600,
            ttl_seconds_after_finished: 86_400,
        },
        container,
        volumes,
    )
}

/// The objects for `preview`, as applied (with `apiVersion` and `kind`).
pub fn desired(site: &FederationSite, config: &Config) -> Vec<Value> {
    let mut value = serde_json::to_value(cron_job(site, config)).expect("CronJobs serialize");
    value["apiVersion"] = json!("batch/v1");
    value["kind"] = json!("CronJob");
    vec![value]
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

/// Reconcile a FederationSite: validate, copy its Secrets and apply the CronJob in the
/// platform namespace, report status; the finalizer removes them with the site.
pub async fn reconcile(site: Arc<FederationSite>, ctx: Arc<Context>) -> Result<Action> {
    crate::tenancy::reconcile_with_cleanup(site, ctx, apply, |site, ctx| async move {
        crate::tenancy::cleanup_by_uid(&*site, &ctx).await
    })
    .await
}

async fn apply(site: Arc<FederationSite>, ctx: Arc<Context>) -> Result<Action> {
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
    let platform_ns = ctx.config.operator_namespace.clone();
    let owned = crate::tenancy::owned_selector(&site.uid().unwrap_or_default());
    // The copies first: the CronJob's Pods mount them. Kept in step at every reconcile.
    let copy_meta = ObjectMeta {
        labels: cron.metadata.labels.clone(),
        annotations: cron.metadata.annotations.clone(),
        ..Default::default()
    };
    let copy_selector = format!("{owned},app.kubernetes.io/component=federation-sync");
    crate::tenancy::copy_secrets(
        &ctx,
        &ns,
        &secret_copies(&site),
        &copy_meta,
        None,
        Some(&copy_selector),
    )
    .await?;
    let cron_api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &platform_ns);
    let body = workload::typed(&cron);
    let applied = cron_api
        .patch(
            &cron_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    let latest = workload::latest_job_result(&ctx, &platform_ns, &owned).await?;
    let status = compute_status(
        &site,
        Some(&applied),
        latest.as_ref(),
        Time(jiff::Timestamp::now()),
    );
    if let Some(lag) = status.cursor_lag_seconds {
        ctx.metrics
            .federation_cursor_lag
            .with_label_values(&[&ns, &name])
            .set(lag);
    }
    if site.status.as_ref() != Some(&status) {
        let api: Api<FederationSite> = Api::namespaced(ctx.client.clone(), &ns);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        api.patch_status(&name, &params, &Patch::Merge(&json!({"status": status})))
            .await?;
    }
    // Jobs finish on the CronJob's schedule; look again soon to report their results.
    Ok(Action::requeue(Duration::from_secs(60)))
}
