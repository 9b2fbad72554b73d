//! `stellaops-worker vex ingest` through the real binary and database.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../policy/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn vex_ingest(database_url: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stellaops-worker"))
        .args(["vex", "ingest"])
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stellaops-worker");
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn a_directory_is_ingested_and_a_bad_document_is_refused_naming_the_field() {
    let Some(database_url) = stellaops_testing::fresh_database("workers_vex").await else {
        return;
    };
    let pool = stellaops_store::connect(&database_url).await.unwrap();
    stellaops_store::migrate(&pool).await.unwrap();
    let dir = std::env::temp_dir().join(format!("stellaops-vex-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.as_path().join("a-good.json"),
        fixture("openvex-0.2.0.json"),
    )
    .unwrap();
    let broken = String::from_utf8(fixture("openvex-0.2.0.json"))
        .unwrap()
        .replace(
            "\"@id\": \"https://openvex.dev/docs/example/vex-9fb3463de1b57\"",
            "\"@id\": \"https://example.com/other\"",
        )
        .replace("\"status\": \"fixed\"", "\"status\": \"maybe\"");
    std::fs::write(dir.as_path().join("b-broken.json"), broken).unwrap();
    std::fs::write(dir.as_path().join("notes.txt"), "not a document").unwrap();
    let path = dir.to_str().unwrap();

    let out = vex_ingest(
        &database_url,
        &["--format", "openvex", "--provider", "wolfi", path],
        None,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "a refused document fails the run");
    assert!(
        stdout.contains("a-good.json") && stdout.contains("stored, 5 statements"),
        "{stdout}"
    );
    assert!(
        stderr.contains("b-broken.json: refused: statements[0].status: \"maybe\" is not one of"),
        "{stderr}"
    );
    assert_eq!(
        stellaops_store::vex::statement_count(&pool, "wolfi")
            .await
            .unwrap(),
        5
    );

    // The same document on standard input: nothing changes.
    let out = vex_ingest(
        &database_url,
        &["--format", "openvex", "--provider", "wolfi", "-"],
        Some(&fixture("openvex-0.2.0.json")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing changed"));

    // The other formats through the same command.
    for (format, name, statements) in [
        ("csaf", "csaf-vex-2.0.json", 3),
        ("cyclonedx", "cyclonedx-1.6-vex.json", 2),
    ] {
        let out = vex_ingest(
            &database_url,
            &["--format", format, "--provider", format, "-"],
            Some(&fixture(name)),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stellaops_store::vex::statement_count(&pool, format)
                .await
                .unwrap(),
            statements
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
