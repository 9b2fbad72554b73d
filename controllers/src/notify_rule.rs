//! NotifyRule controller: checks each rule's Secrets, renders every valid, enabled rule
//! of a namespace into the configuration of one notify worker Deployment for that namespace
//! in the platform namespace (`<namespace>-stellaops-notify`: it holds the database
//! credentials), with copies of the rules' channel Secrets; the rules' finalizer removes the
//! worker with the namespace's last rule. It reports what was sent, throttled and
//! dead-lettered from the delivery records.
//!
//! A rule outside the platform namespace sees only events about its own namespace, and a
//! custom template may only be a Secret key starting `template.`.
//!
//! The rules reach the worker through a mounted ConfigMap, which the worker re-reads when
//! it changes, so editing a rule restarts nothing; only a new Secret reference changes the
//! Deployment (a new volume).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, ContainerPort, HTTPGetAction, PodSpec, PodTemplateSpec,
    Probe, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use stellaops_crds::notify_rule::{Channel, Digest, NotifyAction, NotifyRuleStatus};
use stellaops_crds::{CONDITION_READY, NotifyRule, condition, set_condition};
use stellaops_store::notify::{ActionConfig, NotifyConfig, RuleConfig, RuleCounts};

use crate::acceptance;
use crate::context::{Config, Context, FIELD_MANAGER};
use crate::error::{Error, Result};
use crate::workload;

/// Base name of the worker Deployment and its ConfigMap of each namespace with rules.
pub const WORKER_NAME: &str = "stellaops-notify";
/// Annotation on the worker: the names of the rules it delivers for (how a change to the
/// worker maps back to them; several rules share it, so no single owner label fits).
pub const RULES_ANNOTATION: &str = "stella-ops.org/notify-rules";

/// The worker Deployment (and ConfigMap) of namespace `ns`'s rules, in the platform namespace.
pub fn worker_name(ns: &str) -> String {
    crate::tenancy::platform_name(ns, WORKER_NAME, "", 63)
}

/// The copy in the platform namespace of channel Secret `secret` of namespace `ns`.
pub fn secret_copy_name(ns: &str, secret: &str) -> String {
    crate::tenancy::platform_name(ns, &format!("{WORKER_NAME}-{secret}"), "", 253)
}
/// Where the rendered rules are mounted.
const CONFIG_MOUNT: &str = "/etc/stellaops/notify";
/// Where each referenced Secret is mounted: `<SECRETS_MOUNT>/<secret name>/<key>`.
const SECRETS_MOUNT: &str = "/etc/stellaops/notify-secrets";

/// A Secret's entries as text, by key.
pub type SecretData = BTreeMap<String, String>;

/// How long one namespace sync (its channel Secrets read, its worker applied) serves the
/// other rules of the namespace: below the rules' 30 s requeue, so each namespace is synced
/// about once per period however many rules it has.
const SYNC_REUSE: Duration = Duration::from_secs(20);

/// The last sync of each namespace's worker, reused by the other rules' reconciles while
/// their inputs are unchanged: without it each of a namespace's R rules would read every
/// channel Secret and apply the worker at each requeue, O(R²) calls per period. A change to
/// a rule changes the inputs; a change to the worker forgets its namespace's entry.
#[derive(Default)]
pub struct NamespaceSyncs(Mutex<HashMap<String, NamespaceSync>>);

#[derive(Clone)]
struct NamespaceSync {
    inputs: u64,
    at: Instant,
    secrets: BTreeMap<String, SecretData>,
    worker: Option<Deployment>,
}

impl NamespaceSyncs {
    fn fresh(&self, ns: &str, inputs: u64) -> Option<NamespaceSync> {
        let syncs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        syncs
            .get(ns)
            .filter(|s| s.inputs == inputs && s.at.elapsed() < SYNC_REUSE)
            .cloned()
    }

    fn remember(&self, ns: &str, sync: NamespaceSync) {
        let mut syncs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        syncs.retain(|_, s| s.at.elapsed() < SYNC_REUSE);
        syncs.insert(ns.to_string(), sync);
    }

    /// Forget namespace `ns`'s last sync (its worker changed, or a rule is being deleted).
    pub fn forget(&self, ns: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(ns);
    }
}

