//! Platform controller: verify the signed `release.yaml`, then roll the release out in the
//! seed's order with health gates, expand/contract migration Jobs and automatic rollback.
//!
//! [`release`] checks and parses manifests, [`preconditions`] holds the upgrade checklist,
//! [`rollout`] is the pure state machine; this module reads the cluster, applies what the
//! state machine decides, and records it.

pub mod preconditions;
pub mod release;
pub mod rollout;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvFromSource, SecretEnvSource};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as RequeueAction;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use stellaops_crds::Platform;
use stellaops_crds::platform::ReleaseManifestSource;

use crate::context::{Config, Context, FIELD_MANAGER};
use crate::error::{Error, Result};
use crate::workload;
use release::{Release, ReleaseError};
use rollout::{Action, DeploymentView, Input, JobView, Observed, STEP_CONTRACT, STEP_EXPAND};

/// Secrets and ConfigMaps given to [`desired_with`] alongside the Platform (in `preview`,
/// the other documents of the input), by (namespace, name) → key → text. `Debug` shows
/// the Secrets' keys, never their values.
#[derive(Clone, Default)]
pub struct Inputs {
    /// ConfigMaps' `data`.
    pub config_maps: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// Secrets' `stringData`/`data`, decoded.
    pub secrets: BTreeMap<(String, String), BTreeMap<String, String>>,
}

impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secrets: BTreeMap<&(String, String), Vec<&String>> = self
            .secrets
            .iter()
            .map(|(name, data)| (name, data.keys().collect()))
            .collect();
        f.debug_struct("Inputs")
            .field("config_maps", &self.config_maps)
            .field("secrets (keys only)", &secrets)
            .finish()
    }
}

/// Where the release manifest and its signature come from, fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestFiles {
    /// `release.yaml` bytes.
    pub manifest: Vec<u8>,
    /// Its base64 signature, if there is one.
    pub signature: Option<String>,
}

/// Verify and parse the manifest for `platform` from fetched files and key.
pub fn verify(
    platform: &Platform,
    files: Result<ManifestFiles, ReleaseError>,
    public_key: Result<String, ReleaseError>,
) -> Result<Release, ReleaseError> {
    let files = files?;
    let key = public_key?;
    let signature = files.signature.ok_or_else(|| {
        ReleaseError::Unsigned(match &platform.spec.release_manifest.config_map_ref {
            Some(cm) => format!("ConfigMap {} has no key {}", cm.name, cm.signature_key),
            None => "no signature at the signature URL".to_string(),
        })
    })?;
    let channel = serde_json::to_value(platform.spec.channel)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    release::verify_and_parse(
        &files.manifest,
        &signature,
        &key,
        &platform.spec.version,
        &channel,
    )
}

fn manifest_from_inputs(
    platform: &Platform,
    inputs: &Inputs,
) -> (
    Result<ManifestFiles, ReleaseError>,
    Result<String, ReleaseError>,
) {
    let ns = platform.namespace().unwrap_or_default();
    let files = match &platform.spec.release_manifest.config_map_ref {
        Some(cm) => match inputs.config_maps.get(&(ns.clone(), cm.name.clone())) {
            Some(data) => match data.get(&cm.manifest_key) {
                Some(text) => Ok(ManifestFiles {
                    manifest: text.as_bytes().to_vec(),
                    signature: data.get(&cm.signature_key).cloned(),
                }),
                None => Err(ReleaseError::Missing(format!(
                    "ConfigMap {} has no key {}",
                    cm.name, cm.manifest_key
                ))),
            },
            None => Err(ReleaseError::Missing(format!(
                "ConfigMap {ns}/{} not found",
                cm.name
            ))),
        },
        None => Err(ReleaseError::Missing(
            "the manifest URL is fetched only in the cluster".into(),
        )),
    };
    let key_ref = &platform.spec.verification.public_key_secret_ref;
    let key_name = key_ref.key.clone().unwrap_or_else(|| "cosign.pub".into());
    let key = inputs
        .secrets
        .get(&(ns.clone(), key_ref.name.clone()))
        .ok_or_else(|| ReleaseError::Missing(format!("Secret {ns}/{} not found", key_ref.name)))
        .and_then(|data| {
            data.get(&key_name).cloned().ok_or_else(|| {
                ReleaseError::Missing(format!("Secret {} has no key {key_name}", key_ref.name))
            })
        });
    (files, key)
}

