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
