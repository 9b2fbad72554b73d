//! Wall-clock time of a scan's stages, as the summary (`stages`) and the log report them:
//! where a scan's time goes, without a tracing backend.

use std::time::Instant;

use serde::Serialize;

/// One stage and the wall-clock time it took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// Its name (`manifest`, `layers`, `usage`, `match`, `record`, `attach`, …).
    pub name: &'static str,
    /// Microseconds.
    pub micros: u64,
}

/// The stages of one scan, in the order they ended.
#[derive(Clone, Debug)]
pub struct Stages {
    since: Instant,
    done: Vec<Stage>,
}

impl Default for Stages {
    fn default() -> Self {
        Self::new()
    }
}

impl Stages {
    /// Start timing the first stage now.
    pub fn new() -> Self {
        Stages {
            since: Instant::now(),
            done: Vec::new(),
        }
    }

    /// End the current stage, named `name`, and start the next one.
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push(Stage {
            name,
            micros: now.duration_since(self.since).as_micros() as u64,
        });
        self.since = now;
    }

    /// The stages ended so far.
    pub fn into_vec(self) -> Vec<Stage> {
        self.done
    }
}

/// `name=12.3ms …`, for a log line.
pub fn describe(stages: &[Stage]) -> String {
    stages
        .iter()
        .map(|s| format!("{}={:.1}ms", s.name, s.micros as f64 / 1000.0))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_kept_in_order_with_their_time() {
        let mut stages = Stages::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        stages.mark("first");
        stages.mark("second");
        let v = stages.into_vec();
        assert_eq!(
            v.iter().map(|s| s.name).collect::<Vec<_>>(),
            ["first", "second"]
        );
        assert!(v[0].micros >= 2000, "{v:?}");
        assert!(describe(&v).starts_with("first="), "{}", describe(&v));
    }
}
