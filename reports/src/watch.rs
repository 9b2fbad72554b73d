//! WATCH: events for results recorded after a resourceVersion, woken by the outbox's
//! `LISTEN stellaops_events` (every scan and re-evaluation writes its event in the same
//! transaction as its result) with a slow poll behind it in case a notification is lost.
//! A resourceVersion is a result id, the same as a LIST's, so `kubectl get --watch`
//! (LIST, then WATCH from its resourceVersion) misses nothing and repeats nothing: result
//! ids commit in order (see `stellaops_store::reports`), so no result can commit below an
//! id a LIST or a watch has already passed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sqlx::PgPool;
use stellaops_store::reports::{self as store, NewerResult, ResultRow, WorkloadRef};
use stellaops_store::running_images::{self, RunningImage};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::kinds::{self, Kind};
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::Reports;
use crate::status::ApiError;
use crate::table;

/// How often a watch looks for new results when no notification came.
pub const POLL: Duration = Duration::from_secs(5);
/// Longest watch (the client reconnects, as with the API server's `min-request-timeout`).
pub const MAX_WATCH: Duration = Duration::from_secs(1800);
/// Results read per query.
const BATCH: i64 = 500;
/// Workload containers per digest a watch reports on for one new result, at most.
const MAX_WORKLOAD_EVENTS: i64 = 1000;
/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// Wakes every watch when the outbox announces an insert: one `LISTEN` connection per
/// process, started with the first watch.
pub struct Hub {
    wake: watch::Sender<u64>,
    /// Watches open at once, bounded.
    pub slots: Arc<Semaphore>,
    started: std::sync::Once,
}

impl Hub {
    /// A hub allowing `max_watches` at once.
    pub fn new(max_watches: usize) -> Hub {
        Hub {
            wake: watch::channel(0).0,
            slots: Arc::new(Semaphore::new(max_watches)),
            started: std::sync::Once::new(),
        }
    }

    fn start(&self, pool: &PgPool) {
        self.started.call_once(|| {
            let (pool, wake) = (pool.clone(), self.wake.clone());
            tokio::spawn(async move { listen(pool, wake).await });
        });
    }

    fn subscribe(&self, pool: &PgPool) -> watch::Receiver<u64> {
        self.start(pool);
        self.wake.subscribe()
    }
}

