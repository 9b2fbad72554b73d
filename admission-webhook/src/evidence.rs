//! Where the webhook learns about an image: the registry (digest of a tag, cosign
//! signatures) and the platform database (latest scan verdict of a digest).

use futures::future::BoxFuture;
use stellaops_crds::scan::Verdict;
use stellaops_registry::{ImageReference, Reference, ReferrersSource, RegistryClient};

use crate::cosign;
use crate::policy::ScanRecord;

/// A signature found for a digest: the signed payload and the base64 signature.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoundSignature {
    /// Payload bytes, as signed.
    pub payload: Vec<u8>,
    /// Base64 signature.
    pub signature: String,
    /// PEM signing certificate of a keyless signature.
    pub certificate: Option<String>,
    /// PEM chain of a keyless signature.
    pub chain: Option<String>,
    /// Rekor bundle JSON (signed entry timestamp and entry).
    pub rekor_bundle: Option<String>,
    /// cosign's RFC 3161 timestamp annotation (JSON) of the signature.
    pub rfc3161_timestamp: Option<String>,
    /// A whole Sigstore bundle (found as an OCI referrer): then `payload` and `signature`
    /// are empty and everything is in here.
    pub bundle: Option<Vec<u8>>,
    /// Where it was found (`referrers API`, `referrers tag sha256-…`, `tag sha256-….sig`),
    /// for messages.
    pub found_at: String,
}

/// An attestation found for a digest: a DSSE envelope (or a Sigstore bundle holding one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoundAttestation {
    /// Media type of the blob (`application/vnd.dsse.envelope.v1+json` or a bundle's).
    pub media_type: String,
    /// The blob, as stored.
    pub blob: Vec<u8>,
    /// The predicate type its annotation announces.
    pub predicate_type: Option<String>,
    /// PEM signing certificate of a keyless attestation (cosign's annotation).
    pub certificate: Option<String>,
    /// PEM chain of a keyless attestation.
    pub chain: Option<String>,
    /// Rekor bundle JSON of a keyless attestation.
    pub rekor_bundle: Option<String>,
    /// cosign's RFC 3161 timestamp annotation (JSON) of the attestation.
    pub rfc3161_timestamp: Option<String>,
    /// Where it was found, for messages.
    pub found_at: String,
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
    /// The attestations stored for `digest` in `image`'s repository (empty: none). Sources
    /// that keep none need not say so.
    fn attestations<'a>(
        &'a self,
        _image: &'a str,
        _digest: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FoundAttestation>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// The latest scan result of `digest`, if any.
    fn latest_scan<'a>(
        &'a self,
        digest: &'a str,
    ) -> BoxFuture<'a, Result<Option<ScanRecord>, String>>;
    /// The latest scan result of `digest` decided under the ScanPolicy digest
    /// `policy_digest` (named `policy`). `None`: never scanned at all; a result decided
    /// only under other policies comes back unverified, saying so. Sources that keep no
    /// policy digests say they cannot answer (an outage, never a verdict).
    fn latest_scan_under<'a>(
        &'a self,
        _digest: &'a str,
        policy: &'a str,
        _policy_digest: &'a str,
    ) -> BoxFuture<'a, Result<Option<ScanRecord>, String>> {
        Box::pin(async move {
            Err(format!(
                "this evidence source cannot tell which verdicts ScanPolicy {policy} decided"
            ))
        })
    }
}

/// Why an image scanned only under other policies does not count under `policy`.
pub fn not_judged_under(policy: &str, policy_digest: &str) -> String {
    format!(
        "no verdict of it was decided under ScanPolicy {policy} ({policy_digest}): its latest was \
         decided under another policy and no re-evaluation under {policy} exists yet (a Scan \
         with spec.policy.policyRef {policy} makes one)"
    )
}

/// The real sources: an OCI registry client and the platform database.
pub struct RegistryEvidence {
    /// Registry client (credentials for private registries).
    pub registry: RegistryClient,
    /// Platform database; without it a policy requiring scans cannot be satisfied.
    pub database: Option<sqlx::PgPool>,
    /// The public keys a verdict's DSSE envelope must verify against; a verdict that does
    /// not is "not scanned" (none configured: no verdict is trusted).
    pub verdict_keys: stellaops_store::attestation::SharedVerdictKeys,
}

fn parse(image: &str) -> Result<ImageReference, String> {
    image.parse::<ImageReference>().map_err(|e| e.to_string())
}

/// Manifests found for one digest: (where, bytes).
type FoundManifests = Vec<(String, Vec<u8>)>;

