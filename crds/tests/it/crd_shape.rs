//! What every kind promises DESIGN.md §1: status subresource, short name, category,
//! a Ready printer column, descriptions on every field.

use serde_json::Value;
use stellaops_crds::{all_crds, crd_file_name, crd_yaml};

#[test]
fn every_crd_has_status_category_short_name_and_ready_column() {
    let crds = all_crds();
    assert_eq!(crds.len(), 8);
    for crd in &crds {
        let kind = &crd.spec.names.kind;
        assert_eq!(crd.spec.group, "stella-ops.org");
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["stellaops".to_string()][..]),
            "{kind}"
        );
        assert!(
            crd.spec
                .names
                .short_names
                .as_ref()
                .is_some_and(|s| !s.is_empty()),
            "{kind}"
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{kind}"
        );
        let columns = version.additional_printer_columns.as_ref().unwrap();
        assert!(
            columns.iter().any(|c| c.name == "Ready"),
            "{kind} lacks a Ready column"
        );
        assert!(
            columns.iter().any(|c| c.name == "Age"),
            "{kind} lacks an Age column"
        );
        let scope = if kind == "ZastavaPolicy" || kind == "ScanPolicy" {
            "Cluster"
        } else {
            "Namespaced"
        };
        assert_eq!(crd.spec.scope, scope, "{kind}");
    }
}

#[test]
fn status_carries_observed_generation_and_conditions() {
    for crd in all_crds() {
        let schema = serde_json::to_value(crd.spec.versions[0].schema.as_ref().unwrap()).unwrap();
        let status = &schema["openAPIV3Schema"]["properties"]["status"]["properties"];
        assert!(
            status.get("observedGeneration").is_some(),
            "{}",
            crd.spec.names.kind
        );
        assert_eq!(
            status["conditions"]["type"], "array",
            "{}",
            crd.spec.names.kind
        );
    }
}

/// `kubectl explain` shows descriptions; every field we define must have one.
#[test]
fn every_spec_field_has_a_description() {
    fn walk(schema: &Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (key, prop) in props {
                let here = format!("{path}.{key}");
                if prop
                    .get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    missing.push(here.clone());
                }
                walk(prop, &here, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[]"), missing);
        }
    }
    let mut missing = Vec::new();
    for crd in all_crds() {
        let schema = serde_json::to_value(crd.spec.versions[0].schema.as_ref().unwrap()).unwrap();
        walk(
            &schema["openAPIV3Schema"]["properties"]["spec"],
            &crd.spec.names.kind,
            &mut missing,
        );
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

#[test]
fn yaml_rendering_is_stable_and_named_by_group_and_plural() {
    for crd in all_crds() {
        assert_eq!(crd_yaml(&crd), crd_yaml(&crd));
        assert!(crd_file_name(&crd).starts_with("stella-ops.org_"));
    }
}

/// A NotifyRule cannot select `canonical-imported`: a federation import stores those
/// events as rows of up to 1,000 canonicals (docs/federation-bundle.md, "Events"), which
/// the notify planner would deliver as one notification per row. Adding the kind needs
/// the planner to expand the rows first.
#[test]
fn a_notify_rule_cannot_select_the_batched_canonical_imported_events() {
    let crd = all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "NotifyRule")
        .expect("NotifyRule CRD");
    let schema = serde_json::to_value(crd.spec.versions[0].schema.as_ref().unwrap()).unwrap();
    fn event_kinds(schema: &Value) -> Option<&Value> {
        match schema {
            Value::Object(map) => map
                .get("eventKinds")
                .or_else(|| map.values().find_map(event_kinds)),
            Value::Array(items) => items.iter().find_map(event_kinds),
            _ => None,
        }
    }
    let allowed: Vec<&str> = event_kinds(&schema)
        .and_then(|kinds| kinds["items"]["enum"].as_array())
        .expect("eventKinds is an enum")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(allowed.contains(&"federation.imported"), "{allowed:?}");
    assert!(!allowed.contains(&"canonical-imported"), "{allowed:?}");
}
