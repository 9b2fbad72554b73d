//! A small OCI distribution client: image references, manifest fetches with the OCI and
//! Docker media types, bearer-token and basic auth from a dockerconfigjson, and digest
//! verification of everything it returns. Every registry is treated as hostile: connect, stall
//! and total timeouts on every request, size caps on every body, credentials only for the
//! registry (and tokens only for the repository) they belong to, and HTTPS unless a registry
//! is loopback or named as insecure by its exact host.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, LOCATION, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use sha2::{Digest as _, Sha256};

pub mod push;
pub mod referrers;

pub use referrers::{Referrer, Referrers, ReferrersSource, referrers_tag};

/// Manifest media types we accept, most specific first.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Registry errors, worded for the Scan status a person reads.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference does not parse.
    #[error("invalid image reference {0:?}: {1}")]
    InvalidReference(String, &'static str),
    /// The registry answered 401/403 even after authenticating.
    #[error("registry {registry} refused access to {repository} ({status}); check the pull secret")]
    Unauthorized {
        registry: String,
        repository: String,
        status: u16,
    },
    /// The registry refused a push even after authenticating.
    #[error(
        "registry {registry} refused a push to {repository} ({status}); check that the push secret may write there"
    )]
    PushRefused {
        registry: String,
        repository: String,
        status: u16,
    },
    /// No such manifest.
    #[error("{0} not found in the registry")]
    NotFound(String),
    /// The content does not match its digest.
    #[error("digest mismatch for {reference}: expected {expected}, got {actual}")]
    DigestMismatch {
        reference: String,
        expected: String,
        actual: String,
    },
    /// Any other HTTP failure.
    #[error("registry request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// An unexpected answer.
    #[error("unexpected registry response: {0}")]
    Protocol(String),
    /// The registry did not finish answering within the budget.
    #[error("registry {registry} did not answer within {seconds:.1} s")]
    Timeout { registry: String, seconds: f64 },
    /// A body larger than its cap (or than its descriptor declares).
    #[error("registry {registry} sent a {what} larger than {limit} bytes; refused")]
    TooLarge {
        registry: String,
        what: String,
        limit: u64,
    },
}

/// Tag or digest part of a reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// `:tag`
    Tag(String),
    /// `@sha256:…`
    Digest(String),
}

/// A parsed image reference, with Docker Hub's defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageReference {
    /// Registry host (and port).
    pub registry: String,
    /// Repository path.
    pub repository: String,
    /// Tag or digest.
    pub reference: Reference,
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Reference::Tag(tag) => write!(f, "{}/{}:{tag}", self.registry, self.repository),
            Reference::Digest(digest) => {
                write!(f, "{}/{}@{digest}", self.registry, self.repository)
            }
        }
    }
}

impl FromStr for ImageReference {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |why| RegistryError::InvalidReference(s.to_string(), why);
        if s.is_empty() || s.chars().any(char::is_whitespace) {
            return Err(invalid("empty or contains whitespace"));
        }
        let (name, digest) = match s.split_once('@') {
            Some((name, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .ok_or_else(|| invalid("only sha256 digests are supported"))?;
                if hex.len() != 64
                    || !hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err(invalid(
                        "a digest is sha256: and 64 lowercase hex characters",
                    ));
                }
                (name, Some(digest.to_string()))
            }
            None => (s, None),
        };
        // A tag is a colon in the last path component (a colon before a slash is a port).
        let (name, tag) = match name.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag.to_string())),
            _ => (name, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ if name.contains('/') => ("docker.io".to_string(), name.to_string()),
            _ => ("docker.io".to_string(), format!("library/{name}")),
        };
        if repository.is_empty() || repository.split('/').any(str::is_empty) {
            return Err(invalid("empty repository path component"));
        }
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("repository names are lowercase"));
        }
        let reference = match (digest, tag) {
            (Some(digest), _) => Reference::Digest(digest),
            (None, Some(tag)) => Reference::Tag(tag),
            (None, None) => Reference::Tag("latest".to_string()),
        };
        Ok(ImageReference {
            registry,
            repository,
            reference,
        })
    }
}

impl ImageReference {
    fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }
}

/// A fetched manifest, verified against its digest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// `Content-Type` of the manifest.
    pub media_type: String,
    /// `sha256:…` of the bytes.
    pub digest: String,
    /// The manifest bytes exactly as served.
    pub bytes: Vec<u8>,
}

