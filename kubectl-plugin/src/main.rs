//! `kubectl stellaops`: read scan results through the `reports.stella-ops.org` API (never
//! with database or S3 credentials): a Scan's report, why an image has its verdict, and a
//! Scan's SBOM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use http_body_util::BodyExt as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

const API: &str = "/apis/reports.stella-ops.org/v1alpha1";

/// Stella Ops scan results from the cluster: `kubectl stellaops report|why|sbom`.
#[derive(Parser, Debug)]
#[command(name = "kubectl-stellaops", version, about)]
struct Cli {
    /// Namespace (default: the context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, global = true)]
    all_namespaces: bool,
    /// Kubeconfig context.
    #[arg(long, global = true)]
    context: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// Longest one request may take, as kubectl's flag: `30s`, `2m`, `1h` (a bare number
    /// is seconds).
    #[arg(long, global = true, default_value = "60s", value_parser = parse_timeout)]
    request_timeout: std::time::Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A Scan's vulnerability report (its findings and what decided each); without a
    /// name, every report in the namespace (or all with -A).
    Report {
        /// The Scan.
        scan: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Why an image (a digest, or the reference a Scan used) has its verdict.
    Why {
        /// `sha256:…`, or the image as scanned (`registry/app:1.2`).
        image: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// A Scan's SBOM document.
    Sbom {
        /// The Scan.
        scan: String,
        /// Format.
        #[arg(short, long, value_enum, default_value_t = SbomFormat::Cyclonedx)]
        output: SbomFormat,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SbomFormat {
    Cyclonedx,
    Spdx,
}

/// Largest answer the plugin reads: a report or SBOM bounded by the server is far smaller.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// `--request-timeout`: `30s`, `2m`, `1h` or a number of seconds; more than zero.
fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 2m or 1h"))?;
    let seconds = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }
    .filter(|s| *s > 0)
    .ok_or_else(|| format!("{text:?} is not a duration like 30s, 2m or 1h (more than zero)"))?;
    Ok(std::time::Duration::from_secs(seconds))
}

struct Cluster {
    client: kube::Client,
    namespace: String,
    /// Longest one request may take (`--request-timeout`).
    timeout: std::time::Duration,
}

impl Cluster {
    async fn connect(cli: &Cli) -> anyhow::Result<Cluster> {
        let options = KubeConfigOptions {
            context: cli.context.clone(),
            ..Default::default()
        };
        let config = match &cli.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
            }
            None if cli.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
            None => kube::Config::infer().await?,
        };
        let namespace = cli
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        Ok(Cluster {
            client: kube::Client::try_from(config)?,
            namespace,
            timeout: cli.request_timeout,
        })
    }

    /// GET `path`: its body when the server answers 2xx (read up to [`MAX_BODY`], within
    /// `--request-timeout`), the server's `Status` message otherwise.
    async fn get_raw(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let request = http::Request::get(path)
            .header(http::header::ACCEPT, "application/json")
            .body(kube::client::Body::from(Vec::new()))?;
        let exchange = async {
            let response = self.client.send(request).await.map_err(explain)?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|error| {
                    if error.is::<http_body_util::LengthLimitError>() {
                        anyhow::anyhow!(
                            "the answer to GET {path} is larger than {} MiB; refused",
                            MAX_BODY >> 20
                        )
                    } else {
                        anyhow::anyhow!("reading the answer to GET {path}: {error}")
                    }
                })?
                .to_bytes();
            anyhow::Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no complete answer to GET {path} within {} s (--request-timeout)",
                    self.timeout.as_secs()
                )
            })??;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        Err(match serde_json::from_slice::<kube::core::Status>(&body) {
            Ok(answer) => explain(kube::Error::Api(Box::new(answer))),
            Err(_) => anyhow::anyhow!("the server answered GET {path} with {status}"),
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&self.get_raw(path).await?)?)
    }

    /// Every item of a LIST, following continue tokens.
    async fn list(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut token = String::new();
        loop {
            let separator = if path.contains('?') { '&' } else { '?' };
            let page = self
                .get(&format!("{path}{separator}limit=500&continue={token}"))
                .await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["metadata"]["continue"].as_str() {
                Some(next) if !next.is_empty() => token = next.to_string(),
                _ => return Ok(items),
            }
        }
    }

    fn scope(&self, all: bool) -> String {
        if all {
            String::new()
        } else {
            format!("/namespaces/{}", self.namespace)
        }
    }
}

/// The API server's message, as kubectl shows it.
fn explain(error: kube::Error) -> anyhow::Error {
    match error {
        kube::Error::Api(status) => {
            anyhow::anyhow!("Error from server ({}): {}", status.reason, status.message)
        }
        other => other.into(),
    }
}

fn print(
    value: &Value,
    output: Output,
    table: impl FnOnce(&Value) -> String,
) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Yaml => print!("{}", serde_yaml::to_string(value)?),
        Output::Table => print!("{}", table(value)),
    }
    Ok(())
}

/// Columns padded to their widest cell, as kubectl prints them.
fn columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn summary(report: &Value) -> String {
    let s = &report["summary"];
    format!(
        "critical {} · high {} · medium {} · low {}",
        s["critical"], s["high"], s["medium"], s["low"]
    )
}

