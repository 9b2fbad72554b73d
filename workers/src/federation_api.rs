//! `stellaops-worker federation serve`: the seed's HTTP API.
//!
//! * `POST /api/v1/federation/import` (`Content-Type: application/zstd`) with the seed's
//!   query parameters `dry_run`, `skip_signature`, `on_conflict`, `force`; answers the
//!   seed's response JSON.
//! * `GET /api/v1/federation/sync/status`: every site's sync state and the local cursor.
//! * `GET /metrics` (the seed's `federation_*` metrics), `/healthz`, `/readyz`.
//!
//! Import and status need authentication: a bearer token from the tokens file (a mounted
//! Secret; a token may be bound to one site, and then only that site's bundles are
//! accepted with it) or a client certificate issued by the configured CA (HTTPS only).
//! A client certificate authenticates for the one site it names in a URI SAN
//! `stellaops-site://SITE`. Failed authentication (a wrong token, a certificate or token
//! used for another site's bundle) is rate-limited per client address: past the limit the
//! address gets `429` with `Retry-After` until its window passes, before any token is
//! compared. `force` is refused over plain HTTP. A body is read with its limit applied while it
//! arrives (an announced `Content-Length` past it is refused before reading), one import
//! at a time, the limit sized to the container's memory.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use stellaops_federation::bundle::BundleError;
use stellaops_federation::cursor::Cursor;
use stellaops_federation::dsse::TrustedKeys;
use stellaops_federation::import::{ImportError, ImportOptions, OnConflict, import};
use stellaops_federation::sites;

/// How long an import waits for the one in progress before `503` with `Retry-After`.
pub const IMPORT_QUEUE_WAIT: Duration = Duration::from_secs(30);
/// Shortest bearer token accepted in the tokens file.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// Bearer tokens, kept as SHA-256 digests; `Debug` shows how many, never a token.
#[derive(Clone, Default)]
pub struct Tokens {
    /// (the site a token may import for, `None`: any; SHA-256 of the token).
    entries: Vec<(Option<String>, [u8; 32])>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} redacted)", self.entries.len())
    }
}

impl Tokens {
    /// Parse a tokens file: one `SITE:TOKEN` per line (`*:TOKEN` for any site); blank
    /// lines and `#` comments skipped; tokens of at least [`MIN_TOKEN_LENGTH`] characters.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (site, token) = line.split_once(':').ok_or_else(|| {
                format!(
                    "tokens line {}: expected SITE:TOKEN (or *:TOKEN for any site)",
                    i + 1
                )
            })?;
            let (site, token) = (site.trim(), token.trim());
            if site.is_empty() {
                return Err(format!("tokens line {}: no site before ':'", i + 1));
            }
            if token.len() < MIN_TOKEN_LENGTH {
                return Err(format!(
                    "tokens line {} ({site}): a token needs at least {MIN_TOKEN_LENGTH} characters",
                    i + 1
                ));
            }
            let scope = (site != "*").then(|| site.to_string());
            entries.push((scope, Sha256::digest(token.as_bytes()).into()));
        }
        Ok(Tokens { entries })
    }

    /// Read and parse a tokens file.
    pub fn from_file(path: &Path) -> anyhow::Result<Tokens> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Tokens::parse(&text)
            .map_err(anyhow::Error::msg)
            .with_context(|| path.display().to_string())
    }

    /// No token configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The scope of `presented` when it is a configured token: `Some(None)` for any site.
    fn scope(&self, presented: &str) -> Option<Option<String>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.entries
            .iter()
            .find(|(_, d)| *d == digest)
            .map(|(site, _)| site.clone())
    }
}

/// The URI SAN scheme naming the site a client certificate authenticates for.
pub const SITE_URI_SCHEME: &str = "stellaops-site://";

/// The site a client certificate (DER) names: its one URI SAN `stellaops-site://SITE`.
/// An error says why the certificate names no usable site.
pub fn certificate_site(der: &[u8]) -> Result<String, String> {
    use x509_parser::extensions::GeneralName;
    let (_, certificate) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the client certificate does not parse: {e}"))?;
    let names = certificate
        .subject_alternative_name()
        .map_err(|e| format!("the client certificate's subjectAltName: {e}"))?;
    let mut sites: Vec<&str> = names
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.strip_prefix(SITE_URI_SCHEME),
            _ => None,
        })
        .collect();
    sites.dedup();
    match sites.as_slice() {
        [] => Err(format!(
            "the client certificate names no site: it needs a URI SAN {SITE_URI_SCHEME}SITE"
        )),
        [site] if valid_site_id(site) => Ok((*site).to_string()),
        [site] => Err(format!(
            "the client certificate's site {site:?} is not a site id (letters, digits, '.', '_', '-')"
        )),
        _ => Err(format!(
            "the client certificate names {} sites ({}); it may name one",
            sites.len(),
            sites.join(", ")
        )),
    }
}

