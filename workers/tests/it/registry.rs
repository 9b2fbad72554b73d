use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stellaops_testing::oci;
use stellaops_workers::registry::{
    Challenge, Credentials, ImageReference, Reference, RegistryClient, RegistryError,
    RegistryLimits, is_loopback_host, parse_challenge, sha256_digest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn references_follow_docker_defaults() {
    let r: ImageReference = "nginx".parse().unwrap();
    assert_eq!(
        (r.registry.as_str(), r.repository.as_str()),
        ("docker.io", "library/nginx")
    );
    assert_eq!(r.reference, Reference::Tag("latest".into()));
    let r: ImageReference = "127.0.0.1:5000/team/app:v1.2".parse().unwrap();
    assert_eq!(
        (r.registry.as_str(), r.repository.as_str()),
        ("127.0.0.1:5000", "team/app")
    );
    assert_eq!(r.reference, Reference::Tag("v1.2".into()));
    let digest = format!("sha256:{}", "0".repeat(64));
    let r: ImageReference = format!("ghcr.io/org/app:v1@{digest}").parse().unwrap();
    assert_eq!(r.reference, Reference::Digest(digest));
    let r: ImageReference = "localhost/app".parse().unwrap();
    assert_eq!(r.registry, "localhost");
    for bad in [
        "",
        "Nginx/App",
        "app@sha256:123",
        "app@md5:abc",
        "registry.io//app",
        "a b",
    ] {
        assert!(bad.parse::<ImageReference>().is_err(), "{bad:?} parsed");
    }
}

#[test]
fn challenges_parse() {
    assert_eq!(
        parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:app:pull""#
        ),
        Some(Challenge::Bearer {
            realm: "https://auth.example.com/token".into(),
            service: Some("registry.example.com".into()),
            scope: Some("repository:app:pull".into()),
        })
    );
    assert_eq!(
        parse_challenge(r#"Basic realm="Registry""#),
        Some(Challenge::Basic)
    );
    assert_eq!(parse_challenge("Negotiate"), None);
    assert_eq!(
        parse_challenge("Bearer service=x"),
        None,
        "a bearer challenge needs a realm"
    );
}

#[test]
fn docker_config_credentials_parse() {
    // base64("robot:s3cret")
    let config = r#"{"auths": {"https://registry.example.com/v1/": {"auth": "cm9ib3Q6czNjcmV0"},
                               "ghcr.io": {"username": "u", "password": "p"}}}"#;
    assert!(Credentials::from_docker_config(config).is_ok());
    assert!(Credentials::from_docker_config(r#"{"auths": {"x": {"auth": "%%%"}}}"#).is_err());
    assert!(Credentials::from_docker_config("[]").is_err());
}

#[tokio::test]
async fn manifests_are_fetched_and_verified_from_the_real_registry() {
    let Some(registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("stellaops-oci-{}", std::process::id()));
    let layer = oci::tar_of(&[("etc/os-release", b"ID=debian\nVERSION_ID=12\n")]);
    let image = oci::write_layout(&dir, &[layer], "v1");
    oci::push(&dir, "v1", &registry, "stellaops-it/app");
    std::fs::remove_dir_all(&dir).unwrap();

    let client = RegistryClient::new(Credentials::default(), vec![]).unwrap();
    let by_tag: ImageReference = format!("{registry}/stellaops-it/app:v1").parse().unwrap();
    let manifest = client.fetch_manifest(&by_tag).await.unwrap();
    assert_eq!(manifest.digest, image.manifest_digest);
    assert_eq!(manifest.bytes, image.manifest);
    assert_eq!(
        manifest.media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(sha256_digest(&manifest.bytes), image.manifest_digest);

    let by_digest: ImageReference =
        format!("{registry}/stellaops-it/app@{}", image.manifest_digest)
            .parse()
            .unwrap();
    assert_eq!(
        client.fetch_manifest(&by_digest).await.unwrap().bytes,
        image.manifest
    );

    let missing: ImageReference = format!("{registry}/stellaops-it/app:v2").parse().unwrap();
    let result = client.fetch_manifest(&missing).await;
    assert!(
        matches!(result, Err(RegistryError::NotFound(_))),
        "{result:?}"
    );
}

#[test]
fn only_loopback_addresses_and_named_hosts_get_plain_http() {
    for host in [
        "127.0.0.1",
        "127.0.0.1:5000",
        "127.10.20.30:443",
        "[::1]:5000",
        "::1",
        "localhost",
        "localhost:5000",
    ] {
        assert!(is_loopback_host(host), "{host} is loopback");
    }
    for host in [
        "127.evil.example",
        "127.0.0.1.evil.example",
        "127.0.0.1.nip.io:5000",
        "localhost.evil.example",
        "localhost.evil.example:5000",
        "[::1].evil:5000",
        "10.0.0.1:5000",
        "registry.lan:5000",
    ] {
        assert!(!is_loopback_host(host), "{host} is not loopback");
    }
    let client =
        RegistryClient::new(Credentials::default(), vec!["registry.lan:5000".into()]).unwrap();
    assert!(client.is_plain_http("registry.lan:5000"));
    assert!(
        !client.is_plain_http("registry.lan"),
        "insecure is by exact host:port"
    );
    assert!(!client.is_plain_http("registry.lan:5001"));
    assert!(!client.is_plain_http("127.evil.example"));
    assert!(client.is_plain_http("127.0.0.1:5000"));
}

#[test]
fn credentials_never_show_in_debug_output() {
    let credentials = Credentials::from_docker_config(
        r#"{"auths": {"ghcr.io": {"username": "robot", "password": "hunter2-secret"}}}"#,
    )
    .unwrap();
    let client = RegistryClient::new(credentials.clone(), vec![]).unwrap();
    for text in [format!("{credentials:?}"), format!("{client:?}")] {
        assert!(text.contains("ghcr.io"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("robot"),
            "{text}"
        );
    }
}

/// What a hand-made registry peer answers to one request head.
enum Answer {
    /// These bytes (a whole HTTP response), then the connection closes.
    Reply(Vec<u8>),
    /// This response head, then the body slowly: `chunks` chunks of `chunk` bytes,
    /// chunked encoding, as fast as the client reads.
    Chunked {
        head: String,
        chunk: usize,
        chunks: usize,
    },
    /// These bytes, then nothing at all (the connection stays open).
    Stall(Vec<u8>),
}

/// A registry peer on loopback that records every request head it receives.
struct Peer {
    address: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Peer {
    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn reply(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    Answer::Reply(bytes)
}

async fn peer(respond: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Peer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let respond = Arc::new(respond);
    let recorded = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let respond = respond.clone();
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                recorded.lock().unwrap().push(head.clone());
                match respond(&head) {
                    Answer::Reply(bytes) => {
                        let _ = socket.write_all(&bytes).await;
                        let _ = socket.shutdown().await;
                    }
                    Answer::Chunked {
                        head,
                        chunk,
                        chunks,
                    } => {
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let body = vec![b' '; chunk];
                        for _ in 0..chunks {
                            let mut frame = format!("{chunk:x}\r\n").into_bytes();
                            frame.extend_from_slice(&body);
                            frame.extend_from_slice(b"\r\n");
                            if socket.write_all(&frame).await.is_err() {
                                return;
                            }
                        }
                        let _ = socket.write_all(b"0\r\n\r\n").await;
                    }
                    Answer::Stall(bytes) => {
                        let _ = socket.write_all(&bytes).await;
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                }
            });
        }
    });
    Peer { address, heads }
}

/// A TCP relay in front of `target` that keeps a copy of every byte the client sent.
async fn recording_relay(target: String) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let recorded = sent.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                continue;
            };
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let upstream = async move {
                    let mut buffer = [0u8; 16384];
                    loop {
                        match client_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                recorded.lock().unwrap().extend_from_slice(&buffer[..n]);
                                if server_write.write_all(&buffer[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = server_write.shutdown().await;
                };
                let downstream = async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    let _ = client_write.shutdown().await;
                };
                tokio::join!(upstream, downstream);
            });
        }
    });
    (address, sent)
}

