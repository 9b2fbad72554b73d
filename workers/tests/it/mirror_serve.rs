//! The runbook's §6 smoke tests against `mirror serve`, over a real socket.

use std::path::Path;
use std::sync::Arc;

use reqwest::StatusCode;
use stellaops_workers::mirror::serve::{
    Mirror, MirrorConfig, REVALIDATE_AFTER, parse_htpasswd, router,
};

fn write(root: &Path, export: &str, files: &[(&str, &str)]) {
    for (path, body) in files {
        let file = root.join(export).join("mirror").join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, body).unwrap();
    }
}

fn export_tree(root: &Path, export: &str) {
    write(
        root,
        export,
        &[
            (
                "index.json",
                &format!("{{\"exportId\":\"{export}\",\"domains\":[\"primary\"]}}"),
            ),
            (
                "primary/manifest.json",
                &format!("{{\"exportId\":\"{export}\"}}"),
            ),
            ("primary/bundle.json", "{\"advisories\":[]}"),
            ("primary/bundle.json.jws", "eyJhbGciOiJFUzI1NiJ9..c2ln"),
        ],
    );
}

struct Server {
    base: String,
    task: tokio::task::JoinHandle<()>,
}

async fn start(config: MirrorConfig) -> Server {
    let mirror = Arc::new(Mirror::new(config).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, router(mirror)).await.unwrap() });
    Server { base, task }
}

fn config(root: &Path, htpasswd: Option<&Path>) -> MirrorConfig {
    MirrorConfig {
        root: root.to_path_buf(),
        domain_id: "primary".into(),
        active_export_id: None,
        require_authentication: htpasswd.is_some(),
        htpasswd: htpasswd.map(Path::to_path_buf),
        max_index_requests_per_hour: 0,
        max_download_requests_per_hour: 0,
        signature_key: None,
    }
}

