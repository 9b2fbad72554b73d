use std::sync::Arc;
use std::time::Duration;

use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use serde_json::{Value, json};
use stellaops_controllers::acceptance::{CONDITION_ACCEPTED, assess, reconcile};
use stellaops_controllers::metrics::Metrics;
use stellaops_controllers::{Config, Context, FIELD_MANAGER};
use stellaops_crds::{Scan, ZastavaPolicy};
use stellaops_testing::mock_client;

fn t(seconds: i64) -> Time {
    Time(jiff::Timestamp::from_second(1_700_000_000 + seconds).unwrap())
}

fn scan_json(image: &str, generation: i64) -> Value {
    json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "Scan",
           "metadata": {"name": "nginx", "namespace": "default", "generation": generation,
                        "uid": "0b5e1a4c-0000-4000-8000-000000000001"},
           "spec": {"image": image}})
}

#[test]
fn valid_spec_is_accepted_and_ready_false_with_a_reason() {
    let a = assess(
        "Scan",
        &scan_json("nginx:1.27", 1),
        Some(1),
        None,
        &[],
        "the worker is not built",
        t(0),
    );
    assert!(a.changed);
    let ready = a.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "AwaitingController")
    );
    assert!(ready.message.contains("the worker is not built"));
    let accepted = a
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_ACCEPTED)
        .unwrap();
    assert_eq!(accepted.status, "True");
    assert_eq!(accepted.observed_generation, Some(1));
    assert!(matches!(a.event, Some((EventType::Normal, "Accepted", _))));
}

#[test]
fn a_second_assessment_changes_nothing_and_keeps_transition_times() {
    let first = assess(
        "Scan",
        &scan_json("nginx:1.27", 1),
        Some(1),
        None,
        &[],
        "x",
        t(0),
    );
    let second = assess(
        "Scan",
        &scan_json("nginx:1.27", 1),
        Some(1),
        Some(1),
        &first.conditions,
        "x",
        t(60),
    );
    assert!(!second.changed, "reconciling twice must change nothing");
    assert!(second.event.is_none());
    assert_eq!(second.conditions[0].last_transition_time, t(0));
}

#[test]
fn a_new_generation_is_recorded_even_when_conditions_hold() {
    let first = assess(
        "Scan",
        &scan_json("nginx:1.27", 1),
        Some(1),
        None,
        &[],
        "x",
        t(0),
    );
    let next = assess(
        "Scan",
        &scan_json("nginx:1.27", 2),
        Some(2),
        Some(1),
        &first.conditions,
        "x",
        t(60),
    );
    assert!(next.changed);
    assert!(
        next.conditions
            .iter()
            .all(|c| c.observed_generation == Some(2))
    );
}

#[test]
fn an_invalid_stored_spec_becomes_invalid_spec_with_the_field_path() {
    let a = assess(
        "Scan",
        &scan_json("nginx@sha256:abc", 1),
        Some(1),
        None,
        &[],
        "x",
        t(0),
    );
    let ready = a.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(
        ready.message.starts_with("spec.image:"),
        "{}",
        ready.message
    );
    assert!(matches!(
        a.event,
        Some((EventType::Warning, "InvalidSpec", _))
    ));
    // The same failure again is not announced twice.
    let again = assess(
        "Scan",
        &scan_json("nginx@sha256:abc", 1),
        Some(1),
        Some(1),
        &a.conditions,
        "x",
        t(5),
    );
    assert!(again.event.is_none() && !again.changed);
}

fn context(client: kube::Client) -> Arc<Context> {
    Arc::new(Context::new(
        client,
        Metrics::unregistered(),
        Config::default(),
        Some("test".into()),
    ))
}

#[tokio::test]
async fn reconcile_patches_status_with_our_field_manager_then_records_an_event() {
    let (client, mut server) = mock_client("default");
    let scan: Scan = serde_json::from_value(scan_json("nginx:1.27", 3)).unwrap();
    let verifier = tokio::spawn(async move {
        let patch = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/default/scans/nginx/status",
            )
            .await;
        assert_eq!(patch.field_manager(), Some(FIELD_MANAGER));
        assert_eq!(
            patch.content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        assert_eq!(patch.body["status"]["observedGeneration"], 3);
        let conditions = patch.body["status"]["conditions"].as_array().unwrap();
        assert!(
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "False")
        );
        let mut stored = scan_json("nginx:1.27", 3);
        stored["status"] = patch.body["status"].clone();
        patch.respond(200, stored);

        let event = server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/default/events",
            )
            .await;
        assert_eq!(event.body["reason"], "Accepted");
        assert_eq!(event.body["type"], "Normal");
        assert_eq!(event.body["regarding"]["kind"], "Scan");
        assert_eq!(event.body["reportingController"], FIELD_MANAGER);
        event.respond_with_request_body();
        server
            .expect_no_more_calls(Duration::from_millis(200))
            .await;
    });
    let action = reconcile(Arc::new(scan), context(client), "x")
        .await
        .unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(3600))
    );
    verifier.await.unwrap();
}

#[tokio::test]
async fn reconcile_of_an_up_to_date_object_makes_no_call() {
    let (client, server) = mock_client("default");
    let first = assess(
        "Scan",
        &scan_json("nginx:1.27", 1),
        Some(1),
        None,
        &[],
        "x",
        t(0),
    );
    let mut stored = scan_json("nginx:1.27", 1);
    stored["status"] = json!({"observedGeneration": 1, "conditions": first.conditions});
    let scan: Scan = serde_json::from_value(stored).unwrap();
    reconcile(Arc::new(scan), context(client), "x")
        .await
        .unwrap();
    server
        .expect_no_more_calls(Duration::from_millis(200))
        .await;
}

#[tokio::test]
async fn cluster_scoped_policy_status_goes_to_the_cluster_path() {
    let (client, mut server) = mock_client("default");
    let stored = json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "ZastavaPolicy",
        "metadata": {"name": "prod", "generation": 1}, "spec": {"mode": "warn"}});
    let policy: ZastavaPolicy = serde_json::from_value(stored.clone()).unwrap();
    let verifier = tokio::spawn(async move {
        let patch = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/zastavapolicies/prod/status",
            )
            .await;
        patch.respond(200, stored);
        // Events about cluster-scoped objects land in the default namespace.
        let event = server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/default/events",
            )
            .await;
        event.respond_with_request_body();
    });
    reconcile(Arc::new(policy), context(client), "x")
        .await
        .unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn an_api_error_is_returned_for_the_error_policy() {
    let (client, mut server) = mock_client("default");
    let scan: Scan = serde_json::from_value(scan_json("nginx:1.27", 1)).unwrap();
    let verifier = tokio::spawn(async move {
        let patch = server.next_call().await;
        patch.respond_status(
            403,
            "Forbidden",
            "scans.stella-ops.org \"nginx\" is forbidden",
        );
    });
    let error = reconcile(Arc::new(scan), context(client), "x")
        .await
        .unwrap_err();
    assert_eq!(error.metric_label(), "Kube");
    verifier.await.unwrap();
}
