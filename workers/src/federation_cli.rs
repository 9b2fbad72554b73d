//! `stellaops-worker advisories …` and `stellaops-worker federation …`, with the seed's
//! CLI shape (federation-setup-and-operations.md).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use aws_sdk_s3::primitives::ByteStream;
use clap::{Args, Subcommand};
use sqlx::PgPool;
use stellaops_federation::cursor::Cursor;
use stellaops_federation::dsse::{Signer, TrustedKeys};
use stellaops_federation::export::{ExportOptions, export, export_observed};
use stellaops_federation::import::{ImportOptions, OnConflict, import, import_observed};
use stellaops_federation::sites::{self, PolicyUpdate};
use stellaops_federation::{ingest, osv, validate};
use stellaops_store::s3::S3Settings;

/// `advisories` subcommands.
#[derive(Subcommand, Debug)]
pub enum AdvisoriesCommand {
    /// Print one canonical advisory by merge hash (the seed's `canonical get`).
    Get {
        /// `sha256:<hex>` merge hash.
        merge_hash: String,
    },
    /// Read advisory documents into canonicals and source edges (idempotent); or, with
    /// `--format kev` (CISA's KEV catalog JSON) or `--format epss` (FIRST's daily EPSS CSV,
    /// decompressed), replace the exploitation signals with a newer feed (one file).
    Ingest {
        /// Document format.
        #[arg(long, value_parser = ["osv", "kev", "epss"], default_value = "osv")]
        format: String,
        /// Source name for the edges; derived from each document's id when omitted.
        #[arg(long)]
        source: Option<String>,
        /// Files or directories (read recursively for *.json).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

/// `federation` subcommands.
#[derive(Subcommand, Debug)]
pub enum FederationCommand {
    /// Export, import and validate bundles.
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
    /// One scheduled sync, as the FederationSite CronJob runs it: import every new bundle
    /// from the transport in order, or export the changes after the newest bundle there.
    Sync(SyncArgs),
    /// Serve the federation HTTP API (import, sync status, metrics).
    Serve {
        /// Listen address.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: std::net::SocketAddr,
        /// PEM public keys trusted to sign bundles (files or directories).
        #[arg(
            long = "trusted-key",
            env = "STELLAOPS_TRUSTED_KEYS",
            value_delimiter = ','
        )]
        trusted_keys: Vec<PathBuf>,
        /// Largest request body (read with the limit applied; lowered to an eighth of the
        /// container's memory limit when that is smaller).
        #[arg(long, default_value = "1GB", value_parser = parse_size)]
        max_bundle_size: u64,
        /// Seconds a request body may take to arrive.
        #[arg(long, default_value_t = 300)]
        body_timeout_seconds: u64,
        /// Bearer tokens (a mounted Secret): one `SITE:TOKEN` per line, `*:TOKEN` for any
        /// site; a token bound to a site imports only that site's bundles.
        #[arg(long, env = "STELLAOPS_FEDERATION_TOKENS_FILE")]
        tokens_file: Option<PathBuf>,
        /// PEM CA certificates: clients with a certificate issued by one are authenticated
        /// (HTTPS only, so it needs --tls-cert).
        #[arg(long, env = "STELLAOPS_FEDERATION_CLIENT_CA", requires = "tls_cert")]
        client_ca: Option<PathBuf>,
        /// PEM certificate chain: serve HTTPS (the seed asks for TLS on these endpoints).
        #[arg(long, requires = "tls_key", env = "STELLAOPS_TLS_CERT")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of `--tls-cert`.
        #[arg(long, requires = "tls_cert", env = "STELLAOPS_TLS_KEY")]
        tls_key: Option<PathBuf>,
        /// Failed authentications (a wrong token, a certificate naming no site, a token or
        /// certificate used for another site's bundle) a client address may have per
        /// window; past them it gets 429 until the window passes. 0: no limit.
        #[arg(long, default_value_t = 10)]
        auth_failures_per_window: u32,
        /// Length of the failed-authentication window, in seconds.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        auth_failure_window_seconds: u64,
        /// Client addresses whose failures are tracked at once; further addresses share
        /// one window (memory stays bounded under a flood of addresses).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        auth_failure_max_addresses: u64,
    },
    /// Generate an ES256 signing key pair: PREFIX.pem (private) and PREFIX.pub (public,
    /// to distribute to importing sites).
    Keygen {
        /// Output path prefix.
        #[arg(short = 'o', long = "output", default_value = "federation-signer")]
        prefix: PathBuf,
    },
    /// Federation partners.
    Sites {
        #[command(subcommand)]
        command: SitesCommand,
    },
}

/// `federation bundle` subcommands.
#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Export the changes after a cursor (everything without -c).
    Export(ExportArgs),
    /// Validate and import a bundle from a file, `-` (stdin) or `s3://bucket/key`.
    Import(ImportArgs),
    /// Check a bundle without importing it.
    Validate {
        /// Bundle file, `-` or `s3://bucket/key`.
        file: String,
        /// PEM public keys to check the signature with.
        #[arg(long = "trusted-key")]
        trusted_keys: Vec<PathBuf>,
        /// Fail when the bundle is not signed.
        #[arg(long)]
        require_signature: bool,
        /// Size limit.
        #[arg(long, default_value = "100MB", value_parser = parse_size)]
        max_bundle_size: u64,
    },
}

