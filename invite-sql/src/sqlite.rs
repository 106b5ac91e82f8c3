//! SQLite store. Writes go through one connection in `BEGIN IMMEDIATE` transactions (no
//! busy-handler sleeps between writers); accept is one conditional `UPDATE ... RETURNING`;
//! bulk insert is multi-row `INSERT ... ON CONFLICT DO NOTHING` batches sized under
//! SQLite's bind limit, their affected-row counts checked (see `create_invitations`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use invite_core::{
    CreateReport, DeliveryOutcome, GroupJoin, GroupLink, Invitation, InvitationFilter,
    InvitationId, InvitationStatus, InvitationWrite, JoinOutcome, OutboxClaim, OutboxEntry,
    OutboxId, Page, PageRequest, Role, Store, StoreError, Suppression, TenantId, TokenHash,
    Transition, TransitionReport, UserId,
};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, QueryBuilder, Sqlite, SqliteConnection};
use time::{Duration, OffsetDateTime};

use crate::error::{at_least_one, exactly_one, from_sqlx};
use crate::filter;
use crate::group_links;
use crate::prefix::{InvalidPrefix, TablePrefix};
use crate::rows::{
    self, GROUP_JOIN_COLUMNS, GROUP_LINK_COLUMNS, INVITATION_COLUMN_COUNT, INVITATION_COLUMNS,
    InvitationCols, OUTBOX_COLUMN_COUNT, OUTBOX_COLUMNS, OutboxCols, micros, push_invitation_row,
    span_micros,
};
use crate::spread;
use crate::suppressions;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// SQLite's bound-parameter limit in the bundled build (`SQLITE_MAX_VARIABLE_NUMBER`).
const MAX_BINDS: usize = 32_766;

/// An [`invite_core::Store`] on SQLite.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use invite_sql::SqliteStore;
///
/// let store = SqliteStore::open("invitations.db").await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    prefix: TablePrefix,
}

