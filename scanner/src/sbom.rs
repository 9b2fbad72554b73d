//! SBOM writers: CycloneDX 1.6 JSON (the inventory and the Usage view) and SPDX 2.3 JSON,
//! deterministic (the same inventory gives the same bytes).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::analyze::OsRelease;
use crate::{Component, license, usage};

/// A CycloneDX 1.6 JSON SBOM. Deterministic: no timestamp, serial number derived from the
/// image digest, components sorted by package URL.
pub fn cyclonedx(
    image: &str,
    digest: &str,
    components: &[Component],
    os: Option<&OsRelease>,
) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(digest.as_bytes());
    let h = hex::encode(&hash[..16]);
    let serial = format!(
        "urn:uuid:{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    );
    let mut list: Vec<Value> = components
        .iter()
        .map(|c| {
            let mut properties = vec![
                json!({"name": "stellaops:layer.digest", "value": c.layer}),
                json!({"name": "stellaops:file.path", "value": c.path}),
            ];
            if let Some(used) = c.used_by_entrypoint {
                properties
                    .push(json!({"name": "stellaops:usedByEntrypoint", "value": used.to_string()}));
            }
            let mut component = json!({
                "type": "library",
                "bom-ref": c.purl,
                "name": c.name,
                "version": c.version,
                "purl": c.purl,
            });
            if let Some(declared) = &c.license {
                component["licenses"] = license::cyclonedx(declared);
            }
            if let Some((name, version)) = c.source_package() {
                properties.push(json!({"name": "stellaops:source.name", "value": name}));
                properties.push(json!({"name": "stellaops:source.version", "value": version}));
                // The source package is what the binary package descends from.
                let mut ancestor = json!({"type": "library", "name": name, "version": version});
                if let Some(purl) = source_purl(c, name, version) {
                    ancestor["purl"] = json!(purl);
                }
                component["pedigree"] = json!({"ancestors": [ancestor]});
            }
            component["properties"] = Value::Array(properties);
            component
        })
        .collect();
    if let Some(os) = os {
        list.push(
            json!({"type": "operating-system", "bom-ref": format!("os:{}@{}", os.id, os.version_id),
                         "name": os.id, "version": os.version_id, "description": os.pretty_name}),
        );
    }
    let bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial,
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": "stellaops-worker", "version": env!("CARGO_PKG_VERSION")}]},
            "component": {"type": "container", "bom-ref": digest, "name": image, "version": digest}
        },
        "components": list,
    });
    let mut out = serde_json::to_vec_pretty(&bom).expect("SBOM serializes");
    out.push(b'\n');
    out
}

