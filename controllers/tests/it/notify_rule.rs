//! NotifyRule: Secret checks, the rendered worker configuration and Deployment, status,
//! and the reconcile's calls against the mock API server.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use stellaops_controllers::cache::{Caches, Contents};
use stellaops_controllers::metrics::Metrics;
use stellaops_controllers::notify_rule::{RULES_ANNOTATION, rules_of};
use stellaops_controllers::notify_rule::{
    SecretData, compute_status, deployment, desired, parse_duration, reconcile, render_config,
    validate,
};
use stellaops_controllers::tenancy::{FINALIZER, OWNER_NAMESPACE};
use stellaops_controllers::{Config, Context, FIELD_MANAGER};
use stellaops_crds::NotifyRule;
use stellaops_store::notify::RuleCounts;
use stellaops_testing::mock_client;

fn rule(name: &str, enabled: bool) -> NotifyRule {
    serde_json::from_value(json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "NotifyRule",
        "metadata": {"name": name, "namespace": "stellaops", "generation": 2,
                     "uid": format!("33330000-0000-4000-8000-{:012}", name.len()),
                     "finalizers": [FINALIZER]},
        "spec": {"enabled": enabled,
                 "match": {"eventKinds": ["report.ready", "rescan.delta"], "minSeverity": "high",
                           "namespaces": ["prod-*"], "vex": {"includeAcceptedJustifications": false}},
                 "actions": [
                    {"name": "slack-sec-alerts", "channel": "slack", "secretRef": {"name": "slack-sec-alerts"},
                     "target": "#sec-alerts", "template": "concise", "throttle": "5m"},
                    {"name": "soc-mailbox", "channel": "email", "secretRef": {"name": "soc-smtp"},
                     "target": "soc@acme.org", "template": "detailed", "digest": "hourly"}]}
    }))
    .unwrap()
}

fn secrets() -> BTreeMap<String, SecretData> {
    BTreeMap::from([
        (
            "slack-sec-alerts".to_string(),
            BTreeMap::from([(
                "url".to_string(),
                "https://hooks.slack.com/services/T0/B0/x".to_string(),
            )]),
        ),
        (
            "soc-smtp".to_string(),
            BTreeMap::from([
                ("host".to_string(), "smtp.acme.org".to_string()),
                ("port".to_string(), "587".to_string()),
                ("username".to_string(), "notify".to_string()),
                ("password".to_string(), "pw".to_string()),
                ("from".to_string(), "stellaops@acme.org".to_string()),
            ]),
        ),
    ])
}

#[test]
fn secrets_are_checked_per_channel_with_a_reason_naming_action_and_key() {
    let r = rule("high-critical-alerts", true);
    assert_eq!(validate(&r, &secrets()), Ok(()));
    let mut s = secrets();
    s.remove("soc-smtp");
    let e = validate(&r, &s).unwrap_err();
    assert_eq!(e.reason, "SecretNotFound");
    assert_eq!(e.message, "action soc-mailbox: Secret soc-smtp not found");
    let mut s = secrets();
    s.get_mut("soc-smtp").unwrap().remove("from");
    let e = validate(&r, &s).unwrap_err();
    assert_eq!(
        (e.reason, e.message.as_str()),
        (
            "SecretKeyMissing",
            "action soc-mailbox: Secret soc-smtp has no key from (needed by the email channel)"
        )
    );
    let mut s = secrets();
    s.get_mut("soc-smtp").unwrap().remove("password");
    assert!(
        validate(&r, &s)
            .unwrap_err()
            .message
            .contains("both username and password")
    );
    let mut s = secrets();
    s.get_mut("slack-sec-alerts")
        .unwrap()
        .insert("url".into(), "hooks.slack.com".into());
    assert_eq!(validate(&r, &s).unwrap_err().reason, "InvalidSecret");
    // A webhook needs its HMAC key; a custom template needs its key.
    let mut hook = rule("hook", true);
    hook.spec.actions[0].channel = stellaops_crds::notify_rule::Channel::Webhook;
    let e = validate(&hook, &secrets()).unwrap_err();
    assert!(e.message.contains("has no key hmacKey"), "{}", e.message);
    let mut custom = rule("custom", true);
    custom.spec.actions[0].template = "template.missing".into();
    let e = validate(&custom, &secrets()).unwrap_err();
    assert!(
        e.message.contains("template \"template.missing\""),
        "{}",
        e.message
    );
    // Only `template.*` keys may be read into a message: never a credential.
    let mut leaky = rule("leaky", true);
    leaky.spec.actions[1].template = "password".into();
    let e = validate(&leaky, &secrets()).unwrap_err();
    assert_eq!(e.reason, "InvalidTemplate");
    assert!(
        e.message.contains("starting \"template.\""),
        "{}",
        e.message
    );
    let mut s = secrets();
    s.get_mut("soc-smtp")
        .unwrap()
        .insert("template.soc".into(), "{{kind}}".into());
    let mut fine = rule("fine", true);
    fine.spec.actions[1].template = "template.soc".into();
    assert_eq!(validate(&fine, &s), Ok(()));
    assert_eq!(parse_duration("5m"), Some(300));
    assert_eq!(parse_duration("1h30m"), Some(5400));
    assert_eq!(parse_duration("5x"), None);
}

