//! ZastavaPolicy controller: the webhook's CA and serving certificate (Secrets in the
//! operator's namespace, renewed long before expiry with the old CA kept in the bundle so
//! nothing is refused during a rotation), one `ValidatingWebhookConfiguration` per policy
//! (owned by it, so deleting the policy removes it), and a status that counts the
//! namespaces it covers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, Time,
};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use stellaops_admission_webhook::policy::{self as webhook_policy, ALWAYS_EXEMPT_NAMESPACES};
use stellaops_crds::zastava_policy::{
    FailurePolicy, TrustedKeyStatus, TrustedRootStatus, ZastavaPolicyStatus,
};
use stellaops_crds::{CONDITION_READY, ZastavaPolicy, condition, set_condition};

use crate::acceptance;
use crate::context::{Config, Context, FIELD_MANAGER};
use crate::error::{Error, Result};
use crate::workload;

/// Secret holding the webhook CA (`ca.crt`, `ca.key`) and the bundle API servers trust
/// (`bundle.crt`: the current CA and, during a rotation, the previous one).
pub const CA_SECRET: &str = "stellaops-zastava-ca";
/// Secret holding the serving certificate (`tls.crt`, `tls.key`, `ca.crt`).
pub const TLS_SECRET: &str = "stellaops-zastava-tls";
/// Annotation with a certificate's expiry (RFC 3339).
pub const NOT_AFTER: &str = "stella-ops.org/not-after";
/// Annotation with the expiry of the previous CA still in the bundle.
pub const PREVIOUS_NOT_AFTER: &str = "stella-ops.org/previous-not-after";
/// Annotation with the SHA-256 of the CA certificate that issued a serving certificate.
pub const ISSUER: &str = "stella-ops.org/issuer";

const DAY: i64 = 86_400;
/// CA lifetime, and how long before its end a new CA is made.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// See [`CA_VALIDITY_DAYS`].
pub const CA_RENEW_BEFORE_DAYS: i64 = 365;
/// Serving certificate lifetime, and how long before its end it is reissued.
pub const SERVING_VALIDITY_DAYS: i64 = 90;
/// See [`SERVING_VALIDITY_DAYS`].
pub const SERVING_RENEW_BEFORE_DAYS: i64 = 30;

/// The webhook's CA as stored. `Debug` leaves out the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCa {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM private key.
    pub key_pem: String,
    /// Expiry (Unix seconds).
    pub not_after: i64,
    /// The previous CA certificate and its expiry, while still in the bundle.
    pub previous: Option<(String, i64)>,
}

impl std::fmt::Debug for StoredCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCa")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[REDACTED]")
            .field("not_after", &self.not_after)
            .field("previous", &self.previous)
            .finish()
    }
}

impl StoredCa {
    /// The PEM bundle API servers trust.
    pub fn bundle(&self, now: i64) -> String {
        let mut bundle = self.cert_pem.clone();
        if let Some((pem, not_after)) = &self.previous
            && *not_after > now
        {
            bundle.push_str(pem);
        }
        bundle
    }

    /// SHA-256 (hex) of the CA certificate.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.cert_pem.as_bytes()))
    }
}

/// What is stored of the serving certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredServing {
    /// Expiry (Unix seconds).
    pub not_after: i64,
    /// Fingerprint of the CA that issued it.
    pub issuer: String,
}

