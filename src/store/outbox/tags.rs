//! The GitHub calls a pushed tag or a published release queues: its deployment's creation
//! when the event named the commit (a push), else first a `resolve_tag` call that finds the
//! tag's commit (a release), and whose completion queues the creation. Both share the key
//! of the environment's deliberate deployments (those of no pull request: `#0`), so the
//! tags of one environment are created in the order they came.

use crate::model::{CommitSha, TagDeploy};
use crate::store::db::Connection;

use super::{Row, enqueue_create_deployment, insert, json_error, lane_of};

/// Queues what `deploy` needs: its creation, or its tag's resolution first.
pub fn enqueue_tag(conn: &Connection, deploy: &TagDeploy, now: i64) -> rusqlite::Result<()> {
    if let Some(sha) = &deploy.sha {
        return enqueue_create_deployment(conn, &deploy.deployment(sha.clone()), now);
    }
    let key = format!("pr:{}#0@{}", deploy.repo, deploy.environment);
    let body = serde_json::to_string(deploy).map_err(json_error)?;
    let row = Row {
        key: &key,
        kind: "resolve_tag",
        repository: deploy.repo.as_ref(),
        deployment_id: None,
        lane: lane_of(deploy.installation)?,
        body: &body,
    };
    insert(conn, &row, now)
}

/// The resolution of `id`, a `resolve_tag` call, found `sha`: the call is done and the
/// deployment of that commit queued, in one transaction.
pub fn tag_resolved(
    conn: &Connection,
    id: i64,
    deploy: &TagDeploy,
    sha: CommitSha,
    now: i64,
) -> rusqlite::Result<()> {
    super::complete(conn, id)?;
    enqueue_create_deployment(conn, &deploy.deployment(sha), now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::outbox::{Call, take_due};
    use crate::store::tests::each_engine;

    fn release(tag: &str) -> TagDeploy {
        TagDeploy {
            repo: "acme/widgets".parse().unwrap(),
            installation: None,
            tag: tag.to_owned(),
            sha: None,
            environment: "production".parse().unwrap(),
            deploy_user: "octo-dev".into(),
            description: format!("Deploy release {tag}"),
            required_contexts: vec![],
            production_environment: Some(true),
            transient_environment: None,
        }
    }

    #[test]
    fn a_releases_tag_is_resolved_before_its_deployment_in_the_order_tags_came() {
        each_engine(|conn| {
            enqueue_tag(conn, &release("v1.0.0"), 1).unwrap();
            let mut pushed = release("v1.0.1");
            let sha: CommitSha = "f19c884ab35c8d243bf9d857d631a5d4f190079f".parse().unwrap();
            pushed.sha = Some(sha.clone());
            enqueue_tag(conn, &pushed, 2).unwrap();
            // One key: the pushed tag's creation waits behind the release's resolution.
            let taken = take_due(conn, 10, 8).unwrap();
            assert_eq!(taken.len(), 1, "{taken:?}");
            let Call::ResolveTag(deploy) = &taken[0].call else {
                panic!("{:?}", taken[0].call);
            };
            assert_eq!(deploy, &release("v1.0.0"));
            tag_resolved(conn, taken[0].id, deploy, sha, 20).unwrap();
            let mut created = Vec::new();
            while let Some(item) = take_due(conn, 30, 8).unwrap().pop() {
                let Call::CreateDeployment { request, .. } = &item.call else {
                    panic!("{:?}", item.call);
                };
                created.push(request.payload["tag"].as_str().unwrap().to_owned());
                crate::store::outbox::complete(conn, item.id).unwrap();
            }
            assert_eq!(created, ["v1.0.1", "v1.0.0"]);
        });
    }
}
