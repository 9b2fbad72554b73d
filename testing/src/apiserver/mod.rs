//! A Kubernetes API server emulator for end-to-end tests of the real operator binary and
//! the real `kubectl`, on machines without a cluster.
//!
//! What is emulated, close to a real API server (1.31):
//! * HTTPS (rustls, ring) with a fresh test CA per emulator; bearer tokens for `admin`
//!   (`system:masters`) and for any service account; unknown tokens get 401.
//! * Legacy discovery (`/api`, `/apis`, group versions with verbs, short names, categories,
//!   subresources); kubectl's aggregated-discovery request gets the legacy answer and falls
//!   back. A minimal `/openapi/v3` (per group-version `PATCH` operations accepting
//!   `fieldValidation`) so kubectl leaves validation to the server; `/openapi/v2` is 404.
//! * The built-in kinds the project uses, plus CRDs registered dynamically (scope, names,
//!   short names, categories, status subresource, printer columns); objects are JSON.
//! * GET, LIST (label/field selectors, `limit`/`continue`), WATCH (history replay from a
//!   `resourceVersion`, 410 Gone when compacted, bookmarks, `timeoutSeconds`,
//!   `sendInitialEvents`), create (`generateName`), update (optimistic concurrency),
//!   delete (finalizers, `deletionTimestamp`, propagation policies, deletecollection),
//!   merge / JSON / strategic-merge patches and server-side apply with per-manager field
//!   ownership and conflicts, `/status` subresources, generation bumps on spec changes.
//! * Garbage collection of dependents by `ownerReferences` (synchronous, cascading);
//!   namespace deletion removes its contents.
//! * Admission of `stella-ops.org` objects through `stellaops_crds::validation` (422 with
//!   causes), RBAC through [`crate::rbac::authorize`], Table output for `kubectl get`.
//!
//! What is not: protobuf, HTTP/2, aggregated discovery, OpenAPI schemas, built-in
//! defaulting beyond a few fields (Pod phase, Job selector/labels, Namespace phase), the
//! controllers of built-in kinds (no Deployment → ReplicaSet → Pod; see the local Job runner),
//! admission webhooks, CEL on built-ins, field selectors beyond dotted paths, and
//! strategic-merge directives other than `$patch: delete` in lists.
//!
//! Server-side apply treats lists atomically except these map lists: `containers`,
//! `initContainers`, `ephemeralContainers`, `volumes`, `env`, `imagePullSecrets`, `ports`
//! (all by `name`, when every item has one), `volumeMounts` (by `mountPath`), `conditions`
//! (by `type`), `ownerReferences` (by `uid`), and `finalizers` as a set.

mod discovery;
mod http;
mod patch;
mod select;
mod ssa;
mod store;
mod table;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use store::AuditEntry;

/// Counters of what the emulator served.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Requests per Kubernetes verb (`list`, `watch`, `get`, `patch`, ...).
    pub requests: std::collections::BTreeMap<String, u64>,
    /// Bytes of response bodies with a known length (every answer but a watch stream).
    pub response_bytes: u64,
}

/// How to start an [`Emulator`].
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    /// Load these documents at start as if created by an admin (e.g. config/rbac/*.yaml, CRDs).
    pub preload: Vec<Value>,
    /// Register the CRDs of `stellaops_crds::all_crds()` at start.
    pub stella_crds: bool,
    /// Enforce RBAC for non-admin users via [`crate::rbac::authorize`].
    pub authorize: bool,
    /// Address to bind; port 0 picks a free one below the ephemeral range (see
    /// [`crate::ports`]), so nothing takes it while [`Emulator::restart`] has it unbound.
    pub addr: SocketAddr,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            preload: Vec::new(),
            stella_crds: true,
            authorize: true,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// Binds `addr`; port 0 as a port of [`crate::ports::unused_port`]: a kernel-chosen port
/// could be given to an outgoing connection (a database pool's, held for the test) while a
/// restart has it unbound, and the restart could not bind it again.
async fn bind_emulator(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    if addr.port() != 0 {
        return TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"));
    }
    // Another process may bind the checked port before we do; then take the next one.
    let mut last_error = None;
    for _ in 0..10 {
        let candidate = SocketAddr::new(addr.ip(), crate::ports::unused_port());
        match TcpListener::bind(candidate).await {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.expect("tried at least once")).with_context(|| format!("binding {addr}"))
}

/// A running API server emulator.
pub struct Emulator {
    shared: Arc<http::Shared>,
    addr: SocketAddr,
    ca_pem: String,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
    server: Option<Server>,
}

/// The accept loop and the tasks serving its connections, aborted together on restart.
struct Server {
    accept: JoinHandle<()>,
    connections: Arc<Mutex<tokio::task::JoinSet<()>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .abort_all();
    }
}