/// What a namespace sync depends on among its rules: which rules, at which generation,
/// which are being deleted.
fn sync_inputs(rules: &[Arc<NotifyRule>]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for rule in rules {
        rule.metadata.name.hash(&mut hasher);
        rule.metadata.uid.hash(&mut hasher);
        rule.metadata.generation.hash(&mut hasher);
        rule.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    }
    hasher.finish()
}

/// Why a rule cannot run: the condition reason and a message naming the action and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// `SecretNotFound`, `SecretKeyMissing` or `InvalidSecret`.
    pub reason: &'static str,
    /// What to fix.
    pub message: String,
}

fn invalid(reason: &'static str, message: String) -> Invalid {
    Invalid { reason, message }
}

pub use crate::workload::parse_duration;

fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Slack => "slack",
        Channel::Teams => "teams",
        Channel::Email => "email",
        Channel::Webhook => "webhook",
    }
}

/// Check one action against its Secret (`None`: the Secret does not exist).
pub fn validate_action(action: &NotifyAction, secret: Option<&SecretData>) -> Result<(), Invalid> {
    let name = &action.secret_ref.name;
    let Some(data) = secret else {
        return Err(invalid(
            "SecretNotFound",
            format!("action {}: Secret {name} not found", action.name),
        ));
    };
    let need = |key: &str| -> Result<&String, Invalid> {
        data.get(key)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                invalid(
                    "SecretKeyMissing",
                    format!(
                        "action {}: Secret {name} has no key {key} (needed by the {} channel)",
                        action.name,
                        channel_name(action.channel)
                    ),
                )
            })
    };
    match action.channel {
        Channel::Slack | Channel::Teams | Channel::Webhook => {
            let url = need("url")?.trim();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid(
                    "InvalidSecret",
                    format!(
                        "action {}: Secret {name} key url is not an http(s) URL",
                        action.name
                    ),
                ));
            }
            if action.channel == Channel::Webhook {
                need("hmacKey")?;
            }
        }
        Channel::Email => {
            need("host")?;
            need("from")?;
            if let Some(port) = data.get("port")
                && port.trim().parse::<u16>().is_err()
            {
                return Err(invalid(
                    "InvalidSecret",
                    format!(
                        "action {}: Secret {name} key port is not a port number",
                        action.name
                    ),
                ));
            }
            if data.contains_key("username") != data.contains_key("password") {
                return Err(invalid(
                    "InvalidSecret",
                    format!(
                        "action {}: Secret {name} needs both username and password, or neither",
                        action.name
                    ),
                ));
            }
            if let Some(tls) = data.get("tls")
                && !matches!(tls.trim(), "starttls" | "none")
            {
                return Err(invalid(
                    "InvalidSecret",
                    format!(
                        "action {}: Secret {name} key tls must be starttls or none",
                        action.name
                    ),
                ));
            }
        }
    }
    if !matches!(action.template.as_str(), "concise" | "detailed") {
        if !action
            .template
            .starts_with(stellaops_store::notify::TEMPLATE_KEY_PREFIX)
        {
            return Err(invalid(
                "InvalidTemplate",
                format!(
                    "action {}: template {:?} is neither concise nor detailed nor a Secret key starting \"template.\" (only those keys of Secret {name} may be read into a message)",
                    action.name, action.template
                ),
            ));
        }
        need(&action.template).map_err(|_| {
            invalid(
                "SecretKeyMissing",
                format!(
                    "action {}: template {:?} is neither concise nor detailed nor a key of Secret {name}",
                    action.name, action.template
                ),
            )
        })?;
    }
    Ok(())
}

/// Check every action of `rule`.
pub fn validate(rule: &NotifyRule, secrets: &BTreeMap<String, SecretData>) -> Result<(), Invalid> {
    for action in &rule.spec.actions {
        validate_action(action, secrets.get(&action.secret_ref.name))?;
    }
    Ok(())
}

