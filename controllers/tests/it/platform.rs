//! Platform: release verification with a key pair made here, the rollout state machine
//! as table tests over a simulated cluster, and the reconcile's calls to the API server.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use jiff::Timestamp;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};
use stellaops_controllers::metrics::Metrics;
use stellaops_controllers::platform::release::{self, ReleaseError};
use stellaops_controllers::platform::rollout::{
    Action, Decision, DeploymentView, Input, JobView, Observed, decide,
};
use stellaops_controllers::platform::{Inputs, ManifestFiles, desired_with, reconcile, verify};
use stellaops_controllers::{Config, Context, FIELD_MANAGER};
use stellaops_crds::Platform;
use stellaops_crds::platform::{OperationKind, PlatformPhase};
use stellaops_testing::mock_client;

struct Keys {
    signer: SigningKey,
    public_pem: String,
}

fn keys() -> Keys {
    let (private, public_pem) = stellaops_federation::dsse::generate_key_pair();
    Keys {
        signer: SigningKey::from_pkcs8_pem(&private).unwrap(),
        public_pem,
    }
}

/// What `cosign sign-blob` prints.
fn sign(keys: &Keys, bytes: &[u8]) -> String {
    let signature: DerSignature = keys.signer.sign(bytes);
    STANDARD.encode(signature.as_bytes())
}

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn image(name: &str, c: char) -> String {
    format!("registry.stella-ops.org/stellaops/{name}@{}", digest(c))
}

const ALL: [&str; 8] = [
    "web-ui",
    "excititor",
    "concelier",
    "scanner-worker",
    "scanner-webservice",
    "attestor",
    "signer",
    "authority",
];

/// A release.yaml in the seed's shape (components deliberately out of order).
fn manifest(version: &str, c: char, components: &[&str], migrations: bool) -> String {
    let mut text = format!(
        "release:\n  version: \"{version}\"\n  channel: \"stable\"\n  date: \"2027-06-20T12:00:00Z\"\n  calendar: \"2027.06\"\n  components:\n"
    );
    for name in components {
        text.push_str(&format!(
            "    - name: {name}\n      image: {}\n      sbom: oci://registry.stella-ops.org/referrers/cdx-json@{}\n      signature: {{ rekorUUID: \"abc\" }}\n",
            image(name, c),
            digest('1')
        ));
    }
    if migrations {
        text.push_str(&format!(
            "  migrations:\n    image: {}\n    expand: [\"migrate\", \"--phase\", \"expand\"]\n    contract: [\"migrate\", \"--phase\", \"contract\"]\n",
            image("migrations", c)
        ));
    }
    text.push_str("  charts:\n    - name: platform\n      version: \"2.4.1\"\n      digest: \"sha256:ee\"\n  checksums:\n    sha256: \"n/a\"\n");
    text
}

fn platform(version: &str) -> Platform {
    serde_json::from_value(json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "Platform",
        "metadata": {"name": "stellaops", "namespace": "stellaops", "generation": 1,
                     "uid": "22220000-0000-4000-8000-000000000001"},
        "spec": {"channel": "stable", "version": version,
                 "releaseManifest": {"configMapRef": {"name": "stellaops-release", "manifestKey": "release.yaml", "signatureKey": "release.yaml.sig"}},
                 "verification": {"publicKeySecretRef": {"name": "stellaops-release-key", "key": "cosign.pub"}},
                 "upgrade": {"healthTimeoutSeconds": 600, "autoRollback": true, "historyLimit": 3, "paused": false}}
    }))
    .unwrap()
}

fn verified(
    keys: &Keys,
    platform: &Platform,
    text: &str,
) -> Result<release::Release, ReleaseError> {
    verify(
        platform,
        Ok(ManifestFiles {
            manifest: text.as_bytes().to_vec(),
            signature: Some(sign(keys, text.as_bytes())),
        }),
        Ok(keys.public_pem.clone()),
    )
}

#[test]
fn only_a_release_signed_by_the_key_with_every_image_by_digest_is_accepted() {
    let keys = keys();
    let p = platform("2.4.1");
    let text = manifest("2.4.1", 'b', &ALL, true);
    let release = verified(&keys, &p, &text).unwrap();
    let order: Vec<&str> = release.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        order,
        vec![
            "authority",
            "signer",
            "attestor",
            "scanner-webservice",
            "scanner-worker",
            "concelier",
            "excititor",
            "web-ui"
        ],
        "the seed's upgrade order, whatever the manifest's"
    );
    assert_eq!(release.digest, release::digest(text.as_bytes()));
    assert_eq!(release.calendar.as_deref(), Some("2027.06"));

    // One changed byte anywhere in the file.
    let tampered = text.replacen("bbbb", "bbbc", 1);
    let result = verify(
        &p,
        Ok(ManifestFiles {
            manifest: tampered.into_bytes(),
            signature: Some(sign(&keys, text.as_bytes())),
        }),
        Ok(keys.public_pem.clone()),
    );
    assert_eq!(result.unwrap_err(), ReleaseError::SignatureMismatch);
    // Signed by someone else.
    let other = keys_other();
    let result = verify(
        &p,
        Ok(ManifestFiles {
            manifest: text.clone().into_bytes(),
            signature: Some(sign(&other, text.as_bytes())),
        }),
        Ok(keys.public_pem.clone()),
    );
    assert_eq!(result.unwrap_err().reason(), "SignatureMismatch");
    // Unsigned.
    let result = verify(
        &p,
        Ok(ManifestFiles {
            manifest: text.clone().into_bytes(),
            signature: None,
        }),
        Ok(keys.public_pem.clone()),
    );
    let error = result.unwrap_err();
    assert_eq!(error.reason(), "Unsigned");
    assert!(error.to_string().contains("release.yaml.sig"), "{error}");
    // A tag instead of a digest, correctly signed.
    let by_tag = text.replacen(&format!("signer@{}", digest('b')), "signer:2.4.1", 1);
    let error = verified(&keys, &p, &by_tag).unwrap_err();
    assert_eq!(error.reason(), "ImageNotByDigest");
    assert!(error.to_string().contains("component signer"), "{error}");
    // Another version than the spec asks for.
    let error = verified(&keys, &platform("2.4.2"), &text).unwrap_err();
    assert_eq!(
        error.to_string(),
        "release.yaml is version 2.4.1 but spec.version is 2.4.2"
    );
    // Not a manifest at all.
    let error = verified(&keys, &p, "hello: world\n").unwrap_err();
    assert_eq!(error.reason(), "MalformedManifest");
    // A bad key.
    let result = verify(
        &p,
        Ok(ManifestFiles {
            manifest: text.clone().into_bytes(),
            signature: Some(sign(&keys, text.as_bytes())),
        }),
        Ok("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n".into()),
    );
    assert_eq!(result.unwrap_err(), ReleaseError::BadKey);
}

