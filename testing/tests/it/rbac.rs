//! The RBAC decision: Kubernetes' matching rules on small tables, then the project's own
//! manifests (`config/rbac` and the Helm chart) against what the operator does.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_json::{Value, json};
use stellaops_testing::rbac::{RequestAttributes, UserInfo, authorize};

const OPERATOR: &str = "system:serviceaccount:stellaops-system:stellaops-operator";

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn operator() -> UserInfo {
    user(
        OPERATOR,
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:stellaops-system",
            "system:authenticated",
        ],
    )
}

/// A resource request: `resource` may be `resource/subresource`, `group` `""` for core.
fn request(
    verb: &str,
    group: &str,
    resource: &str,
    ns: Option<&str>,
    name: Option<&str>,
) -> RequestAttributes {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    RequestAttributes {
        verb: verb.into(),
        api_group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace: ns.map(str::to_string),
        name: name.map(str::to_string),
        non_resource_path: None,
    }
}

fn path_request(verb: &str, path: &str) -> RequestAttributes {
    RequestAttributes {
        verb: verb.into(),
        api_group: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: None,
        name: None,
        non_resource_path: Some(path.into()),
    }
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": {"name": name}, "rules": rules})
}

fn role(ns: &str, name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
           "metadata": {"name": name, "namespace": ns}, "rules": rules})
}

fn cluster_binding(role: &str, subjects: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": format!("{role}-binding")},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
           "subjects": subjects})
}

fn binding(ns: &str, kind: &str, role: &str, subjects: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
           "metadata": {"name": format!("{role}-binding"), "namespace": ns},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
           "subjects": subjects})
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

/// Runs every case and reports all the wrong answers at once.
fn check(objects: &[Value], cases: &[(&UserInfo, RequestAttributes, bool)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(user, request, allowed)| {
            let decision = authorize(user, request, objects);
            (decision.is_ok() != *allowed).then(|| {
                format!(
                    "{} {request:?}: expected allowed={allowed}, got {decision:?}",
                    user.name
                )
            })
        })
        .collect();
    assert!(wrong.is_empty(), "wrong decisions:\n{}", wrong.join("\n"));
}

