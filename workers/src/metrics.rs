//! The seed's federation metrics, in the process-wide default registry.

use std::sync::LazyLock;

use prometheus::{
    Histogram, HistogramOpts, IntCounterVec, Opts, register_histogram, register_int_counter_vec,
};
use stellaops_federation::import::ImportResponse;

/// `federation_export_duration_seconds`.
pub static EXPORT_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(HistogramOpts::new(
        "federation_export_duration_seconds",
        "Export time"
    ))
    .expect("registers once")
});

/// `federation_import_duration_seconds`.
pub static IMPORT_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(HistogramOpts::new(
        "federation_import_duration_seconds",
        "Import time"
    ))
    .expect("registers once")
});

/// `federation_bundle_size_bytes`.
pub static BUNDLE_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        HistogramOpts::new("federation_bundle_size_bytes", "Bundle sizes")
            .buckets(prometheus::exponential_buckets(1024.0, 4.0, 12).expect("valid buckets"))
    )
    .expect("registers once")
});

/// `federation_items_processed_total{type}`.
pub static ITEMS_PROCESSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "federation_items_processed_total",
            "Items processed by type"
        ),
        &["type"]
    )
    .expect("registers once")
});

/// `federation_conflicts_total{resolution}`.
pub static CONFLICTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new("federation_conflicts_total", "Merge conflicts encountered"),
        &["resolution"]
    )
    .expect("registers once")
});

/// `federation_auth_refused_total{reason}`: requests to `federation serve` refused for
/// authentication: `bad_credentials` (a wrong token, a certificate naming no site),
/// `site_mismatch` (a token or certificate used for another site's bundle),
/// `rate_limited` (the address is over its failure limit).
pub static AUTH_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "federation_auth_refused_total",
            "Federation API requests refused for authentication, by reason"
        ),
        &["reason"]
    )
    .expect("registers once")
});

/// Count an import's items and conflicts (a dry run processed nothing).
pub fn record_import(response: &ImportResponse) {
    if response.dry_run {
        return;
    }
    let c = &response.counts;
    for (kind, n) in [
        ("canonical_created", c.canonical_created),
        ("canonical_updated", c.canonical_updated),
        ("canonical_skipped", c.canonical_skipped),
        ("edge", c.edges_added),
        ("deletion", c.deletions_processed),
    ] {
        ITEMS_PROCESSED.with_label_values(&[kind]).inc_by(n);
    }
    for conflict in &response.conflicts {
        let resolution = serde_json::to_value(conflict.resolution)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        CONFLICTS.with_label_values(&[&resolution]).inc();
    }
}
