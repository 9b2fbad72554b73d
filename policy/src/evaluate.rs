//! The evaluator (high-level architecture §4.3–§4.4): one pure function from an image's
//! findings, the VEX consensus about them, their exploitation signals and a policy to the
//! verdict, with what decided each finding.
//!
//! Per finding, in order:
//! 1. **VEX**: a consensus of `not_affected` or `fixed` takes the finding out (decided by
//!    the VEX statement's providers).
//! 2. **Rules**, in their order: the first rule whose matchers all hold decides. `escalate`
//!    raises the finding's severity and evaluation goes on with the next rules; an `ignore`
//!    whose `until` has passed does not apply (no one has to remove it).
//! 3. **Thresholds**: with no deciding rule, `ignoreUnfixed`, `failOn` and `warnOn` decide
//!    by severity, as the Scan's inline policy always has.
//!
//! The verdict is `Fail` when any finding fails, else `Warn` when any warns, else `Pass`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::license::{self, LicenseDecided, LicenseRule};
use crate::vex::JUSTIFICATIONS;
use crate::vex::Status;
use crate::vex::consensus::{Decision, Trust};

/// Severities in order.
pub const SEVERITIES: &[&str] = &["low", "medium", "high", "critical"];

/// Rank of a severity (unknown: 0).
pub fn rank(severity: &str) -> u8 {
    SEVERITIES
        .iter()
        .position(|s| *s == severity)
        .map_or(0, |i| i as u8 + 1)
}

/// What the evaluator knows of one finding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Vulnerability id.
    pub id: String,
    /// Its aliases.
    pub aliases: Vec<String>,
    /// The component's package URL.
    pub purl: String,
    /// Severity (`low` … `critical`), if rated.
    pub severity: Option<String>,
    /// The fixed version, if any.
    pub fixed_version: Option<String>,
    /// Layer digest of the component.
    pub layer: String,
    /// Sources the advisory came from (`osv`, `debian`, …); a `sources` matcher holds
    /// when any of them is listed.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Whether the entrypoint uses the component (`None`: not known).
    pub used_by_entrypoint: Option<bool>,
    /// In the KEV catalog.
    pub kev: bool,
    /// EPSS probability.
    pub epss: Option<f64>,
}

/// Where a finding is: the image and the namespace asking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject<'a> {
    /// Namespace of the Scan or workload (`None`: cluster-wide evaluation).
    pub namespace: Option<&'a str>,
    /// Image repository (`registry/path`, no tag or digest).
    pub repository: &'a str,
}

/// Conditions of a rule; all given ones must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Matchers {
    /// Namespace globs.
    pub namespaces: Vec<String>,
    /// Image repository globs.
    pub images: Vec<String>,
    /// Package URL globs (the purl without qualifiers).
    pub purls: Vec<String>,
    /// Vulnerability ids (an alias matches too).
    pub vulnerabilities: Vec<String>,
    /// Advisory sources.
    pub sources: Vec<String>,
    /// Severities.
    pub severities: Vec<String>,
    /// Layer digests.
    pub layers: Vec<String>,
    /// The entrypoint uses the component (unknown never matches).
    pub used_by_entrypoint: Option<bool>,
    /// In the KEV catalog (or not).
    pub kev: Option<bool>,
    /// EPSS at least.
    pub epss_at_least: Option<f64>,
    /// A fixed version exists (or not).
    pub fix_available: Option<bool>,
}

/// What a rule does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Action {
    /// The finding does not count, until `until` (if given).
    Ignore {
        /// Expiry of the waiver.
        until: Option<Timestamp>,
        /// Why (required).
        justification: String,
    },
    /// The finding warns.
    Warn,
    /// The finding fails.
    Fail,
    /// Decision put off: the finding warns, never fails.
    Defer,
    /// The finding fails unless one of `vendors` says `not_affected` with one of
    /// `justifications` (any, when empty).
    RequireVex {
        /// Providers whose statement counts.
        vendors: Vec<String>,
        /// Accepted justifications.
        justifications: Vec<String>,
    },
    /// The finding's severity becomes `to` (evaluation goes on).
    Escalate {
        /// The new severity.
        to: String,
    },
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Name, shown as what decided.
    pub name: String,
    /// When it applies.
    #[serde(default)]
    pub matchers: Matchers,
    /// What it does.
    pub action: Action,
}

/// Which components the thresholds count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// All of the image's (the Inventory view).
    #[default]
    Inventory,
    /// Those the entrypoint uses (the Usage view); one whose use is not known counts.
    Usage,
}

impl Scope {
    /// The default (left out of the policy's JSON, so older digests stay the same).
    pub fn is_inventory(&self) -> bool {
        *self == Scope::Inventory
    }
}

