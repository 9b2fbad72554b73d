//! The Usage view's reading of uWSGI's options against Debian's uWSGI itself: for each way
//! of giving uWSGI its application (the environment, the command line, ini, JSON, YAML and
//! XML files, and which of them overrides which; files naming files, sections, placeholders
//! and the environment's variables in values), the real `uwsgi_python3` is started on an
//! application tree and reports the file of the module it imported; the scanner's trace of
//! an image holding the same tree (and the same binary) must end at that file.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use stellaops_scanner::analyze::analyse_tar;
use stellaops_scanner::usage::{RunConfig, Vfs, trace};

/// A WSGI module that says which file it is when uWSGI imports it.
const REPORTING_MODULE: &str = "import os, sys\n\
    sys.stderr.write('IMPORTED ' + os.path.abspath(__file__) + '\\n')\n\
    sys.stderr.flush()\n\
    def application(environ, start_response):\n    return []\n";

/// The application tree, at paths relative to the image's root (and uWSGI's working
/// directory): the application `mysite.wsgi`, a `decoy` module that only overridden or
/// foreign options name, and one configuration file in each of uWSGI's formats.
fn application_tree() -> Vec<(&'static str, String)> {
    vec![
        ("srv/app/mysite/__init__.py", String::new()),
        ("srv/app/mysite/wsgi.py", REPORTING_MODULE.into()),
        ("srv/app/decoy.py", REPORTING_MODULE.into()),
        (
            "srv/app/uwsgi.ini",
            "[uwsgi]\n; the application\nchdir = srv/app\nmodule = mysite.wsgi:application\n\
             [other]\nmodule = decoy\n"
                .into(),
        ),
        (
            "srv/app/uwsgi.json",
            r#"{"other": {"module": "decoy"},
                "uwsgi": {"chdir": "srv/app", "module": ["mysite.wsgi:application"], "need-app": true}}"#
                .into(),
        ),
        (
            "srv/app/uwsgi.yaml",
            "# deployment\nother:\n  module: decoy\nuwsgi:\n  chdir: srv/app\n  \
             - module: 'mysite.wsgi:application'\n  need-app: 1\nlast:\n  module: decoy\n"
                .into(),
        ),
        (
            "srv/app/uwsgi.xml",
            "<?xml version=\"1.0\"?>\n<uwsgi>\n  <!-- <module>decoy</module> -->\n  \
             <chdir>srv/app</chdir>\n  <wsgi-file>mysite/wsgi.py</wsgi-file>\n  <need-app/>\n</uwsgi>\n"
                .into(),
        ),
        // Placeholders: each `%(key)` is the first `key`'s value however late it is
        // defined, with the references it brings replaced where they do not start the
        // value; `%d` the file's directory.
        (
            "srv/app/placeholders.ini",
            "[uwsgi]\nmodule = %(project).%(submodule):application\nchdir = %d\n\
             submodule = %(suffix)\nsuffix = wsgi\nproject = mysite\nproject = decoy\n"
                .into(),
        ),
        // Files naming files: by their own directory (`%d`) and relative to uWSGI's working
        // directory; a section other than `uwsgi`.
        (
            "srv/app/deploy.ini",
            "[uwsgi]\nini = %dbase.ini\nini = srv/app/more.ini\nmodule = %(project).%(submodule)\n".into(),
        ),
        (
            "srv/app/base.ini",
            "[uwsgi]\nchdir = %d\nproject = mysite\n[decoy]\nchdir = %d\nmodule = decoy\n".into(),
        ),
        ("srv/app/more.ini", "[uwsgi]\nsubmodule = wsgi\n".into()),
        // The environment's variables in values.
        (
            "srv/app/uwsgi-env.json",
            r#"{"uwsgi": {"chdir": "%d", "wsgi-file": "$(APP_FILE)"}}"#.into(),
        ),
        // A configuration file whose name does not say it is uWSGI's: kept by its contents.
        (
            "srv/app/deploy/site.yaml",
            "uwsgi:\n  chdir: %d..\n  module: mysite.wsgi\n".into(),
        ),
        // XML: the first `<uwsgi>` element wherever it is, or the one `FILE:id` names.
        (
            "srv/app/uwsgi-sections.xml",
            "<config>\n  <uwsgi id=\"prod\"><chdir>%d</chdir><module>decoy</module></uwsgi>\n  \
             <uwsgi id=\"dev\"><chdir>%d</chdir><module>mysite.wsgi</module></uwsgi>\n</config>\n"
                .into(),
        ),
    ]
}

