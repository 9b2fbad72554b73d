//! A POSIX shell tokenizer for what entrypoint scripts commonly hold: simple commands
//! separated by newlines, `;`, `&&`, `||`, `|`, `&`; single and double quotes, backslash
//! escapes and line continuations; `$NAME`, `${NAME}`, `${NAME:-default}`, `"$@"` and the
//! positional parameters; redirections (dropped) and here-documents (skipped); comments;
//! function definitions (`name() { … }`). What it cannot know statically (`$(…)`,
//! backquotes, `${#NAME}`, `${NAME%pattern}`) is an [`Part::Unknown`] part, so a command
//! word built from one is never guessed.
//!
//! The input is untrusted (it comes from an image): every failure is an error value, the
//! work is linear in the input and the nesting is bounded.

use std::collections::BTreeMap;

/// Scripts longer than this are not parsed.
pub const MAX_SCRIPT: usize = 1 << 20;
/// Deepest `$( ( … ) )` nesting skipped.
const MAX_NESTING: usize = 64;

/// One piece of a word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Text taken as it is (quoted or not: quoted text is never split).
    Lit(String),
    /// A parameter expansion: `$NAME`, `${NAME}`, `${NAME:-default}` and the like.
    Var {
        /// `HOME`, `1`, `@`, `*`, `#`, `?`.
        name: String,
        /// `${NAME:-word}` / `${NAME-word}` / `${NAME:=word}`: the word used when the
        /// parameter is unset (or, with `:`, empty).
        default: Option<String>,
        /// `${NAME:+word}`: the word used when the parameter is set and not empty.
        alternative: Option<String>,
        /// Inside double quotes (no field splitting).
        quoted: bool,
    },
    /// Something only running the script would tell: command substitution, arithmetic,
    /// pattern operators.
    Unknown,
}

/// A word: its parts, concatenated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Word {
    /// The parts.
    pub parts: Vec<Part>,
    /// Some of it was quoted (so an empty expansion still makes an empty field).
    pub quoted: bool,
    /// A quote began before any `=`: the word is no assignment.
    pub name_quoted: bool,
}

impl Word {
    /// Called where a quote or escape begins.
    fn note_quote(&mut self) {
        self.quoted = true;
        self.name_quoted |= !matches!(self.parts.first(), Some(Part::Lit(s)) if s.contains('='));
    }
}

impl Word {
    /// The word's text when it is all literal.
    pub fn literal(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                _ => return None,
            }
        }
        Some(out)
    }

    /// `NAME=value` with an unquoted valid name: (name, the value's parts).
    pub fn assignment(&self) -> Option<(String, Word)> {
        let Some(Part::Lit(first)) = self.parts.first() else {
            return None;
        };
        let (name, rest) = first.split_once('=')?;
        if !is_name(name) || self.name_quoted {
            return None;
        }
        let mut value = Word {
            parts: Vec::new(),
            quoted: self.quoted,
            name_quoted: false,
        };
        if !rest.is_empty() {
            value.parts.push(Part::Lit(rest.to_string()));
        }
        value.parts.extend(self.parts[1..].iter().cloned());
        Some((name.to_string(), value))
    }
}

/// How a command is joined to the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sep {
    /// Newline or `;`.
    Seq,
    /// `&&`.
    And,
    /// `||`.
    Or,
    /// `|`.
    Pipe,
    /// `&`.
    Background,
}

/// A simple command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Its words, redirections taken out.
    pub words: Vec<Word>,
    /// Line (1-based) it starts on.
    pub line: usize,
    /// What follows it.
    pub sep: Sep,
    /// `name() …`: the start of a function definition named by the one word.
    pub defines_function: bool,
}

