//! Where deployhook keeps its state, as `DEPLOYHOOK_DATABASE` (or `--database`) names it: a
//! SQLite file's path or a PostgreSQL URL. [`DatabaseLocation`] is the one way the setting
//! travels from the command line to the store, and its `Display` and `Debug` never show a
//! password, so no log line, error or `/readyz` answer that prints it can leak one.
//!
//! Anything else is refused here, at the edge, naming what it is and never echoing the
//! value: a libpq keyword string (`host=… user=… password=…`) or another scheme's URL
//! (`mysql://u:pw@h/db`) would otherwise be taken as a SQLite file name — a file named
//! after the password, or an error quoting it.
//!
//! libpq keyword strings are refused rather than translated: deployhook's TLS settings
//! (`sslmode=verify-full`, `sslrootcert`, read by `store::postgres::tls`) and the password's
//! masking are read from the URL's syntax; a second syntax with its own quoting rules
//! (`password='a b\'c'`) would be a second place for either to go wrong, and the URL says
//! everything the keyword string can.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// `DEPLOYHOOK_DATABASE` checked: a SQLite path or a PostgreSQL URL. Shown (`Display`,
/// `Debug`) with its password masked; [`DatabaseLocation::expose_secret`] gives the value
/// to connect with.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseLocation(String);

/// Why a `DEPLOYHOOK_DATABASE` value was refused. The messages never hold the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDatabase {
    #[error(
        "DEPLOYHOOK_DATABASE is empty: give a SQLite file's path (deployhook.db) or a \
         PostgreSQL URL ({URL_FORM})"
    )]
    Empty,
    #[error(
        "DEPLOYHOOK_DATABASE is a libpq keyword string ({keys}): deployhook takes PostgreSQL \
         settings as a URL only, {URL_FORM}?sslmode=verify-full (percent-encode @ : / ? & in \
         the password); it is not taken as a SQLite file's name either"
    )]
    KeywordString {
        /// The keywords found, `host=, user=, …`: never their values.
        keys: String,
    },
    #[error(
        "DEPLOYHOOK_DATABASE is a {scheme}:// URL, which deployhook cannot use: it keeps its \
         state in PostgreSQL ({URL_FORM}) or in a SQLite file{hint}"
    )]
    Scheme {
        scheme: String,
        /// What to write instead, for a scheme that meant SQLite.
        hint: &'static str,
    },
    #[error("{shown} is a PostgreSQL URL, where a SQLite file's path was expected")]
    NotSqlite {
        /// The URL, its password masked.
        shown: String,
    },
}

/// The URL form the messages show.
const URL_FORM: &str = "postgres://USER:PASSWORD@HOST:PORT/DBNAME";
/// Longest scheme named in a message: a longer "scheme" is not one.
const MAX_SCHEME_CHARS: usize = 32;
/// libpq's connection keywords (PostgreSQL 17's list): a value holding one of them followed
/// by `=`, at its start or after a space, is a keyword string.
const LIBPQ_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "require_auth",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "sslnegotiation",
    "requiressl",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
];