/// The migration Job of one phase.
pub fn migration_job(
    platform: &Platform,
    name: &str,
    phase: &str,
    image: &str,
    args: &[String],
) -> Job {
    let owner = platform.name_any();
    let mut labels = workload::labels(&owner, "Platform", &format!("migrate-{phase}"));
    labels.insert(
        "app.kubernetes.io/name".into(),
        "stellaops-migration".into(),
    );
    let container = Container {
        name: "migrate".into(),
        image: Some(image.to_string()),
        args: Some(args.to_vec()),
        // The release's migration image reads its database settings from this Secret.
        env_from: Some(vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: format!("{owner}-migrations"),
                optional: Some(true),
            }),
            ..Default::default()
        }]),
        security_context: Some(workload::restricted_container()),
        resources: Some(workload::resources("100m", "128Mi", "512Mi")),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    workload::run_once_job(
        platform,
        name.to_string(),
        labels,
        container,
        None,
        workload::JobLimits {
            backoff: 2,
            deadline_seconds: i64::from(platform.spec.upgrade.health_timeout_seconds),
            ttl_seconds: 7 * 86400,
        },
    )
}

/// The rollout plan of `platform`'s release, for `preview`: ordered steps with the image
/// each one sets, and whether the manifest verified.
pub fn plan_document(platform: &Platform, inputs: &Inputs) -> Value {
    let (files, key) = manifest_from_inputs(platform, inputs);
    let verified = verify(platform, files, key);
    let mut steps = Vec::new();
    let release_info = match &verified {
        Ok(r) => {
            let attempt = platform
                .status
                .as_ref()
                .map(|s| s.attempts + 1)
                .unwrap_or(1);
            let job = |phase| {
                rollout::migration_job_name(&platform.name_any(), phase, &r.version, attempt)
            };
            if let Some(m) = r.migrations.as_ref().filter(|m| !m.expand.is_empty()) {
                steps.push(json!({"step": STEP_EXPAND, "job": job("expand"), "image": m.image}));
            }
            for c in &r.components {
                steps.push(json!({"step": c.name, "deployment": c.name, "image": c.image,
                                  "gate": format!("rolled out and available within {}s", platform.spec.upgrade.health_timeout_seconds)}));
            }
            if let Some(m) = r.migrations.as_ref().filter(|m| !m.contract.is_empty()) {
                steps
                    .push(json!({"step": STEP_CONTRACT, "job": job("contract"), "image": m.image}));
            }
            json!({"version": r.version, "channel": r.channel, "digest": r.digest,
                   "verified": "signature checked with the release public key"})
        }
        Err(e) => {
            steps.push(json!({"order": "migrate-expand → authority → signer → attestor → scanner-webservice → scanner-worker → concelier → excititor → (others) → web-ui → migrate-contract"}));
            json!({"version": platform.spec.version, "verified": false, "reason": e.reason(), "message": e.to_string()})
        }
    };
    json!({
        "apiVersion": "preview.stella-ops.org/v1",
        "kind": "RolloutPlan",
        "metadata": {"name": platform.name_any(), "namespace": platform.namespace()},
        "release": release_info,
        "autoRollback": platform.spec.upgrade.auto_rollback,
        "steps": steps,
    })
}

/// The objects `preview` shows for a Platform: its rollout plan. The operator applies no
/// objects of its own until a rollout runs (migration Jobs, image updates).
pub fn desired(platform: &Platform, _config: &Config) -> Vec<Value> {
    desired_with(platform, &Inputs::default())
}

