//! `stellaops-worker evaluate`: re-match the stored inventories of images against the
//! current advisories without pulling them — new findings, a new verdict per image, and a
//! `rescan.delta` event for each image with new findings at or above a severity.
//!
//! Work goes in chunks (one query per table per chunk, one transaction of writes per
//! chunk), paced to the run's rate budget.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use sqlx::{PgPool, Row};

use std::sync::Arc;

use crate::scan::judge::{Decider, Evidence, Judged, judge_under, repository_of};
use crate::scan::{
    Component, Finding, MatchKey, Policy, advisories_for_keys, index_rows, match_indexed, rank,
};

/// How a batch of images is re-evaluated.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Most images evaluated per second (the run's `ratePerSecond`).
    pub rate_per_second: u32,
    /// Emit `rescan.delta` events.
    pub notify: bool,
    /// Only findings at or above this severity are new findings (all when `None`).
    pub min_severity: Option<String>,
    /// Who asked (recorded on each new result), e.g. the Schedule.
    pub namespace: Option<String>,
    /// Name of the asker.
    pub name: Option<String>,
    /// Run whose progress is recorded.
    pub run_id: Option<String>,
    /// Signs each re-evaluation's verdict and stores its envelope in the platform bucket.
    pub signer: Option<std::sync::Arc<Signing>>,
    /// Decide under this policy instead of each result's own. With a `policyRef` and no
    /// `run_id`, only the results recorded under that ScanPolicy are evaluated (the latest
    /// of each image for each Scan), each keeping its Scan so the Scan's status follows; a
    /// Schedule run (`run_id`) decides each image's latest result under it.
    pub policy: Option<Policy>,
    /// The clock waivers are judged by (`None`: now).
    pub now: Option<jiff::Timestamp>,
}

impl Settings {
    /// The settings a recorded Schedule run asks for.
    pub fn of_run(run: &stellaops_store::schedules::Run) -> Settings {
        Settings {
            rate_per_second: run.plan.rate_per_second.max(1) as u32,
            notify: run.plan.notify,
            min_severity: run.plan.min_severity.clone(),
            namespace: Some(run.plan.namespace.clone()),
            name: Some(run.plan.name.clone()),
            run_id: Some(run.plan.id.clone()),
            signer: None,
            policy: None,
            now: None,
        }
    }
}

/// The verdict signing key and where its envelopes go: every re-evaluation's verdict is
/// signed, written to `attest/<sha256>.dsse.json` in the platform bucket and referenced from
/// its row, exactly like a scan's, so whatever trusts a scan's verdict trusts it too.
pub struct Signing {
    /// The key (from the platform namespace's signing Secret).
    pub signer: stellaops_store::attestation::VerdictSigner,
    /// S3 client.
    pub s3: aws_sdk_s3::Client,
    /// The platform bucket.
    pub bucket: String,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("signer", &self.signer)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// Envelopes written to S3 at once.
const ENVELOPE_UPLOADS: usize = 16;

/// What a batch did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Images re-evaluated.
    pub evaluated: i64,
    /// Images without a stored inventory (never scanned): nothing to re-evaluate.
    pub never_scanned: i64,
    /// Images with new findings at or above the threshold.
    pub new_findings: i64,
    /// Images whose verdict or set of counted findings changed without new findings (a
    /// VEX statement, a waiver's expiry, a policy change).
    pub decisions_changed: i64,
    /// Verdicts after re-evaluation.
    pub verdicts: BTreeMap<String, i64>,
    /// `rescan.delta` events written.
    pub events: i64,
    /// Advisory snapshot matched against (the last chunk's).
    pub advisory_snapshot: i64,
}

struct Previous {
    id: i64,
    image_digest: String,
    image_ref: String,
    /// Who asked for it (a Scan): kept by a re-evaluation not made for a Schedule.
    scan_namespace: Option<String>,
    scan_name: Option<String>,
    scan_uid: Option<String>,
    sbom_uri: String,
    sbom_sha256: String,
    components: i32,
    /// The policy decided under (shared by every result when the run names one) and its
    /// decider's form, made once.
    policy: Arc<(Policy, Decider)>,
    verdict: String,
}

