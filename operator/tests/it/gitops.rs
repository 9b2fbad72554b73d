//! GitOps health: the Argo CD check (docs/gitops/argocd-health.lua) run by a real Lua
//! interpreter, and the Flux health expressions (docs/gitops/flux-health-check-exprs.yaml)
//! evaluated with CEL the way Flux does, over the same statuses of every kind: each must say
//! Healthy/Current for Ready, Progressing/InProgress for a state the operator leaves on its
//! own, Degraded/Failed for one a person must fix, Suspended (Current) for a pause.

use std::process::Command;

use serde_json::{Value, json};

use crate::packaging::tool;
use crate::repo_root;

/// A resource of `kind` at generation 3 with `status` (conditions and all).
fn object(kind: &str, status: Option<Value>) -> Value {
    let mut object = json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": kind,
        "metadata": {"name": "sample", "namespace": "stellaops", "generation": 3},
        "spec": {}});
    if let Some(status) = status {
        object["status"] = status;
    }
    object
}

fn ready(status: &str, reason: &str) -> Value {
    json!({"observedGeneration": 3, "conditions": [
        {"type": "Accepted", "status": "True", "reason": "Valid", "message": "spec is valid"},
        {"type": "Ready", "status": status, "reason": reason, "message": format!("{reason} (sample)")}]})
}

/// (kind, status, Argo CD health, Flux status) for every kind's states.
fn samples() -> Vec<(&'static str, Option<Value>, &'static str, &'static str)> {
    let mut samples = Vec::new();
    let healthy = [
        ("Scan", "Scanned"),
        ("ScanPolicy", "Valid"),
        ("Schedule", "Scheduled"),
        ("NotifyRule", "Delivering"),
        ("FederationSite", "Scheduled"),
        ("MirrorDomain", "Serving"),
        ("ZastavaPolicy", "WebhookConfigured"),
        ("Platform", "Available"),
    ];
    for (kind, reason) in healthy {
        samples.push((kind, Some(ready("True", reason)), "Healthy", "Current"));
        // Not yet reconciled: no status, an older generation, or not yet accepted.
        samples.push((kind, None, "Progressing", "InProgress"));
        let mut stale = ready("True", reason);
        stale["observedGeneration"] = json!(2);
        samples.push((kind, Some(stale), "Progressing", "InProgress"));
        samples.push((
            kind,
            Some(ready("False", "AwaitingController")),
            "Progressing",
            "InProgress",
        ));
        samples.push((
            kind,
            Some(ready("Unknown", "Reconciling")),
            "Progressing",
            "InProgress",
        ));
        // A spec the operator refuses.
        samples.push((
            kind,
            Some(ready("False", "InvalidSpec")),
            "Degraded",
            "Failed",
        ));
    }
    for (kind, reason) in [
        ("Scan", "Queued"),
        ("Scan", "Scanning"),
        ("Scan", "PolicyNotReady"),
        ("NotifyRule", "WorkerNotReady"),
        ("FederationSite", "CronJobMissing"),
        ("MirrorDomain", "AwaitingFirstSync"),
        ("MirrorDomain", "ReplicasNotReady"),
        ("Platform", "Upgrading"),
    ] {
        samples.push((
            kind,
            Some(ready("False", reason)),
            "Progressing",
            "InProgress",
        ));
    }
    for (kind, reason) in [
        ("Scan", "ScanFailed"),
        ("ScanPolicy", "Invalid"),
        ("Schedule", "InvalidSchedule"),
        ("Schedule", "DatabaseRequired"),
        ("NotifyRule", "SecretNotFound"),
        ("NotifyRule", "InvalidSecret"),
        ("FederationSite", "SyncFailed"),
        ("MirrorDomain", "SyncFailed"),
        ("MirrorDomain", "SignatureInvalid"),
        ("ZastavaPolicy", "KeySecretMissing"),
        ("ZastavaPolicy", "InvalidTrustedRoot"),
        ("ZastavaPolicy", "TrustedRootMissing"),
        ("Platform", "BackupMissing"),
        ("Platform", "SignatureMismatch"),
        ("Platform", "RolledBack"),
    ] {
        samples.push((kind, Some(ready("False", reason)), "Degraded", "Failed"));
    }
    for (kind, reason) in [
        ("Schedule", "Suspended"),
        ("NotifyRule", "Disabled"),
        ("FederationSite", "Suspended"),
        ("Platform", "Paused"),
    ] {
        samples.push((kind, Some(ready("False", reason)), "Suspended", "Current"));
    }
    // A Platform rolling out keeps serving (Ready) but is not settled.
    let mut rolling = ready("True", "Available");
    rolling["conditions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "Progressing", "status": "True", "reason": "Upgrading", "message": "step 3 of 8"}));
    samples.push(("Platform", Some(rolling), "Progressing", "InProgress"));
    samples
}

/// JSON as a Lua table constructor.
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Run the Argo CD script on each object as Argo CD does (a global `obj`, the script's
/// return value the health); one interpreter for all, one line per object.
fn argocd_health(lua: &str, objects: &[Value]) -> Vec<(String, String)> {
    let script = repo_root().join("docs/gitops/argocd-health.lua");
    let mut driver = format!(
        "local check = assert(loadfile({:?}))\n",
        script.to_str().unwrap()
    );
    for object in objects {
        driver.push_str(&format!(
            "obj = {}\nlocal hs = check()\nprint(hs.status .. \"\\t\" .. hs.message)\n",
            lua_literal(object)
        ));
    }
    let path = std::env::temp_dir().join(format!("stellaops-health-{}.lua", std::process::id()));
    std::fs::write(&path, driver).unwrap();
    let out = Command::new(lua).arg(&path).output().expect("run lua");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "lua failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (status, message) = l.split_once('\t').unwrap_or((l, ""));
            (status.to_string(), message.to_string())
        })
        .collect()
}

