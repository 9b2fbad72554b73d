//! ingest → export → validate → import on a second database, and every refusal leaving
//! the store unchanged. Real PostgreSQL.

use serde_json::{Value, json};
use sqlx::PgPool;
use stellaops_federation::cursor::Cursor;
use stellaops_federation::dsse::TrustedKeys;
use stellaops_federation::events::CanonicalImported;
use stellaops_federation::export::{ExportOptions, ExportedBundle, export};
use stellaops_federation::import::{ImportError, ImportOptions, OnConflict, import};
use stellaops_federation::sites::{self, PolicyUpdate};
use stellaops_federation::{ingest, validate};

use crate::fixtures::{bundle_members, bundle_of, count, database, key_pair, osv_doc, parse};

fn docs(n: usize) -> Vec<serde_json::Value> {
    (1..=n)
        .map(|i| {
            osv_doc(
                &format!("GHSA-test-{i:04}-{i:04}"),
                &format!("pkg-{i}"),
                "1.2.3",
                "HIGH",
            )
        })
        .collect()
}

async fn ingest_docs(pool: &PgPool, docs: &[serde_json::Value]) -> ingest::IngestSummary {
    ingest::ingest(pool, docs.iter().map(parse).collect())
        .await
        .unwrap()
}

async fn export_all(
    pool: &PgPool,
    since: Option<Cursor>,
    signer: &stellaops_federation::dsse::Signer,
    max_items: usize,
) -> Vec<ExportedBundle> {
    export(
        pool,
        &ExportOptions {
            site_id: "site-a".into(),
            since,
            max_items,
            compression_level: 3,
            signer: Some(signer),
        },
    )
    .await
    .unwrap()
}

fn options() -> ImportOptions {
    ImportOptions {
        max_bundle_size_bytes: 1 << 30,
        ..Default::default()
    }
}

