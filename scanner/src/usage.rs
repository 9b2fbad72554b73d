//! The Usage view (EntryTrace): from the image config's `Entrypoint`/`Cmd`, `WorkingDir`
//! and `Env`, the program the container actually runs, over the merged file system of all
//! layers; then the closure of what it loads (ELF interpreter and `DT_NEEDED` libraries
//! resolved as the dynamic loader does, script interpreters, the language packages a
//! Python, Node or Java launcher reaches) and the packages owning those files.
//!
//! Pure: the file system comes from the layer fragments ([`super::analyze::Node`]); no
//! file is read here. Every input is untrusted: symlink chains, script nesting and the
//! number of programs followed are bounded, and what cannot be known statically is
//! noted rather than guessed.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::analyze::{Fragment, Node};
use super::elf::ElfInfo;
use super::shell::{self, Command, Vars};

/// Symlinks followed while resolving one path (the kernel's limit).
const MAX_SYMLINKS: usize = 40;
/// Programs, scripts and launchers followed from one entrypoint.
const MAX_STEPS: usize = 256;
/// Scripts nested in scripts (sourced files, functions, scripts run by scripts).
const MAX_DEPTH: usize = 16;
/// Shell function calls and sourced scripts followed from one entrypoint: functions (or
/// scripts sourcing themselves) calling each other twice or more per body would otherwise
/// take 2^MAX_DEPTH calls.
const MAX_FUNCTION_CALLS: usize = 256;
/// The `PATH` of a container whose config sets none (what Docker and containerd use).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What an implicit directory resolves to.
static IMPLICIT_DIR: Node = Node::Dir;

/// The merged file system of an image's layers: later layers win, whiteouts and opaque
/// directories hide what earlier layers had. Paths have no leading `/`.
#[derive(Debug, Default)]
pub struct Vfs {
    nodes: BTreeMap<String, Node>,
}

/// A path resolved through its symlinks.
#[derive(Debug)]
pub struct Resolved<'a> {
    /// The path with every symlink resolved (no leading `/`).
    pub path: String,
    /// What is there.
    pub node: &'a Node,
    /// The symlinks passed on the way (themselves files a package owns).
    pub links: Vec<String>,
}

fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// `dir` joined with `path` (`path` absolute: itself), normalized without resolving links.
pub fn join(dir: &str, path: &str) -> String {
    let mut out: Vec<&str> = if path.starts_with('/') {
        Vec::new()
    } else {
        components(dir).collect()
    };
    for c in components(path) {
        if c == ".." {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.join("/")
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

fn basename(path: &str) -> &str {
    path.rsplit_once('/').map(|(_, n)| n).unwrap_or(path)
}

/// The kinds of configuration file uWSGI reads (`--ini`, `--json`, `--yaml`, `--xml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UwsgiFormat {
    Ini,
    Json,
    Yaml,
    Xml,
}

impl UwsgiFormat {
    /// The format an option loads (`ini`, `json`/`js`, `yaml`/`yml`, `xml`), as uWSGI
    /// names them on the command line and in `UWSGI_*` variables.
    fn of_option(key: &str) -> Option<UwsgiFormat> {
        match key {
            "ini" => Some(UwsgiFormat::Ini),
            "json" | "js" => Some(UwsgiFormat::Json),
            "yaml" | "yml" => Some(UwsgiFormat::Yaml),
            "xml" => Some(UwsgiFormat::Xml),
            _ => None,
        }
    }

    /// The format uWSGI deduces from a bare argument's extension (`uwsgi app.yaml`).
    fn of_file(path: &str) -> Option<UwsgiFormat> {
        let (_, extension) = basename(path).rsplit_once('.')?;
        UwsgiFormat::of_option(extension)
    }

    /// The options of the file's section `section` (`FILE:section`; without one, `uwsgi`,
    /// or in XML the first `<uwsgi>` element), in order.
    fn options(self, text: &str, section: Option<&str>) -> Vec<(String, String)> {
        let named = section.unwrap_or("uwsgi");
        match self {
            UwsgiFormat::Ini => uwsgi_ini(text, named),
            UwsgiFormat::Json => uwsgi_json(text, named),
            UwsgiFormat::Yaml => uwsgi_yaml(text, named),
            UwsgiFormat::Xml => uwsgi_xml(text, section),
        }
    }
}

/// The `key = value` lines of an ini file's `[section]` sections, in order.
fn uwsgi_ini(text: &str, section: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_section = false;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name.trim() == section;
        } else if in_section
            && !line.starts_with(['#', ';'])
            && let Some((key, value)) = line.split_once('=')
        {
            out.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    out
}

/// The members of a JSON file's `section` object: a string, number or boolean is one value,
/// an array one option per element (how JSON repeats an option). Not JSON: none.
fn uwsgi_json(text: &str, section: &str) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(mut top)) = serde_json::from_str(text) else {
        return Vec::new();
    };
    let Some(serde_json::Value::Object(section)) = top.remove(section) else {
        return Vec::new();
    };
    let scalar = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let mut out = Vec::new();
    for (key, value) in &section {
        match value {
            serde_json::Value::Array(items) => {
                out.extend(items.iter().filter_map(scalar).map(|v| (key.clone(), v)));
            }
            v => out.extend(scalar(v).map(|v| (key.clone(), v))),
        }
    }
    out
}

/// The `key: value` lines of a YAML file's top-level `section:` mapping, in order, read as
/// uWSGI's own YAML reader reads them: one option per line (a key may repeat), a leading
/// `- ` and quotes around the value dropped, `#` comments skipped.
fn uwsgi_yaml(text: &str, section: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_section = false;
    for line in text.lines() {
        let content = line.trim();
        if content.is_empty() || content.starts_with('#') || content == "---" {
            continue;
        }
        if !line.starts_with([' ', '\t', '-']) {
            in_section = content
                .strip_suffix(':')
                .is_some_and(|name| name.trim() == section);
            continue;
        }
        if !in_section {
            continue;
        }
        let item = content.strip_prefix("- ").unwrap_or(content).trim_start();
        let Some((key, value)) = item.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|quote| value.strip_prefix(*quote)?.strip_suffix(*quote))
            .unwrap_or(value);
        out.push((key.trim().to_string(), value.to_string()));
    }
    out
}

/// The child elements of an XML file's first `<uwsgi>` element (with `id`, the first whose
/// `id` attribute is that), each an option with its text as the value
/// (`<module>app.wsgi</module>`; an empty element is a flag), as uWSGI finds it at any
/// depth. XML that does not parse gives what came before the error.
fn uwsgi_xml(text: &str, id: Option<&str>) -> Vec<(String, String)> {
    use xmlparser::{ElementEnd, Token, Tokenizer};
    let mut out = Vec::new();
    // Elements open, the depth of the chosen `<uwsgi>` element, a `<uwsgi>` start tag whose
    // attributes are being read (its depth and whether it is the one), the open option.
    let mut depth = 0usize;
    let mut section: Option<usize> = None;
    let mut candidate: Option<(usize, bool)> = None;
    let mut key: Option<&str> = None;
    let mut value = String::new();
    for token in Tokenizer::from(text) {
        let Ok(token) = token else { break };
        match token {
            Token::ElementStart { local, .. } => {
                depth += 1;
                if section.is_none() && local.as_str() == "uwsgi" {
                    candidate = Some((depth, id.is_none()));
                } else if section == Some(depth - 1) {
                    key = Some(local.as_str());
                    value.clear();
                }
            }
            Token::Attribute {
                local, value: v, ..
            } => {
                if let (Some((_, chosen)), Some(id)) = (&mut candidate, id)
                    && local.as_str() == "id"
                {
                    *chosen = v.as_str() == id;
                }
            }
            Token::Text { text } | Token::Cdata { text, .. }
                if section.is_some_and(|d| depth == d + 1) =>
            {
                value.push_str(text.as_str());
            }
            Token::ElementEnd { end, .. } => {
                if let Some((at, chosen)) = candidate.take() {
                    match end {
                        ElementEnd::Open if chosen => section = Some(at),
                        // `<uwsgi/>`: the section is empty.
                        ElementEnd::Empty if chosen => return out,
                        ElementEnd::Open => {}
                        _ => depth -= 1,
                    }
                    continue;
                }
                if matches!(end, ElementEnd::Open) || depth == 0 {
                    continue;
                }
                if section == Some(depth) {
                    return out;
                }
                if section == Some(depth - 1)
                    && let Some(key) = key.take()
                {
                    out.push((key.to_string(), xml_unescape(value.trim())));
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    out
}

/// uWSGI's options set in the environment: `UWSGI_WSGI_FILE=app.py` is `wsgi-file`. uWSGI
/// reads them before its command line and configuration files, which override them.
fn uwsgi_env_options(env: &BTreeMap<String, String>) -> Vec<(String, String)> {
    env.iter()
        .filter_map(|(name, value)| {
            let option = name.strip_prefix("UWSGI_")?;
            (!option.is_empty())
                .then(|| (option.to_ascii_lowercase().replace('_', "-"), value.clone()))
        })
        .collect()
}

/// A value read from the uWSGI configuration file at `file` (from the root, links
/// resolved; `given` as it was named) with the file's magic variables replaced, as uWSGI
/// does while reading the file: `%d` its directory (with a trailing slash), `%p` its path,
/// `%s` its name, `%n` that without the extension, `%e` the extension, `%c` the directory's
/// name, `%0`…`%9` the directory's components, `%o` the name as given, `%%` a `%`. Others
/// (`%h`, the host name; `%(key)`, a placeholder for later) are left.
fn uwsgi_magic(value: &str, file: &str, given: &str) -> String {
    let dir = parent(file);
    let name = basename(file);
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let rest = chars.clone();
        let replacement = match chars.next() {
            Some('d') if dir.is_empty() => "/".to_string(),
            Some('d') => format!("/{dir}/"),
            Some('p') => format!("/{file}"),
            Some('s') => name.to_string(),
            Some('n') => name.rsplit_once('.').map_or(name, |(n, _)| n).to_string(),
            Some('e') => name.rsplit_once('.').map_or("", |(_, e)| e).to_string(),
            Some('c') => basename(dir).to_string(),
            Some('o') => given.to_string(),
            Some('%') => "%".to_string(),
            Some(n @ '0'..='9') => components(dir)
                .nth(n as usize - '0' as usize)
                .unwrap_or_default()
                .to_string(),
            _ => {
                out.push('%');
                chars = rest;
                continue;
            }
        };
        out.push_str(&replacement);
    }
    out
}

/// Most replacements in one uWSGI option's value per pass, and the length past which no
/// more are made: a placeholder naming itself makes uWSGI loop forever, and two that
/// double each other grow without bound.
const UWSGI_EXPANSIONS: usize = 64;
const UWSGI_VALUE_BYTES: usize = 4096;

/// uWSGI's passes over its options once every file is read ([`uwsgi_pass`]): first the
/// environment's variables (`$(NAME)`), then references to options (`%(key)`: the first
/// option named `key`, a custom one being a placeholder — `project = mysite`, `module =
/// %(project).wsgi`). `@(file)` (a file's contents) is not read.
fn uwsgi_expand(options: &mut [(String, String)], env: &BTreeMap<String, String>) {
    uwsgi_pass(options, b'$', |_, name| env.get(name).cloned());
    uwsgi_pass(options, b'%', |options, name| {
        options
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    });
}

/// One of uWSGI's passes: each option's value, in order, is scanned for `S(name)` (`S` the
/// `symbol`; parentheses inside the name nest) and a known name replaced by `lookup`'s
/// value; then the scan starts again at the value's second byte, as uWSGI's does — so a
/// reference the replacement brings is replaced too, unless it starts the value. An
/// option referring to a later one gets that one's value as written. Unknown names stay.
fn uwsgi_pass(
    options: &mut [(String, String)],
    symbol: u8,
    lookup: impl Fn(&[(String, String)], &str) -> Option<String>,
) {
    for i in 0..options.len() {
        let mut replaced = 0;
        // 0: outside a reference; 1: after the symbol; 2 and on: inside `(…)`, counting
        // from the parenthesis.
        let mut state = 0usize;
        let mut depth = 0usize;
        let mut name_start = 0;
        let mut j = 0;
        while j < options[i].1.len() {
            let c = options[i].1.as_bytes()[j];
            if c == symbol {
                state = 1;
            } else if c == b'(' && state == 1 {
                state = 2;
                depth = 0;
                name_start = j + 1;
            } else if state > 1 && c == b'(' {
                state += 1;
                depth += 1;
            } else if state > 1 && c == b')' && depth > 0 {
                state += 1;
                depth -= 1;
            } else if state > 2 && c == b')' {
                state = 0;
                let name = options[i].1[name_start..j].to_string();
                if let Some(value) = lookup(options, &name) {
                    options[i].1.replace_range(name_start - 2..=j, &value);
                    replaced += 1;
                    if replaced == UWSGI_EXPANSIONS || options[i].1.len() > UWSGI_VALUE_BYTES {
                        break;
                    }
                    j = 0;
                }
            } else if state > 1 && c != b')' {
                state += 1;
            } else {
                state = 0;
            }
            j += 1;
        }
    }
}

/// uWSGI's options as read so far, in order, and how many configuration files were read.
#[derive(Default)]
struct UwsgiOptions {
    list: Vec<(String, String)>,
    files: usize,
}

/// Most configuration files one uWSGI command reads (a file may name others, itself too).
const UWSGI_FILES: usize = 32;

/// Tomcat's main class.
const TOMCAT_MAIN: &str = "org.apache.catalina.startup.Bootstrap";

/// `text` without its `<!-- … -->` comments (Tomcat's `server.xml` keeps examples in them).
fn without_xml_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        match rest[start..].find("-->") {
            Some(end) => rest = &rest[start + end + 3..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// The properties of a Java `.properties` file (`key=value`, `key: value` or `key value`;
/// `#` and `!` comments; a line ending in an odd number of backslashes continues on the
/// next, whose leading blanks are dropped). Other escapes are left as written.
fn java_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut logical = String::new();
    for line in text.lines() {
        let line = if logical.is_empty() {
            line.trim_start()
        } else {
            line.trim_start_matches([' ', '\t', '\x0c'])
        };
        if logical.is_empty() && (line.is_empty() || line.starts_with(['#', '!'])) {
            continue;
        }
        let trailing = line.len() - line.trim_end_matches('\\').len();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        property(&std::mem::take(&mut logical), &mut out);
    }
    // The last line may end in a continuation.
    if !logical.is_empty() {
        property(&logical, &mut out);
    }
    out
}

/// One logical line of a properties file into `out`.
fn property(entry: &str, out: &mut BTreeMap<String, String>) {
    let split = entry.find(['=', ':', ' ', '\t']).unwrap_or(entry.len());
    let key = entry[..split].trim_end();
    let value = entry[split..].trim_start();
    let value = value
        .strip_prefix(['=', ':'])
        .map_or(value, str::trim_start);
    out.insert(key.to_string(), value.trim_end().to_string());
}

/// `text` with XML's five predefined entity references replaced (others are left as
/// written); `&amp;` last, so `&amp;lt;` is `&lt;`.
fn xml_unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// One repository of a Tomcat class loader (`common.loader` in `catalina.properties`).
#[derive(Debug, PartialEq, Eq)]
enum TomcatRepository {
    /// A directory of classes.
    Dir(String),
    /// Every jar of a directory (`dir/*.jar`).
    Jars(String),
    /// One jar.
    Jar(String),
}

/// `text` with each `${name}` replaced by `value(name)`, once (not again in what replaced
/// it); a name `value` does not know, and an unclosed `${`, are left as written.
fn replace_references(text: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let Some(end) = rest[at + 2..].find('}').map(|end| at + 2 + end) else {
            out.push_str(&rest[at..]);
            return out;
        };
        match value(&rest[at + 2..end]) {
            Some(replacement) => out.push_str(&replacement),
            None => out.push_str(&rest[at..=end]),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `item` with each `${name}` replaced as Tomcat's `Bootstrap` replaces it in a class
/// loader's repositories: `catalina.home` and `catalina.base` by those directories, any
/// other name by the system property (`properties`); once; an unknown name is left.
fn tomcat_replace(
    item: &str,
    home: &str,
    base: &str,
    properties: &BTreeMap<String, String>,
) -> String {
    replace_references(item, |name| match name {
        "catalina.home" => Some(format!("/{home}")),
        "catalina.base" => Some(format!("/{base}")),
        "" => None,
        _ => properties.get(name).cloned(),
    })
}

/// The repositories of a Tomcat class loader's value: comma-separated, each optionally in
/// double quotes, its `${…}` replaced ([`tomcat_replace`]). A repository still naming an
/// unknown property, or a URL, is returned apart (its place is not known here).
fn tomcat_repositories(
    value: &str,
    home: &str,
    base: &str,
    properties: &BTreeMap<String, String>,
) -> (Vec<TomcatRepository>, Vec<String>) {
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    let mut rest = value;
    while !rest.trim().is_empty() {
        let trimmed = rest.trim_start();
        let (item, after) = match trimmed.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((item, after)) => {
                    (item, after.trim_start().strip_prefix(',').unwrap_or(after))
                }
                None => (quoted, ""),
            },
            None => trimmed.split_once(',').unwrap_or((trimmed, "")),
        };
        rest = after;
        let item = tomcat_replace(item.trim(), home, base, properties);
        if item.is_empty() {
            continue;
        }
        if item.contains("${") || item.contains("://") {
            unknown.push(item);
            continue;
        }
        out.push(if let Some(dir) = item.strip_suffix("/*.jar") {
            TomcatRepository::Jars(dir.to_string())
        } else if item.ends_with(".jar") {
            TomcatRepository::Jar(item)
        } else {
            TomcatRepository::Dir(item)
        });
    }
    (out, unknown)
}

/// The values of every `name="…"` (or `'…'`) attribute in `xml`, in order; entity
/// references other than the five predefined ones are left as written.
fn xml_attribute_values(xml: &str, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + name.len()..];
        if !before.is_some_and(char::is_whitespace) {
            continue;
        }
        let after = rest.trim_start();
        let Some(after) = after.strip_prefix('=') else {
            continue;
        };
        let after = after.trim_start();
        let Some(quote) = after.chars().next().filter(|q| *q == '"' || *q == '\'') else {
            continue;
        };
        let Some(end) = after[1..].find(quote) else {
            break;
        };
        let value = xml_unescape(&after[1..1 + end]);
        if !value.is_empty() {
            out.push(value);
        }
        rest = &after[1 + end..];
    }
    out
}

impl Vfs {
    /// Stack the fragments' trees in layer order.
    pub fn merge<'a>(fragments: impl IntoIterator<Item = &'a Fragment>) -> Vfs {
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        let under = |p: &str, dir: &str| {
            dir.is_empty()
                || p.len() > dir.len() && p.starts_with(dir) && p.as_bytes()[dir.len()] == b'/'
        };
        for fragment in fragments {
            for dir in &fragment.opaque {
                nodes.retain(|p, _| !under(p, dir));
            }
            for gone in &fragment.whiteouts {
                nodes.retain(|p, _| p != gone && !under(p, gone));
            }
            for (path, node) in &fragment.tree {
                nodes.insert(path.clone(), node.clone());
            }
        }
        Vfs { nodes }
    }

    /// A file system made of these entries (tests).
    pub fn from_nodes(nodes: BTreeMap<String, Node>) -> Vfs {
        Vfs { nodes }
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Resolve `path` (relative paths from `cwd`) through its symlinks, the last one
    /// included when `follow_last`. `None` when something on the way is missing or the
    /// links loop.
    pub fn resolve_with(&self, cwd: &str, path: &str, follow_last: bool) -> Option<Resolved<'_>> {
        let mut todo: VecDeque<String> = components(&join(cwd, path)).map(String::from).collect();
        let mut done: Vec<String> = Vec::new();
        let mut links = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            if c == ".." {
                done.pop();
                continue;
            }
            done.push(c);
            let here = done.join("/");
            let last = todo.is_empty();
            if let Some(Node::Symlink { target }) = self.nodes.get(&here)
                && (follow_last || !last)
            {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return None;
                }
                links.push(here);
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                }
                for c in components(target).collect::<Vec<_>>().into_iter().rev() {
                    todo.push_front(c.to_string());
                }
            }
        }
        let path = done.join("/");
        let node = match self.nodes.get(&path) {
            Some(node) => node,
            // A directory the tar left implicit: there as the parent of its entries.
            None if path.is_empty() || self.has_children(&path) => &IMPLICIT_DIR,
            None => return None,
        };
        Some(Resolved { path, node, links })
    }

    fn has_children(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.nodes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(&prefix))
    }

    /// [`Vfs::resolve_with`] following every link.
    pub fn resolve(&self, cwd: &str, path: &str) -> Option<Resolved<'_>> {
        self.resolve_with(cwd, path, true)
    }

    /// The path with the links of its directories resolved, the last component kept (how a
    /// package database names a file that may itself be a link).
    pub fn canonical_dir(&self, path: &str) -> String {
        let path = join("", path);
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (d, n),
            None => return path,
        };
        let dir = match self.resolve(dir, "") {
            Some(r) => r.path,
            None => dir.to_string(),
        };
        join(&dir, name)
    }

    /// The entries directly in `dir`.
    pub fn list(&self, dir: &str) -> Vec<&str> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        // Directories a tar leaves implicit are there as the parents of their files. Each
        // child's subtree is stepped over (`name/…` sorts just before `name0`), so a
        // directory of a few entries holding many files costs a few lookups.
        let mut names: BTreeSet<&str> = BTreeSet::new();
        let mut from = prefix.clone();
        while let Some((path, _)) = self.nodes.range(from.clone()..).next() {
            let Some(rest) = path.strip_prefix(&prefix) else {
                break;
            };
            let (name, below) = match rest.split_once('/') {
                Some((name, _)) => (name, true),
                None => (rest, false),
            };
            if !name.is_empty() {
                names.insert(name);
            }
            from = if below {
                format!("{prefix}{name}0")
            } else {
                format!("{path}\0")
            };
        }
        names.into_iter().collect()
    }

    /// Whether anything lies below `dir`.
    fn has_entries(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.nodes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(&prefix))
    }

    fn text(&self, path: &str) -> Option<&str> {
        match self.nodes.get(path)? {
            Node::File { text, .. } => text.as_deref(),
            _ => None,
        }
    }

    fn is_dir(&self, cwd: &str, path: &str) -> bool {
        matches!(
            self.resolve(cwd, path),
            Some(Resolved {
                node: Node::Dir,
                ..
            })
        )
    }

    /// A directory's path with its links resolved, when it exists (as an entry, or only as
    /// the parent of files a tar lists without it).
    fn directory(&self, path: &str) -> Option<String> {
        let resolved = self.resolve("", path).map_or(path.to_string(), |r| r.path);
        (self.is_dir("", &resolved) || self.has_entries(&resolved)).then_some(resolved)
    }
}

/// What the image config says to run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, `NAME=value`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: String,
    /// `Volumes`: where something is mounted over the image, so a file test there is not
    /// answered from the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
}

impl RunConfig {
    /// From an OCI / Docker image config document (its `config` object).
    pub fn from_image_config(config: &serde_json::Value) -> RunConfig {
        let c = &config["config"];
        let list = |v: &serde_json::Value| -> Vec<String> {
            match v {
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect(),
                // Docker's legacy string form: run by `/bin/sh -c`.
                serde_json::Value::String(s) => {
                    vec!["/bin/sh".into(), "-c".into(), s.clone()]
                }
                _ => Vec::new(),
            }
        };
        RunConfig {
            entrypoint: list(&c["Entrypoint"]),
            cmd: list(&c["Cmd"]),
            env: list(&c["Env"]),
            working_dir: c["WorkingDir"].as_str().unwrap_or_default().to_string(),
            volumes: c["Volumes"]
                .as_object()
                .map(|v| v.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

/// One program on the way from the config to what runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The file run (absolute, links resolved).
    pub path: String,
    /// Its arguments as they were given (the first as invoked).
    pub argv: Vec<String>,
    /// Where it came from: `config` (Entrypoint/Cmd), `FILE:LINE` of a script, `shebang
    /// of FILE`, or the launcher that ran it (`env`, `tini`, …).
    pub from: String,
}

/// What EntryTrace found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// From the config to the terminal program: each launcher, script and interpreter.
    pub chain: Vec<Step>,
    /// Other programs the scripts on the way run before it (`mkdir`, `chown`, …).
    pub also_run: Vec<Step>,
    /// Scripts and language entry files read on the way (absolute).
    pub scripts: BTreeSet<String>,
    /// Directories whose language packages the launchers reach (site-packages,
    /// node_modules, class path directories), absolute.
    pub language_dirs: BTreeSet<String>,
    /// Jars on a Java class path, absolute.
    pub language_files: BTreeSet<String>,
    /// The ecosystems (package URL types) whose module search was followed: a package of
    /// one of them that lies nowhere reached is known to be unused; a package of another
    /// (a gem under an unmodelled Ruby server, a NuGet package under `dotnet`) is not known
    /// either way.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub runtimes: BTreeSet<String>,
    /// What could not be followed, and why.
    pub notes: Vec<String>,
}

impl Trace {
    /// The program finally run.
    pub fn terminal(&self) -> Option<&Step> {
        self.chain.last()
    }
}

/// Where the argument list being traced comes from.
#[derive(Clone)]
struct Ctx {
    env: BTreeMap<String, String>,
    cwd: String,
    /// A `cd` to where only running the script tells (or one that may not run) was met:
    /// relative paths are not known.
    cwd_unknown: bool,
    /// Mounted over the image (the config's `Volumes`): file tests there are not known.
    volumes: Vec<String>,
    /// Loops being run through around the commands followed (`break` and `continue`
    /// outside one do nothing).
    loop_depth: usize,
    depth: usize,
    /// The shell commands being followed run under an undecided condition or in a loop
    /// around the block (a function called there, a loop's body): an `exec` may not run.
    conditional: bool,
}

impl Ctx {
    /// The directory environment variable `var` names (relative to the working
    /// directory), when it is set.
    fn env_dir(&self, var: &str) -> Option<String> {
        self.env.get(var).map(|d| join(&self.cwd, d))
    }
}

struct Tracer<'a> {
    vfs: &'a Vfs,
    trace: Trace,
    /// Programs followed so far (shared with the runs of functions for their status).
    steps: Cell<usize>,
    /// Shell function calls followed so far (likewise shared).
    function_calls: Cell<usize>,
    /// Shell commands parsed and walked so far (likewise shared): the walk is bounded by
    /// the parse ([`Tracer::over_walk_budget`]).
    parsed: Cell<usize>,
    walked: Cell<usize>,
    /// Steps go to the main chain (false: to `also_run`).
    main: bool,
    /// A `return` or `exit` that may or may not happen was met (what a run of a function
    /// for its exit status, [`ScriptImage::function_status`], asks).
    unsure: bool,
}

/// `env`'s options that take a value (so the value is no program).
fn env_takes_value(opt: &str) -> bool {
    matches!(
        opt,
        "-u" | "--unset" | "-C" | "--chdir" | "-S" | "--split-string"
    )
}

/// How a program that runs a command given in its arguments reads them (`nohup CMD`,
/// `timeout 5 CMD`, `setpriv --reuid=1000 CMD`, `flock FILE -c LINE`): options as
/// `getopt` reads them, up to the first operand, then its own operands, then the command.
#[derive(Default)]
struct Wrapper {
    /// Short options taking a value (`-n 5`, `-n5`).
    short_values: &'static str,
    /// Long options taking a value (`--signal KILL`, `--signal=KILL`).
    long_values: &'static [&'static str],
    /// Operands of its own before the command (`timeout`'s duration, `taskset`'s mask,
    /// `flock`'s file, `s6-setuidgid`'s account).
    operands: usize,
    /// Options after which it runs no command (`taskset -p PID`, `sudo -l`).
    no_command: &'static [&'static str],
    /// Options whose value is a command line it runs by a shell (`flock -c`).
    shell_line: &'static [&'static str],
    /// Like `su`: the options may come after its operand and no command follows them; only
    /// a `-c LINE` runs one (else a login shell).
    su_like: bool,
    /// Like `runuser`: with `-u USER` a command follows the options; without, like `su`.
    user_runs_command: bool,
}

/// What a [`Wrapper`] runs.
enum Wrapped {
    /// The command starting at this argument.
    Argv(usize),
    /// This command line, by a shell.
    Shell(String),
}

/// The wrappers followed, by the name they are invoked by.
fn wrapper(name: &str) -> Option<Wrapper> {
    let w = Wrapper::default();
    Some(match name {
        "nohup" | "setsid" | "catatonit" => w,
        "tini" | "tini-static" => Wrapper {
            short_values: "pe",
            ..w
        },
        "dumb-init" => Wrapper {
            short_values: "r",
            long_values: &["--rewrite"],
            ..w
        },
        "su-exec" | "gosu" | "s6-setuidgid" | "s6-envuidgid" => Wrapper { operands: 1, ..w },
        "s6-applyuidgid" => Wrapper {
            short_values: "ugG",
            ..w
        },
        "nice" => Wrapper {
            short_values: "n",
            long_values: &["--adjustment"],
            ..w
        },
        "ionice" => Wrapper {
            short_values: "cn",
            long_values: &["--class", "--classdata"],
            no_command: &["-p", "-P", "-u", "--pid", "--pgid", "--uid"],
            ..w
        },
        "timeout" => Wrapper {
            short_values: "sk",
            long_values: &["--signal", "--kill-after"],
            operands: 1,
            ..w
        },
        "stdbuf" => Wrapper {
            short_values: "ioe",
            long_values: &["--input", "--output", "--error"],
            ..w
        },
        "taskset" => Wrapper {
            operands: 1,
            no_command: &["-p", "--pid"],
            ..w
        },
        "chrt" => Wrapper {
            short_values: "TPD",
            long_values: &["--sched-runtime", "--sched-period", "--sched-deadline"],
            operands: 1,
            no_command: &["-p", "--pid", "-m", "--max"],
            ..w
        },
        "flock" => Wrapper {
            short_values: "Ew",
            long_values: &["--conflict-exit-code", "--timeout", "--wait"],
            operands: 1,
            shell_line: &["-c", "--command"],
            ..w
        },
        "setpriv" => Wrapper {
            long_values: &[
                "--reuid",
                "--regid",
                "--ruid",
                "--rgid",
                "--euid",
                "--egid",
                "--groups",
                "--inh-caps",
                "--ambient-caps",
                "--bounding-set",
                "--securebits",
                "--pdeathsig",
                "--selinux-label",
                "--apparmor-profile",
                "--landlock-access",
                "--landlock-rule",
                "--seccomp-filter",
            ],
            no_command: &["-d", "--dump"],
            ..w
        },
        "unshare" => Wrapper {
            short_values: "SGRw",
            long_values: &[
                "--setuid",
                "--setgid",
                "--root",
                "--wd",
                "--propagation",
                "--setgroups",
                "--map-user",
                "--map-group",
                "--map-users",
                "--map-groups",
                "--monotonic",
                "--boottime",
            ],
            ..w
        },
        "numactl" => Wrapper {
            short_values: "iNmCpPw",
            long_values: &[
                "--interleave",
                "--cpunodebind",
                "--membind",
                "--physcpubind",
                "--preferred",
                "--preferred-many",
                "--weighted-interleave",
            ],
            no_command: &["-s", "-H", "--show", "--hardware"],
            ..w
        },
        "xargs" => Wrapper {
            short_values: "adEILnPs",
            long_values: &[
                "--arg-file",
                "--delimiter",
                "--max-args",
                "--max-procs",
                "--max-chars",
                "--process-slot-var",
            ],
            ..w
        },
        "chpst" => Wrapper {
            short_values: "uUbe/nlLmdopfcrt",
            ..w
        },
        "sudo" => Wrapper {
            short_values: "uUgCDprtTR",
            long_values: &[
                "--user",
                "--other-user",
                "--group",
                "--close-from",
                "--chdir",
                "--prompt",
                "--role",
                "--type",
                "--command-timeout",
                "--chroot",
            ],
            no_command: &[
                "-e",
                "-l",
                "-v",
                "-V",
                "-K",
                "--edit",
                "--list",
                "--validate",
            ],
            ..w
        },
        "doas" => Wrapper {
            short_values: "Cu",
            no_command: &["-s", "-L"],
            ..w
        },
        "su" => Wrapper {
            short_values: "gGsw",
            long_values: &[
                "--group",
                "--supp-group",
                "--shell",
                "--whitelist-environment",
            ],
            shell_line: &["-c", "--command"],
            su_like: true,
            ..w
        },
        // `runuser -u USER CMD`, else like `su`.
        "runuser" => Wrapper {
            short_values: "ugGsw",
            long_values: &[
                "--user",
                "--group",
                "--supp-group",
                "--shell",
                "--whitelist-environment",
            ],
            shell_line: &["-c", "--command"],
            user_runs_command: true,
            ..w
        },
        _ => return None,
    })
}

impl Wrapper {
    /// The command it runs with `args`, when it runs one.
    fn command(&self, args: &[String]) -> Option<Wrapped> {
        let su_like = self.su_like
            || (self.user_runs_command
                && !args
                    .iter()
                    .take_while(|a| *a != "--")
                    .any(|a| a.starts_with("-u") || a == "--user" || a.starts_with("--user=")));
        let mut shell_line = None;
        let mut i = 0;
        while let Some(arg) = args.get(i) {
            if arg == "--" {
                i += 1;
                break;
            }
            if !arg.starts_with('-') || arg == "-" {
                if !su_like {
                    break;
                }
                i += 1; // `su USER -c LINE`: options after the user too
                continue;
            }
            let (option, value) = self.option(args, &mut i)?;
            if self.shell_line.contains(&option.as_str()) {
                shell_line = value;
                if !su_like {
                    return shell_line.map(Wrapped::Shell);
                }
            }
            i += 1;
        }
        if su_like {
            return shell_line.map(Wrapped::Shell);
        }
        let at = i + self.operands;
        // `flock FILE -c LINE`.
        if let Some(option) = args.get(at)
            && self.shell_line.contains(&option.as_str())
        {
            return Some(Wrapped::Shell(args.get(at + 1)?.clone()));
        }
        (at < args.len()).then_some(Wrapped::Argv(at))
    }

    /// The option at `args[*i]` (a long one, or the cluster of short ones), its value
    /// taken (`*i` then at the value's argument): the last option of it and its value.
    /// `None` when it runs no command or a value is missing.
    fn option(&self, args: &[String], i: &mut usize) -> Option<(String, Option<String>)> {
        let arg = &args[*i];
        let takes = |option: &str| {
            self.shell_line.contains(&option)
                || match option.strip_prefix("--") {
                    Some(_) => self.long_values.contains(&option),
                    None => option
                        .chars()
                        .nth(1)
                        .is_some_and(|c| self.short_values.contains(c)),
                }
        };
        if let Some(long) = arg.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (long, None),
            };
            let option = format!("--{name}");
            if self.no_command.contains(&option.as_str()) {
                return None;
            }
            if !takes(&option) {
                return Some((option, None));
            }
            let value = match attached {
                Some(value) => value,
                None => {
                    *i += 1;
                    args.get(*i)?.clone()
                }
            };
            return Some((option, Some(value)));
        }
        // A cluster of short options; one taking a value ends it (`-n5`, `-xw 5`).
        let letters: Vec<char> = arg[1..].chars().collect();
        let mut last = (String::new(), None);
        for (k, letter) in letters.iter().enumerate() {
            let option = format!("-{letter}");
            if self.no_command.contains(&option.as_str()) {
                return None;
            }
            if takes(&option) {
                let rest: String = letters[k + 1..].iter().collect();
                let value = if rest.is_empty() {
                    *i += 1;
                    args.get(*i)?.clone()
                } else {
                    rest
                };
                return Some((option, Some(value)));
            }
            last = (option, None);
        }
        Some(last)
    }
}

