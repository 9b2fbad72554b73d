//! `scan --attach`: the recorded SBOMs and the signed verdict statement attached to the
//! scanned image as OCI 1.1 referrers, so `oras discover`, `cosign tree`-style tools and
//! admission controllers find them next to the image.
//!
//! What is attached comes from what the scan recorded (the content-addressed SBOM objects
//! in S3 and the verdict envelope in the result row), so a reused result is attached the
//! same way as a fresh one, and attaching twice changes nothing: the artifact manifests are
//! deterministic and the referrers tag schema index lists each once.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::Serialize;
use stellaops_registry::push::{Artifact, ArtifactLayer};
use stellaops_registry::{ImageReference, Reference, RegistryClient, RegistryError};

use super::{Capped, ScanJob, ScanSummary, get_object_capped};

/// `artifactType` (and layer media type) of an attached CycloneDX SBOM.
pub const CYCLONEDX_ARTIFACT_TYPE: &str = "application/vnd.cyclonedx+json";
/// `artifactType` (and layer media type) of an attached SPDX SBOM.
pub const SPDX_ARTIFACT_TYPE: &str = "application/spdx+json";
/// `artifactType` (and layer media type) of the attached verdict statement.
pub const VERDICT_ARTIFACT_TYPE: &str = "application/vnd.dsse.envelope.v1+json";

/// Largest SBOM attached (a larger one is refused with its size, not truncated).
pub const MAX_ATTACHED_SBOM_BYTES: usize = 64 << 20;

/// One artifact attached, as the summary and the Scan status name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachedArtifact {
    /// Its `artifactType`.
    pub artifact_type: String,
    /// Digest of its manifest.
    pub digest: String,
    /// `referrersAPI` or `tagSchema`.
    pub via: String,
}

fn single_layer(artifact_type: &str, bytes: Vec<u8>, title: &str) -> Artifact {
    Artifact {
        artifact_type: artifact_type.to_string(),
        layers: vec![ArtifactLayer {
            media_type: artifact_type.to_string(),
            bytes,
            annotations: BTreeMap::from([(
                "org.opencontainers.image.title".to_string(),
                title.to_string(),
            )]),
        }],
        annotations: BTreeMap::new(),
    }
}

/// The verdict envelope as an artifact: one DSSE layer announcing its predicate type the
/// way cosign's attestation layers do (`predicateType`) and as in-toto names it.
pub fn verdict_artifact(envelope: Vec<u8>) -> Artifact {
    let mut artifact = single_layer(VERDICT_ARTIFACT_TYPE, envelope, "verdict.dsse.json");
    let predicate = stellaops_store::attestation::PREDICATE_TYPE.to_string();
    artifact.layers[0]
        .annotations
        .insert("predicateType".into(), predicate.clone());
    artifact
        .annotations
        .insert("in-toto.io/predicate-type".into(), predicate);
    artifact
}

async fn sbom_object(job: &ScanJob<'_>, key: &str) -> anyhow::Result<Vec<u8>> {
    match get_object_capped(job.s3, job.bucket, key, MAX_ATTACHED_SBOM_BYTES).await? {
        Capped::Bytes(bytes) => Ok(bytes),
        Capped::Missing => anyhow::bail!("s3://{}/{key} is missing", job.bucket),
        Capped::TooLarge => anyhow::bail!(
            "s3://{}/{key} is larger than {MAX_ATTACHED_SBOM_BYTES} bytes; not attached",
            job.bucket
        ),
    }
}

/// Attach what `summary` recorded for `image` with `pusher` (a client holding push rights
/// to the image's repository): the CycloneDX SBOM, the SPDX one when the job writes it, and
/// the signed verdict when there is one.
pub async fn attach(
    job: &ScanJob<'_>,
    pusher: &RegistryClient,
    image: &str,
    summary: &ScanSummary,
) -> anyhow::Result<Vec<AttachedArtifact>> {
    let mut subject: ImageReference = image
        .parse()
        .map_err(|e: RegistryError| anyhow::anyhow!("{e}"))?;
    subject.reference = Reference::Digest(summary.image_digest.clone());
    // What this run wrote is attached as it was written; a reused result's objects are read
    // back (the same bytes: they are content-addressed).
    let recorded = &summary.recorded;
    let sbom = match &recorded.sbom {
        Some(bytes) => bytes.clone(),
        None => {
            sbom_object(
                job,
                &stellaops_store::s3::layout::image_inventory(&summary.sbom_sha256),
            )
            .await?
        }
    };
    let mut artifacts = vec![single_layer(CYCLONEDX_ARTIFACT_TYPE, sbom, "sbom.cdx.json")];
    if job.spdx {
        let spdx = match &recorded.spdx {
            Some(bytes) => bytes.clone(),
            None => {
                sbom_object(
                    job,
                    &stellaops_store::s3::layout::image_inventory_spdx(&summary.sbom_sha256),
                )
                .await?
            }
        };
        artifacts.push(single_layer(SPDX_ARTIFACT_TYPE, spdx, "sbom.spdx.json"));
    }
    let envelope = match &recorded.envelope {
        Some(envelope) => Some(envelope.clone()),
        None => stellaops_store::scans::attestation_of(job.pool, summary.scan_id).await?,
    };
    if let Some(envelope) = envelope {
        artifacts.push(verdict_artifact(envelope));
    }
    let done = pusher
        .attach_all(&subject, &artifacts)
        .await
        .with_context(|| {
            let types: Vec<&str> = artifacts.iter().map(|a| a.artifact_type.as_str()).collect();
            format!("attaching {} to {subject}", types.join(", "))
        })?;
    let attached = artifacts
        .iter()
        .zip(done)
        .map(|(artifact, done)| AttachedArtifact {
            artifact_type: artifact.artifact_type.clone(),
            digest: done.digest,
            via: done.via.as_str().to_string(),
        })
        .collect();
    Ok(attached)
}
