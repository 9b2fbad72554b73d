//! Types shared by several kinds: references, severities, S3 locations, conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group every Stella Ops kind belongs to.
pub const GROUP: &str = "stella-ops.org";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every Stella Ops object.
pub const API_VERSION: &str = "stella-ops.org/v1alpha1";
/// `kubectl get stellaops` lists every kind in this category.
pub const CATEGORY: &str = "stellaops";

/// The `Ready` condition every kind reports (kstatus, Argo CD and `kubectl wait` read it).
pub const CONDITION_READY: &str = "Ready";

/// A reference to an object in the same namespace by name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the referenced object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key of a Secret in the resource's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret. When omitted, the documented default key for this field is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// A Secret named together with its namespace (used by cluster-scoped kinds).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct NamespacedSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret. Defaults to the operator's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Key inside the Secret. When omitted, every key holding a PEM public key is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Which components a policy's thresholds (`failOn`, `warnOn`) count.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every component of the image (the Inventory view).
    #[default]
    Inventory,
    /// Only components the entrypoint uses (the Usage view); a component whose use is not
    /// known (no Entrypoint/Cmd, or its file list is not in the image) still counts.
    Usage,
}

impl Scope {
    /// The default, left out when serialized.
    pub fn is_inventory(&self) -> bool {
        *self == Scope::Inventory
    }

    /// Lower-case name as it appears in the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Inventory => "inventory",
            Scope::Usage => "usage",
        }
    }
}

/// Vulnerability severity, ordered from most to least severe.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// CVSS 9.0–10.0 or vendor "critical".
    Critical,
    /// CVSS 7.0–8.9 or vendor "high"/"important".
    High,
    /// CVSS 4.0–6.9 or vendor "medium"/"moderate".
    Medium,
    /// CVSS 0.1–3.9 or vendor "low".
    Low,
}

impl Severity {
    /// All severities, most severe first.
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    /// Lower-case name as it appears in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }

    /// True when `self` is as severe as `threshold` or more.
    pub fn at_least(self, threshold: Severity) -> bool {
        self <= threshold
    }
}

/// An S3 (or S3-compatible) location.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Location {
    /// Bucket name.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix inside the bucket, without a leading slash (for example `concelier/latest`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Endpoint URL of an S3-compatible server (MinIO, Ceph RGW). Omit for AWS S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/.*)?$"))]
    pub endpoint: Option<String>,
    /// Region; `us-east-1` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Address the bucket as `endpoint/bucket` instead of `bucket.endpoint`; most
    /// self-hosted servers need this.
    #[serde(default)]
    pub force_path_style: bool,
    /// Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and optionally
    /// `AWS_SESSION_TOKEN`). Omit to use the pod's ambient credentials (IRSA, instance profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
}

/// Set `new` in `conditions`, replacing the condition of the same type. The transition time
/// is kept when the status does not change, as `metav1.Condition` requires.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == new.type_) {
        if existing.status == new.status {
            new.last_transition_time = existing.last_transition_time.clone();
        }
        *existing = new;
    } else {
        conditions.push(new);
    }
}

/// Build a condition with the given transition time.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now,
    }
}

/// Find a condition by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
