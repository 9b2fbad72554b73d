use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use stellaops_store::s3::S3Settings;
use stellaops_workers::federation_cli::{self, AdvisoriesCommand, FederationCommand};
use stellaops_workers::registry::{Credentials, ImageReference, RegistryClient};

/// The Stella Ops data-plane worker, run by the operator inside Jobs, CronJobs and Deployments.
#[derive(Parser, Debug)]
#[command(name = "stellaops-worker", version, about)]
struct Cli {
    /// PostgreSQL URL (postgres://user:password@host:port/database). Held as a secret:
    /// `Debug` shows `[REDACTED]`.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true, value_parser = secret_arg)]
    database_url: Option<SecretString>,
    /// Endpoint of an S3-compatible server (credentials from the standard AWS_* variables).
    #[arg(long, env = "AWS_ENDPOINT_URL", global = true)]
    s3_endpoint: Option<String>,
    /// Log format: `text` lines, or one JSON object per line (what the operator's
    /// workloads use). Long work logs a `progress` record every 5 s when stderr is not a
    /// terminal, and shows a progress bar when it is.
    #[arg(long, value_enum, env = "STELLAOPS_LOG_FORMAT", default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// OTLP/HTTP endpoint (base URL; `/v1/traces` is appended) to export spans to, each
    /// stage of the work a span; a `TRACEPARENT` in the environment (set by the operator on
    /// the Jobs it makes) is the parent. Unset: no tracing.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The span a command runs in, when it is one-off work (long-running servers get none:
/// a span lasting the process's life says nothing).
fn command_span(command: &Command) -> Option<&'static str> {
    Some(match command {
        Command::Scan { .. } => "scan",
        Command::Evaluate { .. } => "evaluate",
        Command::Mirror {
            command: MirrorCommand::Sync { .. },
        } => "mirror sync",
        Command::Federation { command } => match command {
            FederationCommand::Serve { .. } => return None,
            _ => "federation",
        },
        Command::Advisories { .. } => "advisories",
        Command::Vex { .. } => "vex",
        Command::Artifacts { .. } => "artifacts",
        _ => return None,
    })
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Apply the platform's PostgreSQL migrations (safe to run from several Pods at once).
    Migrate,
    /// Canonical advisories.
    Advisories {
        #[command(subcommand)]
        command: AdvisoriesCommand,
    },
    /// Federation between sites: signed delta bundles and site policies.
    Federation {
        #[command(subcommand)]
        command: FederationCommand,
    },
    /// Mirror domains.
    Mirror {
        #[command(subcommand)]
        command: MirrorCommand,
    },
    /// Deliver notifications (NotifyRule) from the events outbox.
    Notify {
        #[command(subcommand)]
        command: NotifyCommand,
    },
    /// Re-evaluate stored image inventories against the current advisories (no image is
    /// pulled): a Schedule run (`--run`), the given digests, or every result decided under
    /// a ScanPolicy (`--policy-ref` with `--policy-json`). Prints a JSON report.
    Evaluate {
        /// A run recorded by the Schedule controller (its images, rate and notify settings);
        /// with `--policy-ref`, each image's latest result is decided under that ScanPolicy
        /// (the Schedule's `policyRef`) instead of its own stored policy.
        #[arg(long, conflicts_with = "digest")]
        run: Option<String>,
        /// Image digests (`sha256:…`) to re-evaluate: of each, the latest result under each
        /// policy it was decided under, each recorded again for its own Scan.
        #[arg(long, required_unless_present_any = ["run", "policy_ref"], conflicts_with = "policy_ref")]
        digest: Vec<String>,
        /// The ScanPolicy whose results are re-evaluated (after it changed or a waiver of it
        /// expired), under `--policy-json`.
        #[arg(long, requires = "policy_json")]
        policy_ref: Option<String>,
        /// The ScanPolicy as the evaluator takes it (rules and thresholds, JSON), as the
        /// operator computed its digest from.
        #[arg(long, requires = "policy_ref")]
        policy_json: Option<String>,
        /// Most images per second.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        /// Emit `rescan.delta` for images with new findings.
        #[arg(long)]
        notify: bool,
        /// Only findings at or above this severity count as new.
        #[arg(long)]
        min_severity: Option<String>,
        /// PEM private key that signs the verdict (`key.pem` of the platform namespace's
        /// signing Secret); without it the result is recorded unsigned and nothing trusts it.
        #[arg(long, env = "STELLAOPS_VERDICT_SIGNING_KEY")]
        verdict_signing_key: Option<std::path::PathBuf>,
        /// Bucket the signed verdict envelopes go to (`attest/<sha256>.dsse.json`).
        #[arg(long, env = "STELLAOPS_BUCKET", default_value = "stellaops")]
        bucket: String,
    },
    /// Scan one image: inventory, SBOM to S3, findings and verdict to PostgreSQL.
    Scan {
        /// Image reference (`registry/repo:tag` or `registry/repo@sha256:…`).
        image: String,
        /// PEM private key that signs the verdict (`key.pem` of the platform namespace's
        /// signing Secret); without it the result is recorded unsigned and nothing trusts it.
        #[arg(long, env = "STELLAOPS_VERDICT_SIGNING_KEY")]
        verdict_signing_key: Option<std::path::PathBuf>,

        /// Bucket for SBOMs and the layer cache.
        #[arg(long, env = "STELLAOPS_BUCKET", default_value = "stellaops")]
        bucket: String,
        /// Platform chosen from a multi-platform image.
        #[arg(long, default_value = "linux/amd64")]
        platform: String,
        /// Fail at or above this severity.
        #[arg(long, default_value = "high")]
        fail_on: String,
        /// Warn at or above this severity.
        #[arg(long)]
        warn_on: Option<String>,
        /// Findings without a fix do not count for the verdict.
        #[arg(long)]
        ignore_unfixed: bool,
        /// Which components the thresholds count: `inventory` (all) or `usage` (those the
        /// entrypoint uses).
        #[arg(long, default_value = "inventory", value_parser = ["inventory", "usage"])]
        scope: String,
        /// The ScanPolicy deciding the verdict (recorded with it, so its changes and expiring
        /// waivers re-evaluate this result); needs `--policy-json`.
        #[arg(long, requires = "policy_json")]
        policy_ref: Option<String>,
        /// That ScanPolicy as the evaluator takes it (rules and thresholds, JSON); replaces
        /// `--fail-on`, `--warn-on` and `--ignore-unfixed`.
        #[arg(long, requires = "policy_ref")]
        policy_json: Option<String>,
        /// `cyclonedx-json` (always written) or `spdx-json` (written as well).
        #[arg(long, default_value = "cyclonedx-json")]
        sbom_format: String,
        /// `.dockerconfigjson` files with registry credentials (repeatable).
        #[arg(long)]
        docker_config: Vec<PathBuf>,
        /// Registries spoken to over plain HTTP, by exact host or host:port (loopback
        /// addresses — 127.0.0.0/8, ::1, localhost — always are).
        #[arg(long = "plain-http")]
        plain_http: Vec<String>,
        /// Scan again even when this digest was scanned at the current advisory snapshot.
        #[arg(long)]
        force: bool,
        /// Attach the recorded SBOM(s) and signed verdict to the image as OCI referrers.
        #[arg(long)]
        attach: bool,
        /// `.dockerconfigjson` with push rights for `--attach` (default: the pull
        /// credentials); used for nothing else.
        #[arg(long, requires = "attach")]
        push_docker_config: Option<PathBuf>,
        /// The Scan this runs for (namespace), for the record.
        #[arg(long, env = "STELLAOPS_SCAN_NAMESPACE")]
        scan_namespace: Option<String>,
        /// The Scan's name.
        #[arg(long, env = "STELLAOPS_SCAN_NAME")]
        scan_name: Option<String>,
        /// The Scan's uid.
        #[arg(long, env = "STELLAOPS_SCAN_UID")]
        scan_uid: Option<String>,
        /// The content-refresh Schedule run this Scan belongs to: its new findings are
        /// counted there and announced as `rescan.delta`.
        #[arg(long)]
        schedule_run: Option<String>,
    },
    /// VEX statements (OpenVEX, CSAF VEX, CycloneDX VEX).
    Vex {
        #[command(subcommand)]
        command: VexCommand,
    },
    /// What the platform keeps in object storage.
    Artifacts {
        #[command(subcommand)]
        command: ArtifactsCommand,
    },
    /// Why an image's verdict is what it is: its latest result, every finding with what
    /// decided it (a VEX consensus and its providers, a rule, the thresholds) and why.
    Explain {
        /// A digest (`sha256:…`) or the reference the image was scanned as.
        image: String,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What changed between two images: added, removed and version-changed packages, each
    /// with the layer that caused it. Read from the stored inventories; an image never
    /// scanned is pulled and scanned first (a digest alone must have been scanned).
    Diff {
        /// The earlier image: a reference (`registry/repo:tag`, `…@sha256:…`) or a digest.
        old: String,
        /// The later image, likewise.
        new: String,
        /// Print the diff as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Bucket for SBOMs and the layer cache (when an image must be scanned).
        #[arg(long, env = "STELLAOPS_BUCKET", default_value = "stellaops")]
        bucket: String,
        /// Platform chosen from a multi-platform image.
        #[arg(long, default_value = "linux/amd64")]
        platform: String,
        /// `.dockerconfigjson` files with registry credentials (repeatable).
        #[arg(long)]
        docker_config: Vec<PathBuf>,
        /// Registries spoken to over plain HTTP, by exact host or host:port (loopback
        /// addresses — 127.0.0.0/8, ::1, localhost — always are).
        #[arg(long = "plain-http")]
        plain_http: Vec<String>,
    },
    /// Inspect container images in a registry.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
}

#[derive(Subcommand, Debug)]
enum VexCommand {
    /// Store a provider's VEX documents: the same document again changes nothing, a newer
    /// version replaces the older one's statements, an older one is ignored, a malformed
    /// one is refused naming the field (and the others are still stored).
    Ingest {
        /// `openvex`, `csaf` or `cyclonedx`.
        #[arg(long, value_parser = ["openvex", "csaf", "cyclonedx"])]
        format: String,
        /// Who issued the documents (the name trust weights use).
        #[arg(long)]
        provider: String,
        /// A file, a directory (its `*.json` files, in name order) or `-` for standard input.
        source: PathBuf,
        /// PEM private key that signs the verdicts of the re-evaluations this ingest causes
        /// (`key.pem` of the platform namespace's signing Secret).
        #[arg(long, env = "STELLAOPS_VERDICT_SIGNING_KEY")]
        verdict_signing_key: Option<std::path::PathBuf>,
        /// Bucket the signed verdict envelopes go to (`attest/<sha256>.dsse.json`).
        #[arg(long, env = "STELLAOPS_BUCKET", default_value = "stellaops")]
        bucket: String,
    },
}

#[derive(Subcommand, Debug)]
enum ArtifactsCommand {
    /// One lifecycle pass (release-and-operations §7): the `short` class by a bucket rule
    /// where the store has lifecycle rules (swept otherwise), expired `default` objects no
    /// current result points to deleted, compliance artifacts never; prints the pass as
    /// JSON and records it for the Platform's upgrade checklist.
    Lifecycle {
        /// Bucket.
        #[arg(long, env = "STELLAOPS_BUCKET", default_value = "stellaops")]
        bucket: String,
        /// Days working artifacts (`scanner/diffs/`) are kept.
        #[arg(long, default_value_t = 14)]
        short_days: u32,
        /// Days SBOMs, layer fragments and indexes are kept once no current result
        /// points to them.
        #[arg(long, default_value_t = 180)]
        default_days: u32,
        /// Most objects one pass deletes (the next pass continues).
        #[arg(long, default_value_t = 100_000)]
        max_deleted: u64,
    },
}

#[derive(Subcommand, Debug)]
enum MirrorCommand {
    /// Copy an S3 prefix onto the mirror volume (size-only comparison, atomic files).
    Sync {
        /// Bucket.
        #[arg(long)]
        bucket: String,
        /// Key prefix (`concelier/latest`).
        #[arg(long, default_value = "")]
        prefix: String,
        /// Target directory (the mirror's export root).
        #[arg(long)]
        directory: PathBuf,
        /// Remove local files the prefix no longer has (only after every copy succeeded).
        #[arg(long)]
        delete: bool,
        /// Downloads at once (most mirror files are small, so latency, not bandwidth, bounds a sync).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// The export the server is told to serve, so the report names what is served.
        #[arg(long, env = "STELLAOPS_MIRROR_ACTIVE_EXPORT_ID")]
        active_export_id: Option<String>,
        /// Exporter's PEM public key: report whether the served export's signatures verify.
        #[arg(long, env = "STELLAOPS_MIRROR_SIGNATURE_KEY")]
        signature_key: Option<PathBuf>,
    },
    /// Check a detached JWS (or cosign signature) on a downloaded bundle.json, like
    /// `cosign verify-blob --key KEY --signature SIG FILE`.
    Verify {
        /// The exporter's PEM public key (ECDSA P-256).
        #[arg(long)]
        key: PathBuf,
        /// `bundle.json.jws`.
        #[arg(long)]
        signature: PathBuf,
        /// `bundle.json`.
        file: PathBuf,
    },
    /// Sign a bundle.json as a detached ES256 JWS (what an exporter publishes).
    Sign {
        /// PKCS#8 PEM private key (ECDSA P-256), e.g. from `stellaops-worker federation keygen`.
        #[arg(long)]
        key: PathBuf,
        /// Key id put in the JWS header.
        #[arg(long)]
        key_id: String,
        /// `bundle.json`.
        file: PathBuf,
        /// Where to write the JWS (default: FILE.jws).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Serve one mirror domain's exports (index, manifest, bundle, JWS) with Basic auth,
    /// hourly budgets and CDN cache headers.
    Serve {
        /// Export root holding `<exportId>/mirror/…` directories.
        #[arg(long, env = "STELLAOPS_MIRROR_ROOT")]
        root: PathBuf,
        /// Domain id (`primary`).
        #[arg(long, env = "STELLAOPS_MIRROR_DOMAIN")]
        domain_id: String,
        /// Export to serve; else the `latest` link, else the newest directory.
        #[arg(long, env = "STELLAOPS_MIRROR_ACTIVE_EXPORT_ID")]
        active_export_id: Option<String>,
        /// Require Basic credentials from the htpasswd file.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        require_authentication: bool,
        /// htpasswd file with bcrypt entries (`htpasswd -B`).
        #[arg(long, env = "STELLAOPS_MIRROR_HTPASSWD")]
        htpasswd: Option<PathBuf>,
        /// Index requests per credential per hour (0: unlimited).
        #[arg(long, default_value_t = 600)]
        max_index_requests_per_hour: u32,
        /// Manifest and bundle requests per credential per hour (0: unlimited).
        #[arg(long, default_value_t = 1200)]
        max_download_requests_per_hour: u32,
        /// Exporter's PEM public key: serve bundle.json only while its JWS verifies.
        #[arg(long, env = "STELLAOPS_MIRROR_SIGNATURE_KEY")]
        signature_key: Option<PathBuf>,
        /// Listen address.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Subcommand, Debug)]
enum NotifyCommand {
    /// Consume the outbox and deliver to Slack, Teams, webhooks and email until stopped.
    Run {
        /// Rules file the operator renders (re-read when it changes).
        #[arg(long, env = "STELLAOPS_NOTIFY_CONFIG")]
        config: PathBuf,
        /// Address of /healthz, /readyz and /metrics.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: std::net::SocketAddr,
        /// Seconds a delivery stays leased to this worker before another may retry it.
        #[arg(long, default_value_t = 60)]
        lease_seconds: i64,
        /// Attempts before a delivery is dead-lettered.
        #[arg(long, default_value_t = 8)]
        max_attempts: i32,
        /// First retry delay in milliseconds (doubles per attempt, ±25% jitter).
        #[arg(long, default_value_t = 2000)]
        base_backoff_ms: u64,
        /// Longest an outbox writer's transaction may take, in seconds.
        #[arg(long, default_value_t = 600)]
        grace_seconds: i64,
        /// Timeout of one delivery, in milliseconds.
        #[arg(long, default_value_t = 10000)]
        timeout_ms: u64,
    },
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Resolve an image reference to its manifest digest and media type.
    Resolve {
        /// Image reference (`registry/repo:tag` or `registry/repo@sha256:…`).
        image: String,
        /// A `.dockerconfigjson` file with registry credentials.
        #[arg(long, env = "DOCKER_CONFIG_JSON")]
        docker_config: Option<PathBuf>,
        /// Registries spoken to over plain HTTP, by exact host or host:port (loopback
        /// addresses — 127.0.0.0/8, ::1, localhost — always are).
        #[arg(long = "plain-http")]
        plain_http: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // The one rustls provider of the workspace, chosen explicitly rather than left to
    // rustls' feature detection (which panics the first TLS connection if a second appears).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().flatten_event(true).init(),
        LogFormat::Text => logs.init(),
    }
    let traces = match stellaops_telemetry::init("stellaops-worker", cli.otlp_endpoint.as_deref()) {
        Ok(traces) => traces,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match command_span(&cli.command) {
        Some(name) => {
            use stellaops_telemetry::FutureExt;
            let span = stellaops_telemetry::start(
                name,
                &stellaops_telemetry::parent_from_env(),
                stellaops_telemetry::Kind::Consumer,
                Vec::new(),
            );
            let outcome = run(cli).with_context(span.clone()).await;
            match &outcome {
                Ok(false) => stellaops_telemetry::finish(&span, &Err::<(), _>("failed")),
                _ => stellaops_telemetry::finish(&span, &outcome),
            }
            outcome
        }
        None => run(cli).await,
    };
    if let Some(traces) = traces {
        traces.shutdown(std::time::Duration::from_secs(5)).await;
    }
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The verdict signing key at `path` (none without the flag). A path that cannot be read is
/// an error naming the Secret it should come from: an unsigned verdict is never trusted.
/// The ScanPolicy given as `--policy-ref NAME --policy-json JSON` (the evaluator's form);
/// refused, naming the field, when the JSON is not a policy or the policy is not valid.
fn scan_policy(
    name: Option<String>,
    json: Option<&str>,
) -> anyhow::Result<Option<stellaops_scanner::Policy>> {
    let (Some(name), Some(json)) = (name, json) else {
        return Ok(None);
    };
    let policy: stellaops_policy::evaluate::Policy =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(json))
            .map_err(|e| anyhow::anyhow!("--policy-json: at {}: {}", e.path(), e.inner()))?;
    let problems = policy.problems();
    if !problems.is_empty() {
        anyhow::bail!("--policy-json: ScanPolicy {name}: {}", problems.join("; "));
    }
    Ok(Some(stellaops_scanner::Policy::from_evaluator(
        Some(name),
        policy,
    )))
}

fn verdict_signer(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<stellaops_store::attestation::VerdictSigner>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let pem = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the verdict signing key {} (key.pem of the Secret stellaops-verdict-signing in the platform namespace; docs/security.md)",
            path.display()
        )
    })?;
    let signer = stellaops_store::attestation::VerdictSigner::from_pem(&pem)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(Some(signer))
}

/// A command-line value kept as a secret (never shown by `Debug`).
/// The verdict signing key with the bucket its envelopes go to (none without a key).
async fn signing(
    path: Option<&std::path::Path>,
    s3: &S3Settings,
    bucket: String,
) -> anyhow::Result<Option<std::sync::Arc<stellaops_workers::evaluate::Signing>>> {
    let Some(signer) = verdict_signer(path)? else {
        return Ok(None);
    };
    Ok(Some(std::sync::Arc::new(
        stellaops_workers::evaluate::Signing {
            signer,
            s3: stellaops_store::s3::client(s3).await,
            bucket,
        },
    )))
}

fn secret_arg(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

/// The platform database, checked to be migrated. Workers never run DDL (their role has
/// none): migrations come from the operator's leader or `stellaops-worker migrate`.
async fn database(url: Option<&str>) -> anyhow::Result<sqlx::PgPool> {
    let url = url.context("--database-url or DATABASE_URL is required")?;
    let pool = stellaops_store::connect(url)
        .await
        .context("connecting to PostgreSQL")?;
    stellaops_store::check_schema(&pool).await?;
    Ok(pool)
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let s3 = S3Settings::from_env(cli.s3_endpoint.clone());
    match cli.command {
        Command::Migrate => {
            let url = cli
                .database_url
                .as_ref()
                .map(ExposeSecret::expose_secret)
                .context("--database-url or DATABASE_URL is required")?;
            let pool = stellaops_store::connect(url)
                .await
                .context("connecting to PostgreSQL")?;
            stellaops_store::migrate(&pool).await?;
            println!("migrations applied");
        }
        Command::Advisories { command } => {
            federation_cli::advisories(
                &database(cli.database_url.as_ref().map(ExposeSecret::expose_secret)).await?,
                command,
            )
            .await?;
        }
        Command::Federation {
            command: FederationCommand::Keygen { prefix },
        } => federation_cli::keygen(&prefix)?,
        Command::Federation {
            command:
                FederationCommand::Bundle {
                    command: command @ federation_cli::BundleCommand::Validate { .. },
                },
        } => return federation_cli::validate(command, &s3).await,
        Command::Federation { command } => {
            return federation_cli::federation(
                &database(cli.database_url.as_ref().map(ExposeSecret::expose_secret)).await?,
                &s3,
                command,
            )
            .await;
        }
        Command::Mirror {
            command:
                MirrorCommand::Sync {
                    bucket,
                    prefix,
                    directory,
                    delete,
                    concurrency,
                    active_export_id,
                    signature_key,
                },
        } => {
            let client = stellaops_store::s3::client(&s3).await;
            return stellaops_workers::mirror::sync::run(
                &client,
                &bucket,
                &prefix,
                &directory,
                delete,
                concurrency,
                stellaops_workers::mirror::sync::ServedExport {
                    active_export_id: active_export_id.as_deref(),
                    signature_key: signature_key.as_deref(),
                },
            )
            .await;
        }
        Command::Mirror {
            command:
                MirrorCommand::Verify {
                    key,
                    signature,
                    file,
                },
        } => {
            use stellaops_workers::mirror::jws;
            let key = jws::public_key_from_pem(&std::fs::read_to_string(&key)?)
                .with_context(|| key.display().to_string())?;
            let signature = std::fs::read_to_string(&signature)
                .with_context(|| signature.display().to_string())?;
            let payload = std::fs::read(&file).with_context(|| file.display().to_string())?;
            match jws::verify_detached(&signature, &payload, &key) {
                Ok(kid) => {
                    println!(
                        "Verified OK{}",
                        kid.map(|k| format!(" (key id {k})")).unwrap_or_default()
                    );
                    return Ok(true);
                }
                Err(error) => {
                    eprintln!("{}: {error}", file.display());
                    return Ok(false);
                }
            }
        }
        Command::Mirror {
            command:
                MirrorCommand::Sign {
                    key,
                    key_id,
                    file,
                    output,
                },
        } => {
            use p256::pkcs8::DecodePrivateKey;
            let pem = std::fs::read_to_string(&key)?;
            let signer = p256::ecdsa::SigningKey::from_pkcs8_pem(&pem).map_err(|_| {
                anyhow::anyhow!("{}: not a PKCS#8 P-256 private key", key.display())
            })?;
            let payload = std::fs::read(&file).with_context(|| file.display().to_string())?;
            let output = output.unwrap_or_else(|| {
                let mut name = file.as_os_str().to_owned();
                name.push(".jws");
                PathBuf::from(name)
            });
            std::fs::write(
                &output,
                stellaops_workers::mirror::jws::sign_detached(&signer, &key_id, &payload),
            )?;
            println!("wrote {}", output.display());
        }
        Command::Mirror {
            command:
                MirrorCommand::Serve {
                    root,
                    domain_id,
                    active_export_id,
                    require_authentication,
                    htpasswd,
                    max_index_requests_per_hour,
                    max_download_requests_per_hour,
                    signature_key,
                    listen,
                },
        } => {
            use stellaops_workers::mirror::serve::{Mirror, MirrorConfig, serve};
            let mirror = Mirror::new(MirrorConfig {
                root,
                domain_id,
                active_export_id,
                require_authentication,
                htpasswd,
                max_index_requests_per_hour,
                max_download_requests_per_hour,
                signature_key,
            })?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            eprintln!("mirror on http://{listen}");
            serve(
                listener,
                std::sync::Arc::new(mirror),
                stellaops_workers::federation_api::shutdown_signal(),
            )
            .await;
        }
        Command::Notify {
            command:
                NotifyCommand::Run {
                    config,
                    listen,
                    lease_seconds,
                    max_attempts,
                    base_backoff_ms,
                    grace_seconds,
                    timeout_ms,
                },
        } => {
            use stellaops_workers::notify::{Options, Worker};
            let pool = database(cli.database_url.as_ref().map(ExposeSecret::expose_secret)).await?;
            let options = Options {
                lease_seconds,
                max_attempts,
                base_backoff: std::time::Duration::from_millis(base_backoff_ms),
                grace_seconds,
                http_timeout: std::time::Duration::from_millis(timeout_ms),
                ..Options::default()
            };
            let worker = Worker::from_file(pool, config, options)?;
            stellaops_workers::notify::init_metrics();
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let probes = axum::Router::new()
                .route("/healthz", axum::routing::get(|| async { "ok\n" }))
                .route("/readyz", axum::routing::get(|| async { "ok\n" }))
                .route(
                    "/metrics",
                    axum::routing::get(|| async {
                        use prometheus::Encoder;
                        let mut body = Vec::new();
                        let _ =
                            prometheus::TextEncoder::new().encode(&prometheus::gather(), &mut body);
                        body
                    }),
                );
            tokio::spawn(async move {
                let _ = axum::serve(listener, probes).await;
            });
            eprintln!("notify worker running; probes on http://{listen}");
            worker
                .run(stellaops_workers::federation_api::shutdown_signal())
                .await?;
        }
        Command::Evaluate {
            run,
            digest,
            policy_ref,
            policy_json,
            rate,
            notify,
            min_severity,
            verdict_signing_key,
            bucket,
        } => {
            let signer = signing(verdict_signing_key.as_deref(), &s3, bucket).await?;
            let policy = scan_policy(policy_ref, policy_json.as_deref())?;
            let pool = database(cli.database_url.as_ref().map(ExposeSecret::expose_secret)).await?;
            let settings = stellaops_workers::evaluate::Settings {
                rate_per_second: rate,
                notify,
                min_severity,
                namespace: None,
                name: None,
                run_id: None,
                signer: signer.clone(),
                policy: None,
                now: None,
            };
            let report = match (run, policy) {
                (Some(run), policy) => {
                    stellaops_workers::evaluate::run(&pool, &run, signer, policy).await?
                }
                (None, Some(policy)) => {
                    stellaops_workers::evaluate::reevaluate_policy(&pool, &policy, &settings)
                        .await?
                }
                (None, None) => {
                    stellaops_workers::evaluate::evaluate(&pool, &digest, &settings).await?
                }
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Scan {
            image,
            bucket,
            platform,
            fail_on,
            warn_on,
            ignore_unfixed,
            scope,
            policy_ref,
            policy_json,
            sbom_format,
            docker_config,
            plain_http,
            force,
            attach,
            push_docker_config,
            scan_namespace,
            scan_name,
            scan_uid,
            schedule_run,
            verdict_signing_key,
        } => {
            use stellaops_scanner::Policy;
            use stellaops_workers::scan::{Requester, ScanJob};
            let signer = verdict_signer(verdict_signing_key.as_deref())?;
            let policy = match scan_policy(policy_ref, policy_json.as_deref())? {
                Some(policy) => policy,
                None => Policy {
                    fail_on,
                    warn_on,
                    ignore_unfixed,
                    scope: if scope == "usage" {
                        stellaops_policy::evaluate::Scope::Usage
                    } else {
                        stellaops_policy::evaluate::Scope::Inventory
                    },
                    ..Default::default()
                },
            };
            let mut credentials = Credentials::default();
            for path in &docker_config {
                credentials.merge(
                    Credentials::from_docker_config(
                        &std::fs::read_to_string(path)
                            .with_context(|| format!("reading {}", path.display()))?,
                    )
                    .map_err(anyhow::Error::msg)?,
                );
            }
            let pusher = match (&push_docker_config, attach) {
                (Some(path), _) => Some(RegistryClient::new(
                    Credentials::from_docker_config(
                        &std::fs::read_to_string(path)
                            .with_context(|| format!("reading {}", path.display()))?,
                    )
                    .map_err(anyhow::Error::msg)?,
                    plain_http.clone(),
                )?),
                (None, true) => Some(RegistryClient::new(
                    credentials.clone(),
                    plain_http.clone(),
                )?),
                (None, false) => None,
            };
            let registry = RegistryClient::new(credentials, plain_http)?;
            // PostgreSQL and S3 set up at once: connecting is a round trip or two each.
            let (pool, client) = tokio::join!(
                database(cli.database_url.as_ref().map(ExposeSecret::expose_secret)),
                stellaops_store::s3::client(&s3)
            );
            let pool = pool?;
            let scratch =
                std::env::temp_dir().join(format!("stellaops-scan-{}", std::process::id()));
            std::fs::create_dir_all(&scratch)?;
            let job = ScanJob {
                signer: signer.as_ref(),
                registry: &registry,
                s3: &client,
                bucket: &bucket,
                pool: &pool,
                platform: &platform,
                policy,
                requester: Requester {
                    namespace: scan_namespace,
                    name: scan_name,
                    uid: scan_uid,
                },
                spdx: sbom_format == "spdx-json",
                scratch: &scratch,
                force,
            };
            let outcome =
                stellaops_workers::scan::run_and_attach(&job, &image, pusher.as_ref()).await;
            let _ = std::fs::remove_dir_all(&scratch);
            let summary = outcome?;
            if let Some(run) = schedule_run {
                stellaops_workers::evaluate::announce_refresh(
                    &pool,
                    &run,
                    summary.scan_id,
                    &summary.image_digest,
                )
                .await?;
            }
            return Ok(true);
        }
        Command::Vex {
            command:
                VexCommand::Ingest {
                    format,
                    provider,
                    source,
                    verdict_signing_key,
                    bucket,
                },
        } => {
            let signer = signing(verdict_signing_key.as_deref(), &s3, bucket).await?;
            let pool = database(cli.database_url.as_ref().map(ExposeSecret::expose_secret)).await?;
            return stellaops_workers::vex::ingest(&pool, &format, &provider, &source, signer)
                .await;
        }
        Command::Artifacts {
            command:
                ArtifactsCommand::Lifecycle {
                    bucket,
                    short_days,
                    default_days,
                    max_deleted,
                },
        } => {
            let pool = database(cli.database_url.as_ref().map(ExposeSecret::expose_secret)).await?;
            let client = stellaops_store::s3::client(&s3).await;
            let pass = stellaops_store::lifecycle::run_pass(
                &client,
                &bucket,
                &pool,
                &stellaops_store::lifecycle::Retention::days(short_days, default_days),
                stellaops_store::lifecycle::Bounds {
                    max_deleted,
                    ..Default::default()
                },
                std::time::SystemTime::now(),
            )
            .await?;
            if let Some(risk) = &pass.compliance_at_risk {
                tracing::warn!(%risk, "compliance artifacts would be expired by a bucket rule");
            }
            println!("{}", serde_json::to_string(&pass)?);
        }
        Command::Explain { image, json } => {
            let pool = database(cli.database_url.as_ref().map(ExposeSecret::expose_secret)).await?;
            let Some(explanation) = stellaops_store::scans::explain(&pool, &image).await? else {
                anyhow::bail!("{image} was never scanned");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&explanation)?);
            } else {
                print!("{}", stellaops_workers::scan::explain::render(&explanation));
            }
        }
        Command::Diff {
            old,
            new,
            json,
            bucket,
            platform,
            docker_config,
            plain_http,
        } => {
            use stellaops_scanner::Policy;
            use stellaops_scanner::diff::{diff, render};
            use stellaops_workers::scan::diff::inventory_of;
            use stellaops_workers::scan::{Requester, ScanJob};
            let mut credentials = Credentials::default();
            for path in &docker_config {
                credentials.merge(
                    Credentials::from_docker_config(
                        &std::fs::read_to_string(path)
                            .with_context(|| format!("reading {}", path.display()))?,
                    )
                    .map_err(anyhow::Error::msg)?,
                );
            }
            let registry = RegistryClient::new(credentials, plain_http)?;
            let pool = database(cli.database_url.as_ref().map(ExposeSecret::expose_secret)).await?;
            let client = stellaops_store::s3::client(&s3).await;
            let scratch =
                std::env::temp_dir().join(format!("stellaops-diff-{}", std::process::id()));
            std::fs::create_dir_all(&scratch)?;
            let job = ScanJob {
                signer: None,
                registry: &registry,
                s3: &client,
                bucket: &bucket,
                pool: &pool,
                platform: &platform,
                policy: Policy {
                    fail_on: "critical".into(),
                    warn_on: None,
                    ignore_unfixed: false,
                    ..Default::default()
                },
                requester: Requester::default(),
                spdx: false,
                scratch: &scratch,
                force: false,
            };
            let outcome = async {
                let (old_digest, before, _) = inventory_of(&job, &old).await?;
                let (new_digest, after, _) = inventory_of(&job, &new).await?;
                anyhow::Ok(diff(&old_digest, &before, &new_digest, &after))
            }
            .await;
            let _ = std::fs::remove_dir_all(&scratch);
            let d = outcome?;
            if json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                print!("{}", render(&d));
            }
        }
        Command::Image {
            command:
                ImageCommand::Resolve {
                    image,
                    docker_config,
                    plain_http,
                },
        } => {
            let credentials = match docker_config {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    Credentials::from_docker_config(&text)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                }
                None => Credentials::default(),
            };
            let reference: ImageReference = image.parse()?;
            let manifest = RegistryClient::new(credentials, plain_http)?
                .fetch_manifest(&reference)
                .await?;
            println!(
                "{}",
                serde_json::json!({
                    "image": reference.to_string(),
                    "digest": manifest.digest,
                    "mediaType": manifest.media_type,
                    "size": manifest.bytes.len(),
                })
            );
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_url_never_shows_in_debug_output() {
        let cli = Cli::parse_from([
            "stellaops-worker",
            "--database-url",
            "postgres://worker:pa55-SECRET@db:5432/stellaops",
            "migrate",
        ]);
        let shown = format!("{cli:?} {cli:#?}");
        assert!(!shown.contains("pa55-SECRET"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
        assert_eq!(
            cli.database_url.as_ref().map(ExposeSecret::expose_secret),
            Some("postgres://worker:pa55-SECRET@db:5432/stellaops"),
            "the value itself is kept"
        );
    }
}