async fn listen(pool: PgPool, wake: watch::Sender<u64>) {
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener
                .listen(stellaops_store::outbox::NOTIFY_CHANNEL)
                .await?;
            loop {
                listener.recv().await?;
                wake.send_modify(|n| *n = n.wrapping_add(1));
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        if let Err(error) = listener.await {
            tracing::warn!(%error, "reports watch: LISTEN failed; polling until it is back");
        }
        if wake.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// What one watch sends.
pub struct WatchRequest {
    /// The kind.
    pub kind: Kind,
    /// Only this namespace.
    pub namespace: Option<String>,
    /// One object (`/name` in the path, or a field selector on it).
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Events after this result id; `None`: the current state first, as `ADDED` events.
    pub after: Option<i64>,
    /// Objects as Table rows (kubectl's `--watch` printing).
    pub as_table: bool,
    /// End after this long.
    pub timeout: Duration,
    /// Send `BOOKMARK` events.
    pub bookmarks: bool,
}

/// The event type for `newer` (`ADDED` for the first result of its Scan or digest,
/// `MODIFIED` for a later one), when the watch selects it.
fn selects(request: &WatchRequest, newer: &NewerResult) -> Option<&'static str> {
    let row = &newer.row;
    let scan_result =
        row.scan_namespace.is_some() && row.scan_name.as_deref().is_some_and(|n| !n.contains('/'));
    if request.kind.namespaced() && !scan_result {
        return None;
    }
    let first = match request.kind {
        Kind::ImageVerdict => newer.first_of_digest,
        _ => newer.first_of_scan,
    };
    selected(request, row).then_some(if first { "ADDED" } else { "MODIFIED" })
}

fn selected(request: &WatchRequest, row: &ResultRow) -> bool {
    let meta = kinds::meta(request.kind, row);
    (request.namespace.is_none() || meta.namespace == request.namespace)
        && request.labels.matches(&meta.labels)
        && request
            .fields
            .matches(meta.namespace.as_deref(), &meta.name)
}

/// The workload reports a new result of a digest changes: one per workload container
/// running the digest (`running`: the rows of that digest; `ADDED` when it is the digest's
/// first result), those the watch selects. What runs where is not history, so a workload
/// that starts or stops running a digest shows in the next LIST, not as a watch event.
fn workload_events(
    request: &WatchRequest,
    newer: &NewerResult,
    running: &[&RunningImage],
) -> Vec<(&'static str, ResultRow)> {
    let kind = if newer.first_of_digest {
        "ADDED"
    } else {
        "MODIFIED"
    };
    running
        .iter()
        .map(|w| (kind, workload_row(&newer.row, w)))
        .filter(|(_, row)| selected(request, row))
        .collect()
}

/// `result` shown as the report of the workload container `w` that runs its digest.
pub fn workload_row(result: &ResultRow, w: &RunningImage) -> ResultRow {
    ResultRow {
        scan_namespace: Some(w.namespace.clone()),
        scan_name: Some(w.report_name.clone()),
        scan_uid: None,
        image_ref: w.image_ref.clone(),
        workload: Some(WorkloadRef {
            kind: w.workload_kind.clone(),
            name: w.workload_name.clone(),
            container: w.container.clone(),
        }),
        ..result.clone()
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut bytes =
        serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

impl Reports {
    /// Start a watch: the response streams events until the client goes, the timeout, or
    /// the server stops.
    pub async fn watch(self: &Arc<Self>, request: WatchRequest) -> Result<Response, ApiError> {
        let permit: OwnedSemaphorePermit =
            self.hub.slots.clone().try_acquire_owned().map_err(|_| {
                ApiError::new(429, "TooManyRequests", "too many watches open; retry later")
            })?;
        let mut wake = self.hub.subscribe(self.pool()?);
        // Where to start, and the current state first when no resourceVersion was given.
        let (mut last, initial) = match request.after {
            Some(after) => (after, Vec::new()),
            None => {
                let query = crate::server::ListQuery {
                    labels: request.labels.clone(),
                    fields: request.fields.clone(),
                    ..Default::default()
                };
                let (version, rows, _) = self
                    .page(
                        request.kind,
                        request.namespace.as_deref(),
                        &query,
                        usize::MAX - 1,
                    )
                    .await?;
                let objects = self
                    .shown(request.kind, &rows, version, request.as_table)
                    .await?;
                (version, objects)
            }
        };
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let reports = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            for object in initial {
                if tx.send(line("ADDED", &object)).await.is_err() {
                    return;
                }
            }
            let deadline = tokio::time::Instant::now() + request.timeout.min(MAX_WATCH);
            let mut bookmark = tokio::time::interval(BOOKMARK_EVERY);
            bookmark.tick().await;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = tx.closed() => return,
                    _ = bookmark.tick(), if request.bookmarks => {
                        let mark = json!({"kind": request.kind.name(), "apiVersion": crate::API_VERSION,
                                          "metadata": {"resourceVersion": last.to_string()}});
                        if tx.send(line("BOOKMARK", &mark)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    _ = wake.changed() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
                loop {
                    let newer = match reports.pool().map_err(|e| e.message) {
                        Ok(pool) => store::results_after(pool, last, BATCH).await,
                        Err(message) => Err(stellaops_store::Error::Refused(message)),
                    };
                    let newer = match newer {
                        Ok(newer) => newer,
                        Err(error) => {
                            tracing::warn!(%error, "reports watch: reading new results");
                            let status = ApiError::internal(error).to_status();
                            let _ = tx.send(line("ERROR", &status)).await;
                            return;
                        }
                    };
                    let Some(end) = newer.last().map(|n| n.row.id) else {
                        break;
                    };
                    // Workload reports follow the results of the digests they run.
                    let running = if request.kind.namespaced() {
                        let digests: Vec<&str> =
                            newer.iter().map(|n| n.row.image_digest.as_str()).collect();
                        let read = match reports.pool() {
                            Ok(pool) => {
                                running_images::running_of(pool, &digests, MAX_WORKLOAD_EVENTS)
                                    .await
                                    .map_err(ApiError::internal)
                            }
                            Err(error) => Err(error),
                        };
                        match read {
                            Ok(running) => running,
                            Err(error) => {
                                let _ = tx.send(line("ERROR", &error.to_status())).await;
                                return;
                            }
                        }
                    } else {
                        Vec::new()
                    };
                    // Grouped once per batch: each result looks up its digest's workloads
                    // instead of scanning every running row.
                    let mut running_by_digest: std::collections::HashMap<&str, Vec<&RunningImage>> =
                        std::collections::HashMap::new();
                    for w in &running {
                        running_by_digest
                            .entry(w.image_digest.as_str())
                            .or_default()
                            .push(w);
                    }
                    for n in &newer {
                        let mut events: Vec<(&str, ResultRow)> = selects(&request, n)
                            .map(|kind| (kind, n.row.clone()))
                            .into_iter()
                            .collect();
                        let of_digest = running_by_digest
                            .get(n.row.image_digest.as_str())
                            .map(Vec::as_slice)
                            .unwrap_or_default();
                        events.extend(workload_events(&request, n, of_digest));
                        for (kind, row) in events {
                            // The object (findings and all) is read only for what is selected.
                            let shown = reports
                                .shown(
                                    request.kind,
                                    std::slice::from_ref(&row),
                                    row.id,
                                    request.as_table,
                                )
                                .await;
                            let object = match shown {
                                Ok(mut shown) => shown.pop().unwrap_or_default(),
                                Err(error) => {
                                    let _ = tx.send(line("ERROR", &error.to_status())).await;
                                    return;
                                }
                            };
                            if tx.send(line(kind, &object)).await.is_err() {
                                return;
                            }
                        }
                    }
                    last = end;
                    if (newer.len() as i64) < BATCH {
                        break;
                    }
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
        });
        Ok((
            [(http::header::CONTENT_TYPE, "application/json")],
            Body::from_stream(stream),
        )
            .into_response())
    }

    /// `rows` as event objects: full objects, or one-row Tables.
    async fn shown(
        &self,
        kind: Kind,
        rows: &[stellaops_store::reports::ResultRow],
        version: i64,
        as_table: bool,
    ) -> Result<Vec<Value>, ApiError> {
        if as_table {
            let now = chrono::Utc::now();
            return rows
                .iter()
                .map(|r| {
                    serde_json::to_value(table::table(
                        kind,
                        vec![table::row(kind, r, now)],
                        json!({"resourceVersion": r.id.to_string()}),
                    ))
                    .map_err(ApiError::internal)
                })
                .collect();
        }
        self.objects(kind, rows, version).await
    }
}
