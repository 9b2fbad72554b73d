//! A local Job runner for the API server emulator: it plays the Job, CronJob and
//! Deployment controllers and the kubelet, talking to the emulator only through a
//! [`kube::Client`] (admin credentials), so the real operator can be tested end to end.
//!
//! * Job controller: one Pod per needed completion from `spec.template` (named
//!   `<job>-<5 chars>`, labelled and owned as the real controller does), `backoffLimit`
//!   retries with a new Pod each, `activeDeadlineSeconds`, and the status a kube-rs reader
//!   needs (`startTime`, `active`, `ready`, `succeeded`, `failed`, `completionTime`,
//!   `SuccessCriteriaMet`+`Complete` or `FailureTarget`+`Failed`). `ttlSecondsAfterFinished`
//!   and indexed completions are ignored; `suspend` only stops new Pods.
//! * CronJob controller: a Job named `<cronjob>-<minutes since the epoch>` at each
//!   schedule time (UTC; `timeZone` is ignored; read by `croner`, which also takes a leading
//!   seconds field that Kubernetes would refuse: handy in tests), `suspend`, `concurrencyPolicy`,
//!   `startingDeadlineSeconds`, history limits, `status.lastScheduleTime`/`active`/
//!   `lastSuccessfulTime`; [`LocalRunner::trigger_cron_job`] creates one now.
//! * Deployment controller: Pods straight from the template (no ReplicaSet; labelled
//!   `pod-template-hash`, replaced all at once when the template changes) and the status the
//!   operator reads (`observedGeneration`, replica counts, `Available`, `Progressing`).
//! * Kubelet: a Pod whose images are all "ours" runs its containers as local processes
//!   (init containers in order, then the main ones together); any other Pod is simulated
//!   (Running and Ready; a Pod that is not `restartPolicy: Always` then Succeeded with exit
//!   code 0).
//!
//! A process gets a clean environment: `PATH` of the test process, `HOSTNAME`, then
//! [`RunnerOptions::extra_env`], then the container's `envFrom` and `env` (so the Pod's
//! own variables win, as a container's spec does over anything the node adds). Mount paths
//! (and the termination-message path) are rewritten to local directories wherever they
//! start an argument, a working directory or an environment value. Every Pod in a cluster
//! has its own IP; here they share the loopback, so an argument that binds every interface
//! (`0.0.0.0:PORT`, the form our servers' `--listen` takes) gets a free loopback port of
//! its own instead, and two Pods of one port never collide.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the runner runs and where.
#[derive(Clone, Debug, Default)]
pub struct RunnerOptions {
    /// Images that are "ours": a Pod whose containers all use one of these runs as local
    /// processes. An entry matches the image itself or the image with any `:tag` or
    /// `@digest` added.
    pub own_images: Vec<String>,
    /// Local path of each of our binaries by the name a container's command uses (e.g.
    /// "stellaops-worker" -> target/debug/stellaops-worker); matched by file name, so
    /// `/usr/local/bin/stellaops-worker` maps too. Other commands run as they are.
    pub binaries: BTreeMap<String, PathBuf>,
    /// Extra environment for every process (e.g. the test services' addresses), set before
    /// the container's own `envFrom` and `env`: the Pod's variables win.
    pub extra_env: Vec<(String, String)>,
    /// Where Pod directories (`pods/<namespace>/<pod>/`: volumes, `<container>.log`,
    /// termination messages), volume claims (`claims/<namespace>/<claim>/`) and `hostPath`
    /// stand-ins (`host/<path>`) go.
    pub work_dir: PathBuf,
}

/// One process the runner started, for test assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartedProcess {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Command line after binary mapping, `$(VAR)` expansion and path rewriting.
    pub argv: Vec<String>,
    /// The whole environment it got.
    pub env: Vec<(String, String)>,
    /// Exit code once it ended (128 + signal when killed by one); `None` while running.
    pub exit_code: Option<i32>,
}

/// The running controllers and kubelet; see the module documentation.
pub struct LocalRunner {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

struct Inner {
    client: Client,
    options: RunnerOptions,
    started: Mutex<Vec<StartedProcess>>,
    /// Every Pod (by uid) the kubelet has taken on, running or done: a Pod runs once.
    pods: Mutex<HashMap<String, PodHandle>>,
    /// Pods the Job and Deployment controllers created, by owner uid, and which of them a
    /// list has shown since (until then they count as existing, whatever a list says).
    created: Mutex<HashMap<String, Created>>,
    /// Process groups alive now, killed on stop and drop.
    groups: Mutex<HashSet<i32>>,
    random: std::collections::hash_map::RandomState,
    counter: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Created {
    names: BTreeSet<String>,
    seen: BTreeSet<String>,
}

struct PodHandle {
    cancel: watch::Sender<bool>,
    task: Option<tokio::task::AbortHandle>,
}

const FIELD_MANAGER: &str = "stellaops-local-runner";
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl LocalRunner {
    /// Start the controllers and the kubelet on `client` (admin credentials).
    pub fn start(client: Client, options: RunnerOptions) -> LocalRunner {
        let inner = Arc::new(Inner {
            client,
            options,
            started: Mutex::new(Vec::new()),
            pods: Mutex::new(HashMap::new()),
            created: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashSet::new()),
            random: std::collections::hash_map::RandomState::new(),
            counter: std::sync::atomic::AtomicU64::new(0),
        });
        let tasks = vec![
            tokio::spawn(kubelet_loop(inner.clone())),
            tokio::spawn(job_controller(inner.clone())),
            tokio::spawn(cron_job_controller(inner.clone())),
            tokio::spawn(deployment_controller(inner.clone())),
        ];
        LocalRunner { inner, tasks }
    }

    /// Stop every watch and kill every process the runner started (and their children).
    pub async fn stop(mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        let handles: Vec<_> = lock(&self.inner.pods)
            .values_mut()
            .filter_map(|h| {
                let _ = h.cancel.send(true);
                h.task.take()
            })
            .collect();
        for handle in handles {
            handle.abort();
        }
        // Give aborted Pod tasks a moment to drop their children, then make sure.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.inner.kill_all();
    }

    /// Every process started so far, in start order.
    pub fn started(&self) -> Vec<StartedProcess> {
        lock(&self.inner.started).clone()
    }

    /// The local directory of a Pod (volumes, `<container>.log`).
    pub fn pod_dir(&self, namespace: &str, pod: &str) -> PathBuf {
        self.inner.pod_dir(namespace, pod)
    }

    /// Create one Job from a CronJob's template now, as `kubectl create job --from=cronjob/…`
    /// does (named `<cronjob>-manual-<5 chars>`, owned by the CronJob).
    pub async fn trigger_cron_job(&self, namespace: &str, name: &str) -> kube::Result<Job> {
        let cron_jobs: Api<CronJob> = Api::namespaced(self.inner.client.clone(), namespace);
        let cron_job = cron_jobs.get(name).await?;
        let job_name = format!(
            "{}-manual-{}",
            truncate(name, 63 - 13),
            self.inner.random_suffix()
        );
        let mut job = job_from_cron_job(&cron_job, &job_name);
        job.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert("cronjob.kubernetes.io/instantiate".into(), "manual".into());
        let jobs: Api<Job> = Api::namespaced(self.inner.client.clone(), namespace);
        jobs.create(&PostParams::default(), &job).await
    }
}

impl Drop for LocalRunner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for handle in lock(&self.inner.pods).values() {
            let _ = handle.cancel.send(true);
            if let Some(task) = &handle.task {
                task.abort();
            }
        }
        self.inner.kill_all();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    fn pod_dir(&self, namespace: &str, pod: &str) -> PathBuf {
        self.options.work_dir.join("pods").join(namespace).join(pod)
    }

