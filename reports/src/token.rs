//! Continue tokens: where the next page of a LIST starts, and at which resourceVersion the
//! whole LIST reads. Opaque to clients (base64 of a small JSON object), parsed with a
//! length bound (fuzzed: `fuzz/fuzz_targets/reports_query.rs`).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Longest token accepted.
pub const MAX_TOKEN_LEN: usize = 2048;

/// A decoded continue token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Continue {
    /// Format version (1).
    pub v: u8,
    /// The LIST's resourceVersion (a result id).
    pub rv: i64,
    /// Namespace of the last item served (empty for cluster-scoped kinds).
    pub ns: String,
    /// Name of the last item served.
    pub name: String,
    /// When the first page was served (Unix seconds): the token expires like an API
    /// server's after compaction.
    pub at: i64,
}

/// Why a token is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not one of ours (400).
    #[error("continue key is not valid: {0}")]
    Invalid(String),
    /// Too old (410 Gone, reason Expired).
    #[error(
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."
    )]
    Expired,
}

impl Continue {
    /// The token text.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a token serializes");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Parse `text`, refusing one issued more than `ttl_seconds` before `now` (or in the
    /// future, beyond a minute of clock skew between replicas).
    pub fn decode(text: &str, now: i64, ttl_seconds: i64) -> Result<Continue, TokenError> {
        if text.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid("too long".into()));
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let token: Continue =
            serde_json::from_slice(&bytes).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if token.v != 1 {
            return Err(TokenError::Invalid(format!("version {}", token.v)));
        }
        if token.rv < 0 {
            return Err(TokenError::Invalid("negative resourceVersion".into()));
        }
        if token.at > now.saturating_add(60) {
            return Err(TokenError::Invalid("issued in the future".into()));
        }
        if now.saturating_sub(token.at) > ttl_seconds {
            return Err(TokenError::Expired);
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_expire() {
        let token = Continue {
            v: 1,
            rv: 42,
            ns: "team-a".into(),
            name: "web".into(),
            at: 1000,
        };
        assert_eq!(
            Continue::decode(&token.encode(), 1100, 300),
            Ok(token.clone())
        );
        assert_eq!(
            Continue::decode(&token.encode(), 1301, 300),
            Err(TokenError::Expired)
        );
        assert!(matches!(
            Continue::decode(&token.encode(), 900, 300),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        for bad in ["", "!!!", "eyJ2IjoyfQ", &"A".repeat(5000), "bnVsbA"] {
            assert!(
                matches!(Continue::decode(bad, 0, 300), Err(TokenError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
