use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use stellaops_workers::registry::{Credentials, ImageReference, RegistryClient};

/// The Stella Ops data-plane worker, run by the operator inside Jobs, CronJobs and Deployments.
#[derive(Parser, Debug)]
#[command(name = "stellaops-worker", version, about)]
struct Cli {
    /// PostgreSQL URL (postgres://user:password@host:port/database).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Apply the platform's PostgreSQL migrations (safe to run from several Pods at once).
    Migrate,
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
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate => {
            let url = cli
                .database_url
                .context("--database-url or DATABASE_URL is required")?;
            let pool = stellaops_store::connect(&url).await?;
            stellaops_store::migrate(&pool).await?;
            println!("migrations applied");
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
    Ok(())
}
