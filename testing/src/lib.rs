//! Test helpers shared by the workspace.
//!
//! * [`ApiServer`]: a scripted Kubernetes API server over `tower_test`, so reconcile tests
//!   can assert the method, path, field manager and body of every call and answer it.
//! * [`service`]: the address of a real test service (PostgreSQL, S3, registry) started by
//!   `scripts/test.sh`; under `CI=true` a missing service fails the test instead of skipping.
//! * [`apiserver::Emulator`]: an HTTPS Kubernetes API server emulator for end-to-end tests.
//! * [`rbac`]: the RBAC decision the emulator enforces.
//! * [`ports::unused_port`]: a port for a server a test starts in another process.

pub mod apiserver;
pub mod debian;
pub mod kubelet;
pub mod otlp;
pub mod ports;
pub mod rbac;

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, SendResponse};

/// How long a test waits for the code under test to make its next call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The mock API server's side of a [`Client`].
pub struct ApiServer {
    handle: mock::Handle<Request<Body>, Response<Body>>,
}

/// A client wired to a scripted API server. `default_namespace` is the client's default.
pub fn mock_client(default_namespace: &str) -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (
        Client::new(service, default_namespace),
        ApiServer { handle },
    )
}

/// One request received by the mock API server, waiting for its answer.
pub struct Call {
    /// HTTP method.
    pub method: Method,
    /// Path without the query string.
    pub path: String,
    /// Query parameters.
    pub query: BTreeMap<String, String>,
    /// `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// Body parsed as JSON (`Value::Null` when empty).
    pub body: Value,
    send: SendResponse<Response<Body>>,
}

impl ApiServer {
    /// Wait for the next call; panics when none comes within five seconds.
    pub async fn next_call(&mut self) -> Call {
        let (request, send) = tokio::time::timeout(CALL_TIMEOUT, self.handle.next_request())
            .await
            .expect("the code under test made no further API call within 5s")
            .expect("the client was dropped before making the expected call");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("request body readable");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                // Server-side apply bodies may be YAML; ours are JSON, so keep the text.
                Value::String(String::from_utf8_lossy(&bytes).into_owned())
            })
        };
        let query = parts
            .uri
            .query()
            .map(|q| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                    .map(|(k, v)| (k.to_string(), percent_decode(v)))
                    .collect()
            })
            .unwrap_or_default();
        Call {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query,
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body,
            send,
        }
    }

    /// Wait for the next call and assert its method and path.
    pub async fn expect(&mut self, method: Method, path: &str) -> Call {
        let call = self.next_call().await;
        assert_eq!(
            (&call.method, call.path.as_str()),
            (&method, path),
            "unexpected API call (body: {})",
            call.body
        );
        call
    }

    /// Assert that no further call arrives within `quiet`.
    pub async fn expect_no_more_calls(mut self, quiet: Duration) {
        if let Ok(Some((request, _))) =
            tokio::time::timeout(quiet, self.handle.next_request()).await
        {
            panic!(
                "unexpected extra API call: {} {}",
                request.method(),
                request.uri()
            );
        }
    }
}

impl Call {
    /// The `fieldManager` query parameter.
    pub fn field_manager(&self) -> Option<&str> {
        self.query.get("fieldManager").map(String::as_str)
    }

    /// True for a server-side apply with `force=true`.
    pub fn is_forced_apply(&self) -> bool {
        self.method == Method::PATCH
            && self.content_type.as_deref() == Some("application/apply-patch+yaml")
            && self.query.get("force").map(String::as_str) == Some("true")
    }

    /// Answer with a status code and JSON body.
    pub fn respond(self, status: u16, body: Value) {
        let response = Response::builder()
            .status(StatusCode::from_u16(status).expect("valid status"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&body).expect("JSON")))
            .expect("valid response");
        self.send.send_response(response);
    }

    /// Answer 200 with the request body itself (what the API server returns for an apply,
    /// near enough for the code under test).
    pub fn respond_with_request_body(self) {
        let body = self.body.clone();
        self.respond(200, body);
    }

    /// Answer with a Kubernetes `Status` error.
    pub fn respond_status(self, code: u16, reason: &str, message: &str) {
        self.respond(
            code,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": message, "reason": reason, "code": code}),
        );
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(())
                {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of a test-service variable (set by `scripts/test.sh`). When it is unset:
/// under `CI=true` the test fails (CI must exercise the real service); otherwise it prints
/// why and returns `None` so the caller can skip.
pub fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!(
                    "{var} is not set but CI=true: run the tests through scripts/test.sh, which starts the real service"
                );
            }
            eprintln!("skipped: {var} is not set (run scripts/test.sh to start the real service)");
            None
        }
    }
}

