//! `stellaops-worker federation serve`: the seed's HTTP API.
//!
//! * `POST /api/v1/federation/import` (`Content-Type: application/zstd`) with the seed's
//!   query parameters `dry_run`, `skip_signature`, `on_conflict`, `force`; answers the
//!   seed's response JSON.
//! * `GET /api/v1/federation/sync/status`: every site's sync state and the local cursor.
//! * `GET /metrics` (the seed's `federation_*` metrics), `/healthz`, `/readyz`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use stellaops_federation::bundle::BundleError;
use stellaops_federation::cursor::Cursor;
use stellaops_federation::dsse::TrustedKeys;
use stellaops_federation::import::{ImportError, ImportOptions, OnConflict, import};
use stellaops_federation::sites;

/// Shared state of the API.
pub struct ApiState {
    /// The store.
    pub pool: PgPool,
    /// Keys trusted to sign bundles.
    pub trusted: TrustedKeys,
    /// Largest request body accepted.
    pub max_bundle_size_bytes: u64,
}

#[derive(Deserialize, Default)]
struct ImportQuery {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    skip_signature: bool,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    on_conflict: Option<String>,
}

/// The router.
pub fn router(state: Arc<ApiState>) -> Router {
    let limit = usize::try_from(state.max_bundle_size_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route(
            "/api/v1/federation/import",
            post(import_bundle).layer(DefaultBodyLimit::max(limit)),
        )
        .route("/api/v1/federation/sync/status", get(sync_status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

fn error_status(error: &ImportError) -> StatusCode {
    match error {
        ImportError::Bundle(BundleError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        ImportError::Bundle(BundleError::Unsigned | BundleError::BadSignature(_))
        | ImportError::SkipNotTrusted
        | ImportError::SiteNotAllowed(_)
        | ImportError::SourceNotAllowed { .. } => StatusCode::FORBIDDEN,
        ImportError::CursorNotAfter { .. }
        | ImportError::CursorGap { .. }
        | ImportError::AlreadyImported(_)
        | ImportError::Conflict { .. } => StatusCode::CONFLICT,
        ImportError::Database(_) | ImportError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn import_bundle(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !matches!(
        content_type,
        "application/zstd" | "application/octet-stream"
    ) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            axum::Json(json!({"success": false, "error": "send the bundle with Content-Type: application/zstd"})),
        )
            .into_response();
    }
    let on_conflict = match query
        .on_conflict
        .as_deref()
        .map(str::parse::<OnConflict>)
        .transpose()
    {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"success": false, "error": e})),
            )
                .into_response();
        }
    };
    let options = ImportOptions {
        dry_run: query.dry_run,
        skip_signature: query.skip_signature,
        force: query.force,
        on_conflict,
        expected_hash: None,
        max_bundle_size_bytes: state.max_bundle_size_bytes,
    };
    let started = std::time::Instant::now();
    let result = import(&state.pool, &body, &options, &state.trusted).await;
    crate::metrics::IMPORT_DURATION.observe(started.elapsed().as_secs_f64());
    crate::metrics::BUNDLE_SIZE.observe(body.len() as f64);
    match result {
        Ok(response) => {
            crate::metrics::record_import(&response);
            (StatusCode::OK, axum::Json(json!(response))).into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "federation import refused");
            (
                error_status(&error),
                axum::Json(json!({"success": false, "error": error.to_string()})),
            )
                .into_response()
        }
    }
}

async fn sync_status(State(state): State<Arc<ApiState>>) -> Response {
    let sites = match sites::list(&state.pool).await {
        Ok(sites) => sites,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let local = stellaops_store::advisories::latest_change(&state.pool)
        .await
        .ok()
        .flatten();
    let sites: Vec<_> = sites
        .into_iter()
        .map(|s| {
            json!({"site_id": s.site_id, "enabled": s.enabled, "last_sync_at": s.last_sync_at,
                   "last_cursor": s.last_cursor, "bundles_imported": s.bundles_imported,
                   "total_items_imported": s.total_items_imported})
        })
        .collect();
    axum::Json(json!({"sites": sites, "local_cursor": local.map(|p| Cursor { at: p.at, seq: p.seq }.to_string())}))
        .into_response()
}

async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    match sqlx::query("SELECT 1").execute(&state.pool).await {
        Ok(_) => (StatusCode::OK, "ok").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}")).into_response(),
    }
}

async fn metrics() -> Response {
    use prometheus::Encoder;
    let mut body = Vec::new();
    // Touch the metrics so they appear before the first import.
    let _ = (
        &*crate::metrics::IMPORT_DURATION,
        &*crate::metrics::EXPORT_DURATION,
        &*crate::metrics::BUNDLE_SIZE,
    );
    let _ = (
        &*crate::metrics::ITEMS_PROCESSED,
        &*crate::metrics::CONFLICTS,
    );
    match prometheus::TextEncoder::new().encode(&prometheus::gather(), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Resolves on SIGINT or SIGTERM (what Kubernetes sends before killing a Pod).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            return;
        }
    }
    let _ = ctrl_c.await;
}
