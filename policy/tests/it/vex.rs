use serde_json::{Value, json};
use stellaops_policy::vex::consensus::{Claim, Trust, applies, decide};
use stellaops_policy::vex::{Format, Product, Statement, Status, Version, parse};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

const IMAGE: &str = "sha256:47fed8868b46b060efb8699dc40e981a0c785650223e03602d8c4493fc75b68c";

#[test]
fn openvex_statements_with_products_and_subcomponents() {
    let doc = parse(Format::OpenVex, &fixture("openvex-0.2.0.json")).expect("read");
    assert_eq!(doc.id, "https://openvex.dev/docs/example/vex-9fb3463de1b57");
    assert_eq!(doc.version.text, "1");
    assert_eq!(doc.statements.len(), 5);
    let curl = doc
        .statements
        .iter()
        .find(|s| {
            s.product.purl.as_deref() == Some("pkg:deb/debian/curl@7.88.1-10+deb12u3?arch=amd64")
        })
        .expect("the subcomponent");
    assert_eq!(curl.status, Status::NotAffected);
    assert_eq!(curl.product.image_digest.as_deref(), Some(IMAGE));
    assert_eq!(curl.aliases, vec!["GHSA-9j7f-7hjh-8fx8"]);
    assert_eq!(
        curl.justification.as_deref(),
        Some("vulnerable_code_not_in_execute_path")
    );
    assert_eq!(
        curl.timestamp.unwrap().to_string(),
        "2023-10-12T09:00:00Z",
        "the statement's own time"
    );
    let libcurl = doc
        .statements
        .iter()
        .filter(|s| {
            s.product
                .purl
                .as_deref()
                .is_some_and(|p| p.contains("libcurl4"))
        })
        .count();
    assert_eq!(libcurl, 1, "identifiers.purl is read");
    let git: Vec<_> = doc
        .statements
        .iter()
        .filter(|s| s.vulnerability == "CVE-2014-123456")
        .collect();
    assert_eq!(git.len(), 2);
    assert!(git.iter().all(|s| s.status == Status::Fixed
        && s.product.image_digest.is_none()
        && s.timestamp == doc.timestamp));
    let net = doc
        .statements
        .iter()
        .find(|s| s.vulnerability == "CVE-2023-44487")
        .unwrap();
    assert_eq!(
        net.action_statement.as_deref(),
        Some("Upgrade golang.org/x/net to v0.17.0.")
    );
}

#[test]
fn csaf_vex_through_the_product_tree_relationships_and_groups() {
    let doc = parse(Format::Csaf, &fixture("csaf-vex-2.0.json")).expect("read");
    assert_eq!(doc.id, "2022-EVD-UC-01-F-001");
    let base = "sha256:0bb1a3e5a2cc1d1b3c26e4da04f6a69a5d54a7e1d2c0c6a8f1e5b1b0b5a5c6d7";
    let openssl = "pkg:deb/debian/openssl@3.0.11-1~deb12u2";
    let find = |vuln: &str, image: Option<&str>| -> &Statement {
        doc.statements
            .iter()
            .find(|s| {
                s.vulnerability == vuln
                    && s.product.purl.as_deref() == Some(openssl)
                    && s.product.image_digest.as_deref() == image
            })
            .unwrap_or_else(|| panic!("{vuln} {image:?} in {:#?}", doc.statements))
    };
    let dh = find("CVE-2023-5678", Some(base));
    assert_eq!(dh.status, Status::NotAffected);
    assert_eq!(
        dh.justification.as_deref(),
        Some("vulnerable_code_not_in_execute_path"),
        "from the group's flag"
    );
    assert_eq!(
        dh.impact_statement.as_deref(),
        Some("The image never generates DH keys.")
    );
    assert_eq!(dh.aliases, vec!["DSA-5585-1"]);
    assert_eq!(find("CVE-2023-5363", None).status, Status::Fixed);
    let in_image = find("CVE-2023-5363", Some(base));
    assert_eq!(in_image.status, Status::Affected);
    assert!(
        in_image
            .action_statement
            .as_deref()
            .unwrap()
            .contains("Rebuild")
    );
    // The CPE-only product cannot be matched: it yields no statement.
    assert_eq!(doc.statements.len(), 3, "{:#?}", doc.statements);
}

