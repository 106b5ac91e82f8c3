//! Transactions that lose a race run again: [`Failure`], what one attempt ended with,
//! and [`retrying!`], the loop, for the server stores (PostgreSQL, MySQL).
//!
//! A deadlock victim or a serialization failure (SQLSTATE 40P01 / 40001, InnoDB's
//! deadlock) was rolled back whole, so running it again is safe: each single statement
//! run again is a compare-and-set, and each transaction is built again from its inputs
//! (a bulk create's report too); it then sees what the winner wrote.

use invite_core::StoreError;

use crate::error::{from_sqlx, is_serialization_failure};

/// How many times a transaction that lost a race runs before its error is answered.
pub(crate) const MAX_ATTEMPTS: u32 = 5;

/// Why one attempt at a transaction failed: the database said no (maybe a lost race,
/// worth another attempt), or the answer is already decided.
#[derive(Debug)]
pub(crate) enum Failure {
    Sql(sqlx::Error),
    /// A race lost that the database reports as something else: a unique violation
    /// where the check before the write could not see the winner's row yet.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Race(sqlx::Error),
    /// A race lost that only the store's own reading shows (a row it was told of was
    /// gone when it looked): run again; this error if every attempt loses.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Stale(StoreError),
    Store(StoreError),
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        Self::Sql(error)
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl Failure {
    /// `error`, a unique violation counted as a lost race.
    #[cfg(feature = "postgres")]
    pub(crate) fn unique_is_race(error: sqlx::Error) -> Self {
        if crate::error::is_unique_violation(&error) {
            Self::Race(error)
        } else {
            Self::Sql(error)
        }
    }

    pub(crate) fn is_lost_race(&self) -> bool {
        match self {
            Self::Sql(e) => is_serialization_failure(e),
            Self::Race(_) | Self::Stale(_) => true,
            Self::Store(_) => false,
        }
    }

    pub(crate) fn into_store(self) -> StoreError {
        match self {
            Self::Sql(e) | Self::Race(e) => from_sqlx(e),
            Self::Stale(e) | Self::Store(e) => e,
        }
    }

    /// For operations whose condition another writer can take (a token, the last use,
    /// a lease), a race still lost after every attempt means the condition did not
    /// hold: `NotFound`.
    pub(crate) fn lost_race_is_not_found(self) -> StoreError {
        if self.is_lost_race() {
            StoreError::NotFound
        } else {
            self.into_store()
        }
    }
}

/// Runs `$attempt` (a future of `Result<_, Failure>`, made again each time) while it
/// loses a race, at most [`MAX_ATTEMPTS`] times in all.
macro_rules! retrying {
    ($attempt:expr) => {{
        let mut tries = 1;
        loop {
            match $attempt.await {
                Err(f) if f.is_lost_race() && tries < $crate::retry::MAX_ATTEMPTS => tries += 1,
                done => break done,
            }
        }
    }};
}

pub(crate) use retrying;
