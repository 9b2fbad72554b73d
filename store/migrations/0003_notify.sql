-- Notification delivery (NotifyRule): what was planned from which event, every delivery
-- with its state, every attempt, and digest contents. See docs/notify.md.

-- A consumer of the events outbox (one per notify worker group). Events at or below
-- `watermark` are all planned; above it, `notify_planned` says which are.
CREATE TABLE notify_consumers (
    consumer   TEXT PRIMARY KEY,
    watermark  BIGINT NOT NULL DEFAULT 0
);

-- Events above the watermark already planned (outbox ids can commit out of order, so a
-- bare cursor could skip an event that commits late).
CREATE TABLE notify_planned (
    consumer   TEXT   NOT NULL,
    event_id   BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- One row per (event, rule, action) — or per (rule, action, window) for digests. The
-- unique idempotency key is what makes a delivery happen at most once.
CREATE TABLE notify_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    idempotency_key  TEXT        NOT NULL UNIQUE,
    rule_namespace   TEXT        NOT NULL,
    rule_name        TEXT        NOT NULL,
    action           TEXT        NOT NULL,
    channel          TEXT        NOT NULL,
    event_id         BIGINT,
    subject          TEXT        NOT NULL,
    -- pending: waiting for next_attempt_at; sending: leased by a worker until
    -- lease_until; sent; throttled: suppressed repeat (counted, never sent);
    -- dead: gave up (dead letter).
    state            TEXT        NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'throttled', 'dead')),
    -- Repeats of the same (rule, action, subject) within a throttle window are suppressed.
    throttle_key     TEXT,
    -- For digests: the window's start.
    digest_window    TIMESTAMPTZ,
    attempts         INT         NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_token      TEXT,
    lease_until      TIMESTAMPTZ,
    -- The event (or, for digests, nothing: items are in notify_digest_items).
    event            JSONB       NOT NULL DEFAULT '{}',
    last_status      INT,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at          TIMESTAMPTZ
);

CREATE INDEX notify_deliveries_due ON notify_deliveries (next_attempt_at)
    WHERE state IN ('pending', 'sending');
CREATE INDEX notify_deliveries_rule ON notify_deliveries (rule_namespace, rule_name, state);
CREATE INDEX notify_deliveries_throttle ON notify_deliveries (throttle_key, created_at)
    WHERE throttle_key IS NOT NULL;

-- Events collected into a digest delivery.
CREATE TABLE notify_digest_items (
    delivery_id  BIGINT NOT NULL REFERENCES notify_deliveries (id) ON DELETE CASCADE,
    event_id     BIGINT NOT NULL,
    event        JSONB  NOT NULL,
    PRIMARY KEY (delivery_id, event_id)
);

-- Every attempt: when, answer, how long, why it failed.
CREATE TABLE notify_attempts (
    id           BIGSERIAL PRIMARY KEY,
    delivery_id  BIGINT      NOT NULL REFERENCES notify_deliveries (id) ON DELETE CASCADE,
    at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    status_code  INT,
    latency_ms   INT         NOT NULL,
    error        TEXT
);

CREATE INDEX notify_attempts_delivery ON notify_attempts (delivery_id);