fn keys_other() -> Keys {
    keys()
}

/// A cluster that does what the actions say: images change at once, rollouts finish when
/// the test says so.
struct Sim {
    platform: Platform,
    release: Result<release::Release, ReleaseError>,
    observed: Observed,
    now: Timestamp,
    last_backup: Option<Timestamp>,
    compliance_at_risk: Option<String>,
    /// Components whose rollouts finish as soon as their image changes.
    auto_healthy: bool,
    /// Components that never become available.
    broken: Vec<String>,
}

fn healthy(image: &str, container: &str) -> DeploymentView {
    DeploymentView {
        container: container.to_string(),
        image: image.to_string(),
        rolled_out: true,
        available: true,
        stalled: None,
    }
}

impl Sim {
    fn new(keys: &Keys, version: &str, c: char, components: &[&str], migrations: bool) -> Sim {
        let platform = platform(version);
        let text = manifest(version, c, components, migrations);
        let release = verified(keys, &platform, &text);
        let mut observed = Observed::default();
        for name in ALL {
            observed
                .deployments
                .insert(name.to_string(), healthy(&image(name, 'a'), name));
        }
        Sim {
            platform,
            release,
            observed,
            now: "2027-06-21T10:00:00Z".parse().unwrap(),
            last_backup: None,
            compliance_at_risk: None,
            auto_healthy: true,
            broken: Vec::new(),
        }
    }

    fn decide(&self) -> Decision {
        decide(&Input {
            platform: &self.platform,
            release: self.release.as_ref(),
            observed: &self.observed,
            last_backup: self.last_backup,
            compliance_at_risk: self.compliance_at_risk.clone(),
            now: self.now,
        })
    }

    /// One reconcile: decide, apply, store the status (as JSON, like the API server).
    fn step(&mut self) -> Decision {
        let decision = self.decide();
        for action in &decision.actions {
            match action {
                Action::SetImage {
                    deployment, image, ..
                } => {
                    let d = self.observed.deployments.get_mut(deployment).unwrap();
                    d.image = image.clone();
                    let ok = self.auto_healthy && !self.broken.contains(deployment);
                    d.rolled_out = ok;
                    d.available = ok;
                }
                Action::RunMigration { name, .. } => {
                    self.observed.jobs.insert(name.clone(), JobView::Running);
                }
            }
        }
        let stored = serde_json::to_value(&decision.status).unwrap();
        self.platform.status = Some(serde_json::from_value(stored).unwrap());
        self.now += jiff::SignedDuration::from_secs(10);
        decision
    }

    fn status(&self) -> &stellaops_crds::platform::PlatformStatus {
        self.platform.status.as_ref().unwrap()
    }

    fn condition(&self, t: &str) -> (String, String, String) {
        let c = self
            .status()
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .unwrap_or_else(|| panic!("no {t} condition"))
            .clone();
        (c.status, c.reason, c.message)
    }

    fn images(&self) -> BTreeMap<String, String> {
        self.observed
            .deployments
            .iter()
            .map(|(n, d)| (n.clone(), d.image.clone()))
            .collect()
    }

    /// Reconcile until nothing is in progress (or `limit` reconciles).
    fn settle(&mut self, limit: usize) -> Vec<Decision> {
        let mut decisions = Vec::new();
        for _ in 0..limit {
            let d = self.step();
            let done = d.status.operation.is_none();
            decisions.push(d);
            if done {
                break;
            }
        }
        decisions
    }
}

