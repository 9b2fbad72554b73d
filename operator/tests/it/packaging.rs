//! The kustomize bases and the Helm chart, rendered offline with the real tools.

use std::collections::BTreeMap;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use crate::repo_root;

pub(crate) fn tool(var: &str, name: &str) -> Option<String> {
    // scripts/test.sh sets the variable; otherwise use PATH, and skip outside CI.
    if let Ok(path) = std::env::var(var) {
        return Some(path);
    }
    if Command::new(name).arg("version").output().is_ok() {
        return Some(name.to_string());
    }
    stellaops_testing::service(var)
}

pub(crate) fn render(program: &str, args: &[&str]) -> Vec<Value> {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run renderer");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn kinds(objects: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for o in objects {
        *counts
            .entry(o["kind"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

pub(crate) fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// The restricted Pod Security Standard, as the operator Deployment must meet it.
fn assert_restricted(deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    for c in pod["containers"].as_array().unwrap() {
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            c["securityContext"]["capabilities"]["drop"],
            serde_json::json!(["ALL"])
        );
        assert!(c["readinessProbe"].is_object() && c["livenessProbe"].is_object());
        // Readiness is the webhook's: certificate loaded and policies synced.
        assert_eq!(
            c["readinessProbe"]["httpGet"],
            serde_json::json!({"path": "/readyz", "port": "webhook-health"})
        );
    }
}

fn cluster_rules(objects: &[Value]) -> Value {
    find(objects, "ClusterRole")["rules"].clone()
}

/// The rules of the Role granting what the operator does in the platform namespace.
fn platform_rules(objects: &[Value]) -> Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == "Role"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-platform"))
        })
        .expect("a platform Role")["rules"]
        .clone()
}

/// The ValidatingAdmissionPolicy and its binding confine the operator's own service account
/// (`account` in `namespace`) to that namespace.
fn assert_workload_policy(objects: &[Value], namespace: &str, account: &str) {
    let policy = find(objects, "ValidatingAdmissionPolicy");
    let binding = find(objects, "ValidatingAdmissionPolicyBinding");
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(
        binding["spec"]["validationActions"],
        serde_json::json!(["Deny"])
    );
    let matched = policy["spec"]["matchConditions"][0]["expression"]
        .as_str()
        .unwrap();
    assert!(
        matched.contains(&format!("system:serviceaccount:{namespace}:{account}\"")),
        "{matched}"
    );
    let namespace_rule = policy["spec"]["validations"][0]["expression"]
        .as_str()
        .unwrap();
    assert_eq!(
        namespace_rule,
        format!("request.namespace == \"{namespace}\"")
    );
}

/// No cluster-wide write on workloads: whoever holds the ClusterRole cannot run a Pod (so
/// cannot act as any service account) outside the platform namespace.
fn assert_no_workload_writes_cluster_wide(objects: &[Value]) {
    for rule in cluster_rules(objects).as_array().unwrap() {
        let resources: Vec<&str> = rule["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for workload in [
            "jobs",
            "cronjobs",
            "deployments",
            "pods",
            "services",
            "persistentvolumeclaims",
            "configmaps",
            "secrets",
        ] {
            if resources.contains(&workload) {
                assert!(
                    !verbs
                        .iter()
                        .any(|v| matches!(*v, "create" | "patch" | "update" | "delete" | "*")),
                    "the ClusterRole may {verbs:?} {workload}"
                );
            }
        }
    }
}

/// The webhook is served by the operator Pods behind a Service on 443; no
/// ValidatingWebhookConfiguration is shipped (the operator registers one per ZastavaPolicy).
fn assert_webhook_served(objects: &[serde_json::Value]) {
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "ValidatingWebhookConfiguration"),
        "webhook configurations belong to the operator"
    );
    let service = objects
        .iter()
        .find(|o| {
            o["kind"] == "Service"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("zastava-webhook"))
        })
        .expect("a zastava-webhook Service");
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "webhook");
    let ports: Vec<&str> = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        ["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        ports.contains(&"webhook") && ports.contains(&"webhook-health"),
        "{ports:?}"
    );
}

#[test]
fn kustomize_default_renders_crds_rbac_deployment_and_webhook() {
    let Some(kubectl) = tool("STELLAOPS_TEST_KUBECTL", "kubectl") else {
        return;
    };
    let objects = render(&kubectl, &["kustomize", "config/default"]);
    let counts = kinds(&objects);
    assert_eq!(
        counts.get("CustomResourceDefinition"),
        Some(&8),
        "{counts:?}"
    );
    for kind in [
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceAccount",
        "Deployment",
        "Service",
        "Namespace",
    ] {
        assert!(
            counts.contains_key(kind),
            "config/default lacks {kind}: {counts:?}"
        );
    }
    assert_restricted(find(&objects, "Deployment"));
    assert_webhook_served(&objects);
    assert_no_workload_writes_cluster_wide(&objects);
    assert_workload_policy(&objects, "stellaops-system", "stellaops-operator");
    // The samples kustomization is valid too and holds one resource of each kind.
    let samples = render(&kubectl, &["kustomize", "config/samples"]);
    assert_eq!(
        samples.len(),
        10,
        "one of each kind, and the Platform's release ConfigMap and key"
    );
}

#[test]
fn helm_chart_lints_renders_and_matches_the_kustomize_rbac() {
    let Some(helm) = tool("STELLAOPS_TEST_HELM", "helm") else {
        return;
    };
    let chart = "charts/stellaops-operator";
    let lint = Command::new(&helm)
        .args(["lint", "--strict", chart])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );

    let objects = render(
        &helm,
        &[
            "template",
            "stellaops",
            chart,
            "--namespace",
            "stellaops-system",
            "--set",
            "metrics.serviceMonitor.enabled=true",
        ],
    );
    let counts = kinds(&objects);
    for kind in [
        "ClusterRole",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "ServiceAccount",
    ] {
        assert!(counts.contains_key(kind), "chart lacks {kind}: {counts:?}");
    }
    assert_restricted(find(&objects, "Deployment"));
    assert_webhook_served(&objects);
    let without_monitor = render(&helm, &["template", "stellaops", chart]);
    assert!(!kinds(&without_monitor).contains_key("ServiceMonitor"));

    let with_crds = render(&helm, &["template", "stellaops", chart, "--include-crds"]);
    assert_eq!(kinds(&with_crds).get("CustomResourceDefinition"), Some(&8));

    // Least privilege stays identical in both install paths.
    if let Some(kubectl) = tool("STELLAOPS_TEST_KUBECTL", "kubectl") {
        let kustomized = render(&kubectl, &["kustomize", "config/rbac"]);
        assert_eq!(cluster_rules(&objects), cluster_rules(&kustomized));
        assert_eq!(platform_rules(&objects), platform_rules(&kustomized));
    }
    assert_no_workload_writes_cluster_wide(&objects);
    assert_workload_policy(&objects, "stellaops-system", "stellaops-stellaops-operator");
    let without_policy = render(
        &helm,
        &[
            "template",
            "stellaops",
            chart,
            "--set",
            "admissionPolicy.enabled=false",
        ],
    );
    assert!(!kinds(&without_policy).contains_key("ValidatingAdmissionPolicy"));
    // The platform Role is in the release namespace, where the workers run.
    let role = objects
        .iter()
        .find(|o| {
            o["kind"] == "Role"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-platform"))
        })
        .unwrap();
    assert_eq!(role["metadata"]["namespace"], "stellaops-system");
}
