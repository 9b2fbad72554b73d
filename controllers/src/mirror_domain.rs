//! MirrorDomain controller: an owned PVC, a sync CronJob (`stellaops-worker mirror sync`),
//! a Deployment and Service (`stellaops-worker mirror serve`), and a status read from
//! them and from the latest sync's result.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    ContainerPort, HTTPGetAction, KeyToPath, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe, SecretVolumeSource,
    Service, ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use stellaops_crds::mirror_domain::SyncCounts;
use stellaops_crds::{CONDITION_READY, MirrorDomain, MirrorDomainStatus, condition, set_condition};

use crate::acceptance;
use crate::context::{Config, Context, FIELD_MANAGER};
use crate::error::{Error, Result};
use crate::workload::{self, SyncResult};

/// Where the export volume is mounted.
pub const EXPORT_ROOT: &str = "/var/lib/stellaops/mirror";
const HTPASSWD_MOUNT: &str = "/etc/stellaops/htpasswd";
/// Where the exporter's public key is mounted.
const SIGNATURE_KEY_MOUNT: &str = "/etc/stellaops/signature";

/// Names of the objects made in the platform namespace: the server (claim, Deployment,
/// Service) and the sync CronJob, both after the domain's namespace and name.
pub fn names(domain: &MirrorDomain) -> (String, String) {
    let ns = domain.namespace().unwrap_or_default();
    let name = domain.name_any();
    (
        crate::tenancy::platform_name(&ns, &name, "-mirror", 63),
        crate::tenancy::platform_name(&ns, &name, "-mirror-sync", 52),
    )
}

/// Labels of the domain's objects with `component`, owner labels included (so the server's
/// selector never matches another namespace's domain of the same name).
fn component_labels(domain: &MirrorDomain, component: &str) -> BTreeMap<String, String> {
    let mut labels = workload::labels(&domain.name_any(), "MirrorDomain", component);
    labels.extend(crate::tenancy::owner_labels(domain));
    labels
}

fn meta(domain: &MirrorDomain, config: &Config, name: String, component: &str) -> ObjectMeta {
    crate::tenancy::platform_meta(
        domain,
        &config.operator_namespace,
        name,
        component_labels(domain, component),
    )
}

/// The domain's Secrets (S3 credentials, htpasswd, exporter key) as copied into the
/// platform namespace, where the sync and the server run.
pub fn secret_copies(domain: &MirrorDomain) -> Vec<crate::tenancy::SecretCopy> {
    let (server, _) = names(domain);
    let spec = &domain.spec;
    let mut copies = Vec::new();
    if let Some(secret) = &spec.source.secret_ref {
        copies.push(crate::tenancy::SecretCopy {
            source: secret.name.clone(),
            copy: format!("{server}-s3"),
        });
    }
    if let Some(secret) = &spec.auth.htpasswd_secret_ref {
        copies.push(crate::tenancy::SecretCopy {
            source: secret.name.clone(),
            copy: format!("{server}-htpasswd"),
        });
    }
    if let Some(signature) = &spec.signature {
        copies.push(crate::tenancy::SecretCopy {
            source: signature.public_key_secret_ref.name.clone(),
            copy: format!("{server}-signature-key"),
        });
    }
    copies
}

fn copy_of(domain: &MirrorDomain, purpose: &str) -> String {
    format!("{}-{purpose}", names(domain).0)
}

/// The volume claim.
pub fn pvc(domain: &MirrorDomain, config: &Config) -> PersistentVolumeClaim {
    let (name, _) = names(domain);
    // More than one server Pod reads the volume at once: it must be shareable.
    let access = if domain.spec.replicas > 1 {
        "ReadWriteMany"
    } else {
        "ReadWriteOnce"
    };
    PersistentVolumeClaim {
        metadata: meta(domain, config, name, "mirror-storage"),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![access.into()]),
            storage_class_name: domain.spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    domain.spec.storage.size.clone(),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn claim_volume(domain: &MirrorDomain, read_only: bool) -> Volume {
    Volume {
        name: "exports".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: names(domain).0,
            read_only: Some(read_only),
        }),
        ..Default::default()
    }
}

