//! `stellaops-operator run`: connect, serve probes and metrics, win the Lease, reconcile,
//! and shut down cleanly on SIGTERM/SIGINT (releasing the Lease for a fast failover).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use prometheus::Registry;
use secrecy::ExposeSecret;
use stellaops_controllers::metrics::Metrics;
use stellaops_controllers::{Config, Context};

use crate::cli::RunArgs;
use crate::http::{Probes, router};
use crate::leader::{LeaderConfig, LeaderElector, LeaseHolder, Round};

/// Operator settings from the command line.
pub fn controller_config(args: &RunArgs) -> Config {
    let mut config = Config {
        operator_namespace: args.namespace.clone(),
        ..Config::default()
    };
    if let Some(image) = &args.worker_image {
        config.worker_image = image.clone();
    }
    config.max_concurrent_scans = args.max_concurrent_scans;
    config.reconcile_concurrency = args.reconcile_concurrency;
    config.reconcile_debounce = std::time::Duration::from_millis(args.reconcile_debounce_ms);
    config.database_secret = args.database_secret.clone();
    config.webhook_service = args.webhook_service.clone();
    config.reports_service = args.reports_service.clone();
    config.storage.bucket = args.bucket.clone();
    config.storage.endpoint = args.s3_endpoint.clone();
    config.storage.secret_ref = Some(stellaops_crds::LocalObjectReference {
        name: args.s3_secret.clone(),
    });
    config.verdict_signing_secret = args.verdict_signing_secret.clone();
    config.otlp_endpoint = args.otlp_endpoint.clone().filter(|e| !e.trim().is_empty());
    config
}

/// The verdict public keys of `--verdict-public-keys` and the file they come from (none
/// without the flag: then no verdict is trusted, and a warning says so). A file that exists
/// but is unusable stops the start; one that does not exist yet (the signing Secret is
/// mounted optionally) starts with no key and is followed until it appears.
pub fn verdict_keys(
    args: &RunArgs,
) -> anyhow::Result<(
    stellaops_store::attestation::SharedVerdictKeys,
    Option<stellaops_store::attestation::KeyFile>,
)> {
    use stellaops_store::attestation::{KeyFile, KeyFileChange, SharedVerdictKeys};
    let keys = SharedVerdictKeys::default();
    let Some(path) = &args.verdict_public_keys else {
        tracing::warn!(
            "no --verdict-public-keys: no scan verdict is trusted (requireScan denies, Scans fail)"
        );
        return Ok((keys, None));
    };
    let mut file = KeyFile::new(path, keys.clone());
    match file.check() {
        KeyFileChange::Loaded(ids) => {
            tracing::info!(path = %path.display(), keys = ?ids, "verdict public keys loaded")
        }
        KeyFileChange::Refused(why) if path.exists() => anyhow::bail!("{why}"),
        KeyFileChange::Refused(why) => tracing::warn!("{why}"),
        KeyFileChange::Unchanged => {}
    }
    Ok((keys, Some(file)))
}

/// What following the verdict key file is counted by.
#[derive(Clone)]
pub struct VerdictKeyMetrics {
    /// `stellaops_verdict_keys_reloads_total{result="loaded"|"refused"}`.
    pub reloads: prometheus::IntCounterVec,
    /// `stellaops_verdict_keys`: the number of verdict public keys in force.
    pub in_force: prometheus::IntGauge,
}

impl VerdictKeyMetrics {
    /// Make and register them.
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let reloads = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "stellaops_verdict_keys_reloads_total",
                "Changes of the verdict public key file: put in force (loaded) or refused (unusable; the keys in force stay)",
            ),
            &["result"],
        )?;
        for result in ["loaded", "refused"] {
            reloads.with_label_values(&[result]);
        }
        let in_force = prometheus::IntGauge::new(
            "stellaops_verdict_keys",
            "Verdict public keys in force (0: no verdict is trusted)",
        )?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(in_force.clone()))?;
        Ok(VerdictKeyMetrics { reloads, in_force })
    }
}

