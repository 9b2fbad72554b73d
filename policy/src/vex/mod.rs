//! VEX documents in the three formats the seed names (§4.2: OpenVEX, CSAF VEX, CycloneDX
//! VEX), read into one statement model.
//!
//! A document is refused as a whole when anything in it is malformed, with the JSON path
//! of the field and what is wrong: a half-read document would silently drop statements.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub mod consensus;
mod csaf;
mod cyclonedx;
mod openvex;

/// What a provider says about a vulnerability in a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The product is not affected.
    NotAffected,
    /// The product is affected.
    Affected,
    /// The product contains a fix.
    Fixed,
    /// Not yet known.
    UnderInvestigation,
}

impl Status {
    /// The OpenVEX spelling, used everywhere else too.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotAffected => "not_affected",
            Status::Affected => "affected",
            Status::Fixed => "fixed",
            Status::UnderInvestigation => "under_investigation",
        }
    }

    /// From the OpenVEX spelling.
    pub fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "not_affected" => Status::NotAffected,
            "affected" => Status::Affected,
            "fixed" => Status::Fixed,
            "under_investigation" => Status::UnderInvestigation,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The five justifications of OpenVEX and CSAF (their labels are the same); CycloneDX's
/// are mapped onto them (see [`Justification::from_cyclonedx`]).
pub const JUSTIFICATIONS: &[&str] = &[
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
];

/// Helpers for justifications.
pub struct Justification;

impl Justification {
    /// A CycloneDX `analysis.justification` as the OpenVEX label it means (CycloneDX 1.6
    /// §vulnerabilities.analysis; the `requires_*` ones say the vulnerable code cannot be
    /// reached by an adversary in this configuration, the `protected_*` ones that a
    /// mitigation exists).
    pub fn from_cyclonedx(text: &str) -> Option<&'static str> {
        Some(match text {
            "code_not_present" => "vulnerable_code_not_present",
            "code_not_reachable" => "vulnerable_code_not_in_execute_path",
            "requires_configuration" | "requires_dependency" | "requires_environment" => {
                "vulnerable_code_cannot_be_controlled_by_adversary"
            }
            "protected_by_compiler"
            | "protected_at_runtime"
            | "protected_at_perimeter"
            | "protected_by_mitigating_control" => "inline_mitigations_already_exist",
            _ => return None,
        })
    }
}

/// What a statement is about: a package (by purl), optionally only inside one image.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Product {
    /// Package URL of the component (`None`: the whole image).
    pub purl: Option<String>,
    /// Image digest (`sha256:…`) the statement is limited to (`None`: wherever it runs).
    pub image_digest: Option<String>,
}

impl Product {
    /// A product given as one identifier: an OCI purl with a digest is an image, any other
    /// purl a component.
    pub fn from_identifier(id: &str) -> Option<Product> {
        if let Some(digest) = oci_digest(id) {
            return Some(Product {
                purl: None,
                image_digest: Some(digest),
            });
        }
        if id.starts_with("pkg:") {
            return Some(Product {
                purl: Some(id.to_string()),
                image_digest: None,
            });
        }
        if is_digest(id) {
            return Some(Product {
                purl: None,
                image_digest: Some(id.to_string()),
            });
        }
        None
    }
}

fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The image digest of a `pkg:oci/...@sha256%3A…` (or unencoded `@sha256:`) purl.
fn oci_digest(purl: &str) -> Option<String> {
    let rest = purl.strip_prefix("pkg:oci/")?;
    let (_, version) = rest.split_once('@')?;
    let version = version.split(['?', '#']).next()?;
    let digest = version.replace("%3A", ":").replace("%3a", ":");
    is_digest(&digest).then_some(digest)
}

/// One statement. Ordered only so that consensus can break ties deterministically.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Statement {
    /// Vulnerability id (CVE, GHSA, …).
    pub vulnerability: String,
    /// Other ids of the same vulnerability.
    pub aliases: Vec<String>,
    /// What it is about.
    pub product: Product,
    /// The status.
    pub status: Status,
    /// Why not affected (an OpenVEX/CSAF label; CycloneDX mapped).
    pub justification: Option<String>,
    /// Free text: why not affected.
    pub impact_statement: Option<String>,
    /// Free text: what to do (affected).
    pub action_statement: Option<String>,
    /// When the statement was made (the document's when it has none of its own).
    pub timestamp: Option<Timestamp>,
}

/// The formats read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenVEX 0.2.0.
    OpenVex,
    /// CSAF 2.0, VEX profile.
    Csaf,
    /// CycloneDX 1.4–1.6 with `vulnerabilities`.
    CycloneDx,
}

impl Format {
    /// From the CLI's spelling.
    pub fn parse(text: &str) -> Option<Format> {
        Some(match text {
            "openvex" => Format::OpenVex,
            "csaf" => Format::Csaf,
            "cyclonedx" => Format::CycloneDx,
            _ => return None,
        })
    }

    /// The CLI's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::OpenVex => "openvex",
            Format::Csaf => "csaf",
            Format::CycloneDx => "cyclonedx",
        }
    }
}

/// A document's version: an integer, or a semantic version (CSAF allows both), ordered.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    /// The parts compared in order.
    pub key: Vec<u64>,
    /// As written.
    pub text: String,
}

