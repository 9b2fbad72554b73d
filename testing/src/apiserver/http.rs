//! Requests: authentication, the request-info resolver, authorization, and the verbs.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::discovery;
use super::patch::PatchBody;
use super::select::{FieldSelector, LabelSelector};
use super::store::{ApiError, AuditEntry, Change, DeleteOptions, ResourceType, Store};
use super::table;
use crate::rbac::{RequestAttributes, UserInfo};

/// Where `SubjectAccessReview`s are created.
const SAR_PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
/// Largest request body, as the real server's limit.
const MAX_BODY: usize = 3 * 1024 * 1024;
/// Longest watch when the client gives no `timeoutSeconds`.
const DEFAULT_WATCH: Duration = Duration::from_secs(1800);
/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// State shared by every connection.
pub(crate) struct Shared {
    store: Mutex<Store>,
    authorize: bool,
    pub admin_token: String,
    pub sa_prefix: String,
    audit: Mutex<Vec<AuditEntry>>,
    traffic: Mutex<super::Traffic>,
    address: String,
}

/// What a resource request names, as the API server's RequestInfo resolver reads it.
struct Target {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    name: Option<String>,
    sub: String,
    watch: bool,
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    bytes_response(code, serde_json::to_vec(value).expect("JSON serializes"))
}

fn bytes_response(code: u16, bytes: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)).boxed())
        .expect("valid response")
}

fn error_response(error: &ApiError) -> Response<Body> {
    json_response(error.code, &error.to_status())
}

fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .map(|q| {
            q.split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                .map(|(k, v)| (crate::percent_decode(k), crate::percent_decode(v)))
                .collect()
        })
        .unwrap_or_default()
}

fn k8s_verb(method: &Method, has_name: bool, watch: bool) -> &'static str {
    match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if has_name => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if has_name => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

