//! Tests of the command line's definition: clap's own consistency checks, durations, and
//! `serve`'s defaults.

use std::time::Duration;

use clap::CommandFactory;

use super::*;
use crate::config::parse_duration;
use crate::model::{OnInterrupt, Policy};

#[test]
fn the_cli_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn durations_read_like_a_person_writes_them() {
    assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
    assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    assert!(parse_duration("fifteen").unwrap_err().contains("examples"));
}

#[test]
fn serve_defaults_match_the_readme() {
    let cli = Cli::try_parse_from(["deployhook", "serve"]).unwrap();
    let Command::Serve(args) = cli.command else {
        panic!("not serve");
    };
    assert_eq!(args.listen.to_string(), "127.0.0.1:4567");
    assert_eq!(args.database, "deployhook.db");
    assert_eq!(args.max_concurrent_deploys, 4);
    assert_eq!(Policy::default(), Policy::Latest);
    assert_eq!(OnInterrupt::default(), OnInterrupt::Error);
}

#[test]
fn only_the_commands_that_record_who_acts_offer_by() {
    let cli = Cli::command();
    let offering: Vec<&str> = cli
        .get_subcommands()
        .filter(|c| c.get_arguments().any(|a| a.get_long() == Some("by")))
        .map(|c| c.get_name())
        .collect();
    assert_eq!(offering, ["lock", "unlock", "rollback", "calls"]);
    // `log --by` was offered, and ignored.
    assert!(
        Cli::try_parse_from(["deployhook", "log", "880001", "--by", "maria"]).is_err(),
        "log takes no --by"
    );
}
