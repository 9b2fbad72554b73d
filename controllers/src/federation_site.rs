//! FederationSite controller.
//!
//! Will own the CronJob that runs federation import or export.

use serde_json::Value;
use stellaops_crds::FederationSite;

use crate::context::Config;

/// What this kind still waits for before it becomes `Ready`.
pub const AWAITING: &str = "the federation sync CronJob is not available yet";

/// The objects the operator creates for a FederationSite (none until its workload controller lands).
pub fn desired(_object: &FederationSite, _config: &Config) -> Vec<Value> {
    Vec::new()
}
