//! The reports API over HTTPS as clients and the front proxy reach it.

use serde_json::Value;

use crate::fixture::{self, Fixture};

const BASE: &str = "/apis/reports.stella-ops.org/v1alpha1";

/// team-a/web (Fail: a critical and a high, one medium waived by VEX), team-a/api (Pass),
/// team-b/worker (Warn) scanning the same image as team-a/web, and a Schedule's
/// re-evaluation that is no Scan's.
pub async fn seed(f: &Fixture) {
    fixture::advisory(&f.pool).await;
    let sbom = fixture::put_sbom(&f.s3, &f.bucket, "registry.example/acme/web:1.0").await;
    let sbom = (sbom.0.as_str(), sbom.1.as_str());
    fixture::record(
        &f.pool,
        sbom,
        "team-a",
        "web",
        "registry.example/acme/web:1.0",
        1,
        "Fail",
        &[
            (
                "CVE-2024-0001",
                "pkg:deb/debian/openssl@3.0.11?distro=debian-12",
                "critical",
                "fails",
            ),
            ("CVE-2024-0002", "pkg:npm/express@4.18.0", "high", "fails"),
            (
                "CVE-2024-0003",
                "pkg:deb/debian/libc6@2.36",
                "medium",
                "ignored",
            ),
        ],
    )
    .await;
    fixture::record(
        &f.pool,
        sbom,
        "team-a",
        "api",
        "registry.example/acme/api:2",
        2,
        "Pass",
        &[],
    )
    .await;
    fixture::record(
        &f.pool,
        sbom,
        "team-b",
        "worker",
        "registry.example/acme/web:1.0",
        1,
        "Warn",
        &[("CVE-2024-0004", "pkg:npm/express@4.18.0", "low", "warns")],
    )
    .await;
    fixture::record(
        &f.pool,
        sbom,
        "team-a",
        "schedule/nightly",
        "registry.example/acme/api:2",
        2,
        "Pass",
        &[],
    )
    .await;
}

