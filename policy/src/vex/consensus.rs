//! Consensus (high-level architecture §4.2): from every provider's statements about one
//! vulnerability in one component of one image, the status the platform believes.
//!
//! 1. Only statements that apply count: same vulnerability (by id or alias), the
//!    component's package URL (type, namespace and name equal; the version too when the
//!    statement names one; qualifiers ignored), and the image when the statement names one.
//! 2. Per provider one statement wins: one naming the image beats one that does not, then
//!    the newest (statement time, then document version). Should those tie, the more
//!    cautious status wins, then one with a justification; any remaining tie is broken by
//!    the document id and then the statement itself, so the winner never depends on order.
//! 3. A provider of weight 0 is not counted; a `not_affected` whose justification is not in
//!    the accepted set (or that has none) is not counted. Both are kept, with the reason.
//! 4. The counted statements' weights are summed per status; the heaviest status is the
//!    decision. A tie goes to the more cautious status: affected, under_investigation,
//!    fixed, not_affected, in that order.
//! 5. Every counted statement that disagrees with the decision is kept as a conflict.
//!
//! The same statements and trust give the same decision, whatever their order.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{JUSTIFICATIONS, Statement, Status, Version};

/// A statement as stored: with who said it and in which document version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The provider (`--provider` at ingest).
    pub provider: String,
    /// The document it came from.
    pub document_id: String,
    /// That document's version.
    pub document_version: Version,
    /// The statement.
    pub statement: Statement,
}

/// How much each provider is believed, and which justifications are accepted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trust {
    /// Weight per provider (0 = not counted).
    pub weights: BTreeMap<String, f64>,
    /// Weight of a provider not listed.
    pub default_weight: f64,
    /// Justifications a `not_affected` must have to count.
    pub accepted_justifications: BTreeSet<String>,
}

impl Default for Trust {
    /// Every provider weighs 1; every justification is accepted.
    fn default() -> Self {
        Trust {
            weights: BTreeMap::new(),
            default_weight: 1.0,
            accepted_justifications: JUSTIFICATIONS.iter().map(|j| j.to_string()).collect(),
        }
    }
}

impl Trust {
    fn weight(&self, provider: &str) -> f64 {
        self.weights
            .get(provider)
            .copied()
            .unwrap_or(self.default_weight)
            .max(0.0)
    }
}

/// A provider's winning statement and whether it counted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vote {
    /// Who.
    pub provider: String,
    /// What.
    pub status: Status,
    /// Their weight.
    pub weight: f64,
    /// Why it did not count (`None`: counted).
    pub not_counted: Option<String>,
    /// Document and version.
    pub document: String,
    /// The justification given.
    pub justification: Option<String>,
}

/// The decision for one vulnerability in one component of one image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The status believed (`None`: no statement counted).
    pub status: Option<Status>,
    /// Every provider's winning statement, counted or not, by provider.
    pub votes: Vec<Vote>,
    /// Providers whose counted statement disagrees with the decision.
    pub conflicts: Vec<String>,
}

/// The parts of a package URL a statement is matched on.
#[derive(Debug, PartialEq, Eq)]
struct PurlKey<'a> {
    /// `type/namespace/name`, percent-encoding as written.
    base: String,
    version: Option<&'a str>,
}

fn purl_key(purl: &str) -> Option<PurlKey<'_>> {
    let rest = purl.strip_prefix("pkg:")?;
    let rest = rest.split('#').next()?;
    let rest = rest.split('?').next()?;
    let (base, version) = match rest.rsplit_once('@') {
        Some((base, version)) => (base, Some(version)),
        None => (rest, None),
    };
    // The type is case-insensitive (purl spec); the rest is compared as written.
    let (kind, path) = base.split_once('/')?;
    Some(PurlKey {
        base: format!("{}/{}", kind.to_ascii_lowercase(), path.trim_matches('/')),
        version,
    })
}

/// `type/namespace/name` of a package URL (no version, qualifiers or subpath): what the
/// store indexes statements by.
pub fn purl_base(purl: &str) -> Option<String> {
    purl_key(purl).map(|k| k.base)
}

/// Does `statement` speak about `vulnerability` (one of its ids) in `component_purl` of
/// `image_digest`?
pub fn applies(
    statement: &Statement,
    vulnerability_ids: &[&str],
    component_purl: &str,
    image_digest: &str,
) -> bool {
    let named = vulnerability_ids
        .iter()
        .any(|id| statement.vulnerability == *id || statement.aliases.iter().any(|a| a == id));
    if !named {
        return false;
    }
    if let Some(digest) = &statement.product.image_digest
        && digest != image_digest
    {
        return false;
    }
    match &statement.product.purl {
        None => true,
        Some(purl) => match (purl_key(purl), purl_key(component_purl)) {
            (Some(said), Some(component)) => {
                said.base == component.base
                    && said.version.is_none_or(|v| Some(v) == component.version)
            }
            _ => false,
        },
    }
}

/// Whether `a` beats `b` as its provider's statement. A total order: two different claims
/// never tie, so the winner does not depend on which came first.
fn newer(a: &Claim, b: &Claim) -> bool {
    // Past the rules of the module doc only tie-breakers remain: the document id, then
    // the whole statement.
    fn key(c: &Claim) -> impl Ord + '_ {
        (
            c.statement.product.image_digest.is_some(),
            c.statement.timestamp,
            &c.document_version,
            caution(c.statement.status),
            c.statement.justification.is_some(),
            &c.document_id,
            &c.statement,
        )
    }
    key(a) > key(b)
}

fn caution(status: Status) -> u8 {
    match status {
        Status::Affected => 3,
        Status::UnderInvestigation => 2,
        Status::Fixed => 1,
        Status::NotAffected => 0,
    }
}

/// Decide from `claims`, all of which [`applies`] to the same vulnerability and component.
pub fn decide<'a>(claims: impl IntoIterator<Item = &'a Claim>, trust: &Trust) -> Decision {
    let mut winners: BTreeMap<&str, &Claim> = BTreeMap::new();
    for claim in claims {
        winners
            .entry(claim.provider.as_str())
            .and_modify(|current| {
                if newer(claim, current) {
                    *current = claim;
                }
            })
            .or_insert(claim);
    }
    let mut votes = Vec::new();
    let mut totals: BTreeMap<Status, f64> = BTreeMap::new();
    for (provider, claim) in &winners {
        let weight = trust.weight(provider);
        let statement = &claim.statement;
        let not_counted = if weight == 0.0 {
            Some("the provider's weight is 0".to_string())
        } else if statement.status == Status::NotAffected {
            match &statement.justification {
                None => Some("not_affected without a justification".to_string()),
                Some(j) if !trust.accepted_justifications.contains(j) => {
                    Some(format!("justification {j} is not accepted"))
                }
                Some(_) => None,
            }
        } else {
            None
        };
        if not_counted.is_none() {
            *totals.entry(statement.status).or_default() += weight;
        }
        votes.push(Vote {
            provider: provider.to_string(),
            status: statement.status,
            weight,
            not_counted,
            document: format!("{}@{}", claim.document_id, claim.document_version.text),
            justification: statement.justification.clone(),
        });
    }
    let status = totals
        .iter()
        .max_by(|(sa, wa), (sb, wb)| {
            wa.total_cmp(wb)
                .then_with(|| caution(**sa).cmp(&caution(**sb)))
        })
        .map(|(s, _)| *s);
    let conflicts = votes
        .iter()
        .filter(|v| v.not_counted.is_none() && Some(v.status) != status)
        .map(|v| v.provider.clone())
        .collect();
    Decision {
        status,
        votes,
        conflicts,
    }
}
