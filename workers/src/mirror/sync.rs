//! `stellaops-worker mirror sync`: an S3 prefix onto a directory, like
//! `aws s3 sync --delete --size-only`, but every file appears atomically (written to a
//! hidden temporary name, then renamed), nothing is deleted unless every copy succeeded,
//! and the counts are reported for the MirrorDomain status.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use futures::StreamExt;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

/// Temporary files carry this suffix (and a leading dot) until they are complete.
const PARTIAL: &str = ".partial";

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncCounts {
    /// Files downloaded (new or of another size).
    pub copied: u64,
    /// Local files removed because the prefix no longer has them.
    pub deleted: u64,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Files already up to date.
    pub unchanged: u64,
}

/// Objects under `prefix`: relative key → size.
async fn remote_listing(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut objects = BTreeMap::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.with_context(|| format!("listing s3://{bucket}/{prefix}"))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let relative = key
                .strip_prefix(prefix)
                .unwrap_or(key)
                .trim_start_matches('/');
            if relative.is_empty() || relative.ends_with('/') {
                continue;
            }
            if relative
                .split('/')
                .any(|part| part == ".." || part == "." || part.is_empty())
            {
                bail!("refusing object key {key:?}: it would escape the mirror directory");
            }
            objects.insert(
                relative.to_string(),
                object.size().unwrap_or(0).max(0) as u64,
            );
        }
    }
    Ok(objects)
}

/// Files under `dir`: relative path → size; temporary files are removed on the way.
fn local_listing(dir: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else if entry.file_name().to_string_lossy().ends_with(PARTIAL) {
                // Left by an interrupted sync; never served, safe to drop.
                std::fs::remove_file(&path)?;
            } else {
                let relative = path
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(relative, entry.metadata()?.len());
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out).with_context(|| format!("reading {}", dir.display()))?;
    }
    Ok(out)
}

async fn download(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    target: &Path,
    expected: u64,
) -> anyhow::Result<u64> {
    let parent = target.parent().expect("files have a parent");
    tokio::fs::create_dir_all(parent).await?;
    let name = target
        .file_name()
        .expect("files have a name")
        .to_string_lossy();
    let temporary = parent.join(format!(".{name}{PARTIAL}"));
    let result: anyhow::Result<u64> = async {
        // Ask for the object's checksum, so the SDK verifies the bytes against it.
        let object = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .with_context(|| format!("reading s3://{bucket}/{key}"))?;
        let mut body = object.body;
        let mut file = tokio::fs::File::create(&temporary).await?;
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.with_context(|| format!("reading s3://{bucket}/{key}"))?;
            written += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        if written != expected {
            bail!("s3://{bucket}/{key}: got {written} bytes, the listing says {expected}: not replacing the served file");
        }
        Ok(written)
    }
    .await;
    match result {
        Ok(written) => {
            tokio::fs::rename(&temporary, target).await?;
            Ok(written)
        }
        Err(error) => {
            let _ = tokio::fs::remove_file(&temporary).await;
            Err(error)
        }
    }
}

