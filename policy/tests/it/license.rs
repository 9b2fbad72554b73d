//! License rules: SPDX expressions, OR/AND semantics, wildcards, unknown licenses, scope.
use jiff::Timestamp;
use serde_json::json;
use stellaops_policy::evaluate::{Finding, Outcome, Policy, Subject, evaluate_all};
use stellaops_policy::license::{Component, Declared, Expr, decide, parse};

fn policy(value: serde_json::Value) -> Policy {
    serde_json::from_value(value).expect("a policy")
}

fn component(purl: &str, license: &str) -> Component {
    Component {
        purl: purl.into(),
        license: Declared::of(license),
    }
}

const SUBJECT: Subject<'static> = Subject {
    namespace: Some("shop"),
    repository: "registry.example/shop/api",
};

fn now() -> Timestamp {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

#[test]
fn expressions_parse_with_precedence_and_refuse_what_is_not_one() {
    let e = parse("MIT OR Apache-2.0 AND BSD-3-Clause").unwrap();
    assert_eq!(
        e,
        Expr::Or(vec![
            Expr::License {
                id: "MIT".into(),
                exception: None
            },
            Expr::And(vec![
                Expr::License {
                    id: "Apache-2.0".into(),
                    exception: None
                },
                Expr::License {
                    id: "BSD-3-Clause".into(),
                    exception: None
                },
            ]),
        ])
    );
    assert_eq!(
        parse("(mit or gpl-2.0-only) and Zlib").unwrap().render(),
        "(mit OR gpl-2.0-only) AND Zlib"
    );
    assert_eq!(
        parse("GPL-2.0-or-later WITH Classpath-exception-2.0")
            .unwrap()
            .render(),
        "GPL-2.0-or-later WITH Classpath-exception-2.0"
    );
    assert_eq!(
        parse("DocumentRef-spdx-tool-1.2:LicenseRef-MIT-Style-2")
            .unwrap()
            .ids()
            .len(),
        1
    );
    for bad in [
        "",
        "MIT OR",
        "(MIT",
        "MIT)",
        "MIT Apache-2.0",
        "Public Domain",
        "GPL WITH",
        "SEE LICENSE IN LICENSE.txt",
        "BSD (3 clause)",
        "MIT/X11",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} is not an SPDX expression");
    }
    // Bounded: deep nesting and huge inputs are refused, not recursed into.
    let deep = format!("{}MIT{}", "(".repeat(100), ")".repeat(100));
    assert!(parse(&deep).unwrap_err().contains("nested"));
    assert!(parse(&"MIT AND ".repeat(1000)).is_err());
    // Declarations: kept as given when not an expression, then with no ids.
    let d = Declared::of("Public Domain").unwrap();
    assert_eq!((d.expression.as_str(), d.ids.len()), ("Public Domain", 0));
    assert_eq!(Declared::of("NOASSERTION"), None);
    assert_eq!(Declared::of("  "), None);
    let d = Declared::of("Apache-2.0 and (MIT or GPL-2.0-only)").unwrap();
    assert_eq!(d.expression, "Apache-2.0 AND (MIT OR GPL-2.0-only)");
    assert_eq!(d.ids, vec!["Apache-2.0", "GPL-2.0-only", "MIT"]);
}

#[test]
fn or_is_denied_only_when_every_alternative_is_and_and_when_any_part_is() {
    let rules: Policy = policy(json!({"licenses": [
        {"name": "no-gpl", "action": "deny", "ids": ["GPL-*", "AGPL-*"]}
    ]}));
    let cases = [
        ("GPL-3.0-only", true),
        ("gpl-3.0-or-later", true), // ids match case-insensitively
        ("MIT OR GPL-2.0-only", false),
        ("GPL-2.0-only OR AGPL-3.0-only", true),
        ("MIT AND GPL-2.0-only", true),
        ("MIT AND (Apache-2.0 OR GPL-2.0-only)", false),
        ("(MIT OR GPL-2.0-only) AND GPL-3.0-only", true),
        ("LGPL-2.1-only", false), // the glob is anchored
        ("GPL-2.0-or-later WITH Classpath-exception-2.0", true),
        ("MIT", false),
        ("Public Domain", false), // not an expression: unknown, never denied
    ];
    for (license, denied) in cases {
        let d = decide(
            &[component("pkg:npm/x@1", license)],
            &SUBJECT,
            &rules.licenses,
        );
        assert_eq!(!d.is_empty(), denied, "{license}");
        if denied {
            assert_eq!(d[0].outcome, Outcome::Fails);
            assert_eq!(d[0].decided_by, "license:no-gpl");
        }
    }
    let d = decide(
        &[component("pkg:npm/x@1", "GPL-2.0-only OR AGPL-3.0-only")],
        &SUBJECT,
        &rules.licenses,
    );
    assert_eq!(
        d[0].reason,
        "GPL-2.0-only, AGPL-3.0-only denied (every alternative) in GPL-2.0-only OR AGPL-3.0-only"
    );
    // A rule naming the whole term with its exception hits only that term.
    let classpath: Policy = policy(json!({"licenses": [
        {"name": "classpath", "action": "warn", "ids": ["GPL-2.0-* WITH Classpath-exception-2.0"]}
    ]}));
    let hit =
        |l: &str| !decide(&[component("pkg:x/y@1", l)], &SUBJECT, &classpath.licenses).is_empty();
    assert!(hit("GPL-2.0-only WITH Classpath-exception-2.0"));
    assert!(!hit("GPL-2.0-only"));
}

