//! Server-side `Table` output (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`):
//! the columns `kubectl get` shows.

use serde_json::{Value, json};
use stellaops_store::reports::ResultRow;

use crate::kinds::{self, Kind};

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    // kubectl offers Table first and plain JSON as the fallback; take the Table whenever
    // it is offered in meta.k8s.io v1 (or v1beta1, which has the same shape).
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"as=Table")
            && params.contains(&"g=meta.k8s.io")
            && (params.contains(&"v=v1") || params.contains(&"v=v1beta1"))
    })
}

fn column(name: &str, type_: &str, format: &str, description: &str, priority: u8) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": description,
           "priority": priority})
}

/// The column definitions of `kind`.
pub fn columns(kind: Kind) -> Vec<Value> {
    let name = column(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace.",
        0,
    );
    let age = column(
        "Age",
        "string",
        "",
        "When the result shown was recorded.",
        0,
    );
    let counts = ["Critical", "High", "Medium", "Low"].map(|s| {
        column(
            s,
            "integer",
            "",
            &format!("Counted {} findings.", s.to_lowercase()),
            0,
        )
    });
    match kind {
        Kind::VulnerabilityReport => {
            let mut c = vec![
                name,
                column(
                    "Image",
                    "string",
                    "",
                    "The image as the Scan asked for it.",
                    0,
                ),
                column("Verdict", "string", "", "Pass, Warn or Fail.", 0),
            ];
            c.extend(counts);
            c.push(age);
            c.push(column("Digest", "string", "", "Digest scanned.", 1));
            c.push(column("Policy", "string", "", "Digest of the policy.", 1));
            c
        }
        Kind::SbomReport => vec![
            name,
            column(
                "Image",
                "string",
                "",
                "The image as the Scan asked for it.",
                0,
            ),
            column("Components", "integer", "", "Components in the SBOM.", 0),
            age,
            column("Digest", "string", "", "Digest scanned.", 1),
            column("SBOM", "string", "", "Where the SBOM is stored.", 1),
        ],
        Kind::ImageVerdict => {
            let mut c = vec![
                name,
                column("Image", "string", "", "The image as last scanned.", 0),
                column("Verdict", "string", "", "Pass, Warn or Fail.", 0),
            ];
            c.extend(counts);
            c.push(age);
            c
        }
    }
}

/// `5s`, `3m`, `2d4h` — Kubernetes' `HumanDuration`, near enough.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else if d < 365 * 8 {
        match d % 365 {
            0 => format!("{}y", d / 365),
            r => format!("{}y{r}d", d / 365),
        }
    } else {
        format!("{}y", d / 365)
    }
}

fn short_digest(digest: &str) -> String {
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("", digest));
    let hex: String = hex.chars().take(12).collect();
    if algorithm.is_empty() {
        hex
    } else {
        format!("{algorithm}:{hex}")
    }
}

/// One row of `kind` for `row` (ecosystem counts are not shown, so not needed).
pub fn row(kind: Kind, row: &ResultRow, now: chrono::DateTime<chrono::Utc>) -> Value {
    let age = human_duration((now - row.finished_at).num_seconds());
    let meta = kinds::meta(kind, row);
    let counts = row.counts.map(i64::from);
    let cells = match kind {
        Kind::VulnerabilityReport => json!([
            meta.name,
            row.image_ref,
            row.verdict,
            counts[0],
            counts[1],
            counts[2],
            counts[3],
            age,
            short_digest(&row.image_digest),
            row.policy_digest
                .as_deref()
                .map(short_digest)
                .unwrap_or_default(),
        ]),
        Kind::SbomReport => json!([
            meta.name,
            row.image_ref,
            row.components,
            age,
            short_digest(&row.image_digest),
            row.sbom_uri,
        ]),
        Kind::ImageVerdict => json!([
            meta.name,
            row.image_ref,
            row.verdict,
            counts[0],
            counts[1],
            counts[2],
            counts[3],
            age,
        ]),
    };
    json!({
        "cells": cells,
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
        },
    })
}

/// The Table of `rows`.
pub fn table(kind: Kind, rows: Vec<Value>, list_meta: Value) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns(kind),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_headers_ask_for_a_table() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
        assert!(!wants_table(
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
        ));
    }

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(185), "3m5s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86_400 + 7200), "3d2h");
        assert_eq!(human_duration(400 * 86_400), "400d");
    }

    #[test]
    fn every_row_has_a_cell_per_column() {
        let r = ResultRow {
            id: 7,
            scan_namespace: Some("team-a".into()),
            scan_name: Some("web".into()),
            scan_uid: None,
            image_ref: "registry/web:1".into(),
            image_digest: format!("sha256:{}", "a".repeat(64)),
            verdict: "Fail".into(),
            counts: [1, 2, 0, 0],
            policy_digest: None,
            advisory_snapshot: 3,
            finished_at: chrono::Utc::now(),
            components: 10,
            sbom_uri: "s3://b/k".into(),
            sbom_sha256: "sha256:b".into(),
        };
        for kind in Kind::ALL {
            let cells = row(kind, &r, chrono::Utc::now())["cells"]
                .as_array()
                .unwrap()
                .len();
            assert_eq!(cells, columns(kind).len(), "{kind:?}");
        }
    }
}
