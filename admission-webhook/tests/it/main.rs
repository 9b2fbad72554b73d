//! Zastava tests with real AdmissionReview documents.

mod attestation;
mod bundle;
mod deadline;
mod keyed_log;
mod keyless;
mod keys;
mod material;
mod policy;
mod referrers;
mod registry;
mod review;
mod scan_policy;
mod server;
mod timestamps;
