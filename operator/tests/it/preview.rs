use std::path::PathBuf;

use stellaops_controllers::Config;
use stellaops_operator::preview::{
    Outcome, Summary, documents, input_files, preview_document, run,
};

use crate::repo_root;

fn preview_text(text: &str) -> (Summary, String, String) {
    let dir = std::env::temp_dir().join(format!(
        "stellaops-preview-{}-{}",
        std::process::id(),
        text.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("input.yaml");
    std::fs::write(&file, text).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = run(&[file], &Config::default(), &mut out, &mut err).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (
        summary,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn directories_are_read_flat_sorted_and_without_kustomization() {
    let files = input_files(&repo_root().join("config/samples")).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        9,
        "one per kind and platform-release.yaml: {names:?}"
    );
    assert!(names.windows(2).all(|w| w[0] < w[1]));
    assert!(
        !names
            .iter()
            .any(|n| n.contains("kustomization") || n.contains("invalid"))
    );
}

#[test]
fn multi_document_files_are_numbered_and_other_kinds_skipped() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n---\n---\napiVersion: stella-ops.org/v1alpha1\nkind: Scan\nmetadata: {name: s}\nspec: {image: nginx}\n---\napiVersion: stella-ops.org/v1alpha1\nkind: Scan\nmetadata: {name: t}\nspec: {image: 7}\n";
    let (summary, out, err) = preview_text(text);
    assert_eq!(
        summary,
        Summary {
            valid: 1,
            invalid: 1,
            skipped: 1,
            inputs: 1
        }
    );
    assert!(
        err.contains("input.yaml#1 Service/x: not a stella-ops.org kind"),
        "{err}"
    );
    assert!(
        err.contains("input.yaml#5 Scan default/t: spec.image: Invalid value: 7"),
        "{err}"
    );
    assert!(out.contains("input.yaml#4 Scan default/s: valid"), "{out}");
    // Defaults are shown, as the API server would store them.
    assert!(out.contains("activeDeadlineSeconds: 600"), "{out}");
}

#[test]
fn malformed_yaml_is_an_error_not_a_panic() {
    let (summary, _, err) = preview_text("kind: Scan\n  bad: [indent\n");
    assert_eq!(summary.invalid, 1);
    assert!(err.contains("not valid YAML"), "{err}");
    assert!(documents(": : :\n- [").is_err());
}

#[test]
fn cluster_scoped_kinds_get_no_default_namespace() {
    let doc = serde_json::json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "ZastavaPolicy",
                                 "metadata": {"name": "p"}, "spec": {}});
    match preview_document("x#1", doc, &Config::default()) {
        Outcome::Valid { label, yaml } => {
            assert_eq!(label, "x#1 ZastavaPolicy p");
            // The policy itself has no namespace; its webhook configuration points at the
            // operator's Service.
            let policy_document = yaml
                .split("kind: ValidatingWebhookConfiguration")
                .next()
                .unwrap();
            let policy_document = &policy_document[..policy_document
                .rfind("---")
                .unwrap_or(policy_document.len())];
            assert!(!policy_document.contains("namespace:"), "{yaml}");
            assert!(yaml.contains("path: /validate/p"), "{yaml}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_invalid_example_fails_preview() {
    let dir: PathBuf = repo_root().join("config/samples/invalid");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = run(
        std::slice::from_ref(&dir),
        &Config::default(),
        &mut out,
        &mut err,
    )
    .unwrap();
    let count = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        summary,
        Summary {
            valid: 0,
            invalid: count,
            skipped: 0,
            inputs: 0
        }
    );
}
