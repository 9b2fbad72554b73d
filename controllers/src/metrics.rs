//! Prometheus metrics of the controllers, registered once in a shared registry.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Reconcile metrics, labelled by kind.
#[derive(Clone)]
pub struct Metrics {
    /// Reconciles by kind and result (`ok` or `error`).
    pub reconciliations: IntCounterVec,
    /// Failed reconciles by kind and error variant.
    pub failures: IntCounterVec,
    /// Reconcile duration by kind.
    pub duration: HistogramVec,
}

impl Metrics {
    /// Create the metrics and register them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "stellaops_reconciliations_total",
                "Reconciles by kind and result",
            ),
            &["kind", "result"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "stellaops_reconcile_errors_total",
                "Failed reconciles by kind and error",
            ),
            &["kind", "error"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "stellaops_reconcile_duration_seconds",
                "Reconcile duration by kind",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["kind"],
        )?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Metrics {
            reconciliations,
            failures,
            duration,
        })
    }

    /// Metrics in a private registry, for tests.
    pub fn unregistered() -> Self {
        Metrics::register(&Registry::new()).expect("fresh registry accepts metrics")
    }
}
