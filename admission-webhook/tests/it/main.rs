//! Zastava tests with real AdmissionReview documents.

mod deadline;
mod policy;
mod registry;
mod review;
mod server;