/// Arguments of `bundle export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Export the changes after this cursor (`2025-01-14T00:00:00Z#0000`).
    #[arg(short = 'c', long = "cursor")]
    cursor: Option<String>,
    /// Output file, `-` for stdout, or `s3://bucket/prefix/` (one object per bundle).
    /// Several bundles to a file are written as FILE-0001.zst, FILE-0002.zst, …
    #[arg(short = 'o', long = "output", default_value = "-")]
    output: String,
    /// This site's id, written into the manifest.
    #[arg(long, env = "STELLAOPS_SITE_ID")]
    site_id: String,
    /// Most items per bundle.
    #[arg(long, default_value_t = 10_000)]
    max_items: usize,
    /// zstd compression level (1–19).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    compression_level: i32,
    /// PEM ECDSA P-256 private key to sign with.
    #[arg(long, env = "STELLAOPS_SIGNING_KEY_FILE")]
    signing_key: Option<PathBuf>,
}

/// Arguments of `bundle import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Bundle file, `-` for stdin, or `s3://bucket/key`.
    file: String,
    /// Validate and report, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the response as JSON.
    #[arg(long)]
    json: bool,
    /// Import even if the cursor is not after the current one.
    #[arg(long)]
    force: bool,
    /// Skip signature verification (only for sites marked trusted; testing only).
    #[arg(long)]
    skip_signature: bool,
    /// Conflict strategy.
    #[arg(long, default_value = "prefer_remote", value_parser = ["prefer_remote", "prefer_local", "fail"])]
    on_conflict: String,
    /// PEM public keys trusted to sign bundles (files, or directories of *.pem).
    #[arg(
        long = "trusted-key",
        env = "STELLAOPS_TRUSTED_KEYS",
        value_delimiter = ','
    )]
    trusted_keys: Vec<PathBuf>,
    /// Expected bundle hash (`sha256:<hex>`).
    #[arg(long)]
    expect_hash: Option<String>,
    /// Absolute size limit before the site's own limit applies.
    #[arg(long, default_value = "1GB", value_parser = parse_size)]
    max_bundle_size: u64,
}

/// Arguments of `federation sync`.
#[derive(Args, Debug)]
pub struct SyncArgs {
    /// For import: the remote site; for export: this site.
    #[arg(long)]
    site_id: String,
    /// `import` or `export`.
    #[arg(long, value_parser = ["import", "export"])]
    direction: String,
    /// Bundles live in this S3 bucket…
    #[arg(long, required_unless_present = "directory")]
    s3_bucket: Option<String>,
    /// …under this prefix.
    #[arg(long, default_value = "")]
    s3_prefix: String,
    /// Or in this directory (a volume for air-gap drops).
    #[arg(long, conflicts_with = "s3_bucket")]
    directory: Option<PathBuf>,
    /// PEM public keys trusted to sign imports (files or directories).
    #[arg(long = "trusted-key", value_delimiter = ',')]
    trusted_keys: Vec<PathBuf>,
    /// PEM private key that signs exports.
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// Conflict strategy of imports.
    #[arg(long, default_value = "prefer_remote", value_parser = ["prefer_remote", "prefer_local", "fail"])]
    on_conflict: String,
    /// Largest bundle accepted.
    #[arg(long, default_value = "100MB", value_parser = parse_size)]
    max_bundle_size: u64,
    /// Sources accepted from the site; all when empty.
    #[arg(long, value_delimiter = ',')]
    allowed_sources: Vec<String>,
    /// Refuse unsigned bundles (import) / sign every bundle (export).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    require_signature: bool,
    /// Display name recorded for the site.
    #[arg(long)]
    display_name: Option<String>,
    /// Most items per exported bundle.
    #[arg(long, default_value_t = 10_000)]
    max_items: usize,
    /// zstd level of exports.
    #[arg(long, default_value_t = 3)]
    compression_level: i32,
}

