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
    printcolumn(name = "Preset", type_ = "string", json_path = ".spec.preset"),
    printcolumn(
        name = "In Force",
        type_ = "string",
        json_path = ".status.rollout.mode"
    ),
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
#[x_kube(
    validation = Rule::new("!has(self.preset) || !(self.preset in ['signed', 'strict']) || has(self.requireSignature)").message("presets signed and strict need requireSignature (the keys or keyless authorities to trust)"),
    validation = Rule::new("!has(self.stage) || !has(self.audit) || !has(self.audit.enabled) || self.audit.enabled").message("stage needs audit.enabled: the runtime audit is the evidence for each promotion"),
    validation = Rule::new("!has(self.requireAttestations) || size(self.requireAttestations) == 0 || has(self.requireSignature)").message("requireAttestations needs requireSignature: its keys and keyless authorities are the ones trusted to sign attestations")
)]
#[serde(rename_all = "camelCase")]
pub struct ZastavaPolicySpec {
    /// `dryRun` admits and records an audit annotation; `warn` admits with warnings;
    /// `enforce` denies. With `stage`, the mode the rollout starts from.
    #[serde(default)]
    pub mode: Mode,
    /// A documented bundle of requirements the policy starts from (docs/zastava.md,
    /// "Presets"): `baseline` (images by digest), `scanned` (baseline and a scan within
    /// 168h whose verdict is not Fail), `signed` (baseline and a signature by
    /// `requireSignature`'s authorities), `strict` (signed, and a scan within 24h whose
    /// verdict is neither Fail nor Warn; `onTimeout: deny`). Fields set here only add to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// Staged rollout: from `mode`, move on its own `dryRun → warn → enforce` (up to
    /// `until`) each time the runtime audit has found no violating or unscanned Pod for
    /// `cleanPeriod`; `status.rollout` records the mode in force and each promotion with
    /// its evidence. Editing `mode` starts over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<StageSettings>,
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
    /// Require signed in-toto attestations of the image (DSSE envelopes stored as cosign
    /// `.att` layers or OCI referrers; those inside Sigstore bundles are not verified yet),
    /// each signed by the authorities of `requireSignature` and, optionally, with a
    /// predicate meeting CEL conditions. All of them must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub require_attestations: Vec<AttestationRequirement>,
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
    /// does (each waits, `PolicyNotReady`, until it is Ready); `requireScan` then counts
    /// only a verdict decided under its current digest (none while it is not Ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ref: Option<crate::common::LocalObjectReference>,
}

/// A preset of requirements.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Preset {
    /// Images by digest.
    Baseline,
    /// Baseline, and a recent scan whose verdict is not Fail.
    Scanned,
    /// Baseline, and a signature by `requireSignature`'s authorities.
    Signed,
    /// Signed and scanned, Warn denied too, scans within 24h, `onTimeout: deny`.
    Strict,
}

/// How a staged rollout advances.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageSettings {
    /// Time without a violating or unscanned Pod in the runtime audit before the next
    /// mode (`24h`, `90m`); also the least time spent in each mode.
    #[serde(default = "default_clean_period")]
    #[schemars(regex(pattern = r"^([0-9]+h)?([0-9]+m)?$"), length(min = 2, max = 16))]
    pub clean_period: String,
    /// The last mode the rollout moves to.
    #[serde(default = "default_stage_until")]
    pub until: Mode,
}

fn default_clean_period() -> String {
    "24h".to_string()
}

fn default_stage_until() -> Mode {
    Mode::Enforce
}

impl Mode {
    /// The next, stricter mode (`None` from `enforce`).
    pub fn next(self) -> Option<Mode> {
        match self {
            Mode::DryRun => Some(Mode::Warn),
            Mode::Warn => Some(Mode::Enforce),
            Mode::Enforce => None,
        }
    }
}

impl ZastavaPolicySpec {
    /// The spec with its `preset` applied: the preset's requirements, plus whatever the
    /// spec asks on top (a preset never loosens an explicit setting).
    pub fn with_preset(&self) -> ZastavaPolicySpec {
        let mut spec = self.clone();
        let Some(preset) = self.preset else {
            return spec;
        };
        spec.require_digest = true;
        let scan = |max_age: &str, deny: Vec<Verdict>| ScanRequirement {
            max_age: max_age.to_string(),
            deny_on_verdict: deny,
        };
        match preset {
            Preset::Baseline | Preset::Signed => {}
            Preset::Scanned => {
                if spec.require_scan.is_none() {
                    spec.require_scan = Some(scan("168h", vec![Verdict::Fail]));
                }
            }
            Preset::Strict => {
                spec.require_scan = Some(match spec.require_scan.take() {
                    None => scan("24h", vec![Verdict::Fail, Verdict::Warn]),
                    Some(mut own) => {
                        for verdict in [Verdict::Fail, Verdict::Warn] {
                            if !own.deny_on_verdict.contains(&verdict) {
                                own.deny_on_verdict.push(verdict);
                            }
                        }
                        own
                    }
                });
                spec.on_timeout = OnTimeout::Deny;
            }
        }
        spec
    }
}

