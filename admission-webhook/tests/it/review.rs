use serde_json::{Value, json};
use stellaops_admission_webhook::review::{self, parse};
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
    let found = request.object.as_ref().unwrap().images("Pod");
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

/// The object as the webhook reads it (straight from the body into a few borrowed fields)
/// finds what walking the object's JSON tree finds, on the shapes a lenient reader must
/// survive: wrong types, containers that are not objects, keys given twice (the last
/// counts, as in a JSON tree), escapes, every workload kind.
#[test]
fn objects_read_from_the_body_find_what_the_json_tree_finds() {
    let objects = [
        r#"{"metadata": {"name": "web"}, "spec": {"containers": [{"name": "a", "image": "nginx"}]}}"#,
        r#"{"spec": {"containers": [{"name": "noimage"}, "not-an-object", 7, null, [1], {"image": 3}]}}"#,
        r#"{"spec": {"containers": {"image": "not-a-list"}, "initContainers": "x", "ephemeralContainers": null}}"#,
        r#"{"spec": [1, 2]}"#,
        r#"{"spec": null, "metadata": 5}"#,
        r#"[{"spec": {"containers": [{"image": "in-a-list"}]}}]"#,
        r#""a string""#,
        r#"{"spec": {"containers": [{"image": "first"}]}, "spec": {"containers": [{"image": "second"}]}}"#,
        r#"{"spec": {"containers": [{"image": "a", "image": "b", "name": "n", "name": 4}]}}"#,
        r#"{"spec": {"containers": [{"image": "a"}], "containers": [{"image": "b"}, {"image": "c"}]}}"#,
        r#"{"spec": {"contain\u0065rs": [{"im\u0061ge": "reg.example\/app\u00e9:1", "name": "\u0041"}]}, "metad\u0061ta": {"n\u0061me": "\u0077eb"}}"#,
        r#"{"metadata": {"name": "d", "labels": {"x": "y"}}, "spec": {"replicas": 3, "template": {"metadata": {}, "spec": {"initContainers": [{"image": "i"}], "containers": [{"image": "c", "env": [{"name": "image", "value": "no"}]}]}}}}"#,
        r#"{"spec": {"template": {"spec": {"containers": [{"image": "t"}]}}, "template": 4}}"#,
        r#"{"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"image": "cron"}], "ephemeralContainers": [{"image": "e"}]}}}}}}"#,
        r#"{"spec": {"containers": [{"image": "p"}], "template": {"spec": {"containers": [{"image": "t"}]}}, "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"image": "j"}]}}}}}}"#,
        r#"{"spec": {"containers": [{"image": true}, {"image": {"nested": "x"}}, {"image": ["x"]}, {"image": 1.5}, {"image": -1}]}}"#,
    ];
    let kinds = [
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "ReplicationController",
        "CronJob",
        "ConfigMap",
    ];
    for object in objects {
        let body = format!(
            r#"{{"apiVersion": "admission.k8s.io/v1", "request": {{"uid": "u", "kind": {{"kind": "Pod"}}, "operation": "CREATE", "object": {object}}}}}"#
        );
        let request = parse(body.as_bytes()).unwrap_or_else(|_| panic!("{object} is refused"));
        let tree: Value = serde_json::from_str(object).unwrap();
        let read = request.object.as_ref().expect("an object");
        for kind in kinds {
            assert_eq!(read.images(kind), images(kind, &tree), "{kind} {object}");
        }
        assert_eq!(read.name(), tree["metadata"]["name"].as_str(), "{object}");
    }
    // `null` is no object at all.
    let body = br#"{"apiVersion": "admission.k8s.io/v1", "request": {"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": null}}"#;
    assert!(parse(body).unwrap().object.is_none());
}

/// Fields the webhook uses keep their strictness: a wrong type refuses the review.
#[test]
fn request_fields_of_the_wrong_type_are_refused() {
    for request in [
        r#"{"uid": 7, "kind": {"kind": "Pod"}, "operation": "CREATE"}"#,
        r#"{"uid": "u", "kind": {"kind": 1}, "operation": "CREATE"}"#,
        r#"{"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "namespace": 3}"#,
        r#"{"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "userInfo": {"username": []}}"#,
        r#"{"uid": "u", "kind": {"kind": "Pod"}, "operation": "MAKE"}"#,
        r#"{"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "dryRun": "yes"}"#,
        r#"{"uid": "u", "uid": "v", "kind": {"kind": "Pod"}, "operation": "CREATE"}"#,
    ] {
        let body = format!(r#"{{"apiVersion": "admission.k8s.io/v1", "request": {request}}}"#);
        assert!(parse(body.as_bytes()).is_err(), "{request}");
    }
    let body = br#"{"apiVersion": "admission.k8s.io/v1", "request": {"uid": "u\"1", "kind": {"kind": "Pod"}, "operation": "UPDATE", "namespace": null, "userInfo": {"username": "a\u00e9"}, "name": "n"}}"#;
    let request = parse(body).unwrap();
    assert_eq!(request.uid, "u\"1");
    assert_eq!(request.namespace, None);
    assert_eq!(request.user_info.username.as_deref(), Some("a\u{e9}"));
    assert_eq!(request.name, "n");
}

/// The admitting answer comes from a template; it must be byte for byte what serializing
/// the response gives, whatever the uid holds (quotes, backslashes, control characters,
/// non-ASCII, line separators).
#[test]
fn the_admitting_answer_is_what_serde_json_renders() {
    for uid in [
        "",
        "705ab4f5-6393-11e8-b7cc-42010a800002",
        "a\"b\\c",
        "\u{0}\u{1}\u{1f}\n\r\t\u{7f}",
        "ünïcødé 😀",
        "</script><!--",
        "\u{2028}\u{2029}",
        "zastava-uid-placeholder",
    ] {
        let expected = serde_json::to_vec(&review::allow(uid).into_review()).unwrap();
        assert_eq!(
            String::from_utf8(review::allowed_review(uid)).unwrap(),
            String::from_utf8(expected).unwrap(),
            "{uid:?}"
        );
        let parsed: Value = serde_json::from_slice(&review::allowed_review(uid)).unwrap();
        assert_eq!(parsed["response"]["uid"], uid);
        assert_eq!(parsed["response"]["allowed"], true);
    }
}

/// What the reader skips unread is still checked for JSON syntax (a broken body is
/// refused wherever the break is); unlike a JSON tree it is not checked for nesting depth
/// or number range.
#[test]
fn skipped_parts_are_checked_for_syntax_only() {
    let body = |annotations: &str| {
        format!(
            r#"{{"apiVersion": "admission.k8s.io/v1", "request": {{"uid": "u", "kind": {{"kind": "Pod"}}, "operation": "CREATE", "object": {{"metadata": {{"annotations": {annotations}}}, "spec": {{"containers": [{{"image": "nginx"}}]}}}}}}}}"#
        )
    };
    for broken in [
        r#"{"a": tru}"#,
        r#"{"a": "\x"}"#,
        r#"{"a" 1}"#,
        r#"[1,]"#,
        r#"{"a": 01}"#,
    ] {
        assert!(parse(body(broken).as_bytes()).is_err(), "{broken}");
    }
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for unread in [r#"{"a": 1e400}"#, deep.as_str()] {
        let text = body(unread);
        assert!(serde_json::from_str::<Value>(&text).is_err());
        let request = parse(text.as_bytes()).unwrap();
        assert_eq!(request.object.unwrap().images("Pod")[0].image, "nginx");
    }
}