/// The worker's view of one rule; a rule outside `platform_namespace` is scoped to the events
/// of its own namespace.
pub fn rule_config(rule: &NotifyRule, platform_namespace: &str) -> RuleConfig {
    let spec = &rule.spec;
    let ns = rule.namespace().unwrap_or_default();
    RuleConfig {
        scope: (ns != platform_namespace).then(|| ns.clone()),
        namespace: ns,
        name: rule.name_any(),
        event_kinds: spec
            .match_
            .event_kinds
            .iter()
            .map(|k| k.as_str().to_string())
            .collect(),
        min_severity: spec
            .match_
            .min_severity
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(str::to_string)),
        namespaces: spec.match_.namespaces.clone(),
        include_accepted_vex: spec.match_.vex.include_accepted_justifications,
        actions: spec
            .actions
            .iter()
            .map(|a| ActionConfig {
                name: a.name.clone(),
                channel: channel_name(a.channel).to_string(),
                target: a.target.clone(),
                template: a.template.clone(),
                throttle_seconds: a.throttle.as_deref().and_then(parse_duration),
                digest: match a.digest {
                    Digest::None => "none",
                    Digest::Hourly => "hourly",
                    Digest::Daily => "daily",
                }
                .to_string(),
                secret_dir: format!("{SECRETS_MOUNT}/{}", a.secret_ref.name),
            })
            .collect(),
    }
}

/// The configuration of a namespace's worker: its enabled, valid rules, by name.
pub fn render_config(
    namespace: &str,
    runnable: &[&NotifyRule],
    platform_namespace: &str,
) -> NotifyConfig {
    let mut rules: Vec<RuleConfig> = runnable
        .iter()
        .map(|r| rule_config(r, platform_namespace))
        .collect();
    rules.sort_by(|a, b| a.name.cmp(&b.name));
    NotifyConfig {
        consumer: format!("notify/{namespace}"),
        rules,
    }
}

/// Labels of a namespace's worker objects: owner kind and namespace (no uid: the rules
/// share them).
fn worker_labels(namespace: &str) -> BTreeMap<String, String> {
    let mut labels = workload::labels(WORKER_NAME, "NotifyRule", "notify-worker");
    labels.insert("stella-ops.org/notifyrule".into(), WORKER_NAME.into());
    labels.insert(crate::tenancy::OWNER_KIND.into(), "NotifyRule".into());
    labels.insert(crate::tenancy::OWNER_NAMESPACE.into(), namespace.into());
    labels
}

/// Selector of everything made for namespace `ns`'s rules in the platform namespace.
pub fn worker_selector(ns: &str) -> String {
    format!(
        "{}=NotifyRule,{}={ns}",
        crate::tenancy::OWNER_KIND,
        crate::tenancy::OWNER_NAMESPACE
    )
}

fn meta(namespace: &str, rules: &[&NotifyRule], operator: &Config) -> ObjectMeta {
    let mut names: Vec<String> = rules.iter().map(|r| r.name_any()).collect();
    names.sort();
    ObjectMeta {
        name: Some(worker_name(namespace)),
        namespace: Some(operator.operator_namespace.clone()),
        labels: Some(worker_labels(namespace)),
        annotations: Some(BTreeMap::from([(
            RULES_ANNOTATION.to_string(),
            names.join(","),
        )])),
        ..Default::default()
    }
}

/// The rules a worker object (in the platform namespace) delivers for, from its labels and
/// annotation.
pub fn rules_of<O: ResourceExt>(
    object: &O,
) -> Vec<kube::runtime::reflector::ObjectRef<NotifyRule>> {
    let Some(ns) = object.labels().get(crate::tenancy::OWNER_NAMESPACE) else {
        return Vec::new();
    };
    object
        .annotations()
        .get(RULES_ANNOTATION)
        .map(|names| {
            names
                .split(',')
                .filter(|n| !n.is_empty())
                .map(|n| kube::runtime::reflector::ObjectRef::new(n).within(ns))
                .collect()
        })
        .unwrap_or_default()
}

/// The ConfigMap holding `rules.json`.
pub fn config_map(
    namespace: &str,
    config: &NotifyConfig,
    all_rules: &[&NotifyRule],
    operator: &Config,
) -> ConfigMap {
    ConfigMap {
        metadata: meta(namespace, all_rules, operator),
        data: Some(BTreeMap::from([(
            "rules.json".to_string(),
            serde_json::to_string_pretty(config).expect("config serializes"),
        )])),
        ..Default::default()
    }
}

