//! The Dockerfile, checked without a Docker engine: its build stage emulated (the context
//! laid out in a temp dir exactly as its COPY lines copy it, .dockerignore respected, its
//! cargo commands run there offline), hadolint, and the binaries the image installs held
//! against the commands our workloads start.
//!
//! What needs an engine is checked by reading the lines instead: the base images, BuildKit
//! cache mounts, the release build itself (only resolved here: `cargo metadata`, since a
//! release build takes far too long on two cores) and `install` of the built files. The
//! real image is built by tests/kind where Docker exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use glob::{MatchOptions, Pattern};
use serde_json::Value;
use stellaops_controllers::Config;

use crate::packaging::{find, render, tool};
use crate::repo_root;

/// One instruction: its keyword in capitals, its `--flags`, the rest of the line.
#[derive(Debug)]
struct Instruction {
    line: usize,
    keyword: String,
    flags: Vec<String>,
    rest: String,
}

impl Instruction {
    fn fail(&self, why: impl std::fmt::Display) -> String {
        format!(
            "Dockerfile line {}: {} {}: {why}",
            self.line, self.keyword, self.rest
        )
    }
}

/// The instructions of a Dockerfile: comment and blank lines dropped (inside a continued
/// instruction too, as Docker does), lines ending in `\` joined.
fn parse(text: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let (mut current, mut start) = (String::new(), 0);
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if current.is_empty() {
            start = index + 1;
        }
        match line.strip_suffix('\\') {
            Some(body) => {
                current.push_str(body);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                instructions.push(instruction(start, &current));
                current.clear();
            }
        }
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside a continued line"
    );
    instructions
}

