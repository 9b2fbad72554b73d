//! The reports API as the real operator serves it: the leader issues its certificate from
//! the operator's CA, every replica serves with it, the front proxy is trusted by the CA
//! and names in kube-system's extension-apiserver-authentication ConfigMap, and RBAC
//! (through SubjectAccessReviews) decides what the forwarded user reads.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Cluster, OPERATOR_NAMESPACE};

const SETTLE: Duration = Duration::from_secs(60);

fn front_proxy() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "front-proxy-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "front-proxy-client");
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_pem, cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_serves_reports_to_the_front_proxy_as_rbac_allows() {
    let Some(mut cluster) = Cluster::start("e2e_reports").await else {
        return;
    };
    let (ca, proxy_cert, proxy_key) = front_proxy();
    // What kube-apiserver publishes for extension API servers.
    cluster
        .apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
            "data": {
                "requestheader-client-ca-file": ca,
                "requestheader-allowed-names": "[\"front-proxy-client\"]",
                "requestheader-username-headers": "[\"X-Remote-User\"]",
                "requestheader-group-headers": "[\"X-Remote-Group\"]",
                "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
            },
        }))
        .await;
    cluster
        .apply(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "security-reads-reports"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "stellaops-reports-view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "security"}],
        }))
        .await;
    // A result, written as the scan worker writes one.
    let pool = sqlx::PgPool::connect(&cluster.database_url).await.unwrap();
    stellaops_store::migrate(&pool).await.unwrap();
    let digest = format!("sha256:{}", "5e".repeat(32));
    let mut tx = pool.begin().await.unwrap();
    stellaops_store::scans::insert_result(
        &mut tx,
        &stellaops_store::scans::NewResult {
            image_digest: &digest,
            image_ref: "registry.test/app:1.0",
            advisory_snapshot: 1,
            scan_namespace: Some("tenant-a"),
            scan_name: Some("app"),
            scan_uid: Some("uid-app"),
            sbom_uri: "s3://bucket/scanner/sboms/x.cdx.json",
            sbom_sha256: "sha256:x",
            components: 1,
            counts: [0, 1, 0, 0],
            verdict: "Fail",
            policy: json!({}),
            policy_digest: None,
            started_at: chrono::Utc::now(),
            attestation: None,
        },
        &[stellaops_store::scans::NewFinding {
            merge_hash: "sha256:m".into(),
            vuln_id: "CVE-2025-1".into(),
            purl: "pkg:npm/left-pad@1.0.0".into(),
            severity: Some("high".into()),
            outcome: "fails".into(),
            decided_by: "threshold".into(),
            ..Default::default()
        }],
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    pool.close().await;

    // A Pod running the scanned digest in another namespace: its workload report comes
    // from the leader's Pod cache and the digest's latest result.
    cluster
        .apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tenant-b"}}))
        .await;
    cluster
        .apply(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "tenant-b"},
            "spec": {"containers": [{"name": "app", "image": format!("registry.test/app@{digest}")}]}}))
        .await;
    cluster.start_operator("a", &[]);
    // The leader's certificate, from the operator's CA.
    let ca_secret = cluster
        .wait_for("the operator's CA", SETTLE, || async {
            cluster
                .get("Secret", Some(OPERATOR_NAMESPACE), "stellaops-zastava-ca")
                .await
        })
        .await;
    cluster
        .wait_for("the reports certificate", SETTLE, || async {
            cluster
                .get("Secret", Some(OPERATOR_NAMESPACE), "stellaops-reports-tls")
                .await
        })
        .await;
    use base64::Engine as _;
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(ca_secret["data"]["bundle.crt"].as_str().unwrap())
        .unwrap();
    let addr: std::net::SocketAddr = cluster.operators[0].reports_addr.parse().unwrap();
    let host = format!("stellaops-reports.{OPERATOR_NAMESPACE}.svc");
    // Verified as the API server verifies an APIService's backend.
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&bundle).unwrap())
        .identity(
            reqwest::Identity::from_pem(format!("{proxy_cert}{proxy_key}").as_bytes()).unwrap(),
        )
        .resolve(&host, addr)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!(
        "https://{host}:{}/apis/reports.stella-ops.org/v1alpha1/namespaces/tenant-a/vulnerabilityreports/app",
        addr.port()
    );
    let as_user = |group: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let response = client
                .get(&url)
                .header("X-Remote-User", "sam")
                .header("X-Remote-Group", group)
                .send()
                .await
                .ok()?;
            let code = response.status().as_u16();
            Some((code, response.json::<Value>().await.ok()?))
        }
    };
    // Until the certificate and the ConfigMap are loaded, handshakes fail or get 401.
    let report = cluster
        .wait_for("the reports API answers", SETTLE, || async {
            as_user("security").await.filter(|(code, _)| *code == 200)
        })
        .await
        .1;
    assert_eq!(report["kind"], "VulnerabilityReport");
    assert_eq!(report["verdict"], "Fail");
    assert_eq!(report["findings"][0]["id"], "CVE-2025-1");
    let workload_url = format!(
        "https://{host}:{}/apis/reports.stella-ops.org/v1alpha1/namespaces/tenant-b/vulnerabilityreports/pod-web-app",
        addr.port()
    );
    let workload = cluster
        .wait_for("the running Pod's report", SETTLE, || async {
            let response = client
                .get(&workload_url)
                .header("X-Remote-User", "sam")
                .header("X-Remote-Group", "security")
                .send()
                .await
                .ok()?;
            (response.status() == 200).then_some(())?;
            response.json::<Value>().await.ok()
        })
        .await;
    assert_eq!(workload["verdict"], "Fail", "{workload}");
    assert_eq!(workload["workload"]["kind"], "Pod", "{workload}");
    assert_eq!(workload["findings"][0]["id"], "CVE-2025-1");
    let verdict: Value = client
        .get(format!(
            "https://{host}:{}/apis/reports.stella-ops.org/v1alpha1/imageverdicts/{}",
            addr.port(),
            digest.replace(':', "-")
        ))
        .header("X-Remote-User", "sam")
        .header("X-Remote-Group", "security")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        verdict["runningIn"],
        json!([{"namespace": "tenant-b", "kind": "Pod", "name": "web", "container": "app"}]),
        "{verdict}"
    );
    let (code, refused) = as_user("interns").await.unwrap();
    assert_eq!(code, 403, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("User \"sam\" cannot get resource \"vulnerabilityreports\""),
        "{refused}"
    );
    assert!(
        cluster.forbidden_operator_requests().is_empty(),
        "{:?}",
        cluster.forbidden_operator_requests()
    );
    cluster.stop().await;
}
