//! PostgreSQL store. Accept is one conditional `UPDATE ... RETURNING`; bulk insert is a
//! text `COPY` per batch under a savepoint, falling back to one static `UNNEST ... ON
//! CONFLICT DO NOTHING` statement per batch when an address is already open; outbox
//! claims use `FOR UPDATE SKIP LOCKED`.
//!
//! Bulk create decides in-call duplicates in Rust (the first open input of an address
//! wins), then streams each batch with `COPY` (the common case: nothing conflicts, at
//! `COPY`'s rate). A unique violation (SQLSTATE 23505, classified by sqlx) rolls back to
//! the batch's savepoint and re-inserts that batch with the `UNNEST` statement, whose
//! `ON CONFLICT` names the partial unique index on open invitations, so each refused
//! input is reported with the id of the open invitation that holds its address. Calls
//! under [`COPY_MIN_ROWS`] rows go straight to the `UNNEST` statement (one round trip, no
//! savepoint).
//!
//! Every guarantee holds across processes: the conditions live in the statements, so N
//! app instances on N pools need no coordination beyond the database's row locks.
//! Multi-statement operations run in transactions pinned to `READ COMMITTED`, whatever
//! the host's `default_transaction_isolation`: their "insert, then re-read the row that
//! won" steps need each statement to see what committed before it. Single-statement
//! conditional writes (accept, compare-and-set) run under the session's level; under
//! `REPEATABLE READ` one that waited for any other writer of its row fails with SQLSTATE
//! 40001, and is run again with a fresh snapshot (a few times, `retry.rs`) before it
//! is answered as [`StoreError::NotFound`] like any other unmet condition. A bulk
//! create that loses a race (a deadlock with another bulk create, 40P01) runs again
//! whole, in a new transaction.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

use async_trait::async_trait;
use invite_core::{
    CreateReport, DeliveryOutcome, GroupJoin, GroupLink, Invitation, InvitationFilter,
    InvitationId, InvitationStatus, InvitationWrite, JoinOutcome, OutboxClaim, OutboxEntry,
    OutboxId, Page, PageRequest, Role, Store, StoreError, Suppression, TenantId, TokenHash,
    Transition, TransitionReport, UserId,
};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{AssertSqlSafe, PgConnection, Postgres, QueryBuilder};
use time::{Duration, OffsetDateTime};

use crate::error::{
    at_least_one, corrupt, exactly_one, from_sqlx, from_sqlx_conditional, is_unique_violation,
};
use crate::filter;
use crate::group_links;
use crate::prefix::{InvalidPrefix, TablePrefix};
use crate::retry::{Failure, retrying};
use crate::rows::{
    self, GROUP_JOIN_COLUMNS, GROUP_LINK_COLUMNS, INVITATION_COLUMN_COUNT, INVITATION_COLUMNS,
    InvitationCols, OUTBOX_COLUMN_COUNT, OUTBOX_COLUMNS, OutboxCols, micros, span_micros,
};
use crate::spread;
use crate::suppressions;

/// `INVITATION_COLUMNS` as a `RETURNING` list (a literal, so statements stay static).
macro_rules! invitation_columns {
    () => {
        "id, tenant, email, email_key, role, first_name, last_name, message, metadata, invited_by, batch_id, status, token_hash, ttl_seconds, created_at, sent_at, delivered_at, expires_at, accepted_at, accepted_by, revoked_at, revoked_by, last_error, version"
    };
}

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Rows per bulk `INSERT ... SELECT FROM UNNEST` statement. Each column is one array
/// bind, so PostgreSQL's 65,535-bind limit never applies; the batch bounds the size of
/// one message (~3 MB at 300 bytes a row) and the memory of the column arrays.
const BATCH_ROWS: usize = 8_192;

/// Calls (and outbox lists) smaller than this skip `COPY`: the `UNNEST` statement is one
/// round trip, where `COPY` under a savepoint takes four.
const COPY_MIN_ROWS: usize = 64;

/// Rows per `COPY` batch, the unit of work redone through `UNNEST` after a conflict.
const COPY_BATCH_ROWS: usize = 16_384;

/// At most this many `COPY` batches (so savepoints) per call: larger calls get larger
/// batches. Each batch is a subtransaction that writes, and PostgreSQL caches at most
/// 64 subtransaction ids per backend before every other session's snapshots slow down.
const MAX_COPY_BATCHES: usize = 32;

/// `COPY` text is sent in chunks of about this many bytes, so the client builds the next
/// chunk while the server parses the last, and memory stays bounded.
const COPY_CHUNK_BYTES: usize = 256 * 1024;

/// Room for the row that crosses [`COPY_CHUNK_BYTES`].
const COPY_ROW_SLACK: usize = 4 * 1024;

/// Text format (tab-separated, `\N` for NULL), columns in `rows.rs` order.
const COPY_INVITATIONS: &str = concat!(
    "COPY invite_invitations (",
    invitation_columns!(),
    ") FROM STDIN"
);

const COPY_OUTBOX: &str = "COPY invite_outbox (id, tenant, invitation_id, kind, state, attempts, next_attempt_at, claimed_until, last_error, created_at) FROM STDIN";

/// One statement per batch, the same text for every batch (prepared once per
/// connection). `ON CONFLICT` names the partial unique index on open invitations, so an
/// address already open (or opened earlier in the same call) is skipped, not an error;
/// `RETURNING id` tells which rows went in.
const INSERT_INVITATIONS: &str = "INSERT INTO invite_invitations (id, tenant, email, email_key, role, first_name, last_name, message, metadata, invited_by, batch_id, status, token_hash, ttl_seconds, created_at, sent_at, delivered_at, expires_at, accepted_at, accepted_by, revoked_at, revoked_by, last_error, version) \
     SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bytea[], $12::text[], $13::bytea[], $14::int8[], $15::int8[], $16::int8[], $17::int8[], $18::int8[], $19::int8[], $20::text[], $21::int8[], $22::text[], $23::text[], $24::int8[]) \
     ON CONFLICT (tenant, email_key) WHERE status IN ('unsent', 'pending') DO NOTHING \
     RETURNING id";

const INSERT_OUTBOX: &str = "INSERT INTO invite_outbox (id, tenant, invitation_id, kind, state, attempts, next_attempt_at, claimed_until, last_error, created_at) \
     SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::int8[], $9::text[], $10::int8[])";

fn is_open(status: InvitationStatus) -> bool {
    matches!(status, InvitationStatus::Unsent | InvitationStatus::Pending)
}

/// How many array parameters (`[]`) a statement has.
const fn array_params(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i + 1 < bytes.len() {
        if bytes[i] == b'[' && bytes[i + 1] == b']' {
            n += 1;
        }
        i += 1;
    }
    n
}

// The UNNEST inserts take one array per column, in `rows.rs` order.
const _: () = assert!(array_params(INSERT_INVITATIONS) == INVITATION_COLUMN_COUNT);
const _: () = assert!(array_params(INSERT_OUTBOX) == OUTBOX_COLUMN_COUNT);

/// An [`invite_core::Store`] on PostgreSQL (tested on 15).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use invite_sql::PostgresStore;
///
/// let store = PostgresStore::connect("postgres://app@localhost/app").await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
///
/// Or on the host's own pool, with another table prefix:
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use invite_sql::PostgresStore;
///
/// let store = PostgresStore::new(pool).with_table_prefix("acme_")?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    prefix: TablePrefix,
}