impl RegistryEvidence {
    /// The manifests of `artifact_type` referring to `digest` (API or tag schema), and why
    /// the referrers could not be listed, if they could not.
    async fn referring_manifests(
        &self,
        repository: &ImageReference,
        digest: &str,
        artifact_type: &str,
    ) -> (FoundManifests, Option<String>) {
        let listed = match self
            .registry
            .referrers(repository, digest, Some(artifact_type))
            .await
        {
            Ok(listed) => listed,
            Err(e) => return (Vec::new(), Some(format!("listing referrers: {e}"))),
        };
        let at = match listed.source {
            ReferrersSource::Api => "referrers API".to_string(),
            _ => format!(
                "referrers tag {}",
                stellaops_registry::referrers_tag(digest)
            ),
        };
        let mut manifests = Vec::new();
        for referrer in listed.referrers {
            let mut pinned = repository.clone();
            pinned.reference = Reference::Digest(referrer.digest.clone());
            match self.registry.fetch_manifest(&pinned).await {
                Ok(manifest) => manifests.push((at.clone(), manifest.bytes)),
                // A listed referrer that cannot be read is as good as absent; the others
                // still count.
                Err(e) => {
                    return (
                        manifests,
                        Some(format!("referrer {}: {e}", referrer.digest)),
                    );
                }
            }
        }
        (manifests, None)
    }

