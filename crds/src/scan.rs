//! `Scan`: scan one container image and record its SBOM, findings and verdict.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{LocalObjectReference, Scope, Severity};

/// Scan one container image: resolve its digest, inventory its packages into an SBOM,
/// match them against the advisory store and decide a verdict from `policy`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "stella-ops.org",
    version = "v1alpha1",
    doc = "Scan one container image and record its SBOM, findings and verdict.",
    kind = "Scan",
    namespaced,
    status = "ScanStatus",
    shortname = "scn",
    category = "stellaops",
    derive = "PartialEq",
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.verdict"),
    printcolumn(
        name = "Critical",
        type_ = "integer",
        json_path = ".status.findings.critical"
    ),
    printcolumn(name = "High", type_ = "integer", json_path = ".status.findings.high"),
    printcolumn(
        name = "KEV",
        type_ = "integer",
        json_path = ".status.exploitation.kev",
        priority = 1
    ),
    printcolumn(
        name = "Components",
        type_ = "integer",
        json_path = ".status.sbom.components",
        priority = 1
    ),
    printcolumn(
        name = "Digest",
        type_ = "string",
        json_path = ".status.imageDigest",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.image"
)]
#[x_kube(validation = Rule::new("!has(self.pushSecret) || (has(self.attach) && self.attach)").message("pushSecret is used only with attach: true"))]
#[serde(rename_all = "camelCase")]
pub struct ScanSpec {
    /// Image to scan, by tag (`registry/repo:tag`) or by digest (`registry/repo@sha256:…`).
    /// Immutable: create a new Scan to scan another image.
    #[schemars(
        length(min = 1, max = 512),
        regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9._/:@-]*$")
    )]
    #[x_kube(
        validation = Rule::new("!self.contains('@') || self.matches('@sha256:[a-f0-9]{64}$')").message("a digest reference must end in @sha256: and 64 lowercase hex characters"),
        validation = Rule::new("self == oldSelf").message("spec.image is immutable; create a new Scan for another image")
    )]
    pub image: String,

    /// Secrets of type `kubernetes.io/dockerconfigjson` used to pull the image, as on a Pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// Scan again even when a result for the same digest against the same advisory
    /// snapshot already exists.
    #[serde(default)]
    pub force: bool,

    /// SBOM format written to object storage.
    #[serde(default)]
    pub sbom_format: SbomFormat,

    /// Platform to select from a multi-platform image index, as `os/arch[/variant]`.
    #[serde(default = "default_platform")]
    #[schemars(regex(pattern = r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$"))]
    pub platform: String,

    /// How findings become a verdict: inline thresholds, or a ScanPolicy by name.
    #[serde(default)]
    pub policy: InlinePolicy,

    /// Seconds the scan Job may run before it is stopped and the Scan fails.
    #[serde(default = "default_active_deadline_seconds")]
    #[schemars(range(min = 30, max = 86400))]
    pub active_deadline_seconds: i64,

    /// Attach the SBOM (CycloneDX; SPDX too when `sbomFormat` is `spdx-json`) and the signed
    /// verdict statement to the image as OCI 1.1 referrers (the `sha256-<hex>` referrers tag
    /// schema where the registry has no referrers API). Attaching again is a no-op.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attach: bool,

    /// A `kubernetes.io/dockerconfigjson` Secret that may push to the image's repository,
    /// for `attach`; without it the pull secrets are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret: Option<LocalObjectReference>,

    /// Compute resources of the scan container. Defaults to 250m CPU and 512Mi memory
    /// requested, 2Gi memory limit; the worker streams layers, so memory does not grow
    /// with image size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_platform() -> String {
    "linux/amd64".to_string()
}

fn default_active_deadline_seconds() -> i64 {
    600
}

/// SBOM formats the scanner writes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SbomFormat {
    /// CycloneDX 1.6 JSON.
    #[default]
    #[serde(rename = "cyclonedx-json")]
    CyclonedxJson,
    /// SPDX 2.3 JSON.
    #[serde(rename = "spdx-json")]
    SpdxJson,
}

