//! `stellaops-worker mirror serve`: the mirror HTTP server of one domain
//! (mirror-operations-runbook §1.1, §5, §6).
//!
//! * `/concelier/exports/index.json` — `Cache-Control: public, max-age=60`
//! * `/concelier/exports/mirror/{domain}/manifest.json`, `bundle.json`, `bundle.json.jws` —
//!   `Cache-Control: public, max-age=300, immutable`
//! * strong ETags, `If-None-Match` → 304; Basic auth against a bcrypt htpasswd file →
//!   401 with `WWW-Authenticate`; hourly budgets per credential → 429 with `Retry-After`;
//! * the export served: the explicit id, else the `latest` link, else the newest directory,
//!   looked up in the complete snapshot `.current` points to (see `mirror::sync`);
//! * files served from memory; the disk is asked again at most every [`REVALIDATE_AFTER`],
//!   so a request costs no system call of its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{ConnectInfo, Path as UrlPath, Request, State};
use axum::http::request::Parts;
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
    /// path → content and strong ETag at a (modified, length), so hot files are served from
    /// memory without copying (bounded by [`CACHE_BYTES`]).
    files: Mutex<FileCache>,
    /// The export served for the last state of the root seen.
    resolved: Mutex<Option<ResolvedExport>>,
    signature_key: Option<p256::ecdsa::VerifyingKey>,
    /// (bundle ETag, signature ETag) → verification outcome.
    signatures: Mutex<HashMap<(HeaderValue, HeaderValue), Result<(), String>>>,
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

/// A file's content and strong ETag (pre-rendered as a header value), valid while the
/// file keeps the modification time and length it had when read; trusted without asking
/// the disk until [`REVALIDATE_AFTER`] has passed since `checked`.
#[derive(Clone)]
struct CachedFile {
    modified: SystemTime,
    len: u64,
    body: axum::body::Bytes,
    etag: HeaderValue,
    used: u64,
    checked: Instant,
}

/// How long what the disk said is trusted before it is asked again: which export is
/// served (the `.current` link, the snapshot directory's modification time) and each
/// cached file's modification time and length. A request within it costs no system call
/// (on this project's 2-core benchmark machine the `readlink` and two `stat`s a request
/// made cost more CPU than the rest of its answer); a change on the volume is served at
/// most this long after it happens.
pub const REVALIDATE_AFTER: Duration = Duration::from_millis(100);

#[derive(Default)]
struct FileCache {
    entries: HashMap<PathBuf, CachedFile>,
    bytes: u64,
    clock: u64,
}

impl FileCache {
    /// The content and ETag of `path` when it was checked against the disk less than
    /// [`REVALIDATE_AFTER`] before `now`; a lookup by reference, no allocation.
    fn fresh(&mut self, path: &Path, now: Instant) -> Option<(axum::body::Bytes, HeaderValue)> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self.entries.get_mut(path)?;
        if now.saturating_duration_since(entry.checked) >= REVALIDATE_AFTER {
            return None;
        }
        entry.used = clock;
        Some((entry.body.clone(), entry.etag.clone()))
    }

    /// The content and ETag of `path` when it is cached as `(modified, len)`, which the
    /// disk said at `now`.
    fn get(
        &mut self,
        path: &Path,
        modified: SystemTime,
        len: u64,
        now: Instant,
    ) -> Option<(axum::body::Bytes, HeaderValue)> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self.entries.get_mut(path)?;
        if entry.modified != modified || entry.len != len {
            return None;
        }
        entry.used = clock;
        entry.checked = now;
        Some((entry.body.clone(), entry.etag.clone()))
    }

    fn insert(
        &mut self,
        path: PathBuf,
        modified: SystemTime,
        body: axum::body::Bytes,
        etag: HeaderValue,
        checked: Instant,
    ) {
        let size = body.len() as u64;
        if size > CACHE_BYTES / 2 {
            return;
        }
        // An older version of the same file goes first, then the least recently used.
        if let Some(old) = self.entries.remove(&path) {
            self.bytes -= old.body.len() as u64;
        }
        while self.bytes + size > CACHE_BYTES {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(entry) = self.entries.remove(&oldest) {
                self.bytes -= entry.body.len() as u64;
            }
        }
        self.bytes += size;
        self.clock += 1;
        let entry = CachedFile {
            modified,
            len: size,
            body,
            etag,
            used: self.clock,
            checked,
        };
        self.entries.insert(path, entry);
    }
}

