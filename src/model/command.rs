//! Commands people write in pull-request comments (`.deploy to staging`, `.lock production
//! release freeze`): their grammar, parsed from a comment's first line, and the request the
//! store keeps for each until the command worker has carried it out. Parsing is pure and
//! knows no environment: whether `staging` exists is decided when the command is done, so
//! the answer to a typo is a reply saying so rather than silence.

use serde::{Deserialize, Serialize};

use crate::model::deployment::{DeployJob, DeploymentState};
use crate::model::ids::RepoName;

/// The prefix commands start with unless configured otherwise.
pub const DEFAULT_PREFIX: &str = ".";

/// The longest command line read; the rest of a comment is never looked at.
const MAX_LINE: usize = 300;

/// What a comment asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "command")]
pub enum Command {
    /// Deploy the pull request's head (`branch: None`) or a branch of the base repository,
    /// to `environment` (`None`: the configured default).
    Deploy {
        branch: Option<String>,
        environment: Option<String>,
    },
    Lock {
        environment: String,
        reason: String,
    },
    Unlock {
        environment: String,
    },
    Rollback {
        environment: String,
    },
    /// Approve this pull request's deployment waiting in `environment` (`None`: the only one).
    Approve {
        environment: Option<String>,
    },
    /// Reject this pull request's deployment waiting for approval (the only one).
    Reject {
        reason: String,
    },
    /// Where is deploying: what runs where, and what is locked.
    Wcid,
    Help,
    /// A known command written wrongly: answered with this sentence and the usage.
    Invalid {
        why: String,
    },
}

impl Command {
    /// The command's name, as written after the prefix.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Deploy { .. } => "deploy",
            Self::Lock { .. } => "lock",
            Self::Unlock { .. } => "unlock",
            Self::Rollback { .. } => "rollback",
            Self::Approve { .. } => "approve",
            Self::Reject { .. } => "reject",
            Self::Wcid => "wcid",
            Self::Help => "help",
            Self::Invalid { .. } => "invalid",
        }
    }
}

/// A command as recorded from its comment, for the worker to carry out once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    pub repo: RepoName,
    /// The pull request it was written on.
    pub pull_request: u64,
    /// The comment's id: a command is done once per comment, however often it is delivered.
    pub comment_id: u64,
    /// Who wrote it: the signed delivery's `comment.user.login`.
    pub author: String,
    pub installation: Option<u64>,
    pub command: Command,
}

/// What a deployment's payload keeps of the command that asked for it: where to tell how
/// it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandMark {
    pub comment_id: u64,
    pub pull_request: u64,
}

impl CommandMark {
    /// The payload key it is kept under.
    pub const KEY: &'static str = "command";

    /// The mark in `payload` (a deployment's payload as JSON text), if a command made it,
    /// with the payload read. Every status of every deployment asks, so a payload that
    /// does not name the key is not parsed at all.
    pub fn of_payload(payload: &str) -> Option<(Self, serde_json::Value)> {
        if !payload.contains(Self::KEY) {
            return None;
        }
        let value: serde_json::Value = serde_json::from_str(payload).ok()?;
        let mark = serde_json::from_value(value.get(Self::KEY)?.clone()).ok()?;
        Some((mark, value))
    }
}