fn default_policy() -> Policy {
    Policy {
        fail_on: "high".into(),
        ..Default::default()
    }
}

/// Re-evaluate every result recorded under the ScanPolicy `policy.policy_ref` (the latest
/// of each image for each Scan) under `policy`: after the policy changed or one of its
/// waivers expired. Nothing is pulled; each Scan gets a new result it reads as its own.
pub async fn reevaluate_policy(
    pool: &PgPool,
    policy: &Policy,
    settings: &Settings,
) -> anyhow::Result<Report> {
    let name = policy
        .policy_ref
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("a policy re-evaluation needs the ScanPolicy's name"))?;
    let digests = stellaops_store::scans::digests_under_policy(pool, name).await?;
    let settings = Settings {
        policy: Some(policy.clone()),
        ..settings.clone()
    };
    evaluate(pool, &digests, &settings).await
}

/// Re-evaluate `digests`.
pub async fn evaluate(
    pool: &PgPool,
    digests: &[String],
    settings: &Settings,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let rate = settings.rate_per_second.max(1) as usize;
    let chunk_size = rate.clamp(1, 1000);
    let started = Instant::now();
    let mut done = 0usize;
    for chunk in digests.chunks(chunk_size) {
        // Pace: `done` images may have started by now at `rate` per second.
        let due = Duration::from_secs_f64(done as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        evaluate_chunk(pool, chunk, settings, &mut report).await?;
        done += chunk.len();
        if let Some(run) = &settings.run_id {
            stellaops_store::schedules::progress(pool, run, done as i64, report.new_findings)
                .await?;
        }
    }
    Ok(report)
}

async fn evaluate_chunk(
    pool: &PgPool,
    digests: &[String],
    settings: &Settings,
    report: &mut Report,
) -> anyhow::Result<()> {
    // A ScanPolicy's own re-evaluation takes the results decided under it; a Schedule run
    // naming one takes each selected image's latest result, whatever it was decided under,
    // and decides it under the named policy.
    let policy_ref = settings
        .policy
        .as_ref()
        .and_then(|p| p.policy_ref.as_deref())
        .filter(|_| settings.run_id.is_none());
    let rows = match (policy_ref, &settings.name) {
        // Under one ScanPolicy: each Scan's latest result of the image.
        (Some(name), _) => {
            sqlx::query(stellaops_store::scans::LATEST_UNDER_POLICY_SQL)
                .bind(digests)
                .bind(name)
                .fetch_all(pool)
                .await?
        }
        // A VEX change, `evaluate --digest`: the latest result under each policy the image
        // was decided under, each recorded again for its own Scan.
        (None, None) => {
            sqlx::query(stellaops_store::scans::LATEST_PER_POLICY_SQL)
                .bind(digests)
                .fetch_all(pool)
                .await?
        }
        // A Schedule's run: the image's latest result, recorded for the Schedule.
        (None, Some(_)) => sqlx::query(
            "SELECT DISTINCT ON (image_digest) id, image_digest, image_ref, sbom_uri, sbom_sha256,
                        components, policy, verdict, scan_namespace, scan_name, scan_uid
                 FROM scan_results WHERE image_digest = ANY($1)
                 ORDER BY image_digest, finished_at DESC, id DESC",
        )
        .bind(digests)
        .fetch_all(pool)
        .await?,
    };
    let shared = settings
        .policy
        .as_ref()
        .map(|p| Arc::new((p.clone(), Decider::of(p))));
    let previous: Vec<Previous> = rows
        .into_iter()
        .map(|r| {
            let policy = match &shared {
                Some(p) => p.clone(),
                None => {
                    let own: Policy = serde_json::from_value(r.get("policy"))
                        .unwrap_or_else(|_| default_policy());
                    let decider = Decider::of(&own);
                    Arc::new((own, decider))
                }
            };
            Previous {
                id: r.get("id"),
                image_digest: r.get("image_digest"),
                image_ref: r.get("image_ref"),
                scan_namespace: r.get("scan_namespace"),
                scan_name: r.get("scan_name"),
                scan_uid: r.get("scan_uid"),
                sbom_uri: r.get("sbom_uri"),
                sbom_sha256: r.get("sbom_sha256"),
                components: r.get("components"),
                policy,
                verdict: r.get("verdict"),
            }
        })
        .collect();
    let with_result: BTreeSet<&str> = previous.iter().map(|p| p.image_digest.as_str()).collect();
    report.never_scanned += (digests.len() - with_result.len()) as i64;
    if previous.is_empty() {
        return Ok(());
    }
    // The stored inventories, grouped back into components.
    let mut inventories: HashMap<String, BTreeMap<String, Component>> = HashMap::new();
    let mut keys = BTreeSet::new();
    for row in sqlx::query(
        "SELECT image_digest, purl, affects_key, version, layer_digest, used_by_entrypoint FROM image_packages
         WHERE image_digest = ANY($1)",
    )
    .bind(digests)
    .fetch_all(pool)
    .await?
    {
        let (digest, purl, key): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let version: String = row.get(3);
        keys.insert(key.clone());
        let component = inventories
            .entry(digest)
            .or_default()
            .entry(purl.clone())
            .or_insert_with(|| Component {
                purl,
                affects_keys: Vec::new(),
                kind: String::new(),
                name: String::new(),
                version: version.clone(),
                source: String::new(),
                source_version: String::new(),
                layer: row.get(4),
                path: String::new(),
                used_by_entrypoint: row.get(5),
                license: None,
            });
        // Each key keeps the version it is matched at (a source package's for its keys).
        component.affects_keys.push(MatchKey { key, version });
    }
    // Their declared licenses, for the license rules.
    for (digest, licenses) in stellaops_store::scans::licenses_of(pool, digests).await? {
        let Some(inventory) = inventories.get_mut(&digest) else {
            continue;
        };
        for (purl, (expression, ids)) in licenses {
            if let Some(component) = inventory.get_mut(&purl) {
                component.license = Some(stellaops_policy::license::Declared { expression, ids });
            }
        }
    }
    let previous_ids: Vec<i64> = previous.iter().map(|p| p.id).collect();
    // The license decisions of the previous results (a change is a decision change).
    let mut licenses_before: HashMap<i64, BTreeSet<(String, String)>> = HashMap::new();
    for (id, purl, outcome) in sqlx::query_as::<_, (i64, String, String)>(
        "SELECT scan_id, purl, outcome FROM scan_license_decisions WHERE scan_id = ANY($1)",
    )
    .bind(&previous_ids)
    .fetch_all(pool)
    .await?
    {
        licenses_before
            .entry(id)
            .or_default()
            .insert((purl, outcome));
    }
    let mut known: HashMap<i64, BTreeSet<(String, String)>> = HashMap::new();
    // Of those, the ones that counted (rows from before the decider have no outcome: all
    // of them counted).
    let mut counted_before: HashMap<i64, BTreeSet<(String, String)>> = HashMap::new();
    for (id, merge_hash, purl, outcome) in
        sqlx::query_as::<_, (i64, String, String, Option<String>)>(
            "SELECT scan_id, merge_hash, purl, outcome FROM scan_findings WHERE scan_id = ANY($1)",
        )
        .bind(&previous_ids)
        .fetch_all(pool)
        .await?
    {
        if outcome.as_deref() != Some("ignored") {
            counted_before
                .entry(id)
                .or_default()
                .insert((merge_hash.clone(), purl.clone()));
        }
        known.entry(id).or_default().insert((merge_hash, purl));
    }
    let keys: Vec<String> = keys.into_iter().collect();
    let (rows, snapshot) = advisories_for_keys(pool, &keys).await?;
    let by_key = index_rows(&rows);
    report.advisory_snapshot = snapshot;
    let threshold = settings.min_severity.as_deref().map(rank).unwrap_or(0);
    let empty = BTreeMap::new();
    let none = BTreeSet::new();

    struct Outcome<'a> {
        digest: &'a str,
        previous: &'a Previous,
        components: Vec<Component>,
        findings: Vec<Finding>,
        judged: Option<Judged>,
        new: Vec<Finding>,
    }
    let mut outcomes = Vec::with_capacity(previous.len());
    for prev in &previous {
        let digest = prev.image_digest.as_str();
        let components: Vec<Component> = inventories
            .get(digest)
            .unwrap_or(&empty)
            .values()
            .cloned()
            .collect();
        let findings = match_indexed(&components, &by_key);
        let before = known.get(&prev.id).unwrap_or(&none);
        let new: Vec<Finding> = findings
            .iter()
            .filter(|f| !before.contains(&(f.merge_hash.clone(), f.purl.clone())))
            .filter(|f| f.severity.as_deref().map(rank).unwrap_or(0) >= threshold)
            .cloned()
            .collect();
        outcomes.push(Outcome {
            digest,
            previous: prev,
            components,
            findings,
            judged: None,
            new,
        });
    }
    // The decider's lookups (VEX, KEV/EPSS) once for the chunk, then each image judged.
    let evidence = Evidence::load(pool, outcomes.iter().flat_map(|o| &o.findings)).await?;
    let now = settings.now.unwrap_or_else(jiff::Timestamp::now);
    for o in &mut outcomes {
        o.judged = Some(judge_under(
            &evidence,
            o.digest,
            requester(settings, o.previous).0,
            repository_of(&o.previous.image_ref),
            &o.findings,
            &o.components,
            &o.previous.policy.1,
            now,
        ));
    }
    fn judged<'o>(o: &'o Outcome<'_>) -> &'o Judged {
        o.judged.as_ref().expect("judged above")
    }

    // One transaction for the chunk: results, findings, events.
    let mut tx = pool.begin().await?;
    // Columns of the new scan_results rows.
    let (mut digests_col, mut refs, mut sbom_uris, mut sbom_hashes, mut component_counts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut severities: [Vec<i32>; 4] = Default::default();
    let mut verdicts = Vec::new();
    let mut policies = Vec::new();
    let (mut namespaces, mut names, mut uids) = (Vec::new(), Vec::new(), Vec::new());
    let mut digests_of_policy = Vec::new();
    let (mut attestation_keys, mut attestations) = (Vec::new(), Vec::new());
    for o in &outcomes {
        digests_col.push(o.digest);
        let (namespace, name, uid) = requester(settings, o.previous);
        namespaces.push(namespace);
        names.push(name);
        uids.push(uid);
        refs.push(o.previous.image_ref.as_str());
        sbom_uris.push(o.previous.sbom_uri.as_str());
        sbom_hashes.push(o.previous.sbom_sha256.as_str());
        component_counts.push(o.previous.components);
        let j = judged(o);
        for (i, s) in ["critical", "high", "medium", "low"].iter().enumerate() {
            severities[i].push(j.counts[s] as i32);
        }
        // Each re-evaluation is a verdict of its own, signed like a scan's (kept with the
        // row; without a key it is recorded unsigned and nothing trusts it).
        let envelope = settings.signer.as_ref().map(|signing| {
            signing.signer.sign(
                o.digest,
                &stellaops_store::attestation::VerdictPredicate {
                    image: o.previous.image_ref.clone(),
                    verdict: j.verdict.to_string(),
                    findings: stellaops_store::attestation::FindingCounts {
                        critical: j.counts["critical"],
                        high: j.counts["high"],
                        medium: j.counts["medium"],
                        low: j.counts["low"],
                    },
                    sbom: stellaops_store::attestation::SbomRef {
                        uri: o.previous.sbom_uri.clone(),
                        sha256: o.previous.sbom_sha256.clone(),
                    },
                    advisory_snapshot: report.advisory_snapshot,
                    policy_digest: j.policy_digest.to_string(),
                    scanned_at: chrono::Utc::now(),
                },
            )
        });
        attestation_keys.push(
            envelope
                .as_deref()
                .map(stellaops_store::attestation::object_key),
        );
        attestations.push(envelope);
        verdicts.push(j.verdict);
        digests_of_policy.push(j.policy_digest.as_str());
        policies.push(serde_json::to_value(&o.previous.policy.0)?);
    }
    // The envelopes in S3 before the rows that reference them (a row never points at an
    // envelope that is not there; an envelope whose rows are not committed is harmless).
    if let Some(signing) = &settings.signer {
        use futures::{StreamExt as _, TryStreamExt as _};
        futures::stream::iter(
            attestation_keys
                .iter()
                .zip(&attestations)
                .filter_map(|(key, envelope)| Some((key.as_deref()?, envelope.as_ref()?))),
        )
        .map(|(key, envelope)| {
            crate::scan::put_object(
                &signing.s3,
                &signing.bucket,
                key,
                envelope.clone(),
                "application/vnd.dsse.envelope.v1+json",
            )
        })
        .buffer_unordered(ENVELOPE_UPLOADS)
        .try_collect::<Vec<()>>()
        .await?;
    }
    // Keyed by image and Scan: under a ScanPolicy one image may have a result per Scan.
    let ids: HashMap<(String, Option<String>), i64> = sqlx::query_as::<_, (String, Option<String>, i64)>(
        "INSERT INTO scan_results (image_digest, image_ref, advisory_snapshot, scan_namespace, scan_name,
             sbom_uri, sbom_sha256, components, critical, high, medium, low, verdict, policy, started_at,
             policy_digest, attestation_key, attestation, scan_uid)
         SELECT d, r, $3, ns, n, u, s, c, cr, hi, me, lo, v, p, now(), pd, ak, a, uid
         FROM unnest($1::text[], $2::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[],
                     $9::int[], $10::int[], $11::int[], $12::int[], $13::text[], $14::jsonb[],
                     $15::text[], $16::text[], $17::bytea[], $18::text[])
              AS t(d, r, ns, n, u, s, c, cr, hi, me, lo, v, p, pd, ak, a, uid)
         RETURNING image_digest, scan_uid, id",
    )
    .bind(&digests_col)
    .bind(&refs)
    .bind(report.advisory_snapshot)
    .bind(&namespaces)
    .bind(&names)
    .bind(&sbom_uris)
    .bind(&sbom_hashes)
    .bind(&component_counts)
    .bind(&severities[0])
    .bind(&severities[1])
    .bind(&severities[2])
    .bind(&severities[3])
    .bind(&verdicts)
    .bind(&policies)
    .bind(&digests_of_policy)
    .bind(&attestation_keys)
    .bind(&attestations)
    .bind(&uids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(digest, uid, id)| ((digest, uid), id))
    .collect();
    // Columns of the findings rows.
    let (mut scan_ids, mut hashes, mut vulns, mut purls) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut f_severities, mut fixed, mut layers) = (Vec::new(), Vec::new(), Vec::new());
    let (mut f_outcomes, mut deciders, mut reasons) = (Vec::new(), Vec::new(), Vec::new());
    let mut events = Vec::new();
    let (mut license_ids, mut license_decisions) = (Vec::new(), Vec::new());
    for o in &outcomes {
        let id = ids[&(o.digest.to_string(), o.previous.scan_uid.clone())];
        let j = judged(o);
        for decision in crate::scan::license_decisions(&j.licenses) {
            license_ids.push(id);
            license_decisions.push(decision);
        }
        let licenses_now: BTreeSet<(String, String)> = j
            .licenses
            .iter()
            .map(|l| (l.purl.clone(), l.outcome.to_string()))
            .collect();
        for (f, d) in o.findings.iter().zip(&j.decided) {
            scan_ids.push(id);
            hashes.push(f.merge_hash.as_str());
            vulns.push(f.vuln_id.as_str());
            purls.push(f.purl.as_str());
            f_severities.push(f.severity.as_deref());
            fixed.push(f.fixed_version.as_deref());
            layers.push(f.layer.as_str());
            f_outcomes.push(
                serde_json::to_value(d.outcome)?
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            deciders.push(d.decided_by.clone());
            reasons.push(d.reason.clone());
        }
        let verdict = j.verdict;
        *report.verdicts.entry(verdict.to_string()).or_default() += 1;
        let counted_now: BTreeSet<(String, String)> = o
            .findings
            .iter()
            .zip(&j.decided)
            .filter(|(_, d)| d.outcome != stellaops_policy::evaluate::Outcome::Ignored)
            .map(|(f, _)| (f.merge_hash.clone(), f.purl.clone()))
            .collect();
        let decision_changed = verdict != o.previous.verdict
            || counted_before.get(&o.previous.id).unwrap_or(&none) != &counted_now
            || licenses_before.get(&o.previous.id).unwrap_or(&none) != &licenses_now;
        if o.new.is_empty() {
            if !decision_changed {
                continue;
            }
            report.decisions_changed += 1;
        } else {
            report.new_findings += 1;
        }
        if settings.notify {
            events.push(delta_event(
                settings,
                requester(settings, o.previous),
                &o.previous.image_ref,
                o.digest,
                id,
                o.previous.id,
                (verdict, &o.previous.verdict),
                report.advisory_snapshot,
                &o.new,
            ));
        }
    }
    sqlx::query(
        "INSERT INTO scan_findings (scan_id, merge_hash, vuln_id, purl, severity, fixed_version, layer_digest,
             outcome, decided_by, reason)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
             $8::text[], $9::text[], $10::text[])",
    )
    .bind(&scan_ids)
    .bind(&hashes)
    .bind(&vulns)
    .bind(&purls)
    .bind(&f_severities)
    .bind(&fixed)
    .bind(&layers)
    .bind(&f_outcomes)
    .bind(&deciders)
    .bind(&reasons)
    .execute(&mut *tx)
    .await?;
    stellaops_store::scans::insert_license_decisions(&mut tx, &license_ids, &license_decisions)
        .await?;
    report.events += stellaops_store::outbox::publish_many(&mut tx, &events).await? as i64;
    tx.commit().await?;
    report.evaluated += outcomes.len() as i64;
    Ok(())
}

