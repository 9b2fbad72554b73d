-- License rules (ScanPolicy spec.licenses): the license each component of a scanned image
-- declares, and for each result the components a license rule decided.
--
-- `declared` is the SPDX expression in normal form (operators upper case, needed
-- parentheses only) or, when the declaration is not an SPDX expression, the text as given;
-- `license_ids` holds the license ids of the expression (empty: the license is not known
-- to the rules). Components declaring nothing have no row.
CREATE TABLE image_licenses (
    image_digest text   NOT NULL,
    purl         text   NOT NULL,
    declared     text   NOT NULL,
    license_ids  text[] NOT NULL,
    PRIMARY KEY (image_digest, purl)
);

CREATE TABLE scan_license_decisions (
    scan_id    bigint NOT NULL REFERENCES scan_results (id) ON DELETE CASCADE,
    purl       text   NOT NULL,
    license    text   NOT NULL,
    outcome    text   NOT NULL CHECK (outcome IN ('fails', 'warns')),
    decided_by text   NOT NULL,
    reason     text   NOT NULL,
    PRIMARY KEY (scan_id, purl)
);