/// What the reply says when a command's deployment has the status `state`, and the
/// reaction that ends it (`None`: not over yet).
pub fn deploy_news(
    job: &DeployJob,
    payload: &serde_json::Value,
    state: DeploymentState,
    description: &str,
) -> (String, Option<&'static str>) {
    // The branch the command named (the deployment's own ref is the commit).
    let shown_ref = payload
        .get("ref")
        .and_then(|r| r.as_str())
        .map_or_else(|| job.git_ref.clone(), str::to_owned);
    let what = format!(
        "`{}` ({}) to **{}**",
        job.sha.short(),
        quiet(&shown_ref),
        job.environment
    );
    let description = quiet(description);
    let log = job
        .log_url
        .as_deref()
        .map_or_else(String::new, |url| format!(" · [log]({url})"));
    match state {
        DeploymentState::Queued => (format!("🕐 Deploy of {what} queued: {description}"), None),
        DeploymentState::Pending => (format!("⏸️ Deploy of {what} waits: {description}"), None),
        // Verification after the deploy says so ("verifying: GET …"), not "Deploying".
        DeploymentState::InProgress if description.starts_with("verifying") => {
            (format!("🔎 Deployed {what}, {description}{log}"), None)
        }
        DeploymentState::InProgress => (format!("⏳ Deploying {what}…{log}"), None),
        DeploymentState::Success => {
            let environment = job
                .environment_url
                .as_deref()
                .map_or_else(String::new, |url| format!(" · [environment]({url})"));
            (
                format!("🚀 Deployed {what}: {description}{log}{environment}"),
                Some("rocket"),
            )
        }
        DeploymentState::Failure | DeploymentState::Error => (
            format!("👎 Deploy of {what} failed: {description}{log}"),
            Some("-1"),
        ),
        DeploymentState::Inactive => (
            format!("⏭️ Deploy of {what} did not run: {description}"),
            Some("confused"),
        ),
    }
}

/// `text` (a lock's reason, a branch: words people wrote) made safe to quote in a reply:
/// one line, no `@mention` that would notify someone, no link or HTML or table that would
/// make deployhook's reply say what it did not mean.
pub fn quiet(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    line.replace('@', "@\u{200b}")
        .replace(['<', '>', '[', ']', '|'], "")
}

/// Usage, one line a command, as `.help` answers and a mistaken command is reminded.
pub fn usage(prefix: &str) -> String {
    [
        (
            "deploy",
            "deploy this pull request's head to the default environment",
        ),
        ("deploy to ENV", "deploy this pull request's head to ENV"),
        (
            "deploy BRANCH to ENV",
            "deploy a branch of this repository to ENV",
        ),
        (
            "lock ENV REASON",
            "lock ENV: nothing deploys there until it is unlocked",
        ),
        ("unlock ENV", "lift ENV's lock"),
        (
            "rollback ENV",
            "deploy what ran in ENV before its latest deploy, and lock it",
        ),
        (
            "approve [ENV]",
            "approve this pull request's deployment waiting for approval",
        ),
        ("reject REASON", "reject it, saying why"),
        ("wcid", "who is deploying where, and what is locked"),
        ("help", "this list"),
    ]
    .iter()
    .map(|(form, what)| format!("- `{prefix}{form}`: {what}"))
    .collect::<Vec<_>>()
    .join("\n")
}

/// The command `body`'s first line holds, if it is one: the prefix, then a command's
/// name. Anything else (a comment that starts `.NET is…`) is not a command and is `None`.
pub fn parse(body: &str, prefix: &str) -> Option<Command> {
    let line = body.trim_start().lines().next()?.trim();
    let line: String = line.chars().take(MAX_LINE).collect();
    let rest = line.strip_prefix(prefix)?;
    let mut words = rest.split_whitespace();
    let name = words.next()?;
    let args: Vec<&str> = words.collect();
    let command = match name.to_ascii_lowercase().as_str() {
        "deploy" => deploy(&args),
        "lock" => match args.split_first() {
            Some((env, reason)) if !reason.is_empty() => Command::Lock {
                environment: (*env).to_owned(),
                reason: reason.join(" "),
            },
            Some(_) => Command::Invalid {
                why: "a lock needs a reason: say why, for whoever finds it".into(),
            },
            None => Command::Invalid {
                why: "name the environment to lock".into(),
            },
        },
        "unlock" => one_environment(&args, |environment| Command::Unlock { environment }),
        "rollback" => one_environment(&args, |environment| Command::Rollback { environment }),
        "approve" => match args.as_slice() {
            [] => Command::Approve { environment: None },
            [env] => Command::Approve {
                environment: Some((*env).to_owned()),
            },
            _ => Command::Invalid {
                why: "approve takes at most an environment".into(),
            },
        },
        "reject" => reject(&args),
        "wcid" if args.is_empty() => Command::Wcid,
        "help" if args.is_empty() => Command::Help,
        "wcid" | "help" => Command::Invalid {
            why: format!("{name} takes nothing after it"),
        },
        _ => return None,
    };
    Some(command)
}

