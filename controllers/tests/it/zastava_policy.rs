//! ZastavaPolicy: webhook configuration, certificate plans and rotation (checked with real
//! TLS handshakes), namespace counting, and reconcile side effects against the mock API.

use std::sync::Arc;

use http::Method;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use serde_json::{Value, json};
use stellaops_controllers::cache::{Caches, Contents};
use stellaops_controllers::metrics::Metrics;
use stellaops_controllers::zastava_policy::{
    CA_RENEW_BEFORE_DAYS, CA_SECRET, SERVING_RENEW_BEFORE_DAYS, StoredCa, StoredServing,
    TLS_SECRET, ca_secret, issue_ca, issue_serving, matching_namespaces, plan_certificates,
    read_ca, read_serving, reconcile, service_names, tls_secret, webhook_configuration,
};
use stellaops_controllers::{Config, Context, FIELD_MANAGER};
use stellaops_crds::ZastavaPolicy;
use stellaops_testing::mock_client;

const DAY: i64 = 86_400;
const NOW: i64 = 1_795_000_000;

fn policy(spec: Value) -> ZastavaPolicy {
    serde_json::from_value(json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "ZastavaPolicy",
        "metadata": {"name": "production-images", "uid": "0b5c8f1e-0000-4000-8000-000000000001", "generation": 3},
        "spec": spec,
    }))
    .unwrap()
}