    fn claim_dir(&self, namespace: &str, claim: &str) -> PathBuf {
        self.options
            .work_dir
            .join("claims")
            .join(namespace)
            .join(claim)
    }

    /// Five characters as the API server's `generateName` uses.
    fn random_suffix(&self) -> String {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        encode(self.random.hash_one((n, std::time::SystemTime::now())), 5)
    }

    fn is_own_image(&self, image: &str) -> bool {
        self.options.own_images.iter().any(|own| {
            image == own
                || image
                    .strip_prefix(own.as_str())
                    .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('@'))
        })
    }

    fn kill_all(&self) {
        for group in lock(&self.groups).drain() {
            kill_group(group);
        }
    }

    /// Remember pods created for `owner` and return the names a list has not shown yet.
    fn unseen_created(&self, owner: &str, listed: &[Pod]) -> usize {
        let mut created = lock(&self.created);
        let Some(entry) = created.get_mut(owner) else {
            return 0;
        };
        for pod in listed {
            if entry.names.contains(&pod.name_any()) {
                entry.seen.insert(pod.name_any());
            }
        }
        entry.names.difference(&entry.seen).count()
    }

    fn note_created(&self, owner: &str, pod: &str) {
        lock(&self.created)
            .entry(owner.to_string())
            .or_default()
            .names
            .insert(pod.to_string());
    }
}

fn kill_group(group: i32) {
    if group > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group we created; it
        // touches no memory.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}

fn now() -> jiff::Timestamp {
    // Kubernetes times have whole seconds.
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect::<String>()
}

fn controller_uid(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&str> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    let meta = owner.meta();
    Some(OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

async fn owned_pods(client: &Client, namespace: &str, owner_uid: &str) -> kube::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| controller_uid(&p.metadata) == Some(owner_uid))
        .collect())
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// A merge patch from status `old` to `new`: fields `new` drops become `null`, which a merge
/// patch needs to remove them (k8s-openapi leaves `None` out).
fn status_patch<T: serde::Serialize>(old: &T, new: &T) -> Patch<Value> {
    let old = serde_json::to_value(old).unwrap_or_default();
    let mut new = serde_json::to_value(new).unwrap_or_default();
    if let (Some(old), Some(new)) = (old.as_object(), new.as_object_mut()) {
        for key in old.keys() {
            new.entry(key.clone()).or_insert(Value::Null);
        }
    }
    Patch::Merge(json!({ "status": new }))
}

/// A delete of something already gone succeeded.
fn gone_is_fine<T>(result: kube::Result<T>) -> kube::Result<()> {
    match result {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}

fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The controller of `K` and the `Child` objects it owns (all namespaces), each watch
/// backing off on its own. kube's `Controller::new(..).owns(..)` backs off the *merge* of
/// its triggers whenever one of them fails and polls none meanwhile, so after an emulator
/// restart (every watch fails once, 410 Gone) the Job watch can sit unpolled while the
/// Pod watch's errors and its own take turns, and a Job made after the restart waits (the
/// operator had this fault, see `stellaops_controllers::retry::EachWatchOnItsOwn`; the
/// likely cause of one e2e restart test timing out, not confirmed). Here each watch's
/// errors stay in its own stream: logged, waited out by its own backoff, never passed to
/// the merge.
fn owning_controller<K, Child>(client: &Client) -> Controller<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    Child: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let (reader, writer) = kube::runtime::reflector::store();
    let owners = watcher::watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let children = watcher::watcher(
        Api::<Child>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();
    Controller::for_stream(errors_kept_in(owners), reader).owns_stream(errors_kept_in(children))
}

/// `watch` without its errors, each logged (after it the watch's own backoff waits).
fn errors_kept_in<T>(
    watch: impl futures::Stream<Item = Result<T, watcher::Error>>,
) -> impl futures::Stream<Item = Result<T, watcher::Error>> {
    watch.filter(|item| {
        if let Err(error) = item {
            tracing::debug!(%error, "local runner: a watch failed; it retries after its backoff");
        }
        futures::future::ready(item.is_ok())
    })
}

fn error_policy<K>(_: Arc<K>, error: &kube::Error, _: Arc<Inner>) -> Action {
    tracing::debug!(%error, "local runner reconcile failed; retrying");
    Action::requeue(Duration::from_millis(500))
}

// ---------------------------------------------------------------------------------------
// Job controller

async fn job_controller(inner: Arc<Inner>) {
    let client = inner.client.clone();
    owning_controller::<Job, Pod>(&client)
        .run(reconcile_job, error_policy, inner)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn job_finished(status: &JobStatus) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn set_condition(conditions: &mut Vec<JobCondition>, type_: &str, reason: &str, message: &str) {
    if conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
    {
        return;
    }
    conditions.retain(|c| c.type_ != type_);
    conditions.push(JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now())),
        last_transition_time: Some(Time(now())),
    });
}

