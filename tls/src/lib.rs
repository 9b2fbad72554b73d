//! TLS for the platform's HTTPS servers: rustls (ring), certificates from PEM files or a
//! certificate that can be replaced while serving (the webhook's rotated Secret), and an
//! axum listener that finishes each handshake off the accept loop so a slow client cannot
//! hold the others up.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::server::TlsStream;

/// A server configuration from a PEM certificate chain and private key.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let certified = certified_key(&cert_pem, &key_pem)
        .with_context(|| format!("{} and {}", cert.display(), key.display()))?;
    Ok(config_with_resolver(Arc::new(ReloadableCert::new(Some(
        certified,
    )))))
}

/// A server configuration from a PEM certificate chain and private key that also asks
/// clients for a certificate and verifies any presented against the PEM CA certificates
/// in `client_ca` (a certificate that does not verify fails the handshake). Clients
/// without one are let through to the application, which decides (a bearer token may do).
pub fn server_config_with_client_ca(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> anyhow::Result<Arc<ServerConfig>> {
    let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let certified = certified_key(&cert_pem, &key_pem)
        .with_context(|| format!("{} and {}", cert.display(), key.display()))?;
    let ca_pem =
        std::fs::read(client_ca).with_context(|| format!("reading {}", client_ca.display()))?;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&ca_pem) {
        let ca = ca.with_context(|| format!("{}: not a PEM certificate", client_ca.display()))?;
        roots
            .add(ca)
            .with_context(|| format!("{}: not a usable CA certificate", client_ca.display()))?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "{}: no CA certificate in it",
        client_ca.display()
    );
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let verifier = tokio_rustls::rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .context("client certificate verifier")?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(ReloadableCert::new(Some(certified))));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A certificate and key ready for rustls, from PEM bytes.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .context("not a PEM certificate chain")?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in the PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("not a PEM private key")?;
    let provider = tokio_rustls::rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .context("certificate and key do not match")?;
    Ok(Arc::new(certified))
}

/// A server configuration whose certificate comes from `resolver` at each handshake.
pub fn config_with_resolver(resolver: Arc<ReloadableCert>) -> Arc<ServerConfig> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The serving certificate, replaceable while connections are open: new handshakes get
/// the new certificate, established connections keep theirs (so rotation drops nothing).
/// Until a certificate is set, handshakes fail.
#[derive(Debug, Default)]
pub struct ReloadableCert {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl ReloadableCert {
    /// A resolver serving `initial` (or nothing yet).
    pub fn new(initial: Option<Arc<CertifiedKey>>) -> Self {
        ReloadableCert {
            current: RwLock::new(initial),
        }
    }

    /// Serve `certified` from the next handshake on.
    pub fn set(&self, certified: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(certified);
    }