async fn allow_site_a(pool: &PgPool) {
    sites::set_policy(
        pool,
        "site-a",
        &PolicyUpdate {
            display_name: Some("Site A".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

/// Site a's bundles are taken unsigned (tests that rewrite or build bundles by hand).
async fn accept_unsigned_from_site_a(pool: &PgPool) {
    sites::set_policy(
        pool,
        "site-a",
        &PolicyUpdate {
            require_signature: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

/// Row counts of everything an import may touch.
async fn snapshot(pool: &PgPool) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in [
        "canonical_advisories",
        "advisory_source_edges",
        "advisory_deletions",
        "events_outbox",
        "federation_imported_bundles",
    ] {
        counts.push(count(pool, table).await);
    }
    let cursor: Option<String> =
        sqlx::query_scalar("SELECT last_cursor FROM federation_sites WHERE site_id = 'site-a'")
            .fetch_optional(pool)
            .await
            .unwrap()
            .flatten();
    counts.push(cursor.map_or(0, |c| c.parse::<Cursor>().unwrap().seq));
    counts
}

#[tokio::test]
async fn ingest_is_idempotent_and_a_modified_document_advances_the_cursor() {
    let Some(pool) = database("fed_ingest").await else {
        return;
    };
    let first = ingest_docs(&pool, &docs(3)).await;
    assert_eq!((first.created, first.updated, first.edges), (3, 0, 3));
    let again = ingest_docs(&pool, &docs(3)).await;
    assert_eq!(
        (again.created, again.updated, again.unchanged, again.edges),
        (0, 0, 3, 0)
    );
    assert_eq!(
        again.cursor, first.cursor,
        "re-ingesting the same documents changes nothing"
    );

    let mut modified = docs(3);
    modified[1]["affected"][0]["ranges"][0]["events"][1]["fixed"] = json!("1.2.4");
    let third = ingest_docs(&pool, &modified).await;
    assert_eq!((third.created, third.updated, third.unchanged), (0, 1, 2));
    let (before, after): (Cursor, Cursor) = (
        first.cursor.unwrap().parse().unwrap(),
        third.cursor.unwrap().parse().unwrap(),
    );
    assert!(after > before);

    // An NVD record for the same CVE and package adds an edge but never overrides GHSA.
    let mut nvd = osv_doc("CVE-2024-0001", "pkg-1", "9.9.9", "LOW");
    nvd["aliases"] = json!([]);
    let summary = ingest_docs(&pool, &[nvd]).await;
    assert_eq!((summary.updated, summary.edges), (0, 1));

    // Withdrawal removes the canonical and records a deletion.
    let mut withdrawn = docs(1).remove(0);
    withdrawn["withdrawn"] = json!("2024-04-01T00:00:00Z");
    let summary = ingest_docs(&pool, &[withdrawn]).await;
    assert_eq!(summary.withdrawn, 1);
    assert_eq!(count(&pool, "advisory_deletions").await, 1);
    // Published again, it is recreated and no longer deleted.
    let summary = ingest_docs(&pool, &docs(1)).await;
    assert_eq!(summary.created, 1);
    assert_eq!(count(&pool, "advisory_deletions").await, 0);
}

// Multi-threaded, so imports build their COPY rows on a thread of their own (the other
// tests build them between sends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_and_delta_round_trip_between_two_sites() {
    let (Some(a), Some(b)) = (database("fed_rt_a").await, database("fed_rt_b").await) else {
        return;
    };
    let (signer, trusted) = key_pair();
    ingest_docs(&a, &docs(5)).await;
    let full = export_all(&a, None, &signer, 10_000).await;
    assert_eq!(full.len(), 1);
    assert_eq!((full[0].counts.canonicals, full[0].counts.edges), (5, 5));

    let report = validate::report("full.zst", &full[0].bytes, 1 << 30, &trusted, true);
    assert!(report.ready, "{}", report.text);
    assert!(
        report
            .text
            .contains("Version: feedser-bundle/1.0\nSite: site-a\n"),
        "{}",
        report.text
    );
    assert!(
        report
            .text
            .contains(&format!("Signature: ✓ Valid (key: {})", signer.key_id())),
        "{}",
        report.text
    );

    allow_site_a(&b).await;
    let dry = import(
        &b,
        &full[0].bytes,
        &ImportOptions {
            dry_run: true,
            ..options()
        },
        &trusted,
    )
    .await
    .unwrap();
    assert_eq!(dry.counts.canonical_created, 5);
    assert_eq!(
        count(&b, "canonical_advisories").await,
        0,
        "a dry run writes nothing"
    );

    let response = import(&b, &full[0].bytes, &options(), &trusted)
        .await
        .unwrap();
    assert!(response.success);
    assert_eq!(
        (
            response.counts.canonical_created,
            response.counts.edges_added
        ),
        (5, 5)
    );
    assert_eq!(response.imported_cursor, full[0].cursor);
    assert_eq!(response.signed_by.as_deref(), Some(signer.key_id()));
    let body = serde_json::to_value(&response).unwrap();
    for key in [
        "success",
        "bundle_hash",
        "imported_cursor",
        "counts",
        "conflicts",
        "duration_ms",
    ] {
        assert!(body.get(key).is_some(), "response lacks {key}");
    }
    // The columns hold what the documents say (they are COPYed in binary form).
    let disagreeing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM canonical_advisories c, LATERAL (SELECT c.document::jsonb AS d) j
         WHERE c.vuln_id <> d->>'vuln_id' OR c.cve IS DISTINCT FROM d->>'cve'
            OR c.aliases <> ARRAY(SELECT jsonb_array_elements_text(coalesce(d->'aliases', '[]')))
            OR c.versions <> ARRAY(SELECT jsonb_array_elements_text(coalesce(d->'versions', '[]')))
            OR c.ranges <> coalesce(d->'ranges', '[]') OR c.cvss IS DISTINCT FROM d->'cvss'
            OR c.severity IS DISTINCT FROM d->>'severity' OR c.summary IS DISTINCT FROM d->>'summary'
            OR c.published IS DISTINCT FROM (d->>'published')::timestamptz
            OR c.modified IS DISTINCT FROM (d->>'modified')::timestamptz
            OR c.withdrawn IS DISTINCT FROM (d->>'withdrawn')::timestamptz
            OR c.content_hash <> 'sha256:' || encode(sha256(convert_to(c.document, 'UTF8')), 'hex')
            OR c.origin_site IS DISTINCT FROM 'site-a'",
    )
    .fetch_one(&b)
    .await
    .unwrap();
    assert_eq!(disagreeing, 0);
    let edges_disagreeing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM advisory_source_edges e, LATERAL (SELECT e.document::jsonb AS d) j
         WHERE e.merge_hash <> d->>'merge_hash' OR e.source <> d->>'source'
            OR e.source_advisory_id <> d->>'source_advisory_id' OR e.document_hash <> d->>'document_hash'
            OR e.fetched_at <> (d->>'fetched_at')::timestamptz",
    )
    .fetch_one(&b)
    .await
    .unwrap();
    assert_eq!(edges_disagreeing, 0);
    // One canonical-imported row holding the five created canonicals, then the summary.
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM events_outbox ORDER BY id")
        .fetch_all(&b)
        .await
        .unwrap();
    assert_eq!(kinds, ["canonical-imported", "federation.imported"]);
    let payload: Value =
        sqlx::query_scalar("SELECT payload FROM events_outbox WHERE kind = 'canonical-imported'")
            .fetch_one(&b)
            .await
            .unwrap();
    let row: CanonicalImported<'_> = serde_json::from_value(payload).unwrap();
    assert_eq!(row.seed_events().len(), 5);
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("federation.imported")
    );

    // Same content on both sides.
    let digest = |pool: PgPool| async move {
        sqlx::query_scalar::<_, String>(
            "SELECT string_agg(content_hash, ',' ORDER BY merge_hash) FROM canonical_advisories",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(digest(a.clone()).await, digest(b.clone()).await);

    // Delta: one modified document, one new.
    let mut next = docs(6);
    next[2]["affected"][0]["ranges"][0]["events"][1]["fixed"] = json!("2.0.0");
    ingest_docs(&a, &next).await;
    let since: Cursor = full[0].cursor.parse().unwrap();
    let delta = export_all(&a, Some(since), &signer, 10_000).await;
    assert_eq!(delta.len(), 1);
    assert_eq!(
        delta[0].counts.canonicals, 2,
        "only what changed since the cursor"
    );
    let response = import(&b, &delta[0].bytes, &options(), &trusted)
        .await
        .unwrap();
    assert_eq!(
        (
            response.counts.canonical_created,
            response.counts.canonical_updated
        ),
        (1, 1)
    );
    assert!(
        response.conflicts.is_empty(),
        "updates from the origin site are not conflicts"
    );
    assert_eq!(digest(a.clone()).await, digest(b.clone()).await);
    // The delta's events: one row, the created canonical first, then the updated one,
    // each with the change number its write took; the row keyed by the first of them,
    // its severity the highest of its canonicals', its time the transaction's now().
    let rows: Vec<(String, Option<String>, Value, String, bool)> = sqlx::query_as(
        "SELECT e.subject, e.severity, e.payload, e.idempotency_key,
                e.payload->>'imported_at' = to_json(e.created_at) #>> '{}'
         FROM events_outbox e
         WHERE e.kind = 'canonical-imported' AND e.payload->>'bundle_hash' = $1 ORDER BY e.id",
    )
    .bind(&response.bundle_hash)
    .fetch_all(&b)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    let (subject, severity, payload, key, at_commit) = &rows[0];
    assert_eq!(subject, "site-a");
    assert!(at_commit, "imported_at is the transaction's now()");
    let row: CanonicalImported<'_> = serde_json::from_value(payload.clone()).unwrap();
    assert_eq!(row.items.len(), 2);
    assert_eq!(*key, format!("canonical-imported/{:019}", row.items[0].0));
    let mut severities = Vec::new();
    for (item, (event, action)) in row
        .items
        .iter()
        .zip(row.seed_events().into_iter().zip(["Created", "Updated"]))
    {
        let stored: (Option<String>, Option<String>, String, i64) = sqlx::query_as(
            "SELECT cve, severity, affects_key, change_seq FROM canonical_advisories WHERE merge_hash = $1",
        )
        .bind(&*item.1)
        .fetch_one(&b)
        .await
        .unwrap();
        assert_eq!(
            item.0, stored.3,
            "the item carries its write's change number"
        );
        assert_eq!(item.5.as_deref(), stored.1.as_deref());
        severities.extend(stored.1.clone());
        let mut event = event;
        assert!(event["imported_at"].as_str().is_some());
        event.as_object_mut().unwrap().remove("imported_at");
        assert_eq!(
            event,
            json!({"canonical_id": &*item.1, "merge_hash": &*item.1, "cve": stored.0,
                   "affects_key": stored.2, "action": action,
                   "bundle_hash": response.bundle_hash, "site_id": "site-a"})
        );
    }
    let highest = severities
        .iter()
        .max_by_key(|s| stellaops_policy::evaluate::rank(s))
        .cloned();
    assert_eq!(*severity, highest);

    // The status the seed's `sites list` shows.
    let site = sites::list(&b).await.unwrap().remove(0);
    assert_eq!(site.last_cursor.as_deref(), Some(delta[0].cursor.as_str()));
    assert_eq!(site.bundles_imported, 2);
    assert_eq!(sites::history(&b, "site-a", 10).await.unwrap().len(), 2);

    // Stale and duplicate bundles are refused and change nothing.
    let before = snapshot(&b).await;
    let stale = import(&b, &full[0].bytes, &options(), &trusted)
        .await
        .unwrap_err();
    assert!(
        stale.to_string().starts_with("Bundle already imported"),
        "{stale}"
    );
    let mut older_site_state = options();
    older_site_state.force = false;
    sqlx::query("DELETE FROM federation_imported_bundles")
        .execute(&b)
        .await
        .unwrap();
    let stale = import(&b, &full[0].bytes, &older_site_state, &trusted)
        .await
        .unwrap_err();
    assert!(
        stale.to_string().starts_with("Cursor not after current"),
        "{stale}"
    );
    assert_eq!(&snapshot(&b).await[..4], &before[..4]);
    // A failed attempt is in the history.
    let history = sites::history(&b, "site-a", 1).await.unwrap();
    assert!(
        !history[0].success
            && history[0]
                .error
                .as_deref()
                .unwrap()
                .starts_with("Cursor not after current")
    );
}

#[tokio::test]
async fn max_items_splits_into_ordered_bundles_and_gaps_are_refused() {
    let (Some(a), Some(b)) = (database("fed_split_a").await, database("fed_split_b").await) else {
        return;
    };
    let (signer, trusted) = key_pair();
    ingest_docs(&a, &docs(7)).await; // 14 changes: 7 canonicals + 7 edges
    let bundles = export_all(&a, None, &signer, 5).await;
    assert_eq!(bundles.len(), 3);
    assert_eq!(
        bundles.iter().map(|b| b.counts.total()).collect::<Vec<_>>(),
        vec![5, 5, 4]
    );
    assert_eq!(
        bundles[1].since_cursor.as_deref(),
        Some(bundles[0].cursor.as_str())
    );
    allow_site_a(&b).await;
    // Skipping the second bundle would lose data: refused.
    import(&b, &bundles[0].bytes, &options(), &trusted)
        .await
        .unwrap();
    let gap = import(&b, &bundles[2].bytes, &options(), &trusted)
        .await
        .unwrap_err();
    assert!(matches!(gap, ImportError::CursorGap { .. }), "{gap}");
    for bundle in &bundles[1..] {
        import(&b, &bundle.bytes, &options(), &trusted)
            .await
            .unwrap();
    }
    assert_eq!(count(&b, "canonical_advisories").await, 7);
    assert_eq!(count(&b, "advisory_source_edges").await, 7);
    // The same data and cursor give byte-identical bundles.
    let again = export_all(&a, None, &signer, 5).await;
    assert!(bundles.iter().zip(&again).all(|(x, y)| x.bytes == y.bytes));
    // A limit beyond any count (even one that does not fit PostgreSQL's bigint) is one bundle.
    let whole = export_all(&a, None, &signer, usize::MAX).await;
    assert_eq!(
        whole.iter().map(|b| b.counts.total()).collect::<Vec<_>>(),
        vec![14]
    );
}

#[tokio::test]
async fn refusals_leave_the_store_unchanged() {
    let (Some(a), Some(b)) = (
        database("fed_refuse_a").await,
        database("fed_refuse_b").await,
    ) else {
        return;
    };
    let (signer, trusted) = key_pair();
    ingest_docs(&a, &docs(3)).await;
    let bundle = export_all(&a, None, &signer, 10_000).await.remove(0);
    let before = snapshot(&b).await;

    let not_allowed = import(&b, &bundle.bytes, &options(), &trusted)
        .await
        .unwrap_err();
    assert!(
        not_allowed.to_string().starts_with("Site not allowed"),
        "{not_allowed}"
    );

    allow_site_a(&b).await;
    let (_, wrong) = key_pair();
    let bad_key = import(&b, &bundle.bytes, &options(), &wrong)
        .await
        .unwrap_err();
    assert!(
        bad_key
            .to_string()
            .starts_with("Signature verification failed"),
        "{bad_key}"
    );

    let unsigned = export(
        &a,
        &ExportOptions {
            site_id: "site-a".into(),
            since: None,
            max_items: 100,
            compression_level: 3,
            signer: None,
        },
    )
    .await
    .unwrap()
    .remove(0);
    let missing = import(&b, &unsigned.bytes, &options(), &trusted)
        .await
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("Signature verification failed"),
        "{missing}"
    );
    let skip = import(
        &b,
        &unsigned.bytes,
        &ImportOptions {
            skip_signature: true,
            ..options()
        },
        &trusted,
    )
    .await
    .unwrap_err();
    assert!(matches!(skip, ImportError::SkipNotTrusted), "{skip}");

    let mut truncated = bundle.bytes.clone();
    truncated.truncate(truncated.len() - 10);
    assert!(import(&b, &truncated, &options(), &trusted).await.is_err());

    sites::set_policy(
        &b,
        "site-a",
        &PolicyUpdate {
            max_bundle_size_bytes: Some(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let large = import(&b, &bundle.bytes, &options(), &trusted)
        .await
        .unwrap_err();
    assert!(large.to_string().starts_with("Bundle too large"), "{large}");
    sites::set_policy(
        &b,
        "site-a",
        &PolicyUpdate {
            max_bundle_size_bytes: Some(1 << 30),
            allowed_sources: Some(vec!["nvd".into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let source = import(&b, &bundle.bytes, &options(), &trusted)
        .await
        .unwrap_err();
    assert!(
        source.to_string().starts_with("Source not allowed: ghsa"),
        "{source}"
    );
    let wrong_hash = import(
        &b,
        &bundle.bytes,
        &ImportOptions {
            expected_hash: Some("sha256:00".into()),
            ..options()
        },
        &TrustedKeys::default(),
    )
    .await;
    assert!(wrong_hash.is_err());

    let after = snapshot(&b).await;
    assert_eq!(
        &after[..5],
        &before[..5],
        "no refused import changed the store"
    );
}

/// `bytes` with each line of the data member `name` rewritten by `edit` (line number
/// from 1, line; an empty answer leaves an empty line, which readers skip), the
/// manifest's digest and size of that member made to match and the signature dropped:
/// a bundle that unpacks, for the parse to judge.
fn with_member_lines(bytes: &[u8], name: &str, edit: impl Fn(usize, &str) -> String) -> Vec<u8> {
    let mut members = bundle_members(bytes);
    members.retain(|(name, _)| name != "SIGNATURE.json");
    let (_, member) = members.iter_mut().find(|(n, _)| n == name).unwrap();
    let text = String::from_utf8(member.clone()).unwrap();
    *member = text
        .lines()
        .enumerate()
        .map(|(i, line)| edit(i + 1, line) + "\n")
        .collect::<String>()
        .into_bytes();
    let digest =
        json!({"sha256": stellaops_store::advisories::sha256_hex(member), "size": member.len()});
    let (_, manifest) = members
        .iter_mut()
        .find(|(name, _)| name == "MANIFEST.json")
        .unwrap();
    let mut value: Value = serde_json::from_slice(manifest).unwrap();
    value["files"][name] = digest;
    *manifest = serde_json::to_vec(&value).unwrap();
    bundle_of(&members)
}

fn with_canonical_lines(bytes: &[u8], edit: impl Fn(usize, &str) -> String) -> Vec<u8> {
    with_member_lines(bytes, "canonicals.ndjson", edit)
}

/// The import reads each canonical's key by a quick pass and writes its events while the
/// bundle is still being parsed: a bundle that pass reads but the parse refuses must be
/// refused as a corrupt bundle (before any site check's verdict), roll back what was
/// written meanwhile, and leave no history.
#[tokio::test]
async fn a_bundle_the_parse_refuses_after_the_quick_pass_changes_nothing() {
    let (Some(a), Some(b), Some(c)) = (
        database("fed_late_a").await,
        database("fed_late_b").await,
        database("fed_late_c").await,
    ) else {
        return;
    };
    let (signer, _) = key_pair();
    ingest_docs(&a, &docs(4)).await;
    let bundle = export_all(&a, None, &signer, 10_000).await.remove(0);
    for pool in [&b, &c] {
        accept_unsigned_from_site_a(pool).await;
    }
    // c does not take site-a's bundles at all.
    sites::set_policy(
        &c,
        "site-a",
        &PolicyUpdate {
            enabled: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let history = |pool: &PgPool| {
        let pool = pool.clone();
        async move { count(&pool, "federation_sync_history").await }
    };
    let before = (snapshot(&b).await, history(&b).await);

    // The error an import of `bytes` into `pool` ends with.
    let refusal = |pool: &PgPool, bytes: Vec<u8>| {
        let pool = pool.clone();
        async move {
            import(&pool, &bytes, &options(), &TrustedKeys::default())
                .await
                .unwrap_err()
                .to_string()
        }
    };
    // The bundle with a field no reader knows on line `at` of `member`.
    let with_extra_field = |member: &str, at: usize| {
        with_member_lines(&bundle.bytes, member, |n, line| {
            if n == at {
                line.replacen('{', "{\"extra\":1,", 1)
            } else {
                line.to_string()
            }
        })
    };

    let unknown_field = with_extra_field("canonicals.ndjson", 3);
    let error = refusal(&b, unknown_field.clone()).await;
    assert!(
        error.starts_with("Bundle is corrupt: canonicals.ndjson line 3: unknown field `extra`"),
        "{error}"
    );
    let error = refusal(&c, unknown_field).await;
    assert!(
        error.starts_with("Bundle is corrupt: canonicals.ndjson line 3"),
        "the bundle's own fault is named first, as when it was parsed first: {error}"
    );

    let wrong_merge_hash = with_canonical_lines(&bundle.bytes, |n, line| {
        let mut value: Value = serde_json::from_str(line).unwrap();
        if n == 2 {
            value["merge_hash"] = json!(format!("sha256:{:064x}", 7));
        }
        serde_json::to_string(&value).unwrap()
    });
    let error = refusal(&b, wrong_merge_hash).await;
    assert!(
        error.contains("has a merge hash that does not match its identity"),
        "{error}"
    );
    // The edges are parsed while the canonicals are written: a fault found there is
    // refused as well, after rows were written, and they go with the transaction.
    let error = refusal(&b, with_extra_field("edges.ndjson", 2)).await;
    assert!(
        error.starts_with("Bundle is corrupt: edges.ndjson line 2: unknown field `extra`"),
        "{error}"
    );
    let edge_missing = with_member_lines(&bundle.bytes, "edges.ndjson", |n, line| {
        if n == 4 {
            String::new()
        } else {
            line.to_string()
        }
    });
    let error = refusal(&b, edge_missing).await;
    assert!(
        error.starts_with("Bundle is corrupt: counts") && error.contains("edges: 3"),
        "{error}"
    );
    assert_eq!(
        (snapshot(&b).await, history(&b).await),
        before,
        "no row, event or history entry stays behind"
    );

    // The same rewriting without a fault imports: the refusals above are the faults'.
    let intact = with_canonical_lines(&bundle.bytes, |_, line| line.to_string());
    let imported = import(&b, &intact, &options(), &TrustedKeys::default())
        .await
        .unwrap();
    assert_eq!(imported.counts.canonical_created, 4);
    assert_eq!(
        count(&b, "events_outbox").await,
        before.0[3] + 1 + 1,
        "a row of the four canonicals' events and one event for the bundle"
    );
}

#[tokio::test]
async fn conflicts_follow_the_strategy() {
    let (Some(a), Some(b)) = (
        database("fed_conflict_a").await,
        database("fed_conflict_b").await,
    ) else {
        return;
    };
    let (signer, trusted) = key_pair();
    ingest_docs(&a, &docs(2)).await;
    // Site B ingested its own, different view of the first advisory.
    let mut local = docs(1);
    local[0]["database_specific"]["severity"] = json!("CRITICAL");
    ingest_docs(&b, &local).await;
    allow_site_a(&b).await;
    let bundle = export_all(&a, None, &signer, 100).await.remove(0);

    let fail = import(
        &b,
        &bundle.bytes,
        &ImportOptions {
            on_conflict: OnConflict::Fail,
            ..options()
        },
        &trusted,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&fail, ImportError::Conflict { field, .. } if field == "severity"),
        "{fail}"
    );
    assert_eq!(
        count(&b, "canonical_advisories").await,
        1,
        "on_conflict=fail writes nothing"
    );

    let keep = import(
        &b,
        &bundle.bytes,
        &ImportOptions {
            on_conflict: OnConflict::PreferLocal,
            dry_run: true,
            ..options()
        },
        &trusted,
    )
    .await
    .unwrap();
    assert_eq!(
        (keep.counts.canonical_created, keep.counts.canonical_skipped),
        (1, 1)
    );
    let conflict = serde_json::to_value(&keep.conflicts[0]).unwrap();
    assert_eq!(conflict["field"], "severity");
    assert_eq!(
        (
            conflict["local_value"].as_str(),
            conflict["remote_value"].as_str()
        ),
        (Some("critical"), Some("high"))
    );
    assert_eq!(conflict["resolution"], "prefer_local");

    let remote = import(&b, &bundle.bytes, &options(), &trusted)
        .await
        .unwrap();
    assert_eq!(
        (
            remote.counts.canonical_created,
            remote.counts.canonical_updated
        ),
        (1, 1)
    );
    assert_eq!(remote.conflicts[0].resolution, OnConflict::PreferRemote);
    let severity: String = sqlx::query_scalar(
        "SELECT severity FROM canonical_advisories WHERE vuln_id = 'CVE-2024-0001'",
    )
    .fetch_one(&b)
    .await
    .unwrap();
    assert_eq!(severity, "high");
}

#[tokio::test]
async fn an_import_failing_mid_transaction_leaves_no_rows_and_can_be_retried() {
    let (Some(a), Some(b)) = (
        database("fed_atomic_a").await,
        database("fed_atomic_b").await,
    ) else {
        return;
    };
    let (signer, trusted) = key_pair();
    ingest_docs(&a, &docs(4)).await;
    let bundle = export_all(&a, None, &signer, 100).await.remove(0);
    allow_site_a(&b).await;
    // Make the database fail while the edges are being written, after the canonicals.
    sqlx::query(
        "CREATE FUNCTION fail_edges() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'simulated crash during import'; END $$",
    )
    .execute(&b)
    .await
    .unwrap();
    sqlx::query("CREATE TRIGGER fail_edges BEFORE INSERT ON advisory_source_edges FOR EACH ROW EXECUTE FUNCTION fail_edges()")
        .execute(&b)
        .await
        .unwrap();
    let before = snapshot(&b).await;
    let error = import(&b, &bundle.bytes, &options(), &trusted)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("simulated crash"), "{error}");
    assert_eq!(&snapshot(&b).await[..5], &before[..5], "no partial rows");
    sqlx::query("DROP TRIGGER fail_edges ON advisory_source_edges")
        .execute(&b)
        .await
        .unwrap();
    let response = import(&b, &bundle.bytes, &options(), &trusted)
        .await
        .unwrap();
    assert_eq!(
        (
            response.counts.canonical_created,
            response.counts.edges_added
        ),
        (4, 4)
    );
}

/// Export streams each table through grouped binary COPY into the compressing writer.
/// With thousands of interleaved changes (several groups per member, bundle cuts inside
/// groups, text that needs escaping) every bundle must hold exactly the stored lines of
/// its cursor range in sequence order, and be byte-identical to the bundle written from
/// the same items in memory.
#[tokio::test]
async fn streamed_export_matches_the_store_and_the_in_memory_writer() {
    use stellaops_federation::bundle::{self, Contents};
    use stellaops_store::advisories::{self, CanonicalAdvisory, Deletion, SourceEdge};
    let Some(a) = database("fed_stream_a").await else {
        return;
    };
    let (signer, _) = key_pair();
    let fetched = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2024, 5, 1, 0, 0, 0).unwrap();
    let canonical = |i: usize| {
        let vuln_id = format!("CVE-2024-{i:05}");
        let affects_key = format!("pkg:npm/stream-{i}");
        CanonicalAdvisory {
            merge_hash: CanonicalAdvisory::merge_hash_of(&vuln_id, &affects_key),
            cve: Some(vuln_id.clone()),
            vuln_id,
            aliases: vec![],
            affects_key,
            ecosystem: "npm".into(),
            ranges: json!([{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "2.0.0"}]}]),
            versions: vec![],
            severity: Some("high".into()),
            cvss: None,
            summary: Some(format!("row {i}: \"quoted\"\ttab \\ backslash\nnewline é")),
            published: Some(fetched),
            modified: None,
            withdrawn: None,
        }
    };
    // Four batches of 700 canonicals, each followed by their edges: members interleave
    // in the change sequence.
    let mut all = Vec::new();
    for batch in 0..4 {
        let canonicals: Vec<CanonicalAdvisory> =
            (batch * 700..(batch + 1) * 700).map(canonical).collect();
        let edges: Vec<SourceEdge> = canonicals
            .iter()
            .map(|c| SourceEdge {
                merge_hash: c.merge_hash.clone(),
                source: "ghsa".into(),
                source_advisory_id: format!("GHSA-{}", &c.vuln_id[9..]),
                document_hash: format!("sha256:{:064}", 7),
                fetched_at: fetched,
            })
            .collect();
        let mut tx = a.begin().await.unwrap();
        advisories::lock_changes(&mut tx).await.unwrap();
        let refs: Vec<&CanonicalAdvisory> = canonicals.iter().collect();
        advisories::write_canonicals(&mut tx, &refs, None, |_| false)
            .await
            .unwrap();
        advisories::write_edges(&mut tx, &edges, |_| true)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        all.extend(canonicals);
    }
    let mut tx = a.begin().await.unwrap();
    advisories::lock_changes(&mut tx).await.unwrap();
    let withdrawn: Vec<Deletion> = all[100..110]
        .iter()
        .map(|c| Deletion {
            merge_hash: c.merge_hash.clone(),
            reason: "withdrawn".into(),
        })
        .collect();
    advisories::write_deletions(&mut tx, &withdrawn)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let bundles = export_all(&a, None, &signer, 1500).await;
    assert_eq!(bundles.len(), 4, "5,590 changes in bundles of 1,500");
    let expected = |table: &'static str, after: i64, upto: i64| {
        let pool = a.clone();
        async move {
            let line = if table == "advisory_deletions" {
                r#"'{"merge_hash":' || to_json(merge_hash)::text || ',"reason":' || to_json(reason)::text || '}'"#
            } else {
                "document"
            };
            let lines: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT {line} FROM {table} WHERE change_seq > $1 AND change_seq <= $2 ORDER BY change_seq"
            ))
            .bind(after)
            .bind(upto)
            .fetch_all(&pool)
            .await
            .unwrap();
            lines.iter().map(|l| format!("{l}\n")).collect::<String>()
        }
    };
    let mut after = 0;
    let mut total = 0;
    for exported in &bundles {
        let upto: Cursor = exported.cursor.parse().unwrap();
        let archive = zstd::stream::decode_all(exported.bytes.as_slice()).unwrap();
        let mut members = std::collections::BTreeMap::new();
        for entry in tar::Archive::new(archive.as_slice()).entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut content = String::new();
            std::io::Read::read_to_string(&mut entry, &mut content).unwrap();
            members.insert(name, content);
        }
        for (member, table) in [
            ("canonicals.ndjson", "canonical_advisories"),
            ("edges.ndjson", "advisory_source_edges"),
            ("deletions.ndjson", "advisory_deletions"),
        ] {
            assert_eq!(
                members[member],
                expected(table, after, upto.seq).await,
                "{member} of the bundle after {after}"
            );
        }
        let opened = bundle::open(&exported.bytes, 1 << 30).unwrap();
        let rewritten = bundle::write(
            &Contents {
                site_id: "site-a",
                since_cursor: exported.since_cursor.clone(),
                cursor: exported.cursor.clone(),
                canonicals: &opened.canonicals,
                edges: &opened.edges,
                deletions: &opened.deletions,
            },
            Some(&signer),
            3,
        );
        assert!(
            rewritten == exported.bytes,
            "streamed and in-memory bundles differ"
        );
        total += exported.counts.total();
        after = upto.seq;
    }
    // 2,800 canonicals and edges each, less the 10 withdrawn with their edges, plus 10
    // deletions.
    assert_eq!(total, 2 * 2790 + 10);
    // Edges are read on a second connection when the pool has one to spare; a pool of
    // one reads everything on one connection, and the bundles are the same.
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*a.connect_options()).clone())
        .await
        .unwrap();
    let sequential = export_all(&one, None, &signer, 1500).await;
    assert_eq!(sequential.len(), bundles.len());
    for (one, two) in sequential.iter().zip(&bundles) {
        assert!(one.bytes == two.bytes, "bundles differ with one connection");
    }
}

#[tokio::test]
async fn canonical_imported_events_come_in_rows_of_a_thousand_in_change_order() {
    use stellaops_federation::bundle::{self, Contents};
    use stellaops_federation::events::{ITEMS_PER_EVENT, ImportedItem};
    use stellaops_store::advisories::CanonicalAdvisory;
    let Some(b) = database("fed_event_rows").await else {
        return;
    };
    accept_unsigned_from_site_a(&b).await;
    let severities = ["low", "medium", "high"];
    let canonicals: Vec<CanonicalAdvisory> = (0..2 * ITEMS_PER_EVENT + 300)
        .map(|i| {
            let vuln_id = format!("CVE-2024-{i:05}");
            let affects_key = format!("pkg:npm/rows-{i}");
            CanonicalAdvisory {
                merge_hash: CanonicalAdvisory::merge_hash_of(&vuln_id, &affects_key),
                cve: (i % 7 != 0).then(|| vuln_id.clone()),
                vuln_id,
                aliases: vec![],
                affects_key,
                ecosystem: "npm".into(),
                ranges: json!([]),
                versions: vec![],
                // The last row alone holds a critical one.
                severity: Some(if i == 2 * ITEMS_PER_EVENT + 299 {
                    "critical".into()
                } else {
                    severities[i % 3].into()
                }),
                cvss: None,
                summary: None,
                published: None,
                modified: None,
                withdrawn: None,
            }
        })
        .collect();
    let bytes = bundle::write(
        &Contents {
            site_id: "site-a",
            since_cursor: None,
            cursor: "2025-01-15T10:30:00.000Z#0001".into(),
            canonicals: &canonicals,
            edges: &[],
            deletions: &[],
        },
        None,
        3,
    );
    let response = import(&b, &bytes, &options(), &TrustedKeys::default())
        .await
        .unwrap();
    assert_eq!(response.counts.canonical_created, canonicals.len() as u64);
    let rows: Vec<(Option<String>, Value, String)> = sqlx::query_as(
        "SELECT severity, payload, idempotency_key FROM events_outbox
         WHERE kind = 'canonical-imported' ORDER BY id",
    )
    .fetch_all(&b)
    .await
    .unwrap();
    let sizes: Vec<usize> = rows
        .iter()
        .map(|(_, payload, _)| payload["items"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [1000, 1000, 300]);
    let severities: Vec<Option<&str>> = rows.iter().map(|(s, _, _)| s.as_deref()).collect();
    assert_eq!(severities, [Some("high"), Some("high"), Some("critical")]);
    let stored: Vec<(String, i64)> = sqlx::query_as(
        "SELECT merge_hash, change_seq FROM canonical_advisories ORDER BY change_seq",
    )
    .fetch_all(&b)
    .await
    .unwrap();
    let mut items: Vec<(String, i64)> = Vec::new();
    for (_, payload, key) in &rows {
        let row: CanonicalImported<'_> = serde_json::from_value(payload.clone()).unwrap();
        assert_eq!(*key, row.idempotency_key());
        assert_eq!(*key, format!("canonical-imported/{:019}", row.items[0].0));
        for ImportedItem(change, merge_hash, ..) in &row.items {
            items.push((merge_hash.to_string(), *change));
        }
        assert!(row.seed_events().iter().all(|e| e["action"] == "Created"));
    }
    // Every created canonical once, with its write's change number, in change order, which
    // is the bundle's order.
    assert_eq!(items, stored);
    let in_bundle: Vec<&str> = canonicals.iter().map(|c| c.merge_hash.as_str()).collect();
    let in_rows: Vec<&str> = items.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(in_rows, in_bundle);
}
