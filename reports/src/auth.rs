//! Authentication as an extension API server does it (delegated to the cluster): the
//! `extension-apiserver-authentication` ConfigMap in `kube-system` says which CA signs the
//! front proxy's client certificate (the API server forwarding requests), which names that
//! certificate may carry, and which headers carry the user, groups and extra; a client
//! certificate from the cluster's client CA authenticates its subject directly (CN the
//! user, O the groups). Everything else is unauthenticated (401).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use crate::status::ApiError;

/// Namespace and name of the ConfigMap the cluster publishes for extension API servers.
pub const AUTHENTICATION_CONFIGMAP: (&str, &str) =
    ("kube-system", "extension-apiserver-authentication");

/// What the ConfigMap says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// PEM of the CAs that sign the front proxy's client certificate.
    pub requestheader_ca_pem: String,
    /// Common names the front proxy's certificate may have (empty: any it signs).
    pub allowed_names: Vec<String>,
    /// Headers with the user name (the first present wins).
    pub username_headers: Vec<String>,
    /// Headers with the user's UID.
    pub uid_headers: Vec<String>,
    /// Headers with groups (every value of each).
    pub group_headers: Vec<String>,
    /// Prefixes of headers with extra attributes (`X-Remote-Extra-Scopes: a`).
    pub extra_prefixes: Vec<String>,
    /// PEM of the CAs that sign users' own client certificates.
    pub client_ca_pem: String,
}

fn json_list(data: &BTreeMap<String, String>, key: &str) -> Result<Vec<String>, String> {
    match data.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(text).map_err(|e| format!("{key}: {e}")),
    }
}

impl AuthConfig {
    /// From the ConfigMap's `data`.
    pub fn from_config_map(data: &BTreeMap<String, String>) -> Result<AuthConfig, String> {
        Ok(AuthConfig {
            requestheader_ca_pem: data
                .get("requestheader-client-ca-file")
                .cloned()
                .unwrap_or_default(),
            allowed_names: json_list(data, "requestheader-allowed-names")?,
            username_headers: json_list(data, "requestheader-username-headers")?,
            uid_headers: json_list(data, "requestheader-uid-headers")?,
            group_headers: json_list(data, "requestheader-group-headers")?,
            extra_prefixes: json_list(data, "requestheader-extra-headers-prefix")?,
            client_ca_pem: data.get("client-ca-file").cloned().unwrap_or_default(),
        })
    }
}

/// Who makes a request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct User {
    /// User name.
    pub name: String,
    /// UID, when the front proxy sends one.
    pub uid: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes (lower-case keys).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What the TLS handshake established about the client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Peer {
    /// No certificate, or none this server trusts for anything.
    #[default]
    Anonymous,
    /// The front proxy (its certificate's common name): the user is in the headers.
    FrontProxy(String),
    /// A user by their own certificate.
    User(User),
}

#[derive(Debug)]
struct Trust {
    config: AuthConfig,
    requestheader: Option<Arc<dyn ClientCertVerifier>>,
    client: Option<Arc<dyn ClientCertVerifier>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn verifier(pem: &str, what: &str) -> Result<Option<Arc<dyn ClientCertVerifier>>, String> {
    if pem.trim().is_empty() {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("{what}: not a PEM certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{what}: not a usable CA: {e}"))?;
    }
    if roots.is_empty() {
        return Ok(None);
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map(Some)
        .map_err(|e| format!("{what}: {e}"))
}

/// Subject common name and organizations of a DER certificate.
pub fn subject(cert: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let subject = parsed.subject();
    let cn = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let orgs = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some((cn, orgs))
}

/// The authenticator: its trust replaced whenever the ConfigMap changes.
#[derive(Debug)]
pub struct Authenticator {
    trust: RwLock<Arc<Trust>>,
}

impl Default for Authenticator {
    fn default() -> Self {
        Authenticator {
            trust: RwLock::new(Arc::new(Trust {
                config: AuthConfig::default(),
                requestheader: None,
                client: None,
            })),
        }
    }
}

impl Authenticator {
    /// An authenticator trusting `config`.
    pub fn new(config: AuthConfig) -> Result<Authenticator, String> {
        let authenticator = Authenticator::default();
        authenticator.set(config)?;
        Ok(authenticator)
    }

    /// Trust `config` from the next handshake on (a broken one leaves the old in place).
    pub fn set(&self, config: AuthConfig) -> Result<(), String> {
        let trust = Trust {
            requestheader: verifier(&config.requestheader_ca_pem, "requestheader-client-ca-file")?,
            client: verifier(&config.client_ca_pem, "client-ca-file")?,
            config,
        };
        *self.trust.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(trust);
        Ok(())
    }

    /// Whether any CA is loaded (before that, every request is 401).
    pub fn is_loaded(&self) -> bool {
        let trust = self.current();
        trust.requestheader.is_some() || trust.client.is_some()
    }

