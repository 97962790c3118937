use std::collections::HashSet;

use proptest::prelude::*;

use super::*;

fn connections(max: usize, per_client: usize) -> Connections {
    let limits = ConnectionLimits {
        max_connections: max,
        max_connections_per_client: per_client,
        ..ConnectionLimits::default()
    };
    Connections::new(limits, Arc::new(Metrics::new()))
}

fn client(last: u8) -> ClientKey {
    ClientKey::of([192, 0, 2, last].into())
}

fn admit(connections: &Connections, last: u8) -> Slot {
    let (slot, shed) = connections.admit(client(last)).unwrap();
    assert_eq!(shed, None);
    slot
}

fn totals(connections: &Connections) -> (usize, usize) {
    let open = connections.lock();
    (open.by_id.len(), open.by_client.len())
}

#[test]
fn a_client_at_its_cap_is_refused_while_others_still_get_in() {
    let connections = connections(10, 2);
    let held = [admit(&connections, 1), admit(&connections, 1)];
    let third = connections.admit(client(1));
    assert_eq!(third.unwrap_err(), Refusal::ClientFull);
    let other = admit(&connections, 2);
    drop(held);
    assert!(
        connections.admit(client(1)).is_ok(),
        "closed ones free their slots"
    );
    drop(other);
}

#[test]
fn at_the_cap_the_longest_waiting_connection_of_the_busiest_client_is_shed() {
    let connections = connections(4, 0);
    let slots = [
        admit(&connections, 1),
        admit(&connections, 2),
        admit(&connections, 2),
        admit(&connections, 3),
    ];
    let (_new, shed) = connections.admit(client(4)).unwrap();
    assert_eq!(shed, Some(client(2)), "192.0.2.2 holds two");
    assert!(slots[1].shed.is_cancelled(), "its older one goes");
    assert!(!slots[0].shed.is_cancelled() && !slots[2].shed.is_cancelled());
    assert_eq!(totals(&connections), (4, 4));
    drop(slots);
    assert_eq!(
        totals(&connections),
        (1, 1),
        "a shed slot is not given back twice"
    );
}

#[test]
fn a_busy_connection_is_never_shed_and_one_answered_waits_again_from_then() {
    let connections = connections(2, 0);
    let first = admit(&connections, 1);
    let second = admit(&connections, 1);
    let busy = first.tracker().busy().unwrap();
    let (third, shed) = connections.admit(client(2)).unwrap();
    assert_eq!(shed, Some(client(1)));
    assert!(second.shed.is_cancelled() && !first.shed.is_cancelled());
    let other_busy = third.tracker().busy().unwrap();
    assert_eq!(connections.admit(client(3)).unwrap_err(), Refusal::Full);
    drop(busy);
    drop(other_busy);
    // The first has waited since its answer, after the third's began: the first goes.
    let (_fourth, shed) = connections.admit(client(3)).unwrap();
    assert_eq!(shed, Some(client(1)));
    assert!(first.shed.is_cancelled() && !third.shed.is_cancelled());
}

#[test]
fn a_request_on_a_connection_already_shed_is_not_served() {
    let connections = connections(1, 0);
    let first = admit(&connections, 1);
    let tracker = first.tracker();
    let _second = connections.admit(client(2)).unwrap();
    assert!(tracker.busy().is_none());
}

#[test]
fn the_total_cap_holds_whatever_the_addresses() {
    let connections = connections(3, 0);
    let slots: Vec<Slot> = (1..=3).map(|i| admit(&connections, i)).collect();
    for slot in &slots {
        std::mem::forget(slot.tracker().busy());
    }
    assert_eq!(connections.admit(client(9)).unwrap_err(), Refusal::Full);
    drop(slots);
    assert_eq!(totals(&connections), (0, 0));
}

/// One step of a run.
#[derive(Debug, Clone)]
enum Step {
    /// A new connection from client `.0`.
    Open(u8),
    /// Connection `.0` (an index among those open) starts a request.
    Start(usize),
    /// Connection `.0`'s oldest request is answered.
    Finish(usize),
    /// Connection `.0` closes.
    Close(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u8..5).prop_map(Step::Open),
        2 => (0usize..16).prop_map(Step::Start),
        2 => (0usize..16).prop_map(Step::Finish),
        1 => (0usize..16).prop_map(Step::Close),
    ]
}

/// A connection as the test sees it.
struct Held {
    slot: Slot,
    client: u8,
    busy: Vec<Busy>,
}

proptest! {
    /// Whatever connections open, serve and close, in any order: the caps hold; a busy
    /// connection is never shed; a newcomer is refused at the total cap only when every
    /// connection is busy; the one shed is waiting and belongs to a client holding the most.
    #[test]
    fn the_caps_hold_busy_connections_stay_and_idle_ones_make_room(
        steps in proptest::collection::vec(step(), 1..80)
    ) {
        let (max, per_client) = (6, 3);
        let connections = connections(max, per_client);
        let mut held: Vec<Held> = Vec::new();
        for step in steps {
            match step {
                Step::Open(last) => {
                    let mine = held.iter().filter(|h| h.client == last).count();
                    let idle = held.iter().filter(|h| h.busy.is_empty()).count();
                    let mut counts = [0usize; 5];
                    for h in &held {
                        counts[usize::from(h.client)] += 1;
                    }
                    match connections.admit(client(last)) {
                        Err(Refusal::ClientFull) => prop_assert_eq!(mine, per_client),
                        Err(Refusal::Full) => {
                            prop_assert_eq!(held.len(), max);
                            prop_assert_eq!(idle, 0, "refused while one was idle");
                        }
                        Ok((slot, shed)) => {
                            prop_assert!(mine < per_client);
                            prop_assert_eq!(shed.is_some(), held.len() == max);
                            let gone: Vec<usize> = (0..held.len())
                                .filter(|&i| held[i].slot.shed.is_cancelled())
                                .collect();
                            prop_assert_eq!(gone.len(), usize::from(shed.is_some()));
                            if let Some(&i) = gone.first() {
                                let victim = held.remove(i);
                                prop_assert!(victim.busy.is_empty(), "a busy one was shed");
                                prop_assert_eq!(Some(client(victim.client)), shed);
                                let most = (0..5u8)
                                    .filter(|&c| held.iter().chain([&victim]).any(|h| h.client == c && h.busy.is_empty()))
                                    .map(|c| counts[usize::from(c)])
                                    .max();
                                prop_assert_eq!(Some(counts[usize::from(victim.client)]), most);
                            }
                            held.push(Held { slot, client: last, busy: Vec::new() });
                        }
                    }
                }
                Step::Start(i) if !held.is_empty() => {
                    let n = held.len();
                    let h = &mut held[i % n];
                    h.busy.push(h.slot.tracker().busy().expect("an open connection"));
                }
                Step::Finish(i) if !held.is_empty() => {
                    let n = held.len();
                    let h = &mut held[i % n];
                    if !h.busy.is_empty() {
                        h.busy.remove(0);
                    }
                }
                Step::Close(i) if !held.is_empty() => {
                    held.remove(i % held.len());
                }
                _ => {}
            }
            let (total, clients) = totals(&connections);
            prop_assert_eq!(total, held.len());
            prop_assert!(total <= max);
            let distinct: HashSet<u8> = held.iter().map(|h| h.client).collect();
            prop_assert_eq!(clients, distinct.len());
            for c in distinct {
                prop_assert!(held.iter().filter(|h| h.client == c).count() <= per_client);
            }
        }
        held.clear();
        prop_assert_eq!(totals(&connections), (0, 0));
    }
}
