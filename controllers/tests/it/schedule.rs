//! Schedule: cron next-run computation over many expressions and zones (DST gaps and
//! repeats included), and run decisions as pure functions of (schedule, history, now).

use jiff::Timestamp;
use serde_json::json;
use stellaops_controllers::schedule::cron::{Cron, time_zone};
use stellaops_controllers::schedule::timing::{
    Decision, History, Timing, decide, jitter_seconds, run_id,
};
use stellaops_crds::schedule::ScheduleSpec;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn next(expr: &str, zone: Option<&str>, after: &str) -> Option<String> {
    Cron::parse(expr)
        .unwrap()
        .next_after(ts(after), &time_zone(zone).unwrap())
        .map(|t| t.to_string())
}

#[test]
fn expressions_are_parsed_or_refused_with_the_reason() {
    for (expr, error) in [
        ("* * * *", "has 4 fields"),
        ("61 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day of month"),
        ("*/0 * * * *", "step"),
        ("0 0 L * *", "not supported"),
        ("0 0 * * 5#3", "not supported"),
        ("0 0 * FOO *", "not a number or name"),
        ("0 0 * * 5-1", "empty range"),
    ] {
        let e = Cron::parse(expr).unwrap_err();
        assert!(e.contains(error), "{expr}: {e}");
    }
    assert!(
        time_zone(Some("Mars/Olympus"))
            .unwrap_err()
            .contains("not an IANA time zone")
    );
    // A step past u32::MAX − value ends the range (it wrapped, or panicked, before).
    let huge = Cron::parse("1/4294967295 2/4294967295 * * *").unwrap();
    assert_eq!(
        huge.next_after(ts("2026-11-25T10:07:00Z"), &time_zone(None).unwrap())
            .map(|t| t.to_string()),
        Some("2026-11-26T02:01:00Z".to_string())
    );
}

#[test]
fn next_runs_in_utc() {
    let after = "2026-11-25T10:07:00Z";
    for (expr, expected) in [
        ("*/15 * * * *", "2026-11-25T10:15:00Z"),
        ("0 2 * * *", "2026-11-26T02:00:00Z"),
        ("@hourly", "2026-11-25T11:00:00Z"),
        ("@daily", "2026-11-26T00:00:00Z"),
        ("@weekly", "2026-11-29T00:00:00Z"),
        ("@monthly", "2026-12-01T00:00:00Z"),
        ("@yearly", "2027-01-01T00:00:00Z"),
        ("0 9 * * MON-FRI", "2026-11-26T09:00:00Z"),
        ("0 9 * * sat,sun", "2026-11-28T09:00:00Z"),
        ("0 0 * * 7", "2026-11-29T00:00:00Z"),
        // Day of month OR day of week when both are restricted (cron's rule).
        ("30 4 1,15 * 5", "2026-11-27T04:30:00Z"),
        ("0 12 1 JAN,jul *", "2027-01-01T12:00:00Z"),
        ("5-10/5 * * * *", "2026-11-25T10:10:00Z"),
        ("10/20 * * * *", "2026-11-25T10:10:00Z"),
        ("0 0 29 2 *", "2028-02-29T00:00:00Z"),
        ("7 10 25 11 *", "2027-11-25T10:07:00Z"),
    ] {
        assert_eq!(next(expr, None, after).as_deref(), Some(expected), "{expr}");
    }
    assert_eq!(
        next("0 0 30 2 *", None, after),
        None,
        "February 30th never comes"
    );
}

