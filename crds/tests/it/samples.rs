use std::collections::BTreeSet;

use stellaops_crds::KINDS;
use stellaops_crds::validation::admit;

use crate::{repo_root, yaml_file};

#[test]
fn every_sample_is_admitted_and_there_is_one_per_kind() {
    let dir = repo_root().join("config/samples");
    let mut kinds = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // platform-release.yaml holds the Platform sample's ConfigMap and Secret.
        if !name.ends_with(".yaml")
            || name == "kustomization.yaml"
            || name == "platform-release.yaml"
        {
            continue;
        }
        let doc = yaml_file(&path);
        match admit(&doc) {
            Ok((_, object)) => {
                kinds.insert(object.kind());
            }
            Err(errors) => panic!(
                "{name} is refused: {}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }
    assert_eq!(kinds, KINDS.iter().copied().collect::<BTreeSet<_>>());
}

/// Each invalid example states the path and message it must be refused with.
#[test]
fn every_invalid_example_is_refused_at_its_stated_path() {
    let dir = repo_root().join("config/samples/invalid");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let header = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                .unwrap_or_else(|| panic!("{} lacks `# {key}:`", path.display()))
                .to_string()
        };
        let (want_path, want_message) = (header("expect-path"), header("expect-message"));
        let doc = yaml_file(&path);
        let errors = match admit(&doc) {
            Ok(_) => panic!("{} was admitted", path.display()),
            Err(errors) => errors,
        };
        assert!(
            errors
                .iter()
                .any(|e| e.path == want_path && e.message.contains(&want_message)),
            "{}: wanted `{want_path}: …{want_message}…`, got {:?}",
            path.display(),
            errors.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} invalid examples");
}