#[test]
fn the_webhook_configuration_covers_the_workload_kinds_and_excludes_the_operator() {
    let config = Config::default();
    let policy = policy(json!({
        "mode": "enforce", "failurePolicy": "Fail", "timeoutSeconds": 3,
        "namespaceSelector": {"matchLabels": {"environment": "production"}},
    }));
    let vwc = serde_json::to_value(webhook_configuration(&policy, &config, "PEM")).unwrap();
    assert_eq!(
        vwc["metadata"]["name"],
        "stellaops-zastava-production-images"
    );
    assert_eq!(
        vwc["metadata"]["ownerReferences"][0]["kind"],
        "ZastavaPolicy"
    );
    let hook = &vwc["webhooks"][0];
    assert_eq!(hook["name"], "production-images.zastava.stella-ops.org");
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["timeoutSeconds"], 3);
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(hook["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(
        hook["clientConfig"]["service"],
        json!({"name": "stellaops-zastava-webhook", "namespace": "stellaops-system",
               "path": "/validate/production-images", "port": 443})
    );
    // ByteString serializes as base64.
    assert_eq!(hook["clientConfig"]["caBundle"], "UEVN");
    assert_eq!(
        hook["namespaceSelector"],
        json!({"matchLabels": {"environment": "production"}, "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["stellaops-system", "kube-system"]}]})
    );
    let resources: Vec<String> = hook["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let group = r["apiGroups"][0].as_str().unwrap().to_string();
            assert_eq!(r["operations"], json!(["CREATE", "UPDATE"]));
            r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |res| format!("{group}/{}", res.as_str().unwrap()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        resources,
        [
            "/pods",
            "/pods/ephemeralcontainers",
            "apps/deployments",
            "apps/statefulsets",
            "apps/daemonsets",
            "batch/jobs",
            "batch/cronjobs"
        ]
    );
}

fn ca(not_after: i64) -> StoredCa {
    StoredCa {
        cert_pem: format!("CA valid until {not_after}"),
        key_pem: String::new(),
        not_after,
        previous: None,
    }
}

#[test]
fn certificates_are_renewed_long_before_expiry() {
    let fresh_ca = ca(NOW + 3000 * DAY);
    let serving = |days: i64, issuer: &StoredCa| StoredServing {
        not_after: NOW + days * DAY,
        issuer: issuer.fingerprint(),
    };
    let cases = [
        ("nothing yet", None, None, (true, true)),
        (
            "all fresh",
            Some(fresh_ca.clone()),
            Some(serving(80, &fresh_ca)),
            (false, false),
        ),
        (
            "serving within 30 days",
            Some(fresh_ca.clone()),
            Some(serving(SERVING_RENEW_BEFORE_DAYS - 1, &fresh_ca)),
            (false, true),
        ),
        (
            "serving from an unknown CA",
            Some(fresh_ca.clone()),
            Some(serving(80, &ca(1))),
            (false, true),
        ),
        (
            // The current serving certificate stays (its CA stays in the bundle).
            "CA within a year",
            Some(ca(NOW + (CA_RENEW_BEFORE_DAYS - 1) * DAY)),
            Some(serving(80, &ca(NOW + (CA_RENEW_BEFORE_DAYS - 1) * DAY))),
            (true, false),
        ),
        (
            "CA expired",
            Some(ca(NOW - DAY)),
            Some(serving(80, &ca(NOW - DAY))),
            (true, true),
        ),
        (
            "serving missing",
            Some(fresh_ca.clone()),
            None,
            (false, true),
        ),
    ];
    for (case, ca, serving, (new_ca, new_serving)) in cases {
        let plan = plan_certificates(ca.as_ref(), serving.as_ref(), NOW);
        assert_eq!(
            (plan.new_ca.is_some(), plan.new_serving.is_some()),
            (new_ca, new_serving),
            "{case}: {plan:?}"
        );
    }
}

async fn handshake_ok(bundle: &str, cert: &str, key: &str, host: &str) -> bool {
    let resolver = Arc::new(stellaops_tls::ReloadableCert::new(Some(
        stellaops_tls::certified_key(cert.as_bytes(), key.as_bytes()).unwrap(),
    )));
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener =
        stellaops_tls::TlsListener::new(tcp, stellaops_tls::config_with_resolver(resolver))
            .unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .resolve(host, addr);
    for cert in reqwest::Certificate::from_pem_bundle(bundle.as_bytes()).unwrap() {
        client = client.add_root_certificate(cert);
    }
    let ok = client
        .build()
        .unwrap()
        .get(format!("https://{host}:{}/", addr.port()))
        .send()
        .await
        .is_ok();
    server.abort();
    ok
}

#[tokio::test]
async fn issued_certificates_chain_to_the_bundle_through_a_ca_rotation() {
    let config = Config::default();
    let names = service_names(&config);
    let host = "stellaops-zastava-webhook.stellaops-system.svc";
    let now = jiff::Timestamp::now().as_second();
    let first = issue_ca(now, None).unwrap();
    let (cert, key, not_after) = issue_serving(&first, &names, now).unwrap();
    assert_eq!(not_after, now + 90 * DAY);
    assert!(handshake_ok(&first.bundle(now), &cert, &key, host).await);
    // Another CA's bundle does not trust it.
    let stranger = issue_ca(now, None).unwrap();
    assert!(!handshake_ok(&stranger.bundle(now), &cert, &key, host).await);

    // Rotation: the new bundle trusts both the old serving certificate and a new one.
    let second = issue_ca(now, Some(&first)).unwrap();
    let bundle = second.bundle(now);
    assert!(handshake_ok(&bundle, &cert, &key, host).await);
    let (new_cert, new_key, _) = issue_serving(&second, &names, now).unwrap();
    assert!(handshake_ok(&bundle, &new_cert, &new_key, host).await);
    // Once the old CA has expired it leaves the bundle.
    assert_eq!(second.bundle(first.not_after + 1), second.cert_pem);

    // What is written reads back the same.
    let stored = ca_secret(&second, &config, now);
    assert_eq!(read_ca(&stored).unwrap(), second);
    let serving = tls_secret(&second, new_cert, new_key, not_after, &config);
    assert_eq!(
        read_serving(&serving).unwrap(),
        StoredServing {
            not_after,
            issuer: second.fingerprint()
        }
    );
    assert_eq!(serving.type_.as_deref(), Some("kubernetes.io/tls"));
}

#[test]
fn namespaces_are_counted_with_the_selector_and_exemptions() {
    let config = Config::default();
    let policy = policy(json!({
        "namespaceSelector": {"matchExpressions": [{"key": "environment", "operator": "In", "values": ["production", "staging"]}]},
        "exemptions": {"namespaces": ["*-sandbox"]},
    }));
    let ns = |name: &str, env: &str| -> Namespace {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"environment": env}}}))
            .unwrap()
    };
    let namespaces = [
        ns("shop", "production"),
        ns("shop-sandbox", "production"),
        ns("stellaops-system", "production"),
        ns("kube-system", "production"),
        ns("qa", "staging"),
        ns("dev", "development"),
    ];
    assert_eq!(
        matching_namespaces(&policy, &config, &namespaces).unwrap(),
        ["shop", "qa"]
    );
}