async fn reconcile_job(job: Arc<Job>, inner: Arc<Inner>) -> kube::Result<Action> {
    let (Some(namespace), Some(uid)) = (job.namespace(), job.uid()) else {
        return Ok(Action::await_change());
    };
    let name = job.name_any();
    let old = job.status.clone().unwrap_or_default();
    if job.metadata.deletion_timestamp.is_some() || job_finished(&old) {
        return Ok(Action::await_change());
    }
    let Some(spec) = job.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let pods = owned_pods(&inner.client, &namespace, &uid).await?;
    let unseen = inner.unseen_created(&uid, &pods);
    let restart_on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !matches!(pod_phase(p), "Succeeded" | "Failed"))
        .collect();
    let succeeded = pods.iter().filter(|p| pod_phase(p) == "Succeeded").count() as i32;
    let mut failed = pods.iter().filter(|p| pod_phase(p) == "Failed").count() as i32;
    if restart_on_failure {
        // Under OnFailure the kubelet restarts containers in place; each restart counts.
        failed += live
            .iter()
            .flat_map(|p| {
                p.status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
            })
            .map(|c| c.restart_count)
            .sum::<i32>();
    }
    let active = live.len() as i32 + unseen as i32;
    let ready = live.iter().filter(|p| pod_ready(p)).count() as i32;
    let completions = spec.completions.unwrap_or(1).max(1);
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let suspended = spec.suspend == Some(true);

    let now = now();
    let mut status = old.clone();
    let start_time = match (&old.start_time, suspended) {
        (Some(t), _) => Some(t.0),
        (None, false) => Some(now),
        (None, true) => None,
    };
    status.start_time = start_time.map(Time);
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let deadline = spec
        .active_deadline_seconds
        .zip(start_time)
        .and_then(|(s, start)| start.checked_add(jiff::SignedDuration::from_secs(s)).ok());
    let mut stop_pods = false;
    let mut requeue = Some(Duration::from_secs(5));
    if succeeded >= completions {
        let message = "Reached expected number of succeeded pods";
        set_condition(
            &mut conditions,
            "SuccessCriteriaMet",
            "CompletionsReached",
            message,
        );
        set_condition(&mut conditions, "Complete", "CompletionsReached", message);
        status.completion_time = Some(Time(now));
        stop_pods = true;
    } else if failed > backoff_limit {
        let message = "Job has reached the specified backoff limit";
        set_condition(
            &mut conditions,
            "FailureTarget",
            "BackoffLimitExceeded",
            message,
        );
        set_condition(&mut conditions, "Failed", "BackoffLimitExceeded", message);
        stop_pods = true;
    } else if deadline.is_some_and(|d| d <= now) {
        let message = "Job was active longer than specified deadline";
        set_condition(
            &mut conditions,
            "FailureTarget",
            "DeadlineExceeded",
            message,
        );
        set_condition(&mut conditions, "Failed", "DeadlineExceeded", message);
        // The controller counts the Pods it stops as failed.
        failed += live.len() as i32;
        stop_pods = true;
    } else if !suspended {
        let wanted = parallelism.min(completions - succeeded);
        for _ in active..wanted {
            create_job_pod(&inner, &job, &namespace, &uid).await?;
        }
        if let Some(deadline) = deadline {
            let left = deadline.duration_since(now).unsigned_abs();
            requeue = Some(left.min(Duration::from_secs(5)) + Duration::from_millis(10));
        }
    }
    if stop_pods {
        requeue = None;
        let api: Api<Pod> = Api::namespaced(inner.client.clone(), &namespace);
        for pod in &live {
            gone_is_fine(api.delete(&pod.name_any(), &DeleteParams::default()).await)?;
        }
    }
    let finished = stop_pods;
    status.active = (!finished && active > 0).then_some(active);
    status.ready = Some(if finished { 0 } else { ready });
    status.succeeded = (succeeded > 0).then_some(succeeded);
    status.failed = (failed > 0).then_some(failed);
    status.terminating = Some(0);
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    if status != old {
        let jobs: Api<Job> = Api::namespaced(inner.client.clone(), &namespace);
        jobs.patch_status(&name, &patch_params(), &status_patch(&old, &status))
            .await?;
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

async fn create_job_pod(inner: &Inner, job: &Job, namespace: &str, uid: &str) -> kube::Result<()> {
    let Some(spec) = job.spec.as_ref() else {
        return Ok(());
    };
    let job_name = job.name_any();
    let mut metadata = spec.template.metadata.clone().unwrap_or_default();
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    for key in ["job-name", "batch.kubernetes.io/job-name"] {
        labels.insert(key.into(), job_name.clone());
    }
    for key in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
        labels.insert(key.into(), uid.to_string());
    }
    // generateName keeps at most 58 characters of the prefix.
    let name = format!(
        "{}-{}",
        truncate(&job_name, 57).trim_end_matches('-'),
        inner.random_suffix()
    );
    metadata.name = Some(name.clone());
    metadata.generate_name = None;
    metadata.namespace = Some(namespace.to_string());
    metadata.owner_references = owner_reference(job).map(|r| vec![r]);
    let pod = Pod {
        metadata,
        spec: spec.template.spec.clone(),
        status: None,
    };
    inner.note_created(uid, &name);
    let api: Api<Pod> = Api::namespaced(inner.client.clone(), namespace);
    api.create(&PostParams::default(), &pod).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// CronJob controller

async fn cron_job_controller(inner: Arc<Inner>) {
    let client = inner.client.clone();
    owning_controller::<CronJob, Job>(&client)
        .run(reconcile_cron_job, error_policy, inner)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn job_from_cron_job(cron_job: &CronJob, name: &str) -> Job {
    let template = cron_job.spec.job_template.clone();
    let mut metadata = template.metadata.unwrap_or_default();
    metadata.name = Some(name.to_string());
    metadata.namespace = cron_job.namespace();
    metadata.owner_references = owner_reference(cron_job).map(|r| vec![r]);
    Job {
        metadata,
        spec: template.spec,
        status: None,
    }
}

async fn reconcile_cron_job(cron_job: Arc<CronJob>, inner: Arc<Inner>) -> kube::Result<Action> {
    let spec = &cron_job.spec;
    let (Some(namespace), Some(uid)) = (cron_job.namespace(), cron_job.uid()) else {
        return Ok(Action::await_change());
    };
    if cron_job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = cron_job.name_any();
    let jobs_api: Api<Job> = Api::namespaced(inner.client.clone(), &namespace);
    let mut jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| controller_uid(&j.metadata) == Some(uid.as_str()))
        .collect();
    jobs.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let finished = |j: &Job| j.status.as_ref().is_some_and(job_finished);
    let succeeded = |j: &Job| {
        j.status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| c.type_ == "Complete" && c.status == "True")
    };

    let old = cron_job.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let now = now();
    let cron = match spec.schedule.parse::<croner::Cron>() {
        Ok(cron) => Some(cron),
        Err(error) => {
            tracing::warn!(%error, cron_job = %name, "local runner: unparsable schedule");
            None
        }
    };
    let utc = jiff::tz::TimeZone::UTC;
    let zoned_now = now.to_zoned(utc.clone());
    let mut next_run = None;
    if let Some(cron) = &cron {
        let since = old
            .last_schedule_time
            .as_ref()
            .or(cron_job.metadata.creation_timestamp.as_ref())
            .map(|t| t.0)
            .unwrap_or(now);
        let latest = cron
            .find_previous_occurrence(&zoned_now, true)
            .ok()
            .map(|z| z.timestamp())
            .filter(|t| *t > since);
        next_run = cron
            .find_next_occurrence(&zoned_now, false)
            .ok()
            .map(|z| z.timestamp());
        let too_late = |t: jiff::Timestamp| {
            spec.starting_deadline_seconds
                .is_some_and(|d| now.duration_since(t).as_secs() > d)
        };
        if let Some(scheduled) = latest.filter(|t| spec.suspend != Some(true) && !too_late(*t)) {
            let running: Vec<&Job> = jobs.iter().filter(|j| !finished(j)).collect();
            let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
            let go = match policy {
                "Forbid" => running.is_empty(),
                "Replace" => {
                    for job in &running {
                        let dp = DeleteParams::background();
                        gone_is_fine(jobs_api.delete(&job.name_any(), &dp).await)?;
                    }
                    true
                }
                _ => true,
            };
            if go {
                let job_name = format!("{}-{}", truncate(&name, 52), scheduled.as_second() / 60);
                let mut job = job_from_cron_job(&cron_job, &job_name);
                job.metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(
                        "batch.kubernetes.io/cronjob-scheduled-timestamp".into(),
                        scheduled.to_string(),
                    );
                match jobs_api.create(&PostParams::default(), &job).await {
                    Ok(job) => jobs.push(job),
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(e),
                }
                status.last_schedule_time = Some(Time(scheduled));
            } else if policy == "Forbid" {
                // Retried until it can start or the next run replaces it.
                next_run = Some(now + jiff::SignedDuration::from_secs(1));
            }
        }
    }

    // History limits: the oldest finished Jobs beyond them go.
    let keep_succeeded = spec.successful_jobs_history_limit.unwrap_or(3).max(0) as usize;
    let keep_failed = spec.failed_jobs_history_limit.unwrap_or(1).max(0) as usize;
    for (wanted_success, keep) in [(true, keep_succeeded), (false, keep_failed)] {
        let done: Vec<&Job> = jobs
            .iter()
            .filter(|j| finished(j) && succeeded(j) == wanted_success)
            .collect();
        for job in done.iter().take(done.len().saturating_sub(keep)) {
            let _ = jobs_api
                .delete(&job.name_any(), &DeleteParams::background())
                .await;
        }
    }

    let active: Vec<_> = jobs
        .iter()
        .filter(|j| !finished(j))
        .map(|j| k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("batch/v1".into()),
            kind: Some("Job".into()),
            name: j.metadata.name.clone(),
            namespace: j.metadata.namespace.clone(),
            uid: j.metadata.uid.clone(),
            resource_version: j.metadata.resource_version.clone(),
            ..Default::default()
        })
        .collect();
    status.active = (!active.is_empty()).then_some(active);
    if let Some(t) = jobs
        .iter()
        .filter(|j| succeeded(j))
        .filter_map(|j| j.status.as_ref()?.completion_time.as_ref())
        .map(|t| t.0)
        .max()
    {
        status.last_successful_time = Some(Time(t));
    }
    if status != old {
        let api: Api<CronJob> = Api::namespaced(inner.client.clone(), &namespace);
        api.patch_status(&name, &patch_params(), &status_patch(&old, &status))
            .await?;
    }
    Ok(match next_run {
        Some(t) => Action::requeue(
            t.duration_since(now)
                .unsigned_abs()
                .max(Duration::from_millis(200)),
        ),
        None => Action::await_change(),
    })
}

