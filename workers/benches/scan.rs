//! Scanner speed and memory (issue 4):
//! * cold and warm scan of a synthetic ~200 MB image (dpkg database, node_modules,
//!   dist-info folders, jars and incompressible filler) from the local registry, run as
//!   the `stellaops-worker scan` process, with its peak RSS;
//! * policy evaluation (matching + verdict) of 5,000 components against 20,000 advisories.
//!
//! Run through scripts/bench.sh (needs the registry, S3 server and PostgreSQL).

use std::io::Write;
use std::path::{Path, PathBuf};
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
    peak_rss(cmd, started)
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

/// The real Debian image's case (issue 19): layers of real bookworm packages
/// (workers/benches/debian-image.txt, downloaded by scripts/bench-debs.sh), cached under
/// .test-services/bench-image by the package list; the floor (`skopeo copy` of its layers
/// to a directory, then `gzip -dc > /dev/null` of each) against the worker's cold scan
/// (empty layer cache, with the Usage view, source packages, SPDX and the attachments),
/// its warm scan (every layer's fragment from the cache) and peak RSS.
async fn debian_image(registry: &str, database: &str, s3: &aws_sdk_s3::Client, work: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let debs_dir = root.join(".test-services/bench-debs");
    let Ok(complete) = std::fs::read_to_string(debs_dir.join(".complete")) else {
        eprintln!(
            "skipped: the real Debian image needs {} (scripts/bench-debs.sh, run by scripts/bench.sh, downloads it)",
            debs_dir.display()
        );
        return;
    };
    let spec = include_str!("debian-image.txt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&debs_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    files.sort();
    let groups: Vec<Vec<PathBuf>> = spec
        .lines()
        .filter_map(|l| l.split_once(": ").filter(|_| !l.starts_with('#')))
        .map(|(_, names)| {
            names
                .split_whitespace()
                .map(|name| {
                    files
                        .iter()
                        .find(|f| {
                            f.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|n| n.split('_').next() == Some(name))
                        })
                        .unwrap_or_else(|| {
                            panic!(
                                "{name}.deb is not in {}: run scripts/bench-debs.sh",
                                debs_dir.display()
                            )
                        })
                        .clone()
                })
                .collect()
        })
        .collect();
    let entrypoint = "#!/bin/sh\n# The app's entrypoint: serve /app over HTTP.\nset -e\nexport PYTHONDONTWRITEBYTECODE=1\ncd /app\nexec python3 -m http.server \"${PORT:-8080}\"\n";
    let config = json!({
        "Entrypoint": ["/usr/local/bin/entrypoint.sh"],
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PORT=8080"],
        "WorkingDir": "/app",
    });
    // The cache key: the packages (names with versions), the entrypoint and the config.
    let mut key_input = complete.clone();
    for f in &files {
        key_input.push_str(&f.file_name().unwrap().to_string_lossy());
        key_input.push('\n');
    }
    key_input.push_str(spec);
    key_input.push_str(entrypoint);
    key_input.push_str(&config.to_string());
    let key = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key_input.as_bytes()));
    let layout = root.join(".test-services/bench-image").join(&key[..16]);
    let t = Instant::now();
    let cached = layout.join("index.json").exists();
    if !cached {
        let building = layout.with_extension("building");
        let _ = std::fs::remove_dir_all(&building);
        let scratch = work.join("debian-root");
        std::fs::create_dir_all(&scratch).unwrap();
        let slices: Vec<&[PathBuf]> = groups.iter().map(Vec::as_slice).collect();
        let mut layers = stellaops_testing::debian::rootfs_layers(&slices, &scratch);
        // The app layer: the entrypoint script (executable) and what it serves.
        let app = scratch.join("app");
        let _ = std::fs::remove_dir_all(&app);
        std::fs::create_dir_all(app.join("usr/local/bin")).unwrap();
        std::fs::create_dir_all(app.join("app")).unwrap();
        let script = app.join("usr/local/bin/entrypoint.sh");
        std::fs::write(&script, entrypoint).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(app.join("app/index.html"), "<h1>bench</h1>\n").unwrap();
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
            .arg(&app)
            .arg(".")
            .output()
            .unwrap();
        assert!(out.status.success());
        layers.push(out.stdout);
        let _ = std::fs::remove_dir_all(&scratch);
        oci::write_layout_with_config(&building, &layers, "v1", config.clone());
        std::fs::rename(&building, &layout).unwrap();
    }
    oci::push(&layout, "v1", registry, "bench/debian");
    let image = format!("{registry}/bench/debian:v1");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(&manifest_digest["sha256:".len()..]),
        )
        .unwrap(),
    )
    .unwrap();
    let layer_sizes: Vec<u64> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .collect();
    let layer_digests: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    println!(
        "debian image          {} packages, {:.1} MB compressed in {} layers ({}), {} ({} and pushed in {:.1} s)",
        files.len(),
        layer_sizes.iter().sum::<u64>() as f64 / 1e6,
        layer_sizes.len(),
        layer_sizes
            .iter()
            .map(|s| format!("{:.1}", *s as f64 / 1e6))
            .collect::<Vec<_>>()
            .join(" + "),
        manifest_digest,
        if cached { "cached" } else { "built" },
        t.elapsed().as_secs_f64()
    );

    // The verdict signing key: with it the worker seals layer fragments into its cache
    // (what a warm scan reads) and signs the verdict it attaches.
    let (private, _public) = stellaops_store::attestation::generate_key_pair();
    let key_file = work.join("verdict-key.pem");
    std::fs::write(&key_file, private).unwrap();
    let scan = |bucket: &str, force: bool| {
        let started = Instant::now();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stellaops-worker"));
        cmd.args([
            "scan",
            &image,
            "--bucket",
            bucket,
            "--attach",
            "--sbom-format",
            "spdx-json",
        ])
        .env("DATABASE_URL", database)
        .env("STELLAOPS_VERDICT_SIGNING_KEY", &key_file)
        .env(
            "AWS_ENDPOINT_URL",
            std::env::var("STELLAOPS_TEST_S3_ENDPOINT").unwrap(),
        )
        .stdout(std::process::Stdio::piped());
        if force {
            cmd.arg("--force");
        }
        let (elapsed, rss, summary) = peak_rss(cmd, started);
        assert!(
            summary.get("attachError").is_none() && summary.get("attached").is_some(),
            "attach failed: {summary}"
        );
        (elapsed, rss, summary)
    };
    let floor = || {
        let dir = work.join("floor");
        let _ = std::fs::remove_dir_all(&dir);
        let started = Instant::now();
        let out = Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
            ])
            .arg(format!("docker://{image}"))
            .arg(format!("dir:{}", dir.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for layer in &layer_digests {
            let ok = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "gzip -dc '{}' > /dev/null",
                    dir.join(&layer["sha256:".len()..]).display()
                ))
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let elapsed = started.elapsed().as_secs_f64();
        std::fs::remove_dir_all(&dir).unwrap();
        elapsed
    };
    // Interleaved, three of each: the machine is shared, the medians are compared.
    let (mut floors, mut colds, mut rss, mut usage) = (vec![], vec![], vec![], vec![]);
    let mut last_bucket = String::new();
    let mut summary = serde_json::Value::Null;
    for round in 0..3 {
        floors.push(floor());
        // A new bucket: an empty layer cache.
        last_bucket = format!("scan-bench-debian-{}-{round}", std::process::id());
        s3.create_bucket()
            .bucket(&last_bucket)
            .send()
            .await
            .unwrap();
        let (cold, cold_rss, s) = scan(&last_bucket, true);
        assert_eq!(s["layersCached"], 0, "a cold scan reads no fragment: {s}");
        colds.push(cold);
        rss.push(cold_rss);
        usage.push(s["usageMicros"].as_f64().unwrap() / 1e6);
        summary = s;
    }
    // Then, interleaved: warm scans (forced: the image's sealed analysis from the cache,
    // everything after it done again), warm scans of the layers alone (the image analysis
    // deleted first, as for another image built on the same layers: every layer's fragment
    // from the cache, stacked and the Usage view worked out again), and reuses (unforced:
    // the stored result of this digest at this advisory snapshot recorded again for the
    // requester, signed and attached).
    let analysis_key = stellaops_store::s3::layout::image_analysis(
        &manifest_digest,
        stellaops_scanner::analyze::ANALYZER_VERSION,
    );
    let (mut warms, mut warm_rss, mut warm_stages) = (vec![], vec![], vec![]);
    let (mut layer_warms, mut layer_stages) = (vec![], vec![]);
    let (mut reuses, mut reuse_rss) = (vec![], vec![]);
    for _ in 0..3 {
        let (warm, r, s) = scan(&last_bucket, true);
        assert!(
            s["analysisCached"] == true
                && s["layersCached"].as_u64() == Some(layer_digests.len() as u64)
                && s["layersAnalysed"] == 0,
            "a warm scan of the same image reads its analysis from the cache: {s}"
        );
        warms.push(warm);
        warm_rss.push(r);
        warm_stages.push((warm, s["stages"].clone()));
        s3.delete_object()
            .bucket(&last_bucket)
            .key(&analysis_key)
            .send()
            .await
            .unwrap();
        let (warm, r, s) = scan(&last_bucket, true);
        assert!(
            s["analysisCached"] == false
                && s["layersCached"].as_u64() == Some(layer_digests.len() as u64)
                && s["layersAnalysed"] == 0,
            "a warm scan without the image analysis reads every layer's fragment: {s}"
        );
        layer_warms.push(warm);
        warm_rss.push(r);
        layer_stages.push((warm, s["stages"].clone()));
        let (reuse, r, s) = scan(&last_bucket, false);
        assert!(
            s["layersCached"] == 0 && s["layersAnalysed"] == 0 && s["imageBytes"] == 0,
            "an unforced scan of a scanned digest reuses its result: {s}"
        );
        reuses.push(reuse);
        reuse_rss.push(r);
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let range = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        format!("{:.2}–{:.2}", v[0], v[v.len() - 1])
    };
    let (floor_m, cold_m, warm_m) = (median(&floors), median(&colds), median(&warms));
    let max_rss = rss.iter().chain(&warm_rss).cloned().fold(0.0, f64::max);
    println!(
        "debian floor          {floor_m:.2} s median ({} s): skopeo copy docker:// → dir:, then gzip -dc > /dev/null of each layer",
        range(&floors)
    );
    println!(
        "debian scan cold      {cold_m:.2} s median ({} s) = {:.2}× the floor (aim ≤ 0.6×), peak RSS {:.0} MiB (aim ≤ 64 MiB); {} components, {} used by the entrypoint, attached: {}",
        range(&colds),
        cold_m / floor_m,
        median(&rss),
        summary["components"],
        summary["usedComponents"],
        summary["attached"].as_array().map_or(0, Vec::len),
    );
    println!(
        "debian scan warm      {warm_m:.3} s median ({} s), the same image again: its sealed analysis from the cache (aim ≤ 0.15 s), peak RSS {:.0} MiB; highest peak RSS of all {max_rss:.0} MiB",
        range(&warms),
        median(&warm_rss),
    );
    println!(
        "debian scan warm layers {:.3} s median ({} s), every layer's fragment from the cache, no image analysis (another image on the same layers)",
        median(&layer_warms),
        range(&layer_warms),
    );
    println!(
        "debian scan reuse     {:.3} s median ({} s), the stored result of the same digest and snapshot, signed and attached again; peak RSS {:.0} MiB",
        median(&reuses),
        range(&reuses),
        median(&reuse_rss),
    );
    // Where the median warm scans' time went (the worker's own stage clock; the rest is
    // the process starting, connecting and exiting).
    for (what, mut runs) in [("warm", warm_stages), ("layers", layer_stages)] {
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (wall, stages) = &runs[runs.len() / 2];
        let staged: Vec<(String, f64)> = stages
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|s| {
                        (
                            s["name"].as_str().unwrap_or_default().to_string(),
                            s["micros"].as_f64().unwrap_or(0.0) / 1000.0,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let in_stages: f64 = staged.iter().map(|(_, ms)| ms).sum();
        println!(
            "debian {what:<6} stages  {} | outside them (start, connect, exit): {:.1} ms of {:.1} ms",
            staged
                .iter()
                .map(|(name, ms)| format!("{name} {ms:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            wall * 1000.0 - in_stages,
            wall * 1000.0,
        );
    }
    let shares: Vec<f64> = usage.iter().zip(&colds).map(|(u, c)| u / c).collect();
    println!(
        "debian usage view     {:.1} ms median of the cold scan's {cold_m:.2} s = {:.1}% (trace, closure, owners: the worker's usageMicros); entrypoint {}",
        median(&usage) * 1000.0,
        median(&shares) * 100.0,
        summary["entrypoint"],
    );
}

/// Run `cmd` (stdout piped) to its end; (seconds since `started`, peak RSS in MiB, its
/// JSON summary).
fn peak_rss(mut cmd: Command, started: Instant) -> (f64, f64, serde_json::Value) {
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
        std::thread::sleep(Duration::from_millis(10));
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
    debian_image(&registry, &database, &s3, &work).await;
    let _ = std::fs::remove_dir_all(&work);
}
