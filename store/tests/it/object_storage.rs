use aws_sdk_s3::primitives::ByteStream;
use stellaops_store::s3::{S3Settings, client, layout};

#[tokio::test]
async fn put_list_get_against_the_real_server() {
    let Some(endpoint) = stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT") else {
        return;
    };
    let s3 = client(&S3Settings {
        endpoint: Some(endpoint),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("store-it-{}", std::process::id());
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");

    let digest = format!("sha256:{}", "ab".repeat(32));
    let key = layout::layer_fragment(&digest);
    assert_eq!(
        key,
        format!("scanner/layers/{}/sbom.cdx.json.zst", "ab".repeat(32))
    );
    let body = b"{\"bomFormat\":\"CycloneDX\"}".to_vec();
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("put");
    s3.put_object()
        .bucket(&bucket)
        .key("concelier/json/2025-01-15/index.json")
        .body(ByteStream::from_static(b"{}"))
        .send()
        .await
        .expect("put");

    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("scanner/")
        .send()
        .await
        .expect("list");
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec![key.as_str()]);

    let got = s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .expect("get");
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        body.as_slice()
    );

    let missing = s3
        .get_object()
        .bucket(&bucket)
        .key("no/such/key")
        .send()
        .await;
    assert!(missing.is_err());

    // Wrong credentials are refused: the server really checks SigV4 signatures.
    let wrong = aws_sdk_s3::Client::from_conf(
        s3.config()
            .to_builder()
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "stellaops-test",
                "wrong-secret",
                None,
                None,
                "test",
            ))
            .build(),
    );
    assert!(
        wrong
            .list_objects_v2()
            .bucket(&bucket)
            .send()
            .await
            .is_err()
    );
}