impl ZastavaPolicy {
    /// The mode in force: the staged rollout's while it follows the current `spec.mode`,
    /// else `spec.mode`.
    pub fn effective_mode(&self) -> Mode {
        match (
            &self.spec.stage,
            self.status.as_ref().and_then(|s| s.rollout.as_ref()),
        ) {
            (Some(_), Some(rollout)) if rollout.started_from == self.spec.mode => rollout.mode,
            _ => self.spec.mode,
        }
    }
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
#[x_kube(
    validation = Rule::new("has(self.publicKeys) || (has(self.keyless) && size(self.keyless) > 0)").message("requireSignature needs publicKeys or keyless"),
    validation = Rule::new("!has(self.publicKeysTlog) || has(self.publicKeys)").message("publicKeysTlog needs publicKeys: it says where the keys' signatures must be logged")
)]
pub struct SignatureRequirement {
    /// Secret holding PEM public keys (ECDSA P-256/P-384/P-521, RSA 2048–4096 bits, Ed25519;
    /// `PUBLIC KEY` or `RSA PUBLIC KEY` blocks, several per value); a signature by any of
    /// them is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_keys: Option<NamespacedSecretRef>,
    /// Require every signature by `publicKeys` to be recorded in a Rekor transparency log
    /// of this trusted root, as `cosign verify --key` does by default: the entry cosign
    /// stores beside the signature (a `hashedrekord`, or an attestation's `dsse`/`intoto`,
    /// recording this payload, signature and public key) with its signed entry timestamp by
    /// one of the root's `tlogs`, or a keyed Sigstore bundle's log entries. A key used
    /// outside the log (stolen, or by a careless pipeline) then signs nothing admitted.
    /// Without it the log entries of keyed signatures are not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_keys_tlog: Option<KeyedTlog>,
    /// Keyless (Fulcio/Rekor) authorities: a signature whose short-lived certificate chains
    /// to the authority's trusted root and carries one of its identities is accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub keyless: Vec<KeylessAuthority>,
    /// Require the image itself to carry a signature by these authorities. `false`: they
    /// only sign the attestations `requireAttestations` asks for (the presets `signed` and
    /// `strict` require the image signature all the same).
    #[serde(default = "default_true")]
    pub image_signature: bool,
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
    /// Require an RFC 3161 timestamp of the signature by one of the trusted root's
    /// `timestampAuthorities` (cosign's `--timestamp-server-url`; a bundle's
    /// `timestampVerificationData`) and check the certificate at its time. A timestamp
    /// that is present is verified either way; with `requireTlog: false` it is what lets a
    /// short-lived certificate be checked at signing time where no Rekor log is used.
    #[serde(default)]
    pub require_timestamp: bool,
    /// Values the certificate's Fulcio extensions must hold (the source repository, its
    /// ref, the runner environment, the build trigger, …), each exactly; as cosign's
    /// `--certificate-github-workflow-*` flags and sigstore's extension policies check them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_extensions: Option<CertificateExtensions>,
}

/// A required attestation: an in-toto Statement about the image's digest, of one predicate
/// type, signed by the policy's authorities, whose predicate meets every condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttestationRequirement {
    /// A name for messages (defaults to the predicate type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub name: Option<String>,
    /// The predicate type: a full URI, or one of the short names `slsaprovenance1`
    /// (https://slsa.dev/provenance/v1), `slsaprovenance02` (https://slsa.dev/provenance/v0.2),
    /// `cyclonedx` (https://cyclonedx.org/bom), `spdx` (https://spdx.dev/Document),
    /// `spdxjson` (https://spdx.dev/Document, as cosign names it), `vuln`
    /// (https://cosign.sigstore.dev/attestation/vuln/v1), `verdict` (Stella Ops' signed scan
    /// verdict, https://stella-ops.org/attestations/scan-verdict/v1).
    #[schemars(
        length(min = 1, max = 512),
        regex(
            pattern = r"^(slsaprovenance1|slsaprovenance02|cyclonedx|spdx|spdxjson|vuln|verdict|[a-zA-Z][a-zA-Z0-9+.-]*://\S+)$"
        )
    )]
    pub predicate_type: String,
    /// Which of `requireSignature`'s authorities may have signed it: `any` (its keys and
    /// keyless authorities), `keys` (only its public keys) or `keyless` (only its keyless
    /// authorities).
    #[serde(default)]
    pub signed_by: AttestationSigners,
    /// CEL expressions over the attestation, each of which must be `true`: `predicate`
    /// is the Statement's predicate (JSON), `predicateType` its type and `subject` its
    /// subjects. Compiled when the policy is loaded (a broken one makes the policy not
    /// Ready); an evaluation error counts as a failed condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub conditions: Vec<AttestationCondition>,
}

