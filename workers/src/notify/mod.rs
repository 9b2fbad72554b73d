//! `stellaops-worker notify run`: consume the events outbox and deliver what the
//! NotifyRules ask for — to Slack, Teams, generic webhooks and email — at most once per
//! (event, rule, action), with retries, throttles and digests. Safe with any number of
//! replicas: planning is serialised on the consumer row, deliveries are leased
//! (`FOR UPDATE SKIP LOCKED`). See docs/notify.md.

pub mod smtp;
pub mod template;

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use prometheus::{HistogramVec, IntCounter, IntCounterVec};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use stellaops_store::notify::{
    self as store, ActionConfig, Lease, NotifyConfig, Outcome, RuleConfig,
};

/// `notify_sent_total{channel}`.
pub static SENT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "notify_sent_total",
        "Messages delivered, by channel",
        &["channel"]
    )
    .expect("registers once")
});

/// `notify_dropped_total{reason}` (`throttled`, `dead`).
pub static DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "notify_dropped_total",
        "Events not delivered, by reason",
        &["reason"]
    )
    .expect("registers once")
});

/// `notify_digest_coalesced_total`.
pub static COALESCED: LazyLock<IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!("notify_digest_coalesced_total", "Events added to digests")
        .expect("registers once")
});

/// `notify_latency_seconds{channel}`: event written → delivered (the seed's
/// `notify.latency_ms`, in Prometheus' base unit).
pub static LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    prometheus::register_histogram_vec!(
        "notify_latency_seconds",
        "Seconds from event written to delivered",
        &["channel"],
        prometheus::exponential_buckets(0.005, 2.0, 18).expect("valid buckets")
    )
    .expect("registers once")
});

/// Register the notify metrics with every channel and drop reason at zero, so rates and
/// ratios exist from the first scrape rather than from the first delivery.
pub fn init_metrics() {
    for channel in ["slack", "teams", "email", "webhook"] {
        SENT.with_label_values(&[channel]);
        LATENCY.with_label_values(&[channel]);
    }
    for reason in ["throttled", "dead"] {
        DROPPED.with_label_values(&[reason]);
    }
    LazyLock::force(&COALESCED);
}

/// Tuning of a worker.
#[derive(Clone, Debug)]
pub struct Options {
    /// Longest an outbox writer's transaction may take (see `store::notify::plan`).
    pub grace_seconds: i64,
    /// How long a delivery stays leased to a worker; after that another may take it over.
    pub lease_seconds: i64,
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: i32,
    /// First retry delay; doubles each attempt.
    pub base_backoff: Duration,
    /// Longest retry delay (also the cap on `Retry-After`).
    pub max_backoff: Duration,
    /// Deliveries in flight at once.
    pub concurrency: i64,
    /// Timeout of one HTTP delivery.
    pub http_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            grace_seconds: 600,
            lease_seconds: 60,
            max_attempts: 8,
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            concurrency: 32,
            http_timeout: Duration::from_secs(10),
        }
    }
}

/// Delay before attempt `attempts + 1`: exponential, capped, with ±25% jitter derived from
/// the delivery key (deterministic, so two workers agree and tests are exact), and never
/// shorter than the receiver's `Retry-After`.
pub fn backoff(
    options: &Options,
    key: &str,
    attempts: i32,
    retry_after: Option<Duration>,
) -> Duration {
    let exponent = attempts.clamp(1, 30) as u32 - 1;
    let base = options
        .base_backoff
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(options.max_backoff);
    let hash = Sha256::digest(format!("{key}#{attempts}").as_bytes());
    let jitter = 0.75 + f64::from(hash[0]) / 255.0 * 0.5;
    let delay = base.mul_f64(jitter);
    match retry_after {
        Some(wait) => delay.max(wait.min(options.max_backoff)),
        None => delay,
    }
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value.trim()).ok()?;
    (at.with_timezone(&Utc) - now).to_std().ok()
}

/// What a channel answered.
#[derive(Debug)]
struct Answer {
    status: Option<u16>,
    retry_after: Option<Duration>,
    error: Option<String>,
    permanent: bool,
}

