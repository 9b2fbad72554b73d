//! `stellaops-worker mirror serve`: the mirror HTTP server of one domain
//! (mirror-operations-runbook §1.1, §5, §6).
//!
//! * `/concelier/exports/index.json` — `Cache-Control: public, max-age=60`
//! * `/concelier/exports/mirror/{domain}/manifest.json`, `bundle.json`, `bundle.json.jws` —
//!   `Cache-Control: public, max-age=300, immutable`
//! * strong ETags, `If-None-Match` → 304; Basic auth against a bcrypt htpasswd file →
//!   401 with `WWW-Authenticate`; hourly budgets per credential → 429 with `Retry-After`;
//! * the export served: the explicit id, else the `latest` link, else the newest directory,
//!   looked up in the complete snapshot `.current` points to (see `mirror::sync`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

/// Settings of one mirror domain's server.
#[derive(Clone, Debug)]
pub struct MirrorConfig {
    /// Export root: `<root>/<exportId>/mirror/…`.
    pub root: PathBuf,
    /// Domain id (`primary`).
    pub domain_id: String,
    /// Export to serve; `None` falls back to `latest`, then the newest directory.
    pub active_export_id: Option<String>,
    /// Require Basic credentials.
    pub require_authentication: bool,
    /// `user:bcrypt-hash` lines.
    pub htpasswd: Option<PathBuf>,
    /// Index requests per credential per hour; 0 is unlimited.
    pub max_index_requests_per_hour: u32,
    /// Manifest and bundle requests per credential per hour; 0 is unlimited.
    pub max_download_requests_per_hour: u32,
    /// PEM public key of the exporter: when set, `bundle.json` is served only while
    /// `bundle.json.jws` verifies against it (the runbook's `SIGNATURE__ENABLED`).
    pub signature_key: Option<PathBuf>,
}

/// `mirror_requests_total{route, status}`.
static REQUESTS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        prometheus::Opts::new(
            "mirror_requests_total",
            "Mirror requests by route and status"
        ),
        &["route", "status"]
    )
    .expect("registers once")
});

/// Which budget a request draws on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Budget {
    Index,
    Download,
}

/// Server state.
pub struct Mirror {
    config: MirrorConfig,
    users: HashMap<String, String>,
    /// (user, sha256(password)) pairs that verified: bcrypt is deliberately slow. Only
    /// successes are kept (failures would let anyone fill it), at most [`VERIFIED_ENTRIES`].
    verified: Mutex<std::collections::HashSet<(String, [u8; 32])>>,
    /// (user, client address) → (window start in minutes since epoch, failed attempts).
    failures: Mutex<HashMap<(String, String), (u64, u32)>>,
    /// bcrypt verifications running at once (each on a blocking thread).
    bcrypt_slots: tokio::sync::Semaphore,
    /// (budget, credential) → (window start in hours since epoch, requests).
    windows: Mutex<HashMap<(Budget, String), (u64, u32)>>,
    /// (path, modified, length) → content and strong ETag, so hot files are served from
    /// memory without copying (bounded by [`CACHE_BYTES`]).
    files: Mutex<FileCache>,
    signature_key: Option<p256::ecdsa::VerifyingKey>,
    /// (bundle ETag, signature ETag) → verification outcome.
    signatures: Mutex<HashMap<(String, String), Result<(), String>>>,
}

/// What an unknown user's password is checked against, so an unknown user costs the same
/// bcrypt as a known one.
static UNKNOWN_USER_HASH: LazyLock<String> =
    LazyLock::new(|| bcrypt::hash("no such user", 10).unwrap_or_default());

/// Verified credentials remembered at most (the set is emptied when full).
pub const VERIFIED_ENTRIES: usize = 1024;
/// Failed attempts per user and client address per minute before further attempts are
/// refused without running bcrypt.
pub const MAX_FAILURES_PER_MINUTE: u32 = 5;
/// bcrypt verifications running at once.
pub const BCRYPT_CONCURRENCY: usize = 4;
/// Failure windows remembered at most (the oldest are dropped first).
const FAILURE_ENTRIES: usize = 8192;

