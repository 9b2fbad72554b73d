-- What decided each finding (a VEX consensus, a policy rule, or the thresholds) and the
-- policy's digest: results say why they are what they are.

ALTER TABLE scan_findings ADD COLUMN outcome TEXT;
ALTER TABLE scan_findings ADD COLUMN decided_by TEXT;
ALTER TABLE scan_findings ADD COLUMN reason TEXT;
ALTER TABLE scan_results ADD COLUMN policy_digest TEXT;