/// A deprecated GNU id names a version and leaves "only" or "or later" open (a license text
/// alone says no more): a rule naming either form hits it, and one naming neither does not.
#[test]
fn gnu_ids_that_leave_only_or_later_open_are_hit_as_either() {
    let rules = |ids: &[&str]| -> Policy {
        policy(json!({"licenses": [{"name": "r", "action": "deny", "ids": ids}]}))
    };
    let hit = |ids: &[&str], license: &str| {
        let rules = rules(ids);
        let d = decide(
            &[component("pkg:npm/x@1", license)],
            &SUBJECT,
            &rules.licenses,
        );
        d.first().map(|d| d.reason.clone())
    };
    // The open id is hit by a rule on either reading (the reason says which), by the glob,
    // and by itself.
    for (ids, reason) in [
        (
            &["GPL-3.0-only"][..],
            "GPL-3.0 (read as GPL-3.0-only) denied in GPL-3.0",
        ),
        (
            &["GPL-3.0-or-later"],
            "GPL-3.0 (read as GPL-3.0-or-later) denied in GPL-3.0",
        ),
        (&["GPL-3.0*"], "GPL-3.0 denied in GPL-3.0"),
        (&["GPL-3.0"], "GPL-3.0 denied in GPL-3.0"),
        (&["gpl-*"], "GPL-3.0 denied in GPL-3.0"),
    ] {
        assert_eq!(hit(ids, "GPL-3.0").as_deref(), Some(reason), "{ids:?}");
    }
    assert!(hit(&["AGPL-3.0-or-later"], "MIT AND AGPL-3.0").is_some());
    assert!(hit(&["LGPL-2.1-only"], "lgpl-2.1").is_some());
    // Another version, another family, or an alternative not hit: not hit.
    assert!(hit(&["GPL-2.0-only", "GPL-2.0-or-later"], "GPL-3.0").is_none());
    assert!(hit(&["GPL-3.0-only"], "LGPL-3.0").is_none());
    assert!(hit(&["GPL-3.0-only"], "MIT OR GPL-3.0").is_none());
    // The `+` form is the `-or-later` one only.
    assert!(hit(&["GPL-2.0-or-later"], "GPL-2.0+").is_some());
    assert!(hit(&["GPL-2.0-only"], "GPL-2.0+").is_none());
    // The named forms are not widened: `-only` is not `-or-later`.
    assert!(hit(&["GPL-2.0-or-later"], "GPL-2.0-only").is_none());
    // With an exception, the whole term as either reading.
    assert!(
        hit(
            &["GPL-2.0-only WITH Classpath-exception-2.0"],
            "GPL-2.0 WITH Classpath-exception-2.0"
        )
        .is_some()
    );
    assert!(hit(&["GPL-2.0-only WITH Classpath-exception-2.0"], "GPL-2.0").is_none());
}

