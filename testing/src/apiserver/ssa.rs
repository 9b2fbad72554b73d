//! Field ownership (`metadata.managedFields`, FieldsV1) and server-side apply.
//!
//! A field set is a set of paths; a path element is `f:<field>`, `k:<key JSON>` (an item
//! of a map list), `v:<value JSON>` (an item of a set list) or `.` (the item itself).
//! Leaves are scalars, atomic lists and empty maps, as in FieldsV1.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::store::now_rfc3339;

type Path = Vec<String>;
type FieldSet = BTreeSet<Path>;

/// The key of a map list, if `field` holds one (every item must carry the key).
fn list_key(field: &str, items: &[Value]) -> Option<&'static str> {
    let key = match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "ports" => "name",
        "volumeMounts" => "mountPath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        _ => return None,
    };
    items
        .iter()
        .all(|i| i.get(key).is_some_and(|k| !k.is_null()))
        .then_some(key)
}

fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

fn item_key(key: &str, item: &Value) -> String {
    let mut m = Map::new();
    m.insert(key.to_string(), item[key].clone());
    format!("k:{}", Value::Object(m))
}

/// The fields an object (or a part of it) sets. Identity and type fields are not owned.
fn fields_of(object: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                if let Some(meta) = v.as_object() {
                    for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
                        if let Some(value) = meta.get(field) {
                            let mut path = vec!["f:metadata".to_string(), format!("f:{field}")];
                            collect(value, field, &mut path, &mut out);
                        }
                    }
                }
            }
            _ => {
                let mut path = vec![format!("f:{k}")];
                collect(v, k, &mut path, &mut out);
            }
        }
    }
    out
}

fn collect(value: &Value, field: &str, path: &mut Path, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                path.push(format!("f:{k}"));
                collect(v, k, path, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() && is_set_list(field) => {
            for item in items {
                path.push(format!("v:{item}"));
                out.insert(path.clone());
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_key(field, items) {
            Some(key) => {
                for item in items {
                    path.push(item_key(key, item));
                    path.push(".".into());
                    out.insert(path.clone());
                    path.pop();
                    if let Some(map) = item.as_object() {
                        for (k, v) in map {
                            path.push(format!("f:{k}"));
                            collect(v, k, path, out);
                            path.pop();
                        }
                    }
                    path.pop();
                }
            }
            None => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// Find the child of `value` that a path element names.
fn child<'a>(value: &'a Value, element: &str) -> Option<&'a Value> {
    if let Some(field) = element.strip_prefix("f:") {
        value.get(field)
    } else if let Some(key) = element.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        value
            .as_array()?
            .iter()
            .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))
    } else if let Some(v) = element.strip_prefix("v:") {
        let v: Value = serde_json::from_str(v).ok()?;
        value.as_array()?.iter().find(|item| **item == v)
    } else {
        None
    }
}

fn value_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut current = value;
    for element in path {
        if element == "." {
            return Some(current);
        }
        current = child(current, element)?;
    }
    Some(current)
}

/// Remove what `path` names from `value`.
fn remove_at(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let (target, parents) = if last == "." {
        match parents.split_last() {
            Some((item, rest)) => (item.as_str(), rest),
            None => return,
        }
    } else {
        (last.as_str(), parents)
    };
    let mut current = value;
    for element in parents {
        let next = if let Some(field) = element.strip_prefix("f:") {
            current.get_mut(field)
        } else if let Some(key) = element.strip_prefix("k:") {
            let Ok(key) = serde_json::from_str::<Map<String, Value>>(key) else {
                return;
            };
            current.as_array_mut().and_then(|items| {
                items
                    .iter_mut()
                    .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))
            })
        } else {
            None
        };
        match next {
            Some(next) => current = next,
            None => return,
        }
    }
    if let Some(field) = target.strip_prefix("f:") {
        if let Some(map) = current.as_object_mut() {
            map.remove(field);
        }
    } else if let Some(key) = target.strip_prefix("k:") {
        if let (Ok(key), Some(items)) = (
            serde_json::from_str::<Map<String, Value>>(key),
            current.as_array_mut(),
        ) {
            items.retain(|item| !key.iter().all(|(k, v)| item.get(k) == Some(v)));
        }
    } else if let Some(v) = target.strip_prefix("v:")
        && let (Ok(v), Some(items)) = (serde_json::from_str::<Value>(v), current.as_array_mut())
    {
        items.retain(|item| *item != v);
    }
}

