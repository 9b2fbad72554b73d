//! Writes to a registry: blob uploads, manifest pushes, and artifacts attached to an image
//! as OCI 1.1 referrers (an image manifest with a `subject`), with the referrers tag schema
//! (`sha256-<hex>` index) kept where the registry has no referrers API.
//!
//! The same rules as reads: a timeout on every request, credentials only for the registry
//! (and tokens only for the repository) they belong to, no redirect followed (a write is
//! never replayed to another origin), and error bodies read with a cap.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};

use crate::{ImageReference, Reference, RegistryClient, RegistryError, sha256_digest};

/// Media type of an OCI image manifest (what an attached artifact is).
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index (what the referrers tag schema keeps).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The empty config of an artifact manifest (image-spec 1.1 "guidelines for artifact usage").
pub const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The registry's answer to a manifest with a `subject` it indexed (distribution spec 1.1).
pub const OCI_SUBJECT_HEADER: &str = "oci-subject";

/// Bytes of an error body kept for the message.
const ERROR_BODY_BYTES: usize = 512;

/// One layer of an artifact.
#[derive(Clone, Debug)]
pub struct ArtifactLayer {
    /// Its media type (e.g. `application/vnd.cyclonedx+json`).
    pub media_type: String,
    /// The content.
    pub bytes: Vec<u8>,
    /// Layer annotations.
    pub annotations: BTreeMap<String, String>,
}

/// An artifact to attach to an image.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// `artifactType` of the manifest (what `oras discover` and referrers filters show).
    pub artifact_type: String,
    /// Its layers.
    pub layers: Vec<ArtifactLayer>,
    /// Manifest annotations. No timestamps here: the same content must give the same
    /// manifest, so attaching again is a no-op.
    pub annotations: BTreeMap<String, String>,
}

/// How an attached artifact can be found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedVia {
    /// The registry indexed the `subject` (answered `OCI-Subject`): its referrers API lists it.
    ReferrersApi,
    /// Listed in the `sha256-<hex>` index of the referrers tag schema.
    TagSchema,
}

impl AttachedVia {
    /// As the Scan status and the worker's summary say it.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachedVia::ReferrersApi => "referrersAPI",
            AttachedVia::TagSchema => "tagSchema",
        }
    }
}

/// An artifact attached to an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// `sha256:…` of the artifact manifest.
    pub digest: String,
    /// Its size in bytes.
    pub size: usize,
    /// Where it is listed.
    pub via: AttachedVia,
    /// It was already listed (attaching again changed nothing).
    pub unchanged: bool,
}

/// The manifest of `artifact` referring to the subject manifest (`subject_media_type`,
/// `subject_digest`, `subject_size`), with `layer_digests` the digests of its layers in
/// order. Deterministic: the same input gives the same bytes.
pub fn artifact_manifest(
    artifact: &Artifact,
    subject_media_type: &str,
    subject_digest: &str,
    subject_size: usize,
) -> Vec<u8> {
    let layers: Vec<Value> = artifact
        .layers
        .iter()
        .map(|layer| {
            let mut descriptor = json!({
                "mediaType": layer.media_type,
                "digest": sha256_digest(&layer.bytes),
                "size": layer.bytes.len(),
            });
            if !layer.annotations.is_empty() {
                descriptor["annotations"] = json!(layer.annotations);
            }
            descriptor
        })
        .collect();
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact.artifact_type,
        "config": {
            "mediaType": EMPTY_CONFIG_MEDIA_TYPE,
            "digest": sha256_digest(b"{}"),
            "size": 2,
        },
        "layers": layers,
        "subject": {
            "mediaType": subject_media_type,
            "digest": subject_digest,
            "size": subject_size,
        },
    });
    if !artifact.annotations.is_empty() {
        manifest["annotations"] = json!(artifact.annotations);
    }
    serde_json::to_vec(&manifest).expect("a manifest serializes")
}