#[test]
fn unknown_licenses_never_match_and_rules_keep_to_their_scope() {
    let p = policy(json!({"licenses": [
        {"name": "everything", "action": "deny", "ids": ["*"],
         "namespaces": ["shop"], "images": ["registry.example/shop/*"],
         "exceptPackages": ["pkg:npm/vetted@*"]}
    ]}));
    let components = [
        Component {
            purl: "pkg:npm/nothing-declared@1".into(),
            license: None,
        },
        component("pkg:npm/free-text@1", "SEE LICENSE IN LICENSE.md"),
        component("pkg:npm/vetted@2.0.0?x=y", "MIT"),
        component("pkg:npm/other@1", "MIT"),
    ];
    let d = decide(&components, &SUBJECT, &p.licenses);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].component, 3);
    let elsewhere = Subject {
        namespace: Some("dev"),
        repository: "registry.example/shop/api",
    };
    assert!(decide(&components, &elsewhere, &p.licenses).is_empty());
    let cluster_wide = Subject {
        namespace: None,
        repository: "registry.example/shop/api",
    };
    assert!(decide(&components, &cluster_wide, &p.licenses).is_empty());
    let other_image = Subject {
        namespace: Some("shop"),
        repository: "registry.example/tools/ci",
    };
    assert!(decide(&components, &other_image, &p.licenses).is_empty());
}

#[test]
fn the_first_rule_that_hits_decides_and_feeds_the_verdict() {
    let p = policy(json!({
        "failOn": "critical",
        "licenses": [
            {"name": "agpl-warns-in-tools", "action": "warn", "ids": ["AGPL-*"], "images": ["*/tools/*"]},
            {"name": "no-agpl", "action": "deny", "ids": ["AGPL-*"]},
            {"name": "copyleft-warns", "action": "warn", "ids": ["GPL-*", "LGPL-*"]}
        ]
    }));
    let finding = Finding {
        id: "CVE-1".into(),
        purl: "pkg:npm/a@1".into(),
        severity: Some("low".into()),
        ..Default::default()
    };
    let digest = p.digest();
    let run = |components: &[Component], repo: &str| {
        let subject = Subject {
            namespace: Some("shop"),
            repository: repo,
        };
        evaluate_all(
            std::slice::from_ref(&finding),
            &[],
            components,
            &subject,
            &p,
            &digest,
            now(),
        )
    };
    let agpl = [component("pkg:npm/db@1", "AGPL-3.0-only")];
    let e = run(&agpl, "registry.example/shop/api");
    assert_eq!(e.verdict, "Fail");
    assert_eq!(e.licenses[0].decided_by, "license:no-agpl");
    let e = run(&agpl, "registry.example/tools/ci");
    assert_eq!(e.verdict, "Warn");
    assert_eq!(e.licenses[0].decided_by, "license:agpl-warns-in-tools");
    let e = run(
        &[component("pkg:npm/c@1", "LGPL-2.1-or-later")],
        "registry.example/shop/api",
    );
    assert_eq!((e.verdict, e.licenses.len()), ("Warn", 1));
    let e = run(
        &[component("pkg:npm/c@1", "MIT OR LGPL-2.1-or-later")],
        "registry.example/shop/api",
    );
    assert_eq!((e.verdict, e.licenses.len()), ("Pass", 0));
    // The license rules are part of the digest; a policy without them keeps its old one.
    let without = policy(json!({"failOn": "critical"}));
    assert_ne!(p.digest(), without.digest());
    assert!(
        !serde_json::to_string(&without)
            .unwrap()
            .contains("licenses")
    );
}

#[test]
fn bad_license_rules_are_named() {
    let p = policy(json!({"licenses": [
        {"name": "a", "action": "deny", "ids": []},
        {"name": "a", "action": "warn", "ids": ["GPL-3.0 (or later)"]}
    ]}));
    let problems = p.problems();
    assert!(
        problems
            .iter()
            .any(|m| m.contains("licenses[0]") && m.contains("no license ids")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|m| m.contains("licenses[1]") && m.contains("used by an earlier")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|m| m.contains("not an SPDX license id")),
        "{problems:?}"
    );
}

#[test]
fn the_normal_form_reads_back_to_itself() {
    for text in [
        "MIT",
        "(A AND B) AND C",
        "a or (b and (c or d))",
        "(MIT OR Apache-2.0) AND (BSD-3-Clause OR (GPL-2.0-only WITH Classpath-exception-2.0))",
        "((((MIT))))",
        "LicenseRef-x OR DocumentRef-d:LicenseRef-y AND GPL-2.0+",
    ] {
        let expr = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let written = expr.render();
        let again = parse(&written).unwrap_or_else(|e| panic!("{written}: {e}"));
        assert_eq!(again.render(), written, "{text}");
        assert_eq!(again.ids(), expr.ids(), "{text}");
    }
    assert_eq!(
        parse("(A AND B) AND (C OR D) OR E").unwrap().render(),
        "A AND B AND (C OR D) OR E"
    );
}