/// A policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// Rules, first match decides.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Fail at or above this severity (`None`: thresholds never fail).
    pub fail_on: Option<String>,
    /// Warn at or above this severity.
    pub warn_on: Option<String>,
    /// Findings without a fixed version do not count by threshold.
    #[serde(default)]
    pub ignore_unfixed: bool,
    /// Which components the thresholds count.
    #[serde(default, skip_serializing_if = "Scope::is_inventory")]
    pub scope: Scope,
    /// How the VEX consensus weighs providers and which justifications it accepts (`None`:
    /// [`Trust::default`], left out of the JSON so digests of policies without it stay the
    /// same). Part of the digest: other trust can decide findings differently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vex: Option<Trust>,
    /// License rules (deny or warn by SPDX license id), in order; left out of the JSON when
    /// there are none, so digests of policies without them stay the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<LicenseRule>,
}

impl Policy {
    /// The trust the VEX consensus decides with under this policy.
    pub fn trust(&self) -> Trust {
        self.vex.clone().unwrap_or_default()
    }

    /// SHA-256 of the policy's canonical JSON (object keys sorted, no whitespace): equal
    /// policies have equal digests however they were written.
    pub fn digest(&self) -> String {
        let value = serde_json::to_value(self).expect("a policy serializes");
        let canonical = serde_json::to_vec(&value).expect("a value serializes");
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(canonical))
        )
    }

    /// The earliest `until` of an `ignore` rule still in force at `now`: when it passes,
    /// the same findings may decide differently, so whoever keeps verdicts current must
    /// evaluate again then.
    pub fn next_expiry(&self, now: Timestamp) -> Option<Timestamp> {
        self.rules
            .iter()
            .filter_map(|r| match &r.action {
                Action::Ignore { until, .. } => *until,
                _ => None,
            })
            .filter(|until| *until > now)
            .min()
    }

    /// What is wrong with the policy, each problem naming the rule (empty: nothing).
    /// Severities must be known ones, an `ignore` must say why, rule names must be unique
    /// (they are what the explanation shows as the decider) and EPSS is a probability.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let known = |s: &str| SEVERITIES.contains(&s);
        for (field, value) in [("failOn", &self.fail_on), ("warnOn", &self.warn_on)] {
            if let Some(v) = value
                && !known(v)
            {
                problems.push(format!("{field} {v:?} is not one of {SEVERITIES:?}"));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}] ({:?})", rule.name);
            if rule.name.is_empty() {
                problems.push(format!("rules[{i}] has no name"));
            } else if !names.insert(rule.name.as_str()) {
                problems.push(format!("{at}: the name is used by an earlier rule"));
            }
            for s in &rule.matchers.severities {
                if !known(s) {
                    problems.push(format!("{at}: severity {s:?} is not one of {SEVERITIES:?}"));
                }
            }
            if let Some(e) = rule.matchers.epss_at_least
                && !(0.0..=1.0).contains(&e)
            {
                problems.push(format!("{at}: epssAtLeast {e} is not between 0 and 1"));
            }
            match &rule.action {
                Action::Ignore { justification, .. } if justification.trim().is_empty() => {
                    problems.push(format!("{at}: an ignore needs a justification"));
                }
                Action::Escalate { to } if !known(to) => {
                    problems.push(format!(
                        "{at}: escalate to {to:?} is not one of {SEVERITIES:?}"
                    ));
                }
                _ => {}
            }
        }
        problems.extend(license::problems(&self.licenses));
        if let Some(trust) = &self.vex {
            let weight_ok = |w: f64| w.is_finite() && w >= 0.0;
            if !weight_ok(trust.default_weight) {
                problems.push(format!(
                    "vex.defaultWeight {} is not a finite weight of 0 or more",
                    trust.default_weight
                ));
            }
            for (provider, weight) in &trust.weights {
                if provider.trim().is_empty() {
                    problems.push("vex.providers: a provider has no name".to_string());
                }
                if !weight_ok(*weight) {
                    problems.push(format!(
                        "vex.providers ({provider:?}): weight {weight} is not a finite weight of 0 or more"
                    ));
                }
            }
            for j in &trust.accepted_justifications {
                if !JUSTIFICATIONS.contains(&j.as_str()) {
                    problems.push(format!(
                        "vex.acceptedJustifications: {j:?} is not one of {JUSTIFICATIONS:?}"
                    ));
                }
            }
        }
        problems
    }
}

/// What became of a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Does not count.
    Ignored,
    /// Counts, below the warn threshold.
    Counted,
    /// Makes the verdict at least Warn.
    Warns,
    /// Makes the verdict Fail.
    Fails,
}

