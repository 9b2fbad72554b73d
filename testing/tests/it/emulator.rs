//! The emulator through the real kube client (TLS, kubeconfig, watchers).

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use stellaops_testing::apiserver::{Emulator, EmulatorOptions};

pub(crate) async fn start() -> (Emulator, Client) {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let emulator = Emulator::start(EmulatorOptions {
        authorize: false,
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    let client = emulator.client(&emulator.admin_token()).await;
    (emulator, client)
}

fn api_error(result: Result<impl std::fmt::Debug, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn scans(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<stellaops_crds::Scan>(&());
    Api::namespaced_with(client.clone(), namespace, &resource)
}

fn scan(name: &str, image: Option<&str>) -> DynamicObject {
    let mut spec = json!({});
    if let Some(image) = image {
        spec["image"] = json!(image);
    }
    serde_json::from_value(json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "Scan",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("a Scan")
}

fn config_map(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).expect("a ConfigMap")
}

#[tokio::test]
async fn discovery_finds_the_crds_and_the_built_ins() {
    let (emulator, client) = start().await;
    let discovery = kube::discovery::Discovery::new(client)
        .run()
        .await
        .expect("discovery");
    let group = discovery
        .groups()
        .find(|g| g.name() == "stella-ops.org")
        .expect("the stella-ops.org group");
    let kinds: Vec<String> = group
        .recommended_resources()
        .into_iter()
        .map(|(r, _)| r.kind)
        .collect();
    for kind in ["Scan", "Schedule", "Platform", "ZastavaPolicy"] {
        assert!(kinds.contains(&kind.to_string()), "{kind} in {kinds:?}");
    }
    let (scan, caps) = group
        .recommended_kind("Scan")
        .expect("Scan is discoverable");
    assert_eq!(scan.plural, "scans");
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));
    let batch = discovery
        .groups()
        .find(|g| g.name() == "batch")
        .expect("batch");
    assert!(batch.recommended_kind("Job").is_some());
    emulator.shutdown().await;
}

#[tokio::test]
async fn unknown_tokens_get_401_and_missing_namespaces_404() {
    let (emulator, client) = start().await;
    let stranger = emulator.client("not-a-token").await;
    let status = api_error(
        Api::<ConfigMap>::default_namespaced(stranger)
            .list(&ListParams::default())
            .await,
    );
    assert_eq!(status.code, 401);
    let missing: Api<ConfigMap> = Api::namespaced(client, "nowhere");
    let status = api_error(
        missing
            .create(&PostParams::default(), &config_map("a", json!({})))
            .await,
    );
    assert_eq!(
        (status.code, status.message.as_str()),
        (404, "namespaces \"nowhere\" not found")
    );
    emulator.shutdown().await;
}

/// Every page of a list: the names on each (joined by commas) and the
/// `remainingItemCount` it gave.
async fn list_pages(api: &Api<ConfigMap>, mut params: ListParams) -> Vec<(String, Option<i64>)> {
    let mut pages = Vec::new();
    loop {
        let page = api.list(&params).await.expect("list page");
        let names: Vec<String> = page.items.iter().map(|c| c.name_any()).collect();
        pages.push((names.join(","), page.metadata.remaining_item_count));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return pages,
        }
    }
}

