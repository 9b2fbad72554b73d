//! `stellaops-worker scan IMAGE`: registry → layers (cached per layer digest in S3) →
//! inventory with package URLs → CycloneDX SBOM in S3 → findings against the canonical
//! advisories → verdict, all recorded in PostgreSQL with a `report.ready` event. The
//! analysis itself (analyzers, Usage view, SBOM writers, matching, judging) is
//! `stellaops_scanner`'s; this module pulls, caches, stores and records.

pub mod attach;
pub mod diff;
pub mod explain;
pub mod stages;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use stellaops_policy::vex::consensus::purl_base;
use stellaops_scanner::analyze::{self, Fragment};
use stellaops_scanner::judge::{self, Evidence, Exploitation};
use stellaops_scanner::{
    AdvisoryRow, Component, Finding, Merged, Policy, cyclonedx, match_components,
    merge_leaving_out, spdx, usage, usage_cyclonedx,
};

use crate::registry::{ImageReference, Manifest, RegistryClient, RegistryError};

/// Look up the evidence `findings` need to be judged (four queries, whatever their
/// number): every id of their advisories, the VEX statements about them, their KEV/EPSS
/// signals and their advisories' sources.
pub async fn evidence<'a>(
    pool: &PgPool,
    findings: impl IntoIterator<Item = &'a Finding>,
) -> anyhow::Result<Evidence> {
    let mut hashes = Vec::new();
    let mut bases = Vec::new();
    for f in findings {
        hashes.push(f.merge_hash.clone());
        bases.extend(purl_base(&f.purl));
    }
    hashes.sort();
    hashes.dedup();
    bases.sort();
    bases.dedup();
    if hashes.is_empty() {
        return Ok(Evidence::default());
    }
    // The sources need only the advisories; the statements and signals their ids: two
    // round trips of two queries each.
    let (ids, sources) = tokio::join!(
        stellaops_store::advisories::ids_of(pool, &hashes),
        stellaops_store::advisories::sources_of(pool, &hashes)
    );
    let (ids, sources) = (ids?, sources?);
    let mut all_ids: Vec<String> = ids.values().flatten().cloned().collect();
    all_ids.sort();
    all_ids.dedup();
    let cves: Vec<String> = all_ids
        .iter()
        .filter(|id| id.starts_with("CVE-"))
        .cloned()
        .collect();
    let (claims, signals) = tokio::join!(
        stellaops_store::vex::claims(pool, &all_ids, &bases),
        stellaops_store::exploits::signals(pool, &cves)
    );
    let claims = claims?;
    let signals = signals?
        .into_iter()
        .map(|(cve, s)| {
            let signal = Exploitation {
                kev: s.kev_since.is_some(),
                epss: s.epss,
            };
            (cve, signal)
        })
        .collect();
    Ok(Evidence::new(ids, claims, signals, sources))
}

/// Read the advisory rows for `components` and the snapshot they were read at.
pub async fn advisories_for(
    pool: &PgPool,
    components: &[Component],
) -> anyhow::Result<(Vec<AdvisoryRow>, i64)> {
    Ok(stellaops_store::advisories::matching_rows(pool, &affects_keys(components)).await?)
}

/// Every affects key of `components`, sorted, once.
fn affects_keys(components: &[Component]) -> Vec<String> {
    components
        .iter()
        .flat_map(|c| c.affects_keys.iter().map(|k| k.key.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// What a finished scan records.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanSummary {
    /// Row id in `scan_results`.
    pub scan_id: i64,
    /// Image as asked.
    pub image: String,
    /// Digest scanned.
    pub image_digest: String,
    /// SBOM location.
    pub sbom_uri: String,
    /// `sha256:` of the SBOM bytes.
    pub sbom_sha256: String,
    /// Components in the SBOM.
    pub components: i64,
    /// Findings by severity.
    pub findings: BTreeMap<&'static str, i64>,
    /// Verdict.
    pub verdict: &'static str,
    /// Advisory snapshot matched against.
    pub advisory_snapshot: i64,
    /// Layers analysed now / taken from the cache.
    pub layers_analysed: usize,
    /// Layers taken from the cache (all of them when the image's analysis was).
    pub layers_cached: usize,
    /// Cached fragments refused by their seal (forged, changed, another key or layer) and
    /// analysed again.
    pub layers_refused: usize,
    /// The image's whole analysis (its layers stacked, the Usage view) was read from the
    /// cache: this image manifest was scanned before by this analyzer.
    pub analysis_cached: bool,
    /// Compressed size of the image's layers, as the manifest gives it (the operator files
    /// scan latency by it); 0 when the result was reused without reading the manifest.
    pub image_bytes: u64,
    /// The Usage SBOM (used components only), when the entrypoint could be followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_sbom_uri: Option<String>,
    /// `sha256:` of the Usage SBOM bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_sbom_sha256: Option<String>,
    /// Components the entrypoint uses (`None`: not known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_components: Option<i64>,
    /// The entrypoint chain, `path (where it came from)` per step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// Language packages left out of the inventory because a package of the
    /// distribution installed their files (its advisories cover them; see
    /// `usage::Stacked::remove_distro_installed`).
    #[serde(skip_serializing_if = "is_zero")]
    pub distro_installed: usize,
    /// Time the Usage view took (trace, closure, ownership), in microseconds.
    pub usage_micros: u64,
    /// Wall-clock time of each stage of this run, in the order they ended.
    pub stages: Vec<stages::Stage>,
    /// What this run wrote, kept for attaching it (none when the result was reused: then
    /// the objects are read back).
    #[serde(skip)]
    pub recorded: RecordedBytes,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The SBOMs and the signed verdict a scan just recorded, as written.
#[derive(Clone, Default)]
pub struct RecordedBytes {
    /// The CycloneDX inventory.
    pub sbom: Option<Vec<u8>>,
    /// The SPDX inventory.
    pub spdx: Option<Vec<u8>>,
    /// The DSSE envelope of the verdict.
    pub envelope: Option<Vec<u8>>,
}

/// Sizes only: the bytes are large.
impl std::fmt::Debug for RecordedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = |b: &Option<Vec<u8>>| b.as_ref().map(Vec::len);
        f.debug_struct("RecordedBytes")
            .field("sbom", &len(&self.sbom))
            .field("spdx", &len(&self.spdx))
            .field("envelope", &len(&self.envelope))
            .finish()
    }
}

/// Who asked (the Scan), for the record.
#[derive(Clone, Debug, Default)]
pub struct Requester {
    /// Namespace.
    pub namespace: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// UID.
    pub uid: Option<String>,
}

/// What [`record`] stored.
pub struct Recorded {
    /// Row id in `scan_results`.
    pub id: i64,
    /// The verdict.
    pub verdict: &'static str,
    /// Findings that count, by severity (VEX and waivers taken out).
    pub counts: BTreeMap<&'static str, i64>,
    /// The signed verdict envelope recorded with it, when the job signs.
    pub envelope: Option<Vec<u8>>,
}

/// The Usage SBOM a result points to: `s3://…`, `sha256:…`, components used.
pub type UsageRecord<'a> = (&'a str, &'a str, i32);

/// Record a scan, its findings (with what decided each: VEX, a rule, the thresholds) and
/// package index, and the `report.ready` event, in one transaction.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    pool: &PgPool,
    requester: &Requester,
    image: &str,
    digest: &str,
    snapshot: i64,
    sbom: (&str, &str),
    components: &[Component],
    findings: &[Finding],
    policy: &Policy,
    started: chrono::DateTime<chrono::Utc>,
    attest: Option<&Attest<'_>>,
) -> anyhow::Result<Recorded> {
    record_with(
        pool,
        requester,
        image,
        digest,
        snapshot,
        sbom,
        components,
        findings,
        policy,
        started,
        attest,
        None,
        async { Ok(()) },
    )
    .await
}

