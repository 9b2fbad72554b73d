//! From matched findings to the verdict through the decider (`stellaops_policy`): the VEX
//! consensus about each finding, its KEV/EPSS signals, the policy. The lookups for many
//! images are made once ([`Evidence::load`]); judging an image is then pure ([`judge`]).

use std::collections::BTreeMap;

use sqlx::PgPool;
use stellaops_policy::evaluate::{self, Decided, Outcome, Subject};
use stellaops_policy::vex::consensus::{Claim, Trust, applies, decide, purl_base};

use super::{Component, Finding, Policy};

/// What the decider needs besides the findings, looked up once for many of them.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// Every id each advisory is known by, by merge hash.
    ids: BTreeMap<String, Vec<String>>,
    /// VEX statements about any of those ids, for the findings' packages.
    claims: Vec<Claim>,
    /// KEV/EPSS per CVE.
    signals: BTreeMap<String, stellaops_store::exploits::Signals>,
    /// The sources each advisory came from, by merge hash.
    sources: BTreeMap<String, Vec<String>>,
}

impl Evidence {
    /// Look up what `findings` need (four queries, whatever their number).
    pub async fn load<'a>(
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
        let ids = stellaops_store::advisories::ids_of(pool, &hashes).await?;
        let mut all_ids: Vec<String> = ids.values().flatten().cloned().collect();
        all_ids.sort();
        all_ids.dedup();
        let claims = stellaops_store::vex::claims(pool, &all_ids, &bases).await?;
        let cves: Vec<String> = all_ids
            .iter()
            .filter(|id| id.starts_with("CVE-"))
            .cloned()
            .collect();
        let signals = stellaops_store::exploits::signals(pool, &cves).await?;
        let sources = stellaops_store::advisories::sources_of(pool, &hashes).await?;
        Ok(Evidence {
            ids,
            claims,
            signals,
            sources,
        })
    }

    fn ids<'a>(&'a self, finding: &'a Finding) -> Vec<&'a str> {
        match self.ids.get(&finding.merge_hash) {
            Some(ids) => ids.iter().map(String::as_str).collect(),
            None => vec![finding.vuln_id.as_str()],
        }
    }
}

/// The verdict of one image and what decided each finding.
#[derive(Clone, Debug)]
pub struct Judged {
    /// `Pass`, `Warn` or `Fail`.
    pub verdict: &'static str,
    /// Findings that count, by severity: all but those VEX or a rule took out (findings
    /// `ignoreUnfixed` leaves out of the verdict are still counted, as before).
    pub counts: BTreeMap<&'static str, i64>,
    /// Per finding, in the order given.
    pub decided: Vec<Decided>,
    /// The policy's digest.
    pub policy_digest: String,
    /// The components a license rule decided.
    pub licenses: Vec<JudgedLicense>,
}

/// A component a license rule decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JudgedLicense {
    /// The component's package URL.
    pub purl: String,
    /// Its declared license expression.
    pub license: String,
    /// `fails` (a deny rule) or `warns`.
    pub outcome: &'static str,
    /// `license:<rule>`.
    pub decided_by: String,
    /// For a person.
    pub reason: String,
}

/// The policy as the decider's (its digest is the one the ScanPolicy's status shows).
pub fn policy_of(policy: &Policy) -> evaluate::Policy {
    evaluate::Policy {
        rules: policy.rules.clone(),
        fail_on: (!policy.fail_on.is_empty()).then(|| policy.fail_on.clone()),
        warn_on: policy.warn_on.clone(),
        ignore_unfixed: policy.ignore_unfixed,
        scope: policy.scope,
        vex: policy.vex.clone(),
        licenses: policy.licenses.clone(),
    }
}

/// A policy as the decider takes it, with its digest: made once for the many images
/// judged under it.
#[derive(Clone, Debug)]
pub struct Decider {
    policy: evaluate::Policy,
    digest: String,
    /// The policy's VEX trust, made once.
    trust: Trust,
}

impl Decider {
    /// The decider's form of `policy`.
    pub fn of(policy: &Policy) -> Decider {
        let policy = policy_of(policy);
        let digest = policy.digest();
        let trust = policy.trust();
        Decider {
            policy,
            digest,
            trust,
        }
    }
}

/// Judge `findings` of `digest` (asked for from `namespace`, image `repository`), and the
/// declared licenses of its `components` under the policy's license rules.
#[allow(clippy::too_many_arguments)]
pub fn judge(
    evidence: &Evidence,
    digest: &str,
    namespace: Option<&str>,
    repository: &str,
    findings: &[Finding],
    components: &[Component],
    policy: &Policy,
    now: jiff::Timestamp,
) -> Judged {
    judge_under(
        evidence,
        digest,
        namespace,
        repository,
        findings,
        components,
        &Decider::of(policy),
        now,
    )
}