#[test]
fn enabled_rules_render_into_one_worker_config_and_deployment() {
    let a = rule("high-critical-alerts", true);
    let b = rule("off", false);
    let config = render_config("stellaops", &[&a], "stellaops-system");
    assert_eq!(config.consumer, "notify/stellaops");
    let rendered = &config.rules[0];
    // A tenant's rule sees only its own namespace's events…
    assert_eq!(rendered.scope.as_deref(), Some("stellaops"));
    // …the platform namespace's rules see every namespace's.
    assert_eq!(
        render_config("stellaops", &[&a], "stellaops").rules[0].scope,
        None
    );
    assert_eq!(rendered.event_kinds, vec!["report.ready", "rescan.delta"]);
    assert_eq!(rendered.min_severity.as_deref(), Some("high"));
    assert_eq!(rendered.actions[0].throttle_seconds, Some(300));
    assert_eq!(rendered.actions[1].digest, "hourly");
    assert_eq!(
        rendered.actions[0].secret_dir,
        "/etc/stellaops/notify-secrets/slack-sec-alerts"
    );
    let d = deployment("stellaops", &config, &[&a, &b], &Config::default());
    // In the platform namespace, for namespace stellaops, naming every rule it serves.
    assert_eq!(d.metadata.namespace.as_deref(), Some("stellaops-system"));
    assert_eq!(
        d.metadata.name.as_deref(),
        Some("stellaops-stellaops-notify")
    );
    assert!(d.metadata.owner_references.is_none());
    assert_eq!(
        d.metadata.labels.clone().unwrap()[OWNER_NAMESPACE],
        "stellaops"
    );
    assert_eq!(
        d.metadata.annotations.clone().unwrap()[RULES_ANNOTATION],
        "high-critical-alerts,off"
    );
    let refs: Vec<String> = rules_of(&d).iter().map(|r| r.to_string()).collect();
    assert_eq!(refs.len(), 2, "{refs:?}");
    let pod = d.spec.template.spec.unwrap();
    let c = &pod.containers[0];
    assert_eq!(
        c.args.clone().unwrap().join(" "),
        "notify run --config /etc/stellaops/notify/rules.json --listen 0.0.0.0:8080"
    );
    let mounts: Vec<String> = c
        .volume_mounts
        .clone()
        .unwrap()
        .iter()
        .map(|m| m.mount_path.clone())
        .collect();
    assert!(mounts.contains(&"/etc/stellaops/notify-secrets/soc-smtp".to_string()));
    let copies: Vec<String> = pod
        .volumes
        .clone()
        .unwrap()
        .iter()
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect();
    assert_eq!(
        copies,
        vec![
            "stellaops-stellaops-notify-slack-sec-alerts",
            "stellaops-stellaops-notify-soc-smtp"
        ],
        "the worker mounts the platform namespace's copies"
    );
    assert!(mounts.contains(&"/etc/stellaops/notify".to_string()));
    assert!(
        c.env
            .clone()
            .unwrap()
            .iter()
            .any(|e| e.name == "DATABASE_URL")
    );
    assert_eq!(
        c.security_context
            .as_ref()
            .unwrap()
            .read_only_root_filesystem,
        Some(true)
    );
    // A rule edit that keeps the same Secrets changes only the ConfigMap: the Deployment
    // (and so the Pods) stay as they are.
    let mut edited = a.clone();
    edited.spec.match_.min_severity = Some(stellaops_crds::Severity::Critical);
    let other = deployment(
        "stellaops",
        &render_config("stellaops", &[&edited], "stellaops-system"),
        &[&edited, &b],
        &Config::default(),
    );
    assert_eq!(
        serde_json::to_value(&other.spec).unwrap(),
        serde_json::to_value(&deployment("stellaops", &config, &[&a, &b], &Config::default()).spec)
            .unwrap()
    );
    // preview shows both objects.
    let objects = desired(&a, &Config::default());
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["ConfigMap", "Deployment"]);
    assert!(
        objects[0]["data"]["rules.json"]
            .as_str()
            .unwrap()
            .contains("slack-sec-alerts")
    );
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {}, "items": items})
}

