-- The reports API (reports.stella-ops.org) reads the latest result per Scan and per image
-- digest at a resourceVersion (a result id): both in key order, from these indexes.
CREATE INDEX scan_results_report ON scan_results (scan_namespace, scan_name, id DESC)
    WHERE scan_namespace IS NOT NULL AND scan_name IS NOT NULL;
CREATE INDEX scan_results_digest_id ON scan_results (image_digest, id DESC);
