//! Errors in the API server's `Status` shape, so kubectl prints them as it prints its own
//! (`Error from server (NotFound): …`).

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::kinds::Kind;

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub code: u16,
    /// `NotFound`, `Forbidden`, `Unauthorized`, `Expired`, `BadRequest`, …
    pub reason: &'static str,
    /// For a person.
    pub message: String,
    /// `details` (name, group, kind), when the error is about one object.
    pub details: Option<Value>,
}

impl ApiError {
    /// An error without details.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 401.
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// 404 for an object of `kind`.
    pub fn not_found(kind: Kind, name: &str) -> ApiError {
        ApiError {
            details: Some(json!({"name": name, "group": crate::GROUP, "kind": kind.plural()})),
            ..ApiError::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", kind.group_resource()),
            )
        }
    }

    /// 404 for a path that is no resource.
    pub fn page_not_found() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 500.
    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = http::StatusCode::from_u16(self.code)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        (
            code,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

impl From<stellaops_store::Error> for ApiError {
    fn from(error: stellaops_store::Error) -> ApiError {
        tracing::warn!(%error, "reading reports failed");
        ApiError::internal(error)
    }
}
