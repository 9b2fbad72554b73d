//! The binary itself, as a user runs it.

use std::process::Command;

use crate::repo_root;

fn operator(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stellaops-operator"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run stellaops-operator")
}

#[test]
fn preview_of_the_samples_exits_zero_and_reports_each() {
    let out = operator(&["preview", "-f", "config/samples/"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("8 valid, 0 invalid, 0 skipped"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for kind in stellaops_crds::KINDS {
        assert!(
            stdout.contains(&format!("\nkind: {kind}\n")),
            "{kind} missing from preview output"
        );
    }
}

#[test]
fn preview_of_an_invalid_example_exits_non_zero_naming_file_document_and_field() {
    let out = operator(&[
        "preview",
        "-f",
        "config/samples/invalid/scan-unknown-severity.yaml",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config/samples/invalid/scan-unknown-severity.yaml#1 Scan default/bad-severity: spec.policy.failOn: Unsupported value"),
        "{stderr}"
    );
}

#[test]
fn crdgen_check_passes_on_the_committed_yaml() {
    let out = operator(&["crdgen", "--check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn help_documents_every_run_flag() {
    let out = operator(&["run", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--namespace",
        "--metrics-addr",
        "--leader-election",
        "--lease-name",
        "--worker-image",
        "--log-format",
        "--context",
    ] {
        assert!(help.contains(flag), "run --help lacks {flag}");
    }
}

/// Issue 17 item 5: structs holding a database URL or a private key never show it in
/// `Debug`, and `--help` never prints the value of `DATABASE_URL`.
#[test]
fn secrets_never_show_in_debug_output_or_help() {
    use clap::Parser;
    const SECRET: &str = "pa55-SECRET-0f9e";
    let url = format!("postgres://operator:{SECRET}@db.example:5432/stellaops");
    let cli = stellaops_operator::cli::Cli::parse_from([
        "stellaops-operator",
        "run",
        "--database-url",
        &url,
    ]);
    let shown = format!("{cli:?} {cli:#?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("REDACTED"), "{shown}");

    let ca = stellaops_controllers::zastava_policy::StoredCa {
        cert_pem: "-----BEGIN CERTIFICATE-----\nPUBLIC\n-----END CERTIFICATE-----\n".into(),
        key_pem: format!("-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n"),
        not_after: 0,
        previous: None,
    };
    let shown = format!("{ca:?} {ca:#?}");
    assert!(
        !shown.contains(SECRET) && shown.contains("PUBLIC"),
        "{shown}"
    );

    let mut inputs = stellaops_controllers::platform::Inputs::default();
    inputs.secrets.insert(
        ("stellaops".into(), "release-key".into()),
        [("cosign.pub".to_string(), SECRET.to_string())].into(),
    );
    let shown = format!("{inputs:?}");
    assert!(
        !shown.contains(SECRET) && shown.contains("cosign.pub"),
        "{shown}"
    );

    let help = Command::new(env!("CARGO_BIN_EXE_stellaops-operator"))
        .args(["run", "--help"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("DATABASE_URL") && !text.contains(SECRET),
        "{text}"
    );
}
