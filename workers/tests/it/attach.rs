//! `scan --attach`: SBOMs and the signed verdict attached to the image as OCI referrers in
//! the real registry (which has no referrers API, so the tag schema index is kept), read
//! back with skopeo and plain HTTP, and attaching again changes nothing.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;
use stellaops_workers::registry::{Credentials, RegistryClient, RegistryError};
use stellaops_workers::scan::attach::{
    CYCLONEDX_ARTIFACT_TYPE, SPDX_ARTIFACT_TYPE, VERDICT_ARTIFACT_TYPE, attach,
};
use stellaops_workers::scan::scan;

use crate::scan::{auth_registry, base_layer, default_job, env, push};

/// `skopeo inspect --raw` of `reference`: the registry's bytes, read by another client.
fn skopeo_raw(reference: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo (installed by scripts/test.sh)");
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

async fn blob(registry: &str, repository: &str, digest: &str) -> Vec<u8> {
    let response = reqwest::get(format!("http://{registry}/v2/{repository}/blobs/{digest}"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "blob {digest}");
    response.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn sboms_and_the_signed_verdict_are_attached_as_referrers_once() {
    let Some(env) = env("scan_attach").await else {
        return;
    };
    let repo = format!(
        "attach-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let built = push(&env, &repo, vec![base_layer()]);
    let repository = format!("stellaops-it/{repo}");
    let image = format!("{}/{repository}:v1", env.registry);
    let registry = RegistryClient::new(Credentials::default(), vec![]).unwrap();
    let scratch = std::env::temp_dir().join(format!("stellaops-attach-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let (private, public) = stellaops_store::attestation::generate_key_pair();
    let signer = stellaops_store::attestation::VerdictSigner::from_pem(&private).unwrap();
    let job = default_job(&env, &registry, &scratch, Some(&signer), true);
    let summary = scan(&job, &image).await.unwrap();
    assert_eq!(summary.image_digest, built.manifest_digest);

    let attached = attach(&job, &registry, &image, &summary).await.unwrap();
    let types: Vec<&str> = attached.iter().map(|a| a.artifact_type.as_str()).collect();
    assert_eq!(
        types,
        [
            CYCLONEDX_ARTIFACT_TYPE,
            SPDX_ARTIFACT_TYPE,
            VERDICT_ARTIFACT_TYPE
        ]
    );
    assert!(
        attached.iter().all(|a| a.via == "tagSchema"),
        "{attached:?}"
    );

    // The tag schema index, as skopeo reads it: the three artifacts, each once.
    let tag = built.manifest_digest.replacen(':', "-", 1);
    let index_ref = format!("{}/{repository}:{tag}", env.registry);
    let index: Value = serde_json::from_slice(&skopeo_raw(&index_ref)).unwrap();
    let listed: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["artifactType"].as_str().unwrap().to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = attached
        .iter()
        .map(|a| (a.artifact_type.clone(), a.digest.clone()))
        .collect();
    assert_eq!(listed, expected);

    // Each artifact manifest names the image as its subject; its layer is the stored object.
    let sbom_key = summary
        .sbom_uri
        .strip_prefix(&format!("s3://{}/", env.bucket))
        .unwrap()
        .to_string();
    let stored_sbom = env.object(&sbom_key).await;
    let (attestation_key, envelope): (String, Vec<u8>) =
        sqlx::query_as("SELECT attestation_key, attestation FROM scan_results WHERE id = $1")
            .bind(summary.scan_id)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    for artifact in &attached {
        let raw = skopeo_raw(&format!(
            "{}/{repository}@{}",
            env.registry, artifact.digest
        ));
        let manifest: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(manifest["artifactType"], artifact.artifact_type.as_str());
        assert_eq!(
            manifest["subject"]["digest"],
            built.manifest_digest.as_str()
        );
        assert_eq!(manifest["subject"]["size"], built.manifest.len());
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        let layer = &manifest["layers"][0];
        let bytes = blob(
            &env.registry,
            &repository,
            layer["digest"].as_str().unwrap(),
        )
        .await;
        assert_eq!(layer["size"], bytes.len());
        match artifact.artifact_type.as_str() {
            CYCLONEDX_ARTIFACT_TYPE => assert_eq!(bytes, stored_sbom.as_slice()),
            SPDX_ARTIFACT_TYPE => {
                let spdx: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
            }
            _ => {
                assert_eq!(bytes, envelope);
                assert_eq!(
                    layer["annotations"]["predicateType"],
                    stellaops_store::attestation::PREDICATE_TYPE
                );
                // What was attached still verifies as the signed verdict of this image.
                let keys =
                    stellaops_store::attestation::VerdictKeys::from_pem_bundle(&public).unwrap();
                keys.verify(&attestation_key, &bytes, &summary.image_digest)
                    .unwrap();
            }
        }
    }

    // Our referrers client finds them through the tag schema too.
    let subject: stellaops_workers::registry::ImageReference = image.parse().unwrap();
    let found = registry
        .referrers(
            &subject,
            &built.manifest_digest,
            Some(VERDICT_ARTIFACT_TYPE),
        )
        .await
        .unwrap();
    assert_eq!(found.referrers.len(), 1);
    assert_eq!(found.referrers[0].digest, attached[2].digest);

    // Attaching again (a rescan, a reused result) changes nothing.
    let again = attach(&job, &registry, &image, &summary).await.unwrap();
    assert_eq!(again, attached);
    let index_again: Value = serde_json::from_slice(&skopeo_raw(&index_ref)).unwrap();
    assert_eq!(index_again, index);
    std::fs::remove_dir_all(&scratch).ok();
}

#[tokio::test]
async fn attaching_needs_push_rights_and_uses_only_the_push_credentials_given() {
    let Some(env) = env("scan_attach_auth").await else {
        return;
    };
    let private = auth_registry("attach", "pusher", "push-secret").await;
    let dir = std::env::temp_dir().join(format!("stellaops-attach-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let built = stellaops_testing::oci::write_layout(&dir, &[base_layer()], "v1");
    stellaops_testing::oci::push_as(
        &dir,
        "v1",
        &private.address,
        "team/app",
        Some("pusher:push-secret"),
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let image = format!("{}/team/app:v1", private.address);
    let config = |user: &str, password: &str| {
        let auth = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{user}:{password}"),
        );
        Credentials::from_docker_config(&format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            private.address
        ))
        .unwrap()
    };
    let puller = RegistryClient::new(config("pusher", "push-secret"), vec![]).unwrap();
    let scratch =
        std::env::temp_dir().join(format!("stellaops-attach-auth-s-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let job = default_job(&env, &puller, &scratch, None, false);
    let summary = scan(&job, &image).await.unwrap();
    assert_eq!(summary.image_digest, built.manifest_digest);

    // Without credentials for this registry the push is refused, and the error says so.
    let anonymous = RegistryClient::new(Credentials::default(), vec![]).unwrap();
    let error = attach(&job, &anonymous, &image, &summary)
        .await
        .unwrap_err();
    let text = format!("{error:#}");
    assert!(
        text.contains(&private.address) && text.contains("401"),
        "{text}"
    );
    assert!(
        error.chain().any(|e| matches!(
            e.downcast_ref::<RegistryError>(),
            Some(RegistryError::PushRefused { .. } | RegistryError::Unauthorized { .. })
        )),
        "{text}"
    );
    // With them: the unsigned result's SBOM only (no verdict envelope to attach).
    let attached = attach(&job, &puller, &image, &summary).await.unwrap();
    assert_eq!(attached.len(), 1);
    assert_eq!(attached[0].artifact_type, CYCLONEDX_ARTIFACT_TYPE);
    std::fs::remove_dir_all(&scratch).ok();
}

/// A front over the real registry that behaves as a registry with the referrers API: a
/// manifest with a `subject` is answered with `OCI-Subject` and listed by
/// `GET /v2/<name>/referrers/<digest>`; everything else is passed through (upload
/// locations rewritten to the front, as the registry would name itself).
#[derive(Clone)]
struct ReferrersFront {
    upstream: String,
    address: std::sync::Arc<std::sync::OnceLock<String>>,
    listed: std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>,
}

async fn referrers_front(
    axum::extract::State(front): axum::extract::State<ReferrersFront>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let method = request.method().clone();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let path = request.uri().path().to_string();
    if let Some((_, digest)) = path.split_once("/referrers/") {
        let manifests: Vec<Value> = front
            .listed
            .lock()
            .unwrap()
            .iter()
            .filter(|(subject, _)| subject == digest)
            .map(|(_, d)| d.clone())
            .collect();
        return (
            [("content-type", "application/vnd.oci.image.index.v1+json")],
            serde_json::json!({"schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})
            .to_string(),
        )
            .into_response();
    }
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 64 << 20)
        .await
        .unwrap();
    let mut upstream = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .request(
            method.as_str().parse().unwrap(),
            format!("http://{}{path_and_query}", front.upstream),
        )
        .body(body.to_vec());
    for name in ["content-type", "accept"] {
        if let Some(value) = headers.get(name) {
            upstream = upstream.header(name, value.to_str().unwrap());
        }
    }
    let answer = upstream.send().await.unwrap();
    let status = axum::http::StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let mut out = axum::http::HeaderMap::new();
    for name in [
        "content-type",
        "docker-content-digest",
        "location",
        "content-length",
    ] {
        if let Some(value) = answer.headers().get(name) {
            let value = value
                .to_str()
                .unwrap()
                .replace(&front.upstream, front.address.get().unwrap());
            out.insert(name, value.parse().unwrap());
        }
    }
    let pushed_manifest = method == axum::http::Method::PUT && path.contains("/manifests/");
    if pushed_manifest && status == axum::http::StatusCode::CREATED {
        let manifest: Value = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(subject) = manifest["subject"]["digest"].as_str() {
            out.insert("oci-subject", subject.parse().unwrap());
            front.listed.lock().unwrap().push((
                subject.to_string(),
                serde_json::json!({"mediaType": manifest["mediaType"],
                    "artifactType": manifest["artifactType"],
                    "digest": stellaops_workers::registry::sha256_digest(&body),
                    "size": body.len()}),
            ));
        }
    }
    let bytes = answer.bytes().await.unwrap();
    (status, out, bytes.to_vec()).into_response()
}

#[tokio::test]
async fn a_registry_with_the_referrers_api_indexes_the_artifacts_and_gets_no_tag_schema_index() {
    let Some(env) = env("scan_attach_api").await else {
        return;
    };
    let repo = format!("attach-api-{}", std::process::id());
    let built = push(&env, &repo, vec![base_layer()]);
    let front = ReferrersFront {
        upstream: env.registry.clone(),
        address: Default::default(),
        listed: Default::default(),
    };
    let app = axum::Router::new()
        .fallback(referrers_front)
        .with_state(front.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    front.address.set(address.clone()).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let repository = format!("stellaops-it/{repo}");
    let image = format!("{address}/{repository}:v1");
    let registry = RegistryClient::new(Credentials::default(), vec![]).unwrap();
    let scratch = std::env::temp_dir().join(format!("stellaops-attach-api-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let (private, _) = stellaops_store::attestation::generate_key_pair();
    let signer = stellaops_store::attestation::VerdictSigner::from_pem(&private).unwrap();
    let job = default_job(&env, &registry, &scratch, Some(&signer), false);
    let summary = scan(&job, &image).await.unwrap();
    let attached = attach(&job, &registry, &image, &summary).await.unwrap();
    assert_eq!(attached.len(), 2, "{attached:?}");
    assert!(
        attached.iter().all(|a| a.via == "referrersAPI"),
        "{attached:?}"
    );
    // Listed by the API, and no tag schema index written behind it.
    let subject: stellaops_workers::registry::ImageReference = image.parse().unwrap();
    let found = registry
        .referrers(&subject, &built.manifest_digest, None)
        .await
        .unwrap();
    // The artifacts are pushed concurrently, so the API lists them in arrival order.
    let digests: BTreeSet<&str> = found.referrers.iter().map(|r| r.digest.as_str()).collect();
    assert_eq!(digests.len(), found.referrers.len(), "listed once each");
    assert_eq!(
        digests,
        attached.iter().map(|a| a.digest.as_str()).collect()
    );
    let tag = built.manifest_digest.replacen(':', "-", 1);
    let index = reqwest::get(format!(
        "http://{}/v2/{repository}/manifests/{tag}",
        env.registry
    ))
    .await
    .unwrap();
    assert_eq!(
        index.status(),
        404,
        "no tag schema index with a referrers API"
    );
    std::fs::remove_dir_all(&scratch).ok();
}
