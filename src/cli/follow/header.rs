//! The header `deployhook log` and `--follow` print before a deploy's log: what it follows
//! and what it brings — the previous success (its commit and deployment) and the changelog's
//! sentence and first titles (capped), or that it is the first deploy here. Printed on
//! stderr: the log on stdout stays the command's own output. Titles are anyone's text: shown
//! as terminal-safe fields.

use serde_json::Value;

use crate::cli::terminal::field;
use crate::model::changelog::TITLES_SHOWN;

/// The header's lines for `deployment` (the API's answer); none for a deployment that
/// follows nothing (another task than `deploy`, or a server too old to say).
pub fn lines(deployment: &Value) -> Vec<String> {
    let id = &deployment["id"];
    let previous = &deployment["previous"];
    let changelog = &deployment["changelog"];
    let after = match (previous["sha"].as_str(), previous["deployment"].as_u64()) {
        (Some(sha), Some(from)) => Some(format!(
            "deployment {id} follows {} (deployment {from})",
            field(&sha.chars().take(7).collect::<String>())
        )),
        _ => None,
    };
    let Some(summary) = changelog["summary"].as_str() else {
        return after
            .map(|after| vec![format!("{after}; its changelog is not read yet")])
            .unwrap_or_default();
    };
    let mut lines = vec![match after {
        Some(after) => format!("{after}: {}", field(summary)),
        None => format!("deployment {id}: {}", field(summary)),
    }];
    let commits = changelog["commits"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    for commit in commits.iter().take(TITLES_SHOWN) {
        let sha: String = commit["sha"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(7)
            .collect();
        lines.push(format!(
            "  {} {}",
            field(&sha),
            field(commit["title"].as_str().unwrap_or_default())
        ));
    }
    let shown = commits.len().min(TITLES_SHOWN) as u64;
    let total = changelog["total"].as_u64().unwrap_or_default();
    if total > shown && shown > 0 {
        lines.push(format!("  and {} more", total - shown));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::lines;
    use serde_json::json;

    #[test]
    fn the_header_says_what_the_deploy_follows_and_brings_capped() {
        let commits: Vec<_> = (1..=12)
            .map(|n| json!({"sha": format!("{n:07}aaaa"), "title": format!("Change {n}")}))
            .collect();
        let deployment = json!({
            "id": 2,
            "previous": {"deployment": 1, "sha": "1111111111"},
            "changelog": {"summary": "12 commits since 1111111", "total": 12, "commits": commits},
        });
        let said = lines(&deployment);
        assert_eq!(
            said[0],
            "deployment 2 follows 1111111 (deployment 1): 12 commits since 1111111"
        );
        assert_eq!(said[1], "  0000001 Change 1");
        assert_eq!(said.len(), 12, "ten titles and how many more");
        assert_eq!(said[11], "  and 2 more");

        let first = json!({"id": 1, "previous": null,
            "changelog": {"summary": "first deploy here: no previous success known",
                          "total": 0, "commits": []}});
        assert_eq!(
            lines(&first),
            ["deployment 1: first deploy here: no previous success known"]
        );
        let unread = json!({"id": 3, "previous": {"deployment": 2, "sha": "2222222"},
                            "changelog": null});
        assert_eq!(
            lines(&unread),
            ["deployment 3 follows 2222222 (deployment 2); its changelog is not read yet"]
        );
        let hostile = json!({"id": 4, "previous": null, "changelog": {"summary": "x",
            "total": 1, "commits": [{"sha": "abc", "title": "\u{1b}[2Jgone"}]}});
        assert!(
            !lines(&hostile)[1].contains('\u{1b}'),
            "{:?}",
            lines(&hostile)
        );
    }
}
