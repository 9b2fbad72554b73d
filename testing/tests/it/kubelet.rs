//! The local Job runner against the API server emulator, with a shell script standing in
//! for our worker binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use stellaops_testing::apiserver::{Emulator, EmulatorOptions};
use stellaops_testing::kubelet::{LocalRunner, RunnerOptions, StartedProcess};

const IMAGE: &str = "ghcr.io/stella-ops/stellaops:dev";
const NS: &str = "tenant-a";

/// The "worker": does what its first argument says.
const WORKER: &str = r#"#!/bin/sh
mode="$1"; shift
echo "args: $*"
case "$mode" in
  report)
    env | sort
    for arg in "$@"; do
      case "$arg" in
        --key=*) echo "key: $(cat "${arg#--key=}")" ;;
        --termination=*) printf '{"ok":true,"pod":"%s"}' "$POD_NAME" > "${arg#--termination=}" ;;
        --out=*) echo done > "${arg#--out=}" ;;
      esac
    done
    ;;
  fail)
    echo "boom: the scan failed" >&2
    exit 3
    ;;
  sleep)
    echo "pid: $$"
    sleep "$1"
    ;;
esac
"#;

struct Setup {
    emulator: Emulator,
    client: Client,
    runner: LocalRunner,
    dir: PathBuf,
    worker: PathBuf,
}

async fn setup(name: &str) -> Setup {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let emulator = Emulator::start(EmulatorOptions {
        authorize: false,
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    let client = emulator.client(&emulator.admin_token()).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": NS}})),
        )
        .await
        .expect("namespace");
    let dir = std::env::temp_dir().join(format!("stellaops-kubelet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin")).expect("work dir");
    let worker = dir.join("bin/worker.sh");
    std::fs::write(&worker, WORKER).expect("write worker");
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let runner = LocalRunner::start(
        client.clone(),
        RunnerOptions {
            own_images: vec!["ghcr.io/stella-ops/stellaops".into()],
            binaries: [("stellaops-worker".to_string(), worker.clone())].into(),
            extra_env: vec![
                ("FROM_RUNNER".into(), "extra".into()),
                ("LEVEL".into(), "overridden by the pod".into()),
            ],
            work_dir: dir.join("work"),
        },
    );
    Setup {
        emulator,
        client,
        runner,
        dir,
        worker,
    }
}

impl Setup {
    async fn finish(self) {
        self.runner.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn create<K>(&self, object: Value) -> K
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        self.api::<K>()
            .create(&PostParams::default(), &from_json(object))
            .await
            .expect("create")
    }

    async fn pods_of(&self, job: &str) -> Vec<Pod> {
        let mut pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .expect("list pods")
            .items;
        pods.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
        pods
    }

    fn processes_of(&self, job: &str) -> Vec<StartedProcess> {
        self.runner
            .started()
            .into_iter()
            .filter(|p| p.pod.starts_with(&format!("{job}-")))
            .collect()
    }

    /// The Job once its `Complete` or `Failed` condition is true.
    async fn finished_job(&self, name: &str) -> Job {
        let jobs = self.api::<Job>();
        wait_for(&format!("Job {name} to finish"), || async {
            let job = jobs.get_opt(name).await.ok()??;
            job.status
                .as_ref()?
                .conditions
                .iter()
                .flatten()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
                .then_some(job)
        })
        .await
    }
}

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("valid object")
}

