use proptest::prelude::*;

use super::*;

fn limit() -> GuessLimit {
    GuessLimit::new("admin", Arc::new(Metrics::new()))
}

/// One presented token: from which of a few addresses, right or wrong, and how long after
/// the one before.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    address: usize,
    right: bool,
    after_ms: u64,
}

const ADDRESSES: [&str; 4] = [
    "192.0.2.1",
    "192.0.2.2",
    "2001:db8:0:1::1",
    "2001:db8:0:2::1",
];

fn attempts() -> impl Strategy<Value = Vec<Attempt>> {
    let attempt =
        (0..ADDRESSES.len(), any::<bool>(), 0u64..4_000).prop_map(|(address, right, after_ms)| {
            Attempt {
                address,
                right,
                after_ms,
            }
        });
    proptest::collection::vec(attempt, 1..200)
}

/// Plays `attempts` on a fresh limit; each one's time (ms from the start) and verdict.
fn play(attempts: &[Attempt]) -> Vec<(u64, Verdict)> {
    let limit = limit();
    let start = Instant::now();
    let mut at = 0;
    attempts
        .iter()
        .map(|a| {
            at += a.after_ms;
            let now = start + Duration::from_millis(at);
            let address: IpAddr = ADDRESSES[a.address].parse().unwrap();
            (at, limit.check_at(address, now, || a.right))
        })
        .collect()
}

proptest! {
    /// Whatever the others send, an address gets the answers it would get alone: no one
    /// else's guesses cost it anything.
    #[test]
    fn an_address_is_answered_as_if_it_were_alone(attempts in attempts()) {
        let together = play(&attempts);
        for address in 0..ADDRESSES.len() {
            // Alone: the same attempts at the same times, the others' left out.
            let mut alone_attempts = Vec::new();
            let mut waited = 0;
            for a in &attempts {
                waited += a.after_ms;
                if a.address == address {
                    alone_attempts.push(Attempt { after_ms: waited, ..*a });
                    waited = 0;
                }
            }
            let alone: Vec<Verdict> = play(&alone_attempts).into_iter().map(|(_, v)| v).collect();
            let mine: Vec<Verdict> = attempts
                .iter()
                .zip(&together)
                .filter(|(a, _)| a.address == address)
                .map(|(_, (_, v))| *v)
                .collect();
            prop_assert_eq!(mine, alone);
        }
    }

    /// Between any two of an address's checked wrong guesses, at most BURST then one per
    /// REFILL were checked; and an address that brings only the right token is never refused.
    #[test]
    fn wrong_guesses_stay_within_the_burst_and_the_refill(attempts in attempts()) {
        let played = play(&attempts);
        for address in 0..ADDRESSES.len() {
            let wrong: Vec<u64> = attempts
                .iter()
                .zip(&played)
                .filter(|(a, (_, v))| a.address == address && *v == Verdict::Wrong)
                .map(|(_, (at, _))| *at)
                .collect();
            for (i, first) in wrong.iter().enumerate() {
                for (j, last) in wrong.iter().enumerate().skip(i) {
                    let refills = (last - first) / REFILL.as_millis() as u64;
                    prop_assert!(
                        (j - i + 1) as u64 <= u64::from(BURST) + refills,
                        "{} wrong guesses checked in {} ms", j - i + 1, last - first
                    );
                }
            }
            let only_right = attempts.iter().filter(|a| a.address == address).all(|a| a.right);
            if only_right {
                let refused = attempts
                    .iter()
                    .zip(&played)
                    .any(|(a, (_, v))| a.address == address && matches!(v, Verdict::Limited(_)));
                prop_assert!(!refused, "the right token alone was refused");
            }
        }
    }
}

#[test]
fn an_address_over_its_limit_has_even_the_right_token_refused_and_is_told_how_long() {
    let limit = limit();
    let (stranger, now) = ("192.0.2.9".parse().unwrap(), Instant::now());
    for _ in 0..BURST {
        assert_eq!(limit.check_at(stranger, now, || false), Verdict::Wrong);
    }
    assert_eq!(
        limit.check_at(stranger, now, || true),
        Verdict::Limited(REFILL),
        "the limit must not tell a right guess from a wrong one"
    );
    let later = now + REFILL;
    assert_eq!(limit.check_at(stranger, later, || false), Verdict::Wrong);
    assert!(matches!(
        limit.check_at(stranger, later, || false),
        Verdict::Limited(_)
    ));
    // The other addresses of its IPv6 /64 share its limit; another /64 does not.
    let six: IpAddr = "2001:db8:0:7::1".parse().unwrap();
    for _ in 0..BURST {
        limit.check_at(six, now, || false);
    }
    let same_64: IpAddr = "2001:db8:0:7:ffff::2".parse().unwrap();
    let other_64: IpAddr = "2001:db8:0:8::1".parse().unwrap();
    assert!(matches!(
        limit.check_at(same_64, now, || true),
        Verdict::Limited(_)
    ));
    assert_eq!(limit.check_at(other_64, now, || true), Verdict::Right);
}

#[test]
fn the_addresses_remembered_stay_bounded_and_a_new_one_is_still_checked() {
    let limit = limit();
    let now = Instant::now();
    for i in 0..=MAX_ADDRESSES as u32 + 10 {
        let address = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        assert_eq!(limit.check_at(address, now, || false), Verdict::Wrong);
    }
    let remembered = limit.addresses.lock().unwrap().len();
    assert!(remembered <= MAX_ADDRESSES, "{remembered}");
    let admin: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(limit.check_at(admin, now, || true), Verdict::Right);
}
