//! Signatures and attestations found as OCI 1.1 referrers. The test registry (Debian's
//! docker-registry, distribution 2.8) has no referrers API: against it the client must notice
//! the 404 and read the referrers tag schema (`sha256-<hex>`), which is what these tests
//! exercise there. The API path is exercised through a small real-socket front that answers
//! `GET /v2/<name>/referrers/<digest>` (one descriptor per page, `Link` to the next,
//! `OCI-Filters-Applied` when it filtered) and passes every other request to the real
//! registry, with referrers pushed *without* the tag schema: only the API can find them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use stellaops_admission_webhook::cosign;
use stellaops_admission_webhook::evidence::{EvidenceSource, RegistryEvidence};
use stellaops_admission_webhook::policy::compile;
use stellaops_registry::{Credentials, ReferrersSource, RegistryClient};
use stellaops_testing::oci;

use crate::policy::{public_pem, sign, signing_key, zastava_policy};
use crate::registry::push_image;
use crate::server::{ask_for_pod, client, start};

const SBOM_TYPE: &str = "application/vnd.cyclonedx+json";

fn evidence_for(registry: &str) -> RegistryEvidence {
    RegistryEvidence {
        registry: RegistryClient::new(Credentials::default(), vec![registry.to_string()]).unwrap(),
        database: None,
        verdict_keys: Default::default(),
    }
}

/// A cosign signature layer (payload, media type, annotations) for `push_referrer`.
fn signature_layer(payload: &[u8], signature: &str) -> (Vec<u8>, Value) {
    (
        payload.to_vec(),
        json!({ cosign::SIGNATURE_ANNOTATION: signature }),
    )
}

fn dsse(predicate_type: &str, subject: &str) -> Vec<u8> {
    use base64::Engine;
    let statement = json!({"_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "image", "digest": {"sha256": &subject[7..]}}],
        "predicateType": predicate_type, "predicate": {"builder": {"id": "https://ci.example/builder"}}});
    serde_json::to_vec(&json!({
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64::engine::general_purpose::STANDARD.encode(statement.to_string()),
        "signatures": [{"keyid": "", "sig": "MEUCIQ=="}],
    }))
    .unwrap()
}