fn t() -> Time {
    Time(jiff::Timestamp::from_second(1_763_800_000).unwrap())
}

#[test]
fn status_counts_deliveries_and_says_why_it_is_not_ready() {
    let r = rule("high-critical-alerts", true);
    let mut worker = deployment(
        "stellaops",
        &render_config("stellaops", &[&r], "stellaops-system"),
        &[&r],
        &Config::default(),
    );
    let counts = RuleCounts {
        sent: 12,
        throttled: 3,
        failed: 1,
        pending: 0,
        last_delivery_at: Some("2026-11-22T10:00:00Z".parse().unwrap()),
        last_error: Some("HTTP 500".into()),
    };
    let ready = |s: &stellaops_crds::notify_rule::NotifyRuleStatus, t: &str| {
        let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
        (c.status.clone(), c.reason.clone(), c.message.clone())
    };
    let s = compute_status(&r, &Ok(()), Some(&worker), Some(&counts), t());
    assert_eq!((s.sent, s.throttled, s.failed), (12, 3, 1));
    assert_eq!(s.last_error.as_deref(), Some("HTTP 500"));
    assert!(s.last_delivery_at.is_some());
    assert_eq!(ready(&s, "Ready").1, "WorkerNotReady");
    let (dead, reason, message) = ready(&s, "DeadLetters");
    assert_eq!(
        (dead.as_str(), reason.as_str()),
        ("True", "DeliveriesFailed")
    );
    assert!(message.contains("HTTP 500"));
    worker.status = Some(serde_json::from_value(json!({"readyReplicas": 1})).unwrap());
    let s = compute_status(&r, &Ok(()), Some(&worker), Some(&counts), t());
    assert_eq!(ready(&s, "Ready").0, "True");
    let s = compute_status(
        &r,
        &Err(stellaops_controllers::notify_rule::Invalid {
            reason: "SecretNotFound",
            message: "action soc-mailbox: Secret soc-smtp not found".into(),
        }),
        Some(&worker),
        None,
        t(),
    );
    assert_eq!(
        ready(&s, "Ready"),
        (
            "False".to_string(),
            "SecretNotFound".to_string(),
            "action soc-mailbox: Secret soc-smtp not found".to_string()
        )
    );
    let s = compute_status(&rule("off", false), &Ok(()), Some(&worker), None, t());
    assert_eq!(ready(&s, "Ready").1, "Disabled");
}

