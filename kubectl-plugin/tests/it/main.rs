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

/// A kubeconfig for a plain-HTTP server at `addr`, in a fresh directory.
fn kubeconfig_for(addr: std::net::SocketAddr, tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kubectl-stellaops-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"http://{addr}\"}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u, namespace: team-a}}}}]\ncurrent-context: c\nusers: [{{name: u, user: {{}}}}]\n"),
    )
    .unwrap();
    path
}

/// Serve one connection: read the request head, then let `answer` write (or not).
fn serve_once(
    answer: impl FnOnce(&mut std::net::TcpStream) + Send + 'static,
) -> std::net::SocketAddr {
    use std::io::Read as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        answer(&mut stream);
    });
    addr
}

#[test]
fn an_answer_larger_than_the_cap_is_refused_while_it_is_read() {
    use std::io::Write as _;
    // 100 MiB announced and sent: the plugin stops at its 64 MiB cap.
    let addr = serve_once(|stream| {
        let total: usize = 100 << 20;
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {total}\r\n\r\n"
        );
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..100 {
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let kubeconfig = kubeconfig_for(addr, "big");
    let out = plugin(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "report",
        "web",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("larger than 64 MiB"), "{stderr}");
}

#[test]
fn a_server_that_never_answers_fails_within_the_request_timeout() {
    let addr = serve_once(|_stream| std::thread::sleep(std::time::Duration::from_secs(30)));
    let kubeconfig = kubeconfig_for(addr, "stall");
    let started = std::time::Instant::now();
    let out = plugin(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--request-timeout",
        "2s",
        "report",
        "web",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("within 2 s"), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let bad = plugin(&["--request-timeout", "soon", "report", "web"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a duration"));
}

/// The release packaging the workflow runs: an archive per platform with the binary and
/// README at its root, and a krew manifest whose digests are the archives' own.
#[test]
fn release_archives_unpack_to_a_working_plugin_and_the_krew_manifest_names_their_digests() {
    use sha2::Digest as _;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir =
        std::env::temp_dir().join(format!("kubectl-stellaops-release-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for platform in ["linux_amd64", "darwin_arm64"] {
        let out = Command::new(root.join("scripts/package-plugin.sh"))
            .args(["v1.2.3", platform, env!("CARGO_BIN_EXE_kubectl-stellaops")])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let refused = Command::new(root.join("scripts/package-plugin.sh"))
        .args([
            "v1.2.3",
            "plan9_mips",
            env!("CARGO_BIN_EXE_kubectl-stellaops"),
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!refused.status.success());

    // The archive holds a plugin that runs.
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let archive = dir.join("kubectl-stellaops_v1.2.3_linux_amd64.tar.gz");
    assert!(
        Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&unpacked)
            .status()
            .unwrap()
            .success()
    );
    let version = Command::new(unpacked.join("kubectl-stellaops"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("kubectl-stellaops "));
    assert!(unpacked.join("README.md").is_file());

    let manifest = Command::new(root.join("scripts/krew-manifest.sh"))
        .args(["v1.2.3"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        manifest.status.success(),
        "{}",
        String::from_utf8_lossy(&manifest.stderr)
    );
    let manifest: serde_json::Value = serde_yaml::from_slice(&manifest.stdout).unwrap();
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["spec"]["version"], "v1.2.3");
    let platforms = manifest["spec"]["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2);
    for platform in platforms {
        let labels = &platform["selector"]["matchLabels"];
        let file = format!(
            "kubectl-stellaops_v1.2.3_{}_{}.tar.gz",
            labels["os"].as_str().unwrap(),
            labels["arch"].as_str().unwrap()
        );
        assert!(
            platform["uri"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/v1.2.3/{file}"))
        );
        let bytes = std::fs::read(dir.join(&file)).unwrap();
        assert_eq!(
            platform["sha256"],
            hex::encode(sha2::Sha256::digest(&bytes))
        );
        let recorded = std::fs::read_to_string(dir.join(format!("{file}.sha256"))).unwrap();
        assert!(recorded.starts_with(platform["sha256"].as_str().unwrap()));
        assert_eq!(platform["bin"], "kubectl-stellaops");
    }
    let not_semver = Command::new(root.join("scripts/krew-manifest.sh"))
        .args(["latest"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!not_semver.status.success());
    std::fs::remove_dir_all(&dir).ok();
}
