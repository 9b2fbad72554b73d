use serde_json::{Value, json};
use stellaops_admission_webhook::review::parse;
use stellaops_admission_webhook::workload::{ContainerKind, images};

fn pod_review() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "web", "namespace": "prod-web", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "prod-web"},
                       "spec": {"initContainers": [{"name": "migrate", "image": "registry.example.com/app/migrate:1.0"}],
                                "containers": [{"name": "app", "image": "registry.example.com/app/web@sha256:0000000000000000000000000000000000000000000000000000000000000000"},
                                               {"name": "sidecar", "image": "envoyproxy/envoy:v1.31"}],
                                "ephemeralContainers": [{"name": "debug", "image": "busybox"}]}},
            "oldObject": null, "dryRun": false
        }
    })
}

#[test]
fn a_pod_review_parses_and_every_container_is_found() {
    let body = serde_json::to_vec(&pod_review()).unwrap();
    let request = parse(&body).expect("valid review");
    assert_eq!(request.namespace.as_deref(), Some("prod-web"));
    assert_eq!(request.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(request.kind.kind, "Pod");
    let object = request.object.unwrap();
    let found = images("Pod", &object);
    let summary: Vec<(&str, ContainerKind, &str)> = found
        .iter()
        .map(|c| (c.container.as_str(), c.kind, c.path.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "migrate",
                ContainerKind::Init,
                "spec.initContainers[0].image"
            ),
            ("app", ContainerKind::Regular, "spec.containers[0].image"),
            (
                "sidecar",
                ContainerKind::Regular,
                "spec.containers[1].image"
            ),
            (
                "debug",
                ContainerKind::Ephemeral,
                "spec.ephemeralContainers[0].image"
            ),
        ]
    );
}

#[test]
fn pod_templates_of_every_workload_kind_are_found() {
    let template = json!({"spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    for (kind, object, path) in [
        (
            "Deployment",
            json!({"spec": {"template": template}}),
            "spec.template.spec.containers[0].image",
        ),
        (
            "StatefulSet",
            json!({"spec": {"template": template}}),
            "spec.template.spec.containers[0].image",
        ),
        (
            "DaemonSet",
            json!({"spec": {"template": template}}),
            "spec.template.spec.containers[0].image",
        ),
        (
            "Job",
            json!({"spec": {"template": template}}),
            "spec.template.spec.containers[0].image",
        ),
        (
            "CronJob",
            json!({"spec": {"jobTemplate": {"spec": {"template": template}}}}),
            "spec.jobTemplate.spec.template.spec.containers[0].image",
        ),
    ] {
        let found = images(kind, &object);
        assert_eq!(found.len(), 1, "{kind}");
        assert_eq!(found[0].path, path);
        assert_eq!(found[0].image, "nginx");
    }
    assert!(images("ConfigMap", &json!({"data": {}})).is_empty());
}

#[test]
fn malformed_bodies_get_an_invalid_answer_never_a_panic() {
    for body in [
        b"".to_vec(),
        b"{".to_vec(),
        b"null".to_vec(),
        br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#.to_vec(),
        br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 7}}"#.to_vec(),
        vec![0xff, 0xfe, 0x00],
    ] {
        let review = parse(&body).expect_err("must be refused");
        let response = serde_json::to_value(&review).unwrap();
        assert_eq!(response["response"]["allowed"], false, "{response}");
        assert_eq!(response["response"]["status"]["reason"], "InvalidRequest", "{response}");
    }
}

#[test]
fn containers_without_images_are_reported_not_skipped() {
    let pod = json!({"spec": {"containers": [{"name": "noimage"}, "not-an-object"]}});
    let found = images("Pod", &pod);
    assert_eq!(found.len(), 2);
    assert!(found.iter().all(|c| c.image.is_empty()));
}
