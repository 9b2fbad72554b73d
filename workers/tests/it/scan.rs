//! The scanner against the real registry, S3 server and PostgreSQL: images built here
//! (dpkg and apk databases, node_modules, dist-info, a jar, a .deps.json, whiteouts),
//! pushed, scanned, and the exact inventory, findings and verdict checked.

use std::io::Write;

use serde_json::{Value, json};
use stellaops_scanner::Policy;
use stellaops_store::s3::{S3Settings, client};
use stellaops_testing::oci;
use stellaops_workers::registry::{Credentials, RegistryClient};
use stellaops_workers::scan::{Requester, ScanJob, scan};

fn jar(group: &str, artifact: &str, version: &str) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file(
            format!("META-INF/maven/{group}/{artifact}/pom.properties"),
            options,
        )
        .unwrap();
        write!(
            zip,
            "groupId={group}\nartifactId={artifact}\nversion={version}\n"
        )
        .unwrap();
        zip.start_file("org/Example.class", options).unwrap();
        zip.write_all(b"\xca\xfe\xba\xbe").unwrap();
        zip.finish().unwrap();
    }
    buf.into_inner()
}

pub fn osv(id: &str, ecosystem: &str, name: &str, events: Value, severity: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "modified": "2024-06-01T00:00:00Z", "published": "2024-05-01T00:00:00Z",
        "aliases": [], "summary": format!("{id} in {name}"),
        "affected": [{"package": {"ecosystem": ecosystem, "name": name},
                      "ranges": [{"type": "ECOSYSTEM", "events": events}]}],
        "database_specific": {"severity": severity}
    }))
    .unwrap()
}

pub(crate) struct Env {
    pub(crate) registry: String,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) bucket: String,
    pub(crate) pool: sqlx::PgPool,
}

pub(crate) async fn env(name: &str) -> Option<Env> {
    let registry = stellaops_testing::service("STELLAOPS_TEST_REGISTRY")?;
    let endpoint = stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT")?;
    let pool = stellaops_testing::migrated_database(name, &stellaops_store::MIGRATOR).await?;
    let s3 = client(&S3Settings {
        endpoint: Some(endpoint),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("scan-{name}-{}", std::process::id()).replace('_', "-");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    Some(Env {
        registry,
        s3,
        bucket,
        pool,
    })
}

/// The bytes of the object at `key` in `bucket`; panics naming the key when it is absent.
pub(crate) async fn read_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key} is not in bucket {bucket}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

/// The bytes of the object an `s3://bucket/key` URI names.
pub(crate) async fn read_uri(s3: &aws_sdk_s3::Client, uri: &str) -> Vec<u8> {
    let (bucket, key) = uri
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .unwrap_or_else(|| panic!("{uri} is not an s3:// URI"));
    read_object(s3, bucket, key).await
}

impl Env {
    /// The bytes of the object at `key` in the test's bucket.
    pub(crate) async fn object(&self, key: &str) -> Vec<u8> {
        read_object(&self.s3, &self.bucket, key).await
    }
}

/// A forced scan job against `env` with the default policy and no requester: what the
/// tests of one feature (attach, the Usage view) need around it.
pub(crate) fn default_job<'a>(
    env: &'a Env,
    registry: &'a RegistryClient,
    scratch: &'a std::path::Path,
    signer: Option<&'a stellaops_store::attestation::VerdictSigner>,
    spdx: bool,
) -> ScanJob<'a> {
    ScanJob {
        signer,
        registry,
        s3: &env.s3,
        bucket: &env.bucket,
        pool: &env.pool,
        platform: "linux/amd64",
        policy: Policy::default(),
        requester: Requester::default(),
        spdx,
        scratch,
        force: true,
    }
}

pub async fn ingest(pool: &sqlx::PgPool, docs: Vec<Vec<u8>>) {
    let parsed = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            stellaops_federation::osv::parse(&format!("doc{i}"), d, None, chrono::Utc::now())
                .unwrap()
        })
        .collect();
    stellaops_federation::ingest::ingest(pool, parsed)
        .await
        .unwrap();
}

