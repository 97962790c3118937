//! Tests of the config file: every key, and errors that name the line and column.

use std::time::Duration;

use super::explain::edit_distance;
use super::*;
use crate::config::{DEFAULT_CHECKS_TIMEOUT, DEFAULT_TIMEOUT};
use crate::model::{Environment, Required};

const VALID: &str = r#"
[[environment]]
name = "staging"
repositories = ["acme/*"]
command = ["./deploy.sh", "staging"]
timeout = "10m"
environment_url = "https://staging.example.com/?sha={sha}"
env = { RAILS_ENV = "staging", API_KEY = "s3cr3t-value" }
pass_env = ["SSH_AUTH_SOCK"]
transient_environment = true

[environment.tasks]
"deploy:migrate" = ["./migrate.sh"]

[[environment]]
name = "production"
repositories = ["acme/widgets"]
branch = "release"
command = ["./deploy.sh", "production"]
policy = "queue"
on_interrupt = "retry"
production_environment = true
log_limit = 65536
"#;

fn error(text: &str) -> ConfigFileError {
    parse(text, "deployhook.toml").unwrap_err()
}

#[test]
fn a_valid_file_describes_each_environment_with_defaults_filled_in() {
    let environments = parse(VALID, "deployhook.toml").unwrap().environments;
    let [staging, production] = environments.as_slice() else {
        panic!("{environments:?}");
    };
    assert_eq!(staging.name.as_ref(), "staging");
    assert_eq!(staging.timeout, Duration::from_secs(600));
    assert_eq!(staging.policy, Policy::Latest);
    assert_eq!(staging.env.0["RAILS_ENV"], "staging");
    let shown = format!("{staging:?}");
    assert!(
        shown.contains("API_KEY") && !shown.contains("s3cr3t-value"),
        "{shown}"
    );
    assert_eq!(
        staging.command_for("deploy:migrate"),
        Some(&["./migrate.sh".to_owned()][..])
    );
    assert_eq!(staging.transient_environment, Some(true));
    assert_eq!(production.branch.as_deref(), Some("release"));
    assert_eq!(production.policy, Policy::Queue);
    assert_eq!(production.on_interrupt, OnInterrupt::Retry);
    assert_eq!(production.timeout, DEFAULT_TIMEOUT);
    assert_eq!(production.log_limit, 65536);
    assert!(production.deploy_on_merge);
    assert!(production.command_for("deploy:migrate").is_none());
}

#[test]
fn an_unknown_key_is_reported_with_its_line_and_column() {
    let err = error("[[environment]]\nname = \"p\"\nrepositories = [\"a/b\"]\ncomand = [\"x\"]\n");
    assert_eq!((err.line, err.column), (4, 1), "{err}");
    assert!(err.message.contains("unknown field `comand`"), "{err}");
    assert!(
        err.to_string().starts_with("deployhook.toml:4:1: "),
        "{err}"
    );
}

#[test]
fn a_bad_duration_is_reported_at_its_value() {
    let text = "[[environment]]\nname = \"p\"\nrepositories = [\"a/b\"]\ncommand = [\"x\"]\ntimeout = \"fifteen minutes\"\n";
    let err = error(text);
    assert_eq!((err.line, err.column), (5, 11), "{err}");
    assert!(err.message.contains("examples: 90s, 15m"), "{err}");
}

#[test]
fn a_duplicate_environment_names_where_the_first_one_is() {
    let table =
        "[[environment]]\nname = \"production\"\nrepositories = [\"a/b\"]\ncommand = [\"x\"]\n";
    let err = error(&format!("{table}\n{table}"));
    assert_eq!((err.line, err.column), (7, 8), "{err}");
    assert!(
        err.message
            .contains("duplicate environment \"production\" (first defined at line 2)"),
        "{err}"
    );
}