#[tokio::test]
async fn reconcile_checks_secrets_applies_config_and_worker_then_status() {
    // The namespace's rules come from the shared store: no LIST.
    // The store of Secret copies holds a stale copy of this namespace's rules and one of
    // another namespace's: only the first is pruned, by name, without a LIST.
    let copy = |name: &str, ns: &str| -> k8s_openapi::api::core::v1::Secret {
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "stellaops-system",
                "labels": {"stella-ops.org/owner-kind": "NotifyRule",
                           "stella-ops.org/owner-namespace": ns}}}))
        .unwrap()
    };
    let caches = Caches::filled(Contents {
        notify_rules: vec![rule("high-critical-alerts", true), rule("zz-other", true)],
        secret_copies: vec![
            copy("stellaops-stellaops-notify-old-hook", "stellaops"),
            copy("team-b-stellaops-notify-hook", "team-b"),
        ],
        ..Default::default()
    });
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        // Both rules use the same two Secrets: each is read once. soc-smtp is missing.
        let slack = server
            .expect(
                Method::GET,
                "/api/v1/namespaces/stellaops/secrets/slack-sec-alerts",
            )
            .await;
        slack.respond(
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "slack-sec-alerts"},
                   "data": {"url": "aHR0cHM6Ly9ob29rcy5zbGFjay5jb20vc2VydmljZXMvVDAvQjAveA=="}}),
        );
        server
            .expect(Method::GET, "/api/v1/namespaces/stellaops/secrets/soc-smtp")
            .await
            .respond_status(404, "NotFound", "secrets \"soc-smtp\" not found");
        // No rule can run: no copy is kept (stale ones are pruned).
        server
            .expect(
                Method::DELETE,
                "/api/v1/namespaces/stellaops-system/secrets/stellaops-stellaops-notify-old-hook",
            )
            .await
            .respond(
                200,
                json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}),
            );
        let cm = server
            .expect(
                Method::PATCH,
                "/api/v1/namespaces/stellaops-system/configmaps/stellaops-stellaops-notify",
            )
            .await;
        assert!(cm.is_forced_apply());
        assert_eq!(cm.field_manager(), Some(FIELD_MANAGER));
        let rules_json: Value =
            serde_json::from_str(cm.body["data"]["rules.json"].as_str().unwrap()).unwrap();
        assert_eq!(
            rules_json["rules"],
            json!([]),
            "no rule can run without its Secrets"
        );
        assert_eq!(
            cm.body["metadata"]["annotations"][RULES_ANNOTATION],
            "high-critical-alerts,zz-other"
        );
        cm.respond_with_request_body();
        let d = server
            .expect(
                Method::PATCH,
                "/apis/apps/v1/namespaces/stellaops-system/deployments/stellaops-stellaops-notify",
            )
            .await;
        assert!(d.is_forced_apply());
        d.respond_with_request_body();
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/stellaops/notifyrules/high-critical-alerts/status",
            )
            .await;
        let ready = status.body["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert_eq!(ready["reason"], "SecretNotFound");
        let mut stored = serde_json::to_value(rule("high-critical-alerts", true)).unwrap();
        stored["status"] = status.body["status"].clone();
        status.respond(200, stored);
        let event = server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/stellaops/events",
            )
            .await;
        assert_eq!(event.body["reason"], "SecretNotFound");
        assert_eq!(event.body["type"], "Warning");
        event.respond_with_request_body();
        server
            .expect_no_more_calls(std::time::Duration::from_millis(100))
            .await;
    });
    let ctx = Arc::new(
        Context::new(client, Metrics::unregistered(), Config::default(), None).with_caches(caches),
    );
    reconcile(Arc::new(rule("high-critical-alerts", true)), ctx)
        .await
        .unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn deleting_the_last_rule_of_a_namespace_removes_its_worker_then_the_finalizer() {
    let mut deleted = rule("high-critical-alerts", true);
    deleted.metadata.deletion_timestamp = Some(t());
    let stored = serde_json::to_value(&deleted).unwrap();
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        let selector =
            "stella-ops.org/owner-kind=NotifyRule,stella-ops.org/owner-namespace=stellaops";
        for (path, kind, item) in [
            (
                "/apis/batch/v1/namespaces/stellaops-system/cronjobs",
                "CronJobList",
                None,
            ),
            (
                "/apis/batch/v1/namespaces/stellaops-system/jobs",
                "JobList",
                None,
            ),
            (
                "/apis/apps/v1/namespaces/stellaops-system/deployments",
                "DeploymentList",
                Some("stellaops-stellaops-notify"),
            ),
            (
                "/api/v1/namespaces/stellaops-system/services",
                "ServiceList",
                None,
            ),
            (
                "/api/v1/namespaces/stellaops-system/persistentvolumeclaims",
                "PersistentVolumeClaimList",
                None,
            ),
            (
                "/api/v1/namespaces/stellaops-system/configmaps",
                "ConfigMapList",
                Some("stellaops-stellaops-notify"),
            ),
            (
                "/api/v1/namespaces/stellaops-system/secrets",
                "SecretList",
                Some("stellaops-stellaops-notify-slack-sec-alerts"),
            ),
        ] {
            // One deletecollection per kind, by owner label: no LIST, no DELETE per object.
            let deleted = server.expect(Method::DELETE, path).await;
            assert_eq!(
                deleted.query.get("labelSelector").map(String::as_str),
                Some(selector),
                "{path}"
            );
            let items: Vec<Value> = item
                .iter()
                .map(|name| json!({"metadata": {"name": name, "namespace": "stellaops-system"}}))
                .collect();
            deleted.respond(200, list(kind, items));
        }
        let release = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/stellaops/notifyrules/high-critical-alerts",
            )
            .await;
        assert!(
            release.body.to_string().contains("remove"),
            "{}",
            release.body
        );
        release.respond(200, stored);
        server
            .expect_no_more_calls(std::time::Duration::from_millis(100))
            .await;
    });
    // The namespace's rules come from the shared store: the deleted one is its only rule.
    let caches = Caches::filled(Contents {
        notify_rules: vec![deleted.clone()],
        ..Default::default()
    });
    let ctx = Arc::new(
        Context::new(client, Metrics::unregistered(), Config::default(), None).with_caches(caches),
    );
    reconcile(Arc::new(deleted), ctx).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn the_rules_of_one_namespace_share_one_sync_of_their_worker() {
    let caches = Caches::filled(Contents {
        notify_rules: vec![rule("high-critical-alerts", true), rule("zz-other", true)],
        ..Default::default()
    });
    let (calls, _) = recorded_reconciles(
        caches,
        &["high-critical-alerts", "zz-other", "high-critical-alerts"],
    )
    .await;
    let count = |method: Method, suffix: &str| {
        calls
            .iter()
            .filter(|(m, p)| *m == method && p.ends_with(suffix))
            .count()
    };
    // Three reconciles, one sync: each Secret read once, the worker applied once.
    assert_eq!(
        count(Method::GET, "/secrets/slack-sec-alerts"),
        1,
        "{calls:?}"
    );
    assert_eq!(count(Method::GET, "/secrets/soc-smtp"), 1, "{calls:?}");
    assert_eq!(
        count(Method::PATCH, "/deployments/stellaops-stellaops-notify"),
        1,
        "{calls:?}"
    );
    assert_eq!(
        count(Method::PATCH, "/configmaps/stellaops-stellaops-notify"),
        1,
        "{calls:?}"
    );
    // Each rule's own status is still written.
    assert_eq!(count(Method::PATCH, "/status"), 3, "{calls:?}");
}

