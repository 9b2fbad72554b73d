//! What changed between two images' stored inventories, package by package, with the
//! layer that caused each change (seed HLA §3.3: image → layer → package): the diff and
//! its text form (the stored inventories are `stellaops_store::scans::stored_inventory`).
//! Used by `stellaops-worker diff` and by the operator's `image.changed` events when a
//! running workload moves to a new digest.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// One package of a stored inventory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Installed {
    /// Package URL with version.
    pub purl: String,
    /// Digest of the layer that brought it.
    pub layer: String,
}

/// A change between two inventories.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The package: its package URL without version and qualifiers.
    pub package: String,
    /// Versions in OLD (empty when added).
    pub old_versions: Vec<String>,
    /// Versions in NEW (empty when removed).
    pub new_versions: Vec<String>,
    /// The layer that caused the change: for an added or changed package, the NEW layer
    /// that brought this version; for a removed one, the OLD layer it had come from.
    pub layer: String,
    /// For a removed package: whether its OLD layer is still part of NEW (then a later
    /// layer of NEW deleted or replaced it; otherwise the layer itself went away).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_kept: Option<bool>,
}

/// The difference between two images.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    /// Digest of OLD.
    pub old: String,
    /// Digest of NEW.
    pub new: String,
    /// Packages only in NEW.
    pub added: Vec<Change>,
    /// Packages only in OLD.
    pub removed: Vec<Change>,
    /// Packages in both, at other versions.
    pub changed: Vec<Change>,
}