#[test]
fn values_that_cannot_work_are_refused_with_a_reason() {
    let base = "[[environment]]\nname = \"p\"\nrepositories = [\"a/b\"]\ncommand = [\"x\"]\n";
    let cases = [
        ("repositories = [\"not a repo\"]", "is not a repository"),
        ("command = []", "must name a program"),
        ("policy = \"newest\"", "unknown variant `newest`"),
        (
            "environment_url = \"https://x/{branch}\"",
            "unknown placeholder {branch}",
        ),
        (
            "env = { DEPLOYHOOK_SHA = \"x\" }",
            "deployhook's own variable",
        ),
        ("pass_env = [\"A-B\"]", "is not a variable name"),
        ("log_limit = 10", "at least"),
        ("tasks = { deploy = [\"y\"] }", "runs `command`"),
    ];
    for (line, why) in cases {
        let key = line.split(' ').next().unwrap();
        let text: String = base
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} ")))
            .chain([line])
            .map(|l| format!("{l}\n"))
            .collect();
        let err = error(&text);
        assert!(err.message.contains(why), "{line}: {err}");
    }
    let err = error("# nothing yet\n");
    assert!(err.message.contains("at least one environment"), "{err}");
}

/// Two environments, staging and production, with `extra` added to the staging table and
/// `production` added to production's.
fn pair(staging: &str, production: &str) -> String {
    format!(
        "[[environment]]\nname = \"staging\"\nrepositories = [\"a/b\"]\ncommand = [\"x\"]\n{staging}\n\
         [[environment]]\nname = \"production\"\nrepositories = [\"a/b\"]\ncommand = [\"x\"]\n{production}\n"
    )
}

#[test]
fn the_gate_and_the_promotion_are_read_with_their_defaults() {
    let environments = parse(
        &pair(
            "checks = [\"test\", \"lint\"]\nchecks_timeout = \"2h\"",
            "promote_from = \"staging\"\nsoak = \"10m\"",
        ),
        "f",
    )
    .unwrap()
    .environments;
    let (staging, production) = (&environments[0], &environments[1]);
    assert_eq!(
        staging.checks,
        Some(Required::Named(vec!["test".into(), "lint".into()]))
    );
    assert_eq!(staging.checks_timeout, Duration::from_secs(7200));
    assert_eq!(
        production.promote_from.as_ref().map(AsRef::as_ref),
        Some("staging")
    );
    assert_eq!(production.soak, Duration::from_secs(600));
    assert_eq!(production.checks, None);
    assert_eq!(production.checks_timeout, DEFAULT_CHECKS_TIMEOUT);

    let all = parse(&pair("checks = \"all\"", "checks = \"none\""), "f")
        .unwrap()
        .environments;
    assert_eq!(all[0].checks, Some(Required::All));
    assert_eq!(all[1].checks, None);
}

#[test]
fn gates_and_promotions_that_cannot_work_are_refused_with_a_reason() {
    let cases = [
        (pair("checks = \"green\"", ""), "expected \"none\", \"all\""),
        (pair("checks = []", ""), "at least one"),
        (
            pair("", "promote_from = \"qa\""),
            "names qa, which is not defined",
        ),
        (pair("", "promote_from = \"production\""), "from itself"),
        (
            pair(
                "promote_from = \"production\"",
                "promote_from = \"staging\"",
            ),
            "go round in a circle",
        ),
        (
            pair("", "promote_from = \"staging\"\nchecks = [\"test\"]"),
            "put `checks` on staging",
        ),
        (pair("soak = \"1m\"", ""), "`soak` needs `promote_from`"),
        (
            pair("checks = [\"test\"]\nrequired_contexts = [\"ci\"]", ""),
            "remove `required_contexts`",
        ),
        (pair("checks_timeout = \"0s\"", ""), "longer than 0s"),
    ];
    for (text, why) in cases {
        let err = error(&text);
        assert!(err.message.contains(why), "{text}: {err}");
    }
}