/// `federation sites` subcommands.
#[derive(Subcommand, Debug)]
pub enum SitesCommand {
    /// List sites with their status, last sync and cursor.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One site's state next to this site's own cursor (the seed's `sites status`).
    Status {
        /// Site id.
        site: String,
    },
    /// Recent imports from a site.
    History {
        /// Site id.
        site: String,
        /// How many.
        #[arg(long, default_value_t = 10)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a trusted site.
    Add {
        /// Site id.
        site: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Change a site's policy.
    Policy {
        /// Site id.
        site: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Keys trusted to sign one site's bundles, kept in the database (used by import,
    /// sync and serve at each import, besides any --trusted-key files).
    Keys {
        #[command(subcommand)]
        command: SiteKeysCommand,
    },
}

/// `federation sites keys` subcommands.
#[derive(Subcommand, Debug)]
pub enum SiteKeysCommand {
    /// Trust a PEM public key (`federation keygen`'s PREFIX.pub) for one site's bundles.
    Add {
        /// Site id (added first with `federation sites add`).
        site: String,
        /// PEM public key file, or `-` for stdin.
        key: PathBuf,
        /// No longer trusted from this time on (RFC 3339, `2027-06-30T00:00:00Z`).
        #[arg(long)]
        not_after: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// List the keys of one site, or of every site.
    List {
        /// Site id; every site when omitted.
        site: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a key for a site (final: it is not added back).
    Revoke {
        /// Site id.
        site: String,
        /// Key id (`sha256:<hex>`, as `list` shows it).
        key_id: String,
    },
}

/// Policy flags.
#[derive(Args, Debug)]
pub struct PolicyArgs {
    /// Display name.
    #[arg(long)]
    display_name: Option<String>,
    /// Accept imports from the site.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    enabled: Option<bool>,
    /// Largest bundle accepted (`100MB`, `1GB`, bytes).
    #[arg(long, value_parser = parse_size)]
    max_bundle_size: Option<u64>,
    /// Sources accepted, comma-separated (`nvd,ghsa,debian`); empty accepts all.
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    allowed_sources: Option<Vec<String>>,
    /// Refuse unsigned bundles.
    #[arg(long)]
    require_signature: Option<bool>,
    /// Allow `--skip-signature` for this site.
    #[arg(long)]
    skip_signature_trusted: Option<bool>,
}

/// `100MB`, `1GB`, `512KiB` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 100MB"))?;
    let factor: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn json_files(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            json_files(&entry, out)?;
        }
    } else if path.extension().is_some_and(|e| e == "json") || path.is_file() {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn s3_location(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    Some((bucket.to_string(), key.to_string()))
}

fn too_large(what: &str, size: u64, max: u64) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} is {size} bytes, more than the {max} allowed (--max-bundle-size); not read"
    )
}

/// Read `reader` into memory, at most `max` bytes: one byte more fails.
fn read_capped(reader: impl Read, what: &str, max: u64) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {what}"))?;
    if bytes.len() as u64 > max {
        return Err(anyhow::anyhow!(
            "{what} is more than the {max} bytes allowed (--max-bundle-size); not read"
        ));
    }
    Ok(bytes)
}

/// An S3 object into memory: its announced size is checked before a byte is buffered,
/// and the body is cut off at `max` in case the announcement was wrong.
async fn read_object_capped(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    max: u64,
) -> anyhow::Result<Vec<u8>> {
    let what = format!("s3://{bucket}/{key}");
    let object = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .with_context(|| format!("reading {what}"))?;
    if let Some(length) = object.content_length()
        && length.max(0) as u64 > max
    {
        return Err(too_large(&what, length.max(0) as u64, max));
    }
    let mut body = object.body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("reading {what}"))?;
        if (bytes.len() + chunk.len()) as u64 > max {
            return Err(anyhow::anyhow!(
                "{what} is more than the {max} bytes allowed (--max-bundle-size); not read"
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// A file into memory: its size is checked before it is read.
fn read_file_capped(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    let what = path.display().to_string();
    let file = std::fs::File::open(path).with_context(|| format!("reading {what}"))?;
    let size = file
        .metadata()
        .with_context(|| format!("reading {what}"))?
        .len();
    if size > max {
        return Err(too_large(&what, size, max));
    }
    read_capped(file, &what, max)
}

/// A bundle from a file, `-` (stdin) or `s3://bucket/key`, at most `max` bytes, checked
/// before it is buffered where the size is known up front.
async fn read_input(source: &str, s3: &S3Settings, max: u64) -> anyhow::Result<Vec<u8>> {
    if source == "-" {
        return read_capped(std::io::stdin().lock(), "stdin", max);
    }
    if let Some((bucket, key)) = s3_location(source) {
        let client = stellaops_store::s3::client(s3).await;
        return read_object_capped(&client, &bucket, &key, max).await;
    }
    read_file_capped(Path::new(source), max)
}

/// Trusted keys from `--trusted-key` values: `PATH` or `SITE=PATH`, a PEM file or a
/// directory of `*.pem`/`*.pub`. A `SITE=` key is trusted for that site only. With
/// `only_site` (a sync of one site) every key is that site's and another `SITE=` is an
/// error; otherwise a bare `PATH` is trusted for every site.
pub fn trusted_keys_for(
    values: &[PathBuf],
    only_site: Option<&str>,
) -> anyhow::Result<TrustedKeys> {
    let mut trusted = TrustedKeys::default();
    for value in values {
        let text = value.to_string_lossy();
        let (site, path) = match text.split_once('=') {
            Some((site, path)) if !site.is_empty() && !site.contains('/') => {
                (Some(site.to_string()), PathBuf::from(path))
            }
            _ => (None, value.clone()),
        };
        let site = match (site, only_site) {
            (Some(site), Some(only)) if site != only => {
                bail!("--trusted-key {text}: a key for site {site} given to a sync of site {only}")
            }
            (site, only) => site.or(only.map(str::to_string)),
        };
        let mut files = Vec::new();
        if path.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                let p = entry?.path();
                if p.extension().is_some_and(|e| e == "pem" || e == "pub") {
                    files.push(p);
                }
            }
            files.sort();
        } else {
            files.push(path.clone());
        }
        for file in files {
            let pem = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            trusted
                .push_pem(&pem, site.as_deref())
                .map_err(|e| anyhow::anyhow!("trusted key {}: {e}", file.display()))?;
        }
    }
    Ok(trusted)
}

/// Trusted keys for commands that may see bundles of any site; bare paths are trusted
/// for every site, which is said on stderr.
fn trusted_keys(paths: &[PathBuf]) -> anyhow::Result<TrustedKeys> {
    let trusted = trusted_keys_for(paths, None)?;
    for id in trusted.unscoped() {
        eprintln!(
            "note: key {id} is trusted for every site; give it as --trusted-key SITE=PATH to trust it for one"
        );
    }
    Ok(trusted)
}

/// Run an `advisories` command.
pub async fn advisories(pool: &PgPool, command: AdvisoriesCommand) -> anyhow::Result<()> {
    let (source, paths) = match command {
        AdvisoriesCommand::Get { merge_hash } => {
            let mut conn = pool.acquire().await?;
            let found = stellaops_store::advisories::stored_canonicals(
                &mut conn,
                std::slice::from_ref(&merge_hash),
            )
            .await?;
            let stored = found
                .get(&merge_hash)
                .with_context(|| format!("no canonical {merge_hash}"))?;
            println!("{}", serde_json::to_string_pretty(&stored.advisory)?);
            return Ok(());
        }
        AdvisoriesCommand::Ingest {
            format,
            source: _,
            paths,
        } if format == "kev" || format == "epss" => {
            return exploit_feed(pool, &format, &paths).await;
        }
        AdvisoriesCommand::Ingest {
            format: _,
            source,
            paths,
        } => (source, paths),
    };
    let mut files = Vec::new();
    for path in &paths {
        json_files(path, &mut files)?;
    }
    let now = chrono::Utc::now();
    let mut documents = Vec::with_capacity(files.len());
    for file in &files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        documents.push(osv::parse(
            &file.display().to_string(),
            &bytes,
            source.as_deref(),
            now,
        )?);
    }
    let summary = ingest::ingest(pool, documents).await?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// `advisories ingest --format kev|epss FILE`.
async fn exploit_feed(pool: &sqlx::PgPool, format: &str, paths: &[PathBuf]) -> anyhow::Result<()> {
    use stellaops_policy::exploits::{MAX_FEED_BYTES, parse_epss, parse_kev};
    let [path] = paths else {
        anyhow::bail!("--format {format} reads one file, not {}", paths.len());
    };
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_FEED_BYTES as u64,
        "{}: {size} bytes is more than a {format} feed may have",
        path.display()
    );
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let replaced = if format == "kev" {
        let catalog = parse_kev(&bytes).with_context(|| format!("{}", path.display()))?;
        stellaops_store::exploits::replace_kev(pool, &catalog).await?
    } else {
        // EPSS files are named epss_scores-YYYY-MM-DD.csv: the date when the comment line
        // (which carries it) was stripped.
        let named_date = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.get(s.len().saturating_sub(10)..))
            .and_then(|d| d.parse().ok());
        let scores =
            parse_epss(&bytes, named_date).with_context(|| format!("{}", path.display()))?;
        stellaops_store::exploits::replace_epss(pool, &scores).await?
    };
    println!("{}", serde_json::to_string_pretty(&replaced)?);
    Ok(())
}