fn is_python(name: &str) -> bool {
    let rest = name
        .strip_prefix("python")
        .or_else(|| name.strip_prefix("pypy"));
    rest.is_some_and(|r| r.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

fn is_ruby(name: &str) -> bool {
    name.strip_prefix("ruby")
        .is_some_and(|r| r.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

/// The PHP command line (`php`, `php8.2`); not `php-fpm`, which runs whatever scripts
/// its web server hands it.
fn is_php_cli(name: &str) -> bool {
    name.strip_prefix("php")
        .is_some_and(|r| r.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

/// The package manager a Node entry script is the command line of (npm's, Yarn's,
/// pnpm's), by the package it lies in.
fn package_manager(entry: &str) -> Option<&'static str> {
    let (_, inside) = entry.rsplit_once("node_modules/")?;
    let package = inside.split('/').next()?;
    match package {
        "npm" => Some("npm"),
        "yarn" => Some("yarn"),
        "pnpm" => Some("pnpm"),
        // Corepack's shims (`corepack/dist/yarn.js`) stand for the manager they name.
        "corepack" => Some(
            match basename(entry).split('.').next().unwrap_or_default() {
                "yarn" | "yarnpkg" => "yarn",
                "pnpm" | "pnpx" => "pnpm",
                "npm" | "npx" => "npm",
                _ => "corepack",
            },
        ),
        _ => None,
    }
}

fn is_shell(name: &str) -> bool {
    matches!(
        name,
        "sh" | "bash" | "dash" | "ash" | "zsh" | "ksh" | "mksh"
    )
}

impl<'a> Tracer<'a> {
    fn note(&mut self, note: String) {
        if self.trace.notes.len() < 100 {
            self.trace.notes.push(note);
        }
    }

    fn push(&mut self, step: Step) {
        if self.main {
            self.trace.chain.push(step);
        } else if self.trace.also_run.len() < MAX_STEPS {
            self.trace.also_run.push(step);
        }
    }

    /// Find `program` as `execvp` would: a name with a slash from `cwd`, else along PATH.
    fn find_program(&self, ctx: &Ctx, program: &str) -> Option<(String, Resolved<'a>)> {
        if program.contains('/') {
            let r = self.vfs.resolve(&ctx.cwd, program)?;
            return matches!(r.node, Node::File { .. }).then(|| (join(&ctx.cwd, program), r));
        }
        let path = ctx
            .env
            .get("PATH")
            .cloned()
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        for dir in path.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let candidate = join(&join(&ctx.cwd, dir), program);
            if let Some(r) = self.vfs.resolve("", &candidate)
                && matches!(r.node, Node::File { exec: true, .. })
            {
                return Some((candidate, r));
            }
        }
        None
    }

    /// Runs `body` for as long as `next` says, asked before each iteration (`Some(true)`:
    /// run it, `Some(false)`: the loop ends, `None`: not known); `around`: the loop sits
    /// under an undecided condition. What a loop that cannot be run through did is undone:
    /// the variables, the shell's state and the trace are as they were before it (the call
    /// budget it used stays used).
    #[allow(clippy::too_many_arguments)]
    fn run_loop(
        &mut self,
        body: &Body<'_>,
        vars: &mut Vars,
        ctx: &mut Ctx,
        last: &mut Option<(Vec<String>, Ctx, String)>,
        from: &str,
        around: bool,
        mut next: impl FnMut(&Self, &mut Vars, &mut Ctx) -> Option<bool>,
    ) -> LoopRun {
        let before = (vars.clone(), ctx.clone(), self.trace.clone(), last.clone());
        let outer = std::mem::replace(&mut ctx.conditional, around);
        ctx.loop_depth += 1;
        let mut iterations = 0;
        let run = loop {
            match next(self, vars, ctx) {
                Some(true) => {}
                Some(false) => break LoopRun::Done,
                None => break LoopRun::NotRun,
            }
            iterations += 1;
            if iterations > MAX_LOOP_ITERATIONS || self.over_call_budget(from) {
                break LoopRun::NotRun;
            }
            let flow = self.block(
                body.label,
                body.script,
                body.range.clone(),
                body.functions,
                vars,
                ctx,
                last,
            );
            match flow {
                Flow::Continue | Flow::Next => {}
                Flow::Break => break LoopRun::Done,
                Flow::Uncertain => break LoopRun::NotRun,
                Flow::Exec | Flow::Exit | Flow::Return(_) => break LoopRun::Ended(flow),
            }
        };
        ctx.conditional = outer;
        ctx.loop_depth -= 1;
        if matches!(run, LoopRun::NotRun) {
            (*vars, *ctx, self.trace, *last) = before;
            if self.function_calls.get() > MAX_FUNCTION_CALLS {
                // The attempt used up the budget, and its note went with it.
                self.note_call_budget_spent(from);
            }
        }
        run
    }

    /// What `words` may also expand to, each variable they name in turn given each other
    /// value it may hold ([`Vars::candidates`]; `"$@"` and the positional parameters
    /// each other list of them): the distinct fully known expansions other than the one
    /// the variables' kept values give, from at most [`shell::MAX_CANDIDATES`] such
    /// values (each put in place and taken back: no copy of the variables).
    fn alternatives(
        &self,
        words: &[shell::Word],
        vars: &mut Vars,
        ctx: &Ctx,
        functions: &BTreeMap<String, (usize, usize)>,
    ) -> Vec<Vec<String>> {
        if vars.candidates.is_empty() && vars.positional_candidates.is_empty() {
            return Vec::new();
        }
        let expand_all = |vars: &Vars| -> Option<Vec<String>> {
            let mut out = Vec::new();
            for w in words {
                out.extend(self.expand(w, vars, ctx, functions)?);
            }
            Some(out)
        };
        let named: BTreeSet<String> = words
            .iter()
            .flat_map(|w| &w.parts)
            .filter_map(|p| match p {
                shell::Part::Var { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        let kept = expand_all(vars);
        let mut tried = 0;
        let mut out: Vec<Vec<String>> = Vec::new();
        let consider = |argv: Option<Vec<String>>, out: &mut Vec<Vec<String>>| {
            if let Some(argv) = argv
                && Some(&argv) != kept.as_ref()
                && argv.first().is_some_and(|program| !program.is_empty())
                && !out.contains(&argv)
            {
                out.push(argv);
            }
        };
        for name in &named {
            let values: Vec<String> = match vars.candidates.get(name) {
                Some(values) => values.iter().flatten().cloned().collect(),
                None => continue,
            };
            for value in values {
                if tried == shell::MAX_CANDIDATES {
                    return out;
                }
                tried += 1;
                let was_unknown = vars.unknown.remove(name);
                let was = vars.named.insert(name.clone(), value);
                consider(expand_all(vars), &mut out);
                match was {
                    Some(v) => vars.named.insert(name.clone(), v),
                    None => vars.named.remove(name),
                };
                if was_unknown {
                    vars.unknown.insert(name.clone());
                }
            }
        }
        let positional = named.iter().any(|n| {
            matches!(n.as_str(), "@" | "*" | "#") || n.bytes().all(|b| b.is_ascii_digit())
        });
        if positional {
            for k in 0..vars.positional_candidates.len() {
                if tried == shell::MAX_CANDIDATES {
                    break;
                }
                tried += 1;
                std::mem::swap(&mut vars.positional, &mut vars.positional_candidates[k]);
                consider(expand_all(vars), &mut out);
                std::mem::swap(&mut vars.positional, &mut vars.positional_candidates[k]);
            }
        }
        out
    }

    /// [`shell::expand`] with `$(command -v NAME)` answered by the image.
    fn expand(
        &self,
        word: &shell::Word,
        vars: &Vars,
        ctx: &Ctx,
        functions: &BTreeMap<String, (usize, usize)>,
    ) -> Option<Vec<String>> {
        let image = ScriptImage::new(self, ctx, functions);
        shell::expand_with(word, vars, &image)
    }

    /// Counts a shell function call or sourced script; true (noted once) past
    /// [`MAX_FUNCTION_CALLS`].
    fn over_call_budget(&mut self, from: &str) -> bool {
        let calls = self.function_calls.get() + 1;
        self.function_calls.set(calls);
        if calls == MAX_FUNCTION_CALLS + 1 {
            self.note_call_budget_spent(from);
        }
        calls > MAX_FUNCTION_CALLS
    }

    /// Counts a command walked; true (noted once) past [`WALK_PER_COMMAND`] × the commands
    /// parsed + [`WALK_BASE`]. Function calls and loops walk their bodies again, so without
    /// this a long function called many times costs its length × the calls.
    fn over_walk_budget(&mut self, from: &str) -> bool {
        let walked = self.walked.get() + 1;
        self.walked.set(walked);
        let budget = WALK_PER_COMMAND * self.parsed.get() + WALK_BASE;
        if walked <= budget {
            return false;
        }
        let stopped =
            "stopped following shell scripts: more commands walked than their length allows";
        if !self.trace.notes.iter().any(|n| n.ends_with(stopped)) {
            self.note(format!("{from}: {stopped}"));
        }
        true
    }

    /// Notes (once) that the call budget is spent.
    fn note_call_budget_spent(&mut self, from: &str) {
        let spent = format!(
            "stopped following shell functions and sourced scripts after {MAX_FUNCTION_CALLS} calls"
        );
        if !self.trace.notes.iter().any(|n| n.ends_with(&spent)) {
            self.note(format!("{from}: {spent}"));
        }
    }

    /// Follow `argv` run from `from`.
    fn run(&mut self, argv: &[String], ctx: &Ctx, from: String) {
        let Some(program) = argv.first() else {
            return;
        };
        self.steps.set(self.steps.get() + 1);
        if self.steps.get() > MAX_STEPS || ctx.depth > MAX_DEPTH {
            self.note(format!("{from}: stopped following at {program} (too deep)"));
            return;
        }
        let Some((invoked, found)) = self.find_program(ctx, program) else {
            if program == "?" {
                // A word the script computes (`set -- $(cat file)`, then `exec "$@"`).
                self.note(format!("{from}: the command is not known statically"));
            } else {
                self.note(format!("{from}: {program} is not in the image"));
            }
            return;
        };
        let path = format!("/{}", found.path);
        let node = found.node;
        self.push(Step {
            path: path.clone(),
            argv: argv.to_vec(),
            from,
        });
        // Behaviour follows the name it was invoked by (busybox applets, python3 → 3.11).
        let name = basename(&invoked).to_string();
        let args = &argv[1..];
        let here = format!("/{invoked}");
        match name.as_str() {
            "env" => {
                let mut ctx = ctx.clone();
                let mut i = 0;
                while let Some(a) = args.get(i) {
                    if a == "--" {
                        i += 1;
                        break;
                    } else if a == "-i" || a == "--ignore-environment" {
                        ctx.env.clear();
                    } else if a.starts_with('-') {
                        if env_takes_value(a) {
                            i += 1;
                        }
                    } else if let Some((k, v)) = a.split_once('=') {
                        ctx.env.insert(k.to_string(), v.to_string());
                    } else {
                        break;
                    }
                    i += 1;
                }
                self.run(&args[i.min(args.len())..], &ctx, here)
            }
            n if wrapper(n).is_some() => match wrapper(n).and_then(|w| w.command(args)) {
                Some(Wrapped::Argv(at)) => self.run(&args[at..], ctx, here),
                // `flock FILE -c CMD`, `su USER -c CMD`: the command line, by a shell.
                Some(Wrapped::Shell(line)) => {
                    self.run(&["/bin/sh".into(), "-c".into(), line], ctx, here)
                }
                None => {}
            },
            "busybox" if args.first().is_some_and(|a| is_shell(a)) => {
                self.shell(args.get(1..).unwrap_or_default(), ctx, &path, false)
            }
            n if is_shell(n) => {
                self.shell(args, ctx, &path, n == "bash" || path.ends_with("/bash"))
            }
            n if is_python(n) => self.python(&invoked, &found.path, args, ctx),
            // Debian builds uWSGI with its Python plugin as `uwsgi_python3` (and per
            // version, `uwsgi_python311`).
            n if n == "uwsgi" || n.starts_with("uwsgi_python") => {
                self.uwsgi(&invoked, &found.path, args, ctx)
            }
            "node" | "nodejs" => self.node(args, ctx),
            "java" => self.java(args, ctx),
            // Tomcat's own launcher (the official image's `catalina.sh run`): it builds
            // the `java` command line from CATALINA_HOME (its own directory's parent
            // unless set) and CATALINA_BASE (CATALINA_HOME unless set).
            "catalina.sh" => {
                let home = ctx
                    .env_dir("CATALINA_HOME")
                    .unwrap_or_else(|| parent(parent(&found.path)).to_string());
                let base = ctx.env_dir("CATALINA_BASE").unwrap_or_else(|| home.clone());
                // The system properties it passes to `java` from JAVA_OPTS and
                // CATALINA_OPTS.
                let system: BTreeMap<String, String> = ["JAVA_OPTS", "CATALINA_OPTS"]
                    .iter()
                    .filter_map(|var| ctx.env.get(*var))
                    .flat_map(|opts| opts.split_whitespace())
                    .filter_map(|word| word.strip_prefix("-D")?.split_once('='))
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect();
                self.tomcat(&home, &base, &system, args, &here);
            }
            // WildFly's launcher: JBOSS_HOME (its own directory's parent unless set) and
            // the server's base directory (JBOSS_BASE_DIR, else `standalone`).
            "standalone.sh" => {
                let home = ctx
                    .env_dir("JBOSS_HOME")
                    .unwrap_or_else(|| parent(parent(&found.path)).to_string());
                let base = ctx
                    .env_dir("JBOSS_BASE_DIR")
                    .unwrap_or_else(|| join(&home, "standalone"));
                self.wildfly(&home, &base, args, &here);
            }
            n if is_ruby(n) => self.ruby(&found.path, args, ctx),
            n if is_php_cli(n) => self.php(args, ctx),
            "dotnet" => self.dotnet(args, ctx),
            // A .NET application's own launcher (apphost) beside its `.runtimeconfig.json`.
            _ if self
                .vfs
                .resolve("", &format!("{}.runtimeconfig.json", found.path))
                .is_some() =>
            {
                self.dotnet_application(&found.path);
            }
            _ => {
                // A script run directly: its shebang names the interpreter.
                if let Node::File {
                    text: Some(text), ..
                } = node
                    && let Some(line) = text.strip_prefix("#!")
                {
                    let line = line.lines().next().unwrap_or_default().trim();
                    let mut parts = line.splitn(2, [' ', '\t']);
                    let interp = parts.next().unwrap_or_default().to_string();
                    let mut new: Vec<String> = vec![interp];
                    if let Some(arg) = parts.next().map(str::trim).filter(|a| !a.is_empty()) {
                        new.push(arg.to_string());
                    }
                    new.push(here.clone());
                    new.extend(args.iter().cloned());
                    self.trace.scripts.insert(path.clone());
                    self.run(&new, ctx, format!("shebang of {path}"));
                }
            }
        }
    }

    /// `sh [-eux] [-o opt] -c SCRIPT [$0 args…]` or `sh [options] FILE args…`.
    /// `bash`: the shell is bash (whose `FUNCNAME` is then known).
    fn shell(&mut self, args: &[String], ctx: &Ctx, shell_path: &str, bash: bool) {
        let mut i = 0;
        let mut command = false;
        while let Some(a) = args.get(i) {
            if a == "--" {
                i += 1;
                break;
            }
            if a == "-o" || a == "+o" || a == "-O" || a == "+O" {
                i += 2;
                continue;
            }
            if let Some(flags) = a.strip_prefix('-').filter(|_| a.len() > 1) {
                if !flags.starts_with('-') && flags.contains('c') {
                    command = true;
                }
                i += 1;
                continue;
            }
            if a.starts_with('+') && a.len() > 1 {
                i += 1;
                continue;
            }
            break;
        }
        let rest = &args[i.min(args.len())..];
        let Some(first) = rest.first() else {
            return; // an interactive shell: the shell is the program
        };
        // `$0`: the name after `-c SCRIPT`, else the script as given.
        let (label, text, positional, zero) = if command {
            (
                format!("{shell_path} -c"),
                first.clone(),
                rest.get(2..).unwrap_or_default().to_vec(),
                rest.get(1).cloned(),
            )
        } else {
            let Some(r) = self.vfs.resolve(&ctx.cwd, first) else {
                self.note(format!("{shell_path}: script {first} is not in the image"));
                return;
            };
            let file = format!("/{}", r.path);
            let Some(text) = self.vfs.text(&r.path) else {
                self.note(format!("{file}: not a readable script"));
                return;
            };
            self.trace.scripts.insert(file.clone());
            (
                file,
                text.to_string(),
                rest[1..].to_vec(),
                Some(first.clone()),
            )
        };
        let mut vars = Vars {
            named: ctx.env.clone(),
            positional,
            funcname: bash.then(Vec::new),
            bash_source: if bash && !command { zero.clone() } else { None },
            zero,
            ..Vars::default()
        };
        let mut ctx = ctx.clone();
        ctx.depth += 1;
        // A new process: whether it runs at all is the caller's to know.
        ctx.conditional = false;
        self.script(&label, &text, &mut vars, &mut ctx);
    }

    /// Run a script's text: follow `exec`, or else its last command, as the main program;
    /// every other command it runs is traced too.
    fn script(&mut self, label: &str, text: &str, vars: &mut Vars, ctx: &mut Ctx) {
        let commands = match shell::parse(text) {
            Ok(c) => c,
            Err(e) => {
                self.note(format!("{label}: {e}"));
                return;
            }
        };
        self.parsed.set(self.parsed.get() + commands.len());
        let functions = function_bodies(&commands);
        let mut last: Option<(Vec<String>, Ctx, String)> = None;
        let flow = self.block(
            label,
            &commands,
            0..commands.len(),
            &functions,
            vars,
            ctx,
            &mut last,
        );
        if let Some((argv, ctx, from)) = last {
            if matches!(
                flow,
                Flow::Continue | Flow::Break | Flow::Next | Flow::Uncertain
            ) {
                // The script ends with this command: the program the container keeps
                // running.
                self.run(&argv, &ctx, from);
            } else {
                self.run_aside(&argv, &ctx, from);
            }
        }
        self.substitution_programs(label, &commands, &functions, vars, ctx);
    }

    /// The programs the command substitutions anywhere in `commands` run (`$(curl …)`,
    /// `` `id -u` ``, `$(dirname …)`), each traced once as a program that may run: whether
    /// the command holding one runs is not asked, so a substitution in a branch not taken
    /// still counts (the Usage view errs towards used). A shell function called in one
    /// is followed as a function called under an undecided condition. Traced after the
    /// script's own programs, so they never take the budget the main program needs.
    fn substitution_programs(
        &mut self,
        label: &str,
        commands: &[Command],
        functions: &BTreeMap<String, (usize, usize)>,
        vars: &Vars,
        ctx: &Ctx,
    ) {
        let mut ctx = ctx.clone();
        ctx.conditional = true;
        let mut seen = BTreeSet::new();
        let mut pending: Vec<(String, usize, usize)> = Vec::new();
        let collect = |pending: &mut Vec<_>, notes: &mut Vec<String>, c: &Command, depth| {
            let in_heredocs = c.heredoc.iter().map(|t| t.as_deref());
            for text in c
                .words
                .iter()
                .flat_map(shell::substitution_texts)
                .chain(in_heredocs)
            {
                match text {
                    Some(text) => pending.push((text.to_string(), c.line, depth)),
                    None => notes.push(format!(
                        "{label}:{}: a command substitution longer than {} bytes is not followed",
                        c.line,
                        shell::MAX_SUBSTITUTION_TEXT
                    )),
                }
            }
        };
        let mut notes = Vec::new();
        for c in commands {
            collect(&mut pending, &mut notes, c, 0);
        }
        while let Some((text, line, depth)) = pending.pop() {
            // (Not counted as parsed: the walk budget is the script's, and these are
            // parsed again at each depth.)
            let Ok(inner) = shell::parse(&text) else {
                continue;
            };
            let from = format!("{label}:{line}");
            for c in &inner {
                if depth < MAX_SUBSTITUTION_DEPTH {
                    collect(&mut pending, &mut notes, c, depth + 1);
                }
                if c.case_item || c.defines_function {
                    continue;
                }
                let mut words = &c.words[..];
                while words.first().is_some_and(|w| keyword(w).is_some())
                    || words.first().is_some_and(|w| w.assignment().is_some())
                {
                    words = &words[1..];
                }
                let Some(program) = words
                    .first()
                    .and_then(|w| self.expand(w, vars, &ctx, functions))
                else {
                    continue;
                };
                let Some(program) = program.into_iter().next() else {
                    continue;
                };
                if SHELL_BUILTINS.contains(&program.as_str()) || !seen.insert(program.clone()) {
                    continue;
                }
                if let Some(&(start, end)) = functions.get(&program) {
                    // Run in the substitution's subshell: nothing it sets is kept.
                    if ctx.depth >= MAX_DEPTH || self.over_call_budget(&from) {
                        continue;
                    }
                    let (mut vars, mut ctx) = (vars.clone(), ctx.clone());
                    ctx.depth += 1;
                    let mut last = None;
                    self.block(
                        label,
                        commands,
                        start..end,
                        functions,
                        &mut vars,
                        &mut ctx,
                        &mut last,
                    );
                    if let Some((argv, ctx, from)) = last {
                        self.run_aside(&argv, &ctx, from);
                    }
                    continue;
                }
                let argv: Vec<String> = words
                    .iter()
                    .flat_map(|w| {
                        self.expand(w, vars, &ctx, functions)
                            .unwrap_or_else(|| vec!["?".to_string()])
                    })
                    .collect();
                self.run_aside(&argv, &ctx, from.clone());
            }
        }
        for note in notes {
            self.note(note);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &mut self,
        label: &str,
        script: &[Command],
        range: std::ops::Range<usize>,
        functions: &BTreeMap<String, (usize, usize)>,
        vars: &mut Vars,
        ctx: &mut Ctx,
        last: &mut Option<(Vec<String>, Ctx, String)>,
    ) -> Flow {
        // `functions` holds ranges of the whole `script`, so a function body is run as a
        // range of it, and indices here are the script's, not the block's.
        let offset = range.start;
        let commands = &script[range];
        let mut skip_until = 0;
        // Inside `if`, `case` or a loop: an `exec` there may not happen, so it is
        // followed as a program that may run, and the script goes on.
        let mut loops = 0usize;
        // Open `if`s and `case`s: which branch runs, when a string test or a pattern
        // decides it.
        let mut ifs = Branches::default();
        // The commands up to this index sit in a `{ … }` group that may run.
        let mut maybe_until: Option<usize> = None;
        // Each open `case`'s word, when known.
        let mut cases: Vec<Option<String>> = Vec::new();
        for (k, command) in commands.iter().enumerate() {
            if self.over_walk_budget(label) {
                return Flow::Exit;
            }
            let i = offset + k;
            if i < skip_until {
                continue;
            }
            if command.case_item {
                // `a | b)`: this item runs when one of its patterns matches and no item
                // before did.
                let Some(subject) = cases.last() else {
                    continue;
                };
                let matched = match subject {
                    None => None,
                    Some(subject) => {
                        // An unknown pattern leaves the item unknown unless another matches.
                        let mut answer = Some(false);
                        for w in &command.words {
                            answer = or3(answer, case_pattern(w).and_then(|p| p.matches(subject)));
                        }
                        answer
                    }
                };
                let decided = match matched {
                    Some(true) => Branch::Running,
                    Some(false) => Branch::Skipping,
                    None => Branch::Unknown,
                };
                ifs.next(decided);
                continue;
            }
            if command.defines_function {
                if let Some(name) = command.words.first().and_then(|w| w.literal())
                    && let Some((_, end)) = functions.get(&name)
                {
                    skip_until = *end;
                }
                continue;
            }
            // `TEST && COMMAND`, `cd DIR || exit 1`, `TEST || { …; exit 1; }`: a simple
            // command or a `{ … }` group joined to others runs as they decide.
            let opens_group = command.words.first().is_some_and(|w| w.is_literal("{"));
            let mut chained = if starts_simple_command(&command.words) || opens_group {
                let image = ScriptImage::new(self, ctx, functions).of(label, script);
                chain_runs(script, offset, i, vars, &image)
            } else {
                Runs::Yes
            };
            if opens_group && chained != Runs::Yes {
                match group_end(&script[..offset + commands.len()], i) {
                    Some(end) if chained == Runs::No => {
                        skip_until = end + 1;
                        continue;
                    }
                    Some(end) => maybe_until = Some(maybe_until.map_or(end, |u| u.max(end))),
                    None => chained = Runs::Maybe,
                }
            }
            if chained == Runs::No {
                continue;
            }
            if maybe_until.is_some_and(|until| i <= until) {
                chained = Runs::Maybe;
            }
            let from = format!("{label}:{}", command.line);
            // Reserved words in front of a command are no programs.
            let mut words = &command.words[..];
            let mut opens: Option<&str> = None;
            // `if ! CONDITION`: the condition's first command negated.
            let mut negated = false;
            // `if { …; }`: the condition from its group on.
            let mut condition_words = None;
            // `while CONDITION` / `until CONDITION`: whether it is `until`, and the
            // condition's words.
            let mut loop_condition = None;
            while let Some(w) = words.first().and_then(|w| w.literal())
                && matches!(
                    w.as_str(),
                    "if" | "then"
                        | "else"
                        | "elif"
                        | "do"
                        | "while"
                        | "until"
                        | "!"
                        | "{"
                        | "fi"
                        | "done"
                        | "esac"
                        | "}"
                        | "time"
                )
            {
                match w.as_str() {
                    "if" => opens = Some("if"),
                    "elif" => opens = Some("elif"),
                    "!" if opens.is_some() && condition_words.is_none() => negated = !negated,
                    "{" if opens.is_some() && condition_words.is_none() => {
                        condition_words = Some(words)
                    }
                    "else" => ifs.next(Branch::Running),
                    "fi" => {
                        ifs.pop();
                    }
                    "while" | "until" if loop_condition.is_none() => {
                        loop_condition = Some((w == "until", &words[1..]));
                    }
                    "while" | "until" => loops += 1,
                    "done" => loops = loops.saturating_sub(1),
                    "esac" if !cases.is_empty() => {
                        cases.pop();
                        ifs.pop();
                    }
                    _ => {}
                }
                words = &words[1..];
            }
            if let Some((until, condition_words)) = loop_condition {
                // `while`/`until`: run through while its condition is known, else (and
                // when skipped) its body may run, as before.
                let whole = &script[..offset + commands.len()];
                let skipped = ifs.skipped();
                let around = ctx.conditional || loops > 0 || ifs.undecided();
                if !skipped && let Some(end) = loop_end(whole, i) {
                    let image = ScriptImage::new(self, ctx, functions).of(label, script);
                    let (_, after) = condition(whole, i, (condition_words, false), vars, &image);
                    let body = Body {
                        label,
                        script,
                        range: after.min(end)..end,
                        functions,
                    };
                    let run = self.run_loop(
                        &body,
                        vars,
                        ctx,
                        last,
                        &from,
                        around,
                        |tracer, vars, ctx| {
                            let image = ScriptImage::new(tracer, ctx, functions).of(label, script);
                            let (answer, _) =
                                condition(whole, i, (condition_words, false), vars, &image);
                            answer.map(|holds| holds != until)
                        },
                    );
                    match run {
                        LoopRun::Done => {
                            skip_until = end + 1; // past `done`
                            continue;
                        }
                        LoopRun::Ended(flow) => return flow,
                        LoopRun::NotRun => {}
                    }
                }
                loops += 1;
            }
            if let Some(w) = words.first().and_then(|w| w.literal())
                && matches!(w.as_str(), "for" | "case" | "function" | "select")
            {
                let skipped = ifs.skipped();
                match w.as_str() {
                    "for"
                        if !skipped
                            && let Some((name, values, end)) =
                                for_loop(&script[..offset + commands.len()], i, words, vars) =>
                    {
                        // `for NAME [in WORDS]` over known words: its body runs for each.
                        let around = ctx.conditional || loops > 0 || ifs.undecided();
                        let mut values = values.into_iter();
                        let body = Body {
                            label,
                            script,
                            range: i + 1..end,
                            functions,
                        };
                        let run =
                            self.run_loop(&body, vars, ctx, last, &from, around, |_, vars, ctx| {
                                let value = values.next();
                                let more = value.is_some();
                                if let Some(value) = value {
                                    assign(vars, ctx, &name, Some(value), true);
                                }
                                Some(more)
                            });
                        match run {
                            LoopRun::Done => skip_until = end + 1, // past `done`
                            LoopRun::Ended(flow) => return flow,
                            LoopRun::NotRun => {
                                loops += 1;
                                vars.assign(&name, None);
                                ctx.env.remove(&name);
                            }
                        }
                    }
                    "for" | "select" => {
                        loops += 1;
                        // The loop is not run through: its variable holds what only
                        // running it tells.
                        if !skipped && let Some(name) = words.get(1).and_then(|w| w.literal()) {
                            vars.assign(&name, None);
                            ctx.env.remove(&name);
                        }
                    }
                    "case" => {
                        // `case WORD in`: its items are decided as `elif`s are, by
                        // matching WORD when it is known.
                        let subject = words
                            .get(1)
                            .and_then(|w| self.expand(w, vars, ctx, functions))
                            .and_then(|fields| match fields.len() {
                                0 => Some(String::new()),
                                1 => fields.into_iter().next(),
                                _ => None, // split by IFS: the spaces are not known
                            });
                        cases.push(subject);
                        ifs.push(if skipped {
                            Branch::Done
                        } else {
                            Branch::Skipping
                        });
                    }
                    _ => {}
                }
                continue;
            }
            if let Some(kind) = opens {
                // `if`/`elif` CONDITION: tests of known values, joined by `&&` and `||`,
                // decide the branch; the image answers `command -v` and file tests.
                let image = ScriptImage::new(self, ctx, functions).of(label, script);
                let (test, after) = condition(
                    &script[..offset + commands.len()],
                    i,
                    (condition_words.unwrap_or(words), negated),
                    vars,
                    &image,
                );
                let decided = match test {
                    Some(true) => Branch::Running,
                    Some(false) => Branch::Skipping,
                    None => Branch::Unknown,
                };
                let outer_skipped = ifs.skipped();
                if kind == "if" {
                    ifs.push(if outer_skipped { Branch::Done } else { decided });
                } else {
                    ifs.next(decided);
                }
                if test.is_some() {
                    skip_until = after;
                    continue;
                }
            }
            if ifs.skipped() {
                continue;
            }
            let conditional =
                ctx.conditional || loops > 0 || ifs.undecided() || chained == Runs::Maybe;
            // Leading assignments: the command's environment, or the shell's variables.
            let mut assigned = BTreeMap::new();
            while let Some((name, value)) = words.first().and_then(|w| w.assignment()) {
                let value = self
                    .expand(&value, vars, ctx, functions)
                    .map(|f| f.join(" "));
                assigned.insert(name, value);
                words = &words[1..];
            }
            if words.is_empty() {
                for (k, v) in assigned {
                    assign(vars, ctx, &k, v, !conditional);
                }
                continue;
            }
            let mut argv = Vec::new();
            let mut known = true;
            // Where a word only running the script tells stands (as `?`).
            let mut unknown_at = BTreeSet::new();
            for (n, w) in words.iter().enumerate() {
                match self.expand(w, vars, ctx, functions) {
                    Some(fields) => argv.extend(fields),
                    None if n == 0 => known = false,
                    None => {
                        unknown_at.insert(argv.len());
                        argv.push("?".into());
                    }
                }
            }
            // Many words each expanding "$@": bounded like one word's expansion.
            if argv.len() > shell::MAX_EXPANDED_FIELDS
                || argv.iter().map(String::len).sum::<usize>() > shell::MAX_EXPANDED_BYTES
            {
                known = false;
            }
            if !known {
                self.note(format!("{from}: the command is not known statically"));
                continue;
            }
            let Some(program) = argv.first().cloned() else {
                continue;
            };
            let mut run_ctx = ctx.clone();
            for (k, v) in &assigned {
                match v {
                    Some(v) => run_ctx.env.insert(k.clone(), v.clone()),
                    None => run_ctx.env.remove(k),
                };
            }
            match program.as_str() {
                "exec" => {
                    let options = exec_options(&argv[1..]);
                    let rest: Vec<String> = argv[1 + options..].to_vec();
                    if rest.is_empty() {
                        continue; // `exec >log 2>&1`: redirections only
                    }
                    if unknown_at.contains(&(1 + options)) {
                        // The script becomes a program it alone names.
                        self.note(format!("{from}: the command is not known statically"));
                        if conditional {
                            continue;
                        }
                        if let Some((argv, ctx, from)) = last.take() {
                            self.run_aside(&argv, &ctx, from);
                        }
                        return Flow::Exec;
                    }
                    // The programs it may exec instead, where an assignment or `set --`
                    // before it may not have run (its options counted in each: they are
                    // fields, not words).
                    for mut other in self.alternatives(&words[1..], vars, ctx, functions) {
                        let other = other.split_off(exec_options(&other).min(other.len()));
                        if !other.is_empty() && other.first() != rest.first() {
                            self.run_aside(&other, &run_ctx, from.clone());
                        }
                    }
                    if conditional {
                        self.side(&rest, &run_ctx, from, last);
                        continue;
                    }
                    // What ran before it ran on the side.
                    if let Some((argv, ctx, from)) = last.take() {
                        self.run_aside(&argv, &ctx, from);
                    }
                    self.run_as(true, &rest, &run_ctx, from);
                    return Flow::Exec;
                }
                "return" if !conditional => {
                    let status = match argv.get(1) {
                        None => None, // the last command's status
                        Some(_) if unknown_at.contains(&1) => None,
                        Some(n) => n.parse::<i32>().ok(),
                    };
                    return Flow::Return(status);
                }
                "exit" if !conditional => return Flow::Exit,
                "exit" | "return" => {
                    // It may end the function here: its status is not known.
                    self.unsure = true;
                }
                "cd" => {
                    let dir = match argv.get(1..).unwrap_or_default() {
                        [] => ctx.env.get("HOME").cloned(),
                        [dir] if !dir.starts_with('-') && !unknown_at.contains(&1) => {
                            Some(dir.clone())
                        }
                        _ => None, // `cd -`, options, a directory the script computes
                    };
                    // Programs are still looked for from where it may go; tests of
                    // relative paths are not answered after a `cd` that may not run.
                    match dir {
                        Some(dir) => {
                            ctx.cwd = join(&ctx.cwd, &dir);
                            ctx.cwd_unknown |= conditional;
                        }
                        None => ctx.cwd_unknown = true,
                    }
                }
                "export" | "local" | "readonly" | "declare" | "typeset" => {
                    for w in &words[1..] {
                        if let Some((k, v)) = w.assignment() {
                            // `export A=$(…)`: A is unknown from here.
                            let v = self.expand(&v, vars, ctx, functions).map(|f| f.join(" "));
                            assign(vars, ctx, &k, v, !conditional);
                            continue;
                        }
                        // `export "A=b c"`, `export A`.
                        for a in self.expand(w, vars, ctx, functions).unwrap_or_default() {
                            if let Some((k, v)) = a.split_once('=') {
                                if shell::is_name(k) {
                                    assign(vars, ctx, k, Some(v.to_string()), !conditional);
                                }
                            } else if let Some(v) = vars.named.get(&a) {
                                ctx.env.insert(a.clone(), v.clone());
                            }
                        }
                    }
                }
                "read" => {
                    // Its names (the options taking a value stepped over) get what is read.
                    let mut args = argv[1..].iter();
                    while let Some(a) = args.next() {
                        if matches!(a.as_str(), "-p" | "-t" | "-u" | "-d" | "-n" | "-N" | "-i") {
                            args.next();
                        } else if !a.starts_with('-') {
                            assign(vars, ctx, a, None, !conditional);
                        }
                    }
                }
                "set" => {
                    if let Some(at) = argv.iter().position(|a| a == "--") {
                        let mut new = argv.split_off(at + 1);
                        if new.len() > MAX_POSITIONAL {
                            // `set -- x "$@"` over and over: not followed further.
                            self.note(format!(
                                "{from}: more than {MAX_POSITIONAL} arguments are not followed"
                            ));
                            new = vec!["?".into()];
                        }
                        vars.set_positional(new, !conditional, None);
                    }
                }
                "shift" => {
                    let n: usize = argv.get(1).and_then(|n| n.parse().ok()).unwrap_or(1);
                    let n = n.min(vars.positional.len());
                    let shifted = vars.positional[n..].to_vec();
                    vars.set_positional(shifted, !conditional, Some(n));
                }
                "unset" => {
                    for a in &argv[1..] {
                        vars.before_assigning(a, !conditional);
                        vars.unset(a);
                        ctx.env.remove(a);
                    }
                }
                "." | "source" => {
                    let Some(file) = argv.get(1) else { continue };
                    if ctx.depth >= MAX_DEPTH || self.over_call_budget(&from) {
                        continue;
                    }
                    match self.vfs.resolve(&ctx.cwd, file) {
                        Some(r) => {
                            let path = format!("/{}", r.path);
                            let Some(text) = self.vfs.text(&r.path).map(str::to_string) else {
                                self.note(format!("{from}: {path} is not a readable script"));
                                continue;
                            };
                            self.trace.scripts.insert(path.clone());
                            ctx.depth += 1;
                            let inner = match shell::parse(&text) {
                                Ok(c) => c,
                                Err(e) => {
                                    self.note(format!("{path}: {e}"));
                                    ctx.depth -= 1;
                                    continue;
                                }
                            };
                            self.parsed.set(self.parsed.get() + inner.len());
                            let inner_functions = function_bodies(&inner);
                            let outer = std::mem::replace(&mut ctx.conditional, conditional);
                            // bash's `FUNCNAME` in a sourced script: not followed; its
                            // `BASH_SOURCE` is the file as given.
                            let funcname = vars.funcname.take();
                            let source = vars.bash_source.clone();
                            if source.is_some() {
                                vars.bash_source = Some(file.clone());
                            }
                            let flow = self.block(
                                &path,
                                &inner,
                                0..inner.len(),
                                &inner_functions,
                                vars,
                                ctx,
                                last,
                            );
                            vars.funcname = funcname;
                            vars.bash_source = source;
                            ctx.conditional = outer;
                            self.substitution_programs(&path, &inner, &inner_functions, vars, ctx);
                            ctx.depth -= 1;
                            // Its `return` ends the sourced script only.
                            if !matches!(flow, Flow::Continue | Flow::Return(_)) {
                                return flow;
                            }
                        }
                        None => self.note(format!("{from}: {file} is not in the image")),
                    }
                }
                "command" => {
                    // `command [-p] NAME ARGS` runs NAME; `command -v`/`-V` only looks it up.
                    let options = argv[1..].iter().take_while(|a| a.starts_with('-'));
                    if !options.clone().any(|a| a.contains(['v', 'V'])) {
                        let rest: Vec<String> = argv[1 + options.count()..].to_vec();
                        self.side(&rest, &run_ctx, from, last);
                    }
                }
                "break" | "continue" if loops == 0 && ctx.loop_depth > 0 => {
                    // Of the loop being run through (`break 2` and the like: not read).
                    let one_level = matches!(argv.get(1..), Some([] | [_]) if argv.get(1).is_none_or(|n| n == "1"));
                    return if conditional || !one_level {
                        Flow::Uncertain
                    } else if program == "break" {
                        Flow::Break
                    } else {
                        Flow::Next
                    };
                }
                ":" | "true" | "false" | "echo" | "printf" | "test" | "[" | "[[" | "trap"
                | "umask" | "ulimit" | "wait" | "break" | "continue" | "eval" | "alias"
                | "getopts" | "hash" | "type" | "pwd" | "let" | "shopt" => {}
                name if functions.contains_key(name) => {
                    let (start, end) = functions[name];
                    if ctx.depth >= MAX_DEPTH {
                        continue;
                    }
                    if self.over_call_budget(&from) {
                        continue;
                    }
                    // Where the caller's arguments may be others (`set --` that may not
                    // have run), so may the function's.
                    let positional_candidates =
                        self.alternatives(&words[1..], vars, ctx, functions);
                    let mut inner = vars.for_call(name, argv[1..].to_vec());
                    inner.positional_candidates = positional_candidates;
                    ctx.depth += 1;
                    let outer = std::mem::replace(&mut ctx.conditional, conditional);
                    let flow =
                        self.block(label, script, start..end, functions, &mut inner, ctx, last);
                    ctx.conditional = outer;
                    ctx.depth -= 1;
                    vars.named = inner.named;
                    vars.unknown = inner.unknown;
                    vars.candidates = inner.candidates;
                    match flow {
                        // `exit` in a function ends the script.
                        Flow::Exec | Flow::Exit => return flow,
                        // Of the loop the function is called in.
                        Flow::Break | Flow::Next | Flow::Uncertain => return flow,
                        Flow::Return(_) | Flow::Continue => {}
                    }
                }
                _ => self.side(&argv, &run_ctx, from, last),
            }
        }
        Flow::Continue
    }

    /// Follow `argv` as a program that may run (its steps to `also_run`).
    fn run_aside(&mut self, argv: &[String], ctx: &Ctx, from: String) {
        self.run_as(false, argv, ctx, from);
    }

    /// Follow `argv` as the main program (`main`) or one that may run, then go on as before.
    fn run_as(&mut self, main: bool, argv: &[String], ctx: &Ctx, from: String) {
        let outer = std::mem::replace(&mut self.main, main);
        self.run(argv, ctx, from);
        self.main = outer;
    }

    /// A command that is not `exec`: traced at once as a side program, and remembered as
    /// the last one (which, if the script ends there, is the main program).
    fn side(
        &mut self,
        argv: &[String],
        ctx: &Ctx,
        from: String,
        last: &mut Option<(Vec<String>, Ctx, String)>,
    ) {
        if argv.is_empty() {
            return;
        }
        if let Some((argv, ctx, from)) = last.take() {
            self.run_aside(&argv, &ctx, from);
        }
        *last = Some((argv.to_vec(), ctx.clone(), from));
    }

    /// `python [options] (-m MODULE | -c CODE | SCRIPT) args…`.
    fn python(&mut self, invoked: &str, resolved: &str, args: &[String], ctx: &Ctx) {
        self.trace.runtimes.insert("pypi".into());
        // sys.path: the site directories of the interpreter's prefix (as invoked, so a
        // virtual environment's; and as resolved, the base installation's).
        let site = self.python_site(&[parent(parent(invoked)), parent(parent(resolved))]);
        let python_path: Vec<String> = ctx
            .env
            .get("PYTHONPATH")
            .map(|p| {
                p.split(':')
                    .filter(|d| !d.is_empty())
                    .map(|d| join(&ctx.cwd, d))
                    .collect()
            })
            .unwrap_or_default();
        for d in &python_path {
            self.trace.language_dirs.insert(format!("/{d}"));
        }
        let mut i = 0;
        while let Some(a) = args.get(i) {
            match a.as_str() {
                "-c" => return,
                "-m" => {
                    let Some(module) = args.get(i + 1) else {
                        return;
                    };
                    let relative = module.replace('.', "/");
                    let mut dirs = vec![ctx.cwd.clone()];
                    dirs.extend(python_path.iter().cloned());
                    dirs.extend(
                        self.trace
                            .language_dirs
                            .iter()
                            .map(|d| d.trim_start_matches('/').to_string()),
                    );
                    dirs.extend(site.iter().cloned());
                    match self.find_python_module(&dirs, &relative, true) {
                        Some(path) => {
                            // The module's own package directory is reached.
                            self.trace
                                .language_dirs
                                .insert(format!("/{}", parent(&path)));
                            self.enter_script(
                                &path,
                                args[i..].to_vec(),
                                format!("python -m {module}"),
                            );
                        }
                        None => {
                            self.note(format!("python -m {module}: no such module in the image"))
                        }
                    }
                    return;
                }
                "-W" | "-X" | "--check-hash-based-pycs" => i += 2,
                "-" => return,
                s if s.starts_with('-') => i += 1,
                script => {
                    match self.vfs.resolve(&ctx.cwd, script) {
                        Some(r) => {
                            // sys.path[0]: the script's directory.
                            self.trace
                                .language_dirs
                                .insert(format!("/{}", parent(&r.path)));
                            self.enter_script(&r.path, args[i..].to_vec(), "python".into());
                        }
                        None => self.note(format!("python: script {script} is not in the image")),
                    }
                    return;
                }
            }
        }
    }

    /// The standard library directories (`lib/python3.X`) of the Python installations or
    /// virtual environments at `prefixes`; their `site-packages` and `dist-packages`
    /// (and, for the system's `/usr`, Debian's `/usr/local/lib/python3.X/dist-packages`)
    /// are marked reached.
    fn python_site(&mut self, prefixes: &[&str]) -> Vec<String> {
        let mut site = Vec::new();
        for prefix in prefixes {
            for lib in [join(prefix, "lib"), join(prefix, "local/lib")] {
                for dir in self.vfs.list(&lib) {
                    if dir.starts_with("python") {
                        site.push(join(&lib, dir));
                        for sub in ["site-packages", "dist-packages"] {
                            let d = join(&join(&lib, dir), sub);
                            if self.vfs.is_dir("", &d) {
                                self.trace.language_dirs.insert(format!("/{d}"));
                            }
                        }
                    }
                }
            }
        }
        if prefixes.contains(&"usr") {
            for dir in self.vfs.list("usr/local/lib") {
                if dir.starts_with("python") {
                    let d = join(&join("usr/local/lib", dir), "dist-packages");
                    if self.vfs.is_dir("", &d) {
                        self.trace.language_dirs.insert(format!("/{d}"));
                    }
                }
            }
        }
        site
    }

    /// The file a Python module (`relative`: its dotted name with slashes) is in, searched
    /// in `dirs` in order: `M.py`, then (when run as the main module) `M/__main__.py`,
    /// then the package's `M/__init__.py`; its path from the root, links resolved.
    fn find_python_module(&self, dirs: &[String], relative: &str, main: bool) -> Option<String> {
        let candidates = [
            Some(format!("{relative}.py")),
            main.then(|| format!("{relative}/__main__.py")),
            Some(format!("{relative}/__init__.py")),
        ];
        dirs.iter().find_map(|dir| {
            candidates
                .iter()
                .flatten()
                .find_map(|candidate| self.vfs.resolve(dir, candidate))
                .map(|r| r.path)
        })
    }

    /// A script (`path` from the root) the trace goes on into: recorded, and the next step.
    fn enter_script(&mut self, path: &str, argv: Vec<String>, from: String) {
        let file = format!("/{path}");
        self.trace.scripts.insert(file.clone());
        self.push(Step {
            path: file,
            argv,
            from,
        });
    }

    /// uWSGI serving a Python application: its options from the environment (`UWSGI_*`),
    /// then the command line (`--key value`, `--key=value`, the short `-H`, `-w`) and the
    /// configuration files either names (`--ini`, `--json`, `--yaml`, `--xml` and their
    /// short forms, or a bare `FILE.ini`/`.json`/`.yaml`/`.yml`/`.xml` argument; the file's
    /// `uwsgi` section or the one `FILE:section` names, with the files it names in turn and
    /// its magic variables), then placeholders (`%(key)`) and environment variables
    /// (`$(NAME)`) replaced as uWSGI does once it has read them all ([`uwsgi_expand`]); a
    /// later value of an option overrides an earlier one. The Python
    /// it embeds searches the site directories of its own prefix (a virtual environment's
    /// when pip installed it there, else the system's) and of `home` (`virtualenv`,
    /// `venv`, `pyhome`, `-H`), `pythonpath` and the application's directory `chdir`; the
    /// application is `module` (`wsgi`, `-w`; `package.module[:callable]`) or `wsgi-file`
    /// (`file`). Other plugins' applications are not read.
    fn uwsgi(&mut self, invoked: &str, resolved: &str, args: &[String], ctx: &Ctx) {
        self.trace.runtimes.insert("pypi".into());
        let mut options = UwsgiOptions::default();
        for (key, value) in uwsgi_env_options(&ctx.env) {
            self.uwsgi_option(key, value, ctx, &mut options);
        }
        let mut i = 0;
        while let Some(a) = args.get(i) {
            // A bare configuration file: its extension says its format.
            if let Some(format) = (!a.starts_with('-'))
                .then(|| UwsgiFormat::of_file(a))
                .flatten()
            {
                self.uwsgi_config_file(format, a, ctx, &mut options);
                i += 1;
                continue;
            }
            let (key, inline) = match a.strip_prefix("--") {
                Some(rest) => match rest.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (rest.to_string(), None),
                },
                None => match a.as_str() {
                    "-H" => ("home".to_string(), None),
                    "-w" => ("module".to_string(), None),
                    "-j" => ("json".to_string(), None),
                    "-y" => ("yaml".to_string(), None),
                    "-x" => ("xml".to_string(), None),
                    // Other short options, and their values.
                    _ => {
                        i += 1;
                        continue;
                    }
                },
            };
            let value = match inline {
                Some(v) => v,
                None => match args.get(i + 1) {
                    Some(v) if !v.starts_with('-') => {
                        i += 1;
                        v.clone()
                    }
                    // A flag without a value (`--master`).
                    _ => String::new(),
                },
            };
            i += 1;
            self.uwsgi_option(key, value, ctx, &mut options);
        }
        let mut options = options.list;
        uwsgi_expand(&mut options, &ctx.env);
        let last = |keys: &[&str]| {
            options
                .iter()
                .rev()
                .find(|(k, v)| keys.contains(&k.as_str()) && !v.is_empty())
                .map(|(_, v)| v.clone())
        };
        let chdir = last(&["chdir"]).map_or_else(|| ctx.cwd.clone(), |d| join(&ctx.cwd, &d));
        let home = last(&["home", "virtualenv", "venv", "pyhome"]).map(|h| join(&ctx.cwd, &h));
        let mut prefixes = vec![parent(parent(invoked)), parent(parent(resolved))];
        if let Some(home) = &home {
            prefixes.push(home);
        }
        let site = self.python_site(&prefixes);
        let mut search = vec![chdir.clone()];
        for (key, value) in &options {
            if matches!(key.as_str(), "pythonpath" | "python-path" | "pp") {
                let dir = join(&chdir, value);
                self.trace.language_dirs.insert(format!("/{dir}"));
                search.push(dir);
            }
        }
        search.extend(site);
        self.trace.language_dirs.insert(format!("/{chdir}"));
        if let Some(module) = last(&["module", "wsgi"]) {
            let module = module
                .split(':')
                .next()
                .unwrap_or_default()
                .replace('.', "/");
            match self.find_python_module(&search, &module, false) {
                Some(path) => self.enter_script(&path, args.to_vec(), "uwsgi module".into()),
                None => self.note(format!("uwsgi: module {module} is not in the image")),
            }
        } else if let Some(script) = last(&["wsgi-file", "file"]) {
            match self.vfs.resolve(&chdir, &script) {
                Some(r) => {
                    self.trace
                        .language_dirs
                        .insert(format!("/{}", parent(&r.path)));
                    self.enter_script(&r.path, args.to_vec(), "uwsgi wsgi-file".into());
                }
                None => self.note(format!("uwsgi: {script} is not in the image")),
            }
        } else {
            self.note("uwsgi: no Python application (module or wsgi-file) given".to_string());
        }
    }

    /// One uWSGI option into `options`; one that loads a configuration file (`ini`,
    /// `json`, …) appends that file's options instead, and `set`/`set-placeholder`
    /// (`set-ph`) `key=value` sets `key`.
    fn uwsgi_option(&mut self, key: String, value: String, ctx: &Ctx, options: &mut UwsgiOptions) {
        if let Some(format) = UwsgiFormat::of_option(&key) {
            self.uwsgi_config_file(format, &value, ctx, options);
        } else if matches!(key.as_str(), "set" | "set-placeholder" | "set-ph")
            && let Some((name, set)) = value.split_once('=')
        {
            options.list.push((name.to_string(), set.to_string()));
        } else {
            options.list.push((key, value));
        }
    }

    /// Appends the options of the configuration file `value` names (`FILE`, or
    /// `FILE:section` for a section other than `uwsgi`; relative to the working directory
    /// as uWSGI reads it) to `options`, its magic variables replaced; the files it names
    /// are read where they are named.
    fn uwsgi_config_file(
        &mut self,
        format: UwsgiFormat,
        value: &str,
        ctx: &Ctx,
        options: &mut UwsgiOptions,
    ) {
        if value.contains("://") {
            // uWSGI fetches `http://…` (and other schemes') configuration when it starts.
            self.note(format!(
                "uwsgi: configuration {value} is fetched, not in the image"
            ));
            return;
        }
        let (file, section) = match value.split_once(':') {
            Some((file, section)) => (file, Some(section)),
            None => (value, None),
        };
        if options.files == UWSGI_FILES {
            self.note(format!(
                "uwsgi: more than {UWSGI_FILES} configuration files; {file} was not read"
            ));
            return;
        }
        options.files += 1;
        let Some(r) = self.vfs.resolve(&ctx.cwd, file) else {
            self.note(format!("uwsgi: {file} is not in the image"));
            return;
        };
        let Some(text) = self.vfs.text(&r.path) else {
            self.note(format!("uwsgi: /{} was not read", r.path));
            return;
        };
        for (key, value) in format.options(text, section) {
            let value = uwsgi_magic(&value, &r.path, file);
            self.uwsgi_option(key, value, ctx, options);
        }
    }

    /// `node [options] SCRIPT args…`: the script and the `node_modules` directories
    /// `require` searches from it.
    fn node(&mut self, args: &[String], ctx: &Ctx) {
        if let Some(paths) = ctx.env.get("NODE_PATH") {
            for d in paths.split(':').filter(|d| !d.is_empty()) {
                self.trace
                    .language_dirs
                    .insert(format!("/{}", join(&ctx.cwd, d)));
            }
        }
        let mut i = 0;
        while let Some(a) = args.get(i) {
            match a.as_str() {
                "-e" | "--eval" | "-p" | "--print" | "-" => return,
                "-r"
                | "--require"
                | "--import"
                | "--loader"
                | "--experimental-loader"
                | "-C"
                | "--conditions"
                | "--title" => i += 2,
                s if s.starts_with('-') => i += 1,
                script => {
                    let Some(r) = self.vfs.resolve(&ctx.cwd, script) else {
                        self.note(format!("node: script {script} is not in the image"));
                        return;
                    };
                    let mut entry = r.path.clone();
                    if matches!(r.node, Node::Dir) || self.vfs.is_dir("", &r.path) {
                        entry = join(&r.path, "index.js");
                    }
                    let file = format!("/{entry}");
                    self.trace.scripts.insert(file.clone());
                    if let Some(manager) = package_manager(&entry) {
                        // `npm start`: what runs is the application's script, not npm.
                        self.push(Step {
                            path: file,
                            argv: args[i..].to_vec(),
                            from: "node".into(),
                        });
                        self.package_script(manager, &args[i + 1..], ctx);
                        return;
                    }
                    self.trace.runtimes.insert("npm".into());
                    let mut dir = parent(&entry).to_string();
                    loop {
                        if basename(&dir) != "node_modules" {
                            let nm = join(&dir, "node_modules");
                            if self.vfs.is_dir("", &nm) {
                                self.trace.language_dirs.insert(format!("/{nm}"));
                            }
                        }
                        if dir.is_empty() {
                            break;
                        }
                        dir = parent(&dir).to_string();
                    }
                    self.push(Step {
                        path: file,
                        argv: args[i..].to_vec(),
                        from: "node".into(),
                    });
                    return;
                }
            }
        }
    }

    /// `dotnet [options] APP.dll args…`: the application, whose NuGet packages its
    /// `APP.deps.json` beside it lists and its directory holds. `dotnet` commands of the
    /// SDK (`dotnet run`, `dotnet test`) are not followed.
    fn dotnet(&mut self, args: &[String], ctx: &Ctx) {
        let mut i = 0;
        while let Some(a) = args.get(i) {
            match a.as_str() {
                "exec" => i += 1,
                "--depsfile"
                | "--runtimeconfig"
                | "--additionalprobingpath"
                | "--additional-deps"
                | "--fx-version"
                | "--roll-forward" => i += 2,
                s if s.starts_with('-') => i += 1,
                app if app.ends_with(".dll") => {
                    match self.vfs.resolve(&ctx.cwd, app) {
                        Some(r) => {
                            let file = format!("/{}", r.path);
                            self.push(Step {
                                path: file,
                                argv: args[i..].to_vec(),
                                from: "dotnet".into(),
                            });
                            let launcher = r.path.strip_suffix(".dll").unwrap_or(&r.path);
                            self.dotnet_application(launcher);
                        }
                        None => self.note(format!("dotnet: {app} is not in the image")),
                    }
                    return;
                }
                other => {
                    self.note(format!("dotnet {other}: not followed"));
                    return;
                }
            }
        }
    }

    /// A .NET application (`dir/App`, for `App.dll`, `App.deps.json`): its directory is
    /// where its NuGet packages are loaded from.
    fn dotnet_application(&mut self, app: &str) {
        self.trace.runtimes.insert("nuget".into());
        self.trace.language_dirs.insert(format!("/{}", parent(app)));
    }

    /// `npm start`, `npm run NAME`, `yarn NAME`, `pnpm run NAME` …: the script the
    /// application's `package.json` (in the working directory) names, run by `sh -c` with
    /// `node_modules/.bin` first on the `PATH`, as the package managers run it (`npm start`
    /// without one runs `node server.js`). Anything else a package manager does is not
    /// followed, and leaves the use of npm packages not known.
    fn package_script(&mut self, manager: &str, args: &[String], ctx: &Ctx) {
        let words: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .filter(|a| !a.starts_with('-'))
            .collect();
        let name = match (manager, words.as_slice()) {
            (_, ["start", ..]) => "start",
            (_, ["test" | "t", ..]) => "test",
            (_, ["run" | "run-script" | "rum" | "urn", name, ..]) => name,
            ("yarn" | "pnpm", [name, ..]) => name,
            _ => {
                self.note(format!("{manager} {}: not followed", args.join(" ")));
                return;
            }
        };
        let manifest = join(&ctx.cwd, "package.json");
        let script = self
            .vfs
            .text(&manifest)
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .and_then(|json| json["scripts"][name].as_str().map(str::to_string))
            .or_else(|| {
                (name == "start" && self.vfs.resolve(&ctx.cwd, "server.js").is_some())
                    .then(|| "node server.js".to_string())
            });
        let Some(script) = script else {
            self.note(format!("{manager} {name}: no such script in /{manifest}"));
            return;
        };
        let mut ctx = ctx.clone();
        let bin = format!("/{}", join(&ctx.cwd, "node_modules/.bin"));
        let path = ctx.env.get("PATH").cloned().unwrap_or_default();
        ctx.env.insert("PATH".into(), format!("{bin}:{path}"));
        self.shell(
            &["-c".to_string(), script],
            &ctx,
            &format!("{manager} run {name}"),
            false, // `sh -c`
        );
    }

    /// `java [options] (-jar JAR | -cp PATH MAIN) args…`.
    fn java(&mut self, args: &[String], ctx: &Ctx) {
        let mut class_path: Option<String> = ctx.env.get("CLASSPATH").cloned();
        let mut properties: BTreeMap<&str, &str> = BTreeMap::new();
        let mut i = 0;
        while let Some(a) = args.get(i) {
            match a.as_str() {
                s if s.starts_with("-D") => {
                    if let Some((key, value)) = s[2..].split_once('=') {
                        properties.insert(key, value);
                    }
                    i += 1;
                }
                "-jar" => {
                    let Some(jar) = args.get(i + 1) else { return };
                    match self.vfs.resolve(&ctx.cwd, jar) {
                        Some(r) => {
                            let file = format!("/{}", r.path);
                            self.trace.language_files.insert(file.clone());
                            self.push(Step {
                                path: file,
                                argv: args[i..].to_vec(),
                                from: "java -jar".into(),
                            });
                            // Jetty's and WildFly's launchers load the deployed
                            // applications' jars themselves.
                            let home = parent(&r.path).to_string();
                            // Debian's start.jar is a link to jetty9-start.jar.
                            let named = join(&ctx.cwd, jar);
                            let name = if basename(&named) == "start.jar" {
                                "start.jar"
                            } else {
                                basename(&r.path)
                            };
                            match name {
                                "start.jar" => {
                                    // `jetty.base` as a property or a `key=value`
                                    // argument, else JETTY_BASE, else the working
                                    // directory (Jetty's own default); `jetty.home`
                                    // likewise, else where start.jar was named.
                                    let rest = &args[i + 2..];
                                    let setting = |key: &str| {
                                        properties.get(key).copied().or_else(|| {
                                            rest.iter().find_map(|a| {
                                                a.strip_prefix(key)?.strip_prefix('=')
                                            })
                                        })
                                    };
                                    let base = setting("jetty.base")
                                        .or(ctx.env.get("JETTY_BASE").map(String::as_str))
                                        .map_or_else(|| join("", &ctx.cwd), |b| join(&ctx.cwd, b));
                                    let jetty_home = setting("jetty.home").map_or_else(
                                        || parent(&named).to_string(),
                                        |h| join(&ctx.cwd, h),
                                    );
                                    let jetty_home =
                                        self.vfs.directory(&jetty_home).unwrap_or(jetty_home);
                                    self.jetty(&jetty_home, &base, rest);
                                }
                                "jboss-modules.jar" => {
                                    let base = properties.get("jboss.server.base.dir").map_or_else(
                                        || join(&home, "standalone"),
                                        |b| join(&ctx.cwd, b),
                                    );
                                    self.wildfly(&home, &base, &args[i + 2..], "java -jar");
                                }
                                _ => {
                                    self.trace.runtimes.insert("maven".into());
                                }
                            }
                        }
                        None => self.note(format!("java: {jar} is not in the image")),
                    }
                    return;
                }
                "-cp" | "-classpath" | "--class-path" => {
                    class_path = args.get(i + 1).cloned();
                    i += 2;
                }
                s if s.starts_with("--class-path=") => {
                    class_path = Some(s["--class-path=".len()..].to_string());
                    i += 1;
                }
                "-p" | "--module-path" | "--add-modules" | "-m" | "--module" => i += 2,
                s if s.starts_with('-') => i += 1,
                _ => break,
            }
        }
        for entry in class_path.iter().flat_map(|c| c.split(':')) {
            if entry.is_empty() {
                continue;
            }
            if let Some(dir) = entry
                .strip_suffix("/*")
                .or_else(|| (entry == "*").then_some(""))
            {
                self.jars_in(&join(&ctx.cwd, if dir.is_empty() { "." } else { dir }));
            } else {
                self.reach(&join(&ctx.cwd, entry));
            }
        }
        if let Some(main) = args.get(i) {
            if main == TOMCAT_MAIN {
                // `catalina.sh` passes both directories as properties; without them
                // Tomcat takes CATALINA_HOME from where bootstrap.jar lies.
                let home = properties
                    .get("catalina.home")
                    .map(|h| join(&ctx.cwd, h))
                    .or_else(|| {
                        self.trace
                            .language_files
                            .iter()
                            .find(|f| f.ends_with("/bin/bootstrap.jar"))
                            .map(|f| join("", parent(parent(f))))
                    });
                let Some(home) = home else {
                    self.note(format!(
                        "java {TOMCAT_MAIN}: neither catalina.home nor bin/bootstrap.jar on the class path says where Tomcat is"
                    ));
                    return;
                };
                let base = properties
                    .get("catalina.base")
                    .map_or_else(|| home.clone(), |b| join(&ctx.cwd, b));
                let system = properties
                    .iter()
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect();
                self.tomcat(&home, &base, &system, &args[i + 1..], "java");
                return;
            }
            self.trace.runtimes.insert("maven".into());
            self.push(Step {
                path: format!("class {main}"),
                argv: args[i..].to_vec(),
                from: "java".into(),
            });
        }
    }

    /// Tomcat, from CATALINA_HOME `home` and CATALINA_BASE `base` (relative to the root)
    /// with the command line's system properties `system`: its bootstrap jars, its class
    /// loaders' repositories ([`Tracer::tomcat_class_loaders`]), and the web applications
    /// it deploys — the WARs and directories under each `<Host appBase>` of
    /// `base/conf/server.xml` (`webapps` when it names none) and each `<Context docBase>`
    /// there or in `base/conf/Catalina/<host>/*.xml` that lies elsewhere.
    fn tomcat(
        &mut self,
        home: &str,
        base: &str,
        system: &BTreeMap<String, String>,
        args: &[String],
        from: &str,
    ) {
        self.trace.runtimes.insert("maven".into());
        for jar in ["bin/bootstrap.jar", "bin/tomcat-juli.jar"] {
            self.reach(&join(home, jar));
        }
        // Debian's `conf` is a link to /etc/tomcat10.
        let server = self
            .vfs
            .resolve("", &join(base, "conf/server.xml"))
            .map(|r| r.path);
        let server_xml = server
            .as_deref()
            .and_then(|path| self.vfs.text(path))
            .map(without_xml_comments);
        let mut app_bases = server_xml
            .as_deref()
            .map(|x| xml_attribute_values(x, "appBase"))
            .unwrap_or_default();
        if let (Some(server), None) = (&server, &server_xml) {
            self.note(format!(
                "/{server} was not read: its applications are taken to be in webapps"
            ));
        }
        if app_bases.is_empty() {
            app_bases.push("webapps".into());
        }
        let mut doc_bases: Vec<String> = server_xml
            .as_deref()
            .map(|x| xml_attribute_values(x, "docBase"))
            .unwrap_or_default();
        if let Some(contexts) = self.vfs.directory(&join(base, "conf/Catalina")) {
            for host in self.vfs.list(&contexts) {
                let dir = join(&contexts, host);
                for name in self
                    .vfs
                    .list(&dir)
                    .into_iter()
                    .filter(|n| n.ends_with(".xml"))
                {
                    if let Some(text) = self.vfs.text(&join(&dir, name)) {
                        doc_bases
                            .extend(xml_attribute_values(&without_xml_comments(text), "docBase"));
                    }
                }
            }
        }
        // The class loaders' repositories (`conf/catalina.properties`; without one,
        // Tomcat's default common loader: both `lib` directories and their jars), each
        // jar followed to the file it names (Debian's are links into /usr/share/java).
        for repository in self.tomcat_class_loaders(home, base, system) {
            match repository {
                TomcatRepository::Dir(dir) => self.reach(&join("", &dir)),
                TomcatRepository::Jars(dir) => self.jars_in(&join("", &dir)),
                TomcatRepository::Jar(jar) => self.reach(&join("", &jar)),
            }
        }
        let mut dirs: Vec<String> = app_bases.iter().map(|a| join(base, a)).collect();
        // A relative docBase is relative to its host's appBase.
        let first_app_base = join(base, &app_bases[0]);
        dirs.extend(doc_bases.iter().map(|d| join(&first_app_base, d)));
        for dir in dirs {
            self.reach(&dir);
        }
        self.push(Step {
            path: format!("class {TOMCAT_MAIN}"),
            argv: args.to_vec(),
            from: from.to_string(),
        });
    }

    /// The repositories of Tomcat's common, server and shared class loaders, from
    /// `base/conf/catalina.properties`; Tomcat's default common loader when there is none.
    /// `${name}` in them is the system property: one of `catalina.properties` (Tomcat sets
    /// them all as system properties, over those of the command line), else one of the
    /// command line (`-Dname=value`, `system`).
    fn tomcat_class_loaders(
        &mut self,
        home: &str,
        base: &str,
        system: &BTreeMap<String, String>,
    ) -> Vec<TomcatRepository> {
        let default = "\"${catalina.base}/lib\",\"${catalina.base}/lib/*.jar\",\
             \"${catalina.home}/lib\",\"${catalina.home}/lib/*.jar\"";
        let Some(found) = self
            .vfs
            .resolve("", &join(base, "conf/catalina.properties"))
            .map(|r| r.path)
        else {
            return tomcat_repositories(default, home, base, system).0;
        };
        let Some(text) = self.vfs.text(&found) else {
            self.note(format!(
                "/{found} was not read: its class loaders are taken to be Tomcat's default"
            ));
            return tomcat_repositories(default, home, base, system).0;
        };
        let mut properties = system.clone();
        properties.extend(java_properties(text));
        let mut repositories = Vec::new();
        for key in ["common.loader", "server.loader", "shared.loader"] {
            let Some(value) = properties.get(key) else {
                continue;
            };
            let (found_here, unknown) = tomcat_repositories(value, home, base, &properties);
            repositories.extend(found_here);
            for item in unknown {
                self.note(format!(
                    "/{found}: {key} repository {item} is not known here"
                ));
            }
        }
        repositories
    }

    /// Jetty (`java -jar start.jar`) from JETTY_HOME `home` and JETTY_BASE `base`, with the
    /// arguments after the jar `args`: the jars and directories of the modules it enables
    /// ([`Tracer::jetty_modules`]), and the web applications in `base/webapps`. When the
    /// modules cannot be worked out, every jar of `home/lib` and `base/lib`.
    fn jetty(&mut self, home: &str, base: &str, args: &[String]) {
        self.trace.runtimes.insert("maven".into());
        self.reach(&join(base, "webapps"));
        match self.jetty_modules(home, base, args) {
            Some(paths) => {
                for path in paths {
                    self.reach(&path);
                }
            }
            None => {
                for dir in [join(home, "lib"), join(base, "lib")] {
                    self.reach(&dir);
                }
            }
        }
    }

    /// The files and directories of the `[lib]` sections of the modules Jetty enables: those
    /// `--module=a,b` (or `--modules=`) names on the command line and in `base`'s
    /// `start.ini` and `start.d/*.ini`, and, in turn, what their `[depend]` sections name
    /// or `[depends]` (a name no module file has is the module that `[provides]` it: one
    /// already enabled, else the one marked `|default`, else every provider; `name?`, Jetty
    /// 10's optional dependency, and `[optional]` enable nothing). A module is `modules/NAME.mod` of `base`, else of `home`; a `[lib]`
    /// entry is relative to `base` and `home` (both searched), with `*` and `**` globs and
    /// `${jetty.version}` standing for a version; other `${…}` stand for anything. `None`
    /// (noted) when a module or a configuration file cannot be read: then its libraries
    /// are not known.
    fn jetty_modules(&mut self, home: &str, base: &str, args: &[String]) -> Option<Vec<String>> {
        let mut requested: Vec<String> = Vec::new();
        let mut request = |line: &str| {
            let line = line.trim();
            if let Some(names) = line
                .strip_prefix("--module=")
                .or_else(|| line.strip_prefix("--modules="))
            {
                requested.extend(
                    names
                        .split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_string),
                );
            }
        };
        let mut ini_files: Vec<String> = vec![join(base, "start.ini")];
        if let Some(dir) = self.vfs.directory(&join(base, "start.d")) {
            ini_files.extend(
                self.vfs
                    .list(&dir)
                    .into_iter()
                    .filter(|n| n.ends_with(".ini"))
                    .map(|n| join(&dir, n)),
            );
        }
        for file in &ini_files {
            let Some(found) = self.vfs.resolve("", file) else {
                continue;
            };
            match self.vfs.text(&found.path) {
                Some(text) => text.lines().for_each(&mut request),
                None => {
                    self.note(format!(
                        "jetty: /{} was not read: every jar of its lib directories is taken to be used",
                        found.path
                    ));
                    return None;
                }
            }
        }
        args.iter().for_each(|a| request(a));
        if requested.is_empty() {
            self.note(format!(
                "jetty: no module enabled in /{base}/start.ini, /{base}/start.d or the command line: every jar of its lib directories is taken to be used"
            ));
            return None;
        }

        // Every module file: its name (path under `modules/`, without `.mod`) and text.
        let mut modules: BTreeMap<String, Option<String>> = BTreeMap::new();
        for root in [home, base] {
            let Some(dir) = self.vfs.directory(&join(root, "modules")) else {
                continue;
            };
            let mut pending = vec![(dir.clone(), String::new())];
            while let Some((at, prefix)) = pending.pop() {
                for entry in self.vfs.list(&at) {
                    let path = join(&at, entry);
                    if let Some(name) = entry.strip_suffix(".mod") {
                        let text = self
                            .vfs
                            .resolve("", &path)
                            .and_then(|r| self.vfs.text(&r.path));
                        // A base's module replaces the home's of the same name.
                        modules.insert(format!("{prefix}{name}"), text.map(str::to_string));
                    } else if self.vfs.is_dir("", &path) && pending.len() < 64 {
                        pending.push((path, format!("{prefix}{entry}/")));
                    }
                }
            }
        }
        // What each module provides (`logging|default`: the default provider), read once.
        let provided: Vec<(String, String, bool)> = modules
            .iter()
            .filter_map(|(module, text)| Some((module, text.as_deref()?)))
            .flat_map(|(module, text)| {
                jetty_module_section(text, "provide")
                    .into_iter()
                    .map(move |line| {
                        let (name, mark) = line.split_once('|').unwrap_or((&line, ""));
                        (
                            module.clone(),
                            name.trim().to_string(),
                            mark.trim() == "default",
                        )
                    })
            })
            .collect();

        let mut enabled: BTreeSet<String> = BTreeSet::new();
        let mut queue = requested.clone();
        let mut steps = 0;
        while let Some(name) = queue.pop() {
            steps += 1;
            if steps > 10_000 {
                self.note("jetty: too many module dependencies to follow".to_string());
                return None;
            }
            // `${…}` in a name (`alpn-impl/alpn-${java.version.platform}`) stands for anything.
            let pattern = jetty_pattern(&name);
            let mut chosen: Vec<String> = modules
                .keys()
                .filter(|m| glob_match(&pattern, m))
                .cloned()
                .collect();
            if chosen.is_empty() {
                // Its providers, and whether each is the default one.
                let mut providers: Vec<(String, bool)> = Vec::new();
                for (module, name, default) in &provided {
                    if glob_match(&pattern, name) && !providers.iter().any(|(m, _)| m == module) {
                        providers.push((module.clone(), *default));
                    }
                }
                let pick = |keep: &dyn Fn(&(String, bool)) -> bool| -> Vec<String> {
                    providers
                        .iter()
                        .filter(|p| keep(p))
                        .map(|(m, _)| m.clone())
                        .collect()
                };
                chosen = pick(&|(m, _)| enabled.contains(m) || requested.contains(m));
                if chosen.is_empty() {
                    chosen = pick(&|(_, default)| *default);
                }
                if chosen.is_empty() {
                    chosen = pick(&|_| true);
                }
            }
            if chosen.is_empty() {
                self.note(format!(
                    "jetty: no module {name} in /{home}/modules or /{base}/modules: every jar of its lib directories is taken to be used"
                ));
                return None;
            }
            for module in chosen {
                if !enabled.insert(module.clone()) {
                    continue;
                }
                let Some(text) = &modules[&module] else {
                    self.note(format!(
                        "jetty: the module file of {module} was not read: every jar of its lib directories is taken to be used"
                    ));
                    return None;
                };
                queue.extend(
                    jetty_module_section(text, "depend")
                        .into_iter()
                        .filter(|d| !d.ends_with('?')),
                );
            }
        }

        let mut paths = Vec::new();
        for module in &enabled {
            let text = modules[module].as_deref().unwrap_or_default();
            for entry in jetty_module_section(text, "lib") {
                let entry = entry
                    .replace("${jetty.home}", &format!("/{home}"))
                    .replace("${jetty.base}", &format!("/{base}"));
                for root in [base, home] {
                    paths.extend(self.jetty_lib_matches(&join(root, &entry)));
                }
            }
        }
        Some(paths)
    }

    /// The files (or the directory) a module's `[lib]` entry names under its root:
    /// `dir/*.jar` and `dir/name-${jetty.version}.jar` in `dir`, `dir/**.jar` anywhere
    /// below it.
    fn jetty_lib_matches(&self, entry: &str) -> Vec<String> {
        let (dir, file) = (parent(entry), basename(entry));
        if !file.contains(['*', '$']) {
            return vec![entry.to_string()];
        }
        let Some(dir) = self.vfs.directory(dir) else {
            return Vec::new();
        };
        let recursive = file.starts_with("**");
        let pattern = jetty_pattern(file.trim_start_matches("**"));
        let pattern = if recursive {
            format!("*{pattern}")
        } else {
            pattern
        };
        let mut out = Vec::new();
        let mut pending = vec![dir];
        while let Some(at) = pending.pop() {
            for name in self.vfs.list(&at) {
                let path = join(&at, name);
                if glob_match(&pattern, name) && jetty_version_fits(file, name) {
                    out.push(path.clone());
                }
                if recursive && self.vfs.is_dir("", &path) && out.len() + pending.len() < 10_000 {
                    pending.push(path);
                }
            }
        }
        out
    }

    /// WildFly in standalone mode (`standalone.sh`, or `java -jar jboss-modules.jar`) from
    /// JBOSS_HOME `home` and the server's base directory `base`: `jboss-modules.jar`, the
    /// module repository `home/modules`, and what `base/deployments` and `base/lib` hold.
    fn wildfly(&mut self, home: &str, base: &str, args: &[String], from: &str) {
        self.trace.runtimes.insert("maven".into());
        for dir in [
            join(home, "jboss-modules.jar"),
            join(home, "modules"),
            join(base, "deployments"),
            join(base, "lib"),
        ] {
            self.reach(&dir);
        }
        self.push(Step {
            path: "module org.jboss.as.standalone".into(),
            argv: args.to_vec(),
            from: from.to_string(),
        });
    }

    /// Mark what `path` (from the root, links resolved) is as reached, when it is in the
    /// image: a file (a jar, a WAR) or a directory, also one a tar leaves implicit.
    fn reach(&mut self, path: &str) {
        match self.vfs.resolve("", path) {
            Some(r) if matches!(r.node, Node::File { .. }) => {
                self.trace.language_files.insert(format!("/{}", r.path));
            }
            _ => {
                if let Some(dir) = self.vfs.directory(path) {
                    self.trace.language_dirs.insert(format!("/{dir}"));
                }
            }
        }
    }

    /// The jars directly in `dir` (a class path's `dir/*`), each as the file it is after
    /// its links.
    fn jars_in(&mut self, dir: &str) {
        let Some(dir) = self.vfs.directory(dir) else {
            return;
        };
        let jars: Vec<String> = self
            .vfs
            .list(&dir)
            .into_iter()
            .filter(|n| n.ends_with(".jar") || n.ends_with(".JAR"))
            .map(|n| join(&dir, n))
            .collect();
        for jar in jars {
            let file = self.vfs.resolve("", &jar).map_or(jar, |r| r.path);
            self.trace.language_files.insert(format!("/{file}"));
        }
    }

    /// `ruby [options] (SCRIPT | -S PROGRAM) args…` — also the Ruby programs run through
    /// their `#!` (`rails`, `bundle`, `puma`, `rackup`): the script, and the gem homes
    /// RubyGems and Bundler search: `GEM_HOME`, `GEM_PATH`, `BUNDLE_PATH` and the
    /// application's `vendor/bundle` (their `ruby/<version>`), the interpreter prefix's
    /// `lib/ruby/gems/<version>`, and Debian's `var/lib/gems` and `rubygems-integration`.
    fn ruby(&mut self, resolved: &str, args: &[String], ctx: &Ctx) {
        self.trace.runtimes.insert("gem".into());
        let mut homes: Vec<String> = Vec::new();
        for var in ["GEM_HOME", "GEM_PATH"] {
            if let Some(value) = ctx.env.get(var) {
                homes.extend(
                    value
                        .split(':')
                        .filter(|d| !d.is_empty())
                        .map(|d| join(&ctx.cwd, d)),
                );
            }
        }
        // Directories holding one gem home per Ruby version.
        let mut per_version = vec![
            join(&ctx.cwd, "vendor/bundle/ruby"),
            join(parent(parent(resolved)), "lib/ruby/gems"),
            "var/lib/gems".to_string(),
            "usr/share/rubygems-integration".to_string(),
        ];
        if let Some(bundle) = ctx.env.get("BUNDLE_PATH") {
            per_version.push(join(&join(&ctx.cwd, bundle), "ruby"));
        }
        for arch in self.vfs.list("usr/lib") {
            if arch.contains("-linux-") {
                per_version.push(join(&join("usr/lib", arch), "rubygems-integration"));
            }
        }
        for dir in per_version {
            if let Some(dir) = self.vfs.directory(&dir) {
                homes.extend(self.vfs.list(&dir).into_iter().map(|v| join(&dir, v)));
            }
        }
        for home in homes {
            if let Some(home) = self.vfs.directory(&home) {
                self.trace.language_dirs.insert(format!("/{home}"));
            }
        }
        let mut i = 0;
        while let Some(a) = args.get(i) {
            match a.as_str() {
                "-e" | "-" => return,
                "-I" | "-r" | "-C" | "-E" | "--encoding" => i += 2,
                "-S" => {
                    let Some(program) = args.get(i + 1) else {
                        return;
                    };
                    match self.find_program(ctx, program) {
                        Some((_, found)) => self.ruby_script(found.path, &args[i + 1..]),
                        None => self.note(format!("ruby -S {program}: not in the PATH")),
                    }
                    return;
                }
                s if s.starts_with('-') => i += 1,
                script => {
                    match self.vfs.resolve(&ctx.cwd, script) {
                        Some(r) => self.ruby_script(r.path, &args[i..]),
                        None => self.note(format!("ruby: script {script} is not in the image")),
                    }
                    return;
                }
            }
        }
    }

    fn ruby_script(&mut self, path: String, argv: &[String]) {
        let file = format!("/{path}");
        self.trace.scripts.insert(file.clone());
        self.push(Step {
            path: file,
            argv: argv.to_vec(),
            from: "ruby".into(),
        });
    }

    /// `php [options] [-f] SCRIPT args…` and the built-in server `php -S ADDR [-t ROOT]
    /// [ROUTER]`: the script (or document root), and the Composer `vendor` directories in
    /// it and the directories above, where `require __DIR__.'/vendor/autoload.php'` finds
    /// them. Code given with `-r` is not followed.
    fn php(&mut self, args: &[String], ctx: &Ctx) {
        let mut server = false;
        let mut root: Option<&String> = None;
        let mut i = 0;
        while let Some(a) = args.get(i) {
            match a.as_str() {
                "-r" | "-R" | "-B" | "-E" | "-F" | "-a" | "-" => return,
                "-S" => {
                    server = true;
                    i += 2;
                }
                "-t" => {
                    root = args.get(i + 1);
                    i += 2;
                }
                "-f" => {
                    i += 1;
                    break;
                }
                "-d" | "-c" | "-z" => i += 2,
                s if s.starts_with('-') => i += 1,
                _ => break,
            }
        }
        let (dir, step) = match args.get(i) {
            Some(script) => {
                let Some(r) = self.vfs.resolve(&ctx.cwd, script) else {
                    self.note(format!("php: script {script} is not in the image"));
                    return;
                };
                let file = format!("/{}", r.path);
                self.trace.scripts.insert(file.clone());
                (parent(&r.path).to_string(), Some(file))
            }
            None if server => (root.map_or(ctx.cwd.clone(), |r| join(&ctx.cwd, r)), None),
            None => return,
        };
        self.trace.runtimes.insert("composer".into());
        let mut dir = self.vfs.directory(&dir).unwrap_or(dir);
        loop {
            if let Some(vendor) = self.vfs.directory(&join(&dir, "vendor")) {
                self.trace.language_dirs.insert(format!("/{vendor}"));
            }
            if dir.is_empty() {
                break;
            }
            dir = parent(&dir).to_string();
        }
        if let Some(file) = step {
            self.push(Step {
                path: file,
                argv: args[i..].to_vec(),
                from: "php".into(),
            });
        }
    }
}

/// Which branch of an `if` (or item of a `case`) runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Branch {
    /// The condition is not known statically: any branch may run.
    Unknown,
    /// This branch runs.
    Running,
    /// This branch does not run; a later one may.
    Skipping,
    /// A branch ran; the rest do not.
    Done,
}

impl Branch {
    /// At the next `elif`, `else` (decided `Running`) or `case` item, decided as `decided`
    /// on its own: after a branch that ran none does; after skipped ones this one is as
    /// decided; an undecided one leaves the rest undecided.
    fn next(self, decided: Branch) -> Branch {
        match self {
            Branch::Running => Branch::Done,
            Branch::Skipping => decided,
            other => other,
        }
    }

    fn skips(self) -> bool {
        matches!(self, Branch::Skipping | Branch::Done)
    }
}

/// The open `if`s and `case`s, innermost last, counted so that whether any skips or is
/// undecided takes no walk (a script of many unclosed `if`s stays linear).
#[derive(Default)]
struct Branches {
    open: Vec<Branch>,
    skipping: usize,
    undecided: usize,
}

impl Branches {
    fn count(&mut self, branch: Branch, by: isize) {
        let counter = match branch {
            Branch::Unknown => &mut self.undecided,
            b if b.skips() => &mut self.skipping,
            _ => return,
        };
        *counter = counter.saturating_add_signed(by);
    }

    fn push(&mut self, branch: Branch) {
        self.count(branch, 1);
        self.open.push(branch);
    }

    fn pop(&mut self) {
        if let Some(branch) = self.open.pop() {
            self.count(branch, -1);
        }
    }

    /// The innermost one moves on to its next branch ([`Branch::next`]).
    fn next(&mut self, decided: Branch) {
        if let Some(&top) = self.open.last() {
            let next = top.next(decided);
            self.count(top, -1);
            self.count(next, 1);
            *self.open.last_mut().expect("just read") = next;
        }
    }

    /// Some open branch does not run.
    fn skipped(&self) -> bool {
        self.skipping > 0
    }

    /// Some open branch is undecided.
    fn undecided(&self) -> bool {
        self.undecided > 0
    }
}

/// What a script's tests (and, [`shell::Outside`], its command substitutions) ask of the
/// image it runs in; `None` when the image does not tell.
trait Image: shell::Outside {
    /// `test`'s file test `op` (`-e`, `-f`, …) of `path`.
    fn file_test(&self, op: &str, path: &str) -> Option<bool>;
    /// Whether shell function `name` called with `args` succeeds, when that is known.
    fn function_status(&self, _name: &str, _args: &[String], _vars: &Vars) -> Option<bool> {
        None
    }
}

/// Nothing known of the image (tests of strings and integers only).
impl Image for () {
    fn file_test(&self, _: &str, _: &str) -> Option<bool> {
        None
    }
}

/// Where the container runtime mounts its own files (and Kubernetes its service account
/// token): what the image holds there is not what a running script sees.
const RUNTIME_MOUNTS: &[&str] = &[
    "proc",
    "sys",
    "dev",
    "run",
    "var/run",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
];

/// The image a script runs in, as its shell sees it from where it is.
struct ScriptImage<'t, 'a> {
    tracer: &'t Tracer<'a>,
    ctx: &'t Ctx,
    functions: &'t BTreeMap<String, (usize, usize)>,
    /// The script `functions` are ranges of and its label (none: no function is run for
    /// its status).
    script: &'t [Command],
    label: &'t str,
}

impl<'t, 'a> ScriptImage<'t, 'a> {
    fn new(
        tracer: &'t Tracer<'a>,
        ctx: &'t Ctx,
        functions: &'t BTreeMap<String, (usize, usize)>,
    ) -> Self {
        ScriptImage {
            tracer,
            ctx,
            functions,
            script: &[],
            label: "",
        }
    }

    /// Its functions' bodies are ranges of `script`, labelled `label`.
    fn of(self, label: &'t str, script: &'t [Command]) -> Self {
        ScriptImage {
            script,
            label,
            ..self
        }
    }
}

impl ScriptImage<'_, '_> {
    /// `path` in the image (from the root), when what the script sees there is the image's:
    /// not after a `cd` that may not run (a relative path), not where something is
    /// mounted over it.
    fn seen(&self, path: &str) -> Option<String> {
        if self.ctx.cwd_unknown && !path.starts_with('/') {
            return None;
        }
        let at = join(&self.ctx.cwd, path);
        let under = |dir: &str| {
            at == dir
                || at
                    .strip_prefix(dir)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        let mounted =
            RUNTIME_MOUNTS.iter().any(|m| under(m)) || self.ctx.volumes.iter().any(|v| under(v));
        (!mounted).then_some(at)
    }

    /// The exit status of shell function `name` called with `args` (0: `Some(true)`),
    /// found by running its body on the side. Known only where that run decides it — a
    /// `return N`, or a last `&&`/`||` list of tests — and changes nothing its caller would
    /// see: it runs no program, sets no variable but its `local`s, does no `cd`. (So
    /// `_want_help "$@"` and a check of bash's `FUNCNAME` are answered; a function that
    /// does more is run, as before, only where the script calls it as a command.)
    fn function_status(&self, name: &str, args: &[String], vars: &Vars) -> Option<bool> {
        let &(start, end) = self.functions.get(name)?;
        let calls = self.tracer.function_calls.get();
        if end > self.script.len() || self.ctx.depth >= MAX_DEPTH || calls >= MAX_FUNCTION_CALLS {
            return None;
        }
        if self.writes_globals(start..end, 0) {
            return None;
        }
        let steps = self.tracer.steps.get();
        let mut run = Tracer {
            vfs: self.tracer.vfs,
            trace: Trace::default(),
            steps: Cell::new(steps),
            function_calls: Cell::new(calls + 1),
            parsed: self.tracer.parsed.clone(),
            walked: self.tracer.walked.clone(),
            main: false,
            unsure: false,
        };
        let mut inner = vars.for_call(name, args.to_vec());
        let mut ctx = self.ctx.clone();
        ctx.depth += 1;
        ctx.conditional = false;
        ctx.loop_depth = 0;
        let mut last = None;
        let flow = run.block(
            self.label,
            self.script,
            start..end,
            self.functions,
            &mut inner,
            &mut ctx,
            &mut last,
        );
        // Its work counts against the caller's budgets (up to them: the caller notes
        // going past).
        self.tracer.steps.set(run.steps.get().min(MAX_STEPS));
        self.tracer.walked.set(run.walked.get());
        let within_budget = run.function_calls.get() <= MAX_FUNCTION_CALLS;
        self.tracer
            .function_calls
            .set(run.function_calls.get().min(MAX_FUNCTION_CALLS));
        let quiet = !run.unsure && last.is_none() && run.steps.get() == steps && within_budget;
        if !quiet || self.changed_for_caller(start..end, vars, &inner, &ctx) {
            return None;
        }
        let status = match flow {
            Flow::Return(status) => status?,
            Flow::Continue => {
                let image =
                    ScriptImage::new(&run, &ctx, self.functions).of(self.label, self.script);
                last_list_status(self.script, start..end, &inner, &image)?
            }
            _ => return None,
        };
        Some(status == 0)
    }

    /// Whether the function `body` (or a function it calls) may set a variable other than
    /// its `local`s: an assignment, `export`, `readonly`, `read`, `unset`, `getopts`, `let`,
    /// a `for` variable, `eval`, `.`. Such a function's status, asked after it ran, need not
    /// be what it returned (`[ -z "$X" ] && X=1`), so it is not asked.
    fn writes_globals(&self, body: std::ops::Range<usize>, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return true;
        }
        let commands = &self.script[body];
        let locals = local_names(commands);
        let global = |name: Option<String>| name.is_some_and(|n| !locals.contains(&n));
        let named = |words: &[shell::Word]| {
            words
                .iter()
                .filter(|w| !w.literal().is_some_and(|l| l.starts_with('-')))
                .map(|w| w.assignment().map(|(name, _)| name).or_else(|| w.literal()))
                .collect::<Vec<_>>()
        };
        for c in commands {
            let mut words = &c.words[..];
            while words.first().is_some_and(
                |w| matches!(keyword(w), Some(k) if !matches!(k, "in" | "for" | "select" | "case")),
            ) {
                words = &words[1..];
            }
            match words.first().and_then(keyword) {
                Some("for" | "select") => {
                    if global(words.get(1).and_then(|w| w.literal())) {
                        return true;
                    }
                    continue;
                }
                Some(_) => continue, // `case WORD in`, `in` …
                None => {}
            }
            let mut assigned = Vec::new();
            while let Some((name, _)) = words.first().and_then(|w| w.assignment()) {
                assigned.push(Some(name));
                words = &words[1..];
            }
            let Some(first) = words.first() else {
                // Assignments alone set the shell's variables (before a command, only its
                // environment).
                if assigned.into_iter().any(global) {
                    return true;
                }
                continue;
            };
            let Some(program) = first.literal() else {
                continue;
            };
            let writes = match program.as_str() {
                "export" | "readonly" | "read" | "unset" => {
                    named(&words[1..]).into_iter().any(global)
                }
                "declare" | "typeset" => words.iter().any(|w| w.is_literal("-g")),
                "printf" => words.iter().any(|w| w.is_literal("-v")),
                "eval" | "." | "source" | "getopts" | "let" | "mapfile" | "readarray" => true,
                name => match self.functions.get(name) {
                    Some(&(start, end)) => {
                        end > self.script.len() || self.writes_globals(start..end, depth + 1)
                    }
                    None => false,
                },
            };
            if writes {
                return true;
            }
        }
        false
    }

    /// Whether a run of the function `body` left a variable (other than its `local`s), the
    /// environment or the working directory other than the caller had them.
    fn changed_for_caller(
        &self,
        body: std::ops::Range<usize>,
        before: &Vars,
        after: &Vars,
        ctx: &Ctx,
    ) -> bool {
        let locals = local_names(&self.script[body]);
        let differ = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| {
            let outside = |(k, _): &(&String, &String)| !locals.contains(*k);
            !a.iter().filter(outside).eq(b.iter().filter(outside))
        };
        let unknown_differ = !before
            .unknown
            .iter()
            .filter(|k| !locals.contains(*k))
            .eq(after.unknown.iter().filter(|k| !locals.contains(*k)));
        differ(&before.named, &after.named)
            || unknown_differ
            || differ(&self.ctx.env, &ctx.env)
            || self.ctx.cwd != ctx.cwd
            || self.ctx.cwd_unknown != ctx.cwd_unknown
    }

    /// What is at `path` (links followed): `Some(None)` when nothing is.
    fn node(&self, path: &str) -> Option<Option<&Node>> {
        Some(
            self.tracer
                .vfs
                .resolve("", &self.seen(path)?)
                .map(|r| r.node),
        )
    }
}

impl shell::Outside for ScriptImage<'_, '_> {
    fn cwd(&self) -> Option<String> {
        (!self.ctx.cwd_unknown).then(|| format!("/{}", self.ctx.cwd))
    }

    fn directory(&self, dir: &str, physical: bool) -> Option<Option<String>> {
        let at = self.seen(dir)?;
        match self.tracer.vfs.resolve("", &at) {
            Some(r) if matches!(r.node, Node::Dir) => Some(Some(format!(
                "/{}",
                if physical { r.path.as_str() } else { &at }
            ))),
            _ => Some(None),
        }
    }

    fn canonical(&self, path: &str) -> Option<String> {
        let at = self.seen(path)?;
        self.tracer
            .vfs
            .resolve("", &at)
            .map(|r| format!("/{}", r.path))
    }

    fn command_v(&self, name: &str) -> Option<String> {
        let executable = |node: Option<&Node>| matches!(node, Some(Node::File { exec: true, .. }));
        if name.contains('/') {
            // dash prints any path that is there, bash only an executable file's: both
            // agree on those, and on nothing there.
            return match self.node(name)? {
                None => Some(String::new()),
                node if executable(node) => Some(name.to_string()),
                Some(_) => None,
            };
        }
        if name.is_empty() {
            return Some(String::new());
        }
        if SHELL_BUILTINS.contains(&name) || self.functions.contains_key(name) {
            return Some(name.to_string());
        }
        let path = self
            .ctx
            .env
            .get("PATH")
            .map_or(DEFAULT_PATH, String::as_str);
        for dir in path.split(':') {
            if executable(self.node(&join(dir, name))?) {
                // Printed as the PATH entry names it (a relative one from where the
                // shell is, which is not printed here).
                return (dir.starts_with('/') && !dir.ends_with('/'))
                    .then(|| format!("{dir}/{name}"));
            }
        }
        Some(String::new())
    }
}

impl Image for ScriptImage<'_, '_> {
    fn function_status(&self, name: &str, args: &[String], vars: &Vars) -> Option<bool> {
        ScriptImage::function_status(self, name, args, vars)
    }

    fn file_test(&self, op: &str, path: &str) -> Option<bool> {
        if path.is_empty() {
            return Some(false);
        }
        let node = self.node(path)?;
        match op {
            "-e" => Some(node.is_some()),
            "-f" => Some(matches!(node, Some(Node::File { .. }))),
            "-d" => Some(matches!(node, Some(Node::Dir))),
            "-h" | "-L" => Some(matches!(
                self.tracer
                    .vfs
                    .resolve_with("", &self.seen(path)?, false)
                    .map(|r| r.node),
                Some(Node::Symlink { .. })
            )),
            // Which execute bit is set is not kept, nor a directory's mode: taken as the
            // image's root user sees them.
            "-x" => match node {
                None => Some(false),
                Some(Node::File { exec, .. }) => Some(*exec),
                Some(_) => None,
            },
            // A file's size is known when its text was kept.
            "-s" => match node {
                None => Some(false),
                Some(Node::File {
                    text: Some(text), ..
                }) => Some(!text.is_empty()),
                Some(_) => None,
            },
            "-r" | "-w" if node.is_none() => Some(false),
            _ => None,
        }
    }
}

/// `[ … ]` or `test …`: `A = B`, `A != B`, `-n A`, `-z A`, `A`, `-eq` and the other integer
/// comparisons, file tests asked of `image`, with `!`, `-a`, `-o` and parentheses as `test`
/// reads them; the answer when it is known (an operand the script computes is not).
fn eval_test(argv: &[String], image: &dyn Image) -> Option<bool> {
    let args: &[String] = match argv.first()?.as_str() {
        "[" => argv.get(1..argv.len().checked_sub(1)?)?,
        "test" => &argv[1..],
        _ => return None,
    };
    if argv[0] == "[" && argv.last().map(String::as_str) != Some("]") {
        return None;
    }
    if args.iter().any(|a| a == "?") {
        return None;
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    test_args(&args, image)
}

/// The arguments of `test` (or between `[` and `]`).
fn test_args(args: &[&str], image: &dyn Image) -> Option<bool> {
    // POSIX decides up to four arguments by their number, so `[ -n ]` and `[ ! = x ]`
    // read as strings; longer expressions by `test`'s grammar.
    match args {
        [] => Some(false),
        [a] => Some(!a.is_empty()),
        ["!", a] => Some(a.is_empty()),
        [op, a] => unary_test(op, a, image),
        [a, op, b] if binary_test(op, a, b).is_some() || matches!(*op, "-a" | "-o") => match *op {
            "-a" => Some(!a.is_empty() && !b.is_empty()),
            "-o" => Some(!a.is_empty() || !b.is_empty()),
            _ => binary_test(op, a, b)?,
        },
        ["!", rest @ ..] if rest.len() <= 3 => test_args(rest, image).map(|b| !b),
        ["(", inner @ .., ")"] if inner.len() <= 2 => test_args(inner, image),
        _ => {
            let mut at = 0;
            let answer = test_or(args, &mut at, image);
            (at == args.len()).then_some(answer).flatten()
        }
    }
}

fn unary_test(op: &str, a: &str, image: &dyn Image) -> Option<bool> {
    match op {
        "-n" => Some(!a.is_empty()),
        "-z" => Some(a.is_empty()),
        "-e" | "-f" | "-d" | "-h" | "-L" | "-x" | "-s" | "-r" | "-w" => image.file_test(op, a),
        _ => None,
    }
}

/// `Some(None)`: a comparison of operands that are not both integers (an error in `test`).
fn binary_test(op: &str, a: &str, b: &str) -> Option<Option<bool>> {
    let integers = || Some((a.trim().parse::<i64>().ok()?, b.trim().parse::<i64>().ok()?));
    Some(match op {
        "=" | "==" => Some(a == b),
        "!=" => Some(a != b),
        "-eq" => integers().map(|(a, b)| a == b),
        "-ne" => integers().map(|(a, b)| a != b),
        "-lt" => integers().map(|(a, b)| a < b),
        "-le" => integers().map(|(a, b)| a <= b),
        "-gt" => integers().map(|(a, b)| a > b),
        "-ge" => integers().map(|(a, b)| a >= b),
        _ => return None,
    })
}

/// `test`'s grammar: `-o` binds looser than `-a`, `!` tighter, `( … )` groups.
fn test_or(args: &[&str], at: &mut usize, image: &dyn Image) -> Option<bool> {
    let mut answer = test_and(args, at, image);
    while args.get(*at) == Some(&"-o") {
        *at += 1;
        answer = or3(answer, test_and(args, at, image));
    }
    answer
}

fn test_and(args: &[&str], at: &mut usize, image: &dyn Image) -> Option<bool> {
    let mut answer = test_primary(args, at, image);
    while args.get(*at) == Some(&"-a") {
        *at += 1;
        answer = and3(answer, test_primary(args, at, image));
    }
    answer
}

fn test_primary(args: &[&str], at: &mut usize, image: &dyn Image) -> Option<bool> {
    let first = *args.get(*at)?;
    if first == "!" {
        *at += 1;
        return test_primary(args, at, image).map(|b| !b);
    }
    if first == "(" {
        *at += 1;
        let inner = test_or(args, at, image);
        if args.get(*at) != Some(&")") {
            *at = args.len() + 1; // unbalanced: the whole test is not read
            return None;
        }
        *at += 1;
        return inner;
    }
    if let (Some(op), Some(b)) = (args.get(*at + 1), args.get(*at + 2))
        && let Some(answer) = binary_test(op, first, b)
    {
        *at += 3;
        return answer;
    }
    if first.starts_with('-')
        && first.len() == 2
        && let Some(a) = args.get(*at + 1)
    {
        *at += 2;
        return unary_test(first, a, image);
    }
    *at += 1;
    Some(!first.is_empty())
}

/// Three-valued `&&`: false when either side is.
fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

/// Three-valued `||`: true when either side is.
fn or3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

/// `name=value` in the shell and, exported or not, in the environment programs see
/// (`None`: only running the script tells the value; the variable is then unknown).
/// `decided`: the assignment runs; else the value it replaces is kept as one the variable
/// may still hold ([`Vars::candidates`]).
fn assign(vars: &mut Vars, ctx: &mut Ctx, name: &str, value: Option<String>, decided: bool) {
    vars.before_assigning(name, decided);
    match &value {
        Some(v) => ctx.env.insert(name.to_string(), v.clone()),
        None => ctx.env.remove(name),
    };
    vars.assign(name, value);
}

/// A `case` item's pattern word as a pattern (a quoted `*` is itself); `None` when it is
/// not known (an expansion).
fn case_pattern(word: &shell::Word) -> Option<shell::Pattern> {
    word.literal()?;
    shell::Pattern::parse(&word.glob)
}

/// Values one `for` loop is run through for at most.
const MAX_LOOP_VALUES: usize = 64;

/// `for NAME [in WORDS]` at `at` (`words`, its reserved words taken off): NAME, the values
/// it runs its body for and the index of its `done`, when that can be known: the words
/// expand to known values and none is a pattern naming files ([`names_files`]), at most
/// [`MAX_LOOP_VALUES`].
fn for_loop(
    commands: &[Command],
    at: usize,
    words: &[shell::Word],
    vars: &Vars,
) -> Option<(String, Vec<String>, usize)> {
    let name = words.get(1)?.literal()?;
    if !shell::is_name(&name) {
        return None;
    }
    let values = match words.get(2..)? {
        // `for NAME;`: the positional parameters, as they are.
        [] => vars.positional.clone(),
        [keyword, list @ ..] if keyword.literal().as_deref() == Some("in") => {
            let mut values = Vec::new();
            for w in list {
                let fields = shell::expand(w, vars)?;
                if names_files(w, &fields) {
                    return None;
                }
                values.extend(fields);
            }
            values
        }
        _ => return None,
    };
    if values.len() > MAX_LOOP_VALUES {
        return None;
    }
    Some((name, values, loop_end(commands, at)?))
}

/// Whether word `w`, expanded to `fields`, is a pattern the shell replaces by the file
/// names it matches: an unquoted `*`, `?` or `[` in its text or in the value of an unquoted
/// expansion.
fn names_files(w: &shell::Word, fields: &[String]) -> bool {
    let mut escaped = false;
    let in_text = w.glob.chars().any(|c| {
        let special = !escaped && matches!(c, '*' | '?' | '[');
        escaped = !escaped && c == '\\';
        special
    });
    let unquoted_expansion = w.parts.iter().any(|p| {
        matches!(
            p,
            shell::Part::Var { quoted: false, .. } | shell::Part::Subst { quoted: false, .. }
        )
    });
    in_text || (unquoted_expansion && fields.iter().any(|v| v.contains(['*', '?', '['])))
}

/// The index of the `done` of the loop opened at `at`: loops opened in its body close
/// before it.
fn loop_end(commands: &[Command], at: usize) -> Option<usize> {
    let mut depth = 1usize;
    for (j, command) in commands.iter().enumerate().skip(at + 1).take(MAX_BODY_SCAN) {
        if command.case_item {
            continue;
        }
        for w in &command.words {
            match keyword(w) {
                Some("while" | "until") => depth += 1,
                Some("for" | "select") => {
                    depth += 1;
                    break;
                }
                Some("done") => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(j);
                    }
                }
                Some("do" | "then" | "else" | "elif" | "if" | "!" | "{" | "}" | "fi" | "esac") => {}
                _ => break,
            }
        }
    }
    None
}

/// What `command -v` finds without a program: the builtins of `dash` and `bash`.
const SHELL_BUILTINS: &[&str] = &[
    ".",
    ":",
    "[",
    "alias",
    "bg",
    "break",
    "builtin",
    "caller",
    "cd",
    "command",
    "compgen",
    "complete",
    "continue",
    "declare",
    "dirs",
    "disown",
    "echo",
    "enable",
    "eval",
    "exec",
    "exit",
    "export",
    "false",
    "fc",
    "fg",
    "getopts",
    "hash",
    "help",
    "history",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "printf",
    "pushd",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "test",
    "times",
    "trap",
    "true",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "wait",
];

/// Whether a command runs, as far as what it is joined to by `&&` and `||` tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runs {
    Yes,
    No,
    /// Only running the script tells.
    Maybe,
}

/// Whether command `i` (a simple command) runs as far as the commands `&&` and `||` join it
/// to (from `start` on) tell: when it is joined to none, yes; else as their tests decide.
/// A command that is no test is taken to succeed (`cd /app && exec …` runs the `exec`),
/// but what runs only when one fails may run.
fn chain_runs(script: &[Command], start: usize, i: usize, vars: &Vars, image: &dyn Image) -> Runs {
    let joined =
        |j: usize| j > start && matches!(script[j - 1].sep, shell::Sep::And | shell::Sep::Or);
    if !joined(i) {
        return Runs::Yes;
    }
    let mut first = i - 1;
    while joined(first) {
        if i - first > MAX_CHAIN {
            return Runs::Maybe;
        }
        first -= 1;
    }
    let mut words = &script[first].words[..];
    while matches!(
        words.first().and_then(|w| w.literal()).as_deref(),
        Some("if" | "elif" | "while" | "until" | "do" | "then" | "else" | "{")
    ) {
        words = &words[1..];
    }
    let status = |other| {
        let conditions = Conditions {
            commands: &script[..i],
            vars,
            image,
            other,
        };
        let (status, _) = conditions.and_or_list(first, words, false, 0);
        match script[i - 1].sep {
            shell::Sep::And => status,
            _ => status.map(|s| !s),
        }
    };
    match (status(Some(true)), status(None)) {
        (Some(true), _) => Runs::Yes,
        (Some(false), Some(false)) => Runs::No,
        _ => Runs::Maybe,
    }
}

/// What is between `[[` and `]]`, when `words` are bash's `[[ … ]]`.
fn double_bracket_words(words: &[shell::Word]) -> Option<&[shell::Word]> {
    match words {
        [open, inner @ .., close]
            if open.literal().as_deref() == Some("[[")
                && close.literal().as_deref() == Some("]]")
                && !close.quoted =>
        {
            Some(inner)
        }
        _ => None,
    }
}

/// Deepest `( … )` nesting read in a `[[ … ]]` (deeper is not known).
const MAX_BRACKET_NESTING: usize = 32;

/// `word` as an operator of `[[ … ]]` (unquoted).
fn bracket_operator(word: Option<&shell::Word>) -> Option<String> {
    word.filter(|w| !w.quoted).and_then(shell::Word::literal)
}

/// Three-valued `&&` or `||`.
type Join = fn(Option<bool>, Option<bool>) -> Option<bool>;

/// Reading the words between `[[` and `]]`; `at`: the next one.
struct Bracket<'w> {
    words: &'w [shell::Word],
    at: usize,
    vars: &'w Vars,
    image: &'w dyn Image,
}

impl Bracket<'_> {
    /// The whole expression's answer, when every word was read and it is known.
    fn answer(mut self) -> Option<bool> {
        let answer = self.list(true, 0);
        (self.at == self.words.len()).then_some(answer).flatten()
    }

    /// `A || B` (`or`), looser than `A && B`: left to right, three-valued.
    fn list(&mut self, or: bool, depth: usize) -> Option<bool> {
        let (joiner, join): (&str, Join) = if or { ("||", or3) } else { ("&&", and3) };
        let mut answer = self.operand(or, depth);
        while bracket_operator(self.words.get(self.at)).as_deref() == Some(joiner) {
            self.at += 1;
            answer = join(answer, self.operand(or, depth));
        }
        answer
    }

    fn operand(&mut self, of_or: bool, depth: usize) -> Option<bool> {
        if of_or {
            self.list(false, depth)
        } else {
            self.primary(depth)
        }
    }

    /// `! E`, `( E )`, `OP A`, `A OP B` or `A`: operands are not split, and the right side
    /// of `==`, `=` and `!=` is a pattern where it is not quoted; `=~`, `<`, `>` and the
    /// file comparisons are not read.
    fn primary(&mut self, depth: usize) -> Option<bool> {
        if depth > MAX_BRACKET_NESTING {
            self.at = self.words.len() + 1; // not read
            return None;
        }
        let words = self.words;
        let first = words.get(self.at);
        match bracket_operator(first).as_deref() {
            Some("!") => {
                self.at += 1;
                return self.primary(depth + 1).map(|b| !b);
            }
            Some("(") => {
                self.at += 1;
                let inner = self.list(true, depth + 1);
                if bracket_operator(words.get(self.at)).as_deref() != Some(")") {
                    self.at = words.len() + 1;
                    return None;
                }
                self.at += 1;
                return inner;
            }
            _ => {}
        }
        let first = first?;
        let ends = |w: Option<&shell::Word>| {
            w.is_none() || matches!(bracket_operator(w).as_deref(), Some("&&" | "||" | ")"))
        };
        let operand = |w: &shell::Word| bracket_operand(w, self.vars, self.image);
        let op = bracket_operator(words.get(self.at + 1));
        if let Some(op) = op.as_deref()
            && !ends(words.get(self.at + 1))
            && !ends(words.get(self.at + 2))
            && matches!(
                op,
                "==" | "="
                    | "!="
                    | "=~"
                    | "<"
                    | ">"
                    | "-eq"
                    | "-ne"
                    | "-lt"
                    | "-le"
                    | "-gt"
                    | "-ge"
                    | "-nt"
                    | "-ot"
                    | "-ef"
            )
        {
            let right = &words[self.at + 2];
            self.at += 3;
            let left = operand(first)?;
            return match op {
                "==" | "=" | "!=" => {
                    let pattern = bracket_pattern(right, self.vars, self.image)?;
                    pattern.matches(&left).map(|m| m != (op == "!="))
                }
                "-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge" => {
                    binary_test(op, &left, &operand(right)?)?
                }
                _ => None,
            };
        }
        if let Some(op) = bracket_operator(Some(first))
            && op.len() == 2
            && op.starts_with('-')
            && !ends(words.get(self.at + 1))
        {
            let value = operand(&words[self.at + 1]);
            self.at += 2;
            return unary_test(&op, &value?, self.image);
        }
        self.at += 1;
        operand(first).map(|v| !v.is_empty())
    }
}

/// An operand of `[[ … ]]`: expanded as if quoted (no field splitting, no globbing).
fn bracket_operand(word: &shell::Word, vars: &Vars, image: &dyn Image) -> Option<String> {
    let mut whole = word.clone();
    whole.quoted = true;
    for part in &mut whole.parts {
        match part {
            shell::Part::Var { quoted, .. } | shell::Part::Subst { quoted, .. } => {
                *quoted = true;
            }
            shell::Part::Lit(_) | shell::Part::Unknown | shell::Part::Opaque { .. } => {}
        }
    }
    match shell::expand_with(&whole, vars, image)?.as_slice() {
        [value] => Some(value.clone()),
        _ => None, // "$@" of more than one parameter
    }
}

/// The right side of `==`/`!=` in `[[ … ]]`: a pattern where it is not quoted. Which
/// parts were quoted is not kept, so a word partly quoted whose value holds pattern
/// characters is not known.
fn bracket_pattern(word: &shell::Word, vars: &Vars, image: &dyn Image) -> Option<shell::Pattern> {
    let value = bracket_operand(word, vars, image)?;
    // bash reads extended patterns there (`@(a|b)`), which ours are not.
    if ["?(", "*(", "+(", "@(", "!("]
        .iter()
        .any(|p| value.contains(p))
    {
        return None;
    }
    if word.literal().is_some() {
        // Its quoted pattern characters stand for themselves.
        return shell::Pattern::parse(&word.glob);
    }
    if word.quoted {
        // Which parts of an expanded word were quoted is not kept.
        return (!value.contains(['*', '?', '['])).then(|| shell::Pattern::literal(&value));
    }
    shell::Pattern::parse(&value)
}

/// Commands the follower may walk per command parsed, and besides (function bodies and
/// loop bodies are walked again for each call and iteration).
const WALK_PER_COMMAND: usize = 4;
const WALK_BASE: usize = 1 << 16;

/// How many of `args` (after `exec`) are its options: `-c`, `-l`, `-a NAME` (bash), up to
/// `--`.
fn exec_options(args: &[String]) -> usize {
    let mut at = 0;
    while let Some(arg) = args.get(at) {
        if arg == "--" {
            return at + 1;
        }
        if !arg.starts_with('-') || arg == "-" {
            break;
        }
        at += if arg.ends_with('a') { 2 } else { 1 };
    }
    at.min(args.len())
}

/// Most positional parameters a `set --` gives that are followed (each `"$@"` copies
/// them: a script of `set -- x "$@"` lines would copy its length squared).
const MAX_POSITIONAL: usize = 128;

/// Deepest nesting of command substitutions whose programs are followed.
const MAX_SUBSTITUTION_DEPTH: usize = 8;

/// Deepest `{ … }` group read inside a condition (deeper ones are not known).
const MAX_CONDITION_GROUPS: usize = 16;

/// An `if`/`elif` condition: the test (or `command -v NAME`, or `true`/`false`) of `first`
/// (the condition's first command, its reserved words taken off, and whether a `!` among
/// them negates it) and of the commands joined to it by `&&` and `||`, which the shell
/// runs left to right with equal precedence, a `{ …; }` group as one. `image` answers
/// `command -v` and file tests. The answer, when known, and the index after the
/// condition's last command.
fn condition(
    commands: &[Command],
    at: usize,
    (first, first_negated): (&[shell::Word], bool),
    vars: &Vars,
    image: &dyn Image,
) -> (Option<bool>, usize) {
    let conditions = Conditions {
        commands,
        vars,
        image,
        other: None,
    };
    let (answer, last) = conditions.and_or_list(at, first, first_negated, 0);
    (answer, last + 1)
}

/// Reading commands joined by `&&` and `||` for their status: tests of known values
/// answered, `image` asked for files and `command -v`.
struct Conditions<'c> {
    commands: &'c [Command],
    vars: &'c Vars,
    image: &'c dyn Image,
    /// The status taken for a command that is no test (`None`: not known).
    other: Option<bool>,
}

