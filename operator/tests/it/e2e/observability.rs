//! Observability end to end: the operator, a notify worker and a mirror server run as a
//! cluster runs them while a Scan, a notification, admission reviews, a mirror sync and a
//! federation export happen; a real Prometheus scrapes them. Then what each binary exposes
//! must match docs/metrics.md (names, types, HELP), every dashboard query must return data
//! through Prometheus' HTTP API, every recording rule must return data, and every metric an
//! alert reads must exist — so no panel is empty and no rule misspelled.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::operator_runs::{ingest_openssl_advisory, pod_review, push_image, scan};
use super::{Cluster, OPERATOR_NAMESPACE, YEARLY};
use crate::repo_root;

const SETTLE: Duration = Duration::from_secs(90);

/// A Prometheus server on 127.0.0.1 scraping `targets` (job → address) every second.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Prometheus {
    fn start(binary: &str, dir: &Path, targets: &BTreeMap<&str, String>) -> Prometheus {
        let port = stellaops_testing::ports::unused_port();
        let scrape_configs: Vec<Value> = targets
            .iter()
            .map(|(job, addr)| {
                json!({"job_name": job, "scrape_interval": "1s", "scrape_timeout": "1s",
                       "static_configs": [{"targets": [addr]}]})
            })
            .collect();
        let config = json!({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                            "scrape_configs": scrape_configs});
        let config_path = dir.join("prometheus.yml");
        // JSON is YAML.
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// An instant query: `Ok(result)` or the error Prometheus gave.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let response = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Metric families of a Prometheus text exposition: name → (type, HELP).
fn families(text: &str) -> BTreeMap<String, (String, String)> {
    let mut found: BTreeMap<String, (String, String)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            found.entry(name.to_string()).or_default().1 = help.to_string();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            found.entry(name.to_string()).or_default().0 = kind.to_string();
        }
    }
    found
}

/// docs/metrics.md: section heading → metric name → type.
fn documented() -> BTreeMap<String, BTreeMap<String, String>> {
    let text = std::fs::read_to_string(repo_root().join("docs/metrics.md")).unwrap();
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            current = heading.to_string();
        } else if let Some(row) = line.strip_prefix("| `") {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let name = cells[0].trim_end_matches('`').to_string();
            sections
                .entry(current.clone())
                .or_default()
                .insert(name, cells[1].to_string());
        }
    }
    sections
}

fn section<'a>(
    docs: &'a BTreeMap<String, BTreeMap<String, String>>,
    prefix: &str,
) -> &'a BTreeMap<String, String> {
    docs.iter()
        .find(|(h, _)| h.starts_with(prefix))
        .map(|(_, m)| m)
        .unwrap_or_else(|| panic!("docs/metrics.md has no section {prefix:?}"))
}

/// Differences between what a binary exposes and its table in docs/metrics.md.
fn compare(binary: &str, text: &str, docs: &BTreeMap<String, String>) -> Vec<String> {
    let exposed = families(text);
    let mut problems = Vec::new();
    for (name, (kind, help)) in &exposed {
        match docs.get(name) {
            None => problems.push(format!("{binary}: {name} is exposed but not documented")),
            Some(doc) if doc != kind => problems.push(format!(
                "{binary}: {name} is a {kind}, docs/metrics.md says {doc}"
            )),
            _ => {}
        }
        if help.trim().is_empty() {
            problems.push(format!("{binary}: {name} has no HELP text"));
        }
    }
    for name in docs.keys() {
        if !exposed.contains_key(name) {
            problems.push(format!("{binary}: {name} is documented but not exposed"));
        }
    }
    problems
}

