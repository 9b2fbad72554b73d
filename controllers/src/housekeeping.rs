//! The platform's own housekeeping workloads, which belong to no custom resource: the
//! artifact lifecycle CronJob (release seed §7, `stellaops-worker artifacts lifecycle`) in
//! the platform namespace. The leader applies it at start with server-side apply (so it
//! follows the operator's settings after an upgrade) and deletes it when turned off.

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};

use crate::context::Config;
use crate::workload;

/// Name of the artifact lifecycle CronJob.
pub const ARTIFACT_LIFECYCLE: &str = "stellaops-artifact-lifecycle";

/// Field manager of the housekeeping objects.
const MANAGER: &str = "stellaops-operator-housekeeping";

/// When and how the artifact lifecycle runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactLifecycle {
    /// Cron expression (UTC).
    pub schedule: String,
    /// Days working artifacts are kept.
    pub short_days: u32,
    /// Days SBOMs and fragments are kept once no current result points to them.
    pub default_days: u32,
}

/// The artifact lifecycle CronJob, in the platform namespace. Pure.
pub fn artifact_lifecycle_cron_job(config: &Config, lifecycle: &ArtifactLifecycle) -> CronJob {
    let labels = [
        ("app.kubernetes.io/name", "stellaops"),
        ("app.kubernetes.io/component", "artifact-lifecycle"),
        ("app.kubernetes.io/managed-by", "stellaops-operator"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut container = workload::worker_container(
        config,
        "lifecycle",
        vec![
            "artifacts".into(),
            "lifecycle".into(),
            "--bucket".into(),
            config.storage.bucket.clone(),
            "--short-days".into(),
            lifecycle.short_days.to_string(),
            "--default-days".into(),
            lifecycle.default_days.to_string(),
        ],
        workload::resources("50m", "64Mi", "256Mi"),
    );
    container
        .env
        .get_or_insert_with(Vec::new)
        .push(workload::database_url_env(config));
    workload::s3_env(&mut container, &config.storage);
    let mut cron_job = workload::sync_cron_job(
        ObjectMeta {
            name: Some(ARTIFACT_LIFECYCLE.into()),
            namespace: Some(config.operator_namespace.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        workload::SyncSchedule {
            schedule: &lifecycle.schedule,
            suspend: false,
            starting_deadline_seconds: 3600,
            active_deadline_seconds: 6 * 3600,
            ttl_seconds_after_finished: 7 * 86_400,
        },
        container,
        vec![workload::tmp_volume()],
    );
    cron_job.spec.time_zone = Some("Etc/UTC".into());
    cron_job
}

/// Apply the artifact lifecycle CronJob (`Some`) or remove it (`None`).
pub async fn apply_artifact_lifecycle(
    client: &kube::Client,
    config: &Config,
    lifecycle: Option<&ArtifactLifecycle>,
) -> kube::Result<()> {
    let api: Api<CronJob> = Api::namespaced(client.clone(), &config.operator_namespace);
    match lifecycle {
        Some(lifecycle) => {
            let mut body = serde_json::to_value(artifact_lifecycle_cron_job(config, lifecycle))
                .expect("a CronJob serializes");
            body["apiVersion"] = "batch/v1".into();
            body["kind"] = "CronJob".into();
            api.patch(
                ARTIFACT_LIFECYCLE,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map(|_| ())
        }
        None => match api
            .delete(ARTIFACT_LIFECYCLE, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        },
    }
}