/// Credentials per registry, as in a `kubernetes.io/dockerconfigjson` Secret. `Debug` names
/// the registries only, never the user names or passwords.
#[derive(Clone, Default)]
pub struct Credentials {
    by_registry: HashMap<String, (String, String)>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hosts: Vec<&str> = self.registries().collect();
        hosts.sort();
        f.debug_struct("Credentials")
            .field("registries", &hosts)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Parse a `.dockerconfigjson` document (`{"auths": {"host": {"auth": base64(user:pass)}}}`
    /// or with `username`/`password`).
    pub fn from_docker_config(json: &str) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
        let auths = value
            .get("auths")
            .and_then(|a| a.as_object())
            .ok_or("no \"auths\" object")?;
        let mut by_registry = HashMap::new();
        for (host, entry) in auths {
            let host = host
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            let host = host.split('/').next().unwrap_or(host).to_string();
            let pair = if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
                let decoded = STANDARD
                    .decode(auth)
                    .map_err(|e| format!("{host}: auth is not base64: {e}"))?;
                let decoded =
                    String::from_utf8(decoded).map_err(|_| format!("{host}: auth is not UTF-8"))?;
                let (user, pass) = decoded
                    .split_once(':')
                    .ok_or(format!("{host}: auth is not user:password"))?;
                (user.to_string(), pass.to_string())
            } else {
                let get = |k: &str| {
                    entry
                        .get(k)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string()
                };
                (get("username"), get("password"))
            };
            let host = if host == "index.docker.io" {
                "docker.io".to_string()
            } else {
                host
            };
            by_registry.insert(host, pair);
        }
        Ok(Credentials { by_registry })
    }

    /// Add `other`'s registries (an earlier entry for a registry wins).
    pub fn merge(&mut self, other: Credentials) {
        for (registry, pair) in other.by_registry {
            self.by_registry.entry(registry).or_insert(pair);
        }
    }

    /// The registries (bare hosts, `host:port`) a credential is filed under.
    pub fn registries(&self) -> impl Iterator<Item = &str> {
        self.by_registry.keys().map(String::as_str)
    }

    fn for_registry(&self, registry: &str) -> Option<&(String, String)> {
        self.by_registry.get(registry)
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=…`
    Basic,
    /// `Bearer realm=…,service=…,scope=…`
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` header value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut map = HashMap::new();
    let mut rest = params;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        map.insert(key, value.to_string());
        rest = remaining;
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: map.remove("realm")?,
            service: map.remove("service"),
            scope: map.remove("scope"),
        }),
        _ => None,
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// What one registry may cost us: every request has a connect and a total timeout, every
/// body a size cap. The defaults are the documented limits (docs/hardening.md).
#[derive(Clone, Debug)]
pub struct RegistryLimits {
    /// Establishing a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// A manifest, config, signature payload or token request, from the first byte sent
    /// through every redirect to the last byte of the body.
    pub request_timeout: Duration,
    /// A layer download as a whole.
    pub blob_timeout: Duration,
    /// No byte at all for this long aborts any read (a stalled peer).
    pub stall_timeout: Duration,
    /// Manifests and indexes.
    pub max_manifest_bytes: u64,
    /// Image configs and other blobs read into memory.
    pub max_config_bytes: u64,
    /// A token endpoint's answer.
    pub max_token_bytes: u64,
}

impl Default for RegistryLimits {
    fn default() -> Self {
        RegistryLimits {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            blob_timeout: Duration::from_secs(30 * 60),
            stall_timeout: Duration::from_secs(30),
            max_manifest_bytes: 4 << 20,
            max_config_bytes: 16 << 20,
            max_token_bytes: 1 << 20,
        }
    }
}

/// Redirects followed per request (blob storage needs one; loops end here).
pub const MAX_REDIRECTS: usize = 5;

/// Authorizations remembered at most; the oldest half is dropped when full.
const AUTH_CACHE_ENTRIES: usize = 1024;

/// How long a Basic authorization that worked is reused before being renegotiated.
const BASIC_AUTH_TTL: Duration = Duration::from_secs(300);

/// A bearer token's lifetime when the token endpoint does not say (the distribution spec's).
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(60);

struct CachedAuth {
    header: String,
    expires: Instant,
}

/// A registry client. Credentials are looked up by the image's registry host; an
/// `Authorization` that worked is remembered per registry *and* repository and only ever sent
/// to that registry's own origin (a redirect elsewhere, e.g. to blob storage, goes without it).
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    credentials: Arc<Credentials>,
    insecure: Arc<Vec<String>>,
    limits: RegistryLimits,
    auth: Arc<Mutex<HashMap<(String, String), CachedAuth>>>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("credentials", &self.credentials)
            .field("insecure", &self.insecure)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Whether `host` (with an optional `:port`) is a loopback address: an IP address in
