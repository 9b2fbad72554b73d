//! OpenVEX 0.2.0 (https://github.com/openvex/spec, OPENVEX-SPEC.md).

use super::{Document, Field, Format, Product, Statement, Status, VexError, refuse};

pub(crate) fn read(json: &serde_json::Value) -> Result<Document, VexError> {
    let doc = Field::root(json);
    let context = doc.req("@context")?.str()?;
    if !context.starts_with("https://openvex.dev/ns") {
        return refuse(
            "@context",
            format!("{context:?} is not an OpenVEX context (https://openvex.dev/ns/v0.2.0)"),
        );
    }
    let id = doc.req("@id")?.str()?.to_string();
    let version = doc.req("version")?.version()?;
    let timestamp = doc.get("last_updated").map_or_else(
        || doc.req("timestamp")?.timestamp().map(Some),
        |f| f.timestamp().map(Some),
    )?;
    let mut statements = Vec::new();
    for statement in doc.req("statements")?.array()? {
        let vulnerability = statement.req("vulnerability")?;
        // 0.2.0 has an object; 0.0.x a plain string.
        let (name, aliases) = match vulnerability.value {
            serde_json::Value::String(_) => (vulnerability.str()?.to_string(), Vec::new()),
            _ => (
                vulnerability.req("name")?.str()?.to_string(),
                vulnerability
                    .opt_array("aliases")?
                    .iter()
                    .map(|a| a.str().map(str::to_string))
                    .collect::<Result<_, _>>()?,
            ),
        };
        let status_field = statement.req("status")?;
        let status_text = status_field.str()?;
        let Some(status) = Status::parse(status_text) else {
            return refuse(
                &status_field.path,
                format!(
                    "{status_text:?} is not one of not_affected, affected, fixed, under_investigation"
                ),
            );
        };
        let justification = match statement.get("justification") {
            Some(field) => {
                let text = field.str()?;
                if !super::JUSTIFICATIONS.contains(&text) {
                    return refuse(
                        &field.path,
                        format!(
                            "{text:?} is not one of {}",
                            super::JUSTIFICATIONS.join(", ")
                        ),
                    );
                }
                Some(text.to_string())
            }
            None => None,
        };
        let impact_statement = statement.opt_str("impact_statement")?.map(str::to_string);
        // The spec: a not_affected statement MUST have a justification or an impact statement.
        if status == Status::NotAffected && justification.is_none() && impact_statement.is_none() {
            return refuse(
                format!("{}.justification", statement.path),
                "a not_affected statement needs a justification or an impact_statement",
            );
        }
        let action_statement = statement.opt_str("action_statement")?.map(str::to_string);
        let when = statement.opt_timestamp("timestamp")?.or(timestamp);
        let products = statement.req("products")?.array()?;
        if products.is_empty() {
            return refuse(format!("{}.products", statement.path), "empty");
        }
        for product in products {
            let mut scope = product_identifier(&product)?;
            let subcomponents = product.opt_array("subcomponents")?;
            let targets = if subcomponents.is_empty() {
                vec![scope.clone()]
            } else {
                // Components inside the product: the statement is about each of them, in
                // that product.
                let image = scope.image_digest.take();
                subcomponents
                    .iter()
                    .map(|sub| {
                        let mut target = product_identifier(sub)?;
                        if target.image_digest.is_none() {
                            target.image_digest = image.clone();
                        }
                        Ok(target)
                    })
                    .collect::<Result<Vec<_>, VexError>>()?
            };
            for target in targets {
                statements.push(Statement {
                    vulnerability: name.clone(),
                    aliases: aliases.clone(),
                    product: target,
                    status,
                    justification: justification.clone(),
                    impact_statement: impact_statement.clone(),
                    action_statement: action_statement.clone(),
                    timestamp: when,
                });
            }
        }
    }
    Ok(Document {
        id,
        version,
        timestamp,
        format: Format::OpenVex,
        sha256: String::new(),
        statements,
    })
}

/// A product or subcomponent: its `@id`, or `identifiers.purl`.
fn product_identifier(product: &Field<'_>) -> Result<Product, VexError> {
    let purl = product
        .get("identifiers")
        .map(|ids| ids.opt_str("purl"))
        .transpose()?
        .flatten();
    let id = product.opt_str("@id")?;
    for candidate in [purl, id].into_iter().flatten() {
        if let Some(found) = Product::from_identifier(candidate) {
            return Ok(found);
        }
    }
    match id.or(purl) {
        Some(other) => refuse(
            &product.path,
            format!("{other:?} is neither a package URL nor an image digest"),
        ),
        None => refuse(&product.path, "needs @id or identifiers.purl"),
    }
}
