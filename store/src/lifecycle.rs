//! Artifact lifecycle (release-and-operations §7): what the platform writes to S3 falls
//! into retention classes by key prefix.
//!
//! * `short` — working artifacts (image diffs): expire after `Retention::short`. Nothing
//!   refers to them, so a bucket lifecycle rule does it where the store supports one; a
//!   sweep does it otherwise.
//! * `default` — SBOMs, layer fragments, indexes: expire after `Retention::default`,
//!   except what a *current* scan result (the latest per image digest) points to. A bucket
//!   rule cannot know that, so only the sweep removes them.
//! * `compliance` — signed verdicts and attestations: never expired by the platform. A
//!   pass reports any bucket rule (ours or not) that would expire them, and the Platform's
//!   upgrade checklist refuses to start while one does (§12: "ILM won't purge compliance
//!   artifacts during the upgrade window").
//!
//! Keys outside these prefixes (federation bundles, Concelier exports under prefixes the
//! user chose) are never touched.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter,
};
use sqlx::{PgPool, Row};

use crate::{Error, Result};

/// A retention class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Working artifacts.
    Short,
    /// SBOMs, fragments, indexes.
    Default,
    /// Signed verdicts and attestations.
    Compliance,
}

impl Class {
    /// The name used in metrics, logs and the pass record.
    pub fn name(self) -> &'static str {
        match self {
            Class::Short => "short",
            Class::Default => "default",
            Class::Compliance => "compliance",
        }
    }
}

/// Every classified prefix of the platform bucket (the layout of [`crate::s3::layout`]).
pub const PREFIXES: &[(&str, Class)] = &[
    ("scanner/diffs/", Class::Short),
    ("scanner/layers/", Class::Default),
    ("scanner/images/", Class::Default),
    ("scanner/sboms/", Class::Default),
    ("scanner/indexes/", Class::Default),
    ("scanner/attest/", Class::Compliance),
    ("attest/", Class::Compliance),
    ("attestor/", Class::Compliance),
];

/// The id of the bucket lifecycle rule this module manages (other rules are kept as found).
pub const SHORT_RULE_ID: &str = "stellaops-short";

/// The class of an object key, `None` for keys the lifecycle leaves alone.
pub fn class_of(key: &str) -> Option<Class> {
    PREFIXES
        .iter()
        .find(|(prefix, _)| key.starts_with(prefix))
        .map(|(_, class)| *class)
}

/// How long each expiring class is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// `short` objects.
    pub short: Duration,
    /// `default` objects not pinned by a current result.
    pub default: Duration,
}

const DAY: u64 = 24 * 3600;

impl Default for Retention {
    /// The seed's ranges: 7–14 days and 90–180 days; the long end of each.
    fn default() -> Self {
        Retention {
            short: Duration::from_secs(14 * DAY),
            default: Duration::from_secs(180 * DAY),
        }
    }
}

impl Retention {
    /// From whole days.
    pub fn days(short: u32, default: u32) -> Self {
        Retention {
            short: Duration::from_secs(u64::from(short) * DAY),
            default: Duration::from_secs(u64::from(default) * DAY),
        }
    }

    fn of(&self, class: Class) -> Option<Duration> {
        match class {
            Class::Short => Some(self.short),
            Class::Default => Some(self.default),
            Class::Compliance => None,
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pass {
    /// The `short` class is expired by a bucket lifecycle rule (else by this sweep).
    pub bucket_rule: bool,
    /// Why the store's lifecycle rules could not be read or written, when it has none.
    pub bucket_rule_unsupported: Option<String>,
    /// Objects listed under the swept prefixes.
    pub listed: u64,
    /// Objects deleted, by class name.
    pub deleted_short: u64,
    /// Objects deleted, by class name.
    pub deleted_default: u64,
    /// Bytes deleted.
    pub bytes_deleted: u64,
    /// Expired `default` objects kept because a current result points to them.
    pub pinned: u64,
    /// The pass stopped at its bound; the next one continues.
    pub truncated: bool,
    /// A bucket rule that would expire compliance artifacts, described.
    pub compliance_at_risk: Option<String>,
}

/// Bounds of one pass, so a huge bucket costs one pass a bounded time and memory.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Most keys listed.
    pub max_listed: u64,
    /// Most objects deleted.
    pub max_deleted: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_listed: 1_000_000,
            max_deleted: 100_000,
        }
    }
}

