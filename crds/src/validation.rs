//! Offline admission of Stella Ops objects, as the API server would do it: structural
//! schema checks with defaulting, then the CEL rules, then the typed parse. Used by
//! `preview` and by tests; every error names the field path.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::{
    API_VERSION, FederationSite, KINDS, MirrorDomain, NotifyRule, Platform, Scan, ScanPolicy,
    Schedule, ZastavaPolicy, all_crds,
};

/// One reason an object is refused, at a field path such as `spec.policy.failOn`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path with `[i]` indexes, empty for the whole object.
    pub path: String,
    /// What is wrong, in the API server's words where it has them.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl FieldError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A validated, defaulted object of one of our kinds.
#[derive(Clone, Debug, PartialEq)]
pub enum StellaObject {
    /// A Scan.
    Scan(Scan),
    /// A ScanPolicy.
    ScanPolicy(ScanPolicy),
    /// A Schedule.
    Schedule(Schedule),
    /// A NotifyRule.
    NotifyRule(NotifyRule),
    /// A FederationSite.
    FederationSite(FederationSite),
    /// A MirrorDomain.
    MirrorDomain(MirrorDomain),
    /// A ZastavaPolicy.
    ZastavaPolicy(ZastavaPolicy),
    /// A Platform.
    Platform(Box<Platform>),
}

impl StellaObject {
    /// The object's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            StellaObject::Scan(_) => "Scan",
            StellaObject::ScanPolicy(_) => "ScanPolicy",
            StellaObject::Schedule(_) => "Schedule",
            StellaObject::NotifyRule(_) => "NotifyRule",
            StellaObject::FederationSite(_) => "FederationSite",
            StellaObject::MirrorDomain(_) => "MirrorDomain",
            StellaObject::ZastavaPolicy(_) => "ZastavaPolicy",
            StellaObject::Platform(_) => "Platform",
        }
    }
}

struct KindSchema {
    root: Value,
    namespaced: bool,
}

fn schemas() -> &'static HashMap<String, KindSchema> {
    static SCHEMAS: OnceLock<HashMap<String, KindSchema>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        all_crds()
            .into_iter()
            .map(|crd| {
                let root = crd.spec.versions[0]
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .map(|s| serde_json::to_value(s).expect("schema serializes"))
                    .expect("every CRD has a schema");
                let namespaced = crd.spec.scope == "Namespaced";
                (crd.spec.names.kind.clone(), KindSchema { root, namespaced })
            })
            .collect()
    })
}

/// True when `kind` is one of ours and namespaced.
pub fn is_namespaced(kind: &str) -> Option<bool> {
    schemas().get(kind).map(|s| s.namespaced)
}

/// Admit `object` as the API server would on create: check and default it against its
/// kind's schema, evaluate the CEL rules, and parse it. On success returns the defaulted
/// JSON and the typed object.
pub fn admit(object: &Value) -> Result<(Value, StellaObject), Vec<FieldError>> {
    admit_update(object, None)
}

/// Like [`admit`], for an update from `old` (transition rules such as immutability apply).
pub fn admit_update(
    object: &Value,
    old: Option<&Value>,
) -> Result<(Value, StellaObject), Vec<FieldError>> {
    let mut object = object.clone();
    let Some(map) = object.as_object() else {
        return Err(vec![FieldError::new("", "the document is not a mapping")]);
    };
    let mut errors = Vec::new();
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        Some(other) => errors.push(FieldError::new(
            "apiVersion",
            format!("Unsupported value: {other:?}: supported values: {API_VERSION:?}"),
        )),
        None => errors.push(FieldError::new("apiVersion", "Required value")),
    }
    let kind = match map.get("kind").and_then(Value::as_str) {
        Some(kind) if KINDS.contains(&kind) => kind.to_string(),
        Some(other) => {
            errors.push(FieldError::new(
                "kind",
                format!(
                    "Unsupported value: {other:?}: supported values: {}",
                    quoted(&KINDS)
                ),
            ));
            return Err(errors);
        }
        None => {
            errors.push(FieldError::new("kind", "Required value"));
            return Err(errors);
        }
    };
    let schema = &schemas()[&kind];
    check_metadata(map.get("metadata"), &mut errors);

    // Structural schema: spec is checked and defaulted; status is the controller's.
    let spec_schema = &schema.root["properties"]["spec"];
    match object.get_mut("spec") {
        Some(spec) => check_value(spec_schema, spec, "spec", &mut errors),
        None => {
            if spec_schema.get("required").is_some() {
                errors.push(FieldError::new("spec", "Required value"));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // CEL rules, evaluated on the defaulted object (the API server defaults first).
    if let Err(cel_errors) = kube::core::cel::Validator::new().validate(&schema.root, &object, old)
    {
        return Err(cel_errors
            .iter()
            .map(|e| FieldError::new(e.field_path.trim_start_matches('.'), e.message.clone()))
            .collect());
    }

    let typed = parse_typed(&kind, &object).map_err(|e| vec![e])?;
    Ok((object, typed))
}

fn parse_typed(kind: &str, object: &Value) -> Result<StellaObject, FieldError> {
    fn parse<T: serde::de::DeserializeOwned>(object: &Value) -> Result<T, FieldError> {
        serde_path_to_error::deserialize(object).map_err(|e| {
            let path = e.path().to_string();
            FieldError::new(
                if path == "." { String::new() } else { path },
                e.inner().to_string(),
            )
        })
    }
    Ok(match kind {
        "Scan" => StellaObject::Scan(parse(object)?),
        "ScanPolicy" => StellaObject::ScanPolicy(parse(object)?),
        "Schedule" => StellaObject::Schedule(parse(object)?),
        "NotifyRule" => StellaObject::NotifyRule(parse(object)?),
        "FederationSite" => StellaObject::FederationSite(parse(object)?),
        "MirrorDomain" => StellaObject::MirrorDomain(parse(object)?),
        "ZastavaPolicy" => StellaObject::ZastavaPolicy(parse(object)?),
        "Platform" => StellaObject::Platform(Box::new(parse(object)?)),
        other => return Err(FieldError::new("kind", format!("unknown kind {other}"))),
    })
}

fn quoted(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// RFC 1123 subdomain, as Kubernetes requires of most object names.
fn is_dns_subdomain(name: &str) -> bool {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
            .expect("valid regex")
    });
    name.len() <= 253 && re.is_match(name)
}

fn check_metadata(metadata: Option<&Value>, errors: &mut Vec<FieldError>) {
    let Some(metadata) = metadata.and_then(Value::as_object) else {
        errors.push(FieldError::new("metadata", "Required value"));
        return;
    };
    match metadata.get("name").and_then(Value::as_str) {
        Some(name) if is_dns_subdomain(name) => {}
        Some(name) => errors.push(FieldError::new(
            "metadata.name",
            format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        )),
        None => {
            if metadata.get("generateName").is_none() {
                errors.push(FieldError::new("metadata.name", "Required value: name or generateName is required"));
            }
        }
    }
}

/// Check `value` against an OpenAPI v3 structural schema, applying defaults in place.
fn check_value(schema: &Value, value: &mut Value, path: &str, errors: &mut Vec<FieldError>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        errors.push(FieldError::new(
            path,
            "Invalid value: null: must not be null",
        ));
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if int_or_string {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(FieldError::new(
                path,
                format!("Invalid value: {value}: must be an integer or a string"),
            ));
        }
        return;
    }
    let preserve_unknown = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => check_object(schema, value, path, preserve_unknown, errors),
        Some("array") => check_array(schema, value, path, errors),
        Some("string") => check_string(schema, value, path, errors),
        Some("integer") => {
            if value.is_i64() || value.is_u64() {
                check_range(schema, value, path, errors);
            } else {
                errors.push(type_error(path, value, "integer"));
            }
        }
        Some("number") => {
            if value.is_number() {
                check_range(schema, value, path, errors);
            } else {
                errors.push(type_error(path, value, "number"));
            }
        }
        Some("boolean") if !value.is_boolean() => errors.push(type_error(path, value, "boolean")),
        _ => {}
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !value.is_null()
        && !allowed.contains(value)
    {
        let supported: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errors.push(FieldError::new(
            path,
            format!(
                "Unsupported value: {value}: supported values: {}",
                supported.join(", ")
            ),
        ));
    }
}