/// Who a re-evaluation's result is recorded for: the Schedule whose run made it, else the
/// Scan the previous result was for (then that Scan's status reads it as its own).
fn requester<'a>(
    settings: &'a Settings,
    previous: &'a Previous,
) -> (Option<&'a str>, Option<String>, Option<&'a str>) {
    match &settings.name {
        Some(schedule) => (
            settings.namespace.as_deref(),
            Some(format!("schedule/{schedule}")),
            None,
        ),
        None => (
            previous.scan_namespace.as_deref(),
            previous.scan_name.clone(),
            previous.scan_uid.as_deref(),
        ),
    }
}

/// The `rescan.delta` event for an image whose result `scan_id` has `new` findings that
/// its previous result `previous_id` lacked.
#[allow(clippy::too_many_arguments)]
fn delta_event(
    settings: &Settings,
    (scan_namespace, scan_name, scan_uid): (Option<&str>, Option<String>, Option<&str>),
    image_ref: &str,
    digest: &str,
    scan_id: i64,
    previous_id: i64,
    (verdict, previous_verdict): (&str, &str),
    snapshot: i64,
    new: &[Finding],
) -> stellaops_store::outbox::NewEvent {
    let highest = new
        .iter()
        .filter_map(|f| f.severity.clone())
        .max_by_key(|s| rank(s));
    stellaops_store::outbox::NewEvent {
        kind: "rescan.delta".into(),
        namespace: settings.namespace.clone(),
        subject: format!("{image_ref}@{digest}"),
        severity: highest,
        payload: json!({
            "scanId": scan_id, "previousScanId": previous_id,
            "image": image_ref, "imageDigest": digest,
            "verdict": verdict, "previousVerdict": previous_verdict, "advisorySnapshot": snapshot,
            "schedule": {"namespace": settings.namespace, "name": settings.name, "run": settings.run_id},
            // The Scan the new result is recorded for (its status reads it), when one.
            "scan": scan_uid.map(|uid| json!({"namespace": scan_namespace, "name": scan_name, "uid": uid})),
            "newFindings": new.iter().map(|f| json!({
                "vulnId": f.vuln_id, "purl": f.purl, "severity": f.severity,
                "fixedVersion": f.fixed_version,
            })).collect::<Vec<_>>(),
        }),
        idempotency_key: format!("rescan.delta/{scan_id}"),
    }
}