impl<'c> Conditions<'c> {
    /// The `&&`/`||` list from command `at` (its words `words`): its answer and the index
    /// of its last command.
    fn and_or_list(
        &self,
        mut at: usize,
        mut words: &'c [shell::Word],
        mut negate: bool,
        depth: usize,
    ) -> (Option<bool>, usize) {
        let commands = self.commands;
        let mut answer = None;
        let mut joined = None;
        loop {
            while words.first().and_then(|w| w.literal()).as_deref() == Some("!") {
                negate = !negate;
                words = &words[1..];
            }
            let (value, last) = if words.first().and_then(|w| w.literal()).as_deref() == Some("{") {
                self.group(at, &words[1..], depth)
            } else if is_test(words) {
                (simple_test(words, self.vars, self.image), at)
            } else {
                (self.function_status(words).or(self.other), at)
            };
            let value = value.map(|b| b != negate);
            answer = match joined {
                Some(shell::Sep::And) => and3(answer, value),
                Some(_) => or3(answer, value),
                None => value,
            };
            match commands.get(last).map(|c| c.sep) {
                Some(sep @ (shell::Sep::And | shell::Sep::Or)) if last + 1 < commands.len() => {
                    joined = Some(sep);
                    at = last + 1;
                    words = &commands[at].words;
                    negate = false;
                }
                _ => return (answer, last),
            }
        }
    }

