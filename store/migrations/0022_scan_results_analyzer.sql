-- The scanner's analyzer version whose inventory a result judged. A result is reused only
-- by the analyzer that made it: after an upgrade that reads more (a new ecosystem, a
-- license reader), an image scanned before at the same advisory snapshot is scanned again
-- instead of reporting the old inventory. Rows recorded before this column existed are 0,
-- which no analyzer is.
ALTER TABLE scan_results ADD COLUMN analyzer integer NOT NULL DEFAULT 0;
