//! Row <-> domain mapping shared by the dialects.
//!
//! Every dialect uses the same portable column types, so one mapping serves all:
//! ids are 16-byte UUIDs, instants are microseconds since the Unix epoch (exact integer
//! comparisons, and what `invite_core::SystemClock` produces), token hashes are 32
//! bytes, JSON is text, counters are 64-bit integers, flags are booleans.

use invite_core::{
    ActorId, BatchId, EmailAddress, EmailRules, GroupJoin, GroupLink, GroupLinkSettings,
    Invitation, InvitationId, Names, OutboxEntry, OutboxId, Role, StoreError, SuppressedBy,
    Suppression, TenantId, TokenHash, UserId,
};
use sqlx::{ColumnIndex, Database, Decode, Row, Type};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::error::corrupt;

/// The invitation columns, in the order [`InvitationCols`] binds them.
pub(crate) const INVITATION_COLUMNS: &str = "id, tenant, email, email_key, role, first_name, last_name, message, metadata, invited_by, batch_id, status, token_hash, ttl_seconds, created_at, sent_at, delivered_at, expires_at, accepted_at, accepted_by, revoked_at, revoked_by, last_error, version";
/// How many there are (bind budget per row).
pub(crate) const INVITATION_COLUMN_COUNT: usize = 24;

/// The outbox columns, in the order [`OutboxCols`] binds them.
pub(crate) const OUTBOX_COLUMNS: &str = "id, tenant, invitation_id, kind, state, attempts, next_attempt_at, claimed_until, last_error, created_at";
pub(crate) const OUTBOX_COLUMN_COUNT: usize = 10;

#[cfg_attr(not(feature = "sqlite"), allow(dead_code))] // MySQL selects its own
pub(crate) const GROUP_LINK_COLUMNS: &str = "tenant, role, enabled, token_hash, version, revision, expires_at, max_uses, uses, allowed_domains, updated_by, created_at, updated_at";
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))] // MySQL selects its own
pub(crate) const GROUP_JOIN_COLUMNS: &str = "tenant, role, user_id, link_version, email, joined_at";

pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    // Saturates only for instants beyond ±292,000 years, which no clock produces.
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// A span in whole microseconds, as instants are stored (saturating; never negative).
pub(crate) fn span_micros(d: Duration) -> i64 {
    i64::try_from(d.whole_microseconds().max(0)).unwrap_or(i64::MAX)
}

pub(crate) fn opt_micros(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(micros)
}

fn instant(table: &'static str, us: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .map_err(|e| corrupt(table, format!("instant {us}: {e}")))
}

fn opt_instant(table: &'static str, us: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    us.map(|us| instant(table, us)).transpose()
}

fn count(table: &'static str, n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| corrupt(table, format!("counter {n} out of range")))
}

fn uuid(table: &'static str, bytes: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes).map_err(|e| corrupt(table, format!("id: {e}")))
}

fn hash(table: &'static str, bytes: &[u8]) -> Result<TokenHash, StoreError> {
    TokenHash::from_slice(bytes).ok_or_else(|| corrupt(table, "token hash is not 32 bytes"))
}

fn id<T>(table: &'static str, value: Result<T, invite_core::InvalidId>) -> Result<T, StoreError> {
    value.map_err(|e| corrupt(table, e.to_string()))
}

fn email(table: &'static str, s: &str) -> Result<EmailAddress, StoreError> {
    // Permissive: an address valid under any tenant's rules when stored reloads.
    EmailAddress::parse_with(s, &EmailRules::permissive())
        .map_err(|e| corrupt(table, format!("email {s:?}: {e}")))
}

/// An invitation's address from its stored normal form and key, as written from a
/// validated [`EmailAddress`]: rebuilt with a cheap shape check instead of a full
/// re-validation on every row read (see [`EmailAddress::from_stored`]).
fn stored_email(table: &'static str, normal: &str, key: &str) -> Result<EmailAddress, StoreError> {
    EmailAddress::from_stored(normal, key)
        .ok_or_else(|| corrupt(table, format!("email {normal:?} with key {key:?}")))
}