/// [`record`], pointing the result at its Usage SBOM (`usage`) too, with `written` the
/// writes of the objects the row names (its SBOMs): they run, once the evidence is read and
/// the verdict signed, beside the signed verdict's write; the rows are inserted and
/// committed only when both have succeeded, so no committed row names a missing object.
#[allow(clippy::too_many_arguments)]
pub async fn record_with(
    pool: &PgPool,
    requester: &Requester,
    image: &str,
    digest: &str,
    snapshot: i64,
    sbom: (&str, &str),
    components: &[Component],
    findings: &[Finding],
    policy: &Policy,
    started: chrono::DateTime<chrono::Utc>,
    attest: Option<&Attest<'_>>,
    usage: Option<UsageRecord<'_>>,
    written: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<Recorded> {
    let evidence = evidence(pool, findings).await?;
    let judged = judge::judge(
        &evidence,
        digest,
        requester.namespace.as_deref(),
        judge::repository_of(image),
        findings,
        components,
        policy,
        jiff::Timestamp::now(),
    );
    let verdict = judged.verdict;
    let c = judged.counts.clone();
    // The signed verdict, in S3 before the row that references it commits.
    let attestation = match attest {
        Some(a) => {
            let predicate = stellaops_store::attestation::VerdictPredicate {
                image: image.to_string(),
                verdict: verdict.to_string(),
                findings: stellaops_store::attestation::FindingCounts {
                    critical: c["critical"],
                    high: c["high"],
                    medium: c["medium"],
                    low: c["low"],
                },
                sbom: stellaops_store::attestation::SbomRef {
                    uri: sbom.0.to_string(),
                    sha256: sbom.1.to_string(),
                },
                advisory_snapshot: snapshot,
                policy_digest: judged.policy_digest.to_string(),
                scanned_at: chrono::Utc::now(),
            };
            let envelope = a.signer.sign(digest, &predicate);
            let key = stellaops_store::attestation::object_key(&envelope);
            Some((key, envelope))
        }
        None => None,
    };
    let envelope_written = async {
        match (attest, &attestation) {
            (Some(a), Some((key, envelope))) => {
                put_object(
                    a.s3,
                    a.bucket,
                    key,
                    envelope.clone(),
                    "application/vnd.dsse.envelope.v1+json",
                )
                .await
            }
            _ => Ok(()),
        }
    };
    let rows = async {
        let mut tx = pool.begin().await?;
        let new_findings: Vec<_> = findings
            .iter()
            .zip(&judged.decided)
            .map(|(f, d)| stellaops_store::scans::NewFinding {
                merge_hash: f.merge_hash.clone(),
                vuln_id: f.vuln_id.clone(),
                purl: f.purl.clone(),
                severity: f.severity.clone(),
                fixed_version: f.fixed_version.clone(),
                layer_digest: f.layer.clone(),
                outcome: serde_json::to_value(d.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                decided_by: d.decided_by.clone(),
                reason: d.reason.clone(),
            })
            .collect();
        let packages: Vec<_> = components
            .iter()
            .flat_map(|comp| {
                comp.affects_keys
                    .iter()
                    .map(|key| stellaops_store::scans::NewPackage {
                        affects_key: key.key.clone(),
                        purl: comp.purl.clone(),
                        version: key.version.clone(),
                        layer_digest: comp.layer.clone(),
                        used_by_entrypoint: comp.used_by_entrypoint,
                    })
            })
            .collect();
        let id = stellaops_store::scans::insert_result(
            &mut tx,
            &stellaops_store::scans::NewResult {
                image_digest: digest,
                image_ref: image,
                advisory_snapshot: snapshot,
                scan_namespace: requester.namespace.as_deref(),
                scan_name: requester.name.as_deref(),
                scan_uid: requester.uid.as_deref(),
                sbom_uri: sbom.0,
                sbom_sha256: sbom.1,
                components: components.len() as i32,
                counts: ["critical", "high", "medium", "low"].map(|s| c[s] as i32),
                verdict,
                policy: serde_json::to_value(policy)?,
                policy_digest: Some(&judged.policy_digest),
                started_at: started,
                attestation: attestation
                    .as_ref()
                    .map(|(key, envelope)| (key.as_str(), envelope.as_slice())),
            },
            &new_findings,
            &packages,
        )
        .await?;
        let licenses: Vec<_> = components
            .iter()
            .filter_map(|c| {
                let d = c.license.as_ref()?;
                Some(stellaops_store::scans::NewLicense {
                    purl: c.purl.clone(),
                    declared: d.expression.clone(),
                    ids: d.ids.clone(),
                })
            })
            .collect();
        stellaops_store::scans::insert_licenses(
            &mut tx,
            id,
            digest,
            &licenses,
            &license_decisions(&judged.licenses),
        )
        .await?;
        let highest = ["critical", "high", "medium", "low"]
            .into_iter()
            .find(|s| c[s] > 0)
            .map(str::to_string);
        stellaops_store::outbox::publish(
            &mut *tx,
            &stellaops_store::outbox::NewEvent {
                kind: "report.ready".into(),
                namespace: requester.namespace.clone(),
                subject: format!("{image}@{digest}"),
                severity: highest,
                payload: json!({"scanId": id, "image": image, "imageDigest": digest, "verdict": verdict,
                                "findings": c, "sbom": {"uri": sbom.0, "sha256": sbom.1, "components": components.len()},
                                "scan": {"namespace": requester.namespace, "name": requester.name}}),
                idempotency_key: format!("report.ready/{id}"),
            },
        )
        .await?;
        if let Some((uri, sha, used)) = usage {
            stellaops_store::scans::set_usage(&mut tx, id, uri, sha, used).await?;
        }
        anyhow::Ok((tx, id))
    };
    // The objects first, then the rows: the result's INSERT takes the lock that makes result
    // ids commit in order (migration 0021), held until the commit, so no upload runs under it.
    let (envelope_written, written) = tokio::join!(envelope_written, written);
    envelope_written?;
    written?;
    let (tx, id) = rows.await?;
    tx.commit().await?;
    Ok(Recorded {
        id,
        verdict,
        counts: c,
        envelope: attestation.map(|(_, envelope)| envelope),
    })
}

/// The license decisions of a judgement as the store keeps them.
pub fn license_decisions(
    judged: &[judge::JudgedLicense],
) -> Vec<stellaops_store::scans::LicenseDecision> {
    judged
        .iter()
        .map(|l| stellaops_store::scans::LicenseDecision {
            purl: l.purl.clone(),
            license: l.license.clone(),
            outcome: l.outcome.to_string(),
            decided_by: l.decided_by.clone(),
            reason: l.reason.clone(),
        })
        .collect()
}

/// The components of `digest`'s stored inventory that declare a license, as license
/// rules need them (package URL and license only): what judging without the image uses.
pub async fn stored_licenses(pool: &PgPool, digest: &str) -> anyhow::Result<Vec<Component>> {
    let stored = stellaops_store::scans::licenses_of(pool, &[digest.to_string()]).await?;
    Ok(stored
        .into_values()
        .flatten()
        .map(|(purl, (declared, ids))| stellaops_scanner::licensed_component(purl, declared, ids))
        .collect())
}

/// The verdict signing key and the bucket its envelopes go to.
pub struct Attest<'a> {
    /// The key (from the platform namespace's signing Secret).
    pub signer: &'a stellaops_store::attestation::VerdictSigner,
    /// S3 client.
    pub s3: &'a aws_sdk_s3::Client,
    /// Bucket (`attest/<sha256>.dsse.json`).
    pub bucket: &'a str,
}

/// The job's signing key with its bucket, when it has one.
fn attest<'a>(job: &ScanJob<'a>) -> Option<Attest<'a>> {
    job.signer.map(|signer| Attest {
        signer,
        s3: job.s3,
        bucket: job.bucket,
    })
}

