//! Watched objects as the API server sends them, decoded through the stores' shapes
//! (`stellaops_controllers::lean`): whatever the full decoder accepts the shaped one
//! accepts, and what the shaped one gives is the full decoding of the same JSON with the
//! shape's skipped fields removed, trimmed as the store trims it. First byte picks the
//! kind: a Scan, a Pod or a Namespace.
#![no_main]

use k8s_openapi::api::core::v1::{Namespace, Pod};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde_json::Value;
use stellaops_controllers::cache::{trim_namespace, trim_pod};
use stellaops_controllers::lean::{Lean, Level, Shape};
use stellaops_crds::Scan;

/// `value` without the fields `level` skips, at every level it names.
fn prune(value: &mut Value, level: &Level) {
    let Value::Object(fields) = value else {
        return;
    };
    fields.retain(|name, _| {
        !level.skip.contains(&name.as_str())
            && level
                .keep_only
                .is_none_or(|keep| keep.contains(&name.as_str()))
    });
    for (name, child) in level.children {
        if let Some(value) = fields.get_mut(*name) {
            prune(value, child);
        }
    }
}

fn check<K>(data: &[u8], trim: impl Fn(K) -> K)
where
    K: Shape + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let lean = serde_json::from_slice::<Lean<K>>(data);
    if serde_json::from_slice::<K>(data).is_ok() {
        assert!(
            lean.is_ok(),
            "the full decoder took what the shaped one refused"
        );
    }
    let (Ok(Lean(lean)), Ok(mut tree)) = (lean, serde_json::from_slice::<Value>(data)) else {
        return;
    };
    prune(&mut tree, K::SHAPE);
    let whole: K = serde_json::from_value(tree).expect("the pruned tree decodes");
    assert_eq!(lean, trim(whole));
}

fuzz_target!(|data: &[u8]| {
    let Some((kind, json)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => check::<Scan>(json, |mut scan: Scan| {
            scan.metadata.managed_fields = None;
            scan
        }),
        1 => check::<Pod>(json, trim_pod),
        _ => check::<Namespace>(json, trim_namespace),
    }
});
