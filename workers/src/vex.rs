//! `stellaops-worker vex ingest`: read VEX documents and store them as a provider's.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use stellaops_policy::vex::{Format, MAX_DOCUMENT_BYTES, parse};
use stellaops_store::vex::{Ingested, Touched};

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
/// stored all the same: each document is its own transaction). Then re-evaluate, without
/// pulling anything, exactly the images whose latest result has a finding the changed
/// statements speak about: new results, and `rescan.delta` where the verdict or the
/// counted findings changed.
pub async fn ingest(
    pool: &sqlx::PgPool,
    format: &str,
    provider: &str,
    source: &Path,
    signer: Option<std::sync::Arc<crate::evaluate::Signing>>,
) -> anyhow::Result<bool> {
    let format = Format::parse(format).context("--format is openvex, csaf or cyclonedx")?;
    let mut all_stored = true;
    let mut touched = Touched::default();
    for (name, bytes) in documents(source)? {
        let document = match parse(format, &bytes) {
            Ok(document) => document,
            Err(error) => {
                eprintln!("{name}: refused: {error}");
                all_stored = false;
                continue;
            }
        };
        let result = stellaops_store::vex::ingest_touching(pool, provider, &document)
            .await
            .map(|(ingested, changed)| {
                touched.ids.extend(changed.ids);
                touched.purl_bases.extend(changed.purl_bases);
                touched.images.extend(changed.images);
                ingested
            });
        match result {
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
    for list in [
        &mut touched.ids,
        &mut touched.purl_bases,
        &mut touched.images,
    ] {
        list.sort();
        list.dedup();
    }
    let images = stellaops_store::vex::affected_images(pool, &touched).await?;
    if !images.is_empty() {
        let settings = crate::evaluate::Settings {
            rate_per_second: 1000,
            notify: true,
            min_severity: None,
            namespace: None,
            name: None,
            run_id: None,
            policy: None,
            now: None,
            signer,
        };
        let report = crate::evaluate::evaluate(pool, &images, &settings).await?;
        println!(
            "re-evaluated {} images: {} with a changed verdict or counted findings, {} events",
            report.evaluated, report.decisions_changed, report.events
        );
    }
    Ok(all_stored)
}
