//! What a failed verification may do besides reporting `failure`: roll back. The seam is
//! here, in `deploy/`, and implemented where rollbacks are recorded (`web::admin`), so that
//! the deploy worker needs no web code and the rollback is the operator's very own.

use crate::model::DeployJob;
use crate::store::db::Connection;

/// Records the rollback a failed verification asks for, inside the transaction that
/// records the failure. Implemented where rollbacks are recorded (`web::admin`), so that
/// an automatic rollback is the very one an operator's is: decision, deployment, lock,
/// notification and audit line.
pub trait RollBackOnFailure: std::fmt::Debug + Send + Sync {
    /// Rolls `job`'s repository and environment back from `job` (already recorded as
    /// failed): `Ok(Ok(short sha))` rolled back to, or `Ok(Err(why))` nothing to roll back to.
    fn roll_back(
        &self,
        conn: &Connection,
        job: &DeployJob,
        now: i64,
    ) -> rusqlite::Result<Result<String, String>>;
}