/// Wait, if need be, until the current wall-clock window of `window_secs` (the budgets' hour,
/// the failed-login minute) has more than `margin_secs` left, so that a test's requests all
/// count in one window.
async fn away_from_a_window_end(window_secs: u64, margin_secs: u64) {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into_window = since_epoch.as_secs_f64() % window_secs as f64;
    let left = window_secs as f64 - into_window;
    if left <= margin_secs as f64 {
        tokio::time::sleep(std::time::Duration::from_secs_f64(left + 0.1)).await;
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stellaops-mirror-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn auth_cache_headers_etags_and_export_fallback() {
    let dir = temp("smoke");
    let root = dir.join("exports");
    export_tree(&root, "2025-01-14");
    std::thread::sleep(std::time::Duration::from_millis(20));
    export_tree(&root, "2025-01-15");
    let htpasswd = dir.join("htpasswd");
    // `htpasswd -B` writes $2y$; cost 4 keeps the test fast.
    let hash = bcrypt::hash("s3cret", 4)
        .unwrap()
        .replacen("$2b$", "$2y$", 1);
    std::fs::write(&htpasswd, format!("# mirror-primary\nsite-b:{hash}\n")).unwrap();
    let server = start(config(&root, Some(&htpasswd))).await;
    let http = reqwest::Client::new();
    let index = format!("{}/concelier/exports/index.json", server.base);
    let manifest = format!(
        "{}/concelier/exports/mirror/primary/manifest.json",
        server.base
    );

    let anonymous = http.get(&index).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm=")
    );
    assert_eq!(
        http.get(&index)
            .basic_auth("site-b", Some("wrong"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.get(&index)
            .basic_auth("nobody", Some("s3cret"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let ok = http
        .get(&index)
        .basic_auth("site-b", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["cache-control"], "public, max-age=60");
    assert_eq!(
        ok.text().await.unwrap(),
        "{\"exportId\":\"2025-01-15\",\"domains\":[\"primary\"]}",
        "the newest export"
    );

    let m = http
        .get(&manifest)
        .basic_auth("site-b", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 200);
    assert_eq!(
        m.headers()["cache-control"],
        "public, max-age=300, immutable"
    );
    let etag = m.headers()["etag"].to_str().unwrap().to_string();
    assert!(
        etag.starts_with("\"sha256-") && etag.ends_with('"'),
        "strong ETag: {etag}"
    );
    let cached = http
        .get(&manifest)
        .basic_auth("site-b", Some("s3cret"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(cached.headers()["etag"].to_str().unwrap(), etag);
    // A re-synced file is served fresh, with a new ETag (the memory cache follows the disk,
    // which it asks again once REVALIDATE_AFTER has passed).
    std::fs::write(
        root.join("2025-01-15/mirror/primary/manifest.json"),
        b"{\"exportId\":\"2025-01-15\",\"v\":2}",
    )
    .unwrap();
    tokio::time::sleep(REVALIDATE_AFTER).await;
    let fresh = http
        .get(&manifest)
        .basic_auth("site-b", Some("s3cret"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    assert_ne!(fresh.headers()["etag"].to_str().unwrap(), etag);
    assert!(fresh.text().await.unwrap().contains("\"v\":2"));
    for file in ["bundle.json", "bundle.json.jws"] {
        let r = http
            .get(format!(
                "{}/concelier/exports/mirror/primary/{file}",
                server.base
            ))
            .basic_auth("site-b", Some("s3cret"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{file}");
    }
    let other = http
        .get(format!(
            "{}/concelier/exports/mirror/community/manifest.json",
            server.base
        ))
        .basic_auth("site-b", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);

    // A `latest` link wins over the newest directory.
    std::os::unix::fs::symlink(root.join("2025-01-14"), root.join("latest")).unwrap();
    tokio::time::sleep(REVALIDATE_AFTER).await;
    let latest = http
        .get(&index)
        .basic_auth("site-b", Some("s3cret"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(latest.contains("2025-01-14"), "{latest}");
    server.task.abort();

    // An explicit export id wins over both.
    let mut explicit = config(&root, None);
    explicit.active_export_id = Some("2025-01-15".into());
    let server = start(explicit).await;
    let body = reqwest::get(format!("{}/concelier/exports/index.json", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("2025-01-15"), "{body}");
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mirror_requests_total{route=\"index\",status=\"401\"}"),
        "{metrics}"
    );
    server.task.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn budgets_answer_429_with_retry_after_per_credential() {
    let dir = temp("budget");
    export_tree(&dir, "2025-01-15");
    let mut cfg = config(&dir, None);
    cfg.max_index_requests_per_hour = 2;
    cfg.max_download_requests_per_hour = 1;
    let server = start(cfg).await;
    away_from_a_window_end(3600, 10).await;
    let index = format!("{}/concelier/exports/index.json", server.base);
    for _ in 0..2 {
        assert_eq!(reqwest::get(&index).await.unwrap().status(), 200);
    }
    let limited = reqwest::get(&index).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");
    // Downloads have their own budget.
    let bundle = format!(
        "{}/concelier/exports/mirror/primary/bundle.json",
        server.base
    );
    assert_eq!(reqwest::get(&bundle).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(&bundle).await.unwrap().status(), 429);
    server.task.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn readiness_waits_for_a_first_sync_and_bad_htpasswd_is_refused() {
    let dir = temp("ready");
    let server = start(config(&dir, None)).await;
    assert_eq!(
        reqwest::get(format!("{}/readyz", server.base))
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        reqwest::get(format!("{}/concelier/exports/index.json", server.base))
            .await
            .unwrap()
            .status(),
        503
    );
    export_tree(&dir, "2025-01-15");
    assert_eq!(
        reqwest::get(format!("{}/readyz", server.base))
            .await
            .unwrap()
            .status(),
        200
    );
    server.task.abort();
    assert!(
        parse_htpasswd("user:{SHA}abc")
            .unwrap_err()
            .contains("htpasswd -B")
    );
    assert!(parse_htpasswd("no-colon").is_err());
    let mut cfg = config(&dir, None);
    cfg.require_authentication = true;
    assert!(
        Mirror::new(cfg).is_err(),
        "authentication without users is refused at start-up"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn signed_bundles_verify_with_the_published_key_and_tampered_ones_are_withheld() {
    use p256::pkcs8::DecodePrivateKey;
    use stellaops_workers::mirror::jws;
    let dir = temp("signed");
    export_tree(&dir, "2025-02-01");
    let (private_pem, public_pem) = stellaops_federation::dsse::generate_key_pair();
    let signer = p256::ecdsa::SigningKey::from_pkcs8_pem(&private_pem).unwrap();
    let domain = dir.join("2025-02-01/mirror/primary");
    let bundle_body = br#"{"advisories":[{"id":"CVE-2025-0001"}]}"#;
    std::fs::write(domain.join("bundle.json"), bundle_body).unwrap();
    std::fs::write(
        domain.join("bundle.json.jws"),
        jws::sign_detached(&signer, "mirror-primary-2025", bundle_body),
    )
    .unwrap();
    let key_file = dir.join("mirror-key.pub");
    std::fs::write(&key_file, &public_pem).unwrap();

    let mut cfg = config(&dir, None);
    cfg.signature_key = Some(key_file.clone());
    let server = start(cfg).await;
    let url = |f: &str| format!("{}/concelier/exports/mirror/primary/{f}", server.base);

    // What a downstream site does: download both, verify with the published key.
    let bundle = reqwest::get(url("bundle.json")).await.unwrap();
    assert_eq!(bundle.status(), 200);
    let bundle = bundle.bytes().await.unwrap();
    let signature = reqwest::get(url("bundle.json.jws"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key = jws::public_key_from_pem(&public_pem).unwrap();
    assert_eq!(
        jws::verify_detached(&signature, &bundle, &key),
        Ok(Some("mirror-primary-2025".into()))
    );
    // The same check with the CLI, as docs/mirror.md shows it.
    // Outside the export root: a new directory there would become the newest export.
    let downloaded = temp("signed-download");
    std::fs::write(downloaded.join("bundle.json"), &bundle).unwrap();
    std::fs::write(downloaded.join("bundle.json.jws"), &signature).unwrap();
    let verify = |file: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_stellaops-worker"))
            .args(["mirror", "verify", "--key"])
            .arg(&key_file)
            .arg("--signature")
            .arg(downloaded.join("bundle.json.jws"))
            .arg(downloaded.join(file))
            .output()
            .unwrap()
    };
    let ok = verify("bundle.json");
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("Verified OK"));
    let mut altered = bundle.to_vec();
    altered[3] ^= 0x20;
    std::fs::write(downloaded.join("altered.json"), &altered).unwrap();
    let refused = verify("altered.json");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not match"));

    // An export whose bundle no longer matches its signature is not handed out.
    std::fs::write(domain.join("bundle.json"), &altered).unwrap();
    tokio::time::sleep(REVALIDATE_AFTER).await;
    let withheld = reqwest::get(url("bundle.json")).await.unwrap();
    assert_eq!(withheld.status(), 503);
    assert!(
        withheld
            .text()
            .await
            .unwrap()
            .contains("2025-02-01 failed signature verification")
    );
    // Manifests and the JWS itself stay available for inspection.
    assert_eq!(
        reqwest::get(url("manifest.json")).await.unwrap().status(),
        200
    );
    server.task.abort();

    let mut cfg = config(&dir, None);
    cfg.signature_key = Some(dir.join("2025-02-01/mirror/index.json"));
    assert!(
        Mirror::new(cfg).is_err(),
        "a key that is not a key stops start-up"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&downloaded).unwrap();
}

#[tokio::test]
async fn failed_logins_are_limited_per_user_and_address_and_only_successes_are_cached() {
    let dir = temp("throttle");
    let root = dir.join("exports");
    export_tree(&root, "20261125T0000Z");
    let htpasswd = dir.join("htpasswd");
    let hash = |password: &str| bcrypt::hash(password, 4).unwrap();
    std::fs::write(
        &htpasswd,
        format!("site-b:{}\nsite-c:{}\n", hash("s3cret"), hash("other")),
    )
    .unwrap();
    // Served as `main` serves it: with the client's address.
    let mirror = Arc::new(Mirror::new(config(&root, Some(&htpasswd))).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            router(mirror).into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    let client = reqwest::Client::new();
    let get = |user: &'static str, password: &'static str| {
        let request = client
            .get(format!("{base}/concelier/exports/index.json"))
            .basic_auth(user, Some(password));
        async move { request.send().await.unwrap() }
    };
    away_from_a_window_end(60, 10).await;
    assert_eq!(get("site-b", "s3cret").await.status(), StatusCode::OK);
    for _ in 0..5 {
        assert_eq!(
            get("site-b", "wrong").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let throttled = get("site-b", "wrong-again").await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // The verified password stays accepted; another user is not affected.
    assert_eq!(get("site-b", "s3cret").await.status(), StatusCode::OK);
    assert_eq!(get("site-c", "other").await.status(), StatusCode::OK);
    assert_eq!(
        get("nobody", "x").await.status(),
        StatusCode::UNAUTHORIZED,
        "an unknown user is refused (after the same bcrypt as a known one)"
    );
    task.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}
