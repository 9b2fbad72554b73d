//! Install from nothing: config/overlays/quickstart renders with kubectl kustomize into
//! everything config/default installs plus an in-cluster PostgreSQL and S3 store, marked
//! not for production, with the Secrets under the names and keys the operator and workers
//! read, pointing at those Services.

use serde_json::Value;

use crate::packaging::{find, render, tool};
use crate::repo_root;

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn secret_value(secret: &Value, key: &str) -> String {
    secret["stringData"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no {key}", secret["metadata"]["name"]))
        .to_string()
}

#[test]
fn the_quickstart_overlay_brings_its_own_database_and_s3_store_and_wires_the_secrets() {
    let Some(kubectl) = tool("STELLAOPS_TEST_KUBECTL", "kubectl") else {
        return;
    };
    let quickstart = render(&kubectl, &["kustomize", "config/overlays/quickstart"]);
    let default = render(&kubectl, &["kustomize", "config/default"]);
    // Everything the plain install has.
    for object in &default {
        let (kind, name) = (&object["kind"], &object["metadata"]["name"]);
        assert!(
            quickstart
                .iter()
                .any(|o| &o["kind"] == kind && &o["metadata"]["name"] == name),
            "quickstart lacks {kind} {name}"
        );
    }
    // Marked for evaluation only, in every file a user would open.
    let dir = repo_root().join("config/overlays/quickstart");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if path.file_name().unwrap() != "namespace.yaml" {
            assert!(
                text.contains("NOT FOR PRODUCTION"),
                "{} is not marked",
                path.display()
            );
        }
    }

    let postgres_service = named(&quickstart, "Service", "stellaops-postgres");
    let s3_service = named(&quickstart, "Service", "stellaops-s3");
    let ns = |o: &Value| o["metadata"]["namespace"].as_str().unwrap().to_string();
    let postgres_host = format!("stellaops-postgres.{}.svc:5432", ns(postgres_service));
    let s3_url = format!("http://stellaops-s3.{}.svc:9000", ns(s3_service));
    named(&quickstart, "StatefulSet", "stellaops-postgres");
    named(&quickstart, "StatefulSet", "stellaops-s3");

    // The operator reads its own database from this Secret (config/manager) and gives
    // workers the bucket and endpoint.
    let deployment = find(&quickstart, "Deployment");
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let env_value = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("operator env {name} missing"))
            .clone()
    };
    let database = env_value("DATABASE_URL");
    let operator_secret = database["valueFrom"]["secretKeyRef"]["name"]
        .as_str()
        .unwrap();
    let operator_database = quickstart
        .iter()
        .find(|o| {
            o["kind"] == "Secret"
                && o["metadata"]["name"] == operator_secret
                && o["metadata"]["namespace"] == deployment["metadata"]["namespace"]
        })
        .expect("the operator's database Secret, in its namespace");
    assert!(secret_value(operator_database, "url").contains(&postgres_host));
    assert_eq!(env_value("STELLAOPS_S3_ENDPOINT")["value"], s3_url.as_str());
    let bucket = env_value("STELLAOPS_BUCKET")["value"]
        .as_str()
        .unwrap()
        .to_string();
    let bucket_job = named(&quickstart, "Job", "stellaops-s3-bucket");
    assert!(
        bucket_job.to_string().contains(&format!("local/{bucket}")),
        "the bucket Job makes the operator's bucket"
    );

    // The workers' Secrets, under the operator's default names (`--database-secret`,
    // `--s3-secret`) and keys, in the platform namespace.
    let workers_database = named(&quickstart, "Secret", "stellaops-database");
    assert!(secret_value(workers_database, "url").contains(&postgres_host));
    let s3 = named(&quickstart, "Secret", "stellaops-s3");
    secret_value(s3, "AWS_ACCESS_KEY_ID");
    secret_value(s3, "AWS_SECRET_ACCESS_KEY");
    assert_eq!(ns(workers_database), ns(s3_service));
    // The PostgreSQL password in the URL is the one the server starts with.
    let postgres = named(&quickstart, "StatefulSet", "stellaops-postgres");
    let password = postgres["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "POSTGRES_PASSWORD")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(secret_value(workers_database, "url").contains(&format!(":{password}@")));
}
