//! Windows and freezes at their edges and across daylight-saving changes, with explicit
//! instants for a clock; and the rule of which deployments pass.

use super::*;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap()
}

fn schedule(zone_name: &str, windows: &[(&str, &str, &str)]) -> Schedule {
    Schedule {
        zone: zone(zone_name),
        windows: windows
            .iter()
            .map(|(days, from, until)| Window {
                days: parse_days(days).unwrap(),
                from: parse_minute(from).unwrap(),
                until: parse_minute(until).unwrap(),
            })
            .collect(),
        freezes: vec![],
    }
}

fn sentence(hold: Option<Hold>) -> Option<String> {
    hold.map(|h| h.sentence())
}

#[test]
fn a_window_is_open_from_its_first_minute_and_closed_from_its_last() {
    // 2026-12-07 is a Monday; Paris is at +01:00 in winter.
    let s = schedule("Europe/Paris", &[("mon-fri", "09:00", "16:00")]);
    assert_eq!(
        sentence(s.hold_at(at("2026-12-07T07:59:59Z"))).as_deref(),
        Some("waits for the deploy window (opens Mon 09:00 Europe/Paris)")
    );
    assert_eq!(s.hold_at(at("2026-12-07T08:00:00Z")), None);
    assert_eq!(s.hold_at(at("2026-12-07T14:59:59Z")), None);
    assert_eq!(
        sentence(s.hold_at(at("2026-12-07T15:00:00Z"))).as_deref(),
        Some("waits for the deploy window (opens Tue 09:00 Europe/Paris)")
    );
    // Friday afternoon waits for Monday.
    assert_eq!(
        sentence(s.hold_at(at("2026-12-11T15:00:00Z"))).as_deref(),
        Some("waits for the deploy window (opens Mon 09:00 Europe/Paris)")
    );
    assert_eq!(
        s.next_change(at("2026-12-07T07:00:00Z")),
        Some(at("2026-12-07T08:00:00Z"))
    );
    assert_eq!(
        s.next_change(at("2026-12-07T08:00:00Z")),
        Some(at("2026-12-07T15:00:00Z"))
    );
    assert_eq!(
        s.next_change(at("2026-12-11T15:00:00Z")),
        Some(at("2026-12-14T08:00:00Z"))
    );
}

#[test]
fn several_windows_and_one_until_midnight_join_across_it() {
    let s = schedule(
        "UTC",
        &[("mon", "20:00", "24:00"), ("tue", "00:00", "02:00")],
    );
    assert_eq!(s.hold_at(at("2026-12-07T23:59:59Z")), None);
    assert_eq!(s.hold_at(at("2026-12-08T00:00:00Z")), None);
    assert!(s.hold_at(at("2026-12-08T02:00:00Z")).is_some());
    // Midnight is no change here: the next is Tuesday 02:00.
    assert_eq!(
        s.next_change(at("2026-12-07T21:00:00Z")),
        Some(at("2026-12-08T02:00:00Z"))
    );
    let sunday_only = schedule("UTC", &[("mon", "20:00", "24:00")]);
    assert_eq!(
        sunday_only.next_change(at("2026-12-07T21:00:00Z")),
        Some(at("2026-12-08T00:00:00Z"))
    );
}

#[test]
fn on_a_spring_forward_day_a_window_closes_when_the_clock_jumps_past_its_end() {
    // Paris, 2026-03-29: 02:00 CET (01:00Z) becomes 03:00 CEST.
    let s = schedule("Europe/Paris", &[("daily", "01:30", "03:00")]);
    assert_eq!(s.hold_at(at("2026-03-29T00:30:00Z")), None); // 01:30 CET
    assert_eq!(s.hold_at(at("2026-03-29T00:59:59Z")), None); // 01:59:59 CET
    assert!(s.hold_at(at("2026-03-29T01:00:00Z")).is_some()); // 03:00 CEST
    assert_eq!(
        s.next_change(at("2026-03-29T00:30:00Z")),
        Some(at("2026-03-29T01:00:00Z"))
    );
    // A window starting in the skipped hour opens at the jump.
    let late = schedule("Europe/Paris", &[("daily", "02:30", "04:00")]);
    assert!(late.hold_at(at("2026-03-29T00:59:59Z")).is_some());
    assert_eq!(late.hold_at(at("2026-03-29T01:00:00Z")), None);
    assert_eq!(
        late.next_change(at("2026-03-29T00:30:00Z")),
        Some(at("2026-03-29T01:00:00Z"))
    );
    // One inside the skipped hour does not open that day.
    let skipped = schedule("Europe/Paris", &[("daily", "02:10", "02:50")]);
    assert_eq!(
        sentence(skipped.hold_at(at("2026-03-29T00:30:00Z"))).as_deref(),
        Some("waits for the deploy window (opens Mon 02:10 Europe/Paris)")
    );
}

