use std::io::Read;

use stellaops_federation::bundle::{self, BundleError, Contents};
use stellaops_store::advisories::{Deletion, sha256_hex};

use crate::fixtures::{bundle_members, bundle_of, key_pair, osv_doc, parse};

fn sample_bundle(signer: Option<&stellaops_federation::dsse::Signer>) -> Vec<u8> {
    let a = parse(&osv_doc("GHSA-aaaa-bbbb-0001", "express", "4.19.2", "HIGH"));
    let b = parse(&osv_doc(
        "GHSA-aaaa-bbbb-0002",
        "lodash",
        "4.17.21",
        "CRITICAL",
    ));
    let canonicals = [a.canonicals, b.canonicals].concat();
    let edges = [a.edges, b.edges].concat();
    let deletions = vec![Deletion {
        merge_hash: "sha256:00".into(),
        reason: "withdrawn".into(),
    }];
    bundle::write(
        &Contents {
            site_id: "site-a",
            since_cursor: None,
            cursor: "2025-01-15T10:30:00.000Z#0042".into(),
            canonicals: &canonicals,
            edges: &edges,
            deletions: &deletions,
        },
        signer,
        3,
    )
}

/// Decompress, change one member with `edit`, and rebuild a canonical archive.
fn repack(bytes: &[u8], edit: impl Fn(&str, &mut Vec<u8>)) -> Vec<u8> {
    let mut members = bundle_members(bytes);
    for (name, content) in &mut members {
        edit(name, content);
    }
    bundle_of(&members)
}

#[test]
fn output_is_deterministic_and_opens() {
    let (signer, trusted) = key_pair();
    let first = sample_bundle(Some(&signer));
    assert_eq!(
        first,
        sample_bundle(Some(&signer)),
        "same data and key, same bytes"
    );
    let opened = bundle::open(&first, 1 << 20).unwrap();
    assert_eq!(opened.bundle_hash, sha256_hex(&first));
    assert_eq!(opened.manifest.version, "feedser-bundle/1.0");
    assert_eq!(
        (
            opened.manifest.counts.canonicals,
            opened.manifest.counts.edges,
            opened.manifest.counts.deletions
        ),
        (2, 2, 1)
    );
    assert_eq!(opened.verify_signature(&trusted).unwrap(), signer.key_id());
}

#[test]
fn a_changed_byte_in_any_member_is_detected() {
    let (signer, trusted) = key_pair();
    let original = sample_bundle(Some(&signer));
    for member in bundle::MEMBERS {
        let tampered = repack(&original, |name, content| {
            if name != member {
                return;
            }
            if name == "MANIFEST.json" {
                // Relabel the bundle as another site's: the signed manifest must catch it.
                *content = String::from_utf8(content.clone())
                    .unwrap()
                    .replace("site-a", "site-b")
                    .into_bytes();
            } else {
                let i = content
                    .iter()
                    .rposition(|b| b.is_ascii_alphanumeric())
                    .unwrap();
                content[i] = if content[i] == b'a' { b'b' } else { b'a' };
            }
        });
        let outcome = bundle::open(&tampered, 1 << 20).and_then(|o| o.verify_signature(&trusted));
        let error = outcome
            .expect_err(&format!("a change to {member} went unnoticed"))
            .to_string();
        let expected = match member {
            "MANIFEST.json" | "SIGNATURE.json" => "Signature verification failed",
            _ => "does not match its digest in the manifest",
        };
        assert!(error.contains(expected), "{member}: {error}");
    }
}

#[test]
fn header_and_compression_tampering_is_detected() {
    let original = sample_bundle(None);
    // A header-only change (mtime) leaves every member intact but breaks canonical form.
    let mut tar_bytes = Vec::new();
    zstd::stream::read::Decoder::new(original.as_slice())
        .unwrap()
        .read_to_end(&mut tar_bytes)
        .unwrap();
    let mut header = tar::Header::new_old();
    header.as_mut_bytes().copy_from_slice(&tar_bytes[..512]);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    tar_bytes[..512].copy_from_slice(header.as_bytes());
    let retarred = zstd::bulk::compress(&tar_bytes, 3).unwrap();
    assert!(
        matches!(bundle::open(&retarred, 1 << 20), Err(BundleError::Corrupt(m)) if m.contains("canonical form"))
    );
    // Truncated archive.
    assert!(bundle::open(&original[..original.len() / 2], 1 << 20).is_err());
    // Not zstd at all.
    assert!(matches!(
        bundle::open(b"PK\x03\x04 not a bundle", 1 << 20),
        Err(BundleError::Corrupt(_))
    ));
}

