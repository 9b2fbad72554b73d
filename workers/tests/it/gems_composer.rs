//! RubyGems and Composer (Packagist): the analyzers' readings of installed gems and
//! Composer's `installed.json`, and the two version orderings, each checked against the
//! package manager's own code (Ruby's `Gem::Version` and `Gem::Specification`, Composer's
//! `VersionParser` and `composer show`/`composer licenses`) on inputs those tools wrote.

use std::cmp::Ordering;
use std::path::Path;
use std::process::Command;

use stellaops_scanner::versions::Scheme;

/// A small deterministic generator (xorshift), so every run compares the same versions.
struct Draw(u64);

impl Draw {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.next(from.len())]
    }
}

/// Versions RubyGems accepts, with the shapes that decide its ordering: trailing zeros,
/// letters (pre-releases) in and after the release part, `-` (read as `.pre.`), case.
fn gem_versions() -> Vec<String> {
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    let numbers = ["0", "1", "2", "3", "10", "01", "00", "11", "9"];
    let segments = [
        "0", "1", "2", "10", "a", "b", "pre", "rc", "rc1", "rc2", "beta", "beta2", "alpha", "RC1",
        "Z", "z", "1a", "a1", "0", "0",
    ];
    let mut out: Vec<String> = [
        "1",
        "1.0",
        "1.0.0",
        "1.a",
        "1.0.a",
        "1.0.0.pre",
        "1.0.0-rc1",
        "1.0.0.rc1",
        "1.0.0.rc.1",
        "7.1.0.beta1",
        "7.0.4.3",
        "2.2.22",
        "2.2.3",
        "0",
        "0.0.1",
        "1.0.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    while out.len() < 220 {
        let mut v = draw.pick(&numbers).to_string();
        for _ in 0..draw.next(5) {
            v.push('.');
            v.push_str(draw.pick(&segments));
        }
        if draw.next(6) == 0 {
            v.push('-');
            v.push_str(draw.pick(&["rc1", "beta", "1", "pre.2", "a-b"]));
        }
        out.push(v);
    }
    out
}

/// Versions in the forms Packagist packages are released under: `v`, up to four numbers,
/// stabilities in both cases and short forms with and without numbers and separators,
/// `-dev`, dates.
fn composer_versions() -> Vec<String> {
    let mut draw = Draw(0x2545_f491_4f6c_dd1d);
    let numbers = ["0", "1", "2", "10", "01", "3"];
    let modifiers = [
        "",
        "",
        "",
        "-beta",
        "-beta1",
        "-beta2",
        "-beta10",
        "-b2",
        "beta3",
        "-alpha",
        "-alpha.1",
        "-a1",
        "-RC1",
        "-rc1",
        "RC2",
        "-rc.2",
        "-patch1",
        "-pl2",
        "p1",
        "-p",
        ".patch1",
        "_rc1",
        "-stable",
        "-STABLE",
        "-stable-dev",
        "-dev",
        "-beta1-dev",
        "-RC1.2",
        "-beta.1.2",
        "-Beta1",
        "-ALPHA2",
    ];
    let mut out: Vec<String> = [
        "1.0.0",
        "v1.0.0",
        "1.0",
        "1",
        "1.0.0.0",
        "1.0.0-beta9",
        "1.0.0-beta10",
        "1.0.0-RC1",
        "1.0.0-patch1",
        "2.0.0p1",
        "1.0.x-dev",
        "dev-main",
        "20231201",
        "2023.12.01",
        "2023-12-01",
        "2023.12.01.1",
        "5.4.46",
        "v5.4.45",
        "1.0.0+build.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    while out.len() < 220 {
        let mut v = if draw.next(8) == 0 { "v" } else { "" }.to_string();
        v.push_str(draw.pick(&numbers));
        for _ in 0..draw.next(4) {
            v.push('.');
            v.push_str(draw.pick(&numbers));
        }
        v.push_str(draw.pick(&modifiers));
        out.push(v);
    }
    out
}

