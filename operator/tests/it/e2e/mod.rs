//! End to end: the real `stellaops-operator` binary, started as a process as in a cluster,
//! against the API server emulator (HTTPS, RBAC from `config/rbac`, our admission) with its
//! local Job runner executing the real `stellaops-worker` for our image, the real
//! `kubectl`, and the test PostgreSQL, S3 server and registry.

mod observability;
mod operator_runs;
mod reports;
mod traces;
mod vex_admission;
mod waiver;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde::Deserialize;
use serde_json::{Value, json};
use stellaops_testing::apiserver::{Emulator, EmulatorOptions};
use stellaops_testing::kubelet::{LocalRunner, RunnerOptions};

use crate::repo_root;

/// The worker image the operator is told to use; the runner executes it locally.
pub const WORKER_IMAGE: &str = "stellaops.test/stellaops-operator:e2e";
/// The operator's namespace and service account, as `config/rbac` names them.
pub const OPERATOR_NAMESPACE: &str = "stellaops-system";
pub const OPERATOR_ACCOUNT: &str = "stellaops-operator";
/// A cron schedule that does not fire while a test runs (midnight UTC on 1 January), for
/// CronJobs a test runs itself through the local runner's trigger.
pub const YEARLY: &str = "0 0 1 1 *";

/// Every document of the YAML files of `dir` (kustomization.yaml left out).
pub fn manifests(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            serde_yaml::Deserializer::from_str(&text)
                .map(|d| Value::deserialize(d).unwrap())
                .filter(|v| !v.is_null())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Test services this tier needs; `None` (skipped) outside CI when they are not running.
pub struct Services {
    pub database_server: String,
    pub s3_endpoint: String,
    pub registry: String,
    pub kubectl: String,
}

impl Services {
    pub fn find() -> Option<Services> {
        Some(Services {
            database_server: stellaops_testing::service("STELLAOPS_TEST_DATABASE_URL")?,
            s3_endpoint: stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT")?,
            registry: stellaops_testing::service("STELLAOPS_TEST_REGISTRY")?,
            kubectl: stellaops_testing::service("STELLAOPS_TEST_KUBECTL")?,
        })
    }
}

/// A binary of the workspace, next to this test's own executable (`target/<profile>/`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let operator = PathBuf::from(env!("CARGO_BIN_EXE_stellaops-operator"));
    let path = operator.with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test --workspace` builds it (or `cargo build -p stellaops-workers`)",
        path.display()
    );
    path
}

/// One emulated cluster: the emulator, the local runner, a scratch directory, the test
/// database (migrated) and bucket, and the operator processes started on it.
pub struct Cluster {
    pub emulator: Emulator,
    pub runner: Option<LocalRunner>,
    pub admin: kube::Client,
    pub dir: PathBuf,
    pub services: Services,
    pub database_url: String,
    /// The same database as the workers' role: rows, no DDL (what the workers get).
    pub worker_database_url: String,
    /// The same database as the webhook's role: read verdicts, append events.
    pub webhook_database_url: String,
    pub bucket: String,
    pub operators: Vec<Operator>,
}

/// What the emulator starts with: the project's RBAC (config/rbac, and config/reports but
/// its APIService, a kind the emulator does not serve), and the roles a cluster bootstraps
/// for extension API servers that config/reports binds.
fn preload() -> Vec<Value> {
    let mut objects = manifests(&repo_root().join("config/rbac"));
    objects.extend(
        manifests(&repo_root().join("config/reports"))
            .into_iter()
            .filter(|o| o["kind"] != "APIService" && o["kind"] != "Service"),
    );
    objects.push(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}),
    );
    objects.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "system:auth-delegator"},
        "rules": [
            {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
            {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
        ],
    }));
    objects.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "extension-apiserver-authentication-reader", "namespace": "kube-system"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                   "resourceNames": ["extension-apiserver-authentication"],
                   "verbs": ["get", "list", "watch"]}],
    }));
    objects
}

/// A running `stellaops-operator run`.
pub struct Operator {
    pub name: String,
    pub child: Child,
    pub metrics_addr: String,
    pub webhook_addr: String,
    pub reports_addr: String,
    pub log: PathBuf,
}

impl Cluster {
    /// Start the emulator with the project's RBAC, the runner, and the platform's database
    /// and bucket; `None` when the test services are missing (outside CI).
    pub async fn start(name: &str) -> Option<Cluster> {
        let services = Services::find()?;
        let pool = stellaops_testing::migrated_database(name, &stellaops_store::MIGRATOR).await?;
        pool.close().await;
        let database_url = {
            let (base, _) = services.database_server.rsplit_once('/').unwrap();
            format!("{base}/{name}_{}", std::process::id())
        };
        // The workers connect as a role without DDL rights, as docs/security.md sets them
        // up: a worker that needed a GRANT it lacks, or ran a migration, fails the test.
        let (worker_database_url, webhook_database_url) = {
            let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
            let owner: String = sqlx::query_scalar("SELECT current_user::text")
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            let worker = format!("{name}_worker_{}", std::process::id());
            let grants = stellaops_store::roles::grants(&stellaops_store::roles::Roles {
                owner: &owner,
                worker: &worker,
                webhook: &format!("{name}_webhook_{}", std::process::id()),
            });
            // The webhook role is granted too (the GRANTs name it); create it first.
            let webhook = format!("{name}_webhook_{}", std::process::id());
            let webhook_url =
                stellaops_testing::database_role(&database_url, &webhook, "SELECT 1").await;
            (
                stellaops_testing::database_role(&database_url, &worker, &grants).await,
                webhook_url,
            )
        };
        let bucket = format!("e2e-{name}-{}", std::process::id()).replace('_', "-");
        let s3 = stellaops_store::s3::client(&stellaops_store::s3::S3Settings {
            endpoint: Some(services.s3_endpoint.clone()),
            region: None,
            force_path_style: true,
        })
        .await;
        s3.create_bucket().bucket(&bucket).send().await.unwrap();

        let emulator = Emulator::start(EmulatorOptions {
            preload: preload(),
            ..EmulatorOptions::default()
        })
        .await
        .expect("the emulator starts");
        let admin = emulator.client(&emulator.admin_token()).await;
        let dir = std::env::temp_dir().join(format!("stellaops-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let runner = LocalRunner::start(
            admin.clone(),
            RunnerOptions {
                own_images: vec![WORKER_IMAGE.to_string()],
                binaries: BTreeMap::from([(
                    "stellaops-worker".to_string(),
                    workspace_binary("stellaops-worker"),
                )]),
                extra_env: vec![("RUST_LOG".into(), "info".into())],
                work_dir: dir.join("pods"),
            },
        );
        let cluster = Cluster {
            emulator,
            runner: Some(runner),
            admin,
            dir,
            services,
            database_url,
            worker_database_url,
            webhook_database_url,
            bucket,
            operators: Vec::new(),
        };
        // The samples' and the tests' tenant namespaces. The platform's credentials are only
        // in the platform namespace: no tenant namespace holds them, and every workload that
        // needs them runs there.
        for ns in ["stellaops", "tenant-a", OPERATOR_NAMESPACE] {
            cluster
                .apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
                .await;
        }
        cluster.platform_secrets(OPERATOR_NAMESPACE).await;
        // The verdict signing key exists only in the platform namespace; the operators get
        // its public half.
        let (private, public) = stellaops_store::attestation::generate_key_pair();
        cluster
            .apply(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "stellaops-verdict-signing", "namespace": OPERATOR_NAMESPACE},
                "stringData": {"key.pem": private, "pub.pem": public}}))
            .await;
        std::fs::write(cluster.dir.join("verdict-keys.pem"), &public).unwrap();
        // The administrator who made the key keeps key.pem (docs/security.md), for what runs
        // outside the cluster: `vex ingest` signs the re-evaluations it causes.
        std::fs::write(cluster.verdict_signing_key(), &private).unwrap();
        Some(cluster)
    }

    /// The administrator's copy of the verdict signing key (`key.pem` of the Secret
    /// `stellaops-verdict-signing`).
    pub fn verdict_signing_key(&self) -> PathBuf {
        self.dir.join("verdict-signing-key.pem")
    }

    async fn platform_secrets(&self, ns: &str) {
        self.apply(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "stellaops-database", "namespace": ns},
            "stringData": {"url": self.worker_database_url}}))
            .await;
        self.apply(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "stellaops-s3", "namespace": ns},
            "stringData": {"AWS_ACCESS_KEY_ID": std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default(),
                           "AWS_SECRET_ACCESS_KEY": std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default()}}))
        .await;
    }

    /// Create `object` as an admin (server-side apply, field manager `e2e-test`).
    pub async fn apply(&self, object: Value) -> Value {
        let api = self.api_for(&object);
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let params = kube::api::PatchParams::apply("e2e-test").force();
        let applied = api
            .patch(&name, &params, &kube::api::Patch::Apply(&object))
            .await
            .unwrap_or_else(|e| panic!("apply {name}: {e}"));
        serde_json::to_value(applied).unwrap()
    }

    /// A dynamic API for `object`'s kind (and namespace, if it has one).
    pub fn api_for(&self, object: &Value) -> Api<DynamicObject> {
        let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (
                String::new(),
                object["apiVersion"].as_str().unwrap().to_string(),
            ),
        };
        let kind = object["kind"].as_str().unwrap();
        let resource = ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk(&group, &version, kind),
            &plural(kind),
        );
        match object["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(self.admin.clone(), ns, &resource),
            None if namespaced(kind) => Api::default_namespaced_with(self.admin.clone(), &resource),
            None => Api::all_with(self.admin.clone(), &resource),
        }
    }

    /// A kubeconfig file for `token`.
    pub fn kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&path, self.emulator.kubeconfig(token)).unwrap();
        path
    }

    /// Run the real kubectl as an admin; returns stdout, panics with stderr on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args, None);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let kubeconfig = self.kubeconfig("admin", &self.emulator.admin_token());
        let mut child = Command::new(&self.services.kubectl)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", &self.dir)
            .current_dir(repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).unwrap();
            }
        }
        child.wait_with_output().unwrap()
    }

    /// Start `stellaops-operator run` as the operator's service account.
    pub fn start_operator(&mut self, name: &str, extra: &[&str]) -> &Operator {
        let token = self
            .emulator
            .service_account_token(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT);
        let kubeconfig = self.kubeconfig(&format!("operator-{name}"), &token);
        let metrics_addr = format!("127.0.0.1:{}", stellaops_testing::ports::unused_port());
        let webhook_addr = format!("127.0.0.1:{}", stellaops_testing::ports::unused_port());
        let health_addr = format!("127.0.0.1:{}", stellaops_testing::ports::unused_port());
        let reports_addr = format!("127.0.0.1:{}", stellaops_testing::ports::unused_port());
        let log = self.dir.join(format!("operator-{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_stellaops-operator"))
            .args([
                "run",
                "--namespace",
                OPERATOR_NAMESPACE,
                "--pod-name",
                name,
                "--metrics-addr",
                &metrics_addr,
                "--webhook-addr",
                &webhook_addr,
                "--webhook-health-addr",
                &health_addr,
                "--reports-addr",
                &reports_addr,
                "--worker-image",
                WORKER_IMAGE,
                "--bucket",
                &self.bucket,
                "--s3-endpoint",
                &self.services.s3_endpoint,
                "--database-url",
                &self.database_url,
                // The webhook as its own role: a lookup or event needing more than it is
                // granted fails the tests that go through the webhook.
                "--webhook-database-url",
                &self.webhook_database_url,
                "--lease-duration-seconds",
                "4",
                "--lease-retry-seconds",
                "1",
                "--verdict-public-keys",
            ])
            .arg(self.dir.join("verdict-keys.pem"))
            // The artifact lifecycle CronJob's default schedule (03:17 UTC) would start a
            // Job in the middle of tests that count Jobs when they run at that minute.
            .args(
                (!extra.contains(&"--artifact-lifecycle-schedule"))
                    .then_some(["--artifact-lifecycle-schedule", YEARLY])
                    .into_iter()
                    .flatten(),
            )
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            // STELLAOPS_E2E_OPERATOR_LOG to see more of a failing test's operator.
            .env(
                "RUST_LOG",
                std::env::var("STELLAOPS_E2E_OPERATOR_LOG")
                    .unwrap_or_else(|_| "info,kube=warn".to_string()),
            )
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start stellaops-operator");
        self.operators.push(Operator {
            name: name.to_string(),
            child,
            metrics_addr,
            webhook_addr,
            reports_addr,
            log,
        });
        self.operators.last().unwrap()
    }

    /// Wait until `check` returns `Some`, polling every 200 ms; panics after `limit`,
    /// with every operator's log.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, limit: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let started = Instant::now();
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if started.elapsed() > limit {
                panic!("{what}: not within {limit:?}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The operators' logs and the API server's last writes, lists and watches, for
    /// failure messages: what a rare failure in CI leaves to go on (which side stopped
    /// asking, the operator or the local runner).
    pub fn logs(&self) -> String {
        let mut parts: Vec<String> = self
            .operators
            .iter()
            .map(|o| {
                let text = std::fs::read_to_string(&o.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                format!(
                    "--- operator {} (last 60 lines)\n{}",
                    o.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect();
        let requests: Vec<String> = self
            .emulator
            .audit_log()
            .into_iter()
            .filter(|e| e.verb != "get")
            .map(|e| format!("{} {} {} {}", e.status, e.verb, e.path, e.user))
            .collect();
        let tail = &requests[requests.len().saturating_sub(40)..];
        parts.push(format!(
            "--- API requests other than get (last {} of {})\n{}",
            tail.len(),
            requests.len(),
            tail.join("\n")
        ));
        parts.join("\n")
    }

    /// A custom resource of ours, as JSON.
    pub async fn get(&self, kind: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        let mut probe =
            json!({"apiVersion": api_version(kind), "kind": kind, "metadata": {"name": name}});
        if let Some(ns) = ns {
            probe["metadata"]["namespace"] = json!(ns);
        }
        self.api_for(&probe)
            .get_opt(name)
            .await
            .unwrap()
            .map(|o| serde_json::to_value(o).unwrap())
    }

    /// The running operator's admission webhook for the ZastavaPolicy `policy`, reached as
    /// the API server reaches it: its ValidatingWebhookConfiguration (waited for, up to
    /// `limit`, until it carries the CA bundle the controller made) names the Service and
    /// path, and the certificate is verified for the Service's DNS name against that bundle.
    pub async fn webhook(&self, policy: &str, limit: Duration) -> Webhook {
        let path = format!("/validate/{policy}");
        let configuration = self
            .wait_for(
                "the ValidatingWebhookConfiguration with a caBundle",
                limit,
                || async {
                    self.emulator
                        .objects(
                            "admissionregistration.k8s.io/v1",
                            "ValidatingWebhookConfiguration",
                        )
                        .into_iter()
                        .find(|c| {
                            let client = &c["webhooks"][0]["clientConfig"];
                            client["service"]["path"] == path.as_str()
                                && client["caBundle"].as_str().is_some_and(|b| !b.is_empty())
                        })
                },
            )
            .await;
        let webhook = &configuration["webhooks"][0];
        let service = &webhook["clientConfig"]["service"];
        let host = format!(
            "{}.{}.svc",
            service["name"].as_str().unwrap(),
            service["namespace"].as_str().unwrap()
        );
        assert_eq!(service["namespace"], OPERATOR_NAMESPACE);
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD
            .decode(webhook["clientConfig"]["caBundle"].as_str().unwrap())
            .unwrap();
        let addr: std::net::SocketAddr = self.operators[0].webhook_addr.parse().unwrap();
        Webhook {
            client: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .resolve(&host, addr)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            url: format!("https://{host}:{}{path}", addr.port()),
        }
    }

    /// Requests answered 403 to the operator's service account: a verb the code uses that
    /// `config/rbac` does not grant.
    pub fn forbidden_operator_requests(&self) -> Vec<String> {
        let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}");
        self.emulator
            .audit_log()
            .into_iter()
            .filter(|e| e.user == user && e.status == 403)
            .map(|e| format!("{} {}", e.verb, e.path))
            .collect()
    }

    /// Stop everything; kill the operators first so nothing writes while the rest stops.
    pub async fn stop(mut self) {
        for operator in &mut self.operators {
            let _ = operator.child.kill();
            let _ = operator.child.wait();
        }
        if let Some(runner) = self.runner.take() {
            runner.stop().await;
        }
        self.emulator.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The first operator's admission webhook for one ZastavaPolicy ([`Cluster::webhook`]).
pub struct Webhook {
    pub client: reqwest::Client,
    pub url: String,
}

impl Webhook {
    /// The AdmissionReview answered to `review`; `None` while the webhook refuses (no
    /// certificate or policy loaded yet) or cannot be reached.
    pub async fn review(&self, review: &Value) -> Option<Value> {
        let response = self.client.post(&self.url).json(review).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json::<Value>().await.ok()
    }
}

/// A test that panics must not leave operators running (they would hold ports and CPU
/// long after the test): kill them when the handle goes.
impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Operator {
    /// Send SIGTERM, as the kubelet does when a Pod stops.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// This replica's `/metrics` text.
    pub async fn metrics(&self) -> Option<String> {
        let response = reqwest::get(format!("http://{}/metrics", self.metrics_addr))
            .await
            .ok()?;
        response.text().await.ok()
    }

    /// The value of an unlabelled gauge or counter in `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics().await?;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    }
}