fn entry(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

fn annotation_time(secret: &Secret, key: &str) -> Option<i64> {
    let text = secret.annotations().get(key)?;
    text.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

/// The CA in `secret`, when it is complete.
pub fn read_ca(secret: &Secret) -> Option<StoredCa> {
    let previous = match (
        entry(secret, "previous.crt"),
        annotation_time(secret, PREVIOUS_NOT_AFTER),
    ) {
        (Some(pem), Some(t)) if !pem.is_empty() => Some((pem, t)),
        _ => None,
    };
    Some(StoredCa {
        cert_pem: entry(secret, "ca.crt")?,
        key_pem: entry(secret, "ca.key")?,
        not_after: annotation_time(secret, NOT_AFTER)?,
        previous,
    })
}

/// The serving certificate's record in `secret`, when complete.
pub fn read_serving(secret: &Secret) -> Option<StoredServing> {
    entry(secret, "tls.crt")?;
    entry(secret, "tls.key")?;
    Some(StoredServing {
        not_after: annotation_time(secret, NOT_AFTER)?,
        issuer: secret.annotations().get(ISSUER)?.clone(),
    })
}

/// Which certificates to (re)issue, and why. Pure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificatePlan {
    /// Why a new CA is needed, if it is.
    pub new_ca: Option<&'static str>,
    /// Why a new serving certificate is needed, if it is.
    pub new_serving: Option<&'static str>,
}

/// Decide what to renew at `now` (Unix seconds). A CA rotation keeps serving with the
/// current certificate (its CA stays in the bundle); the next serving renewal moves to
/// the new CA.
pub fn plan_certificates(
    ca: Option<&StoredCa>,
    serving: Option<&StoredServing>,
    now: i64,
) -> CertificatePlan {
    let new_ca = match ca {
        None => Some("no CA yet"),
        Some(ca) if ca.not_after - now < CA_RENEW_BEFORE_DAYS * DAY => {
            Some("the CA expires within a year")
        }
        Some(_) => None,
    };
    let trusted_issuers: Vec<String> = match ca {
        Some(ca) if new_ca.is_some() && ca.not_after > now => vec![ca.fingerprint()],
        Some(ca) if new_ca.is_none() => {
            let mut issuers = vec![ca.fingerprint()];
            if let Some((pem, not_after)) = &ca.previous
                && *not_after > now
            {
                issuers.push(hex::encode(Sha256::digest(pem.as_bytes())));
            }
            issuers
        }
        _ => Vec::new(),
    };
    let new_serving = match serving {
        None => Some("no serving certificate yet"),
        Some(s) if s.not_after - now < SERVING_RENEW_BEFORE_DAYS * DAY => {
            Some("the serving certificate expires within 30 days")
        }
        Some(s) if !trusted_issuers.contains(&s.issuer) => {
            Some("the serving certificate's CA is no longer trusted")
        }
        Some(_) => None,
    };
    CertificatePlan {
        new_ca,
        new_serving,
    }
}

fn offset(seconds: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn ca_params(not_before: i64, not_after: i64) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "stellaops-zastava-ca");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.not_before = offset(not_before);
    params.not_after = offset(not_after);
    params
}

/// A new CA valid from `now`, keeping `previous` (the CA it replaces) in the bundle.
pub fn issue_ca(now: i64, previous: Option<&StoredCa>) -> Result<StoredCa> {
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Certificate(e.to_string()))?;
    let not_after = now + CA_VALIDITY_DAYS * DAY;
    let cert = ca_params(now - 300, not_after)
        .self_signed(&key)
        .map_err(|e| Error::Certificate(e.to_string()))?;
    Ok(StoredCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after,
        previous: previous
            .filter(|p| p.not_after > now)
            .map(|p| (p.cert_pem.clone(), p.not_after)),
    })
}