async fn get(client: &reqwest::Client, f: &Fixture, path: &str) -> (u16, Value) {
    let response = client.get(f.url(path)).send().await.unwrap();
    let code = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (
        code,
        serde_json::from_slice(&body)
            .unwrap_or(Value::String(String::from_utf8_lossy(&body).into())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_proxy_is_trusted_for_its_headers_and_nobody_else_is() {
    let Some(f) = fixture::start("reports_front_proxy").await else {
        return;
    };
    seed(&f).await;
    let proxy = f.front_proxy_ca.issue("front-proxy-client", &[], &[]);
    let as_proxy = f.client(Some(&proxy));
    let path = format!("{BASE}/namespaces/team-a/vulnerabilityreports/web");

    // The API server forwards alice of team-a-devs.
    let response = as_proxy
        .get(f.url(&path))
        .header("X-Remote-User", "alice")
        .header("X-Remote-Group", "team-a-devs")
        .header("X-Remote-Extra-Scopes", "view")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["kind"], "VulnerabilityReport");
    assert_eq!(report["verdict"], "Fail");
    assert_eq!(report["metadata"]["labels"]["verdict"], "Fail");
    assert_eq!(report["metadata"]["labels"]["severity"], "critical");
    assert_eq!(
        report["metadata"]["labels"]["repository"],
        "registry.example_acme_web"
    );
    assert_eq!(report["summary"]["critical"], 1);
    assert_eq!(
        report["summary"]["medium"], 0,
        "the waived one is not counted"
    );
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 3);
    assert_eq!(findings[0]["id"], "CVE-2024-0001");
    assert_eq!(
        findings[0]["aliases"],
        serde_json::json!(["DSA-5555-1", "GHSA-aaaa-bbbb-cccc"])
    );
    assert_eq!(findings[0]["cvss"]["score"], 9.8);
    assert_eq!(findings[0]["package"]["name"], "debian/openssl");
    assert_eq!(findings[0]["installedVersion"], "3.0.11");
    assert_eq!(findings[2]["outcome"], "ignored");
    assert_eq!(findings[2]["decidedBy"], "vex:vendor");

    // The same headers from anyone but the front proxy count for nothing.
    let nobody = f.client(None);
    let response = nobody
        .get(f.url(&path))
        .header("X-Remote-User", "alice")
        .header("X-Remote-Group", "system:masters")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let status: Value = response.json().await.unwrap();
    assert_eq!(
        (
            status["kind"].as_str(),
            status["reason"].as_str(),
            status["code"].as_i64()
        ),
        (Some("Status"), Some("Unauthorized"), Some(401))
    );
    // A proxy certificate with a name the ConfigMap does not allow is no proxy.
    let impostor = f.client(Some(&f.front_proxy_ca.issue("someone-else", &[], &[])));
    let (code, _) = get(&impostor, &f, &path).await;
    assert_eq!(code, 401);
    // The proxy without a user header authenticates nobody.
    let (code, _) = get(&as_proxy, &f, &path).await;
    assert_eq!(code, 401);
    // A user's own certificate: its headers are not believed (bob stays bob, refused).
    let bob = f.client(Some(&f.client_ca.issue("bob", &["nobody"], &[])));
    let response = bob
        .get(f.url(&path))
        .header("X-Remote-User", "alice")
        .header("X-Remote-Group", "team-a-devs")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["reason"], "Forbidden");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("User \"bob\" cannot get resource \"vulnerabilityreports\""),
        "{status}"
    );
    // Discovery needs authentication, not authorization; health needs neither.
    assert_eq!(get(&bob, &f, "/apis").await.0, 200);
    assert_eq!(get(&nobody, &f, "/apis").await.0, 401);
    assert_eq!(get(&nobody, &f, "/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_lists_pages_and_refuses_like_the_api_server() {
    let Some(f) = fixture::start("reports_api").await else {
        return;
    };
    seed(&f).await;
    let security = f.client(Some(&f.client_ca.issue("sam", &["security"], &[])));

    // A LIST across namespaces: the Schedule's re-evaluation is no Scan's report.
    let (code, list) = get(&security, &f, &format!("{BASE}/vulnerabilityreports")).await;
    assert_eq!(code, 200, "{list}");
    let names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["metadata"]["namespace"].as_str().unwrap(),
                i["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["team-a/api", "team-a/web", "team-b/worker"]);
    assert_eq!(list["kind"], "VulnerabilityReportList");
    let rv: i64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv >= 4);

    // Selectors.
    let (_, failing) = get(
        &security,
        &f,
        &format!("{BASE}/vulnerabilityreports?labelSelector=verdict%3DFail"),
    )
    .await;
    assert_eq!(failing["items"].as_array().unwrap().len(), 1);
    let (_, some) = get(
        &security,
        &f,
        &format!("{BASE}/vulnerabilityreports?labelSelector=severity%20in%20(low,critical),repository%3Dregistry.example_acme_web"),
    )
    .await;
    assert_eq!(some["items"].as_array().unwrap().len(), 2);
    let (_, by_field) = get(
        &security,
        &f,
        &format!("{BASE}/vulnerabilityreports?fieldSelector=metadata.namespace%3Dteam-b"),
    )
    .await;
    assert_eq!(by_field["items"][0]["metadata"]["name"], "worker");
    let (code, bad) = get(
        &security,
        &f,
        &format!("{BASE}/vulnerabilityreports?fieldSelector=spec.image%3Dx"),
    )
    .await;
    assert_eq!((code, bad["reason"].as_str()), (400, Some("BadRequest")));

    // Pages read at the first page's resourceVersion: a result written between pages
    // shows up in none of them.
    let (_, first) = get(
        &security,
        &f,
        &format!("{BASE}/vulnerabilityreports?limit=2"),
    )
    .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    let sbom = fixture::put_sbom(&f.s3, &f.bucket, "x").await;
    fixture::record(
        &f.pool,
        (&sbom.0, &sbom.1),
        "team-b",
        "zzz-new",
        "x:1",
        9,
        "Pass",
        &[],
    )
    .await;
    let (_, second) = get(
        &security,
        &f,
        &format!("{BASE}/vulnerabilityreports?limit=2&continue={token}"),
    )
    .await;
    let second_items = second["items"].as_array().unwrap();
    assert_eq!(second_items.len(), 1, "{second}");
    assert_eq!(second_items[0]["metadata"]["name"], "worker");
    assert_eq!(
        second["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
    assert!(second["metadata"].get("continue").is_none());

    // An expired or forged continue token.
    use base64::Engine as _;
    let old = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"v":1,"rv":1,"ns":"","name":"","at":1000}"#);
    let (code, gone) = get(
        &security,
        &f,
        &format!("{BASE}/vulnerabilityreports?continue={old}"),
    )
    .await;
    assert_eq!(
        (code, gone["reason"].as_str(), gone["code"].as_i64()),
        (410, Some("Expired"), Some(410))
    );
    assert_eq!(
        get(
            &security,
            &f,
            &format!("{BASE}/vulnerabilityreports?continue=garbage")
        )
        .await
        .0,
        400
    );

    // 404 in Kubernetes' shape.
    let (code, missing) = get(
        &security,
        &f,
        &format!("{BASE}/namespaces/team-a/vulnerabilityreports/nope"),
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(
        missing["message"],
        "vulnerabilityreports.reports.stella-ops.org \"nope\" not found"
    );
    assert_eq!(missing["details"]["name"], "nope");

    // SBOM reports, and the document from S3 through the API.
    let (_, sbom_report) = get(
        &security,
        &f,
        &format!("{BASE}/namespaces/team-a/sbomreports/web"),
    )
    .await;
    assert_eq!(sbom_report["componentCount"], 3);
    assert_eq!(
        sbom_report["ecosystems"],
        serde_json::json!({"deb": 2, "npm": 1})
    );
    assert_eq!(sbom_report["components"].as_array().unwrap().len(), 3);
    let (code, document) = get(
        &security,
        &f,
        &format!("{BASE}/namespaces/team-a/sbomreports/web/document"),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(document["bomFormat"], "CycloneDX");
    let (_, spdx) = get(
        &security,
        &f,
        &format!("{BASE}/namespaces/team-a/sbomreports/web/document?format=spdx"),
    )
    .await;
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");

    // Image verdicts: one per digest, with the Scans that have it.
    let (_, verdicts) = get(&security, &f, &format!("{BASE}/imageverdicts")).await;
    let web = &verdicts["items"][0];
    assert_eq!(
        web["metadata"]["name"],
        fixture::digest(1).replace(':', "-")
    );
    assert_eq!(web["verdict"], "Warn", "the latest result of the digest");
    assert_eq!(web["scans"].as_array().unwrap().len(), 2);
    assert_eq!(
        get(
            &security,
            &f,
            &format!("{BASE}/namespaces/team-a/imageverdicts/x")
        )
        .await
        .0,
        404
    );

    // Only GET.
    let response = security
        .delete(f.url(&format!(
            "{BASE}/namespaces/team-a/vulnerabilityreports/web"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);

    // Authorization is asked once per user and request, then cached.
    let before = f.reviews();
    for _ in 0..3 {
        assert_eq!(
            get(
                &security,
                &f,
                &format!("{BASE}/namespaces/team-a/vulnerabilityreports/web")
            )
            .await
            .0,
            200
        );
    }
    assert_eq!(f.reviews(), before + 1);
}

/// What runs where: `team-c`'s Deployment `shop` runs digest 1 (scanned by team-a/web and
/// then team-b/worker), its sidecar runs an image nobody scanned, and a workload in
/// team-a has a report name that a Scan already holds.
async fn seed_running(f: &Fixture) {
    use stellaops_store::running_images::{RunningImage, apply};
    let row =
        |ns: &str, name: &str, kind: &str, workload: &str, container: &str, n: u32| RunningImage {
            namespace: ns.into(),
            report_name: name.into(),
            workload_kind: kind.into(),
            workload_name: workload.into(),
            container: container.into(),
            image_ref: format!("registry.example/run/{container}:live"),
            image_digest: fixture::digest(n),
        };
    apply(
        &f.pool,
        &[
            row(
                "team-c",
                "deployment-shop-web",
                "Deployment",
                "shop",
                "web",
                1,
            ),
            row(
                "team-c",
                "deployment-shop-proxy",
                "Deployment",
                "shop",
                "proxy",
                77,
            ),
            row("team-a", "web", "Pod", "web", "web", 2),
            row("team-d", "statefulset-db-db", "StatefulSet", "db", "db", 2),
        ],
        &[],
        &[],
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_workloads_have_reports_and_verdicts_say_where_images_run() {
    let Some(f) = fixture::start("reports_running").await else {
        return;
    };
    seed(&f).await;
    seed_running(&f).await;
    let security = f.client(Some(&f.client_ca.issue("sam", &["security"], &[])));
    let name_of = |i: &Value| {
        format!(
            "{}/{}",
            i["metadata"]["namespace"].as_str().unwrap(),
            i["metadata"]["name"].as_str().unwrap()
        )
    };

    // Merged with the Scans' reports in (namespace, name) order; the sidecar's image has no
    // result, so no report; the Scan keeps its name in team-a.
    let (code, list) = get(&security, &f, &format!("{BASE}/vulnerabilityreports")).await;
    assert_eq!(code, 200, "{list}");
    let names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(name_of)
        .collect();
    assert_eq!(
        names,
        [
            "team-a/api",
            "team-a/web",
            "team-b/worker",
            "team-c/deployment-shop-web",
            "team-d/statefulset-db-db"
        ]
    );
    assert!(list["items"][1]["scan"].is_object());

    // One page at a time gives the same, each once.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let (_, page) = get(
            &security,
            &f,
            &format!("{BASE}/vulnerabilityreports?limit=1&continue={token}"),
        )
        .await;
        paged.extend(page["items"].as_array().unwrap().iter().map(name_of));
        match page["metadata"]["continue"].as_str() {
            Some(next) => token = next.to_string(),
            None => break,
        }
    }
    assert_eq!(paged, names);

    // The workload's report: the latest result of its digest (team-b/worker's Warn), its
    // own image reference, the workload instead of a Scan, and labels to select it by.
    let (code, shop) = get(
        &security,
        &f,
        &format!("{BASE}/namespaces/team-c/vulnerabilityreports/deployment-shop-web"),
    )
    .await;
    assert_eq!(code, 200, "{shop}");
    assert_eq!(shop["verdict"], "Warn");
    assert_eq!(shop["image"], "registry.example/run/web:live");
    assert_eq!(shop["imageDigest"], fixture::digest(1));
    assert!(shop.get("scan").is_none(), "{shop}");
    assert_eq!(
        shop["workload"],
        serde_json::json!({"namespace": "team-c", "kind": "Deployment", "name": "shop", "container": "web"})
    );
    assert_eq!(shop["findings"][0]["id"], "CVE-2024-0004", "{shop}");
    assert_eq!(shop["findings"][0]["usedByEntrypoint"], true, "{shop}");
    let (_, web) = get(
        &security,
        &f,
        &format!("{BASE}/namespaces/team-a/vulnerabilityreports/web"),
    )
    .await;
    let used: Vec<(&str, &Value)> = web["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap(), &f["usedByEntrypoint"]))
        .collect();
    assert_eq!(
        used,
        [
            ("CVE-2024-0001", &Value::Null),
            ("CVE-2024-0002", &Value::Bool(true)),
            ("CVE-2024-0003", &Value::Bool(false))
        ],
        "{web}"
    );
    assert_eq!(shop["metadata"]["labels"]["source"], "workload");
    assert_eq!(shop["metadata"]["labels"]["workload-kind"], "deployment");
    let (_, workloads) = get(
        &security,
        &f,
        &format!("{BASE}/vulnerabilityreports?labelSelector=source%3Dworkload"),
    )
    .await;
    let names: Vec<String> = workloads["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(name_of)
        .collect();
    assert_eq!(
        names,
        ["team-c/deployment-shop-web", "team-d/statefulset-db-db"]
    );
    let (_, sbom) = get(
        &security,
        &f,
        &format!("{BASE}/namespaces/team-c/sbomreports/deployment-shop-web"),
    )
    .await;
    assert_eq!(sbom["componentCount"], 3, "{sbom}");

    // Where each digest runs, under its ImageVerdict.
    let (_, verdict) = get(
        &security,
        &f,
        &format!(
            "{BASE}/imageverdicts/{}",
            fixture::digest(2).replace(':', "-")
        ),
    )
    .await;
    let running: Vec<String> = verdict["runningIn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            format!(
                "{}/{}/{}",
                w["namespace"].as_str().unwrap(),
                w["kind"].as_str().unwrap(),
                w["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(running, ["team-a/Pod/web", "team-d/StatefulSet/db"]);

    // The workload stops running: its report is gone from the next LIST and GET.
    stellaops_store::running_images::apply(
        &f.pool,
        &[],
        &[("team-c".into(), "deployment-shop-web".into())],
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        get(
            &security,
            &f,
            &format!("{BASE}/namespaces/team-c/vulnerabilityreports/deployment-shop-web"),
        )
        .await
        .0,
        404
    );
}
