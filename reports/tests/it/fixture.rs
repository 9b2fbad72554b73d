//! One reports server per test: results written into the real test PostgreSQL through the
//! store's own functions, SBOMs into the real S3 server, SubjectAccessReviews answered by
//! the API server emulator from the project's own ClusterRole, and test CAs standing in for
//! the cluster's front-proxy and client CAs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use sqlx::PgPool;
use stellaops_reports::auth::{AuthConfig, Authenticator};
use stellaops_reports::authz::Authorizer;
use stellaops_reports::server::{Reports, Settings};
use stellaops_store::scans::{NewFinding, NewPackage, NewResult, insert_result};
use stellaops_testing::apiserver::{Emulator, EmulatorOptions};

/// A CA that issues client or server certificates.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM) for `cn` in organizations `orgs`, or for the server names.
    pub fn issue(&self, cn: &str, orgs: &[&str], server_names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(
            server_names
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        for org in orgs {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *org);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

pub struct Fixture {
    pub addr: SocketAddr,
    pub pool: PgPool,
    pub emulator: Emulator,
    pub serving_ca: Ca,
    pub front_proxy_ca: Ca,
    pub client_ca: Ca,
    pub dir: PathBuf,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
}

/// The ClusterRole `stellaops-reports-view` exactly as config/reports ships it.
pub fn reports_view_role() -> Value {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/reports/reports.yaml"),
    )
    .unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            serde_yaml::from_value::<Value>(serde_yaml::Value::deserialize(d).unwrap()).unwrap()
        })
        .find(|d| d["kind"] == "ClusterRole")
        .expect("config/reports has the ClusterRole")
}

use serde::Deserialize as _;

fn rbac() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}),
        reports_view_role(),
        // alice's team may read team-a's reports, nothing else.
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "team-a-reports", "namespace": "team-a"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "stellaops-reports-view"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "team-a-devs"}]}),
        // The security team reads everything.
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "security-reports"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "stellaops-reports-view"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "security"}]}),
    ]
}

pub fn digest(n: u32) -> String {
    format!("sha256:{:064x}", n)
}

/// A SBOM (CycloneDX) stored the way the scan worker stores it; returns (uri, sha256).
pub async fn put_sbom(s3: &aws_sdk_s3::Client, bucket: &str, image: &str) -> (String, String) {
    use sha2::Digest as _;
    let bytes = serde_json::to_vec(&json!({"bomFormat": "CycloneDX", "specVersion": "1.6",
        "metadata": {"component": {"name": image}}}))
    .unwrap();
    let sha = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
    let key = stellaops_store::s3::layout::image_inventory(&sha);
    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .unwrap();
    let spdx = serde_json::to_vec(&json!({"spdxVersion": "SPDX-2.3", "name": image})).unwrap();
    s3.put_object()
        .bucket(bucket)
        .key(stellaops_store::s3::layout::image_inventory_spdx(&sha))
        .body(ByteStream::from(spdx))
        .send()
        .await
        .unwrap();
    (format!("s3://{bucket}/{key}"), sha)
}