/// How findings map to a verdict: `Fail` when any finding is at or above `failOn`,
/// `Warn` when any is at or above `warnOn`, otherwise `Pass` (the simple form). With
/// `policyRef`, the named ScanPolicy's rules and thresholds decide instead.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.warnOn) || ['critical','high','medium','low'].indexOf(self.warnOn) > ['critical','high','medium','low'].indexOf(self.failOn)").message("warnOn must be less severe than failOn"))]
pub struct InlinePolicy {
    /// Lowest severity that makes the verdict `Fail`.
    #[serde(default = "default_fail_on")]
    pub fail_on: Severity,
    /// Lowest severity that makes the verdict `Warn` (must be below `failOn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_on: Option<Severity>,
    /// Ignore findings that have no fixed version yet.
    #[serde(default)]
    pub ignore_unfixed: bool,
    /// Which components `failOn`/`warnOn` count: `inventory` (all, the default) or
    /// `usage` (those the image's entrypoint uses, from the Usage view).
    #[serde(default, skip_serializing_if = "Scope::is_inventory")]
    pub scope: Scope,
    /// A ScanPolicy (cluster-scoped) whose rules and thresholds decide instead of the
    /// fields above. The Scan waits (`Ready=False`, `PolicyNotReady`) until it is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ref: Option<LocalObjectReference>,
}

fn default_fail_on() -> Severity {
    Severity::Critical
}

impl Default for InlinePolicy {
    fn default() -> Self {
        InlinePolicy {
            fail_on: default_fail_on(),
            warn_on: None,
            ignore_unfixed: false,
            scope: Scope::Inventory,
            policy_ref: None,
        }
    }
}

/// Observed state of a Scan.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the Scan is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ScanPhase>,
    /// Resolved image digest (`sha256:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// Name of the scan Job, while it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Where the SBOM was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<SbomRef>,
    /// The Usage SBOM beside it: the components the image's entrypoint uses
    /// (`components` counts those; `sbom.components` the whole inventory). Absent when
    /// the entrypoint could not be followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<SbomRef>,
    /// Number of findings by severity (the findings themselves are in PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<FindingCounts>,
    /// Outcome of applying `spec.policy` to the findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Digest of the policy the verdict was decided under (for `policyRef`, the
    /// ScanPolicy's `status.policyDigest` at the time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
    /// Counted findings that are known or likely exploited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploitation: Option<Exploitation>,
    /// True when the result was reused from an earlier scan of the same digest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
    /// When the scan Job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the result was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Artifacts attached to the image as OCI referrers (`spec.attach`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attached: Vec<AttachedArtifact>,
    /// `Ready`, `Queued`, `Attached` (with `spec.attach`) conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Life-cycle phase of a Scan.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ScanPhase {
    /// Accepted, not yet started.
    Pending,
    /// Waiting for a free slot under the operator's concurrency limit.
    Queued,
    /// The scan Job is running.
    Running,
    /// A result is recorded.
    Succeeded,
    /// The scan could not complete; see the `Ready` condition.
    Failed,
}

/// Verdict of a Scan.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Verdict {
    /// No finding at or above `warnOn`.
    Pass,
    /// A finding at or above `warnOn`, none at or above `failOn`.
    Warn,
    /// A finding at or above `failOn`.
    Fail,
}

/// An artifact attached to the scanned image as an OCI referrer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttachedArtifact {
    /// Its `artifactType` (`application/vnd.cyclonedx+json`, `application/spdx+json`,
    /// `application/vnd.dsse.envelope.v1+json`).
    pub artifact_type: String,
    /// Digest of the artifact manifest in the image's repository.
    pub digest: String,
    /// Where it is listed: `referrersAPI` or `tagSchema` (the `sha256-<hex>` index).
    pub via: String,
}

/// Location and digest of a stored SBOM.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SbomRef {
    /// Object URI, `s3://bucket/key`.
    pub uri: String,
    /// SHA-256 of the SBOM document, hex.
    pub sha256: String,
    /// Number of components in the SBOM.
    pub components: i64,
}

/// Counted findings (those no VEX statement or rule took out) with exploitation signals.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Exploitation {
    /// In the CISA Known Exploited Vulnerabilities catalog.
    #[serde(default)]
    pub kev: i64,
    /// With an EPSS probability of at least 0.1.
    #[serde(default)]
    pub high_epss: i64,
}

/// Number of findings by severity.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct FindingCounts {
    /// Critical findings.
    #[serde(default)]
    pub critical: i64,
    /// High findings.
    #[serde(default)]
    pub high: i64,
    /// Medium findings.
    #[serde(default)]
    pub medium: i64,
    /// Low findings.
    #[serde(default)]
    pub low: i64,
}
