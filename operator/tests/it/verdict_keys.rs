//! The operator follows its verdict public key file: a rotated key is in force for the
//! webhook and the Scan controller (one shared set) without a restart, a broken file is
//! refused and counted, and the keys in force stay.

use std::time::Duration;

use stellaops_operator::runtime::{VerdictKeyMetrics, follow_verdict_keys};
use stellaops_store::attestation::{KeyFile, SharedVerdictKeys, generate_key_pair};

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn the_operator_reloads_rotated_verdict_keys_and_keeps_them_on_a_bad_file() {
    let dir = std::env::temp_dir().join(format!("operator-verdict-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pub.pem");
    let (_, first) = generate_key_pair();
    let (_, second) = generate_key_pair();
    std::fs::write(&path, &first).unwrap();

    let keys = SharedVerdictKeys::default();
    let mut file = KeyFile::new(&path, keys.clone());
    file.check();
    assert_eq!(keys.current().len(), 1);
    // The controllers' configuration and the webhook hold clones of the same set.
    let controllers = stellaops_controllers::Config {
        verdict_keys: keys.clone(),
        ..Default::default()
    };
    let registry = prometheus::Registry::new();
    let metrics = VerdictKeyMetrics::register(&registry).unwrap();
    let task = tokio::spawn(follow_verdict_keys(
        file,
        Duration::from_millis(50),
        metrics.clone(),
    ));
    let count = |result: &str| metrics.reloads.with_label_values(&[result]).get();
    until("the gauge", || metrics.in_force.get() == 1).await;

    // Rotation: a second key next to the first, as the kubelet rewrites the mount.
    std::fs::write(&path, format!("{first}{second}")).unwrap();
    until("the rotated keys", || {
        controllers.verdict_keys.current().len() == 2
    })
    .await;
    until("the metrics", || {
        count("loaded") == 1 && metrics.in_force.get() == 2
    })
    .await;

    // A broken file: refused, counted, the two keys stay.
    std::fs::write(
        &path,
        "-----BEGIN PUBLIC KEY-----\nbroken\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    until("the refusal", || count("refused") == 1).await;
    assert_eq!(controllers.verdict_keys.current().len(), 2);
    assert_eq!(metrics.in_force.get(), 2);
    // Looking again at the same broken file is not another refusal.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count("refused"), 1);

    // Fixed: only the second key.
    std::fs::write(&path, &second).unwrap();
    until("the repaired file", || count("loaded") == 2).await;
    assert_eq!(controllers.verdict_keys.current().len(), 1);
    assert_eq!(metrics.in_force.get(), 1);
    task.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}