/// Why a script could not be tokenized.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    /// Too long.
    #[error("the script is longer than {MAX_SCRIPT} bytes")]
    TooLong,
    /// A quote was never closed.
    #[error("line {0}: unterminated quote")]
    Unterminated(usize),
    /// `${` never closed.
    #[error("line {0}: unterminated ${{")]
    UnterminatedBrace(usize),
    /// Too deep.
    #[error("line {0}: nesting deeper than {MAX_NESTING}")]
    TooDeep(usize),
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Lexer<'a> {
    chars: Vec<char>,
    at: usize,
    line: usize,
    _text: &'a str,
    /// Here-document delimiters met on the current line: (delimiter, strip tabs).
    heredocs: Vec<(String, bool)>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }
    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.at.checked_add(n)?).copied()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// After a newline: skip the bodies of the here-documents opened on that line.
    fn skip_heredocs(&mut self) {
        for (delimiter, strip) in std::mem::take(&mut self.heredocs) {
            loop {
                let start = self.at;
                while self.peek().is_some_and(|c| c != '\n') {
                    self.at += 1;
                }
                let text: String = self.chars[start..self.at].iter().collect();
                let done = self.peek().is_none();
                self.bump();
                let text = if strip {
                    text.trim_start_matches('\t')
                } else {
                    text.as_str()
                };
                if text == delimiter || done {
                    break;
                }
            }
        }
    }

    /// `${…}` after the `${`.
    fn braced(&mut self, quoted: bool) -> Result<Part, ShellError> {
        let line = self.line;
        let mut body = String::new();
        let mut depth = 0usize;
        loop {
            match self.bump() {
                None => return Err(ShellError::UnterminatedBrace(line)),
                Some('\\') => {
                    if let Some(c) = self.bump() {
                        body.push(c);
                    }
                }
                Some('{') => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(ShellError::TooDeep(line));
                    }
                    body.push('{');
                }
                Some('}') if depth == 0 => break,
                Some('}') => {
                    depth -= 1;
                    body.push('}');
                }
                Some(c) => body.push(c),
            }
        }
        let name_len = body
            .char_indices()
            .find(|(i, c)| {
                !(c.is_ascii_alphanumeric()
                    || *c == '_'
                    || (*i == 0 && matches!(c, '@' | '*' | '#' | '?' | '$' | '!')))
            })
            .map(|(i, _)| i)
            .unwrap_or(body.len());
        let (name, op) = body.split_at(name_len);
        if name.is_empty() || (name == "#" && !op.is_empty()) {
            return Ok(Part::Unknown); // ${#NAME}, ${!prefix*}
        }
        let strip_quotes = |w: &str| w.trim_matches('"').trim_matches('\'').to_string();
        let var = |default: Option<String>, alternative: Option<String>| Part::Var {
            name: name.to_string(),
            default,
            alternative,
            quoted,
        };
        Ok(if op.is_empty() {
            var(None, None)
        } else if let Some(w) = op
            .strip_prefix(":-")
            .or_else(|| op.strip_prefix(":="))
            .or_else(|| op.strip_prefix('-'))
            .or_else(|| op.strip_prefix('='))
        {
            if w.contains('$') || w.contains('`') {
                Part::Unknown
            } else {
                var(Some(strip_quotes(w)), None)
            }
        } else if let Some(w) = op.strip_prefix(":+").or_else(|| op.strip_prefix('+')) {
            if w.contains('$') || w.contains('`') {
                Part::Unknown
            } else {
                var(None, Some(strip_quotes(w)))
            }
        } else {
            Part::Unknown
        })
    }

    /// `$…` after the `$`.
    fn dollar(&mut self, quoted: bool) -> Result<Part, ShellError> {
        match self.peek() {
            Some('{') => {
                self.bump();
                self.braced(quoted)
            }
            Some('(') => {
                // $( … ) or $(( … )): skipped by parenthesis depth, quotes respected.
                let line = self.line;
                let mut depth = 0usize;
                loop {
                    match self.bump() {
                        None => return Err(ShellError::Unterminated(line)),
                        Some('(') => {
                            depth += 1;
                            if depth > MAX_NESTING {
                                return Err(ShellError::TooDeep(line));
                            }
                        }
                        Some(')') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        Some('\\') => {
                            self.bump();
                        }
                        Some('\'') => {
                            while self.bump().ok_or(ShellError::Unterminated(line))? != '\'' {}
                        }
                        Some(_) => {}
                    }
                }
                Ok(Part::Unknown)
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let mut name = String::new();
                while let Some(c) = self
                    .peek()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    name.push(c);
                    self.bump();
                }
                Ok(Part::Var {
                    name,
                    default: None,
                    alternative: None,
                    quoted,
                })
            }
            Some(c) if c.is_ascii_digit() || matches!(c, '@' | '*' | '#' | '?' | '$' | '!') => {
                self.bump();
                Ok(Part::Var {
                    name: c.to_string(),
                    default: None,
                    alternative: None,
                    quoted,
                })
            }
            _ => Ok(Part::Lit("$".into())),
        }
    }

    /// A backquoted command substitution after the opening backquote.
    fn backquote(&mut self) -> Result<Part, ShellError> {
        let line = self.line;
        loop {
            match self.bump() {
                None => return Err(ShellError::Unterminated(line)),
                Some('\\') => {
                    self.bump();
                }
                Some('`') => return Ok(Part::Unknown),
                Some(_) => {}
            }
        }
    }
}

