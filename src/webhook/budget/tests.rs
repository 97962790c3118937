use std::time::Duration;

use futures_util::FutureExt;
use proptest::prelude::*;

use super::*;

const MIB: usize = 1 << 20;

fn client(last: u8) -> Option<ClientKey> {
    Some(ClientKey::of([192, 0, 2, last].into()))
}

/// 8 MiB in all, 2 MiB per client.
fn budget() -> Arc<BodyBudget> {
    BodyBudget::new(BodyLimits {
        total: 8 * MIB,
        per_client: Some(2 * MIB),
    })
}

/// Grows `reservation` if that needs no wait.
fn grows_at_once(reservation: &mut Reservation, bytes: usize) -> bool {
    matches!(reservation.grow_to(bytes).now_or_never(), Some(Ok(())))
}

#[test]
fn small_bodies_take_nothing_and_never_wait_even_when_the_budget_is_full() {
    let budget = budget();
    let mut full = Vec::new();
    for last in 1..=4 {
        let mut reservation = budget.reserve(client(last));
        assert!(grows_at_once(&mut reservation, 2 * MIB));
        full.push(reservation);
    }
    assert_eq!(budget.held(client(1).unwrap()), (8 * MIB, 2 * MIB));
    for _ in 0..100 {
        let mut small = budget.reserve(client(1));
        assert!(grows_at_once(&mut small, SMALL_BODY));
        assert_eq!(small.bytes(), 0);
    }
}

#[test]
fn a_body_past_the_small_size_is_counted_whole() {
    let budget = budget();
    let mut reservation = budget.reserve(client(1));
    assert!(grows_at_once(&mut reservation, SMALL_BODY + 1));
    assert_eq!(reservation.bytes(), SMALL_BODY + 1);
    drop(reservation);
    assert_eq!(budget.held(client(1).unwrap()), (0, 0));
}

#[test]
fn a_client_at_its_share_waits_while_another_client_gets_in() {
    let budget = budget();
    let mut first = budget.reserve(client(1));
    assert!(grows_at_once(&mut first, 2 * MIB));
    let mut second = budget.reserve(client(1));
    assert!(!grows_at_once(&mut second, MIB), "past its 2 MiB share");
    let mut other = budget.reserve(client(2));
    assert!(grows_at_once(&mut other, 2 * MIB));
}

#[test]
fn a_body_that_could_never_fit_is_told_at_once() {
    let budget = budget();
    let mut reservation = budget.reserve(client(1));
    let never = reservation.grow_to(3 * MIB).now_or_never();
    assert_eq!(never, Some(Err(NeverFits { limit: 2 * MIB })));
    // Without a known client only the total applies.
    let mut unknown = budget.reserve(None);
    assert!(grows_at_once(&mut unknown, 3 * MIB));
}

#[test]
fn without_a_share_per_client_one_client_may_take_the_whole_total() {
    let budget = BodyBudget::new(BodyLimits {
        total: 8 * MIB,
        per_client: None,
    });
    let mut reservation = budget.reserve(client(1));
    assert!(grows_at_once(&mut reservation, 8 * MIB));
}

#[tokio::test]
async fn a_body_that_fits_never_queues_behind_one_that_waits() {
    let budget = budget();
    let mut held = Vec::new();
    for (last, bytes) in [(1, 2 * MIB), (2, 2 * MIB), (3, 2 * MIB), (4, MIB + MIB / 2)] {
        let mut reservation = budget.reserve(client(last));
        assert!(grows_at_once(&mut reservation, bytes));
        held.push(reservation);
    }
    // 7.5 MiB of 8 held: 2 MiB waits; 512 KiB, asked after it, fits and is not held up.
    let mut large = budget.reserve(client(5));
    let waiting = tokio::spawn(async move { large.grow_to(2 * MIB).await.map(|()| large) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "2 MiB more than the 8 MiB in all");
    let mut medium = budget.reserve(client(6));
    assert!(
        grows_at_once(&mut medium, MIB / 2),
        "a body that fits never queues"
    );
    drop(medium);
    drop(held.remove(0));
    let large = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting body was not woken")
        .unwrap()
        .unwrap();
    assert_eq!(large.bytes(), 2 * MIB);
}

#[tokio::test]
async fn bytes_given_back_wake_a_body_waiting_for_the_total() {
    let budget = budget();
    let mut held = Vec::new();
    for last in 1..=4 {
        let mut reservation = budget.reserve(client(last));
        assert!(grows_at_once(&mut reservation, 2 * MIB));
        held.push(reservation);
    }
    let mut next = budget.reserve(client(5));
    let waiting = tokio::spawn(async move { next.grow_to(MIB).await.map(|()| next) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "8 MiB of 8 are held");
    drop(held.pop());
    let next = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting body was not woken")
        .unwrap()
        .unwrap();
    assert_eq!(next.bytes(), MIB);
}

/// One step of a run: body `.1` (from client `.0`, if new) grows to `.2` KiB, or body `.0`
/// ends.
#[derive(Debug, Clone)]
enum Step {
    Grow(u8, usize, usize),
    End(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..4, 0usize..8, 0usize..3000).prop_map(|(c, b, k)| Step::Grow(c, b, k)),
        (0usize..8).prop_map(Step::End),
    ]
}

proptest! {
    /// Whatever bodies grow and end, in any order: the bytes held never pass the total or a
    /// client's share, a body that fits both is never refused, a small one never waits,
    /// and all is given back at the end.
    #[test]
    fn the_total_and_each_share_hold_and_a_body_that_fits_is_never_kept_waiting(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let budget = BodyBudget::new(BodyLimits { total: 4 * MIB, per_client: Some(MIB + MIB / 2) });
        let mut bodies: Vec<Option<Reservation>> = (0..8).map(|_| None).collect();
        for step in steps {
            match step {
                Step::Grow(last, body, kib) => {
                    let reservation = bodies[body].get_or_insert_with(|| budget.reserve(client(last)));
                    let key = reservation.client.unwrap();
                    let bytes = kib * 1024;
                    let (total, mine) = budget.held(key);
                    let more = if bytes <= SMALL_BODY { 0 } else { bytes.saturating_sub(reservation.bytes()) };
                    let fits = total + more <= 4 * MIB && mine + more <= MIB + MIB / 2;
                    let grown = reservation.grow_to(bytes).now_or_never();
                    match grown {
                        Some(Ok(())) => prop_assert!(fits || more == 0),
                        Some(Err(NeverFits { limit })) => prop_assert!(bytes > limit),
                        None => prop_assert!(!fits, "a body that fits waited"),
                    }
                }
                Step::End(body) => bodies[body] = None,
            }
            let mut by_clients = 0;
            for last in 0..4 {
                let (_, mine) = budget.held(client(last).unwrap());
                prop_assert!(mine <= MIB + MIB / 2, "a client holds {mine}");
                by_clients += mine;
            }
            let (total, _) = budget.held(client(0).unwrap());
            prop_assert!(total <= 4 * MIB, "{total} held in all");
            prop_assert_eq!(total, by_clients);
            let counted: usize = bodies.iter().flatten().map(Reservation::bytes).sum();
            prop_assert_eq!(total, counted);
        }
        bodies.clear();
        prop_assert_eq!(budget.held(client(0).unwrap()), (0, 0));
    }
}
