//! Schedule controller.
//!
//! Will compute run times (cron, time zone, windows, jitter) and start evaluations or Scans.

pub mod cron;
pub mod timing;

use serde_json::Value;
use stellaops_crds::Schedule;

use crate::context::Config;

/// What this kind still waits for before it becomes `Ready`.
pub const AWAITING: &str = "scheduled re-evaluation is not available yet";

/// The objects the operator creates for a Schedule (none until its workload controller lands).
pub fn desired(_object: &Schedule, _config: &Config) -> Vec<Value> {
    Vec::new()
}
