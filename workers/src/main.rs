use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use stellaops_store::s3::S3Settings;
use stellaops_workers::federation_cli::{self, AdvisoriesCommand, FederationCommand};
use stellaops_workers::registry::{Credentials, ImageReference, RegistryClient};

/// The Stella Ops data-plane worker, run by the operator inside Jobs, CronJobs and Deployments.
#[derive(Parser, Debug)]
#[command(name = "stellaops-worker", version, about)]
struct Cli {
    /// PostgreSQL URL (postgres://user:password@host:port/database).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Endpoint of an S3-compatible server (credentials from the standard AWS_* variables).
    #[arg(long, env = "AWS_ENDPOINT_URL", global = true)]
    s3_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Apply the platform's PostgreSQL migrations (safe to run from several Pods at once).
    Migrate,
    /// Canonical advisories.
    Advisories {
        #[command(subcommand)]
        command: AdvisoriesCommand,
    },
    /// Federation between sites: signed delta bundles and site policies.
    Federation {
        #[command(subcommand)]
        command: FederationCommand,
    },
    /// Inspect container images in a registry.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Resolve an image reference to its manifest digest and media type.
    Resolve {
        /// Image reference (`registry/repo:tag` or `registry/repo@sha256:…`).
        image: String,
        /// A `.dockerconfigjson` file with registry credentials.
        #[arg(long, env = "DOCKER_CONFIG_JSON")]
        docker_config: Option<PathBuf>,
        /// Registries spoken to over plain HTTP (localhost and 127.0.0.0/8 always are).
        #[arg(long = "plain-http")]
        plain_http: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn database(url: Option<&str>) -> anyhow::Result<sqlx::PgPool> {
    let url = url.context("--database-url or DATABASE_URL is required")?;
    let pool = stellaops_store::connect(url)
        .await
        .context("connecting to PostgreSQL")?;
    stellaops_store::migrate(&pool).await?;
    Ok(pool)
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let s3 = S3Settings::from_env(cli.s3_endpoint.clone());
    match cli.command {
        Command::Migrate => {
            database(cli.database_url.as_deref()).await?;
            println!("migrations applied");
        }
        Command::Advisories { command } => {
            federation_cli::advisories(&database(cli.database_url.as_deref()).await?, command)
                .await?;
        }
        Command::Federation {
            command: FederationCommand::Keygen { prefix },
        } => federation_cli::keygen(&prefix)?,
        Command::Federation { command } => {
            return federation_cli::federation(
                &database(cli.database_url.as_deref()).await?,
                &s3,
                command,
            )
            .await;
        }
        Command::Image {
            command:
                ImageCommand::Resolve {
                    image,
                    docker_config,
                    plain_http,
                },
        } => {
            let credentials = match docker_config {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    Credentials::from_docker_config(&text)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                }
                None => Credentials::default(),
            };
            let reference: ImageReference = image.parse()?;
            let manifest = RegistryClient::new(credentials, plain_http)?
                .fetch_manifest(&reference)
                .await?;
            println!(
                "{}",
                serde_json::json!({
                    "image": reference.to_string(),
                    "digest": manifest.digest,
                    "mediaType": manifest.media_type,
                    "size": manifest.bytes.len(),
                })
            );
        }
    }
    Ok(true)
}
