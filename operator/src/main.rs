use std::process::ExitCode;

use clap::Parser;
use stellaops_operator::cli::{Cli, Command};
use stellaops_operator::{crdgen, preview, runtime, telemetry};

/// mimalloc rather than glibc's malloc: a pass over 10,000 Scans spent a fifth of the
/// operator's CPU in glibc's allocator (`_int_malloc`, `malloc_consolidate`, …) decoding
/// watch events and serving reconciles; with mimalloc the pass took a fifth less CPU and the
/// process's peak RSS fell by a third (README, "Scale"). The scale benchmark uses the same.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The one rustls provider of the workspace, chosen explicitly rather than left to
    // rustls' feature detection (which panics the first TLS connection if a second appears).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Crdgen(args) => report(crdgen::run(&args.root, args.check)),
        Command::Preview(args) => {
            let mut config = stellaops_controllers::Config {
                operator_namespace: args.namespace.clone(),
                ..Default::default()
            };
            if let Some(image) = args.worker_image {
                config.worker_image = image;
            }
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            match preview::run(&args.files, &config, &mut stdout.lock(), &mut stderr.lock()) {
                Ok(summary) if summary.invalid == 0 => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(error) => report(Err(error)),
            }
        }
        Command::Run(args) => {
            telemetry::init(cli.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => {
                    let outcome = runtime.block_on(runtime::run(*args));
                    // Tasks still running (watches, servers) must not keep a process that
                    // has decided to exit alive: after a lost Lease the Pod has to restart.
                    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
                    report(outcome)
                }
                Err(error) => report(Err(error.into())),
            }
        }
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
