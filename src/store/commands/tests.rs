use super::*;
use crate::store::tests::each_engine;

fn request(comment: u64, command: Command) -> CommandRequest {
    CommandRequest {
        repo: RepoName::parse("acme/app").unwrap(),
        pull_request: 42,
        comment_id: comment,
        author: "wes".into(),
        installation: Some(7),
        command,
    }
}

#[test]
fn a_comment_is_recorded_once_and_taken_once_until_its_hold_ends() {
    each_engine(|c| {
        let deploy = Command::Deploy {
            branch: None,
            environment: Some("staging".into()),
        };
        assert!(record(c, &request(1, deploy.clone()), "d1", 1_000).unwrap());
        // The same comment again (a redelivery, or a replay with a new delivery id).
        assert!(!record(c, &request(1, Command::Help), "d2", 2_000).unwrap());
        let taken = take_due(c, 5_000).unwrap().unwrap();
        assert_eq!(taken.request, request(1, deploy));
        assert_eq!(taken.attempts, 0);
        // Held: not taken again until the hold ends, then taken as a second attempt.
        assert!(take_due(c, 5_000 + HOLD_MS - 1).unwrap().is_none());
        let again = take_due(c, 5_000 + HOLD_MS).unwrap().unwrap();
        assert_eq!(again.attempts, 1);
        finish(c, &again.request.repo, 1, "deployed", 70_000).unwrap();
        assert!(take_due(c, i64::MAX / 2).unwrap().is_none());
        assert_eq!(next_due(c).unwrap(), None);
    });
}

#[test]
fn commands_are_taken_oldest_first_and_a_retry_waits_its_time() {
    each_engine(|c| {
        record(c, &request(2, Command::Wcid), "d2", 2_000).unwrap();
        record(c, &request(1, Command::Help), "d1", 1_000).unwrap();
        let first = take_due(c, 3_000).unwrap().unwrap();
        assert_eq!(first.request.comment_id, 1);
        retry_at(c, &first.request.repo, 1, 10_000, 3_000).unwrap();
        assert_eq!(take_due(c, 3_000).unwrap().unwrap().request.comment_id, 2);
        assert!(take_due(c, 9_999).unwrap().is_none());
        assert_eq!(next_due(c).unwrap(), Some(10_000));
        assert_eq!(take_due(c, 10_000).unwrap().unwrap().request.comment_id, 1);
    });
}

#[test]
fn the_reply_is_remembered_per_comment() {
    each_engine(|c| {
        record(c, &request(1, Command::Help), "d1", 1_000).unwrap();
        assert_eq!(reply_of(c, "acme/app", 1).unwrap(), None);
        set_reply(c, "acme/app", 1, 555).unwrap();
        assert_eq!(reply_of(c, "acme/app", 1).unwrap(), Some(555));
        assert_eq!(reply_of(c, "acme/app", 2).unwrap(), None);
    });
}
