//! The README against the server: the keys of its `/readyz` examples and the metrics its
//! table lists are exactly what a running server serves. A key or a metric added to (or
//! dropped from) either side without the other fails here, so the README cannot fall
//! behind the binary again.

use std::collections::BTreeSet;

use deployhook_testkit::postgres as cluster;
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

/// The README's text between the heading `heading` and the next heading of any level.
fn readme_section(heading: &str) -> String {
    let readme = include_str!("../../README.md");
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("the README has no {heading:?}"));
    let rest = &readme[start + heading.len() + 2..];
    let end = rest.find("\n#").unwrap_or(rest.len());
    rest[..end].to_owned()
}

/// The ```json blocks of a section, parsed.
fn json_blocks(section: &str) -> Vec<Value> {
    section
        .split("```json\n")
        .skip(1)
        .map(|block| {
            let json = block.split("```").next().unwrap();
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
        })
        .collect()
}

fn keys(object: &Value) -> BTreeSet<String> {
    object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .cloned()
        .collect()
}

/// The metric names the README's table documents: the `deployhook_…` names in the first
/// column of its rows.
fn documented_metrics() -> BTreeSet<String> {
    let section = readme_section("### Metrics");
    let mut names = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `deployhook_")) {
        let first = row.split('|').nth(1).unwrap();
        for name in first.split('`').filter(|n| n.starts_with("deployhook_")) {
            assert!(names.insert(name.to_owned()), "{name} is listed twice");
        }
    }
    names
}

/// The metric names a scrape shows, as a query names them: counters with their `_total`.
fn served_metrics(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|line| {
            let (name, kind) = line.split_once(' ').unwrap();
            if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            }
        })
        .collect()
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let text = app.get_text(&format!("{}{path}", app.url)).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[tokio::test]
async fn the_readmes_readyz_example_has_the_keys_the_server_answers() {
    let examples = json_blocks(&readme_section("### Health"));
    assert_eq!(
        examples.len(),
        2,
        "the SQLite answer, then PostgreSQL's replica"
    );
    let documented = &examples[0];
    let mut app = spawn_app().await;
    let (_, served) = crate::helpers::ready(&app).await;
    assert_eq!(served["status"], "ready", "{served}");
    assert_eq!(keys(documented), keys(&served));
    assert_eq!(
        keys(&documented["checks"]),
        keys(&served["checks"]),
        "README: {documented}\nserved: {served}"
    );
    // The example's values are the ones a healthy server on SQLite gives (the schema's
    // number aside, which every migration moves).
    for (key, value) in documented["checks"].as_object().unwrap() {
        if key != "schema" {
            assert_eq!(&served["checks"][key], value, "{key}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_readmes_replica_keys_are_what_a_server_on_postgresql_answers() {
    let Some(cluster) = cluster::shared() else {
        eprintln!("SKIPPED: PostgreSQL's server binaries are not installed");
        return;
    };
    let examples = json_blocks(&readme_section("### Health"));
    let database = cluster.database();
    let mut app =
        spawn_app_with(move |config, _| config.database = database.parse().unwrap()).await;
    let served = get_json(&app, "/readyz").await;
    let mut documented = keys(&examples[0]["checks"]);
    documented.extend(keys(&examples[1]));
    assert_eq!(documented, keys(&served["checks"]), "served: {served}");
    assert_eq!(
        keys(&examples[1]["replica"]),
        keys(&served["checks"]["replica"]),
        "served: {served}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_readmes_metrics_are_the_ones_the_server_serves() {
    let mut app = spawn_app().await;
    let exposition = app.get_text(&format!("{}/metrics", app.url)).await;
    let served = served_metrics(&exposition);
    let documented = documented_metrics();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "served but not in the README's table: {undocumented:?}; \
         in the table but not served: {unserved:?}"
    );
    // Listed before anything happened: no family waits for its first series to appear.
    assert!(served.contains("deployhook_deploys_total"), "{exposition}");
    app.stop().await;
}
