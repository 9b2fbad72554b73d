use chrono::{TimeZone, Utc};
use p256::ecdsa::SigningKey;
use serde_json::{Value, json};
use sqlx::PgPool;
use stellaops_federation::dsse::{Signer, TrustedKeys};
use stellaops_federation::osv::{self, Parsed};

pub fn osv_doc(id: &str, package: &str, fixed: &str, severity: &str) -> Value {
    json!({
        "schema_version": "1.6.0",
        "id": id,
        "aliases": [format!("CVE-2024-{}", &id[id.len() - 4..])],
        // Quotes, a tab, a backslash and a newline: they must survive every layer (JSON,
        // COPY escaping, NDJSON) byte for byte.
        "summary": format!("{package} before {fixed} is \"vulnerable\"\tsee C:\\{package}\nsecond line"),
        "published": "2024-03-01T10:00:00Z",
        "modified": "2024-03-02T11:30:00.123456789Z",
        "affected": [{
            "package": {"ecosystem": "npm", "name": package},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": fixed}]}]
        }],
        "database_specific": {"severity": severity}
    })
}

pub fn parse(doc: &Value) -> Parsed {
    let fetched = Utc.with_ymd_and_hms(2024, 3, 3, 0, 0, 0).unwrap();
    osv::parse(
        "test.json",
        &serde_json::to_vec(doc).unwrap(),
        None,
        fetched,
    )
    .unwrap()
}

pub fn key_pair() -> (Signer, TrustedKeys) {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let mut trusted = TrustedKeys::default();
    trusted.push(*key.verifying_key());
    (Signer::from_key(key), trusted)
}

pub async fn database(name: &str) -> Option<PgPool> {
    let pool = stellaops_testing::migrated_database(name, &stellaops_store::MIGRATOR).await?;
    Some(pool)
}

pub async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}