impl DatabaseLocation {
    /// Checks `value`: a PostgreSQL URL (`postgres://`, `postgresql://`), else a SQLite
    /// path (`:memory:` included) that is neither a keyword string nor another scheme's URL.
    pub fn parse(value: &str) -> Result<Self, InvalidDatabase> {
        if value.trim().is_empty() {
            return Err(InvalidDatabase::Empty);
        }
        if is_postgres(value) {
            return Ok(Self(value.to_owned()));
        }
        if let Some(scheme) = scheme(value) {
            let hint = match scheme.to_ascii_lowercase().as_str() {
                "sqlite" | "sqlite3" | "file" => {
                    ": for SQLite give the file's path itself, without the scheme"
                }
                "postgres" | "postgresql" => ": write the scheme in lower case",
                _ => "",
            };
            return Err(InvalidDatabase::Scheme {
                scheme: scheme.to_owned(),
                hint,
            });
        }
        let keys = keywords(value);
        if !keys.is_empty() {
            return Err(InvalidDatabase::KeywordString {
                keys: keys.join(", "),
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// Whether this is a PostgreSQL URL rather than a SQLite path.
    pub fn is_postgres(&self) -> bool {
        is_postgres(&self.0)
    }

    /// The value itself, password included: for connecting, never for showing.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl FromStr for DatabaseLocation {
    type Err = InvalidDatabase;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

impl fmt::Display for DatabaseLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.is_postgres() {
            true => f.write_str(&redact(&self.0)),
            false => f.write_str(&self.0),
        }
    }
}

impl fmt::Debug for DatabaseLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseLocation")
            .field(&self.to_string())
            .finish()
    }
}

/// Checks that a SQLite file may be opened at `path`: refuses a PostgreSQL URL (the store
/// connects to those instead) and whatever [`DatabaseLocation::parse`] refuses, so that no
/// URL or keyword string becomes a file's name or a message quoting its password.
pub fn check_sqlite_path(path: &str) -> Result<(), InvalidDatabase> {
    match DatabaseLocation::parse(path)? {
        location if location.is_postgres() => Err(InvalidDatabase::NotSqlite {
            shown: location.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Whether `database` names a PostgreSQL database (`postgres://…`, `postgresql://…`), the
/// prefixes tokio-postgres reads, rather than a SQLite file.
pub fn is_postgres(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// The scheme of a `scheme://…` value (RFC 3986's letters), if it is one.
fn scheme(value: &str) -> Option<&str> {
    let (scheme, _) = value.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first.is_ascii_alphabetic() && rest_ok && scheme.len() <= MAX_SCHEME_CHARS).then_some(scheme)
}

/// The libpq keywords `value` assigns (`host=`, `password =`…), in order, each once.
fn keywords(value: &str) -> Vec<String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let mut found: Vec<String> = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let (key, assigns) = match word.split_once('=') {
            Some((key, _)) => (key, true),
            // `host = x`: the `=` is the next word's start.
            None => (*word, words.get(i + 1).is_some_and(|w| w.starts_with('='))),
        };
        let shown = format!("{key}=");
        if assigns && LIBPQ_KEYWORDS.contains(&key) && !found.contains(&shown) {
            found.push(shown);
        }
    }
    found
}

/// `url` with every password in it replaced by `***`: in the credentials and in any query
/// parameter whose name, percent-decoded, mentions `password` (`password`, `pass%77ord`,
/// `sslpassword`). A generated password may hold `@`, `/` or `?` unescaped, so the URL is
/// read both ways it can be — the credentials ending at the first `@` (as tokio-postgres
/// reads them) and at the last (as the writer most likely meant) — and what is a password
/// in either reading is masked. A value that is not a URL is returned as it is.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let mut masked = passwords(rest);
    masked.sort_by_key(|range| (range.start, range.end));
    let mut shown = format!("{scheme}://");
    let mut copied = 0;
    let mut ranges = masked.into_iter().peekable();
    while let Some(mut range) = ranges.next() {
        // Overlapping or touching ranges are one password: one `***`.
        while let Some(next) = ranges.next_if(|next| next.start <= range.end) {
            range.end = range.end.max(next.end);
        }
        shown.push_str(&rest[copied..range.start.max(copied)]);
        shown.push_str("***");
        copied = copied.max(range.end);
    }
    shown.push_str(&rest[copied..]);
    shown
}

/// Where passwords may be in `rest` (the URL after `scheme://`), in every reading.
fn passwords(rest: &str) -> Vec<Range<usize>> {
    let mut ranges = query_passwords(rest, 0);
    let ats = [rest.find('@'), rest.rfind('@')];
    for at in ats.into_iter().flatten() {
        if let Some(colon) = rest[..at].find(':') {
            ranges.push(colon + 1..at);
        }
        ranges.extend(query_passwords(rest, at + 1));
    }
    ranges
}

/// The values of the password parameters of the query that starts at the first `?` from
/// `from` on.
fn query_passwords(rest: &str, from: usize) -> Vec<Range<usize>> {
    let Some(question) = rest[from..].find('?') else {
        return Vec::new();
    };
    let mut start = from + question + 1;
    let mut ranges = Vec::new();
    for pair in rest[start..].split('&') {
        if let Some((key, value)) = pair.split_once('=')
            && percent_decoded(key)
                .to_ascii_lowercase()
                .contains("password")
        {
            let value_start = start + key.len() + 1;
            ranges.push(value_start..value_start + value.len());
        }
        start += pair.len() + 1;
    }
    ranges
}

/// `%XX` escapes decoded (lossily: only to recognise a name).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
