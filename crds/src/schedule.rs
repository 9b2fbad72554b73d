//! `Schedule`: periodic and advisory-driven re-evaluation of running images.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Severity;

/// Cron expressions: five fields, or one of the `@hourly`-style macros. Time zones go in
/// `timeZone`, never in the expression (as for CronJob).
pub const CRON_PATTERN: &str = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9*/,?LW#A-Za-z-]+( +[0-9*/,?LW#A-Za-z-]+){4})$";

/// Re-evaluate the images actually running in selected Pods, on a cron schedule in a
/// time zone, and whenever a federation import brings advisories that affect them.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "stella-ops.org",
    version = "v1alpha1",
    doc = "Periodic and advisory-driven re-evaluation of the images running in selected Pods.",
    kind = "Schedule",
    namespaced,
    status = "ScheduleStatus",
    shortname = "schd",
    category = "stellaops",
    derive = "PartialEq",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "TimeZone", type_ = "string", json_path = ".spec.timeZone"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Last", type_ = "date", json_path = ".status.lastScheduleTime"),
    printcolumn(
        name = "Next",
        type_ = "string",
        json_path = ".status.nextScheduleTime"
    ),
    printcolumn(
        name = "Selected",
        type_ = "integer",
        json_path = ".status.lastRun.selected",
        priority = 1
    ),
    printcolumn(
        name = "New Findings",
        type_ = "integer",
        json_path = ".status.lastRun.newFindings",
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
pub struct ScheduleSpec {
    /// Cron expression with five fields (minute hour day-of-month month day-of-week), or
    /// `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    #[schemars(length(min = 1, max = 128), regex(pattern = CRON_PATTERN))]
    pub schedule: String,

    /// IANA time zone the schedule is read in (for example `Europe/Sofia`); UTC when omitted.
    /// Runs follow the zone's daylight-saving changes: a time skipped by a spring-forward
    /// runs at the first valid instant after it, a repeated time runs once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z][A-Za-z0-9_+/-]*$"), length(max = 64))]
    pub time_zone: Option<String>,

    /// Stop starting new runs; runs already started finish.
    #[serde(default)]
    pub suspend: bool,

    /// `analysis-only` re-evaluates stored SBOMs against current advisories without pulling;
    /// `content-refresh` creates new forced Scans.
    #[serde(default)]
    pub mode: ScheduleMode,

    /// Which running images a run considers.
    #[serde(default)]
    pub selection: Selection,

    /// Throughput budget of one run.
    #[serde(default)]
    pub limits: RunLimits,

    /// What to do when a run is due while the previous one is still going.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,

    /// A run that could not start within this many seconds of its scheduled time is
    /// counted as missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub starting_deadline_seconds: Option<i64>,

    /// After downtime or suspension: `skip` missed runs, or run `once` for all of them.
    #[serde(default)]
    pub catch_up: CatchUp,

    /// Delay each run by a deterministic offset in [0, jitterSeconds), derived from the
    /// Schedule's namespace and name, so many Schedules do not start at once.
    #[serde(default)]
    #[schemars(range(min = 0, max = 3600))]
    pub jitter_seconds: i32,

    /// Windows outside which no run starts. Empty means any time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub windows: Vec<RunWindow>,

    /// Who is told about new findings.
    #[serde(default)]
    pub notify: ScheduleNotify,

    /// Runs started by events rather than the clock.
    #[serde(default)]
    pub triggers: Triggers,

    /// A ScanPolicy (cluster-scoped) whose rules and thresholds decide the verdicts of this
    /// Schedule's runs, as a Scan's `spec.policy.policyRef` does: each Scan a
    /// `content-refresh` run creates names it (and waits, `PolicyNotReady`, until it is
    /// Ready); an `analysis-only` run decides every selected image's latest result under
    /// it (no run starts, `PolicyNotReady`, until it is Ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ref: Option<crate::common::LocalObjectReference>,

    /// Number of finished runs kept in history.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub history_limit: i32,
}

fn default_history_limit() -> i32 {
    5
}

/// Mode of a run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ScheduleMode {
    /// Re-evaluate stored SBOMs against current advisories; no image is pulled.
    #[default]
    #[serde(rename = "analysis-only")]
    AnalysisOnly,
    /// Create a new forced Scan for every selected image.
    #[serde(rename = "content-refresh")]
    ContentRefresh,
}

