//! What runs where, for the reports API: the leader derives one row per workload container
//! with a known image digest from its Pod cache and keeps the `running_images` table in
//! step, writing only what changed since its last pass. The reports API then serves a
//! VulnerabilityReport per running workload container (from the latest result of its
//! digest) and lists under each ImageVerdict where the digest runs.
//!
//! A workload container that moves to another digest (a rollout, a re-pushed tag) gets an
//! `image.changed` outbox event, written in the same transaction as its row, carrying the
//! layer-attributed package diff between the two stored inventories (seed HLA §3.3) so a
//! NotifyRule can say what the rollout changed; an image not scanned yet has no diff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::json;
use stellaops_scanner::diff::{self, Change, Diff};
use stellaops_store::outbox::NewEvent;
use stellaops_store::running_images::{self, RunningImage};

use crate::context::Context;
use crate::zastava_audit::{running_digest, workload_of};

/// How often the table is brought in step with the Pod cache.
pub const INTERVAL: Duration = Duration::from_secs(30);
/// Longest report name (a Kubernetes object name).
const MAX_NAME: usize = 253;
/// Moves per pass whose package diff is read (two inventory reads each); later moves of
/// the same pass still get their event, without the diff.
pub const MAX_DIFFS_PER_PASS: usize = 100;
/// Packages listed per kind of change in an event (the counts are always whole).
pub const MAX_CHANGES_LISTED: usize = 50;

/// A VulnerabilityReport name for a workload container, as trivy-operator names its
/// reports: `<kind>-<name>-<container>`, lower-case, cut to a valid object name with a
/// hash of the whole kept so two long names do not meet.
pub fn report_name(kind: &str, name: &str, container: &str) -> String {
    let full = format!("{}-{name}-{container}", kind.to_lowercase());
    let clean: String = full
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    if clean.len() <= MAX_NAME {
        return clean;
    }
    use sha2::Digest as _;
    let hash = hex::encode(&sha2::Sha256::digest(full.as_bytes())[..5]);
    crate::workload::child_name(&clean, &format!("-{hash}"), MAX_NAME)
}

/// The rows `pods` make: each container (init and ephemeral ones too) of a Pod that is
/// not finished and whose status names a manifest digest, keyed by (namespace, report
/// name). Replicas of one workload make one row; when they run different digests (a
/// rollout), the newest Pod's wins.
pub fn observe<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
) -> BTreeMap<(String, String), RunningImage> {
    let mut rows: BTreeMap<
        (String, String),
        (
            Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
            RunningImage,
        ),
    > = BTreeMap::new();
    for pod in pods {
        let Some(status) = &pod.status else { continue };
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            continue;
        }
        let Some(namespace) = pod.namespace() else {
            continue;
        };
        let workload = workload_of(pod);
        let (Some(kind), Some(name)) = (workload.kind, workload.name) else {
            continue;
        };
        let created = pod.metadata.creation_timestamp.as_ref();
        let containers = [
            &status.container_statuses,
            &status.init_container_statuses,
            &status.ephemeral_container_statuses,
        ];
        for container in containers.into_iter().flatten().flatten() {
            let Some(digest) = running_digest(&container.image_id) else {
                continue;
            };
            let report_name = report_name(&kind, &name, &container.name);
            let row = RunningImage {
                namespace: namespace.clone(),
                report_name: report_name.clone(),
                workload_kind: kind.clone(),
                workload_name: name.clone(),
                container: container.name.clone(),
                image_ref: container.image.clone(),
                image_digest: digest.to_string(),
            };
            let key = (namespace.clone(), report_name);
            match rows.get(&key) {
                Some((seen, _)) if seen.map(|t| &t.0) >= created.map(|t| &t.0) => {}
                _ => {
                    rows.insert(key, (created, row));
                }
            }
        }
    }
    rows.into_iter().map(|(k, (_, row))| (k, row)).collect()
}

/// What to write to go from `stored` to `wanted`: rows new or changed, keys gone.
pub fn changes(
    stored: &BTreeMap<(String, String), RunningImage>,
    wanted: &BTreeMap<(String, String), RunningImage>,
) -> (Vec<RunningImage>, Vec<(String, String)>) {
    let upserts = wanted
        .iter()
        .filter(|(key, row)| stored.get(*key) != Some(*row))
        .map(|(_, row)| row.clone())
        .collect();
    let removed = stored
        .keys()
        .filter(|key| !wanted.contains_key(*key))
        .cloned()
        .collect();
    (upserts, removed)
}

