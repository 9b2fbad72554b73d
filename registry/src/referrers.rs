//! OCI 1.1 referrers: the manifests whose `subject` is a given digest (signatures,
//! attestations, SBOMs attached to an image). Asked first through the referrers API
//! (`GET /v2/<name>/referrers/<digest>`); a registry without it answers 404, and then the
//! referrers tag schema is read instead: an image index tagged `sha256-<hex>` that clients
//! pushing a referrer keep up to date (distribution spec 1.1, "Referrers Tag Schema").

use std::collections::BTreeMap;

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, LINK};
use serde_json::Value;

use crate::{ImageReference, Reference, RegistryClient, RegistryError};

/// Media type of an OCI image index, the only form a referrers list takes.
pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// Pages of a referrers answer followed at most (a registry paginates with `Link`).
pub const MAX_REFERRER_PAGES: usize = 8;

/// Referrers kept at most per subject, whatever the registry lists: the webhook looks at
/// each one it keeps, so the bound is on its work, not only on the bytes.
pub const MAX_REFERRERS: usize = 256;

/// One manifest that names the subject digest as its `subject`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referrer {
    /// Media type of the referring manifest.
    pub media_type: String,
    /// What it is (`application/vnd.dev.cosign.artifact.sig.v1+json`, an SBOM's type…):
    /// the descriptor's `artifactType`, empty when the registry gave none.
    pub artifact_type: String,
    /// Digest of the referring manifest.
    pub digest: String,
    /// Its size in bytes, as listed.
    pub size: u64,
    /// The annotations of the manifest, copied into the listing.
    pub annotations: BTreeMap<String, String>,
}

/// Where a referrers list came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferrersSource {
    /// The registry's referrers API.
    Api,
    /// The `sha256-<hex>` index of the referrers tag schema (the registry has no API).
    TagSchema,
    /// Neither the API nor the fallback tag exists: nothing refers to the digest.
    None,
}

/// The referrers of one digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referrers {
    /// How they were found.
    pub source: ReferrersSource,
    /// The referring manifests, in the registry's order, at most [`MAX_REFERRERS`].
    pub referrers: Vec<Referrer>,
}

/// The tag of the referrers tag schema for `digest` (`sha256:<hex>` → `sha256-<hex>`).
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The descriptors of an image index listing referrers (the API's answer or the tag
/// schema's index). Descriptors without a sha256 digest or a media type are refused with the
/// whole list: a registry that sends them is not one to half-trust.
pub fn parse_referrers_index(bytes: &[u8]) -> Result<Vec<Referrer>, String> {
    let index: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("referrers index is not JSON: {e}"))?;
    if index.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err("referrers index is not schemaVersion 2".into());
    }
    if let Some(media_type) = index.get("mediaType")
        && media_type != OCI_INDEX_MEDIA_TYPE
    {
        return Err(format!(
            "referrers index has media type {media_type}, not {OCI_INDEX_MEDIA_TYPE}"
        ));
    }
    let manifests = match index.get("manifests") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err("referrers index \"manifests\" is not a list".into()),
    };
    let mut referrers = Vec::with_capacity(manifests.len().min(MAX_REFERRERS));
    for (i, descriptor) in manifests.iter().enumerate() {
        let field = |name: &str| descriptor.get(name).and_then(Value::as_str);
        let digest = field("digest")
            .filter(|d| is_digest(d))
            .ok_or_else(|| format!("referrer {i} has no sha256 digest"))?;
        let media_type =
            field("mediaType").ok_or_else(|| format!("referrer {i} has no media type"))?;
        let size = descriptor
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("referrer {i} has no size"))?;
        let annotations = descriptor
            .get("annotations")
            .and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        if referrers.len() < MAX_REFERRERS {
            referrers.push(Referrer {
                media_type: media_type.to_string(),
                artifact_type: field("artifactType").unwrap_or_default().to_string(),
                digest: digest.to_string(),
                size,
                annotations,
            });
        }
    }
    Ok(referrers)
}

/// The URL a `Link: <…>; rel="next"` header points to, resolved against `current` and kept
/// on its origin (a registry cannot send us elsewhere with its credentials).
fn next_page(link: &str, current: &Url) -> Option<Url> {
    for part in link.split(',') {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        if is_next {
            let url = current.join(target).ok()?;
            return (url.origin() == current.origin()).then_some(url);
        }
    }
    None
}

