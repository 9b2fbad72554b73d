//! One reconciler per Stella Ops kind. Each kind's module holds its pure desired state
//! (`desired(&Cr, &Config) -> objects`); [`acceptance`] is the shared reconciler that
//! validates specs and reports conditions; [`run`] wires every controller up.

pub mod acceptance;
pub mod cache;
pub mod context;
pub mod error;
pub mod housekeeping;
pub mod kind;
pub mod lean;
pub mod metrics;
pub mod retry;
pub mod running_images;
pub mod tenancy;
pub mod workload;

pub mod federation_site;
pub mod mirror_domain;
pub mod notify_rule;
pub mod platform;
pub mod reports_api;
pub mod scan;
pub mod scan_policy;
pub mod schedule;
pub mod zastava_audit;
pub mod zastava_policy;

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use stellaops_crds::validation::StellaObject;
use stellaops_crds::{
    FederationSite, MirrorDomain, NotifyRule, Platform, Scan, ScanPolicy, Schedule, ZastavaPolicy,
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
        StellaObject::ScanPolicy(o) => (
            scan_policy::desired(o, config),
            vec![format!(
                "policy digest {} (a change re-evaluates the results decided under it; so does each waiver's expiry)",
                scan_policy::to_policy(&o.spec).digest()
            )],
        ),
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
/// Debounced: a burst of changes to one object (apply, then labels, then an owned Job's
/// three status updates) makes one reconcile.
fn controller_config(ctx: &Context) -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default()
        .concurrency(ctx.config.reconcile_concurrency)
        .debounce(ctx.config.reconcile_debounce)
}

/// `Kind/namespace/name`, the key of an object's failures in a row.
fn retry_key<K: StellaKind>(object: &K) -> String {
    use kube::ResourceExt;
    format!(
        "{}/{}/{}",
        K::KIND,
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Run `reconcile`, forgetting the object's earlier failures when it succeeds. Timed and
/// counted here for every controller alike: the duration histogram covers early returns
/// and failures too (failures are counted by [`error_policy`]).
async fn tracked<K, F, Fut>(object: Arc<K>, ctx: Arc<Context>, reconcile: F) -> Result<Action>
where
    K: StellaKind,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action>>,
{
    use kube::ResourceExt;
    use stellaops_telemetry::{Attribute, FutureExt, Kind, TraceContext};
    let key = retry_key(object.as_ref());
    let started = std::time::Instant::now();
    // One trace per reconcile: what it creates (a scan Job's TRACEPARENT) and the events it
    // publishes are its children.
    let span = stellaops_telemetry::start(
        format!("reconcile {}", K::KIND),
        &TraceContext::new(),
        Kind::Internal,
        vec![
            Attribute::new("k8s.kind", K::KIND),
            Attribute::new("k8s.namespace", object.namespace().unwrap_or_default()),
            Attribute::new("k8s.name", object.name_any()),
        ],
    );
    let result = reconcile(object, ctx.clone())
        .with_context(span.clone())
        .await;
    stellaops_telemetry::finish(&span, &result);
    ctx.metrics
        .duration
        .with_label_values(&[K::KIND])
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.retries.succeeded(&key);
        ctx.metrics
            .reconciliations
            .with_label_values(&[K::KIND, "ok"])
            .inc();
    }
    result
}

fn error_policy<K: StellaKind>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconciliations
        .with_label_values(&[K::KIND, "error"])
        .inc();
    ctx.metrics
        .failures
        .with_label_values(&[K::KIND, error.metric_label()])
        .inc();
    let key = retry_key(object.as_ref());
    let delay = ctx.retries.failed(&key);
    tracing::warn!(kind = K::KIND, object = %key, %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// An API of kind `K` in the platform namespace, where the workers run.
fn platform_api<K>(ctx: &Context) -> kube::Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    kube::Api::namespaced(ctx.client.clone(), &ctx.config.operator_namespace)
}

/// A watch that triggers a controller (`watches_stream`, and `owns_stream` with an
/// `Api<PartialObjectMeta<_>>`, which watches metadata only), with a backoff of its own:
/// the controllers' merged triggers do not back off ([`retry::EachWatchOnItsOwn`]).
fn trigger_watch<K>(
    api: kube::Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + use<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, config)
        .default_backoff()
        .touched_objects()
}