    fn current(&self) -> Arc<Trust> {
        self.trust.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What a handshake's verified chain (`certs`, leaf first) makes of the client.
    pub fn classify(&self, certs: Option<&[CertificateDer<'_>]>) -> Peer {
        let Some((leaf, intermediates)) = certs.and_then(|c| c.split_first()) else {
            return Peer::Anonymous;
        };
        let trust = self.current();
        let now = UnixTime::now();
        let verifies = |v: &Option<Arc<dyn ClientCertVerifier>>| {
            v.as_ref()
                .is_some_and(|v| v.verify_client_cert(leaf, intermediates, now).is_ok())
        };
        let Some((cn, orgs)) = subject(leaf) else {
            return Peer::Anonymous;
        };
        if verifies(&trust.requestheader)
            && (trust.config.allowed_names.is_empty() || trust.config.allowed_names.contains(&cn))
        {
            return Peer::FrontProxy(cn);
        }
        if verifies(&trust.client) {
            let mut groups = orgs;
            push_authenticated(&mut groups);
            return Peer::User(User {
                name: cn,
                uid: None,
                groups,
                extra: BTreeMap::new(),
            });
        }
        Peer::Anonymous
    }

    /// The user of a request from `peer` with `headers`.
    pub fn authenticate(&self, peer: &Peer, headers: &http::HeaderMap) -> Result<User, ApiError> {
        match peer {
            Peer::Anonymous => Err(ApiError::unauthorized()),
            Peer::User(user) => Ok(user.clone()),
            Peer::FrontProxy(_) => {
                let trust = self.current();
                user_from_headers(&trust.config, headers).ok_or_else(ApiError::unauthorized)
            }
        }
    }

    /// The TLS verifier: a client certificate must chain to the request-header CA or the
    /// client CA; clients without one get through the handshake (and a 401).
    pub fn tls_verifier(self: &Arc<Self>) -> Arc<dyn ClientCertVerifier> {
        Arc::new(DelegatedVerifier {
            authenticator: self.clone(),
            provider: provider(),
        })
    }
}

fn push_authenticated(groups: &mut Vec<String>) {
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
}

fn values<'a>(headers: &'a http::HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The user the front proxy names in `headers`, when it names one.
pub fn user_from_headers(config: &AuthConfig, headers: &http::HeaderMap) -> Option<User> {
    let name = config
        .username_headers
        .iter()
        .find_map(|h| values(headers, h).next())?
        .to_string();
    let uid = config
        .uid_headers
        .iter()
        .find_map(|h| values(headers, h).next())
        .map(str::to_string);
    let mut groups: Vec<String> = config
        .group_headers
        .iter()
        .flat_map(|h| values(headers, h))
        .map(str::to_string)
        .collect();
    push_authenticated(&mut groups);
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Extra keys are percent-encoded in header names (`X-Remote-Extra-Example.com%2fkey`).
    for (header, value) in headers {
        let header = header.as_str();
        for prefix in &config.extra_prefixes {
            let prefix = prefix.to_ascii_lowercase();
            if let Some(key) = header.strip_prefix(prefix.as_str())
                && !key.is_empty()
                && let Ok(value) = value.to_str()
            {
                extra
                    .entry(crate::kinds::percent_decode(key).to_ascii_lowercase())
                    .or_default()
                    .push(value.to_string());
            }
        }
    }
    Some(User {
        name,
        uid,
        groups,
        extra,
    })
}

#[derive(Debug)]
struct DelegatedVerifier {
    authenticator: Arc<Authenticator>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for DelegatedVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let trust = self.authenticator.current();
        let mut last = rustls::Error::General("no client CA is configured".into());
        for verifier in [&trust.requestheader, &trust.client].into_iter().flatten() {
            match verifier.verify_client_cert(end_entity, intermediates, now) {
                Ok(verified) => return Ok(verified),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The server's TLS configuration: `certificate` served, client certificates checked by
/// `authenticator`.
pub fn server_config(
    certificate: Arc<stellaops_tls::ReloadableCert>,
    authenticator: &Arc<Authenticator>,
) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_client_cert_verifier(authenticator.tls_verifier())
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuthConfig {
        AuthConfig::from_config_map(&BTreeMap::from([
            (
                "requestheader-username-headers".to_string(),
                r#"["X-Remote-User"]"#.to_string(),
            ),
            (
                "requestheader-group-headers".into(),
                r#"["X-Remote-Group"]"#.into(),
            ),
            (
                "requestheader-extra-headers-prefix".into(),
                r#"["X-Remote-Extra-"]"#.into(),
            ),
            (
                "requestheader-allowed-names".into(),
                r#"["front-proxy-client"]"#.into(),
            ),
        ]))
        .unwrap()
    }

    #[test]
    fn the_front_proxy_names_user_groups_and_extra_in_headers() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-remote-user", "alice".parse().unwrap());
        headers.append("x-remote-group", "team-a".parse().unwrap());
        headers.append("x-remote-group", "devs".parse().unwrap());
        headers.append("x-remote-extra-scopes", "view".parse().unwrap());
        headers.append("x-remote-extra-example.org%2fteam", "red".parse().unwrap());
        let user = user_from_headers(&config(), &headers).unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, ["team-a", "devs", "system:authenticated"]);
        assert_eq!(user.extra["scopes"], ["view"]);
        assert_eq!(user.extra["example.org/team"], ["red"]);
        assert_eq!(config().allowed_names, ["front-proxy-client"]);
    }

    #[test]
    fn no_user_header_is_no_user_and_anonymous_is_401() {
        assert_eq!(user_from_headers(&config(), &http::HeaderMap::new()), None);
        let authenticator = Authenticator::default();
        assert!(!authenticator.is_loaded());
        let err = authenticator
            .authenticate(&Peer::Anonymous, &http::HeaderMap::new())
            .unwrap_err();
        assert_eq!(err.code, 401);
        assert!(
            AuthConfig::from_config_map(&BTreeMap::from([(
                "requestheader-allowed-names".to_string(),
                "not json".to_string()
            )]))
            .is_err()
        );
    }
}