/// Merge `applied` into `live`: maps by key, map lists by item key, set lists by value,
/// everything else replaced.
fn merge(live: &mut Value, applied: &Value, field: &str) {
    match (live, applied) {
        (Value::Object(live), Value::Object(applied)) => {
            for (k, v) in applied {
                match live.get_mut(k) {
                    Some(existing) => merge(existing, v, k),
                    None => {
                        live.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(live), Value::Array(applied)) if is_set_list(field) => {
            for item in applied {
                if !live.contains(item) {
                    live.push(item.clone());
                }
            }
        }
        (Value::Array(live_items), Value::Array(applied_items))
            if list_key(field, applied_items).is_some()
                && list_key(field, live_items).is_some() =>
        {
            let key = list_key(field, applied_items).expect("checked");
            for item in applied_items {
                match live_items.iter_mut().find(|l| l[key] == item[key]) {
                    Some(existing) => merge(existing, item, ""),
                    None => live_items.push(item.clone()),
                }
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

/// One `managedFields` entry.
struct Entry {
    manager: String,
    operation: String,
    subresource: String,
    api_version: String,
    time: String,
    fields: FieldSet,
}

fn to_fields_v1(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for element in path {
            node = node
                .entry(element.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("FieldsV1 nodes are maps");
        }
    }
    Value::Object(root)
}

fn from_fields_v1(value: &Value, path: &mut Path, out: &mut FieldSet) {
    let Some(map) = value.as_object() else { return };
    for (k, v) in map {
        path.push(k.clone());
        if v.as_object().is_some_and(Map::is_empty) {
            out.insert(path.clone());
        } else {
            from_fields_v1(v, path, out);
        }
        path.pop();
    }
}

fn read_entries(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let mut fields = FieldSet::new();
            from_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut fields);
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            Entry {
                manager: text("manager"),
                operation: text("operation"),
                subresource: text("subresource"),
                api_version: text("apiVersion"),
                time: text("time"),
                fields,
            }
        })
        .collect()
}

fn write_entries(object: &mut Value, entries: Vec<Entry>) {
    let entries: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            metadata.remove("managedFields");
        } else {
            metadata.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// The part of an object a write through `sub` touches.
fn scoped_fields(object: &Value, sub: &str) -> FieldSet {
    let fields = fields_of(object);
    if sub == "status" {
        fields
            .into_iter()
            .filter(|p| p.first().map(String::as_str) == Some("f:status"))
            .collect()
    } else {
        fields
    }
}

/// Record that `manager` made a non-apply write from `old` to `new`: it owns what it
/// changed, and nobody owns what it removed.
pub(crate) fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    sub: &str,
    api_version: &str,
) {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let before = old.map(|o| scoped_fields(o, sub)).unwrap_or_default();
    let after = scoped_fields(new, sub);
    let changed: FieldSet = after
        .iter()
        .filter(|p| old.and_then(|o| value_at(o, p)) != value_at(new, p) || !before.contains(*p))
        .cloned()
        .collect();
    let removed: FieldSet = before.difference(&after).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        write_entries(new, entries);
        return;
    }
    for entry in entries.iter_mut() {
        let mine =
            entry.manager == manager && entry.operation == "Update" && entry.subresource == sub;
        if !mine {
            entry
                .fields
                .retain(|p| !changed.contains(p) && !removed.contains(p));
        } else {
            entry.fields.retain(|p| !removed.contains(p));
        }
    }
    let now = now_rfc3339();
    match entries
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == sub)
    {
        Some(entry) => {
            entry.fields.extend(changed);
            entry.time = now;
            entry.api_version = api_version.to_string();
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Update".into(),
            subresource: sub.to_string(),
            api_version: api_version.to_string(),
            time: now,
            fields: changed,
        }),
    }
    write_entries(new, entries);
}

/// Server-side apply of `applied` by `manager` onto `live` (`None`: a create). `Err` lists
/// the conflicts as (other manager, `.field.path`).
pub(crate) fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    sub: &str,
    api_version: &str,
) -> Result<Value, Vec<(String, String)>> {
    let mut entries = live.map(read_entries).unwrap_or_default();
    let new_set = scoped_fields(applied, sub);
    let is_mine =
        |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == sub;
    let mut conflicts = Vec::new();
    if let Some(live) = live {
        for entry in entries.iter_mut().filter(|e| !is_mine(e)) {
            let clashing: Vec<Path> = entry
                .fields
                .intersection(&new_set)
                .filter(|p| p.last().map(String::as_str) != Some("."))
                .filter(|p| value_at(live, p) != value_at(applied, p))
                .cloned()
                .collect();
            if clashing.is_empty() {
                continue;
            }
            if force {
                entry.fields.retain(|p| !clashing.contains(p));
            } else {
                conflicts.extend(clashing.iter().map(|p| (entry.manager.clone(), dotted(p))));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    let mut result = match live {
        Some(live) => live.clone(),
        None => {
            let mut base = json!({"apiVersion": applied["apiVersion"], "kind": applied["kind"], "metadata": {}});
            for field in ["name", "namespace", "generateName"] {
                if let Some(v) = applied["metadata"].get(field) {
                    base["metadata"][field] = v.clone();
                }
            }
            base
        }
    };
    let previous: FieldSet = entries
        .iter()
        .find(|e| is_mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: FieldSet = entries
        .iter()
        .filter(|e| !is_mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    for path in previous.difference(&new_set) {
        if !others.contains(path) {
            remove_at(&mut result, path);
            // A map the manager no longer applies goes with its last field, as the API
            // server removes an owned struct (fields defaulted inside it included) rather
            // than leaving it empty or holding only defaults.
            for depth in (2..path.len()).rev() {
                let parent = &path[..depth];
                let still_set = |set: &FieldSet| set.iter().any(|p| p.starts_with(parent));
                if !parent[depth - 1].starts_with("f:") || still_set(&new_set) || still_set(&others)
                {
                    break;
                }
                remove_at(&mut result, parent);
            }
        }
    }
    let mut applied_body = applied.clone();
    if let Some(map) = applied_body.as_object_mut() {
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.retain(|k, _| {
                matches!(
                    k.as_str(),
                    "labels" | "annotations" | "finalizers" | "ownerReferences"
                )
            });
        }
        map.remove("apiVersion");
        map.remove("kind");
    }
    merge(&mut result, &applied_body, "");
    let now = now_rfc3339();
    entries.retain(|e| !is_mine(e));
    entries.push(Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        subresource: sub.to_string(),
        api_version: api_version.to_string(),
        time: now,
        fields: new_set,
    });
    write_entries(&mut result, entries);
    Ok(result)
}

/// `.spec.containers[name="a"].image`, as the API server names a conflicting field.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = element.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let inner: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", inner.join(",")));
        } else if let Some(v) = element.strip_prefix("v:") {
            out.push_str(&format!("[{v}]"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trips() {
        let object = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "labels": {"l": "1"}},
            "spec": {"replicas": 2, "containers": [{"name": "c", "image": "i"}], "args": ["x"], "empty": {}}});
        let fields = fields_of(&object);
        let mut back = FieldSet::new();
        from_fields_v1(&to_fields_v1(&fields), &mut Vec::new(), &mut back);
        assert_eq!(fields, back);
        assert!(fields.contains(&vec!["f:spec".to_string(), "f:replicas".into()]));
        assert!(fields.contains(&vec![
            "f:spec".to_string(),
            "f:containers".into(),
            r#"k:{"name":"c"}"#.into(),
            ".".into()
        ]));
    }

    #[test]
    fn apply_removes_what_the_manager_no_longer_sets() {
        let first = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"a": 1, "b": 2}});
        let live = apply(None, &first, "m", false, "", "v1").unwrap();
        let second =
            json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"a": 3}});
        let live = apply(Some(&live), &second, "m", false, "", "v1").unwrap();
        assert_eq!(live["spec"], json!({"a": 3}));
        let other =
            json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"a": 4}});
        let conflicts = apply(Some(&live), &other, "n", false, "", "v1").unwrap_err();
        assert_eq!(conflicts, vec![("m".to_string(), ".spec.a".to_string())]);
        let forced = apply(Some(&live), &other, "n", true, "", "v1").unwrap();
        assert_eq!(forced["spec"]["a"], 4);
    }

    #[test]
    fn a_map_the_manager_no_longer_applies_goes_whole() {
        let first = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"a": 1, "serve": {"secret": {"name": "s"}}, "keep": {"x": 1}}});
        let mut live = apply(None, &first, "m", false, "", "v1").unwrap();
        // A default the server filled in: owned by nobody.
        live["spec"]["serve"]["replicas"] = json!(1);
        // Another manager owns a field inside `keep`.
        let theirs = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"keep": {"y": 2}}});
        let live = apply(Some(&live), &theirs, "n", false, "", "v1").unwrap();
        let second =
            json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"a": 1}});
        let live = apply(Some(&live), &second, "m", false, "", "v1").unwrap();
        assert_eq!(live["spec"], json!({"a": 1, "keep": {"y": 2}}));
    }
}
