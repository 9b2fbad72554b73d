//! The reports API (`reports.stella-ops.org`) inside the operator process. Every replica
//! serves it: its certificate from the Secret the leader keeps (reloaded on change), the
//! cluster's front-proxy trust from the `extension-apiserver-authentication` ConfigMap
//! (reloaded on change), authorization by SubjectAccessReview.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use secrecy::ExposeSecret;
use stellaops_reports::auth::{AUTHENTICATION_CONFIGMAP, AuthConfig, Authenticator};
use stellaops_reports::authz::Authorizer;
use stellaops_reports::server::{Reports, Settings};
use stellaops_tls::ReloadableCert;

use crate::cli::RunArgs;

/// Start the server and its watches; returns once they are spawned.
pub async fn start(client: Client, args: &RunArgs) -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = args
        .reports_addr
        .parse()
        .with_context(|| format!("--reports-addr {:?}", args.reports_addr))?;
    // Without a database the API is still served (discovery answers, reads get 503): an
    // APIService whose backend is gone stalls the cluster's discovery and namespace
    // deletion.
    let pool = match &args.database_url {
        Some(url) => Some(
            stellaops_store::lookup_pool(
                url.expose_secret(),
                args.reports_db_connections,
                Duration::from_secs(2),
                Duration::from_secs(20),
            )
            .context("parsing --database-url")?,
        ),
        None => {
            tracing::warn!("no --database-url: the reports API answers 503 to reads");
            None
        }
    };
    let s3 = stellaops_store::s3::client(&stellaops_store::s3::S3Settings::from_env(
        args.s3_endpoint.clone(),
    ))
    .await;
    let authenticator = Arc::new(Authenticator::default());
    let certificate = Arc::new(ReloadableCert::new(None));
    let reports = Arc::new(Reports {
        settings: Settings::default(),
        pool,
        s3: Some(s3),
        authenticator: authenticator.clone(),
        authorizer: Authorizer::new(client.clone()),
        certificate: certificate.clone(),
        hub: stellaops_reports::watch::Hub::new(256),
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the reports API on {addr}"))?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "serving the reports API");
    tokio::spawn(async move {
        if let Err(error) =
            stellaops_reports::server::serve(listener, reports, crate::runtime::shutdown_signal())
                .await
        {
            tracing::error!(%error, "the reports API stopped");
        }
    });

    // The serving certificate, reloaded whenever the leader renews it.
    tokio::spawn(crate::webhook::follow_certificate(
        Api::namespaced(client.clone(), &args.namespace),
        stellaops_controllers::reports_api::TLS_SECRET,
        certificate,
        "reports API",
    ));

    // Who the front proxy is, from the cluster.
    let (namespace, name) = AUTHENTICATION_CONFIGMAP;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, namespace);
    let by_name = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        let mut changes = watcher(config_maps, by_name)
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(change) = changes.next().await {
            match change.map(|cm| AuthConfig::from_config_map(&cm.data.unwrap_or_default())) {
                Ok(Ok(config)) => match authenticator.set(config) {
                    Ok(()) => tracing::info!("reports API: front-proxy and client CAs loaded"),
                    Err(error) => tracing::warn!(%error, "{name} unusable"),
                },
                Ok(Err(error)) => tracing::warn!(%error, "{name} unusable"),
                Err(error) => tracing::warn!(%error, "watching {namespace}/{name}"),
            }
        }
    });
    Ok(())
}

/// The leader: keep the reports API's certificate and the APIService's CA bundle current
/// (checked every hour; renewal happens 30 days before expiry). Never returns.
pub async fn keep_certificate(ctx: Arc<stellaops_controllers::Context>) {
    loop {
        let now = jiff::Timestamp::now().as_second();
        match stellaops_controllers::reports_api::ensure(&ctx.client, &ctx.config, now).await {
            Ok(renewed) if !renewed.is_empty() => {
                tracing::info!(?renewed, "reports API certificate issued")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "keeping the reports API certificate"),
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
