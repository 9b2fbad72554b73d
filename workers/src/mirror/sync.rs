//! `stellaops-worker mirror sync`: an S3 prefix onto the mirror volume, like
//! `aws s3 sync --delete --size-only`, but switched in whole:
//!
//! * the new state is built in a staging directory `<root>/.staging-<name>`: files whose
//!   size matches the served snapshot are hard-linked from it (no copy, no extra space),
//!   the others downloaded, each checked against its listed size and the object's checksum;
//! * once every file is there and, with a signature key, every `bundle.json` of the export
//!   that would be served verifies, the staging directory becomes `.snapshots/<name>` and
//!   the link `<root>/.current` is replaced by one `rename(2)`. The server resolves that
//!   link as a whole (again at most every `serve::REVALIDATE_AFTER`), so it reads the
//!   previous snapshot or the new one, never a mix and never a file being written;
//! * anything less (an error, a kill, a bad signature) leaves `.current` as it was; the next
//!   run removes the leftovers. The snapshot replaced is kept (a request that resolved the
//!   link just before the switch still finds its files) and older ones are deleted.
//!
//! The counts are reported for the MirrorDomain status.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::CURRENT_LINK;

/// Temporary files carry this suffix (and a leading dot) until they are complete.
const PARTIAL: &str = ".partial";
/// Complete snapshots, one directory each: `<root>/.snapshots/<name>/<exportId>/…`.
pub const SNAPSHOTS: &str = ".snapshots";
/// Prefix of a snapshot being built.
pub const STAGING: &str = ".staging-";
/// Prefix of the new link before it is renamed over `.current`.
const LINK_TEMPORARY: &str = ".current.tmp-";

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncCounts {
    /// Files downloaded (new or of another size).
    pub copied: u64,
    /// Served files the new snapshot no longer has (with `delete`).
    pub deleted: u64,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Files already up to date (carried over without a download).
    pub unchanged: u64,
}

/// One object of the listing.
#[derive(Clone, Copy, Debug)]
struct Remote {
    size: u64,
    modified: Option<SystemTime>,
}

/// Objects under `prefix`: relative key → size and modification time.
async fn remote_listing(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<BTreeMap<String, Remote>> {
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
            let top = relative.split('/').next().unwrap_or_default();
            if is_ours(top) {
                bail!("refusing object key {key:?}: {top} is the mirror's own bookkeeping");
            }
            objects.insert(
                relative.to_string(),
                Remote {
                    size: object.size().unwrap_or(0).max(0) as u64,
                    modified: object
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                },
            );
        }
    }
    Ok(objects)
}

/// Names in the root that belong to the sync itself, not to an export.
fn is_ours(name: &str) -> bool {
    name == CURRENT_LINK
        || name == SNAPSHOTS
        || name.starts_with(STAGING)
        || name.starts_with(LINK_TEMPORARY)
}

