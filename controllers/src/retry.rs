//! Retry timing after a failed reconcile: exponential per object, with jitter, forgotten
//! on the next success. A fixed delay retries a broken object as often at the hundredth
//! failure as at the first, and a thousand objects failing together (the API server
//! restarting) retry together, in lockstep.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first retry comes after about this long.
pub const FIRST_DELAY: Duration = Duration::from_secs(2);
/// No retry waits longer than this.
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// How long to wait before attempt `failures + 1` after `failures` failures in a row:
/// `FIRST_DELAY · 2^(failures-1)` capped at [`MAX_DELAY`], then scaled into its upper half
/// by `jitter` (any `u64`; equal jitter keeps a floor so a retry is never immediate). Pure.
pub fn delay(failures: u32, jitter: u64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let full = FIRST_DELAY.saturating_mul(1u32 << exponent).min(MAX_DELAY);
    let half = full / 2;
    let spread = half.as_millis() as u64;
    let extra = if spread == 0 {
        0
    } else {
        jitter % (spread + 1)
    };
    half + Duration::from_millis(extra)
}

/// Failures in a row per object (`Kind/namespace/name`).
#[derive(Debug, Default)]
pub struct Retries {
    failures: Mutex<HashMap<String, u32>>,
}

impl Retries {
    /// Count a failure of `key` and say how long to wait before retrying it.
    pub fn failed(&self, key: &str) -> Duration {
        let failures = {
            let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            let count = map.entry(key.to_string()).or_insert(0);
            *count = count.saturating_add(1);
            *count
        };
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        failures.hash(&mut hasher);
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos()
            .hash(&mut hasher);
        delay(failures, hasher.finish())
    }

    /// Forget `key`'s failures (it reconciled).
    pub fn succeeded(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if !map.is_empty() {
            map.remove(key);
        }
    }

    /// Failures in a row of `key`.
    pub fn failures(&self, key: &str) -> u32 {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).copied().unwrap_or(0)
    }
}