fn set_images(decisions: &[Decision]) -> Vec<String> {
    decisions
        .iter()
        .flat_map(|d| d.actions.iter())
        .filter_map(|a| match a {
            Action::SetImage { deployment, .. } => Some(deployment.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_upgrade_goes_in_the_seed_order_each_step_after_the_previous_is_healthy() {
    let keys = keys();
    let mut sim = Sim::new(&keys, "2.4.1", 'b', &ALL, false);
    sim.auto_healthy = false;
    // First reconcile: the rollout starts with Authority, and only Authority.
    let first = sim.step();
    assert_eq!(
        first.actions,
        vec![Action::SetImage {
            deployment: "authority".into(),
            container: "authority".into(),
            image: image("authority", 'b')
        }]
    );
    assert_eq!(sim.status().phase, Some(PlatformPhase::Progressing));
    assert_eq!(sim.status().step.as_ref().unwrap().name, "authority");
    let op = sim.status().operation.clone().unwrap();
    assert_eq!(op.kind, OperationKind::Upgrade);
    assert_eq!(op.steps.len(), 8);
    assert_eq!(first.outbox[0].kind, "release.progress");
    assert!(first.notices.iter().any(|n| n.reason == "UpgradeStarted"));
    let (s, reason, message) = sim.condition("Progressing");
    assert_eq!((s.as_str(), reason.as_str()), ("True", "Upgrading"));
    assert!(message.contains("step 1/8 authority"), "{message}");
    assert_eq!(sim.condition("Ready").0, "False");

    // Not yet rolled out: wait, change nothing.
    let waiting = sim.step();
    assert!(waiting.actions.is_empty());
    assert_eq!(sim.status().step.as_ref().unwrap().name, "authority");
    // Healthy: the next component is updated.
    let d = sim.observed.deployments.get_mut("authority").unwrap();
    d.rolled_out = true;
    d.available = true;
    let next = sim.step();
    assert_eq!(set_images(std::slice::from_ref(&next)), vec!["signer"]);
    assert!(next.outbox.iter().any(|e| e.payload["step"] == "authority"));

    // From here every rollout finishes at once: the rest goes in order.
    sim.auto_healthy = true;
    let d = sim.observed.deployments.get_mut("signer").unwrap();
    d.rolled_out = true;
    d.available = true;
    let rest = sim.settle(40);
    assert_eq!(
        set_images(&rest),
        vec![
            "attestor",
            "scanner-webservice",
            "scanner-worker",
            "concelier",
            "excititor",
            "web-ui"
        ]
    );
    let status = sim.status();
    assert_eq!(status.phase, Some(PlatformPhase::Available));
    assert_eq!(status.current_version.as_deref(), Some("2.4.1"));
    assert!(status.operation.is_none() && status.step.is_none());
    assert!(status.components.iter().all(|c| c.state == "Healthy"));
    assert_eq!(sim.condition("Ready").0, "True");
    assert_eq!(sim.condition("Available").0, "True");
    assert_eq!(sim.condition("Progressing").0, "False");
    assert_eq!(sim.condition("ReleaseVerified").0, "True");
    assert!(
        sim.images().values().all(|i| i.ends_with(&digest('b'))),
        "{:?}",
        sim.images()
    );
    // Settled: reconciling again changes nothing.
    let again = sim.step();
    assert!(again.actions.is_empty() && again.outbox.is_empty() && again.notices.is_empty());
}

#[test]
fn components_the_release_does_not_list_are_left_alone() {
    let keys = keys();
    let mut sim = Sim::new(&keys, "2.4.1", 'b', &["concelier", "excititor"], false);
    sim.settle(20);
    assert_eq!(sim.status().current_version.as_deref(), Some("2.4.1"));
    let images = sim.images();
    assert!(images["concelier"].ends_with(&digest('b')));
    assert!(images["excititor"].ends_with(&digest('b')));
    for untouched in ["authority", "signer", "web-ui", "scanner-worker"] {
        assert!(images[untouched].ends_with(&digest('a')), "{untouched}");
    }
}

#[test]
fn migrations_wrap_the_components_and_a_failed_one_stops_the_upgrade() {
    let keys = keys();
    let mut sim = Sim::new(&keys, "2.4.1", 'b', &["authority", "concelier"], true);
    let first = sim.step();
    let Action::RunMigration {
        name, phase, args, ..
    } = &first.actions[0]
    else {
        panic!("{:?}", first.actions)
    };
    assert_eq!(name, "stellaops-migrate-expand-2-4-1-1");
    assert_eq!(*phase, "expand");
    assert_eq!(args.join(" "), "migrate --phase expand");
    assert_eq!(first.actions.len(), 1, "no component before the expand Job");
    // Running: wait.
    assert!(sim.step().actions.is_empty());
    sim.observed.jobs.insert(name.clone(), JobView::Succeeded);
    let decisions = sim.settle(20);
    assert_eq!(set_images(&decisions), vec!["authority", "concelier"]);
    let contract = decisions
        .iter()
        .flat_map(|d| d.actions.iter())
        .find_map(|a| match a {
            Action::RunMigration { name, phase, .. } => Some((name.clone(), *phase)),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        contract,
        ("stellaops-migrate-contract-2-4-1-1".into(), "contract")
    );
    assert_eq!(sim.status().step.as_ref().unwrap().name, "migrate-contract");
    sim.observed
        .jobs
        .insert(contract.0, JobView::Failed("BackoffLimitExceeded".into()));
    // The contract phase failed: both components go back, in reverse order.
    let decisions = sim.settle(20);
    assert_eq!(set_images(&decisions), vec!["concelier", "authority"]);
    let status = sim.status();
    assert_eq!(status.phase, Some(PlatformPhase::RolledBack));
    assert!(sim.images()["authority"].ends_with(&digest('a')));
    let failure = status.last_failure.clone().unwrap();
    assert!(
        failure.reason.contains(
            "contract migration Job stellaops-migrate-contract-2-4-1-1 failed: BackoffLimitExceeded"
        ),
        "{}",
        failure.reason
    );
}

#[test]
fn a_failed_health_gate_rolls_back_in_reverse_order_and_waits_for_a_new_instruction() {
    let keys = keys();
    let mut sim = Sim::new(&keys, "2.4.1", 'b', &ALL, false);
    sim.broken = vec!["scanner-worker".into()];
    let mut decisions = Vec::new();
    // Until scanner-worker is being waited on.
    for _ in 0..10 {
        decisions.push(sim.step());
    }
    assert_eq!(sim.status().step.as_ref().unwrap().name, "scanner-worker");
    assert_eq!(
        set_images(&decisions),
        vec![
            "authority",
            "signer",
            "attestor",
            "scanner-webservice",
            "scanner-worker"
        ]
    );
    // Past healthTimeoutSeconds.
    sim.now += jiff::SignedDuration::from_secs(601);
    sim.broken.clear();
    let failed = sim.step();
    assert!(
        failed
            .notices
            .iter()
            .any(|n| n.reason == "UpgradeFailed" && n.warning)
    );
    assert!(failed.outbox.iter().any(|e| e.kind == "release.failed"));
    assert_eq!(
        set_images(std::slice::from_ref(&failed)),
        vec!["scanner-worker"],
        "the failed component goes back first"
    );
    assert_eq!(sim.status().phase, Some(PlatformPhase::RollingBack));
    let rest = sim.settle(20);
    assert_eq!(
        set_images(&rest),
        vec!["scanner-webservice", "attestor", "signer", "authority"]
    );
    let last = rest.last().unwrap();
    assert!(last.outbox.iter().any(|e| e.kind == "release.rolledback"));
    let status = sim.status();
    assert_eq!(status.phase, Some(PlatformPhase::RolledBack));
    assert!(
        sim.images().values().all(|i| i.ends_with(&digest('a'))),
        "everything back: {:?}",
        sim.images()
    );
    assert!(status.history[0].state == "RolledBack" && status.history[0].version == "2.4.1");
    assert!(
        status.history[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("Deployment scanner-worker did not become available")
    );
    let (ready, reason, message) = sim.condition("Ready");
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("False", "RolloutFailed")
    );
    assert!(
        message.contains("Set a new spec.version or spec.rollbackTo"),
        "{message}"
    );
    // It does not retry by itself...
    let quiet = sim.step();
    assert!(quiet.actions.is_empty() && quiet.outbox.is_empty());
    // ...but any spec change (a new generation) tries again, as a new attempt.
    sim.platform.metadata.generation = Some(2);
    let retry = sim.step();
    assert_eq!(set_images(std::slice::from_ref(&retry)), vec!["authority"]);
    assert_eq!(sim.status().operation.as_ref().unwrap().attempt, 3);
}

#[test]
fn without_auto_rollback_a_failure_stops_where_it_is() {
    let keys = keys();
    let mut sim = Sim::new(&keys, "2.4.1", 'b', &["authority", "signer"], false);
    sim.platform.spec.upgrade.auto_rollback = false;
    sim.broken = vec!["signer".into()];
    sim.step();
    sim.step();
    sim.now += jiff::SignedDuration::from_secs(700);
    let failed = sim.step();
    assert!(failed.actions.is_empty());
    assert_eq!(sim.status().phase, Some(PlatformPhase::Failed));
    assert!(sim.images()["signer"].ends_with(&digest('b')));
    assert_eq!(sim.status().history[0].state, "Failed");
}

#[test]
fn a_missing_deployment_or_a_stalled_rollout_fails_the_gate_with_the_reason() {
    let keys = keys();
    let mut sim = Sim::new(&keys, "2.4.1", 'b', &["authority", "policy"], false);
    sim.settle(10);
    let failure = sim.status().last_failure.clone().unwrap();
    assert!(
        failure.reason.contains("Deployment policy does not exist"),
        "{}",
        failure.reason
    );
    // authority was changed, so it was put back.
    assert!(sim.images()["authority"].ends_with(&digest('a')));

    let mut sim = Sim::new(&keys, "2.4.1", 'b', &["authority"], false);
    sim.auto_healthy = false;
    sim.step();
    sim.observed
        .deployments
        .get_mut("authority")
        .unwrap()
        .stalled = Some("ReplicaSet \"authority-7c\" has timed out progressing.".into());
    sim.step();
    assert!(
        sim.status()
            .last_failure
            .as_ref()
            .unwrap()
            .reason
            .contains("stopped progressing: ReplicaSet")
    );
}

#[test]
fn pause_holds_between_steps_and_the_current_step_finishes() {
    let keys = keys();
    let mut sim = Sim::new(
        &keys,
        "2.4.1",
        'b',
        &["authority", "signer", "attestor"],
        false,
    );
    sim.auto_healthy = false;
    sim.step();
    sim.platform.spec.upgrade.paused = true;
    let d = sim.observed.deployments.get_mut("authority").unwrap();
    d.rolled_out = true;
    d.available = true;
    let paused = sim.step();
    assert!(
        paused.actions.is_empty(),
        "signer does not start while paused"
    );
    assert_eq!(sim.status().phase, Some(PlatformPhase::Paused));
    assert_eq!(sim.status().step.as_ref().unwrap().name, "signer");
    assert!(paused.notices.iter().any(|n| n.reason == "Paused"));
    assert_eq!(sim.condition("Progressing").1, "Paused");
    // Time passing while paused is not counted against the next step's gate.
    sim.now += jiff::SignedDuration::from_secs(3600);
    assert!(sim.step().actions.is_empty());
    sim.platform.spec.upgrade.paused = false;
    let resumed = sim.step();
    assert_eq!(set_images(std::slice::from_ref(&resumed)), vec!["signer"]);
    assert_eq!(sim.status().phase, Some(PlatformPhase::Progressing));
}

#[test]
fn a_restarted_operator_resumes_from_the_recorded_status() {
    let keys = keys();
    let mut sim = Sim::new(&keys, "2.4.1", 'b', &ALL, false);
    sim.auto_healthy = false;
    sim.step();
    let d = sim.observed.deployments.get_mut("authority").unwrap();
    d.rolled_out = true;
    d.available = true;
    sim.step();
    // A new process: only the stored object (status as JSON) survives.
    let stored = serde_json::to_string(&sim.platform).unwrap();
    let restarted: Platform = serde_json::from_str(&stored).unwrap();
    let before = sim.decide();
    sim.platform = restarted;
    let after = sim.decide();
    assert_eq!(before, after, "the same decision from the stored status");
    assert_eq!(sim.status().step.as_ref().unwrap().name, "signer");
    assert!(
        after.actions.is_empty(),
        "signer's image is already set; nothing is redone"
    );
}

#[test]
fn preconditions_block_the_start_with_the_exact_reason() {
    let keys = keys();
    let running = |sim: &mut Sim, version: &str| {
        let mut status = stellaops_crds::platform::PlatformStatus {
            current_version: Some(version.into()),
            current_channel: Some("stable".into()),
            ..Default::default()
        };
        for name in ALL {
            status
                .components
                .push(stellaops_crds::platform::ComponentStatus {
                    name: name.into(),
                    image: image(name, 'a'),
                    version: Some(version.into()),
                    state: "Healthy".into(),
                    ..Default::default()
                });
        }
        sim.platform.status = Some(status);
    };
    let check = |sim: &mut Sim, reason: &str, fragment: &str| {
        let d = sim.step();
        assert!(d.actions.is_empty(), "{reason}: nothing starts");
        let (s, r, m) = sim.condition("Upgradeable");
        assert_eq!((s.as_str(), r.as_str()), ("False", reason), "{m}");
        assert!(m.contains(fragment), "{m}");
        assert_eq!(sim.condition("Ready").0, "False");
    };

    let mut sim = Sim::new(&keys, "2.6.0", 'b', &ALL, false);
    running(&mut sim, "2.4.3");
    check(&mut sim, "VersionSkew", "upgrade to 2.5.x first");

    let mut sim = Sim::new(&keys, "2.5.0", 'b', &["authority", "signer"], false);
    running(&mut sim, "2.4.3");
    check(&mut sim, "VersionSkew", "attestor");

    let mut sim = Sim::new(
        &keys,
        "2.5.0",
        'b',
        &["authority", "signer", "attestor"],
        false,
    );
    running(&mut sim, "2.4.3");
    assert!(
        sim.step().actions.len() == 1,
        "±1 minor for the rest is fine"
    );

    let mut sim = Sim::new(&keys, "2.4.0", 'b', &ALL, false);
    running(&mut sim, "2.4.3");
    check(&mut sim, "Downgrade", "spec.rollbackTo");

    let mut sim = Sim::new(&keys, "2.4.4", 'b', &ALL, false);
    running(&mut sim, "2.4.3");
    sim.platform.status.as_mut().unwrap().current_channel = Some("lts".into());
    sim.platform.spec.channel = stellaops_crds::platform::ReleaseChannel::Stable;
    let text = manifest("2.4.4", 'b', &ALL, false).replace("\"stable\"", "\"edge\"");
    sim.platform.spec.channel = stellaops_crds::platform::ReleaseChannel::Edge;
    sim.release = verified(&keys, &sim.platform, &text);
    check(&mut sim, "ChannelTransition", "move to stable first");

    let mut sim = Sim::new(&keys, "2.4.4", 'b', &ALL, false);
    sim.platform.spec.upgrade.require_backup_within = Some("24h".into());
    check(&mut sim, "BackupMissing", "stella-ops.org/last-backup-at");
    sim.last_backup = Some(sim.now - jiff::SignedDuration::from_hours(30));
    check(&mut sim, "BackupTooOld", "requireBackupWithin is 24h");
    sim.last_backup = Some(sim.now - jiff::SignedDuration::from_hours(2));
    assert_eq!(sim.step().actions.len(), 1, "a fresh backup lets it start");

    // Release seed §12: no upgrade while a bucket rule could purge signed verdicts.
    let mut sim = Sim::new(&keys, "2.4.4", 'b', &ALL, false);
    sim.compliance_at_risk =
        Some("bucket lifecycle rule all (prefix \"\") expires objects under attest/".into());
    check(&mut sim, "ComplianceArtifactsAtRisk", "rule all");
    sim.compliance_at_risk = None;
    assert_eq!(
        sim.step().actions.len(),
        1,
        "once the rule is gone it starts"
    );

    let mut sim = Sim::new(&keys, "2.4.4", 'b', &ALL, false);
    sim.platform.spec.upgrade.paused = true;
    check(&mut sim, "Paused", "unset it");

    // An unverified release never starts, and says why.
    let mut sim = Sim::new(&keys, "2.4.4", 'b', &ALL, false);
    sim.release = Err(ReleaseError::SignatureMismatch);
    let d = sim.step();
    assert!(d.actions.is_empty());
    assert_eq!(sim.condition("ReleaseVerified").1, "SignatureMismatch");
    assert_eq!(sim.condition("Ready").1, "SignatureMismatch");
}

#[test]
fn rollback_to_a_previous_release_on_request_and_history_is_bounded() {
    let keys = keys();
    let mut sim = Sim::new(&keys, "2.4.1", 'b', &ALL, false);
    sim.settle(40);
    // 2.4.2, then 2.4.3, then 2.4.4, 2.4.5: each pushes the one before into history.
    for (version, c) in [
        ("2.4.2", 'c'),
        ("2.4.3", 'd'),
        ("2.4.4", 'e'),
        ("2.4.5", 'f'),
    ] {
        sim.platform.spec.version = version.into();
        sim.platform.metadata.generation = Some(sim.platform.metadata.generation.unwrap() + 1);
        sim.release = verified(&keys, &sim.platform, &manifest(version, c, &ALL, false));
        sim.settle(40);
        assert_eq!(sim.status().current_version.as_deref(), Some(version));
    }
    let history: Vec<&str> = sim
        .status()
        .history
        .iter()
        .map(|r| r.version.as_str())
        .collect();
    assert_eq!(history, vec!["2.4.4", "2.4.3", "2.4.2"], "historyLimit 3");
    assert!(sim.status().history[0].images["authority"].ends_with(&digest('e')));

    sim.platform.spec.rollback_to = Some("2.4.3".into());
    sim.platform.metadata.generation = Some(99);
    let decisions = sim.settle(40);
    assert_eq!(
        set_images(&decisions),
        vec![
            "web-ui",
            "excititor",
            "concelier",
            "scanner-worker",
            "scanner-webservice",
            "attestor",
            "signer",
            "authority"
        ],
        "back in reverse order"
    );
    assert!(sim.images().values().all(|i| i.ends_with(&digest('d'))));
    let status = sim.status();
    assert_eq!(status.current_version.as_deref(), Some("2.4.3"));
    assert_eq!(status.phase, Some(PlatformPhase::RolledBack));
    assert_eq!(status.history[0].version, "2.4.5");
    assert_eq!(sim.condition("Ready").0, "True");
    assert!(
        decisions
            .last()
            .unwrap()
            .outbox
            .iter()
            .any(|e| e.kind == "release.rolledback")
    );

    sim.platform.spec.rollback_to = Some("1.0.0".into());
    let d = sim.step();
    assert!(d.actions.is_empty());
    let (_, reason, message) = sim.condition("Ready");
    assert_eq!(reason, "RollbackTargetUnknown");
    assert!(message.contains("2.4.5"), "{message}");
}

#[test]
fn a_new_version_supersedes_a_rollout_in_progress() {
    let keys = keys();
    let mut sim = Sim::new(&keys, "2.4.1", 'b', &ALL, false);
    sim.auto_healthy = false;
    sim.step();
    sim.platform.spec.version = "2.4.2".into();
    sim.platform.metadata.generation = Some(2);
    sim.release = verified(&keys, &sim.platform, &manifest("2.4.2", 'c', &ALL, false));
    let d = sim.step();
    assert!(d.notices.iter().any(|n| n.reason == "Superseded"));
    assert_eq!(
        d.actions,
        vec![Action::SetImage {
            deployment: "authority".into(),
            container: "authority".into(),
            image: image("authority", 'c')
        }]
    );
    let authority = sim
        .status()
        .components
        .iter()
        .find(|c| c.name == "authority")
        .unwrap()
        .clone();
    assert_eq!(
        authority.previous_image.as_deref(),
        Some(image("authority", 'a').as_str()),
        "a rollback would still go to what ran before either rollout"
    );
}

#[test]
fn decisions_are_pure_and_event_keys_stable() {
    let keys = keys();
    let sim = Sim::new(&keys, "2.4.1", 'b', &ALL, true);
    let a = sim.decide();
    let b = sim.decide();
    assert_eq!(a, b);
    assert_eq!(
        a.outbox[0].idempotency_key,
        "release.progress/22220000-0000-4000-8000-000000000001/1/started"
    );
}

#[test]
fn preview_prints_the_ordered_plan_of_a_verified_release() {
    let keys = keys();
    let p = platform("2.4.1");
    let text = manifest("2.4.1", 'b', &ALL, true);
    let mut inputs = Inputs::default();
    inputs.config_maps.insert(
        ("stellaops".into(), "stellaops-release".into()),
        BTreeMap::from([
            ("release.yaml".into(), text.clone()),
            ("release.yaml.sig".into(), sign(&keys, text.as_bytes())),
        ]),
    );
    inputs.secrets.insert(
        ("stellaops".into(), "stellaops-release-key".into()),
        BTreeMap::from([("cosign.pub".into(), keys.public_pem.clone())]),
    );
    let plan = &desired_with(&p, &inputs)[0];
    assert_eq!(plan["kind"], "RolloutPlan");
    let steps: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        vec![
            "migrate-expand",
            "authority",
            "signer",
            "attestor",
            "scanner-webservice",
            "scanner-worker",
            "concelier",
            "excititor",
            "web-ui",
            "migrate-contract"
        ]
    );
    assert_eq!(plan["release"]["digest"], release::digest(text.as_bytes()));
    // Without the ConfigMap: the order, and why the release is not known.
    let plan = &desired_with(&p, &Inputs::default())[0];
    assert_eq!(plan["release"]["reason"], "ManifestUnavailable");
}

/// Expect a GET of each component Deployment in `names` (sorted, as the controller reads
/// them), answered from `existing` or with 404.
async fn expect_component_reads(
    server: &mut stellaops_testing::ApiServer,
    names: &[&str],
    existing: Vec<Value>,
) {
    let mut sorted = names.to_vec();
    sorted.sort();
    for name in sorted {
        let call = server
            .expect(
                Method::GET,
                &format!("/apis/apps/v1/namespaces/stellaops/deployments/{name}"),
            )
            .await;
        match existing.iter().find(|d| d["metadata"]["name"] == name) {
            Some(d) => call.respond(200, d.clone()),
            None => call.respond_status(
                404,
                "NotFound",
                &format!("deployments.apps \"{name}\" not found"),
            ),
        }
    }
}

fn deployment(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "stellaops", "generation": 3},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "sidecar", "image": "envoy:1"}, {"name": name, "image": image}]}}},
        "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "readyReplicas": 2}
    })
}

