//! `ScanPolicy` (cluster-scoped): the decider's rules (high-level architecture §4.3).
//! Ordered rules with matchers and actions, plus the severity thresholds; Scans,
//! Schedules and ZastavaPolicies name one with `policyRef`. The shape maps one to one
//! onto the evaluator's rules in `stellaops-policy` (the controller converts it; the
//! workers receive the converted rules): there is one evaluator, not one per caller.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Severity;

/// How findings become a verdict, for every Scan, Schedule and ZastavaPolicy that names it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "stella-ops.org",
    version = "v1alpha1",
    doc = "Rules that decide the verdict of a scan: waivers, escalations, required VEX statements.",
    kind = "ScanPolicy",
    plural = "scanpolicies",
    status = "ScanPolicyStatus",
    shortname = "spol",
    category = "stellaops",
    derive = "PartialEq",
    printcolumn(name = "Rules", type_ = "integer", json_path = ".status.rules"),
    printcolumn(name = "Fail On", type_ = "string", json_path = ".spec.failOn"),
    printcolumn(name = "Next Expiry", type_ = "date", json_path = ".status.nextExpiry"),
    printcolumn(
        name = "Digest",
        type_ = "string",
        json_path = ".status.policyDigest",
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
#[x_kube(validation = Rule::new("!has(self.warnOn) || ['critical','high','medium','low'].indexOf(self.warnOn) > ['critical','high','medium','low'].indexOf(self.failOn)").message("warnOn must be less severe than failOn"))]
pub struct ScanPolicySpec {
    /// Rules in order. For each finding the first rule whose `match` holds decides;
    /// `escalate` raises the finding's severity and the next rules are tried. A finding no
    /// rule decides is judged by the thresholds below. A `not_affected` or `fixed` VEX
    /// consensus takes a finding out before any rule. Names must be unique: they are what
    /// `explain` shows as the decider.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.name == a.name))").message("rule names must be unique within a policy"))]
    pub rules: Vec<PolicyRule>,
    /// Lowest severity that makes the verdict `Fail` when no rule decides.
    #[serde(default = "default_fail_on")]
    pub fail_on: Severity,
    /// Lowest severity that makes the verdict `Warn` when no rule decides (below `failOn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_on: Option<Severity>,
    /// Findings without a fixed version do not count by threshold (rules still apply).
    #[serde(default)]
    pub ignore_unfixed: bool,
    /// Which components the thresholds count: `inventory` (all, the default) or `usage`
    /// (those the image's entrypoint uses, from the Usage view).
    #[serde(default, skip_serializing_if = "crate::common::Scope::is_inventory")]
    pub scope: crate::common::Scope,
    /// How the VEX consensus believes providers under this policy: their weights and the
    /// justifications a `not_affected` must carry to count. Not given: every provider
    /// weighs 1 and every justification is accepted. Part of the policy digest, so a change
    /// re-evaluates the verdicts decided under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vex: Option<VexSettings>,
    /// License rules, in order. For each component whose declared license is known (an
    /// SPDX expression from its package metadata) the first rule in scope whose `ids` hit
    /// the license decides: `deny` fails the verdict, `warn` makes it at least `Warn`. An
    /// `OR` expression is hit only when every alternative is, an `AND` expression when any
    /// part is. A component whose license is not known never matches a rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.name == a.name))").message("license rule names must be unique within a policy"))]
    pub licenses: Vec<LicenseRule>,
}

/// A license rule: deny or warn by SPDX license id.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.ids.all(i, i.matches('^[A-Za-z0-9.+:*-]+( WITH [A-Za-z0-9.+:*-]+)?$'))").message("ids must be SPDX license ids (`MIT`, `GPL-3.0-only`, `LicenseRef-x`), optionally with `WITH exception`, and may use * as a wildcard")
)]
pub struct LicenseRule {
    /// Name, shown as what decided a component (`license:<name>`).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$")
    )]
    pub name: String,
    /// `deny` (fails the verdict) or `warn`.
    pub action: LicenseAction,
    /// SPDX license ids the rule is about; `*` matches any run of characters
    /// (`GPL-3.0*`, `AGPL-*`). Matched case-insensitively against each license id of the
    /// expression, and against a whole `id WITH exception` term.
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 128)))]
    pub ids: Vec<String>,
    /// Namespace globs of the Scan or workload (none: every namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub namespaces: Vec<String>,
    /// Image repository globs (none: every image).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub images: Vec<String>,
    /// Package URL globs (matched without qualifiers, `pkg:npm/left-pad@*`) the rule
    /// leaves alone: a vetted exception.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub except_packages: Vec<String>,
}

/// What a license rule does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LicenseAction {
    /// The component fails the verdict.
    Deny,
    /// The component makes the verdict at least `Warn`.
    Warn,
}

/// The VEX consensus's trust under a policy (docs/vex.md, "Consensus").
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VexSettings {
    /// Weights of named providers (the `--provider` a document was ingested with). The
    /// statuses' summed weights decide; a provider of weight 0 is not counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.name == a.name))").message("VEX provider names must be unique within a policy"))]
    pub providers: Vec<VexProviderWeight>,
    /// Weight of a provider not listed in `providers` (default 1; 0: only listed
    /// providers count).
    #[serde(default = "default_vex_weight")]
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub default_weight: f64,
    /// Justifications a `not_affected` statement must carry to count (not given: all
    /// five). A `not_affected` without one of these is kept in the decision, not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 5))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b == a))").message("accepted justifications must be unique"))]
    pub accepted_justifications: Option<Vec<VexJustification>>,
}

fn default_vex_weight() -> f64 {
    1.0
}

/// One provider's weight.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VexProviderWeight {
    /// The provider's name, as given to `vex ingest --provider`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its weight (0: its statements are not counted).
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub weight: f64,
}

