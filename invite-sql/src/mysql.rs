//! MySQL/MariaDB store. Accept is one round trip, `CALL invite_accept_v2(...)`: a stored
//! procedure (migration 0009, 0005's with a NULL expiry taken as never expiring) running
//! the conditional UPDATE, checked by its affected
//! rows, then a read of the (now final) row; bulk insert is multi-row `INSERT` batches sized under the 65,535-bind
//! limit after a read of the open address keys; outbox claims use
//! `SELECT ... FOR UPDATE SKIP LOCKED` (MySQL 8, MariaDB 10.6+), and so does the spread
//! of a tenant's backlog, a chunk at a time in READ COMMITTED transactions (no gap
//! locks: see `try_spread_chunk`); `expire_due` runs at READ COMMITTED too.
//!
//! No `RETURNING` (MariaDB has it for `INSERT`/`DELETE` only, MySQL not at all): rows
//! are read back inside the transaction that wrote them, except after accept, whose
//! row no other write can change any more (read by the procedure, so a host needs the
//! `CREATE ROUTINE` privilege to migrate and `EXECUTE` to accept: granted on the
//! procedure alone, that is `invite_accept_v2` from migration 0009 on). InnoDB answers a lost race
//! with a deadlock (SQLSTATE 40001) that rolls the whole transaction back, so every
//! write transaction here is retried from the start a few times before answering.
//!
//! The procedure repeats the store's select list, so a migration that adds a column
//! to `invitations` must create a new one (as 0009 did: a new name keeps instances of
//! the previous code working through a rolling deploy); and a `mysqldump` without
//! `--routines` leaves it out while the migrations table still lists 0009.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use invite_core::{
    CreateReport, DeliveryOutcome, GroupJoin, GroupLink, Invitation, InvitationFilter,
    InvitationId, InvitationStatus, InvitationWrite, JoinOutcome, OutboxClaim, OutboxEntry,
    OutboxId, Page, PageRequest, Role, Store, StoreError, Suppression, TenantId, TokenHash,
    Transition, TransitionReport, UserId,
};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::{AssertSqlSafe, MySql, MySqlConnection, QueryBuilder};
use time::{Duration, OffsetDateTime};

use crate::error::{
    at_least_one, corrupt, exactly_one, from_sqlx, is_serialization_failure, is_unique_violation,
};
use crate::filter;
use crate::group_links;
use crate::prefix::{InvalidPrefix, TablePrefix};
use crate::retry::{Failure, MAX_ATTEMPTS, retrying};
use crate::rows::{
    self, INVITATION_COLUMN_COUNT, INVITATION_COLUMNS, InvitationCols, OUTBOX_COLUMN_COUNT,
    OUTBOX_COLUMNS, OutboxCols, micros, push_invitation_row, span_micros,
};
use crate::spread;
use crate::suppressions;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/mysql");

/// The protocol's limit on bound parameters per statement (a 16-bit count).
const MAX_BINDS: usize = 65_535;

// Keyed text columns are VARBINARY (byte-exact, NO PAD; see the first migration) and
// read back as text. The aliases keep the names `rows.rs` maps by; ORDER BY clauses
// name columns through a table alias so they sort the bytes, not the converted text.
const INVITATION_SELECT: &str = "id, CONVERT(tenant USING utf8mb4) AS tenant, email, \
     CONVERT(email_key USING utf8mb4) AS email_key, CONVERT(role USING utf8mb4) AS role, \
     first_name, last_name, message, metadata, invited_by, batch_id, status, token_hash, \
     ttl_seconds, created_at, sent_at, delivered_at, expires_at, accepted_at, accepted_by, \
     revoked_at, revoked_by, last_error, version";
const OUTBOX_SELECT: &str = "id, CONVERT(tenant USING utf8mb4) AS tenant, invitation_id, kind, \
     state, attempts, next_attempt_at, claimed_until, last_error, created_at";
const GROUP_LINK_SELECT: &str = "CONVERT(g.tenant USING utf8mb4) AS tenant, \
     CONVERT(g.role USING utf8mb4) AS role, g.enabled, g.token_hash, g.version, g.revision, \
     g.expires_at, g.max_uses, g.uses, g.allowed_domains, g.updated_by, g.created_at, g.updated_at";
const GROUP_JOIN_SELECT: &str = "CONVERT(j.tenant USING utf8mb4) AS tenant, \
     CONVERT(j.role USING utf8mb4) AS role, CONVERT(j.user_id USING utf8mb4) AS user_id, \
     j.link_version, j.email, j.joined_at";

/// MySQL's upsert clause for a suppression (see [`suppressions::upsert`]).
/// The key is (tenant, email_key, source): a source's new suppression of a key
/// replaces that source's row.
const MYSQL_ON_DUPLICATE: &str = " ON DUPLICATE KEY UPDATE email = VALUES(email), \
     reason = VALUES(reason), suppressed_at = VALUES(suppressed_at)";

/// An [`invite_core::Store`] on MySQL 8 or MariaDB 10.6+ (InnoDB).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use invite_sql::MySqlStore;
///
/// let store = MySqlStore::connect("mysql://app@127.0.0.1:3306/app").await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
    prefix: TablePrefix,
}

