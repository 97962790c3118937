//! The intake benchmark's last check: every delivery a durable server acknowledged is in
//! its database, SQLite or PostgreSQL.

use std::collections::{HashMap, HashSet};

use crate::Server;
use crate::common::verdict;

/// Stops `server` gracefully, then prints how many of the deliveries it acknowledged are
/// not among those its database holds (`recorded`, read once it stopped); whether none.
pub async fn none_missing(
    mut server: Server,
    acknowledged: &mut HashMap<&'static str, Vec<String>>,
    recorded: impl Future<Output = HashSet<String>>,
) -> bool {
    server.process.terminate();
    let acked = acknowledged.remove(server.name).unwrap_or_default();
    let recorded = recorded.await;
    let missing = acked.iter().filter(|d| !recorded.contains(*d)).count();
    println!(
        "acknowledged deliveries missing from the database of {}: {missing} of {} ({})",
        server.name,
        acked.len(),
        verdict(missing == 0)
    );
    missing == 0
}

/// The deliveries the SQLite database at `path` holds.
pub fn recorded_in_sqlite(path: &str) -> HashSet<String> {
    let db = rusqlite::Connection::open(path).expect("a durable database");
    let mut statement = db
        .prepare("SELECT delivery_id FROM deliveries WHERE hook_id = 1")
        .expect("a query");
    statement
        .query_map([], |row| row.get(0))
        .expect("rows")
        .map_while(Result::ok)
        .collect()
}

/// The deliveries the PostgreSQL database at `url` holds.
pub async fn recorded_in_postgres(url: &str) -> HashSet<String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the PostgreSQL database");
    tokio::spawn(connection);
    client
        .query("SELECT delivery_id FROM deliveries WHERE hook_id = 1", &[])
        .await
        .expect("a query")
        .iter()
        .map(|row| row.get(0))
        .collect()
}
