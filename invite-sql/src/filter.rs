//! The SQL form of `InvitationFilter::matches`, shared by every dialect: effective
//! statuses judged at `now` ("pending" excludes pending rows past their expiry,
//! "expired" includes them), batch and role.

use invite_core::{InvitationFilter, InvitationStatus, TenantId};
use sqlx::{Database, Encode, QueryBuilder, Type};
use time::OffsetDateTime;

use crate::rows::micros;

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
