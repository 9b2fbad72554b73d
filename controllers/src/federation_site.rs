//! FederationSite controller: one owned CronJob running `stellaops-worker federation sync`,
//! and a status read from the CronJob, its Jobs and the sync's result.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    ContainerPort, HTTPGetAction, KeyToPath, PersistentVolumeClaimVolumeSource, PodSpec,
    PodTemplateSpec, Probe, SecretVolumeSource, Service, ServicePort, ServiceSpec, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
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
const API_SECRETS_MOUNT: &str = "/etc/stellaops/federation-api";
/// Port `federation serve` listens on in its Pod.
pub const API_PORT: i32 = 8080;
/// Component label of the `federation serve` Deployment, Service and Secret copies.
const API_COMPONENT: &str = "federation-api";

/// Name of the Deployment and Service serving a FederationSite's HTTP API (`spec.serve`).
pub fn api_name(site: &FederationSite) -> String {
    crate::tenancy::platform_name(
        &site.namespace().unwrap_or_default(),
        &site.name_any(),
        "-federation-api",
        63,
    )
}

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
    if let Some(serve) = serving(site) {
        if let Some(tokens) = &serve.tokens_secret {
            add(&tokens.name, "api-tokens");
        }
        if let Some(tls) = &serve.tls_secret {
            add(&tls.name, "api-tls");
        }
        if let Some(ca) = &serve.client_ca_secret {
            add(&ca.name, "api-client-ca");
        }
    }
    copies
}

/// The site's `spec.serve`, when it applies (an import site).
fn serving(site: &FederationSite) -> Option<&stellaops_crds::federation_site::ServeSettings> {
    site.spec
        .serve
        .as_ref()
        .filter(|_| site.spec.direction == Direction::Import)
}