/// Pushes literal text onto the last part when it is literal too.
fn push_lit(parts: &mut Vec<Part>, c: char) {
    if let Some(Part::Lit(s)) = parts.last_mut() {
        s.push(c);
    } else {
        parts.push(Part::Lit(c.to_string()));
    }
}

/// Tokenize `text` into simple commands.
pub fn parse(text: &str) -> Result<Vec<Command>, ShellError> {
    if text.len() > MAX_SCRIPT {
        return Err(ShellError::TooLong);
    }
    let mut lx = Lexer {
        chars: text.chars().collect(),
        at: 0,
        line: 1,
        _text: text,
        heredocs: Vec::new(),
    };
    let mut commands = Vec::new();
    let mut words: Vec<Word> = Vec::new();
    let mut start_line = 1;
    let mut defines_function = false;
    // The next word is a redirection's target (dropped).
    let mut redirect_target = false;
    let mut heredoc_next: Option<bool> = None;
    // Open `(` subshells: a `)` without one ends a `case` pattern, which is no command.
    let mut parens = 0usize;
    // Open `case … in` statements, and whether a pattern (`a | b)`) comes next: its `|`
    // separates alternatives, not commands of a pipe.
    let mut cases = 0usize;
    let mut in_pattern = false;
    let mut finish = |words: &mut Vec<Word>, sep: Sep, line: usize, defines: &mut bool| {
        if !words.is_empty() {
            commands.push(Command {
                words: std::mem::take(words),
                line,
                sep,
                defines_function: std::mem::take(defines),
            });
        }
    };
    loop {
        // Between words.
        let Some(c) = lx.peek() else {
            finish(&mut words, Sep::Seq, start_line, &mut defines_function);
            break;
        };
        if words.is_empty() {
            start_line = lx.line;
        }
        match c {
            ' ' | '\t' | '\r' => {
                lx.bump();
                continue;
            }
            '\\' if lx.peek_at(1) == Some('\n') => {
                lx.bump();
                lx.bump();
                continue;
            }
            '#' => {
                while lx.peek().is_some_and(|c| c != '\n') {
                    lx.bump();
                }
                continue;
            }
            '\n' => {
                lx.bump();
                lx.skip_heredocs();
                finish(&mut words, Sep::Seq, start_line, &mut defines_function);
                continue;
            }
            ';' => {
                lx.bump();
                if lx.peek() == Some(';') {
                    lx.bump();
                    // `;;` ends a case item: a pattern follows (or `esac`).
                    in_pattern = cases > 0;
                }
                finish(&mut words, Sep::Seq, start_line, &mut defines_function);
                continue;
            }
            '|' if in_pattern => {
                lx.bump();
                continue;
            }
            '(' if in_pattern && words.is_empty() => {
                // `(a | b)`: the optional parenthesis before a pattern.
                lx.bump();
                continue;
            }
            ')' if in_pattern => {
                lx.bump();
                words.clear();
                in_pattern = false;
                continue;
            }
            '&' if lx.peek_at(1) == Some('&') => {
                lx.bump();
                lx.bump();
                finish(&mut words, Sep::And, start_line, &mut defines_function);
                continue;
            }
            '|' if lx.peek_at(1) == Some('|') => {
                lx.bump();
                lx.bump();
                finish(&mut words, Sep::Or, start_line, &mut defines_function);
                continue;
            }
            '|' => {
                lx.bump();
                finish(&mut words, Sep::Pipe, start_line, &mut defines_function);
                continue;
            }
            '&' if lx.peek_at(1) != Some('>') => {
                lx.bump();
                finish(
                    &mut words,
                    Sep::Background,
                    start_line,
                    &mut defines_function,
                );
                continue;
            }
            '(' => {
                lx.bump();
                // `name()`: a function definition.
                let mut n = 0;
                while matches!(lx.peek_at(n), Some(' ' | '\t')) {
                    n += 1;
                }
                if words.len() == 1 && lx.peek_at(n) == Some(')') {
                    for _ in 0..=n {
                        lx.bump();
                    }
                    defines_function = true;
                } else {
                    parens += 1;
                }
                finish(&mut words, Sep::Seq, start_line, &mut defines_function);
                continue;
            }
            ')' => {
                lx.bump();
                if parens == 0 {
                    words.clear(); // `pattern)` of a case
                } else {
                    parens -= 1;
                }
                finish(&mut words, Sep::Seq, start_line, &mut defines_function);
                continue;
            }
            '<' | '>' | '&' => {
                // A redirection operator: <, >, >>, <<, <<-, <&, >&, &>, &>>, >|, <>.
                let first = lx.bump();
                let mut op = String::from(first.unwrap_or_default());
                while let Some(c) = lx
                    .peek()
                    .filter(|c| matches!(c, '<' | '>' | '&' | '|' | '-'))
                {
                    if op.len() >= 3 {
                        break;
                    }
                    op.push(c);
                    lx.bump();
                }
                if op.starts_with("<<") && !op.starts_with("<<<") {
                    heredoc_next = Some(op.ends_with('-'));
                }
                redirect_target = true;
                continue;
            }
            _ => {}
        }
        // A word.
        let mut word = Word::default();
        let mut leading_digits = true;
        while let Some(c) = lx.peek() {
            match c {
                ' ' | '\t' | '\r' | '\n' | ';' | '|' | '(' | ')' => break,
                '&' => break,
                '<' | '>' => {
                    // `2>`: the digits were a file descriptor, not a word.
                    if leading_digits && !word.parts.is_empty() {
                        word = Word::default();
                    }
                    break;
                }
                '\\' => {
                    lx.bump();
                    match lx.bump() {
                        Some('\n') | None => {}
                        Some(c) => {
                            word.note_quote();
                            push_lit(&mut word.parts, c);
                        }
                    }
                    leading_digits = false;
                }
                '\'' => {
                    let line = lx.line;
                    lx.bump();
                    word.note_quote();
                    if word.parts.is_empty() {
                        word.parts.push(Part::Lit(String::new()));
                    }
                    loop {
                        match lx.bump() {
                            None => return Err(ShellError::Unterminated(line)),
                            Some('\'') => break,
                            Some(c) => push_lit(&mut word.parts, c),
                        }
                    }
                    leading_digits = false;
                }
                '"' => {
                    let line = lx.line;
                    lx.bump();
                    word.note_quote();
                    if word.parts.is_empty() {
                        word.parts.push(Part::Lit(String::new()));
                    }
                    loop {
                        match lx.bump() {
                            None => return Err(ShellError::Unterminated(line)),
                            Some('"') => break,
                            Some('\\') => match lx.bump() {
                                None => return Err(ShellError::Unterminated(line)),
                                Some('\n') => {}
                                Some(c @ ('$' | '`' | '"' | '\\')) => push_lit(&mut word.parts, c),
                                Some(c) => {
                                    push_lit(&mut word.parts, '\\');
                                    push_lit(&mut word.parts, c);
                                }
                            },
                            Some('$') => {
                                let part = lx.dollar(true)?;
                                match part {
                                    Part::Lit(s) => {
                                        s.chars().for_each(|c| push_lit(&mut word.parts, c))
                                    }
                                    other => word.parts.push(other),
                                }
                            }
                            Some('`') => word.parts.push(lx.backquote()?),
                            Some(c) => push_lit(&mut word.parts, c),
                        }
                    }
                    leading_digits = false;
                }
                '$' => {
                    lx.bump();
                    let part = lx.dollar(false)?;
                    match part {
                        Part::Lit(s) => s.chars().for_each(|c| push_lit(&mut word.parts, c)),
                        other => word.parts.push(other),
                    }
                    leading_digits = false;
                }
                '`' => {
                    lx.bump();
                    word.parts.push(lx.backquote()?);
                    leading_digits = false;
                }
                c => {
                    lx.bump();
                    if !c.is_ascii_digit() {
                        leading_digits = false;
                    }
                    push_lit(&mut word.parts, c);
                }
            }
        }
        if word.parts.is_empty() && !word.quoted {
            continue;
        }
        if let Some(strip) = heredoc_next.take() {
            let delimiter = word.literal().unwrap_or_default();
            lx.heredocs.push((delimiter, strip));
            redirect_target = false;
            continue;
        }
        if std::mem::take(&mut redirect_target) {
            continue;
        }
        let literal = word.literal();
        if words.is_empty() && cases > 0 && literal.as_deref() == Some("esac") {
            in_pattern = false;
            cases = cases.saturating_sub(1);
        }
        let case_opened = literal.as_deref() == Some("in")
            && words.len() >= 2
            && words[0].literal().as_deref() == Some("case");
        words.push(word);
        if case_opened {
            // `case WORD in`: patterns follow, on this line or the next.
            finish(&mut words, Sep::Seq, start_line, &mut defines_function);
            cases += 1;
            in_pattern = true;
        }
    }
    Ok(commands)
}