#[test]
fn an_applied_body_is_current_in_what_the_api_server_stores_until_it_changes() {
    use stellaops_controllers::workload::{APPLIED_DIGEST, is_current, with_applied_digest};
    let wanted = with_applied_digest(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "w", "labels": {"a": "1"}},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "args": ["x"]}]}}}
    }));
    let digest = wanted["metadata"]["annotations"][APPLIED_DIGEST].clone();
    assert_eq!(digest.as_str().unwrap().len(), 24);
    // What the API server adds (defaults, metadata, status) does not make it stale.
    let mut stored = wanted.clone();
    stored["metadata"]["uid"] = json!("u-1");
    stored["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("1");
    stored["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] =
        json!("/dev/termination-log");
    stored["status"] = json!({"readyReplicas": 1});
    assert!(is_current(&stored, &wanted));
    // Another manager's edit of a field we set does.
    let mut edited = stored.clone();
    edited["spec"]["replicas"] = json!(0);
    assert!(!is_current(&edited, &wanted));
    let mut edited = stored.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["x", "y"]);
    assert!(!is_current(&edited, &wanted));
    // A field we stop setting changes the digest, so the stored object is stale even though
    // it still holds everything wanted.
    let mut fewer = wanted.clone();
    fewer["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove(APPLIED_DIGEST);
    fewer["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("a");
    let fewer = with_applied_digest(fewer);
    assert_ne!(fewer["metadata"]["annotations"][APPLIED_DIGEST], digest);
    assert!(!is_current(&stored, &fewer));
    // The same body gives the same digest.
    assert_eq!(with_applied_digest(wanted.clone()), wanted);
}

/// Answer `call` as an API server that stores what is applied (with a default the API
/// server would add, recorded in `applied` by path) and holds one tenant Secret.
fn answer(call: stellaops_testing::Call, applied: &mut BTreeMap<String, Value>) {
    if call.method == Method::GET && call.path.ends_with("/secrets/slack-sec-alerts") {
        call.respond(
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "slack-sec-alerts"},
                   "data": {"url": "aHR0cHM6Ly9ob29rcy5zbGFjay5jb20vc2VydmljZXMvVDAvQjAveA=="}}),
        );
    } else if call.method == Method::GET {
        call.respond_status(404, "NotFound", "not found");
    } else if call.path.ends_with("/status") {
        let name = call.path.split('/').rev().nth(1).unwrap().to_string();
        let mut stored = serde_json::to_value(rule(&name, true)).unwrap();
        stored["status"] = call.body["status"].clone();
        call.respond(200, stored);
    } else if call.method == Method::PATCH {
        let mut stored = call.body.clone();
        stored["metadata"]["uid"] = json!(format!("uid-{}", applied.len()));
        if stored["kind"] == "Deployment" {
            stored["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] =
                json!("/dev/termination-log");
        }
        applied.insert(call.path.clone(), stored.clone());
        call.respond(200, stored);
    } else {
        call.respond_with_request_body();
    }
}

