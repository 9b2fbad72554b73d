-- Results decided under a ScanPolicy name it in their policy (`policyRef`): a change of
-- that policy, or the expiry of one of its waivers, re-evaluates exactly those.
CREATE INDEX scan_results_policy_ref ON scan_results ((policy->>'policyRef'))
    WHERE policy ? 'policyRef';