/// `deploy`, `deploy to ENV`, `deploy BRANCH`, `deploy BRANCH to ENV`.
fn deploy(args: &[&str]) -> Command {
    let (branch, environment) = match args {
        [] => (None, None),
        ["to", env] => (None, Some(*env)),
        [branch] => (Some(*branch), None),
        [branch, "to", env] => (Some(*branch), Some(*env)),
        _ => {
            return Command::Invalid {
                why: "deploy takes a branch, `to` and an environment, each optional".into(),
            };
        }
    };
    if let Some(branch) = branch
        && !valid_branch(branch)
    {
        return Command::Invalid {
            why: format!("{branch:?} is not a branch name"),
        };
    }
    Command::Deploy {
        branch: branch.map(str::to_owned),
        environment: environment.map(str::to_owned),
    }
}

fn one_environment(args: &[&str], make: impl FnOnce(String) -> Command) -> Command {
    match args {
        [env] => make((*env).to_owned()),
        [] => Command::Invalid {
            why: "name the environment".into(),
        },
        _ => Command::Invalid {
            why: "this takes only an environment".into(),
        },
    }
}

/// `reject REASON…`: the whole rest of the line is the reason.
fn reject(args: &[&str]) -> Command {
    if args.is_empty() {
        return Command::Invalid {
            why: "a rejection needs a reason".into(),
        };
    }
    Command::Reject {
        reason: args.join(" "),
    }
}

