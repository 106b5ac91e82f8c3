//! Mapping sqlx errors to the core's `StoreError` by classified kind and SQLSTATE,
//! never by message text (sqlx 0.9 appends the server's source line to messages).

use invite_core::StoreError;

/// A row that does not map back to the domain: a bug or a hand-edited table.
#[derive(Debug, thiserror::Error)]
#[error("corrupt {table} row: {what}")]
pub(crate) struct CorruptRow {
    pub(crate) table: &'static str,
    pub(crate) what: String,
}

pub(crate) fn corrupt(table: &'static str, what: impl Into<String>) -> StoreError {
    StoreError::backend(CorruptRow {
        table,
        what: what.into(),
    })
}

/// A write of one row by its key: done, or (no row affected) the row is gone or its
/// condition no longer holds.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) fn exactly_one(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}

/// `Ok` if a statement changed any row, else [`StoreError::NotFound`].
pub(crate) fn at_least_one(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected > 0 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}

/// SQLSTATE 40001: PostgreSQL's `serialization_failure` (the losing side of a race
/// under REPEATABLE READ or SERIALIZABLE) and InnoDB's deadlock victim. For the
/// conditional writes of this crate it means "someone else changed the row first",
/// which is a conflict, not an outage.
const SERIALIZATION_FAILURE: &str = "40001";

/// SQLSTATE 40P01: PostgreSQL's `deadlock_detected`. `PostgresStore` takes its
/// rows in one order (invitation, then its outbox entries), but a host's own
/// transactions over these tables, or a future statement that gets the order wrong,
/// can still close a cycle; the victim's transaction is rolled back whole, exactly as
/// after a 40001, so it is the same lost race.
const DEADLOCK_DETECTED: &str = "40P01";

/// Whether `code` names the losing side of a race (see the two constants above).
fn is_lost_race_code(code: Option<&str>) -> bool {
    matches!(code, Some(SERIALIZATION_FAILURE | DEADLOCK_DETECTED))
}

pub(crate) fn from_sqlx(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict("a record with the same unique key exists".into())
        }
        sqlx::Error::Database(db) if is_lost_race_code(db.code().as_deref()) => {
            StoreError::Conflict("a concurrent change won".into())
        }
        _ => StoreError::backend(error),
    }
}

/// For a conditional write whose contract answers [`StoreError::NotFound`] when its
/// condition does not hold (accept, join, compare-and-set): a lost race (SQLSTATE 40001,
/// e.g. under a host's `REPEATABLE READ` default, or 40P01) means the condition no longer holds,
/// so it is `NotFound` — the visitor's "invalid or expired" — not an outage. Every other
/// error maps as in [`from_sqlx`].
#[cfg(feature = "postgres")]
pub(crate) fn from_sqlx_conditional(error: sqlx::Error) -> StoreError {
    if is_serialization_failure(&error) {
        StoreError::NotFound
    } else {
        from_sqlx(error)
    }
}

/// Whether `error` is SQLSTATE 40001 or 40P01: the losing side of a race (PostgreSQL's
/// serialization failure or deadlock victim, InnoDB's deadlock victim), after which the
/// whole transaction was rolled back and may be retried from the start.
#[cfg_attr(not(any(feature = "mysql", feature = "postgres")), allow(dead_code))]
pub(crate) fn is_serialization_failure(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if is_lost_race_code(db.code().as_deref()))
}

/// Whether `error` is a unique-key violation (classified by sqlx, not by message).
#[cfg(any(feature = "mysql", feature = "postgres"))]
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