/// One result of Scan `namespace/name` for `image` (digest number `n`), with `findings`
/// as (vulnerability, purl, severity, outcome) and the image's inventory; its id.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    pool: &PgPool,
    sbom: (&str, &str),
    namespace: &str,
    name: &str,
    image: &str,
    n: u32,
    verdict: &str,
    findings: &[(&str, &str, &str, &str)],
) -> i64 {
    let image_digest = digest(n);
    let counted = |s: &str| {
        findings
            .iter()
            .filter(|f| f.2 == s && f.3 != "ignored")
            .count() as i32
    };
    let uid = format!("uid-{namespace}-{name}");
    let new_findings: Vec<NewFinding> = findings
        .iter()
        .map(|(vuln, purl, severity, outcome)| NewFinding {
            merge_hash: stellaops_store::advisories::CanonicalAdvisory::merge_hash_of(
                vuln,
                purl.split('@').next().unwrap(),
            ),
            vuln_id: vuln.to_string(),
            purl: purl.to_string(),
            severity: Some(severity.to_string()),
            fixed_version: Some("9.9.9".into()),
            layer_digest: digest(1000),
            outcome: outcome.to_string(),
            decided_by: if *outcome == "ignored" {
                "vex:vendor".into()
            } else {
                "threshold".into()
            },
            reason: format!("{severity} finding, {outcome}"),
        })
        .collect();
    let packages: Vec<NewPackage> = [
        "pkg:deb/debian/openssl@3.0.11",
        "pkg:deb/debian/libc6@2.36",
        "pkg:npm/express@4.18.0",
    ]
    .iter()
    .map(|purl| NewPackage {
        affects_key: purl.split('@').next().unwrap().into(),
        purl: purl.to_string(),
        version: purl.split('@').nth(1).unwrap().into(),
        layer_digest: digest(1000),
        // The Usage view: the entrypoint loads express, not libc6; openssl's use is unknown.
        used_by_entrypoint: match *purl {
            "pkg:npm/express@4.18.0" => Some(true),
            "pkg:deb/debian/libc6@2.36" => Some(false),
            _ => None,
        },
    })
    .collect();
    let mut tx = pool.begin().await.unwrap();
    let id = insert_result(
        &mut tx,
        &NewResult {
            image_digest: &image_digest,
            image_ref: image,
            advisory_snapshot: 7,
            scan_namespace: Some(namespace),
            scan_name: Some(name),
            scan_uid: Some(&uid),
            sbom_uri: sbom.0,
            sbom_sha256: sbom.1,
            components: packages.len() as i32,
            counts: ["critical", "high", "medium", "low"].map(counted),
            verdict,
            policy: json!({"failOn": "high"}),
            policy_digest: Some("sha256:policy"),
            started_at: chrono::Utc::now(),
            attestation: None,
        },
        &new_findings,
        &packages,
    )
    .await
    .unwrap();
    // The event the scan worker writes with its result (what wakes watches).
    stellaops_store::outbox::publish(
        &mut *tx,
        &stellaops_store::outbox::NewEvent {
            kind: "report.ready".into(),
            namespace: Some(namespace.into()),
            subject: format!("{image}@{image_digest}"),
            severity: None,
            payload: json!({"scanId": id, "verdict": verdict}),
            idempotency_key: format!("report.ready/{id}"),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

/// The advisory behind `CVE-2024-0001` in openssl, with its aliases and CVSS.
pub async fn advisory(pool: &PgPool) {
    let affects = "pkg:deb/debian/openssl";
    let advisory = stellaops_store::advisories::CanonicalAdvisory {
        merge_hash: stellaops_store::advisories::CanonicalAdvisory::merge_hash_of(
            "CVE-2024-0001",
            affects,
        ),
        vuln_id: "CVE-2024-0001".into(),
        cve: Some("CVE-2024-0001".into()),
        aliases: vec!["DSA-5555-1".into(), "GHSA-aaaa-bbbb-cccc".into()],
        affects_key: affects.into(),
        ecosystem: "Debian:12".into(),
        ranges: json!([]),
        versions: vec!["3.0.11".into()],
        severity: Some("critical".into()),
        cvss: Some(
            json!({"version": "3.1", "vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "score": 9.8}),
        ),
        summary: Some("a test advisory".into()),
        published: None,
        modified: None,
        withdrawn: None,
    };
    let mut tx = pool.begin().await.unwrap();
    stellaops_store::advisories::lock_changes(&mut tx)
        .await
        .unwrap();
    stellaops_store::advisories::write_canonicals(&mut tx, &[&advisory], None, |_| false)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Start a server over a fresh database and bucket; `None` (skip) without the services.
pub async fn start(name: &str) -> Option<Fixture> {
    let pool = stellaops_testing::migrated_database(name, &stellaops_store::MIGRATOR).await?;
    let endpoint = stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT")?;
    let s3 = stellaops_store::s3::client(&stellaops_store::s3::S3Settings {
        endpoint: Some(endpoint),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("reports-{name}-{}", std::process::id()).replace('_', "-");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();

    let emulator = Emulator::start(EmulatorOptions {
        preload: rbac(),
        stella_crds: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let serving_ca = Ca::new("reports serving CA");
    let front_proxy_ca = Ca::new("front-proxy-ca");
    let client_ca = Ca::new("kubernetes client CA");
    let (cert, key) = serving_ca.issue("stellaops-reports", &[], &["127.0.0.1", "localhost"]);
    let certified = stellaops_tls::certified_key(cert.as_bytes(), key.as_bytes()).unwrap();
    let authenticator = Authenticator::new(AuthConfig {
        requestheader_ca_pem: front_proxy_ca.pem.clone(),
        allowed_names: vec!["front-proxy-client".into()],
        username_headers: vec!["X-Remote-User".into()],
        uid_headers: vec![],
        group_headers: vec!["X-Remote-Group".into()],
        extra_prefixes: vec!["X-Remote-Extra-".into()],
        client_ca_pem: client_ca.pem.clone(),
    })
    .unwrap();
    let reports = Arc::new(Reports {
        settings: Settings::default(),
        pool: Some(pool.clone()),
        s3: Some(s3.clone()),
        authenticator: Arc::new(authenticator),
        authorizer: Authorizer::new(emulator.client(&emulator.admin_token()).await),
        certificate: Arc::new(stellaops_tls::ReloadableCert::new(Some(certified))),
        hub: stellaops_reports::watch::Hub::new(64),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(stellaops_reports::server::serve(
        listener,
        reports,
        std::future::pending(),
    ));
    let dir = std::env::temp_dir().join(format!("stellaops-reports-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Some(Fixture {
        addr,
        pool,
        emulator,
        serving_ca,
        front_proxy_ca,
        client_ca,
        dir,
        s3,
        bucket,
    })
}

impl Fixture {
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// An HTTPS client trusting the server, presenting `identity` (cert and key PEM).
    pub fn client(&self, identity: Option<&(String, String)>) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.serving_ca.pem.as_bytes()).unwrap(),
            );
        if let Some((cert, key)) = identity {
            builder = builder
                .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
        }
        builder.build().unwrap()
    }

    /// A kubeconfig for a user holding `identity`, written to a file.
    pub fn kubeconfig(&self, user: &str, identity: &(String, String)) -> PathBuf {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: reports\n  cluster:\n    server: https://{}\n    certificate-authority-data: {}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: reports\n  context:\n    cluster: reports\n    user: {user}\n    namespace: team-a\ncurrent-context: reports\n",
            self.addr,
            b64(&self.serving_ca.pem),
            b64(&identity.0),
            b64(&identity.1),
        );
        let path = self.dir.join(format!("kubeconfig-{user}"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// How many SubjectAccessReviews the emulator answered.
    pub fn reviews(&self) -> usize {
        self.emulator
            .audit_log()
            .iter()
            .filter(|e| e.path.contains("subjectaccessreviews"))
            .count()
    }
}