/// DNS names of the webhook Service.
pub fn service_names(config: &Config) -> Vec<String> {
    let (svc, ns) = (&config.webhook_service, &config.operator_namespace);
    vec![
        svc.clone(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
    ]
}

/// A serving certificate for `names`, issued by `ca`: (cert PEM, key PEM, not after).
pub fn issue_serving(ca: &StoredCa, names: &[String], now: i64) -> Result<(String, String, i64)> {
    let failed = |e: rcgen::Error| Error::Certificate(e.to_string());
    let ca_key = rcgen::KeyPair::from_pem(&ca.key_pem).map_err(failed)?;
    // The issuer is rebuilt from the parameters the CA was made with (same subject and
    // key), which is all a signature and chain need.
    let issuer = rcgen::Issuer::new(ca_params(now, ca.not_after), ca_key);
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(failed)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.last().cloned().unwrap_or_default(),
    );
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let not_after = (now + SERVING_VALIDITY_DAYS * DAY).min(ca.not_after);
    params.not_before = offset(now - 300);
    params.not_after = offset(not_after);
    let cert = params.signed_by(&key, &issuer).map_err(failed)?;
    Ok((cert.pem(), key.serialize_pem(), not_after))
}

fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn secret(
    name: &str,
    component: &str,
    config: &Config,
    data: BTreeMap<&str, String>,
    annotations: BTreeMap<&str, String>,
) -> Secret {
    let mut labels = BTreeMap::new();
    labels.insert(
        "app.kubernetes.io/name".to_string(),
        "stellaops-operator".to_string(),
    );
    labels.insert(
        "app.kubernetes.io/component".to_string(),
        component.to_string(),
    );
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(config.operator_namespace.clone()),
            labels: Some(labels),
            annotations: Some(
                annotations
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            ),
            ..Default::default()
        },
        type_: Some(
            if data.contains_key("tls.crt") {
                "kubernetes.io/tls"
            } else {
                "Opaque"
            }
            .to_string(),
        ),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// The CA Secret for `ca`.
pub fn ca_secret(ca: &StoredCa, config: &Config, now: i64) -> Secret {
    let mut data = BTreeMap::from([
        ("ca.crt", ca.cert_pem.clone()),
        ("ca.key", ca.key_pem.clone()),
        ("bundle.crt", ca.bundle(now)),
    ]);
    let mut annotations = BTreeMap::from([(NOT_AFTER, rfc3339(ca.not_after))]);
    if let Some((pem, not_after)) = &ca.previous {
        data.insert("previous.crt", pem.clone());
        annotations.insert(PREVIOUS_NOT_AFTER, rfc3339(*not_after));
    }
    secret(CA_SECRET, "zastava-webhook", config, data, annotations)
}

/// The webhook's serving certificate Secret.
pub fn tls_secret(
    ca: &StoredCa,
    cert_pem: String,
    key_pem: String,
    not_after: i64,
    config: &Config,
) -> Secret {
    serving_secret(
        &Serving::webhook(config),
        ca,
        cert_pem,
        key_pem,
        not_after,
        config,
    )
}

/// A serving certificate issued by the operator's CA: the webhook's, or the reports API's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Serving {
    /// Secret (in the operator's namespace) holding it.
    pub secret: String,
    /// DNS names it is for.
    pub names: Vec<String>,
    /// `app.kubernetes.io/component` of the Secret.
    pub component: String,
}

impl Serving {
    /// The webhook's.
    pub fn webhook(config: &Config) -> Serving {
        Serving {
            secret: TLS_SECRET.into(),
            names: service_names(config),
            component: "zastava-webhook".into(),
        }
    }
}

/// The Secret of a serving certificate.
pub fn serving_secret(
    serving: &Serving,
    ca: &StoredCa,
    cert_pem: String,
    key_pem: String,
    not_after: i64,
    config: &Config,
) -> Secret {
    secret(
        &serving.secret,
        &serving.component,
        config,
        BTreeMap::from([
            ("tls.crt", cert_pem),
            ("tls.key", key_pem),
            ("ca.crt", ca.cert_pem.clone()),
        ]),
        BTreeMap::from([(NOT_AFTER, rfc3339(not_after)), (ISSUER, ca.fingerprint())]),
    )
}

