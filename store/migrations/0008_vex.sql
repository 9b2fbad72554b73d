-- VEX (high-level architecture §4.2): each provider's documents, the current version of
-- each, and its statements. A newer version of a document replaces its statements.

CREATE TABLE vex_documents (
    id              BIGSERIAL   PRIMARY KEY,
    provider        TEXT        NOT NULL,
    document_id     TEXT        NOT NULL,
    format          TEXT        NOT NULL,
    version         TEXT        NOT NULL,
    -- The version's order (an integer, or MAJOR.MINOR.PATCH).
    version_key     BIGINT[]    NOT NULL,
    sha256          TEXT        NOT NULL,
    issued_at       TIMESTAMPTZ,
    ingested_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (provider, document_id)
);

CREATE TABLE vex_statements (
    id              BIGSERIAL   PRIMARY KEY,
    document        BIGINT      NOT NULL REFERENCES vex_documents (id) ON DELETE CASCADE,
    vulnerability   TEXT        NOT NULL,
    aliases         TEXT[]      NOT NULL DEFAULT '{}',
    -- type/namespace/name of the purl (no version, qualifiers or subpath): what lookups use.
    purl_base       TEXT,
    purl            TEXT,
    image_digest    TEXT,
    status          TEXT        NOT NULL CHECK (status IN ('not_affected', 'affected', 'fixed', 'under_investigation')),
    justification   TEXT,
    impact          TEXT,
    action          TEXT,
    stated_at       TIMESTAMPTZ
);

CREATE INDEX vex_statements_document ON vex_statements (document);
CREATE INDEX vex_statements_vulnerability ON vex_statements (vulnerability);
CREATE INDEX vex_statements_aliases ON vex_statements USING GIN (aliases);
CREATE INDEX vex_statements_purl_base ON vex_statements (purl_base);
CREATE INDEX vex_statements_image ON vex_statements (image_digest) WHERE image_digest IS NOT NULL;
