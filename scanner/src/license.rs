//! Declared licenses from the package metadata the analyzers read: what each ecosystem
//! writes, turned into an SPDX expression where that can be done without guessing. Every
//! function is total: anything it cannot read is "not known" (`None`), never an error.

use serde_json::Value;
use stellaops_policy::license::GNU_OPEN_IDS;

/// Largest Debian `copyright` file read (a larger one: license not known).
pub const MAX_COPYRIGHT: u64 = 2 << 20;

/// Largest declaration kept.
const MAX_DECLARED: usize = stellaops_policy::license::MAX_EXPRESSION;

fn bounded(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty() && text.len() <= MAX_DECLARED).then(|| text.to_string())
}

/// npm `package.json`: `license` as a string (an SPDX expression, `UNLICENSED` or
/// `SEE LICENSE IN …`, kept as given; a common name that is no expression, like `Apache
/// 2.0` or `MIT License`, read as the license it names, else kept as given), the legacy
/// `license: {type, url}` object, or the legacy `licenses: [{type}, …]` array (several: a
/// choice, as npm documented it).
pub fn npm(json: &Value) -> Option<String> {
    match &json["license"] {
        Value::String(s) => return npm_license(s),
        Value::Object(o) => return o.get("type").and_then(Value::as_str).and_then(npm_license),
        _ => {}
    }
    let list: Vec<&str> = json["licenses"]
        .as_array()?
        .iter()
        .map(|l| l["type"].as_str().or_else(|| l.as_str()))
        .collect::<Option<Vec<_>>>()?;
    choice_of(&list)
}

/// A list of licenses to choose from (npm's legacy `licenses`, a gem's `licenses`,
/// Composer's `license` list), each an expression or a name as [`npm`] reads it: one as
/// itself, several as their `OR` when each says one license (a list holding anything
/// else cannot be written as one expression: not known).
pub fn choice_of(list: &[&str]) -> Option<String> {
    match list {
        [one] => npm_license(one),
        many => choice(
            many.iter()
                .map(|s| {
                    npm_license(s).filter(|l| {
                        stellaops_policy::license::parse(l).is_ok_and(|e| e.ids().len() == 1)
                    })
                })
                .collect(),
        ),
    }
}

/// One npm license value: an expression as given, else the license a common name names,
/// else as given.
fn npm_license(value: &str) -> Option<String> {
    let value = bounded(value)?;
    if names_listed_licenses(&value) || value.starts_with("SEE LICENSE IN") {
        return Some(value);
    }
    // A name, even one that parses as an id of no list (`GPLv3`).
    Some(license_by_name(&value).unwrap_or(value))
}

/// Whether `declared` is an SPDX expression whose licenses are all on the SPDX list (or
/// `LicenseRef-`s): it says which licenses. `BSD`, `GPL`, `Public Domain` do not.
pub fn names_listed_licenses(declared: &str) -> bool {
    stellaops_policy::license::parse(declared).is_ok_and(|e| {
        e.ids()
            .iter()
            .all(|id| listed(id) || id.starts_with("LicenseRef-"))
    })
}

/// The file an npm `SEE LICENSE IN <file>` names, when it is a file of the package (not a
/// URL, not outside the package's directory).
pub fn npm_license_file_named(license: &str) -> Option<&str> {
    let file = license.strip_prefix("SEE LICENSE IN ")?.trim();
    let file = file.strip_prefix("./").unwrap_or(file);
    (!file.is_empty()
        && !file.contains("://")
        && !file.starts_with('/')
        && !file.split('/').any(|part| part == ".." || part.is_empty()))
    .then_some(file)
}

/// Trove classifiers that name one license, with its SPDX id: GNU ones with a version but
/// no "or later" as the version with "only" or "or later" left open (`GPL-3.0`); those that
/// leave the license open, like `BSD License`, `GNU General Public License (GPL)` or `GNU
/// Lesser General Public License v2 (LGPLv2)` (2.0 or 2.1?), are not here: they do not say
/// which license.
const CLASSIFIERS: &[(&str, &str)] = &[
    ("GNU General Public License v2 (GPLv2)", "GPL-2.0"),
    ("GNU General Public License v3 (GPLv3)", "GPL-3.0"),
    ("GNU Lesser General Public License v3 (LGPLv3)", "LGPL-3.0"),
    ("GNU Affero General Public License v3", "AGPL-3.0"),
    ("MIT License", "MIT"),
    ("MIT No Attribution License (MIT-0)", "MIT-0"),
    ("Apache Software License 2.0", "Apache-2.0"),
    ("ISC License (ISCL)", "ISC"),
    ("Mozilla Public License 2.0 (MPL 2.0)", "MPL-2.0"),
    (
        "GNU General Public License v3 or later (GPLv3+)",
        "GPL-3.0-or-later",
    ),
    (
        "GNU General Public License v2 or later (GPLv2+)",
        "GPL-2.0-or-later",
    ),
    (
        "GNU Lesser General Public License v3 or later (LGPLv3+)",
        "LGPL-3.0-or-later",
    ),
    (
        "GNU Lesser General Public License v2 or later (LGPLv2+)",
        "LGPL-2.0-or-later",
    ),
    (
        "GNU Affero General Public License v3 or later (AGPLv3+)",
        "AGPL-3.0-or-later",
    ),
    ("Python Software Foundation License", "PSF-2.0"),
    ("The Unlicense (Unlicense)", "Unlicense"),
    ("zlib/libpng License", "Zlib"),
    ("Boost Software License 1.0 (BSL-1.0)", "BSL-1.0"),
    ("Eclipse Public License 2.0 (EPL-2.0)", "EPL-2.0"),
    ("European Union Public Licence 1.2 (EUPL 1.2)", "EUPL-1.2"),
    ("Universal Permissive License (UPL)", "UPL-1.0"),
];

/// Python `METADATA` / `PKG-INFO` headers: `License-Expression` (core metadata 2.4) as
/// given; else a `License:` field that is itself one SPDX id (not a deprecated one), a
/// name that says one license (`Apache License, Version 2.0`, `MIT license`: the table
/// Maven's names use) or a whole known license text ([`license_file`]); else a single
/// license classifier that maps to one id. Anything else: not known (the scanner then
/// tries the `License-File`s the metadata lists).
pub fn python(headers: &[(&str, &str)]) -> Option<String> {
    let field = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    if let Some(expression) = field("License-Expression") {
        return bounded(expression);
    }
    let classifiers: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Classifier"))
        .filter_map(|(_, v)| v.trim().strip_prefix("License ::"))
        .map(|rest| rest.rsplit("::").next().unwrap_or(rest).trim())
        .collect();
    let classified = |name: &str| {
        CLASSIFIERS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, id)| *id)
    };
    if let Some(license) = field("License") {
        let named = CLASSIFIERS
            .iter()
            .find(|(_, id)| id.eq_ignore_ascii_case(license))
            .map(|(_, id)| id.to_string())
            .or_else(|| license_by_name(license))
            .or_else(|| license_file(license));
        if let Some(id) = named {
            // `License: AGPL-3.0` leaves "or later" open; a classifier of the same version
            // may say (`… v3 or later (AGPLv3+)`).
            let said = classifiers.iter().filter_map(|c| classified(c)).find(|c| {
                GNU_OPEN_IDS.contains(&id.as_str())
                    && c.strip_suffix("-or-later")
                        .or_else(|| c.strip_suffix("-only"))
                        == Some(id.as_str())
            });
            return Some(said.map_or(id, str::to_string));
        }
    }
    match classifiers.as_slice() {
        [one] => classified(one).map(str::to_string),
        _ => None,
    }
}

/// The URL a machine-readable `debian/copyright` names in `Format:` (DEP-5).
fn is_dep5_format(value: &str) -> bool {
    let v = value.trim().trim_end_matches('/');
    let v = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .unwrap_or("");
    v == "www.debian.org/doc/packaging-manuals/copyright-format/1.0"
}

/// A DEP-5 license short name as an SPDX id (`GPL-2+` → `GPL-2.0-or-later`, `Expat` →
/// `MIT`); a name with no SPDX counterpart becomes `LicenseRef-<name>`.
pub fn dep5_short_name(name: &str) -> String {
    let n = name.trim();
    let (base, plus) = match n.strip_suffix('+') {
        Some(b) => (b, true),
        None => (n, false),
    };
    // The GNU family: GPL, LGPL, AGPL, GFDL with a version.
    for family in ["GPL", "LGPL", "AGPL", "GFDL"] {
        if let Some(version) = base.strip_prefix(family).and_then(|r| r.strip_prefix('-')) {
            let version = match version {
                "1" | "1.0" => Some("1.0"),
                "2" | "2.0" => Some("2.0"),
                "2.1" => Some("2.1"),
                "3" | "3.0" => Some("3.0"),
                "1.1" if family == "GFDL" => Some("1.1"),
                "1.2" if family == "GFDL" => Some("1.2"),
                "1.3" if family == "GFDL" => Some("1.3"),
                _ => None,
            };
            let known = matches!(
                (family, version),
                ("GPL", Some("1.0" | "2.0" | "3.0"))
                    | ("LGPL", Some("2.0" | "2.1" | "3.0"))
                    | ("AGPL", Some("3.0"))
                    | ("GFDL", Some("1.1" | "1.2" | "1.3"))
            );
            if known && let Some(v) = version {
                return format!("{family}-{v}-{}", if plus { "or-later" } else { "only" });
            }
        }
    }
    let mapped = match n {
        "Expat" | "MIT" => "MIT",
        "BSD-2-clause" | "BSD-2-Clause" => "BSD-2-Clause",
        "BSD-3-clause" | "BSD-3-Clause" => "BSD-3-Clause",
        "BSD-4-clause" | "BSD-4-Clause" => "BSD-4-Clause",
        "Apache-1.0" => "Apache-1.0",
        "Apache-1.1" => "Apache-1.1",
        "Apache-2.0" | "Apache-2" => "Apache-2.0",
        "Artistic-1.0" | "Artistic-1" => "Artistic-1.0",
        "Artistic-2.0" | "Artistic-2" => "Artistic-2.0",
        "ISC" => "ISC",
        "Zlib" | "zlib" => "Zlib",
        "CC0-1.0" | "CC0" => "CC0-1.0",
        "MPL-1.1" => "MPL-1.1",
        "MPL-2.0" => "MPL-2.0",
        "CDDL-1.0" => "CDDL-1.0",
        "EPL-1.0" => "EPL-1.0",
        "EPL-2.0" => "EPL-2.0",
        "Python-2.0" => "Python-2.0",
        "Zope-2.1" => "ZPL-2.1",
        "OpenSSL" => "OpenSSL",
        "curl" => "curl",
        "Unicode-DFS-2016" => "Unicode-DFS-2016",
        "X11" => "X11",
        _ => "",
    };
    if !mapped.is_empty() {
        return mapped.to_string();
    }
    // A name that is an SPDX id but for its case (`BSD-4-clause-UC`, `Latex2e`).
    if let Some(id) = listed_ignoring_case(n) {
        return id.to_string();
    }
    let cleaned: String = n
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("LicenseRef-{}", cleaned.trim_matches('-'))
}

