//! CycloneDX VEX (1.4–1.6): `vulnerabilities[]` with `analysis` and `affects`, products
//! by `bom-ref` into `components` (their `purl`). When the BOM's subject
//! (`metadata.component`) is an OCI image by digest, statements are about that image only.

use std::collections::BTreeMap;

use super::{Document, Field, Format, Justification, Product, Statement, Status, VexError, refuse};

fn status(state: &str) -> Option<Status> {
    Some(match state {
        "not_affected" | "false_positive" => Status::NotAffected,
        "exploitable" => Status::Affected,
        "resolved" | "resolved_with_pedigree" => Status::Fixed,
        "in_triage" => Status::UnderInvestigation,
        _ => return None,
    })
}

fn components(
    map: &mut BTreeMap<String, Option<String>>,
    list: &[Field<'_>],
    depth: usize,
) -> Result<(), VexError> {
    for component in list {
        if depth > 30 {
            return refuse(&component.path, "components nested deeper than 30");
        }
        if let Some(reference) = component.opt_str("bom-ref")? {
            map.insert(
                reference.to_string(),
                component.opt_str("purl")?.map(str::to_string),
            );
        }
        components(map, &component.opt_array("components")?, depth + 1)?;
    }
    Ok(())
}

pub(crate) fn read(json: &serde_json::Value) -> Result<Document, VexError> {
    let bom = Field::root(json);
    let format = bom.req("bomFormat")?;
    if format.str()? != "CycloneDX" {
        return refuse(&format.path, "must be \"CycloneDX\"");
    }
    let spec = bom.req("specVersion")?;
    if !matches!(spec.str()?, "1.4" | "1.5" | "1.6") {
        return refuse(&spec.path, "VEX is read from CycloneDX 1.4, 1.5 and 1.6");
    }
    let id = bom
        .get("serialNumber")
        .map_or_else(
            || {
                refuse(
                    "serialNumber",
                    "required: without it a later version of this VEX cannot supersede it",
                )
            },
            |f| f.str(),
        )?
        .to_string();
    let version = match bom.get("version") {
        Some(v) => v.version()?,
        None => super::Version::parse("1").expect("1 is a version"),
    };
    let metadata = bom.get("metadata");
    let timestamp = metadata
        .as_ref()
        .map(|m| m.opt_timestamp("timestamp"))
        .transpose()?
        .flatten();
    let subject_image = metadata
        .as_ref()
        .and_then(|m| m.get("component"))
        .map(|c| c.opt_str("purl"))
        .transpose()?
        .flatten()
        .and_then(Product::from_identifier)
        .and_then(|p| p.image_digest);
    let mut refs = BTreeMap::new();
    components(&mut refs, &bom.opt_array("components")?, 0)?;
    if let Some(subject) = metadata.as_ref().and_then(|m| m.get("component")) {
        components(&mut refs, std::slice::from_ref(&subject), 0)?;
    }

    let mut statements = Vec::new();
    for vulnerability in bom.opt_array("vulnerabilities")? {
        let name = vulnerability.req("id")?.str()?.to_string();
        let aliases = vulnerability
            .opt_array("references")?
            .iter()
            .map(|r| r.req("id").and_then(|f| f.str().map(str::to_string)))
            .collect::<Result<Vec<_>, _>>()?;
        let analysis = vulnerability.req("analysis")?;
        let state_field = analysis.req("state")?;
        let state = state_field.str()?;
        let Some(status) = status(state) else {
            return refuse(
                &state_field.path,
                format!(
                    "{state:?} is not one of resolved, resolved_with_pedigree, exploitable, in_triage, false_positive, not_affected"
                ),
            );
        };
        let justification = match analysis.get("justification") {
            Some(field) => {
                let text = field.str()?;
                match Justification::from_cyclonedx(text) {
                    Some(label) => Some(label.to_string()),
                    None => {
                        return refuse(
                            &field.path,
                            format!("{text:?} is not a CycloneDX justification"),
                        );
                    }
                }
            }
            None => None,
        };
        let detail = analysis.opt_str("detail")?.map(str::to_string);
        let responses = analysis
            .opt_array("response")?
            .iter()
            .map(|r| r.str().map(str::to_string))
            .collect::<Result<Vec<_>, _>>()?;
        let (impact_statement, action_statement) = match status {
            Status::NotAffected => (detail, None),
            _ if !responses.is_empty() => (
                None,
                Some(match detail {
                    Some(d) => format!("{}: {d}", responses.join(", ")),
                    None => responses.join(", "),
                }),
            ),
            _ => (None, detail),
        };
        let when = analysis
            .opt_timestamp("lastUpdated")?
            .or(vulnerability.opt_timestamp("updated")?)
            .or(vulnerability.opt_timestamp("published")?)
            .or(timestamp);
        let affects = vulnerability.req("affects")?.array()?;
        if affects.is_empty() {
            return refuse(format!("{}.affects", vulnerability.path), "empty");
        }
        for affected in affects {
            let reference_field = affected.req("ref")?;
            let reference = reference_field.str()?;
            let purl = match refs.get(reference) {
                Some(purl) => purl.clone(),
                None if reference.starts_with("pkg:") => Some(reference.to_string()),
                // A BOM-Link into another BOM (the usual form of a standalone VEX): its
                // fragment is a bom-ref there, which tools make the component's purl; any
                // other fragment cannot be resolved from this document.
                None if reference.starts_with("urn:cdx:") => reference
                    .split_once('#')
                    .map(|(_, fragment)| fragment.replace("%40", "@").replace("%3A", ":"))
                    .filter(|f| f.starts_with("pkg:")),
                None => {
                    return refuse(
                        &reference_field.path,
                        format!("{reference:?} is no bom-ref of this BOM"),
                    );
                }
            };
            let Some(product) = purl.as_deref().and_then(Product::from_identifier) else {
                continue;
            };
            let product = Product {
                image_digest: product.image_digest.or(subject_image.clone()),
                purl: product.purl,
            };
            statements.push(Statement {
                vulnerability: name.clone(),
                aliases: aliases.clone(),
                product,
                status,
                justification: justification.clone(),
                impact_statement: impact_statement.clone(),
                action_statement: action_statement.clone(),
                timestamp: when,
            });
        }
    }
    Ok(Document {
        id,
        version,
        timestamp,
        format: Format::CycloneDx,
        sha256: String::new(),
        statements,
    })
}
