//! Retry timing after a failed reconcile: exponential per object, with jitter, forgotten
//! on the next success. A fixed delay retries a broken object as often at the hundredth
//! failure as at the first, and a thousand objects failing together (the API server
//! restarting) retry together, in lockstep. And the watches that trigger reconciles back
//! off each on its own ([`EachWatchOnItsOwn`]).

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

/// The backoff of a controller's merged trigger streams: none, since each watch that
/// feeds a controller backs off on its own (`default_backoff()` on every trigger stream).
/// kube's default backs off the *merge* whenever any one watch fails, polls none of them
/// meanwhile, and doubles the wait at every failure until an item gets through: after an
/// API server restart, when every watch fails once (410 Gone), the Scans' watch was not
/// polled again for 10 s to more than 2 minutes while its siblings' errors took turns.
#[derive(Clone, Copy, Debug, Default)]
pub struct EachWatchOnItsOwn;

impl Iterator for EachWatchOnItsOwn {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for EachWatchOnItsOwn {
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{StreamExt, stream};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use kube::runtime::controller::{Action, Controller};
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    use std::sync::Arc;

    /// A controller whose object arrives 1 ms after a sibling trigger has failed
    /// `failures` times; how long until the object is reconciled. Real time: tokio's
    /// paused clock (`test-util`) would be compiled into the scale benchmark too, as a
    /// dev-dependency feature, and its clock lock made the operator and the emulator there
    /// a quarter slower.
    async fn reconciled_after(
        failures: usize,
        configure: impl FnOnce(Controller<ConfigMap>) -> Controller<ConfigMap>,
    ) -> Duration {
        let started = tokio::time::Instant::now();
        let (reader, writer) = reflector::store();
        let object = ConfigMap {
            metadata: ObjectMeta {
                name: Some("a".into()),
                namespace: Some("n".into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        let own = stream::once(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            stream::iter([
                Ok(watcher::Event::Init),
                Ok(watcher::Event::InitApply(object)),
                Ok(watcher::Event::InitDone),
            ])
        })
        .flatten()
        .chain(stream::pending())
        .reflect(writer)
        .applied_objects();
        let failing = stream::iter((0..failures).map(|_| Err(watcher::Error::NoResourceVersion)))
            .chain(stream::pending());
        let (done, mut reconciled) = tokio::sync::mpsc::unbounded_channel();
        let controller = configure(
            Controller::for_stream(own, reader).watches_stream(failing, |_: ConfigMap| {
                Vec::<reflector::ObjectRef<ConfigMap>>::new()
            }),
        )
        .run(
            move |_, done: Arc<tokio::sync::mpsc::UnboundedSender<()>>| async move {
                let _ = done.send(());
                Ok::<_, std::convert::Infallible>(Action::await_change())
            },
            |_, _, _| Action::await_change(),
            Arc::new(done),
        )
        .for_each(|_| async {});
        tokio::select! {
            _ = controller => unreachable!("the controller runs until dropped"),
            _ = reconciled.recv() => started.elapsed(),
        }
    }

    #[tokio::test]
    async fn a_failing_watch_does_not_hold_back_its_controllers_other_triggers() {
        let ours = reconciled_after(3, |c| c.trigger_backoff(EachWatchOnItsOwn)).await;
        assert!(ours < Duration::from_millis(300), "{ours:?}");
        // kube's default backs off the whole merge at each failure: 800 ms and more after
        // the first (one failure, so that the test waits about a second, not six).
        let default = reconciled_after(1, |c| c).await;
        assert!(default > Duration::from_millis(700), "{default:?}");
    }
}
