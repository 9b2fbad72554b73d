//! The rollout state machine: a pure function of (spec, observed cluster, status, time)
//! to (new status, actions, Events, outbox events). Everything it needs to resume is in
//! the status it returns, so a restarted operator continues exactly where it was.
//!
//! Upgrade: `migrate-expand` Job → each component's Deployment set to its digest and
//! waited on until rolled out and available within `healthTimeoutSeconds` →
//! `migrate-contract` Job. A failed gate with `autoRollback` puts the components the
//! upgrade touched back, in reverse order; `spec.rollbackTo` goes back on purpose.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Value, json};
use stellaops_crds::platform::{
    ComponentStatus, Operation, OperationKind, Platform, PlatformPhase, PlatformStatus,
    ReleaseRecord, RolloutFailure, RolloutStep,
};
use stellaops_crds::{CONDITION_READY, condition, set_condition};

use super::preconditions::{Blocker, upgrade_blocker};
use super::release::{Release, ReleaseError, rollout_rank};

/// Name of the expand-migration step.
pub const STEP_EXPAND: &str = "migrate-expand";
/// Name of the contract-migration step.
pub const STEP_CONTRACT: &str = "migrate-contract";

/// A component's Deployment as the controller saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentView {
    /// The container carrying the component (named like it, else the first).
    pub container: String,
    /// That container's image in the Deployment's spec.
    pub image: String,
    /// The controller has rolled the current spec out: every replica updated, no old ones.
    pub rolled_out: bool,
    /// Every wanted replica is available.
    pub available: bool,
    /// The rollout gave up (`ProgressDeadlineExceeded`), with its message.
    pub stalled: Option<String>,
}

/// A migration Job as the controller saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobView {
    /// Still running (or retrying).
    Running,
    /// Completed.
    Succeeded,
    /// Failed, with the Job's message.
    Failed(String),
}

/// The cluster as the controller saw it: Deployments by name, the Platform's Jobs by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Deployments of the namespace, by name.
    pub deployments: BTreeMap<String, DeploymentView>,
    /// Jobs the Platform owns, by name.
    pub jobs: BTreeMap<String, JobView>,
}

/// Something to change in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Set one container's image of a Deployment (server-side apply of that field only).
    SetImage {
        /// Deployment.
        deployment: String,
        /// Container.
        container: String,
        /// Image by digest.
        image: String,
    },
    /// Create a migration Job.
    RunMigration {
        /// Job name.
        name: String,
        /// `expand` or `contract`.
        phase: &'static str,
        /// Image by digest.
        image: String,
        /// Arguments.
        args: Vec<String>,
    },
}

/// A Kubernetes Event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// A Warning rather than Normal.
    pub warning: bool,
    /// Reason.
    pub reason: &'static str,
    /// Note.
    pub message: String,
}

/// An outbox event (`release.progress`, `release.failed`, `release.rolledback`).
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEvent {
    /// Kind.
    pub kind: &'static str,
    /// Body.
    pub payload: Value,
    /// Stable key: recomputing the same transition gives the same key.
    pub idempotency_key: String,
}

/// The verification outcome for `spec.version`.
pub type Verified<'a> = Result<&'a Release, &'a ReleaseError>;

/// Everything [`decide`] looks at.
pub struct Input<'a> {
    /// The Platform (spec, status, generation).
    pub platform: &'a Platform,
    /// `spec.version`'s manifest, verified (or why not).
    pub release: Verified<'a>,
    /// The cluster.
    pub observed: &'a Observed,
    /// From the backup annotation.
    pub last_backup: Option<Timestamp>,
    /// What the last artifact lifecycle pass found would purge compliance artifacts.
    pub compliance_at_risk: Option<String>,
    /// Now.
    pub now: Timestamp,
}

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The status to write.
    pub status: PlatformStatus,
    /// Changes to make, in order.
    pub actions: Vec<Action>,
    /// Events to publish.
    pub notices: Vec<Notice>,
    /// Outbox events to append.
    pub outbox: Vec<OutboxEvent>,
    /// When to look again.
    pub requeue: Duration,
}