/// Variables and positional parameters a script runs with.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    /// Named variables (the environment and the script's own).
    pub named: BTreeMap<String, String>,
    /// `$1` … .
    pub positional: Vec<String>,
}

/// `IFS` field splitting of an unquoted expansion's value.
fn split_fields(value: &str) -> Vec<&str> {
    value
        .split([' ', '\t', '\n'])
        .filter(|s| !s.is_empty())
        .collect()
}

/// Expand a word into fields; `None` when it holds something unknowable.
pub fn expand(word: &Word, vars: &Vars) -> Option<Vec<String>> {
    let mut fields: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    if word.quoted {
        current = Some(String::new());
    }
    let append = |current: &mut Option<String>, s: &str| {
        current.get_or_insert_with(String::new).push_str(s);
    };
    for part in &word.parts {
        match part {
            Part::Lit(s) => append(&mut current, s),
            Part::Unknown => return None,
            Part::Var {
                name,
                default,
                alternative,
                quoted,
            } => {
                let values: Vec<String> = match name.as_str() {
                    "@" | "*" if *quoted && name == "@" => vars.positional.clone(),
                    "@" | "*" => vec![vars.positional.join(" ")],
                    "#" => vec![vars.positional.len().to_string()],
                    "?" | "$" | "!" => return None,
                    n if n.bytes().all(|b| b.is_ascii_digit()) => {
                        let i: usize = n.parse().ok()?;
                        if i == 0 {
                            return None;
                        }
                        let v = vars.positional.get(i - 1).cloned();
                        vec![resolve(v, default, alternative)]
                    }
                    n => vec![resolve(vars.named.get(n).cloned(), default, alternative)],
                };
                if *quoted {
                    // "$@": one field per parameter, the first and last joined to the
                    // text around them.
                    let mut iter = values.into_iter();
                    match iter.next() {
                        Some(first) => append(&mut current, &first),
                        None => {
                            if name == "@" && word.parts.len() == 1 {
                                current = None;
                            }
                        }
                    }
                    for v in iter {
                        fields.extend(current.take());
                        current = Some(v);
                    }
                } else {
                    let joined = values.join(" ");
                    let pieces = split_fields(&joined);
                    let mut iter = pieces.into_iter();
                    if let Some(first) = iter.next() {
                        append(&mut current, first);
                    }
                    for v in iter {
                        fields.extend(current.take());
                        current = Some(v.to_string());
                    }
                }
            }
        }
    }
    fields.extend(current);
    // "$@" and "$*" fed back through scripts calling themselves double at each step: an
    // expansion past these bounds is not known statically rather than a memory blowup.
    if fields.len() > MAX_EXPANDED_FIELDS
        || fields.iter().map(String::len).sum::<usize>() > MAX_EXPANDED_BYTES
    {
        return None;
    }
    Some(fields)
}

