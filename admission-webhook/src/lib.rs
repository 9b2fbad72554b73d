//! Zastava, the admission webhook. This crate holds the parts that do not depend on a
//! policy yet: reading an AdmissionReview safely and finding every image a workload runs.
//! Policy evaluation and the TLS server build on these.

pub mod review;
pub mod workload;
