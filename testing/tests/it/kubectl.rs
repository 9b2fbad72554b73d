//! The emulator through the real kubectl (v1.31): server-side apply of the samples,
//! printer columns, YAML output, wait and delete.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::emulator::start;

/// The kubectl binary from `STELLAOPS_TEST_KUBECTL` or `.test-services/bin/kubectl`;
/// `None` (skip) when absent, a failure under `CI=true`.
fn kubectl_binary() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = std::env::var("STELLAOPS_TEST_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join(".test-services/bin/kubectl"));
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("kubectl not found at {} but CI=true", path.display());
    }
    eprintln!(
        "skipped: kubectl not found at {} (scripts/services.sh installs it)",
        path.display()
    );
    None
}

#[derive(Clone)]
struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .output()
            .expect("run kubectl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_lists_waits_and_deletes() {
    let Some(binary) = kubectl_binary() else {
        return;
    };
    let (emulator, client) = start().await;
    let dir = std::env::temp_dir().join(format!("stellaops-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, emulator.kubeconfig(&emulator.admin_token())).unwrap();
    let kubectl = Kubectl {
        binary,
        kubeconfig,
        cache: dir.join("cache"),
    };
    // The samples use `stellaops` (created here) besides `default` and `stellaops-system`.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "stellaops"}})).unwrap(),
        )
        .await
        .expect("namespace");

    let applied = tokio::task::spawn_blocking({
        let kubectl = kubectl.clone();
        move || kubectl.ok(&["apply", "--server-side", "-k", "config/samples"])
    })
    .await
    .unwrap();
    assert!(
        applied.contains("scan.stella-ops.org/nginx-1-27 serverside-applied"),
        "{applied}"
    );
    let scans = emulator.objects("stella-ops.org/v1alpha1", "Scan");
    assert_eq!(scans.len(), 1);
    assert_eq!(
        scans[0]["metadata"]["managedFields"][0]["manager"],
        "kubectl"
    );
    assert!(
        emulator.audit_log().iter().all(|e| e.status < 500),
        "{:?}",
        emulator.audit_log()
    );

    let listed = tokio::task::spawn_blocking({
        let kubectl = kubectl.clone();
        move || kubectl.ok(&["get", "stellaops", "-A"])
    })
    .await
    .unwrap();
    eprintln!("{listed}");
    for expected in [
        "NAMESPACE",
        "nginx-1-27",
        "scan.stella-ops.org/nginx-1-27",
        "DIRECTION",
        "CHANNEL",
    ] {
        assert!(
            listed.contains(expected),
            "{expected:?} missing from:\n{listed}"
        );
    }

    let yaml = tokio::task::spawn_blocking({
        let kubectl = kubectl.clone();
        move || kubectl.ok(&["get", "scans", "-n", "default", "-o", "yaml"])
    })
    .await
    .unwrap();
    assert!(
        yaml.contains("kind: Scan") && yaml.contains("name: nginx-1-27"),
        "{yaml}"
    );

    let waiter = tokio::task::spawn_blocking({
        let kubectl = kubectl.clone();
        move || {
            let started = std::time::Instant::now();
            let out = kubectl.run(&[
                "wait",
                "--for=condition=Ready",
                "scan/nginx-1-27",
                "-n",
                "default",
                "--timeout=5s",
            ]);
            (out, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let resource = kube::api::ApiResource::erase::<stellaops_crds::Scan>(&());
    let scans: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &resource);
    scans
        .patch_status(
            "nginx-1-27",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "Passed", "message": "test",
            "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 1}]}})),
        )
        .await
        .expect("status patch");
    let (out, elapsed) = waiter.await.unwrap();
    assert!(
        out.status.success(),
        "kubectl wait failed after {elapsed:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("condition met"));

    let deleted = tokio::task::spawn_blocking({
        let kubectl = kubectl.clone();
        move || kubectl.ok(&["delete", "scan", "nginx-1-27", "-n", "default"])
    })
    .await
    .unwrap();
    assert!(deleted.contains("deleted"), "{deleted}");
    assert!(
        emulator
            .objects("stella-ops.org/v1alpha1", "Scan")
            .is_empty()
    );
    let _ = std::fs::remove_dir_all(&dir);
    emulator.shutdown().await;
}