/// The namespace selector registered for `policy`: its own, plus the operator's namespace
/// and `kube-system` excluded (so a broken webhook can never block the operator itself).
pub fn namespace_selector(policy: &ZastavaPolicy, config: &Config) -> LabelSelector {
    let mut selector = policy.spec.namespace_selector.clone().unwrap_or_default();
    let mut excluded = vec![config.operator_namespace.clone()];
    excluded.extend(ALWAYS_EXEMPT_NAMESPACES.iter().map(|s| s.to_string()));
    selector
        .match_expressions
        .get_or_insert_with(Vec::new)
        .push(LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: "NotIn".into(),
            values: Some(excluded),
        });
    selector
}

/// Name of the ValidatingWebhookConfiguration of `policy`.
pub fn webhook_configuration_name(policy: &ZastavaPolicy) -> String {
    workload::child_name(&format!("stellaops-zastava-{}", policy.name_any()), "", 253)
}

fn rule(group: &str, resources: &[&str]) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec![group.to_string()]),
        api_versions: Some(vec!["v1".into()]),
        operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        scope: Some("Namespaced".into()),
    }
}

/// The ValidatingWebhookConfiguration of `policy`, trusting `ca_bundle`. Pure.
pub fn webhook_configuration(
    policy: &ZastavaPolicy,
    config: &Config,
    ca_bundle: &str,
) -> ValidatingWebhookConfiguration {
    let name = policy.name_any();
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(webhook_configuration_name(policy)),
            labels: Some(workload::labels(&name, "ZastavaPolicy", "zastava-webhook")),
            owner_references: Some(vec![workload::owner_reference(policy)]),
            ..Default::default()
        },
        webhooks: Some(vec![ValidatingWebhook {
            name: format!("{name}.zastava.stella-ops.org"),
            admission_review_versions: vec!["v1".into()],
            side_effects: "None".into(),
            timeout_seconds: Some(policy.spec.timeout_seconds),
            failure_policy: Some(
                match policy.spec.failure_policy {
                    FailurePolicy::Ignore => "Ignore",
                    FailurePolicy::Fail => "Fail",
                }
                .into(),
            ),
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(namespace_selector(policy, config)),
            client_config: WebhookClientConfig {
                ca_bundle: Some(ByteString(ca_bundle.as_bytes().to_vec())),
                service: Some(ServiceReference {
                    name: config.webhook_service.clone(),
                    namespace: config.operator_namespace.clone(),
                    path: Some(format!("/validate/{name}")),
                    port: Some(443),
                }),
                url: None,
            },
            rules: Some(vec![
                rule("", &["pods", "pods/ephemeralcontainers"]),
                rule("apps", &["deployments", "statefulsets", "daemonsets"]),
                rule("batch", &["jobs", "cronjobs"]),
            ]),
            object_selector: None,
            match_conditions: None,
        }]),
    }
}

/// The objects `preview` shows for a policy: its webhook configuration (with a
/// placeholder bundle; the real one comes from the CA Secret the operator keeps).
pub fn desired(policy: &ZastavaPolicy, config: &Config) -> Vec<Value> {
    vec![workload::typed(&webhook_configuration(
        policy,
        config,
        "<the operator's webhook CA bundle>",
    ))]
}

/// Namespaces (by name) the policy covers, from all namespaces with their labels. Pure.
pub fn matching_namespaces(
    policy: &ZastavaPolicy,
    config: &Config,
    namespaces: &[Namespace],
) -> Result<Vec<String>> {
    use kube::core::{Selector, SelectorExt};
    let selector = Selector::try_from(namespace_selector(policy, config))
        .map_err(|e| Error::InvalidSpec(format!("namespaceSelector: {e}")))?;
    let compiled_exemptions = &policy.spec.exemptions.namespaces;
    Ok(namespaces
        .iter()
        .filter(|ns| {
            let mut labels = ns.labels().clone();
            labels.insert("kubernetes.io/metadata.name".into(), ns.name_any());
            selector.matches(&labels)
        })
        .map(|ns| ns.name_any())
        .filter(|name| {
            !compiled_exemptions
                .iter()
                .any(|g| webhook_policy::glob_match(g, name))
        })
        .collect())
}