#[tokio::test]
async fn reconcile_reads_release_and_key_then_sets_one_image_and_records_status() {
    let keys = keys();
    let text = manifest("2.4.1", 'b', &["authority", "signer"], false);
    let signature = sign(&keys, text.as_bytes());
    let public_b64 = STANDARD.encode(&keys.public_pem);
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        let cm = server
            .expect(
                Method::GET,
                "/api/v1/namespaces/stellaops/configmaps/stellaops-release",
            )
            .await;
        cm.respond(
            200,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "stellaops-release", "namespace": "stellaops"},
                   "data": {"release.yaml": text, "release.yaml.sig": signature}}),
        );
        let secret = server
            .expect(
                Method::GET,
                "/api/v1/namespaces/stellaops/secrets/stellaops-release-key",
            )
            .await;
        secret.respond(
            200,
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "stellaops-release-key", "namespace": "stellaops"},
                   "data": {"cosign.pub": public_b64}}),
        );
        // Each component of the release read by name (no LIST of the namespace); no
        // operation in the status, so no migration Job is read.
        expect_component_reads(
            &mut server,
            &["authority", "signer"],
            vec![
                deployment("authority", &image("authority", 'a')),
                deployment("signer", &image("signer", 'a')),
            ],
        )
        .await;
        // Only Authority's image, by server-side apply of that one field.
        let apply = server
            .expect(
                Method::PATCH,
                "/apis/apps/v1/namespaces/stellaops/deployments/authority",
            )
            .await;
        assert!(apply.is_forced_apply());
        assert_eq!(apply.field_manager(), Some(FIELD_MANAGER));
        assert_eq!(
            apply.body["spec"]["template"]["spec"]["containers"],
            json!([{"name": "authority", "image": image("authority", 'b')}])
        );
        apply.respond(200, deployment("authority", &image("authority", 'b')));
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/stellaops/platforms/stellaops/status",
            )
            .await;
        let body = &status.body["status"];
        assert_eq!(body["phase"], "Progressing");
        assert_eq!(body["step"]["name"], "authority");
        assert_eq!(body["operation"]["steps"], json!(["authority", "signer"]));
        assert_eq!(
            body["lastFailure"],
            Value::Null,
            "cleared fields are sent as null"
        );
        let verified = body["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "ReleaseVerified")
            .unwrap();
        assert_eq!(verified["status"], "True");
        let mut stored = serde_json::to_value(platform("2.4.1")).unwrap();
        stored["status"] = body.clone();
        status.respond(200, stored);
        // Events: UpgradeStarted, ComponentUpdating.
        let mut reasons = Vec::new();
        for _ in 0..2 {
            let event = server
                .expect(
                    Method::POST,
                    "/apis/events.k8s.io/v1/namespaces/stellaops/events",
                )
                .await;
            reasons.push(event.body["reason"].as_str().unwrap().to_string());
            event.respond_with_request_body();
        }
        assert_eq!(reasons, vec!["UpgradeStarted", "ComponentUpdating"]);
        server
            .expect_no_more_calls(std::time::Duration::from_millis(100))
            .await;
    });
    let ctx = Arc::new(Context::new(
        client,
        Metrics::unregistered(),
        platform_config(),
        None,
    ));
    let action = reconcile(Arc::new(platform("2.4.1")), ctx).await.unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(10))
    );
    verifier.await.unwrap();
}