#[test]
fn cyclonedx_vex_with_bom_refs_and_bom_links() {
    let doc = parse(Format::CycloneDx, &fixture("cyclonedx-1.6-vex.json")).expect("read");
    assert_eq!(doc.id, "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79");
    assert_eq!(doc.version.key, vec![2]);
    let image = "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270";
    assert_eq!(doc.statements.len(), 2);
    for statement in &doc.statements {
        assert_eq!(
            statement.product,
            Product {
                purl: Some("pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1".into()),
                image_digest: Some(image.into()),
            }
        );
    }
    let (not_affected, exploitable) = (&doc.statements[0], &doc.statements[1]);
    assert_eq!(not_affected.status, Status::NotAffected);
    assert_eq!(not_affected.aliases, vec!["GHSA-jfh8-c2jp-5v3q"]);
    assert_eq!(
        not_affected.justification.as_deref(),
        Some("vulnerable_code_not_in_execute_path"),
        "code_not_reachable, in OpenVEX terms"
    );
    assert_eq!(
        not_affected.timestamp.unwrap().to_string(),
        "2024-05-02T09:30:00Z"
    );
    assert_eq!(exploitable.status, Status::Affected);
    assert_eq!(
        exploitable.action_statement.as_deref(),
        Some("update: Upgrade to 2.17.1.")
    );
}

#[test]
fn the_same_bytes_read_twice_are_the_same_document() {
    for (format, name) in [
        (Format::OpenVex, "openvex-0.2.0.json"),
        (Format::Csaf, "csaf-vex-2.0.json"),
        (Format::CycloneDx, "cyclonedx-1.6-vex.json"),
    ] {
        let bytes = fixture(name);
        let (a, b) = (
            parse(format, &bytes).unwrap(),
            parse(format, &bytes).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a.sha256.len(), 64);
    }
}

/// Change one field of a fixture with a JSON pointer (`None` removes it).
fn mutated(name: &str, pointer: &str, value: Option<Value>) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(&fixture(name)).unwrap();
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    let target = doc.pointer_mut(parent).expect("pointer");
    match (value, target) {
        (Some(v), Value::Object(map)) => {
            map.insert(last.to_string(), v);
        }
        (None, Value::Object(map)) => {
            map.remove(last);
        }
        (Some(v), Value::Array(items)) => items[last.parse::<usize>().unwrap()] = v,
        _ => panic!("cannot mutate {pointer}"),
    }
    serde_json::to_vec(&doc).unwrap()
}

#[test]
fn malformed_documents_are_refused_naming_the_field() {
    let cases: Vec<(Format, Vec<u8>, &str)> = vec![
        (Format::OpenVex, b"{".to_vec(), "(document)"),
        (
            Format::OpenVex,
            mutated("openvex-0.2.0.json", "/@id", None),
            "@id",
        ),
        (
            Format::OpenVex,
            mutated(
                "openvex-0.2.0.json",
                "/statements/0/status",
                Some(json!("maybe")),
            ),
            "statements[0].status",
        ),
        (
            Format::OpenVex,
            mutated(
                "openvex-0.2.0.json",
                "/statements/1/justification",
                Some(json!("trust_me")),
            ),
            "statements[1].justification",
        ),
        (
            Format::OpenVex,
            mutated("openvex-0.2.0.json", "/timestamp", Some(json!("yesterday"))),
            "timestamp",
        ),
        (
            Format::OpenVex,
            mutated(
                "openvex-0.2.0.json",
                "/statements/2/products/0/@id",
                Some(json!("git")),
            ),
            "statements[2].products[0]",
        ),
        (
            Format::Csaf,
            mutated(
                "csaf-vex-2.0.json",
                "/vulnerabilities/1/product_status/fixed/0",
                Some(json!("CSAFPID-9999")),
            ),
            "vulnerabilities[1].product_status.fixed[0]",
        ),
        (
            Format::Csaf,
            mutated("csaf-vex-2.0.json", "/vulnerabilities/0/flags", None),
            "vulnerabilities[0].flags",
        ),
        (
            Format::Csaf,
            mutated(
                "csaf-vex-2.0.json",
                "/document/tracking/version",
                Some(json!("one")),
            ),
            "document.tracking.version",
        ),
        (
            Format::CycloneDx,
            mutated(
                "cyclonedx-1.6-vex.json",
                "/vulnerabilities/0/analysis/state",
                Some(json!("fine")),
            ),
            "vulnerabilities[0].analysis.state",
        ),
        (
            Format::CycloneDx,
            mutated(
                "cyclonedx-1.6-vex.json",
                "/vulnerabilities/0/affects/0/ref",
                Some(json!("nope")),
            ),
            "vulnerabilities[0].affects[0].ref",
        ),
        (
            Format::CycloneDx,
            mutated("cyclonedx-1.6-vex.json", "/serialNumber", None),
            "serialNumber",
        ),
    ];
    for (format, bytes, field) in cases {
        let error = parse(format, &bytes).expect_err(field);
        assert_eq!(error.field, field, "{error}");
    }
    // The not_affected statement without either is refused.
    let neither = {
        let mut doc: Value = serde_json::from_slice(&fixture("openvex-0.2.0.json")).unwrap();
        let statement = doc["statements"][1].as_object_mut().unwrap();
        statement.remove("justification");
        statement.remove("impact_statement");
        serde_json::to_vec(&doc).unwrap()
    };
    let error = parse(Format::OpenVex, &neither).expect_err("refused");
    assert_eq!(error.field, "statements[1].justification");
    assert!(
        error
            .problem
            .contains("justification or an impact_statement")
    );
}