/// Sync `s3://bucket/prefix` onto `dir`. Copies run `concurrency` at a time; with
/// `delete`, local files missing from the prefix are removed — only after every copy
/// succeeded, so a failed sync leaves the previous export whole.
pub async fn sync(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    dir: &Path,
    delete: bool,
    concurrency: usize,
) -> anyhow::Result<SyncCounts> {
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    let remote = remote_listing(s3, bucket, &prefix).await?;
    let local = local_listing(dir)?;
    let mut counts = SyncCounts::default();
    let wanted: Vec<(String, u64)> = remote
        .iter()
        .filter(|(path, size)| local.get(*path) != Some(size))
        .map(|(p, s)| (p.clone(), *s))
        .collect();
    counts.unchanged = (remote.len() - wanted.len()) as u64;
    let mut copies = futures::stream::iter(wanted.into_iter().map(|(relative, size)| {
        let key = format!("{prefix}{relative}");
        let target: PathBuf = dir.join(&relative);
        async move { download(s3, bucket, &key, &target, size).await }
    }))
    .buffer_unordered(concurrency.max(1));
    let mut first_error = None;
    while let Some(result) = copies.next().await {
        match result {
            Ok(bytes) => {
                counts.copied += 1;
                counts.bytes += bytes;
            }
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    if let Some(error) = first_error {
        return Err(error.context(format!(
            "sync stopped after {} files; nothing was deleted",
            counts.copied
        )));
    }
    if delete {
        for relative in local.keys().filter(|p| !remote.contains_key(*p)) {
            std::fs::remove_file(dir.join(relative))?;
            counts.deleted += 1;
        }
        remove_empty_dirs(dir)?;
    }
    Ok(counts)
}

fn remove_empty_dirs(dir: &Path) -> std::io::Result<bool> {
    let mut empty = true;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() && remove_empty_dirs(&entry.path())? {
            std::fs::remove_dir(entry.path())?;
        } else {
            empty = false;
        }
    }
    Ok(empty)
}

/// What the server is told about the export it serves, so the sync can report on it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServedExport<'a> {
    /// The explicit export id, if any.
    pub active_export_id: Option<&'a str>,
    /// The exporter's PEM public key, if signatures are checked.
    pub signature_key: Option<&'a Path>,
}

/// Run a sync and report it as JSON (stdout and the Pod's termination message),
/// including `activeExportId`: the export the server will serve afterwards (the explicit
/// `active_export_id` when the volume has it, else `latest`, else the newest).
pub async fn run(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    dir: &Path,
    delete: bool,
    concurrency: usize,
    served: ServedExport<'_>,
) -> anyhow::Result<bool> {
    let ServedExport {
        active_export_id,
        signature_key,
    } = served;
    let started = Instant::now();
    let outcome = sync(s3, bucket, prefix, dir, delete, concurrency).await;
    let mut summary = match &outcome {
        Ok(counts) => {
            serde_json::json!({"success": true, "copied": counts.copied, "deleted": counts.deleted,
                                         "bytes": counts.bytes, "unchanged": counts.unchanged})
        }
        Err(error) => serde_json::json!({"success": false, "error": format!("{error:#}")}),
    };
    // A failed sync changed nothing, so what is served is reported either way.
    let active = super::active_export(dir, active_export_id);
    summary["activeExportId"] = serde_json::json!(active.as_deref().map(super::export_id));
    if let Some(key) = signature_key {
        let checked = match &active {
            Some(export) => check_signatures(export, key),
            None => Err("no export to check".to_string()),
        };
        match checked {
            Ok(domains) => summary["signaturesVerified"] = serde_json::json!(domains),
            Err(error) => summary["signatureError"] = serde_json::json!(error),
        }
    }
    summary["duration_ms"] = serde_json::json!(started.elapsed().as_millis() as u64);
    let text = summary.to_string();
    println!("{text}");
    crate::termination::write(&text);
    outcome.map(|_| true)
}

/// Check every `mirror/<domain>/bundle.json` of `export` against its `bundle.json.jws`
/// with the PEM key at `key`; the domains checked, or the first failure.
pub fn check_signatures(export: &Path, key: &Path) -> Result<Vec<String>, String> {
    let pem = std::fs::read_to_string(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let key = super::jws::public_key_from_pem(&pem).map_err(|e| e.to_string())?;
    let mut domains = Vec::new();
    let entries = std::fs::read_dir(export.join("mirror"))
        .map_err(|e| format!("{}/mirror: {e}", export.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("bundle.json").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let domain = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bundle = std::fs::read(dir.join("bundle.json")).map_err(|e| e.to_string())?;
        let jws = std::fs::read_to_string(dir.join("bundle.json.jws"))
            .map_err(|_| format!("domain {domain}: bundle.json.jws is missing"))?;
        super::jws::verify_detached(&jws, &bundle, &key)
            .map_err(|e| format!("domain {domain}: {e}"))?;
        domains.push(domain);
    }
    if domains.is_empty() {
        return Err(format!("{} has no bundle.json to check", export.display()));
    }
    Ok(domains)
}