/// Why a request's credentials were not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Missing, unknown or wrong: 401.
    Unauthorized,
    /// Too many failures from this client for this user: 429 with this Retry-After.
    Throttled(u64),
}

/// Connections `mirror serve` keeps open at once, and the time a client has to send a
/// request's headers.
pub const CONNECTION_LIMITS: crate::tls::ConnectionLimits = crate::tls::ConnectionLimits {
    max_connections: 1024,
    header_read_timeout: std::time::Duration::from_secs(30),
};

/// Most bytes of file content kept in memory.
pub const CACHE_BYTES: u64 = 256 << 20;

type FileKey = (PathBuf, SystemTime, u64);

#[derive(Default)]
struct FileCache {
    entries: HashMap<FileKey, (axum::body::Bytes, String, u64)>,
    bytes: u64,
    clock: u64,
}

impl FileCache {
    fn get(&mut self, key: &FileKey) -> Option<(axum::body::Bytes, String)> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(body, etag, used)| {
            *used = clock;
            (body.clone(), etag.clone())
        })
    }

    fn insert(&mut self, key: FileKey, body: axum::body::Bytes, etag: String) {
        let size = body.len() as u64;
        if size > CACHE_BYTES / 2 {
            return;
        }
        // Older versions of the same file go first, then the least recently used.
        self.entries.retain(|(path, _, _), _| *path != key.0);
        self.bytes = self.entries.values().map(|(b, _, _)| b.len() as u64).sum();
        while self.bytes + size > CACHE_BYTES {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((body, _, _)) = self.entries.remove(&oldest) {
                self.bytes -= body.len() as u64;
            }
        }
        self.bytes += size;
        self.clock += 1;
        self.entries.insert(key, (body, etag, self.clock));
    }
}

/// Parse an htpasswd file: `user:hash` per line; comments and blank lines skipped.
/// Only bcrypt hashes (`$2a$`, `$2b$`, `$2y$`) are accepted.
pub fn parse_htpasswd(text: &str) -> Result<HashMap<String, String>, String> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line
            .split_once(':')
            .ok_or(format!("htpasswd line {} has no ':'", i + 1))?;
        if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) {
            return Err(format!(
                "htpasswd line {} ({user}) is not a bcrypt hash; create it with `htpasswd -B`",
                i + 1
            ));
        }
        users.insert(user.to_string(), hash.to_string());
    }
    Ok(users)
}

impl Mirror {
    /// Load the configuration (and the htpasswd file).
    pub fn new(config: MirrorConfig) -> anyhow::Result<Self> {
        let users = match &config.htpasswd {
            Some(path) => {
                parse_htpasswd(&std::fs::read_to_string(path)?).map_err(anyhow::Error::msg)?
            }
            None => HashMap::new(),
        };
        anyhow::ensure!(
            !config.require_authentication || !users.is_empty(),
            "requireAuthentication needs an htpasswd file with at least one user"
        );
        let signature_key = match &config.signature_key {
            Some(path) => {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Some(
                    super::jws::public_key_from_pem(&pem)
                        .with_context(|| format!("{}", path.display()))?,
                )
            }
            None => None,
        };
        Ok(Mirror {
            signature_key,
            signatures: Mutex::default(),
            config,
            users,
            verified: Mutex::default(),
            failures: Mutex::default(),
            bcrypt_slots: tokio::sync::Semaphore::new(BCRYPT_CONCURRENCY),
            windows: Mutex::default(),
            files: Mutex::default(),
        })
    }

    /// The export directory served now.
    pub fn active_export(&self) -> Option<PathBuf> {
        super::active_export(
            &super::served_root(&self.config.root),
            self.config.active_export_id.as_deref(),
        )
    }

