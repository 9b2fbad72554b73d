-- The platform's events outbox: every component appends events here (report.ready,
-- rescan.delta, zastava.admission, federation.imported, ...) in the same transaction as
-- the change they describe; consumers (the notify worker, Schedule's advisory trigger)
-- read it in id order and keep their own progress. Rows are never updated.
CREATE TABLE events_outbox (
    id               BIGSERIAL PRIMARY KEY,
    kind             TEXT        NOT NULL,
    namespace        TEXT,
    subject          TEXT        NOT NULL,
    severity         TEXT        CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    payload          JSONB       NOT NULL,
    -- The producer's key for this event: a retried producer cannot add it twice.
    idempotency_key  TEXT        NOT NULL UNIQUE,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Consumers of one kind (Schedule's advisory trigger reads federation.imported) find
-- their events by kind; the per-canonical import events are many and read in id order,
-- so they stay out of this index.
CREATE INDEX events_outbox_kind_id ON events_outbox (kind, id) WHERE kind <> 'canonical-imported';

-- Wake consumers waiting with LISTEN stellaops_events, once per statement (a bulk insert
-- of 100,000 events sends one notification); the payload is the highest id so far. No
-- transition table: keeping every inserted row for the trigger would cost more than the
-- one index probe.
CREATE FUNCTION events_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    newest BIGINT;
BEGIN
    SELECT max(id) INTO newest FROM events_outbox;
    IF newest IS NOT NULL THEN
        PERFORM pg_notify('stellaops_events', newest::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_outbox_notify
    AFTER INSERT ON events_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION events_outbox_notify();
