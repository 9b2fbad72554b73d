-- Scheduled re-evaluation.
--
-- image_packages becomes the full stored inventory an analysis-only run re-matches: one
-- row per component and affects key (a component of a distro package is stored under its
-- key with and without the distro qualifier, as advisories may use either), with the
-- version and the layer that introduced it.
ALTER TABLE image_packages
    ADD COLUMN version      TEXT NOT NULL DEFAULT '',
    ADD COLUMN layer_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE image_packages DROP CONSTRAINT image_packages_pkey;
ALTER TABLE image_packages ADD PRIMARY KEY (image_digest, purl, affects_key);

-- One row per run of a Schedule: what it selected and what it did. The id is derived from
-- the scheduled time (or the advisory change it reacts to), so creating a run twice after
-- a restart is a no-op.
CREATE TABLE schedule_runs (
    id                  TEXT        PRIMARY KEY,
    schedule_namespace  TEXT        NOT NULL,
    schedule_name       TEXT        NOT NULL,
    trigger             TEXT        NOT NULL CHECK (trigger IN ('cron', 'advisory-delta')),
    mode                TEXT        NOT NULL CHECK (mode IN ('analysis-only', 'content-refresh')),
    scheduled_at        TIMESTAMPTZ NOT NULL,
    -- Digests to evaluate (after onlyIf and maxScans), in order.
    images              TEXT[]      NOT NULL,
    selected            BIGINT      NOT NULL,
    skipped             BIGINT      NOT NULL DEFAULT 0,
    created             BIGINT      NOT NULL DEFAULT 0,
    new_findings        BIGINT      NOT NULL DEFAULT 0,
    rate_per_second     INT         NOT NULL,
    notify              BOOLEAN     NOT NULL DEFAULT false,
    min_severity        TEXT,
    started_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at         TIMESTAMPTZ,
    error               TEXT
);

CREATE INDEX schedule_runs_schedule ON schedule_runs (schedule_namespace, schedule_name, started_at DESC);

-- How far each Schedule with onAdvisoryDelta has read the advisory change sequence.
CREATE TABLE schedule_advisory_cursors (
    schedule_namespace  TEXT   NOT NULL,
    schedule_name       TEXT   NOT NULL,
    change_seq          BIGINT NOT NULL,
    PRIMARY KEY (schedule_namespace, schedule_name)
);