/// An empty scratch directory for a test, `stellaops-NAME-PID` under the system's
/// temporary directory (whatever an earlier run of the same process id left is removed).
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stellaops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// The median of benchmark timings (the upper one of an even count): the figure the
/// benchmarks report, steadier than one run on this shared 2-core machine.
pub fn median(mut times: Vec<std::time::Duration>) -> std::time::Duration {
    times.sort();
    times[times.len() / 2]
}

/// Build OCI images on disk and push them to the test registry with `skopeo`.
pub mod oci {
    use std::path::Path;
    use std::process::Command;

    use serde_json::json;
    use sha2::{Digest, Sha256};

    /// Digests of an image written by [`write_layout`].
    #[derive(Clone, Debug)]
    pub struct BuiltImage {
        /// `sha256:…` of the image manifest.
        pub manifest_digest: String,
        /// The manifest bytes exactly as written.
        pub manifest: Vec<u8>,
        /// `sha256:…` of each (compressed) layer blob.
        pub layer_digests: Vec<String>,
    }

    fn digest(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    fn write_blob(dir: &Path, bytes: &[u8]) -> String {
        let digest = digest(bytes);
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).expect("create blobs dir");
        std::fs::write(blobs.join(&digest["sha256:".len()..]), bytes).expect("write blob");
        digest
    }

