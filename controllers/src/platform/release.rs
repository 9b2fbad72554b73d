//! The signed release manifest (`release.yaml`, release-and-operations-architecture §6.1):
//! signature check, parsing, and the rules every release must meet before anything runs.
//!
//! The signature is what `cosign sign-blob --key cosign.key release.yaml` prints: base64
//! of an ASN.1 DER ECDSA P-256 signature over the SHA-256 of the file's bytes, checked
//! with the PEM public key (`cosign.pub`). It is checked before the file is even parsed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{DerSignature, Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A verified, parsed release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// `MAJOR.MINOR.PATCH`.
    pub version: String,
    /// `lts`, `stable` or `edge`.
    pub channel: String,
    /// Release date, as written.
    pub date: Option<String>,
    /// Calendar tag (`2027.06`).
    pub calendar: Option<String>,
    /// Components in rollout order (see [`rollout_rank`]).
    pub components: Vec<ReleaseComponent>,
    /// Expand/contract migrations, when the release has any.
    pub migrations: Option<Migrations>,
    /// `sha256:<hex>` of the manifest file.
    pub digest: String,
}

/// One component of a release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseComponent {
    /// Component name; also the name of its Deployment.
    pub name: String,
    /// Image by digest.
    pub image: String,
}

/// The release's database migrations (a `migrations` entry; an extension of the seed's
/// format, documented in docs/platform.md).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Migrations {
    /// Image by digest that runs them.
    pub image: String,
    /// Arguments of the expand phase (run before any component changes).
    #[serde(default)]
    pub expand: Vec<String>,
    /// Arguments of the contract phase (run after every component is healthy).
    #[serde(default)]
    pub contract: Vec<String>,
}

/// Why a release manifest is refused. Each maps to a `ReleaseVerified=False` reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// The manifest's source has no signature next to it.
    #[error(
        "release.yaml has no signature ({0}); sign it with `cosign sign-blob --key cosign.key release.yaml`"
    )]
    Unsigned(String),
    /// The signature is not base64 of a DER (or raw r||s) ECDSA signature.
    #[error("the release signature is not a base64 ECDSA signature")]
    BadSignatureEncoding,
    /// The signature does not match the file and key.
    #[error(
        "the release signature does not match release.yaml and the release key: the file was changed or signed by another key"
    )]
    SignatureMismatch,
    /// The public key is not usable.
    #[error("the release public key is not a PEM ECDSA P-256 key")]
    BadKey,
    /// Something needed to verify is missing (ConfigMap, Secret, key).
    #[error("{0}")]
    Missing(String),
    /// Not the seed's shape.
    #[error("release.yaml is not a valid release manifest: {0}")]
    Malformed(String),
    /// An image by tag.
    #[error("component {component} image {image:?} is not pinned by digest (`@sha256:<64 hex>`)")]
    NotByDigest {
        /// Component.
        component: String,
        /// Its image.
        image: String,
    },
    /// The manifest describes another release.
    #[error("release.yaml is version {manifest} but spec.version is {spec}")]
    VersionMismatch {
        /// In the manifest.
        manifest: String,
        /// In the spec.
        spec: String,
    },
    /// The manifest belongs to another channel.
    #[error("release.yaml is from channel {manifest} but spec.channel is {spec}")]
    ChannelMismatch {
        /// In the manifest.
        manifest: String,
        /// In the spec.
        spec: String,
    },
}

