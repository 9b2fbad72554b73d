//! The built-in resource types and the discovery and OpenAPI documents.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::store::ResourceType;

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    status: bool,
    short: &[&str],
    categories: &[&str],
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: categories.iter().map(|s| s.to_string()).collect(),
        status,
        printer_columns: Vec::new(),
    }
}

/// The Namespace resource type.
pub(crate) fn namespaces() -> ResourceType {
    builtin(
        "",
        "v1",
        "namespaces",
        "Namespace",
        false,
        true,
        &["ns"],
        &[],
    )
}

/// The built-in kinds served.
pub(crate) fn builtins() -> Vec<ResourceType> {
    let all = &["all"][..];
    vec![
        namespaces(),
        builtin("", "v1", "pods", "Pod", true, true, &["po"], all),
        builtin("", "v1", "secrets", "Secret", true, false, &[], &[]),
        builtin(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            true,
            false,
            &["cm"],
            &[],
        ),
        builtin("", "v1", "services", "Service", true, true, &["svc"], all),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            false,
            &["sa"],
            &[],
        ),
        builtin(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            true,
            &["pvc"],
            &[],
        ),
        builtin("", "v1", "events", "Event", true, false, &["ev"], &[]),
        builtin(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            true,
            &["deploy"],
            all,
        ),
        builtin(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            true,
            true,
            &["sts"],
            all,
        ),
        builtin(
            "apps",
            "v1",
            "daemonsets",
            "DaemonSet",
            true,
            true,
            &["ds"],
            all,
        ),
        builtin(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            true,
            true,
            &["rs"],
            all,
        ),
        builtin("batch", "v1", "jobs", "Job", true, true, &[], all),
        builtin(
            "batch",
            "v1",
            "cronjobs",
            "CronJob",
            true,
            true,
            &["cj"],
            all,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            false,
            &[],
            &[],
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            false,
            &["ev"],
            &[],
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
            false,
            &[],
            &["api-extensions"],
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
            false,
            &[],
            &["api-extensions"],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            false,
            &[],
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            false,
            &[],
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            false,
            &[],
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            false,
            &[],
            &[],
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            true,
            &["crd", "crds"],
            &["api-extensions"],
        ),
        builtin(
            "apiregistration.k8s.io",
            "v1",
            "apiservices",
            "APIService",
            false,
            true,
            &[],
            &["api-extensions"],
        ),
    ]
}

pub(crate) fn version() -> Value {
    json!({
        "major": "1", "minor": "31", "gitVersion": "v1.31.0-stellaops-emulator",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2024-08-13T00:00:00Z", "goVersion": "go1.22.5", "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub(crate) fn api_versions(address: &str) -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    })
}

/// Group → versions, in a stable order (core excluded).
fn groups<'a>(types: impl Iterator<Item = &'a Arc<ResourceType>>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rt in types {
        if rt.group.is_empty() {
            continue;
        }
        let versions = out.entry(rt.group.clone()).or_default();
        if !versions.contains(&rt.version) {
            versions.push(rt.version.clone());
        }
    }
    out
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let listed: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": listed, "preferredVersion": listed[0]})
}

pub(crate) fn group_list<'a>(types: impl Iterator<Item = &'a Arc<ResourceType>>) -> Value {
    let groups: Vec<Value> = groups(types)
        .iter()
        .map(|(name, versions)| group_doc(name, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub(crate) fn group<'a>(
    types: impl Iterator<Item = &'a Arc<ResourceType>>,
    name: &str,
) -> Option<Value> {
    let groups = groups(types);
    let versions = groups.get(name)?;
    let mut doc = group_doc(name, versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

pub(crate) fn resource_list<'a>(
    types: impl Iterator<Item = &'a Arc<ResourceType>>,
    group: &str,
    version: &str,
) -> Option<Value> {
    let mut resources = Vec::new();
    for rt in types.filter(|rt| rt.group == group && rt.version == version) {
        let mut doc = json!({
            "name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
            "kind": rt.kind, "verbs": VERBS,
        });
        if !rt.short_names.is_empty() {
            doc["shortNames"] = json!(rt.short_names);
        }
        if !rt.categories.is_empty() {
            doc["categories"] = json!(rt.categories);
        }
        resources.push(doc);
        if rt.status {
            resources.push(json!({
                "name": format!("{}/status", rt.plural), "singularName": "", "namespaced": rt.namespaced,
                "kind": rt.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

fn openapi_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one document per group version.
pub(crate) fn openapi_index<'a>(types: impl Iterator<Item = &'a Arc<ResourceType>>) -> Value {
    let mut paths = serde_json::Map::new();
    for rt in types {
        let path = openapi_path(&rt.group, &rt.version);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash=emulator")}),
        );
    }
    json!({"paths": paths})
}

/// The OpenAPI v3 document of one group version: just the PATCH operations, tagged with
/// their kind and accepting `fieldValidation`, which is what kubectl looks for before it
/// leaves validation to the server.
pub(crate) fn openapi_group_version<'a>(
    types: impl Iterator<Item = &'a Arc<ResourceType>>,
    path: &str,
) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for rt in types.filter(|rt| openapi_path(&rt.group, &rt.version) == path) {
        let collection = if rt.namespaced {
            format!("/{path}/namespaces/{{namespace}}/{}/{{name}}", rt.plural)
        } else {
            format!("/{path}/{}/{{name}}", rt.plural)
        };
        let operation = json!({
            "operationId": format!("patch{}", rt.kind),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
            "parameters": [
                {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                {"name": "force", "in": "query", "schema": {"type": "boolean"}},
            ],
            "responses": {"200": {"description": "OK"}},
        });
        paths.insert(collection, json!({"patch": operation}));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.31.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
