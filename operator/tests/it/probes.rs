use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use http::{Request, StatusCode};
use prometheus::Registry;
use stellaops_controllers::metrics::Metrics;
use stellaops_operator::http::{Probes, router};
use tower::ServiceExt;

async fn get(probes: &Probes, path: &str) -> (StatusCode, String) {
    let response = router(probes.clone())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let registry = Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let probes = Probes {
        registry,
        ready: Arc::new(AtomicBool::new(false)),
    };

    assert_eq!(get(&probes, "/healthz").await.0, StatusCode::OK);
    assert_eq!(
        get(&probes, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    probes.ready.store(true, Ordering::Relaxed);
    assert_eq!(get(&probes, "/readyz").await.0, StatusCode::OK);

    metrics
        .reconciliations
        .with_label_values(&["Scan", "ok"])
        .inc();
    let (status, body) = get(&probes, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(r#"stellaops_reconciliations_total{kind="Scan",result="ok"} 1"#),
        "{body}"
    );
}
