//! The Zastava webhook inside the operator process. Every replica serves it (admission
//! must not wait for a leader): policies come from a watch of ZastavaPolicies (their keys
//! re-read every 30 s, so a rotated key Secret takes effect within that), the serving
//! certificate from a watch of the Secret the controller rotates.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use secrecy::ExposeSecret;
use stellaops_admission_webhook::evidence::RegistryEvidence;
use stellaops_admission_webhook::policy::{CompiledPolicy, compile_with_trusted_roots};
use stellaops_admission_webhook::server::{Metrics, Settings, Webhook, health_router, serve_tls};
use stellaops_controllers::zastava_policy::{TLS_SECRET, policy_keys, policy_trusted_roots};
use stellaops_crds::ZastavaPolicy;
use stellaops_registry::{Credentials, RegistryClient};
use stellaops_tls::ReloadableCert;

use crate::cli::RunArgs;

/// Compile every policy in `store`. One that cannot be compiled (its key Secret missing or
/// broken) is left out: its requests get 503 and the API server applies its failure
/// policy, while the controller reports why on the policy.
pub async fn compile_all(
    client: &Client,
    store: &Store<ZastavaPolicy>,
    operator_namespace: &str,
) -> Vec<CompiledPolicy> {
    let mut compiled = Vec::new();
    for policy in store.state() {
        let keys = match policy_keys(client, &policy, operator_namespace).await {
            Ok(Some(keys)) => keys,
            Ok(None) => {
                tracing::warn!(policy = %policy.name_any(), "public-key Secret missing; policy not enforced");
                continue;
            }
            Err(error) => {
                tracing::warn!(policy = %policy.name_any(), %error, "reading public keys failed");
                continue;
            }
        };
        let trusted_roots = match policy_trusted_roots(client, &policy, operator_namespace).await {
            Ok(Ok(roots)) => roots,
            Ok(Err(missing)) => {
                tracing::warn!(policy = %policy.name_any(), %missing, "trusted-root Secret missing; policy not enforced");
                continue;
            }
            Err(error) => {
                tracing::warn!(policy = %policy.name_any(), %error, "reading trusted roots failed");
                continue;
            }
        };
        match compile_with_trusted_roots(&policy, &keys, &trusted_roots) {
            Ok(mut compiled_policy) => {
                // requireScan under the ScanPolicy `policyRef` names: its current digest
                // (re-read with the keys, so a change counts within 30 s).
                if let Some(reference) = &policy.spec.policy_ref {
                    let digest = scan_policy_digest(client, &reference.name).await;
                    compiled_policy.resolve_scan_policy(digest);
                }
                compiled.push(compiled_policy)
            }
            Err(error) => {
                tracing::warn!(policy = %policy.name_any(), %error, "policy not enforced")
            }
        }
    }
    compiled
}

/// The current digest of the ScanPolicy `name`, or why it has none usable.
async fn scan_policy_digest(client: &Client, name: &str) -> Result<String, String> {
    let api: Api<stellaops_crds::ScanPolicy> = Api::all(client.clone());
    let found = tokio::time::timeout(Duration::from_secs(10), api.get_opt(name))
        .await
        .map_err(|_| format!("ScanPolicy {name} could not be read within 10 s"))?
        .map_err(|e| format!("ScanPolicy {name} could not be read: {e}"))?;
    stellaops_controllers::scan_policy::ready_digest(found.as_ref(), name)
}

/// The webhook as the runtime audit sees it: what it verified, and background
/// verification of what it has not.
pub struct WebhookFacts(pub Arc<Webhook>);

impl stellaops_controllers::zastava_audit::SignatureFacts for WebhookFacts {
    fn verified(&self, policy: &str, image: &str, digest: &str) -> Option<Result<String, String>> {
        self.0.verified_signature(policy, image, digest)
    }

    fn verified_attestations(
        &self,
        policy: &str,
        image: &str,
        digest: &str,
    ) -> Option<Vec<Result<String, String>>> {
        self.0.verified_attestations(policy, image, digest)
    }

    fn request(&self, policy: &str, image: &str, digest: &str) {
        self.0.verify_in_background(policy, image, digest);
    }
}

/// Serve the certificate of the TLS Secret `name` through `certificate`, reloading it
/// whenever the Secret changes (the webhook's and the reports API's: the leader rotates
/// them). Runs for as long as the process.
pub async fn follow_certificate(
    secrets: Api<Secret>,
    name: &str,
    certificate: Arc<ReloadableCert>,
    what: &str,
) {
    let by_name = watcher::Config::default().fields(&format!("metadata.name={name}"));
    // Backoff: without it a watch that keeps failing (API server gone) retries in a
    // tight loop, burning a core and never yielding to shutdown.
    let mut changes = watcher(secrets, by_name)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(change) = changes.next().await {
        let secret = match change {
            Ok(secret) => secret,
            Err(error) => {
                tracing::warn!(%error, "watching the {what} certificate");
                continue;
            }
        };
        let data = secret.data.unwrap_or_default();
        let (Some(cert), Some(key)) = (data.get("tls.crt"), data.get("tls.key")) else {
            continue;
        };
        match stellaops_tls::certified_key(&cert.0, &key.0) {
            Ok(certified) => {
                certificate.set(certified);
                tracing::info!("{what} serving certificate loaded");
            }
            Err(error) => tracing::warn!(%error, "{what} certificate Secret unusable"),
        }
    }
}

