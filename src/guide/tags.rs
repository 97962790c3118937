//! `tag_pushed` and `release_published`: the guide's handlers for `push` and `release`.
//! A pushed tag whose name matches an environment's `tags` (created or moved, not deleted)
//! deploys its commit there; a published release deploys its tag's commit to the
//! environments with `releases` (prereleases only where `prereleases` is set; drafts never:
//! a draft is not published). The push names the commit (`head_commit`, which for an
//! annotated tag is the tagged commit, where `after` is the tag object); a release names
//! only its tag, which the outbox worker resolves before creating the deployment.

use crate::config::EnvironmentConfig;
use crate::guide::Ignored;
use crate::model::{CommitSha, RepoName, TagDeploy, text};
use crate::webhook::events::{PushEvent, ReleaseEvent, Repository};

/// The deployments a push of a tag asks for.
pub fn tag_pushed(
    event: &PushEvent,
    environments: &[EnvironmentConfig],
) -> Result<Vec<TagDeploy>, Ignored> {
    let Some(tag) = event.tag() else {
        return Err(Ignored(format!(
            "push to {}: only pushed tags deploy",
            event.git_ref
        )));
    };
    if event.deleted {
        return Err(Ignored(format!("tag {tag} was deleted: nothing to deploy")));
    }
    let repository = repository(event.repository.as_ref(), tag)?;
    let commit = event
        .head_commit
        .as_ref()
        .map(|c| c.id.as_str())
        .or(event.after.as_deref());
    let Some(sha) = commit.and_then(|c| CommitSha::parse(c).ok()) else {
        return Err(Ignored(format!("tag {tag}: the push names no commit")));
    };
    let who = event
        .sender
        .as_ref()
        .map(|s| s.login.clone())
        .or_else(|| event.pusher.as_ref().and_then(|p| p.name.clone()));
    let deploys: Vec<TagDeploy> = environments
        .iter()
        .filter(|e| e.accepts(&repository.full_name) && e.triggers.tags.matches(tag))
        .map(|e| {
            let description = format!("Deploy tag {tag}");
            let mut deploy = deploy(e, &repository.full_name, tag, who.as_deref(), description);
            deploy.sha = Some(sha.clone());
            deploy.installation = event.installation.as_ref().map(|i| i.id);
            deploy
        })
        .collect();
    nowhere(deploys, || {
        format!(
            "tag {tag} of {} matches no environment's tags",
            repository.full_name
        )
    })
}

/// The deployments a release asks for: `published`, and not a draft.
pub fn release_published(
    event: &ReleaseEvent,
    environments: &[EnvironmentConfig],
) -> Result<Vec<TagDeploy>, Ignored> {
    let release = &event.release;
    let tag = release.tag_name.as_str();
    if event.action != "published" || release.draft {
        return Err(Ignored(format!(
            "release {tag} was {}; only published releases deploy",
            if release.draft {
                "a draft"
            } else {
                &event.action
            }
        )));
    }
    let repository = repository(event.repository.as_ref(), tag)?;
    let who = event
        .sender
        .as_ref()
        .or(release.author.as_ref())
        .map(|a| a.login.as_str());
    let title = release
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(tag);
    let deploys: Vec<TagDeploy> = environments
        .iter()
        .filter(|e| e.accepts(&repository.full_name) && e.triggers.releases)
        .filter(|e| !release.prerelease || e.triggers.prereleases)
        .map(|e| {
            let description = format!("Deploy release {title} ({tag})");
            let mut deploy = deploy(e, &repository.full_name, tag, who, description);
            deploy.installation = event.installation.as_ref().map(|i| i.id);
            deploy
        })
        .collect();
    nowhere(deploys, || {
        let kind = if release.prerelease {
            "prerelease"
        } else {
            "release"
        };
        format!(
            "{kind} {tag} of {} deploys nowhere: no environment takes its {kind}s",
            repository.full_name
        )
    })
}

fn repository<'a>(
    repository: Option<&'a Repository>,
    tag: &str,
) -> Result<&'a Repository, Ignored> {
    repository.ok_or_else(|| Ignored(format!("tag {tag}: the payload names no repository")))
}

