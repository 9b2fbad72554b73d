//! `FederationSite`: scheduled import or export of signed advisory delta bundles.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{LocalObjectReference, S3Location, SecretKeyRef};
use crate::schedule::CRON_PATTERN;

/// Synchronise canonical advisories with another site: export signed delta bundles since
/// the last cursor, or validate and import the bundles another site dropped.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "stella-ops.org",
    version = "v1alpha1",
    doc = "Scheduled import or export of signed advisory delta bundles with another site.",
    kind = "FederationSite",
    namespaced,
    status = "FederationSiteStatus",
    shortname = "fsite",
    category = "stellaops",
    derive = "PartialEq",
    printcolumn(name = "Site", type_ = "string", json_path = ".spec.siteId"),
    printcolumn(name = "Direction", type_ = "string", json_path = ".spec.direction"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(name = "Last Sync", type_ = "date", json_path = ".status.lastSyncAt"),
    printcolumn(name = "Cursor", type_ = "string", json_path = ".status.lastCursor"),
    printcolumn(name = "Bundles", type_ = "integer", json_path = ".status.bundlesImported", priority = 1),
    printcolumn(name = "Items", type_ = "integer", json_path = ".status.totalItemsImported", priority = 1),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.spec.direction != 'import' || !self.spec.policy.requireSignature || has(self.spec.policy.trustedKeys)").message("spec.policy.trustedKeys is required to import with requireSignature: true").field_path(".spec.policy"),
    validation = Rule::new("self.spec.direction != 'export' || !self.spec.policy.requireSignature || has(self.spec.policy.signingKey)").message("spec.policy.signingKey is required to export with requireSignature: true").field_path(".spec.policy"),
    validation = Rule::new("self.spec.direction == 'import' || !has(self.spec.serve)").message("spec.serve is for import sites: it accepts the bundles the site pushes").field_path(".spec.serve")
)]
#[serde(rename_all = "camelCase")]
pub struct FederationSiteSpec {
    /// For `import`: the remote site whose bundles are accepted (the manifest's site must
    /// match). For `export`: this site's own id, written into every bundle. Immutable.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("siteId is immutable; cursors belong to a site"))]
    pub site_id: String,
    /// Human-readable name shown by `sites list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,
    /// A disabled site neither imports nor exports; its cursor is kept.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Whether this resource imports bundles from the site or exports bundles for it.
    pub direction: Direction,
    /// Where bundles are dropped and picked up.
    pub transport: Transport,
    /// Cron schedule of the sync (hourly by default).
    #[serde(default = "default_schedule")]
    #[schemars(length(min = 1, max = 128), regex(pattern = CRON_PATTERN))]
    pub schedule: String,
    /// Import and export policy.
    #[serde(default)]
    pub policy: FederationPolicy,
    /// Also accept the site's bundles pushed over HTTP: a Deployment and Service in the
    /// platform namespace running `stellaops-worker federation serve` (the seed's
    /// `POST /api/v1/federation/import`), with this site's trusted keys and policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve: Option<ServeSettings>,
}

/// The HTTP endpoint of an import site. `federation serve` never runs without
/// authentication: bearer tokens, client certificates, or both.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.tokensSecret) || has(self.clientCASecret)").message("serve needs tokensSecret or clientCASecret: federation serve does not run without authentication"),
    validation = Rule::new("!has(self.clientCASecret) || has(self.tlsSecret)").message("clientCASecret needs tlsSecret: client certificates are checked over HTTPS only")
)]
pub struct ServeSettings {
    /// Secret whose key (default `tokens`) holds the bearer tokens, one `SITE:TOKEN` per
    /// line (`*:TOKEN` for any site; at least 16 characters each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_secret: Option<SecretKeyRef>,
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`): serve HTTPS with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<LocalObjectReference>,
    /// Secret whose key (default `ca.crt`) holds the PEM CA of accepted client
    /// certificates (each must name its site as the URI SAN `stellaops-site://<site>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "clientCASecret")]
    pub client_ca_secret: Option<SecretKeyRef>,
    /// Server Pods.
    #[serde(default = "default_serve_replicas")]
    #[schemars(range(min = 1, max = 10))]
    pub replicas: i32,
}

