//! The `canonical-imported` event stream (the seed's "Event Stream"): one outbox row per
//! chunk of up to [`ITEMS_PER_EVENT`] imported canonicals, in change order. Each row names
//! the fields its items share once and holds one short array per canonical; [`seed_events`]
//! expands a row into the seed's per-canonical objects. One row per canonical made the
//! server store 100,000 rows for a 100,000-canonical bundle, as much work as the
//! canonicals themselves (docs/federation-bundle.md, "Events").
//!
//! [`seed_events`]: CanonicalImported::seed_events

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The outbox kind of the rows.
pub const KIND: &str = "canonical-imported";

/// Most canonicals per row.
pub const ITEMS_PER_EVENT: usize = 1_000;

/// What each item's array holds, in order (written into every row as `item_fields`).
pub const ITEM_FIELDS: [&str; 6] = [
    "change",
    "merge_hash",
    "cve",
    "affects_key",
    "action",
    "severity",
];

/// One imported canonical: its change number, merge hash, CVE, affects key, action
/// (`Created` or `Updated`) and severity, serialized as an array in [`ITEM_FIELDS`] order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedItem<'a>(
    pub i64,
    pub Cow<'a, str>,
    pub Option<Cow<'a, str>>,
    pub Cow<'a, str>,
    pub Cow<'a, str>,
    pub Option<Cow<'a, str>>,
);

/// A `canonical-imported` row's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanonicalImported<'a> {
    /// `sha256:<hex>` of the imported bundle.
    pub bundle_hash: Cow<'a, str>,
    /// The site the bundle came from.
    pub site_id: Cow<'a, str>,
    /// The import transaction's `now()`, as JSON text.
    pub imported_at: Cow<'a, str>,
    /// [`ITEM_FIELDS`].
    pub item_fields: [Cow<'a, str>; 6],
    /// The canonicals, in change order.
    pub items: Vec<ImportedItem<'a>>,
}

impl<'a> CanonicalImported<'a> {
    /// A row for `items` of one bundle's import.
    pub fn new(
        bundle_hash: &'a str,
        site_id: &'a str,
        imported_at: &'a str,
        items: Vec<ImportedItem<'a>>,
    ) -> Self {
        CanonicalImported {
            bundle_hash: bundle_hash.into(),
            site_id: site_id.into(),
            imported_at: imported_at.into(),
            item_fields: ITEM_FIELDS.map(Cow::Borrowed),
            items,
        }
    }

    /// The row's outbox idempotency key: the kind and its first change number, zero-padded
    /// to 19 digits (each write takes its own number, so the key names one row).
    pub fn idempotency_key(&self) -> String {
        let first = self.items.first().map_or(0, |item| item.0);
        format!("{KIND}/{first:019}")
    }

    /// The highest severity among the items (the row's outbox severity).
    pub fn severity(&self) -> Option<&str> {
        self.items
            .iter()
            .filter_map(|item| item.5.as_deref())
            .max_by_key(|severity| stellaops_policy::evaluate::rank(severity))
    }

    /// The seed's event per canonical, in change order: `canonical_id` (the merge hash),
    /// `cve`, `affects_key`, `merge_hash`, `action`, `bundle_hash`, `site_id`,
    /// `imported_at`.
    pub fn seed_events(&self) -> Vec<Value> {
        self.items
            .iter()
            .map(|ImportedItem(_, merge_hash, cve, affects_key, action, _)| {
                json!({
                    "canonical_id": merge_hash,
                    "cve": cve,
                    "affects_key": affects_key,
                    "merge_hash": merge_hash,
                    "action": action,
                    "bundle_hash": self.bundle_hash,
                    "site_id": self.site_id,
                    "imported_at": self.imported_at,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_reads_back_and_expands_into_the_seed_events() {
        let items = vec![
            ImportedItem(
                7,
                "h1".into(),
                Some("CVE-2024-1".into()),
                "pkg:npm/a".into(),
                "Created".into(),
                Some("medium".into()),
            ),
            ImportedItem(
                8,
                "h2".into(),
                None,
                "pkg:npm/b".into(),
                "Updated".into(),
                Some("critical".into()),
            ),
            ImportedItem(
                9,
                "h3".into(),
                None,
                "pkg:npm/c".into(),
                "Created".into(),
                None,
            ),
        ];
        let row = CanonicalImported::new("sha256:ab", "site-a", "2025-01-15T10:30:15Z", items);
        assert_eq!(
            row.idempotency_key(),
            "canonical-imported/0000000000000000007"
        );
        assert_eq!(row.severity(), Some("critical"));
        let payload = serde_json::to_value(&row).unwrap();
        assert_eq!(
            payload["item_fields"],
            json!([
                "change",
                "merge_hash",
                "cve",
                "affects_key",
                "action",
                "severity"
            ])
        );
        assert_eq!(
            payload["items"][1],
            json!([8, "h2", null, "pkg:npm/b", "Updated", "critical"])
        );
        let read: CanonicalImported<'_> = serde_json::from_value(payload).unwrap();
        assert_eq!(read, row);
        assert_eq!(
            read.seed_events()[0],
            json!({"canonical_id": "h1", "cve": "CVE-2024-1", "affects_key": "pkg:npm/a",
                   "merge_hash": "h1", "action": "Created", "bundle_hash": "sha256:ab",
                   "site_id": "site-a", "imported_at": "2025-01-15T10:30:15Z"})
        );
        assert_eq!(read.seed_events().len(), 3);
    }
}
