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

/// `DATABASE_URL` from the configured Secret (key `url`) in the workload's namespace.
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

/// A worker container: our image, restricted, with a writable /tmp.
pub fn worker_container(
    config: &Config,
    name: &str,
    args: Vec<String>,
    resources: ResourceRequirements,
) -> Container {
    Container {
        name: name.to_string(),
        image: Some(config.worker_image.clone()),
        command: Some(vec!["stellaops-worker".into()]),
        args: Some(args),
        env: Some(Vec::new()),
        resources: Some(resources),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
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

/// The `tmp` emptyDir every worker mounts (the root filesystem is read-only).
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

/// The newest finished Job matching `selector` in `namespace`, and the JSON its Pod left
/// as termination message.
pub async fn latest_job_result(
    client: &kube::Client,
    ns: &str,
    selector: &str,
) -> Result<Option<SyncResult>> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let mut finished: Vec<Job> = jobs
        .list(&ListParams::default().labels(selector))
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
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
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
    use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
    use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let labels = metadata.labels.clone();
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
                    ..Default::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(2),
                    active_deadline_seconds: Some(timing.active_deadline_seconds),
                    ttl_seconds_after_finished: Some(timing.ttl_seconds_after_finished),
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
