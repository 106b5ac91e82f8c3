//! `invite-sql`: the [`invite_core::Store`] on SQL databases, through sqlx.
//!
//! | store | feature | atomic accept | bulk insert | outbox claim |
//! |---|---|---|---|---|
//! | [`SqliteStore`] | `sqlite` (default) | conditional `UPDATE ... RETURNING` | multi-row `INSERT` batches | `UPDATE ... RETURNING` under one writer + lease |
//! | [`PostgresStore`] | `postgres` | conditional `UPDATE ... RETURNING` | text `COPY` per batch under a savepoint; on a unique violation, that batch again as one static `INSERT ... SELECT FROM UNNEST ... ON CONFLICT DO NOTHING` (small calls: `UNNEST` only) | `FOR UPDATE SKIP LOCKED` + lease |
//! | [`MySqlStore`] | `mysql` | one round trip: `CALL` of a stored procedure running the conditional `UPDATE` + affected rows, then a read of the final row | multi-row `INSERT` batches after a read of the open keys | `FOR UPDATE SKIP LOCKED` + lease |
//!
//! Every store runs the core's conformance suite unchanged (`tests/`). Tables are
//! created by embedded migrations (`migrate()`), one folder per dialect, tracked in
//! `invite_migrations` so they never mix with the host's own sqlx migrations; a host
//! whose schema already has an `invite_`-prefixed table can choose another prefix with
//! `with_table_prefix`.
//!
//! Column types are the same on every dialect (see `rows.rs`): 16-byte UUIDs,
//! instants as microseconds since the Unix epoch, SHA-256 token hashes as 32 bytes.
//!
//! # Features
//!
//! - `sqlite` (default): [`SqliteStore`], SQLite bundled (nothing to install).
//! - `postgres`: [`PostgresStore`], PostgreSQL (tested on 15).
//! - `mysql`: [`MySqlStore`], MySQL 8 or MariaDB 10.6+ (tested on MariaDB 10.11); keyed
//!   text columns are `VARBINARY` there, because `utf8mb4_bin` pads trailing spaces.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod filter;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod group_links;
#[cfg(any(feature = "postgres", feature = "mysql"))]
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
mod prefix;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod retry;
mod rows;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod spread;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod suppressions;

#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub use mysql::MySqlStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PostgresStore;
pub use prefix::InvalidPrefix;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::SqliteStore;
pub use sqlx;