fn basic(user: &str, password: &str) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{user}:{password}"),
    )
}

fn docker_config(host: &str, user: &str, password: &str) -> Credentials {
    Credentials::from_docker_config(&format!(
        r#"{{"auths": {{"{host}": {{"auth": "{}"}}}}}}"#,
        basic(user, password)
    ))
    .unwrap()
}

/// The config digest and the (digest, size) of each layer of a manifest.
fn blobs_of(manifest: &[u8]) -> (String, Vec<(String, u64)>) {
    let json: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let layers = json["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect();
    (
        json["config"]["digest"].as_str().unwrap().to_string(),
        layers,
    )
}

#[tokio::test]
async fn credentials_of_one_registry_never_reach_another() {
    let Some(open_registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    let private = crate::scan::auth_registry("scope", "alice", "alice-secret").await;
    let dir = std::env::temp_dir().join(format!("stellaops-oci-scope-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let layer = oci::tar_of(&[("etc/os-release", b"ID=alpine\nVERSION_ID=3.20\n")]);
    let built = oci::write_layout(&dir, &[layer], "v1");
    oci::push_as(
        &dir,
        "v1",
        &private.address,
        "team/app",
        Some("alice:alice-secret"),
    );
    oci::push(&dir, "v1", &open_registry, "stellaops-it/scope");
    std::fs::remove_dir_all(&dir).unwrap();
    let (config, layers) = blobs_of(&built.manifest);
    // The second registry is seen through a relay that keeps every byte sent to it.
    let (relayed, sent) = recording_relay(open_registry.clone()).await;

    let client = RegistryClient::new(
        docker_config(&private.address, "alice", "alice-secret"),
        vec![],
    )
    .unwrap();
    let scratch = std::env::temp_dir().join(format!("stellaops-scope-blob-{}", std::process::id()));
    for (registry, repository) in [
        (private.address.as_str(), "team/app"),
        (relayed.as_str(), "stellaops-it/scope"),
        (private.address.as_str(), "team/app"),
        (relayed.as_str(), "stellaops-it/scope"),
    ] {
        let image: ImageReference = format!("{registry}/{repository}:v1").parse().unwrap();
        let manifest = client.fetch_manifest(&image).await.unwrap();
        assert_eq!(manifest.digest, built.manifest_digest);
        let config_bytes = client.fetch_blob(&image, &config).await.unwrap();
        assert_eq!(sha256_digest(&config_bytes), config);
        let (layer, size) = &layers[0];
        assert_eq!(
            client
                .download_blob(&image, layer, *size, &scratch)
                .await
                .unwrap(),
            *size
        );
    }
    let _ = std::fs::remove_file(&scratch);
    let sent = String::from_utf8_lossy(&sent.lock().unwrap()).to_ascii_lowercase();
    assert!(
        sent.contains("get /v2/stellaops-it/scope/blobs/"),
        "the relay saw the requests"
    );
    assert!(
        !sent.contains("authorization"),
        "the first registry's credentials reached the second:\n{sent}"
    );
    // The other way round: credentials for the open registry only, the private one refuses.
    let client =
        RegistryClient::new(docker_config(&relayed, "alice", "alice-secret"), vec![]).unwrap();
    let image: ImageReference = format!("{}/team/app:v1", private.address).parse().unwrap();
    let error = client.fetch_manifest(&image).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "registry {} refused access to team/app (401); check the pull secret",
            private.address
        )
    );
}

#[tokio::test]
async fn a_redirect_to_blob_storage_elsewhere_goes_without_the_authorization() {
    let blob = b"{\"architecture\":\"amd64\"}".to_vec();
    let digest = sha256_digest(&blob);
    let served = blob.clone();
    let storage = peer(move |_| reply("200 OK", &[], &served)).await;
    let storage_url = format!("http://{}/bucket/object?signature=abc", storage.address);
    let expected =
        format!("authorization: basic {}", basic("bob", "bob-secret")).to_ascii_lowercase();
    let registry = peer(move |head| {
        if head.to_ascii_lowercase().contains(&expected) {
            reply("307 Temporary Redirect", &[("Location", &storage_url)], b"")
        } else {
            reply(
                "401 Unauthorized",
                &[("WWW-Authenticate", "Basic realm=\"test\"")],
                b"",
            )
        }
    })
    .await;
    let client = RegistryClient::new(
        docker_config(&registry.address, "bob", "bob-secret"),
        vec![],
    )
    .unwrap();
    let image: ImageReference = format!("{}/team/app:v1", registry.address).parse().unwrap();
    assert_eq!(client.fetch_blob(&image, &digest).await.unwrap(), blob);
    let to_registry = registry.heads();
    assert!(
        to_registry
            .iter()
            .any(|h| h.to_ascii_lowercase().contains("authorization: basic")),
        "the registry got its credentials: {to_registry:?}"
    );
    let to_storage = storage.heads();
    assert_eq!(to_storage.len(), 1, "{to_storage:?}");
    assert!(
        !to_storage[0].to_ascii_lowercase().contains("authorization"),
        "blob storage got the registry's credentials: {}",
        to_storage[0]
    );
}

fn short_limits() -> RegistryLimits {
    RegistryLimits {
        request_timeout: Duration::from_secs(1),
        stall_timeout: Duration::from_secs(1),
        blob_timeout: Duration::from_secs(2),
        ..RegistryLimits::default()
    }
}

#[tokio::test]
async fn a_stalling_registry_fails_within_the_timeout() {
    // One peer never answers; the other sends a head and then no body.
    let silent = peer(|_| Answer::Stall(Vec::new())).await;
    let half = peer(|_| {
        Answer::Stall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 1000\r\n\r\n{".to_vec(),
        )
    })
    .await;
    let client =
        RegistryClient::with_limits(Credentials::default(), vec![], short_limits()).unwrap();
    for stalled in [&silent, &half] {
        let image: ImageReference = format!("{}/team/app:v1", stalled.address).parse().unwrap();
        let started = Instant::now();
        let error = client.fetch_manifest(&image).await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            matches!(error, RegistryError::Timeout { .. }),
            "{error:?} after {elapsed:?}"
        );
        assert_eq!(
            error.to_string(),
            format!("registry {} did not answer within 1.0 s", stalled.address)
        );
        assert!(
            elapsed < Duration::from_secs(3),
            "a 1 s budget took {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn an_oversized_manifest_is_refused_before_it_is_held() {
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    // One peer announces 5 MiB; the other streams 5 MiB without announcing a length.
    let announced = peer(|_| {
        Answer::Stall(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {MANIFEST}\r\nContent-Length: {}\r\n\r\n",
                5 << 20
            )
            .into_bytes(),
        )
    })
    .await;
    let streamed = peer(|_| Answer::Chunked {
        head: format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {MANIFEST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        ),
        chunk: 64 << 10,
        chunks: 80,
    })
    .await;
    let client =
        RegistryClient::with_limits(Credentials::default(), vec![], short_limits()).unwrap();
    for oversized in [&announced, &streamed] {
        let image: ImageReference = format!("{}/team/app:v1", oversized.address)
            .parse()
            .unwrap();
        let error = client.fetch_manifest(&image).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "registry {} sent a manifest larger than 4194304 bytes; refused",
                oversized.address
            )
        );
    }
}

