//! The trust boundary between tenants and the platform: everything that holds platform
//! credentials (database URL, S3 keys) runs in the platform namespace (the operator's), never
//! in a tenant's. Ownership across that boundary cannot use ownerReferences (the garbage
//! collector refuses cross-namespace owners), so what the operator makes there carries owner
//! labels (kind, namespace, uid) and the owner's name as an annotation, and the custom
//! resource carries [`FINALIZER`] until those objects are deleted.
//!
//! What a platform workload needs from the tenant's namespace (a Scan's pull secret, a
//! NotifyRule's channel Secret, a MirrorDomain's htpasswd) is copied into the platform
//! namespace on every reconcile, so a change to the source reaches the copy at the next one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::context::{Context, FIELD_MANAGER};
use crate::error::{Error, Result};

/// Finalizer on every custom resource that has objects in the platform namespace.
pub const FINALIZER: &str = "stella-ops.org/platform-cleanup";
/// Label: kind of the custom resource an object was made for.
pub const OWNER_KIND: &str = "stella-ops.org/owner-kind";
/// Label: namespace of that resource.
pub const OWNER_NAMESPACE: &str = "stella-ops.org/owner-namespace";
/// Label: uid of that resource (what cleanup selects by: a new resource of the same name is
/// a different owner).
pub const OWNER_UID: &str = "stella-ops.org/owner-uid";
/// Annotation: name of that resource (names may exceed a label value's 63 characters).
pub const OWNER_NAME: &str = "stella-ops.org/owner-name";

/// The uid label value of an object not stored yet (`preview`).
const UNASSIGNED_UID: &str = "unassigned";

/// Owner labels of what is made for `owner` in the platform namespace.
pub fn owner_labels<K: Resource<DynamicType = ()>>(owner: &K) -> BTreeMap<String, String> {
    BTreeMap::from([
        (OWNER_KIND.to_string(), K::kind(&()).into_owned()),
        (
            OWNER_NAMESPACE.to_string(),
            owner.meta().namespace.clone().unwrap_or_default(),
        ),
        (
            OWNER_UID.to_string(),
            owner
                .meta()
                .uid
                .clone()
                .unwrap_or_else(|| UNASSIGNED_UID.into()),
        ),
    ])
}

/// Metadata of an object made for `owner` in the platform namespace: `labels` plus the owner
/// labels, the owner's name as annotation, no ownerReferences.
pub fn platform_meta<K: Resource<DynamicType = ()>>(
    owner: &K,
    platform_namespace: &str,
    name: String,
    mut labels: BTreeMap<String, String>,
) -> ObjectMeta {
    labels.extend(owner_labels(owner));
    ObjectMeta {
        name: Some(name),
        namespace: Some(platform_namespace.to_string()),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([(
            OWNER_NAME.to_string(),
            owner.meta().name.clone().unwrap_or_default(),
        )])),
        ..Default::default()
    }
}

/// A name in the platform namespace for `name` of tenant namespace `ns`: `<ns>-<name><suffix>`
/// within `max` characters. Two tenants' objects never collide: when the whole does not fit,
/// the cut is followed by a hash of the full namespace and name.
pub fn platform_name(ns: &str, name: &str, suffix: &str, max: usize) -> String {
    let whole = format!("{ns}-{name}");
    if whole.len() + suffix.len() <= max {
        return format!("{whole}{suffix}");
    }
    let hash = hex::encode(&Sha256::digest(format!("{ns}/{name}").as_bytes())[..4]);
    let keep = max.saturating_sub(suffix.len() + hash.len() + 1);
    let cut: String = whole.chars().take(keep).collect();
    format!("{}-{hash}{suffix}", cut.trim_end_matches('-'))
}

/// The custom resource an object in the platform namespace was made for, from its owner
/// labels (for the controllers' watches of what they made there).
pub fn owner_of<K: Resource<DynamicType = ()>, O: ResourceExt>(object: &O) -> Option<ObjectRef<K>> {
    let labels = object.labels();
    if labels.get(OWNER_KIND)? != K::kind(&()).as_ref() {
        return None;
    }
    let ns = labels.get(OWNER_NAMESPACE)?;
    let name = object.annotations().get(OWNER_NAME)?;
    Some(ObjectRef::new(name).within(ns))
}

