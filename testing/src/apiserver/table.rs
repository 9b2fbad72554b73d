//! `meta.k8s.io/v1` Table output for `kubectl get`, with the JSONPath subset printer
//! columns use.

use std::sync::Arc;

use serde_json::{Value, json};

use super::store::ResourceType;

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter(Vec<String>, bool, String),
}

fn parse(expr: &str) -> Result<Vec<Step>, String> {
    let expr = expr.trim();
    let expr = expr
        .strip_prefix('{')
        .and_then(|e| e.strip_suffix('}'))
        .unwrap_or(expr);
    let chars: Vec<char> = expr.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let start = i + 1;
                i = start;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
            }
            '[' => {
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .map(|p| p + i)
                    .ok_or_else(|| format!("unclosed [ in {expr:?}"))?;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Some(filter) =
                    inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')'))
                {
                    let (left, equal, right) = if let Some((l, r)) = filter.split_once("!=") {
                        (l, false, r)
                    } else if let Some((l, r)) = filter.split_once("==") {
                        (l, true, r)
                    } else {
                        return Err(format!("unsupported filter {filter:?}"));
                    };
                    let path = left
                        .trim()
                        .strip_prefix("@.")
                        .ok_or_else(|| format!("unsupported filter {filter:?}"))?
                        .split('.')
                        .map(str::to_string)
                        .collect();
                    let right = right
                        .trim()
                        .trim_matches(|c| c == '"' || c == '\'')
                        .to_string();
                    steps.push(Step::Filter(path, equal, right));
                } else if let Ok(index) = inner.parse() {
                    steps.push(Step::Index(index));
                } else {
                    steps.push(Step::Field(
                        inner.trim_matches(|c| c == '"' || c == '\'').into(),
                    ));
                }
                i = close + 1;
            }
            _ => return Err(format!("unsupported JSONPath {expr:?}")),
        }
    }
    Ok(steps)
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The values `expr` selects in `root`.
pub(crate) fn jsonpath(root: &Value, expr: &str) -> Result<Vec<Value>, String> {
    let mut current = vec![root];
    for step in parse(expr)? {
        let mut next = Vec::new();
        for value in current {
            match &step {
                Step::Field(name) => next.extend(value.get(name)),
                Step::Index(i) => {
                    if let Some(items) = value.as_array() {
                        let i = if *i < 0 { items.len() as i64 + i } else { *i };
                        next.extend(usize::try_from(i).ok().and_then(|i| items.get(i)));
                    }
                }
                Step::All => match value {
                    Value::Array(items) => next.extend(items.iter()),
                    Value::Object(map) => next.extend(map.values()),
                    _ => {}
                },
                Step::Filter(path, equal, expected) => {
                    for item in value.as_array().into_iter().flatten() {
                        let mut field = item;
                        for part in path {
                            field = &field[part.as_str()];
                        }
                        if !field.is_null() && (text(field) == *expected) == *equal {
                            next.push(item);
                        }
                    }
                }
            }
        }
        current = next;
    }
    Ok(current.into_iter().cloned().collect())
}

/// How long ago `timestamp` was, the way kubectl prints ages.
fn age(timestamp: &str) -> Value {
    let Ok(then) = chrono::DateTime::parse_from_rfc3339(timestamp) else {
        return Value::Null;
    };
    let seconds = (chrono::Utc::now() - then.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    let text = if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        format!("{minutes}m{}s", seconds % 60)
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        format!("{hours}h{}m", minutes % 60)
    } else if hours < 48 {
        format!("{hours}h")
    } else if days < 8 {
        format!("{days}d{}h", hours % 24)
    } else {
        format!("{days}d")
    };
    json!(text)
}

fn column(name: &str, kind: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": kind, "format": format, "description": description, "priority": priority})
}

/// The columns of `rt`: the CRD's printer columns, or a few obvious ones for built-ins.
fn columns(rt: &ResourceType) -> Vec<(Value, String)> {
    let mut out = vec![(
        column(
            "Name",
            "string",
            "name",
            "Name must be unique within a namespace.",
            0,
        ),
        ".metadata.name".to_string(),
    )];
    if !rt.printer_columns.is_empty() {
        for c in &rt.printer_columns {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            out.push((
                column(
                    &field("name"),
                    &field("type"),
                    &field("format"),
                    &field("description"),
                    c["priority"].as_i64().unwrap_or(0),
                ),
                field("jsonPath"),
            ));
        }
        return out;
    }
    let extra: &[(&str, &str)] = match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => &[("Status", ".status.phase"), ("Node", ".spec.nodeName")],
        ("", "Namespace") => &[("Status", ".status.phase")],
        ("batch", "Job") => &[
            ("Succeeded", ".status.succeeded"),
            ("Failed", ".status.failed"),
        ],
        ("apps", "Deployment") => &[
            ("Ready", ".status.readyReplicas"),
            ("Replicas", ".spec.replicas"),
        ],
        ("coordination.k8s.io", "Lease") => &[("Holder", ".spec.holderIdentity")],
        _ => &[],
    };
    for (name, path) in extra {
        out.push((column(name, "string", "", "", 0), path.to_string()));
    }
    out.push((
        column(
            "Age",
            "date",
            "",
            "CreationTimestamp is when the object was created.",
            0,
        ),
        ".metadata.creationTimestamp".to_string(),
    ));
    out
}

/// A Table of `objects`; `include` is the `includeObject` parameter.
pub(crate) fn table(
    rt: &ResourceType,
    objects: &[Arc<Value>],
    include: &str,
    list_meta: Value,
) -> Value {
    let columns = columns(rt);
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells: Vec<Value> = columns
                .iter()
                .map(|(definition, path)| {
                    let found = jsonpath(object, path).unwrap_or_default();
                    match (definition["type"].as_str(), found.as_slice()) {
                        (_, []) => Value::Null,
                        (Some("date"), [Value::String(t), ..]) => age(t),
                        (_, [one]) => one.clone(),
                        (_, many) => json!(many.iter().map(text).collect::<Vec<_>>().join(",")),
                    }
                })
                .collect();
            let mut row = json!({"cells": cells});
            match include {
                "None" => {}
                "Object" => row["object"] = (**object).clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": object["metadata"],
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
        "columnDefinitions": columns.into_iter().map(|(c, _)| c).collect::<Vec<_>>(),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let object = json!({"spec": {"a": {"b": 1}}, "status": {"conditions": [
            {"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(jsonpath(&object, ".spec.a.b").unwrap(), vec![json!(1)]);
        assert_eq!(
            jsonpath(&object, ".status.conditions[0].type").unwrap(),
            vec![json!("Other")]
        );
        assert_eq!(
            jsonpath(&object, ".status.conditions[?(@.type==\"Ready\")].status").unwrap(),
            vec![json!("True")]
        );
        assert!(jsonpath(&object, ".spec.missing").unwrap().is_empty());
    }
}
