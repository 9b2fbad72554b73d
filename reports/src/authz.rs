//! Authorization delegated to the cluster: one `SubjectAccessReview` per distinct
//! (user, request) and a short cache, so RBAC decides who reads which namespace's reports.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::auth::User;
use crate::kinds::Kind;
use crate::status::ApiError;
use crate::{GROUP, VERSION};

/// What a request asks to do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// `get`, `list` or `watch`.
    pub verb: &'static str,
    /// The kind.
    pub kind: Kind,
    /// Subresource (`document`) or empty.
    pub subresource: String,
    /// Namespace of a namespaced request (none: all namespaces, or cluster-scoped).
    pub namespace: Option<String>,
    /// Object name, when the request names one.
    pub name: Option<String>,
}

impl Attributes {
    /// The API server's words for a refusal of `user`.
    pub fn forbidden(&self, user: &User, reason: &str) -> ApiError {
        let resource = if self.subresource.is_empty() {
            self.kind.plural().to_string()
        } else {
            format!("{}/{}", self.kind.plural(), self.subresource)
        };
        let object = match &self.name {
            Some(name) => format!("{} \"{name}\"", self.kind.group_resource()),
            None => self.kind.group_resource(),
        };
        let scope = match &self.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let mut message = format!(
            "{object} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{GROUP}\" {scope}",
            user.name, self.verb
        );
        if !reason.is_empty() {
            message.push_str(": ");
            message.push_str(reason);
        }
        ApiError {
            details: Some(serde_json::json!({
                "name": self.name.clone().unwrap_or_default(),
                "group": GROUP, "kind": self.kind.plural(),
            })),
            ..ApiError::new(403, "Forbidden", message)
        }
    }
}

/// A decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Refused, with the authorizer's reason (may be empty).
    Deny(String),
}

type Key = (User, Attributes);

/// Asks the cluster, remembers answers briefly.
pub struct Authorizer {
    client: Option<kube::Client>,
    cache: Mutex<HashMap<Key, (Decision, Instant)>>,
    /// How long an answer is reused.
    pub ttl: Duration,
    /// Most answers remembered.
    pub max_entries: usize,
    /// How long a review may take.
    pub timeout: Duration,
}

impl Authorizer {
    /// Reviews through `client` (the operator's identity needs `create` on
    /// `subjectaccessreviews`: the `system:auth-delegator` ClusterRole).
    pub fn new(client: kube::Client) -> Authorizer {
        Authorizer {
            client: Some(client),
            cache: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(10),
            max_entries: 4096,
            timeout: Duration::from_secs(5),
        }
    }

    /// Allows every authenticated request: for benchmarks and tests of the data path
    /// only, never what the operator runs.
    pub fn allow_all() -> Authorizer {
        Authorizer {
            client: None,
            cache: Mutex::new(HashMap::new()),
            ttl: Duration::ZERO,
            max_entries: 0,
            timeout: Duration::ZERO,
        }
    }

    fn cached(&self, key: &Key, now: Instant) -> Option<Decision> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(key)
            .filter(|(_, at)| now.duration_since(*at) < self.ttl)
            .map(|(d, _)| d.clone())
    }

    fn remember(&self, key: Key, decision: Decision, now: Instant) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= self.max_entries {
            let ttl = self.ttl;
            cache.retain(|_, (_, at)| now.duration_since(*at) < ttl);
            if cache.len() >= self.max_entries {
                cache.clear();
            }
        }
        cache.insert(key, (decision, now));
    }

    /// Whether `user` may do `attributes`.
    pub async fn authorize(
        &self,
        user: &User,
        attributes: &Attributes,
    ) -> Result<Decision, ApiError> {
        let Some(client) = &self.client else {
            return Ok(Decision::Allow);
        };
        let key = (user.clone(), attributes.clone());
        if let Some(decision) = self.cached(&key, Instant::now()) {
            return Ok(decision);
        }
        let review = review(user, attributes);
        let api: Api<SubjectAccessReview> = Api::all(client.clone());
        let answer =
            tokio::time::timeout(self.timeout, api.create(&PostParams::default(), &review))
                .await
                .map_err(|_| ApiError::internal("the SubjectAccessReview timed out"))?
                .map_err(|e| ApiError::internal(format!("SubjectAccessReview: {e}")))?;
        let status = answer.status.unwrap_or_default();
        let decision = if status.allowed && status.denied != Some(true) {
            Decision::Allow
        } else {
            Decision::Deny(status.reason.unwrap_or_default())
        };
        self.remember(key, decision.clone(), Instant::now());
        Ok(decision)
    }
}

/// The review asked for `user` doing `attributes`.
pub fn review(user: &User, attributes: &Attributes) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            uid: user.uid.clone(),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(GROUP.into()),
                version: Some(VERSION.into()),
                resource: Some(attributes.kind.plural().into()),
                subresource: (!attributes.subresource.is_empty())
                    .then(|| attributes.subresource.clone()),
                namespace: attributes.namespace.clone(),
                name: attributes.name.clone(),
                verb: Some(attributes.verb.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_like_the_api_servers() {
        let user = User {
            name: "bob".into(),
            ..Default::default()
        };
        let list = Attributes {
            verb: "list",
            kind: Kind::VulnerabilityReport,
            subresource: String::new(),
            namespace: Some("team-a".into()),
            name: None,
        };
        assert_eq!(
            list.forbidden(&user, "").message,
            "vulnerabilityreports.reports.stella-ops.org is forbidden: User \"bob\" cannot list resource \"vulnerabilityreports\" in API group \"reports.stella-ops.org\" in the namespace \"team-a\""
        );
        let get = Attributes {
            verb: "get",
            kind: Kind::ImageVerdict,
            namespace: None,
            name: Some("sha256-ab".into()),
            ..list
        };
        let err = get.forbidden(&user, "no binding");
        assert_eq!(err.code, 403);
        assert!(
            err.message
                .starts_with("imageverdicts.reports.stella-ops.org \"sha256-ab\" is forbidden")
                && err.message.ends_with("at the cluster scope: no binding"),
            "{}",
            err.message
        );
        let spec = review(&user, &get).spec;
        let attrs = spec.resource_attributes.unwrap();
        assert_eq!(attrs.resource.as_deref(), Some("imageverdicts"));
        assert_eq!(attrs.verb.as_deref(), Some("get"));
    }
}
