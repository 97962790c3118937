use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn v4(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
}

#[test]
fn two_thousand_refusals_in_one_second_make_one_full_line_and_one_summary() {
    let mut window = Window::default();
    let start = Instant::now();
    let mut full_lines = 0;
    for n in 0..2000u32 {
        let at = start + Duration::from_micros(u64::from(n) * 400);
        let (reason, client) = if n % 100 == 99 {
            ("too_large", v4(9))
        } else {
            ("bad_signature", v4(1 + u8::try_from(n % 2).unwrap()))
        };
        if window.note(reason, client, at) {
            full_lines += 1;
        }
    }
    assert_eq!(full_lines, 1, "only the first is logged in full");
    let summary = window.take(start + SUMMARY_PERIOD).unwrap();
    assert_eq!(summary.total, 1999);
    assert_eq!(full_lines + summary.total, 2000);
    let counts: Vec<(&str, u64)> = summary
        .reasons
        .iter()
        .map(|r| (r.reason, r.count))
        .collect();
    assert_eq!(counts, [("bad_signature", 1979), ("too_large", 20)]);
    assert_eq!(
        summary.line(DELIVERIES),
        "refused 1,999 deliveries in the last 1.0 s: bad signature ×1,979 (top: 192.0.2.1 \
         ×999, 192.0.2.2 ×980), too large ×20 (top: 192.0.2.9 ×20)"
    );
    // Nothing more counted: no line; the flood goes on, so the next is still counted.
    assert!(window.take(start + SUMMARY_PERIOD * 2).is_none());
}

#[test]
fn after_a_quiet_second_the_next_refusal_is_logged_in_full_again() {
    let mut window = Window::default();
    let start = Instant::now();
    assert!(window.note("bad_signature", v4(1), start));
    assert!(!window.note("bad_signature", v4(1), start + Duration::from_millis(100)));
    // A summary of the one counted; then nothing counted, but the spell is not over: the
    // last refusal came 0.95 s ago.
    let at = start + SUMMARY_PERIOD;
    assert_eq!(window.take(at).unwrap().total, 1);
    assert!(window.take(at + Duration::from_millis(50)).is_none());
    assert!(!window.note("bad_signature", v4(1), at + Duration::from_millis(600)));
    assert_eq!(window.take(at + SUMMARY_PERIOD).unwrap().total, 1);
    // A whole period with none: quiet again.
    assert!(window.take(at + SUMMARY_PERIOD * 3).is_none());
    assert!(window.note("missing_signature", v4(2), at + SUMMARY_PERIOD * 3));
}

#[test]
fn the_addresses_counted_stay_bounded_and_the_loudest_is_named_first() {
    let mut top = TopClients::default();
    // 20,000 refusals from 10,000 addresses, and 5,000 from one of them.
    for n in 0..20_000u32 {
        let [_, _, a, b] = (n % 10_000).to_be_bytes();
        top.add(Some(IpAddr::V4(Ipv4Addr::new(10, 0, a, b))));
        if n % 4 == 0 {
            top.add(v4(7));
        }
    }
    assert_eq!(top.counted.len(), TRACKED_CLIENTS);
    let loudest = top.top(1)[0];
    assert_eq!(loudest.client, v4(7));
    let sure = loudest.count - loudest.overcount;
    assert!(
        sure <= 5000 && loudest.count >= 5000,
        "{sure}..={} must hold the true 5,000",
        loudest.count
    );
}

#[test]
fn an_overcounted_address_is_shown_with_what_is_sure() {
    let mut window = Window::default();
    let start = Instant::now();
    window.note("bad_signature", v4(1), start);
    for n in 0..=TRACKED_CLIENTS {
        window.note("bad_signature", v4(u8::try_from(n).unwrap()), start);
    }
    // The first TRACKED_CLIENTS addresses counted once each; the next took one's place.
    let line = window
        .take(start + SUMMARY_PERIOD)
        .unwrap()
        .line(DELIVERIES);
    assert!(
        line.contains(&format!("192.0.2.{TRACKED_CLIENTS} ×≥1")),
        "{line}"
    );
}

