//! The `personal_tokens` table: tokens a person made on the dashboard so that the CLI acts
//! as them. Only each token's SHA-256 is kept; a token is found by it, and counts only
//! while unexpired and not revoked. Rows stay after they end (the dashboard lists a
//! person's recent ones), until retention takes them with the deploys' age.

use crate::store::db::{Connection, OptionalExtension, params};

/// A token as the dashboard lists it (never the token itself: it is not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub login: String,
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// Records a new token (by its `hash`).
pub fn create(conn: &Connection, row: &TokenRow, hash: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO personal_tokens (id, hash, login, name, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        row.id,
        hash,
        row.login,
        row.name,
        row.created_at,
        row.expires_at
    ])?;
    Ok(())
}

/// The person whose live token hashes to `hash`, with the token's id.
pub fn find(conn: &Connection, hash: &str, now: i64) -> rusqlite::Result<Option<(String, String)>> {
    conn.prepare_cached(
        "SELECT id, login FROM personal_tokens
         WHERE hash = ?1 AND revoked_at IS NULL AND expires_at > ?2",
    )?
    .query_row(params![hash, now], |row| Ok((row.get(0)?, row.get(1)?)))
    .optional()
}

/// `login`'s tokens, newest first: the live ones and those that ended in the last 30 days.
pub fn list(conn: &Connection, login: &str, now: i64) -> rusqlite::Result<Vec<TokenRow>> {
    let recent = now - 30 * 24 * 60 * 60 * 1000;
    conn.prepare_cached(
        "SELECT id, login, name, created_at, expires_at, revoked_at FROM personal_tokens
         WHERE login = ?1 AND expires_at > ?2 AND (revoked_at IS NULL OR revoked_at > ?2)
         ORDER BY created_at DESC, id LIMIT 100",
    )?
    .query_map(params![login, recent], |row| {
        Ok(TokenRow {
            id: row.get(0)?,
            login: row.get(1)?,
            name: row.get(2)?,
            created_at: row.get(3)?,
            expires_at: row.get(4)?,
            revoked_at: row.get(5)?,
        })
    })?
    .collect()
}

/// How many of `login`'s tokens are live at `now`.
pub fn live(conn: &Connection, login: &str, now: i64) -> rusqlite::Result<usize> {
    let count: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM personal_tokens
             WHERE login = ?1 AND revoked_at IS NULL AND expires_at > ?2",
        )?
        .query_row(params![login, now], |row| row.get(0))?;
    Ok(usize::try_from(count).unwrap_or(0))
}

/// Revokes `login`'s token `id`; whether a live one was revoked (another person's token
/// is never touched).
pub fn revoke(conn: &Connection, id: &str, login: &str, now: i64) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE personal_tokens SET revoked_at = ?3
             WHERE id = ?1 AND login = ?2 AND revoked_at IS NULL AND expires_at > ?3",
        )?
        .execute(params![id, login, now])?;
    Ok(changed == 1)
}

/// Forgets tokens that ended (expired or revoked) before `before`, at most `limit`.
pub fn prune(conn: &Connection, before: i64, limit: usize) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "DELETE FROM personal_tokens WHERE id IN (
             SELECT id FROM personal_tokens
             WHERE expires_at < ?1 OR revoked_at < ?1 LIMIT ?2)",
    )?
    .execute(params![before, i64::try_from(limit).unwrap_or(i64::MAX)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::each_engine;

    fn token(id: &str, login: &str, created_at: i64, expires_at: i64) -> TokenRow {
        TokenRow {
            id: id.into(),
            login: login.into(),
            name: format!("{id}'s laptop"),
            created_at,
            expires_at,
            revoked_at: None,
        }
    }

    #[test]
    fn a_token_counts_while_live_and_only_for_its_owner() {
        each_engine(|conn| {
            create(conn, &token("t1", "octocat", 0, 1_000), "hash1").unwrap();
            create(conn, &token("t2", "mona", 0, 1_000), "hash2").unwrap();
            assert_eq!(
                find(conn, "hash1", 10).unwrap(),
                Some(("t1".into(), "octocat".into()))
            );
            assert_eq!(find(conn, "nope", 10).unwrap(), None);
            // Expired: no longer anyone's.
            assert_eq!(find(conn, "hash1", 1_000).unwrap(), None);
            assert_eq!(live(conn, "octocat", 10).unwrap(), 1);
            // Another person cannot revoke it; its owner can, once.
            assert!(!revoke(conn, "t1", "mona", 20).unwrap());
            assert!(revoke(conn, "t1", "octocat", 20).unwrap());
            assert!(!revoke(conn, "t1", "octocat", 30).unwrap());
            assert_eq!(find(conn, "hash1", 30).unwrap(), None);
            let listed = list(conn, "octocat", 30).unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].revoked_at, Some(20));
            assert_eq!(live(conn, "octocat", 30).unwrap(), 0);
            // The same hash twice is refused by the table itself.
            assert!(create(conn, &token("t3", "mona", 0, 1_000), "hash2").is_err());
        });
    }

    #[test]
    fn ended_tokens_are_pruned_live_ones_kept() {
        each_engine(|conn| {
            create(conn, &token("old", "octocat", 0, 100), "h-old").unwrap();
            create(conn, &token("live", "octocat", 0, 10_000), "h-live").unwrap();
            assert_eq!(prune(conn, 500, 100).unwrap(), 1);
            assert_eq!(
                find(conn, "h-live", 600).unwrap(),
                Some(("live".into(), "octocat".into()))
            );
        });
    }
}