/// The rows of `upserts` whose workload container ran another digest in `stored`:
/// (before, now).
pub fn moves<'a>(
    stored: &'a BTreeMap<(String, String), RunningImage>,
    upserts: &'a [RunningImage],
) -> Vec<(&'a RunningImage, &'a RunningImage)> {
    upserts
        .iter()
        .filter_map(|now| {
            let before = stored.get(&(now.namespace.clone(), now.report_name.clone()))?;
            (before.image_digest != now.image_digest).then_some((before, now))
        })
        .collect()
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// The `image.changed` event of a workload container that moved from `before` to `now`,
/// with the diff of their stored inventories when both were scanned. `at` (Unix seconds)
/// keeps a later move back and forth from being taken for this one.
pub fn change_event(
    before: &RunningImage,
    now: &RunningImage,
    diff: Option<&Diff>,
    at: i64,
) -> NewEvent {
    let listed = |changes: &[Change]| -> Vec<Change> {
        changes.iter().take(MAX_CHANGES_LISTED).cloned().collect()
    };
    let who = format!(
        "{} {}/{} (container {})",
        now.workload_kind, now.namespace, now.workload_name, now.container
    );
    let (summary, diff) = match diff {
        Some(d) => {
            let truncated = [&d.added, &d.removed, &d.changed]
                .iter()
                .any(|c| c.len() > MAX_CHANGES_LISTED);
            (
                format!(
                    "{who} now runs sha256:{} (was sha256:{}): {} packages added, {} removed, {} changed",
                    short(&now.image_digest),
                    short(&before.image_digest),
                    d.added.len(),
                    d.removed.len(),
                    d.changed.len()
                ),
                json!({
                    "added": listed(&d.added), "removed": listed(&d.removed), "changed": listed(&d.changed),
                    "counts": {"added": d.added.len(), "removed": d.removed.len(), "changed": d.changed.len()},
                    "truncated": truncated,
                }),
            )
        }
        None => (
            format!(
                "{who} now runs sha256:{} (was sha256:{}); no package diff: not both images are scanned",
                short(&now.image_digest),
                short(&before.image_digest)
            ),
            serde_json::Value::Null,
        ),
    };
    let subject = if now.image_ref.contains('@') {
        now.image_ref.clone()
    } else {
        format!("{}@{}", now.image_ref, now.image_digest)
    };
    NewEvent {
        kind: "image.changed".into(),
        namespace: Some(now.namespace.clone()),
        subject,
        severity: None,
        payload: json!({
            "summary": summary,
            "workload": {"namespace": now.namespace, "kind": now.workload_kind,
                         "name": now.workload_name, "container": now.container},
            "image": now.image_ref,
            "previousImage": before.image_ref,
            "digest": now.image_digest,
            "previousDigest": before.image_digest,
            "diff": diff,
        }),
        idempotency_key: format!(
            "image.changed/{}/{}/{}/{}/{at}",
            now.namespace, now.report_name, before.image_digest, now.image_digest
        ),
    }
}

/// The events of this pass's moves, each with its diff while the budget lasts.
async fn change_events(
    pool: &sqlx::PgPool,
    moved: &[(&RunningImage, &RunningImage)],
) -> stellaops_store::Result<Vec<NewEvent>> {
    let at = chrono::Utc::now().timestamp();
    let mut events = Vec::with_capacity(moved.len());
    for (i, (before, now)) in moved.iter().enumerate() {
        let diff = if i < MAX_DIFFS_PER_PASS {
            let old = stellaops_store::scans::stored_inventory(pool, &before.image_digest).await?;
            let new = stellaops_store::scans::stored_inventory(pool, &now.image_digest).await?;
            old.zip(new)
                .map(|(old, new)| diff::diff(&before.image_digest, &old, &now.image_digest, &new))
        } else {
            None
        };
        events.push(change_event(before, now, diff.as_ref(), at));
    }
    Ok(events)
}

/// Keep `running_images` in step with the Pod cache until the leader stops. Without a
/// database there is nothing to keep.
pub async fn run(ctx: Arc<Context>) {
    let Some(pool) = ctx.outbox.clone() else {
        return;
    };
    if ctx.caches.pods.wait_until_ready().await.is_err() {
        return;
    }
    // What the table holds: read once, then known from what this leader wrote.
    let mut stored: Option<BTreeMap<(String, String), RunningImage>> = None;
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let current = match stored.take() {
            Some(current) => current,
            None => match running_images::all(&pool).await {
                Ok(rows) => rows
                    .into_iter()
                    .map(|r| ((r.namespace.clone(), r.report_name.clone()), r))
                    .collect(),
                Err(error) => {
                    tracing::warn!(%error, "reading running images");
                    continue;
                }
            },
        };
        let pods = ctx.caches.pods.state();
        let wanted = observe(pods.iter().map(|p| p.as_ref()));
        let (upserts, removed) = changes(&current, &wanted);
        let events = match change_events(&pool, &moves(&current, &upserts)).await {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, "reading inventories for image.changed events");
                stored = Some(current);
                continue;
            }
        };
        match running_images::apply(&pool, &upserts, &removed, &events).await {
            Ok(()) => {
                if !upserts.is_empty() || !removed.is_empty() {
                    tracing::debug!(
                        written = upserts.len(),
                        removed = removed.len(),
                        moved = events.len(),
                        "running images brought in step"
                    );
                }
                stored = Some(wanted);
            }
            // Read the table again next time: the write may or may not have landed.
            Err(error) => tracing::warn!(%error, "writing running images"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(
        name: &str,
        created: &str,
        phase: &str,
        owner: Option<(&str, &str)>,
        image_id: &str,
    ) -> Pod {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created,
                         "labels": {"pod-template-hash": "5d8f"}},
            "status": {"phase": phase, "containerStatuses": [
                {"name": "web", "image": "registry.example/web:1", "imageID": image_id,
                 "ready": true, "restartCount": 0}]}
        }))
        .unwrap();
        if let Some((kind, owner)) = owner {
            pod.metadata.owner_references = Some(vec![serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": "u", "controller": true
            }))
            .unwrap()]);
        }
        pod
    }

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn replicas_make_one_row_and_the_newest_pod_wins_a_rollout() {
        let old = pod(
            "web-5d8f-a",
            "2026-01-01T00:00:00Z",
            "Running",
            Some(("ReplicaSet", "web-5d8f")),
            &format!("registry.example/web@{}", digest(1)),
        );
        let twin = pod(
            "web-5d8f-b",
            "2026-01-01T00:00:01Z",
            "Running",
            Some(("ReplicaSet", "web-5d8f")),
            &format!("registry.example/web@{}", digest(1)),
        );
        let new = pod(
            "web-5d8f-c",
            "2026-01-02T00:00:00Z",
            "Pending",
            Some(("ReplicaSet", "web-5d8f")),
            &format!("docker-pullable://registry.example/web@{}", digest(2)),
        );
        let rows = observe([&old, &new, &twin]);
        assert_eq!(rows.len(), 1, "{rows:?}");
        let row = &rows[&("shop".to_string(), "deployment-web-web".to_string())];
        assert_eq!(
            (row.workload_kind.as_str(), row.workload_name.as_str()),
            ("Deployment", "web")
        );
        assert_eq!(row.image_digest, digest(2));
        // The same Pods in another order decide the same.
        assert_eq!(observe([&new, &twin, &old]), rows);
    }

    #[test]
    fn finished_pods_and_unknown_digests_make_no_row() {
        let done = pod(
            "batch",
            "2026-01-01T00:00:00Z",
            "Succeeded",
            Some(("Job", "batch")),
            &format!("r/x@{}", digest(1)),
        );
        let config_id = pod("bare", "2026-01-01T00:00:00Z", "Running", None, &digest(1));
        let pending = pod("pulling", "2026-01-01T00:00:00Z", "Pending", None, "");
        assert!(observe([&done, &config_id, &pending]).is_empty());
        let bare = pod(
            "bare",
            "2026-01-01T00:00:00Z",
            "Running",
            None,
            &format!("r/x@{}", digest(3)),
        );
        let rows = observe([&bare]);
        assert_eq!(rows.keys().next().unwrap().1, "pod-bare-web");
    }

    #[test]
    fn report_names_are_valid_object_names() {
        assert_eq!(
            report_name("StatefulSet", "db", "pg_main"),
            "statefulset-db-pg-main"
        );
        let long = report_name("Deployment", &"x".repeat(300), "web");
        assert!(long.len() <= 253, "{}", long.len());
        assert_ne!(long, report_name("Deployment", &"x".repeat(301), "web"));
    }

    #[test]
    fn only_what_changed_is_written() {
        let a = pod(
            "a",
            "2026-01-01T00:00:00Z",
            "Running",
            None,
            &format!("r/a@{}", digest(1)),
        );
        let b = pod(
            "b",
            "2026-01-01T00:00:00Z",
            "Running",
            None,
            &format!("r/b@{}", digest(2)),
        );
        let b2 = pod(
            "b",
            "2026-01-01T00:00:00Z",
            "Running",
            None,
            &format!("r/b@{}", digest(3)),
        );
        let c = pod(
            "c",
            "2026-01-01T00:00:00Z",
            "Running",
            None,
            &format!("r/c@{}", digest(4)),
        );
        let stored = observe([&a, &b]);
        let wanted = observe([&b2, &c]);
        let (upserts, removed) = changes(&stored, &wanted);
        let written: Vec<&str> = upserts.iter().map(|r| r.report_name.as_str()).collect();
        assert_eq!(written, ["pod-b-web", "pod-c-web"]);
        assert_eq!(removed, [("shop".to_string(), "pod-a-web".to_string())]);
        assert_eq!(changes(&wanted, &wanted), (vec![], vec![]));
        // Only b ran something else before: one move, from digest 2 to 3.
        let moved = moves(&stored, &upserts);
        assert_eq!(moved.len(), 1);
        assert_eq!(
            (
                moved[0].0.image_digest.clone(),
                moved[0].1.image_digest.clone()
            ),
            (digest(2), digest(3))
        );
    }

    #[test]
    fn a_move_is_an_image_changed_event_with_the_layer_attributed_diff() {
        use stellaops_scanner::diff::{Installed, diff};
        let b = observe([&pod(
            "b",
            "2026-01-01T00:00:00Z",
            "Running",
            None,
            &format!("r/b@{}", digest(2)),
        )]);
        let b2 = observe([&pod(
            "b",
            "2026-01-01T00:00:00Z",
            "Running",
            None,
            &format!("r/b@{}", digest(3)),
        )]);
        let (before, now) = (b.values().next().unwrap(), b2.values().next().unwrap());
        let at = |purl: &str, layer: &str| Installed {
            purl: purl.into(),
            layer: layer.into(),
        };
        let d = diff(
            &before.image_digest,
            &[
                at("pkg:npm/ms@2.0.0", "sha256:l1"),
                at("pkg:npm/left-pad@1.3.0", "sha256:l1"),
            ],
            &now.image_digest,
            &[at("pkg:npm/ms@2.1.3", "sha256:l2")],
        );
        let event = change_event(before, now, Some(&d), 1_700_000_000);
        assert_eq!(event.kind, "image.changed");
        assert_eq!(event.namespace.as_deref(), Some("shop"));
        assert_eq!(
            event.subject,
            format!("registry.example/web:1@{}", digest(3))
        );
        assert_eq!(
            event.payload["diff"]["counts"],
            json!({"added": 0, "removed": 1, "changed": 1})
        );
        assert_eq!(event.payload["diff"]["changed"][0]["layer"], "sha256:l2");
        assert_eq!(event.payload["previousDigest"], digest(2));
        let summary = event.payload["summary"].as_str().unwrap();
        assert!(
            summary.starts_with("Pod shop/b (container web) now runs sha256:030303030303"),
            "{summary}"
        );
        assert!(
            summary.ends_with("0 packages added, 1 removed, 1 changed"),
            "{summary}"
        );
        let unscanned = change_event(before, now, None, 1_700_000_000);
        assert!(unscanned.payload["diff"].is_null());
        assert!(
            unscanned.payload["summary"]
                .as_str()
                .unwrap()
                .contains("no package diff")
        );
        assert_ne!(
            unscanned.idempotency_key,
            change_event(before, now, None, 1_700_000_001).idempotency_key
        );
    }
}