/// `namespace/name` of the public-key Secret a policy names (the operator's namespace
/// when it names none).
pub fn key_secret(policy: &ZastavaPolicy, operator_namespace: &str) -> Option<(String, String)> {
    let reference = policy
        .spec
        .require_signature
        .as_ref()
        .and_then(|s| s.public_keys.as_ref())?;
    let namespace = reference
        .namespace
        .clone()
        .unwrap_or_else(|| operator_namespace.to_string());
    Some((namespace, reference.name.clone()))
}

/// The public keys a policy names, read from its Secret (only `key` when it names one):
/// `Ok(None)` when the Secret or key is missing.
pub async fn policy_keys(
    client: &kube::Client,
    policy: &ZastavaPolicy,
    operator_namespace: &str,
) -> Result<Option<Vec<String>>> {
    let Some((namespace, name)) = key_secret(policy, operator_namespace) else {
        return Ok(Some(Vec::new()));
    };
    let Some(entries) = workload::secret_entries(client, &namespace, &name).await? else {
        return Ok(None);
    };
    let key = policy
        .spec
        .require_signature
        .as_ref()
        .and_then(|s| s.public_keys.as_ref())
        .and_then(|r| r.key.clone());
    Ok(match key {
        Some(key) => entries.get(&key).map(|v| vec![v.clone()]),
        None => Some(entries.into_values().collect()),
    })
}

/// The trusted-root documents of a policy's keyless authorities, in their order, then that
/// of `publicKeysTlog` when it names one, read from the Secrets they name (the operator's
/// namespace when they name none): the inner `Err` names the first Secret or key that does
/// not exist.
pub async fn policy_trusted_roots(
    client: &kube::Client,
    policy: &ZastavaPolicy,
    operator_namespace: &str,
) -> Result<std::result::Result<Vec<String>, String>> {
    let requirement = policy.spec.require_signature.as_ref();
    let authorities = requirement
        .map(|s| s.keyless.as_slice())
        .unwrap_or_default();
    let keys_log = requirement.and_then(|s| s.public_keys_tlog.as_ref());
    let mut roots = Vec::new();
    for reference in authorities
        .iter()
        .map(|a| &a.trusted_root)
        .chain(keys_log.map(|t| &t.trusted_root))
    {
        let namespace = reference.namespace.as_deref().unwrap_or(operator_namespace);
        let document = workload::secret_entries(client, namespace, &reference.name)
            .await?
            .and_then(|entries| entries.get(&reference.key).cloned());
        match document {
            Some(document) => roots.push(document),
            None => {
                return Ok(Err(format!(
                    "{namespace}/{} (key {})",
                    reference.name, reference.key
                )));
            }
        }
    }
    Ok(Ok(roots))
}

/// Make sure the CA and serving certificate exist and are not near expiry; returns the
/// CA bundle and the serving certificate's expiry, and what was renewed.
pub async fn ensure_certificates(
    client: &kube::Client,
    config: &Config,
    now: i64,
) -> Result<(String, i64, Vec<&'static str>)> {
    ensure_serving_certificate(client, config, now, &Serving::webhook(config)).await
}

