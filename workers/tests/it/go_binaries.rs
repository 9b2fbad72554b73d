//! Go binaries built by the real Go toolchain (offline, a local module replacing a
//! required one), read by the analyzer and compared with `go version -m`, the toolchain's
//! own reading of the build information; the standard library it was built with is a
//! component matched against Go's `stdlib` advisories.

use std::path::Path;
use std::process::Command;

use serde_json::json;

/// `go` with a scratch home and cache, offline, with `env` besides.
fn go(program: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .env("HOME", dir)
        .env("GOCACHE", dir.join(".cache"))
        .env("GOPATH", dir.join(".gopath"))
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap();
    assert!(out.status.success(), "go {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn go_binaries_read_as_go_version_m_reads_them() {
    let Some(program) = stellaops_testing::service("STELLAOPS_TEST_GO") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("stellaops-go-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("dep")).unwrap();
    for (file, text) in [
        (
            "go.mod",
            "module example.com/hello\n\ngo 1.19\n\nrequire example.com/dep v1.2.3\n\nreplace example.com/dep => ./dep\n",
        ),
        ("dep/go.mod", "module example.com/dep\n\ngo 1.19\n"),
        (
            "dep/dep.go",
            "package dep\n\nfunc Hello() string { return \"hi\" }\n",
        ),
        (
            "main.go",
            "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/dep\"\n)\n\nfunc main() { fmt.Println(dep.Hello()) }\n",
        ),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    // A default build and a static, path-trimmed one.
    go(&program, &dir, &["build", "-o", "hello", "."], &[]);
    go(
        &program,
        &dir,
        &["build", "-trimpath", "-o", "hello-static", "."],
        &[("CGO_ENABLED", "0")],
    );

    for binary in ["hello", "hello-static"] {
        let bytes = std::fs::read(dir.join(binary)).unwrap();
        let found = stellaops_scanner::analyze::parse_go_binary(&bytes);
        // The toolchain's own reading: `go1.19.8` on the first line, then its modules.
        let theirs = go(&program, &dir, &["version", "-m", binary], &[]);
        let go_version = theirs.lines().next().unwrap().split_once(": ").unwrap().1;
        let mut want = vec![(
            "stdlib".to_string(),
            stellaops_scanner::analyze::go_stdlib_version(go_version).unwrap(),
        )];
        for line in theirs.lines().skip(1) {
            let fields: Vec<&str> = line.trim_start().split('\t').collect();
            match fields.as_slice() {
                ["dep", path, version, ..] if version.starts_with('v') => {
                    want.push((path.to_string(), version.to_string()))
                }
                ["=>", path, version, ..] if version.starts_with('v') => {
                    *want.last_mut().unwrap() = (path.to_string(), version.to_string())
                }
                _ => {}
            }
        }
        let ours: Vec<(String, String)> = found
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        assert_eq!(ours, want, "{binary}: go version -m says\n{theirs}");
        // The local replacement leaves the required module, as the build records it.
        assert!(
            ours.iter()
                .any(|(n, v)| n == "example.com/dep" && v == "v1.2.3")
        );

        // The standard library meets a Go `stdlib` advisory fixed in the next patch.
        let stdlib = &want[0].1;
        let (release, patch) = stdlib.trim_start_matches('v').rsplit_once('.').unwrap();
        let fixed = format!("{release}.{}", patch.parse::<u32>().unwrap() + 1);
        // An executable in a layer (the analyzer reads executables' build information).
        let mut layer = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        layer
            .append_data(&mut header, "usr/local/bin/hello", bytes.as_slice())
            .unwrap();
        let layer = layer.into_inner().unwrap();
        let fragment = stellaops_scanner::analyze::analyse_tar(layer.as_slice()).unwrap();
        assert_eq!(fragment.files["usr/local/bin/hello"], found);
        let (components, _) = stellaops_scanner::merge(&[("sha256:l".to_string(), fragment)]);
        let row = stellaops_scanner::AdvisoryRow {
            merge_hash: "go-stdlib".into(),
            vuln_id: "GO-2099-0001".into(),
            affects_key: stellaops_federation::osv::affects_key("Go", "stdlib", None),
            ecosystem: "Go".into(),
            ranges: json!([{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": fixed}]}]),
            versions: Vec::new(),
            severity: Some("high".into()),
        };
        let findings = stellaops_scanner::match_components(&components, &[row]);
        let purls: Vec<&str> = findings.iter().map(|f| f.purl.as_str()).collect();
        assert_eq!(purls, [format!("pkg:golang/stdlib@{stdlib}")], "{binary}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
