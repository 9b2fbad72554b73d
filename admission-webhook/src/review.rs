//! Reading AdmissionReview v1 bodies: anything malformed becomes an `invalid` answer.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

/// The review to send back when a body cannot be used (boxed: it is large).
pub type Refusal = Box<AdmissionReview<DynamicObject>>;

fn invalid(reason: String) -> Refusal {
    Box::new(AdmissionResponse::invalid(reason).into_review())
}

/// Parse an AdmissionReview body. On any problem returns the review to send back: an
/// `invalid` response that names what was wrong (the API server then applies the
/// webhook's failure policy). Never panics.
pub fn parse(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, Refusal> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("malformed AdmissionReview: {e}")))?;
    review
        .try_into()
        .map_err(|e| invalid(format!("AdmissionReview without a usable request: {e}")))
}