fn valid_site_id(site: &str) -> bool {
    !site.is_empty()
        && site.len() <= 253
        && site
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Limits on failed authentication, per client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthFailureLimits {
    /// Failures an address may have within one window; the next request from it is
    /// answered `429` until the window passes. `0` turns the limit off.
    pub max_failures: u32,
    /// The window's length, from an address's first failure.
    pub window: Duration,
    /// Addresses tracked at once; past it, further addresses share one window, so a flood
    /// of addresses cannot grow memory.
    pub max_addresses: usize,
}

impl Default for AuthFailureLimits {
    fn default() -> Self {
        AuthFailureLimits {
            max_failures: 10,
            window: Duration::from_secs(60),
            max_addresses: 10_000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct FailureWindow {
    started: Instant,
    failures: u32,
}

/// Failed authentications per client address in fixed windows (IPv6 addresses counted by
/// their /64, what one host usually holds).
#[derive(Debug)]
pub struct AuthFailures {
    limits: AuthFailureLimits,
    state: Mutex<FailureState>,
}

#[derive(Debug, Default)]
struct FailureState {
    by_address: HashMap<IpAddr, FailureWindow>,
    /// Shared by addresses that found the map full.
    overflow: Option<FailureWindow>,
}

fn client_key(addr: Option<SocketAddr>) -> IpAddr {
    match addr.map(|a| a.ip()) {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        Some(v4) => v4,
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

impl AuthFailures {
    /// Empty, with these limits.
    pub fn new(limits: AuthFailureLimits) -> AuthFailures {
        AuthFailures {
            limits,
            state: Mutex::new(FailureState::default()),
        }
    }

    /// The limits.
    pub fn limits(&self) -> AuthFailureLimits {
        self.limits
    }

    fn live(&self, window: Option<FailureWindow>, now: Instant) -> Option<FailureWindow> {
        window.filter(|w| now.duration_since(w.started) < self.limits.window)
    }

    /// When `addr` is over its limit: how long until its window passes.
    pub fn retry_after(&self, addr: Option<SocketAddr>, now: Instant) -> Option<Duration> {
        if self.limits.max_failures == 0 {
            return None;
        }
        let key = client_key(addr);
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let window = match state.by_address.get(&key) {
            Some(w) => Some(*w),
            // An address that found the map full is counted in the shared window.
            None if state.by_address.len() >= self.limits.max_addresses => state.overflow,
            None => None,
        };
        self.live(window, now)
            .filter(|w| w.failures >= self.limits.max_failures)
            .map(|w| self.limits.window - now.duration_since(w.started))
    }

    /// Count a failed authentication from `addr`.
    pub fn record(&self, addr: Option<SocketAddr>, now: Instant) {
        if self.limits.max_failures == 0 {
            return;
        }
        let key = client_key(addr);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.by_address.contains_key(&key)
            && state.by_address.len() >= self.limits.max_addresses
        {
            let window = self.limits.window;
            state
                .by_address
                .retain(|_, w| now.duration_since(w.started) < window);
        }
        let fresh = FailureWindow {
            started: now,
            failures: 0,
        };
        let slot = if state.by_address.contains_key(&key)
            || state.by_address.len() < self.limits.max_addresses
        {
            let entry = state.by_address.entry(key).or_insert(fresh);
            if now.duration_since(entry.started) >= self.limits.window {
                *entry = fresh;
            }
            entry
        } else {
            let live = self.live(state.overflow, now).unwrap_or(fresh);
            state.overflow.insert(live)
        };
        slot.failures = slot.failures.saturating_add(1);
    }

    /// Failures counted against `addr`'s current window (its own or the shared one).
    pub fn failures(&self, addr: Option<SocketAddr>, now: Instant) -> u32 {
        let key = client_key(addr);
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let window = match state.by_address.get(&key) {
            Some(w) => Some(*w),
            None if state.by_address.len() >= self.limits.max_addresses => state.overflow,
            None => None,
        };
        self.live(window, now).map_or(0, |w| w.failures)
    }

    /// Addresses tracked now (for tests and the bound on memory).
    pub fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_address
            .len()
    }
}

/// Body limits of the import endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, applied while reading.
    pub max_body_bytes: u64,
    /// Largest decompressed archive.
    pub max_expanded_bytes: u64,
    /// The whole body must arrive within this.
    pub body_timeout: Duration,
}

impl Limits {
    /// From `--max-bundle-size` and the container's memory limit: a body gets at most an
    /// eighth of the memory and its decompressed archive half (one import runs at a time),
    /// so a large upload cannot get the Pod OOM-killed.
    pub fn for_memory(max_bundle_size: u64, memory: Option<u64>, body_timeout: Duration) -> Limits {
        let expanded = max_bundle_size.saturating_mul(64).max(1 << 20);
        match memory {
            Some(memory) => Limits {
                max_body_bytes: max_bundle_size.min(memory / 8),
                max_expanded_bytes: expanded.min(memory / 2),
                body_timeout,
            },
            None => Limits {
                max_body_bytes: max_bundle_size,
                max_expanded_bytes: expanded,
                body_timeout,
            },
        }
    }
}

/// The memory limit of this container (cgroup v2 `memory.max`, else v1
/// `memory.limit_in_bytes`), when there is one.
pub fn memory_limit() -> Option<u64> {
    for file in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        if let Ok(text) = std::fs::read_to_string(file) {
            // "max" (v2) or a huge number (v1) mean no limit.
            return text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|m| *m < (1u64 << 60));
        }
    }
    None
}

/// Shared state of the API.
pub struct ApiState {
    /// The store.
    pub pool: PgPool,
    /// Keys trusted to sign bundles (each for one site, or for any).
    pub trusted: TrustedKeys,
    /// Body limits.
    pub limits: Limits,
    /// Bearer tokens accepted.
    pub tokens: Tokens,
    /// Whether a client certificate verified against the configured CA authenticates.
    pub client_certificates: bool,
    /// One import at a time: each holds its body in memory.
    pub imports: tokio::sync::Semaphore,
    /// Failed authentications per client address.
    pub auth_failures: AuthFailures,
}

impl ApiState {
    /// State with its authentication; refused when there is none (neither tokens nor a
    /// client CA).
    pub fn new(
        pool: PgPool,
        trusted: TrustedKeys,
        limits: Limits,
        tokens: Tokens,
        client_certificates: bool,
    ) -> anyhow::Result<ApiState> {
        anyhow::ensure!(
            !tokens.is_empty() || client_certificates,
            "federation serve needs authentication: --tokens-file (bearer tokens) and/or --client-ca (client certificates, with --tls-cert)"
        );
        Ok(ApiState {
            pool,
            trusted,
            limits,
            tokens,
            client_certificates,
            imports: tokio::sync::Semaphore::new(1),
            auth_failures: AuthFailures::new(AuthFailureLimits::default()),
        })
    }

    /// With these limits on failed authentication instead of the defaults.
    pub fn with_auth_failure_limits(mut self, limits: AuthFailureLimits) -> ApiState {
        self.auth_failures = AuthFailures::new(limits);
        self
    }
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("limits", &self.limits)
            .field("tokens", &self.tokens)
            .field("client_certificates", &self.client_certificates)
            .field("auth_failures", &self.auth_failures.limits())
            .finish_non_exhaustive()
    }
}

/// What the server knows of a connection: served with
/// `router(..).into_make_service_with_connect_info::<Peer>()`.
#[derive(Clone, Debug, Default)]
pub struct Peer {
    /// The client's address.
    pub addr: Option<SocketAddr>,
    /// Over TLS.
    pub tls: bool,
    /// The client presented a certificate that verified against the configured CA (the
    /// handshake fails for any other certificate): the site it names, or why it names
    /// none.
    pub client_certificate: Option<Result<String, String>>,
}

impl Peer {
    /// A plain TCP connection.
    pub fn plain(_io: &tokio::net::TcpStream, addr: &SocketAddr) -> Peer {
        Peer {
            addr: Some(*addr),
            tls: false,
            client_certificate: None,
        }
    }

    /// A TLS connection, with whether its client presented a (verified) certificate.
    pub fn tls(
        io: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        addr: &SocketAddr,
    ) -> Peer {
        let (_, connection) = io.get_ref();
        Peer {
            addr: Some(*addr),
            tls: true,
            client_certificate: connection
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| certificate_site(leaf.as_ref())),
        }
    }
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer::plain(stream.io(), stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, crate::tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        Peer::tls(stream.io(), stream.remote_addr())
    }
}

