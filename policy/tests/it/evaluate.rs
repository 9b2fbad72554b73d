use jiff::Timestamp;
use serde_json::json;
use stellaops_policy::evaluate::{Finding, Outcome, Policy, Subject, evaluate, glob};
use stellaops_policy::vex::Status;
use stellaops_policy::vex::consensus::{Decision, Vote};

fn finding(id: &str, severity: &str, fixed: Option<&str>) -> Finding {
    Finding {
        id: id.into(),
        purl: "pkg:deb/debian/openssl@3.0.11-1?arch=amd64".into(),
        severity: Some(severity.into()),
        fixed_version: fixed.map(str::to_string),
        layer: "sha256:aa".into(),
        ..Default::default()
    }
}

fn policy(value: serde_json::Value) -> Policy {
    serde_json::from_value(value).expect("a policy")
}

const SUBJECT: Subject<'static> = Subject {
    namespace: Some("payments"),
    repository: "registry.example/payments/api",
};

fn now() -> Timestamp {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

#[test]
fn thresholds_decide_as_the_inline_policy_does() {
    let findings = [
        finding("CVE-1", "medium", None),
        finding("CVE-2", "high", Some("1.1")),
    ];
    let cases = [
        (json!({"failOn": "high"}), "Fail"),
        (json!({"failOn": "critical"}), "Pass"),
        (json!({"failOn": "critical", "warnOn": "medium"}), "Warn"),
        (json!({"failOn": "high", "ignoreUnfixed": true}), "Fail"),
        (json!({"failOn": "medium", "ignoreUnfixed": true}), "Fail"),
        (
            json!({"failOn": "critical", "warnOn": "medium", "ignoreUnfixed": true}),
            "Warn",
        ),
        (json!({}), "Pass"),
    ];
    for (p, want) in cases {
        let e = evaluate(&findings, &[], &SUBJECT, &policy(p.clone()), now());
        assert_eq!(e.verdict, want, "{p}");
    }
    let e = evaluate(
        &findings,
        &[],
        &SUBJECT,
        &policy(json!({"failOn": "high"})),
        now(),
    );
    assert_eq!(e.findings[1].decided_by, "threshold");
    assert_eq!(e.counts["high"], 1);
}

#[test]
fn scope_usage_counts_only_components_the_entrypoint_uses() {
    let with_use = |used: Option<bool>| Finding {
        used_by_entrypoint: used,
        ..finding("CVE-9", "critical", Some("2.0"))
    };
    let usage = policy(json!({"failOn": "critical", "scope": "usage"}));
    let inventory = policy(json!({"failOn": "critical"}));
    let unused = [with_use(Some(false))];
    assert_eq!(
        evaluate(&unused, &[], &SUBJECT, &usage, now()).verdict,
        "Pass"
    );
    let e = evaluate(&unused, &[], &SUBJECT, &usage, now());
    assert_eq!(e.findings[0].outcome, Outcome::Ignored);
    assert!(
        e.findings[0].reason.contains("scope usage"),
        "{}",
        e.findings[0].reason
    );
    assert_eq!(
        evaluate(&unused, &[], &SUBJECT, &inventory, now()).verdict,
        "Fail"
    );
    // Used, or not known: it counts.
    for used in [Some(true), None] {
        let e = evaluate(&[with_use(used)], &[], &SUBJECT, &usage, now());
        assert_eq!(e.verdict, "Fail", "{used:?}");
    }
    // The default scope leaves the policy's JSON (and so its digest) as it was.
    assert_eq!(
        serde_json::to_value(&inventory).unwrap(),
        json!({"rules": [], "failOn": "critical", "warnOn": null, "ignoreUnfixed": false})
    );
    assert_ne!(usage.digest(), inventory.digest());
}

fn vex(status: Status, provider: &str, justification: Option<&str>) -> Decision {
    Decision {
        status: Some(status),
        votes: vec![Vote {
            provider: provider.into(),
            status,
            weight: 1.0,
            not_counted: None,
            document: "doc@1".into(),
            justification: justification.map(str::to_string),
        }],
        conflicts: vec![],
    }
}

#[test]
fn a_not_affected_consensus_takes_a_finding_out() {
    let findings = [finding("CVE-1", "critical", None)];
    let p = policy(json!({"failOn": "high"}));
    assert_eq!(
        evaluate(&findings, &[None], &SUBJECT, &p, now()).verdict,
        "Fail"
    );
    let decided = evaluate(
        &findings,
        &[Some(vex(
            Status::NotAffected,
            "debian",
            Some("vulnerable_code_not_present"),
        ))],
        &SUBJECT,
        &p,
        now(),
    );
    assert_eq!(decided.verdict, "Pass");
    assert_eq!(decided.findings[0].decided_by, "vex:debian");
    assert_eq!(decided.counts["critical"], 0);
    // affected or under investigation changes nothing.
    for status in [Status::Affected, Status::UnderInvestigation] {
        let e = evaluate(
            &findings,
            &[Some(vex(status, "debian", None))],
            &SUBJECT,
            &p,
            now(),
        );
        assert_eq!(e.verdict, "Fail");
    }
}

#[test]
fn a_waiver_applies_until_it_expires_without_anyone_touching_it() {
    let findings = [finding("CVE-2024-1", "critical", None)];
    let p = policy(json!({"failOn": "high", "rules": [{
        "name": "accepted-risk",
        "matchers": {"vulnerabilities": ["CVE-2024-1"], "namespaces": ["pay*"]},
        "action": {"type": "ignore", "until": "2026-07-01T00:00:00Z", "justification": "RISK-42"}
    }]}));
    let before = evaluate(&findings, &[], &SUBJECT, &p, now());
    assert_eq!(before.verdict, "Pass");
    assert_eq!(before.findings[0].outcome, Outcome::Ignored);
    assert!(before.findings[0].reason.contains("RISK-42"));
    let after = evaluate(
        &findings,
        &[],
        &SUBJECT,
        &p,
        "2026-07-01T00:00:00Z".parse().unwrap(),
    );
    assert_eq!(after.verdict, "Fail", "expired at until");
    let other_namespace = Subject {
        namespace: Some("web"),
        ..SUBJECT
    };
    assert_eq!(
        evaluate(&findings, &[], &other_namespace, &p, now()).verdict,
        "Fail"
    );
}

#[test]
fn kev_and_epss_escalate_and_the_first_deciding_rule_wins() {
    let mut exploited = finding("CVE-2021-44228", "medium", Some("2.17.1"));
    exploited.kev = true;
    let mut likely = finding("CVE-2024-2", "low", None);
    likely.epss = Some(0.4);
    let unlikely = finding("CVE-2024-3", "low", None);
    let p = policy(json!({"failOn": "critical", "warnOn": "high", "rules": [
        {"name": "kev", "matchers": {"kev": true}, "action": {"type": "escalate", "to": "critical"}},
        {"name": "epss", "matchers": {"epssAtLeast": 0.3}, "action": {"type": "escalate", "to": "high"}},
        {"name": "low-noise", "matchers": {"severities": ["low"]}, "action": {"type": "ignore", "justification": "noise"}}
    ]}));
    let e = evaluate(&[exploited, likely, unlikely], &[], &SUBJECT, &p, now());
    assert_eq!(e.verdict, "Fail");
    assert_eq!(e.findings[0].severity.as_deref(), Some("critical"));
    assert!(
        e.findings[0]
            .reason
            .contains("escalated to critical by rule kev")
    );
    assert_eq!(
        e.findings[1].outcome,
        Outcome::Warns,
        "escalated past the ignore rule"
    );
    assert_eq!(e.findings[2].outcome, Outcome::Ignored);
    assert_eq!(e.findings[2].decided_by, "rule:low-noise");
}

#[test]
fn require_vex_fails_until_a_named_vendor_vouches() {
    let findings = [finding("CVE-1", "low", None)];
    let p = policy(json!({"rules": [{
        "name": "openssl-needs-vendor",
        "matchers": {"purls": ["pkg:deb/debian/openssl@*"]},
        "action": {"type": "requireVex", "vendors": ["debian"], "justifications": ["vulnerable_code_not_present"]}
    }]}));
    assert_eq!(
        evaluate(&findings, &[None], &SUBJECT, &p, now()).verdict,
        "Fail"
    );
    let wrong_vendor = vex(Status::Affected, "other", None);
    assert_eq!(
        evaluate(&findings, &[Some(wrong_vendor)], &SUBJECT, &p, now()).verdict,
        "Fail"
    );
    // debian's not_affected is also the consensus, which takes the finding out first.
    let vouched = vex(
        Status::NotAffected,
        "debian",
        Some("vulnerable_code_not_present"),
    );
    assert_eq!(
        evaluate(&findings, &[Some(vouched)], &SUBJECT, &p, now()).verdict,
        "Pass"
    );
}

#[test]
fn require_vex_from_any_vendor_takes_only_statements_the_consensus_counted() {
    // No statement counted, so no consensus takes the finding out first: the rule decides.
    let findings = [finding("CVE-1", "low", None)];
    let p = policy(json!({"rules": [{
        "name": "any-vendor",
        "matchers": {"purls": ["pkg:deb/debian/openssl@*"]},
        "action": {"type": "requireVex", "vendors": [], "justifications": []}
    }]}));
    let uncounted = |weight: f64, not_counted: Option<&str>| Decision {
        status: None,
        votes: vec![Vote {
            provider: "community".into(),
            status: Status::NotAffected,
            weight,
            not_counted: not_counted.map(str::to_string),
            document: "doc@1".into(),
            justification: Some("vulnerable_code_not_in_execute_path".into()),
        }],
        conflicts: vec![],
    };
    for decision in [
        uncounted(0.0, Some("weight 0")),
        uncounted(1.0, Some("justification not accepted")),
    ] {
        assert_eq!(
            evaluate(&findings, &[Some(decision.clone())], &SUBJECT, &p, now()).verdict,
            "Fail",
            "{decision:?}"
        );
    }
    // The same statement counted by the consensus satisfies "any vendor".
    let counted = vex(
        Status::NotAffected,
        "community",
        Some("vulnerable_code_not_in_execute_path"),
    );
    assert_eq!(
        evaluate(&findings, &[Some(counted)], &SUBJECT, &p, now()).verdict,
        "Pass"
    );
}

#[test]
fn defer_warns_and_never_fails() {
    let findings = [finding("CVE-1", "critical", None)];
    let p = policy(json!({"failOn": "high", "rules": [
        {"name": "later", "matchers": {"images": ["registry.example/payments/*"]}, "action": {"type": "defer"}}
    ]}));
    assert_eq!(
        evaluate(&findings, &[], &SUBJECT, &p, now()).verdict,
        "Warn"
    );
}

#[test]
fn the_digest_is_of_the_canonical_form() {
    let a = policy(json!({"failOn": "high", "rules": [{"name": "r", "action": {"type": "warn"}}]}));
    let b: Policy = serde_json::from_str(
        r#"{ "rules": [ { "action": {"type":"warn"}, "name":"r" } ], "failOn":"high" }"#,
    )
    .unwrap();
    assert_eq!(a.digest(), b.digest());
    assert!(a.digest().starts_with("sha256:"));
    let c =
        policy(json!({"failOn": "critical", "rules": [{"name": "r", "action": {"type": "warn"}}]}));
    assert_ne!(a.digest(), c.digest());
}

#[test]
fn globs_match_in_linear_time() {
    assert!(glob("registry.example/*", "registry.example/a/b"));
    assert!(glob("*api", "registry.example/payments/api"));
    assert!(!glob("*api", "registry.example/payments/apis"));
    assert!(glob("a*b*c", "aXXbYYc"));
    assert!(!glob("a*b*c", "aXXbYY"));
    assert!(glob("", ""));
    assert!(!glob("", "x"));
    // Many stars against a long non-matching text (backtracking globs go exponential here;
    // the two-pointer walk is at most pattern × text steps).
    let pattern = "*a".repeat(50);
    let text = "a".repeat(49) + &"b".repeat(100_000);
    assert!(!glob(&pattern, &text));
}

#[test]
fn the_next_expiry_is_the_earliest_waiver_still_in_force() {
    let p = policy(json!({"failOn": "high", "rules": [
        {"name": "a", "matchers": {"vulnerabilities": ["CVE-1"]},
         "action": {"type": "ignore", "until": "2026-05-01T00:00:00Z", "justification": "gone"}},
        {"name": "b", "matchers": {"vulnerabilities": ["CVE-2"]},
         "action": {"type": "ignore", "until": "2026-09-01T00:00:00Z", "justification": "later"}},
        {"name": "c", "matchers": {"vulnerabilities": ["CVE-3"]},
         "action": {"type": "ignore", "until": "2026-07-01T00:00:00Z", "justification": "sooner"}},
        {"name": "d", "action": {"type": "ignore", "justification": "forever"}},
    ]}));
    assert_eq!(
        p.next_expiry(now()),
        Some("2026-07-01T00:00:00Z".parse().unwrap())
    );
    assert_eq!(
        p.next_expiry("2026-07-01T00:00:00Z".parse().unwrap()),
        Some("2026-09-01T00:00:00Z".parse().unwrap()),
        "a waiver expiring exactly now is no longer in force"
    );
    assert_eq!(p.next_expiry("2027-01-01T00:00:00Z".parse().unwrap()), None);
}

#[test]
fn problems_name_the_rule_and_what_is_wrong() {
    let p = policy(json!({"failOn": "severe", "rules": [
        {"name": "w", "action": {"type": "ignore", "justification": "  "}},
        {"name": "w", "action": {"type": "warn"}},
        {"name": "e", "matchers": {"epssAtLeast": 1.5, "severities": ["urgent"]},
         "action": {"type": "escalate", "to": "extreme"}},
    ]}));
    let problems = p.problems();
    for expected in [
        "failOn \"severe\"",
        "rules[0] (\"w\"): an ignore needs a justification",
        "rules[1] (\"w\"): the name is used by an earlier rule",
        "rules[2] (\"e\"): severity \"urgent\"",
        "rules[2] (\"e\"): epssAtLeast 1.5",
        "rules[2] (\"e\"): escalate to \"extreme\"",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected} not in {problems:?}"
        );
    }
    assert_eq!(problems.len(), 6, "{problems:?}");
    assert!(policy(json!({"failOn": "high"})).problems().is_empty());
}