#[test]
fn signatures_size_and_version_are_enforced() {
    let (signer, _) = key_pair();
    let (_, other_trusted) = key_pair();
    let signed = sample_bundle(Some(&signer));
    let opened = bundle::open(&signed, 1 << 20).unwrap();
    let wrong_key = opened.verify_signature(&other_trusted).unwrap_err();
    assert!(
        wrong_key
            .to_string()
            .starts_with("Signature verification failed"),
        "{wrong_key}"
    );
    let unsigned = bundle::open(&sample_bundle(None), 1 << 20).unwrap();
    assert!(matches!(
        unsigned.verify_signature(&other_trusted),
        Err(BundleError::Unsigned)
    ));
    let too_large = bundle::open(&signed, 100).unwrap_err();
    assert!(
        too_large.to_string().starts_with("Bundle too large"),
        "{too_large}"
    );
    // Another format version, even correctly digested, is refused by name.
    let future = repack(&sample_bundle(None), |name, content| {
        if name == "MANIFEST.json" {
            *content = String::from_utf8(content.clone())
                .unwrap()
                .replace("feedser-bundle/1.0", "feedser-bundle/2.0")
                .into_bytes();
        }
    });
    assert!(
        matches!(bundle::open(&future, 1 << 20), Err(BundleError::UnsupportedVersion(v)) if v == "feedser-bundle/2.0")
    );
}