impl Version {
    /// Parse `1`, `2.0.1` (a pre-release or build suffix is kept in the text and ignored
    /// for the order).
    pub fn parse(text: &str) -> Option<Version> {
        let core = text.split(['-', '+']).next()?;
        let key: Option<Vec<u64>> = core.split('.').map(|p| p.parse().ok()).collect();
        let key = key.filter(|k| !k.is_empty() && k.len() <= 3)?;
        Some(Version {
            key,
            text: text.to_string(),
        })
    }
}

/// A document read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// The document's id (OpenVEX `@id`, CSAF `tracking.id`, CycloneDX `serialNumber`).
    pub id: String,
    /// Its version.
    pub version: Version,
    /// When it was issued or last updated.
    pub timestamp: Option<Timestamp>,
    /// Its format.
    pub format: Format,
    /// SHA-256 of the bytes read: the same document re-ingested is recognised.
    pub sha256: String,
    /// The statements, one per vulnerability and product.
    pub statements: Vec<Statement>,
}

/// Why a document was refused: the JSON path of the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct VexError {
    /// JSON path (`statements[2].status`).
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

pub(crate) fn refuse<T>(
    field: impl Into<String>,
    problem: impl Into<String>,
) -> Result<T, VexError> {
    Err(VexError {
        field: field.into(),
        problem: problem.into(),
    })
}

/// Largest document read (a CSAF advisory of a big product family is a few MiB).
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024 * 1024;

/// Read a document in `format`.
pub fn parse(format: Format, bytes: &[u8]) -> Result<Document, VexError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return refuse(
            "(document)",
            format!(
                "{} bytes is more than the {MAX_DOCUMENT_BYTES} a VEX document may have",
                bytes.len()
            ),
        );
    }
    let json: serde_json::Value = serde_json::from_slice(bytes)
        .or_else(|e| refuse("(document)", format!("not JSON: {e}")))?;
    let mut document = match format {
        Format::OpenVex => openvex::read(&json)?,
        Format::Csaf => csaf::read(&json)?,
        Format::CycloneDx => cyclonedx::read(&json)?,
    };
    document.sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
    // One order whatever the document's: statements compare equal across re-reads.
    document.statements.sort_by(|a, b| {
        (&a.vulnerability, &a.product, a.status).cmp(&(&b.vulnerability, &b.product, b.status))
    });
    document
        .statements
        .dedup_by(|a, b| a.vulnerability == b.vulnerability && a.product == b.product && a == b);
    Ok(document)
}

/// JSON helpers that say where a field is.
pub(crate) struct Field<'a> {
    pub value: &'a serde_json::Value,
    pub path: String,
}

impl<'a> Field<'a> {
    pub fn root(value: &'a serde_json::Value) -> Field<'a> {
        Field {
            value,
            path: String::new(),
        }
    }

    fn child_path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// A member, `None` when absent or null.
    pub fn get(&self, name: &str) -> Option<Field<'a>> {
        match self.value.get(name) {
            None | Some(serde_json::Value::Null) => None,
            Some(value) => Some(Field {
                value,
                path: self.child_path(name),
            }),
        }
    }

    /// A member that must be there.
    pub fn req(&self, name: &str) -> Result<Field<'a>, VexError> {
        self.get(name)
            .map_or_else(|| refuse(self.child_path(name), "required"), Ok)
    }

    pub fn str(&self) -> Result<&'a str, VexError> {
        match self.value.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => refuse(&self.path, "empty"),
            None => refuse(&self.path, "must be a string"),
        }
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<&'a str>, VexError> {
        self.get(name).map(|f| f.str()).transpose()
    }

    pub fn array(&self) -> Result<Vec<Field<'a>>, VexError> {
        match self.value.as_array() {
            Some(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Field {
                    value,
                    path: format!("{}[{i}]", self.path),
                })
                .collect()),
            None => refuse(&self.path, "must be an array"),
        }
    }

    pub fn opt_array(&self, name: &str) -> Result<Vec<Field<'a>>, VexError> {
        self.get(name).map_or(Ok(Vec::new()), |f| f.array())
    }

    pub fn timestamp(&self) -> Result<Timestamp, VexError> {
        let text = self.str()?;
        text.parse::<Timestamp>()
            .or_else(|_| refuse(&self.path, format!("{text:?} is not an RFC 3339 time")))
    }

    pub fn opt_timestamp(&self, name: &str) -> Result<Option<Timestamp>, VexError> {
        self.get(name).map(|f| f.timestamp()).transpose()
    }

    /// An integer or a version string.
    pub fn version(&self) -> Result<Version, VexError> {
        let text = match self.value {
            serde_json::Value::Number(n) if n.as_u64().is_some() => n.to_string(),
            serde_json::Value::String(s) => s.clone(),
            _ => {
                return refuse(
                    &self.path,
                    "must be a non-negative integer or a version string",
                );
            }
        };
        Version::parse(&text).map_or_else(
            || {
                refuse(
                    &self.path,
                    format!("{text:?} is not an integer or MAJOR.MINOR.PATCH version"),
                )
            },
            Ok,
        )
    }
}
