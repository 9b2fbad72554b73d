use stellaops_testing::oci;
use stellaops_workers::registry::{
    Challenge, Credentials, ImageReference, Reference, RegistryClient, RegistryError,
    parse_challenge, sha256_digest,
};

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
