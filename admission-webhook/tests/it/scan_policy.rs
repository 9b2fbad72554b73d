//! `requireScan` under a ZastavaPolicy's `policyRef`: only a verdict decided under the
//! ScanPolicy's current digest counts, read from the real PostgreSQL as the webhook's
//! database role, through the webhook in enforce mode.

use std::sync::Arc;

use serde_json::{Value, json};
use stellaops_admission_webhook::evidence::{EvidenceSource, RegistryEvidence};
use stellaops_admission_webhook::policy::compile;
use stellaops_crds::scan::Verdict;
use stellaops_registry::{Credentials, RegistryClient};

use crate::policy::zastava_policy;
use crate::server::{pod, review};

const STRICT: &str = "sha256:5151515151515151515151515151515151515151515151515151515151515151";
const OTHER: &str = "sha256:0707070707070707070707070707070707070707070707070707070707070707";

/// A signed result of `digest` decided under `policy_digest`; the envelope names
/// `signed_digest` (normally the same).
async fn insert(
    pool: &sqlx::PgPool,
    signer: &stellaops_store::attestation::VerdictSigner,
    digest: &str,
    verdict: &str,
    minutes_ago: i64,
    policy_digest: &str,
    signed_digest: &str,
) {
    let finished = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    let envelope = signer.sign(
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
            policy_digest: signed_digest.into(),
            scanned_at: finished,
        },
    );
    sqlx::query(
        "INSERT INTO scan_results (image_digest, image_ref, advisory_snapshot, sbom_uri, sbom_sha256,
            components, verdict, started_at, finished_at, attestation_key, attestation, policy_digest)
         VALUES ($1, 'registry.example.com/app', 0, 's3://b/k', 'x', 1, $2, now(), $3, $4, $5, $6)",
    )
    .bind(digest)
    .bind(verdict)
    .bind(finished)
    .bind(stellaops_store::attestation::object_key(&envelope))
    .bind(&envelope)
    .bind(policy_digest)
    .execute(pool)
    .await
    .unwrap();
}

/// A migrated database: the owner's pool, and the webhook's (as its own database role,
/// docs/security.md); `None` without the test database.
async fn databases(name: &str, roles: &str) -> Option<(sqlx::PgPool, sqlx::PgPool)> {
    let owner_url =
        stellaops_testing::migrated_database_url(name, &stellaops_store::MIGRATOR).await?;
    let pool = stellaops_store::connect(&owner_url).await.unwrap();
    let owner: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    let pid = std::process::id();
    let (worker, webhook) = (
        format!("{roles}_worker_{pid}"),
        format!("{roles}_webhook_{pid}"),
    );
    let grants = stellaops_store::roles::grants(&stellaops_store::roles::Roles {
        owner: &owner,
        worker: &worker,
        webhook: &webhook,
    });
    stellaops_testing::database_role(&owner_url, &webhook, "SELECT 1").await;
    stellaops_testing::database_role(&owner_url, &worker, "SELECT 1").await;
    let url = stellaops_testing::database_role(&owner_url, &webhook, &grants).await;
    Some((pool, stellaops_store::connect(&url).await.unwrap()))
}

