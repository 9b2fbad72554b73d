-- Scan results (Scan): one row per image scan, its findings, and the package index that
-- lets an advisory delta find the images it affects (Schedule).

CREATE TABLE scan_results (
    id                 BIGSERIAL   PRIMARY KEY,
    image_digest       TEXT        NOT NULL,
    image_ref          TEXT        NOT NULL,
    -- The advisory change sequence the findings were matched at: a later scan of the
    -- same digest at the same snapshot would find the same.
    advisory_snapshot  BIGINT      NOT NULL,
    scan_namespace     TEXT,
    scan_name          TEXT,
    scan_uid           TEXT,
    sbom_uri           TEXT        NOT NULL,
    sbom_sha256        TEXT        NOT NULL,
    components         INT         NOT NULL,
    critical           INT         NOT NULL DEFAULT 0,
    high               INT         NOT NULL DEFAULT 0,
    medium             INT         NOT NULL DEFAULT 0,
    low                INT         NOT NULL DEFAULT 0,
    verdict            TEXT        NOT NULL CHECK (verdict IN ('Pass', 'Warn', 'Fail')),
    policy             JSONB       NOT NULL DEFAULT '{}',
    started_at         TIMESTAMPTZ NOT NULL,
    finished_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX scan_results_digest ON scan_results (image_digest, finished_at DESC);
CREATE INDEX scan_results_scan ON scan_results (scan_uid);

CREATE TABLE scan_findings (
    scan_id        BIGINT NOT NULL REFERENCES scan_results (id) ON DELETE CASCADE,
    merge_hash     TEXT   NOT NULL,
    vuln_id        TEXT   NOT NULL,
    purl           TEXT   NOT NULL,
    severity       TEXT,
    fixed_version  TEXT,
    layer_digest   TEXT,
    PRIMARY KEY (scan_id, merge_hash, purl)
);

-- Which package (by affects key: package URL without version) each scanned image holds.
CREATE TABLE image_packages (
    image_digest  TEXT NOT NULL,
    affects_key   TEXT NOT NULL,
    purl          TEXT NOT NULL,
    PRIMARY KEY (image_digest, purl)
);

CREATE INDEX image_packages_affects_key ON image_packages (affects_key);