#[test]
fn time_zones_and_daylight_saving() {
    // Sofia: EET (+02) → EEST (+03) at 2026-03-29 01:00Z; back at 2026-10-25 01:00Z.
    let sofia = Some("Europe/Sofia");
    assert_eq!(
        next("0 2 * * *", sofia, "2026-11-25T12:00:00Z").as_deref(),
        Some("2026-11-26T00:00:00Z")
    );
    assert_eq!(
        next("0 2 * * *", sofia, "2026-07-01T12:00:00Z").as_deref(),
        Some("2026-07-01T23:00:00Z")
    );
    // 03:30 does not exist on the spring-forward day: it runs at the transition.
    assert_eq!(
        next("30 3 * * *", sofia, "2026-03-28T12:00:00Z").as_deref(),
        Some("2026-03-29T01:00:00Z")
    );
    // ...and on the next day at 03:30 EEST again.
    assert_eq!(
        next("30 3 * * *", sofia, "2026-03-29T01:00:00Z").as_deref(),
        Some("2026-03-30T00:30:00Z")
    );
    // 03:30 happens twice on the fall-back day: it runs once, the first time.
    assert_eq!(
        next("30 3 * * *", sofia, "2026-10-24T12:00:00Z").as_deref(),
        Some("2026-10-25T00:30:00Z")
    );
    assert_eq!(
        next("30 3 * * *", sofia, "2026-10-25T00:30:00Z").as_deref(),
        Some("2026-10-26T01:30:00Z")
    );
    // Every half hour through the repeated hour: the second pass does not run again.
    let cron = Cron::parse("*/30 * * * *").unwrap();
    let runs: Vec<String> = cron
        .upcoming(ts("2026-10-24T23:45:00Z"), &time_zone(sofia).unwrap(), 5)
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(
        runs,
        [
            "2026-10-25T00:00:00Z", // 03:00 EEST
            "2026-10-25T00:30:00Z", // 03:30 EEST
            "2026-10-25T02:00:00Z", // 04:00 EET (03:00–03:59 EET are the repeat)
            "2026-10-25T02:30:00Z",
            "2026-10-25T03:00:00Z",
        ]
    );
    // New York: 02:30 skipped on 2026-03-08 (runs at 03:00 EDT = 07:00Z); 01:30 repeated
    // on 2026-11-01 (runs at the EDT one).
    let ny = Some("America/New_York");
    assert_eq!(
        next("30 2 * * *", ny, "2026-03-07T12:00:00Z").as_deref(),
        Some("2026-03-08T07:00:00Z")
    );
    assert_eq!(
        next("30 1 * * *", ny, "2026-10-31T12:00:00Z").as_deref(),
        Some("2026-11-01T05:30:00Z")
    );
    assert_eq!(
        next("30 1 * * *", ny, "2026-11-01T05:30:00Z").as_deref(),
        Some("2026-11-02T06:30:00Z")
    );
    // Southern hemisphere and a half-hour zone.
    assert_eq!(
        next(
            "0 2 * * *",
            Some("Australia/Sydney"),
            "2026-11-25T00:00:00Z"
        )
        .as_deref(),
        Some("2026-11-25T15:00:00Z")
    );
    assert_eq!(
        next("0 9 * * *", Some("Asia/Kolkata"), "2026-11-25T00:00:00Z").as_deref(),
        Some("2026-11-25T03:30:00Z")
    );
    // Lord Howe moves by half an hour: 02:15 is skipped on 2026-10-04.
    assert_eq!(
        next(
            "15 2 * * *",
            Some("Australia/Lord_Howe"),
            "2026-10-03T12:00:00Z"
        )
        .as_deref(),
        Some("2026-10-03T15:30:00Z")
    );
}

fn timing(spec: serde_json::Value) -> Timing {
    let spec: ScheduleSpec = serde_json::from_value(spec).unwrap();
    Timing::of(&spec, "stellaops", "nightly-eu").unwrap()
}

fn history(last: Option<&str>, active: usize) -> History {
    History {
        last_schedule_time: last.map(ts),
        created: ts("2026-11-01T00:00:00Z"),
        active,
    }
}

fn started(d: &Decision) -> Option<String> {
    d.start.map(|t| t.to_string())
}

#[test]
fn runs_start_when_due_and_never_twice() {
    let t = timing(json!({"schedule": "0 2 * * *", "timeZone": "Europe/Sofia"}));
    // Not yet due.
    let d = decide(
        &t,
        &history(Some("2026-11-24T00:00:00Z"), 0),
        ts("2026-11-24T23:59:00Z"),
    );
    assert_eq!(d.start, None);
    assert_eq!(d.next_start.unwrap().to_string(), "2026-11-25T00:00:00Z");
    // Due: start it and record it.
    let now = ts("2026-11-25T00:00:05Z");
    let d = decide(&t, &history(Some("2026-11-24T00:00:00Z"), 0), now);
    assert_eq!(started(&d).as_deref(), Some("2026-11-25T00:00:00Z"));
    assert_eq!(d.record, d.start);
    assert_eq!(d.missed, 0);
    // After a restart with the run recorded: nothing to do until tomorrow.
    let d = decide(&t, &history(Some("2026-11-25T00:00:00Z"), 1), now);
    assert_eq!(d.start, None);
    assert_eq!(d.next_start.unwrap().to_string(), "2026-11-26T00:00:00Z");
    // The run id is the same whenever it is computed.
    assert_eq!(
        run_id("nightly-eu", ts("2026-11-25T00:00:00Z")),
        run_id("nightly-eu", ts("2026-11-25T00:00:00Z"))
    );
    assert_eq!(
        run_id("nightly-eu", ts("2026-11-25T00:00:00Z")),
        "nightly-eu-29926080"
    );
}

