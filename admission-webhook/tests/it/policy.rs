//! The decision as a pure function, table-style; signatures; the cache.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{TimeZone, Utc};
use kube::core::admission::AdmissionResponse;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use serde_json::json;
use stellaops_admission_webhook::cache::Cache;
use stellaops_admission_webhook::cosign;
use stellaops_admission_webhook::policy::{
    CompiledPolicy, Evidence, ScanRecord, compile, compile_with_trusted_roots, decide, glob_match,
    normalize, respond,
};
use stellaops_admission_webhook::workload::{ContainerImage, ContainerKind};
use stellaops_crds::ZastavaPolicy;
use stellaops_crds::scan::Verdict;

pub const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

pub fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).expect("valid scalar")
}

pub fn public_pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .expect("PEM")
}

pub fn sign(key: &SigningKey, payload: &[u8]) -> String {
    let signature: Signature = key.sign(payload);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

pub fn zastava_policy(spec: serde_json::Value, generation: i64) -> ZastavaPolicy {
    serde_json::from_value(json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "ZastavaPolicy",
        "metadata": {"name": "prod", "generation": generation},
        "spec": spec,
    }))
    .expect("valid ZastavaPolicy")
}

fn compiled(spec: serde_json::Value, keys: &[String]) -> CompiledPolicy {
    compile(&zastava_policy(spec, 1), keys).expect("compiles")
}