#[tokio::test]
async fn a_tampered_release_changes_nothing_in_the_cluster() {
    let keys = keys();
    let text = manifest("2.4.1", 'b', &["authority"], false);
    let signature = sign(&keys, text.as_bytes());
    let tampered = text.replace(&digest('b'), &digest('9'));
    let public_b64 = STANDARD.encode(&keys.public_pem);
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        server
            .expect(
                Method::GET,
                "/api/v1/namespaces/stellaops/configmaps/stellaops-release",
            )
            .await
            .respond(
                200,
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "stellaops-release", "namespace": "stellaops"},
                       "data": {"release.yaml": tampered, "release.yaml.sig": signature}}),
            );
        server
            .expect(
                Method::GET,
                "/api/v1/namespaces/stellaops/secrets/stellaops-release-key",
            )
            .await
            .respond(
                200,
                json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "stellaops-release-key", "namespace": "stellaops"},
                       "data": {"cosign.pub": public_b64}}),
            );
        // A release that does not verify names no component to read.
        // No Deployment patch: straight to the status.
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/stellaops/platforms/stellaops/status",
            )
            .await;
        let conditions = status.body["status"]["conditions"]
            .as_array()
            .unwrap()
            .clone();
        let verified = conditions
            .iter()
            .find(|c| c["type"] == "ReleaseVerified")
            .unwrap();
        assert_eq!(verified["status"], "False");
        assert_eq!(verified["reason"], "SignatureMismatch");
        let ready = conditions.iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["reason"], "SignatureMismatch");
        assert_eq!(status.body["status"]["operation"], Value::Null);
        let mut stored = serde_json::to_value(platform("2.4.1")).unwrap();
        stored["status"] = status.body["status"].clone();
        status.respond(200, stored);
        server
            .expect_no_more_calls(std::time::Duration::from_millis(100))
            .await;
    });
    let ctx = Arc::new(Context::new(
        client,
        Metrics::unregistered(),
        platform_config(),
        None,
    ));
    reconcile(Arc::new(platform("2.4.1")), ctx).await.unwrap();
    verifier.await.unwrap();
}

