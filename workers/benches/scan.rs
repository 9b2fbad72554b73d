//! Scanner speed and memory (issue 4):
//! * cold and warm scan of a synthetic ~200 MB image (dpkg database, node_modules,
//!   dist-info folders, jars and incompressible filler) from the local registry, run as
//!   the `stellaops-worker scan` process, with its peak RSS;
//! * policy evaluation (matching + verdict) of 5,000 components against 20,000 advisories.
//!
//! Run through scripts/bench.sh (needs the registry, S3 server and PostgreSQL).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use stellaops_scanner::{AdvisoryRow, Component, MatchKey, Policy, match_components, verdict};
use stellaops_testing::oci;

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    // xorshift: incompressible enough, deterministic.
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

fn layer_dir(root: &Path, files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let _ = std::fs::remove_dir_all(root);
    for (path, bytes) in files {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
    let out = Command::new("tar")
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "-cf",
            "-",
            "-C",
        ])
        .arg(root)
        .arg(".")
        .output()
        .unwrap();
    std::fs::remove_dir_all(root).unwrap();
    out.stdout
}

fn synthetic_image(work: &Path) -> Vec<Vec<u8>> {
    let mut dpkg = String::new();
    for i in 0..400 {
        dpkg.push_str(&format!(
            "Package: pkg{i}\nStatus: install ok installed\nVersion: 1.{i}-1\n\n"
        ));
    }
    let mut base = vec![
        (
            "etc/os-release".to_string(),
            b"ID=debian\nVERSION_ID=\"12\"\n".to_vec(),
        ),
        ("var/lib/dpkg/status".to_string(), dpkg.into_bytes()),
    ];
    for i in 0..60 {
        base.push((
            format!("usr/lib/blob{i}.so"),
            random_bytes(2_000_000, i + 1),
        ));
    }
    let mut app = Vec::new();
    for i in 0..2000 {
        app.push((
            format!("app/node_modules/mod{i}/package.json"),
            format!("{{\"name\": \"mod{i}\", \"version\": \"1.0.{i}\"}}").into_bytes(),
        ));
        app.push((
            format!("app/node_modules/mod{i}/index.js"),
            random_bytes(8_000, 1000 + i),
        ));
    }
    for i in 0..500 {
        app.push((
            format!("usr/lib/python3/site-packages/py{i}-2.0.{i}.dist-info/METADATA"),
            format!("Name: py{i}\nVersion: 2.0.{i}\n").into_bytes(),
        ));
    }
    for i in 0..40 {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut buf);
            let o = zip::write::SimpleFileOptions::default();
            zip.start_file(format!("META-INF/maven/org.ex/lib{i}/pom.properties"), o)
                .unwrap();
            write!(zip, "groupId=org.ex\nartifactId=lib{i}\nversion=3.{i}\n").unwrap();
            zip.start_file(
                "payload.bin",
                o.compression_method(zip::CompressionMethod::Stored),
            )
            .unwrap();
            zip.write_all(&random_bytes(500_000, 5000 + i)).unwrap();
            zip.finish().unwrap();
        }
        app.push((format!("app/lib/lib{i}.jar"), buf.into_inner()));
    }
    for i in 0..20 {
        app.push((
            format!("app/data/blob{i}"),
            random_bytes(1_500_000, 9000 + i),
        ));
    }
    vec![
        layer_dir(&work.join("l1"), &base),
        layer_dir(&work.join("l2"), &app),
    ]
}

/// Run the worker; (seconds, peak RSS in MiB, its JSON summary).
fn run_worker(
    image: &str,
    bucket: &str,
    database: &str,
    force: bool,
) -> (f64, f64, serde_json::Value) {
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stellaops-worker"));
    cmd.args(["scan", image, "--bucket", bucket])
        .env("DATABASE_URL", database)
        .env(
            "AWS_ENDPOINT_URL",
            std::env::var("STELLAOPS_TEST_S3_ENDPOINT").unwrap(),
        )
        .stdout(std::process::Stdio::piped());
    if force {
        cmd.arg("--force");
    }
    let mut child = cmd.spawn().unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            peak_kib = peak_kib.max(
                line.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            );
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "scan failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (elapsed, peak_kib as f64 / 1024.0, summary)
}

