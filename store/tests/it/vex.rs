//! VEX ingest against the real PostgreSQL: lossless, idempotent, superseding.

use serde_json::Value;
use stellaops_policy::vex::consensus::{Trust, applies, decide};
use stellaops_policy::vex::{Format, Status, parse};
use stellaops_store::vex::{self, Ingested};

fn openvex(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policy/tests/fixtures/openvex-0.2.0.json"
    );
    let mut doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut doc);
    serde_json::to_vec(&doc).unwrap()
}

const IMAGE: &str = "sha256:47fed8868b46b060efb8699dc40e981a0c785650223e03602d8c4493fc75b68c";
const CURL: &str = "pkg:deb/debian/curl@7.88.1-10+deb12u3?arch=amd64";

#[tokio::test]
async fn ingest_is_idempotent_supersedes_by_version_and_refuses_changed_content() {
    let Some(pool) =
        stellaops_testing::migrated_database("store_vex", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let v1 = parse(Format::OpenVex, &openvex(|_| {})).unwrap();
    assert_eq!(
        vex::ingest(&pool, "wolfi", &v1).await.unwrap(),
        Ingested::New { statements: 5 }
    );
    assert_eq!(
        vex::ingest(&pool, "wolfi", &v1).await.unwrap(),
        Ingested::Unchanged
    );
    assert_eq!(vex::statement_count(&pool, "wolfi").await.unwrap(), 5);

    // The same document from another provider is that provider's.
    assert_eq!(
        vex::ingest(&pool, "mirror", &v1).await.unwrap(),
        Ingested::New { statements: 5 }
    );

    // Version 2 drops the git statement and says curl is affected after all.
    let v2 = parse(
        Format::OpenVex,
        &openvex(|doc| {
            doc["version"] = 2.into();
            doc["statements"].as_array_mut().unwrap().remove(0);
            let curl = &mut doc["statements"][0];
            curl["status"] = "affected".into();
            curl["timestamp"] = "2023-11-01T00:00:00Z".into();
            curl.as_object_mut().unwrap().remove("justification");
        }),
    )
    .unwrap();
    assert_eq!(
        vex::ingest(&pool, "wolfi", &v2).await.unwrap(),
        Ingested::Superseded {
            previous: "1".into(),
            statements: 3
        }
    );
    assert_eq!(vex::statement_count(&pool, "wolfi").await.unwrap(), 3);
    // Version 1 again is older: ignored.
    assert_eq!(
        vex::ingest(&pool, "wolfi", &v1).await.unwrap(),
        Ingested::Older {
            current: "2".into()
        }
    );
    // Version 2 with other content is refused and changes nothing.
    let forged = parse(
        Format::OpenVex,
        &openvex(|doc| {
            doc["version"] = 2.into();
        }),
    )
    .unwrap();
    let error = vex::ingest(&pool, "wolfi", &forged).await.unwrap_err();
    assert!(error.to_string().contains("needs a new version"), "{error}");
    assert_eq!(vex::statement_count(&pool, "wolfi").await.unwrap(), 3);

    // Lookup by alias and purl, then the consensus: wolfi (v2) says affected, the mirror
    // (still v1) not_affected; at equal weight the cautious status wins.
    let claims = vex::claims(
        &pool,
        &["GHSA-9j7f-7hjh-8fx8".to_string()],
        &["deb/debian/curl".to_string()],
    )
    .await
    .unwrap();
    let applicable: Vec<_> = claims
        .iter()
        .filter(|c| applies(&c.statement, &["GHSA-9j7f-7hjh-8fx8"], CURL, IMAGE))
        .collect();
    assert_eq!(applicable.len(), 2, "{claims:#?}");
    let decision = decide(applicable.iter().copied(), &Trust::default());
    assert_eq!(decision.status, Some(Status::Affected));
    assert_eq!(decision.conflicts, vec!["mirror"]);
    let mut trust = Trust::default();
    trust.weights.insert("mirror".into(), 2.0);
    let decision = decide(applicable.iter().copied(), &trust);
    assert_eq!(decision.status, Some(Status::NotAffected));
    assert_eq!(decision.conflicts, vec!["wolfi"]);
}