#[test]
fn vex_trust_is_checked_and_left_out_of_the_digest_when_not_given() {
    let p = policy(json!({"failOn": "high", "vex": {
        "weights": {"vendor": -1.0, "": 1.0}, "defaultWeight": -0.5,
        "acceptedJustifications": ["because"]}}));
    let problems = p.problems();
    for expected in [
        "vex.defaultWeight -0.5",
        "vex.providers (\"vendor\"): weight -1",
        "vex.providers: a provider has no name",
        "vex.acceptedJustifications: \"because\"",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected} not in {problems:?}"
        );
    }
    // Without settings the JSON (so the digest) is what it was before they existed.
    let plain = policy(json!({"failOn": "high"}));
    assert_eq!(serde_json::to_value(&plain).unwrap().get("vex"), None);
    assert_eq!(
        plain.trust(),
        stellaops_policy::vex::consensus::Trust::default()
    );
    let weighted = policy(json!({"failOn": "high", "vex": {
        "weights": {"vendor": 2.0}, "defaultWeight": 1.0,
        "acceptedJustifications": ["component_not_present"]}}));
    assert!(weighted.problems().is_empty(), "{:?}", weighted.problems());
    assert_ne!(weighted.digest(), plain.digest());
}

#[test]
fn a_source_matcher_holds_when_any_source_of_the_advisory_is_listed() {
    let p = policy(json!({"failOn": "critical", "rules": [
        {"name": "debian-says", "matchers": {"sources": ["debian"]}, "action": {"type": "fail"}}
    ]}));
    let mut f = finding("CVE-1", "low", None);
    f.sources = vec!["ghsa".into(), "osv".into()];
    let before = evaluate(std::slice::from_ref(&f), &[], &SUBJECT, &p, now());
    assert_eq!(before.verdict, "Pass");
    f.sources.push("debian".into());
    let after = evaluate(&[f], &[], &SUBJECT, &p, now());
    assert_eq!(after.verdict, "Fail");
    assert_eq!(after.findings[0].decided_by, "rule:debian-says");
}