// ---------------------------------------------------------------------------------------
// Deployment controller

async fn deployment_controller(inner: Arc<Inner>) {
    let client = inner.client.clone();
    owning_controller::<Deployment, Pod>(&client)
        .run(reconcile_deployment, error_policy, inner)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// A stable hash of a Pod template, as the `pod-template-hash` label.
fn template_hash(template: &Value) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    template.to_string().hash(&mut hasher);
    encode(hasher.finish(), 10)
}

/// `n` characters of `x` in the API server's name alphabet (no vowels, no look-alikes).
fn encode(mut x: u64, n: usize) -> String {
    (0..n)
        .map(|_| {
            let c = ALPHANUMS[(x % ALPHANUMS.len() as u64) as usize] as char;
            x /= ALPHANUMS.len() as u64;
            c
        })
        .collect()
}

async fn reconcile_deployment(
    deployment: Arc<Deployment>,
    inner: Arc<Inner>,
) -> kube::Result<Action> {
    let spec = &deployment.spec;
    let (Some(namespace), Some(uid)) = (deployment.namespace(), deployment.uid()) else {
        return Ok(Action::await_change());
    };
    if deployment.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = deployment.name_any();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let hash = template_hash(&serde_json::to_value(&spec.template).unwrap_or_default());
    let pods_api: Api<Pod> = Api::namespaced(inner.client.clone(), &namespace);
    let pods = owned_pods(&inner.client, &namespace, &uid).await?;
    let unseen = inner.unseen_created(&uid, &pods) as i32;
    let current_hash = |p: &Pod| p.labels().get("pod-template-hash") == Some(&hash);
    let mut current: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && current_hash(p))
        .filter(|p| !matches!(pod_phase(p), "Succeeded" | "Failed"))
        .collect();
    // Everything else goes: old templates, ended Pods, and Pods beyond the replica count.
    let extra = (current.len() as i32 + unseen - replicas).max(0) as usize;
    current.truncate(current.len() - extra.min(current.len()));
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !current.iter().any(|c| c.uid() == p.uid()))
    {
        gone_is_fine(
            pods_api
                .delete(&pod.name_any(), &DeleteParams::default())
                .await,
        )?;
    }
    let mut count = current.len() as i32 + unseen;
    while count < replicas {
        let mut metadata = spec.template.metadata.clone().unwrap_or_default();
        metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("pod-template-hash".into(), hash.clone());
        let pod_name = format!("{}-{hash}-{}", truncate(&name, 46), inner.random_suffix());
        metadata.name = Some(pod_name.clone());
        metadata.namespace = Some(namespace.clone());
        metadata.owner_references = owner_reference(deployment.as_ref()).map(|r| vec![r]);
        inner.note_created(&uid, &pod_name);
        pods_api
            .create(
                &PostParams::default(),
                &Pod {
                    metadata,
                    spec: spec.template.spec.clone(),
                    status: None,
                },
            )
            .await?;
        count += 1;
    }
    let ready = current.iter().filter(|p| pod_ready(p)).count() as i32;
    let available = ready >= replicas;
    let replica_set = format!("{name}-{hash}");
    let (progress_reason, progress_message) = if available {
        (
            "NewReplicaSetAvailable",
            format!("ReplicaSet {replica_set:?} has successfully progressed."),
        )
    } else {
        (
            "ReplicaSetUpdated",
            format!("ReplicaSet {replica_set:?} is progressing."),
        )
    };
    let (available_status, available_reason, available_message) = if available {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    let old = deployment.status.clone().unwrap_or_default();
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        let previous = old_conditions
            .iter()
            .find(|c| c.type_.as_deref() == Some(type_));
        let unchanged = previous.is_some_and(|c| {
            c.status.as_deref() == Some(status) && c.reason.as_deref() == Some(reason)
        });
        let transition = previous
            .filter(|c| c.status.as_deref() == Some(status))
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now()));
        let update = previous
            .filter(|_| unchanged)
            .and_then(|c| c.last_update_time.clone())
            .unwrap_or(Time(now()));
        k8s_openapi::api::apps::v1::DeploymentCondition {
            type_: Some(type_.into()),
            status: Some(status.into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: Some(transition),
            last_update_time: Some(update),
        }
    };
    let mut status = old.clone();
    status.observed_generation = deployment.metadata.generation;
    status.replicas = Some(count);
    status.updated_replicas = Some(count);
    status.ready_replicas = (ready > 0).then_some(ready);
    status.available_replicas = (ready > 0).then_some(ready);
    status.unavailable_replicas = (count > ready).then_some(count - ready);
    status.conditions = Some(vec![
        condition(
            "Available",
            available_status,
            available_reason,
            available_message,
        ),
        condition("Progressing", "True", progress_reason, &progress_message),
    ]);
    if status != old {
        let api: Api<Deployment> = Api::namespaced(inner.client.clone(), &namespace);
        api.patch_status(&name, &patch_params(), &status_patch(&old, &status))
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(10)))
}

// ---------------------------------------------------------------------------------------
// Kubelet

async fn kubelet_loop(inner: Arc<Inner>) {
    let api: Api<Pod> = Api::all(inner.client.clone());
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(pod)) => {
                listed.extend(pod.uid());
                pod_changed(&inner, pod);
            }
            Ok(Event::Apply(pod)) => pod_changed(&inner, pod),
            Ok(Event::Delete(pod)) => pod_gone(&inner, pod.uid().as_deref().unwrap_or_default()),
            Ok(Event::InitDone) => {
                // Pods deleted while the watch was down.
                let gone: Vec<String> = lock(&inner.pods)
                    .keys()
                    .filter(|uid| !listed.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    pod_gone(&inner, &uid);
                }
            }
            Err(error) => tracing::debug!(%error, "local runner: pod watch error"),
        }
    }
}

fn pod_gone(inner: &Inner, uid: &str) {
    if let Some(handle) = lock(&inner.pods).get_mut(uid) {
        let _ = handle.cancel.send(true);
        if let Some(task) = handle.task.take() {
            task.abort();
        }
    }
}

