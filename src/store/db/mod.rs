//! The connection the store's SQL runs on, whichever engine is behind it: SQLite (the
//! writer thread's or the reader's connection) or one PostgreSQL transaction.
//!
//! The store's domain operations are written once, as synchronous functions of a
//! [`Connection`], in the SQL both engines accept (`INSERT … ON CONFLICT DO NOTHING`,
//! `RETURNING`, `CAST(… AS BIGINT)`). That keeps one copy of every query and lets the same
//! tests run on both engines. Values cross the seam as SQLite's value model (rusqlite's
//! `ToSql`/`FromSql`): integers, reals, text, blobs and null, which is all the schema uses.
//! On PostgreSQL, `?N` placeholders become `$N`, statements are prepared once per pooled
//! connection, and each value is encoded as the type the server inferred for its place.
//! A PostgreSQL statement blocks its thread while the runtime sends it: the store runs
//! every piece of work on a blocking thread, never on an async worker.
//!
//! Files: this one (the seam: `Connection`, `Statement`, `Params`, `Row`) and `postgres`
//! (one pooled PostgreSQL connection in a transaction, SQLite's values encoded for it and
//! read back, `?N` as `$N`, PostgreSQL's errors carried in rusqlite's error type).

mod postgres;

use rusqlite::types::{FromSql, ValueRef};
pub use rusqlite::{OptionalExtension, ToSql, params};

pub(super) use postgres::pg_error;
pub use postgres::{PgError, PgSession, as_pg};
use postgres::{pg_params, pg_refs, pg_value};

/// SQL results: the store's functions keep rusqlite's error type on both engines.
pub type Result<T> = rusqlite::Result<T>;

/// Which SQL dialect a connection speaks, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A connection in a transaction, on either engine.
#[derive(Clone, Copy)]
pub enum Connection<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a PgSession),
}

impl std::fmt::Debug for Connection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlite(_) => "Connection(SQLite)",
            Self::Postgres(_) => "Connection(PostgreSQL)",
        })
    }
}

impl<'a> Connection<'a> {
    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(_) => Dialect::Sqlite,
            Self::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Prepares `sql` once per connection and reuses it afterwards.
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'a>> {
        Ok(match *self {
            Self::Sqlite(conn) => Statement::Sqlite(conn.prepare_cached(sql)?),
            Self::Postgres(session) => Statement::Postgres {
                session,
                statement: session.prepare(sql)?,
            },
        })
    }

    /// Prepares `sql` for this use only (a statement built at run time).
    pub fn prepare(&self, sql: &str) -> Result<Statement<'a>> {
        match *self {
            Self::Sqlite(conn) => Ok(Statement::SqliteOnce(conn.prepare(sql)?)),
            Self::Postgres(_) => self.prepare_cached(sql),
        }
    }

    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// Runs statements without parameters or results, one after another.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match self {
            Self::Sqlite(conn) => conn.execute_batch(sql),
            Self::Postgres(session) => session.in_transaction(session.client.batch_execute(sql)),
        }
    }
}

/// A prepared statement.
pub enum Statement<'a> {
    Sqlite(rusqlite::CachedStatement<'a>),
    SqliteOnce(rusqlite::Statement<'a>),
    Postgres {
        session: &'a PgSession,
        statement: tokio_postgres::Statement,
    },
}

impl std::fmt::Debug for Statement<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Statement")
    }
}

