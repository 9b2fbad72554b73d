//! Notification delivery records (NotifyRule): the rules the notify worker runs, planning
//! events from the outbox into deliveries, leasing due deliveries, recording attempts,
//! and the per-rule counts the operator shows. See docs/notify.md.
//!
//! Guarantees come from the schema: one delivery row per idempotency key
//! (`event/<event id>/<namespace>/<rule>/<action>` or
//! `digest/<namespace>/<rule>/<action>/<window>`), planning and the consumer's progress
//! committed together, and a delivery leased to one worker at a time.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{FromRow, PgPool, Row};

use crate::Result;

/// What the notify worker runs: every enabled, valid rule of its namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyConfig {
    /// Outbox consumer name (progress is kept per consumer).
    pub consumer: String,
    /// The rules.
    pub rules: Vec<RuleConfig>,
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleConfig {
    /// Namespace of the NotifyRule.
    pub namespace: String,
    /// Name of the NotifyRule.
    pub name: String,
    /// Event kinds taken.
    pub event_kinds: Vec<String>,
    /// Lowest severity taken (`low` … `critical`); events without one always match.
    #[serde(default)]
    pub min_severity: Option<String>,
    /// Namespace globs; empty matches every namespace.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// The only namespace whose events the rule may see (rules outside the platform
    /// namespace); `None` for the platform's own rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Also take events whose findings are all VEX `not_affected` with an accepted justification.
    #[serde(default)]
    pub include_accepted_vex: bool,
    /// Where matching events go.
    pub actions: Vec<ActionConfig>,
}

/// One action of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionConfig {
    /// Action name, unique in the rule.
    pub name: String,
    /// `slack`, `teams`, `email` or `webhook`.
    pub channel: String,
    /// Slack channel, Teams channel, or email recipient.
    #[serde(default)]
    pub target: String,
    /// `concise`, `detailed`, or a Secret key holding a custom template.
    pub template: String,
    /// Suppress repeats of the same subject for this many seconds.
    #[serde(default)]
    pub throttle_seconds: Option<i64>,
    /// `none`, `hourly` or `daily`.
    #[serde(default = "none")]
    pub digest: String,
    /// Directory where the action's Secret is mounted (one file per key).
    pub secret_dir: String,
}

fn none() -> String {
    "none".to_string()
}

/// An outbox event as the notify worker sees it.
#[derive(Clone, Debug, PartialEq, FromRow, Serialize, Deserialize)]
pub struct NotifyEvent {
    /// Outbox id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: Option<String>,
    /// Subject.
    pub subject: String,
    /// Severity.
    pub severity: Option<String>,
    /// Body.
    pub payload: Value,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Trace context of the span that wrote it (W3C `traceparent`), carried into the
    /// delivery so its span continues that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Shell-style glob with `*` and `?`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Prefix of the Secret keys a custom template may be read from.
pub const TEMPLATE_KEY_PREFIX: &str = "template.";

/// Whether `rule` takes `event`.
pub fn matches(rule: &RuleConfig, event: &NotifyEvent) -> bool {
    if !rule.event_kinds.contains(&event.kind) {
        return false;
    }
    // A tenant's rule sees only events about its own namespace (platform-wide events such
    // as federation imports have none).
    if let Some(scope) = &rule.scope
        && event.namespace.as_deref() != Some(scope.as_str())
    {
        return false;
    }
    if let (Some(min), Some(severity)) = (&rule.min_severity, &event.severity)
        && stellaops_policy::evaluate::rank(severity) < stellaops_policy::evaluate::rank(min)
    {
        return false;
    }
    if !rule.namespaces.is_empty() {
        let Some(ns) = &event.namespace else {
            return false;
        };
        if !rule.namespaces.iter().any(|g| glob_match(g, ns)) {
            return false;
        }
    }
    // Producers mark events whose findings a VEX statement accepts as not affecting.
    if !rule.include_accepted_vex && event.payload["vex"]["acceptedOnly"] == Value::Bool(true) {
        return false;
    }
    true
}

/// The window a digest collects into at `at`: (start, end).
pub fn digest_window(digest: &str, at: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let length = match digest {
        "hourly" => Duration::hours(1),
        "daily" => Duration::days(1),
        _ => return None,
    };
    let start = at.duration_trunc(length).ok()?;
    Some((start, start + length))
}

/// How long after its window a digest is sent: planning transactions that started inside
/// the window have committed by then, so no event of the window misses it.
pub const DIGEST_GRACE_SECONDS: i64 = 60;

/// What one planning pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanReport {
    /// Events read.
    pub events: u64,
    /// Deliveries created (pending).
    pub deliveries: u64,
    /// Repeats suppressed by a throttle.
    pub throttled: u64,
    /// Events added to a digest.
    pub digested: u64,
    /// Another worker holds the consumer: nothing done.
    pub busy: bool,
}