    /// The credential a request presents, checked: `Ok(None)` when anonymous access is
    /// allowed. A verified (user, password) is remembered; bcrypt runs on a blocking thread
    /// (a few at once), never on the async workers; after [`MAX_FAILURES_PER_MINUTE`]
    /// failures for a user from one client address, attempts are refused for the rest of
    /// the minute without running bcrypt.
    pub async fn authenticate(
        self: &Arc<Self>,
        headers: &HeaderMap,
        client: &str,
    ) -> Result<Option<String>, Refusal> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b64| STANDARD.decode(b64.trim()).ok())
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|pair| {
                pair.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            });
        let Some((user, password)) = presented else {
            return if self.config.require_authentication {
                Err(Refusal::Unauthorized)
            } else {
                Ok(None)
            };
        };
        let key = (user.clone(), Sha256::digest(password.as_bytes()).into());
        if self.verified.lock().expect("lock").contains(&key) {
            return Ok(Some(user));
        }
        let minute = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            / 60;
        let failure_key = (user.clone(), client.to_string());
        if let Some((window, count)) = self.failures.lock().expect("lock").get(&failure_key)
            && *window == minute
            && *count >= MAX_FAILURES_PER_MINUTE
        {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            return Err(Refusal::Throttled((minute + 1) * 60 - now));
        }
        // An unknown user costs a bcrypt too, so timing does not tell which users exist.
        let hash = self.users.get(&user).cloned();
        let ok = {
            let _slot = self
                .bcrypt_slots
                .acquire()
                .await
                .map_err(|_| Refusal::Unauthorized)?;
            tokio::task::spawn_blocking(move || match hash {
                Some(hash) => bcrypt::verify(&password, &hash).unwrap_or(false),
                None => {
                    let _ = bcrypt::verify(&password, UNKNOWN_USER_HASH.as_str());
                    false
                }
            })
            .await
            .unwrap_or(false)
        };
        if ok {
            let mut verified = self.verified.lock().expect("lock");
            if verified.len() >= VERIFIED_ENTRIES {
                verified.clear();
            }
            verified.insert(key);
            return Ok(Some(user));
        }
        let mut failures = self.failures.lock().expect("lock");
        if failures.len() >= FAILURE_ENTRIES {
            failures.retain(|_, (window, _)| *window == minute);
            if failures.len() >= FAILURE_ENTRIES {
                failures.clear();
            }
        }
        let entry = failures.entry(failure_key).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        Err(Refusal::Unauthorized)
    }

    /// Count a request against its budget; `Err(seconds)` until the window resets.
    fn spend(&self, budget: Budget, credential: &str, now: SystemTime) -> Result<(), u64> {
        let limit = match budget {
            Budget::Index => self.config.max_index_requests_per_hour,
            Budget::Download => self.config.max_download_requests_per_hour,
        };
        if limit == 0 {
            return Ok(());
        }
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let hour = secs / 3600;
        let mut windows = self.windows.lock().expect("lock");
        let entry = windows
            .entry((budget, credential.to_string()))
            .or_insert((hour, 0));
        if entry.0 != hour {
            *entry = (hour, 0);
        }
        if entry.1 >= limit {
            return Err((hour + 1) * 3600 - secs);
        }
        entry.1 += 1;
        Ok(())
    }

    /// The content and strong ETag of `path`, from memory when it has not changed.
    async fn read(&self, path: &Path) -> std::io::Result<(axum::body::Bytes, String)> {
        let metadata = tokio::fs::metadata(path).await?;
        let key = (
            path.to_path_buf(),
            metadata.modified().unwrap_or(UNIX_EPOCH),
            metadata.len(),
        );
        if let Some(hit) = self.files.lock().expect("lock").get(&key) {
            return Ok(hit);
        }
        let body = axum::body::Bytes::from(tokio::fs::read(path).await?);
        let etag = format!("\"sha256-{}\"", hex::encode(Sha256::digest(&body)));
        self.files
            .lock()
            .expect("lock")
            .insert(key, body.clone(), etag.clone());
        Ok((body, etag))
    }
}