/// A Secret copy mounted read-only at `API_SECRETS_MOUNT/<purpose>` with `key` as `file`.
fn api_secret(
    site: &FederationSite,
    purpose: &str,
    items: Vec<(String, String)>,
) -> (Volume, VolumeMount) {
    (
        Volume {
            name: purpose.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(copy_of(site, purpose)),
                items: Some(
                    items
                        .into_iter()
                        .map(|(key, path)| KeyToPath {
                            key,
                            path,
                            mode: Some(0o400),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeMount {
            name: purpose.into(),
            mount_path: format!("{API_SECRETS_MOUNT}/{purpose}"),
            read_only: Some(true),
            ..Default::default()
        },
    )
}

/// The `federation serve` Deployment of an import site with `spec.serve`, in the
/// platform namespace. Pure.
pub fn api_deployment(site: &FederationSite, config: &Config) -> Option<Deployment> {
    let serve = serving(site)?;
    let policy = &site.spec.policy;
    let tls = serve.tls_secret.is_some();
    let mut args: Vec<String> = vec![
        "federation".into(),
        "serve".into(),
        "--listen".into(),
        format!("0.0.0.0:{API_PORT}"),
        "--max-bundle-size".into(),
        policy.max_bundle_size_bytes.to_string(),
    ];
    let mut volumes = vec![workload::tmp_volume()];
    let mut mounts = Vec::new();
    if policy.trusted_keys.is_some() {
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
        args.extend(["--trusted-key".into(), TRUSTED_KEYS_MOUNT.into()]);
    }
    let mut secret = |purpose: &str, items: Vec<(String, String)>, flags: &[(&str, &str)]| {
        let (volume, mount) = api_secret(site, purpose, items);
        volumes.push(volume);
        mounts.push(mount);
        for (flag, file) in flags {
            args.extend([
                flag.to_string(),
                format!("{API_SECRETS_MOUNT}/{purpose}/{file}"),
            ]);
        }
    };
    if let Some(tokens) = &serve.tokens_secret {
        let key = tokens.key.clone().unwrap_or_else(|| "tokens".into());
        secret(
            "api-tokens",
            vec![(key, "tokens".into())],
            &[("--tokens-file", "tokens")],
        );
    }
    if tls {
        secret(
            "api-tls",
            vec![
                ("tls.crt".into(), "tls.crt".into()),
                ("tls.key".into(), "tls.key".into()),
            ],
            &[("--tls-cert", "tls.crt"), ("--tls-key", "tls.key")],
        );
    }
    if let Some(ca) = &serve.client_ca_secret {
        let key = ca.key.clone().unwrap_or_else(|| "ca.crt".into());
        secret(
            "api-client-ca",
            vec![(key, "ca.crt".into())],
            &[("--client-ca", "ca.crt")],
        );
    }
    let mut container = workload::worker_container(
        config,
        "federation-api",
        args,
        workload::resources("100m", "256Mi", "1Gi"),
    );
    container
        .env
        .get_or_insert_with(Vec::new)
        .push(workload::database_url_env(config));
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .extend(mounts);
    let port_name = if tls { "https" } else { "http" };
    container.ports = Some(vec![ContainerPort {
        name: Some(port_name.into()),
        container_port: API_PORT,
        ..Default::default()
    }]);
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port_name.into()),
            scheme: Some(if tls { "HTTPS" } else { "HTTP" }.into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        ..Default::default()
    };
    container.liveness_probe = Some(probe("/healthz"));
    container.readiness_probe = Some(probe("/readyz"));
    let labels = workload::labels(&site.name_any(), "FederationSite", API_COMPONENT);
    let selector = crate::tenancy::owner_labels(site)
        .into_iter()
        .chain(labels.clone())
        .collect::<std::collections::BTreeMap<_, _>>();
    Some(Deployment {
        metadata: crate::tenancy::platform_meta(
            site,
            &config.operator_namespace,
            api_name(site),
            labels,
        ),
        spec: DeploymentSpec {
            replicas: Some(serve.replicas),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(selector),
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
    })
}

/// The Service in front of [`api_deployment`]: port 443 with TLS, 80 without.
pub fn api_service(site: &FederationSite, config: &Config) -> Option<Service> {
    let serve = serving(site)?;
    let (port_name, port) = if serve.tls_secret.is_some() {
        ("https", 443)
    } else {
        ("http", 80)
    };
    let labels = workload::labels(&site.name_any(), "FederationSite", API_COMPONENT);
    let selector = crate::tenancy::owner_labels(site)
        .into_iter()
        .chain(labels.clone())
        .collect();
    Some(Service {
        metadata: crate::tenancy::platform_meta(
            site,
            &config.operator_namespace,
            api_name(site),
            labels,
        ),
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some(port_name.into()),
                port,
                target_port: Some(IntOrString::String(port_name.into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The `Serving` condition of a site with `spec.serve`, from its Deployment. Pure.
pub fn serving_condition(
    site: &FederationSite,
    deployment: Option<&Deployment>,
    now: Time,
) -> Option<Condition> {
    let serve = serving(site)?;
    let available = deployment
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    let scheme = if serve.tls_secret.is_some() {
        "https"
    } else {
        "http"
    };
    let generation = site.metadata.generation;
    Some(if available > 0 {
        condition(
            "Serving",
            true,
            "Available",
            format!(
                "{available} of {} federation serve Pod(s) available at {scheme}://{}.{}.svc/api/v1/federation/import",
                serve.replicas,
                api_name(site),
                deployment
                    .and_then(|d| d.metadata.namespace.clone())
                    .unwrap_or_default()
            ),
            generation,
            now,
        )
    } else {
        condition(
            "Serving",
            false,
            "Unavailable",
            format!(
                "no federation serve Pod of Deployment {} is available yet",
                api_name(site)
            ),
            generation,
            now,
        )
    })
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
    let mut out = vec![value];
    if let Some(deployment) = api_deployment(site, config) {
        out.push(workload::typed(&deployment));
    }
    if let Some(service) = api_service(site, config) {
        out.push(workload::typed(&service));
    }
    out
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
    // The HTTP endpoint (`spec.serve`): applied while asked for, deleted once not.
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &platform_ns);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &platform_ns);
    let api = api_name(&site);
    let serving_deployment = match (
        api_deployment(&site, &ctx.config),
        api_service(&site, &ctx.config),
    ) {
        (Some(deployment), Some(service)) => {
            services
                .patch(
                    &api,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&workload::typed(&service)),
                )
                .await?;
            Some(
                deployments
                    .patch(
                        &api,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&workload::typed(&deployment)),
                    )
                    .await?,
            )
        }
        _ => {
            let was_serving = site
                .status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Serving"));
            if was_serving {
                for result in [
                    deployments
                        .delete(&api, &Default::default())
                        .await
                        .map(|_| ()),
                    services.delete(&api, &Default::default()).await.map(|_| ()),
                ] {
                    match result {
                        Ok(()) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            None
        }
    };
    let latest = workload::latest_job_result(&ctx, &platform_ns, &owned).await?;
    let now = Time(jiff::Timestamp::now());
    let mut status = compute_status(&site, Some(&applied), latest.as_ref(), now.clone());
    match serving_condition(&site, serving_deployment.as_ref(), now) {
        Some(serving) => set_condition(&mut status.conditions, serving),
        None => status.conditions.retain(|c| c.type_ != "Serving"),
    }
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
