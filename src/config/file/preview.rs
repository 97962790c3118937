//! An environment's preview settings, checked and built into its [`PreviewConfig`]:
//! `preview = true` with `destroy_command` (required: a preview nothing tears down would
//! outlive its pull request), `preview_name` (a template holding `{pr}` once),
//! `preview_limit`, `preview_forks` and `preview_check`. The others need `preview = true`,
//! so a half-written preview is an error rather than an environment that deploys merges.
//! Once every table is read, [`check_names`] makes sure an environment name on GitHub
//! leads to one table only.

use toml::Spanned;

use super::FileEnvironment;
use super::validate::Invalid;
use crate::config::EnvironmentConfig;
use crate::config::preview::{DESTROY_TASK, PreviewConfig};
use crate::model::Environment;

/// The preview settings `file` describes; `None` without `preview = true`.
pub(super) fn preview(
    file: &FileEnvironment,
    name: &Environment,
) -> Result<Option<PreviewConfig>, Invalid> {
    let on = file.preview.as_ref().is_some_and(|p| *p.get_ref());
    if !on {
        let stray = [
            (
                "preview_name",
                file.preview_name.as_ref().map(Spanned::span),
            ),
            (
                "destroy_command",
                file.destroy_command.as_ref().map(Spanned::span),
            ),
            (
                "preview_limit",
                file.preview_limit.as_ref().map(Spanned::span),
            ),
            (
                "preview_forks",
                file.preview_forks.as_ref().map(Spanned::span),
            ),
            (
                "preview_check",
                file.preview_check.as_ref().map(Spanned::span),
            ),
        ];
        if let Some((key, Some(span))) = stray.into_iter().find(|(_, s)| s.is_some()) {
            return Err((
                span,
                format!("environment {name}: `{key}` needs `preview = true`"),
            ));
        }
        return Ok(None);
    }
    let span = file
        .preview
        .as_ref()
        .map_or(file.name.span(), Spanned::span);
    let Some(destroy) = &file.destroy_command else {
        return Err((
            span,
            format!(
                "environment {name}: a preview environment needs `destroy_command`, the argv \
                 that tears a pull request's preview down when it closes (use [\"true\"] if \
                 nothing needs tearing down)"
            ),
        ));
    };
    let destroy_command = super::validate::argv(destroy, "destroy_command")?;
    let mut preview = PreviewConfig::new(destroy_command);
    if let Some(template) = &file.preview_name {
        preview.name = template.get_ref().clone();
        let valid = template.get_ref().matches("{pr}").count() == 1
            && preview.environment_for(1).is_some()
            && !template.get_ref().replace("{pr}", "").contains(['{', '}']);
        if !valid {
            return Err((
                template.span(),
                format!(
                    "preview_name = {:?}: expected an environment name holding {{pr}} once, \
                     like \"pr-{{pr}}\"",
                    template.get_ref()
                ),
            ));
        }
    }
    if let Some(limit) = &file.preview_limit {
        if *limit.get_ref() < 1 {
            return Err((
                limit.span(),
                format!(
                    "preview_limit = {}: at least 1 preview must be able to run",
                    limit.get_ref()
                ),
            ));
        }
        preview.limit = usize::try_from(*limit.get_ref()).unwrap_or(usize::MAX);
    }
    preview.forks = file.preview_forks.as_ref().is_some_and(|f| *f.get_ref());
    if let Some(every) = &file.preview_check {
        preview.check_every = super::validate::duration(every)?;
    }
    if let Some(from) = &file.promote_from {
        return Err((
            from.span(),
            format!(
                "environment {name} is a preview environment: it deploys pull requests, not \
                 what succeeded elsewhere; remove `promote_from`"
            ),
        ));
    }
    if let Some(task) = file.tasks.get(DESTROY_TASK) {
        return Err((
            task.span(),
            "task \"destroy\" runs `destroy_command` in a preview environment; set it there"
                .to_owned(),
        ));
    }
    Ok(Some(preview))
}

/// A number no real name is likely to end the same way with: what a template is filled
/// with to see whether another table would claim the name.
const PROBE: u64 = 918_273;

