//! Zastava tests with real AdmissionReview documents.

mod policy;
mod review;
mod server;