fn numbered(path: &str, index: usize) -> String {
    let p = Path::new(path);
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match p.extension() {
        Some(ext) => format!("{stem}-{index:04}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{index:04}"),
    };
    p.with_file_name(name).display().to_string()
}

/// Run a `federation` command. Returns the process's success.
pub async fn federation(
    pool: &PgPool,
    s3: &S3Settings,
    command: FederationCommand,
) -> anyhow::Result<bool> {
    match command {
        FederationCommand::Bundle {
            command: BundleCommand::Export(args),
        } => {
            let since: Option<Cursor> = args.cursor.as_deref().map(str::parse).transpose()?;
            let signer = match &args.signing_key {
                Some(path) => Some(Signer::from_pem(
                    &std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                )?),
                None => None,
            };
            let options = ExportOptions {
                site_id: args.site_id.clone(),
                since,
                max_items: args.max_items,
                compression_level: args.compression_level,
                signer: signer.as_ref(),
            };
            let started = std::time::Instant::now();
            // Changes exported (the total is not known before the snapshot is read).
            let progress =
                crate::progress::Progress::start("federation bundle export", "changes", None, None);
            let bundles = export_observed(pool, &options, &|bundle| {
                progress.advance(bundle.counts.total(), bundle.bytes.len() as u64)
            })
            .await?;
            progress.finish();
            crate::metrics::EXPORT_DURATION.observe(started.elapsed().as_secs_f64());
            if bundles.is_empty() {
                eprintln!(
                    "no changes after {}",
                    args.cursor.as_deref().unwrap_or("the beginning")
                );
                return Ok(true);
            }
            for (i, bundle) in bundles.iter().enumerate() {
                crate::metrics::BUNDLE_SIZE.observe(bundle.bytes.len() as f64);
                let destination = if args.output == "-" {
                    if bundles.len() > 1 {
                        bail!(
                            "{} bundles (more than --max-items {} changes): write them with -o FILE or s3://",
                            bundles.len(),
                            args.max_items
                        );
                    }
                    std::io::stdout().write_all(&bundle.bytes)?;
                    "<stdout>".to_string()
                } else if let Some((bucket, prefix)) = s3_location(&args.output) {
                    let seq = bundle
                        .cursor
                        .rsplit_once('#')
                        .map(|(_, s)| s)
                        .unwrap_or("0");
                    let key = format!(
                        "{}/bundle-{:0>12}.tar.zst",
                        prefix.trim_end_matches('/'),
                        seq
                    )
                    .trim_start_matches('/')
                    .to_string();
                    stellaops_store::s3::client(s3)
                        .await
                        .put_object()
                        .bucket(&bucket)
                        .key(&key)
                        .body(ByteStream::from(bundle.bytes.clone()))
                        .send()
                        .await
                        .with_context(|| format!("writing s3://{bucket}/{key}"))?;
                    format!("s3://{bucket}/{key}")
                } else {
                    let path = if bundles.len() == 1 {
                        args.output.clone()
                    } else {
                        numbered(&args.output, i + 1)
                    };
                    // Write then rename: a reader never sees half a bundle.
                    let partial = format!("{path}.partial");
                    std::fs::write(&partial, &bundle.bytes)
                        .with_context(|| format!("writing {partial}"))?;
                    std::fs::rename(&partial, &path)?;
                    path
                };
                eprintln!(
                    "exported {destination}: {} canonicals, {} edges, {} deletions, cursor {}, {}",
                    bundle.counts.canonicals,
                    bundle.counts.edges,
                    bundle.counts.deletions,
                    bundle.cursor,
                    bundle.bundle_hash
                );
            }
            Ok(true)
        }
        FederationCommand::Bundle {
            command: BundleCommand::Import(args),
        } => {
            let bytes = read_input(&args.file, s3, args.max_bundle_size).await?;
            let options = ImportOptions {
                dry_run: args.dry_run,
                skip_signature: args.skip_signature,
                force: args.force,
                on_conflict: args
                    .on_conflict
                    .parse::<OnConflict>()
                    .map_err(anyhow::Error::msg)?,
                expected_hash: args.expect_hash.clone(),
                max_bundle_size_bytes: args.max_bundle_size,
                expected_site_id: None,
                max_expanded_bytes: None,
            };
            let trusted = trusted_keys(&args.trusted_keys)?;
            let started = std::time::Instant::now();
            let progress =
                crate::progress::Progress::start("federation bundle import", "items", None, None);
            let done = std::sync::atomic::AtomicU64::new(0);
            let result = import_observed(pool, &bytes, &options, &trusted, &|now, total| {
                if now == 0 {
                    progress.set_totals(Some(total), None);
                }
                let before = done.swap(now, std::sync::atomic::Ordering::Relaxed);
                progress.advance(now.saturating_sub(before), 0);
            })
            .await;
            if result.is_ok() {
                progress.finish();
            }
            crate::metrics::IMPORT_DURATION.observe(started.elapsed().as_secs_f64());
            match result {
                Ok(response) => {
                    crate::metrics::record_import(&response);
                    if args.json {
                        println!("{}", serde_json::to_string_pretty(&response)?);
                    } else {
                        let c = &response.counts;
                        println!(
                            "{} {} from {}: cursor {}; canonicals {} created, {} updated, {} skipped; {} edges added; {} deletions; {} conflicts; {} ms",
                            if response.dry_run {
                                "Dry run of"
                            } else {
                                "Imported"
                            },
                            response.bundle_hash,
                            response.site_id,
                            response.imported_cursor,
                            c.canonical_created,
                            c.canonical_updated,
                            c.canonical_skipped,
                            c.edges_added,
                            c.deletions_processed,
                            response.conflicts.len(),
                            response.duration_ms
                        );
                    }
                    Ok(true)
                }
                Err(error) => {
                    if args.json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(
                                &serde_json::json!({"success": false, "error": error.to_string()})
                            )?
                        );
                    }
                    Err(error.into())
                }
            }
        }
        FederationCommand::Bundle {
            command: BundleCommand::Validate { .. },
        } => unreachable!("handled without a database by validate()"),
        FederationCommand::Sites { command } => sites_command(pool, command).await,
        FederationCommand::Sync(args) => sync(pool, s3, args).await,
        FederationCommand::Serve {
            listen,
            trusted_keys: keys,
            max_bundle_size,
            body_timeout_seconds,
            tokens_file,
            client_ca,
            tls_cert,
            tls_key,
            auth_failures_per_window,
            auth_failure_window_seconds,
            auth_failure_max_addresses,
        } => {
            let tokens = match &tokens_file {
                Some(path) => crate::federation_api::Tokens::from_file(path)?,
                None => crate::federation_api::Tokens::default(),
            };
            let limits = crate::federation_api::Limits::for_memory(
                max_bundle_size,
                crate::federation_api::memory_limit(),
                std::time::Duration::from_secs(body_timeout_seconds),
            );
            let state = std::sync::Arc::new(
                crate::federation_api::ApiState::new(
                    pool.clone(),
                    trusted_keys(&keys)?,
                    limits,
                    tokens,
                    client_ca.is_some(),
                )?
                .with_auth_failure_limits(
                    crate::federation_api::AuthFailureLimits {
                        max_failures: auth_failures_per_window,
                        window: std::time::Duration::from_secs(auth_failure_window_seconds),
                        max_addresses: usize::try_from(auth_failure_max_addresses)
                            .unwrap_or(usize::MAX),
                    },
                ),
            );
            eprintln!(
                "request bodies up to {} bytes ({} decompressed), {} s to arrive",
                limits.max_body_bytes,
                limits.max_expanded_bytes,
                limits.body_timeout.as_secs()
            );
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let app = crate::federation_api::router(state);
            let shutdown = crate::federation_api::shutdown_signal();
            let bounds = crate::federation_api::CONNECTION_LIMITS;
            match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => {
                    let config = match &client_ca {
                        Some(ca) => crate::tls::server_config_with_client_ca(&cert, &key, ca)?,
                        None => crate::tls::server_config(&cert, &key)?,
                    };
                    let tls = crate::tls::TlsListener::new(listener, config)?;
                    eprintln!("federation API on https://{listen}");
                    crate::tls::serve_bounded(
                        tls,
                        app,
                        bounds,
                        crate::federation_api::Peer::tls,
                        shutdown,
                    )
                    .await;
                }
                _ => {
                    eprintln!(
                        "federation API on http://{listen} (plain HTTP: `force` is refused; give --tls-cert and --tls-key outside a TLS mesh)"
                    );
                    crate::tls::serve_bounded(
                        listener,
                        app,
                        bounds,
                        crate::federation_api::Peer::plain,
                        shutdown,
                    )
                    .await;
                }
            }
            Ok(true)
        }
        FederationCommand::Keygen { .. } => unreachable!("handled without a database by keygen()"),
    }
}

