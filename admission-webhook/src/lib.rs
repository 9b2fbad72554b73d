//! Zastava, the admission webhook: reading AdmissionReviews safely, finding every image a
//! workload runs, applying ZastavaPolicies (a pure decision over gathered evidence),
//! verifying cosign signatures, looking up scan verdicts, and the TLS server around it.

pub mod attestation;
pub mod bundle;
pub mod cache;
pub mod cosign;
pub mod evidence;
pub mod keyless;
pub mod keys;
pub mod policy;
pub mod review;
pub mod server;
pub mod timestamp;
pub mod workload;
