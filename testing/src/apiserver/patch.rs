//! JSON, merge and strategic-merge patches.

use serde_json::{Map, Value};

/// A parsed PATCH body.
pub(crate) enum PatchBody {
    /// `application/merge-patch+json` (RFC 7386).
    Merge(Value),
    /// `application/json-patch+json` (RFC 6902).
    Json(json_patch::Patch),
    /// `application/strategic-merge-patch+json`.
    Strategic(Value),
    /// `application/apply-patch+yaml`.
    Apply(Value),
}

/// `old` with a non-apply patch applied.
pub(crate) fn apply_patch(old: &Value, body: PatchBody) -> Result<Value, String> {
    let mut target = old.clone();
    match body {
        PatchBody::Merge(patch) => json_patch::merge(&mut target, &patch),
        PatchBody::Json(patch) => {
            // As the API server's json-patch library does: `test` of an absent path against
            // `null` succeeds (kube's finalizer helper relies on it to add the first one).
            let ops: Vec<json_patch::PatchOperation> = patch
                .0
                .into_iter()
                .filter(|op| match op {
                    json_patch::PatchOperation::Test(t) => {
                        !(t.value.is_null() && target.pointer(t.path.as_str()).is_none())
                    }
                    _ => true,
                })
                .collect();
            json_patch::patch(&mut target, &ops).map_err(|e| e.to_string())?;
        }
        PatchBody::Strategic(patch) => strategic(&mut target, &patch),
        PatchBody::Apply(_) => unreachable!("apply is not a plain patch"),
    }
    Ok(target)
}

/// The merge key of list `field` when its items are objects carrying it.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    let key = match field {
        "conditions" => "type",
        "volumeMounts" => "mountPath",
        "ports" if items.iter().all(|i| i.get("name").is_none()) => "containerPort",
        "ownerReferences" => "uid",
        _ => "name",
    };
    items
        .iter()
        .all(|i| i.is_object() && (i.get(key).is_some() || i.get("$patch").is_some()))
        .then_some(key)
        .filter(|_| !items.is_empty())
}

/// A strategic merge patch: a merge patch whose lists of objects with a merge key are
/// merged item by item (`$patch: delete` removes an item); other directives are dropped.
fn strategic(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = Value::Object(without_directives(patch));
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().expect("made an object");
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                map.remove(k);
            }
            Value::Array(items) => match (merge_key(k, items), map.get_mut(k)) {
                (Some(key), Some(Value::Array(existing))) => {
                    for item in items {
                        let position = existing.iter().position(|e| e.get(key) == item.get(key));
                        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                        match (position, delete) {
                            (Some(i), true) => {
                                existing.remove(i);
                            }
                            (None, true) => {}
                            (Some(i), false) => strategic(&mut existing[i], item),
                            (None, false) => existing.push(clean(item)),
                        }
                    }
                }
                _ => {
                    let items: Vec<Value> = items
                        .iter()
                        .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                        .map(clean)
                        .collect();
                    map.insert(k.clone(), Value::Array(items));
                }
            },
            Value::Object(_) => {
                let entry = map.entry(k.clone()).or_insert(Value::Null);
                strategic(entry, v);
            }
            other => {
                map.insert(k.clone(), other.clone());
            }
        }
    }
}

fn without_directives(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), clean(v)))
        .collect()
}

fn clean(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(without_directives(map)),
        Value::Array(items) => Value::Array(items.iter().map(clean).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_named_items() {
        let old = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}});
        let patch = json!({"spec": {"containers": [{"name": "b", "image": "3"}, {"name": "a", "$patch": "delete"}]}});
        let new = apply_patch(&old, PatchBody::Strategic(patch)).unwrap();
        assert_eq!(
            new["spec"]["containers"],
            json!([{"name": "b", "image": "3"}])
        );
    }
}
