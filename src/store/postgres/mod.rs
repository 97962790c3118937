//! The PostgreSQL engine, for several replicas on one database: the pool, TLS, the schema
//! (migrated once, under an advisory lock, however many replicas start together), and
//! running the store's work in one transaction per call.
//!
//! Unlike SQLite's writer thread there is no group commit here: every write is its own
//! transaction on its own pooled connection, so concurrent deliveries commit in parallel
//! (PostgreSQL groups their WAL flushes itself). Reads run in a `REPEATABLE READ READ ONLY`
//! transaction: one snapshot per page, as on SQLite.

pub mod replicas;
mod tls;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};

use super::db::{Connection, PgSession, as_pg, pg_error};
use super::{SCHEMA_VERSION, StoreError, Trouble};
/// Masks the password of a URL: defined with the setting's type, which shows it masked.
pub use crate::model::database::redact;

/// The schema as of [`SCHEMA_VERSION`]: new PostgreSQL databases start there.
const SCHEMA: &str = include_str!("schema.sql");
/// What takes an existing database from the version before each to it, as SQLite's
/// migrations do: a script, then the migration's Rust step (`schema::after_script`), in one
/// transaction per version. Databases made at version 11 or later can be upgraded.
const UPGRADES: &[(usize, &str)] = &[
    (12, include_str!("upgrade_12.sql")),
    (13, include_str!("upgrade_13.sql")),
    (14, include_str!("upgrade_14.sql")),
    (15, include_str!("upgrade_15.sql")),
    (16, include_str!("upgrade_16.sql")),
    (17, include_str!("upgrade_17.sql")),
    (18, include_str!("upgrade_18.sql")),
    (19, include_str!("upgrade_19.sql")),
    (20, include_str!("upgrade_20.sql")),
    (21, include_str!("upgrade_21.sql")),
    (22, include_str!("upgrade_22.sql")),
];
/// The advisory lock that serialises migrations between replicas starting together.
const MIGRATION_LOCK: i64 = 0x6465_706c_6f79_0001;
/// Connections per replica: writes hold one for a transaction's length (milliseconds), so
/// a few serve many concurrent deliveries.
pub const POOL_SIZE: usize = 16;
/// How long a request waits for a pooled connection, or for a new one to connect.
const POOL_WAIT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A query that runs longer is cancelled by the server (every query here is small).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A pool of connections to one PostgreSQL database. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    trouble: Arc<Trouble>,
    /// The URL without its password, for messages.
    shown: Arc<str>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.shown).finish()
    }
}

impl PgStore {
    /// Connects to `url` (libpq's `sslmode` honoured), and migrates the schema once.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let shown: Arc<str> = redact(url).into();
        let parsed = tls::parse(url)?;
        let mut config = tokio_postgres::Config::from_str(&parsed.url).map_err(|err| {
            anyhow::anyhow!("DEPLOYHOOK_DATABASE {shown} is not a valid PostgreSQL URL: {err}")
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("deployhook");
        }
        // A peer that vanishes (a host powered off, a partition) is noticed within seconds,
        // not after the kernel's two hours.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(5));
        config.keepalives_interval(Duration::from_secs(2));
        config.keepalives_retries(3);
        config.options(format!(
            "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            STATEMENT_TIMEOUT.as_millis(),
            STATEMENT_TIMEOUT.as_millis()
        ));
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls::client_config(&parsed)?);
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .timeouts(Timeouts {
                wait: Some(POOL_WAIT),
                create: Some(CONNECT_TIMEOUT),
                recycle: Some(POOL_WAIT),
            })
            .runtime(Runtime::Tokio1)
            .build()
            .context("could not build the PostgreSQL pool")?;
        let store = Self {
            pool,
            trouble: Arc::default(),
            shown,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Creates the schema on an empty database, under an advisory lock so that replicas
    /// starting together migrate once; refuses a database a newer release migrated.
    async fn migrate(&self) -> anyhow::Result<()> {
        let client = self.pool.get().await.map_err(|err| {
            anyhow::anyhow!("could not connect to {}: {}", self.shown, pool_error(&err))
        })?;
        let describe = |err: tokio_postgres::Error| anyhow::anyhow!("{}", pg_error_text(&err));
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(describe)?;
        let result = async {
            let exists: Option<String> = client
                .query_one("SELECT CAST(to_regclass('schema_version') AS TEXT)", &[])
                .await
                .map_err(describe)?
                .get(0);
            let version: i64 = if exists.is_some() {
                client
                    .query_one("SELECT version FROM schema_version", &[])
                    .await
                    .map_err(describe)?
                    .get(0)
            } else {
                0
            };
            let latest = i64::try_from(SCHEMA_VERSION)?;
            anyhow::ensure!(
                version <= latest,
                "the database is at schema version {version}, newer than this deployhook knows \
                 ({latest}): it was written by a newer release"
            );
            // A database at an older version is upgraded one version at a time, or, when a
            // script is missing, refused rather than run half-way.
            let from = usize::try_from(version)?;
            let steps: Vec<(usize, &'static str)> = UPGRADES
                .iter()
                .copied()
                .filter(|(to, _)| *to > from)
                .collect();
            anyhow::ensure!(
                version == 0
                    || steps.iter().map(|(to, _)| *to).eq(from + 1..=SCHEMA_VERSION),
                "the database is at schema version {version}; this deployhook knows no \
                 PostgreSQL migration from it to {latest}"
            );
            if version != 0 {
                for (to, script) in steps {
                    self.upgrade(to, script).await?;
                    tracing::info!("upgraded deployhook's schema to version {to} in {}", self.shown);
                }
            }
            if version == 0 {
                let script = format!(
                    "BEGIN; {SCHEMA}; INSERT INTO schema_version (version) VALUES ({latest}); COMMIT;"
                );
                client
                    .batch_execute(&script)
                    .await
                    .map_err(describe)
                    .context("could not create the schema")?;
                tracing::info!("created deployhook's schema (version {latest}) in {}", self.shown);
            }
            Ok(())
        }
        .await;
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        result.with_context(|| format!("could not migrate the database {}", self.shown))
    }

    /// Takes the database to version `to`: `script`, then the migration's Rust step, and the
    /// new version, in one transaction.
    async fn upgrade(&self, to: usize, script: &'static str) -> anyhow::Result<()> {
        let version = i64::try_from(to)?;
        self.run_unnoted(false, move |c| {
            c.execute_batch(script)?;
            super::schema::after_script(c, to, super::now_ms())?;
            c.execute("UPDATE schema_version SET version = ?1", [version])?;
            Ok(())
        })
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))
        .with_context(|| format!("could not upgrade the schema to version {to}"))
    }