fn read_secret(dir: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(Path::new(dir).join(key)).ok()?;
    let text = text.trim_end_matches(['\n', '\r']).to_string();
    (!text.is_empty()).then_some(text)
}

/// `sha256=<hex>` HMAC of `body` with `key`, the `X-StellaOps-Signature` header.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A message ready to go out.
struct Message {
    title: String,
    text: String,
    body: Value,
}

/// A running worker.
pub struct Worker {
    pool: PgPool,
    config: RwLock<Arc<NotifyConfig>>,
    config_path: Option<PathBuf>,
    config_mtime: RwLock<Option<SystemTime>>,
    http: reqwest::Client,
    options: Options,
    token: String,
}

impl Worker {
    /// A worker with a fixed configuration.
    pub fn new(pool: PgPool, config: NotifyConfig, options: Options) -> Self {
        let token = hex::encode(Sha256::digest(
            format!(
                "{}-{:?}-{:?}",
                std::process::id(),
                SystemTime::now(),
                std::thread::current().id()
            )
            .as_bytes(),
        ));
        Worker {
            pool,
            config: RwLock::new(Arc::new(config)),
            config_path: None,
            config_mtime: RwLock::new(None),
            http: reqwest::Client::builder()
                .timeout(options.http_timeout)
                .build()
                .expect("HTTP client builds"),
            options,
            token,
        }
    }

    /// A worker reading its configuration from `path`, re-read whenever the file changes
    /// (the operator updates the mounted ConfigMap; no restart needed).
    pub fn from_file(pool: PgPool, path: PathBuf, options: Options) -> anyhow::Result<Self> {
        let mut worker = Worker::new(pool, NotifyConfig::default(), options);
        worker.config_path = Some(path);
        worker.reload()?;
        Ok(worker)
    }