/// One DEP-5 `License:` synopsis (`GPL-2+ or Artistic-1.0, and BSD-3-clause`) as an SPDX
/// expression: short names mapped, `and` binding tighter than `or`, commas grouping
/// (`A or B, and C` is `(A OR B) AND C`), a `with … exception` kept in the name of a
/// `LicenseRef-`.
fn dep5_synopsis(synopsis: &str) -> Option<String> {
    let mut groups: Vec<(Option<&str>, String)> = Vec::new();
    for (i, group) in synopsis.split(',').enumerate() {
        let group = group.trim();
        let (op, rest) = if i == 0 {
            (None, group)
        } else if let Some(rest) = group.strip_prefix("and ") {
            (Some("AND"), rest)
        } else if let Some(rest) = group.strip_prefix("or ") {
            (Some("OR"), rest)
        } else {
            return None;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        let mut at = 0;
        while at < words.len() {
            match words[at] {
                "and" => out.push("AND".to_string()),
                "or" => out.push("OR".to_string()),
                name => {
                    // `NAME with SOMETHING exception`: an SPDX `WITH` when both are on the
                    // SPDX list, a `LicenseRef-` of the whole otherwise.
                    if words.get(at + 1) == Some(&"with") {
                        let end = words[at + 2..].iter().position(|w| *w == "exception")?;
                        let exception = words[at + 2..at + 2 + end].join("-");
                        let license = dep5_short_name(name);
                        let listed_exception =
                            [exception.clone(), format!("{exception}-exception")]
                                .iter()
                                .find_map(|e| exception_ignoring_case(e));
                        match listed_exception {
                            Some(e) if !license.starts_with("LicenseRef-") => {
                                out.push(format!("{license} WITH {e}"));
                            }
                            _ => out.push(dep5_short_name(&words[at..at + 3 + end].join(" "))),
                        }
                        at += 3 + end;
                        continue;
                    }
                    out.push(dep5_short_name(name));
                }
            }
            at += 1;
        }
        groups.push((op, out.join(" ")));
    }
    let mut expression = String::new();
    for (op, text) in groups {
        match op {
            None => expression = format!("({text})"),
            Some(op) => expression = format!("({expression} {op} ({text}))"),
        }
    }
    let parsed = stellaops_policy::license::parse(&expression).ok()?;
    Some(parsed.render())
}

/// A Debian `usr/share/doc/PKG/copyright` file: when it is machine-readable (DEP-5, its
/// `Format:` the copyright-format 1.0 URL), the `License:` synopses of its `Files`
/// paragraphs, all applying (`AND`), as an SPDX expression. Not machine-readable, a
/// `Files` paragraph without a license, or a synopsis that cannot be read: not known.
pub fn debian_copyright(text: &str) -> Option<String> {
    if text.len() as u64 > MAX_COPYRIGHT {
        return None;
    }
    // Paragraphs: separated by lines that are empty or only whitespace.
    let mut paragraphs: Vec<Vec<&str>> = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            if !paragraphs.last().is_some_and(Vec::is_empty) {
                paragraphs.push(Vec::new());
            }
        } else if let Some(last) = paragraphs.last_mut() {
            last.push(line);
        }
    }
    paragraphs.retain(|p| !p.is_empty());
    let field = |paragraph: &[&str], name: &str| -> Option<String> {
        paragraph.iter().find_map(|line| {
            if line.starts_with([' ', '\t']) {
                return None;
            }
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    };
    let header = paragraphs.first()?;
    if !field(header, "Format").is_some_and(|f| is_dep5_format(&f)) {
        return None;
    }
    let mut synopses: Vec<String> = Vec::new();
    for paragraph in paragraphs.iter().skip(1) {
        if field(paragraph, "Files").is_none() {
            continue; // a stand-alone License paragraph: the text of a license named above
        }
        let synopsis = field(paragraph, "License")?;
        if synopsis.is_empty() {
            return None;
        }
        let expression = dep5_synopsis(&synopsis)?;
        if !synopses.contains(&expression) {
            synopses.push(expression);
        }
    }
    all_apply(&synopses)
}

/// Fedora's legacy license abbreviations (RPM `License:` tags before Fedora 38 and on RHEL
/// 9 and older, CentOS, Rocky, Alma, Amazon Linux 2) with the SPDX id each stands for. Only
/// those that name one license: `BSD`, `GFDL`, `AFL`, `Python` or `LGPLv2` (2.0 or 2.1
/// only?) name a family and stay `LicenseRef-`s. `LGPLv2+` was written for "2.0 or later"
/// and "2.1 or later" alike; both may be used under `LGPL-2.1-or-later`, so that.
const FEDORA_LEGACY: &[(&str, &str)] = &[
    ("GPL+", "GPL-1.0-or-later"),
    ("GPLv2", "GPL-2.0-only"),
    ("GPLv2+", "GPL-2.0-or-later"),
    ("GPLv3", "GPL-3.0-only"),
    ("GPLv3+", "GPL-3.0-or-later"),
    ("LGPLv2+", "LGPL-2.1-or-later"),
    ("LGPLv2.1", "LGPL-2.1-only"),
    ("LGPLv2.1+", "LGPL-2.1-or-later"),
    ("LGPLv3", "LGPL-3.0-only"),
    ("LGPLv3+", "LGPL-3.0-or-later"),
    ("AGPLv3", "AGPL-3.0-only"),
    ("AGPLv3+", "AGPL-3.0-or-later"),
    ("ASL 1.1", "Apache-1.1"),
    ("ASL 2.0", "Apache-2.0"),
    ("MPLv1.0", "MPL-1.0"),
    ("MPLv1.1", "MPL-1.1"),
    ("MPLv2.0", "MPL-2.0"),
    ("Artistic 2.0", "Artistic-2.0"),
    ("Artistic clarified", "ClArtistic"),
    ("Boost", "BSL-1.0"),
    ("CC0", "CC0-1.0"),
    ("Public Domain", "LicenseRef-Fedora-Public-Domain"),
];

/// An RPM `License:` tag as an SPDX expression. Current Fedora, RHEL 10 and SUSE write SPDX
/// already (kept as given); older tags use Fedora's legacy abbreviations joined by `and`
/// and `or` with parentheses (`GPLv2+ and (LGPLv2+ or MIT)`, `ASL 2.0`, `GPLv3+ with
/// exceptions`): each abbreviation that names one license becomes its SPDX id
/// ([`FEDORA_LEGACY`], or an SPDX id in another case: `zlib` → `Zlib`), anything else a
/// `LicenseRef-` of its words (a `with exceptions` term whole, as Debian's are). A tag in
/// which no term names a license is kept as given.
pub fn rpm(tag: &str) -> String {
    let tag = tag.trim();
    if names_listed_licenses(tag) || tag.len() > MAX_DECLARED {
        return tag.to_string();
    }
    let mut out = String::new();
    let mut term: Vec<&str> = Vec::new();
    let mut named = false;
    let mut flush = |term: &mut Vec<&str>, out: &mut String| {
        if !term.is_empty() {
            let text = term.join(" ");
            term.clear();
            let id = fedora_term(&text);
            named |= id.is_some();
            out.push_str(&id.unwrap_or_else(|| license_ref(&text)));
        }
    };
    // Words and parentheses; `and`/`or` (as Fedora wrote them, lower case) join terms.
    let spaced = tag.replace('(', " ( ").replace(')', " ) ");
    for word in spaced.split_whitespace() {
        match word {
            "(" | ")" => {
                flush(&mut term, &mut out);
                out.push_str(word);
            }
            "and" | "AND" => {
                flush(&mut term, &mut out);
                out.push_str(" AND ");
            }
            "or" | "OR" => {
                flush(&mut term, &mut out);
                out.push_str(" OR ");
            }
            _ => term.push(word),
        }
    }
    flush(&mut term, &mut out);
    if named && stellaops_policy::license::parse(&out).is_ok() {
        out
    } else {
        tag.to_string()
    }
}

/// One term of a legacy RPM tag as the SPDX id it names, if it names one.
fn fedora_term(term: &str) -> Option<String> {
    FEDORA_LEGACY
        .iter()
        .find(|(legacy, _)| *legacy == term)
        .map(|(_, id)| id.to_string())
        .or_else(|| {
            listed_ignoring_case(term)
                .filter(|id| spdx::license_id(id).is_some_and(|l| !l.is_deprecated()))
                .map(str::to_string)
        })
}

/// Several license expressions that all apply, as one (`(A) AND (B)`, normal form);
/// nothing, or a result that does not parse or is too long: not known.
pub fn all_apply<S: AsRef<str>>(expressions: &[S]) -> Option<String> {
    if expressions.is_empty() {
        return None;
    }
    let all = expressions
        .iter()
        .map(|e| format!("({})", e.as_ref()))
        .collect::<Vec<_>>()
        .join(" AND ");
    bounded(&stellaops_policy::license::parse(&all).ok()?.render())
}

/// License names as projects write them (Maven's `<license><name>`, Python's `License:`),
/// lower-cased with runs of whitespace made one space and a leading "the " dropped, with
/// the SPDX id each names unambiguously. A GNU license's name with a version and no more
/// ("version 2.1") leaves "only" or "or later" open: the deprecated id that says as much.
const LICENSE_NAMES: &[(&str, &str)] = &[
    ("apache software license, version 2.0", "Apache-2.0"),
    ("apache license, version 2.0", "Apache-2.0"),
    ("apache license version 2.0", "Apache-2.0"),
    ("apache license 2.0", "Apache-2.0"),
    ("apache license, version 2", "Apache-2.0"),
    ("apache software license - version 2.0", "Apache-2.0"),
    ("apache software license 2.0", "Apache-2.0"),
    ("apache license v2.0", "Apache-2.0"),
    ("apache 2.0", "Apache-2.0"),
    ("apache 2", "Apache-2.0"),
    ("asl 2.0", "Apache-2.0"),
    ("mit license", "MIT"),
    ("mit-0", "MIT-0"),
    ("eclipse public license - v 1.0", "EPL-1.0"),
    ("eclipse public license v1.0", "EPL-1.0"),
    ("eclipse public license 1.0", "EPL-1.0"),
    ("eclipse public license - version 1.0", "EPL-1.0"),
    ("epl 1.0", "EPL-1.0"),
    ("eclipse public license - v 2.0", "EPL-2.0"),
    ("eclipse public license v2.0", "EPL-2.0"),
    ("eclipse public license 2.0", "EPL-2.0"),
    ("eclipse public license - version 2.0", "EPL-2.0"),
    ("epl 2.0", "EPL-2.0"),
    // The Eclipse Distribution License 1.0 is the BSD 3-clause text (SPDX says so).
    ("eclipse distribution license - v 1.0", "BSD-3-Clause"),
    ("eclipse distribution license v. 1.0", "BSD-3-Clause"),
    ("edl 1.0", "BSD-3-Clause"),
    ("bsd 3-clause license", "BSD-3-Clause"),
    ("bsd 3-clause", "BSD-3-Clause"),
    ("3-clause bsd license", "BSD-3-Clause"),
    ("new bsd license", "BSD-3-Clause"),
    ("revised bsd license", "BSD-3-Clause"),
    ("bsd 2-clause license", "BSD-2-Clause"),
    ("bsd 2-clause", "BSD-2-Clause"),
    ("2-clause bsd license", "BSD-2-Clause"),
    ("simplified bsd license", "BSD-2-Clause"),
    ("mozilla public license 2.0", "MPL-2.0"),
    ("mozilla public license, version 2.0", "MPL-2.0"),
    ("mozilla public license version 2.0", "MPL-2.0"),
    ("mpl 2.0", "MPL-2.0"),
    ("mozilla public license 1.1", "MPL-1.1"),
    ("mpl 1.1", "MPL-1.1"),
    (
        "common development and distribution license (cddl) v1.0",
        "CDDL-1.0",
    ),
    (
        "common development and distribution license 1.0",
        "CDDL-1.0",
    ),
    // Jakarta EE's secondary license (its sources say `GPL-2.0 WITH
    // Classpath-exception-2.0`).
    ("gpl2 w/ cpe", "GPL-2.0 WITH Classpath-exception-2.0"),
    ("cddl 1.0", "CDDL-1.0"),
    ("cddl 1.1", "CDDL-1.1"),
    ("universal permissive license, version 1.0", "UPL-1.0"),
    ("universal permissive license v1.0", "UPL-1.0"),
    ("upl 1.0", "UPL-1.0"),
    ("isc license", "ISC"),
    ("unlicense", "Unlicense"),
    ("cc0 1.0 universal", "CC0-1.0"),
    ("cc0", "CC0-1.0"),
    ("public domain, per creative commons cc0", "CC0-1.0"),
    (
        "gnu lesser general public license v2.1 or later",
        "LGPL-2.1-or-later",
    ),
    (
        "gnu lesser general public license, version 2.1 or later",
        "LGPL-2.1-or-later",
    ),
    (
        "gnu lesser general public license v3.0 or later",
        "LGPL-3.0-or-later",
    ),
    (
        "gnu general public license v2.0 or later",
        "GPL-2.0-or-later",
    ),
    (
        "gnu general public license v3.0 or later",
        "GPL-3.0-or-later",
    ),
    ("gnu general public license v2.0 only", "GPL-2.0-only"),
    ("gnu general public license v3.0 only", "GPL-3.0-only"),
    (
        "gnu lesser general public license v2.1 only",
        "LGPL-2.1-only",
    ),
    (
        "gnu lesser general public license v3.0 only",
        "LGPL-3.0-only",
    ),
    (
        "gnu affero general public license v3.0 or later",
        "AGPL-3.0-or-later",
    ),
    (
        "gnu affero general public license v3.0 only",
        "AGPL-3.0-only",
    ),
    // A version and no more: "only" or "or later" left open (license rules read the
    // deprecated id as either).
    ("gnu general public license, version 2", "GPL-2.0"),
    ("gnu general public license v2.0", "GPL-2.0"),
    ("gnu general public license, version 3", "GPL-3.0"),
    ("gnu general public license v3.0", "GPL-3.0"),
    ("gnu lesser general public license, version 2.1", "LGPL-2.1"),
    ("gnu lesser general public license v2.1", "LGPL-2.1"),
    ("gnu lesser general public license, version 3", "LGPL-3.0"),
    ("gnu lesser general public license v3.0", "LGPL-3.0"),
    ("gnu affero general public license, version 3", "AGPL-3.0"),
    ("gnu affero general public license v3.0", "AGPL-3.0"),
    // The short names packages write (`License: GPLv3`, npm's `"license": "LGPLv3"`).
    ("gplv2", "GPL-2.0"),
    ("gpl v2", "GPL-2.0"),
    ("gplv2+", "GPL-2.0-or-later"),
    ("gplv3", "GPL-3.0"),
    ("gpl v3", "GPL-3.0"),
    ("gplv3+", "GPL-3.0-or-later"),
    ("lgplv2.1", "LGPL-2.1"),
    ("lgpl v2.1", "LGPL-2.1"),
    ("lgplv3", "LGPL-3.0"),
    ("lgpl v3", "LGPL-3.0"),
    ("lgplv3+", "LGPL-3.0-or-later"),
    ("agplv3", "AGPL-3.0"),
    ("agpl v3", "AGPL-3.0"),
    ("agplv3+", "AGPL-3.0-or-later"),
];

/// License URLs as projects write them in `<license><url>` (and OSGi `Bundle-License`),
/// without scheme, `www.`, a trailing `/` or a `.txt`/`.html`/`.php` ending, lower-cased.
const LICENSE_URLS: &[(&str, &str)] = &[
    ("apache.org/licenses/license-2.0", "Apache-2.0"),
    ("opensource.org/licenses/mit-license", "MIT"),
    ("opensource.org/licenses/bsd-license", "BSD-2-Clause"),
    ("eclipse.org/legal/epl-v10", "EPL-1.0"),
    ("eclipse.org/org/documents/epl-v10", "EPL-1.0"),
    ("eclipse.org/legal/epl-2.0", "EPL-2.0"),
    ("eclipse.org/legal/epl-v20", "EPL-2.0"),
    ("eclipse.org/org/documents/edl-v10", "BSD-3-Clause"),
    ("mozilla.org/mpl/2.0", "MPL-2.0"),
    ("mozilla.org/mpl/mpl-1.1", "MPL-1.1"),
    ("creativecommons.org/publicdomain/zero/1.0", "CC0-1.0"),
    (
        "creativecommons.org/publicdomain/zero/1.0/legalcode",
        "CC0-1.0",
    ),
    ("unlicense.org", "Unlicense"),
    ("oss.oracle.com/licenses/upl", "UPL-1.0"),
    // The GNU licenses' pages name a version, "only" or "or later" left open.
    ("gnu.org/licenses/old-licenses/gpl-2.0", "GPL-2.0"),
    ("gnu.org/licenses/gpl-2.0", "GPL-2.0"),
    ("gnu.org/licenses/gpl-3.0", "GPL-3.0"),
    ("gnu.org/licenses/old-licenses/lgpl-2.0", "LGPL-2.0"),
    ("gnu.org/licenses/old-licenses/lgpl-2.1", "LGPL-2.1"),
    ("gnu.org/licenses/lgpl-2.1", "LGPL-2.1"),
    ("gnu.org/licenses/lgpl-3.0", "LGPL-3.0"),
    ("gnu.org/licenses/agpl-3.0", "AGPL-3.0"),
];

fn normal_name(name: &str) -> String {
    let lower = name.split_whitespace().collect::<Vec<_>>().join(" ");
    let lower = lower.to_ascii_lowercase();
    lower
        .strip_prefix("the ")
        .unwrap_or(&lower)
        .trim_end_matches(['.', ','])
        .to_string()
}

/// A license name that is an SPDX license id (or the name of one in the table above).
/// Of the deprecated ids only the GNU ones that leave "only" or "or later" open (`GPL-3.0`,
/// which license rules read as either) and their `+` forms (`GPL-2.0+`, read as
/// `GPL-2.0-or-later`); the others were replaced by ids that say something else.
fn license_by_name(name: &str) -> Option<String> {
    let name = name.trim();
    if let Some(id) = listed_ignoring_case(name) {
        if spdx::license_id(id).is_some_and(|l| !l.is_deprecated()) || GNU_OPEN_IDS.contains(&id) {
            return Some(id.to_string());
        }
        if let Some(open) = id.strip_suffix('+').filter(|v| GNU_OPEN_IDS.contains(v)) {
            return Some(format!("{open}-or-later"));
        }
    }
    let normal = normal_name(name);
    LICENSE_NAMES
        .iter()
        .find(|(n, _)| *n == normal)
        .map(|(_, id)| id.to_string())
}

/// A license URL of the table above, or a page of the SPDX or OSI list naming one id
/// (`spdx.org/licenses/MIT.html`, `opensource.org/licenses/Apache-2.0`).
fn license_by_url(url: &str) -> Option<String> {
    let url = url.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let rest = rest
        .strip_prefix("www.")
        .unwrap_or(rest)
        .trim_end_matches('/');
    let rest = [".txt", ".html", ".htm", ".php"]
        .iter()
        .find_map(|ext| rest.strip_suffix(ext))
        .unwrap_or(rest);
    let lower = rest.to_ascii_lowercase();
    if let Some((_, id)) = LICENSE_URLS.iter().find(|(u, _)| *u == lower) {
        return Some(id.to_string());
    }
    [
        "spdx.org/licenses/",
        "opensource.org/licenses/",
        "opensource.org/license/",
    ]
    .iter()
    .find_map(|page| lower.strip_prefix(page))
    .and_then(listed_ignoring_case)
    .map(str::to_string)
}

/// One Maven `<license>`: its `<name>` or its `<url>` naming one license; when both name
/// one, they must agree.
pub fn maven_license(name: &str, url: &str) -> Option<String> {
    match (license_by_name(name), license_by_url(url)) {
        // A GNU license's page names its version only: the name may say "or later".
        (Some(a), Some(b)) => {
            let version = a
                .strip_suffix("-only")
                .or_else(|| a.strip_suffix("-or-later"));
            (a == b || version == Some(b.as_str())).then_some(a)
        }
        (a, b) => a.or(b),
    }
}

/// Several licenses a package lists, as one expression: a choice, as the POM reference
/// says of Maven's `<licenses>` ("the user can select any of them"), npm, RubyGems and
/// Composer of theirs. Every one must be known; the same license listed twice counts once.
fn choice(licenses: Vec<Option<String>>) -> Option<String> {
    let mut ids: Vec<String> = Vec::new();
    for license in licenses {
        let id = license?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    match ids.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        many => {
            let expression = many.join(" OR ");
            bounded(&stellaops_policy::license::parse(&expression).ok()?.render())
        }
    }
}

/// XML character data with the predefined entities and character references replaced;
/// any other entity reference makes it unreadable (`None`).
fn xml_text(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(';')? + at;
        let entity = &rest[at + 1..end];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()?
                } else {
                    entity.strip_prefix('#')?.parse().ok()?
                };
                char::from_u32(code)?
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Largest POM read for its licenses.
pub const MAX_POM: usize = 1 << 20;

/// Parent POMs whose license every module inherits, as each declares it (`groupId`,
/// `artifactId`, SPDX id), for the jars whose own POM lists none.
const KNOWN_PARENTS: &[(&str, &str, &str)] = &[
    // The ASF's own parents, also of its projects in groups of their own (`commons-io`).
    ("org.apache", "apache", "Apache-2.0"),
    ("org.apache.commons", "commons-parent", "Apache-2.0"),
    ("org.slf4j", "slf4j-parent", "MIT"),
    ("io.netty", "netty-parent", "Apache-2.0"),
    ("com.google.guava", "guava-parent", "Apache-2.0"),
];

/// A Maven `pom.xml` (as a jar carries it under `META-INF/maven/<group>/<artifact>/`):
/// the licenses `<project><licenses>` lists, several as a choice ([`choice`]). When it
/// lists none (a parent POM holds them, which the jar does not carry): the license of a
/// known parent ([`KNOWN_PARENTS`]), or Apache-2.0 for a project of the Apache Software
/// Foundation (its group, or the parent's it inherits, `org.apache` or under it: the ASF
/// releases under the Apache License 2.0 only, and that namespace on Maven Central is
/// its). One that names no license this can tell (`${…}` properties, unknown names), any
/// other parent, or XML that does not parse: not known.
pub fn maven_pom(xml: &str) -> Option<String> {
    use xmlparser::{ElementEnd, Token, Tokenizer};
    if xml.len() > MAX_POM {
        return None;
    }
    let mut path: Vec<&str> = Vec::new();
    let mut licenses: Vec<Option<String>> = Vec::new();
    let mut lists_licenses = false;
    let (mut name, mut url) = (String::new(), String::new());
    let (mut group, mut parent_group, mut parent_artifact) =
        (String::new(), String::new(), String::new());
    for token in Tokenizer::from(xml) {
        let (text, cdata) = match token.ok()? {
            Token::ElementStart { local, .. } => {
                path.push(local.as_str());
                if path.len() > 64 {
                    return None;
                }
                lists_licenses |= path == ["project", "licenses"];
                continue;
            }
            Token::ElementEnd { end, .. } => {
                let closed = match end {
                    ElementEnd::Open => continue,
                    ElementEnd::Empty => path.pop()?,
                    // A tokenizer, not a parser: the tags' nesting is checked here.
                    ElementEnd::Close(_, local) => {
                        let open = path.pop()?;
                        if open != local.as_str() {
                            return None;
                        }
                        open
                    }
                };
                if closed == "license" && path == ["project", "licenses"] {
                    licenses.push(maven_license(&name, &url));
                    name.clear();
                    url.clear();
                }
                continue;
            }
            Token::Text { text } => (text, false),
            Token::Cdata { text, .. } => (text, true),
            _ => continue,
        };
        let field = match path.as_slice() {
            ["project", "licenses", "license", "name"] => &mut name,
            ["project", "licenses", "license", "url"] => &mut url,
            ["project", "groupId"] => &mut group,
            ["project", "parent", "groupId"] => &mut parent_group,
            ["project", "parent", "artifactId"] => &mut parent_artifact,
            _ => continue,
        };
        if cdata {
            field.push_str(text.as_str());
        } else {
            field.push_str(&xml_text(text.as_str())?);
        }
    }
    if lists_licenses {
        return choice(licenses);
    }
    let (parent_group, parent_artifact) = (parent_group.trim(), parent_artifact.trim());
    if let Some((.., id)) = KNOWN_PARENTS
        .iter()
        .find(|(g, a, _)| *g == parent_group && *a == parent_artifact)
    {
        return Some(id.to_string());
    }
    // The group is the parent's unless the POM sets its own.
    let group = match group.trim() {
        "" => parent_group,
        own => own,
    };
    (group == "org.apache" || group.starts_with("org.apache.")).then(|| "Apache-2.0".to_string())
}

/// An attribute of a jar manifest's main section (names compared without case; a line
/// starting with one space continues the one before, as lines hold at most 72 bytes).
pub fn manifest_attribute(manifest: &str, name: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for line in manifest.lines() {
        if line.is_empty() {
            break; // the end of the main section
        }
        if let Some(more) = line.strip_prefix(' ') {
            if let Some(v) = value.as_mut() {
                v.push_str(more);
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some((key, v)) = line.split_once(':')
            && key.eq_ignore_ascii_case(name)
        {
            value = Some(v.trim_start().to_string());
        }
    }
    value
}

/// A jar's `META-INF/MANIFEST.MF`: the OSGi `Bundle-License` of its main section — SPDX
/// ids or license URLs, each clause's `link` attribute read when its name is neither;
/// several clauses as a choice. `<<EXTERNAL>>` or anything not read: not known.
pub fn bundle_license(manifest: &str) -> Option<String> {
    if manifest.len() > MAX_POM {
        return None;
    }
    let value = manifest_attribute(manifest, "Bundle-License");
    let value = value?;
    let value = value.trim();
    if value.is_empty() || value == "<<EXTERNAL>>" || value.len() > MAX_DECLARED {
        return None;
    }
    // One SPDX expression of listed ids, as the OSGi specification now recommends.
    if let Ok(expr) = stellaops_policy::license::parse(value)
        && expr.ids().iter().all(|id| listed(id))
        && expr.exceptions().iter().all(|e| listed_exception(e))
    {
        return Some(expr.render());
    }
    let mut licenses = Vec::new();
    for clause in split_outside_quotes(value, ',') {
        let mut parts = split_outside_quotes(clause, ';').into_iter();
        let name = parts.next().unwrap_or_default().trim();
        let link = parts.find_map(|attr| {
            let (k, v) = attr.split_once('=')?;
            (k.trim() == "link").then(|| v.trim().trim_matches('"').to_string())
        });
        licenses.push(
            license_by_name(name)
                .or_else(|| license_by_url(name))
                .or_else(|| link.as_deref().and_then(license_by_url)),
        );
    }
    choice(licenses)
}

/// `text` split at each `sep` that is not inside double quotes.
fn split_outside_quotes(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut start) = (false, 0);
    for (i, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Largest license file read.
pub const MAX_LICENSE_FILE: usize = 1 << 20;

/// A text as the license matcher compares it: runs of ASCII letters and digits,
/// lower-cased, `https` read as `http` and each varietal spelling SPDX's matching guidelines
/// make equal read as one ([`equivalent_word`], [`joined_words`]); punctuation, layout,
/// quotes and bullets are gone.
fn license_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_ascii_lowercase();
        let word = equivalent_word(&word).map_or(word, str::to_string);
        if let Some(previous) = words.last_mut()
            && let Some(joined) = joined_words(previous, &word)
        {
            *previous = joined.to_string();
            continue;
        }
        if word == "owner" && words.last().is_some_and(|w| w == "copyright") {
            words.push("holder".to_string());
            continue;
        }
        words.push(word);
    }
    words
}

/// The spelling a varietal word is read as: SPDX's list of equivalent words (the
/// license-list-XML `equivalentwords.txt` the matching guidelines name), each read as its
/// first form; `https` as `http`.
fn equivalent_word(word: &str) -> Option<&'static str> {
    Some(match word {
        "https" => "http",
        "acknowledgment" => "acknowledgement",
        "analogue" => "analog",
        "analyse" => "analyze",
        "artefact" => "artifact",
        "authorisation" => "authorization",
        "authorised" => "authorized",
        "calibre" => "caliber",
        "cancelled" => "canceled",
        "capitalisations" => "capitalizations",
        "catalogue" => "catalog",
        "categorise" => "categorize",
        "centre" => "center",
        "emphasised" => "emphasized",
        "favour" => "favor",
        "favourite" => "favorite",
        "fulfil" => "fulfill",
        "fulfilment" => "fulfillment",
        "initialise" => "initialize",
        "judgment" => "judgement",
        "labelling" => "labeling",
        "labour" => "labor",
        "licence" => "license",
        "maximise" => "maximize",
        "modelled" => "modeled",
        "modelling" => "modeling",
        "offence" => "offense",
        "optimise" => "optimize",
        "organisation" => "organization",
        "organise" => "organize",
        "practise" => "practice",
        "programme" => "program",
        "realise" => "realize",
        "recognise" => "recognize",
        "signalling" => "signaling",
        "utilisation" => "utilization",
        "whilst" => "while",
        "wilful" => "wilfull",
        _ => return None,
    })
}

/// The one word two words are read as (SPDX's equivalents written apart or hyphenated:
/// `sub-license`, `non-commercial`, `per cent`); `copyright owner` is read as `copyright
/// holder` by [`license_words`].
fn joined_words(previous: &str, word: &str) -> Option<&'static str> {
    match (previous, word) {
        ("sub", "license") => Some("sublicense"),
        ("non", "commercial") => Some("noncommercial"),
        ("per", "cent") => Some("percent"),
        _ => None,
    }
}