impl Shared {
    pub fn new(
        store: Store,
        authorize: bool,
        admin_token: String,
        sa_prefix: String,
        address: std::net::SocketAddr,
    ) -> Shared {
        Shared {
            store: Mutex::new(store),
            authorize,
            admin_token,
            sa_prefix,
            audit: Mutex::new(Vec::new()),
            traffic: Mutex::new(super::Traffic::default()),
            address: address.to_string(),
        }
    }

    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.store.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn audit_log(&self) -> Vec<AuditEntry> {
        self.audit.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn traffic(&self) -> super::Traffic {
        self.traffic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record(&self, user: &str, verb: &str, path: &str, status: u16) {
        self.audit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(AuditEntry {
                user: user.into(),
                verb: verb.into(),
                path: path.into(),
                status,
            });
    }

    fn authenticate(&self, request: &Request<Incoming>) -> Option<UserInfo> {
        let header = request
            .headers()
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let token = header.strip_prefix("Bearer ")?.trim();
        if token == self.admin_token {
            return Some(UserInfo {
                name: "admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            });
        }
        let encoded = token.strip_prefix(&self.sa_prefix)?.strip_prefix('.')?;
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (namespace, name) = decoded.split_once('/')?;
        Some(UserInfo {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        })
    }

    /// Serve one request and record it in the audit log.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let path_and_query = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| request.uri().path().to_string());
        let Some(user) = self.authenticate(&request) else {
            let response = error_response(&ApiError::new(401, "Unauthorized", "Unauthorized"));
            self.record("-", "", &path_and_query, 401);
            return response;
        };
        let query = parse_query(request.uri().query());
        let path = request.uri().path().to_string();
        if request.method() == Method::POST && path.trim_end_matches('/') == SAR_PATH {
            let attributes = RequestAttributes {
                verb: "create".into(),
                api_group: "authorization.k8s.io".into(),
                resource: "subjectaccessreviews".into(),
                subresource: String::new(),
                namespace: None,
                name: None,
                non_resource_path: None,
            };
            let response = match self.check(&user, &attributes) {
                Err(e) => error_response(&e),
                Ok(()) => self.subject_access_review(request).await,
            };
            self.record(
                &user.name,
                "create",
                &path_and_query,
                response.status().as_u16(),
            );
            return response;
        }
        let (verb, response) = match self.resolve(&path, &query) {
            Resolved::NonResource => {
                let verb = k8s_verb(request.method(), true, false).to_string();
                let response = match self.check(&user, &nonresource_attributes(&verb, &path)) {
                    Err(e) => error_response(&e),
                    Ok(()) => self.non_resource(&path, &request),
                };
                (verb, response)
            }
            Resolved::NotFound => ("get".to_string(), error_response(&page_not_found())),
            Resolved::Resource(target) => {
                let verb = k8s_verb(request.method(), target.name.is_some(), target.watch);
                let mut attributes = resource_attributes(verb, &target);
                // As the API server's request-info resolver: a list or watch selecting one
                // name by field is authorized as a request for that name (so `resourceNames`
                // rules allow watching one object).
                if attributes.name.is_none() && matches!(verb, "list" | "watch") {
                    attributes.name = query.get("fieldSelector").and_then(|f| {
                        let (field, value) = f.split_once("==").or_else(|| f.split_once('='))?;
                        (field == "metadata.name" && !value.contains(','))
                            .then(|| value.to_string())
                    });
                }
                let response = match self.check(&user, &attributes) {
                    Err(e) => error_response(&e),
                    Ok(()) => self.clone().resource(request, target, query, &user).await,
                };
                (verb.to_string(), response)
            }
        };
        {
            use hyper::body::Body as _;
            let mut traffic = self.traffic.lock().unwrap_or_else(|e| e.into_inner());
            *traffic.requests.entry(verb.clone()).or_insert(0) += 1;
            // Watch responses stream (no exact size): their bytes are not counted.
            traffic.response_bytes += response.body().size_hint().exact().unwrap_or(0);
        }
        self.record(
            &user.name,
            &verb,
            &path_and_query,
            response.status().as_u16(),
        );
        response
    }

    /// Answer a `SubjectAccessReview` (what an extension API server asks for each request)
    /// by the RBAC objects stored here, as the API server's RBAC authorizer would.
    async fn subject_access_review(&self, request: Request<Incoming>) -> Response<Body> {
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return error_response(&ApiError::bad_request("body too large")),
        };
        let mut review = match parse_json(&body) {
            Ok(review) => review,
            Err(e) => return error_response(&e),
        };
        let spec = &review["spec"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let user = UserInfo {
            name: text(&spec["user"]),
            groups: spec["groups"]
                .as_array()
                .map(|g| g.iter().map(text).collect())
                .unwrap_or_default(),
        };
        let attributes = if let Some(r) = spec.get("resourceAttributes") {
            RequestAttributes {
                verb: text(&r["verb"]),
                api_group: text(&r["group"]),
                resource: text(&r["resource"]),
                subresource: text(&r["subresource"]),
                namespace: r["namespace"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .map(Into::into),
                name: r["name"].as_str().filter(|n| !n.is_empty()).map(Into::into),
                non_resource_path: None,
            }
        } else {
            let n = &spec["nonResourceAttributes"];
            nonresource_attributes(&text(&n["verb"]), &text(&n["path"]))
        };
        let decision = crate::rbac::authorize(&user, &attributes, &self.rbac_objects());
        review["status"] = match decision {
            Ok(()) => json!({"allowed": true, "reason": "allowed by the emulator's RBAC"}),
            // As the RBAC authorizer answers a review: no reason, or only what it found
            // wrong with the bindings.
            Err(reason) => json!({"allowed": false, "reason": reason
                .split_once(": RBAC: ")
                .map(|(_, rbac)| format!("RBAC: {rbac}"))
                .unwrap_or_default()}),
        };
        review["metadata"] = json!({"creationTimestamp": null});
        json_response(201, &review)
    }

    fn rbac_objects(&self) -> Vec<Value> {
        self.with_store(|store| {
            let mut objects = Vec::new();
            for plural in [
                "roles",
                "clusterroles",
                "rolebindings",
                "clusterrolebindings",
            ] {
                if let Some(rt) = store.resource("rbac.authorization.k8s.io", "v1", plural) {
                    objects.extend(store.snapshot(&rt, None).into_iter().map(|o| (*o).clone()));
                }
            }
            objects
        })
    }

    fn check(&self, user: &UserInfo, attributes: &RequestAttributes) -> Result<(), ApiError> {
        if !self.authorize || user.groups.iter().any(|g| g == "system:masters") {
            return Ok(());
        }
        crate::rbac::authorize(user, attributes, &self.rbac_objects())
            .map_err(|reason| forbidden(user, attributes, &reason))
    }

    fn resolve(&self, path: &str, query: &BTreeMap<String, String>) -> Resolved {
        let parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
            .collect();
        let (group, version, rest) = match parts.as_slice() {
            ["api", "v1", rest @ ..] if !rest.is_empty() => ("", "v1", rest),
            ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
            _ => return Resolved::NonResource,
        };
        let (watch_prefix, rest) = match rest {
            ["watch", rest @ ..] => (true, rest),
            rest => (false, rest),
        };
        let (namespace, rest): (Option<String>, &[&str]) = match rest {
            ["namespaces", ns, sub] if matches!(*sub, "status" | "finalize") => {
                (Some(ns.to_string()), rest)
            }
            ["namespaces", ns, more @ ..] if !more.is_empty() => (Some(ns.to_string()), more),
            rest => (None, rest),
        };
        let (plural, name, sub) = match rest {
            [plural] => (*plural, None, ""),
            [plural, name] => (*plural, Some(name.to_string()), ""),
            [plural, name, sub] => (*plural, Some(name.to_string()), *sub),
            _ => return Resolved::NotFound,
        };
        let Some(rt) = self.with_store(|store| store.resource(group, version, plural)) else {
            return Resolved::NotFound;
        };
        let namespace = if rt.namespaced { namespace } else { None };
        let watch =
            watch_prefix || matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
        Resolved::Resource(Target {
            rt,
            namespace,
            name,
            sub: sub.to_string(),
            watch,
        })
    }

    fn non_resource(&self, path: &str, request: &Request<Incoming>) -> Response<Body> {
        let trimmed = path.trim_end_matches('/');
        let parts: Vec<&str> = trimmed.trim_start_matches('/').split('/').collect();
        let found = self.with_store(|store| match parts.as_slice() {
            ["version"] => Some(discovery::version()),
            ["api"] => Some(discovery::api_versions(&self.address)),
            ["api", version] => discovery::resource_list(store.types(), "", version),
            ["apis"] => Some(discovery::group_list(store.types())),
            ["apis", group] => discovery::group(store.types(), group),
            ["apis", group, version] => discovery::resource_list(store.types(), group, version),
            ["openapi", "v3"] => Some(discovery::openapi_index(store.types())),
            ["openapi", "v3", rest @ ..] => {
                discovery::openapi_group_version(store.types(), &rest.join("/"))
            }
            ["healthz" | "livez" | "readyz"] => Some(Value::Null),
            _ => None,
        });
        match found {
            Some(Value::Null) => Response::builder()
                .status(200)
                .header(http::header::CONTENT_TYPE, "text/plain")
                .body(Full::new(Bytes::from_static(b"ok")).boxed())
                .expect("valid response"),
            Some(doc) => json_response(200, &doc),
            None => {
                let _ = request;
                error_response(&page_not_found())
            }
        }
    }

    async fn resource(
        self: Arc<Self>,
        request: Request<Incoming>,
        target: Target,
        query: BTreeMap<String, String>,
        user: &UserInfo,
    ) -> Response<Body> {
        let method = request.method().clone();
        let accept = request
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let agent = request
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .filter(|ua| !ua.is_empty())
            .unwrap_or("unknown")
            .to_string();
        let manager = query.get("fieldManager").cloned().unwrap_or(agent);
        let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
        let body = if matches!(
            method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        ) {
            match Limited::new(request.into_body(), MAX_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return error_response(&ApiError::new(
                        413,
                        "RequestEntityTooLarge",
                        "Request entity too large: limit is 3145728",
                    ));
                }
            }
        } else {
            Bytes::new()
        };
        let rt = target.rt.clone();
        let ns = target.namespace.clone().unwrap_or_default();
        if rt.namespaced
            && target.namespace.is_none()
            && !matches!(method, Method::GET | Method::HEAD)
        {
            return error_response(&page_not_found());
        }
        let table = accept.contains("as=Table");
        let result: Result<(u16, Value), ApiError> = match (&method, &target.name) {
            (&Method::GET | &Method::HEAD, _) if target.watch => {
                return match selectors(&query) {
                    Ok((labels, fields)) => self.watch(target, labels, fields, &query),
                    Err(e) => error_response(&e),
                };
            }
            (&Method::GET | &Method::HEAD, Some(name)) => self
                .with_store(|store| store.get(&rt, &ns, name))
                .map(|object| {
                    if table {
                        let meta =
                            json!({"resourceVersion": object["metadata"]["resourceVersion"]});
                        (
                            200,
                            table::table(
                                &rt,
                                &[object],
                                query
                                    .get("includeObject")
                                    .map_or("Metadata", String::as_str),
                                meta,
                            ),
                        )
                    } else {
                        (200, (*object).clone())
                    }
                }),
            (&Method::GET | &Method::HEAD, None) => {
                return match self.list(&target, &query, table) {
                    Ok(response) => response,
                    Err(e) => error_response(&e),
                };
            }
            (&Method::POST, None) => parse_json(&body).and_then(|object| {
                self.with_store(|store| {
                    store.create(
                        &rt,
                        &ns,
                        object,
                        super::store::Op::Update(&manager),
                        dry_run,
                    )
                })
                .map(|created| (201, created))
            }),
            (&Method::PUT, Some(name)) => parse_json(&body).and_then(|object| {
                self.with_store(|store| {
                    store.update(&rt, &ns, name, &target.sub, object, &manager, dry_run)
                })
                .map(|updated| (200, updated))
            }),
            (&Method::PATCH, Some(name)) => {
                let force = query.get("force").is_some_and(|v| v == "true");
                match patch_body(&content_type, &body, query.contains_key("fieldManager")) {
                    Ok(patch) => self.with_store(|store| {
                        store.patch(&rt, &ns, name, &target.sub, patch, &manager, force, dry_run)
                    }),
                    Err(e) => Err(e),
                }
            }
            (&Method::DELETE, Some(name)) => {
                let options = delete_options(&body, &query);
                self.with_store(|store| store.delete(&rt, &ns, name, &options))
                    .map(|deleted| (200, deleted))
            }
            (&Method::DELETE, None) => {
                let options = delete_options(&body, &query);
                selectors(&query).map(|(labels, fields)| {
                    let deleted = self.with_store(|store| {
                        store.delete_collection(&rt, target.namespace.as_deref(), |o| labels.matches(o) && fields.matches(o), &options)
                    });
                    (200, json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {}, "items": deleted}))
                })
            }
            _ => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!(
                    "the server does not allow this method on the requested resource ({} {})",
                    method,
                    rt.group_resource()
                ),
            )),
        };
        let _ = user;
        match result {
            Ok((code, value)) => json_response(code, &value),
            Err(e) => error_response(&e),
        }
    }

    fn list(
        &self,
        target: &Target,
        query: &BTreeMap<String, String>,
        table: bool,
    ) -> Result<Response<Body>, ApiError> {
        let (labels, fields) = selectors(query)?;
        let limit: usize = query
            .get("limit")
            .and_then(|l| l.parse().ok())
            .filter(|l| *l > 0)
            .unwrap_or(usize::MAX);
        let after = match query.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => Some(decode_continue(token).ok_or_else(|| {
                ApiError::new(
                    400,
                    "BadRequest",
                    "continue key is not valid: illegal base64 data",
                )
            })?),
            None => None,
        };
        let after_key = after
            .as_ref()
            .map(|(_, ns, name)| (ns.as_str(), name.as_str()));
        let selected = (!labels.is_empty() || !fields.is_empty())
            .then_some(|o: &Value| labels.matches(o) && fields.matches(o));
        let (current_rv, (matched, more, remaining)) = self.with_store(|store| {
            let namespace = target.namespace.as_deref();
            let page = store.page(&target.rt, namespace, after_key, limit, selected);
            (store.current_rv(), page)
        });
        let rv = after.as_ref().map_or(current_rv, |(rv, _, _)| *rv);
        let mut list_meta = json!({"resourceVersion": rv.to_string()});
        if more {
            let (ns, name) = object_key(matched.last().expect("a page with more after it"));
            let token = base64::engine::general_purpose::STANDARD.encode(
                serde_json::to_vec(&json!({"rv": rv, "ns": ns, "name": name})).expect("JSON"),
            );
            list_meta["continue"] = json!(token);
            if let Some(remaining) = remaining {
                list_meta["remainingItemCount"] = json!(remaining);
            }
        }
        if table {
            let include = query
                .get("includeObject")
                .map_or("Metadata", String::as_str);
            return Ok(json_response(
                200,
                &table::table(&target.rt, &matched, include, list_meta),
            ));
        }
        // Written item by item: a list of thousands of objects is never cloned whole.
        let mut out = Vec::with_capacity(256 * matched.len() + 256);
        out.extend_from_slice(b"{\"kind\":");
        serde_json::to_writer(&mut out, &format!("{}List", target.rt.kind)).expect("JSON");
        out.extend_from_slice(b",\"apiVersion\":");
        serde_json::to_writer(&mut out, &target.rt.api_version()).expect("JSON");
        out.extend_from_slice(b",\"metadata\":");
        serde_json::to_writer(&mut out, &list_meta).expect("JSON");
        out.extend_from_slice(b",\"items\":[");
        for (i, object) in matched.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, &**object).expect("JSON");
        }
        out.extend_from_slice(b"]}");
        Ok(bytes_response(200, out))
    }

    fn watch(
        &self,
        target: Target,
        labels: LabelSelector,
        fields: FieldSelector,
        query: &BTreeMap<String, String>,
    ) -> Response<Body> {
        let rt = target.rt.clone();
        let filter = WatchFilter {
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            namespace: target.namespace.clone(),
            name: target
                .name
                .clone()
                .or_else(|| fields.name().map(str::to_string)),
            labels,
            fields,
        };
        let requested: Option<u64> = query
            .get("resourceVersion")
            .filter(|rv| !rv.is_empty() && rv.as_str() != "0")
            .map(|rv| rv.parse().unwrap_or(0));
        let send_initial = query.get("sendInitialEvents").is_some_and(|v| v == "true");
        let bookmarks = query
            .get("allowWatchBookmarks")
            .is_some_and(|v| v == "true");
        let timeout = query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_WATCH);
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        let mut first: Vec<Bytes> = Vec::new();
        let (subscription, start_rv) = self.with_store(|store| {
            let current = store.current_rv();
            match requested {
                Some(rv) if rv < store.floor() => {
                    let status = ApiError::new(410, "Expired", format!("too old resource version: {rv} ({})", store.floor()));
                    first.push(event_line("ERROR", &status.to_status()));
                    (None, current)
                }
                Some(rv) if !send_initial => {
                    for change in store.history_after(rv) {
                        if filter.matches(&change) {
                            first.push(event_line(change.event, &change.object));
                        }
                    }
                    (Some(store.subscribe()), current)
                }
                _ => {
                    for object in store.snapshot(&rt, filter.namespace.as_deref()) {
                        if filter.matches_object(&object) {
                            first.push(event_line("ADDED", &object));
                        }
                    }
                    if send_initial {
                        first.push(event_line("BOOKMARK", &json!({
                            "kind": rt.kind, "apiVersion": rt.api_version(),
                            "metadata": {"resourceVersion": current.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}},
                        })));
                    }
                    (Some(store.subscribe()), current)
                }
            }
        });
        let kind = (rt.kind.clone(), rt.api_version());
        tokio::spawn(async move {
            for line in first {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
            if let Some(events) = subscription {
                pump(
                    tx,
                    events,
                    filter,
                    timeout,
                    bookmarks.then_some(kind),
                    start_rv,
                )
                .await;
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), rx))
        });
        Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(StreamBody::new(stream).boxed())
            .expect("valid response")
    }
}