#[test]
fn approvals_are_read_with_their_defaults_and_shown_by_check_config() {
    let file = parse(
        &pair(
            "",
            "approvals = 2\nreviewers = [\"octocat\", \"@acme/sre\"]\nself_approval = true\n\
             approval_timeout = \"4h\"",
        ),
        "f",
    )
    .unwrap();
    let (staging, production) = (&file.environments[0], &file.environments[1]);
    assert_eq!(staging.approval, None);
    let rule = production.approval.as_ref().unwrap();
    assert_eq!(rule.required, 2);
    assert_eq!(
        rule.reviewers,
        [
            crate::model::Grantee::User("octocat".into()),
            crate::model::Grantee::Team {
                org: "acme".into(),
                slug: "sre".into()
            }
        ]
    );
    assert!(rule.self_approval);
    assert_eq!(rule.timeout, Duration::from_secs(4 * 3600));
    assert!(
        summary(production).ends_with(
            "; every deployment needs 2 approvals by octocat, @acme/sre within 4h, the \
             change's author may approve"
        ),
        "{}",
        summary(production)
    );

    let defaults = parse(&pair("approvals = 1", "approvals = 0"), "f")
        .unwrap()
        .environments;
    let rule = defaults[0].approval.as_ref().unwrap();
    assert_eq!(
        (rule.required, rule.reviewers.len(), rule.self_approval),
        (1, 0, false)
    );
    assert_eq!(rule.timeout, Duration::from_secs(24 * 3600));
    assert_eq!(defaults[1].approval, None, "0 asks for no approval");
}

#[test]
fn approvals_that_cannot_work_are_refused_where_they_are_wrong() {
    let cases = [
        ("approvals = 11", "expected 1 to 10 people", (5, 13)),
        ("approvals = -1", "expected 1 to 10 people", (5, 13)),
        (
            "approvals = 1\nreviewers = [\"octo cat\"]",
            "is neither a GitHub login (octocat) nor a team",
            (6, 14),
        ),
        (
            "approvals = 1\nreviewers = [\"@acme/s re\"]",
            "is neither a GitHub login (octocat) nor a team",
            (6, 14),
        ),
        (
            "approvals = 1\nreviewers = [\"octocat\", \"OctoCat\"]",
            "octocat is listed twice",
            (6, 25),
        ),
        (
            "approvals = 2\nreviewers = [\"octocat\"]",
            "no deployment could ever be approved",
            (6, 13),
        ),
        (
            "reviewers = [\"octocat\"]",
            "`reviewers` needs `approvals`",
            (5, 13),
        ),
        (
            "self_approval = true",
            "`self_approval` needs `approvals`",
            (5, 17),
        ),
        (
            "approval_timeout = \"1h\"",
            "`approval_timeout` needs `approvals`",
            (5, 20),
        ),
        (
            "approvals = 1\napproval_timeout = \"31 days\"",
            "at most 30 days",
            (6, 20),
        ),
        (
            "approvals = 1\napproval_timeout = \"0s\"",
            "longer than 0s",
            (6, 20),
        ),
        (
            "approvals = 1\napprovers = [\"x\"]",
            "unknown field `approvers`",
            (6, 1),
        ),
    ];
    let base = "[[environment]]\nname = \"p\"\nrepositories = [\"a/b\"]\ncommand = [\"x\"]\n";
    for (lines, why, at) in cases {
        let err = error(&format!("{base}{lines}\n"));
        assert!(err.message.contains(why), "{lines}: {err}");
        assert_eq!((err.line, err.column), at, "{lines}: {err}");
    }
    // Two reviewers, one a team, may give two approvals: a team has many members.
    assert!(
        parse(
            &format!("{base}approvals = 3\nreviewers = [\"a\", \"@o/t\"]\n"),
            "f"
        )
        .is_ok()
    );
}

#[test]
fn a_rollback_command_is_an_argv_like_command() {
    let file = parse(
        &pair("rollback_command = [\"./rollback.sh\", \"--now\"]", ""),
        "f",
    )
    .unwrap();
    let (staging, production) = (&file.environments[0], &file.environments[1]);
    assert_eq!(
        staging.rollback_command.as_deref(),
        Some(&["./rollback.sh".to_owned(), "--now".to_owned()][..])
    );
    assert_eq!(production.rollback_command, None);
    assert!(summary(staging).contains("rolls back with [\"./rollback.sh\", \"--now\"]"));
    let err = error(&pair("rollback_command = [\"\"]", ""));
    assert!(
        err.message.contains("rollback_command must name a program"),
        "{err}"
    );
}