/// Label selector of everything made for the resource with `uid`.
pub fn owned_selector(uid: &str) -> String {
    format!("{OWNER_UID}={uid}")
}

/// Whether `labels` satisfy an equality-based label selector (`k=v,k2=v2`, or a bare `k`
/// for "has label k"): the only form the operator's own selectors take.
pub fn selector_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|term| !term.is_empty())
        .all(|term| match term.split_once('=') {
            Some((key, value)) => labels.get(key.trim()).map(String::as_str) == Some(value.trim()),
            None => labels.contains_key(term),
        })
}

/// Delete every object of `api` matching `selector` with one `deletecollection` (no LIST,
/// no request per object). Returns how many were deleted.
async fn delete_collection<K>(api: Api<K>, selector: &str) -> Result<usize>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deleted = api
        .delete_collection(
            &DeleteParams::background(),
            &ListParams::default().labels(selector),
        )
        .await?;
    Ok(deleted.left().map_or(0, |list| list.items.len()))
}

/// Delete every object of the platform namespace matching `selector`: Jobs and CronJobs
/// (their Pods go with them), Deployments, Services, claims, ConfigMaps and Secret copies,
/// one `deletecollection` per kind. Returns how many were deleted.
pub async fn delete_owned(ctx: &Context, selector: &str) -> Result<usize> {
    let ns = &ctx.config.operator_namespace;
    let c = &ctx.client;
    let mut deleted = 0;
    deleted += delete_collection(Api::<CronJob>::namespaced(c.clone(), ns), selector).await?;
    deleted += delete_collection(Api::<Job>::namespaced(c.clone(), ns), selector).await?;
    deleted += delete_collection(Api::<Deployment>::namespaced(c.clone(), ns), selector).await?;
    deleted += delete_collection(Api::<Service>::namespaced(c.clone(), ns), selector).await?;
    deleted += delete_collection(
        Api::<PersistentVolumeClaim>::namespaced(c.clone(), ns),
        selector,
    )
    .await?;
    deleted += delete_collection(Api::<ConfigMap>::namespaced(c.clone(), ns), selector).await?;
    deleted += delete_collection(Api::<Secret>::namespaced(c.clone(), ns), selector).await?;
    Ok(deleted)
}

/// A Secret of the tenant's namespace to copy into the platform namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretCopy {
    /// The Secret in the owner's namespace.
    pub source: String,
    /// Its copy's name in the platform namespace.
    pub copy: String,
}

/// Read the Secrets named `names` in `ns` (one GET each: the operator may read tenants'
/// Secrets only by name). Missing ones are left out.
pub async fn read_secrets(
    ctx: &Context,
    ns: &str,
    names: &[String],
) -> Result<BTreeMap<String, Secret>> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut found = BTreeMap::new();
    for name in names {
        if let Some(secret) = api.get_opt(name).await? {
            found.insert(name.clone(), secret);
        }
    }
    Ok(found)
}

/// Copy each of `copies` from `source_ns` into the platform namespace with `labels` (owner
/// labels included) and, for a short-lived copy, `owner` (a Job in the platform namespace).
/// Copies whose source is missing are skipped; their names are returned so the caller can
/// say so. Copies carrying `labels` that are no longer wanted are deleted when `prune`.
pub async fn copy_secrets(
    ctx: &Context,
    source_ns: &str,
    copies: &[SecretCopy],
    metadata: &ObjectMeta,
    owner: Option<OwnerReference>,
    prune: Option<&str>,
) -> Result<Vec<String>> {
    let names: Vec<String> = copies.iter().map(|c| c.source.clone()).collect();
    let sources = read_secrets(ctx, source_ns, &names).await?;
    copy_read_secrets(ctx, &sources, copies, metadata, owner, prune).await
}