#[test]
fn catch_up_deadline_and_concurrency() {
    let three_days_down = ts("2026-11-25T08:00:00Z");
    let last = Some("2026-11-22T00:00:00Z");
    // once: one run for the three missed nights.
    let t = timing(json!({"schedule": "0 2 * * *", "timeZone": "Europe/Sofia", "catchUp": "once"}));
    let d = decide(&t, &history(last, 0), three_days_down);
    assert_eq!(started(&d).as_deref(), Some("2026-11-25T00:00:00Z"));
    assert_eq!(d.missed, 2);
    // skip: the latest is hours late, so none runs; the next night is waited for.
    let t = timing(json!({"schedule": "0 2 * * *", "timeZone": "Europe/Sofia", "catchUp": "skip"}));
    let d = decide(&t, &history(last, 0), three_days_down);
    assert_eq!(d.start, None);
    assert_eq!(d.missed, 3);
    assert_eq!(d.record.unwrap().to_string(), "2026-11-25T00:00:00Z");
    assert!(d.not_started.unwrap().contains("catchUp: skip"));
    // skip, but on time (within the grace): it runs.
    let d = decide(
        &t,
        &history(Some("2026-11-24T00:00:00Z"), 0),
        ts("2026-11-25T00:01:00Z"),
    );
    assert_eq!(started(&d).as_deref(), Some("2026-11-25T00:00:00Z"));
    // A starting deadline: an hour late with a 30-minute deadline is missed.
    let t = timing(
        json!({"schedule": "0 2 * * *", "timeZone": "Europe/Sofia", "startingDeadlineSeconds": 1800}),
    );
    let d = decide(
        &t,
        &history(Some("2026-11-24T00:00:00Z"), 0),
        ts("2026-11-25T01:00:00Z"),
    );
    assert_eq!(d.start, None);
    assert!(
        d.not_started
            .unwrap()
            .contains("startingDeadlineSeconds (1800s)")
    );
    // ...twenty minutes late is fine.
    let d = decide(
        &t,
        &history(Some("2026-11-24T00:00:00Z"), 0),
        ts("2026-11-25T00:20:00Z"),
    );
    assert!(d.start.is_some());
    // Forbid with a run still active: skipped and recorded.
    let now = ts("2026-11-25T00:00:30Z");
    let t = timing(
        json!({"schedule": "0 2 * * *", "timeZone": "Europe/Sofia", "concurrencyPolicy": "Forbid"}),
    );
    let d = decide(&t, &history(Some("2026-11-24T00:00:00Z"), 1), now);
    assert_eq!(d.start, None);
    assert!(d.not_started.unwrap().contains("concurrencyPolicy: Forbid"));
    // Replace: start, stopping the old one.
    let t = timing(
        json!({"schedule": "0 2 * * *", "timeZone": "Europe/Sofia", "concurrencyPolicy": "Replace"}),
    );
    let d = decide(&t, &history(Some("2026-11-24T00:00:00Z"), 1), now);
    assert!(d.start.is_some() && d.replace_active);
    // Allow: start alongside.
    let t = timing(
        json!({"schedule": "0 2 * * *", "timeZone": "Europe/Sofia", "concurrencyPolicy": "Allow"}),
    );
    let d = decide(&t, &history(Some("2026-11-24T00:00:00Z"), 1), now);
    assert!(d.start.is_some() && !d.replace_active);
    // Suspended: nothing, and no next time.
    let t = timing(json!({"schedule": "0 2 * * *", "suspend": true}));
    let d = decide(&t, &history(last, 0), three_days_down);
    assert_eq!((d.start, d.next_start, d.record), (None, None, None));
    // The first run comes after creation.
    let t = timing(json!({"schedule": "0 2 * * *"}));
    let d = decide(&t, &history(None, 0), ts("2026-11-01T01:00:00Z"));
    assert_eq!(d.start, None);
    assert_eq!(d.next_start.unwrap().to_string(), "2026-11-01T02:00:00Z");
}

#[test]
fn jitter_and_windows_move_the_start() {
    let jitter = jitter_seconds("stellaops", "nightly-eu", 300);
    assert!((0..300).contains(&jitter));
    assert_eq!(
        jitter,
        jitter_seconds("stellaops", "nightly-eu", 300),
        "deterministic"
    );
    assert_ne!(jitter, jitter_seconds("stellaops", "nightly-us", 300));
    let t =
        timing(json!({"schedule": "0 2 * * *", "timeZone": "Europe/Sofia", "jitterSeconds": 300}));
    let start = t.start_at(ts("2026-11-25T00:00:00Z")).unwrap();
    assert_eq!(
        start.as_second() - ts("2026-11-25T00:00:00Z").as_second(),
        jitter
    );
    // Not started before its jitter has passed.
    let d = decide(
        &t,
        &history(Some("2026-11-24T00:00:00Z"), 0),
        ts("2026-11-25T00:00:00Z"),
    );
    assert_eq!(d.start.is_some(), jitter == 0);

    // Hourly runs, but only in a 01:00–05:00 Sofia window on weekdays.
    let t = timing(json!({"schedule": "@hourly", "timeZone": "Europe/Sofia",
        "windows": [{"start": "01:00", "duration": "4h", "days": ["Mon", "Tue", "Wed", "Thu", "Fri"]}]}));
    // Wednesday 12:00 Sofia: waits for Thursday 01:00 Sofia.
    assert_eq!(
        t.start_at(ts("2026-11-25T10:00:00Z")).unwrap().to_string(),
        "2026-11-25T23:00:00Z"
    );
    // Inside the window: at once.
    assert_eq!(
        t.start_at(ts("2026-11-26T01:00:00Z")).unwrap().to_string(),
        "2026-11-26T01:00:00Z"
    );
    // Saturday: waits for Monday.
    assert_eq!(
        t.start_at(ts("2026-11-28T10:00:00Z")).unwrap().to_string(),
        "2026-11-29T23:00:00Z"
    );
    // A window in another zone than the schedule's.
    let t = timing(json!({"schedule": "0 * * * *", "timeZone": "Europe/Sofia",
        "windows": [{"start": "22:00", "duration": "90m", "timeZone": "America/New_York"}]}));
    assert_eq!(
        t.start_at(ts("2026-11-25T12:00:00Z")).unwrap().to_string(),
        "2026-11-26T03:00:00Z"
    );
    // The next five starts, as preview shows them.
    let t = timing(json!({"schedule": "0 2 * * *", "timeZone": "Europe/Sofia"}));
    let starts: Vec<String> = t
        .upcoming_starts(ts("2026-11-25T12:00:00Z"), 5)
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(starts.len(), 5);
    assert_eq!(starts[0], "2026-11-26T00:00:00Z");
    assert_eq!(starts[4], "2026-11-30T00:00:00Z");
}

