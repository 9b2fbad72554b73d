//! AdmissionReview bodies as the API server (or anyone reaching the port) sends them, and
//! the image discovery that follows: the object read straight from the body must find what
//! walking the same object's JSON tree finds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_admission_webhook::{review, workload};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = review::parse(data) else {
        return;
    };
    let Some(object) = &request.object else {
        return;
    };
    let found = object.images(&request.kind.kind);
    // The tree may refuse what the reader skipped unread (nesting deeper than 128, a
    // number out of range); where both read it they must agree.
    if let Ok(tree) = serde_json::from_slice::<serde_json::Value>(data) {
        let tree = &tree["request"]["object"];
        assert_eq!(found, workload::images(&request.kind.kind, tree));
        assert_eq!(object.name(), tree["metadata"]["name"].as_str());
    }
});
