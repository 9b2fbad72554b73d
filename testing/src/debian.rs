//! Root file systems made of real Debian packages, as dpkg leaves them after installing:
//! each package's files unpacked (`dpkg-deb -x`), a `var/lib/dpkg/status` made of their
//! control stanzas and an `info/<package>.list` of each one's files. Used by the scanner's
//! tests (workers/tests/it/debian.rs) and its benchmark (workers/benches/scan.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

/// One real package: its fields as dpkg itself reports them.
#[derive(Debug)]
pub struct Deb {
    /// `Package`.
    pub package: String,
    /// `Version`.
    pub version: String,
    /// dpkg's `source:Package` (the package itself when it has no `Source:`).
    pub source: String,
    /// dpkg's `source:Version` (the version when `Source:` names none).
    pub source_version: String,
}

/// `dpkg-deb --show` with dpkg's own `source:Package` / `source:Version` virtual fields:
/// the reference for what the scanner's `Source:` parsing must find.
pub fn deb_fields(file: &Path) -> Deb {
    let out = Command::new("dpkg-deb")
        .args([
            "--show",
            "--showformat=${Package}\\n${Version}\\n${source:Package}\\n${source:Version}\\n",
        ])
        .arg(file)
        .output()
        .expect("dpkg-deb runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("dpkg-deb prints UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    Deb {
        package: lines[0].into(),
        version: lines[1].into(),
        source: lines[2].into(),
        source_version: lines[3].into(),
    }
}

/// A layer with the packages' files unpacked, a dpkg `status` of their control stanzas,
/// an `info/<package>.list` of each one's files and the `/etc/ld.so.conf` libc-bin ships.
pub fn rootfs_layer(debs: &[PathBuf], work: &Path) -> Vec<u8> {
    rootfs_layers(&[debs], work)
        .pop()
        .expect("one group, one layer")
}

/// One layer per group of packages, stacked as `apt-get install` in successive image
/// build steps leaves them: layer N holds the files and `info/*.list` of group N and a
/// `var/lib/dpkg/status` listing the packages of groups 0..=N (it replaces the status of
/// the layers below); the first also holds `/etc/ld.so.conf`. `work` is scratch space.
pub fn rootfs_layers(groups: &[&[PathBuf]], work: &Path) -> Vec<Vec<u8>> {
    let mut status = String::new();
    let mut layers = Vec::new();
    for (n, debs) in groups.iter().enumerate() {
        let root = work.join(format!("root-{n}"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("var/lib/dpkg/info")).expect("mkdir");
        if n == 0 {
            std::fs::create_dir_all(root.join("etc")).expect("mkdir");
            std::fs::write(
                root.join("etc/ld.so.conf"),
                "include /etc/ld.so.conf.d/*.conf\n\n",
            )
            .expect("write ld.so.conf");
        }
        for deb in debs.iter() {
            let control = dpkg_deb(&["-f"], deb);
            let package = control
                .lines()
                .find_map(|l| l.strip_prefix("Package:"))
                .map(str::trim)
                .unwrap_or_else(|| panic!("{} has no Package field", deb.display()))
                .to_string();
            let mut list = String::new();
            for line in dpkg_deb(&["-c"], deb).lines() {
                // `drwxr-xr-x root/root 0 2023-01-01 00:00 ./usr/bin/` (links: `a -> b`).
                let Some(at) = line.find(" ./") else { continue };
                let path = line[at + 2..]
                    .split(" -> ")
                    .next()
                    .expect("split yields one")
                    .trim_end_matches('/');
                list.push_str(if path.is_empty() { "/." } else { path });
                list.push('\n');
            }
            std::fs::write(root.join(format!("var/lib/dpkg/info/{package}.list")), list)
                .expect("write the file list");
            let ok = Command::new("dpkg-deb")
                .arg("-x")
                .arg(deb)
                .arg(&root)
                .status()
                .expect("dpkg-deb runs");
            assert!(ok.success(), "dpkg-deb -x {}", deb.display());
            for line in control.lines() {
                status.push_str(line);
                status.push('\n');
                if line.starts_with("Package:") {
                    status.push_str("Status: install ok installed\n");
                }
            }
            status.push('\n');
        }
        std::fs::write(root.join("var/lib/dpkg/status"), &status).expect("write status");
        let layer = crate::oci::tar_dir(&root);
        std::fs::remove_dir_all(&root).expect("remove the unpacked root");
        layers.push(layer);
    }
    layers
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .expect("dpkg-deb runs");
    assert!(
        out.status.success(),
        "dpkg-deb {args:?} {}: {}",
        deb.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("dpkg-deb prints UTF-8")
}
