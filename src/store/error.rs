//! What a failed store request means ([`StoreError`]), whether it failed for want of
//! storage (a full disk, an I/O error: `/readyz` reports it and deliveries get 503), and
//! [`Trouble`], which remembers that between requests.

use std::sync::Arc;

/// A database request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(Arc<rusqlite::Error>),
    #[error("the database writer has stopped")]
    Closed,
    #[error("the database is unreachable: {0}")]
    Unavailable(String),
    #[error("the database could not start a transaction; see the log")]
    NotRun,
    #[error("the database rolled the transaction back (disk full? I/O error?); see the log")]
    RolledBack,
    #[error(
        "the database could not be synced to disk ({0}); deployhook refuses further writes \
         until it is restarted"
    )]
    SyncFailed(Arc<std::io::Error>),
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Sqlite(Arc::new(err))
    }
}

impl StoreError {
    /// Whether the database could not store what it was asked to: the disk is full, an I/O
    /// error, a read-only file, or a transaction rolled back whole for one of those.
    pub fn is_storage_failure(&self) -> bool {
        use rusqlite::ErrorCode::{
            CannotOpen, DatabaseCorrupt, DiskFull, NotADatabase, ReadOnly, SystemIoFailure,
        };
        match self {
            Self::Sqlite(err) if super::postgres::is_unavailable(err) => true,
            Self::Sqlite(err) => matches!(
                err.sqlite_error_code(),
                Some(
                    DiskFull
                        | SystemIoFailure
                        | ReadOnly
                        | CannotOpen
                        | DatabaseCorrupt
                        | NotADatabase
                )
            ),
            Self::RolledBack | Self::SyncFailed(_) | Self::NotRun | Self::Unavailable(_) => true,
            Self::Closed => false,
        }
    }
}

/// Whether the latest write failed because the database could not store it (disk full,
/// I/O error, read-only file), and why. A write that succeeds clears it.
#[derive(Debug, Default)]
pub(super) struct Trouble {
    failing: std::sync::atomic::AtomicBool,
    why: std::sync::Mutex<String>,
}

impl Trouble {
    /// Why writes fail, while they do.
    pub(super) fn current(&self) -> Option<String> {
        self.failing
            .load(std::sync::atomic::Ordering::Relaxed)
            .then(|| self.why.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    pub(super) fn note<R>(&self, result: &Result<R, StoreError>) {
        use std::sync::atomic::Ordering;
        match result {
            Ok(_) => {
                // One load per write on the common path; the store only when it changes.
                if self.failing.load(Ordering::Relaxed) {
                    self.failing.store(false, Ordering::Relaxed);
                }
            }
            Err(err) if err.is_storage_failure() => {
                *self.why.lock().unwrap_or_else(|e| e.into_inner()) = err.to_string();
                self.failing.store(true, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }
}
