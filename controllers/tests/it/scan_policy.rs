//! ScanPolicy: the evaluator's form and digest, the decision (Ready/Invalid, re-evaluation
//! when the policy changes and when a waiver expires, the wake-up at the next expiry),
//! the reconcile's calls against the mock API server, and a Scan naming a policy.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use serde_json::{Value, json};
use stellaops_controllers::cache::{Caches, Contents};
use stellaops_controllers::metrics::Metrics;
use stellaops_controllers::scan::{Outcome, ScanResult, compute_status, job_for};
use stellaops_controllers::scan_policy::{
    decide, policy_json, ready_digest, ready_policy, reconcile, to_policy,
};
use stellaops_controllers::{Config, Context, FIELD_MANAGER};
use stellaops_crds::scan::{FindingCounts, SbomRef, ScanPhase, Verdict};
use stellaops_crds::{Scan, ScanPolicy};
use stellaops_policy::evaluate::{Action, Finding, Subject, evaluate};
use stellaops_testing::mock_client;

fn at(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

fn policy(spec: Value) -> ScanPolicy {
    // Admitted as the API server would (schema defaults, CEL), so the tests see what a
    // reconcile sees.
    let (_, object) = stellaops_crds::validation::admit(&json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "ScanPolicy",
        "metadata": {"name": "production", "generation": 3,
                     "uid": "55550000-0000-4000-8000-000000000005"},
        "spec": spec
    }))
    .unwrap_or_else(|e| panic!("{e:?}"));
    let stellaops_crds::validation::StellaObject::ScanPolicy(policy) = object else {
        unreachable!()
    };
    policy
}

fn waivers() -> Value {
    json!({"failOn": "high", "rules": [
        {"name": "waive-minimist", "match": {"vulnerabilities": ["GHSA-minimist"]},
         "action": "ignore", "until": "2027-01-01T00:10:00Z",
         "justification": "args are ours"},
        {"name": "waive-later", "match": {"vulnerabilities": ["CVE-2"]},
         "action": "ignore", "until": "2027-06-01T00:00:00Z", "justification": "later"},
        {"name": "kev", "match": {"kev": true}, "action": "escalate", "escalateTo": "critical"},
        {"name": "payments", "match": {"namespaces": ["payments"], "layerDigests": ["sha256:aa"]},
         "action": "requireVex", "vendors": ["acme"],
         "vexJustifications": ["vulnerable_code_not_present"]},
        {"name": "epss", "match": {"epssAtLeast": 0.5, "fixAvailable": true,
                                    "sources": ["osv"], "purls": ["pkg:npm/*"]},
         "action": "fail"},
        {"name": "later", "match": {"severities": ["low"]}, "action": "defer"}
    ]})
}

#[test]
fn the_kind_maps_onto_the_evaluators_rules() {
    let p = to_policy(&policy(waivers()).spec);
    assert_eq!(p.fail_on.as_deref(), Some("high"));
    assert_eq!(p.rules.len(), 6);
    assert_eq!(
        p.rules[0].action,
        Action::Ignore {
            until: Some(at("2027-01-01T00:10:00Z")),
            justification: "args are ours".into()
        }
    );
    assert_eq!(
        p.rules[2].action,
        Action::Escalate {
            to: "critical".into()
        }
    );
    assert_eq!(
        p.rules[3].action,
        Action::RequireVex {
            vendors: vec!["acme".into()],
            justifications: vec!["vulnerable_code_not_present".into()]
        }
    );
    assert_eq!(p.rules[3].matchers.layers, vec!["sha256:aa".to_string()]);
    assert_eq!(p.rules[4].matchers.epss_at_least, Some(0.5));
    assert_eq!(p.rules[4].matchers.fix_available, Some(true));
    assert_eq!(p.rules[5].action, Action::Defer);
    assert!(p.problems().is_empty(), "{:?}", p.problems());
    // What the worker receives reads back as the same policy (so the same digest).
    let sent: stellaops_policy::evaluate::Policy =
        serde_json::from_str(&policy_json(&policy(waivers()).spec)).unwrap();
    assert_eq!(sent.digest(), p.digest());
    // And the evaluator decides with it: the waiver holds before its until, not after.
    let finding = Finding {
        id: "GHSA-minimist".into(),
        purl: "pkg:npm/minimist@1.2.0".into(),
        severity: Some("critical".into()),
        ..Default::default()
    };
    let subject = Subject {
        namespace: Some("shop"),
        repository: "registry.example.com/shop/web",
    };
    let before = evaluate(
        std::slice::from_ref(&finding),
        &[],
        &subject,
        &sent,
        at("2027-01-01T00:00:00Z"),
    );
    assert_eq!(before.verdict, "Pass");
    let after = evaluate(&[finding], &[], &subject, &sent, at("2027-01-01T00:10:00Z"));
    assert_eq!(after.verdict, "Fail");
}

