//! Server-side `Table` output (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`):
//! the columns `kubectl get` shows.

use serde::Serialize;
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
            c.push(source_column());
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
            source_column(),
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

fn source_column() -> Value {
    column(
        "Source",
        "string",
        "",
        "What the report is about: Scan, or the running workload and container (Deployment/web:app).",
        1,
    )
}

/// The Source cell of a row.
fn source(row: &ResultRow) -> String {
    match &row.workload {
        Some(w) => format!("{}/{}:{}", w.kind, w.name, w.container),
        None => "Scan".into(),
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

/// A cell: text or a number.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Cell {
    /// Text.
    Text(String),
    /// A count.
    Number(i64),
}

/// `PartialObjectMetadata` of a row (kubectl reads the namespace and labels from it).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowObject {
    kind: &'static str,
    api_version: &'static str,
    metadata: kinds::Meta,
}

/// One row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// One cell per column.
    pub cells: Vec<Cell>,
    /// The object's metadata.
    pub object: RowObject,
}

/// A `meta.k8s.io/v1` Table, serialized straight from these types (a 10,000-row LIST
/// never becomes a `serde_json::Value` tree).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    kind: &'static str,
    api_version: &'static str,
    metadata: Value,
    column_definitions: Vec<Value>,
    /// The rows.
    pub rows: Vec<Row>,
}

/// One row of `kind` for `row`.
pub fn row(kind: Kind, row: &ResultRow, now: chrono::DateTime<chrono::Utc>) -> Row {
    use Cell::{Number, Text};
    let age = Text(human_duration((now - row.finished_at).num_seconds()));
    let meta = kinds::meta(kind, row);
    let [critical, high, medium, low] = row.counts.map(|c| Number(c.into()));
    let name = Text(meta.name.clone());
    let image = Text(row.image_ref.clone());
    let cells = match kind {
        Kind::VulnerabilityReport => vec![
            name,
            image,
            Text(row.verdict.clone()),
            critical,
            high,
            medium,
            low,
            age,
            Text(short_digest(&row.image_digest)),
            Text(
                row.policy_digest
                    .as_deref()
                    .map(short_digest)
                    .unwrap_or_default(),
            ),
            Text(source(row)),
        ],
        Kind::SbomReport => vec![
            name,
            image,
            Number(row.components.into()),
            age,
            Text(short_digest(&row.image_digest)),
            Text(row.sbom_uri.clone()),
            Text(source(row)),
        ],
        Kind::ImageVerdict => vec![
            name,
            image,
            Text(row.verdict.clone()),
            critical,
            high,
            medium,
            low,
            age,
        ],
    };
    Row {
        cells,
        object: RowObject {
            kind: "PartialObjectMetadata",
            api_version: "meta.k8s.io/v1",
            metadata: meta,
        },
    }
}

/// The Table of `rows`.
pub fn table(kind: Kind, rows: Vec<Row>, list_meta: Value) -> Table {
    Table {
        kind: "Table",
        api_version: "meta.k8s.io/v1",
        metadata: list_meta,
        column_definitions: columns(kind),
        rows,
    }
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
            workload: None,
        };
        for kind in Kind::ALL {
            let cells = row(kind, &r, chrono::Utc::now()).cells.len();
            assert_eq!(cells, columns(kind).len(), "{kind:?}");
        }
    }
}