/// Plan the events the consumer has not planned yet (at most `limit`) into deliveries,
/// in one transaction with the consumer's progress. Several workers may call this at
/// once: one plans, the others return `busy`.
///
/// `grace_seconds` bounds how long an outbox writer's transaction may take: an event id
/// is never skipped for having committed after a higher one, unless it commits more than
/// that long after it was written.
pub async fn plan(
    pool: &PgPool,
    config: &NotifyConfig,
    limit: i64,
    grace_seconds: i64,
) -> Result<PlanReport> {
    let mut report = PlanReport::default();
    let kinds: Vec<String> = {
        let mut k: Vec<String> = config
            .rules
            .iter()
            .flat_map(|r| r.event_kinds.iter().cloned())
            .collect();
        k.sort();
        k.dedup();
        k
    };
    sqlx::query("INSERT INTO notify_consumers (consumer) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(&config.consumer)
        .execute(pool)
        .await?;
    let mut tx = pool.begin().await?;
    let Some(row) = sqlx::query(
        "SELECT watermark, now() AS now FROM notify_consumers WHERE consumer = $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(&config.consumer)
    .fetch_optional(&mut *tx)
    .await?
    else {
        report.busy = true;
        return Ok(report);
    };
    let watermark: i64 = row.get("watermark");
    let now: DateTime<Utc> = row.get("now");
    let events: Vec<NotifyEvent> = sqlx::query_as(
        "SELECT e.id, e.kind, e.namespace, e.subject, e.severity, e.payload, e.created_at, e.traceparent
         FROM events_outbox e
         WHERE e.id > $1 AND e.kind = ANY($2)
           AND NOT EXISTS (SELECT 1 FROM notify_planned p WHERE p.consumer = $3 AND p.event_id = e.id)
         ORDER BY e.id LIMIT $4",
    )
    .bind(watermark)
    .bind(&kinds)
    .bind(&config.consumer)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    report.events = events.len() as u64;
    for event in &events {
        for rule in config.rules.iter().filter(|r| matches(r, event)) {
            for action in &rule.actions {
                plan_one(&mut tx, rule, action, event, now, &mut report).await?;
            }
        }
    }
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    sqlx::query(
        "INSERT INTO notify_planned (consumer, event_id) SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
    )
    .bind(&config.consumer)
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    // Move the watermark over everything old enough that no earlier id can still commit,
    // but only when this pass planned every visible event (a full batch leaves more).
    if (events.len() as i64) < limit {
        let new_watermark: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(id), $1) FROM events_outbox
             WHERE id > $1 AND created_at < now() - make_interval(secs => $2)",
        )
        .bind(watermark)
        .bind(grace_seconds as f64)
        .fetch_one(&mut *tx)
        .await?;
        if new_watermark > watermark {
            sqlx::query("UPDATE notify_consumers SET watermark = $2 WHERE consumer = $1")
                .bind(&config.consumer)
                .bind(new_watermark)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM notify_planned WHERE consumer = $1 AND event_id <= $2")
                .bind(&config.consumer)
                .bind(new_watermark)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(report)
}

async fn plan_one(
    tx: &mut sqlx::PgConnection,
    rule: &RuleConfig,
    action: &ActionConfig,
    event: &NotifyEvent,
    now: DateTime<Utc>,
    report: &mut PlanReport,
) -> Result<()> {
    let event_json = serde_json::to_value(event).expect("events serialize");
    if let Some((start, end)) = digest_window(&action.digest, now) {
        let key = format!(
            "digest/{}/{}/{}/{}",
            rule.namespace,
            rule.name,
            action.name,
            start.to_rfc3339()
        );
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO notify_deliveries
               (idempotency_key, rule_namespace, rule_name, action, channel, subject, state, digest_window, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, 'digest', 'pending', $6, $7)
             ON CONFLICT (idempotency_key) DO UPDATE SET idempotency_key = EXCLUDED.idempotency_key
             RETURNING id",
        )
        .bind(&key)
        .bind(&rule.namespace)
        .bind(&rule.name)
        .bind(&action.name)
        .bind(&action.channel)
        .bind(start)
        .bind(end + Duration::seconds(DIGEST_GRACE_SECONDS))
        .fetch_one(&mut *tx)
        .await?;
        let added = sqlx::query(
            "INSERT INTO notify_digest_items (delivery_id, event_id, event) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(event.id)
        .bind(&event_json)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        report.digested += added;
        return Ok(());
    }
    let key = format!(
        "event/{}/{}/{}/{}",
        event.id, rule.namespace, rule.name, action.name
    );
    let throttle_key = action.throttle_seconds.map(|_| {
        format!(
            "{}/{}/{}/{}",
            rule.namespace, rule.name, action.name, event.subject
        )
    });
    let throttled = match (&throttle_key, action.throttle_seconds) {
        (Some(k), Some(seconds)) => {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM notify_deliveries
                            WHERE throttle_key = $1 AND state IN ('pending', 'sending', 'sent')
                              AND created_at > $2 - make_interval(secs => $3))",
            )
            .bind(k)
            .bind(now)
            .bind(seconds as f64)
            .fetch_one(&mut *tx)
            .await?
        }
        _ => false,
    };
    let inserted = sqlx::query(
        "INSERT INTO notify_deliveries
           (idempotency_key, rule_namespace, rule_name, action, channel, event_id, subject, state, throttle_key, event, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(&key)
    .bind(&rule.namespace)
    .bind(&rule.name)
    .bind(&action.name)
    .bind(&action.channel)
    .bind(event.id)
    .bind(&event.subject)
    .bind(if throttled { "throttled" } else { "pending" })
    .bind(&throttle_key)
    .bind(&event_json)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if throttled {
        report.throttled += inserted;
    } else {
        report.deliveries += inserted;
    }
    Ok(())
}

/// A delivery leased to this worker.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct Lease {
    /// Row id.
    pub id: i64,
    /// Idempotency key (also sent to receivers, which can deduplicate on it).
    pub idempotency_key: String,
    /// Rule namespace.
    pub rule_namespace: String,
    /// Rule name.
    pub rule_name: String,
    /// Action name.
    pub action: String,
    /// Channel.
    pub channel: String,
    /// Subject.
    pub subject: String,
    /// Attempt number (1 for the first).
    pub attempts: i32,
    /// The event (empty for digests).
    pub event: Value,
    /// Digest window start.
    pub digest_window: Option<DateTime<Utc>>,
    /// The lease's token.
    pub lease_token: String,
}

/// Lease up to `limit` due deliveries for `lease_seconds`: pending ones whose time has
/// come, and ones whose previous lease expired (a worker died mid-delivery).
pub async fn lease_due(
    pool: &PgPool,
    token: &str,
    limit: i64,
    lease_seconds: i64,
) -> Result<Vec<Lease>> {
    Ok(sqlx::query_as(
        "UPDATE notify_deliveries d
         SET state = 'sending', lease_token = $1, lease_until = now() + make_interval(secs => $3),
             attempts = d.attempts + 1
         WHERE d.id IN (SELECT id FROM notify_deliveries
                        WHERE (state = 'pending' AND next_attempt_at <= now())
                           OR (state = 'sending' AND lease_until < now())
                        ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING d.id, d.idempotency_key, d.rule_namespace, d.rule_name, d.action, d.channel,
                   d.subject, d.attempts, d.event, d.digest_window, d.lease_token",
    )
    .bind(token)
    .bind(limit)
    .bind(lease_seconds as f64)
    .fetch_all(pool)
    .await?)
}

/// The events of a digest delivery, oldest first.
pub async fn digest_items(pool: &PgPool, delivery_id: i64) -> Result<Vec<Value>> {
    Ok(sqlx::query_scalar(
        "SELECT event FROM notify_digest_items WHERE delivery_id = $1 ORDER BY event_id",
    )
    .bind(delivery_id)
    .fetch_all(pool)
    .await?)
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// Try again at this time.
    Retry(DateTime<Utc>),
    /// Give up (dead letter).
    Dead,
}

/// Record an attempt and its outcome. Only the lease holder can: returns false when the
/// lease was lost (taken over after expiring), in which case nothing is changed.
pub async fn finish(
    pool: &PgPool,
    lease: &Lease,
    outcome: &Outcome,
    status_code: Option<u16>,
    latency_ms: i64,
    error: Option<&str>,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let (state, next): (&str, Option<DateTime<Utc>>) = match outcome {
        Outcome::Sent => ("sent", None),
        Outcome::Retry(at) => ("pending", Some(*at)),
        Outcome::Dead => ("dead", None),
    };
    let updated = sqlx::query(
        "UPDATE notify_deliveries
         SET state = $3, next_attempt_at = coalesce($4, next_attempt_at),
             sent_at = CASE WHEN $3 = 'sent' THEN now() ELSE sent_at END,
             last_status = $5, last_error = $6, lease_token = NULL, lease_until = NULL
         WHERE id = $1 AND lease_token = $2 AND state = 'sending'",
    )
    .bind(lease.id)
    .bind(&lease.lease_token)
    .bind(state)
    .bind(next)
    .bind(status_code.map(i32::from))
    .bind(error)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(
        "INSERT INTO notify_attempts (delivery_id, status_code, latency_ms, error) VALUES ($1, $2, $3, $4)",
    )
    .bind(lease.id)
    .bind(status_code.map(i32::from))
    .bind(latency_ms.min(i64::from(i32::MAX)) as i32)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(updated == 1)
}

/// When the next pending delivery is due, if any.
pub async fn next_due(pool: &PgPool) -> Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar(
        "SELECT min(CASE WHEN state = 'pending' THEN next_attempt_at ELSE lease_until END)
         FROM notify_deliveries WHERE state IN ('pending', 'sending')",
    )
    .fetch_one(pool)
    .await?)
}

