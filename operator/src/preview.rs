//! `stellaops-operator preview -f FILE|DIR|-`: admit each document as the API server would
//! and print what the operator would create for it, with no cluster.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::Value;
use stellaops_controllers::platform::Inputs;
use stellaops_controllers::{Config, plan_with};
use stellaops_crds::validation::{FieldError, admit, is_namespaced};

/// One input document's outcome.
#[derive(Debug)]
pub enum Outcome {
    /// Admitted; the YAML to print.
    Valid { label: String, yaml: String },
    /// Not one of our kinds; left alone.
    Skipped { label: String, why: String },
    /// Refused, with every reason.
    Invalid {
        label: String,
        errors: Vec<FieldError>,
    },
}

/// Totals of a preview.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Documents admitted.
    pub valid: usize,
    /// Documents refused.
    pub invalid: usize,
    /// Documents of other kinds.
    pub skipped: usize,
    /// ConfigMaps and Secrets, read as inputs (a Platform's release manifest and key).
    pub inputs: usize,
}

/// Files a path names: the file itself, `-` for stdin, or a directory's `*.yaml`, `*.yml`
/// and `*.json` files (not recursive, like `kubectl apply -f DIR`), sorted, without
/// `kustomization.yaml`.
pub fn input_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path == Path::new("-") || path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"))
                && name != "kustomization.yaml"
                && name != "kustomization.yml"
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Split multi-document YAML (or JSON) into values; empty documents are dropped.
pub fn documents(text: &str) -> Result<Vec<(usize, Value)>, String> {
    let mut docs = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value =
            Value::deserialize(document).map_err(|e| format!("document {}: {e}", index + 1))?;
        if !value.is_null() {
            docs.push((index + 1, value));
        }
    }
    Ok(docs)
}

/// Preview one document. `source` names it in the output (`file.yaml#2`).
pub fn preview_document(source: &str, doc: Value, config: &Config) -> Outcome {
    preview_document_with(source, doc, config, &Inputs::default())
}

/// A ConfigMap or Secret found in the input: kind, (namespace, name), text entries.
type InputDocument = (
    &'static str,
    (String, String),
    std::collections::BTreeMap<String, String>,
);

/// A ConfigMap's or Secret's (namespace, name) and its text entries; `None` for others.
fn as_input(doc: &Value) -> Option<InputDocument> {
    use base64::Engine;
    let kind = match (doc["apiVersion"].as_str(), doc["kind"].as_str()) {
        (Some("v1"), Some("ConfigMap")) => "ConfigMap",
        (Some("v1"), Some("Secret")) => "Secret",
        _ => return None,
    };
    let name = doc["metadata"]["name"].as_str()?.to_string();
    let namespace = doc["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let mut entries = std::collections::BTreeMap::new();
    if let Some(data) = doc["data"].as_object() {
        for (key, value) in data {
            let Some(text) = value.as_str() else { continue };
            let text = if kind == "Secret" {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .ok()?;
                String::from_utf8(raw).ok()?
            } else {
                text.to_string()
            };
            entries.insert(key.clone(), text);
        }
    }
    if let Some(data) = doc["stringData"].as_object() {
        for (key, value) in data {
            if let Some(text) = value.as_str() {
                entries.insert(key.clone(), text.to_string());
            }
        }
    }
    Some((kind, (namespace, name), entries))
}

/// [`preview_document`] with the ConfigMaps and Secrets of the whole input.
pub fn preview_document_with(
    source: &str,
    mut doc: Value,
    config: &Config,
    inputs: &Inputs,
) -> Outcome {
    let kind = doc["kind"].as_str().unwrap_or("?").to_string();
    let name = doc["metadata"]["name"].as_str().unwrap_or("?").to_string();
    let group = doc["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .map(|(g, _)| g.to_string());
    if group.as_deref() != Some(stellaops_crds::GROUP) {
        return Outcome::Skipped {
            label: format!("{source} {kind}/{name}"),
            why: "not a stella-ops.org kind".to_string(),
        };
    }
    // As kubectl does with no namespace in the document or the context.
    if is_namespaced(&kind) == Some(true)
        && doc["metadata"].get("namespace").is_none()
        && let Some(meta) = doc["metadata"].as_object_mut()
    {
        meta.insert("namespace".into(), Value::from("default"));
    }
    let namespace = doc["metadata"]["namespace"]
        .as_str()
        .map(|ns| format!("{ns}/"))
        .unwrap_or_default();
    let label = format!("{source} {kind} {namespace}{name}");
    match admit(&doc) {
        Err(errors) => Outcome::Invalid { label, errors },
        Ok((defaulted, object)) => {
            let plan = plan_with(&object, config, inputs);
            let mut yaml = String::new();
            let _ = writeln!(yaml, "# {label}: valid");
            for note in &plan.notes {
                let _ = writeln!(yaml, "# {note}");
            }
            let _ = write!(yaml, "---\n{}", to_yaml(&defaulted));
            for object in &plan.objects {
                let _ = write!(yaml, "---\n{}", to_yaml(object));
            }
            Outcome::Valid { label, yaml }
        }
    }
}

fn to_yaml(value: &Value) -> String {
    serde_yaml::to_string(value).expect("JSON values serialize to YAML")
}

/// Preview every document of every path: YAML to `out`, problems to `err`. ConfigMaps
/// and Secrets anywhere in the input are read first, so a Platform's preview can verify
/// its release manifest and print the rollout plan.
pub fn run(
    paths: &[PathBuf],
    config: &Config,
    out: &mut impl std::io::Write,
    err: &mut impl std::io::Write,
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    let mut parsed = Vec::new();
    for path in paths {
        for file in input_files(path)? {
            let (source, text) = if file == Path::new("-") {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading stdin")?;
                ("<stdin>".to_string(), text)
            } else {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                (file.display().to_string(), text)
            };
            parsed.push((source.clone(), documents(&text)));
        }
    }
    let mut inputs = Inputs::default();
    for (_, docs) in &parsed {
        for (_, doc) in docs.iter().flatten() {
            if let Some((kind, key, entries)) = as_input(doc) {
                let map = if kind == "Secret" {
                    &mut inputs.secrets
                } else {
                    &mut inputs.config_maps
                };
                map.insert(key, entries);
            }
        }
    }
    for (source, docs) in parsed {
        let docs = match docs {
            Ok(docs) => docs,
            Err(e) => {
                writeln!(err, "error: {source}: not valid YAML: {e}")?;
                summary.invalid += 1;
                continue;
            }
        };
        for (index, doc) in docs {
            if as_input(&doc).is_some() {
                summary.inputs += 1;
                continue;
            }
            match preview_document_with(&format!("{source}#{index}"), doc, config, &inputs) {
                Outcome::Valid { yaml, .. } => {
                    out.write_all(yaml.as_bytes())?;
                    summary.valid += 1;
                }
                Outcome::Skipped { label, why } => {
                    writeln!(err, "skipped: {label}: {why}")?;
                    summary.skipped += 1;
                }
                Outcome::Invalid { label, errors } => {
                    for error in errors {
                        writeln!(err, "error: {label}: {error}")?;
                    }
                    summary.invalid += 1;
                }
            }
        }
    }
    let inputs_note = if summary.inputs > 0 {
        format!(", {} ConfigMap/Secret inputs", summary.inputs)
    } else {
        String::new()
    };
    writeln!(
        err,
        "{} valid, {} invalid, {} skipped{inputs_note}",
        summary.valid, summary.invalid, summary.skipped
    )?;
    Ok(summary)
}
