//! The evaluator at the seed's budget (§9: policy + VEX evaluation ≤ 500 ms for 5k
//! components): 5,000 findings, 2,000 of them with a VEX consensus decided from 2,000
//! statements, under a 100-rule policy. Prints the median of 21 runs, and the consensus
//! step's share. `cargo bench -p stellaops-policy --bench evaluate`
use std::time::{Duration, Instant};

use serde_json::json;
use stellaops_policy::evaluate::{Finding, Policy, Subject, evaluate};
use stellaops_policy::vex::consensus::{Claim, Trust, decide};
use stellaops_policy::vex::{Product, Statement, Status, Version};

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn main() {
    let severities = ["low", "medium", "high", "critical"];
    let findings: Vec<Finding> = (0..5000)
        .map(|i| Finding {
            id: format!("CVE-2024-{i:05}"),
            aliases: vec![format!("GHSA-{i:04}-xxxx-yyyy")],
            purl: format!("pkg:npm/package-{}@1.{}.0", i % 1200, i % 7),
            severity: Some(severities[i % 4].to_string()),
            fixed_version: (i % 3 != 0).then(|| "9.9.9".to_string()),
            layer: format!("sha256:{:064x}", i % 12),
            sources: vec!["osv".into()],
            used_by_entrypoint: Some(i % 5 == 0),
            kev: i % 97 == 0,
            epss: Some((i % 100) as f64 / 100.0),
        })
        .collect();
    let claims: Vec<Claim> = (0..2000)
        .map(|i| Claim {
            provider: format!("vendor-{}", i % 4),
            document_id: "doc".into(),
            document_version: Version::parse("1").unwrap(),
            statement: Statement {
                vulnerability: findings[i * 2].id.clone(),
                aliases: vec![],
                product: Product {
                    purl: Some(findings[i * 2].purl.clone()),
                    image_digest: None,
                },
                status: if i % 3 == 0 {
                    Status::Affected
                } else {
                    Status::NotAffected
                },
                justification: Some("vulnerable_code_not_present".into()),
                impact_statement: None,
                action_statement: None,
                timestamp: None,
            },
        })
        .collect();
    let mut rules = Vec::new();
    for i in 0..100 {
        rules.push(match i % 5 {
            0 => json!({"name": format!("r{i}"), "matchers": {"vulnerabilities": [format!("CVE-2023-{i:05}")]}, "action": {"type": "ignore", "justification": "x"}}),
            1 => json!({"name": format!("r{i}"), "matchers": {"purls": [format!("pkg:npm/other-{i}@*")]}, "action": {"type": "fail"}}),
            2 => json!({"name": format!("r{i}"), "matchers": {"namespaces": [format!("team-{i}-*")]}, "action": {"type": "warn"}}),
            3 => json!({"name": format!("r{i}"), "matchers": {"kev": true, "severities": ["low"]}, "action": {"type": "escalate", "to": "high"}}),
            _ => json!({"name": format!("r{i}"), "matchers": {"epssAtLeast": 0.995}, "action": {"type": "escalate", "to": "critical"}}),
        });
    }
    let policy: Policy =
        serde_json::from_value(json!({"failOn": "critical", "warnOn": "high", "rules": rules}))
            .unwrap();
    let subject = Subject {
        namespace: Some("payments"),
        repository: "registry.example/payments/api",
    };
    let now = "2026-06-01T00:00:00Z".parse().unwrap();
    let trust = Trust::default();

    let mut consensus_runs = Vec::new();
    let mut total_runs = Vec::new();
    let mut verdict = "";
    for _ in 0..21 {
        let started = Instant::now();
        // Claims grouped by finding (what the store's lookup gives), then decided.
        let decisions: Vec<_> = findings
            .iter()
            .enumerate()
            .map(|(i, _)| {
                (i % 2 == 0 && i / 2 < claims.len())
                    .then(|| decide(std::iter::once(&claims[i / 2]), &trust))
            })
            .collect();
        let consensus = started.elapsed();
        let evaluation = evaluate(&findings, &decisions, &subject, &policy, now);
        total_runs.push(started.elapsed());
        consensus_runs.push(consensus);
        verdict = evaluation.verdict;
    }
    let total = median(total_runs);
    let consensus = median(consensus_runs);
    println!(
        "evaluate: 5000 findings, 2000 VEX statements, 100 rules: median {:.2} ms (consensus {:.2} ms, {:.0}%), verdict {verdict}; seed budget 500 ms: {:.0}x under, aim 50 ms",
        total.as_secs_f64() * 1e3,
        consensus.as_secs_f64() * 1e3,
        consensus.as_secs_f64() / total.as_secs_f64() * 100.0,
        0.5 / total.as_secs_f64()
    );
}