/// What the operator shows for one rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleCounts {
    /// Delivered.
    pub sent: i64,
    /// Suppressed repeats.
    pub throttled: i64,
    /// Dead-lettered.
    pub failed: i64,
    /// Waiting or being retried.
    pub pending: i64,
    /// Latest delivery.
    pub last_delivery_at: Option<DateTime<Utc>>,
    /// Latest failed attempt's error.
    pub last_error: Option<String>,
}

/// A rule's latest delivery error: from the rule's deliveries (index `notify_deliveries_rule`)
/// to each one's newest failed attempt (index `notify_attempts_errors`), never a walk over
/// every attempt of every rule.
pub const LAST_ERROR_SQL: &str = "SELECT a.error FROM notify_deliveries d
     CROSS JOIN LATERAL (
         SELECT id, error FROM notify_attempts
         WHERE delivery_id = d.id AND error IS NOT NULL
         ORDER BY id DESC LIMIT 1
     ) a
     WHERE d.rule_namespace = $1 AND d.rule_name = $2
     ORDER BY a.id DESC LIMIT 1";

/// Counts of one rule's deliveries.
pub async fn rule_counts(pool: &PgPool, namespace: &str, name: &str) -> Result<RuleCounts> {
    let mut counts = RuleCounts::default();
    let rows = sqlx::query(
        "SELECT state, count(*) AS n, max(sent_at) AS last FROM notify_deliveries
         WHERE rule_namespace = $1 AND rule_name = $2 GROUP BY state",
    )
    .bind(namespace)
    .bind(name)
    .fetch_all(pool)
    .await?;
    for row in rows {
        let n: i64 = row.get("n");
        match row.get::<String, _>("state").as_str() {
            "sent" => {
                counts.sent = n;
                counts.last_delivery_at = row.get("last");
            }
            "throttled" => counts.throttled = n,
            "dead" => counts.failed = n,
            _ => counts.pending += n,
        }
    }
    counts.last_error = sqlx::query_scalar(LAST_ERROR_SQL)
        .bind(namespace)
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("prod-*", "prod-eu"));
        assert!(!glob_match("prod-*", "staging"));
        assert!(glob_match("*", ""));
        assert!(glob_match("p?od-*-1", "prod-eu-1"));
        assert!(!glob_match("prod", "prod-eu"));
    }

    #[test]
    fn windows_are_clock_aligned() {
        let at: DateTime<Utc> = "2026-11-22T10:17:03Z".parse().unwrap();
        let (s, e) = digest_window("hourly", at).unwrap();
        assert_eq!(s.to_rfc3339(), "2026-11-22T10:00:00+00:00");
        assert_eq!(e.to_rfc3339(), "2026-11-22T11:00:00+00:00");
        let (s, _) = digest_window("daily", at).unwrap();
        assert_eq!(s.to_rfc3339(), "2026-11-22T00:00:00+00:00");
        assert_eq!(digest_window("none", at), None);
    }

    fn event(kind: &str, ns: Option<&str>, severity: Option<&str>) -> NotifyEvent {
        NotifyEvent {
            id: 1,
            kind: kind.into(),
            namespace: ns.map(Into::into),
            subject: "sha256:abc".into(),
            severity: severity.map(Into::into),
            payload: serde_json::json!({}),
            created_at: Utc::now(),
            traceparent: None,
        }
    }

    #[test]
    fn matching_follows_kind_severity_namespace_and_vex() {
        let rule = RuleConfig {
            namespace: "stellaops".into(),
            name: "r".into(),
            event_kinds: vec!["report.ready".into(), "release.failed".into()],
            min_severity: Some("high".into()),
            namespaces: vec!["prod-*".into()],
            scope: None,
            include_accepted_vex: false,
            actions: vec![],
        };
        assert!(matches(
            &rule,
            &event("report.ready", Some("prod-eu"), Some("critical"))
        ));
        assert!(!matches(
            &rule,
            &event("report.ready", Some("prod-eu"), Some("medium"))
        ));
        assert!(!matches(
            &rule,
            &event("report.ready", Some("dev"), Some("critical"))
        ));
        assert!(!matches(
            &rule,
            &event("rescan.delta", Some("prod-eu"), Some("critical"))
        ));
        assert!(!matches(
            &rule,
            &event("report.ready", None, Some("critical"))
        ));
        assert!(matches(
            &rule,
            &event("release.failed", Some("prod-a"), None)
        ));
        let mut vex = event("report.ready", Some("prod-eu"), Some("high"));
        vex.payload = serde_json::json!({"vex": {"acceptedOnly": true}});
        assert!(!matches(&rule, &vex));
        let lenient = RuleConfig {
            include_accepted_vex: true,
            ..rule
        };
        assert!(matches(&lenient, &vex));
    }

    #[test]
    fn a_tenant_rule_sees_only_its_own_namespace() {
        let rule = RuleConfig {
            namespace: "team-a".into(),
            name: "r".into(),
            event_kinds: vec!["report.ready".into(), "federation.imported".into()],
            min_severity: None,
            // Globs cannot widen the scope.
            namespaces: vec!["*".into()],
            scope: Some("team-a".into()),
            include_accepted_vex: false,
            actions: vec![],
        };
        assert!(matches(&rule, &event("report.ready", Some("team-a"), None)));
        assert!(!matches(
            &rule,
            &event("report.ready", Some("team-b"), None)
        ));
        // Platform-wide events (no namespace) are the platform's.
        assert!(!matches(&rule, &event("federation.imported", None, None)));
    }
}