/// Make sure the CA and the serving certificate `serving` exist and are not near expiry;
/// returns the CA bundle, the serving certificate's expiry, and what was renewed.
pub async fn ensure_serving_certificate(
    client: &kube::Client,
    config: &Config,
    now: i64,
    serving: &Serving,
) -> Result<(String, i64, Vec<&'static str>)> {
    // Policies reconcile concurrently and share the certificates: one at a time reads,
    // decides and writes them, so two first reconciles never issue two CAs.
    static CERTIFICATES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _held = CERTIFICATES.lock().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &config.operator_namespace);
    let mut ca = secrets.get_opt(CA_SECRET).await?.as_ref().and_then(read_ca);
    let stored = secrets.get_opt(&serving.secret).await?;
    let stored = stored.as_ref().and_then(read_serving);
    let plan = plan_certificates(ca.as_ref(), stored.as_ref(), now);
    let mut renewed = Vec::new();
    if let Some(why) = plan.new_ca {
        let fresh = issue_ca(now, ca.as_ref())?;
        workload::apply(
            secrets.clone(),
            CA_SECRET,
            &workload::typed(&ca_secret(&fresh, config, now)),
        )
        .await?;
        ca = Some(fresh);
        renewed.push(why);
    }
    let ca = ca.ok_or_else(|| Error::Certificate("no CA after issuing one".into()))?;
    let mut not_after = stored.map(|s| s.not_after).unwrap_or_default();
    if let Some(why) = plan.new_serving {
        let (cert, key, expiry) = issue_serving(&ca, &serving.names, now)?;
        workload::apply(
            secrets,
            &serving.secret,
            &workload::typed(&serving_secret(serving, &ca, cert, key, expiry, config)),
        )
        .await?;
        not_after = expiry;
        renewed.push(why);
    }
    Ok((ca.bundle(now), not_after, renewed))
}

/// The keys a compiled policy trusts, for its status.
pub fn trusted_key_statuses(compiled: &webhook_policy::CompiledPolicy) -> Vec<TrustedKeyStatus> {
    compiled
        .signature
        .iter()
        .flat_map(|check| &check.keys)
        .map(|key| TrustedKeyStatus {
            fingerprint: key.fingerprint.clone(),
            algorithm: key.key.describe(),
        })
        .collect()
}

/// The trusted roots a compiled policy verifies with, for its status: each keyless
/// authority's in order, then `publicKeysTlog`'s.
pub fn trusted_root_statuses(compiled: &webhook_policy::CompiledPolicy) -> Vec<TrustedRootStatus> {
    let describe = |used_by: String, root: &stellaops_admission_webhook::keyless::TrustedRoot| {
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        TrustedRootStatus {
            used_by,
            fingerprint: root.fingerprint.clone(),
            certificate_authorities: count(root.certificate_authorities.len()),
            tlogs: count(root.tlogs.len()),
            ctlogs: count(root.ctlogs.len()),
            timestamp_authorities: count(root.timestamp_authorities.len()),
        }
    };
    // Authorities that sign only attestations (`imageSignature: false`) are in the
    // attestation checks, all of them in each that takes keyless signers.
    let (keyless, keys_log) = match &compiled.signature {
        Some(check) => (check.keyless.as_slice(), check.keys_log.as_ref()),
        None => (
            compiled
                .attestations
                .iter()
                .map(|a| a.keyless.as_slice())
                .max_by_key(|k| k.len())
                .unwrap_or_default(),
            compiled
                .attestations
                .iter()
                .find_map(|a| a.keys_log.as_ref()),
        ),
    };
    let mut roots: Vec<TrustedRootStatus> = keyless
        .iter()
        .enumerate()
        .map(|(i, authority)| describe(format!("keyless authority {}", i + 1), &authority.root))
        .collect();
    roots.extend(keys_log.map(|root| describe("publicKeysTlog".into(), root)));
    roots
}

