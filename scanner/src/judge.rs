//! From matched findings to the verdict through the decider (`stellaops_policy`): the VEX
//! consensus about each finding, its KEV/EPSS signals, the policy. The evidence for many
//! images is looked up once by the caller ([`Evidence::new`]); judging an image is pure
//! ([`judge`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stellaops_policy::evaluate::{self, Decided, Outcome, Subject};
use stellaops_policy::vex::consensus::{Claim, Trust, applies, decide};

use crate::{Component, Finding};

/// The policy a verdict is decided under: the Scan's inline thresholds, or a ScanPolicy's
/// rules and thresholds (`policyRef` names it). Stored with each result (the `policy`
/// column), so a re-evaluation decides under the same policy; results from before rules
/// existed read back with none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// Fail at or above this severity.
    pub fail_on: String,
    /// Warn at or above this severity.
    pub warn_on: Option<String>,
    /// Findings without a fixed version do not count.
    pub ignore_unfixed: bool,
    /// The ScanPolicy's rules, in order (the evaluator's own type: one evaluator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<stellaops_policy::evaluate::Rule>,
    /// The ScanPolicy these came from: when it changes or one of its waivers expires, the
    /// results decided under it are evaluated again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ref: Option<String>,
    /// Which components the thresholds count (`usage`: those the entrypoint uses).
    #[serde(
        default,
        skip_serializing_if = "stellaops_policy::evaluate::Scope::is_inventory"
    )]
    pub scope: stellaops_policy::evaluate::Scope,
    /// The ScanPolicy's VEX trust: provider weights and accepted justifications (`None`:
    /// the consensus's defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vex: Option<stellaops_policy::vex::consensus::Trust>,
    /// The ScanPolicy's license rules, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<stellaops_policy::license::LicenseRule>,
}

impl Default for Policy {
    /// The Scan kind's default: fail on critical, nothing else.
    fn default() -> Self {
        Policy {
            fail_on: "critical".into(),
            warn_on: None,
            ignore_unfixed: false,
            rules: Vec::new(),
            policy_ref: None,
            scope: Default::default(),
            vex: None,
            licenses: Vec::new(),
        }
    }
}

impl Policy {
    /// A ScanPolicy's policy as the evaluator has it (`stellaops_policy::evaluate::Policy`,
    /// the form the controller computes the digest of), named `name`.
    pub fn from_evaluator(
        name: Option<String>,
        policy: stellaops_policy::evaluate::Policy,
    ) -> Policy {
        Policy {
            fail_on: policy.fail_on.unwrap_or_default(),
            warn_on: policy.warn_on,
            ignore_unfixed: policy.ignore_unfixed,
            rules: policy.rules,
            policy_ref: name,
            scope: policy.scope,
            vex: policy.vex,
            licenses: policy.licenses,
        }
    }
}

/// Order of severities (unknown is 0).
pub fn rank(severity: &str) -> u8 {
    stellaops_policy::evaluate::rank(severity)
}

/// `Pass`, `Warn` or `Fail` under `policy` with no VEX statement or exploitation signal
/// known: the decider's thresholds ([`judge`] is what scans and re-evaluations use).
pub fn verdict(findings: &[Finding], policy: &Policy) -> &'static str {
    judge(
        &Evidence::default(),
        "",
        None,
        "",
        findings,
        &[],
        policy,
        jiff::Timestamp::now(),
    )
    .verdict
}

/// What the decider needs besides the findings, looked up once for many of them.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// Every id each advisory is known by, by merge hash.
    ids: BTreeMap<String, Vec<String>>,
    /// VEX statements about any of those ids, for the findings' packages.
    claims: Vec<Claim>,
    /// KEV/EPSS per CVE.
    signals: BTreeMap<String, Exploitation>,
    /// The sources each advisory came from, by merge hash.
    sources: BTreeMap<String, Vec<String>>,
}

/// What is known of a CVE's exploitation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Exploitation {
    /// In CISA's Known Exploited Vulnerabilities catalog.
    pub kev: bool,
    /// EPSS probability.
    pub epss: Option<f64>,
}

impl Evidence {
    /// The evidence about a set of findings, as the caller looked it up: every id each
    /// advisory is known by (by merge hash), the VEX statements about those ids, the
    /// exploitation signals by CVE and the sources of each advisory (by merge hash).
    pub fn new(
        ids: BTreeMap<String, Vec<String>>,
        claims: Vec<Claim>,
        signals: BTreeMap<String, Exploitation>,
        sources: BTreeMap<String, Vec<String>>,
    ) -> Evidence {
        Evidence {
            ids,
            claims,
            signals,
            sources,
        }
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
            kev: signal.is_some_and(|s| s.kev),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_policy() {
        let f = |sev: &str, fixed: Option<&str>| Finding {
            merge_hash: format!("m{sev}"),
            vuln_id: "CVE-1".into(),
            purl: "p".into(),
            severity: Some(sev.into()),
            fixed_version: fixed.map(Into::into),
            layer: String::new(),
            used_by_entrypoint: None,
        };
        let policy = Policy {
            fail_on: "high".into(),
            warn_on: Some("medium".into()),
            ignore_unfixed: false,
            ..Default::default()
        };
        assert_eq!(verdict(&[], &policy), "Pass");
        assert_eq!(verdict(&[f("low", None)], &policy), "Pass");
        assert_eq!(verdict(&[f("medium", None)], &policy), "Warn");
        assert_eq!(verdict(&[f("critical", None)], &policy), "Fail");
        let lenient = Policy {
            ignore_unfixed: true,
            ..policy
        };
        assert_eq!(verdict(&[f("critical", None)], &lenient), "Pass");
        assert_eq!(verdict(&[f("critical", Some("2.0"))], &lenient), "Fail");
    }
}