/// Bindable columns of an invitation, borrowed from it.
pub(crate) struct InvitationCols<'a> {
    pub(crate) id: &'a [u8],
    pub(crate) tenant: &'a str,
    pub(crate) email: &'a str,
    pub(crate) email_key: &'a str,
    pub(crate) role: &'a str,
    pub(crate) first_name: Option<&'a str>,
    pub(crate) last_name: Option<&'a str>,
    pub(crate) message: Option<&'a str>,
    pub(crate) metadata: Option<String>,
    pub(crate) invited_by: &'a str,
    pub(crate) batch_id: Option<&'a [u8]>,
    pub(crate) status: &'static str,
    pub(crate) token_hash: Option<&'a [u8]>,
    pub(crate) ttl_seconds: i64,
    pub(crate) created_at: i64,
    pub(crate) sent_at: Option<i64>,
    pub(crate) delivered_at: Option<i64>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) accepted_at: Option<i64>,
    pub(crate) accepted_by: Option<&'a str>,
    pub(crate) revoked_at: Option<i64>,
    pub(crate) revoked_by: Option<&'a str>,
    pub(crate) last_error: Option<&'a str>,
    pub(crate) version: i64,
}

impl<'a> InvitationCols<'a> {
    pub(crate) fn of(i: &'a Invitation) -> Self {
        Self {
            id: i.id.as_uuid().as_bytes(),
            tenant: i.tenant.as_str(),
            email: i.email.as_str(),
            email_key: i.email.key(),
            role: i.role.as_str(),
            first_name: i.names.first.as_deref(),
            last_name: i.names.last.as_deref(),
            message: i.message.as_deref(),
            metadata: i.metadata.as_ref().map(serde_json::Value::to_string),
            invited_by: i.invited_by.as_str(),
            batch_id: i.batch.as_ref().map(|b| b.as_uuid().as_bytes().as_slice()),
            status: i.status.as_str(),
            token_hash: i.token_hash.as_ref().map(|h| h.as_bytes().as_slice()),
            ttl_seconds: i.ttl.whole_seconds(),
            created_at: micros(i.created_at),
            sent_at: opt_micros(i.sent_at),
            delivered_at: opt_micros(i.delivered_at),
            expires_at: opt_micros(i.expires_at),
            accepted_at: opt_micros(i.accepted_at),
            accepted_by: i.accepted_by.as_ref().map(UserId::as_str),
            revoked_at: opt_micros(i.revoked_at),
            revoked_by: i.revoked_by.as_ref().map(ActorId::as_str),
            last_error: i.last_error.as_deref(),
            version: i64::from(i.version),
        }
    }
}

/// Bindable columns of an outbox entry.
pub(crate) struct OutboxCols<'a> {
    pub(crate) id: &'a [u8],
    pub(crate) tenant: &'a str,
    pub(crate) invitation_id: &'a [u8],
    pub(crate) kind: &'static str,
    pub(crate) state: &'static str,
    pub(crate) attempts: i64,
    pub(crate) next_attempt_at: i64,
    pub(crate) claimed_until: Option<i64>,
    pub(crate) last_error: Option<&'a str>,
    pub(crate) created_at: i64,
}

impl<'a> OutboxCols<'a> {
    pub(crate) fn of(e: &'a OutboxEntry) -> Self {
        Self {
            id: e.id.as_uuid().as_bytes(),
            tenant: e.tenant.as_str(),
            invitation_id: e.invitation.as_uuid().as_bytes(),
            kind: e.kind.as_str(),
            state: e.state.as_str(),
            attempts: i64::from(e.attempts),
            next_attempt_at: micros(e.next_attempt_at),
            claimed_until: opt_micros(e.claimed_until),
            last_error: e.last_error.as_deref(),
            created_at: micros(e.created_at),
        }
    }
}

/// Bindable columns of a group link.
pub(crate) struct GroupLinkCols<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) role: &'a str,
    pub(crate) enabled: bool,
    pub(crate) token_hash: &'a [u8],
    pub(crate) version: i64,
    pub(crate) revision: i64,
    pub(crate) expires_at: Option<i64>,
    pub(crate) max_uses: Option<i64>,
    pub(crate) uses: i64,
    pub(crate) allowed_domains: String,
    pub(crate) updated_by: &'a str,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

impl<'a> GroupLinkCols<'a> {
    pub(crate) fn of(l: &'a GroupLink) -> Self {
        Self {
            tenant: l.tenant.as_str(),
            role: l.role.as_str(),
            enabled: l.enabled,
            token_hash: l.token_hash.as_bytes(),
            version: i64::from(l.version),
            revision: i64::from(l.revision),
            expires_at: opt_micros(l.settings.expires_at),
            max_uses: l.settings.max_uses.map(i64::from),
            uses: i64::from(l.uses),
            allowed_domains: serde_json::Value::from(l.settings.allowed_domains.clone())
                .to_string(),
            updated_by: l.updated_by.as_str(),
            created_at: micros(l.created_at),
            updated_at: micros(l.updated_at),
        }
    }
}

