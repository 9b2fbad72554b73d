//! Mirror throughput next to the references issue 8 names, in the same run:
//! * serving `index.json` and a 10 MB `bundle.json` with auth and budgets on, against
//!   nginx serving the same files from the same directory with the same htpasswd (wrk),
//!   then both without auth; our server runs as `mirror serve` runs it
//!   ([`stellaops_workers::mirror::serve::serve`]: connection limits, header timeout,
//!   the client's address). Each figure is the median of [`ROUNDS`] rounds, ours and
//!   nginx back to back in each (which goes first alternates), so load from elsewhere on
//!   the machine weighs on both alike;
//! * syncing 2,000 objects (~500 MB, mixed sizes) from the local S3 server, against
//!   `aws s3 sync --delete --size-only`, and a no-change re-sync of each
//!   (`STELLAOPS_MIRROR_BENCH=serve` skips it).
//!
//! Run through scripts/bench.sh (needs the S3 server, nginx, wrk and the AWS CLI).
//! Prints figures; asserts nothing but that both sides served and synced.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use base64::Engine;
use stellaops_workers::mirror::serve::{Mirror, MirrorConfig, serve};

/// Rounds per serving figure (STELLAOPS_MIRROR_ROUNDS overrides).
static ROUNDS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::env::var("STELLAOPS_MIRROR_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
});

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn wrk(url: &str, auth: &str) -> f64 {
    let out = Command::new("wrk")
        .args([
            "-t2",
            "-c32",
            "-d5s",
            "-H",
            &format!("Authorization: Basic {auth}"),
            url,
        ])
        .output()
        .expect("wrk (scripts/bench.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let non_2xx = text.lines().any(|l| l.contains("Non-2xx"));
    assert!(!non_2xx, "wrk saw errors for {url}:\n{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Start `mirror` the way `mirror serve` does, on a free port.
async fn start(mirror: Mirror) -> (u16, tokio::task::JoinHandle<()>) {
    let port = stellaops_testing::ports::unused_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let task = tokio::spawn(serve(
        listener,
        Arc::new(mirror),
        std::future::pending::<()>(),
    ));
    (port, task)
}

fn start_nginx(root: &Path, htpasswd: &Path, port: u16, dir: &Path) -> Child {
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; worker_processes 2; pid {pid}; error_log {dir}/error.log;
             events {{ worker_connections 1024; }}
             http {{ access_log off; sendfile on; tcp_nopush on;
               client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
               uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
               server {{ listen 127.0.0.1:{port};
                 location /concelier/exports/ {{ auth_basic mirror; auth_basic_user_file {htpasswd};
                   alias {root}/; }}
                 location /open/ {{ alias {root}/; }} }} }}",
            pid = dir.join("nginx.pid").display(),
            dir = dir.display(),
            root = root.join("2025-01-15/mirror").display(),
            htpasswd = htpasswd.display(),
        ),
    )
    .unwrap();
    Command::new("nginx")
        .args([
            "-c",
            conf.to_str().unwrap(),
            "-e",
            dir.join("error.log").to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("nginx (scripts/bench.sh installs it)")
}

async fn serving(dir: &Path) {
    let root = dir.join("exports");
    let mirror_dir = root.join("2025-01-15/mirror/primary");
    std::fs::create_dir_all(&mirror_dir).unwrap();
    std::fs::write(
        root.join("2025-01-15/mirror/index.json"),
        br#"{"exportId":"2025-01-15","domains":["primary"]}"#,
    )
    .unwrap();
    std::fs::write(mirror_dir.join("bundle.json"), vec![b'a'; 10 << 20]).unwrap();
    let htpasswd = dir.join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("bench:{}\n", bcrypt::hash("bench-password", 5).unwrap()),
    )
    .unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("bench:bench-password");

    let config = |require_authentication: bool| MirrorConfig {
        root: root.clone(),
        domain_id: "primary".into(),
        active_export_id: None,
        require_authentication,
        htpasswd: require_authentication.then(|| htpasswd.clone()),
        max_index_requests_per_hour: if require_authentication { u32::MAX } else { 0 },
        max_download_requests_per_hour: if require_authentication { u32::MAX } else { 0 },
        signature_key: None,
    };
    let (ours, server) = start(Mirror::new(config(true)).unwrap()).await;
    // Without authentication on either side: nginx's raw file serving as the ceiling.
    let (open_port, open_server) = start(Mirror::new(config(false)).unwrap()).await;
    let nginx_port = stellaops_testing::ports::unused_port();
    let mut nginx = start_nginx(&root, &htpasswd, nginx_port, dir);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let index = "/concelier/exports/index.json";
    let bundle = "/concelier/exports/mirror/primary/bundle.json";
    let cases = [
        ("index.json", ours, index, index.to_string(), auth.clone()),
        (
            "10 MB bundle.json",
            ours,
            bundle,
            "/concelier/exports/primary/bundle.json".to_string(),
            auth.clone(),
        ),
        (
            "index.json (no auth)",
            open_port,
            index,
            "/open/index.json".to_string(),
            "none".to_string(),
        ),
        (
            "10 MB bundle.json (no auth)",
            open_port,
            bundle,
            "/open/primary/bundle.json".to_string(),
            "none".to_string(),
        ),
    ];
    println!(
        "serving: wrk -t2 -c32 -d5s, {} rounds, ours and nginx back to back; load average {}",
        *ROUNDS,
        load_average()
    );
    let mut rates = vec![(Vec::new(), Vec::new()); cases.len()];
    for round in 0..*ROUNDS {
        for (case, (_, port, path, nginx_path, auth)) in cases.iter().enumerate() {
            let ours_url = format!("http://127.0.0.1:{port}{path}");
            let nginx_url = format!("http://127.0.0.1:{nginx_port}{nginx_path}");
            let auth = auth.clone();
            let (ours_rate, nginx_rate) = tokio::task::spawn_blocking(move || {
                if round % 2 == 0 {
                    let ours = wrk(&ours_url, &auth);
                    (ours, wrk(&nginx_url, &auth))
                } else {
                    let nginx = wrk(&nginx_url, &auth);
                    (wrk(&ours_url, &auth), nginx)
                }
            })
            .await
            .unwrap();
            rates[case].0.push(ours_rate);
            rates[case].1.push(nginx_rate);
        }
    }
    for ((name, ..), (ours_rates, nginx_rates)) in cases.iter().zip(&rates) {
        let ratios: Vec<f64> = ours_rates
            .iter()
            .zip(nginx_rates)
            .map(|(o, n)| o / n)
            .collect();
        println!(
            "serve {name:<28} ours {:>8.0} req/s | nginx {:>8.0} req/s | ours/nginx {:.2} (rounds: {})",
            median(ours_rates),
            median(nginx_rates),
            median(&ratios),
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("serving done; load average {}", load_average());
    let _ = nginx.kill();
    let _ = nginx.wait();
    server.abort();
    open_server.abort();
}

async fn syncing(dir: &Path, endpoint: &str) {
    let s3 = stellaops_store::s3::client(&stellaops_store::s3::S3Settings {
        endpoint: Some(endpoint.into()),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("mirror-bench-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    // 2,000 objects, ~500 MB: mostly small files and a few large ones.
    let mut total = 0usize;
    let mut uploads = Vec::new();
    for i in 0..2000usize {
        let size = match i % 100 {
            0 => 20 << 20,
            1..=9 => 1 << 20,
            _ => 16 << 10,
        };
        total += size;
        let (s3, bucket) = (s3.clone(), bucket.clone());
        uploads.push(tokio::spawn(async move {
            let key = format!("exports/2025-01-15/mirror/primary/part-{i:04}.json");
            s3.put_object()
                .bucket(&bucket)
                .key(key)
                .body(ByteStream::from(vec![b'z'; size]))
                .send()
                .await
                .unwrap();
        }));
        if uploads.len() == 32 {
            for u in uploads.drain(..) {
                u.await.unwrap();
            }
        }
    }
    for u in uploads {
        u.await.unwrap();
    }
    println!("sync: 2000 objects, {:.0} MB", total as f64 / 1e6);

    let ours_dir: PathBuf = dir.join("ours");
    let aws_dir: PathBuf = dir.join("aws");
    let started = Instant::now();
    let counts =
        stellaops_workers::mirror::sync::sync(&s3, &bucket, "exports", &ours_dir, true, 32)
            .await
            .unwrap();
    let ours = started.elapsed();
    assert_eq!(counts.copied, 2000);
    let aws = |target: &Path| {
        let started = Instant::now();
        let status = Command::new("aws")
            .args([
                "s3",
                "sync",
                &format!("s3://{bucket}/exports"),
                target.to_str().unwrap(),
                "--delete",
                "--size-only",
                "--endpoint-url",
                endpoint,
                "--only-show-errors",
            ])
            .status()
            .expect("aws CLI (scripts/bench.sh installs it)");
        assert!(status.success());
        started.elapsed()
    };
    let aws_first = aws(&aws_dir);
    println!(
        "sync first  ours {:>7.2} s | aws s3 sync {:>7.2} s | ours/aws time {:.2}",
        ours.as_secs_f64(),
        aws_first.as_secs_f64(),
        ours.as_secs_f64() / aws_first.as_secs_f64()
    );
    let started = Instant::now();
    let again = stellaops_workers::mirror::sync::sync(&s3, &bucket, "exports", &ours_dir, true, 32)
        .await
        .unwrap();
    let ours_again = started.elapsed();
    assert_eq!(
        (again.copied, again.bytes),
        (0, 0),
        "a no-change re-sync transfers nothing"
    );
    let aws_again = aws(&aws_dir);
    println!(
        "sync again  ours {:>7.2} s | aws s3 sync {:>7.2} s | ours/aws time {:.2} (transferred: 0 files)",
        ours_again.as_secs_f64(),
        aws_again.as_secs_f64(),
        ours_again.as_secs_f64() / aws_again.as_secs_f64()
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("stellaops-mirror-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    runtime.block_on(async {
        serving(&dir).await;
        if std::env::var("STELLAOPS_MIRROR_BENCH").as_deref() == Ok("serve") {
            return;
        }
        let endpoint = std::env::var("STELLAOPS_TEST_S3_ENDPOINT")
            .expect("STELLAOPS_TEST_S3_ENDPOINT (use scripts/bench.sh)");
        syncing(&dir, &endpoint).await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}