    /// `bytes` compressed with the system `gzip -n` (no name or time: deterministic).
    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut child = Command::new("gzip")
            .args(["-n", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run gzip");
        // Feed stdin from another thread: a large layer would fill the stdout pipe
        // while we are still writing, and both sides would wait for ever.
        let mut stdin = child.stdin.take().expect("stdin");
        let input = bytes.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&input).expect("feed gzip"));
        let out = child.wait_with_output().expect("gzip output");
        feeder.join().expect("gzip feeder");
        assert!(out.status.success(), "gzip failed");
        out.stdout
    }

    /// Write an OCI image layout at `dir` whose layers are the tar archives `layers`
    /// (stored gzip-compressed, as registries expect), tagged `tag`.
    pub fn write_layout(dir: &Path, layers: &[Vec<u8>], tag: &str) -> BuiltImage {
        write_layout_with_config(dir, layers, tag, json!({}))
    }

    /// [`write_layout`] with `config` as the image config's `config` object (`Entrypoint`,
    /// `Cmd`, `Env`, `WorkingDir`).
    pub fn write_layout_with_config(
        dir: &Path,
        layers: &[Vec<u8>],
        tag: &str,
        config: serde_json::Value,
    ) -> BuiltImage {
        std::fs::create_dir_all(dir).expect("create layout dir");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
        let compressed: Vec<Vec<u8>> = layers.iter().map(|l| gzip(l)).collect();
        let layer_digests: Vec<String> = compressed.iter().map(|l| write_blob(dir, l)).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .expect("config JSON");
        let config_digest = write_blob(dir, &config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": compressed.iter().zip(&layer_digests).map(|(l, d)| json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": l.len()})).collect::<Vec<_>>(),
        }))
        .expect("manifest JSON");
        let manifest_digest = write_blob(dir, &manifest);
        let index = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
            "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": tag}}]});
        std::fs::write(
            dir.join("index.json"),
            serde_json::to_vec(&index).expect("index JSON"),
        )
        .expect("index.json");
        BuiltImage {
            manifest_digest,
            manifest,
            layer_digests,
        }
    }

    /// A tar archive holding `files` (path, contents), made with the system `tar`.
    pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("stellaops-tar-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (path, contents) in files {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().expect("file has a parent")).expect("mkdir");
            std::fs::write(&file, contents).expect("write file");
        }
        let tar = tar_dir(&root);
        let _ = std::fs::remove_dir_all(&root);
        tar
    }

    /// A tar archive of everything under `root` (as an image layer holds it: paths
    /// relative to the root, owned by root, in name order, dated 1970), made with the
    /// system `tar`; modes and symbolic links as they are on disk.
    pub fn tar_dir(root: &std::path::Path) -> Vec<u8> {
        let out = Command::new("tar")
            .args([
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "-cf",
                "-",
                "-C",
            ])
            .arg(root)
            .arg(".")
            .output()
            .expect("run tar");
        assert!(
            out.status.success(),
            "tar of {} failed: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    async fn upload_blob(
        http: &reqwest::Client,
        registry: &str,
        repository: &str,
        bytes: &[u8],
    ) -> String {
        let digest = digest(bytes);
        // The two-step upload every distribution registry supports: start, then PUT.
        let started = http
            .post(format!("http://{registry}/v2/{repository}/blobs/uploads/"))
            .send()
            .await
            .expect("start blob upload");
        assert_eq!(started.status(), 202, "start blob upload");
        let location = started.headers()["location"]
            .to_str()
            .expect("upload location")
            .to_string();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("http://{registry}{location}")
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let finished = http
            .put(format!("{location}{separator}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("finish blob upload");
        assert_eq!(finished.status(), 201, "finish blob upload");
        digest
    }

    /// Store a cosign signature of `image_digest` in `registry/repository` the way
    /// `cosign sign` does: an OCI manifest tagged `sha256-<hex>.sig` whose one layer is the
    /// simple-signing `payload`, with the base64 `signature` in its
    /// `dev.cosignproject.cosign/signature` annotation.
    pub async fn push_cosign_signature(
        registry: &str,
        repository: &str,
        image_digest: &str,
        payload: &[u8],
        signature: &str,
    ) {
        let annotations = json!({"dev.cosignproject.cosign/signature": signature});
        push_cosign_signature_annotated(registry, repository, image_digest, payload, annotations)
            .await
    }

    /// [`push_cosign_signature`] with the layer's annotations given whole (a keyless
    /// signature's certificate, chain and Rekor bundle next to the signature).
    pub async fn push_cosign_signature_annotated(
        registry: &str,
        repository: &str,
        image_digest: &str,
        payload: &[u8],
        annotations: serde_json::Value,
    ) {
        let http = reqwest::Client::new();
        let config =
            br#"{"architecture":"","config":{},"os":"","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config_digest = upload_blob(&http, registry, repository, config).await;
        let payload_digest = upload_blob(&http, registry, repository, payload).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "digest": payload_digest, "size": payload.len(),
                "annotations": annotations,
            }],
        });
        let tag = format!("{}.sig", image_digest.replacen(':', "-", 1));
        let response = http
            .put(format!("http://{registry}/v2/{repository}/manifests/{tag}"))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(serde_json::to_vec(&manifest).expect("manifest JSON"))
            .send()
            .await
            .expect("push signature manifest");
        assert_eq!(response.status(), 201, "push signature manifest");
    }

    /// A manifest pushed by [`push_referrer`].
    #[derive(Clone, Debug)]
    pub struct PushedReferrer {
        /// `sha256:…` of the manifest.
        pub digest: String,
        /// The manifest bytes exactly as pushed.
        pub manifest: Vec<u8>,
        /// Its descriptor as a referrers list names it (with `artifactType`).
        pub descriptor: serde_json::Value,
    }

    /// Store an OCI 1.1 artifact of `artifact_type` referring to `subject` (a manifest
    /// digest in the same repository), as `cosign --registry-referrers-mode=oci-1-1` and
    /// `oras attach` do: an image manifest with an empty config, `layers` (bytes, media type,
    /// annotations) and a `subject` descriptor, pushed by digest. With `tag_schema` it is also
    /// added to the `sha256-<hex>` index of the referrers tag schema (what those clients do
    /// when the registry has no referrers API); without, only a registry's API could find it.
    pub async fn push_referrer(
        registry: &str,
        repository: &str,
        subject: &str,
        artifact_type: &str,
        layers: &[(&[u8], &str, serde_json::Value)],
        tag_schema: bool,
    ) -> PushedReferrer {
        let http = reqwest::Client::new();
        let subject_manifest = http
            .get(format!(
                "http://{registry}/v2/{repository}/manifests/{subject}"
            ))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .expect("fetch the subject manifest");
        assert_eq!(subject_manifest.status(), 200, "subject {subject} exists");
        let subject_type = subject_manifest.headers()["content-type"]
            .to_str()
            .expect("content type")
            .to_string();
        let subject_size = subject_manifest.bytes().await.expect("subject bytes").len();
        let empty = b"{}";
        let empty_digest = upload_blob(&http, registry, repository, empty).await;
        let mut descriptors = Vec::new();
        for (bytes, media_type, annotations) in layers {
            let digest = upload_blob(&http, registry, repository, bytes).await;
            descriptors.push(json!({"mediaType": media_type, "digest": digest,
                "size": bytes.len(), "annotations": annotations}));
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2},
            "layers": descriptors,
            "subject": {"mediaType": subject_type, "digest": subject, "size": subject_size},
        }))
        .expect("manifest JSON");
        let digest = digest(&manifest);
        let response = http
            .put(format!(
                "http://{registry}/v2/{repository}/manifests/{digest}"
            ))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()
            .await
            .expect("push the referrer");
        assert_eq!(
            response.status(),
            201,
            "push the referrer: {}",
            response.text().await.unwrap_or_default()
        );
        let descriptor = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": artifact_type, "digest": digest, "size": manifest.len()});
        if tag_schema {
            let tag = subject.replacen(':', "-", 1);
            let url = format!("http://{registry}/v2/{repository}/manifests/{tag}");
            let existing = http
                .get(&url)
                .header("Accept", "application/vnd.oci.image.index.v1+json")
                .send()
                .await
                .expect("read the referrers index");
            let mut index = if existing.status() == 200 {
                existing.json().await.expect("referrers index JSON")
            } else {
                json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []})
            };
            index["manifests"]
                .as_array_mut()
                .expect("manifests list")
                .push(descriptor.clone());
            let response = http
                .put(&url)
                .header("Content-Type", "application/vnd.oci.image.index.v1+json")
                .body(serde_json::to_vec(&index).expect("index JSON"))
                .send()
                .await
                .expect("push the referrers index");
            assert_eq!(response.status(), 201, "push the referrers index");
        }
        PushedReferrer {
            digest,
            manifest,
            descriptor,
        }
    }

    /// Push the layout at `dir` (tag `tag`) to `registry/repository:tag` with skopeo.
    pub fn push(dir: &Path, tag: &str, registry: &str, repository: &str) {
        push_as(dir, tag, registry, repository, None)
    }

    /// [`push`] with `user:password` for a registry that requires them.
    pub fn push_as(
        dir: &Path,
        tag: &str,
        registry: &str,
        repository: &str,
        credentials: Option<&str>,
    ) {
        let mut command = Command::new("skopeo");
        command.args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ]);
        if let Some(credentials) = credentials {
            command.arg(format!("--dest-creds={credentials}"));
        }
        let out = command
            .arg(format!("oci:{}:{tag}", dir.display()))
            .arg(format!("docker://{registry}/{repository}:{tag}"))
            .output()
            .expect("run skopeo (installed by scripts/test.sh)");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A fresh, empty database on the test PostgreSQL (named `{name}_{pid}`), so tests never
