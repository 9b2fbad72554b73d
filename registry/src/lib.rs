//! A small OCI distribution client: image references, manifest fetches with the OCI and
//! Docker media types, bearer-token and basic auth from a dockerconfigjson, and digest
//! verification of everything it returns.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};
use sha2::{Digest as _, Sha256};

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

/// Credentials per registry, as in a `kubernetes.io/dockerconfigjson` Secret.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    by_registry: HashMap<String, (String, String)>,
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

    fn for_registry(&self, registry: &str) -> Option<&(String, String)> {
        self.by_registry.get(registry)
    }
}

/// A registry client.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    credentials: Credentials,
    plain_http: Vec<String>,
    /// The last Authorization that worked, reused for the next requests (blobs).
    auth: std::sync::Arc<std::sync::Mutex<Option<String>>>,
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

impl RegistryClient {
    /// A client with `credentials`. Registries in `plain_http` (and any on localhost or
    /// 127.0.0.0/8, as Docker does) are spoken to over plain HTTP.
    pub fn new(credentials: Credentials, plain_http: Vec<String>) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("stellaops-worker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(RegistryClient {
            http,
            credentials,
            plain_http,
            auth: Default::default(),
        })
    }

    fn base_url(&self, image: &ImageReference) -> String {
        let host = image.api_host();
        let plain = host.starts_with("localhost")
            || host.starts_with("127.")
            || self.plain_http.iter().any(|h| h == host);
        format!("{}://{host}", if plain { "http" } else { "https" })
    }

    async fn authorization(
        &self,
        image: &ImageReference,
        headers: &HeaderMap,
    ) -> Result<Option<String>, RegistryError> {
        let Some(challenge) = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
        else {
            return Ok(None);
        };
        let creds = self.credentials.for_registry(&image.registry);
        match challenge {
            Challenge::Basic => {
                Ok(creds.map(|(u, p)| format!("Basic {}", STANDARD.encode(format!("{u}:{p}")))))
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scope =
                    scope.unwrap_or_else(|| format!("repository:{}:pull", image.repository));
                let mut request = self.http.get(&realm).query(&[("scope", scope.as_str())]);
                if let Some(service) = &service {
                    request = request.query(&[("service", service.as_str())]);
                }
                if let Some((user, pass)) = creds {
                    request = request.basic_auth(user, Some(pass));
                }
                let response = request.send().await?;
                if !response.status().is_success() {
                    return Err(RegistryError::Unauthorized {
                        registry: image.registry.clone(),
                        repository: image.repository.clone(),
                        status: response.status().as_u16(),
                    });
                }
                let body: serde_json::Value = response.json().await?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|t| t.as_str());
                Ok(token.map(|t| format!("Bearer {t}")))
            }
        }
    }

    /// Fetch the manifest (or index) `image` names, authenticating when challenged, and
    /// verify its digest (against the reference when it is a digest, and against the
    /// registry's `Docker-Content-Digest`).
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
        let mut response = self.http.get(&url).header(ACCEPT, &accept).send().await?;
        if response.status() == StatusCode::UNAUTHORIZED
            && let Some(auth) = self.authorization(image, response.headers()).await?
        {
            response = self
                .http
                .get(&url)
                .header(ACCEPT, &accept)
                .header(AUTHORIZATION, auth)
                .send()
                .await?;
        }
        match response.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Err(RegistryError::NotFound(image.to_string())),
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                return Err(RegistryError::Unauthorized {
                    registry: image.registry.clone(),
                    repository: image.repository.clone(),
                    status: s.as_u16(),
                });
            }
            s => return Err(RegistryError::Protocol(format!("GET {url}: HTTP {s}"))),
        }
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
        let bytes = response.bytes().await?.to_vec();
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

    /// GET `url` of `image`'s repository, authenticating when challenged (and reusing
    /// the credentials that worked).
    async fn get(
        &self,
        image: &ImageReference,
        url: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let cached = self.auth.lock().expect("lock").clone();
        let mut request = self.http.get(url);
        if let Some(auth) = &cached {
            request = request.header(AUTHORIZATION, auth);
        }
        let mut response = request.send().await?;
        if response.status() == StatusCode::UNAUTHORIZED
            && let Some(auth) = self.authorization(image, response.headers()).await?
        {
            response = self
                .http
                .get(url)
                .header(AUTHORIZATION, &auth)
                .send()
                .await?;
            if response.status().is_success() {
                *self.auth.lock().expect("lock") = Some(auth);
            }
        }
        match response.status() {
            s if s.is_success() => Ok(response),
            StatusCode::NOT_FOUND => Err(RegistryError::NotFound(url.to_string())),
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

    /// A small blob (an image config) in memory, verified against its digest.
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
        let bytes = self.get(image, &url).await?.bytes().await?.to_vec();
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

    /// Stream a blob into `file` without holding it in memory, verifying its digest;
    /// returns its size. A mismatch leaves nothing usable (the caller drops the file).
    pub async fn download_blob(
        &self,
        image: &ImageReference,
        digest: &str,
        file: &std::path::Path,
    ) -> Result<u64, RegistryError> {
        use tokio::io::AsyncWriteExt;
        let url = format!(
            "{}/v2/{}/blobs/{digest}",
            self.base_url(image),
            image.repository
        );
        let mut response = self.get(image, &url).await?;
        let mut out = tokio::fs::File::create(file)
            .await
            .map_err(|e| RegistryError::Protocol(format!("writing {}: {e}", file.display())))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = response.chunk().await? {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            out.write_all(&chunk)
                .await
                .map_err(|e| RegistryError::Protocol(format!("writing {}: {e}", file.display())))?;
        }
        out.flush()
            .await
            .map_err(|e| RegistryError::Protocol(format!("writing {}: {e}", file.display())))?;
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                reference: format!("{image} layer"),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(size)
    }
}