async fn sites_command(pool: &PgPool, command: SitesCommand) -> anyhow::Result<bool> {
    match command {
        SitesCommand::List { json } => {
            let all = sites::list(pool).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!(
                    "{:<25} {:<8} {:<19} CURSOR",
                    "SITE ID", "STATUS", "LAST SYNC"
                );
                println!(
                    "{} {} {} {}",
                    "─".repeat(25),
                    "─".repeat(8),
                    "─".repeat(19),
                    "─".repeat(26)
                );
                for site in all {
                    println!(
                        "{:<25} {:<8} {:<19} {}",
                        site.site_id,
                        if site.enabled { "enabled" } else { "disabled" },
                        site.last_sync_at
                            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_else(|| "never".into()),
                        site.last_cursor.unwrap_or_else(|| "-".into())
                    );
                }
            }
        }
        SitesCommand::Status { site } => {
            let mut conn = pool.acquire().await?;
            let Some(found) = sites::get(&mut conn, &site, false).await? else {
                bail!(
                    "Site not allowed: {site} is not a known site (add it with `federation sites add`)"
                );
            };
            let local = stellaops_store::advisories::latest_change(pool)
                .await?
                .map(|p| {
                    Cursor {
                        at: p.at,
                        seq: p.seq,
                    }
                    .to_string()
                });
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"site": found, "local_cursor": local})
                )?
            );
        }
        SitesCommand::History { site, limit, json } => {
            let entries = sites::history(pool, &site, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                for e in entries {
                    println!(
                        "{}  {}  {}  {}",
                        e.finished_at.format("%Y-%m-%d %H:%M:%S"),
                        if e.success { "ok    " } else { "FAILED" },
                        e.cursor.as_deref().unwrap_or("-"),
                        e.error.unwrap_or_else(|| e.counts.to_string())
                    );
                }
            }
        }
        SitesCommand::Add { site, policy } | SitesCommand::Policy { site, policy } => {
            let update = PolicyUpdate {
                display_name: policy.display_name,
                enabled: policy.enabled,
                max_bundle_size_bytes: policy.max_bundle_size.map(|s| s as i64),
                allowed_sources: policy.allowed_sources,
                require_signature: policy.require_signature,
                skip_signature_trusted: policy.skip_signature_trusted,
            };
            let site = sites::set_policy(pool, &site, &update).await?;
            println!("{}", serde_json::to_string_pretty(&site)?);
        }
        SitesCommand::Keys { command } => site_keys_command(pool, command).await?,
    }
    Ok(true)
}