impl PostgresStore {
    /// A store on the host's pool. Tables are found through the connections'
    /// `search_path`, like the host's own.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            prefix: TablePrefix::default(),
        }
    }

    /// Connects a pool with sqlx's defaults to `url` (`postgres://user@host/db`).
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        Ok(Self::new(PgPool::connect(url).await?))
    }

    /// Uses `prefix` instead of `invite_` for every table and index, for hosts whose
    /// schema already has an `invitations` table. Lowercase ASCII letters, digits and
    /// `_`, starting with a letter, at most 32 bytes.
    pub fn with_table_prefix(mut self, prefix: &str) -> Result<Self, InvalidPrefix> {
        self.prefix = TablePrefix::new(prefix)?;
        Ok(self)
    }

    /// The pool every statement goes through.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The embedded migrations, with this store's table prefix, tracked in
    /// `<prefix>migrations` so they never mix with the host's own sqlx migrations.
    pub fn migrator(&self) -> Migrator {
        self.prefix.migrator(&MIGRATOR)
    }

    /// Applies the embedded migrations that are not applied yet (under sqlx's advisory
    /// lock, so concurrent app instances may all call it at start-up).
    pub async fn migrate(&self) -> Result<(), MigrateError> {
        self.migrator().run(&self.pool).await
    }

    fn sql(&self, text: &'static str) -> AssertSqlSafe<Cow<'static, str>> {
        self.prefix.apply(text)
    }

    fn builder(&self, text: &'static str) -> QueryBuilder<Postgres> {
        QueryBuilder::new(self.sql(text).0.into_owned())
    }

    /// A transaction at `READ COMMITTED` (see the module docs).
    /// One attempt of `record_transitions`, in its own transaction.
    async fn try_record(
        &self,
        tenant: &TenantId,
        transitions: &[Transition],
    ) -> Result<TransitionReport, Failure> {
        let mut tx = self.begin().await?;
        let mut applied = vec![false; transitions.len()];
        for index in Transition::apply_order(transitions) {
            let t = &transitions[index];
            let i = &t.invitation;
            if !t.is_for(tenant) {
                continue;
            }
            let c = InvitationCols::of(i);
            let opens = matches!(
                i.status,
                InvitationStatus::Unsent | InvitationStatus::Pending
            );
            // The compare-and-set and the cancelling of the invitation's queued emails
            // in one statement; the new email (if any) is queued after it.
            let written: bool = sqlx::query_scalar(self.sql(
                "WITH t AS ( \
                   UPDATE invite_invitations SET status = $1, token_hash = $2, sent_at = $3, \
                   delivered_at = $4, expires_at = $5, accepted_at = $6, accepted_by = $7, \
                   revoked_at = $8, revoked_by = $9, last_error = $10, version = $11 \
                   WHERE tenant = $12 AND id = $13 AND version = $14 \
                   AND (NOT $15 OR NOT EXISTS (SELECT 1 FROM invite_invitations o \
                        WHERE o.tenant = $12 AND o.email_key = $16 AND o.id <> $13 \
                        AND o.status IN ('unsent', 'pending'))) \
                   RETURNING id), \
                 c AS ( \
                   UPDATE invite_outbox SET state = 'cancelled', claimed_until = NULL \
                   WHERE tenant = $12 AND state = 'queued' AND invitation_id IN (SELECT id FROM t)) \
                 SELECT EXISTS (SELECT 1 FROM t)",
            ))
            .bind(c.status)
            .bind(c.token_hash)
            .bind(c.sent_at)
            .bind(c.delivered_at)
            .bind(c.expires_at)
            .bind(c.accepted_at)
            .bind(c.accepted_by)
            .bind(c.revoked_at)
            .bind(c.revoked_by)
            .bind(c.last_error)
            .bind(c.version)
            .bind(c.tenant)
            .bind(c.id)
            .bind(i64::from(t.expected_version))
            .bind(opens)
            .bind(c.email_key)
            .fetch_one(&mut *tx)
            .await
            .map_err(Failure::unique_is_race)?;
            if !written {
                continue;
            }
            if let Some(entry) = &t.outbox {
                self.insert_outbox(&mut tx, &[entry]).await?;
            }
            applied[index] = true;
        }
        tx.commit().await.map_err(Failure::unique_is_race)?;
        Ok(TransitionReport::from_applied(transitions, &applied))
    }

    /// One attempt at [`Store::accept`].
    async fn try_accept(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Invitation, Failure> {
        let row: Option<PgRow> = sqlx::query(self.sql(concat!(
            "UPDATE invite_invitations SET status = 'accepted', accepted_at = $1, accepted_by = $2, \
             version = version + 1 \
             WHERE tenant = $3 AND token_hash = $4 AND status = 'pending' \
             AND (expires_at IS NULL OR expires_at > $1) \
             RETURNING ",
            invitation_columns!()
        )))
        .bind(micros(now))
        .bind(user.as_str())
        .bind(tenant.as_str())
        .bind(token_hash.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        ?;
        Ok(rows::invitation(&row.ok_or(StoreError::NotFound)?)?)
    }

    /// One attempt at [`Store::update_group_link`].
    async fn try_update_group_link(
        &self,
        link: &GroupLink,
        expected_revision: u32,
    ) -> Result<(), Failure> {
        let result = group_links::update::<Postgres>(&self.prefix, link, expected_revision)
            .build()
            .execute(&self.pool)
            .await?;
        Ok(exactly_one(result.rows_affected())?)
    }

    /// One attempt at [`Store::create_invitations`], in its own transaction.
    async fn try_create(
        &self,
        tenant: &TenantId,
        writes: &[InvitationWrite],
    ) -> Result<CreateReport, Failure> {
        // In-call duplicates are decided in Rust, in input order, as rows are encoded:
        // the first open input of an address is a candidate, a later open one conflicts
        // with it (what the `UNNEST` statement's `ON CONFLICT` decides, and what the
        // other stores do). An input in a closed state never holds the open-address slot.
        let mut in_call = InCall::with_capacity(writes.len());
        let mut candidates: Vec<usize> = Vec::with_capacity(writes.len());
        let mut tx = self.begin().await?;
        // Candidates the database refused (an open invitation of the address exists),
        // in ascending order: batches run in order and each keeps its input order.
        let mut refused: Vec<usize> = Vec::new();
        if writes.len() < COPY_MIN_ROWS {
            for (index, write) in writes.iter().enumerate() {
                if in_call.admit(index, write) {
                    candidates.push(index);
                }
            }
            self.insert_invitations(&mut tx, writes, &candidates, &mut refused)
                .await?;
        } else {
            let batch_rows = COPY_BATCH_ROWS.max(writes.len().div_ceil(MAX_COPY_BATCHES));
            let mut buf = Vec::with_capacity(COPY_CHUNK_BYTES + COPY_ROW_SLACK);
            for from in (0..writes.len()).step_by(batch_rows) {
                let batch = from..writes.len().min(from + batch_rows);
                let first_candidate = candidates.len();
                sqlx::raw_sql("SAVEPOINT bulk_copy")
                    .execute(&mut *tx)
                    .await?;
                let copied = self
                    .copy_invitations(
                        &mut tx,
                        writes,
                        batch,
                        &mut in_call,
                        &mut candidates,
                        &mut buf,
                    )
                    .await;
                match copied {
                    Ok(()) => {
                        sqlx::raw_sql("RELEASE SAVEPOINT bulk_copy")
                            .execute(&mut *tx)
                            .await?;
                    }
                    // An address already open (committed by another call, or by one
                    // that committed while we waited on its index entry): undo this
                    // batch and let `ON CONFLICT` sort it row by row. Any other unique
                    // violation (a reused id or token hash) fails there again, as an
                    // error.
                    Err(e) if is_unique_violation(&e) => {
                        sqlx::raw_sql(
                            "ROLLBACK TO SAVEPOINT bulk_copy; RELEASE SAVEPOINT bulk_copy",
                        )
                        .execute(&mut *tx)
                        .await?;
                        self.insert_invitations(
                            &mut tx,
                            writes,
                            &candidates[first_candidate..],
                            &mut refused,
                        )
                        .await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let duplicates = in_call.duplicates;

        let mut report = CreateReport::default();
        let mut outbox: Vec<&OutboxEntry> = Vec::new();
        for &index in &candidates {
            if refused.binary_search(&index).is_err() {
                report.created.push(index);
                outbox.extend(writes[index].outbox.as_ref());
            }
        }
        if !refused.is_empty() || !duplicates.is_empty() {
            let mut existing: HashMap<String, InvitationId> = HashMap::new();
            if !refused.is_empty() {
                let keys: Vec<&str> = refused
                    .iter()
                    .map(|&i| writes[i].invitation.email.key())
                    .collect();
                // READ COMMITTED: this statement sees the rows that won the conflicts,
                // committed by others before our insert gave way to them.
                let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(self.sql(
                    "SELECT email_key, id FROM invite_invitations \
                     WHERE tenant = $1 AND status IN ('unsent', 'pending') AND email_key = ANY($2)",
                ))
                .bind(tenant.as_str())
                .bind(&keys)
                .fetch_all(&mut *tx)
                .await?;
                existing.reserve(rows.len());
                for (key, id) in rows {
                    let id = uuid::Uuid::from_slice(&id)
                        .map_err(|e| corrupt("invitations", e.to_string()))?;
                    existing.insert(key, InvitationId::from_uuid(id));
                }
            }
            let existing_id = |index: usize| {
                let write = &writes[index];
                existing
                    .get(write.invitation.email.key())
                    .copied()
                    .ok_or_else(|| {
                        Failure::Stale(StoreError::Conflict(format!(
                            "invitation {} was refused without a conflicting open invitation",
                            write.invitation.id
                        )))
                    })
            };
            for &index in &refused {
                report.conflicts.push((index, existing_id(index)?));
            }
            // A duplicate conflicts with what its address's first input met: the first
            // input itself if it went in, else the open invitation that refused it.
            for &(index, first) in &duplicates {
                let id = if refused.binary_search(&first).is_ok() {
                    existing_id(first)?
                } else {
                    writes[first].invitation.id
                };
                report.conflicts.push((index, id));
            }
            report.conflicts.sort_unstable_by_key(|&(index, _)| index);
        }
        if outbox.len() < COPY_MIN_ROWS {
            self.insert_outbox(&mut tx, &outbox).await?;
        } else {
            self.copy_outbox(&mut tx, &outbox).await?;
        }
        tx.commit().await?;
        Ok(report)
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(from_sqlx)
    }

    async fn invitations_by_id(
        &self,
        conn: &mut PgConnection,
        tenant: Option<&TenantId>,
        ids: &[InvitationId],
    ) -> Result<Vec<Invitation>, StoreError> {
        let ids: Vec<&[u8]> = ids
            .iter()
            .map(|i| i.as_uuid().as_bytes().as_slice())
            .collect();
        let rows: Vec<PgRow> = match tenant {
            Some(tenant) => sqlx::query(self.sql(concat!(
                "SELECT ",
                invitation_columns!(),
                " FROM invite_invitations WHERE tenant = $1 AND id = ANY($2)"
            )))
            .bind(tenant.as_str())
            .bind(ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?,
            None => sqlx::query(self.sql(concat!(
                "SELECT ",
                invitation_columns!(),
                " FROM invite_invitations WHERE id = ANY($1)"
            )))
            .bind(ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?,
        };
        rows.iter().map(rows::invitation).collect()
    }

    async fn insert_outbox(
        &self,
        conn: &mut PgConnection,
        entries: &[&OutboxEntry],
    ) -> Result<(), Failure> {
        for chunk in entries.chunks(BATCH_ROWS) {
            let mut cols = OutboxArrays::with_capacity(chunk.len());
            for entry in chunk {
                cols.push(OutboxCols::of(entry));
            }
            cols.bind(sqlx::query(self.sql(INSERT_OUTBOX)))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// The fallback (and small-call) path of bulk create: the inputs at `indexes` (into
    /// `writes`) through [`INSERT_INVITATIONS`], [`BATCH_ROWS`] at a time; the ones
    /// `ON CONFLICT` skipped are appended to `refused`, in input order.
    async fn insert_invitations(
        &self,
        conn: &mut PgConnection,
        writes: &[InvitationWrite],
        indexes: &[usize],
        refused: &mut Vec<usize>,
    ) -> Result<(), Failure> {
        for chunk in indexes.chunks(BATCH_ROWS) {
            let ids: Vec<Vec<u8>> = InvitationArrays::of(chunk.iter().map(|&i| &writes[i]))
                .bind(sqlx::query(self.sql(INSERT_INVITATIONS)))
                .try_map(|row: PgRow| sqlx::Row::try_get::<Vec<u8>, _>(&row, 0))
                .fetch_all(&mut *conn)
                .await?;
            if ids.len() == chunk.len() {
                continue;
            }
            let mut inserted: HashSet<[u8; 16]> = HashSet::with_capacity(ids.len());
            for id in ids {
                let id: [u8; 16] = id
                    .try_into()
                    .map_err(|_| corrupt("invitations", "id is not 16 bytes"))?;
                inserted.insert(id);
            }
            refused.extend(
                chunk
                    .iter()
                    .copied()
                    .filter(|&i| !inserted.contains(writes[i].invitation.id.as_uuid().as_bytes())),
            );
        }
        Ok(())
    }

    /// One `COPY` of the inputs in `batch` (a range of `writes`) into the invitations
    /// table, streamed in chunks of about [`COPY_CHUNK_BYTES`] built in `buf`. Each input
    /// goes through `in_call` first; the candidates are appended to `candidates` (all of
    /// them, whatever the outcome, unless the connection itself failed). Errors are
    /// sqlx's, unmapped, so the caller can tell a unique violation from the rest.
    async fn copy_invitations<'w>(
        &self,
        conn: &mut PgConnection,
        writes: &'w [InvitationWrite],
        batch: Range<usize>,
        in_call: &mut InCall<'w>,
        candidates: &mut Vec<usize>,
        buf: &mut Vec<u8>,
    ) -> Result<(), sqlx::Error> {
        let statement = self.sql(COPY_INVITATIONS);
        let mut copy = conn.copy_in_raw(&statement.0).await?;
        buf.clear();
        for (index, write) in writes[batch.clone()].iter().enumerate() {
            let index = batch.start + index;
            if !in_call.admit(index, write) {
                continue;
            }
            candidates.push(index);
            if let Err(e) = copy_text::invitation(buf, &write.invitation) {
                copy.abort("an invitation did not encode").await?;
                return Err(sqlx::Error::Encode(Box::new(e)));
            }
            if buf.len() >= COPY_CHUNK_BYTES {
                copy.send(buf.as_slice()).await?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            copy.send(buf.as_slice()).await?;
            buf.clear();
        }
        copy.finish().await?;
        Ok(())
    }

    /// One `COPY` of `entries` into the outbox (which has no key they could conflict on
    /// but their fresh ids).
    async fn copy_outbox(
        &self,
        conn: &mut PgConnection,
        entries: &[&OutboxEntry],
    ) -> Result<(), sqlx::Error> {
        let statement = self.sql(COPY_OUTBOX);
        let mut copy = conn.copy_in_raw(&statement.0).await?;
        let mut buf = Vec::with_capacity(COPY_CHUNK_BYTES + COPY_ROW_SLACK);
        for entry in entries {
            copy_text::outbox(&mut buf, &OutboxCols::of(entry));
            if buf.len() >= COPY_CHUNK_BYTES {
                copy.send(buf.as_slice()).await?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            copy.send(buf.as_slice()).await?;
        }
        copy.finish().await?;
        Ok(())
    }
}

/// Bulk create's in-call duplicates, decided in input order.
struct InCall<'w> {
    /// The first open input of each case-folded address.
    first_open: HashMap<&'w str, usize>,
    /// `(index, first)`: input `index` is a later open input of `first`'s address.
    duplicates: Vec<(usize, usize)>,
}

impl<'w> InCall<'w> {
    fn with_capacity(n: usize) -> Self {
        Self {
            first_open: HashMap::with_capacity(n),
            duplicates: Vec::new(),
        }
    }

    /// Whether input `index` is a candidate for insertion: not a later open input of an
    /// address an earlier input already holds.
    fn admit(&mut self, index: usize, write: &'w InvitationWrite) -> bool {
        if !is_open(write.invitation.status) {
            return true;
        }
        match self.first_open.entry(write.invitation.email.key()) {
            Entry::Occupied(first) => {
                self.duplicates.push((index, *first.get()));
                false
            }
            Entry::Vacant(slot) => {
                slot.insert(index);
                true
            }
        }
    }
}

/// The invitation columns of one batch, as the arrays [`INSERT_INVITATIONS`] unnests.
struct InvitationArrays<'a> {
    id: Vec<&'a [u8]>,
    tenant: Vec<&'a str>,
    email: Vec<&'a str>,
    email_key: Vec<&'a str>,
    role: Vec<&'a str>,
    first_name: Vec<Option<&'a str>>,
    last_name: Vec<Option<&'a str>>,
    message: Vec<Option<&'a str>>,
    metadata: Vec<Option<String>>,
    invited_by: Vec<&'a str>,
    batch_id: Vec<Option<&'a [u8]>>,
    status: Vec<&'static str>,
    token_hash: Vec<Option<&'a [u8]>>,
    ttl_seconds: Vec<i64>,
    created_at: Vec<i64>,
    sent_at: Vec<Option<i64>>,
    delivered_at: Vec<Option<i64>>,
    expires_at: Vec<Option<i64>>,
    accepted_at: Vec<Option<i64>>,
    accepted_by: Vec<Option<&'a str>>,
    revoked_at: Vec<Option<i64>>,
    revoked_by: Vec<Option<&'a str>>,
    last_error: Vec<Option<&'a str>>,
    version: Vec<i64>,
}

impl<'a> InvitationArrays<'a> {
    fn of(writes: impl ExactSizeIterator<Item = &'a InvitationWrite>) -> Self {
        let n = writes.len();
        let mut a = Self {
            id: Vec::with_capacity(n),
            tenant: Vec::with_capacity(n),
            email: Vec::with_capacity(n),
            email_key: Vec::with_capacity(n),
            role: Vec::with_capacity(n),
            first_name: Vec::with_capacity(n),
            last_name: Vec::with_capacity(n),
            message: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
            invited_by: Vec::with_capacity(n),
            batch_id: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            token_hash: Vec::with_capacity(n),
            ttl_seconds: Vec::with_capacity(n),
            created_at: Vec::with_capacity(n),
            sent_at: Vec::with_capacity(n),
            delivered_at: Vec::with_capacity(n),
            expires_at: Vec::with_capacity(n),
            accepted_at: Vec::with_capacity(n),
            accepted_by: Vec::with_capacity(n),
            revoked_at: Vec::with_capacity(n),
            revoked_by: Vec::with_capacity(n),
            last_error: Vec::with_capacity(n),
            version: Vec::with_capacity(n),
        };
        for write in writes {
            let c = InvitationCols::of(&write.invitation);
            a.id.push(c.id);
            a.tenant.push(c.tenant);
            a.email.push(c.email);
            a.email_key.push(c.email_key);
            a.role.push(c.role);
            a.first_name.push(c.first_name);
            a.last_name.push(c.last_name);
            a.message.push(c.message);
            a.metadata.push(c.metadata);
            a.invited_by.push(c.invited_by);
            a.batch_id.push(c.batch_id);
            a.status.push(c.status);
            a.token_hash.push(c.token_hash);
            a.ttl_seconds.push(c.ttl_seconds);
            a.created_at.push(c.created_at);
            a.sent_at.push(c.sent_at);
            a.delivered_at.push(c.delivered_at);
            a.expires_at.push(c.expires_at);
            a.accepted_at.push(c.accepted_at);
            a.accepted_by.push(c.accepted_by);
            a.revoked_at.push(c.revoked_at);
            a.revoked_by.push(c.revoked_by);
            a.last_error.push(c.last_error);
            a.version.push(c.version);
        }
        a
    }

    fn bind<'q>(
        self,
        q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>
    where
        'a: 'q,
    {
        q.bind(self.id)
            .bind(self.tenant)
            .bind(self.email)
            .bind(self.email_key)
            .bind(self.role)
            .bind(self.first_name)
            .bind(self.last_name)
            .bind(self.message)
            .bind(self.metadata)
            .bind(self.invited_by)
            .bind(self.batch_id)
            .bind(self.status)
            .bind(self.token_hash)
            .bind(self.ttl_seconds)
            .bind(self.created_at)
            .bind(self.sent_at)
            .bind(self.delivered_at)
            .bind(self.expires_at)
            .bind(self.accepted_at)
            .bind(self.accepted_by)
            .bind(self.revoked_at)
            .bind(self.revoked_by)
            .bind(self.last_error)
            .bind(self.version)
    }
}

/// The outbox columns of one batch, as the arrays [`INSERT_OUTBOX`] unnests.
struct OutboxArrays<'a> {
    id: Vec<&'a [u8]>,
    tenant: Vec<&'a str>,
    invitation_id: Vec<&'a [u8]>,
    kind: Vec<&'static str>,
    state: Vec<&'static str>,
    attempts: Vec<i64>,
    next_attempt_at: Vec<i64>,
    claimed_until: Vec<Option<i64>>,
    last_error: Vec<Option<&'a str>>,
    created_at: Vec<i64>,
}

impl<'a> OutboxArrays<'a> {
    fn with_capacity(n: usize) -> Self {
        Self {
            id: Vec::with_capacity(n),
            tenant: Vec::with_capacity(n),
            invitation_id: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            state: Vec::with_capacity(n),
            attempts: Vec::with_capacity(n),
            next_attempt_at: Vec::with_capacity(n),
            claimed_until: Vec::with_capacity(n),
            last_error: Vec::with_capacity(n),
            created_at: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, c: OutboxCols<'a>) {
        self.id.push(c.id);
        self.tenant.push(c.tenant);
        self.invitation_id.push(c.invitation_id);
        self.kind.push(c.kind);
        self.state.push(c.state);
        self.attempts.push(c.attempts);
        self.next_attempt_at.push(c.next_attempt_at);
        self.claimed_until.push(c.claimed_until);
        self.last_error.push(c.last_error);
        self.created_at.push(c.created_at);
    }

    fn bind<'q>(
        self,
        q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>
    where
        'a: 'q,
    {
        q.bind(self.id)
            .bind(self.tenant)
            .bind(self.invitation_id)
            .bind(self.kind)
            .bind(self.state)
            .bind(self.attempts)
            .bind(self.next_attempt_at)
            .bind(self.claimed_until)
            .bind(self.last_error)
            .bind(self.created_at)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_invitations(
        &self,
        tenant: &TenantId,
        writes: &[InvitationWrite],
    ) -> Result<CreateReport, StoreError> {
        if let Some(w) = writes.iter().find(|w| !w.is_for(tenant)) {
            return Err(StoreError::Conflict(format!(
                "invitation {} (or the email it queues) belongs to another tenant",
                w.invitation.id
            )));
        }
        // Two calls writing overlapping addresses in opposite orders can each wait on
        // the other's uncommitted index entry: PostgreSQL rolls one back (40P01), and
        // an address refused because of an open invitation that was closed before it
        // was read again was refused by a race too. Either runs again, whole.
        retrying!(self.try_create(tenant, writes)).map_err(Failure::into_store)
    }

    async fn get_invitations(
        &self,
        tenant: &TenantId,
        ids: &[InvitationId],
    ) -> Result<Vec<Invitation>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(from_sqlx)?;
        self.invitations_by_id(&mut conn, Some(tenant), ids).await
    }

    async fn find_by_token(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
    ) -> Result<Invitation, StoreError> {
        let row: Option<PgRow> = sqlx::query(self.sql(concat!(
            "SELECT ",
            invitation_columns!(),
            " FROM invite_invitations WHERE tenant = $1 AND token_hash = $2"
        )))
        .bind(tenant.as_str())
        .bind(token_hash.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        rows::invitation(&row.ok_or(StoreError::NotFound)?)
    }

    async fn find_open_by_keys(
        &self,
        tenant: &TenantId,
        keys: &[&str],
    ) -> Result<Vec<Invitation>, StoreError> {
        let rows: Vec<PgRow> = sqlx::query(self.sql(concat!(
            "SELECT ",
            invitation_columns!(),
            " FROM invite_invitations \
             WHERE tenant = $1 AND status IN ('unsent', 'pending') AND email_key = ANY($2)"
        )))
        .bind(tenant.as_str())
        .bind(keys)
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        rows.iter().map(rows::invitation).collect()
    }

    async fn record_transitions(
        &self,
        tenant: &TenantId,
        transitions: &[Transition],
    ) -> Result<TransitionReport, StoreError> {
        // A transition that opens an invitation checks that its address has no other
        // open one, but under READ COMMITTED that check cannot see one opened by a
        // transaction still running (an import's create, another reopen): the update
        // then waits on the open-address index and fails with a unique violation once
        // that transaction commits, which aborts the whole transaction. Run again, the
        // check sees the other invitation, and that one transition is reported stale
        // while the rest apply, as the contract says. A deadlock victim or
        // serialization failure was rolled back whole too, and is run again alike.
        retrying!(self.try_record(tenant, transitions)).map_err(Failure::into_store)
    }

    async fn accept(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Invitation, StoreError> {
        // One statement: a concurrent winner holds the row lock, and the losers re-check
        // `status = 'pending'` on the committed row (READ COMMITTED) and match nothing.
        // Under a host's REPEATABLE READ or SERIALIZABLE default, a statement that
        // waited for any other writer of the row fails with 40001 instead, whatever
        // that writer did (a delivery recording the email sent, too): run again with a
        // fresh snapshot, it accepts, or, behind a winner, matches nothing. A race lost
        // on every attempt is NotFound.
        retrying!(self.try_accept(tenant, token_hash, user, now))
            .map_err(Failure::lost_race_is_not_found)
    }

    async fn expire_due(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Invitation>, StoreError> {
        // The outer WHERE repeats the condition so a row accepted while this statement
        // waited for its lock is re-checked and left alone.
        let rows: Vec<PgRow> = sqlx::query(self.sql(concat!(
            "WITH expired AS ( \
               UPDATE invite_invitations SET status = 'expired', token_hash = NULL, version = version + 1 \
               WHERE tenant = $1 AND status = 'pending' AND expires_at <= $2 \
               AND id IN (SELECT id FROM invite_invitations \
                          WHERE tenant = $1 AND status = 'pending' AND expires_at <= $2 \
                          ORDER BY id LIMIT $3) \
               RETURNING ",
            invitation_columns!(),
            "), c AS ( \
               UPDATE invite_outbox SET state = 'cancelled', claimed_until = NULL \
               WHERE tenant = $1 AND state = 'queued' AND invitation_id IN (SELECT id FROM expired)) \
             SELECT * FROM expired"
        )))
        .bind(tenant.as_str())
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        let mut expired = rows
            .iter()
            .map(rows::invitation)
            .collect::<Result<Vec<_>, _>>()?;
        expired.sort_by_key(|i| i.id);
        Ok(expired)
    }

    async fn list_invitations(
        &self,
        tenant: &TenantId,
        filter: &InvitationFilter,
        page: PageRequest,
        now: OffsetDateTime,
    ) -> Result<Page<Invitation>, StoreError> {
        let (mut q, limit) =
            filter::list::<Postgres>(&self.prefix, INVITATION_COLUMNS, tenant, filter, page, now);
        let rows = q.build().fetch_all(&self.pool).await.map_err(from_sqlx)?;
        let items = rows
            .iter()
            .map(rows::invitation)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(filter::page(items, page, limit))
    }

    async fn count_invitations(
        &self,
        tenant: &TenantId,
        filter: &InvitationFilter,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let n: i64 = filter::count::<Postgres>(&self.prefix, tenant, filter, now)
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(from_sqlx)?;
        filter::counted(n)
    }

    async fn create_group_link(&self, link: &GroupLink) -> Result<(), StoreError> {
        group_links::insert::<Postgres>(&self.prefix, link)
            .build()
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|e| group_links::insert_error(link, e))
    }

    async fn update_group_link(
        &self,
        link: &GroupLink,
        expected_revision: u32,
    ) -> Result<(), StoreError> {
        // Under a host's REPEATABLE READ, a change that waited for a join (which
        // counts a use on the same row) fails with 40001 once the join commits, though
        // the revision it expects still stands: run again, it is written.
        retrying!(self.try_update_group_link(link, expected_revision))
            .map_err(Failure::lost_race_is_not_found)
    }

    async fn get_group_link(
        &self,
        tenant: &TenantId,
        role: &Role,
    ) -> Result<Option<GroupLink>, StoreError> {
        let row: Option<PgRow> = sqlx::query(self.sql(
            "SELECT tenant, role, enabled, token_hash, version, revision, expires_at, max_uses, uses, allowed_domains, updated_by, created_at, updated_at \
             FROM invite_group_links WHERE tenant = $1 AND role = $2",
        ))
        .bind(tenant.as_str())
        .bind(role.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        row.as_ref().map(rows::group_link).transpose()
    }

    async fn list_group_links(&self, tenant: &TenantId) -> Result<Vec<GroupLink>, StoreError> {
        let mut q = self.builder("SELECT ");
        q.push(GROUP_LINK_COLUMNS)
            .push(self.sql(" FROM invite_group_links WHERE tenant = ").0)
            .push_bind(tenant.as_str())
            // Byte order, as every other store, whatever the database's collation.
            .push(" ORDER BY role COLLATE \"C\"");
        let rows = q.build().fetch_all(&self.pool).await.map_err(from_sqlx)?;
        rows.iter().map(rows::group_link).collect()
    }

    async fn find_group_link(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
    ) -> Result<GroupLink, StoreError> {
        let row: Option<PgRow> = sqlx::query(self.sql(
            "SELECT tenant, role, enabled, token_hash, version, revision, expires_at, max_uses, uses, allowed_domains, updated_by, created_at, updated_at \
             FROM invite_group_links WHERE tenant = $1 AND token_hash = $2",
        ))
        .bind(tenant.as_str())
        .bind(token_hash.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        rows::group_link(&row.ok_or(StoreError::NotFound)?)
    }

    async fn join_group_link(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
        link_revision: u32,
        join: &GroupJoin,
    ) -> Result<JoinOutcome, StoreError> {
        if &join.tenant != tenant {
            return Err(StoreError::NotFound);
        }
        let mut tx = self.begin().await?;
        // The join row first: a concurrent join by the same user waits here on the
        // primary key until ours commits or rolls back, then inserts nothing and
        // re-reads ours. Only then the use is counted, against the maximum.
        let recorded = sqlx::query(self.sql(
            "INSERT INTO invite_group_joins (tenant, role, user_id, link_version, email, joined_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, role, user_id) DO NOTHING",
        ))
        .bind(tenant.as_str())
        .bind(join.role.as_str())
        .bind(join.user.as_str())
        .bind(i64::from(join.link_version))
        .bind(join.email.as_str())
        .bind(micros(join.joined_at))
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx_conditional)?;
        if recorded.rows_affected() != 1 {
            let existing: Option<PgRow> = sqlx::query(self.sql(
                "SELECT tenant, role, user_id, link_version, email, joined_at FROM invite_group_joins \
                 WHERE tenant = $1 AND role = $2 AND user_id = $3",
            ))
            .bind(tenant.as_str())
            .bind(join.role.as_str())
            .bind(join.user.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(from_sqlx_conditional)?;
            tx.rollback().await.map_err(from_sqlx)?;
            return match existing {
                Some(row) => Ok(JoinOutcome::AlreadyJoined(rows::group_join(&row)?)),
                None => Err(StoreError::NotFound),
            };
        }
        let counted = sqlx::query(self.sql(
            "UPDATE invite_group_links SET uses = uses + 1 \
             WHERE tenant = $1 AND token_hash = $2 AND role = $3 AND version = $4 \
             AND revision = $5 AND enabled AND (expires_at IS NULL OR expires_at > $6) \
             AND (max_uses IS NULL OR uses < max_uses)",
        ))
        .bind(tenant.as_str())
        .bind(token_hash.as_bytes().as_slice())
        .bind(join.role.as_str())
        .bind(i64::from(join.link_version))
        .bind(i64::from(link_revision))
        .bind(micros(join.joined_at))
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx_conditional)?;
        if counted.rows_affected() != 1 {
            tx.rollback().await.map_err(from_sqlx)?;
            return Err(StoreError::NotFound);
        }
        tx.commit().await.map_err(from_sqlx_conditional)?;
        Ok(JoinOutcome::Joined(join.clone()))
    }

    async fn list_group_joins(
        &self,
        tenant: &TenantId,
        role: &Role,
    ) -> Result<Vec<GroupJoin>, StoreError> {
        let mut q = self.builder("SELECT ");
        q.push(GROUP_JOIN_COLUMNS)
            .push(self.sql(" FROM invite_group_joins WHERE tenant = ").0)
            .push_bind(tenant.as_str())
            .push(" AND role = ")
            .push_bind(role.as_str())
            .push(" ORDER BY joined_at, user_id");
        let rows = q.build().fetch_all(&self.pool).await.map_err(from_sqlx)?;
        rows.iter().map(rows::group_join).collect()
    }

    async fn claim_due_outbox(
        &self,
        now: OffsetDateTime,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxClaim>, StoreError> {
        let mut tx = self.begin().await?;
        // SKIP LOCKED: entries another claimer is taking right now are passed over, not
        // waited for; an entry it already took is re-checked after its commit and no
        // longer matches (its lease is in the future).
        let rows: Vec<PgRow> = sqlx::query(self.sql(
            "WITH due AS ( \
               SELECT id FROM invite_outbox \
               WHERE state = 'queued' AND next_attempt_at <= $1 \
               AND (claimed_until IS NULL OR claimed_until <= $1) \
               ORDER BY next_attempt_at, id LIMIT $2 \
               FOR UPDATE SKIP LOCKED) \
             UPDATE invite_outbox o SET claimed_until = $3, attempts = o.attempts + 1 \
             FROM due WHERE o.id = due.id \
             RETURNING o.id, o.tenant, o.invitation_id, o.kind, o.state, o.attempts, \
             o.next_attempt_at, o.claimed_until, o.last_error, o.created_at",
        ))
        .bind(micros(now))
        .bind(i64::from(limit))
        .bind(micros(now + lease))
        .fetch_all(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let mut entries = rows
            .iter()
            .map(rows::outbox)
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(|e| (e.next_attempt_at, e.id));
        let ids: Vec<InvitationId> = entries.iter().map(|e| e.invitation).collect();
        let invitations: HashMap<InvitationId, Invitation> = self
            .invitations_by_id(&mut tx, None, &ids)
            .await?
            .into_iter()
            .map(|i| (i.id, i))
            .collect();
        tx.commit().await.map_err(from_sqlx)?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                let invitation = invitations.get(&entry.invitation)?.clone();
                let lease_until = entry.claimed_until?;
                (invitation.tenant == entry.tenant).then_some(OutboxClaim {
                    entry,
                    invitation,
                    lease_until,
                })
            })
            .collect())
    }

    async fn spread_due_outbox(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
        first_at: OffsetDateTime,
        interval: Duration,
    ) -> Result<u64, StoreError> {
        // In chunks (see `spread.rs`), each one statement in its own transaction,
        // pinned to READ COMMITTED (see the module docs). The chunk reads the first
        // entries of the tenant's due range of `invite_outbox_tenant_due` (migration
        // 0006), already in claim order, and numbers them on from the entries moved
        // before it. SKIP LOCKED, as in the claim: an entry another transaction holds
        // (being claimed, or cancelled by a transition) is left alone rather than waited
        // for, so a chunk never waits on a row lock and cannot be part of a deadlock. A
        // locked row is checked again on its latest version, so one claimed meanwhile is
        // not moved.
        let now_us = micros(now);
        let chunks = spread::Chunks::new(now_us, micros(first_at));
        let mut moved: u64 = 0;
        loop {
            let mut tx = self.begin().await?;
            let done = sqlx::query(self.sql(
                "WITH due AS ( \
                   SELECT id, next_attempt_at FROM invite_outbox \
                   WHERE state = 'queued' AND next_attempt_at <= $3 AND tenant = $4 \
                   AND (claimed_until IS NULL OR claimed_until <= $3) \
                   ORDER BY next_attempt_at, id LIMIT $5 \
                   FOR UPDATE SKIP LOCKED), \
                 ranked AS ( \
                   SELECT id, ROW_NUMBER() OVER (ORDER BY next_attempt_at, id) AS rn FROM due) \
                 UPDATE invite_outbox o SET next_attempt_at = $1 + ($6 + ranked.rn - 1) * $2 \
                 FROM ranked WHERE o.id = ranked.id",
            ))
            .bind(micros(first_at))
            .bind(span_micros(interval))
            .bind(now_us)
            .bind(tenant.as_str())
            .bind(chunks.limit())
            .bind(i64::try_from(moved).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
            tx.commit().await.map_err(from_sqlx)?;
            moved += done.rows_affected();
            if !chunks.more_after(done.rows_affected()) {
                return Ok(moved);
            }
        }
    }

    async fn attach_token(
        &self,
        tenant: &TenantId,
        entry: OutboxId,
        lease_until: OffsetDateTime,
        token_hash: &TokenHash,
    ) -> Result<(), StoreError> {
        // FOR SHARE holds the claim still while the token is written: a concurrent
        // takeover or completion waits, or (having committed first) fails the re-check.
        // The invitation's row is locked before the entry's (`inv`, which the entry's
        // lookup needs), as `record_transitions` and `complete_outbox` take them; the
        // opposite order deadlocks with a concurrent resend.
        let result = sqlx::query(self.sql(
            "WITH inv AS ( \
               SELECT id FROM invite_invitations WHERE tenant = $2 AND status = 'pending' AND id = \
               (SELECT invitation_id FROM invite_outbox WHERE id = $3 AND tenant = $2) \
               FOR UPDATE) \
             UPDATE invite_invitations SET token_hash = $1 \
             WHERE tenant = $2 AND status = 'pending' AND id = \
             (SELECT invitation_id FROM invite_outbox \
              WHERE id = $3 AND tenant = $2 AND state = 'queued' AND claimed_until = $4 \
              AND invitation_id IN (SELECT id FROM inv) \
              FOR SHARE)",
        ))
        .bind(token_hash.as_bytes().as_slice())
        .bind(tenant.as_str())
        .bind(entry.as_uuid().as_bytes().as_slice())
        .bind(micros(lease_until))
        .execute(&self.pool)
        .await
        .map_err(from_sqlx_conditional)?;
        if result.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn complete_outbox(
        &self,
        tenant: &TenantId,
        entry: OutboxId,
        lease_until: OffsetDateTime,
        outcome: &DeliveryOutcome,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        // One statement each: the fenced outbox update and its effect on the invitation
        // (if any) in data-modifying CTEs, atomic without a transaction. When it has an
        // effect, the invitation's row is locked first (`inv`: the entry's update
        // needs its row, so it cannot lock the entry before), the order
        // `record_transitions` takes them in; the opposite order deadlocks with it.
        let (sql, state, next_attempt_at, error): (&'static str, _, _, _) = match outcome {
            DeliveryOutcome::Sent => (
                "WITH inv AS ( \
                   SELECT id FROM invite_invitations WHERE tenant = $5 AND id = \
                   (SELECT invitation_id FROM invite_outbox WHERE id = $4 AND tenant = $5) \
                   FOR UPDATE), \
                 done AS ( \
                   UPDATE invite_outbox SET state = $1, next_attempt_at = COALESCE($2, next_attempt_at), \
                   last_error = COALESCE($3, last_error), claimed_until = NULL \
                   WHERE id = $4 AND tenant = $5 AND state = 'queued' AND claimed_until = $6 \
                   AND invitation_id IN (SELECT id FROM inv) \
                   RETURNING invitation_id), \
                 i AS ( \
                   UPDATE invite_invitations SET delivered_at = $7, version = version + 1 \
                   WHERE tenant = $5 AND id IN (SELECT invitation_id FROM done) AND status = 'pending' \
                   AND (expires_at IS NULL OR expires_at > $7)) \
                 SELECT COUNT(*) FROM done",
                "sent",
                None,
                None,
            ),
            DeliveryOutcome::Failed { error } => (
                "WITH inv AS ( \
                   SELECT id FROM invite_invitations WHERE tenant = $5 AND id = \
                   (SELECT invitation_id FROM invite_outbox WHERE id = $4 AND tenant = $5) \
                   FOR UPDATE), \
                 done AS ( \
                   UPDATE invite_outbox SET state = $1, next_attempt_at = COALESCE($2, next_attempt_at), \
                   last_error = COALESCE($3, last_error), claimed_until = NULL \
                   WHERE id = $4 AND tenant = $5 AND state = 'queued' AND claimed_until = $6 \
                   AND invitation_id IN (SELECT id FROM inv) \
                   RETURNING invitation_id), \
                 i AS ( \
                   UPDATE invite_invitations SET status = 'delivery_failed', last_error = $3, \
                   token_hash = NULL, version = version + 1 \
                   WHERE tenant = $5 AND id IN (SELECT invitation_id FROM done) AND status = 'pending' \
                   AND (expires_at IS NULL OR expires_at > $7)) \
                 SELECT COUNT(*) FROM done",
                "failed",
                None,
                Some(error.as_str()),
            ),
            DeliveryOutcome::Retry {
                next_attempt_at,
                error,
            } => (
                COMPLETE_ONLY,
                "queued",
                Some(micros(*next_attempt_at)),
                Some(error.as_str()),
            ),
            DeliveryOutcome::Cancelled => (COMPLETE_ONLY, "cancelled", None, None),
            DeliveryOutcome::Deferred { next_attempt_at } => {
                (DEFER, "queued", Some(micros(*next_attempt_at)), None)
            }
            _ => {
                return Err(StoreError::Conflict(
                    "unknown delivery outcome for this store version".into(),
                ));
            }
        };
        // A deadlock victim (a host's transaction holding the entry, then wanting the
        // invitation, the order this statement cannot take) or a serialization failure
        // was rolled back whole, and the statement is fenced on the lease: run it
        // again. Answered `NotFound` at once, a delivery that was sent would count as
        // a lost claim, and be claimed and sent again after the lease.
        let done: i64 = retrying!(async {
            let done = sqlx::query_scalar(self.sql(sql))
                .bind(state)
                .bind(next_attempt_at)
                .bind(error)
                .bind(entry.as_uuid().as_bytes().as_slice())
                .bind(tenant.as_str())
                .bind(micros(lease_until))
                .bind(micros(now))
                .fetch_one(&self.pool)
                .await?;
            Ok::<_, Failure>(done)
        })
        .map_err(Failure::lost_race_is_not_found)?;
        if done == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn list_outbox(
        &self,
        tenant: &TenantId,
        invitation: InvitationId,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut q = self.builder("SELECT ");
        q.push(OUTBOX_COLUMNS)
            .push(self.sql(" FROM invite_outbox WHERE tenant = ").0)
            .push_bind(tenant.as_str())
            .push(" AND invitation_id = ")
            .push_bind(invitation.as_uuid().as_bytes().as_slice())
            .push(" ORDER BY id");
        let rows = q.build().fetch_all(&self.pool).await.map_err(from_sqlx)?;
        rows.iter().map(rows::outbox).collect()
    }

    async fn suppress(&self, suppression: &Suppression) -> Result<(), StoreError> {
        suppressions::upsert::<Postgres>(
            &self.prefix,
            suppression,
            suppressions::ON_CONFLICT_REPLACE,
        )
        .build()
        .execute(&self.pool)
        .await
        .map_err(from_sqlx)?;
        Ok(())
    }

    async fn suppressed(
        &self,
        tenant: &TenantId,
        keys: &[&str],
    ) -> Result<Vec<Suppression>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(rows::SUPPRESSION_KEYS_PER_QUERY) {
            let mut q = suppressions::lookup::<Postgres>(
                &self.prefix,
                "tenant, email, reason, suppressed_at, source",
                tenant,
                chunk,
            );
            for row in &q.build().fetch_all(&self.pool).await.map_err(from_sqlx)? {
                found.push(rows::suppression(row)?);
            }
        }
        Ok(suppressions::one_per_key(found))
    }

    async fn unsuppress(&self, tenant: &TenantId, key: &str) -> Result<(), StoreError> {
        let done = suppressions::delete::<Postgres>(&self.prefix, tenant, key)
            .build()
            .execute(&self.pool)
            .await
            .map_err(from_sqlx)?;
        at_least_one(done.rows_affected())
    }

    async fn unsuppress_if_same(&self, suppression: &Suppression) -> Result<bool, StoreError> {
        let done = suppressions::delete_if_same::<Postgres>(&self.prefix, suppression)
            .build()
            .execute(&self.pool)
            .await
            .map_err(from_sqlx)?;
        Ok(done.rows_affected() == 1)
    }
}

/// `complete_outbox` for outcomes that leave the invitation alone. `$7` is bound but
/// unused (sqlx sends every parameter's type, so PostgreSQL needs no reference to it).
const COMPLETE_ONLY: &str = "WITH done AS ( \
       UPDATE invite_outbox SET state = $1, next_attempt_at = COALESCE($2, next_attempt_at), \
       last_error = COALESCE($3, last_error), claimed_until = NULL \
       WHERE id = $4 AND tenant = $5 AND state = 'queued' AND claimed_until = $6 \
       RETURNING invitation_id) \
     SELECT COUNT(*) FROM done";

/// [`COMPLETE_ONLY`] for a deferral, which gives back the attempt its claim counted
/// (so `attempts - 1` is never negative).
const DEFER: &str = "WITH done AS ( \
       UPDATE invite_outbox SET state = $1, next_attempt_at = COALESCE($2, next_attempt_at), \
       last_error = COALESCE($3, last_error), attempts = attempts - 1, claimed_until = NULL \
       WHERE id = $4 AND tenant = $5 AND state = 'queued' AND claimed_until = $6 \
       RETURNING invitation_id) \
     SELECT COUNT(*) FROM done";

/// Rows in `COPY ... FROM STDIN`'s text format: fields separated by tabs, rows ended by
/// a newline, NULL as `\N`, and in text a backslash, tab, newline or carriage return
/// escaped with a backslash. Written straight into the caller's buffer (no allocation
/// per field); `bytea` goes in as hex (`\x...`, its backslash escaped too).
mod copy_text {
    use std::io;

    use invite_core::Invitation;

    use crate::rows::{OutboxCols, micros, opt_micros};

    const HEX: &[u8; 16] = b"0123456789abcdef";

    /// Whether `bytes` may hold a byte `COPY` text escapes: below 0x20 (tab, newline,
    /// carriage return) or a backslash. Eight bytes at a time; exact when it says no.
    fn may_need_escaping(bytes: &[u8]) -> bool {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let mut words = bytes.chunks_exact(8);
        for word in words.by_ref() {
            let mut le = [0u8; 8];
            le.copy_from_slice(word);
            let x = u64::from_le_bytes(le);
            let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
            let b = x ^ (ONES * u64::from(b'\\'));
            let backslash = b.wrapping_sub(ONES) & !b & HIGH;
            if below_space | backslash != 0 {
                return true;
            }
        }
        words.remainder().iter().any(|&b| b < 0x20 || b == b'\\')
    }

    fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
        if !may_need_escaping(bytes) {
            out.extend_from_slice(bytes);
            return;
        }
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape = match b {
                b'\\' => b'\\',
                b'\t' => b't',
                b'\n' => b'n',
                b'\r' => b'r',
                _ => continue,
            };
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(&[b'\\', escape]);
            start = i + 1;
        }
        out.extend_from_slice(&bytes[start..]);
    }

    fn null(out: &mut Vec<u8>) {
        out.extend_from_slice(b"\\N\t");
    }

    fn text(out: &mut Vec<u8>, value: &str) {
        escaped(out, value.as_bytes());
        out.push(b'\t');
    }

    fn opt_text(out: &mut Vec<u8>, value: Option<&str>) {
        match value {
            Some(v) => text(out, v),
            None => null(out),
        }
    }

    fn bytes(out: &mut Vec<u8>, value: &[u8]) {
        out.extend_from_slice(b"\\\\x");
        for &b in value {
            out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
        out.push(b'\t');
    }

    fn opt_bytes(out: &mut Vec<u8>, value: Option<&[u8]>) {
        match value {
            Some(v) => bytes(out, v),
            None => null(out),
        }
    }

    fn int(out: &mut Vec<u8>, value: i64) {
        let mut digits = [0u8; 20];
        let mut n = value.unsigned_abs();
        let mut at = digits.len();
        loop {
            at -= 1;
            // `n % 10` is below 10, so always fits.
            digits[at] = b'0' + u8::try_from(n % 10).unwrap_or(0);
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if value < 0 {
            out.push(b'-');
        }
        out.extend_from_slice(&digits[at..]);
        out.push(b'\t');
    }

    fn opt_int(out: &mut Vec<u8>, value: Option<i64>) {
        match value {
            Some(v) => int(out, v),
            None => null(out),
        }
    }

    /// Ends the row: its last field's tab becomes the newline.
    fn end_row(out: &mut [u8]) {
        if let Some(last) = out.last_mut() {
            *last = b'\n';
        }
    }

    /// Escapes what serde_json writes (JSON text has backslashes, never a raw control
    /// character).
    struct Escaping<'a>(&'a mut Vec<u8>);

    impl io::Write for Escaping<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            escaped(self.0, buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// One invitation row, the columns of `rows::InvitationCols` in the same order (the
    /// metadata serialized in place rather than to a `String` first).
    pub(super) fn invitation(out: &mut Vec<u8>, i: &Invitation) -> Result<(), serde_json::Error> {
        bytes(out, i.id.as_uuid().as_bytes());
        text(out, i.tenant.as_str());
        text(out, i.email.as_str());
        text(out, i.email.key());
        text(out, i.role.as_str());
        opt_text(out, i.names.first.as_deref());
        opt_text(out, i.names.last.as_deref());
        opt_text(out, i.message.as_deref());
        match &i.metadata {
            Some(metadata) => {
                serde_json::to_writer(Escaping(out), metadata)?;
                out.push(b'\t');
            }
            None => null(out),
        }
        text(out, i.invited_by.as_str());
        opt_bytes(
            out,
            i.batch.as_ref().map(|b| b.as_uuid().as_bytes().as_slice()),
        );
        text(out, i.status.as_str());
        opt_bytes(out, i.token_hash.as_ref().map(|h| h.as_bytes().as_slice()));
        int(out, i.ttl.whole_seconds());
        int(out, micros(i.created_at));
        opt_int(out, opt_micros(i.sent_at));
        opt_int(out, opt_micros(i.delivered_at));
        opt_int(out, opt_micros(i.expires_at));
        opt_int(out, opt_micros(i.accepted_at));
        opt_text(out, i.accepted_by.as_ref().map(|u| u.as_str()));
        opt_int(out, opt_micros(i.revoked_at));
        opt_text(out, i.revoked_by.as_ref().map(|a| a.as_str()));
        opt_text(out, i.last_error.as_deref());
        int(out, i64::from(i.version));
        end_row(out);
        Ok(())
    }

    /// One outbox row, in `rows::OUTBOX_COLUMNS` order.
    pub(super) fn outbox(out: &mut Vec<u8>, c: &OutboxCols<'_>) {
        bytes(out, c.id);
        text(out, c.tenant);
        bytes(out, c.invitation_id);
        text(out, c.kind);
        text(out, c.state);
        int(out, c.attempts);
        int(out, c.next_attempt_at);
        opt_int(out, c.claimed_until);
        opt_text(out, c.last_error);
        int(out, c.created_at);
        end_row(out);
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn text_fields_are_escaped_and_nulls_marked() {
            let mut out = Vec::new();
            text(&mut out, "a\\b\tc\nd\re");
            opt_text(&mut out, None);
            bytes(&mut out, &[0x00, 0xab, 0xff]);
            int(&mut out, -1_234_567);
            int(&mut out, i64::MIN);
            int(&mut out, 0);
            end_row(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "a\\\\b\\tc\\nd\\re\t\\N\t\\\\x00abff\t-1234567\t-9223372036854775808\t0\n"
            );
        }

        #[test]
        fn the_fast_scan_never_misses_a_byte_to_escape() {
            for len in 0..24 {
                for at in 0..len {
                    for special in [b'\\', b'\t', b'\n', b'\r', 0x00, 0x1f] {
                        let mut bytes = vec![b'a'; len];
                        bytes[at] = special;
                        assert!(may_need_escaping(&bytes), "{bytes:?}");
                    }
                }
                let plain: Vec<u8> = (0..len).map(|i| b' ' + u8::try_from(i).unwrap()).collect();
                assert!(!may_need_escaping(&plain), "{plain:?}");
                assert!(!may_need_escaping("ünïcödé 🎉".repeat(len).as_bytes()));
            }
        }

        #[test]
        fn json_is_escaped_as_it_is_written() {
            let mut out = Vec::new();
            let value = serde_json::json!({"k": "tab\there \\ \"q\""});
            serde_json::to_writer(Escaping(&mut out), &value).unwrap();
            // serde_json writes `\t`, `\\` and `\"`; each of their backslashes doubles.
            assert_eq!(
                String::from_utf8(out).unwrap(),
                r#"{"k":"tab\\there \\\\ \\"q\\""}"#
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invitation_columns_literal_matches_rows() {
        assert_eq!(invitation_columns!(), INVITATION_COLUMNS);
    }

    #[test]
    fn copy_statements_name_the_rows_columns() {
        assert!(COPY_INVITATIONS.contains(&format!("({INVITATION_COLUMNS})")));
        assert!(COPY_OUTBOX.contains(&format!("({OUTBOX_COLUMNS})")));
    }

    #[test]
    fn statements_name_only_prefixed_tables() {
        // The prefix rewrite replaces every `invite_`; nothing else may contain it.
        for sql in [
            INSERT_INVITATIONS,
            INSERT_OUTBOX,
            COMPLETE_ONLY,
            COPY_INVITATIONS,
            COPY_OUTBOX,
        ] {
            let rewritten = TablePrefix::new("acme_").unwrap().apply(sql).0;
            assert!(!rewritten.contains("invite_"), "{rewritten}");
        }
    }
}