/// Selection of the images a run considers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Selection {
    /// Namespaces whose Pods are considered; all namespaces when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Pods considered within the selected namespaces; all Pods when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Image globs (`*` matches within a path segment, `**` across segments); all images
    /// when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub images: Vec<String>,
    /// Extra conditions on each selected image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_if: Option<OnlyIf>,
}

/// Conditions an image must meet to be selected.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnlyIf {
    /// Only images whose latest report is older than this many days (or that have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3650))]
    pub last_report_older_than_days: Option<i32>,
}

/// Throughput budget of one run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunLimits {
    /// Most images a run evaluates or scans; the rest are counted as skipped.
    #[serde(default = "default_max_scans")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_scans: i32,
    /// Most evaluations or Scans started per second.
    #[serde(default = "default_rate_per_second")]
    #[schemars(range(min = 1, max = 10000))]
    pub rate_per_second: i32,
}

fn default_max_scans() -> i32 {
    5000
}

fn default_rate_per_second() -> i32 {
    50
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            max_scans: default_max_scans(),
            rate_per_second: default_rate_per_second(),
        }
    }
}

/// Concurrency policy, as for CronJob.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Start the new run alongside the old one.
    Allow,
    /// Skip the new run while the old one is active.
    #[default]
    Forbid,
    /// Stop the old run and start the new one.
    Replace,
}

/// Catch-up policy for runs missed while the operator was down or the Schedule suspended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Forget missed runs; wait for the next scheduled time.
    Skip,
    /// Run once for all missed runs (within `startingDeadlineSeconds`, when set).
    #[default]
    Once,
}

/// A recurring window in which runs may start.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunWindow {
    /// Local start time of the window, `HH:MM` (24-hour).
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    /// Length of the window, such as `4h` or `90m` (at most 24h).
    #[schemars(regex(pattern = r"^([0-9]+h)?([0-9]+m)?$"), length(min = 2, max = 8))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s') && duration(self) <= duration('24h')").message("duration must be more than 0 and at most 24h"))]
    pub duration: String,
    /// Days on which the window opens; every day when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    pub days: Vec<Weekday>,
    /// IANA time zone of `start`; the Schedule's `timeZone` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z][A-Za-z0-9_+/-]*$"), length(max = 64))]
    pub time_zone: Option<String>,
}

/// Day of the week.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

/// Notification settings of a Schedule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleNotify {
    /// Emit a `rescan.delta` event for each image with new findings.
    #[serde(default)]
    pub on_new_findings: bool,
    /// Only findings at or above this severity count as new findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
}

/// Event-driven triggers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Triggers {
    /// After a federation import, re-evaluate only the images the changed advisories affect.
    #[serde(default)]
    pub on_advisory_delta: bool,
}

/// Observed state of a Schedule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Scheduled time of the latest run that started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the next run is due (after jitter and windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// When the latest run finished successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// Counts of the latest run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
    /// Identifiers of runs in progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// `Ready` and `Running` conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Counts of one run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Run identifier (also the label on what the run created).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// `cron` or `advisory-delta`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trigger: String,
    /// Images that matched the selection.
    #[serde(default)]
    pub selected: i64,
    /// Evaluations or Scans created.
    #[serde(default)]
    pub created: i64,
    /// Images left out by `onlyIf` or the limits (counted, never dropped silently).
    #[serde(default)]
    pub skipped: i64,
    /// Images with new findings at or above `notify.minSeverity`.
    #[serde(default)]
    pub new_findings: i64,
}