/// Settings of one scan run.
pub struct ScanJob<'a> {
    /// Signs each verdict (none: results are recorded unsigned, and nothing trusts them).
    pub signer: Option<&'a stellaops_store::attestation::VerdictSigner>,
    /// Registry client (with the pull secrets).
    pub registry: &'a RegistryClient,
    /// S3 client and bucket for SBOMs and the layer cache.
    pub s3: &'a aws_sdk_s3::Client,
    /// Bucket.
    pub bucket: &'a str,
    /// Database.
    pub pool: &'a PgPool,
    /// `os/arch[/variant]` chosen from an index.
    pub platform: &'a str,
    /// Policy.
    pub policy: Policy,
    /// Who asked.
    pub requester: Requester,
    /// Also write an SPDX 2.3 document.
    pub spdx: bool,
    /// Scratch directory for layer blobs.
    pub scratch: &'a std::path::Path,
    /// Scan even when this digest has a result at the current advisory snapshot.
    pub force: bool,
}

/// When `digest` was already scanned at the current advisory snapshot: record that
/// result again for this requester (findings copied, verdict under this policy) without
/// touching the registry's layers.
async fn reuse(
    job: &ScanJob<'_>,
    image: &str,
    digest: &str,
) -> anyhow::Result<Option<ScanSummary>> {
    let mut tx = job.pool.begin().await?;
    let snapshot = stellaops_store::advisories::snapshot(&mut *tx).await?;
    let Some(row) = stellaops_store::scans::reusable(&mut *tx, digest, snapshot).await? else {
        return Ok(None);
    };
    // A result is reused (and signed again) only when this key's signature on it verifies:
    // a row written by anything else is scanned afresh, never laundered into a signed one.
    if let Some(signer) = job.signer {
        let keys = stellaops_store::attestation::VerdictKeys::of(signer);
        if let Err(reason) = stellaops_store::attestation::check_row(
            &keys,
            digest,
            &row.verdict,
            row.attestation_key.as_deref(),
            row.attestation.as_deref(),
        ) {
            eprintln!("not reusing the earlier result of {digest}: {reason}");
            return Ok(None);
        }
    }
    let mut findings = stellaops_store::scans::findings_of(&mut *tx, row.id).await?;
    tx.commit().await?;
    let used = stellaops_store::scans::usage_of(job.pool, digest).await?;
    for f in &mut findings {
        f.used_by_entrypoint = used.get(&f.purl).copied();
    }
    let usage = (
        row.usage_sbom_uri,
        row.usage_sbom_sha256,
        row.used_components,
    );
    let (sbom_uri, sbom_sha, components) = (row.sbom_uri, row.sbom_sha256, row.components);
    // License rules judge the stored inventory's declared licenses.
    let licensed = stored_licenses(job.pool, digest).await?;
    let Recorded {
        id: scan_id,
        verdict,
        counts: counted,
        envelope,
    } = record_with(
        job.pool,
        &job.requester,
        image,
        digest,
        snapshot,
        (&sbom_uri, &sbom_sha),
        &licensed,
        &findings,
        &job.policy,
        chrono::Utc::now(),
        attest(job).as_ref(),
        match (&usage.0, &usage.1, usage.2) {
            (Some(uri), Some(sha), Some(used)) => Some((uri.as_str(), sha.as_str(), used)),
            _ => None,
        },
        async { Ok(()) },
    )
    .await?;
    stellaops_store::scans::set_components(job.pool, scan_id, components).await?;
    Ok(Some(ScanSummary {
        scan_id,
        image: image.to_string(),
        image_digest: digest.to_string(),
        sbom_uri,
        sbom_sha256: sbom_sha,
        components: i64::from(components),
        findings: counted,
        verdict,
        advisory_snapshot: snapshot,
        layers_analysed: 0,
        layers_cached: 0,
        layers_refused: 0,
        analysis_cached: false,
        image_bytes: 0,
        usage_sbom_uri: usage.0,
        usage_sbom_sha256: usage.1,
        used_components: usage.2.map(i64::from),
        entrypoint: Vec::new(),
        distro_installed: 0,
        usage_micros: 0,
        stages: Vec::new(),
        recorded: RecordedBytes {
            envelope,
            ..RecordedBytes::default()
        },
    }))
}