/// Fields one word may expand to.
pub const MAX_EXPANDED_FIELDS: usize = 1024;
/// Bytes one word may expand to.
pub const MAX_EXPANDED_BYTES: usize = 64 << 10;

fn resolve(
    value: Option<String>,
    default: &Option<String>,
    alternative: &Option<String>,
) -> String {
    match (value, default, alternative) {
        (Some(v), _, Some(alt)) if !v.is_empty() => alt.clone(),
        (_, _, Some(_)) => String::new(),
        (Some(v), _, None) if !v.is_empty() => v,
        (_, Some(d), None) => d.clone(),
        (v, None, None) => v.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(script: &str, vars: &Vars) -> Vec<(usize, Vec<String>)> {
        parse(script)
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c.line,
                    c.words
                        .iter()
                        .flat_map(|w| expand(w, vars).unwrap_or_else(|| vec!["<?>".into()]))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn common_entrypoint_forms() {
        let vars = Vars {
            named: BTreeMap::from([("APP".into(), "/srv/app".into())]),
            positional: vec!["--port".into(), "80 80".into()],
        };
        let script = "#!/bin/sh\nset -e\n\n# comment\nFOO=bar; export A=\"b c\"\ncd \"$APP\" && echo 'hi there' >/dev/null 2>&1\nexec /usr/bin/app \"$@\" --name=${NAME:-x} $APP/conf\n";
        assert_eq!(
            words(script, &vars),
            vec![
                (2, vec!["set".into(), "-e".into()]),
                (5, vec!["FOO=bar".into()]),
                (5, vec!["export".into(), "A=b c".into()]),
                (6, vec!["cd".into(), "/srv/app".into()]),
                (6, vec!["echo".into(), "hi there".into()]),
                (
                    7,
                    vec![
                        "exec".into(),
                        "/usr/bin/app".into(),
                        "--port".into(),
                        "80 80".into(),
                        "--name=x".into(),
                        "/srv/app/conf".into()
                    ]
                ),
            ]
        );
    }

    #[test]
    fn separators_heredocs_continuations_and_functions() {
        let script = "a && b || c | d & e\ncat <<-EOF >x\n\texec nope\n\tEOF\nlong \\\n  line\nmain() {\n  exec \"$@\"\n}\nmain \"$@\"\nv=$(date) w=`id`\n";
        let commands = parse(script).unwrap();
        let seps: Vec<Sep> = commands.iter().take(5).map(|c| c.sep).collect();
        assert_eq!(
            seps,
            vec![Sep::And, Sep::Or, Sep::Pipe, Sep::Background, Sep::Seq]
        );
        let vars = Vars::default();
        let all = words(script, &vars);
        assert!(!all.iter().any(|(_, w)| w.contains(&"nope".to_string())));
        assert!(all.contains(&(5, vec!["long".into(), "line".into()])));
        let def = commands.iter().find(|c| c.defines_function).unwrap();
        assert_eq!(def.words[0].literal().as_deref(), Some("main"));
        assert!(
            all.contains(&(11, vec!["<?>".into(), "<?>".into()])),
            "{all:?}"
        );
        // A case statement's patterns are no commands, whatever alternatives they list and
        // however they are continued over lines (the official Jetty image's entrypoint);
        // a `|` after it is a pipe again.
        let script = "case $A in\n\t--add-module* |\\\n\t--dry-run |\\\n\t-v )\\\n\tJAVA=x\n\
                      \tshift ;;\n\t(a|b) one ;;\n\t*) case $B in c) two ;; esac\nesac\nthree | four\n\
                      case $C in d) five\nesac; six\n";
        let all = words(script, &vars);
        let programs: Vec<&str> = all
            .iter()
            .filter_map(|(_, w)| w.first().map(String::as_str))
            .collect();
        assert_eq!(
            programs,
            [
                "case", "JAVA=x", "shift", "one", "case", "two", "esac", "esac", "three", "four",
                "case", "five", "esac", "six"
            ],
            "{all:?}"
        );
        // Assignments: name unquoted, value may be quoted.
        let c = &parse("A=\"x y\" B='z' \"C=no\" cmd").unwrap()[0];
        assert_eq!(c.words[0].assignment().unwrap().0, "A");
        assert_eq!(c.words[1].assignment().unwrap().0, "B");
        assert!(c.words[2].assignment().is_none());
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(parse("echo 'x"), Err(ShellError::Unterminated(1)));
        assert_eq!(parse("\necho \"x"), Err(ShellError::Unterminated(2)));
        assert!(matches!(
            parse("echo ${x"),
            Err(ShellError::UnterminatedBrace(1))
        ));
        assert!(parse(&"$(".repeat(100)).is_err());
        assert!(parse("").unwrap().is_empty());
    }
}
