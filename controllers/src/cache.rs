//! The in-memory caches reconcilers read instead of LISTing: reflector stores filled by one
//! watch per kind, shared by every controller (habit 11). A LIST inside a reconcile costs
//! O(cluster) per reconcile, O(cluster²) per resync; a store read costs nothing on the wire.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, PodStatus, Secret};
use kube::Resource;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use stellaops_crds::scan::ScanPhase;
use stellaops_crds::{NotifyRule, Scan, ScanPolicy};

use crate::error::{Error, Result};
use crate::workload;

/// A Job this replica created that its store has not shown yet, forgotten after this long
/// (the watch delivers it in milliseconds; the bound only keeps the map from growing).
const STARTED_MEMORY: Duration = Duration::from_secs(60);

/// Events a shared store buffers for each subscriber before its watch waits for them.
const SHARED_BUFFER: usize = 256;

/// Label selector of the sync Jobs in [`Caches::sync_jobs`].
pub const SYNC_JOBS: &str = "app.kubernetes.io/component in (federation-sync,mirror-sync)";

/// Label selector of the NotifyRule workers' ConfigMaps and Deployments in
/// [`Caches::notify_configs`] and [`Caches::notify_workers`].
pub const NOTIFY_WORKERS: &str = "stella-ops.org/notifyrule";

/// Label selector of the Secret copies in [`Caches::secret_copies`].
pub const SECRET_COPIES: &str = crate::tenancy::OWNER_KIND;

/// Read handles on every shared store. Cloning is cheap (the stores are shared).
#[derive(Clone)]
pub struct Caches {
    /// Every Scan, cluster-wide.
    pub scans: Store<Scan>,
    /// Scan Jobs (`app.kubernetes.io/component=scan`) of the platform namespace.
    pub scan_jobs: Store<Job>,
    /// Pods, cluster-wide, trimmed by [`trim_pod`] to what the operator reads.
    pub pods: Store<Pod>,
    /// Namespaces, metadata only.
    pub namespaces: Store<Namespace>,
    /// Every NotifyRule, cluster-wide.
    pub notify_rules: Store<NotifyRule>,
    /// The copies of tenants' Secrets in the platform namespace (labelled with their owner):
    /// what a reconcile compares with before writing a copy, and prunes from.
    pub secret_copies: Store<Secret>,
    /// The NotifyRule workers' Deployments in the platform namespace ([`NOTIFY_WORKERS`]):
    /// what a sync compares with before applying a worker again.
    pub notify_workers: Store<Deployment>,
    /// The NotifyRule workers' ConfigMaps in the platform namespace ([`NOTIFY_WORKERS`]).
    pub notify_configs: Store<ConfigMap>,
    /// FederationSite and MirrorDomain sync Jobs of the platform namespace (a shared store:
    /// its watch also triggers those two controllers).
    pub sync_jobs: Store<Job>,
    /// Every ScanPolicy (cluster-scoped): what a Scan naming one reads its rules from.
    pub scan_policies: Store<ScanPolicy>,
    /// Scan Jobs this replica created that `scan_jobs` does not show yet: without them two
    /// reconciles a few milliseconds apart could both take the last free slot.
    started: Arc<Mutex<HashMap<ObjectRef<Job>, Instant>>>,
}

/// The write halves, each consumed by the watch that fills its store (in [`crate::run`]).
pub struct Writers {
    /// Fills [`Caches::scans`].
    pub scans: reflector::store::Writer<Scan>,
    /// Fills [`Caches::scan_jobs`].
    pub scan_jobs: reflector::store::Writer<Job>,
    /// Fills [`Caches::pods`].
    pub pods: reflector::store::Writer<Pod>,
    /// Fills [`Caches::namespaces`].
    pub namespaces: reflector::store::Writer<Namespace>,
    /// Fills [`Caches::notify_rules`].
    pub notify_rules: reflector::store::Writer<NotifyRule>,
    /// Fills [`Caches::secret_copies`].
    pub secret_copies: reflector::store::Writer<Secret>,
    /// Fills [`Caches::notify_workers`].
    pub notify_workers: reflector::store::Writer<Deployment>,
    /// Fills [`Caches::notify_configs`].
    pub notify_configs: reflector::store::Writer<ConfigMap>,
    /// Fills [`Caches::sync_jobs`]; subscribe before handing it to its watch.
    pub sync_jobs: reflector::store::Writer<Job>,
    /// Fills [`Caches::scan_policies`].
    pub scan_policies: reflector::store::Writer<ScanPolicy>,
}