#[test]
fn a_new_policy_is_ready_with_its_digest_and_wakes_at_the_next_expiry() {
    let p = policy(waivers());
    let now = at("2027-01-01T00:00:00Z");
    let d = decide(&p, &Config::default(), now);
    let digest = to_policy(&p.spec).digest();
    assert_eq!(d.status.policy_digest.as_deref(), Some(digest.as_str()));
    assert_eq!(d.status.rules, Some(6));
    assert_eq!(d.status.observed_generation, Some(3));
    assert_eq!(d.status.next_expiry, Some(Time(at("2027-01-01T00:10:00Z"))));
    assert!(d.job.is_none(), "nothing was decided under it yet");
    // Ten minutes to the expiry, plus a second so `until <= now` holds on waking.
    assert_eq!(d.requeue, Some(Duration::from_secs(601)));
    let ready = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Valid")
    );
    assert!(
        ready
            .message
            .contains("next waiver expiry 2027-01-01T00:10:00Z")
    );
    assert_eq!(d.events[0].1, "Ready");
    // Far from any expiry the wait is capped (a safety net against a lost requeue).
    let early = decide(&p, &Config::default(), at("2026-01-01T00:00:00Z"));
    assert_eq!(early.requeue, Some(Duration::from_secs(3600)));
    // Without waivers nothing is due.
    let plain = decide(&policy(json!({"failOn": "high"})), &Config::default(), now);
    assert_eq!((plain.requeue, plain.status.next_expiry), (None, None));
}

#[test]
fn an_expired_waiver_starts_a_reevaluation_and_the_next_one_is_awaited() {
    let mut p = policy(waivers());
    let config = Config::default();
    p.status = Some(decide(&p, &config, at("2027-01-01T00:00:00Z")).status);
    // Nothing happens while the waiver is in force.
    let quiet = decide(&p, &config, at("2027-01-01T00:09:59Z"));
    assert!(quiet.job.is_none());
    assert!(quiet.events.is_empty());
    // The controller wakes a second after `until`.
    let d = decide(&p, &config, at("2027-01-01T00:10:01Z"));
    let job = d.job.expect("a re-evaluation Job");
    let name = job.metadata.name.clone().unwrap();
    assert!(
        name.starts_with("spol-production-") && name.ends_with("-1798762200"),
        "{name}"
    );
    assert_eq!(job.metadata.namespace.as_deref(), Some("stellaops-system"));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ScanPolicy", "production")
    );
    assert_eq!(owner.block_owner_deletion, Some(false));
    let pod = job.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap();
    assert_eq!(args[..3], ["evaluate", "--policy-ref", "production"]);
    assert_eq!(args[3], "--policy-json");
    assert_eq!(args[4], policy_json(&p.spec));
    assert!(args.contains(&"--notify".to_string()));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(d.events.len(), 1);
    assert_eq!(d.events[0].0, EventType::Normal);
    assert_eq!(d.events[0].1, "WaiverExpired");
    assert!(d.events[0].2.contains("expired at 2027-01-01T00:10:00Z"));
    let last = d.status.last_reevaluation.clone().unwrap();
    assert_eq!(
        (last.reason.as_str(), last.job.as_str()),
        ("WaiverExpired", name.as_str())
    );
    // The next waiver is awaited now; deciding again does not start a second Job.
    assert_eq!(d.status.next_expiry, Some(Time(at("2027-06-01T00:00:00Z"))));
    p.status = Some(d.status);
    assert!(
        decide(&p, &config, at("2027-01-01T00:10:05Z"))
            .job
            .is_none()
    );
}