fn context(client: kube::Client) -> Arc<Context> {
    let namespaces = [("shop", "production"), ("dev", "dev")]
        .iter()
        .map(|(name, env)| {
            serde_json::from_value(
                json!({"metadata": {"name": name, "labels": {"environment": env}}}),
            )
            .unwrap()
        })
        .collect();
    Arc::new(
        Context::new(client, Metrics::unregistered(), Config::default(), None).with_caches(
            Caches::filled(Contents {
                namespaces,
                ..Default::default()
            }),
        ),
    )
}

/// Answer the status patch and expect nothing after it.
async fn status_accepted_and_done(
    status: stellaops_testing::Call,
    server: stellaops_testing::ApiServer,
) {
    status.respond(
        200,
        json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "ZastavaPolicy",
            "metadata": {"name": "production-images"}, "spec": {}}),
    );
    server
        .expect_no_more_calls(std::time::Duration::from_millis(200))
        .await;
}

/// Expect the Event of `reason`, then the status patch whose Ready condition has that
/// reason and a message starting with `message`: the Event's body, and the patch for more
/// checks and [`status_accepted_and_done`].
async fn expect_event_and_ready_condition(
    server: &mut stellaops_testing::ApiServer,
    reason: &str,
    message: &str,
) -> (Value, stellaops_testing::Call) {
    let event = server
        .expect(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events",
        )
        .await;
    assert_eq!(event.body["reason"], reason);
    let event_body = event.body.clone();
    event.respond_with_request_body();
    let status = server
        .expect(
            Method::PATCH,
            "/apis/stella-ops.org/v1alpha1/zastavapolicies/production-images/status",
        )
        .await;
    let ready = &status.body["status"]["conditions"][0];
    assert_eq!(ready["reason"], reason);
    assert!(
        ready["message"].as_str().unwrap().starts_with(message),
        "{}",
        ready["message"]
    );
    (event_body, status)
}

/// Expect the GET of Secret `namespace/name` and answer it with `data`.
async fn serve_secret(
    server: &mut stellaops_testing::ApiServer,
    namespace: &str,
    name: &str,
    data: Value,
) {
    server
        .expect(
            Method::GET,
            &format!("/api/v1/namespaces/{namespace}/secrets/{name}"),
        )
        .await
        .respond(
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                   "data": data}),
        );
}

fn not_found(call: stellaops_testing::Call) {
    call.respond_status(404, "NotFound", "not found");
}

