//! The EntryTrace shell tokenizer and expansion on entrypoint scripts from images, and
//! EntryTrace itself over a file system holding the input as its entrypoint script, and
//! as Tomcat's `server.xml`, a context file (their attribute reading) and
//! `catalina.properties` (its class loaders), as a Jetty module and start file, and as uWSGI's
//! ini, JSON, YAML and XML files (their sections, the files they name, magic variables,
//! placeholders and `$(…)` references) and options in the environment; the wrappers
//! `timeout`, `flock`, `runuser` and `setpriv` are there for the script to run.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use stellaops_scanner::analyze::Node;
use stellaops_scanner::shell::{Outside, Vars, expand, expand_with, parse};
use stellaops_scanner::usage::{RunConfig, Vfs, closure, trace};

/// Answers some of what substitutions ask, not others.
struct FuzzImage;

impl Outside for FuzzImage {
    fn command_v(&self, name: &str) -> Option<String> {
        (!name.len().is_multiple_of(3)).then(|| format!("/bin/{name}"))
    }
    fn cwd(&self) -> Option<String> {
        Some("/srv".into())
    }
    fn directory(&self, dir: &str, physical: bool) -> Option<Option<String>> {
        (dir.len().is_multiple_of(2)).then(|| (!physical).then(|| format!("/srv/{dir}")))
    }
    fn canonical(&self, path: &str) -> Option<String> {
        (!path.len().is_multiple_of(2)).then(|| format!("/real/{path}"))
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(commands) = parse(&text) {
        let vars = Vars {
            named: BTreeMap::from([("A".to_string(), "x y".to_string())]),
            positional: vec!["1".into(), "two words".into()],
            unknown: ["U".to_string()].into(),
            funcname: Some(vec!["f".into(), "main".into()]),
            zero: Some("/usr/local/bin/entrypoint.sh".into()),
            bash_source: Some("/usr/local/bin/entrypoint.sh".into()),
            candidates: BTreeMap::from([("A".to_string(), vec![Some("other".into()), None])]),
            positional_candidates: vec![vec!["self".into()]],
        };
        for c in &commands {
            for w in &c.words {
                let _ = expand(w, &vars);
                let _ = expand_with(w, &vars, &FuzzImage);
                let _ = w.assignment();
            }
        }
    }
    // The same text as an entrypoint script that may call itself, run by sh and by bash
    // (which knows FUNCNAME and BASH_SOURCE).
    let vfs = Vfs::from_nodes(BTreeMap::from([
        (
            "entrypoint.sh".to_string(),
            Node::File {
                exec: true,
                elf: None,
                text: Some(format!("#!/bin/sh\n{text}")),
            },
        ),
        (
            "bash-entrypoint.sh".to_string(),
            Node::File {
                exec: true,
                elf: None,
                text: Some(format!("#!/bin/bash\n{text}")),
            },
        ),
        (
            "bin/sh".to_string(),
            Node::File {
                exec: true,
                elf: None,
                text: None,
            },
        ),
        (
            "bin/bash".to_string(),
            Node::File {
                exec: true,
                elf: None,
                text: None,
            },
        ),
        // Programs that run a command from their arguments (their options parsed).
        (
            "bin/timeout".to_string(),
            Node::File {
                exec: true,
                elf: None,
                text: None,
            },
        ),
        (
            "bin/flock".to_string(),
            Node::Symlink {
                target: "/bin/timeout".into(),
            },
        ),
        (
            "bin/runuser".to_string(),
            Node::Symlink {
                target: "/bin/timeout".into(),
            },
        ),
        (
            "bin/setpriv".to_string(),
            Node::Symlink {
                target: "/bin/timeout".into(),
            },
        ),
        (
            "bin/self".to_string(),
            Node::Symlink {
                target: "/entrypoint.sh".into(),
            },
        ),
    ]));
    let config = RunConfig {
        entrypoint: vec!["/entrypoint.sh".into()],
        cmd: vec!["self".into()],
        env: vec!["PATH=/bin".into()],
        working_dir: "/".into(),
        volumes: vec!["/data".into()],
    };
    let t = trace(&vfs, &config);
    let _ = closure(&vfs, &t, &config.env);
    let _ = trace(
        &vfs,
        &RunConfig {
            entrypoint: vec!["/bash-entrypoint.sh".into()],
            ..config.clone()
        },
    );
    let xml = |text: &str| Node::File {
        exec: false,
        elf: None,
        text: Some(text.to_string()),
    };
    let tomcat = Vfs::from_nodes(BTreeMap::from([
        (
            "tomcat/bin/catalina.sh".to_string(),
            Node::File {
                exec: true,
                elf: None,
                text: Some("#!/bin/sh\n".into()),
            },
        ),
        ("tomcat/conf/server.xml".to_string(), xml(&text)),
        ("tomcat/conf/catalina.properties".to_string(), xml(&text)),
        (
            "tomcat/conf/Catalina/localhost/app.xml".to_string(),
            xml(&text),
        ),
        (
            "bin/uwsgi".to_string(),
            Node::File {
                exec: true,
                elf: None,
                text: None,
            },
        ),
        (
            "bin/java".to_string(),
            Node::File {
                exec: true,
                elf: None,
                text: None,
            },
        ),
        ("jetty/start.jar".to_string(), xml("")),
        ("jetty/modules/fuzz.mod".to_string(), xml(&text)),
        ("jetty/base/start.d/fuzz.ini".to_string(), xml(&text)),
        ("app/uwsgi.ini".to_string(), xml(&text)),
        ("app/uwsgi.json".to_string(), xml(&text)),
        ("app/uwsgi.yaml".to_string(), xml(&text)),
        ("app/uwsgi.xml".to_string(), xml(&text)),
    ]));
    for format in ["ini", "json", "yaml", "xml"] {
        let _ = trace(
            &tomcat,
            &RunConfig {
                entrypoint: vec![
                    "/bin/uwsgi".into(),
                    format!("--{format}"),
                    format!("/app/uwsgi.{format}"),
                ],
                working_dir: "/".into(),
                ..RunConfig::default()
            },
        );
    }
    // The text as a Jetty module and a start file of its base.
    let _ = trace(
        &tomcat,
        &RunConfig {
            entrypoint: vec![
                "/bin/java".into(),
                "-jar".into(),
                "/jetty/start.jar".into(),
                "jetty.base=/jetty/base".into(),
                "--module=fuzz".into(),
            ],
            working_dir: "/".into(),
            ..RunConfig::default()
        },
    );
    // The text as the value of uWSGI options set in the environment.
    let _ = trace(
        &tomcat,
        &RunConfig {
            entrypoint: vec!["/bin/uwsgi".into(), "/app/uwsgi.yaml".into()],
            env: vec![
                format!("UWSGI_MODULE={text}"),
                format!("UWSGI_CHDIR={text}"),
                // For `$(TEXT)` in the files' values.
                format!("TEXT={text}"),
                // A file, maybe with a section, that the text names.
                format!("UWSGI_INI={text}"),
            ],
            working_dir: "/".into(),
            ..RunConfig::default()
        },
    );
    let _ = trace(
        &tomcat,
        &RunConfig {
            entrypoint: vec!["/tomcat/bin/catalina.sh".into(), "run".into()],
            // `${text}` in the class loaders is the text.
            env: vec![
                "CATALINA_HOME=/tomcat".into(),
                format!("CATALINA_OPTS=-Dtext={text}"),
            ],
            working_dir: "/".into(),
            ..RunConfig::default()
        },
    );
});