    /// [`Self::referring_manifests`] plus cosign's legacy tag `legacy_tag`. The outer error:
    /// the legacy tag could not be read (an outage, not an absence).
    async fn signature_manifests(
        &self,
        repository: &ImageReference,
        digest: &str,
        artifact_type: &str,
        legacy_tag: String,
    ) -> Result<(FoundManifests, Option<String>), String> {
        let (mut manifests, error) = self
            .referring_manifests(repository, digest, artifact_type)
            .await;
        let mut tagged = repository.clone();
        tagged.reference = Reference::Tag(legacy_tag.clone());
        match self.registry.fetch_manifest(&tagged).await {
            Ok(manifest) => manifests.push((format!("tag {legacy_tag}"), manifest.bytes)),
            Err(stellaops_registry::RegistryError::NotFound(_)) => {}
            Err(e) if manifests.is_empty() => return Err(e.to_string()),
            Err(_) => {}
        }
        Ok((manifests, error))
    }
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
            let repository = parse(image)?;
            let mut found: Vec<FoundSignature> = Vec::new();
            // Referrers first (API, then tag schema), then cosign's legacy tag; a signature
            // stored both ways counts once. A failing referrers lookup only matters when the
            // legacy tag has nothing either.
            let manifests = self
                .signature_manifests(
                    &repository,
                    digest,
                    cosign::SIGNATURE_ARTIFACT_TYPE,
                    cosign::signature_tag(digest),
                )
                .await;
            let (manifests, referrers_error) = manifests?;
            for (at, manifest) in manifests {
                for layer in cosign::signature_layers(&manifest)? {
                    let payload = self
                        .registry
                        .fetch_blob(&repository, &layer.payload_digest)
                        .await
                        .map_err(|e| e.to_string())?;
                    let signature = FoundSignature {
                        payload,
                        signature: layer.signature,
                        certificate: layer.certificate,
                        chain: layer.chain,
                        rekor_bundle: layer.rekor_bundle,
                        rfc3161_timestamp: layer.rfc3161_timestamp,
                        bundle: None,
                        found_at: at.clone(),
                    };
                    // The same signature found twice (a referrer and the tag): one entry,
                    // keeping whatever either copy carries (a log entry, a timestamp).
                    match found.iter_mut().find(|f| {
                        f.payload == signature.payload && f.signature == signature.signature
                    }) {
                        Some(kept) => {
                            kept.certificate = kept.certificate.take().or(signature.certificate);
                            kept.chain = kept.chain.take().or(signature.chain);
                            kept.rekor_bundle = kept.rekor_bundle.take().or(signature.rekor_bundle);
                            kept.rfc3161_timestamp = kept
                                .rfc3161_timestamp
                                .take()
                                .or(signature.rfc3161_timestamp);
                        }
                        None => found.push(signature),
                    }
                }
            }
            // Sigstore bundles referring to the digest (cosign 3's layout): those whose content
            // is an image signature (a message signature, or a DSSE statement of cosign's
            // signature predicate); other predicate types are attestations.
            let (bundles, bundle_error) = self
                .referring_manifests(&repository, digest, cosign::SIGSTORE_BUNDLE_ARTIFACT_TYPE)
                .await;
            for (at, manifest) in bundles {
                for layer in cosign::signature_bundle_layers(&manifest)? {
                    let bytes = self
                        .registry
                        .fetch_blob(&repository, &layer)
                        .await
                        .map_err(|e| e.to_string())?;
                    if !found.iter().any(|f| f.bundle.as_ref() == Some(&bytes)) {
                        found.push(FoundSignature {
                            bundle: Some(bytes),
                            found_at: at.clone(),
                            ..Default::default()
                        });
                    }
                }
            }
            match referrers_error.or(bundle_error) {
                Some(error) if found.is_empty() => Err(error),
                _ => Ok(found),
            }
        })
    }

    fn attestations<'a>(
        &'a self,
        image: &'a str,
        digest: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FoundAttestation>, String>> {
        Box::pin(async move {
            let repository = parse(image)?;
            let mut found: Vec<FoundAttestation> = Vec::new();
            let mut manifests = Vec::new();
            let mut errors = Vec::new();
            // Bundles, bare DSSE envelopes (as `scan --attach` stores the signed verdict),
            // then cosign's attestation manifests and their legacy tag.
            for (artifact_type, legacy) in [
                (cosign::SIGSTORE_BUNDLE_ARTIFACT_TYPE, None),
                (cosign::DSSE_MEDIA_TYPE, None),
                (
                    cosign::ATTESTATION_ARTIFACT_TYPE,
                    Some(cosign::attestation_tag(digest)),
                ),
            ] {
                let (mut more, error) = match legacy {
                    Some(tag) => {
                        self.signature_manifests(&repository, digest, artifact_type, tag)
                            .await?
                    }
                    None => {
                        self.referring_manifests(&repository, digest, artifact_type)
                            .await
                    }
                };
                manifests.append(&mut more);
                errors.extend(error);
            }
            for (at, manifest) in manifests {
                for layer in cosign::attestation_layers(&manifest)? {
                    let blob = self
                        .registry
                        .fetch_blob(&repository, &layer.digest)
                        .await
                        .map_err(|e| e.to_string())?;
                    if !found.iter().any(|f| f.blob == blob) {
                        found.push(FoundAttestation {
                            media_type: layer.media_type,
                            blob,
                            predicate_type: layer.predicate_type,
                            certificate: layer.certificate,
                            chain: layer.chain,
                            rekor_bundle: layer.rekor_bundle,
                            rfc3161_timestamp: layer.rfc3161_timestamp,
                            found_at: at.clone(),
                        });
                    }
                }
            }
            match errors.into_iter().next() {
                Some(error) if found.is_empty() => Err(error),
                _ => Ok(found),
            }
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
            let row = stellaops_store::scans::latest_verdict(pool, digest)
                .await
                .map_err(|e| format!("scan results unavailable: {e}"))?;
            Ok(row.map(|row| self.record(digest, row, None)))
        })
    }

    fn latest_scan_under<'a>(
        &'a self,
        digest: &'a str,
        policy: &'a str,
        policy_digest: &'a str,
    ) -> BoxFuture<'a, Result<Option<ScanRecord>, String>> {
        Box::pin(async move {
            let pool = self
                .database
                .as_ref()
                .ok_or("the webhook has no database to read scan results from")?;
            let unavailable = |e: sqlx::Error| format!("scan results unavailable: {e}");
            let under =
                stellaops_store::scans::latest_verdict_under_policy(pool, digest, policy_digest)
                    .await
                    .map_err(unavailable)?;
            if let Some(row) = under {
                return Ok(Some(self.record(digest, row, Some(policy_digest))));
            }
            // None under this policy: scanned under another one, or never scanned.
            let any = stellaops_store::scans::latest_verdict(pool, digest)
                .await
                .map_err(unavailable)?;
            Ok(any.map(|row| ScanRecord {
                verdict: verdict_of(&row.verdict),
                finished_at: row.finished_at,
                unverified: Some(not_judged_under(policy, policy_digest)),
            }))
        })
    }
}

fn verdict_of(v: &str) -> Verdict {
    match v {
        "Pass" => Verdict::Pass,
        "Warn" => Verdict::Warn,
        _ => Verdict::Fail,
    }
}

impl RegistryEvidence {
    /// The record of `row`: only what its envelope says is trusted (its verdict and time),
    /// and, when `policy_digest` is given, only if the envelope names that policy digest.
    fn record(
        &self,
        digest: &str,
        row: stellaops_store::scans::VerdictRow,
        policy_digest: Option<&str>,
    ) -> ScanRecord {
        let stellaops_store::scans::VerdictRow {
            verdict,
            finished_at,
            attestation_key: key,
            attestation: envelope,
        } = row;
        match stellaops_store::attestation::check_row(
            &self.verdict_keys.current(),
            digest,
            &verdict,
            key.as_deref(),
            envelope.as_deref(),
        ) {
            Ok(signed) if policy_digest.is_some_and(|p| p != signed.policy_digest) => ScanRecord {
                verdict: verdict_of(&verdict),
                finished_at,
                unverified: Some(format!(
                    "its signed verdict names policy {} where the row says {}",
                    signed.policy_digest,
                    policy_digest.unwrap_or_default()
                )),
            },
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
    }
}