macro_rules! get {
    ($row:expr, $table:expr, $col:literal, $ty:ty) => {
        $row.try_get::<$ty, _>($col)
            .map_err(|e| corrupt($table, format!("column {}: {e}", $col)))?
    };
}

/// Binds an invitation's columns, in [`INVITATION_COLUMNS`] order, as one row of a
/// multi-row `INSERT` (`QueryBuilder::push_values`). A macro rather than a function
/// because each database's binds carry their own `Encode` bounds.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
macro_rules! push_invitation_row {
    ($row:expr, $invitation:expr) => {{
        let c = $crate::rows::InvitationCols::of($invitation);
        $row.push_bind(c.id)
            .push_bind(c.tenant)
            .push_bind(c.email)
            .push_bind(c.email_key)
            .push_bind(c.role)
            .push_bind(c.first_name)
            .push_bind(c.last_name)
            .push_bind(c.message)
            .push_bind(c.metadata)
            .push_bind(c.invited_by)
            .push_bind(c.batch_id)
            .push_bind(c.status)
            .push_bind(c.token_hash)
            .push_bind(c.ttl_seconds)
            .push_bind(c.created_at)
            .push_bind(c.sent_at)
            .push_bind(c.delivered_at)
            .push_bind(c.expires_at)
            .push_bind(c.accepted_at)
            .push_bind(c.accepted_by)
            .push_bind(c.revoked_at)
            .push_bind(c.revoked_by)
            .push_bind(c.last_error)
            .push_bind(c.version);
    }};
}
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) use push_invitation_row;

/// Maps a row selected with [`INVITATION_COLUMNS`].
pub(crate) fn invitation<R>(row: &R) -> Result<Invitation, StoreError>
where
    R: Row,
    <R as Row>::Database: Database,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r [u8]: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r str: ColumnIndex<R>,
{
    const T: &str = "invitations";
    let metadata = get!(row, T, "metadata", Option<&str>)
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| corrupt(T, format!("metadata: {e}")))?;
    Ok(Invitation {
        id: InvitationId::from_uuid(uuid(T, get!(row, T, "id", &[u8]))?),
        tenant: id(T, TenantId::new(get!(row, T, "tenant", &str)))?,
        email: stored_email(
            T,
            get!(row, T, "email", &str),
            get!(row, T, "email_key", &str),
        )?,
        role: id(T, Role::new(get!(row, T, "role", &str)))?,
        names: Names {
            first: get!(row, T, "first_name", Option<&str>).map(str::to_owned),
            last: get!(row, T, "last_name", Option<&str>).map(str::to_owned),
        },
        message: get!(row, T, "message", Option<&str>).map(str::to_owned),
        metadata,
        invited_by: id(T, ActorId::new(get!(row, T, "invited_by", &str)))?,
        batch: get!(row, T, "batch_id", Option<&[u8]>)
            .map(|b| uuid(T, b).map(BatchId::from_uuid))
            .transpose()?,
        status: get!(row, T, "status", &str)
            .parse()
            .map_err(|e| corrupt(T, format!("{e}")))?,
        token_hash: get!(row, T, "token_hash", Option<&[u8]>)
            .map(|h| hash(T, h))
            .transpose()?,
        ttl: Duration::seconds(get!(row, T, "ttl_seconds", i64)),
        created_at: instant(T, get!(row, T, "created_at", i64))?,
        sent_at: opt_instant(T, get!(row, T, "sent_at", Option<i64>))?,
        delivered_at: opt_instant(T, get!(row, T, "delivered_at", Option<i64>))?,
        expires_at: opt_instant(T, get!(row, T, "expires_at", Option<i64>))?,
        accepted_at: opt_instant(T, get!(row, T, "accepted_at", Option<i64>))?,
        accepted_by: get!(row, T, "accepted_by", Option<&str>)
            .map(|u| id(T, UserId::new(u)))
            .transpose()?,
        revoked_at: opt_instant(T, get!(row, T, "revoked_at", Option<i64>))?,
        revoked_by: get!(row, T, "revoked_by", Option<&str>)
            .map(|u| id(T, ActorId::new(u)))
            .transpose()?,
        last_error: get!(row, T, "last_error", Option<&str>).map(str::to_owned),
        version: count(T, get!(row, T, "version", i64))?,
    })
}

