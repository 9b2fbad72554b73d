//! Command-line interface of `stellaops-operator`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

/// The Stella Ops operator: runs the Stella Ops supply-chain security platform on Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "stellaops-operator", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "STELLAOPS_LOG_FORMAT", global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controllers against a cluster (kubeconfig or in-cluster config).
    Run(Box<RunArgs>),
    /// Validate resources as the API server would and print what the operator would create
    /// for them, without a cluster. Exits non-zero naming file, document and field on any error.
    Preview(PreviewArgs),
    /// Write the CRD YAML for every kind into config/crd/bases and the Helm chart.
    Crdgen(CrdgenArgs),
}

/// Arguments of `run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Namespace the operator runs in (holds its Lease and webhook objects).
    #[arg(long, env = "POD_NAMESPACE", default_value = "stellaops-system")]
    pub namespace: String,
    /// This replica's identity for leader election and Events; the Pod name in a cluster.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "STELLAOPS_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader through a Lease so only one replica reconciles. Disable only when
    /// running a single replica by hand.
    #[arg(long, env = "STELLAOPS_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "stellaops-operator-leader")]
    pub lease_name: String,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Seconds between renewals (and between attempts of a standby).
    #[arg(long, default_value_t = 5)]
    pub lease_retry_seconds: u64,
    /// Most reconciles of one kind running at once (each controller has its own budget).
    #[arg(long, env = "STELLAOPS_RECONCILE_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub reconcile_concurrency: u16,
    /// Milliseconds within which triggers of one object make a single reconcile.
    #[arg(long, env = "STELLAOPS_RECONCILE_DEBOUNCE_MS", default_value_t = 200)]
    pub reconcile_debounce_ms: u64,
    /// Seconds in-flight reconciles get to finish after SIGTERM before the process exits
    /// (keep it well under the Pod's terminationGracePeriodSeconds, 30 by default).
    #[arg(long, env = "STELLAOPS_SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    pub shutdown_grace_seconds: u64,
    /// Kubeconfig context to use instead of the current one (outside a cluster).
    #[arg(long)]
    pub context: Option<String>,
    /// Image of stellaops-worker, run by the Jobs, CronJobs and Deployments the operator creates.
    #[arg(long, env = "STELLAOPS_WORKER_IMAGE")]
    pub worker_image: Option<String>,
    /// Secret, in each resource's namespace, whose `url` key is the PostgreSQL URL the
    /// workers use.
    #[arg(
        long,
        env = "STELLAOPS_DATABASE_SECRET",
        default_value = "stellaops-database"
    )]
    pub database_secret: String,
    /// Most scan Jobs running at once across the cluster.
    #[arg(long, env = "STELLAOPS_MAX_CONCURRENT_SCANS", default_value_t = 4)]
    pub max_concurrent_scans: u32,
    /// Platform bucket for SBOMs and the scanner's layer cache.
    #[arg(long, env = "STELLAOPS_BUCKET", default_value = "stellaops")]
    pub bucket: String,
    /// S3 endpoint scan Jobs use (omit for AWS S3).
    #[arg(long, env = "STELLAOPS_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Secret (in each Scan's namespace) with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
    /// for scan Jobs.
    #[arg(long, env = "STELLAOPS_S3_SECRET", default_value = "stellaops-s3")]
    pub s3_secret: String,
    /// PostgreSQL URL of the platform database, where the operator appends its own events
    /// (`release.progress`, `release.failed`, `release.rolledback`) to the outbox.
    /// Held as a secret: `Debug` shows `[REDACTED]`, `--help` never prints the value.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = secret_arg)]
    pub database_url: Option<SecretString>,
    /// PostgreSQL URL the Zastava webhook connects with (verdict lookups, decision events):
    /// the `stellaops_webhook` role of docs/security.md, which may only read verdicts and
    /// append events. Without it the webhook uses --database-url.
    #[arg(long, env = "WEBHOOK_DATABASE_URL", hide_env_values = true, value_parser = secret_arg)]
    pub webhook_database_url: Option<SecretString>,
    /// Connections of the controllers' database pool (outbox, scan reuse, schedules).
    #[arg(long, env = "STELLAOPS_CONTROLLER_DB_CONNECTIONS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub controller_db_connections: u32,
    /// Connections of each of the webhook's database pools (fail-fast verdict lookups;
    /// decision events), apart from the controllers' so a reconcile burst never makes an
    /// admission review wait.
    #[arg(long, env = "STELLAOPS_WEBHOOK_DB_CONNECTIONS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub webhook_db_connections: u32,
    /// Days finished notify deliveries (and their attempts) are kept.
    #[arg(long, env = "STELLAOPS_RETAIN_DELIVERIES_DAYS", default_value_t = 30)]
    pub retain_deliveries_days: u64,
    /// Days outbox events are kept.
    #[arg(long, env = "STELLAOPS_RETAIN_EVENTS_DAYS", default_value_t = 30)]
    pub retain_events_days: u64,
    /// Days finished schedule runs are kept.
    #[arg(
        long,
        env = "STELLAOPS_RETAIN_SCHEDULE_RUNS_DAYS",
        default_value_t = 90
    )]
    pub retain_schedule_runs_days: u64,
    /// Cron schedule (UTC) of the artifact lifecycle CronJob the leader keeps in the
    /// platform namespace (`stellaops-worker artifacts lifecycle`); `off` removes it.
    #[arg(
        long,
        env = "STELLAOPS_ARTIFACT_LIFECYCLE_SCHEDULE",
        default_value = "17 3 * * *"
    )]
    pub artifact_lifecycle_schedule: String,
    /// Days working artifacts (image diffs) are kept.
    #[arg(long, env = "STELLAOPS_ARTIFACT_SHORT_DAYS", default_value_t = 14)]
    pub artifact_short_days: u32,
    /// Days SBOMs and layer fragments are kept once no current result points to them.
    #[arg(long, env = "STELLAOPS_ARTIFACT_DEFAULT_DAYS", default_value_t = 180)]
    pub artifact_default_days: u32,
    /// Seconds between retention passes (each deletes in batches of 1,000 rows).
    #[arg(
        long,
        env = "STELLAOPS_RETENTION_INTERVAL_SECONDS",
        default_value_t = 3600
    )]
    pub retention_interval_seconds: u64,
    /// Address the Zastava admission webhook serves TLS on (every replica serves it, leader
    /// or not). `off` disables it.
    #[arg(long, env = "STELLAOPS_WEBHOOK_ADDR", default_value = "0.0.0.0:9443")]
    pub webhook_addr: String,
    /// Address of the webhook's own /readyz and /healthz.
    #[arg(
        long,
        env = "STELLAOPS_WEBHOOK_HEALTH_ADDR",
        default_value = "0.0.0.0:8081"
    )]
    pub webhook_health_addr: SocketAddr,
    /// Service, in the operator's namespace, in front of the webhook (its certificate's name).
    #[arg(
        long,
        env = "STELLAOPS_WEBHOOK_SERVICE",
        default_value = "stellaops-zastava-webhook"
    )]
    pub webhook_service: String,
    /// Address the reports API (`reports.stella-ops.org`, an aggregated API behind the
    /// APIService) serves TLS on; every replica serves it. `off` disables it. Without
    /// `--database-url` it answers discovery, and 503 to reads.
    #[arg(long, env = "STELLAOPS_REPORTS_ADDR", default_value = "0.0.0.0:6443")]
    pub reports_addr: String,
    /// Service, in the operator's namespace, in front of the reports API (its certificate's name).
    #[arg(
        long,
        env = "STELLAOPS_REPORTS_SERVICE",
        default_value = "stellaops-reports"
    )]
    pub reports_service: String,
    /// Connections of the reports API's database pool (fail-fast reads, apart from the
    /// controllers' and the webhook's).
    #[arg(long, env = "STELLAOPS_REPORTS_DB_CONNECTIONS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub reports_db_connections: u32,
    /// PEM file of the public keys (one or more `PUBLIC KEY` blocks) scan verdicts must be
    /// signed by; the webhook and the Scan controller trust no verdict without one. Mount
    /// only the public half of the signing Secret here (docs/security.md).
    #[arg(long, env = "STELLAOPS_VERDICT_PUBLIC_KEYS")]
    pub verdict_public_keys: Option<std::path::PathBuf>,
    /// Seconds between looks at `--verdict-public-keys`: a changed file (a rotated Secret,
    /// which the kubelet updates in the mount) is put in force without a restart; an
    /// unusable one is refused and the keys in force stay.
    #[arg(long, env = "STELLAOPS_VERDICT_KEYS_RELOAD_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub verdict_keys_reload_seconds: u64,
    /// Secret in the platform namespace whose `key.pem` is the verdict signing key the scan
    /// and evaluate Jobs mount.
    #[arg(
        long,
        env = "STELLAOPS_VERDICT_SIGNING_SECRET",
        default_value = "stellaops-verdict-signing"
    )]
    pub verdict_signing_secret: String,
    /// dockerconfigjson file with credentials for reading signatures from private registries.
    #[arg(long, env = "STELLAOPS_WEBHOOK_DOCKER_CONFIG")]
    pub webhook_docker_config: Option<std::path::PathBuf>,
    /// Registries reached over plain HTTP, by exact host or host:port (test and air-gapped
    /// mirrors only); loopback addresses always are.
    #[arg(
        long = "insecure-registry",
        env = "STELLAOPS_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// OTLP/HTTP endpoint (base URL, `/v1/traces` is appended) to export traces to: a span
    /// per reconcile here, and the same endpoint is given to every worker the operator
    /// starts, whose spans continue the reconcile's trace. Unset: no tracing.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

impl RunArgs {
    /// The URL the webhook connects with: its own role's when given, else the operator's.
    pub fn webhook_database(&self) -> Option<&SecretString> {
        self.webhook_database_url
            .as_ref()
            .or(self.database_url.as_ref())
    }
}

/// Arguments of `preview`.
#[derive(Args, Debug)]
pub struct PreviewArgs {
    /// A YAML/JSON file, a directory of them (not recursive), or `-` for stdin. Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Worker image written into the objects shown.
    #[arg(long, env = "STELLAOPS_WORKER_IMAGE")]
    pub worker_image: Option<String>,
    /// Operator namespace assumed for the objects shown.
    #[arg(long, default_value = "stellaops-system")]
    pub namespace: String,
}

/// Arguments of `crdgen`.
#[derive(Args, Debug)]
pub struct CrdgenArgs {
    /// Repository root to write into.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Only check that the committed YAML matches the types; exit 1 when it drifted.
    #[arg(long)]
    pub check: bool,
}

/// A command-line value kept as a secret (never shown by `Debug`).
pub fn secret_arg(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}
