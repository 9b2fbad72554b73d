//! NotifyRule controller.
//!
//! Will render enabled rules into the notify worker Deployment's configuration.

use serde_json::Value;
use stellaops_crds::NotifyRule;

use crate::context::Config;

/// What this kind still waits for before it becomes `Ready`.
pub const AWAITING: &str = "the notify worker Deployment is not available yet";

/// The objects the operator creates for a NotifyRule (none until its workload controller lands).
pub fn desired(_object: &NotifyRule, _config: &Config) -> Vec<Value> {
    Vec::new()
}
