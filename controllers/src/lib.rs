//! One reconciler per Stella Ops kind. Each kind's module holds its pure desired state
//! (`desired(&Cr, &Config) -> objects`); [`acceptance`] is the shared reconciler that
//! validates specs and reports conditions; [`run`] wires every controller up.

pub mod acceptance;
pub mod context;
pub mod error;
pub mod kind;
pub mod metrics;
pub mod tenancy;
pub mod workload;

pub mod federation_site;
pub mod mirror_domain;
pub mod notify_rule;
pub mod platform;
pub mod scan;
pub mod schedule;
pub mod zastava_policy;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::Value;
use stellaops_crds::validation::StellaObject;
use stellaops_crds::{
    FederationSite, MirrorDomain, NotifyRule, Platform, Scan, Schedule, ZastavaPolicy,
};

pub use context::{Config, Context, FIELD_MANAGER};
pub use error::{Error, Result};
pub use kind::StellaKind;

/// What the operator would do with one object: the objects it creates, and notes for the
/// person reading (a Schedule's next run times).
#[derive(Debug)]
pub struct Plan {
    /// Kubernetes objects the operator would apply, with owner references set.
    pub objects: Vec<Value>,
    /// Lines worth showing next to the objects.
    pub notes: Vec<String>,
}

/// The plan for a validated object. Pure but for the clock (a Schedule's next runs).
pub fn plan(object: &StellaObject, config: &Config) -> Plan {
    plan_with(object, config, &platform::Inputs::default())
}

/// [`plan`], with the ConfigMaps and Secrets that came with the object (a Platform's
/// release manifest and key, in `preview`). Pure but for the clock.
pub fn plan_with(object: &StellaObject, config: &Config, inputs: &platform::Inputs) -> Plan {
    let (objects, notes) = match object {
        StellaObject::Scan(o) => (scan::desired(o, config), Vec::new()),
        StellaObject::Schedule(o) => (
            schedule::desired(o, config),
            schedule::preview_notes(o, jiff::Timestamp::now()),
        ),
        StellaObject::NotifyRule(o) => (notify_rule::desired(o, config), Vec::new()),
        StellaObject::FederationSite(o) => (federation_site::desired(o, config), Vec::new()),
        StellaObject::MirrorDomain(o) => (mirror_domain::desired(o, config), Vec::new()),
        StellaObject::ZastavaPolicy(o) => (zastava_policy::desired(o, config), Vec::new()),
        StellaObject::Platform(o) => (platform::desired_with(o, inputs), Vec::new()),
    };
    Plan { objects, notes }
}

/// Bounded reconciles per controller: a cluster with thousands of objects is worked through
/// at a steady rate instead of all at once, and SIGTERM waits for a handful, not thousands.
fn controller_config(ctx: &Context) -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(ctx.config.reconcile_concurrency)
}