    /// Whether the command of `words`, a call of a shell function, succeeds.
    fn function_status(&self, words: &[shell::Word]) -> Option<bool> {
        let name = words.first()?.literal()?;
        let args = words[1..]
            .iter()
            .map(|w| shell::expand_with(w, self.vars, self.image))
            .collect::<Option<Vec<Vec<String>>>>()?
            .concat();
        self.image.function_status(&name, &args, self.vars)
    }

    /// A `{ LIST; }` group opened at command `at` (`inner`: the words after `{`): the
    /// answer when it holds one `&&`/`||` list, and the index of its `}`.
    fn group(&self, at: usize, inner: &'c [shell::Word], depth: usize) -> (Option<bool>, usize) {
        let commands = self.commands;
        let closes = |i: usize| {
            commands
                .get(i)
                .is_some_and(|c| c.words.len() == 1 && c.words[0].is_literal("}"))
        };
        let read = if depth >= MAX_CONDITION_GROUPS {
            None
        } else if inner.is_empty() {
            // `{` alone on its line.
            commands
                .get(at + 1)
                .map(|c| self.and_or_list(at + 1, &c.words, false, depth + 1))
        } else {
            Some(self.and_or_list(at, inner, false, depth + 1))
        };
        match read {
            Some((answer, last)) if closes(last + 1) => (answer, last + 1),
            // More than one list, or too deep: not read; the matching `}` ends it (none
            // near: the rest is not read).
            _ => (
                None,
                group_end(commands, at).unwrap_or(commands.len().saturating_sub(1)),
            ),
        }
    }
}

