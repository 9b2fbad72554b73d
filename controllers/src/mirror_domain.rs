//! MirrorDomain controller.
//!
//! Will own the PVC, sync CronJob, server Deployment and Service of a mirror.

use serde_json::Value;
use stellaops_crds::MirrorDomain;

use crate::context::Config;

/// What this kind still waits for before it becomes `Ready`.
pub const AWAITING: &str = "the mirror sync and server are not available yet";

/// The objects the operator creates for a MirrorDomain (none until its workload controller lands).
pub fn desired(_object: &MirrorDomain, _config: &Config) -> Vec<Value> {
    Vec::new()
}