#[test]
fn a_changed_policy_starts_a_reevaluation_under_the_new_digest() {
    let config = Config::default();
    let mut before = policy(waivers());
    before.status = Some(decide(&before, &config, at("2026-12-01T00:00:00Z")).status);
    let mut changed = policy(json!({"failOn": "critical", "rules": waivers()["rules"]}));
    changed.status = before.status.clone();
    let d = decide(&changed, &config, at("2026-12-01T00:05:00Z"));
    let new_digest = to_policy(&changed.spec).digest();
    assert_ne!(
        Some(&new_digest),
        before.status.unwrap().policy_digest.as_ref()
    );
    assert_eq!(d.status.policy_digest.as_deref(), Some(new_digest.as_str()));
    let job = d.job.expect("a re-evaluation Job");
    let hex = &new_digest["sha256:".len()..];
    assert_eq!(
        job.metadata.name.as_deref(),
        Some(format!("spol-production-{}", &hex[..10]).as_str())
    );
    assert_eq!(d.events[0].1, "PolicyChanged");
}

/// The VEX settings become the consensus's trust in the evaluator's form (so the digest and
/// the worker's `--policy-json`); settings equal to the defaults keep the digest of a policy
/// without them; a change of the settings re-evaluates like any other change.
#[test]
fn vex_settings_are_the_consensus_trust_and_part_of_the_digest() {
    let config = Config::default();
    let plain = policy(json!({"failOn": "high"}));
    let spelled_out = policy(json!({"failOn": "high", "vex": {"defaultWeight": 1}}));
    assert_eq!(to_policy(&spelled_out.spec).vex, None);
    assert_eq!(
        to_policy(&spelled_out.spec).digest(),
        to_policy(&plain.spec).digest()
    );
    let weighted = policy(json!({"failOn": "high", "vex": {
        "providers": [{"name": "debian", "weight": 2}, {"name": "community", "weight": 0}],
        "defaultWeight": 0.5,
        "acceptedJustifications": ["component_not_present", "vulnerable_code_not_present"]
    }}));
    let p = to_policy(&weighted.spec);
    let trust = p.trust();
    assert_eq!(trust.weights.get("debian"), Some(&2.0));
    assert_eq!(trust.weights.get("community"), Some(&0.0));
    assert_eq!(trust.default_weight, 0.5);
    assert_eq!(
        trust.accepted_justifications.iter().collect::<Vec<_>>(),
        ["component_not_present", "vulnerable_code_not_present"]
    );
    assert!(p.problems().is_empty(), "{:?}", p.problems());
    let sent: stellaops_policy::evaluate::Policy =
        serde_json::from_str(&policy_json(&weighted.spec)).unwrap();
    assert_eq!(sent.trust(), trust, "the worker receives the settings");
    assert_ne!(p.digest(), to_policy(&plain.spec).digest());

    // Only the settings change: the verdicts decided under the policy are evaluated again.
    let mut before = weighted.clone();
    before.status = Some(decide(&before, &config, at("2026-12-01T00:00:00Z")).status);
    let mut changed = policy(json!({"failOn": "high", "vex": {
        "providers": [{"name": "debian", "weight": 3}, {"name": "community", "weight": 0}],
        "defaultWeight": 0.5,
        "acceptedJustifications": ["component_not_present", "vulnerable_code_not_present"]
    }}));
    changed.status = before.status.clone();
    let d = decide(&changed, &config, at("2026-12-01T00:05:00Z"));
    assert!(d.job.is_some(), "a re-evaluation Job");
    assert_eq!(d.events[0].1, "PolicyChanged");
    let args = d
        .job
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        args.iter().any(|a| a.contains(r#""debian":3.0"#)),
        "{args:?}"
    );
}

/// The schema refuses VEX settings the consensus could not use.
#[test]
fn vex_settings_are_checked_at_admission() {
    let refused = |vex: Value| {
        let object = json!({
            "apiVersion": "stella-ops.org/v1alpha1", "kind": "ScanPolicy",
            "metadata": {"name": "p"}, "spec": {"vex": vex}
        });
        match stellaops_crds::validation::admit(&object) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }
    };
    let twice =
        refused(json!({"providers": [{"name": "a", "weight": 1}, {"name": "a", "weight": 2}]}));
    assert!(
        twice
            .iter()
            .any(|m| m.contains("VEX provider names must be unique")),
        "{twice:?}"
    );
    let negative = refused(json!({"providers": [{"name": "a", "weight": -1}]}));
    assert!(
        negative
            .iter()
            .any(|m| m.starts_with("spec.vex.providers[0].weight")),
        "{negative:?}"
    );
    let unknown = refused(json!({"acceptedJustifications": ["because"]}));
    assert!(
        unknown
            .iter()
            .any(|m| m.starts_with("spec.vex.acceptedJustifications[0]")),
        "{unknown:?}"
    );
    let repeated = refused(
        json!({"acceptedJustifications": ["component_not_present", "component_not_present"]}),
    );
    assert!(
        repeated
            .iter()
            .any(|m| m.contains("accepted justifications must be unique")),
        "{repeated:?}"
    );
    assert!(
        refused(json!({"providers": [{"name": "a", "weight": 0}], "defaultWeight": 0})).is_empty()
    );
}