#[test]
fn on_a_fall_back_day_a_time_shown_twice_is_in_the_window_both_times() {
    // New York, 2026-11-01: 02:00 EDT (06:00Z) becomes 01:00 EST; 01:30 happens twice.
    let s = schedule("America/New_York", &[("daily", "01:30", "03:00")]);
    assert!(s.hold_at(at("2026-11-01T05:29:59Z")).is_some()); // 01:29:59 EDT
    assert_eq!(s.hold_at(at("2026-11-01T05:30:00Z")), None); // 01:30 EDT
    assert_eq!(s.hold_at(at("2026-11-01T05:59:59Z")), None); // 01:59:59 EDT
    // The clock goes back to 01:00: before the window again, by the wall clock.
    assert!(s.hold_at(at("2026-11-01T06:00:00Z")).is_some()); // 01:00 EST
    assert_eq!(s.hold_at(at("2026-11-01T06:30:00Z")), None); // 01:30 EST
    assert!(s.hold_at(at("2026-11-01T08:00:00Z")).is_some()); // 03:00 EST
    let changes: Vec<Timestamp> = std::iter::successors(Some(at("2026-11-01T05:00:00Z")), |&t| {
        s.next_change(t).filter(|&n| n < at("2026-11-01T09:00:00Z"))
    })
    .skip(1)
    .collect();
    assert_eq!(
        changes,
        [
            at("2026-11-01T05:30:00Z"),
            at("2026-11-01T06:00:00Z"),
            at("2026-11-01T06:30:00Z"),
            at("2026-11-01T08:00:00Z"),
        ]
    );
    // A window ending inside the hour shown twice ends twice.
    let short = schedule("America/New_York", &[("daily", "01:00", "01:45")]);
    assert_eq!(short.hold_at(at("2026-11-01T05:10:00Z")), None);
    assert!(short.hold_at(at("2026-11-01T05:50:00Z")).is_some());
    assert_eq!(short.hold_at(at("2026-11-01T06:10:00Z")), None);
    assert_eq!(
        short.next_change(at("2026-11-01T05:50:00Z")),
        Some(at("2026-11-01T06:00:00Z"))
    );
}

fn freeze(from: &str, until: &str, reason: &str) -> Freeze {
    let paris = zone("Europe/Paris");
    Freeze {
        from: parse_instant(from, &paris).unwrap(),
        until: parse_instant(until, &paris).unwrap(),
        reason: reason.into(),
    }
}

#[test]
fn a_freeze_holds_from_its_start_until_its_end_and_over_windows() {
    let mut s = schedule("Europe/Paris", &[("mon-fri", "09:00", "16:00")]);
    s.freezes = vec![freeze("2026-12-21 00:00", "2027-01-04 09:00", "holidays")];
    assert_eq!(s.hold_at(at("2026-12-18T14:00:00Z")), None);
    assert_eq!(
        sentence(s.hold_at(at("2026-12-20T23:00:00Z"))).as_deref(),
        Some("frozen until 2027-01-04 09:00 Europe/Paris: holidays")
    );
    assert!(matches!(
        s.hold_at(at("2027-01-04T07:59:59Z")),
        Some(Hold::Frozen { .. })
    ));
    // It ends as the window opens: open at once.
    assert_eq!(s.hold_at(at("2027-01-04T08:00:00Z")), None);
    assert_eq!(
        s.next_change(at("2026-12-18T16:00:00Z")),
        Some(at("2026-12-20T23:00:00Z"))
    );
    assert_eq!(
        s.next_change(at("2026-12-25T12:00:00Z")),
        Some(at("2027-01-04T08:00:00Z"))
    );
}

