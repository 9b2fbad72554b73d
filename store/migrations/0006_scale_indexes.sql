-- Indexes for the hot lookups at scale (issue 18).

-- Scan reuse: the latest result of a digest at an advisory snapshot
-- (`image_digest = $1 AND advisory_snapshot = $2 ORDER BY id DESC LIMIT 1`).
CREATE INDEX scan_results_reuse ON scan_results (image_digest, advisory_snapshot, id DESC);

-- A rule's latest delivery error: per delivery of the rule, its newest failed attempt.
CREATE INDEX notify_attempts_errors ON notify_attempts (delivery_id, id DESC)
    WHERE error IS NOT NULL;