fn claim(
    provider: &str,
    status: Status,
    justification: Option<&str>,
    at: &str,
    version: &str,
) -> Claim {
    Claim {
        provider: provider.into(),
        document_id: format!("{provider}-doc"),
        document_version: Version::parse(version).unwrap(),
        statement: Statement {
            vulnerability: "CVE-2024-0001".into(),
            aliases: vec!["GHSA-aaaa-bbbb-cccc".into()],
            product: Product {
                purl: Some("pkg:deb/debian/openssl@3.0.11-1".into()),
                image_digest: None,
            },
            status,
            justification: justification.map(str::to_string),
            impact_statement: None,
            action_statement: None,
            timestamp: Some(at.parse().unwrap()),
        },
    }
}

#[test]
fn consensus_tables() {
    use Status::*;
    const J: Option<&str> = Some("vulnerable_code_not_present");
    let t1 = "2024-01-01T00:00:00Z";
    let t2 = "2024-02-01T00:00:00Z";
    let mut vendor_heavy = Trust::default();
    vendor_heavy.weights.insert("vendor".into(), 3.0);
    vendor_heavy.weights.insert("community".into(), 1.0);
    let mut muted = Trust::default();
    muted.weights.insert("community".into(), 0.0);
    let strict = Trust {
        accepted_justifications: ["component_not_present".to_string()].into(),
        ..Trust::default()
    };

    struct Case<'a> {
        what: &'a str,
        claims: Vec<Claim>,
        trust: &'a Trust,
        want: Option<Status>,
        conflicts: Vec<&'a str>,
    }
    let default = Trust::default();
    let cases = vec![
        Case {
            what: "one provider",
            claims: vec![claim("vendor", NotAffected, J, t1, "1")],
            trust: &default,
            want: Some(NotAffected),
            conflicts: vec![],
        },
        Case {
            what: "two providers disagree at equal weight: the cautious status",
            claims: vec![
                claim("vendor", NotAffected, J, t1, "1"),
                claim("community", Affected, None, t1, "1"),
            ],
            trust: &default,
            want: Some(Affected),
            conflicts: vec!["vendor"],
        },
        Case {
            what: "the heavier provider wins, the other is a conflict",
            claims: vec![
                claim("vendor", NotAffected, J, t1, "1"),
                claim("community", Affected, None, t1, "1"),
            ],
            trust: &vendor_heavy,
            want: Some(NotAffected),
            conflicts: vec!["community"],
        },
        Case {
            what: "a provider of weight 0 does not count",
            claims: vec![
                claim("vendor", Fixed, None, t1, "1"),
                claim("community", Affected, None, t1, "1"),
            ],
            trust: &muted,
            want: Some(Fixed),
            conflicts: vec![],
        },
        Case {
            what: "not_affected without an accepted justification does not count",
            claims: vec![claim("vendor", NotAffected, J, t1, "1")],
            trust: &strict,
            want: None,
            conflicts: vec![],
        },
        Case {
            what: "not_affected without any justification does not count",
            claims: vec![
                claim("vendor", NotAffected, None, t1, "1"),
                claim("community", UnderInvestigation, None, t1, "1"),
            ],
            trust: &default,
            want: Some(UnderInvestigation),
            conflicts: vec![],
        },
        Case {
            what: "a provider's newer statement supersedes its older one",
            claims: vec![
                claim("vendor", Affected, None, t1, "1"),
                claim("vendor", NotAffected, J, t2, "2"),
            ],
            trust: &default,
            want: Some(NotAffected),
            conflicts: vec![],
        },
        Case {
            what: "same time: the newer document version",
            claims: vec![
                claim("vendor", NotAffected, J, t1, "2"),
                claim("vendor", Affected, None, t1, "1"),
            ],
            trust: &default,
            want: Some(NotAffected),
            conflicts: vec![],
        },
        // Found by the `vex` fuzz target: two statements of one provider that tie in scope,
        // time, document version and status were picked by arrival order, so the decision
        // depended on the order the statements came in.
        Case {
            what: "a full tie: the statement with a justification wins, in either order",
            claims: vec![
                claim("vendor", NotAffected, None, t1, "1"),
                claim("vendor", NotAffected, J, t1, "1"),
            ],
            trust: &default,
            want: Some(NotAffected),
            conflicts: vec![],
        },
        Case {
            what: "a full tie in another document: still one winner, in either order",
            claims: vec![
                claim("vendor", NotAffected, J, t1, "1"),
                Claim {
                    document_id: "vendor-other-doc".into(),
                    ..claim("vendor", NotAffected, None, t1, "1")
                },
            ],
            trust: &default,
            want: Some(NotAffected),
            conflicts: vec![],
        },
    ];
    for case in cases {
        let decision = decide(&case.claims, case.trust);
        assert_eq!(decision.status, case.want, "{}: {decision:#?}", case.what);
        assert_eq!(decision.conflicts, case.conflicts, "{}", case.what);
        let mut reversed = case.claims.clone();
        reversed.reverse();
        assert_eq!(
            decide(&reversed, case.trust),
            decision,
            "{}: order does not matter",
            case.what
        );
    }

    // An image-scoped statement of a provider beats its general one, even an older one.
    let mut scoped = claim("vendor", NotAffected, J, t1, "1");
    scoped.statement.product.image_digest = Some(IMAGE.into());
    let general = claim("vendor", Affected, None, t2, "2");
    let decision = decide([&scoped, &general], &default);
    assert_eq!(decision.status, Some(NotAffected));
    assert_eq!(decision.votes.len(), 1);
}