/// Largest PEM public key file read (a P-256 key is about 180 bytes).
const MAX_PUBLIC_KEY_FILE: u64 = 64 << 10;

async fn site_keys_command(pool: &PgPool, command: SiteKeysCommand) -> anyhow::Result<()> {
    match command {
        SiteKeysCommand::Add {
            site,
            key,
            not_after,
        } => {
            let mut bytes = Vec::new();
            let reader: Box<dyn Read> = if key.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(
                    std::fs::File::open(&key)
                        .with_context(|| format!("reading {}", key.display()))?,
                )
            };
            reader
                .take(MAX_PUBLIC_KEY_FILE + 1)
                .read_to_end(&mut bytes)
                .with_context(|| format!("reading {}", key.display()))?;
            if bytes.len() as u64 > MAX_PUBLIC_KEY_FILE {
                bail!(
                    "{}: more than {MAX_PUBLIC_KEY_FILE} bytes, not a PEM public key",
                    key.display()
                );
            }
            let pem = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{}: not a PEM text file", key.display()))?;
            let stored = sites::add_key(pool, &site, &pem, not_after)
                .await
                .with_context(|| format!("adding {} for site {site}", key.display()))?;
            println!("{}", serde_json::to_string_pretty(&stored)?);
        }
        SiteKeysCommand::List { site, json } => {
            let keys = sites::list_keys(pool, site.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                let now = chrono::Utc::now();
                println!("{:<25} {:<8} {:<17} KEY ID", "SITE ID", "STATUS", "ADDED");
                for key in keys {
                    let status = if key.revoked_at.is_some() {
                        "revoked"
                    } else if key.active_at(now) {
                        "active"
                    } else {
                        "expired"
                    };
                    println!(
                        "{:<25} {:<8} {:<17} {}",
                        key.site_id,
                        status,
                        key.added_at.format("%Y-%m-%d %H:%M"),
                        key.key_id
                    );
                }
            }
        }
        SiteKeysCommand::Revoke { site, key_id } => {
            if !sites::revoke_key(pool, &site, &key_id).await? {
                bail!("site {site} has no key {key_id} (see `federation sites keys list {site}`)");
            }
            println!("revoked {key_id} for site {site}");
        }
    }
    Ok(())
}

