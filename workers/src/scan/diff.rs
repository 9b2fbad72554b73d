//! `stellaops-worker diff OLD NEW`: what changed between two images' inventories, package
//! by package, with the layer that caused each change (the diff itself is
//! [`stellaops_scanner::diff`]). Read from the stored inventories
//! (`image_packages`); an image not scanned yet is scanned first (that pulls it), an image
//! scanned before is not pulled again.

use stellaops_scanner::diff::Installed;
use stellaops_store::scans::stored_inventory;

/// An image's digest and stored inventory, and whether it had to be scanned now. `image`
/// is a digest (`sha256:…`, which must have been scanned) or a reference: one that names a
/// digest is looked up as such, a tag is resolved with one manifest request; only an image
/// never scanned is pulled and scanned with `job`.
pub async fn inventory_of(
    job: &super::ScanJob<'_>,
    image: &str,
) -> anyhow::Result<(String, Vec<Installed>, bool)> {
    use crate::registry::{ImageReference, Reference, RegistryError};
    if image.starts_with("sha256:") {
        let stored = stored_inventory(job.pool, image).await?.ok_or_else(|| {
            anyhow::anyhow!(
                "{image} was never scanned: give an image reference to pull and scan it"
            )
        })?;
        return Ok((image.to_string(), stored, false));
    }
    let reference: ImageReference = image
        .parse()
        .map_err(|e: RegistryError| anyhow::anyhow!("{e}"))?;
    let digest = match &reference.reference {
        Reference::Digest(digest) => digest.clone(),
        _ => job.registry.fetch_manifest(&reference).await?.digest,
    };
    if let Some(stored) = stored_inventory(job.pool, &digest).await? {
        return Ok((digest, stored, false));
    }
    let summary = super::scan(job, image).await?;
    let stored = stored_inventory(job.pool, &summary.image_digest)
        .await?
        .unwrap_or_default();
    Ok((summary.image_digest, stored, true))
}
