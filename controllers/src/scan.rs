//! Scan controller.
//!
//! Will own one scanner Job per Scan, queued under the operator-wide concurrency limit.

use serde_json::Value;
use stellaops_crds::Scan;

use crate::context::Config;

/// What this kind still waits for before it becomes `Ready`.
pub const AWAITING: &str = "the scanner worker Job is not available yet";

/// The objects the operator creates for a Scan (none until its workload controller lands).
pub fn desired(_object: &Scan, _config: &Config) -> Vec<Value> {
    Vec::new()
}