/// Flux's order: kstatus' generation check first, then `inProgress`, `failed`, `current`;
/// none true is InProgress.
fn flux_status(expressions: &Value, object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap();
    let entry = expressions["healthCheckExprs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no health expressions for {kind}"));
    let status = object.get("status").cloned().unwrap_or(json!({}));
    if let Some(observed) = status["observedGeneration"].as_i64()
        && Some(observed) != object["metadata"]["generation"].as_i64()
    {
        return "InProgress".into();
    }
    let mut context = cel::Context::default();
    for field in ["apiVersion", "kind", "metadata", "spec"] {
        context.add_variable(field, &object[field]).unwrap();
    }
    context.add_variable("status", &status).unwrap();
    for (key, result) in [
        ("inProgress", "InProgress"),
        ("failed", "Failed"),
        ("current", "Current"),
    ] {
        let Some(source) = entry[key].as_str() else {
            continue;
        };
        let program =
            cel::Program::compile(source).unwrap_or_else(|e| panic!("{kind} {key}: {e:?}"));
        match program.execute(&context) {
            Ok(cel::Value::Bool(true)) => return result.into(),
            Ok(cel::Value::Bool(false)) => {}
            other => panic!("{kind} {key} on {object}: {other:?}"),
        }
    }
    "InProgress".into()
}

#[test]
fn argo_cd_and_flux_health_agree_with_each_kinds_documented_states() {
    let Some(lua) = tool("STELLAOPS_TEST_LUA", "lua5.4") else {
        return;
    };
    let samples = samples();
    let objects: Vec<Value> = samples
        .iter()
        .map(|(kind, status, _, _)| object(kind, status.clone()))
        .collect();
    let argo = argocd_health(&lua, &objects);
    assert_eq!(argo.len(), samples.len(), "one health per object: {argo:?}");
    let flux: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join("docs/gitops/flux-health-check-exprs.yaml"))
            .unwrap(),
    )
    .unwrap();
    let mut wrong = Vec::new();
    for ((sample, object), (health, message)) in samples.iter().zip(&objects).zip(&argo) {
        let (kind, _, want_argo, want_flux) = sample;
        let reason = object["status"]["conditions"][1]["reason"]
            .as_str()
            .unwrap_or("no status");
        if health != want_argo {
            wrong.push(format!(
                "Argo CD: {kind} {reason}: {health} ({message}), want {want_argo}"
            ));
        }
        if health != "Healthy" && health != "Progressing" || reason == "AwaitingController" {
            assert!(!message.is_empty(), "{kind} {reason}: a message says why");
        }
        let got = flux_status(&flux, object);
        if got != *want_flux {
            wrong.push(format!("Flux: {kind} {reason}: {got}, want {want_flux}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Every kind has expressions and samples.
    for kind in stellaops_crds::KINDS {
        assert!(samples.iter().any(|s| s.0 == kind), "no samples for {kind}");
        assert!(
            flux["healthCheckExprs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == kind),
            "no Flux expressions for {kind}"
        );
    }
}

#[test]
fn the_lua_check_reports_a_script_error_as_a_failure() {
    // The interpreter is real: a broken object makes the run fail, not pass silently.
    let Some(lua) = tool("STELLAOPS_TEST_LUA", "lua5.4") else {
        return;
    };
    let path = std::env::temp_dir().join(format!("stellaops-broken-{}.lua", std::process::id()));
    let script = repo_root().join("docs/gitops/argocd-health.lua");
    std::fs::write(
        &path,
        format!(
            "obj = {{kind = \"Scan\", metadata = {{generation = 1}}, status = 7}}\nlocal hs = assert(loadfile({:?}))()\nprint(hs.status)\n",
            script.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = Command::new(&lua).arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
