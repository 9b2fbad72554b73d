//! The plugin binary as kubectl runs it (its behaviour against the reports server is
//! tested in `reports/tests/it/plugin.rs`, which runs this binary).

use std::process::Command;

fn plugin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-stellaops"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_names_each_command_and_the_kubectl_flags() {
    let out = plugin(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "report",
        "why",
        "sbom",
        "--namespace",
        "--all-namespaces",
        "--context",
        "--kubeconfig",
    ] {
        assert!(help.contains(word), "{help}");
    }
    let sbom = String::from_utf8_lossy(&plugin(&["sbom", "--help"]).stdout).into_owned();
    assert!(
        sbom.contains("cyclonedx") && sbom.contains("spdx"),
        "{sbom}"
    );
}

#[test]
fn an_unreachable_cluster_is_an_error_not_a_panic() {
    let dir = std::env::temp_dir().join(format!("kubectl-stellaops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:9\"}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {token: t}}]\n",
    )
    .unwrap();
    let out = plugin(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "report",
        "web",
    ]);
    std::fs::remove_dir_all(&dir).ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
}
