//! Pieces every worker workload shares: labels, restricted pod security, owner references.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, PodSecurityContext, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::Value;

use crate::context::{Config, FIELD_MANAGER};
use crate::error::Result;

/// Standard labels of everything made for `owner` (of `kind`) with `component`.
pub fn labels(owner_name: &str, kind: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "stellaops-worker".to_string(),
        ),
        (
            "app.kubernetes.io/instance".to_string(),
            owner_name.to_string(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            component.to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            FIELD_MANAGER.to_string(),
        ),
        (
            "app.kubernetes.io/part-of".to_string(),
            "stellaops".to_string(),
        ),
        (
            format!("stella-ops.org/{}", kind.to_ascii_lowercase()),
            owner_name.to_string(),
        ),
    ])
}

/// The controller owner reference of `owner`. Objects not yet stored (in `preview`) have
/// no uid; the reference then says so instead of failing.
pub fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    owner
        .controller_owner_ref(&())
        .unwrap_or_else(|| OwnerReference {
            api_version: K::api_version(&()).into_owned(),
            kind: K::kind(&()).into_owned(),
            name: owner.meta().name.clone().unwrap_or_default(),
            uid: "<assigned by the API server>".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        })
}

/// A Kubernetes name: `base` + `suffix`, cut to `max` characters without a trailing dash.
pub fn child_name(base: &str, suffix: &str, max: usize) -> String {
    let keep = max.saturating_sub(suffix.len());
    let base: String = base.chars().take(keep).collect();
    format!("{}{suffix}", base.trim_end_matches('-'))
}

/// Pod security for the restricted Pod Security Standard.
pub fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        fs_group: Some(65532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `DATABASE_URL` from the configured Secret (key `url`) in the platform namespace, where
/// every workload that uses it runs.
pub fn database_url_env(config: &Config) -> EnvVar {
    EnvVar {
        name: "DATABASE_URL".into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: config.database_secret.clone(),
                key: "url".into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A worker container: our image, restricted, with a writable /tmp; JSON logs (with
/// periodic progress records for long work), and the operator's OTLP endpoint when tracing
/// is on.
pub fn worker_container(
    config: &Config,
    name: &str,
    args: Vec<String>,
    resources: ResourceRequirements,
) -> Container {
    let mut env = vec![EnvVar {
        name: "STELLAOPS_LOG_FORMAT".into(),
        value: Some("json".into()),
        ..Default::default()
    }];
    if let Some(endpoint) = &config.otlp_endpoint {
        env.push(EnvVar {
            name: "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            value: Some(endpoint.clone()),
            ..Default::default()
        });
    }
    Container {
        name: name.to_string(),
        image: Some(config.worker_image.clone()),
        command: Some(vec!["stellaops-worker".into()]),
        args: Some(args),
        env: Some(env),
        resources: Some(resources),
        security_context: Some(restricted_container()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// S3 settings of a workload: endpoint and region variables, credentials from a Secret.
pub fn s3_env(container: &mut Container, location: &stellaops_crds::S3Location) {
    let env = container.env.get_or_insert_with(Vec::new);
    if let Some(endpoint) = &location.endpoint {
        env.push(EnvVar {
            name: "AWS_ENDPOINT_URL".into(),
            value: Some(endpoint.clone()),
            ..Default::default()
        });
    }
    env.push(EnvVar {
        name: "AWS_REGION".into(),
        value: Some(
            location
                .region
                .clone()
                .unwrap_or_else(|| "us-east-1".into()),
        ),
        ..Default::default()
    });
    if let Some(secret) = &location.secret_ref {
        container.env_from = Some(vec![k8s_openapi::api::core::v1::EnvFromSource {
            secret_ref: Some(k8s_openapi::api::core::v1::SecretEnvSource {
                name: secret.name.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }]);
    }
}

/// `object` as the JSON body of a server-side apply (or `preview`): with the
/// `apiVersion` and `kind` its type says.
pub fn typed<K>(object: &K) -> Value
where
    K: k8s_openapi::Resource + serde::Serialize,
{
    let mut value = serde_json::to_value(object).expect("Kubernetes objects serialize");
    value["apiVersion"] = Value::from(K::API_VERSION);
    value["kind"] = Value::from(K::KIND);
    value
}

/// The security context of every container the operator creates (restricted profile).
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Seconds of a duration written as the CRDs do: `24h`, `5m`, `1h30m`, `45s`.
pub fn parse_duration(text: &str) -> Option<i64> {
    let (mut total, mut number, mut any) = (0i64, String::new(), false);
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' => {
                let n: i64 = number.parse().ok()?;
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                number.clear();
                any = true;
            }
            _ => return None,
        }
    }
    (any && number.is_empty()).then_some(total)
}

/// The `tmp` emptyDir every worker mounts (the root filesystem is read-only).
/// Where scan and evaluate workers find the verdict signing key.
pub const VERDICT_SIGNING_KEY_PATH: &str = "/etc/stellaops/verdict-signing/key.pem";

/// Give a verdict-writing worker (scan, evaluate) the signing key: the platform namespace's
/// Secret `config.verdict_signing_secret` (optional, so a missing Secret fails the worker with
/// a message naming it instead of leaving the Pod pending), its path in
/// `STELLAOPS_VERDICT_SIGNING_KEY`.
pub fn verdict_signing(container: &mut Container, volumes: &mut Vec<Volume>, config: &Config) {
    use k8s_openapi::api::core::v1::{KeyToPath, SecretVolumeSource};
    volumes.push(Volume {
        name: "verdict-signing".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(config.verdict_signing_secret.clone()),
            items: Some(vec![KeyToPath {
                key: "key.pem".into(),
                path: "key.pem".into(),
                ..Default::default()
            }]),
            optional: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    });
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: "verdict-signing".into(),
            mount_path: "/etc/stellaops/verdict-signing".into(),
            read_only: Some(true),
            ..Default::default()
        });
    container.env.get_or_insert_with(Vec::new).push(EnvVar {
        name: "STELLAOPS_VERDICT_SIGNING_KEY".into(),
        value: Some(VERDICT_SIGNING_KEY_PATH.into()),
        ..Default::default()
    });
}

/// Give a worker that writes signed verdicts without otherwise touching S3 (evaluate) the
/// platform bucket: S3 settings and credentials, the bucket in `STELLAOPS_BUCKET`.
pub fn verdict_bucket(container: &mut Container, config: &Config) {
    s3_env(container, &config.storage);
    container.env.get_or_insert_with(Vec::new).push(EnvVar {
        name: "STELLAOPS_BUCKET".into(),
        value: Some(config.storage.bucket.clone()),
        ..Default::default()
    });
}

pub fn tmp_volume() -> Volume {
    Volume {
        name: "tmp".into(),
        empty_dir: Some(Default::default()),
        ..Default::default()
    }
}

/// Requests and a memory limit.
pub fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity(cpu.into())),
            ("memory".into(), Quantity(memory.into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".into(),
            Quantity(memory_limit.into()),
        )])),
        ..Default::default()
    }
}

