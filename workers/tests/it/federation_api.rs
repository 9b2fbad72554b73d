//! The federation HTTP API over a real socket, against the real PostgreSQL; and the
//! CronJob's `federation sync` over a directory transport.

use std::sync::Arc;

use serde_json::{Value, json};
use stellaops_federation::bundle::{self, Contents};
use stellaops_federation::dsse::TrustedKeys;
use stellaops_federation::osv;
use stellaops_federation::sites::{self, PolicyUpdate};
use stellaops_workers::federation_api::{ApiState, Limits, Peer, Tokens, router};

const TOKEN: &str = "federation-test-token-0123456789";

fn state(pool: sqlx::PgPool) -> ApiState {
    ApiState::new(
        pool,
        TrustedKeys::default(),
        Limits::for_memory(1 << 20, None, std::time::Duration::from_secs(30)),
        Tokens::parse(&format!("*:{TOKEN}")).unwrap(),
        false,
    )
    .unwrap()
}

fn bundle_bytes(since: Option<&str>, cursor: &str, ids: &[&str]) -> Vec<u8> {
    let now = chrono::Utc::now();
    let (mut canonicals, mut edges) = (Vec::new(), Vec::new());
    for id in ids {
        let doc = json!({"id": id, "affected": [{"package": {"ecosystem": "Go", "name": format!("example.com/{id}")},
                                                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.0.1"}]}]}]});
        let parsed = osv::parse(id, &serde_json::to_vec(&doc).unwrap(), None, now).unwrap();
        canonicals.extend(parsed.canonicals);
        edges.extend(parsed.edges);
    }
    bundle::write(
        &Contents {
            site_id: "site-a",
            since_cursor: since.map(str::to_string),
            cursor: cursor.into(),
            canonicals: &canonicals,
            edges: &edges,
            deletions: &[],
        },
        None,
        3,
    )
}

#[tokio::test]
async fn import_and_status_over_http() {
    let Some(pool) =
        stellaops_testing::migrated_database("api_import", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    sites::set_policy(
        &pool,
        "site-a",
        &PolicyUpdate {
            require_signature: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let state = Arc::new(state(pool.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<Peer>(),
        )
        .await
        .unwrap()
    });
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>, query: &'static str| {
        http.post(format!("{base}/api/v1/federation/import{query}"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/zstd")
            .body(body)
            .send()
    };

    let first = bundle_bytes(
        None,
        "2025-01-15T10:00:00.000Z#0004",
        &["GO-2024-0001", "GO-2024-0002"],
    );
    let dry = post(first.clone(), "?dry_run=true").await.unwrap();
    assert_eq!(dry.status(), 200);
    assert_eq!(dry.json::<Value>().await.unwrap()["dry_run"], true);
    let applied = post(first.clone(), "").await.unwrap();
    assert_eq!(applied.status(), 200);
    let body: Value = applied.json().await.unwrap();
    assert_eq!(
        (
            body["success"].as_bool(),
            body["counts"]["canonical_created"].as_i64()
        ),
        (Some(true), Some(2))
    );
    assert_eq!(body["imported_cursor"], "2025-01-15T10:00:00.000Z#0004");

    let again = post(first, "").await.unwrap();
    assert_eq!(again.status(), 409);
    assert!(
        again.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .starts_with("Bundle already imported")
    );
    let garbage = post(b"not a bundle".to_vec(), "").await.unwrap();
    assert_eq!(garbage.status(), 400);
    let large = post(vec![0u8; (1 << 20) + 1], "").await.unwrap();
    assert_eq!(large.status(), 413);
    let bad_strategy = post(
        bundle_bytes(None, "2025-01-15T10:00:00.000Z#0009", &["GO-2024-0003"]),
        "?on_conflict=newest",
    )
    .await
    .unwrap();
    assert_eq!(bad_strategy.status(), 400);
    let wrong_type = http
        .post(format!("{base}/api/v1/federation/import"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);

    let status: Value = http
        .get(format!("{base}/api/v1/federation/sync/status"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["sites"][0]["site_id"], "site-a");
    assert_eq!(status["sites"][0]["bundles_imported"], 1);
    assert_eq!(
        status["sites"][0]["last_cursor"],
        "2025-01-15T10:00:00.000Z#0004"
    );
    assert!(status["local_cursor"].as_str().is_some());
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("federation_import_duration_seconds_count"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"federation_items_processed_total{type="canonical_created"} 2"#),
        "{metrics}"
    );
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.abort();
}

#[tokio::test]
async fn sync_imports_new_bundles_from_a_directory_in_order_and_reports_json() {
    let Some(url) =
        stellaops_testing::migrated_database_url("sync_dir", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let dir = stellaops_testing::scratch_dir("sync");
    std::fs::write(
        dir.join("bundle-000000000004.tar.zst"),
        bundle_bytes(
            None,
            "2025-01-15T10:00:00.000Z#0004",
            &["GO-2024-0101", "GO-2024-0102"],
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("bundle-000000000006.tar.zst"),
        bundle_bytes(
            Some("2025-01-15T10:00:00.000Z#0004"),
            "2025-01-15T11:00:00.000Z#0006",
            &["GO-2024-0103"],
        ),
    )
    .unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_stellaops-worker"))
            .args([
                "federation",
                "sync",
                "--site-id",
                "site-a",
                "--direction",
                "import",
                "--directory",
                dir.to_str().unwrap(),
                "--require-signature",
                "false",
            ])
            .env("DATABASE_URL", &url)
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["bundles"].as_i64(), summary["items"].as_i64()),
        (Some(2), Some(6))
    );
    assert_eq!(summary["cursor"], "2025-01-15T11:00:00.000Z#0006");
    // The next scheduled run finds nothing new and succeeds.
    let summary: Value = serde_json::from_slice(&run().stdout).unwrap();
    assert_eq!(
        (
            summary["bundles"].as_i64(),
            summary["skipped"].as_i64(),
            summary["success"].as_bool()
        ),
        (Some(0), Some(2), Some(true))
    );
    // A corrupt drop fails the run with the file named, and nothing of it is applied.
    std::fs::write(dir.join("bundle-000000000009.tar.zst"), b"truncated").unwrap();
    let out = run();
    assert!(!out.status.success());
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .starts_with("bundle-000000000009.tar.zst: Bundle is corrupt"),
        "{summary}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_api_serves_https_with_the_given_certificate() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir().join(format!("stellaops-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();

    // /healthz needs no database; the pool never connects.
    let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
    let state = Arc::new(state(pool));
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let config = stellaops_workers::tls::server_config(&cert, &key).unwrap();
    let listener = stellaops_workers::tls::TlsListener::new(tcp, config).unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });

    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let response = client
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Plain HTTP to the TLS port gets no HTTP answer.
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err()
    );
    // A client that does not trust the certificate is refused.
    assert!(
        reqwest::get(format!("https://localhost:{}/healthz", addr.port()))
            .await
            .is_err()
    );
    // Mismatched certificate and key are refused at start-up with a clear error.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(&key, other.signing_key.serialize_pem()).unwrap();
    let mismatch = stellaops_workers::tls::server_config(&cert, &key).unwrap_err();
    assert!(
        format!("{mismatch:#}").contains("do not match"),
        "{mismatch:#}"
    );
    server.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}