/// Choose the platform's manifest from an index.
pub fn select_platform(index: &Value, platform: &str) -> Option<String> {
    let mut want = platform.split('/');
    let (os, arch, variant) = (want.next()?, want.next()?, want.next());
    index["manifests"].as_array()?.iter().find_map(|m| {
        let p = &m["platform"];
        (p["os"].as_str() == Some(os)
            && p["architecture"].as_str() == Some(arch)
            && variant.is_none_or(|v| p["variant"].as_str() == Some(v)))
        .then(|| m["digest"].as_str().map(str::to_string))
        .flatten()
    })
}

fn is_index(manifest: &Manifest, json: &Value) -> bool {
    manifest.media_type.contains("index")
        || manifest.media_type.contains("manifest.list")
        || json.get("manifests").is_some()
}

/// Largest cached fragment object read (compressed), and the most it may decompress to.
const MAX_FRAGMENT_OBJECT: usize = 64 << 20;
const MAX_FRAGMENT_BYTES: u64 = 512 << 20;

/// What the layer cache holds for a layer.
enum Cached {
    /// Nothing usable and nothing wrong: no object, or one of another analyzer version.
    Miss,
    /// A fragment the scanner sealed for this layer and analyzer.
    Hit(Fragment),
    /// An object that fails its check: why (the message continues "it …").
    Refused(String),
}

/// The cached fragment of `layer` at `key`, checked against its seal.
async fn cached_fragment(
    job: &ScanJob<'_>,
    fragment_key: &stellaops_store::layer_cache::FragmentKey,
    layer: &str,
) -> anyhow::Result<Cached> {
    let key = stellaops_store::s3::layout::layer_fragment(layer);
    let bytes = match get_object_capped(job.s3, job.bucket, &key, MAX_FRAGMENT_OBJECT).await? {
        Capped::Missing => return Ok(Cached::Miss),
        Capped::TooLarge => {
            return Ok(Cached::Refused(format!(
                "is larger than {MAX_FRAGMENT_OBJECT} bytes"
            )));
        }
        Capped::Bytes(bytes) => bytes,
    };
    let (fragment_key, layer) = (fragment_key.clone(), layer.to_string());
    Ok(tokio::task::spawn_blocking(move || open_fragment(&fragment_key, &layer, &bytes)).await?)
}

