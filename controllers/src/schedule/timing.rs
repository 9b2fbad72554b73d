//! When a Schedule runs: cron in its time zone, deterministic jitter, windows, starting
//! deadline, catch-up and concurrency — a pure function of (spec, history, now), so
//! restarts, DST transitions and downtime are tested exactly.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest as _, Sha256};
use stellaops_crds::schedule::{CatchUp, ConcurrencyPolicy, RunWindow, ScheduleSpec, Weekday};

use super::cron::{Cron, resolve, time_zone};

/// A run that became due longer ago than this without a deadline is "late": with
/// `catchUp: skip` it is forgotten rather than run.
pub const ON_TIME_GRACE: SignedDuration = SignedDuration::from_secs(300);
/// How far back missed runs are looked for: after a longer outage the count of missed runs
/// covers this last week only (catch-up runs once either way).
pub const LOOKBACK: SignedDuration = SignedDuration::from_hours(7 * 24);

/// A window in which runs may start.
#[derive(Clone, Debug)]
pub struct Window {
    start_hour: i8,
    start_minute: i8,
    length: SignedDuration,
    /// Allowed weekdays, Monday first; all when empty.
    days: Vec<jiff::civil::Weekday>,
    tz: TimeZone,
}

/// Everything about when a Schedule runs.
#[derive(Clone, Debug)]
pub struct Timing {
    /// The cron expression.
    pub cron: Cron,
    /// The schedule's zone.
    pub tz: TimeZone,
    /// Deterministic delay of every run.
    pub jitter: SignedDuration,
    /// Windows (any time when empty).
    pub windows: Vec<Window>,
    /// `startingDeadlineSeconds`.
    pub deadline: Option<SignedDuration>,
    /// `catchUp`.
    pub catch_up: CatchUp,
    /// `concurrencyPolicy`.
    pub concurrency: ConcurrencyPolicy,
    /// `suspend`.
    pub suspend: bool,
}

/// The deterministic jitter of `namespace/name` in `[0, max_seconds)`.
pub fn jitter_seconds(namespace: &str, name: &str, max_seconds: i32) -> i64 {
    if max_seconds <= 0 {
        return 0;
    }
    let hash = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    let n = u64::from_be_bytes(hash[..8].try_into().unwrap_or([0; 8]));
    (n % max_seconds as u64) as i64
}

fn weekday(day: Weekday) -> jiff::civil::Weekday {
    use jiff::civil::Weekday as W;
    match day {
        Weekday::Mon => W::Monday,
        Weekday::Tue => W::Tuesday,
        Weekday::Wed => W::Wednesday,
        Weekday::Thu => W::Thursday,
        Weekday::Fri => W::Friday,
        Weekday::Sat => W::Saturday,
        Weekday::Sun => W::Sunday,
    }
}

fn window(window: &RunWindow, default_tz: &TimeZone) -> Result<Window, String> {
    let (h, m) = window
        .start
        .split_once(':')
        .and_then(|(h, m)| Some((h.parse::<i8>().ok()?, m.parse::<i8>().ok()?)))
        .filter(|(h, m)| (0..24).contains(h) && (0..60).contains(m))
        .ok_or_else(|| format!("window start {:?} is not HH:MM", window.start))?;
    let seconds = crate::workload::parse_duration(&window.duration)
        .filter(|s| *s > 0 && *s <= 86_400)
        .ok_or_else(|| {
            format!(
                "window duration {:?} is not within (0, 24h]",
                window.duration
            )
        })?;
    let tz = match &window.time_zone {
        Some(name) => time_zone(Some(name))?,
        None => default_tz.clone(),
    };
    Ok(Window {
        start_hour: h,
        start_minute: m,
        length: SignedDuration::from_secs(seconds),
        days: window.days.iter().copied().map(weekday).collect(),
        tz,
    })
}

impl Timing {
    /// Read the timing of a Schedule; the error says what to fix.
    pub fn of(spec: &ScheduleSpec, namespace: &str, name: &str) -> Result<Timing, String> {
        let tz = time_zone(spec.time_zone.as_deref())?;
        Ok(Timing {
            cron: Cron::parse(&spec.schedule)?,
            jitter: SignedDuration::from_secs(jitter_seconds(namespace, name, spec.jitter_seconds)),
            windows: spec
                .windows
                .iter()
                .map(|w| window(w, &tz))
                .collect::<Result<_, _>>()?,
            tz,
            deadline: spec
                .starting_deadline_seconds
                .map(SignedDuration::from_secs),
            catch_up: spec.catch_up,
            concurrency: spec.concurrency_policy,
            suspend: spec.suspend,
        })
    }

    /// When a run scheduled at `scheduled` may start: after its jitter, at the first
    /// instant inside a window. `None` if no window opens within two weeks.
    pub fn start_at(&self, scheduled: Timestamp) -> Option<Timestamp> {
        let t = scheduled.checked_add(self.jitter).ok()?;
        if self.windows.is_empty() {
            return Some(t);
        }
        let mut best: Option<Timestamp> = None;
        for w in &self.windows {
            let local = t.to_zoned(w.tz.clone()).date();
            // A window opened yesterday may still be open.
            let mut date = local.yesterday().ok()?;
            for _ in 0..16 {
                if w.days.is_empty() || w.days.contains(&date.weekday()) {
                    let opens = resolve(date.at(w.start_hour, w.start_minute, 0, 0), &w.tz);
                    let closes = opens.checked_add(w.length).ok()?;
                    if closes > t {
                        let candidate = opens.max(t);
                        best = Some(best.map_or(candidate, |b| b.min(candidate)));
                        break;
                    }
                }
                date = date.tomorrow().ok()?;
            }
        }
        best
    }

