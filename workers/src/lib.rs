//! The data-plane worker, `stellaops-worker`: the code run inside the Jobs, CronJobs and
//! Deployments the operator creates.

pub mod evaluate;
pub mod federation_api;
pub mod federation_cli;
pub mod metrics;
pub mod mirror;
pub mod notify;
pub mod progress;
pub use stellaops_registry as registry;
pub mod scan;
pub mod termination;
pub mod vex;
pub use stellaops_tls as tls;