enum Resolved {
    NonResource,
    NotFound,
    Resource(Target),
}

struct WatchFilter {
    group: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, change: &Change) -> bool {
        change.group == self.group
            && change.plural == self.plural
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == change.namespace)
            && self.matches_object(&change.object)
    }

    fn matches_object(&self, object: &Value) -> bool {
        self.name
            .as_ref()
            .is_none_or(|name| object["metadata"]["name"].as_str() == Some(name.as_str()))
            && self.labels.matches(object)
            && self.fields.matches(object)
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    serde_json::to_writer(&mut out, object).expect("JSON");
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

/// Forward matching changes until the client leaves, the timeout passes, or the watcher
/// falls too far behind (then it gets 410 and relists, as from a real server).
async fn pump(
    tx: mpsc::Sender<Bytes>,
    mut events: broadcast::Receiver<Arc<Change>>,
    filter: WatchFilter,
    timeout: Duration,
    bookmark: Option<(String, String)>,
    start_rv: u64,
) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
    ticker.tick().await;
    let mut last_rv = start_rv;
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            _ = tx.closed() => return,
            _ = ticker.tick(), if bookmark.is_some() => {
                let (kind, api_version) = bookmark.as_ref().expect("checked");
                let line = event_line("BOOKMARK", &json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last_rv.to_string()}}));
                if tx.send(line).await.is_err() {
                    return;
                }
            }
            received = events.recv() => match received {
                Ok(change) => {
                    if change.rv <= last_rv {
                        continue;
                    }
                    last_rv = change.rv;
                    if filter.matches(&change) && tx.send(event_line(change.event, &change.object)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let status = ApiError::new(410, "Expired", "the watcher fell behind; relist");
                    let _ = tx.send(event_line("ERROR", &status.to_status())).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

fn object_key(object: &Value) -> (&str, &str) {
    (
        object["metadata"]["namespace"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default(),
    )
}

fn decode_continue(token: &str) -> Option<(u64, String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    Some((
        value["rv"].as_u64()?,
        value["ns"].as_str()?.to_string(),
        value["name"].as_str()?.to_string(),
    ))
}

fn selectors(query: &BTreeMap<String, String>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request was in an unknown format: {e}"
        ))
    })
}