/// Git's rules for a branch name, the parts that matter here: what GitHub would refuse, and
/// what could turn a URL path into another (`..`, a leading `-` or `/`).
fn valid_branch(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.contains("..")
        && !name.contains("//")
        && !name.ends_with(".lock")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &str) -> Option<Command> {
        parse(body, ".")
    }

    #[test]
    fn the_forms_of_deploy() {
        let deploy = |branch: Option<&str>, env: Option<&str>| {
            Some(Command::Deploy {
                branch: branch.map(str::to_owned),
                environment: env.map(str::to_owned),
            })
        };
        assert_eq!(parsed(".deploy"), deploy(None, None));
        assert_eq!(
            parsed("  .deploy to staging\nthanks!"),
            deploy(None, Some("staging"))
        );
        assert_eq!(
            parsed(".deploy main to production"),
            deploy(Some("main"), Some("production"))
        );
        assert_eq!(parsed(".deploy feature/x"), deploy(Some("feature/x"), None));
        assert_eq!(parsed(".DEPLOY to staging"), deploy(None, Some("staging")));
        for bad in [
            ".deploy a b c",
            ".deploy ../x to prod",
            ".deploy -f to prod",
        ] {
            assert!(
                matches!(parsed(bad), Some(Command::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn other_commands_and_their_mistakes() {
        assert_eq!(
            parsed(".lock production release freeze"),
            Some(Command::Lock {
                environment: "production".into(),
                reason: "release freeze".into()
            })
        );
        assert!(
            matches!(parsed(".lock production"), Some(Command::Invalid { why }) if why.contains("reason"))
        );
        assert_eq!(
            parsed(".unlock production"),
            Some(Command::Unlock {
                environment: "production".into()
            })
        );
        assert_eq!(
            parsed(".rollback staging"),
            Some(Command::Rollback {
                environment: "staging".into()
            })
        );
        assert_eq!(
            parsed(".approve"),
            Some(Command::Approve { environment: None })
        );
        assert_eq!(
            parsed(".reject too risky today"),
            Some(Command::Reject {
                reason: "too risky today".into()
            })
        );
        assert_eq!(parsed(".wcid"), Some(Command::Wcid));
        assert_eq!(parsed(".help"), Some(Command::Help));
        assert!(matches!(parsed(".unlock"), Some(Command::Invalid { .. })));
    }

    #[test]
    fn what_is_not_a_command() {
        for body in [
            "",
            "LGTM",
            ".NET 8 is fine here",
            "please .deploy this",
            "> .deploy\nquoted",
            ".",
            "/deploy",
        ] {
            assert_eq!(parsed(body), None, "{body:?}");
        }
        assert_eq!(parse("/deploy", "/"), parsed(".deploy"));
    }

    fn job(payload: &str) -> DeployJob {
        DeployJob {
            id: 7.into(),
            repo: RepoName::parse("acme/app").unwrap(),
            environment: "staging".parse().unwrap(),
            sha: "4242424242aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap(),
            git_ref: "4242424242aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
            task: "deploy".into(),
            deploy_user: "wes".into(),
            payload: payload.into(),
            environment_url: Some("https://staging.example".into()),
            log_url: Some("https://deployhook.example/log".into()),
            installation: None,
        }
    }

    #[test]
    fn a_deploys_news_names_the_branch_and_ends_with_its_reaction() {
        let payload = r#"{"ref":"feature-42","command":{"comment_id":9,"pull_request":42}}"#;
        let job = job(payload);
        let (mark, value) = CommandMark::of_payload(payload).unwrap();
        assert_eq!(
            mark,
            CommandMark {
                comment_id: 9,
                pull_request: 42
            }
        );
        let news = |state| deploy_news(&job, &value, state, "deployed in 3s");
        let (text, reaction) = news(DeploymentState::Success);
        assert_eq!(reaction, Some("rocket"));
        assert!(
            text.contains("`4242424` (feature-42) to **staging**"),
            "{text}"
        );
        assert!(
            text.contains("[log](https://deployhook.example/log)"),
            "{text}"
        );
        assert!(
            text.contains("[environment](https://staging.example)"),
            "{text}"
        );
        assert_eq!(news(DeploymentState::Failure).1, Some("-1"));
        assert_eq!(news(DeploymentState::Error).1, Some("-1"));
        assert_eq!(news(DeploymentState::Queued).1, None, "not over yet");
        assert_eq!(news(DeploymentState::InProgress).1, None, "not over yet");
        assert!(CommandMark::of_payload(r#"{"deploy_user":"wes"}"#).is_none());
        let (deploying, _) = deploy_news(&job, &value, DeploymentState::InProgress, "running");
        assert!(deploying.starts_with("⏳ Deploying"), "{deploying}");
        let (verifying, done) = deploy_news(
            &job,
            &value,
            DeploymentState::InProgress,
            "verifying: GET https://staging.example/healthz",
        );
        assert!(
            verifying
                .starts_with("🔎 Deployed `4242424` (feature-42) to **staging**, verifying: GET"),
            "{verifying}"
        );
        assert_eq!(done, None, "not over yet");
    }

    #[test]
    fn quoted_words_carry_no_link_markup_or_mention() {
        let quoted = quiet("[x](https://evil.example) <b>hi</b> @octocat | a\nb");
        for bad in ["[", "]", "<", ">", "|", "\n", "@octocat"] {
            assert!(!quoted.contains(bad), "{bad:?} in {quoted:?}");
        }
        assert!(quoted.contains("@\u{200b}octocat"), "{quoted:?}");
        assert_eq!(quiet(&"x".repeat(500)).len(), 200);
    }

    proptest::proptest! {
        /// Any comment at all parses without panicking, and what it parses to names a
        /// command the grammar has.
        #[test]
        fn any_comment_parses_safely(body in "\\PC{0,400}") {
            if let Some(command) = parse(&body, ".") {
                proptest::prop_assert!(body.trim_start().starts_with('.'));
                let _ = command.name();
            }
        }
    }
}