/// `pkg:deb/debian/openssl@3.0.11-1~deb12u2?distro=debian-12` → (`pkg:deb/debian/openssl`,
/// `3.0.11-1~deb12u2`): the identity and the version (percent-decoded; an RPM's `epoch`
/// qualifier put back in front as `epoch:`).
pub fn split_purl(purl: &str) -> (String, String) {
    let (path, qualifiers) = purl.split_once('?').unwrap_or((purl, ""));
    let Some((identity, version)) = path.rsplit_once('@') else {
        return (path.to_string(), String::new());
    };
    let mut version = decode(version);
    if let Some(epoch) = qualifiers.split('&').find_map(|q| q.strip_prefix("epoch=")) {
        version = format!("{}:{version}", decode(epoch));
    }
    (identity.to_string(), version)
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The difference between two inventories. Pure. A package present at several versions
/// (two copies of an npm package) compares as the set of its versions.
pub fn diff(old_digest: &str, old: &[Installed], new_digest: &str, new: &[Installed]) -> Diff {
    type Versions = BTreeMap<String, BTreeMap<String, String>>;
    let index = |packages: &[Installed]| {
        let mut by: Versions = BTreeMap::new();
        for p in packages {
            let (identity, version) = split_purl(&p.purl);
            by.entry(identity)
                .or_default()
                .entry(version)
                .or_insert_with(|| p.layer.clone());
        }
        by
    };
    let (before, after) = (index(old), index(new));
    let new_layers: BTreeSet<&str> = new.iter().map(|p| p.layer.as_str()).collect();
    let mut out = Diff {
        old: old_digest.to_string(),
        new: new_digest.to_string(),
        ..Diff::default()
    };
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for package in keys {
        let was = before.get(package);
        let now = after.get(package);
        let versions = |v: Option<&BTreeMap<String, String>>| -> Vec<String> {
            v.map(|m| m.keys().cloned().collect()).unwrap_or_default()
        };
        let (old_versions, new_versions) = (versions(was), versions(now));
        if old_versions == new_versions {
            continue;
        }
        match (was, now) {
            (Some(was), None) => {
                let layer = was.values().next().cloned().unwrap_or_default();
                out.removed.push(Change {
                    package: package.clone(),
                    layer_kept: Some(new_layers.contains(layer.as_str())),
                    layer,
                    old_versions,
                    new_versions,
                });
            }
            (None, Some(now)) => out.added.push(Change {
                package: package.clone(),
                layer: now.values().next().cloned().unwrap_or_default(),
                old_versions,
                new_versions,
                layer_kept: None,
            }),
            (Some(was), Some(now)) => {
                // The layer of a version NEW has and OLD had not.
                let layer = now
                    .iter()
                    .find(|(v, _)| !was.contains_key(*v))
                    .or_else(|| now.iter().next())
                    .map(|(_, l)| l.clone())
                    .unwrap_or_default();
                out.changed.push(Change {
                    package: package.clone(),
                    layer,
                    old_versions,
                    new_versions,
                    layer_kept: None,
                });
            }
            (None, None) => {}
        }
    }
    out
}

/// The diff as text, one line per package: `+` added, `-` removed, `~` changed.
pub fn render(diff: &Diff) -> String {
    let short = |layer: &str| {
        let hex = layer.strip_prefix("sha256:").unwrap_or(layer);
        format!("sha256:{}", &hex[..hex.len().min(12)])
    };
    let mut out = format!("{} → {}\n", diff.old, diff.new);
    for c in &diff.added {
        out.push_str(&format!(
            "+ {} {}  (layer {})\n",
            c.package,
            c.new_versions.join(", "),
            short(&c.layer)
        ));
    }
    for c in &diff.removed {
        let why = if c.layer_kept == Some(true) {
            "still in the new image: removed by a later layer"
        } else {
            "not in the new image"
        };
        out.push_str(&format!(
            "- {} {}  (was in layer {}, {why})\n",
            c.package,
            c.old_versions.join(", "),
            short(&c.layer)
        ));
    }
    for c in &diff.changed {
        out.push_str(&format!(
            "~ {} {} → {}  (layer {})\n",
            c.package,
            c.old_versions.join(", "),
            c.new_versions.join(", "),
            short(&c.layer)
        ));
    }
    out.push_str(&format!(
        "{} added, {} removed, {} changed\n",
        diff.added.len(),
        diff.removed.len(),
        diff.changed.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(purl: &str, layer: &str) -> Installed {
        Installed {
            purl: purl.into(),
            layer: layer.into(),
        }
    }

    #[test]
    fn packages_are_added_removed_and_changed_with_their_layers() {
        let old = [
            at(
                "pkg:deb/debian/openssl@3.0.11-1~deb12u1?distro=debian-12",
                "sha256:base",
            ),
            at(
                "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?distro=debian-12&upstream=glibc",
                "sha256:base",
            ),
            at("pkg:npm/left-pad@1.3.0", "sha256:app"),
            at("pkg:npm/express@4.19.1", "sha256:base"),
            at("pkg:npm/ms@2.0.0", "sha256:app"),
            at("pkg:npm/ms@2.1.3", "sha256:app"),
            at(
                "pkg:rpm/redhat/bash@5.1-1.el9?arch=x86_64&epoch=1",
                "sha256:base",
            ),
        ];
        let new = [
            at(
                "pkg:deb/debian/openssl@3.0.11-1~deb12u2?distro=debian-12",
                "sha256:patch",
            ),
            at(
                "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?distro=debian-12&upstream=glibc",
                "sha256:base",
            ),
            at("pkg:npm/zod@3.23.0", "sha256:patch"),
            at("pkg:npm/express@4.19.1", "sha256:base"),
            at("pkg:npm/ms@2.1.3", "sha256:app"),
            at(
                "pkg:rpm/redhat/bash@5.1-1.el9?arch=x86_64&epoch=2",
                "sha256:patch",
            ),
        ];
        let d = diff("sha256:old", &old, "sha256:new", &new);
        let added: Vec<(&str, &str)> = d
            .added
            .iter()
            .map(|c| (c.package.as_str(), c.layer.as_str()))
            .collect();
        assert_eq!(added, [("pkg:npm/zod", "sha256:patch")]);
        let removed: Vec<(&str, &str, Option<bool>)> = d
            .removed
            .iter()
            .map(|c| (c.package.as_str(), c.layer.as_str(), c.layer_kept))
            .collect();
        assert_eq!(removed, [("pkg:npm/left-pad", "sha256:app", Some(true))]);
        let changed: Vec<(&str, Vec<String>, Vec<String>, &str)> = d
            .changed
            .iter()
            .map(|c| {
                (
                    c.package.as_str(),
                    c.old_versions.clone(),
                    c.new_versions.clone(),
                    c.layer.as_str(),
                )
            })
            .collect();
        assert_eq!(
            changed,
            [
                (
                    "pkg:deb/debian/openssl",
                    vec!["3.0.11-1~deb12u1".to_string()],
                    vec!["3.0.11-1~deb12u2".to_string()],
                    "sha256:patch"
                ),
                (
                    "pkg:npm/ms",
                    vec!["2.0.0".to_string(), "2.1.3".to_string()],
                    vec!["2.1.3".to_string()],
                    "sha256:app"
                ),
                (
                    "pkg:rpm/redhat/bash",
                    vec!["1:5.1-1.el9".to_string()],
                    vec!["2:5.1-1.el9".to_string()],
                    "sha256:patch"
                ),
            ]
        );
        let text = render(&d);
        assert!(
            text.contains("+ pkg:npm/zod 3.23.0  (layer sha256:patch)"),
            "{text}"
        );
        assert!(
            text.contains(
                "~ pkg:deb/debian/openssl 3.0.11-1~deb12u1 → 3.0.11-1~deb12u2  (layer sha256:patch)"
            ),
            "{text}"
        );
        assert!(text.ends_with("1 added, 1 removed, 3 changed\n"), "{text}");
        // Nothing changed: an empty diff.
        let same = diff("a", &old, "b", &old);
        assert!(same.added.is_empty() && same.removed.is_empty() && same.changed.is_empty());
        assert_eq!(
            split_purl("pkg:pypi/six@1.16.0"),
            ("pkg:pypi/six".into(), "1.16.0".into())
        );
        assert_eq!(
            split_purl("pkg:deb/debian/a@1.0%2Bb1"),
            ("pkg:deb/debian/a".into(), "1.0+b1".into())
        );
    }
}