/// Serve one reconcile of `platform("2.4.1")` whose release and Deployments are as given;
/// answers everything, checks nothing.
async fn serve_one_reconcile(
    mut server: stellaops_testing::ApiServer,
    text: String,
    signature: String,
    public_b64: String,
) {
    server
        .expect(
            Method::GET,
            "/api/v1/namespaces/stellaops/configmaps/stellaops-release",
        )
        .await
        .respond(
            200,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "stellaops-release", "namespace": "stellaops"},
                   "data": {"release.yaml": text, "release.yaml.sig": signature}}),
        );
    server
        .expect(
            Method::GET,
            "/api/v1/namespaces/stellaops/secrets/stellaops-release-key",
        )
        .await
        .respond(
            200,
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "stellaops-release-key", "namespace": "stellaops"},
                   "data": {"cosign.pub": public_b64}}),
        );
    expect_component_reads(
        &mut server,
        &["authority"],
        vec![deployment("authority", &image("authority", 'a'))],
    )
    .await;
    loop {
        let call = server.next_call().await;
        if call.method == Method::PATCH && call.path.ends_with("/status") {
            let mut stored = serde_json::to_value(platform("2.4.1")).unwrap();
            stored["status"] = call.body["status"].clone();
            call.respond(200, stored);
        } else if call.path.contains("/events") {
            let last = call.body["reason"] == "ComponentUpdating";
            call.respond_with_request_body();
            if last {
                return;
            }
        } else {
            call.respond_with_request_body();
        }
    }
}

