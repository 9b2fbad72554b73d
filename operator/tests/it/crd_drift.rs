use stellaops_operator::crdgen::{CRD_DIRS, drift, generated};

use crate::repo_root;

/// Fails when someone changes the types without running `crdgen` (or edits the YAML).
#[test]
fn committed_crds_match_the_types() {
    for dir in CRD_DIRS {
        let problems = drift(&repo_root().join(dir));
        assert!(
            problems.is_empty(),
            "run `cargo run -p stellaops-operator -- crdgen`: {problems:?}"
        );
    }
}

#[test]
fn drift_detects_edits_missing_files_and_leftovers() {
    let dir = std::env::temp_dir().join(format!("stellaops-crd-drift-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = generated();
    for (name, yaml) in &files {
        std::fs::write(dir.join(name), yaml).unwrap();
    }
    assert!(drift(&dir).is_empty());
    std::fs::write(dir.join(&files[0].0), "edited").unwrap();
    std::fs::remove_file(dir.join(&files[1].0)).unwrap();
    std::fs::write(dir.join("stella-ops.org_oldkinds.yaml"), "x").unwrap();
    let problems = drift(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(problems.len(), 3, "{problems:?}");
}
