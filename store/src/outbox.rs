//! The events outbox: append in the producer's transaction, read in id order.

use serde_json::Value;
use sqlx::{FromRow, PgExecutor, PgPool};

use crate::Result;

/// Channel on which inserts are announced (`LISTEN stellaops_events`).
pub const NOTIFY_CHANNEL: &str = "stellaops_events";

/// An event to append.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Event kind, such as `report.ready`.
    pub kind: String,
    /// Namespace of the subject, when it has one.
    pub namespace: Option<String>,
    /// What the event is about (an image digest, a site id, a release).
    pub subject: String,
    /// Highest severity involved, when there is one.
    pub severity: Option<String>,
    /// Kind-specific body.
    pub payload: Value,
    /// Producer's key; a second append with the same key is ignored.
    pub idempotency_key: String,
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct Event {
    /// Position in the outbox.
    pub id: i64,
    /// Event kind.
    pub kind: String,
    /// Namespace of the subject.
    pub namespace: Option<String>,
    /// Subject.
    pub subject: String,
    /// Severity.
    pub severity: Option<String>,
    /// Body.
    pub payload: Value,
    /// Producer's key.
    pub idempotency_key: String,
}

/// Append `event`; returns its id, or `None` when an event with the same idempotency key
/// already exists. Pass a transaction to make the event part of the producer's change.
/// The current span's trace context is stored with it, so its notification's delivery span
/// continues the producer's trace.
pub async fn publish<'e>(executor: impl PgExecutor<'e>, event: &NewEvent) -> Result<Option<i64>> {
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO events_outbox (kind, namespace, subject, severity, payload, idempotency_key, traceparent)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING id",
    )
    .bind(&event.kind)
    .bind(&event.namespace)
    .bind(&event.subject)
    .bind(&event.severity)
    .bind(&event.payload)
    .bind(&event.idempotency_key)
    .bind(stellaops_telemetry::current_traceparent())
    .fetch_optional(executor)
    .await?;
    Ok(id)
}

/// Append many events in order with one statement per thousand; events whose
/// idempotency key exists already are skipped. Returns how many were added. Each carries
/// the current span's trace context, as with [`publish`].
pub async fn publish_many(conn: &mut sqlx::PgConnection, events: &[NewEvent]) -> Result<u64> {
    let mut added = 0;
    let traceparent = stellaops_telemetry::current_traceparent();
    for chunk in events.chunks(1_000) {
        let rows: Vec<Value> = chunk
            .iter()
            .map(|e| {
                serde_json::json!({"kind": e.kind, "namespace": e.namespace, "subject": e.subject,
                                   "severity": e.severity, "payload": e.payload, "idempotency_key": e.idempotency_key,
                                   "traceparent": traceparent})
            })
            .collect();
        added += sqlx::query(
            "INSERT INTO events_outbox (kind, namespace, subject, severity, payload, idempotency_key, traceparent)
             SELECT x.kind, x.namespace, x.subject, x.severity, x.payload, x.idempotency_key, x.traceparent
             FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(doc, ord),
                  LATERAL jsonb_to_record(e.doc) AS x(kind text, namespace text, subject text, severity text,
                                                      payload jsonb, idempotency_key text, traceparent text)
             ORDER BY e.ord
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(Value::Array(rows))
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(added)
}

/// Events after `after_id`, oldest first, at most `limit`.
pub async fn read_after(pool: &PgPool, after_id: i64, limit: i64) -> Result<Vec<Event>> {
    Ok(sqlx::query_as::<_, Event>(
        "SELECT id, kind, namespace, subject, severity, payload, idempotency_key
         FROM events_outbox WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