fn pod_changed(inner: &Arc<Inner>, pod: Pod) {
    let Some(uid) = pod.uid() else { return };
    if pod.metadata.deletion_timestamp.is_some() {
        pod_gone(inner, &uid);
        return;
    }
    let mut pods = lock(&inner.pods);
    if pods.contains_key(&uid) || pod_phase(&pod) != "Pending" {
        // Ours already, or run by someone before us (a Pod runs once).
        return;
    }
    let (cancel, cancelled) = watch::channel(false);
    let task = tokio::spawn(run_pod(inner.clone(), pod, cancelled));
    pods.insert(
        uid,
        PodHandle {
            cancel,
            task: Some(task.abort_handle()),
        },
    );
}

/// Runs one Pod until it ends or is deleted (then the future is dropped and its processes
/// killed).
async fn run_pod(inner: Arc<Inner>, pod: Pod, mut cancelled: watch::Receiver<bool>) {
    let run = async {
        let mut kubelet = PodRun::new(inner.clone(), &pod);
        kubelet.run().await
    };
    tokio::select! {
        _ = run => {}
        _ = cancelled.wait_for(|c| *c) => {}
    }
}

/// Why a container cannot start yet, as the kubelet reports it.
struct ConfigError {
    reason: &'static str,
    message: String,
}

impl ConfigError {
    fn config(message: String) -> ConfigError {
        ConfigError {
            reason: "CreateContainerConfigError",
            message,
        }
    }
}

enum PrepareError {
    Config(ConfigError),
    Api(kube::Error),
}

impl From<kube::Error> for PrepareError {
    fn from(e: kube::Error) -> Self {
        PrepareError::Api(e)
    }
}

/// A container made ready to start as a process.
#[derive(Clone, Debug)]
struct Prepared {
    name: String,
    image: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    log: PathBuf,
    termination_file: PathBuf,
    fallback_to_logs: bool,
}

/// Kills a process group when dropped (the process ended, the Pod was deleted or the
/// runner stopped); a process that had not ended is recorded as killed (exit code 137).
struct GroupGuard {
    inner: Arc<Inner>,
    group: i32,
    index: usize,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if lock(&self.inner.groups).remove(&self.group) {
            kill_group(self.group);
        }
        if let Some(process) = lock(&self.inner.started).get_mut(self.index) {
            process.exit_code.get_or_insert(128 + libc::SIGKILL);
        }
    }
}

/// Secrets and ConfigMaps read for one Pod, each once.
#[derive(Default)]
struct Sources {
    secrets: HashMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    config_maps: HashMap<String, Option<BTreeMap<String, Vec<u8>>>>,
}

impl Sources {
    async fn secret(
        &mut self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> kube::Result<Option<&BTreeMap<String, Vec<u8>>>> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let data = api.get_opt(name).await?.map(|s| {
                let mut data: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                for (k, v) in s.string_data.unwrap_or_default() {
                    data.insert(k, v.into_bytes());
                }
                data
            });
            self.secrets.insert(name.to_string(), data);
        }
        Ok(self.secrets[name].as_ref())
    }

    async fn config_map(
        &mut self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> kube::Result<Option<&BTreeMap<String, Vec<u8>>>> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let data = api.get_opt(name).await?.map(|c| {
                let mut data: BTreeMap<String, Vec<u8>> = c
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                for (k, v) in c.binary_data.unwrap_or_default() {
                    data.insert(k, v.0);
                }
                data
            });
            self.config_maps.insert(name.to_string(), data);
        }
        Ok(self.config_maps[name].as_ref())
    }

    /// `(kind, name)` for messages: `secret "x" not found`.
    async fn lookup(
        &mut self,
        client: &Client,
        namespace: &str,
        secret: bool,
        name: &str,
    ) -> kube::Result<Option<&BTreeMap<String, Vec<u8>>>> {
        if secret {
            self.secret(client, namespace, name).await
        } else {
            self.config_map(client, namespace, name).await
        }
    }
}

/// One Pod's run and the status the kubelet reports for it.
struct PodRun {
    inner: Arc<Inner>,
    pod: Pod,
    namespace: String,
    name: String,
    dir: PathBuf,
    start_time: Option<jiff::Timestamp>,
    phase: &'static str,
    init_statuses: Vec<Value>,
    statuses: Vec<Value>,
}

fn waiting(container: &Container, reason: &str, message: Option<&str>, restarts: i32) -> Value {
    json!({
        "name": container.name, "image": container.image.clone().unwrap_or_default(),
        "imageID": "", "ready": false, "restartCount": restarts, "started": false,
        "state": {"waiting": {"reason": reason, "message": message}},
    })
}