/// Files under `dir`: relative path → size. The sync's own entries at the top and
/// temporary files left by an older sync are not part of it.
fn local_listing(dir: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if dir == root && is_ours(&name) {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else if kind.is_file() && !name.ends_with(PARTIAL) {
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
            if written > expected {
                bail!("s3://{bucket}/{key}: more than the {expected} bytes the listing says");
            }
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        if written != expected {
            bail!("s3://{bucket}/{key}: got {written} bytes, the listing says {expected}");
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

/// Put `from` at `to` without copying its bytes when the file system allows.
fn carry_over(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::hard_link(from, to).or_else(|_| std::fs::copy(from, to).map(|_| ()))
}

/// The snapshot `.current` points to, if it does.
fn current_snapshot(root: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(root.join(CURRENT_LINK)).ok()?;
    let dir = root.join(target);
    dir.is_dir().then_some(dir)
}

/// Remove what an interrupted sync left: staging directories and temporary links.
fn remove_leftovers(root: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(STAGING) {
            std::fs::remove_dir_all(entry.path())?;
        } else if name.starts_with(LINK_TEMPORARY) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn sync_directory(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Give each export directory of `staging` the time of its newest object, so "the newest
/// export" means the most recently uploaded one, not the one downloaded last.
fn set_export_times(staging: &Path, remote: &BTreeMap<String, Remote>) -> std::io::Result<()> {
    let mut newest: BTreeMap<&str, SystemTime> = BTreeMap::new();
    for (relative, object) in remote {
        if let (Some((top, _)), Some(modified)) = (relative.split_once('/'), object.modified) {
            let entry = newest.entry(top).or_insert(modified);
            *entry = (*entry).max(modified);
        }
    }
    for (top, modified) in newest {
        std::fs::File::open(staging.join(top))?
            .set_times(std::fs::FileTimes::new().set_modified(modified))?;
    }
    Ok(())
}

/// Make the complete `staging` directory the served snapshot: rename it under
/// `.snapshots`, point a new link at it and rename the link over `.current` (atomic), then
/// delete the snapshots older than `previous`.
fn switch(root: &Path, staging: &Path, name: &str, previous: Option<&Path>) -> anyhow::Result<()> {
    let snapshots = root.join(SNAPSHOTS);
    std::fs::create_dir_all(&snapshots)?;
    let snapshot = snapshots.join(name);
    std::fs::rename(staging, &snapshot)
        .with_context(|| format!("moving {} into place", staging.display()))?;
    sync_directory(&snapshots)?;
    let link = root.join(format!("{LINK_TEMPORARY}{name}"));
    std::os::unix::fs::symlink(Path::new(SNAPSHOTS).join(name), &link)?;
    std::fs::rename(&link, root.join(CURRENT_LINK))
        .with_context(|| format!("switching {} to {name}", root.join(CURRENT_LINK).display()))?;
    sync_directory(root)?;
    let keep = previous.and_then(Path::file_name);
    for entry in std::fs::read_dir(&snapshots)?.flatten() {
        let entry_name = entry.file_name();
        if entry_name != name && Some(entry_name.as_os_str()) != keep {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// Sync `s3://bucket/prefix` onto the mirror root `dir` (see the module comment). Copies
/// run `concurrency` at a time; with `delete`, files the prefix no longer has are left out
/// of the new snapshot, else carried over. `verify` is handed the complete staging
/// directory (or the served snapshot when nothing changed) and must accept it before it
/// is switched in; its refusal fails the sync.
pub async fn sync_verified<F>(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    dir: &Path,
    delete: bool,
    concurrency: usize,
    verify: F,
) -> anyhow::Result<SyncCounts>
where
    F: FnOnce(&Path) -> Result<(), String>,
{
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    let remote = remote_listing(s3, bucket, &prefix).await?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    remove_leftovers(dir).with_context(|| format!("cleaning up {}", dir.display()))?;
    let current = current_snapshot(dir);
    // Without a snapshot yet, files an older sync wrote straight into the root are the
    // baseline: they are carried over, then (with `delete`) removed from the root.
    let baseline = current.clone().unwrap_or_else(|| dir.to_path_buf());
    let local = local_listing(&baseline)?;
    let mut counts = SyncCounts::default();
    let wanted: Vec<(String, u64)> = remote
        .iter()
        .filter(|(path, object)| local.get(*path) != Some(&object.size))
        .map(|(p, o)| (p.clone(), o.size))
        .collect();
    let extraneous: Vec<&String> = local.keys().filter(|p| !remote.contains_key(*p)).collect();
    counts.unchanged = (remote.len() - wanted.len()) as u64;
    if let Some(current) = &current
        && wanted.is_empty()
        && (extraneous.is_empty() || !delete)
    {
        // The served snapshot already is the synced state.
        verify(current).map_err(|e| anyhow::anyhow!("the served export: {e}"))?;
        return Ok(counts);
    }

    let name = format!(
        "{:020}-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
        std::process::id()
    );
    let staging = dir.join(format!("{STAGING}{name}"));
    let built: anyhow::Result<()> = async {
        std::fs::create_dir(&staging)?;
        for (relative, object) in &remote {
            if local.get(relative) == Some(&object.size) {
                carry_over(&baseline.join(relative), &staging.join(relative))?;
            }
        }
        if !delete {
            for relative in &extraneous {
                carry_over(&baseline.join(relative), &staging.join(relative))?;
            }
        }
        let progress = crate::progress::Progress::start(
            "mirror sync",
            "files",
            Some(wanted.len() as u64),
            Some(wanted.iter().map(|(_, size)| size).sum()),
        );
        let mut copies = futures::stream::iter(wanted.into_iter().map(|(relative, size)| {
            let key = format!("{prefix}{relative}");
            let target: PathBuf = staging.join(&relative);
            async move { download(s3, bucket, &key, &target, size).await }
        }))
        .buffer_unordered(concurrency.max(1));
        let mut first_error = None;
        while let Some(result) = copies.next().await {
            match result {
                Ok(bytes) => {
                    counts.copied += 1;
                    counts.bytes += bytes;
                    progress.advance(1, bytes);
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if first_error.is_none() {
            progress.finish();
        }
        if let Some(error) = first_error {
            return Err(error.context(format!(
                "sync stopped after {} files; nothing was switched in or deleted",
                counts.copied
            )));
        }
        set_export_times(&staging, &remote)?;
        verify(&staging).map_err(|e| {
            anyhow::anyhow!(
                "the new export was not switched in (the previous one keeps serving): {e}"
            )
        })?;
        Ok(())
    }
    .await;
    if let Err(error) = built {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(error);
    }
    if delete {
        counts.deleted = extraneous.len() as u64;
    }
    switch(dir, &staging, &name, current.as_deref())?;
    if delete && current.is_none() {
        // The files an older sync wrote into the root now live in the snapshot.
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_ours(&name) {
                continue;
            }
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(counts)
}

/// [`sync_verified`] without a check of its own.
pub async fn sync(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    dir: &Path,
    delete: bool,
    concurrency: usize,
) -> anyhow::Result<SyncCounts> {
    sync_verified(s3, bucket, prefix, dir, delete, concurrency, |_| Ok(())).await
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
/// including `activeExportId`: the export served afterwards (the explicit
/// `active_export_id` when the snapshot has it, else `latest`, else the newest). With a
/// signature key the new snapshot is switched in only when the export it would serve
/// verifies (`signaturesVerified`, or `signatureError` and a failed sync).
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
    let mut verified = None;
    let mut signature_error = None;
    let check = |snapshot: &Path| -> Result<(), String> {
        let Some(key) = signature_key else {
            return Ok(());
        };
        let checked = match super::active_export(snapshot, active_export_id) {
            Some(export) => check_signatures(&export, key),
            None => Err("no export to check".to_string()),
        };
        match checked {
            Ok(domains) => {
                verified = Some(domains);
                Ok(())
            }
            Err(error) => {
                signature_error = Some(error.clone());
                Err(format!("signature check failed: {error}"))
            }
        }
    };
    let outcome = sync_verified(s3, bucket, prefix, dir, delete, concurrency, check).await;
    let mut summary = match &outcome {
        Ok(counts) => {
            serde_json::json!({"success": true, "copied": counts.copied, "deleted": counts.deleted,
                                         "bytes": counts.bytes, "unchanged": counts.unchanged})
        }
        Err(error) => serde_json::json!({"success": false, "error": format!("{error:#}")}),
    };
    // A failed sync switched nothing in, so what is served is reported either way.
    let active = super::active_export(&super::served_root(dir), active_export_id);
    summary["activeExportId"] = serde_json::json!(active.as_deref().map(super::export_id));
    if let Some(domains) = verified {
        summary["signaturesVerified"] = serde_json::json!(domains);
    }
    if let Some(error) = signature_error {
        summary["signatureError"] = serde_json::json!(error);
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