/// Runs `program` with `script` on standard input (the versions, one per line) and reads
/// back one line per pair of versions: `-1`, `0`, `1`, or `skip` for a pair the tool
/// does not take as versions.
fn reference_order(program: &str, args: &[&str], versions: &[String]) -> Vec<Option<Ordering>> {
    let text = piped(program, args, &versions.join("\n"));
    let answers: Vec<Option<Ordering>> = text
        .lines()
        .map(|line| match line {
            "-1" => Some(Ordering::Less),
            "0" => Some(Ordering::Equal),
            "1" => Some(Ordering::Greater),
            "skip" => None,
            other => panic!("{program} said {other:?}"),
        })
        .collect();
    assert_eq!(answers.len(), versions.len() * versions.len());
    answers
}

/// What `program args…` prints when fed `input` on standard input; fails the test when it
/// fails.
fn piped(program: &str, args: &[&str], input: &str) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{program}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Every pair's order by `scheme` against the reference's; returns how many pairs were
/// compared.
fn agree(scheme: Scheme, versions: &[String], reference: &[Option<Ordering>]) -> usize {
    let mut compared = 0;
    let mut wrong = Vec::new();
    for (i, a) in versions.iter().enumerate() {
        for (j, b) in versions.iter().enumerate() {
            let Some(want) = reference[i * versions.len() + j] else {
                continue;
            };
            compared += 1;
            let got = scheme.compare(a, b);
            if got != want {
                wrong.push(format!("{a} vs {b}: ours {got:?}, theirs {want:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {compared} pairs differ:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(40)].join("\n")
    );
    compared
}

#[test]
fn gem_versions_order_as_rubygems_orders_them() {
    let Some(ruby) = stellaops_testing::service("STELLAOPS_TEST_RUBY") else {
        return;
    };
    let versions = gem_versions();
    let script = "vs = STDIN.read.split(\"\\n\", -1)\n\
        ok = vs.map { |v| Gem::Version.correct?(v) }\n\
        parsed = vs.each_with_index.map { |v, i| ok[i] ? Gem::Version.new(v) : nil }\n\
        parsed.each { |a| parsed.each { |b| puts((a && b) ? (a <=> b).to_s : 'skip') } }";
    let reference = reference_order(&ruby, &["-e", script], &versions);
    let compared = agree(Scheme::Gem, &versions, &reference);
    // Nearly all generated versions are valid gem versions.
    assert!(compared > 40_000, "only {compared} pairs compared");
}

#[test]
fn composer_versions_order_as_composer_orders_them() {
    let Some(composer) = stellaops_testing::service("STELLAOPS_TEST_COMPOSER") else {
        return;
    };
    // Composer's own semver library, as Debian installs it beside `composer`.
    let semver = Path::new(&composer)
        .parent()
        .and_then(Path::parent)
        .map(|prefix| prefix.join("share/php/Composer/Semver/autoload.php"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "/usr/share/php/Composer/Semver/autoload.php".into());
    let versions = composer_versions();
    let script = format!(
        "require '{}'; $p = new Composer\\Semver\\VersionParser();\n\
         $n = array_map(function ($v) use ($p) {{ try {{ $x = $p->normalize($v); \
             return strpos($x, 'dev-') === 0 ? null : $x; }} catch (Exception $e) {{ return null; }} }},\n\
             explode(\"\\n\", stream_get_contents(STDIN)));\n\
         foreach ($n as $a) {{ foreach ($n as $b) {{ \
             echo ($a === null || $b === null) ? 'skip' : version_compare($a, $b), \"\\n\"; }} }}",
        semver.display()
    );
    let reference = reference_order("php", &["-r", &script], &versions);
    let compared = agree(Scheme::Composer, &versions, &reference);
    assert!(compared > 30_000, "only {compared} pairs compared");
}

/// Runs `program` and returns its standard output, failing the test on an error.
fn run(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The one package the analyzer found in the layer file at `path`.
fn found<'a>(
    fragment: &'a stellaops_scanner::analyze::Fragment,
    path: &str,
) -> &'a stellaops_scanner::analyze::FoundPackage {
    match fragment.files.get(path).map(Vec::as_slice) {
        Some([one]) => one,
        other => panic!("{path}: {other:?}"),
    }
}

/// The license ids of a declared expression, sorted.
fn ids(expression: &str) -> Vec<String> {
    stellaops_policy::license::Declared::of(expression)
        .map(|d| d.ids)
        .unwrap_or_default()
}

#[test]
fn installed_gems_read_as_rubygems_reads_them() {
    let Some(ruby) = stellaops_testing::service("STELLAOPS_TEST_RUBY") else {
        return;
    };
    let gem = Path::new(&ruby).with_file_name("gem");
    let root = std::env::temp_dir().join(format!("stellaops-gems-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let home = root.join("home");
    // Gems built and installed the real way (offline, from local .gem files): licenses as
    // a choice of ids, as a name, none; a pre-release; a gem built for this platform.
    let sources = [
        (
            "acme-widget",
            "1.4.2",
            "s.licenses = [\"MIT\", \"Ruby\"]",
            "",
        ),
        (
            "acme-native",
            "2.0.0.rc1",
            "s.license = \"BSD-2-Clause\"",
            "s.platform = Gem::Platform.local",
        ),
        ("acme-named", "0.1.0", "s.license = \"Apache 2.0\"", ""),
        ("acme-plain", "3.0", "", ""),
        (
            "acme-2fa-1",
            "1.0.0",
            "s.licenses = [\"GPL-3.0-or-later\"]",
            "",
        ),
    ];
    for (name, version, license, platform) in sources {
        let dir = root.join("src").join(name);
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::write(dir.join("lib").join(format!("{name}.rb")), "").unwrap();
        std::fs::write(
            dir.join(format!("{name}.gemspec")),
            format!(
                "Gem::Specification.new do |s|\n  s.name = {name:?}\n  s.version = {version:?}\n  \
                 s.summary = \"test gem\"\n  s.authors = [\"Stella Ops\"]\n  \
                 s.files = [\"lib/{name}.rb\"]\n  {license}\n  {platform}\nend\n"
            ),
        )
        .unwrap();
        run(Command::new(&gem)
            .args(["build", &format!("{name}.gemspec")])
            .current_dir(&dir)
            .env("HOME", &root));
        let built = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "gem"))
            .unwrap();
        run(Command::new(&gem)
            .args([
                "install",
                "--local",
                "--ignore-dependencies",
                "--no-document",
                "--install-dir",
            ])
            .arg(&home)
            .arg(&built)
            .env("HOME", &root));
    }
    // Their installed specifications in a Ruby image's gem home, and every gem Ruby itself
    // installed on this machine (its default and bundled gems, Debian's packaged ones) where
    // RubyGems keeps them.
    let mut layer_files: Vec<(String, std::path::PathBuf)> = Vec::new();
    let gem_path = run(Command::new(&ruby).args(["-e", "puts Gem.path"]));
    let mut dirs: Vec<(String, std::path::PathBuf)> =
        vec![("usr/local/bundle".to_string(), home.clone())];
    for dir in gem_path.lines() {
        dirs.push((dir.trim_start_matches('/').to_string(), dir.into()));
    }
    for (in_layer, dir) in &dirs {
        for sub in ["specifications", "specifications/default"] {
            let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "gemspec") {
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    layer_files.push((format!("{in_layer}/{sub}/{name}"), path));
                }
            }
        }
    }
    layer_files.sort();
    let contents: Vec<(String, Vec<u8>)> = layer_files
        .iter()
        .map(|(in_layer, path)| (in_layer.clone(), std::fs::read(path).unwrap()))
        .collect();
    let source = std::fs::read(root.join("src/acme-widget/acme-widget.gemspec")).unwrap();
    let mut entries: Vec<(&str, &[u8])> = contents
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    // A gem's source checkout is no installed gem.
    entries.push(("app/acme-widget.gemspec", &source));
    let layer = stellaops_testing::oci::tar_of(&entries);
    let fragment = stellaops_scanner::analyze::analyse_tar(layer.as_slice()).unwrap();
    assert!(!fragment.files.contains_key("app/acme-widget.gemspec"));

    // RubyGems' own reading of each specification.
    let script = "require 'json'\n\
        STDIN.read.split(\"\\n\").each { |f| s = Gem::Specification.load(f)\n\
        puts JSON.generate([s.name, s.version.to_s, s.platform.to_s, s.licenses]) }";
    let paths: Vec<String> = layer_files
        .iter()
        .map(|(_, p)| p.display().to_string())
        .collect();
    let readings: Vec<(String, String, String, Vec<String>)> =
        piped(&ruby, &["-e", script], &paths.join("\n"))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(readings.len(), layer_files.len());
    let mut licenses_compared = 0;
    for ((in_layer, _), (name, version, platform, licenses)) in layer_files.iter().zip(&readings) {
        let ours = found(&fragment, in_layer);
        assert_eq!(
            (ours.name.as_str(), ours.version.as_str()),
            (name.as_str(), version.as_str()),
            "{in_layer}"
        );
        let platform = if platform == "ruby" { "" } else { platform };
        assert_eq!(ours.namespace, platform, "{in_layer}");
        // Where every license RubyGems gives is an SPDX id, ours names the same ones.
        if !licenses.is_empty()
            && licenses
                .iter()
                .all(|l| stellaops_scanner::license::listed(l))
        {
            let mut want = licenses.clone();
            want.sort();
            want.dedup();
            assert_eq!(ids(&ours.license), want, "{in_layer}: {}", ours.license);
            licenses_compared += 1;
        }
    }
    // The gems built here, in full.
    let bundle = |file: &str| {
        found(
            &fragment,
            &format!("usr/local/bundle/specifications/{file}"),
        )
    };
    assert_eq!(bundle("acme-widget-1.4.2.gemspec").license, "MIT OR Ruby");
    assert_eq!(bundle("acme-named-0.1.0.gemspec").license, "Apache-2.0");
    assert_eq!(bundle("acme-plain-3.0.gemspec").license, "");
    assert_eq!(bundle("acme-2fa-1-1.0.0.gemspec").name, "acme-2fa-1");
    let native = fragment
        .files
        .iter()
        .find(|(p, _)| p.contains("acme-native-2.0.0.rc1-"))
        .map(|(_, f)| &f[0])
        .unwrap();
    assert!(!native.namespace.is_empty(), "{native:?}");
    assert_eq!(native.license, "BSD-2-Clause");
    // Ruby's own gems are there too (about 80 in Debian's Ruby 3.1).
    assert!(readings.len() >= 40, "only {} gems", readings.len());
    assert!(
        licenses_compared >= 20,
        "only {licenses_compared} licenses compared"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// Composer's command line in `dir`, offline, as root where the tests run as root.
fn composer(program: &str, dir: &Path, args: &[&str]) -> String {
    run(Command::new(program)
        .args(args)
        .args(["--no-interaction", "--no-ansi"])
        .current_dir(dir)
        .env("COMPOSER_HOME", dir.join(".composer"))
        .env("COMPOSER_ALLOW_SUPERUSER", "1")
        .env("COMPOSER_DISABLE_NETWORK", "1"))
}

#[test]
fn composer_packages_read_as_composer_reads_them() {
    let Some(program) = stellaops_testing::service("STELLAOPS_TEST_COMPOSER") else {
        return;
    };
    let root = std::env::temp_dir().join(format!("stellaops-composer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // Local packages (a path repository, so no network): licenses as a list, a string, a
    // name, none and `proprietary`; versions with `v`, a pre-release and four numbers.
    let packages = [
        ("acme/util", "1.4.2", r#"["MIT", "Apache-2.0"]"#),
        ("acme/log", "v2.1.0", r#""GPL-3.0-or-later""#),
        ("acme/rc", "3.0.0-RC1", r#"["BSD-3-Clause"]"#),
        ("other-vendor/plain", "0.9.1.2", "null"),
        ("other-vendor/closed", "1.0.0", r#""proprietary""#),
    ];
    let mut require = serde_json::Map::new();
    for (name, version, license) in packages {
        let dir = root.join("packages").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let license = if license == "null" {
            String::new()
        } else {
            format!(r#", "license": {license}"#)
        };
        std::fs::write(
            dir.join("composer.json"),
            format!(r#"{{"name": "{name}", "version": "{version}"{license}}}"#),
        )
        .unwrap();
        require.insert(name.into(), "*".into());
    }
    let app = root.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("composer.json"),
        serde_json::json!({
            "name": "acme/app",
            "minimum-stability": "RC",
            "repositories": [
                {"packagist.org": false},
                {"type": "path", "url": "../packages/*/*", "options": {"symlink": false}}
            ],
            "require": require,
        })
        .to_string(),
    )
    .unwrap();
    composer(&program, &app, &["install", "--quiet"]);
    let installed = std::fs::read(app.join("vendor/composer/installed.json")).unwrap();
    let layer = stellaops_testing::oci::tar_of(&[(
        "var/www/app/vendor/composer/installed.json",
        installed.as_slice(),
    )]);
    let fragment = stellaops_scanner::analyze::analyse_tar(layer.as_slice()).unwrap();
    let ours = &fragment.files["var/www/app/vendor/composer/installed.json"];

    // Composer's own reading: `show` for names and versions, `licenses` for licenses.
    let shown: serde_json::Value =
        serde_json::from_str(&composer(&program, &app, &["show", "--format=json"])).unwrap();
    let licensed: serde_json::Value =
        serde_json::from_str(&composer(&program, &app, &["licenses", "--format=json"])).unwrap();
    let shown = shown["installed"].as_array().unwrap();
    assert_eq!(ours.len(), shown.len(), "{ours:?}");
    assert_eq!(shown.len(), packages.len());
    for theirs in shown {
        let name = theirs["name"].as_str().unwrap();
        let package = ours
            .iter()
            .find(|p| format!("{}/{}", p.namespace, p.name) == name)
            .unwrap_or_else(|| panic!("{name} in {ours:?}"));
        assert_eq!(
            package.version,
            theirs["version"].as_str().unwrap(),
            "{name}"
        );
        let mut want: Vec<String> = licensed["dependencies"][name]["license"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        if want.iter().all(|l| stellaops_scanner::license::listed(l)) {
            want.sort();
            assert_eq!(ids(&package.license), want, "{name}: {}", package.license);
        } else {
            assert_eq!(want, ["proprietary"], "{name}");
            assert_eq!(package.license, "proprietary");
        }
    }
    let by_name = |name: &str| ours.iter().find(|p| p.name == name).unwrap();
    assert_eq!(by_name("util").license, "MIT OR Apache-2.0");
    assert_eq!(by_name("plain").license, "");
    std::fs::remove_dir_all(&root).unwrap();
}

/// A gem specification as `Gem::Specification#to_ruby` writes it.
fn gemspec(name: &str, version: &str, licenses: &str) -> Vec<u8> {
    format!(
        "# -*- encoding: utf-8 -*-\n# stub: {name} {version} ruby lib\n\n\
         Gem::Specification.new do |s|\n  s.name = \"{name}\".freeze\n  s.version = \"{version}\"\n\n  \
         s.require_paths = [\"lib\".freeze]\n  s.licenses = [{licenses}]\n  \
         s.summary = \"A gem.\".freeze\nend\n"
    )
    .into_bytes()
}

/// A Ruby application and a PHP application in one image, scanned through the real
/// registry, S3 and PostgreSQL: the gems and Composer packages are inventoried with
/// their licenses, matched against RubyGems and Packagist advisories in each ecosystem's
/// own ordering (a pre-release is before its release; Composer's `beta10` after `beta9`,
/// which semantic versions would put before it), and both SBOMs carry them and pass the
/// official validators.
#[tokio::test]
async fn gems_and_composer_packages_are_scanned_matched_and_in_the_sboms() {
    use crate::scan::{default_job, env, ingest, osv, push};
    use serde_json::json;
    let Some(env) = env("scan_gems_composer").await else {
        return;
    };
    ingest(
        &env.pool,
        vec![
            osv(
                "GHSA-RACK",
                "RubyGems",
                "rack",
                json!([{"introduced": "0"}, {"fixed": "2.2.23"}]),
                "high",
            ),
            // 7.1.0.beta1 is before 7.1.0: not affected.
            osv(
                "GHSA-RAILS",
                "RubyGems",
                "rails",
                json!([{"introduced": "7.1.0"}, {"fixed": "7.1.1"}]),
                "critical",
            ),
            osv(
                "GHSA-KERNEL",
                "Packagist",
                "symfony/http-kernel",
                json!([{"introduced": "0"}, {"fixed": "5.4.46"}]),
                "medium",
            ),
            // 1.0.0-beta10 is after 1.0.0-beta9: not affected.
            osv(
                "GHSA-PSR7",
                "Packagist",
                "guzzlehttp/psr7",
                json!([{"introduced": "0"}, {"fixed": "1.0.0-beta9"}]),
                "critical",
            ),
        ],
    )
    .await;
    let installed = json!({"packages": [
        {"name": "symfony/http-kernel", "version": "v5.4.45", "version_normalized": "5.4.45.0",
         "license": ["MIT"], "type": "library"},
        {"name": "guzzlehttp/psr7", "version": "1.0.0-beta10", "license": "MIT"},
        {"name": "acme/closed", "version": "1.0.0", "license": ["proprietary"]},
    ], "dev": false, "dev-package-names": []})
    .to_string();
    let layer = stellaops_testing::oci::tar_of(&[
        (
            "usr/local/bundle/specifications/rack-2.2.22.gemspec",
            &gemspec("rack", "2.2.22", "\"MIT\".freeze"),
        ),
        (
            "usr/local/bundle/specifications/rails-7.1.0.beta1.gemspec",
            &gemspec("rails", "7.1.0.beta1", "\"MIT\".freeze"),
        ),
        (
            "usr/local/lib/ruby/gems/3.3.0/specifications/default/json-2.7.1.gemspec",
            &gemspec("json", "2.7.1", "\"Ruby\".freeze, \"BSD-2-Clause\".freeze"),
        ),
        (
            "var/www/html/vendor/composer/installed.json",
            installed.as_bytes(),
        ),
    ]);
    let built = push(&env, "gems-composer", vec![layer]);
    let registry = stellaops_workers::registry::RegistryClient::new(
        stellaops_workers::registry::Credentials::default(),
        vec![],
    )
    .unwrap();
    let scratch = std::env::temp_dir().join(format!("stellaops-gems-scan-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut job = default_job(&env, &registry, &scratch, None, true);
    job.policy.fail_on = "high".into();
    let image = format!("{}/stellaops-it/gems-composer:v1", env.registry);
    let summary = stellaops_workers::scan::scan(&job, &image).await.unwrap();
    assert_eq!(summary.image_digest, built.manifest_digest);
    assert_eq!(summary.components, 6);
    assert_eq!(summary.verdict, "Fail");
    let findings: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT vuln_id, purl, fixed_version FROM scan_findings WHERE scan_id = $1 ORDER BY vuln_id",
    )
    .bind(summary.scan_id)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(
        findings,
        vec![
            (
                "GHSA-KERNEL".to_string(),
                "pkg:composer/symfony/http-kernel@v5.4.45".to_string(),
                Some("5.4.46".to_string())
            ),
            (
                "GHSA-RACK".to_string(),
                "pkg:gem/rack@2.2.22".to_string(),
                Some("2.2.23".to_string())
            ),
        ]
    );
    let licenses: Vec<(String, String)> = sqlx::query_as(
        "SELECT purl, declared FROM image_licenses WHERE image_digest = $1 ORDER BY purl",
    )
    .bind(&summary.image_digest)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(
        licenses,
        vec![
            (
                "pkg:composer/acme/closed@1.0.0".into(),
                "proprietary".into()
            ),
            (
                "pkg:composer/guzzlehttp/psr7@1.0.0-beta10".into(),
                "MIT".into()
            ),
            (
                "pkg:composer/symfony/http-kernel@v5.4.45".into(),
                "MIT".into()
            ),
            ("pkg:gem/json@2.7.1".into(), "Ruby OR BSD-2-Clause".into()),
            ("pkg:gem/rack@2.2.22".into(), "MIT".into()),
            ("pkg:gem/rails@7.1.0.beta1".into(), "MIT".into()),
        ]
    );
    // Both SBOMs list them, and the official validators accept both.
    let cdx_bytes = crate::scan::read_uri(&env.s3, &summary.sbom_uri).await;
    let cdx: serde_json::Value = serde_json::from_slice(&cdx_bytes).unwrap();
    let purls: Vec<&str> = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert!(purls.contains(&"pkg:gem/json@2.7.1"), "{purls:?}");
    assert!(
        purls.contains(&"pkg:composer/acme/closed@1.0.0"),
        "{purls:?}"
    );
    if std::env::var("STELLAOPS_TEST_PYTHON").is_ok() {
        let (ok, report) = crate::debian::cyclonedx_valid(&cdx_bytes);
        assert!(ok, "CycloneDX: {report}");
        let spdx_bytes = crate::scan::read_uri(
            &env.s3,
            &summary.sbom_uri.replace(".cdx.json", ".spdx.json"),
        )
        .await;
        let (ok, report) = crate::debian::pyspdxtools(&spdx_bytes);
        assert!(ok, "SPDX: {report}");
    }
    std::fs::remove_dir_all(&scratch).unwrap();
}
