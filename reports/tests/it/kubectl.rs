//! The real kubectl pointed straight at the reports server, with a kubeconfig whose client
//! certificate (from the test's client CA) stands in for a user the front proxy would name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::fixture::{self, Fixture};

/// The kubectl of `STELLAOPS_TEST_KUBECTL`; `None` (skip) when unset, a failure under CI.
fn kubectl_binary() -> Option<PathBuf> {
    stellaops_testing::service("STELLAOPS_TEST_KUBECTL").map(PathBuf::from)
}

struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    fn new(binary: &Path, f: &Fixture, user: &str, orgs: &[&str]) -> Kubectl {
        let identity = f.client_ca.issue(user, orgs, &[]);
        Kubectl {
            binary: binary.to_path_buf(),
            kubeconfig: f.kubeconfig(user, &identity),
            cache: f.dir.join(format!("cache-{user}")),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
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
async fn kubectl_gets_lists_explains_pages_and_is_refused() {
    let Some(binary) = kubectl_binary() else {
        return;
    };
    let Some(f) = fixture::start("reports_kubectl").await else {
        return;
    };
    crate::api::seed(&f).await;
    // 30 more Scans in team-c, for pages.
    let sbom = fixture::put_sbom(&f.s3, &f.bucket, "registry.example/acme/batch:1").await;
    for i in 0..30u32 {
        fixture::record(
            &f.pool,
            (&sbom.0, &sbom.1),
            "team-c",
            &format!("batch-{i:02}"),
            "registry.example/acme/batch:1",
            100 + i,
            if i % 3 == 0 { "Fail" } else { "Pass" },
            &[],
        )
        .await;
    }
    let sam = Kubectl::new(&binary, &f, "sam", &["security"]);

    // Server-side Table: useful columns, NAMESPACE added by kubectl for -A.
    let table = sam.ok(&["get", "vulnerabilityreports", "-A"]);
    let header = table.lines().next().unwrap();
    for column in [
        "NAMESPACE",
        "NAME",
        "IMAGE",
        "VERDICT",
        "CRITICAL",
        "HIGH",
        "MEDIUM",
        "LOW",
        "AGE",
    ] {
        assert!(header.contains(column), "{table}");
    }
    assert_eq!(table.lines().count(), 1 + 3 + 30, "{table}");
    let web = table.lines().find(|l| l.contains(" web ")).unwrap();
    assert!(
        web.split_whitespace().collect::<Vec<_>>()[..7]
            == [
                "team-a",
                "web",
                "registry.example/acme/web:1.0",
                "Fail",
                "1",
                "1",
                "0"
            ],
        "{web}"
    );
    // Short name, the default namespace of the context, and -o wide.
    let wide = sam.ok(&["get", "vulns", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("DIGEST"), "{wide}");
    assert_eq!(wide.lines().count(), 1 + 2, "team-a only: {wide}");

    // YAML of one report.
    let yaml = sam.ok(&[
        "get",
        "vulnerabilityreport",
        "web",
        "-n",
        "team-a",
        "-o",
        "yaml",
    ]);
    let report: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(report["apiVersion"], "reports.stella-ops.org/v1alpha1");
    assert_eq!(report["findings"][0]["id"], "CVE-2024-0001");
    assert_eq!(report["findings"][0]["decidedBy"], "threshold");

    // Label selectors.
    let failing = sam.ok(&[
        "get",
        "vulnerabilityreports",
        "-A",
        "-l",
        "verdict=Fail",
        "-o",
        "name",
    ]);
    assert_eq!(failing.lines().count(), 1 + 10, "{failing}");
    assert!(
        failing.contains("vulnerabilityreport.reports.stella-ops.org/web"),
        "{failing}"
    );
    let by_field = sam.ok(&[
        "get",
        "sbomreports",
        "-A",
        "--field-selector",
        "metadata.name=worker",
        "-o",
        "name",
    ]);
    assert_eq!(by_field.trim(), "sbomreport.reports.stella-ops.org/worker");

    // Pages of 7: kubectl follows the continue tokens and shows all.
    let paged = sam.ok(&[
        "get",
        "vulnerabilityreports",
        "-n",
        "team-c",
        "--chunk-size",
        "7",
        "-o",
        "name",
    ]);
    assert_eq!(paged.lines().count(), 30, "{paged}");

    // kubectl explain from the OpenAPI.
    let explained = sam.ok(&["explain", "vulnerabilityreport.findings"]);
    for field in ["decidedBy", "fixedVersion", "usedByEntrypoint", "cvss"] {
        assert!(explained.contains(field), "{explained}");
    }
    assert!(
        explained.contains("GROUP:      reports.stella-ops.org")
            || explained.contains("reports.stella-ops.org"),
        "{explained}"
    );

    // Cluster-scoped image verdicts.
    let verdicts = sam.ok(&["get", "imageverdicts"]);
    assert!(
        verdicts.contains(&fixture::digest(1).replace(':', "-")),
        "{verdicts}"
    );

    // `kubectl get --watch` sees a report appear when a scan result is written.
    let mut watching = Command::new(&sam.binary)
        .arg("--kubeconfig")
        .arg(&sam.kubeconfig)
        .args(["get", "vulnerabilityreports", "-n", "team-a", "--watch"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = watching.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = |what: &str| {
        lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("kubectl --watch printed no {what}"))
    };
    assert!(next_line("header").contains("VERDICT"));
    let listed: Vec<String> = (0..2).map(|_| next_line("listed report")).collect();
    assert!(listed.iter().any(|l| l.starts_with("web ")), "{listed:?}");
    fixture::record(
        &f.pool,
        (&sbom.0, &sbom.1),
        "team-a",
        "fresh",
        "registry.example/acme/fresh:3",
        77,
        "Fail",
        &[("CVE-2024-0009", "pkg:npm/express@4.18.0", "high", "fails")],
    )
    .await;
    let seen = next_line("new report");
    assert!(
        seen.split_whitespace().collect::<Vec<_>>()[..5]
            == ["fresh", "registry.example/acme/fresh:3", "Fail", "0", "1"],
        "{seen}"
    );
    // Another team's result is not in this namespace's watch; a rescan of web is.
    fixture::record(
        &f.pool,
        (&sbom.0, &sbom.1),
        "team-b",
        "other",
        "x:1",
        78,
        "Pass",
        &[],
    )
    .await;
    fixture::record(
        &f.pool,
        (&sbom.0, &sbom.1),
        "team-a",
        "web",
        "registry.example/acme/web:1.0",
        1,
        "Pass",
        &[],
    )
    .await;
    let rescanned = next_line("rescanned report");
    assert!(
        rescanned.starts_with("web ") && rescanned.contains("Pass"),
        "{rescanned}"
    );
    watching.kill().unwrap();
    let _ = watching.wait();

    // alice reads her team's reports, and is refused another's in kubectl's words.
    let alice = Kubectl::new(&binary, &f, "alice", &["team-a-devs"]);
    assert_eq!(alice.ok(&["get", "vulns", "-o", "name"]).lines().count(), 3);
    let refused = alice.run(&["get", "vulns", "-n", "team-b"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(
            "Error from server (Forbidden): vulnerabilityreports.reports.stella-ops.org is forbidden: User \"alice\" cannot list resource \"vulnerabilityreports\" in API group \"reports.stella-ops.org\" in the namespace \"team-b\""
        ),
        "{stderr}"
    );
    let refused = alice.run(&["get", "imageverdicts"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at the cluster scope"));
    // A missing object (cluster-scoped: for a namespaced one kubectl then asks the core
    // API whether the namespace exists, which this server alone does not serve).
    let name = fixture::digest(4242).replace(':', "-");
    let missing = sam.run(&["get", "imageverdict", &name]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains(&format!(
            "Error from server (NotFound): imageverdicts.reports.stella-ops.org \"{name}\" not found"
        )),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}
