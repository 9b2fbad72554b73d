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

/// Names of the owned objects.
pub fn names(domain: &MirrorDomain) -> (String, String) {
    let name = domain.name_any();
    (
        workload::child_name(&name, "-mirror", 63),
        workload::child_name(&name, "-mirror-sync", 52),
    )
}

fn meta(domain: &MirrorDomain, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: domain.namespace(),
        labels: Some(workload::labels(
            &domain.name_any(),
            "MirrorDomain",
            component,
        )),
        owner_references: Some(vec![workload::owner_reference(domain)]),
        ..Default::default()
    }
}

/// The volume claim.
pub fn pvc(domain: &MirrorDomain) -> PersistentVolumeClaim {
    let (name, _) = names(domain);
    // More than one server Pod reads the volume at once: it must be shareable.
    let access = if domain.spec.replicas > 1 {
        "ReadWriteMany"
    } else {
        "ReadWriteOnce"
    };
    PersistentVolumeClaim {
        metadata: meta(domain, name, "mirror-storage"),
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
            secret_name: Some(secret.name.clone()),
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
    workload::s3_env(&mut container, source);
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
        meta(domain, name, "mirror-sync"),
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
                secret_name: Some(secret.name.clone()),
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
    let labels = workload::labels(&domain.name_any(), "MirrorDomain", "mirror-server");
    Deployment {
        metadata: meta(domain, name, "mirror-server"),
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
pub fn service(domain: &MirrorDomain) -> Service {
    let (name, _) = names(domain);
    Service {
        metadata: meta(domain, name, "mirror-server"),
        spec: Some(ServiceSpec {
            selector: Some(workload::labels(
                &domain.name_any(),
                "MirrorDomain",
                "mirror-server",
            )),
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
        workload::typed(&pvc(domain)),
        workload::typed(&cron_job(domain, config)),
        workload::typed(&deployment(domain, config)),
        workload::typed(&service(domain)),
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
        url: domain
            .namespace()
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

/// Reconcile a MirrorDomain: validate, apply the four objects, report status.
pub async fn reconcile(domain: Arc<MirrorDomain>, ctx: Arc<Context>) -> Result<Action> {
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
    workload::apply(
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns),
        &server_name,
        &workload::typed(&pvc(&domain)),
    )
    .await?;
    workload::apply(
        Api::<CronJob>::namespaced(client.clone(), &ns),
        &cron_name,
        &workload::typed(&cron_job(&domain, &ctx.config)),
    )
    .await?;
    let deployment = workload::apply(
        Api::<Deployment>::namespaced(client.clone(), &ns),
        &server_name,
        &workload::typed(&deployment(&domain, &ctx.config)),
    )
    .await?;
    workload::apply(
        Api::<Service>::namespaced(client.clone(), &ns),
        &server_name,
        &workload::typed(&service(&domain)),
    )
    .await?;
    let selector = format!(
        "stella-ops.org/mirrordomain={},app.kubernetes.io/component=mirror-sync",
        domain.name_any()
    );
    let latest = workload::latest_job_result(&client, &ns, &selector).await?;
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