/// The Event note when the trusted roots changed from `before` to `after`, or `None` when
/// they did not: each use whose root is new, gone or another document.
pub fn trusted_roots_change(
    before: &[TrustedRootStatus],
    after: &[TrustedRootStatus],
) -> Option<String> {
    if before == after {
        return None;
    }
    let describe = |root: &TrustedRootStatus| {
        format!(
            "{} ({} CA(s), {} log(s), {} CT log(s), {} timestamp authorit{})",
            root.fingerprint,
            root.certificate_authorities,
            root.tlogs,
            root.ctlogs,
            root.timestamp_authorities,
            if root.timestamp_authorities == 1 {
                "y"
            } else {
                "ies"
            }
        )
    };
    let mut changes = Vec::new();
    for root in after {
        match before.iter().find(|b| b.used_by == root.used_by) {
            Some(old) if old == root => {}
            Some(old) => changes.push(format!(
                "{}: {} instead of {}",
                root.used_by,
                describe(root),
                old.fingerprint
            )),
            None => changes.push(format!("{}: {}", root.used_by, describe(root))),
        }
    }
    for old in before {
        if !after.iter().any(|a| a.used_by == old.used_by) {
            changes.push(format!(
                "{}: no longer used ({})",
                old.used_by, old.fingerprint
            ));
        }
    }
    Some(format!(
        "verifies with {} trusted root(s); {}",
        after.len(),
        changes.join("; ")
    ))
}

