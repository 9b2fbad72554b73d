//! The Stella Ops operator: CLI, runtime wiring, leader election, probes, preview, crdgen.

pub mod cli;
pub mod crdgen;
pub mod http;
pub mod leader;
pub mod preview;
pub mod reports;
pub mod runtime;
pub mod telemetry;
pub mod webhook;