#[test]
fn a_policy_the_evaluator_refuses_is_invalid_with_a_message_naming_the_rule() {
    // CEL admits a blank justification; the evaluator's check does not.
    let mut p = policy(json!({"rules": [
        {"name": "blank", "action": "ignore", "justification": "   "}
    ]}));
    let good_digest = "sha256:0000".to_string();
    p.status = Some(stellaops_crds::ScanPolicyStatus {
        policy_digest: Some(good_digest.clone()),
        ..Default::default()
    });
    let d = decide(&p, &Config::default(), at("2027-01-01T00:00:00Z"));
    assert!(d.job.is_none());
    let ready = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Invalid")
    );
    assert!(
        ready
            .message
            .contains("rules[0] (\"blank\"): an ignore needs a justification"),
        "{}",
        ready.message
    );
    assert_eq!(d.events[0].0, EventType::Warning);
    assert_eq!(
        d.status.policy_digest,
        Some(good_digest),
        "the last valid digest stays"
    );
    // A Scan naming it waits, saying why.
    let mut stored = p.clone();
    stored.status = Some(d.status);
    let why = ready_policy(Some(&stored), "production").unwrap_err();
    assert!(
        why.contains("is not Ready") && why.contains("justification"),
        "{why}"
    );
    assert!(
        ready_policy(None, "production")
            .unwrap_err()
            .contains("does not exist")
    );
    let unchecked = policy(json!({}));
    assert!(
        ready_policy(Some(&unchecked), "production")
            .unwrap_err()
            .contains("not been checked")
    );
    // What the webhook judges by: the digest of a Ready policy, else why there is none.
    assert!(
        ready_digest(Some(&stored), "production")
            .unwrap_err()
            .contains("is not Ready")
    );
    let mut ready = policy(json!({"failOn": "high"}));
    ready.status = Some(decide(&ready, &Config::default(), at("2026-12-01T00:00:00Z")).status);
    assert_eq!(
        ready_digest(Some(&ready), "production"),
        Ok(to_policy(&ready.spec).digest())
    );
}

