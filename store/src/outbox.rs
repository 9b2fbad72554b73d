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

/// One event for [`publish_copied`].
#[derive(Clone, Debug)]
pub struct BulkEvent<'a, P> {
    /// What the event is about.
    pub subject: &'a str,
    /// Highest severity involved, when there is one.
    pub severity: Option<&'a str>,
    /// Kind-specific body.
    pub payload: P,
    /// Producer's key.
    pub idempotency_key: String,
}

/// Append `events` of `kind` (no namespace, no trace context) in order through one
/// `COPY`, built while the server stores them: for a producer of many events whose keys
/// are new by construction. Unlike [`publish_many`], an existing key is not skipped but
/// fails the statement, and with it the producer's transaction. Returns how many were
/// added.
pub async fn publish_copied<'a, P: serde::Serialize>(
    conn: &mut sqlx::PgConnection,
    kind: &str,
    mut events: impl Iterator<Item = BulkEvent<'a, P>> + Send,
) -> Result<u64> {
    crate::copy::copy_in(
        conn,
        "COPY events_outbox (kind, subject, severity, payload, idempotency_key)",
        move |row| {
            let Some(event) = events.next() else {
                return false;
            };
            row.text(Some(kind))
                .text(Some(event.subject))
                .text(event.severity)
                .jsonb(Some(&event.payload))
                .text(Some(&event.idempotency_key));
            true
        },
    )
    .await
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

/// How long an outbox writer's transaction may take at most: an event id allocated up to
/// this long ago may still become visible after higher ids (the notify worker's default
/// `--grace-seconds`, too).
pub const WRITER_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

/// Reads the events of one kind as they are written, for a process that reacts to them
/// while it runs (the webhook forgetting a cached verdict, the Scan controller reading a
/// re-evaluated result). Kept in memory only: it starts with the events of the last
/// `grace` (older ones are already reflected in whatever the process read when it
/// started), and it reads again every id above its watermark it has not handed out yet,
/// so an event whose transaction commits after a later one's is not missed.
#[derive(Debug)]
pub struct Follower {
    kind: String,
    grace: std::time::Duration,
    watermark: i64,
    seen: std::collections::BTreeSet<i64>,
}

impl Follower {
    /// A follower of `kind` from the events of the last `grace` on.
    pub async fn start(pool: &PgPool, kind: &str, grace: std::time::Duration) -> Result<Follower> {
        let watermark: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(id), 0) FROM events_outbox
             WHERE created_at < now() - make_interval(secs => $1)",
        )
        .bind(grace.as_secs_f64())
        .fetch_one(pool)
        .await?;
        Ok(Follower {
            kind: kind.to_string(),
            grace,
            watermark,
            seen: Default::default(),
        })
    }

    /// The events of its kind not handed out before, oldest first, at most `limit`.
    pub async fn next(&mut self, pool: &PgPool, limit: i64) -> Result<Vec<Event>> {
        let seen: Vec<i64> = self.seen.iter().copied().collect();
        let events = sqlx::query_as::<_, Event>(
            "SELECT id, kind, namespace, subject, severity, payload, idempotency_key
             FROM events_outbox WHERE kind = $1 AND id > $2 AND NOT (id = ANY($3))
             ORDER BY id LIMIT $4",
        )
        .bind(&self.kind)
        .bind(self.watermark)
        .bind(&seen)
        .bind(limit)
        .fetch_all(pool)
        .await?;
        self.seen.extend(events.iter().map(|e| e.id));
        // Past everything old enough that no lower id can still commit, once every visible
        // event below it has been handed out (a full batch may have left some).
        if (events.len() as i64) < limit {
            let watermark: i64 = sqlx::query_scalar(
                "SELECT coalesce(max(id), $1) FROM events_outbox
                 WHERE id > $1 AND created_at < now() - make_interval(secs => $2)",
            )
            .bind(self.watermark)
            .bind(self.grace.as_secs_f64())
            .fetch_one(pool)
            .await?;
            self.watermark = watermark;
            self.seen = self.seen.split_off(&(watermark + 1));
        }
        Ok(events)
    }
}

/// Hand every batch of new events of `kind` to `handle` as they are written: woken by the
/// outbox's notifications (`LISTEN stellaops_events`, on a connection of its own, never one
/// of `pool`'s), and every `poll` besides (a notification lost with a connection). Errors
/// are logged and retried; it never returns.
pub async fn follow<F>(pool: PgPool, kind: &str, poll: std::time::Duration, mut handle: F)
where
    F: FnMut(Vec<Event>) + Send,
{
    const BATCH: i64 = 1_000;
    let retry = std::time::Duration::from_secs(1);
    let mut follower = loop {
        match Follower::start(&pool, kind, WRITER_GRACE).await {
            Ok(follower) => break follower,
            Err(error) => {
                tracing::warn!(%error, kind, "cannot read the events outbox; retrying");
                tokio::time::sleep(retry).await;
            }
        }
    };
    let listen_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut listener: Option<sqlx::postgres::PgListener> = None;
    loop {
        if listener.is_none() {
            match sqlx::postgres::PgListener::connect_with(&listen_pool).await {
                Ok(mut connected) => match connected.listen(NOTIFY_CHANNEL).await {
                    Ok(()) => listener = Some(connected),
                    Err(error) => tracing::warn!(%error, kind, "LISTEN {NOTIFY_CHANNEL} failed"),
                },
                Err(error) => tracing::warn!(%error, kind, "LISTEN {NOTIFY_CHANNEL} failed"),
            }
        }
        loop {
            match follower.next(&pool, BATCH).await {
                Ok(events) => {
                    let full = events.len() as i64 == BATCH;
                    if !events.is_empty() {
                        handle(events);
                    }
                    if !full {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, kind, "reading the events outbox");
                    break;
                }
            }
        }
        match listener.as_mut() {
            Some(connected) => {
                tokio::select! {
                    notification = connected.recv() => match notification {
                        // One read for everything announced meanwhile.
                        Ok(_) => while connected.next_buffered().is_some() {},
                        Err(error) => {
                            tracing::warn!(%error, kind, "LISTEN connection lost; reconnecting");
                            listener = None;
                            tokio::time::sleep(retry).await;
                        }
                    },
                    _ = tokio::time::sleep(poll) => {}
                }
            }
            None => tokio::time::sleep(poll.min(std::time::Duration::from_secs(5))).await,
        }
    }
}