fn error_policy<K: StellaKind>(_object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconciliations
        .with_label_values(&[K::KIND, "error"])
        .inc();
    ctx.metrics
        .failures
        .with_label_values(&[K::KIND, error.metric_label()])
        .inc();
    tracing::warn!(kind = K::KIND, %error, "reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

/// An API of kind `K` in the platform namespace, where the workers run.
fn platform_api<K>(ctx: &Context) -> kube::Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    kube::Api::namespaced(ctx.client.clone(), &ctx.config.operator_namespace)
}

async fn run_federation_sites(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let owned = watcher::Config::default().labels("app.kubernetes.io/component=federation-sync");
    Controller::new(
        kube::Api::<FederationSite>::all(client),
        watcher::Config::default().any_semantic(),
    )
    // The CronJob and its Jobs run in the platform namespace: mapped back by owner labels
    // (the Jobs get them from the CronJob's template), so a finished sync is reported at once.
    .watches(
        platform_api::<k8s_openapi::api::batch::v1::CronJob>(&ctx),
        owned.clone(),
        |o| tenancy::owner_of::<FederationSite, _>(&o),
    )
    .watches(
        platform_api::<k8s_openapi::api::batch::v1::Job>(&ctx),
        owned,
        |o| tenancy::owner_of::<FederationSite, _>(&o),
    )
    .with_config(controller_config(&ctx))
    .shutdown_on_signal()
    .run(
        federation_site::reconcile,
        error_policy::<FederationSite>,
        ctx,
    )
    .for_each(|_| async {})
    .await;
}

async fn run_mirror_domains(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let owned = watcher::Config::default().labels("stella-ops.org/mirrordomain");
    Controller::new(
        kube::Api::<MirrorDomain>::all(client),
        watcher::Config::default().any_semantic(),
    )
    .watches(
        platform_api::<k8s_openapi::api::apps::v1::Deployment>(&ctx),
        owned.clone(),
        |o| tenancy::owner_of::<MirrorDomain, _>(&o),
    )
    .watches(
        platform_api::<k8s_openapi::api::batch::v1::CronJob>(&ctx),
        owned.clone(),
        |o| tenancy::owner_of::<MirrorDomain, _>(&o),
    )
    .watches(
        platform_api::<k8s_openapi::api::batch::v1::Job>(&ctx),
        owned,
        |o| tenancy::owner_of::<MirrorDomain, _>(&o),
    )
    .with_config(controller_config(&ctx))
    .shutdown_on_signal()
    .run(mirror_domain::reconcile, error_policy::<MirrorDomain>, ctx)
    .for_each(|_| async {})
    .await;
}

async fn run_scans(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    Controller::new(
        kube::Api::<Scan>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    // Scan Jobs run in the platform namespace: mapped back by their owner labels.
    .watches(
        platform_api::<k8s_openapi::api::batch::v1::Job>(&ctx),
        watcher::Config::default().labels("app.kubernetes.io/component=scan"),
        |job| tenancy::owner_of::<Scan, _>(&job),
    )
    .with_config(controller_config(&ctx))
    .shutdown_on_signal()
    .run(scan::reconcile, error_policy::<Scan>, ctx)
    .for_each(|_| async {})
    .await;
}

async fn run_notify_rules(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let owned = watcher::Config::default().labels("stella-ops.org/notifyrule");
    Controller::new(
        kube::Api::<NotifyRule>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    // The worker Deployment (in the platform namespace) is shared by a namespace's rules:
    // a change to it reconciles every rule it names.
    .watches(
        platform_api::<k8s_openapi::api::apps::v1::Deployment>(&ctx),
        owned,
        |deployment| notify_rule::rules_of(&deployment),
    )
    .with_config(controller_config(&ctx))
    .shutdown_on_signal()
    .run(notify_rule::reconcile, error_policy::<NotifyRule>, ctx)
    .for_each(|_| async {})
    .await;
}

async fn run_platforms(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    Controller::new(
        kube::Api::<Platform>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    // Migration Jobs are owned; component Deployments belong to the chart, so a rollout
    // in progress is polled instead (every 10 s).
    .owns(
        platform_api::<k8s_openapi::api::batch::v1::Job>(&ctx),
        watcher::Config::default().labels("stella-ops.org/platform"),
    )
    .with_config(controller_config(&ctx))
    .shutdown_on_signal()
    .run(platform::reconcile, error_policy::<Platform>, ctx)
    .for_each(|_| async {})
    .await;
}

async fn run_schedules(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    Controller::new(
        kube::Api::<Schedule>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .watches(
        platform_api::<k8s_openapi::api::batch::v1::Job>(&ctx),
        watcher::Config::default().labels("app.kubernetes.io/component=schedule-run"),
        |job| tenancy::owner_of::<Schedule, _>(&job),
    )
    .with_config(controller_config(&ctx))
    .shutdown_on_signal()
    .run(schedule::reconcile, error_policy::<Schedule>, ctx)
    .for_each(|_| async {})
    .await;
}

async fn run_zastava_policies(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    Controller::new(
        kube::Api::<ZastavaPolicy>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .owns(
        kube::Api::<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration>::all(client.clone()),
        watcher::Config::default().labels("app.kubernetes.io/component=zastava-webhook"),
    )
    // A new or relabelled namespace changes every policy's count (metadata only).
    .reconcile_all_on(
        watcher::watcher(
            kube::Api::<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>>::all(
                client,
            ),
            watcher::Config::default(),
        )
        .default_backoff()
        .touched_objects()
        .filter_map(|change| async move { change.ok().map(|_| ()) }),
    )
    // The webhook certificates are shared by every policy: when they change (a rotation by
    // one policy's reconcile), every webhook configuration takes the new CA bundle.
    .reconcile_all_on(
        watcher::watcher(
            kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
                ctx.client.clone(),
                &ctx.config.operator_namespace,
            ),
            watcher::Config::default().fields(&format!(
                "metadata.name={}",
                zastava_policy::CA_SECRET
            )),
        )
        .default_backoff()
        .applied_objects()
        .filter_map(|change| async move { change.ok().map(|_| ()) }),
    )
    .with_config(controller_config(&ctx))
    .shutdown_on_signal()
    .run(zastava_policy::reconcile, error_policy::<ZastavaPolicy>, ctx)
    .for_each(|_| async {})
    .await;
}

/// Run every controller until a shutdown signal. Call only while holding the leader lease.
pub async fn run(ctx: Arc<Context>) {
    futures::join!(
        run_scans(ctx.clone()),
        run_schedules(ctx.clone()),
        run_notify_rules(ctx.clone()),
        run_federation_sites(ctx.clone()),
        run_mirror_domains(ctx.clone()),
        run_zastava_policies(ctx.clone()),
        run_platforms(ctx.clone()),
    );
}