/// A license file (`LICENSE`, `META-INF/LICENSE.txt`): the licenses whose whole terms it
/// holds word for word (after [`license_words`]), several as all applying (`AND`: a file
/// that adds the license of bundled code to the project's own). What lies outside the
/// known texts may only be titles and copyright notices: a stretch there that states terms
/// of its own ([`TERMS_WORDS`]: a governing-law clause, an export notice, a license not
/// known) makes the whole file not known, as does a text changed in any word. Exact, not a
/// likeness score: a wrong license is worse than none.
pub fn license_file(text: &str) -> Option<String> {
    if text.len() > MAX_LICENSE_FILE {
        return None;
    }
    let words = license_words(text);
    let mut ids: Vec<&str> = Vec::new();
    let mut covered: Vec<(usize, usize)> = Vec::new();
    for template in KNOWN_TEMPLATES.iter().chain(GNU_LICENSES) {
        let spans = template.spans_in(&words);
        if !spans.is_empty() && !ids.contains(&template.id) {
            ids.push(template.id);
        }
        covered.extend(spans);
    }
    if ids.is_empty() {
        return None;
    }
    // A license's own notices and appendix cover words only beside its terms.
    for notice in APACHE_NOTICES.iter().chain(GNU_NOTICES) {
        if ids.contains(&notice.id) {
            covered.extend(notice.spans_in(&words));
        }
    }
    // The LGPL-3.0 is the GPL-3.0's terms with additional permissions, and asks to be
    // given with its text: the two together are the LGPL-3.0 alone.
    if ids.contains(&"LGPL-3.0") {
        ids.retain(|id| *id != "GPL-3.0");
    }
    covered.sort_unstable();
    let mut at = 0;
    for (start, end) in covered.into_iter().chain([(words.len(), words.len())]) {
        if start > at
            && words[at..start]
                .iter()
                .any(|w| TERMS_WORDS.contains(&w.as_str()))
        {
            return None;
        }
        at = at.max(end);
    }
    all_apply(&ids)
}

