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

/// The members of a bundle's archive, in order, as (name, bytes).
pub fn bundle_members(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read as _;
    let mut tar_bytes = Vec::new();
    zstd::stream::read::Decoder::new(bytes)
        .unwrap()
        .read_to_end(&mut tar_bytes)
        .unwrap();
    let mut members = Vec::new();
    for entry in tar::Archive::new(tar_bytes.as_slice()).entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        members.push((name, content));
    }
    members
}

/// `members` as a bundle in canonical form, written by the `tar` crate (not by ours).
pub fn bundle_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content) in members {
        let mut header = tar::Header::new_ustar();
        header.set_path(name).unwrap();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, content.as_slice()).unwrap();
    }
    zstd::bulk::compress(&builder.into_inner().unwrap(), 3).unwrap()
}