/// The rules a lifecycle configuration has that would expire objects under a
/// compliance prefix, described for a person (`None`: compliance artifacts are safe).
pub fn compliance_risk(rules: &[LifecycleRule]) -> Option<String> {
    let mut risks = Vec::new();
    for rule in rules {
        if rule.status() != &ExpirationStatus::Enabled {
            continue;
        }
        let expires = rule.expiration().is_some()
            || rule.noncurrent_version_expiration().is_some()
            || rule.transitions().iter().len() > 0;
        if !expires {
            continue;
        }
        // A rule narrowed by tags or sizes applies only to objects so tagged or sized; the
        // platform writes compliance artifacts without tags, so only the prefix counts,
        // and a size condition is still a risk (signed verdicts are small, not zero).
        #[allow(deprecated)] // `Rule.Prefix`, the pre-filter form some stores still return
        let prefix = match rule.filter() {
            Some(filter) => match filter_prefix(filter) {
                FilterScope::Prefix(p) => p,
                FilterScope::TaggedOnly => continue,
            },
            None => rule.prefix().unwrap_or_default().to_string(),
        };
        for (compliance, _) in PREFIXES.iter().filter(|(_, c)| *c == Class::Compliance) {
            if compliance.starts_with(&prefix) || prefix.starts_with(compliance) {
                let id = rule.id().unwrap_or("(no id)");
                risks.push(format!(
                    "bucket lifecycle rule {id} (prefix {prefix:?}) expires objects under {compliance}"
                ));
                break;
            }
        }
    }
    (!risks.is_empty()).then(|| risks.join("; "))
}

enum FilterScope {
    Prefix(String),
    TaggedOnly,
}

fn filter_prefix(filter: &LifecycleRuleFilter) -> FilterScope {
    if filter.tag().is_some() {
        return FilterScope::TaggedOnly;
    }
    if let Some(and) = filter.and() {
        if !and.tags().is_empty() {
            return FilterScope::TaggedOnly;
        }
        return FilterScope::Prefix(and.prefix().unwrap_or_default().to_string());
    }
    FilterScope::Prefix(filter.prefix().unwrap_or_default().to_string())
}

fn storage_error(what: &str, error: impl std::fmt::Display) -> Error {
    Error::ObjectStorage(format!("{what}: {error}"))
}

/// The bucket's lifecycle rules: `Ok(None)` when the store does not support lifecycle
/// configuration at all, `Ok(Some(vec![]))` when the bucket has none.
async fn bucket_rules(s3: &Client, bucket: &str) -> Result<Option<Vec<LifecycleRule>>, String> {
    match s3
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(out) => Ok(Some(out.rules().to_vec())),
        Err(error) => {
            let code = error
                .as_service_error()
                .and_then(aws_sdk_s3::error::ProvideErrorMetadata::code)
                .map(str::to_string);
            match code.as_deref() {
                Some("NoSuchLifecycleConfiguration") => Ok(Some(Vec::new())),
                Some(code) => Err(code.to_string()),
                None => Err(aws_sdk_s3::error::DisplayErrorContext(&error).to_string()),
            }
        }
    }
}

/// Our `short` rule.
fn short_rule(retention: &Retention) -> Result<LifecycleRule> {
    let days = retention.short.as_secs().div_ceil(DAY).max(1);
    let prefixes: Vec<&str> = PREFIXES
        .iter()
        .filter(|(_, c)| *c == Class::Short)
        .map(|(p, _)| *p)
        .collect();
    // One rule per class: the class has one prefix today.
    let [prefix] = prefixes[..] else {
        return Err(Error::ObjectStorage(
            "the short class must have exactly one prefix".into(),
        ));
    };
    LifecycleRule::builder()
        .id(SHORT_RULE_ID)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
        .expiration(
            LifecycleExpiration::builder()
                .days(i32::try_from(days).unwrap_or(i32::MAX))
                .build(),
        )
        .build()
        .map_err(|e| storage_error("building the lifecycle rule", e))
}

/// Put our `short` rule into the bucket's configuration, keeping every other rule.
async fn apply_short_rule(
    s3: &Client,
    bucket: &str,
    existing: &[LifecycleRule],
    retention: &Retention,
) -> Result<(), String> {
    let mut rules: Vec<LifecycleRule> = existing
        .iter()
        .filter(|r| r.id() != Some(SHORT_RULE_ID))
        .cloned()
        .collect();
    rules.push(short_rule(retention).map_err(|e| e.to_string())?);
    let configuration = BucketLifecycleConfiguration::builder()
        .set_rules(Some(rules))
        .build()
        .map_err(|e| e.to_string())?;
    s3.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(configuration)
        .send()
        .await
        .map(|_| ())
        .map_err(|error| {
            error
                .as_service_error()
                .and_then(aws_sdk_s3::error::ProvideErrorMetadata::code)
                .map(str::to_string)
                .unwrap_or_else(|| aws_sdk_s3::error::DisplayErrorContext(&error).to_string())
        })
}

