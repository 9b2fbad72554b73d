//! License rules (high-level architecture §4.3): deny or warn by SPDX license id for the
//! components whose license is known. Pure like the rest of the decider.
//!
//! A component's license is the SPDX license expression its package declares
//! (`MIT OR Apache-2.0`, `GPL-2.0-or-later WITH Classpath-exception-2.0`). A rule *hits*
//! an expression when, with the rule's ids as the ones not allowed:
//! * a license id is hit when one of the rule's ids (globs with `*`, case-insensitive, as
//!   SPDX ids are matched) matches the id, or the whole `id WITH exception` term;
//! * `A AND B` is hit when either side is (the component carries both);
//! * `A OR B` is hit only when both sides are (otherwise the component can be used under
//!   the alternative that is not hit);
//! * a deprecated GNU id that leaves "only" or "or later" open (`GPL-2.0`, `LGPL-2.1`,
//!   `AGPL-3.0`: what a license text alone says, and what many packages declare) is either,
//!   so it is hit when the rule would hit its `-only` or its `-or-later` form; the
//!   deprecated `+` forms (`GPL-2.0+`) are hit as their `-or-later` form.
//!
//! A component whose license is not known — nothing declared, or a declaration that is not
//! an SPDX expression — is never hit: license rules say nothing about it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::evaluate::{Outcome, Subject, glob};

/// Longest expression parsed (longer declarations are kept as text, not parsed).
pub const MAX_EXPRESSION: usize = 4096;

/// Deepest nesting of parentheses parsed.
const MAX_DEPTH: usize = 32;

/// A parsed SPDX license expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// One license (`MIT`, `GPL-2.0+`, `LicenseRef-x`), optionally `WITH` an exception.
    License {
        /// The license id as written.
        id: String,
        /// The exception id after `WITH`.
        exception: Option<String>,
    },
    /// All of these apply.
    And(Vec<Expr>),
    /// Any one of these may be chosen.
    Or(Vec<Expr>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Id(String),
    And,
    Or,
    With,
    Open,
    Close,
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+' | ':')
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' {
            out.push(Token::Open);
            chars.next();
        } else if c == ')' {
            out.push(Token::Close);
            chars.next();
        } else if is_id_char(c) {
            let mut end = at;
            while let Some(&(i, c)) = chars.peek() {
                if !is_id_char(c) {
                    break;
                }
                end = i + c.len_utf8();
                chars.next();
            }
            let word = &text[at..end];
            // Operators are all upper or all lower case (SPDX 2.3 annex D).
            out.push(match word {
                "AND" | "and" => Token::And,
                "OR" | "or" => Token::Or,
                "WITH" | "with" => Token::With,
                _ => {
                    validate_id(word)?;
                    Token::Id(word.to_string())
                }
            });
        } else {
            return Err(format!("{c:?} at {at} is not part of an SPDX expression"));
        }
    }
    Ok(out)
}

/// `idstring` of the SPDX grammar (`[A-Za-z0-9.-]+`), with an optional trailing `+`, or
/// `DocumentRef-x:LicenseRef-y`.
fn validate_id(word: &str) -> Result<(), String> {
    let body = word.strip_suffix('+').unwrap_or(word);
    let simple = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
    };
    let ok = match body.split_once(':') {
        Some((doc, lic)) => {
            doc.starts_with("DocumentRef-")
                && lic.starts_with("LicenseRef-")
                && simple(doc)
                && simple(lic)
        }
        None => simple(body),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{word:?} is not an SPDX license id"))
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut parts = vec![self.term()?];
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            parts.push(self.term()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn term(&mut self) -> Result<Expr, String> {
        match self.tokens.get(self.at).cloned() {
            Some(Token::Open) => {
                self.at += 1;
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} parentheses"));
                }
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err("a parenthesis is not closed".into());
                }
                self.at += 1;
                self.depth -= 1;
                Ok(inner)
            }
            Some(Token::Id(id)) => {
                self.at += 1;
                let exception = if self.peek() == Some(&Token::With) {
                    self.at += 1;
                    match self.tokens.get(self.at).cloned() {
                        Some(Token::Id(e)) => {
                            self.at += 1;
                            Some(e)
                        }
                        _ => return Err("WITH is not followed by an exception id".into()),
                    }
                } else {
                    None
                };
                Ok(Expr::License { id, exception })
            }
            Some(other) => Err(format!("unexpected {other:?}")),
            None => Err("the expression ends too early".into()),
        }
    }
}

/// Parse an SPDX license expression (SPDX 2.3 annex D): ids, `WITH`, `AND` (binding
/// tighter) and `OR`, parentheses. Bounded in length and depth; an error says what is
/// wrong.
pub fn parse(text: &str) -> Result<Expr, String> {
    if text.len() > MAX_EXPRESSION {
        return Err(format!("longer than {MAX_EXPRESSION} bytes"));
    }
    let tokens = tokens(text)?;
    if tokens.is_empty() {
        return Err("empty".into());
    }
    let mut parser = Parser {
        tokens,
        at: 0,
        depth: 0,
    };
    let expr = parser.or()?;
    if parser.at != parser.tokens.len() {
        return Err(format!(
            "unexpected {:?} after the expression",
            parser.tokens[parser.at]
        ));
    }
    Ok(expr)
}

