//! Mirror domains: `mirror serve` (the HTTP server of one domain) and `mirror sync` (an
//! S3 prefix onto the volume it serves).

pub mod jws;
pub mod serve;
pub mod sync;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The link in a mirror's root naming the complete snapshot served now
/// (`.snapshots/<name>`); `mirror sync` replaces it with one `rename`.
pub const CURRENT_LINK: &str = ".current";

/// Where the served exports are: the snapshot `root/.current` points to, resolved once
/// (so a request reads every file from one snapshot even while a sync flips the link),
/// else `root` itself (a volume filled by hand or by an older sync).
pub fn served_root(root: &Path) -> PathBuf {
    match std::fs::read_link(root.join(CURRENT_LINK)) {
        Ok(target) => root.join(target),
        Err(_) => root.to_path_buf(),
    }
}

/// The export directory a mirror serves under `root`: `explicit` when given (and present),
/// else `latest`, else the most recently modified export directory.
pub fn active_export(root: &Path, explicit: Option<&str>) -> Option<PathBuf> {
    if let Some(id) = explicit {
        let dir = root.join(id);
        return dir.is_dir().then_some(dir);
    }
    let latest = root.join("latest");
    if latest.is_dir() {
        return Some(latest);
    }
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(root).ok()?.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_dir() || name.starts_with('.') {
            continue;
        }
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(UNIX_EPOCH);
        if newest
            .as_ref()
            .is_none_or(|(t, p)| (modified, &path) > (*t, p))
        {
            newest = Some((modified, path));
        }
    }
    newest.map(|(_, p)| p)
}

/// The id of an export directory: its name, or, for a `latest` symbolic link, the name
/// of the export it points to.
pub fn export_id(dir: &Path) -> String {
    std::fs::read_link(dir)
        .ok()
        .as_deref()
        .unwrap_or(dir)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_export_is_explicit_then_latest_then_newest() {
        let root = std::env::temp_dir().join(format!("stellaops-active-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(active_export(&root, None), None, "no root yet");
        std::fs::create_dir_all(root.join("2025-01-01")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::create_dir_all(root.join("2025-01-02")).unwrap();
        std::fs::create_dir_all(root.join(".2025-01-03.partial")).unwrap();
        let newest = active_export(&root, None).unwrap();
        assert_eq!(export_id(&newest), "2025-01-02");
        assert_eq!(
            export_id(&active_export(&root, Some("2025-01-01")).unwrap()),
            "2025-01-01"
        );
        assert_eq!(active_export(&root, Some("2024-12-31")), None);
        std::os::unix::fs::symlink("2025-01-01", root.join("latest")).unwrap();
        let latest = active_export(&root, None).unwrap();
        assert_eq!(latest, root.join("latest"));
        assert_eq!(
            export_id(&latest),
            "2025-01-01",
            "the link's target names it"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
