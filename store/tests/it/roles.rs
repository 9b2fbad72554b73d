//! The database roles: the security page prints the GRANTs the code defines, and a worker
//! or webhook connected under them does its work and cannot change the schema.

use stellaops_store::roles::{Roles, grants};

#[test]
fn the_security_page_prints_the_grants_the_code_defines() {
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/security.md"),
    )
    .unwrap();
    let sql = grants(&Roles::default());
    assert!(
        page.contains(&sql),
        "docs/security.md must print exactly:\n{sql}"
    );
}

#[tokio::test]
async fn a_worker_writes_rows_but_no_ddl_and_the_webhook_only_reads_verdicts() {
    let Some(owner) =
        stellaops_testing::migrated_database_url("roles", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let pid = std::process::id();
    let (worker, webhook) = (format!("it_worker_{pid}"), format!("it_webhook_{pid}"));
    let owner_role: String = {
        let pool = stellaops_store::connect(&owner).await.unwrap();
        sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let sql = grants(&Roles {
        owner: &owner_role,
        worker: &worker,
        webhook: &webhook,
    });
    // The grants name both roles: create the webhook's before granting anything.
    stellaops_testing::database_role(&owner, &webhook, "SELECT 1").await;
    let worker_url = stellaops_testing::database_role(&owner, &worker, &sql).await;
    let webhook_url = stellaops_testing::database_role(&owner, &webhook, &sql).await;

    // The worker: the schema is current, rows go in, DDL is refused — and so is a migration
    // run (sqlx creates its bookkeeping table first), so no worker can hide one.
    let pool = stellaops_store::connect(&worker_url).await.unwrap();
    stellaops_store::check_schema(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO scan_results (image_digest, image_ref, advisory_snapshot, sbom_uri, sbom_sha256, components,
            critical, high, medium, low, verdict, started_at)
         VALUES ('sha256:00', 'r/app', 0, 's3://b/x', 'sha256:s', 1, 0, 0, 0, 0, 'Pass', now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    let ddl = sqlx::query("CREATE TABLE sneaky (id int)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(ddl.to_string().contains("permission denied"), "{ddl}");
    let altered = sqlx::query("ALTER TABLE scan_results ADD COLUMN sneaky int")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(altered.to_string().contains("owner"), "{altered}");
    // A migration the worker does not need is a no-op only for the owner; for the worker
    // even the bookkeeping check is refused.
    let migrated = stellaops_store::migrate(&pool).await;
    assert!(migrated.is_err(), "a worker cannot run migrations");

    // The webhook reads verdicts and appends events, and can change nothing else.
    let pool = stellaops_store::connect(&webhook_url).await.unwrap();
    stellaops_store::check_schema(&pool).await.unwrap();
    let verdict: String =
        sqlx::query_scalar("SELECT verdict FROM scan_results WHERE image_digest = 'sha256:00'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(verdict, "Pass");
    let admitted = stellaops_store::outbox::publish(
        &pool,
        &stellaops_store::outbox::NewEvent {
            kind: "zastava.admission".into(),
            namespace: Some("prod".into()),
            subject: "sha256:00".into(),
            severity: None,
            payload: serde_json::json!({"decision": "deny"}),
            idempotency_key: "roles-test".into(),
        },
    )
    .await
    .unwrap();
    assert!(admitted.is_some());
    let forged = sqlx::query("UPDATE scan_results SET verdict = 'Pass'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(forged.to_string().contains("permission denied"), "{forged}");
    let denied = sqlx::query("SELECT count(*) FROM canonical_advisories")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
}