/// The Event note when the trusted keys changed from `before` to `after` (both sorted by
/// fingerprint, as compiled), or `None` when they did not.
pub fn trusted_keys_change(
    before: &[TrustedKeyStatus],
    after: &[TrustedKeyStatus],
) -> Option<String> {
    if before == after {
        return None;
    }
    let describe = |keys: Vec<&TrustedKeyStatus>| {
        keys.iter()
            .map(|k| format!("{} {}", k.algorithm, k.fingerprint))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let added: Vec<_> = after.iter().filter(|k| !before.contains(k)).collect();
    let removed: Vec<_> = before.iter().filter(|k| !after.contains(k)).collect();
    let mut note = format!("trusts {} key(s)", after.len());
    if !added.is_empty() {
        note.push_str(&format!("; added {}", describe(added)));
    }
    if !removed.is_empty() {
        note.push_str(&format!("; removed {}", describe(removed)));
    }
    Some(note)
}

async fn report(
    policy: &ZastavaPolicy,
    ctx: &Context,
    mut status: ZastavaPolicyStatus,
) -> Result<()> {
    if policy.status.as_ref() == Some(&status) {
        return Ok(());
    }
    // `status.audit` is the Observer's: a reconcile's copy may be older than what the
    // Observer wrote since, and a merge patch without the field leaves it alone.
    status.audit = None;
    let api: Api<ZastavaPolicy> = Api::all(ctx.client.clone());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    api.patch_status(
        &policy.name_any(),
        &params,
        &Patch::Merge(&json!({"status": status})),
    )
    .await?;
    Ok(())
}

async fn not_ready(
    policy: &ZastavaPolicy,
    ctx: &Context,
    reason: &str,
    message: String,
) -> Result<Action> {
    let generation = policy.meta().generation;
    let mut status = policy.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    // A policy that does not compile is not served: no key or root of it is trusted.
    status.trusted_keys.clear();
    status.trusted_roots.clear();
    if workload::set_not_ready(&mut status.conditions, reason, &message, generation) {
        workload::publish_event(
            &ctx.recorder,
            policy,
            EventType::Warning,
            reason,
            message,
            "Configure",
        )
        .await?;
    }
    report(policy, ctx, status).await?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// Reconcile a ZastavaPolicy.
pub async fn reconcile(policy: Arc<ZastavaPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let mut spec_only = serde_json::to_value(&*policy)?;
    spec_only.as_object_mut().map(|m| m.remove("status"));
    if stellaops_crds::validation::admit(&spec_only).is_err() {
        return acceptance::reconcile(policy, ctx, "").await;
    }
    let client = ctx.client.clone();
    let Some(keys) = policy_keys(&client, &policy, &ctx.config.operator_namespace).await? else {
        let reference = key_secret(&policy, &ctx.config.operator_namespace)
            .map(|(ns, name)| format!("{ns}/{name}"))
            .unwrap_or_default();
        return not_ready(
            &policy,
            &ctx,
            "KeySecretMissing",
            format!("public-key Secret {reference} (or its key) does not exist; the webhook cannot verify signatures for this policy and leaves it to the failure policy"),
        )
        .await;
    };
    let trusted_roots = match policy_trusted_roots(&client, &policy, &ctx.config.operator_namespace)
        .await?
    {
        Ok(roots) => roots,
        Err(missing) => {
            return not_ready(
                    &policy,
                    &ctx,
                    "TrustedRootMissing",
                    format!("trusted-root Secret {missing} does not exist; the webhook cannot verify the keyless signatures (or keyed signatures' log entries) this policy asks for and leaves it to the failure policy"),
                )
                .await;
        }
    };
    let compiled = match webhook_policy::compile_with_trusted_roots(&policy, &keys, &trusted_roots)
    {
        Ok(compiled) => compiled,
        Err(error) => return not_ready(&policy, &ctx, error.reason(), error.to_string()).await,
    };
    let trusted_keys = trusted_key_statuses(&compiled);
    let trusted_roots = trusted_root_statuses(&compiled);
    let now = jiff::Timestamp::now().as_second();
    let (bundle, not_after, renewed) = ensure_certificates(&client, &ctx.config, now).await?;
    if !renewed.is_empty() {
        workload::publish_event(
            &ctx.recorder,
            &*policy,
            EventType::Normal,
            "CertificateIssued",
            format!("webhook certificates issued: {}", renewed.join("; ")),
            "Rotate",
        )
        .await?;
    }
    workload::apply(
        Api::<ValidatingWebhookConfiguration>::all(client.clone()),
        &webhook_configuration_name(&policy),
        &workload::typed(&webhook_configuration(&policy, &ctx.config, &bundle)),
    )
    .await?;
    ctx.caches
        .namespaces
        .wait_until_ready()
        .await
        .map_err(|e| Error::CacheNotReady(e.to_string()))?;
    let namespaces: Vec<Namespace> = ctx
        .caches
        .namespaces
        .state()
        .iter()
        .map(|n| n.as_ref().clone())
        .collect();
    let matching = matching_namespaces(&policy, &ctx.config, &namespaces)?;
    let generation = policy.meta().generation;
    let mut status = policy.status.clone().unwrap_or_default();
    if let Some(note) = trusted_keys_change(&status.trusted_keys, &trusted_keys) {
        workload::publish_event(
            &ctx.recorder,
            &*policy,
            EventType::Normal,
            "TrustedKeysChanged",
            note,
            "Compile",
        )
        .await?;
    }
    if let Some(note) = trusted_roots_change(&status.trusted_roots, &trusted_roots) {
        workload::publish_event(
            &ctx.recorder,
            &*policy,
            EventType::Normal,
            "TrustedRootsChanged",
            note,
            "Compile",
        )
        .await?;
    }
    status.trusted_keys = trusted_keys;
    status.trusted_roots = trusted_roots;
    status.observed_generation = generation;
    status.matching_namespaces = Some(matching.len() as i32);
    ctx.metrics.webhook_certificate_expiry.set(not_after);
    status.certificate_not_after = jiff::Timestamp::from_second(not_after).ok().map(Time);
    let mode = serde_json::to_value(policy.effective_mode())?;
    let message = format!(
        "webhook registered for {} namespace(s) in {} mode (failure policy {:?})",
        matching.len(),
        mode.as_str().unwrap_or_default(),
        policy.spec.failure_policy
    );
    set_condition(
        &mut status.conditions,
        condition(
            CONDITION_READY,
            true,
            "WebhookConfigured",
            message,
            generation,
            Time(jiff::Timestamp::now()),
        ),
    );
    report(&policy, &ctx, status).await?;
    // Come back before the serving certificate needs renewing (and hourly for the count).
    let renew_in = (not_after - SERVING_RENEW_BEFORE_DAYS * DAY - now).clamp(60, 3600);
    Ok(Action::requeue(Duration::from_secs(renew_in as u64)))
}