/// The fragment in a cached object's `bytes`, checked against its seal.
fn open_fragment(
    fragment_key: &stellaops_store::layer_cache::FragmentKey,
    layer: &str,
    bytes: &[u8],
) -> Cached {
    let object = match decompress_capped(bytes) {
        Ok(object) => object,
        Err(why) => return Cached::Refused(why),
    };
    use stellaops_store::layer_cache::FragmentRefusal;
    match fragment_key.open(layer, analyze::ANALYZER_VERSION, &object) {
        Ok(body) => match serde_json::from_slice::<Fragment>(body) {
            Ok(fragment) if fragment.analyzer == analyze::ANALYZER_VERSION => Cached::Hit(fragment),
            Ok(_) => Cached::Refused("names another analyzer version inside than its seal".into()),
            Err(e) => Cached::Refused(format!("is sealed but not a fragment: {e}")),
        },
        Err(FragmentRefusal::Stale(_)) => Cached::Miss,
        Err(FragmentRefusal::Refused(why)) => Cached::Refused(why),
    }
}

/// A cached object's zstd `bytes` decompressed, at most [`MAX_FRAGMENT_BYTES`] of them;
/// why not (the message continues "it …").
fn decompress_capped(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let mut object = Vec::new();
    zstd::stream::read::Decoder::new(bytes)
        .and_then(|d| d.take(MAX_FRAGMENT_BYTES + 1).read_to_end(&mut object))
        .map_err(|_| "is not zstd".to_string())?;
    if object.len() as u64 > MAX_FRAGMENT_BYTES {
        return Err(format!(
            "decompresses to more than {MAX_FRAGMENT_BYTES} bytes"
        ));
    }
    Ok(object)
}

/// An object read with a size cap.
enum Capped {
    Missing,
    TooLarge,
    Bytes(Vec<u8>),
}

