//! The HTTPS server: authentication, authorization, then GET, LIST (selectors, pages,
//! Tables), discovery and OpenAPI, every error a `Status`. Read-only: anything but GET is
//! 405, request bodies are never read, every request has a deadline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, Uri};
use serde_json::{Value, json};
use sqlx::PgPool;
use stellaops_store::reports::{self as store, ResultRow, ScanQuery};
use stellaops_store::running_images;

use crate::auth::{Authenticator, Peer};
use crate::authz::{Attributes, Authorizer, Decision};
use crate::kinds::{self, Kind, ScanRef, WorkloadRef};
use crate::selector::{self, FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::token::{Continue, TokenError};
use crate::{GROUP, VERSION, discovery, table};

/// Bounds and timings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Deadline of one request (authorization and reads together).
    pub request_timeout: Duration,
    /// Age after which a continue token is refused with 410 Gone.
    pub continue_ttl_seconds: i64,
    /// Most items of one JSON LIST page (objects carry their findings); a larger or no
    /// `limit` gets this many and a continue token. Tables are not bounded.
    pub max_page_items: usize,
    /// Most findings in one report (then `findingsTruncated`).
    pub max_findings: i64,
    /// Most components in one SBOM report (then `componentsTruncated`).
    pub max_components: i64,
    /// Most Scans listed in one image verdict.
    pub max_scans_per_verdict: i64,
    /// Largest SBOM document served.
    pub max_document_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            request_timeout: Duration::from_secs(30),
            continue_ttl_seconds: 900,
            max_page_items: 500,
            max_findings: 2000,
            max_components: 5000,
            max_scans_per_verdict: 100,
            max_document_bytes: 64 << 20,
        }
    }
}

/// The server's state.
pub struct Reports {
    /// Bounds and timings.
    pub settings: Settings,
    /// The platform database (a pool that fails fast, with a statement timeout). Without
    /// one the server still answers discovery (so the cluster's API discovery and namespace
    /// deletion never wait on it) and says 503 for the rest.
    pub pool: Option<PgPool>,
    /// Object storage for SBOM documents (none: the `document` subresource is 503).
    pub s3: Option<aws_sdk_s3::Client>,
    /// Who the client is.
    pub authenticator: Arc<Authenticator>,
    /// What they may read.
    pub authorizer: Authorizer,
    /// The serving certificate.
    pub certificate: Arc<stellaops_tls::ReloadableCert>,
    /// Wakes watches (`Hub::new(max_watches)`).
    pub hub: crate::watch::Hub,
}

/// A parsed LIST query.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// `limit` (0: none).
    pub limit: usize,
    /// `continue`.
    pub token: Option<Continue>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

/// Parse the query of a LIST. `now` (Unix seconds) and `ttl` judge the continue token.
pub fn parse_list_query(
    query: &BTreeMap<String, String>,
    now: i64,
    ttl: i64,
) -> Result<ListQuery, ApiError> {
    let limit = match query.get("limit").map(String::as_str) {
        None | Some("") => 0,
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("limit: {text:?} is not a number")))?
            .max(0) as usize,
    };
    let token = match query.get("continue").map(String::as_str) {
        None | Some("") => None,
        Some(text) => Some(Continue::decode(text, now, ttl).map_err(|e| match e {
            TokenError::Expired => ApiError::new(410, "Expired", e.to_string()),
            TokenError::Invalid(_) => ApiError::bad_request(e.to_string()),
        })?),
    };
    let labels = selector::parse_labels(query.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = selector::parse_fields(query.get("fieldSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    Ok(ListQuery {
        limit,
        token,
        labels,
        fields,
    })
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A discovery or OpenAPI document.
    Document(Value),
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// A resource request.
    Resource {
        /// The kind.
        kind: Kind,
        /// Namespace in the path.
        namespace: Option<String>,
        /// Name in the path.
        name: Option<String>,
        /// Subresource in the path.
        subresource: String,
        /// `/watch/` prefix or `?watch=true`.
        watch: bool,
    },
}