async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn job(name: &str, pod_spec: Value, extra: Value) -> Value {
    let mut spec = json!({"template": {"metadata": {"labels": {"app": "scan"}}, "spec": pod_spec}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

fn worker_pod(args: &[&str]) -> Value {
    json!({
        "restartPolicy": "Never",
        "containers": [{
            "name": "worker", "image": IMAGE, "command": ["stellaops-worker"], "args": args,
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }],
    })
}

fn condition<'a>(
    job: &'a Job,
    type_: &str,
) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn terminated(pod: &Pod) -> Value {
    let status = serde_json::to_value(pod.status.as_ref().expect("pod status")).unwrap();
    status["containerStatuses"][0]["state"]["terminated"].clone()
}

#[tokio::test]
async fn a_job_pod_runs_once_with_its_env_volumes_and_rewritten_args() {
    let s = setup("job").await;
    s.create::<Secret>(
        json!({"metadata": {"name": "db"}, "stringData": {"url": "postgres://db/scans"}}),
    )
    .await;
    s.create::<Secret>(json!({"metadata": {"name": "keys"}, "data": {"private": "S0VZLUJZVEVT"}}))
        .await;
    s.create::<ConfigMap>(
        json!({"metadata": {"name": "settings"}, "data": {"level": "debug", "mode": "fast"}}),
    )
    .await;
    let pod = json!({
        "restartPolicy": "Never",
        "volumes": [
            {"name": "keys", "secret": {"secretName": "keys", "items": [{"key": "private", "path": "key.pem"}]}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "settings", "configMap": {"name": "settings"}},
        ],
        "containers": [{
            "name": "worker", "image": IMAGE, "command": ["/usr/local/bin/stellaops-worker"],
            "args": ["report", "--key=/etc/keys/key.pem", "--name=$(POD_NAME)", "--level=$(LEVEL)",
                     "--out=/tmp/out.txt", "--termination=/dev/termination-log", "--keep=$$(LEVEL)",
                     "--settings=/etc/settings"],
            "env": [
                {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
                {"name": "REPORT", "value": "/tmp/report-$(POD_NAMESPACE).json"},
                {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "x", "optional": true}}},
            ],
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
            "volumeMounts": [
                {"name": "keys", "mountPath": "/etc/keys", "readOnly": true},
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "settings", "mountPath": "/etc/settings"},
            ],
        }],
    });
    s.create::<Job>(job("scan-1", pod, json!({"backoffLimit": 0})))
        .await;
    let job = s.finished_job("scan-1").await;

    let status = job.status.clone().unwrap();
    assert!(
        condition(&job, "Complete").is_some_and(|c| c.status == "True"),
        "{status:?}"
    );
    assert!(
        condition(&job, "SuccessCriteriaMet").is_some(),
        "{status:?}"
    );
    assert_eq!(
        (status.succeeded, status.failed, status.active),
        (Some(1), None, None)
    );
    assert!(status.start_time.is_some() && status.completion_time.is_some());

    let pods = s.pods_of("scan-1").await;
    assert_eq!(pods.len(), 1, "one Pod");
    let pod = &pods[0];
    let pod_name = pod.name_any();
    let uid = job.uid().unwrap();
    assert!(
        pod_name.starts_with("scan-1-") && pod_name.len() == "scan-1-".len() + 5,
        "{pod_name}"
    );
    for (label, value) in [
        ("job-name", "scan-1"),
        ("batch.kubernetes.io/job-name", "scan-1"),
        ("controller-uid", uid.as_str()),
        ("batch.kubernetes.io/controller-uid", uid.as_str()),
        ("app", "scan"),
    ] {
        assert_eq!(
            pod.labels().get(label).map(String::as_str),
            Some(value),
            "label {label}"
        );
    }
    let owner = &pod.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Job", uid.as_str(), Some(true))
    );
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    let end = terminated(pod);
    assert_eq!(end["exitCode"], 0);
    assert_eq!(end["reason"], "Completed");
    assert_eq!(
        end["message"],
        format!(r#"{{"ok":true,"pod":"{pod_name}"}}"#)
    );

    let processes = s.processes_of("scan-1");
    assert_eq!(processes.len(), 1, "{processes:?}");
    let process = &processes[0];
    let pod_dir = s.runner.pod_dir(NS, &pod_name);
    let volume = |name: &str| pod_dir.join("volumes").join(name).display().to_string();
    assert_eq!(process.argv[0], s.worker.display().to_string());
    assert_eq!(
        process.argv[1..],
        [
            "report".to_string(),
            format!("--key={}/key.pem", volume("keys")),
            format!("--name={pod_name}"),
            "--level=debug".into(),
            format!("--out={}/out.txt", volume("tmp")),
            format!(
                "--termination={}",
                pod_dir.join("worker.termination-log").display()
            ),
            "--keep=$(LEVEL)".into(),
            format!("--settings={}", volume("settings")),
        ]
    );
    assert_eq!(process.exit_code, Some(0));
    let env = |name: &str| {
        process
            .env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(env("DATABASE_URL"), Some("postgres://db/scans"));
    assert_eq!(env("POD_NAME"), Some(pod_name.as_str()));
    assert_eq!(env("POD_IP"), Some("127.0.0.1"));
    assert_eq!(
        env("LEVEL"),
        Some("debug"),
        "the Pod's env wins over extra_env"
    );
    assert_eq!(env("FROM_RUNNER"), Some("extra"));
    assert_eq!(env("CFG_mode"), Some("fast"));
    assert_eq!(env("TMPDIR"), Some(volume("tmp").as_str()));
    assert_eq!(
        env("REPORT"),
        Some(format!("{}/report-{NS}.json", volume("tmp")).as_str())
    );
    assert_eq!(env("OPTIONAL"), None);

    let log = std::fs::read_to_string(pod_dir.join("worker.log")).expect("container log");
    assert!(log.contains("key: KEY-BYTES"), "{log}");
    assert!(log.contains("DATABASE_URL=postgres://db/scans"), "{log}");
    assert_eq!(
        std::fs::read_to_string(Path::new(&volume("tmp")).join("out.txt")).unwrap(),
        "done\n"
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(&volume("settings")).join("mode")).unwrap(),
        "fast"
    );

    // Later events (status patches, resyncs) start nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.processes_of("scan-1").len(), 1);
    assert_eq!(s.pods_of("scan-1").await.len(), 1);
    s.finish().await;
}

