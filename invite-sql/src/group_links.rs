//! The group-link writes, one SQL text for every dialect: `QueryBuilder` writes each
//! dialect's placeholders (`?` or `$n`), and the table prefix is applied as everywhere
//! else. Each store runs the statement on its own executor and keeps its own error
//! classification.

use invite_core::{GroupLink, StoreError};
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::error::from_sqlx;
use crate::prefix::TablePrefix;
use crate::rows::GroupLinkCols;

/// `INSERT` of every column of `link`.
pub(crate) fn insert<DB>(prefix: &TablePrefix, link: &GroupLink) -> QueryBuilder<DB>
where
    DB: Database,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    for<'a> bool: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'a> Option<i64>: Encode<'a, DB> + Type<DB>,
    for<'a> String: Encode<'a, DB> + Type<DB>,
{
    let c = GroupLinkCols::of(link);
    let mut q = QueryBuilder::new(
        prefix
            .apply(
                "INSERT INTO invite_group_links (tenant, role, enabled, token_hash, version, \
                 revision, expires_at, max_uses, uses, allowed_domains, updated_by, created_at, \
                 updated_at) VALUES (",
            )
            .0
            .into_owned(),
    );
    let mut values = q.separated(", ");
    values
        .push_bind(c.tenant)
        .push_bind(c.role)
        .push_bind(c.enabled)
        .push_bind(c.token_hash)
        .push_bind(c.version)
        .push_bind(c.revision)
        .push_bind(c.expires_at)
        .push_bind(c.max_uses)
        .push_bind(c.uses)
        .push_bind(c.allowed_domains)
        .push_bind(c.updated_by)
        .push_bind(c.created_at)
        .push_bind(c.updated_at);
    q.push(")");
    q
}

/// What a failed [`insert`] means: a link for that role exists, or the store's error.
pub(crate) fn insert_error(link: &GroupLink, error: sqlx::Error) -> StoreError {
    match from_sqlx(error) {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("a group link for role {} exists", link.role))
        }
        other => other,
    }
}

/// `UPDATE` of `link`'s settings if its stored revision is `expected_revision`. A new
/// token (a version change) resets the use count. `uses` is assigned before `version`:
/// MySQL evaluates `SET` left to right, so the `CASE` still sees the stored version
/// there, as it always does on PostgreSQL and SQLite.
pub(crate) fn update<DB>(
    prefix: &TablePrefix,
    link: &GroupLink,
    expected_revision: u32,
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    for<'a> bool: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'a> Option<i64>: Encode<'a, DB> + Type<DB>,
    for<'a> String: Encode<'a, DB> + Type<DB>,
{
    let c = GroupLinkCols::of(link);
    let mut q = QueryBuilder::new(
        prefix
            .apply("UPDATE invite_group_links SET enabled = ")
            .0
            .into_owned(),
    );
    q.push_bind(c.enabled)
        .push(", token_hash = ")
        .push_bind(c.token_hash)
        .push(", uses = CASE WHEN version = ")
        .push_bind(c.version)
        .push(" THEN uses ELSE ")
        .push_bind(c.uses)
        .push(" END, version = ")
        .push_bind(c.version)
        .push(", revision = ")
        .push_bind(c.revision)
        .push(", expires_at = ")
        .push_bind(c.expires_at)
        .push(", max_uses = ")
        .push_bind(c.max_uses)
        .push(", allowed_domains = ")
        .push_bind(c.allowed_domains)
        .push(", updated_by = ")
        .push_bind(c.updated_by)
        .push(", updated_at = ")
        .push_bind(c.updated_at)
        .push(" WHERE tenant = ")
        .push_bind(c.tenant)
        .push(" AND role = ")
        .push_bind(c.role)
        .push(" AND revision = ")
        .push_bind(i64::from(expected_revision));
    q
}
