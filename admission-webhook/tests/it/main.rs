//! Zastava tests with real AdmissionReview documents.

mod review;