/// How often a rollout in progress is looked at.
pub const POLL: Duration = Duration::from_secs(10);
/// How often a settled Platform is looked at.
pub const IDLE: Duration = Duration::from_secs(300);

/// Name of a migration Job.
pub fn migration_job_name(platform: &str, phase: &str, version: &str, attempt: i64) -> String {
    let suffix = format!("-migrate-{phase}-{}-{attempt}", version.replace('.', "-"));
    crate::workload::child_name(platform, &suffix, 63)
}

struct Machine<'a> {
    input: &'a Input<'a>,
    status: PlatformStatus,
    actions: Vec<Action>,
    notices: Vec<Notice>,
    outbox: Vec<OutboxEvent>,
    generation: i64,
    now: Time,
    /// Why Ready is False when nothing is in progress and the target is not running.
    hold: Option<(&'static str, String)>,
}

/// Decide the next move. Pure.
pub fn decide(input: &Input) -> Decision {
    let status = input.platform.status.clone().unwrap_or_default();
    let mut machine = Machine {
        input,
        generation: input.platform.metadata.generation.unwrap_or(0),
        now: Time(input.now),
        status,
        actions: Vec::new(),
        notices: Vec::new(),
        outbox: Vec::new(),
        hold: None,
    };
    machine.run();
    machine.finish()
}