#[tokio::test]
async fn a_failing_job_is_retried_up_to_its_backoff_limit() {
    let s = setup("backoff").await;
    s.create::<Job>(job(
        "scan-2",
        worker_pod(&["fail"]),
        json!({"backoffLimit": 2}),
    ))
    .await;
    let job = s.finished_job("scan-2").await;
    let failed = condition(&job, "Failed").expect("Failed condition");
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert!(condition(&job, "FailureTarget").is_some());
    assert!(condition(&job, "Complete").is_none());
    let status = job.status.clone().unwrap();
    assert_eq!(
        (status.failed, status.succeeded, status.completion_time),
        (Some(3), None, None)
    );

    let pods = s.pods_of("scan-2").await;
    assert_eq!(pods.len(), 3, "a new Pod per retry");
    for pod in &pods {
        assert_eq!(
            pod.status.as_ref().unwrap().phase.as_deref(),
            Some("Failed")
        );
        let end = terminated(pod);
        assert_eq!(
            (end["exitCode"].as_i64(), end["reason"].as_str()),
            (Some(3), Some("Error"))
        );
        // FallbackToLogsOnError: the log's tail is the message.
        assert_eq!(end["message"], "args: \nboom: the scan failed");
    }
    let processes = s.processes_of("scan-2");
    assert_eq!(processes.len(), 3);
    assert!(processes.iter().all(|p| p.exit_code == Some(3)));
    s.finish().await;
}

#[tokio::test]
async fn a_foreign_image_job_completes_without_a_process() {
    let s = setup("foreign").await;
    let pod = json!({"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36", "command": ["false"]}]});
    s.create::<Job>(job("other", pod, json!({}))).await;
    let job = s.finished_job("other").await;
    assert!(condition(&job, "Complete").is_some(), "{:?}", job.status);
    let pods = s.pods_of("other").await;
    assert_eq!(terminated(&pods[0])["exitCode"], 0);
    assert!(s.runner.started().is_empty());
    s.finish().await;
}

#[tokio::test]
async fn a_missing_secret_keeps_the_pod_pending_until_it_exists() {
    let s = setup("secret").await;
    let mut pod = worker_pod(&["report"]);
    pod["containers"][0]["env"] = json!([
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "url"}}},
    ]);
    s.create::<Job>(job("scan-3", pod, json!({}))).await;
    let pods = s.api::<Pod>();
    let waiting = wait_for("the Pod to report CreateContainerConfigError", || async {
        let pod = pods
            .list(&ListParams::default().labels("job-name=scan-3"))
            .await
            .ok()?
            .items
            .pop()?;
        let status = serde_json::to_value(pod.status.as_ref()?).ok()?;
        let waiting = status["containerStatuses"][0]["state"]["waiting"].clone();
        (waiting["reason"] == "CreateContainerConfigError").then_some((status, waiting))
    })
    .await;
    assert_eq!(waiting.0["phase"], "Pending");
    assert_eq!(waiting.1["message"], r#"secret "absent" not found"#);
    assert!(s.runner.started().is_empty());

    s.create::<Secret>(
        json!({"metadata": {"name": "absent"}, "stringData": {"url": "postgres://late"}}),
    )
    .await;
    let job = s.finished_job("scan-3").await;
    assert!(condition(&job, "Complete").is_some(), "{:?}", job.status);
    let processes = s.processes_of("scan-3");
    assert_eq!(processes.len(), 1);
    assert!(
        processes[0]
            .env
            .contains(&("DATABASE_URL".into(), "postgres://late".into()))
    );
    s.finish().await;
}