#[tokio::test]
async fn blobs_are_held_to_the_size_their_descriptor_declares() {
    let Some(registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("stellaops-oci-size-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let layer = oci::tar_of(&[("etc/os-release", b"ID=debian\nVERSION_ID=12\n")]);
    let built = oci::write_layout(&dir, &[layer], "v1");
    oci::push(&dir, "v1", &registry, "stellaops-it/size");
    std::fs::remove_dir_all(&dir).unwrap();
    let (_, layers) = blobs_of(&built.manifest);
    let (layer, size) = layers[0].clone();
    let client = RegistryClient::new(Credentials::default(), vec![]).unwrap();
    let image: ImageReference = format!("{registry}/stellaops-it/size:v1").parse().unwrap();
    let file = std::env::temp_dir().join(format!("stellaops-size-blob-{}", std::process::id()));
    let smaller = client
        .download_blob(&image, &layer, size - 1, &file)
        .await
        .unwrap_err();
    assert!(
        matches!(smaller, RegistryError::TooLarge { .. }),
        "{smaller}"
    );
    let larger = client
        .download_blob(&image, &layer, size + 1, &file)
        .await
        .unwrap_err();
    assert!(
        larger
            .to_string()
            .contains(&format!("ended after {size} of the {} bytes", size + 1)),
        "{larger}"
    );
    assert_eq!(
        client
            .download_blob(&image, &layer, size, &file)
            .await
            .unwrap(),
        size
    );
    let _ = std::fs::remove_file(&file);
}