/// [`desired`] with the ConfigMaps and Secrets that came with the Platform.
pub fn desired_with(platform: &Platform, inputs: &Inputs) -> Vec<Value> {
    vec![plan_document(platform, inputs)]
}

/// A component's Deployment as the state machine sees it.
pub fn deployment_view(deployment: &Deployment) -> Option<DeploymentView> {
    let name = deployment.metadata.name.as_deref()?;
    let spec = &deployment.spec;
    let containers = &spec.template.spec.as_ref()?.containers;
    let container = containers
        .iter()
        .find(|c| c.name == name)
        .or(containers.first())?;
    let wanted = spec.replicas.unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    let seen =
        status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let rolled_out = seen && updated >= wanted && status.replicas.unwrap_or(0) <= updated;
    let available = seen && status.available_replicas.unwrap_or(0) >= wanted;
    let stalled = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find_map(|c| {
            (c.type_.as_deref() == Some("Progressing")
                && c.status.as_deref() == Some("False")
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
            .then(|| {
                c.message
                    .unwrap_or_else(|| "progress deadline exceeded".into())
            })
        });
    Some(DeploymentView {
        container: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        rolled_out,
        available,
        stalled,
    })
}

/// A migration Job as the state machine sees it.
pub fn job_view(job: &Job) -> JobView {
    match workload::job_finished(job) {
        Some(true) => JobView::Succeeded,
        Some(false) => {
            JobView::Failed(workload::job_failure(job).unwrap_or_else(|| "the Job failed".into()))
        }
        None => JobView::Running,
    }
}

async fn fetch_manifest(
    client: &kube::Client,
    ns: &str,
    source: &ReleaseManifestSource,
) -> Result<Result<ManifestFiles, ReleaseError>> {
    if let Some(cm) = &source.config_map_ref {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let Some(found) = api.get_opt(&cm.name).await? else {
            return Ok(Err(ReleaseError::Missing(format!(
                "ConfigMap {ns}/{} not found",
                cm.name
            ))));
        };
        let text = |key: &str| -> Option<Vec<u8>> {
            found
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|t| t.as_bytes().to_vec())
                .or_else(|| {
                    found
                        .binary_data
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .map(|b| b.0.clone())
                })
        };
        let Some(manifest) = text(&cm.manifest_key) else {
            return Ok(Err(ReleaseError::Missing(format!(
                "ConfigMap {} has no key {}",
                cm.name, cm.manifest_key
            ))));
        };
        let signature =
            text(&cm.signature_key).map(|b| String::from_utf8_lossy(&b).trim().to_string());
        return Ok(Ok(ManifestFiles {
            manifest,
            signature,
        }));
    }
    let Some(url) = &source.url else {
        return Ok(Err(ReleaseError::Missing(
            "releaseManifest names neither configMapRef nor url".into(),
        )));
    };
    let signature_url = source
        .signature_url
        .clone()
        .unwrap_or_else(|| format!("{url}.sig"));
    Ok(fetch_url_pair(url, &signature_url).await)
}

async fn fetch_url_pair(url: &str, signature_url: &str) -> Result<ManifestFiles, ReleaseError> {
    const LIMIT: usize = 4 << 20;
    // One client for every reconcile (its connection pool and TLS set-up are reused).
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = match CLIENT.get() {
        Some(client) => client.clone(),
        None => {
            let built = reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .map_err(|e| ReleaseError::Missing(e.to_string()))?;
            CLIENT.get_or_init(|| built).clone()
        }
    };
    let get = |u: String| {
        let client = client.clone();
        async move {
            let response = client
                .get(&u)
                .send()
                .await
                .map_err(|e| ReleaseError::Missing(format!("fetching {u}: {e}")))?;
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !response.status().is_success() {
                return Err(ReleaseError::Missing(format!(
                    "fetching {u}: HTTP {}",
                    response.status()
                )));
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| ReleaseError::Missing(format!("fetching {u}: {e}")))?;
            if body.len() > LIMIT {
                return Err(ReleaseError::Missing(format!("{u} is larger than 4 MiB")));
            }
            Ok(Some(body.to_vec()))
        }
    };
    let manifest = get(url.to_string())
        .await?
        .ok_or_else(|| ReleaseError::Missing(format!("{url}: not found")))?;
    let signature = get(signature_url.to_string())
        .await?
        .map(|b| String::from_utf8_lossy(&b).trim().to_string());
    Ok(ManifestFiles {
        manifest,
        signature,
    })
}

