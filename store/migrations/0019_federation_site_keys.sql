-- Keys trusted to sign a federation partner's bundles, one row per (site, key). A key here
-- verifies only its own site's bundles; `federation sites keys add|list|revoke` manages
-- them, and import, sync and serve read them at each import (in addition to any
-- `--trusted-key` files; a key revoked or past `not_after` here is not trusted for its
-- site even when a file names it).
CREATE TABLE federation_site_keys (
    site_id        text        NOT NULL REFERENCES federation_sites (site_id) ON DELETE CASCADE,
    -- sha256:<hex> of the key's SubjectPublicKeyInfo DER, as in a DSSE signature's keyid.
    key_id         text        NOT NULL,
    public_key_pem text        NOT NULL,
    added_at       timestamptz NOT NULL DEFAULT now(),
    not_after      timestamptz,
    revoked_at     timestamptz,
    PRIMARY KEY (site_id, key_id)
);
