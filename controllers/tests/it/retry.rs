//! Retry timing after failures, and which changes of a root object trigger a reconcile.

use std::time::Duration;

use serde_json::json;
use stellaops_controllers::cache::spec_changes;
use stellaops_controllers::retry::{FIRST_DELAY, MAX_DELAY, Retries, delay};
use stellaops_crds::Scan;

#[test]
fn retries_back_off_exponentially_with_jitter_up_to_the_cap() {
    // Without jitter (0) the wait is half the full delay; the most jitter adds the other half.
    assert_eq!(delay(1, 0), FIRST_DELAY / 2);
    assert!(delay(1, 1999) <= FIRST_DELAY);
    assert_eq!(delay(2, 0), FIRST_DELAY);
    assert_eq!(delay(3, 0), FIRST_DELAY * 2);
    assert_eq!(delay(30, 0), MAX_DELAY / 2);
    assert_eq!(delay(u32::MAX, 150_000), MAX_DELAY);
    // Jitter spreads objects that failed together.
    let spread: std::collections::BTreeSet<Duration> = (0..50u64)
        .map(|j| delay(4, j.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect();
    assert!(spread.len() > 10, "{spread:?}");

    let retries = Retries::default();
    let first = retries.failed("Scan/prod/app");
    let second = retries.failed("Scan/prod/app");
    let third = retries.failed("Scan/prod/app");
    assert!(first <= FIRST_DELAY && second <= FIRST_DELAY * 2 && third >= FIRST_DELAY * 2);
    assert_eq!(retries.failures("Scan/prod/app"), 3);
    assert_eq!(retries.failures("Scan/prod/other"), 0);
    retries.succeeded("Scan/prod/app");
    assert_eq!(retries.failures("Scan/prod/app"), 0);
}

fn scan(generation: i64, status: serde_json::Value) -> Scan {
    serde_json::from_value(json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "Scan",
        "metadata": {"name": "app", "namespace": "prod", "generation": generation,
                     "resourceVersion": format!("{}", generation * 10 + status.as_object().map_or(0, |o| o.len() as i64))},
        "spec": {"image": "r/app:1"},
        "status": status
    }))
    .unwrap()
}

#[test]
fn status_only_changes_do_not_trigger_but_spec_labels_and_deletion_do() {
    let base = scan(1, json!({}));
    let status_changed = scan(1, json!({"phase": "Queued"}));
    assert_eq!(spec_changes(&base), spec_changes(&status_changed));
    assert_ne!(spec_changes(&base), spec_changes(&scan(2, json!({}))));
    let mut labelled = base.clone();
    labelled.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
    assert_ne!(spec_changes(&base), spec_changes(&labelled));
    let mut deleted = base.clone();
    deleted.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
    );
    assert_ne!(spec_changes(&base), spec_changes(&deleted));
}