#[test]
fn freezes_that_follow_one_another_end_together_and_offsets_are_kept() {
    let mut s = Schedule::open();
    s.zone = zone("Europe/Paris");
    s.freezes = vec![
        freeze("2026-12-21 00:00", "2026-12-24 00:00", "release"),
        freeze("2026-12-23T23:00+00:00", "2026-12-27 00:00", "holidays"),
    ];
    assert_eq!(
        sentence(s.hold_at(at("2026-12-22T00:00:00Z"))).as_deref(),
        Some("frozen until 2026-12-27 00:00 Europe/Paris: release")
    );
    assert_eq!(
        s.next_change(at("2026-12-22T00:00:00Z")),
        Some(at("2026-12-26T23:00:00Z"))
    );
    assert_eq!(s.hold_at(at("2026-12-26T23:00:00Z")), None);
    assert_eq!(s.next_change(at("2026-12-26T23:00:00Z")), None);
}

#[test]
fn a_window_holds_only_automatic_deploys_and_a_freeze_all_but_forced_and_rollbacks() {
    let closed = Hold::Closed { opens: None };
    let frozen = Hold::Frozen {
        until: at("2027-01-04T08:00:00Z").to_zoned(TimeZone::UTC),
        reason: "holidays".into(),
    };
    let cases = [
        (
            r#"{"pull_request": 42, "merged_at": "2026-12-07T10:00:00Z"}"#,
            Clearance::Automatic,
        ),
        (
            r#"{"promoted_from": {"environment": "staging"}}"#,
            Clearance::Automatic,
        ),
        (r#"{"preview": {"pull_request": 42}}"#, Clearance::Automatic),
        (r#"{"tag": "v1.2.3"}"#, Clearance::Automatic),
        (
            r#"{"command": {"comment_id": 9, "pull_request": 42}}"#,
            Clearance::Deliberate,
        ),
        (r#"{"deploy_user": "maria"}"#, Clearance::Deliberate),
        // Another tool's deployment, naming nobody: held, the safe side.
        ("not json", Clearance::Automatic),
        ("{}", Clearance::Automatic),
        (r#"{"deploy_user": " "}"#, Clearance::Automatic),
        (r#"{"force": true, "pull_request": 42}"#, Clearance::Urgent),
        (
            r#"{"rollback": true, "rolled_back": "abc"}"#,
            Clearance::Urgent,
        ),
    ];
    for (payload, clearance) in cases {
        assert_eq!(Clearance::of(payload), clearance, "{payload}");
        assert_eq!(
            Clearance::from_i64(clearance.as_i64()),
            clearance,
            "{payload}"
        );
    }
    assert!(!closed.lets_through(Clearance::Automatic));
    assert!(closed.lets_through(Clearance::Deliberate));
    assert!(closed.lets_through(Clearance::Urgent));
    assert!(!frozen.lets_through(Clearance::Automatic));
    assert!(!frozen.lets_through(Clearance::Deliberate));
    assert!(frozen.lets_through(Clearance::Urgent));
}

#[test]
fn days_times_and_instants_are_parsed_strictly() {
    assert_eq!(
        parse_days("mon-fri").unwrap(),
        [true, true, true, true, true, false, false]
    );
    assert_eq!(days_text(&parse_days("Sat,SUN").unwrap()), "sat,sun");
    assert_eq!(
        days_text(&parse_days("mon,wed-fri").unwrap()),
        "mon,wed-fri"
    );
    assert_eq!(days_text(&parse_days("daily").unwrap()), "daily");
    assert_eq!(days_text(&parse_days("monday-tuesday").unwrap()), "mon,tue");
    for bad in ["fri-mon", "mo", "funday", "", "mon-", "mond"] {
        assert!(parse_days(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_minute("09:05"), Ok(545));
    assert_eq!(parse_minute("24:00"), Ok(1440));
    for bad in ["9:00", "24:01", "12:60", "noon", "12"] {
        assert!(parse_minute(bad).is_err(), "{bad}");
    }
    let paris = zone("Europe/Paris");
    assert_eq!(
        parse_instant("2026-12-21 00:00", &paris),
        Ok(at("2026-12-20T23:00:00Z"))
    );
    assert_eq!(
        parse_instant("2026-12-21T00:00+05:00", &paris),
        Ok(at("2026-12-20T19:00:00Z"))
    );
    // The hour the clock skips is read as after the jump.
    assert_eq!(
        parse_instant("2026-03-29 02:30", &paris),
        Ok(at("2026-03-29T01:30:00Z"))
    );
    // A date alone is its midnight.
    assert_eq!(
        parse_instant("2026-12-21", &paris),
        parse_instant("2026-12-21 00:00", &paris)
    );
    for bad in [
        "tomorrow",
        "2026-13-01 00:00",
        "2026-12-21 00:00[Asia/Tokyo]",
    ] {
        assert!(parse_instant(bad, &paris).is_err(), "{bad}");
    }
}