#[tokio::test]
async fn active_deadline_and_job_deletion_kill_the_process() {
    let s = setup("deadline").await;
    s.create::<Job>(job(
        "slow",
        worker_pod(&["sleep", "30"]),
        json!({"activeDeadlineSeconds": 1}),
    ))
    .await;
    let slow = s.finished_job("slow").await;
    let failed = condition(&slow, "Failed").expect("Failed condition");
    assert_eq!(failed.reason.as_deref(), Some("DeadlineExceeded"));
    wait_for("the deadline to kill the process", || async {
        (s.processes_of("slow").first()?.exit_code == Some(137)).then_some(())
    })
    .await;

    s.create::<Job>(job("doomed", worker_pod(&["sleep", "30"]), json!({})))
        .await;
    wait_for("the process to start", || async {
        (!s.processes_of("doomed").is_empty()).then_some(())
    })
    .await;
    s.api::<Job>()
        .delete("doomed", &DeleteParams::background())
        .await
        .expect("delete Job");
    wait_for("the Pod's process to be killed", || async {
        (s.processes_of("doomed")[0].exit_code == Some(137)).then_some(())
    })
    .await;
    s.finish().await;
}

#[tokio::test]
async fn deployments_become_available() {
    let s = setup("deploy").await;
    let deployment = |name: &str, image: &str, replicas: i32, command: Value| {
        json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                    {"name": "main", "image": image, "command": command},
                ]}},
            },
        })
    };
    s.create::<Deployment>(deployment("web", "nginx:1.27", 2, json!(["nginx"])))
        .await;
    s.create::<Deployment>(deployment(
        "notify",
        IMAGE,
        1,
        json!(["stellaops-worker", "sleep", "30"]),
    ))
    .await;
    let deployments = s.api::<Deployment>();
    for (name, replicas) in [("web", 2), ("notify", 1)] {
        let deployment = wait_for(
            &format!("Deployment {name} to become available"),
            || async {
                let d = deployments.get(name).await.ok()?;
                let available = d.status.as_ref()?.conditions.iter().flatten().any(|c| {
                    c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True")
                });
                available.then_some(d)
            },
        )
        .await;
        let status = deployment.status.clone().unwrap();
        assert_eq!(status.observed_generation, deployment.metadata.generation);
        assert_eq!(
            (
                status.replicas,
                status.ready_replicas,
                status.available_replicas,
                status.updated_replicas
            ),
            (
                Some(replicas),
                Some(replicas),
                Some(replicas),
                Some(replicas)
            ),
            "{name}"
        );
        let progressing = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_.as_deref() == Some("Progressing"))
            .expect("Progressing");
        assert_eq!(
            progressing.reason.as_deref(),
            Some("NewReplicaSetAvailable")
        );
    }
    let notify = |s: &Setup| -> Vec<StartedProcess> {
        s.runner
            .started()
            .into_iter()
            .filter(|p| p.pod.starts_with("notify-"))
            .collect()
    };
    let first = notify(&s);
    assert_eq!(first.len(), 1, "one process for the one replica");
    assert_eq!(first[0].exit_code, None, "still running");

    // A new template replaces the Pod: the old process is killed, a new one starts.
    deployments
        .patch(
            "notify",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "main", "image": IMAGE, "command": ["stellaops-worker", "sleep", "31"]},
            ]}}}})),
        )
        .await
        .expect("patch Deployment");
    let processes = wait_for("the new replica's process", || async {
        let all = notify(&s);
        (all.len() == 2 && all[0].exit_code == Some(137)).then_some(all)
    })
    .await;
    assert_eq!(processes[1].argv[1..], ["sleep".to_string(), "31".into()]);
    assert_eq!(processes[1].exit_code, None);
    let deployment = wait_for("the new template to be available", || async {
        let d = deployments.get("notify").await.ok()?;
        let status = d.status.as_ref()?;
        (status.observed_generation == d.metadata.generation
            && status.available_replicas == Some(1))
        .then_some(d)
    })
    .await;
    assert!(deployment.metadata.generation > Some(1));

    // stop() kills what still runs.
    let pod_dir = s.runner.pod_dir(NS, &processes[1].pod);
    let log = std::fs::read_to_string(pod_dir.join("main.log")).expect("log");
    let pid = log
        .lines()
        .find_map(|l| l.strip_prefix("pid: "))
        .expect("the worker printed its pid")
        .to_string();
    s.finish().await;
    wait_for("the process to be gone", || async {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie nobody has reaped yet.
        (stat.is_empty() || stat.split(' ').nth(2) == Some("Z")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn jobs_run_once_across_anemulator_restart() {
    let mut s = setup("restart").await;
    s.create::<Job>(job("before", worker_pod(&["report"]), json!({})))
        .await;
    s.finished_job("before").await;
    s.emulator.restart().await.expect("restart");
    s.create::<Job>(job("after", worker_pod(&["report"]), json!({})))
        .await;
    let after = s.finished_job("after").await;
    assert!(condition(&after, "Complete").is_some());
    // The watches relisted everything; nothing ran twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.processes_of("before").len(), 1);
    assert_eq!(s.processes_of("after").len(), 1);
    s.finish().await;
}

#[tokio::test]
async fn a_cron_job_runs_when_triggered() {
    let s = setup("cron").await;
    let cron_job = s
        .create::<CronJob>(json!({
            "metadata": {"name": "sync"},
            "spec": {
                // Once a year: only the trigger runs it here.
                "schedule": "0 0 1 1 *",
                "concurrencyPolicy": "Forbid",
                "jobTemplate": {
                    "metadata": {"labels": {"stella-ops.org/sync": "sync"}},
                    "spec": {"backoffLimit": 0, "template": {"spec": worker_pod(&["report"])}},
                },
            },
        }))
        .await;
    let job = s
        .runner
        .trigger_cron_job(NS, "sync")
        .await
        .expect("trigger");
    let name = job.name_any();
    assert!(name.starts_with("sync-manual-"), "{name}");
    assert_eq!(
        job.labels().get("stella-ops.org/sync").map(String::as_str),
        Some("sync")
    );
    assert_eq!(job.owner_references()[0].uid, cron_job.uid().unwrap());
    let job = s.finished_job(&name).await;
    assert!(condition(&job, "Complete").is_some());
    assert_eq!(s.processes_of(&name).len(), 1);
    let cron_jobs = s.api::<CronJob>();
    wait_for("the CronJob to record the successful run", || async {
        let status = cron_jobs.get("sync").await.ok()?.status?;
        (status.last_successful_time.is_some() && status.active.is_none()).then_some(())
    })
    .await;
    s.finish().await;
}

#[tokio::test]
async fn a_cron_job_runs_on_its_schedule() {
    let s = setup("schedule").await;
    s.create::<CronJob>(json!({
        "metadata": {"name": "every-second"},
        // croner reads a six-field expression with seconds first.
        "spec": {"schedule": "* * * * * *", "jobTemplate": {"spec": {"template": {"spec": worker_pod(&["report"])}}}},
    }))
    .await;
    let cron_jobs = s.api::<CronJob>();
    let status = wait_for("a scheduled run", || async {
        let status = cron_jobs.get("every-second").await.ok()?.status?;
        status.last_schedule_time.is_some().then_some(status)
    })
    .await;
    let minute = status.last_schedule_time.unwrap().0.as_second() / 60;
    let jobs = s
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert!(
        jobs.iter()
            .any(|j| j.name_any() == format!("every-second-{minute}")),
        "{:?}",
        jobs.iter().map(|j| j.name_any()).collect::<Vec<_>>()
    );
    s.finish().await;
}

#[tokio::test]
async fn init_containers_run_first_and_on_failure_restarts_in_place() {
    let s = setup("init").await;
    let pod = json!({
        "restartPolicy": "OnFailure",
        "volumes": [{"name": "work", "emptyDir": {}}],
        "initContainers": [{
            "name": "prepare", "image": IMAGE, "command": ["stellaops-worker"],
            "args": ["report", "--out=/work/prepared"],
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        }],
        "containers": [{
            "name": "worker", "image": IMAGE, "command": ["stellaops-worker"], "args": ["fail"],
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        }],
    });
    s.create::<Job>(job("retry", pod, json!({"backoffLimit": 1})))
        .await;
    let job = s.finished_job("retry").await;
    let failed = condition(&job, "Failed").expect("Failed condition");
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));

    let processes = s.processes_of("retry");
    let containers: Vec<&str> = processes.iter().map(|p| p.container.as_str()).collect();
    // One Pod: the init container once, then the failing container restarted in place
    // until its restarts exceed the backoff limit.
    assert_eq!(
        containers,
        ["prepare", "worker", "worker", "worker"],
        "{processes:?}"
    );
    assert!(processes.iter().all(|p| p.pod == processes[0].pod));
    assert_eq!(processes[0].exit_code, Some(0));
    let prepared = s
        .runner
        .pod_dir(NS, &processes[0].pod)
        .join("volumes/work/prepared");
    assert_eq!(std::fs::read_to_string(prepared).unwrap(), "done\n");
    s.finish().await;
}
