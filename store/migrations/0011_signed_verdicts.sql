-- Signed verdicts: each result row carries the DSSE envelope of its in-toto Statement (the
-- exact bytes, also stored in S3 under attestation_key = attest/<sha256>.dsse.json).
-- Whatever trusts a verdict verifies the envelope; a row without one counts as not scanned.

ALTER TABLE scan_results
    ADD COLUMN attestation_key TEXT,
    ADD COLUMN attestation     BYTEA;