impl ReleaseError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ReleaseError::Unsigned(_) => "Unsigned",
            ReleaseError::BadSignatureEncoding | ReleaseError::SignatureMismatch => {
                "SignatureMismatch"
            }
            ReleaseError::BadKey => "BadPublicKey",
            ReleaseError::Missing(_) => "ManifestUnavailable",
            ReleaseError::Malformed(_) => "MalformedManifest",
            ReleaseError::NotByDigest { .. } => "ImageNotByDigest",
            ReleaseError::VersionMismatch { .. } => "VersionMismatch",
            ReleaseError::ChannelMismatch { .. } => "ChannelMismatch",
        }
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Check a cosign `sign-blob` signature of `manifest`.
pub fn verify_signature(
    manifest: &[u8],
    signature_b64: &str,
    public_key_pem: &str,
) -> Result<(), ReleaseError> {
    let key = VerifyingKey::from_public_key_pem(public_key_pem.trim())
        .map_err(|_| ReleaseError::BadKey)?;
    let raw = STANDARD
        .decode(signature_b64.trim())
        .map_err(|_| ReleaseError::BadSignatureEncoding)?;
    // cosign writes DER; a raw 64-byte r||s is accepted as well.
    let signature = match DerSignature::from_bytes(&raw) {
        Ok(der) => Signature::from_der(der.as_bytes()),
        Err(_) => Signature::from_slice(&raw),
    }
    .map_err(|_| ReleaseError::BadSignatureEncoding)?;
    key.verify(manifest, &signature)
        .map_err(|_| ReleaseError::SignatureMismatch)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestFile {
    release: ReleaseSection,
    /// Some manifests put the lists beside `release:` instead of inside it.
    #[serde(default)]
    components: Option<Vec<ComponentEntry>>,
    #[serde(default)]
    migrations: Option<Migrations>,
}

#[derive(Deserialize)]
struct ReleaseSection {
    version: String,
    channel: String,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    calendar: Option<String>,
    #[serde(default)]
    components: Option<Vec<ComponentEntry>>,
    #[serde(default)]
    migrations: Option<Migrations>,
}

#[derive(Deserialize)]
struct ComponentEntry {
    name: String,
    image: String,
}

/// Whether `image` is pinned: `<name>@sha256:<64 lowercase hex>`.
pub fn is_by_digest(image: &str) -> bool {
    let Some((name, digest)) = image.rsplit_once('@') else {
        return false;
    };
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return false;
    };
    !name.is_empty()
        && hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where a component goes in the seed's upgrade order (§5.2): Authority, then Signer and
/// Attestor, then the Scanner web service and workers, then Concelier, then Excititor,
/// components the seed does not name, and the UI last.
pub fn rollout_rank(component: &str) -> u8 {
    match component {
        "authority" => 0,
        "signer" => 1,
        "attestor" => 2,
        "scanner-webservice" | "scanner-web" => 3,
        "scanner-worker" => 4,
        "concelier" => 5,
        "excititor" => 6,
        "web-ui" | "ui" => 8,
        _ => 7,
    }
}

/// Parse a manifest whose signature was already checked; `digest` names the file.
pub fn parse(manifest: &[u8]) -> Result<Release, ReleaseError> {
    let file: ManifestFile =
        serde_yaml::from_slice(manifest).map_err(|e| ReleaseError::Malformed(e.to_string()))?;
    let entries = file
        .release
        .components
        .or(file.components)
        .unwrap_or_default();
    if entries.is_empty() {
        return Err(ReleaseError::Malformed("it lists no components".into()));
    }
    if parse_version(&file.release.version).is_none() {
        return Err(ReleaseError::Malformed(format!(
            "release.version {:?} is not MAJOR.MINOR.PATCH",
            file.release.version
        )));
    }
    let mut components: Vec<ReleaseComponent> = Vec::with_capacity(entries.len());
    for entry in entries {
        if !is_dns_label(&entry.name) {
            return Err(ReleaseError::Malformed(format!(
                "component name {:?} is not a Deployment name (lowercase letters, digits, '-')",
                entry.name
            )));
        }
        if components.iter().any(|c| c.name == entry.name) {
            return Err(ReleaseError::Malformed(format!(
                "component {} is listed twice",
                entry.name
            )));
        }
        if !is_by_digest(&entry.image) {
            return Err(ReleaseError::NotByDigest {
                component: entry.name,
                image: entry.image,
            });
        }
        components.push(ReleaseComponent {
            name: entry.name,
            image: entry.image,
        });
    }
    components.sort_by_key(|c| rollout_rank(&c.name));
    let migrations = file.release.migrations.or(file.migrations);
    if let Some(m) = &migrations
        && !is_by_digest(&m.image)
    {
        return Err(ReleaseError::NotByDigest {
            component: "migrations".into(),
            image: m.image.clone(),
        });
    }
    Ok(Release {
        version: file.release.version,
        channel: file.release.channel,
        date: file.release.date,
        calendar: file.release.calendar,
        components,
        migrations,
        digest: digest(manifest),
    })
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Verify, then parse, then hold the release to the spec's version and channel.
pub fn verify_and_parse(
    manifest: &[u8],
    signature_b64: &str,
    public_key_pem: &str,
    spec_version: &str,
    spec_channel: &str,
) -> Result<Release, ReleaseError> {
    verify_signature(manifest, signature_b64, public_key_pem)?;
    let release = parse(manifest)?;
    if release.version != spec_version {
        return Err(ReleaseError::VersionMismatch {
            manifest: release.version,
            spec: spec_version.to_string(),
        });
    }
    if release.channel != spec_channel {
        return Err(ReleaseError::ChannelMismatch {
            manifest: release.channel,
            spec: spec_channel.to_string(),
        });
    }
    Ok(release)
}

/// `MAJOR.MINOR.PATCH` as numbers.
pub fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    let v = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_versions_and_ranks() {
        let d = format!(
            "registry.stella-ops.org/stellaops/signer@sha256:{}",
            "a".repeat(64)
        );
        assert!(is_by_digest(&d));
        assert!(!is_by_digest(
            "registry.stella-ops.org/stellaops/signer:2.4.1"
        ));
        assert!(!is_by_digest(&format!("x@sha256:{}", "A".repeat(64))));
        assert!(!is_by_digest("x@sha256:aa..bb"));
        assert_eq!(parse_version("2.4.1"), Some((2, 4, 1)));
        assert_eq!(parse_version("2.4"), None);
        assert_eq!(parse_version("2.4.1.0"), None);
        let mut names = vec![
            "web-ui",
            "policy",
            "excititor",
            "signer",
            "authority",
            "scanner-worker",
        ];
        names.sort_by_key(|n| rollout_rank(n));
        assert_eq!(
            names,
            vec![
                "authority",
                "signer",
                "scanner-worker",
                "excititor",
                "policy",
                "web-ui"
            ]
        );
    }
}