#[tokio::test]
async fn require_scan_judges_the_verdict_decided_under_the_named_scan_policy() {
    let Some((pool, webhook_pool)) = databases("zastava_scan_policy", "zsp").await else {
        return;
    };
    let (private, public) = stellaops_store::attestation::generate_key_pair();
    let signer = stellaops_store::attestation::VerdictSigner::from_pem(&private).unwrap();
    // Re-evaluated under strict (Fail), then scanned again under another policy (Pass):
    // the Pass is the latest, but strict judges by its own.
    let reevaluated = "sha256:aaaa000000000000000000000000000000000000000000000000000000000001";
    insert(&pool, &signer, reevaluated, "Fail", 30, STRICT, STRICT).await;
    insert(&pool, &signer, reevaluated, "Pass", 5, OTHER, OTHER).await;
    // Only ever decided under another policy.
    let elsewhere = "sha256:aaaa000000000000000000000000000000000000000000000000000000000002";
    insert(&pool, &signer, elsewhere, "Pass", 5, OTHER, OTHER).await;
    // Passing under strict.
    let passing = "sha256:aaaa000000000000000000000000000000000000000000000000000000000003";
    insert(&pool, &signer, passing, "Pass", 5, STRICT, STRICT).await;
    // The row says strict, its signed verdict another policy: not trusted.
    let forged = "sha256:aaaa000000000000000000000000000000000000000000000000000000000004";
    insert(&pool, &signer, forged, "Pass", 5, STRICT, OTHER).await;

    let evidence = RegistryEvidence {
        registry: RegistryClient::new(Credentials::default(), Vec::new()).unwrap(),
        database: Some(webhook_pool.clone()),
        verdict_keys: stellaops_store::attestation::VerdictKeys::from_pem_bundle(&public)
            .unwrap()
            .into(),
    };
    let under = |digest: &'static str| evidence.latest_scan_under(digest, "strict", STRICT);
    let judged = under(reevaluated).await.unwrap().unwrap();
    assert_eq!((judged.verdict, judged.unverified), (Verdict::Fail, None));
    assert_eq!(
        evidence
            .latest_scan(reevaluated)
            .await
            .unwrap()
            .unwrap()
            .verdict,
        Verdict::Pass,
        "without a policy the latest counts"
    );
    let other = under(elsewhere).await.unwrap().unwrap();
    assert!(
        other
            .unverified
            .as_deref()
            .is_some_and(|r| r.contains("no verdict of it was decided under ScanPolicy strict")),
        "{other:?}"
    );
    assert!(under("sha256:none").await.unwrap().is_none());
    let forged_record = under(forged).await.unwrap().unwrap();
    assert!(
        forged_record
            .unverified
            .as_deref()
            .is_some_and(|r| r.contains("signed verdict names policy")),
        "{forged_record:?}"
    );

    // Through the webhook, enforcing.
    let webhook = stellaops_admission_webhook::server::Webhook::new(
        Default::default(),
        Arc::new(evidence),
        None,
        stellaops_admission_webhook::server::Metrics::register(&prometheus::Registry::new())
            .unwrap(),
        Arc::new(stellaops_tls::ReloadableCert::new(None)),
    );
    let zastava = zastava_policy(
        json!({"mode": "enforce", "policyRef": {"name": "strict"},
               "requireScan": {"maxAge": "24h", "denyOnVerdict": ["Fail"]}}),
        1,
    );
    let answer = |webhook: Arc<stellaops_admission_webhook::server::Webhook>, image: &str| {
        let body = serde_json::to_vec(&review(
            "Pod",
            "CREATE",
            pod(&[&format!("registry.example.com/app@{image}")]),
            Value::Null,
        ))
        .unwrap();
        async move {
            let (status, answer) = webhook.review("prod", &body).await;
            assert_eq!(status, 200);
            let answer: Value = serde_json::from_slice(&answer).unwrap();
            (
                answer["response"]["allowed"].as_bool().unwrap(),
                answer["response"]["status"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        }
    };
    let mut resolved = compile(&zastava, &[]).unwrap();
    resolved.resolve_scan_policy(Ok(STRICT.to_string()));
    webhook.set_policies([resolved]);
    let (allowed, message) = answer(webhook.clone(), reevaluated).await;
    assert!(!allowed);
    assert!(message.contains("has verdict Fail"), "{message}");
    let (allowed, message) = answer(webhook.clone(), elsewhere).await;
    assert!(!allowed, "scanned only under another policy");
    assert!(
        message.contains("no verdict of it was decided under ScanPolicy strict"),
        "{message}"
    );
    assert_eq!(
        answer(webhook.clone(), passing).await,
        (true, String::new())
    );
    assert!(!answer(webhook.clone(), forged).await.0);

    // The ScanPolicy is not Ready: nothing counts, and the denial names it.
    let mut unready = compile(&zastava, &[]).unwrap();
    unready.resolve_scan_policy(Err("ScanPolicy strict is not Ready: rules[0] broken".into()));
    webhook.set_policies([unready]);
    let (allowed, message) = answer(webhook.clone(), passing).await;
    assert!(!allowed);
    assert!(
        message.contains("ScanPolicy strict is not Ready: rules[0] broken"),
        "{message}"
    );
}

/// A re-evaluation that changes a verdict (a VEX statement, a ScanPolicy change, a waiver's
/// expiry) writes `rescan.delta`; the webhook, following the outbox as its own database
/// role, forgets the digest's cached verdict, so the next review reads the new one at once
/// instead of up to 30 s later. Nothing else is forgotten.
#[tokio::test]
async fn a_changed_verdict_is_read_again_as_soon_as_its_rescan_delta_is_written() {
    let Some((pool, webhook_pool)) = databases("zastava_forget", "zfg").await else {
        return;
    };
    let (private, public) = stellaops_store::attestation::generate_key_pair();
    let signer = stellaops_store::attestation::VerdictSigner::from_pem(&private).unwrap();
    let changed = "sha256:bbbb000000000000000000000000000000000000000000000000000000000001";
    let unchanged = "sha256:bbbb000000000000000000000000000000000000000000000000000000000002";
    insert(&pool, &signer, changed, "Fail", 10, STRICT, STRICT).await;
    insert(&pool, &signer, unchanged, "Fail", 10, STRICT, STRICT).await;
    let evidence = RegistryEvidence {
        registry: RegistryClient::new(Credentials::default(), Vec::new()).unwrap(),
        database: Some(webhook_pool.clone()),
        verdict_keys: stellaops_store::attestation::VerdictKeys::from_pem_bundle(&public)
            .unwrap()
            .into(),
    };
    let webhook = stellaops_admission_webhook::server::Webhook::new(
        Default::default(),
        Arc::new(evidence),
        Some(webhook_pool.clone()),
        stellaops_admission_webhook::server::Metrics::register(&prometheus::Registry::new())
            .unwrap(),
        Arc::new(stellaops_tls::ReloadableCert::new(None)),
    );
    let mut resolved = compile(
        &zastava_policy(
            json!({"mode": "enforce", "policyRef": {"name": "strict"},
                   "requireScan": {"maxAge": "24h", "denyOnVerdict": ["Fail"]}}),
            1,
        ),
        &[],
    )
    .unwrap();
    resolved.resolve_scan_policy(Ok(STRICT.to_string()));
    webhook.set_policies([resolved]);
    let allowed = |image: &str| {
        let webhook = webhook.clone();
        let body = serde_json::to_vec(&review(
            "Pod",
            "CREATE",
            pod(&[&format!("registry.example.com/app@{image}")]),
            Value::Null,
        ))
        .unwrap();
        async move {
            let (status, answer) = webhook.review("prod", &body).await;
            assert_eq!(status, 200);
            let answer: Value = serde_json::from_slice(&answer).unwrap();
            answer["response"]["allowed"].as_bool().unwrap()
        }
    };
    tokio::spawn(
        webhook
            .clone()
            .forget_changed_verdicts(webhook_pool.clone()),
    );
    assert!(!allowed(changed).await);
    assert!(!allowed(unchanged).await);

    // Re-evaluated to Pass, both of them; only `changed`'s re-evaluation is announced yet.
    insert(&pool, &signer, changed, "Pass", 0, STRICT, STRICT).await;
    insert(&pool, &signer, unchanged, "Pass", 0, STRICT, STRICT).await;
    assert!(!allowed(changed).await, "the cached Fail, until the event");
    stellaops_store::outbox::publish(
        &pool,
        &stellaops_store::outbox::NewEvent {
            kind: "rescan.delta".into(),
            namespace: None,
            subject: format!("registry.example.com/app@{changed}"),
            severity: None,
            payload: json!({"imageDigest": changed, "verdict": "Pass", "previousVerdict": "Fail"}),
            idempotency_key: "rescan.delta/e2e-1".into(),
        },
    )
    .await
    .unwrap();
    let announced = std::time::Instant::now();
    while !allowed(changed).await {
        assert!(
            announced.elapsed() < std::time::Duration::from_secs(5),
            "still the cached Fail 5 s after the event (the cache keeps it 30 s)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    eprintln!(
        "read again {:.3}s after the event",
        announced.elapsed().as_secs_f64()
    );
    assert!(
        !allowed(unchanged).await,
        "a digest no event named keeps its cached verdict"
    );
}