#[test]
fn notify_tables_name_their_variables_events_and_environments_with_defaults_for_all() {
    use crate::config::notify::{NotifyKind, NotifyTable};
    use crate::model::NotificationKind;
    let text = pair("", "")
        + "[[notify]]\nkind = \"slack\"\nurl_env = \"SLACK_WEBHOOK_URL\"\n\
           events = [\"deploy_failed\", \"deploy_errored\"]\nenvironments = [\"production\"]\n\
           [[notify]]\nkind = \"webhook\"\nurl_env = \"AUDIT_URL\"\nsecret_env = \"AUDIT_SECRET\"\n";
    let file = parse(&text, "f").unwrap();
    assert_eq!(
        file.notify,
        [
            NotifyTable {
                kind: NotifyKind::Slack,
                url_env: "SLACK_WEBHOOK_URL".into(),
                secret_env: None,
                events: vec![
                    NotificationKind::DeployFailed,
                    NotificationKind::DeployErrored
                ],
                environments: Some(vec![Environment::parse("production").unwrap()]),
            },
            NotifyTable {
                kind: NotifyKind::Webhook,
                url_env: "AUDIT_URL".into(),
                secret_env: Some("AUDIT_SECRET".into()),
                events: NotificationKind::ALL.to_vec(),
                environments: None,
            },
        ]
    );
    assert_eq!(
        crate::config::notify::summary(&file.notify[0]),
        "  notify slack at $SLACK_WEBHOOK_URL: deploy_failed, deploy_errored, of production"
    );
    assert!(parse(&pair("", ""), "f").unwrap().notify.is_empty());
}

#[test]
fn notify_tables_that_cannot_work_are_refused_where_they_are_wrong() {
    let table = |body: &str| format!("{}[[notify]]\n{body}\n", pair("", ""));
    // pair() is 10 lines; the table starts at line 11.
    let cases = [
        (
            "kind = \"teams\"\nurl_env = \"X\"",
            (12, 8),
            "unknown variant `teams`, expected `slack` or `webhook`",
        ),
        (
            "kind = \"slack\"\nurl_env = \"X\"\nevents = [\"deploy_fail\"]",
            (14, 11),
            "unknown variant `deploy_fail`",
        ),
        (
            "kind = \"slack\"\nurl_env = \"X\"\nevents = []",
            (14, 10),
            "events = [] would send nothing",
        ),
        (
            "kind = \"slack\"\nurl_env = \"X\"\nenvironments = [\"qa\"]",
            (14, 17),
            "names environment \"qa\", which is not defined here (environments: staging, production)",
        ),
        (
            "kind = \"slack\"\nurl_env = \"X\"\nsecret_env = \"S\"",
            (14, 14),
            "secret_env is for kind = \"webhook\"",
        ),
        (
            "kind = \"slack\"\nurl = \"https://hooks.slack.com/services/T/B/x\"",
            (13, 1),
            "unknown field `url`",
        ),
        ("kind = \"slack\"", (11, 1), "missing field `url_env`"),
    ];
    for (body, at, why) in cases {
        let err = error(&table(body));
        assert!(err.message.contains(why), "{body}: {err}");
        assert_eq!((err.line, err.column), at, "{body}: {err}");
    }
    // The likeliest mistake, the URL itself in url_env, is not repeated in the error.
    let err = error(&table(
        "kind = \"slack\"\nurl_env = \"https://hooks.slack.com/services/T/B/secret\"",
    ));
    assert!(
        err.message
            .contains("url_env must name an environment variable"),
        "{err}"
    );
    assert!(!err.to_string().contains("secret"), "{err}");
    assert_eq!((err.line, err.column), (13, 11), "{err}");
    let two = format!(
        "{}[[notify]]\nkind = \"webhook\"\nurl_env = \"A\"\nsecret_env = \"S1\"\n\
         [[notify]]\nkind = \"webhook\"\nurl_env = \"A\"\nsecret_env = \"S2\"\n",
        pair("", "")
    );
    let err = error(&two);
    assert!(err.message.contains("different secret_env"), "{err}");
    assert_eq!(err.line, 15, "{err}");
}