/// Connections `federation serve` keeps open at once, and the time a client has to send
/// a request's headers.
pub const CONNECTION_LIMITS: crate::tls::ConnectionLimits = crate::tls::ConnectionLimits {
    max_connections: 256,
    header_read_timeout: Duration::from_secs(30),
};

#[derive(Deserialize, Default)]
struct ImportQuery {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    skip_signature: bool,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    on_conflict: Option<String>,
}

/// The router.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/v1/federation/import", post(import_bundle))
        .route("/api/v1/federation/sync/status", get(sync_status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

fn error_status(error: &ImportError) -> StatusCode {
    match error {
        ImportError::Bundle(BundleError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        ImportError::Bundle(BundleError::Unsigned | BundleError::BadSignature(_))
        | ImportError::SkipNotTrusted
        | ImportError::SiteNotAllowed(_)
        | ImportError::WrongSite { .. }
        | ImportError::SourceNotAllowed { .. } => StatusCode::FORBIDDEN,
        ImportError::CursorNotAfter { .. }
        | ImportError::CursorGap { .. }
        | ImportError::AlreadyImported(_)
        | ImportError::Conflict { .. } => StatusCode::CONFLICT,
        ImportError::Database(_) | ImportError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn refuse(status: StatusCode, error: impl std::fmt::Display) -> Response {
    (
        status,
        axum::Json(json!({"success": false, "error": error.to_string()})),
    )
        .into_response()
}

/// Who is asking, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Credential {
    /// A bearer token, bound to one site or (`None`) any.
    Token(Option<String>),
    /// A client certificate, for the site it names.
    Certificate(String),
}

impl Credential {
    /// The only site whose bundles this credential imports, if bound to one.
    fn site(&self) -> Option<&str> {
        match self {
            Credential::Token(site) => site.as_deref(),
            Credential::Certificate(site) => Some(site),
        }
    }
}

/// Why a request is not let in.
enum Refusal {
    /// No credentials at all.
    Anonymous,
    /// Credentials that do not authenticate (a wrong token, a certificate naming no site).
    Failed(String),
}

/// Authenticate a request: a bearer token when one is sent, else a client certificate.
fn authenticate(state: &ApiState, headers: &HeaderMap, peer: &Peer) -> Result<Credential, Refusal> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match (bearer, &peer.client_certificate) {
        (Some(token), _) => state
            .tokens
            .scope(token)
            .map(Credential::Token)
            .ok_or_else(|| Refusal::Failed("the bearer token is not accepted".into())),
        (None, Some(Ok(site))) if state.client_certificates => {
            Ok(Credential::Certificate(site.clone()))
        }
        (None, Some(Err(why))) if state.client_certificates => Err(Refusal::Failed(why.clone())),
        (None, _) => Err(Refusal::Anonymous),
    }
}

/// Let a request in or answer it: `429` while its address is over the failure limit (no
/// token is compared then), `401` without valid credentials (a failure counted against
/// the address unless none were sent).
fn admit(state: &ApiState, headers: &HeaderMap, peer: &Peer) -> Result<Credential, Box<Response>> {
    if let Some(wait) = state.auth_failures.retry_after(peer.addr, Instant::now()) {
        crate::metrics::AUTH_REFUSED
            .with_label_values(&["rate_limited"])
            .inc();
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed authentications from this address; try again in {seconds} s"),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        return Err(Box::new(response));
    }
    match authenticate(state, headers, peer) {
        Ok(credential) => Ok(credential),
        Err(Refusal::Anonymous) => Err(Box::new(unauthorized(
            "authentication required: a bearer token or a client certificate",
        ))),
        Err(Refusal::Failed(why)) => {
            state.auth_failures.record(peer.addr, Instant::now());
            crate::metrics::AUTH_REFUSED
                .with_label_values(&["bad_credentials"])
                .inc();
            Err(Box::new(unauthorized(&why)))
        }
    }
}

/// `401` with the challenge.
fn unauthorized(why: &str) -> Response {
    let mut response = refuse(StatusCode::UNAUTHORIZED, why);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"stellaops-federation\""),
    );
    response
}

fn peer_of(connect: &Option<axum::Extension<ConnectInfo<Peer>>>) -> Peer {
    connect.as_ref().map(|c| c.0.0.clone()).unwrap_or_default()
}

async fn import_bundle(
    State(state): State<Arc<ApiState>>,
    connect: Option<axum::Extension<ConnectInfo<Peer>>>,
    Query(query): Query<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let peer = peer_of(&connect);
    let credential = match admit(&state, &headers, &peer) {
        Ok(credential) => credential,
        Err(response) => return *response,
    };
    if query.force && !peer.tls {
        return refuse(
            StatusCode::FORBIDDEN,
            "force is refused over plain HTTP: it overrides the cursor checks, so send it over HTTPS",
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !matches!(
        content_type,
        "application/zstd" | "application/octet-stream"
    ) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the bundle with Content-Type: application/zstd",
        );
    }
    let on_conflict = match query
        .on_conflict
        .as_deref()
        .map(str::parse::<OnConflict>)
        .transpose()
    {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let limit = state.limits.max_body_bytes;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = announced
        && length > limit
    {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is {length} bytes, more than the {limit} accepted; not read"),
        );
    }
    // One body in memory at a time.
    let Ok(Ok(_permit)) = tokio::time::timeout(IMPORT_QUEUE_WAIT, state.imports.acquire()).await
    else {
        let mut response = refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "another import is in progress; try again later",
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(IMPORT_QUEUE_WAIT.as_secs()),
        );
        return response;
    };
    let limited = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    let bytes = match tokio::time::timeout(state.limits.body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is more than the {limit} bytes accepted; reading stopped there"),
            );
        }
        Ok(Err(error)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("reading the body: {error}"),
            );
        }
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s",
                    state.limits.body_timeout.as_secs()
                ),
            );
        }
    };
    let options = ImportOptions {
        dry_run: query.dry_run,
        skip_signature: query.skip_signature,
        force: query.force,
        on_conflict,
        expected_hash: None,
        max_bundle_size_bytes: limit,
        expected_site_id: credential.site().map(str::to_string),
        max_expanded_bytes: Some(state.limits.max_expanded_bytes),
    };
    let started = std::time::Instant::now();
    let result = import(&state.pool, &bytes, &options, &state.trusted).await;
    crate::metrics::IMPORT_DURATION.observe(started.elapsed().as_secs_f64());
    crate::metrics::BUNDLE_SIZE.observe(bytes.len() as f64);
    match result {
        Ok(response) => {
            crate::metrics::record_import(&response);
            (StatusCode::OK, axum::Json(json!(response))).into_response()
        }
        Err(ImportError::WrongSite { expected, got }) => {
            // A credential used for another site's bundle: a failed site binding.
            state.auth_failures.record(peer.addr, Instant::now());
            crate::metrics::AUTH_REFUSED
                .with_label_values(&["site_mismatch"])
                .inc();
            let whose = match credential {
                Credential::Certificate(_) => "the client certificate is for",
                Credential::Token(_) => "the token is for",
            };
            tracing::warn!(bundle_site = %got, credential_site = %expected, "federation import refused: site mismatch");
            refuse(
                StatusCode::FORBIDDEN,
                format!("Site mismatch: the bundle is from site {got}, {whose} site {expected}"),
            )
        }
        Err(error) => {
            tracing::warn!(%error, "federation import refused");
            refuse(error_status(&error), error)
        }
    }
}

