//! Ingest of OSV documents into the canonical store, idempotently: the same documents
//! again change nothing; a modified document updates its canonicals and advances the
//! change sequence.

use std::collections::{HashMap, HashSet};

use sqlx::PgPool;
use stellaops_store::advisories::{self, CanonicalAdvisory, Deletion, SourceEdge};

use crate::cursor::Cursor;
use crate::osv::{Parsed, source_rank};

/// What an ingest did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestSummary {
    /// Documents read.
    pub documents: usize,
    /// Canonicals created.
    pub created: u64,
    /// Canonicals whose content changed.
    pub updated: u64,
    /// Canonicals already stored as they are.
    pub unchanged: u64,
    /// Source edges added or changed.
    pub edges: u64,
    /// Canonicals removed because their document was withdrawn.
    pub withdrawn: u64,
    /// Cursor after the ingest.
    pub cursor: Option<String>,
}

type Provenance = (u8, String, String); // (rank, source advisory id, source)

/// Ingest parsed documents in one transaction.
pub async fn ingest(
    pool: &PgPool,
    documents: Vec<Parsed>,
) -> Result<IngestSummary, stellaops_store::Error> {
    let mut summary = IngestSummary {
        documents: documents.len(),
        ..Default::default()
    };
    // Best candidate per canonical within this batch, by (rank, id); every edge is kept.
    let mut best: HashMap<String, (Provenance, CanonicalAdvisory)> = HashMap::new();
    let mut edges: Vec<SourceEdge> = Vec::new();
    let mut deletions: Vec<Deletion> = Vec::new();
    for doc in documents {
        if doc.withdrawn {
            deletions.extend(doc.canonicals.iter().map(|c| Deletion {
                merge_hash: c.merge_hash.clone(),
                reason: "withdrawn".into(),
            }));
            continue;
        }
        let provenance: Provenance = (source_rank(&doc.source), doc.id.clone(), doc.source.clone());
        for canonical in doc.canonicals {
            match best.get(&canonical.merge_hash) {
                Some((current, _)) if *current <= provenance => {}
                _ => {
                    best.insert(
                        canonical.merge_hash.clone(),
                        (provenance.clone(), canonical),
                    );
                }
            }
        }
        edges.extend(doc.edges);
    }

    let mut tx = pool.begin().await?;
    advisories::lock_changes(&mut tx).await?;
    let hashes: Vec<String> = best.keys().cloned().collect();
    let stored = advisories::stored_canonicals(&mut tx, &hashes).await?;
    // Documents already linked to these canonicals: a better-ranked one keeps its content.
    let linked: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT merge_hash, source, source_advisory_id FROM advisory_source_edges WHERE merge_hash = ANY($1)",
    )
    .bind(&hashes)
    .fetch_all(&mut *tx)
    .await?;
    let mut best_linked: HashMap<&str, Provenance> = HashMap::new();
    for (hash, source, id) in &linked {
        let p = (source_rank(source), id.clone(), source.clone());
        let entry = best_linked
            .entry(hash.as_str())
            .or_insert_with(|| p.clone());
        if p < *entry {
            *entry = p;
        }
    }

    let mut to_write: Vec<(Provenance, CanonicalAdvisory)> = Vec::new();
    for (hash, (provenance, canonical)) in best {
        if best_linked
            .get(hash.as_str())
            .is_some_and(|linked| *linked < provenance)
        {
            summary.unchanged += 1; // a better source owns the content; only the edge is added
            continue;
        }
        match stored.get(&hash) {
            Some(existing) if existing.content_hash == canonical.content_hash() => {
                summary.unchanged += 1
            }
            Some(_) => {
                summary.updated += 1;
                to_write.push((provenance, canonical));
            }
            None => {
                summary.created += 1;
                to_write.push((provenance, canonical));
            }
        }
    }
    // Deterministic order of change numbers.
    to_write.sort_by(|a, b| a.1.merge_hash.cmp(&b.1.merge_hash));
    let canonicals: Vec<&CanonicalAdvisory> = to_write.iter().map(|(_, c)| c).collect();
    advisories::write_canonicals(&mut tx, &canonicals, None, |h| stored.contains_key(h)).await?;
    let created: HashSet<&str> = canonicals
        .iter()
        .map(|c| c.merge_hash.as_str())
        .filter(|h| !stored.contains_key(*h))
        .collect();
    edges.sort_by(|a, b| {
        (&a.merge_hash, &a.source, &a.source_advisory_id).cmp(&(
            &b.merge_hash,
            &b.source,
            &b.source_advisory_id,
        ))
    });
    summary.edges = advisories::write_edges(&mut tx, &edges, |h| created.contains(h)).await?;
    let withdrawn: HashSet<&str> = deletions.iter().map(|d| d.merge_hash.as_str()).collect();
    let existing_withdrawn = advisories::stored_canonicals(
        &mut tx,
        &withdrawn.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    )
    .await?;
    let deletions: Vec<Deletion> = deletions
        .into_iter()
        .filter(|d| existing_withdrawn.contains_key(&d.merge_hash))
        .collect();
    summary.withdrawn = advisories::write_deletions(&mut tx, &deletions).await?;
    tx.commit().await?;
    summary.cursor = advisories::latest_change(pool).await?.map(|p| {
        Cursor {
            at: p.at,
            seq: p.seq,
        }
        .to_string()
    });
    Ok(summary)
}