fn instruction(line: usize, text: &str) -> Instruction {
    let (keyword, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let mut rest = rest.trim_start();
    let mut flags = Vec::new();
    while rest.starts_with("--") {
        let (flag, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        flags.push(flag.to_string());
        rest = after.trim_start();
    }
    Instruction {
        line,
        keyword: keyword.to_ascii_uppercase(),
        flags,
        rest: rest.trim_end().to_string(),
    }
}

/// A `FROM` and what follows it.
struct Stage {
    base: String,
    name: Option<String>,
    body: Vec<Instruction>,
}

fn stages(instructions: Vec<Instruction>) -> Result<Vec<Stage>, String> {
    let mut stages: Vec<Stage> = Vec::new();
    for ins in instructions {
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins.rest.split_whitespace().collect();
            let (base, name) = match words[..] {
                [base] => (base, None),
                [base, r#as, name] if r#as.eq_ignore_ascii_case("as") => (base, Some(name)),
                _ => return Err(ins.fail("expected `FROM image [AS name]`")),
            };
            stages.push(Stage {
                base: base.to_string(),
                name: name.map(str::to_string),
                body: Vec::new(),
            });
        } else {
            let stage = stages
                .last_mut()
                .ok_or_else(|| ins.fail("before any FROM"))?;
            stage.body.push(ins);
        }
    }
    Ok(stages)
}

/// The final image as the Dockerfile lays it out.
#[derive(Debug)]
struct Image {
    base: String,
    user: Option<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    /// Path in the image → the cargo binary target it was built from.
    binaries: BTreeMap<String, String>,
    /// The base images of the stages it copies from.
    builders: Vec<String>,
}

/// A temp directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("stellaops-dockerfile-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Emulate `docker build` of `dockerfile` in `context` as far as it can be without an
/// engine; the error names the line that would fail (or that this cannot emulate).
fn emulate(dockerfile: &str, context: &Path, tag: &str) -> Result<Image, String> {
    let mut stages = stages(parse(dockerfile))?;
    let last = stages.pop().ok_or("no FROM")?;
    let context = Context::read(context)?;
    let scratch = Scratch::new(tag);
    let mut built: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut image = Image {
        base: last.base.clone(),
        user: None,
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        binaries: BTreeMap::new(),
        builders: Vec::new(),
    };
    for ins in &last.body {
        match ins.keyword.as_str() {
            "LABEL" | "EXPOSE" => {}
            "USER" => image.user = Some(ins.rest.clone()),
            "ENTRYPOINT" => image.entrypoint = exec_form(ins)?,
            "CMD" => image.cmd = exec_form(ins)?,
            "COPY" => {
                let from = match &ins.flags[..] {
                    [flag] => flag.strip_prefix("--from="),
                    _ => None,
                }
                .ok_or_else(|| {
                    ins.fail("only `COPY --from=STAGE` is emulated in the final stage")
                })?;
                if !built.contains_key(from) {
                    let stage = stages
                        .iter()
                        .find(|s| s.name.as_deref() == Some(from))
                        .ok_or_else(|| ins.fail(format!("no stage named {from}")))?;
                    image.builders.push(stage.base.clone());
                    let root = scratch.0.join(from);
                    built.insert(from.to_string(), build_stage(stage, &context, &root)?);
                }
                let words = words(ins)?;
                let [source, dest] = &words[..] else {
                    return Err(ins.fail("expected one source and a destination"));
                };
                let files = &built[from];
                let copied: Vec<(&String, &String)> = match source.strip_suffix('/') {
                    Some(dir) => files
                        .iter()
                        .filter(|(path, _)| path.starts_with(&format!("{dir}/")))
                        .collect(),
                    None => files.iter().filter(|(path, _)| *path == source).collect(),
                };
                if copied.is_empty() {
                    return Err(ins.fail(format!("stage {from} installs nothing at {source}")));
                }
                for (path, binary) in copied {
                    let name = path.rsplit('/').next().unwrap();
                    let target = match dest.strip_suffix('/') {
                        Some(dir) => format!("{dir}/{name}"),
                        None => dest.clone(),
                    };
                    image.binaries.insert(target, binary.clone());
                }
            }
            _ => return Err(ins.fail("not emulated in the final stage")),
        }
    }
    Ok(image)
}

/// `["a", "b"]`: distroless has no shell, so the shell form would not start.
fn exec_form(ins: &Instruction) -> Result<Vec<String>, String> {
    serde_json::from_str(&ins.rest)
        .map_err(|e| ins.fail(format!("not the exec form (a JSON array): {e}")))
}

/// COPY's sources and destination (plain or JSON form).
fn words(ins: &Instruction) -> Result<Vec<String>, String> {
    let words: Vec<String> = if ins.rest.starts_with('[') {
        serde_json::from_str(&ins.rest).map_err(|e| ins.fail(e))?
    } else {
        ins.rest.split_whitespace().map(str::to_string).collect()
    };
    if words.len() < 2 {
        return Err(ins.fail("expected sources and a destination"));
    }
    Ok(words)
}

/// `base` joined with `path` (absolute paths replace it), `.` and empty parts dropped.
fn resolve(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{base}/{path}")
    };
    let parts: Vec<&str> = joined
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// The CARGO_HOME of the official rust images.
const RUST_IMAGE_CARGO_HOME: &str = "/usr/local/cargo";

/// Run a build stage's WORKDIR, COPY and RUN lines under `root` (the stage's filesystem).
/// Returns what its RUN lines `install`ed: path → cargo binary target.
fn build_stage(
    stage: &Stage,
    context: &Context,
    root: &Path,
) -> Result<BTreeMap<String, String>, String> {
    let host = |path: &str| root.join(path.trim_start_matches('/'));
    let mut workdir = "/".to_string();
    // Files cargo has built and that are still there: path → binary target.
    let mut built: BTreeMap<String, String> = BTreeMap::new();
    let mut installed = BTreeMap::new();
    for ins in &stage.body {
        match ins.keyword.as_str() {
            "WORKDIR" => {
                workdir = resolve(&workdir, &ins.rest);
                std::fs::create_dir_all(host(&workdir)).map_err(|e| ins.fail(e))?;
            }
            "COPY" => {
                if let Some(flag) = ins.flags.iter().find(|f| {
                    !["--chown=", "--chmod=", "--link"]
                        .iter()
                        .any(|ok| f.starts_with(ok))
                }) {
                    return Err(ins.fail(format!("{flag} is not emulated")));
                }
                let mut words = words(ins)?;
                let dest = words.pop().unwrap();
                context.copy(ins, &words, &resolve(&workdir, &dest), &dest, root)?;
            }
            "RUN" => {
                let target_mounted = run_mounts(ins, stage, &workdir)?;
                for command in shell_commands(ins)? {
                    let (program, args) = command.split_first().unwrap();
                    match program.as_str() {
                        "cargo" => cargo(ins, args, &host(&workdir), &workdir, &mut built)?,
                        "install" => {
                            let (source, dest) = install_paths(ins, args)?;
                            let source = resolve(&workdir, &source);
                            let binary = built.get(&source).ok_or_else(|| {
                                ins.fail(format!(
                                    "install: {source} is not built by a cargo build before it \
                                     (in this step, when target/ is a cache mount)"
                                ))
                            })?;
                            installed.insert(resolve(&workdir, &dest), binary.clone());
                        }
                        other => return Err(ins.fail(format!("`{other}` is not emulated"))),
                    }
                }
                // A cache mount is not part of the layer: what was built there is gone.
                if let Some(target) = target_mounted {
                    built.retain(|path, _| !path.starts_with(&format!("{target}/")));
                }
            }
            _ => return Err(ins.fail("not emulated in the build stage")),
        }
    }
    Ok(installed)
}

/// RUN's `--mount` flags, checked by reading them (BuildKit cannot be emulated): cache
/// mounts of cargo's downloads under CARGO_HOME and of the workspace's target directory
/// only. Returns the target directory when it is a mount.
fn run_mounts(ins: &Instruction, stage: &Stage, workdir: &str) -> Result<Option<String>, String> {
    let mut target_mounted = None;
    for flag in &ins.flags {
        let spec = flag
            .strip_prefix("--mount=")
            .ok_or_else(|| ins.fail(format!("{flag} is not emulated")))?;
        let options: BTreeMap<&str, &str> = spec
            .split(',')
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
            .collect();
        if options.get("type") != Some(&"cache") {
            return Err(ins.fail(format!("{flag}: only cache mounts are emulated")));
        }
        let target = ["target", "dst", "destination"]
            .iter()
            .find_map(|k| options.get(k))
            .map(|t| resolve(workdir, t))
            .ok_or_else(|| ins.fail(format!("{flag} has no target")))?;
        if target == resolve(workdir, "target") {
            // Two builds writing one target directory at once would corrupt it.
            if options.get("sharing") != Some(&"locked") {
                return Err(ins.fail("the target directory's cache mount needs sharing=locked"));
            }
            target_mounted = Some(target);
        } else if !target.starts_with(&format!("{RUST_IMAGE_CARGO_HOME}/"))
            || !stage.base.starts_with("rust:")
        {
            return Err(ins.fail(format!(
                "cache mount at {target}: neither cargo's downloads nor the target directory"
            )));
        }
    }
    Ok(target_mounted)
}

/// The commands of a RUN line: exec form, or shell form joined by `&&` and nothing else.
fn shell_commands(ins: &Instruction) -> Result<Vec<Vec<String>>, String> {
    if ins.rest.starts_with('[') {
        return Ok(vec![exec_form(ins)?]);
    }
    let joined = ins.rest.replace("&&", "\u{0}");
    if let Some(c) = joined.chars().find(|c| ";|&$`<>(){}\n".contains(*c)) {
        return Err(ins.fail(format!("shell syntax `{c}` is not emulated (only `&&`)")));
    }
    joined
        .split('\u{0}')
        .map(|command| match shlex::split(command) {
            Some(words) if !words.is_empty() => Ok(words),
            _ => Err(ins.fail(format!("cannot split `{command}`"))),
        })
        .collect()
}

/// `install [-D] [-m MODE] SOURCE DEST`.
fn install_paths(ins: &Instruction, args: &[String]) -> Result<(String, String), String> {
    let mut paths = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "-D" => {}
            "-m" => {
                words.next();
            }
            flag if flag.starts_with('-') => {
                return Err(ins.fail(format!("install {flag} is not emulated")));
            }
            path => paths.push(path.to_string()),
        }
    }
    match <[String; 2]>::try_from(paths) {
        Ok([source, dest]) => Ok((source, dest)),
        Err(_) => Err(ins.fail("install: expected one source and one destination")),
    }
}

