//! What deploys an environment besides merges — `tags` (a pushed tag whose name matches)
//! and `releases` (a published release, `prereleases` too when asked) — and which merges
//! do: `paths`, and `deploy_on_merge`, whose default follows from the others.
//!
//! The defaults are a production user's: an environment that names tags or releases is
//! deployed by those deliberate acts, not by every merge as well, unless
//! `deploy_on_merge = true` says so. `paths` only narrow merges, so they need merges to
//! narrow, and an environment promoted from another deploys what passed there (its paths
//! included) rather than merges. `tags` and `releases` on one environment would deploy a
//! release made with a new tag twice (GitHub sends both a `push` of the tag and the
//! `release`), so one of them is chosen.

use toml::Spanned;

use super::FileEnvironment;
use super::validate::Invalid;
use crate::config::{Patterns, Triggers};
use crate::model::Environment;

/// The environment's `deploy_on_merge` and its [`Triggers`], checked.
pub(super) fn triggers(
    file: &FileEnvironment,
    name: &Environment,
) -> Result<(bool, Triggers), Invalid> {
    let patterns = |list: &Option<Spanned<Vec<String>>>, what: &str| match list {
        None => Ok(Patterns::default()),
        Some(list) => Patterns::parse(list.get_ref(), what)
            .map_err(|e| (list.span(), format!("environment {name}: {e}"))),
    };
    let paths = patterns(&file.paths, "paths")?;
    let tags = patterns(&file.tags, "tags")?;
    let releases = file.releases.as_ref().is_some_and(|r| *r.get_ref());
    let prereleases = file.prereleases.as_ref().is_some_and(|r| *r.get_ref());
    let deploy_on_merge = file.deploy_on_merge.unwrap_or(tags.is_empty() && !releases);
    let span = |field: &Option<Spanned<Vec<String>>>| {
        field
            .as_ref()
            .map_or_else(|| file.name.span(), Spanned::span)
    };
    if prereleases && !releases {
        let at = file.prereleases.as_ref().map(Spanned::span);
        return Err((
            at.unwrap_or_else(|| file.name.span()),
            format!("environment {name}: `prereleases` needs `releases = true`"),
        ));
    }
    if releases && !tags.is_empty() {
        return Err((
            span(&file.tags),
            format!(
                "environment {name}: choose `tags` or `releases`, not both: a release made \
                 with a new tag also pushes the tag, and would deploy twice"
            ),
        ));
    }
    if !paths.is_empty() {
        let problem = if file.promote_from.is_some() {
            Some("it is promoted from another environment: put `paths` there instead")
        } else if !deploy_on_merge {
            Some(
                "`paths` choose which merges deploy, and no merge deploys here (set \
                 deploy_on_merge = true, or remove `paths`)",
            )
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err((span(&file.paths), format!("environment {name}: {problem}")));
        }
    }
    Ok((
        deploy_on_merge,
        Triggers {
            paths,
            tags,
            releases,
            prereleases,
        },
    ))
}

#[cfg(test)]
mod tests {
    use crate::config::file::{parse, summary};

    fn environment(extra: &str) -> Result<crate::config::EnvironmentConfig, String> {
        let text = format!(
            "[[environment]]\nname = \"api\"\nrepositories = [\"acme/mono\"]\n\
             command = [\"./deploy.sh\"]\n{extra}\n"
        );
        parse(&text, "deployhook.toml")
            .map(|mut f| f.environments.remove(0))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn paths_narrow_merges_and_are_shown_by_check_config() {
        let api = environment(r#"paths = ["services/api/**", "Cargo.lock"]"#).unwrap();
        assert!(api.deploy_on_merge);
        assert!(api.triggers.paths.matches("services/api/src/lib.rs"));
        assert!(!api.triggers.paths.matches("services/web/index.html"));
        let line = summary(&api);
        assert!(
            line.contains(
                r#"merges into the default branch changing ["services/api/**", "Cargo.lock"]"#
            ),
            "{line}"
        );
    }

    #[test]
    fn tags_and_releases_replace_merges_unless_deploy_on_merge_says_otherwise() {
        let tagged = environment(r#"tags = ["v*"]"#).unwrap();
        assert!(!tagged.deploy_on_merge, "a tag is the deliberate act here");
        assert!(tagged.triggers.tags.matches("v1.4.0"));
        assert!(
            summary(&tagged).contains(r#"api: pushed tags matching ["v*"] from acme/mono"#),
            "{}",
            summary(&tagged)
        );
        let both = environment(
            "releases = true
prereleases = true
deploy_on_merge = true",
        )
        .unwrap();
        assert!(both.deploy_on_merge && both.triggers.releases && both.triggers.prereleases);
        assert!(
            summary(&both)
                .contains("merges into the default branch, and published releases and prereleases"),
            "{}",
            summary(&both)
        );
        assert!(environment("").unwrap().deploy_on_merge);
    }

    #[test]
    fn contradictory_triggers_are_refused_at_their_line() {
        for (extra, says) in [
            (
                r#"tags = ["v*"]
releases = true"#,
                "5:8: environment api: choose `tags` or `releases`",
            ),
            (
                "prereleases = true",
                "5:15: environment api: `prereleases` needs",
            ),
            (
                r#"paths = ["a/**"]
deploy_on_merge = false"#,
                "5:9: environment api: `paths` choose which merges deploy",
            ),
            (
                r#"paths = ["a/**"]
promote_from = "staging""#,
                "put `paths` there instead",
            ),
            (
                r#"tags = ["v[1"]"#,
                r#"5:8: environment api: tags: "v[1" is not a glob"#,
            ),
        ] {
            let err = environment(extra).unwrap_err();
            assert!(err.contains(says), "{err} should say {says}");
        }
    }
}
