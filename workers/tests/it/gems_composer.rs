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
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(versions.join("\n").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{program}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
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