#[tokio::test]
async fn first_reconcile_issues_certificates_registers_the_webhook_and_reports_ready() {
    let (client, mut server) = mock_client("default");
    let pem = public_key_pem(5);
    let fingerprint = stellaops_admission_webhook::policy::parse_public_keys(&pem).unwrap()[0]
        .fingerprint
        .clone();
    let expected_fingerprint = fingerprint.clone();
    let verifier = tokio::spawn(async move {
        serve_secret(
            &mut server,
            "stellaops-system",
            "signing-keys",
            json!({"cosign.pub": base64_encode(&pem)}),
        )
        .await;
        not_found(
            server
                .expect(
                    Method::GET,
                    &format!("/api/v1/namespaces/stellaops-system/secrets/{CA_SECRET}"),
                )
                .await,
        );
        not_found(
            server
                .expect(
                    Method::GET,
                    &format!("/api/v1/namespaces/stellaops-system/secrets/{TLS_SECRET}"),
                )
                .await,
        );
        let ca = server
            .expect(
                Method::PATCH,
                &format!("/api/v1/namespaces/stellaops-system/secrets/{CA_SECRET}"),
            )
            .await;
        assert!(ca.is_forced_apply());
        assert_eq!(ca.field_manager(), Some(FIELD_MANAGER));
        let ca_secret: Secret = serde_json::from_value(ca.body.clone()).unwrap();
        let stored_ca = read_ca(&ca_secret).expect("complete CA Secret");
        ca.respond_with_request_body();
        let tls = server
            .expect(
                Method::PATCH,
                &format!("/api/v1/namespaces/stellaops-system/secrets/{TLS_SECRET}"),
            )
            .await;
        let tls_secret: Secret = serde_json::from_value(tls.body.clone()).unwrap();
        assert_eq!(
            read_serving(&tls_secret).unwrap().issuer,
            stored_ca.fingerprint()
        );
        tls.respond_with_request_body();
        let event = server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/default/events",
            )
            .await;
        assert_eq!(event.body["reason"], "CertificateIssued");
        assert_eq!(
            event.body["note"],
            "webhook certificates issued: no CA yet; no serving certificate yet"
        );
        event.respond_with_request_body();
        let vwc = server
            .expect(Method::PATCH, "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/stellaops-zastava-production-images")
            .await;
        assert!(vwc.is_forced_apply());
        let bundle = vwc.body["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(base64_decode(&bundle), stored_ca.cert_pem);
        vwc.respond_with_request_body();
        // The keys it trusts from now on are named, for the audit trail of key rotations.
        let event = server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/default/events",
            )
            .await;
        assert_eq!(event.body["reason"], "TrustedKeysChanged");
        assert_eq!(
            event.body["note"],
            format!("trusts 1 key(s); added ECDSA P-256 {expected_fingerprint}")
        );
        event.respond_with_request_body();
        // The namespaces it counts come from the shared store: no LIST.
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/zastavapolicies/production-images/status",
            )
            .await;
        let body = &status.body["status"];
        assert_eq!(body["matchingNamespaces"], 1);
        assert_eq!(body["observedGeneration"], 3);
        assert_eq!(
            body["trustedKeys"],
            json!([{"fingerprint": expected_fingerprint, "algorithm": "ECDSA P-256"}])
        );
        assert!(body["certificateNotAfter"].is_string());
        assert_eq!(body["conditions"][0]["type"], "Ready");
        assert_eq!(body["conditions"][0]["status"], "True");
        assert_eq!(body["conditions"][0]["reason"], "WebhookConfigured");
        assert_eq!(
            body["conditions"][0]["message"],
            "webhook registered for 1 namespace(s) in warn mode (failure policy Ignore)"
        );
        status_accepted_and_done(status, server).await;
    });
    let policy = policy(json!({
        "mode": "warn",
        "namespaceSelector": {"matchLabels": {"environment": "production"}},
        "requireSignature": {"publicKeys": {"name": "signing-keys"}},
    }));
    reconcile(Arc::new(policy), context(client)).await.unwrap();
    verifier.await.unwrap();
    assert_eq!(fingerprint.len(), 16);
}

/// A trusted root of `cas` CA certificates and `logs` Rekor keys.
fn trusted_root_document(cas: usize, logs: usize) -> String {
    use base64::Engine;
    let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
    let ca = |i: usize| {
        let cert = rcgen::generate_simple_self_signed(vec![format!("ca-{i}")]).unwrap();
        json!({"certChain": {"certificates": [{"rawBytes": b64(cert.cert.der())}]}})
    };
    let log = |i: u8| {
        let key = p256::ecdsa::SigningKey::from_slice(&[i + 1; 32]).unwrap();
        let der = p256::pkcs8::EncodePublicKey::to_public_key_der(key.verifying_key()).unwrap();
        json!({"publicKey": {"rawBytes": b64(der.as_bytes())}})
    };
    json!({"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
           "certificateAuthorities": (0..cas).map(ca).collect::<Vec<_>>(),
           "tlogs": (0..logs).map(|i| log(i as u8)).collect::<Vec<_>>()})
    .to_string()
}

