//! `invite-sql`: the [`invite_core::Store`] on SQL databases, through sqlx.
//!
//! | store | feature | atomic accept | bulk insert | outbox claim |
//! |---|---|---|---|---|
//! | [`SqliteStore`] | `sqlite` (default) | conditional `UPDATE ... RETURNING` | multi-row `INSERT` batches | `UPDATE ... RETURNING` under one writer + lease |
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
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod prefix;
mod rows;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use prefix::InvalidPrefix;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::SqliteStore;
pub use sqlx;