impl Statement<'_> {
    /// Runs it; how many rows it changed.
    pub fn execute(&mut self, params: impl Params) -> Result<usize> {
        params.with(|params| match self {
            Self::Sqlite(statement) => statement.execute(params),
            Self::SqliteOnce(statement) => statement.execute(params),
            Self::Postgres { session, statement } => {
                let values = pg_params(statement, params)?;
                let changed =
                    session.in_transaction(session.client.execute(statement, &pg_refs(&values)))?;
                Ok(usize::try_from(changed).unwrap_or(usize::MAX))
            }
        })
    }

    /// Whether it returns at least one row.
    pub fn exists(&mut self, params: impl Params) -> Result<bool> {
        self.query_map(params, |_| Ok(()))
            .map(|mut rows| rows.next().is_some())
    }

    /// The first row, mapped by `f`; [`rusqlite::Error::QueryReturnedNoRows`] without one.
    pub fn query_row<T>(
        &mut self,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        params.with(|params| match self {
            Self::Sqlite(statement) => statement.query_row(params, |row| f(&Row::Sqlite(row))),
            Self::SqliteOnce(statement) => statement.query_row(params, |row| f(&Row::Sqlite(row))),
            Self::Postgres { session, statement } => {
                let values = pg_params(statement, params)?;
                let rows =
                    session.in_transaction(session.client.query(statement, &pg_refs(&values)))?;
                let row = rows.first().ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                f(&Row::Postgres(row))
            }
        })
    }

    /// Every row, each mapped by `f` (read whole: the store's queries are bounded).
    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let rows: Vec<Result<T>> = params.with(|params| match self {
            Self::Sqlite(statement) => Ok::<_, rusqlite::Error>(
                statement
                    .query_map(params, |row| f(&Row::Sqlite(row)))?
                    .collect(),
            ),
            Self::SqliteOnce(statement) => Ok(statement
                .query_map(params, |row| f(&Row::Sqlite(row)))?
                .collect()),
            Self::Postgres { session, statement } => {
                let values = pg_params(statement, params)?;
                let rows =
                    session.in_transaction(session.client.query(statement, &pg_refs(&values)))?;
                Ok(rows.iter().map(|row| f(&Row::Postgres(row))).collect())
            }
        })?;
        Ok(rows.into_iter())
    }
}

/// Parameters, as rusqlite takes them: `params![a, b]`, `[a]` (one type), `[]`.
pub trait Params {
    fn with<R>(self, f: impl FnOnce(&[&dyn ToSql]) -> R) -> R;
}

impl Params for [&(dyn ToSql + Send + Sync); 0] {
    fn with<R>(self, f: impl FnOnce(&[&dyn ToSql]) -> R) -> R {
        f(&[])
    }
}

impl Params for &[&dyn ToSql] {
    fn with<R>(self, f: impl FnOnce(&[&dyn ToSql]) -> R) -> R {
        f(self)
    }
}

macro_rules! array_params {
    ($($n:literal)*) => {$(
        impl<T: ToSql> Params for [T; $n] {
            fn with<R>(self, f: impl FnOnce(&[&dyn ToSql]) -> R) -> R {
                let refs: [&dyn ToSql; $n] = std::array::from_fn(|i| &self[i] as &dyn ToSql);
                f(&refs)
            }
        }
    )*};
}
array_params!(1 2 3 4 5 6 7 8);

/// A result row.
#[derive(Debug)]
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a tokio_postgres::Row),
}

/// A column's place in a row (a number, as the store's SQL selects columns).
pub trait ColumnIndex {
    fn position(self) -> usize;
}

impl ColumnIndex for usize {
    fn position(self) -> usize {
        self
    }
}

impl Row<'_> {
    /// Column `index` as `T`.
    pub fn get<I: ColumnIndex, T: FromSql>(&self, index: I) -> Result<T> {
        let index = index.position();
        match self {
            Self::Sqlite(row) => row.get(index),
            Self::Postgres(row) => {
                let value = pg_value(row, index)?;
                let value = ValueRef::from(&value);
                T::column_result(value).map_err(|err| match err {
                    rusqlite::types::FromSqlError::InvalidType => {
                        rusqlite::Error::InvalidColumnType(
                            index,
                            row.columns()[index].name().to_owned(),
                            value.data_type(),
                        )
                    }
                    other => rusqlite::Error::FromSqlConversionFailure(
                        index,
                        value.data_type(),
                        Box::new(other),
                    ),
                })
            }
        }
    }
}