/// The worker Deployment, mounting the ConfigMap and every Secret the rules use.
pub fn deployment(
    namespace: &str,
    config: &NotifyConfig,
    all_rules: &[&NotifyRule],
    operator: &Config,
) -> Deployment {
    let secrets: BTreeSet<String> = config
        .rules
        .iter()
        .flat_map(|r| r.actions.iter())
        .filter_map(|a| {
            a.secret_dir
                .strip_prefix(&format!("{SECRETS_MOUNT}/"))
                .map(str::to_string)
        })
        .collect();
    let mut container = workload::worker_container(
        operator,
        "notify",
        vec![
            "notify".into(),
            "run".into(),
            "--config".into(),
            format!("{CONFIG_MOUNT}/rules.json"),
            "--listen".into(),
            "0.0.0.0:8080".into(),
        ],
        workload::resources("50m", "64Mi", "256Mi"),
    );
    container
        .env
        .get_or_insert_with(Vec::new)
        .push(workload::database_url_env(operator));
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    mounts.push(VolumeMount {
        name: "rules".into(),
        mount_path: CONFIG_MOUNT.into(),
        read_only: Some(true),
        ..Default::default()
    });
    let mut volumes = vec![
        workload::tmp_volume(),
        Volume {
            name: "rules".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: worker_name(namespace),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    for (i, secret) in secrets.iter().enumerate() {
        let volume = format!("secret-{i}");
        volumes.push(Volume {
            name: volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret_copy_name(namespace, secret)),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: volume,
            mount_path: format!("{SECRETS_MOUNT}/{secret}"),
            read_only: Some(true),
            ..Default::default()
        });
    }
    container.ports = Some(vec![ContainerPort {
        name: Some("http".into()),
        container_port: 8080,
        ..Default::default()
    }]);
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        ..Default::default()
    };
    container.liveness_probe = Some(probe("/healthz"));
    container.readiness_probe = Some(probe("/readyz"));
    let labels = worker_labels(namespace);
    Deployment {
        metadata: meta(namespace, all_rules, operator),
        spec: DeploymentSpec {
            // Several replicas would be safe (deliveries are leased); one keeps it small.
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    security_context: Some(workload::pod_security()),
                    automount_service_account_token: Some(false),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// What `preview` shows: the worker's ConfigMap and Deployment as if this rule were the
/// namespace's only one (its Secrets are not checked offline).
pub fn desired(rule: &NotifyRule, config: &Config) -> Vec<Value> {
    let namespace = rule.namespace().unwrap_or_else(|| "default".into());
    let rules = [rule];
    let runnable: Vec<&NotifyRule> = rules.iter().copied().filter(|r| r.spec.enabled).collect();
    let rendered = render_config(&namespace, &runnable, &config.operator_namespace);
    vec![
        workload::typed(&config_map(&namespace, &rendered, &rules, config)),
        workload::typed(&deployment(&namespace, &rendered, &rules, config)),
    ]
}

/// The status of a rule. Pure.
pub fn compute_status(
    rule: &NotifyRule,
    validation: &Result<(), Invalid>,
    worker: Option<&Deployment>,
    counts: Option<&RuleCounts>,
    now: Time,
) -> NotifyRuleStatus {
    let previous = rule.status.clone().unwrap_or_default();
    let generation = rule.metadata.generation;
    let mut status = NotifyRuleStatus {
        observed_generation: generation,
        ..previous
    };
    if let Some(c) = counts {
        status.sent = c.sent;
        status.throttled = c.throttled;
        status.failed = c.failed;
        status.last_delivery_at = c
            .last_delivery_at
            .and_then(|t| jiff::Timestamp::from_second(t.timestamp()).ok().map(Time));
        status.last_error = c.last_error.clone();
    }
    let mut conditions: Vec<Condition> = std::mem::take(&mut status.conditions);
    set_condition(
        &mut conditions,
        acceptance::accepted(generation, now.clone()),
    );
    let ready_workers = worker
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let (ready, reason, message) = match validation {
        Err(problem) => (false, problem.reason, problem.message.clone()),
        Ok(()) if !rule.spec.enabled => (
            true,
            "Disabled",
            "the rule is disabled: matching events are not delivered (nor replayed later)"
                .to_string(),
        ),
        Ok(()) if ready_workers == 0 => (
            false,
            "WorkerNotReady",
            format!(
                "the notify worker Deployment {} has no ready replica yet",
                worker
                    .and_then(|d| d.metadata.name.clone())
                    .unwrap_or_else(|| WORKER_NAME.into())
            ),
        ),
        Ok(()) => (
            true,
            "Delivering",
            format!(
                "{} action(s) delivered by {}",
                rule.spec.actions.len(),
                worker
                    .and_then(|d| d.metadata.name.clone())
                    .unwrap_or_else(|| WORKER_NAME.into())
            ),
        ),
    };
    set_condition(
        &mut conditions,
        condition(
            CONDITION_READY,
            ready,
            reason,
            message,
            generation,
            now.clone(),
        ),
    );
    let dead = counts.map(|c| c.failed).unwrap_or(status.failed);
    set_condition(
        &mut conditions,
        condition(
            "DeadLetters",
            dead > 0,
            if dead > 0 { "DeliveriesFailed" } else { "None" },
            if dead > 0 {
                format!(
                    "{dead} deliveries failed every retry; latest error: {}",
                    status.last_error.clone().unwrap_or_default()
                )
            } else {
                "no delivery has been given up".to_string()
            },
            generation,
            now,
        ),
    );
    status.conditions = conditions;
    status
}

/// Reconcile one rule: check its namespace's rules, apply the worker in the platform
/// namespace, record status. Deleting a rule re-renders the worker without it (and removes
/// the worker with the namespace's last rule) before the finalizer is released.
pub async fn reconcile(rule: Arc<NotifyRule>, ctx: Arc<Context>) -> Result<Action> {
    crate::tenancy::reconcile_with_cleanup(rule, ctx, apply, |rule, ctx| async move {
        let ns = rule
            .namespace()
            .ok_or(Error::MissingField("metadata.namespace"))?;
        sync_namespace(&ctx, &ns, &rule).await?;
        Ok(Action::await_change())
    })
    .await
}

/// Render namespace `ns`'s live rules into its worker in the platform namespace, with copies
/// of their channel Secrets (stale copies pruned); with no live rule left, delete it all.
/// The rules come from the shared store, `current` (the rule being reconciled) in the version
/// at hand should the store trail its watch event. Returns the Secrets read (by name) and the
/// applied worker; a sync of the same inputs a moment ago ([`NamespaceSyncs`]) is reused.
async fn sync_namespace(
    ctx: &Context,
    ns: &str,
    current: &Arc<NotifyRule>,
) -> Result<(BTreeMap<String, SecretData>, Option<Deployment>)> {
    let mut all: Vec<Arc<NotifyRule>> = namespace_rules(ctx, ns).await?;
    all.retain(|r| r.metadata.uid != current.metadata.uid);
    all.push(current.clone());
    all.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let inputs = sync_inputs(&all);
    if let Some(sync) = ctx.notify_syncs.fresh(ns, inputs) {
        return Ok((sync.secrets, sync.worker));
    }
    let all_refs: Vec<&NotifyRule> = all
        .iter()
        .map(|r| r.as_ref())
        .filter(|r| r.meta().deletion_timestamp.is_none())
        .collect();
    let names: Vec<String> = all_refs
        .iter()
        .flat_map(|r| r.spec.actions.iter().map(|a| a.secret_ref.name.clone()))
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect();
    // Each Secret is read once per sync: for the checks and for its copy.
    let sources = crate::tenancy::read_secrets(ctx, ns, &names).await?;
    let secrets: BTreeMap<String, SecretData> = sources
        .iter()
        .map(|(name, secret)| (name.clone(), workload::entries_of(secret)))
        .collect();
    if all_refs.is_empty() {
        crate::tenancy::delete_owned(ctx, &worker_selector(ns)).await?;
        ctx.notify_syncs.forget(ns);
        return Ok((secrets, None));
    }
    let runnable: Vec<&NotifyRule> = all_refs
        .iter()
        .copied()
        .filter(|r| r.spec.enabled && validate(r, &secrets).is_ok())
        .collect();
    let config = render_config(ns, &runnable, &ctx.config.operator_namespace);
    // The copies of the Secrets the runnable rules use, before the worker mounts them.
    let used: BTreeSet<String> = runnable
        .iter()
        .flat_map(|r| r.spec.actions.iter().map(|a| a.secret_ref.name.clone()))
        .collect();
    let copies: Vec<crate::tenancy::SecretCopy> = used
        .iter()
        .map(|name| crate::tenancy::SecretCopy {
            source: name.clone(),
            copy: secret_copy_name(ns, name),
        })
        .collect();
    let copy_meta = meta(ns, &all_refs, &ctx.config);
    crate::tenancy::copy_read_secrets(
        ctx,
        &sources,
        &copies,
        &ObjectMeta {
            name: None,
            namespace: None,
            ..copy_meta
        },
        None,
        Some(&worker_selector(ns)),
    )
    .await?;
    // At a restart every namespace syncs again; its worker is applied only where the
    // stores show it differs (an unchanged apply is a write and a watch event per object).
    let platform_ns = &ctx.config.operator_namespace;
    let name = worker_name(ns);
    use kube::runtime::reflector::ObjectRef;
    ctx.caches.notify_workers_ready().await?;
    workload::apply_unless_current(
        Api::<ConfigMap>::namespaced(ctx.client.clone(), platform_ns),
        &name,
        &workload::with_applied_digest(workload::typed(&config_map(
            ns,
            &config,
            &all_refs,
            &ctx.config,
        ))),
        ctx.caches
            .notify_configs
            .get(&ObjectRef::new(&name).within(platform_ns)),
    )
    .await?;
    let worker = workload::apply_unless_current(
        Api::<Deployment>::namespaced(ctx.client.clone(), platform_ns),
        &name,
        &workload::with_applied_digest(workload::typed(&deployment(
            ns,
            &config,
            &all_refs,
            &ctx.config,
        ))),
        ctx.caches
            .notify_workers
            .get(&ObjectRef::new(&name).within(platform_ns)),
    )
    .await?;
    ctx.notify_syncs.remember(
        ns,
        NamespaceSync {
            inputs,
            at: Instant::now(),
            secrets: secrets.clone(),
            worker: Some(worker.clone()),
        },
    );
    Ok((secrets, Some(worker)))
}

/// The rules of namespace `ns` in the shared store (waiting for its first full list).
async fn namespace_rules(ctx: &Context, ns: &str) -> Result<Vec<Arc<NotifyRule>>> {
    ctx.caches
        .notify_rules
        .wait_until_ready()
        .await
        .map_err(|e| Error::CacheNotReady(e.to_string()))?;
    Ok(ctx
        .caches
        .notify_rules
        .state_filter(|r| r.metadata.namespace.as_deref() == Some(ns)))
}

async fn apply(rule: Arc<NotifyRule>, ctx: Arc<Context>) -> Result<Action> {
    let ns = rule
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    // A rule deleted since its reconcile was queued (the store shows it gone) must not
    // make the worker again.
    if !namespace_rules(&ctx, &ns)
        .await?
        .iter()
        .any(|r| r.metadata.uid == rule.metadata.uid)
    {
        return Ok(Action::await_change());
    }
    let rules_api: Api<NotifyRule> = Api::namespaced(ctx.client.clone(), &ns);
    let (secrets, worker) = sync_namespace(&ctx, &ns, &rule).await?;
    let counts = match &ctx.outbox {
        Some(pool) => {
            Some(stellaops_store::notify::rule_counts(pool, &ns, &rule.name_any()).await?)
        }
        None => None,
    };
    let validation = validate(&rule, &secrets);
    let status = compute_status(
        &rule,
        &validation,
        worker.as_ref(),
        counts.as_ref(),
        Time(jiff::Timestamp::now()),
    );
    let was = rule
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == CONDITION_READY))
        .map(|c| c.reason.clone());
    if rule.status.as_ref() != Some(&status) {
        let api_params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        rules_api
            .patch_status(
                &rule.name_any(),
                &api_params,
                &Patch::Merge(&json!({"status": status})),
            )
            .await?;
    }
    if let Err(problem) = &validation
        && was.as_deref() != Some(problem.reason)
    {
        let event = Event {
            type_: EventType::Warning,
            reason: problem.reason.to_string(),
            note: Some(problem.message.clone()),
            action: "Validate".into(),
            secondary: None,
        };
        if let Err(error) = ctx.recorder.publish(&event, &rule.object_ref(&())).await {
            tracing::warn!(%error, "could not publish event");
        }
    }
    // Counts move with deliveries, which the operator does not watch: look again soon.
    Ok(Action::requeue(Duration::from_secs(30)))
}
