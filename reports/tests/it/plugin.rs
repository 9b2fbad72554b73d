//! `kubectl stellaops` (the kubectl-stellaops binary of the workspace) against the reports
//! server, with a kubeconfig as kubectl uses it.

use std::path::PathBuf;
use std::process::Command;

use crate::fixture;

/// target/<profile>/kubectl-stellaops, beside this test's executable (`cargo test
/// --workspace` builds it); `None` (skip) when absent outside CI.
fn plugin() -> Option<PathBuf> {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent()?.parent()?.join("kubectl-stellaops");
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{} is missing but CI=true", path.display());
    }
    eprintln!(
        "skipped: {} is missing (`cargo build -p kubectl-stellaops`)",
        path.display()
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_shows_reports_explains_verdicts_and_fetches_sboms() {
    let Some(plugin) = plugin() else {
        return;
    };
    let Some(f) = fixture::start("reports_plugin").await else {
        return;
    };
    crate::api::seed(&f).await;
    let kubeconfig = f.kubeconfig("sam", &f.client_ca.issue("sam", &["security"], &[]));
    let run = |args: &[&str]| {
        let out = Command::new(&plugin)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, report, err) = run(&["report", "web"]);
    assert!(ok, "{err}");
    assert!(report.contains("Verdict:   Fail"), "{report}");
    assert!(
        report.contains("critical 1 · high 1 · medium 0 · low 0"),
        "{report}"
    );
    let first = report
        .lines()
        .find(|l| l.starts_with("CVE-2024-0001"))
        .unwrap();
    assert_eq!(
        first.split_whitespace().collect::<Vec<_>>(),
        [
            "CVE-2024-0001",
            "critical",
            "debian/openssl",
            "3.0.11",
            "9.9.9",
            "fails",
            "threshold"
        ]
    );

    let (ok, all, _) = run(&["report", "-A"]);
    assert!(ok);
    assert_eq!(all.lines().count(), 1 + 3, "{all}");
    let (ok, yaml, _) = run(&["report", "api", "-o", "yaml"]);
    assert!(ok);
    let api: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(api["verdict"], "Pass");

    // Why: by the reference a Scan used, across namespaces: the latest result is team-b's.
    let (ok, why, err) = run(&["why", "registry.example/acme/web:1.0", "-A"]);
    assert!(ok, "{err}");
    assert!(
        why.starts_with("registry.example/acme/web:1.0 (sha256:"),
        "{why}"
    );
    assert!(why.contains(" is Warn: "), "{why}");
    assert!(
        why.contains("CVE-2024-0004 low in express 4.18.0: warns by threshold"),
        "{why}"
    );
    let (ok, why, _) = run(&["why", &fixture::digest(1), "-n", "team-a"]);
    assert!(ok);
    assert!(
        why.contains(" is Fail: ") && why.contains("1 finding(s) ignored"),
        "{why}"
    );
    let (ok, _, err) = run(&["why", "nowhere:1"]);
    assert!(!ok);
    assert!(
        err.contains("no Scan of nowhere:1 in namespace \"team-a\""),
        "{err}"
    );

    // SBOMs come through the API, not S3 credentials.
    let (ok, cyclonedx, _) = run(&["sbom", "web"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&cyclonedx).unwrap()["bomFormat"],
        "CycloneDX"
    );
    let (ok, spdx, _) = run(&["sbom", "web", "-o", "spdx"]);
    assert!(ok);
    assert!(spdx.contains("SPDX-2.3"));

    // Refusals read as kubectl's.
    let bob = f.kubeconfig("bob", &f.client_ca.issue("bob", &[], &[]));
    let out = Command::new(&plugin)
        .arg("--kubeconfig")
        .arg(&bob)
        .args(["report", "web"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("Error from server (Forbidden): vulnerabilityreports.reports.stella-ops.org \"web\" is forbidden: User \"bob\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
