//! AdmissionReview bodies as the API server (or anyone reaching the port) sends them, and
//! the image discovery that follows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_admission_webhook::{review, workload};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = review::parse(data)
        && let Some(object) = &request.object
    {
        let _ = workload::images(&request.kind.kind, object);
    }
});