/// What the latest finished Job said (the worker's JSON termination message).
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

/// The newest finished sync Job matching `selector` in `namespace`, and the JSON its Pod left
/// as termination message: read from the shared stores (sync Jobs, Pods), not LISTed.
pub async fn latest_job_result(
    ctx: &crate::Context,
    ns: &str,
    selector: &str,
) -> Result<Option<SyncResult>> {
    let finished = ctx.caches.sync_jobs.state_filter(|j| {
        j.metadata.namespace.as_deref() == Some(ns)
            && crate::tenancy::selector_matches(selector, j.labels())
            // Finished means the Job says so (Complete or Failed), not a Pod that failed
            // while the Job still retries.
            && job_finished(j).is_some()
    });
    let Some(job) = finished
        .into_iter()
        .max_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0))
    else {
        return Ok(None);
    };
    let name = job.name_any();
    let status = job.status.clone().unwrap_or_default();
    let succeeded = job_finished(&job) == Some(true);
    let summary = cached_termination_summary(ctx, ns, &name).await?;
    let error = summary
        .as_ref()
        .and_then(|s| s["error"].as_str().map(str::to_string))
        .or_else(|| job_failure(&job));
    Ok(Some(SyncResult {
        job: name,
        succeeded,
        finished_at: status.completion_time.clone(),
        summary,
        error,
    }))
}

/// A Secret's entries as text (`data` decoded, `stringData` on top); `None` when the
/// Secret does not exist.
pub async fn secret_entries(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>> {
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.as_ref().map(entries_of))
}

/// A Secret's entries as text: `data` decoded, `stringData` on top.
pub fn entries_of(secret: &k8s_openapi::api::core::v1::Secret) -> BTreeMap<String, String> {
    let mut entries: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    entries.extend(secret.string_data.clone().unwrap_or_default());
    entries
}

/// The message of a Job's `Failed` condition (or its reason).
pub fn job_failure(job: &Job) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Failed")
        .and_then(|c| c.message.clone().or(c.reason.clone()))
}

/// The JSON a Job's newest Pod left as its termination message (workers write their
/// summary there), if any.
pub async fn termination_summary(
    client: &kube::Client,
    ns: &str,
    job: &str,
) -> Result<Option<Value>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await?;
    Ok(newest_termination_message(list.items.iter()))
}

