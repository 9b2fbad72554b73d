//! The operator's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};

/// Connections the probe and metrics endpoints (the operator's and the webhook's health
/// port) serve at once, and the time a client has to send its request's headers: kubelet
/// and Prometheus need a few; anything else costs a bounded amount.
pub const PROBE_LIMITS: stellaops_tls::ConnectionLimits = stellaops_tls::ConnectionLimits {
    max_connections: 64,
    header_read_timeout: std::time::Duration::from_secs(10),
};

/// Shared state of the probe and metrics endpoints.
#[derive(Clone)]
pub struct Probes {
    /// Prometheus registry exported at `/metrics`.
    pub registry: Registry,
    /// Set once the operator has reached the API server (leader or standby).
    pub ready: Arc<AtomicBool>,
}

/// The router serving the three endpoints.
pub fn router(probes: Probes) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(probes)
}

async fn metrics(State(probes): State<Probes>) -> impl IntoResponse {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&probes.registry.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(probes): State<Probes>) -> impl IntoResponse {
    if probes.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to the Kubernetes API yet",
        )
    }
}
