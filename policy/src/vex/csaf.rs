//! CSAF 2.0 (OASIS), read as the VEX profile (§4.5) describes it: `product_status`,
//! `flags` (justifications), `threats` of category `impact`, `remediations`. Products are
//! identified through the product tree's `product_identification_helper.purl`; a
//! relationship (`default_component_of`, `installed_on`, …) scopes a component to the
//! image it relates to when that one is an OCI purl with a digest.

use std::collections::BTreeMap;

use super::{Document, Field, Format, Product, Statement, Status, VexError, refuse};

pub(crate) fn read(json: &serde_json::Value) -> Result<Document, VexError> {
    let root = Field::root(json);
    let document = root.req("document")?;
    let csaf_version = document.req("csaf_version")?;
    if csaf_version.str()? != "2.0" {
        return refuse(&csaf_version.path, "only CSAF 2.0 is read");
    }
    let tracking = document.req("tracking")?;
    let id = tracking.req("id")?.str()?.to_string();
    let version = tracking.req("version")?.version()?;
    let timestamp = Some(tracking.req("current_release_date")?.timestamp()?);

    let products = match root.get("product_tree") {
        Some(tree) => product_map(&tree)?,
        None => Products::default(),
    };
    let mut statements = Vec::new();
    for vulnerability in root.opt_array("vulnerabilities")? {
        let mut ids: Vec<String> = Vec::new();
        if let Some(cve) = vulnerability.opt_str("cve")? {
            ids.push(cve.to_string());
        }
        for other in vulnerability.opt_array("ids")? {
            ids.push(other.req("text")?.str()?.to_string());
        }
        if ids.is_empty() {
            return refuse(
                format!("{}.cve", vulnerability.path),
                "a vulnerability needs a cve or ids",
            );
        }
        let name = ids.remove(0);
        let Some(status) = vulnerability.get("product_status") else {
            continue;
        };
        // Justification and impact statement per product, from flags and impact threats.
        let mut justification: BTreeMap<String, String> = BTreeMap::new();
        for flag in vulnerability.opt_array("flags")? {
            let label_field = flag.req("label")?;
            let label = label_field.str()?;
            if !super::JUSTIFICATIONS.contains(&label) {
                return refuse(
                    &label_field.path,
                    format!(
                        "{label:?} is not one of {}",
                        super::JUSTIFICATIONS.join(", ")
                    ),
                );
            }
            for product in products.expand(&flag)? {
                justification.insert(product, label.to_string());
            }
        }
        let mut impact: BTreeMap<String, String> = BTreeMap::new();
        for threat in vulnerability.opt_array("threats")? {
            if threat.req("category")?.str()? != "impact" {
                continue;
            }
            let details = threat.req("details")?.str()?;
            for product in products.expand(&threat)? {
                impact.insert(product, details.to_string());
            }
        }
        let mut action: BTreeMap<String, String> = BTreeMap::new();
        for remediation in vulnerability.opt_array("remediations")? {
            let details = remediation.req("details")?.str()?;
            for product in products.expand(&remediation)? {
                action
                    .entry(product)
                    .and_modify(|a| {
                        a.push_str("; ");
                        a.push_str(details);
                    })
                    .or_insert_with(|| details.to_string());
            }
        }
        for (member, status_of) in [
            ("known_not_affected", Status::NotAffected),
            ("known_affected", Status::Affected),
            ("first_affected", Status::Affected),
            ("last_affected", Status::Affected),
            ("fixed", Status::Fixed),
            ("first_fixed", Status::Fixed),
            ("under_investigation", Status::UnderInvestigation),
        ] {
            for product_id in status.opt_array(member)? {
                let pid = product_id.str()?;
                if !products.known(pid) {
                    return refuse(
                        &product_id.path,
                        format!("product {pid:?} is not in the product tree"),
                    );
                }
                // The VEX profile: every known_not_affected product has an impact statement
                // (a flag or an impact threat).
                if status_of == Status::NotAffected
                    && !justification.contains_key(pid)
                    && !impact.contains_key(pid)
                {
                    return refuse(
                        format!("{}.flags", vulnerability.path),
                        format!(
                            "product {pid:?} is known_not_affected without a flag or an impact threat"
                        ),
                    );
                }
                // Known but without a purl (a CPE-only product): nothing here can match it.
                let Some(product) = products.resolve(pid) else {
                    continue;
                };
                statements.push(Statement {
                    vulnerability: name.clone(),
                    aliases: ids.clone(),
                    product,
                    status: status_of,
                    justification: justification.get(pid).cloned(),
                    impact_statement: impact.get(pid).cloned(),
                    action_statement: action.get(pid).cloned(),
                    timestamp,
                });
            }
        }
    }
    Ok(Document {
        id,
        version,
        timestamp,
        format: Format::Csaf,
        sha256: String::new(),
        statements,
    })
}

