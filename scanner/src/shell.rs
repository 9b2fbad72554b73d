//! A POSIX shell tokenizer for what entrypoint scripts commonly hold: simple commands
//! separated by newlines, `;`, `&&`, `||`, `|`, `&`; single and double quotes, backslash
//! escapes and line continuations; `$NAME`, `${NAME}`, `${NAME:-default}`, the pattern
//! operators (`${NAME#pattern}`, `##`, `%`, `%%`), `${#NAME}`, bash's
//! `${NAME:offset:length}`, `"$@"` and the positional parameters; redirections (dropped)
//! and here-documents (skipped); comments; function definitions (`name() { … }`); `case`
//! items (their patterns kept, [`Command::case_item`]); bash's `FUNCNAME` and
//! `BASH_SOURCE`; the command substitutions whose output is known without running a
//! program — `command -v`, `dirname`, `basename`, `pwd`, `cd DIR && pwd`, `readlink -f`,
//! `realpath` ([`Substitution`]; what they ask of the image answered by [`expand_with`]'s
//! caller, [`Outside`]). What it cannot know statically (other substitutions, a pattern
//! built from an expansion, `${!NAME}`) is an [`Part::Unknown`] part, so a command word
//! built from one is never guessed.
//!
//! The input is untrusted (it comes from an image): every failure is an error value, the
//! work is linear in the input and the nesting is bounded; a pattern match runs as a set
//! of pattern positions (characters × tokens, both bounded), never by backtracking.

use std::collections::{BTreeMap, BTreeSet};

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
        /// `${NAME#pattern}`, `${#NAME}` and the like: what is done to the value.
        op: Option<VarOp>,
        /// Inside double quotes (no field splitting).
        quoted: bool,
    },
    /// `$(…)` or `` `…` ``: a command substitution.
    Subst {
        /// The command, when its output is known statically.
        command: Option<Box<Substitution>>,
        /// Its text, for the programs it runs ([`substitution_texts`]); `None` when longer
        /// than [`MAX_SUBSTITUTION_TEXT`].
        text: Option<Box<str>>,
        /// Inside double quotes (no field splitting).
        quoted: bool,
    },
    /// Something only running the script would tell: another command substitution,
    /// arithmetic, a pattern built from an expansion.
    Unknown,
    /// A parameter expansion only running the script tells whose word runs command
    /// substitutions (`${JAVA_HOME:-$(dirname "$(command -v java)")}`): their texts, for
    /// the programs they run ([`substitution_texts`]).
    Opaque {
        /// The substitutions' texts (`None`: longer than [`MAX_SUBSTITUTION_TEXT`]).
        substitutions: Vec<Option<Box<str>>>,
    },
}

/// A command substitution whose output is known without running a program: what it
/// prints, its trailing newlines removed, as [`expand_with`] gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Substitution {
    /// `command -v [--] WORD`: a builtin's or function's name, the path of the program the
    /// shell would run, nothing when there is none ([`Outside::command_v`]).
    CommandV(Word),
    /// `dirname [--] WORD`.
    Dirname(Word),
    /// `basename [--] WORD [SUFFIX]`.
    Basename(Word, Option<Word>),
    /// `pwd [-L]`: the working directory ([`Outside::cwd`]).
    Pwd,
    /// `cd [-L|-P] [--] WORD && pwd [-L|-P]`: the directory WORD names, absolute (with its
    /// links resolved when `physical`), or nothing when `cd` fails
    /// ([`Outside::directory`]).
    CdPwd {
        /// WORD.
        dir: Word,
        /// `-P` given to `cd` or `pwd`.
        physical: bool,
    },
    /// `readlink -f WORD`, `readlink -e WORD`, `realpath [--] WORD`, `pwd -P` (of `.`):
    /// the path, absolute, with every link resolved ([`Outside::canonical`]).
    Canonical(Word),
}

/// What the command substitutions [`expand_with`] reads ask of the script's surroundings
/// (`None`: not known).
pub trait Outside {
    /// What `command -v NAME` prints (empty when nothing is found).
    fn command_v(&self, _name: &str) -> Option<String> {
        None
    }
    /// The working directory, absolute.
    fn cwd(&self) -> Option<String> {
        None
    }
    /// Where `cd DIR` goes (relative to the working directory), absolute, with its links
    /// resolved when `physical`: `Some(None)` when there is no such directory.
    fn directory(&self, _dir: &str, _physical: bool) -> Option<Option<String>> {
        None
    }
    /// `path` absolute with every link resolved, when it is there.
    fn canonical(&self, _path: &str) -> Option<String> {
        None
    }
}

/// Nothing known outside the script.
impl Outside for () {}

/// A word: its parts, concatenated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Word {
    /// The parts.
    pub parts: Vec<Part>,
    /// Some of it was quoted (so an empty expansion still makes an empty field).
    pub quoted: bool,
    /// A quote began before any `=`: the word is no assignment.
    pub name_quoted: bool,
    /// Its literal text as a pattern (`case`, `[[ … == … ]]`): quoted pattern characters
    /// escaped by a backslash (`-'?'` is `-\?`). Meaningful when the word is all literal.
    pub glob: String,
}

impl Word {
    /// Literal text `c`, quoted or not.
    fn push_char(&mut self, c: char, quoted: bool) {
        push_lit(&mut self.parts, c);
        if quoted && matches!(c, '*' | '?' | '[' | ']' | '\\') {
            self.glob.push('\\');
        }
        self.glob.push(c);
    }

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

