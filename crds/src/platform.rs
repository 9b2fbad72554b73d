//! `Platform`: the Stella Ops release running in this namespace, upgraded from signed
//! release manifests.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretKeyRef;

/// `MAJOR.MINOR.PATCH` as release manifests spell versions.
pub const SEMVER_PATTERN: &str = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$";

/// The Stella Ops platform release in this namespace: the operator verifies a signed
/// `release.yaml` and rolls its components out in the safe order, health-gated, with
/// automatic rollback.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "stella-ops.org",
    version = "v1alpha1",
    doc = "The Stella Ops release running in a namespace, upgraded from signed release manifests.",
    kind = "Platform",
    namespaced,
    status = "PlatformStatus",
    shortname = "splat",
    category = "stellaops",
    derive = "PartialEq",
    printcolumn(name = "Channel", type_ = "string", json_path = ".spec.channel"),
    printcolumn(name = "Desired", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "Current", type_ = "string", json_path = ".status.currentVersion"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.step.name"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("!has(self.spec.rollbackTo) || self.spec.rollbackTo != self.spec.version").message("spec.rollbackTo must name a release other than spec.version").field_path(".spec.rollbackTo")
)]
#[serde(rename_all = "camelCase")]
pub struct PlatformSpec {
    /// Release channel the version comes from.
    #[serde(default)]
    pub channel: ReleaseChannel,
    /// Release to run, `MAJOR.MINOR.PATCH`; must equal the manifest's `release.version`.
    #[schemars(regex(pattern = SEMVER_PATTERN), length(max = 32))]
    pub version: String,
    /// Where the signed `release.yaml` comes from.
    pub release_manifest: ReleaseManifestSource,
    /// How the manifest's signature is checked.
    pub verification: Verification,
    /// Upgrade behaviour.
    #[serde(default)]
    pub upgrade: UpgradePolicy,
    /// Roll back on purpose to this earlier release from `status.history`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SEMVER_PATTERN), length(max = 32))]
    pub rollback_to: Option<String>,
}

/// Release channel.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseChannel {
    /// Long-term support: quarterly, 12 months of support.
    Lts,
    /// Monthly roll-ups (the default).
    #[default]
    Stable,
    /// Weekly, no guarantees.
    Edge,
}

/// Source of the release manifest: exactly one of `configMapRef` or `url`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMapRef) != has(self.url)").message("set exactly one of releaseManifest.configMapRef or releaseManifest.url"))]
pub struct ReleaseManifestSource {
    /// ConfigMap in the same namespace holding the manifest and its signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ManifestConfigMapRef>,
    /// HTTPS URL of `release.yaml`; the signature is read from `signatureUrl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https://[^\s]+$"))]
    pub url: Option<String>,
    /// HTTPS URL of the signature; `url` + `.sig` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https://[^\s]+$"))]
    pub signature_url: Option<String>,
}

/// A ConfigMap holding `release.yaml` and its cosign signature.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestConfigMapRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key holding the manifest.
    #[serde(default = "default_manifest_key")]
    pub manifest_key: String,
    /// Key holding the base64 cosign signature of the manifest.
    #[serde(default = "default_signature_key")]
    pub signature_key: String,
}

fn default_manifest_key() -> String {
    "release.yaml".to_string()
}

fn default_signature_key() -> String {
    "release.yaml.sig".to_string()
}

/// Signature verification of release manifests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Secret key holding the PEM ECDSA P-256 release public key (default key `cosign.pub`).
    pub public_key_secret_ref: SecretKeyRef,
}

/// Upgrade behaviour.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradePolicy {
    /// Seconds each component may take to become rolled out and available.
    #[serde(default = "default_health_timeout")]
    #[schemars(range(min = 10, max = 86400))]
    pub health_timeout_seconds: i32,
    /// Roll updated components back, in reverse order, when a health gate fails.
    #[serde(default = "default_true")]
    pub auto_rollback: bool,
    /// Previous releases kept in `status.history`.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 1, max = 50))]
    pub history_limit: i32,
    /// Refuse to upgrade unless a database backup finished within this long (`24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+h)?([0-9]+m)?$"), length(min = 2, max = 16))]
    pub require_backup_within: Option<String>,
    /// Hold between steps; the current step finishes.
    #[serde(default)]
    pub paused: bool,
}