/// Resolve `path` (query already parsed) to a route.
pub fn route(path: &str, query: &BTreeMap<String, String>) -> Result<Route, ApiError> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let document = |v: Value| Ok(Route::Document(v));
    match parts.as_slice() {
        ["healthz" | "livez" | "readyz"] => return Ok(Route::Health),
        ["api"] => return document(discovery::core_versions()),
        ["apis"] => return document(discovery::group_list()),
        ["apis", g] if *g == GROUP => return document(discovery::api_group()),
        ["apis", g, v] if *g == GROUP && *v == VERSION => {
            return document(discovery::resource_list());
        }
        ["version"] => return document(discovery::version()),
        ["openapi", "v2"] => return document(discovery::openapi_v2()),
        ["openapi", "v3"] => return document(discovery::openapi_v3_index(&openapi_hash())),
        ["openapi", "v3", rest @ ..] if rest.join("/") == discovery::openapi_v3_path() => {
            return document(discovery::openapi_v3());
        }
        _ => {}
    }
    let rest = match parts.as_slice() {
        ["apis", g, v, rest @ ..] if *g == GROUP && *v == VERSION && !rest.is_empty() => rest,
        _ => return Err(ApiError::page_not_found()),
    };
    let (watch_prefix, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, more @ ..] if !more.is_empty() => (Some(ns.to_string()), more),
        rest => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, ""),
        [plural, name] => (*plural, Some(name.to_string()), ""),
        [plural, name, sub] => (*plural, Some(name.to_string()), *sub),
        _ => return Err(ApiError::page_not_found()),
    };
    let kind = Kind::from_plural(plural).ok_or_else(ApiError::page_not_found)?;
    if !kind.namespaced() && namespace.is_some() {
        return Err(ApiError::page_not_found());
    }
    let subresource_ok = match (kind, subresource) {
        (_, "") => true,
        (Kind::SbomReport, "document") => namespace.is_some(),
        _ => false,
    };
    if !subresource_ok {
        return Err(ApiError::page_not_found());
    }
    let watch =
        watch_prefix || matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    Ok(Route::Resource {
        kind,
        namespace,
        name,
        subresource: subresource.to_string(),
        watch,
    })
}

fn openapi_hash() -> String {
    use sha2::Digest as _;
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let doc = serde_json::to_vec(&discovery::openapi_v3()).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(doc))[..32].to_string()
    })
    .clone()
}

fn parse_query(uri: &Uri) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(query) = uri.query() else {
        return Ok(BTreeMap::new());
    };
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .map(|pairs| pairs.into_iter().collect())
        .map_err(|e| ApiError::bad_request(format!("query: {e}")))
}

fn json_response(value: &Value) -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response()
}

/// The routes: one handler for every path (Kubernetes paths, not a route table).
pub fn router(reports: Arc<Reports>) -> Router {
    Router::new().fallback(handle).with_state(reports)
}

async fn handle(
    State(reports): State<Arc<Reports>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let deadline = reports.settings.request_timeout;
    match tokio::time::timeout(deadline, reports.serve(&peer, &method, &uri, &headers)).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => error.into_response(),
        Err(_) => ApiError::new(
            504,
            "Timeout",
            format!("the request did not finish within {deadline:?}"),
        )
        .into_response(),
    }
}

impl Reports {
    /// The database, or 503.
    pub fn pool(&self) -> Result<&PgPool, ApiError> {
        self.pool.as_ref().ok_or_else(|| {
            ApiError::new(
                503,
                "ServiceUnavailable",
                "the reports API has no database: the operator runs without --database-url",
            )
        })
    }