/// Every query of every panel of the dashboards in `dir`: (file, panel, expr).
fn dashboard_queries(dir: &Path) -> Vec<(String, String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut queries = Vec::new();
    for file in files {
        let dashboard: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                queries.push((
                    file.file_name().unwrap().to_string_lossy().into_owned(),
                    panel["title"].as_str().unwrap().to_string(),
                    target["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    queries
}

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    record: Option<String>,
    alert: Option<String>,
    expr: String,
}

fn rules() -> Vec<Rule> {
    let text = std::fs::read_to_string(
        repo_root().join("charts/stellaops-operator/files/stellaops-rules.yaml"),
    )
    .unwrap();
    let file: RuleFile = serde_yaml::from_str(&text).unwrap();
    file.groups.into_iter().flat_map(|g| g.rules).collect()
}

/// The metric names a PromQL expression reads: identifiers outside label matchers and
/// `by (...)` lists that are neither functions, keywords, nor recording rules (`a:b:c`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut text = String::new();
    let mut depth = 0;
    for c in expr.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ if depth == 0 => text.push(c),
            _ => {}
        }
    }
    let grouping = regex::Regex::new(r"\b(by|without)\s*\([^)]*\)").unwrap();
    let text = grouping.replace_all(&text, " ");
    let strings = regex::Regex::new(r#""[^"]*""#).unwrap();
    let text = strings.replace_all(&text, " ");
    let identifier = regex::Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*").unwrap();
    identifier
        .find_iter(&text)
        .filter(|m| !text[m.end()..].trim_start().starts_with('('))
        .map(|m| m.as_str().to_string())
        .filter(|name| name.contains('_') && !name.contains(':'))
        .collect()
}

/// The base family of a sample name (`x_bucket` of histogram `x`).
fn family_of(name: &str, exposed: &BTreeSet<String>) -> Option<String> {
    if exposed.contains(name) {
        return Some(name.to_string());
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|s| name.strip_suffix(s))
        .find(|base| exposed.contains(*base))
        .map(str::to_string)
}

/// The loopback address the runner gave the `--listen` of a Pod whose name starts with
/// `pod_prefix` in `namespace`.
pub(super) fn listen_address(
    cluster: &Cluster,
    namespace: &str,
    pod_prefix: &str,
) -> Option<String> {
    cluster
        .runner
        .as_ref()?
        .started()
        .into_iter()
        .filter(|p| {
            p.namespace == namespace && p.pod.starts_with(pod_prefix) && p.exit_code.is_none()
        })
        .find_map(|p| {
            let at = p.argv.iter().position(|a| a == "--listen")?;
            p.argv.get(at + 1).cloned()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_running_binaries_and_every_dashboard_query_returns_data() {
    let Some(prometheus_binary) = stellaops_testing::service("STELLAOPS_TEST_PROMETHEUS") else {
        return;
    };
    let Some(mut cluster) = Cluster::start("e2e_observe").await else {
        return;
    };
    ingest_openssl_advisory(&cluster.database_url).await;
    let (image, _) = push_image(&cluster, "e2e/observed").await;
    let s3 = stellaops_store::s3::client(&stellaops_store::s3::S3Settings {
        endpoint: Some(cluster.services.s3_endpoint.clone()),
        region: None,
        force_path_style: true,
    })
    .await;
    for (key, body) in [
        // One export directory, as the mirror server serves them.
        (
            "exports/2026-01-01/mirror/index.json",
            r#"{"exportId":"2026-01-01","domains":["e2e"]}"#,
        ),
        (
            "exports/2026-01-01/mirror/e2e/manifest.json",
            r#"{"exportId":"2026-01-01"}"#,
        ),
    ] {
        s3.put_object()
            .bucket(&cluster.bucket)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    cluster.start_operator("solo", &[]);
    // The runner does not rewrite the Secret mount paths inside the rule file the operator
    // renders, so this worker cannot read the action's Secret and only retries: the test
    // needs it running and scraped, not delivering (workers/tests/it/notify delivers).
    let hook_url = "http://127.0.0.1:9/hook";
    let endpoint = cluster.services.s3_endpoint.clone();
    let bucket = cluster.bucket.clone();

    // A rule that sends every finished scan to the local receiver.
    cluster
        .apply(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "e2e-hook", "namespace": "tenant-a"},
            "stringData": {"url": hook_url, "hmacKey": "e2e-secret"}}))
        .await;
    cluster
        .apply(json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "NotifyRule",
            "metadata": {"name": "scans", "namespace": "tenant-a"},
            "spec": {"match": {"eventKinds": ["report.ready"]},
                     "actions": [{"name": "hook", "channel": "webhook", "secretRef": {"name": "e2e-hook"}}]}}))
        .await;
    // The tenant's own credentials for the buckets (the platform's stay in the platform
    // namespace); the syncs run there with copies of them.
    cluster
        .apply(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "tenant-s3", "namespace": "tenant-a"},
            "stringData": {"AWS_ACCESS_KEY_ID": std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default(),
                           "AWS_SECRET_ACCESS_KEY": std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default()}}))
        .await;
    // A mirror and a federation export, each run once by hand below.
    cluster
        .apply(json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "MirrorDomain",
            "metadata": {"name": "e2e", "namespace": "tenant-a"},
            "spec": {"domainId": "e2e", "source": {"bucket": bucket, "prefix": "exports",
                     "endpoint": endpoint, "forcePathStyle": true, "secretRef": {"name": "tenant-s3"}},
                     "storage": {"size": "1Gi"}, "auth": {"requireAuthentication": false},
                     // Once a year, so that only the trigger below runs it: a scheduled run
                     // beside it would leave the second run with nothing to copy.
                     "syncSchedule": YEARLY}}))
        .await;
    cluster
        .apply(
            json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "FederationSite",
            "metadata": {"name": "out", "namespace": "tenant-a"},
            "spec": {"siteId": "site-out", "direction": "export",
                     "transport": {"s3": {"bucket": bucket, "prefix": "federation",
                                          "endpoint": endpoint, "forcePathStyle": true,
                                          "secretRef": {"name": "tenant-s3"}}},
                     "schedule": YEARLY, "policy": {"requireSignature": false}}}),
        )
        .await;
    cluster
        .apply(json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "ZastavaPolicy",
            "metadata": {"name": "observed"},
            "spec": {"mode": "enforce", "images": ["**"], "requireDigest": true, "failurePolicy": "Fail"}}))
        .await;
    cluster.apply(scan("tenant-a", "observed", &image)).await;

    let scanned = cluster
        .wait_for("the Scan finishes", SETTLE, || async {
            let object = cluster.get("Scan", Some("tenant-a"), "observed").await?;
            matches!(object["status"]["phase"].as_str()?, "Succeeded" | "Failed").then_some(object)
        })
        .await;
    assert_eq!(scanned["status"]["phase"], "Succeeded", "{scanned:#}");

    // Run the sync CronJobs (in the platform namespace) now rather than on their schedules.
    for (kind, name) in [("MirrorDomain", "e2e"), ("FederationSite", "out")] {
        let label = format!("stella-ops.org/{}", kind.to_ascii_lowercase());
        let cron_job = cluster
            .wait_for(&format!("the {kind} CronJob"), SETTLE, || async {
                cluster
                    .emulator
                    .objects("batch/v1", "CronJob")
                    .into_iter()
                    .find(|c| c["metadata"]["labels"][&label] == name)
                    .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
            })
            .await;
        cluster
            .runner
            .as_ref()
            .unwrap()
            .trigger_cron_job(OPERATOR_NAMESPACE, &cron_job)
            .await
            .unwrap();
    }
    cluster
        .wait_for(
            "the FederationSite reports its cursor lag",
            SETTLE,
            || async {
                let site = cluster
                    .get("FederationSite", Some("tenant-a"), "out")
                    .await?;
                site["status"]["cursorLagSeconds"].as_i64()
            },
        )
        .await;

    // The mirror server, once the sync has given it an export.
    let mirror = cluster
        .wait_for("the mirror server answers", SETTLE, || async {
            let addr = listen_address(&cluster, OPERATOR_NAMESPACE, "tenant-a-e2e-mirror")?;
            let response = reqwest::get(format!("http://{addr}/concelier/exports/index.json"))
                .await
                .ok()?;
            response.status().is_success().then_some(addr)
        })
        .await;
    // A file the export lacks (before Prometheus starts, so the series has two scrapes for
    // rate()).
    let missing = reqwest::get(format!(
        "http://{mirror}/concelier/exports/mirror/e2e/bundle.json"
    ))
    .await
    .unwrap();
    assert_eq!(missing.status(), 404);
    // The operator tells NotifyRules about the sync.
    let synced = cluster
        .wait_for("a mirror.synced event in the outbox", SETTLE, || async {
            let pool = sqlx::PgPool::connect(&cluster.database_url).await.ok()?;
            let payload: Option<serde_json::Value> = sqlx::query_scalar(
                "SELECT payload FROM events_outbox WHERE kind = 'mirror.synced' AND namespace = 'tenant-a'",
            )
            .fetch_optional(&pool)
            .await
            .ok()?;
            pool.close().await;
            payload
        })
        .await;
    assert_eq!(synced["domainId"], "e2e", "{synced}");
    assert_eq!(synced["copied"], 2, "{synced}");
    let notify = listen_address(&cluster, OPERATOR_NAMESPACE, "tenant-a-stellaops-notify")
        .expect("the notify worker runs with a --listen address");

    // Admission reviews, as the API server posts them (the certificate itself is checked
    // by the webhook test; here only the traffic matters).
    let webhook = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!(
        "https://{}/validate/observed",
        cluster.operators[0].webhook_addr
    );
    cluster
        .wait_for("the webhook answers", SETTLE, || async {
            let response = webhook
                .post(&url)
                .json(&pod_review("observed-1", "registry.test/app:1.0"))
                .send()
                .await
                .ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    let digest = format!("registry.test/app@sha256:{}", "b".repeat(64));
    webhook
        .post(&url)
        .json(&pod_review("observed-2", &digest))
        .send()
        .await
        .unwrap();

    // docs/metrics.md against what each binary exposes.
    let docs = documented();
    let mut problems = Vec::new();
    let operator_text = cluster.operators[0]
        .metrics()
        .await
        .expect("operator /metrics");
    problems.extend(compare(
        "operator",
        &operator_text,
        section(&docs, "Operator"),
    ));
    let notify_text = reqwest::get(format!("http://{notify}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    problems.extend(compare(
        "notify worker",
        &notify_text,
        section(&docs, "Notify worker"),
    ));
    let mirror_text = reqwest::get(format!("http://{mirror}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    problems.extend(compare(
        "mirror server",
        &mirror_text,
        section(&docs, "Mirror server"),
    ));

    // A real Prometheus scrapes all three while they run.
    let targets = BTreeMap::from([
        ("operator", cluster.operators[0].metrics_addr.clone()),
        ("notify", notify.clone()),
        ("mirror", mirror.clone()),
    ]);
    let dir = cluster.dir.join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let prometheus = Prometheus::start(&prometheus_binary, &dir, &targets);
    // Two scrapes of each target at least, so rate() has two points.
    cluster
        .wait_for(
            "Prometheus has scraped every target twice",
            SETTLE,
            || async {
                let up = prometheus
                    .query("count_over_time(up[1m]) >= 3")
                    .await
                    .ok()?;
                (up.len() == targets.len()).then_some(())
            },
        )
        .await;
    // More mirror traffic while it is scraped.
    for _ in 0..3 {
        let _ = reqwest::get(format!("http://{mirror}/concelier/exports/index.json")).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut empty = Vec::new();
    let dashboards = repo_root().join("config/monitoring/dashboards");
    let queries = dashboard_queries(&dashboards);
    assert!(queries.len() >= 20, "{} dashboard queries", queries.len());
    for (file, panel, expr) in &queries {
        match prometheus.query(expr).await {
            Ok(result) if result.is_empty() => {
                empty.push(format!("{file} / {panel}: {expr} returned nothing"))
            }
            Ok(_) => {}
            Err(error) => empty.push(format!("{file} / {panel}: {expr}: {error}")),
        }
    }
    let exposed: BTreeSet<String> = [&operator_text, &notify_text, &mirror_text]
        .iter()
        .flat_map(|t| families(t).into_keys())
        .chain(section(&docs, "Federation API").keys().cloned())
        .collect();
    for rule in rules() {
        let name = rule.record.clone().or(rule.alert.clone()).unwrap();
        if rule.record.is_some() {
            match prometheus.query(&rule.expr).await {
                Ok(result) if result.is_empty() => {
                    empty.push(format!("recording rule {name} returned nothing"))
                }
                Ok(_) => {}
                Err(error) => empty.push(format!("recording rule {name}: {error}")),
            }
        }
        for metric in metric_names(&rule.expr) {
            if family_of(&metric, &exposed).is_none() {
                empty.push(format!(
                    "rule {name} reads {metric}, which no binary exposes"
                ));
            }
        }
    }
    eprintln!(
        "{} dashboard queries and {} rules checked against Prometheus",
        queries.len(),
        rules().len()
    );
    problems.extend(empty);
    assert!(
        problems.is_empty(),
        "{}\n--- prometheus log\n{}",
        problems.join("\n"),
        prometheus.log()
    );
    drop(prometheus);
    cluster.stop().await;
}

#[test]
fn metric_names_leave_out_functions_labels_and_recording_rules() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (size, le) (rate(scanner_scan_latency_seconds_bucket{size="small"}[1h]))) > 60 and stellaops:scan_failure_ratio:rate5m > 0 or absent(stellaops_leader)"#,
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "scanner_scan_latency_seconds_bucket".to_string(),
            "stellaops_leader".to_string()
        ])
    );
}
