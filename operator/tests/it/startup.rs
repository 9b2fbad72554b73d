//! `stellaops-operator run` gets as far as its first request against an `https://` API
//! server: TLS is set up by the real kube client from a kubeconfig, with the webhook's
//! TLS server beside it. Once two rustls crypto providers were compiled in and `run`
//! panicked here before any request; nothing saw it because every controller test uses
//! the `tower_test` mock.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::repo_root;

/// Crates that are a rustls crypto provider other than ring.
const OTHER_PROVIDERS: [&str; 4] = [
    "aws-lc-rs",
    "aws-lc-sys",
    "aws-lc-fips-sys",
    "rustls-openssl",
];

#[test]
fn the_workspace_has_one_rustls_crypto_provider() {
    // Cargo.lock lists only what the workspace's enabled features pull in, so a second
    // provider reappearing anywhere (say, an AWS SDK default feature) shows here.
    let lock = std::fs::read_to_string(repo_root().join("Cargo.lock")).unwrap();
    let names: Vec<&str> = lock
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|l| l.trim_end_matches('"'))
        .collect();
    assert!(names.contains(&"ring"), "ring is the provider we use");
    for other in OTHER_PROVIDERS {
        assert!(
            !names.contains(&other),
            "{other} is in Cargo.lock: a second rustls crypto provider makes rustls' default \
             ambiguous (`cargo tree -i {other}` shows who brings it)"
        );
    }
}

#[test]
fn run_starts_against_an_https_kubeconfig_without_panicking() {
    // Nothing listens on the port: the client is built (TLS config and all), the webhook's
    // TLS server starts, and the first request fails with a connection error.
    let port = stellaops_testing::ports::unused_port();
    let dir = std::env::temp_dir().join(format!("stellaops-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"https://127.0.0.1:{port}\", insecure-skip-tls-verify: true}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\nusers: [{{name: u, user: {{token: t}}}}]\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stellaops-operator"))
        .args([
            "run",
            "--leader-election",
            "false",
            "--metrics-addr",
            "127.0.0.1:0",
            "--webhook-addr",
            "127.0.0.1:0",
            "--webhook-health-addr",
            "127.0.0.1:0",
            "--reports-addr",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("DATABASE_URL")
        .current_dir(repo_root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("`run` neither failed nor stopped within 30 s against an unreachable server");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(!stderr.contains("panicked"), "run panicked:\n{stderr}");
    assert!(
        !status.success(),
        "an unreachable API server is an error:\n{stderr}"
    );
    assert!(
        stderr.contains("reaching the Kubernetes API"),
        "the error names what failed:\n{stderr}"
    );
    // Given `:0`, each server logs the port it got, not the `:0` it was asked for.
    let plain = without_ansi_escapes(&stderr);
    let serving: Vec<&str> = plain.lines().filter(|l| l.contains(" serving ")).collect();
    assert!(
        serving.len() >= 2,
        "the servers log their addresses:\n{plain}"
    );
    for line in serving {
        for (_, rest) in line
            .match_indices("127.0.0.1:")
            .map(|(i, _)| line.split_at(i + 10))
        {
            let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
            assert!(port.parse::<u16>().is_ok_and(|p| p != 0), "{line}");
        }
    }
}

/// `text` without the terminal colour sequences (`ESC [ ... m`) the log is written with.
fn without_ansi_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
