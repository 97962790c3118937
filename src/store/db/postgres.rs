//! One PostgreSQL transaction behind a [`Connection`](super::Connection): the pooled
//! connection and its pending `BEGIN`, the store's SQL rewritten for PostgreSQL (`?N` as
//! `$N`, SQLite's index hints left out), SQLite's values encoded as the types the server
//! inferred and read back, and PostgreSQL's errors carried in rusqlite's error type.

use std::borrow::Cow;
use std::error::Error as StdError;

use rusqlite::types::{ToSqlOutput, Value};
use tokio_postgres::types::{IsNull, Type};

use super::{Result, ToSql};

/// One pooled PostgreSQL connection, with the runtime that drives it.
pub struct PgSession {
    pub(in crate::store) client: deadpool_postgres::Object,
    pub(in crate::store) runtime: tokio::runtime::Handle,
    /// The `BEGIN` not sent yet: it goes out with the transaction's first statement, in
    /// the same round trip (tokio-postgres pipelines requests on a connection).
    pub(in crate::store) begin: std::sync::Mutex<Option<&'static str>>,
}

impl std::fmt::Debug for PgSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgSession")
    }
}

impl PgSession {
    pub(in crate::store) fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Runs `request` (a statement of the transaction), preceded by the pending `BEGIN`.
    pub(super) fn in_transaction<T>(
        &self,
        request: impl Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    ) -> Result<T> {
        let begin = self
            .begin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match begin {
            None => self.block_on(request).map_err(pg_error),
            Some(begin) => self.block_on(async {
                let (begun, answer) = tokio::join!(self.client.batch_execute(begin), request);
                begun.map_err(pg_error)?;
                answer.map_err(pg_error)
            }),
        }
    }

    /// Whether a statement ran (and so a transaction is open).
    pub(in crate::store) fn begun(&self) -> bool {
        self.begin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none()
    }

    pub(super) fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement> {
        let sql = placeholders(sql);
        self.block_on(self.client.prepare_cached(&sql))
            .map_err(pg_error)
    }
}

/// Column `index` of a PostgreSQL row in SQLite's value model.
pub(super) fn pg_value(row: &tokio_postgres::Row, index: usize) -> Result<Value> {
    let column = row
        .columns()
        .get(index)
        .ok_or(rusqlite::Error::InvalidColumnIndex(index))?;
    let failed = |err: tokio_postgres::Error| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Null, Box::new(err))
    };
    let ty = column.type_();
    let value = if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(index)
            .map_err(failed)?
            .map(Value::Integer)
    } else if *ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(index)
            .map_err(failed)?
            .map(|v| Value::Integer(v.into()))
    } else if *ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(index)
            .map_err(failed)?
            .map(|v| Value::Integer(v.into()))
    } else if *ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(index)
            .map_err(failed)?
            .map(|v| Value::Integer(v.into()))
    } else if *ty == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(index)
            .map_err(failed)?
            .map(Value::Real)
    } else if *ty == Type::FLOAT4 {
        row.try_get::<_, Option<f32>>(index)
            .map_err(failed)?
            .map(|v| Value::Real(v.into()))
    } else if *ty == Type::BYTEA {
        row.try_get::<_, Option<Vec<u8>>>(index)
            .map_err(failed)?
            .map(Value::Blob)
    } else if *ty == Type::NUMERIC {
        // SUM() and AVG() of integers: the store's SQL casts them, so this is a bug there.
        return Err(rusqlite::Error::InvalidColumnType(
            index,
            format!(
                "{} (NUMERIC: cast it to BIGINT or DOUBLE PRECISION)",
                column.name()
            ),
            rusqlite::types::Type::Null,
        ));
    } else {
        // TEXT, VARCHAR, NAME and anything else that reads as a string.
        row.try_get::<_, Option<String>>(index)
            .map_err(failed)?
            .map(Value::Text)
    };
    Ok(value.unwrap_or(Value::Null))
}