/// Where a spread's next chunk starts: after the entry at (`after_at`, `after_id`) in
/// claim order (the last one the chunk before read; at first, before everything: no
/// instant is `i64::MIN` and every id is greater than the empty one), numbering on from
/// `moved`.
///
/// Without it each chunk would read the tenant's due range from its head, through the
/// index records of every entry moved so far: InnoDB keeps an updated row's old
/// secondary index records, delete-marked, until purge, so chunk after chunk read
/// longer (measured: from 5 to 95 ms a chunk over 100,000 entries, where purge lags).
#[derive(Debug)]
struct ChunkStart {
    moved: u64,
    after_at: i64,
    after_id: Vec<u8>,
}

fn id_bytes(id: &InvitationId) -> &[u8] {
    id.as_uuid().as_bytes().as_slice()
}

fn invitation_id(table: &'static str, bytes: &[u8]) -> Result<InvitationId, StoreError> {
    uuid::Uuid::from_slice(bytes)
        .map(InvitationId::from_uuid)
        .map_err(|e| corrupt(table, format!("id: {e}")))
}

impl MySqlStore {
    /// A store on the host's pool.
    pub fn new(pool: MySqlPool) -> Self {
        Self {
            pool,
            prefix: TablePrefix::default(),
        }
    }

    /// Connects a pool with sqlx's defaults to `url` (`mysql://user:pass@host/db`).
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        Ok(Self::new(MySqlPool::connect(url).await?))
    }

    /// Uses `prefix` instead of `invite_` for every table and index, for hosts whose
    /// schema already has an `invitations` table. Lowercase ASCII letters, digits and
    /// `_`, starting with a letter, at most 32 bytes.
    pub fn with_table_prefix(mut self, prefix: &str) -> Result<Self, InvalidPrefix> {
        self.prefix = TablePrefix::new(prefix)?;
        Ok(self)
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// The embedded migrations, with this store's table prefix, tracked in
    /// `<prefix>migrations` so they never mix with the host's own sqlx migrations.
    pub fn migrator(&self) -> Migrator {
        self.prefix.migrator(&MIGRATOR)
    }

    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<(), MigrateError> {
        self.migrator().run(&self.pool).await
    }

    fn sql(&self, text: &'static str) -> AssertSqlSafe<Cow<'static, str>> {
        self.prefix.apply(text)
    }

    fn builder(&self, text: &'static str) -> QueryBuilder<MySql> {
        QueryBuilder::new(self.sql(text).0.into_owned())
    }

    /// `SELECT <invitation columns> FROM <invitations> ` (then WHERE ...).
    fn select_invitations(&self) -> QueryBuilder<MySql> {
        let mut q = self.builder("SELECT ");
        q.push(INVITATION_SELECT)
            .push(self.sql(" FROM invite_invitations ").0);
        q
    }

    async fn invitations_by_id(
        &self,
        conn: &mut MySqlConnection,
        tenant: Option<&TenantId>,
        ids: &[InvitationId],
    ) -> Result<Vec<Invitation>, Failure> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_BINDS - 1) {
            let mut q = self.select_invitations();
            q.push("WHERE ");
            if let Some(tenant) = tenant {
                q.push("tenant = ").push_bind(tenant.as_str()).push(" AND ");
            }
            q.push("id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id_bytes(id));
            }
            q.push(") ORDER BY id");
            for row in &q.build().fetch_all(&mut *conn).await? {
                out.push(rows::invitation(row)?);
            }
        }
        Ok(out)
    }

    async fn cancel_queued(
        &self,
        conn: &mut MySqlConnection,
        tenant: &TenantId,
        invitations: &[InvitationId],
    ) -> Result<(), Failure> {
        for chunk in invitations.chunks(MAX_BINDS - 1) {
            let mut q = self.builder(
                "UPDATE invite_outbox SET state = 'cancelled', claimed_until = NULL WHERE tenant = ",
            );
            q.push_bind(tenant.as_str())
                .push(" AND state = 'queued' AND invitation_id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id_bytes(id));
            }
            q.push(")");
            q.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn insert_outbox(
        &self,
        conn: &mut MySqlConnection,
        entries: &[&OutboxEntry],
    ) -> Result<(), Failure> {
        for chunk in entries.chunks(MAX_BINDS / OUTBOX_COLUMN_COUNT) {
            let mut q = self.builder("INSERT INTO invite_outbox (");
            q.push(OUTBOX_COLUMNS).push(") ");
            q.push_values(chunk, |mut b, entry| {
                let c = OutboxCols::of(entry);
                b.push_bind(c.id)
                    .push_bind(c.tenant)
                    .push_bind(c.invitation_id)
                    .push_bind(c.kind)
                    .push_bind(c.state)
                    .push_bind(c.attempts)
                    .push_bind(c.next_attempt_at)
                    .push_bind(c.claimed_until)
                    .push_bind(c.last_error)
                    .push_bind(c.created_at);
            });
            q.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// The open invitations of `tenant` holding any of `keys`, by key, read through
    /// the generated `open_key` column and its unique index.
    async fn open_ids_by_key(
        &self,
        conn: &mut MySqlConnection,
        tenant: &TenantId,
        keys: &[&str],
    ) -> Result<HashMap<Vec<u8>, InvitationId>, Failure> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(MAX_BINDS - 1) {
            let mut q = self.builder("SELECT open_key, id FROM invite_invitations WHERE tenant = ");
            q.push_bind(tenant.as_str()).push(" AND open_key IN (");
            let mut list = q.separated(", ");
            for key in chunk {
                list.push_bind(key.as_bytes());
            }
            q.push(")");
            let rows: Vec<(Vec<u8>, Vec<u8>)> = q.build_query_as().fetch_all(&mut *conn).await?;
            for (key, id) in rows {
                found.insert(key, invitation_id("invitations", &id)?);
            }
        }
        Ok(found)
    }

    // ------------------------------------------------------------ one attempt each

    /// One attempt at a bulk create.
    ///
    /// Why not `INSERT IGNORE` or `ON DUPLICATE KEY UPDATE id = id`: both swallow every
    /// unique key at once (a duplicate id or token hash would vanish silently instead of
    /// failing), and neither says which rows went in. Instead the transaction reads the
    /// tenant's open invitations for the input keys (one `IN` list per batch, on the
    /// `(tenant, open_key)` unique index), decides every input the way `MemoryStore`
    /// does (an earlier input of the call counts as existing), and inserts only the
    /// winners with plain multi-row `INSERT`s, so any unique violation is a real error.
    /// The unique index stays the arbiter: a concurrent create that commits the same
    /// key after our read makes our `INSERT` wait for it and then fail with a unique
    /// violation (or a deadlock); the whole transaction is rolled back and retried, and
    /// the retry's fresh read reports the winner as the conflict.
    async fn try_create(
        &self,
        tenant: &TenantId,
        writes: &[InvitationWrite],
    ) -> Result<CreateReport, Failure> {
        let mut tx = self.pool.begin().await?;
        let keys: Vec<&str> = writes.iter().map(|w| w.invitation.email.key()).collect();
        let existing = self.open_ids_by_key(&mut tx, tenant, &keys).await?;

        let mut report = CreateReport::default();
        let mut taken: HashMap<&str, InvitationId> = HashMap::new();
        let mut new_ids = HashSet::with_capacity(writes.len());
        for (index, write) in writes.iter().enumerate() {
            let key = write.invitation.email.key();
            let open = matches!(
                write.invitation.status,
                InvitationStatus::Unsent | InvitationStatus::Pending
            );
            // Only an open input can break the one-open-invitation rule.
            if let Some(id) = existing
                .get(key.as_bytes())
                .or_else(|| taken.get(key))
                .filter(|_| open)
            {
                report.conflicts.push((index, *id));
                continue;
            }
            if !new_ids.insert(write.invitation.id) {
                tx.rollback().await?;
                return Err(StoreError::Conflict(format!(
                    "invitation id {} appears twice",
                    write.invitation.id
                ))
                .into());
            }
            if open {
                taken.insert(key, write.invitation.id);
            }
            report.created.push(index);
        }

        let created: Vec<&InvitationWrite> = report.created.iter().map(|&i| &writes[i]).collect();
        for chunk in created.chunks(MAX_BINDS / INVITATION_COLUMN_COUNT) {
            let mut q = self.builder("INSERT INTO invite_invitations (");
            q.push(INVITATION_COLUMNS).push(") ");
            q.push_values(chunk, |mut b, write| {
                push_invitation_row!(b, &write.invitation);
            });
            q.build().execute(&mut *tx).await?;
        }
        let outbox: Vec<&OutboxEntry> = created.iter().filter_map(|w| w.outbox.as_ref()).collect();
        self.insert_outbox(&mut tx, &outbox).await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn try_attach(
        &self,
        tenant: &TenantId,
        entry: OutboxId,
        lease_until: OffsetDateTime,
        token_hash: &TokenHash,
    ) -> Result<(), Failure> {
        let result = sqlx::query(self.sql(
            "UPDATE invite_invitations SET token_hash = ? \
             WHERE tenant = ? AND status = 'pending' AND id = \
             (SELECT invitation_id FROM invite_outbox \
              WHERE id = ? AND tenant = ? AND state = 'queued' AND claimed_until = ?)",
        ))
        .bind(token_hash.as_bytes().as_slice())
        .bind(tenant.as_str())
        .bind(entry.as_uuid().as_bytes().as_slice())
        .bind(tenant.as_str())
        .bind(micros(lease_until))
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound.into())
        }
    }

    async fn try_record(
        &self,
        tenant: &TenantId,
        transitions: &[Transition],
    ) -> Result<TransitionReport, Failure> {
        let mut tx = self.pool.begin().await?;
        let mut applied = vec![false; transitions.len()];
        for index in Transition::apply_order(transitions) {
            let t = &transitions[index];
            let i = &t.invitation;
            if !t.is_for(tenant) {
                continue;
            }
            let c = InvitationCols::of(i);
            let result = sqlx::query(self.sql(
                "UPDATE invite_invitations SET status = ?, token_hash = ?, sent_at = ?, \
                 delivered_at = ?, expires_at = ?, accepted_at = ?, accepted_by = ?, \
                 revoked_at = ?, revoked_by = ?, last_error = ?, version = ? \
                 WHERE tenant = ? AND id = ? AND version = ?",
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
            .execute(&mut *tx)
            .await;
            let written = match result {
                Ok(done) => done.rows_affected() == 1,
                // The id is not updated and token hashes are random 32-byte digests, so
                // the unique key this can hit is (tenant, open_key): moving into an
                // open status while another invitation holds the address. InnoDB undid
                // just this statement; the transaction goes on.
                Err(e) if is_unique_violation(&e) => false,
                Err(e) => return Err(e.into()),
            };
            if !written {
                continue;
            }
            self.cancel_queued(&mut tx, tenant, &[i.id]).await?;
            if let Some(entry) = &t.outbox {
                self.insert_outbox(&mut tx, &[entry]).await?;
            }
            applied[index] = true;
        }
        tx.commit().await?;
        Ok(TransitionReport::from_applied(transitions, &applied))
    }

    async fn try_accept(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
        user: &UserId,
        now: i64,
    ) -> Result<Invitation, Failure> {
        // One round trip: the `invite_accept_v2` procedure (migration 0009) runs the
        // autocommitted conditional UPDATE, which is the compare-and-set (InnoDB
        // row-locks the invitation, so of any number of concurrent acceptors exactly
        // one sees an affected row), and only then selects the accepted row. The read
        // needs no transaction around it: an accepted invitation is final (every other
        // write is conditioned on `pending` or on its version, which the UPDATE
        // bumped), so what it reads is what the UPDATE wrote. `fetch_all` drains the
        // CALL's trailing status packet with the (zero or one) row.
        let rows = sqlx::query(self.sql("CALL invite_accept_v2(?, ?, ?, ?)"))
            .bind(tenant.as_str())
            .bind(token_hash.as_bytes().as_slice())
            .bind(user.as_str())
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        match rows.as_slice() {
            [row] => Ok(rows::invitation(row)?),
            [] => Err(StoreError::NotFound.into()),
            _ => Err(corrupt("invitations", "two invitations share one token hash").into()),
        }
    }

    async fn try_expire(
        &self,
        tenant: &TenantId,
        now: i64,
        limit: u32,
    ) -> Result<Vec<Invitation>, Failure> {
        // READ COMMITTED, as in `try_spread_chunk`: under REPEATABLE READ the locking
        // read, a range on `expires_at` in `id` order, keeps next-key locks on every row
        // it scans (a tenant's live pending invitations too) until the commit, and holds
        // the tenant's accepts, resends and creates back meanwhile. Here it keeps only
        // the rows it returns, and the update checks them again.
        let mut tx = self
            .pool
            .begin_with("SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION")
            .await?;
        let due: Vec<Vec<u8>> = sqlx::query_scalar(self.sql(
            "SELECT id FROM invite_invitations \
             WHERE tenant = ? AND status = 'pending' AND expires_at <= ? \
             ORDER BY id LIMIT ? FOR UPDATE",
        ))
        .bind(tenant.as_str())
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let ids = due
            .iter()
            .map(|id| invitation_id("invitations", id))
            .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        for chunk in ids.chunks(MAX_BINDS - 1) {
            let mut q = self.builder(
                "UPDATE invite_invitations SET status = 'expired', token_hash = NULL, \
                 version = version + 1 WHERE tenant = ",
            );
            q.push_bind(tenant.as_str()).push(" AND id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id_bytes(id));
            }
            q.push(") AND status = 'pending' AND expires_at <= ")
                .push_bind(now);
            q.build().execute(&mut *tx).await?;
        }
        self.cancel_queued(&mut tx, tenant, &ids).await?;
        let expired = self.invitations_by_id(&mut tx, Some(tenant), &ids).await?;
        tx.commit().await?;
        Ok(expired)
    }

    /// One attempt at a join. The join row goes in first: its primary key (tenant,
    /// role, user) makes a concurrent join by the same user wait for this one and then
    /// fail with a unique violation, which that join answers with `AlreadyJoined`
    /// (InnoDB undoes only the failed statement). Only then is a use counted, by a
    /// conditional UPDATE whose row lock serializes joins through one link, so the
    /// count is judged against the latest value and never passes the maximum.
    async fn try_join(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
        link_revision: u32,
        join: &GroupJoin,
    ) -> Result<JoinOutcome, Failure> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(self.sql(
            "INSERT INTO invite_group_joins (tenant, role, user_id, link_version, email, joined_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        ))
        .bind(tenant.as_str())
        .bind(join.role.as_str())
        .bind(join.user.as_str())
        .bind(i64::from(join.link_version))
        .bind(join.email.as_str())
        .bind(micros(join.joined_at))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                // A locking read sees the committed join (not an older snapshot); the
                // shared lock is the one the failed insert already holds.
                let mut q = self.builder("SELECT ");
                q.push(GROUP_JOIN_SELECT)
                    .push(self.sql(" FROM invite_group_joins j WHERE j.tenant = ").0)
                    .push_bind(tenant.as_str())
                    .push(" AND j.role = ")
                    .push_bind(join.role.as_str())
                    .push(" AND j.user_id = ")
                    .push_bind(join.user.as_str())
                    .push(" LOCK IN SHARE MODE");
                let row = q.build().fetch_one(&mut *tx).await?;
                let existing = rows::group_join(&row)?;
                tx.commit().await?;
                return Ok(JoinOutcome::AlreadyJoined(existing));
            }
            Err(e) => return Err(e.into()),
        }
        let counted = sqlx::query(self.sql(
            "UPDATE invite_group_links SET uses = uses + 1 \
             WHERE tenant = ? AND token_hash = ? AND role = ? AND version = ? AND revision = ? \
             AND enabled AND (expires_at IS NULL OR expires_at > ?) \
             AND (max_uses IS NULL OR uses < max_uses)",
        ))
        .bind(tenant.as_str())
        .bind(token_hash.as_bytes().as_slice())
        .bind(join.role.as_str())
        .bind(i64::from(join.link_version))
        .bind(i64::from(link_revision))
        .bind(micros(join.joined_at))
        .execute(&mut *tx)
        .await?;
        if counted.rows_affected() != 1 {
            // Ended now, not at the drop (see `try_complete`): the join row inserted
            // above and the link row's lock would stay until sqlx sends the deferred
            // ROLLBACK, holding up other joins through a link just when it refuses.
            tx.rollback().await?;
            return Err(StoreError::NotFound.into());
        }
        tx.commit().await?;
        Ok(JoinOutcome::Joined(join.clone()))
    }

    async fn try_claim(
        &self,
        now: OffsetDateTime,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxClaim>, Failure> {
        let now_us = micros(now);
        let lease_until = micros(now + lease);
        let mut tx = self.pool.begin().await?;
        // SKIP LOCKED: entries another claimer is taking right now are not waited for
        // but left to it; the lease below keeps them its own after it commits.
        let due: Vec<Vec<u8>> = sqlx::query_scalar(self.sql(
            "SELECT id FROM invite_outbox \
             WHERE state = 'queued' AND next_attempt_at <= ? \
             AND (claimed_until IS NULL OR claimed_until <= ?) \
             ORDER BY next_attempt_at, id LIMIT ? FOR UPDATE SKIP LOCKED",
        ))
        .bind(now_us)
        .bind(now_us)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        if due.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let mut entries = Vec::with_capacity(due.len());
        for chunk in due.chunks(MAX_BINDS - 1) {
            let mut q =
                self.builder("UPDATE invite_outbox SET attempts = attempts + 1, claimed_until = ");
            q.push_bind(lease_until).push(" WHERE id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id.as_slice());
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;

            let mut q = self.builder("SELECT ");
            q.push(OUTBOX_SELECT)
                .push(self.sql(" FROM invite_outbox WHERE id IN (").0);
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id.as_slice());
            }
            q.push(")");
            for row in &q.build().fetch_all(&mut *tx).await? {
                entries.push(rows::outbox(row)?);
            }
        }
        entries.sort_by_key(|e| (e.next_attempt_at, e.id));
        let ids: Vec<InvitationId> = entries.iter().map(|e| e.invitation).collect();
        let invitations: HashMap<InvitationId, Invitation> = self
            .invitations_by_id(&mut tx, None, &ids)
            .await?
            .into_iter()
            .map(|i| (i.id, i))
            .collect();
        tx.commit().await?;
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

    /// One chunk of a spread (see `spread.rs`): the tenant's first due, unheld entries
    /// in claim order, numbered on from the `moved` before them. Returns how many moved.
    ///
    /// The transaction is READ COMMITTED, where InnoDB's locking reads lock only the
    /// rows they return: no gap or next-key locks, so the tenant's new entries (and
    /// anything else inserted next to its due range) go in while a chunk runs, and a
    /// chunk is no party to the gap-lock deadlocks of REPEATABLE READ. The read takes
    /// the entries with `FOR UPDATE SKIP LOCKED`, as the claim does: an entry another
    /// transaction holds (being claimed, or cancelled by a transition) is passed over,
    /// never waited for. The rows it returns stay locked by this transaction, so the
    /// `UPDATE` by id moves exactly them, as read.
    async fn try_spread_chunk(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
        first_at: OffsetDateTime,
        interval: Duration,
        limit: i64,
        from: &ChunkStart,
    ) -> Result<(u64, Option<(i64, Vec<u8>)>), Failure> {
        let now_us = micros(now);
        let mut tx = self
            .pool
            .begin_with("SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION")
            .await?;
        let chunk = async {
            // The tenant's due range of `invite_outbox_tenant_due` (migration 0007), read
            // in claim order from just after the last chunk's last entry. Forced: on
            // small or skewed statistics the optimizer takes the claim's
            // `(state, next_attempt_at, id)` index instead, which reads (and locks, or
            // skips while others hold them) every tenant's due entries.
            let due: Vec<(Vec<u8>, i64)> = sqlx::query_as(self.sql(
                "SELECT id, next_attempt_at FROM invite_outbox \
                 FORCE INDEX (invite_outbox_tenant_due) \
                 WHERE tenant = ? AND state = 'queued' AND next_attempt_at <= ? \
                 AND (next_attempt_at > ? OR (next_attempt_at = ? AND id > ?)) \
                 AND (claimed_until IS NULL OR claimed_until <= ?) \
                 ORDER BY next_attempt_at, id LIMIT ? FOR UPDATE SKIP LOCKED",
            ))
            .bind(tenant.as_str())
            .bind(now_us)
            .bind(from.after_at)
            .bind(from.after_at)
            .bind(from.after_id.as_slice())
            .bind(now_us)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            // Each entry's rank among the ids read, by the times as read (the rows are
            // ours now, unchanged since), numbered on from `moved`. The ranking is a
            // derived table, materialized (it has a window function), so MySQL lets the
            // `UPDATE` read the table it writes; its read is a consistent one, without
            // locks. STRAIGHT_JOIN makes it the driving table, so the `UPDATE` reaches
            // only these rows, by primary key: a plan scanning `invite_outbox` for them
            // would lock (so wait for) every row another transaction holds.
            let mut k = from.moved;
            for part in due.chunks(usize::from(spread::CHUNK)) {
                let mut q = self.builder(
                    "UPDATE (SELECT id, ROW_NUMBER() OVER (ORDER BY next_attempt_at, id) AS rn \
                      FROM invite_outbox WHERE id IN (",
                );
                let mut list = q.separated(", ");
                for (id, _) in part {
                    list.push_bind(id.as_slice());
                }
                // The table name through `sql`, like every other: the prefix.
                q.push(
                    self.sql(
                        ")) r STRAIGHT_JOIN invite_outbox o ON o.id = r.id \
                         SET o.next_attempt_at = ",
                    )
                    .0,
                )
                .push_bind(micros(first_at))
                .push(" + (")
                .push_bind(i64::try_from(k).unwrap_or(i64::MAX))
                .push(" + r.rn - 1) * ")
                .push_bind(span_micros(interval));
                let updated = q.build().execute(&mut *tx).await?.rows_affected();
                // The rows are locked by this transaction since the read: each one read
                // is updated. Not so is a defect (a statement reaching another table);
                // counted as moved, it would be reported and numbered over.
                if updated != part.len() as u64 {
                    return Err(Failure::Store(StoreError::backend(format!(
                        "the spread updated {updated} of the {} entries it locked",
                        part.len()
                    ))));
                }
                k += part.len() as u64;
            }
            Ok::<_, Failure>((
                due.len() as u64,
                due.last().map(|(id, at)| (*at, id.clone())),
            ))
        }
        .await;
        match chunk {
            Ok(done) => {
                tx.commit().await?;
                Ok(done)
            }
            Err(failure) => {
                // Ended now, not at the drop (see `try_complete`): after a lock wait
                // timeout the transaction is still open, the chunk's rows locked until
                // the connection is next used. The failure is the answer; a rollback
                // that fails too has nothing to add.
                tx.rollback().await.ok();
                Err(failure)
            }
        }
    }

    async fn try_complete(
        &self,
        tenant: &TenantId,
        entry: OutboxId,
        lease_until: OffsetDateTime,
        outcome: &DeliveryOutcome,
        now: OffsetDateTime,
    ) -> Result<(), Failure> {
        // The last: attempts given back (a deferral was not an attempt).
        let (state, next_attempt_at, error, given_back) = match outcome {
            DeliveryOutcome::Sent => ("sent", None, None, 0_i64),
            DeliveryOutcome::Retry {
                next_attempt_at,
                error,
            } => (
                "queued",
                Some(micros(*next_attempt_at)),
                Some(error.as_str()),
                0,
            ),
            DeliveryOutcome::Failed { error } => ("failed", None, Some(error.as_str()), 0),
            DeliveryOutcome::Cancelled => ("cancelled", None, None, 0),
            DeliveryOutcome::Deferred { next_attempt_at } => {
                ("queued", Some(micros(*next_attempt_at)), None, 1)
            }
            _ => {
                return Err(StoreError::Conflict(
                    "unknown delivery outcome for this store version".into(),
                )
                .into());
            }
        };
        let entry_id = entry.as_uuid().as_bytes().as_slice();
        let mut tx = self.pool.begin().await?;
        let invitation: Option<Vec<u8>> = sqlx::query_scalar(self.sql(
            "SELECT invitation_id FROM invite_outbox \
             WHERE id = ? AND tenant = ? AND state = 'queued' AND claimed_until = ? FOR UPDATE",
        ))
        .bind(entry_id)
        .bind(tenant.as_str())
        .bind(micros(lease_until))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(invitation) = invitation else {
            // Ended here, not left to the drop: under REPEATABLE READ the `FOR UPDATE`
            // above locks the entry's row even though it did not match, and a dropped
            // transaction's ROLLBACK only goes out when its connection is next used.
            // Until then every claim's `SKIP LOCKED` passes the entry over.
            tx.rollback().await?;
            return Err(StoreError::NotFound.into());
        };
        // The held claim counted one attempt, so `attempts - 1` is never negative.
        sqlx::query(self.sql(
            "UPDATE invite_outbox SET state = ?, next_attempt_at = COALESCE(?, next_attempt_at), \
             last_error = COALESCE(?, last_error), attempts = attempts - ?, claimed_until = NULL \
             WHERE id = ?",
        ))
        .bind(state)
        .bind(next_attempt_at)
        .bind(error)
        .bind(given_back)
        .bind(entry_id)
        .execute(&mut *tx)
        .await?;
        let now = micros(now);
        match outcome {
            DeliveryOutcome::Sent => {
                sqlx::query(self.sql(
                    "UPDATE invite_invitations SET delivered_at = ?, version = version + 1 \
                     WHERE tenant = ? AND id = ? AND status = 'pending' \
                     AND (expires_at IS NULL OR expires_at > ?)",
                ))
                .bind(now)
                .bind(tenant.as_str())
                .bind(&invitation)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            DeliveryOutcome::Failed { error } => {
                sqlx::query(self.sql(
                    "UPDATE invite_invitations SET status = 'delivery_failed', last_error = ?, \
                     token_hash = NULL, version = version + 1 \
                     WHERE tenant = ? AND id = ? AND status = 'pending' \
                     AND (expires_at IS NULL OR expires_at > ?)",
                ))
                .bind(error.as_str())
                .bind(tenant.as_str())
                .bind(&invitation)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            _ => {}
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Store for MySqlStore {
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
        // Besides deadlocks, a unique violation is retried: it is how a concurrent
        // create that won an address shows (see `try_create`). A duplicate id fails
        // every attempt and ends as a Conflict.
        let mut tries = 1;
        loop {
            match self.try_create(tenant, writes).await {
                Err(Failure::Sql(e))
                    if tries < MAX_ATTEMPTS
                        && (is_serialization_failure(&e) || is_unique_violation(&e)) =>
                {
                    tries += 1;
                }
                done => return done.map_err(Failure::into_store),
            }
        }
    }

    async fn get_invitations(
        &self,
        tenant: &TenantId,
        ids: &[InvitationId],
    ) -> Result<Vec<Invitation>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.acquire().await.map_err(from_sqlx)?;
        self.invitations_by_id(&mut conn, Some(tenant), ids)
            .await
            .map_err(Failure::into_store)
    }

    async fn find_by_token(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
    ) -> Result<Invitation, StoreError> {
        let mut q = self.select_invitations();
        q.push("WHERE tenant = ")
            .push_bind(tenant.as_str())
            .push(" AND token_hash = ")
            .push_bind(token_hash.as_bytes().as_slice());
        let row: Option<MySqlRow> = q
            .build()
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
        let mut out = Vec::new();
        for chunk in keys.chunks(MAX_BINDS - 1) {
            let mut q = self.select_invitations();
            q.push("WHERE tenant = ")
                .push_bind(tenant.as_str())
                .push(" AND open_key IN (");
            let mut list = q.separated(", ");
            for key in chunk {
                list.push_bind(key.as_bytes());
            }
            q.push(")");
            for row in &q.build().fetch_all(&self.pool).await.map_err(from_sqlx)? {
                out.push(rows::invitation(row)?);
            }
        }
        Ok(out)
    }

    async fn record_transitions(
        &self,
        tenant: &TenantId,
        transitions: &[Transition],
    ) -> Result<TransitionReport, StoreError> {
        retrying!(self.try_record(tenant, transitions)).map_err(Failure::into_store)
    }

    async fn accept(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Invitation, StoreError> {
        let now = micros(now);
        retrying!(self.try_accept(tenant, token_hash, user, now))
            .map_err(Failure::lost_race_is_not_found)
    }

    async fn expire_due(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Invitation>, StoreError> {
        let now = micros(now);
        retrying!(self.try_expire(tenant, now, limit)).map_err(Failure::into_store)
    }

    async fn list_invitations(
        &self,
        tenant: &TenantId,
        filter: &InvitationFilter,
        page: PageRequest,
        now: OffsetDateTime,
    ) -> Result<Page<Invitation>, StoreError> {
        let (mut q, limit) =
            filter::list::<MySql>(&self.prefix, INVITATION_SELECT, tenant, filter, page, now);
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
        let n: i64 = filter::count::<MySql>(&self.prefix, tenant, filter, now)
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(from_sqlx)?;
        filter::counted(n)
    }

    async fn create_group_link(&self, link: &GroupLink) -> Result<(), StoreError> {
        group_links::insert::<MySql>(&self.prefix, link)
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
        // Affected rows count matched rows: sqlx connects with CLIENT_FOUND_ROWS.
        let result = group_links::update::<MySql>(&self.prefix, link, expected_revision)
            .build()
            .execute(&self.pool)
            .await
            .map_err(from_sqlx)?;
        exactly_one(result.rows_affected())
    }

    async fn get_group_link(
        &self,
        tenant: &TenantId,
        role: &Role,
    ) -> Result<Option<GroupLink>, StoreError> {
        let mut q = self.builder("SELECT ");
        q.push(GROUP_LINK_SELECT)
            .push(self.sql(" FROM invite_group_links g WHERE g.tenant = ").0)
            .push_bind(tenant.as_str())
            .push(" AND g.role = ")
            .push_bind(role.as_str());
        let row: Option<MySqlRow> = q
            .build()
            .fetch_optional(&self.pool)
            .await
            .map_err(from_sqlx)?;
        row.as_ref().map(rows::group_link).transpose()
    }

    async fn list_group_links(&self, tenant: &TenantId) -> Result<Vec<GroupLink>, StoreError> {
        let mut q = self.builder("SELECT ");
        q.push(GROUP_LINK_SELECT)
            .push(self.sql(" FROM invite_group_links g WHERE g.tenant = ").0)
            .push_bind(tenant.as_str())
            .push(" ORDER BY g.role");
        let rows = q.build().fetch_all(&self.pool).await.map_err(from_sqlx)?;
        rows.iter().map(rows::group_link).collect()
    }

    async fn find_group_link(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
    ) -> Result<GroupLink, StoreError> {
        let mut q = self.builder("SELECT ");
        q.push(GROUP_LINK_SELECT)
            .push(self.sql(" FROM invite_group_links g WHERE g.tenant = ").0)
            .push_bind(tenant.as_str())
            .push(" AND g.token_hash = ")
            .push_bind(token_hash.as_bytes().as_slice());
        let row: Option<MySqlRow> = q
            .build()
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
        retrying!(self.try_join(tenant, token_hash, link_revision, join))
            .map_err(Failure::lost_race_is_not_found)
    }

    async fn list_group_joins(
        &self,
        tenant: &TenantId,
        role: &Role,
    ) -> Result<Vec<GroupJoin>, StoreError> {
        let mut q = self.builder("SELECT ");
        q.push(GROUP_JOIN_SELECT)
            .push(self.sql(" FROM invite_group_joins j WHERE j.tenant = ").0)
            .push_bind(tenant.as_str())
            .push(" AND j.role = ")
            .push_bind(role.as_str())
            .push(" ORDER BY j.joined_at, j.seq");
        let rows = q.build().fetch_all(&self.pool).await.map_err(from_sqlx)?;
        rows.iter().map(rows::group_join).collect()
    }

    async fn claim_due_outbox(
        &self,
        now: OffsetDateTime,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxClaim>, StoreError> {
        retrying!(self.try_claim(now, limit, lease)).map_err(Failure::into_store)
    }

    async fn spread_due_outbox(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
        first_at: OffsetDateTime,
        interval: Duration,
    ) -> Result<u64, StoreError> {
        // In chunks, each its own transaction, retried alone if it loses a race.
        let chunks = spread::Chunks::new(micros(now), micros(first_at));
        let mut from = ChunkStart {
            moved: 0,
            after_at: i64::MIN,
            after_id: Vec::new(),
        };
        loop {
            let (done, last) = retrying!(self.try_spread_chunk(
                tenant,
                now,
                first_at,
                interval,
                chunks.limit(),
                &from
            ))
            .map_err(Failure::into_store)?;
            from.moved += done;
            if let Some((at, id)) = last {
                (from.after_at, from.after_id) = (at, id);
            }
            if !chunks.more_after(done) {
                return Ok(from.moved);
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
        // The statement reads the entry, then writes the invitation: the opposite of
        // `record_transitions` (invitation, then its entries), so a resend racing a
        // delivery can make this the deadlock victim. InnoDB rolled back just this
        // statement; run it again. A race lost every time is a lost claim.
        retrying!(self.try_attach(tenant, entry, lease_until, token_hash))
            .map_err(Failure::lost_race_is_not_found)
    }

    async fn complete_outbox(
        &self,
        tenant: &TenantId,
        entry: OutboxId,
        lease_until: OffsetDateTime,
        outcome: &DeliveryOutcome,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        // Still losing a race after the retries is the contract's lost claim, as for
        // `attach_token`: the entry's lock comes before its invitation's here, the
        // opposite of `record_transitions`, so deadlocks with it are possible.
        retrying!(self.try_complete(tenant, entry, lease_until, outcome, now))
            .map_err(Failure::lost_race_is_not_found)
    }

    async fn list_outbox(
        &self,
        tenant: &TenantId,
        invitation: InvitationId,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut q = self.builder("SELECT ");
        q.push(OUTBOX_SELECT)
            .push(self.sql(" FROM invite_outbox WHERE tenant = ").0)
            .push_bind(tenant.as_str())
            .push(" AND invitation_id = ")
            .push_bind(id_bytes(&invitation))
            .push(" ORDER BY id");
        let rows = q.build().fetch_all(&self.pool).await.map_err(from_sqlx)?;
        rows.iter().map(rows::outbox).collect()
    }

    async fn suppress(&self, suppression: &Suppression) -> Result<(), StoreError> {
        suppressions::upsert::<MySql>(&self.prefix, suppression, MYSQL_ON_DUPLICATE)
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
            let mut q = suppressions::lookup::<MySql>(
                &self.prefix,
                "CONVERT(tenant USING utf8mb4) AS tenant, email, reason, suppressed_at, \
                 CONVERT(source USING utf8mb4) AS source",
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
        let done = suppressions::delete::<MySql>(&self.prefix, tenant, key)
            .build()
            .execute(&self.pool)
            .await
            .map_err(from_sqlx)?;
        at_least_one(done.rows_affected())
    }

    async fn unsuppress_if_same(&self, suppression: &Suppression) -> Result<bool, StoreError> {
        let done = suppressions::delete_if_same::<MySql>(&self.prefix, suppression)
            .build()
            .execute(&self.pool)
            .await
            .map_err(from_sqlx)?;
        Ok(done.rows_affected() == 1)
    }
}
