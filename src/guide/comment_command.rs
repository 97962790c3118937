//! `comment_command`, the handler for `issue_comment`: a new comment on a pull request
//! that starts with the command prefix is recorded as a command for the command worker.
//! Nothing is decided about people or environments here: who may do what is asked of
//! GitHub, which is slow, so the worker decides and answers in the pull request.
//!
//! Ignored: edited and deleted comments (an edit must not run a command twice, nor a
//! deleted one run at all), comments on issues, comments by bots (deployhook's own
//! replies among them), and comments that are not commands.

use crate::guide::Ignored;
use crate::model::command::{CommandRequest, parse};
use crate::webhook::events::IssueCommentEvent;

/// The command `event`'s comment holds, or why it holds none to act on.
pub fn comment_command(event: &IssueCommentEvent, prefix: &str) -> Result<CommandRequest, Ignored> {
    let number = event.issue.number;
    if event.action != "created" {
        return Err(Ignored(format!(
            "comment on #{number} was {}; only new comments are read for commands",
            event.action
        )));
    }
    if !event.on_pull_request() {
        return Err(Ignored(format!(
            "comment on issue #{number}: commands are read on pull requests only"
        )));
    }
    let Some(user) = event.comment.user.as_ref() else {
        return Err(Ignored(format!("comment on #{number} names no author")));
    };
    if user.is_bot() {
        return Err(Ignored(format!(
            "comment on #{number} by {}, a bot: bots give no commands",
            user.login
        )));
    }
    let body = event.comment.body.as_deref().unwrap_or_default();
    let Some(command) = parse(body, prefix) else {
        return Err(Ignored(format!("comment on #{number} is not a command")));
    };
    let Some(repository) = event.repository.as_ref() else {
        return Err(Ignored(format!(
            "comment on #{number}: the payload names no repository"
        )));
    };
    Ok(CommandRequest {
        repo: repository.full_name.clone(),
        pull_request: number,
        comment_id: event.comment.id,
        author: user.login.clone(),
        installation: event.installation.as_ref().map(|i| i.id),
        command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Command;
    use crate::webhook::events::Event;

    fn event(action: &str, body: &str, user_type: &str, pull_request: bool) -> IssueCommentEvent {
        let pr = if pull_request {
            r#","pull_request":{"url":"x"}"#
        } else {
            ""
        };
        let json = format!(
            r#"{{"action":"{action}","issue":{{"number":42{pr}}},
            "comment":{{"id":77,"body":{body:?},"user":{{"login":"wes","type":"{user_type}"}}}},
            "repository":{{"full_name":"acme/app"}}}}"#
        );
        match Event::parse("issue_comment", json.as_bytes()).unwrap() {
            Event::IssueComment(event) => event,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_new_command_on_a_pull_request_is_recorded() {
        let request = comment_command(&event("created", ".wcid", "User", true), ".").unwrap();
        assert_eq!(request.command, Command::Wcid);
        assert_eq!((request.pull_request, request.comment_id), (42, 77));
        assert_eq!(request.author, "wes");
    }

    #[test]
    fn what_is_ignored_says_why() {
        for (event, says) in [
            (event("edited", ".deploy", "User", true), "was edited"),
            (event("deleted", ".deploy", "User", true), "was deleted"),
            (
                event("created", ".deploy", "User", false),
                "pull requests only",
            ),
            (event("created", ".deploy", "Bot", true), "a bot"),
            (event("created", "LGTM", "User", true), "not a command"),
        ] {
            let Err(Ignored(message)) = comment_command(&event, ".") else {
                panic!("{says}: not ignored");
            };
            assert!(message.contains(says), "{message}");
        }
    }
}