/// A VEX `not_affected` justification (the OpenVEX/CSAF set; CycloneDX's are mapped onto
/// it at ingest).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VexJustification {
    /// The vulnerable component is not in the product.
    ComponentNotPresent,
    /// The component is present but not its vulnerable code.
    VulnerableCodeNotPresent,
    /// The vulnerable code is present but never executed.
    VulnerableCodeNotInExecutePath,
    /// The vulnerable code cannot be reached by an attacker's input.
    VulnerableCodeCannotBeControlledByAdversary,
    /// Mitigations in the product prevent exploitation.
    InlineMitigationsAlreadyExist,
}

impl VexJustification {
    /// The justification as VEX documents write it.
    pub fn as_str(self) -> &'static str {
        match self {
            VexJustification::ComponentNotPresent => "component_not_present",
            VexJustification::VulnerableCodeNotPresent => "vulnerable_code_not_present",
            VexJustification::VulnerableCodeNotInExecutePath => {
                "vulnerable_code_not_in_execute_path"
            }
            VexJustification::VulnerableCodeCannotBeControlledByAdversary => {
                "vulnerable_code_cannot_be_controlled_by_adversary"
            }
            VexJustification::InlineMitigationsAlreadyExist => "inline_mitigations_already_exist",
        }
    }
}

fn default_fail_on() -> Severity {
    Severity::Critical
}

/// One rule: when every given matcher holds, the action applies.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.action != 'ignore' || has(self.justification)").message("an ignore rule needs a justification: why the finding does not matter, for whoever reads the verdict"),
    validation = Rule::new("self.action == 'ignore' || !has(self.until)").message("until applies to ignore rules only"),
    validation = Rule::new("self.action != 'escalate' || has(self.escalateTo)").message("an escalate rule needs escalateTo"),
    validation = Rule::new("self.action == 'escalate' || !has(self.escalateTo)").message("escalateTo applies to escalate rules only"),
    validation = Rule::new("self.action == 'requireVex' || (!has(self.vendors) && !has(self.vexJustifications))").message("vendors and vexJustifications apply to requireVex rules only")
)]
pub struct PolicyRule {
    /// Name, shown as what decided a finding (`rule:<name>`).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$")
    )]
    pub name: String,
    /// When the rule applies: every given matcher must hold (none given: always).
    #[serde(default, rename = "match")]
    pub matchers: RuleMatch,
    /// What the rule does.
    pub action: RuleAction,
    /// `ignore`: the waiver's expiry (RFC 3339). From then on the rule no longer applies
    /// and the findings it waived count again, without anyone touching the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Time>,
    /// `ignore`: why (required for `ignore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub justification: Option<String>,
    /// `escalate`: the severity the finding is raised to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate_to: Option<Severity>,
    /// `requireVex`: VEX providers whose `not_affected` statement counts (any when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub vendors: Option<Vec<String>>,
    /// `requireVex`: justifications accepted (any when empty), e.g.
    /// `vulnerable_code_not_in_execute_path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub vex_justifications: Option<Vec<String>>,
}

/// What a rule does with a finding it matches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RuleAction {
    /// The finding does not count (until `until`, with a `justification`).
    Ignore,
    /// The finding makes the verdict at least `Warn`.
    Warn,
    /// The finding makes the verdict `Fail`.
    Fail,
    /// Decision put off: the finding warns, never fails.
    Defer,
    /// The finding fails unless one of `vendors` says `not_affected` (with one of
    /// `vexJustifications`).
    RequireVex,
    /// The finding's severity becomes `escalateTo`; later rules and the thresholds go on.
    Escalate,
}

/// Matchers of a rule. Globs take `*` for any run of characters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleMatch {
    /// Namespace globs of the Scan or workload (never match a cluster-wide evaluation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub namespaces: Vec<String>,
    /// Image repository globs (`registry.example.com/shop/*`; no tag or digest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub images: Vec<String>,
    /// Package URL globs, matched without qualifiers (`pkg:npm/minimist@*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub purls: Vec<String>,
    /// Vulnerability ids; an alias of the advisory matches too (`CVE-2024-3094`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub vulnerabilities: Vec<String>,
    /// Advisory sources (`osv`, `debian`, `ghsa`, …): any source of the advisory listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub sources: Vec<String>,
    /// Severities (after earlier escalations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub severities: Vec<Severity>,
    /// Layer digests (`sha256:…`) the component was found in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub layer_digests: Vec<String>,
    /// Whether the image's entrypoint uses the component. Not known until the Usage view
    /// (EntryTrace) is recorded: until then a rule with this matcher never applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_by_entrypoint: Option<bool>,
    /// Whether the vulnerability is in the CISA KEV catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kev: Option<bool>,
    /// EPSS probability at least this (0–1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub epss_at_least: Option<f64>,
    /// Whether a fixed version exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_available: Option<bool>,
}

/// Observed state of a ScanPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `sha256:` of the policy's canonical form (the evaluator's rules and thresholds as
    /// JSON with sorted keys): what every verdict decided under it records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
    /// Number of rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<i32>,
    /// The earliest `until` of a waiver still in force: stored verdicts are evaluated
    /// again then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_expiry: Option<Time>,
    /// The last re-evaluation of the results decided under this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reevaluation: Option<Reevaluation>,
    /// `Ready` (the policy is valid and in use) and `Accepted` conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A re-evaluation the controller started.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reevaluation {
    /// The Job (platform namespace) that runs it.
    pub job: String,
    /// Why: `PolicyChanged` or `WaiverExpired`.
    pub reason: String,
    /// The policy digest it evaluates under.
    pub policy_digest: String,
    /// When it was started.
    pub started_at: Time,
}
