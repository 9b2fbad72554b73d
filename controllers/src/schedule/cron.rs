//! Five-field cron expressions read in an IANA time zone, with the daylight-saving rules a
//! person expects: a local time skipped by a spring-forward runs at the transition (the
//! first valid instant after it), a local time repeated by a fall-back runs once (its first
//! occurrence).

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan};

/// A parsed cron expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<i8>,
    hours: Vec<i8>,
    days_of_month: [bool; 32],
    months: [bool; 13],
    days_of_week: [bool; 7],
    /// Day-of-month was restricted (not `*`).
    dom_restricted: bool,
    /// Day-of-week was restricted (not `*`).
    dow_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn value(text: &str, names: &[&str], offset: u32) -> Result<u32, String> {
    if let Ok(n) = text.parse::<u32>() {
        return Ok(n);
    }
    names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(text))
        .map(|i| i as u32 + offset)
        .ok_or_else(|| format!("{text:?} is not a number or name"))
}

/// The values a field allows, within `min..=max`; `Ok(None)` for `*` (unrestricted).
fn field(
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_offset: u32,
    what: &str,
) -> Result<(Vec<u32>, bool), String> {
    let mut values = Vec::new();
    let mut restricted = true;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{what}: step {step:?} is not a positive number"))?;
                (range, Some(step))
            }
            None => (part, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            if step.is_none() && text.split(',').count() == 1 {
                restricted = false;
            }
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, names, name_offset).map_err(|e| format!("{what}: {e}"))?,
                value(b, names, name_offset).map_err(|e| format!("{what}: {e}"))?,
            )
        } else {
            let v = value(range, names, name_offset).map_err(|e| format!("{what}: {e}"))?;
            // `5/15` means from 5 to the end in steps of 15.
            (v, if step.is_some() { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!(
                "{what}: {part:?} is outside {min}-{max} or an empty range"
            ));
        }
        // Checked: a step such as 4294967295 must end the range, not wrap (or panic).
        let mut next = Some(lo);
        while let Some(v) = next.filter(|v| *v <= hi) {
            values.push(v);
            next = v.checked_add(step.unwrap_or(1));
        }
    }
    values.sort_unstable();
    values.dedup();
    Ok((values, restricted))
}

impl Cron {
    /// Parse five fields (minute hour day-of-month month day-of-week) or a macro
    /// (`@hourly`, `@daily`/`@midnight`, `@weekly`, `@monthly`, `@yearly`/`@annually`).
    /// Quartz extensions (`L`, `W`, `#`) are refused with a message.
    pub fn parse(expression: &str) -> Result<Cron, String> {
        let expanded = match expression.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "{expression:?} has {} fields; a schedule has five (minute hour day-of-month month day-of-week)",
                fields.len()
            ));
        }
        let quartz = |token: &str| {
            let upper = token.to_ascii_uppercase();
            let digits_then = |suffix: char| {
                upper.len() > 1
                    && upper.ends_with(suffix)
                    && upper[..upper.len() - 1].bytes().all(|b| b.is_ascii_digit())
            };
            upper == "L" || upper == "LW" || digits_then('L') || digits_then('W')
        };
        if let Some(f) = fields
            .iter()
            .find(|f| f.contains('#') || f.split([',', '-', '/']).any(quartz))
        {
            return Err(format!(
                "{f:?}: L, W and # (Quartz extensions) are not supported"
            ));
        }
        let (minutes, _) = field(fields[0], 0, 59, &[], 0, "minute")?;
        let (hours, _) = field(fields[1], 0, 23, &[], 0, "hour")?;
        let (dom, dom_restricted) = field(fields[2], 1, 31, &[], 0, "day of month")?;
        let (months, _) = field(fields[3], 1, 12, &MONTHS, 1, "month")?;
        let (dow, dow_restricted) = field(fields[4], 0, 7, &WEEKDAYS, 0, "day of week")?;
        let mut cron = Cron {
            minutes: minutes.into_iter().map(|v| v as i8).collect(),
            hours: hours.into_iter().map(|v| v as i8).collect(),
            days_of_month: [false; 32],
            months: [false; 13],
            days_of_week: [false; 7],
            dom_restricted,
            dow_restricted,
        };
        for d in dom {
            cron.days_of_month[d as usize] = true;
        }
        for m in months {
            cron.months[m as usize] = true;
        }
        for d in dow {
            cron.days_of_week[(d % 7) as usize] = true;
        }
        Ok(cron)
    }

    /// Whether the schedule fires on `date` (cron's rule: when both day fields are
    /// restricted, either may match).
    pub fn matches_date(&self, date: Date) -> bool {
        if !self.months[date.month() as usize] {
            return false;
        }
        let dom = self.days_of_month[date.day() as usize];
        let dow = self.days_of_week[date.weekday().to_sunday_zero_offset() as usize];
        match (self.dom_restricted, self.dow_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first run strictly after `after`, reading the schedule in `tz`. `None` when
    /// there is none within eight years (such as `0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = after.to_zoned(tz.clone()).datetime();
        let mut date = local.date();
        // Eight years covers every leap-day schedule.
        for _ in 0..(366 * 8) {
            if self.matches_date(date) {
                for &hour in &self.hours {
                    for &minute in &self.minutes {
                        let civil = date.at(hour, minute, 0, 0);
                        // Local times well before `after` cannot be after it, even across a
                        // fold (no zone has shifted its clock by more than two hours).
                        if civil < local.saturating_sub(3.hours()) {
                            continue;
                        }
                        let instant = resolve(civil, tz);
                        if instant > after {
                            return Some(instant);
                        }
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// The next `n` runs after `after`.
    pub fn upcoming(&self, after: Timestamp, tz: &TimeZone, n: usize) -> Vec<Timestamp> {
        let mut runs = Vec::with_capacity(n);
        let mut cursor = after;
        while runs.len() < n {
            match self.next_after(cursor, tz) {
                Some(next) => {
                    runs.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        runs
    }
}

/// The instant a local time means in `tz`: a skipped time is the transition that skipped
/// it, a repeated time its first occurrence.
pub fn resolve(civil: DateTime, tz: &TimeZone) -> Timestamp {
    let ambiguous = tz.to_ambiguous_timestamp(civil);
    match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(civil),
        // Earlier instant: the first pass through the repeated hour.
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(civil),
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the later offset the time lands before the transition; the
            // transition that follows is the first instant the wall clock is past it.
            let early = after.to_timestamp(civil);
            match early {
                Ok(early) => tz.following(early).next().map(|t| t.timestamp()).ok_or(()),
                Err(_) => Err(()),
            }
            .map_or_else(|_| ambiguous.compatible(), Ok)
        }
    }
    .unwrap_or(Timestamp::MAX)
}

/// The time zone named `name` (UTC when `None`), from the tz database built into the
/// operator (so the image needs no zoneinfo files).
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None | Some("UTC") | Some("Etc/UTC") => Ok(TimeZone::UTC),
        Some(name) => jiff::tz::db()
            .get(name)
            .map_err(|_| format!("{name:?} is not an IANA time zone")),
    }
}