/// Which authorities may sign an attestation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AttestationSigners {
    /// Any key or keyless authority of `requireSignature`.
    #[default]
    Any,
    /// Only `requireSignature.publicKeys`.
    Keys,
    /// Only `requireSignature.keyless`.
    Keyless,
}

/// One CEL condition on an attestation's predicate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttestationCondition {
    /// A CEL expression yielding a bool, such as
    /// `predicate.runDetails.builder.id.startsWith("https://github.com/")`.
    #[schemars(length(min = 1, max = 1024))]
    pub expression: String,
    /// What the condition means, for denial messages (defaults to the expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub message: Option<String>,
}

/// What Fulcio certifies about the build that signed, from the CI system's OIDC token
/// (its certificate extensions; fulcio/docs/oid-info.md): each value set must be the
/// certificate's exactly.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct CertificateExtensions {
    /// `1.3.6.1.4.1.57264.1.9`: the workflow that signed (for GitHub, the workflow file at a ref).
    #[serde(
        rename = "buildSignerURI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub build_signer_uri: Option<String>,
    /// `1.3.6.1.4.1.57264.1.10`: the commit of that workflow.
    #[serde(
        rename = "buildSignerDigest",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub build_signer_digest: Option<String>,
    /// `1.3.6.1.4.1.57264.1.11`: where the build ran: `github-hosted` or `self-hosted`.
    #[serde(
        rename = "runnerEnvironment",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub runner_environment: Option<String>,
    /// `1.3.6.1.4.1.57264.1.12`: the source repository (`https://github.com/org/repo`).
    #[serde(
        rename = "sourceRepositoryURI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub source_repository_uri: Option<String>,
    /// `1.3.6.1.4.1.57264.1.13`: the source commit.
    #[serde(
        rename = "sourceRepositoryDigest",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub source_repository_digest: Option<String>,
    /// `1.3.6.1.4.1.57264.1.14`: the source ref (`refs/heads/main`, `refs/tags/v1.2.3`).
    #[serde(
        rename = "sourceRepositoryRef",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub source_repository_ref: Option<String>,
    /// `1.3.6.1.4.1.57264.1.15`: the repository's immutable ID.
    #[serde(
        rename = "sourceRepositoryIdentifier",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub source_repository_identifier: Option<String>,
    /// `1.3.6.1.4.1.57264.1.16`: the repository owner (`https://github.com/org`).
    #[serde(
        rename = "sourceRepositoryOwnerURI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub source_repository_owner_uri: Option<String>,
    /// `1.3.6.1.4.1.57264.1.17`: the owner's immutable ID.
    #[serde(
        rename = "sourceRepositoryOwnerIdentifier",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub source_repository_owner_identifier: Option<String>,
    /// `1.3.6.1.4.1.57264.1.18`: the build instructions (the top-level workflow at a ref).
    #[serde(
        rename = "buildConfigURI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub build_config_uri: Option<String>,
    /// `1.3.6.1.4.1.57264.1.19`: the commit of the build instructions.
    #[serde(
        rename = "buildConfigDigest",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub build_config_digest: Option<String>,
    /// `1.3.6.1.4.1.57264.1.20`: what started the build (`push`, `release`, `workflow_dispatch`).
    #[serde(
        rename = "buildTrigger",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub build_trigger: Option<String>,
    /// `1.3.6.1.4.1.57264.1.21`: the run (`https://github.com/org/repo/actions/runs/…`).
    #[serde(
        rename = "runInvocationURI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub run_invocation_uri: Option<String>,
    /// `1.3.6.1.4.1.57264.1.22`: `public` or `private` when signed.
    #[serde(
        rename = "sourceRepositoryVisibilityAtSigning",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub source_repository_visibility_at_signing: Option<String>,
    /// `1.3.6.1.4.1.57264.1.2` (Fulcio's first GitHub extension, raw bytes; what cosign's
    /// `--certificate-github-workflow-*` flags check): the event that started the workflow (`push`).
    #[serde(
        rename = "githubWorkflowTrigger",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub github_workflow_trigger: Option<String>,
    /// `1.3.6.1.4.1.57264.1.3` (Fulcio's first GitHub extension, raw bytes; what cosign's
    /// `--certificate-github-workflow-*` flags check): the commit the workflow ran on.
    #[serde(
        rename = "githubWorkflowSHA",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub github_workflow_sha: Option<String>,
    /// `1.3.6.1.4.1.57264.1.4` (Fulcio's first GitHub extension, raw bytes; what cosign's
    /// `--certificate-github-workflow-*` flags check): the workflow's name.
    #[serde(
        rename = "githubWorkflowName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub github_workflow_name: Option<String>,
    /// `1.3.6.1.4.1.57264.1.5` (Fulcio's first GitHub extension, raw bytes; what cosign's
    /// `--certificate-github-workflow-*` flags check): the repository (`org/repo`).
    #[serde(
        rename = "githubWorkflowRepository",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub github_workflow_repository: Option<String>,
    /// `1.3.6.1.4.1.57264.1.6` (Fulcio's first GitHub extension, raw bytes; what cosign's
    /// `--certificate-github-workflow-*` flags check): the ref (`refs/heads/main`).
    #[serde(
        rename = "githubWorkflowRef",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 1024))]
    pub github_workflow_ref: Option<String>,
}