    /// Whether the word is all literal text equal to `text` (checked without building the
    /// text, for scans over many commands).
    pub fn is_literal(&self, text: &str) -> bool {
        let mut rest = text;
        for p in &self.parts {
            match p {
                Part::Lit(s) => match rest.strip_prefix(s.as_str()) {
                    Some(r) => rest = r,
                    None => return false,
                },
                _ => return false,
            }
        }
        rest.is_empty()
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
            glob: self
                .glob
                .get(name.len() + 1..)
                .unwrap_or_default()
                .to_string(),
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
    /// A `case` item's patterns (`a | b)`), its words: the commands up to the next item or
    /// `esac` run when one matches the case's word. No command.
    pub case_item: bool,
    /// The texts of the command substitutions in its here-documents (`None`: longer than
    /// [`MAX_SUBSTITUTION_TEXT`]), for the programs they run.
    pub heredoc: Vec<Option<Box<str>>>,
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

/// A valid variable name.
pub fn is_name(s: &str) -> bool {
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
    /// Here-documents opened on this line: delimiter, `<<-`, and whether its text is
    /// expanded (an unquoted delimiter).
    heredocs: Vec<(String, bool, bool)>,
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

    /// After a newline: skip the bodies of the here-documents opened on that line; the
    /// texts of the command substitutions in the expanded ones.
    fn skip_heredocs(&mut self) -> Vec<Option<Box<str>>> {
        let mut substitutions = Vec::new();
        for (delimiter, strip, expands) in std::mem::take(&mut self.heredocs) {
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
                if expands {
                    substitutions.extend(substitutions_in(text, false));
                }
            }
        }
        substitutions
    }

    /// `${…}` after the `${`.
    fn braced(&mut self, quoted: bool) -> Result<Part, ShellError> {
        let line = self.line;
        let mut body = String::new();
        // The same text with its backslashes kept: a pattern's `\*` is the character `*`.
        let mut raw = String::new();
        let mut depth = 0usize;
        loop {
            match self.bump() {
                None => return Err(ShellError::UnterminatedBrace(line)),
                Some('\\') => {
                    raw.push('\\');
                    if let Some(c) = self.bump() {
                        body.push(c);
                        raw.push(c);
                    }
                }
                Some('{') => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(ShellError::TooDeep(line));
                    }
                    body.push('{');
                    raw.push('{');
                }
                Some('}') if depth == 0 => break,
                Some('}') => {
                    depth -= 1;
                    body.push('}');
                    raw.push('}');
                }
                Some(c) => {
                    body.push(c);
                    raw.push(c);
                }
            }
        }
        // bash's `${FUNCNAME[N]}`, `${#FUNCNAME[@]}` and `${BASH_SOURCE[0]}` (no other
        // array is read).
        if let Some(name) = array_reference(&body) {
            return Ok(Part::Var {
                name,
                default: None,
                alternative: None,
                op: None,
                quoted,
            });
        }
        // `${#NAME}`: the length (`${#}` alone is `$#`, `${#…}` with an operator `$#`'s).
        if let Some(name) = body.strip_prefix('#')
            && !name.is_empty()
            && parameter_name_len(name) == name.len()
        {
            if matches!(name, "@" | "*") {
                return Ok(Part::Unknown);
            }
            return Ok(Part::Var {
                name: name.to_string(),
                default: None,
                alternative: None,
                op: Some(VarOp::Length),
                quoted,
            });
        }
        let name_len = parameter_name_len(&body);
        let (name, op) = body.split_at(name_len);
        if name.is_empty() {
            return Ok(Part::Unknown); // ${!prefix*}, ${!name}
        }
        let strip_quotes = |w: &str| w.trim_matches('"').trim_matches('\'').to_string();
        let var =
            |default: Option<String>, alternative: Option<String>, op: Option<VarOp>| Part::Var {
                name: name.to_string(),
                default,
                alternative,
                op,
                quoted,
            };
        // A pattern's raw text: the operator's text after `skip` characters, when the
        // backslashes kept do not change where it starts (they never do before the pattern).
        let pattern_at = |skip: usize| -> Option<Pattern> {
            let raw_rest = raw.get(name.len()..)?.get(skip..)?;
            Pattern::parse(raw_rest)
        };
        Ok(if op.is_empty() {
            var(None, None, None)
        } else if let Some(w) = op
            .strip_prefix(":-")
            .or_else(|| op.strip_prefix(":="))
            .or_else(|| op.strip_prefix('-'))
            .or_else(|| op.strip_prefix('='))
        {
            if w.contains('$') || w.contains('`') {
                opaque(w)
            } else {
                var(Some(strip_quotes(w)), None, None)
            }
        } else if let Some(w) = op.strip_prefix(":+").or_else(|| op.strip_prefix('+')) {
            if w.contains('$') || w.contains('`') {
                opaque(w)
            } else {
                var(None, Some(strip_quotes(w)), None)
            }
        } else if matches!(name, "@" | "*") {
            // Per-parameter operators and slices of the positional parameters.
            Part::Unknown
        } else if op.starts_with('#') || op.starts_with('%') {
            let longest = op.starts_with("##") || op.starts_with("%%");
            let skip = if longest { 2 } else { 1 };
            match pattern_at(skip) {
                Some(pattern) if op.starts_with('#') => {
                    var(None, None, Some(VarOp::RemovePrefix { pattern, longest }))
                }
                Some(pattern) => var(None, None, Some(VarOp::RemoveSuffix { pattern, longest })),
                None => Part::Unknown,
            }
        } else if let Some(range) = op.strip_prefix(':')
            && let Some((offset, length)) = substring_range(range)
        {
            var(None, None, Some(VarOp::Substring { offset, length }))
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
                let start = self.at;
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
                let inner: String = self.chars[start + 1..self.at - 1].iter().collect();
                if inner.starts_with('(') && inner.ends_with(')') {
                    return Ok(Part::Unknown); // $(( arithmetic ))
                }
                Ok(substitution_part(&inner, quoted))
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
                    op: None,
                    quoted,
                })
            }
            Some(c) if c.is_ascii_digit() || matches!(c, '@' | '*' | '#' | '?' | '$' | '!') => {
                self.bump();
                Ok(Part::Var {
                    name: c.to_string(),
                    default: None,
                    alternative: None,
                    op: None,
                    quoted,
                })
            }
            _ => Ok(Part::Lit("$".into())),
        }
    }

    /// A backquoted command substitution after the opening backquote.
    fn backquote(&mut self, quoted: bool) -> Result<Part, ShellError> {
        let line = self.line;
        // The command's text: a backslash before `$`, `` ` `` and `\` (and `"` inside double
        // quotes) only quotes it.
        let mut inner = String::new();
        loop {
            match self.bump() {
                None => return Err(ShellError::Unterminated(line)),
                Some('\\') => match self.bump() {
                    Some(c @ ('$' | '`' | '\\')) => inner.push(c),
                    Some('"') if quoted => inner.push('"'),
                    Some(c) => {
                        inner.push('\\');
                        inner.push(c);
                    }
                    None => return Err(ShellError::Unterminated(line)),
                },
                Some('`') => return Ok(substitution_part(&inner, quoted)),
                Some(c) => inner.push(c),
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

/// The commands parsed so far and the one being read.
struct Commands {
    list: Vec<Command>,
    /// The words of the command being read.
    words: Vec<Word>,
    /// Where it starts.
    start_line: usize,
    /// It is `name()`.
    defines_function: bool,
    /// Command substitutions in the here-documents read since the last command ended.
    heredoc: Vec<Option<Box<str>>>,
}

impl Commands {
    /// The command being read ends (if it has words) and is joined to the next by `sep`.
    fn finish(&mut self, sep: Sep) {
        let heredoc = std::mem::take(&mut self.heredoc);
        if !self.words.is_empty() {
            self.list.push(Command {
                words: std::mem::take(&mut self.words),
                line: self.start_line,
                sep,
                defines_function: std::mem::take(&mut self.defines_function),
                case_item: false,
                heredoc,
            });
        } else if let Some(last) = self.list.last_mut() {
            // `cat <<EOF; …`: the command with the redirection ended before its text.
            last.heredoc.extend(heredoc);
        }
    }

    /// The words read are a case item's patterns, even none (`)` alone), so that its
    /// commands are told from the item's before.
    fn case_item(&mut self) {
        self.list.push(Command {
            words: std::mem::take(&mut self.words),
            line: self.start_line,
            sep: Sep::Seq,
            defines_function: false,
            case_item: true,
            heredoc: Vec::new(),
        });
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
    let mut out = Commands {
        heredoc: Vec::new(),
        list: Vec::new(),
        words: Vec::new(),
        start_line: 1,
        defines_function: false,
    };
    // The next word is a redirection's target (dropped).
    let mut redirect_target = false;
    let mut heredoc_next: Option<bool> = None;
    // Open `(` subshells: a `)` without one ends a `case` pattern, which is no command.
    let mut parens = 0usize;
    // Open `case … in` statements, and whether a pattern (`a | b)`) comes next: its `|`
    // separates alternatives, not commands of a pipe.
    let mut cases = 0usize;
    let mut in_pattern = false;
    // Inside bash's `[[ … ]]`: `&&`, `||`, `(`, `)`, `<`, `>` are its words.
    let mut double_bracket = false;
    loop {
        // Between words.
        let Some(c) = lx.peek() else {
            out.finish(Sep::Seq);
            break;
        };
        if out.words.is_empty() {
            out.start_line = lx.line;
            double_bracket = false;
        }
        if double_bracket && matches!(c, '&' | '|' | '(' | ')' | '<' | '>') {
            lx.bump();
            let mut op = c.to_string();
            if matches!(c, '&' | '|') && lx.peek() == Some(c) {
                lx.bump();
                op.push(c);
            }
            out.words.push(Word {
                glob: op.clone(),
                parts: vec![Part::Lit(op)],
                ..Word::default()
            });
            continue;
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
                let substitutions = lx.skip_heredocs();
                out.heredoc.extend(substitutions);
                out.finish(Sep::Seq);
                continue;
            }
            ';' => {
                lx.bump();
                if lx.peek() == Some(';') {
                    lx.bump();
                    // `;;` ends a case item: a pattern follows (or `esac`).
                    in_pattern = cases > 0;
                }
                out.finish(Sep::Seq);
                continue;
            }
            '|' if in_pattern => {
                lx.bump();
                continue;
            }
            '(' if in_pattern && out.words.is_empty() => {
                // `(a | b)`: the optional parenthesis before a pattern.
                lx.bump();
                continue;
            }
            ')' if in_pattern => {
                lx.bump();
                out.case_item();
                in_pattern = false;
                continue;
            }
            '&' if lx.peek_at(1) == Some('&') => {
                lx.bump();
                lx.bump();
                out.finish(Sep::And);
                continue;
            }
            '|' if lx.peek_at(1) == Some('|') => {
                lx.bump();
                lx.bump();
                out.finish(Sep::Or);
                continue;
            }
            '|' => {
                lx.bump();
                out.finish(Sep::Pipe);
                continue;
            }
            '&' if lx.peek_at(1) != Some('>') => {
                lx.bump();
                out.finish(Sep::Background);
                continue;
            }
            '(' => {
                lx.bump();
                // `name()`: a function definition.
                let mut n = 0;
                while matches!(lx.peek_at(n), Some(' ' | '\t')) {
                    n += 1;
                }
                if out.words.len() == 1 && lx.peek_at(n) == Some(')') {
                    for _ in 0..=n {
                        lx.bump();
                    }
                    out.defines_function = true;
                } else {
                    parens += 1;
                }
                out.finish(Sep::Seq);
                continue;
            }
            ')' => {
                lx.bump();
                if parens == 0 {
                    // `pattern)` of a case
                    out.case_item();
                    continue;
                } else {
                    parens -= 1;
                }
                out.finish(Sep::Seq);
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
                            word.push_char(c, true);
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
                            Some(c) => word.push_char(c, true),
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
                                Some(c @ ('$' | '`' | '"' | '\\')) => word.push_char(c, true),
                                Some(c) => {
                                    word.push_char('\\', true);
                                    word.push_char(c, true);
                                }
                            },
                            Some('$') => {
                                let part = lx.dollar(true)?;
                                match part {
                                    Part::Lit(s) => s.chars().for_each(|c| word.push_char(c, true)),
                                    other => word.parts.push(other),
                                }
                            }
                            Some('`') => word.parts.push(lx.backquote(true)?),
                            Some(c) => word.push_char(c, true),
                        }
                    }
                    leading_digits = false;
                }
                '$' => {
                    lx.bump();
                    let part = lx.dollar(false)?;
                    match part {
                        Part::Lit(s) => s.chars().for_each(|c| word.push_char(c, false)),
                        other => word.parts.push(other),
                    }
                    leading_digits = false;
                }
                '`' => {
                    lx.bump();
                    word.parts.push(lx.backquote(false)?);
                    leading_digits = false;
                }
                c => {
                    lx.bump();
                    if !c.is_ascii_digit() {
                        leading_digits = false;
                    }
                    word.push_char(c, false);
                }
            }
        }
        if word.parts.is_empty() && !word.quoted {
            continue;
        }
        if let Some(strip) = heredoc_next.take() {
            let delimiter = word.literal().unwrap_or_default();
            lx.heredocs.push((delimiter, strip, !word.quoted));
            redirect_target = false;
            continue;
        }
        if std::mem::take(&mut redirect_target) {
            continue;
        }
        let literal = word.literal();
        if out.words.is_empty() && cases > 0 && literal.as_deref() == Some("esac") {
            in_pattern = false;
            cases = cases.saturating_sub(1);
        }
        // `case WORD in`, also after reserved words (`do case $a in`, `then case …`).
        let case_opened = literal.as_deref() == Some("in")
            && out.words.len() >= 2
            && out.words[out.words.len() - 2].literal().as_deref() == Some("case")
            && out.words[..out.words.len() - 2].iter().all(|w| {
                matches!(
                    w.literal().as_deref(),
                    Some("do" | "then" | "else" | "{" | "!" | "time")
                )
            });
        if double_bracket {
            double_bracket = literal.as_deref() != Some("]]") || word.quoted;
        } else if literal.as_deref() == Some("[[") && !word.quoted {
            // A command's first word, also after reserved words (`if [[`, `&& [[`).
            double_bracket = out.words.iter().all(|w| {
                matches!(
                    w.literal().as_deref(),
                    Some("if" | "elif" | "while" | "until" | "do" | "then" | "else" | "{" | "!")
                )
            });
        }
        out.words.push(word);
        if case_opened {
            // `case WORD in`: patterns follow, on this line or the next.
            out.finish(Sep::Seq);
            cases += 1;
            in_pattern = true;
        }
    }
    Ok(out.list)
}

