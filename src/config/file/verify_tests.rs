//! Tests of the `verify` table and `on_verify_failure`.

use std::time::Duration;

use super::*;
use crate::config::verify::{OnVerifyFailure, VerifyCheck};

const HEAD: &str = "[[environment]]\nname = \"production\"\nrepositories = [\"acme/widgets\"]\n\
                    command = [\"./deploy.sh\"]\n";

fn with(extra: &str) -> Result<ConfigFile, ConfigFileError> {
    parse(&format!("{HEAD}{extra}"), "deployhook.toml")
}

#[test]
fn a_verify_table_is_read_with_its_defaults_and_shown_by_check_config() {
    let file = with(
        "on_verify_failure = \"rollback\"\n[environment.verify]\n\
         url = \"https://example.com/healthz\"\nhold_for = \"60s\"\n",
    )
    .unwrap();
    let verify = file.environments[0].verify.clone().unwrap();
    assert_eq!(
        verify.check,
        VerifyCheck::Http {
            url: "https://example.com/healthz".parse().unwrap(),
            expect_status: 200,
            body_contains: None,
        }
    );
    assert_eq!(verify.interval, Duration::from_secs(5));
    assert_eq!(verify.hold_for, Duration::from_secs(60));
    assert_eq!(verify.timeout, Duration::from_secs(300));
    assert_eq!(verify.on_failure, OnVerifyFailure::Rollback);
    assert!(
        summary(&file.environments[0]).ends_with(
            "; verified by GET https://example.com/healthz answering 200 every 5s until it \
             holds 1m (within 5m), else failure and a rollback"
        ),
        "{}",
        summary(&file.environments[0])
    );
    let command =
        with("[environment.verify]\ncommand = [\"./smoke.sh\", \"-q\"]\nhold_for = \"0s\"\n")
            .unwrap();
    let verify = command.environments[0].verify.clone().unwrap();
    assert_eq!(
        verify.check,
        VerifyCheck::Command(vec!["./smoke.sh".into(), "-q".into()])
    );
    assert_eq!(verify.on_failure, OnVerifyFailure::Fail);
    assert_eq!(with("").unwrap().environments[0].verify, None);
}

#[test]
fn verify_tables_that_cannot_work_are_refused_with_a_reason() {
    for (extra, says) in [
        (
            "on_verify_failure = \"rollback\"\n",
            "`on_verify_failure` needs a `verify` table",
        ),
        (
            "on_verify_failure = \"retry\"\n[environment.verify]\nurl = \"http://x/\"\n",
            "unknown variant",
        ),
        (
            "[environment.verify]\ninterval = \"5s\"\n",
            "exactly one of `url`",
        ),
        (
            "[environment.verify]\nurl = \"http://x/\"\ncommand = [\"./c\"]\n",
            "exactly one of `url`",
        ),
        (
            "[environment.verify]\nurl = \"ftp://x/\"\n",
            "absolute http:// or https://",
        ),
        (
            "[environment.verify]\nurl = \"/healthz\"\n",
            "absolute http:// or https://",
        ),
        (
            "[environment.verify]\nurl = \"http://x/\"\nexpect_status = 42\n",
            "100 to 599",
        ),
        (
            "[environment.verify]\nurl = \"http://x/\"\nbody_contains = \"\"\n",
            "empty",
        ),
        (
            "[environment.verify]\ncommand = [\"./c\"]\nexpect_status = 200\n",
            "go with `url`",
        ),
        (
            "[environment.verify]\ncommand = []\n",
            "must name a program",
        ),
        (
            "[environment.verify]\nurl = \"http://x/\"\ninterval = \"10ms\"\n",
            "at least 100ms",
        ),
        (
            "[environment.verify]\nurl = \"http://x/\"\nhold_for = \"5m\"\ntimeout = \"1m\"\n",
            "could never hold in time",
        ),
        (
            "[environment.verify]\nurl = \"http://x/\"\nholdfor = \"5m\"\n",
            "unknown field",
        ),
        (
            "[environment.verify]\nurl = \"http://x/\"\ntimeout = \"soon\"\n",
            "verify:",
        ),
    ] {
        let err = with(extra).unwrap_err();
        assert!(err.message.contains(says), "{extra:?}: {err}");
    }
}
