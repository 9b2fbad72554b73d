//! Issue 17 item 4: `federation serve` authentication, `force` only over HTTPS, bodies
//! limited while they are read; `sync` refusing another site's bundle and oversized
//! objects; per-site trusted keys; `bundle validate` without a database; export checking
//! the destination's last bundle before trusting its cursor. Real sockets, the real binary,
//! the real PostgreSQL.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stellaops_federation::bundle::{self, Contents};
use stellaops_federation::dsse::{Signer, TrustedKeys, generate_key_pair};
use stellaops_federation::osv;
use stellaops_federation::sites::{self, PolicyUpdate};
use stellaops_workers::federation_api::{
    ApiState, AuthFailureLimits, AuthFailures, Limits, Peer, Tokens, router,
};

use crate::federation_cli::{ok, worker, write_osv};

const ANY_SITE_TOKEN: &str = "any-site-token-0123456789";
const SITE_B_TOKEN: &str = "site-b-token-0123456789";

fn bundle_of(site: &str, cursor: &str, id: &str, signer: Option<&Signer>) -> Vec<u8> {
    let doc = json!({"id": id, "affected": [{"package": {"ecosystem": "Go", "name": format!("example.com/{id}")},
                                            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.0.1"}]}]}]});
    let parsed = osv::parse(
        id,
        &serde_json::to_vec(&doc).unwrap(),
        None,
        chrono::Utc::now(),
    )
    .unwrap();
    bundle::write(
        &Contents {
            site_id: site,
            since_cursor: None,
            cursor: cursor.into(),
            canonicals: &parsed.canonicals,
            edges: &parsed.edges,
            deletions: &[],
        },
        signer,
        3,
    )
}

fn tokens() -> Tokens {
    Tokens::parse(&format!(
        "# comment\n*:{ANY_SITE_TOKEN}\nsite-b:{SITE_B_TOKEN}\n"
    ))
    .unwrap()
}

fn limits(max_body: u64) -> Limits {
    Limits {
        max_body_bytes: max_body,
        max_expanded_bytes: 64 << 20,
        body_timeout: Duration::from_secs(20),
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stellaops-fedh-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn serve_refuses_to_start_without_authentication_and_tokens_never_show() {
    let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
    let error = ApiState::new(
        pool.clone(),
        TrustedKeys::default(),
        limits(1 << 20),
        Tokens::default(),
        false,
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("needs authentication"),
        "{error}"
    );
    assert!(Tokens::parse("site-a:short").is_err(), "short tokens");
    assert!(Tokens::parse("no-colon-token-0123456789").is_err());
    let state = ApiState::new(pool, TrustedKeys::default(), limits(1), tokens(), false).unwrap();
    let shown = format!("{state:?} {:?}", tokens());
    assert!(
        !shown.contains(ANY_SITE_TOKEN) && !shown.contains(SITE_B_TOKEN),
        "{shown}"
    );
    // The memory-sized limits: an eighth of the memory per body, half decompressed.
    let sized = Limits::for_memory(1_000_000_000, Some(512 << 20), Duration::from_secs(1));
    assert_eq!(
        (sized.max_body_bytes, sized.max_expanded_bytes),
        (64 << 20, 256 << 20)
    );
    let unlimited = Limits::for_memory(1_000_000_000, None, Duration::from_secs(1));
    assert_eq!(unlimited.max_body_bytes, 1_000_000_000);
}

#[tokio::test]
async fn serve_requires_a_token_binds_tokens_to_sites_and_refuses_force_over_http() {
    let Some(pool) =
        stellaops_testing::migrated_database("api_auth", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    for site in ["site-a", "site-b"] {
        sites::set_policy(
            &pool,
            site,
            &PolicyUpdate {
                require_signature: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let state = Arc::new(
        ApiState::new(
            pool.clone(),
            TrustedKeys::default(),
            limits(1 << 20),
            tokens(),
            false,
        )
        .unwrap(),
    );
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
    let post = |body: Vec<u8>, query: &'static str, token: Option<&'static str>| {
        let mut request = http
            .post(format!("{base}/api/v1/federation/import{query}"))
            .header("content-type", "application/zstd")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let from_a = bundle_of(
        "site-a",
        "2025-01-15T10:00:00.000Z#0004",
        "GO-2024-0201",
        None,
    );

    let anonymous = post(from_a.clone(), "", None).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Bearer realm=\"stellaops-federation\""
    );
    let wrong = post(from_a.clone(), "", Some("not-a-configured-token-123"))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let status = http
        .get(format!("{base}/api/v1/federation/sync/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 401, "the status needs a token too");
    // Probes stay open.
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A token bound to site-b cannot import site-a's bundle.
    let mismatch = post(from_a.clone(), "", Some(SITE_B_TOKEN)).await.unwrap();
    assert_eq!(mismatch.status(), 403);
    let body: Value = mismatch.json().await.unwrap();
    assert_eq!(
        body["error"],
        "Site mismatch: the bundle is from site site-a, the token is for site site-b"
    );
    // force over plain HTTP is refused whoever asks.
    let forced = post(from_a.clone(), "?force=true", Some(ANY_SITE_TOKEN))
        .await
        .unwrap();
    assert_eq!(forced.status(), 403);
    assert!(
        forced.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .starts_with("force is refused over plain HTTP")
    );
    let applied = post(from_a, "", Some(ANY_SITE_TOKEN)).await.unwrap();
    assert_eq!(applied.status(), 200);
    let from_b = bundle_of(
        "site-b",
        "2025-01-15T10:00:00.000Z#0002",
        "GO-2024-0202",
        None,
    );
    let own = post(from_b, "", Some(SITE_B_TOKEN)).await.unwrap();
    assert_eq!(own.status(), 200, "a site's own token imports its bundles");
    let status: Value = http
        .get(format!("{base}/api/v1/federation/sync/status"))
        .bearer_auth(ANY_SITE_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["sites"].as_array().unwrap().len(), 2, "{status}");
    server.abort();
}

/// Read an HTTP response's status line from a raw socket.
fn status_line(stream: &mut std::net::TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buffer = [0u8; 512];
    let n = stream.read(&mut buffer).unwrap_or(0);
    String::from_utf8_lossy(&buffer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_limited_while_they_are_read() {
    // The limit is reached before any database work: the pool never connects.
    let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
    let state = Arc::new(
        ApiState::new(
            pool,
            TrustedKeys::default(),
            limits(64 << 10),
            tokens(),
            false,
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<Peer>(),
        )
        .await
        .unwrap()
    });
    let head = |extra: &str| {
        format!(
            "POST /api/v1/federation/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ANY_SITE_TOKEN}\r\nContent-Type: application/zstd\r\n{extra}\r\n"
        )
    };
    let answer = tokio::task::spawn_blocking(move || {
        // An announced length past the limit: refused before a body byte is sent.
        let mut announced = std::net::TcpStream::connect(addr).unwrap();
        announced
            .write_all(head("Content-Length: 10000000000\r\n").as_bytes())
            .unwrap();
        let first = status_line(&mut announced);
        // A chunked body that never ends: the answer comes once the limit is passed, so
        // the server did not wait to buffer the whole body.
        let mut chunked = std::net::TcpStream::connect(addr).unwrap();
        chunked
            .write_all(head("Transfer-Encoding: chunked\r\n").as_bytes())
            .unwrap();
        let chunk = vec![b'x'; 16 << 10];
        let started = Instant::now();
        for _ in 0..5 {
            chunked
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .unwrap();
            chunked.write_all(&chunk).unwrap();
            chunked.write_all(b"\r\n").unwrap();
        }
        let second = status_line(&mut chunked);
        (first, second, started.elapsed())
    })
    .await
    .unwrap();
    assert!(answer.0.starts_with("HTTP/1.1 413"), "{}", answer.0);
    assert!(answer.1.starts_with("HTTP/1.1 413"), "{}", answer.1);
    assert!(answer.2 < Duration::from_secs(5), "{:?}", answer.2);
    server.abort();
}

/// A CA, a server certificate for localhost and a client certificate, all PEM:
/// (ca, server cert, server key, client cert + key).
fn pki() -> (String, String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["site-a.example".to_string()]).unwrap();
    client_params.subject_alt_names.push(rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from("stellaops-site://site-a").unwrap(),
    ));
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &issuer).unwrap();
    (
        ca.pem(),
        server.pem(),
        server_key.serialize_pem(),
        format!("{}{}", client.pem(), client_key.serialize_pem()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_from_the_configured_ca_authenticate() {
    let Some(pool) =
        stellaops_testing::migrated_database("api_mtls", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let dir = temp("mtls");
    let (ca, server_cert, server_key, client) = pki();
    let (ca_file, cert_file, key_file) =
        (dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&ca_file, &ca).unwrap();
    std::fs::write(&cert_file, &server_cert).unwrap();
    std::fs::write(&key_file, &server_key).unwrap();
    let state = Arc::new(
        ApiState::new(
            pool,
            TrustedKeys::default(),
            limits(1 << 20),
            Tokens::default(),
            true,
        )
        .unwrap(),
    );
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let config =
        stellaops_workers::tls::server_config_with_client_ca(&cert_file, &key_file, &ca_file)
            .unwrap();
    let listener = stellaops_workers::tls::TlsListener::new(tcp, config).unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<Peer>(),
        )
        .await
        .unwrap()
    });
    let client_with = |identity: Option<&str>| {
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
            .resolve("localhost", addr);
        if let Some(pem) = identity {
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        builder.build().unwrap()
    };
    let url = format!("https://localhost:{}", addr.port());
    let with_cert = client_with(Some(&client));
    let status = with_cert
        .get(format!("{url}/api/v1/federation/sync/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    // Over HTTPS, force passes the transport check (the body is then refused as garbage).
    let forced = with_cert
        .post(format!("{url}/api/v1/federation/import?force=true"))
        .header("content-type", "application/zstd")
        .body("not a bundle")
        .send()
        .await
        .unwrap();
    assert_eq!(forced.status(), 400);
    // No certificate, no token: 401.
    let anonymous = client_with(None)
        .get(format!("{url}/api/v1/federation/sync/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // A certificate from another CA fails the handshake.
    let (_, _, _, stranger) = pki();
    assert!(
        client_with(Some(&stranger))
            .get(format!("{url}/api/v1/federation/sync/status"))
            .send()
            .await
            .is_err()
    );
    server.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

fn sync_run(database_url: &str, dir: &Path, extra: &[&str]) -> (bool, Value) {
    let mut args = vec!["federation", "sync", "--directory", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = worker(database_url, &args);
    let summary = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), summary)
}

#[tokio::test]
async fn sync_refuses_another_site_s_bundle_and_objects_past_the_limit() {
    // Workers never migrate (the operator does): the test database comes migrated.
    let Some(url) =
        stellaops_testing::migrated_database_url("sync_site", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let dir = temp("sync-site");
    std::fs::write(
        dir.join("bundle-000000000004.tar.zst"),
        bundle_of(
            "site-b",
            "2025-01-15T10:00:00.000Z#0004",
            "GO-2024-0301",
            None,
        ),
    )
    .unwrap();
    let import = [
        "--site-id",
        "site-a",
        "--direction",
        "import",
        "--require-signature",
        "false",
    ];
    let (success, summary) = sync_run(&url, &dir, &import);
    assert!(!success);
    assert_eq!(
        summary["error"],
        "bundle-000000000004.tar.zst: Site mismatch: the bundle is from site site-b, expected site site-a"
    );
    // The size is checked before the object is read.
    let big = temp("sync-big");
    std::fs::write(big.join("bundle-000000000001.tar.zst"), vec![0u8; 5000]).unwrap();
    let mut small = import.to_vec();
    small.extend(["--max-bundle-size", "4096"]);
    let (success, summary) = sync_run(&url, &big, &small);
    assert!(!success);
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .ends_with("bundle-000000000001.tar.zst is 5000 bytes, more than the 4096 allowed (--max-bundle-size); not read"),
        "{summary}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&big).unwrap();
}

#[test]
fn validate_needs_no_database_and_keys_are_trusted_per_site() {
    let dir = temp("validate");
    let (private, public) = generate_key_pair();
    let signer = Signer::from_pem(&private).unwrap();
    let file = dir.join("a.zst");
    std::fs::write(
        &file,
        bundle_of(
            "site-a",
            "2025-01-15T10:00:00.000Z#0001",
            "GO-2024-0401",
            Some(&signer),
        ),
    )
    .unwrap();
    let key = dir.join("a.pub");
    std::fs::write(&key, public).unwrap();
    let validate = |trusted: String| {
        Command::new(env!("CARGO_BIN_EXE_stellaops-worker"))
            .args(["federation", "bundle", "validate"])
            .arg(&file)
            .args(["--trusted-key", &trusted, "--require-signature"])
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    let own = validate(format!("site-a={}", key.display()));
    let report = ok(&own);
    assert!(report.ends_with("Ready for import.\n"), "{report}");
    // The same key trusted for another site does not vouch for site-a.
    let other = validate(format!("site-b={}", key.display()));
    assert!(!other.status.success());
    let report = String::from_utf8_lossy(&other.stdout);
    assert!(
        report.contains("no key trusted for site site-a"),
        "{report}"
    );
    // A key trusted for every site still works, and says so.
    let any = validate(key.display().to_string());
    assert!(ok(&any).ends_with("Ready for import.\n"));
    assert!(String::from_utf8_lossy(&any.stderr).contains("trusted for every site"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn export_checks_the_destination_s_last_bundle_before_trusting_its_cursor() {
    let Some(url) =
        stellaops_testing::migrated_database_url("export_check", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let dir = temp("export-check");
    let drop = dir.join("drop");
    std::fs::create_dir_all(dir.join("osv")).unwrap();
    std::fs::create_dir_all(&drop).unwrap();
    write_osv(&dir.join("osv"), "PYSEC-2024-0501", "Django", "4.2.11");
    ok(&worker(
        &url,
        &["advisories", "ingest", dir.join("osv").to_str().unwrap()],
    ));
    let key = dir.join("signer");
    ok(&worker(
        &url,
        &["federation", "keygen", "-o", key.to_str().unwrap()],
    ));
    let signing = format!("{}.pem", key.display());
    let export = [
        "--site-id",
        "site-a",
        "--direction",
        "export",
        "--signing-key",
        &signing,
    ];
    let (success, first) = sync_run(&url, &drop, &export);
    assert!(success, "{first}");
    assert_eq!(first["bundles"], 1);

    // A bundle planted at the destination with a far cursor, signed by a stranger: the
    // export refuses to continue from it (it would skip every change before that cursor).
    let (stranger, _) = generate_key_pair();
    let planted = drop.join("bundle-999999999999.tar.zst");
    std::fs::write(
        &planted,
        bundle_of(
            "site-a",
            "2099-01-01T00:00:00.000Z#999999999999",
            "GO-2024-0502",
            Some(&Signer::from_pem(&stranger).unwrap()),
        ),
    )
    .unwrap();
    let (success, refused) = sync_run(&url, &drop, &export);
    assert!(!success);
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.starts_with("bundle-999999999999.tar.zst at the destination: ")
            && error.contains("its cursor is not trusted"),
        "{error}"
    );
    // Unsigned: refused too (signatures are required by default).
    std::fs::write(
        &planted,
        bundle_of(
            "site-a",
            "2099-01-01T00:00:00.000Z#999999999999",
            "GO-2024-0502",
            None,
        ),
    )
    .unwrap();
    let (success, _) = sync_run(&url, &drop, &export);
    assert!(!success);
    // Another site's bundle: refused.
    std::fs::write(
        &planted,
        bundle_of(
            "site-z",
            "2099-01-01T00:00:00.000Z#999999999999",
            "GO-2024-0502",
            None,
        ),
    )
    .unwrap();
    let (success, refused) = sync_run(&url, &drop, &export);
    assert!(!success);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("is from site site-z"),
        "{refused}"
    );
    // Without the planted bundle, the export continues from its own signed bundle.
    std::fs::remove_file(&planted).unwrap();
    let (success, again) = sync_run(&url, &drop, &export);
    assert!(success, "{again}");
    assert_eq!(again["bundles"], 0);
    assert_eq!(again["cursor"], first["cursor"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `serve_bounded` (what `federation serve` and `mirror serve` run): a client that does
/// not finish its headers is cut off after the header timeout, and past the connection
/// limit the next client waits for a free slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_bounded_in_number_and_header_time() {
    use stellaops_workers::tls::{ConnectionLimits, serve_bounded};
    let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
    let state = Arc::new(
        ApiState::new(
            pool,
            TrustedKeys::default(),
            limits(1 << 20),
            tokens(),
            false,
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bounds = ConnectionLimits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(1),
    };
    let server = tokio::spawn(serve_bounded(
        listener,
        router(state),
        bounds,
        Peer::plain,
        std::future::pending(),
    ));
    let (stalled, waited, answer) = tokio::task::spawn_blocking(move || {
        // Half a header, then nothing: the server closes the connection.
        let mut slow = std::net::TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
        let started = Instant::now();
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        let _ = slow.read_to_end(&mut rest);
        let stalled = started.elapsed();
        // Two silent connections fill the slots; a third client is served only once the
        // header timeout has freed one.
        let _a = std::net::TcpStream::connect(addr).unwrap();
        let _b = std::net::TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let mut third = std::net::TcpStream::connect(addr).unwrap();
        third
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let answer = status_line(&mut third);
        (stalled, started.elapsed(), answer)
    })
    .await
    .unwrap();
    assert!(
        stalled >= Duration::from_millis(900) && stalled < Duration::from_secs(5),
        "a stalled header was cut after {stalled:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        waited >= Duration::from_millis(700),
        "the third connection waited {waited:?} for a slot"
    );
    server.abort();
}

/// The real binary: `federation serve` without authentication does not start; with a
/// tokens file it answers 401 without a token and serves with one.
#[tokio::test]
async fn the_serve_command_needs_authentication_and_honours_its_tokens_file() {
    let Some(url) =
        stellaops_testing::migrated_database_url("serve_cli", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let port = stellaops_testing::ports::unused_port();
    let listen = format!("127.0.0.1:{port}");
    let refused = worker(&url, &["federation", "serve", "--listen", &listen]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("needs authentication"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let dir = temp("serve-cli");
    let tokens_file = dir.join("tokens");
    std::fs::write(&tokens_file, format!("*:{ANY_SITE_TOKEN}\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stellaops-worker"))
        .args(["federation", "serve", "--listen", &listen, "--tokens-file"])
        .arg(&tokens_file)
        .args(["--auth-failures-per-window", "2"])
        .env("DATABASE_URL", &url)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let status_url = format!("http://{listen}/api/v1/federation/sync/status");
    let mut up = false;
    for _ in 0..100 {
        if http
            .get(format!("http://{listen}/healthz"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "federation serve did not come up");
    let anonymous = http.get(&status_url).send().await.unwrap();
    let with_token = http
        .get(&status_url)
        .bearer_auth(ANY_SITE_TOKEN)
        .send()
        .await
        .unwrap();
    // --auth-failures-per-window 2: the third wrong token from this address gets 429.
    let mut wrong = Vec::new();
    for _ in 0..3 {
        let answer = http
            .get(&status_url)
            .bearer_auth("wrong-token-0123456789")
            .send()
            .await
            .unwrap();
        wrong.push(answer.status().as_u16());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(with_token.status(), 200);
    assert_eq!(wrong, [401, 401, 429]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Serve `state` on 127.0.0.1 with the connection info the handlers read.
async fn serve_plain(state: ApiState) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router(Arc::new(state)).into_make_service_with_connect_info::<Peer>(),
        )
        .await
        .unwrap()
    });
    (base, server)
}

/// Wrong tokens from one address: past the limit it gets 429 with Retry-After, even with
/// a good token, until the window passes; another address is unaffected; successes never
/// count; the refusals are counted in the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_rate_limited_per_client_address() {
    let Some(pool) =
        stellaops_testing::migrated_database("api_ratelimit", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let window = Duration::from_secs(3);
    let state = ApiState::new(
        pool,
        TrustedKeys::default(),
        limits(1 << 20),
        tokens(),
        false,
    )
    .unwrap()
    .with_auth_failure_limits(AuthFailureLimits {
        max_failures: 3,
        window,
        max_addresses: 100,
    });
    let (base, server) = serve_plain(state).await;
    let status_url = format!("{base}/api/v1/federation/sync/status");
    // Each client its own source address on the loopback network.
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let (first, second) = (from([127, 0, 0, 1]), from([127, 0, 0, 2]));
    let get =
        |client: &reqwest::Client, token: &str| client.get(&status_url).bearer_auth(token).send();
    // Successes do not count, however many.
    for _ in 0..8 {
        assert_eq!(get(&first, ANY_SITE_TOKEN).await.unwrap().status(), 200);
    }
    let started = Instant::now();
    for _ in 0..3 {
        let wrong = get(&first, "wrong-token-0123456789").await.unwrap();
        assert_eq!(wrong.status(), 401);
    }
    let limited = get(&first, "wrong-token-0123456789").await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}");
    // The limited address is refused even with a good token (no token is compared) ...
    assert_eq!(get(&first, ANY_SITE_TOKEN).await.unwrap().status(), 429);
    // ... while another address is served.
    assert_eq!(get(&second, ANY_SITE_TOKEN).await.unwrap().status(), 200);
    let metrics = second.get(format!("{base}/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let counted = |reason: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| {
                line.strip_prefix(&format!(
                    "federation_auth_refused_total{{reason=\"{reason}\"}} "
                ))
            })
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(counted("rate_limited") >= 2, "{metrics}");
    assert!(counted("bad_credentials") >= 3, "{metrics}");
    // Once the window has passed the address is served again.
    tokio::time::sleep((window + Duration::from_millis(200)).saturating_sub(started.elapsed()))
        .await;
    assert_eq!(get(&first, ANY_SITE_TOKEN).await.unwrap().status(), 200);
    server.abort();
}

/// A flood of addresses: the map stays at its cap and the addresses past it share one
/// window, which fills like any address's.
#[test]
fn failure_tracking_is_bounded_in_addresses() {
    let failures = AuthFailures::new(AuthFailureLimits {
        max_failures: 2,
        window: Duration::from_secs(60),
        max_addresses: 4,
    });
    let now = Instant::now();
    let addr = |i: u32| {
        Some(std::net::SocketAddr::from((
            std::net::Ipv4Addr::from(0x0a00_0000 + i),
            40000,
        )))
    };
    for i in 0..1000 {
        failures.record(addr(i), now);
    }
    assert_eq!(failures.tracked(), 4);
    // The tracked addresses have one failure each: under the limit.
    assert!(failures.retry_after(addr(0), now).is_none());
    // The other 996 share one window, far over the limit.
    assert!(failures.retry_after(addr(999), now).is_some());
    assert!(failures.retry_after(addr(5000), now).is_some());
    // IPv6 addresses count by their /64.
    let v6 = |last: u16| {
        Some(std::net::SocketAddr::from((
            std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last),
            443,
        )))
    };
    let sixes = AuthFailures::new(AuthFailureLimits {
        max_failures: 2,
        window: Duration::from_secs(60),
        max_addresses: 10,
    });
    sixes.record(v6(1), now);
    sixes.record(v6(2), now);
    assert!(sixes.retry_after(v6(3), now).is_some());
    assert_eq!(sixes.tracked(), 1);
    // After the window, the expired entries make room again.
    let later = now + Duration::from_secs(61);
    assert!(sixes.retry_after(v6(3), later).is_none());
    failures.record(addr(2000), later);
    assert!(failures.tracked() <= 4);
}

/// CA, server and client certificates made by Python's `cryptography` (an independent
/// X.509 implementation): `site-a.pem` names `stellaops-site://site-a`, `nosite.pem` only a
/// DNS name.
fn python_pki(python: &str, dir: &Path) {
    let script = r#"
import datetime, sys, os
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
out = sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc)
def key():
    return ec.generate_private_key(ec.SECP256R1())
def pem_key(k):
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
def cert(subject_cn, k, issuer_name, issuer_key, sans, ca=False, usage=None):
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
         .issuer_name(issuer_name).public_key(k.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    return b.sign(issuer_key, hashes.SHA256())
ca_key = key()
ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "federation test CA")])
ca = cert("federation test CA", ca_key, ca_name, ca_key, None, ca=True)
def write(name, data):
    open(os.path.join(out, name), "wb").write(data)
write("ca.crt", ca.public_bytes(serialization.Encoding.PEM))
server_key = key()
server = cert("localhost", server_key, ca_name, ca_key, [x509.DNSName("localhost")], usage=ExtendedKeyUsageOID.SERVER_AUTH)
write("tls.crt", server.public_bytes(serialization.Encoding.PEM))
write("tls.key", pem_key(server_key))
for name, sans in [("site-a", [x509.DNSName("site-a.example"), x509.UniformResourceIdentifier("stellaops-site://site-a")]),
                   ("nosite", [x509.DNSName("site-a.example")])]:
    k = key()
    c = cert(name, k, ca_name, ca_key, sans, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    write(name + ".pem", c.public_bytes(serialization.Encoding.PEM) + pem_key(k))
"#;
    let out = Command::new(python)
        .args(["-c", script])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client certificate authenticates for the site its URI SAN names: that site's bundles
/// import, another site's are refused with 403 naming both, and a certificate naming no
/// site does not authenticate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_authenticate_only_for_the_site_they_name() {
    let Some(python) = stellaops_testing::service("STELLAOPS_TEST_PYTHON") else {
        return;
    };
    let Some(pool) =
        stellaops_testing::migrated_database("api_mtls_site", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    for site in ["site-a", "site-b"] {
        sites::set_policy(
            &pool,
            site,
            &PolicyUpdate {
                require_signature: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let dir = temp("mtls-site");
    python_pki(&python, &dir);
    let state = Arc::new(
        ApiState::new(
            pool,
            TrustedKeys::default(),
            limits(1 << 20),
            Tokens::default(),
            true,
        )
        .unwrap(),
    );
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let config = stellaops_workers::tls::server_config_with_client_ca(
        &dir.join("tls.crt"),
        &dir.join("tls.key"),
        &dir.join("ca.crt"),
    )
    .unwrap();
    let listener = stellaops_workers::tls::TlsListener::new(tcp, config).unwrap();
    let served_state = state.clone();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router(served_state).into_make_service_with_connect_info::<Peer>(),
        )
        .await
        .unwrap()
    });
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    let client_with = |identity: &str| {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .resolve("localhost", addr)
            .identity(
                reqwest::Identity::from_pem(&std::fs::read(dir.join(identity)).unwrap()).unwrap(),
            )
            .build()
            .unwrap()
    };
    let import_url = format!("https://localhost:{}/api/v1/federation/import", addr.port());
    let site_a = client_with("site-a.pem");
    let post = |client: &reqwest::Client, body: Vec<u8>| {
        client
            .post(&import_url)
            .header("content-type", "application/zstd")
            .body(body)
            .send()
    };
    let from_a = bundle_of(
        "site-a",
        "2025-01-15T10:00:00.000Z#0004",
        "GO-2024-0301",
        None,
    );
    let from_b = bundle_of(
        "site-b",
        "2025-01-15T10:00:00.000Z#0004",
        "GO-2024-0302",
        None,
    );
    let own = post(&site_a, from_a.clone()).await.unwrap();
    assert_eq!(own.status(), 200, "{}", own.text().await.unwrap());
    let other = post(&site_a, from_b).await.unwrap();
    assert_eq!(other.status(), 403);
    assert_eq!(
        other.json::<Value>().await.unwrap()["error"],
        "Site mismatch: the bundle is from site site-b, the client certificate is for site site-a"
    );
    // The mismatch counts as a failed authentication of this address, as does a
    // certificate naming no site.
    let loopback = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    assert_eq!(state.auth_failures.failures(loopback, Instant::now()), 1);
    let unnamed = post(&client_with("nosite.pem"), from_a).await.unwrap();
    assert_eq!(unnamed.status(), 401);
    assert_eq!(
        unnamed.json::<Value>().await.unwrap()["error"],
        "the client certificate names no site: it needs a URI SAN stellaops-site://SITE"
    );
    assert_eq!(state.auth_failures.failures(loopback, Instant::now()), 2);
    server.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Keys in the database (`federation sites keys add|list|revoke`) verify only their own
/// site's bundles, in `bundle import` and `serve`; a revoked or retired key is not trusted
/// for its site even when a `--trusted-key` file names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_keys_in_the_database_verify_only_their_site() {
    let Some(url) =
        stellaops_testing::migrated_database_url("site_keys", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let dir = temp("site-keys");
    let key_pair = |name: &str| {
        let (private, public) = generate_key_pair();
        let path = dir.join(format!("{name}.pub"));
        std::fs::write(&path, public).unwrap();
        (Signer::from_pem(&private).unwrap(), path)
    };
    let (signer_a, pub_a) = key_pair("a");
    let (signer_b, pub_b) = key_pair("b");
    let (signer_old, pub_old) = key_pair("old");
    let (pub_a, pub_b, pub_old) = (
        pub_a.to_str().unwrap().to_string(),
        pub_b.to_str().unwrap().to_string(),
        pub_old.to_str().unwrap().to_string(),
    );
    for site in ["site-a", "site-b"] {
        ok(&worker(&url, &["federation", "sites", "add", site]));
    }
    // Bad input: an unknown site, a file that is not a public key.
    let unknown = worker(
        &url,
        &["federation", "sites", "keys", "add", "site-z", &pub_a],
    );
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("site site-z is not known"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    let not_a_key = dir.join("not-a-key.pub");
    std::fs::write(&not_a_key, "hello").unwrap();
    let refused = worker(
        &url,
        &[
            "federation",
            "sites",
            "keys",
            "add",
            "site-a",
            not_a_key.to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not an ES256"));

    let added: Value = serde_json::from_str(&ok(&worker(
        &url,
        &["federation", "sites", "keys", "add", "site-a", &pub_a],
    )))
    .unwrap();
    assert_eq!(added["key_id"], signer_a.key_id());
    // A key past its not_after is kept but not trusted.
    ok(&worker(
        &url,
        &[
            "federation",
            "sites",
            "keys",
            "add",
            "site-a",
            &pub_old,
            "--not-after",
            "2020-01-01T00:00:00Z",
        ],
    ));

    let mut n = 0;
    let mut import_file = |site: &str, signer: &Signer, extra: &[&str]| {
        n += 1;
        let file = dir.join(format!("bundle-{n}.zst"));
        std::fs::write(
            &file,
            bundle_of(
                site,
                &format!("2025-01-15T10:00:00.000Z#{n:04}"),
                &format!("GO-2024-{:04}", 500 + n),
                Some(signer),
            ),
        )
        .unwrap();
        let mut args = vec![
            "federation",
            "bundle",
            "import",
            file.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = worker(&url, &args);
        let body: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.success(), body)
    };
    // site-a's key from the database, no --trusted-key: site-a's bundle imports ...
    let (imported, body) = import_file("site-a", &signer_a, &[]);
    assert!(imported, "{body}");
    // ... but it does not vouch for site-b.
    let (imported, body) = import_file("site-b", &signer_a, &[]);
    assert!(!imported);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no key trusted for site site-b"),
        "{body}"
    );
    let (imported, _) = import_file("site-a", &signer_old, &[]);
    assert!(!imported, "a key past its not_after");

    // serve reads the keys at each import: site-b's key added while it runs counts.
    let state = ApiState::new(
        pool.clone(),
        TrustedKeys::default(),
        limits(1 << 20),
        tokens(),
        false,
    )
    .unwrap();
    let (base, server) = serve_plain(state).await;
    let post = |body: Vec<u8>| {
        reqwest::Client::new()
            .post(format!("{base}/api/v1/federation/import"))
            .bearer_auth(ANY_SITE_TOKEN)
            .header("content-type", "application/zstd")
            .body(body)
            .send()
    };
    let from_b = bundle_of(
        "site-b",
        "2025-01-16T10:00:00.000Z#0001",
        "GO-2024-0601",
        Some(&signer_b),
    );
    assert_eq!(post(from_b.clone()).await.unwrap().status(), 403);
    ok(&worker(
        &url,
        &["federation", "sites", "keys", "add", "site-b", &pub_b],
    ));
    let served = post(from_b).await.unwrap();
    assert_eq!(served.status(), 200, "{}", served.text().await.unwrap());
    let from_b_signed_a = bundle_of(
        "site-b",
        "2025-01-16T10:00:00.000Z#0002",
        "GO-2024-0602",
        Some(&signer_a),
    );
    assert_eq!(post(from_b_signed_a).await.unwrap().status(), 403);
    server.abort();

    // Revoked: refused, even with the key given as a file for the site.
    ok(&worker(
        &url,
        &[
            "federation",
            "sites",
            "keys",
            "revoke",
            "site-a",
            signer_a.key_id(),
        ],
    ));
    let file_key = format!("site-a={pub_a}");
    let (imported, body) = import_file("site-a", &signer_a, &["--trusted-key", &file_key]);
    assert!(!imported, "a revoked key: {body}");
    // Revocation is final: adding the key again is refused and leaves it revoked.
    let again = worker(
        &url,
        &["federation", "sites", "keys", "add", "site-a", &pub_a],
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("was revoked for site site-a"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // A file key the database does not withdraw still counts.
    let file_key = format!("site-a={pub_b}");
    let (imported, body) = import_file("site-a", &signer_b, &["--trusted-key", &file_key]);
    assert!(imported, "{body}");
    let listed: Value = serde_json::from_str(&ok(&worker(
        &url,
        &["federation", "sites", "keys", "list", "site-a", "--json"],
    )))
    .unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let a = listed
        .iter()
        .find(|k| k["key_id"] == signer_a.key_id())
        .unwrap();
    assert!(a["revoked_at"].is_string(), "{a}");
    let revoke_again = worker(
        &url,
        &[
            "federation",
            "sites",
            "keys",
            "revoke",
            "site-a",
            "sha256:00",
        ],
    );
    assert!(!revoke_again.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}
