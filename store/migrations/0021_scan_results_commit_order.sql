-- Result ids commit in order. The reports API's resourceVersion is a result id: a LIST
-- is "every result with id <= rv" and a WATCH sends results with id > rv. A writer that
-- took id 41 and committed after id 42 was read would be in neither, so every INSERT
-- into scan_results first takes this transaction-level lock (held until its commit or
-- rollback) before its ids are drawn: a transaction's ids are taken only after every
-- earlier writer has ended, so once an id is visible no lower one can still appear.
-- Writers hold it only for their database work (uploads happen before the INSERT); the
-- federation change sequence uses (7305814, 1) the same way.
CREATE FUNCTION scan_results_commit_order() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7305814, 2);
    RETURN NULL;
END
$$;

CREATE TRIGGER scan_results_commit_order
    BEFORE INSERT ON scan_results
    FOR EACH STATEMENT EXECUTE FUNCTION scan_results_commit_order();
