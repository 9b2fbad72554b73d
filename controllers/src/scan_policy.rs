//! ScanPolicy controller: checks the rules as the evaluator will read them, records the
//! policy digest (SHA-256 of the evaluator's canonical form, the same digest every verdict
//! decided under it records) and `Ready`, and keeps stored verdicts current: when the
//! policy changes, and when one of its waivers expires (the controller wakes at the next
//! `until`), a Job in the platform namespace re-evaluates the results decided under it
//! (`stellaops-worker evaluate --policy-ref`), without pulling any image. The Scans whose
//! results those are read their new verdict by uid.
//!
//! The decision is pure ([`decide`]: state and clock in, status, Job and Events out); the
//! reconcile applies it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::{Value, json};
use stellaops_crds::scan_policy::{
    PolicyRule, Reevaluation, RuleAction, ScanPolicySpec, ScanPolicyStatus, VexSettings,
};
use stellaops_crds::{CONDITION_READY, ScanPolicy, condition, set_condition};
use stellaops_policy::evaluate::{self, Action as RuleEffect, Matchers, Rule};
use stellaops_policy::license::{LicenseAction, LicenseRule};
use stellaops_policy::vex::consensus::Trust;

use crate::acceptance;
use crate::context::{Config, Context, FIELD_MANAGER};
use crate::error::Result;
use crate::workload;

/// Label value (`app.kubernetes.io/component`) of the re-evaluation Jobs.
pub const COMPONENT: &str = "policy-reevaluation";

/// Longest wait between reconciles while a waiver is pending (a safety net: the requeue at
/// the waiver's `until` is what keeps it on time).
const SAFETY_NET: Duration = Duration::from_secs(3600);

fn severity(s: stellaops_crds::Severity) -> String {
    s.as_str().to_string()
}

fn rule_of(rule: &PolicyRule) -> Rule {
    let m = &rule.matchers;
    let action = match rule.action {
        RuleAction::Ignore => RuleEffect::Ignore {
            until: rule.until.as_ref().map(|t| t.0),
            justification: rule.justification.clone().unwrap_or_default(),
        },
        RuleAction::Warn => RuleEffect::Warn,
        RuleAction::Fail => RuleEffect::Fail,
        RuleAction::Defer => RuleEffect::Defer,
        RuleAction::RequireVex => RuleEffect::RequireVex {
            vendors: rule.vendors.clone().unwrap_or_default(),
            justifications: rule.vex_justifications.clone().unwrap_or_default(),
        },
        // Without a target (CEL refuses that) the escalation names no known severity and
        // the evaluator's check reports it.
        RuleAction::Escalate => RuleEffect::Escalate {
            to: rule.escalate_to.map(severity).unwrap_or_default(),
        },
    };
    Rule {
        name: rule.name.clone(),
        matchers: Matchers {
            namespaces: m.namespaces.clone(),
            images: m.images.clone(),
            purls: m.purls.clone(),
            vulnerabilities: m.vulnerabilities.clone(),
            sources: m.sources.clone(),
            severities: m.severities.iter().map(|s| severity(*s)).collect(),
            layers: m.layer_digests.clone(),
            used_by_entrypoint: m.used_by_entrypoint,
            kev: m.kev,
            epss_at_least: m.epss_at_least,
            fix_available: m.fix_available,
        },
        action,
    }
}

/// The ScanPolicy as the evaluator takes it: the one form its digest is computed from and
/// the workers receive (`--policy-json`).
pub fn to_policy(spec: &ScanPolicySpec) -> evaluate::Policy {
    evaluate::Policy {
        rules: spec.rules.iter().map(rule_of).collect(),
        fail_on: Some(severity(spec.fail_on)),
        warn_on: spec.warn_on.map(severity),
        ignore_unfixed: spec.ignore_unfixed,
        scope: match spec.scope {
            stellaops_crds::common::Scope::Inventory => evaluate::Scope::Inventory,
            stellaops_crds::common::Scope::Usage => evaluate::Scope::Usage,
        },
        vex: spec.vex.as_ref().and_then(trust_of),
        licenses: spec.licenses.iter().map(license_rule_of).collect(),
    }
}

/// A license rule as the evaluator takes it.
fn license_rule_of(rule: &stellaops_crds::scan_policy::LicenseRule) -> LicenseRule {
    LicenseRule {
        name: rule.name.clone(),
        action: match rule.action {
            stellaops_crds::scan_policy::LicenseAction::Deny => LicenseAction::Deny,
            stellaops_crds::scan_policy::LicenseAction::Warn => LicenseAction::Warn,
        },
        ids: rule.ids.clone(),
        namespaces: rule.namespaces.clone(),
        images: rule.images.clone(),
        except_packages: rule.except_packages.clone(),
    }
}

/// The consensus's trust from the policy's VEX settings; `None` when they say what the
/// defaults say, so equal policies keep equal digests however they are written.
fn trust_of(settings: &VexSettings) -> Option<Trust> {
    let trust = Trust {
        weights: settings
            .providers
            .iter()
            .map(|p| (p.name.clone(), p.weight))
            .collect(),
        default_weight: settings.default_weight,
        accepted_justifications: match &settings.accepted_justifications {
            Some(list) => list.iter().map(|j| j.as_str().to_string()).collect(),
            None => Trust::default().accepted_justifications,
        },
    };
    (trust != Trust::default()).then_some(trust)
}

