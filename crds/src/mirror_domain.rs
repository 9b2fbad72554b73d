//! `MirrorDomain`: sync signed export bundles from S3 onto a volume and serve them.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{S3Location, SecretKeyRef};
use crate::schedule::CRON_PATTERN;

/// A mirror domain: signed Concelier/Excititor export bundles pulled from S3 onto a volume
/// on a schedule and served to downstream sites with Basic auth, request budgets and
/// CDN-friendly cache headers.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "stella-ops.org",
    version = "v1alpha1",
    doc = "A mirror of signed export bundles synced from S3 and served over HTTP.",
    kind = "MirrorDomain",
    namespaced,
    status = "MirrorDomainStatus",
    shortname = "mdom",
    category = "stellaops",
    derive = "PartialEq",
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.domainId"),
    printcolumn(
        name = "Export",
        type_ = "string",
        json_path = ".status.activeExportId"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(name = "Last Sync", type_ = "date", json_path = ".status.lastSyncAt"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MirrorDomainSpec {
    /// Domain identifier, matching the exporter's manifest (`primary`, `community`). It is
    /// the `{domain}` in `/concelier/exports/mirror/{domain}/…`. Immutable.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("domainId is immutable; downstream sites address the mirror by it"))]
    pub domain_id: String,
    /// Human-readable name published in `index.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,
    /// Where the export bundles are published.
    pub source: S3Location,
    /// Cron schedule of the S3 → volume sync (every 5 minutes by default).
    #[serde(default = "default_sync_schedule")]
    #[schemars(length(min = 1, max = 128), regex(pattern = CRON_PATTERN))]
    pub sync_schedule: String,
    /// Volume holding the export tree.
    #[serde(default)]
    pub storage: MirrorStorage,
    /// Authentication of downstream clients.
    #[serde(default)]
    pub auth: MirrorAuth,
    /// Hourly request budgets per credential; exceeding one answers 429 with `Retry-After`.
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// Export to serve. When omitted: the `latest` link, else the newest export directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"), length(max = 128))]
    pub active_export_id: Option<String>,
    /// Exporter signature check (the runbook's `SIGNATURE__ENABLED`): each sync checks the
    /// served export's `bundle.json.jws`, and the server withholds a `bundle.json` whose
    /// signature does not verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<MirrorSignature>,
    /// Number of mirror server Pods. Pods share the volume read-only, so more than one
    /// needs a `ReadWriteMany` or `ReadOnlyMany`-capable storage class.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 20))]
    pub replicas: i32,
}

fn default_sync_schedule() -> String {
    "*/5 * * * *".to_string()
}

fn default_replicas() -> i32 {
    1
}

/// Volume settings of a mirror.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorStorage {
    /// Requested size (20Gi per domain is the runbook's baseline).
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// Storage class; the cluster default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> Quantity {
    Quantity("20Gi".to_string())
}

impl Default for MirrorStorage {
    fn default() -> Self {
        MirrorStorage {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// The exporter key `bundle.json.jws` must verify against.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorSignature {
    /// Secret key holding the exporter's PEM ECDSA P-256 public key (default key
    /// `cosign.pub`, as `cosign generate-key-pair` names it).
    pub public_key_secret_ref: SecretKeyRef,
}

/// Authentication of a mirror.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.requireAuthentication || has(self.htpasswdSecretRef)").message("auth.htpasswdSecretRef is required when requireAuthentication is true"))]
pub struct MirrorAuth {
    /// Require HTTP Basic credentials for every request.
    #[serde(default = "default_true")]
    pub require_authentication: bool,
    /// Secret key holding an htpasswd file with bcrypt (`htpasswd -B`) entries
    /// (default key `htpasswd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub htpasswd_secret_ref: Option<SecretKeyRef>,
}

fn default_true() -> bool {
    true
}

impl Default for MirrorAuth {
    fn default() -> Self {
        MirrorAuth {
            require_authentication: true,
            htpasswd_secret_ref: None,
        }
    }
}

/// Hourly request budgets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimits {
    /// Requests per hour for `/concelier/exports/index.json`; 0 means unlimited.
    #[serde(default = "default_index_budget")]
    #[schemars(range(min = 0))]
    pub max_index_requests_per_hour: i32,
    /// Requests per hour for manifests and bundles; 0 means unlimited.
    #[serde(default = "default_download_budget")]
    #[schemars(range(min = 0))]
    pub max_download_requests_per_hour: i32,
}

fn default_index_budget() -> i32 {
    600
}

fn default_download_budget() -> i32 {
    1200
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            max_index_requests_per_hour: default_index_budget(),
            max_download_requests_per_hour: default_download_budget(),
        }
    }
}

/// Observed state of a MirrorDomain.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorDomainStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Mirror server Pods ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// When the latest successful sync finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_at: Option<Time>,
    /// Counts of the latest sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<SyncCounts>,
    /// Export being served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_export_id: Option<String>,
    /// In-cluster URL of the mirror's index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `Ready`, `Synced` and `Serving` conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Counts of one sync.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SyncCounts {
    /// Files copied (new or changed size).
    #[serde(default)]
    pub copied: i64,
    /// Extraneous files deleted.
    #[serde(default)]
    pub deleted: i64,
    /// Bytes copied.
    #[serde(default)]
    pub bytes: i64,
}