/// Starts the real uWSGI in `root` with `args` and only `env` (and PATH) set, and returns
/// the image path of the module file it imported (it must import one within 20 s).
fn real_uwsgi_imports(uwsgi: &str, root: &Path, args: &[&str], env: &[&str]) -> String {
    let mut command = Command::new(uwsgi);
    // A socket of its own on a free port, so the server starts; no master process, so
    // killing it leaves nothing behind.
    command
        .args(["--http-socket", "127.0.0.1:0"])
        .args(args)
        .current_dir(root)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for pair in env {
        let (name, value) = pair.split_once('=').expect("NAME=value");
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start uwsgi");
    let stderr = child.stderr.take().expect("piped");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let imported = loop {
        match received.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => match line.strip_prefix("IMPORTED ") {
                Some(file) => break Some(file.to_string()),
                None => log.push(line),
            },
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let imported = imported.unwrap_or_else(|| {
        panic!(
            "uwsgi {args:?} with {env:?} imported no module:\n{}",
            log.join("\n")
        )
    });
    let root = root.canonicalize().unwrap();
    format!(
        "/{}",
        Path::new(&imported)
            .strip_prefix(&root)
            .unwrap_or_else(|_| panic!("{imported} is outside {}", root.display()))
            .display()
    )
}

#[test]
fn the_usage_view_finds_the_application_debians_uwsgi_imports() {
    let Some(uwsgi) = stellaops_testing::service("STELLAOPS_TEST_UWSGI") else {
        return;
    };
    let root = stellaops_testing::scratch_dir("uwsgi");
    for (path, text) in application_tree() {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    // The image holds the same tree and Debian's binary itself.
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::copy(&uwsgi, root.join("usr/bin/uwsgi_python3")).unwrap();
    let fragment = analyse_tar(&stellaops_testing::oci::tar_dir(&root)[..]).unwrap();
    let vfs = Vfs::merge([&fragment]);

    let cases: &[(&[&str], &[&str])] = &[
        (&["--ini", "srv/app/uwsgi.ini"], &[]),
        (&["--json", "srv/app/uwsgi.json"], &[]),
        (&["-j", "srv/app/uwsgi.json"], &[]),
        (&["--yaml=srv/app/uwsgi.yaml"], &[]),
        (&["-y", "srv/app/uwsgi.yaml"], &[]),
        (&["--xml", "srv/app/uwsgi.xml"], &[]),
        // A bare file: its extension says its format.
        (&["srv/app/uwsgi.xml"], &[]),
        (&["srv/app/uwsgi.yaml"], &[]),
        (&["srv/app/uwsgi.ini"], &[]),
        // Options in the environment, a file named there, and what overrides what: the
        // command line and files override the environment.
        (&[], &["UWSGI_CHDIR=srv/app", "UWSGI_MODULE=mysite.wsgi"]),
        (&[], &["UWSGI_YAML=srv/app/uwsgi.yaml"]),
        (
            &[],
            &["UWSGI_CHDIR=srv/app", "UWSGI_WSGI_FILE=mysite/wsgi.py"],
        ),
        (
            &["--module", "decoy"],
            &["UWSGI_CHDIR=srv/app", "UWSGI_MODULE=mysite.wsgi"],
        ),
        (&["--ini", "srv/app/uwsgi.ini"], &["UWSGI_MODULE=decoy"]),
        (&["--chdir", "srv/app", "-w", "decoy"], &[]),
        // Placeholders, files naming files, sections, the environment's variables.
        (&["--ini", "srv/app/placeholders.ini"], &[]),
        (&["--ini", "srv/app/deploy.ini"], &[]),
        (&["--ini", "srv/app/base.ini:decoy"], &[]),
        (
            &["--json", "srv/app/uwsgi-env.json"],
            &["APP_FILE=mysite/wsgi.py"],
        ),
        (&["--yaml", "srv/app/deploy/site.yaml"], &[]),
        (&["--xml", "srv/app/uwsgi-sections.xml"], &[]),
        (&["--xml", "srv/app/uwsgi-sections.xml:dev"], &[]),
        (
            &[
                "--set-ph",
                "project=mysite",
                "--chdir",
                "$(APP_DIR)",
                "--module",
                "%(project).wsgi",
            ],
            &["APP_DIR=srv/app"],
        ),
    ];
    let mut imported = std::collections::BTreeSet::new();
    for (args, env) in cases {
        let real = real_uwsgi_imports(&uwsgi, &root, args, env);
        let mut entrypoint = vec!["uwsgi_python3".to_string()];
        entrypoint.extend(args.iter().map(|a| a.to_string()));
        let config = RunConfig {
            entrypoint,
            env: std::iter::once("PATH=/usr/bin:/bin")
                .chain(env.iter().copied())
                .map(str::to_string)
                .collect(),
            working_dir: "/".into(),
            ..RunConfig::default()
        };
        let t = trace(&vfs, &config);
        assert_eq!(
            t.terminal().map(|step| step.path.as_str()),
            Some(real.as_str()),
            "uwsgi {args:?} with {env:?}: {t:#?}"
        );
        imported.insert(real);
    }
    // The cases tell the two modules apart: uWSGI imported each in some of them.
    assert_eq!(
        imported.into_iter().collect::<Vec<_>>(),
        ["/srv/app/decoy.py", "/srv/app/mysite/wsgi.py"]
    );
    std::fs::remove_dir_all(&root).unwrap();
}