fn cargo_output(dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Offline resolution needs every locked crate in the local cache, including ones
        // only other platforms build; scripts/test.sh fetches them first.
        let hint = if stderr.contains("--offline was specified") {
            "\n(the local crate cache lacks a locked crate: run `cargo fetch --locked` first, as scripts/test.sh does)"
        } else {
            ""
        };
        Err(format!(
            "`cargo {}` failed:\n{stderr}{hint}",
            args.join(" ")
        ))
    }
}

/// A workspace member: its directory (relative to the workspace) and binary targets.
struct Member {
    dir: String,
    bins: Vec<String>,
}

/// The workspace members by package name, resolved offline against the lock.
fn members(dir: &Path) -> Result<BTreeMap<String, Member>, String> {
    let out = cargo_output(
        dir,
        &["metadata", "--offline", "--locked", "--format-version", "1"],
    )?;
    let metadata: Value = serde_json::from_slice(&out).map_err(|e| e.to_string())?;
    let root = PathBuf::from(metadata["workspace_root"].as_str().unwrap_or_default());
    let ids: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut members = BTreeMap::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        if !package["id"].as_str().is_some_and(|id| ids.contains(id)) {
            continue;
        }
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
        let dir = manifest
            .parent()
            .and_then(|d| d.strip_prefix(&root).ok())
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bins = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.contains(&"bin".into()))
            })
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect();
        let name = package["name"].as_str().unwrap_or_default().to_string();
        members.insert(name, Member { dir, bins });
    }
    Ok(members)
}