/// The options naming the served export and the exporter key, and the volume and mount
/// the key needs; shared by the sync Job and the server.
fn export_options(domain: &MirrorDomain) -> (Vec<String>, Option<(Volume, VolumeMount)>) {
    let spec = &domain.spec;
    let mut args = Vec::new();
    if let Some(id) = &spec.active_export_id {
        args.extend(["--active-export-id".into(), id.clone()]);
    }
    let Some(signature) = &spec.signature else {
        return (args, None);
    };
    let secret = &signature.public_key_secret_ref;
    let volume = Volume {
        name: "signature-key".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(copy_of(domain, "signature-key")),
            items: Some(vec![KeyToPath {
                key: secret.key.clone().unwrap_or_else(|| "cosign.pub".into()),
                path: "key.pub".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mount = VolumeMount {
        name: "signature-key".into(),
        mount_path: SIGNATURE_KEY_MOUNT.into(),
        read_only: Some(true),
        ..Default::default()
    };
    args.extend([
        "--signature-key".into(),
        format!("{SIGNATURE_KEY_MOUNT}/key.pub"),
    ]);
    (args, Some((volume, mount)))
}

/// The sync CronJob.
pub fn cron_job(domain: &MirrorDomain, config: &Config) -> CronJob {
    let (_, name) = names(domain);
    let source = &domain.spec.source;
    let mut args = vec![
        "mirror".into(),
        "sync".into(),
        "--bucket".into(),
        source.bucket.clone(),
        "--prefix".into(),
        source.prefix.clone(),
        "--directory".into(),
        EXPORT_ROOT.into(),
        "--delete".into(),
    ];
    let (export_args, key_volume) = export_options(domain);
    args.extend(export_args);
    let mut container = workload::worker_container(
        config,
        "sync",
        args,
        workload::resources("100m", "128Mi", "512Mi"),
    );
    let mut copied = source.clone();
    if let Some(secret) = &mut copied.secret_ref {
        secret.name = copy_of(domain, "s3");
    }
    workload::s3_env(&mut container, &copied);
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: "exports".into(),
            mount_path: EXPORT_ROOT.into(),
            ..Default::default()
        });
    let mut volumes = vec![workload::tmp_volume(), claim_volume(domain, false)];
    if let Some((volume, mount)) = key_volume {
        volumes.push(volume);
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(mount);
    }
    workload::sync_cron_job(
        meta(domain, config, name, "mirror-sync"),
        workload::SyncSchedule {
            schedule: &domain.spec.sync_schedule,
            suspend: false,
            starting_deadline_seconds: 120,
            active_deadline_seconds: 1800,
            ttl_seconds_after_finished: 3600,
        },
        container,
        volumes,
    )
}

/// The server Deployment.
pub fn deployment(domain: &MirrorDomain, config: &Config) -> Deployment {
    let (name, _) = names(domain);
    let spec = &domain.spec;
    let mut args: Vec<String> = vec![
        "mirror".into(),
        "serve".into(),
        "--root".into(),
        EXPORT_ROOT.into(),
        "--domain-id".into(),
        spec.domain_id.clone(),
        "--require-authentication".into(),
        spec.auth.require_authentication.to_string(),
        "--max-index-requests-per-hour".into(),
        spec.rate_limits.max_index_requests_per_hour.to_string(),
        "--max-download-requests-per-hour".into(),
        spec.rate_limits.max_download_requests_per_hour.to_string(),
        "--listen".into(),
        "0.0.0.0:8080".into(),
    ];
    let (export_args, key_volume) = export_options(domain);
    args.extend(export_args);
    let mut volumes = vec![workload::tmp_volume(), claim_volume(domain, true)];
    let mut container = workload::worker_container(
        config,
        "mirror",
        Vec::new(),
        workload::resources("100m", "64Mi", "256Mi"),
    );
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    mounts.push(VolumeMount {
        name: "exports".into(),
        mount_path: EXPORT_ROOT.into(),
        read_only: Some(true),
        ..Default::default()
    });
    if let Some(secret) = &spec.auth.htpasswd_secret_ref {
        let key = secret.key.clone().unwrap_or_else(|| "htpasswd".into());
        volumes.push(Volume {
            name: "htpasswd".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(copy_of(domain, "htpasswd")),
                items: Some(vec![KeyToPath {
                    key: key.clone(),
                    path: "htpasswd".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "htpasswd".into(),
            mount_path: HTPASSWD_MOUNT.into(),
            read_only: Some(true),
            ..Default::default()
        });
        args.extend(["--htpasswd".into(), format!("{HTPASSWD_MOUNT}/htpasswd")]);
    }
    if let Some((volume, mount)) = key_volume {
        volumes.push(volume);
        mounts.push(mount);
    }
    container.args = Some(args);
    container.ports = Some(vec![ContainerPort {
        name: Some("http".into()),
        container_port: 8080,
        ..Default::default()
    }]);
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        ..Default::default()
    };
    container.liveness_probe = Some(probe("/healthz"));
    container.readiness_probe = Some(probe("/readyz"));
    let labels = component_labels(domain, "mirror-server");
    Deployment {
        metadata: meta(domain, config, name, "mirror-server"),
        spec: DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    security_context: Some(workload::pod_security()),
                    automount_service_account_token: Some(false),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The Service in front of the servers.
pub fn service(domain: &MirrorDomain, config: &Config) -> Service {
    let (name, _) = names(domain);
    Service {
        metadata: meta(domain, config, name, "mirror-server"),
        spec: Some(ServiceSpec {
            selector: Some(component_labels(domain, "mirror-server")),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Everything a MirrorDomain becomes, as applied. Pure.
pub fn desired(domain: &MirrorDomain, config: &Config) -> Vec<Value> {
    vec![
        workload::typed(&pvc(domain, config)),
        workload::typed(&cron_job(domain, config)),
        workload::typed(&deployment(domain, config)),
        workload::typed(&service(domain, config)),
    ]
}

/// The status a MirrorDomain should have. Pure.
pub fn compute_status(
    domain: &MirrorDomain,
    deployment: Option<&Deployment>,
    latest: Option<&SyncResult>,
    now: Time,
) -> MirrorDomainStatus {
    let previous = domain.status.clone().unwrap_or_default();
    let generation = domain.metadata.generation;
    let (service_name, _) = names(domain);
    let mut status = MirrorDomainStatus {
        observed_generation: generation,
        ready_replicas: deployment
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        // The Service is in the platform namespace (where the applied Deployment is).
        url: deployment
            .and_then(|d| d.metadata.namespace.clone())
            .or_else(|| domain.namespace())
            .map(|ns| format!("http://{service_name}.{ns}.svc/concelier/exports/index.json")),
        // What the latest sync saw served; before any sync, what the spec asks for.
        active_export_id: latest
            .and_then(|r| r.summary.as_ref())
            .and_then(|s| s.get("activeExportId"))
            .map(|id| id.as_str().map(str::to_string))
            .unwrap_or_else(|| {
                previous
                    .active_export_id
                    .clone()
                    .or(domain.spec.active_export_id.clone())
            }),
        ..previous.clone()
    };
    let mut conditions: Vec<Condition> = std::mem::take(&mut status.conditions);
    set_condition(
        &mut conditions,
        acceptance::accepted(generation, now.clone()),
    );
    let mut sync_error = None;
    if let Some(result) = latest {
        if result.succeeded {
            status.last_sync_at = result.finished_at.clone().or(status.last_sync_at.clone());
            if let Some(summary) = &result.summary {
                status.last_sync = Some(SyncCounts {
                    copied: summary["copied"].as_i64().unwrap_or(0),
                    deleted: summary["deleted"].as_i64().unwrap_or(0),
                    bytes: summary["bytes"].as_i64().unwrap_or(0),
                });
            }
        } else {
            sync_error = result
                .error
                .clone()
                .or_else(|| Some(format!("sync Job {} failed", result.job)));
        }
    }
    match &sync_error {
        Some(error) => set_condition(
            &mut conditions,
            condition(
                "Synced",
                false,
                "SyncFailed",
                format!("{error}; the previous export keeps serving"),
                generation,
                now.clone(),
            ),
        ),
        None if status.last_sync_at.is_some() => set_condition(
            &mut conditions,
            condition(
                "Synced",
                true,
                "Synced",
                "the latest sync succeeded",
                generation,
                now.clone(),
            ),
        ),
        None => set_condition(
            &mut conditions,
            condition(
                "Synced",
                false,
                "AwaitingFirstSync",
                format!(
                    "the first sync runs on schedule {:?}",
                    domain.spec.sync_schedule
                ),
                generation,
                now.clone(),
            ),
        ),
    }
    if domain.spec.signature.is_some() {
        let summary = latest
            .filter(|r| r.succeeded)
            .and_then(|r| r.summary.as_ref());
        if let Some(summary) = summary {
            let verdict = match summary.get("signatureError").and_then(Value::as_str) {
                Some(error) => (
                    false,
                    "SignatureInvalid",
                    format!("{error}; the server withholds that bundle.json"),
                ),
                None => (
                    true,
                    "Verified",
                    format!(
                        "bundle.json signatures verified for {}",
                        summary["signaturesVerified"]
                    ),
                ),
            };
            set_condition(
                &mut conditions,
                condition(
                    "SignatureVerified",
                    verdict.0,
                    verdict.1,
                    verdict.2,
                    generation,
                    now.clone(),
                ),
            );
        }
    } else {
        conditions.retain(|c| c.type_ != "SignatureVerified");
    }
    let wanted = domain.spec.replicas;
    let serving = wanted == 0 || status.ready_replicas >= wanted;
    set_condition(
        &mut conditions,
        condition(
            "Serving",
            serving,
            if serving {
                "ReplicasReady"
            } else {
                "ReplicasNotReady"
            },
            format!("{}/{} mirror servers ready", status.ready_replicas, wanted),
            generation,
            now.clone(),
        ),
    );
    let bad_signature = conditions
        .iter()
        .find(|c| c.type_ == "SignatureVerified" && c.status == "False")
        .map(|c| c.message.clone());
    let ready = serving && status.last_sync_at.is_some() && bad_signature.is_none();
    let (reason, message) = match (serving, status.last_sync_at.is_some(), &sync_error) {
        (true, true, _) if bad_signature.is_some() => (
            "SignatureInvalid",
            bad_signature.clone().unwrap_or_default(),
        ),
        (true, true, None) => (
            "Serving",
            format!("serving {}", status.url.clone().unwrap_or_default()),
        ),
        (true, true, Some(e)) => (
            "Serving",
            format!("serving the previous export; the latest sync failed: {e}"),
        ),
        (_, false, _) => (
            "AwaitingFirstSync",
            "no export has been synced yet".to_string(),
        ),
        (false, true, _) => (
            "ReplicasNotReady",
            format!("{}/{} mirror servers ready", status.ready_replicas, wanted),
        ),
    };
    set_condition(
        &mut conditions,
        condition(CONDITION_READY, ready, reason, message, generation, now),
    );
    status.conditions = conditions;
    status
}

/// Reconcile a MirrorDomain: validate, copy its Secrets and apply the four objects in the
/// platform namespace, report status; the finalizer removes them with the domain.
pub async fn reconcile(domain: Arc<MirrorDomain>, ctx: Arc<Context>) -> Result<Action> {
    crate::tenancy::reconcile_with_cleanup(domain, ctx, apply, |domain, ctx| async move {
        crate::tenancy::cleanup_by_uid(&*domain, &ctx).await
    })
    .await
}

async fn apply(domain: Arc<MirrorDomain>, ctx: Arc<Context>) -> Result<Action> {
    let mut spec_only = serde_json::to_value(&*domain)?;
    spec_only.as_object_mut().map(|m| m.remove("status"));
    if stellaops_crds::validation::admit(&spec_only).is_err() {
        return acceptance::reconcile(domain, ctx, "").await;
    }
    let ns = domain
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let (server_name, cron_name) = names(&domain);
    let client = ctx.client.clone();
    let platform_ns = ctx.config.operator_namespace.clone();
    let owned = crate::tenancy::owned_selector(&domain.uid().unwrap_or_default());
    // The copies first: the sync and server Pods mount them. Kept in step at every reconcile.
    crate::tenancy::copy_secrets(
        &ctx,
        &ns,
        &secret_copies(&domain),
        &meta(&domain, &ctx.config, String::new(), "mirror-secret"),
        None,
        Some(&format!(
            "{owned},app.kubernetes.io/component=mirror-secret"
        )),
    )
    .await?;
    workload::apply(
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), &platform_ns),
        &server_name,
        &workload::typed(&pvc(&domain, &ctx.config)),
    )
    .await?;
    workload::apply(
        Api::<CronJob>::namespaced(client.clone(), &platform_ns),
        &cron_name,
        &workload::typed(&cron_job(&domain, &ctx.config)),
    )
    .await?;
    let deployment = workload::apply(
        Api::<Deployment>::namespaced(client.clone(), &platform_ns),
        &server_name,
        &workload::typed(&deployment(&domain, &ctx.config)),
    )
    .await?;
    workload::apply(
        Api::<Service>::namespaced(client.clone(), &platform_ns),
        &server_name,
        &workload::typed(&service(&domain, &ctx.config)),
    )
    .await?;
    let selector = format!("{owned},app.kubernetes.io/component=mirror-sync");
    let latest = workload::latest_job_result(&ctx, &platform_ns, &selector).await?;
    let status = compute_status(
        &domain,
        Some(&deployment),
        latest.as_ref(),
        Time(jiff::Timestamp::now()),
    );
    // A sync newer than the one the status reports: tell NotifyRules (`mirror.synced`).
    // Written before the status, so a failed status write retries the event, which its
    // key (one per sync Job) keeps from being appended twice.
    let previous_sync = domain.status.as_ref().and_then(|s| s.last_sync_at.clone());
    if let Some(result) = latest.as_ref().filter(|r| r.succeeded)
        && status.last_sync_at.is_some()
        && status.last_sync_at != previous_sync
    {
        match &ctx.outbox {
            Some(pool) => {
                stellaops_store::outbox::publish(
                    pool,
                    &stellaops_store::outbox::NewEvent {
                        kind: "mirror.synced".into(),
                        namespace: Some(ns.clone()),
                        subject: format!("mirrordomain/{}", domain.name_any()),
                        severity: None,
                        payload: json!({
                            "domainId": domain.spec.domain_id,
                            "name": domain.name_any(),
                            "job": result.job,
                            "finishedAt": status.last_sync_at,
                            "activeExportId": status.active_export_id,
                            "copied": status.last_sync.as_ref().map(|s| s.copied),
                            "deleted": status.last_sync.as_ref().map(|s| s.deleted),
                            "bytes": status.last_sync.as_ref().map(|s| s.bytes),
                        }),
                        idempotency_key: format!("mirror.synced/{ns}/{}", result.job),
                    },
                )
                .await?;
            }
            None => tracing::debug!(
                domain = %domain.name_any(),
                "no database configured: mirror.synced not written to the outbox"
            ),
        }
    }
    if domain.status.as_ref() != Some(&status) {
        let api: Api<MirrorDomain> = Api::namespaced(client, &ns);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        api.patch_status(
            &domain.name_any(),
            &params,
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    Ok(Action::requeue(Duration::from_secs(60)))
}
