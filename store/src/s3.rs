//! S3 client construction and the platform's object layout (release-and-operations §7.1).

use aws_sdk_s3::config::{BehaviorVersion, Region};

/// How to reach object storage. Credentials come from the standard `AWS_*` variables
/// (or the pod's ambient identity).
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    /// Endpoint of an S3-compatible server; AWS when `None`.
    pub endpoint: Option<String>,
    /// Region; `AWS_REGION` or `us-east-1` when `None`.
    pub region: Option<String>,
    /// Path-style addressing (needed by most self-hosted servers).
    pub force_path_style: bool,
}

impl S3Settings {
    /// Settings from `--s3-endpoint`/`AWS_ENDPOINT_URL` and `AWS_REGION`; path style is
    /// used whenever an endpoint is given.
    pub fn from_env(endpoint_flag: Option<String>) -> Self {
        let endpoint = endpoint_flag
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .filter(|e| !e.is_empty());
        S3Settings {
            force_path_style: endpoint.is_some(),
            endpoint,
            region: std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()),
        }
    }
}

/// Build a client.
pub async fn client(settings: &S3Settings) -> aws_sdk_s3::Client {
    let region = Region::new(
        settings
            .region
            .clone()
            .unwrap_or_else(|| "us-east-1".to_string()),
    );
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .region(region)
        .load()
        .await;
    let mut builder =
        aws_sdk_s3::config::Builder::from(&shared).force_path_style(settings.force_path_style);
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// The HTTPS client of every AWS call (S3 and the credential providers): rustls on ring,
/// the one crypto provider of the workspace (the SDK's default client is on aws-lc-rs).
fn https_client() -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Object keys under the platform bucket.
pub mod layout {
    /// Per-layer SBOM fragment, keyed by the layer digest (`sha256:<hex>`).
    pub fn layer_fragment(layer_digest: &str) -> String {
        format!(
            "scanner/layers/{}/sbom.cdx.json.zst",
            hex_part(layer_digest)
        )
    }

    /// The sealed analysis of one image manifest (`sha256:<hex>`: its layers stacked, the
    /// Usage view worked out) by analyzer version `analyzer`, which a forced rescan of the
    /// same image reads instead of every layer's fragment.
    pub fn image_analysis(manifest_digest: &str, analyzer: u32) -> String {
        format!(
            "scanner/images/{}/analysis.v{analyzer}.json.zst",
            hex_part(manifest_digest)
        )
    }

    /// An image's inventory SBOM (CycloneDX), named by the SHA-256 of its own bytes:
    /// content-addressed, so an object never changes once written and every stored
    /// `sbom_sha256` keeps matching the object its result points to (the seed's
    /// `images/<imgDigest>/inventory…` key would be rewritten by every rescan of the
    /// digest). Which image it describes is in the SBOM and in `scan_results`.
    pub fn image_inventory(sbom_sha256: &str) -> String {
        format!("scanner/sboms/{}.cdx.json", hex_part(sbom_sha256))
    }

    /// The Usage SBOM (the entrypoint's components) with content `usage_sha256`, beside the
    /// inventory: content-addressed like it.
    pub fn image_usage(usage_sha256: &str) -> String {
        format!("scanner/sboms/{}.usage.cdx.json", hex_part(usage_sha256))
    }

    /// The SPDX rendering of the inventory whose CycloneDX SBOM has `sbom_sha256` (both
    /// are made from the same inventory, deterministically, so the name stays true).
    pub fn image_inventory_spdx(sbom_sha256: &str) -> String {
        format!("scanner/sboms/{}.spdx.json", hex_part(sbom_sha256))
    }

    /// Concelier export tree of one export.
    pub fn concelier_export(export_id: &str) -> String {
        format!("concelier/json/{export_id}/")
    }

    fn hex_part(digest: &str) -> &str {
        digest.strip_prefix("sha256:").unwrap_or(digest)
    }
}
