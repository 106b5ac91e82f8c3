//! The suppression statements, one SQL text for every dialect but the upsert clause
//! and the select list, built over `QueryBuilder` (each dialect's placeholders).
//!
//! A row per tenant, case-folded address and source (`SuppressedBy`'s text): a
//! bounce's own row is added and deleted without touching another's, and a lift
//! deletes every row of the address.

use invite_core::{Suppression, TenantId};
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::prefix::TablePrefix;
use crate::rows::micros;

/// The upsert clause of SQLite and PostgreSQL: a new suppression of a key by the same
/// source replaces that source's stored address, reason and time.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const ON_CONFLICT_REPLACE: &str = " ON CONFLICT (tenant, email_key, source) DO UPDATE \
     SET email = excluded.email, reason = excluded.reason, \
     suppressed_at = excluded.suppressed_at";

/// `INSERT` of `suppression`, then the dialect's `on_conflict` clause.
pub(crate) fn upsert<DB>(
    prefix: &TablePrefix,
    suppression: &Suppression,
    on_conflict: &'static str,
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> String: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(
        prefix
            .apply(
                "INSERT INTO invite_suppressions (tenant, email_key, source, email, reason, \
                 suppressed_at) VALUES (",
            )
            .0
            .into_owned(),
    );
    let mut values = q.separated(", ");
    values
        .push_bind(suppression.tenant.as_str())
        .push_bind(suppression.email.key())
        .push_bind(suppression.source.to_string())
        .push_bind(suppression.email.as_str())
        .push_bind(suppression.reason.as_str())
        .push_bind(micros(suppression.at));
    q.push(")").push(on_conflict);
    q
}

/// `SELECT <select_list>` of `tenant`'s suppressions of `keys` (at most
/// [`crate::rows::SUPPRESSION_KEYS_PER_QUERY`] of them per statement).
pub(crate) fn lookup<DB>(
    prefix: &TablePrefix,
    select_list: &'static str,
    tenant: &TenantId,
    keys: &[&str],
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new("SELECT ");
    q.push(select_list)
        .push(prefix.apply(" FROM invite_suppressions WHERE tenant = ").0)
        .push_bind(tenant.as_str())
        .push(" AND email_key IN (");
    let mut list = q.separated(", ");
    for key in keys {
        list.push_bind(*key);
    }
    q.push(")");
    q
}

/// What [`lookup`]s found, one per address key (the first by
/// [`Suppression::newer_first`], as every store picks), in key order.
pub(crate) fn one_per_key(mut found: Vec<Suppression>) -> Vec<Suppression> {
    found.sort_by(|a, b| {
        a.email
            .key()
            .cmp(b.email.key())
            .then_with(|| a.newer_first(b))
    });
    // `dedup_by` keeps the first of each run: the latest.
    found.dedup_by(|a, b| a.email.key() == b.email.key());
    found
}

/// `DELETE` of `suppression`'s own row (address and source) only while it has its
/// reason and time (`Store::unsuppress_if_same`).
pub(crate) fn delete_if_same<DB>(
    prefix: &TablePrefix,
    suppression: &Suppression,
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> String: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
{
    let mut q = delete::<DB>(prefix, &suppression.tenant, suppression.email.key());
    q.push(" AND source = ")
        .push_bind(suppression.source.to_string())
        .push(" AND reason = ")
        .push_bind(suppression.reason.as_str())
        // MySQL's `utf8mb4_bin` ignores trailing spaces in `=`: the lengths tell
        // "550 bounced " from "550 bounced" there (and cost nothing elsewhere).
        .push(" AND OCTET_LENGTH(reason) = ")
        .push_bind(i64::try_from(suppression.reason.len()).unwrap_or(i64::MAX))
        .push(" AND suppressed_at = ")
        .push_bind(micros(suppression.at));
    q
}

/// `DELETE` of `tenant`'s suppression of `key`: every row of it.
pub(crate) fn delete<DB>(prefix: &TablePrefix, tenant: &TenantId, key: &str) -> QueryBuilder<DB>
where
    DB: Database,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(
        prefix
            .apply("DELETE FROM invite_suppressions WHERE tenant = ")
            .0
            .into_owned(),
    );
    q.push_bind(tenant.as_str())
        .push(" AND email_key = ")
        .push_bind(key);
    q
}