/// A cargo command of a RUN line, run offline where that tells what Docker would see.
fn cargo(
    ins: &Instruction,
    args: &[String],
    dir: &Path,
    workdir: &str,
    built: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let Some((subcommand, rest)) = args.split_first() else {
        return Err(ins.fail("cargo without a subcommand"));
    };
    let fail = |e: String| ins.fail(e);
    match subcommand.as_str() {
        // The same command, offline against the local registry cache.
        "fetch" => {
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            args.push("--offline");
            cargo_output(dir, &args).map_err(fail)?;
        }
        // A release build takes far too long here: resolve the workspace offline against
        // the lock instead (what `--locked` needs), and check the packages it names.
        "build" => {
            if !rest.iter().any(|a| a == "--locked") {
                return Err(ins.fail("cargo build without --locked ignores the committed lock"));
            }
            let members = members(dir).map_err(fail)?;
            let mut packages: Vec<&str> = Vec::new();
            let mut profile = "debug";
            let mut words = rest.iter();
            while let Some(word) = words.next() {
                match word.as_str() {
                    "-p" | "--package" => packages.extend(words.next().map(String::as_str)),
                    "--release" => profile = "release",
                    "--locked" => {}
                    other => match other.strip_prefix("--package=") {
                        Some(package) => packages.push(package),
                        None => {
                            return Err(ins.fail(format!("cargo build {other} is not emulated")));
                        }
                    },
                }
            }
            if packages.is_empty() {
                return Err(ins.fail("cargo build without -p is not emulated"));
            }
            for package in packages {
                let member = members
                    .get(package)
                    .ok_or_else(|| ins.fail(format!("-p {package} is not a workspace member")))?;
                for bin in &member.bins {
                    let path = resolve(workdir, &format!("target/{profile}/{bin}"));
                    built.insert(path, bin.clone());
                }
            }
        }
        other => return Err(ins.fail(format!("cargo {other} is not emulated"))),
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Link,
}

/// The build context: every path Docker sends (relative, `/`-separated), after .dockerignore.
struct Context {
    root: PathBuf,
    entries: BTreeMap<String, Kind>,
}

/// .dockerignore as Docker reads it: patterns anchored at the context root, `!` for
/// exceptions, the last match wins, and a pattern matching a directory matches all in it.
struct DockerIgnore(Vec<(Pattern, bool)>);

const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl DockerIgnore {
    fn read(root: &Path) -> Result<DockerIgnore, String> {
        let text = std::fs::read_to_string(root.join(".dockerignore")).unwrap_or_default();
        let mut patterns = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let cleaned = resolve("", pattern);
            let pattern = Pattern::new(cleaned.trim_start_matches('/'))
                .map_err(|e| format!(".dockerignore: {line}: {e}"))?;
            patterns.push((pattern, exception));
        }
        Ok(DockerIgnore(patterns))
    }

    fn excluded(&self, path: &str) -> bool {
        let parents: Vec<&str> = path
            .match_indices('/')
            .map(|(i, _)| &path[..i])
            .chain([path])
            .collect();
        let mut excluded = false;
        for (pattern, exception) in &self.0 {
            if parents.iter().any(|p| pattern.matches_with(p, MATCH)) {
                excluded = !exception;
            }
        }
        excluded
    }

    fn has_exceptions(&self) -> bool {
        self.0.iter().any(|(_, exception)| *exception)
    }
}

