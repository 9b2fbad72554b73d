//! `ZastavaPolicy` (cluster-scoped): which images Pods may run.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::NamespacedSecretRef;
use crate::scan::Verdict;

/// Admission policy enforced by Zastava: which images, in which namespaces, must be pinned
/// by digest, signed by given keys, and scanned with an acceptable verdict.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "stella-ops.org",
    version = "v1alpha1",
    doc = "Admission policy enforced by the Zastava webhook on Pods and pod templates.",
    kind = "ZastavaPolicy",
    status = "ZastavaPolicyStatus",
    shortname = "zpol",
    category = "stellaops",
    derive = "PartialEq",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Digest", type_ = "boolean", json_path = ".spec.requireDigest"),
    printcolumn(
        name = "Namespaces",
        type_ = "integer",
        json_path = ".status.matchingNamespaces"
    ),
    printcolumn(
        name = "Violations",
        type_ = "integer",
        json_path = ".status.audit.violations"
    ),
    printcolumn(
        name = "Failure Policy",
        type_ = "string",
        json_path = ".spec.failurePolicy",
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
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ZastavaPolicySpec {
    /// `dryRun` admits and records an audit annotation; `warn` admits with warnings;
    /// `enforce` denies.
    #[serde(default)]
    pub mode: Mode,
    /// Namespaces the policy applies to; all when omitted. The operator's own namespace
    /// and `kube-system` are always excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Image globs the policy applies to (`registry.example.com/**`); all images when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub images: Vec<String>,
    /// Images and namespaces the policy never applies to.
    #[serde(default)]
    pub exemptions: Exemptions,
    /// Require images to be referenced by digest (`@sha256:…`).
    #[serde(default)]
    pub require_digest: bool,
    /// Require a cosign signature by one of the given keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_signature: Option<SignatureRequirement>,
    /// Require a recent scan whose verdict is acceptable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_scan: Option<ScanRequirement>,
    /// What the API server does when the webhook cannot answer. `Ignore` (the default)
    /// keeps the cluster upgradeable while Zastava is unavailable.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Seconds the API server waits for the webhook. The webhook answers within one second
    /// less (half of it when this is 1), whatever its registry and database do.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 30))]
    pub timeout_seconds: i32,
    /// What `enforce` does with an image whose registry or database lookups did not finish
    /// within the answer budget: `deny` (fail closed, the default) or `allow` (admit with a
    /// warning naming what was not checked). `warn` and `dryRun` always admit with a warning.
    #[serde(default)]
    pub on_timeout: OnTimeout,
    /// Runtime audit of the Pods already running in the policy's namespaces (admitted
    /// before the policy existed, or while it was in `dryRun`): evaluated from the operator's
    /// caches every `interval` and on every policy change, without blocking anything.
    #[serde(default)]
    pub audit: AuditSettings,
    /// A ScanPolicy (cluster-scoped) whose rules and thresholds decide the verdicts of the
    /// Scans the audit creates (`audit.createScans`), as a Scan's `spec.policy.policyRef`
    /// does (each waits, `PolicyNotReady`, until it is Ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ref: Option<crate::common::LocalObjectReference>,
}

/// The runtime audit (the Observer) of a policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditSettings {
    /// Audit running Pods at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Time between two passes (`5m`, `1h`); a spec change starts one at once.
    #[serde(default = "default_audit_interval")]
    #[schemars(regex(pattern = r"^([0-9]+h)?([0-9]+m)?$"), length(min = 2, max = 16))]
    pub interval: String,
    /// Create a `Scan` (in the Pod's namespace) for each running image that has no verdict
    /// yet, at most `scanBudget` per pass.
    #[serde(default)]
    pub create_scans: bool,
    /// Most Scans one pass creates.
    #[serde(default = "default_scan_budget")]
    #[schemars(range(min = 0, max = 1000))]
    pub scan_budget: i32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            enabled: true,
            interval: default_audit_interval(),
            create_scans: false,
            scan_budget: default_scan_budget(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_audit_interval() -> String {
    "5m".to_string()
}

fn default_scan_budget() -> i32 {
    10
}

/// What `enforce` does when a check could not be completed in time.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnTimeout {
    /// Deny, saying what could not be checked.
    #[default]
    Deny,
    /// Admit with a warning saying what could not be checked.
    Allow,
}

fn default_timeout_seconds() -> i32 {
    5
}

/// Enforcement mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Admit; record what would have been denied in an audit annotation.
    #[default]
    DryRun,
    /// Admit with warnings shown by `kubectl`.
    Warn,
    /// Deny.
    Enforce,
}

/// Webhook failure policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FailurePolicy {
    /// Admit when the webhook cannot answer.
    #[default]
    Ignore,
    /// Deny when the webhook cannot answer.
    Fail,
}