impl PodRun {
    fn new(inner: Arc<Inner>, pod: &Pod) -> PodRun {
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let dir = inner.pod_dir(&namespace, &name);
        let spec = pod.spec.clone().unwrap_or_default();
        PodRun {
            init_statuses: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| waiting(c, "PodInitializing", None, 0))
                .collect(),
            statuses: spec
                .containers
                .iter()
                .map(|c| waiting(c, "ContainerCreating", None, 0))
                .collect(),
            inner,
            pod: pod.clone(),
            namespace,
            name,
            dir,
            start_time: None,
            phase: "Pending",
        }
    }

    fn spec(&self) -> k8s_openapi::api::core::v1::PodSpec {
        self.pod.spec.clone().unwrap_or_default()
    }

    /// Write the whole status; `false` when the Pod is gone.
    async fn report(&self) -> bool {
        let all_ready = self.phase == "Running" && self.statuses.iter().all(|s| s["ready"] == true);
        let initialized = self
            .init_statuses
            .iter()
            .all(|s| s["state"]["terminated"]["exitCode"] == 0);
        let time = now().to_string();
        let condition = |type_: &str, ok: bool| json!({"type": type_, "status": if ok { "True" } else { "False" }, "lastTransitionTime": time});
        let status = json!({
            "phase": self.phase,
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "hostIP": "127.0.0.1",
            "startTime": self.start_time.map(|t| t.to_string()),
            "conditions": [
                condition("PodScheduled", true),
                condition("Initialized", initialized),
                condition("ContainersReady", all_ready),
                condition("Ready", all_ready),
            ],
            "initContainerStatuses": self.init_statuses,
            "containerStatuses": self.statuses,
        });
        let api: Api<Pod> = Api::namespaced(self.inner.client.clone(), &self.namespace);
        match api
            .patch_status(
                &self.name,
                &patch_params(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
        {
            Ok(_) => true,
            Err(kube::Error::Api(s)) if s.code == 404 => false,
            Err(error) => {
                tracing::debug!(%error, pod = %self.name, "local runner: pod status not written");
                true
            }
        }
    }

    async fn run(&mut self) {
        let spec = self.spec();
        let images_ours = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .all(|c| {
                c.image
                    .as_deref()
                    .is_some_and(|i| self.inner.is_own_image(i))
            });
        let restart = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        if !images_ours || spec.containers.is_empty() {
            self.simulate(restart != "Always").await;
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Err(error) = std::fs::create_dir_all(&self.dir) {
            tracing::warn!(%error, "local runner: cannot create the pod directory");
            return;
        }
        let mut sources = Sources::default();
        let (init, main) = loop {
            match self.prepare(&mut sources).await {
                Ok(prepared) => break prepared,
                Err(PrepareError::Config(error)) => {
                    for (status, container) in self.statuses.iter_mut().zip(&spec.containers) {
                        *status = waiting(container, error.reason, Some(&error.message), 0);
                    }
                    if !self.report().await {
                        return;
                    }
                }
                Err(PrepareError::Api(error)) => {
                    tracing::debug!(%error, "local runner: reading the pod's sources failed");
                }
            }
            // A kubelet retries until the Secret or ConfigMap appears.
            tokio::time::sleep(Duration::from_secs(1)).await;
            sources = Sources::default();
        };
        self.start_time = Some(now());
        for (i, container) in init.iter().enumerate() {
            self.phase = "Pending";
            self.init_statuses[i] = running_status(container, now(), 0, false);
            if !self.report().await {
                return;
            }
            let (code, status) = self.run_process(container, 0).await;
            self.init_statuses[i] = status;
            if code != 0 {
                self.phase = "Failed";
                self.report().await;
                return;
            }
        }
        self.phase = "Running";
        let started = now();
        for (i, container) in main.iter().enumerate() {
            self.statuses[i] = running_status(container, started, 0, true);
        }
        if !self.report().await {
            return;
        }
        // The main containers run together; each one's end is reported as it comes.
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut runs = futures::stream::FuturesUnordered::new();
        for (i, container) in main.iter().cloned().enumerate() {
            let restart = restart.clone();
            let done = done_tx.clone();
            let inner = self.inner.clone();
            let (namespace, pod) = (self.namespace.clone(), self.name.clone());
            runs.push(async move {
                let mut restarts = 0;
                loop {
                    let (code, status) =
                        run_process(&inner, &namespace, &pod, &container, restarts).await;
                    let again = restart == "Always" || (restart == "OnFailure" && code != 0);
                    let _ = done.send((i, status));
                    if !again {
                        return code;
                    }
                    // CrashLoopBackOff, short: 1 s, 2 s, 4 s… up to 10 s.
                    tokio::time::sleep(
                        Duration::from_secs(1 << restarts.min(3)).min(Duration::from_secs(10)),
                    )
                    .await;
                    restarts += 1;
                    let _ = done.send((i, running_status(&container, now(), restarts, true)));
                }
            });
        }
        drop(done_tx);
        let mut codes = Vec::new();
        loop {
            tokio::select! {
                Some((i, status)) = done_rx.recv() => {
                    self.statuses[i] = status;
                    if !self.report().await {
                        return;
                    }
                }
                Some(code) = runs.next() => codes.push(code),
                else => break,
            }
        }
        self.phase = if codes.iter().all(|c| *c == 0) {
            "Succeeded"
        } else {
            "Failed"
        };
        for status in &mut self.statuses {
            status["ready"] = json!(false);
        }
        self.report().await;
    }

    async fn run_process(&self, container: &Prepared, restarts: i32) -> (i32, Value) {
        run_process(
            &self.inner,
            &self.namespace,
            &self.name,
            container,
            restarts,
        )
        .await
    }

    /// A Pod with a foreign image: Running and Ready, then (unless it restarts always)
    /// Succeeded.
    async fn simulate(&mut self, completes: bool) {
        let spec = self.spec();
        let started = now();
        self.start_time = Some(started);
        self.phase = "Running";
        for (i, container) in spec.init_containers.iter().flatten().enumerate() {
            self.init_statuses[i] = terminated_status(
                container.name.as_str(),
                container.image.as_deref().unwrap_or_default(),
                0,
                started,
                started,
                "",
                0,
            );
        }
        for (i, container) in spec.containers.iter().enumerate() {
            self.statuses[i] = json!({
                "name": container.name, "image": container.image,
                "imageID": image_id(container.image.as_deref().unwrap_or_default()),
                "ready": true, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": started.to_string()}},
            });
        }
        if !self.report().await || !completes {
            return;
        }
        let finished = now();
        for (i, container) in spec.containers.iter().enumerate() {
            self.statuses[i] = terminated_status(
                &container.name,
                container.image.as_deref().unwrap_or_default(),
                0,
                started,
                finished,
                "",
                0,
            );
        }
        self.phase = "Succeeded";
        self.report().await;
    }

    /// Volumes on disk and every container's command line and environment; a missing
    /// Secret or ConfigMap is a [`ConfigError`].
    async fn prepare(
        &self,
        sources: &mut Sources,
    ) -> Result<(Vec<Prepared>, Vec<Prepared>), PrepareError> {
        let spec = self.spec();
        let client = &self.inner.client;
        let ns = &self.namespace;
        let volumes_dir = self.dir.join("volumes");
        let mut volume_paths: HashMap<String, PathBuf> = HashMap::new();
        for volume in spec.volumes.iter().flatten() {
            let mut path = volumes_dir.join(&volume.name);
            let mount_error = |what: String| {
                PrepareError::Config(ConfigError {
                    reason: "ContainerCreating",
                    message: format!(
                        "MountVolume.SetUp failed for volume {:?} : {what}",
                        volume.name
                    ),
                })
            };
            let mut files: Vec<(String, Vec<u8>)> = Vec::new();
            if let Some(claim) = &volume.persistent_volume_claim {
                path = self.inner.claim_dir(ns, &claim.claim_name);
            } else if let Some(host) = &volume.host_path {
                // Never the machine's own directories: a stand-in under the work dir.
                let relative = Path::new(host.path.trim_start_matches('/'));
                if !relative
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    path = self.inner.options.work_dir.join("host").join(relative);
                }
            } else if let Some(secret) = &volume.secret {
                let name = secret.secret_name.clone().unwrap_or_default();
                match sources.secret(client, ns, &name).await? {
                    Some(data) => files.extend(select_items(data, secret.items.as_deref())),
                    None if secret.optional == Some(true) => {}
                    None => return Err(mount_error(format!("secret {name:?} not found"))),
                }
            } else if let Some(config_map) = &volume.config_map {
                let name = config_map.name.clone();
                match sources.config_map(client, ns, &name).await? {
                    Some(data) => files.extend(select_items(data, config_map.items.as_deref())),
                    None if config_map.optional == Some(true) => {}
                    None => return Err(mount_error(format!("configmap {name:?} not found"))),
                }
            } else if let Some(projected) = &volume.projected {
                for source in projected.sources.iter().flatten() {
                    if let Some(secret) = &source.secret {
                        let name = secret.name.clone();
                        match sources.secret(client, ns, &name).await? {
                            Some(data) => files.extend(select_items(data, secret.items.as_deref())),
                            None if secret.optional == Some(true) => {}
                            None => return Err(mount_error(format!("secret {name:?} not found"))),
                        }
                    }
                    if let Some(config_map) = &source.config_map {
                        let name = config_map.name.clone();
                        match sources.config_map(client, ns, &name).await? {
                            Some(data) => {
                                files.extend(select_items(data, config_map.items.as_deref()))
                            }
                            None if config_map.optional == Some(true) => {}
                            None => {
                                return Err(mount_error(format!("configmap {name:?} not found")));
                            }
                        }
                    }
                }
            }
            // emptyDir and anything else: an empty directory.
            std::fs::create_dir_all(&path).map_err(|e| mount_error(e.to_string()))?;
            for (file, bytes) in files {
                // Keys and item paths are relative; refuse anything that climbs out.
                let relative = Path::new(&file);
                if relative.is_absolute()
                    || relative
                        .components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    continue;
                }
                let target = path.join(relative);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| mount_error(e.to_string()))?;
                }
                std::fs::write(&target, bytes).map_err(|e| mount_error(e.to_string()))?;
            }
            volume_paths.insert(volume.name.clone(), path);
        }
        let mut init = Vec::new();
        for container in spec.init_containers.iter().flatten() {
            init.push(
                self.prepare_container(container, &volume_paths, sources)
                    .await?,
            );
        }
        let mut main = Vec::new();
        for container in &spec.containers {
            main.push(
                self.prepare_container(container, &volume_paths, sources)
                    .await?,
            );
        }
        Ok((init, main))
    }

    async fn prepare_container(
        &self,
        container: &Container,
        volume_paths: &HashMap<String, PathBuf>,
        sources: &mut Sources,
    ) -> Result<Prepared, PrepareError> {
        let client = &self.inner.client;
        let ns = &self.namespace;
        let config_error = |m: String| PrepareError::Config(ConfigError::config(m));
        // Container paths -> local paths.
        let mut mounts: Vec<(String, String)> = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let Some(base) = volume_paths.get(&mount.name) else {
                return Err(config_error(format!(
                    "cannot find volume {:?} to mount into container {:?}",
                    mount.name, container.name
                )));
            };
            let local = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => {
                    let local = base.join(sub);
                    let _ = std::fs::create_dir_all(&local);
                    local
                }
                None => base.clone(),
            };
            let path = mount.mount_path.trim_end_matches('/');
            if !path.is_empty() {
                mounts.push((path.to_string(), local.to_string_lossy().into_owned()));
            }
        }
        let termination_file = self.dir.join(format!("{}.termination-log", container.name));
        let _ = std::fs::write(&termination_file, b"");
        let termination_path = container
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        mounts.push((
            termination_path,
            termination_file.to_string_lossy().into_owned(),
        ));
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));

        let mut env = Environment::default();
        if let Ok(path) = std::env::var("PATH") {
            env.set("PATH", path);
        }
        env.set("HOSTNAME", self.name.clone());
        env.set("HOME", self.dir.to_string_lossy().into_owned());
        // A kubelet bind-mounts the termination-message file at its path; a process here
        // cannot see that path, so our workers are told where it is instead.
        env.set(
            "TERMINATION_MESSAGE_PATH",
            termination_file.to_string_lossy().into_owned(),
        );
        for (k, v) in &self.inner.options.extra_env {
            env.set(k, v.clone());
        }
        if let Some((_, tmp)) = mounts.iter().find(|(path, _)| path == "/tmp") {
            env.set("TMPDIR", tmp.clone());
        }
        for from in container.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            let (secret, name, optional) = match (&from.secret_ref, &from.config_map_ref) {
                (Some(s), _) => (true, s.name.clone(), s.optional == Some(true)),
                (None, Some(c)) => (false, c.name.clone(), c.optional == Some(true)),
                (None, None) => continue,
            };
            match sources.lookup(client, ns, secret, &name).await? {
                Some(data) => {
                    for (key, value) in data {
                        env.set(
                            &format!("{prefix}{key}"),
                            rewrite(&String::from_utf8_lossy(value), &mounts),
                        );
                    }
                }
                None if optional => {}
                None => {
                    let kind = if secret { "secret" } else { "configmap" };
                    return Err(config_error(format!("{kind} {name:?} not found")));
                }
            }
        }
        for var in container.env.iter().flatten() {
            let value = if let Some(value) = &var.value {
                expand(&rewrite(value, &mounts), &env)
            } else if let Some(from) = &var.value_from {
                let key_ref = match (&from.secret_key_ref, &from.config_map_key_ref) {
                    (Some(s), _) => Some((
                        true,
                        s.name.clone(),
                        s.key.clone(),
                        s.optional == Some(true),
                    )),
                    (None, Some(c)) => Some((
                        false,
                        c.name.clone(),
                        c.key.clone(),
                        c.optional == Some(true),
                    )),
                    (None, None) => None,
                };
                if let Some((secret, name, key, optional)) = key_ref {
                    let (kind, title) = if secret {
                        ("secret", "Secret")
                    } else {
                        ("configmap", "ConfigMap")
                    };
                    match sources.lookup(client, ns, secret, &name).await? {
                        Some(data) => match data.get(&key) {
                            Some(v) => rewrite(&String::from_utf8_lossy(v), &mounts),
                            None if optional => continue,
                            None => {
                                return Err(config_error(format!(
                                    "couldn't find key {key} in {title} {ns}/{name}"
                                )));
                            }
                        },
                        None if optional => continue,
                        None => return Err(config_error(format!("{kind} {name:?} not found"))),
                    }
                } else if let Some(field) = &from.field_ref {
                    match field.field_path.as_str() {
                        "metadata.name" => self.name.clone(),
                        "metadata.namespace" => self.namespace.clone(),
                        "metadata.uid" => self.pod.uid().unwrap_or_default(),
                        "spec.nodeName" => "local".into(),
                        "spec.serviceAccountName" => self
                            .spec()
                            .service_account_name
                            .unwrap_or_else(|| "default".into()),
                        "status.podIP" | "status.hostIP" => "127.0.0.1".into(),
                        path => {
                            let label = |prefix: &str| {
                                path.strip_prefix(prefix)
                                    .and_then(|k| k.strip_prefix("['"))
                                    .and_then(|k| k.strip_suffix("']"))
                            };
                            if let Some(k) = label("metadata.labels") {
                                self.pod.labels().get(k).cloned().unwrap_or_default()
                            } else if let Some(k) = label("metadata.annotations") {
                                self.pod.annotations().get(k).cloned().unwrap_or_default()
                            } else {
                                return Err(config_error(format!("unsupported fieldRef {path:?}")));
                            }
                        }
                    }
                } else {
                    // resourceFieldRef and the like: not emulated.
                    String::new()
                }
            } else {
                String::new()
            };
            env.set(&var.name, value);
        }

        let command = container.command.clone().unwrap_or_default();
        let Some(program) = command.first() else {
            return Err(PrepareError::Config(ConfigError {
                reason: "CreateContainerError",
                message: format!(
                    "container {:?} has no command: the local runner cannot know the image's entrypoint",
                    container.name
                ),
            }));
        };
        let mapped = Path::new(program)
            .file_name()
            .and_then(|n| {
                self.inner
                    .options
                    .binaries
                    .get(n.to_string_lossy().as_ref())
            })
            .map(|p| p.to_string_lossy().into_owned());
        let mut argv = vec![mapped.unwrap_or_else(|| expand(&rewrite(program, &mounts), &env))];
        for arg in command
            .iter()
            .skip(1)
            .chain(container.args.iter().flatten())
        {
            argv.push(own_address(&expand(&rewrite(arg, &mounts), &env)));
        }
        let cwd = match container.working_dir.as_deref().filter(|d| !d.is_empty()) {
            Some(dir) => {
                let local = PathBuf::from(rewrite(dir, &mounts));
                let _ = std::fs::create_dir_all(&local);
                local
            }
            None => self.dir.clone(),
        };
        Ok(Prepared {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            argv,
            env: env.vars,
            cwd,
            log: self.dir.join(format!("{}.log", container.name)),
            termination_file,
            fallback_to_logs: container.termination_message_policy.as_deref()
                == Some("FallbackToLogsOnError"),
        })
    }
}