impl Context {
    fn read(root: &Path) -> Result<Context, String> {
        let ignore = DockerIgnore::read(root)?;
        let mut context = Context {
            root: root.to_path_buf(),
            entries: BTreeMap::new(),
        };
        context.walk("", &ignore)?;
        Ok(context)
    }

    fn walk(&mut self, dir: &str, ignore: &DockerIgnore) -> Result<(), String> {
        let path = self.root.join(dir);
        let mut children: Vec<_> = std::fs::read_dir(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(Result::ok)
            .collect();
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let name = child.file_name().to_string_lossy().into_owned();
            let relative = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let excluded = ignore.excluded(&relative);
            let kind = match child.file_type() {
                Ok(t) if t.is_symlink() => Kind::Link,
                Ok(t) if t.is_dir() => Kind::Dir,
                _ => Kind::File,
            };
            if kind == Kind::Dir && (!excluded || ignore.has_exceptions()) {
                self.walk(&relative, ignore)?;
            }
            if !excluded {
                self.entries.insert(relative, kind);
            }
        }
        Ok(())
    }

    /// COPY `sources` to `dest` (resolved against WORKDIR; `written` as in the line).
    fn copy(
        &self,
        ins: &Instruction,
        sources: &[String],
        dest: &str,
        written: &str,
        root: &Path,
    ) -> Result<(), String> {
        let mut matched: Vec<String> = Vec::new();
        for source in sources {
            let cleaned = resolve("", source).trim_start_matches('/').to_string();
            if cleaned.contains(['*', '?', '[']) {
                let pattern = Pattern::new(&cleaned).map_err(|e| ins.fail(e))?;
                let before = matched.len();
                matched.extend(
                    self.entries
                        .keys()
                        .filter(|p| pattern.matches_with(p, MATCH))
                        .cloned(),
                );
                if matched.len() == before {
                    return Err(ins.fail(format!("no source files match {source}")));
                }
            } else if cleaned.is_empty() || self.entries.contains_key(&cleaned) {
                matched.push(cleaned);
            } else {
                return Err(ins.fail(format!("{source}: not found in the build context")));
            }
        }
        let into_dir = written.ends_with('/') || written == "." || written.ends_with("/.");
        if matched.len() > 1 && !into_dir {
            return Err(ins.fail("several sources need a destination ending in /"));
        }
        let host = |path: &str| root.join(path.trim_start_matches('/'));
        for source in matched {
            let kind = if source.is_empty() {
                Kind::Dir
            } else {
                self.entries[&source]
            };
            if kind == Kind::Dir {
                let prefix = if source.is_empty() {
                    String::new()
                } else {
                    format!("{source}/")
                };
                std::fs::create_dir_all(host(dest)).map_err(|e| ins.fail(e))?;
                for (path, kind) in self.entries.range(prefix.clone()..) {
                    let Some(inner) = path.strip_prefix(&prefix) else {
                        break;
                    };
                    self.place(ins, path, *kind, &host(&resolve(dest, inner)))?;
                }
            } else {
                let name = source.rsplit('/').next().unwrap();
                let target = if into_dir {
                    resolve(dest, name)
                } else {
                    dest.to_string()
                };
                self.place(ins, &source, kind, &host(&target))?;
            }
        }
        Ok(())
    }

    fn place(&self, ins: &Instruction, path: &str, kind: Kind, to: &Path) -> Result<(), String> {
        let from = self.root.join(path);
        let result = match kind {
            Kind::Dir => std::fs::create_dir_all(to),
            Kind::File => std::fs::create_dir_all(to.parent().unwrap())
                .and_then(|()| std::fs::copy(&from, to).map(|_| ())),
            Kind::Link => std::fs::create_dir_all(to.parent().unwrap())
                .and_then(|()| std::os::unix::fs::symlink(std::fs::read_link(&from)?, to)),
        };
        result.map_err(|e| ins.fail(format!("{path}: {e}")))
    }
}

fn dockerfile() -> String {
    std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap()
}

