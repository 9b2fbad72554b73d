//! Zastava tests with real AdmissionReview documents.

mod policy;
mod registry;
mod review;
mod server;