fn running_status(
    container: &Prepared,
    started: jiff::Timestamp,
    restarts: i32,
    ready: bool,
) -> Value {
    json!({
        "name": container.name, "image": container.image, "imageID": image_id(&container.image),
        "containerID": format!("local://{}", container.name),
        "ready": ready, "started": true, "restartCount": restarts,
        "state": {"running": {"startedAt": started.to_string()}},
    })
}

fn terminated_status(
    name: &str,
    image: &str,
    code: i32,
    started: jiff::Timestamp,
    finished: jiff::Timestamp,
    message: &str,
    restarts: i32,
) -> Value {
    let reason = if code == 0 { "Completed" } else { "Error" };
    let mut terminated = json!({
        "exitCode": code, "reason": reason,
        "startedAt": started.to_string(), "finishedAt": finished.to_string(),
    });
    if !message.is_empty() {
        terminated["message"] = json!(message);
    }
    json!({
        "name": name, "image": image, "imageID": image_id(image), "ready": false, "started": false,
        "restartCount": restarts, "state": {"terminated": terminated},
    })
}

/// The `imageID` a kubelet reports: the pulled manifest's digest. Only an image pinned by
/// digest has one here (nothing is pulled, so a tag resolves to nothing).
fn image_id(image: &str) -> String {
    match image.rsplit_once('@') {
        Some((_, digest)) if digest.starts_with("sha256:") => format!("docker-pullable://{image}"),
        _ => String::new(),
    }
}