/// `FUNCNAME[N]` (an element), `#FUNCNAME[@]` (how many) or `BASH_SOURCE[0]` when `body`
/// (what is between `${` and `}`) is one of them: the name [`expand_with`] gives their
/// values under.
fn array_reference(body: &str) -> Option<String> {
    if body == "BASH_SOURCE[0]" {
        return Some(body.into());
    }
    let (count, rest) = match body.strip_prefix('#') {
        Some(rest) => (true, rest),
        None => (false, body),
    };
    let index = rest.strip_prefix("FUNCNAME[")?.strip_suffix(']')?;
    let fits = if count {
        matches!(index, "@" | "*")
    } else {
        !index.is_empty() && index.len() <= 4 && index.bytes().all(|b| b.is_ascii_digit())
    };
    fits.then(|| body.to_string())
}

/// The length of the parameter name `body` starts with: one special character (`@`, `*`,
/// `#`, `?`, `$`, `!`, `-`), the digits of a positional parameter, or a variable name; 0
/// when it starts with none.
fn parameter_name_len(body: &str) -> usize {
    let mut chars = body.char_indices();
    match chars.next() {
        Some((_, '@' | '*' | '#' | '?' | '$' | '!' | '-')) => 1,
        Some((_, c)) if c.is_ascii_digit() => chars
            .find(|(_, c)| !c.is_ascii_digit())
            .map_or(body.len(), |(i, _)| i),
        Some((_, c)) if c.is_ascii_alphabetic() || c == '_' => chars
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
            .map_or(body.len(), |(i, _)| i),
        _ => 0,
    }
}

/// bash's `OFFSET` or `OFFSET:LENGTH` after `${NAME:` when both are integers (bash reads
/// arithmetic there; anything else is not known statically).
fn substring_range(text: &str) -> Option<(i64, Option<i64>)> {
    let integer = |t: &str| -> Option<i64> {
        let t = t.trim_matches([' ', '\t']);
        let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    match text.split_once(':') {
        Some((offset, length)) => Some((integer(offset)?, Some(integer(length)?))),
        None => Some((integer(text)?, None)),
    }
}

/// What a `${…}` expansion does to the parameter's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VarOp {
    /// `${NAME#pattern}` (the shortest matching prefix removed), `${NAME##pattern}` (the
    /// longest).
    RemovePrefix {
        /// What is removed.
        pattern: Pattern,
        /// `##`.
        longest: bool,
    },
    /// `${NAME%pattern}`, `${NAME%%pattern}`: the same from the end.
    RemoveSuffix {
        /// What is removed.
        pattern: Pattern,
        /// `%%`.
        longest: bool,
    },
    /// `${#NAME}`: the value's length in characters.
    Length,
    /// bash's `${NAME:offset}` and `${NAME:offset:length}` (negative: from the end).
    Substring {
        /// First character (negative: counted from the end).
        offset: i64,
        /// How many characters (negative: where the slice ends, from the end).
        length: Option<i64>,
    },
}