impl Emulator {
    /// Start serving with `options`.
    pub async fn start(options: EmulatorOptions) -> anyhow::Result<Emulator> {
        let nonce = store::random_token();
        let (ca_pem, tls) = test_tls()?;
        let mut store = store::Store::new();
        if options.stella_crds {
            for crd in stellaops_crds::all_crds() {
                let crd = serde_json::to_value(&crd).context("CRD serializes")?;
                store
                    .preload(crd)
                    .map_err(anyhow::Error::msg)
                    .context("registering a Stella Ops CRD")?;
            }
        }
        // CRDs and namespaces first, so objects that need them find them.
        let rank = |v: &Value| match v.get("kind").and_then(Value::as_str) {
            Some("CustomResourceDefinition") => 0,
            Some("Namespace") => 1,
            _ => 2,
        };
        let mut preload = options.preload.clone();
        preload.sort_by_key(rank);
        for object in preload {
            if object.is_null() {
                continue;
            }
            store
                .preload(object)
                .map_err(anyhow::Error::msg)
                .context("preloading an object")?;
        }
        let listener = bind_emulator(options.addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(http::Shared::new(
            store,
            options.authorize,
            format!("admin-{nonce}"),
            format!("sa-{nonce}"),
            addr,
        ));
        let server = serve(listener, tls.clone(), shared.clone());
        Ok(Emulator {
            shared,
            addr,
            ca_pem,
            tls,
            server: Some(server),
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The test CA that signed the serving certificate (SAN 127.0.0.1, localhost).
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// Token of user `admin` in group `system:masters`.
    pub fn admin_token(&self) -> String {
        self.shared.admin_token.clone()
    }

    /// Token of `system:serviceaccount:NAMESPACE:NAME` (groups `system:serviceaccounts`,
    /// `system:serviceaccounts:NAMESPACE`, `system:authenticated`).
    pub fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let encoded =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{namespace}/{name}"));
        format!("{}.{encoded}", self.shared.sa_prefix)
    }

    /// A kubeconfig (YAML) for this server with `token`.
    pub fn kubeconfig(&self, token: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: user\n  user:\n    token: {token}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: user\n    namespace: default\ncurrent-context: emulator\n",
            self.url()
        )
    }

    /// A client built from [`Emulator::kubeconfig`] the way the operator builds one.
    pub async fn client(&self, token: &str) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&self.kubeconfig(token))
            .expect("the emulator's kubeconfig parses");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("the emulator's kubeconfig is usable");
        kube::Client::try_from(config).expect("a client for the emulator")
    }

    /// Stop serving (open watches break, connections are refused), drop the watch history
    /// so a resume from an older resourceVersion gets 410 Gone, then serve again on the same
    /// port with the same objects (which keep their resourceVersions).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(mut server) = self.server.take() {
            server.accept.abort();
            server.accept_done().await;
        }
        self.shared.with_store(|store| store.compact());
        // The old listener is gone once its task is aborted; binding may race the OS briefly.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(error) if tries < 50 => {
                    tries += 1;
                    tracing::debug!(%error, "rebinding the emulator's port");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(error) => return Err(error).context("rebinding the emulator's port"),
            }
        };
        self.server = Some(serve(listener, self.tls.clone(), self.shared.clone()));
        Ok(())
    }

    /// Stop serving.
    pub async fn shutdown(mut self) {
        if let Some(mut server) = self.server.take() {
            server.accept.abort();
            server.accept_done().await;
        }
    }

    /// The stored objects of `api_version`/`kind`, ordered by namespace and name.
    pub fn objects(&self, api_version: &str, kind: &str) -> Vec<Value> {
        self.shared
            .with_store(|store| store.objects_of(api_version, kind))
    }

    /// How many stored objects of `api_version`/`kind` satisfy `predicate`, without copying
    /// them (a benchmark polling thousands of objects).
    pub fn count(
        &self,
        api_version: &str,
        kind: &str,
        predicate: impl Fn(&Value) -> bool,
    ) -> usize {
        self.shared
            .with_store(|store| store.count_of(api_version, kind, predicate))
    }

    /// Change every stored object of `api_version`/`kind` in place: no new resourceVersion
    /// and no watch event, so only for setting up (a benchmark's Scans already finished,
    /// before any client watches).
    pub fn rewrite(&self, api_version: &str, kind: &str, change: impl FnMut(&mut Value)) {
        self.shared
            .with_store(|store| store.rewrite(api_version, kind, change));
    }

    /// Every request served so far.
    pub fn audit_log(&self) -> Vec<AuditEntry> {
        self.shared.audit_log()
    }

    /// Requests per verb and response bytes so far, without copying the audit log (which
    /// a benchmark of thousands of objects makes large).
    pub fn traffic(&self) -> Traffic {
        self.shared.traffic()
    }
}

impl Server {
    /// Wait until the aborted accept loop has released its listener, and drop every
    /// connection.
    async fn accept_done(&mut self) {
        let _ = (&mut self.accept).await;
        let mut connections =
            std::mem::take(&mut *self.connections.lock().unwrap_or_else(|e| e.into_inner()));
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

fn serve(
    listener: TcpListener,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
    shared: Arc<http::Shared>,
) -> Server {
    let connections = Arc::new(Mutex::new(tokio::task::JoinSet::new()));
    let tracked = connections.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let accept = tokio::spawn(async move {
        loop {
            let (stream, _peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "emulator accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            };
            // As the real API server (Go sets TCP_NODELAY on every connection): with Nagle's
            // algorithm the last partial segment of a large answer waits for the client's
            // delayed ACK.
            let _ = stream.set_nodelay(true);
            let (acceptor, shared) = (acceptor.clone(), shared.clone());
            let mut set = tracked.lock().unwrap_or_else(|e| e.into_inner());
            // Reap finished connections so the set stays small.
            while set.try_join_next().is_some() {}
            set.spawn(async move {
                let handshake = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    acceptor.accept(stream),
                )
                .await;
                let Ok(Ok(tls)) = handshake else { return };
                let service = hyper::service::service_fn(move |request| {
                    let shared = shared.clone();
                    async move { Ok::<_, std::convert::Infallible>(shared.handle(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Server {
        accept,
        connections,
    }
}

/// A fresh CA and a serving certificate for 127.0.0.1 and localhost signed by it.
fn test_tls() -> anyhow::Result<(String, Arc<tokio_rustls::rustls::ServerConfig>)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "stellaops emulator test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "stellaops emulator");
    let cert = params.signed_by(&key, &issuer)?;
    let certified =
        stellaops_tls::certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes())?;
    let resolver = Arc::new(stellaops_tls::ReloadableCert::new(Some(certified)));
    Ok((ca_cert.pem(), stellaops_tls::config_with_resolver(resolver)))
}