/// Where keyed signatures must be logged.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyedTlog {
    /// Secret key holding a Sigstore `trusted_root.json` whose `tlogs` (Rekor keys) are
    /// trusted; its Fulcio CAs are not used here.
    pub trusted_root: TrustedRootRef,
    /// Also require the log entry of attestations signed by the keys (`cosign attest
    /// --key` logs them). `false` for attestations made offline by a key that also signs
    /// images, such as the platform's own signed scan verdicts (`scan --attach`).
    #[serde(default = "default_true")]
    pub attestations: bool,
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
    /// Where the staged rollout (`spec.stage`) stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// The keys of `requireSignature.publicKeys` the webhook trusts for this policy, as
    /// last compiled (empty for a keyless-only policy, and while the policy is not Ready);
    /// a change while Ready is also an Event (`TrustedKeysChanged`).
    #[serde(default)]
    pub trusted_keys: Vec<TrustedKeyStatus>,
    /// The Sigstore trusted roots the webhook verifies with for this policy (each keyless
    /// authority's, `publicKeysTlog`'s), as last compiled (empty while not Ready); a change
    /// while Ready — a root rotated in its Secret — is also an Event (`TrustedRootsChanged`).
    #[serde(default)]
    pub trusted_roots: Vec<TrustedRootStatus>,
    /// `Ready` condition: the webhook is configured and serving this policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A key a policy trusts, as people compare keys.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustedKeyStatus {
    /// First 16 hex digits of the SHA-256 of the key's DER SubjectPublicKeyInfo
    /// (`openssl pkey -pubin -outform DER | sha256sum`).
    pub fingerprint: String,
    /// `ECDSA P-256`, `ECDSA P-384`, `ECDSA P-521`, `RSA-<bits>` or `Ed25519`.
    pub algorithm: String,
}

/// A trusted root a policy verifies with, and what it holds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustedRootStatus {
    /// What uses it: `keyless authority 1`, `publicKeysTlog`.
    pub used_by: String,
    /// First 16 hex digits of the SHA-256 of the `trusted_root.json` document.
    pub fingerprint: String,
    /// Fulcio certificate authorities it lists.
    pub certificate_authorities: i32,
    /// Rekor logs it lists with a key the webhook verifies (ECDSA, Ed25519).
    pub tlogs: i32,
    /// Certificate transparency logs it lists with such a key.
    pub ctlogs: i32,
    /// RFC 3161 timestamp authorities it lists.
    pub timestamp_authorities: i32,
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

/// A staged rollout's state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The mode in force (what the webhook applies).
    pub mode: Mode,
    /// The `spec.mode` this rollout started from (a different one starts over).
    pub started_from: Mode,
    /// When `mode` came into force.
    pub since: Time,
    /// Start of the current run of clean audit passes (none: the last pass was not clean).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_since: Option<Time>,
    /// Clean audit passes in that run.
    #[serde(default)]
    pub clean_passes: i32,
    /// The last audit pass that found a violating or unscanned Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_violation: Option<Time>,
    /// What keeps the rollout where it is, or that it is done.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Promotions so far (the last 10), each with its evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promotions: Vec<Promotion>,
}

/// One step of a staged rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    /// Mode before.
    pub from: Mode,
    /// Mode after.
    pub to: Mode,
    /// When.
    pub at: Time,
    /// Why: the clean run of audit passes that allowed it.
    pub evidence: String,
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