/// [`termination_summary`] read from the shared Pod store; the LIST only when the store
/// holds no message of the Job's Pods yet (its watch may trail the Job's).
pub async fn cached_termination_summary(
    ctx: &crate::Context,
    ns: &str,
    job: &str,
) -> Result<Option<Value>> {
    let pods = ctx.caches.pods.state_filter(|pod| {
        pod.metadata.namespace.as_deref() == Some(ns)
            && pod.labels().get("job-name").map(String::as_str) == Some(job)
    });
    match newest_termination_message(pods.iter().map(|p| p.as_ref())) {
        Some(summary) => Ok(Some(summary)),
        None => termination_summary(&ctx.client, ns, job).await,
    }
}

/// The JSON termination message of the newest Pod that left one.
fn newest_termination_message<'a>(pods: impl Iterator<Item = &'a Pod>) -> Option<Value> {
    let mut messages: BTreeMap<String, Value> = BTreeMap::new();
    for pod in pods {
        let created = pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        let message = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| {
                c.iter()
                    .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
            });
        if let Some(value) = message.and_then(|m| serde_json::from_str::<Value>(&m).ok()) {
            messages.insert(created, value);
        }
    }
    messages.into_values().next_back()
}

/// Timing of a sync CronJob.
pub struct SyncSchedule<'a> {
    /// Cron expression.
    pub schedule: &'a str,
    /// Suspend the CronJob.
    pub suspend: bool,
    /// A run that cannot start within this many seconds is skipped.
    pub starting_deadline_seconds: i64,
    /// A run is stopped after this many seconds.
    pub active_deadline_seconds: i64,
    /// Finished Jobs are removed after this many seconds.
    pub ttl_seconds_after_finished: i32,
}

/// A sync CronJob running `container` with `volumes`: Forbid concurrency, three Jobs of
/// history each way, two retries, restricted Pods without a service-account token.
pub fn sync_cron_job(
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    timing: SyncSchedule<'_>,
    container: Container,
    volumes: Vec<Volume>,
) -> k8s_openapi::api::batch::v1::CronJob {
    use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobTemplateSpec};

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let labels = metadata.labels.clone();
    // The Jobs carry the CronJob's owner labels and annotations, so they map back to it.
    let annotations = metadata.annotations.clone();
    CronJob {
        metadata,
        spec: CronJobSpec {
            schedule: timing.schedule.to_string(),
            suspend: Some(timing.suspend),
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(timing.starting_deadline_seconds),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: labels.clone(),
                    annotations,
                    ..Default::default()
                }),
                spec: Some(run_once_job_spec(
                    labels,
                    container,
                    Some(volumes),
                    JobLimits {
                        backoff: 2,
                        deadline_seconds: timing.active_deadline_seconds,
                        ttl_seconds: timing.ttl_seconds_after_finished,
                    },
                )),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// How many retries a run-once Job gets, how long it may run and how long it is kept.
#[derive(Clone, Copy, Debug)]
pub struct JobLimits {
    /// `backoffLimit`.
    pub backoff: i32,
    /// `activeDeadlineSeconds`.
    pub deadline_seconds: i64,
    /// `ttlSecondsAfterFinished`.
    pub ttl_seconds: i32,
}

/// A run-once Job owned by `owner`, in its namespace: one container, restricted pod
/// security, no service-account token, the Pod labelled like the Job.
pub fn run_once_job<K: Resource<DynamicType = ()>>(
    owner: &K,
    name: String,
    labels: BTreeMap<String, String>,
    container: Container,
    volumes: Option<Vec<Volume>>,
    limits: JobLimits,
) -> Job {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    job_with_meta(
        ObjectMeta {
            name: Some(name),
            namespace: owner.meta().namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner_reference(owner)]),
            ..Default::default()
        },
        container,
        volumes,
        limits,
    )
}

/// A run-once Job made for `owner` in the platform namespace (it holds platform
/// credentials): owner labels instead of an ownerReference, otherwise as [`run_once_job`].
pub fn platform_run_once_job<K: Resource<DynamicType = ()>>(
    owner: &K,
    config: &Config,
    name: String,
    labels: BTreeMap<String, String>,
    container: Container,
    volumes: Option<Vec<Volume>>,
    limits: JobLimits,
) -> Job {
    job_with_meta(
        crate::tenancy::platform_meta(owner, &config.operator_namespace, name, labels),
        container,
        volumes,
        limits,
    )
}

fn job_with_meta(
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    container: Container,
    volumes: Option<Vec<Volume>>,
    limits: JobLimits,
) -> Job {
    let labels = metadata.labels.clone();
    Job {
        metadata,
        spec: Some(run_once_job_spec(labels, container, volumes, limits)),
        ..Default::default()
    }
}

