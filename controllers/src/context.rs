//! The shared context every reconcile gets: client, recorder, metrics, configuration.

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::cache::{Caches, Contents};
use crate::metrics::Metrics;

/// The field manager of every server-side apply and status patch the operator makes.
pub const FIELD_MANAGER: &str = "stellaops-operator";

/// Operator-wide settings that shape what the controllers create.
#[derive(Clone, Debug)]
pub struct Config {
    /// Namespace the operator runs in (webhook Service, certificates, leases).
    pub operator_namespace: String,
    /// Image of `stellaops-worker`, run by Jobs, CronJobs and Deployments.
    pub worker_image: String,
    /// Most scan Jobs running at once, operator-wide.
    pub max_concurrent_scans: u32,
    /// Secret (in each resource's namespace) whose `url` key is the PostgreSQL URL workers use.
    pub database_secret: String,
    /// Service (in the operator's namespace) in front of the Zastava webhook.
    pub webhook_service: String,
    /// Service (in the operator's namespace) in front of the reports API.
    pub reports_service: String,
    /// Platform bucket (SBOMs, layer cache) and how scan Jobs reach it.
    pub storage: stellaops_crds::S3Location,
    /// Most reconciles of one kind running at once.
    pub reconcile_concurrency: u16,
    /// Triggers of one object closer together than this make one reconcile.
    pub reconcile_debounce: std::time::Duration,
    /// Secret (in the platform namespace) whose `key.pem` signs verdicts: mounted by scan
    /// and evaluate Jobs only.
    pub verdict_signing_secret: String,
    /// Public keys a recorded verdict must be signed by before a Scan reports or reuses it
    /// (none: no verdict is trusted).
    pub verdict_keys: stellaops_store::attestation::SharedVerdictKeys,
    /// OTLP/HTTP endpoint the workers export their spans to (`OTEL_EXPORTER_OTLP_ENDPOINT`
    /// of every worker container); `None`: the workers do not trace.
    pub otlp_endpoint: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            operator_namespace: "stellaops-system".to_string(),
            worker_image: format!(
                "ghcr.io/stella-ops/stellaops-operator:{}",
                env!("CARGO_PKG_VERSION")
            ),
            max_concurrent_scans: 4,
            reconcile_concurrency: 8,
            reconcile_debounce: std::time::Duration::from_millis(200),
            database_secret: "stellaops-database".to_string(),
            webhook_service: "stellaops-zastava-webhook".to_string(),
            reports_service: "stellaops-reports".to_string(),
            verdict_signing_secret: "stellaops-verdict-signing".to_string(),
            verdict_keys: Default::default(),
            otlp_endpoint: None,
            storage: stellaops_crds::S3Location {
                bucket: "stellaops".to_string(),
                prefix: String::new(),
                endpoint: None,
                region: None,
                force_path_style: true,
                secret_ref: Some(stellaops_crds::LocalObjectReference {
                    name: "stellaops-s3".to_string(),
                }),
            },
        }
    }
}

/// Everything a reconcile needs, built once.
#[derive(Clone)]
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Event recorder shared by every controller.
    pub recorder: Recorder,
    /// Reconcile metrics.
    pub metrics: Metrics,
    /// Operator settings.
    pub config: Config,
    /// The platform database, for the events outbox (`release.*` events). Without it
    /// those events are only Kubernetes Events, and a warning says so.
    pub outbox: Option<sqlx::PgPool>,
    /// The shared stores reconcilers read instead of LISTing. [`crate::run`] replaces
    /// these with stores its watches fill; until then (and in tests) they are ready and
    /// hold what [`Context::with_caches`] gave.
    pub caches: Caches,
    /// Failures in a row per object, for the error policy's backoff.
    pub retries: std::sync::Arc<crate::retry::Retries>,
    /// The last sync of each namespace's notify worker, shared by its rules' reconciles.
    pub notify_syncs: std::sync::Arc<crate::notify_rule::NamespaceSyncs>,
    /// What the webhook in this process verified, read by the runtime audit (none: every
    /// signature counts as not verified yet).
    pub signature_facts: Option<std::sync::Arc<dyn crate::zastava_audit::SignatureFacts>>,
    /// How many `Queued` Events the Scan controller may still publish (see [`EventBudget`]).
    pub queued_events: std::sync::Arc<EventBudget>,
    /// Which Scans re-evaluations woke, and every Scan's latest result as read at start.
    pub reevaluations: std::sync::Arc<crate::scan::Reevaluations>,
}

/// An operator-wide token bucket for Events that a burst of objects would otherwise each
/// get at once (ten thousand Scans created together, each `Queued`): `burst` at once,
/// then one per `every`. An Event over budget is not published; the object's status says
/// the same (the Event only adds when it happened). Events are best-effort in Kubernetes
/// too: the API server may drop them under load.
#[derive(Debug)]
pub struct EventBudget {
    burst: u32,
    every: std::time::Duration,
    state: std::sync::Mutex<(f64, std::time::Instant)>,
}

impl EventBudget {
    /// A full bucket of `burst` Events, refilled by one every `every`.
    pub fn new(burst: u32, every: std::time::Duration) -> Self {
        EventBudget {
            burst,
            every,
            state: std::sync::Mutex::new((f64::from(burst), std::time::Instant::now())),
        }
    }

    /// Take one Event from the budget at `now`; `false` when none is left.
    pub fn take_at(&self, now: std::time::Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *state;
        let refill = now.saturating_duration_since(*last).as_secs_f64()
            / self.every.as_secs_f64().max(f64::MIN_POSITIVE);
        *tokens = (*tokens + refill).min(f64::from(self.burst));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// [`EventBudget::take_at`] now.
    pub fn take(&self) -> bool {
        self.take_at(std::time::Instant::now())
    }
}

impl Default for EventBudget {
    /// 50 at once, then one a second.
    fn default() -> Self {
        EventBudget::new(50, std::time::Duration::from_secs(1))
    }
}

impl Context {
    /// Build a context; `instance` identifies this replica in Events (its Pod name).
    pub fn new(client: Client, metrics: Metrics, config: Config, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            config,
            outbox: None,
            caches: Caches::filled(Contents::default()),
            retries: Default::default(),
            notify_syncs: Default::default(),
            signature_facts: None,
            queued_events: Default::default(),
            reevaluations: Default::default(),
        }
    }

    /// The same context, reading `caches`.
    pub fn with_caches(mut self, caches: Caches) -> Self {
        self.caches = caches;
        self
    }

    /// The same context, reading signature verifications from `facts` (the webhook).
    pub fn with_signature_facts(
        mut self,
        facts: std::sync::Arc<dyn crate::zastava_audit::SignatureFacts>,
    ) -> Self {
        self.signature_facts = Some(facts);
        self
    }

    /// The same context, appending events to the outbox of `pool`.
    pub fn with_outbox(mut self, pool: sqlx::PgPool) -> Self {
        self.outbox = Some(pool);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::EventBudget;
    use std::time::{Duration, Instant};

    #[test]
    fn the_event_budget_gives_a_burst_then_one_per_period() {
        let budget = EventBudget::new(3, Duration::from_secs(1));
        let start = Instant::now();
        let taken = (0..10).filter(|_| budget.take_at(start)).count();
        assert_eq!(taken, 3, "the burst, then nothing");
        assert!(!budget.take_at(start + Duration::from_millis(900)));
        assert!(budget.take_at(start + Duration::from_millis(1000)));
        assert!(!budget.take_at(start + Duration::from_millis(1100)));
        // A long quiet spell refills no more than the burst.
        let later = start + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| budget.take_at(later)).count(), 3);
    }
}
