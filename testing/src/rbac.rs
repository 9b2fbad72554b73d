//! Kubernetes RBAC authorization, as the API server's RBAC authorizer decides it, over
//! Role, ClusterRole, RoleBinding and ClusterRoleBinding objects (as JSON). Used by the API
//! server emulator so a request the project's own manifests do not allow gets 403.
//!
//! Matching follows the Kubernetes authorizer exactly: a rule's resource is `*`, the
//! requested `resource` or `resource/subresource`, or `*/subresource`; `resource/*` is not
//! a wildcard in Kubernetes and so is none here (it only matches a subresource literally
//! named `*`). `resourceNames` never match a request without a name. Aggregated
//! ClusterRoles (`aggregationRule`) are not expanded: only the rules stored in a
//! ClusterRole count, as if the aggregation controller had not run yet.

use serde_json::Value;

/// Who makes a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// User name: `system:serviceaccount:<namespace>:<name>` for a service account.
    pub name: String,
    /// Groups (`system:masters` is allowed everything, as in a cluster).
    pub groups: Vec<String>,
}

/// What a request asks to do, as the API server's request-info resolver reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestAttributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// API group, `""` for the core group.
    pub api_group: String,
    /// Plural resource, e.g. `jobs`.
    pub resource: String,
    /// Subresource, e.g. `status`, or `""`.
    pub subresource: String,
    /// Namespace of a namespaced request; `None` for cluster-scoped or all-namespace ones.
    pub namespace: Option<String>,
    /// Object name when the request names one (not for create, list, watch of a collection).
    pub name: Option<String>,
    /// A non-resource request's path (`/version`, `/apis`…); then the resource fields are empty.
    pub non_resource_path: Option<String>,
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Allow or refuse `attributes` for `user` given every RBAC object in `rbac_objects`
/// (Roles, ClusterRoles, RoleBindings, ClusterRoleBindings, in any order; other kinds are
/// ignored). `Err` carries the reason in the API server's words: `User "…" cannot …`,
/// followed, as there, by `: RBAC: …` naming roles that bindings refer to but that do not
/// exist.
pub fn authorize(
    user: &UserInfo,
    attributes: &RequestAttributes,
    rbac_objects: &[Value],
) -> Result<(), String> {
    if user.groups.iter().any(|g| g == "system:masters") {
        return Ok(());
    }
    let namespace = attributes.namespace.as_deref().filter(|ns| !ns.is_empty());
    let mut errors = Vec::new();

    // As the API server: ClusterRoleBindings first, then the RoleBindings of the
    // request's namespace (none for cluster-scoped and non-resource requests).
    for binding in rbac_objects
        .iter()
        .filter(|o| is_kind(o, "ClusterRoleBinding"))
    {
        if !binding_applies(binding, user, None) {
            continue;
        }
        match referenced_rules(binding, None, rbac_objects) {
            Ok(rules) => {
                if rules.iter().any(|rule| rule_allows(rule, attributes)) {
                    return Ok(());
                }
            }
            Err(e) => errors.push(e),
        }
    }
    // RoleBindings grant in their own namespace only, and never non-resource paths.
    if let (Some(namespace), None) = (namespace, &attributes.non_resource_path) {
        let bindings = rbac_objects.iter().filter(|o| {
            is_kind(o, "RoleBinding") && str_at(o, &["metadata", "namespace"]) == Some(namespace)
        });
        for binding in bindings {
            if !binding_applies(binding, user, Some(namespace)) {
                continue;
            }
            match referenced_rules(binding, Some(namespace), rbac_objects) {
                Ok(rules) => {
                    if rules.iter().any(|rule| rule_allows(rule, attributes)) {
                        return Ok(());
                    }
                }
                Err(e) => errors.push(e),
            }
        }
    }

    let mut message = refusal(user, attributes);
    match errors.len() {
        0 => {}
        1 => message.push_str(&format!(": RBAC: {}", errors[0])),
        _ => message.push_str(&format!(": RBAC: [{}]", errors.join(", "))),
    }
    Err(message)
}

/// The API server's "forbidden" sentence for a request.
fn refusal(user: &UserInfo, a: &RequestAttributes) -> String {
    if let Some(path) = &a.non_resource_path {
        return format!("User {:?} cannot {} path {:?}", user.name, a.verb, path);
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    match a.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        Some(ns) => format!(
            "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
            user.name, a.verb, resource, a.api_group, ns
        ),
        None => format!(
            "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
            user.name, a.verb, resource, a.api_group
        ),
    }
}

