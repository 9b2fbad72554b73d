//! ZastavaPolicy controller.
//!
//! Will keep the webhook certificate and ValidatingWebhookConfiguration in step.

use serde_json::Value;
use stellaops_crds::ZastavaPolicy;

use crate::context::Config;

/// What this kind still waits for before it becomes `Ready`.
pub const AWAITING: &str = "the Zastava admission webhook does not enforce policies yet";

/// The objects the operator creates for a ZastavaPolicy (none until its workload controller lands).
pub fn desired(_object: &ZastavaPolicy, _config: &Config) -> Vec<Value> {
    Vec::new()
}
