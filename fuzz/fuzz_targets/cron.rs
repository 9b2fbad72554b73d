//! Schedule cron expressions, and the next run they give (in UTC and a DST zone).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_controllers::schedule::cron::{Cron, time_zone};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cron) = Cron::parse(text) {
        let after = jiff::Timestamp::from_second(1_764_633_600).expect("a fixed instant");
        for zone in [None, Some("Europe/Berlin")] {
            if let Ok(tz) = time_zone(zone)
                && let Some(next) = cron.next_after(after, &tz)
            {
                assert!(
                    next > after,
                    "{text:?}: next run {next} is not after {after}"
                );
            }
        }
    }
});