fn type_error(path: &str, value: &Value, want: &str) -> FieldError {
    let have = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    FieldError::new(
        path,
        format!("Invalid value: {value}: must be of type {want}, not {have}"),
    )
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn check_object(
    schema: &Value,
    value: &mut Value,
    path: &str,
    preserve_unknown: bool,
    errors: &mut Vec<FieldError>,
) {
    let Some(map) = value.as_object_mut() else {
        errors.push(type_error(path, value, "object"));
        return;
    };
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());

    // Null for a non-nullable field means "absent" to the API server: drop it, then default.
    map.retain(|key, v| {
        !(v.is_null()
            && properties
                .get(key)
                .is_some_and(|s| s.get("nullable").and_then(Value::as_bool) != Some(true)))
    });
    for (key, prop) in properties {
        if !map.contains_key(key)
            && let Some(default) = prop.get("default")
        {
            map.insert(key.clone(), default.clone());
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                errors.push(FieldError::new(child_path(path, key), "Required value"));
            }
        }
    }
    for (key, child) in map.iter_mut() {
        let child_at = child_path(path, key);
        if let Some(prop) = properties.get(key) {
            check_value(prop, child, &child_at, errors);
        } else if let Some(additional) = additional {
            check_value(additional, child, &child_at, errors);
        } else if !preserve_unknown {
            errors.push(FieldError::new(child_at, "unknown field"));
        }
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && map.len() as u64 > max
    {
        errors.push(FieldError::new(
            path,
            format!("Too many: {}: must have at most {max} items", map.len()),
        ));
    }
}

fn check_array(schema: &Value, value: &mut Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(items) = value.as_array_mut() else {
        errors.push(type_error(path, value, "array"));
        return;
    };
    let len = items.len() as u64;
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && len > max
    {
        errors.push(FieldError::new(
            path,
            format!("Too many: {len}: must have at most {max} items"),
        ));
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && len < min
    {
        errors.push(FieldError::new(
            path,
            format!("Invalid value: {len}: must have at least {min} items"),
        ));
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter_mut().enumerate() {
            check_value(item_schema, item, &format!("{path}[{i}]"), errors);
        }
    }
}

fn check_string(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(s) = value.as_str() else {
        errors.push(type_error(path, value, "string"));
        return;
    };
    let chars = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && chars > max
    {
        errors.push(FieldError::new(
            path,
            format!("Too long: may not be more than {max} bytes"),
        ));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && chars < min
    {
        errors.push(FieldError::new(
            path,
            format!("Invalid value: {s:?}: should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => errors.push(FieldError::new(
                path,
                format!("Invalid value: {s:?}: should match '{pattern}'"),
            )),
            Err(e) => errors.push(FieldError::new(
                path,
                format!("schema pattern does not compile: {e}"),
            )),
        }
    }
}

fn check_range(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(n) = value.as_f64() else { return };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        errors.push(FieldError::new(
            path,
            format!("Invalid value: {value}: should be greater than or equal to {min}"),
        ));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        errors.push(FieldError::new(
            path,
            format!("Invalid value: {value}: should be less than or equal to {max}"),
        ));
    }
}