#[test]
fn the_build_stage_resolves_offline_and_installs_the_shipped_binaries() {
    let image = emulate(&dockerfile(), &repo_root(), "current").unwrap_or_else(|e| panic!("{e}"));
    // The chart and config/manager run the image as uid 65532 with no command.
    assert!(
        image.base.starts_with("gcr.io/distroless/") && image.base.ends_with(":nonroot"),
        "{}",
        image.base
    );
    assert_eq!(image.user.as_deref(), Some("65532:65532"));
    assert_eq!(image.cmd, ["run"]);
    assert_eq!(
        image
            .entrypoint
            .first()
            .and_then(|e| image.binaries.get(e))
            .map(String::as_str),
        Some("stellaops-operator"),
        "ENTRYPOINT {:?} is not the installed operator: {:?}",
        image.entrypoint,
        image.binaries
    );
    // Every binary of the shipped packages, in /usr/local/bin.
    let members = members(&repo_root()).unwrap();
    let shipped: BTreeMap<String, String> = [
        "stellaops-operator",
        "stellaops-workers",
        "kubectl-stellaops",
    ]
    .iter()
    .flat_map(|p| members[*p].bins.iter())
    .map(|bin| (format!("/usr/local/bin/{bin}"), bin.clone()))
    .collect();
    assert_eq!(image.binaries, shipped);
    // The builder's toolchain is the one the workspace asks for (`rust-version`).
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"'))
        .expect("the workspace sets rust-version");
    for builder in &image.builders {
        assert!(
            builder
                .strip_prefix("rust:")
                .is_some_and(|tag| tag == rust_version
                    || tag.starts_with(&format!("{rust_version}-"))
                    || tag.starts_with(&format!("{rust_version}."))),
            "build stage FROM {builder}, the workspace needs Rust {rust_version}"
        );
    }
    assert!(!image.builders.is_empty());
}

#[test]
fn dockerignore_is_read_as_docker_reads_it() {
    let scratch = Scratch::new("ignore");
    std::fs::write(
        scratch.0.join(".dockerignore"),
        "# comment\n/target/\n*.md\n!README.md\ndocs/**/*.png\n./.git\n",
    )
    .unwrap();
    let ignore = DockerIgnore::read(&scratch.0).unwrap();
    for (path, excluded) in [
        ("target", true),
        ("target/debug/stellaops-worker", true),
        ("CHANGELOG.md", true),
        ("README.md", false),
        // Patterns are anchored at the root: `*` stays within one directory.
        ("workers/CHANGELOG.md", false),
        ("docs/a/b/c.png", true),
        ("docs/c.png", true),
        (".git/HEAD", true),
        ("Cargo.toml", false),
    ] {
        assert_eq!(ignore.excluded(path), excluded, "{path}");
    }
    // The repository's own context: no build output, every member's sources.
    let context = Context::read(&repo_root()).unwrap();
    assert!(
        !context
            .entries
            .keys()
            .any(|p| p.starts_with("target/") || p.starts_with(".git/"))
    );
    for member in members(&repo_root()).unwrap().values() {
        assert!(
            context
                .entries
                .contains_key(&format!("{}/Cargo.toml", member.dir))
        );
    }
}

/// Today's Dockerfile with its `COPY . .` preceded by per-crate manifest COPYs and a
/// `cargo fetch`, the layer-caching layout this Dockerfile had until it broke.
fn with_manifest_layer(members: &[&str]) -> String {
    let copies: String = members
        .iter()
        .map(|m| format!("COPY {m}/Cargo.toml {m}/\n"))
        .collect();
    let text = dockerfile();
    assert!(
        text.contains("\nCOPY . .\n"),
        "the negative cases edit `COPY . .`"
    );
    text.replacen(
        "\nCOPY . .\n",
        &format!("\nCOPY Cargo.toml Cargo.lock ./\n{copies}RUN cargo fetch --locked\nCOPY . .\n"),
        1,
    )
}