    /// Runs `work` in one transaction on a pooled connection, on a blocking thread.
    pub(crate) async fn run<R, F>(&self, read_only: bool, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let result = self.run_unnoted(read_only, work).await;
        if !read_only {
            self.trouble.note(&result);
        }
        result
    }

    async fn run_unnoted<R, F>(&self, read_only: bool, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let client = self
            .pool
            .get()
            .await
            .map_err(|err| StoreError::Unavailable(pool_error(&err)))?;
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let begin = if read_only {
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
            } else {
                "BEGIN"
            };
            let session = PgSession {
                client,
                runtime,
                begin: std::sync::Mutex::new(Some(begin)),
            };
            match work(&Connection::Postgres(&session)) {
                // No statement ran: no transaction was opened.
                Ok(result) if !session.begun() => Ok(result),
                Ok(result) => {
                    session
                        .block_on(session.client.batch_execute("COMMIT"))
                        .map_err(pg_error)?;
                    Ok(result)
                }
                Err(err) => {
                    if session.begun() {
                        let _ = session.block_on(session.client.batch_execute("ROLLBACK"));
                    }
                    Err(err)
                }
            }
        })
        .await
        .map_err(|_| StoreError::NotRun)?
        .map_err(StoreError::from)
    }

    /// Why writes fail, while they fail for want of the database.
    pub(crate) fn trouble(&self) -> Option<String> {
        self.trouble.current()
    }

    /// A connection of the pool, for work outside a transaction (leadership, heartbeats).
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|err| StoreError::Unavailable(pool_error(&err)))
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// What went wrong getting a connection, with its cause (a refused connection, a TLS
/// failure, a wrong password), never just "error connecting to server".
fn pool_error(err: &deadpool_postgres::PoolError) -> String {
    match err {
        deadpool_postgres::PoolError::Backend(err) => pg_error_text(err),
        deadpool_postgres::PoolError::Timeout(_) => {
            "no connection to PostgreSQL within the timeout (is it up and reachable?)".into()
        }
        other => other.to_string(),
    }
}

/// A PostgreSQL error with every cause in its chain.
pub(crate) fn pg_error_text(err: &tokio_postgres::Error) -> String {
    use std::error::Error;
    if let Some(db) = err.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether `err` means the database could not be reached or could not store the write
/// (connection lost, server shutting down, out of disk): the request should be answered
/// 503 and retried, as for a full disk on SQLite.
pub(crate) fn is_unavailable(err: &rusqlite::Error) -> bool {
    let Some(err) = as_pg(err) else {
        return false;
    };
    if err.is_closed() {
        return true;
    }
    match err.code() {
        // 08: connection exception, 53: insufficient resources (disk full, too many
        // connections), 57: operator intervention (shutdown), 58: system error (I/O).
        Some(code) => matches!(&code.code()[..2], "08" | "53" | "57" | "58"),
        // No SQLSTATE: an I/O error on the socket.
        None => err.as_db_error().is_none(),
    }
}

#[cfg(test)]
mod tests;