/// Reconcile `names` of namespace `stellaops` against a mock API server answering as
/// [`answer`]; returns each call and the objects last applied, by path.
async fn recorded_reconciles(
    caches: Caches,
    names: &[&str],
) -> (Vec<(Method, String)>, BTreeMap<String, Value>) {
    let (client, mut server) = mock_client("default");
    let recorder = tokio::spawn(async move {
        let mut calls: Vec<(Method, String)> = Vec::new();
        let mut applied: BTreeMap<String, Value> = BTreeMap::new();
        while let Ok(call) =
            tokio::time::timeout(std::time::Duration::from_millis(300), server.next_call()).await
        {
            calls.push((call.method.clone(), call.path.clone()));
            answer(call, &mut applied);
        }
        (calls, applied)
    });
    let ctx = Arc::new(
        Context::new(client, Metrics::unregistered(), Config::default(), None).with_caches(caches),
    );
    for name in names {
        reconcile(Arc::new(rule(name, true)), ctx.clone())
            .await
            .unwrap();
    }
    let recorded = recorder.await.unwrap();
    drop(ctx);
    recorded
}

fn worker_writes(calls: &[(Method, String)]) -> Vec<String> {
    calls
        .iter()
        .filter(|(m, p)| {
            *m == Method::PATCH
                && (p.ends_with("/configmaps/stellaops-stellaops-notify")
                    || p.ends_with("/deployments/stellaops-stellaops-notify"))
        })
        .map(|(_, p)| p.rsplit('/').nth(1).unwrap().to_string())
        .collect()
}

/// A first start with nothing stored, reconciling `high-critical-alerts` among `rules`: its
/// calls, and the worker ConfigMap and Deployment as the API server stores them.
async fn first_start(
    rules: Vec<NotifyRule>,
) -> (
    Vec<(Method, String)>,
    k8s_openapi::api::core::v1::ConfigMap,
    k8s_openapi::api::apps::v1::Deployment,
) {
    let (calls, applied) = recorded_reconciles(
        Caches::filled(Contents {
            notify_rules: rules,
            ..Default::default()
        }),
        &["high-critical-alerts"],
    )
    .await;
    let object = |kind: &str| {
        applied
            .iter()
            .find(|(path, _)| path.contains(kind))
            .map(|(_, o)| o.clone())
            .unwrap()
    };
    (
        calls,
        serde_json::from_value(object("/configmaps/")).unwrap(),
        serde_json::from_value(object("/deployments/")).unwrap(),
    )
}