/// The Job spec of a run-once Job (and of each run of a sync CronJob): one container,
/// restricted pod security, no service-account token, the Pod labelled `labels`.
fn run_once_job_spec(
    labels: Option<BTreeMap<String, String>>,
    container: Container,
    volumes: Option<Vec<Volume>>,
    limits: JobLimits,
) -> k8s_openapi::api::batch::v1::JobSpec {
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    JobSpec {
        backoff_limit: Some(limits.backoff),
        active_deadline_seconds: Some(limits.deadline_seconds),
        ttl_seconds_after_finished: Some(limits.ttl_seconds),
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels,
                ..Default::default()
            }),
            spec: Some(PodSpec {
                restart_policy: Some("Never".into()),
                security_context: Some(pod_security()),
                automount_service_account_token: Some(false),
                containers: vec![container],
                volumes,
                ..Default::default()
            }),
        },
        ..Default::default()
    }
}

/// Server-side apply `object` (a typed body from [`typed`]) as the operator, taking over
/// fields another manager set.
pub async fn apply<K>(api: Api<K>, name: &str, object: &Value) -> Result<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use kube::api::{Patch, PatchParams};
    Ok(api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await?)
}

/// Annotation holding a digest of the body the operator last applied to an object, so that a
/// field it stops setting also reads as a change in [`is_current`].
pub const APPLIED_DIGEST: &str = "stella-ops.org/applied-digest";

/// `object` (a typed body from [`typed`]) with [`APPLIED_DIGEST`] set to a digest of its
/// content (its canonical JSON: `serde_json` keeps object keys sorted); idempotent.
pub fn with_applied_digest(mut object: Value) -> Value {
    use sha2::{Digest, Sha256};
    // A digest already there is not part of the content (nor the map made to hold it).
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut)
        && let Some(annotations) = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        && annotations.remove(APPLIED_DIGEST).is_some()
        && annotations.is_empty()
    {
        metadata.remove("annotations");
    }
    let digest = Sha256::digest(object.to_string().as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(APPLIED_DIGEST.into(), Value::from(hex));
        }
    }
    object
}

/// Whether `stored` already holds all of `wanted`: each field of `wanted` with the same value
/// in `stored`, lists of the same length item by item. What the API server defaults or
/// another manager adds is ignored; a field `wanted` no longer has is caught by the digest
/// of [`with_applied_digest`] differing.
pub fn is_current(stored: &Value, wanted: &Value) -> bool {
    match (stored, wanted) {
        (Value::Object(have), Value::Object(want)) => want
            .iter()
            .all(|(key, w)| have.get(key).is_some_and(|h| is_current(h, w))),
        (Value::Array(have), Value::Array(want)) => {
            have.len() == want.len() && have.iter().zip(want).all(|(h, w)| is_current(h, w))
        }
        (have, want) => have == want,
    }
}

/// Apply `object` (from [`with_applied_digest`]) unless `stored`, the object as a store last
/// saw it, already holds it ([`is_current`]): then `stored` is the answer and nothing is
/// written. A store that trails a change reads as not current, which only costs an apply.
pub async fn apply_unless_current<K>(
    api: Api<K>,
    name: &str,
    object: &Value,
    stored: Option<std::sync::Arc<K>>,
) -> Result<K>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if let Some(stored) = stored
        && serde_json::to_value(stored.as_ref()).is_ok_and(|have| is_current(&have, object))
    {
        return Ok(stored.as_ref().clone());
    }
    apply(api, name, object).await
}

/// Set `Ready=False` with `reason` and `message` in `conditions`; returns whether that
/// is news (so the caller raises a Warning Event once, not at every reconcile).
pub fn set_not_ready(
    conditions: &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> bool {
    use stellaops_crds::{CONDITION_READY, condition, set_condition};
    let news = !conditions
        .iter()
        .any(|c| c.type_ == CONDITION_READY && c.reason == reason && c.message == message);
    set_condition(
        conditions,
        condition(
            CONDITION_READY,
            false,
            reason,
            message,
            generation,
            Time(jiff::Timestamp::now()),
        ),
    );
    news
}

/// Publish an Event about `object`.
pub async fn publish_event<K: Resource<DynamicType = ()>>(
    recorder: &kube::runtime::events::Recorder,
    object: &K,
    type_: kube::runtime::events::EventType,
    reason: &str,
    note: String,
    action: &str,
) -> Result<()> {
    recorder
        .publish(
            &kube::runtime::events::Event {
                type_,
                reason: reason.into(),
                note: Some(note),
                action: action.into(),
                secondary: None,
            },
            &object.object_ref(&()),
        )
        .await?;
    Ok(())
}
