//! Reading AdmissionReview v1 bodies: anything malformed becomes an `invalid` answer.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

/// Parse an AdmissionReview body. On any problem returns the review to send back: an
/// `invalid` response that names what was wrong (the API server then applies the
/// webhook's failure policy). Never panics.
pub fn parse(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, AdmissionReview<DynamicObject>> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
        .map_err(|e| AdmissionResponse::invalid(format!("malformed AdmissionReview: {e}")).into_review())?;
    review
        .try_into()
        .map_err(|e| AdmissionResponse::invalid(format!("AdmissionReview without a usable request: {e}")).into_review())
}