#[tokio::test]
async fn a_sync_waits_for_the_worker_stores_first_list_before_comparing() {
    use kube::runtime::watcher::Event;
    let rules = || vec![rule("high-critical-alerts", true)];
    let (_, config_map, deployment) = first_start(rules()).await;

    // A restart where the rules' list is done but the workers' lists are still arriving
    // (objects received, the list not finished: the stores still read empty).
    let (caches, mut writers) = Caches::new();
    writers.notify_rules.apply_watcher_event(&Event::Init);
    for rule in rules() {
        writers
            .notify_rules
            .apply_watcher_event(&Event::InitApply(rule));
    }
    writers.notify_rules.apply_watcher_event(&Event::InitDone);
    writers.secret_copies.apply_watcher_event(&Event::Init);
    writers.secret_copies.apply_watcher_event(&Event::InitDone);
    writers.notify_configs.apply_watcher_event(&Event::Init);
    writers
        .notify_configs
        .apply_watcher_event(&Event::InitApply(config_map));
    writers.notify_workers.apply_watcher_event(&Event::Init);
    writers
        .notify_workers
        .apply_watcher_event(&Event::InitApply(deployment));

    let (client, mut server) = mock_client("default");
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = tokio::spawn({
        let calls = calls.clone();
        async move {
            let mut applied = BTreeMap::new();
            loop {
                let call = server.next_call().await;
                calls
                    .lock()
                    .unwrap()
                    .push((call.method.clone(), call.path.clone()));
                answer(call, &mut applied);
            }
        }
    });
    let ctx = Arc::new(
        Context::new(client, Metrics::unregistered(), Config::default(), None).with_caches(caches),
    );
    let mut sync = tokio::spawn(reconcile(
        Arc::new(rule("high-critical-alerts", true)),
        ctx.clone(),
    ));
    // The sync waits for the lists to finish instead of taking the worker for missing.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), &mut sync)
            .await
            .is_err(),
        "the sync finished before the worker stores were ready: {:?}",
        calls.lock().unwrap()
    );
    assert!(worker_writes(&calls.lock().unwrap()).is_empty());
    writers.notify_configs.apply_watcher_event(&Event::InitDone);
    writers.notify_workers.apply_watcher_event(&Event::InitDone);
    sync.await.unwrap().unwrap();
    recorder.abort();
    let calls = calls.lock().unwrap();
    // Once the stores show the worker as applied, nothing is applied again.
    assert!(worker_writes(&calls).is_empty(), "{calls:?}");
}

#[tokio::test]
async fn a_restart_applies_the_worker_again_only_where_the_stores_show_it_differs() {
    let rules = || vec![rule("high-critical-alerts", true), rule("zz-other", true)];
    // First start: nothing stored, both applied.
    let (calls, config_map, deployment) = first_start(rules()).await;
    assert_eq!(
        worker_writes(&calls),
        ["configmaps", "deployments"],
        "{calls:?}"
    );
    // A restart whose stores hold what was applied (with the API server's defaults): no
    // worker write, and the rules' status is still written.
    let (calls, _) = recorded_reconciles(
        Caches::filled(Contents {
            notify_rules: rules(),
            notify_configs: vec![config_map.clone()],
            notify_workers: vec![deployment.clone()],
            ..Default::default()
        }),
        &["high-critical-alerts", "zz-other"],
    )
    .await;
    assert!(worker_writes(&calls).is_empty(), "{calls:?}");
    assert_eq!(
        calls
            .iter()
            .filter(|(m, p)| *m == Method::PATCH && p.ends_with("/status"))
            .count(),
        2,
        "{calls:?}"
    );
    // Someone scaled the worker to zero: only the Deployment is applied again.
    let mut scaled = deployment.clone();
    scaled.spec.replicas = Some(0);
    let (calls, _) = recorded_reconciles(
        Caches::filled(Contents {
            notify_rules: rules(),
            notify_configs: vec![config_map.clone()],
            notify_workers: vec![scaled],
            ..Default::default()
        }),
        &["high-critical-alerts"],
    )
    .await;
    assert_eq!(worker_writes(&calls), ["deployments"], "{calls:?}");
    // A rule added since: its name is in both objects' annotation, so both are applied.
    let mut more = rules();
    more.push(rule("new-rule", true));
    let (calls, _) = recorded_reconciles(
        Caches::filled(Contents {
            notify_rules: more,
            notify_configs: vec![config_map],
            notify_workers: vec![deployment],
            ..Default::default()
        }),
        &["new-rule"],
    )
    .await;
    assert_eq!(
        worker_writes(&calls),
        ["configmaps", "deployments"],
        "{calls:?}"
    );
}