impl Machine<'_> {
    fn spec(&self) -> &stellaops_crds::platform::PlatformSpec {
        &self.input.platform.spec
    }

    fn platform_name(&self) -> String {
        self.input
            .platform
            .metadata
            .name
            .clone()
            .unwrap_or_default()
    }

    fn timeout(&self) -> i64 {
        i64::from(self.spec().upgrade.health_timeout_seconds)
    }

    fn notice(&mut self, warning: bool, reason: &'static str, message: String) {
        self.notices.push(Notice {
            warning,
            reason,
            message,
        });
    }

    fn emit(&mut self, kind: &'static str, step: &str, mut payload: Value) {
        let op = self.status.operation.clone();
        let attempt = op
            .as_ref()
            .map(|o| o.attempt)
            .unwrap_or(self.status.attempts);
        let uid = self
            .input
            .platform
            .metadata
            .uid
            .clone()
            .unwrap_or_else(|| self.platform_name());
        payload["platform"] = json!(self.platform_name());
        payload["namespace"] = json!(self.input.platform.metadata.namespace);
        payload["attempt"] = json!(attempt);
        self.outbox.push(OutboxEvent {
            kind,
            idempotency_key: format!("{kind}/{uid}/{attempt}/{step}"),
            payload,
        });
    }

    /// What the spec asks for: (kind, version).
    fn wanted(&self) -> (OperationKind, String) {
        match &self.spec().rollback_to {
            Some(v) => (OperationKind::RollbackTo, v.clone()),
            None => (OperationKind::Upgrade, self.spec().version.clone()),
        }
    }

    fn run(&mut self) {
        if let Some(op) = self.status.operation.clone() {
            let (kind, version) = self.wanted();
            let same = match op.kind {
                // Putting things back always finishes.
                OperationKind::AutoRollback => true,
                OperationKind::RollbackTo => {
                    kind == OperationKind::RollbackTo && version == op.version
                }
                OperationKind::Upgrade => {
                    kind == OperationKind::Upgrade
                        && version == op.version
                        && self
                            .input
                            .release
                            .ok()
                            .is_none_or(|r| Some(&r.digest) == op.release_digest.as_ref())
                }
            };
            if same {
                self.advance();
                return;
            }
            // A new version or rollbackTo supersedes the rollout in progress: never a dead end.
            self.notice(
                false,
                "Superseded",
                format!(
                    "the rollout to {} stops at step {}: the spec now asks for {}",
                    op.version,
                    self.status
                        .step
                        .as_ref()
                        .map(|s| s.name.as_str())
                        .unwrap_or("-"),
                    version
                ),
            );
            self.status.operation = None;
            self.status.step = None;
        }
        self.start_if_wanted();
    }

    fn start_if_wanted(&mut self) {
        let (kind, version) = self.wanted();
        if kind == OperationKind::RollbackTo {
            if self.status.current_version.as_deref() == Some(version.as_str()) {
                return;
            }
            if self.failed_before(&version) {
                return;
            }
            let Some(record) = self
                .status
                .history
                .iter()
                .find(|r| r.version == version && r.state == "Superseded" && !r.images.is_empty())
                .cloned()
            else {
                let known: Vec<String> = self
                    .status
                    .history
                    .iter()
                    .filter(|r| r.state == "Superseded")
                    .map(|r| r.version.clone())
                    .collect();
                self.hold = Some((
                    "RollbackTargetUnknown",
                    format!(
                        "spec.rollbackTo {version} is not a release this Platform ran before (status.history has {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
                return;
            };
            let mut targets: Vec<(String, String)> = record.images.into_iter().collect();
            // Back in reverse order: UI first, Authority last.
            targets.sort_by_key(|(name, _)| std::cmp::Reverse(rollout_rank(name)));
            self.start(
                OperationKind::RollbackTo,
                &version,
                &record.channel,
                record.release_digest.clone(),
                targets,
                None,
                None,
            );
            return;
        }
        let release = match self.input.release {
            Ok(release) => release,
            Err(error) => {
                self.hold = Some((error.reason(), error.to_string()));
                return;
            }
        };
        if self.status.current_version.as_deref() == Some(release.version.as_str())
            && self.status.release_digest.as_deref() == Some(release.digest.as_str())
        {
            return;
        }
        if self.failed_before(&release.version) {
            return;
        }
        if let Some(Blocker { reason, message }) = upgrade_blocker(
            self.input.platform,
            release,
            self.input.last_backup,
            self.input.compliance_at_risk.as_deref(),
            self.input.now,
        ) {
            self.hold = Some((reason, message));
            return;
        }
        let targets = release
            .components
            .iter()
            .map(|c| (c.name.clone(), c.image.clone()))
            .collect();
        self.start(
            OperationKind::Upgrade,
            &release.version,
            &release.channel,
            Some(release.digest.clone()),
            targets,
            release.migrations.as_ref(),
            None,
        );
    }

    /// Whether `version` failed at this generation (and so waits for a spec change).
    fn failed_before(&mut self, version: &str) -> bool {
        let Some(failure) = &self.status.last_failure else {
            return false;
        };
        if failure.version != version || failure.generation != self.generation {
            return false;
        }
        self.hold = Some(("RolloutFailed", failure_message(failure)));
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        kind: OperationKind,
        version: &str,
        channel: &str,
        release_digest: Option<String>,
        targets: Vec<(String, String)>,
        migrations: Option<&super::release::Migrations>,
        cause: Option<String>,
    ) {
        self.status.attempts += 1;
        let previous: BTreeMap<String, ComponentStatus> = self
            .status
            .components
            .iter()
            .map(|c| (c.name.clone(), c.clone()))
            .collect();
        let mut components = Vec::new();
        let mut steps = Vec::new();
        if let Some(m) = migrations
            && !m.expand.is_empty()
        {
            steps.push(STEP_EXPAND.to_string());
        }
        for (name, image) in &targets {
            let before = previous.get(name);
            let observed = self.input.observed.deployments.get(name);
            // A component a superseded rollout already changed keeps the image it ran
            // before that rollout, so a rollback goes back to what was known good.
            let previous_image = match before {
                Some(c) if matches!(c.state.as_str(), "Updating" | "Healthy" | "Failed") => {
                    c.previous_image.clone()
                }
                _ => None,
            }
            .or_else(|| observed.map(|d| d.image.clone()));
            components.push(ComponentStatus {
                name: name.clone(),
                image: image.clone(),
                previous_image,
                version: Some(version.to_string()),
                state: "Pending".into(),
                updated_at: Some(self.now.clone()),
            });
            steps.push(name.clone());
        }
        if let Some(m) = migrations
            && !m.contract.is_empty()
        {
            steps.push(STEP_CONTRACT.to_string());
        }
        for (name, old) in &previous {
            if !targets.iter().any(|(n, _)| n == name) {
                components.push(ComponentStatus {
                    state: "Retained".into(),
                    previous_image: None,
                    ..old.clone()
                });
            }
        }
        let from_version = self.status.current_version.clone();
        self.status.components = components;
        self.status.desired_version = Some(version.to_string());
        self.status.operation = Some(Operation {
            kind,
            version: version.to_string(),
            channel: channel.to_string(),
            from_version: from_version.clone(),
            release_digest,
            generation: self.generation,
            attempt: self.status.attempts,
            steps: steps.clone(),
            started_at: self.now.clone(),
            cause,
        });
        self.status.step = Some(RolloutStep {
            index: 0,
            name: steps.first().cloned().unwrap_or_default(),
            started_at: None,
        });
        let verb = match kind {
            OperationKind::Upgrade => "upgrading",
            OperationKind::AutoRollback => "rolling back",
            OperationKind::RollbackTo => "rolling back on request",
        };
        let message = format!(
            "{verb} {} → {version}: {}",
            from_version.as_deref().unwrap_or("(unknown)"),
            steps.join(" → ")
        );
        self.notice(
            kind == OperationKind::AutoRollback,
            match kind {
                OperationKind::Upgrade => "UpgradeStarted",
                _ => "RollbackStarted",
            },
            message.clone(),
        );
        self.emit(
            "release.progress",
            "started",
            json!({"version": version, "from": from_version, "phase": "started", "steps": steps, "message": message}),
        );
        self.advance();
    }

    fn component_mut(&mut self, name: &str) -> Option<&mut ComponentStatus> {
        self.status.components.iter_mut().find(|c| c.name == name)
    }

    fn set_state(&mut self, name: &str, state: &str) {
        let now = self.now.clone();
        if let Some(c) = self.component_mut(name)
            && c.state != state
        {
            c.state = state.to_string();
            c.updated_at = Some(now);
        }
    }

    fn timed_out(&self, started: &Option<Time>) -> bool {
        started
            .as_ref()
            .is_some_and(|t| self.input.now.duration_since(t.0).as_secs() > self.timeout())
    }

    /// Work through steps until one has to wait.
    fn advance(&mut self) {
        loop {
            let Some(op) = self.status.operation.clone() else {
                return;
            };
            let mut step = self.status.step.clone().unwrap_or_default();
            let index = step.index.max(0) as usize;
            let Some(name) = op.steps.get(index).cloned() else {
                self.succeed(&op);
                return;
            };
            if step.started_at.is_none() {
                if self.spec().upgrade.paused && op.kind != OperationKind::AutoRollback {
                    if self.status.phase != Some(PlatformPhase::Paused) {
                        self.notice(
                            false,
                            "Paused",
                            format!("held before step {name} by spec.upgrade.paused"),
                        );
                    }
                    self.status.phase = Some(PlatformPhase::Paused);
                    return;
                }
                step.started_at = Some(self.now.clone());
                step.name = name.clone();
                self.status.step = Some(step.clone());
            }
            self.status.phase = Some(match op.kind {
                OperationKind::Upgrade => PlatformPhase::Progressing,
                _ => PlatformPhase::RollingBack,
            });
            let done = if name == STEP_EXPAND || name == STEP_CONTRACT {
                self.migration_step(&op, &name, &step)
            } else {
                self.component_step(&op, &name, &step)
            };
            match done {
                StepOutcome::Wait => return,
                StepOutcome::Failed(reason) => {
                    self.fail(&op, &name, reason);
                    return;
                }
                StepOutcome::Done => {
                    self.emit(
                        "release.progress",
                        &format!("step-{index}"),
                        json!({"version": op.version, "phase": "step-completed", "step": name, "index": index}),
                    );
                    self.status.step = Some(RolloutStep {
                        index: step.index + 1,
                        name: op.steps.get(index + 1).cloned().unwrap_or_default(),
                        started_at: None,
                    });
                }
            }
        }
    }

    fn migration_step(&mut self, op: &Operation, name: &str, step: &RolloutStep) -> StepOutcome {
        let phase = if name == STEP_EXPAND {
            "expand"
        } else {
            "contract"
        };
        let job = migration_job_name(&self.platform_name(), phase, &op.version, op.attempt);
        match self.input.observed.jobs.get(&job) {
            None => {
                let migrations = self.input.release.ok().and_then(|r| r.migrations.clone());
                let Some(m) = migrations else {
                    return StepOutcome::Failed(format!(
                        "the release's migrations are no longer readable for Job {job}"
                    ));
                };
                self.actions.push(Action::RunMigration {
                    name: job.clone(),
                    phase,
                    image: m.image.clone(),
                    args: if phase == "expand" {
                        m.expand
                    } else {
                        m.contract
                    },
                });
                self.notice(
                    false,
                    "MigrationStarted",
                    format!("{phase} migration Job {job} created"),
                );
                StepOutcome::Wait
            }
            Some(JobView::Running) if self.timed_out(&step.started_at) => {
                StepOutcome::Failed(format!(
                    "{phase} migration Job {job} did not finish within {}s",
                    self.timeout()
                ))
            }
            Some(JobView::Running) => StepOutcome::Wait,
            Some(JobView::Succeeded) => {
                self.notice(
                    false,
                    "MigrationSucceeded",
                    format!("{phase} migration Job {job} completed"),
                );
                StepOutcome::Done
            }
            Some(JobView::Failed(message)) => {
                StepOutcome::Failed(format!("{phase} migration Job {job} failed: {message}"))
            }
        }
    }

    fn component_step(&mut self, op: &Operation, name: &str, step: &RolloutStep) -> StepOutcome {
        let Some(target) = self
            .status
            .components
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.image.clone())
        else {
            return StepOutcome::Failed(format!("component {name} is not in the plan"));
        };
        let Some(deployment) = self.input.observed.deployments.get(name).cloned() else {
            return StepOutcome::Failed(format!(
                "Deployment {name} does not exist in this namespace; install the platform chart first (the operator upgrades, it does not install)"
            ));
        };
        if deployment.image != target {
            self.actions.push(Action::SetImage {
                deployment: name.to_string(),
                container: deployment.container.clone(),
                image: target.clone(),
            });
            self.set_state(name, "Updating");
            let verb = if op.kind == OperationKind::Upgrade {
                "updating"
            } else {
                "rolling back"
            };
            self.notice(
                false,
                if op.kind == OperationKind::Upgrade {
                    "ComponentUpdating"
                } else {
                    "ComponentRollingBack"
                },
                format!("{verb} {name} to {target}"),
            );
            return StepOutcome::Wait;
        }
        if deployment.rolled_out && deployment.available {
            let state = if op.kind == OperationKind::Upgrade {
                "Healthy"
            } else {
                "RolledBack"
            };
            self.set_state(name, state);
            self.notice(
                false,
                "ComponentReady",
                format!("{name} runs {target} and is available"),
            );
            return StepOutcome::Done;
        }
        self.set_state(name, "Updating");
        if let Some(why) = deployment.stalled {
            self.set_state(name, "Failed");
            return StepOutcome::Failed(format!("Deployment {name} stopped progressing: {why}"));
        }
        if self.timed_out(&step.started_at) {
            self.set_state(name, "Failed");
            return StepOutcome::Failed(format!(
                "Deployment {name} did not become available with {target} within {}s",
                self.timeout()
            ));
        }
        StepOutcome::Wait
    }

    fn record_history(&mut self, record: ReleaseRecord) {
        self.status.history.insert(0, record);
        let limit = self.spec().upgrade.history_limit.max(1) as usize;
        self.status.history.truncate(limit);
    }

    fn images(&self, previous: bool) -> BTreeMap<String, String> {
        self.status
            .components
            .iter()
            .filter(|c| c.state != "Retained")
            .filter_map(|c| {
                let image = if previous {
                    c.previous_image.clone()?
                } else {
                    c.image.clone()
                };
                Some((c.name.clone(), image))
            })
            .collect()
    }

    fn fail(&mut self, op: &Operation, step: &str, reason: String) {
        let reason = format!("step {step}: {reason}");
        let failed_version = match op.kind {
            OperationKind::AutoRollback => op.from_version.clone().unwrap_or_default(),
            _ => op.version.clone(),
        };
        self.status.last_failure = Some(RolloutFailure {
            version: failed_version.clone(),
            generation: op.generation,
            reason: reason.clone(),
            at: self.now.clone(),
        });
        self.emit(
            "release.failed",
            "failed",
            json!({"version": op.version, "kind": op.kind, "step": step, "reason": reason}),
        );
        if op.kind == OperationKind::Upgrade && self.spec().upgrade.auto_rollback {
            // The components this upgrade changed, newest first.
            let touched: Vec<(String, String)> = op
                .steps
                .iter()
                .rev()
                .filter_map(|name| {
                    let c = self.status.components.iter().find(|c| &c.name == name)?;
                    let previous = c.previous_image.clone()?;
                    (matches!(c.state.as_str(), "Updating" | "Healthy" | "Failed")
                        && previous != c.image)
                        .then(|| (name.clone(), previous))
                })
                .collect();
            if !touched.is_empty() {
                self.notice(
                    true,
                    "UpgradeFailed",
                    format!(
                        "the upgrade to {} failed at {reason}; rolling {} back",
                        op.version,
                        touched
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                self.record_history(ReleaseRecord {
                    version: op.version.clone(),
                    channel: op.channel.clone(),
                    completed_at: Some(self.now.clone()),
                    release_digest: op.release_digest.clone(),
                    state: "RolledBack".into(),
                    reason: Some(reason.clone()),
                    images: self.images(false),
                });
                let back = op
                    .from_version
                    .clone()
                    .unwrap_or_else(|| "the previous images".into());
                self.status.attempts += 1;
                let steps: Vec<String> = touched.iter().map(|(n, _)| n.clone()).collect();
                for (name, previous) in &touched {
                    let now = self.now.clone();
                    if let Some(c) = self.component_mut(name) {
                        let failed_image = std::mem::replace(&mut c.image, previous.clone());
                        c.previous_image = Some(failed_image);
                        c.version = op.from_version.clone();
                        c.state = "Pending".into();
                        c.updated_at = Some(now);
                    }
                }
                self.status.desired_version = op.from_version.clone();
                self.status.operation = Some(Operation {
                    kind: OperationKind::AutoRollback,
                    version: back,
                    channel: self
                        .status
                        .current_channel
                        .clone()
                        .unwrap_or_else(|| op.channel.clone()),
                    from_version: Some(op.version.clone()),
                    release_digest: self.status.release_digest.clone(),
                    generation: op.generation,
                    attempt: self.status.attempts,
                    steps: steps.clone(),
                    started_at: self.now.clone(),
                    cause: Some(reason),
                });
                self.status.step = Some(RolloutStep {
                    index: 0,
                    name: steps[0].clone(),
                    started_at: None,
                });
                self.advance();
                return;
            }
        }
        // Nothing to put back, no automatic rollback, or a rollback that failed itself.
        let event = match op.kind {
            OperationKind::Upgrade => "UpgradeFailed",
            _ => "RollbackFailed",
        };
        self.notice(
            true,
            event,
            format!(
                "{} to {} failed at {reason}; set a new spec.version or spec.rollbackTo, or edit the Platform to try again",
                if op.kind == OperationKind::Upgrade { "the upgrade" } else { "the rollback" },
                op.version
            ),
        );
        if op.kind == OperationKind::Upgrade {
            self.record_history(ReleaseRecord {
                version: op.version.clone(),
                channel: op.channel.clone(),
                completed_at: Some(self.now.clone()),
                release_digest: op.release_digest.clone(),
                state: "Failed".into(),
                reason: Some(reason.clone()),
                images: self.images(false),
            });
        }
        self.status.phase = Some(PlatformPhase::Failed);
        self.status.operation = None;
        self.status.step = None;
    }

    fn succeed(&mut self, op: &Operation) {
        match op.kind {
            OperationKind::Upgrade | OperationKind::RollbackTo => {
                if let Some(from) = &op.from_version {
                    self.record_history(ReleaseRecord {
                        version: from.clone(),
                        channel: self.status.current_channel.clone().unwrap_or_default(),
                        completed_at: Some(self.now.clone()),
                        release_digest: self.status.release_digest.clone(),
                        state: "Superseded".into(),
                        reason: Some(match op.kind {
                            OperationKind::Upgrade => format!("upgraded to {}", op.version),
                            _ => format!("rolled back to {} on request", op.version),
                        }),
                        images: self.images(true),
                    });
                }
                self.status.current_version = Some(op.version.clone());
                self.status.current_channel = Some(op.channel.clone());
                self.status.release_digest = op.release_digest.clone();
                if op.kind == OperationKind::Upgrade {
                    self.status.phase = Some(PlatformPhase::Available);
                    self.notice(
                        false,
                        "UpgradeSucceeded",
                        format!("every component runs {}", op.version),
                    );
                    self.emit(
                        "release.progress",
                        "completed",
                        json!({"version": op.version, "from": op.from_version, "phase": "completed"}),
                    );
                } else {
                    self.status.phase = Some(PlatformPhase::RolledBack);
                    self.notice(
                        false,
                        "RolledBack",
                        format!("rolled back to {} on request", op.version),
                    );
                    self.emit(
                        "release.rolledback",
                        "completed",
                        json!({"version": op.version, "from": op.from_version, "reason": "spec.rollbackTo"}),
                    );
                }
            }
            OperationKind::AutoRollback => {
                let cause = op.cause.clone().unwrap_or_default();
                self.status.phase = Some(PlatformPhase::RolledBack);
                self.notice(
                    true,
                    "RolledBack",
                    format!("rolled back to {} after: {cause}", op.version),
                );
                self.emit(
                    "release.rolledback",
                    "completed",
                    json!({"version": op.version, "from": op.from_version, "reason": cause}),
                );
            }
        }
        for c in &mut self.status.components {
            if c.state != "Retained" {
                c.previous_image = None;
            }
        }
        self.status.desired_version = match op.kind {
            OperationKind::AutoRollback => self.status.current_version.clone(),
            _ => Some(op.version.clone()),
        };
        self.status.operation = None;
        self.status.step = None;
    }

    fn finish(mut self) -> Decision {
        let generation = Some(self.generation);
        let now = self.now.clone();
        self.status.observed_generation = generation;
        let mut conditions: Vec<Condition> = std::mem::take(&mut self.status.conditions);
        let set =
            |conditions: &mut Vec<Condition>, t: &str, ok: bool, reason: &str, message: String| {
                set_condition(
                    conditions,
                    condition(t, ok, reason, message, generation, now.clone()),
                );
            };
        match self.input.release {
            Ok(release) => set(
                &mut conditions,
                "ReleaseVerified",
                true,
                "Verified",
                format!(
                    "release.yaml {} ({}) is signed by the release key; {} components, all by digest",
                    release.version,
                    release.digest,
                    release.components.len()
                ),
            ),
            Err(error) => set(
                &mut conditions,
                "ReleaseVerified",
                false,
                error.reason(),
                error.to_string(),
            ),
        }
        let op = self.status.operation.clone();
        // Upgradeable: the preconditions for spec.version, when nothing is under way.
        if op.is_none()
            && let Ok(release) = self.input.release
        {
            match upgrade_blocker(
                self.input.platform,
                release,
                self.input.last_backup,
                self.input.compliance_at_risk.as_deref(),
                self.input.now,
            ) {
                Some(b)
                    if self.status.current_version.as_deref() != Some(release.version.as_str()) =>
                {
                    set(&mut conditions, "Upgradeable", false, b.reason, b.message)
                }
                _ => set(
                    &mut conditions,
                    "Upgradeable",
                    true,
                    "PreconditionsMet",
                    format!("{} may be rolled out", release.version),
                ),
            }
        } else if let Err(error) = self.input.release {
            set(
                &mut conditions,
                "Upgradeable",
                false,
                "ReleaseNotVerified",
                error.to_string(),
            );
        }
        match &op {
            Some(op) => {
                let step = self.status.step.clone().unwrap_or_default();
                let (reason, verb) = match (self.status.phase, op.kind) {
                    (Some(PlatformPhase::Paused), _) => ("Paused", "paused before"),
                    (_, OperationKind::Upgrade) => ("Upgrading", "at"),
                    _ => ("RollingBack", "rolling back, at"),
                };
                set(
                    &mut conditions,
                    "Progressing",
                    true,
                    reason,
                    format!(
                        "{} → {}: {verb} step {}/{} {}",
                        op.from_version.as_deref().unwrap_or("?"),
                        op.version,
                        step.index + 1,
                        op.steps.len(),
                        step.name
                    ),
                );
            }
            None => set(
                &mut conditions,
                "Progressing",
                false,
                "Idle",
                "no rollout in progress".into(),
            ),
        }
        // Available: every managed component's Deployment runs its recorded image and is available.
        let mut unavailable = Vec::new();
        for c in self
            .status
            .components
            .iter()
            .filter(|c| c.state != "Retained")
        {
            match self.input.observed.deployments.get(&c.name) {
                Some(d) if d.available => {}
                Some(_) => unavailable.push(c.name.clone()),
                None => unavailable.push(format!("{} (missing)", c.name)),
            }
        }
        let available = !self.status.components.is_empty() && unavailable.is_empty();
        set(
            &mut conditions,
            "Available",
            available,
            if available {
                "ComponentsAvailable"
            } else {
                "ComponentsUnavailable"
            },
            if self.status.components.is_empty() {
                "no release has been rolled out yet".into()
            } else if available {
                format!(
                    "all {} components are available",
                    self.status.components.len()
                )
            } else {
                format!("not available: {}", unavailable.join(", "))
            },
        );
        let (kind, wanted) = self.wanted();
        let at_target = self.status.current_version.as_deref() == Some(wanted.as_str())
            && (kind == OperationKind::RollbackTo
                || self.input.release.ok().is_none_or(|r| {
                    self.status.release_digest.as_deref() == Some(r.digest.as_str())
                }));
        let (ready, reason, message) = if let Some(op) = &op {
            (
                false,
                if op.kind == OperationKind::Upgrade {
                    "Upgrading"
                } else {
                    "RollingBack"
                },
                format!("rolling out {}", op.version),
            )
        } else if let Some((reason, message)) = self.hold.clone().filter(|_| !at_target) {
            (false, reason, message)
        } else if !at_target {
            match self.status.phase {
                Some(PlatformPhase::Failed) | Some(PlatformPhase::RolledBack) => (
                    false,
                    "RolloutFailed",
                    self.status
                        .last_failure
                        .as_ref()
                        .map(failure_message)
                        .unwrap_or_else(|| "the last rollout did not finish".into()),
                ),
                _ => (
                    false,
                    "NotUpgradeable",
                    "the release cannot be rolled out yet; see Upgradeable".into(),
                ),
            }
        } else if !available {
            (
                false,
                "ComponentsUnavailable",
                format!("not available: {}", unavailable.join(", ")),
            )
        } else {
            (
                true,
                "Available",
                format!("{} is running and available", wanted),
            )
        };
        set(&mut conditions, CONDITION_READY, ready, reason, message);
        if op.is_none() && at_target && self.status.phase.is_none() {
            self.status.phase = Some(PlatformPhase::Available);
        }
        if op.is_none() && !at_target && self.status.phase.is_none() {
            self.status.phase = Some(PlatformPhase::Verifying);
        }
        self.status.conditions = conditions;
        Decision {
            requeue: if op.is_some() { POLL } else { IDLE },
            status: self.status,
            actions: self.actions,
            notices: self.notices,
            outbox: self.outbox,
        }
    }
}

/// What Ready says after a failed rollout: what failed and how to go on.
fn failure_message(failure: &RolloutFailure) -> String {
    format!(
        "the rollout to {} failed: {}. Set a new spec.version or spec.rollbackTo, or edit the Platform to try again",
        failure.version, failure.reason
    )
}

enum StepOutcome {
    Done,
    Wait,
    Failed(String),
}
