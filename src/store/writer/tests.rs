//! Tests of the sync thread's promises: one sync answers every batch committed before it,
//! and a failed sync is final.

use std::sync::Mutex;

use super::*;

type Answers = Arc<Mutex<Vec<Option<String>>>>;

/// A reply that records the answer it was given.
fn reply(answers: &Answers) -> Reply {
    let answers = answers.clone();
    Box::new(move |error: Option<&StoreError>| {
        answers.lock().unwrap().push(error.map(ToString::to_string));
    })
}

#[test]
fn one_sync_answers_every_batch_committed_before_it() {
    let answers = Answers::default();
    let (committed, batches) = mpsc::channel();
    committed.send(vec![reply(&answers)]).unwrap();
    committed
        .send(vec![reply(&answers), reply(&answers)])
        .unwrap();
    drop(committed);
    let mut syncs = 0;
    let failed = OnceLock::new();
    let sync = || {
        syncs += 1;
        Ok(())
    };
    sync_loop(sync, &batches, &failed);
    assert_eq!(syncs, 1);
    assert_eq!(*answers.lock().unwrap(), [None, None, None]);
    assert!(failed.get().is_none());
}

/// Once a sync fails, its batch and every later one are answered with the error (never
/// acknowledged) without trusting another sync, and the store is marked failed.
#[test]
fn a_failed_sync_is_final() {
    let answers = Answers::default();
    let (committed, batches) = mpsc::channel();
    committed.send(vec![reply(&answers)]).unwrap();
    // A second batch is committed while the first sync runs; that sync fails, and any
    // later one would succeed.
    let mut next = Some((committed, reply(&answers)));
    let mut syncs = 0;
    let sync = || {
        syncs += 1;
        match next.take() {
            Some((committed, later)) => {
                committed.send(vec![later]).unwrap();
                Err(std::io::Error::other("EIO"))
            }
            None => Ok(()),
        }
    };
    let failed = OnceLock::new();
    sync_loop(sync, &batches, &failed);
    assert_eq!(syncs, 1, "no sync is trusted after one failed");
    let answers = answers.lock().unwrap();
    assert_eq!(answers.len(), 2);
    for answer in answers.iter() {
        let answer = answer.as_deref().expect("an error, not an acknowledgement");
        assert!(
            answer.contains("could not be synced to disk (EIO)"),
            "{answer}"
        );
    }
    assert!(matches!(failed.get(), Some(StoreError::SyncFailed(_))));
}