#[test]
fn ipv6_clients_are_counted_by_their_64_and_loopback_as_itself() {
    let a: Ipv6Addr = "2001:db8:1:2::a".parse().unwrap();
    let b: Ipv6Addr = "2001:db8:1:2:ffff::b".parse().unwrap();
    assert_eq!(client_key(a.into()), client_key(b.into()));
    assert_eq!(
        ShownClient(Some(client_key(a.into()))).to_string(),
        "2001:db8:1:2::/64"
    );
    assert_eq!(
        ShownClient(Some(client_key(Ipv6Addr::LOCALHOST.into()))).to_string(),
        "::1"
    );
    let mapped: Ipv6Addr = "::ffff:192.0.2.1".parse().unwrap();
    assert_eq!(client_key(mapped.into()).to_string(), "192.0.2.1");
    assert_eq!(ShownClient(None).to_string(), "unknown");
}

#[test]
fn counts_are_grouped_by_thousands() {
    let shown: Vec<String> = [0, 7, 999, 1000, 41_233, 1_234_567]
        .into_iter()
        .map(|n| Grouped(n).to_string())
        .collect();
    assert_eq!(shown, ["0", "7", "999", "1,000", "41,233", "1,234,567"]);
}

#[test]
fn a_single_refusal_summarised_is_one_delivery() {
    let mut window = Window::default();
    let start = Instant::now();
    window.note("bad_signature", None, start);
    window.note("bad_signature", None, start);
    let line = window
        .take(start + SUMMARY_PERIOD)
        .unwrap()
        .line(DELIVERIES);
    assert_eq!(
        line,
        "refused 1 delivery in the last 1.0 s: bad signature ×1 (top: unknown ×1)"
    );
}

/// What happens next to the window: a refusal some milliseconds after the previous event,
/// or the summary task's tick.
#[derive(Debug, Clone)]
enum Step {
    Refusal {
        after_ms: u64,
        reason: u8,
        client: u8,
    },
    Tick,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u64..1500, 0u8..3, 0u8..40).prop_map(|(after_ms, reason, client)| {
            Step::Refusal { after_ms, reason, client }
        }),
        1 => Just(Step::Tick),
    ]
}

proptest! {
    /// Whatever the pattern of refusals, every one is either logged in full or counted in
    /// exactly one summary; a line is written at most twice per tick (a summary, and a full
    /// line only after a tick found a quiet spell); the addresses kept stay bounded.
    #[test]
    fn every_refusal_is_told_once_and_lines_stay_bounded(steps in prop::collection::vec(step(), 1..400)) {
        const REASONS: [&str; 3] = ["bad_signature", "too_large", "content_type"];
        let mut window = Window::default();
        let start = Instant::now();
        let mut now = start;
        let (mut refusals, mut told, mut lines, mut ticks) = (0u64, 0u64, 0u64, 0u64);
        for step in steps {
            match step {
                Step::Refusal { after_ms, reason, client } => {
                    now += Duration::from_millis(after_ms);
                    refusals += 1;
                    if window.note(REASONS[usize::from(reason)], v4(client), now) {
                        told += 1;
                        lines += 1;
                    }
                    for counted in &window.reasons {
                        prop_assert!(counted.top.counted.len() <= TRACKED_CLIENTS);
                    }
                }
                Step::Tick => {
                    ticks += 1;
                    if let Some(summary) = window.take(now) {
                        let by_reason: u64 = summary.reasons.iter().map(|r| r.count).sum();
                        prop_assert_eq!(by_reason, summary.total);
                        told += summary.total;
                        lines += 1;
                    }
                }
            }
        }
        if let Some(summary) = window.take(now) {
            told += summary.total;
            lines += 1;
        }
        prop_assert_eq!(told, refusals);
        prop_assert!(lines <= 2 * ticks + 2, "{} lines for {} ticks", lines, ticks);
    }
}