impl Mirror {
    /// With a signature key: whether `bundle` (at `path`) carries a valid detached JWS
    /// next to it. Checked once per (bundle, signature) content.
    async fn check_signature(
        &self,
        path: &Path,
        bundle: &[u8],
        bundle_etag: &str,
    ) -> Result<(), String> {
        let Some(key) = &self.signature_key else {
            return Ok(());
        };
        let jws_path = path.with_file_name("bundle.json.jws");
        let (jws, jws_etag) = self
            .read(&jws_path)
            .await
            .map_err(|_| "bundle.json.jws is missing".to_string())?;
        let cache_key = (bundle_etag.to_string(), jws_etag);
        if let Some(outcome) = self.signatures.lock().expect("lock").get(&cache_key) {
            return outcome.clone();
        }
        let outcome = std::str::from_utf8(&jws)
            .map_err(|_| "bundle.json.jws is not text".to_string())
            .and_then(|text| {
                super::jws::verify_detached(text, bundle, key)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
        let mut cache = self.signatures.lock().expect("lock");
        if cache.len() > 1024 {
            cache.clear();
        }
        cache.insert(cache_key, outcome.clone());
        outcome
    }
}

fn unauthorized() -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"stellaops-mirror\", charset=\"UTF-8\""),
    );
    response
}

async fn serve_file(
    mirror: &Arc<Mirror>,
    headers: &HeaderMap,
    client: &str,
    budget: Budget,
    relative: &str,
    cache: &'static str,
) -> Response {
    let credential = match mirror.authenticate(headers, client).await {
        Ok(credential) => credential,
        Err(Refusal::Unauthorized) => return unauthorized(),
        Err(Refusal::Throttled(retry_after)) => {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed logins; try again later\n",
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return response;
        }
    };
    let client = credential.unwrap_or_else(|| "anonymous".to_string());
    if let Err(retry_after) = mirror.spend(budget, &client, SystemTime::now()) {
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            "hourly request budget exhausted\n",
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        return response;
    }
    let Some(export) = mirror.active_export() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no export has been synced yet\n",
        )
            .into_response();
    };
    let path = export.join("mirror").join(relative);
    let Ok((body, etag)) = mirror.read(&path).await else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    if relative.ends_with("/bundle.json")
        && let Err(reason) = mirror.check_signature(&path, &body, &etag).await
    {
        // Never hand out a bundle the exporter's key does not vouch for.
        tracing::warn!(path = %path.display(), %reason, "bundle.json refused");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "bundle.json of export {} failed signature verification: {reason}\n",
                super::export_id(&export)
            ),
        )
            .into_response();
    }
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let content_type = if relative.ends_with(".json") {
            "application/json"
        } else {
            "application/jose"
        };
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex etag"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

fn counted(route: &str, response: Response) -> Response {
    REQUESTS
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    response
}

/// The client's address when the server was started with connect info (as `main` does).
fn client_of(connect: &Option<axum::Extension<ConnectInfo<SocketAddr>>>) -> String {
    connect
        .as_ref()
        .map(|c| c.0.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

async fn index(
    State(mirror): State<Arc<Mirror>>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    counted(
        "index",
        serve_file(
            &mirror,
            &headers,
            &client_of(&connect),
            Budget::Index,
            "index.json",
            "public, max-age=60",
        )
        .await,
    )
}

async fn domain_file(
    State(mirror): State<Arc<Mirror>>,
    UrlPath((domain, file)): UrlPath<(String, String)>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    if domain != mirror.config.domain_id
        || !matches!(
            file.as_str(),
            "manifest.json" | "bundle.json" | "bundle.json.jws"
        )
    {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    let response = serve_file(
        &mirror,
        &headers,
        &client_of(&connect),
        Budget::Download,
        &format!("{domain}/{file}"),
        "public, max-age=300, immutable",
    )
    .await;
    counted("download", response)
}

async fn metrics() -> Response {
    use prometheus::Encoder;
    LazyLock::force(&REQUESTS);
    let mut body = Vec::new();
    match prometheus::TextEncoder::new().encode(&prometheus::gather(), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(mirror): State<Arc<Mirror>>) -> Response {
    match mirror.active_export() {
        Some(_) => (StatusCode::OK, "ok\n").into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no export has been synced yet\n",
        )
            .into_response(),
    }
}

/// The router of one domain.
pub fn router(mirror: Arc<Mirror>) -> Router {
    Router::new()
        .route("/concelier/exports/index.json", get(index))
        .route(
            "/concelier/exports/mirror/{domain}/{file}",
            get(domain_file),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(mirror)
}