/// Exemptions of a policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Exemptions {
    /// Image globs never checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub images: Vec<String>,
    /// Namespace globs never checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub namespaces: Vec<String>,
}

/// Signature requirement: keys from a Secret, keyless authorities, or both (a signature
/// any of them accepts is enough).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.publicKeys) || (has(self.keyless) && size(self.keyless) > 0)").message("requireSignature needs publicKeys or keyless"))]
pub struct SignatureRequirement {
    /// Secret holding PEM ECDSA P-256 public keys; a signature by any of them is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_keys: Option<NamespacedSecretRef>,
    /// Keyless (Fulcio/Rekor) authorities: a signature whose short-lived certificate chains
    /// to the authority's trusted root and carries one of its identities is accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub keyless: Vec<KeylessAuthority>,
}

/// A keyless signing authority: a trusted root (Fulcio CAs, Rekor keys) and the identity
/// the signing certificate must carry.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.subject) != has(self.subjectRegExp)").message("set exactly one of subject or subjectRegExp"),
    validation = Rule::new("has(self.issuer) != has(self.issuerRegExp)").message("set exactly one of issuer or issuerRegExp")
)]
pub struct KeylessAuthority {
    /// Subject (the certificate's email or URI SAN), matched exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub subject: Option<String>,
    /// Regular expression (RE2 syntax, anchored at both ends) the subject must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub subject_reg_exp: Option<String>,
    /// OIDC issuer recorded in the certificate (Fulcio extension 1.3.6.1.4.1.57264.1.8 or
    /// .1.1), matched exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub issuer: Option<String>,
    /// Regular expression (anchored at both ends) the OIDC issuer must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub issuer_reg_exp: Option<String>,
    /// Secret key holding a Sigstore `trusted_root.json`
    /// (`application/vnd.dev.sigstore.trustedroot+json;version=0.1`): the Fulcio CA chains
    /// and Rekor keys trusted, so verification needs no network (air-gapped clusters).
    pub trusted_root: TrustedRootRef,
    /// Require a Rekor entry (its signed entry timestamp, verified offline with the trusted
    /// root's log key) and check the certificate at its integrated time. Without it the
    /// certificate must be valid now, which a short-lived Fulcio certificate rarely is.
    #[serde(default = "default_true")]
    pub require_tlog: bool,
    /// Require a certificate transparency SCT embedded in the certificate, signed by one of
    /// the trusted root's `ctlogs` (as Fulcio's certificates carry).
    #[serde(default = "default_true", rename = "requireSCT")]
    pub require_sct: bool,
}

/// A key of a Secret holding a Sigstore trusted root.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct TrustedRootRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret. Defaults to the operator's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Key inside the Secret.
    #[serde(default = "default_trusted_root_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_trusted_root_key() -> String {
    "trusted_root.json".to_string()
}

/// Scan requirement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanRequirement {
    /// Oldest acceptable scan result (`24h`, `168h`).
    #[serde(default = "default_max_age")]
    #[schemars(regex(pattern = r"^([0-9]+h)?([0-9]+m)?$"), length(min = 2, max = 16))]
    pub max_age: String,
    /// Verdicts that deny.
    #[serde(default = "default_deny_on_verdict")]
    #[schemars(length(min = 1, max = 3))]
    pub deny_on_verdict: Vec<Verdict>,
}

fn default_max_age() -> String {
    "168h".to_string()
}

fn default_deny_on_verdict() -> Vec<Verdict> {
    vec![Verdict::Fail]
}

/// Observed state of a ZastavaPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZastavaPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Namespaces the policy currently applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching_namespaces: Option<i32>,
    /// Expiry of the webhook's serving certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_not_after: Option<Time>,
    /// The latest runtime audit of running Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditStatus>,
    /// `Ready` condition: the webhook is configured and serving this policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// What the latest runtime audit found. Each running Pod the policy covers counts once:
/// `violations` if a rule is known broken, else `unscanned` if something could not be known
/// (no scan verdict yet, signature not verified yet, running digest unknown), else
/// `compliant`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditStatus {
    /// When the pass ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_time: Option<Time>,
    /// The policy generation the pass evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Running Pods the policy covers.
    pub pods: i32,
    /// Pods breaking no rule.
    pub compliant: i32,
    /// Pods breaking at least one rule.
    pub violations: i32,
    /// Pods with nothing broken but something not yet known.
    pub unscanned: i32,
    /// Scans this pass created for running images without a verdict.
    #[serde(default)]
    pub scans_requested: i32,
    /// The first violations (at most 20), so `kubectl describe` shows what to fix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<AuditFinding>,
}

/// One broken rule on a running Pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditFinding {
    /// Namespace of the Pod.
    pub namespace: String,
    /// Name of the Pod.
    pub pod: String,
    /// The container's image as it runs.
    pub image: String,
    /// What is wrong.
    pub reason: String,
}