#[test]
fn shape_mistakes_are_explained_in_the_files_own_terms() {
    let single = "[environment]\nname = \"p\"\nrepositories = [\"a/b\"]\ncommand = [\"x\"]\n";
    let err = error(single);
    assert_eq!(
        err.message,
        "[environment] describes a single table, but a file may have several: write \
         [[environment]] (two brackets), once before each environment"
    );
    let string = "[[environment]]\nname = \"p\"\nrepositories = [\"a/b\"]\ncommand = \"./deploy.sh staging\"\n";
    let err = error(string);
    assert_eq!(
        err.message,
        "`command` is a list, one string per word (no shell runs it): write command = \
         [\"./deploy.sh\", \"staging\"]"
    );
    assert_eq!((err.line, err.column), (4, 11));
    let typo = "[[environment]]\nname = \"p\"\nrepositories = [\"a/b\"]\ncommand = [\"x\"]\ntimout = \"5m\"\n";
    assert_eq!(
        error(typo).message,
        "unknown field `timout`: did you mean `timeout`?"
    );
    // Nothing near: the list of known fields stays, it is the best help there is.
    let far =
        "[[environment]]\nname = \"p\"\nrepositories = [\"a/b\"]\ncommand = [\"x\"]\nzzz = 1\n";
    assert!(error(far).message.contains("expected one of `name`"));
}

#[test]
fn the_closest_name_is_suggested_only_when_it_is_close() {
    let known = ["timeout", "policy", "production", "staging"];
    assert_eq!(closest("timout", &known), Some("timeout"));
    assert_eq!(closest("prodcution", &known), Some("production"));
    assert_eq!(closest("polcy", &known), Some("policy"));
    assert_eq!(closest("deploy", &known), None);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}

const SCHEDULED: &str = r#"
[[environment]]
name = "production"
repositories = ["acme/widgets"]
command = ["./deploy.sh"]
timezone = "Europe/Paris"
windows = [{ days = "mon-fri", from = "09:00", until = "16:00" }, { days = "sat", from = "10:00", until = "12:00" }]
freezes = [{ from = "2026-12-21 00:00", until = "2027-01-04 09:00", reason = "holidays" }]
"#;

#[test]
fn windows_and_freezes_are_read_in_their_time_zone_and_shown_by_check_config() {
    let environments = parse(SCHEDULED, "deployhook.toml").unwrap().environments;
    let schedule = &environments[0].schedule;
    assert_eq!(schedule.zone.iana_name(), Some("Europe/Paris"));
    assert_eq!(schedule.windows.len(), 2);
    assert_eq!(
        schedule.freezes[0].from,
        "2026-12-20T23:00:00Z".parse::<jiff::Timestamp>().unwrap()
    );
    let line = summary(&environments[0]);
    assert!(
        line.contains(
            "deploys automatically only mon-fri 09:00–16:00, sat 10:00–12:00 Europe/Paris; \
             frozen 2026-12-21 00:00 – 2027-01-04 09:00 Europe/Paris (holidays)"
        ),
        "{line}"
    );
    let open = parse(VALID, "deployhook.toml").unwrap().environments;
    assert!(open.iter().all(|e| e.schedule.is_open()));
}

#[test]
fn schedules_that_cannot_work_are_refused_where_they_are_wrong() {
    let with = |line: &str| {
        format!(
            "[[environment]]\nname = \"production\"\nrepositories = [\"acme/w\"]\n\
             command = [\"./d\"]\n{line}\n"
        )
    };
    let cases = [
        ("timezone = \"Mars/Olympus\"", "not a time zone known"),
        (
            "windows = [{ days = \"mon-fri\", from = \"16:00\", until = \"09:00\" }]",
            "ends after it starts",
        ),
        (
            "windows = [{ days = \"funday\", from = \"09:00\", until = \"16:00\" }]",
            "\"funday\" is not a day",
        ),
        (
            "windows = [{ days = \"mon\", from = \"9\", until = \"16:00\" }]",
            "not a time of day",
        ),
        (
            "freezes = [{ from = \"2027-01-04 09:00\", until = \"2026-12-21 00:00\", reason = \"x\" }]",
            "is not after from",
        ),
        (
            "freezes = [{ from = \"2026-12-21\", until = \"2027-01-04\", reason = \"\" }]",
            "gives its reason",
        ),
        (
            "freezes = [{ from = \"next week\", until = \"2027-01-04\", reason = \"x\" }]",
            "not a date and time",
        ),
    ];
    for (line, expected) in cases {
        let err = error(&with(line));
        assert_eq!(err.line, 5, "{line}: {err}");
        assert!(err.message.contains(expected), "{line}: {err}");
    }
}