fn nowhere(
    deploys: Vec<TagDeploy>,
    why: impl FnOnce() -> String,
) -> Result<Vec<TagDeploy>, Ignored> {
    if deploys.is_empty() {
        return Err(Ignored(why()));
    }
    Ok(deploys)
}

/// The deployment of `tag` to `environment`, its commit and installation left to fill.
fn deploy(
    environment: &EnvironmentConfig,
    repo: &RepoName,
    tag: &str,
    who: Option<&str>,
    description: String,
) -> TagDeploy {
    TagDeploy {
        repo: repo.clone(),
        installation: None,
        tag: tag.to_owned(),
        sha: None,
        environment: environment.name.clone(),
        deploy_user: who.unwrap_or("unknown").to_owned(),
        description: text::description(&description),
        required_contexts: environment.required_contexts.clone(),
        production_environment: environment.production_environment,
        transient_environment: environment.transient_environment,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::Patterns;
    use crate::model::Environment;
    use crate::webhook::events::Event;

    const SHA: &str = "f19c884ab35c8d243bf9d857d631a5d4f190079f";

    fn environment(name: &str) -> EnvironmentConfig {
        EnvironmentConfig::new(Environment::parse(name).unwrap(), vec!["true".into()])
    }

    fn release(prerelease: bool) -> ReleaseEvent {
        let json = json!({
            "action": "published",
            "release": {"tag_name": "v3.0.0-beta.1", "name": "", "draft": false,
                        "prerelease": prerelease, "author": {"login": "octo-dev"}},
            "repository": {"full_name": "acme/widgets", "default_branch": "main"},
            "installation": {"id": 42},
        });
        match Event::parse("release", json.to_string().as_bytes()).unwrap() {
            Event::Release(event) => event,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_lightweight_tag_push_without_head_commit_deploys_after_to_each_matching_environment() {
        // As GitHub sent it for `git push origin v0.2.1` (octocrab's fixture, trimmed).
        let json = json!({
            "ref": "refs/tags/v0.2.1", "before": "0000000000000000000000000000000000000000",
            "after": SHA, "created": true, "deleted": false, "forced": false,
            "base_ref": null, "commits": [], "head_commit": null,
            "pusher": {"name": "gagbo", "email": "g@example.com"},
            "repository": {"full_name": "acme/widgets", "default_branch": "main"},
        });
        let Event::Push(event) = Event::parse("push", json.to_string().as_bytes()).unwrap() else {
            panic!("not a push");
        };
        let mut staging = environment("staging");
        staging.triggers.tags = Patterns::parse(&["v*".into()], "tags").unwrap();
        let mut production = environment("production");
        production.triggers.tags = Patterns::parse(&["v*.*.*".into()], "tags").unwrap();
        let untagged = environment("review");
        let deploys = tag_pushed(&event, &[staging, production, untagged]).unwrap();
        let names: Vec<&str> = deploys.iter().map(|d| d.environment.as_ref()).collect();
        assert_eq!(names, ["staging", "production"]);
        assert_eq!(deploys[0].sha.as_ref().unwrap().as_ref(), SHA);
        assert_eq!(
            deploys[0].deploy_user, "gagbo",
            "the pusher, with no sender"
        );
        let request = deploys[0]
            .deployment(deploys[0].sha.clone().unwrap())
            .request;
        assert_eq!(request.payload["tag"], "v0.2.1");
        assert_eq!(
            request.payload.get("merged_at"),
            None,
            "no merge marks for a tag"
        );
    }

    #[test]
    fn a_prerelease_deploys_only_where_prereleases_are_taken() {
        let mut releases = environment("staging");
        releases.triggers.releases = true;
        let Ignored(why) = release_published(&release(true), &[releases.clone()]).unwrap_err();
        assert!(
            why.contains("no environment takes its prereleases"),
            "{why}"
        );
        releases.triggers.prereleases = true;
        let deploys = release_published(&release(true), &[releases]).unwrap();
        assert_eq!(deploys[0].sha, None, "resolved by the outbox worker");
        assert_eq!(deploys[0].installation, Some(42));
        assert_eq!(
            deploys[0].description,
            "Deploy release v3.0.0-beta.1 (v3.0.0-beta.1)"
        );
    }
}