#[test]
fn the_status_lists_each_trusted_root_and_a_rotation_names_what_changed() {
    use stellaops_controllers::zastava_policy::{trusted_root_statuses, trusted_roots_change};
    let pem = public_key_pem(5);
    let spec = json!({"mode": "enforce", "requireSignature": {
        "publicKeys": {"name": "keys"},
        "publicKeysTlog": {"trustedRoot": {"name": "rekor"}},
        "keyless": [{"subject": "a@example.com", "issuer": "https://issuer.example",
                     "trustedRoot": {"name": "fulcio"}, "requireSCT": false}]}});
    let compile = |roots: &[String]| {
        stellaops_admission_webhook::policy::compile_with_trusted_roots(
            &policy(spec.clone()),
            std::slice::from_ref(&pem),
            roots,
        )
        .unwrap()
    };
    let (fulcio, rekor) = (trusted_root_document(2, 1), trusted_root_document(0, 2));
    let first = trusted_root_statuses(&compile(&[fulcio.clone(), rekor.clone()]));
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].used_by, "keyless authority 1");
    assert_eq!((first[0].certificate_authorities, first[0].tlogs), (2, 1));
    assert_eq!(first[1].used_by, "publicKeysTlog");
    assert_eq!((first[1].certificate_authorities, first[1].tlogs), (0, 2));
    assert_eq!(first[1].fingerprint.len(), 16);
    assert_eq!(trusted_roots_change(&first, &first), None);
    let note = trusted_roots_change(&[], &first).unwrap();
    assert!(
        note.starts_with("verifies with 2 trusted root(s); keyless authority 1: ")
            && note.contains("(2 CA(s), 1 log(s), 0 CT log(s), 0 timestamp authorities)"),
        "{note}"
    );
    // The Rekor root rotated in its Secret: named, with the fingerprint it replaced.
    let rotated = trusted_root_statuses(&compile(&[fulcio, trusted_root_document(0, 3)]));
    let note = trusted_roots_change(&first, &rotated).unwrap();
    assert_eq!(
        note,
        format!(
            "verifies with 2 trusted root(s); publicKeysTlog: {} (0 CA(s), 3 log(s), 0 CT log(s), 0 timestamp authorities) instead of {}",
            rotated[1].fingerprint, first[1].fingerprint
        )
    );
    assert_eq!(
        trusted_roots_change(&rotated, &rotated[..1]).unwrap(),
        format!(
            "verifies with 1 trusted root(s); publicKeysTlog: no longer used ({})",
            rotated[1].fingerprint
        )
    );
}

#[test]
fn a_change_of_trusted_keys_names_what_was_added_and_removed() {
    use stellaops_controllers::zastava_policy::trusted_keys_change;
    use stellaops_crds::zastava_policy::TrustedKeyStatus;
    let key = |fingerprint: &str, algorithm: &str| TrustedKeyStatus {
        fingerprint: fingerprint.into(),
        algorithm: algorithm.into(),
    };
    let old = vec![key("0a", "ECDSA P-256"), key("1b", "RSA-3072")];
    let new = vec![key("1b", "RSA-3072"), key("2c", "Ed25519")];
    assert_eq!(trusted_keys_change(&old, &old), None);
    assert_eq!(trusted_keys_change(&[], &[]), None);
    assert_eq!(
        trusted_keys_change(&old, &new).unwrap(),
        "trusts 2 key(s); added Ed25519 2c; removed ECDSA P-256 0a"
    );
    assert_eq!(
        trusted_keys_change(&new, &[]).unwrap(),
        "trusts 0 key(s); removed RSA-3072 1b, Ed25519 2c"
    );
}

#[tokio::test]
async fn a_missing_key_secret_is_reported_not_ready_without_touching_the_webhook() {
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        not_found(
            server
                .expect(
                    Method::GET,
                    "/api/v1/namespaces/security/secrets/signing-keys",
                )
                .await,
        );
        let (event, status) = expect_event_and_ready_condition(
            &mut server,
            "KeySecretMissing",
            "public-key Secret security/signing-keys (or its key) does not exist",
        )
        .await;
        assert_eq!(event["type"], "Warning");
        assert_eq!(status.body["status"]["conditions"][0]["status"], "False");
        // Not served, so no key of it is trusted any more.
        assert_eq!(status.body["status"]["trustedKeys"], json!([]));
        status_accepted_and_done(status, server).await;
    });
    let mut policy = policy(json!({
        "mode": "enforce",
        "requireSignature": {"publicKeys": {"name": "signing-keys", "namespace": "security"}},
    }));
    policy.status = Some(stellaops_crds::zastava_policy::ZastavaPolicyStatus {
        trusted_keys: vec![stellaops_crds::zastava_policy::TrustedKeyStatus {
            fingerprint: "0123456789abcdef".into(),
            algorithm: "RSA-3072".into(),
        }],
        ..Default::default()
    });
    reconcile(Arc::new(policy), context(client)).await.unwrap();
    verifier.await.unwrap();
}