/// The store's SQL as PostgreSQL takes it: `?N` (SQLite) as `$N`, a bare `?` numbered
/// next, and SQLite's index hints (`INDEXED BY name`, which pin SQLite's plans) left out.
/// Quoted text is left alone.
fn placeholders(sql: &str) -> Cow<'_, str> {
    const HINT: &str = "INDEXED BY ";
    if !sql.contains('?') && !sql.contains(HINT) {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quoted = false;
    let mut next = 1;
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        if !quoted && rest.starts_with(HINT) {
            let name = rest[HINT.len()..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len() - HINT.len());
            rest = &rest[HINT.len() + name..];
            if out.ends_with(' ') {
                rest = rest.strip_prefix(' ').unwrap_or(rest);
            }
            continue;
        }
        rest = &rest[c.len_utf8()..];
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                out.push('$');
                let digits = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                if digits > 0 {
                    out.push_str(&rest[..digits]);
                    rest = &rest[digits..];
                } else {
                    out.push_str(&next.to_string());
                    next += 1;
                }
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A value on its way to PostgreSQL, encoded as whatever type the server inferred for its
/// place (an integer in a BIGINT or BOOLEAN column, text in a TEXT or JSONB one).
#[derive(Debug)]
pub(super) struct PgParam(Value);

impl tokio_postgres::types::ToSql for PgParam {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match &self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(v) => {
                if *ty == Type::INT8 {
                    encode(v, ty, out)
                } else if *ty == Type::INT4 {
                    encode(i32::try_from(*v)?, ty, out)
                } else if *ty == Type::INT2 {
                    encode(i16::try_from(*v)?, ty, out)
                } else if *ty == Type::BOOL {
                    encode(*v != 0, ty, out)
                } else if *ty == Type::FLOAT8 {
                    #[allow(clippy::cast_precision_loss)]
                    encode(*v as f64, ty, out)
                } else {
                    encode(v.to_string(), ty, out)
                }
            }
            Value::Real(v) => encode(v, ty, out),
            Value::Text(v) => {
                if *ty == Type::JSONB {
                    // JSONB's binary form: a version byte, then the text.
                    out.extend_from_slice(&[1]);
                    out.extend_from_slice(v.as_bytes());
                    Ok(IsNull::No)
                } else if *ty == Type::INT8 {
                    encode(v.parse::<i64>()?, ty, out)
                } else {
                    encode(v.as_str(), ty, out)
                }
            }
            Value::Blob(v) => encode(v.as_slice(), ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Encodes `value` with tokio-postgres's own encoding for `ty`.
fn encode<T: tokio_postgres::types::ToSql>(
    value: T,
    ty: &Type,
    out: &mut tokio_postgres::types::private::BytesMut,
) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
    value.to_sql(ty, out)
}

pub(super) fn pg_params(
    statement: &tokio_postgres::Statement,
    params: &[&dyn ToSql],
) -> Result<Vec<PgParam>> {
    if statement.params().len() != params.len() {
        return Err(rusqlite::Error::InvalidParameterCount(
            params.len(),
            statement.params().len(),
        ));
    }
    params
        .iter()
        .map(|param| {
            Ok(PgParam(match param.to_sql()? {
                ToSqlOutput::Borrowed(value) => Value::try_from(value)
                    .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?,
                ToSqlOutput::Owned(value) => value,
                other => {
                    return Err(rusqlite::Error::ToSqlConversionFailure(
                        format!("unsupported value for PostgreSQL: {other:?}").into(),
                    ));
                }
            }))
        })
        .collect()
}

pub(super) fn pg_refs(values: &[PgParam]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    values
        .iter()
        .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// A PostgreSQL error, carried in rusqlite's error type (as a conversion failure, the one
/// variant that holds any error) so the store's functions keep one signature on both
/// engines.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe(.0))]
pub struct PgError(#[source] pub tokio_postgres::Error);

/// PostgreSQL's message with its SQLSTATE, or the connection error and its cause.
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match err.source() {
            Some(cause) => format!("{err}: {cause}"),
            None => err.to_string(),
        },
    }
}

pub(in crate::store) fn pg_error(err: tokio_postgres::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(PgError(err)))
}

/// The PostgreSQL error inside `err`, if it came from PostgreSQL.
pub fn as_pg(err: &rusqlite::Error) -> Option<&tokio_postgres::Error> {
    match err {
        rusqlite::Error::ToSqlConversionFailure(inner) => {
            inner.downcast_ref::<PgError>().map(|e| &e.0)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_numbered_for_postgres_outside_quotes() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE b = ?1 AND c = ?12 AND d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c = $12 AND d = '?'"
        );
        assert_eq!(placeholders("VALUES (?, ?)"), "VALUES ($1, $2)");
        assert_eq!(placeholders("SELECT 1"), "SELECT 1");
        assert_eq!(
            placeholders("SELECT id FROM outbox INDEXED BY outbox_due WHERE a = ?1"),
            "SELECT id FROM outbox WHERE a = $1"
        );
    }
}