/// A finding's outcome and what decided it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decided {
    /// Index into the findings given.
    pub finding: usize,
    /// The outcome.
    pub outcome: Outcome,
    /// The severity after escalation.
    pub severity: Option<String>,
    /// `rule:<name>`, `vex:<providers>` or `threshold`.
    pub decided_by: String,
    /// For a person.
    pub reason: String,
}

/// The verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// `Pass`, `Warn` or `Fail`.
    pub verdict: &'static str,
    /// The policy's digest.
    pub policy_digest: String,
    /// Every finding, in the order given.
    pub findings: Vec<Decided>,
    /// Counted findings (not ignored) by severity.
    pub counts: BTreeMap<String, u64>,
    /// The components a license rule decided (in the order of the components given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<LicenseDecided>,
}

/// Linear-time `*` glob (no other metacharacters).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|b| *b == b'*')
}

fn purl_without_qualifiers(purl: &str) -> &str {
    purl.split(['?', '#']).next().unwrap_or(purl)
}

fn matches(m: &Matchers, finding: &Finding, severity: Option<&str>, subject: &Subject<'_>) -> bool {
    let any = |list: &[String], value: &str| list.is_empty() || list.iter().any(|g| glob(g, value));
    (m.namespaces.is_empty()
        || subject
            .namespace
            .is_some_and(|ns| m.namespaces.iter().any(|g| glob(g, ns))))
        && any(&m.images, subject.repository)
        && any(&m.purls, purl_without_qualifiers(&finding.purl))
        && (m.vulnerabilities.is_empty()
            || m.vulnerabilities
                .iter()
                .any(|v| *v == finding.id || finding.aliases.contains(v)))
        && (m.sources.is_empty() || finding.sources.iter().any(|s| m.sources.contains(s)))
        && (m.severities.is_empty()
            || severity.is_some_and(|s| m.severities.iter().any(|x| x == s)))
        && (m.layers.is_empty() || m.layers.contains(&finding.layer))
        && m.used_by_entrypoint
            .is_none_or(|want| finding.used_by_entrypoint == Some(want))
        && m.kev.is_none_or(|want| finding.kev == want)
        && m.epss_at_least
            .is_none_or(|min| finding.epss.is_some_and(|e| e >= min))
        && m.fix_available
            .is_none_or(|want| finding.fixed_version.is_some() == want)
}

fn threshold(policy: &Policy, finding: &Finding, severity: Option<&str>) -> (Outcome, String) {
    if policy.ignore_unfixed && finding.fixed_version.is_none() {
        return (Outcome::Ignored, "no fixed version (ignoreUnfixed)".into());
    }
    if policy.scope == Scope::Usage && finding.used_by_entrypoint == Some(false) {
        return (
            Outcome::Ignored,
            "the entrypoint does not use the component (scope usage)".into(),
        );
    }
    let r = severity.map_or(0, rank);
    let at_least = |t: &Option<String>| t.as_deref().is_some_and(|t| r > 0 && r >= rank(t));
    let shown = severity.unwrap_or("unrated");
    if at_least(&policy.fail_on) {
        (
            Outcome::Fails,
            format!(
                "{shown} is at or above failOn {}",
                policy.fail_on.as_deref().unwrap_or("")
            ),
        )
    } else if at_least(&policy.warn_on) {
        (
            Outcome::Warns,
            format!(
                "{shown} is at or above warnOn {}",
                policy.warn_on.as_deref().unwrap_or("")
            ),
        )
    } else {
        (Outcome::Counted, format!("{shown} is below the thresholds"))
    }
}

/// Evaluate `findings` of `subject` under `policy` at `now`; `vex[i]` is the consensus
/// about `findings[i]` (`None`: no statement).
pub fn evaluate(
    findings: &[Finding],
    vex: &[Option<Decision>],
    subject: &Subject<'_>,
    policy: &Policy,
    now: Timestamp,
) -> Evaluation {
    evaluate_digested(findings, vex, subject, policy, &policy.digest(), now)
}

/// [`evaluate`] with `policy`'s digest computed once by the caller: judging many images
/// under one policy need not serialize and hash it for each.
pub fn evaluate_digested(
    findings: &[Finding],
    vex: &[Option<Decision>],
    subject: &Subject<'_>,
    policy: &Policy,
    digest: &str,
    now: Timestamp,
) -> Evaluation {
    evaluate_all(findings, vex, &[], subject, policy, digest, now)
}