/// After a content-refresh Scan of run `run_id` recorded `scan_id` for `digest`: count the
/// image in the run's `new_findings` and announce it when its findings include ones the
/// digest's previous result lacked (at or above the run's threshold). Returns whether it
/// had new findings. A digest scanned for the first time has nothing to compare with.
pub async fn announce_refresh(
    pool: &PgPool,
    run_id: &str,
    scan_id: i64,
    digest: &str,
) -> anyhow::Result<bool> {
    let run = stellaops_store::schedules::run(pool, run_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("schedule run {run_id} does not exist"))?;
    let previous: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM scan_results WHERE image_digest = $1 AND id <> $2
         ORDER BY finished_at DESC, id DESC LIMIT 1",
    )
    .bind(digest)
    .bind(scan_id)
    .fetch_optional(pool)
    .await?;
    let Some(previous) = previous else {
        return Ok(false);
    };
    let findings_of = |id: i64| {
        sqlx::query_as::<
            _,
            (
                String,
                String,
                String,
                Option<String>,
                Option<String>,
                Option<String>,
            ),
        >(
            "SELECT merge_hash, vuln_id, purl, severity, fixed_version, layer_digest
             FROM scan_findings WHERE scan_id = $1",
        )
        .bind(id)
        .fetch_all(pool)
    };
    let before: BTreeSet<(String, String)> = findings_of(previous)
        .await?
        .into_iter()
        .map(|(hash, _, purl, ..)| (hash, purl))
        .collect();
    let threshold = run.plan.min_severity.as_deref().map(rank).unwrap_or(0);
    let new: Vec<Finding> = findings_of(scan_id)
        .await?
        .into_iter()
        .map(
            |(merge_hash, vuln_id, purl, severity, fixed_version, layer)| Finding {
                merge_hash,
                vuln_id,
                purl,
                severity,
                fixed_version,
                layer: layer.unwrap_or_default(),
                used_by_entrypoint: None,
            },
        )
        .filter(|f| !before.contains(&(f.merge_hash.clone(), f.purl.clone())))
        .filter(|f| f.severity.as_deref().map(rank).unwrap_or(0) >= threshold)
        .collect();
    if new.is_empty() {
        return Ok(false);
    }
    #[allow(clippy::type_complexity)]
    let (image_ref, verdict, snapshot, scan_namespace, scan_name, scan_uid): (
        String,
        String,
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
    ) = sqlx::query_as(
        "SELECT image_ref, verdict, advisory_snapshot, scan_namespace, scan_name, scan_uid
         FROM scan_results WHERE id = $1",
    )
    .bind(scan_id)
    .fetch_one(pool)
    .await?;
    let previous_verdict: String =
        sqlx::query_scalar("SELECT verdict FROM scan_results WHERE id = $1")
            .bind(previous)
            .fetch_one(pool)
            .await?;
    let settings = Settings::of_run(&run);
    let mut tx = pool.begin().await?;
    // With notify the event's key makes a repeated announcement count once; without, a
    // repeat compares against this result and finds nothing new.
    let counted = if run.plan.notify {
        let event = delta_event(
            &settings,
            (scan_namespace.as_deref(), scan_name, scan_uid.as_deref()),
            &image_ref,
            digest,
            scan_id,
            previous,
            (&verdict, &previous_verdict),
            snapshot,
            &new,
        );
        stellaops_store::outbox::publish(&mut *tx, &event)
            .await?
            .is_some()
    } else {
        true
    };
    if counted {
        sqlx::query("UPDATE schedule_runs SET new_findings = new_findings + 1 WHERE id = $1")
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Run the stored run `run_id` to its end, recording progress and the outcome.
pub async fn run(
    pool: &PgPool,
    run_id: &str,
    signer: Option<std::sync::Arc<Signing>>,
    policy: Option<Policy>,
) -> anyhow::Result<Report> {
    let run = stellaops_store::schedules::run(pool, run_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("schedule run {run_id} does not exist"))?;
    let settings = Settings {
        signer,
        policy,
        ..Settings::of_run(&run)
    };
    match evaluate(pool, &run.plan.images, &settings).await {
        Ok(report) => {
            stellaops_store::schedules::finish(pool, run_id, None).await?;
            Ok(report)
        }
        Err(error) => {
            let message = format!("{error:#}");
            stellaops_store::schedules::finish(pool, run_id, Some(&message)).await?;
            Err(error)
        }
    }
}