#[tokio::test]
async fn create_get_list_pages_conflicts_and_patches() {
    let (emulator, client) = start().await;
    let api_client = client.clone();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..5 {
        let mut cm = config_map(&format!("cm-{i}"), json!({"i": i.to_string()}));
        cm.labels_mut().insert(
            "parity".into(),
            if i % 2 == 0 { "even" } else { "odd" }.into(),
        );
        let created = api
            .create(&PostParams::default(), &cm)
            .await
            .expect("create");
        assert!(created.uid().is_some() && created.resource_version().is_some());
    }
    let status = api_error(
        api.create(&PostParams::default(), &config_map("cm-0", json!({})))
            .await,
    );
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists")
    );

    // A ConfigMap in a namespace after "default": a namespaced list's pages stop before it.
    let kube_system: Api<ConfigMap> = Api::namespaced(api_client.clone(), "kube-system");
    kube_system
        .create(&PostParams::default(), &config_map("cm-9", json!({})))
        .await
        .expect("create in kube-system");
    let pages = list_pages(&api, ListParams::default().limit(2)).await;
    let expected = [
        ("cm-0,cm-1", Some(3)),
        ("cm-2,cm-3", Some(1)),
        ("cm-4", None),
    ];
    assert_eq!(
        pages,
        expected.map(|(names, left)| (names.to_string(), left))
    );
    // With a selector a page ends the list when no later object matches, and the count of
    // what is left is not given (as the API server does).
    let pages = list_pages(&api, ListParams::default().limit(1).labels("parity=odd")).await;
    assert_eq!(
        pages,
        [("cm-1".to_string(), None), ("cm-3".to_string(), None)]
    );
    let all: Api<ConfigMap> = Api::all(api_client.clone());
    let pages = list_pages(&all, ListParams::default().limit(3)).await;
    let names: Vec<&str> = pages.iter().map(|(names, _)| names.as_str()).collect();
    assert_eq!(names, ["cm-0,cm-1,cm-2", "cm-3,cm-4,cm-9"]);
    assert_eq!(pages[0].1, Some(3));
    let odd = api
        .list(&ListParams::default().labels("parity in (odd)"))
        .await
        .expect("list by label");
    assert_eq!(odd.items.len(), 2);
    let not_even = api
        .list(
            &ListParams::default()
                .labels("parity!=even")
                .fields("metadata.name=cm-3"),
        )
        .await
        .expect("list by label and field");
    assert_eq!(not_even.items.len(), 1);

    let current = api.get("cm-1").await.expect("get");
    let mut stale = current.clone();
    stale.data = Some([("i".to_string(), "changed".to_string())].into());
    api.replace("cm-1", &PostParams::default(), &stale)
        .await
        .expect("first replace");
    let status = api_error(api.replace("cm-1", &PostParams::default(), &stale).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));

    let merged = api
        .patch(
            "cm-2",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"extra": "x"}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(merged.data.unwrap()["extra"], "x");
    // kube's Patch::Json needs a feature the workspace does not enable: send it raw.
    let request = http::Request::patch("/api/v1/namespaces/default/configmaps/cm-2")
        .header("Content-Type", "application/json-patch+json")
        .body(
            serde_json::to_vec(&json!([{"op": "replace", "path": "/data/i", "value": "json"}]))
                .unwrap(),
        )
        .unwrap();
    let patched: ConfigMap = api_client.request(request).await.expect("JSON patch");
    assert_eq!(patched.data.unwrap()["i"], "json");
    assert!(emulator.audit_log().iter().all(|e| e.status != 500));
    emulator.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_creates_updates_and_conflicts() {
    let (emulator, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let apply = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": data});
    let created = api
        .patch(
            "applied",
            &PatchParams::apply("one"),
            &Patch::Apply(apply(json!({"a": "1", "b": "2"}))),
        )
        .await
        .expect("apply creates");
    assert_eq!(created.data.as_ref().unwrap().len(), 2);
    let updated = api
        .patch(
            "applied",
            &PatchParams::apply("one"),
            &Patch::Apply(apply(json!({"a": "3"}))),
        )
        .await
        .expect("apply updates");
    assert_eq!(
        updated.data.unwrap(),
        [("a".to_string(), "3".to_string())].into()
    );

    let status = api_error(
        api.patch(
            "applied",
            &PatchParams::apply("two"),
            &Patch::Apply(apply(json!({"a": "4"}))),
        )
        .await,
    );
    assert_eq!(status.code, 409);
    let fields: Vec<String> = status
        .details
        .map(|d| d.causes)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.field)
        .collect();
    assert_eq!(fields, [".data.a"]);
    assert!(
        status.message.contains("conflict with \"one\""),
        "{}",
        status.message
    );

    let forced = api
        .patch(
            "applied",
            &PatchParams::apply("two").force(),
            &Patch::Apply(apply(json!({"a": "4"}))),
        )
        .await
        .expect("forced apply");
    assert_eq!(forced.data.as_ref().unwrap()["a"], "4");
    let managers: Vec<String> = forced
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(managers.contains(&"two".to_string()), "{managers:?}");
    emulator.shutdown().await;
}