/// `federation bundle validate`: needs no database. Returns whether the bundle is ready.
pub async fn validate(command: BundleCommand, s3: &S3Settings) -> anyhow::Result<bool> {
    let BundleCommand::Validate {
        file,
        trusted_keys: keys,
        require_signature,
        max_bundle_size,
    } = command
    else {
        bail!("not a validate command");
    };
    let bytes = read_input(&file, s3, max_bundle_size).await?;
    let name = Path::new(&file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or(file.clone());
    let report = validate::report(
        &name,
        &bytes,
        max_bundle_size,
        &trusted_keys(&keys)?,
        require_signature,
    );
    print!("{}", report.text);
    Ok(report.ready)
}

/// `federation keygen`: needs no database.
pub fn keygen(prefix: &Path) -> anyhow::Result<()> {
    let (private, public) = stellaops_federation::dsse::generate_key_pair();
    let private_path = prefix.with_extension("pem");
    let public_path = prefix.with_extension("pub");
    if private_path.exists() {
        bail!("{} exists; not overwriting a key", private_path.display());
    }
    write_private(&private_path, &private)?;
    std::fs::write(&public_path, public)
        .with_context(|| format!("writing {}", public_path.display()))?;
    // The public key must read back as a trusted key, or importing sites could not use it.
    TrustedKeys::from_pems([std::fs::read_to_string(&public_path)?.as_str()])?;
    println!(
        "wrote {} (keep secret) and {} (give to importing sites)",
        private_path.display(),
        public_path.display()
    );
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(pem.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))
}

/// Where a sync finds and drops bundles.
enum Transport {
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
    },
    Directory(PathBuf),
}

impl Transport {
    /// Bundle names in import order (`bundle-<seq>.tar.zst` names sort by sequence).
    async fn list(&self) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        match self {
            Transport::S3 {
                client,
                bucket,
                prefix,
            } => {
                let mut pages = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix.as_str())
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.with_context(|| format!("listing s3://{bucket}/{prefix}"))?;
                    names.extend(
                        page.contents()
                            .iter()
                            .filter_map(|o| o.key())
                            .filter(|k| k.ends_with(".zst"))
                            .map(str::to_string),
                    );
                }
            }
            Transport::Directory(dir) => {
                for entry in
                    std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?
                {
                    let name = entry?.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".zst") {
                        names.push(name);
                    }
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// A bundle, at most `max` bytes: the size is checked before the bytes are buffered.
    async fn read(&self, name: &str, max: u64) -> anyhow::Result<Vec<u8>> {
        match self {
            Transport::S3 { client, bucket, .. } => {
                read_object_capped(client, bucket, name, max).await
            }
            Transport::Directory(dir) => read_file_capped(&dir.join(name), max),
        }
    }

    async fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<String> {
        match self {
            Transport::S3 {
                client,
                bucket,
                prefix,
            } => {
                let key = format!("{}/{name}", prefix.trim_end_matches('/'))
                    .trim_start_matches('/')
                    .to_string();
                client
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .body(ByteStream::from(bytes.to_vec()))
                    .send()
                    .await?;
                Ok(format!("s3://{bucket}/{key}"))
            }
            Transport::Directory(dir) => {
                let path = dir.join(name);
                let partial = dir.join(format!(".{name}.partial"));
                std::fs::write(&partial, bytes)?;
                std::fs::rename(&partial, &path)?;
                Ok(path.display().to_string())
            }
        }
    }
}