/// `apiVersion` of a kind used in these tests.
pub fn api_version(kind: &str) -> &'static str {
    match kind {
        "Job" | "CronJob" => "batch/v1",
        "Deployment" => "apps/v1",
        "Lease" => "coordination.k8s.io/v1",
        "ClusterRoleBinding" => "rbac.authorization.k8s.io/v1",
        "ValidatingWebhookConfiguration" => "admissionregistration.k8s.io/v1",
        "Secret" | "ConfigMap" | "Pod" | "Namespace" | "Service" | "PersistentVolumeClaim" => "v1",
        _ => stellaops_crds::API_VERSION,
    }
}

fn plural(kind: &str) -> String {
    match kind {
        "NotifyRule" => "notifyrules".into(),
        "ZastavaPolicy" => "zastavapolicies".into(),
        "ScanPolicy" => "scanpolicies".into(),
        "ValidatingWebhookConfiguration" => "validatingwebhookconfigurations".into(),
        _ => format!("{}s", kind.to_ascii_lowercase()),
    }
}

fn namespaced(kind: &str) -> bool {
    !matches!(
        kind,
        "Namespace"
            | "ZastavaPolicy"
            | "ScanPolicy"
            | "ValidatingWebhookConfiguration"
            | "ClusterRole"
            | "ClusterRoleBinding"
    )
}

/// The `Ready` condition of an object: (status, reason).
pub fn ready(object: &Value) -> Option<(String, String)> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// Create `object` as the admin would with `kubectl create` (no apply).
pub async fn create(api: &Api<DynamicObject>, object: Value) -> DynamicObject {
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap()
}