/// Start the webhook's servers and watches; returns the webhook once they are spawned.
pub async fn start(
    client: Client,
    args: &RunArgs,
    registry: &prometheus::Registry,
    database: Option<sqlx::PgPool>,
    verdict_keys: stellaops_store::attestation::SharedVerdictKeys,
) -> anyhow::Result<Arc<Webhook>> {
    let addr: std::net::SocketAddr = args
        .webhook_addr
        .parse()
        .with_context(|| format!("--webhook-addr {:?}", args.webhook_addr))?;
    let mut credentials = Credentials::default();
    if let Some(path) = &args.webhook_docker_config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        credentials = Credentials::from_docker_config(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    // Lookups get their own small pool that fails fast: a database that is down or
    // saturated must cost a review milliseconds, not the API server's whole timeout (and
    // never the controllers' connections).
    let lookups = match args.webhook_database() {
        Some(url) => Some(
            stellaops_store::lookup_pool(
                url.expose_secret(),
                args.webhook_db_connections,
                Duration::from_millis(500),
                Duration::from_secs(2),
            )
            .context("parsing the webhook's database URL")?,
        ),
        None => None,
    };
    let evidence = RegistryEvidence {
        registry: RegistryClient::with_limits(
            credentials,
            args.insecure_registries.clone(),
            stellaops_registry::RegistryLimits {
                connect_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_secs(10),
                stall_timeout: Duration::from_secs(5),
                ..Default::default()
            },
        )?,
        database: lookups,
        verdict_keys,
    };
    let certificate = Arc::new(ReloadableCert::new(None));
    let webhook = Webhook::new(
        Settings {
            own_namespace: args.namespace.clone(),
            ..Settings::default()
        },
        Arc::new(evidence),
        database.clone(),
        Metrics::register(registry)?,
        certificate.clone(),
    );
    // A re-evaluation that changes a verdict (a VEX statement, a ScanPolicy change, a
    // waiver's expiry) is admitted by its new verdict at once, not when the cache expires.
    if let Some(pool) = database {
        tokio::spawn(webhook.clone().forget_changed_verdicts(pool));
    }

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the webhook on {addr}"))?;
    let health = tokio::net::TcpListener::bind(args.webhook_health_addr)
        .await
        .with_context(|| format!("binding {}", args.webhook_health_addr))?;
    tracing::info!(
        addr = %listener.local_addr().unwrap_or(addr),
        health = %health.local_addr().unwrap_or(args.webhook_health_addr),
        "serving the Zastava webhook"
    );
    tokio::spawn(serve_tls(listener, webhook.clone()));
    let health_app = health_router(webhook.clone());
    tokio::spawn(stellaops_tls::serve_bounded(
        health,
        health_app,
        crate::http::PROBE_LIMITS,
        |_, peer: &std::net::SocketAddr| *peer,
        std::future::pending(),
    ));

    // The serving certificate: reloaded whenever the controller rotates the Secret.
    tokio::spawn(follow_certificate(
        Api::namespaced(client.clone(), &args.namespace),
        TLS_SECRET,
        certificate,
        "webhook",
    ));

    // Policies: recompiled on every change and every 30 s (for key Secret changes). One task
    // drives the watch (the store fills only while its stream is polled); the other waits
    // for the store and recompiles. Changes that arrive while a compile runs leave one
    // permit on `changed`, so a burst (the initial list: one per policy) costs one recompile.
    let (store, writer) = reflector::store::<ZastavaPolicy>();
    let policies = reflector::reflector(
        writer,
        watcher(
            Api::<ZastavaPolicy>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    );
    let changed = Arc::new(tokio::sync::Notify::new());
    let notify = changed.clone();
    tokio::spawn(async move {
        let mut changes = policies.touched_objects().boxed();
        while let Some(change) = changes.next().await {
            match change {
                Ok(_) => notify.notify_one(),
                Err(error) => tracing::warn!(%error, "watching ZastavaPolicies"),
            }
        }
    });
    let namespace = args.namespace.clone();
    let running = webhook.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = changed.notified() => {}
                _ = tick.tick() => {}
            }
            if store.wait_until_ready().await.is_err() {
                break;
            }
            webhook.set_policies(compile_all(&client, &store, &namespace).await);
        }
    });
    Ok(running)
}