/// The export directory resolved for a state of the mirror's root: used without asking
/// the disk for [`REVALIDATE_AFTER`] after `checked`, then kept while the `.current` link
/// points to the same snapshot and the snapshot directory keeps its modification time
/// (adding, removing or replacing an export, or the `latest` link, changes it), so a check
/// costs two system calls instead of a directory listing.
#[derive(Clone)]
struct ResolvedExport {
    served_root: PathBuf,
    root_modified: Option<SystemTime>,
    /// Whether the root's modification time can tell a later change (see
    /// [`RESOLUTION_SETTLE`]); if not, the next check lists it again.
    settled: bool,
    checked: Instant,
    export: Option<Arc<ExportFiles>>,
}

/// The files a request can name, each with its route's answer headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServedFile {
    Index,
    Manifest,
    Bundle,
    Signature,
}

impl ServedFile {
    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            ServedFile::Signature => "application/jose",
            _ => "application/json",
        })
    }

    fn cache_control(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            ServedFile::Index => "public, max-age=60",
            _ => "public, max-age=300, immutable",
        })
    }

    fn budget(self) -> Budget {
        match self {
            ServedFile::Index => Budget::Index,
            _ => Budget::Download,
        }
    }
}

/// An export directory and the paths of the files served from it, joined once when the
/// export is resolved rather than on every request.
struct ExportFiles {
    dir: PathBuf,
    /// `mirror/index.json`, then the domain's `manifest.json`, `bundle.json` and
    /// `bundle.json.jws`, in [`ServedFile`] order.
    files: [PathBuf; 4],
}

impl ExportFiles {
    fn new(dir: PathBuf, domain_id: &str) -> Self {
        let mirror = dir.join("mirror");
        let domain = mirror.join(domain_id);
        ExportFiles {
            files: [
                mirror.join("index.json"),
                domain.join("manifest.json"),
                domain.join("bundle.json"),
                domain.join("bundle.json.jws"),
            ],
            dir,
        }
    }

    fn path(&self, file: ServedFile) -> &Path {
        &self.files[file as usize]
    }
}

/// A directory modified this recently is not trusted to stay as resolved: a second change
/// within the file system's timestamp granularity would leave its modification time as is.
const RESOLUTION_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

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
            resolved: Mutex::default(),
        })
    }

    /// The export directory served now, checked against the disk.
    pub fn active_export(&self) -> Option<PathBuf> {
        self.resolve(Instant::now())
            .map(|export| export.dir.clone())
    }

    /// The export requests are served from: as resolved last, unless that was
    /// [`REVALIDATE_AFTER`] ago or more.
    fn served_export(&self, now: Instant) -> Option<Arc<ExportFiles>> {
        if let Some(resolved) = self.resolved.lock().expect("lock").as_ref()
            && now.saturating_duration_since(resolved.checked) < REVALIDATE_AFTER
        {
            return resolved.export.clone();
        }
        self.resolve(now)
    }

    /// [`Mirror::active_export`] without listing the root again while it has not changed.
    fn resolve(&self, now: Instant) -> Option<Arc<ExportFiles>> {
        let served_root = super::served_root(&self.config.root);
        let root_modified = std::fs::metadata(&served_root)
            .and_then(|m| m.modified())
            .ok();
        if let Some(resolved) = self.resolved.lock().expect("lock").as_mut()
            && resolved.settled
            && resolved.served_root == served_root
            && resolved.root_modified == root_modified
        {
            resolved.checked = now;
            return resolved.export.clone();
        }
        let export = super::active_export(&served_root, self.config.active_export_id.as_deref())
            .map(|dir| Arc::new(ExportFiles::new(dir, &self.config.domain_id)));
        let settled = root_modified.is_some_and(|modified| {
            SystemTime::now()
                .duration_since(modified)
                .is_ok_and(|age| age >= RESOLUTION_SETTLE)
        });
        *self.resolved.lock().expect("lock") = Some(ResolvedExport {
            served_root,
            root_modified,
            settled,
            checked: now,
            export: export.clone(),
        });
        export
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

    /// The content and strong ETag of `path`, from memory when it has not changed: without
    /// a system call within [`REVALIDATE_AFTER`] of the last check, else after a `stat`
    /// (inline: a trip to the blocking pool would cost more than the whole answer).
    /// Reading a changed file runs on the blocking pool.
    async fn read(
        &self,
        path: &Path,
        now: Instant,
    ) -> std::io::Result<(axum::body::Bytes, HeaderValue)> {
        if let Some(hit) = self.files.lock().expect("lock").fresh(path, now) {
            return Ok(hit);
        }
        let metadata = std::fs::metadata(path)?;
        let modified = metadata.modified().unwrap_or(UNIX_EPOCH);
        if let Some(hit) = self
            .files
            .lock()
            .expect("lock")
            .get(path, modified, metadata.len(), now)
        {
            return Ok(hit);
        }
        let body = axum::body::Bytes::from(tokio::fs::read(path).await?);
        let etag = HeaderValue::from_str(&format!(
            "\"sha256-{}\"",
            hex::encode(Sha256::digest(&body))
        ))
        .expect("a hex ETag is a header value");
        self.files.lock().expect("lock").insert(
            path.to_path_buf(),
            modified,
            body.clone(),
            etag.clone(),
            now,
        );
        Ok((body, etag))
    }
}