async fn sync_status(
    State(state): State<Arc<ApiState>>,
    connect: Option<axum::Extension<ConnectInfo<Peer>>>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = admit(&state, &headers, &peer_of(&connect)) {
        return *response;
    }
    let sites = match sites::list(&state.pool).await {
        Ok(sites) => sites,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let local = stellaops_store::advisories::latest_change(&state.pool)
        .await
        .ok()
        .flatten();
    let sites: Vec<_> = sites
        .into_iter()
        .map(|s| {
            json!({"site_id": s.site_id, "enabled": s.enabled, "last_sync_at": s.last_sync_at,
                   "last_cursor": s.last_cursor, "bundles_imported": s.bundles_imported,
                   "total_items_imported": s.total_items_imported})
        })
        .collect();
    axum::Json(json!({"sites": sites, "local_cursor": local.map(|p| Cursor { at: p.at, seq: p.seq }.to_string())}))
        .into_response()
}

async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    match sqlx::query("SELECT 1").execute(&state.pool).await {
        Ok(_) => (StatusCode::OK, "ok").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}")).into_response(),
    }
}

async fn metrics() -> Response {
    use prometheus::Encoder;
    let mut body = Vec::new();
    // Touch the metrics so they appear before the first import.
    let _ = (
        &*crate::metrics::IMPORT_DURATION,
        &*crate::metrics::EXPORT_DURATION,
        &*crate::metrics::BUNDLE_SIZE,
    );
    let _ = (
        &*crate::metrics::ITEMS_PROCESSED,
        &*crate::metrics::CONFLICTS,
        &*crate::metrics::AUTH_REFUSED,
    );
    match prometheus::TextEncoder::new().encode(&prometheus::gather(), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Resolves on SIGINT or SIGTERM (what Kubernetes sends before killing a Pod).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            return;
        }
    }
    let _ = ctrl_c.await;
}