async fn fetch_key(
    client: &kube::Client,
    ns: &str,
    platform: &Platform,
) -> Result<Result<String, ReleaseError>> {
    let key_ref = &platform.spec.verification.public_key_secret_ref;
    let key_name = key_ref.key.clone().unwrap_or_else(|| "cosign.pub".into());
    let Some(entries) = workload::secret_entries(client, ns, &key_ref.name).await? else {
        return Ok(Err(ReleaseError::Missing(format!(
            "Secret {ns}/{} (the release public key) not found",
            key_ref.name
        ))));
    };
    let value = entries.get(&key_name).cloned();
    Ok(value.ok_or_else(|| {
        ReleaseError::Missing(format!("Secret {} has no key {key_name}", key_ref.name))
    }))
}

/// Optional status fields the state machine may clear; a merge patch needs explicit nulls.
const CLEARABLE: &[&str] = &[
    "currentVersion",
    "currentChannel",
    "releaseDigest",
    "desiredVersion",
    "phase",
    "step",
    "operation",
    "lastFailure",
];

/// The status merge patch: the whole status, with cleared fields set to null.
pub fn status_patch(status: &stellaops_crds::platform::PlatformStatus) -> Value {
    let mut value = serde_json::to_value(status).expect("status serializes");
    if let Some(map) = value.as_object_mut() {
        for key in CLEARABLE {
            map.entry(key.to_string()).or_insert(Value::Null);
        }
        for key in ["components", "history", "conditions"] {
            map.entry(key.to_string()).or_insert(json!([]));
        }
    }
    json!({ "status": value })
}

