//! Message texts: `concise` (one line), `detailed` (a block with the event body), or a
//! custom template from the action's Secret with `{{kind}}`, `{{subject}}`,
//! `{{namespace}}`, `{{severity}}`, `{{summary}}`, `{{id}}`, `{{createdAt}}` and
//! `{{payload.a.b}}` placeholders.

use serde_json::Value;

/// A one-line summary of an event, from its kind's usual fields.
pub fn summary(event: &Value) -> String {
    let p = &event["payload"];
    if let Some(s) = p["summary"].as_str().or(p["message"].as_str()) {
        return s.to_string();
    }
    match event["kind"].as_str().unwrap_or_default() {
        "report.ready" | "rescan.delta" => {
            let f = &p["findings"];
            let verdict = p["verdict"].as_str().unwrap_or("report");
            format!(
                "{verdict}: {} critical, {} high, {} medium, {} low",
                f["critical"].as_i64().unwrap_or(0),
                f["high"].as_i64().unwrap_or(0),
                f["medium"].as_i64().unwrap_or(0),
                f["low"].as_i64().unwrap_or(0)
            )
        }
        "zastava.admission" => format!(
            "{} {}: {}",
            p["decision"].as_str().unwrap_or("flagged"),
            p["workload"].as_str().unwrap_or("a workload"),
            p["reason"].as_str().unwrap_or("policy")
        ),
        "release.progress" | "release.failed" | "release.rolledback" => format!(
            "release {} {}",
            p["version"].as_str().unwrap_or("?"),
            p["phase"]
                .as_str()
                .or(p["reason"].as_str())
                .unwrap_or_default()
        ),
        _ => String::new(),
    }
}

fn field<'a>(event: &'a Value, path: &str) -> Option<&'a Value> {
    let mut value = event;
    for part in path.split('.') {
        value = value.get(part)?;
    }
    Some(value)
}

fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Fill a custom template.
pub fn fill(template: &str, event: &Value) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        let value = match name {
            "summary" => summary(event),
            "createdAt" => text(event.get("created_at")),
            other => text(field(event, other)),
        };
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// One line.
pub fn concise(event: &Value) -> String {
    let severity = event["severity"]
        .as_str()
        .map(|s| format!("[{}] ", s.to_uppercase()))
        .unwrap_or_default();
    let namespace = event["namespace"]
        .as_str()
        .map(|ns| format!(" in {ns}"))
        .unwrap_or_default();
    let summary = summary(event);
    let summary = if summary.is_empty() {
        String::new()
    } else {
        format!(": {summary}")
    };
    format!(
        "{severity}{} {}{namespace}{summary}",
        event["kind"].as_str().unwrap_or("event"),
        event["subject"].as_str().unwrap_or_default()
    )
}

/// A block: the concise line, when, and the event's body.
pub fn detailed(event: &Value) -> String {
    format!(
        "{}\nevent #{} at {}\n{}",
        concise(event),
        event["id"],
        text(event.get("created_at")),
        serde_json::to_string_pretty(&event["payload"]).unwrap_or_default()
    )
}

/// The text of one event with `template` (`concise`, `detailed`, or custom text).
pub fn render(template: &str, custom: Option<&str>, event: &Value) -> String {
    match (template, custom) {
        ("detailed", _) => detailed(event),
        (_, Some(custom)) => fill(custom, event),
        _ => concise(event),
    }
}

/// A digest: a header and one line per event.
pub fn render_digest(
    template: &str,
    custom: Option<&str>,
    window: &str,
    events: &[Value],
) -> String {
    let mut out = format!(
        "Stella Ops digest for {window}: {} event{}\n",
        events.len(),
        if events.len() == 1 { "" } else { "s" }
    );
    for event in events {
        let line = match (template, custom) {
            (_, Some(custom)) => fill(custom, event),
            _ => concise(event),
        };
        out.push_str("• ");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({"id": 7, "kind": "report.ready", "namespace": "prod-eu", "subject": "registry/app@sha256:ab",
               "severity": "critical", "created_at": "2026-11-22T10:00:00Z",
               "payload": {"verdict": "Fail", "findings": {"critical": 2, "high": 1}, "image": "registry/app:1"}})
    }

    #[test]
    fn templates() {
        assert_eq!(
            concise(&event()),
            "[CRITICAL] report.ready registry/app@sha256:ab in prod-eu: Fail: 2 critical, 1 high, 0 medium, 0 low"
        );
        assert!(detailed(&event()).contains("\"image\": \"registry/app:1\""));
        assert_eq!(
            fill(
                "{{kind}} {{payload.image}} {{ severity }} {{missing}}!",
                &event()
            ),
            "report.ready registry/app:1 critical !"
        );
        assert_eq!(fill("unclosed {{kind", &event()), "unclosed {{kind");
        let digest = render_digest("concise", None, "10:00–11:00 UTC", &[event(), event()]);
        assert!(digest.starts_with("Stella Ops digest for 10:00–11:00 UTC: 2 events\n"));
        assert_eq!(digest.lines().count(), 3);
    }
}