/// `index` (a referrers tag schema index, or `None` when there is none yet) with `descriptor`
/// listed; `None` when a descriptor of the same digest is already there.
pub fn index_with(index: Option<&[u8]>, descriptor: Value) -> Result<Option<Vec<u8>>, String> {
    let mut index: Value = match index {
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| format!("the referrers tag schema index is not JSON: {e}"))?,
        None => json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
    };
    let manifests = index
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .ok_or("the referrers tag schema index has no manifests list")?;
    if manifests
        .iter()
        .any(|m| m.get("digest") == descriptor.get("digest"))
    {
        return Ok(None);
    }
    manifests.push(descriptor);
    Ok(Some(
        serde_json::to_vec(&index).expect("an index serializes"),
    ))
}

impl RegistryClient {
    /// One write (or HEAD) to `image`'s repository within `budget`, authenticating when
    /// challenged. Redirects are not followed: a body is never sent to another origin.
    async fn write(
        &self,
        image: &ImageReference,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        budget: Duration,
    ) -> Result<reqwest::Response, RegistryError> {
        let key = (image.registry.clone(), image.repository.clone());
        let send = |authorization: Option<String>| {
            let mut request = self
                .http
                .request(method.clone(), url)
                .timeout(budget)
                .body(body.clone());
            if let Some(content_type) = content_type {
                request = request.header(CONTENT_TYPE, content_type);
            }
            if let Some(authorization) = authorization {
                request = request.header(reqwest::header::AUTHORIZATION, authorization);
            }
            request.send()
        };
        let mut response = send(self.cached_auth(&key))
            .await
            .map_err(|e| self.transport_error(image, e, budget))?;
        if response.status() == StatusCode::UNAUTHORIZED
            && let Some((auth, ttl)) = self.authorization(image, response.headers()).await?
        {
            response = send(Some(auth.clone()))
                .await
                .map_err(|e| self.transport_error(image, e, budget))?;
            if response.status().is_success() {
                self.remember_auth(key, auth, ttl);
            }
        }
        Ok(response)
    }

