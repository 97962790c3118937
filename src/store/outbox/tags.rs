//! The GitHub calls a pushed tag or a published release queues: its deployment's creation
//! when the event named the commit (a push), else first a `resolve_tag` call that finds the
//! tag's commit (a release), and whose completion queues the creation. Both share the key
//! of the environment's deliberate deployments (those of no pull request: `#0`), so the
//! tags of one environment are created in the order they came.

use crate::model::{CommitSha, TagDeploy};
use crate::store::db::{Connection, params};

use super::{Row, enqueue_create_deployment, insert, json_error, lane_of};

/// How long a tag's deploy to an environment is remembered: another webhook's delivery of
/// the same push or release comes within seconds; a tag moved back to a commit it was on
/// an hour ago is a deliberate act, and deploys.
pub const SAME_TAG_MS: i64 = 60 * 60 * 1000;

/// Queues what `deploy` needs: its creation, or its tag's resolution first. `false`, and
/// nothing queued, when the same tag (and commit) was queued for its environment within
/// [`SAME_TAG_MS`]: another webhook delivered the same push or release.
pub fn enqueue_tag(conn: &Connection, deploy: &TagDeploy, now: i64) -> rusqlite::Result<bool> {
    let (repo, environment) = (deploy.repo.as_ref(), deploy.environment.as_ref());
    let sha = deploy.sha.as_ref().map_or("", AsRef::as_ref);
    let seen: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM tag_deploys WHERE repository = ?1 AND environment = ?2
                            AND tag = ?3 AND sha = ?4 AND recorded_at > ?5)",
        )?
        .query_row(
            params![repo, environment, deploy.tag, sha, now - SAME_TAG_MS],
            |row| row.get(0),
        )?;
    if seen {
        return Ok(false);
    }
    conn.prepare_cached(
        "INSERT INTO tag_deploys (repository, environment, tag, sha, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![repo, environment, deploy.tag, sha, now])?;
    queue(conn, deploy, now)?;
    Ok(true)
}

fn queue(conn: &Connection, deploy: &TagDeploy, now: i64) -> rusqlite::Result<()> {
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
    fn a_tag_delivered_twice_is_queued_once_but_moved_back_later_deploys_again() {
        each_engine(|conn| {
            let mut pushed = release("v2.0.0");
            pushed.sha = Some("f19c884ab35c8d243bf9d857d631a5d4f190079f".parse().unwrap());
            assert!(enqueue_tag(conn, &pushed, 1_000).unwrap());
            assert!(
                !enqueue_tag(conn, &pushed, 5_000).unwrap(),
                "another webhook's copy"
            );
            // Another environment, or another commit, is another deploy.
            let mut staging = pushed.clone();
            staging.environment = "staging".parse().unwrap();
            assert!(enqueue_tag(conn, &staging, 5_000).unwrap());
            let mut moved = pushed.clone();
            moved.sha = Some("a19c884ab35c8d243bf9d857d631a5d4f190079f".parse().unwrap());
            assert!(enqueue_tag(conn, &moved, 6_000).unwrap());
            // The same commit again, long after: a deliberate move back.
            assert!(enqueue_tag(conn, &pushed, 1_000 + SAME_TAG_MS + 1).unwrap());
            let creations: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM outbox WHERE kind = 'create_deployment'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(creations, 4);
        });
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
