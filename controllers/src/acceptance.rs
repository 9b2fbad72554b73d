//! The reconciler every kind starts with: it re-checks the spec as the API server would
//! (objects stored under an older CRD may no longer be valid), reports `Accepted`, and
//! reports `Ready` honestly while the kind's workload controller is not yet built.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use serde_json::{Value, json};
use stellaops_crds::{CONDITION_READY, condition, set_condition};

use crate::context::{Context, FIELD_MANAGER};
use crate::error::{Error, Result};
use crate::kind::StellaKind;

/// Condition reporting whether the spec passed validation.
pub const CONDITION_ACCEPTED: &str = "Accepted";

/// `Accepted=True`: the spec passed validation.
pub fn accepted(generation: Option<i64>, now: Time) -> Condition {
    condition(
        CONDITION_ACCEPTED,
        true,
        "Valid",
        "the spec is valid",
        generation,
        now,
    )
}

/// What a reconcile should write and say.
#[derive(Debug, PartialEq)]
pub struct Assessment {
    /// The conditions the status should carry.
    pub conditions: Vec<Condition>,
    /// Whether they differ from the current ones (or the generation moved on).
    pub changed: bool,
    /// An Event to publish: type, reason, note.
    pub event: Option<(EventType, &'static str, String)>,
}

/// Assess an object of `kind` (as JSON) whose workload controller is `awaiting`.
/// Pure: the same inputs give the same assessment.
pub fn assess(
    kind: &str,
    object: &Value,
    generation: Option<i64>,
    observed_generation: Option<i64>,
    current: &[Condition],
    awaiting: &str,
    now: Time,
) -> Assessment {
    let mut conditions = current.to_vec();
    let mut spec_only = object.clone();
    if let Some(map) = spec_only.as_object_mut() {
        map.remove("status");
    }
    let event = match stellaops_crds::validation::admit(&spec_only) {
        Ok(_) => {
            let was_accepted = current
                .iter()
                .any(|c| c.type_ == CONDITION_ACCEPTED && c.status == "True");
            set_condition(&mut conditions, accepted(generation, now.clone()));
            set_condition(
                &mut conditions,
                condition(
                    CONDITION_READY,
                    false,
                    "AwaitingController",
                    format!(
                        "accepted, but this operator build does not yet act on {kind} resources: {awaiting}"
                    ),
                    generation,
                    now,
                ),
            );
            (!was_accepted).then(|| {
                (
                    EventType::Normal,
                    "Accepted",
                    format!("{kind} spec is valid"),
                )
            })
        }
        Err(errors) => {
            let message = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let same_failure = current.iter().any(|c| {
                c.type_ == CONDITION_ACCEPTED && c.status == "False" && c.message == message
            });
            set_condition(
                &mut conditions,
                condition(
                    CONDITION_ACCEPTED,
                    false,
                    "InvalidSpec",
                    message.clone(),
                    generation,
                    now.clone(),
                ),
            );
            set_condition(
                &mut conditions,
                condition(
                    CONDITION_READY,
                    false,
                    "InvalidSpec",
                    message.clone(),
                    generation,
                    now,
                ),
            );
            (!same_failure).then_some((EventType::Warning, "InvalidSpec", message))
        }
    };
    let changed = conditions != current || observed_generation != generation;
    Assessment {
        conditions,
        changed,
        event,
    }
}

/// Reconcile one object with [`assess`]: patch the status when it changed, publish an
/// Event on transitions.
pub async fn reconcile<K: StellaKind>(
    object: Arc<K>,
    ctx: Arc<Context>,
    awaiting: &str,
) -> Result<Action> {
    let name = object
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let value = serde_json::to_value(&*object)?;
    let observed = value["status"]["observedGeneration"].as_i64();
    let assessment = assess(
        K::KIND,
        &value,
        object.meta().generation,
        observed,
        object.conditions(),
        awaiting,
        Time(jiff::Timestamp::now()),
    );
    if assessment.changed {
        let api = K::api(ctx.client.clone(), object.namespace().as_deref());
        let patch = json!({
            "status": {
                "observedGeneration": object.meta().generation,
                "conditions": assessment.conditions,
            }
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        api.patch_status(&name, &params, &Patch::Merge(&patch))
            .await?;
    }
    if let Some((type_, reason, note)) = assessment.event {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        // An Event is for people; failing to record one must not fail the reconcile.
        if let Err(error) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(kind = K::KIND, %name, %error, "could not publish event");
        }
    }
    // Level-triggered safety net: look again hourly even without a watch event.
    Ok(Action::requeue(Duration::from_secs(3600)))
}