#[tokio::test]
async fn without_a_referrers_api_the_tag_schema_finds_signatures_and_attestations() {
    let Some(registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    // A subject of its own per run: the tag-schema index of a subject pushed by an earlier
    // run against the same registry would still list that run's referrers.
    let marker = format!("tag-schema-{}", std::process::id());
    let signed = push_image(&registry, "referrers/tagschema", "1.0", &marker);
    let bare = push_image(&registry, "referrers/bare", "1.0", "bare");
    let key = signing_key(21);
    let payload = cosign::payload(&format!("{registry}/referrers/tagschema"), &signed);
    let (layer, annotations) = signature_layer(&payload, &sign(&key, &payload));
    let pushed = oci::push_referrer(
        &registry,
        "referrers/tagschema",
        &signed,
        cosign::SIGNATURE_ARTIFACT_TYPE,
        &[(&layer, cosign::SIMPLE_SIGNING_MEDIA_TYPE, annotations)],
        true,
    )
    .await;
    let provenance = dsse("https://slsa.dev/provenance/v1", &signed);
    oci::push_referrer(
        &registry,
        "referrers/tagschema",
        &signed,
        cosign::ATTESTATION_ARTIFACT_TYPE,
        &[(
            &provenance,
            cosign::DSSE_MEDIA_TYPE,
            json!({"predicateType": "https://slsa.dev/provenance/v1"}),
        )],
        true,
    )
    .await;
    // An SPDX attestation the legacy way: the same kind of manifest under `sha256-<hex>.att`.
    let spdx = dsse("https://spdx.dev/Document", &signed);
    let legacy = oci::push_referrer(
        &registry,
        "referrers/tagschema",
        &signed,
        "application/vnd.example.unlisted",
        &[(
            &spdx,
            cosign::DSSE_MEDIA_TYPE,
            json!({"predicateType": "https://spdx.dev/Document"}),
        )],
        false,
    )
    .await;
    let put = reqwest::Client::new()
        .put(format!(
            "http://{registry}/v2/referrers/tagschema/manifests/{}",
            cosign::attestation_tag(&signed)
        ))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(legacy.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);

    let client = RegistryClient::new(Credentials::default(), vec![registry.clone()]).unwrap();
    let repository = format!("{registry}/referrers/tagschema:1.0")
        .parse()
        .unwrap();
    // The real registry has no referrers API: the listing comes from the tag schema.
    let listed = client.referrers(&repository, &signed, None).await.unwrap();
    assert_eq!(listed.source, ReferrersSource::TagSchema);
    assert_eq!(listed.referrers.len(), 2, "{listed:?}");
    assert_eq!(listed.referrers[0].digest, pushed.digest);
    assert_eq!(
        listed.referrers[0].artifact_type,
        cosign::SIGNATURE_ARTIFACT_TYPE
    );
    let only_sboms = client
        .referrers(&repository, &signed, Some(SBOM_TYPE))
        .await
        .unwrap();
    assert!(only_sboms.referrers.is_empty());
    let bare_repository = format!("{registry}/referrers/bare:1.0").parse().unwrap();
    let nothing = client
        .referrers(&bare_repository, &bare, None)
        .await
        .unwrap();
    assert_eq!(nothing.source, ReferrersSource::None);

    // The webhook's evidence: the referrer signature (no `.sig` tag exists) and both
    // attestations, each saying where it was found.
    let evidence = Arc::new(evidence_for(&registry));
    let image = format!("{registry}/referrers/tagschema@{signed}");
    let signatures = evidence.signatures(&image, &signed).await.unwrap();
    assert_eq!(signatures.len(), 1);
    assert_eq!(signatures[0].payload, payload);
    assert!(
        signatures[0].found_at.starts_with("referrers tag sha256-"),
        "{}",
        signatures[0].found_at
    );
    let attestations = evidence.attestations(&image, &signed).await.unwrap();
    let mut found: Vec<(Option<String>, String, bool)> = attestations
        .iter()
        .map(|a| {
            (
                a.predicate_type.clone(),
                a.found_at.clone(),
                a.blob == provenance || a.blob == spdx,
            )
        })
        .collect();
    found.sort();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found[0].0.as_deref(),
        Some("https://slsa.dev/provenance/v1")
    );
    assert!(found[0].1.starts_with("referrers tag"), "{found:?}");
    assert_eq!(found[1].0.as_deref(), Some("https://spdx.dev/Document"));
    assert_eq!(
        found[1].1,
        format!("tag {}", cosign::attestation_tag(&signed))
    );
    assert!(found.iter().all(|f| f.2), "blobs are the pushed envelopes");

    // End to end through the webhook: the referrer signature admits, a bare image is refused.
    let running = start(evidence).await;
    running.webhook.set_policies([compile(
        &zastava_policy(
            json!({"mode": "enforce",
                   "requireSignature": {"publicKeys": {"name": "keys", "namespace": "stellaops-system"}}}),
            1,
        ),
        &[public_pem(&key)],
    )
    .unwrap()]);
    let https = client_for(&running);
    for (image, allowed) in [
        (image.clone(), true),
        (format!("{registry}/referrers/bare@{bare}"), false),
    ] {
        let answer = ask_for_pod(
            https.clone(),
            running.addr.port(),
            "prod".into(),
            image.clone(),
        )
        .await;
        assert_eq!(answer["allowed"], allowed, "{image}: {answer}");
    }
}

fn client_for(running: &crate::server::Running) -> reqwest::Client {
    client(running, &running.cert_pem)
}

/// The referrers front: canned listings by subject digest, everything else passed through.
#[derive(Clone)]
struct Front {
    upstream: String,
    listings: Arc<Mutex<HashMap<String, Vec<Value>>>>,
    content_type: &'static str,
    asked: Arc<Mutex<Vec<String>>>,
}

async fn front(
    State(front): State<Front>,
    Path(rest): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    front.asked.lock().unwrap().push(rest.clone());
    if let Some((_, digest)) = rest.split_once("/referrers/") {
        let all = front
            .listings
            .lock()
            .unwrap()
            .get(digest)
            .cloned()
            .unwrap_or_default();
        let (listed, filtered): (Vec<Value>, bool) = match query.get("artifactType") {
            Some(wanted) => (
                all.into_iter()
                    .filter(|d| d["artifactType"] == wanted.as_str())
                    .collect(),
                true,
            ),
            None => (all, false),
        };
        // One descriptor per page.
        let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
        let manifests: Vec<Value> = listed.get(page).cloned().into_iter().collect();
        let mut response = (
            StatusCode::OK,
            [("content-type", front.content_type)],
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": manifests})
            .to_string(),
        )
            .into_response();
        if filtered {
            response
                .headers_mut()
                .insert("oci-filters-applied", "artifactType".parse().unwrap());
        }
        if page + 1 < listed.len() {
            let mut next = format!("/v2/{rest}?page={}", page + 1);
            if let Some(wanted) = query.get("artifactType") {
                next.push_str(&format!("&artifactType={}", wanted.replace('+', "%2B")));
            }
            response
                .headers_mut()
                .insert("link", format!("<{next}>; rel=\"next\"").parse().unwrap());
        }
        return response;
    }
    let mut upstream = reqwest::Client::new().get(format!("http://{}/v2/{rest}", front.upstream));
    if let Some(accept) = headers.get("accept") {
        upstream = upstream.header("accept", accept.to_str().unwrap());
    }
    let answer = upstream.send().await.unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let mut out = HeaderMap::new();
    for name in ["content-type", "docker-content-digest"] {
        if let Some(value) = answer.headers().get(name) {
            out.insert(name, value.to_str().unwrap().parse().unwrap());
        }
    }
    (status, out, answer.bytes().await.unwrap().to_vec()).into_response()
}