/// Reconcile one Platform: verify, observe, decide, apply, record.
pub async fn reconcile(platform: Arc<Platform>, ctx: Arc<Context>) -> Result<RequeueAction> {
    let ns = platform
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = platform.name_any();
    let client = &ctx.client;
    // The platform's components, migrations and release inputs live in the platform
    // namespace; the operator may change Deployments and run Jobs only there.
    if ns != ctx.config.operator_namespace {
        let mut status = platform.status.clone().unwrap_or_default();
        let message = format!(
            "a Platform must live in the platform namespace {}: it upgrades the components and runs the migrations there",
            ctx.config.operator_namespace
        );
        let news = workload::set_not_ready(
            &mut status.conditions,
            "OutsidePlatformNamespace",
            &message,
            platform.metadata.generation,
        );
        if news {
            status.observed_generation = platform.metadata.generation;
            let api: Api<Platform> = Api::namespaced(client.clone(), &ns);
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..Default::default()
            };
            api.patch_status(&name, &params, &Patch::Merge(&json!({"status": status})))
                .await?;
            workload::publish_event(
                &ctx.recorder,
                &*platform,
                kube::runtime::events::EventType::Warning,
                "OutsidePlatformNamespace",
                message,
                "Reconcile",
            )
            .await?;
        }
        return Ok(RequeueAction::await_change());
    }

    let files = fetch_manifest(client, &ns, &platform.spec.release_manifest).await?;
    let key = fetch_key(client, &ns, &platform).await?;
    let verified = verify(&platform, files, key);

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    // Point reads of what the rollout may look at, not LISTs of the namespace: the
    // Deployments of the release's, the status's and the history's components, and the
    // current operation's migration Jobs.
    let status = platform.status.clone().unwrap_or_default();
    let mut component_names: BTreeSet<String> =
        status.components.iter().map(|c| c.name.clone()).collect();
    component_names.extend(status.history.iter().flat_map(|r| r.images.keys().cloned()));
    if let Ok(release) = &verified {
        component_names.extend(release.components.iter().map(|c| c.name.clone()));
    }
    let mut observed = Observed::default();
    for component in &component_names {
        if let Some(d) = deployments.get_opt(component).await?
            && let Some(view) = deployment_view(&d)
        {
            observed.deployments.insert(d.name_any(), view);
        }
    }
    if let Some(op) = &status.operation {
        for phase in ["expand", "contract"] {
            let job_name = rollout::migration_job_name(&name, phase, &op.version, op.attempt);
            if let Some(j) = jobs.get_opt(&job_name).await? {
                observed.jobs.insert(j.name_any(), job_view(&j));
            }
        }
    }
    let last_backup = match preconditions::last_backup(&platform) {
        Ok(at) => at,
        Err(problem) => {
            tracing::warn!(%name, %problem, "ignoring the backup annotation");
            None
        }
    };
    // A store that cannot say (no database, or it failed) does not block: the lifecycle
    // pass is what finds a risk, and it records one only when it saw the rule.
    let compliance_at_risk = match &ctx.outbox {
        Some(pool) => stellaops_store::lifecycle::compliance_at_risk(pool)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%name, %error, "reading the last artifact lifecycle pass");
                None
            }),
        None => None,
    };
    let decision = rollout::decide(&Input {
        platform: &platform,
        release: verified.as_ref(),
        observed: &observed,
        last_backup,
        compliance_at_risk,
        now: jiff::Timestamp::now(),
    });

    // The outbox first: its keys make a retried reconcile append nothing twice, and the
    // status (which moves the state machine on) is written only once the events are safe.
    if !decision.outbox.is_empty() {
        match &ctx.outbox {
            Some(pool) => {
                for event in &decision.outbox {
                    stellaops_store::outbox::publish(
                        pool,
                        &stellaops_store::outbox::NewEvent {
                            kind: event.kind.to_string(),
                            namespace: Some(ns.clone()),
                            subject: format!("platform/{name}"),
                            severity: (event.kind != "release.progress").then(|| "high".into()),
                            payload: event.payload.clone(),
                            idempotency_key: event.idempotency_key.clone(),
                        },
                    )
                    .await?;
                }
            }
            None => tracing::warn!(
                %name,
                events = decision.outbox.len(),
                "no database configured: release events not written to the outbox"
            ),
        }
    }
    for action in &decision.actions {
        match action {
            Action::SetImage {
                deployment,
                container,
                image,
            } => {
                // Only this one field is ours; the chart keeps owning the rest.
                let body = json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": deployment, "namespace": ns},
                    "spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}
                });
                deployments
                    .patch(
                        deployment,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&body),
                    )
                    .await?;
            }
            Action::RunMigration {
                name: job_name,
                phase,
                image,
                args,
            } => {
                let body = workload::typed(&migration_job(&platform, job_name, phase, image, args));
                jobs.patch(
                    job_name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await?;
            }
        }
    }
    if platform.status.as_ref() != Some(&decision.status) {
        let api: Api<Platform> = Api::namespaced(client.clone(), &ns);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        api.patch_status(
            &name,
            &params,
            &Patch::Merge(&status_patch(&decision.status)),
        )
        .await?;
    }
    for notice in &decision.notices {
        let event = Event {
            type_: if notice.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: notice.reason.to_string(),
            note: Some(notice.message.clone()),
            action: "Rollout".to_string(),
            secondary: None,
        };
        if let Err(error) = ctx
            .recorder
            .publish(&event, &platform.object_ref(&()))
            .await
        {
            tracing::warn!(%name, %error, "could not publish event");
        }
    }
    Ok(RequeueAction::requeue(decision.requeue))
}
