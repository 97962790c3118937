//! The `revoked_sessions` table: dashboard sessions signed out before they expired, so a
//! signed-out cookie stays refused across restarts. Rows go once they would have expired.

use crate::store::db::{Connection, params};

/// Records that session `id` (expiring at `expires`, Unix seconds) was signed out, and
/// forgets those already expired at `now`.
pub fn revoke(conn: &Connection, id: &str, expires: u64, now: u64) -> rusqlite::Result<()> {
    let (expires, now) = (seconds(expires), seconds(now));
    conn.prepare_cached("DELETE FROM revoked_sessions WHERE expires_at <= ?1")?
        .execute([now])?;
    conn.prepare_cached(
        "INSERT INTO revoked_sessions (id, expires_at) VALUES (?1, ?2)
         ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at",
    )?
    .execute(params![id, expires])?;
    Ok(())
}

/// The sessions signed out that have not expired yet at `now`.
pub fn revoked(conn: &Connection, now: u64) -> rusqlite::Result<Vec<(String, u64)>> {
    conn.prepare_cached("SELECT id, expires_at FROM revoked_sessions WHERE expires_at > ?1")?
        .query_map([seconds(now)], |row| {
            Ok((row.get(0)?, row.get::<_, i64>(1)?.unsigned_abs()))
        })?
        .collect()
}

fn seconds(unix: u64) -> i64 {
    i64::try_from(unix).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::each_engine;

    #[test]
    fn a_revoked_session_is_refused_until_it_would_have_expired() {
        each_engine(|conn| {
            revoke(conn, "a", 100, 0).unwrap();
            revoke(conn, "b", 50, 0).unwrap();
            // Signed out again with a later expiry: one row, the later one.
            revoke(conn, "a", 200, 10).unwrap();
            let mut now = revoked(conn, 10).unwrap();
            now.sort();
            assert_eq!(now, [("a".to_owned(), 200), ("b".to_owned(), 50)]);
            assert_eq!(revoked(conn, 60).unwrap(), [("a".to_owned(), 200)]);
            // A revocation forgets the rows already expired.
            revoke(conn, "c", 300, 60).unwrap();
            let rows: i64 = conn
                .query_row("SELECT COUNT(*) FROM revoked_sessions", [], |r| r.get(0))
                .unwrap();
            assert_eq!(rows, 2);
        });
    }
}