    /// Serve one request.
    pub async fn serve(
        self: &Arc<Self>,
        peer: &Peer,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Response, ApiError> {
        let query = parse_query(uri)?;
        let route = route(uri.path(), &query);
        if route == Ok(Route::Health) {
            return Ok("ok".into_response());
        }
        let user = self.authenticator.authenticate(peer, headers)?;
        if method != Method::GET && method != Method::HEAD {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!(
                    "the server does not allow this method on the requested resource ({method})"
                ),
            ));
        }
        let (kind, namespace, name, subresource, watch) = match route? {
            Route::Health => unreachable!("answered above"),
            // Discovery and OpenAPI: every authenticated user (system:discovery).
            Route::Document(doc) => return Ok(json_response(&doc)),
            Route::Resource {
                kind,
                namespace,
                name,
                subresource,
                watch,
            } => (kind, namespace, name, subresource, watch),
        };
        let verb = match (&name, watch) {
            (_, true) => "watch",
            (Some(_), false) => "get",
            (None, false) => "list",
        };
        let attributes = Attributes {
            verb,
            kind,
            subresource: subresource.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
        };
        if let Decision::Deny(reason) = self.authorizer.authorize(&user, &attributes).await? {
            return Err(attributes.forbidden(&user, &reason));
        }
        let accept = headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let as_table = table::wants_table(accept);
        if watch {
            if !subresource.is_empty() {
                return Err(ApiError::new(
                    405,
                    "MethodNotAllowed",
                    "watch is not supported on a subresource",
                ));
            }
            let list_query = parse_list_query(&query, 0, i64::MAX)?;
            let mut fields = list_query.fields;
            fields.name.extend(name);
            let after = match query.get("resourceVersion").map(String::as_str) {
                None | Some("" | "0") => None,
                Some(text) => Some(text.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "resourceVersion: {text:?} is not one of this server's"
                    ))
                })?),
            };
            let timeout = query
                .get("timeoutSeconds")
                .and_then(|t| t.parse::<u64>().ok())
                .map_or(crate::watch::MAX_WATCH, std::time::Duration::from_secs);
            return self
                .watch(crate::watch::WatchRequest {
                    kind,
                    namespace,
                    labels: list_query.labels,
                    fields,
                    after,
                    as_table,
                    timeout,
                    bookmarks: query
                        .get("allowWatchBookmarks")
                        .is_some_and(|b| b == "true"),
                })
                .await;
        }
        match (name, subresource.as_str()) {
            (Some(name), "document") => {
                let format = query.get("format").map_or("cyclonedx", String::as_str);
                self.document(namespace.as_deref().unwrap_or_default(), &name, format)
                    .await
            }
            (Some(name), _) => {
                let object = self
                    .get(kind, namespace.as_deref(), &name, as_table)
                    .await?;
                Ok(json_response(&object))
            }
            (None, _) => {
                let now = chrono::Utc::now().timestamp();
                let list_query = parse_list_query(&query, now, self.settings.continue_ttl_seconds)?;
                let body = self
                    .list(kind, namespace.as_deref(), &list_query, as_table)
                    .await?;
                Ok(([(http::header::CONTENT_TYPE, "application/json")], body).into_response())
            }
        }
    }

    async fn row_of(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<ResultRow, ApiError> {
        let rows = match kind {
            Kind::ImageVerdict => {
                let digest =
                    kinds::name_to_digest(name).ok_or_else(|| ApiError::not_found(kind, name))?;
                store::latest_per_digest(self.pool()?, i64::MAX, "", Some(&digest), 1).await?
            }
            _ => {
                store::latest_per_scan(
                    self.pool()?,
                    &ScanQuery {
                        version: i64::MAX,
                        namespace,
                        name: Some(name),
                        after: ("", ""),
                        limit: 1,
                    },
                )
                .await?
            }
        };
        rows.into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found(kind, name))
    }

    /// One object (or its one-row Table).
    pub async fn get(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        as_table: bool,
    ) -> Result<Value, ApiError> {
        let row = self.row_of(kind, namespace, name).await?;
        if as_table {
            let meta = json!({"resourceVersion": row.id.to_string()});
            let table = table::table(kind, vec![table::row(kind, &row, chrono::Utc::now())], meta);
            return serde_json::to_value(table).map_err(ApiError::internal);
        }
        let object = match kind {
            Kind::SbomReport => {
                let mut components = store::components(
                    self.pool()?,
                    &row.image_digest,
                    "",
                    self.settings.max_components + 1,
                )
                .await?;
                let truncated = components.len() as i64 > self.settings.max_components;
                components.truncate(self.settings.max_components as usize);
                let mut ecosystems = self.ecosystems(&[&row]).await?;
                let ecosystems = ecosystems.remove(&row.image_digest).unwrap_or_default();
                serde_json::to_value(kinds::sbom_report(
                    &row,
                    ecosystems,
                    Some((&components, truncated)),
                ))
            }
            _ => {
                let mut objects = self.objects(kind, &[row], i64::MAX).await?;
                return Ok(objects.pop().unwrap_or(Value::Null));
            }
        };
        object.map_err(ApiError::internal)
    }

    async fn ecosystems(
        &self,
        rows: &[&ResultRow],
    ) -> Result<BTreeMap<String, BTreeMap<String, i64>>, ApiError> {
        let digests: Vec<&str> = rows.iter().map(|r| r.image_digest.as_str()).collect();
        let mut by_digest: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for (digest, ecosystem, count) in store::ecosystems(self.pool()?, &digests).await? {
            by_digest
                .entry(digest)
                .or_default()
                .insert(ecosystem, count);
        }
        Ok(by_digest)
    }

    /// Full objects of `rows` (as of `version`), with what each kind carries beside the row.
    pub(crate) async fn objects(
        &self,
        kind: Kind,
        rows: &[ResultRow],
        version: i64,
    ) -> Result<Vec<Value>, ApiError> {
        let values: Result<Vec<Value>, serde_json::Error> = match kind {
            Kind::VulnerabilityReport => {
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                let bound = self.settings.max_findings;
                let mut by_id: BTreeMap<i64, Vec<store::FindingRow>> = BTreeMap::new();
                for f in store::findings(self.pool()?, &ids, bound + 1).await? {
                    by_id.entry(f.scan_id).or_default().push(f);
                }
                rows.iter()
                    .map(|row| {
                        let mut findings = by_id.remove(&row.id).unwrap_or_default();
                        let truncated = findings.len() as i64 > bound;
                        findings.truncate(bound as usize);
                        serde_json::to_value(kinds::vulnerability_report(row, &findings, truncated))
                    })
                    .collect()
            }
            Kind::SbomReport => {
                let refs: Vec<&ResultRow> = rows.iter().collect();
                let mut ecosystems = self.ecosystems(&refs).await?;
                rows.iter()
                    .map(|row| {
                        let e = ecosystems.remove(&row.image_digest).unwrap_or_default();
                        serde_json::to_value(kinds::sbom_report(row, e, None))
                    })
                    .collect()
            }
            Kind::ImageVerdict => {
                let digests: Vec<&str> = rows.iter().map(|r| r.image_digest.as_str()).collect();
                let mut scans: BTreeMap<String, Vec<ScanRef>> = BTreeMap::new();
                for (digest, namespace, name) in store::scans_of(
                    self.pool()?,
                    &digests,
                    version,
                    self.settings.max_scans_per_verdict,
                )
                .await?
                {
                    scans
                        .entry(digest)
                        .or_default()
                        .push(ScanRef { namespace, name });
                }
                // Where each digest runs now (not versioned: what runs is not history).
                let bound = self.settings.max_scans_per_verdict;
                let mut running: BTreeMap<String, Vec<WorkloadRef>> = BTreeMap::new();
                for r in running_images::running_of(self.pool()?, &digests, bound + 1).await? {
                    running
                        .entry(r.image_digest)
                        .or_default()
                        .push(WorkloadRef {
                            namespace: r.namespace,
                            kind: r.workload_kind,
                            name: r.workload_name,
                            container: r.container,
                        });
                }
                rows.iter()
                    .map(|row| {
                        let s = scans.remove(&row.image_digest).unwrap_or_default();
                        let mut r = running.remove(&row.image_digest).unwrap_or_default();
                        let truncated = r.len() as i64 > bound;
                        r.truncate(bound as usize);
                        serde_json::to_value(kinds::image_verdict(row, s, (r, truncated)))
                    })
                    .collect()
            }
        };
        values.map_err(ApiError::internal)
    }

    /// The rows of one LIST page (after selection), and the continue token for the next.
    pub async fn page(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        query: &ListQuery,
        cap: usize,
    ) -> Result<(i64, Vec<ResultRow>, Option<Continue>), ApiError> {
        let now = chrono::Utc::now().timestamp();
        let version = match &query.token {
            Some(token) => token.rv,
            None => store::current_version(self.pool()?).await?,
        };
        let issued = query.token.as_ref().map_or(now, |t| t.at);
        let mut rows = Vec::new();
        // A namespace in the path and another in the field selector select nothing.
        let namespace = match (namespace, query.fields.exact_namespace()) {
            (Some(a), Some(b)) if a != b => return Ok((version, rows, None)),
            (Some(a), _) => Some(a),
            (None, b) if kind.namespaced() => b,
            (None, _) => None,
        };
        if !kind.namespaced()
            && query
                .fields
                .exact_namespace()
                .is_some_and(|n| !n.is_empty())
        {
            return Ok((version, rows, None));
        }
        let name = query.fields.exact_name();
        let (mut after_ns, mut after_name) = query
            .token
            .as_ref()
            .map(|t| (t.ns.clone(), t.name.clone()))
            .unwrap_or_default();
        // Few large reads: each is one index scan of the latest rows after the key.
        let batch = (cap.saturating_add(1)).clamp(1, 10_000) as i64;
        let selecting = !query.labels.is_empty() || query.fields != FieldSelector::default();
        loop {
            let fetched = match kind {
                Kind::ImageVerdict => {
                    let digest = match name {
                        Some(n) => match kinds::name_to_digest(n) {
                            Some(d) => Some(d),
                            None => break,
                        },
                        None => None,
                    };
                    let after = kinds::name_to_digest(&after_name).unwrap_or_default();
                    store::latest_per_digest(
                        self.pool()?,
                        version,
                        &after,
                        digest.as_deref(),
                        batch,
                    )
                    .await?
                }
                _ => {
                    store::latest_per_scan(
                        self.pool()?,
                        &ScanQuery {
                            version,
                            namespace,
                            name,
                            after: (&after_ns, &after_name),
                            limit: batch,
                        },
                    )
                    .await?
                }
            };
            let exhausted = (fetched.len() as i64) < batch;
            for row in fetched {
                let row_key = key(kind, &row);
                // A workload report named like a Scan in its namespace: the Scan's wins
                // (it sorts first), the workload's is not shown under the same name.
                if row_key == (after_ns.clone(), after_name.clone()) {
                    continue;
                }
                (after_ns, after_name) = row_key;
                let selected = !selecting || {
                    let meta = kinds::meta(kind, &row);
                    query.labels.matches(&meta.labels)
                        && query.fields.matches(meta.namespace.as_deref(), &meta.name)
                };
                if selected {
                    rows.push(row);
                    if rows.len() > cap {
                        break;
                    }
                }
            }
            if rows.len() > cap || exhausted {
                break;
            }
        }
        let token = if rows.len() > cap {
            rows.truncate(cap);
            rows.last().map(|last| {
                let (ns, name) = key(kind, last);
                Continue {
                    v: 1,
                    rv: version,
                    ns,
                    name,
                    at: issued,
                }
            })
        } else {
            None
        };
        Ok((version, rows, token))
    }

    /// A LIST as objects or as a Table, as the JSON body sent.
    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        query: &ListQuery,
        as_table: bool,
    ) -> Result<Vec<u8>, ApiError> {
        let cap = match (query.limit, as_table) {
            (0, true) => usize::MAX - 1,
            (n, true) => n,
            (0, false) => self.settings.max_page_items,
            (n, false) => n.min(self.settings.max_page_items),
        };
        let (version, rows, token) = self.page(kind, namespace, query, cap).await?;
        let mut meta = json!({"resourceVersion": version.to_string()});
        if let Some(token) = token {
            meta["continue"] = json!(token.encode());
        }
        let body = if as_table {
            let now = chrono::Utc::now();
            let cells = rows.iter().map(|r| table::row(kind, r, now)).collect();
            serde_json::to_vec(&table::table(kind, cells, meta))
        } else {
            let items = self.objects(kind, &rows, version).await?;
            serde_json::to_vec(&json!({
                "kind": format!("{}List", kind.name()),
                "apiVersion": crate::API_VERSION,
                "metadata": meta,
                "items": items,
            }))
        };
        body.map_err(ApiError::internal)
    }

    /// The SBOM document of a Scan from S3 (`format`: `cyclonedx` or `spdx`).
    pub async fn document(
        &self,
        namespace: &str,
        name: &str,
        format: &str,
    ) -> Result<Response, ApiError> {
        let row = self.row_of(Kind::SbomReport, Some(namespace), name).await?;
        let Some(s3) = &self.s3 else {
            return Err(ApiError::new(
                503,
                "ServiceUnavailable",
                "object storage is not configured on this server",
            ));
        };
        let (bucket, cyclonedx_key) = row
            .sbom_uri
            .strip_prefix("s3://")
            .and_then(|rest| rest.split_once('/'))
            .ok_or_else(|| ApiError::internal(format!("stored SBOM URI {:?}", row.sbom_uri)))?;
        let key = match format {
            "cyclonedx" | "cyclonedx-json" => cyclonedx_key.to_string(),
            "spdx" | "spdx-json" => {
                stellaops_store::s3::layout::image_inventory_spdx(&row.sbom_sha256)
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "format {other:?}: cyclonedx or spdx"
                )));
            }
        };
        let object = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| {
                let e = e.into_service_error();
                if e.is_no_such_key() {
                    ApiError::new(
                        404,
                        "NotFound",
                        format!("the {format} SBOM of {namespace}/{name} is not stored (s3://{bucket}/{key})"),
                    )
                } else {
                    ApiError::internal(format!("reading s3://{bucket}/{key}: {e}"))
                }
            })?;
        let length = object.content_length.unwrap_or_default();
        if length < 0 || length as u64 > self.settings.max_document_bytes as u64 {
            return Err(ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("the SBOM is {length} bytes, more than this server serves"),
            ));
        }
        let mut body = object.body;
        let mut bytes = Vec::with_capacity(length as usize);
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| ApiError::internal(format!("reading s3://{bucket}/{key}: {e}")))?
        {
            if bytes.len() + chunk.len() > self.settings.max_document_bytes {
                return Err(ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    "the SBOM is larger than this server serves",
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((
            [(http::header::CONTENT_TYPE, "application/json")],
            Body::from(bytes),
        )
            .into_response())
    }
}

/// The (namespace, name) a LIST of `kind` is ordered by.
fn key(kind: Kind, row: &ResultRow) -> (String, String) {
    match kind {
        Kind::ImageVerdict => (String::new(), kinds::digest_to_name(&row.image_digest)),
        _ => (
            row.scan_namespace.clone().unwrap_or_default(),
            row.scan_name.clone().unwrap_or_default(),
        ),
    }
}

/// Serve `reports` on `listener` (TLS, client certificates checked) until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    reports: Arc<Reports>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let config = crate::auth::server_config(reports.certificate.clone(), &reports.authenticator);
    let listener = stellaops_tls::TlsListener::new(listener, config)?;
    let authenticator = reports.authenticator.clone();
    stellaops_tls::serve_bounded(
        listener,
        router(reports),
        stellaops_tls::ConnectionLimits::default(),
        move |io: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
              _addr: &std::net::SocketAddr| {
            authenticator.classify(io.get_ref().1.peer_certificates())
        },
        shutdown,
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn paths_resolve_like_the_api_servers() {
        let base = "/apis/reports.stella-ops.org/v1alpha1";
        assert!(matches!(
            route(&format!("{base}/namespaces/a/vulnerabilityreports/web"), &q(&[])),
            Ok(Route::Resource { kind: Kind::VulnerabilityReport, namespace: Some(ref n), name: Some(ref m), .. }) if n == "a" && m == "web"
        ));
        assert!(matches!(
            route(
                &format!("{base}/vulnerabilityreports"),
                &q(&[("watch", "true")])
            ),
            Ok(Route::Resource {
                namespace: None,
                name: None,
                watch: true,
                ..
            })
        ));
        assert!(matches!(
            route(&format!("{base}/imageverdicts/sha256-ab"), &q(&[])),
            Ok(Route::Resource {
                kind: Kind::ImageVerdict,
                ..
            })
        ));
        assert!(matches!(
            route(
                &format!("{base}/namespaces/a/sbomreports/web/document"),
                &q(&[])
            ),
            Ok(Route::Resource {
                kind: Kind::SbomReport,
                ..
            })
        ));
        for missing in [
            format!("{base}/namespaces/a/imageverdicts/x"),
            format!("{base}/pods"),
            format!("{base}/namespaces/a/vulnerabilityreports/web/status"),
            "/apis/other.io/v1/things".to_string(),
            "/nowhere".to_string(),
        ] {
            assert_eq!(route(&missing, &q(&[])).unwrap_err().code, 404, "{missing}");
        }
        assert!(matches!(route("/apis", &q(&[])), Ok(Route::Document(_))));
        assert!(matches!(
            route("/openapi/v3/apis/reports.stella-ops.org/v1alpha1", &q(&[])),
            Ok(Route::Document(_))
        ));
    }

    #[tokio::test]
    async fn without_a_database_discovery_answers_and_reads_are_503() {
        let reports = Arc::new(Reports {
            settings: Settings::default(),
            pool: None,
            s3: None,
            authenticator: Arc::new(Authenticator::default()),
            authorizer: Authorizer::allow_all(),
            certificate: Arc::new(stellaops_tls::ReloadableCert::new(None)),
            hub: crate::watch::Hub::new(1),
        });
        let user = Peer::User(crate::auth::User {
            name: "sam".into(),
            ..Default::default()
        });
        let get = |path: &str| {
            let (reports, user) = (reports.clone(), user.clone());
            let uri: Uri = path.parse().unwrap();
            async move {
                match reports
                    .serve(&user, &Method::GET, &uri, &HeaderMap::new())
                    .await
                {
                    Ok(response) => response.status().as_u16(),
                    Err(error) => error.code,
                }
            }
        };
        assert_eq!(get("/apis/reports.stella-ops.org/v1alpha1").await, 200);
        assert_eq!(get("/openapi/v2").await, 200);
        assert_eq!(
            get("/apis/reports.stella-ops.org/v1alpha1/vulnerabilityreports").await,
            503
        );
        assert_eq!(
            get("/apis/reports.stella-ops.org/v1alpha1/vulnerabilityreports?watch=true").await,
            503
        );
        // Nobody is anybody without a certificate.
        let uri: Uri = "/apis".parse().unwrap();
        let anonymous = reports
            .serve(&Peer::Anonymous, &Method::GET, &uri, &HeaderMap::new())
            .await
            .unwrap_err();
        assert_eq!(anonymous.code, 401);
    }

    #[test]
    fn list_queries_parse_and_refuse_with_status_codes() {
        let token = Continue {
            v: 1,
            rv: 9,
            ns: "a".into(),
            name: "b".into(),
            at: 1000,
        }
        .encode();
        let parsed = parse_list_query(
            &q(&[
                ("limit", "5"),
                ("continue", &token),
                ("labelSelector", "verdict=Fail"),
            ]),
            1010,
            900,
        )
        .unwrap();
        assert_eq!(parsed.limit, 5);
        assert_eq!(parsed.token.unwrap().rv, 9);
        let expired = parse_list_query(&q(&[("continue", &token)]), 5000, 900).unwrap_err();
        assert_eq!((expired.code, expired.reason), (410, "Expired"));
        let invalid = parse_list_query(&q(&[("continue", "nope")]), 5000, 900).unwrap_err();
        assert_eq!(invalid.code, 400);
        assert_eq!(
            parse_list_query(&q(&[("labelSelector", "a in (")]), 0, 900)
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            parse_list_query(&q(&[("fieldSelector", "spec.x=1")]), 0, 900)
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            parse_list_query(&q(&[("limit", "x")]), 0, 900)
                .unwrap_err()
                .code,
            400
        );
    }
}
