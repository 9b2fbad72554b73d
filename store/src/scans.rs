//! Scan results: the lookups the Scan controller makes (the worker writes the rows).

/// The newest verdict of a digest (`$1`) with its signed envelope: what the webhook checks.
pub const LATEST_VERDICT_SQL: &str =
    "SELECT verdict, finished_at, attestation_key, attestation FROM scan_results
     WHERE image_digest = $1 ORDER BY finished_at DESC, id DESC LIMIT 1";

/// The latest result recorded for a Scan, by its uid (`$1`).
pub const BY_SCAN_SQL: &str =
    "SELECT image_digest, sbom_uri, sbom_sha256, components, critical, high, medium, low, verdict,
            attestation_key, attestation
     FROM scan_results WHERE scan_uid = $1 ORDER BY id DESC LIMIT 1";

/// The latest result of a digest (`$1`) at an advisory snapshot (`$2`): a Scan of that
/// digest now would find the same, so it is reused. Served by index `scan_results_reuse`.
pub const REUSE_SQL: &str =
    "SELECT image_digest, sbom_uri, sbom_sha256, components, critical, high, medium, low, verdict,
            attestation_key, attestation
     FROM scan_results WHERE image_digest = $1 AND advisory_snapshot = $2 ORDER BY id DESC LIMIT 1";

/// Whether a digest (`$1`) has any recorded scan (then its inventory is stored).
pub const SCANNED_SQL: &str = "SELECT EXISTS (SELECT 1 FROM scan_results WHERE image_digest = $1)";

/// The stored inventory of a digest (`$1`): each package URL once, with its layer.
pub const INVENTORY_SQL: &str = "SELECT DISTINCT purl, layer_digest FROM image_packages
     WHERE image_digest = $1 ORDER BY purl, layer_digest";
