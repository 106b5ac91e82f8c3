//! The SQL form of `InvitationFilter::matches`, shared by every dialect: effective
//! statuses judged at `now` ("pending" excludes pending rows past their expiry,
//! "expired" includes them), batch and role.

use invite_core::{
    Invitation, InvitationFilter, InvitationStatus, Page, PageRequest, StoreError, TenantId,
};
use sqlx::{Database, Encode, QueryBuilder, Type};
use time::OffsetDateTime;

use crate::error::corrupt;
use crate::prefix::TablePrefix;
use crate::rows::micros;

/// One page of `tenant`'s invitations matching `filter`, in id order:
/// `SELECT <select_list> FROM <invitations> WHERE ... ORDER BY id LIMIT ?`, and the
/// limit it asks for (for [`page`]).
pub(crate) fn list<DB>(
    prefix: &TablePrefix,
    select_list: &'static str,
    tenant: &TenantId,
    filter: &InvitationFilter,
    page: PageRequest,
    now: OffsetDateTime,
) -> (QueryBuilder<DB>, u32)
where
    DB: Database,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'static str: Encode<'q, DB> + Type<DB>,
{
    let limit = page.clamped_limit();
    let mut q = QueryBuilder::new("SELECT ");
    q.push(select_list)
        .push(prefix.apply(" FROM invite_invitations").0);
    push_where(&mut q, tenant, filter, now);
    if let Some(after) = page.after {
        q.push(" AND id > ")
            .push_bind(after.as_uuid().as_bytes().to_vec());
    }
    q.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
    (q, limit)
}

/// The page [`list`] read: a next page when it came back full.
pub(crate) fn page(items: Vec<Invitation>, request: PageRequest, limit: u32) -> Page<Invitation> {
    let next = (items.len() == limit as usize).then(|| PageRequest {
        after: items.last().map(|i| i.id),
        limit: request.limit,
    });
    Page { items, next }
}

/// `SELECT COUNT(*)` of `tenant`'s invitations matching `filter`.
pub(crate) fn count<DB>(
    prefix: &TablePrefix,
    tenant: &TenantId,
    filter: &InvitationFilter,
    now: OffsetDateTime,
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'static str: Encode<'q, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(
        prefix
            .apply("SELECT COUNT(*) FROM invite_invitations")
            .0
            .into_owned(),
    );
    push_where(&mut q, tenant, filter, now);
    q
}

/// A [`count`]'s answer.
pub(crate) fn counted(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| corrupt("invitations", "negative count"))
}

/// Appends ` WHERE tenant = ? AND ...` for `filter` to `q`.
pub(crate) fn push_where<DB>(
    q: &mut QueryBuilder<DB>,
    tenant: &TenantId,
    filter: &InvitationFilter,
    now: OffsetDateTime,
) where
    DB: Database,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'static str: Encode<'q, DB> + Type<DB>,
{
    q.push(" WHERE tenant = ")
        .push_bind(tenant.as_str().to_owned());
    if let Some(batch) = filter.batch {
        q.push(" AND batch_id = ")
            .push_bind(batch.as_uuid().as_bytes().to_vec());
    }
    if let Some(role) = &filter.role {
        q.push(" AND role = ").push_bind(role.as_str().to_owned());
    }
    if !filter.statuses.is_empty() {
        let now = micros(now);
        q.push(" AND (");
        for (n, status) in filter.statuses.iter().enumerate() {
            if n > 0 {
                q.push(" OR ");
            }
            match status {
                InvitationStatus::Pending => {
                    q.push("(status = 'pending' AND (expires_at IS NULL OR expires_at > ")
                        .push_bind(now)
                        .push("))");
                }
                InvitationStatus::Expired => {
                    q.push("status = 'expired' OR (status = 'pending' AND expires_at <= ")
                        .push_bind(now)
                        .push(")");
                }
                other => {
                    q.push("status = ").push_bind(other.as_str());
                }
            }
        }
        q.push(")");
    }
}