/// [`evaluate_digested`] with the image's components and their declared licenses, for the
/// policy's license rules: a component a deny rule hits fails the verdict, one a warn rule
/// hits makes it at least `Warn`, as findings do.
pub fn evaluate_all(
    findings: &[Finding],
    vex: &[Option<Decision>],
    components: &[license::Component],
    subject: &Subject<'_>,
    policy: &Policy,
    digest: &str,
    now: Timestamp,
) -> Evaluation {
    let mut decided = Vec::with_capacity(findings.len());
    for (index, finding) in findings.iter().enumerate() {
        let decision = vex.get(index).and_then(Option::as_ref);
        decided.push(decide_one(index, finding, decision, subject, policy, now));
    }
    let licenses = license::decide(components, subject, &policy.licenses);
    let worst = decided
        .iter()
        .map(|d| d.outcome)
        .chain(licenses.iter().map(|l| l.outcome))
        .max();
    let verdict = match worst {
        Some(Outcome::Fails) => "Fail",
        Some(Outcome::Warns) => "Warn",
        _ => "Pass",
    };
    let mut counts: BTreeMap<String, u64> = SEVERITIES.iter().map(|s| (s.to_string(), 0)).collect();
    for d in decided.iter().filter(|d| d.outcome != Outcome::Ignored) {
        if let Some(slot) = d.severity.as_ref().and_then(|s| counts.get_mut(s)) {
            *slot += 1;
        }
    }
    Evaluation {
        verdict,
        policy_digest: digest.to_string(),
        findings: decided,
        counts,
        licenses,
    }
}

fn providers(decision: &Decision) -> String {
    decision
        .votes
        .iter()
        .filter(|v| v.not_counted.is_none() && Some(v.status) == decision.status)
        .map(|v| v.provider.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn decide_one(
    index: usize,
    finding: &Finding,
    vex: Option<&Decision>,
    subject: &Subject<'_>,
    policy: &Policy,
    now: Timestamp,
) -> Decided {
    let mut severity = finding.severity.clone();
    let done = |outcome, severity: Option<String>, by: String, reason: String| Decided {
        finding: index,
        outcome,
        severity,
        decided_by: by,
        reason,
    };
    if let Some(decision) = vex
        && let Some(status @ (Status::NotAffected | Status::Fixed)) = decision.status
    {
        return done(
            Outcome::Ignored,
            severity,
            format!("vex:{}", providers(decision)),
            format!("VEX consensus: {status}"),
        );
    }
    let mut escalations = Vec::new();
    for rule in &policy.rules {
        if !matches(&rule.matchers, finding, severity.as_deref(), subject) {
            continue;
        }
        let by = format!("rule:{}", rule.name);
        match &rule.action {
            Action::Ignore {
                until,
                justification,
            } => {
                if until.is_some_and(|u| u <= now) {
                    continue;
                }
                let expiry = until.map(|u| format!(" until {u}")).unwrap_or_default();
                return done(
                    Outcome::Ignored,
                    severity,
                    by,
                    format!("waived{expiry}: {justification}"),
                );
            }
            Action::Warn => return done(Outcome::Warns, severity, by, "the rule warns".into()),
            Action::Fail => return done(Outcome::Fails, severity, by, "the rule fails".into()),
            Action::Defer => {
                return done(
                    Outcome::Warns,
                    severity,
                    by,
                    "deferred: warns, never fails".into(),
                );
            }
            Action::RequireVex {
                vendors,
                justifications,
            } => {
                let vouched = vex.is_some_and(|d| {
                    d.votes.iter().any(|v| {
                        // Named vendors are trusted by the rule itself; "any vendor" means
                        // any whose statement the consensus counted (a provider weighted 0,
                        // or a justification the policy does not accept, vouches for nothing).
                        v.status == Status::NotAffected
                            && if vendors.is_empty() {
                                v.not_counted.is_none() && v.weight > 0.0
                            } else {
                                vendors.contains(&v.provider)
                            }
                            && (justifications.is_empty()
                                || v.justification
                                    .as_ref()
                                    .is_some_and(|j| justifications.contains(j)))
                    })
                });
                return if vouched {
                    done(
                        Outcome::Ignored,
                        severity,
                        by,
                        "not_affected from a required vendor".into(),
                    )
                } else {
                    done(
                        Outcome::Fails,
                        severity,
                        by,
                        format!(
                            "needs a not_affected statement from {}",
                            if vendors.is_empty() {
                                "any vendor".to_string()
                            } else {
                                vendors.join(", ")
                            }
                        ),
                    )
                };
            }
            Action::Escalate { to } => {
                if severity.as_deref().map_or(0, rank) < rank(to) {
                    escalations.push(format!("{} by rule {}", to, rule.name));
                    severity = Some(to.clone());
                }
            }
        }
    }
    let (outcome, mut reason) = threshold(policy, finding, severity.as_deref());
    if !escalations.is_empty() {
        reason = format!("escalated to {}; {reason}", escalations.join(", then "));
    }
    done(outcome, severity, "threshold".into(), reason)
}