/// see each other's rows. `None` (skip) outside CI when no server is configured.
pub async fn fresh_database(name: &str) -> Option<String> {
    use sqlx::{Connection, Executor};
    let server = service("STELLAOPS_TEST_DATABASE_URL")?;
    let db = format!("{name}_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .expect("connect to the test PostgreSQL");
    admin
        .execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str())
        .await
        .expect("drop old test database");
    admin
        .execute(format!("CREATE DATABASE {db}").as_str())
        .await
        .expect("create test database");
    let (base, _) = server.rsplit_once('/').expect("database URL has a path");
    Some(format!("{base}/{db}"))
}

/// The URL of a [`fresh_database`] with `migrator`'s migrations applied, for a process that
/// connects on its own (the workers check the schema; they do not migrate).
pub async fn migrated_database_url(
    name: &str,
    migrator: &sqlx::migrate::Migrator,
) -> Option<String> {
    let url = fresh_database(name).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connect to the fresh test database");
    migrator.run(&pool).await.expect("apply the migrations");
    pool.close().await;
    Some(url)
}

/// A login role `role` on the test server (dropped first if a previous run left it), given
/// `grants` (`stellaops_store::roles::grants`) in the database of `owner_url`; returns the
/// URL of that database as `role`. The test server trusts loopback logins, so no password.
pub async fn database_role(owner_url: &str, role: &str, grants: &str) -> String {
    use sqlx::{Connection, Executor};
    let mut owner = sqlx::PgConnection::connect(owner_url)
        .await
        .expect("connect as the owner");
    // A role left by an earlier run still owns privileges in databases since dropped.
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&mut owner)
            .await
            .expect("look up the role");
    if !exists {
        owner
            .execute(format!("CREATE ROLE {role} LOGIN").as_str())
            .await
            .expect("create the role");
    }
    owner
        .execute(grants)
        .await
        .expect("grant the role its privileges");
    let (server, database) = owner_url.rsplit_once('/').expect("database URL has a path");
    let (scheme, rest) = server.split_once("://").expect("a URL");
    let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    format!("{scheme}://{role}@{host}/{database}")
}

/// A [`fresh_database`] with `migrator`'s migrations applied (pass
/// `&stellaops_store::MIGRATOR`), behind a pool sized like the store's own.
pub async fn migrated_database(
    name: &str,
    migrator: &sqlx::migrate::Migrator,
) -> Option<sqlx::PgPool> {
    let url = fresh_database(name).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await
        .expect("connect to the fresh test database");
    migrator.run(&pool).await.expect("apply the migrations");
    Some(pool)
}