    /// Whether a certificate is loaded.
    pub fn is_loaded(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// An axum listener serving TLS.
pub struct TlsListener {
    connections: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accept on `tcp`, handshaking with `config`; handshakes that fail or take longer
    /// than ten seconds are dropped (and logged). At most [`MAX_HANDSHAKES`] run at once:
    /// a flood of connections that never finish their handshake waits in the kernel's
    /// backlog instead of costing a task and a TLS state each.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, connections) = mpsc::channel(64);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(handshake) = handshakes.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Before the handshake too: its server flight is several writes.
                no_delay(&stream);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _handshake = handshake;
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { connections, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept loop ended (it never does while the runtime runs): wait forever.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// TLS handshakes a [`TlsListener`] runs at once.
pub const MAX_HANDSHAKES: usize = 256;

/// Bounds of [`serve_bounded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once; the next is accepted when one closes.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (from the connection's start, and
    /// between requests on a kept-alive connection); then the connection is closed.
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// A server connection over TCP, whose socket options can be set.
pub trait TcpConnection {
    /// The TCP socket underneath.
    fn tcp(&self) -> &TcpStream;
}

impl TcpConnection for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl TcpConnection for TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Switch Nagle's algorithm off, as Go's servers (the API server) and nginx
/// (`tcp_nodelay on`) do: with it on, the last partial segment of an answer longer than
/// one segment waits for the client's delayed ACK (up to 40 ms on Linux), which a LIST of
/// a few hundred objects or a mirrored file hits on every response.
fn no_delay(tcp: &TcpStream) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY not set");
    }
}

/// Serve `router` on `listener` like `axum::serve(..).with_graceful_shutdown(shutdown)`,
/// but with a bound on open connections and on the time to send request headers (which
/// `axum::serve` leaves unbounded: a client trickling a header byte a minute would hold
/// its connection, and its memory, forever), and with `TCP_NODELAY` on every connection
/// (see [`no_delay`]). Each request carries
/// `ConnectInfo(connect_info(&io, &addr))`. HTTP/1.1 only (what the ALPN offers).
pub async fn serve_bounded<L, C, F, S>(
    listener: L,
    router: axum::Router,
    limits: ConnectionLimits,
    connect_info: F,
    shutdown: S,
) where
    L: axum::serve::Listener,
    L::Io: TcpConnection,
    C: Clone + Send + Sync + 'static,
    F: Fn(&L::Io, &L::Addr) -> C,
    S: std::future::Future<Output = ()> + Send,
{
    use tower::ServiceExt as _;
    serve_connections(
        listener,
        move |io, addr| {
            let info = connect_info(io, addr);
            let service = router
                .clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(info)))
                .map_request(|request: axum::http::Request<hyper::body::Incoming>| {
                    request.map(axum::body::Body::new)
                });
            hyper_util::service::TowerToHyperService::new(service)
        },
        limits,
        shutdown,
    )
    .await;
}

/// [`serve_bounded`] for a server whose requests are answered by `handler` instead of a
/// router (and carry no `ConnectInfo`): the same connection bound, header-read timeout and
/// graceful shutdown, for a server whose hot route must not pay the generic router's
/// per-request work (matching, path parameters, extension maps). `handler` is cloned for
/// each request.
pub async fn serve_bounded_fn<L, H, R, S>(
    listener: L,
    handler: H,
    limits: ConnectionLimits,
    shutdown: S,
) where
    L: axum::serve::Listener,
    L::Io: TcpConnection,
    H: Fn(axum::http::Request<axum::body::Body>) -> R + Clone + Send + Sync + 'static,
    R: std::future::Future<Output = axum::response::Response> + Send + 'static,
    S: std::future::Future<Output = ()> + Send,
{
    serve_connections(
        listener,
        move |_, _| FnService(handler.clone()),
        limits,
        shutdown,
    )
    .await;
}

/// A connection's service answering each request with `handler` (called by reference: no
/// clone of the service per request, as a tower service needs).
struct FnService<H>(H);

impl<H, R> hyper::service::Service<axum::http::Request<hyper::body::Incoming>> for FnService<H>
where
    H: Fn(axum::http::Request<axum::body::Body>) -> R,
    R: std::future::Future<Output = axum::response::Response>,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::Map<
        R,
        fn(axum::response::Response) -> Result<axum::response::Response, std::convert::Infallible>,
    >;

    fn call(&self, request: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        use futures::FutureExt as _;
        (self.0)(request.map(axum::body::Body::new)).map(Ok)
    }
}