fn evaluation() {
    let components: Vec<Component> = (0..5000)
        .map(|i| Component {
            purl: format!("pkg:npm/mod{i}@1.{}.{}", i % 7, i % 13),
            affects_keys: vec![MatchKey::new(
                format!("pkg:npm/mod{i}"),
                &format!("1.{}.{}", i % 7, i % 13),
            )],
            source: String::new(),
            source_version: String::new(),
            kind: "npm".into(),
            name: format!("mod{i}"),
            version: format!("1.{}.{}", i % 7, i % 13),
            layer: "sha256:l".into(),
            path: String::new(),
            used_by_entrypoint: None,
            license: None,
        })
        .collect();
    let rows: Vec<AdvisoryRow> = (0..20000)
        .map(|i| AdvisoryRow {
            merge_hash: format!("m{i}"),
            vuln_id: format!("CVE-2024-{i}"),
            affects_key: format!("pkg:npm/mod{}", i % 5000),
            ecosystem: "npm".into(),
            ranges: json!([{"type": "SEMVER", "events": [{"introduced": format!("1.{}.0", i % 5)}, {"fixed": format!("1.{}.5", i % 5)}]}]),
            versions: vec![],
            severity: Some(["low", "medium", "high", "critical"][i % 4].into()),
        })
        .collect();
    let policy = Policy {
        fail_on: "high".into(),
        warn_on: Some("medium".into()),
        ignore_unfixed: false,
        ..Default::default()
    };
    let mut times = Vec::new();
    let mut found = 0;
    for _ in 0..9 {
        let t = Instant::now();
        let findings = match_components(&components, &rows);
        let _ = verdict(&findings, &policy);
        times.push(t.elapsed());
        found = findings.len();
    }
    times.sort();
    println!(
        "policy evaluation     5000 components × 20000 advisories: median {:.1} ms, max {:.1} ms ({found} findings)",
        times[4].as_secs_f64() * 1000.0,
        times[8].as_secs_f64() * 1000.0
    );
}

#[tokio::main]
async fn main() {
    evaluation();
    let (Some(registry), Some(_), Some(database)) = (
        stellaops_testing::service("STELLAOPS_TEST_REGISTRY"),
        stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT"),
        stellaops_testing::migrated_database_url("scan_bench", &stellaops_store::MIGRATOR).await,
    ) else {
        eprintln!(
            "skipped: image scans need the registry, S3 and PostgreSQL (run scripts/bench.sh)"
        );
        return;
    };
    let pool = stellaops_store::connect(&database).await.unwrap();
    stellaops_store::migrate(&pool).await.unwrap();
    let s3 = stellaops_store::s3::client(&stellaops_store::s3::S3Settings {
        endpoint: std::env::var("STELLAOPS_TEST_S3_ENDPOINT").ok(),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("scan-bench-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let work = std::env::temp_dir().join(format!("stellaops-scan-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let t = Instant::now();
    let layers = synthetic_image(&work);
    let size: usize = layers.iter().map(Vec::len).sum();
    let built = oci::write_layout(&work.join("oci"), &layers, "v1");
    oci::push(&work.join("oci"), "v1", &registry, "bench/app");
    let image = format!("{registry}/bench/app:v1");
    println!(
        "scan image            {:.0} MB uncompressed in {} layers, {} (built and pushed in {:.1} s)",
        size as f64 / 1e6,
        layers.len(),
        built.manifest_digest,
        t.elapsed().as_secs_f64()
    );
    let (cold, cold_rss, summary) = run_worker(&image, &bucket, &database, true);
    println!(
        "scan cold             {cold:.2} s, peak RSS {cold_rss:.0} MiB, {} components, {} layers analysed",
        summary["components"], summary["layersAnalysed"]
    );
    let (warm, warm_rss, summary) = run_worker(&image, &bucket, &database, true);
    println!(
        "scan warm (layer cache) {warm:.2} s, peak RSS {warm_rss:.0} MiB, {} layers from the cache",
        summary["layersCached"]
    );
    let (reuse, reuse_rss, _) = run_worker(&image, &bucket, &database, false);
    println!("scan reuse (same digest and snapshot) {reuse:.2} s, peak RSS {reuse_rss:.0} MiB");
    let _ = std::fs::remove_dir_all(&work);
}
