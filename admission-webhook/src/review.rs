//! Reading AdmissionReview v1 bodies: anything malformed becomes an `invalid` answer.
//!
//! Only what a decision needs is read (uid, kind, namespace, name, operation, user and
//! the objects as JSON): the webhook sits in every Pod creation, so the body is parsed
//! once, without the intermediate buffering a fully typed object would cost.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionResponse, AdmissionReview, Operation};
use serde::Deserialize;
use serde_json::Value;

/// The review to send back when a body cannot be used (boxed: it is large).
pub type Refusal = Box<AdmissionReview<DynamicObject>>;

fn invalid(reason: String) -> Refusal {
    Box::new(AdmissionResponse::invalid(reason).into_review())
}

/// The parts of an AdmissionRequest the webhook uses.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Request identifier, echoed in the response.
    pub uid: String,
    /// Kind of the object (`Pod`, `Deployment`, …).
    pub kind: Kind,
    /// Namespace of the object.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name of the object (empty for generated names).
    #[serde(default)]
    pub name: String,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: Operation,
    /// Who asked.
    #[serde(default)]
    pub user_info: UserInfo,
    /// The object as submitted.
    #[serde(default)]
    pub object: Option<Value>,
    /// The object before an update.
    #[serde(default)]
    pub old_object: Option<Value>,
    /// A server-side dry run: decide, but record nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Group/version/kind of the request's object (only the kind is used).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Kind {
    /// Kind name.
    pub kind: String,
}

/// The requesting user.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct UserInfo {
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
}

#[derive(Deserialize)]
struct Review {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    request: Option<Request>,
}

impl Request {
    /// An `allowed` response for this request, ready for a decision to amend.
    pub fn allow(&self) -> AdmissionResponse {
        // AdmissionResponse is non-exhaustive: start from the only public constructor
        // that needs no typed request, then make it an admission of this uid.
        let mut response = AdmissionResponse::invalid("");
        response.uid = self.uid.clone();
        response.allowed = true;
        response.result = Default::default();
        response
    }
}

/// Parse an AdmissionReview body. On any problem returns the review to send back: an
/// `invalid` response that names what was wrong (the API server then applies the
/// webhook's failure policy). Never panics.
pub fn parse(body: &[u8]) -> Result<Request, Refusal> {
    let review: Review = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("malformed AdmissionReview: {e}")))?;
    if review.api_version != "admission.k8s.io/v1" {
        return Err(invalid(format!(
            "AdmissionReview apiVersion {:?} is not admission.k8s.io/v1",
            review.api_version
        )));
    }
    review
        .request
        .ok_or_else(|| invalid("AdmissionReview without a request".to_string()))
}