/// Keys among `keys` (of `bucket`) that a current result — the latest per image digest —
/// points to, directly or as a sibling format of the same SBOM (`….cdx.json` pins
/// `….spdx.json`).
pub async fn pinned_keys(pool: &PgPool, bucket: &str, keys: &[String]) -> Result<HashSet<String>> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let stems: Vec<String> = keys.iter().map(|k| sbom_stem(k).to_string()).collect();
    let uris: Vec<String> = stems
        .iter()
        .map(|stem| format!("s3://{bucket}/{stem}.cdx.json"))
        .collect();
    let rows = sqlx::query(
        "SELECT DISTINCT r.sbom_uri FROM scan_results r
         WHERE r.sbom_uri = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM scan_results newer
                           WHERE newer.image_digest = r.image_digest
                             AND (newer.finished_at, newer.id) > (r.finished_at, r.id))",
    )
    .bind(&uris)
    .fetch_all(pool)
    .await?;
    let current: HashSet<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
    Ok(keys
        .iter()
        .zip(&uris)
        .filter(|(_, uri)| current.contains(*uri))
        .map(|(key, _)| key.clone())
        .collect())
}

/// An SBOM key without its format suffix: the stem every format of one SBOM shares.
fn sbom_stem(key: &str) -> &str {
    [
        ".cdx.json",
        ".spdx.json",
        ".cdx.pb",
        ".cdx.json.zst",
        ".spdx.json.zst",
    ]
    .iter()
    .find_map(|suffix| key.strip_suffix(suffix))
    .unwrap_or(key)
}

struct Candidate {
    key: String,
    size: u64,
    class: Class,
}