#[test]
fn statements_apply_by_id_or_alias_purl_and_image() {
    let mut statement = claim("v", Status::Fixed, None, "2024-01-01T00:00:00Z", "1").statement;
    let ids = ["CVE-2024-0001"];
    let purl = "pkg:deb/debian/openssl@3.0.11-1?arch=amd64&distro=debian-12";
    assert!(applies(&statement, &ids, purl, IMAGE), "qualifiers ignored");
    assert!(
        applies(&statement, &["GHSA-aaaa-bbbb-cccc"], purl, IMAGE),
        "by alias"
    );
    assert!(!applies(&statement, &["CVE-2024-0002"], purl, IMAGE));
    assert!(
        !applies(&statement, &ids, "pkg:deb/debian/openssl@3.0.13-1", IMAGE),
        "other version"
    );
    assert!(!applies(
        &statement,
        &ids,
        "pkg:deb/debian/libssl3@3.0.11-1",
        IMAGE
    ));
    statement.product.purl = Some("pkg:deb/debian/openssl".into());
    assert!(
        applies(&statement, &ids, "pkg:deb/debian/openssl@3.0.13-1", IMAGE),
        "any version"
    );
    statement.product.image_digest = Some(format!("sha256:{}", "0".repeat(64)));
    assert!(!applies(&statement, &ids, purl, IMAGE), "another image");
    statement.product.purl = None;
    statement.product.image_digest = Some(IMAGE.into());
    assert!(applies(&statement, &ids, purl, IMAGE), "the whole image");
}