/// `federation sync`: returns success; prints a JSON summary (also the Pod's termination
/// message, which the operator reads into the FederationSite status).
async fn sync(pool: &PgPool, s3: &S3Settings, args: SyncArgs) -> anyhow::Result<bool> {
    let transport = match (&args.s3_bucket, &args.directory) {
        (Some(bucket), _) => Transport::S3 {
            client: stellaops_store::s3::client(s3).await,
            bucket: bucket.clone(),
            prefix: args.s3_prefix.clone(),
        },
        (None, Some(dir)) => Transport::Directory(dir.clone()),
        (None, None) => bail!("give --s3-bucket or --directory"),
    };
    let started = std::time::Instant::now();
    let mut summary = serde_json::json!({"site_id": args.site_id, "direction": args.direction});
    let outcome: anyhow::Result<()> = async {
        if args.direction == "export" {
            let signer = match &args.signing_key {
                Some(path) => Some(Signer::from_pem(
                    &std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                )?),
                None if args.require_signature => {
                    bail!("export with require_signature needs --signing-key")
                }
                None => None,
            };
            // The destination is the truth: continue after the newest bundle already there,
            // once it is shown to be this site's own (its site id, and a signature by this
            // site's key or a key trusted for it) — a planted bundle must not move the
            // cursor past changes that were never exported.
            let since = match transport.list().await?.last() {
                Some(name) => {
                    let bytes = transport.read(name, args.max_bundle_size).await?;
                    let opened =
                        stellaops_federation::bundle::open(&bytes, args.max_bundle_size)
                            .with_context(|| format!("{name} at the destination"))?;
                    if opened.manifest.site_id != args.site_id {
                        bail!(
                            "{name} at the destination is from site {}, not this site {}; its cursor is not trusted",
                            opened.manifest.site_id,
                            args.site_id
                        );
                    }
                    let mut keys = trusted_keys_for(&args.trusted_keys, Some(&args.site_id))?;
                    if let Some(signer) = &signer {
                        keys.push_for_site(signer.verifying_key(), &args.site_id);
                    }
                    match opened.verify_signature(&keys) {
                        Ok(_) => {}
                        Err(stellaops_federation::bundle::BundleError::Unsigned)
                            if !args.require_signature => {}
                        Err(error) => bail!(
                            "{name} at the destination: {error}; its cursor is not trusted (check --signing-key/--trusted-key, or remove the bundle)"
                        ),
                    }
                    Some(opened.manifest.cursor.parse::<Cursor>()?)
                }
                None => None,
            };
            let bundles = export(
                pool,
                &ExportOptions {
                    site_id: args.site_id.clone(),
                    since,
                    max_items: args.max_items,
                    compression_level: args.compression_level,
                    signer: signer.as_ref(),
                },
            )
            .await?;
            let mut written = Vec::new();
            for bundle in &bundles {
                let seq = bundle
                    .cursor
                    .rsplit_once('#')
                    .map(|(_, s)| s)
                    .unwrap_or("0");
                written.push(
                    transport
                        .write(&format!("bundle-{seq:0>12}.tar.zst"), &bundle.bytes)
                        .await?,
                );
            }
            summary["bundles"] = serde_json::json!(written.len());
            summary["items"] =
                serde_json::json!(bundles.iter().map(|b| b.counts.total()).sum::<u64>());
            summary["cursor"] = serde_json::json!(
                bundles
                    .last()
                    .map(|b| b.cursor.clone())
                    .or(since.map(|c| c.to_string()))
            );
            return Ok(());
        }
        sites::set_policy(
            pool,
            &args.site_id,
            &PolicyUpdate {
                display_name: args.display_name.clone(),
                enabled: Some(true),
                max_bundle_size_bytes: Some(args.max_bundle_size as i64),
                allowed_sources: Some(args.allowed_sources.clone()),
                require_signature: Some(args.require_signature),
                skip_signature_trusted: None,
            },
        )
        .await?;
        // Keys given to a sync are the synced site's, whatever else they might sign.
        let trusted = trusted_keys_for(&args.trusted_keys, Some(&args.site_id))?;
        let options = ImportOptions {
            expected_site_id: Some(args.site_id.clone()),
            on_conflict: args
                .on_conflict
                .parse::<OnConflict>()
                .map_err(anyhow::Error::msg)?,
            max_bundle_size_bytes: args.max_bundle_size,
            ..Default::default()
        };
        let (mut imported, mut skipped, mut items) = (0u64, 0u64, 0u64);
        for name in transport.list().await? {
            let bytes = transport.read(&name, args.max_bundle_size).await?;
            match import(pool, &bytes, &options, &trusted).await {
                Ok(response) => {
                    crate::metrics::record_import(&response);
                    let c = &response.counts;
                    items += c.canonical_created
                        + c.canonical_updated
                        + c.edges_added
                        + c.deletions_processed;
                    imported += 1;
                    summary["cursor"] = serde_json::json!(response.imported_cursor);
                }
                // Bundles already applied are expected on every run.
                Err(stellaops_federation::import::ImportError::AlreadyImported(_))
                | Err(stellaops_federation::import::ImportError::CursorNotAfter { .. }) => {
                    skipped += 1
                }
                Err(error) => return Err(anyhow::anyhow!("{name}: {error}")),
            }
        }
        summary["bundles"] = serde_json::json!(imported);
        summary["skipped"] = serde_json::json!(skipped);
        summary["items"] = serde_json::json!(items);
        Ok(())
    }
    .await;
    summary["duration_ms"] = serde_json::json!(started.elapsed().as_millis() as u64);
    summary["success"] = serde_json::json!(outcome.is_ok());
    if let Err(error) = &outcome {
        summary["error"] = serde_json::json!(format!("{error:#}"));
    }
    let text = serde_json::to_string(&summary)?;
    println!("{text}");
    crate::termination::write(&text);
    outcome.map(|()| true)
}