impl SqliteStore {
    /// A store on the host's pool, used for reads and writes alike. With more than one
    /// connection, concurrent writers wait in SQLite's busy handler; prefer
    /// [`open`](Self::open), which routes writes through one connection.
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            writer: pool.clone(),
            reader: pool,
            prefix: TablePrefix::default(),
        }
    }

    /// Opens (creating if missing) a database file in WAL mode, with one writer
    /// connection and a small pool of readers.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(StdDuration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            writer,
            reader,
            prefix: TablePrefix::default(),
        })
    }

    /// Uses `prefix` instead of `invite_` for every table and index, for hosts whose
    /// schema already has an `invitations` table. Lowercase ASCII letters, digits and
    /// `_`, starting with a letter, at most 32 bytes.
    pub fn with_table_prefix(mut self, prefix: &str) -> Result<Self, InvalidPrefix> {
        self.prefix = TablePrefix::new(prefix)?;
        Ok(self)
    }

    /// The pool writes go through.
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// The embedded migrations, with this store's table prefix, tracked in
    /// `<prefix>migrations` so they never mix with the host's own sqlx migrations.
    pub fn migrator(&self) -> Migrator {
        self.prefix.migrator(&MIGRATOR)
    }

    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<(), MigrateError> {
        self.migrator().run(&self.writer).await
    }

    fn sql(&self, text: &'static str) -> AssertSqlSafe<Cow<'static, str>> {
        self.prefix.apply(text)
    }

    fn builder(&self, text: &'static str) -> QueryBuilder<Sqlite> {
        QueryBuilder::new(self.sql(text).0.into_owned())
    }

    /// One multi-row `INSERT` of invitations that skips inputs whose address is
    /// already open (the partial unique index); any other violation fails it.
    fn insert_query(&self, chunk: &[InvitationWrite], returning: bool) -> QueryBuilder<Sqlite> {
        let mut q = self.builder("INSERT INTO invite_invitations (");
        q.push(INVITATION_COLUMNS).push(") ");
        q.push_values(chunk, |mut b, write| {
            push_invitation_row!(b, &write.invitation);
        });
        q.push(
            " ON CONFLICT (tenant, email_key) WHERE status IN ('unsent', 'pending') \
             DO NOTHING",
        );
        if returning {
            q.push(" RETURNING id");
        }
        q
    }

    async fn insert_invitations(
        &self,
        conn: &mut SqliteConnection,
        chunk: &[InvitationWrite],
    ) -> Result<sqlx::sqlite::SqliteQueryResult, StoreError> {
        self.insert_query(chunk, false)
            .build()
            .execute(&mut *conn)
            .await
            .map_err(from_sqlx)
    }

    /// The ids of the inputs the `INSERT` wrote.
    async fn insert_invitations_returning(
        &self,
        conn: &mut SqliteConnection,
        chunk: &[InvitationWrite],
    ) -> Result<HashSet<[u8; 16]>, StoreError> {
        let ids: Vec<Vec<u8>> = self
            .insert_query(chunk, true)
            .build_query_scalar()
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        ids.into_iter()
            .map(|id| {
                <[u8; 16]>::try_from(id)
                    .map_err(|_| crate::error::corrupt("invitations", "id is not 16 bytes"))
            })
            .collect()
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, Sqlite>, StoreError> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(from_sqlx)
    }

    async fn invitations_by_id(
        &self,
        conn: &mut SqliteConnection,
        tenant: Option<&TenantId>,
        ids: &[InvitationId],
    ) -> Result<Vec<Invitation>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_BINDS - 1) {
            let mut q = self.builder("SELECT ");
            q.push(INVITATION_COLUMNS)
                .push(self.sql(" FROM invite_invitations WHERE ").0);
            if let Some(tenant) = tenant {
                q.push("tenant = ").push_bind(tenant.as_str()).push(" AND ");
            }
            q.push("id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id.as_uuid().as_bytes().as_slice());
            }
            q.push(")");
            let rows = q.build().fetch_all(&mut *conn).await.map_err(from_sqlx)?;
            for row in &rows {
                out.push(rows::invitation(row)?);
            }
        }
        Ok(out)
    }

    async fn cancel_queued(
        &self,
        conn: &mut SqliteConnection,
        tenant: &TenantId,
        invitation: InvitationId,
    ) -> Result<(), StoreError> {
        sqlx::query(self.sql(
            "UPDATE invite_outbox SET state = 'cancelled', claimed_until = NULL \
             WHERE tenant = ? AND invitation_id = ? AND state = 'queued'",
        ))
        .bind(tenant.as_str())
        .bind(invitation.as_uuid().as_bytes().as_slice())
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
        Ok(())
    }

    async fn insert_outbox(
        &self,
        conn: &mut SqliteConnection,
        entries: &[&OutboxEntry],
    ) -> Result<(), StoreError> {
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
            q.build().execute(&mut *conn).await.map_err(from_sqlx)?;
        }
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
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
        // Inside `BEGIN IMMEDIATE` this connection is the only writer of the database
        // file (other connections and processes wait for our commit), so the open
        // invitation of an address cannot change between our `INSERT`s and our reads.
        // `ON CONFLICT ... DO NOTHING` skips an input whose address is already open
        // (committed earlier, or an earlier input of this call); the affected-row count
        // says whether a batch lost any. Only then are the open ids of its addresses
        // read, and an open input was created exactly when the open id of its address
        // is its own. No `RETURNING` and no id set on the common, conflict-free path.
        //
        // One case defeats the counting: an input whose id *is* the open row's id (the
        // same writes sent twice, e.g. a retried call). SQLite then skips it silently,
        // and its address's open id is its own although this call wrote nothing. The
        // classification then claims more rows than the batch inserted; the batch is
        // rolled back to its savepoint and run again with `RETURNING id`, which says
        // exactly which inputs were written.
        let mut tx = self.begin().await?;
        let batch_rows = MAX_BINDS / INVITATION_COLUMN_COUNT;
        let mut report = CreateReport::default();
        let mut outbox: Vec<&OutboxEntry> = Vec::new();
        for (batch, chunk) in writes.chunks(batch_rows).enumerate() {
            let first = batch * batch_rows;
            sqlx::query("SAVEPOINT invite_bulk_batch")
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            let inserted = self
                .insert_invitations(&mut tx, chunk)
                .await?
                .rows_affected();
            if inserted == chunk.len() as u64 {
                report.created.extend(first..first + chunk.len());
                outbox.extend(chunk.iter().filter_map(|w| w.outbox.as_ref()));
            } else {
                let open = open_ids_of(self, &mut tx, tenant, chunk).await?;
                let claimed = chunk
                    .iter()
                    .filter(|w| {
                        !is_open(w.invitation.status)
                            || open.get(w.invitation.email.key()) == Some(&w.invitation.id)
                    })
                    .count();
                let mut written = if claimed as u64 == inserted {
                    None
                } else {
                    sqlx::query("ROLLBACK TO invite_bulk_batch")
                        .execute(&mut *tx)
                        .await
                        .map_err(from_sqlx)?;
                    Some(self.insert_invitations_returning(&mut tx, chunk).await?)
                };
                for (offset, write) in chunk.iter().enumerate() {
                    let i = &write.invitation;
                    let created = match &mut written {
                        None => !is_open(i.status) || open.get(i.email.key()) == Some(&i.id),
                        // Taken once: the same input twice in a call is written once,
                        // and its repeat conflicts with it, as in the other stores.
                        Some(ids) => ids.remove(i.id.as_uuid().as_bytes()),
                    };
                    if created {
                        report.created.push(first + offset);
                        outbox.extend(write.outbox.as_ref());
                        continue;
                    }
                    let id = open.get(i.email.key()).ok_or_else(|| {
                        StoreError::Conflict(format!(
                            "invitation {} was refused without a conflicting open invitation",
                            i.id
                        ))
                    })?;
                    report.conflicts.push((first + offset, *id));
                }
            }
            sqlx::query("RELEASE invite_bulk_batch")
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
        }
        self.insert_outbox(&mut tx, &outbox).await?;
        tx.commit().await.map_err(from_sqlx)?;
        Ok(report)
    }

    async fn get_invitations(
        &self,
        tenant: &TenantId,
        ids: &[InvitationId],
    ) -> Result<Vec<Invitation>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(from_sqlx)?;
        self.invitations_by_id(&mut conn, Some(tenant), ids).await
    }

    async fn find_by_token(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
    ) -> Result<Invitation, StoreError> {
        let row: Option<SqliteRow> = sqlx::query(self.sql(
            "SELECT id, tenant, email, email_key, role, first_name, last_name, message, metadata, invited_by, batch_id, status, token_hash, ttl_seconds, created_at, sent_at, delivered_at, expires_at, accepted_at, accepted_by, revoked_at, revoked_by, last_error, version \
             FROM invite_invitations WHERE tenant = ? AND token_hash = ?",
        ))
        .bind(tenant.as_str())
        .bind(token_hash.as_bytes().as_slice())
        .fetch_optional(&self.reader)
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
            let mut q = self.builder("SELECT ");
            q.push(INVITATION_COLUMNS)
                .push(self.sql(" FROM invite_invitations WHERE tenant = ").0)
                .push_bind(tenant.as_str())
                .push(" AND status IN ('unsent', 'pending') AND email_key IN (");
            let mut list = q.separated(", ");
            for key in chunk {
                list.push_bind(*key);
            }
            q.push(")");
            for row in &q.build().fetch_all(&self.reader).await.map_err(from_sqlx)? {
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
        let mut tx = self.begin().await?;
        let mut applied = vec![false; transitions.len()];
        for index in Transition::apply_order(transitions) {
            let t = &transitions[index];
            let i = &t.invitation;
            if !t.is_for(tenant) {
                continue;
            }
            let c = InvitationCols::of(i);
            let opens = is_open(i.status);
            let result = sqlx::query(self.sql(
                "UPDATE invite_invitations SET status = ?, token_hash = ?, sent_at = ?, \
                 delivered_at = ?, expires_at = ?, accepted_at = ?, accepted_by = ?, \
                 revoked_at = ?, revoked_by = ?, last_error = ?, version = ? \
                 WHERE tenant = ? AND id = ? AND version = ? \
                 AND (? = 0 OR NOT EXISTS (SELECT 1 FROM invite_invitations o \
                      WHERE o.tenant = ? AND o.email_key = ? AND o.id <> ? \
                      AND o.status IN ('unsent', 'pending')))",
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
            .bind(c.tenant)
            .bind(c.email_key)
            .bind(c.id)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
            if result.rows_affected() != 1 {
                continue;
            }
            self.cancel_queued(&mut tx, tenant, i.id).await?;
            if let Some(entry) = &t.outbox {
                self.insert_outbox(&mut tx, &[entry]).await?;
            }
            applied[index] = true;
        }
        tx.commit().await.map_err(from_sqlx)?;
        Ok(TransitionReport::from_applied(transitions, &applied))
    }

    async fn accept(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Invitation, StoreError> {
        let now = micros(now);
        let row: Option<SqliteRow> = sqlx::query(self.sql(
            "UPDATE invite_invitations SET status = 'accepted', accepted_at = ?, accepted_by = ?, \
             version = version + 1 \
             WHERE tenant = ? AND token_hash = ? AND status = 'pending' \
             AND (expires_at IS NULL OR expires_at > ?) \
             RETURNING id, tenant, email, email_key, role, first_name, last_name, message, metadata, invited_by, batch_id, status, token_hash, ttl_seconds, created_at, sent_at, delivered_at, expires_at, accepted_at, accepted_by, revoked_at, revoked_by, last_error, version",
        ))
        .bind(now)
        .bind(user.as_str())
        .bind(tenant.as_str())
        .bind(token_hash.as_bytes().as_slice())
        .bind(now)
        .fetch_optional(&self.writer)
        .await
        .map_err(from_sqlx)?;
        rows::invitation(&row.ok_or(StoreError::NotFound)?)
    }

    async fn expire_due(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Invitation>, StoreError> {
        let mut tx = self.begin().await?;
        let rows: Vec<SqliteRow> = sqlx::query(self.sql(
            "UPDATE invite_invitations SET status = 'expired', token_hash = NULL, version = version + 1 \
             WHERE id IN (SELECT id FROM invite_invitations \
                          WHERE tenant = ? AND status = 'pending' AND expires_at <= ? \
                          ORDER BY id LIMIT ?) \
             RETURNING id, tenant, email, email_key, role, first_name, last_name, message, metadata, invited_by, batch_id, status, token_hash, ttl_seconds, created_at, sent_at, delivered_at, expires_at, accepted_at, accepted_by, revoked_at, revoked_by, last_error, version",
        ))
        .bind(tenant.as_str())
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let mut expired = rows
            .iter()
            .map(rows::invitation)
            .collect::<Result<Vec<_>, _>>()?;
        expired.sort_by_key(|i| i.id);
        for invitation in &expired {
            self.cancel_queued(&mut tx, tenant, invitation.id).await?;
        }
        tx.commit().await.map_err(from_sqlx)?;
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
            filter::list::<Sqlite>(&self.prefix, INVITATION_COLUMNS, tenant, filter, page, now);
        let rows = q.build().fetch_all(&self.reader).await.map_err(from_sqlx)?;
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
        let n: i64 = filter::count::<Sqlite>(&self.prefix, tenant, filter, now)
            .build_query_scalar()
            .fetch_one(&self.reader)
            .await
            .map_err(from_sqlx)?;
        filter::counted(n)
    }

    async fn create_group_link(&self, link: &GroupLink) -> Result<(), StoreError> {
        group_links::insert::<Sqlite>(&self.prefix, link)
            .build()
            .execute(&self.writer)
            .await
            .map(drop)
            .map_err(|e| group_links::insert_error(link, e))
    }

    async fn update_group_link(
        &self,
        link: &GroupLink,
        expected_revision: u32,
    ) -> Result<(), StoreError> {
        let result = group_links::update::<Sqlite>(&self.prefix, link, expected_revision)
            .build()
            .execute(&self.writer)
            .await
            .map_err(from_sqlx)?;
        exactly_one(result.rows_affected())
    }

    async fn get_group_link(
        &self,
        tenant: &TenantId,
        role: &Role,
    ) -> Result<Option<GroupLink>, StoreError> {
        let row: Option<SqliteRow> = sqlx::query(self.sql(
            "SELECT tenant, role, enabled, token_hash, version, revision, expires_at, max_uses, uses, allowed_domains, updated_by, created_at, updated_at \
             FROM invite_group_links WHERE tenant = ? AND role = ?",
        ))
        .bind(tenant.as_str())
        .bind(role.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(from_sqlx)?;
        row.as_ref().map(rows::group_link).transpose()
    }

    async fn list_group_links(&self, tenant: &TenantId) -> Result<Vec<GroupLink>, StoreError> {
        let mut q = self.builder("SELECT ");
        q.push(GROUP_LINK_COLUMNS)
            .push(self.sql(" FROM invite_group_links WHERE tenant = ").0)
            .push_bind(tenant.as_str())
            .push(" ORDER BY role");
        let rows = q.build().fetch_all(&self.reader).await.map_err(from_sqlx)?;
        rows.iter().map(rows::group_link).collect()
    }

    async fn find_group_link(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
    ) -> Result<GroupLink, StoreError> {
        let row: Option<SqliteRow> = sqlx::query(self.sql(
            "SELECT tenant, role, enabled, token_hash, version, revision, expires_at, max_uses, uses, allowed_domains, updated_by, created_at, updated_at \
             FROM invite_group_links WHERE tenant = ? AND token_hash = ?",
        ))
        .bind(tenant.as_str())
        .bind(token_hash.as_bytes().as_slice())
        .fetch_optional(&self.reader)
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
        let existing: Option<SqliteRow> = sqlx::query(self.sql(
            "SELECT tenant, role, user_id, link_version, email, joined_at FROM invite_group_joins \
             WHERE tenant = ? AND role = ? AND user_id = ?",
        ))
        .bind(tenant.as_str())
        .bind(join.role.as_str())
        .bind(join.user.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        if let Some(row) = existing {
            return Ok(JoinOutcome::AlreadyJoined(rows::group_join(&row)?));
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
        .await
        .map_err(from_sqlx)?;
        if counted.rows_affected() != 1 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(self.sql(
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
        .await
        .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)?;
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
            .push(" ORDER BY joined_at, rowid");
        let rows = q.build().fetch_all(&self.reader).await.map_err(from_sqlx)?;
        rows.iter().map(rows::group_join).collect()
    }

    async fn claim_due_outbox(
        &self,
        now: OffsetDateTime,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxClaim>, StoreError> {
        let mut tx = self.begin().await?;
        let now_us = micros(now);
        let rows: Vec<SqliteRow> = sqlx::query(self.sql(
            "UPDATE invite_outbox SET claimed_until = ?, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM invite_outbox \
                          WHERE state = 'queued' AND next_attempt_at <= ? \
                          AND (claimed_until IS NULL OR claimed_until <= ?) \
                          ORDER BY next_attempt_at, id LIMIT ?) \
             RETURNING id, tenant, invitation_id, kind, state, attempts, next_attempt_at, claimed_until, last_error, created_at",
        ))
        .bind(micros(now + lease))
        .bind(now_us)
        .bind(now_us)
        .bind(i64::from(limit))
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
        // In chunks (see `spread.rs`), each one statement on the writer, so other
        // writes (claims, completions, new emails) get the database between them.
        // Nothing else writes during a statement, so the ranked rows are exactly the
        // ones updated. The ranking reads the first entries of the tenant's due range
        // of `invite_outbox_tenant_due` (migration 0006), already in claim order; the
        // inner `LIMIT` comes before the window, which so ranks one chunk only.
        let now_us = micros(now);
        let chunks = spread::Chunks::new(now_us, micros(first_at));
        let mut moved: u64 = 0;
        loop {
            let done = sqlx::query(self.sql(
                "UPDATE invite_outbox SET next_attempt_at = ? + (? + r.rn - 1) * ? \
                 FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY next_attempt_at, id) AS rn \
                       FROM (SELECT id, next_attempt_at FROM invite_outbox \
                             WHERE state = 'queued' AND next_attempt_at <= ? AND tenant = ? \
                             AND (claimed_until IS NULL OR claimed_until <= ?) \
                             ORDER BY next_attempt_at, id LIMIT ?)) AS r \
                 WHERE invite_outbox.id = r.id",
            ))
            .bind(micros(first_at))
            .bind(i64::try_from(moved).unwrap_or(i64::MAX))
            .bind(span_micros(interval))
            .bind(now_us)
            .bind(tenant.as_str())
            .bind(now_us)
            .bind(chunks.limit())
            .execute(&self.writer)
            .await
            .map_err(from_sqlx)?;
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
        .execute(&self.writer)
        .await
        .map_err(from_sqlx)?;
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
        // The last: attempts given back (a deferral was not an attempt).
        let (state, next_attempt_at, error, given_back) = match outcome {
            DeliveryOutcome::Sent => ("sent", None, None, 0),
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
                ));
            }
        };
        let mut tx = self.begin().await?;
        // A held claim counted one attempt, so `attempts - 1` is never negative.
        let invitation: Option<Vec<u8>> = sqlx::query_scalar(self.sql(
            "UPDATE invite_outbox SET state = ?, next_attempt_at = COALESCE(?, next_attempt_at), \
             last_error = COALESCE(?, last_error), attempts = attempts - ?, claimed_until = NULL \
             WHERE id = ? AND tenant = ? AND state = 'queued' AND claimed_until = ? \
             RETURNING invitation_id",
        ))
        .bind(state)
        .bind(next_attempt_at)
        .bind(error)
        .bind(given_back)
        .bind(entry.as_uuid().as_bytes().as_slice())
        .bind(tenant.as_str())
        .bind(micros(lease_until))
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let invitation = invitation.ok_or(StoreError::NotFound)?;
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
                .await
                .map_err(from_sqlx)?;
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
                .await
                .map_err(from_sqlx)?;
            }
            _ => {}
        }
        tx.commit().await.map_err(from_sqlx)?;
        Ok(())
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
        let rows = q.build().fetch_all(&self.reader).await.map_err(from_sqlx)?;
        rows.iter().map(rows::outbox).collect()
    }

    async fn suppress(&self, suppression: &Suppression) -> Result<(), StoreError> {
        suppressions::upsert::<Sqlite>(
            &self.prefix,
            suppression,
            suppressions::ON_CONFLICT_REPLACE,
        )
        .build()
        .execute(&self.writer)
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
            let mut q = suppressions::lookup::<Sqlite>(
                &self.prefix,
                "tenant, email, reason, suppressed_at, source",
                tenant,
                chunk,
            );
            for row in &q.build().fetch_all(&self.reader).await.map_err(from_sqlx)? {
                found.push(rows::suppression(row)?);
            }
        }
        Ok(suppressions::one_per_key(found))
    }

    async fn unsuppress(&self, tenant: &TenantId, key: &str) -> Result<(), StoreError> {
        let done = suppressions::delete::<Sqlite>(&self.prefix, tenant, key)
            .build()
            .execute(&self.writer)
            .await
            .map_err(from_sqlx)?;
        at_least_one(done.rows_affected())
    }

    async fn unsuppress_if_same(&self, suppression: &Suppression) -> Result<bool, StoreError> {
        let done = suppressions::delete_if_same::<Sqlite>(&self.prefix, suppression)
            .build()
            .execute(&self.writer)
            .await
            .map_err(from_sqlx)?;
        Ok(done.rows_affected() == 1)
    }
}

/// Unsent or pending: the statuses of the partial unique index on `(tenant, email_key)`.
fn is_open(status: InvitationStatus) -> bool {
    matches!(status, InvitationStatus::Unsent | InvitationStatus::Pending)
}

/// The open invitation ids of the addresses of `chunk`'s open inputs.
async fn open_ids_of(
    store: &SqliteStore,
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    chunk: &[InvitationWrite],
) -> Result<HashMap<String, InvitationId>, StoreError> {
    let mut keys: Vec<&str> = chunk
        .iter()
        .filter(|w| is_open(w.invitation.status))
        .map(|w| w.invitation.email.key())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    open_ids_by_key(store, conn, tenant, &keys).await
}

async fn open_ids_by_key(
    store: &SqliteStore,
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    keys: &[&str],
) -> Result<HashMap<String, InvitationId>, StoreError> {
    let mut found = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(MAX_BINDS - 1) {
        let mut q = store.builder("SELECT email_key, id FROM invite_invitations WHERE tenant = ");
        q.push_bind(tenant.as_str())
            .push(" AND status IN ('unsent', 'pending') AND email_key IN (");
        let mut list = q.separated(", ");
        for key in chunk {
            list.push_bind(*key);
        }
        q.push(")");
        let rows: Vec<(String, Vec<u8>)> = q
            .build_query_as()
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        for (key, id) in rows {
            let id = uuid::Uuid::from_slice(&id)
                .map_err(|e| crate::error::corrupt("invitations", e.to_string()))?;
            found.insert(key, InvitationId::from_uuid(id));
        }
    }
    Ok(found)
}