impl Expr {
    /// Every license id in the expression (exceptions not included).
    pub fn ids(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect(&mut out, false);
        out
    }

    /// Every exception id in the expression.
    pub fn exceptions(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect(&mut out, true);
        out
    }

    fn collect(&self, out: &mut BTreeSet<String>, exceptions: bool) {
        match self {
            Expr::License { id, exception } => {
                if exceptions {
                    out.extend(exception.clone());
                } else {
                    out.insert(id.clone());
                }
            }
            Expr::And(parts) | Expr::Or(parts) => {
                for p in parts {
                    p.collect(out, exceptions);
                }
            }
        }
    }

    /// The expression written back with operators in upper case and the parentheses it
    /// needs; `term` writes each license with its exception (to rewrite those that are
    /// not on the SPDX list).
    pub fn render_with(&self, term: &dyn Fn(&str, Option<&str>) -> String) -> String {
        self.render_at(term, 0)
    }

    /// The expression written back (upper-case operators, needed parentheses only).
    pub fn render(&self) -> String {
        self.render_with(&|id, exception| match exception {
            Some(e) => format!("{id} WITH {e}"),
            None => id.to_string(),
        })
    }

    fn render_at(&self, rename: &dyn Fn(&str, Option<&str>) -> String, parent: u8) -> String {
        match self {
            Expr::License { id, exception } => rename(id, exception.as_deref()),
            Expr::And(parts) => {
                let inner: Vec<String> = parts.iter().map(|p| p.render_at(rename, 2)).collect();
                let text = inner.join(" AND ");
                if parent > 2 {
                    format!("({text})")
                } else {
                    text
                }
            }
            Expr::Or(parts) => {
                let inner: Vec<String> = parts.iter().map(|p| p.render_at(rename, 1)).collect();
                let text = inner.join(" OR ");
                if parent > 1 {
                    format!("({text})")
                } else {
                    text
                }
            }
        }
    }

    /// Whether `patterns` hit the expression (see the module's documentation): the
    /// matched terms, or `None` when it is not hit.
    pub fn hit_by(&self, patterns: &[String]) -> Option<Vec<String>> {
        match self {
            Expr::License { id, exception } => {
                let hits = |reading: &str| {
                    let lower_id = reading.to_ascii_lowercase();
                    let lower_whole = exception
                        .as_ref()
                        .map(|e| format!("{lower_id} with {}", e.to_ascii_lowercase()));
                    patterns.iter().any(|p| {
                        let p = p.to_ascii_lowercase();
                        glob(&p, &lower_id) || lower_whole.as_ref().is_some_and(|w| glob(&p, w))
                    })
                };
                let term = match exception {
                    Some(e) => format!("{id} WITH {e}"),
                    None => id.clone(),
                };
                if hits(id) {
                    return Some(vec![term]);
                }
                // Say which reading the rule hit when it is not the id as declared.
                let reading = gnu_readings(id).into_iter().find(|r| hits(r))?;
                Some(vec![format!("{term} (read as {reading})")])
            }
            Expr::And(parts) => {
                let mut hit = Vec::new();
                for p in parts {
                    hit.extend(p.hit_by(patterns).unwrap_or_default());
                }
                (!hit.is_empty()).then_some(hit)
            }
            Expr::Or(parts) => {
                let mut hit = Vec::new();
                for p in parts {
                    hit.extend(p.hit_by(patterns)?);
                }
                Some(hit)
            }
        }
    }
}

/// The deprecated GNU ids that name a version but leave "only" or "or later" open: what a
/// GNU license text alone, or a name with a version and no more, says.
pub const GNU_OPEN_IDS: &[&str] = &[
    "GPL-1.0", "GPL-2.0", "GPL-3.0", "LGPL-2.0", "LGPL-2.1", "LGPL-3.0", "AGPL-1.0", "AGPL-3.0",
];

/// What a deprecated GNU id may stand for besides itself (`GPL-2.0` → `GPL-2.0-only`,
/// `GPL-2.0-or-later`; `GPL-2.0+` → `GPL-2.0-or-later`); nothing for other ids.
fn gnu_readings(id: &str) -> Vec<String> {
    if let Some(open) = GNU_OPEN_IDS.iter().find(|g| g.eq_ignore_ascii_case(id)) {
        vec![format!("{open}-only"), format!("{open}-or-later")]
    } else if let Some(version) = id.strip_suffix('+')
        && let Some(open) = GNU_OPEN_IDS
            .iter()
            .find(|g| g.eq_ignore_ascii_case(version))
    {
        vec![format!("{open}-or-later")]
    } else {
        Vec::new()
    }
}