#[test]
fn a_manifest_layer_breaks_the_build() {
    // The seven manifests the Dockerfile copied: the other members are missing.
    let seven = [
        "crds",
        "controllers",
        "workers",
        "admission-webhook",
        "operator",
        "store",
        "testing",
    ];
    let error = emulate(&with_manifest_layer(&seven), &repo_root(), "seven").unwrap_err();
    eprintln!("with seven manifests: {error}");
    assert!(
        error.contains("RUN cargo fetch --locked") && error.contains("failed to load manifest"),
        "{error}"
    );
    // Every member's manifest fails too: cargo wants each crate's sources.
    let members = members(&repo_root()).unwrap();
    let all: Vec<&str> = members.values().map(|m| m.dir.as_str()).collect();
    assert!(all.len() > seven.len() && all.iter().all(|d| !d.is_empty()));
    let error = emulate(&with_manifest_layer(&all), &repo_root(), "all").unwrap_err();
    eprintln!("with every manifest: {error}");
    assert!(error.contains("no targets specified"), "{error}");
}

#[test]
fn hadolint_finds_no_warning() {
    let Some(hadolint) = tool("STELLAOPS_TEST_HADOLINT", "hadolint") else {
        return;
    };
    let lint = |path: &Path| {
        Command::new(&hadolint)
            .args(["--no-color", "--failure-threshold", "warning"])
            .arg(path)
            .current_dir(repo_root())
            .output()
            .expect("run hadolint")
    };
    // A file with known faults first, so a linter that checks nothing cannot pass.
    let scratch = Scratch::new("hadolint");
    let bad = scratch.0.join("Dockerfile");
    std::fs::write(&bad, "FROM debian\nRUN apt-get install curl\n").unwrap();
    let out = lint(&bad);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && report.contains("DL3006"),
        "{report}"
    );

    let out = lint(&repo_root().join("Dockerfile"));
    assert!(
        out.status.success(),
        "hadolint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A container one of our workloads runs.
#[derive(Debug)]
struct Workload {
    source: String,
    image: String,
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
}

fn strings(value: &Value) -> Option<Vec<String>> {
    value.as_array().map(|a| {
        a.iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect()
    })
}

/// Every container (init containers too) of a Pod or of a workload's pod template.
fn workloads(source: &str, object: &Value) -> Vec<Workload> {
    let spec = &object["spec"];
    let pod = match object["kind"].as_str().unwrap_or_default() {
        "Pod" => spec,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            &spec["template"]["spec"]
        }
        "CronJob" => &spec["jobTemplate"]["spec"]["template"]["spec"],
        _ => return Vec::new(),
    };
    let name = object["metadata"]["name"].as_str().unwrap_or("?");
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| pod[list].as_array().into_iter().flatten())
        .map(|c| Workload {
            source: format!(
                "{source}: {} {name} container {}",
                object["kind"].as_str().unwrap_or("?"),
                c["name"].as_str().unwrap_or("?")
            ),
            image: c["image"].as_str().unwrap_or_default().to_string(),
            command: strings(&c["command"]),
            args: strings(&c["args"]),
        })
        .collect()
}

/// A built binary of ours, to run: the operator's from cargo, the others from the target
/// directory the test runs from (built by `cargo test --workspace`).
fn host_binary(name: &str) -> Option<PathBuf> {
    if name == "stellaops-operator" {
        return Some(PathBuf::from(env!("CARGO_BIN_EXE_stellaops-operator")));
    }
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent()?.parent()?.join(name);
    path.is_file().then_some(path)
}

/// `BINARY PATH... --help` of the real binary (remembered), which must succeed.
fn help_text(
    helps: &mut BTreeMap<(String, Vec<String>), String>,
    binary: &str,
    host: &Path,
    path: &[String],
    source: &str,
) -> String {
    helps
        .entry((binary.to_string(), path.to_vec()))
        .or_insert_with(|| {
            let out = Command::new(host)
                .args(path)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{source}: `{binary} {} --help` fails: {}",
                path.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        })
        .clone()
}

/// The subcommands a clap `--help` text lists under `Commands:`.
fn subcommands(help: &str) -> BTreeSet<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with(' '))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|command| *command != "help")
        .map(str::to_string)
        .collect()
}