#[tokio::test]
async fn the_reconcile_applies_the_job_then_writes_the_status_and_events() {
    let config = Config::default();
    let mut p = policy(json!({"rules": [
        {"name": "waive", "match": {"vulnerabilities": ["CVE-1"]}, "action": "ignore",
         "until": "2026-06-01T00:00:00Z", "justification": "time-boxed"}
    ]}));
    p.status = Some(decide(&p, &config, at("2026-01-01T00:00:00Z")).status);
    // Expired since: the reconcile (at the real clock) re-evaluates now.
    let (client, mut server) = mock_client("default");
    let expected_job = decide(&p, &config, jiff::Timestamp::now())
        .job
        .unwrap()
        .metadata
        .name
        .unwrap();
    let verifier = tokio::spawn(async move {
        let apply = server
            .expect(
                Method::PATCH,
                &format!("/apis/batch/v1/namespaces/stellaops-system/jobs/{expected_job}"),
            )
            .await;
        assert!(apply.is_forced_apply());
        assert_eq!(apply.field_manager(), Some(FIELD_MANAGER));
        assert_eq!(apply.body["kind"], "Job");
        apply.respond_with_request_body();
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/scanpolicies/production/status",
            )
            .await;
        assert_eq!(
            status.body["status"]["lastReevaluation"]["reason"],
            "WaiverExpired"
        );
        assert!(
            status.body["status"]["policyDigest"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        let written = status.body["status"].clone();
        status.respond(
            200,
            json!({
            "apiVersion": "stella-ops.org/v1alpha1", "kind": "ScanPolicy",
            "metadata": {"name": "production"}, "spec": {}, "status": written}),
        );
        let event = server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/default/events",
            )
            .await;
        assert_eq!(event.body["reason"], "WaiverExpired");
        event.respond_with_request_body();
        server
            .expect_no_more_calls(Duration::from_millis(100))
            .await;
    });
    let ctx = Arc::new(Context::new(client, Metrics::unregistered(), config, None));
    reconcile(Arc::new(p), ctx).await.unwrap();
    verifier.await.unwrap();
}

fn scan_naming(policy: &str) -> Scan {
    serde_json::from_value(json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "Scan",
        "metadata": {"name": "web", "namespace": "shop", "generation": 1,
                     "uid": "66660000-0000-4000-8000-000000000006",
                     "creationTimestamp": "2026-11-22T08:00:00Z",
                     "finalizers": [stellaops_controllers::tenancy::FINALIZER]},
        "spec": {"image": "registry.example.com/shop/web:1",
                 "policy": {"policyRef": {"name": policy}}}
    }))
    .unwrap()
}

#[test]
fn a_scan_naming_a_policy_hands_the_worker_its_rules() {
    let p = policy(waivers());
    let json = policy_json(&p.spec);
    let job = job_for(&scan_naming("production"), &Config::default(), Some(&json));
    let args = job.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    let at = args.iter().position(|a| a == "--policy-ref").unwrap();
    assert_eq!(args[at + 1], "production");
    assert_eq!(args[at + 2], "--policy-json");
    assert_eq!(args[at + 3], json);
}

#[tokio::test]
async fn a_scan_naming_a_missing_policy_waits_pending_and_makes_no_job() {
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/shop/scans/web/status",
            )
            .await;
        assert_eq!(status.body["status"]["phase"], "Pending");
        let ready = &status.body["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert_eq!(ready["reason"], "PolicyNotReady");
        assert!(
            ready["message"]
                .as_str()
                .unwrap()
                .contains("ScanPolicy production does not exist"),
            "{ready}"
        );
        let mut stored = serde_json::to_value(scan_naming("production")).unwrap();
        stored["status"] = status.body["status"].clone();
        status.respond(200, stored);
        let event = server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events",
            )
            .await;
        assert_eq!(event.body["reason"], "PolicyNotReady");
        event.respond_with_request_body();
        server
            .expect_no_more_calls(Duration::from_millis(100))
            .await;
    });
    let caches = Caches::filled(Contents {
        scans: vec![scan_naming("production")],
        ..Default::default()
    });
    let ctx = Arc::new(
        Context::new(client, Metrics::unregistered(), Config::default(), None).with_caches(caches),
    );
    stellaops_controllers::scan::reconcile(Arc::new(scan_naming("production")), ctx)
        .await
        .unwrap();
    verifier.await.unwrap();
}