#[derive(Default)]
struct Products {
    /// product_id → what it identifies (None: no purl; known but not matchable).
    ids: BTreeMap<String, Option<Product>>,
    /// group_id → product_ids.
    groups: BTreeMap<String, Vec<String>>,
}

impl Products {
    fn known(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    fn resolve(&self, id: &str) -> Option<Product> {
        self.ids.get(id).cloned().flatten()
    }

    /// The products a flag, threat or remediation names, groups expanded.
    fn expand(&self, item: &Field<'_>) -> Result<Vec<String>, VexError> {
        let mut out = Vec::new();
        for product in item.opt_array("product_ids")? {
            out.push(product.str()?.to_string());
        }
        for group in item.opt_array("group_ids")? {
            let gid = group.str()?;
            match self.groups.get(gid) {
                Some(members) => out.extend(members.iter().cloned()),
                None => {
                    return refuse(
                        &group.path,
                        format!("group {gid:?} is not in the product tree"),
                    );
                }
            }
        }
        Ok(out)
    }
}

fn full_product_name(products: &mut Products, name: &Field<'_>) -> Result<(), VexError> {
    let id = name.req("product_id")?.str()?.to_string();
    let purl = name
        .get("product_identification_helper")
        .map(|h| h.opt_str("purl"))
        .transpose()?
        .flatten();
    let product = match purl {
        Some(purl) => match Product::from_identifier(purl) {
            Some(p) => Some(p),
            None => {
                return refuse(
                    format!("{}.product_identification_helper.purl", name.path),
                    format!("{purl:?} is not a package URL"),
                );
            }
        },
        None => None,
    };
    products.ids.insert(id, product);
    Ok(())
}

fn branches(products: &mut Products, node: &Field<'_>, depth: usize) -> Result<(), VexError> {
    if depth > 30 {
        return refuse(&node.path, "branches nested deeper than 30");
    }
    for branch in node.opt_array("branches")? {
        if let Some(product) = branch.get("product") {
            full_product_name(products, &product)?;
        }
        branches(products, &branch, depth + 1)?;
    }
    Ok(())
}

fn product_map(tree: &Field<'_>) -> Result<Products, VexError> {
    let mut products = Products::default();
    branches(&mut products, tree, 0)?;
    for name in tree.opt_array("full_product_names")? {
        full_product_name(&mut products, &name)?;
    }
    for relationship in tree.opt_array("relationships")? {
        let component = relationship.req("product_reference")?;
        let scope = relationship.req("relates_to_product_reference")?;
        let full = relationship.req("full_product_name")?;
        let id = full.req("product_id")?.str()?.to_string();
        let (component_id, scope_id) = (component.str()?, scope.str()?);
        for (field, pid) in [(&component, component_id), (&scope, scope_id)] {
            if !products.known(pid) {
                return refuse(
                    &field.path,
                    format!("product {pid:?} is not in the product tree"),
                );
            }
        }
        let component = products.resolve(component_id);
        let image = products.resolve(scope_id).and_then(|p| p.image_digest);
        let product = component.map(|mut c| {
            if c.image_digest.is_none() {
                c.image_digest = image;
            }
            c
        });
        products.ids.insert(id, product);
    }
    for group in tree.opt_array("product_groups")? {
        let gid = group.req("group_id")?.str()?.to_string();
        let members = group
            .req("product_ids")?
            .array()?
            .iter()
            .map(|m| m.str().map(str::to_string))
            .collect::<Result<Vec<_>, _>>()?;
        products.groups.insert(gid, members);
    }
    Ok(products)
}