async fn get_object_capped(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    cap: usize,
) -> anyhow::Result<Capped> {
    let mut object = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => object,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
            return Ok(Capped::Missing);
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "reading s3://{bucket}/{key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            ));
        }
    };
    if object
        .content_length()
        .is_some_and(|n| n < 0 || n as u64 > cap as u64)
    {
        return Ok(Capped::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = object
        .body
        .try_next()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?
    {
        if out.len() + chunk.len() > cap {
            return Ok(Capped::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Capped::Bytes(out))
}

/// Write `bytes` to `s3://bucket/key`.
pub(crate) async fn put_object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    content_type: &str,
) -> anyhow::Result<()> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(bytes.into())
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "writing s3://{bucket}/{key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        })?;
    Ok(())
}

/// Scan `image`: everything from the registry to the recorded verdict. Each stage is a span
/// (`scan.pull` for the manifest and each layer, `scan.analyze` per layer, `scan.match`,
/// `scan.store`), children of the current one; the layers' progress is shown as it goes.
pub async fn scan(job: &ScanJob<'_>, image: &str) -> anyhow::Result<ScanSummary> {
    use stellaops_telemetry::{Attribute, in_span};
    let started = chrono::Utc::now();
    let mut stages = stages::Stages::new();
    let reference: ImageReference = image
        .parse()
        .map_err(|e: RegistryError| anyhow::anyhow!("{e}"))?;
    let top = in_span(
        "scan.pull",
        vec![
            Attribute::new("scan.image", image.to_string()),
            Attribute::new("scan.object", "manifest"),
        ],
        job.registry.fetch_manifest(&reference),
    )
    .await?;
    let digest = top.digest.clone();
    stages.mark("manifest");
    if !job.force
        && let Some(mut summary) = reuse(job, image, &digest).await?
    {
        stages.mark("reuse");
        summary.stages = stages.into_vec();
        return Ok(summary);
    }
    let mut json: Value = serde_json::from_slice(&top.bytes).context("the manifest is not JSON")?;
    // The image manifest (the platform's, for an index): its digest names the config and
    // every layer, so it names the whole analysis too.
    let mut manifest_digest = digest.clone();
    if is_index(&top, &json) {
        let chosen = select_platform(&json, job.platform).ok_or_else(|| {
            anyhow::anyhow!("{image} has no manifest for platform {}", job.platform)
        })?;
        let mut by_digest = reference.clone();
        by_digest.reference = crate::registry::Reference::Digest(chosen);
        let manifest = in_span(
            "scan.pull",
            vec![
                Attribute::new("scan.image", image.to_string()),
                Attribute::new("scan.object", "platform manifest"),
            ],
            job.registry.fetch_manifest(&by_digest),
        )
        .await?;
        json = serde_json::from_slice(&manifest.bytes).context("the manifest is not JSON")?;
        manifest_digest = manifest.digest;
    }
    let layers: Vec<(String, String, Option<u64>)> = json["layers"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("{image}: the manifest lists no layers"))?
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap_or_default().to_string(),
                l["mediaType"].as_str().unwrap_or_default().to_string(),
                l["size"].as_u64(),
            )
        })
        .collect();
    for (layer, _, _) in &layers {
        if !layer.starts_with("sha256:") {
            anyhow::bail!("{image}: layer digest {layer:?} is not sha256");
        }
    }
    let image_bytes: u64 = layers.iter().filter_map(|(_, _, size)| *size).sum();
    // Fragments and image analyses are reused only when sealed by the key only platform
    // scan workers hold (derived from the verdict key); without it the cache is neither
    // read nor written.
    let fragment_key = job
        .signer
        .map(stellaops_store::layer_cache::FragmentKey::derive);
    let analysis_key =
        stellaops_store::s3::layout::image_analysis(&manifest_digest, analyze::ANALYZER_VERSION);
    let cached_analysis = match &fragment_key {
        Some(fragment_key) => {
            cached_image_analysis(job, fragment_key, &analysis_key, &manifest_digest).await?
        }
        None => None,
    };
    let analysis_cached = cached_analysis.is_some();
    let (analysis, counts, sealed_analysis) = match cached_analysis {
        Some(analysis) => {
            let wanted = layers.iter().filter(|(_, m, _)| !skipped(m)).count();
            (analysis, (0, wanted, 0), None)
        }
        None => {
            let (analysis, counts) = analyse_layers(
                job,
                image,
                &reference,
                &json,
                &layers,
                fragment_key.as_ref(),
                &mut stages,
            )
            .await?;
            // Sealed like a fragment, for the next scan of this very image.
            let sealed = match &fragment_key {
                Some(fragment_key) => Some(zstd::encode_all(
                    fragment_key
                        .seal(
                            &stellaops_store::layer_cache::image_subject(&manifest_digest),
                            analyze::ANALYZER_VERSION,
                            &serde_json::to_vec(&analysis)?,
                        )
                        .as_slice(),
                    3,
                )?),
                None => None,
            };
            (analysis, counts, sealed)
        }
    };
    stages.mark(if analysis_cached {
        "analysis-cached"
    } else {
        "usage"
    });
    let ImageAnalysis {
        components,
        os,
        view,
        usage_micros,
        distro_installed,
        ..
    } = analysis;
    let (rows, snapshot) = in_span(
        "scan.match",
        vec![Attribute::new("scan.components", components.len() as i64)],
        advisories_for(job.pool, &components),
    )
    .await?;
    let findings = match_components(&components, &rows);
    stages.mark("match");
    // The SBOMs, content-addressed: the key names the bytes, so no later scan of this digest
    // (other reference, other advisories, forced) can replace an SBOM a result points to.
    let sbom = cyclonedx(image, &digest, &components, os.as_ref());
    let sbom_sha = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&sbom))
    );
    let sbom_key = stellaops_store::s3::layout::image_inventory(&sbom_sha);
    let spdx_bytes = job.spdx.then(|| spdx(image, &digest, &components));
    // The Usage SBOM beside it: the used components and how the entrypoint was followed.
    // None when nothing is known about use.
    let usage_sbom = view.known().then(|| {
        let bytes = usage_cyclonedx(image, &digest, &components, os.as_ref(), &view);
        let sha = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
        );
        let key = stellaops_store::s3::layout::image_usage(&sha);
        (key, sha, bytes)
    });
    stages.mark("sboms");
    let mut objects = vec![(
        sbom_key.clone(),
        sbom.clone(),
        "application/vnd.cyclonedx+json",
    )];
    if let Some(bytes) = &spdx_bytes {
        objects.push((
            stellaops_store::s3::layout::image_inventory_spdx(&sbom_sha),
            bytes.clone(),
            "application/spdx+json",
        ));
    }
    if let Some((key, _, bytes)) = &usage_sbom {
        objects.push((key.clone(), bytes.clone(), "application/vnd.cyclonedx+json"));
    }
    if let Some(sealed) = sealed_analysis {
        objects.push((analysis_key.clone(), sealed, "application/zstd"));
    }
    // Written while the verdict is signed and stored; the rows are inserted after.
    // Its span is a sibling of the verdict's, under the scan's: it is first polled inside
    // the verdict's span, so the scan's context is fixed here.
    let written = stellaops_telemetry::FutureExt::with_context(
        in_span(
            "scan.store",
            vec![Attribute::new("scan.object", "sbom")],
            async {
                futures::future::try_join_all(objects.into_iter().map(
                    |(key, bytes, content_type)| async move {
                        put_object(job.s3, job.bucket, &key, bytes, content_type).await
                    },
                ))
                .await?;
                anyhow::Ok(())
            },
        ),
        stellaops_telemetry::TraceContext::current(),
    );
    let sbom_uri = format!("s3://{}/{sbom_key}", job.bucket);
    let usage_sbom = usage_sbom.map(|(key, sha, _)| (format!("s3://{}/{key}", job.bucket), sha));
    let used_components = view.known().then_some(view.used as i64);
    // The verdict and its `report.ready` event (the event carries this span's trace
    // context).
    let Recorded {
        id: scan_id,
        verdict,
        counts: counted,
        envelope,
    } = in_span(
        "scan.store",
        vec![
            Attribute::new("scan.object", "verdict"),
            Attribute::new("scan.findings", findings.len() as i64),
        ],
        record_with(
            job.pool,
            &job.requester,
            image,
            &digest,
            snapshot,
            (&sbom_uri, &sbom_sha),
            &components,
            &findings,
            &job.policy,
            started,
            attest(job).as_ref(),
            usage_sbom
                .as_ref()
                .zip(used_components)
                .map(|((uri, sha), used)| (uri.as_str(), sha.as_str(), used as i32)),
            written,
        ),
    )
    .await?;
    stages.mark("record");
    let (analysed, cached, refused) = counts;
    Ok(ScanSummary {
        scan_id,
        image: image.to_string(),
        image_digest: digest,
        sbom_uri,
        sbom_sha256: sbom_sha,
        components: components.len() as i64,
        findings: counted,
        verdict,
        advisory_snapshot: snapshot,
        layers_analysed: analysed,
        layers_cached: cached,
        layers_refused: refused,
        analysis_cached,
        image_bytes,
        usage_sbom_uri: usage_sbom.as_ref().map(|(u, _)| u.clone()),
        usage_sbom_sha256: usage_sbom.map(|(_, s)| s),
        used_components,
        entrypoint: view
            .trace
            .chain
            .iter()
            .map(|s| format!("{} ({})", s.path, s.from))
            .collect(),
        distro_installed,
        usage_micros,
        stages: stages.into_vec(),
        recorded: RecordedBytes {
            sbom: Some(sbom),
            spdx: spdx_bytes,
            envelope,
        },
    })
}