/// The licenses [`license_file`] can find (each as the id it gives).
pub fn license_file_ids() -> std::collections::BTreeSet<&'static str> {
    KNOWN_TEMPLATES
        .iter()
        .chain(GNU_LICENSES)
        .map(|t| t.id)
        .collect()
}

/// Words that state terms. Titles (`The MIT License (MIT)`, `Apache License Version 2.0,
/// January 2004`), copyright notices and "this product bundles …" lines hold none; the
/// additions that make a known text another license do (`This agreement shall be governed
/// …`, `EXPORT LAWS: this license adds no restrictions …`).
const TERMS_WORDS: &[&str] = &[
    "shall",
    "must",
    "agreement",
    "warranty",
    "warranties",
    "liable",
    "liability",
    "governed",
    "jurisdiction",
    "restrictions",
    "restricted",
    "permission",
    "granted",
    "obligation",
    "acknowledge",
    "redistribution",
    "redistributions",
    "royalty",
];

/// Apache's own additions around its terms, which state no other terms: the appendix on
/// how to apply it, and the notice it asks files to carry (`Licensed under the Apache
/// License, Version 2.0 … limitations under the License.`). They cover words of a license
/// file without naming a license of their own.
const APACHE_NOTICES: [KnownTemplate; 2] = [
    KnownTemplate {
        id: "Apache-2.0",
        parts: &[
            Part::Words("appendix how to apply the apache license to your work"),
            // The appendix with its notice is some 170 words.
            Part::Any(0, 400),
            Part::Words("limitations under the license"),
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "Apache-2.0",
        parts: &[
            Part::Words("licensed under the apache license version 2 0"),
            Part::Any(0, 400),
            Part::Words("limitations under the license"),
        ],
        not_followed_by: &[],
    },
];

/// A part of a [`KnownTemplate`].
#[derive(Clone, Copy)]
enum Part {
    /// These words, exactly.
    Words(&'static str),
    /// Between `min` and `max` words of any kind: a name the license leaves to fill in
    /// (the copyright holder, the organization), or a clause's number.
    Any(usize, usize),
    /// `words` words, from `first` to `last`, whose SHA-256 (joined by single spaces) is
    /// `sha256`: a long fixed stretch (the GNU licenses' terms) without writing it out.
    Hashed {
        first: &'static str,
        last: &'static str,
        words: usize,
        sha256: &'static str,
    },
}

/// A license's text, or a notice about one: fixed words (long stretches by their SHA-256)
/// with bounded gaps where the SPDX list's template has variable text (the BSD licenses
/// name the copyright holder in the disclaimer) or real copies differ. All of it must be
/// there, in order, with nothing else between; and what follows must not be one of the
/// additions that make it a relative with other terms (`BSD-3-Clause-LBNL`,
/// `BSD-2-Clause-Views`, …).
struct KnownTemplate {
    id: &'static str,
    parts: &'static [Part],
    /// Words that, right after the template's last word, make the text another license.
    not_followed_by: &'static [&'static str],
}

/// Longest name a template's gap takes.
const MAX_NAME_WORDS: usize = 24;

const BSD_OPENING: Part = Part::Words(
    "redistribution and use in source and binary forms with or without modification are permitted provided that the following conditions are met",
);
const BSD_CLAUSE_SOURCE: Part = Part::Words(
    "redistributions of source code must retain the above copyright notice this list of conditions and the following disclaimer",
);
const BSD_CLAUSE_BINARY: Part = Part::Words(
    "redistributions in binary form must reproduce the above copyright notice this list of conditions and the following disclaimer in the documentation and or other materials provided with the distribution",
);
const BSD_DISCLAIMER: [Part; 5] = [
    Part::Words("this software is provided by"),
    Part::Any(1, MAX_NAME_WORDS),
    Part::Words(
        "as is and any express or implied warranties including but not limited to the implied warranties of merchantability and fitness for a particular purpose are disclaimed in no event shall",
    ),
    Part::Any(1, MAX_NAME_WORDS),
    Part::Words(
        "be liable for any direct indirect incidental special exemplary or consequential damages including but not limited to procurement of substitute goods or services loss of use data or profits or business interruption however caused and on any theory of liability whether in contract strict liability or tort including negligence or otherwise arising in any way out of the use of this software even if advised of the possibility of such damage",
    ),
];
/// ISC's (and 0BSD's) disclaimer: `THE`/`THIS SOFTWARE IS PROVIDED "AS IS" AND <name>
/// DISCLAIMS … IN NO EVENT SHALL <name> BE LIABLE …`.
const ISC_DISCLAIMER: [Part; 6] = [
    Part::Any(1, 1),
    Part::Words("software is provided as is and"),
    Part::Any(1, MAX_NAME_WORDS),
    Part::Words(
        "disclaims all warranties with regard to this software including all implied warranties of merchantability and fitness in no event shall",
    ),
    Part::Any(1, MAX_NAME_WORDS),
    Part::Words(
        "be liable for any special direct indirect or consequential damages or any damages whatsoever resulting from loss of use data or profits whether in an action of contract negligence or other tortious action arising out of or in connection with the use or performance of this software",
    ),
];
/// The end of MIT's (and the Unlicense's) disclaimer.
const MIT_LIABILITY: Part = Part::Words(
    "be liable for any claim damages or other liability whether in an action of contract tort or otherwise arising from out of or in connection with the software or the use or other dealings in the software",
);
/// The EPLs' title and first words; the version (`- v 1.0`, `v2.0`, `version 2.0`) is
/// told apart by the terms after them.
const EPL_OPENING: [Part; 3] = [
    Part::Words("eclipse public license"),
    Part::Any(2, 3),
    Part::Words("the accompanying program is provided under"),
];
/// Clause numbers (`1.`, `(a)`, `*` leaves none).
const BULLET: Part = Part::Any(0, 2);
/// The additions after the disclaimer of the SPDX list's BSD relatives.
const BSD_ADDITIONS: &[&str] = &[
    // BSD-2-Clause-Views, -FreeBSD
    "the views and conclusions contained in the software",
    // BSD-3-Clause-LBNL
    "you are under no obligation whatsoever",
    // BSD-3-Clause-No-Nuclear-*, -No-Military-License
    "you acknowledge that this software",
];

const KNOWN_TEMPLATES: &[KnownTemplate] = &[
    // Long texts that name no one, by the SHA-256 of their terms (Apache's through section
    // 9, as some copies — requests' — end there without the end line; not its appendix,
    // which holds names), so that every copy has the same hash. Computed from the SPDX
    // list's texts; Debian's `common-licenses` give the same (both checked in the tests).
    KnownTemplate {
        id: "Apache-2.0",
        parts: &[
            Part::Words("terms and conditions for use reproduction and distribution"),
            Part::Hashed {
                first: "1 definitions license shall mean the",
                last: "any such warranty or additional liability",
                words: 1406,
                sha256: "9dbe4591840ade1e884dd13b226aeca0b0bdedac3851e4921d30a1b2decee0eb",
            },
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "MPL-2.0",
        parts: &[
            Part::Words("mozilla public license version 2 0"),
            Part::Hashed {
                first: "1 definitions 1 1 contributor means",
                last: "defined by the mozilla public license v 2 0",
                words: 2420,
                sha256: "a3050735d7c4bcfeb041024cd8cef4538eefab15ea5d750024f8027bc1fc5233",
            },
        ],
        not_followed_by: &[],
    },
    // ISC names the author in its disclaimer (`THE AUTHOR`, `ISC`), and older copies
    // grant "modify, and distribute" without "/or".
    KnownTemplate {
        id: "ISC",
        parts: &[
            Part::Words("permission to use copy modify and"),
            Part::Any(0, 1),
            Part::Words(
                "distribute this software for any purpose with or without fee is hereby granted provided that the above copyright notice and this permission notice appear in all copies",
            ),
            ISC_DISCLAIMER[0],
            ISC_DISCLAIMER[1],
            ISC_DISCLAIMER[2],
            ISC_DISCLAIMER[3],
            ISC_DISCLAIMER[4],
            ISC_DISCLAIMER[5],
        ],
        not_followed_by: &[],
    },
    // ISC without its one condition.
    KnownTemplate {
        id: "0BSD",
        parts: &[
            Part::Words(
                "permission to use copy modify and or distribute this software for any purpose with or without fee is hereby granted",
            ),
            ISC_DISCLAIMER[0],
            ISC_DISCLAIMER[1],
            ISC_DISCLAIMER[2],
            ISC_DISCLAIMER[3],
            ISC_DISCLAIMER[4],
            ISC_DISCLAIMER[5],
        ],
        not_followed_by: &[],
    },
    // MIT names the authors or holders in its disclaimer in some copies (`IN NO EVENT
    // SHALL JOYENT BE LIABLE`).
    KnownTemplate {
        id: "MIT",
        parts: &[
            Part::Words(
                "permission is hereby granted free of charge to any person obtaining a copy of this software and associated documentation files the software to deal in the software without restriction including without limitation the rights to use copy modify merge publish distribute sublicense and or sell copies of the software and to permit persons to whom the software is furnished to do so subject to the following conditions the above copyright notice and this permission notice shall be included in all copies or substantial portions of the software the software is provided as is without warranty of any kind express or implied including but not limited to the warranties of merchantability fitness for a particular purpose and noninfringement in no event shall",
            ),
            Part::Any(1, MAX_NAME_WORDS),
            MIT_LIABILITY,
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "Unlicense",
        parts: &[
            Part::Words(
                "this is free and unencumbered software released into the public domain anyone is free to copy modify publish use compile sell or distribute this software either in source code form or as a compiled binary for any purpose commercial or noncommercial and by any means in jurisdictions that recognize copyright laws the author or authors of this software dedicate any and all copyright interest in the software to the public domain we make this dedication for the benefit of the public at large and to the detriment of our heirs and successors we intend this dedication to be an overt act of relinquishment in perpetuity of all present and future rights to this software under copyright law the software is provided as is without warranty of any kind express or implied including but not limited to the warranties of merchantability fitness for a particular purpose and noninfringement in no event shall the authors",
            ),
            MIT_LIABILITY,
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "Zlib",
        parts: &[
            Part::Words(
                "this software is provided as is without any express or implied warranty in no event will the authors be held liable for any damages arising from the use of this software permission is granted to anyone to use this software for any purpose including commercial applications and to alter it and redistribute it freely subject to the following restrictions",
            ),
            BULLET,
            Part::Words(
                "the origin of this software must not be misrepresented you must not claim that you wrote the original software if you use this software in a product an acknowledgement in the product documentation would be appreciated but is not required",
            ),
            BULLET,
            Part::Words(
                "altered source versions must be plainly marked as such and must not be misrepresented as being the original software",
            ),
            BULLET,
            Part::Words("this notice may not be removed or altered from any source distribution"),
        ],
        not_followed_by: &[],
    },
    // Apache's notice alone (a project's `LICENSE` that only points at the license):
    // "Licensed under the Apache License, Version 2.0 … limitations under the License."
    // word for word — it names one license as plainly as a `License: Apache-2.0` field.
    KnownTemplate {
        id: "Apache-2.0",
        parts: &[
            Part::Words(
                "licensed under the apache license version 2 0 the license you may not use this file except in compliance with the license you may obtain a copy of the license at",
            ),
            // The license's address (`http://www.apache.org/licenses/LICENSE-2.0`, with
            // `https` or `.txt`).
            Part::Any(4, 10),
            Part::Words(
                "unless required by applicable law or agreed to in writing software distributed under the license is distributed on an as is basis without warranties or conditions of any kind either express or implied see the license for the specific language governing permissions and limitations under the license",
            ),
        ],
        not_followed_by: &[],
    },
    // MIT without its condition (the notice need not be kept).
    KnownTemplate {
        id: "MIT-0",
        parts: &[
            Part::Words(
                "permission is hereby granted free of charge to any person obtaining a copy of this software and associated documentation files the software to deal in the software without restriction including without limitation the rights to use copy modify merge publish distribute sublicense and or sell copies of the software and to permit persons to whom the software is furnished to do so the software is provided as is without warranty of any kind express or implied including but not limited to the warranties of merchantability fitness for a particular purpose and noninfringement in no event shall",
            ),
            Part::Any(1, MAX_NAME_WORDS),
            MIT_LIABILITY,
        ],
        not_followed_by: &[],
    },
    // Long texts without names, whole (the SPDX list's copies, which Debian's
    // `common-licenses` and the copies projects ship repeat word for word).
    KnownTemplate {
        id: "CC0-1.0",
        parts: &[
            Part::Words(
                "creative commons legal code cc0 1 0 universal creative commons corporation is",
            ),
            Part::Hashed {
                first: "not a law firm and does",
                last: "cc0 or use of the work",
                words: 1076,
                sha256: "2fb5cdd5629f04aa241c910f961256ab87337acdbb3475d2f9ded782846e9b39",
            },
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "EPL-1.0",
        parts: &[
            EPL_OPENING[0],
            EPL_OPENING[1],
            EPL_OPENING[2],
            Part::Hashed {
                first: "the terms of this eclipse public",
                last: "jury trial in any resulting litigation",
                words: 1706,
                sha256: "7f1b1e0303ec4e2d785f12da31613bb0b5a46104e81b05c3809f1c0814306e10",
            },
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "EPL-2.0",
        parts: &[
            EPL_OPENING[0],
            EPL_OPENING[1],
            EPL_OPENING[2],
            Part::Hashed {
                first: "the terms of this eclipse public",
                last: "additional accurate notices of copyright ownership",
                words: 2149,
                sha256: "a67bd009c210f305e0775f29afdfab2c3d8186bfb68cab9cbab1f7137675aec8",
            },
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "BSL-1.0",
        parts: &[Part::Words(
            "permission is hereby granted free of charge to any person or organization obtaining a copy of the software and accompanying documentation covered by this license the software to use reproduce display distribute execute and transmit the software and to prepare derivative works of the software and to permit third parties to whom the software is furnished to do so all subject to the following the copyright notices in the software and this entire statement including the above license grant this restriction and the following disclaimer must be included in all copies of the software in whole or in part and all derivative works of the software unless such copies or derivative works are solely in the form of machine executable object code generated by a source language processor the software is provided as is without warranty of any kind express or implied including but not limited to the warranties of merchantability fitness for a particular purpose title and non infringement in no event shall the copyright holders or anyone distributing the software be liable for any damages or other liability whether in contract tort or otherwise arising from out of or in connection with the software or the use or other dealings in the software",
        )],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "BSD-2-Clause",
        parts: &[
            BSD_OPENING,
            BULLET,
            BSD_CLAUSE_SOURCE,
            BULLET,
            BSD_CLAUSE_BINARY,
            BSD_DISCLAIMER[0],
            BSD_DISCLAIMER[1],
            BSD_DISCLAIMER[2],
            BSD_DISCLAIMER[3],
            BSD_DISCLAIMER[4],
        ],
        not_followed_by: BSD_ADDITIONS,
    },
    KnownTemplate {
        id: "BSD-3-Clause",
        parts: &[
            BSD_OPENING,
            BULLET,
            BSD_CLAUSE_SOURCE,
            BULLET,
            BSD_CLAUSE_BINARY,
            BULLET,
            Part::Words("neither the name of"),
            Part::Any(1, MAX_NAME_WORDS),
            Part::Words(
                "nor the names of its contributors may be used to endorse or promote products derived from this software without specific prior written permission",
            ),
            BSD_DISCLAIMER[0],
            BSD_DISCLAIMER[1],
            BSD_DISCLAIMER[2],
            BSD_DISCLAIMER[3],
            BSD_DISCLAIMER[4],
        ],
        not_followed_by: BSD_ADDITIONS,
    },
];

/// The FSF's address, as copies of each age give it (`675 Mass Ave, Cambridge`, `59 Temple
/// Place - Suite 330`, `51 Franklin Street, Fifth Floor`, `51 Franklin St`).
const FSF_ADDRESS: Part = Part::Any(5, 12);
/// `(C)`, or nothing (copies of the version 3 licenses differ there).
const COPYRIGHT_SIGN: Part = Part::Any(0, 1);

/// The GNU licenses, by their whole text from the title to the end of the terms (the
/// version 3 LGPL has no end line: to its last words). Each is read as the version its text
/// is, with "only" or "or later" left open — the deprecated SPDX id (`GPL-2.0`), which the
/// policy's rules treat as either (`stellaops_policy::license`): a text does not say
/// whether later versions may be chosen; the program's notices do. The stretches between
/// the gaps are the same words in the SPDX list's texts, Debian's `common-licenses` and the
/// copies projects ship (pip packages' and crates' `LICENSE`/`COPYING`), checked in the
/// tests; the gaps are where those copies differ.
const GNU_LICENSES: &[KnownTemplate] = &[
    KnownTemplate {
        id: "GPL-2.0",
        parts: &[
            Part::Words(
                "gnu general public license version 2 june 1991 copyright c 1989 1991 free software foundation inc",
            ),
            FSF_ADDRESS,
            Part::Hashed {
                first: "everyone is permitted to copy and",
                last: "software is covered by the gnu",
                words: 103,
                sha256: "15a925190fe1f88f7632f7a5e3aa586beab142898f14998d3d3f95c9bab24376",
            },
            // The GNU `Lesser` (or, in older copies, `Library`) General Public License.
            Part::Any(1, 1),
            Part::Hashed {
                first: "general public license instead you can",
                last: "for copying distribution and modification follow",
                words: 351,
                sha256: "ed9e05d58c8e01a496d03ad019b6aee85f88e41bf08a7085304abb13268cd70d",
            },
            // The title repeated before the terms (not in the SPDX list's copy).
            Part::Any(0, 4),
            Part::Hashed {
                first: "terms and conditions for copying distribution",
                last: "damages end of terms and conditions",
                words: 2027,
                sha256: "d10503a91f71a9b7c7d5a2e52100e7b853c2f94548e4ec6f75f5a4159c9863cb",
            },
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "GPL-3.0",
        parts: &[
            Part::Words("gnu general public license version 3 29 june 2007 copyright"),
            COPYRIGHT_SIGN,
            Part::Hashed {
                first: "2007 free software foundation inc http",
                last: "fee end of terms and conditions",
                words: 5240,
                sha256: "893bf7ee04c98dc9d23b0606143879ab43a91317ae6ae6b1f963849011aec135",
            },
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "LGPL-2.0",
        parts: &[
            Part::Words(
                "gnu library general public license version 2 june 1991 copyright c 1991 free software foundation inc",
            ),
            FSF_ADDRESS,
            Part::Hashed {
                first: "everyone is permitted to copy and",
                last: "damages end of terms and conditions",
                words: 3846,
                sha256: "3e6e0ac69045283b7acea90cb19200ee5a8e6a793a54362c6bc3470670a60683",
            },
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "LGPL-2.1",
        parts: &[
            Part::Words(
                "gnu lesser general public license version 2 1 february 1999 copyright c 1991 1999 free software foundation inc",
            ),
            FSF_ADDRESS,
            Part::Hashed {
                first: "everyone is permitted to copy and",
                last: "damages end of terms and conditions",
                words: 4045,
                sha256: "7e58fdbadc2b3ee5c3f88789cc64143a111679f59445951560133293bf0a6bf5",
            },
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "LGPL-3.0",
        parts: &[
            Part::Words("gnu lesser general public license version 3 29 june 2007 copyright"),
            COPYRIGHT_SIGN,
            Part::Hashed {
                first: "2007 free software foundation inc http",
                last: "choose that version for the library",
                words: 1229,
                sha256: "f4ff3acc005bdcb1ddab99c165671daf053fd89645995e02fdb08a53df176d9c",
            },
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "AGPL-3.0",
        parts: &[
            Part::Words("gnu affero general public license version 3 19 november 2007 copyright"),
            COPYRIGHT_SIGN,
            Part::Hashed {
                first: "2007 free software foundation inc http",
                last: "fee end of terms and conditions",
                words: 5202,
                sha256: "bd968c619ea553f3c831a6c0d326a2990926d523e7a704071abc206b572403fb",
            },
        ],
        not_followed_by: &[],
    },
];

/// `<one line to give the program's name and a brief idea of what it does.> Copyright (C)
/// <year> <name of author>`: `a brief` or `an` idea, `year` or `yyyy`.
const BRIEF_IDEA: [Part; 3] = [
    Part::Any(1, 2),
    Part::Words("idea of what it does copyright c"),
    Part::Any(1, 1),
];

/// The LGPL 2.0's and 2.1's appendices begin and end alike ("How to Apply These Terms to
/// Your New Libraries" … "That's all there is to it!").
const LIBRARY_APPENDIX_OPENING: [Part; 2] = [
    Part::Words("how to apply these terms to your new libraries if you develop"),
    Part::Hashed {
        first: "a new library and you want",
        last: "give the library s name and",
        words: 111,
        sha256: "0da7885cf3d00d0ff70fc711b2111147f3be54c8ed5edd171fc719f4236337e7",
    },
];
const LIBRARY_APPENDIX_END: Part = Part::Hashed {
    first: "also add information on how to",
    last: "s all there is to it",
    words: 87,
    sha256: "aca352671917d6a8b028f44451d798214850e328f745302a230389c9c3db1cbc",
};

/// The GNU licenses' appendices ("How to Apply These Terms to Your New Programs"), which
/// follow the terms in most copies: a sample notice and instructions, no terms of their own.
const GNU_NOTICES: &[KnownTemplate] = &[
    KnownTemplate {
        id: "GPL-2.0",
        parts: &[
            Part::Words("how to apply these terms to your new programs if you develop"),
            Part::Hashed {
                first: "a new program and you want",
                last: "give the program s name and",
                words: 98,
                sha256: "eb966af51c4403c37d1ce92bbc09351932aa5dd317102ebbfdf99441007af518",
            },
            BRIEF_IDEA[0],
            BRIEF_IDEA[1],
            BRIEF_IDEA[2],
            Part::Hashed {
                first: "name of author this program is",
                last: "to the free software foundation inc",
                words: 108,
                sha256: "a9957ba45f6c89bd19963597e71311c4152d0c1d187e4b9997ba838157026ade",
            },
            FSF_ADDRESS,
            Part::Hashed {
                first: "also add information on how to",
                last: "1989 ty coon president of vice",
                words: 186,
                sha256: "8e41204dcf87bbf4ba32b59ae04764c13c5aa72e701b544cfc19c882fe5d41f9",
            },
        ],
        not_followed_by: &[],
    },
    // The GPL-2.0 appendix's last paragraph (not in the SPDX list's copy).
    KnownTemplate {
        id: "GPL-2.0",
        parts: &[
            Part::Words(
                "this general public license does not permit incorporating your program into proprietary programs if your program is a subroutine library you may consider it more useful to permit linking proprietary applications with the library if this is what you want to do use the gnu",
            ),
            // `Lesser` or `Library`.
            Part::Any(1, 1),
            Part::Words("general public license instead of this license"),
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "GPL-3.0",
        parts: &[
            Part::Words("how to apply these terms to your new programs if you develop"),
            Part::Hashed {
                first: "a new program and you want",
                last: "please read http www gnu org",
                words: 432,
                sha256: "a6a8e9ca9446970f00a7eca7903eea40e68b2e9fc869d2cf35e8d50ee25f44c3",
            },
            // `licenses/why-not-lgpl.html`, or `philosophy/…` in older copies.
            Part::Any(1, 1),
            Part::Words("why not lgpl html"),
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "LGPL-2.0",
        parts: &[
            LIBRARY_APPENDIX_OPENING[0],
            LIBRARY_APPENDIX_OPENING[1],
            BRIEF_IDEA[0],
            BRIEF_IDEA[1],
            BRIEF_IDEA[2],
            Part::Hashed {
                first: "name of author this library is",
                last: "to the free software foundation inc",
                words: 111,
                sha256: "2808cd5e4b10b349776794d55ce606ea4140aad1d9ddc6e844e7df8125fd01dd",
            },
            FSF_ADDRESS,
            LIBRARY_APPENDIX_END,
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "LGPL-2.1",
        parts: &[
            LIBRARY_APPENDIX_OPENING[0],
            LIBRARY_APPENDIX_OPENING[1],
            BRIEF_IDEA[0],
            BRIEF_IDEA[1],
            BRIEF_IDEA[2],
            Part::Hashed {
                first: "name of author this library is",
                last: "to the free software foundation inc",
                words: 112,
                sha256: "36ab2e1c8e3c37313b26cc977e1a1d2eee8cd1f9255a452974af5b60414bbd7a",
            },
            FSF_ADDRESS,
            LIBRARY_APPENDIX_END,
        ],
        not_followed_by: &[],
    },
    KnownTemplate {
        id: "AGPL-3.0",
        parts: &[
            Part::Words("how to apply these terms to your new programs if you develop"),
            Part::Hashed {
                first: "a new program and you want",
                last: "see http www gnu org licenses",
                words: 354,
                sha256: "8f52fec8c8c6fa5e46902459d8f4453003d3572cd2cf9d9614ae368898d4c246",
            },
        ],
        not_followed_by: &[],
    },
];

impl KnownTemplate {
    /// Where the words hold the template (start and end of each). The first part is
    /// tried at a bounded number of places (a crafted file repeating it costs no more).
    fn spans_in(&self, words: &[String]) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        let Some(Part::Words(first)) = self.parts.first() else {
            return spans;
        };
        let first: Vec<&str> = first.split(' ').collect();
        let mut tries = 0;
        let mut start = 0;
        while start < words.len() && tries < 16 {
            if !holds(words, start, &first) {
                start += 1;
                continue;
            }
            tries += 1;
            match self.matches_from(words, start + first.len(), &self.parts[1..]) {
                Some(end)
                    if !self.not_followed_by.iter().any(|addition| {
                        holds(words, end, &addition.split(' ').collect::<Vec<_>>())
                    }) =>
                {
                    spans.push((start, end));
                    start = end;
                }
                _ => start += 1,
            }
        }
        spans
    }

    /// Where the parts end when they match from `at` (a gap takes the fewest words that
    /// let the fixed words after it match: names never hold the license's own phrases).
    fn matches_from(&self, words: &[String], at: usize, parts: &[Part]) -> Option<usize> {
        match parts {
            [] => Some(at),
            [Part::Words(fixed), rest @ ..] => {
                let fixed: Vec<&str> = fixed.split(' ').collect();
                holds(words, at, &fixed)
                    .then(|| self.matches_from(words, at + fixed.len(), rest))
                    .flatten()
            }
            [Part::Any(min, max), rest @ ..] => {
                (*min..=*max).find_map(|gap| self.matches_from(words, at + gap, rest))
            }
            [
                Part::Hashed {
                    first,
                    last,
                    words: count,
                    sha256,
                },
                rest @ ..,
            ] => {
                use sha2::Digest;
                let first: Vec<&str> = first.split(' ').collect();
                let last: Vec<&str> = last.split(' ').collect();
                // The ends are compared first: hashing is the costly part.
                let span = words.get(at..at + count)?;
                let fits = holds(words, at, &first)
                    && holds(words, at + count - last.len(), &last)
                    && hex::encode(sha2::Sha256::digest(span.join(" ").as_bytes())) == *sha256;
                fits.then(|| self.matches_from(words, at + count, rest))
                    .flatten()
            }
        }
    }
}

/// Whether `phrase` stands in `words` at `at`.
fn holds(words: &[String], at: usize, phrase: &[&str]) -> bool {
    words
        .get(at..at + phrase.len())
        .is_some_and(|w| w.iter().zip(phrase).all(|(a, b)| a == b))
}

/// The SPDX license id equal to `name` but for ASCII case.
fn listed_ignoring_case(name: &str) -> Option<&'static str> {
    spdx::identifiers::LICENSES
        .iter()
        .map(|l| l.0)
        .find(|id| id.eq_ignore_ascii_case(name))
}

/// The SPDX exception id equal to `name` but for ASCII case.
fn exception_ignoring_case(name: &str) -> Option<&'static str> {
    spdx::identifiers::EXCEPTIONS
        .iter()
        .map(|e| e.0)
        .find(|id| id.eq_ignore_ascii_case(name))
}

/// Whether `id` is a license id of the SPDX license list.
pub fn listed(id: &str) -> bool {
    spdx::license_id(id).is_some()
}

/// Whether `id` is an exception id of the SPDX license list.
pub fn listed_exception(id: &str) -> bool {
    spdx::exception_id(id).is_some()
}

fn license_ref(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| match c {
            '+' => 'p',
            c if c.is_ascii_alphanumeric() || c == '.' || c == '-' => c,
            _ => '-',
        })
        .collect();
    format!("LicenseRef-{}", cleaned.trim_matches('-'))
}

/// A declared license as an SPDX 2.3 document writes it: the expression with each license
/// (or license `WITH` exception) that is not on the SPDX list written as a `LicenseRef-`,
/// and those references with the text each stands for (the document must declare them).
/// `None` when the declaration is not an SPDX expression.
pub fn spdx_document_form(
    declared: &stellaops_policy::license::Declared,
) -> Option<(String, Vec<(String, String)>)> {
    let expr = declared.expr()?;
    let refs = std::cell::RefCell::new(Vec::new());
    let text = expr.render_with(&|id, exception| {
        let whole = match exception {
            Some(e) => format!("{id} WITH {e}"),
            None => id.to_string(),
        };
        let fine =
            (listed(id) || id.starts_with("LicenseRef-")) && exception.is_none_or(listed_exception);
        if fine && !id.starts_with("LicenseRef-") {
            return whole;
        }
        let reference = if fine {
            id.to_string()
        } else {
            license_ref(&whole)
        };
        let mut refs = refs.borrow_mut();
        if !refs.iter().any(|(r, _): &(String, String)| *r == reference) {
            refs.push((reference.clone(), whole));
        }
        match (fine, exception) {
            (true, Some(e)) => format!("{reference} WITH {e}"),
            _ => reference,
        }
    });
    Some((text, refs.into_inner()))
}

/// A declared license as a CycloneDX 1.6 `licenses` array: one SPDX id as `license.id`,
/// an expression of listed ids (or `LicenseRef-`s) as `expression`, anything else as
/// `license.name` with the text as declared.
pub fn cyclonedx(declared: &stellaops_policy::license::Declared) -> Value {
    use stellaops_policy::license::Expr;
    let Some(expr) = declared.expr() else {
        return serde_json::json!([{"license": {"name": declared.expression}}]);
    };
    if let Expr::License {
        id,
        exception: None,
    } = &expr
        && listed(id)
    {
        return serde_json::json!([{"license": {"id": id}}]);
    }
    let all_fine = std::cell::Cell::new(true);
    expr.render_with(&|id, exception| {
        if !((listed(id) || id.starts_with("LicenseRef-"))
            && exception.is_none_or(listed_exception))
        {
            all_fine.set(false);
        }
        String::new()
    });
    if all_fine.get() {
        serde_json::json!([{"expression": declared.expression}])
    } else {
        serde_json::json!([{"license": {"name": declared.expression}}])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maven_poms() {
        let pom = |licenses: &str| {
            format!(
                "<?xml version=\"1.0\"?>\n<project xmlns=\"http://maven.apache.org/POM/4.0.0\"><modelVersion>4.0.0</modelVersion><name>x</name>{licenses}<profiles><profile><licenses><license><name>GPL</name></license></licenses></profile></profiles></project>"
            )
        };
        let one = |name: &str, url: &str| {
            format!(
                "<license>\n  <name>{name}</name>\n  <url>{url}</url>\n  <distribution>repo</distribution>\n</license>"
            )
        };
        let of = |licenses: &[String]| {
            maven_pom(&pom(&format!("<licenses>{}</licenses>", licenses.concat())))
        };
        // Name and URL as jackson writes them; a URL alone; a name alone; an SPDX id as name.
        assert_eq!(
            of(&[one(
                "The Apache Software License, Version 2.0",
                "https://www.apache.org/licenses/LICENSE-2.0.txt"
            )])
            .as_deref(),
            Some("Apache-2.0")
        );
        assert_eq!(
            of(&[one(
                "Apache Software Licenses",
                "http://www.apache.org/licenses/LICENSE-2.0.txt"
            )])
            .as_deref(),
            Some("Apache-2.0")
        );
        assert_eq!(of(&[one("MIT License", "")]).as_deref(), Some("MIT"));
        assert_eq!(of(&[one("epl-2.0", "")]).as_deref(), Some("EPL-2.0"));
        assert_eq!(
            of(&[one(
                "Whatever",
                "https://spdx.org/licenses/BSD-3-Clause.html"
            )])
            .as_deref(),
            Some("BSD-3-Clause")
        );
        // Several: a choice; the same one twice counts once.
        assert_eq!(
            of(&[
                one(
                    "Eclipse Public License - v 2.0",
                    "https://www.eclipse.org/legal/epl-2.0/"
                ),
                one("MIT", "")
            ])
            .as_deref(),
            Some("EPL-2.0 OR MIT")
        );
        assert_eq!(
            of(&[one("Apache 2.0", ""), one("ASL 2.0", "")]).as_deref(),
            Some("Apache-2.0")
        );
        // A GNU license by its page: the version, "or later" left open; a name that says
        // "or later" agrees with the page of its version.
        assert_eq!(
            of(&[
                one("Eclipse Public License - v 1.0", ""),
                one(
                    "GNU Lesser General Public License",
                    "http://www.gnu.org/licenses/old-licenses/lgpl-2.1.html"
                )
            ])
            .as_deref(),
            Some("EPL-1.0 OR LGPL-2.1")
        );
        assert_eq!(
            of(&[one(
                "GNU Lesser General Public License v2.1 or later",
                "https://www.gnu.org/licenses/old-licenses/lgpl-2.1.html"
            )])
            .as_deref(),
            Some("LGPL-2.1-or-later")
        );
        assert_eq!(
            of(&[one(
                "GNU General Public License, version 2",
                "https://www.gnu.org/licenses/gpl-3.0.html"
            )]),
            None
        );
        // Not known: an unversioned GNU license in the choice, a property, a name and URL
        // that disagree, no licenses, an unknown entity, XML that does not parse.
        assert_eq!(
            of(&[
                one("Eclipse Public License - v 1.0", ""),
                one("GNU Lesser General Public License", "")
            ]),
            None
        );
        assert_eq!(of(&[one("${license.name}", "")]), None);
        assert_eq!(
            of(&[one(
                "MIT License",
                "https://www.apache.org/licenses/LICENSE-2.0"
            )]),
            None
        );
        assert_eq!(maven_pom(&pom("")), None);
        assert_eq!(of(&[one("MIT&foo;", "")]), None);
        assert_eq!(
            maven_pom("<project><licenses><license><name>MIT</name></licenses></project>"),
            None
        );
        // No licenses listed: a known parent's, or the ASF's for its own groups; another
        // parent, or licenses listed but not known, say nothing.
        let child = |group: &str, parent: (&str, &str), licenses: &str| {
            maven_pom(&format!(
                "<project><parent><groupId>{}</groupId><artifactId>{}</artifactId><version>1</version></parent>{group}<artifactId>x</artifactId>{licenses}</project>",
                parent.0, parent.1
            ))
        };
        assert_eq!(
            child("", ("org.slf4j", "slf4j-parent"), "").as_deref(),
            Some("MIT")
        );
        assert_eq!(
            child(
                "<groupId>commons-io</groupId>",
                ("org.apache.commons", "commons-parent"),
                ""
            )
            .as_deref(),
            Some("Apache-2.0")
        );
        // log4j-api: its group is its parent's, under org.apache.
        assert_eq!(
            child("", ("org.apache.logging.log4j", "log4j"), "").as_deref(),
            Some("Apache-2.0")
        );
        // Its own group outside org.apache under an ASF parent it does not name as known.
        assert_eq!(
            child(
                "<groupId>com.example</groupId>",
                ("org.apache.logging.log4j", "log4j"),
                ""
            ),
            None
        );
        assert_eq!(child("", ("com.example", "parent"), ""), None);
        assert_eq!(
            child(
                "",
                ("org.slf4j", "slf4j-parent"),
                "<licenses><license><name>Custom</name></license></licenses>"
            ),
            None
        );
        // Jakarta EE's pair: EPL-2.0 or the GPL 2 with the Classpath exception.
        assert_eq!(
            of(&[
                one("EPL 2.0", "http://www.eclipse.org/legal/epl-2.0"),
                one(
                    "GPL2 w/ CPE",
                    "https://www.gnu.org/software/classpath/license.html"
                )
            ])
            .as_deref(),
            Some("EPL-2.0 OR GPL-2.0 WITH Classpath-exception-2.0")
        );
        // Entities and CDATA are read as text.
        assert_eq!(
            of(&[one("Eclipse Distribution License &#45; v 1.0", "")]).as_deref(),
            Some("BSD-3-Clause")
        );
        assert_eq!(
            of(&[one("<![CDATA[MIT License]]>", "")]).as_deref(),
            Some("MIT")
        );
    }

    #[test]
    fn bundle_licenses() {
        let manifest = |value: &str| {
            format!(
                "Manifest-Version: 1.0\r\nBundle-License: {value}\r\nBundle-Name: x\r\n\r\nName: other\r\nBundle-License: MIT\r\n"
            )
        };
        // A URL folded at 72 bytes, as the jar tool writes it.
        assert_eq!(
            bundle_license("Manifest-Version: 1.0\r\nBundle-License: https://www.apache.org/licenses/LICENSE-2.0.tx\r\n t\r\n").as_deref(),
            Some("Apache-2.0")
        );
        assert_eq!(
            bundle_license(&manifest("Apache-2.0 OR MIT")).as_deref(),
            Some("Apache-2.0 OR MIT")
        );
        assert_eq!(
            bundle_license(&manifest(
                "\"Eclipse Public License, v2.0\";link=\"https://www.eclipse.org/legal/epl-2.0/\""
            ))
            .as_deref(),
            Some("EPL-2.0")
        );
        assert_eq!(
            bundle_license(&manifest(
                "http://opensource.org/licenses/MIT, https://www.apache.org/licenses/LICENSE-2.0"
            ))
            .as_deref(),
            Some("MIT OR Apache-2.0")
        );
        assert_eq!(
            bundle_license(&manifest("GPL-2.0-only WITH Classpath-exception-2.0")).as_deref(),
            Some("GPL-2.0-only WITH Classpath-exception-2.0")
        );
        assert_eq!(
            bundle_license(&manifest("MIT WITH Made-Up-exception")),
            None
        );
        assert_eq!(bundle_license(&manifest("<<EXTERNAL>>")), None);
        assert_eq!(bundle_license(&manifest("Proprietary")), None);
        // Only the main section counts.
        assert_eq!(
            bundle_license("Manifest-Version: 1.0\r\n\r\nName: a\r\nBundle-License: MIT\r\n"),
            None
        );
    }

    fn spdx_text(id: &str) -> &'static str {
        spdx::text::LICENSE_TEXTS
            .iter()
            .find(|(i, _)| *i == id)
            .unwrap_or_else(|| panic!("{id} on the SPDX list"))
            .1
    }

    #[test]
    fn license_files_hold_the_known_texts_word_for_word() {
        // The SPDX list's own texts, with a copyright line and another layout.
        for id in ["Apache-2.0", "MIT", "ISC", "MPL-2.0"] {
            let text = spdx_text(id);
            assert_eq!(license_file(text).as_deref(), Some(id), "{id}");
            let relaid = format!(
                "Copyright (c) 2031 Someone Else <a@b.example>\n\n{}",
                text.split_whitespace().collect::<Vec<_>>().join("\n   ")
            );
            assert_eq!(license_file(&relaid).as_deref(), Some(id), "{id} re-laid");
        }
        // Close relatives are not taken for them: X11 and MIT-0 hold MIT's phrases, MPL-1.1
        // and Apache-1.1 their namesakes'; 0BSD (ISC's grant without its condition) is
        // itself.
        assert_eq!(license_file(spdx_text("0BSD")).as_deref(), Some("0BSD"));
        for id in ["X11", "MPL-1.1", "Apache-1.1", "GPL-1.0-only"] {
            assert_eq!(license_file(spdx_text(id)), None, "{id}");
        }
        // MIT-0 is MIT without its condition: itself, not MIT.
        assert_eq!(license_file(spdx_text("MIT-0")).as_deref(), Some("MIT-0"));
        // EPL's title as copies write it (`v2.0`), and EPL-1.0 is not EPL-2.0.
        let epl = spdx_text("EPL-2.0").replacen("v 2.0", "v2.0", 1);
        assert_ne!(epl, spdx_text("EPL-2.0"));
        assert_eq!(license_file(&epl).as_deref(), Some("EPL-2.0"));
        assert_eq!(
            license_file(spdx_text("EPL-1.0")).as_deref(),
            Some("EPL-1.0")
        );
        // One word changed: not known.
        let changed = spdx_text("MIT").replace("free of charge", "for a small fee");
        assert_eq!(license_file(&changed), None);
        // The project's license with a bundled library's after it: both apply.
        let both = format!(
            "{}\n\nThis product bundles foo:\n\n{}",
            spdx_text("Apache-2.0"),
            spdx_text("MIT")
        );
        assert_eq!(license_file(&both).as_deref(), Some("Apache-2.0 AND MIT"));
        // A text whose phrases line up 2,000 times (one inner word changed) costs a bounded
        // number of hashes and finds nothing.
        let mit = spdx_text("MIT").replace("sublicense", "relicense");
        assert!(mit.contains("relicense"));
        let crafted = mit.repeat(2000);
        assert_eq!(license_file(&crafted), None);
    }

    #[test]
    fn templates_take_the_names_a_license_leaves_to_fill_in_and_nothing_else() {
        // BSD with the holder named in the disclaimer and another bullet style (npm's
        // graceful-fs writes it so), and Debian's BSD-3-Clause of the Regents.
        let bsd2 = "Copyright (c) Isaac Z. Schlueter (\"Author\")\nAll rights reserved.\n\nThe BSD License\n\n\
            Redistribution and use in source and binary forms, with or without modification, are permitted provided that the following conditions are met:\n\
            * Redistributions of source code must retain the above copyright notice, this list of conditions and the following disclaimer.\n\
            * Redistributions in binary form must reproduce the above copyright notice, this list of conditions and the following disclaimer in the documentation and/or other materials provided with the distribution.\n\n\
            THIS SOFTWARE IS PROVIDED BY THE AUTHOR AND CONTRIBUTORS ``AS IS'' AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED.  IN NO EVENT SHALL THE AUTHOR OR CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.\n";
        assert_eq!(license_file(bsd2).as_deref(), Some("BSD-2-Clause"));
        // A name longer than any holder's: not known.
        let long_name = bsd2.replace("THE AUTHOR AND", &"VERY ".repeat(30));
        assert_eq!(license_file(&long_name), None);
        // ISC naming ISC, granting "modify, and distribute" (older copies).
        let isc = spdx_text("ISC")
            .replace("and/or distribute", "and distribute")
            .replace("THE AUTHOR", "ISC");
        assert_eq!(license_file(&isc).as_deref(), Some("ISC"));
        // Apache's notice before its terms is no other license.
        let noticed = format!(
            "Licensed under the Apache License, Version 2.0 (the \"License\"); you may not use this file except in compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0 Unless required by applicable law or agreed to in writing, software distributed under the License is distributed on an \"AS IS\" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the License for the specific language governing permissions and limitations under the License.\n\n{}",
            spdx_text("Apache-2.0")
        );
        assert_eq!(license_file(&noticed).as_deref(), Some("Apache-2.0"));
        // Terms outside every known text: the file is not known.
        let governed = format!(
            "{}\nThis agreement shall be governed by the laws of Utopia.",
            spdx_text("MIT")
        );
        assert_eq!(license_file(&governed), None);
        let with_unknown = format!(
            "{}\n\nPortions: Redistribution is permitted only with our written permission.",
            spdx_text("MIT")
        );
        assert_eq!(license_file(&with_unknown), None);
        // MIT naming the holder where the list's text says "the authors or copyright
        // holders".
        let joyent = spdx_text("MIT").replace("THE AUTHORS OR COPYRIGHT HOLDERS", "JOYENT");
        assert!(joyent.contains("SHALL JOYENT BE LIABLE"));
        assert_eq!(license_file(&joyent).as_deref(), Some("MIT"));
        // The same text twice (two bundled parts under one license) is one license.
        let twice = format!("{}\n\nbundled:\n{}", spdx_text("MIT"), spdx_text("MIT"));
        assert_eq!(license_file(&twice).as_deref(), Some("MIT"));
    }

    #[test]
    fn gnu_license_texts_are_read_as_their_version_with_or_later_left_open() {
        // The SPDX list's texts, relaid with a copyright line above.
        for (text, id) in [
            ("GPL-2.0-only", "GPL-2.0"),
            ("GPL-3.0-or-later", "GPL-3.0"),
            ("LGPL-2.0-only", "LGPL-2.0"),
            ("LGPL-2.1-only", "LGPL-2.1"),
            ("AGPL-3.0-only", "AGPL-3.0"),
        ] {
            let relaid = format!(
                "Copyright (C) 2031 Someone\n\n{}",
                spdx_text(text)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join("\n ")
            );
            assert_eq!(license_file(&relaid).as_deref(), Some(id), "{text}");
        }
        // The GPL 2 as older copies give it: the FSF at 59 Temple Place, the "Library"
        // GPL named in the preamble and the appendix, the title before the terms, and the
        // appendix's last paragraph.
        let old = spdx_text("GPL-2.0-only")
            .replacen(
                "51 Franklin Street, Fifth Floor, Boston, MA  02110-1301, USA",
                "59 Temple Place - Suite 330, Boston, MA  02111-1307  USA",
                1,
            )
            .replacen("GNU Lesser General", "GNU Library General", 1)
            .replacen(
                "TERMS AND CONDITIONS FOR COPYING",
                "GNU GENERAL PUBLIC LICENSE\nTERMS AND CONDITIONS FOR COPYING",
                2,
            )
            + "\nThis General Public License does not permit incorporating your program into proprietary programs.  If your program is a subroutine library, you may consider it more useful to permit linking proprietary applications with the library.  If this is what you want to do, use the GNU Library General Public License instead of this License.\n";
        assert!(old.contains("59 Temple Place") && old.contains("GNU Library General"));
        assert_eq!(license_file(&old).as_deref(), Some("GPL-2.0"));
        // Without its appendix: the terms are the license.
        let terms_only = spdx_text("GPL-3.0-only");
        let terms_only = &terms_only[..terms_only.find("How to Apply These Terms").unwrap()];
        assert_eq!(license_file(terms_only).as_deref(), Some("GPL-3.0"));
        // The LGPL 3 with the GPL 3 it builds on (as the SPDX list gives it, and as copies
        // ship both) is the LGPL 3 alone; the GPL 3 with a bundled library's MIT is both.
        assert!(spdx_text("LGPL-3.0-only").contains("GNU GENERAL PUBLIC LICENSE"));
        assert_eq!(
            license_file(spdx_text("LGPL-3.0-only")).as_deref(),
            Some("LGPL-3.0")
        );
        let both = format!("{}\n\n{}", spdx_text("GPL-3.0-only"), spdx_text("MIT"));
        assert_eq!(license_file(&both).as_deref(), Some("MIT AND GPL-3.0"));
        // A word of the terms changed, or terms added after them (an exception is a
        // grant of its own): not known.
        let changed =
            spdx_text("GPL-2.0-only").replacen("any later version", "no later version", 1);
        assert_ne!(changed, spdx_text("GPL-2.0-only"));
        assert_eq!(license_file(&changed), None);
        let excepted = format!(
            "{}\n\nAs a special exception, the copyright holders give you permission to link this library with independent modules.",
            spdx_text("GPL-2.0-only")
        );
        assert_eq!(license_file(&excepted), None);
        // The appendix covers words only beside its license's terms: MIT with the GPL's
        // "How to Apply" is not known.
        let appendix = &spdx_text("GPL-3.0-only")[terms_only.len()..];
        let mit_and_appendix = format!("{}\n{appendix}", spdx_text("MIT"));
        assert_eq!(license_file(&mit_and_appendix), None);
        assert_eq!(
            license_file(&format!("{terms_only}\n{appendix}")).as_deref(),
            Some("GPL-3.0")
        );
        // The GPL 1 is not known.
        assert_eq!(license_file(spdx_text("GPL-1.0-only")), None);
    }

    #[test]
    fn apaches_notice_alone_names_apache_and_its_terms_may_stop_before_the_end_line() {
        let notice = "Copyright 2014-2019 Grant Jenks\n\nLicensed under the Apache License, Version 2.0 (the \"License\");\nyou may not use this file except in compliance with the License.\nYou may obtain a copy of the License at\n\n    https://www.apache.org/licenses/LICENSE-2.0.txt\n\nUnless required by applicable law or agreed to in writing, software\ndistributed under the License is distributed on an \"AS IS\" BASIS,\nWITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.\nSee the License for the specific language governing permissions and\nlimitations under the License.\n";
        assert_eq!(license_file(notice).as_deref(), Some("Apache-2.0"));
        // A notice with a word changed, or with a condition added, is not.
        assert_eq!(
            license_file(&notice.replace("either express or implied", "express")),
            None
        );
        assert_eq!(
            license_file(&format!("{notice}\nCommercial use is restricted.")),
            None
        );
        // The terms without "END OF TERMS AND CONDITIONS" and the appendix (requests'
        // copy).
        let apache = spdx_text("Apache-2.0");
        let cut = &apache[..apache.find("END OF TERMS AND CONDITIONS").unwrap()];
        assert_eq!(license_file(cut).as_deref(), Some("Apache-2.0"));
    }

    #[test]
    fn varietal_spellings_are_read_as_spdx_makes_them_equal() {
        // MIT's grant in British spelling and hyphenated (SPDX's equivalent words).
        let mit = spdx_text("MIT").replace("sublicense", "sub-licence");
        assert!(mit.contains("sub-licence"));
        assert_eq!(license_file(&mit).as_deref(), Some("MIT"));
        // Apache with "copyright holder" where the list's text says "copyright owner", and
        // "the Licence" throughout.
        let apache = spdx_text("Apache-2.0")
            .replace("copyright owner", "copyright holder")
            .replace("the License", "the Licence");
        assert!(apache.contains("the Licence") && apache.contains("copyright holder"));
        assert_eq!(license_file(&apache).as_deref(), Some("Apache-2.0"));
        // Zlib's "acknowledgment" spelt the other way; the Unlicense's "non-commercial"
        // written apart.
        let zlib = spdx_text("Zlib").replace("acknowledgment", "acknowledgement");
        assert!(zlib.contains("acknowledgement"));
        assert_eq!(license_file(&zlib).as_deref(), Some("Zlib"));
        let unlicense = spdx_text("Unlicense").replace("non-commercial", "non commercial");
        assert!(unlicense.contains("non commercial"));
        assert_eq!(license_file(&unlicense).as_deref(), Some("Unlicense"));
        // A changed word that is no variety of the original stays not known.
        let changed = spdx_text("MIT").replace("sublicense", "sub-lease");
        assert_eq!(license_file(&changed), None);
        assert_eq!(
            license_words("Sub-Licence, per cent, whilst the copyright owner"),
            [
                "sublicense",
                "percent",
                "while",
                "the",
                "copyright",
                "holder"
            ]
        );
    }

    #[test]
    fn no_text_on_the_spdx_list_is_taken_for_another_license() {
        let mut taken = Vec::new();
        let mut known = Vec::new();
        for (id, text) in spdx::text::LICENSE_TEXTS {
            match license_file(text) {
                Some(found) if found == *id => known.push(*id),
                Some(found) => taken.push(format!("{id} taken for {found}")),
                None => {}
            }
        }
        // The GNU licenses' `-only`, `-or-later` and `+` forms are one text, read as the
        // version with "only" or "or later" left open (the program's notices say which).
        let mut gnu_forms = Vec::new();
        for open in [
            "AGPL-3.0", "GPL-2.0", "GPL-3.0", "LGPL-2.0", "LGPL-2.1", "LGPL-3.0",
        ] {
            assert_eq!(
                license_words(spdx_text(&format!("{open}-only"))),
                license_words(spdx_text(&format!("{open}-or-later")))
            );
            for form in ["+", "-only", "-or-later"] {
                let id = format!("{open}{form}");
                if spdx::text::LICENSE_TEXTS.iter().any(|(i, _)| *i == id) {
                    gnu_forms.push(format!("{id} taken for {open}"));
                }
            }
        }
        for form in &gnu_forms {
            assert!(taken.contains(form), "{form}");
        }
        taken.retain(|t| !gnu_forms.contains(t));
        // The two that are the same text: MPL-2.0-no-copyleft-exception is MPL-2.0 word for
        // word (the difference is the Exhibit B notice in the source files), and the
        // deprecated BSD-2-Clause-NetBSD is BSD-2-Clause naming The NetBSD Foundation.
        assert_eq!(
            taken,
            [
                "BSD-2-Clause-NetBSD taken for BSD-2-Clause",
                "MPL-2.0-no-copyleft-exception taken for MPL-2.0"
            ]
        );
        assert!(
            spdx::license_id("BSD-2-Clause-NetBSD")
                .unwrap()
                .is_deprecated()
        );
        assert_eq!(
            license_words(spdx_text("MPL-2.0")),
            license_words(spdx_text("MPL-2.0-no-copyleft-exception"))
        );
        known.sort();
        // Every license the matcher knows is found in its own SPDX text.
        assert_eq!(license_file_ids().into_iter().collect::<Vec<_>>(), known);
        assert_eq!(
            known,
            [
                "0BSD",
                "AGPL-3.0",
                "Apache-2.0",
                "BSD-2-Clause",
                "BSD-3-Clause",
                "BSL-1.0",
                "CC0-1.0",
                "EPL-1.0",
                "EPL-2.0",
                "GPL-2.0",
                "GPL-3.0",
                "ISC",
                "LGPL-2.0",
                "LGPL-2.1",
                "LGPL-3.0",
                "MIT",
                "MIT-0",
                "MPL-2.0",
                "Unlicense",
                "Zlib"
            ]
        );
    }

    #[test]
    fn python_license_fields_by_name_or_text() {
        let of = |license: &str| python(&[("Name", "x"), ("License", license)]);
        assert_eq!(
            of("Apache License, Version 2.0").as_deref(),
            Some("Apache-2.0")
        );
        assert_eq!(of("MIT license").as_deref(), Some("MIT"));
        assert_eq!(of("Apache 2.0").as_deref(), Some("Apache-2.0"));
        assert_eq!(of("BSD-3-Clause").as_deref(), Some("BSD-3-Clause"));
        // A deprecated GNU id: the version, "only" or "or later" left open (license rules
        // read it as either); its `+` form says "or later". Other deprecated ids and family
        // names: not known.
        assert_eq!(of("GPL-3.0").as_deref(), Some("GPL-3.0"));
        // … unless a classifier of the same version says "or later" (ultralytics).
        assert_eq!(
            python(&[
                ("License", "AGPL-3.0"),
                (
                    "Classifier",
                    "License :: OSI Approved :: GNU Affero General Public License v3 or later (AGPLv3+)"
                ),
            ])
            .as_deref(),
            Some("AGPL-3.0-or-later")
        );
        assert_eq!(
            python(&[
                ("License", "GPLv2"),
                (
                    "Classifier",
                    "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)"
                ),
            ])
            .as_deref(),
            Some("GPL-2.0")
        );
        assert_eq!(of("lgpl-2.1").as_deref(), Some("LGPL-2.1"));
        assert_eq!(of("GPL-2.0+").as_deref(), Some("GPL-2.0-or-later"));
        assert_eq!(of("GPL-2.0-with-classpath-exception"), None);
        assert_eq!(of("BSD"), None);
        assert_eq!(of("GPL"), None);
        // The short names: the version, "or later" when they say so.
        assert_eq!(of("GPLv3").as_deref(), Some("GPL-3.0"));
        assert_eq!(of("GPLv3+").as_deref(), Some("GPL-3.0-or-later"));
        assert_eq!(of("LGPL v2.1").as_deref(), Some("LGPL-2.1"));
        assert_eq!(of("AGPLv3").as_deref(), Some("AGPL-3.0"));
        // LGPLv2: 2.0 or 2.1? Not known.
        assert_eq!(of("LGPLv2"), None);
        // Classifiers: a GNU license with a version and no "or later" as that version;
        // without a version, or LGPL v2 (2.0 or 2.1?), not known.
        let classified = |c: &str| {
            python(&[
                ("Name", "x"),
                ("Classifier", &format!("License :: OSI Approved :: {c}")),
            ])
        };
        assert_eq!(
            classified("GNU General Public License v2 (GPLv2)").as_deref(),
            Some("GPL-2.0")
        );
        assert_eq!(
            classified("GNU Affero General Public License v3").as_deref(),
            Some("AGPL-3.0")
        );
        assert_eq!(
            classified("GNU General Public License v3 or later (GPLv3+)").as_deref(),
            Some("GPL-3.0-or-later")
        );
        assert_eq!(
            classified("GNU Lesser General Public License v2 (LGPLv2)"),
            None
        );
        assert_eq!(classified("GNU General Public License (GPL)"), None);
        // A whole license text in the field.
        assert_eq!(of(spdx_text("MIT")).as_deref(), Some("MIT"));
    }

    #[test]
    fn legacy_rpm_tags_in_spdx() {
        // Tags of RHEL 9 packages (bash, glibc, zlib, dbus, gmp, procps-ng, libcap, vim).
        for (tag, want) in [
            ("GPLv3+", "GPL-3.0-or-later"),
            (
                "LGPLv2+ and LGPLv2+ with exceptions and GPLv2+ and GPLv2+ with exceptions and BSD and Inner-Net and ISC and Public Domain and GFDL",
                "LGPL-2.1-or-later AND LicenseRef-LGPLv2p-with-exceptions AND GPL-2.0-or-later AND LicenseRef-GPLv2p-with-exceptions AND LicenseRef-BSD AND LicenseRef-Inner-Net AND ISC AND LicenseRef-Fedora-Public-Domain AND LicenseRef-GFDL",
            ),
            ("ASL 2.0", "Apache-2.0"),
            ("zlib and Boost", "Zlib AND BSL-1.0"),
            (
                "(GPLv2+ or AFL) and GPLv2+",
                "(GPL-2.0-or-later OR LicenseRef-AFL) AND GPL-2.0-or-later",
            ),
            ("LGPLv3+ or GPLv2+", "LGPL-3.0-or-later OR GPL-2.0-or-later"),
            (
                "GPL+ and GPLv2 and GPLv2+ and GPLv3+ and LGPLv2+",
                "GPL-1.0-or-later AND GPL-2.0-only AND GPL-2.0-or-later AND GPL-3.0-or-later AND LGPL-2.1-or-later",
            ),
            ("BSD or GPLv2", "LicenseRef-BSD OR GPL-2.0-only"),
            ("Vim and MIT", "Vim and MIT"),
            ("MPLv2.0", "MPL-2.0"),
            ("Public Domain", "LicenseRef-Fedora-Public-Domain"),
            // SPDX already (current Fedora, RHEL 10; SUSE's `+` forms): as given.
            ("MIT", "MIT"),
            (
                "MIT AND (GPL-2.0-or-later OR Apache-2.0)",
                "MIT AND (GPL-2.0-or-later OR Apache-2.0)",
            ),
            ("GPL-2.0+ and LGPL-2.1+", "GPL-2.0+ and LGPL-2.1+"),
            // Nothing in it names a license: as given.
            ("BSD", "BSD"),
            ("Python", "Python"),
            (
                "Redistributable, no modification permitted",
                "Redistributable, no modification permitted",
            ),
            ("GPLv2 with exceptions", "GPLv2 with exceptions"),
            // Unbalanced: as given.
            ("(GPLv2+ or MIT", "(GPLv2+ or MIT"),
        ] {
            assert_eq!(rpm(tag), want, "{tag}");
        }
        // Each converted tag is an expression of listed ids and references.
        assert!(names_listed_licenses(&rpm(
            "(GPLv2+ or AFL) and GPLv2+ and Public Domain"
        )));
    }

    #[test]
    fn dep5_names() {
        assert_eq!(dep5_short_name("GPL-2+"), "GPL-2.0-or-later");
        assert_eq!(dep5_short_name("GPL-3"), "GPL-3.0-only");
        assert_eq!(dep5_short_name("LGPL-2.1+"), "LGPL-2.1-or-later");
        assert_eq!(dep5_short_name("Expat"), "MIT");
        assert_eq!(dep5_short_name("public-domain"), "LicenseRef-public-domain");
        assert_eq!(
            dep5_synopsis("GPL-2+ or Artistic-1.0, and BSD-3-clause").as_deref(),
            Some("(GPL-2.0-or-later OR Artistic-1.0) AND BSD-3-Clause")
        );
        assert_eq!(
            dep5_synopsis("GPL-3+ with Bison exception").as_deref(),
            Some("LicenseRef-GPL-3--with-Bison-exception")
        );
        assert_eq!(
            dep5_synopsis("GPL-2 with Linux-syscall-note exception").as_deref(),
            Some("GPL-2.0-only WITH Linux-syscall-note")
        );
        assert_eq!(dep5_short_name("BSD-4-clause-UC"), "BSD-4-Clause-UC");
        assert_eq!(dep5_short_name("MIT/X11"), "LicenseRef-MIT-X11");
    }
}