/// Start one container's process, wait for it, and return its exit code and terminated
/// status. The process group dies with the returned future.
async fn run_process(
    inner: &Arc<Inner>,
    namespace: &str,
    pod: &str,
    container: &Prepared,
    restarts: i32,
) -> (i32, Value) {
    let started = now();
    let index = {
        let mut all = lock(&inner.started);
        all.push(StartedProcess {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            container: container.name.clone(),
            argv: container.argv.clone(),
            env: container.env.clone(),
            exit_code: None,
        });
        all.len() - 1
    };
    let finish = |code: i32, message: String| {
        lock(&inner.started)[index].exit_code = Some(code);
        let status = terminated_status(
            &container.name,
            &container.image,
            code,
            started,
            now(),
            &message,
            restarts,
        );
        (code, status)
    };
    let log = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&container.log)
        .and_then(|f| Ok((f.try_clone()?, f)))
    {
        Ok(files) => files,
        Err(e) => return finish(128, format!("cannot open the log: {e}")),
    };
    let mut command = tokio::process::Command::new(&container.argv[0]);
    command
        .args(&container.argv[1..])
        .env_clear()
        .envs(container.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&container.cwd)
        .stdin(Stdio::null())
        .stdout(log.0)
        .stderr(log.1)
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        // What a container runtime says when the entrypoint cannot start.
        Err(e) => return finish(128, format!("failed to start {:?}: {e}", container.argv[0])),
    };
    let _guard = child.id().map(|pid| {
        let group = pid as i32;
        lock(&inner.groups).insert(group);
        GroupGuard {
            inner: inner.clone(),
            group,
            index,
        }
    });
    let code = match child.wait().await {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(128)
        }
        Err(_) => 128,
    };
    let mut message = read_capped(&container.termination_file, 4096);
    if message.is_empty() && code != 0 && container.fallback_to_logs {
        message = log_tail(&container.log);
    }
    finish(code, message)
}

fn read_capped(path: &Path, max: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned()
}

/// The kubelet's fallback message: the last 80 lines of the log, at most 2 KiB of them.
fn log_tail(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let mut tail = lines[lines.len().saturating_sub(80)..].join("\n");
    if tail.len() > 2048 {
        let mut cut = tail.len() - 2048;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = tail[cut..].to_string();
    }
    tail
}

/// The files of a Secret or ConfigMap volume: every key, or only `items` (key -> path).
fn select_items(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) -> Vec<(String, Vec<u8>)> {
    match items {
        Some(items) if !items.is_empty() => items
            .iter()
            .filter_map(|i| Some((i.path.clone(), data.get(&i.key)?.clone())))
            .collect(),
        _ => data.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

/// A process environment in definition order; setting a name again replaces its value.
#[derive(Default)]
struct Environment {
    vars: Vec<(String, String)>,
}

impl Environment {
    fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(var) => var.1 = value,
            None => self.vars.push((name.to_string(), value)),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, `$$` is a literal `$`,
/// anything else (an undefined variable, an unclosed reference) stays as written.
fn expand(input: &str, env: &Environment) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(reference) = after.strip_prefix('(') {
            match reference.find(')') {
                Some(end) => {
                    let name = &reference[..end];
                    match env.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &reference[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = reference;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn path_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Replace container paths (`mounts`: container path -> local path, longest first) where
/// they appear as whole path prefixes: `/data/x` and `--dir=/data` but not `/database` or
/// `/var/data`.
fn rewrite(input: &str, mounts: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut previous: Option<char> = None;
    'scan: while i < input.len() {
        let at = &input[i..];
        if previous.is_none_or(|c| !path_char(c)) {
            for (path, local) in mounts {
                if let Some(after) = at.strip_prefix(path.as_str())
                    && after.chars().next().is_none_or(|c| !path_char(c))
                {
                    out.push_str(local);
                    i += path.len();
                    previous = path.chars().last();
                    continue 'scan;
                }
            }
        }
        let c = at.chars().next().expect("not at the end");
        out.push(c);
        previous = Some(c);
        i += c.len_utf8();
    }
    out
}

/// `0.0.0.0:PORT` as a free port on 127.0.0.1 (see the module doc); anything else as is.
fn own_address(arg: &str) -> String {
    let Some(port) = arg.strip_prefix("0.0.0.0:") else {
        return arg.to_string();
    };
    if port.parse::<u16>().is_err() {
        return arg.to_string();
    }
    format!("127.0.0.1:{}", crate::ports::unused_port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes() {
        let mut env = Environment::default();
        env.set("A", "one".into());
        env.set("B", "$(A)".into());
        assert_eq!(expand("x-$(A)-$(B)", &env), "x-one-$(A)");
        assert_eq!(expand("$$(A) $(MISSING) $(A", &env), "$(A) $(MISSING) $(A");
        assert_eq!(expand("cost $5 $", &env), "cost $5 $");
    }

    #[test]
    fn rewriting_replaces_whole_path_prefixes_only() {
        let mounts = vec![
            ("/etc/secret".to_string(), "/w/s".to_string()),
            ("/tmp".to_string(), "/w/tmp".to_string()),
        ];
        assert_eq!(rewrite("--key=/etc/secret/key", &mounts), "--key=/w/s/key");
        assert_eq!(rewrite("/tmp", &mounts), "/w/tmp");
        assert_eq!(
            rewrite("/var/tmp /tmpfile /tmp/x:/tmp", &mounts),
            "/var/tmp /tmpfile /w/tmp/x:/w/tmp"
        );
        assert_eq!(rewrite("file:///tmp/a", &mounts), "file:///w/tmp/a");
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("kubelet-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("c.log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, text).unwrap();
        let tail = log_tail(&log);
        assert!(
            tail.starts_with("line 20\n") && tail.ends_with("line 99"),
            "{tail}"
        );
        std::fs::write(&log, "x".repeat(5000)).unwrap();
        assert_eq!(log_tail(&log).len(), 2048);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn every_interface_binds_get_a_loopback_port_of_their_own() {
        let first = super::own_address("0.0.0.0:8080");
        let second = super::own_address("0.0.0.0:8080");
        assert!(first.starts_with("127.0.0.1:"), "{first}");
        assert_ne!(first, "127.0.0.1:8080");
        assert_ne!(first, second);
        assert_eq!(super::own_address("--listen"), "--listen");
        assert_eq!(super::own_address("0.0.0.0:http"), "0.0.0.0:http");
    }
}
