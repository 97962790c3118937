//! Sending what a command's pull request hears: a reaction to its comment, and
//! deployhook's one reply, posted once and edited after. The reply's id is kept with the
//! command (`store::commands`), so each later piece of news replaces the text rather than
//! adding a comment; if someone deleted the reply, a new one is posted.

use crate::github::{GitHubClient, GitHubError};
use crate::store::outbox::Call;
use crate::store::{Store, commands};

use super::parse_repo;

/// Sends a [`Call::React`] or [`Call::Reply`].
pub(super) async fn send(
    github: &GitHubClient,
    store: &Store,
    call: &Call,
) -> Result<(), GitHubError> {
    match call {
        Call::React {
            repository,
            comment_id,
            content,
        } => {
            github
                .react(&parse_repo(repository)?, *comment_id, content)
                .await
        }
        Call::Reply {
            repository,
            pull_request,
            comment_id,
            body,
        } => {
            let repo = parse_repo(repository)?;
            let (name, comment) = (repository.clone(), *comment_id);
            let posted = store
                .read(move |c| commands::reply_of(c, &name, comment))
                .await
                .map_err(|err| unreadable(&err))?;
            if let Some(reply) = posted
                && github.edit_comment(&repo, reply, body).await?
            {
                return Ok(());
            }
            let reply = github.comment(&repo, *pull_request, body).await?;
            let name = repository.clone();
            store
                .write(move |c| commands::set_reply(c, &name, comment, reply))
                .await
                .map_err(|err| unreadable(&err))?;
            tracing::info!(
                repo = repo.as_ref(),
                pull_request = *pull_request,
                comment = reply,
                "replied to a command"
            );
            Ok(())
        }
        _ => unreachable!("only reactions and replies are sent here"),
    }
}

/// What a reaction or reply does, for a log line.
pub(super) fn describe(call: &Call) -> String {
    match call {
        Call::React {
            repository,
            comment_id,
            content,
        } => format!("reacting {content} to comment {comment_id} of {repository}"),
        Call::Reply {
            repository,
            pull_request,
            ..
        } => format!("replying to a command on {repository}#{pull_request}"),
        _ => unreachable!("only reactions and replies are described here"),
    }
}

/// The store failing is retried like GitHub failing: the call stays queued.
fn unreadable(err: &crate::store::StoreError) -> GitHubError {
    GitHubError::Status {
        status: reqwest::StatusCode::SERVICE_UNAVAILABLE,
        message: format!("could not read the command's reply from the store: {err}"),
        retry_after: None,
    }
}