/// Layers the scanner never reads (foreign and non-distributable ones).
fn skipped(media_type: &str) -> bool {
    media_type.contains("foreign") || media_type.contains("nondistributable")
}

/// What one image manifest comes to once its layers are stacked and its entrypoint
/// followed: everything a scan needs of the image besides the advisories. A function of
/// the manifest digest (which names the config and every layer) and the analyzer, so it is
/// kept, sealed, under both (`scanner/images/<hex>/analysis.v<N>.json.zst`) and a forced
/// rescan of the same image reads it instead of its layers' fragments.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
struct ImageAnalysis {
    /// Analyzer version that made it (also in the key and the seal).
    analyzer: u32,
    /// Components, sorted by package URL, with their use by the entrypoint.
    components: Vec<Component>,
    /// The OS release of the stacked layers.
    os: Option<stellaops_scanner::analyze::OsRelease>,
    /// The Usage view.
    view: usage::UsageView,
    /// Language packages left out because a distribution package installed their files.
    #[serde(default)]
    distro_installed: usize,
    /// Time the Usage view took when it was worked out, in microseconds (0 when read from
    /// the cache).
    #[serde(skip)]
    usage_micros: u64,
}

/// The cached analysis of the image manifest `manifest_digest` at `key`, when the scanner
/// sealed one for it with this key and analyzer; anything else is analysed again (a
/// refused object is logged).
async fn cached_image_analysis(
    job: &ScanJob<'_>,
    fragment_key: &stellaops_store::layer_cache::FragmentKey,
    key: &str,
    manifest_digest: &str,
) -> anyhow::Result<Option<ImageAnalysis>> {
    let bytes = match get_object_capped(job.s3, job.bucket, key, MAX_FRAGMENT_OBJECT).await? {
        Capped::Missing => return Ok(None),
        Capped::TooLarge => {
            tracing::warn!(object = %format!("s3://{}/{key}", job.bucket), "image analysis refused: larger than {MAX_FRAGMENT_OBJECT} bytes; analysing the layers");
            return Ok(None);
        }
        Capped::Bytes(bytes) => bytes,
    };
    let (fragment_key, subject) = (
        fragment_key.clone(),
        stellaops_store::layer_cache::image_subject(manifest_digest),
    );
    let opened = tokio::task::spawn_blocking(move || {
        use stellaops_store::layer_cache::FragmentRefusal;
        let object = decompress_capped(&bytes)?;
        match fragment_key.open(&subject, analyze::ANALYZER_VERSION, &object) {
            Ok(body) => match serde_json::from_slice::<ImageAnalysis>(body) {
                Ok(analysis) if analysis.analyzer == analyze::ANALYZER_VERSION => {
                    Ok(Some(analysis))
                }
                Ok(_) => Err("names another analyzer version inside than its seal".to_string()),
                Err(e) => Err(format!("is sealed but not an image analysis: {e}")),
            },
            Err(FragmentRefusal::Stale(_)) => Ok(None),
            Err(FragmentRefusal::Refused(why)) => Err(why),
        }
    })
    .await?;
    match opened {
        Ok(analysis) => Ok(analysis),
        Err(why) => {
            tracing::warn!(
                object = %format!("s3://{}/{key}", job.bucket),
                "image analysis s3://{}/{key} refused: it {why}; analysing the layers of {manifest_digest}",
                job.bucket
            );
            Ok(None)
        }
    }
}