/// Look at the verdict key file every `every` for as long as the process runs: a changed,
/// usable file is put in force for the webhook and the Scan controller at once; an
/// unusable one is refused with an error naming the file and why, and the keys in force
/// stay.
pub async fn follow_verdict_keys(
    mut file: stellaops_store::attestation::KeyFile,
    every: Duration,
    metrics: VerdictKeyMetrics,
) {
    use stellaops_store::attestation::KeyFileChange;
    metrics.in_force.set(file.keys().current().len() as i64);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        // A file read of a few hundred bytes; off the async threads all the same.
        let (back, change) = match tokio::task::spawn_blocking(move || {
            let change = file.check();
            (file, change)
        })
        .await
        {
            Ok(done) => done,
            Err(error) => {
                tracing::error!(%error, "following the verdict public key file stopped");
                return;
            }
        };
        file = back;
        match change {
            KeyFileChange::Unchanged => {}
            KeyFileChange::Loaded(ids) => {
                metrics.reloads.with_label_values(&["loaded"]).inc();
                tracing::info!(keys = ?ids, "verdict public keys reloaded");
            }
            KeyFileChange::Refused(why) => {
                metrics.reloads.with_label_values(&["refused"]).inc();
                tracing::error!("{why}");
            }
        }
        metrics.in_force.set(file.keys().current().len() as i64);
    }
}

async fn kube_config(args: &RunArgs) -> anyhow::Result<kube::Config> {
    Ok(match &args.context {
        Some(context) => {
            let options = KubeConfigOptions {
                context: Some(context.clone()),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(Kubeconfig::read()?, &options).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    })
}

fn identity(args: &RunArgs) -> String {
    args.pod_name.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "stellaops-operator".into());
        format!("{host}-{}", std::process::id())
    })
}

/// Set once SIGTERM or SIGINT has arrived, from the moment [`listen_for_shutdown`] ran.
static SHUTDOWN: std::sync::OnceLock<tokio::sync::watch::Receiver<bool>> =
    std::sync::OnceLock::new();

/// Start listening for SIGTERM and SIGINT for the whole process, before anything waits for
/// them: a signal is then never lost because it arrived while nothing was waiting (between
/// winning the election and starting the controllers, for one: the process ran on). The
/// handlers are installed before this returns.
pub(crate) fn listen_for_shutdown() {
    let (sender, receiver) = tokio::sync::watch::channel(false);
    if SHUTDOWN.set(receiver).is_err() {
        return;
    }
    let signalled = os_signal();
    tokio::spawn(async move {
        signalled.await;
        let _ = sender.send(true);
    });
}