/// The evaluator's form as the JSON the workers take.
pub fn policy_json(spec: &ScanPolicySpec) -> String {
    serde_json::to_string(&to_policy(spec)).expect("a policy serializes")
}

/// Why the results decided under a policy are evaluated again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The policy's digest changed.
    PolicyChanged,
    /// A waiver's `until` passed.
    WaiverExpired,
}

impl Trigger {
    fn reason(self) -> &'static str {
        match self {
            Trigger::PolicyChanged => "PolicyChanged",
            Trigger::WaiverExpired => "WaiverExpired",
        }
    }
}

/// The re-evaluation Job's name: fixed by the digest and, for an expiry, the time it
/// expired at, so a retried reconcile applies the same Job instead of a second one.
pub fn job_name(policy: &ScanPolicy, digest: &str, expired_at: Option<jiff::Timestamp>) -> String {
    let hex = digest.trim_start_matches("sha256:");
    let key = match expired_at {
        Some(t) => format!("-{}-{}", &hex[..10.min(hex.len())], t.as_second()),
        None => format!("-{}", &hex[..10.min(hex.len())]),
    };
    workload::child_name(&format!("spol-{}", policy.name_any()), &key, 63)
}

/// The Job re-evaluating every result decided under `policy`, in the platform namespace
/// (it holds the database credentials and the signing key), owned by the ScanPolicy (a
/// cluster-scoped owner may own namespaced objects).
pub fn reevaluation_job(
    policy: &ScanPolicy,
    config: &Config,
    digest: &str,
    expired_at: Option<jiff::Timestamp>,
) -> Job {
    let mut container = workload::worker_container(
        config,
        "evaluate",
        vec![
            "evaluate".into(),
            "--policy-ref".into(),
            policy.name_any(),
            "--policy-json".into(),
            policy_json(&policy.spec),
            "--notify".into(),
        ],
        workload::resources("100m", "128Mi", "512Mi"),
    );
    container
        .env
        .get_or_insert_with(Vec::new)
        .push(workload::database_url_env(config));
    // The signed verdicts' envelopes go to the platform bucket, as a scan's do.
    workload::verdict_bucket(&mut container, config);
    let mut volumes = vec![workload::tmp_volume()];
    workload::verdict_signing(&mut container, &mut volumes, config);
    let labels = workload::labels(&policy.name_any(), "ScanPolicy", COMPONENT);
    let mut job = workload::run_once_job(
        policy,
        job_name(policy, digest, expired_at),
        labels,
        container,
        Some(volumes),
        workload::JobLimits {
            backoff: 2,
            deadline_seconds: 6 * 3600,
            ttl_seconds: 24 * 3600,
        },
    );
    job.metadata.namespace = Some(config.operator_namespace.clone());
    // Owned for garbage collection only: deleting the policy need not wait for its Jobs
    // (and blocking would need update on scanpolicies/finalizers).
    for owner in job.metadata.owner_references.iter_mut().flatten() {
        owner.block_owner_deletion = Some(false);
    }
    job
}