/// The streamed, multi-frame layout is ordinary zstd and tar to other tools: the zstd CLI
/// (installed by scripts/services.sh) sees seven frames and decompresses all of them, and
/// tar lists the members in order.
#[test]
fn the_zstd_and_tar_tools_read_a_bundle() {
    let (signer, _) = key_pair();
    let bytes = sample_bundle(Some(&signer));
    let dir = std::env::temp_dir().join(format!("stellaops-bundle-tools-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bundle.zst");
    std::fs::write(&file, &bytes).unwrap();
    let run = |program: &str, args: &[&str]| {
        let output = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program} (installed by scripts/services.sh): {e}"));
        assert!(output.status.success(), "{program} {args:?}: {output:?}");
        output.stdout
    };
    let listing = String::from_utf8(run("zstd", &["-lv", file.to_str().unwrap()])).unwrap();
    assert!(
        listing.contains("# Zstandard Frames: 7"),
        "zstd -lv:\n{listing}"
    );
    let archive = run("zstd", &["-dc", file.to_str().unwrap()]);
    let mut ours = Vec::new();
    zstd::stream::read::Decoder::new(bytes.as_slice())
        .unwrap()
        .read_to_end(&mut ours)
        .unwrap();
    assert_eq!(
        archive, ours,
        "the CLI and the library read the same archive"
    );
    std::fs::write(dir.join("bundle.tar"), &archive).unwrap();
    let members = String::from_utf8(run(
        "tar",
        &["-tf", dir.join("bundle.tar").to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(
        members.lines().collect::<Vec<_>>(),
        [
            "MANIFEST.json",
            "canonicals.ndjson",
            "edges.ndjson",
            "deletions.ndjson",
            "SIGNATURE.json"
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A well-formed, correctly hashed bundle that lists a canonical or an edge twice is
/// refused before anything is written: the store could not tell which copy to keep.
#[test]
fn a_canonical_or_edge_listed_twice_is_refused() {
    let a = parse(&osv_doc("GHSA-aaaa-bbbb-0001", "express", "4.19.2", "HIGH"));
    let write = |canonicals: &[_], edges: &[_]| {
        bundle::write(
            &Contents {
                site_id: "site-a",
                since_cursor: None,
                cursor: "2025-01-15T10:30:00.000Z#0042".into(),
                canonicals,
                edges,
                deletions: &[],
            },
            None,
            3,
        )
    };
    let canonical_twice = write(
        &[a.canonicals.clone(), a.canonicals.clone()].concat(),
        &a.edges,
    );
    let error = bundle::open(&canonical_twice, 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("Bundle is corrupt: canonicals.ndjson lists canonical sha256:")
            && error.ends_with(" twice"),
        "{error}"
    );
    let edge_twice = write(&a.canonicals, &[a.edges.clone(), a.edges.clone()].concat());
    let error = bundle::open(&edge_twice, 1 << 20).unwrap_err().to_string();
    assert!(
        error.starts_with("Bundle is corrupt: edges.ndjson lists the edge sha256:"),
        "{error}"
    );
    assert!(bundle::open(&write(&a.canonicals, &a.edges), 1 << 20).is_ok());
}

/// Bytes outside the members (padding, the end-of-archive blocks, anything after them)
/// are part of canonical form too.
#[test]
fn padding_and_trailing_bytes_are_checked() {
    let original = sample_bundle(None);
    let tar_bytes = zstd::stream::decode_all(original.as_slice()).unwrap();
    let manifest_size = tar::Header::from_byte_slice(&tar_bytes[..512])
        .size()
        .unwrap() as usize;
    assert_ne!(manifest_size % 512, 0, "the manifest is padded");
    let open_tar = |tar: &[u8]| bundle::open(&zstd::bulk::compress(tar, 3).unwrap(), 1 << 20);
    assert!(open_tar(&tar_bytes).is_ok());
    let mut padding = tar_bytes.clone();
    padding[512 + manifest_size] = b'x';
    let mut longer = tar_bytes.clone();
    longer.extend_from_slice(&[0; 512]);
    let mut shorter = tar_bytes.clone();
    shorter.truncate(tar_bytes.len() - 512);
    for (what, tar) in [
        ("padding", padding),
        ("an extra block", longer),
        ("a missing end block", shorter),
    ] {
        assert!(
            matches!(open_tar(&tar), Err(BundleError::Corrupt(m)) if m.contains("canonical form")),
            "{what} went unnoticed"
        );
    }
}

/// Canonicals enough for data members of several zstd jobs (a job is 1 MiB), with varied
/// content.
fn many_canonicals(n: usize) -> Vec<stellaops_store::advisories::CanonicalAdvisory> {
    use stellaops_store::advisories::CanonicalAdvisory;
    (0..n)
        .map(|i| {
            let vuln_id = format!("CVE-2024-{i:06}");
            let affects_key = format!("pkg:npm/package-{}", i * 7919 % 100_003);
            CanonicalAdvisory {
                merge_hash: CanonicalAdvisory::merge_hash_of(&vuln_id, &affects_key),
                cve: Some(vuln_id.clone()),
                aliases: vec![format!("GHSA-{:x}", i * 2_654_435_761 % 1_000_003)],
                vuln_id,
                affects_key,
                ecosystem: "npm".into(),
                ranges: serde_json::json!([{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": format!("{}.{}.0", i % 13, i % 97)}]}]),
                versions: vec![],
                severity: Some(["critical", "high", "medium", "low"][i % 4].into()),
                cvss: None,
                summary: Some(format!("advisory {i}: {}", sha256_hex(&i.to_le_bytes()))),
                published: None,
                modified: None,
                withdrawn: None,
            }
        })
        .collect()
}

/// A bundle of `canonicals` alone.
fn canonicals_only(canonicals: &[stellaops_store::advisories::CanonicalAdvisory]) -> Contents<'_> {
    Contents {
        site_id: "site-a",
        since_cursor: None,
        cursor: "2025-01-15T10:30:00.000Z#0042".into(),
        canonicals,
        edges: &[],
        deletions: &[],
    }
}

/// `bytes` opened, checked to hold a canonicals member of several zstd jobs (or the thread
/// count and the cutting of writes would have nothing to change).
fn open_with_several_jobs(bytes: &[u8]) -> bundle::OpenedBundle {
    let opened = bundle::open(bytes, 1 << 30).unwrap();
    let size = opened.manifest.files["canonicals.ndjson"].size;
    assert!(size > 3 * (1 << 20), "one zstd job only: {size} bytes");
    opened
}

#[test]
fn output_is_the_same_for_any_number_of_compression_threads() {
    let canonicals = many_canonicals(24_000);
    let contents = canonicals_only(&canonicals);
    let one = bundle::write_with_workers(&contents, None, 1, 1);
    assert_eq!(open_with_several_jobs(&one).canonicals, canonicals);
    for workers in [2, 3, 5] {
        assert!(
            one == bundle::write_with_workers(&contents, None, 1, workers),
            "{workers} threads gave other bytes than one"
        );
    }
    assert!(one == bundle::write(&contents, None, 1));
}

/// The export hands a member's lines to the writer in runs, as PostgreSQL sends them:
/// slices of a received message, sent on to the compressing thread as they are, or
/// copied when short. However the member is cut into such writes, and whatever the
/// number of compression threads, the bytes are those of the bundle written line by line.
#[test]
fn output_is_the_same_however_the_lines_arrive() {
    use bytes::Bytes;
    use stellaops_federation::bundle::BundleWriter;
    let canonicals = many_canonicals(12_000);
    let contents = canonicals_only(&canonicals);
    let expected = bundle::write_with_workers(&contents, None, 3, 1);
    open_with_several_jobs(&expected);
    let lines: Vec<Vec<u8>> = canonicals
        .iter()
        .map(|c| serde_json::to_vec(c).unwrap())
        .collect();
    // Runs of one line (copied), of a few (copied), and far over the size from which a
    // shared run is sent on its own; runs given as shared bytes and by reference in turn.
    for (workers, runs) in [
        (1, &[1usize, 7, 300][..]),
        (2, &[64, 1, 1000, 3]),
        (3, &[5000, 2, 40]),
        (5, &[12_000]),
    ] {
        let mut writer = BundleWriter::with_workers(3, workers);
        let [member, _, _] = writer.data_members();
        let (mut at, mut k) = (0, 0);
        while at < lines.len() {
            let n = runs[k % runs.len()].min(lines.len() - at);
            let run = lines[at..at + n].join(&b'\n');
            if k % 2 == 0 {
                member.joined_lines_shared(Bytes::from(run));
            } else {
                member.joined_lines(&run);
            }
            (at, k) = (at + n, k + 1);
        }
        assert_eq!(member.lines(), lines.len() as u64);
        let bytes = writer.finish(contents.site_id, None, contents.cursor.clone(), None);
        assert!(
            bytes == expected,
            "{workers} threads and runs of {runs:?} gave other bytes"
        );
    }
}
