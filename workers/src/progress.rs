//! Progress of long work (`scan`, `mirror sync`, `federation bundle export|import`).
//!
//! On a terminal: a progress bar on stderr (items and bytes done, rate, ETA). Anywhere else
//! (a Pod, a pipe, a CI log): no bar, but a `progress` log record every
//! `STELLAOPS_PROGRESS_INTERVAL_SECONDS` (5 by default) and a last one when the work ends,
//! each with the same numbers as fields — one JSON object per line with
//! `--log-format json` (what the operator's workloads use).

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The log target of progress records (`RUST_LOG=stellaops::progress=off` silences them).
pub const TARGET: &str = "stellaops::progress";

/// Seconds between progress records when not on a terminal.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// A bar on stderr (a terminal).
    Bar,
    /// Log records this often.
    Records(Duration),
}

impl Mode {
    /// A bar when stderr is a terminal, else records every
    /// `STELLAOPS_PROGRESS_INTERVAL_SECONDS` (fractions allowed; at least 10 ms).
    pub fn detect() -> Mode {
        if std::io::stderr().is_terminal() {
            return Mode::Bar;
        }
        let interval = std::env::var("STELLAOPS_PROGRESS_INTERVAL_SECONDS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.01)
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_INTERVAL);
        Mode::Records(interval)
    }
}

#[derive(Debug)]
struct Counters {
    task: String,
    unit: &'static str,
    items: AtomicU64,
    items_total: AtomicU64,
    bytes: AtomicU64,
    bytes_total: AtomicU64,
    started: Instant,
    /// Set with the last record, under this lock: the ticker may be mid-record on another
    /// thread when it is aborted, and a `running` record must never follow the last one.
    ended: std::sync::Mutex<bool>,
}

/// Unknown total.
const UNKNOWN: u64 = u64::MAX;

impl Counters {
    fn total(value: &AtomicU64) -> Option<u64> {
        Some(value.load(Ordering::Relaxed)).filter(|v| *v != UNKNOWN)
    }

    /// A periodic `running` record, unless the last record was written.
    fn record_running(&self) {
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if !*ended {
            self.record("running");
        }
    }

    /// The last record (`done` or `stopped`); nothing is recorded after it.
    fn record_last(&self, state: &'static str) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        *ended = true;
        self.record(state);
    }

    /// One progress record.
    fn record(&self, state: &'static str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let items = self.items.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let items_total = Self::total(&self.items_total);
        let bytes_total = Self::total(&self.bytes_total);
        let per_second = |n: u64| {
            if elapsed > 0.0 {
                (n as f64 / elapsed * 10.0).round() / 10.0
            } else {
                0.0
            }
        };
        // The ETA follows bytes when their total is known (items differ in size), else items.
        let eta = match (bytes_total, items_total) {
            (Some(total), _) if bytes > 0 && total > 0 => {
                Some(elapsed * (total.saturating_sub(bytes)) as f64 / bytes as f64)
            }
            (_, Some(total)) if items > 0 => {
                Some(elapsed * (total.saturating_sub(items)) as f64 / items as f64)
            }
            _ => None,
        }
        .map(|s| s.round() as u64);
        tracing::info!(
            target: TARGET,
            task = %self.task,
            state,
            unit = self.unit,
            done = items,
            total = items_total,
            bytes,
            bytes_total,
            items_per_second = per_second(items),
            bytes_per_second = per_second(bytes),
            eta_seconds = eta,
            elapsed_seconds = (elapsed * 10.0).round() / 10.0,
            "progress"
        );
    }
}

/// Progress of one piece of work; ends with [`Progress::finish`] (or when dropped).
pub struct Progress {
    counters: Arc<Counters>,
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
    finished: bool,
}