#[test]
fn bindings_grant_by_scope_and_subject() {
    let alice = user("alice", &[]);
    let dev = user("bob", &["dev"]);
    let sa = user("system:serviceaccount:team-a:builder", &[]);
    let sa_elsewhere = user("system:serviceaccount:team-b:builder", &[]);
    let admin = user("root", &["system:masters"]);
    let objects = vec![
        cluster_role(
            "read-pods",
            json!([rule(&[""], &["pods"], &["get", "list"])]),
        ),
        cluster_role("edit-jobs", json!([rule(&["batch"], &["jobs"], &["*"])])),
        role(
            "team-a",
            "cm",
            json!([rule(&[""], &["configmaps"], &["get"])]),
        ),
        // A Role of the same name in another namespace must not count for team-a.
        role(
            "team-b",
            "secrets",
            json!([rule(&[""], &["secrets"], &["get"])]),
        ),
        cluster_binding(
            "read-pods",
            json!([{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]),
        ),
        binding(
            "team-a",
            "ClusterRole",
            "edit-jobs",
            json!([{"kind": "Group", "name": "dev"}]),
        ),
        // ServiceAccount without a namespace: the RoleBinding's.
        binding(
            "team-a",
            "Role",
            "cm",
            json!([{"kind": "ServiceAccount", "name": "builder"}]),
        ),
        binding(
            "team-a",
            "Role",
            "secrets",
            json!([{"kind": "ServiceAccount", "name": "builder"}]),
        ),
        // In a ClusterRoleBinding a ServiceAccount without namespace matches nobody.
        cluster_binding(
            "edit-jobs",
            json!([{"kind": "ServiceAccount", "name": "builder"}]),
        ),
    ];
    check(
        &objects,
        &[
            (
                &admin,
                request("delete", "", "nodes", None, Some("n1")),
                true,
            ),
            (&admin, path_request("get", "/metrics"), true),
            (&alice, request("list", "", "pods", None, None), true),
            (
                &alice,
                request("get", "", "pods", Some("anywhere"), Some("p")),
                true,
            ),
            (
                &alice,
                request("delete", "", "pods", Some("anywhere"), Some("p")),
                false,
            ),
            (
                &alice,
                request("get", "", "pods/log", Some("anywhere"), Some("p")),
                false,
            ),
            (
                &alice,
                request("get", "batch", "jobs", Some("team-a"), Some("j")),
                false,
            ),
            (
                &dev,
                request("create", "batch", "jobs", Some("team-a"), None),
                true,
            ),
            (
                &dev,
                request("deletecollection", "batch", "jobs", Some("team-a"), None),
                true,
            ),
            (
                &dev,
                request("create", "batch", "jobs", Some("team-b"), None),
                false,
            ),
            (&dev, request("list", "batch", "jobs", None, None), false),
            (
                &dev,
                request("get", "", "pods", Some("team-a"), Some("p")),
                false,
            ),
            (
                &sa,
                request("get", "", "configmaps", Some("team-a"), Some("c")),
                true,
            ),
            (
                &sa,
                request("get", "", "configmaps", Some("team-b"), Some("c")),
                false,
            ),
            (
                &sa,
                request("get", "", "secrets", Some("team-a"), Some("s")),
                false,
            ),
            (
                &sa,
                request("create", "batch", "jobs", Some("team-a"), None),
                false,
            ),
            (
                &sa_elsewhere,
                request("get", "", "configmaps", Some("team-a"), Some("c")),
                false,
            ),
        ],
    );
}

#[test]
fn rule_fields_match_as_in_kubernetes() {
    let u = user("u", &[]);
    let objects = vec![
        cluster_role(
            "rules",
            json!([
                rule(&["apps"], &["*"], &["get"]),
                rule(&["batch"], &["*/status"], &["patch"]),
                rule(&["stella-ops.org"], &["scans/status"], &["update"]),
                rule(&["stella-ops.org"], &["scans"], &["list"]),
                // Not a wildcard in Kubernetes: only the subresource named "*".
                rule(&[""], &["pods/*"], &["get"]),
                rule(&["*"], &["leases"], &["watch"]),
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                 "resourceNames": ["mine"], "verbs": ["get", "create", "list"]},
                {"nonResourceURLs": ["/healthz", "/metrics/*"], "verbs": ["get"]},
            ]),
        ),
        cluster_binding("rules", json!([{"kind": "User", "name": "u"}])),
    ];
    check(
        &objects,
        &[
            (
                &u,
                request("get", "apps", "deployments", Some("x"), Some("d")),
                true,
            ),
            // `*` covers subresources too.
            (
                &u,
                request("get", "apps", "deployments/scale", Some("x"), Some("d")),
                true,
            ),
            (
                &u,
                request("get", "batch", "jobs", Some("x"), Some("d")),
                false,
            ),
            (
                &u,
                request("patch", "batch", "jobs/status", Some("x"), Some("j")),
                true,
            ),
            (
                &u,
                request("patch", "batch", "cronjobs/status", None, Some("j")),
                true,
            ),
            (
                &u,
                request("patch", "batch", "jobs", Some("x"), Some("j")),
                false,
            ),
            (
                &u,
                request(
                    "update",
                    "stella-ops.org",
                    "scans/status",
                    Some("x"),
                    Some("s"),
                ),
                true,
            ),
            (
                &u,
                request("update", "stella-ops.org", "scans", Some("x"), Some("s")),
                false,
            ),
            // `scans` does not grant its subresources.
            (
                &u,
                request("list", "stella-ops.org", "scans/status", Some("x"), None),
                false,
            ),
            (
                &u,
                request("get", "", "pods/log", Some("x"), Some("p")),
                false,
            ),
            (&u, request("get", "", "pods", Some("x"), Some("p")), false),
            (
                &u,
                request("watch", "anything.io", "leases", None, None),
                true,
            ),
            (
                &u,
                request(
                    "get",
                    "coordination.k8s.io",
                    "leases",
                    Some("x"),
                    Some("mine"),
                ),
                true,
            ),
            (
                &u,
                request(
                    "get",
                    "coordination.k8s.io",
                    "leases",
                    Some("x"),
                    Some("other"),
                ),
                false,
            ),
            // resourceNames never match a request without a name.
            (
                &u,
                request("create", "coordination.k8s.io", "leases", Some("x"), None),
                false,
            ),
            (
                &u,
                request("list", "coordination.k8s.io", "leases", Some("x"), None),
                false,
            ),
            (&u, path_request("get", "/healthz"), true),
            (&u, path_request("get", "/healthz/ready"), false),
            (&u, path_request("get", "/metrics/"), true),
            (&u, path_request("get", "/metrics/cadvisor"), true),
            (&u, path_request("post", "/healthz"), false),
            (&u, path_request("get", "/version"), false),
        ],
    );
}

