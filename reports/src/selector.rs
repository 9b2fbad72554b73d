//! Label and field selectors, parsed from a request's query as the API server parses them.
//! Outside bytes: bounded length, every failure a message (fuzzed: `fuzz/fuzz_targets/
//! reports_query.rs`).

use std::collections::BTreeMap;

/// Longest selector accepted.
pub const MAX_SELECTOR_LEN: usize = 4096;
/// Most requirements in one selector.
pub const MAX_REQUIREMENTS: usize = 64;

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value`, `key==value`, `key in (a,b)`.
    In(String, Vec<String>),
    /// `key!=value`, `key notin (a,b)` (also true when the label is absent).
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

/// A parsed label selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

impl LabelSelector {
    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }

    /// True when it selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn valid_key(key: &str) -> bool {
    // [prefix/]name: name ≤ 63 of [A-Za-z0-9._-] starting and ending alphanumeric; the
    // optional prefix a DNS subdomain.
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty() && name.len() <= 63 && valid_value(name);
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    name_ok && prefix_ok
}

fn valid_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value
            .bytes()
            .next()
            .is_none_or(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .last()
            .is_none_or(|b| b.is_ascii_alphanumeric())
}

/// Split at top-level commas (not inside parentheses).
fn split_requirements(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unexpected ')' at {i}"))?
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unclosed '('".into());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn key(text: &str) -> Result<String, String> {
    let key = text.trim();
    if valid_key(key) {
        Ok(key.to_string())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn value(text: &str) -> Result<String, String> {
    let value = text.trim();
    if valid_value(value) {
        Ok(value.to_string())
    } else {
        Err(format!("invalid label value {value:?}"))
    }
}

fn set(text: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("expected a '(' … ')' set, found {:?}", text.trim()))?;
    inner.split(',').map(value).collect()
}

/// Parse a `labelSelector` (`a=b,c!=d,e in (f,g),h notin (i),j,!k`).
pub fn parse_labels(text: &str) -> Result<LabelSelector, String> {
    if text.len() > MAX_SELECTOR_LEN {
        return Err(format!("longer than {MAX_SELECTOR_LEN} bytes"));
    }
    if text.trim().is_empty() {
        return Ok(LabelSelector::default());
    }
    let parts = split_requirements(text)?;
    if parts.len() > MAX_REQUIREMENTS {
        return Err(format!("more than {MAX_REQUIREMENTS} requirements"));
    }
    let mut requirements = Vec::with_capacity(parts.len());
    for part in parts {
        let part = part.trim();
        let requirement = if let Some(k) = part.strip_prefix('!') {
            Requirement::DoesNotExist(key(k)?)
        } else if let Some((k, v)) = part.split_once("!=") {
            Requirement::NotIn(key(k)?, vec![value(v)?])
        } else if let Some((k, v)) = part.split_once("==") {
            Requirement::In(key(k)?, vec![value(v)?])
        } else if let Some((k, v)) = part.split_once('=') {
            Requirement::In(key(k)?, vec![value(v)?])
        } else if let Some((k, rest)) = split_word(part, "notin") {
            Requirement::NotIn(key(k)?, set(rest)?)
        } else if let Some((k, rest)) = split_word(part, "in") {
            Requirement::In(key(k)?, set(rest)?)
        } else if part.contains(['<', '>']) {
            return Err(format!("{part:?}: numeric comparisons are not supported"));
        } else {
            Requirement::Exists(key(part)?)
        };
        requirements.push(requirement);
    }
    Ok(LabelSelector(requirements))
}

/// `key OP (…)` split at the operator word `op` surrounded by whitespace.
fn split_word<'a>(part: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    let paren = part.find('(')?;
    let head = &part[..paren];
    let mut words = head.split_whitespace();
    let k = words.next()?;
    (words.next()? == op && words.next().is_none()).then(|| (k, &part[paren..]))
}

/// A parsed field selector over `metadata.name` and `metadata.namespace`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// `metadata.name=` values (all must hold: two different ones select nothing).
    pub name: Vec<String>,
    /// `metadata.name!=` values.
    pub not_name: Vec<String>,
    /// `metadata.namespace=` values.
    pub namespace: Vec<String>,
    /// `metadata.namespace!=` values.
    pub not_namespace: Vec<String>,
}

impl FieldSelector {
    /// Whether an object named `name` in `namespace` is selected.
    pub fn matches(&self, namespace: Option<&str>, name: &str) -> bool {
        let ns = namespace.unwrap_or("");
        self.name.iter().all(|n| n == name)
            && self.not_name.iter().all(|n| n != name)
            && self.namespace.iter().all(|n| n == ns)
            && self.not_namespace.iter().all(|n| n != ns)
    }

    /// The one name asked for, when there is one.
    pub fn exact_name(&self) -> Option<&str> {
        self.name.first().map(String::as_str)
    }

    /// The one namespace asked for, when there is one.
    pub fn exact_namespace(&self) -> Option<&str> {
        self.namespace.first().map(String::as_str)
    }
}

/// Parse a `fieldSelector` (`metadata.name=x,metadata.namespace!=y`).
pub fn parse_fields(text: &str) -> Result<FieldSelector, String> {
    if text.len() > MAX_SELECTOR_LEN {
        return Err(format!("longer than {MAX_SELECTOR_LEN} bytes"));
    }
    let mut selector = FieldSelector::default();
    if text.trim().is_empty() {
        return Ok(selector);
    }
    let parts: Vec<&str> = text.split(',').collect();
    if parts.len() > MAX_REQUIREMENTS {
        return Err(format!("more than {MAX_REQUIREMENTS} requirements"));
    }
    for part in parts {
        let (field, negated, value) = if let Some((f, v)) = part.split_once("!=") {
            (f, true, v)
        } else if let Some((f, v)) = part.split_once("==") {
            (f, false, v)
        } else if let Some((f, v)) = part.split_once('=') {
            (f, false, v)
        } else {
            return Err(format!("invalid selector: {part:?}; expected FIELD=VALUE"));
        };
        let value = value.trim().to_string();
        let list = match (field.trim(), negated) {
            ("metadata.name", false) => &mut selector.name,
            ("metadata.name", true) => &mut selector.not_name,
            ("metadata.namespace", false) => &mut selector.namespace,
            ("metadata.namespace", true) => &mut selector.not_namespace,
            (other, _) => {
                return Err(format!(
                    "field label not supported: {other} (metadata.name and metadata.namespace are)"
                ));
            }
        };
        list.push(value);
    }
    Ok(selector)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_parse_like_the_api_server() {
        let s =
            parse_labels("verdict=Fail, severity in (critical,high),!x,repository, a!=b").unwrap();
        assert_eq!(
            s.0,
            vec![
                Requirement::In("verdict".into(), vec!["Fail".into()]),
                Requirement::In("severity".into(), vec!["critical".into(), "high".into()]),
                Requirement::DoesNotExist("x".into()),
                Requirement::Exists("repository".into()),
                Requirement::NotIn("a".into(), vec!["b".into()]),
            ]
        );
        let l = labels(&[
            ("verdict", "Fail"),
            ("severity", "high"),
            ("repository", "r"),
        ]);
        assert!(s.matches(&l));
        assert!(!s.matches(&labels(&[("verdict", "Pass")])));
        assert!(
            parse_labels("severity notin (low, medium)")
                .unwrap()
                .matches(&l)
        );
        assert!(
            parse_labels("stella-ops.org/x==y")
                .unwrap()
                .matches(&labels(&[("stella-ops.org/x", "y")]))
        );
        assert!(parse_labels("").unwrap().is_empty());
    }

    #[test]
    fn bad_label_selectors_are_refused_with_a_reason() {
        for bad in [
            "a=(b", "a in b", "a in (b", "a)", "x>1", "=b", "a=b c", "Bad_/x=y", "a=-b",
        ] {
            assert!(parse_labels(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_labels(&"a,".repeat(100)).is_err());
        assert!(parse_labels(&"a".repeat(5000)).is_err());
    }

    #[test]
    fn field_selectors_cover_name_and_namespace_only() {
        let s = parse_fields("metadata.name=web,metadata.namespace!=kube-system").unwrap();
        assert!(s.matches(Some("team-a"), "web"));
        assert!(!s.matches(Some("kube-system"), "web"));
        assert!(!s.matches(Some("team-a"), "api"));
        assert_eq!(s.exact_name(), Some("web"));
        let err = parse_fields("spec.image=x").unwrap_err();
        assert!(
            err.contains("field label not supported: spec.image"),
            "{err}"
        );
        assert!(parse_fields("metadata.name").is_err());
    }
}
