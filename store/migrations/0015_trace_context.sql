-- The W3C trace context (`traceparent`) of the span that appended an event, so the notify
-- worker's delivery span continues the producer's trace (docs/tracing.md). NULL when the
-- producer was not traced. Bounded: a traceparent is 55 characters (version 00).
ALTER TABLE events_outbox ADD COLUMN traceparent text
    CHECK (traceparent IS NULL OR length(traceparent) <= 256);