/// [`judge`] under a [`Decider`] made once.
#[allow(clippy::too_many_arguments)]
pub fn judge_under(
    evidence: &Evidence,
    digest: &str,
    namespace: Option<&str>,
    repository: &str,
    findings: &[Finding],
    components: &[Component],
    decider: &Decider,
    now: jiff::Timestamp,
) -> Judged {
    let trust = &decider.trust;
    let mut inputs = Vec::with_capacity(findings.len());
    let mut vex = Vec::with_capacity(findings.len());
    for finding in findings {
        let ids = evidence.ids(finding);
        let applicable: Vec<&Claim> = evidence
            .claims
            .iter()
            .filter(|c| applies(&c.statement, &ids, &finding.purl, digest))
            .collect();
        vex.push((!applicable.is_empty()).then(|| decide(applicable, trust)));
        let signal = ids.iter().find_map(|id| evidence.signals.get(*id));
        inputs.push(evaluate::Finding {
            id: finding.vuln_id.clone(),
            aliases: ids.iter().map(|s| s.to_string()).collect(),
            purl: finding.purl.clone(),
            severity: finding.severity.clone(),
            fixed_version: finding.fixed_version.clone(),
            layer: finding.layer.clone(),
            sources: evidence
                .sources
                .get(&finding.merge_hash)
                .cloned()
                .unwrap_or_default(),
            // From the Usage view (EntryTrace); `None` when it is not known, and then a
            // rule asking for it never matches rather than guessing.
            used_by_entrypoint: finding.used_by_entrypoint,
            kev: signal.is_some_and(|s| s.kev_since.is_some()),
            epss: signal.and_then(|s| s.epss),
        });
    }
    let subject = Subject {
        namespace,
        repository,
    };
    // License rules look at the components (only those with a known license matter).
    let licensed: Vec<&Component> = if decider.policy.licenses.is_empty() {
        Vec::new()
    } else {
        components.iter().filter(|c| c.license.is_some()).collect()
    };
    let license_inputs: Vec<stellaops_policy::license::Component> = licensed
        .iter()
        .map(|c| stellaops_policy::license::Component {
            purl: c.purl.clone(),
            license: c.license.clone(),
        })
        .collect();
    let evaluation = evaluate::evaluate_all(
        &inputs,
        &vex,
        &license_inputs,
        &subject,
        &decider.policy,
        &decider.digest,
        now,
    );
    let mut counts = BTreeMap::from([("critical", 0), ("high", 0), ("medium", 0), ("low", 0)]);
    for d in &evaluation.findings {
        let taken_out = d.outcome == Outcome::Ignored && d.decided_by != "threshold";
        if taken_out {
            continue;
        }
        if let Some(slot) = d
            .severity
            .as_deref()
            .and_then(|s| counts.keys().copied().find(|k| *k == s))
        {
            *counts.get_mut(slot).expect("a known severity") += 1;
        }
    }
    let licenses = evaluation
        .licenses
        .iter()
        .map(|l| {
            let c = licensed[l.component];
            JudgedLicense {
                purl: c.purl.clone(),
                license: c
                    .license
                    .as_ref()
                    .map(|d| d.expression.clone())
                    .unwrap_or_default(),
                outcome: if l.outcome == Outcome::Fails {
                    "fails"
                } else {
                    "warns"
                },
                decided_by: l.decided_by.clone(),
                reason: l.reason.clone(),
            }
        })
        .collect();
    Judged {
        verdict: evaluation.verdict,
        counts,
        decided: evaluation.findings,
        policy_digest: evaluation.policy_digest,
        licenses,
    }
}

/// The repository part of an image reference (no tag or digest).
pub fn repository_of(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rsplit_once(':') {
        // A colon after the last slash is a tag; before it, a registry port.
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => without_digest,
    }
}

/// An explanation for a person: the verdict and policy, then the findings that decided it,
/// those that count, and those taken out (with who took them out and why).
pub fn render(e: &stellaops_store::scans::Explanation) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({})\nverdict {} — result {} of {}, policy {} {}",
        e.image,
        e.image_digest,
        e.verdict,
        e.scan_id,
        e.finished_at.to_rfc3339(),
        e.policy,
        e.policy_digest.as_deref().unwrap_or("")
    );
    let groups = [
        ("fails", "Failing"),
        ("warns", "Warning"),
        ("counted", "Counted, below the thresholds"),
        ("ignored", "Taken out"),
    ];
    for (outcome, title) in groups {
        let members: Vec<_> = e
            .findings
            .iter()
            .filter(|f| f.outcome.as_deref().unwrap_or("counted") == outcome)
            .collect();
        if members.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title} ({}):", members.len());
        for f in members {
            let mut exploitation = Vec::new();
            if let Some(since) = f.kev_since {
                exploitation.push(format!("KEV since {since}"));
            }
            if let Some(epss) = f.epss {
                exploitation.push(format!("EPSS {epss:.3}"));
            }
            let _ = writeln!(
                out,
                "  {:<9} {} in {}{}{} — {}: {}",
                f.severity.as_deref().unwrap_or("unrated"),
                f.vuln_id,
                f.purl,
                f.fixed_version
                    .as_deref()
                    .map(|v| format!(" (fixed in {v})"))
                    .unwrap_or_default(),
                if exploitation.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", exploitation.join(", "))
                },
                f.decided_by
                    .as_deref()
                    .unwrap_or("recorded before the decider"),
                f.reason.as_deref().unwrap_or("")
            );
        }
    }
    if e.findings.is_empty() {
        out.push_str("\nno findings\n");
    }
    if !e.licenses.is_empty() {
        let _ = writeln!(out, "\nLicenses decided by rules ({}):", e.licenses.len());
        for l in &e.licenses {
            let _ = writeln!(
                out,
                "  {:<9} {} declares {} — {}: {}",
                if l.outcome == "fails" {
                    "denied"
                } else {
                    "warned"
                },
                l.purl,
                l.license,
                l.decided_by,
                l.reason
            );
        }
    }
    out
}