impl Mirror {
    /// With a signature key: whether `bundle` (of `export`) carries a valid detached JWS
    /// next to it. Checked once per (bundle, signature) content.
    async fn check_signature(
        &self,
        export: &ExportFiles,
        bundle: &[u8],
        bundle_etag: &HeaderValue,
        now: Instant,
    ) -> Result<(), String> {
        let Some(key) = &self.signature_key else {
            return Ok(());
        };
        let (jws, jws_etag) = self
            .read(export.path(ServedFile::Signature), now)
            .await
            .map_err(|_| "bundle.json.jws is missing".to_string())?;
        let cache_key = (bundle_etag.clone(), jws_etag);
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

async fn serve_file(mirror: &Arc<Mirror>, request: &Parts, file: ServedFile) -> Response {
    let headers = &request.headers;
    // An anonymous request to an open mirror needs no credential check (nor the client's
    // address, which only failed logins are counted by).
    let anonymous_allowed =
        !mirror.config.require_authentication && !headers.contains_key(header::AUTHORIZATION);
    let checked = if anonymous_allowed {
        Ok(None)
    } else {
        mirror.authenticate(headers, &client_of(request)).await
    };
    let credential = match checked {
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
    let client = credential.as_deref().unwrap_or("anonymous");
    if let Err(retry_after) = mirror.spend(file.budget(), client, SystemTime::now()) {
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
    let now = Instant::now();
    let Some(export) = mirror.served_export(now) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no export has been synced yet\n",
        )
            .into_response();
    };
    let path = export.path(file);
    let Ok((body, etag)) = mirror.read(path, now).await else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    if file == ServedFile::Bundle
        && let Err(reason) = mirror.check_signature(&export, &body, &etag, now).await
    {
        // Never hand out a bundle the exporter's key does not vouch for.
        tracing::warn!(path = %path.display(), %reason, "bundle.json refused");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "bundle.json of export {} failed signature verification: {reason}\n",
                super::export_id(&export.dir)
            ),
        )
            .into_response();
    }
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| etag == t.trim() || t.trim() == "*"));
    // Built directly: the header values are static or shared, the body is the cached bytes.
    let mut response = if matches {
        let mut response = Response::new(axum::body::Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(axum::body::Body::from(body));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, file.content_type());
        response
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, file.cache_control());
    response
}

/// The counters of the answers nearly every request gets (200 and 304 per route), looked
/// up once: `with_label_values` hashes the labels and takes a lock on each call.
static COMMON_COUNTERS: LazyLock<[[prometheus::IntCounter; 2]; 2]> = LazyLock::new(|| {
    ["index", "download"]
        .map(|route| ["200", "304"].map(|status| REQUESTS.with_label_values(&[route, status])))
});

fn counted(route: &'static str, response: Response) -> Response {
    let status = response.status();
    let common_route = match route {
        "index" => Some(0),
        "download" => Some(1),
        _ => None,
    };
    let common_status = match status {
        StatusCode::OK => Some(0),
        StatusCode::NOT_MODIFIED => Some(1),
        _ => None,
    };
    match (common_route, common_status) {
        (Some(r), Some(s)) => COMMON_COUNTERS[r][s].inc(),
        _ => REQUESTS.with_label_values(&[route, status.as_str()]).inc(),
    }
    response
}

