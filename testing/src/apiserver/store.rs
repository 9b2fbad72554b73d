//! Objects, their resource types, the global resourceVersion counter and the watch history.
//! Everything here is synchronous and runs under the emulator's one store lock.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::discovery;
use super::patch::{self, PatchBody};
use super::ssa;

/// Watch events kept for resumes; older resumes get 410 Gone.
const HISTORY: usize = 10_000;
/// Events a slow watcher may fall behind by before it is ended (it then relists).
const BROADCAST: usize = 16_384;
const STELLA_GROUP: &str = "stella-ops.org";

/// One request served, for test assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// User name (`admin`, `system:serviceaccount:NS:NAME`, or `-` when unauthenticated).
    pub user: String,
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`).
    pub verb: String,
    /// Path with query string.
    pub path: String,
    /// HTTP status code.
    pub status: u16,
}

/// A served resource.
#[derive(Clone, Debug)]
pub(crate) struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status: bool,
    pub printer_columns: Vec<Value>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `jobs.batch`, or `pods` for the core group, as error messages name it.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn storage(&self) -> (String, String) {
        (self.group.clone(), self.plural.clone())
    }
}

/// A Kubernetes `Status` failure.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        ApiError {
            details: Some(json!({"name": name, "group": rt.group, "kind": rt.plural})),
            ..Self::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", rt.group_resource()),
            )
        }
    }

    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        ApiError {
            details: Some(json!({"name": name, "group": rt.group, "kind": rt.plural})),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    rt.group_resource()
                ),
            )
        }
    }

    fn invalid(rt: &ResourceType, name: &str, causes: Vec<(String, String)>) -> Self {
        let listed: Vec<String> = causes
            .iter()
            .map(|(field, message)| {
                if field.is_empty() {
                    message.clone()
                } else {
                    format!("{field}: {message}")
                }
            })
            .collect();
        let summary = if listed.len() == 1 {
            listed[0].clone()
        } else {
            format!("[{}]", listed.join(", "))
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|(field, message)| {
                json!({"reason": cause_reason(message), "message": message, "field": field})
            })
            .collect();
        let qualified = if rt.group.is_empty() {
            rt.kind.clone()
        } else {
            format!("{}.{}", rt.kind, rt.group)
        };
        ApiError {
            details: Some(
                json!({"name": name, "group": rt.group, "kind": rt.kind, "causes": causes}),
            ),
            ..Self::new(
                422,
                "Invalid",
                format!("{qualified} \"{name}\" is invalid: {summary}"),
            )
        }
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

fn cause_reason(message: &str) -> &'static str {
    if message.starts_with("Required value") {
        "FieldValueRequired"
    } else if message.starts_with("Unsupported value") {
        "FieldValueNotSupported"
    } else if message.starts_with("Forbidden") {
        "FieldValueForbidden"
    } else if message.starts_with("Duplicate value") {
        "FieldValueDuplicate"
    } else if message.starts_with("Too long") || message.starts_with("Too many") {
        "FieldValueTooLong"
    } else {
        "FieldValueInvalid"
    }
}

/// One write, as watchers see it.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub event: &'static str,
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub object: Arc<Value>,
}

type ObjKey = (String, String, String, String);
/// The objects of one resource by (namespace, name).
type Objects = BTreeMap<(String, String), Arc<Value>>;

/// How a write records field ownership.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op<'a> {
    /// Update/patch/create by a field manager.
    Update(&'a str),
    /// Server-side apply by a field manager.
    Apply(&'a str, bool),
}

/// Delete options that matter here.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteOptions {
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

pub(crate) struct Store {
    types: BTreeMap<(String, String, String), Arc<ResourceType>>,
    objects: HashMap<(String, String), Objects>,
    uids: HashMap<String, ObjKey>,
    dependents: HashMap<String, BTreeSet<ObjKey>>,
    rv: u64,
    history: VecDeque<Arc<Change>>,
    /// Resumes from a resourceVersion below this get 410 Gone.
    floor: u64,
    events: broadcast::Sender<Arc<Change>>,
    rng: u64,
}

/// An unguessable token (hex).
pub(crate) fn random_token() -> String {
    use sha2::{Digest, Sha256};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let stack = 0u8;
    let seed = format!(
        "{}-{}-{:p}-{:?}",
        now.as_nanos(),
        std::process::id(),
        &stack,
        std::thread::current().id()
    );
    hex::encode(&Sha256::digest(seed.as_bytes())[..16])
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn meta(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata").and_then(Value::as_object)
}

fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    meta(object)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

fn owner_uids(object: &Value) -> Vec<String> {
    meta(object)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn has_finalizers(object: &Value) -> bool {
    meta(object)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// Everything but metadata and status: what bumps `metadata.generation`.
fn spec_part(object: &Value) -> Map<String, Value> {
    object
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

impl Store {
    pub fn new() -> Store {
        let (events, _) = broadcast::channel(BROADCAST);
        let mut store = Store {
            types: BTreeMap::new(),
            objects: HashMap::new(),
            uids: HashMap::new(),
            dependents: HashMap::new(),
            rv: 1,
            history: VecDeque::new(),
            floor: 1,
            events,
            rng: u64::from_str_radix(&random_token()[..16], 16).unwrap_or(0x9e37_79b9) | 1,
        };
        for rt in discovery::builtins() {
            store.register(rt);
        }
        for ns in ["default", "kube-system", "kube-public", "stellaops-system"] {
            let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            store
                .preload(object)
                .expect("built-in namespaces are valid");
        }
        store
    }

    fn register(&mut self, rt: ResourceType) {
        self.types.insert(
            (rt.group.clone(), rt.version.clone(), rt.plural.clone()),
            Arc::new(rt),
        );
    }

    pub fn types(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }

    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    fn resource_for(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.types
            .values()
            .find(|rt| rt.group == group && rt.version == version && rt.kind == kind)
            .cloned()
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Forget the watch history as a compaction would: every earlier resourceVersion is
    /// now too old to resume from.
    pub fn compact(&mut self) {
        self.history.clear();
        self.rv += 1;
        self.floor = self.rv;
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.events.subscribe()
    }

    /// History events after `rv`, oldest first.
    pub fn history_after(&self, rv: u64) -> Vec<Arc<Change>> {
        let start = self.history.partition_point(|c| c.rv <= rv);
        self.history.range(start..).cloned().collect()
    }

    pub fn objects_of(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let Some(rt) = self.resource_for(api_version, kind) else {
            return Vec::new();
        };
        self.objects
            .get(&rt.storage())
            .map(|m| m.values().map(|v| (**v).clone()).collect())
            .unwrap_or_default()
    }

    /// How many stored objects of `api_version`/`kind` satisfy `predicate` (nothing copied).
    pub fn count_of(
        &self,
        api_version: &str,
        kind: &str,
        predicate: impl Fn(&Value) -> bool,
    ) -> usize {
        let Some(rt) = self.resource_for(api_version, kind) else {
            return 0;
        };
        self.objects
            .get(&rt.storage())
            .map(|m| m.values().filter(|v| predicate(v)).count())
            .unwrap_or_default()
    }

    /// Change every stored object of `api_version`/`kind` in place with `change`: no new
    /// resourceVersion, no watch event (setting up a benchmark before anything watches).
    pub fn rewrite(&mut self, api_version: &str, kind: &str, mut change: impl FnMut(&mut Value)) {
        let Some(rt) = self.resource_for(api_version, kind) else {
            return;
        };
        if let Some(map) = self.objects.get_mut(&rt.storage()) {
            for object in map.values_mut() {
                change(Arc::make_mut(object));
            }
        }
    }

    /// The objects of `rt` in `namespace` (all when `None`), cheaply shared.
    pub fn snapshot(&self, rt: &ResourceType, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let Some(map) = self.objects.get(&rt.storage()) else {
            return Vec::new();
        };
        match namespace {
            Some(ns) if rt.namespaced => map
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            _ => map.values().cloned().collect(),
        }
    }

    /// One page of a list: the first `limit` objects of `rt` (in `namespace`; all when
    /// `None`) that come after `after` in (namespace, name) order and that `keep` accepts
    /// (every one when `None`), whether another accepted object follows them, and, when
    /// nothing is filtered out, how many objects follow them (a walk over the keys, as the
    /// API server gives `remainingItemCount` only then). Walks from `after` on, like
    /// etcd's range reads: a page costs its own size, not the whole collection's.
    pub fn page(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
        keep: Option<impl Fn(&Value) -> bool>,
    ) -> (Vec<Arc<Value>>, bool, Option<usize>) {
        use std::ops::Bound;
        let Some(map) = self.objects.get(&rt.storage()) else {
            return (Vec::new(), false, None);
        };
        let namespace = namespace.filter(|_| rt.namespaced);
        let from = (
            namespace.map_or_else(String::new, str::to_string),
            String::new(),
        );
        let start = match after {
            Some((ns, name)) if (ns, name) >= (from.0.as_str(), from.1.as_str()) => {
                Bound::Excluded((ns.to_string(), name.to_string()))
            }
            _ => Bound::Included(from),
        };
        let mut objects = map
            .range((start, Bound::Unbounded))
            .take_while(|((ns, _), _)| namespace.is_none_or(|want| ns == want))
            .map(|(_, object)| object);
        let (mut page, mut more) = (Vec::new(), false);
        for object in objects.by_ref() {
            if keep.as_ref().is_some_and(|keep| !keep(object)) {
                continue;
            }
            if page.len() == limit {
                more = true;
                break;
            }
            page.push(object.clone());
        }
        let remaining = (more && keep.is_none()).then(|| 1 + objects.count());
        (page, more, remaining)
    }

    fn lookup(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(&rt.storage())
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        self.lookup(rt, ns, name)
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.objects
            .get(&(String::new(), "namespaces".to_string()))
            .is_some_and(|m| m.contains_key(&(String::new(), ns.to_string())))
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn random_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..5)
            .map(|_| {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                ALPHABET[(self.rng % ALPHABET.len() as u64) as usize] as char
            })
            .collect()
    }

    fn new_uid(&mut self) -> String {
        let a = u64::from_str_radix(&random_token()[..16], 16).unwrap_or(0) ^ self.rv;
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let b = self.rng;
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    /// Record a write (or with `None`, a deletion) and tell the watchers.
    fn commit(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        object: Option<Value>,
        event: &'static str,
    ) -> Arc<Value> {
        let rv = self.next_rv();
        let key = (
            rt.group.clone(),
            rt.plural.clone(),
            ns.to_string(),
            name.to_string(),
        );
        let map = self.objects.entry(rt.storage()).or_default();
        let old = map.remove(&(ns.to_string(), name.to_string()));
        if let Some(old) = &old {
            if let Some(uid) = meta_str(old, "uid") {
                self.uids.remove(uid);
            }
            for owner in owner_uids(old) {
                if let Some(set) = self.dependents.get_mut(&owner) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.dependents.remove(&owner);
                    }
                }
            }
        }
        let stored = match object {
            Some(mut object) => {
                meta_mut(&mut object).insert("resourceVersion".into(), json!(rv.to_string()));
                if let Some(uid) = meta_str(&object, "uid") {
                    self.uids.insert(uid.to_string(), key.clone());
                }
                for owner in owner_uids(&object) {
                    self.dependents
                        .entry(owner)
                        .or_default()
                        .insert(key.clone());
                }
                let object = Arc::new(object);
                self.objects
                    .entry(rt.storage())
                    .or_default()
                    .insert((ns.to_string(), name.to_string()), object.clone());
                object
            }
            None => {
                let mut last = old.map(|o| (*o).clone()).unwrap_or(Value::Null);
                if last.is_object() {
                    meta_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
                }
                Arc::new(last)
            }
        };
        let change = Arc::new(Change {
            rv,
            event,
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            namespace: ns.to_string(),
            object: stored.clone(),
        });
        self.history.push_back(change.clone());
        while self.history.len() > HISTORY {
            if let Some(dropped) = self.history.pop_front() {
                self.floor = dropped.rv;
            }
        }
        let _ = self.events.send(change);
        stored
    }

    /// Create `object` as an admin would, replacing nothing that exists.
    pub fn preload(&mut self, object: Value) -> Result<(), String> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let rt = self
            .resource_for(api_version, kind)
            .ok_or_else(|| format!("no resource serves {api_version} {kind}"))?;
        let ns = if rt.namespaced {
            meta_str(&object, "namespace")
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        if rt.namespaced && !self.namespace_exists(&ns) {
            let namespace =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            self.preload(namespace)?;
        }
        match self.create(&rt, &ns, object, Op::Update("preload"), false) {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => Ok(()),
            Err(e) => Err(e.message),
        }
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut object: Value,
        op: Op,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not an object",
            ));
        }
        check_type(rt, &mut object)?;
        let metadata = meta_mut(&mut object);
        if rt.namespaced {
            match metadata.get("namespace").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    metadata.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            metadata.remove("namespace");
        }
        let name = match metadata.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => match metadata.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let prefix = prefix.to_string();
                    format!("{prefix}{}", self.random_suffix())
                }
                _ => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        vec![(
                            "metadata.name".into(),
                            "Required value: name or generateName is required".into(),
                        )],
                    ));
                }
            },
        };
        if rt.namespaced && !self.namespace_exists(ns) {
            return Err(ApiError {
                details: Some(json!({"name": ns, "kind": "namespaces"})),
                ..ApiError::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
            });
        }
        if rt.namespaced
            && self
                .lookup(&discovery::namespaces(), "", ns)
                .is_some_and(|n| meta(&n).is_some_and(|m| m.contains_key("deletionTimestamp")))
        {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    rt.group_resource()
                ),
            ));
        }
        if self.lookup(rt, ns, &name).is_some() {
            return Err(ApiError {
                details: Some(json!({"name": name, "group": rt.group, "kind": rt.plural})),
                ..ApiError::new(
                    409,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", rt.group_resource()),
                )
            });
        }
        let uid = self.new_uid();
        let metadata = meta_mut(&mut object);
        metadata.insert("name".into(), json!(name));
        metadata.insert("uid".into(), json!(uid));
        metadata.insert("creationTimestamp".into(), json!(now_rfc3339()));
        metadata.insert("generation".into(), json!(1));
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            metadata.remove(field);
        }
        if rt.status
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        if rt.group == STELLA_GROUP {
            object = admit(rt, &name, &object, None)?;
        }
        defaults_on_create(rt, &mut object, &uid);
        match op {
            Op::Update(manager) => {
                ssa::track_update(None, &mut object, manager, "", &rt.api_version())
            }
            Op::Apply(manager, _) => {
                let applied = ssa::apply(None, &object, manager, true, "", &rt.api_version())
                    .map_err(|_| ApiError::bad_request("apply conflict on create"))?;
                if let Some(managed) = applied["metadata"].get("managedFields") {
                    meta_mut(&mut object).insert("managedFields".into(), managed.clone());
                }
            }
        }
        if dry_run {
            return Ok(object);
        }
        let is_crd = rt.kind == "CustomResourceDefinition";
        if is_crd {
            let crd_status = self.register_crd(&object)?;
            object["status"] = crd_status;
        }
        let stored = self.commit(rt, ns, &name, Some(object), "ADDED");
        self.collect_if_orphaned(rt, ns, &name, &stored);
        Ok((*stored).clone())
    }

    /// The garbage collector's other half: an object whose every owner is absent (created
    /// after its owner's deletion, or given only stale owners) is deleted, as a real
    /// cluster's collector does once it has confirmed the owners are gone. The writer still
    /// gets its answer; watchers then see the deletion.
    fn collect_if_orphaned(&mut self, rt: &ResourceType, ns: &str, name: &str, stored: &Value) {
        let owners = owner_uids(stored);
        if owners.is_empty() || owners.iter().any(|o| self.uids.contains_key(o)) {
            return;
        }
        self.delete_object(rt, ns, name, None);
    }

    /// The resource types a CRD defines, and the status a real server would give it.
    fn register_crd(&mut self, crd: &Value) -> Result<Value, ApiError> {
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default().to_string();
        let names = &spec["names"];
        let plural = names["plural"].as_str().unwrap_or_default().to_string();
        let kind = names["kind"].as_str().unwrap_or_default().to_string();
        if group.is_empty() || plural.is_empty() || kind.is_empty() {
            return Err(ApiError::new(
                422,
                "Invalid",
                "CustomResourceDefinition needs spec.group, spec.names.plural and spec.names.kind",
            ));
        }
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        self.types
            .retain(|(g, _, p), _| !(g == &group && p == &plural));
        for version in spec["versions"].as_array().into_iter().flatten() {
            if version["served"].as_bool() == Some(false) {
                continue;
            }
            self.register(ResourceType {
                group: group.clone(),
                version: version["name"].as_str().unwrap_or("v1").to_string(),
                plural: plural.clone(),
                singular: names["singular"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| kind.to_lowercase()),
                kind: kind.clone(),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                status: version["subresources"]["status"].is_object(),
                printer_columns: version["additionalPrinterColumns"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            });
        }
        let now = now_rfc3339();
        Ok(json!({
            "acceptedNames": names,
            "storedVersions": spec["versions"].as_array().into_iter().flatten()
                .filter(|v| v["storage"].as_bool() == Some(true))
                .filter_map(|v| v["name"].as_str()).collect::<Vec<_>>(),
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
        }))
    }

    /// PUT of the object or its `sub`resource.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        sub: &str,
        mut body: Value,
        manager: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not an object",
            ));
        }
        check_type(rt, &mut body)?;
        if let Some(given) = meta_str(&body, "name")
            && given != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        let old = self.get(rt, ns, name)?;
        if let Some(given) = meta_str(&body, "resourceVersion")
            && !given.is_empty()
            && Some(given) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(rt, name));
        }
        self.finish(rt, ns, name, sub, &old, body, Op::Update(manager), dry_run)
    }

    /// PATCH of the object or its `sub`resource; an apply creates a missing object.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        sub: &str,
        body: PatchBody,
        manager: &str,
        force: bool,
        dry_run: bool,
    ) -> Result<(u16, Value), ApiError> {
        let old = match self.lookup(rt, ns, name) {
            Some(old) => old,
            None => match (&body, sub) {
                (PatchBody::Apply(applied), "") => {
                    let mut object = applied.clone();
                    if let Some(given) = meta_str(&object, "name")
                        && given != name
                    {
                        return Err(ApiError::bad_request(format!(
                            "the name of the object ({given}) does not match the name on the URL ({name})"
                        )));
                    }
                    meta_mut(&mut object).insert("name".into(), json!(name));
                    let created =
                        self.create(rt, ns, object, Op::Apply(manager, force), dry_run)?;
                    return Ok((201, created));
                }
                _ => return Err(ApiError::not_found(rt, name)),
            },
        };
        let patched = match body {
            PatchBody::Apply(applied) => {
                if !applied.is_object() {
                    return Err(ApiError::bad_request("the apply body is not an object"));
                }
                if let Some(given) = meta_str(&applied, "name")
                    && given != name
                {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({given}) does not match the name on the URL ({name})"
                    )));
                }
                let mut applied = applied;
                check_type(rt, &mut applied)?;
                return self
                    .finish(
                        rt,
                        ns,
                        name,
                        sub,
                        &old,
                        applied,
                        Op::Apply(manager, force),
                        dry_run,
                    )
                    .map(|v| (200, v));
            }
            other => patch::apply_patch(&old, other)
                .map_err(|message| ApiError::new(422, "Invalid", message))?,
        };
        let mut patched = patched;
        check_type(rt, &mut patched)?;
        if meta_str(&patched, "resourceVersion") != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(rt, name));
        }
        self.finish(
            rt,
            ns,
            name,
            sub,
            &old,
            patched,
            Op::Update(manager),
            dry_run,
        )
        .map(|v| (200, v))
    }

    /// The common end of update, patch and apply: keep what the request may not change,
    /// admit, bump the generation, record field ownership, store (unless nothing changed),
    /// and delete for real when the last finalizer of a deleted object goes.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        sub: &str,
        old: &Value,
        body: Value,
        op: Op,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let api_version = rt.api_version();
        let mut new = match op {
            Op::Update(_) => body,
            Op::Apply(manager, force) => {
                let mut applied = body;
                scope_applied(rt, sub, &mut applied);
                ssa::apply(Some(old), &applied, manager, force, sub, &api_version)
                    .map_err(|conflicts| apply_conflict(rt, name, &conflicts))?
            }
        };
        if sub == "status" {
            let status = new.get("status").cloned();
            let managed = meta(&new).and_then(|m| m.get("managedFields")).cloned();
            new = old.clone();
            match status {
                Some(status) => new["status"] = status,
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            if let (Op::Apply(..), Some(managed)) = (op, managed) {
                meta_mut(&mut new).insert("managedFields".into(), managed);
            }
        } else if !sub.is_empty() {
            return Err(ApiError::not_found(rt, &format!("{name}/{sub}")));
        } else if rt.status {
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }
        let old_meta = meta(old).cloned().unwrap_or_default();
        let metadata = meta_mut(&mut new);
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
        ] {
            match old_meta.get(field) {
                Some(value) => metadata.insert(field.into(), value.clone()),
                None => metadata.remove(field),
            };
        }
        if let Op::Update(_) = op {
            // Clients echo managedFields back; the server owns them.
            match old_meta.get("managedFields") {
                Some(value) => metadata.insert("managedFields".into(), value.clone()),
                None => metadata.remove("managedFields"),
            };
        }
        if rt.group == STELLA_GROUP && sub.is_empty() {
            new = admit(rt, name, &new, Some(old))?;
        }
        if sub.is_empty() && spec_part(&new) != spec_part(old) {
            let generation = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(generation + 1));
        }
        if let Op::Update(manager) = op {
            ssa::track_update(Some(old), &mut new, manager, sub, &api_version);
        }
        if rt.kind == "CustomResourceDefinition" && sub.is_empty() {
            let status = self.register_crd(&new)?;
            if new.get("status") != Some(&status) && old.get("status").is_none() {
                new["status"] = status;
            }
        }
        if new == *old {
            return Ok(new);
        }
        if dry_run {
            return Ok(new);
        }
        if meta(&new).is_some_and(|m| m.contains_key("deletionTimestamp"))
            && !has_finalizers(&new)
            && rt.kind != "Namespace"
        {
            let stored = self.commit(rt, ns, name, Some(new), "MODIFIED");
            let gone = self.remove_now(rt, ns, name);
            let _ = stored;
            return Ok((*gone).clone());
        }
        let stored = self.commit(rt, ns, name, Some(new), "MODIFIED");
        if sub.is_empty() {
            self.collect_if_orphaned(rt, ns, name, &stored);
        }
        Ok((*stored).clone())
    }

    /// DELETE of one object.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let old = self.get(rt, ns, name)?;
        if let Some(uid) = &options.precondition_uid
            && Some(uid.as_str()) != meta_str(&old, "uid")
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    rt.group_resource(),
                    meta_str(&old, "uid").unwrap_or("")
                ),
            ));
        }
        if let Some(rv) = &options.precondition_rv
            && Some(rv.as_str()) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(rt, name));
        }
        if options.dry_run {
            return Ok((*old).clone());
        }
        Ok((*self.delete_object(rt, ns, name, options.propagation.as_deref())).clone())
    }

    fn delete_object(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        propagation: Option<&str>,
    ) -> Arc<Value> {
        let Some(old) = self.lookup(rt, ns, name) else {
            return Arc::new(Value::Null);
        };
        let uid = meta_str(&old, "uid").unwrap_or_default().to_string();
        match propagation {
            Some("Orphan") => self.orphan(&uid),
            Some("Foreground") => self.collect_dependents(&uid),
            _ => {}
        }
        if rt.kind == "Namespace" {
            return self.delete_namespace(name);
        }
        if has_finalizers(&old) {
            if meta(&old).is_some_and(|m| m.contains_key("deletionTimestamp")) {
                return old;
            }
            let mut marked = (*old).clone();
            let metadata = meta_mut(&mut marked);
            metadata.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
            return self.commit(rt, ns, name, Some(marked), "MODIFIED");
        }
        self.remove_now(rt, ns, name)
    }

    fn orphan(&mut self, uid: &str) {
        let keys: Vec<ObjKey> = self
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        for (group, plural, ns, name) in keys {
            let Some(rt) = self.any_version(&group, &plural) else {
                continue;
            };
            let Some(object) = self.lookup(&rt, &ns, &name) else {
                continue;
            };
            let mut object = (*object).clone();
            if let Some(refs) = meta_mut(&mut object)
                .get_mut("ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
            }
            self.commit(&rt, &ns, &name, Some(object), "MODIFIED");
        }
    }

    fn collect_dependents(&mut self, uid: &str) {
        let keys: Vec<ObjKey> = self
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        for (group, plural, ns, name) in keys {
            if let Some(rt) = self.any_version(&group, &plural) {
                self.delete_object(&rt, &ns, &name, Some("Foreground"));
            }
        }
    }

    fn any_version(&self, group: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|((g, _, p), _)| g == group && p == plural)
            .map(|(_, rt)| rt.clone())
    }

    fn delete_namespace(&mut self, name: &str) -> Arc<Value> {
        let namespaces = discovery::namespaces();
        let Some(old) = self.lookup(&namespaces, "", name) else {
            return Arc::new(Value::Null);
        };
        let marked = if meta(&old).is_some_and(|m| m.contains_key("deletionTimestamp")) {
            old
        } else {
            let mut marked = (*old).clone();
            meta_mut(&mut marked).insert("deletionTimestamp".into(), json!(now_rfc3339()));
            marked["status"] = json!({"phase": "Terminating"});
            self.commit(&namespaces, "", name, Some(marked), "MODIFIED")
        };
        let mut contents = Vec::new();
        for rt in self.types.values() {
            if !rt.namespaced {
                continue;
            }
            if let Some(map) = self.objects.get(&rt.storage()) {
                for ((ns, object), _) in map.range((name.to_string(), String::new())..) {
                    if ns != name {
                        break;
                    }
                    contents.push((rt.clone(), object.clone()));
                }
            }
        }
        contents.dedup_by(|a, b| a.0.group == b.0.group && a.0.plural == b.0.plural && a.1 == b.1);
        for (rt, object) in contents {
            self.delete_object(&rt, name, &object, None);
        }
        self.sweep_namespace(name).unwrap_or(marked)
    }

    /// Remove a terminating namespace once it is empty.
    fn sweep_namespace(&mut self, name: &str) -> Option<Arc<Value>> {
        let namespaces = discovery::namespaces();
        let namespace = self.lookup(&namespaces, "", name)?;
        if !meta(&namespace).is_some_and(|m| m.contains_key("deletionTimestamp")) {
            return None;
        }
        let empty = self.objects.iter().all(|((g, p), map)| {
            (g.is_empty() && p == "namespaces")
                || map
                    .range((name.to_string(), String::new())..)
                    .next()
                    .is_none_or(|((ns, _), _)| ns != name)
        });
        empty.then(|| self.commit(&namespaces, "", name, None, "DELETED"))
    }

    /// Delete for real, then collect the garbage: dependents whose owners are all gone,
    /// the objects of a deleted CRD, an emptied terminating namespace.
    fn remove_now(&mut self, rt: &ResourceType, ns: &str, name: &str) -> Arc<Value> {
        let gone = self.commit(rt, ns, name, None, "DELETED");
        if let Some(uid) = meta_str(&gone, "uid") {
            let keys: Vec<ObjKey> = self
                .dependents
                .get(uid)
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            for (group, plural, dns, dname) in keys {
                let Some(drt) = self.any_version(&group, &plural) else {
                    continue;
                };
                let Some(dependent) = self.lookup(&drt, &dns, &dname) else {
                    continue;
                };
                let alive = owner_uids(&dependent)
                    .iter()
                    .any(|o| self.uids.contains_key(o));
                if !alive {
                    self.delete_object(&drt, &dns, &dname, None);
                }
            }
        }
        if rt.kind == "CustomResourceDefinition" {
            let group = gone["spec"]["group"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let plural = gone["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if let Some(crt) = self.any_version(&group, &plural) {
                for object in self.snapshot(&crt, None) {
                    let ons = meta_str(&object, "namespace")
                        .unwrap_or_default()
                        .to_string();
                    let oname = meta_str(&object, "name").unwrap_or_default().to_string();
                    self.commit(&crt, &ons, &oname, None, "DELETED");
                }
            }
            self.types
                .retain(|(g, _, p), _| !(g == &group && p == &plural));
            self.objects.remove(&(group, plural));
        }
        if rt.namespaced {
            self.sweep_namespace(ns);
        }
        gone
    }

    /// DELETE of a collection: every object matching `keep`.
    pub fn delete_collection(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        keep: impl Fn(&Value) -> bool,
        options: &DeleteOptions,
    ) -> Vec<Value> {
        let mut deleted = Vec::new();
        for object in self.snapshot(rt, ns) {
            if !keep(&object) {
                continue;
            }
            let ons = meta_str(&object, "namespace")
                .unwrap_or_default()
                .to_string();
            let oname = meta_str(&object, "name").unwrap_or_default().to_string();
            if options.dry_run {
                deleted.push((*object).clone());
            } else {
                deleted.push(
                    (*self.delete_object(rt, &ons, &oname, options.propagation.as_deref())).clone(),
                );
            }
        }
        deleted
    }
}

/// Fill in or check `apiVersion` and `kind`.
fn check_type(rt: &ResourceType, object: &mut Value) -> Result<(), ApiError> {
    let api_version = rt.api_version();
    let map = object.as_object_mut().expect("checked to be an object");
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != api_version => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({given}) does not match the expected API version ({api_version})"
            )));
        }
        _ => {
            map.insert("apiVersion".into(), json!(api_version));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != rt.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({given}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        _ => {
            map.insert("kind".into(), json!(rt.kind));
        }
    }
    Ok(())
}

/// What an applier may set through this endpoint: no status on the main resource of a kind
/// with a status subresource, only status through `/status`.
fn scope_applied(rt: &ResourceType, sub: &str, applied: &mut Value) {
    let Some(map) = applied.as_object_mut() else {
        return;
    };
    if sub == "status" {
        map.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
        if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.retain(|k, _| matches!(k.as_str(), "name" | "namespace"));
        }
    } else if rt.status {
        map.remove("status");
    }
}

fn apply_conflict(rt: &ResourceType, name: &str, conflicts: &[(String, String)]) -> ApiError {
    let listed: Vec<String> = conflicts
        .iter()
        .map(|(manager, field)| format!("conflict with \"{manager}\": {field}"))
        .collect();
    let message = if listed.len() == 1 {
        format!("Apply failed with 1 conflict: {}", listed[0])
    } else {
        format!(
            "Apply failed with {} conflicts: {}",
            listed.len(),
            listed.join("\n")
        )
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(manager, field)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{manager}\""), "field": field})
        })
        .collect();
    ApiError {
        details: Some(
            json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": causes}),
        ),
        ..ApiError::new(409, "Conflict", message)
    }
}

fn admit(
    rt: &ResourceType,
    name: &str,
    object: &Value,
    old: Option<&Value>,
) -> Result<Value, ApiError> {
    match stellaops_crds::validation::admit_update(object, old) {
        Ok((admitted, _)) => {
            let mut admitted = admitted;
            // Keep the server's metadata and the status exactly as they were.
            if let Some(metadata) = object.get("metadata") {
                admitted["metadata"] = metadata.clone();
            }
            match object.get("status") {
                Some(status) => admitted["status"] = status.clone(),
                None => {
                    if let Some(map) = admitted.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            Ok(admitted)
        }
        Err(errors) => Err(ApiError::invalid(
            rt,
            name,
            errors.into_iter().map(|e| (e.path, e.message)).collect(),
        )),
    }
}

/// The few defaults of built-in kinds that clients of this project look at.
fn defaults_on_create(rt: &ResourceType, object: &mut Value, uid: &str) {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            let name = meta_str(object, "name").unwrap_or_default().to_string();
            let labels = meta_mut(object)
                .entry("labels")
                .or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            if !object["spec"]["finalizers"].is_array() {
                object["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            object["status"] = json!({"phase": "Active"});
        }
        ("", "Pod") => {
            object["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        ("batch", "Job") => {
            let name = meta_str(object, "name").unwrap_or_default().to_string();
            let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
                return;
            };
            spec.entry("parallelism").or_insert(json!(1));
            spec.entry("completions").or_insert(json!(1));
            spec.entry("backoffLimit").or_insert(json!(6));
            spec.entry("suspend").or_insert(json!(false));
            spec.entry("completionMode").or_insert(json!("NonIndexed"));
            if spec.get("manualSelector").and_then(Value::as_bool) != Some(true) {
                let labels = json!({
                    "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                    "controller-uid": uid, "job-name": name,
                });
                spec.insert(
                    "selector".into(),
                    json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
                );
                let template = spec.entry("template").or_insert(json!({}));
                if !template["metadata"].is_object() {
                    template["metadata"] = json!({});
                }
                if !template["metadata"]["labels"].is_object() {
                    template["metadata"]["labels"] = json!({});
                }
                if let (Some(target), Some(labels)) = (
                    template["metadata"]["labels"].as_object_mut(),
                    labels.as_object(),
                ) {
                    for (k, v) in labels {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => {}
    }
}