#[tokio::test]
async fn status_subresource_generation_and_admission() {
    let (emulator, client) = start().await;
    let api = scans(&client, "default");
    let status = api_error(api.create(&PostParams::default(), &scan("bad", None)).await);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    let fields: Vec<String> = status
        .details
        .map(|d| d.causes)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.field)
        .collect();
    assert!(fields.iter().any(|f| f == "spec.image"), "{fields:?}");

    let created = api
        .create(
            &PostParams::default(),
            &scan("good", Some("registry.example.com/a:1")),
        )
        .await
        .expect("a valid Scan is admitted");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.data["spec"]["policy"].is_object()
            || created.data["spec"].as_object().unwrap().len() > 1,
        "defaults are stored: {}",
        created.data["spec"]
    );

    let with_status = api
        .patch_status(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .expect("status patch");
    assert_eq!(with_status.data["status"]["phase"], "Running");
    assert_eq!(with_status.metadata.generation, Some(1));

    let ignored = api
        .patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed"}})),
        )
        .await
        .expect("main-resource patch of status");
    assert_eq!(
        ignored.data["status"]["phase"], "Running",
        "status is only written through /status"
    );
    assert_eq!(
        ignored.resource_version(),
        with_status.resource_version(),
        "a no-op keeps the resourceVersion"
    );

    let labelled = api
        .patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("label patch");
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes keep the generation"
    );
    let respec = api
        .patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"activeDeadlineSeconds": 1200}})),
        )
        .await
        .expect("spec patch");
    assert_eq!(respec.metadata.generation, Some(2));
    emulator.shutdown().await;
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owners_collect_dependents() {
    let (emulator, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut held = config_map("held", json!({}));
    held.metadata.finalizers = Some(vec!["test.stella-ops.org/hold".into()]);
    api.create(&PostParams::default(), &held)
        .await
        .expect("create");
    api.delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    let pending = api.get("held").await.expect("still there");
    assert!(pending.metadata.deletion_timestamp.is_some());
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove the finalizer");
    assert_eq!(api_error(api.get("held").await).code, 404);

    let secrets: Api<Secret> = Api::namespaced(client, "default");
    for (owner, policy) in [("owner-bg", None), ("owner-orphan", Some("Orphan"))] {
        let parent = api
            .create(&PostParams::default(), &config_map(owner, json!({})))
            .await
            .expect("owner");
        let child: Secret = serde_json::from_value(json!({"metadata": {"name": format!("{owner}-child"), "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": parent.uid().unwrap()}]}}))
        .expect("a Secret");
        secrets
            .create(&PostParams::default(), &child)
            .await
            .expect("dependent");
        let params = match policy {
            Some(_) => DeleteParams::orphan(),
            None => DeleteParams::background(),
        };
        api.delete(owner, &params).await.expect("delete owner");
    }
    assert_eq!(api_error(secrets.get("owner-bg-child").await).code, 404);
    let orphan = secrets
        .get("owner-orphan-child")
        .await
        .expect("orphan stays");
    assert!(orphan.owner_references().is_empty());

    // A dependent written after its owner was deleted (a controller racing the deletion)
    // is collected too, as a real cluster's garbage collector does.
    let late: Secret = serde_json::from_value(json!({"metadata": {"name": "late-child", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner-bg", "uid": orphan_owner_uid(&api).await}]}}))
    .expect("a Secret");
    secrets
        .create(&PostParams::default(), &late)
        .await
        .expect("the write itself succeeds");
    assert_eq!(api_error(secrets.get("late-child").await).code, 404);
    emulator.shutdown().await;
}

/// The uid of an owner that existed and was deleted.
async fn orphan_owner_uid(api: &Api<ConfigMap>) -> String {
    let gone = api
        .create(
            &PostParams::default(),
            &config_map("short-lived", json!({})),
        )
        .await
        .expect("owner");
    api.delete("short-lived", &DeleteParams::background())
        .await
        .expect("delete owner");
    gone.uid().unwrap()
}

#[tokio::test]
async fn watcher_sees_changes_and_relists_after_restart() {
    let (mut emulator, client) = start().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "w"}})).unwrap(),
        )
        .await
        .expect("namespace");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "w");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(api.clone(), watcher::Config::default());
    let task = tokio::spawn(async move {
        let mut stream = stream.boxed();
        while let Some(event) = stream.next().await {
            let text = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    format!(
                        "apply {} {}",
                        o.name_any(),
                        o.data
                            .unwrap_or_default()
                            .get("v")
                            .cloned()
                            .unwrap_or_default()
                    )
                }
                Ok(watcher::Event::Delete(o)) => format!("delete {}", o.name_any()),
                Ok(watcher::Event::Init) => "init".into(),
                Ok(watcher::Event::InitDone) => "init-done".into(),
                Err(e) => format!("error {e}"),
            };
            if tx.send(text).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = async |want: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let event = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no {want:?} within 20s; saw {seen:?}"))
                .expect("watcher alive");
            seen.push(event.clone());
            if event == want {
                return;
            }
        }
    };
    wait_for("init-done").await;
    api.create(&PostParams::default(), &config_map("a", json!({"v": "1"})))
        .await
        .unwrap();
    wait_for("apply a 1").await;
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    wait_for("apply a 2").await;
    api.delete("a", &DeleteParams::default()).await.unwrap();
    wait_for("delete a").await;

    emulator.restart().await.expect("restart");
    api.create(
        &PostParams::default(),
        &config_map("b", json!({"v": "after"})),
    )
    .await
    .unwrap();
    wait_for("apply b after").await;
    let relists = emulator
        .audit_log()
        .iter()
        .filter(|e| e.verb == "list" && e.path.starts_with("/api/v1/namespaces/w/configmaps"))
        .count();
    assert!(
        relists >= 2,
        "the watcher relisted after the 410: {:?}",
        emulator.audit_log()
    );
    task.abort();
    let all: Vec<ConfigMap> = api.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.iter().map(|c| c.name_any()).collect::<Vec<_>>(), ["b"]);
    emulator.shutdown().await;
}