/// One lifecycle pass over `bucket` at time `now`: manage the `short` bucket rule (or
/// sweep that class), sweep expired unpinned `default` objects, check the compliance
/// prefixes, and record the pass.
pub async fn run_pass(
    s3: &Client,
    bucket: &str,
    pool: &PgPool,
    retention: &Retention,
    bounds: Bounds,
    now: SystemTime,
) -> Result<Pass> {
    let mut pass = Pass::default();
    let mut swept = vec![Class::Default];
    match bucket_rules(s3, bucket).await {
        Ok(Some(rules)) => {
            pass.compliance_at_risk = compliance_risk(&rules);
            match apply_short_rule(s3, bucket, &rules, retention).await {
                Ok(()) => pass.bucket_rule = true,
                Err(reason) => {
                    pass.bucket_rule_unsupported = Some(reason);
                    swept.push(Class::Short);
                }
            }
        }
        Ok(None) => swept.push(Class::Short),
        Err(reason) => {
            pass.bucket_rule_unsupported = Some(reason);
            swept.push(Class::Short);
        }
    }

    for (prefix, class) in PREFIXES.iter().filter(|(_, c)| swept.contains(c)) {
        let Some(age) = retention.of(*class) else {
            continue;
        };
        let cutoff = now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut token: Option<String> = None;
        loop {
            if pass.listed >= bounds.max_listed || pass.deleted() >= bounds.max_deleted {
                pass.truncated = true;
                break;
            }
            let page = s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(*prefix)
                .max_keys(1000)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    storage_error(
                        &format!("listing s3://{bucket}/{prefix}"),
                        aws_sdk_s3::error::DisplayErrorContext(&e),
                    )
                })?;
            let mut expired = Vec::new();
            for object in page.contents() {
                pass.listed += 1;
                let (Some(key), Some(modified)) = (object.key(), object.last_modified()) else {
                    continue;
                };
                let modified = SystemTime::try_from(*modified).unwrap_or(SystemTime::UNIX_EPOCH);
                if modified < cutoff {
                    expired.push(Candidate {
                        key: key.to_string(),
                        size: object.size().unwrap_or(0).max(0) as u64,
                        class: *class,
                    });
                }
            }
            let pinned = if *class == Class::Default {
                let keys: Vec<String> = expired.iter().map(|c| c.key.clone()).collect();
                pinned_keys(pool, bucket, &keys).await?
            } else {
                HashSet::new()
            };
            for candidate in expired {
                if pinned.contains(&candidate.key) {
                    pass.pinned += 1;
                    continue;
                }
                if pass.deleted() >= bounds.max_deleted {
                    pass.truncated = true;
                    break;
                }
                s3.delete_object()
                    .bucket(bucket)
                    .key(&candidate.key)
                    .send()
                    .await
                    .map_err(|e| {
                        storage_error(
                            &format!("deleting s3://{bucket}/{}", candidate.key),
                            aws_sdk_s3::error::DisplayErrorContext(&e),
                        )
                    })?;
                pass.bytes_deleted += candidate.size;
                match candidate.class {
                    Class::Short => pass.deleted_short += 1,
                    _ => pass.deleted_default += 1,
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
    }
    record(pool, bucket, &pass).await?;
    Ok(pass)
}

impl Pass {
    fn deleted(&self) -> u64 {
        self.deleted_short + self.deleted_default
    }
}

async fn record(pool: &PgPool, bucket: &str, pass: &Pass) -> Result<()> {
    sqlx::query(
        "INSERT INTO artifact_lifecycle_passes (bucket, pass, compliance_at_risk)
         VALUES ($1, $2, $3)",
    )
    .bind(bucket)
    .bind(sqlx::types::Json(pass))
    .bind(&pass.compliance_at_risk)
    .execute(pool)
    .await?;
    Ok(())
}

/// The latest pass's compliance risk, for the upgrade checklist: `Some(description)` when
/// the last pass over any bucket found a rule that would expire compliance artifacts.
pub async fn compliance_at_risk(pool: &PgPool) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT DISTINCT ON (bucket) bucket, compliance_at_risk FROM artifact_lifecycle_passes
         ORDER BY bucket, id DESC",
    )
    .fetch_all(pool)
    .await?;
    let risks: Vec<String> = row
        .iter()
        .filter_map(|r| {
            let bucket: String = r.get(0);
            r.get::<Option<String>, _>(1)
                .map(|risk| format!("s3://{bucket}: {risk}"))
        })
        .collect();
    Ok((!risks.is_empty()).then(|| risks.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fall_into_their_class_and_others_are_left_alone() {
        assert_eq!(
            class_of("scanner/diffs/a_b/diff.json.zst"),
            Some(Class::Short)
        );
        assert_eq!(
            class_of("scanner/images/abc/inventory.cdx.json"),
            Some(Class::Default)
        );
        assert_eq!(
            class_of("scanner/layers/abc/sbom.cdx.json.zst"),
            Some(Class::Default)
        );
        assert_eq!(class_of("attest/abc.dsse.json"), Some(Class::Compliance));
        assert_eq!(class_of("concelier/json/1/index.json"), None);
        assert_eq!(class_of("federation/bundle-000000000001.tar.zst"), None);
        assert_eq!(class_of("scanner/sboms/abc.cdx.json"), Some(Class::Default));
        assert_eq!(class_of("scanner/imagesX/a"), None);
    }

    #[test]
    fn formats_of_one_sbom_share_a_stem() {
        assert_eq!(
            sbom_stem("scanner/images/a/inventory.spdx.json"),
            "scanner/images/a/inventory"
        );
        assert_eq!(
            sbom_stem("scanner/images/a/inventory.cdx.json"),
            "scanner/images/a/inventory"
        );
        assert_eq!(
            sbom_stem("scanner/layers/a/x.bin"),
            "scanner/layers/a/x.bin"
        );
    }

    fn rule(id: &str, filter: Option<LifecycleRuleFilter>, days: Option<i32>) -> LifecycleRule {
        let mut builder = LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Enabled)
            .set_filter(filter);
        if let Some(days) = days {
            builder = builder.expiration(LifecycleExpiration::builder().days(days).build());
        }
        builder.build().unwrap()
    }

    #[test]
    fn rules_that_would_expire_compliance_artifacts_are_named() {
        let prefix = |p: &str| Some(LifecycleRuleFilter::builder().prefix(p).build());
        assert_eq!(compliance_risk(&[]), None);
        assert_eq!(
            compliance_risk(&[rule("diffs", prefix("scanner/diffs/"), Some(7))]),
            None
        );
        let everything = compliance_risk(&[rule("all", prefix(""), Some(30))]).unwrap();
        assert!(
            everything.contains("all") && everything.contains("attest/"),
            "{everything}"
        );
        assert!(compliance_risk(&[rule("a", prefix("attest/2026"), Some(30))]).is_some());
        assert!(compliance_risk(&[rule("s", prefix("scanner/"), Some(30))]).is_some());
        // Tagged-only rules and rules without an expiration do not reach them.
        let tagged = LifecycleRuleFilter::builder()
            .tag(
                aws_sdk_s3::types::Tag::builder()
                    .key("tmp")
                    .value("1")
                    .build()
                    .unwrap(),
            )
            .build();
        assert_eq!(compliance_risk(&[rule("t", Some(tagged), Some(1))]), None);
        assert_eq!(compliance_risk(&[rule("n", prefix(""), None)]), None);
        let disabled = LifecycleRule::builder()
            .id("off")
            .status(ExpirationStatus::Disabled)
            .set_filter(prefix(""))
            .expiration(LifecycleExpiration::builder().days(1).build())
            .build()
            .unwrap();
        assert_eq!(compliance_risk(&[disabled]), None);
    }
}
