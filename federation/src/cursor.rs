//! Federation cursors: `{ISO-8601}#{seq}`, a point in a site's change sequence.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};

/// A point in one site's change sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// When the change was made.
    pub at: DateTime<Utc>,
    /// Its sequence number; cursors of a site are ordered by it.
    pub seq: i64,
}

impl Cursor {
    /// The cursor before any change (`1970-01-01T00:00:00.000Z#0000`).
    pub fn origin() -> Self {
        Cursor {
            at: DateTime::UNIX_EPOCH,
            seq: 0,
        }
    }
}

impl PartialOrd for Cursor {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cursor {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.seq, self.at).cmp(&(other.seq, other.at))
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}#{:04}",
            self.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            self.seq
        )
    }
}

/// A cursor that does not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid cursor {0:?}: expected {{ISO-8601 timestamp}}#{{sequence}}, e.g. 2025-01-15T10:00:00.000Z#0001"
)]
pub struct InvalidCursor(pub String);

impl FromStr for Cursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidCursor(s.to_string());
        let (at, seq) = s.split_once('#').ok_or_else(invalid)?;
        let at = DateTime::parse_from_rfc3339(at)
            .map_err(|_| invalid())?
            .with_timezone(&Utc);
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let seq = seq.parse().map_err(|_| invalid())?;
        Ok(Cursor { at, seq })
    }
}