/// The names `local`, `declare` and `typeset` make local among `commands` (a function's
/// body).
fn local_names(commands: &[Command]) -> BTreeSet<String> {
    commands
        .iter()
        .filter(|c| {
            c.words
                .first()
                .and_then(|w| w.literal())
                .is_some_and(|w| matches!(w.as_str(), "local" | "declare" | "typeset"))
        })
        .flat_map(|c| c.words[1..].iter())
        .filter_map(|w| w.assignment().map(|(name, _)| name).or_else(|| w.literal()))
        .collect()
}

/// The exit status of a function whose run went past its last command (its body
/// `body` of `script`, from the command opening `{` to the one closing it): that of its
/// last `&&`/`||` list when the list stands at the body's top level and `image` answers it.
fn last_list_status(
    script: &[Command],
    body: std::ops::Range<usize>,
    vars: &Vars,
    image: &dyn Image,
) -> Option<i32> {
    let close = body.end.checked_sub(1)?;
    let closing = &script[close].words;
    if !(closing.len() == 1 && closing[0].is_literal("}")) {
        return None;
    }
    let last = close.checked_sub(1).filter(|&last| last >= body.start)?;
    let mut first = last;
    while first > body.start && matches!(script[first - 1].sep, shell::Sep::And | shell::Sep::Or) {
        first -= 1;
    }
    let mut words = &script[first].words[..];
    if first == body.start && words.first().is_some_and(|w| w.is_literal("{")) {
        words = &words[1..];
    }
    // No reserved word in front (a `fi`, `done`, `}` closes what the list would be in).
    if !words
        .first()
        .is_some_and(|w| matches!(keyword(w), None | Some("!")))
    {
        return None;
    }
    let (answer, after) = condition(&script[..close], first, (words, false), vars, image);
    if after != last + 1 {
        return None;
    }
    answer.map(|ok| if ok { 0 } else { 1 })
}

/// The index of the `}` closing the group (or groups) opened by the command at `at`,
/// looked for within [`MAX_BODY_SCAN`] commands.
fn group_end(commands: &[Command], at: usize) -> Option<usize> {
    let closes = |c: &Command| c.words.len() == 1 && c.words[0].is_literal("}");
    let mut open = 0usize;
    for (i, c) in commands.iter().enumerate().skip(at).take(MAX_BODY_SCAN) {
        let leading = c.words.iter().map(keyword).take_while(|k| {
            matches!(
                k,
                Some("{" | "!" | "if" | "elif" | "then" | "else" | "while" | "until" | "do")
            )
        });
        open += leading.filter(|k| *k == Some("{")).count();
        if closes(c) {
            open = open.saturating_sub(1);
            if open == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// Whether a command of `words` is a simple command (no reserved word in front of it, no
/// `}` of a group, no `!`).
fn starts_simple_command(words: &[shell::Word]) -> bool {
    words
        .first()
        .is_some_and(|w| matches!(keyword(w), None | Some("in")))
}

/// Whether `words` (a command, its `!`s taken off) are a test `simple_test` reads: `[`,
/// `test`, `[[`, `true`, `:`, `false` or `command -v`.
fn is_test(words: &[shell::Word]) -> bool {
    let literal = |i: usize| words.get(i).and_then(|w| w.literal());
    match literal(0).as_deref() {
        Some("[" | "test" | "[[" | "true" | ":" | "false") => true,
        Some("command") => literal(1).as_deref() == Some("-v"),
        _ => false,
    }
}

/// One command of a condition: a test (`[ … ]`, `test …`, bash's `[[ … ]]`), `command -v
/// [--] NAME` (its output sent away), `true`, `:` or `false`.
fn simple_test(words: &[shell::Word], vars: &Vars, image: &dyn Image) -> Option<bool> {
    if let Some(inner) = double_bracket_words(words) {
        let bracket = Bracket {
            words: inner,
            at: 0,
            vars,
            image,
        };
        return bracket.answer();
    }
    let argv = words
        .iter()
        .map(|w| shell::expand_with(w, vars, image))
        .collect::<Option<Vec<Vec<String>>>>()?
        .concat();
    match argv.as_slice() {
        [command, v, rest @ ..] if command == "command" && v == "-v" => match rest {
            [name] => image.command_v(name).map(|out| !out.is_empty()),
            [dashes, name] if dashes == "--" => image.command_v(name).map(|out| !out.is_empty()),
            _ => None,
        },
        [t] if t == "true" || t == ":" => Some(true),
        [f] if f == "false" => Some(false),
        _ => eval_test(&argv, image),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Exec,
    Exit,
    /// `return [N]`: N when it is known (none: the last command's status).
    Return(Option<i32>),
    /// `break` in a loop being run through.
    Break,
    /// `continue` in a loop being run through.
    Next,
    /// `break` or `continue` under an undecided condition: which commands the loop runs
    /// is not known.
    Uncertain,
}

/// A loop's body: the commands `range` of `script`, whose functions are `functions`.
struct Body<'s> {
    label: &'s str,
    script: &'s [Command],
    range: std::ops::Range<usize>,
    functions: &'s BTreeMap<String, (usize, usize)>,
}

/// How running a loop through went.
enum LoopRun {
    /// To its end (or its `break`).
    Done,
    /// The script ended in it (`exec`, `exit`).
    Ended(Flow),
    /// Not known (its condition, a `break` under an undecided condition, or more than
    /// [`MAX_LOOP_ITERATIONS`]): nothing it did is kept.
    NotRun,
}

/// Commands looked through for a loop's `done` or a group's `}`: a longer body is not run
/// through (so a script of many unclosed loops costs linear time, not quadratic).
const MAX_BODY_SCAN: usize = 256;

/// The reserved word (or `{`, `}`, `!`) `word` is, if any (without building its text).
fn keyword(word: &shell::Word) -> Option<&'static str> {
    let [shell::Part::Lit(text)] = word.parts.as_slice() else {
        return None;
    };
    Some(match text.as_str() {
        "if" => "if",
        "then" => "then",
        "else" => "else",
        "elif" => "elif",
        "fi" => "fi",
        "do" => "do",
        "done" => "done",
        "while" => "while",
        "until" => "until",
        "for" => "for",
        "select" => "select",
        "case" => "case",
        "esac" => "esac",
        "in" => "in",
        "{" => "{",
        "}" => "}",
        "!" => "!",
        "function" => "function",
        "time" => "time",
        _ => return None,
    })
}

/// Commands joined by `&&` and `||` read back from one (a longer chain: it may run).
const MAX_CHAIN: usize = 64;

/// Iterations one `while`/`until` loop is run through for at most.
const MAX_LOOP_ITERATIONS: usize = 64;

/// Function definitions of a script: name → the range of its body's commands.
fn function_bodies(commands: &[Command]) -> BTreeMap<String, (usize, usize)> {
    let mut out = BTreeMap::new();
    for (i, c) in commands.iter().enumerate() {
        if !c.defines_function {
            continue;
        }
        let Some(name) = c.words.first().and_then(|w| w.literal()) else {
            continue;
        };
        // The body: from the command opening `{` to the one closing it.
        let mut depth = 0i64;
        let mut end = i + 1;
        for (j, body) in commands.iter().enumerate().skip(i + 1) {
            for w in &body.words {
                match w.literal().as_deref() {
                    Some("{") => depth += 1,
                    Some("}") => depth -= 1,
                    _ => {}
                }
            }
            end = j + 1;
            if depth <= 0 {
                break;
            }
        }
        out.insert(name, (i + 1, end));
    }
    out
}

/// Follow the config's `Entrypoint` + `Cmd` over `vfs`.
pub fn trace(vfs: &Vfs, config: &RunConfig) -> Trace {
    let mut argv = config.entrypoint.clone();
    argv.extend(config.cmd.iter().cloned());
    let mut env = BTreeMap::new();
    for e in &config.env {
        if let Some((k, v)) = e.split_once('=') {
            env.insert(k.to_string(), v.to_string());
        }
    }
    let mut tracer = Tracer {
        vfs,
        trace: Trace::default(),
        steps: Cell::new(0),
        function_calls: Cell::new(0),
        parsed: Cell::new(0),
        walked: Cell::new(0),
        main: true,
        unsure: false,
    };
    if argv.is_empty() {
        tracer.note("the image config names no Entrypoint or Cmd".into());
        return tracer.trace;
    }
    let ctx = Ctx {
        env,
        cwd: join("", &config.working_dir),
        cwd_unknown: false,
        volumes: config.volumes.iter().map(|v| join("", v)).collect(),
        loop_depth: 0,
        depth: 0,
        conditional: false,
    };
    tracer.run(&argv, &ctx, "config".into());
    tracer.trace
}

/// The library search directories of `/etc/ld.so.conf` and its `include`s.
pub fn ld_so_conf(vfs: &Vfs) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut todo = vec!["etc/ld.so.conf".to_string()];
    while let Some(file) = todo.pop() {
        if !seen.insert(file.clone()) || seen.len() > 256 {
            continue;
        }
        let Some(r) = vfs.resolve("", &file) else {
            continue;
        };
        let Some(text) = vfs.text(&r.path) else {
            continue;
        };
        let mut includes = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            if let Some(pattern) = line.strip_prefix("include").map(str::trim) {
                for pattern in pattern.split_whitespace() {
                    let pattern = join("etc", pattern);
                    let (dir, glob) = pattern.rsplit_once('/').unwrap_or(("", &pattern));
                    let dir = vfs
                        .resolve("", dir)
                        .map(|r| r.path)
                        .unwrap_or(dir.to_string());
                    let mut matched: Vec<String> = vfs
                        .list(&dir)
                        .into_iter()
                        .filter(|n| glob_match(glob, n))
                        .map(|n| join(&dir, n))
                        .collect();
                    matched.sort();
                    includes.extend(matched);
                }
            } else {
                for dir in line.split([':', ',', ' ', '\t']).filter(|d| !d.is_empty()) {
                    out.push(join("", dir));
                }
            }
        }
        // Depth-first in file order.
        todo.extend(includes.into_iter().rev());
    }
    out
}

/// `*` and `?` globbing of one path component.
/// A Jetty module name or `[lib]` file name as a glob: each `${…}` stands for anything.
fn jetty_pattern(name: &str) -> String {
    replace_references(name, |_| Some("*".to_string()))
}

/// The lines of a Jetty module's section `wanted`, by its singular or plural name (Jetty
/// 9.4 writes `[depend]`, Jetty 10 and later `[depends]`; both read either).
fn jetty_module_section(text: &str, wanted: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim().to_ascii_lowercase();
            inside = section.strip_suffix('s').unwrap_or(&section) == wanted;
        } else if inside && !line.is_empty() && !line.starts_with('#') {
            out.push(line.to_string());
        }
    }
    out
}

/// Whether `name` fits `${jetty.version}` in the `[lib]` file name `file` with a version:
/// what stands there starts with a digit (`jetty-http-${jetty.version}.jar` is not
/// `jetty-http-spi-9.4.57.jar`).
fn jetty_version_fits(file: &str, name: &str) -> bool {
    match file.split_once("${jetty.version}") {
        Some((before, _)) if !before.contains(['*', '$']) => name
            .strip_prefix(before)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| c.is_ascii_digit()),
        _ => true,
    }
}

fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The files the traced programs load, absolute: the programs and scripts themselves,
/// the links passed to reach them, ELF interpreters and `DT_NEEDED` libraries found as
/// the dynamic loader finds them (`DT_RPATH` of the object and its loaders unless it has
/// `DT_RUNPATH`, `LD_LIBRARY_PATH`, `DT_RUNPATH`, `ld.so.conf`, the default directories),
/// and script interpreters.
pub fn closure(vfs: &Vfs, trace: &Trace, env: &[String]) -> Closure {
    let ld_library_path: Vec<String> = env
        .iter()
        .find_map(|e| e.strip_prefix("LD_LIBRARY_PATH="))
        .map(|p| {
            p.split(':')
                .filter(|d| !d.is_empty())
                .map(|d| join("", d))
                .collect()
        })
        .unwrap_or_default();
    let conf = ld_so_conf(vfs);
    let mut c = Closure::default();
    // (path, rpaths inherited from the objects that loaded it)
    let mut todo: VecDeque<(String, Vec<String>)> = VecDeque::new();
    let mut start = |path: &str, c: &mut Closure| {
        if let Some(r) = vfs.resolve("", path) {
            for l in &r.links {
                c.files.insert(format!("/{}", vfs.canonical_dir(l)));
            }
            todo.push_back((r.path, Vec::new()));
        } else {
            c.missing.push(path.to_string());
        }
    };
    for step in trace.chain.iter().chain(&trace.also_run) {
        if step.path.starts_with('/') {
            start(&step.path, &mut c);
        }
    }
    for s in trace.scripts.iter().chain(&trace.language_files) {
        start(s, &mut c);
    }
    let mut seen = BTreeSet::new();
    while let Some((path, inherited)) = todo.pop_front() {
        if !seen.insert(path.clone()) || seen.len() > 100_000 {
            continue;
        }
        c.files.insert(format!("/{path}"));
        let Some(Node::File { elf, text, .. }) = vfs.nodes.get(&path) else {
            continue;
        };
        if let Some(line) = text.as_deref().and_then(|t| t.strip_prefix("#!")) {
            let interp = line.split_whitespace().next().unwrap_or_default();
            if interp.starts_with('/') {
                match vfs.resolve("", interp) {
                    Some(r) => {
                        for l in &r.links {
                            c.files.insert(format!("/{}", vfs.canonical_dir(l)));
                        }
                        todo.push_back((r.path, Vec::new()));
                    }
                    None => c.missing.push(format!("{interp} (interpreter of /{path})")),
                }
            }
        }
        let Some(elf) = elf else { continue };
        let origin = parent(&path).to_string();
        let expand = |dirs: &[String]| -> Vec<String> {
            dirs.iter()
                .map(|d| {
                    join(
                        "",
                        &d.replace("${ORIGIN}", &format!("/{origin}"))
                            .replace("$ORIGIN", &format!("/{origin}")),
                    )
                })
                .collect()
        };
        let own_rpath = expand(&elf.rpath);
        let runpath = expand(&elf.runpath);
        // DT_RPATH applies (the object's, then its loaders') only without DT_RUNPATH.
        let mut rpath_chain = own_rpath.clone();
        rpath_chain.extend(inherited.iter().cloned());
        if let Some(interp) = &elf.interp {
            match vfs.resolve("", interp) {
                Some(r) => {
                    for l in &r.links {
                        c.files.insert(format!("/{}", vfs.canonical_dir(l)));
                    }
                    todo.push_back((r.path, Vec::new()));
                }
                None => c.missing.push(format!("{interp} (interpreter of /{path})")),
            }
        }
        for needed in &elf.needed {
            let found = if needed.contains('/') {
                vfs.resolve(&origin, needed)
            } else {
                let mut dirs: Vec<&String> = Vec::new();
                if runpath.is_empty() {
                    dirs.extend(rpath_chain.iter());
                }
                dirs.extend(ld_library_path.iter());
                dirs.extend(runpath.iter());
                dirs.extend(conf.iter());
                let defaults = default_dirs(elf);
                dirs.extend(defaults.iter());
                dirs.into_iter().find_map(|d| {
                    let r = vfs.resolve(d, needed)?;
                    match r.node {
                        Node::File { elf: Some(lib), .. }
                            if lib.bits == elf.bits && lib.machine == elf.machine =>
                        {
                            Some(r)
                        }
                        _ => None,
                    }
                })
            };
            match found {
                Some(r) => {
                    for l in &r.links {
                        c.files.insert(format!("/{}", vfs.canonical_dir(l)));
                    }
                    let pass = if runpath.is_empty() {
                        rpath_chain.clone()
                    } else {
                        Vec::new()
                    };
                    c.libraries.insert(needed.clone());
                    todo.push_back((r.path, pass));
                }
                None => c.missing.push(format!("{needed} (needed by /{path})")),
            }
        }
    }
    c.missing.sort();
    c.missing.dedup();
    c
}

/// The loader's built-in directories for an object of this class and machine: Debian's
/// and Ubuntu's multiarch directories (built into their `ld.so` as system directories),
/// then `lib64`/`lib` as glibc has them.
fn default_dirs(elf: &ElfInfo) -> Vec<String> {
    let triplet = match (elf.machine, elf.bits) {
        (62, 64) => Some("x86_64-linux-gnu"),
        (183, 64) => Some("aarch64-linux-gnu"),
        (3, 32) => Some("i386-linux-gnu"),
        (40, 32) => Some("arm-linux-gnueabihf"),
        (21, 64) => Some("powerpc64le-linux-gnu"),
        (22, 64) => Some("s390x-linux-gnu"),
        _ => None,
    };
    let mut dirs = Vec::new();
    if let Some(t) = triplet {
        dirs.push(format!("lib/{t}"));
        dirs.push(format!("usr/lib/{t}"));
    }
    if elf.bits == 64 {
        dirs.extend(["lib64".to_string(), "usr/lib64".to_string()]);
    }
    dirs.extend(["lib".to_string(), "usr/lib".to_string()]);
    dirs
}

/// What the traced programs load.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closure {
    /// Every file, absolute (links resolved in the directories, the file's own name
    /// kept for links).
    pub files: BTreeSet<String>,
    /// Sonames resolved.
    pub libraries: BTreeSet<String>,
    /// What could not be found.
    pub missing: Vec<String>,
}

/// Which OS packages own which files: dpkg's `info/*.list` (and distroless images'
/// `status.d/*.md5sums`), apk's installed database (`F:` directory, `R:` file), and the
/// RPM database's file lists ([`add_rpm_owners`]).
#[derive(Clone, Debug, Default)]
pub struct Owners {
    /// Absolute path (directories' links resolved) → package names.
    pub files: BTreeMap<String, BTreeSet<String>>,
    /// Packages (`deb:name`, `apk:name`, `rpm:name`) whose file lists were found: only for those is
    /// "owns no closure file" a known "not used".
    pub listed: BTreeSet<String>,
}

/// Read the package databases' file lists from `vfs`.
pub fn owners(vfs: &Vfs) -> Owners {
    let mut out = Owners::default();
    let add = |out: &mut Owners, kind: &str, package: &str, path: &str| {
        out.files
            .entry(format!("/{}", vfs.canonical_dir(path)))
            .or_default()
            .insert(format!("{kind}:{package}"));
    };
    let info = "var/lib/dpkg/info";
    for name in vfs.list(info) {
        let Some(package) = name.strip_suffix(".list") else {
            continue;
        };
        let package = package.split(':').next().unwrap_or(package);
        let Some(text) = vfs.text(&join(info, name)) else {
            continue;
        };
        out.listed.insert(format!("deb:{package}"));
        for line in text.lines().filter(|l| l.starts_with('/') && l.len() > 1) {
            add(&mut out, "deb", package, line);
        }
    }
    let status_d = "var/lib/dpkg/status.d";
    for name in vfs.list(status_d) {
        let Some(package) = name.strip_suffix(".md5sums") else {
            continue;
        };
        let Some(text) = vfs.text(&join(status_d, name)) else {
            continue;
        };
        out.listed.insert(format!("deb:{package}"));
        for line in text.lines() {
            if let Some((_, path)) = line.split_once("  ") {
                add(&mut out, "deb", package, path);
            }
        }
    }
    if let Some(text) = vfs.text("lib/apk/db/installed") {
        let mut package = String::new();
        let mut dir = String::new();
        for line in text.lines() {
            if let Some(p) = line.strip_prefix("P:") {
                package = p.trim().to_string();
                out.listed.insert(format!("apk:{package}"));
            } else if let Some(d) = line.strip_prefix("F:") {
                dir = d.trim().to_string();
            } else if let Some(f) = line.strip_prefix("R:") {
                let path = join(&dir, f.trim());
                add(&mut out, "apk", &package, &path);
            } else if line.is_empty() {
                dir.clear();
            }
        }
    }
    out
}

/// Add the file lists of the RPM database the image ends up with: the last layer's
/// database at a path still present in `vfs` (a database is rewritten whole, so a later
/// layer's copy replaces an earlier one's lists).
pub fn add_rpm_owners(out: &mut Owners, vfs: &Vfs, fragments: &[(String, Fragment)]) {
    let current = fragments
        .iter()
        .rev()
        .flat_map(|(_, f)| f.rpm_files.iter().rev())
        .find(|(path, _)| vfs.nodes.contains_key(path.as_str()));
    let Some((_, packages)) = current else {
        return;
    };
    for (package, files) in packages {
        let key = format!("rpm:{package}");
        out.listed.insert(key.clone());
        for file in files.iter().filter(|f| f.len() > 1) {
            out.files
                .entry(format!("/{}", vfs.canonical_dir(file)))
                .or_default()
                .insert(key.clone());
        }
    }
}

/// The OS packages (`deb:name`, `apk:name`, `rpm:name`) owning a file of the closure.
pub fn used_os_packages(owners: &Owners, closure: &Closure) -> BTreeSet<String> {
    closure
        .files
        .iter()
        .filter_map(|f| owners.files.get(f))
        .flatten()
        .cloned()
        .collect()
}

/// Whether a component (its kind, name and the file it was found in, no leading `/`)
/// is used: an OS package owning a closure file (not known without its file list); a
/// language package found under a reached directory, or in a reached file (a jar, a Go
/// or Rust binary). A language package reached by nothing is unused only when the trace
/// followed its ecosystem's module search (or it is compiled into a binary that is not
/// run); otherwise a runtime the trace does not model may load it, so it is not known —
/// never "unused", which `scope: usage` would let through.
pub fn is_used(
    kind: &str,
    name: &str,
    path: &str,
    owners: &Owners,
    os_packages: &BTreeSet<String>,
    trace: &Trace,
    closure: &Closure,
) -> Option<bool> {
    match kind {
        "deb" | "apk" | "rpm" => {
            // An RPM component is named `arch/name`; the database lists plain names.
            let plain = name.rsplit_once('/').map_or(name, |(_, n)| n);
            let key = format!("{kind}:{plain}");
            owners
                .listed
                .contains(&key)
                .then(|| os_packages.contains(&key))
        }
        _ => {
            let file = format!("/{path}");
            let reached = closure.files.contains(&file)
                || trace.language_files.contains(&file)
                || trace.language_dirs.iter().any(|d| {
                    file.len() > d.len()
                        && file.starts_with(d.as_str())
                        && file.as_bytes()[d.len()] == b'/'
                });
            if reached || matches!(kind, "golang" | "cargo") || trace.runtimes.contains(kind) {
                Some(reached)
            } else {
                None
            }
        }
    }
}

/// The Usage view of one image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageView {
    /// What the config says to run.
    pub config: RunConfig,
    /// How it was followed.
    pub trace: Trace,
    /// What it loads.
    pub closure: Closure,
    /// Components marked used.
    pub used: usize,
}

impl UsageView {
    /// Whether the entrypoint was followed to a program in the image (else nothing is
    /// known about use).
    pub fn known(&self) -> bool {
        self.trace
            .chain
            .first()
            .is_some_and(|s| s.path.starts_with('/'))
    }
}

/// An image's file system stacked from its layers, with the package databases' file
/// lists: what both the inventory ([`Stacked::distro_installed`]) and the Usage view
/// ([`Stacked::usage`]) read.
pub struct Stacked {
    vfs: Vfs,
    owners: Owners,
    /// The OS packages (`deb:name`, `apk:name`, `rpm:name`) the distribution maintains
    /// ([`Fragment`]'s packages with `distro`; RPMs whose vendor is the distribution).
    distro: BTreeSet<String>,
}

impl Stacked {
    /// Stack `fragments` (in layer order).
    pub fn new(fragments: &[(String, Fragment)]) -> Self {
        let vfs = Vfs::merge(fragments.iter().map(|(_, f)| f));
        let mut owners = owners(&vfs);
        add_rpm_owners(&mut owners, &vfs, fragments);
        let os_id = fragments
            .iter()
            .rev()
            .find_map(|(_, f)| f.os.as_ref())
            .map_or("", |os| os.id.as_str());
        let distro = fragments
            .iter()
            .flat_map(|(_, f)| f.files.values().flatten())
            .filter(|p| {
                p.distro
                    || (p.kind == "rpm" && super::analyze::rpm_vendor_of_distro(&p.vendor, os_id))
            })
            .map(|p| format!("{}:{}", p.kind, p.name))
            .collect();
        Stacked {
            vfs,
            owners,
            distro,
        }
    }

    /// Whether a package of the distribution installed the file at `path` (relative to
    /// the root, directory links resolved). A language package (every kind but deb, apk
    /// and rpm) found in such a file — Debian's `python3-requests` holds
    /// `requests-2.28.1.egg-info`, Alpine's `py3-*` their `dist-info`, Debian's `ruby-*`
    /// their gemspecs, `libjackson2-databind-java` its jar — is that package's build, with
    /// the distribution's patches: the distribution's advisories say whether it is
    /// affected, and matching the same files again as the upstream release would report
    /// fixes the distribution backported as open, and everything else twice
    /// ([`super::inventory::merge_leaving_out`]). A file installed by another repository's
    /// package (NodeSource's `nodejs` and its bundled npm modules, an EPEL package on RHEL)
    /// keeps its language packages.
    pub fn distro_installed(&self, path: &str) -> bool {
        let file = format!("/{}", self.vfs.canonical_dir(path));
        self.owners
            .files
            .get(&file)
            .is_some_and(|packages| packages.iter().any(|p| self.distro.contains(p)))
    }