#[tokio::test]
async fn release_events_reach_the_outbox_once_even_when_a_reconcile_is_retried() {
    let Some(pool) =
        stellaops_testing::migrated_database("platform_outbox", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let keys = keys();
    let text = manifest("2.4.1", 'b', &["authority"], false);
    let signature = sign(&keys, text.as_bytes());
    let public_b64 = STANDARD.encode(&keys.public_pem);
    // The same reconcile twice (as after a failed status write): one set of events.
    for _ in 0..2 {
        let (client, server) = mock_client("default");
        let serving = tokio::spawn(serve_one_reconcile(
            server,
            text.clone(),
            signature.clone(),
            public_b64.clone(),
        ));
        let ctx = Arc::new(
            Context::new(client, Metrics::unregistered(), platform_config(), None)
                .with_outbox(pool.clone()),
        );
        reconcile(Arc::new(platform("2.4.1")), ctx).await.unwrap();
        serving.await.unwrap();
    }
    let events = stellaops_store::outbox::read_after(&pool, 0, 100)
        .await
        .unwrap();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.payload["phase"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(kinds, vec![("release.progress", "started")]);
    assert_eq!(events[0].subject, "platform/stellaops");
    assert_eq!(events[0].namespace.as_deref(), Some("stellaops"));
    assert_eq!(events[0].payload["version"], "2.4.1");
}

/// The operator's settings with the samples' platform namespace (`stellaops`), where a
/// Platform must live.
fn platform_config() -> Config {
    Config {
        operator_namespace: "stellaops".into(),
        ..Config::default()
    }
}

#[tokio::test]
async fn a_platform_outside_the_platform_namespace_is_refused_without_touching_anything() {
    let (client, mut server) = stellaops_testing::mock_client("default");
    let verifier = tokio::spawn(async move {
        let status = server
            .expect(
                http::Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/stellaops/platforms/stellaops/status",
            )
            .await;
        let ready = status.body["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert_eq!(ready["reason"], "OutsidePlatformNamespace");
        assert!(
            ready["message"]
                .as_str()
                .unwrap()
                .contains("stellaops-system"),
            "{ready}"
        );
        status.respond(200, serde_json::to_value(platform("2.4.1")).unwrap());
        let event = server
            .expect(
                http::Method::POST,
                "/apis/events.k8s.io/v1/namespaces/stellaops/events",
            )
            .await;
        assert_eq!(event.body["reason"], "OutsidePlatformNamespace");
        event.respond_with_request_body();
        server
            .expect_no_more_calls(std::time::Duration::from_millis(100))
            .await;
    });
    let ctx = Arc::new(Context::new(
        client,
        Metrics::unregistered(),
        Config::default(),
        None,
    ));
    stellaops_controllers::platform::reconcile(Arc::new(platform("2.4.1")), ctx)
        .await
        .unwrap();
    verifier.await.unwrap();
}
