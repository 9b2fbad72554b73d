-- Artifact lifecycle passes (release-and-operations §7): what each pass over a bucket did,
-- and whether a bucket rule would expire compliance artifacts (read by the Platform's
-- upgrade checklist).

CREATE TABLE artifact_lifecycle_passes (
    id                  BIGSERIAL   PRIMARY KEY,
    bucket              TEXT        NOT NULL,
    pass                JSONB       NOT NULL,
    compliance_at_risk  TEXT,
    finished_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX artifact_lifecycle_passes_bucket ON artifact_lifecycle_passes (bucket, id DESC);
