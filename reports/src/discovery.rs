//! Discovery documents and OpenAPI (v2 and v3), so kubectl finds the kinds, their short
//! names, and `kubectl explain` describes their fields.

use serde_json::{Map, Value, json};

use crate::kinds::{ImageVerdict, Kind, SbomReport, VulnerabilityReport};
use crate::{API_VERSION, GROUP, VERSION};

/// Verbs each kind serves.
pub fn verbs(_kind: Kind) -> Vec<&'static str> {
    vec!["get", "list", "watch"]
}

/// `/apis/reports.stella-ops.org/v1alpha1`.
pub fn resource_list() -> Value {
    let mut resources = Vec::new();
    for kind in Kind::ALL {
        resources.push(json!({
            "name": kind.plural(),
            "singularName": kind.singular(),
            "namespaced": kind.namespaced(),
            "kind": kind.name(),
            "verbs": verbs(kind),
            "shortNames": kind.short_names(),
            "categories": ["stellaops-reports"],
        }));
        if kind == Kind::SbomReport {
            resources.push(json!({
                "name": "sbomreports/document",
                "singularName": "",
                "namespaced": true,
                "kind": "SbomReport",
                "verbs": ["get"],
            }));
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION,
           "resources": resources})
}

fn group() -> Value {
    let version = json!({"groupVersion": API_VERSION, "version": VERSION});
    json!({"name": GROUP, "versions": [version.clone()], "preferredVersion": version})
}

/// `/apis/reports.stella-ops.org`.
pub fn api_group() -> Value {
    let mut g = group();
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    g
}

/// `/apis`.
pub fn group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group()]})
}

/// `/api`: no core group here (kubectl pointed straight at this server asks).
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": [], "serverAddressByClientCIDRs": []})
}

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": concat!("v", env!("CARGO_PKG_VERSION"), "-stellaops-reports"),
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "", "compiler": "rustc", "platform": "linux/amd64",
    })
}

/// The OpenAPI definition name of `kind`.
pub fn definition_name(kind: Kind) -> String {
    // reports.stella-ops.org reversed, as the API server names CRD definitions.
    format!("org.stella-ops.reports.{VERSION}.{}", kind.name())
}

/// The inlined schema of `kind` with its group-version-kind, for OpenAPI v3 (`v3 = true`)
/// or v2.
pub fn schema(kind: Kind, v3: bool) -> Value {
    let settings = if v3 {
        schemars::generate::SchemaSettings::openapi3()
    } else {
        schemars::generate::SchemaSettings::draft07()
    }
    .with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let generator = settings.into_generator();
    let root = match kind {
        Kind::VulnerabilityReport => generator.into_root_schema_for::<VulnerabilityReport>(),
        Kind::SbomReport => generator.into_root_schema_for::<SbomReport>(),
        Kind::ImageVerdict => generator.into_root_schema_for::<ImageVerdict>(),
    };
    let mut value = serde_json::to_value(root).expect("a schema serializes");
    if let Some(object) = value.as_object_mut() {
        for key in ["$schema", "title", "$defs", "definitions", "components"] {
            object.remove(key);
        }
        object.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{"group": GROUP, "version": VERSION, "kind": kind.name()}]),
        );
    }
    if !v3 {
        strip_nullable(&mut value);
    }
    value
}

/// Swagger 2.0 has no `nullable` and only one `type`: `["string", "null"]` becomes `string`.
fn strip_nullable(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("nullable");
            if let Some(Value::Array(types)) = map.get("type") {
                let kept: Vec<Value> = types
                    .iter()
                    .filter(|t| t.as_str() != Some("null"))
                    .cloned()
                    .collect();
                if kept.len() == 1 {
                    map.insert("type".into(), kept[0].clone());
                }
            }
            map.values_mut().for_each(strip_nullable);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nullable),
        _ => {}
    }
}

fn paths(v3: bool) -> Map<String, Value> {
    let mut paths = Map::new();
    for kind in Kind::ALL {
        let reference = if v3 {
            format!("#/components/schemas/{}", definition_name(kind))
        } else {
            format!("#/definitions/{}", definition_name(kind))
        };
        let ok = if v3 {
            json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": reference}}}})
        } else {
            json!({"description": "OK", "schema": {"$ref": reference}})
        };
        let scope = if kind.namespaced() {
            "namespaces/{namespace}/"
        } else {
            ""
        };
        let get = json!({
            "get": {
                "operationId": format!("read{}", kind.name()),
                "tags": [format!("{GROUP}_{VERSION}")],
                "responses": {"200": ok},
                "x-kubernetes-action": "get",
                "x-kubernetes-group-version-kind": {"group": GROUP, "version": VERSION, "kind": kind.name()},
            }
        });
        paths.insert(
            format!("/apis/{API_VERSION}/{scope}{}/{{name}}", kind.plural()),
            get,
        );
    }
    paths
}

/// `/openapi/v2`.
pub fn openapi_v2() -> Value {
    let definitions: Map<String, Value> = Kind::ALL
        .into_iter()
        .map(|k| (definition_name(k), schema(k, false)))
        .collect();
    json!({
        "swagger": "2.0",
        "info": {"title": "Stella Ops reports", "version": VERSION},
        "paths": paths(false),
        "definitions": definitions,
    })
}

/// `/openapi/v3/apis/reports.stella-ops.org/v1alpha1`.
pub fn openapi_v3() -> Value {
    let schemas: Map<String, Value> = Kind::ALL
        .into_iter()
        .map(|k| (definition_name(k), schema(k, true)))
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Stella Ops reports", "version": VERSION},
        "paths": paths(true),
        "components": {"schemas": schemas},
    })
}

/// The path of the group-version document under `/openapi/v3/`.
pub fn openapi_v3_path() -> String {
    format!("apis/{API_VERSION}")
}

/// `/openapi/v3`: where each group-version's document is (with a hash that changes with it).
pub fn openapi_v3_index(hash: &str) -> Value {
    let path = openapi_v3_path();
    json!({"paths": {path.clone(): {"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_inline_and_carry_their_kind() {
        for kind in Kind::ALL {
            for v3 in [true, false] {
                let s = schema(kind, v3);
                let text = s.to_string();
                assert!(!text.contains("$ref"), "{kind:?} v3={v3}: {text}");
                assert_eq!(s["x-kubernetes-group-version-kind"][0]["kind"], kind.name());
                assert_eq!(s["properties"]["metadata"]["type"], "object");
                if !v3 {
                    assert!(!text.contains("nullable"), "{text}");
                }
            }
        }
        let v = schema(Kind::VulnerabilityReport, true);
        let finding = &v["properties"]["findings"]["items"]["properties"];
        assert!(finding["decidedBy"]["description"].is_string(), "{v}");
        assert!(finding["package"]["properties"]["purl"].is_object());
    }

    #[test]
    fn discovery_lists_every_kind_with_its_scope() {
        let list = resource_list();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "vulnerabilityreports",
                "sbomreports",
                "sbomreports/document",
                "imageverdicts"
            ]
        );
        assert_eq!(list["resources"][3]["namespaced"], false);
    }
}
