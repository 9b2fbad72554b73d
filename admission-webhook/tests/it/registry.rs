//! Signatures from the real registry (images pushed and signed in the test, the signature
//! stored as cosign stores it) and scan verdicts from the real PostgreSQL, through the
//! webhook's own evidence source.

use std::sync::Arc;

use serde_json::{Value, json};
use stellaops_admission_webhook::cosign;
use stellaops_admission_webhook::evidence::{EvidenceSource, RegistryEvidence};
use stellaops_admission_webhook::policy::compile;
use stellaops_registry::{Credentials, RegistryClient};
use stellaops_testing::oci;

use crate::policy::{public_pem, sign, signing_key, zastava_policy};
use crate::server::{client, pod, review, start};

/// Push a small image as `repository:tag`; returns its digest.
pub fn push_image(registry: &str, repository: &str, tag: &str, marker: &str) -> String {
    let dir = std::env::temp_dir().join(format!(
        "zastava-{}-{}-{tag}",
        std::process::id(),
        repository.replace('/', "-")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let layer = oci::tar_of(&[("etc/marker", marker.as_bytes())]);
    let built = oci::write_layout(&dir, &[layer], tag);
    oci::push(&dir, tag, registry, repository);
    let _ = std::fs::remove_dir_all(&dir);
    built.manifest_digest
}

#[tokio::test]
async fn signatures_in_the_real_registry_admit_signed_images_and_refuse_the_rest() {
    let Some(registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    let signed = push_image(&registry, "zastava/signed", "1.0", "signed");
    let unsigned = push_image(&registry, "zastava/unsigned", "1.0", "unsigned");
    let key = signing_key(11);
    let payload = cosign::payload(&format!("{registry}/zastava/signed"), &signed);
    oci::push_cosign_signature(
        &registry,
        "zastava/signed",
        &signed,
        &payload,
        &sign(&key, &payload),
    )
    .await;

    let evidence = Arc::new(RegistryEvidence {
        registry: RegistryClient::new(Credentials::default(), vec![registry.clone()]).unwrap(),
        database: None,
        verdict_keys: Default::default(),
    });
    // The source itself: the tag resolves, the signature is found, an unsigned digest has none.
    let signed_tag = format!("{registry}/zastava/signed:1.0");
    assert_eq!(evidence.resolve_digest(&signed_tag).await.unwrap(), signed);
    let found = evidence.signatures(&signed_tag, &signed).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].payload, payload);
    let unsigned_ref = format!("{registry}/zastava/unsigned@{unsigned}");
    assert!(
        evidence
            .signatures(&unsigned_ref, &unsigned)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        evidence
            .resolve_digest(&format!("{registry}/zastava/missing:1"))
            .await
            .unwrap_err()
            .contains("not found")
    );

    let running = start(evidence).await;
    let policy = |seed: u8| {
        compile(
            &zastava_policy(
                json!({"mode": "enforce",
                       "requireSignature": {"publicKeys": {"name": "keys", "namespace": "stellaops-system"}}}),
                1,
            ),
            &[public_pem(&signing_key(seed))],
        )
        .unwrap()
    };
    running.webhook.set_policies([policy(11)]);
    let https = client(&running, &running.cert_pem);
    let url = format!("https://localhost:{}/validate/prod", running.addr.port());
    let ask = |images: Vec<String>| {
        let https = https.clone();
        let url = url.clone();
        async move {
            let refs: Vec<&str> = images.iter().map(String::as_str).collect();
            let answer: Value = https
                .post(&url)
                .json(&review("Pod", "CREATE", pod(&refs), Value::Null))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["response"].clone()
        }
    };
    // Signed, by tag (resolved through the registry) and by digest: admitted.
    let answer = ask(vec![
        signed_tag.clone(),
        format!("{registry}/zastava/signed@{signed}"),
    ])
    .await;
    assert_eq!(answer["allowed"], true, "{answer}");
    // Unsigned: refused, naming the tag cosign would have written.
    let answer = ask(vec![unsigned_ref.clone()]).await;
    assert_eq!(answer["allowed"], false);
    assert!(
        answer["status"]["message"]
            .as_str()
            .unwrap()
            .contains(&cosign::signature_tag(&unsigned)),
        "{answer}"
    );
    // The policy's key changes: the cached verification is not reused.
    running.webhook.set_policies([policy(12)]);
    let answer = ask(vec![signed_tag.clone()]).await;
    assert_eq!(answer["allowed"], false);
    assert!(
        answer["status"]["message"]
            .as_str()
            .unwrap()
            .contains("1 signature(s) found, none valid: not signed by any trusted key"),
        "{answer}"
    );
}

#[tokio::test]
async fn scan_verdicts_come_from_the_database_and_denials_reach_the_outbox() {
    let Some(owner_url) =
        stellaops_testing::migrated_database_url("zastava_scan", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    // Rows are written (and the outbox read back) as the owner; the webhook connects as
    // the `stellaops_webhook` role of docs/security.md, which may only read verdicts and
    // append events: a lookup or event needing more fails this test.
    let pool = stellaops_store::connect(&owner_url).await.unwrap();
    let webhook_pool = {
        let owner: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&pool)
            .await
            .unwrap();
        let pid = std::process::id();
        let (worker, webhook) = (
            format!("zastava_worker_{pid}"),
            format!("zastava_webhook_{pid}"),
        );
        let grants = stellaops_store::roles::grants(&stellaops_store::roles::Roles {
            owner: &owner,
            worker: &worker,
            webhook: &webhook,
        });
        stellaops_testing::database_role(&owner_url, &webhook, "SELECT 1").await;
        stellaops_testing::database_role(&owner_url, &worker, "SELECT 1").await;
        let url = stellaops_testing::database_role(&owner_url, &webhook, &grants).await;
        stellaops_store::connect(&url).await.unwrap()
    };
    let failing = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    let passing = "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
    let (private, public) = stellaops_store::attestation::generate_key_pair();
    let signer = stellaops_store::attestation::VerdictSigner::from_pem(&private).unwrap();
    for (digest, verdict, hours_ago) in [
        (failing, "Pass", 30),
        (failing, "Fail", 2),
        (passing, "Pass", 1),
    ] {
        insert_verdict(&pool, digest, verdict, hours_ago, Some(&signer)).await;
    }
    let evidence = RegistryEvidence {
        registry: RegistryClient::new(Credentials::default(), Vec::new()).unwrap(),
        database: Some(webhook_pool.clone()),
        verdict_keys: stellaops_store::attestation::VerdictKeys::from_pem_bundle(&public)
            .unwrap()
            .into(),
    };
    let latest = evidence.latest_scan(failing).await.unwrap().unwrap();
    assert_eq!(
        latest.verdict,
        stellaops_crds::scan::Verdict::Fail,
        "the newest result wins"
    );
    assert!(evidence.latest_scan("sha256:none").await.unwrap().is_none());

    // Through the webhook with the outbox: one zastava.admission event for the denial.
    let certificate = Arc::new(stellaops_tls::ReloadableCert::new(None));
    let metrics =
        stellaops_admission_webhook::server::Metrics::register(&prometheus::Registry::new())
            .unwrap();
    let webhook = stellaops_admission_webhook::server::Webhook::new(
        Default::default(),
        Arc::new(evidence),
        Some(webhook_pool.clone()),
        metrics,
        certificate,
    );
    webhook.set_policies([compile(
        &zastava_policy(
            json!({"mode": "warn", "requireScan": {"maxAge": "24h", "denyOnVerdict": ["Fail"]}}),
            1,
        ),
        &[],
    )
    .unwrap()]);
    let images = [
        format!("registry.example.com/app@{failing}"),
        format!("registry.example.com/app@{passing}"),
    ];
    let refs: Vec<&str> = images.iter().map(String::as_str).collect();
    let body = serde_json::to_vec(&review("Pod", "CREATE", pod(&refs), Value::Null)).unwrap();
    let (status, answer) = webhook.review("prod", &body).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "warn mode admits");
    let warnings = answer["response"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains(&format!("latest scan of {failing} has verdict Fail"))
    );
    // The event is written off the request path: wait for it.
    let mut events = Vec::new();
    for _ in 0..50 {
        events = stellaops_store::outbox::read_after(&pool, 0, 10)
            .await
            .unwrap();
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.kind, "zastava.admission");
    assert_eq!(event.namespace.as_deref(), Some("shop"));
    assert_eq!(event.subject, "Pod/web");
    assert_eq!(event.payload["decision"], "warn");
    assert_eq!(event.payload["policy"], "prod");
    assert_eq!(event.payload["user"], "alice@example.com");
    assert_eq!(
        event.payload["violations"][0]["path"],
        "spec.containers[0].image"
    );
    // The same request again (same uid) does not write a second event, nor does a
    // server-side dry run (`sideEffects: None`), although it gets the same answer.
    let (_, _) = webhook.review("prod", &body).await;
    let mut dry_run = review("Pod", "CREATE", pod(&refs), Value::Null);
    dry_run["request"]["dryRun"] = json!(true);
    let (_, answer) = webhook
        .review("prod", &serde_json::to_vec(&dry_run).unwrap())
        .await;
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["response"]["warnings"].as_array().unwrap().len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        stellaops_store::outbox::read_after(&pool, 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A result row for `digest`, finished `hours_ago`, with its envelope when `signer` is given
/// (as the scan worker writes it), or without one (a row written straight into PostgreSQL).
async fn insert_verdict(
    pool: &sqlx::PgPool,
    digest: &str,
    verdict: &str,
    hours_ago: i32,
    signer: Option<&stellaops_store::attestation::VerdictSigner>,
) {
    let finished = chrono::Utc::now() - chrono::Duration::hours(i64::from(hours_ago));
    let envelope = signer.map(|signer| {
        signer.sign(
            digest,
            &stellaops_store::attestation::VerdictPredicate {
                image: "registry.example.com/app".into(),
                verdict: verdict.into(),
                findings: Default::default(),
                sbom: stellaops_store::attestation::SbomRef {
                    uri: "s3://b/k".into(),
                    sha256: "x".into(),
                },
                advisory_snapshot: 0,
                policy_digest: "sha256:p".into(),
                scanned_at: finished,
            },
        )
    });
    let key = envelope
        .as_deref()
        .map(stellaops_store::attestation::object_key);
    sqlx::query(
        "INSERT INTO scan_results (image_digest, image_ref, advisory_snapshot, sbom_uri, sbom_sha256,
            components, verdict, started_at, finished_at, attestation_key, attestation)
         VALUES ($1, 'registry.example.com/app', 0, 's3://b/k', 'x', 1, $2, now(), $3, $4, $5)",
    )
    .bind(digest)
    .bind(verdict)
    .bind(finished)
    .bind(key)
    .bind(envelope)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_forged_pass_row_does_not_admit_and_a_tampered_envelope_is_named() {
    let Some(pool) =
        stellaops_testing::migrated_database("zastava_forged", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let (private, public) = stellaops_store::attestation::generate_key_pair();
    let signer = stellaops_store::attestation::VerdictSigner::from_pem(&private).unwrap();
    let forged = "sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
    let tampered = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    let signed = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    // A Pass written straight into PostgreSQL, as anyone holding a database role could.
    insert_verdict(&pool, forged, "Pass", 1, None).await;
    // A signed Fail whose stored envelope was then edited to say Pass (and renamed to match).
    insert_verdict(&pool, tampered, "Fail", 1, Some(&signer)).await;
    let (key, envelope): (String, Vec<u8>) = sqlx::query_as(
        "SELECT attestation_key, attestation FROM scan_results WHERE image_digest = $1",
    )
    .bind(tampered)
    .fetch_one(&pool)
    .await
    .unwrap();
    let mut parsed: stellaops_store::attestation::Envelope =
        serde_json::from_slice(&envelope).unwrap();
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let payload = String::from_utf8(engine.decode(&parsed.payload).unwrap()).unwrap();
    parsed.payload = engine.encode(payload.replace("\"Fail\"", "\"Pass\""));
    let edited = serde_json::to_vec(&parsed).unwrap();
    let edited_key = stellaops_store::attestation::object_key(&edited);
    assert_ne!(edited_key, key);
    sqlx::query(
        "UPDATE scan_results SET verdict = 'Pass', attestation_key = $2, attestation = $3
         WHERE image_digest = $1",
    )
    .bind(tampered)
    .bind(&edited_key)
    .bind(&edited)
    .execute(&pool)
    .await
    .unwrap();
    // And one honest Pass.
    insert_verdict(&pool, signed, "Pass", 1, Some(&signer)).await;

    let evidence = RegistryEvidence {
        registry: RegistryClient::new(Credentials::default(), Vec::new()).unwrap(),
        database: Some(pool.clone()),
        verdict_keys: stellaops_store::attestation::VerdictKeys::from_pem_bundle(&public)
            .unwrap()
            .into(),
    };
    let record = evidence.latest_scan(forged).await.unwrap().unwrap();
    assert!(
        record
            .unverified
            .as_deref()
            .is_some_and(|r| r.contains("no signed verdict envelope")),
        "{record:?}"
    );
    let record = evidence.latest_scan(tampered).await.unwrap().unwrap();
    let reason = record.unverified.clone().unwrap();
    assert!(reason.contains(&edited_key), "{reason}");
    assert!(
        evidence
            .latest_scan(signed)
            .await
            .unwrap()
            .unwrap()
            .unverified
            .is_none()
    );

    let certificate = Arc::new(stellaops_tls::ReloadableCert::new(None));
    let metrics =
        stellaops_admission_webhook::server::Metrics::register(&prometheus::Registry::new())
            .unwrap();
    let webhook = stellaops_admission_webhook::server::Webhook::new(
        Default::default(),
        Arc::new(evidence),
        None,
        metrics,
        certificate,
    );
    webhook.set_policies([compile(
        &zastava_policy(
            json!({"mode": "enforce", "requireScan": {"maxAge": "24h", "denyOnVerdict": ["Fail"]}}),
            1,
        ),
        &[],
    )
    .unwrap()]);
    let decide = |digest: &str| {
        let image = format!("registry.example.com/app@{digest}");
        serde_json::to_vec(&review(
            "Pod",
            "CREATE",
            pod(&[image.as_str()]),
            Value::Null,
        ))
        .unwrap()
    };
    for (digest, needle) in [
        (forged, "no signed verdict envelope".to_string()),
        (tampered, edited_key.clone()),
    ] {
        let (status, answer) = webhook.review("prod", &decide(digest)).await;
        assert_eq!(status, 200);
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["response"]["allowed"], false, "{answer}");
        let message = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{digest} counts as not scanned"))
                && message.contains(&needle),
            "{message}"
        );
    }
    let (_, answer) = webhook.review("prod", &decide(signed)).await;
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

#[tokio::test]
async fn a_rotated_verdict_key_file_is_trusted_without_a_restart_and_a_bad_one_is_refused() {
    use stellaops_store::attestation::{KeyFile, KeyFileChange, SharedVerdictKeys};
    let Some(pool) =
        stellaops_testing::migrated_database("zastava_key_reload", &stellaops_store::MIGRATOR)
            .await
    else {
        return;
    };
    let (old_private, old_public) = stellaops_store::attestation::generate_key_pair();
    let (new_private, new_public) = stellaops_store::attestation::generate_key_pair();
    let old = stellaops_store::attestation::VerdictSigner::from_pem(&old_private).unwrap();
    let new = stellaops_store::attestation::VerdictSigner::from_pem(&new_private).unwrap();
    let by_old = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    let by_new = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
    insert_verdict(&pool, by_old, "Pass", 1, Some(&old)).await;
    insert_verdict(&pool, by_new, "Pass", 1, Some(&new)).await;

    let dir = std::env::temp_dir().join(format!("zastava-key-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pub.pem");
    std::fs::write(&path, &old_public).unwrap();
    let keys = SharedVerdictKeys::default();
    let mut file = KeyFile::new(&path, keys.clone());
    assert_eq!(
        file.check(),
        KeyFileChange::Loaded(vec![old.key_id().to_string()])
    );
    let evidence = RegistryEvidence {
        registry: RegistryClient::new(Credentials::default(), Vec::new()).unwrap(),
        database: Some(pool.clone()),
        verdict_keys: keys.clone(),
    };
    let unverified = |digest: &'static str| {
        let evidence = &evidence;
        async move {
            evidence
                .latest_scan(digest)
                .await
                .unwrap()
                .unwrap()
                .unverified
        }
    };
    assert_eq!(unverified(by_old).await, None);
    let refused = unverified(by_new).await.unwrap();
    assert!(
        refused.contains("no signature by a configured verdict key"),
        "{refused}"
    );

    // Rotation, step one: the new key next to the old one; the same evidence source, no
    // restart, trusts both.
    std::fs::write(&path, format!("{old_public}{new_public}")).unwrap();
    assert_eq!(
        file.check(),
        KeyFileChange::Loaded(vec![old.key_id().to_string(), new.key_id().to_string()])
    );
    assert_eq!(file.check(), KeyFileChange::Unchanged);
    assert_eq!(
        (unverified(by_old).await, unverified(by_new).await),
        (None, None)
    );

    // A broken file (a half-written Secret, a private key by mistake) is refused with a
    // message naming it; the keys in force stay.
    for bad in ["not a key", old_private.as_str(), ""] {
        std::fs::write(&path, bad).unwrap();
        let KeyFileChange::Refused(why) = file.check() else {
            panic!("{bad:?} was not refused");
        };
        assert!(
            why.contains(&path.display().to_string()) && why.contains("keeping the 2 key(s)"),
            "{why}"
        );
        assert_eq!(
            (unverified(by_old).await, unverified(by_new).await),
            (None, None)
        );
    }
    // The file gone (the Secret deleted): the keys in force stay too.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(file.check(), KeyFileChange::Refused(why) if why.contains("is gone")));
    assert_eq!(keys.current().len(), 2);

    // Rotation, last step: only the new key; verdicts signed by the old one are no longer
    // trusted.
    std::fs::write(&path, &new_public).unwrap();
    assert_eq!(
        file.check(),
        KeyFileChange::Loaded(vec![new.key_id().to_string()])
    );
    assert_eq!(unverified(by_new).await, None);
    assert!(
        unverified(by_old)
            .await
            .is_some_and(|r| r.contains("no signature by a configured verdict key"))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