/// Patterns longer than this many tokens are not matched (not known statically).
const MAX_PATTERN: usize = 256;
/// Work (characters × pattern tokens) one match may take before it is not known statically.
const MAX_MATCH_WORK: usize = 1 << 22;

/// A shell pattern (`case` items, `${NAME#pattern}`): `*`, `?`, bracket expressions, and
/// quoted or escaped characters standing for themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(Vec<PatternToken>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum PatternToken {
    Char(char),
    /// `?`.
    AnyChar,
    /// `*`.
    AnyString,
    /// `[…]`, `[!…]`.
    Class {
        negated: bool,
        items: Vec<ClassItem>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ClassItem {
    Char(char),
    Range(char, char),
    /// `[:alpha:]` and the like.
    Named(String),
}

impl ClassItem {
    fn matches(&self, c: char) -> bool {
        match self {
            ClassItem::Char(x) => *x == c,
            ClassItem::Range(a, b) => (*a..=*b).contains(&c),
            ClassItem::Named(name) => match name.as_str() {
                "alpha" => c.is_ascii_alphabetic(),
                "digit" => c.is_ascii_digit(),
                "alnum" => c.is_ascii_alphanumeric(),
                "upper" => c.is_ascii_uppercase(),
                "lower" => c.is_ascii_lowercase(),
                "space" => c.is_ascii_whitespace() || c == '\x0b',
                "blank" => c == ' ' || c == '\t',
                "punct" => c.is_ascii_punctuation(),
                "xdigit" => c.is_ascii_hexdigit(),
                "cntrl" => c.is_ascii_control(),
                "print" => c.is_ascii_graphic() || c == ' ',
                "graph" => c.is_ascii_graphic(),
                _ => false,
            },
        }
    }
}

impl PatternToken {
    /// Whether this one-character token takes `c`.
    fn takes(&self, c: char) -> bool {
        match self {
            PatternToken::Char(x) => *x == c,
            PatternToken::AnyChar => true,
            PatternToken::AnyString => false,
            PatternToken::Class { negated, items } => {
                items.iter().any(|i| i.matches(c)) != *negated
            }
        }
    }
}

impl Pattern {
    /// A pattern as written in a script (its quotes and backslashes still in it); `None`
    /// when it expands something (`$`, a backquote), which only running the script tells,
    /// leaves a quote open, or is too long.
    pub fn parse(text: &str) -> Option<Pattern> {
        let chars: Vec<char> = text.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '$' | '`' => return None,
                '\\' => tokens.push(PatternToken::Char(*chars.get(i)?)),
                '\'' => {
                    let end = i + chars[i..].iter().position(|&c| c == '\'')?;
                    tokens.extend(chars[i..end].iter().map(|&c| PatternToken::Char(c)));
                    i = end;
                }
                '"' => loop {
                    let c = *chars.get(i)?;
                    i += 1;
                    match c {
                        '"' => break,
                        '$' | '`' => return None,
                        '\\' if matches!(chars.get(i), Some('$' | '`' | '"' | '\\')) => {
                            tokens.push(PatternToken::Char(chars[i]));
                            i += 1;
                        }
                        c => tokens.push(PatternToken::Char(c)),
                    }
                },
                '*' => tokens.push(PatternToken::AnyString),
                '?' => tokens.push(PatternToken::AnyChar),
                '[' => match bracket(&chars[i..]) {
                    Some((token, used)) => {
                        tokens.push(token);
                        i += used;
                    }
                    None => tokens.push(PatternToken::Char('[')),
                },
                c => tokens.push(PatternToken::Char(c)),
            }
            // Escapes and quotes consumed their closing character above.
            if matches!(c, '\\' | '\'') {
                i += 1;
            }
            if tokens.len() > MAX_PATTERN {
                return None;
            }
        }
        Some(Pattern(tokens))
    }

    /// A pattern matching exactly `text`.
    pub fn literal(text: &str) -> Pattern {
        Pattern(text.chars().map(PatternToken::Char).collect())
    }

    /// Whether the pattern matches all of `text` (a `case` item).
    pub fn matches(&self, text: &str) -> Option<bool> {
        let chars: Vec<char> = text.chars().collect();
        let mut ends = self.match_lengths(chars.iter().copied(), false)?;
        Some(ends.next_back() == Some(chars.len()))
    }

    /// `${…#pattern}` / `${…##pattern}`: `text` without its shortest (longest) matching
    /// prefix; `None` when the match would take more work than allowed.
    pub fn remove_prefix(&self, text: &str, longest: bool) -> Option<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut ends = self.match_lengths(chars.iter().copied(), false)?;
        let cut = if longest {
            ends.next_back()
        } else {
            ends.next()
        }
        .unwrap_or(0);
        Some(chars[cut..].iter().collect())
    }

    /// `${…%pattern}` / `${…%%pattern}`: `text` without its shortest (longest) matching
    /// suffix.
    pub fn remove_suffix(&self, text: &str, longest: bool) -> Option<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut ends = self.match_lengths(chars.iter().rev().copied(), true)?;
        let cut = if longest {
            ends.next_back()
        } else {
            ends.next()
        }
        .unwrap_or(0);
        Some(chars[..chars.len() - cut].iter().collect())
    }

    /// The lengths of the prefixes of `chars` the pattern matches (read backwards when
    /// `reversed`: then `chars` comes from the end), ascending. The pattern runs as a set
    /// of positions reached (an NFA), so the work is characters × tokens at most.
    fn match_lengths(
        &self,
        chars: impl ExactSizeIterator<Item = char>,
        reversed: bool,
    ) -> Option<std::vec::IntoIter<usize>> {
        let tokens: Vec<&PatternToken> = if reversed {
            self.0.iter().rev().collect()
        } else {
            self.0.iter().collect()
        };
        let m = tokens.len();
        if chars.len().saturating_add(1).saturating_mul(m + 1) > MAX_MATCH_WORK {
            return None;
        }
        // A `*` also lets the position after it be reached without using a character.
        let close = |set: &mut Vec<bool>| {
            for j in 0..m {
                if set[j] && tokens[j] == &PatternToken::AnyString {
                    set[j + 1] = true;
                }
            }
        };
        let mut set = vec![false; m + 1];
        set[0] = true;
        close(&mut set);
        let mut lengths = Vec::new();
        if set[m] {
            lengths.push(0);
        }
        // Two position sets, swapped at each character (no allocation per character).
        let mut next = vec![false; m + 1];
        for (i, c) in chars.enumerate() {
            next.fill(false);
            let mut any = false;
            for j in 0..m {
                if !set[j] {
                    continue;
                }
                if tokens[j] == &PatternToken::AnyString {
                    next[j] = true;
                    any = true;
                } else if tokens[j].takes(c) {
                    next[j + 1] = true;
                    any = true;
                }
            }
            if !any {
                break;
            }
            close(&mut next);
            std::mem::swap(&mut set, &mut next);
            if set[m] {
                lengths.push(i + 1);
            }
        }
        Some(lengths.into_iter())
    }
}

/// A bracket expression after its `[`: the token and the characters used (up to and with
/// the closing `]`); `None` when it is not closed (the `[` is then itself).
fn bracket(chars: &[char]) -> Option<(PatternToken, usize)> {
    let mut i = 0;
    let negated = matches!(chars.first(), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        match c {
            ']' if !first => {
                return Some((PatternToken::Class { negated, items }, i + 1));
            }
            '[' if chars.get(i + 1) == Some(&':') => {
                let rest = &chars[i + 2..];
                let end = rest.windows(2).position(|w| w == [':', ']'])?;
                items.push(ClassItem::Named(rest[..end].iter().collect()));
                i += 2 + end + 2;
            }
            c => {
                let c = if c == '\\' {
                    i += 1;
                    *chars.get(i)?
                } else {
                    c
                };
                if chars.get(i + 1) == Some(&'-')
                    && let Some(&to) = chars.get(i + 2)
                    && to != ']'
                {
                    items.push(ClassItem::Range(c, to));
                    i += 3;
                } else {
                    items.push(ClassItem::Char(c));
                    i += 1;
                }
            }
        }
        first = false;
    }
}