impl RegistryClient {
    /// The manifests referring to `digest` in `image`'s repository, optionally only those
    /// of `artifact_type`: through the referrers API, or, when the registry answers it with
    /// 404, through the referrers tag schema. At most [`MAX_REFERRER_PAGES`] pages of at most
    /// `max_manifest_bytes` each, each within `request_timeout`.
    pub async fn referrers(
        &self,
        image: &ImageReference,
        digest: &str,
        artifact_type: Option<&str>,
    ) -> Result<Referrers, RegistryError> {
        if !is_digest(digest) {
            return Err(RegistryError::InvalidReference(
                digest.to_string(),
                "a referrers subject is a sha256 digest",
            ));
        }
        let mut url = Url::parse(&format!(
            "{}/v2/{}/referrers/{digest}",
            self.base_url(image),
            image.repository
        ))
        .map_err(|e| RegistryError::Protocol(format!("bad referrers URL: {e}")))?;
        if let Some(artifact_type) = artifact_type {
            url.query_pairs_mut()
                .append_pair("artifactType", artifact_type);
        }
        let budget = self.limits.request_timeout;
        let mut referrers = Vec::new();
        let mut filtered_by_registry = false;
        for page in 0..MAX_REFERRER_PAGES {
            let response = match self
                .get(
                    image,
                    url.as_str(),
                    Some(OCI_INDEX_MEDIA_TYPE),
                    budget,
                    url.as_str(),
                )
                .await
            {
                Ok(response) => response,
                // Only the first page may say "no API"; a later 404 is a broken listing.
                Err(RegistryError::NotFound(_)) if page == 0 => {
                    return self.referrers_by_tag(image, digest, artifact_type).await;
                }
                Err(e) => return Err(e),
            };
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !content_type.starts_with(OCI_INDEX_MEDIA_TYPE) {
                return Err(RegistryError::Protocol(format!(
                    "registry {} answered the referrers API with {content_type:?}, not an OCI image index",
                    image.registry
                )));
            }
            filtered_by_registry |= response
                .headers()
                .get_all("oci-filters-applied")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.split(',').any(|f| f.trim() == "artifactType"));
            let next = response
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|link| next_page(link, &url));
            let bytes = self
                .read_capped(
                    image,
                    response,
                    self.limits.max_manifest_bytes,
                    "referrers index",
                    budget,
                )
                .await?;
            referrers.extend(parse_referrers_index(&bytes).map_err(|e| {
                RegistryError::Protocol(format!("registry {}: {e}", image.registry))
            })?);
            match next {
                Some(next) if referrers.len() < MAX_REFERRERS => url = next,
                _ => break,
            }
        }
        referrers.truncate(MAX_REFERRERS);
        // A registry that ignored the filter (it may) is filtered here.
        if let Some(wanted) = artifact_type
            && !filtered_by_registry
        {
            referrers.retain(|r| r.artifact_type == wanted);
        }
        Ok(Referrers {
            source: ReferrersSource::Api,
            referrers,
        })
    }

    /// The referrers tag schema: the index tagged `sha256-<hex>` (digest-checked against the
    /// registry's `Docker-Content-Digest` like any manifest); no such tag, no referrers.
    async fn referrers_by_tag(
        &self,
        image: &ImageReference,
        digest: &str,
        artifact_type: Option<&str>,
    ) -> Result<Referrers, RegistryError> {
        let mut tagged = image.clone();
        tagged.reference = Reference::Tag(referrers_tag(digest));
        let manifest = match self.fetch_manifest(&tagged).await {
            Ok(manifest) => manifest,
            Err(RegistryError::NotFound(_)) => {
                return Ok(Referrers {
                    source: ReferrersSource::None,
                    referrers: Vec::new(),
                });
            }
            Err(e) => return Err(e),
        };
        let mut referrers = parse_referrers_index(&manifest.bytes).map_err(|e| {
            RegistryError::Protocol(format!("{tagged} (referrers tag schema): {e}"))
        })?;
        if let Some(wanted) = artifact_type {
            referrers.retain(|r| r.artifact_type == wanted);
        }
        Ok(Referrers {
            source: ReferrersSource::TagSchema,
            referrers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn the_tag_schema_replaces_only_the_algorithm_separator() {
        assert_eq!(referrers_tag(D1), format!("sha256-{}", &D1[7..]));
    }

    #[test]
    fn an_index_lists_its_descriptors_and_refuses_malformed_ones() {
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX_MEDIA_TYPE,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
                "digest": D1, "size": 12, "annotations": {"k": "v", "n": 1}}]});
        let parsed = parse_referrers_index(index.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(
            parsed[0].artifact_type,
            "application/vnd.dev.cosign.artifact.sig.v1+json"
        );
        assert_eq!(
            parsed[0].annotations.len(),
            1,
            "a non-string annotation is dropped"
        );
        let empty = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(parse_referrers_index(empty).unwrap().is_empty());
        for bad in [
            &br#"{"schemaVersion":1,"manifests":[]}"#[..],
            br#"{"schemaVersion":2,"manifests":{}}"#,
            br#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:12","size":1}]}"#,
            br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json"}"#,
            b"[",
        ] {
            assert!(parse_referrers_index(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_next_page_stays_on_the_registry() {
        let current = Url::parse("http://127.0.0.1:5000/v2/a/referrers/x").unwrap();
        assert_eq!(
            next_page(r#"</v2/a/referrers/x?n=2>; rel="next""#, &current)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:5000/v2/a/referrers/x?n=2"
        );
        assert!(next_page(r#"<http://evil.example/v2/a>; rel="next""#, &current).is_none());
        assert!(next_page(r#"</v2/a/referrers/x?n=2>; rel="prev""#, &current).is_none());
    }
}