/// Many creates with two watchers: every watcher sees every object, a LIST returns them all.
/// `STELLAOPS_EMULATOR_SCALE=10000` runs the benchmark's size (Scans, and half as many Pods).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_objects_with_watchers() {
    let count: usize = std::env::var("STELLAOPS_EMULATOR_SCALE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let (emulator, client) = start().await;
    let api = scans(&client, "default");
    let mut watchers = Vec::new();
    for _ in 0..2 {
        let stream = watcher(api.clone(), watcher::Config::default());
        watchers.push(tokio::spawn(async move {
            let mut seen = std::collections::HashSet::new();
            let mut stream = stream.boxed();
            while let Some(event) = stream.next().await {
                if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event {
                    seen.insert(o.name_any());
                    if seen.len() == count {
                        return seen.len();
                    }
                }
            }
            seen.len()
        }));
    }
    let started = std::time::Instant::now();
    futures::stream::iter(0..count)
        .for_each_concurrent(16, |i| {
            let api = api.clone();
            async move {
                api.create(
                    &PostParams::default(),
                    &scan(&format!("s-{i}"), Some("registry.example.com/a:1")),
                )
                .await
                .expect("create");
            }
        })
        .await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(0..count / 2)
        .for_each_concurrent(16, |i| {
            let pods = pods.clone();
            async move {
                let pod = serde_json::from_value(
                    json!({"metadata": {"name": format!("p-{i}"), "labels": {"app": "x"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}}),
                )
                .unwrap();
                pods.create(&PostParams::default(), &pod)
                    .await
                    .expect("create pod");
            }
        })
        .await;
    let created = started.elapsed();
    for watcher in watchers {
        let seen = tokio::time::timeout(Duration::from_secs(120), watcher)
            .await
            .expect("watchers keep up")
            .unwrap();
        assert_eq!(seen, count);
    }
    let listed = std::time::Instant::now();
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        count
    );
    let running = pods
        .list(&ListParams::default().fields("status.phase=Pending"))
        .await
        .unwrap();
    assert_eq!(running.items.len(), count / 2);
    eprintln!(
        "{count} Scans and {} Pods created in {created:?} with 2 watchers; LIST of the Scans in {:?}",
        count / 2,
        listed.elapsed()
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn service_accounts_without_a_binding_get_403_in_the_servers_words() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let emulator = Emulator::start(EmulatorOptions::default())
        .await
        .expect("emulator starts");
    let token = emulator.service_account_token("stellaops-system", "stellaops-operator");
    let client = emulator.client(&token).await;
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client, "default");
    let job = serde_json::from_value(
        json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}),
    )
    .unwrap();
    let status = api_error(jobs.create(&PostParams::default(), &job).await);
    assert_eq!(status.code, 403);
    assert!(
        status.message.starts_with(
            "jobs.batch is forbidden: User \"system:serviceaccount:stellaops-system:stellaops-operator\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"default\""
        ),
        "{}",
        status.message
    );
    let entry = emulator.audit_log().pop().expect("audited");
    assert_eq!(
        (entry.user.as_str(), entry.verb.as_str(), entry.status),
        (
            "system:serviceaccount:stellaops-system:stellaops-operator",
            "create",
            403
        )
    );
    emulator.shutdown().await;
}
