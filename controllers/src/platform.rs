//! Platform controller.
//!
//! Will verify release manifests and roll components out in the safe order.

use serde_json::Value;
use stellaops_crds::Platform;

use crate::context::Config;

/// What this kind still waits for before it becomes `Ready`.
pub const AWAITING: &str = "release verification and rollout are not available yet";

/// The objects the operator creates for a Platform (none until its workload controller lands).
pub fn desired(_object: &Platform, _config: &Config) -> Vec<Value> {
    Vec::new()
}