fn container(image: &str) -> ContainerImage {
    ContainerImage {
        path: "spec.containers[0].image".into(),
        container: "app".into(),
        image: image.into(),
        kind: ContainerKind::Regular,
    }
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

#[test]
fn globs_match_within_and_across_segments() {
    for (pattern, text, expected) in [
        (
            "registry.example.com/**",
            "registry.example.com/a/b/c:1",
            true,
        ),
        ("registry.example.com/*", "registry.example.com/a:1", true),
        (
            "registry.example.com/*",
            "registry.example.com/a/b:1",
            false,
        ),
        (
            "registry.example.com/*/web*",
            "registry.example.com/app/web:2",
            true,
        ),
        ("registry.example.com/**", "other.example.com/a:1", false),
        (
            "docker.io/library/nginx:*",
            "docker.io/library/nginx:1.27",
            true,
        ),
        ("prod-?", "prod-a", true),
        ("prod-?", "prod-ab", false),
        ("team-*", "team-payments", true),
        ("**", "", true),
        ("*", "a/b", false),
        ("a**b", "a/x/y/b", true),
        ("a*/b", "a/b", true),
        ("**/web", "r.io/a/web", true),
        ("**/web", "r.io/a/web2", false),
        ("?", "/", false),
    ] {
        assert_eq!(glob_match(pattern, text), expected, "{pattern} ~ {text}");
    }
    // Patterns that make a backtracking matcher exponential finish here: the matcher is a
    // set of pattern positions advanced once per byte (this took minutes before).
    let name = format!("registry.example.com/{}", "a".repeat(4096));
    for pattern in [
        format!("{}b", "*a".repeat(30)),
        format!("{}b", "**a".repeat(30)),
        format!("registry.example.com/{}x", "*a*".repeat(20)),
    ] {
        assert!(!glob_match(&pattern, &name), "{pattern}");
    }
    assert!(glob_match(&"*a".repeat(30), &name[21..]));
    assert_eq!(normalize("nginx"), "docker.io/library/nginx:latest");
    assert_eq!(normalize("bitnami/redis:7"), "docker.io/bitnami/redis:7");
    assert_eq!(normalize("localhost:5000/a/b"), "localhost:5000/a/b:latest");
    assert_eq!(
        normalize(&format!("ghcr.io/x/y@{DIGEST}")),
        format!("ghcr.io/x/y@{DIGEST}")
    );
}

#[test]
fn compiling_reports_what_cannot_be_enforced() {
    let keyless = |authority: serde_json::Value| {
        zastava_policy(json!({"requireSignature": {"keyless": [authority]}}), 1)
    };
    let authority = json!({"issuer": "https://accounts.example.com", "subject": "ci@example.com",
        "trustedRoot": {"name": "sigstore-root"}});
    // The trusted root must be read (and be one).
    assert_eq!(
        compile(&keyless(authority.clone()), &[])
            .unwrap_err()
            .reason(),
        "InvalidTrustedRoot"
    );
    let error =
        compile_with_trusted_roots(&keyless(authority.clone()), &[], &["{}".into()]).unwrap_err();
    assert_eq!(error.reason(), "InvalidTrustedRoot");
    assert!(
        error
            .to_string()
            .contains("Secret sigstore-root key trusted_root.json"),
        "{error}"
    );
    let mut bad_pattern = authority.clone();
    bad_pattern.as_object_mut().unwrap().remove("subject");
    bad_pattern["subjectRegExp"] = json!("(unclosed");
    let error = compile_with_trusted_roots(&keyless(bad_pattern), &[], &["{}".into()]).unwrap_err();
    assert_eq!(error.reason(), "InvalidIdentity");
    assert!(error.to_string().contains("subjectRegExp"), "{error}");
    let keyed = zastava_policy(
        json!({"requireSignature": {"publicKeys": {"name": "keys", "namespace": "stellaops-system"}}}),
        1,
    );
    assert_eq!(
        compile(&keyed, &["not a key".into()]).unwrap_err().reason(),
        "InvalidKeys"
    );
    let broken = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_string();
    assert_eq!(
        compile(&keyed, &[broken]).unwrap_err().reason(),
        "InvalidKeys"
    );
    // Two keys in one value and a duplicate in another: two distinct keys.
    let (a, b) = (public_pem(&signing_key(1)), public_pem(&signing_key(2)));
    let policy = compile(&keyed, &[format!("{a}{b}"), a.clone()]).unwrap();
    assert_eq!(policy.signature.as_ref().unwrap().keys.len(), 2);
}

#[test]
fn the_cache_key_changes_with_generation_and_keys() {
    let spec = json!({"requireSignature": {"publicKeys": {"name": "keys", "namespace": "ns"}}});
    let (a, b) = (public_pem(&signing_key(1)), public_pem(&signing_key(2)));
    let first = compile(&zastava_policy(spec.clone(), 1), std::slice::from_ref(&a)).unwrap();
    let same = compile(&zastava_policy(spec.clone(), 1), std::slice::from_ref(&a)).unwrap();
    let new_generation =
        compile(&zastava_policy(spec.clone(), 2), std::slice::from_ref(&a)).unwrap();
    let new_key = compile(&zastava_policy(spec, 1), &[b]).unwrap();
    assert_eq!(first.cache_key, same.cache_key);
    assert_ne!(first.cache_key, new_generation.cache_key);
    assert_ne!(first.cache_key, new_key.cache_key);
}

fn scanned(verdict: Verdict, hours_ago: i64) -> Option<Result<Option<ScanRecord>, String>> {
    Some(Ok(Some(ScanRecord {
        verdict,
        finished_at: now() - chrono::Duration::hours(hours_ago),
        unverified: None,
    })))
}

#[test]
fn decisions_table() {
    let key = public_pem(&signing_key(1));
    let pinned = format!("registry.example.com/app@{DIGEST}");
    let all = json!({
        "mode": "enforce", "images": ["registry.example.com/**"],
        "exemptions": {"images": ["registry.example.com/debug/**"]},
        "requireDigest": true,
        "requireSignature": {"publicKeys": {"name": "keys", "namespace": "ns"}},
        "requireScan": {"maxAge": "24h", "denyOnVerdict": ["Fail"]},
    });
    let verified = Evidence {
        digest: Some(Ok(DIGEST.into())),
        signature: Some(Ok("fingerprint".into())),
        attestations: None,
        scan: scanned(Verdict::Pass, 1),
        unavailable: Vec::new(),
    };
    // (case, spec, image, evidence, expected reasons (substrings; empty = admitted))
    let cases: Vec<(&str, serde_json::Value, String, Evidence, Vec<&str>)> = vec![
        (
            "all good",
            all.clone(),
            pinned.clone(),
            verified.clone(),
            vec![],
        ),
        (
            "tag reference",
            json!({"mode": "enforce", "requireDigest": true}),
            "registry.example.com/app:1.0".into(),
            Evidence::default(),
            vec!["not pinned by digest; reference it as registry.example.com/app@sha256:<digest>"],
        ),
        (
            "outside the policy's images",
            all.clone(),
            "docker.io/library/nginx:1.27".into(),
            Evidence::default(),
            vec![],
        ),
        (
            "exempt image",
            all.clone(),
            "registry.example.com/debug/shell:1".into(),
            Evidence::default(),
            vec![],
        ),
        (
            "unsigned",
            all.clone(),
            pinned.clone(),
            Evidence {
                signature: Some(Err("no cosign signature".into())),
                ..verified.clone()
            },
            vec![
                "signature check failed for sha256:1111111111111111111111111111111111111111111111111111111111111111: no cosign signature",
            ],
        ),
        (
            "scan too old",
            all.clone(),
            pinned.clone(),
            Evidence {
                scan: scanned(Verdict::Pass, 30),
                ..verified.clone()
            },
            vec!["is from 2026-11-24T06:00:00Z (older than 24h); apply a Scan for it"],
        ),
        (
            "failing verdict",
            all.clone(),
            pinned.clone(),
            Evidence {
                scan: scanned(Verdict::Fail, 2),
                ..verified.clone()
            },
            vec!["has verdict Fail"],
        ),
        (
            "warn verdict allowed",
            all.clone(),
            pinned.clone(),
            Evidence {
                scan: scanned(Verdict::Warn, 2),
                ..verified.clone()
            },
            vec![],
        ),
        (
            "never scanned",
            all.clone(),
            pinned.clone(),
            Evidence {
                scan: Some(Ok(None)),
                ..verified.clone()
            },
            vec!["has never been scanned; apply a Scan for it"],
        ),
        (
            "registry unreachable",
            json!({"requireSignature": {"publicKeys": {"name": "k", "namespace": "n"}}}),
            "registry.example.com/app:2".into(),
            Evidence {
                digest: Some(Err("registry request failed: connection refused".into())),
                ..Evidence::default()
            },
            vec!["cannot resolve its digest: registry request failed"],
        ),
        (
            "database unavailable",
            json!({"requireScan": {}}),
            pinned.clone(),
            Evidence {
                digest: Some(Ok(DIGEST.into())),
                scan: Some(Err("scan results unavailable".into())),
                ..Evidence::default()
            },
            vec!["cannot read the scan result"],
        ),
        (
            "tag, unsigned and stale, all reported",
            all.clone(),
            "registry.example.com/app:3".into(),
            Evidence {
                digest: Some(Ok(DIGEST.into())),
                signature: Some(Err("no cosign signature".into())),
                attestations: None,
                scan: scanned(Verdict::Pass, 48),
                unavailable: Vec::new(),
            },
            vec!["not pinned", "signature check failed", "older than 24h"],
        ),
        (
            "a container without image",
            json!({"requireDigest": true}),
            String::new(),
            Evidence::default(),
            vec!["names no image"],
        ),
    ];
    for (case, spec, image, evidence, expected) in cases {
        let policy = compiled(spec, std::slice::from_ref(&key));
        let evidence = BTreeMap::from([(image.clone(), evidence)]);
        let decision = decide(&policy, &[container(&image)], &evidence, now());
        let reasons: Vec<&str> = decision
            .violations
            .iter()
            .map(|v| v.reason.as_str())
            .collect();
        assert_eq!(reasons.len(), expected.len(), "{case}: {reasons:?}");
        for (reason, wanted) in reasons.iter().zip(&expected) {
            assert!(
                reason.contains(wanted),
                "{case}: {reason:?} lacks {wanted:?}"
            );
        }
    }
}

#[test]
fn modes_shape_the_response() {
    let image = "registry.example.com/app:1.0";
    let evidence = BTreeMap::new();
    let base = || AdmissionResponse::invalid("unused").deny("");
    let mut answers = Vec::new();
    for mode in ["enforce", "warn", "dryRun"] {
        let policy = compiled(json!({"mode": mode, "requireDigest": true}), &[]);
        let decision = decide(&policy, &[container(image)], &evidence, now());
        let mut ok = base();
        ok.allowed = true;
        answers.push((decision.label(), respond(ok, &decision)));
    }
    let (label, enforce) = &answers[0];
    assert_eq!(*label, "deny");
    assert!(!enforce.allowed);
    assert_eq!(enforce.result.code, 403);
    assert!(
        enforce
            .result
            .message
            .starts_with("ZastavaPolicy prod denies this: spec.containers[0].image (registry.example.com/app:1.0): not pinned by digest"),
        "{}",
        enforce.result.message
    );
    let (label, warn) = &answers[1];
    assert_eq!(*label, "warn");
    assert!(warn.allowed);
    assert_eq!(warn.warnings.as_ref().unwrap().len(), 1);
    assert!(warn.warnings.as_ref().unwrap()[0].starts_with("ZastavaPolicy prod (warn): "));
    let (label, dry) = &answers[2];
    assert_eq!(*label, "dry-run-deny");
    assert!(dry.allowed);
    assert!(dry.warnings.is_none());
    assert!(dry.audit_annotations["would-deny"].contains("not pinned by digest"));
}

#[test]
fn cosign_signatures_verify_only_for_the_right_key_and_digest() {
    let key = signing_key(7);
    let trusted = compiled(
        json!({"requireSignature": {"publicKeys": {"name": "k", "namespace": "n"}}}),
        &[public_pem(&key)],
    )
    .signature
    .unwrap()
    .keys;
    let payload = cosign::payload("registry.example.com/app", DIGEST);
    let signature = sign(&key, &payload);
    let fingerprint = cosign::verify(&payload, &signature, DIGEST, &trusted).unwrap();
    assert_eq!(fingerprint, trusted[0].fingerprint);
    let other_digest = DIGEST.replace('1', "2");
    assert!(
        cosign::verify(&payload, &signature, &other_digest, &trusted)
            .unwrap_err()
            .contains("signature is for sha256:1111")
    );
    let wrong_key = sign(&signing_key(8), &payload);
    assert_eq!(
        cosign::verify(&payload, &wrong_key, DIGEST, &trusted).unwrap_err(),
        "not signed by any trusted key"
    );
    let mut tampered = payload.clone();
    tampered[10] ^= 1;
    assert!(cosign::verify(&tampered, &signature, DIGEST, &trusted).is_err());
    assert!(cosign::verify(&payload, "%%%", DIGEST, &trusted).is_err());
    assert_eq!(
        cosign::signature_tag(DIGEST),
        "sha256-1111111111111111111111111111111111111111111111111111111111111111.sig"
    );
}

#[test]
fn the_cache_is_bounded_and_expires() {
    let cache: Cache<u32> = Cache::new(3);
    let start = Instant::now();
    for i in 0..5 {
        cache.insert(format!("k{i}"), i, Duration::from_secs(10), start);
    }
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.get("k0", start), None, "oldest evicted first");
    assert_eq!(cache.get("k4", start), Some(4));
    assert_eq!(cache.get("k4", start + Duration::from_secs(11)), None);
    // Overwriting keeps one entry per key and the newest value.
    for _ in 0..100 {
        cache.insert("k4".into(), 9, Duration::from_secs(10), start);
    }
    assert_eq!(cache.get("k4", start), Some(9));
    assert!(cache.len() <= 3);
}

#[test]
fn cache_entries_are_forgotten_by_key() {
    let cache: Cache<u32> = Cache::new(3);
    let start = Instant::now();
    for key in ["scan|sha256:a", "scan|sha256:p|sha256:a", "scan|sha256:b"] {
        cache.insert(key.into(), 1, Duration::from_secs(10), start);
    }
    assert_eq!(cache.forget(|key| key.ends_with("|sha256:a")), 2);
    assert_eq!(cache.get("scan|sha256:a", start), None);
    assert_eq!(cache.get("scan|sha256:p|sha256:a", start), None);
    assert_eq!(cache.get("scan|sha256:b", start), Some(1));
    assert_eq!(cache.forget(|_| false), 0);
    // The room is free again, and the oldest left is still the first to go.
    for i in 0..3 {
        cache.insert(format!("k{i}"), i, Duration::from_secs(10), start);
    }
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.get("scan|sha256:b", start), None);
    assert_eq!(cache.get("k0", start), Some(0));
}