fn default_serve_replicas() -> i32 {
    1
}

fn default_true() -> bool {
    true
}

fn default_schedule() -> String {
    "0 * * * *".to_string()
}

/// Direction of a federation sync.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Validate and import bundles from the site.
    Import,
    /// Export delta bundles for the site.
    Export,
}

/// Bundle transport: exactly one of `s3` or `volume`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.s3) != has(self.volume)").message("set exactly one of transport.s3 or transport.volume"))]
pub struct Transport {
    /// Bundles live in an S3 bucket under a prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Location>,
    /// Bundles live on a PersistentVolumeClaim (air-gap drops from removable media).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeTransport>,
}

/// A directory on a PersistentVolumeClaim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeTransport {
    /// The claim, in the same namespace.
    pub claim: LocalObjectReference,
    /// Directory inside the volume.
    #[serde(default = "default_volume_path")]
    #[schemars(regex(pattern = r"^/"), length(max = 1024))]
    pub path: String,
}

fn default_volume_path() -> String {
    "/bundles".to_string()
}

/// Conflict strategy when a remote canonical differs from the local one.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// The remote value wins.
    #[default]
    PreferRemote,
    /// The local value is kept.
    PreferLocal,
    /// The import is aborted on the first conflict; nothing is written.
    Fail,
}

/// Import and export policy of a site.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FederationPolicy {
    /// Bundles larger than this are refused ("Bundle too large").
    #[serde(default = "default_max_bundle_size")]
    #[schemars(range(min = 1024))]
    pub max_bundle_size_bytes: i64,
    /// Advisory sources accepted from the site (`nvd`, `ghsa`, `debian`…); all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub allowed_sources: Vec<String>,
    /// Refuse bundles without a valid DSSE signature (import) or sign every bundle (export).
    #[serde(default = "default_true")]
    pub require_signature: bool,
    /// Secret whose keys hold the PEM ECDSA P-256 public keys trusted for imports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_keys: Option<LocalObjectReference>,
    /// Secret key holding the PEM ECDSA P-256 private key that signs exports (default key
    /// `signing-key.pem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<SecretKeyRef>,
    /// What to do when a remote canonical conflicts with the local one.
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// Most items per exported bundle; larger deltas are split into several bundles.
    #[serde(default = "default_max_items")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_items: i32,
    /// zstd compression level of exported bundles.
    #[serde(default = "default_compression_level")]
    #[schemars(range(min = 1, max = 19))]
    pub compression_level: i32,
}

fn default_max_bundle_size() -> i64 {
    104_857_600
}

fn default_max_items() -> i32 {
    10_000
}

fn default_compression_level() -> i32 {
    3
}

impl Default for FederationPolicy {
    fn default() -> Self {
        FederationPolicy {
            max_bundle_size_bytes: default_max_bundle_size(),
            allowed_sources: Vec::new(),
            require_signature: true,
            trusted_keys: None,
            signing_key: None,
            on_conflict: OnConflict::default(),
            max_items: default_max_items(),
            compression_level: default_compression_level(),
        }
    }
}

/// Observed state of a FederationSite (the seed's sync status).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FederationSiteStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the latest successful sync finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_at: Option<Time>,
    /// Cursor after the latest successful sync (`{ISO-8601}#{seq}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_cursor: Option<String>,
    /// Bundles imported (or exported) so far.
    #[serde(default)]
    pub bundles_imported: i64,
    /// Items imported (or exported) so far.
    #[serde(default)]
    pub total_items_imported: i64,
    /// Seconds between the newest cursor available and the last one synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_lag_seconds: Option<i64>,
    /// Name of the owned CronJob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_job_name: Option<String>,
    /// The sync Job whose result the counters include last (so none is counted twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job: Option<String>,
    /// Why the latest sync failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `Ready`, `Syncing` and `Failed` conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
