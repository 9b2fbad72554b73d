//! Reading AdmissionReview v1 bodies: anything malformed becomes an `invalid` answer.
//!
//! Only what a decision needs is read (uid, kind, namespace, name, operation, user, dry
//! run, and of the objects their name and containers), borrowed from the body where JSON
//! allows: the webhook sits in every Pod creation, so the body is parsed once, into these
//! few fields, and the rest of it is skipped unread (see [`crate::workload::Workload`]).

use std::borrow::Cow;
use std::sync::OnceLock;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionResponse, AdmissionReview, Operation};
use serde::{Deserialize, Deserializer};

use crate::workload::Workload;

/// The review to send back when a body cannot be used (boxed: it is large).
pub type Refusal = Box<AdmissionReview<DynamicObject>>;

fn invalid(reason: String) -> Refusal {
    Box::new(AdmissionResponse::invalid(reason).into_review())
}

/// The parts of an AdmissionRequest the webhook uses.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    /// Request identifier, echoed in the response.
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    /// Kind of the object (`Pod`, `Deployment`, …).
    #[serde(borrow)]
    pub kind: Kind<'a>,
    /// Namespace of the object.
    #[serde(default, borrow, deserialize_with = "optional_str")]
    pub namespace: Option<Cow<'a, str>>,
    /// Name of the object (empty for generated names).
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: Operation,
    /// Who asked.
    #[serde(default, borrow)]
    pub user_info: UserInfo<'a>,
    /// The object as submitted (what image discovery reads of it).
    #[serde(default, borrow)]
    pub object: Option<Workload<'a>>,
    /// The object before an update.
    #[serde(default, borrow)]
    pub old_object: Option<Workload<'a>>,
    /// A server-side dry run: decide, but record nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Group/version/kind of the request's object (only the kind is used).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Kind<'a> {
    /// Kind name.
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

/// The requesting user.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct UserInfo<'a> {
    /// User name.
    #[serde(default, borrow, deserialize_with = "optional_str")]
    pub username: Option<Cow<'a, str>>,
}

/// `null` or a string (borrowed when it has no escapes); anything else is an error, as
/// for `Option<String>`.
fn optional_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'de>>::deserialize(d)?.map(|b| b.0))
}

#[derive(Deserialize)]
struct Review<'a> {
    #[serde(rename = "apiVersion", default, borrow)]
    api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    request: Option<Request<'a>>,
}

/// An `allowed` response for the request `uid`, ready for a decision to amend.
pub fn allow(uid: &str) -> AdmissionResponse {
    // AdmissionResponse is non-exhaustive: start from the only public constructor
    // that needs no typed request, then make it an admission of this uid.
    let mut response = AdmissionResponse::invalid("");
    response.uid = uid.to_string();
    response.allowed = true;
    response.result = Default::default();
    response
}

impl Request<'_> {
    /// An `allowed` response for this request, ready for a decision to amend.
    pub fn allow(&self) -> AdmissionResponse {
        allow(&self.uid)
    }
}

/// The AdmissionReview admitting the request `uid` with nothing to say, serialized: the
/// same bytes as serializing [`allow`]'s review, from a template rendered once by that
/// serialization, with only the uid (escaped as JSON) put in per request.
pub fn allowed_review(uid: &str) -> Vec<u8> {
    static TEMPLATE: OnceLock<Option<(Vec<u8>, Vec<u8>)>> = OnceLock::new();
    const MARK: &str = "zastava-uid-placeholder";
    let template = TEMPLATE.get_or_init(|| {
        let rendered = serde_json::to_vec(&allow(MARK).into_review()).ok()?;
        let mark = format!("\"{MARK}\"");
        let at = rendered
            .windows(mark.len())
            .position(|w| w == mark.as_bytes())?;
        Some((
            rendered[..at].to_vec(),
            rendered[at + mark.len()..].to_vec(),
        ))
    });
    match template {
        Some((before, after)) => {
            let mut out = Vec::with_capacity(before.len() + uid.len() + 2 + after.len());
            out.extend_from_slice(before);
            // Escaping a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, uid);
            out.extend_from_slice(after);
            out
        }
        None => serde_json::to_vec(&allow(uid).into_review()).unwrap_or_default(),
    }
}

/// Parse an AdmissionReview body. On any problem returns the review to send back: an
/// `invalid` response that names what was wrong (the API server then applies the
/// webhook's failure policy). Never panics.
pub fn parse(body: &[u8]) -> Result<Request<'_>, Refusal> {
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