/// The Usage view as CycloneDX 1.6 JSON: the components the entrypoint uses, and in the
/// metadata how it was followed (the chain, as `path (where from)` with `FILE:LINE` for
/// script lines) and the config it started from. Deterministic like the inventory.
pub fn usage_cyclonedx(
    image: &str,
    digest: &str,
    components: &[Component],
    os: Option<&OsRelease>,
    view: &usage::UsageView,
) -> Vec<u8> {
    let used: Vec<Component> = components
        .iter()
        .filter(|c| c.used_by_entrypoint == Some(true))
        .cloned()
        .collect();
    let inventory = cyclonedx(image, digest, &used, os);
    let mut bom: Value = serde_json::from_slice(&inventory).expect("our own SBOM parses");
    // Its own serial number: the usage view is another BOM of the same image.
    use sha2::{Digest, Sha256};
    let h = hex::encode(&Sha256::digest(format!("usage:{digest}").as_bytes())[..16]);
    bom["serialNumber"] = json!(format!(
        "urn:uuid:{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    ));
    let mut properties = vec![json!({"name": "stellaops:view", "value": "usage"})];
    for (i, step) in view.trace.chain.iter().enumerate() {
        properties.push(json!({"name": format!("stellaops:entrypoint.chain.{i}"),
                               "value": format!("{} ({})", step.path, step.from)}));
    }
    for step in &view.trace.also_run {
        properties.push(json!({"name": "stellaops:entrypoint.alsoRun",
                               "value": format!("{} ({})", step.path, step.from)}));
    }
    for note in &view.trace.notes {
        properties.push(json!({"name": "stellaops:entrypoint.note", "value": note}));
    }
    for missing in &view.closure.missing {
        properties.push(json!({"name": "stellaops:closure.missing", "value": missing}));
    }
    properties.push(json!({"name": "stellaops:closure.files",
                           "value": view.closure.files.len().to_string()}));
    bom["metadata"]["properties"] = Value::Array(properties);
    let mut out = serde_json::to_vec_pretty(&bom).expect("SBOM serializes");
    out.push(b'\n');
    out
}

/// The package URL of a component's source package, where the purl type has a way to say
/// "source": Debian's `arch=source`, RPM's `arch=src`.
fn source_purl(c: &Component, name: &str, version: &str) -> Option<String> {
    use crate::purl::PackageUrl;
    let parsed = PackageUrlParts::of(&c.purl)?;
    let arch = match c.kind.as_str() {
        "deb" => "source",
        "rpm" => "src",
        _ => return None,
    };
    let mut p = PackageUrl::new(&c.kind, name)
        .namespace(&parsed.namespace)
        .qualifier("arch", arch)
        .qualifier("distro", &parsed.distro);
    p = if c.kind == "rpm" {
        match version.split_once(':') {
            Some((epoch, rest)) => p.version(rest).qualifier("epoch", epoch),
            None => p.version(version),
        }
    } else {
        p.version(version)
    };
    Some(p.to_string())
}

/// The namespace and `distro` qualifier of a package URL we made.
struct PackageUrlParts {
    namespace: String,
    distro: String,
}

impl PackageUrlParts {
    fn of(purl: &str) -> Option<Self> {
        let rest = purl.strip_prefix("pkg:")?;
        let (path, qualifiers) = rest.split_once('?').unwrap_or((rest, ""));
        let mut segments = path.split('/');
        let _type = segments.next()?;
        let namespace = segments.next()?.to_string();
        let distro = qualifiers
            .split('&')
            .find_map(|q| q.strip_prefix("distro="))
            .unwrap_or_default()
            .to_string();
        Some(PackageUrlParts { namespace, distro })
    }
}

/// An SPDX 2.3 JSON document of the same inventory (deterministic, like the CycloneDX one):
/// the document DESCRIBES the image (a package of purpose CONTAINER), the image CONTAINS
/// every component; a component built from another source package says so in
/// `sourceInfo`.
pub fn spdx(image: &str, digest: &str, components: &[Component]) -> Vec<u8> {
    const IMAGE: &str = "SPDXRef-Image";
    let mut packages = vec![json!({
        "SPDXID": IMAGE, "name": image, "versionInfo": digest,
        "downloadLocation": "NOASSERTION", "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": digest.strip_prefix("sha256:").map(|hex| vec![json!({"algorithm": "SHA256", "checksumValue": hex})]).unwrap_or_default(),
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": IMAGE,
    })];
    // Licenses not on the SPDX list, as the document declares them.
    let mut extracted: BTreeMap<String, String> = BTreeMap::new();
    for (i, c) in components.iter().enumerate() {
        let id = format!("SPDXRef-Package-{i}");
        let mut package = json!({
            "SPDXID": id, "name": c.name, "versionInfo": c.version,
            "downloadLocation": "NOASSERTION", "filesAnalyzed": false,
            "primaryPackagePurpose": "LIBRARY",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": c.purl}],
            "comment": format!("layer {}, {}", c.layer, c.path),
        });
        if let Some((name, version)) = c.source_package() {
            package["sourceInfo"] = json!(format!("built package from: {name} {version}"));
        }
        match c
            .license
            .as_ref()
            .map(|d| (d, license::spdx_document_form(d)))
        {
            Some((_, Some((expression, refs)))) => {
                package["licenseDeclared"] = json!(expression);
                extracted.extend(refs);
            }
            Some((declared, None)) => {
                package["licenseDeclared"] = json!("NOASSERTION");
                package["licenseComments"] = json!(format!(
                    "declared, not an SPDX expression: {}",
                    declared.expression
                ));
            }
            None => package["licenseDeclared"] = json!("NOASSERTION"),
        }
        packages.push(package);
        relationships.push(json!({
            "spdxElementId": IMAGE, "relationshipType": "CONTAINS", "relatedSpdxElement": id,
        }));
    }
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": image, "documentNamespace": format!("https://stella-ops.org/spdx/{}", digest.replace(':', "-")),
        "creationInfo": {"creators": [format!("Tool: stellaops-worker-{}", env!("CARGO_PKG_VERSION"))], "created": "1970-01-01T00:00:00Z"},
        "packages": packages,
        "relationships": relationships,
    });
    if !extracted.is_empty() {
        doc["hasExtractedLicensingInfos"] = extracted
            .into_iter()
            .map(|(id, text)| {
                json!({"licenseId": id, "name": text,
                       "extractedText": format!("The license the package metadata names {text:?}; not on the SPDX license list.")})
            })
            .collect();
    }
    let mut out = serde_json::to_vec_pretty(&doc).expect("SPDX serializes");
    out.push(b'\n');
    out
}
