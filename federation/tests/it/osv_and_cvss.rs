use serde_json::json;
use stellaops_federation::cursor::Cursor;
use stellaops_federation::cvss::{base_score_v3, rating};
use stellaops_federation::osv::{affects_key, source_of};

use crate::fixtures::{osv_doc, parse};

#[test]
fn cvss_v3_base_scores_match_the_specification_examples() {
    for (vector, score) in [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        ("CVSS:3.0/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N", 3.1),
        ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:N", 0.0),
    ] {
        assert_eq!(base_score_v3(vector), Some(score), "{vector}");
    }
    assert_eq!(base_score_v3("CVSS:2.0/AV:N"), None);
    assert_eq!(
        base_score_v3("CVSS:3.1/AV:N/AC:L"),
        None,
        "incomplete vectors are refused"
    );
    assert_eq!(
        (
            rating(9.8),
            rating(7.0),
            rating(4.0),
            rating(0.1),
            rating(0.0)
        ),
        (
            Some("critical"),
            Some("high"),
            Some("medium"),
            Some("low"),
            None
        )
    );
}

#[test]
fn cursors_round_trip_and_order_by_sequence() {
    let c: Cursor = "2025-01-15T10:30:00.000Z#0042".parse().unwrap();
    assert_eq!(c.seq, 42);
    assert_eq!(c.to_string(), "2025-01-15T10:30:00.000Z#0042");
    let short: Cursor = "2025-01-14T00:00:00Z#0000".parse().unwrap();
    assert!(short < c);
    assert_eq!(
        "2025-01-15T10:00:00.000Z#123456"
            .parse::<Cursor>()
            .unwrap()
            .to_string(),
        "2025-01-15T10:00:00.000Z#123456"
    );
    for bad in [
        "",
        "2025-01-15",
        "2025-01-15T10:00:00Z#",
        "2025-01-15T10:00:00Z#-1",
        "yesterday#1",
    ] {
        assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
    }
}

#[test]
fn package_urls_follow_each_ecosystem() {
    assert_eq!(
        affects_key("npm", "@babel/core", None),
        "pkg:npm/%40babel/core"
    );
    assert_eq!(
        affects_key("PyPI", "Django_Rest.Framework", None),
        "pkg:pypi/django-rest-framework"
    );
    assert_eq!(
        affects_key("Maven", "org.apache.logging.log4j:log4j-core", None),
        "pkg:maven/org.apache.logging.log4j/log4j-core"
    );
    assert_eq!(
        affects_key("Debian:12", "openssl", None),
        "pkg:deb/debian/openssl?distro=debian-12"
    );
    assert_eq!(
        affects_key("Alpine:v3.19", "busybox", None),
        "pkg:apk/alpine/busybox?distro=alpine-3.19"
    );
    // Wolfi and Chainguard: their own apk packages, one rolling release, by origin.
    assert_eq!(
        affects_key(
            "Wolfi",
            "openssl",
            Some("pkg:apk/wolfi/openssl?arch=x86_64")
        ),
        "pkg:apk/wolfi/openssl"
    );
    assert_eq!(
        affects_key("Chainguard", "glibc", None),
        "pkg:apk/chainguard/glibc"
    );
    assert_eq!(
        affects_key(
            "Go",
            "golang.org/x/net",
            Some("pkg:golang/golang.org/x/net@v0.1.0")
        ),
        "pkg:golang/golang.org/x/net"
    );
    // OSV's Debian and Alpine records name the source package with a release-less purl.
    assert_eq!(
        affects_key(
            "Debian:12",
            "glibc",
            Some("pkg:deb/debian/glibc?arch=source")
        ),
        "pkg:deb/debian/glibc?distro=debian-12"
    );
    assert_eq!(
        affects_key(
            "Alpine:v3.20",
            "openssl",
            Some("pkg:apk/alpine/openssl?arch=source")
        ),
        "pkg:apk/alpine/openssl?distro=alpine-3.20"
    );
    assert_eq!(source_of("GHSA-xxxx-yyyy-zzzz"), "ghsa");
    assert_eq!(source_of("DSA-5678-1"), "debian");
}

#[test]
fn osv_documents_become_canonicals_and_edges() {
    let parsed = parse(&osv_doc(
        "GHSA-aaaa-bbbb-0001",
        "express",
        "4.19.2",
        "MODERATE",
    ));
    assert_eq!(parsed.source, "ghsa");
    let c = &parsed.canonicals[0];
    assert_eq!(c.vuln_id, "CVE-2024-0001");
    assert_eq!(c.aliases, vec!["GHSA-aaaa-bbbb-0001"]);
    assert_eq!(c.affects_key, "pkg:npm/express");
    assert_eq!(c.severity.as_deref(), Some("medium"));
    assert_eq!(
        c.ranges,
        json!([{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "4.19.2"}]}])
    );
    // Sub-microsecond precision is dropped so the stored value hashes the same.
    assert_eq!(c.modified.unwrap().timestamp_subsec_nanos(), 123_456_000);
    assert_eq!(parsed.edges[0].merge_hash, c.merge_hash);
    let err =
        stellaops_federation::osv::parse("x.json", b"{\"id\": \"X-1\"}", None, chrono::Utc::now())
            .unwrap_err();
    assert!(err.to_string().contains("no affected package"));
}
