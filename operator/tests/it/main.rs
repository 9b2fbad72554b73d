//! Operator tests: CLI, preview, CRD drift, leader election, probes, packaging, the Dockerfile.

mod cli;
mod crd_drift;
mod dockerfile;
mod e2e;
mod leader;
mod packaging;
mod preview;
mod probes;
mod startup;

use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