/// What a reconcile does.
#[derive(Debug)]
pub struct Decision {
    /// The status to write.
    pub status: ScanPolicyStatus,
    /// A re-evaluation Job to apply.
    pub job: Option<Job>,
    /// Events: type, reason, note.
    pub events: Vec<(EventType, &'static str, String)>,
    /// When to look again (`None`: only on a change).
    pub requeue: Option<Duration>,
}

fn short(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Decide a reconcile of `policy` at `now`. Pure.
pub fn decide(policy: &ScanPolicy, config: &Config, now: jiff::Timestamp) -> Decision {
    let previous = policy.status.clone().unwrap_or_default();
    let generation = policy.metadata.generation;
    let time = Time(now);
    let mut status = ScanPolicyStatus {
        observed_generation: generation,
        ..previous.clone()
    };
    let mut conditions = std::mem::take(&mut status.conditions);
    set_condition(
        &mut conditions,
        acceptance::accepted(generation, time.clone()),
    );
    let mut events = Vec::new();
    let evaluator = to_policy(&policy.spec);
    let problems = evaluator.problems();
    if !problems.is_empty() {
        let message = format!(
            "{}; Scans naming this policy wait until it is fixed",
            problems.join("; ")
        );
        if workload::set_not_ready(&mut conditions, "Invalid", &message, generation) {
            events.push((EventType::Warning, "Invalid", message));
        }
        // The last valid digest stays: verdicts recorded under it still name it.
        status.conditions = conditions;
        return Decision {
            status,
            job: None,
            events,
            requeue: None,
        };
    }
    let digest = evaluator.digest();
    let trigger = match (&previous.policy_digest, &previous.next_expiry) {
        (Some(before), _) if *before != digest => Some((Trigger::PolicyChanged, None)),
        (_, Some(expiry)) if expiry.0 <= now => Some((Trigger::WaiverExpired, Some(expiry.0))),
        _ => None,
    };
    let job = trigger.map(|(why, expired_at)| {
        let job = reevaluation_job(policy, config, &digest, expired_at);
        let job_name = job.metadata.name.clone().unwrap_or_default();
        let what = match why {
            Trigger::PolicyChanged => format!("the policy changed (now {digest})"),
            Trigger::WaiverExpired => {
                format!("a waiver expired at {}", short(expired_at.unwrap_or(now)))
            }
        };
        events.push((
            EventType::Normal,
            why.reason(),
            format!("{what}: Job {job_name} re-evaluates the results decided under it"),
        ));
        status.last_reevaluation = Some(Reevaluation {
            job: job_name,
            reason: why.reason().into(),
            policy_digest: digest.clone(),
            started_at: time.clone(),
        });
        job
    });
    if previous.policy_digest.is_none() {
        events.push((
            EventType::Normal,
            "Ready",
            format!("{} rules, policy digest {digest}", policy.spec.rules.len()),
        ));
    }
    let next_expiry = evaluator.next_expiry(now);
    status.policy_digest = Some(digest.clone());
    status.rules = Some(policy.spec.rules.len() as i32);
    status.next_expiry = next_expiry.map(Time);
    set_condition(
        &mut conditions,
        condition(
            CONDITION_READY,
            true,
            "Valid",
            format!(
                "{} rules, digest {digest}{}",
                policy.spec.rules.len(),
                next_expiry
                    .map(|t| format!("; next waiver expiry {}", short(t)))
                    .unwrap_or_default()
            ),
            generation,
            time,
        ),
    );
    status.conditions = conditions;
    // Wake just after the next waiver expires (a second late, so `until <= now` holds).
    let requeue = next_expiry.map(|t| {
        let wait = now.duration_until(t).unsigned_abs() + Duration::from_secs(1);
        wait.min(SAFETY_NET)
    });
    Decision {
        status,
        job,
        events,
        requeue,
    }
}

/// What `preview` shows: nothing is made until the policy changes or a waiver expires.
pub fn desired(_policy: &ScanPolicy, _config: &Config) -> Vec<Value> {
    Vec::new()
}

/// Reconcile one ScanPolicy.
pub async fn reconcile(policy: Arc<ScanPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let mut spec_only = serde_json::to_value(&*policy)?;
    spec_only.as_object_mut().map(|m| m.remove("status"));
    if stellaops_crds::validation::admit(&spec_only).is_err() {
        return acceptance::reconcile(policy, ctx, "").await;
    }
    let decision = decide(&policy, &ctx.config, jiff::Timestamp::now());
    // The Job first: if the status write fails, the retry applies the same Job again.
    if let Some(job) = &decision.job {
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.config.operator_namespace);
        workload::apply(
            jobs,
            &job.metadata.name.clone().unwrap_or_default(),
            &workload::typed(job),
        )
        .await?;
    }
    if policy.status.as_ref() != Some(&decision.status) {
        let api: Api<ScanPolicy> = Api::all(ctx.client.clone());
        api.patch_status(
            &policy.name_any(),
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..Default::default()
            },
            &Patch::Merge(&json!({"status": decision.status})),
        )
        .await?;
    }
    for (type_, reason, note) in decision.events {
        workload::publish_event(&ctx.recorder, &*policy, type_, reason, note, "Evaluate").await?;
    }
    Ok(match decision.requeue {
        Some(wait) => Action::requeue(wait),
        None => Action::await_change(),
    })
}

/// The policy a Scan decides under when it names `policy`: `None` while the policy is not
/// Ready (missing, invalid, or not yet reconciled at its generation), with why.
pub fn ready_policy(
    policy: Option<&ScanPolicy>,
    name: &str,
) -> std::result::Result<String, String> {
    let Some(policy) = policy else {
        return Err(format!("ScanPolicy {name} does not exist"));
    };
    let status = policy.status.clone().unwrap_or_default();
    let ready = stellaops_crds::find_condition(&status.conditions, CONDITION_READY);
    match ready {
        Some(c)
            if c.status == "True" && status.observed_generation == policy.metadata.generation =>
        {
            Ok(policy_json(&policy.spec))
        }
        Some(c) if c.status != "True" => {
            Err(format!("ScanPolicy {name} is not Ready: {}", c.message))
        }
        _ => Err(format!("ScanPolicy {name} has not been checked yet")),
    }
}

/// The current digest of the ScanPolicy `name` when it is Ready (what the verdicts
/// decided under it record), or why there is none.
pub fn ready_digest(
    policy: Option<&ScanPolicy>,
    name: &str,
) -> std::result::Result<String, String> {
    ready_policy(policy, name)?;
    policy
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.policy_digest.clone())
        .ok_or_else(|| format!("ScanPolicy {name} has no digest yet"))
}

/// The ScanPolicy a re-evaluation Job was made for (its `stella-ops.org/scanpolicy` label).
pub fn policy_of_job(job: &Job) -> Option<String> {
    job.labels().get("stella-ops.org/scanpolicy").cloned()
}
