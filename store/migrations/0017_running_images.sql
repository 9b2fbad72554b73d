-- What runs where: one row per workload container with a known image digest, kept by the
-- operator's leader from its Pod cache (controllers/src/running_images.rs). The reports API
-- serves a VulnerabilityReport per row (its `report_name` in its namespace) from the latest
-- result of its digest, and lists the rows of a digest under its ImageVerdict.
CREATE TABLE running_images (
    namespace     text        NOT NULL,
    report_name   text        NOT NULL,
    workload_kind text        NOT NULL,
    workload_name text        NOT NULL,
    container     text        NOT NULL,
    image_ref     text        NOT NULL,
    image_digest  text        NOT NULL,
    seen_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, report_name)
);
CREATE INDEX running_images_digest ON running_images (image_digest, namespace, report_name);
