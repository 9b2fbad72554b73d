//! Prometheus metrics of the controllers, registered once in a shared registry.
//!
//! Names follow the seeds where they name one (`scheduler.impacted_images_total` becomes
//! `scheduler_impacted_images_total`, `scheduler.selection_ms` becomes
//! `scheduler_selection_seconds`: Prometheus wants base units). Scan Jobs live too briefly
//! to be scraped, so the operator counts their results from the termination message the
//! worker leaves (verdict, latency, image size, layer cache hits). Every metric is listed in
//! docs/metrics.md; a test compares that list with what the running operator exposes.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Reconcile metrics, labelled by kind, and what the controllers observe of their work.
#[derive(Clone)]
pub struct Metrics {
    /// Reconciles by kind and result (`ok` or `error`).
    pub reconciliations: IntCounterVec,
    /// Failed reconciles by kind and error variant.
    pub failures: IntCounterVec,
    /// Reconcile duration by kind, successes and failures alike.
    pub duration: HistogramVec,
    /// Finished Scans by result (`succeeded`, `failed`, `reused`).
    pub scans: IntCounterVec,
    /// Verdicts of finished Scans (`Pass`, `Warn`, `Fail`), reused results included.
    pub verdicts: IntCounterVec,
    /// Scan creation → result, by compressed image size bucket.
    pub scan_latency: HistogramVec,
    /// Layer lookups of scan workers in the per-layer S3 cache (`hit`, `miss`).
    pub layer_cache: IntCounterVec,
    /// Images a Schedule run selected for re-evaluation (after `onlyIf` and `maxScans`).
    pub impacted_images: IntCounter,
    /// Work a Schedule run started: `evaluate` Jobs and content-refresh Scans.
    pub jobs_enqueued: IntCounter,
    /// Time to select a Schedule run's running images.
    pub selection: prometheus::Histogram,
    /// A FederationSite's `status.cursorLagSeconds`.
    pub federation_cursor_lag: IntGaugeVec,
    /// When the webhook's serving certificate expires (Unix seconds).
    pub webhook_certificate_expiry: IntGauge,
}

/// The size bucket a scan latency is filed under, from the image's compressed layer bytes.
pub fn size_bucket(bytes: Option<u64>) -> &'static str {
    const MIB: u64 = 1024 * 1024;
    match bytes {
        None => "unknown",
        Some(b) if b < 50 * MIB => "small",
        Some(b) if b < 500 * MIB => "medium",
        Some(_) => "large",
    }
}

impl Metrics {
    /// Create the metrics and register them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Metrics {
            reconciliations: IntCounterVec::new(
                Opts::new(
                    "stellaops_reconciliations_total",
                    "Reconciles by kind and result",
                ),
                &["kind", "result"],
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "stellaops_reconcile_errors_total",
                    "Failed reconciles by kind and error",
                ),
                &["kind", "error"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "stellaops_reconcile_duration_seconds",
                    "Reconcile duration by kind, failed reconciles included",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["kind"],
            )?,
            scans: IntCounterVec::new(
                Opts::new(
                    "scanner_scans_total",
                    "Finished Scans by result (succeeded, failed, reused)",
                ),
                &["result"],
            )?,
            verdicts: IntCounterVec::new(
                Opts::new(
                    "scanner_verdicts_total",
                    "Verdicts of finished Scans, reused results included",
                ),
                &["verdict"],
            )?,
            scan_latency: HistogramVec::new(
                HistogramOpts::new(
                    "scanner_scan_latency_seconds",
                    "Scan created to result recorded, by image size (small < 50 MiB, medium < 500 MiB, large)",
                )
                .buckets(vec![
                    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                ]),
                &["size"],
            )?,
            layer_cache: IntCounterVec::new(
                Opts::new(
                    "scanner_layer_cache_lookups_total",
                    "Image layers scan workers found in the per-layer cache (hit) or analysed (miss); refused: cached fragments that failed their seal check (forged or changed) and were analysed again (also counted as miss)",
                ),
                &["result"],
            )?,
            impacted_images: IntCounter::new(
                "scheduler_impacted_images_total",
                "Images Schedule runs selected for re-evaluation",
            )?,
            jobs_enqueued: IntCounter::new(
                "scheduler_jobs_enqueued_total",
                "Evaluate Jobs and content-refresh Scans Schedule runs created",
            )?,
            selection: prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "scheduler_selection_seconds",
                    "Time to select the running images of a Schedule run",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            )?,
            federation_cursor_lag: IntGaugeVec::new(
                Opts::new(
                    "federation_cursor_lag_seconds",
                    "How far a FederationSite's cursor is behind (status.cursorLagSeconds)",
                ),
                &["namespace", "site"],
            )?,
            webhook_certificate_expiry: IntGauge::new(
                "zastava_certificate_expiry_timestamp_seconds",
                "When the admission webhook's serving certificate expires (Unix time)",
            )?,
        };
        // Every label value known in advance starts at zero, so a rate or ratio is there
        // from the first scrape (absent and zero differ to alerts and dashboards).
        for kind in stellaops_crds::KINDS {
            for result in ["ok", "error"] {
                metrics.reconciliations.with_label_values(&[kind, result]);
            }
            metrics.duration.with_label_values(&[kind]);
            for error in crate::Error::METRIC_LABELS {
                metrics.failures.with_label_values(&[kind, error]);
            }
        }
        for result in ["succeeded", "failed", "reused"] {
            metrics.scans.with_label_values(&[result]);
        }
        for verdict in ["Pass", "Warn", "Fail"] {
            metrics.verdicts.with_label_values(&[verdict]);
        }
        for result in ["hit", "miss", "refused"] {
            metrics.layer_cache.with_label_values(&[result]);
        }
        for size in ["small", "medium", "large", "unknown"] {
            metrics.scan_latency.with_label_values(&[size]);
        }
        registry.register(Box::new(metrics.reconciliations.clone()))?;
        registry.register(Box::new(metrics.failures.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        registry.register(Box::new(metrics.scans.clone()))?;
        registry.register(Box::new(metrics.verdicts.clone()))?;
        registry.register(Box::new(metrics.scan_latency.clone()))?;
        registry.register(Box::new(metrics.layer_cache.clone()))?;
        registry.register(Box::new(metrics.impacted_images.clone()))?;
        registry.register(Box::new(metrics.jobs_enqueued.clone()))?;
        registry.register(Box::new(metrics.selection.clone()))?;
        registry.register(Box::new(metrics.federation_cursor_lag.clone()))?;
        registry.register(Box::new(metrics.webhook_certificate_expiry.clone()))?;
        Ok(metrics)
    }

    /// Metrics in a private registry, for tests.
    pub fn unregistered() -> Self {
        Metrics::register(&Registry::new()).expect("fresh registry accepts metrics")
    }
}