    /// Follow `config` over the layers and mark each component `used_by_entrypoint`.
    pub fn usage(&self, config: &RunConfig, components: &mut [super::Component]) -> UsageView {
        let trace = trace(&self.vfs, config);
        let closure = closure(&self.vfs, &trace, &config.env);
        let mut view = UsageView {
            config: config.clone(),
            trace,
            closure,
            used: 0,
        };
        if !view.known() {
            return view;
        }
        let os = used_os_packages(&self.owners, &view.closure);
        for c in components.iter_mut() {
            // Maven names are `group/artifact`, RPM names `arch/name`.
            c.used_by_entrypoint = is_used(
                &c.kind,
                &c.name,
                &c.path,
                &self.owners,
                &os,
                &view.trace,
                &view.closure,
            );
            if c.used_by_entrypoint == Some(true) {
                view.used += 1;
            }
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[ … ]` as `eval_test` answers it against the answer of Debian's `dash` (its
    /// `/bin/sh`) and `bash`: every test of strings and integers here is known, and known
    /// as both shells answer it; one either shell refuses (status 2) is not known.
    #[test]
    fn tests_of_strings_and_integers_are_answered_as_dash_and_bash_answer_them() {
        let tests: &[&[&str]] = &[
            &["redis-server", "!=", "redis-server"],
            &["-x", "!=", "x"],
            &["-n", ""],
            &["-z", ""],
            &["-n", "a"],
            &["-z", "a"],
            &[""],
            &["a"],
            &["-n"],
            &["-z"],
            &["!"],
            &["="],
            &["!", ""],
            &["!", "a"],
            &["!", "-n", ""],
            &["!", "a", "=", "a"],
            &["!", "=", "x"],
            &["a", "=", "b", "-o", "c", "=", "c"],
            &["a", "=", "b", "-a", "c", "=", "c"],
            &["java", "=", "java", "-a", "-n", ""],
            &["java", "=", "java", "-a", "-n", "-Dx=1"],
            &["!", "a", "=", "b", "-o", "x"],
            &["a", "=", "a", "-o", "b", "=", "c", "-a", "d", "=", "e"],
            &["(", "a", "=", "b", ")", "-o", "(", "c", ")"],
            &["(", "a", ")"],
            &["(", "", ")"],
            &["1", "-eq", "01"],
            &["2", "-lt", "10"],
            &["10", "-lt", "2"],
            &["-1", "-le", "-1"],
            &["3", "-ge", "4"],
            &["3", "-ne", "4"],
            &["5", "-gt", "4"],
            &["a", "-eq", "1"],
            &["a", "-a", "b"],
            &["", "-a", "b"],
            &["", "-o", "b"],
            &["", "-o", ""],
            &["(", "a", "=", "b"],
            &["-n", "a", "-a", "-z", ""],
            &["!", "!", "a"],
            &["x", "=="],
        ];
        for shell in ["dash", "bash"] {
            for (t, want) in tests.iter().zip(shell_test_answers(shell, tests, None)) {
                assert_eq!(
                    eval_test(&bracketed(t), &()),
                    want,
                    "{shell}: [ {} ]",
                    t.join(" ")
                );
            }
        }
        // What only the file system, or running something, tells.
        for t in [
            &["-f", "/etc/passwd"][..],
            &["-x", "a", "-a", "b"],
            &["a", "-nt", "b"],
        ] {
            assert_eq!(eval_test(&bracketed(t), &()), None, "{t:?}");
        }
    }

    /// bash's `[[ … ]]` as `simple_test` answers it, against bash's answer (run with
    /// `mongod x.conf` as its arguments and `A="a b"`): what we read is known and is
    /// bash's answer; what we do not read (`=~`, `<`, extended patterns, file tests with
    /// no image) and what bash refuses (status 2) is not known.
    #[test]
    fn double_bracket_tests_are_answered_as_bash_answers_them() {
        let read = [
            "$1 == mongo*",
            "$1 == mongo",
            "\"$1\" == mongo*",
            "$1 == 'mongo'd",
            "$1 != -*",
            "${1:0:1} == '-'",
            "-n $2 && $2 == *.conf",
            "-z $3 || $3 = x",
            "! ( $1 == a || $1 == b ) && -n $1",
            "$2 == $1",
            "$# -gt 1",
            "$# -eq 2 && $1 != x",
            "$1",
            "$3",
            "-n",
            "( $1 == m* )",
            "$1 == [a-m]*",
            "$1 == [!a-m]*",
            "$A == 'a b'",
            "$A == a\\ b",
            "$A == a?b",
            // Quoted pattern characters stand for themselves.
            "$A == \"a \"*",
            "$1 == \"mongo*\"",
            "$1 == 'mon'g?d",
            "$1 == \"m\"*\"d\"",
            "$1 == mongo\\*",
            "$1 == \"[m]ongod\"",
            "$1 == [m]\"ongod\"",
            "-n $A && ( -z $3 || $1 == x )",
            "$1 == mongod || $1 == x && $2 == y",
            "! $1 == mongod",
            "$1 == m*d && ! -z $2",
        ];
        let not_read = [
            "$1 =~ ^m",
            "$1 < n",
            "$1 == @(mongod|x)",
            "-f /etc/passwd",
            "-d / && $1 == mongod",
            // Which parts of an expansion were quoted is not kept.
            "$1 == \"$A\"*",
        ];
        let vars = Vars {
            named: BTreeMap::from([("A".to_string(), "a b".to_string())]),
            positional: vec!["mongod".into(), "x.conf".into()],
            ..Vars::default()
        };
        for (expression, known) in read
            .iter()
            .map(|e| (e, true))
            .chain(not_read.iter().map(|e| (e, false)))
        {
            let status = std::process::Command::new("bash")
                .args([
                    "-c",
                    &format!("A='a b'; [[ {expression} ]]"),
                    "--",
                    "mongod",
                    "x.conf",
                ])
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap()
                .code();
            let commands = shell::parse(&format!("[[ {expression} ]]")).unwrap();
            assert_eq!(commands.len(), 1, "{expression}: {commands:?}");
            let ours = simple_test(&commands[0].words, &vars, &());
            match (known, status) {
                (true, Some(0 | 1)) => {
                    assert_eq!(ours, Some(status == Some(0)), "[[ {expression} ]]")
                }
                (true, _) => panic!("bash refused [[ {expression} ]]"),
                (false, _) => assert_eq!(ours, None, "[[ {expression} ]]"),
            }
        }
    }

    /// `[ ARGS ]`.
    fn bracketed(args: &[&str]) -> Vec<String> {
        let mut argv = vec!["[".to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        argv.push("]".into());
        argv
    }

    /// What `shell` answers to `[ T ]` for each of `tests` (run in `cwd`): true for exit
    /// status 0, false for 1, `None` for an error (2).
    fn shell_test_answers(
        shell: &str,
        tests: &[&[&str]],
        cwd: Option<&std::path::Path>,
    ) -> Vec<Option<bool>> {
        let quote = |a: &str| format!("'{a}'");
        let script: String = tests
            .iter()
            .map(|t| {
                format!(
                    "[ {} ] 2>/dev/null; echo $?\n",
                    t.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
                )
            })
            .collect();
        let mut command = std::process::Command::new(shell);
        command.args(["-c", &script]);
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let out = command.output().unwrap_or_else(|e| panic!("{shell}: {e}"));
        let answers: Vec<Option<bool>> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|status| match status {
                "0" => Some(true),
                "1" => Some(false),
                _ => None,
            })
            .collect();
        assert_eq!(answers.len(), tests.len(), "{shell}");
        answers
    }

    /// File tests answered from the image, against `dash` and `bash` in a directory
    /// holding the same files: each answer we give is theirs, and what the image does not
    /// keep (a directory's mode, the size of a file whose text was not kept, whether
    /// what is there can be read or written) is not known.
    #[test]
    fn file_tests_are_answered_from_the_image_as_dash_and_bash_answer_them() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("stellaops-file-tests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("d/sub")).unwrap();
        std::fs::write(dir.join("text"), "x").unwrap();
        std::fs::write(dir.join("empty"), "").unwrap();
        std::fs::write(dir.join("prog"), "\x7fELF").unwrap();
        std::fs::set_permissions(dir.join("prog"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("d/sub/f"), "y").unwrap();
        std::os::unix::fs::symlink("text", dir.join("link")).unwrap();
        std::os::unix::fs::symlink("nowhere", dir.join("dangling")).unwrap();
        std::os::unix::fs::symlink("d/sub", dir.join("dirlink")).unwrap();
        std::os::unix::fs::symlink("loop", dir.join("loop")).unwrap();
        let vfs = Vfs::from_nodes(BTreeMap::from([
            ("text".to_string(), file(false, Some("x"), None)),
            ("empty".to_string(), file(false, Some(""), None)),
            ("prog".to_string(), file(true, None, Some(lib(&[])))),
            ("d".to_string(), Node::Dir),
            ("d/sub/f".to_string(), file(false, Some("y"), None)),
            (
                "link".to_string(),
                Node::Symlink {
                    target: "text".into(),
                },
            ),
            (
                "dangling".to_string(),
                Node::Symlink {
                    target: "nowhere".into(),
                },
            ),
            (
                "dirlink".to_string(),
                Node::Symlink {
                    target: "d/sub".into(),
                },
            ),
            (
                "loop".to_string(),
                Node::Symlink {
                    target: "loop".into(),
                },
            ),
        ]));
        let paths = [
            "text",
            "empty",
            "prog",
            "d",
            "d/sub",
            "d/sub/f",
            "./d/../text",
            "link",
            "dangling",
            "dirlink",
            "dirlink/f",
            "loop",
            "missing",
            "d/missing",
            "text/x",
            "",
        ];
        let ops = ["-e", "-f", "-d", "-h", "-L", "-x", "-s", "-r", "-w"];
        let mut tests: Vec<Vec<&str>> = Vec::new();
        for op in ops {
            for path in paths {
                tests.push(vec![op, path]);
            }
        }
        // With `!`, `-a`, `-o`, as the node image's entrypoint combines them.
        tests.extend([
            vec!["-f", "text", "-a", "!", "-x", "text"],
            vec!["-f", "prog", "-a", "!", "-x", "prog"],
            vec!["-d", "missing", "-o", "-e", "link"],
            vec!["!", "-e", "dangling"],
        ]);
        let tests: Vec<&[&str]> = tests.iter().map(Vec::as_slice).collect();
        let tracer = Tracer {
            vfs: &vfs,
            trace: Trace::default(),
            steps: Cell::new(0),
            function_calls: Cell::new(0),
            parsed: Cell::new(0),
            walked: Cell::new(0),
            main: true,
            unsure: false,
        };
        let ctx = Ctx {
            env: BTreeMap::new(),
            cwd: String::new(),
            cwd_unknown: false,
            volumes: Vec::new(),
            loop_depth: 0,
            depth: 0,
            conditional: false,
        };
        let functions = BTreeMap::new();
        let image = ScriptImage::new(&tracer, &ctx, &functions);
        let mut known = 0;
        for shell in ["dash", "bash"] {
            for (t, real) in tests
                .iter()
                .zip(shell_test_answers(shell, &tests, Some(&dir)))
            {
                let ours = eval_test(&bracketed(t), &image);
                let not_kept = matches!(t, [op, path] if (*op == "-x" && ["d", "d/sub", "dirlink"].contains(path))
                    || (*op == "-s" && ["prog", "d", "d/sub", "dirlink"].contains(path))
                    || (["-r", "-w"].contains(op) && real == Some(true)));
                if not_kept {
                    assert_eq!(ours, None, "{shell}: [ {} ]", t.join(" "));
                } else {
                    assert_eq!(ours, real, "{shell}: [ {} ]", t.join(" "));
                    known += 1;
                }
            }
        }
        assert!(known > 200, "{known}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn file(exec: bool, text: Option<&str>, elf: Option<ElfInfo>) -> Node {
        Node::File {
            exec,
            elf,
            text: text.map(str::to_string),
        }
    }

    fn lib(needed: &[&str]) -> ElfInfo {
        ElfInfo {
            bits: 64,
            machine: 62,
            needed: needed.iter().map(|s| s.to_string()).collect(),
            ..ElfInfo::default()
        }
    }

    fn image() -> Vfs {
        let mut exe = lib(&["libtinfo.so.6", "libc.so.6"]);
        exe.interp = Some("/lib64/ld-linux-x86-64.so.2".into());
        let mut app = lib(&["libapp.so", "libc.so.6"]);
        app.interp = Some("/lib64/ld-linux-x86-64.so.2".into());
        app.runpath = vec!["$ORIGIN/../lib".into()];
        let nodes = BTreeMap::from([
            (
                "bin".into(),
                Node::Symlink {
                    target: "usr/bin".into(),
                },
            ),
            (
                "lib".into(),
                Node::Symlink {
                    target: "usr/lib".into(),
                },
            ),
            (
                "lib64".into(),
                Node::Symlink {
                    target: "usr/lib64".into(),
                },
            ),
            ("usr/bin/bash".into(), file(true, None, Some(exe))),
            (
                "usr/bin/sh".into(),
                Node::Symlink {
                    target: "bash".into(),
                },
            ),
            (
                "usr/bin/env".into(),
                file(true, None, Some(lib(&["libc.so.6"]))),
            ),
            ("usr/bin/tini".into(), file(true, None, Some(lib(&[])))),
            (
                "usr/bin/mkdir".into(),
                file(true, None, Some(lib(&["libc.so.6"]))),
            ),
            (
                "usr/lib64/ld-linux-x86-64.so.2".into(),
                Node::Symlink {
                    target: "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into(),
                },
            ),
            (
                "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into(),
                file(false, None, Some(lib(&[]))),
            ),
            (
                "usr/lib/x86_64-linux-gnu/libc.so.6".into(),
                file(false, None, Some(lib(&[]))),
            ),
            (
                "usr/lib/x86_64-linux-gnu/libtinfo.so.6".into(),
                Node::Symlink {
                    target: "libtinfo.so.6.4".into(),
                },
            ),
            (
                "usr/lib/x86_64-linux-gnu/libtinfo.so.6.4".into(),
                file(false, None, Some(lib(&["libc.so.6"]))),
            ),
            (
                "etc/ld.so.conf".into(),
                file(false, Some("include /etc/ld.so.conf.d/*.conf\n"), None),
            ),
            (
                "etc/ld.so.conf.d/x86_64-linux-gnu.conf".into(),
                file(
                    false,
                    Some(
                        "# Multiarch support\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n",
                    ),
                    None,
                ),
            ),
            ("opt/app/bin/server".into(), file(true, None, Some(app))),
            (
                "opt/app/lib/libapp.so".into(),
                file(false, None, Some(lib(&[]))),
            ),
            (
                "entrypoint.sh".into(),
                file(
                    true,
                    Some(
                        "#!/bin/sh\nset -e\nmkdir -p /run/app\nif [ \"$1\" = 'serve' ]; then\n  shift\n  exec /opt/app/bin/server \"$@\"\nfi\nexec \"$@\"\n",
                    ),
                    None,
                ),
            ),
            (
                "var/lib/dpkg/info/libc6:amd64.list".into(),
                file(
                    false,
                    Some(
                        "/.\n/lib64\n/lib64/ld-linux-x86-64.so.2\n/lib/x86_64-linux-gnu/libc.so.6\n/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\n",
                    ),
                    None,
                ),
            ),
            (
                "var/lib/dpkg/info/bash.list".into(),
                file(false, Some("/bin/bash\n/usr/bin/bash\n"), None),
            ),
            (
                "var/lib/dpkg/info/libtinfo6:amd64.list".into(),
                file(
                    false,
                    Some(
                        "/lib/x86_64-linux-gnu/libtinfo.so.6\n/lib/x86_64-linux-gnu/libtinfo.so.6.4\n",
                    ),
                    None,
                ),
            ),
            (
                "var/lib/dpkg/info/coreutils.list".into(),
                file(false, Some("/bin/mkdir\n"), None),
            ),
            (
                "var/lib/dpkg/info/openssl.list".into(),
                file(false, Some("/usr/bin/openssl\n"), None),
            ),
        ]);
        Vfs::from_nodes(nodes)
    }

    fn config(entrypoint: &[&str], cmd: &[&str]) -> RunConfig {
        RunConfig {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
            working_dir: "/".into(),
            volumes: Vec::new(),
        }
    }

    /// Found by the `shell` fuzz target (2026-12-03): a function called from inside a
    /// function body was looked up by its index in the whole script but sliced out of the
    /// body, past its end. Plain recursion did it too.
    #[test]
    fn functions_called_from_function_bodies_are_followed_not_a_panic() {
        let scripts = [
            "#!/usr/bin/bash\nf() {\n  a\n  b\n  c\n  f\n}\nf\n".to_string(),
            "#!/usr/bin/bash\ng() {\n  exec /usr/bin/bash -c true\n}\nf() {\n  x=1\n  g\n}\nf \"$@\"\n"
                .to_string(),
            // The fuzzer's input, as it found it.
            String::from_utf8_lossy(
                b"#!/usr/bin/bash\nmain() {\n  local x=\"$(id -u)\"\n  c\0\0\0\0\0\0\0\0in/tee//x\n\tbody $x\nmain(+\0\0\0  loca#l x! \"$@\"\n}\nmain \"$@\" # \x9cone\n",
            )
            .into_owned(),
            // Then an out-of-memory: a script running itself with "$@" "$@" doubles its
            // arguments at each of its 256 steps.
            "#!/usr/bin/bash\nexec /entry.sh \"$@\" \"$@\" x\n".to_string(),
            // And a script sourcing itself three times: 3^16 sourced scripts.
            "#!/usr/bin/bash\n. /entry.sh\n. /entry.sh\n. /entry.sh\n".to_string(),
            // Found next (a timeout): functions calling each other several times per body.
            "#!/usr/bin/bash\na() {\n  b; b; b\n}\nb() {\n  c; c; c\n}\nc() {\n  a; a; a\n}\na\n".to_string(),
        ];
        for (n, text) in scripts.iter().enumerate() {
            let nodes = BTreeMap::from([
                ("usr/bin/bash".into(), file(true, None, Some(lib(&[])))),
                ("entry.sh".into(), file(true, Some(text), None)),
            ]);
            let vfs = Vfs::from_nodes(nodes);
            let t = trace(&vfs, &config(&["/entry.sh"], &[]));
            if n == 3 {
                // The doubling stops at the expansion bounds.
                assert!(
                    t.notes
                        .iter()
                        .any(|note| note.contains("not known statically")),
                    "{t:#?}"
                );
            }
            if n == 4 || n == 5 {
                // 3^16 calls without the budget.
                assert!(
                    t.notes.iter().any(|note| note.contains("after 256 calls")),
                    "{t:#?}"
                );
            }
            if n == 1 {
                // g, called from f, execs bash.
                assert!(
                    t.chain
                        .iter()
                        .any(|s| s.path == "/usr/bin/bash" && s.from == "/entry.sh:3"),
                    "{t:#?}"
                );
            }
        }
    }

    /// Entrypoint scripts that choose their program from their arguments, in the idioms of
    /// official images (a first argument that is an option or a `.conf` file, a `java`
    /// named by path, bash's `${1:0:1}`, tests joined by `&&`, `||`, `-a`, `-o`): the
    /// program and arguments the trace ends at are those the real shell (Debian's `dash`,
    /// or `bash` for a bash script) execs, run over stub programs that record them.
    #[test]
    fn entrypoints_choose_their_program_as_the_real_shell_does() {
        let scripts: &[(&str, &str, &[&[&str]])] = &[
            (
                "/bin/sh",
                "set -e\nif [ \"${1#-}\" != \"$1\" ] || [ \"${1%.conf}\" != \"$1\" ]; then\n\tset -- redis-server \"$@\"\nfi\nexec \"$@\"\n",
                &[
                    &["redis-server"],
                    &["--port", "7000"],
                    &["redis.conf"],
                    &["redis-cli", "ping"],
                ],
            ),
            (
                "/bin/sh",
                "JAVA_OPTIONS='-Xmx1g -Dx=1'\nif [ \"${1##*/}\" = java -a -n \"$JAVA_OPTIONS\" ] ; then\n\tjava=\"$1\"\n\tshift\n\tset -- \"$java\" $JAVA_OPTIONS \"$@\"\nfi\nexec \"$@\"\n",
                &[&["java", "-jar", "start.jar"], &["memcached", "-v"]],
            ),
            (
                "/bin/bash",
                "set -Eeo pipefail\nif [ \"${1:0:1}\" = '-' ]; then\n\tset -- postgres \"$@\"\nfi\nif [ \"$1\" = postgres ] && [ \"${#2}\" -gt 3 ]; then\n\tset -- \"$@\" -c log=all\nfi\nexec \"$@\"\n",
                &[
                    &["-c", "shared_buffers=1GB"],
                    &["postgres"],
                    &["postgres", "-p", "5433"],
                    &["psql"],
                ],
            ),
            (
                "/bin/sh",
                "if [ \"$1\" = web ] && [ -n \"$PORT\" ]; then\n\tset -- gunicorn -b \":$PORT\" app\nelif [ \"$1\" = worker -o \"$1\" = beat ]; then\n\tset -- celery \"$1\"\nelif [ \"${1%%:*}\" = memcached ] || [ \"$1\" = web ]; then\n\tset -- memcached -p \"${1#*:}\"\nfi\nexec \"$@\"\n",
                &[
                    &["web"],
                    &["worker"],
                    &["beat", "-l", "info"],
                    &["memcached:11311"],
                    &["psql", "-c", "x"],
                ],
            ),
            (
                "/bin/sh",
                "set -e\ncase \"$1\" in\n\t-*|'')\n\t\tset -- app-server \"$@\" ;;\n\t*.conf)\n\t\tset -- app-server -c \"$1\" ;;\n\t(server|serve)\n\t\tshift\n\t\texec app-server --listen 0.0.0.0 \"$@\"\n\t\t;;\n\t[0-9]*) exec app-server --port \"$1\" ;;\n\t*) ;;\nesac\nexec \"$@\"\n",
                &[
                    &["--debug"],
                    &[""],
                    &["site.conf"],
                    &["serve", "-v"],
                    &["8080"],
                    &["psql"],
                ],
            ),
            (
                "/bin/bash",
                "mode=\"${1%%:*}\"\ncase $mode in\n  worker)\n    case \"${1#*:}\" in\n      [[:digit:]]*) set -- celery worker -c \"${1#*:}\" ;;\n      *) set -- celery worker ;;\n    esac ;;\n  redis) set -- redis-server ;;\nesac\nexec \"$@\"\n",
                &[&["worker:4"], &["worker:x"], &["redis"], &["psql"]],
            ),
            (
                "/bin/sh",
                "if ! command -v -- \"$1\" >/dev/null 2>&1 ; then\n\tset -- java -jar /opt/start.jar \"$@\"\nfi\nif ! [ \"$1\" = java ] && command -v \"$1\" > /dev/null; then\n\texec \"$@\"\nfi\nexec \"$@\" --module=http\n",
                &[
                    &["--list-config"],
                    &["memcached", "-vv"],
                    &["java", "-version"],
                    &["jetty.sh"],
                ],
            ),
            (
                "/bin/sh",
                "for A in \"$@\" ; do\n\tcase $A in\n\t\t--list-config |\\\n\t\t--version |\\\n\t\t-v )\\\n\t\tJAVA=\"$1\"\n\t\tshift\n\t\texec \"$JAVA\" -Dterminating=1 \"$@\"\n\tesac\ndone\nfor opt in -Xmx1g '-Dx=a b'; do\n\tJAVA_OPTS=\"$JAVA_OPTS $opt\"\ndone\nstart() { exec app-server \"$@\"; }\nif [ \"$1\" = serve ]; then shift; start \"$@\"; fi\nexec \"$@\" $JAVA_OPTS\n",
                &[
                    &["java", "-jar", "start.jar"],
                    &["java", "--list-config"],
                    &["memcached", "-v"],
                    &["serve", "--x"],
                ],
            ),
            (
                // The official node image's entrypoint (as its idiom goes, written here).
                "/bin/sh",
                "set -e\nif [ \"${1#-}\" != \"${1}\" ] || [ -z \"$(command -v \"${1}\")\" ] || { [ -f \"${1}\" ] && ! [ -x \"${1}\" ]; }; then\n  set -- node \"$@\"\nfi\nexec \"$@\"\n",
                &[
                    &["node"],
                    &["npm", "start"],
                    &["app.js"],
                    &["-e", "1"],
                    &["yarn"],
                    &["./run.sh", "x"],
                ],
            ),
            (
                "/bin/sh",
                "JAVA=\"$(command -v java)\"\nif [ -d conf.d ] && [ -f \"conf.d/$1.conf\" ]; then\n\tset -- app-server -c \"conf.d/$1.conf\"\nelif [ -x \"$JAVA\" ] && [ ! -e app.js ]; then\n\tset -- \"$JAVA\" -jar app.jar \"$@\"\nelif [ \"$1\" = java ] && [ -h app.js -o -s app.js ]; then\n\tshift\n\tset -- \"$JAVA\" \"$@\"\nfi\nexec \"$@\"\n",
                &[&["site"], &["psql"], &["java", "-version"]],
            ),
            (
                // Options read by a `while` loop over `case`, `shift` and `break`.
                "/bin/sh",
                "set -e\nwhile [ $# -gt 0 ]; do\n\tcase \"$1\" in\n\t\t--debug) DEBUG=1; shift ;;\n\t\t--port) PORT_ARG=\"$2\"; shift 2 ;;\n\t\t--) shift; break ;;\n\t\t-*) set -- app-server \"$@\"; break ;;\n\t\t*) break ;;\n\tesac\ndone\nif [ -n \"$DEBUG\" ]; then set -- \"$@\" --verbose; fi\nif [ -n \"$PORT_ARG\" ]; then set -- \"$@\" -p \"$PORT_ARG\"; fi\nexec \"$@\"\n",
                &[
                    &["--debug", "psql"],
                    &["--port", "9", "--", "memcached", "-v"],
                    &["-x"],
                    &["--debug", "--debug", "node"],
                    &["psql", "-c", "x"],
                ],
            ),
            (
                "/bin/bash",
                "prog=\nfor a in \"$@\"; do\n\tcase \"$a\" in\n\t\t-*) continue ;;\n\tesac\n\tprog=\"$a\"\n\tbreak\ndone\nuntil [ \"$1\" = \"$prog\" ]; do shift; done\nexec \"$@\"\n",
                &[
                    &["-v", "-q", "memcached", "-p", "1"],
                    &["psql"],
                    &["-x", "node", "-e", "1"],
                ],
            ),
            (
                "/bin/sh",
                "start() {\n\texec app-server \"$@\"\n}\nn=\nwhile :; do\n\tif [ -n \"$n\" ]; then break; fi\n\tn=1\n\tif [ \"$1\" = serve ]; then shift; start \"$@\"; fi\ndone\nexec \"$@\"\n",
                &[&["serve", "--x"], &["psql"]],
            ),
            (
                // `break` and `continue` after `&&` and `||`.
                "/bin/sh",
                "prog=\nfor a in \"$@\"; do\n\t[ \"${a#-}\" != \"$a\" ] && continue\n\t[ -x \"$(command -v \"$a\")\" ] || continue\n\tprog=\"$a\"\n\tbreak\ndone\nexec \"$prog\"\n",
                &[
                    &["-v", "nosuch", "psql", "x"],
                    &["memcached"],
                    &["--", "node"],
                ],
            ),
            (
                // `{ … }` groups joined by `&&` and `||`.
                "/bin/sh",
                "command -v memcached >/dev/null || { echo missing >&2; exit 1; }\n[ -n \"$NOPE\" ] && { echo never; exit 2; }\n[ -z \"$NOPE\" ] && {\n\tset -- \"$@\" --flag\n}\nexec \"$@\"\n",
                &[&["psql"], &["memcached", "-v"]],
            ),
            (
                // Commands joined by `&&` and `||` outside conditions.
                "/bin/sh",
                "cd conf.d || exit 1\ncd ..\n[ -z \"$PORT\" ] && PORT=8080\n[ -n \"$NOPE\" ] || NOPE=set\n[ -f app.js ] && set -- \"$@\" --app\n[ -f missing ] && exec psql\n[ \"$1\" = memcached ] && exec \"$@\" || exec app-server -p \"$PORT\" -n \"$NOPE\" \"$@\"\n",
                &[&["x"], &["y", "z"], &["memcached"]],
            ),
            (
                // bash's `[[ … ]]` with patterns, as the official mongo image tests.
                "/bin/bash",
                "set -e\nif [[ \"$1\" == -* ]]; then\n\tset -- mongod \"$@\"\nfi\nif [[ \"$1\" == mongo* && -n \"$2\" ]] || [[ $1 == app-server ]]; then\n\tset -- \"$@\" --bind_ip_all\nfi\nexec \"$@\"\n",
                &[
                    &["--port", "1"],
                    &["mongod"],
                    &["mongod", "-v"],
                    &["psql"],
                    &["app-server"],
                ],
            ),
            (
                // Functions as conditions, as the official postgres and mysql images'
                // entrypoints use them (the idioms written here): a check of bash's
                // `FUNCNAME`, a `for`/`case` loop returning 0 or 1, a quoted `?` in a
                // pattern.
                "/bin/bash",
                "set -Eeo pipefail\n_is_sourced() {\n\t[ \"${#FUNCNAME[@]}\" -ge 2 ] \\\n\t\t&& [ \"${FUNCNAME[0]}\" = '_is_sourced' ] \\\n\t\t&& [ \"${FUNCNAME[1]}\" = 'source' ]\n}\n_wants_help() {\n\tlocal arg\n\tfor arg; do\n\t\tcase \"$arg\" in\n\t\t\t-'?'|--help|--describe-config|-V|--version)\n\t\t\t\treturn 0\n\t\t\t\t;;\n\t\tesac\n\tdone\n\treturn 1\n}\n_main() {\n\tif [ \"${1:0:1}\" = '-' ]; then\n\t\tset -- postgres \"$@\"\n\tfi\n\tif [ \"$1\" = 'postgres' ] && ! _wants_help \"$@\"; then\n\t\tset -- \"$@\" -D /var/lib/data\n\tfi\n\texec \"$@\"\n}\nif ! _is_sourced; then\n\t_main \"$@\"\nfi\n",
                &[
                    &["postgres"],
                    &["-c", "max_connections=5"],
                    &["postgres", "--help"],
                    &["postgres", "-?"],
                    &["postgres", "-x"],
                    &["-V"],
                    &["psql", "-h", "db"],
                ],
            ),
            (
                // Functions whose status is their last list's, or a `case` deciding
                // `return`; an `exit` in a function `||` skips.
                "/bin/sh",
                "set -e\nis_server() {\n\t[ \"$1\" = app-server ] || [ \"$1\" = memcached ]\n}\nhas_config() {\n\t[ -f \"conf.d/$1.conf\" ]\n}\nwant_debug() {\n\tcase \"$DEBUG\" in\n\t\t1|yes|true) return 0 ;;\n\tesac\n\treturn 1\n}\ndie() {\n\techo \"$*\" >&2\n\texit 1\n}\n[ \"$1\" = memcached ] && DEBUG=yes\nif has_config \"$1\"; then\n\tset -- app-server -c \"conf.d/$1.conf\"\nfi\nif is_server \"$1\" && want_debug; then\n\tset -- \"$@\" --debug\nfi\nis_server \"$1\" || [ \"$1\" = psql ] || die \"unknown program $1\"\nexec \"$@\"\n",
                &[
                    &["site"],
                    &["memcached", "-v"],
                    &["app-server"],
                    &["psql", "-c", "x"],
                ],
            ),
            (
                // bash's FUNCNAME at the top and two functions deep.
                "/bin/bash",
                "inner() {\n\texec app-server \"${#FUNCNAME[@]}\" \"${FUNCNAME[0]}\" \"${FUNCNAME[1]}\" \"${FUNCNAME[2]}\" \"x${FUNCNAME[3]}\" \"$FUNCNAME\"\n}\nouter() {\n\tinner \"$@\"\n}\nif [ \"$1\" = top ]; then\n\texec app-server \"${#FUNCNAME[@]}\" \"x${FUNCNAME[0]}\" \"x$FUNCNAME\"\nfi\nouter \"$@\"\n",
                &[&["top"], &["call"]],
            ),
            (
                // The script's own directory: `dirname "$0"`, `cd … && pwd`, `basename`.
                "/bin/sh",
                "set -e\ncd conf.d\nHERE=\"$(cd \"$(dirname \"$0\")\" && pwd)\"\ncd \"$HERE\"\nif [ \"$(basename \"$1\" .sh)\" = run ]; then\n\tshift\n\texec ./run.sh \"$@\"\nfi\nexec \"$@\"\n",
                &[
                    &["run.sh", "-x"],
                    &["/opt/run.sh", "a"],
                    &["memcached", "-v"],
                ],
            ),
            (
                // bash's idiom for it, with BASH_SOURCE.
                "/bin/bash",
                "SCRIPT_DIR=$( cd -- \"$( dirname -- \"${BASH_SOURCE[0]}\" )\" &> /dev/null && pwd )\ncd conf.d\ncd \"$SCRIPT_DIR\"\nif [ -x ./run.sh ] && [ \"$1\" != direct ]; then exec ./run.sh \"$@\"; fi\nshift\nexec \"$@\"\n",
                &[&["a", "b"], &["direct", "memcached", "-v"]],
            ),
        ];
        let programs = [
            "redis-server",
            "redis-cli",
            "java",
            "memcached",
            "postgres",
            "psql",
            "gunicorn",
            "celery",
            "app-server",
            "node",
            "npm",
            "mongod",
        ];
        let stubs: Vec<&str> = programs.iter().copied().chain(["run.sh"]).collect();
        let (dir, bin) = stub_programs("entrypoints", &stubs, |_| RECORD_ARGV);
        let out = dir.join("argv");
        // Files in the working directory, for the scripts' file tests.
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(dir.join("conf.d/site.conf"), "x").unwrap();
        std::fs::write(dir.join("app.js"), "console.log(1)").unwrap();
        std::fs::rename(bin.join("run.sh"), dir.join("run.sh")).unwrap();
        // The real tools the scripts' substitutions run.
        for tool in ["dirname", "basename", "readlink", "realpath"] {
            std::os::unix::fs::symlink(format!("/usr/bin/{tool}"), bin.join(tool)).unwrap();
        }
        let mut checked = 0;
        for (shell, body, cmds) in scripts {
            let script = format!("#!{shell}\n{body}");
            std::fs::write(dir.join("entrypoint.sh"), &script).unwrap();
            let mut nodes = BTreeMap::from([
                ("bin/sh".to_string(), file(true, None, Some(lib(&[])))),
                ("bin/bash".to_string(), file(true, None, Some(lib(&[])))),
                ("entrypoint.sh".to_string(), file(true, Some(&script), None)),
                ("conf.d/site.conf".to_string(), file(false, Some("x"), None)),
                (
                    "app.js".to_string(),
                    file(false, Some("console.log(1)"), None),
                ),
                ("run.sh".to_string(), file(true, None, Some(lib(&[])))),
            ]);
            for p in programs {
                nodes.insert(
                    format!("usr/local/bin/{p}"),
                    file(true, None, Some(lib(&[]))),
                );
            }
            let vfs = Vfs::from_nodes(nodes);
            for cmd in cmds.iter() {
                let _ = std::fs::remove_file(&out);
                let status = std::process::Command::new(if *shell == "/bin/sh" {
                    "/bin/dash"
                } else {
                    "/bin/bash"
                })
                .arg(dir.join("entrypoint.sh"))
                .args(cmd.iter())
                .current_dir(&dir)
                .env_clear()
                .env("PATH", &bin)
                .env("PORT", "8000")
                .status()
                .unwrap();
                assert!(status.success(), "{shell} {cmd:?}");
                let real = std::fs::read_to_string(&out).unwrap();
                let real: Vec<&str> = real.lines().collect();
                let mut config = config(&["/entrypoint.sh"], cmd);
                config.env.push("PORT=8000".into());
                let t = trace(&vfs, &config);
                // The program the script execs (node then runs its own script).
                let exec = t
                    .chain
                    .iter()
                    .find(|s| s.from.starts_with("/entrypoint.sh:"))
                    .unwrap_or_else(|| panic!("{cmd:?}: {t:#?}"));
                let mut traced = vec![exec.path.rsplit('/').next().unwrap()];
                traced.extend(exec.argv[1..].iter().map(String::as_str));
                assert_eq!(traced, real, "{shell} {body} with {cmd:?}: {t:#?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 83);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// What a stub records: its name and arguments, a line each, in `$STUB_DIR/argv`.
    const RECORD_ARGV: &str = "printf '%s\\n' \"${0##*/}\" \"$@\" > \"$STUB_DIR/argv\"";

    /// A fresh directory (`stellaops-WHAT-PID` under the temporary directory) with `bin/`
    /// holding an executable `#!/bin/sh` stub for each name, running `body(name)` with
    /// `STUB_DIR` the directory: the directory and `bin/`.
    fn stub_programs(
        what: &str,
        names: &[&str],
        body: impl Fn(&str) -> &'static str,
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("stellaops-{what}-{}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for name in names {
            let stub = bin.join(name);
            let text = format!("#!/bin/sh\nSTUB_DIR='{}'\n{}\n", dir.display(), body(name));
            std::fs::write(&stub, text).unwrap();
            std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        (dir, bin)
    }

    /// The trace of `/entry.sh`, a bash script of `body`, in an image holding bash,
    /// `/usr/bin/server` and `extra`.
    fn trace_entry_script<const N: usize>(body: &str, extra: [(&str, Node); N]) -> Trace {
        trace_entry_script_with_volumes(body, extra, &[])
    }

    /// `t` ends in `/usr/bin/bash` (the script's last `exec`), and `/usr/bin/server`, whose
    /// `exec` may not have run, is traced as a program that may run.
    fn assert_bash_is_main_and_server_may_run(t: &Trace, script: &str) {
        assert_eq!(
            t.terminal().unwrap().path,
            "/usr/bin/bash",
            "{script}: {t:#?}"
        );
        assert!(
            t.also_run.iter().any(|s| s.path == "/usr/bin/server"),
            "{script}: {t:#?}"
        );
    }

    /// [`trace_entry_script`] with the config's `Volumes`.
    fn trace_entry_script_with_volumes<const N: usize>(
        body: &str,
        extra: [(&str, Node); N],
        volumes: &[&str],
    ) -> Trace {
        let text = format!("#!/usr/bin/bash\n{body}");
        let mut nodes = BTreeMap::from([
            ("usr/bin/bash".to_string(), file(true, None, Some(lib(&[])))),
            (
                "usr/bin/server".to_string(),
                file(true, None, Some(lib(&[]))),
            ),
            ("entry.sh".to_string(), file(true, Some(&text), None)),
        ]);
        nodes.extend(extra.map(|(path, node)| (path.to_string(), node)));
        let mut config = config(&["/entry.sh"], &[]);
        config.volumes = volumes.iter().map(|v| v.to_string()).collect();
        trace(&Vfs::from_nodes(nodes), &config)
    }

    /// A loop whose run is not known — its condition, a `break` under an undecided
    /// condition, more than 64 iterations — is followed as before (its body may run, its
    /// variable is unknown), with nothing the attempt to run it through did kept.
    #[test]
    fn loops_that_cannot_be_run_through_may_run_and_leave_nothing_behind() {
        let t = trace_entry_script(
            "while read line; do exec /usr/bin/server \"$line\"; done < /etc/list\nexec /usr/bin/bash -c true\n",
            [],
        );
        assert_bash_is_main_and_server_may_run(&t, "");
        // The first iteration's `break` is undecided: X is not `a` (the value the attempt
        // assigned before reaching it), and not `b`.
        let t = trace_entry_script(
            "for x in a b; do X=$x; if [ -f /run/flag ]; then break; fi; done\nexec /usr/bin/server \"$X\"\n",
            [],
        );
        let terminal = t.terminal().unwrap();
        assert_eq!(terminal.path, "/usr/bin/server", "{t:#?}");
        assert_eq!(terminal.argv[1..], ["?"], "{t:#?}");
        // The same with `TEST && break`, and with a command whose status is not known.
        for body in [
            "for x in a b; do X=$x; [ -f /run/flag ] && break; done\nexec /usr/bin/server \"$X\"\n",
            "for x in a b; do X=$x; mkdir /tmp/x || break; done\nexec /usr/bin/server \"$X\"\n",
        ] {
            let t = trace_entry_script(body, []);
            assert_eq!(t.terminal().unwrap().argv[1..], ["?"], "{body}: {t:#?}");
        }
        // Never ends: given up after 64 iterations, the `exec` after it is still the main
        // program, and the loop's side program is traced once, not 64 times.
        let t = trace_entry_script(
            "while true; do /usr/bin/bash -c 'sleep 1'; done\nexec /usr/bin/server\n",
            [],
        );
        assert_eq!(t.terminal().unwrap().path, "/usr/bin/server", "{t:#?}");
        assert_eq!(
            t.also_run
                .iter()
                .filter(|s| s.path == "/usr/bin/bash")
                .count(),
            1,
            "{t:#?}"
        );
    }

    /// `cd DIR || exit 1` does not end the script (`cd` is taken to succeed), and what runs
    /// only when a command that is no test fails may run.
    #[test]
    fn commands_joined_by_and_and_or_run_as_what_they_are_joined_to_decides() {
        let t = trace_entry_script(
            "cd /srv || exit 1\nexec /usr/bin/server\n",
            [("srv/x", file(false, Some("x"), None))],
        );
        assert_eq!(t.terminal().unwrap().path, "/usr/bin/server", "{t:#?}");
        let t = trace_entry_script(
            "mkdir -p /srv/x || exec /usr/bin/server\nexec /usr/bin/bash -c true\n",
            [],
        );
        assert_bash_is_main_and_server_may_run(&t, "");
        // A group that may run: its `exit` does not end the script, its `exec` may run.
        let t = trace_entry_script(
            "[ -f /run/x ] || { echo none; exec /usr/bin/server; exit 1; }\nexec /usr/bin/bash -c true\n",
            [],
        );
        assert_bash_is_main_and_server_may_run(&t, "");
    }

    /// File tests are answered from the image except where something is mounted over it
    /// (a `Volumes` entry, the runtime's own files), and relative ones after a `cd` that
    /// may not run; a condition's `{ …; }` group holding more than one list is not read.
    /// Each leaves its `if` undecided: the `exec` there may run, and the script goes on.
    #[test]
    fn file_tests_the_image_cannot_answer_leave_the_condition_undecided() {
        let flag = || file(false, Some("1"), None);
        for body in [
            "if [ -f /data/flag ]; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "if [ -f /etc/hosts ]; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "if [ -e /proc/1/cmdline ]; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "if [ -d /data ]; then cd /srv; fi\nif [ -f flag ]; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "cd \"$(cat /etc/dir)\"\nif [ -f flag ]; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "if { [ -f /srv/flag ]; true; }; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
        ] {
            let t = trace_entry_script_with_volumes(
                body,
                [
                    ("data/flag", flag()),
                    ("etc/hosts", flag()),
                    ("srv/flag", flag()),
                    ("flag", flag()),
                ],
                &["/data"],
            );
            assert_bash_is_main_and_server_may_run(&t, body);
        }
        // The same tests where the image decides: the `exec` in the `if` runs.
        for body in [
            "if [ -f /srv/flag ]; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "cd /srv\nif [ -f flag ] && ! [ -d flag ]; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "if false || { [ -f /srv/flag ] && [ -x /usr/bin/server ]; }; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "if [ -x \"$(command -v server)\" ]; then exec server; fi\nexec /usr/bin/bash -c true\n",
        ] {
            let t = trace_entry_script_with_volumes(body, [("srv/flag", flag())], &["/data"]);
            assert_eq!(
                t.terminal().unwrap().path,
                "/usr/bin/server",
                "{body}: {t:#?}"
            );
        }
    }

    /// `$0`, `dirname`, `cd … && pwd -P`, `readlink -f` and `pwd` are answered from the
    /// image as the script sees it: links resolved, nothing under a volume, no working
    /// directory after a `cd` to where only running the script tells.
    #[test]
    fn substitutions_of_paths_are_answered_from_the_image() {
        let server = || file(true, None, Some(lib(&[])));
        let start = "#!/usr/bin/bash\nHOME_DIR=\"$(cd \"$(dirname \"$0\")/..\" && pwd -P)\"\nREAL=\"$(readlink -f \"$0\")\"\n[ \"$REAL\" = /opt/app-1.0/bin/start.sh ] || exit 1\nexec \"$HOME_DIR/bin/server\" --home \"$HOME_DIR\"\n";
        let vfs = Vfs::from_nodes(BTreeMap::from([
            ("usr/bin/bash".to_string(), server()),
            ("opt/app-1.0/bin/server".to_string(), server()),
            (
                "opt/app-1.0/bin/start.sh".to_string(),
                file(true, Some(start), None),
            ),
            (
                "opt/app".to_string(),
                Node::Symlink {
                    target: "/opt/app-1.0".into(),
                },
            ),
        ]));
        let t = trace(&vfs, &config(&["/opt/app/bin/start.sh"], &[]));
        let terminal = t.terminal().unwrap();
        assert_eq!(terminal.path, "/opt/app-1.0/bin/server", "{t:#?}");
        assert_eq!(
            terminal.argv,
            ["/opt/app-1.0/bin/server", "--home", "/opt/app-1.0"]
        );
        // The script was given to bash as it was invoked, through the link.
        assert_eq!(t.chain[1].argv[1], "/opt/app/bin/start.sh", "{t:#?}");
        // Under a volume, and after a `cd` the script computes, not known.
        for body in [
            "D=\"$(cd /data && pwd)\"\nif [ \"$D\" = /data ]; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "cd \"$(cat /etc/dir)\"\nif [ \"$(pwd)\" = / ]; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "if [ -n \"$(readlink -f /data/x)\" ]; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
        ] {
            let t = trace_entry_script_with_volumes(
                body,
                [("data/x", file(false, Some("1"), None))],
                &["/data"],
            );
            assert_bash_is_main_and_server_may_run(&t, body);
        }
        // Where the image answers, decided.
        for body in [
            "D=\"$(cd /srv && pwd)\"\nif [ \"$D\" = /srv ]; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "cd /srv\nif [ \"$(pwd)\" = /srv ] && [ -z \"$(cd /missing && pwd)\" ]; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "if [ \"$(dirname \"$0\")\" = / ] && [ \"$(basename \"$0\" .sh)\" = entry ]; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
        ] {
            let t = trace_entry_script_with_volumes(
                body,
                [("srv/x", file(false, Some("1"), None))],
                &["/data"],
            );
            assert_eq!(
                t.terminal().unwrap().path,
                "/usr/bin/server",
                "{body}: {t:#?}"
            );
        }
    }

    /// The programs command substitutions run are traced (as programs that may run), also
    /// in backquotes, nested, in a `${VAR:-…}` default, in a here-document (not in a quoted
    /// one), through a function, and in a branch the script does not
    /// take: every program the real shell runs is traced, and the only one more is the
    /// untaken branch's.
    #[test]
    fn programs_run_in_command_substitutions_are_traced() {
        let script = "#!/bin/sh\nTOKEN=\"$(curl -s http://x)\"\nV=`id -u`\nif [ -n \"$NEVER\" ]; then X=$(jq . /f); fi\nver() { java -version; }\nJ=\"$(ver 2>&1)\"\nD=\"$(dirname \"$(readlink -f \"$(command -v java)\")\")\"\nA=$((1 + 2))\nJAVA_HOME=\"${JAVA_HOME:-$(which java)}\"\n: ${PORT:=`cat /port`}\ncat > conf <<EOF\nhost '$(hostname)'\nEOF\ncat > quoted <<'EOF'\n$(uname)\nEOF\ncd \"$(dirname \"$0\")\"\nexec memcached -v\n";
        let programs = [
            "curl",
            "id",
            "which",
            "cat",
            "hostname",
            "uname",
            "jq",
            "java",
            "readlink",
            "dirname",
            "memcached",
        ];
        let (dir, bin) = stub_programs("substitutions", &programs, |p| {
            if p == "dirname" {
                "echo \"${0##*/}\" >> \"$STUB_DIR/ran\"; echo ."
            } else {
                "echo \"${0##*/}\" >> \"$STUB_DIR/ran\"; echo x"
            }
        });
        let log = dir.join("ran");
        std::fs::write(dir.join("entrypoint.sh"), script).unwrap();
        let status = std::process::Command::new("/bin/dash")
            .arg("entrypoint.sh")
            .current_dir(&dir)
            .env_clear()
            .env("PATH", &bin)
            .status()
            .unwrap();
        assert!(status.success());
        let real: BTreeSet<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        let mut nodes = BTreeMap::from([
            ("bin/sh".to_string(), file(true, None, Some(lib(&[])))),
            ("entrypoint.sh".to_string(), file(true, Some(script), None)),
        ]);
        for p in programs {
            nodes.insert(
                format!("usr/local/bin/{p}"),
                file(true, None, Some(lib(&[]))),
            );
        }
        let t = trace(&Vfs::from_nodes(nodes), &config(&["/entrypoint.sh"], &[]));
        assert_eq!(
            t.terminal().unwrap().path,
            "/usr/local/bin/memcached",
            "{t:#?}"
        );
        let traced: BTreeSet<String> = t
            .chain
            .iter()
            .chain(&t.also_run)
            .filter_map(|s| s.path.strip_prefix("/usr/local/bin/"))
            .map(str::to_string)
            .collect();
        assert!(real.is_subset(&traced), "ran {real:?}, traced {traced:?}");
        assert_eq!(
            traced.difference(&real).collect::<Vec<_>>(),
            ["jq"],
            "{t:#?}"
        );
    }

    /// A long function called again and again (also as a condition) is walked within a
    /// budget of the script's length: past it the follower stops, with a note, rather than
    /// walking its length × the calls.
    #[test]
    fn walking_function_bodies_again_is_bounded_by_the_script_length() {
        for call in ["f", "if f; then :; fi"] {
            let body = format!(
                "f() {{\n{}}}\n{}exec /usr/bin/server\n",
                ": x\n".repeat(1000),
                format!("{call}\n").repeat(2000)
            );
            let t = trace_entry_script(&body, []);
            assert!(
                t.notes
                    .iter()
                    .any(|n| n.contains("more commands walked than their length allows")),
                "{call}: {:?}",
                t.notes
            );
            assert!(
                !t.chain.iter().any(|s| s.path == "/usr/bin/server"),
                "{call}"
            );
        }
        // Arguments growing past MAX_POSITIONAL are not followed.
        let body = format!(
            "{}exec \"$@\"\n",
            "set -- /usr/bin/server \"$@\"\n".repeat(200)
        );
        let t = trace_entry_script(&body, []);
        assert!(
            t.notes
                .iter()
                .any(|n| n.contains("more than 128 arguments")),
            "{:?}",
            t.notes
        );
        // A script of ordinary length calling a function often is followed to its end.
        let body = format!(
            "f() {{\n{}}}\n{}exec /usr/bin/server\n",
            ": x\n".repeat(20),
            "f\n".repeat(200)
        );
        let t = trace_entry_script(&body, []);
        assert_eq!(
            t.terminal().unwrap().path,
            "/usr/bin/server",
            "{:?}",
            t.notes
        );
    }

    /// Programs that run a command from their arguments are followed to it, as the real
    /// programs (util-linux, coreutils, findutils) run it: each real one runs a stub that
    /// records its argv, and the trace must end in the stub with the same arguments.
    #[test]
    fn wrappers_run_the_command_the_real_programs_run() {
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n");
        let cases: &[&[&str]] = &[
            &["nohup", "stub", "a"],
            &["nohup", "--", "stub", "-a"],
            &["nice", "-n", "5", "stub", "a"],
            &["nice", "-n5", "stub"],
            &["nice", "--adjustment=3", "stub", "-n", "1"],
            &["timeout", "10", "stub", "x"],
            &["timeout", "-s", "KILL", "5s", "stub"],
            &["timeout", "--kill-after=1", "-v", "9", "stub", "-s"],
            &["timeout", "-k5", "--signal", "TERM", "9", "stub"],
            &["stdbuf", "-oL", "stub"],
            &["stdbuf", "-o", "0", "-e", "L", "stub", "x"],
            &["stdbuf", "--output=L", "--", "stub"],
            &["setsid", "stub", "a"],
            &["setsid", "-w", "stub"],
            &["taskset", "1", "stub", "a"],
            &["taskset", "-c", "0", "stub"],
            &["ionice", "-c", "3", "stub"],
            &["ionice", "-c2", "-n7", "stub", "a"],
            &["chrt", "-o", "0", "stub"],
            &["chrt", "--other", "0", "stub", "-p"],
            &["flock", "LOCK", "stub", "a"],
            &["flock", "-w", "5", "LOCK", "stub"],
            &["flock", "-x", "LOCK", "-c", "exec stub a b"],
            &["flock", "-n", "LOCK", "--command", "exec stub c"],
            &["setpriv", "--no-new-privs", "stub", "a"],
            &[
                "setpriv",
                "--reuid",
                "0",
                "--regid=0",
                "--clear-groups",
                "--",
                "stub",
                "x",
            ],
            &["xargs", "-n", "2", "stub", "a"],
            &["xargs", "-0", "-s2048", "stub"],
            &["runuser", "-u", "root", "--", "stub", "a"],
            &["runuser", "root", "-c", "exec stub -c x"],
            &["runuser", "-s", "/bin/sh", "-c", "exec stub y", "root"],
        ];
        let (dir, bin) = stub_programs("wrappers", &["stub"], |_| RECORD_ARGV);
        let out = dir.join("argv");
        let lock = dir.join("lock");
        std::fs::write(&lock, "").unwrap();
        let mut checked = 0;
        for case in cases {
            let Some(real) = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
                .iter()
                .map(|d| format!("{d}/{}", case[0]))
                .find(|p| std::path::Path::new(p).exists())
            else {
                continue; // not installed here
            };
            if case[0] == "runuser" && !root {
                continue;
            }
            let args: Vec<String> = case[1..]
                .iter()
                .map(|a| {
                    if *a == "LOCK" {
                        lock.display().to_string()
                    } else {
                        a.to_string()
                    }
                })
                .collect();
            let _ = std::fs::remove_file(&out);
            let status = std::process::Command::new(&real)
                .args(&args)
                .env_clear()
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .stdin(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "{case:?}");
            let recorded = std::fs::read_to_string(&out).unwrap_or_else(|_| panic!("{case:?}"));
            let recorded: Vec<&str> = recorded.lines().collect();
            let vfs = Vfs::from_nodes(BTreeMap::from([
                ("bin/sh".to_string(), file(true, None, Some(lib(&[])))),
                (
                    format!("usr/bin/{}", case[0]),
                    file(true, None, Some(lib(&[]))),
                ),
                (
                    "usr/local/bin/stub".to_string(),
                    file(true, None, Some(lib(&[]))),
                ),
            ]));
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let t = trace(&vfs, &config(&[case[0]], &argv));
            let terminal = t.terminal().unwrap_or_else(|| panic!("{case:?}: {t:#?}"));
            assert_eq!(terminal.path, "/usr/local/bin/stub", "{case:?}: {t:#?}");
            assert_eq!(terminal.argv[1..], recorded[1..], "{case:?}: {t:#?}");
            checked += 1;
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(checked >= 28, "only {checked} wrappers are installed");
        // In a script: `nohup … &` runs the server, `command -v` only looks it up.
        let nohup = file(true, None, Some(lib(&[])));
        let t = trace_entry_script(
            "nohup /usr/bin/server --port 1 &\nexec /usr/bin/bash -c true\n",
            [("usr/bin/nohup", nohup.clone())],
        );
        assert_bash_is_main_and_server_may_run(&t, "nohup");
        let t = trace_entry_script(
            "command -v /usr/bin/server >/dev/null\nexec /usr/bin/bash -c true\n",
            [("usr/bin/nohup", nohup)],
        );
        assert!(
            !t.also_run.iter().any(|s| s.path == "/usr/bin/server"),
            "{t:#?}"
        );
        // Where no command runs.
        for args in [
            &["taskset", "-p", "1"][..],
            &["chrt", "-p", "1"],
            &["ionice", "-p", "1"],
            &["setpriv", "-d"],
            &["sudo", "-l"],
            &["su", "root"],
            &["runuser", "root"],
            &["flock", "9"],
        ] {
            let wrapper = wrapper(args[0]).unwrap();
            let rest: Vec<String> = args[1..].iter().map(|a| a.to_string()).collect();
            assert!(wrapper.command(&rest).is_none(), "{args:?}");
        }
        // What is not installed here, by its documented syntax.
        for (args, at) in [
            (&["chpst", "-u", "app", "-/", "/srv", "stub"][..], 4),
            (&["s6-setuidgid", "app", "stub"], 1),
            (&["s6-applyuidgid", "-u", "1", "-g", "1", "stub"], 4),
            (&["sudo", "-u", "app", "-E", "stub"], 3),
            (&["sudo", "--user=app", "--", "stub"], 2),
            (&["doas", "-u", "app", "stub"], 2),
            (&["su-exec", "app:app", "stub"], 1),
            (&["tini", "-s", "-e", "143", "--", "stub"], 4),
            (&["dumb-init", "--rewrite", "15:2", "stub"], 2),
            (&["numactl", "--interleave=all", "-N", "0", "stub"], 3),
            (&["unshare", "-S", "0", "--mount", "stub"], 3),
        ] {
            let rest: Vec<String> = args[1..].iter().map(|a| a.to_string()).collect();
            match wrapper(args[0]).unwrap().command(&rest) {
                Some(Wrapped::Argv(found)) => assert_eq!(found, at, "{args:?}"),
                _ => panic!("{args:?}"),
            }
        }
    }

    /// An assignment or `set --` under an undecided condition is taken as made, and what
    /// the variable held before it (or another branch gave it) is followed too, as a
    /// program that may run: the `exec` may run either.
    #[test]
    fn values_an_undecided_assignment_may_not_have_set_are_followed_too() {
        let flag = || file(false, Some("1"), None);
        for body in [
            "set -- /usr/bin/server\nif [ -f /data/flag ]; then set -- /usr/bin/bash -c true; fi\nexec \"$@\"\n",
            "set -- /usr/bin/server\nif [ -f /data/flag ]; then shift; set -- /usr/bin/bash -c true; fi\nstart() { exec \"$@\"; }\nstart \"$@\"\n",
            "if [ -f /data/flag ]; then APP=/usr/bin/server; else APP=/usr/bin/bash; fi\nexec \"$APP\" -c true\n",
            "APP=/usr/bin/server\n[ -f /data/flag ] && APP=/usr/bin/bash\nexec $APP -c true\n",
        ] {
            let t = trace_entry_script_with_volumes(body, [("data/flag", flag())], &["/data"]);
            assert_bash_is_main_and_server_may_run(&t, body);
        }
        // `exec` with options among the fields of one word (the fuzz target found a panic
        // here: fields were taken for words).
        let t = trace_entry_script_with_volumes(
            "set -- -a -b /usr/bin/bash -c true\nif [ -f /data/flag ]; then set -- -x -y -z /usr/bin/server; fi\nexec \"$@\"\n",
            [("data/flag", flag())],
            &["/data"],
        );
        assert_eq!(t.terminal().unwrap().path, "/usr/bin/server", "{t:#?}");
        assert!(
            t.also_run.iter().any(|s| s.path == "/usr/bin/bash"),
            "{t:#?}"
        );
        // bash's `exec -a NAME PROGRAM`.
        let t = trace_entry_script("exec -a web -c /usr/bin/server --port 1\n", []);
        let terminal = t.terminal().unwrap();
        assert_eq!(terminal.path, "/usr/bin/server", "{t:#?}");
        assert_eq!(terminal.argv, ["/usr/bin/server", "--port", "1"]);
        // A decided assignment after it leaves one value.
        let body = "APP=/usr/bin/server\nif [ -f /data/flag ]; then APP=/usr/bin/other; fi\nAPP=/usr/bin/bash\nexec \"$APP\" -c true\n";
        let t = trace_entry_script_with_volumes(body, [("data/flag", flag())], &["/data"]);
        assert_eq!(t.terminal().unwrap().path, "/usr/bin/bash", "{t:#?}");
        assert!(
            !t.also_run.iter().any(|s| s.path == "/usr/bin/server"),
            "{t:#?}"
        );
    }

    /// A function called as a condition decides it where a run of its body tells its
    /// status and changes nothing its caller sees; where not, the condition stays
    /// undecided, as before.
    #[test]
    fn functions_as_conditions_decide_only_what_their_run_tells() {
        let flag = || file(false, Some("1"), None);
        let undecided = [
            // It runs a program, sets a variable, changes directory.
            "check() { grep -q x /etc/conf; }\nif check; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "check() { X=1; return 0; }\nif check; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "check() { cd /srv; return 0; }\nif check; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            // A `return` under a test the image cannot answer (a volume), a last list
            // likewise, a `return` of the last command's status, of `$?`.
            "check() {\n\tif [ -f /data/flag ]; then return 0; fi\n\treturn 1\n}\nif check; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "check() { [ -f /data/flag ]; }\nif check; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "check() { [ -f /srv/flag ]; return; }\nif check; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "check() { false; return $?; }\nif check; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            // Its loop sets a variable that is not `local`.
            "help() {\n\tfor a; do\n\t\tcase \"$a\" in -'?'|--help) return 0 ;; esac\n\tdone\n\treturn 1\n}\nif ! help -x; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            // Its last command is a loop, or itself.
            "check() { for a in x; do [ -n \"$a\" ]; done; }\nif check; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "check() { check; }\nif check; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "check() { check && check; }\nif check; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
        ];
        for body in undecided {
            let t = trace_entry_script_with_volumes(body, [("data/flag", flag())], &["/data"]);
            assert_bash_is_main_and_server_may_run(&t, body);
        }
        let decided = [
            "is_on() { [ \"$1\" = on ]; }\nif is_on on; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "is_on() { [ \"$1\" = on ]; }\nif is_on off; then exec /usr/bin/bash -c true; fi\nexec /usr/bin/server\n",
            "top() { [ \"${#FUNCNAME[@]}\" = 2 ] && [ \"${FUNCNAME[1]}\" = main ]; }\nif top; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            "ok() { local x=1; [ \"$x\" = 1 ] && [ -f /srv/flag ]; }\nok && exec /usr/bin/server\nexec /usr/bin/bash -c true\n",
            "help() {\n\tlocal a\n\tfor a; do\n\t\tcase \"$a\" in -'?'|--help) return 0 ;; esac\n\tdone\n\treturn 1\n}\nif ! help -x '*'; then exec /usr/bin/server; fi\nexec /usr/bin/bash -c true\n",
            // A function setting a variable is not asked for its status (asked after it
            // ran, it would answer from what it set): `check` succeeded, so the `exec` runs.
            "check() { [ -z \"$X\" ] && X=1; }\ncheck && exec /usr/bin/server\nexec /usr/bin/bash -c true\n",
            // `return` in a sourced file ends only it.
            ". /srv/lib.sh\nexec /usr/bin/server\n",
        ];
        for body in decided {
            let t = trace_entry_script_with_volumes(
                body,
                [
                    ("srv/flag", flag()),
                    (
                        "srv/lib.sh",
                        file(false, Some("return 0\nexec /usr/bin/bash -c true\n"), None),
                    ),
                ],
                &["/data"],
            );
            assert_eq!(
                t.terminal().unwrap().path,
                "/usr/bin/server",
                "{body}: {t:#?}"
            );
            assert!(
                !t.also_run.iter().any(|s| s.path == "/usr/bin/bash")
                    && t.chain.iter().filter(|s| s.path == "/usr/bin/bash").count() == 1,
                "{body}: {t:#?}"
            );
        }
        // `exit` in a function ends the script.
        let t = trace_entry_script("stop() { exit 0; }\nstop\nexec /usr/bin/server\n", []);
        assert!(
            !t.chain
                .iter()
                .chain(&t.also_run)
                .any(|s| s.path == "/usr/bin/server"),
            "{t:#?}"
        );
        // What the real shells do with these two.
        for shell in ["dash", "bash"] {
            let out = std::process::Command::new(shell)
                .args(["-c", "stop() { exit 0; }; stop; echo after exit"])
                .output()
                .unwrap();
            assert_eq!(out.stdout, b"", "{shell}");
            let dir = std::env::temp_dir().join(format!("stellaops-source-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("lib.sh"), "return 0\necho in lib\n").unwrap();
            let out = std::process::Command::new(shell)
                .args(["-c", ". ./lib.sh; echo after source"])
                .current_dir(&dir)
                .output()
                .unwrap();
            assert_eq!(out.stdout, b"after source\n", "{shell}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// An `exec` in a function called, or a file sourced, under an undecided condition may
    /// not run: it is traced as a program that may run, and the script goes on to its own
    /// `exec`.
    #[test]
    fn an_exec_in_a_function_or_sourced_file_under_an_undecided_condition_may_not_run() {
        for body in [
            "start() { exec /usr/bin/server \"$@\"; }\nif [ -f /run/flag ]; then start; fi\nexec /usr/bin/bash -c true\n",
            "if [ -f /run/flag ]; then . /lib.sh; fi\nexec /usr/bin/bash -c true\n",
        ] {
            let lib_sh = file(false, Some("exec /usr/bin/server\n"), None);
            let t = trace_entry_script(body, [("lib.sh", lib_sh)]);
            let terminal = t.terminal().unwrap();
            let last_line = format!("/entry.sh:{}", body.lines().count() + 1);
            assert_eq!(
                (terminal.path.as_str(), terminal.from.as_str()),
                ("/usr/bin/bash", last_line.as_str()),
                "{body}: {t:#?}"
            );
            assert!(
                t.also_run.iter().any(|s| s.path == "/usr/bin/server"),
                "{body}: {t:#?}"
            );
        }
    }

    /// A variable set from a command's output, a loop's variable, what `read` reads: the
    /// program named by one is not known, and is said to be so rather than taken as empty.
    #[test]
    fn values_only_running_the_script_tells_are_not_guessed() {
        for body in [
            "APP=$(cat /etc/app)\nexec \"$APP\" serve\n",
            "set -- $(cat /etc/app)\nexec \"$@\"\n",
            "for APP in /opt/*/bin/server; do :; done\nexec \"$APP\"\n",
            "read -r -p 'app? ' APP < /etc/app\nexec $APP\n",
            "export APP=`cat /etc/app` B=1\nexec $APP\n",
            "APP=/usr/bin/bash\nfor APP in x \"$(ls /opt)\"; do :; done\nexec \"${APP%/*}/server\"\n",
        ] {
            let t = trace_entry_script(body, []);
            assert_eq!(
                t.terminal().unwrap().path,
                "/usr/bin/bash",
                "{body}: {t:#?}"
            );
            assert!(
                t.notes.iter().any(|n| n.contains("not known statically")),
                "{body}: {t:#?}"
            );
        }
        // Set again to something known, it is known again; a loop over known words leaves
        // its last (and one over none the value before).
        for body in [
            "APP=$(cat /etc/app)\nAPP=/usr/bin/server\nexec \"$APP\"\n",
            "for APP in /nope \"/usr/bin/server\"; do :; done\nexec \"$APP\"\n",
            "APP=/usr/bin/bash\nfor APP; do :; done\nexec \"${APP%/*}/server\"\n",
            "APP=$(cat /etc/app)\nexport \"APP=/usr/bin/server\"\nexec \"$APP\"\n",
        ] {
            let t = trace_entry_script(body, []);
            assert_eq!(
                t.terminal().unwrap().path,
                "/usr/bin/server",
                "{body}: {t:#?}"
            );
        }
    }

    #[test]
    fn a_script_entrypoint_execs_the_server_and_its_closure_is_the_loaders() {
        let vfs = image();
        let t = trace(
            &vfs,
            &config(
                &["tini", "--", "/entrypoint.sh"],
                &["serve", "--port", "80"],
            ),
        );
        let chain: Vec<(&str, &str)> = t
            .chain
            .iter()
            .map(|s| (s.path.as_str(), s.from.as_str()))
            .collect();
        assert_eq!(
            chain,
            vec![
                ("/usr/bin/tini", "config"),
                ("/entrypoint.sh", "/usr/bin/tini"),
                ("/usr/bin/bash", "shebang of /entrypoint.sh"),
                ("/opt/app/bin/server", "/entrypoint.sh:6"),
            ],
            "{t:#?}"
        );
        assert_eq!(t.chain[3].argv, vec!["/opt/app/bin/server", "--port", "80"]);
        assert_eq!(t.also_run.len(), 1);
        assert_eq!(t.also_run[0].path, "/usr/bin/mkdir");
        assert_eq!(
            ld_so_conf(&vfs),
            vec![
                "usr/local/lib/x86_64-linux-gnu",
                "lib/x86_64-linux-gnu",
                "usr/lib/x86_64-linux-gnu"
            ]
        );
        let c = closure(&vfs, &t, &[]);
        assert!(c.missing.is_empty(), "{:?}", c.missing);
        for f in [
            "/opt/app/lib/libapp.so",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libtinfo.so.6.4",
            "/usr/lib/x86_64-linux-gnu/libtinfo.so.6",
            "/usr/lib64/ld-linux-x86-64.so.2",
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "/usr/bin/sh",
            "/entrypoint.sh",
        ] {
            assert!(c.files.contains(f), "{f} in {:#?}", c.files);
        }
        let owners = owners(&vfs);
        let used = used_os_packages(&owners, &c);
        assert_eq!(
            used,
            BTreeSet::from([
                "deb:bash".into(),
                "deb:coreutils".into(),
                "deb:libc6".into(),
                "deb:libtinfo6".into()
            ])
        );
        let t0 = Trace::default();
        assert_eq!(
            is_used("deb", "openssl", "", &owners, &used, &t0, &c),
            Some(false)
        );
        assert_eq!(
            is_used("deb", "libc6", "", &owners, &used, &t0, &c),
            Some(true)
        );
        assert_eq!(
            is_used("deb", "unlisted", "", &owners, &used, &t0, &c),
            None
        );
    }

    #[test]
    fn launchers_and_shell_forms() {
        let vfs = image();
        // sh -c with && and an env launcher: the last command is what keeps running.
        let t = trace(
            &vfs,
            &config(
                &["/bin/sh", "-c", "cd /opt/app && X=1 env Y=2 bin/server"],
                &[],
            ),
        );
        let paths: Vec<&str> = t.chain.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["/usr/bin/bash", "/usr/bin/env", "/opt/app/bin/server"],
            "{t:#?}"
        );
        assert_eq!(t.chain[1].from, "/usr/bin/bash -c:1");
        // exec "$@" with the Cmd as arguments; unknown program noted, not guessed.
        let t = trace(&vfs, &config(&["/entrypoint.sh"], &["mkdir", "x"]));
        assert_eq!(t.terminal().unwrap().path, "/usr/bin/mkdir");
        assert_eq!(t.terminal().unwrap().from, "/entrypoint.sh:8");
        let t = trace(&vfs, &config(&["sh", "-c", "$(which server)"], &[]));
        assert_eq!(t.chain.len(), 1);
        assert!(t.notes[0].contains("not known statically"), "{:?}", t.notes);
        let t = trace(&vfs, &config(&["nope"], &[]));
        assert!(t.chain.is_empty() && t.notes[0].contains("nope is not in the image"));
        // A symlink loop is refused.
        let looped = Vfs::from_nodes(BTreeMap::from([
            ("a".into(), Node::Symlink { target: "b".into() }),
            ("b".into(), Node::Symlink { target: "a".into() }),
        ]));
        assert!(looped.resolve("", "a").is_none());
        // Listing steps over subtrees without losing a sibling that sorts inside one
        // (`a.b` sorts between `a` and `a/x`), and counts implicit directories.
        let tree = Vfs::from_nodes(BTreeMap::from(
            ["d/a", "d/a.b", "d/a/x", "d/a/y/z", "d/b/c", "d/c", "e/f"]
                .map(|p| (p.to_string(), Node::Dir)),
        ));
        assert_eq!(tree.list("d"), ["a", "a.b", "b", "c"]);
        assert_eq!(tree.list(""), ["d", "e"]);
        assert!(tree.has_entries("d/b") && !tree.has_entries("d/c"));
    }

    /// The test image with `files` added.
    fn image_with(files: Vec<(&str, Node)>) -> Vfs {
        let mut nodes = image().nodes;
        for (path, node) in files {
            nodes.insert(path.into(), node);
        }
        Vfs::from_nodes(nodes)
    }

    /// Whether a language package of `kind` found at `path` is used under trace `t`.
    fn language_use(vfs: &Vfs, t: &Trace, kind: &str, path: &str) -> Option<bool> {
        let closure = closure(vfs, t, &[]);
        is_used(
            kind,
            "x",
            path,
            &Owners::default(),
            &BTreeSet::new(),
            t,
            &closure,
        )
    }

    #[test]
    fn dotnet_applications_reach_the_packages_beside_them() {
        let elf = || file(true, None, Some(lib(&["libc.so.6"])));
        let plain = || file(false, None, None);
        let vfs = image_with(vec![
            ("usr/share/dotnet/dotnet", elf()),
            (
                "usr/bin/dotnet",
                Node::Symlink {
                    target: "../share/dotnet/dotnet".into(),
                },
            ),
            ("app/Shop.dll", plain()),
            ("app/Shop.deps.json", plain()),
            ("app/Shop.runtimeconfig.json", plain()),
            ("app/Shop", elf()),
            ("other/Tool.deps.json", plain()),
        ]);
        let used = |t: &Trace, path: &str| language_use(&vfs, t, "nuget", path);
        let mut run = config(&["dotnet", "Shop.dll"], &[]);
        run.working_dir = "/app".into();
        for t in [trace(&vfs, &run), trace(&vfs, &config(&["/app/Shop"], &[]))] {
            assert_eq!(used(&t, "app/Shop.deps.json"), Some(true), "{t:#?}");
            assert_eq!(used(&t, "other/Tool.deps.json"), Some(false));
        }
        // The SDK's own commands are not followed: not known.
        let t = trace(&vfs, &config(&["dotnet", "run"], &[]));
        assert_eq!(used(&t, "app/Shop.deps.json"), None);
    }

    #[test]
    fn npm_start_runs_the_applications_script_and_reaches_its_packages() {
        let plain = || file(false, None, None);
        let vfs = image_with(vec![
            (
                "usr/local/bin/node",
                file(true, None, Some(lib(&["libc.so.6"]))),
            ),
            (
                "usr/local/bin/npm",
                Node::Symlink {
                    target: "../lib/node_modules/npm/bin/npm-cli.js".into(),
                },
            ),
            (
                "usr/local/lib/node_modules/npm/bin/npm-cli.js",
                file(
                    true,
                    Some("#!/usr/local/bin/node\nrequire('../lib/cli.js')\n"),
                    None,
                ),
            ),
            (
                "usr/local/lib/node_modules/npm/node_modules/semver/package.json",
                plain(),
            ),
            (
                "app/package.json",
                file(
                    false,
                    Some(
                        r#"{"name": "shop", "scripts": {"start": "node dist/server.js", "worker": "node jobs/run.js --queue"}}"#,
                    ),
                    None,
                ),
            ),
            ("app/dist/server.js", plain()),
            ("app/jobs/run.js", plain()),
            ("app/node_modules/express/package.json", plain()),
        ]);
        let used = |t: &Trace, path: &str| language_use(&vfs, t, "npm", path);
        let express = "app/node_modules/express/package.json";
        let in_app = |cmd: &[&str]| {
            let mut c = config(cmd, &[]);
            c.working_dir = "/app".into();
            trace(&vfs, &c)
        };
        let t = in_app(&["npm", "start"]);
        assert_eq!(t.terminal().unwrap().path, "/app/dist/server.js", "{t:#?}");
        assert_eq!(used(&t, express), Some(true));
        let t = in_app(&["npm", "run", "worker"]);
        assert_eq!(t.terminal().unwrap().path, "/app/jobs/run.js");
        assert_eq!(used(&t, express), Some(true));
        // What npm does otherwise is not followed: the application's packages are not
        // known to be unused.
        let t = in_app(&["npm", "exec", "some-tool"]);
        assert_eq!(used(&t, express), None, "{t:#?}");
        let t = in_app(&["npm", "run", "missing"]);
        assert_eq!(used(&t, express), None);
        assert!(
            t.notes.iter().any(|n| n.contains("no such script")),
            "{t:#?}"
        );
        assert_eq!(
            package_manager("usr/lib/node_modules/corepack/dist/yarn.js"),
            Some("yarn")
        );
        assert_eq!(package_manager("app/node_modules/left-pad/index.js"), None);
    }

    #[test]
    fn ruby_and_php_reach_their_packages_and_unmodelled_servers_leave_use_unknown() {
        let elf = || file(true, None, Some(lib(&["libc.so.6"])));
        let plain = || file(false, None, None);
        let vfs = image_with(vec![
            ("usr/local/bin/ruby", elf()),
            (
                "usr/local/bundle/bin/rails",
                file(true, Some("#!/usr/local/bin/ruby\nrequire 'rails'\n"), None),
            ),
            (
                "usr/local/bundle/specifications/rack-3.0.8.gemspec",
                plain(),
            ),
            (
                "usr/local/lib/ruby/gems/3.3.0/specifications/default/json-2.7.1.gemspec",
                plain(),
            ),
            ("opt/unused/specifications/old-1.0.gemspec", plain()),
            ("usr/local/bin/php", elf()),
            ("usr/local/sbin/php-fpm", elf()),
            ("var/www/app/artisan", plain()),
            ("var/www/app/vendor/composer/installed.json", plain()),
            ("srv/other/vendor/composer/installed.json", plain()),
            ("usr/bin/java", elf()),
            ("usr/local/tomcat/bin/bootstrap.jar", plain()),
            (
                "usr/local/tomcat/bin/catalina.sh",
                file(
                    true,
                    Some(
                        "#!/bin/sh\neval exec \"\\\"$_RUNJAVA\\\"\" org.apache.catalina.startup.Bootstrap \"$@\" start\n",
                    ),
                    None,
                ),
            ),
            ("usr/local/tomcat/lib/catalina.jar", plain()),
            ("usr/local/tomcat/webapps/shop/WEB-INF/lib/x.jar", plain()),
            ("usr/local/tomcat/webapps/ROOT.war", plain()),
            (
                "usr/local/tomcat/webapps.dist/docs/WEB-INF/lib/old.jar",
                plain(),
            ),
            ("opt/other/lib/y.jar", plain()),
            // A second instance (CATALINA_BASE) deploying from elsewhere.
            (
                "srv/instance/conf/server.xml",
                file(
                    false,
                    Some(
                        "<Server><!-- <Host name=\"old\" appBase=\"/opt/other\"/> -->\n\
                         <Service><Engine><Host name=\"localhost\" appBase='/srv/apps' unpackWARs=\"true\">\n\
                         </Host></Engine></Service></Server>\n",
                    ),
                    None,
                ),
            ),
            (
                "srv/instance/conf/Catalina/localhost/ext.xml",
                file(
                    false,
                    Some("<Context docBase=\"/opt/ext/app.war\"/>\n"),
                    None,
                ),
            ),
            ("srv/apps/api.war", plain()),
            ("opt/ext/app.war", plain()),
            // Jetty as its official image lays it out, and WildFly.
            ("usr/local/jetty/start.jar", plain()),
            ("usr/local/jetty/lib/jetty-server-12.0.jar", plain()),
            ("var/lib/jetty/webapps/app.war", plain()),
            (
                "opt/jboss/wildfly/bin/standalone.sh",
                file(
                    true,
                    Some(
                        "#!/bin/sh\neval \\\"$JAVA\\\" -jar \\\"$JBOSS_HOME/jboss-modules.jar\\\"\n",
                    ),
                    None,
                ),
            ),
            ("opt/jboss/wildfly/jboss-modules.jar", plain()),
            (
                "opt/jboss/wildfly/modules/system/layers/base/org/jboss/as/server/main/wildfly-server.jar",
                plain(),
            ),
            ("opt/jboss/wildfly/standalone/deployments/shop.war", plain()),
        ]);
        let used = |t: &Trace, kind: &str, path: &str| language_use(&vfs, t, kind, path);
        let gem = "usr/local/bundle/specifications/rack-3.0.8.gemspec";
        let default_gem = "usr/local/lib/ruby/gems/3.3.0/specifications/default/json-2.7.1.gemspec";
        let app_packages = "var/www/app/vendor/composer/installed.json";

        // The official Ruby image: GEM_HOME, binstubs on the PATH, `rails server`.
        let mut rails = config(&["rails", "server"], &[]);
        rails.env = vec![
            "PATH=/usr/local/bundle/bin:/usr/local/bin:/usr/bin:/bin".into(),
            "GEM_HOME=/usr/local/bundle".into(),
        ];
        let t = trace(&vfs, &rails);
        assert_eq!(t.terminal().unwrap().path, "/usr/local/bundle/bin/rails");
        assert_eq!(used(&t, "gem", gem), Some(true));
        assert_eq!(used(&t, "gem", default_gem), Some(true));
        assert_eq!(
            used(&t, "gem", "opt/unused/specifications/old-1.0.gemspec"),
            Some(false)
        );
        assert_eq!(used(&t, "composer", app_packages), None, "no PHP ran");

        // `php artisan serve` from the application's directory.
        let mut artisan = config(&["php", "artisan", "serve"], &[]);
        artisan.working_dir = "/var/www/app".into();
        let t = trace(&vfs, &artisan);
        assert_eq!(t.terminal().unwrap().path, "/var/www/app/artisan");
        assert_eq!(used(&t, "composer", app_packages), Some(true));
        assert_eq!(
            used(&t, "composer", "srv/other/vendor/composer/installed.json"),
            Some(false)
        );
        // The built-in server with a document root.
        let t = trace(
            &vfs,
            &config(&["php", "-S", "0.0.0.0:80", "-t", "/var/www/app"], &[]),
        );
        assert_eq!(used(&t, "composer", app_packages), Some(true));

        // php-fpm runs what its web server hands it; a gem under no Ruby: neither is known
        // to be unused.
        let t = trace(&vfs, &config(&["php-fpm"], &[]));
        assert_eq!(used(&t, "composer", app_packages), None);
        assert_eq!(used(&t, "gem", gem), None);
        // Tomcat, as `java` runs it: its lib and its webapps (WARs and exploded ones)
        // are reached; a jar elsewhere, or in the image's unused `webapps.dist`, is not.
        let tomcat = config(
            &[
                "java",
                "-cp",
                "/usr/local/tomcat/bin/bootstrap.jar",
                "org.apache.catalina.startup.Bootstrap",
                "start",
            ],
            &[],
        );
        let t = trace(&vfs, &tomcat);
        let webapp_jar = "usr/local/tomcat/webapps/shop/WEB-INF/lib/x.jar";
        for (path, want) in [
            (webapp_jar, Some(true)),
            ("usr/local/tomcat/webapps/ROOT.war", Some(true)),
            ("usr/local/tomcat/lib/catalina.jar", Some(true)),
            ("usr/local/tomcat/bin/bootstrap.jar", Some(true)),
            (
                "usr/local/tomcat/webapps.dist/docs/WEB-INF/lib/old.jar",
                Some(false),
            ),
            ("opt/other/lib/y.jar", Some(false)),
        ] {
            assert_eq!(used(&t, "maven", path), want, "{path}: {t:#?}");
        }
        assert_eq!(
            t.terminal().unwrap().path,
            "class org.apache.catalina.startup.Bootstrap"
        );
        // The official image: `catalina.sh run` with CATALINA_HOME set; the script's
        // `eval exec` is not followed, the launcher is known by its name.
        let mut official = config(&["catalina.sh", "run"], &[]);
        official.env = vec![
            "PATH=/usr/local/tomcat/bin:/usr/bin:/bin".into(),
            "CATALINA_HOME=/usr/local/tomcat".into(),
        ];
        let t = trace(&vfs, &official);
        let paths: Vec<&str> = t.chain.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/usr/local/tomcat/bin/catalina.sh",
                "class org.apache.catalina.startup.Bootstrap"
            ]
        );
        assert_eq!(used(&t, "maven", webapp_jar), Some(true));
        assert_eq!(used(&t, "maven", "opt/other/lib/y.jar"), Some(false));
        // A second instance: CATALINA_BASE's server.xml moves the host's appBase (the
        // commented-out host does not count) and a context file deploys a WAR elsewhere.
        let mut instance = official.clone();
        instance.env.push("CATALINA_BASE=/srv/instance".into());
        let t = trace(&vfs, &instance);
        for (path, want) in [
            ("srv/apps/api.war", Some(true)),
            ("opt/ext/app.war", Some(true)),
            ("usr/local/tomcat/lib/catalina.jar", Some(true)),
            (webapp_jar, Some(false)),
            ("opt/other/lib/y.jar", Some(false)),
        ] {
            assert_eq!(used(&t, "maven", path), want, "{path}: {t:#?}");
        }
        // The same through `java` with catalina.sh's properties.
        let direct = config(
            &[
                "java",
                "-Dcatalina.base=/srv/instance",
                "-Dcatalina.home=/usr/local/tomcat",
                "-classpath",
                "/usr/local/tomcat/bin/bootstrap.jar",
                "org.apache.catalina.startup.Bootstrap",
                "start",
            ],
            &[],
        );
        let t = trace(&vfs, &direct);
        assert_eq!(used(&t, "maven", "srv/apps/api.war"), Some(true), "{t:#?}");
        assert_eq!(used(&t, "maven", webapp_jar), Some(false));

        // Jetty's official image: `java -jar $JETTY_HOME/start.jar` from JETTY_BASE.
        let mut jetty = config(&["java", "-jar", "/usr/local/jetty/start.jar"], &[]);
        jetty.working_dir = "/var/lib/jetty".into();
        let t = trace(&vfs, &jetty);
        for (path, want) in [
            ("var/lib/jetty/webapps/app.war", Some(true)),
            ("usr/local/jetty/lib/jetty-server-12.0.jar", Some(true)),
            ("usr/local/jetty/start.jar", Some(true)),
            (webapp_jar, Some(false)),
        ] {
            assert_eq!(used(&t, "maven", path), want, "{path}: {t:#?}");
        }
        // jetty.base given as an argument instead.
        let t = trace(
            &vfs,
            &config(
                &[
                    "java",
                    "-jar",
                    "/usr/local/jetty/start.jar",
                    "jetty.base=/srv/nowhere",
                ],
                &[],
            ),
        );
        assert_eq!(
            used(&t, "maven", "var/lib/jetty/webapps/app.war"),
            Some(false)
        );
        // WildFly's `standalone.sh`, by name (its `eval` is not followed).
        let wildfly = config(
            &["/opt/jboss/wildfly/bin/standalone.sh", "-b", "0.0.0.0"],
            &[],
        );
        let t = trace(&vfs, &wildfly);
        assert_eq!(t.terminal().unwrap().path, "module org.jboss.as.standalone");
        for (path, want) in [
            (
                "opt/jboss/wildfly/standalone/deployments/shop.war",
                Some(true),
            ),
            (
                "opt/jboss/wildfly/modules/system/layers/base/org/jboss/as/server/main/wildfly-server.jar",
                Some(true),
            ),
            ("opt/jboss/wildfly/jboss-modules.jar", Some(true)),
            ("var/lib/jetty/webapps/app.war", Some(false)),
        ] {
            assert_eq!(used(&t, "maven", path), want, "{path}: {t:#?}");
        }
    }

    #[test]
    fn jettys_modules_put_their_libraries_on_the_class_path() {
        let elf = || file(true, None, Some(lib(&["libc.so.6"])));
        let plain = || file(false, None, None);
        let text = |t: &'static str| file(false, Some(t), None);
        let vfs = image_with(vec![
            ("usr/bin/java", elf()),
            ("usr/local/jetty/start.jar", plain()),
            (
                "usr/local/jetty/modules/server.mod",
                text(
                    "[depends]\nthreadpool\nlogging\njmx?\n[optional]\nproxy\n[lib]\n# the server\nlib/jetty-server-${jetty.version}.jar\n",
                ),
            ),
            (
                "usr/local/jetty/modules/threadpool.mod",
                text("[description]\npool\n"),
            ),
            (
                "usr/local/jetty/modules/logging-jetty.mod",
                text("[provides]\nlogging|default\n[lib]\nlib/logging/jetty-slf4j-*.jar\n"),
            ),
            (
                "usr/local/jetty/modules/logging-log4j2.mod",
                text("[provides]\nlogging\n[lib]\nlib/logging/log4j-*.jar\n"),
            ),
            (
                "usr/local/jetty/modules/http.mod",
                text("[depend]\nserver\n"),
            ),
            (
                "usr/local/jetty/modules/jmx.mod",
                text("[lib]\nlib/jetty-jmx-${jetty.version}.jar\n"),
            ),
            (
                "usr/local/jetty/modules/proxy.mod",
                text("[lib]\nlib/jetty-proxy-${jetty.version}.jar\n"),
            ),
            (
                "usr/local/jetty/modules/ext.mod",
                text("[lib]\nlib/ext/**.jar\n"),
            ),
            (
                "usr/local/jetty/modules/alpn-impl/alpn-17.mod",
                text("[lib]\nlib/alpn/alpn-17.jar\n"),
            ),
            (
                "usr/local/jetty/modules/alpn.mod",
                text("[depend]\nalpn-impl/alpn-${java.version.platform}\n"),
            ),
            ("usr/local/jetty/lib/jetty-server-10.0.20.jar", plain()),
            ("usr/local/jetty/lib/jetty-server-spi-10.0.20.jar", plain()),
            ("usr/local/jetty/lib/jetty-jmx-10.0.20.jar", plain()),
            ("usr/local/jetty/lib/jetty-proxy-10.0.20.jar", plain()),
            ("usr/local/jetty/lib/logging/log4j-core-2.20.jar", plain()),
            (
                "usr/local/jetty/lib/logging/jetty-slf4j-impl-10.0.20.jar",
                plain(),
            ),
            ("usr/local/jetty/lib/alpn/alpn-17.jar", plain()),
            (
                "var/lib/jetty/start.d/http.ini",
                text("--module=http,logging-log4j2\n--module=ext\n"),
            ),
            ("var/lib/jetty/lib/ext/deep/ext.jar", plain()),
            ("var/lib/jetty/lib/other.jar", plain()),
            ("srv/base/start.d/http.ini", text("--modules=http\n")),
        ]);
        let jetty_in = |base: &str, extra: &[&str]| {
            let mut args = vec!["java", "-jar", "/usr/local/jetty/start.jar"];
            args.extend(extra);
            let mut run = config(&args, &[]);
            run.env = vec!["PATH=/usr/bin".into(), format!("JETTY_BASE={base}")];
            trace(&vfs, &run)
        };
        let jetty = |extra: &[&str]| jetty_in("/var/lib/jetty", extra);
        // Without a provider enabled, the `|default` one provides `logging`.
        let t = jetty_in("/srv/base", &[]);
        for (path, want) in [
            ("usr/local/jetty/lib/jetty-server-10.0.20.jar", true),
            (
                "usr/local/jetty/lib/logging/jetty-slf4j-impl-10.0.20.jar",
                true,
            ),
            ("usr/local/jetty/lib/logging/log4j-core-2.20.jar", false),
        ] {
            assert_eq!(
                language_use(&vfs, &t, "maven", path),
                Some(want),
                "{path}: {t:#?}"
            );
        }
        let t = jetty(&["--module=alpn"]);
        for (path, want) in [
            ("usr/local/jetty/lib/jetty-server-10.0.20.jar", true),
            // Not `jetty-server-${jetty.version}.jar`: what stands there is no version.
            ("usr/local/jetty/lib/jetty-server-spi-10.0.20.jar", false),
            // `jmx?` and `[optional]` enable nothing.
            ("usr/local/jetty/lib/jetty-jmx-10.0.20.jar", false),
            ("usr/local/jetty/lib/jetty-proxy-10.0.20.jar", false),
            // `logging` is provided by the module enabled: not by every provider.
            ("usr/local/jetty/lib/logging/log4j-core-2.20.jar", true),
            (
                "usr/local/jetty/lib/logging/jetty-slf4j-impl-10.0.20.jar",
                false,
            ),
            ("usr/local/jetty/lib/alpn/alpn-17.jar", true),
            ("var/lib/jetty/lib/ext/deep/ext.jar", true),
            ("var/lib/jetty/lib/other.jar", false),
        ] {
            assert_eq!(
                language_use(&vfs, &t, "maven", path),
                Some(want),
                "{path}: {t:#?}"
            );
        }
        // A module no file has: its libraries are not known, every jar counts as used.
        let t = jetty(&["--module=nosuch"]);
        assert!(
            t.notes.iter().any(|n| n.contains("no module nosuch")),
            "{t:#?}"
        );
        assert_eq!(
            language_use(
                &vfs,
                &t,
                "maven",
                "usr/local/jetty/lib/jetty-proxy-10.0.20.jar"
            ),
            Some(true)
        );
    }

    #[test]
    fn tomcats_class_loaders_from_its_properties() {
        let properties = java_properties(
            "# comment\n! another\ncommon.loader=\"${catalina.base}/lib\",\\\n   \
             \"${catalina.home}/lib/*.jar\", /opt/shared/*.jar ,/opt/one.jar,\\\n\
             \"${catalina.home}/classes\",${other}/lib,\"http://example.com/x.jar\"\n\
             server.loader=\nshared.loader : /srv/shared\nkey value with spaces\n\
             odd=ends with a backslash\\\\\n",
        );
        assert_eq!(properties["server.loader"], "");
        assert_eq!(properties["shared.loader"], "/srv/shared");
        assert_eq!(properties["key"], "value with spaces");
        assert_eq!(properties["odd"], "ends with a backslash\\\\");
        assert_eq!(java_properties("a=1,\\\n  2,\\")["a"], "1,2,");
        use TomcatRepository::*;
        let none = BTreeMap::new();
        assert_eq!(
            tomcat_repositories(
                &properties["common.loader"],
                "usr/share/tomcat10",
                "var/lib/tomcat10",
                &none
            ),
            (
                vec![
                    Dir("/var/lib/tomcat10/lib".into()),
                    Jars("/usr/share/tomcat10/lib".into()),
                    Jars("/opt/shared".into()),
                    Jar("/opt/one.jar".into()),
                    Dir("/usr/share/tomcat10/classes".into()),
                ],
                vec![
                    "${other}/lib".to_string(),
                    "http://example.com/x.jar".to_string()
                ]
            )
        );
        // Another property: replaced once, not again in its value; unknown or unclosed
        // ones are left as written.
        let system = BTreeMap::from([
            ("other".to_string(), "/opt/other".to_string()),
            ("twice".to_string(), "${other}".to_string()),
            ("".to_string(), "/empty".to_string()),
        ]);
        assert_eq!(
            tomcat_replace(
                "${other}/lib:${twice}:${}:${nope}:${catalina.base}:${open",
                "h",
                "b",
                &system
            ),
            "/opt/other/lib:${other}:${}:${nope}:/b:${open"
        );
        assert!(tomcat_repositories("", "h", "b", &none).0.is_empty());
        assert_eq!(
            tomcat_repositories("\"unterminated", "h", "b", &none).0,
            [Dir("unterminated".into())]
        );
    }

    #[test]
    fn uwsgi_serves_its_python_application_from_its_prefix_and_home() {
        let mut nodes = image().nodes;
        let plain = || file(false, None, None);
        for (p, n) in [
            (
                "usr/local/bin/python3.12",
                file(true, None, Some(lib(&["libc.so.6"]))),
            ),
            // pip installed uWSGI into the virtual environment.
            (
                "venv/bin/uwsgi",
                file(true, None, Some(lib(&["libc.so.6"]))),
            ),
            (
                "venv/lib/python3.12/site-packages/django/__init__.py",
                plain(),
            ),
            (
                "venv/lib/python3.12/site-packages/Django-5.0.dist-info/METADATA",
                plain(),
            ),
            (
                "usr/local/lib/python3.12/site-packages/pip-24.0.dist-info/METADATA",
                plain(),
            ),
            (
                "opt/tools/lib/python3.12/site-packages/other-1.0.dist-info/METADATA",
                plain(),
            ),
            ("srv/app/mysite/__init__.py", plain()),
            ("srv/app/mysite/wsgi.py", plain()),
            ("srv/app/libs/helper-2.0.dist-info/METADATA", plain()),
            (
                "srv/app/uwsgi.ini",
                file(
                    false,
                    Some(
                        "[uwsgi]\n; comment\nchdir = /srv/app\nmodule = mysite.wsgi:application\n\
                         home = /usr/local\npythonpath = libs\nmaster = true\n[other]\nmodule = nope\n",
                    ),
                    None,
                ),
            ),
            // A file naming itself twice: read until the bound.
            (
                "srv/app/self.ini",
                file(
                    false,
                    Some("[uwsgi]\nini = %p\nini = %p\nchdir = %d\nmodule = mysite.wsgi\n"),
                    None,
                ),
            ),
            // The same options in uWSGI's other formats.
            (
                "srv/app/uwsgi.json",
                file(
                    false,
                    Some(
                        r#"{"uwsgi": {"chdir": "/srv/app", "module": "mysite.wsgi:application",
                            "home": "/usr/local", "pythonpath": ["libs"], "master": true,
                            "processes": 4}, "other": {"module": "nope"}}"#,
                    ),
                    None,
                ),
            ),
            (
                "srv/app/uwsgi.yaml",
                file(
                    false,
                    Some(
                        "# deployment\nother:\n  module: nope\nuwsgi:\n  chdir: /srv/app\n  \
                         module: 'mysite.wsgi:application'\n  home: \"/usr/local\"\n  - pythonpath: libs\n  \
                         master: 1\nlast:\n  module: nope\n",
                    ),
                    None,
                ),
            ),
            (
                "srv/app/uwsgi.xml",
                file(
                    false,
                    Some(
                        "<?xml version=\"1.0\"?>\n<uwsgi>\n  <!-- <module>nope</module> -->\n  \
                         <chdir>/srv/app</chdir>\n  <module>mysite.wsgi:application</module>\n  \
                         <home>/usr/local</home>\n  <pythonpath>libs</pythonpath>\n  <master/>\n</uwsgi>\n",
                    ),
                    None,
                ),
            ),
        ] {
            nodes.insert(p.into(), n);
        }
        let vfs = Vfs::from_nodes(nodes);
        let used = |t: &Trace, path: &str| language_use(&vfs, t, "pypi", path);
        let mut run = config(
            &["uwsgi", "--ini", "/srv/app/uwsgi.ini", "--http", ":8000"],
            &[],
        );
        run.env = vec!["PATH=/venv/bin:/usr/local/bin:/usr/bin:/bin".into()];
        let t = trace(&vfs, &run);
        assert_eq!(
            t.terminal().unwrap().path,
            "/srv/app/mysite/wsgi.py",
            "{t:#?}"
        );
        for (path, want) in [
            (
                "venv/lib/python3.12/site-packages/Django-5.0.dist-info/METADATA",
                Some(true),
            ),
            // home = /usr/local: the base installation's site-packages too.
            (
                "usr/local/lib/python3.12/site-packages/pip-24.0.dist-info/METADATA",
                Some(true),
            ),
            ("srv/app/libs/helper-2.0.dist-info/METADATA", Some(true)),
            (
                "opt/tools/lib/python3.12/site-packages/other-1.0.dist-info/METADATA",
                Some(false),
            ),
        ] {
            assert_eq!(used(&t, path), want, "{path}: {t:#?}");
        }
        // The same on the command line, with a WSGI file instead of a module and no home.
        let mut run = config(
            &[
                "uwsgi",
                "--chdir=/srv/app",
                "--wsgi-file",
                "mysite/wsgi.py",
                "--master",
            ],
            &[],
        );
        run.env = vec!["PATH=/venv/bin".into()];
        let t = trace(&vfs, &run);
        assert_eq!(
            t.terminal().unwrap().path,
            "/srv/app/mysite/wsgi.py",
            "{t:#?}"
        );
        assert_eq!(
            used(
                &t,
                "usr/local/lib/python3.12/site-packages/pip-24.0.dist-info/METADATA"
            ),
            Some(false)
        );
        assert_eq!(
            used(
                &t,
                "venv/lib/python3.12/site-packages/Django-5.0.dist-info/METADATA"
            ),
            Some(true)
        );
        // No application given: noted, and the search still followed.
        let mut run = config(&["uwsgi", "--http", ":8000"], &[]);
        run.env = vec!["PATH=/venv/bin".into()];
        let t = trace(&vfs, &run);
        assert!(
            t.notes.iter().any(|n| n.contains("no Python application")),
            "{t:#?}"
        );
        assert_eq!(
            uwsgi_ini("[uwsgi]\nkey = a = b\n#x = y\n", "uwsgi"),
            [("key".to_string(), "a = b".to_string())]
        );
        // The JSON, YAML and XML files, named by option or by their extension, and the
        // options set in the environment (`UWSGI_INI`, `UWSGI_WSGI_FILE`, …), give the same
        // application and the same search.
        let reaches_the_application = |args: &[&str], env: &[&str]| {
            let mut run = config(args, &[]);
            run.env = vec!["PATH=/venv/bin:/usr/local/bin:/usr/bin:/bin".into()];
            run.env.extend(env.iter().map(|e| e.to_string()));
            let t = trace(&vfs, &run);
            assert_eq!(
                t.terminal().map(|s| s.path.as_str()),
                Some("/srv/app/mysite/wsgi.py"),
                "{args:?} {env:?}: {t:#?}"
            );
            for path in [
                "usr/local/lib/python3.12/site-packages/pip-24.0.dist-info/METADATA",
                "srv/app/libs/helper-2.0.dist-info/METADATA",
            ] {
                assert_eq!(
                    used(&t, path),
                    Some(true),
                    "{args:?} {env:?}: {path}: {t:#?}"
                );
            }
        };
        for (args, env) in [
            (&["uwsgi", "--json", "/srv/app/uwsgi.json"][..], &[][..]),
            (&["uwsgi", "-j", "/srv/app/uwsgi.json"], &[]),
            (
                &["uwsgi", "--yaml=/srv/app/uwsgi.yaml", "--http", ":8000"],
                &[],
            ),
            (&["uwsgi", "-y", "/srv/app/uwsgi.yaml"], &[]),
            (&["uwsgi", "--xml", "/srv/app/uwsgi.xml"], &[]),
            (&["uwsgi", "/srv/app/uwsgi.xml"], &[]),
            (&["uwsgi", "/srv/app/uwsgi.yaml"], &[]),
            (
                &["uwsgi", "--http", ":8000"],
                &["UWSGI_INI=/srv/app/uwsgi.ini"],
            ),
            (&["uwsgi"], &["UWSGI_YAML=/srv/app/uwsgi.yaml"]),
            (
                &["uwsgi", "--master"],
                &[
                    "UWSGI_CHDIR=/srv/app",
                    "UWSGI_WSGI_FILE=mysite/wsgi.py",
                    "UWSGI_HOME=/usr/local",
                    "UWSGI_PYTHONPATH=libs",
                ],
            ),
            // A file overrides the environment.
            (
                &["uwsgi", "--ini", "/srv/app/uwsgi.ini"],
                &["UWSGI_MODULE=nope", "UWSGI_CHDIR=/nowhere"],
            ),
        ] {
            reaches_the_application(args, env);
        }
        // The command line overrides the environment too.
        let mut run = config(&["uwsgi", "--module", "missing"], &[]);
        run.env = vec![
            "PATH=/venv/bin".into(),
            "UWSGI_CHDIR=/srv/app".into(),
            "UWSGI_MODULE=mysite.wsgi".into(),
        ];
        let t = trace(&vfs, &run);
        let noted = |t: &Trace, text: &str| t.notes.iter().any(|n| n.contains(text));
        assert!(noted(&t, "module missing is not in the image"), "{t:#?}");
        let mut run = config(
            &["uwsgi", "--ini", "http://config.example/app.ini:prod"],
            &[],
        );
        run.env = vec!["PATH=/venv/bin".into()];
        let t = trace(&vfs, &run);
        assert!(
            noted(&t, "http://config.example/app.ini:prod is fetched"),
            "{t:#?}"
        );
        // A file naming itself is read at most UWSGI_FILES times, and noted.
        let mut run = config(&["uwsgi", "--ini", "/srv/app/self.ini"], &[]);
        run.env = vec!["PATH=/venv/bin".into()];
        let t = trace(&vfs, &run);
        assert_eq!(
            t.terminal().map(|s| s.path.as_str()),
            Some("/srv/app/mysite/wsgi.py")
        );
        assert!(noted(&t, "more than 32 configuration files"), "{t:#?}");
        // A configuration file the image lacks is noted.
        let mut run = config(&["uwsgi", "--yaml", "/srv/app/absent.yaml"], &[]);
        run.env = vec!["PATH=/venv/bin".into()];
        let t = trace(&vfs, &run);
        assert!(
            noted(&t, "/srv/app/absent.yaml is not in the image"),
            "{t:#?}"
        );
        let pairs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            uwsgi_json(
                r#"{"uwsgi": {"a": ["x", 2, null, {}], "b": false, "c": null}}"#,
                "uwsgi"
            ),
            pairs(&[("a", "x"), ("a", "2"), ("b", "false")])
        );
        assert!(
            uwsgi_json("[1]", "uwsgi").is_empty()
                && uwsgi_json("{\"uwsgi\": 1}", "uwsgi").is_empty()
        );
        assert_eq!(
            uwsgi_yaml(
                "uwsgi:\n  a: 'x: y'\n  a: two\n  # c: no\n\n  novalue\nb:\n  a: no\n",
                "uwsgi"
            ),
            pairs(&[("a", "x: y"), ("a", "two")])
        );
        assert_eq!(
            uwsgi_xml(
                "<uwsgi><a> x &amp; y </a><b/><c><d>no</d></c></uwsgi><e>no</e>",
                None
            ),
            pairs(&[("a", "x & y"), ("b", ""), ("c", "")])
        );
        assert_eq!(
            uwsgi_xml("<uwsgi><a>x</a><b>unclosed", None),
            pairs(&[("a", "x")])
        );
        // Sections: `FILE:section` reads another; XML's `<uwsgi>` anywhere, chosen by `id`.
        assert_eq!(
            uwsgi_yaml("uwsgi:\n  a: 1\nprod:\n  a: 2\n", "prod"),
            pairs(&[("a", "2")])
        );
        assert_eq!(
            uwsgi_json(r#"{"uwsgi": {"a": 1}, "prod": {"a": 2}}"#, "prod"),
            pairs(&[("a", "2")])
        );
        let xml = "<r><uwsgi id='x'><a>1</a></uwsgi><uwsgi id=\"y\"><a>2</a><b/></uwsgi></r></a>";
        assert_eq!(uwsgi_xml(xml, None), pairs(&[("a", "1")]));
        assert_eq!(uwsgi_xml(xml, Some("y")), pairs(&[("a", "2"), ("b", "")]));
        assert!(uwsgi_xml(xml, Some("z")).is_empty());
        assert!(uwsgi_xml("<r><uwsgi id='y'/><uwsgi><a>1</a></uwsgi></r>", Some("y")).is_empty());
        // Magic variables, then placeholders and the environment.
        assert_eq!(
            uwsgi_magic(
                "%d|%p|%s|%n|%e|%c|%0|%1|%2|%o|%%|%h|%(x)|%",
                "srv/app/uwsgi.ini",
                "app/uwsgi.ini"
            ),
            "/srv/app/|/srv/app/uwsgi.ini|uwsgi.ini|uwsgi|ini|app|srv|app||app/uwsgi.ini|%|%h|%(x)|%"
        );
        assert_eq!(uwsgi_magic("%d%c", "top.ini", "top.ini"), "/");
        let mut options = pairs(&[
            ("base", "/srv"),
            ("chdir", "%(base)/%(project)"),
            ("project", "%(name)"),
            ("name", "mysite"),
            ("name", "decoy"),
            ("home", "$(VENV)$(UNSET)%(unset)%()$()%(base"),
            ("module", "%(app)"),
            ("app", "%(name).wsgi"),
            ("pythonpath", "%(a(b))/$(DIR)%(home)"),
            ("a(b)", "nested"),
            ("x", "%(y)"),
            ("y", "-%(x)%(x)"),
        ]);
        let env = BTreeMap::from([
            ("VENV".to_string(), "/venv".to_string()),
            ("DIR".to_string(), "%(base)".to_string()),
        ]);
        uwsgi_expand(&mut options, &env);
        let value = |key: &str| options.iter().find(|(k, _)| k == key).unwrap().1.clone();
        // A later option's value as written, its own references replaced after the first
        // byte; the first of two options with one name.
        assert_eq!(value("chdir"), "/srv/mysite");
        assert_eq!(value("project"), "mysite");
        // A reference the replacement brings at the value's start stays (uWSGI then
        // imports a module named `%(name)`).
        assert_eq!(value("module"), "%(name).wsgi");
        assert_eq!(value("home"), "/venv$(UNSET)%(unset)%()$()%(base");
        // Nested parentheses in a name; the environment's pass comes first.
        assert_eq!(
            value("pythonpath"),
            "nested//srv/venv$(UNSET)%(unset)%()$()%(base"
        );
        // Options that name each other stop at the bounds.
        let y = value("y");
        assert!(
            y.len() <= UWSGI_VALUE_BYTES * 2 && y.len() > 100,
            "{}",
            y.len()
        );
    }

    #[test]
    fn xml_attributes_outside_comments() {
        let xml = without_xml_comments(
            "<a appBase=\"x\"/><!-- appBase=\"no\" --><b\n appBase = 'y &amp; z' docBase=\"d\"/><c xappBase=\"no\"/><!-- open",
        );
        assert_eq!(xml_attribute_values(&xml, "appBase"), ["x", "y & z"]);
        assert_eq!(xml_attribute_values(&xml, "docBase"), ["d"]);
        assert!(xml_attribute_values("<a appBase=\"unterminated", "appBase").is_empty());
    }

    #[test]
    fn python_node_and_java_reach_their_packages() {
        let mut nodes = image().nodes;
        let py = lib(&["libc.so.6"]);
        for (p, n) in [
            ("usr/local/bin/python3.12", file(true, None, Some(py))),
            (
                "usr/local/bin/python3",
                Node::Symlink {
                    target: "python3.12".into(),
                },
            ),
            (
                "usr/local/lib/python3.12/site-packages/flask/__init__.py",
                file(false, None, None),
            ),
            (
                "usr/local/lib/python3.12/site-packages/flask-3.0.0.dist-info/METADATA",
                file(false, None, None),
            ),
            ("app/main.py", file(false, None, None)),
            ("usr/bin/node", file(true, None, Some(lib(&["libc.so.6"])))),
            ("srv/web/server.js", file(false, None, None)),
            (
                "srv/web/node_modules/express/package.json",
                file(false, None, None),
            ),
            (
                "srv/node_modules/left-pad/package.json",
                file(false, None, None),
            ),
            ("usr/bin/java", file(true, None, Some(lib(&["libc.so.6"])))),
            ("opt/lib/a.jar", file(false, None, None)),
            ("opt/lib/b.jar", file(false, None, None)),
            ("opt/app.jar", file(false, None, None)),
        ] {
            nodes.insert(p.into(), n);
        }
        let vfs = Vfs::from_nodes(nodes);
        let t = trace(&vfs, &config(&["python3", "-u", "/app/main.py"], &[]));
        assert_eq!(t.terminal().unwrap().path, "/app/main.py");
        assert!(
            t.language_dirs
                .contains("/usr/local/lib/python3.12/site-packages"),
            "{t:#?}"
        );
        let none = BTreeSet::new();
        let o = Owners::default();
        let c = closure(&vfs, &t, &[]);
        assert_eq!(
            is_used(
                "pypi",
                "flask",
                "usr/local/lib/python3.12/site-packages/flask-3.0.0.dist-info/METADATA",
                &o,
                &none,
                &t,
                &c
            ),
            Some(true)
        );
        let t = trace(&vfs, &config(&["python3", "-m", "flask"], &[]));
        assert_eq!(
            t.terminal().unwrap().path,
            "/usr/local/lib/python3.12/site-packages/flask/__init__.py"
        );
        let mut cfg = config(&["node", "server.js"], &[]);
        cfg.working_dir = "/srv/web".into();
        let t = trace(&vfs, &cfg);
        assert_eq!(t.terminal().unwrap().path, "/srv/web/server.js");
        assert_eq!(
            t.language_dirs,
            BTreeSet::from(["/srv/web/node_modules".into(), "/srv/node_modules".into()])
        );
        let c = closure(&vfs, &t, &[]);
        assert_eq!(
            is_used(
                "npm",
                "express",
                "srv/web/node_modules/express/package.json",
                &o,
                &none,
                &t,
                &c
            ),
            Some(true)
        );
        assert_eq!(
            is_used(
                "pypi",
                "flask",
                "usr/local/lib/python3.12/site-packages/flask-3.0.0.dist-info/METADATA",
                &o,
                &none,
                &t,
                &c
            ),
            None,
            "no Python ran: whether anything loads flask is not known"
        );
        let t = trace(
            &vfs,
            &config(
                &["java", "-Xmx1g", "-cp", "/opt/lib/*", "com.example.Main"],
                &[],
            ),
        );
        assert_eq!(
            t.language_files,
            BTreeSet::from(["/opt/lib/a.jar".into(), "/opt/lib/b.jar".into()])
        );
        let t = trace(&vfs, &config(&["java", "-jar", "/opt/app.jar"], &[]));
        assert_eq!(t.language_files, BTreeSet::from(["/opt/app.jar".into()]));
    }

    #[test]
    fn language_packages_in_files_the_distribution_installed_are_left_to_its_packages() {
        use crate::analyze::FoundPackage;
        let deb = |name: &str, distro: bool| FoundPackage {
            distro,
            ..FoundPackage::new("deb", "", name, "1")
        };
        let pypi = |name: &str, version: &str| vec![FoundPackage::new("pypi", "", name, version)];
        let egg = "usr/lib/python3/dist-packages/requests-2.28.1.egg-info/PKG-INFO";
        let bundled = "usr/lib/node_modules/npm/node_modules/semver/package.json";
        let own = "usr/local/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA";
        let copy = "opt/app/lib/python3/requests-2.28.1.egg-info/PKG-INFO";
        let base = Fragment {
            files: BTreeMap::from([
                (
                    "var/lib/dpkg/status".into(),
                    vec![deb("python3-requests", true), deb("nodejs", false)],
                ),
                (egg.into(), pypi("requests", "2.28.1")),
                (
                    bundled.into(),
                    vec![FoundPackage::new("npm", "", "semver", "7.5.4")],
                ),
            ]),
            tree: BTreeMap::from([
                (
                    "lib".into(),
                    Node::Symlink {
                        target: "usr/lib".into(),
                    },
                ),
                (egg.into(), file(false, None, None)),
                (bundled.into(), file(false, None, None)),
                // dpkg lists a path through the /lib link; the file is the same.
                (
                    "var/lib/dpkg/info/python3-requests.list".into(),
                    file(
                        false,
                        Some("/.\n/lib/python3/dist-packages/requests-2.28.1.egg-info/PKG-INFO\n"),
                        None,
                    ),
                ),
                (
                    "var/lib/dpkg/info/nodejs.list".into(),
                    file(false, Some(&format!("/{bundled}\n")), None),
                ),
            ]),
            ..Fragment::default()
        };
        // A later layer: pip installs a newer requests, and the app copies the old one.
        let app = Fragment {
            files: BTreeMap::from([
                (own.into(), pypi("requests", "2.31.0")),
                (copy.into(), pypi("requests", "2.28.1")),
            ]),
            tree: BTreeMap::from([
                (own.into(), file(false, None, None)),
                (copy.into(), file(false, None, None)),
            ]),
            ..Fragment::default()
        };
        let purls = |cs: &[crate::Component]| -> Vec<String> {
            cs.iter()
                .map(|c| format!("{} {}", c.purl, c.path))
                .collect()
        };
        // The distribution's egg-info is python3-requests'; NodeSource's bundled npm
        // modules stay (its package is not Debian's).
        let only_base = [("sha256:a".to_string(), base.clone())];
        let stacked = Stacked::new(&only_base);
        assert!(stacked.distro_installed(egg));
        assert!(!stacked.distro_installed(bundled));
        let merged = crate::merge_leaving_out(&only_base, |p| stacked.distro_installed(p));
        assert_eq!(
            purls(&merged.components),
            [
                "pkg:deb/debian/nodejs@1 var/lib/dpkg/status",
                "pkg:deb/debian/python3-requests@1 var/lib/dpkg/status",
                &format!("pkg:npm/semver@7.5.4 {bundled}"),
            ]
        );
        assert_eq!(
            purls(&merged.left_out),
            [format!("pkg:pypi/requests@2.28.1 {egg}")]
        );
        // With the app's layer, the same release sits in a file no package installed:
        // it is a component again (from that file), and nothing is counted as left out.
        let both = [
            ("sha256:a".to_string(), base.clone()),
            ("sha256:b".to_string(), app),
        ];
        let stacked = Stacked::new(&both);
        let merged = crate::merge_leaving_out(&both, |p| stacked.distro_installed(p));
        let found = purls(&merged.components);
        assert!(
            found.contains(&format!("pkg:pypi/requests@2.28.1 {copy}")),
            "{found:?}"
        );
        assert!(
            found.contains(&format!("pkg:pypi/requests@2.31.0 {own}")),
            "{found:?}"
        );
        assert!(merged.left_out.is_empty(), "{:?}", purls(&merged.left_out));
        // A Debian package whose maintainer is not the distribution's keeps its files'
        // packages; so does everything when no file list names the file.
        let mut third_party = base;
        third_party.files.insert(
            "var/lib/dpkg/status".into(),
            vec![deb("python3-requests", false), deb("nodejs", false)],
        );
        let alone = [("sha256:a".to_string(), third_party)];
        let stacked = Stacked::new(&alone);
        assert!(!stacked.distro_installed(egg));
        assert!(
            crate::merge_leaving_out(&alone, |p| stacked.distro_installed(p))
                .left_out
                .is_empty()
        );
    }

    #[test]
    fn the_distributions_maintainers() {
        use crate::analyze::distro_maintainer;
        for ours in [
            "Debian Python Team <team+python@tracker.debian.org>",
            "Debian Java Maintainers <pkg-java-maintainers@lists.alioth.debian.org>",
            "Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>",
            "Matthias Klose <doko@debian.org>",
            "GNU Libc Maintainers <debian-glibc@lists.debian.org>",
            "Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>",
            "Ubuntu Core Developers <ubuntu-devel@lists.ubuntu.com>",
            " Someone <SOMEONE@Debian.Org> ",
        ] {
            assert!(distro_maintainer(ours), "{ours}");
        }
        for theirs in [
            "NodeSource <contact@nodesource.com>",
            "Docker <support@docker.com>",
            "Google Cloud CLI Authors <google-cloud-sdk@google.com>",
            "Someone <someone@debian.org.example.com>",
            "Someone <someone@notdebian.org>",
            "Someone <someone@gmail.com>",
            "no address at all",
            "",
        ] {
            assert!(!distro_maintainer(theirs), "{theirs}");
        }
        use crate::analyze::rpm_vendor_of_distro;
        for (vendor, os) in [
            ("Red Hat, Inc.", "rhel"),
            ("Fedora Project", "fedora"),
            ("SUSE LLC <https://www.suse.com/>", "sles"),
            ("openSUSE", "opensuse-leap"),
            ("Amazon Linux", "amzn"),
            ("Microsoft Corporation", "azurelinux"),
        ] {
            assert!(rpm_vendor_of_distro(vendor, os), "{vendor} on {os}");
        }
        for (vendor, os) in [
            // EPEL on RHEL: built by Fedora, not covered by Red Hat's advisories.
            ("Fedora Project", "rhel"),
            ("NodeSource", "rhel"),
            ("", "fedora"),
            ("Red Hat, Inc.", ""),
            ("Red Hat, Inc.", "debian"),
        ] {
            assert!(!rpm_vendor_of_distro(vendor, os), "{vendor} on {os}");
        }
    }
}