/// A declared license as components carry it: the declaration as the package gave it and,
/// when it is an SPDX expression, its license ids.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Declared {
    /// The declaration as given (normalised SPDX expression when it parses).
    pub expression: String,
    /// The license ids in it (empty: not an SPDX expression, the license is unknown).
    pub ids: Vec<String>,
}

impl Declared {
    /// A declaration: parsed when it is an SPDX expression (then written back in its
    /// normal form), kept as given otherwise. `None` for an empty declaration and for the
    /// SPDX words that say nothing (`NONE`, `NOASSERTION`).
    pub fn of(text: &str) -> Option<Declared> {
        let text = text.trim();
        if text.is_empty() || text == "NOASSERTION" || text == "NONE" {
            return None;
        }
        let text: String = text.chars().take(MAX_EXPRESSION).collect();
        Some(match parse(&text) {
            Ok(expr) => Declared {
                expression: expr.render(),
                ids: expr.ids().into_iter().collect(),
            },
            Err(_) => Declared {
                expression: text,
                ids: Vec::new(),
            },
        })
    }

    /// The parsed expression (`None`: not an SPDX expression).
    pub fn expr(&self) -> Option<Expr> {
        if self.ids.is_empty() {
            return None;
        }
        parse(&self.expression).ok()
    }
}

/// Whether a license rule denies (fails the verdict) or warns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LicenseAction {
    /// The component fails the verdict.
    Deny,
    /// The component makes the verdict at least `Warn`.
    Warn,
}

/// One license rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseRule {
    /// Name, shown as what decided (`license:<name>`).
    pub name: String,
    /// Deny or warn.
    pub action: LicenseAction,
    /// SPDX license ids, globs with `*` (`GPL-3.0*`, `AGPL-*`), case-insensitive.
    pub ids: Vec<String>,
    /// Namespace globs (none given: every namespace and cluster-wide evaluations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Image repository globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Package URL globs (without qualifiers) the rule leaves alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except_packages: Vec<String>,
}

/// A component as license rules see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Component {
    /// Package URL.
    pub purl: String,
    /// Its declared license (`None`: not known).
    pub license: Option<Declared>,
}

/// A component a license rule decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseDecided {
    /// Index into the components given.
    pub component: usize,
    /// `Fails` (deny) or `Warns`.
    pub outcome: Outcome,
    /// `license:<rule name>`.
    pub decided_by: String,
    /// For a person: which licenses of which expression the rule hit.
    pub reason: String,
}

fn in_scope(rule: &LicenseRule, purl: &str, subject: &Subject<'_>) -> bool {
    let base = purl.split(['?', '#']).next().unwrap_or(purl);
    (rule.namespaces.is_empty()
        || subject
            .namespace
            .is_some_and(|ns| rule.namespaces.iter().any(|g| glob(g, ns))))
        && (rule.images.is_empty() || rule.images.iter().any(|g| glob(g, subject.repository)))
        && !rule.except_packages.iter().any(|g| glob(g, base))
}

/// The license decisions about `components` of `subject`: for each component with a known
/// license, the first rule (in order) in scope that hits its expression decides.
pub fn decide(
    components: &[Component],
    subject: &Subject<'_>,
    rules: &[LicenseRule],
) -> Vec<LicenseDecided> {
    let mut out = Vec::new();
    if rules.is_empty() {
        return out;
    }
    for (index, component) in components.iter().enumerate() {
        let Some(declared) = &component.license else {
            continue;
        };
        let Some(expr) = declared.expr() else {
            continue;
        };
        for rule in rules {
            if !in_scope(rule, &component.purl, subject) {
                continue;
            }
            let Some(hit) = expr.hit_by(&rule.ids) else {
                continue;
            };
            let (outcome, verb) = match rule.action {
                LicenseAction::Deny => (Outcome::Fails, "denied"),
                LicenseAction::Warn => (Outcome::Warns, "warned about"),
            };
            let alternatives = if matches!(expr, Expr::Or(_)) {
                " (every alternative)"
            } else {
                ""
            };
            out.push(LicenseDecided {
                component: index,
                outcome,
                decided_by: format!("license:{}", rule.name),
                reason: format!(
                    "{} {verb}{alternatives} in {}",
                    hit.join(", "),
                    declared.expression
                ),
            });
            break;
        }
    }
    out
}

/// What is wrong with license rules, each problem naming the rule.
pub fn problems(rules: &[LicenseRule]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("licenses[{i}] ({:?})", rule.name);
        if rule.name.is_empty() {
            problems.push(format!("licenses[{i}] has no name"));
        } else if !names.insert(rule.name.as_str()) {
            problems.push(format!("{at}: the name is used by an earlier license rule"));
        }
        if rule.ids.is_empty() {
            problems.push(format!("{at}: no license ids"));
        }
        for id in &rule.ids {
            let bare = id.replace('*', "x");
            if id.is_empty()
                || !bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+' | ':' | ' '))
            {
                problems.push(format!(
                    "{at}: {id:?} is not an SPDX license id or a glob of one"
                ));
            }
        }
    }
    problems
}