/// Objects to fill caches with at once (tests, `preview`).
#[derive(Default)]
pub struct Contents {
    /// Scans.
    pub scans: Vec<Scan>,
    /// Scan Jobs.
    pub scan_jobs: Vec<Job>,
    /// Pods (trimmed on the way in, as the watch does).
    pub pods: Vec<Pod>,
    /// Namespaces.
    pub namespaces: Vec<Namespace>,
    /// NotifyRules.
    pub notify_rules: Vec<NotifyRule>,
    /// Secret copies in the platform namespace.
    pub secret_copies: Vec<Secret>,
    /// NotifyRule worker Deployments.
    pub notify_workers: Vec<Deployment>,
    /// NotifyRule worker ConfigMaps.
    pub notify_configs: Vec<ConfigMap>,
    /// Sync Jobs.
    pub sync_jobs: Vec<Job>,
    /// ScanPolicies.
    pub scan_policies: Vec<ScanPolicy>,
}

fn fill<K>(writer: &mut reflector::store::Writer<K>, objects: Vec<K>)
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
}

impl Caches {
    /// Empty stores and the writers that fill them.
    pub fn new() -> (Caches, Writers) {
        let (scans, scans_writer) = reflector::store();
        let (scan_jobs, scan_jobs_writer) = reflector::store();
        let (pods, pods_writer) = reflector::store();
        let (namespaces, namespaces_writer) = reflector::store();
        let (notify_rules, notify_rules_writer) = reflector::store();
        let (secret_copies, secret_copies_writer) = reflector::store();
        let (notify_workers, notify_workers_writer) = reflector::store();
        let (notify_configs, notify_configs_writer) = reflector::store();
        let (sync_jobs, sync_jobs_writer) = reflector::store_shared(SHARED_BUFFER);
        let (scan_policies, scan_policies_writer) = reflector::store();
        (
            Caches {
                scans,
                scan_jobs,
                pods,
                namespaces,
                notify_rules,
                secret_copies,
                notify_workers,
                notify_configs,
                sync_jobs,
                scan_policies,
                started: Arc::default(),
            },
            Writers {
                scans: scans_writer,
                scan_jobs: scan_jobs_writer,
                pods: pods_writer,
                namespaces: namespaces_writer,
                notify_rules: notify_rules_writer,
                secret_copies: secret_copies_writer,
                notify_workers: notify_workers_writer,
                notify_configs: notify_configs_writer,
                sync_jobs: sync_jobs_writer,
                scan_policies: scan_policies_writer,
            },
        )
    }

    /// Ready stores holding exactly `contents` (nothing will change them afterwards).
    pub fn filled(contents: Contents) -> Caches {
        let (caches, mut writers) = Caches::new();
        fill(&mut writers.scans, contents.scans);
        fill(&mut writers.scan_jobs, contents.scan_jobs);
        fill(
            &mut writers.pods,
            contents.pods.into_iter().map(trim_pod).collect(),
        );
        fill(
            &mut writers.namespaces,
            contents
                .namespaces
                .into_iter()
                .map(trim_namespace)
                .collect(),
        );
        fill(&mut writers.notify_rules, contents.notify_rules);
        fill(&mut writers.secret_copies, contents.secret_copies);
        fill(&mut writers.notify_workers, contents.notify_workers);
        fill(&mut writers.notify_configs, contents.notify_configs);
        fill(&mut writers.sync_jobs, contents.sync_jobs);
        fill(&mut writers.scan_policies, contents.scan_policies);
        caches
    }

    /// Wait until the Scan and scan Job stores hold their first full list: before that
    /// an empty store would read as "no Job running" and admit too many Scans.
    pub async fn scans_ready(&self) -> Result<()> {
        listed(&self.scans).await?;
        listed(&self.scan_jobs).await
    }

    /// Wait until the store of Secret copies holds its first full list: before that a
    /// copy would read as missing (and be written again) and a stale one would escape
    /// pruning.
    pub async fn secret_copies_ready(&self) -> Result<()> {
        listed(&self.secret_copies).await
    }

    /// Wait until the stores of the notify workers' ConfigMaps and Deployments hold their
    /// first full list: before that a worker would read as missing and be applied again
    /// (seen at restarts when the rules' list finished first: 8 Deployments re-applied).
    pub async fn notify_workers_ready(&self) -> Result<()> {
        listed(&self.notify_configs).await?;
        listed(&self.notify_workers).await
    }

    /// Wait until the ScanPolicy store holds its first full list: before that a policy
    /// would read as missing.
    pub async fn scan_policies_ready(&self) -> Result<()> {
        listed(&self.scan_policies).await
    }

    /// Scan Jobs still running: those in the store that have not finished plus those this
    /// replica just created, counted up to `cap` (the caller only needs to know whether
    /// a slot is free, so the walk stops there).
    pub fn running_scan_jobs(&self, cap: usize) -> usize {
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        started
            .retain(|key, at| at.elapsed() < STARTED_MEMORY && self.scan_jobs.get(key).is_none());
        let running = Cell::new(started.len());
        if running.get() < cap {
            let _ = self.scan_jobs.find(|job| {
                if workload::job_finished(job).is_none() {
                    running.set(running.get() + 1);
                }
                running.get() >= cap
            });
        }
        running.get().min(cap)
    }