impl VarOp {
    /// The operator applied to a parameter's value; `None` when that is not known (a
    /// slice bash refuses, a match over the work bound).
    fn apply(&self, value: &str) -> Option<String> {
        match self {
            VarOp::RemovePrefix { pattern, longest } => pattern.remove_prefix(value, *longest),
            VarOp::RemoveSuffix { pattern, longest } => pattern.remove_suffix(value, *longest),
            VarOp::Length => Some(value.chars().count().to_string()),
            VarOp::Substring { offset, length } => {
                let chars: Vec<char> = value.chars().collect();
                let n = chars.len() as i64;
                let start = if *offset < 0 { n + offset } else { *offset };
                if start < 0 || start > n {
                    return Some(String::new());
                }
                let end = match length {
                    None => n,
                    Some(l) if *l >= 0 => (start + l).min(n),
                    Some(l) => n + l,
                };
                if end < start {
                    return None; // bash: "substring expression < 0"
                }
                Some(chars[start as usize..end as usize].iter().collect())
            }
        }
    }
}

/// The text of a command substitution longer than this is not read: each one's text is
/// parsed again (and a nested one's again within it), so this bounds that work.
const MAX_SUBSTITUTION: usize = 256;

/// The text of a command substitution longer than this is not kept (so the programs it
/// runs are not followed, [`substitution_texts`]).
pub const MAX_SUBSTITUTION_TEXT: usize = 4 << 10;

/// The part a command substitution of `text` is.
fn substitution_part(text: &str, quoted: bool) -> Part {
    Part::Subst {
        command: substitution(text).map(Box::new),
        text: (text.len() <= MAX_SUBSTITUTION_TEXT).then(|| text.into()),
        quoted,
    }
}

/// The texts of the command substitutions in `word` (`None` for one too long to keep).
pub fn substitution_texts(word: &Word) -> impl Iterator<Item = Option<&str>> {
    word.parts.iter().flat_map(|part| match part {
        Part::Subst { text, .. } => vec![text.as_deref()],
        Part::Opaque { substitutions } => substitutions.iter().map(|t| t.as_deref()).collect(),
        _ => Vec::new(),
    })
}

/// A parameter expansion whose word `word` holds expansions: not known, but the texts of
/// the command substitutions at its top level kept (found by a scan of `word`, not a
/// parse, so nested expansions cost nothing more).
fn opaque(word: &str) -> Part {
    let substitutions = substitutions_in(word, true);
    if substitutions.is_empty() {
        Part::Unknown
    } else {
        Part::Opaque { substitutions }
    }
}

/// The texts of the command substitutions (`$(…)`, `` `…` ``) at the top level of `text`,
/// found by a scan rather than a parse (`None`: longer than [`MAX_SUBSTITUTION_TEXT`]);
/// `quotes`: single quotes quote (not in a here-document's text).
fn substitutions_in(text: &str, quotes: bool) -> Vec<Option<Box<str>>> {
    let chars: Vec<char> = text.chars().collect();
    let mut substitutions = Vec::new();
    let mut at = 0;
    let text = |from: usize, to: usize| -> Option<Box<str>> {
        (to - from <= MAX_SUBSTITUTION_TEXT)
            .then(|| chars[from..to].iter().collect::<String>().into())
    };
    while at < chars.len() {
        match chars[at] {
            '\\' => at += 1,
            '\'' if quotes => {
                // Quoted text: no substitution in it.
                at += 1;
                while at < chars.len() && chars[at] != '\'' {
                    at += 1;
                }
            }
            '`' => {
                let start = at + 1;
                at = start;
                while at < chars.len() && chars[at] != '`' {
                    at += 1 + usize::from(chars[at] == '\\');
                }
                substitutions.push(text(start, at.min(chars.len())));
            }
            '$' if chars.get(at + 1) == Some(&'(') && chars.get(at + 2) != Some(&'(') => {
                let start = at + 2;
                let mut depth = 1;
                at = start;
                while at < chars.len() {
                    match chars[at] {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        '\\' => at += 1,
                        _ => {}
                    }
                    at += 1;
                }
                substitutions.push(text(start, at.min(chars.len())));
            }
            _ => {}
        }
        at += 1;
    }
    substitutions
}

/// The command of a substitution's `text`, when it is one [`Substitution`] reads.
fn substitution(text: &str) -> Option<Substitution> {
    const READ: &[&str] = &[
        "command", "dirname", "basename", "pwd", "cd", "readlink", "realpath",
    ];
    // Most substitutions are something else: only these are parsed.
    let first = text.trim_start();
    if text.len() > MAX_SUBSTITUTION || !READ.iter().any(|c| first.starts_with(c)) {
        return None;
    }
    let commands = parse(text).ok()?;
    if commands.iter().any(|c| c.case_item || c.defines_function) {
        return None;
    }
    let literal = |c: &Command, i: usize| c.words.get(i).and_then(Word::literal);
    // Options, then `--`, then the operands.
    let operands = |c: &Command, options: &[&str]| -> Option<(Vec<String>, Vec<Word>)> {
        let mut given = Vec::new();
        let mut i = 1;
        while let Some(w) = literal(c, i).filter(|w| w.starts_with('-') && w.len() > 1) {
            i += 1;
            if w == "--" {
                break;
            }
            if !options.contains(&w.as_str()) {
                return None;
            }
            given.push(w);
        }
        Some((given, c.words[i..].to_vec()))
    };
    match commands.as_slice() {
        [only] if only.sep == Sep::Seq => {
            let name = literal(only, 0)?;
            let (options, mut operands) = match name.as_str() {
                "command" => operands(only, &["-v"])?,
                "readlink" => operands(only, &["-f", "-e"])?,
                "pwd" => operands(only, &["-L", "-P"])?,
                _ => operands(only, &[])?,
            };
            let one = |operands: &mut Vec<Word>| (operands.len() == 1).then(|| operands.remove(0));
            Some(match name.as_str() {
                "command" if options == ["-v"] => Substitution::CommandV(one(&mut operands)?),
                "dirname" => Substitution::Dirname(one(&mut operands)?),
                "basename" if matches!(operands.len(), 1 | 2) => {
                    let suffix = (operands.len() == 2).then(|| operands.remove(1));
                    Substitution::Basename(operands.remove(0), suffix)
                }
                "pwd" if operands.is_empty() => match options.last().map(String::as_str) {
                    Some("-P") => Substitution::Canonical(Word {
                        parts: vec![Part::Lit(".".into())],
                        glob: ".".into(),
                        ..Word::default()
                    }),
                    _ => Substitution::Pwd,
                },
                "readlink" if options.len() == 1 => Substitution::Canonical(one(&mut operands)?),
                "realpath" => Substitution::Canonical(one(&mut operands)?),
                _ => return None,
            })
        }
        [cd, pwd] if cd.sep == Sep::And && pwd.sep == Sep::Seq => {
            if literal(cd, 0)? != "cd" || literal(pwd, 0)? != "pwd" {
                return None;
            }
            let (cd_options, mut dir) = operands(cd, &["-L", "-P"])?;
            let (pwd_options, rest) = operands(pwd, &["-L", "-P"])?;
            if dir.len() != 1 || !rest.is_empty() {
                return None;
            }
            let physical = |options: &[String]| options.last().is_some_and(|o| o == "-P");
            Some(Substitution::CdPwd {
                dir: dir.remove(0),
                physical: physical(&cd_options) || physical(&pwd_options),
            })
        }
        _ => None,
    }
}

