//! CVSS v3.x base scores from vectors (FIRST CVSS v3.1 specification, §7.1), and the
//! qualitative severity rating of a score.

/// The base score of a `CVSS:3.0/…` or `CVSS:3.1/…` vector, or `None` when it is not a
/// complete, valid v3 vector.
pub fn base_score_v3(vector: &str) -> Option<f64> {
    let mut parts = vector.split('/');
    let version = parts.next()?;
    if version != "CVSS:3.1" && version != "CVSS:3.0" {
        return None;
    }
    let metric = |name: &str| -> Option<&str> {
        vector
            .split('/')
            .skip(1)
            .find_map(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
    };
    let av = match metric("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match metric("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let scope_changed = match metric("S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let pr = match (metric("PR")?, scope_changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match metric("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |v: &str| match v {
        "H" => Some(0.56),
        "L" => Some(0.22),
        "N" => Some(0.0),
        _ => None,
    };
    let (c, i, a) = (cia(metric("C")?)?, cia(metric("I")?)?, cia(metric("A")?)?);

    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if scope_changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02f64).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        return Some(0.0);
    }
    let raw = if scope_changed {
        1.08 * (impact + exploitability)
    } else {
        impact + exploitability
    };
    Some(round_up(raw.min(10.0)))
}

/// CVSS v3.1 Roundup: the smallest number with one decimal that is >= `value`.
fn round_up(value: f64) -> f64 {
    let int = (value * 100_000.0).round() as i64;
    if int % 10_000 == 0 {
        int as f64 / 100_000.0
    } else {
        ((int / 10_000) + 1) as f64 / 10.0
    }
}

/// Qualitative rating of a score: `critical`, `high`, `medium`, `low`, or `None` for 0.
pub fn rating(score: f64) -> Option<&'static str> {
    match score {
        s if s >= 9.0 => Some("critical"),
        s if s >= 7.0 => Some("high"),
        s if s >= 4.0 => Some("medium"),
        s if s > 0.0 => Some("low"),
        _ => None,
    }
}