mod controller {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use http::Method;
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use serde_json::{Value, json};
    use stellaops_controllers::cache::{Caches, Contents};
    use stellaops_controllers::metrics::Metrics;
    use stellaops_controllers::schedule::{
        RunningImage, apply_limits, evaluate_job, preview_notes, reconcile, select, selection_scope,
    };
    use stellaops_controllers::{Config, Context, FIELD_MANAGER};
    use stellaops_crds::Schedule;
    use stellaops_testing::mock_client;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    fn schedule(spec: Value) -> Schedule {
        serde_json::from_value(json!({
            "apiVersion": "stella-ops.org/v1alpha1", "kind": "Schedule",
            "metadata": {"name": "nightly", "namespace": "shop", "uid": "5e0c0000-0000-4000-8000-000000000006",
                         "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z",
                         "finalizers": [stellaops_controllers::tenancy::FINALIZER]},
            "spec": spec,
        }))
        .unwrap()
    }

    fn namespaces() -> Vec<Namespace> {
        [("shop", "production"), ("lab", "dev")]
            .iter()
            .map(|(n, env)| {
                serde_json::from_value(
                    json!({"metadata": {"name": n, "labels": {"environment": env}}}),
                )
                .unwrap()
            })
            .collect()
    }

    fn pod(ns: &str, name: &str, phase: &str, app: &str, containers: &[(&str, &str)]) -> Value {
        json!({
            "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
            "spec": {"containers": []},
            "status": {"phase": phase, "containerStatuses": containers.iter().map(|(image, digest)| json!({
                "name": "c", "image": image, "imageID": format!("{image}@{digest}"),
                "ready": true, "restartCount": 0})).collect::<Vec<_>>(),
                "initContainerStatuses": [{"name": "init", "image": "registry.example.com/init:1",
                    "imageID": format!("docker-pullable://registry.example.com/init@{C}"), "ready": true, "restartCount": 0}]}
        })
    }

    /// Shared stores holding [`namespaces`] and [`pods`].
    fn running_pods() -> Caches {
        Caches::filled(Contents {
            namespaces: namespaces(),
            pods: pods(),
            ..Default::default()
        })
    }

    fn pods() -> Vec<Pod> {
        [
            pod(
                "shop",
                "web-1",
                "Running",
                "web",
                &[("registry.example.com/web:2", A), ("docker.io/envoy:1", B)],
            ),
            pod(
                "shop",
                "web-2",
                "Running",
                "web",
                &[("registry.example.com/web:2", A)],
            ),
            pod(
                "shop",
                "job-1",
                "Succeeded",
                "batch",
                &[("registry.example.com/batch:1", B)],
            ),
            pod(
                "lab",
                "exp-1",
                "Running",
                "web",
                &[("registry.example.com/exp:1", B)],
            ),
        ]
        .into_iter()
        .map(|p| serde_json::from_value(p).unwrap())
        .collect()
    }

    #[test]
    fn running_images_are_selected_by_namespace_pod_labels_and_globs_once_each() {
        let s = schedule(json!({"schedule": "0 2 * * *", "selection": {
            "namespaceSelector": {"matchLabels": {"environment": "production"}},
            "podSelector": {"matchLabels": {"app": "web"}},
            "images": ["registry.example.com/**"]}}));
        let found = select(&s, &namespaces(), &pods()).unwrap();
        assert_eq!(
            found,
            vec![
                RunningImage {
                    digest: A.into(),
                    reference: format!("registry.example.com/web@{A}")
                },
                RunningImage {
                    digest: C.into(),
                    reference: format!("registry.example.com/init@{C}")
                },
            ],
            "envoy is outside the globs, the finished Pod and the lab namespace are not selected"
        );
        let everything = schedule(json!({"schedule": "0 2 * * *"}));
        assert_eq!(
            select(&everything, &namespaces(), &pods()).unwrap().len(),
            3
        );
    }

