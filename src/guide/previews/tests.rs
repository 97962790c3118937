use super::*;
use crate::config::PreviewConfig;
use crate::model::{Environment, Required};
use crate::webhook::events::Event;

const HEAD: &str = "3333333333cccccccccc4444444444dddddddddd";

fn environments() -> Vec<EnvironmentConfig> {
    let production = EnvironmentConfig::new(
        Environment::parse("production").unwrap(),
        vec!["true".into()],
    );
    let mut preview =
        EnvironmentConfig::new(Environment::parse("preview").unwrap(), vec!["true".into()]);
    preview.preview = Some(PreviewConfig::new(vec!["./destroy.sh".into()]));
    preview.required_contexts = vec!["ci/build".into()];
    vec![production, preview]
}

fn event(action: &str, base: &str, from: Option<&str>) -> PullRequestEvent {
    let json = json!({
        "action": action,
        "pull_request": {
            "number": 42, "title": "Blue widget", "merged": false,
            "user": {"login": "octo-dev", "type": "User"},
            "base": {"ref": base}, "head": {"sha": HEAD, "repo": from.map(|f| json!({"full_name": f}))},
        },
        "repository": {"full_name": "acme/widgets", "default_branch": "main"},
    });
    match Event::parse("pull_request", json.to_string().as_bytes()).unwrap() {
        Event::PullRequest(event) => event,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_opened_pull_request_deploys_its_head_to_its_own_transient_environment() {
    for action in DEPLOYING {
        let changes = preview_changes(
            &event(action, "main", Some("ACME/widgets")),
            &environments(),
        )
        .unwrap()
        .unwrap();
        let [PreviewChange::Open { new, slot }] = changes.as_slice() else {
            panic!("{changes:?}");
        };
        assert_eq!(slot.config.as_ref(), "preview");
        assert_eq!(slot.limit, 10);
        let body = serde_json::to_value(&new.request).unwrap();
        assert_eq!(
            body,
            json!({
                "ref": HEAD, "task": "deploy", "auto_merge": false,
                "required_contexts": ["ci/build"], "environment": "pr-42",
                "payload": {"environment": "pr-42", "deploy_user": "octo-dev", "pull_request": 42,
                            "preview": {"pull_request": 42, "environment": "preview"}},
                "description": "Preview of PR #42: Blue widget",
                "production_environment": false, "transient_environment": true,
            })
        );
    }
}

#[test]
fn a_gated_preview_waits_and_github_checks_nothing_again() {
    let mut environments = environments();
    environments[1].checks = Some(Required::All);
    let changes = preview_changes(
        &event("opened", "main", Some("acme/widgets")),
        &environments,
    )
    .unwrap()
    .unwrap();
    let [PreviewChange::Open { new, .. }] = changes.as_slice() else {
        panic!("{changes:?}");
    };
    assert_eq!(new.gate.as_ref().map(|g| &g.required), Some(&Required::All));
    assert!(new.request.required_contexts.is_empty());
}

#[test]
fn forks_other_branches_and_other_actions_get_no_preview_and_close_always_closes() {
    let fork = preview_changes(
        &event("opened", "main", Some("outsider/widgets")),
        &environments(),
    );
    let Some(Err(reason)) = fork else {
        panic!("{fork:?}")
    };
    assert!(reason.contains("from outsider/widgets"), "{reason}");
    let other = preview_changes(
        &event("opened", "develop", Some("acme/widgets")),
        &environments(),
    );
    let Some(Err(reason)) = other else {
        panic!("{other:?}")
    };
    assert!(reason.contains("into main, not develop"), "{reason}");
    assert!(preview_changes(&event("labeled", "main", None), &environments()).is_none());
    let closed = preview_changes(&event("closed", "develop", None), &environments());
    assert!(
        matches!(&closed, Some(Ok(c)) if matches!(c.as_slice(), [PreviewChange::Close { pull_request: 42, .. }])),
        "{closed:?}"
    );
    // Without a preview environment, a pull request is a merge's business alone.
    assert!(preview_changes(&event("opened", "main", None), &environments()[..1]).is_none());
}