#[test]
fn non_resource_urls_only_through_cluster_role_bindings() {
    let u = user("u", &[]);
    let objects = vec![
        cluster_role("paths", json!([{"nonResourceURLs": ["*"], "verbs": ["*"]}])),
        binding(
            "team-a",
            "ClusterRole",
            "paths",
            json!([{"kind": "User", "name": "u"}]),
        ),
    ];
    check(&objects, &[(&u, path_request("get", "/version"), false)]);
    let mut objects = objects;
    objects.push(cluster_binding(
        "paths",
        json!([{"kind": "User", "name": "u"}]),
    ));
    check(&objects, &[(&u, path_request("get", "/version"), true)]);
}

#[test]
fn refusals_read_like_the_api_servers() {
    let sa = operator();
    let objects = vec![
        // The binding's role is missing: the API server names it after the refusal.
        cluster_binding(
            "gone",
            json!([{"kind": "Group", "name": "system:authenticated"}]),
        ),
    ];
    let refusal = |request| authorize(&sa, &request, &[]).unwrap_err();
    assert_eq!(
        refusal(request("create", "batch", "jobs", Some("tenant-a"), None)),
        format!(
            r#"User "{OPERATOR}" cannot create resource "jobs" in API group "batch" in the namespace "tenant-a""#
        )
    );
    assert_eq!(
        refusal(request("list", "", "secrets", None, None)),
        format!(
            r#"User "{OPERATOR}" cannot list resource "secrets" in API group "" at the cluster scope"#
        )
    );
    assert_eq!(
        refusal(request(
            "patch",
            "batch",
            "jobs/status",
            Some("t"),
            Some("j")
        )),
        format!(
            r#"User "{OPERATOR}" cannot patch resource "jobs/status" in API group "batch" in the namespace "t""#
        )
    );
    assert_eq!(
        refusal(path_request("get", "/version")),
        format!(r#"User "{OPERATOR}" cannot get path "/version""#)
    );
    assert_eq!(
        authorize(
            &sa,
            &request("get", "", "pods", Some("t"), Some("p")),
            &objects
        )
        .unwrap_err(),
        format!(
            r#"User "{OPERATOR}" cannot get resource "pods" in API group "" in the namespace "t": RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found"#
        )
    );
}

#[test]
fn odd_objects_are_ignored_not_fatal() {
    let u = user("u", &[]);
    let objects = vec![
        json!(null),
        json!({"kind": "ConfigMap"}),
        json!({"kind": "ClusterRole", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": "r"}, "rules": "nonsense"}),
        json!({"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1", "roleRef": 3, "subjects": [{"kind": "User", "name": "u"}]}),
        json!({"kind": "RoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"namespace": "x"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}, 7]}),
    ];
    assert!(
        authorize(
            &u,
            &request("get", "", "pods", Some("x"), Some("p")),
            &objects
        )
        .is_err()
    );
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kustomize_rbac() -> Vec<Value> {
    let mut objects = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("config/rbac"))
        .expect("config/rbac")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for file in files {
        objects.extend(yaml_documents(
            &std::fs::read_to_string(&file).expect("read manifest"),
        ));
    }
    objects
}

/// What the operator does (allowed) and what least privilege keeps from it (refused).
fn operator_cases(sa: &UserInfo) -> Vec<(&UserInfo, RequestAttributes, bool)> {
    let home = Some("stellaops-system");
    let tenant = Some("tenant-a");
    vec![
        // Jobs by server-side apply (a PATCH that may create), in the platform namespace
        // only: everything that holds platform credentials runs there.
        (
            sa,
            request("patch", "batch", "jobs", home, Some("tenant-a-scan-x")),
            true,
        ),
        (
            sa,
            request("patch", "batch", "jobs", home, Some("migrate-1")),
            true,
        ),
        (sa, request("create", "batch", "jobs", home, None), true),
        (
            sa,
            request("delete", "batch", "jobs", home, Some("evaluate-1")),
            true,
        ),
        (sa, request("watch", "batch", "jobs", home, None), true),
        (
            sa,
            request("patch", "batch", "cronjobs", home, Some("sync")),
            true,
        ),
        (
            sa,
            request("delete", "apps", "deployments", home, Some("notify")),
            true,
        ),
        (
            sa,
            request("patch", "", "secrets", home, Some("tenant-a-scan-x-pull-0")),
            true,
        ),
        (sa, request("watch", "", "pods", None, None), true),
        (sa, request("list", "", "pods", tenant, None), true),
        (
            sa,
            request("list", "stella-ops.org", "scans", None, None),
            true,
        ),
        (
            sa,
            request("patch", "stella-ops.org", "scans/status", tenant, Some("s")),
            true,
        ),
        (
            sa,
            request("watch", "stella-ops.org", "scanpolicies", None, None),
            true,
        ),
        (
            sa,
            request(
                "patch",
                "stella-ops.org",
                "scanpolicies/status",
                None,
                Some("p"),
            ),
            true,
        ),
        // The operator reads ScanPolicies; it never writes their spec.
        (
            sa,
            request("patch", "stella-ops.org", "scanpolicies", None, Some("p")),
            false,
        ),
        (
            sa,
            request(
                "patch",
                "stella-ops.org",
                "platforms/status",
                home,
                Some("p"),
            ),
            true,
        ),
        (
            sa,
            request("create", "stella-ops.org", "scans", tenant, None),
            true,
        ),
        (
            sa,
            request("create", "events.k8s.io", "events", tenant, None),
            true,
        ),
        (
            sa,
            request("patch", "events.k8s.io", "events", tenant, Some("e.1")),
            true,
        ),
        (
            sa,
            request("create", "coordination.k8s.io", "leases", home, None),
            true,
        ),
        (
            sa,
            request(
                "get",
                "coordination.k8s.io",
                "leases",
                home,
                Some("stellaops-operator-leader"),
            ),
            true,
        ),
        (
            sa,
            request(
                "update",
                "coordination.k8s.io",
                "leases",
                home,
                Some("stellaops-operator-leader"),
            ),
            true,
        ),
        (
            sa,
            request("get", "", "secrets", tenant, Some("notify-smtp")),
            true,
        ),
        (sa, request("watch", "", "secrets", home, None), true),
        (
            sa,
            request("patch", "", "secrets", home, Some("webhook-tls")),
            true,
        ),
        (
            sa,
            request("patch", "apps", "deployments", home, Some("notify")),
            true,
        ),
        (
            sa,
            request(
                "patch",
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
                None,
                Some("z"),
            ),
            true,
        ),
        (sa, request("watch", "", "namespaces", None, None), true),
        // Refused.
        (sa, request("list", "", "secrets", None, None), false),
        (sa, request("list", "", "secrets", tenant, None), false),
        (sa, request("create", "", "secrets", tenant, None), false),
        (
            sa,
            request(
                "update",
                "coordination.k8s.io",
                "leases",
                home,
                Some("someone-else"),
            ),
            false,
        ),
        (
            sa,
            request(
                "get",
                "coordination.k8s.io",
                "leases",
                tenant,
                Some("stellaops-operator-leader"),
            ),
            false,
        ),
        (
            sa,
            request("create", "coordination.k8s.io", "leases", tenant, None),
            false,
        ),
        (
            sa,
            request("list", "coordination.k8s.io", "leases", home, None),
            false,
        ),
        // No workload write, and no Job watch, outside the platform namespace.
        (
            sa,
            request("patch", "batch", "jobs", tenant, Some("scan-x")),
            false,
        ),
        (sa, request("create", "batch", "jobs", tenant, None), false),
        (sa, request("watch", "batch", "jobs", None, None), false),
        (
            sa,
            request("patch", "batch", "cronjobs", tenant, Some("sync")),
            false,
        ),
        (
            sa,
            request("patch", "apps", "deployments", tenant, Some("notify")),
            false,
        ),
        (
            sa,
            request("delete", "apps", "deployments", tenant, Some("notify")),
            false,
        ),
        (
            sa,
            request("patch", "", "services", tenant, Some("mirror")),
            false,
        ),
        (
            sa,
            request("patch", "", "secrets", tenant, Some("copy")),
            false,
        ),
        (
            sa,
            request("update", "batch", "jobs", tenant, Some("scan-x")),
            false,
        ),
        (
            sa,
            request("patch", "batch", "jobs/status", tenant, Some("scan-x")),
            false,
        ),
        (
            sa,
            request("delete", "stella-ops.org", "scans", tenant, Some("s")),
            false,
        ),
        (
            sa,
            request("update", "stella-ops.org", "scans", tenant, Some("s")),
            false,
        ),
        (sa, request("create", "", "pods", tenant, None), false),
        (sa, request("get", "", "pods/log", tenant, Some("p")), false),
        (
            sa,
            request(
                "create",
                "rbac.authorization.k8s.io",
                "clusterroles",
                None,
                None,
            ),
            false,
        ),
        (sa, path_request("get", "/metrics"), false),
    ]
}

#[test]
fn project_manifests_allow_what_the_operator_does_and_nothing_more() {
    let objects = kustomize_rbac();
    assert!(
        objects.iter().any(|o| o["kind"] == "ClusterRoleBinding"),
        "config/rbac has no ClusterRoleBinding"
    );
    let sa = operator();
    check(&objects, &operator_cases(&sa));
    // Another service account of the namespace gets nothing from them.
    let other = user("system:serviceaccount:stellaops-system:default", &[]);
    check(
        &objects,
        &[
            (&other, request("watch", "batch", "jobs", None, None), false),
            (
                &other,
                request(
                    "create",
                    "coordination.k8s.io",
                    "leases",
                    Some("stellaops-system"),
                    None,
                ),
                false,
            ),
        ],
    );
}

fn helm() -> Option<String> {
    if let Ok(path) = std::env::var("STELLAOPS_TEST_HELM") {
        return Some(path);
    }
    let local = repo_root().join(".test-services/bin/helm");
    if local.exists() {
        return Some(local.to_string_lossy().into_owned());
    }
    if Command::new("helm").arg("version").output().is_ok() {
        return Some("helm".into());
    }
    stellaops_testing::service("STELLAOPS_TEST_HELM")
}

#[test]
fn helm_chart_rbac_decides_like_the_kustomize_manifests() {
    let Some(helm) = helm() else {
        return;
    };
    let out = Command::new(&helm)
        .args([
            "template",
            "stellaops-operator",
            "charts/stellaops-operator",
            "--namespace",
            "stellaops-system",
        ])
        .current_dir(repo_root())
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = yaml_documents(&String::from_utf8(out.stdout).expect("UTF-8"));
    let sa = operator();
    check(&objects, &operator_cases(&sa));
}