    /// Remember a scan Job created by this replica until the store shows it.
    pub fn scan_job_started(&self, job: ObjectRef<Job>) {
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job, Instant::now());
    }

    /// Whether at least `limit` waiting Scans are ahead of `scan` in the queue. The walk
    /// stops at the `limit`-th: in the store's arbitrary order a Scan far back in the queue
    /// meets `limit` earlier ones quickly, so a pass over N queued Scans costs about
    /// N·limit·ln N comparisons, not N².
    pub fn waiting_ahead_at_least(&self, scan: &Scan, limit: usize) -> bool {
        if limit == 0 {
            return true;
        }
        let mine = queue_key(scan);
        let ahead = Cell::new(0usize);
        self.scans
            .find(|other| {
                if is_waiting(other) && queue_key(other) < mine {
                    ahead.set(ahead.get() + 1);
                }
                ahead.get() >= limit
            })
            .is_some()
    }

    /// The first `n` waiting Scans in queue order: the ones a freed slot may start.
    pub fn queue_heads(&self, n: usize) -> Vec<ObjectRef<Scan>> {
        if n == 0 {
            return Vec::new();
        }
        let heads: Mutex<Vec<(OwnedQueueKey, ObjectRef<Scan>)>> =
            Mutex::new(Vec::with_capacity(n + 1));
        let _ = self.scans.find(|scan| {
            if is_waiting(scan) {
                let mut heads = heads.lock().unwrap_or_else(|e| e.into_inner());
                let key = queue_key(scan);
                if heads.len() < n || heads.last().is_some_and(|(last, _)| key < borrowed(last)) {
                    let at = heads.partition_point(|(k, _)| borrowed(k) < key);
                    heads.insert(at, (owned(key), ObjectRef::from_obj(scan)));
                    heads.truncate(n);
                }
            }
            false
        });
        heads
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }
}

/// Wait until `store` holds its first full list.
async fn listed<K>(store: &Store<K>) -> Result<()>
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    store
        .wait_until_ready()
        .await
        .map_err(|error| Error::CacheNotReady(error.to_string()))
}

/// Order in the Scan queue: creation time, ties broken by namespace and name. Borrowed:
/// the queue walks compare every waiting Scan's key and copy only the few they keep.
type QueueKey<'a> = (Option<jiff::Timestamp>, Option<&'a str>, &'a str);
type OwnedQueueKey = (Option<jiff::Timestamp>, Option<String>, String);

fn queue_key(scan: &Scan) -> QueueKey<'_> {
    let meta = &scan.metadata;
    (
        meta.creation_timestamp.as_ref().map(|t| t.0),
        meta.namespace.as_deref(),
        // As `name_any`: the name, else the generate-name prefix.
        meta.name
            .as_deref()
            .or(meta.generate_name.as_deref())
            .unwrap_or_default(),
    )
}

fn owned(key: QueueKey<'_>) -> OwnedQueueKey {
    (key.0, key.1.map(str::to_string), key.2.to_string())
}

fn borrowed(key: &OwnedQueueKey) -> QueueKey<'_> {
    (key.0, key.1.as_deref(), key.2.as_str())
}

/// Whether a Scan still waits for a slot: not started, finished or deleted at its current
/// generation.
pub fn is_waiting(scan: &Scan) -> bool {
    if scan.meta().deletion_timestamp.is_some() {
        return false;
    }
    let status = scan.status.as_ref();
    status.and_then(|s| s.observed_generation) != scan.metadata.generation
        || !matches!(
            status.and_then(|s| s.phase),
            Some(ScanPhase::Running | ScanPhase::Succeeded | ScanPhase::Failed)
        )
}

/// What the Pod store keeps: identity, labels and owners, phase and container statuses
/// (images, image IDs, termination messages). Specs, annotations and managed fields are
/// most of a Pod's bytes and nothing reads them.
pub fn trim_pod(mut pod: Pod) -> Pod {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    pod.spec = None;
    pod.status = pod.status.map(|s| PodStatus {
        phase: s.phase,
        container_statuses: s.container_statuses,
        init_container_statuses: s.init_container_statuses,
        ephemeral_container_statuses: s.ephemeral_container_statuses,
        ..Default::default()
    });
    pod
}

/// What the Namespace store keeps: name and labels.
pub fn trim_namespace(mut namespace: Namespace) -> Namespace {
    namespace.metadata.managed_fields = None;
    namespace.metadata.annotations = None;
    namespace.spec = None;
    namespace.status = None;
    namespace
}

/// The changes of a root object that call for a reconcile: its spec (generation), labels,
/// annotations, finalizers and deletion. Status-only writes (most writes, and all of the
/// operator's own) hash the same and are dropped by `predicate_filter`.
pub fn spec_changes<K: Resource>(object: &K) -> Option<u64> {
    let meta = object.meta();
    let mut hasher = DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.labels.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
}