/// Maps a row selected with [`OUTBOX_COLUMNS`].
pub(crate) fn outbox<R>(row: &R) -> Result<OutboxEntry, StoreError>
where
    R: Row,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r [u8]: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r str: ColumnIndex<R>,
{
    const T: &str = "outbox";
    Ok(OutboxEntry {
        id: OutboxId::from_uuid(uuid(T, get!(row, T, "id", &[u8]))?),
        tenant: id(T, TenantId::new(get!(row, T, "tenant", &str)))?,
        invitation: InvitationId::from_uuid(uuid(T, get!(row, T, "invitation_id", &[u8]))?),
        kind: get!(row, T, "kind", &str)
            .parse()
            .map_err(|e| corrupt(T, format!("{e}")))?,
        state: get!(row, T, "state", &str)
            .parse()
            .map_err(|e| corrupt(T, format!("{e}")))?,
        attempts: count(T, get!(row, T, "attempts", i64))?,
        next_attempt_at: instant(T, get!(row, T, "next_attempt_at", i64))?,
        claimed_until: opt_instant(T, get!(row, T, "claimed_until", Option<i64>))?,
        last_error: get!(row, T, "last_error", Option<&str>).map(str::to_owned),
        created_at: instant(T, get!(row, T, "created_at", i64))?,
    })
}

/// Maps a row selected with [`GROUP_LINK_COLUMNS`].
pub(crate) fn group_link<R>(row: &R) -> Result<GroupLink, StoreError>
where
    R: Row,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r [u8]: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r str: ColumnIndex<R>,
{
    const T: &str = "group_links";
    let allowed_domains: Vec<String> = serde_json::from_str(get!(row, T, "allowed_domains", &str))
        .map_err(|e| corrupt(T, format!("allowed_domains: {e}")))?;
    Ok(GroupLink {
        tenant: id(T, TenantId::new(get!(row, T, "tenant", &str)))?,
        role: id(T, Role::new(get!(row, T, "role", &str)))?,
        enabled: get!(row, T, "enabled", bool),
        token_hash: hash(T, get!(row, T, "token_hash", &[u8]))?,
        version: count(T, get!(row, T, "version", i64))?,
        revision: count(T, get!(row, T, "revision", i64))?,
        settings: GroupLinkSettings {
            expires_at: opt_instant(T, get!(row, T, "expires_at", Option<i64>))?,
            max_uses: get!(row, T, "max_uses", Option<i64>)
                .map(|n| count(T, n))
                .transpose()?,
            allowed_domains,
        },
        uses: count(T, get!(row, T, "uses", i64))?,
        updated_by: id(T, ActorId::new(get!(row, T, "updated_by", &str)))?,
        created_at: instant(T, get!(row, T, "created_at", i64))?,
        updated_at: instant(T, get!(row, T, "updated_at", i64))?,
    })
}

/// Maps a row selected with [`GROUP_JOIN_COLUMNS`].
pub(crate) fn group_join<R>(row: &R) -> Result<GroupJoin, StoreError>
where
    R: Row,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r str: ColumnIndex<R>,
{
    const T: &str = "group_joins";
    Ok(GroupJoin {
        tenant: id(T, TenantId::new(get!(row, T, "tenant", &str)))?,
        role: id(T, Role::new(get!(row, T, "role", &str)))?,
        user: id(T, UserId::new(get!(row, T, "user_id", &str)))?,
        link_version: count(T, get!(row, T, "link_version", i64))?,
        email: email(T, get!(row, T, "email", &str))?,
        joined_at: instant(T, get!(row, T, "joined_at", i64))?,
    })
}

/// Maps a row selected as `tenant, email, reason, suppressed_at`.
pub(crate) fn suppression<R>(row: &R) -> Result<Suppression, StoreError>
where
    R: Row,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r str: ColumnIndex<R>,
{
    const T: &str = "suppressions";
    Ok(Suppression {
        tenant: id(T, TenantId::new(get!(row, T, "tenant", &str)))?,
        email: email(T, get!(row, T, "email", &str))?,
        reason: get!(row, T, "reason", &str).to_owned(),
        at: instant(T, get!(row, T, "suppressed_at", i64))?,
        source: {
            let text = get!(row, T, "source", &str);
            SuppressedBy::parse(text).ok_or_else(|| corrupt(T, format!("source {text:?}")))?
        },
    })
}

/// Keys per `IN (...)` list when reading suppressions: well under every dialect's bind
/// limit.
pub(crate) const SUPPRESSION_KEYS_PER_QUERY: usize = 1000;