/// `dirname`'s output for `path` (POSIX: trailing slashes, then the last component, then
/// the slashes before it removed; `.` when there is no slash, `/` when only slashes are
/// left).
pub fn dirname(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() {
            ".".into()
        } else {
            "/".into()
        };
    }
    match trimmed.rfind('/') {
        None => ".".into(),
        Some(at) => {
            let parent = trimmed[..at].trim_end_matches('/');
            if parent.is_empty() {
                "/".into()
            } else {
                parent.into()
            }
        }
    }
}

/// `basename`'s output for `path` and `suffix` (the last component, its trailing slashes
/// removed, then the suffix when it ends it and is not all of it).
pub fn basename(path: &str, suffix: Option<&str>) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() {
            String::new()
        } else {
            "/".into()
        };
    }
    let last = trimmed.rsplit('/').next().unwrap_or(trimmed);
    match suffix {
        Some(suffix) if !suffix.is_empty() && last != suffix => {
            last.strip_suffix(suffix).unwrap_or(last).into()
        }
        _ => last.into(),
    }
}

/// Variables and positional parameters a script runs with.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    /// Named variables (the environment and the script's own).
    pub named: BTreeMap<String, String>,
    /// `$1` … .
    pub positional: Vec<String>,
    /// Variables the script set to what only running it tells (`x=$(id -u)`, a `for`
    /// loop's variable, `read`): expanding one is not known statically.
    pub unknown: BTreeSet<String>,
    /// bash's `FUNCNAME` array: the shell functions being run, innermost first, then
    /// `main` (empty outside any function). `None` where it is not known: another shell
    /// (dash stops at `${FUNCNAME[0]}`: "Bad substitution"), or a sourced script.
    pub funcname: Option<Vec<String>>,
    /// `$0`: the script as the shell was given it (`None`: not known).
    pub zero: Option<String>,
    /// bash's `BASH_SOURCE` (`${BASH_SOURCE[0]}`): the file the commands being run come
    /// from, as the shell was given it (`None`: not known, or not bash).
    pub bash_source: Option<String>,
    /// The other values a variable may hold where an assignment to it may or may not have
    /// run (under an undecided condition): the value it had before each such assignment
    /// (`None`: none known), besides the one kept in `named`; at most [`MAX_CANDIDATES`].
    pub candidates: BTreeMap<String, Vec<Option<String>>>,
    /// Likewise the positional parameters before a `set --` or `shift` that may not run.
    pub positional_candidates: Vec<Vec<String>>,
}

/// Other values kept per variable (and lists of positional parameters).
pub const MAX_CANDIDATES: usize = 8;

impl Vars {
    /// `name=value`, `None` being a value only running the script tells.
    pub fn assign(&mut self, name: &str, value: Option<String>) {
        match value {
            Some(v) => {
                self.unknown.remove(name);
                self.named.insert(name.to_string(), v);
            }
            None => {
                self.named.remove(name);
                self.unknown.insert(name.to_string());
            }
        }
    }

    /// What a shell function called `name` with `positional` starts with: these variables
    /// (its caller's), its arguments, its `FUNCNAME`.
    pub fn for_call(&self, name: &str, positional: Vec<String>) -> Vars {
        Vars {
            named: self.named.clone(),
            positional,
            unknown: self.unknown.clone(),
            funcname: self.funcname_in(name),
            zero: self.zero.clone(),
            bash_source: self.bash_source.clone(),
            candidates: self.candidates.clone(),
            positional_candidates: Vec::new(),
        }
    }

    /// The `FUNCNAME` a function called `name` sees, when the caller's is known.
    pub fn funcname_in(&self, name: &str) -> Option<Vec<String>> {
        let outer = self.funcname.as_ref()?;
        let mut inner = vec![name.to_string()];
        if outer.is_empty() {
            inner.push("main".into());
        } else {
            inner.extend(outer.iter().cloned());
        }
        Some(inner)
    }

    /// Before an assignment to `name`: `decided` — it runs, so the variable holds what it
    /// is given and nothing else; else it may not run, so its value now is one it may keep.
    pub fn before_assigning(&mut self, name: &str, decided: bool) {
        if decided {
            self.candidates.remove(name);
            return;
        }
        let now = if self.unknown.contains(name) {
            None
        } else {
            Some(self.named.get(name).cloned().unwrap_or_default())
        };
        let kept = self.candidates.entry(name.to_string()).or_default();
        if kept.len() < MAX_CANDIDATES && !kept.contains(&now) {
            kept.push(now);
        }
    }

    /// Sets the positional parameters (`set --`, `shift`) to `new`; `decided` as for
    /// [`Vars::before_assigning`] (a decided `shift` shifts the other lists too).
    pub fn set_positional(&mut self, new: Vec<String>, decided: bool, shifted: Option<usize>) {
        if decided {
            match shifted {
                Some(n) => {
                    for list in &mut self.positional_candidates {
                        list.drain(..n.min(list.len()));
                    }
                }
                None => self.positional_candidates.clear(),
            }
        } else if self.positional_candidates.len() < MAX_CANDIDATES
            && !self.positional_candidates.contains(&self.positional)
        {
            self.positional_candidates.push(self.positional.clone());
        }
        self.positional = new;
    }

    /// `unset name`.
    pub fn unset(&mut self, name: &str) {
        self.named.remove(name);
        self.unknown.remove(name);
    }
}

/// `IFS` field splitting of an unquoted expansion's value.
fn split_fields(value: &str) -> Vec<&str> {
    value
        .split([' ', '\t', '\n'])
        .filter(|s| !s.is_empty())
        .collect()
}

/// Expand a word into fields; `None` when it holds something unknowable (a
/// `$(command -v …)` among it).
pub fn expand(word: &Word, vars: &Vars) -> Option<Vec<String>> {
    expand_with(word, vars, &())
}

/// What substitution `command` prints, when that is known.
fn substitute(command: &Substitution, vars: &Vars, outside: &dyn Outside) -> Option<String> {
    // An operand: one field (none, or an unquoted one split in two, is not read).
    let operand = |word: &Word| match expand_with(word, vars, outside)?.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    };
    match command {
        Substitution::CommandV(name) => outside.command_v(&operand(name)?),
        Substitution::Dirname(path) => Some(dirname(&operand(path)?)),
        Substitution::Basename(path, suffix) => {
            let suffix = match suffix {
                Some(s) => Some(operand(s)?),
                None => None,
            };
            Some(basename(&operand(path)?, suffix.as_deref()))
        }
        Substitution::Pwd => outside.cwd(),
        Substitution::CdPwd { dir, physical } => {
            let dir = operand(dir)?;
            // `cd ""`, `cd -` and CDPATH's directories differ between shells: not read.
            if dir.is_empty() || dir == "-" || vars.named.contains_key("CDPATH") {
                return None;
            }
            Some(outside.directory(&dir, *physical)?.unwrap_or_default())
        }
        Substitution::Canonical(path) => outside.canonical(&operand(path)?),
    }
}