impl Progress {
    /// Start reporting `task`, counting `unit`s (files, layers, advisories), with the totals
    /// when known, in the [`Mode::detect`]ed way.
    pub fn start(
        task: &str,
        unit: &'static str,
        items_total: Option<u64>,
        bytes_total: Option<u64>,
    ) -> Progress {
        Progress::with_mode(Mode::detect(), task, unit, items_total, bytes_total)
    }

    /// [`Progress::start`] in the given mode (records need a Tokio runtime).
    pub fn with_mode(
        mode: Mode,
        task: &str,
        unit: &'static str,
        items_total: Option<u64>,
        bytes_total: Option<u64>,
    ) -> Progress {
        let counters = Arc::new(Counters {
            task: task.to_string(),
            unit,
            items: AtomicU64::new(0),
            items_total: AtomicU64::new(items_total.unwrap_or(UNKNOWN)),
            bytes: AtomicU64::new(0),
            bytes_total: AtomicU64::new(bytes_total.unwrap_or(UNKNOWN)),
            started: Instant::now(),
            ended: std::sync::Mutex::new(false),
        });
        let (bar, ticker) = match mode {
            Mode::Bar => (Some(bar(task, unit, items_total, bytes_total)), None),
            Mode::Records(interval) => {
                let counters = counters.clone();
                let ticker = tokio::runtime::Handle::try_current().ok().map(|runtime| {
                    runtime.spawn(async move {
                        let mut tick = tokio::time::interval(interval);
                        tick.tick().await;
                        loop {
                            tick.tick().await;
                            counters.record_running();
                        }
                    })
                });
                (None, ticker)
            }
        };
        let progress = Progress {
            counters,
            bar,
            ticker,
            finished: false,
        };
        if progress.bar.is_none() {
            progress.counters.record("started");
        }
        progress
    }

    /// Count `items` more done, of `bytes` bytes.
    pub fn advance(&self, items: u64, bytes: u64) {
        let done = self.counters.items.fetch_add(items, Ordering::Relaxed) + items;
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            if Counters::total(&self.counters.bytes_total).is_some() {
                bar.inc(bytes);
            } else {
                bar.inc(items);
            }
            bar.set_message(self.items_message(done));
        }
    }

    /// Set the totals once they are known.
    pub fn set_totals(&self, items_total: Option<u64>, bytes_total: Option<u64>) {
        let c = &self.counters;
        c.items_total
            .store(items_total.unwrap_or(UNKNOWN), Ordering::Relaxed);
        c.bytes_total
            .store(bytes_total.unwrap_or(UNKNOWN), Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            if let Some(total) = bytes_total.or(items_total) {
                bar.set_length(total);
            }
            bar.set_message(self.items_message(c.items.load(Ordering::Relaxed)));
        }
    }

    fn items_message(&self, done: u64) -> String {
        let c = &self.counters;
        match Counters::total(&c.items_total) {
            Some(total) => format!("{} {done}/{total} {}", c.task, c.unit),
            None => format!("{} {done} {}", c.task, c.unit),
        }
    }

    /// The work is over: the bar is cleared, or a last record (`state: "done"`) is logged.
    pub fn finish(mut self) {
        self.end("done");
    }

    fn end(&mut self, state: &'static str) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => self.counters.record_last(state),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // Dropped without finish: the work stopped early (an error).
        self.end("stopped");
    }
}

fn bar(
    task: &str,
    unit: &str,
    items_total: Option<u64>,
    bytes_total: Option<u64>,
) -> indicatif::ProgressBar {
    let bar = match bytes_total.or(items_total) {
        Some(total) => indicatif::ProgressBar::new(total),
        None => indicatif::ProgressBar::no_length(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let template = if bytes_total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
    } else if items_total.is_some() {
        "{msg} [{bar:30}] {per_sec} ETA {eta}"
    } else {
        "{spinner} {msg} {per_sec} {elapsed}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(match items_total {
        Some(total) => format!("{task} 0/{total} {unit}"),
        None => format!("{task} 0 {unit}"),
    });
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