    async fn refused(
        &self,
        image: &ImageReference,
        what: &str,
        response: reqwest::Response,
    ) -> RegistryError {
        let status = response.status();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return RegistryError::PushRefused {
                registry: image.registry.clone(),
                repository: image.repository.clone(),
                status: status.as_u16(),
            };
        }
        let body = self
            .read_capped(
                image,
                response,
                self.limits.max_token_bytes,
                "error body",
                self.limits.request_timeout,
            )
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_BYTES)]).to_string();
        RegistryError::Protocol(format!("{what}: HTTP {status}: {}", text.trim()))
    }

    /// Whether `image`'s repository holds the blob `digest`.
    pub async fn blob_exists(
        &self,
        image: &ImageReference,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        let url = format!(
            "{}/v2/{}/blobs/{digest}",
            self.base_url(image),
            image.repository
        );
        let response = self
            .write(
                image,
                Method::HEAD,
                &url,
                None,
                Vec::new(),
                self.limits.request_timeout,
            )
            .await?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.refused(image, "HEAD blob", response).await),
        }
    }

    /// Upload `bytes` as a blob of `image`'s repository (the two-step upload every
    /// distribution registry supports), unless it is there already; returns its digest.
    pub async fn push_blob(
        &self,
        image: &ImageReference,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(bytes);
        if self.blob_exists(image, &digest).await? {
            return Ok(digest);
        }
        let base = self.base_url(image);
        let start = format!("{base}/v2/{}/blobs/uploads/", image.repository);
        let response = self
            .write(
                image,
                Method::POST,
                &start,
                None,
                Vec::new(),
                self.limits.request_timeout,
            )
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self
                .refused(image, "starting a blob upload", response)
                .await);
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                RegistryError::Protocol(format!(
                    "registry {} started an upload without a Location",
                    image.registry
                ))
            })?;
        let mut url = Url::parse(&base)
            .and_then(|b| b.join(location))
            .map_err(|e| {
                RegistryError::Protocol(format!(
                    "registry {} gave an invalid upload location: {e}",
                    image.registry
                ))
            })?;
        // The upload goes on on the registry itself; credentials never go elsewhere.
        let origin = Url::parse(&base).map(|b| b.origin()).ok();
        if Some(url.origin()) != origin {
            return Err(RegistryError::Protocol(format!(
                "registry {} asked for the upload on another origin ({}); refused",
                image.registry,
                url.origin().ascii_serialization()
            )));
        }
        url.query_pairs_mut().append_pair("digest", &digest);
        let response = self
            .write(
                image,
                Method::PUT,
                url.as_str(),
                Some("application/octet-stream"),
                bytes.to_vec(),
                self.limits.blob_timeout,
            )
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(self
                .refused(image, "finishing a blob upload", response)
                .await);
        }
        Ok(digest)
    }

    /// Push a manifest (or index) of `media_type` under `reference` (a tag or its own
    /// digest); returns its digest and whether the registry said it indexed its `subject`.
    pub async fn push_manifest(
        &self,
        image: &ImageReference,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(String, bool), RegistryError> {
        if bytes.len() as u64 > self.limits.max_manifest_bytes {
            return Err(RegistryError::TooLarge {
                registry: image.registry.clone(),
                what: "manifest to push".into(),
                limit: self.limits.max_manifest_bytes,
            });
        }
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base_url(image),
            image.repository
        );
        let response = self
            .write(
                image,
                Method::PUT,
                &url,
                Some(media_type),
                bytes.to_vec(),
                self.limits.request_timeout,
            )
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.refused(image, "pushing a manifest", response).await);
        }
        let indexed = response.headers().contains_key(OCI_SUBJECT_HEADER);
        Ok((sha256_digest(bytes), indexed))
    }

    /// Attach `artifact` to the manifest `subject` names (by digest) as an OCI 1.1
    /// referrer: its blobs and manifest pushed by digest; when the registry does not answer
    /// `OCI-Subject`, the artifact is also listed in the `sha256-<hex>` index of the
    /// referrers tag schema (read, extended, pushed back). Attaching the same artifact again
    /// changes nothing. The tag schema index is read-modify-write: two clients attaching to
    /// the same subject at the same moment can lose one entry (the schema's known race).
    pub async fn attach(
        &self,
        subject: &ImageReference,
        artifact: &Artifact,
    ) -> Result<Attached, RegistryError> {
        let mut attached = self
            .attach_all(subject, std::slice::from_ref(artifact))
            .await?;
        Ok(attached.remove(0))
    }

    /// [`attach`](Self::attach) for several artifacts at once, each in the order given: the
    /// subject manifest read once, the blobs and manifests pushed concurrently, and the
    /// referrers tag schema index (when the registry indexes no subject) read and written
    /// back once with every artifact listed.
    pub async fn attach_all(
        &self,
        subject: &ImageReference,
        artifacts: &[Artifact],
    ) -> Result<Vec<Attached>, RegistryError> {
        let Reference::Digest(subject_digest) = &subject.reference else {
            return Err(RegistryError::Protocol(format!(
                "{subject}: an artifact is attached to a manifest by digest"
            )));
        };
        let (subject_manifest, empty_config) =
            futures::future::join(self.fetch_manifest(subject), self.push_blob(subject, b"{}"))
                .await;
        let subject_manifest = subject_manifest?;
        empty_config?;
        let blobs = artifacts
            .iter()
            .flat_map(|a| &a.layers)
            .map(|layer| self.push_blob(subject, &layer.bytes));
        for pushed in futures::future::join_all(blobs).await {
            pushed?;
        }
        let manifests: Vec<Vec<u8>> = artifacts
            .iter()
            .map(|artifact| {
                artifact_manifest(
                    artifact,
                    &subject_manifest.media_type,
                    subject_digest,
                    subject_manifest.bytes.len(),
                )
            })
            .collect();
        let digests: Vec<String> = manifests.iter().map(|m| sha256_digest(m)).collect();
        let pushes = manifests
            .iter()
            .zip(&digests)
            .map(|(manifest, digest)| self.push_manifest(subject, digest, OCI_MANIFEST, manifest));
        let indexed: Vec<bool> = futures::future::join_all(pushes)
            .await
            .into_iter()
            .map(|pushed| pushed.map(|(_, indexed)| indexed))
            .collect::<Result<_, _>>()?;
        let mut out: Vec<Attached> = manifests
            .iter()
            .zip(digests)
            .zip(&indexed)
            .map(|((manifest, digest), indexed)| Attached {
                digest,
                size: manifest.len(),
                via: if *indexed {
                    AttachedVia::ReferrersApi
                } else {
                    AttachedVia::TagSchema
                },
                unchanged: false,
            })
            .collect();
        if indexed.iter().all(|i| *i) {
            return Ok(out);
        }
        let tag = crate::referrers_tag(subject_digest);
        let mut index_ref = subject.clone();
        index_ref.reference = Reference::Tag(tag.clone());
        let existing = match self.fetch_manifest(&index_ref).await {
            Ok(index) => Some(index.bytes),
            Err(RegistryError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let mut index = existing;
        let mut changed = false;
        for ((artifact, attached), indexed) in artifacts.iter().zip(&mut out).zip(&indexed) {
            if *indexed {
                continue;
            }
            let mut descriptor = json!({
                "mediaType": OCI_MANIFEST,
                "artifactType": artifact.artifact_type,
                "digest": attached.digest,
                "size": attached.size,
            });
            if !artifact.annotations.is_empty() {
                descriptor["annotations"] = json!(artifact.annotations);
            }
            match index_with(index.as_deref(), descriptor).map_err(RegistryError::Protocol)? {
                Some(extended) => {
                    index = Some(extended);
                    changed = true;
                }
                None => attached.unchanged = true,
            }
        }
        if changed && let Some(index) = &index {
            self.push_manifest(subject, &tag, OCI_INDEX, index).await?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact() -> Artifact {
        Artifact {
            artifact_type: "application/vnd.cyclonedx+json".into(),
            layers: vec![ArtifactLayer {
                media_type: "application/vnd.cyclonedx+json".into(),
                bytes: br#"{"bomFormat":"CycloneDX"}"#.to_vec(),
                annotations: BTreeMap::new(),
            }],
            annotations: BTreeMap::from([("org.opencontainers.image.title".into(), "x".into())]),
        }
    }

    #[test]
    fn the_artifact_manifest_is_deterministic_and_names_its_subject() {
        let a = artifact_manifest(&artifact(), OCI_MANIFEST, "sha256:ab", 10);
        let b = artifact_manifest(&artifact(), OCI_MANIFEST, "sha256:ab", 10);
        assert_eq!(a, b);
        let v: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["subject"]["digest"], "sha256:ab");
        assert_eq!(v["subject"]["size"], 10);
        assert_eq!(v["config"]["mediaType"], EMPTY_CONFIG_MEDIA_TYPE);
        assert_eq!(
            v["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(
            v["layers"][0]["digest"],
            sha256_digest(br#"{"bomFormat":"CycloneDX"}"#)
        );
    }

    #[test]
    fn an_index_lists_a_descriptor_once() {
        let d = json!({"digest": "sha256:1", "mediaType": OCI_MANIFEST, "size": 3});
        let first = index_with(None, d.clone()).unwrap().expect("added");
        assert!(index_with(Some(&first), d).unwrap().is_none());
        let second = index_with(Some(&first), json!({"digest": "sha256:2"}))
            .unwrap()
            .expect("added");
        let v: Value = serde_json::from_slice(&second).unwrap();
        assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
        assert!(index_with(Some(b"{}"), json!({"digest": "x"})).is_err());
        assert!(index_with(Some(b"nope"), json!({"digest": "x"})).is_err());
    }
}