/// The client's address when the server was started with connect info (as `main` does).
fn client_of(request: &Parts) -> String {
    request
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

// The request is taken whole and split (no copy), not through the `HeaderMap` extractor,
// which clones every header.
async fn index(State(mirror): State<Arc<Mirror>>, request: Request) -> Response {
    let (request, _) = request.into_parts();
    counted(
        "index",
        serve_file(&mirror, &request, ServedFile::Index).await,
    )
}

async fn domain_file(
    State(mirror): State<Arc<Mirror>>,
    UrlPath((domain, file)): UrlPath<(String, String)>,
    request: Request,
) -> Response {
    let file = match file.as_str() {
        "manifest.json" => ServedFile::Manifest,
        "bundle.json" => ServedFile::Bundle,
        "bundle.json.jws" => ServedFile::Signature,
        _ => return (StatusCode::NOT_FOUND, "not found\n").into_response(),
    };
    if domain != mirror.config.domain_id {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    let (request, _) = request.into_parts();
    counted("download", serve_file(&mirror, &request, file).await)
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

/// Serve `mirror` on `listener` until `shutdown` completes, as `stellaops-worker mirror
/// serve` does: with each client's address (failed logins are limited per user and
/// address), at most [`CONNECTION_LIMITS`] open connections and a header-read timeout.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mirror: Arc<Mirror>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    crate::tls::serve_bounded(
        listener,
        router(mirror),
        CONNECTION_LIMITS,
        |_, addr: &SocketAddr| *addr,
        shutdown,
    )
    .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn age(dir: &Path, seconds: u64) {
        let then = SystemTime::now() - std::time::Duration::from_secs(seconds);
        std::fs::File::open(dir)
            .and_then(|d| d.set_modified(then))
            .expect("set the directory's modification time");
    }

    /// A mirror of `root` without authentication, budgets or signature check.
    fn open_mirror(root: &Path) -> Mirror {
        Mirror::new(MirrorConfig {
            root: root.to_path_buf(),
            domain_id: "primary".into(),
            active_export_id: None,
            require_authentication: false,
            htpasswd: None,
            max_index_requests_per_hour: 0,
            max_download_requests_per_hour: 0,
            signature_key: None,
        })
        .unwrap()
    }

    #[test]
    fn the_served_export_is_resolved_again_when_the_root_changes() {
        let root = std::env::temp_dir().join(format!("stellaops-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("2025-01-01")).unwrap();
        age(&root.join("2025-01-01"), 7200);
        age(&root, 3600);
        let mirror = open_mirror(&root);
        assert_eq!(mirror.active_export(), Some(root.join("2025-01-01")));
        assert!(
            mirror.resolved.lock().unwrap().as_ref().unwrap().settled,
            "a settled root is trusted by its modification time"
        );
        // A new export changes the root's modification time: found at the next request.
        std::fs::create_dir_all(root.join("2025-01-02")).unwrap();
        assert_eq!(mirror.active_export(), Some(root.join("2025-01-02")));
        assert!(
            !mirror.resolved.lock().unwrap().as_ref().unwrap().settled,
            "a root changed this second is not trusted by its modification time"
        );
        // So is a `latest` link, once the root has settled.
        std::os::unix::fs::symlink("2025-01-01", root.join("latest")).unwrap();
        age(&root, 60);
        assert_eq!(mirror.active_export(), Some(root.join("latest")));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn requests_ask_the_disk_again_only_once_revalidate_after_has_passed() {
        let root =
            std::env::temp_dir().join(format!("stellaops-revalidate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let index = root.join("2025-01-01/mirror/index.json");
        std::fs::create_dir_all(index.parent().unwrap()).unwrap();
        std::fs::write(&index, "v1").unwrap();
        age(&root.join("2025-01-01"), 7200);
        age(&root, 3600);
        let mirror = open_mirror(&root);
        let start = Instant::now();
        let export = mirror.served_export(start).unwrap();
        assert_eq!(export.dir, root.join("2025-01-01"));
        assert_eq!(export.path(ServedFile::Index), index);
        assert_eq!(&mirror.read(&index, start).await.unwrap().0[..], b"v1");
        // A newer export appears and the served file is rewritten in place.
        std::fs::create_dir_all(root.join("2025-01-02/mirror")).unwrap();
        std::fs::write(&index, "version 2").unwrap();
        let within = start + REVALIDATE_AFTER / 2;
        assert_eq!(mirror.served_export(within).unwrap().dir, export.dir);
        assert_eq!(&mirror.read(&index, within).await.unwrap().0[..], b"v1");
        // Once the window has passed, both are checked again.
        let after = start + REVALIDATE_AFTER;
        assert_eq!(
            mirror.served_export(after).unwrap().dir,
            root.join("2025-01-02")
        );
        let (body, etag) = mirror.read(&index, after).await.unwrap();
        assert_eq!(&body[..], b"version 2");
        assert_eq!(
            etag,
            format!("\"sha256-{}\"", hex::encode(Sha256::digest(b"version 2"))).as_str()
        );
        // Readiness asks the disk every time.
        std::fs::remove_dir_all(root.join("2025-01-02")).unwrap();
        assert_eq!(mirror.active_export(), Some(root.join("2025-01-01")));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
