//! Matching: an inventory's components against advisory rows, each range read with its
//! ecosystem's version ordering ([`crate::versions`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Component;
use crate::versions::{Scheme, affected};

/// An advisory row as matching needs it.
#[derive(Clone, Debug)]
pub struct AdvisoryRow {
    /// Identity.
    pub merge_hash: String,
    /// CVE or source id.
    pub vuln_id: String,
    /// Package URL without version.
    pub affects_key: String,
    /// OSV ecosystem.
    pub ecosystem: String,
    /// OSV ranges.
    pub ranges: Value,
    /// Explicit versions.
    pub versions: Vec<String>,
    /// Severity.
    pub severity: Option<String>,
}

/// A component affected by an advisory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Finding {
    /// Advisory identity.
    pub merge_hash: String,
    /// CVE or source id.
    pub vuln_id: String,
    /// Component.
    pub purl: String,
    /// Severity, if rated.
    pub severity: Option<String>,
    /// First fixed version, if any.
    pub fixed_version: Option<String>,
    /// Layer of the component.
    pub layer: String,
    /// Whether the image's entrypoint uses the component (`None`: not known).
    #[serde(default)]
    pub used_by_entrypoint: Option<bool>,
}

/// Advisory rows by affects key, built once for many images.
pub fn index_rows(rows: &[AdvisoryRow]) -> BTreeMap<&str, Vec<&AdvisoryRow>> {
    let mut by_key: BTreeMap<&str, Vec<&AdvisoryRow>> = BTreeMap::new();
    for row in rows {
        by_key
            .entry(row.affects_key.as_str())
            .or_default()
            .push(row);
    }
    by_key
}

/// Match components against advisory rows. Pure.
pub fn match_components(components: &[Component], rows: &[AdvisoryRow]) -> Vec<Finding> {
    match_indexed(components, &index_rows(rows))
}

/// Match components against rows indexed by [`index_rows`]. Pure.
pub fn match_indexed(
    components: &[Component],
    by_key: &BTreeMap<&str, Vec<&AdvisoryRow>>,
) -> Vec<Finding> {
    let mut findings = BTreeSet::new();
    for c in components {
        for key in &c.affects_keys {
            for row in by_key.get(key.key.as_str()).into_iter().flatten() {
                if let Some(hit) = affected(
                    Scheme::of(&row.ecosystem),
                    &key.version,
                    &row.ranges,
                    &row.versions,
                ) {
                    findings.insert(Finding {
                        merge_hash: row.merge_hash.clone(),
                        vuln_id: row.vuln_id.clone(),
                        purl: c.purl.clone(),
                        severity: row.severity.clone(),
                        fixed_version: hit.fixed,
                        layer: c.layer.clone(),
                        used_by_entrypoint: c.used_by_entrypoint,
                    });
                }
            }
        }
    }
    findings.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{MatchKey, Policy, verdict};

    #[test]
    fn the_fix_reported_and_ignore_unfixed_follow_the_range_holding_the_version() {
        let component = |version: &str| Component {
            purl: format!("pkg:npm/lib@{version}"),
            affects_keys: vec![MatchKey::new("pkg:npm/lib".into(), version)],
            kind: "npm".into(),
            name: "lib".into(),
            version: version.into(),
            source: String::new(),
            source_version: String::new(),
            layer: "sha256:l".into(),
            path: String::new(),
            used_by_entrypoint: None,
            license: None,
        };
        let row = |id: &str, ranges: Value| AdvisoryRow {
            merge_hash: format!("m-{id}"),
            vuln_id: id.into(),
            affects_key: "pkg:npm/lib".into(),
            ecosystem: "npm".into(),
            ranges,
            versions: vec![],
            severity: Some("critical".into()),
        };
        // The example: 1.2.0 in ranges 0–0.2.1 and 1.0.0–1.2.3.
        let two = row(
            "GHSA-two",
            json!([{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.2.1"}]},
                   {"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"fixed": "1.2.3"}]}]),
        );
        // A fixed early stretch, and an open one holding 2.1.0.
        let open = row(
            "GHSA-open",
            json!([{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.2.1"}]},
                   {"type": "SEMVER", "events": [{"introduced": "2.0.0"}, {"last_affected": "2.9.9"}]}]),
        );
        let rows = [two, open];
        let found = match_components(&[component("1.2.0")], &rows);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].fixed_version.as_deref(), Some("1.2.3"));
        let found = match_components(&[component("2.1.0")], &rows);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].vuln_id, "GHSA-open");
        assert_eq!(found[0].fixed_version, None, "not the other range's 0.2.1");
        let policy = Policy {
            fail_on: "high".into(),
            warn_on: None,
            ignore_unfixed: true,
            ..Default::default()
        };
        assert_eq!(verdict(&found, &policy), "Pass", "unfixed for 2.1.0");
        let strict = Policy {
            ignore_unfixed: false,
            ..policy
        };
        assert_eq!(verdict(&found, &strict), "Fail");
    }
}
