-- The Usage view (EntryTrace): which components of an image its entrypoint uses (NULL:
-- not known — no Entrypoint/Cmd, or the program it names is not in the image, or the
-- row predates the Usage view), and the Usage SBOM each result points to beside the
-- Inventory SBOM, with the number of used components.
ALTER TABLE image_packages ADD COLUMN used_by_entrypoint boolean;
ALTER TABLE scan_results
    ADD COLUMN usage_sbom_uri text,
    ADD COLUMN usage_sbom_sha256 text,
    ADD COLUMN used_components integer;