    #[test]
    fn only_if_and_max_scans_are_counted_not_dropped() {
        let s = schedule(json!({"schedule": "0 2 * * *", "limits": {"maxScans": 1},
            "selection": {"onlyIf": {"lastReportOlderThanDays": 7}}}));
        let now: jiff::Timestamp = "2026-11-25T00:00:00Z".parse().unwrap();
        let images: Vec<RunningImage> = [A, B, C]
            .iter()
            .map(|d| RunningImage {
                digest: d.to_string(),
                reference: format!("r@{d}"),
            })
            .collect();
        let reports = BTreeMap::from([
            (A.to_string(), "2026-11-24T00:00:00Z".parse().unwrap()), // recent: left out
            (B.to_string(), "2026-11-01T00:00:00Z".parse().unwrap()), // old: taken
        ]); // C never reported: taken
        let (chosen, by_only_if, by_limit) = apply_limits(&s, &images, &reports, now);
        assert_eq!(
            chosen.iter().map(|c| c.digest.as_str()).collect::<Vec<_>>(),
            [B]
        );
        assert_eq!((by_only_if, by_limit), (1, 1));
    }

    #[test]
    fn a_run_is_an_owned_restricted_evaluate_job_and_preview_lists_next_runs() {
        let s = schedule(json!({"schedule": "0 2 * * *", "timeZone": "Europe/Sofia"}));
        let job = serde_json::to_value(evaluate_job(
            &s,
            "nightly-29926080",
            &Config::default(),
            None,
        ))
        .unwrap();
        // In the platform namespace (it holds the database URL), owned by labels.
        assert_eq!(job["metadata"]["name"], "shop-nightly-29926080");
        assert_eq!(job["metadata"]["namespace"], "stellaops-system");
        assert!(job["metadata"]["ownerReferences"].is_null());
        assert_eq!(
            job["metadata"]["labels"]["stella-ops.org/owner-kind"],
            "Schedule"
        );
        // A tenant's Schedule selects only its own namespace's Pods; the platform's, any.
        assert_eq!(
            selection_scope(&s, "stellaops-system").as_deref(),
            Some("shop")
        );
        assert_eq!(selection_scope(&s, "shop"), None);
        assert_eq!(
            job["metadata"]["labels"]["stella-ops.org/schedule-run"],
            "nightly-29926080"
        );
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["args"],
            json!(["evaluate", "--run", "nightly-29926080"])
        );
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert!(
            container["env"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == "DATABASE_URL"),
            "{container}"
        );
        let notes = preview_notes(&s, "2026-11-25T12:00:00Z".parse().unwrap());
        assert_eq!(
            notes[0],
            "next runs (after jitter 0s and windows): 2026-11-26T00:00:00Z, 2026-11-27T00:00:00Z, 2026-11-28T00:00:00Z, 2026-11-29T00:00:00Z, 2026-11-30T00:00:00Z"
        );
    }

    #[test]
    fn a_content_refresh_run_is_over_when_every_scan_has_finished() {
        use stellaops_controllers::schedule::{refresh_outcome, refresh_scan};
        let s = schedule(json!({"schedule": "0 2 * * *", "mode": "content-refresh"}));
        let image = RunningImage {
            digest: A.into(),
            reference: format!("registry.example.com/web@{A}"),
        };
        let scan = refresh_scan(&s, "nightly-1", &image);
        assert_eq!(
            scan.metadata.name.as_deref(),
            Some("nightly-1-aaaaaaaaaaaa")
        );
        assert!(scan.spec.force);
        assert_eq!(scan.spec.image, format!("registry.example.com/web@{A}"));
        // Its Job reports new findings to the run.
        let job = serde_json::to_value(stellaops_controllers::scan::job(&scan, &Config::default()))
            .unwrap();
        let args: Vec<&str> = job["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(
            args.windows(2)
                .any(|w| w == ["--schedule-run", "nightly-1"]),
            "{args:?}"
        );
        let run = stellaops_store::schedules::Run {
            plan: stellaops_store::schedules::NewRun {
                id: "nightly-1".into(),
                namespace: "shop".into(),
                name: "nightly".into(),
                trigger: "cron".into(),
                mode: "content-refresh".into(),
                scheduled_at: chrono::Utc::now(),
                images: vec![A.into(), B.into()],
                selected: 2,
                skipped: 0,
                rate_per_second: 50,
                notify: true,
                min_severity: None,
            },
            created: 2,
            new_findings: 0,
            started_at: chrono::Utc::now(),
            finished_at: None,
            error: None,
        };
        let with_phase = |phase: &str| {
            let mut scan = scan.clone();
            scan.status = Some(serde_json::from_value(json!({"phase": phase})).unwrap());
            scan
        };
        assert_eq!(
            refresh_outcome(&run, &[with_phase("Succeeded")]),
            None,
            "one Scan not created yet"
        );
        assert_eq!(
            refresh_outcome(&run, &[with_phase("Succeeded"), with_phase("Running")]),
            None
        );
        assert_eq!(
            refresh_outcome(&run, &[with_phase("Succeeded"), with_phase("Succeeded")]),
            Some(None)
        );
        assert_eq!(
            refresh_outcome(&run, &[with_phase("Succeeded"), with_phase("Failed")]),
            Some(Some("1 of 2 Scans failed".into()))
        );
    }

    #[tokio::test]
    async fn a_due_run_selects_records_and_starts_once_across_a_restart() {
        let Some(pool) =
            stellaops_testing::migrated_database("schedule_controller", &stellaops_store::MIGRATOR)
                .await
        else {
            return;
        };
        let (client, mut server) = mock_client("default");
        // Namespaces and Pods come from the shared stores: the first call is the Job.
        let ctx = Arc::new(
            Context::new(client, Metrics::unregistered(), Config::default(), None)
                .with_outbox(pool.clone())
                .with_caches(running_pods()),
        );
        let s = schedule(
            json!({"schedule": "*/5 * * * *", "catchUp": "once", "limits": {"maxScans": 1},
            "selection": {"namespaceSelector": {"matchLabels": {"environment": "production"}}}}),
        );
        let verifier = tokio::spawn(async move {
            let job = server.next_call().await;
            assert_eq!(job.method, Method::PATCH);
            assert!(
                job.path
                    .starts_with("/apis/batch/v1/namespaces/stellaops-system/jobs/shop-nightly-"),
                "{}",
                job.path
            );
            assert!(job.is_forced_apply());
            assert_eq!(job.field_manager(), Some(FIELD_MANAGER));
            let run_id = job.body["metadata"]["labels"]["stella-ops.org/schedule-run"]
                .as_str()
                .unwrap()
                .to_string();
            job.respond_with_request_body();
            let event = server
                .expect(
                    Method::POST,
                    "/apis/events.k8s.io/v1/namespaces/shop/events",
                )
                .await;
            assert_eq!(event.body["reason"], "RunStarted");
            assert!(
                event.body["note"].as_str().unwrap().ends_with("3 running image(s) selected, 1 to re-evaluate; 0 left out by onlyIf, 2 by maxScans 1"),
                "{}",
                event.body["note"]
            );
            event.respond_with_request_body();
            let status = server
                .expect(
                    Method::PATCH,
                    "/apis/stella-ops.org/v1alpha1/namespaces/shop/schedules/nightly/status",
                )
                .await;
            let body = status.body["status"].clone();
            assert_eq!(body["active"], json!([run_id]));
            assert_eq!(body["lastRun"]["selected"], 3);
            assert_eq!(body["lastRun"]["skipped"], 2);
            assert_eq!(body["lastRun"]["trigger"], "cron");
            assert!(body["lastScheduleTime"].is_string() && body["nextScheduleTime"].is_string());
            let running = body["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Running")
                .unwrap()
                .clone();
            assert_eq!(running["status"], "True");
            let mut stored =
                serde_json::to_value(schedule(json!({"schedule": "*/5 * * * *"}))).unwrap();
            stored["status"] = body.clone();
            status.respond(200, stored);
            server
                .expect_no_more_calls(std::time::Duration::from_millis(200))
                .await;
            (run_id, body)
        });
        reconcile(Arc::new(s.clone()), ctx.clone()).await.unwrap();
        let (run_id, status) = verifier.await.unwrap();
        let run = stellaops_store::schedules::run(&pool, &run_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(run.plan.images.len(), 1);
        assert_eq!(
            (run.plan.selected, run.plan.skipped, run.plan.mode.as_str()),
            (3, 2, "analysis-only")
        );

        // The operator restarts: the same Schedule with its recorded status starts nothing
        // new; it only looks at the running Job.
        let (client, mut server) = mock_client("default");
        let ctx = Arc::new(
            Context::new(client, Metrics::unregistered(), Config::default(), None)
                .with_outbox(pool.clone()),
        );
        let mut restarted = s.clone();
        restarted.status = Some(serde_json::from_value(status).unwrap());
        let expected_job = format!("/apis/batch/v1/namespaces/stellaops-system/jobs/shop-{run_id}");
        let verifier = tokio::spawn(async move {
            let job = server.expect(Method::GET, &expected_job).await;
            job.respond(200, json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}, "status": {"active": 1}}));
            // Anything else would be a second run (or a status change).
            server
                .expect_no_more_calls(std::time::Duration::from_millis(300))
                .await;
        });
        reconcile(Arc::new(restarted), ctx).await.unwrap();
        verifier.await.unwrap();
        assert_eq!(
            stellaops_store::schedules::runs(&pool, "shop", "nightly", 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }

    /// An analysis-only Schedule naming a ScanPolicy: its run's Job decides under the
    /// policy's rules (`--policy-ref`, `--policy-json`); while the policy is not Ready no run
    /// starts and the Schedule says why.
    #[tokio::test]
    async fn an_analysis_only_run_decides_under_the_named_scan_policy() {
        let Some(pool) =
            stellaops_testing::migrated_database("schedule_policy_ref", &stellaops_store::MIGRATOR)
                .await
        else {
            return;
        };
        let scan_policy = |ready: bool| -> stellaops_crds::ScanPolicy {
            serde_json::from_value(json!({
                "apiVersion": "stella-ops.org/v1alpha1", "kind": "ScanPolicy",
                "metadata": {"name": "strict", "generation": 2},
                "spec": {"failOn": "high", "rules": [
                    {"name": "kev", "match": {"kev": true}, "action": "fail"}]},
                "status": {"observedGeneration": 2, "policyDigest": "sha256:00",
                    "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                        "reason": if ready {"Valid"} else {"Invalid"},
                        "message": if ready {"valid"} else {"rules[0]: broken"},
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
            }))
            .unwrap()
        };
        let context = |policies: Vec<stellaops_crds::ScanPolicy>, client| {
            Arc::new(
                Context::new(client, Metrics::unregistered(), Config::default(), None)
                    .with_outbox(pool.clone())
                    .with_caches(Caches::filled(Contents {
                        namespaces: namespaces(),
                        pods: pods(),
                        scan_policies: policies,
                        ..Default::default()
                    })),
            )
        };
        let s = schedule(json!({"schedule": "*/5 * * * *", "catchUp": "once",
            "policyRef": {"name": "strict"},
            "selection": {"namespaceSelector": {"matchLabels": {"environment": "production"}}}}));
        let status_path = "/apis/stella-ops.org/v1alpha1/namespaces/shop/schedules/nightly/status";

        // Not Ready: no Job, no run; the Schedule is not Ready, naming the policy and why.
        let (client, mut server) = mock_client("default");
        let verifier = tokio::spawn(async move {
            let event = server
                .expect(
                    Method::POST,
                    "/apis/events.k8s.io/v1/namespaces/shop/events",
                )
                .await;
            assert_eq!(event.body["reason"], "PolicyNotReady");
            event.respond_with_request_body();
            let status = server.expect(Method::PATCH, status_path).await;
            let ready = status.body["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .unwrap()
                .clone();
            assert_eq!(
                (ready["status"].as_str(), ready["reason"].as_str()),
                (Some("False"), Some("PolicyNotReady"))
            );
            assert!(
                ready["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("ScanPolicy strict is not Ready: rules[0]: broken"),
                "{ready}"
            );
            status.respond(
                200,
                serde_json::to_value(schedule(json!({"schedule": "*/5 * * * *"}))).unwrap(),
            );
            server
                .expect_no_more_calls(std::time::Duration::from_millis(200))
                .await;
        });
        reconcile(
            Arc::new(s.clone()),
            context(vec![scan_policy(false)], client),
        )
        .await
        .unwrap();
        verifier.await.unwrap();
        assert!(
            stellaops_store::schedules::runs(&pool, "shop", "nightly", 10)
                .await
                .unwrap()
                .is_empty()
        );

        // Ready: the run's Job carries the policy as the evaluator takes it.
        let expected_json =
            stellaops_controllers::scan_policy::policy_json(&scan_policy(true).spec);
        let (client, mut server) = mock_client("default");
        let verifier = tokio::spawn(async move {
            let job = server.next_call().await;
            assert_eq!(job.method, Method::PATCH);
            assert!(
                job.path
                    .starts_with("/apis/batch/v1/namespaces/stellaops-system/jobs/shop-nightly-"),
                "{}",
                job.path
            );
            let args = job.body["spec"]["template"]["spec"]["containers"][0]["args"].clone();
            let run_id = job.body["metadata"]["labels"]["stella-ops.org/schedule-run"]
                .as_str()
                .unwrap()
                .to_string();
            assert_eq!(
                args,
                json!([
                    "evaluate",
                    "--run",
                    run_id,
                    "--policy-ref",
                    "strict",
                    "--policy-json",
                    expected_json
                ])
            );
            job.respond_with_request_body();
            let event = server
                .expect(
                    Method::POST,
                    "/apis/events.k8s.io/v1/namespaces/shop/events",
                )
                .await;
            assert_eq!(event.body["reason"], "RunStarted");
            event.respond_with_request_body();
            let status = server.expect(Method::PATCH, status_path).await;
            status.respond(
                200,
                serde_json::to_value(schedule(json!({"schedule": "*/5 * * * *"}))).unwrap(),
            );
            server
                .expect_no_more_calls(std::time::Duration::from_millis(200))
                .await;
        });
        reconcile(Arc::new(s), context(vec![scan_policy(true)], client))
            .await
            .unwrap();
        verifier.await.unwrap();
        assert_eq!(
            stellaops_store::schedules::runs(&pool, "shop", "nightly", 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn a_content_refresh_run_creates_its_scans_at_the_rate_and_ends_when_they_finish() {
        let Some(pool) =
            stellaops_testing::migrated_database("schedule_refresh", &stellaops_store::MIGRATOR)
                .await
        else {
            return;
        };
        let context = |client, caches| {
            Arc::new(
                Context::new(client, Metrics::unregistered(), Config::default(), None)
                    .with_outbox(pool.clone())
                    .with_caches(caches),
            )
        };
        let s = schedule(json!({"schedule": "*/5 * * * *", "mode": "content-refresh",
            "limits": {"maxScans": 2, "ratePerSecond": 1}, "policyRef": {"name": "shop-policy"}}));
        let scans_path = "/apis/stella-ops.org/v1alpha1/namespaces/shop/scans";
        let status_path = "/apis/stella-ops.org/v1alpha1/namespaces/shop/schedules/nightly/status";

        // First reconcile: the run starts and creates one Scan (rate 1/s).
        let (client, mut server) = mock_client("default");
        let verifier = tokio::spawn(async move {
            let scan = server.expect(Method::POST, scans_path).await;
            assert_eq!(scan.body["spec"]["force"], true);
            // The Schedule's ScanPolicy decides each of its Scans' verdicts.
            assert_eq!(
                scan.body["spec"]["policy"]["policyRef"],
                json!({"name": "shop-policy"})
            );
            assert_eq!(
                scan.body["spec"]["image"],
                format!("registry.example.com/web@{A}")
            );
            let run = scan.body["metadata"]["labels"]["stella-ops.org/schedule-run"]
                .as_str()
                .unwrap()
                .to_string();
            scan.respond_with_request_body();
            server
                .expect(
                    Method::POST,
                    "/apis/events.k8s.io/v1/namespaces/shop/events",
                )
                .await
                .respond_with_request_body();
            let status = server.expect(Method::PATCH, status_path).await;
            assert_eq!(status.body["status"]["lastRun"]["created"], 1);
            let body = status.body["status"].clone();
            status.respond(
                200,
                serde_json::to_value(schedule(json!({"schedule": "*/5 * * * *"}))).unwrap(),
            );
            server
                .expect_no_more_calls(std::time::Duration::from_millis(200))
                .await;
            (run, body)
        });
        let action = reconcile(Arc::new(s.clone()), context(client, running_pods()))
            .await
            .unwrap();
        assert_eq!(
            action,
            kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(1))
        );
        let (run, status) = verifier.await.unwrap();
        let mut s = s;
        s.status = Some(serde_json::from_value(status).unwrap());

        // A second later: the second Scan.
        let (client, mut server) = mock_client("default");
        let verifier = tokio::spawn(async move {
            let scan = server.expect(Method::POST, scans_path).await;
            // Digest B runs as lab/exp-1 and shop/web-1, but a Schedule of the tenant
            // namespace shop sees only shop's Pods: named after shop/web-1's container.
            assert_eq!(scan.body["spec"]["image"], format!("docker.io/envoy@{B}"));
            scan.respond_with_request_body();
            let status = server.expect(Method::PATCH, status_path).await;
            assert_eq!(status.body["status"]["lastRun"]["created"], 2);
            let body = status.body["status"].clone();
            status.respond(
                200,
                serde_json::to_value(schedule(json!({"schedule": "*/5 * * * *"}))).unwrap(),
            );
            server
                .expect_no_more_calls(std::time::Duration::from_millis(200))
                .await;
            body
        });
        reconcile(Arc::new(s.clone()), context(client, running_pods()))
            .await
            .unwrap();
        s.status = Some(serde_json::from_value(verifier.await.unwrap()).unwrap());

        // Both Scans finished (as the shared Scan store shows them): the run ends.
        let (client, mut server) = mock_client("default");
        let done = |image: &str, phase: &str, run: &str| -> stellaops_crds::Scan {
            serde_json::from_value(json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "Scan",
                "metadata": {"name": image, "namespace": "shop", "labels": {"stella-ops.org/schedule-run": run}},
                "spec": {"image": image}, "status": {"phase": phase}}))
            .unwrap()
        };
        let finished = Caches::filled(Contents {
            scans: vec![
                done("a", "Succeeded", &run),
                done("b", "Failed", &run),
                // Another run's Scan, still running, is not this run's.
                done("c", "Running", "other-run"),
            ],
            ..Default::default()
        });
        let verifier = tokio::spawn(async move {
            let status = server.expect(Method::PATCH, status_path).await;
            assert_eq!(status.body["status"]["active"], json!(null));
            let running = status.body["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Running")
                .unwrap()
                .clone();
            assert_eq!(running["reason"], "LastRunFailed");
            assert_eq!(running["message"], "1 of 2 Scans failed");
            status.respond(
                200,
                serde_json::to_value(schedule(json!({"schedule": "*/5 * * * *"}))).unwrap(),
            );
        });
        reconcile(Arc::new(s), context(client, finished))
            .await
            .unwrap();
        verifier.await.unwrap();
        let stored = stellaops_store::schedules::run(&pool, &run)
            .await
            .unwrap()
            .unwrap();
        assert!(stored.finished_at.is_some());
    }
}
