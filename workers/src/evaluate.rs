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
use sqlx::PgPool;

use std::sync::Arc;

use stellaops_scanner::judge::{Decider, Judged, judge_under, repository_of};
use stellaops_scanner::{Component, Finding, MatchKey, Policy, index_rows, match_indexed, rank};

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
            stellaops_store::scans::latest_results_under_policy(pool, digests, name).await?
        }
        // A VEX change, `evaluate --digest`: the latest result under each policy the image
        // was decided under, each recorded again for its own Scan.
        (None, None) => stellaops_store::scans::latest_results_per_policy(pool, digests).await?,
        // A Schedule's run: the image's latest result, recorded for the Schedule.
        (None, Some(_)) => stellaops_store::scans::latest_results(pool, digests).await?,
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
                    let own: Policy =
                        serde_json::from_value(r.policy).unwrap_or_else(|_| default_policy());
                    let decider = Decider::of(&own);
                    Arc::new((own, decider))
                }
            };
            Previous {
                id: r.id,
                image_digest: r.image_digest,
                image_ref: r.image_ref,
                scan_namespace: r.scan_namespace,
                scan_name: r.scan_name,
                scan_uid: r.scan_uid,
                sbom_uri: r.sbom_uri,
                sbom_sha256: r.sbom_sha256,
                components: r.components,
                policy,
                verdict: r.verdict,
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
    for row in stellaops_store::scans::packages_of(pool, digests).await? {
        let stellaops_store::scans::StoredPackage {
            image_digest: digest,
            purl,
            affects_key: key,
            version,
            layer_digest,
            used_by_entrypoint,
        } = row;
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
                layer: layer_digest,
                path: String::new(),
                used_by_entrypoint,
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
    for stellaops_store::scans::LicenseOutcome {
        scan_id: id,
        purl,
        outcome,
    } in stellaops_store::scans::license_outcomes(pool, &previous_ids).await?
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
    for stellaops_store::scans::FindingOutcome {
        scan_id: id,
        merge_hash,
        purl,
        outcome,
    } in stellaops_store::scans::finding_outcomes(pool, &previous_ids).await?
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
    let (rows, snapshot) = stellaops_store::advisories::matching_rows(pool, &keys).await?;
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
    let evidence = crate::scan::evidence(pool, outcomes.iter().flat_map(|o| &o.findings)).await?;
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
    // The new scan_results rows.
    let mut results = Vec::with_capacity(outcomes.len());
    for o in &outcomes {
        let (namespace, name, uid) = requester(settings, o.previous);
        let j = judged(o);
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
        results.push(stellaops_store::scans::Reevaluated {
            image_digest: o.digest,
            image_ref: o.previous.image_ref.as_str(),
            scan_namespace: namespace,
            scan_name: name,
            scan_uid: uid,
            sbom_uri: o.previous.sbom_uri.as_str(),
            sbom_sha256: o.previous.sbom_sha256.as_str(),
            components: o.previous.components,
            counts: ["critical", "high", "medium", "low"].map(|s| j.counts[s] as i32),
            verdict: j.verdict,
            policy: serde_json::to_value(&o.previous.policy.0)?,
            policy_digest: j.policy_digest.as_str(),
            attestation_key: envelope
                .as_deref()
                .map(stellaops_store::attestation::object_key),
            attestation: envelope,
        });
    }
    // The envelopes in S3 before the rows that reference them (a row never points at an
    // envelope that is not there; an envelope whose rows are not committed is harmless).
    if let Some(signing) = &settings.signer {
        use futures::{StreamExt as _, TryStreamExt as _};
        futures::stream::iter(
            results
                .iter()
                .filter_map(|r| Some((r.attestation_key.as_deref()?, r.attestation.as_ref()?))),
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
    let ids: HashMap<(String, Option<String>), i64> =
        stellaops_store::scans::insert_reevaluated(&mut tx, report.advisory_snapshot, &results)
            .await?
            .into_iter()
            .map(|(digest, uid, id)| ((digest, uid), id))
            .collect();
    // The findings rows.
    let mut finding_rows = Vec::new();
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
            finding_rows.push(stellaops_store::scans::DecidedFinding {
                scan_id: id,
                merge_hash: f.merge_hash.as_str(),
                vuln_id: f.vuln_id.as_str(),
                purl: f.purl.as_str(),
                severity: f.severity.as_deref(),
                fixed_version: f.fixed_version.as_deref(),
                layer_digest: f.layer.as_str(),
                outcome: serde_json::to_value(d.outcome)?
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                decided_by: d.decided_by.as_str(),
                reason: d.reason.as_str(),
            });
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
    stellaops_store::scans::insert_decided_findings(&mut tx, &finding_rows).await?;
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
    let previous = stellaops_store::scans::previous_result(pool, digest, scan_id).await?;
    let Some(previous) = previous else {
        return Ok(false);
    };
    let findings_of = |id: i64| stellaops_store::scans::findings_of(pool, id);
    let before: BTreeSet<(String, String)> = findings_of(previous)
        .await?
        .into_iter()
        .map(|f| (f.merge_hash, f.purl))
        .collect();
    let threshold = run.plan.min_severity.as_deref().map(rank).unwrap_or(0);
    let new: Vec<Finding> = findings_of(scan_id)
        .await?
        .into_iter()
        .filter(|f| !before.contains(&(f.merge_hash.clone(), f.purl.clone())))
        .filter(|f| f.severity.as_deref().map(rank).unwrap_or(0) >= threshold)
        .collect();
    if new.is_empty() {
        return Ok(false);
    }
    let stellaops_store::scans::ResultHead {
        image_ref,
        verdict,
        advisory_snapshot: snapshot,
        scan_namespace,
        scan_name,
        scan_uid,
    } = stellaops_store::scans::result_head(pool, scan_id).await?;
    let previous_verdict = stellaops_store::scans::result_head(pool, previous)
        .await?
        .verdict;
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
        stellaops_store::schedules::count_new_findings(&mut tx, run_id).await?;
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
