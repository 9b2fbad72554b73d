//! `stellaops-worker vex ingest`: read VEX documents and store them as a provider's.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use stellaops_policy::vex::{Format, MAX_DOCUMENT_BYTES, parse};
use stellaops_store::vex::Ingested;

/// The documents `source` names: a file, a directory's `*.json` files in name order, or
/// standard input (`-`).
fn documents(source: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    if source == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(MAX_DOCUMENT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
        return Ok(vec![("-".into(), bytes)]);
    }
    let read = |path: &Path| -> anyhow::Result<Vec<u8>> {
        let size = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        if size > MAX_DOCUMENT_BYTES as u64 {
            anyhow::bail!(
                "{}: {size} bytes is more than the {MAX_DOCUMENT_BYTES} a VEX document may have",
                path.display()
            );
        }
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    };
    if source.is_dir() {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(source)
            .with_context(|| format!("listing {}", source.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        return paths
            .iter()
            .map(|p| Ok((p.display().to_string(), read(p)?)))
            .collect();
    }
    Ok(vec![(source.display().to_string(), read(source)?)])
}

/// Ingest every document of `source`; `Ok(false)` when any was refused (the others are
/// stored all the same: each document is its own transaction).
pub async fn ingest(
    pool: &sqlx::PgPool,
    format: &str,
    provider: &str,
    source: &Path,
) -> anyhow::Result<bool> {
    let format = Format::parse(format).context("--format is openvex, csaf or cyclonedx")?;
    let mut all_stored = true;
    for (name, bytes) in documents(source)? {
        let document = match parse(format, &bytes) {
            Ok(document) => document,
            Err(error) => {
                eprintln!("{name}: refused: {error}");
                all_stored = false;
                continue;
            }
        };
        match stellaops_store::vex::ingest(pool, provider, &document).await {
            Ok(Ingested::New { statements }) => println!(
                "{name}: {} version {}: stored, {statements} statements",
                document.id, document.version.text
            ),
            Ok(Ingested::Unchanged) => println!(
                "{name}: {} version {}: already stored, nothing changed",
                document.id, document.version.text
            ),
            Ok(Ingested::Superseded {
                previous,
                statements,
            }) => println!(
                "{name}: {} version {}: replaces version {previous}, {statements} statements",
                document.id, document.version.text
            ),
            Ok(Ingested::Older { current }) => println!(
                "{name}: {} version {}: older than the stored version {current}, ignored",
                document.id, document.version.text
            ),
            Err(error) => {
                eprintln!("{name}: refused: {error}");
                all_stored = false;
            }
        }
    }
    Ok(all_stored)
}
