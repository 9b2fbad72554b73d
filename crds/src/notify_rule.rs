//! `NotifyRule`: route platform events to Slack, Teams, email and webhooks.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{SecretKeyRef, Severity};

/// Route platform events (scan reports, re-scan deltas, admission denials, imports,
/// releases) to people, with throttling, digests and durable at-most-once delivery.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "stella-ops.org",
    version = "v1alpha1",
    doc = "Route platform events to Slack, Teams, email and webhooks.",
    kind = "NotifyRule",
    namespaced,
    status = "NotifyRuleStatus",
    shortname = "nrule",
    category = "stellaops",
    derive = "PartialEq",
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(name = "Sent", type_ = "integer", json_path = ".status.sent"),
    printcolumn(name = "Throttled", type_ = "integer", json_path = ".status.throttled"),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".status.failed"),
    printcolumn(
        name = "Last Delivery",
        type_ = "date",
        json_path = ".status.lastDeliveryAt",
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
pub struct NotifyRuleSpec {
    /// Which events the rule takes.
    #[serde(rename = "match")]
    pub match_: EventMatch,
    /// Where matching events go. Action names must be unique within the rule.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.name == a.name))").message("action names must be unique within a rule"))]
    pub actions: Vec<NotifyAction>,
    /// A disabled rule delivers nothing; events that arrive meanwhile are not replayed.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_true() -> bool {
    true
}

/// Platform event kinds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum EventKind {
    /// A scan report is ready.
    #[serde(rename = "report.ready")]
    ReportReady,
    /// A scheduled re-evaluation found new findings for an image.
    #[serde(rename = "rescan.delta")]
    RescanDelta,
    /// A running workload container moved to another image digest (with the package diff
    /// of the two stored inventories).
    #[serde(rename = "image.changed")]
    ImageChanged,
    /// Zastava denied or warned about a workload.
    #[serde(rename = "zastava.admission")]
    ZastavaAdmission,
    /// Zastava's runtime audit found a running workload breaking a policy.
    #[serde(rename = "zastava.runtime")]
    ZastavaRuntime,
    /// A federation bundle was imported.
    #[serde(rename = "federation.imported")]
    FederationImported,
    /// A mirror finished a sync.
    #[serde(rename = "mirror.synced")]
    MirrorSynced,
    /// A platform upgrade step completed.
    #[serde(rename = "release.progress")]
    ReleaseProgress,
    /// A platform upgrade failed.
    #[serde(rename = "release.failed")]
    ReleaseFailed,
    /// A platform upgrade was rolled back.
    #[serde(rename = "release.rolledback")]
    ReleaseRolledBack,
}

impl EventKind {
    /// The wire name of the event kind.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ReportReady => "report.ready",
            EventKind::RescanDelta => "rescan.delta",
            EventKind::ImageChanged => "image.changed",
            EventKind::ZastavaAdmission => "zastava.admission",
            EventKind::ZastavaRuntime => "zastava.runtime",
            EventKind::FederationImported => "federation.imported",
            EventKind::MirrorSynced => "mirror.synced",
            EventKind::ReleaseProgress => "release.progress",
            EventKind::ReleaseFailed => "release.failed",
            EventKind::ReleaseRolledBack => "release.rolledback",
        }
    }
}

/// Which events a rule takes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventMatch {
    /// Event kinds to take.
    #[schemars(length(min = 1, max = 8))]
    pub event_kinds: Vec<EventKind>,
    /// Only events whose highest severity is at least this. Events without a severity
    /// (imports, releases) always match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Namespace globs (`prod-*`); all namespaces when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub namespaces: Vec<String>,
    /// VEX handling.
    #[serde(default)]
    pub vex: VexMatch,
}

/// VEX settings of a match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VexMatch {
    /// Also notify about findings a VEX statement marks `not_affected` with an accepted
    /// justification.
    #[serde(default)]
    pub include_accepted_justifications: bool,
}

/// Delivery channel.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Slack incoming webhook; the Secret holds the webhook URL.
    Slack,
    /// Microsoft Teams webhook; the Secret holds the webhook URL.
    Teams,
    /// Email over SMTP with STARTTLS; the Secret holds the server and credentials.
    Email,
    /// Generic JSON webhook signed with `X-StellaOps-Signature`; the Secret holds the URL
    /// and the HMAC key.
    Webhook,
}

/// Coalescing of events into periodic messages.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Digest {
    /// One message per event.
    #[default]
    None,
    /// One message per hour with every event of that hour.
    Hourly,
    /// One message per day.
    Daily,
}

/// One delivery target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.channel != 'email' || self.target.contains('@')").message("an email action needs target set to an email address"),
    validation = Rule::new("!has(self.throttle) || self.digest == 'none'").message("throttle and digest cannot both be set: a digest already sends one message per window")
)]
pub struct NotifyAction {
    /// Name of the action, unique within the rule; part of the idempotency key.
    #[serde(default = "default_action_name")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub name: String,
    /// Delivery channel.
    pub channel: Channel,
    /// Secret holding the webhook URL, SMTP settings or HMAC key. Keys read:
    /// `url` (slack, teams, webhook), `hmacKey` (webhook), `host`, `port`, `username`,
    /// `password`, `from` (email). `key` is ignored.
    pub secret_ref: SecretKeyRef,
    /// Slack channel (`#sec-alerts`), Teams channel name, or email recipient. Empty for webhooks.
    #[serde(default)]
    #[schemars(length(max = 320))]
    pub target: String,
    /// Template: `concise`, `detailed`, or the name of a key in the Secret holding a custom
    /// template.
    #[serde(default = "default_template")]
    #[schemars(length(min = 1, max = 63))]
    pub template: String,
    /// Suppress repeats of the same subject for this long (`5m`, `1h`); repeats are counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"),
        length(min = 2, max = 16)
    )]
    pub throttle: Option<String>,
    /// Coalesce events into one message per window.
    #[serde(default)]
    pub digest: Digest,
}

fn default_action_name() -> String {
    "default".to_string()
}

fn default_template() -> String {
    "concise".to_string()
}

/// Observed state of a NotifyRule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifyRuleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Messages delivered.
    #[serde(default)]
    pub sent: i64,
    /// Repeats suppressed by `throttle`.
    #[serde(default)]
    pub throttled: i64,
    /// Deliveries that failed every retry (dead-lettered).
    #[serde(default)]
    pub failed: i64,
    /// When the latest message was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_at: Option<Time>,
    /// The latest delivery error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `Ready` condition: the rule and its Secrets are valid and a worker runs it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