/// [`copy_secrets`] from Secrets already read (by [`read_secrets`]). A copy the store of
/// copies already shows as wanted is not written again; pruning reads that store, so
/// neither step LISTs.
pub async fn copy_read_secrets(
    ctx: &Context,
    sources: &BTreeMap<String, Secret>,
    copies: &[SecretCopy],
    metadata: &ObjectMeta,
    owner: Option<OwnerReference>,
    prune: Option<&str>,
) -> Result<Vec<String>> {
    let platform_ns = &ctx.config.operator_namespace;
    let targets: Api<Secret> = Api::namespaced(ctx.client.clone(), platform_ns);
    ctx.caches.secret_copies_ready().await?;
    let mut missing = Vec::new();
    for copy in copies {
        let Some(source) = sources.get(&copy.source) else {
            missing.push(copy.source.clone());
            continue;
        };
        let mut data = source.data.clone().unwrap_or_default();
        for (k, v) in source.string_data.clone().unwrap_or_default() {
            data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
        }
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(copy.copy.clone()),
                namespace: Some(platform_ns.clone()),
                owner_references: owner.clone().map(|o| vec![o]),
                ..metadata.clone()
            },
            type_: source.type_.clone(),
            data: Some(data),
            immutable: None,
            string_data: None,
        };
        let stored = ctx
            .caches
            .secret_copies
            .get(&ObjectRef::new(&copy.copy).within(platform_ns));
        if stored.is_some_and(|stored| copy_is_current(&stored, &secret)) {
            continue;
        }
        targets
            .patch(
                &copy.copy,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&crate::workload::typed(&secret)),
            )
            .await?;
    }
    if let Some(selector) = prune {
        let keep: BTreeSet<&String> = copies.iter().map(|c| &c.copy).collect();
        let stale = ctx.caches.secret_copies.state_filter(|s| {
            s.metadata.namespace.as_deref() == Some(platform_ns.as_str())
                && selector_matches(selector, s.labels())
                && !keep.contains(&s.name_any())
        });
        for secret in stale {
            match targets
                .delete(&secret.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(missing)
}

/// Whether the stored copy already holds what `wanted` would write: same type and data,
/// and every label, annotation and owner `wanted` sets.
fn copy_is_current(stored: &Secret, wanted: &Secret) -> bool {
    let contains = |have: &Option<BTreeMap<String, String>>,
                    want: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    // The API server stores an absent type as `Opaque` and may drop an empty `data`.
    let type_of = |s: &Secret| s.type_.clone().unwrap_or_else(|| "Opaque".into());
    type_of(stored) == type_of(wanted)
        && stored.data.clone().unwrap_or_default() == wanted.data.clone().unwrap_or_default()
        && contains(&stored.metadata.labels, &wanted.metadata.labels)
        && contains(&stored.metadata.annotations, &wanted.metadata.annotations)
        && wanted
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(|owners| {
                owners.iter().all(|o| {
                    stored
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|s| s.uid == o.uid)
                })
            })
}

/// Delete what was made for `object` (selected by its uid). The default cleanup.
pub async fn cleanup_by_uid<K: Resource<DynamicType = ()>>(
    object: &K,
    ctx: &Context,
) -> Result<Action> {
    let uid = object.meta().uid.clone().unwrap_or_default();
    let deleted = delete_owned(ctx, &owned_selector(&uid)).await?;
    tracing::info!(
        kind = %K::kind(&()),
        namespace = object.meta().namespace.as_deref().unwrap_or_default(),
        name = object.meta().name.as_deref().unwrap_or_default(),
        deleted,
        "deleted what was made in the platform namespace"
    );
    Ok(Action::await_change())
}

/// Run `apply` for a live resource and `cleanup` (then release the finalizer) for one being
/// deleted; the finalizer is added before anything is made for it, so nothing made in the
/// platform namespace can outlive its owner — even when the operator is down during the
/// delete, the resource waits with its finalizer until the next start cleans up.
pub async fn reconcile_with_cleanup<K, A, AFut, C, CFut>(
    object: Arc<K>,
    ctx: Arc<Context>,
    apply: A,
    cleanup: C,
) -> Result<Action>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    A: FnOnce(Arc<K>, Arc<Context>) -> AFut,
    AFut: std::future::Future<Output = Result<Action>>,
    C: FnOnce(Arc<K>, Arc<Context>) -> CFut,
    CFut: std::future::Future<Output = Result<Action>>,
{
    let ns = object
        .meta()
        .namespace
        .clone()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, object, |event| async move {
        match event {
            FinalizerEvent::Apply(object) => apply(object, ctx).await,
            FinalizerEvent::Cleanup(object) => cleanup(object, ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        kube::runtime::finalizer::Error::AddFinalizer(e)
        | kube::runtime::finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    })
}