/// A keyless authority's trusted-root Secret without the named key, then with a document
/// that is not a trusted root: each reported, neither touching the webhook.
#[tokio::test]
async fn a_missing_or_broken_trusted_root_is_reported_not_ready() {
    for (data, reason, message) in [
        (
            json!({"other.json": base64_encode("{}")}),
            "TrustedRootMissing",
            "trusted-root Secret security/sigstore-root (key trusted_root.json) does not exist",
        ),
        (
            json!({"trusted_root.json": base64_encode(r#"{"mediaType": "text/plain"}"#)}),
            "InvalidTrustedRoot",
            "keyless authority 1: Secret sigstore-root key trusted_root.json: trusted root has mediaType \"text/plain\"",
        ),
    ] {
        let (client, mut server) = mock_client("default");
        let verifier = tokio::spawn(async move {
            serve_secret(&mut server, "security", "sigstore-root", data).await;
            let (_, status) = expect_event_and_ready_condition(&mut server, reason, message).await;
            assert_eq!(status.body["status"]["conditions"][0]["status"], "False");
            status_accepted_and_done(status, server).await;
        });
        let policy = policy(json!({
            "mode": "enforce",
            "requireSignature": {"keyless": [{
                "subject": "release@example.com", "issuer": "https://accounts.example.com",
                "trustedRoot": {"name": "sigstore-root", "namespace": "security"}}]},
        }));
        reconcile(Arc::new(policy), context(client)).await.unwrap();
        verifier.await.unwrap();
    }
}

/// `publicKeysTlog`'s trusted root is read after the public keys, like a keyless
/// authority's: missing, the policy is not ready and names the Secret.
#[tokio::test]
async fn a_missing_trusted_root_of_the_keys_log_is_reported_not_ready() {
    let (client, mut server) = mock_client("default");
    let pem = public_key_pem(6);
    let verifier = tokio::spawn(async move {
        serve_secret(
            &mut server,
            "security",
            "signing-keys",
            json!({"cosign.pub": base64_encode(&pem)}),
        )
        .await;
        not_found(
            server
                .expect(
                    Method::GET,
                    "/api/v1/namespaces/stellaops-system/secrets/rekor-root",
                )
                .await,
        );
        let (_, status) = expect_event_and_ready_condition(
            &mut server,
            "TrustedRootMissing",
            "trusted-root Secret stellaops-system/rekor-root (key trusted_root.json) does not exist",
        )
        .await;
        status_accepted_and_done(status, server).await;
    });
    let policy = policy(json!({
        "mode": "enforce",
        "requireSignature": {"publicKeys": {"name": "signing-keys", "namespace": "security"},
                             "publicKeysTlog": {"trustedRoot": {"name": "rekor-root"}}},
    }));
    reconcile(Arc::new(policy), context(client)).await.unwrap();
    verifier.await.unwrap();
}

/// The PEM public key of the P-256 key whose scalar is `seed` repeated.
fn public_key_pem(seed: u8) -> String {
    let key = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
    p256::pkcs8::EncodePublicKey::to_public_key_pem(
        key.verifying_key(),
        p256::pkcs8::LineEnding::LF,
    )
    .unwrap()
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn base64_decode(text: &str) -> String {
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn concurrent_first_reconciles_issue_one_ca() {
    use stellaops_controllers::zastava_policy::ensure_certificates;
    let (client, mut server) = mock_client("default");
    let ca_path = format!("/api/v1/namespaces/stellaops-system/secrets/{CA_SECRET}");
    let tls_path = format!("/api/v1/namespaces/stellaops-system/secrets/{TLS_SECRET}");
    let verifier = tokio::spawn(async move {
        // The first caller reads nothing and writes both Secrets…
        not_found(server.expect(Method::GET, &ca_path).await);
        not_found(server.expect(Method::GET, &tls_path).await);
        let ca = server.expect(Method::PATCH, &ca_path).await;
        let ca_body = ca.body.clone();
        ca.respond_with_request_body();
        let tls = server.expect(Method::PATCH, &tls_path).await;
        let tls_body = tls.body.clone();
        tls.respond_with_request_body();
        // …and only then does the second read them, find them good, and write nothing.
        server
            .expect(Method::GET, &ca_path)
            .await
            .respond(200, ca_body);
        server
            .expect(Method::GET, &tls_path)
            .await
            .respond(200, tls_body);
        server
            .expect_no_more_calls(std::time::Duration::from_millis(200))
            .await;
    });
    let config = Config::default();
    let now = jiff::Timestamp::now().as_second();
    let (a, b) = tokio::join!(
        ensure_certificates(&client, &config, now),
        ensure_certificates(&client, &config, now)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    verifier.await.unwrap();
    assert_eq!(a.0, b.0, "both see the same CA bundle");
    let renewed = a.2.len() + b.2.len();
    assert_eq!(renewed, 2, "one CA and one serving certificate in all");
}