fn findings_table(report: &Value, only_deciding: bool) -> String {
    let mut rows = vec![
        [
            "ID",
            "SEVERITY",
            "PACKAGE",
            "INSTALLED",
            "FIXED",
            "OUTCOME",
            "DECIDED BY",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for f in report["findings"].as_array().into_iter().flatten() {
        if only_deciding && !matches!(f["outcome"].as_str(), Some("fails" | "warns")) {
            continue;
        }
        rows.push(vec![
            text(&f["id"]),
            text(&f["severity"]),
            text(&f["package"]["name"]),
            text(&f["installedVersion"]),
            text(&f["fixedVersion"]),
            text(&f["outcome"]),
            text(&f["decidedBy"]),
        ]);
    }
    if rows.len() == 1 {
        return "No findings.\n".into();
    }
    columns(&rows)
}

fn report_text(report: &Value) -> String {
    let meta = &report["metadata"];
    format!(
        "Scan:      {}/{}\nImage:     {}\nDigest:    {}\nVerdict:   {}\nPolicy:    {}\nScanned:   {}\nFindings:  {}\n\n{}",
        text(&meta["namespace"]),
        text(&meta["name"]),
        text(&report["image"]),
        text(&report["imageDigest"]),
        text(&report["verdict"]),
        text(&report["policyDigest"]),
        text(&report["scannedAt"]),
        summary(report),
        findings_table(report, false),
    )
}

fn reports_table(list: &Value) -> String {
    let mut rows = vec![
        [
            "NAMESPACE",
            "NAME",
            "IMAGE",
            "VERDICT",
            "CRITICAL",
            "HIGH",
            "MEDIUM",
            "LOW",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in list.as_array().into_iter().flatten() {
        let s = &r["summary"];
        rows.push(vec![
            text(&r["metadata"]["namespace"]),
            text(&r["metadata"]["name"]),
            text(&r["image"]),
            text(&r["verdict"]),
            text(&s["critical"]),
            text(&s["high"]),
            text(&s["medium"]),
            text(&s["low"]),
        ]);
    }
    columns(&rows)
}

/// Why `report` has its verdict: what failed or warned, and what decided it.
fn why_text(report: &Value) -> String {
    let verdict = text(&report["verdict"]);
    let mut out = format!(
        "{} ({}) is {verdict}: {} (Scan {}/{}, policy {}, {})\n",
        text(&report["image"]),
        text(&report["imageDigest"]),
        summary(report),
        text(&report["metadata"]["namespace"]),
        text(&report["metadata"]["name"]),
        text(&report["policyDigest"]),
        text(&report["scannedAt"]),
    );
    let deciding: Vec<&Value> = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| matches!(f["outcome"].as_str(), Some("fails" | "warns")))
        .collect();
    if deciding.is_empty() {
        out.push_str("Nothing fails or warns.\n");
    }
    for f in deciding {
        out.push_str(&format!(
            "  {} {} in {} {}: {} by {} — {}\n",
            text(&f["id"]),
            text(&f["severity"]),
            text(&f["package"]["name"]),
            text(&f["installedVersion"]),
            text(&f["outcome"]),
            text(&f["decidedBy"]),
            text(&f["reason"]),
        ));
    }
    let ignored = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["outcome"] == "ignored")
        .count();
    if ignored > 0 {
        out.push_str(&format!(
            "{ignored} finding(s) ignored (VEX or a waiver): `kubectl stellaops report` lists them.\n"
        ));
    }
    out
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cluster = Cluster::connect(&cli).await?;
    match &cli.command {
        Command::Report {
            scan: Some(scan),
            output,
        } => {
            let path = format!(
                "{API}/namespaces/{}/vulnerabilityreports/{scan}",
                cluster.namespace
            );
            print(&cluster.get(&path).await?, *output, report_text)
        }
        Command::Report { scan: None, output } => {
            let path = format!(
                "{API}{}/vulnerabilityreports",
                cluster.scope(cli.all_namespaces)
            );
            let items = Value::Array(cluster.list(&path).await?);
            print(&items, *output, reports_table)
        }
        Command::Why { image, output } => {
            // The latest report of the image among the Scans in scope (all namespaces with
            // -A): the verdict with the findings that decided it.
            let path = format!(
                "{API}{}/vulnerabilityreports",
                cluster.scope(cli.all_namespaces)
            );
            let report = cluster
                .list(&path)
                .await?
                .into_iter()
                .filter(|r| r["image"] == image.as_str() || r["imageDigest"] == image.as_str())
                .max_by_key(|r| r["scannedAt"].as_str().unwrap_or_default().to_string());
            let Some(report) = report else {
                let scope = if cli.all_namespaces {
                    "any namespace".to_string()
                } else {
                    format!("namespace {:?} (-A looks in all)", cluster.namespace)
                };
                bail!("no Scan of {image} in {scope}");
            };
            print(&report, *output, why_text)
        }
        Command::Sbom { scan, output } => {
            let format = match output {
                SbomFormat::Cyclonedx => "cyclonedx",
                SbomFormat::Spdx => "spdx",
            };
            let path = format!(
                "{API}/namespaces/{}/sbomreports/{scan}/document?format={format}",
                cluster.namespace
            );
            let bytes = cluster.get_raw(&path).await?;
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&bytes)?;
            if !bytes.ends_with(b"\n") {
                stdout.write_all(b"\n")?;
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
