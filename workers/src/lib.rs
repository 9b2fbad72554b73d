//! The data-plane worker, `stellaops-worker`: the code run inside the Jobs, CronJobs and
//! Deployments the operator creates.

pub mod registry;