async fn start_front(front_state: Front) -> String {
    let app = axum::Router::new()
        .route("/v2/", axum::routing::get(|| async { "{}" }))
        .route("/v2/{*rest}", axum::routing::get(front))
        .with_state(front_state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr.to_string()
}

#[tokio::test]
async fn a_registry_with_the_referrers_api_is_asked_through_it_page_by_page() {
    let Some(registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    let marker = format!("api-{}", std::process::id());
    let subject = push_image(&registry, "referrers/api", "1.0", &marker);
    let key = signing_key(22);
    let payload = cosign::payload(&format!("{registry}/referrers/api"), &subject);
    let (layer, annotations) = signature_layer(&payload, &sign(&key, &payload));
    // Pushed without the tag schema: the real registry alone cannot list them.
    let signature = oci::push_referrer(
        &registry,
        "referrers/api",
        &subject,
        cosign::SIGNATURE_ARTIFACT_TYPE,
        &[(&layer, cosign::SIMPLE_SIGNING_MEDIA_TYPE, annotations)],
        false,
    )
    .await;
    let sbom = oci::push_referrer(
        &registry,
        "referrers/api",
        &subject,
        SBOM_TYPE,
        &[(b"{\"bomFormat\":\"CycloneDX\"}", SBOM_TYPE, json!({}))],
        false,
    )
    .await;
    let other_key = signing_key(23);
    let (layer2, annotations2) = signature_layer(&payload, &sign(&other_key, &payload));
    let second = oci::push_referrer(
        &registry,
        "referrers/api",
        &subject,
        cosign::SIGNATURE_ARTIFACT_TYPE,
        &[(&layer2, cosign::SIMPLE_SIGNING_MEDIA_TYPE, annotations2)],
        false,
    )
    .await;
    let direct = RegistryClient::new(Credentials::default(), vec![registry.clone()]).unwrap();
    let at_registry = format!("{registry}/referrers/api:1.0").parse().unwrap();
    assert_eq!(
        direct
            .referrers(&at_registry, &subject, None)
            .await
            .unwrap()
            .source,
        ReferrersSource::None,
        "the real registry alone does not find them"
    );

    let state = Front {
        upstream: registry.clone(),
        listings: Arc::new(Mutex::new(HashMap::from([(
            subject.clone(),
            vec![
                signature.descriptor.clone(),
                sbom.descriptor.clone(),
                second.descriptor.clone(),
            ],
        )]))),
        content_type: "application/vnd.oci.image.index.v1+json",
        asked: Arc::default(),
    };
    let front_addr = start_front(state.clone()).await;
    let client = RegistryClient::new(Credentials::default(), Vec::new()).unwrap();
    let repository = format!("{front_addr}/referrers/api:1.0").parse().unwrap();
    // Three pages, all followed.
    let listed = client.referrers(&repository, &subject, None).await.unwrap();
    assert_eq!(listed.source, ReferrersSource::Api);
    let digests: Vec<&str> = listed.referrers.iter().map(|r| r.digest.as_str()).collect();
    assert_eq!(digests, [&signature.digest, &sbom.digest, &second.digest]);
    let sboms = client
        .referrers(&repository, &subject, Some(SBOM_TYPE))
        .await
        .unwrap();
    assert_eq!(sboms.referrers.len(), 1);
    assert_eq!(sboms.referrers[0].digest, sbom.digest);

    // The webhook's evidence through the API: both signatures (and no SBOM) with payloads
    // from the real registry; either key verifies.
    let evidence = RegistryEvidence {
        registry: client.clone(),
        database: None,
        verdict_keys: Default::default(),
    };
    let image = format!("{front_addr}/referrers/api@{subject}");
    let found = evidence.signatures(&image, &subject).await.unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|f| f.found_at == "referrers API"));
    assert!(found.iter().all(|f| f.payload == payload));
    let keys =
        stellaops_admission_webhook::policy::parse_public_keys(&public_pem(&other_key)).unwrap();
    assert!(
        found
            .iter()
            .any(|f| cosign::verify(&f.payload, &f.signature, &subject, &keys).is_ok())
    );
    assert!(
        state
            .asked
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.contains("/referrers/")),
        "asked through the API"
    );

    // A front that answers the API with something other than an index is an error, not
    // "no referrers".
    let broken = Front {
        content_type: "text/html",
        asked: Arc::default(),
        ..state
    };
    let broken_addr = start_front(broken).await;
    let broken_repository = format!("{broken_addr}/referrers/api:1.0").parse().unwrap();
    let error = client
        .referrers(&broken_repository, &subject, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("not an OCI image index"), "{error}");
}