fn patch_body(content_type: &str, body: &[u8], has_manager: bool) -> Result<PatchBody, ApiError> {
    match content_type {
        "application/merge-patch+json" => parse_json(body).map(PatchBody::Merge),
        "application/strategic-merge-patch+json" => parse_json(body).map(PatchBody::Strategic),
        "application/json-patch+json" => serde_json::from_slice(body)
            .map(PatchBody::Json)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}"))),
        "application/apply-patch+yaml" => {
            if !has_manager {
                return Err(ApiError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            serde_yaml::from_slice::<Value>(body)
                .map(PatchBody::Apply)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        }
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
            ),
        )),
    }
}

fn delete_options(body: &[u8], query: &BTreeMap<String, String>) -> DeleteOptions {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().map(str::to_string);
    DeleteOptions {
        propagation: query
            .get("propagationPolicy")
            .cloned()
            .or_else(|| text(&parsed["propagationPolicy"]))
            .or_else(|| {
                parsed["orphanDependents"]
                    .as_bool()
                    .filter(|o| *o)
                    .map(|_| "Orphan".to_string())
            }),
        precondition_uid: text(&parsed["preconditions"]["uid"]),
        precondition_rv: text(&parsed["preconditions"]["resourceVersion"]),
        dry_run: query.get("dryRun").is_some_and(|v| v == "All")
            || parsed["dryRun"]
                .as_array()
                .is_some_and(|d| d.iter().any(|v| v == "All")),
    }
}