/// The accept loop of [`serve_bounded`] and [`serve_bounded_fn`], with `service_for`
/// making each connection's service.
async fn serve_connections<L, M, T, S>(
    mut listener: L,
    mut service_for: M,
    limits: ConnectionLimits,
    shutdown: S,
) where
    L: axum::serve::Listener,
    L::Io: TcpConnection,
    M: FnMut(&L::Io, &L::Addr) -> T,
    T: hyper::service::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    T::Future: Send + 'static,
    S: std::future::Future<Output = ()> + Send,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (io, addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        no_delay(io.tcp());
        let service = service_for(&io, &addr);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = permit;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(io), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended");
                    }
                }
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    // Let the open connections finish their requests, then return.
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A plain listener that keeps a duplicate of each accepted socket (the same socket:
    /// its options read through either) and notes whether Nagle was on at accept.
    struct Recording {
        inner: TcpListener,
        sockets: Arc<std::sync::Mutex<Vec<(bool, std::net::TcpStream)>>>,
    }

    impl axum::serve::Listener for Recording {
        type Io = TcpStream;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (TcpStream, SocketAddr) {
            let (stream, peer) = self.inner.accept().await.expect("accepted");
            let delayed_at_accept = !stream.nodelay().expect("readable");
            let stream = stream.into_std().expect("a std socket");
            let duplicate = stream.try_clone().expect("duplicated");
            self.sockets
                .lock()
                .unwrap()
                .push((delayed_at_accept, duplicate));
            (TcpStream::from_std(stream).expect("a tokio socket"), peer)
        }

        fn local_addr(&self) -> std::io::Result<SocketAddr> {
            self.inner.local_addr()
        }
    }

    /// A TLS listener that notes, for each connection it hands on, whether Nagle was off.
    struct RecordingTls {
        inner: TlsListener,
        no_delay: Arc<std::sync::Mutex<Vec<bool>>>,
    }

    impl axum::serve::Listener for RecordingTls {
        type Io = TlsStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, SocketAddr) {
            let (tls, peer) = self.inner.accept().await;
            let no_delay = tls.get_ref().0.nodelay().expect("readable");
            self.no_delay.lock().unwrap().push(no_delay);
            (tls, peer)
        }

        fn local_addr(&self) -> std::io::Result<SocketAddr> {
            Ok(self.inner.local)
        }
    }

    fn router() -> axum::Router {
        // An answer of several TCP segments: the case Nagle's algorithm delays.
        axum::Router::new().route("/", axum::routing::get(|| async { "x".repeat(200_000) }))
    }

    /// Send one request on `stream` and read the whole answer (the server closes).
    async fn get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        mut stream: S,
    ) -> Vec<u8> {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        answer
    }

    #[tokio::test]
    async fn plain_connections_are_served_without_nagle() {
        for handler_server in [false, true] {
            let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = inner.local_addr().unwrap();
            let sockets = Arc::new(std::sync::Mutex::new(Vec::new()));
            let listener = Recording {
                inner,
                sockets: sockets.clone(),
            };
            let server = if handler_server {
                tokio::spawn(serve_bounded_fn(
                    listener,
                    |_request| async {
                        axum::response::IntoResponse::into_response("x".repeat(200_000))
                    },
                    ConnectionLimits::default(),
                    std::future::pending(),
                ))
            } else {
                tokio::spawn(serve_bounded(
                    listener,
                    router(),
                    ConnectionLimits::default(),
                    |_, peer: &SocketAddr| *peer,
                    std::future::pending(),
                ))
            };
            let answer = get(TcpStream::connect(addr).await.unwrap()).await;
            assert!(answer.starts_with(b"HTTP/1.1 200 OK"), "{handler_server}");
            assert!(answer.len() > 200_000);
            let sockets = sockets.lock().unwrap();
            assert_eq!(sockets.len(), 1);
            let (delayed_at_accept, socket) = &sockets[0];
            // Linux accepts with Nagle on: the server is what switched it off.
            assert!(delayed_at_accept);
            assert!(
                socket.nodelay().unwrap(),
                "handler server: {handler_server}"
            );
            server.abort();
        }
    }

    #[tokio::test]
    async fn tls_connections_are_served_without_nagle() {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert_pem = certified.cert.pem();
        let key = certified_key(
            cert_pem.as_bytes(),
            certified.signing_key.serialize_pem().as_bytes(),
        )
        .unwrap();
        let config = config_with_resolver(Arc::new(ReloadableCert::new(Some(key))));
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let no_delay = Arc::new(std::sync::Mutex::new(Vec::new()));
        let listener = RecordingTls {
            inner: TlsListener::new(tcp, config).unwrap(),
            no_delay: no_delay.clone(),
        };
        let server = tokio::spawn(serve_bounded(
            listener,
            router(),
            ConnectionLimits::default(),
            |_, peer: &SocketAddr| *peer,
            std::future::pending(),
        ));

        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.add(certified.cert.der().clone()).unwrap();
        let client = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let stream = connector
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                TcpStream::connect(addr).await.unwrap(),
            )
            .await
            .unwrap();
        let answer = get(stream).await;
        assert!(answer.starts_with(b"HTTP/1.1 200 OK"));
        // Off before the handshake already, not only once the connection is served.
        assert_eq!(*no_delay.lock().unwrap(), vec![true]);
        server.abort();
    }
}
