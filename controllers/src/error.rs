//! The one error type of the controllers.

/// Why a reconcile failed. Variant names double as metric labels and condition reasons.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be (de)serialized.
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
    /// The object lacks something the API server always sets (name, namespace).
    #[error("object is missing {0}")]
    MissingField(&'static str),
    /// Appending to the events outbox failed (the reconcile is retried; keys make it safe).
    #[error("events outbox: {0}")]
    Outbox(#[from] stellaops_store::Error),
    /// Issuing a webhook certificate failed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The spec passed the schema but cannot be used (a selector the API rejects).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The finalizer could not be handled (an object without name or namespace).
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// A shared cache's watch ended before its first full list (the operator is stopping).
    #[error("cache not ready: {0}")]
    CacheNotReady(String),
}

impl Error {
    /// Every value [`Error::metric_label`] gives, so the error counters can start at zero.
    pub const METRIC_LABELS: [&'static str; 6] = [
        "Kube",
        "Serialization",
        "MissingField",
        "Outbox",
        "Certificate",
        "InvalidSpec",
    ];

    /// Short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "Kube",
            Error::Serialization(_) => "Serialization",
            Error::MissingField(_) => "MissingField",
            Error::Outbox(_) => "Outbox",
            Error::Certificate(_) => "Certificate",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Finalizer(_) => "Finalizer",
            Error::CacheNotReady(_) => "CacheNotReady",
        }
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
