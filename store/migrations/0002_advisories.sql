-- The canonical advisory store and federation state.
--
-- Every change to canonicals, source edges and deletions takes the next value of
-- advisory_change_seq; federation cursors ({ISO-8601}#{seq}) point into it. Writers
-- serialise on an advisory lock (see stellaops_store::advisories::lock_changes) so
-- sequence numbers become visible in order and an exporter never skips one.

CREATE SEQUENCE advisory_change_seq;

-- One canonical per (vulnerability, package): the unit that sites exchange.
CREATE TABLE canonical_advisories (
    merge_hash    TEXT        PRIMARY KEY,            -- sha256:<hex> of "vuln_id|affects_key"
    vuln_id       TEXT        NOT NULL,               -- CVE id when known, else the source id
    cve           TEXT,
    aliases       TEXT[]      NOT NULL DEFAULT '{}',
    affects_key   TEXT        NOT NULL,               -- package URL without version
    ecosystem     TEXT        NOT NULL,
    ranges        JSONB       NOT NULL DEFAULT '[]',  -- OSV-style ranges with events
    versions      TEXT[]      NOT NULL DEFAULT '{}',  -- explicitly affected versions
    severity      TEXT        CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    cvss          JSONB,
    summary       TEXT,
    published     TIMESTAMPTZ,
    modified      TIMESTAMPTZ,
    withdrawn     TIMESTAMPTZ,
    content_hash  TEXT        NOT NULL,               -- sha256 of document
    document      TEXT        NOT NULL,               -- the canonical JSON, as exported
    origin_site   TEXT,                               -- NULL: ingested here
    change_seq    BIGINT      NOT NULL,
    changed_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX canonical_advisories_change_seq ON canonical_advisories (change_seq);
CREATE INDEX canonical_advisories_affects_key ON canonical_advisories (affects_key);
CREATE INDEX canonical_advisories_cve ON canonical_advisories (cve);

-- Which source documents a canonical came from.
CREATE TABLE advisory_source_edges (
    merge_hash          TEXT        NOT NULL REFERENCES canonical_advisories (merge_hash) ON DELETE CASCADE,
    source              TEXT        NOT NULL,         -- nvd, ghsa, debian, osv, ...
    source_advisory_id  TEXT        NOT NULL,
    document_hash       TEXT        NOT NULL,         -- sha256 of the source document
    fetched_at          TIMESTAMPTZ NOT NULL,
    document            TEXT        NOT NULL,         -- the edge JSON, as exported
    change_seq          BIGINT      NOT NULL,
    changed_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (merge_hash, source, source_advisory_id)
);
CREATE UNIQUE INDEX advisory_source_edges_change_seq ON advisory_source_edges (change_seq);

-- Canonicals that were withdrawn or deleted (a recreated canonical removes its row).
CREATE TABLE advisory_deletions (
    merge_hash  TEXT        PRIMARY KEY,
    reason      TEXT        NOT NULL,
    change_seq  BIGINT      NOT NULL,
    changed_at  TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX advisory_deletions_change_seq ON advisory_deletions (change_seq);

-- Federation partners and their policy; the cursor is in the partner's sequence.
CREATE TABLE federation_sites (
    site_id               TEXT        PRIMARY KEY,
    display_name          TEXT,
    enabled               BOOLEAN     NOT NULL DEFAULT TRUE,
    max_bundle_size_bytes BIGINT      NOT NULL DEFAULT 104857600,
    allowed_sources       TEXT[]      NOT NULL DEFAULT '{}',
    require_signature     BOOLEAN     NOT NULL DEFAULT TRUE,
    skip_signature_trusted BOOLEAN    NOT NULL DEFAULT FALSE,
    last_cursor           TEXT,
    last_sync_at          TIMESTAMPTZ,
    bundles_imported      BIGINT      NOT NULL DEFAULT 0,
    total_items_imported  BIGINT      NOT NULL DEFAULT 0
);

-- Every import attempt, successful or not (dry runs are not recorded).
CREATE TABLE federation_sync_history (
    id           BIGSERIAL   PRIMARY KEY,
    site_id      TEXT        NOT NULL,
    bundle_hash  TEXT        NOT NULL,
    since_cursor TEXT,
    cursor       TEXT,
    success      BOOLEAN     NOT NULL,
    counts       JSONB       NOT NULL DEFAULT '{}',
    error        TEXT,
    duration_ms  BIGINT      NOT NULL,
    finished_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX federation_sync_history_site ON federation_sync_history (site_id, id DESC);

-- Bundles applied, so a duplicate is recognised.
CREATE TABLE federation_imported_bundles (
    bundle_hash  TEXT        PRIMARY KEY,
    site_id      TEXT        NOT NULL,
    cursor       TEXT        NOT NULL,
    imported_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