    fn reload(&self) -> anyhow::Result<()> {
        let Some(path) = &self.config_path else {
            return Ok(());
        };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if *self.config_mtime.read().expect("lock") == modified && modified.is_some() {
            return Ok(());
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let config: NotifyConfig =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        tracing::info!(rules = config.rules.len(), "notify configuration loaded");
        *self.config.write().expect("lock") = Arc::new(config);
        *self.config_mtime.write().expect("lock") = modified;
        Ok(())
    }

    fn config(&self) -> Arc<NotifyConfig> {
        self.config.read().expect("lock").clone()
    }

    /// Plan new events into deliveries; how many events were read.
    pub async fn plan_once(&self) -> anyhow::Result<u64> {
        let report =
            store::plan(&self.pool, &self.config(), 500, self.options.grace_seconds).await?;
        if report.throttled > 0 {
            DROPPED
                .with_label_values(&["throttled"])
                .inc_by(report.throttled);
        }
        COALESCED.inc_by(report.digested);
        Ok(report.events)
    }

    /// Lease and deliver what is due; how many were attempted.
    pub async fn deliver_once(&self) -> anyhow::Result<usize> {
        let leases = store::lease_due(
            &self.pool,
            &self.token,
            self.options.concurrency,
            self.options.lease_seconds,
        )
        .await?;
        let count = leases.len();
        let results =
            futures::future::join_all(leases.into_iter().map(|lease| self.deliver(lease))).await;
        for result in results {
            if let Err(error) = result {
                tracing::warn!(%error, "recording a delivery failed");
            }
        }
        Ok(count)
    }

    /// Deliver one leased notification in a span that continues the trace of the event's
    /// producer (the `traceparent` stored with the outbox event; digests start their own).
    async fn deliver(&self, lease: Lease) -> anyhow::Result<()> {
        use stellaops_telemetry::{Attribute, FutureExt, Kind};
        let parent = stellaops_telemetry::remote_parent(lease.event["traceparent"].as_str());
        let span = stellaops_telemetry::start(
            format!("notify deliver {}", lease.channel),
            &parent,
            Kind::Producer,
            vec![
                Attribute::new("notify.channel", lease.channel.clone()),
                Attribute::new(
                    "notify.rule",
                    format!("{}/{}", lease.rule_namespace, lease.rule_name),
                ),
                Attribute::new("notify.action", lease.action.clone()),
                Attribute::new("notify.attempt", i64::from(lease.attempts)),
                Attribute::new(
                    "notify.event_kind",
                    lease.event["kind"].as_str().unwrap_or("digest").to_string(),
                ),
            ],
        );
        let outcome = self.deliver_in_span(lease).with_context(span.clone()).await;
        stellaops_telemetry::finish(&span, &outcome);
        outcome
    }

    async fn deliver_in_span(&self, lease: Lease) -> anyhow::Result<()> {
        let config = self.config();
        let found = config
            .rules
            .iter()
            .find(|r| r.namespace == lease.rule_namespace && r.name == lease.rule_name)
            .and_then(|r| Some((r, r.actions.iter().find(|a| a.name == lease.action)?)));
        let started = Instant::now();
        let answer = match found {
            None => Answer {
                status: None,
                retry_after: None,
                error: Some(format!(
                    "rule {}/{} or its action {} was removed or disabled before delivery",
                    lease.rule_namespace, lease.rule_name, lease.action
                )),
                permanent: true,
            },
            Some((rule, action)) => match self.message(rule, action, &lease).await {
                Ok(message) => self.send(action, &lease, message).await,
                Err(error) => Answer {
                    status: None,
                    retry_after: None,
                    error: Some(error),
                    permanent: false,
                },
            },
        };
        let latency = started.elapsed().as_millis() as i64;
        let outcome = match (answer.status, &answer.error) {
            (Some(code), None) if (200..300).contains(&code) => Outcome::Sent,
            (None, None) => Outcome::Sent,
            _ if answer.permanent || lease.attempts >= self.options.max_attempts => Outcome::Dead,
            _ => {
                let wait = backoff(
                    &self.options,
                    &lease.idempotency_key,
                    lease.attempts,
                    answer.retry_after,
                );
                Outcome::Retry(Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default())
            }
        };
        if let Some(status) = answer.status {
            stellaops_telemetry::annotate(vec![stellaops_telemetry::Attribute::new(
                "http.response.status_code",
                i64::from(status),
            )]);
        }
        if !matches!(outcome, Outcome::Sent) {
            stellaops_telemetry::mark_error(answer.error.clone().unwrap_or_default());
        }
        let kept = store::finish(
            &self.pool,
            &lease,
            &outcome,
            answer.status,
            latency,
            answer.error.as_deref(),
        )
        .await?;
        if !kept {
            tracing::warn!(key = %lease.idempotency_key, "lease lost while delivering");
        }
        match outcome {
            Outcome::Sent => {
                SENT.with_label_values(&[&lease.channel]).inc();
                if let Some(created) = lease.event["created_at"]
                    .as_str()
                    .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                {
                    LATENCY
                        .with_label_values(&[&lease.channel])
                        .observe((Utc::now() - created).num_milliseconds() as f64 / 1000.0);
                }
            }
            Outcome::Dead => {
                DROPPED.with_label_values(&["dead"]).inc();
                tracing::warn!(key = %lease.idempotency_key, error = ?answer.error, "delivery dead-lettered");
            }
            Outcome::Retry(at) => {
                tracing::info!(key = %lease.idempotency_key, %at, error = ?answer.error, status = ?answer.status, "delivery will be retried");
            }
        }
        Ok(())
    }

    async fn message(
        &self,
        rule: &RuleConfig,
        action: &ActionConfig,
        lease: &Lease,
    ) -> Result<Message, String> {
        let custom = match action.template.as_str() {
            "concise" | "detailed" => None,
            // Only `template.*` keys: a template naming `password` would mail it out.
            key if !key.starts_with(store::TEMPLATE_KEY_PREFIX) => {
                return Err(format!(
                    "template {key:?} is not a template key (custom templates are Secret keys starting {:?})",
                    store::TEMPLATE_KEY_PREFIX
                ));
            }
            key => {
                Some(read_secret(&action.secret_dir, key).ok_or_else(|| {
                    format!("template {key:?} is not a key of the action's Secret")
                })?)
            }
        };
        let rule_ref = json!({"namespace": rule.namespace, "name": rule.name});
        if let Some(window) = lease.digest_window {
            let events = store::digest_items(&self.pool, lease.id)
                .await
                .map_err(|e| e.to_string())?;
            let (start, end) =
                store::digest_window(&action.digest, window).unwrap_or((window, window));
            let label = format!(
                "{} – {} UTC",
                start.format("%Y-%m-%d %H:%M"),
                end.format("%H:%M")
            );
            let text =
                template::render_digest(&action.template, custom.as_deref(), &label, &events);
            return Ok(Message {
                title: format!("Stella Ops digest: {} events ({label})", events.len()),
                body: json!({"id": lease.idempotency_key, "rule": rule_ref, "action": action.name,
                             "window": {"start": start, "end": end}, "text": text, "events": events}),
                text,
            });
        }
        let text = template::render(&action.template, custom.as_deref(), &lease.event);
        Ok(Message {
            title: template::concise(&lease.event),
            body: json!({"id": lease.idempotency_key, "rule": rule_ref, "action": action.name,
                         "text": text, "event": lease.event}),
            text,
        })
    }

    async fn post(&self, url: &str, body: Vec<u8>, headers: Vec<(&str, String)>) -> Answer {
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        // W3C trace context for receivers that trace (Slack and Teams ignore it).
        if let Some(traceparent) = stellaops_telemetry::current_traceparent() {
            request = request.header("traceparent", traceparent);
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, Utc::now()));
                let ok = (200..300).contains(&status);
                let permanent =
                    !ok && status != 408 && status != 429 && (400..500).contains(&status);
                let error = (!ok).then(|| {
                    format!(
                        "HTTP {status}{}",
                        if permanent { " (not retried)" } else { "" }
                    )
                });
                Answer {
                    status: Some(status),
                    retry_after,
                    error,
                    permanent,
                }
            }
            Err(error) => Answer {
                status: None,
                retry_after: None,
                error: Some(if error.is_timeout() {
                    format!("no answer within {:?}", self.options.http_timeout)
                } else {
                    // Webhook URLs are secrets (Slack, Teams): the error text goes to the
                    // delivery record, status and logs, so it names what failed, not where.
                    let error = error.without_url();
                    let mut text = error.to_string();
                    let mut source = std::error::Error::source(&error);
                    while let Some(cause) = source {
                        text.push_str(&format!(": {cause}"));
                        source = cause.source();
                    }
                    text
                }),
                permanent: false,
            },
        }
    }

    async fn send(&self, action: &ActionConfig, lease: &Lease, message: Message) -> Answer {
        let missing = |key: &str| Answer {
            status: None,
            retry_after: None,
            error: Some(format!(
                "the action's Secret has no key {key} (mounted at {})",
                action.secret_dir
            )),
            permanent: false,
        };
        let delivery = ("x-stellaops-delivery", lease.idempotency_key.clone());
        let idempotency = ("idempotency-key", lease.idempotency_key.clone());
        match action.channel.as_str() {
            "slack" => {
                let Some(url) = read_secret(&action.secret_dir, "url") else {
                    return missing("url");
                };
                let mut body = json!({"text": message.text});
                if !action.target.is_empty() {
                    body["channel"] = json!(action.target);
                }
                self.post(
                    &url,
                    body.to_string().into_bytes(),
                    vec![delivery, idempotency],
                )
                .await
            }
            "teams" => {
                let Some(url) = read_secret(&action.secret_dir, "url") else {
                    return missing("url");
                };
                let body = json!({
                    "@type": "MessageCard",
                    "@context": "https://schema.org/extensions",
                    "summary": message.title,
                    "title": message.title,
                    "text": message.text.replace('\n', "<br>"),
                });
                self.post(
                    &url,
                    body.to_string().into_bytes(),
                    vec![delivery, idempotency],
                )
                .await
            }
            "webhook" => {
                let Some(url) = read_secret(&action.secret_dir, "url") else {
                    return missing("url");
                };
                let Some(key) = read_secret(&action.secret_dir, "hmacKey") else {
                    return missing("hmacKey");
                };
                let body = message.body.to_string().into_bytes();
                let signed = ("x-stellaops-signature", signature(key.as_bytes(), &body));
                self.post(&url, body, vec![signed, delivery, idempotency])
                    .await
            }
            "email" => {
                let Some(host) = read_secret(&action.secret_dir, "host") else {
                    return missing("host");
                };
                let Some(from) = read_secret(&action.secret_dir, "from") else {
                    return missing("from");
                };
                let settings = smtp::SmtpSettings {
                    host,
                    port: read_secret(&action.secret_dir, "port")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(587),
                    tls: read_secret(&action.secret_dir, "tls")
                        .unwrap_or_else(|| "starttls".into()),
                    username: read_secret(&action.secret_dir, "username"),
                    password: read_secret(&action.secret_dir, "password"),
                    from,
                    ca_pem: read_secret(&action.secret_dir, "caCert"),
                };
                let message_id =
                    hex::encode(&Sha256::digest(lease.idempotency_key.as_bytes())[..16]);
                match tokio::time::timeout(
                    self.options.http_timeout * 3,
                    smtp::send(
                        &settings,
                        &action.target,
                        &message.title,
                        &message.text,
                        &message_id,
                    ),
                )
                .await
                {
                    Ok(Ok(())) => Answer {
                        status: Some(250),
                        retry_after: None,
                        error: None,
                        permanent: false,
                    },
                    Ok(Err(error)) => Answer {
                        status: None,
                        retry_after: None,
                        permanent: error.permanent,
                        error: Some(error.message),
                    },
                    Err(_) => Answer {
                        status: None,
                        retry_after: None,
                        error: Some("the SMTP exchange timed out".into()),
                        permanent: false,
                    },
                }
            }
            other => Answer {
                status: None,
                retry_after: None,
                error: Some(format!("unknown channel {other}")),
                permanent: true,
            },
        }
    }

    /// Plan and deliver until `shutdown` resolves: woken by `LISTEN stellaops_events`,
    /// and by the next delivery coming due.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener
            .listen(stellaops_store::outbox::NOTIFY_CHANNEL)
            .await?;
        tokio::pin!(shutdown);
        loop {
            if let Err(error) = self.reload() {
                tracing::warn!(%error, "keeping the previous notify configuration");
            }
            let planned = match self.plan_once().await {
                Ok(n) => n,
                Err(error) => {
                    tracing::warn!(%error, "planning failed; retrying");
                    0
                }
            };
            let delivered = match self.deliver_once().await {
                Ok(n) => n,
                Err(error) => {
                    tracing::warn!(%error, "leasing deliveries failed; retrying");
                    0
                }
            };
            if planned >= 500 || delivered as i64 >= self.options.concurrency {
                continue;
            }
            let wait = match store::next_due(&self.pool).await {
                Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or(Duration::ZERO),
                _ => Duration::from_secs(1),
            }
            .clamp(Duration::from_millis(20), Duration::from_secs(1));
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                notification = listener.recv() => {
                    if let Err(error) = notification {
                        tracing::warn!(%error, "LISTEN connection lost; reconnecting");
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_jitters_and_honours_retry_after() {
        let o = Options::default();
        let first = backoff(&o, "k", 1, None);
        assert!(first >= Duration::from_millis(1500) && first <= Duration::from_millis(2500));
        let fourth = backoff(&o, "k", 4, None);
        assert!(fourth >= Duration::from_secs(12) && fourth <= Duration::from_secs(20));
        assert!(backoff(&o, "k", 30, None) <= Duration::from_secs(750));
        assert_eq!(backoff(&o, "k", 1, None), backoff(&o, "k", 1, None));
        assert_eq!(
            backoff(&o, "k", 1, Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert_eq!(
            backoff(&o, "k", 1, Some(Duration::from_secs(99999))),
            Duration::from_secs(600).max(backoff(&o, "k", 1, None))
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("30", now), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 10:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn webhook_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