/// The watch of the platform namespace's objects labelled `selector`, filling `writer`'s
/// store without their managed fields (which no reconcile reads; never decoded).
fn platform_store<K>(
    ctx: &Context,
    selector: &str,
    writer: kube::runtime::reflector::store::Writer<K>,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + use<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + lean::Shape
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    lean::watch(
        platform_api::<lean::Lean<K>>(ctx),
        watcher::Config::default().labels(selector).any_semantic(),
    )
    .default_backoff()
    .reflect(writer)
}

/// A root kind's controller input: its watch fills `writer`'s store (every change, managed
/// fields never decoded), and only changes that call for a reconcile
/// ([`cache::spec_changes`]) trigger one.
fn root_controller<K>(
    client: &kube::Client,
    writer: kube::runtime::reflector::store::Writer<K>,
) -> Controller<K>
where
    K: StellaKind + lean::Shape + kube::Resource<DynamicType = ()>,
{
    let reader = writer.as_reader();
    let trigger = lean::watch(
        kube::Api::<lean::Lean<K>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(writer)
    .applied_objects()
    .predicate_filter(cache::spec_changes, Default::default());
    Controller::for_stream(trigger, reader)
}

/// [`root_controller`] with a store of its own.
fn own_root_controller<K>(client: &kube::Client) -> Controller<K>
where
    K: StellaKind + lean::Shape + kube::Resource<DynamicType = ()>,
{
    root_controller(client, kube::runtime::reflector::store::Writer::default())
}

/// Drive `controller` until a shutdown signal, every kind alike: the operator's controller
/// settings (bounded concurrency, debounce), `reconcile` timed and counted by [`tracked`],
/// failures retried with per-object backoff by [`error_policy`].
async fn drive<K, F, Fut>(controller: Controller<K>, ctx: Arc<Context>, reconcile: F)
where
    K: StellaKind
        + kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Action>> + Send + 'static,
{
    let config = controller_config(&ctx);
    controller
        .trigger_backoff(retry::EachWatchOnItsOwn)
        .with_config(config)
        .shutdown_on_signal()
        .run(
            move |object, ctx| tracked(object, ctx, reconcile),
            error_policy::<K>,
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

async fn run_federation_sites<J>(ctx: Arc<Context>, sync_jobs: J)
where
    J: futures::Stream<Item = Arc<k8s_openapi::api::batch::v1::Job>> + Send + 'static,
{
    let client = ctx.client.clone();
    let owned = watcher::Config::default().labels("app.kubernetes.io/component=federation-sync");
    drive(
        own_root_controller::<FederationSite>(&client)
            // The CronJob and its Jobs run in the platform namespace: mapped back by owner
            // labels (the Jobs get them from the CronJob's template), so a finished sync is
            // reported at once. The Jobs come from the shared sync Job store's watch.
            .watches_stream(
                trigger_watch(
                    platform_api::<k8s_openapi::api::batch::v1::CronJob>(&ctx),
                    owned,
                ),
                |o| tenancy::owner_of::<FederationSite, _>(&o),
            )
            .watches_shared_stream(sync_jobs, |o| {
                tenancy::owner_of::<FederationSite, _>(o.as_ref())
            }),
        ctx,
        federation_site::reconcile,
    )
    .await;
}

async fn run_mirror_domains<J>(ctx: Arc<Context>, sync_jobs: J)
where
    J: futures::Stream<Item = Arc<k8s_openapi::api::batch::v1::Job>> + Send + 'static,
{
    let client = ctx.client.clone();
    let owned = watcher::Config::default().labels("stella-ops.org/mirrordomain");
    drive(
        own_root_controller::<MirrorDomain>(&client)
            .watches_stream(
                trigger_watch(
                    platform_api::<k8s_openapi::api::apps::v1::Deployment>(&ctx),
                    owned.clone(),
                ),
                |o| tenancy::owner_of::<MirrorDomain, _>(&o),
            )
            .watches_stream(
                trigger_watch(
                    platform_api::<k8s_openapi::api::batch::v1::CronJob>(&ctx),
                    owned,
                ),
                |o| tenancy::owner_of::<MirrorDomain, _>(&o),
            )
            .watches_shared_stream(sync_jobs, |o| {
                tenancy::owner_of::<MirrorDomain, _>(o.as_ref())
            }),
        ctx,
        mirror_domain::reconcile,
    )
    .await;
}

async fn run_scans<S>(
    ctx: Arc<Context>,
    scans: kube::runtime::reflector::store::Writer<Scan>,
    scan_jobs: S,
) where
    S: futures::Stream<Item = Result<k8s_openapi::api::batch::v1::Job, watcher::Error>>
        + Send
        + 'static,
{
    let caches = ctx.caches.clone();
    let for_policies = ctx.caches.clone();
    let for_reevaluations = ctx.caches.clone();
    let cap = ctx.config.max_concurrent_scans as usize;
    let reevaluations = reevaluated_scans(ctx.outbox.clone(), ctx.reevaluations.clone());
    let woken = ctx.reevaluations.clone();
    drive(
        root_controller(&ctx.client, scans)
            // A result a re-evaluation recorded for a Scan (`vex ingest`, a ScanPolicy's
            // Job): the Scan reads it into its status.
            .reconcile_on(reevaluations)
            // A ScanPolicy becoming Ready starts the Scans waiting for it.
            .watches_stream(
                trigger_watch(
                    kube::Api::<ScanPolicy>::all(ctx.client.clone()),
                    watcher::Config::default(),
                ),
                move |policy| {
                    use kube::ResourceExt;
                    scan::scans_naming(&for_policies.scans, &policy.name_any())
                },
            )
            // A finished re-evaluation under a ScanPolicy: its Scans read their new result.
            .watches_stream(
                trigger_watch(
                    platform_api::<k8s_openapi::api::batch::v1::Job>(&ctx),
                    watcher::Config::default().labels(&format!(
                        "app.kubernetes.io/component={}",
                        scan_policy::COMPONENT
                    )),
                ),
                move |job| {
                    let scans = scan_policy::policy_of_job(&job)
                        .filter(|_| workload::job_finished(&job).is_some())
                        .map(|name| scan::scans_naming(&for_reevaluations.scans, &name))
                        .unwrap_or_default();
                    for scan in &scans {
                        woken.woke(scan);
                    }
                    scans
                },
            )
            // A scan Job (in the platform namespace, mapped back to its Scan by owner labels)
            // reconciles its Scan when it changes; when a slot is free after it (the Job
            // finished or was removed) the Scans at the head of the queue are woken too, so no
            // queued Scan has to poll for a slot.
            .watches_stream(scan_jobs, move |job| {
                let mut wake: Vec<ObjectRef<Scan>> =
                    tenancy::owner_of::<Scan, _>(&job).into_iter().collect();
                // The event may be a deletion (which looks like any other here): ask the store,
                // already updated by this event, whether a slot is free.
                let free = cap.saturating_sub(caches.running_scan_jobs(cap));
                wake.extend(caches.queue_heads(free));
                wake
            }),
        ctx,
        scan::reconcile,
    )
    .await;
}

/// The Scans re-evaluations recorded new results for, from the `rescan.delta` events of the
/// outbox of `pool` as they are written (nothing without a database), each marked in
/// `woken` first. The follower stops with the stream.
fn reevaluated_scans(
    pool: Option<sqlx::PgPool>,
    woken: Arc<scan::Reevaluations>,
) -> futures::stream::BoxStream<'static, ObjectRef<Scan>> {
    let Some(pool) = pool else {
        return futures::stream::empty().boxed();
    };
    let (sender, receiver) = futures::channel::mpsc::unbounded();
    let follower = tokio::spawn(stellaops_store::outbox::follow(
        pool,
        "rescan.delta",
        std::time::Duration::from_secs(30),
        move |events| {
            for event in events {
                if let Some(scan) = scan::reevaluated(&event.payload) {
                    // Marked before it is woken: its reconcile reads the new result.
                    woken.woke(&scan);
                    let _ = sender.unbounded_send(scan);
                }
            }
        },
    ));
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let guard = AbortOnDrop(follower);
    receiver
        .map(move |scan| {
            let _ = &guard;
            scan
        })
        .boxed()
}

async fn run_scan_policies(
    ctx: Arc<Context>,
    policies: kube::runtime::reflector::store::Writer<ScanPolicy>,
) {
    let client = ctx.client.clone();
    drive(
        root_controller(&client, policies),
        ctx,
        scan_policy::reconcile,
    )
    .await;
}

async fn run_notify_rules<W>(
    ctx: Arc<Context>,
    rules: kube::runtime::reflector::store::Writer<NotifyRule>,
    workers: W,
) where
    W: futures::Stream<Item = Result<k8s_openapi::api::apps::v1::Deployment, watcher::Error>>
        + Send
        + 'static,
{
    let client = ctx.client.clone();
    let syncs = ctx.notify_syncs.clone();
    drive(
        root_controller(&client, rules)
            // The worker Deployment (in the platform namespace) is shared by a namespace's
            // rules: a change to it reconciles every rule it names.
            .watches_stream(workers, move |deployment| {
                // The rules' status reads the worker: their next reconcile syncs afresh.
                if let Some(ns) =
                    kube::ResourceExt::labels(&deployment).get(tenancy::OWNER_NAMESPACE)
                {
                    syncs.forget(ns);
                }
                notify_rule::rules_of(&deployment)
            }),
        ctx,
        notify_rule::reconcile,
    )
    .await;
}

async fn run_platforms(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    drive(
        own_root_controller::<Platform>(&client)
            // Migration Jobs are owned; component Deployments belong to the chart, so a rollout
            // in progress is polled instead (every 10 s).
            .owns_stream(trigger_watch(
                platform_api::<kube::core::PartialObjectMeta<k8s_openapi::api::batch::v1::Job>>(
                    &ctx,
                ),
                watcher::Config::default().labels("stella-ops.org/platform"),
            )),
        ctx,
        platform::reconcile,
    )
    .await;
}

async fn run_schedules(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    drive(
        own_root_controller::<Schedule>(&client).watches_stream(
            trigger_watch(
                platform_api::<k8s_openapi::api::batch::v1::Job>(&ctx),
                watcher::Config::default().labels("app.kubernetes.io/component=schedule-run"),
            ),
            |job| tenancy::owner_of::<Schedule, _>(&job),
        ),
        ctx,
        schedule::reconcile,
    )
    .await;
}

async fn run_zastava_policies<N>(ctx: Arc<Context>, namespace_changes: N)
where
    N: futures::Stream<Item = ()> + Send + 'static,
{
    let client = ctx.client.clone();
    let controller = own_root_controller::<ZastavaPolicy>(&client);
    // The Observer reads the controller's own store of policies: no second watch.
    let observer = zastava_audit::run(ctx.clone(), controller.store());
    let controller = drive(
        controller
            .owns_stream(trigger_watch(
                kube::Api::<
                    kube::core::PartialObjectMeta<
                        k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
                    >,
                >::all(client.clone()),
                watcher::Config::default().labels("app.kubernetes.io/component=zastava-webhook"),
            ))
            // A new or relabelled namespace changes every policy's count.
            .reconcile_all_on(namespace_changes)
            // The webhook certificates are shared by every policy: when they change (a rotation by
            // one policy's reconcile), every webhook configuration takes the new CA bundle.
            .reconcile_all_on(
                watcher::watcher(
                    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
                        ctx.client.clone(),
                        &ctx.config.operator_namespace,
                    ),
                    watcher::Config::default()
                        .fields(&format!("metadata.name={}", zastava_policy::CA_SECRET)),
                )
                .default_backoff()
                .applied_objects()
                .filter_map(|change| async move { change.ok().map(|_| ()) }),
            ),
        ctx,
        zastava_policy::reconcile,
    );
    // The Observer runs as long as the controller (it stops with it on a signal).
    futures::future::select(Box::pin(controller), Box::pin(observer)).await;
}

/// Run every controller until a shutdown signal. Call only while holding the leader lease.
///
/// One watch per kind fills the shared stores of [`cache::Caches`], which every reconcile
/// reads instead of LISTing; the same watches trigger the controllers that need them.
pub async fn run(ctx: Arc<Context>) {
    let (caches, writers) = cache::Caches::new();
    let ctx = Arc::new(ctx.as_ref().clone().with_caches(caches));
    let client = ctx.client.clone();
    // Scan Jobs run in the platform namespace only (and the operator may watch Jobs only
    // there).
    let scan_jobs = lean::watch(
        platform_api::<lean::Lean<k8s_openapi::api::batch::v1::Job>>(&ctx),
        watcher::Config::default()
            .labels(&format!("app.kubernetes.io/component={}", scan::COMPONENT))
            .any_semantic(),
    )
    .default_backoff()
    .reflect(writers.scan_jobs)
    .touched_objects();
    // Pods and Namespaces are decoded as their stores keep them (lean::POD, lean::NAMESPACE):
    // specs, annotations and managed fields are stepped over, not built and dropped.
    let pods = lean::watch(
        kube::Api::<lean::Lean<k8s_openapi::api::core::v1::Pod>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(writers.pods)
    .for_each(|_| async {});
    let namespace_changes = lean::watch(
        kube::Api::<lean::Lean<k8s_openapi::api::core::v1::Namespace>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(writers.namespaces)
    .touched_objects()
    .filter_map(|change| async move { change.ok().map(|_| ()) });
    // Copies of tenants' Secrets in the platform namespace: compared before writing a copy
    // again, and pruned from, instead of LISTing Secrets in a reconcile.
    let secret_copies =
        platform_store(&ctx, cache::SECRET_COPIES, writers.secret_copies).for_each(|_| async {});
    // The NotifyRule workers in the platform namespace: a sync compares with them before
    // applying again; the Deployments' watch also triggers the rules they serve.
    let notify_workers =
        platform_store(&ctx, cache::NOTIFY_WORKERS, writers.notify_workers).touched_objects();
    let notify_configs =
        platform_store(&ctx, cache::NOTIFY_WORKERS, writers.notify_configs).for_each(|_| async {});
    // One watch of the sync Jobs fills their shared store and triggers both controllers.
    let sync_jobs_writer = writers.sync_jobs;
    let federation_jobs = sync_jobs_writer
        .subscribe()
        .expect("the sync Job store is shared");
    let mirror_jobs = sync_jobs_writer
        .subscribe()
        .expect("the sync Job store is shared");
    let sync_jobs = lean::watch(
        platform_api::<lean::Lean<k8s_openapi::api::batch::v1::Job>>(&ctx),
        watcher::Config::default()
            .labels(cache::SYNC_JOBS)
            .any_semantic(),
    )
    .default_backoff()
    .reflect_shared(sync_jobs_writer)
    .for_each(|_| async {});
    // Every controller and watch is polled from this one task, on purpose: kube's
    // `Store::wait_until_ready` keeps a single waker, so tasks of their own waiting for one
    // store together can leave one asleep for good (seen: the running-images keeper never
    // started when each watch was a task of its own). Splitting them needs a readiness
    // signal that wakes every waiter first.
    let controllers = async {
        futures::join!(
            run_scans(ctx.clone(), writers.scans, scan_jobs),
            run_scan_policies(ctx.clone(), writers.scan_policies),
            run_schedules(ctx.clone()),
            run_notify_rules(ctx.clone(), writers.notify_rules, notify_workers),
            run_federation_sites(ctx.clone(), federation_jobs),
            run_mirror_domains(ctx.clone(), mirror_jobs),
            run_zastava_policies(ctx.clone(), namespace_changes),
            run_platforms(ctx.clone()),
        );
    };
    // These watches feed no controller directly (the sync Jobs' subscribers do): they run
    // until the controllers stop (on a signal), as does the running-images keeper.
    let stores = futures::future::join5(
        pods,
        secret_copies,
        notify_configs,
        sync_jobs,
        running_images::run(ctx.clone()),
    );
    futures::future::select(Box::pin(controllers), Box::pin(stores)).await;
}