#[test]
fn the_ready_message_names_the_top_reasons_and_the_status_counts_exploitation() {
    let result = ScanResult {
        image_digest: "sha256:abc".into(),
        sbom: SbomRef {
            uri: "s3://stellaops/x".into(),
            sha256: "sha256:def".into(),
            components: 12,
        },
        usage: None,
        findings: FindingCounts {
            critical: 1,
            high: 4,
            medium: 0,
            low: 0,
        },
        verdict: Verdict::Fail,
        policy_digest: Some("sha256:feed".into()),
        reasons: Some(stellaops_store::scans::ResultReasons {
            top: vec![
                "CVE-2024-1 in pkg:npm/a@1 (critical; rule:kev: the rule fails)".into(),
                "CVE-2024-2 in pkg:npm/b@1 (high; threshold: high is at or above failOn high)"
                    .into(),
            ],
            deciding: 5,
            kev: 1,
            high_epss: 2,
        }),
        attach: None,
    };
    let t = Time(at("2027-01-01T00:00:00Z"));
    let s = compute_status(
        &scan_naming("production"),
        None,
        None,
        &Outcome::Succeeded(result),
        false,
        t,
    );
    assert_eq!(s.phase, Some(ScanPhase::Succeeded));
    assert_eq!(s.policy_digest.as_deref(), Some("sha256:feed"));
    let e = s.exploitation.unwrap();
    assert_eq!((e.kev, e.high_epss), (1, 2));
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert!(
        ready.message.contains(
            "Because of: CVE-2024-1 in pkg:npm/a@1 (critical; rule:kev: the rule fails); CVE-2024-2"
        ),
        "{}",
        ready.message
    );
    assert!(ready.message.contains("and 3 more"), "{}", ready.message);
    assert!(
        ready
            .message
            .contains("1 in CISA KEV, 2 with EPSS at least 0.1")
    );
}

/// License rules reach the evaluator one to one (and so the worker's `--policy-json`), are
/// part of the digest, and a policy without them keeps the digest it had.
#[test]
fn license_rules_are_the_evaluators_and_part_of_the_digest() {
    let plain = policy(json!({"failOn": "high"}));
    let licensed = policy(json!({"failOn": "high", "licenses": [
        {"name": "no-agpl", "action": "deny", "ids": ["AGPL-*"], "namespaces": ["shop"],
         "images": ["registry.example.com/shop/*"], "exceptPackages": ["pkg:npm/vetted@*"]},
        {"name": "gpl-warns", "action": "warn", "ids": ["GPL-*"]}
    ]}));
    let p = to_policy(&licensed.spec);
    assert!(p.problems().is_empty(), "{:?}", p.problems());
    assert_eq!(p.licenses.len(), 2);
    assert_eq!(
        p.licenses[0].action,
        stellaops_policy::license::LicenseAction::Deny
    );
    assert_eq!(p.licenses[0].ids, vec!["AGPL-*".to_string()]);
    assert_eq!(p.licenses[0].namespaces, vec!["shop".to_string()]);
    assert_eq!(
        p.licenses[0].except_packages,
        vec!["pkg:npm/vetted@*".to_string()]
    );
    assert_eq!(
        p.licenses[1].action,
        stellaops_policy::license::LicenseAction::Warn
    );
    let sent: stellaops_policy::evaluate::Policy =
        serde_json::from_str(&policy_json(&licensed.spec)).unwrap();
    assert_eq!(sent.licenses, p.licenses, "the worker receives the rules");
    assert_ne!(p.digest(), to_policy(&plain.spec).digest());
    assert!(!policy_json(&plain.spec).contains("licenses"));
}