/// Every layer's fragment (from the layer cache, or pulled and analysed), stacked, with the
/// Usage view worked out over them; and how many layers were analysed, cached, refused.
#[allow(clippy::too_many_arguments)]
async fn analyse_layers(
    job: &ScanJob<'_>,
    image: &str,
    reference: &ImageReference,
    manifest: &Value,
    layers: &[(String, String, Option<u64>)],
    fragment_key: Option<&stellaops_store::layer_cache::FragmentKey>,
    stages: &mut stages::Stages,
) -> anyhow::Result<(ImageAnalysis, (usize, usize, usize))> {
    use stellaops_telemetry::{Attribute, in_span};
    let image_bytes: u64 = layers.iter().filter_map(|(_, _, size)| *size).sum();
    let progress = crate::progress::Progress::start(
        "scan",
        "layers",
        Some(layers.len() as u64),
        Some(image_bytes),
    );
    let mut fragments = Vec::new();
    let (mut analysed, mut cached, mut refused) = (0, 0, 0);
    // The image config and every layer's cached fragment, all at once: the reads overlap,
    // and each fragment is decoded on its own blocking thread.
    let run_config = async {
        match manifest["config"]["digest"].as_str() {
            Some(config_digest) => {
                let bytes = job
                    .registry
                    .fetch_blob(reference, config_digest)
                    .await
                    .with_context(|| format!("reading the image config {config_digest}"))?;
                let config: Value =
                    serde_json::from_slice(&bytes).context("the image config is not JSON")?;
                anyhow::Ok(usage::RunConfig::from_image_config(&config))
            }
            None => Ok(usage::RunConfig::default()),
        }
    };
    let lookups = futures::future::join_all(layers.iter().map(|(layer, media_type, _)| {
        let fragment_key = fragment_key.filter(|_| !skipped(media_type));
        async move {
            match fragment_key {
                Some(fragment_key) => cached_fragment(job, fragment_key, layer).await.map(Some),
                None => Ok(None),
            }
        }
    }));
    let (run_config, lookups) = tokio::join!(run_config, lookups);
    let run_config = run_config?;
    for ((layer, media_type, size), lookup) in layers.iter().zip(lookups) {
        if skipped(media_type) {
            progress.advance(1, size.unwrap_or(0));
            continue;
        }
        let key = stellaops_store::s3::layout::layer_fragment(layer);
        match lookup? {
            Some(Cached::Hit(fragment)) => {
                cached += 1;
                fragments.push((layer.clone(), fragment));
                progress.advance(1, size.unwrap_or(0));
                continue;
            }
            Some(Cached::Refused(why)) => {
                let fragment_key = fragment_key.expect("looked up with a key");
                refused += 1;
                tracing::warn!(
                    object = %format!("s3://{}/{key}", job.bucket),
                    %layer,
                    key = fragment_key.id(),
                    "layer-cache fragment s3://{}/{key} refused (checked with the fragment key of verdict key {}): it {why}; analysing layer {layer} again",
                    job.bucket,
                    fragment_key.id()
                );
            }
            Some(Cached::Miss) | None => {}
        }
        let file = job.scratch.join(layer.replace(':', "-"));
        // The descriptor's size bounds the download: a registry cannot fill the disk.
        let size = size
            .ok_or_else(|| anyhow::anyhow!("{image}: layer {layer} has no size in the manifest"))?;
        let layer_attributes = || {
            vec![
                Attribute::new("scan.layer", layer.clone()),
                Attribute::new("scan.layer_bytes", size as i64),
            ]
        };
        in_span(
            "scan.pull",
            layer_attributes(),
            job.registry.download_blob(reference, layer, size, &file),
        )
        .await
        .with_context(|| format!("downloading layer {layer}"))?;
        let path = file.clone();
        let fragment = in_span("scan.analyze", layer_attributes(), async {
            tokio::task::spawn_blocking(move || analyze::analyse_layer(&path))
                .await
                .map_err(anyhow::Error::from)?
                .with_context(|| {
                    format!("layer {layer} is not a readable (gzip, zstd or plain) tar")
                })
        })
        .await?;
        let _ = std::fs::remove_file(&file);
        if let Some(fragment_key) = fragment_key {
            let sealed = fragment_key.seal(
                layer,
                analyze::ANALYZER_VERSION,
                &serde_json::to_vec(&fragment)?,
            );
            let encoded = zstd::encode_all(sealed.as_slice(), 3)?;
            put_object(job.s3, job.bucket, &key, encoded, "application/zstd").await?;
        }
        analysed += 1;
        fragments.push((layer.clone(), fragment));
        progress.advance(1, size);
    }
    progress.finish();
    stages.mark("layers");
    // Stacked, and the Usage view worked out, on a blocking thread.
    let analysis = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let stacked = usage::Stacked::new(&fragments);
        let Merged {
            mut components,
            os,
            left_out,
        } = merge_leaving_out(&fragments, |path| stacked.distro_installed(path));
        if !left_out.is_empty() {
            tracing::debug!(
                packages = %left_out.iter().map(|c| c.purl.as_str()).collect::<Vec<_>>().join(" "),
                "language packages installed by the distribution's packages, left to their advisories"
            );
        }
        let view = stacked.usage(&run_config, &mut components);
        ImageAnalysis {
            analyzer: analyze::ANALYZER_VERSION,
            components,
            os,
            view,
            distro_installed: left_out.len(),
            usage_micros: started.elapsed().as_micros() as u64,
        }
    })
    .await?;
    Ok((analysis, (analysed, cached, refused)))
}

/// Run a scan and report it as JSON on stdout and as the Pod's termination message.
pub async fn run(job: &ScanJob<'_>, image: &str) -> anyhow::Result<ScanSummary> {
    run_and_attach(job, image, None).await
}

/// [`run`], then with `pusher` (`--attach`) attach what was recorded to the image as OCI
/// referrers. A failure to attach is reported (`attachError`) but does not undo the
/// recorded result: the verdict stands whether or not the registry took the artifacts.
pub async fn run_and_attach(
    job: &ScanJob<'_>,
    image: &str,
    pusher: Option<&RegistryClient>,
) -> anyhow::Result<ScanSummary> {
    let mut outcome = scan(job, image).await;
    let summary = match &mut outcome {
        Ok(s) => {
            let mut attached = None;
            if let Some(pusher) = pusher {
                let started = std::time::Instant::now();
                attached = Some(attach::attach(job, pusher, image, s).await);
                s.stages.push(stages::Stage {
                    name: "attach",
                    micros: started.elapsed().as_micros() as u64,
                });
            }
            tracing::info!(
                image,
                digest = %s.image_digest,
                stages = %stages::describe(&s.stages),
                "scan stages"
            );
            let mut v = serde_json::to_value(&*s)?;
            v["success"] = json!(true);
            match attached {
                Some(Ok(attached)) => v["attached"] = serde_json::to_value(attached)?,
                Some(Err(e)) => {
                    tracing::warn!(image, error = %format!("{e:#}"), "attaching failed");
                    v["attachError"] = json!(format!("{e:#}"));
                }
                None => {}
            }
            v
        }
        Err(e) => json!({"success": false, "image": image, "error": format!("{e:#}")}),
    };
    let text = summary.to_string();
    println!("{text}");
    crate::termination::write(&text);
    let _ = std::io::stdout().flush();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_selection() {
        let index = json!({"manifests": [
            {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}}]});
        assert_eq!(
            select_platform(&index, "linux/amd64").as_deref(),
            Some("sha256:amd")
        );
        assert_eq!(
            select_platform(&index, "linux/arm64/v8").as_deref(),
            Some("sha256:arm")
        );
        assert_eq!(select_platform(&index, "windows/amd64"), None);
    }
}