fn is_kind(object: &Value, kind: &str) -> bool {
    object["kind"].as_str() == Some(kind)
        && object["apiVersion"]
            .as_str()
            .is_none_or(|v| v.split('/').next() == Some(RBAC_GROUP))
}

fn str_at<'a>(object: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(object, |v, key| v.get(key))?.as_str()
}

fn strings(value: &Value) -> impl Iterator<Item = &str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Whether one of the binding's subjects is `user`. `namespace` is the RoleBinding's
/// namespace (a ServiceAccount subject without a namespace means one there); `None` for
/// ClusterRoleBindings, whose ServiceAccount subjects must name their namespace.
fn binding_applies(binding: &Value, user: &UserInfo, namespace: Option<&str>) -> bool {
    let subjects = binding["subjects"].as_array().into_iter().flatten();
    subjects.into_iter().any(|subject| {
        let name = subject["name"].as_str().unwrap_or_default();
        match subject["kind"].as_str() {
            Some("User") => !name.is_empty() && user.name == name,
            Some("Group") => user.groups.iter().any(|g| g == name),
            Some("ServiceAccount") => {
                let sa_namespace = subject["namespace"]
                    .as_str()
                    .filter(|ns| !ns.is_empty())
                    .or(namespace);
                match sa_namespace {
                    Some(ns) if !name.is_empty() => {
                        user.name
                            .strip_prefix(SERVICE_ACCOUNT_PREFIX)
                            .and_then(|rest| rest.split_once(':'))
                            == Some((ns, name))
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    })
}

/// The rules of the role a binding refers to; an error in the API server's words when the
/// role does not exist.
fn referenced_rules<'a>(
    binding: &Value,
    namespace: Option<&str>,
    objects: &'a [Value],
) -> Result<Vec<&'a Value>, String> {
    let role_ref = &binding["roleRef"];
    let name = role_ref["name"].as_str().unwrap_or_default();
    if role_ref["apiGroup"].as_str() != Some(RBAC_GROUP) {
        return Err(format!(
            "unsupported role reference kind: {:?}",
            role_ref["kind"].as_str().unwrap_or_default()
        ));
    }
    let role = match (role_ref["kind"].as_str(), namespace) {
        (Some("ClusterRole"), _) => objects
            .iter()
            .find(|o| is_kind(o, "ClusterRole") && str_at(o, &["metadata", "name"]) == Some(name))
            .ok_or_else(|| format!("clusterrole.{RBAC_GROUP} {name:?} not found")),
        // Only a RoleBinding may refer to a Role, and only to one in its own namespace.
        (Some("Role"), Some(ns)) => objects
            .iter()
            .find(|o| {
                is_kind(o, "Role")
                    && str_at(o, &["metadata", "name"]) == Some(name)
                    && str_at(o, &["metadata", "namespace"]) == Some(ns)
            })
            .ok_or_else(|| format!("role.{RBAC_GROUP} {name:?} not found")),
        (kind, _) => Err(format!(
            "unsupported role reference kind: {:?}",
            kind.unwrap_or_default()
        )),
    }?;
    Ok(role["rules"].as_array().into_iter().flatten().collect())
}

fn rule_allows(rule: &Value, a: &RequestAttributes) -> bool {
    let verb_matches = strings(&rule["verbs"]).any(|v| v == "*" || v == a.verb);
    if !verb_matches {
        return false;
    }
    if let Some(path) = &a.non_resource_path {
        return strings(&rule["nonResourceURLs"]).any(|url| non_resource_url_matches(url, path));
    }
    strings(&rule["apiGroups"]).any(|g| g == "*" || g == a.api_group)
        && resource_matches(rule, a)
        && resource_name_matches(rule, a.name.as_deref())
}

fn non_resource_url_matches(url: &str, path: &str) -> bool {
    url == "*"
        || url == path
        || url
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

fn resource_matches(rule: &Value, a: &RequestAttributes) -> bool {
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    strings(&rule["resources"]).any(|r| {
        r == "*"
            || r == combined
            || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(a.subresource.as_str()))
    })
}

fn resource_name_matches(rule: &Value, name: Option<&str>) -> bool {
    let mut names = strings(&rule["resourceNames"]).peekable();
    if names.peek().is_none() {
        return true;
    }
    // A rule limited to names never allows a request that names nothing (create, list,
    // watch of a collection).
    name.is_some_and(|name| names.any(|n| n == name))
}