fn default_true() -> bool {
    true
}

fn default_health_timeout() -> i32 {
    600
}

fn default_history_limit() -> i32 {
    10
}

impl Default for UpgradePolicy {
    fn default() -> Self {
        UpgradePolicy {
            health_timeout_seconds: default_health_timeout(),
            auto_rollback: true,
            history_limit: default_history_limit(),
            require_backup_within: None,
            paused: false,
        }
    }
}

/// Observed state of a Platform.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Release every component runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// Channel of the running release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_channel: Option<String>,
    /// `sha256:<hex>` of the verified `release.yaml` of the running release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_digest: Option<String>,
    /// Release being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_version: Option<String>,
    /// Where the rollout is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PlatformPhase>,
    /// The step in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<RolloutStep>,
    /// The upgrade or rollback in progress, recorded so a restarted operator resumes it
    /// exactly where it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// The latest failed rollout. The operator does not retry it until the Platform's
    /// generation changes (a new version, `rollbackTo`, or any other spec edit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<RolloutFailure>,
    /// Rollouts started so far; numbers migration Jobs and event keys.
    #[serde(default)]
    pub attempts: i64,
    /// Every component of the release and its state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,
    /// Earlier releases, newest first, at most `upgrade.historyLimit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ReleaseRecord>,
    /// `Ready`, `Available`, `Progressing`, `Upgradeable` and `ReleaseVerified`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Rollout phase.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PlatformPhase {
    /// Verifying the release manifest and preconditions.
    Verifying,
    /// Rolling components out.
    Progressing,
    /// Held by `upgrade.paused`.
    Paused,
    /// Every component runs the desired release.
    Available,
    /// Rolling updated components back.
    RollingBack,
    /// Rolled back after a failed gate or on request.
    RolledBack,
    /// Stopped; see the conditions for what to do.
    Failed,
}

/// A rollout step.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStep {
    /// Position in the plan, from 0.
    pub index: i32,
    /// `migrate-expand`, a component name, or `migrate-contract`.
    pub name: String,
    /// When the step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
}

/// What an operation does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OperationKind {
    /// Roll the release of `spec.version` out.
    Upgrade,
    /// Put the components a failed upgrade changed back, in reverse order.
    AutoRollback,
    /// Go back on request (`spec.rollbackTo`) to a release from `status.history`.
    RollbackTo,
}

/// An upgrade or rollback in progress.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// What it does.
    pub kind: OperationKind,
    /// Release it moves to.
    pub version: String,
    /// Channel of that release.
    pub channel: String,
    /// Release it moves from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    /// `sha256:<hex>` of the `release.yaml` it rolls out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_digest: Option<String>,
    /// The Platform generation that asked for it.
    pub generation: i64,
    /// Rollout number (`status.attempts` when it started).
    pub attempt: i64,
    /// Ordered steps: `migrate-expand`, component names, `migrate-contract`.
    pub steps: Vec<String>,
    /// When it started.
    pub started_at: Time,
    /// For an automatic rollback: why the upgrade failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// A failed rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutFailure {
    /// Release that failed.
    pub version: String,
    /// Platform generation of the attempt.
    pub generation: i64,
    /// What failed, with the step.
    pub reason: String,
    /// When.
    pub at: Time,
}

/// State of one component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Component name from the release manifest.
    pub name: String,
    /// Image by digest the component runs or is moving to.
    pub image: String,
    /// Image it ran before the operation, restored by a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_image: Option<String>,
    /// Release version of `image`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `Pending`, `Updating`, `Healthy`, `Failed`, `RolledBack`, or `Retained` (not in
    /// the release, left alone).
    pub state: String,
    /// When the state last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
}

/// One earlier release.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRecord {
    /// Release version.
    pub version: String,
    /// Channel it came from.
    pub channel: String,
    /// When it was replaced or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// `sha256:<hex>` of its `release.yaml`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_digest: Option<String>,
    /// `Superseded` (ran, then replaced: a rollback target), `Failed` or `RolledBack`.
    pub state: String,
    /// Why it ended in that state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Image by digest of each component in that release (kept for rollbacks).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub images: std::collections::BTreeMap<String, String>,
}
