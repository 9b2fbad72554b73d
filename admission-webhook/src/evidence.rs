//! Where the webhook learns about an image: the registry (digest of a tag, cosign
//! signatures) and the platform database (latest scan verdict of a digest).

use futures::future::BoxFuture;
use stellaops_crds::scan::Verdict;
use stellaops_registry::{ImageReference, Reference, RegistryClient};

use crate::cosign;
use crate::policy::ScanRecord;

/// A signature found for a digest: the signed payload and the base64 signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundSignature {
    /// Payload bytes, as signed.
    pub payload: Vec<u8>,
    /// Base64 signature.
    pub signature: String,
}

/// Lookups the webhook makes; errors are worded for the person whose Pod was refused.
pub trait EvidenceSource: Send + Sync + 'static {
    /// The digest `image` (a tag reference) currently points to.
    fn resolve_digest<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<String, String>>;
    /// The cosign signatures stored for `digest` in `image`'s repository (empty: unsigned).
    fn signatures<'a>(
        &'a self,
        image: &'a str,
        digest: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FoundSignature>, String>>;
    /// The latest scan result of `digest`, if any.
    fn latest_scan<'a>(
        &'a self,
        digest: &'a str,
    ) -> BoxFuture<'a, Result<Option<ScanRecord>, String>>;
}

/// The real sources: an OCI registry client and the platform database.
pub struct RegistryEvidence {
    /// Registry client (credentials for private registries).
    pub registry: RegistryClient,
    /// Platform database; without it a policy requiring scans cannot be satisfied.
    pub database: Option<sqlx::PgPool>,
    /// The public keys a verdict's DSSE envelope must verify against; a verdict that does
    /// not is "not scanned" (none configured: no verdict is trusted).
    pub verdict_keys: stellaops_store::attestation::VerdictKeys,
}

fn parse(image: &str) -> Result<ImageReference, String> {
    image.parse::<ImageReference>().map_err(|e| e.to_string())
}

impl EvidenceSource for RegistryEvidence {
    fn resolve_digest<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let reference = parse(image)?;
            let manifest = self
                .registry
                .fetch_manifest(&reference)
                .await
                .map_err(|e| e.to_string())?;
            Ok(manifest.digest)
        })
    }

    fn signatures<'a>(
        &'a self,
        image: &'a str,
        digest: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FoundSignature>, String>> {
        Box::pin(async move {
            let mut reference = parse(image)?;
            reference.reference = Reference::Tag(cosign::signature_tag(digest));
            let manifest = match self.registry.fetch_manifest(&reference).await {
                Ok(manifest) => manifest,
                Err(stellaops_registry::RegistryError::NotFound(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.to_string()),
            };
            let mut found = Vec::new();
            for layer in cosign::signature_layers(&manifest.bytes)? {
                let payload = self
                    .registry
                    .fetch_blob(&reference, &layer.payload_digest)
                    .await
                    .map_err(|e| e.to_string())?;
                found.push(FoundSignature {
                    payload,
                    signature: layer.signature,
                });
            }
            Ok(found)
        })
    }

    fn latest_scan<'a>(
        &'a self,
        digest: &'a str,
    ) -> BoxFuture<'a, Result<Option<ScanRecord>, String>> {
        Box::pin(async move {
            let pool = self
                .database
                .as_ref()
                .ok_or("the webhook has no database to read scan results from")?;
            type Row = (
                String,
                chrono::DateTime<chrono::Utc>,
                Option<String>,
                Option<Vec<u8>>,
            );
            let row: Option<Row> = sqlx::query_as(stellaops_store::scans::LATEST_VERDICT_SQL)
                .bind(digest)
                .fetch_optional(pool)
                .await
                .map_err(|e| format!("scan results unavailable: {e}"))?;
            let verdict_of = |v: &str| match v {
                "Pass" => Verdict::Pass,
                "Warn" => Verdict::Warn,
                _ => Verdict::Fail,
            };
            // Only what the envelope says is trusted: its verdict and its time.
            Ok(row.map(|(verdict, finished_at, key, envelope)| {
                match stellaops_store::attestation::check_row(
                    &self.verdict_keys,
                    digest,
                    &verdict,
                    key.as_deref(),
                    envelope.as_deref(),
                ) {
                    Ok(signed) => ScanRecord {
                        verdict: verdict_of(&signed.verdict),
                        finished_at: signed.scanned_at,
                        unverified: None,
                    },
                    Err(reason) => ScanRecord {
                        verdict: verdict_of(&verdict),
                        finished_at,
                        unverified: Some(reason),
                    },
                }
            }))
        })
    }
}