/// A future that resolves on the next SIGTERM or SIGINT; its handlers are installed now.
fn os_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
        async move {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves once SIGTERM or SIGINT has arrived (at once if it already has, after
/// [`listen_for_shutdown`]).
pub(crate) async fn shutdown_signal() {
    match SHUTDOWN.get() {
        Some(receiver) => {
            let _ = receiver.clone().wait_for(|signalled| *signalled).await;
        }
        None => os_signal().await,
    }
}

/// Run the controllers until a shutdown signal, then let in-flight reconciles finish for at
/// most `grace`. Reconciles are idempotent, so one cut short is redone by the next leader;
/// waiting longer would outlast the Pod's termination grace period (SIGKILL, and the Lease
/// held until it expires).
async fn run_controllers(
    ctx: Arc<Context>,
    grace: Duration,
    lifecycle: Option<stellaops_controllers::housekeeping::ArtifactLifecycle>,
) {
    // The leader (only it) applies the platform's migrations, so no worker needs DDL rights.
    // A database that is down does not stop the controllers: what needs it retries, and
    // workers refuse to start against an older schema with a message saying why.
    if let Some(pool) = &ctx.outbox {
        match stellaops_store::migrate(pool).await {
            Ok(()) => tracing::info!("database migrations applied"),
            Err(error) => tracing::error!(%error, "applying database migrations failed"),
        }
    }
    // The housekeeping CronJob follows this operator's settings (image, bucket, schedule).
    if let Err(error) = stellaops_controllers::housekeeping::apply_artifact_lifecycle(
        &ctx.client,
        &ctx.config,
        lifecycle.as_ref(),
    )
    .await
    {
        tracing::error!(%error, "applying the artifact lifecycle CronJob failed");
    }
    // Signalled meanwhile (the controllers' own graceful shutdown listens from their start
    // only): nothing to start.
    if SHUTDOWN.get().is_some_and(|signalled| *signalled.borrow()) {
        return;
    }
    tokio::select! {
        _ = stellaops_controllers::run(ctx.clone()) => {}
        _ = crate::reports::keep_certificate(ctx) => {}
        _ = async {
            shutdown_signal().await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(?grace, "reconciles still running after the shutdown grace; stopping them"),
    }
}

fn artifact_lifecycle(
    args: &RunArgs,
) -> Option<stellaops_controllers::housekeeping::ArtifactLifecycle> {
    (args.artifact_lifecycle_schedule != "off").then(|| {
        stellaops_controllers::housekeeping::ArtifactLifecycle {
            schedule: args.artifact_lifecycle_schedule.clone(),
            short_days: args.artifact_short_days,
            default_days: args.artifact_default_days,
        }
    })
}

fn retention_ages(args: &RunArgs) -> stellaops_store::retention::Ages {
    let days = |d: u64| Duration::from_secs(d.saturating_mul(24 * 3600));
    stellaops_store::retention::Ages {
        deliveries: days(args.retain_deliveries_days),
        attempts: days(args.retain_deliveries_days),
        outbox_events: days(args.retain_events_days),
        schedule_runs: days(args.retain_schedule_runs_days),
    }
}

/// Delete what has outlived its retention, every `interval`, for as long as the process
/// runs (every replica: the deletes are bounded batches and idempotent).
async fn retention(pool: sqlx::PgPool, ages: stellaops_store::retention::Ages, interval: Duration) {
    loop {
        match stellaops_store::retention::prune(&pool, &ages, 1000).await {
            Ok(pruned) => tracing::debug!(?pruned, "retention pass"),
            Err(error) => tracing::warn!(%error, "retention pass failed"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// Run until shutdown or loss of leadership (an error, so the Pod restarts as a standby);
/// the spans still queued are sent before returning.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let traces = stellaops_telemetry::init("stellaops-operator", args.otlp_endpoint.as_deref())
        .map_err(anyhow::Error::msg)?;
    let outcome = run_traced(args).await;
    if let Some(traces) = traces {
        traces.shutdown(Duration::from_secs(2)).await;
    }
    outcome
}

async fn run_traced(args: RunArgs) -> anyhow::Result<()> {
    listen_for_shutdown();
    let registry = Registry::new();
    let metrics = Metrics::register(&registry)?;
    let leader_gauge = prometheus::IntGauge::new(
        "stellaops_leader",
        "1 while this replica holds the leader Lease",
    )?;
    registry.register(Box::new(leader_gauge.clone()))?;
    let ready = Arc::new(AtomicBool::new(false));

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    // The bound address, so `:0` (any free port) says which port it got.
    let bound = listener.local_addr().unwrap_or(args.metrics_addr);
    tracing::info!(addr = %bound, "serving /metrics, /healthz, /readyz");
    let app = router(Probes {
        registry: registry.clone(),
        ready: ready.clone(),
    });
    tokio::spawn(async move {
        stellaops_tls::serve_bounded(
            listener,
            app,
            crate::http::PROBE_LIMITS,
            |_, peer: &std::net::SocketAddr| *peer,
            shutdown_signal(),
        )
        .await;
    });

    let kube_config = kube_config(&args).await?;
    let client = kube::Client::try_from(kube_config.clone())?;
    let identity = identity(&args);
    let mut config = controller_config(&args);
    let (keys, key_file) = verdict_keys(&args)?;
    config.verdict_keys = keys.clone();
    // Registered even without a key file, so the metrics are always there (0 keys).
    let key_metrics = VerdictKeyMetrics::register(&registry)?;
    if let Some(file) = key_file {
        tokio::spawn(follow_verdict_keys(
            file,
            Duration::from_secs(args.verdict_keys_reload_seconds),
            key_metrics,
        ));
    }
    let mut ctx = Context::new(client.clone(), metrics, config, Some(identity.clone()));
    // Two pools: admission reviews must not queue behind reconciles for a connection.
    let mut webhook_pool = None;
    match &args.database_url {
        // Lazy: a database that is down delays outbox writes (reconciles retry), not start-up.
        Some(url) => {
            let pool = |connections: u32| {
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(connections)
                    .connect_lazy(url.expose_secret())
                    .context("parsing --database-url")
            };
            let controllers_pool = pool(args.controller_db_connections)?;
            tokio::spawn(retention(
                controllers_pool.clone(),
                retention_ages(&args),
                Duration::from_secs(args.retention_interval_seconds.max(60)),
            ));
            ctx = ctx.with_outbox(controllers_pool);
        }
        None => tracing::warn!(
            "no --database-url: release events go to Kubernetes Events only, not the events outbox"
        ),
    }
    // The webhook's decision events, as the webhook's own role when one is given.
    if let Some(url) = args.webhook_database() {
        webhook_pool = Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(args.webhook_db_connections)
                .connect_lazy(url.expose_secret())
                .context("parsing the webhook's database URL")?,
        );
    }
    if args.webhook_addr != "off" {
        let webhook =
            crate::webhook::start(client.clone(), &args, &registry, webhook_pool, keys.clone())
                .await?;
        // The runtime audit reads what this replica's webhook verified.
        ctx = ctx.with_signature_facts(Arc::new(crate::webhook::WebhookFacts(webhook)));
    }
    if args.reports_addr != "off" {
        crate::reports::start(client.clone(), &args).await?;
    }
    let ctx = Arc::new(ctx);
    let grace = Duration::from_secs(args.shutdown_grace_seconds);

    if !args.leader_election {
        client
            .apiserver_version()
            .await
            .context("reaching the Kubernetes API")?;
        ready.store(true, Ordering::Relaxed);
        tracing::warn!("leader election disabled: run only one replica like this");
        leader_gauge.set(1);
        run_controllers(ctx, grace, artifact_lifecycle(&args)).await;
        return Ok(());
    }

    let leader_config = LeaderConfig {
        namespace: args.namespace.clone(),
        lease_name: args.lease_name.clone(),
        identity: identity.clone(),
        lease_duration: Duration::from_secs(args.lease_duration_seconds),
        retry_period: Duration::from_secs(args.lease_retry_seconds),
    };
    let elector = LeaderElector::new(client, leader_config.clone());
    let mut last_holder = String::new();
    let acquired = elector.acquire(|round| match round {
        Ok(round) => {
            ready.store(true, Ordering::Relaxed);
            if let Round::Following(holder) = round
                && *holder != last_holder
            {
                tracing::info!(%holder, "standing by: another replica leads");
                last_holder = holder.clone();
            }
        }
        Err(error) => tracing::warn!(%error, "leader election round failed"),
    });
    tokio::select! {
        _ = acquired => {}
        _ = shutdown_signal() => return Ok(()),
    }
    tracing::info!(%identity, lease = %args.lease_name, "became leader; starting controllers");
    leader_gauge.set(1);

    // Renewal runs on a thread and runtime of its own, never behind the reconciles.
    let mut holder = LeaseHolder::start(kube_config, leader_config)
        .context("starting the lease renewal thread")?;
    let outcome = tokio::select! {
        _ = run_controllers(ctx, grace, artifact_lifecycle(&args)) => Ok(()),
        lost = holder.lost() => Err(anyhow::anyhow!("lost leadership: {lost}")),
    };
    holder.stop().await;
    leader_gauge.set(0);
    if outcome.is_ok() {
        // Controllers stop on the shutdown signal; hand the Lease over at once.
        if let Err(error) = elector.release().await {
            tracing::warn!(%error, "could not release the lease");
        }
        tracing::info!("shut down");
    }
    outcome
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    fn run_args(extra: &[&str]) -> crate::cli::RunArgs {
        let argv = ["stellaops-operator", "run"]
            .into_iter()
            .chain(extra.iter().copied());
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Run(args) => *args,
            other => panic!("not run: {other:?}"),
        }
    }

    /// The lifecycle CronJob's schedule (the e2e tests replace it with a yearly one, so the
    /// default is checked here).
    #[test]
    fn the_artifact_lifecycle_runs_daily_at_03_17_unless_set_and_off_removes_it() {
        let default = super::artifact_lifecycle(&run_args(&[])).expect("on by default");
        assert_eq!(default.schedule, "17 3 * * *");
        assert_eq!(default.short_days, 14);
        let set =
            super::artifact_lifecycle(&run_args(&["--artifact-lifecycle-schedule", "0 0 1 1 *"]))
                .unwrap();
        assert_eq!(set.schedule, "0 0 1 1 *");
        assert!(
            super::artifact_lifecycle(&run_args(&["--artifact-lifecycle-schedule", "off"]))
                .is_none()
        );
    }

    /// A SIGTERM that arrives before anything waits for it (between winning the election
    /// and starting the controllers, say) still stops the operator: whoever waits later
    /// sees it at once.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_signal_that_arrived_before_anyone_waited_is_not_lost() {
        super::listen_for_shutdown();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::time::timeout(Duration::from_secs(5), super::shutdown_signal())
            .await
            .expect("the SIGTERM that arrived earlier counts");
    }
}
