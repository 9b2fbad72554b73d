//! CEL and schema rules exercised one by one, including transition rules.

use serde_json::{Value, json};
use stellaops_crds::validation::{StellaObject, admit, admit_update};

fn scan(spec: Value) -> Value {
    json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "Scan",
           "metadata": {"name": "s", "namespace": "default"}, "spec": spec})
}

fn messages(
    result: Result<(Value, StellaObject), Vec<stellaops_crds::validation::FieldError>>,
) -> Vec<String> {
    match result {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn defaults_are_applied_before_rules_and_parse() {
    let (defaulted, typed) = admit(&scan(json!({"image": "nginx:1.27"}))).unwrap();
    assert_eq!(defaulted["spec"]["policy"]["failOn"], "critical");
    assert_eq!(defaulted["spec"]["activeDeadlineSeconds"], 600);
    assert_eq!(defaulted["spec"]["sbomFormat"], "cyclonedx-json");
    let StellaObject::Scan(scan) = typed else {
        panic!("not a Scan")
    };
    assert_eq!(scan.spec.platform, "linux/amd64");
}

#[test]
fn digest_references_must_be_complete() {
    let good = format!("nginx@sha256:{}", "a".repeat(64));
    assert!(admit(&scan(json!({"image": good}))).is_ok());
    let short = messages(admit(&scan(json!({"image": "nginx@sha256:abc"}))));
    assert!(
        short.iter().any(|m| m.starts_with("spec.image:")),
        "{short:?}"
    );
    let upper = messages(admit(&scan(
        json!({"image": format!("nginx@sha256:{}", "A".repeat(64))}),
    )));
    assert!(!upper.is_empty());
}

#[test]
fn scan_image_is_immutable_but_other_fields_may_change() {
    let old = scan(json!({"image": "nginx:1.27"}));
    let changed_image = scan(json!({"image": "nginx:1.28"}));
    let errors = messages(admit_update(&changed_image, Some(&old)));
    assert!(
        errors.iter().any(|m| m.contains("spec.image is immutable")),
        "{errors:?}"
    );
    let forced = scan(json!({"image": "nginx:1.27", "force": true}));
    assert!(admit_update(&forced, Some(&old)).is_ok());
}

#[test]
fn warn_threshold_must_be_below_fail_threshold() {
    let ok = scan(json!({"image": "nginx", "policy": {"failOn": "high", "warnOn": "medium"}}));
    assert!(admit(&ok).is_ok());
    let equal = scan(json!({"image": "nginx", "policy": {"failOn": "high", "warnOn": "high"}}));
    assert!(!messages(admit(&equal)).is_empty());
}

#[test]
fn wrong_types_and_nulls_are_reported_with_paths() {
    let errors = messages(admit(&scan(json!({"image": 42, "force": "yes"}))));
    assert!(
        errors
            .iter()
            .any(|m| m.starts_with("spec.image: Invalid value: 42: must be of type string")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|m| m.starts_with("spec.force:")),
        "{errors:?}"
    );
    // null on a non-nullable field means "absent", so the default applies.
    let (defaulted, _) = admit(&scan(json!({"image": "nginx", "force": null}))).unwrap();
    assert_eq!(defaulted["spec"]["force"], false);
}

#[test]
fn metadata_and_kind_are_checked() {
    let mut doc = scan(json!({"image": "nginx"}));
    doc["metadata"]["name"] = json!("Not_Valid");
    assert!(
        messages(admit(&doc))
            .iter()
            .any(|m| m.starts_with("metadata.name: Invalid value"))
    );
    doc["kind"] = json!("Scanner");
    assert!(
        messages(admit(&doc))
            .iter()
            .any(|m| m.starts_with("kind: Unsupported value"))
    );
    let mut doc = scan(json!({"image": "nginx"}));
    doc["apiVersion"] = json!("stella-ops.org/v1");
    assert!(
        messages(admit(&doc))
            .iter()
            .any(|m| m.starts_with("apiVersion: Unsupported value"))
    );
}

fn platform(spec: Value) -> Value {
    json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "Platform",
           "metadata": {"name": "p", "namespace": "stellaops"}, "spec": spec})
}

#[test]
fn platform_manifest_source_is_exactly_one() {
    let base = json!({"version": "2.4.1", "verification": {"publicKeySecretRef": {"name": "k"}}});
    let mut none = base.clone();
    none["releaseManifest"] = json!({});
    assert!(
        messages(admit(&platform(none)))
            .iter()
            .any(|m| m.contains("exactly one"))
    );
    let mut url = base.clone();
    url["releaseManifest"] = json!({"url": "https://releases.example.com/release.yaml"});
    assert!(admit(&platform(url)).is_ok());
    let mut http = base;
    http["releaseManifest"] = json!({"url": "http://releases.example.com/release.yaml"});
    assert!(
        messages(admit(&platform(http)))
            .iter()
            .any(|m| m.starts_with("spec.releaseManifest.url"))
    );
}

#[test]
fn federation_site_id_is_immutable_and_signing_is_required_to_export_signed() {
    let site = |id: &str, policy: Value| {
        json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "FederationSite",
               "metadata": {"name": "f", "namespace": "stellaops"},
               "spec": {"siteId": id, "direction": "export",
                        "transport": {"volume": {"claim": {"name": "drop"}}}, "policy": policy}})
    };
    let unsigned_export = messages(admit(&site("site-a", json!({}))));
    assert!(
        unsigned_export
            .iter()
            .any(|m| m.contains("signingKey is required")),
        "{unsigned_export:?}"
    );
    let signed = site(
        "site-a",
        json!({"signingKey": {"name": "federation-signer"}}),
    );
    assert!(admit(&signed).is_ok());
    let renamed = site(
        "site-b",
        json!({"signingKey": {"name": "federation-signer"}}),
    );
    assert!(
        messages(admit_update(&renamed, Some(&signed)))
            .iter()
            .any(|m| m.contains("siteId is immutable"))
    );
}

#[test]
fn schedule_accepts_macros_and_rejects_time_zone_in_expression() {
    let schedule = |expr: &str| {
        json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "Schedule",
               "metadata": {"name": "s", "namespace": "default"}, "spec": {"schedule": expr}})
    };
    assert!(admit(&schedule("@daily")).is_ok());
    assert!(admit(&schedule("*/15 1-5 * * MON-FRI")).is_ok());
    assert!(admit(&schedule("0 2 * * * Europe/Sofia")).is_err());
    assert!(admit(&schedule("@fortnightly")).is_err());
}
