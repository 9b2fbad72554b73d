//! `stellaops-worker explain`: a stored result's verdict explained for a person.

/// An explanation for a person: the verdict and policy, then the findings that decided it,
/// those that count, and those taken out (with who took them out and why).
pub fn render(e: &stellaops_store::scans::Explanation) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({})\nverdict {} — result {} of {}, policy {} {}",
        e.image,
        e.image_digest,
        e.verdict,
        e.scan_id,
        e.finished_at.to_rfc3339(),
        e.policy,
        e.policy_digest.as_deref().unwrap_or("")
    );
    let groups = [
        ("fails", "Failing"),
        ("warns", "Warning"),
        ("counted", "Counted, below the thresholds"),
        ("ignored", "Taken out"),
    ];
    for (outcome, title) in groups {
        let members: Vec<_> = e
            .findings
            .iter()
            .filter(|f| f.outcome.as_deref().unwrap_or("counted") == outcome)
            .collect();
        if members.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title} ({}):", members.len());
        for f in members {
            let mut exploitation = Vec::new();
            if let Some(since) = f.kev_since {
                exploitation.push(format!("KEV since {since}"));
            }
            if let Some(epss) = f.epss {
                exploitation.push(format!("EPSS {epss:.3}"));
            }
            let _ = writeln!(
                out,
                "  {:<9} {} in {}{}{} — {}: {}",
                f.severity.as_deref().unwrap_or("unrated"),
                f.vuln_id,
                f.purl,
                f.fixed_version
                    .as_deref()
                    .map(|v| format!(" (fixed in {v})"))
                    .unwrap_or_default(),
                if exploitation.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", exploitation.join(", "))
                },
                f.decided_by
                    .as_deref()
                    .unwrap_or("recorded before the decider"),
                f.reason.as_deref().unwrap_or("")
            );
        }
    }
    if e.findings.is_empty() {
        out.push_str("\nno findings\n");
    }
    if !e.licenses.is_empty() {
        let _ = writeln!(out, "\nLicenses decided by rules ({}):", e.licenses.len());
        for l in &e.licenses {
            let _ = writeln!(
                out,
                "  {:<9} {} declares {} — {}: {}",
                if l.outcome == "fails" {
                    "denied"
                } else {
                    "warned"
                },
                l.purl,
                l.license,
                l.decided_by,
                l.reason
            );
        }
    }
    out
}
