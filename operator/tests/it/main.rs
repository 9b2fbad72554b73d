//! Operator tests: CLI, preview, CRD drift, leader election, probes, packaging, the Dockerfile,
//! dashboards and alerts, GitOps health checks, CI workflow.

mod cli;
mod crd_drift;
mod dockerfile;
mod e2e;
mod gitops;
mod install;
mod leader;
mod monitoring;
mod packaging;
mod preview;
mod probes;
mod startup;
mod verdict_keys;
mod workflows;

use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