pub(crate) fn push(env: &Env, repo: &str, layers: Vec<Vec<u8>>) -> oci::BuiltImage {
    let dir = std::env::temp_dir().join(format!("stellaops-scan-{repo}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let built = oci::write_layout(&dir, &layers, "v1");
    oci::push(&dir, "v1", &env.registry, &format!("stellaops-it/{repo}"));
    std::fs::remove_dir_all(&dir).unwrap();
    built
}

pub(crate) fn base_layer() -> Vec<u8> {
    let dpkg = b"Package: openssl\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u1\n\nPackage: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u4\n\nPackage: removed\nStatus: deinstall ok config-files\nVersion: 1.0\n";
    let jar = jar("org.apache.logging.log4j", "log4j-core", "2.14.1");
    oci::tar_of(&[
        ("etc/os-release", b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"),
        ("var/lib/dpkg/status", dpkg),
        ("app/node_modules/express/package.json", br#"{"name": "express", "version": "4.19.1"}"#),
        ("app/node_modules/@babel/core/package.json", br#"{"name": "@babel/core", "version": "7.24.0"}"#),
        ("app/node_modules/express/lib/package.json", br#"{"name": "not-a-package", "version": "0"}"#),
        ("usr/lib/python3/dist-packages/Requests-2.31.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: Requests\nVersion: 2.31.0\n"),
        ("app/lib/log4j-core-2.14.1.jar", &jar),
        ("app/App.deps.json", br#"{"libraries": {"Newtonsoft.Json/12.0.1": {"type": "package", "sha512": "x"}, "App/1.0.0": {"type": "project"}}}"#),
    ])
}

#[tokio::test]
async fn an_image_is_inventoried_matched_and_judged_and_shared_layers_come_from_the_cache() {
    let Some(env) = env("scan_full").await else {
        return;
    };
    ingest(
        &env.pool,
        vec![
            osv(
                "DSA-0001",
                "Debian:12",
                "openssl",
                json!([{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]),
                "high",
            ),
            osv(
                "GHSA-0002",
                "npm",
                "express",
                json!([{"introduced": "0"}, {"fixed": "4.19.2"}]),
                "medium",
            ),
            osv(
                "GHSA-0003",
                "Maven",
                "org.apache.logging.log4j:log4j-core",
                json!([{"introduced": "2.0"}, {"fixed": "2.15.0"}]),
                "critical",
            ),
            osv(
                "PYSEC-0004",
                "PyPI",
                "requests",
                json!([{"introduced": "0"}, {"fixed": "2.32.0"}]),
                "medium",
            ),
            osv(
                "GHSA-0005",
                "NuGet",
                "Newtonsoft.Json",
                json!([{"introduced": "0"}, {"fixed": "13.0.1"}]),
                "high",
            ),
            osv(
                "GHSA-0006",
                "npm",
                "express",
                json!([{"introduced": "5.0.0"}, {"fixed": "5.0.1"}]),
                "critical",
            ),
            osv(
                "DSA-0007",
                "Debian:11",
                "openssl",
                json!([{"introduced": "0"}, {"fixed": "9.9"}]),
                "critical",
            ),
        ],
    )
    .await;
    // Layer 2 removes express (whiteout) and upgrades openssl.
    let upgrade = oci::tar_of(&[
        ("app/node_modules/.wh.express", b""),
        ("var/lib/dpkg/status", b"Package: openssl\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u2\n\nPackage: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u4\n"),
    ]);
    let base = base_layer();
    let first = push(&env, "app", vec![base.clone()]);
    let second = push(&env, "app-patched", vec![base, upgrade]);

    let registry = RegistryClient::new(Credentials::default(), vec![]).unwrap();
    let scratch =
        std::env::temp_dir().join(format!("stellaops-scan-scratch-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let (private, public) = stellaops_store::attestation::generate_key_pair();
    let signer = stellaops_store::attestation::VerdictSigner::from_pem(&private).unwrap();
    let job = ScanJob {
        signer: Some(&signer),
        registry: &registry,
        s3: &env.s3,
        bucket: &env.bucket,
        pool: &env.pool,
        platform: "linux/amd64",
        policy: Policy {
            fail_on: "high".into(),
            warn_on: Some("medium".into()),
            ignore_unfixed: false,
            ..Default::default()
        },
        requester: Requester {
            namespace: Some("prod-eu".into()),
            name: Some("app".into()),
            uid: Some("uid-1".into()),
        },
        spdx: true,
        scratch: &scratch,
        force: true,
    };
    let image = format!("{}/stellaops-it/app:v1", env.registry);
    let summary = scan(&job, &image).await.unwrap();
    assert_eq!(summary.image_digest, first.manifest_digest);
    assert_eq!((summary.layers_analysed, summary.layers_cached), (1, 0));
    assert_eq!(summary.verdict, "Fail");
    assert_eq!(summary.components, 7);
    assert_eq!(
        (
            summary.findings["critical"],
            summary.findings["high"],
            summary.findings["medium"],
            summary.findings["low"]
        ),
        (1, 2, 2, 0)
    );
    // The signed verdict: in S3 under attest/<sha256>.dsse.json, the same bytes in the row,
    // verified by the public key and saying what the summary says.
    let (attestation_key, attestation): (String, Vec<u8>) =
        sqlx::query_as("SELECT attestation_key, attestation FROM scan_results WHERE id = $1")
            .bind(summary.scan_id)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert!(attestation_key.starts_with("attest/"), "{attestation_key}");
    let stored = env.object(&attestation_key).await;
    assert_eq!(stored.as_slice(), attestation.as_slice());
    let keys = stellaops_store::attestation::VerdictKeys::from_pem_bundle(&public).unwrap();
    let signed = keys
        .verify(&attestation_key, &stored, &summary.image_digest)
        .unwrap();
    assert_eq!(signed.verdict, "Fail");
    assert_eq!((signed.findings.critical, signed.findings.high), (1, 2));
    assert_eq!(signed.sbom.uri, summary.sbom_uri);
    // The SBOM in S3: exact inventory, with the layer that brought each component.
    let key = summary
        .sbom_uri
        .strip_prefix(&format!("s3://{}/", env.bucket))
        .unwrap()
        .to_string();
    let bytes = env.object(&key).await;
    let sbom: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(sbom["specVersion"], "1.6");
    let purls: Vec<&str> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert_eq!(
        purls,
        vec![
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?distro=debian-12",
            "pkg:deb/debian/openssl@3.0.11-1~deb12u1?distro=debian-12",
            "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
            "pkg:npm/%40babel/core@7.24.0",
            "pkg:npm/express@4.19.1",
            "pkg:nuget/Newtonsoft.Json@12.0.1",
            "pkg:pypi/requests@2.31.0",
        ]
    );
    assert!(
        sbom["components"][0]["properties"]
            .to_string()
            .contains(&first.layer_digests[0]),
        "each component names its layer"
    );
    assert_eq!(
        summary.sbom_sha256,
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
        )
    );
    let spdx = env
        .s3
        .get_object()
        .bucket(&env.bucket)
        .key(key.replace("cdx", "spdx"))
        .send()
        .await;
    assert!(spdx.is_ok(), "SPDX written when asked");

    // Findings stored per scan; the Debian 11 advisory does not apply to Debian 12.
    let findings: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT vuln_id, purl, fixed_version FROM scan_findings WHERE scan_id = $1 ORDER BY vuln_id",
    )
    .bind(summary.scan_id)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let ids: Vec<&str> = findings.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "DSA-0001",
            "GHSA-0002",
            "GHSA-0003",
            "GHSA-0005",
            "PYSEC-0004"
        ]
    );
    // The report event.
    let events = stellaops_store::outbox::read_after(&env.pool, 0, 10)
        .await
        .unwrap();
    let report = events.iter().find(|e| e.kind == "report.ready").unwrap();
    assert_eq!(report.severity.as_deref(), Some("critical"));
    assert_eq!(report.namespace.as_deref(), Some("prod-eu"));
    assert_eq!(report.payload["verdict"], "Fail");

    // The same scan again gives a byte-identical SBOM.
    let again = scan(&job, &image).await.unwrap();
    assert_eq!(again.sbom_sha256, summary.sbom_sha256);
    assert_eq!(again.layers_cached, 1);

    // The patched image shares the base layer: only the new layer is analysed.
    let patched = scan(
        &job,
        &format!("{}/stellaops-it/app-patched:v1", env.registry),
    )
    .await
    .unwrap();
    assert_eq!(patched.image_digest, second.manifest_digest);
    assert_eq!((patched.layers_analysed, patched.layers_cached), (1, 1));
    assert_eq!(patched.components, 6, "express was deleted by a whiteout");
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT vuln_id FROM scan_findings WHERE scan_id = $1 ORDER BY vuln_id")
            .bind(patched.scan_id)
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(
        ids,
        vec!["GHSA-0003", "GHSA-0005", "PYSEC-0004"],
        "openssl fixed, express gone"
    );
    // The package index for advisory deltas.
    let holders: Vec<String> = sqlx::query_scalar(
        "SELECT image_digest FROM image_packages WHERE affects_key = 'pkg:npm/express'",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(holders, vec![first.manifest_digest.clone()]);
    // Without force, a digest scanned at this advisory snapshot is not pulled again: its
    // result is recorded for the new requester, verdict under the new policy.
    let lenient = ScanJob {
        signer: None,
        force: false,
        policy: Policy {
            fail_on: "critical".into(),
            warn_on: None,
            ignore_unfixed: false,
            ..Default::default()
        },
        ..job
    };
    let reused = scan(&lenient, &image).await.unwrap();
    assert_eq!((reused.layers_analysed, reused.layers_cached), (0, 0));
    assert_eq!(reused.sbom_sha256, summary.sbom_sha256);
    assert_eq!(reused.components, 7);
    assert_eq!(reused.findings, summary.findings);
    assert_eq!(reused.verdict, "Fail", "log4j is critical");
    assert_ne!(reused.scan_id, summary.scan_id);
    // Results an older analyzer made (before an upgrade that reads more) are not reused:
    // the image is analysed again, and that result is reused in turn.
    sqlx::query("UPDATE scan_results SET analyzer = analyzer - 1 WHERE image_digest = $1")
        .bind(&summary.image_digest)
        .execute(&env.pool)
        .await
        .unwrap();
    let rescanned = scan(&lenient, &image).await.unwrap();
    assert!(
        rescanned.analysis_cached || rescanned.layers_analysed + rescanned.layers_cached > 0,
        "{rescanned:?}"
    );
    assert_eq!(rescanned.components, 7);
    let again = scan(&lenient, &image).await.unwrap();
    assert_eq!(
        (
            again.layers_analysed,
            again.layers_cached,
            again.analysis_cached
        ),
        (0, 0, false)
    );
    assert_eq!(again.sbom_sha256, rescanned.sbom_sha256);
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[tokio::test]
async fn a_missing_image_or_a_corrupt_layer_fails_with_a_clear_message() {
    let Some(env) = env("scan_errors").await else {
        return;
    };
    let registry = RegistryClient::new(Credentials::default(), vec![]).unwrap();
    let scratch =
        std::env::temp_dir().join(format!("stellaops-scan-errors-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let job = ScanJob {
        signer: None,
        registry: &registry,
        s3: &env.s3,
        bucket: &env.bucket,
        pool: &env.pool,
        platform: "linux/amd64",
        policy: Policy {
            fail_on: "high".into(),
            warn_on: None,
            ignore_unfixed: false,
            ..Default::default()
        },
        requester: Requester::default(),
        spdx: false,
        scratch: &scratch,
        force: false,
    };
    let missing = scan(&job, &format!("{}/stellaops-it/nothing:v9", env.registry))
        .await
        .unwrap_err();
    assert!(
        format!("{missing:#}").contains("not found in the registry"),
        "{missing:#}"
    );
    // A layer that is not a tar at all (gzip of random bytes).
    let corrupt = push(
        &env,
        "corrupt",
        vec![b"this is not a tar archive, not at all".repeat(20)],
    );
    let error = scan(&job, &format!("{}/stellaops-it/corrupt:v1", env.registry))
        .await
        .unwrap_err();
    let text = format!("{error:#}");
    assert!(
        text.contains(&corrupt.layer_digests[0]) && text.contains("not a readable"),
        "{text}"
    );
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM scan_results")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(recorded, 0, "a failed scan records nothing");
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// A second registry that requires Basic credentials (htpasswd), run by the test.
pub(crate) struct AuthRegistry {
    pub(crate) address: String,
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) async fn auth_registry(name: &str, user: &str, password: &str) -> AuthRegistry {
    let dir = std::env::temp_dir().join(format!(
        "stellaops-auth-registry-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let hash = bcrypt::hash(password, 4).unwrap();
    std::fs::write(dir.join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
    let port = stellaops_testing::ports::unused_port();
    std::fs::write(
        dir.join("config.yml"),
        format!(
            "version: 0.1\nlog: {{ level: warn }}\nstorage:\n  filesystem: {{ rootdirectory: {} }}\n\
             auth:\n  htpasswd:\n    realm: stellaops-test\n    path: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display(),
            dir.join("htpasswd").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("docker-registry (installed by scripts/test.sh)");
    let address = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if let Ok(response) = reqwest::get(format!("http://{address}/v2/")).await {
            assert_eq!(response.status(), 401, "the registry asks for credentials");
            return AuthRegistry {
                address,
                child,
                dir,
            };
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the authenticating registry did not start");
}

#[tokio::test]
async fn a_registry_refusing_access_fails_with_a_clear_message_and_the_pull_secret_works() {
    let Some(env) = env("scan_auth").await else {
        return;
    };
    let registry = auth_registry("scan", "stellaops", "registry-secret").await;
    let dir = std::env::temp_dir().join(format!("stellaops-scan-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let built = oci::write_layout(&dir, &[base_layer()], "v1");
    oci::push_as(
        &dir,
        "v1",
        &registry.address,
        "private/app",
        Some("stellaops:registry-secret"),
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let image = format!("{}/private/app:v1", registry.address);
    let scratch = std::env::temp_dir().join(format!(
        "stellaops-scan-auth-scratch-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&scratch).unwrap();
    let policy = Policy {
        fail_on: "critical".into(),
        warn_on: None,
        ignore_unfixed: false,
        ..Default::default()
    };
    let config = |user: &str, password: &str| {
        let auth = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{user}:{password}"),
        );
        Credentials::from_docker_config(&format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            registry.address
        ))
        .unwrap()
    };
    for (credentials, expected) in [
        (Credentials::default(), None),
        (config("stellaops", "wrong"), None),
        (config("stellaops", "registry-secret"), Some(())),
    ] {
        let client = RegistryClient::new(credentials, vec![]).unwrap();
        let job = ScanJob {
            signer: None,
            registry: &client,
            s3: &env.s3,
            bucket: &env.bucket,
            pool: &env.pool,
            platform: "linux/amd64",
            policy: policy.clone(),
            requester: Requester::default(),
            spdx: false,
            scratch: &scratch,
            force: true,
        };
        match (scan(&job, &image).await, expected) {
            (Ok(summary), Some(())) => assert_eq!(summary.image_digest, built.manifest_digest),
            (Err(error), None) => {
                let text = format!("{error:#}");
                assert!(
                    text.contains(&format!(
                        "registry {} refused access to private/app (401); check the pull secret",
                        registry.address
                    )),
                    "{text}"
                );
            }
            (outcome, expected) => panic!(
                "unexpected {:?} (expected success: {})",
                outcome.map(|s| s.image_digest),
                expected.is_some()
            ),
        }
    }
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn a_layer_decompressing_past_its_cap_is_refused() {
    use stellaops_scanner::analyze::{analyse_layer_capped, max_layer_bytes};
    let layer = oci::gzip(&oci::tar_of(&[("zeros", &vec![0u8; 4 << 20])]));
    let file = std::env::temp_dir().join(format!("stellaops-bomb-{}", std::process::id()));
    std::fs::write(&file, &layer).unwrap();
    let error = analyse_layer_capped(&file, 1 << 20).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("decompresses to more than 1048576 bytes"),
        "{error}"
    );
    assert!(analyse_layer_capped(&file, 8 << 20).is_ok());
    std::fs::remove_file(&file).unwrap();
    assert_eq!(max_layer_bytes(10), 1 << 30, "at least 1 GiB");
    assert_eq!(max_layer_bytes(100 << 20), 20_000 << 20, "200 times");
    assert_eq!(max_layer_bytes(u64::MAX), 64 << 30, "at most 64 GiB");
}

/// Rewrites the cached fragment object of `layer` with `object` (zstd-compressed here),
/// straight into the bucket, as anything holding S3 write access could.
/// Store `object` zstd-compressed at `key`, as the layer cache stores its objects.
async fn put_compressed(env: &Env, key: &str, object: &[u8]) {
    env.s3
        .put_object()
        .bucket(&env.bucket)
        .key(key)
        .body(zstd::encode_all(object, 3).unwrap().into())
        .send()
        .await
        .unwrap();
}

/// The object at `key`, decompressed.
async fn get_compressed(env: &Env, key: &str) -> Vec<u8> {
    zstd::decode_all(env.object(key).await.as_slice()).unwrap()
}

async fn overwrite_fragment(env: &Env, layer: &str, object: &[u8]) {
    put_compressed(
        env,
        &stellaops_store::s3::layout::layer_fragment(layer),
        object,
    )
    .await;
}

/// The key of the sealed analysis of image manifest `digest`.
fn analysis_key(digest: &str) -> String {
    stellaops_store::s3::layout::image_analysis(
        digest,
        stellaops_scanner::analyze::ANALYZER_VERSION,
    )
}

/// Deletes the sealed analysis of image manifest `digest`, so that the next scan of the
/// image reads its layers' fragments.
async fn forget_analysis(env: &Env, digest: &str) {
    env.s3
        .delete_object()
        .bucket(&env.bucket)
        .key(analysis_key(digest))
        .send()
        .await
        .unwrap();
}

async fn read_fragment(env: &Env, layer: &str) -> Vec<u8> {
    get_compressed(env, &stellaops_store::s3::layout::layer_fragment(layer)).await
}

#[tokio::test]
async fn a_layer_fragment_written_by_anything_but_the_scanner_is_not_reused() {
    let Some(env) = env("scan_fragment_seal").await else {
        return;
    };
    ingest(
        &env.pool,
        vec![osv(
            "DSA-0001",
            "Debian:12",
            "openssl",
            json!([{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]),
            "high",
        )],
    )
    .await;
    let built = push(&env, "sealed", vec![base_layer()]);
    let layer = built.layer_digests[0].clone();
    let image = format!("{}/stellaops-it/sealed:v1", env.registry);
    let registry = RegistryClient::new(Credentials::default(), vec![]).unwrap();
    let scratch = std::env::temp_dir().join(format!(
        "stellaops-scan-sealed-scratch-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&scratch).unwrap();
    let (private, _) = stellaops_store::attestation::generate_key_pair();
    let signer = stellaops_store::attestation::VerdictSigner::from_pem(&private).unwrap();
    let job = ScanJob {
        signer: Some(&signer),
        registry: &registry,
        s3: &env.s3,
        bucket: &env.bucket,
        pool: &env.pool,
        platform: "linux/amd64",
        policy: Policy {
            fail_on: "high".into(),
            ..Default::default()
        },
        requester: Requester::default(),
        spdx: false,
        scratch: &scratch,
        force: true,
    };
    let vulnerable = |summary: &stellaops_workers::scan::ScanSummary| {
        (
            summary.verdict,
            summary.findings["high"],
            summary.components,
        )
    };
    let first = scan(&job, &image).await.unwrap();
    assert_eq!((first.layers_analysed, first.layers_cached), (1, 0));
    assert!(!first.analysis_cached);
    assert_eq!(vulnerable(&first), ("Fail", 1, 7), "openssl is vulnerable");
    // The image's own analysis is reused.
    let whole = scan(&job, &image).await.unwrap();
    assert!(whole.analysis_cached);
    assert_eq!((whole.layers_analysed, whole.layers_cached), (0, 1));
    assert_eq!(vulnerable(&whole), ("Fail", 1, 7));
    // Without it (another image on the same layer), the scanner's own fragment is reused.
    let digest = built.manifest_digest.clone();
    forget_analysis(&env, &digest).await;
    let again = scan(&job, &image).await.unwrap();
    assert!(!again.analysis_cached);
    assert_eq!(
        (
            again.layers_analysed,
            again.layers_cached,
            again.layers_refused
        ),
        (0, 1, 0)
    );
    assert_eq!(vulnerable(&again), ("Fail", 1, 7));

    // What a forger would store: the layer with a fixed openssl and nothing else.
    let genuine = read_fragment(&env, &layer).await;
    let newline = genuine.iter().position(|b| *b == b'\n').unwrap();
    let mut forged: stellaops_scanner::analyze::Fragment =
        serde_json::from_slice(&genuine[newline + 1..]).unwrap();
    forged.files.retain(|path, _| path == "var/lib/dpkg/status");
    for package in forged.files.values_mut().flatten() {
        if package.name == "openssl" {
            package.version = "3.0.11-1~deb12u2".into();
        }
    }
    let forged = serde_json::to_vec(&forged).unwrap();
    let attacker = stellaops_store::attestation::VerdictSigner::from_pem(
        &stellaops_store::attestation::generate_key_pair().0,
    )
    .unwrap();
    let other_layer = "sha256:".to_string() + &"ab".repeat(32);
    let ours = stellaops_store::layer_cache::FragmentKey::derive(&signer);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // The genuine seal kept, the fragment under it rewritten.
        ("seal kept, body rewritten", {
            let mut object = genuine[..=newline].to_vec();
            object.extend_from_slice(&forged);
            object
        }),
        // Unsealed, as the cache stored fragments before (or a tenant in the past).
        ("unsealed", forged.clone()),
        // Sealed by another key.
        (
            "another key",
            stellaops_store::layer_cache::FragmentKey::derive(&attacker).seal(
                &layer,
                stellaops_scanner::analyze::ANALYZER_VERSION,
                &forged,
            ),
        ),
        // Genuinely sealed by our key, but for another layer (copied across).
        (
            "another layer",
            ours.seal(
                &other_layer,
                stellaops_scanner::analyze::ANALYZER_VERSION,
                &forged,
            ),
        ),
    ];
    for (case, object) in cases {
        overwrite_fragment(&env, &layer, &object).await;
        forget_analysis(&env, &digest).await;
        let summary = scan(&job, &image).await.unwrap();
        assert_eq!(
            (
                summary.layers_analysed,
                summary.layers_cached,
                summary.layers_refused
            ),
            (1, 0, 1),
            "{case}: the fragment is refused and the layer analysed again"
        );
        assert_eq!(
            vulnerable(&summary),
            ("Fail", 1, 7),
            "{case}: the result is the true one"
        );
        // The layer's fragment is the scanner's again, and reused.
        assert_eq!(read_fragment(&env, &layer).await, genuine, "{case}");
        forget_analysis(&env, &digest).await;
        let reused = scan(&job, &image).await.unwrap();
        assert_eq!(
            (reused.layers_cached, reused.layers_refused),
            (1, 0),
            "{case}"
        );
    }

    // The image analysis is sealed the same way: what a forger would store there (an image
    // without packages) is refused, and the layers' genuine fragments decide.
    scan(&job, &image).await.unwrap();
    let genuine_analysis = get_compressed(&env, &analysis_key(&digest)).await;
    let newline = genuine_analysis.iter().position(|b| *b == b'\n').unwrap();
    let mut empty: Value = serde_json::from_slice(&genuine_analysis[newline + 1..]).unwrap();
    assert_eq!(empty["components"].as_array().unwrap().len(), 7);
    empty["components"] = json!([]);
    let empty = serde_json::to_vec(&empty).unwrap();
    let subject = stellaops_store::layer_cache::image_subject(&digest);
    let version = stellaops_scanner::analyze::ANALYZER_VERSION;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("seal kept, body rewritten", {
            let mut object = genuine_analysis[..=newline].to_vec();
            object.extend_from_slice(&empty);
            object
        }),
        ("unsealed", empty.clone()),
        (
            "another key",
            stellaops_store::layer_cache::FragmentKey::derive(&attacker)
                .seal(&subject, version, &empty),
        ),
        (
            "another image",
            ours.seal(
                &stellaops_store::layer_cache::image_subject(&other_layer),
                version,
                &empty,
            ),
        ),
        // Sealed by our key for a layer whose digest is the manifest's.
        ("a layer's seal", ours.seal(&digest, version, &empty)),
    ];
    for (case, object) in cases {
        put_compressed(&env, &analysis_key(&digest), &object).await;
        let summary = scan(&job, &image).await.unwrap();
        assert!(!summary.analysis_cached, "{case}: the analysis is refused");
        assert_eq!(
            (summary.layers_analysed, summary.layers_cached),
            (0, 1),
            "{case}: the layer's genuine fragment is read"
        );
        assert_eq!(
            vulnerable(&summary),
            ("Fail", 1, 7),
            "{case}: the result is the true one"
        );
        // The scan stored the genuine analysis again, and the next scan reads it.
        let reused = scan(&job, &image).await.unwrap();
        assert!(reused.analysis_cached, "{case}");
        assert_eq!(vulnerable(&reused), ("Fail", 1, 7), "{case}");
    }

    // Without the verdict key nothing is read from (or written to) the cache.
    overwrite_fragment(&env, &layer, &forged).await;
    let keyless = ScanJob {
        signer: None,
        ..job
    };
    let summary = scan(&keyless, &image).await.unwrap();
    assert_eq!((summary.layers_analysed, summary.layers_cached), (1, 0));
    assert_eq!(vulnerable(&summary), ("Fail", 1, 7));
    std::fs::remove_dir_all(&scratch).unwrap();
}