/// 127.0.0.0/8 or `::1`, or exactly `localhost`. Parsed, never matched by prefix, so
/// `127.evil.example` is not loopback.
pub fn is_loopback_host(host: &str) -> bool {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, port)) if port.is_empty() || is_port(port) => inside,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            _ => host,
        }
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_port(suffix: &str) -> bool {
    suffix
        .strip_prefix(':')
        .unwrap_or(suffix)
        .parse::<u16>()
        .is_ok()
}

fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        _ => String::new(),
    }
}

impl RegistryClient {
    /// A client with `credentials` and the default limits. Registries named exactly in
    /// `insecure` (host or host:port), and loopback addresses, are spoken to over plain HTTP;
    /// every other registry over HTTPS.
    pub fn new(credentials: Credentials, insecure: Vec<String>) -> Result<Self, RegistryError> {
        Self::with_limits(credentials, insecure, RegistryLimits::default())
    }

    /// A client with explicit limits.
    pub fn with_limits(
        credentials: Credentials,
        insecure: Vec<String>,
        limits: RegistryLimits,
    ) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("stellaops/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(limits.connect_timeout)
            .read_timeout(limits.stall_timeout)
            // Redirects are followed by hand so credentials never leave the registry's origin.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(RegistryClient {
            http,
            credentials: Arc::new(credentials),
            insecure: Arc::new(insecure),
            limits,
            auth: Default::default(),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &RegistryLimits {
        &self.limits
    }

    /// Whether `host` (host or host:port) is spoken to over plain HTTP.
    pub fn is_plain_http(&self, host: &str) -> bool {
        is_loopback_host(host) || self.insecure.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    fn base_url(&self, image: &ImageReference) -> String {
        let host = image.api_host();
        let scheme = if self.is_plain_http(host) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    }

    fn transport_error(
        &self,
        image: &ImageReference,
        error: reqwest::Error,
        budget: Duration,
    ) -> RegistryError {
        if error.is_timeout() {
            RegistryError::Timeout {
                registry: image.registry.clone(),
                seconds: budget.as_secs_f64(),
            }
        } else {
            RegistryError::Http(error)
        }
    }

    fn cached_auth(&self, key: &(String, String)) -> Option<String> {
        let cache = self.auth.lock().expect("auth cache lock");
        cache
            .get(key)
            .filter(|c| c.expires > Instant::now())
            .map(|c| c.header.clone())
    }

    fn remember_auth(&self, key: (String, String), header: String, ttl: Duration) {
        let mut cache = self.auth.lock().expect("auth cache lock");
        if cache.len() >= AUTH_CACHE_ENTRIES {
            let now = Instant::now();
            cache.retain(|_, c| c.expires > now);
            if cache.len() >= AUTH_CACHE_ENTRIES {
                let mut by_expiry: Vec<Instant> = cache.values().map(|c| c.expires).collect();
                by_expiry.sort();
                let cut = by_expiry[by_expiry.len() / 2];
                cache.retain(|_, c| c.expires > cut);
            }
        }
        cache.insert(
            key,
            CachedAuth {
                header,
                expires: Instant::now() + ttl,
            },
        );
    }

    /// GET `url` following redirects by hand within `budget`: `authorization` goes only to
    /// the registry's own origin, HTTPS is never downgraded to HTTP.
    async fn send(
        &self,
        image: &ImageReference,
        url: &str,
        accept: Option<&str>,
        authorization: Option<&str>,
        budget: Duration,
    ) -> Result<reqwest::Response, RegistryError> {
        let deadline = Instant::now() + budget;
        let origin = Url::parse(&self.base_url(image))
            .map_err(|e| RegistryError::Protocol(format!("registry {}: {e}", image.registry)))?
            .origin();
        let mut url = Url::parse(url)
            .map_err(|e| RegistryError::Protocol(format!("bad registry URL {url}: {e}")))?;
        for _ in 0..=MAX_REDIRECTS {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(RegistryError::Timeout {
                    registry: image.registry.clone(),
                    seconds: budget.as_secs_f64(),
                });
            }
            let mut request = self.http.get(url.clone()).timeout(remaining);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(authorization) = authorization
                && url.origin() == origin
            {
                request = request.header(AUTHORIZATION, authorization);
            }
            let response = request
                .send()
                .await
                .map_err(|e| self.transport_error(image, e, budget))?;
            let status = response.status();
            if !matches!(
                status,
                StatusCode::MOVED_PERMANENTLY
                    | StatusCode::FOUND
                    | StatusCode::SEE_OTHER
                    | StatusCode::TEMPORARY_REDIRECT
                    | StatusCode::PERMANENT_REDIRECT
            ) {
                return Ok(response);
            }
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    RegistryError::Protocol(format!(
                        "registry {} redirected ({status}) without a Location",
                        image.registry
                    ))
                })?;
            let next = url.join(location).map_err(|e| {
                RegistryError::Protocol(format!(
                    "registry {} redirected to an invalid location: {e}",
                    image.registry
                ))
            })?;
            match (url.scheme(), next.scheme()) {
                ("https", "https") | ("http", "http" | "https") => {}
                (_, scheme) => {
                    return Err(RegistryError::Protocol(format!(
                        "registry {} redirected from {} to a {scheme} URL on {}; refused",
                        image.registry,
                        url.scheme(),
                        host_of(&next)
                    )));
                }
            }
            url = next;
        }
        Err(RegistryError::Protocol(format!(
            "registry {} redirected more than {MAX_REDIRECTS} times",
            image.registry
        )))
    }

    /// The `Authorization` a challenge asks for, and how long it may be reused.
    async fn authorization(
        &self,
        image: &ImageReference,
        headers: &HeaderMap,
    ) -> Result<Option<(String, Duration)>, RegistryError> {
        let Some(challenge) = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
        else {
            return Ok(None);
        };
        let creds = self.credentials.for_registry(&image.registry);
        match challenge {
            Challenge::Basic => Ok(creds.map(|(u, p)| {
                (
                    format!("Basic {}", STANDARD.encode(format!("{u}:{p}"))),
                    BASIC_AUTH_TTL,
                )
            })),
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let realm_url = Url::parse(&realm).map_err(|e| {
                    RegistryError::Protocol(format!(
                        "registry {} named an invalid token realm: {e}",
                        image.registry
                    ))
                })?;
                // The registry's password goes to the realm it names, but never in clear
                // text to a host we were not told to speak plain HTTP to.
                let realm_host = host_of(&realm_url);
                match realm_url.scheme() {
                    "https" => {}
                    "http" if self.is_plain_http(&realm_host) => {}
                    _ => {
                        return Err(RegistryError::Protocol(format!(
                            "registry {} named a token realm over {} on {realm_host}; refused",
                            image.registry,
                            realm_url.scheme()
                        )));
                    }
                }
                let scope =
                    scope.unwrap_or_else(|| format!("repository:{}:pull", image.repository));
                let mut request = self
                    .http
                    .get(realm_url)
                    .query(&[("scope", scope.as_str())])
                    .timeout(self.limits.request_timeout);
                if let Some(service) = &service {
                    request = request.query(&[("service", service.as_str())]);
                }
                if let Some((user, pass)) = creds {
                    request = request.basic_auth(user, Some(pass));
                }
                let response = request
                    .send()
                    .await
                    .map_err(|e| self.transport_error(image, e, self.limits.request_timeout))?;
                if !response.status().is_success() {
                    return Err(RegistryError::Unauthorized {
                        registry: image.registry.clone(),
                        repository: image.repository.clone(),
                        status: response.status().as_u16(),
                    });
                }
                let bytes = self
                    .read_capped(
                        image,
                        response,
                        self.limits.max_token_bytes,
                        "token answer",
                        self.limits.request_timeout,
                    )
                    .await?;
                let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                    RegistryError::Protocol(format!(
                        "token answer for {} is not JSON: {e}",
                        image.registry
                    ))
                })?;
                let ttl = body
                    .get("expires_in")
                    .and_then(|t| t.as_u64())
                    .map(|s| Duration::from_secs(s.saturating_mul(9) / 10))
                    .unwrap_or(DEFAULT_TOKEN_TTL);
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|t| t.as_str());
                Ok(token.map(|t| (format!("Bearer {t}"), ttl)))
            }
        }
    }

    /// Read a whole body, refusing more than `limit` bytes (before reading when the length
    /// is announced, and while reading when it is not).
    async fn read_capped(
        &self,
        image: &ImageReference,
        mut response: reqwest::Response,
        limit: u64,
        what: &str,
        budget: Duration,
    ) -> Result<Vec<u8>, RegistryError> {
        let too_large = || RegistryError::TooLarge {
            registry: image.registry.clone(),
            what: what.to_string(),
            limit,
        };
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(image, e, budget))?
        {
            if bytes.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// GET `url` of `image`'s repository within `budget`, authenticating when challenged and
    /// reusing an authorization that worked for this registry and repository. `name` is
    /// what a 404 reports as missing.
    async fn get(
        &self,
        image: &ImageReference,
        url: &str,
        accept: Option<&str>,
        budget: Duration,
        name: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let key = (image.registry.clone(), image.repository.clone());
        let cached = self.cached_auth(&key);
        let mut response = self
            .send(image, url, accept, cached.as_deref(), budget)
            .await?;
        if response.status() == StatusCode::UNAUTHORIZED
            && let Some((auth, ttl)) = self.authorization(image, response.headers()).await?
        {
            response = self.send(image, url, accept, Some(&auth), budget).await?;
            if response.status().is_success() {
                self.remember_auth(key, auth, ttl);
            }
        }
        match response.status() {
            s if s.is_success() => Ok(response),
            StatusCode::NOT_FOUND => Err(RegistryError::NotFound(name.to_string())),
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                Err(RegistryError::Unauthorized {
                    registry: image.registry.clone(),
                    repository: image.repository.clone(),
                    status: s.as_u16(),
                })
            }
            s => Err(RegistryError::Protocol(format!("GET {url}: HTTP {s}"))),
        }
    }

    /// Fetch the manifest (or index) `image` names, authenticating when challenged, and
    /// verify its digest (against the reference when it is a digest, and against the
    /// registry's `Docker-Content-Digest`). At most `max_manifest_bytes`, within
    /// `request_timeout`.
    pub async fn fetch_manifest(&self, image: &ImageReference) -> Result<Manifest, RegistryError> {
        let reference = match &image.reference {
            Reference::Tag(tag) => tag.clone(),
            Reference::Digest(digest) => digest.clone(),
        };
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base_url(image),
            image.repository
        );
        let accept = MANIFEST_MEDIA_TYPES.join(", ");
        let budget = self.limits.request_timeout;
        let response = self
            .get(image, &url, Some(&accept), budget, &image.to_string())
            .await?;
        let media_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let served_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = self
            .read_capped(
                image,
                response,
                self.limits.max_manifest_bytes,
                "manifest",
                budget,
            )
            .await?;
        let digest = sha256_digest(&bytes);
        let expected = match &image.reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(_) => served_digest,
        };
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(RegistryError::DigestMismatch {
                reference: image.to_string(),
                expected,
                actual: digest,
            });
        }
        Ok(Manifest {
            media_type,
            digest,
            bytes,
        })
    }

    /// A small blob (an image config, a signature payload) in memory, at most
    /// `max_config_bytes`, verified against its digest.
    pub async fn fetch_blob(
        &self,
        image: &ImageReference,
        digest: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let url = format!(
            "{}/v2/{}/blobs/{digest}",
            self.base_url(image),
            image.repository
        );
        let budget = self.limits.request_timeout;
        let response = self.get(image, &url, None, budget, &url).await?;
        let bytes = self
            .read_capped(
                image,
                response,
                self.limits.max_config_bytes,
                "blob",
                budget,
            )
            .await?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                reference: format!("{image} blob"),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Stream a blob of the `size` its descriptor declares into `file` without holding it
    /// in memory, stopping at the first byte past `size`, and verify its digest; returns
    /// its size. A failure leaves nothing usable (the caller drops the file).
    pub async fn download_blob(
        &self,
        image: &ImageReference,
        digest: &str,
        size: u64,
        file: &std::path::Path,
    ) -> Result<u64, RegistryError> {
        use tokio::io::AsyncWriteExt;
        let url = format!(
            "{}/v2/{}/blobs/{digest}",
            self.base_url(image),
            image.repository
        );
        let budget = self.limits.blob_timeout;
        let mut response = self.get(image, &url, None, budget, &url).await?;
        let too_large = || RegistryError::TooLarge {
            registry: image.registry.clone(),
            what: format!("blob {digest} (its descriptor says)"),
            limit: size,
        };
        if response.content_length().is_some_and(|len| len > size) {
            return Err(too_large());
        }
        let write_error =
            |e: std::io::Error| RegistryError::Protocol(format!("writing {}: {e}", file.display()));
        let mut out = tokio::fs::File::create(file).await.map_err(write_error)?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(image, e, budget))?
        {
            written = written
                .checked_add(chunk.len() as u64)
                .filter(|&n| n <= size)
                .ok_or_else(too_large)?;
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(write_error)?;
        }
        out.flush().await.map_err(write_error)?;
        if written != size {
            return Err(RegistryError::Protocol(format!(
                "blob {digest} from {} ended after {written} of the {size} bytes its descriptor declares",
                image.registry
            )));
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                reference: format!("{image} layer"),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(written)
    }
}
