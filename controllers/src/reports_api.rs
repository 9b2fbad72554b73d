//! The reports API's serving certificate (issued by the operator's CA, like the webhook's)
//! and the `caBundle` of its `APIService`, so the cluster's API server trusts it. The
//! leader keeps both; every replica serves with the certificate from the Secret.

use base64::Engine as _;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::context::{Config, FIELD_MANAGER};
use crate::error::Result;
use crate::zastava_policy::{Serving, ensure_serving_certificate};

/// Secret (in the operator's namespace) with the reports API's `tls.crt` and `tls.key`.
pub const TLS_SECRET: &str = "stellaops-reports-tls";
/// The APIService registering `reports.stella-ops.org/v1alpha1`.
pub const API_SERVICE: &str = "v1alpha1.reports.stella-ops.org";

/// The reports API's serving certificate: for its Service's DNS names.
pub fn serving(config: &Config) -> Serving {
    let (svc, ns) = (&config.reports_service, &config.operator_namespace);
    Serving {
        secret: TLS_SECRET.into(),
        names: vec![
            svc.clone(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local"),
        ],
        component: "reports-api".into(),
    }
}

/// Issue or renew the certificate and write the CA bundle into the APIService (installed
/// by the manifests; when it is not there yet, only the certificate is kept).
pub async fn ensure(client: &kube::Client, config: &Config, now: i64) -> Result<Vec<&'static str>> {
    let (bundle, _, renewed) =
        ensure_serving_certificate(client, config, now, &serving(config)).await?;
    let api: Api<APIService> = Api::all(client.clone());
    let patch =
        json!({"spec": {"caBundle": base64::engine::general_purpose::STANDARD.encode(bundle)}});
    match api
        .patch(
            API_SERVICE,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {
            tracing::debug!("no APIService {API_SERVICE}: the reports API is not registered")
        }
        Err(error) => return Err(error.into()),
    }
    Ok(renewed)
}