/// The `--flags` a `--help` text documents.
fn documented_flags(help: &str) -> BTreeSet<String> {
    help.match_indices("--")
        .map(|(i, _)| {
            let name: String = help[i + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            format!("--{name}")
        })
        .filter(|f| f.len() > 2)
        .collect()
}

#[test]
fn workloads_start_binaries_the_image_installs_with_flags_they_accept() {
    let image = emulate(&dockerfile(), &repo_root(), "workloads").unwrap_or_else(|e| panic!("{e}"));
    let config = Config::default();

    // What the controllers create for every sample, as `preview` plans it.
    let samples = repo_root().join("config/samples");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = stellaops_operator::preview::run(&[samples], &config, &mut out, &mut err)
        .expect("preview the samples");
    assert!(
        summary.invalid == 0 && summary.valid > 0,
        "{}",
        String::from_utf8_lossy(&err)
    );
    let planned = stellaops_operator::preview::documents(&String::from_utf8(out).unwrap())
        .expect("preview prints YAML");
    let mut all: Vec<Workload> = planned
        .iter()
        .flat_map(|(_, object)| workloads("config/samples", object))
        .collect();
    // Platform rollouts run the release's own images (migrations): not this image's binaries.
    let (ours, theirs): (Vec<Workload>, Vec<Workload>) =
        all.drain(..).partition(|w| w.image == config.worker_image);
    for other in &theirs {
        eprintln!("not our image: {} runs {}", other.source, other.image);
    }
    let mut all = ours;
    assert!(!all.is_empty(), "the samples plan no workload of our image");
    // The operator's own Deployment, from both install paths.
    if let Some(kubectl) = tool("STELLAOPS_TEST_KUBECTL", "kubectl") {
        let objects = render(&kubectl, &["kustomize", "config/default"]);
        all.extend(workloads("config/default", find(&objects, "Deployment")));
    }
    if let Some(helm) = tool("STELLAOPS_TEST_HELM", "helm") {
        let objects = render(
            &helm,
            &["template", "stellaops", "charts/stellaops-operator"],
        );
        all.extend(workloads(
            "charts/stellaops-operator",
            find(&objects, "Deployment"),
        ));
    }

    let mut helps: BTreeMap<(String, Vec<String>), String> = BTreeMap::new();
    let mut missing = BTreeSet::new();
    for workload in &all {
        // Kubernetes: `command` replaces the ENTRYPOINT (and drops CMD), `args` replaces CMD.
        let (executable, args) = match &workload.command {
            Some(command) => (
                command[0].clone(),
                [&command[1..], workload.args.as_deref().unwrap_or_default()].concat(),
            ),
            None => (
                image.entrypoint[0].clone(),
                [
                    &image.entrypoint[1..],
                    workload.args.as_deref().unwrap_or(&image.cmd),
                ]
                .concat(),
            ),
        };
        // A bare name is looked up in the image's PATH: distroless sets one with /usr/local/bin.
        let path = if executable.starts_with('/') {
            executable.clone()
        } else {
            format!("/usr/local/bin/{executable}")
        };
        let binary = image.binaries.get(&path).unwrap_or_else(|| {
            panic!(
                "{} starts {executable}, which the image does not install ({:?})",
                workload.source, image.binaries
            )
        });
        let Some(host) = host_binary(binary) else {
            missing.insert(binary.clone());
            continue;
        };
        // The leading words that name subcommands, each checked against its parent's help.
        let mut path: Vec<String> = Vec::new();
        let mut help = help_text(&mut helps, binary, &host, &path, &workload.source);
        for word in args.iter().take_while(|a| !a.starts_with('-')) {
            if !subcommands(&help).contains(word) {
                break;
            }
            path.push(word.clone());
            help = help_text(&mut helps, binary, &host, &path, &workload.source);
        }
        let shown = [binary.as_str()]
            .into_iter()
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            subcommands(&help).is_empty(),
            "{}: `{shown}` needs one of the subcommands {:?}, the workload passes {args:?}",
            workload.source,
            subcommands(&help)
        );
        let documented = documented_flags(&help);
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            let name = flag.split('=').next().unwrap();
            assert!(
                documented.contains(name),
                "{}: `{shown} --help` does not document {name}",
                workload.source,
            );
        }
    }
    for binary in &missing {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{binary} is not built next to the tests: run `cargo test --workspace`");
        }
        eprintln!(
            "skipped: {binary} is not built next to the tests (cargo test --workspace builds it)"
        );
    }
    eprintln!(
        "{} containers checked; commands run: {:?}",
        all.len(),
        helps.keys().collect::<Vec<_>>()
    );
}
