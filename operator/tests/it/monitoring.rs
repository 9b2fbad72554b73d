//! Dashboards and alerting rules: promtool checks and unit-tests every rule, the chart and
//! config/monitoring ship the same files, and both render (off by default in the chart).
//! That every query returns data from the running binaries is checked end to end in
//! e2e/observability.rs.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::packaging::{render, tool};
use crate::repo_root;

const RULES: &str = "charts/stellaops-operator/files/stellaops-rules.yaml";

fn promtool() -> Option<String> {
    tool("STELLAOPS_TEST_PROMTOOL", "promtool")
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn yaml_file(path: &str) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(repo_root().join(path)).unwrap()).unwrap()
}

#[test]
fn promtool_checks_the_rules_and_every_alert_has_a_unit_test_that_passes() {
    let Some(promtool) = promtool() else { return };
    let (ok, out) = run(&promtool, &["check", "rules", RULES]);
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = run(
        &promtool,
        &["test", "rules", "config/monitoring/rules.test.yaml"],
    );
    assert!(ok, "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    // Every alert is exercised, firing at least once.
    let rules = yaml_file(RULES);
    let alerts: BTreeSet<String> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect();
    let tests = yaml_file("config/monitoring/rules.test.yaml");
    let fired: BTreeSet<String> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .filter(|t| t["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .filter_map(|t| t["alertname"].as_str().map(str::to_string))
        .collect();
    let untested: Vec<_> = alerts.difference(&fired).collect();
    assert!(
        untested.is_empty(),
        "alerts without a firing test: {untested:?}"
    );
    assert!(alerts.len() >= 9, "{alerts:?}");
}

#[test]
fn promtool_fails_a_rule_test_whose_expectation_is_wrong() {
    // The unit tests can fail: the same rules with one threshold changed break them.
    let Some(promtool) = promtool() else { return };
    let dir = std::env::temp_dir().join(format!("stellaops-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = std::fs::read_to_string(repo_root().join(RULES))
        .unwrap()
        .replace("> 6 * 3600", "> 9 * 3600");
    std::fs::write(dir.join("rules.yaml"), rules).unwrap();
    let tests = std::fs::read_to_string(repo_root().join("config/monitoring/rules.test.yaml"))
        .unwrap()
        .replace(
            "../../charts/stellaops-operator/files/stellaops-rules.yaml",
            "rules.yaml",
        );
    std::fs::write(dir.join("rules.test.yaml"), tests).unwrap();
    let (ok, out) = run(
        &promtool,
        &[
            "test",
            "rules",
            dir.join("rules.test.yaml").to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "a 9 h threshold must not fire on 8 h of lag:\n{out}");
    assert!(out.contains("StellaOpsFederationCursorLag"), "{out}");
}

fn dashboards(dir: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(repo_root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_chart_and_config_monitoring_ship_the_same_dashboards_and_rules() {
    let chart = dashboards("charts/stellaops-operator/dashboards");
    let config = dashboards("config/monitoring/dashboards");
    assert_eq!(
        chart.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        config.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for ((name, a), (_, b)) in chart.iter().zip(&config) {
        assert_eq!(
            a, b,
            "{name} differs between the chart and config/monitoring"
        );
    }
    let rule = yaml_file("config/monitoring/prometheusrule.yaml");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(
        rule["spec"]["groups"],
        yaml_file(RULES)["groups"],
        "config/monitoring/prometheusrule.yaml must carry the chart's rules"
    );
}

#[test]
fn dashboards_are_grafana_json_with_one_datasource_variable_and_an_overview() {
    let files = dashboards("config/monitoring/dashboards");
    let mut uids = BTreeSet::new();
    for (name, text) in &files {
        let dashboard: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            uids.insert(dashboard["uid"].as_str().unwrap().to_string()),
            "{name}: uid reused"
        );
        assert_eq!(
            dashboard["templating"]["list"][0]["type"], "datasource",
            "{name}"
        );
        let panels = dashboard["panels"].as_array().unwrap();
        assert!(!panels.is_empty(), "{name}");
        for panel in panels {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}: {}",
                panel["title"]
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(
                !targets.is_empty(),
                "{name}: {} has no query",
                panel["title"]
            );
        }
    }
    // The overview has what the issue asks of it.
    let overview = &files
        .iter()
        .find(|(n, _)| n == "stellaops-overview.json")
        .unwrap()
        .1;
    for metric in [
        "scanner_verdicts_total",
        "scanner_scans_total",
        "zastava_admission_decisions_total",
        "zastava_admission_duration_seconds_bucket",
        "notify_sent_total",
        "federation_cursor_lag_seconds",
        "mirror_requests_total",
    ] {
        assert!(overview.contains(metric), "the overview lacks {metric}");
    }
}

#[test]
fn the_chart_renders_dashboards_and_rules_only_when_asked() {
    let Some(helm) = tool("STELLAOPS_TEST_HELM", "helm") else {
        return;
    };
    let chart = "charts/stellaops-operator";
    let plain = render(&helm, &["template", "s", chart]);
    assert!(
        !plain.iter().any(|o| o["kind"] == "PrometheusRule"
            || o["metadata"]["labels"]["grafana_dashboard"].is_string()),
        "dashboards and rules are off by default"
    );
    let on = render(
        &helm,
        &[
            "template",
            "s",
            chart,
            "--set",
            "grafana.dashboards.enabled=true",
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "prometheusRule.labels.release=kube-prometheus-stack",
        ],
    );
    let maps: Vec<&Value> = on
        .iter()
        .filter(|o| o["kind"] == "ConfigMap" && o["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    let files = dashboards("config/monitoring/dashboards");
    assert_eq!(maps.len(), files.len());
    for (name, text) in &files {
        let map = maps
            .iter()
            .find(|m| m["data"][name].is_string())
            .unwrap_or_else(|| panic!("no ConfigMap holds {name}"));
        assert_eq!(
            map["data"][name].as_str().unwrap().trim_end(),
            text.trim_end()
        );
    }
    let rule = on
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(rule["spec"]["groups"], yaml_file(RULES)["groups"]);
}

#[test]
fn kustomize_renders_config_monitoring() {
    let Some(kubectl) = tool("STELLAOPS_TEST_KUBECTL", "kubectl") else {
        return;
    };
    let objects = render(&kubectl, &["kustomize", "config/monitoring"]);
    let maps = objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap" && o["metadata"]["labels"]["grafana_dashboard"] == "1")
        .count();
    assert_eq!(maps, dashboards("config/monitoring/dashboards").len());
    assert_eq!(
        objects
            .iter()
            .filter(|o| o["kind"] == "PrometheusRule")
            .count(),
        1
    );
}

/// The Deployments the operator makes for the notify and mirror samples, from `plan`.
fn worker_deployments() -> Vec<Value> {
    let config = stellaops_controllers::Config::default();
    ["notifyrule.yaml", "mirrordomain.yaml"]
        .iter()
        .flat_map(|file| {
            let text =
                std::fs::read_to_string(repo_root().join("config/samples").join(file)).unwrap();
            let sample: Value = serde_yaml::from_str(&text).unwrap();
            let (_, object) = stellaops_crds::validation::admit(&sample).unwrap();
            stellaops_controllers::plan(&object, &config).objects
        })
        .filter(|o| o["kind"] == "Deployment")
        .collect()
}

/// Whether a PodMonitor selects `labels` and finds its endpoint port on `containers`.
fn pod_monitor_scrapes(monitor: &Value, labels: &Value, containers: &Value) -> bool {
    let selector = &monitor["spec"]["selector"];
    let matches_labels = selector["matchLabels"]
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| &labels[k] == v);
    let matches_expressions = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            assert_eq!(e["operator"], "In");
            e["values"]
                .as_array()
                .unwrap()
                .contains(&labels[e["key"].as_str().unwrap()])
        });
    let port = &monitor["spec"]["podMetricsEndpoints"][0]["port"];
    let has_port = containers.as_array().unwrap().iter().any(|c| {
        c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| &p["name"] == port)
    });
    matches_labels && matches_expressions && has_port
}

#[test]
fn the_pod_monitors_select_the_worker_deployments_the_operator_makes() {
    let deployments = worker_deployments();
    assert_eq!(deployments.len(), 2, "a notify worker and a mirror server");
    let mut monitors = vec![];
    let config =
        std::fs::read_to_string(repo_root().join("config/monitoring/podmonitor.yaml")).unwrap();
    for document in serde_yaml::Deserializer::from_str(&config) {
        let value: Value = serde::Deserialize::deserialize(document).unwrap();
        if value["kind"] == "PodMonitor" {
            monitors.push(("config/monitoring".to_string(), value));
        }
    }
    if let Some(helm) = tool("STELLAOPS_TEST_HELM", "helm") {
        let rendered = render(
            &helm,
            &[
                "template",
                "s",
                "charts/stellaops-operator",
                "--set",
                "metrics.podMonitor.enabled=true",
            ],
        );
        let chart = rendered
            .into_iter()
            .find(|o| o["kind"] == "PodMonitor")
            .expect("the chart's PodMonitor");
        monitors.push(("chart".to_string(), chart));
    }
    for (source, monitor) in &monitors {
        for deployment in &deployments {
            let template = &deployment["spec"]["template"];
            assert!(
                pod_monitor_scrapes(
                    monitor,
                    &template["metadata"]["labels"],
                    &template["spec"]["containers"]
                ),
                "the {source} PodMonitor misses {}",
                deployment["metadata"]["name"]
            );
        }
        // And not the operator's own Pods or Jobs.
        assert!(!pod_monitor_scrapes(
            monitor,
            &serde_json::json!({"app.kubernetes.io/name": "stellaops-operator"}),
            &serde_json::json!([{"ports": [{"name": "http"}]}])
        ));
    }
}