    /// The scheduled time after `after` (before jitter and windows).
    pub fn next_scheduled(&self, after: Timestamp) -> Option<Timestamp> {
        self.cron.next_after(after, &self.tz)
    }

    /// The next `n` start times after `after` (jitter and windows applied).
    pub fn upcoming_starts(&self, after: Timestamp, n: usize) -> Vec<Timestamp> {
        self.cron
            .upcoming(after, &self.tz, n)
            .into_iter()
            .filter_map(|s| self.start_at(s))
            .collect()
    }
}

/// What the controller knows of past runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Scheduled time of the latest run started or deliberately passed over.
    pub last_schedule_time: Option<Timestamp>,
    /// When the Schedule was created (the first run is the first time after it).
    pub created: Timestamp,
    /// Runs still in progress.
    pub active: usize,
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Start a run for this scheduled time now.
    pub start: Option<Timestamp>,
    /// Record this as the latest schedule time (a run started or was passed over), so a
    /// restart neither repeats nor loses it.
    pub record: Option<Timestamp>,
    /// Due runs not started (coalesced by `catchUp: once`, forgotten by `skip`, past the
    /// deadline, or forbidden by concurrency).
    pub missed: usize,
    /// Why the latest due run was not started.
    pub not_started: Option<String>,
    /// Stop the active runs first (`Replace`).
    pub replace_active: bool,
    /// When the next run starts (jitter and windows applied); `None` when suspended or
    /// never.
    pub next_start: Option<Timestamp>,
}

/// Decide at `now`. Pure.
pub fn decide(timing: &Timing, history: &History, now: Timestamp) -> Decision {
    let base = history.last_schedule_time.unwrap_or(history.created);
    let mut decision = Decision {
        start: None,
        record: None,
        missed: 0,
        not_started: None,
        replace_active: false,
        next_start: None,
    };
    if timing.suspend {
        return decision;
    }
    // Due runs since the last one (within the look-back): how many, and the latest.
    let floor = now.checked_sub(LOOKBACK).unwrap_or(now);
    let mut cursor = base.max(floor);
    let mut due = 0usize;
    let mut latest: Option<(Timestamp, Timestamp)> = None;
    let mut upcoming = None;
    while let Some(scheduled) = timing.next_scheduled(cursor) {
        let Some(start) = timing.start_at(scheduled) else {
            break;
        };
        if start > now {
            upcoming = Some(start);
            break;
        }
        due += 1;
        latest = Some((scheduled, start));
        cursor = scheduled;
    }
    decision.next_start = upcoming;
    let Some((latest, latest_start)) = latest else {
        return decision;
    };
    decision.record = Some(latest);
    decision.missed = due - 1;
    let late = now.duration_since(latest_start);
    if let Some(deadline) = timing.deadline
        && late > deadline
    {
        decision.missed += 1;
        decision.not_started = Some(format!(
            "the run due at {latest_start} could not start within startingDeadlineSeconds ({}s)",
            deadline.as_secs()
        ));
        return decision;
    }
    if timing.catch_up == CatchUp::Skip && timing.deadline.is_none() && late > ON_TIME_GRACE {
        decision.missed += 1;
        decision.not_started = Some(format!(
            "the run due at {latest_start} was missed (catchUp: skip); waiting for the next"
        ));
        return decision;
    }
    if history.active > 0 {
        match timing.concurrency {
            ConcurrencyPolicy::Forbid => {
                decision.missed += 1;
                decision.not_started = Some(format!(
                    "the run due at {latest_start} was skipped: the previous run is still active (concurrencyPolicy: Forbid)"
                ));
                return decision;
            }
            ConcurrencyPolicy::Replace => decision.replace_active = true,
            ConcurrencyPolicy::Allow => {}
        }
    }
    decision.start = Some(latest);
    decision
}

/// The identifier of the run scheduled at `scheduled` (also its object names' suffix):
/// the same time always gives the same id, so a run created just before a crash is found
/// again, not created twice.
pub fn run_id(name: &str, scheduled: Timestamp) -> String {
    let minutes = scheduled.as_second().div_euclid(60);
    crate::workload::child_name(name, &format!("-{minutes}"), 52)
}

/// How long to sleep before deciding again: until the next start, at most an hour.
pub fn requeue_after(decision: &Decision, now: Timestamp) -> std::time::Duration {
    let hour = std::time::Duration::from_secs(3600);
    match decision.next_start {
        Some(next) => {
            let wait = next.duration_since(now);
            let secs = wait.as_secs().clamp(1, 3600) as u64;
            // A second late is better than a second early (the run would not be due).
            std::time::Duration::from_secs(secs).min(hour) + std::time::Duration::from_millis(500)
        }
        None => hour,
    }
}