/// [`expand`] with `outside` answering what command substitutions ask of the image.
pub fn expand_with(word: &Word, vars: &Vars, outside: &dyn Outside) -> Option<Vec<String>> {
    let mut fields: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    if word.quoted {
        current = Some(String::new());
    }
    let append = |current: &mut Option<String>, s: &str| {
        current.get_or_insert_with(String::new).push_str(s);
    };
    // An unquoted expansion's value, split into fields: the first joins the text before it,
    // each further one starts a field.
    let append_split = |fields: &mut Vec<String>, current: &mut Option<String>, value: &str| {
        let mut pieces = split_fields(value).into_iter();
        if let Some(first) = pieces.next() {
            append(current, first);
        }
        for v in pieces {
            fields.extend(current.take());
            *current = Some(v.to_string());
        }
    };
    for part in &word.parts {
        match part {
            Part::Lit(s) => append(&mut current, s),
            Part::Unknown | Part::Opaque { .. } => return None,
            Part::Subst {
                command, quoted, ..
            } => {
                let output = substitute(command.as_ref()?, vars, outside)?;
                let output = output.trim_end_matches('\n');
                if *quoted {
                    append(&mut current, output);
                } else {
                    append_split(&mut fields, &mut current, output);
                }
            }
            Part::Var {
                name,
                default,
                alternative,
                op,
                quoted,
            } => {
                let mut values: Vec<String> = match name.as_str() {
                    "@" | "*" if *quoted && name == "@" => vars.positional.clone(),
                    "@" | "*" => vec![vars.positional.join(" ")],
                    "#" => vec![vars.positional.len().to_string()],
                    "?" | "$" | "!" | "-" => return None,
                    n if n.starts_with("FUNCNAME[") || n.starts_with("#FUNCNAME[") => {
                        let stack = vars.funcname.as_ref()?;
                        let value = match n.strip_prefix("FUNCNAME[") {
                            Some(index) => {
                                let i: usize = index.trim_end_matches(']').parse().ok()?;
                                stack.get(i).cloned()
                            }
                            None => Some(stack.len().to_string()),
                        };
                        vec![resolve(value, default, alternative)]
                    }
                    "BASH_SOURCE[0]" => {
                        vec![resolve(
                            Some(vars.bash_source.clone()?),
                            default,
                            alternative,
                        )]
                    }
                    "BASH_SOURCE" if vars.bash_source.is_some() => {
                        vec![resolve(vars.bash_source.clone(), default, alternative)]
                    }
                    "0" => vec![resolve(Some(vars.zero.clone()?), default, alternative)],
                    "FUNCNAME" if vars.funcname.is_some() => {
                        let value = vars.funcname.as_ref().and_then(|s| s.first().cloned());
                        vec![resolve(value, default, alternative)]
                    }
                    n if n.bytes().all(|b| b.is_ascii_digit()) => {
                        let i: usize = n.parse().ok()?;
                        if i == 0 {
                            return None;
                        }
                        let v = vars.positional.get(i - 1).cloned();
                        vec![resolve(v, default, alternative)]
                    }
                    n if vars.unknown.contains(n) => return None,
                    n => vec![resolve(vars.named.get(n).cloned(), default, alternative)],
                };
                if let Some(op) = op {
                    for v in &mut values {
                        *v = op.apply(v)?;
                    }
                }
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
                    append_split(&mut fields, &mut current, &values.join(" "));
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
            ..Vars::default()
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

    /// What the tests' substitutions ask of an image: `node` and `two` on the PATH,
    /// `/srv` the working directory, `/opt/app` a link to `/opt/app-1.0`.
    struct FakeImage;

    impl Outside for FakeImage {
        fn command_v(&self, name: &str) -> Option<String> {
            match name {
                "node" => Some("/usr/local/bin/node".to_string()),
                "two" => Some("a b".to_string()),
                "none" => Some(String::new()),
                _ => None,
            }
        }
        fn cwd(&self) -> Option<String> {
            Some("/srv".into())
        }
        fn directory(&self, dir: &str, physical: bool) -> Option<Option<String>> {
            match dir {
                "/opt/app/bin" => {
                    Some(Some(if physical { "/opt/app-1.0/bin" } else { dir }.into()))
                }
                "/missing" => Some(None),
                _ => None,
            }
        }
        fn canonical(&self, path: &str) -> Option<String> {
            match path {
                "/opt/app/bin/app" => Some("/opt/app-1.0/bin/app".into()),
                "." => Some("/srv".into()),
                _ => None,
            }
        }
    }

    /// The substitutions [`Substitution`] reads are kept with their words, answered by
    /// `expand_with` and its caller, and split as an expansion is when unquoted; others
    /// stay unknown.
    #[test]
    fn substitutions_are_answered_by_the_caller() {
        let vars = Vars {
            positional: vec!["node".into(), "lib/app-1.0.jar".into()],
            zero: Some("/opt/app/bin/app".into()),
            bash_source: Some("/opt/app/bin/app".into()),
            ..Vars::default()
        };
        let expanded = |text: &str| {
            let commands = parse(text).unwrap();
            expand_with(&commands[0].words[1], &vars, &FakeImage)
        };
        for (text, want) in [
            (
                "x \"$(command -v \"$1\")\"",
                Some(vec!["/usr/local/bin/node"]),
            ),
            (
                "x $(command -v -- node 2>/dev/null)",
                Some(vec!["/usr/local/bin/node"]),
            ),
            ("x \"$(command -v none)\"", Some(vec![""])),
            ("x $(command -v none)", Some(vec![])),
            ("x $(command -v two)", Some(vec!["a", "b"])),
            ("x \"$(command -v two)\"", Some(vec!["a b"])),
            (
                "x =$(command -v node)=",
                Some(vec!["=/usr/local/bin/node="]),
            ),
            ("x \"$0\"", Some(vec!["/opt/app/bin/app"])),
            ("x \"$(dirname \"$0\")\"", Some(vec!["/opt/app/bin"])),
            ("x `dirname $0`/..", Some(vec!["/opt/app/bin/.."])),
            ("x \"`basename \\\"$2\\\" .jar`\"", Some(vec!["app-1.0"])),
            ("x $(basename -- \"$1\")", Some(vec!["node"])),
            (
                "x \"$(cd \"$(dirname \"$0\")\" && pwd)\"",
                Some(vec!["/opt/app/bin"]),
            ),
            (
                "x \"$( cd -- \"$( dirname -- \"${BASH_SOURCE[0]}\" )\" &> /dev/null && pwd )\"",
                Some(vec!["/opt/app/bin"]),
            ),
            (
                "x \"$(cd -P \"$(dirname \"$BASH_SOURCE\")\" && pwd)\"",
                Some(vec!["/opt/app-1.0/bin"]),
            ),
            (
                "x \"$(cd \"$(dirname \"$0\")\" >/dev/null 2>&1 && pwd -P)\"",
                Some(vec!["/opt/app-1.0/bin"]),
            ),
            ("x \"$(cd /missing && pwd)\"", Some(vec![""])),
            ("x $(pwd)", Some(vec!["/srv"])),
            ("x $(pwd -P)", Some(vec!["/srv"])),
            (
                "x \"$(readlink -f \"$0\")\"",
                Some(vec!["/opt/app-1.0/bin/app"]),
            ),
            (
                "x \"$(realpath -- \"$0\")\"",
                Some(vec!["/opt/app-1.0/bin/app"]),
            ),
            ("x $(command -v other)", None),
            ("x $(command -v node two)", None),
            ("x $(command -v node; id)", None),
            ("x $(cat node)", None),
            ("x $(command node)", None),
            ("x $(cd /missing; pwd)", None),
            ("x $(cd /elsewhere && pwd)", None),
            ("x $(cd && pwd)", None),
            ("x $(readlink \"$0\")", None),
            ("x $(dirname a b)", None),
            ("x $(dirname \"$0\" | sed s/a/b/)", None),
            ("x $(basename)", None),
            ("x $(dirname $(date))", None),
        ] {
            let want = want.map(|w| w.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(expanded(text), want, "{text}");
        }
        // Without answers (plain `expand`), what the image tells is not known; what the
        // script's own values tell is.
        let first = |text: &str| parse(text).unwrap()[0].words[1].clone();
        assert_eq!(expand(&first("x \"$(command -v node)\""), &vars), None);
        assert_eq!(expand(&first("x \"$(pwd)\""), &vars), None);
        assert_eq!(
            expand(&first("x \"$(dirname \"$0\")\""), &vars),
            Some(vec!["/opt/app/bin".to_string()])
        );
        assert_eq!(expand(&first("x \"$0\""), &Vars::default()), None);
        // A substitution longer than MAX_SUBSTITUTION is not read.
        let long = format!("x \"$(dirname /{})\"", "a/".repeat(200));
        assert_eq!(expand(&first(&long), &vars), None);
    }

    /// `dirname` and `basename` as coreutils' own print them.
    #[test]
    fn dirname_and_basename_as_coreutils_prints_them() {
        let paths = [
            "",
            "/",
            "a",
            "a/",
            "/a",
            "/a/",
            "a/b",
            "/a/b/",
            "a//b//",
            "///a///b///",
            ".",
            "..",
            "../x",
            "a/b/..",
            "/usr/local/bin/app",
            "app.sh",
        ];
        let run = |args: &[&str]| {
            let out = std::process::Command::new(args[0])
                .args(&args[1..])
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}");
            String::from_utf8(out.stdout)
                .unwrap()
                .trim_end_matches('\n')
                .to_string()
        };
        for path in paths {
            assert_eq!(
                dirname(path),
                run(&["dirname", "--", path]),
                "dirname {path:?}"
            );
            assert_eq!(
                basename(path, None),
                run(&["basename", "--", path]),
                "basename {path:?}"
            );
            for suffix in [".sh", "app.sh", "", "b"] {
                assert_eq!(
                    basename(path, Some(suffix)),
                    run(&["basename", "--", path, suffix]),
                    "basename {path:?} {suffix:?}"
                );
            }
        }
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
                      case $C in d) five\nesac; six\nfor a in x; do case $a in x|y) seven ;; esac; done\n";
        let commands = parse(script).unwrap();
        let programs: Vec<String> = commands
            .iter()
            .filter(|c| !c.case_item)
            .filter_map(|c| c.words.first().and_then(Word::literal))
            .collect();
        assert_eq!(
            programs,
            [
                "case", "JAVA=x", "shift", "one", "case", "two", "esac", "esac", "three", "four",
                "case", "five", "esac", "six", "for", "do", "seven", "esac", "done"
            ],
            "{commands:?}"
        );
        // Each item's patterns, in order.
        let items: Vec<Vec<String>> = commands
            .iter()
            .filter(|c| c.case_item)
            .map(|c| c.words.iter().filter_map(Word::literal).collect())
            .collect();
        assert_eq!(
            items,
            [
                &["--add-module*", "--dry-run", "-v"][..],
                &["a", "b"],
                &["*"],
                &["c"],
                &["d"],
                &["x", "y"]
            ]
        );
        // Assignments: name unquoted, value may be quoted.
        let c = &parse("A=\"x y\" B='z' \"C=no\" cmd").unwrap()[0];
        assert_eq!(c.words[0].assignment().unwrap().0, "A");
        assert_eq!(c.words[1].assignment().unwrap().0, "B");
        assert!(c.words[2].assignment().is_none());
    }

    /// Each `${v…}` operator over each value, as our expansion gives it, against the same
    /// expansions printed by the real shell: Debian's `dash` (its `/bin/sh`) for POSIX's
    /// pattern removal and length, `bash` for those and its substrings.
    #[test]
    fn parameter_operators_expand_as_dash_and_bash_expand_them() {
        let values = [
            "",
            "redis-server",
            "-v",
            "--port",
            "/usr/bin/java",
            "java",
            "redis.conf",
            "app.tar.gz",
            "a*b",
            "aaa",
            "x[y]z",
            "/",
            "a b",
            "-Dx=1 -Dy=2",
            "A9z-",
            "9lives",
            "!x",
        ];
        let posix_ops = [
            "#-",
            "##-",
            "%.conf",
            "%%.conf",
            "##*/",
            "#*/",
            "%/*",
            "%%/*",
            "%.*",
            "%%.*",
            "#*.",
            "##*.",
            "#?",
            "%?",
            "#??",
            "##*",
            "%%*",
            "#\\*",
            "#\"a*\"",
            "#'a*'",
            "%[0-9]",
            "%%[0-9]*",
            "#[!-]",
            "#[[:upper:]]",
            "##[[:alpha:]]*",
            "%[[:punct:]]",
            "#[]x]",
            "#[a-c]",
            "##a*",
            "#a*",
            "%%a*",
            "%a",
            "#-D*=",
            "##-D*=",
            "%% *",
            "% *",
            "#x[y",
            "#[",
            "%]",
            "#",
            "%",
        ];
        let bash_ops = [
            "0:1", "1", "0:0", "2:3", " -2", " -2:1", "1:-1", "20", " -20", "0:-0",
        ];
        let run = |shell: &str, ops: &[&str], length: bool| -> Vec<(String, String, String)> {
            let mut script = String::new();
            let mut cases = Vec::new();
            for v in values {
                for op in ops {
                    let word = format!("\"${{v{op}}}\"");
                    // A shell error (bash's negative slice) prints a 0x01 line instead.
                    script.push_str(&format!(
                        "v='{v}'; (printf '%s\\n' {word}) 2>/dev/null || printf '\\001\\n'\n"
                    ));
                    cases.push((v.to_string(), word));
                }
                if length {
                    let word = "\"${#v}\"".to_string();
                    script.push_str(&format!("v='{v}'; printf '%s\\n' {word}\n"));
                    cases.push((v.to_string(), word));
                }
            }
            let out = std::process::Command::new(shell)
                .args(["-c", &script])
                .env("LC_ALL", "C")
                .output()
                .unwrap_or_else(|e| panic!("{shell}: {e}"));
            assert!(
                out.status.success(),
                "{shell}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let printed = String::from_utf8(out.stdout).unwrap();
            let lines: Vec<&str> = printed.split('\n').collect();
            assert_eq!(lines.len(), cases.len() + 1, "{shell}: {printed}");
            cases
                .into_iter()
                .zip(lines)
                .map(|((v, w), line)| (v, w, line.to_string()))
                .collect()
        };
        let mut checked = 0;
        for (shell, ops) in [
            ("dash", &posix_ops[..]),
            ("bash", &posix_ops[..]),
            ("bash", &bash_ops[..]),
        ] {
            let ops: Vec<String> = if ops == bash_ops {
                ops.iter().map(|o| format!(":{o}")).collect()
            } else {
                ops.iter().map(|o| o.to_string()).collect()
            };
            let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
            for (value, word, want) in run(shell, &ops, true) {
                let commands = parse(&word).unwrap();
                let vars = Vars {
                    named: BTreeMap::from([("v".to_string(), value.clone())]),
                    ..Vars::default()
                };
                let got = expand(&commands[0].words[0], &vars);
                let want = (want != "\u{1}").then(|| vec![want.clone()]);
                assert_eq!(got, want, "{shell}: v='{value}'; {word} gives {want:?}");
                checked += 1;
            }
        }
        assert!(checked > 1000, "{checked}");
        // What only running the script tells stays unknown.
        let vars = Vars::default();
        for word in [
            "${v#$x}",
            "${v%\"$x\"}",
            "${v#`id`}",
            "${v:$n}",
            "${v:1+1}",
            "${!v}",
            "${@#-}",
            "${#@}",
            "${v/a/b}",
            "${-}",
        ] {
            let commands = parse(word).unwrap();
            assert_eq!(expand(&commands[0].words[0], &vars), None, "{word}");
        }
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