/// Every environment name reaching deployhook leads to one table: no table's name is one a
/// preview template makes, and no two templates make the same name.
pub(super) fn check_names(environments: &[EnvironmentConfig]) -> Result<(), (usize, String)> {
    for (index, environment) in environments.iter().enumerate() {
        for (other_index, other) in environments.iter().enumerate() {
            if index == other_index {
                continue;
            }
            let Some(preview) = &other.preview else {
                continue;
            };
            let claimed = preview.number_of(environment.name.as_ref()).is_some()
                || environment
                    .preview
                    .as_ref()
                    .and_then(|p| p.environment_for(PROBE))
                    .is_some_and(|made| preview.number_of(made.as_ref()).is_some());
            if claimed {
                return Err((
                    index,
                    format!(
                        "environment {}: its deployments' names could also be previews of {} \
                         (preview_name = {:?}); choose names apart",
                        environment.name, other.name, preview.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::file::parse;

    const PREVIEW: &str = r#"
[[environment]]
name = "production"
repositories = ["acme/widgets"]
command = ["./deploy.sh"]

[[environment]]
name = "preview"
repositories = ["acme/widgets"]
command = ["./preview.sh"]
preview = true
destroy_command = ["./destroy.sh", "--all"]
preview_name = "review-{pr}"
preview_limit = 3
preview_forks = true
preview_check = "2m"
environment_url = "https://pr-{pr}.example.com/{sha}"
"#;

    fn error(text: &str) -> String {
        parse(text, "deployhook.toml").unwrap_err().to_string()
    }

    #[test]
    fn a_preview_environment_has_its_settings_and_runs_destroy_as_a_task() {
        let environments = parse(PREVIEW, "deployhook.toml").unwrap().environments;
        let preview = environments[1].preview.as_ref().unwrap();
        assert_eq!(preview.name, "review-{pr}");
        assert_eq!(preview.limit, 3);
        assert!(preview.forks);
        assert_eq!(preview.check_every, Duration::from_secs(120));
        assert_eq!(
            environments[1].command_for("destroy"),
            Some(&["./destroy.sh".to_owned(), "--all".to_owned()][..])
        );
        assert!(environments[0].preview.is_none());
        assert_eq!(environments[0].command_for("destroy"), None);
        let found = crate::config::find_environment(&environments, "review-42").unwrap();
        assert_eq!(found.name.as_ref(), "preview");
        assert!(crate::config::find_environment(&environments, "review-x").is_none());
        let line = crate::config::file::summary(&environments[1]);
        assert!(line.contains("previews of pull requests into the default branch as review-{pr}, at most 3 at once, forks too"), "{line}");
    }

    #[test]
    fn defaults_and_mistakes_are_told() {
        let minimal = PREVIEW
            .replace("preview_name = \"review-{pr}\"\n", "")
            .replace("preview_limit = 3\n", "")
            .replace("preview_forks = true\n", "")
            .replace("preview_check = \"2m\"\n", "");
        let environments = parse(&minimal, "deployhook.toml").unwrap().environments;
        let preview = environments[1].preview.as_ref().unwrap();
        assert_eq!(
            (preview.name.as_str(), preview.limit, preview.forks),
            ("pr-{pr}", 10, false)
        );
        let cases = [
            (
                PREVIEW.replace("destroy_command = [\"./destroy.sh\", \"--all\"]\n", ""),
                "needs `destroy_command`",
            ),
            (
                PREVIEW.replace("preview = true\n", ""),
                "`preview_name` needs `preview = true`",
            ),
            (
                PREVIEW.replace("review-{pr}", "review"),
                "holding {pr} once",
            ),
            (
                PREVIEW.replace("preview_limit = 3", "preview_limit = 0"),
                "at least 1",
            ),
            (
                PREVIEW.replace("name = \"production\"", "name = \"review-7\""),
                "could also be previews of preview",
            ),
            (
                PREVIEW
                    .replace("https://pr-{pr}", "https://{pr}")
                    .replace("preview = true\n", "")
                    .replace("destroy_command = [\"./destroy.sh\", \"--all\"]\n", "")
                    .replace("preview_name = \"review-{pr}\"\n", "")
                    .replace("preview_limit = 3\n", "")
                    .replace("preview_forks = true\n", "")
                    .replace("preview_check = \"2m\"\n", ""),
                "({pr} in a preview environment)",
            ),
        ];
        for (text, says) in cases {
            let message = error(&text);
            assert!(message.contains(says), "{message:?} should say {says:?}");
        }
    }
}