fn page_not_found() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn nonresource_attributes(verb: &str, path: &str) -> RequestAttributes {
    RequestAttributes {
        verb: verb.to_string(),
        api_group: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: None,
        name: None,
        non_resource_path: Some(path.to_string()),
    }
}

fn resource_attributes(verb: &str, target: &Target) -> RequestAttributes {
    RequestAttributes {
        verb: verb.to_string(),
        api_group: target.rt.group.clone(),
        resource: target.rt.plural.clone(),
        subresource: target.sub.clone(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        non_resource_path: None,
    }
}

/// 403 in the API server's words.
fn forbidden(user: &UserInfo, attributes: &RequestAttributes, reason: &str) -> ApiError {
    if let Some(path) = &attributes.non_resource_path {
        let message = format!(
            "forbidden: User \"{}\" cannot {} path \"{path}\"",
            user.name, attributes.verb
        );
        return ApiError::new(403, "Forbidden", with_reason(message, reason));
    }
    let group_resource = if attributes.api_group.is_empty() {
        attributes.resource.clone()
    } else {
        format!("{}.{}", attributes.resource, attributes.api_group)
    };
    let subject = match &attributes.name {
        Some(name) => format!("{group_resource} \"{name}\""),
        None => group_resource,
    };
    let resource = if attributes.subresource.is_empty() {
        attributes.resource.clone()
    } else {
        format!("{}/{}", attributes.resource, attributes.subresource)
    };
    let scope = match &attributes.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let message = format!(
        "{subject} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        user.name, attributes.verb, attributes.api_group
    );
    ApiError {
        details: Some(
            json!({"name": attributes.name.clone().unwrap_or_default(), "group": attributes.api_group, "kind": attributes.resource}),
        ),
        ..ApiError::new(403, "Forbidden", with_reason(message, reason))
    }
}

fn with_reason(message: String, reason: &str) -> String {
    if reason.is_empty() || reason.contains(" is forbidden: ") || reason.starts_with("forbidden: ")
    {
        if reason.is_empty() {
            message
        } else {
            reason.to_string()
        }
    } else {
        format!("{message}: {reason}")
    }
}
